//! Histories of Kafka client operations, and the checker that judges them.
//!
//! A workload records what its clients asked and what they were told in a [`HistoryBuilder`]; [`check`]
//! then looks for the anomalies in [`Anomaly`]. The checker is pure (no I/O, clock or randomness), so the
//! real-process harness and the simulator share it.
//!
//! # Operations
//!
//! Every operation is an invocation followed later by a completion: `ok` (it took effect), `fail` (it
//! certainly did not) or `info` (it may or may not have). An operation that never completes (its process
//! crashed, or the history ended) is indeterminate, like `info`.
//!
//! | `f`               | invocation `value`               | `ok` completion `value`                    |
//! |-------------------|----------------------------------|--------------------------------------------|
//! | `send`            | `{topic, partition, key, value}` | the same with `offset`                     |
//! | `poll`            | `null`                           | `[{topic, partition, offset, key, value}]` |
//! | `assign`          | `[{topic, partition}]`           | the same                                   |
//! | `seek`            | `{topic, partition, offset}`     | the same                                   |
//! | `crash`           | `null`                           | `null`                                     |
//! | `commit`          | `{group, offsets}`               | the same                                   |
//! | `fetch-committed` | `{group, partitions}`            | `{group, offsets}`                         |
//!
//! `fail` and `info` completions repeat the invocation's value. `key` may be `null`; each sent `value` is
//! unique, since values identify writes. A consumer's poll covers the partitions it is assigned. A commit
//! stores a consumer group's `offsets` (`[{topic, partition, offset}]`) with its coordinator; a
//! fetch-committed reads them back for `partitions` (`[{topic, partition}]`), answering some of them, each
//! at most once, with offset -1 for a partition the group committed nothing for.
//! A crash tears the process's client down: its pending operations stay indeterminate, and its consumer
//! position is forgotten.
//!
//! # Format
//!
//! JSON lines, one event per line. `index` names the operation (its invocation and completion share
//! it, so one process may have several sends in flight); `process` is the client; `time` is nanoseconds on
//! a monotonic clock and never decreases along the file.
//!
//! ```text
//! {"index":0,"type":"invoke","f":"send","process":1,"time":1000,"value":{"topic":"t","partition":0,"key":"k","value":"v0"}}
//! {"index":0,"type":"ok","f":"send","process":1,"time":2000,"value":{"topic":"t","partition":0,"key":"k","value":"v0","offset":0}}
//! {"index":1,"type":"invoke","f":"send","process":1,"time":3000,"value":{"topic":"t","partition":0,"key":null,"value":"v1"}}
//! {"index":1,"type":"info","f":"send","process":1,"time":9000,"value":{"topic":"t","partition":0,"key":null,"value":"v1"}}
//! {"index":2,"type":"invoke","f":"assign","process":2,"time":9100,"value":[{"topic":"t","partition":0}]}
//! {"index":2,"type":"ok","f":"assign","process":2,"time":9200,"value":[{"topic":"t","partition":0}]}
//! {"index":3,"type":"invoke","f":"seek","process":2,"time":9300,"value":{"topic":"t","partition":0,"offset":0}}
//! {"index":3,"type":"ok","f":"seek","process":2,"time":9400,"value":{"topic":"t","partition":0,"offset":0}}
//! {"index":4,"type":"invoke","f":"poll","process":2,"time":9500,"value":null}
//! {"index":4,"type":"ok","f":"poll","process":2,"time":9900,"value":[{"topic":"t","partition":0,"offset":0,"key":"k","value":"v0"}]}
//! {"index":5,"type":"invoke","f":"crash","process":1,"time":10000,"value":null}
//! {"index":5,"type":"ok","f":"crash","process":1,"time":10000,"value":null}
//! ```
//!
//! [`parse`] reads this (a bad line is a [`ParseError`] naming the line) and [`write`] writes it.
//!
//! # Anomalies
//!
//! See [`Anomaly`]. `duplicate` invalidates a history only under [`Options::idempotent`]; `idempotent-duplicate`
//! (a duplicate of a process in [`Options::idempotent_processes`]) always does. Reads of
//! aborted transactions (G1a) are not checked: Keel has no transactions yet.

mod builder;
mod check;
mod event;
mod history;
mod jsonl;
pub mod kafka;
#[cfg(not(madsim))]
pub mod run;

pub use builder::HistoryBuilder;
pub use check::{check, Anomaly, Example, Finding, Options, Outcomes, PartitionSummary, Report, Summary};
pub use event::{
    Commit, Event, EventType, FetchCommitted, Function, GroupOffset, Op, OpIndex, Process, Record, Seek, Send,
    ShapeError, TopicPartition,
};
pub use history::{History, HistoryError, InvalidEvent, Operation, Outcome};
pub use jsonl::{parse, write, ParseError};
