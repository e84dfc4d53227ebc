//! The recorder a workload appends events to as its clients act.

use crate::event::{Commit, Event, EventType, Function, GroupOffset, Op, OpIndex, Process, Record};
use crate::history::{History, HistoryError, Validator};

/// Appends events, refusing any that would make the history ill-formed, so a workload's bug shows up
/// where it happens rather than as an anomaly. Times come from the caller: the library reads no clock.
#[derive(Debug, Default)]
pub struct HistoryBuilder {
    validator: Validator,
    events: Vec<Event>,
    next_index: u64,
}

impl HistoryBuilder {
    pub fn new() -> HistoryBuilder {
        HistoryBuilder::default()
    }

    /// Starts an operation; `op` is shaped as an invocation (a send without offset, a poll without records).
    pub fn invoke(&mut self, process: Process, time: u64, op: Op) -> Result<OpIndex, HistoryError> {
        let index = OpIndex(self.next_index);
        self.push(Event { index, kind: EventType::Invoke, process, time, op })?;
        self.next_index += 1;
        Ok(index)
    }

    /// Completes an assign, seek, crash or commit.
    pub fn ok(&mut self, index: OpIndex, time: u64) -> Result<(), HistoryError> {
        self.complete(index, time, EventType::Ok, |op| match op {
            Op::Send(_) | Op::Poll(_) | Op::FetchCommitted(_) | Op::Committed(_) => {
                Err(HistoryError::ResultMissing { index, function: op.function() })
            }
            Op::Assign(_) | Op::Seek(_) | Op::Crash | Op::Commit(_) => Ok(op),
        })
    }

    pub fn ok_send(&mut self, index: OpIndex, time: u64, offset: i64) -> Result<(), HistoryError> {
        self.complete(index, time, EventType::Ok, |op| match op {
            Op::Send(mut send) => {
                send.offset = Some(offset);
                Ok(Op::Send(send))
            }
            other => Err(wrong(index, &other, Function::Send)),
        })
    }

    pub fn ok_poll(&mut self, index: OpIndex, time: u64, records: Vec<Record>) -> Result<(), HistoryError> {
        self.complete(index, time, EventType::Ok, |op| match op {
            Op::Poll(_) => Ok(Op::Poll(records)),
            other => Err(wrong(index, &other, Function::Poll)),
        })
    }

    /// `offsets` answers some of the partitions asked, -1 for those the group committed nothing for.
    pub fn ok_fetch_committed(
        &mut self,
        index: OpIndex,
        time: u64,
        offsets: Vec<GroupOffset>,
    ) -> Result<(), HistoryError> {
        self.complete(index, time, EventType::Ok, |op| match op {
            Op::FetchCommitted(fetch) => Ok(Op::Committed(Commit { group: fetch.group, offsets })),
            other => Err(wrong(index, &other, Function::FetchCommitted)),
        })
    }

    /// The operation certainly took no effect.
    pub fn fail(&mut self, index: OpIndex, time: u64) -> Result<(), HistoryError> {
        self.complete(index, time, EventType::Fail, Ok)
    }

    /// The operation may or may not have taken effect (a timeout, a lost connection).
    pub fn info(&mut self, index: OpIndex, time: u64) -> Result<(), HistoryError> {
        self.complete(index, time, EventType::Info, Ok)
    }

    /// The client is torn down: its pending operations complete as `info`, then a crash operation is recorded.
    pub fn crash(&mut self, process: Process, time: u64) -> Result<(), HistoryError> {
        for index in self.validator.pending_of(process) {
            self.info(index, time)?;
        }
        let index = self.invoke(process, time, Op::Crash)?;
        self.ok(index, time)
    }

    /// Operations still pending stay so: the history says they never completed.
    pub fn finish(self) -> History {
        History::from_validated(self.events)
    }

    /// `complete` turns the invocation's op into the completion's.
    fn complete(
        &mut self,
        index: OpIndex,
        time: u64,
        kind: EventType,
        complete: impl FnOnce(Op) -> Result<Op, HistoryError>,
    ) -> Result<(), HistoryError> {
        let invocation = self.validator.pending(index).ok_or(HistoryError::NotPending(index))?;
        let process = invocation.process;
        let op = complete(invocation.op.clone())?;
        self.push(Event { index, kind, process, time, op })
    }

    fn push(&mut self, event: Event) -> Result<(), HistoryError> {
        self.validator.accept(&event)?;
        self.events.push(event);
        Ok(())
    }
}

fn wrong(index: OpIndex, invoked: &Op, completed: Function) -> HistoryError {
    HistoryError::WrongFunction { index, invoked: invoked.function(), completed }
}
