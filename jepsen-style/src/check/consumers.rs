//! nonmonotonic-poll and poll-skip: each consumer reads each partition densely and forwards.

use std::collections::HashMap;

use crate::check::report::{Anomaly, Example, Findings};
use crate::event::{Event, EventType, Op, OpIndex, Process, Record, TopicPartition};
use crate::history::Operation;

/// Where a consumer's next read of a partition must start. Offsets are dense in Keel (no compaction, no
/// transactions), so after reading offset o the next read is o + 1 exactly. With no position at all (after
/// an assign, a crash, or an indeterminate seek) a read may start anywhere.
#[derive(Clone, Copy, Debug)]
enum Position {
    /// After a seek, or a poll whose result is unknown: here or later.
    AtLeast(i64),
    /// After a read.
    Exactly(i64),
}

#[derive(Clone, Copy, Debug)]
struct Cursor {
    position: Position,
    /// The operation that set `position`, for examples.
    set_by: OpIndex,
}

pub(crate) fn check(events: &[Event], operations: &HashMap<OpIndex, &Operation>, findings: &mut Findings) {
    // A partition without a cursor may be read from anywhere.
    let mut cursors: HashMap<Process, HashMap<&TopicPartition, Cursor>> = HashMap::new();
    for event in events {
        let cursors = cursors.entry(event.process).or_default();
        match (&event.op, event.kind) {
            (Op::Crash, EventType::Invoke) => cursors.clear(),
            (_, EventType::Invoke | EventType::Fail) => {}
            (Op::Assign(_), EventType::Ok | EventType::Info) => cursors.clear(),
            (Op::Seek(seek), EventType::Ok) => {
                cursors.insert(&seek.tp, Cursor { position: Position::AtLeast(seek.offset), set_by: event.index });
            }
            (Op::Seek(seek), EventType::Info) => {
                cursors.remove(&seek.tp);
            }
            (Op::Poll(_), EventType::Info) => {
                // The poll may have advanced the consumer by any amount, but not moved it back.
                for cursor in cursors.values_mut() {
                    if let Position::Exactly(next) = cursor.position {
                        cursor.position = Position::AtLeast(next);
                    }
                }
            }
            (Op::Poll(records), EventType::Ok) => {
                for record in records {
                    let previous = cursors.insert(
                        &record.tp,
                        Cursor { position: Position::Exactly(record.offset + 1), set_by: event.index },
                    );
                    if let Some(previous) = previous {
                        judge(event, record, previous, operations, findings);
                    }
                }
            }
            // Group offsets move no consumer: a member that starts from them records its assign and seek.
            (Op::Send(_) | Op::Crash | Op::Commit(_) | Op::FetchCommitted(_) | Op::Committed(_), _) => {}
        }
    }
}

fn judge(
    poll: &Event,
    record: &Record,
    previous: Cursor,
    operations: &HashMap<OpIndex, &Operation>,
    findings: &mut Findings,
) {
    let (anomaly, expected) = match previous.position {
        Position::Exactly(next) if record.offset < next => (Anomaly::NonmonotonicPoll, format!("offset {next}")),
        Position::Exactly(next) if record.offset > next => (Anomaly::PollSkip, format!("offset {next}")),
        Position::AtLeast(from) if record.offset < from => {
            (Anomaly::NonmonotonicPoll, format!("offset {from} or later"))
        }
        Position::Exactly(_) | Position::AtLeast(_) => return,
    };
    findings.add(anomaly, || {
        let detail =
            format!("{} read {}@{} where it should have read {expected}", poll.process, record.tp, record.offset);
        let ops = [previous.set_by, poll.index];
        Example::new(detail, ops.iter().filter_map(|index| operations.get(index).copied()))
    });
}
