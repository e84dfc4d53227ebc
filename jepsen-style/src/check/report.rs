//! What the checker found: anomalies with counts and examples, a verdict, and summary counts.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::event::TopicPartition;
use crate::history::Operation;

/// Examples kept per anomaly, and operations kept per example.
const MAX_EXAMPLES: usize = 8;
const MAX_OPS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Anomaly {
    /// An acknowledged send never read, though reads went past its offset.
    LostWrite,
    /// An acknowledged send never read, and no read went past its offset.
    Unseen,
    /// One value at more than one offset.
    Duplicate,
    /// One value of an idempotent producer at more than one offset.
    IdempotentDuplicate,
    /// Two values at one offset, or a value read at another offset than its send was acknowledged at.
    InconsistentOffsets,
    /// A process's send landed at or below the offset of a send it had completed before.
    NonmonotonicSend,
    /// A consumer read a partition backwards with no assign or seek in between.
    NonmonotonicPoll,
    /// A consumer jumped over offsets with no assign or seek in between.
    PollSkip,
    /// A read of a value whose send failed.
    PhantomWrite,
    /// A read of a value no send wrote.
    UnknownValue,
    /// A fetch of a group's committed offset returned one that a commit acknowledged before the fetch
    /// began had overwritten (or one no commit wrote).
    LostCommit,
    /// A group committed past an offset that some poll read but none of its members had read.
    Unprocessed,
}

impl Anomaly {
    pub fn name(self) -> &'static str {
        match self {
            Anomaly::LostWrite => "lost-write",
            Anomaly::Unseen => "unseen",
            Anomaly::Duplicate => "duplicate",
            Anomaly::IdempotentDuplicate => "idempotent-duplicate",
            Anomaly::InconsistentOffsets => "inconsistent-offsets",
            Anomaly::NonmonotonicSend => "nonmonotonic-send",
            Anomaly::NonmonotonicPoll => "nonmonotonic-poll",
            Anomaly::PollSkip => "poll-skip",
            Anomaly::PhantomWrite => "phantom-write",
            Anomaly::UnknownValue => "unknown-value",
            Anomaly::LostCommit => "lost-commit",
            Anomaly::Unprocessed => "unprocessed",
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One instance of an anomaly: what is wrong, and the operations that show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Example {
    pub detail: String,
    pub ops: Vec<Operation>,
}

impl Example {
    /// Keeps each operation once (a poll may witness several records of one anomaly).
    pub(crate) fn new<'a>(detail: String, ops: impl IntoIterator<Item = &'a Operation>) -> Example {
        let mut kept: Vec<Operation> = Vec::new();
        for op in ops {
            if kept.len() == MAX_OPS {
                break;
            }
            if !kept.iter().any(|k| k.index == op.index) {
                kept.push(op.clone());
            }
        }
        Example { detail, ops: kept }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub anomaly: Anomaly,
    pub count: usize,
    /// Whether this anomaly makes the history invalid under the options checked with.
    pub invalidating: bool,
    /// At most 8, the first found.
    pub examples: Vec<Example>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    pub ok: usize,
    pub fail: usize,
    /// Indeterminate, including operations that never completed.
    pub info: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionSummary {
    pub partition: TopicPartition,
    pub max_acked_offset: Option<i64>,
    pub max_read_offset: Option<i64>,
    /// The longest time between two consecutive acknowledgements of sends to
    /// the partition, in nanoseconds: how long it took no write (availability).
    pub longest_write_gap_ns: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub sends: Outcomes,
    pub polls: Outcomes,
    pub commits: Outcomes,
    pub fetches_committed: Outcomes,
    /// Records returned by ok polls, counting rereads.
    pub records_read: usize,
    /// Distinct values read.
    pub values_read: usize,
    pub partitions: Vec<PartitionSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub valid: bool,
    /// `valid`, or `invalid: ` and the invalidating anomalies.
    pub verdict: String,
    /// In the order of [`Anomaly`]; only anomalies found.
    pub anomalies: Vec<Finding>,
    pub summary: Summary,
}

impl Report {
    pub fn finding(&self, anomaly: Anomaly) -> Option<&Finding> {
        self.anomalies.iter().find(|finding| finding.anomaly == anomaly)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.verdict)?;
        for finding in &self.anomalies {
            let note = if finding.invalidating { "" } else { " (not invalidating)" };
            writeln!(f, "\n{}: {}{note}", finding.anomaly, finding.count)?;
            for example in &finding.examples {
                writeln!(f, "  - {}", example.detail)?;
                for op in &example.ops {
                    writeln!(f, "      {op}")?;
                }
            }
        }
        let s = &self.summary;
        writeln!(f, "\nsends: {} ok, {} fail, {} info", s.sends.ok, s.sends.fail, s.sends.info)?;
        writeln!(f, "polls: {} ok, {} fail, {} info", s.polls.ok, s.polls.fail, s.polls.info)?;
        let (c, fc) = (&s.commits, &s.fetches_committed);
        writeln!(f, "commits: {} ok, {} fail, {} info", c.ok, c.fail, c.info)?;
        writeln!(f, "fetch-committed: {} ok, {} fail, {} info", fc.ok, fc.fail, fc.info)?;
        writeln!(f, "read: {} records, {} distinct values", s.records_read, s.values_read)?;
        for p in &s.partitions {
            let show = |offset: Option<i64>| offset.map_or_else(|| "-".to_owned(), |o| o.to_string());
            let gap = p.longest_write_gap_ns.map_or_else(|| "-".to_owned(), |ns| format!("{:.3}s", ns as f64 / 1e9));
            writeln!(
                f,
                "{}: max acked offset {}, max read offset {}, longest gap between acknowledged writes {gap}",
                p.partition,
                show(p.max_acked_offset),
                show(p.max_read_offset)
            )?;
        }
        Ok(())
    }
}

/// Counts every instance and keeps the first few as examples.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    found: BTreeMap<Anomaly, (usize, Vec<Example>)>,
}

impl Findings {
    /// `example` is only built while there is room for it.
    pub(crate) fn add(&mut self, anomaly: Anomaly, example: impl FnOnce() -> Example) {
        let (count, examples) = self.found.entry(anomaly).or_default();
        *count += 1;
        if examples.len() < MAX_EXAMPLES {
            examples.push(example());
        }
    }

    pub(crate) fn into_report(self, idempotent: bool, summary: Summary) -> Report {
        let anomalies: Vec<Finding> = self
            .found
            .into_iter()
            .map(|(anomaly, (count, examples))| Finding {
                anomaly,
                count,
                // Without idempotence a producer's retry may legitimately write a value twice.
                invalidating: idempotent || anomaly != Anomaly::Duplicate,
                examples,
            })
            .collect();
        let bad: Vec<&str> = anomalies.iter().filter(|f| f.invalidating).map(|f| f.anomaly.name()).collect();
        let verdict = if bad.is_empty() { "valid".to_owned() } else { format!("invalid: {}", bad.join(", ")) };
        Report { valid: bad.is_empty(), verdict, anomalies, summary }
    }
}
