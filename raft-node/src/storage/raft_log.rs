//! The raft log of one partition replica on a [`Disk`]: segment files of
//! checksummed records (the raft log *is* the partition log), the hard state
//! and the latest snapshot in crash-safe slot files, and `raft::Storage`.
//!
//! Durability rules this file keeps:
//! - only the last (active) segment ever holds unsynced bytes: a segment is
//!   synced before the next one is created, and a truncation back into an
//!   earlier segment is synced before the later segments are removed;
//! - the hard state is written (synced) only after the entries its commit
//!   index covers are synced;
//! - a snapshot is recorded before the segments it covers are removed.
//!
//! Recovery repairs whatever a crash left between those steps.

use std::sync::Arc;

use bytes::Bytes;
use protobuf::Message;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage};

use super::codec::Reader;
use super::disk::Disk;
use super::entry_cache::EntryCache;
use super::error::{io_err, LogError, Result};
use super::record::{self, MAX_PAYLOAD_LEN};
use super::segment::{index_name, segment_name, FileKind, Segment};
use super::slot_file::SlotFile;
use super::term_runs::TermRuns;
use crate::planted::{planted, Bug};

/// Tuning of a [`RaftLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is rolled once it holds at least this many bytes.
    pub segment_bytes: u64,
    /// Distance in bytes between positions kept in a segment's sparse index.
    pub index_interval_bytes: u64,
    /// Bytes of recent entries kept in memory.
    pub cache_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { segment_bytes: 64 << 20, index_interval_bytes: 4 << 10, cache_bytes: 16 << 20 }
    }
}

/// One segment as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub first_index: u64,
    /// `first_index - 1` when the segment is empty.
    pub last_index: u64,
    pub bytes: u64,
}

/// A torn or corrupt tail cut from the active segment at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub file: String,
    /// Where the first bad record started; the file now ends here.
    pub offset: u64,
    pub bytes_cut: u64,
    pub reason: &'static str,
}

/// What `RaftLog::open` found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub torn_tail: Option<TornTail>,
    /// Segments whose index file was missing or invalid, so they were scanned.
    pub scanned_segments: Vec<String>,
    /// Leftovers of an interrupted truncation, compaction or snapshot install,
    /// and index files without a segment.
    pub removed_files: Vec<String>,
    /// A snapshot was recorded but the crash came before the hard state and
    /// conf state followed it; they were brought up to the snapshot.
    pub finished_snapshot_install: bool,
}

/// The log of one partition replica. See the module docs.
pub struct RaftLog {
    disk: Arc<dyn Disk>,
    prefix: String,
    config: LogConfig,
    /// Ascending and contiguous; never empty; the last one is active.
    segments: Vec<Segment>,
    /// Terms of every entry in `[first_index, last_index]`.
    terms: TermRuns,
    cache: EntryCache,
    hard_state: HardState,
    conf_state: ConfState,
    /// The latest snapshot (metadata and data); index 0 if none.
    snapshot: Snapshot,
    state_file: SlotFile,
    snapshot_file: SlotFile,
    /// Whether the active segment has bytes or a truncation not yet synced.
    unsynced: bool,
    /// Reused encode buffer: one write per append call.
    buf: Vec<u8>,
}

impl RaftLog {
    /// Opens (or creates) the log whose files are named `prefix...` on `disk`,
    /// repairing what a crash left behind. Fails with
    /// [`LogError::CommittedEntriesLost`] or [`LogError::CorruptRecord`]
    /// rather than serve a log shorter than its commit index.
    pub fn open(disk: Arc<dyn Disk>, prefix: &str, config: LogConfig) -> Result<(Self, RecoveryReport)> {
        let mut report = RecoveryReport::default();
        let state_name = format!("{prefix}hardstate");
        let (state_file, state) = SlotFile::open(&*disk, &state_name)?;
        let (hard_state, conf_state) = match state {
            Some(payload) => decode_state(&state_name, &payload)?,
            None => Default::default(),
        };
        let snapshot_name = format!("{prefix}snapshot");
        let (snapshot_file, snapshot) = SlotFile::open(&*disk, &snapshot_name)?;
        let snapshot = match snapshot {
            Some(payload) => decode_snapshot(&snapshot_name, payload)?,
            None => Snapshot::default(),
        };
        let mut log = Self {
            cache: EntryCache::new(config.cache_bytes),
            disk,
            prefix: prefix.to_owned(),
            config,
            segments: Vec::new(),
            terms: TermRuns::default(),
            hard_state,
            conf_state,
            snapshot,
            state_file,
            snapshot_file,
            unsynced: false,
            buf: Vec::new(),
        };
        log.recover_segments(&mut report)?;
        log.reconcile_with_snapshot(&mut report)?;
        let last_index = log.last_index();
        if log.hard_state.commit > last_index {
            return Err(LogError::CommittedEntriesLost { commit: log.hard_state.commit, last_index });
        }
        // After a process crash the surviving tail may still be only in the page
        // cache; raft takes what we serve as persisted, so make it so.
        log.active_mut().sync()?;
        Ok((log, report))
    }

    /// Opens the segment files in order, keeping the contiguous run from the
    /// first; a gap means the rest are leftovers of an interrupted truncation.
    fn recover_segments(&mut self, report: &mut RecoveryReport) -> Result<()> {
        let names = self.disk.list().map_err(io_err("(directory listing)"))?;
        let kinds: Vec<FileKind> = names.iter().filter_map(|n| FileKind::parse(&self.prefix, n)).collect();
        let firsts: Vec<u64> = kinds
            .iter()
            .filter_map(|&k| match k {
                // Index 0 is never an entry (raft logs start at 1): not ours.
                FileKind::Segment(first) if first > 0 => Some(first),
                _ => None,
            })
            .collect();
        for (i, &first) in firsts.iter().enumerate() {
            if self.segments.last().is_some_and(|prev| prev.last_index + 1 != first) {
                self.refuse_to_drop_committed(first)?;
                for &leftover in &firsts[i..] {
                    self.remove_segment_files(leftover, &mut report.removed_files)?;
                }
                break;
            }
            let is_last = i + 1 == firsts.len();
            let recovered = Segment::recover(
                &*self.disk,
                &self.prefix,
                first,
                kinds.contains(&FileKind::Index(first)),
                self.config.index_interval_bytes,
            )?;
            let mut segment = recovered.segment;
            if let Some(bad) = recovered.bad_record {
                // Only the active segment can hold unsynced bytes, and only
                // above the commit: a bad record anywhere else is damage to
                // durable data, reported as what it is.
                if !is_last || self.refuse_to_drop_committed(segment.last_index + 1).is_err() {
                    return Err(LogError::CorruptRecord { file: segment.name, offset: bad.offset, reason: bad.reason });
                }
                let bytes_cut = segment.bytes() - bad.offset;
                segment.cut_bad_tail(bad.offset)?;
                report.torn_tail =
                    Some(TornTail { file: segment.name.clone(), offset: bad.offset, bytes_cut, reason: bad.reason });
            }
            if recovered.scanned && !is_last {
                report.scanned_segments.push(segment.name.clone());
                segment.write_index_file(&*self.disk, &self.prefix, &recovered.runs)?;
            }
            for (index, term) in recovered.runs {
                self.terms.push(index, term);
            }
            self.segments.push(segment);
        }
        for kind in kinds {
            if let FileKind::Index(first) = kind {
                if !self.segments.iter().any(|s| s.first_index == first) {
                    self.remove_if_present(&index_name(&self.prefix, first), &mut report.removed_files)?;
                }
            }
        }
        Ok(())
    }

    /// Makes the segments agree with the snapshot: drops whole segments it
    /// covers (an interrupted compaction), and if the rest does not continue
    /// from it (an interrupted snapshot install), all of them. Then brings the
    /// hard state up to a snapshot that was installed but not yet followed by it.
    fn reconcile_with_snapshot(&mut self, report: &mut RecoveryReport) -> Result<()> {
        let (index, term) = (self.snapshot_index(), self.snapshot_term());
        while self.segments.len() > 1 && self.segments[0].last_index <= index {
            let segment = self.segments.remove(0);
            self.remove_segment_files(segment.first_index, &mut report.removed_files)?;
        }
        let continues = self.segments.first().is_some_and(|s| {
            s.first_index == index + 1
                || (s.first_index <= index && index <= s.last_index && self.terms.term(index) == Some(term))
        });
        if !continues {
            // Neither an interrupted snapshot install (the old log starts at or
            // below the new snapshot) nor a compaction (the snapshot is written
            // before segments go) leaves a log starting past snapshot + 1: that
            // is lost or damaged state files. Refuse; never drop the data.
            if let Some(first) = self.segments.first().filter(|s| s.first_index > index + 1) {
                let reason = format!("the log begins at index {} after the snapshot at {index}", first.first_index);
                return Err(corrupt_state(&format!("{}snapshot", self.prefix), reason));
            }
            let first_dropped = self.segments.first().map_or(index + 1, |s| s.first_index.max(index + 1));
            self.refuse_to_drop_committed(first_dropped)?;
            for segment in std::mem::take(&mut self.segments) {
                self.remove_segment_files(segment.first_index, &mut report.removed_files)?;
            }
            self.terms.clear();
            self.segments.push(Segment::create(&*self.disk, &self.prefix, index + 1)?);
        }
        self.terms.discard_before(index + 1);
        if self.hard_state.commit < index {
            let mut hard_state = self.hard_state.clone();
            hard_state.commit = index;
            hard_state.term = hard_state.term.max(term);
            let conf_state = self.snapshot.get_metadata().get_conf_state().clone();
            self.write_state(hard_state, conf_state)?;
            report.finished_snapshot_install = true;
        }
        Ok(())
    }

    /// Recovery drops entries only where a crash can have left unwanted ones:
    /// never a committed entry the snapshot does not cover. Fails before
    /// touching anything if dropping from `index` on would.
    fn refuse_to_drop_committed(&self, index: u64) -> Result<()> {
        let commit = self.hard_state.commit;
        if index <= commit && index > self.snapshot_index() {
            return Err(LogError::CommittedEntriesLost { commit, last_index: index - 1 });
        }
        Ok(())
    }

    /// Removes a segment and its index file, adding the names removed to `removed`.
    fn remove_segment_files(&self, first_index: u64, removed: &mut Vec<String>) -> Result<()> {
        self.remove_if_present(&segment_name(&self.prefix, first_index), removed)?;
        self.remove_if_present(&index_name(&self.prefix, first_index), removed)
    }

    fn remove_if_present(&self, name: &str, removed: &mut Vec<String>) -> Result<()> {
        match self.disk.remove(name) {
            Ok(()) => {
                removed.push(name.to_owned());
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(name)(e)),
        }
    }

    /// Appends entries, first truncating the suffix from `entries[0].index` if
    /// they overwrite one (as raft requires for a conflicting uncommitted
    /// suffix). Not durable until [`RaftLog::sync`].
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        for (expected, entry) in (first.index..).zip(entries) {
            if entry.index != expected {
                return Err(LogError::NonContiguous { expected, got: entry.index });
            }
            let bytes = record::payload_len(entry);
            if bytes > MAX_PAYLOAD_LEN {
                return Err(LogError::EntryTooLarge { index: entry.index, bytes });
            }
        }
        let (first_index, last_index) = (self.first_index(), self.last_index());
        if first.index < first_index {
            return Err(LogError::Compacted { index: first.index, first_index });
        }
        if first.index > last_index + 1 {
            return Err(LogError::NonContiguous { expected: last_index + 1, got: first.index });
        }
        if first.index <= self.hard_state.commit {
            return Err(LogError::OverwritesCommitted { index: first.index, commit: self.hard_state.commit });
        }
        if first.index <= last_index {
            self.truncate_suffix(first.index)?;
        }
        // Terms first: a roll in the middle of the batch saves them in the index file.
        for entry in entries {
            self.terms.push(entry.index, entry.term);
        }
        if let Err(e) = self.write_records(entries) {
            self.terms.truncate_from(self.last_index() + 1);
            return Err(e);
        }
        self.cache.append(entries);
        Ok(())
    }

    /// Encodes `entries` and writes them with one append per segment touched.
    fn write_records(&mut self, entries: &[Entry]) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        let mut starts = Vec::with_capacity(entries.len());
        let mut result = Ok(());
        for entry in entries {
            let at = self.active().bytes() + buf.len() as u64;
            if at >= self.config.segment_bytes && at > 0 {
                result = self.flush(&mut buf, &mut starts).and_then(|()| self.roll(entry.index));
                if result.is_err() {
                    break;
                }
            }
            starts.push((entry.index, self.active().bytes() + buf.len() as u64));
            record::encode(entry, &mut buf);
        }
        let result = result.and_then(|()| self.flush(&mut buf, &mut starts));
        self.buf = buf;
        result
    }

    fn flush(&mut self, buf: &mut Vec<u8>, starts: &mut Vec<(u64, u64)>) -> Result<()> {
        let interval = self.config.index_interval_bytes;
        let result = self.active_mut().append(buf, starts, interval);
        self.unsynced |= !buf.is_empty();
        buf.clear();
        starts.clear();
        result
    }

    /// Seals the active segment (synced first, so only the new active segment
    /// will hold unsynced bytes) and starts a new one at `next_index`.
    fn roll(&mut self, next_index: u64) -> Result<()> {
        self.sync()?;
        let active = self.active();
        let runs = self.terms.within(active.first_index, active.last_index);
        active.write_index_file(&*self.disk, &self.prefix, &runs)?;
        let segment = Segment::create(&*self.disk, &self.prefix, next_index)?;
        self.segments.push(segment);
        Ok(())
    }

    /// Removes the entries from `index` on.
    fn truncate_suffix(&mut self, index: u64) -> Result<()> {
        let at = self.segments.partition_point(|s| s.first_index <= index) - 1;
        let sealed = at + 1 < self.segments.len();
        let removed = &mut Vec::new();
        if sealed {
            // It becomes active again: its index file would no longer match.
            self.remove_if_present(&index_name(&self.prefix, self.segments[at].first_index), removed)?;
        }
        // The cut can fail (it reads records to find the position); memory
        // follows only once the file is cut, so terms always cover the segments.
        self.segments[at].truncate_from(index)?;
        self.cache.truncate_from(index);
        self.terms.truncate_from(index);
        if !sealed {
            self.unsynced = true;
            return Ok(());
        }
        // The cut is durable before the later segments go, so a crash in
        // between leaves a gap that recovery recognizes as leftovers.
        self.segments[at].sync()?;
        self.unsynced = false;
        for segment in self.segments.drain(at + 1..).rev().collect::<Vec<_>>() {
            self.remove_segment_files(segment.first_index, removed)?;
        }
        Ok(())
    }

    /// Makes every appended entry and truncation durable.
    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced && !planted(Bug::SkipSync) {
            self.active_mut().sync()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Persists the hard state, after syncing the entries its commit covers.
    /// It never moves backwards.
    pub fn set_hard_state(&mut self, hard_state: HardState) -> Result<()> {
        let old = &self.hard_state;
        if hard_state.term < old.term || hard_state.commit < old.commit {
            return Err(LogError::HardStateRegression {
                term: hard_state.term,
                commit: hard_state.commit,
                old_term: old.term,
                old_commit: old.commit,
            });
        }
        let last_index = self.last_index();
        if hard_state.commit > last_index {
            return Err(LogError::CommitBeyondLog { commit: hard_state.commit, last_index });
        }
        self.sync()?;
        self.write_state(hard_state, self.conf_state.clone())
    }

    /// Persists the conf state.
    pub fn set_conf_state(&mut self, conf_state: ConfState) -> Result<()> {
        self.write_state(self.hard_state.clone(), conf_state)
    }

    /// Persists the conf state a change committed at `index` produced, with
    /// the stored commit moved to at least `index` in the same write: a
    /// restart resumes applying after `index`, never applies the change to
    /// its own result (raft-rs refuses to leave a joint configuration twice).
    pub fn set_applied_conf_state(&mut self, conf_state: ConfState, index: u64) -> Result<()> {
        let mut hard_state = self.hard_state.clone();
        if hard_state.commit < index {
            let last_index = self.last_index();
            if index > last_index {
                return Err(LogError::CommitBeyondLog { commit: index, last_index });
            }
            self.sync()?;
            hard_state.commit = index;
        }
        self.write_state(hard_state, conf_state)
    }

    fn write_state(&mut self, hard_state: HardState, conf_state: ConfState) -> Result<()> {
        let hs = hard_state.write_to_bytes().map_err(encode_err)?;
        let cs = conf_state.write_to_bytes().map_err(encode_err)?;
        let mut payload = Vec::with_capacity(4 + hs.len() + cs.len());
        payload.extend_from_slice(&(hs.len() as u32).to_le_bytes());
        payload.extend_from_slice(&hs);
        payload.extend_from_slice(&cs);
        self.state_file.write(&payload)?;
        self.hard_state = hard_state;
        self.conf_state = conf_state;
        Ok(())
    }

    fn write_snapshot(&mut self, snapshot: Snapshot) -> Result<()> {
        let meta = snapshot.get_metadata().write_to_bytes().map_err(encode_err)?;
        let mut payload = Vec::with_capacity(4 + meta.len() + snapshot.data.len());
        payload.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        payload.extend_from_slice(&meta);
        payload.extend_from_slice(&snapshot.data);
        self.snapshot_file.write(&payload)?;
        self.snapshot = snapshot;
        Ok(())
    }

    /// Records a snapshot of the state machine at `index` (committed, with
    /// `term`), then removes the segments whose entries it all covers. Entries
    /// up to `index` are no longer served; those in a partly covered segment
    /// stay on disk until the whole segment is covered.
    pub fn compact_through(&mut self, index: u64, term: u64, snapshot_data: Bytes) -> Result<()> {
        if index <= self.snapshot_index() {
            return Ok(());
        }
        if index > self.hard_state.commit {
            return Err(LogError::CommitBeyondLog { commit: index, last_index: self.hard_state.commit });
        }
        let log_term = self.term(index)?;
        if log_term != term {
            return Err(LogError::TermMismatch { index, log_term, given: term });
        }
        let mut snapshot = Snapshot { data: snapshot_data, ..Default::default() };
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf_state.clone());
        self.write_snapshot(snapshot)?;
        while self.segments.len() > 1 && self.segments[0].last_index <= index {
            let segment = self.segments.remove(0);
            self.remove_segment_files(segment.first_index, &mut Vec::new())?;
        }
        self.terms.discard_before(index + 1);
        Ok(())
    }

    /// Installs a snapshot received from the leader: records it, moves the
    /// hard state and conf state to it, and drops every entry. Its index must
    /// be above the commit index.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<()> {
        let meta: SnapshotMetadata = snapshot.get_metadata().clone();
        // As raft's own restore: a snapshot at or below the commit index brings
        // nothing, and recovery relies on `commit < index` to recognize an
        // install the crash interrupted.
        debug_assert!(self.snapshot_index() <= self.hard_state.commit);
        if meta.index <= self.hard_state.commit {
            return Err(LogError::SnapshotOutOfDate {
                index: meta.index,
                commit: self.hard_state.commit,
                snapshot_index: self.snapshot_index(),
            });
        }
        self.write_snapshot(snapshot)?;
        let mut hard_state = self.hard_state.clone();
        hard_state.commit = meta.index;
        hard_state.term = hard_state.term.max(meta.term);
        self.write_state(hard_state, meta.get_conf_state().clone())?;
        // The old segments stay listed until the new one exists, so a failure
        // here leaves an I/O error to report, never an empty segment list.
        let firsts: Vec<u64> = self.segments.iter().map(|s| s.first_index).collect();
        for first in firsts {
            self.remove_segment_files(first, &mut Vec::new())?;
        }
        self.segments = vec![Segment::create(&*self.disk, &self.prefix, meta.index + 1)?];
        self.terms.clear();
        self.cache.clear();
        self.unsynced = false;
        Ok(())
    }

    /// The entries in `[low, high)`, at least one if the range is not empty,
    /// then as many as fit in `max_bytes` (protobuf size, as raft counts).
    pub fn entries(&self, low: u64, high: u64, max_bytes: Option<u64>) -> Result<Vec<Entry>> {
        let (first_index, last_index) = (self.first_index(), self.last_index());
        if low < first_index {
            return Err(LogError::Compacted { index: low, first_index });
        }
        if high > last_index + 1 {
            return Err(LogError::Unavailable { index: high - 1, last_index });
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut take = |entry: Entry| {
            bytes += u64::from(entry.compute_size());
            let fits = out.is_empty() || max_bytes.is_none_or(|max| bytes <= max);
            if fits {
                out.push(entry);
            }
            fits
        };
        let cached_from = self.cache.first_index().map_or(high, |c| c.clamp(low, high));
        let mut more = true;
        for segment in &self.segments {
            let (lo, hi) = (low.max(segment.first_index), cached_from.min(segment.last_index + 1));
            if lo < hi && more {
                more = segment.read(lo, hi, &mut take)?;
            }
        }
        // The cache may begin above the whole range (it keeps only the newest entries).
        if more && cached_from < high {
            for entry in self.cache.range(cached_from, high) {
                if !take(entry.clone()) {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The term of entry `index`, in `[first_index - 1, last_index]`.
    pub fn term(&self, index: u64) -> Result<u64> {
        if index == self.snapshot_index() {
            return Ok(self.snapshot_term());
        }
        let (first_index, last_index) = (self.first_index(), self.last_index());
        if index < first_index {
            return Err(LogError::Compacted { index, first_index });
        }
        if index > last_index {
            return Err(LogError::Unavailable { index, last_index });
        }
        Ok(self.terms.term(index).expect("term runs cover every live entry"))
    }

    /// The first entry served: one after the snapshot.
    pub fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    /// The last entry, or the snapshot index if there are none after it.
    pub fn last_index(&self) -> u64 {
        self.segments.last().map_or(self.snapshot_index(), |s| s.last_index)
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The latest snapshot, metadata and data; index 0 if there is none.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The segment files, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .iter()
            .map(|s| SegmentInfo { first_index: s.first_index, last_index: s.last_index, bytes: s.bytes() })
            .collect()
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn snapshot_term(&self) -> u64 {
        self.snapshot.get_metadata().term
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("the log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("the log always has an active segment")
    }
}

fn encode_err(e: protobuf::ProtobufError) -> LogError {
    LogError::Encode(e.to_string())
}

fn corrupt_state(file: &str, reason: impl ToString) -> LogError {
    LogError::CorruptState { file: file.to_owned(), reason: reason.to_string() }
}

/// Splits `[len u32][first: len bytes][rest]`.
fn split_prefixed<'a>(file: &str, payload: &'a [u8]) -> Result<(&'a [u8], &'a [u8])> {
    let mut r = Reader::new(payload);
    let first = r
        .u32()
        .and_then(|len| r.take(len as usize))
        .ok_or_else(|| corrupt_state(file, "length prefix beyond the payload"))?;
    Ok((first, &payload[4 + first.len()..]))
}

fn decode_state(file: &str, payload: &[u8]) -> Result<(HardState, ConfState)> {
    let (hs, cs) = split_prefixed(file, payload)?;
    let hs = HardState::parse_from_bytes(hs).map_err(|e| corrupt_state(file, e))?;
    let cs = ConfState::parse_from_bytes(cs).map_err(|e| corrupt_state(file, e))?;
    Ok((hs, cs))
}

fn decode_snapshot(file: &str, payload: Bytes) -> Result<Snapshot> {
    let (meta, data) = split_prefixed(file, &payload)?;
    let mut snapshot = Snapshot::default();
    snapshot.set_metadata(SnapshotMetadata::parse_from_bytes(meta).map_err(|e| corrupt_state(file, e))?);
    snapshot.data = payload.slice(payload.len() - data.len()..);
    Ok(snapshot)
}

impl Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        match RaftLog::entries(self, low, high, max_size.into()) {
            // Entries to send to a follower can wait: raft tries again at the
            // follower's next heartbeat response (a re-read may pass). Any
            // other failed read is fatal to the group in raft-rs.
            Err(LogError::CorruptRecord { .. }) if context.can_async() => {
                Err(raft::Error::Store(raft::StorageError::LogTemporarilyUnavailable))
            }
            result => Ok(result?),
        }
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        Ok(RaftLog::term(self, idx)?)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(RaftLog::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(RaftLog::last_index(self))
    }

    /// The snapshot for `to`, which raft-rs refuses unless its configuration
    /// names `to`. A learner joining after the snapshot was taken is added to
    /// it as a learner: the log after the snapshot replays how it was added
    /// (raft-rs's configuration changes treat adding a present learner, or
    /// removing an absent member, as no change).
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let index = self.snapshot_index();
        if index == 0 || index < request_index {
            return Err(raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable));
        }
        let mut snapshot = self.snapshot.clone();
        let conf = snapshot.mut_metadata().mut_conf_state();
        if ![&conf.voters, &conf.learners, &conf.voters_outgoing].iter().any(|ids| ids.contains(&to)) {
            conf.learners.push(to);
        }
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests;
