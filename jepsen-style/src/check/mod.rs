//! The checker: judges a history of Kafka client operations.

mod consumers;
mod groups;
mod report;
mod send_order;
mod summary;
mod writes;

use std::collections::{BTreeSet, HashMap};

pub use report::{Anomaly, Example, Finding, Outcomes, PartitionSummary, Report, Summary};

use crate::event::{OpIndex, Process};
use crate::history::{History, Operation};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Every producer is idempotent, so any duplicate makes the history invalid.
    pub idempotent: bool,
    /// These processes produce idempotently: a value of theirs at two places
    /// is an `idempotent-duplicate`, which always invalidates.
    pub idempotent_processes: BTreeSet<Process>,
}

pub fn check(history: &History, options: &Options) -> Report {
    let operations = history.operations();
    let by_index: HashMap<OpIndex, &Operation> = operations.iter().map(|op| (op.index, op)).collect();
    let mut findings = report::Findings::default();
    writes::check(&operations, &options.idempotent_processes, &mut findings);
    send_order::check(history.events(), &by_index, &mut findings);
    consumers::check(history.events(), &by_index, &mut findings);
    groups::check(history.events(), &by_index, &mut findings);
    findings.into_report(options.idempotent, summary::summarize(&operations))
}
