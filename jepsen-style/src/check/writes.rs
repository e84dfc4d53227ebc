//! Where each value ended up: lost, unseen, duplicated, at conflicting offsets, or read though never written.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::check::report::{Anomaly, Example, Findings};
use crate::event::{Op, Process, TopicPartition};
use crate::history::{Operation, Outcome};

/// A place in the log.
type At<'a> = (&'a TopicPartition, i64);

/// Every place a value was acknowledged at or read at, with the operations that say so.
#[derive(Default)]
struct Observations<'a> {
    /// value -> places polls read it at -> the polls.
    reads: BTreeMap<&'a str, BTreeMap<At<'a>, Vec<&'a Operation>>>,
    /// place -> values acknowledged or read there -> the sends and polls.
    values_at: BTreeMap<At<'a>, BTreeMap<&'a str, Vec<&'a Operation>>>,
    /// Per partition, the highest offset read and a poll that read it.
    max_read: HashMap<&'a TopicPartition, (i64, &'a Operation)>,
}

impl<'a> Observations<'a> {
    fn gather(operations: &'a [Operation]) -> Observations<'a> {
        let mut seen = Observations::default();
        for op in operations {
            match (&op.op, op.outcome) {
                (Op::Send(send), Outcome::Ok) => {
                    if let Some(offset) = send.offset {
                        seen.values_at.entry((&send.tp, offset)).or_default().entry(&send.value).or_default().push(op);
                    }
                }
                (Op::Poll(records), Outcome::Ok) => {
                    for r in records {
                        let at = (&r.tp, r.offset);
                        seen.reads.entry(&r.value).or_default().entry(at).or_default().push(op);
                        seen.values_at.entry(at).or_default().entry(&r.value).or_default().push(op);
                        let max = seen.max_read.entry(&r.tp).or_insert((r.offset, op));
                        if r.offset > max.0 {
                            *max = (r.offset, op);
                        }
                    }
                }
                _ => {}
            }
        }
        seen
    }

    /// Whether any poll read anything at `at`.
    fn read_at(&self, at: At<'a>) -> bool {
        self.values_at.get(&at).is_some_and(|values| values.values().flatten().any(|op| matches!(op.op, Op::Poll(_))))
    }
}

pub(crate) fn check(operations: &[Operation], idempotent: &BTreeSet<Process>, findings: &mut Findings) {
    let seen = Observations::gather(operations);
    for ((tp, offset), values) in &seen.values_at {
        if values.len() > 1 {
            findings.add(Anomaly::InconsistentOffsets, || {
                let names: Vec<&str> = values.keys().copied().collect();
                Example::new(format!("{tp} offset {offset} holds {names:?}"), values.values().flatten().copied())
            });
        }
    }
    let mut sent: BTreeSet<&str> = BTreeSet::new();
    for send_op in operations {
        let Op::Send(send) = &send_op.op else { continue };
        sent.insert(&send.value);
        let value = send.value.as_str();
        let no_reads = BTreeMap::new();
        let reads = seen.reads.get(value).unwrap_or(&no_reads);
        let polls = || reads.values().flatten().copied();
        let mut places: BTreeSet<At> = reads.keys().copied().collect();
        match (send_op.outcome, send.offset) {
            (Outcome::Ok, Some(offset)) => {
                let acked = (&send.tp, offset);
                places.insert(acked);
                if !reads.is_empty() {
                    // Read elsewhere only. Had a poll read the acknowledged place, it saw another value there,
                    // which the loop above reports; a duplicate that also sits at the ack is just a duplicate.
                    if !seen.read_at(acked) {
                        findings.add(Anomaly::InconsistentOffsets, || {
                            let read: Vec<String> = reads.keys().map(|(tp, o)| format!("{tp}@{o}")).collect();
                            let detail = format!(
                                "{value:?} acknowledged at {}@{offset}, which nobody read, but read at {}",
                                send.tp,
                                read.join(", ")
                            );
                            Example::new(detail, std::iter::once(send_op).chain(polls()))
                        });
                    }
                } else if let Some(&(max, poll)) = seen.max_read.get(&send.tp).filter(|(max, _)| *max > offset) {
                    findings.add(Anomaly::LostWrite, || {
                        let detail = format!(
                            "{value:?} acknowledged at {}@{offset}, never read, though reads reached offset {max}",
                            send.tp
                        );
                        Example::new(detail, [send_op, poll])
                    });
                } else {
                    findings.add(Anomaly::Unseen, || {
                        let detail = format!("{value:?} acknowledged at {}@{offset}, never read", send.tp);
                        Example::new(detail, [send_op])
                    });
                }
            }
            (Outcome::Fail, _) if !reads.is_empty() => findings.add(Anomaly::PhantomWrite, || {
                Example::new(
                    format!("the send of {value:?} failed, yet it was read"),
                    std::iter::once(send_op).chain(polls()),
                )
            }),
            _ => {}
        }
        if places.len() > 1 {
            let anomaly =
                if idempotent.contains(&send_op.process) { Anomaly::IdempotentDuplicate } else { Anomaly::Duplicate };
            findings.add(anomaly, || {
                let at: Vec<String> = places.iter().map(|(tp, o)| format!("{tp}@{o}")).collect();
                let detail = format!("{value:?} is at {}", at.join(", "));
                Example::new(detail, std::iter::once(send_op).chain(polls()))
            });
        }
    }
    for (value, places) in &seen.reads {
        if !sent.contains(value) {
            findings.add(Anomaly::UnknownValue, || {
                Example::new(format!("{value:?} was read but never sent"), places.values().flatten().copied())
            });
        }
    }
}
