//! nonmonotonic-send: a send invoked after another send of its process was acknowledged must land above it.

use std::collections::HashMap;

use crate::check::report::{Anomaly, Example, Findings};
use crate::event::{Event, EventType, Op, OpIndex, Process, TopicPartition};
use crate::history::Operation;

pub(crate) fn check(events: &[Event], operations: &HashMap<OpIndex, &Operation>, findings: &mut Findings) {
    // Per process and partition, the highest acknowledged offset so far and the send that got it.
    let mut highest: HashMap<(Process, &TopicPartition), (i64, OpIndex)> = HashMap::new();
    // Per pending send, what `highest` was when it was invoked: only sends completed by then bound it.
    let mut bound_at_invoke: HashMap<OpIndex, (i64, OpIndex)> = HashMap::new();
    for event in events {
        let Op::Send(send) = &event.op else { continue };
        let key = (event.process, &send.tp);
        match (event.kind, send.offset) {
            (EventType::Invoke, _) => {
                if let Some(&bound) = highest.get(&key) {
                    bound_at_invoke.insert(event.index, bound);
                }
            }
            (EventType::Ok, Some(offset)) => {
                if let Some((earlier_offset, earlier)) = bound_at_invoke.remove(&event.index) {
                    if offset <= earlier_offset {
                        findings.add(Anomaly::NonmonotonicSend, || {
                            let detail = format!(
                                "{} sent to {} at offset {offset} after its send at offset {earlier_offset} completed",
                                event.process, send.tp
                            );
                            Example::new(
                                detail,
                                [earlier, event.index].iter().filter_map(|i| operations.get(i).copied()),
                            )
                        });
                    }
                }
                let entry = highest.entry(key).or_insert((offset, event.index));
                if offset > entry.0 {
                    *entry = (offset, event.index);
                }
            }
            _ => {
                bound_at_invoke.remove(&event.index);
            }
        }
    }
}
