//! The checker: judges a history of Kafka client operations.

mod consumers;
mod groups;
mod report;
mod send_order;
mod summary;
mod writes;

use std::collections::HashMap;

pub use report::{Anomaly, Example, Finding, Outcomes, PartitionSummary, Report, Summary};

use crate::event::OpIndex;
use crate::history::{History, Operation};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// The producers are idempotent, so a duplicate makes the history invalid.
    pub idempotent: bool,
}

pub fn check(history: &History, options: &Options) -> Report {
    let operations = history.operations();
    let by_index: HashMap<OpIndex, &Operation> = operations.iter().map(|op| (op.index, op)).collect();
    let mut findings = report::Findings::default();
    writes::check(&operations, &mut findings);
    send_order::check(history.events(), &by_index, &mut findings);
    consumers::check(history.events(), &by_index, &mut findings);
    groups::check(history.events(), &by_index, &mut findings);
    findings.into_report(options.idempotent, summary::summarize(&operations))
}
