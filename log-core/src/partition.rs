//! The partition log machine: the Kafka view of one partition's raft log.
//!
//! Every replica feeds it the same raft entries in the same order, so every
//! replica computes the same Kafka offsets: the base offset of a data entry is
//! the sum of the record counts of the data entries before it. Raft no-ops and
//! configuration changes take no offset. Appending over an uncommitted suffix
//! (a raft conflict) rolls the next offset back; committed entries never move.
//!
//! Committing entries moves the high watermark and applies their producer
//! state. The leader stamps a batch with `next_offset()` before proposing it;
//! every replica checks that stamp on append.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::batch::RecordBatch;
use crate::producer::{ProducerBatch, ProducerTable, SequenceCheck, SequenceError};
use crate::ErrorCode;

/// What the partition log needs to know about one raft entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A record batch, with the base offset the leader stamped into it.
    Data(DataEntry),
    /// A raft no-op or configuration change: no Kafka offset.
    Empty,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataEntry {
    pub stamped_base_offset: i64,
    pub record_count: i32,
    pub max_timestamp: i64,
    pub producer: Option<ProducerBatch>,
}

impl DataEntry {
    pub fn of(batch: &RecordBatch) -> DataEntry {
        DataEntry {
            stamped_base_offset: batch.base_offset(),
            record_count: batch.record_count(),
            max_timestamp: batch.max_timestamp(),
            producer: batch.producer(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("entry {index} would overwrite the committed log (committed through {committed})")]
    OverwriteCommitted { index: u64, committed: u64 },
    #[error("entry {index} leaves a gap after the last entry {last}")]
    Gap { index: u64, last: u64 },
    #[error("entry {index} is stamped with offset {stamped}, but the log puts it at {expected}")]
    OffsetMismatch { index: u64, stamped: i64, expected: i64 },
    #[error("record count {0} is not positive")]
    RecordCount(i32),
    #[error("commit index {index} is beyond the last entry {last}")]
    CommitBeyondLog { index: u64, last: u64 },
    #[error("commit index {index} is below the committed index {committed}")]
    CommitRegressed { index: u64, committed: u64 },
    #[error("index {index} is outside the retained committed log [{first}, {committed}]")]
    OutOfRange { index: u64, first: u64, committed: u64 },
}

/// Per raft entry: the Kafka offset after it and the largest timestamp up to
/// and including it (a running maximum, like Kafka's time index, so lookups by
/// time are a binary search). The maximum runs from where this replica's log
/// began (its last snapshot restore); compaction keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    end: i64,
    max_timestamp: i64,
}

/// An uncommitted entry that carries producer state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    index: u64,
    batch: ProducerBatch,
    base_offset: i64,
}

/// The state a replica needs to continue from a raft index without the log
/// before it: a raft snapshot's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    /// The last raft index the snapshot covers.
    pub index: u64,
    /// The Kafka offset after that index: the log start offset of a replica
    /// restored from it.
    pub next_offset: i64,
    /// Producer state, possibly as of a later committed index: replaying the
    /// entries after `index` over it is idempotent.
    pub producers: ProducerTable,
}

impl PartitionSnapshot {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a snapshot of plain data always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A segment of the stored log, as the storage reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSpan {
    pub first_index: u64,
    pub last_index: u64,
    pub bytes: u64,
}

/// Kafka's `retention.ms` and `retention.bytes`; -1 means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub retention_ms: i64,
    pub retention_bytes: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLog {
    /// Raft index of `spans[0]`; always >= 1 (raft's first index).
    first_index: u64,
    /// Kafka offset at which `first_index` begins: the log start offset.
    first_offset: i64,
    /// The running maximum timestamp before `first_index` (-1: none).
    first_max_timestamp: i64,
    spans: VecDeque<Span>,
    /// Last committed raft index; `first_index - 1 <= committed <= last_index()`.
    committed: u64,
    /// Producer state of the committed log.
    producers: ProducerTable,
    /// Producer batches of the uncommitted suffix, in log order.
    pending: VecDeque<Pending>,
}

impl Default for PartitionLog {
    fn default() -> Self {
        Self::from_snapshot(&PartitionSnapshot { index: 0, next_offset: 0, producers: ProducerTable::default() })
    }
}

impl PartitionLog {
    /// A log that continues after `snapshot` (the empty log continues after index 0).
    pub fn from_snapshot(snapshot: &PartitionSnapshot) -> Self {
        PartitionLog {
            first_index: snapshot.index + 1,
            first_offset: snapshot.next_offset,
            first_max_timestamp: -1,
            spans: VecDeque::new(),
            committed: snapshot.index,
            producers: snapshot.producers.clone(),
            pending: VecDeque::new(),
        }
    }

    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    pub fn last_index(&self) -> u64 {
        self.first_index + self.spans.len() as u64 - 1
    }

    pub fn committed_index(&self) -> u64 {
        self.committed
    }

    pub fn log_start_offset(&self) -> i64 {
        self.first_offset
    }

    /// The offset the next data entry gets: what the leader stamps.
    pub fn next_offset(&self) -> i64 {
        self.end_at(self.last_index())
    }

    /// The offset after the last committed entry; consumers read below it.
    pub fn high_watermark(&self) -> i64 {
        self.end_at(self.committed)
    }

    /// The Kafka offset after entry `index`, for `first_index - 1 <= index <= last_index()`.
    fn end_at(&self, index: u64) -> i64 {
        debug_assert!(index + 1 >= self.first_index && index <= self.last_index());
        if index < self.first_index {
            self.first_offset
        } else {
            self.spans[(index - self.first_index) as usize].end
        }
    }

    fn max_timestamp_at(&self, index: u64) -> i64 {
        if index < self.first_index {
            self.first_max_timestamp
        } else {
            self.spans[(index - self.first_index) as usize].max_timestamp
        }
    }

    /// The Kafka offset after entry `index`: the log end offset of a replica
    /// whose log ends there. `None` outside `first_index - 1 ..= last_index()`
    /// (compacted away, or not in this log).
    pub fn end_offset_at(&self, index: u64) -> Option<i64> {
        (index >= self.first_index - 1 && index <= self.last_index()).then(|| self.end_at(index))
    }

    /// Base offset of entry `index` (for a data entry, its first record's offset).
    pub fn base_offset_of(&self, index: u64) -> Option<i64> {
        (index >= self.first_index && index <= self.last_index()).then(|| self.end_at(index - 1))
    }

    /// Appends raft entry `index`. An index at or below the last entry
    /// replaces the uncommitted suffix from there, as raft does on conflict.
    /// Returns the entry's base offset. A rejected entry changes nothing.
    pub fn append(&mut self, index: u64, kind: &EntryKind) -> Result<i64, LogError> {
        if index <= self.committed {
            return Err(LogError::OverwriteCommitted { index, committed: self.committed });
        }
        if index > self.last_index() + 1 {
            return Err(LogError::Gap { index, last: self.last_index() });
        }
        let base = self.end_at(index - 1);
        let max_before = self.max_timestamp_at(index - 1);
        let span = match kind {
            EntryKind::Empty => Span { end: base, max_timestamp: max_before },
            EntryKind::Data(data) => {
                if data.record_count < 1 {
                    return Err(LogError::RecordCount(data.record_count));
                }
                if data.stamped_base_offset != base {
                    return Err(LogError::OffsetMismatch { index, stamped: data.stamped_base_offset, expected: base });
                }
                Span { end: base + i64::from(data.record_count), max_timestamp: max_before.max(data.max_timestamp) }
            }
        };
        self.truncate_from(index);
        self.spans.push_back(span);
        if let EntryKind::Data(DataEntry { producer: Some(batch), .. }) = kind {
            self.pending.push_back(Pending { index, batch: *batch, base_offset: base });
        }
        Ok(base)
    }

    fn truncate_from(&mut self, index: u64) {
        debug_assert!(index > self.committed);
        self.spans.truncate((index - self.first_index) as usize);
        while self.pending.back().is_some_and(|p| p.index >= index) {
            self.pending.pop_back();
        }
    }

    /// Commits through `index`: moves the high watermark and applies the
    /// producer state of the newly committed entries. Returns the high watermark.
    pub fn commit(&mut self, index: u64) -> Result<i64, LogError> {
        if index > self.last_index() {
            return Err(LogError::CommitBeyondLog { index, last: self.last_index() });
        }
        if index < self.committed {
            return Err(LogError::CommitRegressed { index, committed: self.committed });
        }
        while let Some(p) = self.pending.front().filter(|p| p.index <= index) {
            self.producers.record(&p.batch, p.base_offset);
            self.pending.pop_front();
        }
        self.committed = index;
        Ok(self.high_watermark())
    }

    /// The leader's idempotence check for a batch about to be proposed,
    /// against the committed producer state, the uncommitted suffix, and
    /// `proposed`: batches proposed to raft but not yet appended here.
    pub fn check_producer<'a>(
        &'a self,
        batch: &ProducerBatch,
        proposed: impl Iterator<Item = (&'a ProducerBatch, i64)>,
    ) -> Result<SequenceCheck, SequenceError> {
        self.producers.check(batch, self.pending.iter().map(|p| (&p.batch, p.base_offset)).chain(proposed))
    }

    /// Where a fetch from `offset` starts: the raft index of the committed
    /// entry holding `offset`; `None` from the high watermark up to the log
    /// end (nothing readable yet: a new leader's high watermark may briefly
    /// lag what consumers have seen, and Kafka answers that with no data);
    /// OFFSET_OUT_OF_RANGE below the log start or past the log end.
    pub fn locate(&self, offset: i64) -> Result<Option<u64>, ErrorCode> {
        if offset < self.first_offset || offset > self.next_offset() {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        if offset >= self.high_watermark() {
            return Ok(None);
        }
        // First entry whose end is past `offset`: no-ops end where the entry
        // before them does, so this is always a data entry, and a committed one.
        let at = self.spans.partition_point(|s| s.end <= offset) as u64;
        debug_assert!(self.first_index + at <= self.committed);
        Ok(Some(self.first_index + at))
    }

    /// Where to read from to find the first record with a timestamp at or
    /// after `timestamp` (ListOffsets by time): the first committed entry whose
    /// running maximum reaches it, if any.
    pub fn locate_timestamp(&self, timestamp: i64) -> Option<u64> {
        let index = self.first_index + self.spans.partition_point(|s| s.max_timestamp < timestamp) as u64;
        (index <= self.committed).then_some(index)
    }

    /// The partition state through committed entry `index`, for a raft
    /// snapshot there.
    pub fn snapshot(&self, index: u64) -> Result<PartitionSnapshot, LogError> {
        if index + 1 < self.first_index || index > self.committed {
            return Err(LogError::OutOfRange { index, first: self.first_index, committed: self.committed });
        }
        Ok(PartitionSnapshot { index, next_offset: self.end_at(index), producers: self.producers.clone() })
    }

    /// Forgets committed entries through `index` once the storage has dropped
    /// them: the log start offset moves to the offset after `index`.
    pub fn compact(&mut self, index: u64) -> Result<(), LogError> {
        if index > self.committed {
            return Err(LogError::OutOfRange { index, first: self.first_index, committed: self.committed });
        }
        if index < self.first_index {
            return Ok(());
        }
        self.first_offset = self.end_at(index);
        self.first_max_timestamp = self.max_timestamp_at(index);
        self.spans.drain(..(index + 1 - self.first_index) as usize);
        self.first_index = index + 1;
        Ok(())
    }

    /// Which whole segments retention may delete: the last raft index of the
    /// longest prefix of `segments` that is committed, not the active (last)
    /// segment, and past `retention.bytes` or older than `retention.ms`.
    /// Kafka's rules: a segment goes by size while the log stays at least
    /// `retention.bytes` without it; by time when its largest timestamp is
    /// older than `now_ms - retention.ms`.
    pub fn retention_cut(&self, segments: &[SegmentSpan], now_ms: i64, policy: RetentionPolicy) -> Option<u64> {
        let mut remaining: u64 = segments.iter().map(|s| s.bytes).sum();
        let mut cut = None;
        let sealed = segments.len().saturating_sub(1);
        for segment in &segments[..sealed] {
            if segment.last_index > self.committed {
                break;
            }
            let compacted = segment.last_index < self.first_index;
            let by_size = policy.retention_bytes >= 0 && remaining - segment.bytes >= policy.retention_bytes as u64;
            let by_time = policy.retention_ms >= 0 && {
                let newest = self.max_timestamp_at(segment.last_index);
                newest >= 0 && newest < now_ms.saturating_sub(policy.retention_ms)
            };
            if !(compacted || by_size || by_time) {
                break;
            }
            remaining -= segment.bytes;
            cut = Some(segment.last_index);
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(log: &PartitionLog, count: i32, ts: i64) -> EntryKind {
        EntryKind::Data(DataEntry {
            stamped_base_offset: log.next_offset(),
            record_count: count,
            max_timestamp: ts,
            producer: None,
        })
    }

    fn append(log: &mut PartitionLog, count: i32, ts: i64) -> u64 {
        let index = log.last_index() + 1;
        let kind = data(log, count, ts);
        log.append(index, &kind).expect("append");
        index
    }

    #[test]
    fn offsets_skip_noops_and_roll_back_on_truncation() {
        let mut log = PartitionLog::default();
        append(&mut log, 3, 10);
        log.append(2, &EntryKind::Empty).expect("noop");
        append(&mut log, 2, 20);
        assert_eq!(log.next_offset(), 5);
        assert_eq!(log.base_offset_of(3), Some(3));
        log.commit(1).expect("commit");
        assert_eq!(log.high_watermark(), 3);
        // A new leader's entry replaces index 2 onwards.
        let replacement = DataEntry { stamped_base_offset: 3, record_count: 1, max_timestamp: 5, producer: None };
        log.append(2, &EntryKind::Data(replacement)).expect("overwrite");
        assert_eq!((log.last_index(), log.next_offset()), (2, 4));
        assert_eq!(log.append(1, &EntryKind::Empty), Err(LogError::OverwriteCommitted { index: 1, committed: 1 }));
        assert_eq!(log.append(9, &EntryKind::Empty), Err(LogError::Gap { index: 9, last: 2 }));
    }

    #[test]
    fn end_offsets_cover_the_log_and_the_entry_before_it() {
        let mut log = PartitionLog::default();
        assert_eq!(log.end_offset_at(0), Some(0));
        append(&mut log, 3, 0);
        log.append(2, &EntryKind::Empty).expect("noop");
        append(&mut log, 2, 0);
        let ends: Vec<Option<i64>> = (0..=4).map(|i| log.end_offset_at(i)).collect();
        assert_eq!(ends, [Some(0), Some(3), Some(3), Some(5), None]);
        assert_eq!(log.end_offset_at(3), Some(log.next_offset()));
        log.commit(2).expect("commit");
        log.compact(1).expect("compact");
        // Index 1 is gone but where it ended is the log start offset.
        assert_eq!((log.end_offset_at(0), log.end_offset_at(1), log.end_offset_at(2)), (None, Some(3), Some(3)));
    }

    #[test]
    fn a_wrong_stamp_is_refused_and_changes_nothing() {
        let mut log = PartitionLog::default();
        append(&mut log, 3, 0);
        append(&mut log, 1, 0);
        let before = log.clone();
        let bad =
            EntryKind::Data(DataEntry { stamped_base_offset: 4, record_count: 1, max_timestamp: 0, producer: None });
        assert_eq!(log.append(2, &bad), Err(LogError::OffsetMismatch { index: 2, stamped: 4, expected: 3 }));
        assert_eq!(log, before);
    }

    #[test]
    fn fetch_locates_committed_entries_only() {
        let mut log = PartitionLog::default();
        append(&mut log, 3, 0);
        log.append(2, &EntryKind::Empty).expect("noop");
        append(&mut log, 2, 0);
        append(&mut log, 1, 0);
        log.commit(3).expect("commit");
        assert_eq!(log.locate(0), Ok(Some(1)));
        assert_eq!(log.locate(2), Ok(Some(1)));
        assert_eq!(log.locate(3), Ok(Some(3)));
        assert_eq!(log.locate(5), Ok(None), "at the high watermark");
        assert_eq!(log.locate(6), Ok(None), "above the high watermark, within the log");
        assert_eq!(log.locate(7), Err(ErrorCode::OffsetOutOfRange));
        assert_eq!(log.locate(-1), Err(ErrorCode::OffsetOutOfRange));
    }

    #[test]
    fn retention_deletes_a_committed_prefix_of_sealed_segments() {
        let mut log = PartitionLog::default();
        for ts in [100, 200, 300, 400, 500, 600] {
            append(&mut log, 1, ts);
        }
        log.commit(5).expect("commit");
        let segments = [
            SegmentSpan { first_index: 1, last_index: 2, bytes: 100 },
            SegmentSpan { first_index: 3, last_index: 4, bytes: 100 },
            SegmentSpan { first_index: 5, last_index: 6, bytes: 100 },
        ];
        let keep = RetentionPolicy { retention_ms: -1, retention_bytes: -1 };
        assert_eq!(log.retention_cut(&segments, 10_000, keep), None);
        let by_bytes = RetentionPolicy { retention_ms: -1, retention_bytes: 150 };
        assert_eq!(log.retention_cut(&segments, 0, by_bytes), Some(2));
        let by_time = RetentionPolicy { retention_ms: 1_000, retention_bytes: -1 };
        assert_eq!(log.retention_cut(&segments, 1_250, by_time), Some(2));
        // The active segment stays even when everything is expired.
        assert_eq!(log.retention_cut(&segments, 1_000_000, by_time), Some(4));
        log.compact(2).expect("compact");
        assert_eq!(log.log_start_offset(), 2);
        assert_eq!(log.locate(1), Err(ErrorCode::OffsetOutOfRange));
        assert_eq!(log.locate(2), Ok(Some(3)));
    }

    #[test]
    fn uncommitted_segments_are_never_retention_candidates() {
        let mut log = PartitionLog::default();
        for _ in 0..4 {
            append(&mut log, 1, 1);
        }
        log.commit(1).expect("commit");
        let segments = [
            SegmentSpan { first_index: 1, last_index: 2, bytes: 100 },
            SegmentSpan { first_index: 3, last_index: 4, bytes: 100 },
        ];
        let all = RetentionPolicy { retention_ms: 0, retention_bytes: 0 };
        assert_eq!(log.retention_cut(&segments, 1_000, all), None);
    }

    #[test]
    fn lookup_by_timestamp_uses_the_running_maximum() {
        let mut log = PartitionLog::default();
        for ts in [100, 50, 300, 200] {
            append(&mut log, 1, ts);
        }
        log.commit(4).expect("commit");
        assert_eq!(log.locate_timestamp(0), Some(1));
        assert_eq!(log.locate_timestamp(150), Some(3));
        assert_eq!(log.locate_timestamp(301), None);
    }

    #[test]
    fn snapshots_round_trip() {
        let mut log = PartitionLog::default();
        append(&mut log, 4, 0);
        log.commit(1).expect("commit");
        let snap = log.snapshot(1).expect("snapshot");
        let decoded = PartitionSnapshot::decode(&snap.encode()).expect("decode");
        assert_eq!(decoded, snap);
        let restored = PartitionLog::from_snapshot(&decoded);
        assert_eq!((restored.log_start_offset(), restored.high_watermark(), restored.last_index()), (4, 4, 1));
        assert!(PartitionSnapshot::decode(b"garbage").is_err());
    }
}
