//! A well-formed sequence of events, and the operations it pairs them into.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use crate::event::{
    Commit, Event, EventType, FetchCommitted, Function, Op, OpIndex, Process, Record, ShapeError, TopicPartition,
};

/// Why an event cannot extend a history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("time {time} goes back from {previous}")]
    TimeWentBack { previous: u64, time: u64 },
    #[error("operation {0} was already invoked")]
    IndexReused(OpIndex),
    #[error("operation {0} is not pending (never invoked, already completed, or its process crashed)")]
    NotPending(OpIndex),
    #[error("operation {index} was invoked by {invoker} but completed by {process}")]
    WrongProcess { index: OpIndex, invoker: Process, process: Process },
    #[error("operation {index} was invoked as {invoked} but completed as {completed}")]
    WrongFunction { index: OpIndex, invoked: Function, completed: Function },
    #[error("operation {index} is a {function}: its ok completion needs the result")]
    ResultMissing { index: OpIndex, function: Function },
    #[error("operation {0} completed with another write than it was invoked with")]
    WrongWrite(OpIndex),
    #[error("fetch-committed {index} asked about group {asked:?} but was answered about {answered:?}")]
    WrongGroup { index: OpIndex, asked: String, answered: String },
    #[error(
        "fetch-committed {index} was answered for {partition}, which it did not ask for or was answered for twice"
    )]
    UnaskedPartition { index: OpIndex, partition: TopicPartition },
    #[error("value {0:?} is sent twice; values must identify writes")]
    ValueReused(String),
}

/// Accepts events one at a time, keeping what a well-formed history needs.
#[derive(Debug, Default)]
pub(crate) struct Validator {
    last_time: u64,
    invoked: HashSet<OpIndex>,
    pending: HashMap<OpIndex, Event>,
    written: HashSet<String>,
}

impl Validator {
    pub(crate) fn accept(&mut self, event: &Event) -> Result<(), HistoryError> {
        event.check_shape()?;
        if event.time < self.last_time {
            return Err(HistoryError::TimeWentBack { previous: self.last_time, time: event.time });
        }
        match event.kind {
            EventType::Invoke => self.invoke(event)?,
            EventType::Ok | EventType::Fail | EventType::Info => self.complete(event)?,
        }
        self.last_time = event.time;
        Ok(())
    }

    /// The invocation of a pending operation.
    pub(crate) fn pending(&self, index: OpIndex) -> Option<&Event> {
        self.pending.get(&index)
    }

    /// The pending operations of one process, in index order.
    pub(crate) fn pending_of(&self, process: Process) -> Vec<OpIndex> {
        let mut indices: Vec<OpIndex> =
            self.pending.values().filter(|event| event.process == process).map(|event| event.index).collect();
        indices.sort();
        indices
    }

    fn invoke(&mut self, event: &Event) -> Result<(), HistoryError> {
        if self.invoked.contains(&event.index) {
            return Err(HistoryError::IndexReused(event.index));
        }
        if let Op::Send(send) = &event.op {
            if !self.written.insert(send.value.clone()) {
                return Err(HistoryError::ValueReused(send.value.clone()));
            }
        }
        if event.op == Op::Crash {
            // What the process had in flight stays indeterminate forever.
            self.pending.retain(|_, pending| pending.process != event.process);
        }
        self.invoked.insert(event.index);
        self.pending.insert(event.index, event.clone());
        Ok(())
    }

    fn complete(&mut self, event: &Event) -> Result<(), HistoryError> {
        let index = event.index;
        let invocation = self.pending.get(&index).ok_or(HistoryError::NotPending(index))?;
        if invocation.process != event.process {
            return Err(HistoryError::WrongProcess { index, invoker: invocation.process, process: event.process });
        }
        let (invoked, completed) = (invocation.op.function(), event.op.function());
        if invoked != completed {
            return Err(HistoryError::WrongFunction { index, invoked, completed });
        }
        match (&invocation.op, &event.op) {
            (Op::Send(asked), Op::Send(done))
                if (&asked.tp, &asked.key, &asked.value) != (&done.tp, &done.key, &done.value) =>
            {
                return Err(HistoryError::WrongWrite(index));
            }
            (Op::Commit(asked), Op::Commit(done)) if asked != done => return Err(HistoryError::WrongWrite(index)),
            (Op::FetchCommitted(asked), Op::Committed(answer)) => answers(index, asked, answer)?,
            _ => {}
        }
        self.pending.remove(&index);
        Ok(())
    }
}

/// A fetch-committed's answer is about the group it asked, and each partition asked at most once.
fn answers(index: OpIndex, asked: &FetchCommitted, answer: &Commit) -> Result<(), HistoryError> {
    if asked.group != answer.group {
        return Err(HistoryError::WrongGroup { index, asked: asked.group.clone(), answered: answer.group.clone() });
    }
    let mut unanswered: HashSet<&TopicPartition> = asked.partitions.iter().collect();
    for offset in &answer.offsets {
        if !unanswered.remove(&offset.tp) {
            return Err(HistoryError::UnaskedPartition { index, partition: offset.tp.clone() });
        }
    }
    Ok(())
}

/// An event that cannot extend a history, and where it stands.
#[derive(Debug, thiserror::Error)]
#[error("event {position}: {error}")]
pub struct InvalidEvent {
    /// 0-based position in the event list.
    pub position: usize,
    pub error: HistoryError,
}

/// A well-formed history: every completion matches a pending invocation of the same process and function,
/// times never go back, and no value is sent twice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    events: Vec<Event>,
}

impl History {
    pub fn from_events(events: Vec<Event>) -> Result<History, InvalidEvent> {
        let mut validator = Validator::default();
        for (position, event) in events.iter().enumerate() {
            validator.accept(event).map_err(|error| InvalidEvent { position, error })?;
        }
        Ok(History { events })
    }

    /// Only for events a [`Validator`] accepted in this order.
    pub(crate) fn from_validated(events: Vec<Event>) -> History {
        History { events }
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn into_events(self) -> Vec<Event> {
        self.events
    }

    /// The operations, in invocation order. One that never completed (its process crashed, or the
    /// history ended first) is indeterminate.
    pub fn operations(&self) -> Vec<Operation> {
        let mut operations: Vec<Operation> = Vec::new();
        let mut position: HashMap<OpIndex, usize> = HashMap::new();
        for event in &self.events {
            if event.kind == EventType::Invoke {
                position.insert(event.index, operations.len());
                operations.push(Operation {
                    index: event.index,
                    process: event.process,
                    outcome: Outcome::Info,
                    invoke_time: event.time,
                    complete_time: None,
                    op: event.op.clone(),
                });
                continue;
            }
            let Some(&at) = position.get(&event.index) else { continue };
            let operation = &mut operations[at];
            operation.outcome = match event.kind {
                EventType::Ok => Outcome::Ok,
                EventType::Fail => Outcome::Fail,
                EventType::Invoke | EventType::Info => Outcome::Info,
            };
            operation.complete_time = Some(event.time);
            operation.op = event.op.clone();
        }
        operations
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Fail,
    /// Indeterminate: completed as `info`, or never completed.
    Info,
}

/// An invocation paired with its completion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Operation {
    pub index: OpIndex,
    pub process: Process,
    pub outcome: Outcome,
    pub invoke_time: u64,
    /// `None` when the operation never completed.
    pub complete_time: Option<u64>,
    /// The completion's op when there is one (it holds the offset or the records), else the invocation's.
    #[serde(flatten)]
    pub op: Op,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match (self.outcome, self.complete_time) {
            (Outcome::Ok, _) => "ok",
            (Outcome::Fail, _) => "fail",
            (Outcome::Info, Some(_)) => "info",
            (Outcome::Info, None) => "never completed",
        };
        write!(f, "{} {} {}", self.index, self.process, self.op.function())?;
        match &self.op {
            Op::Send(send) => {
                write!(f, " {} {:?} {outcome}", send.tp, send.value)?;
                if let Some(offset) = send.offset {
                    write!(f, " at offset {offset}")?;
                }
                Ok(())
            }
            Op::Poll(records) => {
                write!(f, " {outcome}")?;
                // Runs of consecutive records in one partition, so a long poll stays one line.
                let mut runs: Vec<(&Record, i64)> = Vec::new();
                for record in records {
                    match runs.last_mut() {
                        Some((first, last)) if first.tp == record.tp && *last + 1 == record.offset => {
                            *last = record.offset
                        }
                        _ => runs.push((record, record.offset)),
                    }
                }
                for (i, (first, last)) in runs.iter().enumerate() {
                    let sep = if i == 0 { ":" } else { "," };
                    if first.offset == *last {
                        write!(f, "{sep} {}@{} {:?}", first.tp, last, first.value)?;
                    } else {
                        write!(f, "{sep} {}@{}..={last}", first.tp, first.offset)?;
                    }
                }
                Ok(())
            }
            Op::Assign(partitions) => {
                let names: Vec<String> = partitions.iter().map(ToString::to_string).collect();
                write!(f, " [{}] {outcome}", names.join(", "))
            }
            Op::Seek(seek) => write!(f, " {} to {} {outcome}", seek.tp, seek.offset),
            Op::Crash => Ok(()),
            Op::Commit(commit) => write!(f, " {:?} {} {outcome}", commit.group, group_offsets(commit)),
            Op::FetchCommitted(fetch) => {
                let names: Vec<String> = fetch.partitions.iter().map(ToString::to_string).collect();
                write!(f, " {:?} [{}] {outcome}", fetch.group, names.join(", "))
            }
            Op::Committed(committed) => write!(f, " {:?} {outcome}: {}", committed.group, group_offsets(committed)),
        }
    }
}

/// `t/0@5, t/1@-1`
fn group_offsets(commit: &Commit) -> String {
    let offsets: Vec<String> = commit.offsets.iter().map(|o| format!("{}@{}", o.tp, o.offset)).collect();
    offsets.join(", ")
}
