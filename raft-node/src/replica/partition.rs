//! A partition replica: the partition log machine of `log-core` driven by
//! the group's raft log, the leader's produce path (stamp, propose, wait for
//! the acks the client asked for) and its fetch path (stored batches up to
//! the high watermark, as they are).

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use log_core::batch::RecordBatch;
use log_core::partition::{DataEntry, EntryKind, PartitionLog, PartitionSnapshot, RetentionPolicy, SegmentSpan};
use log_core::producer::{ProducerBatch, SequenceCheck};
use log_core::ErrorCode;
use raft::eraftpb::{Entry, EntryType, Snapshot};
use tokio::sync::oneshot;

use super::{Machine, Replica, ReplicaError};
use crate::planted::{planted, Bug};
use crate::storage::RaftLog;
use crate::watch;

/// Kafka's `acks`: when a produce is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// Not at all.
    None,
    /// Once the leader has the batch durable; it may still be lost on failover.
    Leader,
    /// Once a raft majority has it durable (committed).
    All,
}

/// Where a ListOffsets request points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    Timestamp(i64),
}

/// The answer to one produced batch: its base offset, or why it failed.
pub type ProduceResult = Result<i64, ErrorCode>;

struct Waiter {
    term: u64,
    base_offset: i64,
    acks: Acks,
    reply: oneshot::Sender<ProduceResult>,
}

/// A proposal not yet seen in a Ready: its offsets are taken.
struct Proposed {
    producer: Option<ProducerBatch>,
    base_offset: i64,
    record_count: i64,
}

pub struct PartitionMachine {
    log: PartitionLog,
    /// Proposed since the last Ready, in order.
    proposed: Vec<Proposed>,
    /// Produce requests waiting for durability or commit, by raft index.
    waiters: BTreeMap<u64, Waiter>,
    high_watermark: watch::Sender<i64>,
    /// Opened on a log that already held entries (a restart); only a
    /// planted bug reads it.
    reopened: bool,
}

/// What a fetch of one partition returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedData {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Whole stored batches, concatenated; empty when nothing is readable.
    pub records: Bytes,
}

fn entry_kind(entry: &Entry) -> Result<EntryKind, ReplicaError> {
    if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
        return Ok(EntryKind::Empty);
    }
    let batch = RecordBatch::read(entry.data.clone())
        .map_err(|e| ReplicaError::Machine(format!("entry {} is not a record batch: {e}", entry.index)))?;
    Ok(EntryKind::Data(DataEntry::of(&batch)))
}

impl PartitionMachine {
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Answers waiters through `index` that `acks` allows to complete now:
    /// success if the entry at their index still has their term.
    fn resolve(&mut self, index: u64, log: &RaftLog, done: impl Fn(Acks) -> bool) {
        let ready: Vec<u64> = self.waiters.range(..=index).filter(|(_, w)| done(w.acks)).map(|(&i, _)| i).collect();
        for i in ready {
            if let Some(waiter) = self.waiters.remove(&i) {
                let result = match log.term(i) {
                    Ok(term) if term == waiter.term => Ok(waiter.base_offset),
                    _ => Err(ErrorCode::NotLeaderOrFollower),
                };
                // The client may have gone (timeout); nothing to do then.
                let _ = waiter.reply.send(result);
            }
        }
    }
}

impl Machine for PartitionMachine {
    fn recover(log: &RaftLog) -> Result<Self, ReplicaError> {
        let snapshot = log.snapshot().data.clone();
        let start = if snapshot.is_empty() {
            PartitionSnapshot { index: 0, next_offset: 0, producers: Default::default() }
        } else {
            PartitionSnapshot::decode(&snapshot)
                .map_err(|e| ReplicaError::Machine(format!("unreadable partition snapshot: {e}")))?
        };
        let mut machine = PartitionMachine {
            log: PartitionLog::from_snapshot(&start),
            proposed: Vec::new(),
            waiters: BTreeMap::new(),
            high_watermark: watch::Sender::new(0),
            reopened: log.last_index() > 0,
        };
        let last = log.last_index();
        let mut next = machine.log.last_index() + 1;
        while next <= last {
            let entries = log.entries(next, last + 1, Some(16 << 20))?;
            machine.on_entries(&entries)?;
            next += entries.len() as u64;
        }
        let commit = log.hard_state().commit.max(machine.log.committed_index());
        let hw = machine.log.commit(commit).map_err(|e| ReplicaError::Machine(e.to_string()))?;
        machine.high_watermark.send_replace(hw);
        Ok(machine)
    }

    fn on_entries(&mut self, entries: &[Entry]) -> Result<(), ReplicaError> {
        self.proposed.clear();
        let Some(first) = entries.first() else { return Ok(()) };
        // Entries replacing an uncommitted suffix void the produces waiting on it.
        if first.index <= self.log.last_index() {
            let voided: Vec<u64> = self.waiters.range(first.index..=self.log.last_index()).map(|(&i, _)| i).collect();
            for i in voided {
                if let Some(w) = self.waiters.remove(&i) {
                    let _ = w.reply.send(Err(ErrorCode::NotLeaderOrFollower));
                }
            }
        }
        for entry in entries {
            self.log.append(entry.index, &entry_kind(entry)?).map_err(|e| ReplicaError::Machine(e.to_string()))?;
        }
        Ok(())
    }

    fn on_persisted(&mut self, index: u64, log: &RaftLog) {
        let early = planted(Bug::AckBeforeCommit);
        self.resolve(index, log, |acks| acks == Acks::Leader || early);
    }

    fn on_committed(&mut self, entries: &[Entry], log: &RaftLog) -> Result<(), ReplicaError> {
        let Some(last) = entries.last() else { return Ok(()) };
        let hw = self.log.commit(last.index).map_err(|e| ReplicaError::Machine(e.to_string()))?;
        self.high_watermark.send_replace(hw);
        self.resolve(last.index, log, |_| true);
        Ok(())
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), ReplicaError> {
        let state = PartitionSnapshot::decode(&snapshot.data)
            .map_err(|e| ReplicaError::Machine(format!("unreadable partition snapshot: {e}")))?;
        for (_, w) in std::mem::take(&mut self.waiters) {
            let _ = w.reply.send(Err(ErrorCode::NotLeaderOrFollower));
        }
        self.proposed.clear();
        self.log = PartitionLog::from_snapshot(&state);
        self.high_watermark.send_replace(self.log.high_watermark());
        Ok(())
    }

    fn snapshot_data(&self, index: u64) -> Result<Vec<u8>, ReplicaError> {
        Ok(self.log.snapshot(index).map_err(|e| ReplicaError::Machine(e.to_string()))?.encode())
    }

    fn on_compacted(&mut self, index: u64) -> Result<(), ReplicaError> {
        self.log.compact(index).map_err(|e| ReplicaError::Machine(e.to_string()))
    }

    fn offset_after(&self, index: u64) -> Option<i64> {
        self.log.end_offset_at(index)
    }
}

impl Replica<PartitionMachine> {
    /// Applies the topic's retention to this replica's own log at `now_ms`:
    /// deletes the oldest whole segments Kafka's rules let go (committed and
    /// applied only), and moves the log start offset past them. A leader
    /// keeps what its recently active followers still need, so that a
    /// follower slightly behind gets entries rather than a snapshot. Returns
    /// the raft index compacted through, if anything was.
    pub fn enforce_retention(&mut self, now_ms: i64, policy: RetentionPolicy) -> Result<Option<u64>, ReplicaError> {
        let segments: Vec<SegmentSpan> = self
            .log()
            .segments()
            .into_iter()
            .map(|s| SegmentSpan { first_index: s.first_index, last_index: s.last_index, bytes: s.bytes })
            .collect();
        let Some(cut) = self.machine.log.retention_cut(&segments, now_ms, policy) else { return Ok(None) };
        let limit = cut.min(self.followers_floor());
        // Segment boundaries only: a partly covered segment would stay on disk.
        let Some(cut) = segments.iter().map(|s| s.last_index).filter(|&last| last <= limit).max() else {
            return Ok(None);
        };
        if cut < self.log().first_index() || !self.can_compact_through(cut) {
            return Ok(None);
        }
        self.compact(cut)?;
        debug_assert!(self.log().first_index() == cut + 1 && self.machine.log.first_index() == cut + 1);
        Ok(Some(cut))
    }

    /// On a leader, the lowest index a recently active follower has; no
    /// bound elsewhere (a follower does not know its peers' progress).
    fn followers_floor(&self) -> u64 {
        if !self.is_leader() {
            return u64::MAX;
        }
        let me = self.raw.raft.id;
        let followers = self.raw.raft.prs().iter().filter(|(&id, pr)| id != me && pr.recent_active);
        followers.map(|(_, pr)| pr.matched).min().unwrap_or(u64::MAX)
    }

    /// The leader's produce path for one validated batch. The reply comes
    /// when `acks` is met; with `Acks::None` it is dropped unanswered.
    pub fn produce(&mut self, batch: RecordBatch, acks: Acks, reply: oneshot::Sender<ProduceResult>) {
        if !self.is_leader() {
            let _ = reply.send(Err(ErrorCode::NotLeaderOrFollower));
            return;
        }
        let machine = &self.machine;
        let producer = batch.producer();
        if let Some(p) = &producer {
            let proposed = || machine.proposed.iter().filter_map(|q| q.producer.as_ref().map(|b| (b, q.base_offset)));
            let mut check = machine.log.check_producer(p, proposed());
            if planted(Bug::DedupWindowOffByOne) && matches!(check, Ok(SequenceCheck::Duplicate { .. })) {
                // The window one batch short: the producer's newest batch is not in it.
                let next = ProducerBatch { first_seq: p.last_seq().wrapping_add(1), ..*p };
                if machine.log.check_producer(&next, proposed()) == Ok(SequenceCheck::Append) {
                    check = Ok(SequenceCheck::Append);
                }
            }
            match check {
                Ok(SequenceCheck::Append) => {}
                // A retry of a batch already written: answer with its offset
                // once it is as durable as asked; until then the client retries.
                Ok(SequenceCheck::Duplicate { base_offset }) => {
                    let done = acks != Acks::All || base_offset < machine.log.high_watermark();
                    let _ = reply.send(if done { Ok(base_offset) } else { Err(ErrorCode::RequestTimedOut) });
                    return;
                }
                Err(e) => {
                    let _ = reply.send(Err(e.code()));
                    return;
                }
            }
        }
        let taken: i64 = machine.proposed.iter().map(|p| p.record_count).sum();
        let base_offset = machine.log.next_offset() + taken;
        let record_count = i64::from(batch.record_count());
        let term = self.term();
        // Kafka's partition leader epoch is the raft term, which fits: terms
        // start at 1 and grow by elections, far below i32::MAX.
        let stamped = batch.stamp(base_offset, i32::try_from(term).unwrap_or(i32::MAX));
        let index = match self.propose(stamped.into_bytes().to_vec()) {
            Ok(index) => index,
            Err(_) => {
                let _ = reply.send(Err(ErrorCode::NotLeaderOrFollower));
                return;
            }
        };
        self.machine.proposed.push(Proposed { producer, base_offset, record_count });
        if acks != Acks::None {
            let base_offset = base_offset + i64::from(self.machine.reopened && planted(Bug::OffsetAfterRestart));
            self.machine.waiters.insert(index, Waiter { term, base_offset, acks, reply });
        }
    }

    /// The offset a ListOffsets request asks for. By timestamp, the answer is
    /// the base offset of the first batch reaching it (Kafka resolves to the
    /// record; a consumer starting at the batch sees the same records first),
    /// or -1 when no record is that recent.
    pub fn list_offset(&self, spec: OffsetSpec) -> Result<i64, ErrorCode> {
        if !self.is_leader() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let log = &self.machine.log;
        Ok(match spec {
            OffsetSpec::Earliest => log.log_start_offset(),
            OffsetSpec::Latest => log.high_watermark(),
            OffsetSpec::Timestamp(ts) => log.locate_timestamp(ts).and_then(|i| log.base_offset_of(i)).unwrap_or(-1),
        })
    }

    /// Committed batches from `offset`, at most about `max_bytes` (but always
    /// the whole first batch, as Kafka does, so a consumer can make progress).
    pub fn fetch(&self, offset: i64, max_bytes: u64) -> Result<FetchedData, ErrorCode> {
        if !self.is_leader() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let log = &self.machine.log;
        let mut data = FetchedData {
            high_watermark: log.high_watermark(),
            log_start_offset: log.log_start_offset(),
            records: Bytes::new(),
        };
        let Some(first) = log.locate(offset)? else { return Ok(data) };
        let end = if planted(Bug::FetchAboveHw) { self.log().last_index() } else { log.committed_index() };
        let entries = self.log().entries(first, end + 1, Some(max_bytes)).map_err(|_| ErrorCode::KafkaStorageError)?;
        let mut records = BytesMut::new();
        for entry in entries.iter().filter(|e| e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty()) {
            if !records.is_empty() && (records.len() + entry.data.len()) as u64 > max_bytes {
                break;
            }
            records.extend_from_slice(&entry.data);
        }
        data.records = records.freeze();
        Ok(data)
    }
}
