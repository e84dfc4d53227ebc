//! Counts that say how much the history exercised.

use std::collections::{BTreeMap, BTreeSet};

use crate::check::report::{Outcomes, PartitionSummary, Summary};
use crate::event::{Op, TopicPartition};
use crate::history::{Operation, Outcome};

pub(crate) fn summarize(operations: &[Operation]) -> Summary {
    let mut summary = Summary::default();
    let mut values: BTreeSet<&str> = BTreeSet::new();
    // Per partition: max acknowledged offset, max read offset.
    let mut partitions: BTreeMap<&TopicPartition, (Option<i64>, Option<i64>)> = BTreeMap::new();
    // Per partition: when each acknowledgement came.
    let mut acked_at: BTreeMap<&TopicPartition, Vec<u64>> = BTreeMap::new();
    for op in operations {
        match &op.op {
            Op::Send(send) => {
                count(&mut summary.sends, op.outcome);
                if let Some(offset) = send.offset {
                    let acked = &mut partitions.entry(&send.tp).or_default().0;
                    *acked = (*acked).max(Some(offset));
                }
                if let (Outcome::Ok, Some(time)) = (op.outcome, op.complete_time) {
                    acked_at.entry(&send.tp).or_default().push(time);
                }
            }
            Op::Poll(records) => {
                count(&mut summary.polls, op.outcome);
                summary.records_read += records.len();
                for r in records {
                    values.insert(&r.value);
                    let read = &mut partitions.entry(&r.tp).or_default().1;
                    *read = (*read).max(Some(r.offset));
                }
            }
            Op::Commit(_) => count(&mut summary.commits, op.outcome),
            Op::FetchCommitted(_) | Op::Committed(_) => count(&mut summary.fetches_committed, op.outcome),
            Op::Assign(_) | Op::Seek(_) | Op::Crash => {}
        }
    }
    summary.values_read = values.len();
    summary.partitions = partitions
        .into_iter()
        .map(|(tp, (acked, read))| PartitionSummary {
            partition: tp.clone(),
            max_acked_offset: acked,
            max_read_offset: read,
            longest_write_gap_ns: acked_at.get_mut(tp).and_then(|times| longest_gap(times)),
        })
        .collect();
    summary
}

/// The longest interval between consecutive `times`; `None` for fewer than two.
fn longest_gap(times: &mut [u64]) -> Option<u64> {
    times.sort_unstable();
    times.windows(2).map(|w| w[1] - w[0]).max()
}

fn count(outcomes: &mut Outcomes, outcome: Outcome) {
    match outcome {
        Outcome::Ok => outcomes.ok += 1,
        Outcome::Fail => outcomes.fail += 1,
        Outcome::Info => outcomes.info += 1,
    }
}
