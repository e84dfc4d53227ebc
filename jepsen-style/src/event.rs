//! One line of a history: the invocation or the completion of a client operation.

use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

/// A client: one producer or consumer instance of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Process(pub u64);

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// Names one operation: its invocation and its completion carry the same index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpIndex(pub u64);

impl fmt::Display for OpIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition { topic: topic.to_owned(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// The value of a send event. `offset` is present exactly on `ok`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    #[serde(flatten)]
    pub tp: TopicPartition,
    pub key: Option<String>,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// One record returned by a poll.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub tp: TopicPartition,
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
}

/// The value of a seek event: the consumer's next offset in one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seek {
    #[serde(flatten)]
    pub tp: TopicPartition,
    pub offset: i64,
}

/// One partition's offset committed by a consumer group: the next offset its members are to read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOffset {
    #[serde(flatten)]
    pub tp: TopicPartition,
    /// -1 in a fetch-committed result: the group committed nothing for the partition.
    pub offset: i64,
}

/// The value of a commit event, and of an ok fetch-committed: a group's offsets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub group: String,
    pub offsets: Vec<GroupOffset>,
}

/// The value of a fetch-committed invocation: which of a group's committed offsets to read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchCommitted {
    pub group: String,
    pub partitions: Vec<TopicPartition>,
}

/// What an event is about: the `f` and `value` fields of a line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "f", content = "value", rename_all = "lowercase")]
pub enum Op {
    Send(Send),
    /// The records read; empty unless the poll completed `ok`.
    Poll(Vec<Record>),
    Assign(Vec<TopicPartition>),
    Seek(Seek),
    /// The client was torn down; its pending operations are indeterminate.
    Crash,
    Commit(Commit),
    /// A fetch-committed as invoked, and as completed `fail` or `info`.
    #[serde(rename = "fetch-committed")]
    FetchCommitted(FetchCommitted),
    /// A fetch-committed completed `ok`: the offsets the group had committed.
    #[serde(rename = "fetch-committed")]
    Committed(Commit),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    Send,
    Poll,
    Assign,
    Seek,
    Crash,
    Commit,
    #[serde(rename = "fetch-committed")]
    FetchCommitted,
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Function::Send => "send",
            Function::Poll => "poll",
            Function::Assign => "assign",
            Function::Seek => "seek",
            Function::Crash => "crash",
            Function::Commit => "commit",
            Function::FetchCommitted => "fetch-committed",
        })
    }
}

impl Op {
    pub fn function(&self) -> Function {
        match self {
            Op::Send(_) => Function::Send,
            Op::Poll(_) => Function::Poll,
            Op::Assign(_) => Function::Assign,
            Op::Seek(_) => Function::Seek,
            Op::Crash => Function::Crash,
            Op::Commit(_) => Function::Commit,
            Op::FetchCommitted(_) | Op::Committed(_) => Function::FetchCommitted,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    /// Completed and took effect.
    Ok,
    /// Completed and certainly took no effect.
    Fail,
    /// Completed without telling: may or may not have taken effect.
    Info,
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        })
    }
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawEvent")]
pub struct Event {
    pub index: OpIndex,
    pub kind: EventType,
    pub process: Process,
    /// Nanoseconds on a monotonic clock; never decreases along a history.
    pub time: u64,
    pub op: Op,
}

/// An event whose value does not fit its `f` and `type`.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error("the value of a {f} event does not fit: {source}")]
    Value { f: Function, source: serde_json::Error },
    #[error("an ok send must carry its offset")]
    MissingOffset,
    #[error("only an ok send carries an offset")]
    UnexpectedOffset,
    #[error("only an ok poll carries records")]
    UnexpectedRecords,
    #[error("an ok fetch-committed must carry the committed offsets")]
    MissingCommitted,
    #[error("only an ok fetch-committed carries committed offsets")]
    UnexpectedCommitted,
}

impl Event {
    /// Checks what the types cannot say: offsets, records and committed offsets belong to `ok` completions only.
    pub fn check_shape(&self) -> Result<(), ShapeError> {
        let ok = self.kind == EventType::Ok;
        match &self.op {
            Op::Send(send) if ok && send.offset.is_none() => Err(ShapeError::MissingOffset),
            Op::Send(send) if !ok && send.offset.is_some() => Err(ShapeError::UnexpectedOffset),
            Op::Poll(records) if !ok && !records.is_empty() => Err(ShapeError::UnexpectedRecords),
            Op::FetchCommitted(_) if ok => Err(ShapeError::MissingCommitted),
            Op::Committed(_) if !ok => Err(ShapeError::UnexpectedCommitted),
            _ => Ok(()),
        }
    }
}

/// The line as written: `value`'s shape depends on `f`, so it is decoded in a second step.
#[derive(Deserialize)]
struct RawEvent {
    index: OpIndex,
    #[serde(rename = "type")]
    kind: EventType,
    f: Function,
    process: Process,
    time: u64,
    #[serde(default)]
    value: serde_json::Value,
}

impl TryFrom<RawEvent> for Event {
    type Error = ShapeError;

    fn try_from(raw: RawEvent) -> Result<Event, ShapeError> {
        let f = raw.f;
        let value = raw.value;
        let bad = |source| ShapeError::Value { f, source };
        let op = match f {
            Function::Send => Op::Send(serde_json::from_value(value).map_err(bad)?),
            Function::Poll => {
                let records: Option<Vec<Record>> = serde_json::from_value(value).map_err(bad)?;
                Op::Poll(records.unwrap_or_default())
            }
            Function::Assign => Op::Assign(serde_json::from_value(value).map_err(bad)?),
            Function::Seek => Op::Seek(serde_json::from_value(value).map_err(bad)?),
            Function::Crash => {
                serde_json::from_value::<()>(value).map_err(bad)?;
                Op::Crash
            }
            Function::Commit => Op::Commit(serde_json::from_value(value).map_err(bad)?),
            Function::FetchCommitted if raw.kind == EventType::Ok => {
                Op::Committed(serde_json::from_value(value).map_err(bad)?)
            }
            Function::FetchCommitted => Op::FetchCommitted(serde_json::from_value(value).map_err(bad)?),
        };
        let event = Event { index: raw.index, kind: raw.kind, process: raw.process, time: raw.time, op };
        event.check_shape()?;
        Ok(event)
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut line = serializer.serialize_struct("Event", 6)?;
        line.serialize_field("index", &self.index)?;
        line.serialize_field("type", &self.kind)?;
        line.serialize_field("f", &self.op.function())?;
        line.serialize_field("process", &self.process)?;
        line.serialize_field("time", &self.time)?;
        match &self.op {
            Op::Send(send) => line.serialize_field("value", send)?,
            Op::Poll(records) if self.kind == EventType::Ok => line.serialize_field("value", records)?,
            Op::Poll(_) | Op::Crash => line.serialize_field("value", &())?,
            Op::Assign(partitions) => line.serialize_field("value", partitions)?,
            Op::Seek(seek) => line.serialize_field("value", seek)?,
            Op::Commit(offsets) | Op::Committed(offsets) => line.serialize_field("value", offsets)?,
            Op::FetchCommitted(fetch) => line.serialize_field("value", fetch)?,
        }
        line.end()
    }
}
