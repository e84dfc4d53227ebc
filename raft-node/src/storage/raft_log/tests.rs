use std::sync::Arc;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, Storage, StorageError};

use super::*;
use crate::storage::{Disk, FaultyDisk, LogError};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: Bytes::from(format!("data of {index}@{term}").repeat(index as usize % 7 + 1)),
        context: Bytes::from(vec![index as u8; index as usize % 3]),
        ..Default::default()
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term)).collect()
}

fn tiny() -> LogConfig {
    LogConfig { segment_bytes: 300, index_interval_bytes: 100, cache_bytes: 0 }
}

fn open(disk: &FaultyDisk, config: LogConfig) -> (RaftLog, RecoveryReport) {
    RaftLog::open(Arc::new(disk.clone()), "p0-", config).unwrap()
}

fn all(log: &RaftLog) -> Vec<Entry> {
    log.entries(log.first_index(), log.last_index() + 1, None).unwrap()
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit, ..Default::default() }
}

/// Rewrites a file through the `Disk` trait (which only appends).
fn edit(disk: &FaultyDisk, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let mut file = disk.open(name).unwrap();
    let mut bytes = vec![0; file.len().unwrap() as usize];
    file.read_at(0, &mut bytes).unwrap();
    f(&mut bytes);
    file.truncate(0).unwrap();
    file.append(&bytes).unwrap();
    file.sync().unwrap();
}

fn active_segment_name(log: &RaftLog) -> String {
    segment_name("p0-", log.segments().last().unwrap().first_index)
}

#[test]
fn entries_survive_reopen_across_segment_rolls() {
    let disk = FaultyDisk::new(1);
    let (mut log, _) = open(&disk, tiny());
    let written: Vec<Entry> = (1..=40).map(|i| entry(i, 1 + i / 9)).collect();
    for chunk in written.chunks(7) {
        log.append(chunk).unwrap();
    }
    log.sync().unwrap();
    let segments = log.segments();
    assert!(segments.len() > 5, "{segments:?}");
    for pair in segments.windows(2) {
        assert_eq!(pair[0].last_index + 1, pair[1].first_index);
        assert!(pair[0].bytes >= 300);
    }
    drop(log);
    disk.crash();
    let (log, report) = open(&disk, tiny());
    assert_eq!(report, RecoveryReport::default());
    assert_eq!(log.segments(), segments);
    assert_eq!(all(&log), written);
    assert_eq!(log.entries(13, 29, None).unwrap(), written[12..28]);
    for e in &written {
        assert_eq!(log.term(e.index).unwrap(), e.term);
    }
}

#[test]
fn missing_or_bad_index_files_are_rebuilt_by_scanning() {
    let disk = FaultyDisk::new(2);
    let (mut log, _) = open(&disk, tiny());
    log.append(&entries(1..=30, 2)).unwrap();
    log.sync().unwrap();
    let segments = log.segments();
    drop(log);
    disk.remove(&index_name("p0-", segments[0].first_index)).unwrap();
    edit(&disk, &index_name("p0-", segments[1].first_index), |b| b[9] ^= 1);
    let (log, report) = open(&disk, tiny());
    assert_eq!(
        report.scanned_segments,
        vec![segment_name("p0-", segments[0].first_index), segment_name("p0-", segments[1].first_index)]
    );
    assert_eq!(all(&log), entries(1..=30, 2));
    assert_eq!(log.term(17).unwrap(), 2);
    drop(log);
    // The rebuilt index files were written back.
    let (_, report) = open(&disk, tiny());
    assert!(report.scanned_segments.is_empty());
}

/// Opens a log whose active segment holds entries 1..=5, damages it with
/// `damage(bytes, record_offsets)`, reopens and returns the surviving entries.
fn reopen_after_damage(damage: impl FnOnce(&mut Vec<u8>, &[usize])) -> (Vec<Entry>, RecoveryReport) {
    let disk = FaultyDisk::new(3);
    let (mut log, _) = open(&disk, LogConfig::default());
    let written = entries(1..=5, 1);
    log.append(&written).unwrap();
    log.sync().unwrap();
    let name = active_segment_name(&log);
    drop(log);
    let mut offsets = vec![0];
    for e in &written {
        offsets.push(offsets.last().unwrap() + record::HEADER_LEN + record::payload_len(e));
    }
    edit(&disk, &name, |bytes| damage(bytes, &offsets));
    let (log, report) = open(&disk, LogConfig::default());
    let tail = report.torn_tail.clone().unwrap();
    assert_eq!(tail.file, name);
    assert_eq!(log.segments()[0].bytes, tail.offset);
    (all(&log), report)
}

#[test]
fn bit_flip_in_the_middle_cuts_from_that_record() {
    let (survivors, report) = reopen_after_damage(|bytes, offsets| bytes[offsets[2] + 20] ^= 0x10);
    assert_eq!(survivors, entries(1..=2, 1));
    let tail = report.torn_tail.unwrap();
    assert_eq!(tail.reason, "checksum mismatch");
    assert!(tail.bytes_cut > 0);
}

#[test]
fn record_cut_mid_way_is_dropped() {
    let (survivors, report) = reopen_after_damage(|bytes, offsets| bytes.truncate(offsets[4] + 11));
    assert_eq!(survivors, entries(1..=4, 1));
    assert_eq!(report.torn_tail.unwrap().bytes_cut, 11);
}

#[test]
fn appended_garbage_is_cut() {
    for garbage in [vec![0u8; 3], vec![0u8; 100], vec![0xff; 100], b"\x20\0\0\0garbage!".to_vec()] {
        let len = garbage.len() as u64;
        let (survivors, report) = reopen_after_damage(|bytes, _| bytes.extend_from_slice(&garbage));
        assert_eq!(survivors, entries(1..=5, 1));
        assert_eq!(report.torn_tail.unwrap().bytes_cut, len);
    }
}

#[test]
fn corrupt_sealed_segment_is_an_error_not_a_truncation() {
    let disk = FaultyDisk::new(4);
    let (mut log, _) = open(&disk, tiny());
    log.append(&entries(1..=30, 1)).unwrap();
    log.sync().unwrap();
    let first = log.segments()[0].first_index;
    drop(log);
    disk.remove(&index_name("p0-", first)).unwrap();
    edit(&disk, &segment_name("p0-", first), |b| b[30] ^= 4);
    let err = RaftLog::open(Arc::new(disk.clone()), "p0-", tiny()).err().unwrap();
    assert!(matches!(err, LogError::CorruptRecord { .. }), "{err}");
}

#[test]
fn corrupted_read_is_a_typed_error() {
    let disk = FaultyDisk::new(5);
    let (mut log, _) = open(&disk, tiny());
    log.append(&entries(1..=10, 1)).unwrap();
    disk.set_read_corruption(1.0);
    let err = log.entries(2, 5, None).unwrap_err();
    assert!(matches!(err, LogError::CorruptRecord { .. }), "{err}");
    let err = Storage::entries(&log, 2, 5, None, GetEntriesContext::empty(false)).unwrap_err();
    assert!(matches!(err, raft::Error::Store(StorageError::Other(_))), "{err}");
    // Terms come from memory and still answer.
    assert_eq!(log.term(4).unwrap(), 1);
    disk.set_read_corruption(0.0);
    assert_eq!(log.entries(2, 5, None).unwrap(), entries(2..=4, 1));
}

#[test]
fn a_committed_tail_record_damaged_is_an_error() {
    let disk = FaultyDisk::new(6);
    let (mut log, _) = open(&disk, LogConfig::default());
    log.append(&entries(1..=5, 1)).unwrap();
    log.set_hard_state(hard_state(1, 1, 5)).unwrap();
    let name = active_segment_name(&log);
    drop(log);
    edit(&disk, &name, |b| b.truncate(b.len() - 1));
    let len = disk.open(&name).unwrap().len().unwrap();
    let err = RaftLog::open(Arc::new(disk.clone()), "p0-", LogConfig::default()).err().unwrap();
    // A bad record below the commit is damage, not a torn write.
    assert!(matches!(err, LogError::CorruptRecord { .. }), "{err}");
    // Refused before cutting anything: the evidence stays for an operator.
    assert_eq!(disk.open(&name).unwrap().len().unwrap(), len);
}

#[test]
fn hard_state_and_conf_state_persist_and_never_regress() {
    let disk = FaultyDisk::new(7);
    let (mut log, _) = open(&disk, LogConfig::default());
    log.append(&entries(1..=5, 2)).unwrap();
    log.set_hard_state(hard_state(2, 3, 4)).unwrap();
    let cs = ConfState { voters: vec![1, 2, 3], ..Default::default() };
    log.set_conf_state(cs.clone()).unwrap();
    assert!(matches!(log.set_hard_state(hard_state(1, 3, 4)), Err(LogError::HardStateRegression { .. })));
    assert!(matches!(log.set_hard_state(hard_state(2, 3, 3)), Err(LogError::HardStateRegression { .. })));
    assert!(matches!(log.set_hard_state(hard_state(2, 3, 6)), Err(LogError::CommitBeyondLog { .. })));
    assert!(matches!(log.append(&entries(4..=4, 3)), Err(LogError::OverwritesCommitted { .. })));
    drop(log);
    disk.crash();
    let (log, _) = open(&disk, LogConfig::default());
    let state = log.initial_state().unwrap();
    assert_eq!(state.hard_state, hard_state(2, 3, 4));
    assert_eq!(state.conf_state, cs);
}

#[test]
fn overwriting_a_suffix_across_segments_survives_reopen() {
    let disk = FaultyDisk::new(8);
    let (mut log, _) = open(&disk, tiny());
    log.append(&entries(1..=30, 1)).unwrap();
    log.sync().unwrap();
    let at = log.segments()[2].first_index + 1;
    log.append(&entries(at..=at + 1, 2)).unwrap();
    log.sync().unwrap();
    let mut expected = entries(1..=at - 1, 1);
    expected.extend(entries(at..=at + 1, 2));
    assert_eq!(all(&log), expected);
    assert_eq!(log.segments().len(), 3);
    assert_eq!(log.term(at - 1).unwrap(), 1);
    assert_eq!(log.term(at).unwrap(), 2);
    drop(log);
    disk.crash();
    let (log, report) = open(&disk, tiny());
    assert_eq!(report, RecoveryReport::default());
    assert_eq!(all(&log), expected);
}

#[test]
fn compaction_removes_covered_segments_and_survives_reopen() {
    let disk = FaultyDisk::new(9);
    let (mut log, _) = open(&disk, tiny());
    let cs = ConfState { voters: vec![1], ..Default::default() };
    log.set_conf_state(cs.clone()).unwrap();
    log.append(&entries(1..=30, 1)).unwrap();
    log.set_hard_state(hard_state(1, 1, 30)).unwrap();
    let segments = log.segments();
    let through = segments[2].first_index + 1;
    assert!(matches!(log.compact_through(through, 2, Bytes::new()), Err(LogError::TermMismatch { .. })));
    log.compact_through(through, 1, Bytes::from_static(b"state")).unwrap();
    assert_eq!(log.segments(), segments[2..]);
    assert_eq!(log.first_index(), through + 1);
    assert_eq!(log.term(through).unwrap(), 1);
    assert!(matches!(log.term(through - 1), Err(LogError::Compacted { .. })));
    assert!(matches!(log.entries(through, through + 1, None), Err(LogError::Compacted { .. })));
    let snap = Storage::snapshot(&log, through, 1).unwrap();
    assert_eq!((snap.get_metadata().index, snap.get_metadata().term), (through, 1));
    assert_eq!(snap.get_metadata().get_conf_state(), &cs);
    assert_eq!(&snap.data[..], b"state");
    // A peer the snapshot's configuration does not name (a learner added
    // since) gets it with itself as a learner, as raft-rs requires.
    let joining = Storage::snapshot(&log, through, 2).unwrap();
    let with_learner = ConfState { learners: vec![2], ..cs.clone() };
    assert_eq!(joining.get_metadata().get_conf_state(), &with_learner);
    assert_eq!(
        Storage::snapshot(&log, through + 1, 2),
        Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
    );
    drop(log);
    disk.crash();
    let (log, report) = open(&disk, tiny());
    assert_eq!(report, RecoveryReport::default());
    assert_eq!(log.first_index(), through + 1);
    assert_eq!(all(&log), entries(through + 1..=30, 1));
    assert_eq!(log.snapshot(), &snap);
}

#[test]
fn applying_a_snapshot_drops_the_log_and_survives_reopen() {
    let disk = FaultyDisk::new(10);
    let (mut log, _) = open(&disk, tiny());
    log.append(&entries(1..=20, 1)).unwrap();
    log.set_hard_state(hard_state(1, 0, 3)).unwrap();
    let mut snapshot = Snapshot { data: Bytes::from_static(b"leader state"), ..Default::default() };
    snapshot.mut_metadata().index = 50;
    snapshot.mut_metadata().term = 4;
    snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
    log.apply_snapshot(snapshot.clone()).unwrap();
    let check = |log: &RaftLog| {
        assert_eq!((log.first_index(), log.last_index()), (51, 50));
        assert_eq!(log.term(50).unwrap(), 4);
        assert_eq!(log.hard_state(), &hard_state(4, 0, 50));
        assert_eq!(log.conf_state().voters, vec![1, 2, 3]);
        assert_eq!(log.snapshot(), &snapshot);
        assert_eq!(log.segments(), vec![SegmentInfo { first_index: 51, last_index: 50, bytes: 0 }]);
    };
    check(&log);
    let mut old = snapshot.clone();
    old.mut_metadata().index = 40;
    assert!(matches!(log.apply_snapshot(old), Err(LogError::SnapshotOutOfDate { .. })));
    drop(log);
    disk.crash();
    let (mut log, _) = open(&disk, tiny());
    check(&log);
    log.append(&entries(51..=52, 4)).unwrap();
    assert_eq!(all(&log), entries(51..=52, 4));
}

#[test]
fn interrupted_snapshot_install_is_finished_at_open() {
    let disk = FaultyDisk::new(11);
    let (mut log, _) = open(&disk, tiny());
    log.append(&entries(1..=20, 1)).unwrap();
    log.set_hard_state(hard_state(1, 0, 3)).unwrap();
    let mut snapshot = Snapshot::default();
    snapshot.mut_metadata().index = 50;
    snapshot.mut_metadata().term = 4;
    snapshot.mut_metadata().mut_conf_state().voters = vec![7];
    // As if the process died right after recording the snapshot.
    log.write_snapshot(snapshot).unwrap();
    drop(log);
    let (log, report) = open(&disk, tiny());
    assert!(report.finished_snapshot_install);
    assert!(!report.removed_files.is_empty());
    assert_eq!((log.first_index(), log.last_index()), (51, 50));
    assert_eq!(log.hard_state(), &hard_state(4, 0, 50));
    assert_eq!(log.conf_state().voters, vec![7]);
}

// The cases of raft-rs's own `MemStorage` tests, on this log.

fn log_with(ents: &[Entry]) -> (FaultyDisk, RaftLog) {
    // Entries 3..=5 as in raft-rs's tests: a snapshot at 2 (term 2) before them.
    let disk = FaultyDisk::new(12);
    let (mut log, _) = open(&disk, LogConfig::default());
    let mut snapshot = Snapshot::default();
    snapshot.mut_metadata().index = ents[0].index - 1;
    snapshot.mut_metadata().term = ents[0].term - 1;
    log.apply_snapshot(snapshot).unwrap();
    log.append(ents).unwrap();
    (disk, log)
}

fn plain(index: u64, term: u64) -> Entry {
    Entry { index, term, ..Default::default() }
}

#[test]
fn memstorage_term() {
    let (_disk, log) = log_with(&[plain(3, 3), plain(4, 4), plain(5, 5)]);
    assert_eq!(Storage::term(&log, 1), Err(raft::Error::Store(StorageError::Compacted)));
    assert_eq!(Storage::term(&log, 2), Ok(2));
    for i in 3..=5 {
        assert_eq!(Storage::term(&log, i), Ok(i));
    }
    assert_eq!(Storage::term(&log, 6), Err(raft::Error::Store(StorageError::Unavailable)));
}

#[test]
fn memstorage_entries_with_size_limits() {
    let ents = vec![plain(3, 3), plain(4, 4), plain(5, 5), plain(6, 6)];
    let size = |i: usize| u64::from(ents[i].compute_size());
    let max = u64::MAX;
    // (low, high, max size, want)
    type Case = (u64, u64, u64, raft::Result<Vec<Entry>>);
    let cases: Vec<Case> = vec![
        (2, 6, max, Err(raft::Error::Store(StorageError::Compacted))),
        (3, 4, max, Ok(ents[0..1].to_vec())),
        (4, 5, max, Ok(ents[1..2].to_vec())),
        (4, 6, max, Ok(ents[1..3].to_vec())),
        (4, 7, max, Ok(ents[1..4].to_vec())),
        (4, 7, 0, Ok(ents[1..2].to_vec())),
        (4, 7, size(1) + size(2), Ok(ents[1..3].to_vec())),
        (4, 7, size(1) + size(2) + size(3) / 2, Ok(ents[1..3].to_vec())),
        (4, 7, size(1) + size(2) + size(3) - 1, Ok(ents[1..3].to_vec())),
        (4, 7, size(1) + size(2) + size(3), Ok(ents[1..4].to_vec())),
    ];
    for cache_bytes in [0, 1 << 20] {
        let disk = FaultyDisk::new(13);
        let (mut log, _) = open(&disk, LogConfig { cache_bytes, ..LogConfig::default() });
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 2;
        snapshot.mut_metadata().term = 2;
        log.apply_snapshot(snapshot).unwrap();
        log.append(&ents).unwrap();
        for (i, (lo, hi, max_size, want)) in cases.iter().enumerate() {
            let got = Storage::entries(&log, *lo, *hi, *max_size, GetEntriesContext::empty(false));
            assert_eq!(&got, want, "case {i} cache {cache_bytes}");
        }
        assert_eq!(log.entries(4, 4, None).unwrap(), vec![]);
        assert!(matches!(log.entries(4, 8, None), Err(LogError::Unavailable { .. })));
    }
}

#[test]
fn memstorage_first_last_and_compact() {
    let ents = [plain(3, 3), plain(4, 4), plain(5, 5)];
    // (compact through, want first index, want term at first, want len)
    for (through, first, term, len) in [(2, 3, 3, 3), (3, 4, 4, 2), (4, 5, 5, 1)] {
        let (_disk, mut log) = log_with(&ents);
        assert_eq!((Storage::first_index(&log), Storage::last_index(&log)), (Ok(3), Ok(5)));
        log.set_hard_state(hard_state(5, 0, 5)).unwrap();
        log.compact_through(through, through.max(2), Bytes::new()).unwrap();
        assert_eq!(Storage::first_index(&log), Ok(first));
        let got = log.entries(first, 6, Some(100)).unwrap();
        assert_eq!((got[0].term, got.len()), (term, len));
    }
}

#[test]
fn memstorage_append() {
    let ents = [plain(3, 3), plain(4, 4), plain(5, 5)];
    let cases: Vec<(Vec<Entry>, Option<Vec<Entry>>)> = vec![
        (ents.to_vec(), Some(ents.to_vec())),
        (vec![plain(3, 3), plain(4, 6), plain(5, 6)], Some(vec![plain(3, 3), plain(4, 6), plain(5, 6)])),
        (
            vec![plain(3, 3), plain(4, 4), plain(5, 5), plain(6, 5)],
            Some(vec![plain(3, 3), plain(4, 4), plain(5, 5), plain(6, 5)]),
        ),
        // Overwriting compacted entries is refused.
        (vec![plain(2, 3), plain(3, 3), plain(4, 5)], None),
        (vec![plain(4, 5)], Some(vec![plain(3, 3), plain(4, 5)])),
        (vec![plain(6, 6)], Some(vec![plain(3, 3), plain(4, 4), plain(5, 5), plain(6, 6)])),
        // Gaps and non-contiguous batches are refused.
        (vec![plain(7, 6)], None),
        (vec![plain(6, 6), plain(8, 6)], None),
    ];
    for (i, (append, want)) in cases.into_iter().enumerate() {
        let (disk, mut log) = log_with(&ents);
        let result = log.append(&append);
        match want {
            Some(want) => {
                result.unwrap();
                assert_eq!(all(&log), want, "case {i}");
                log.sync().unwrap();
                drop(log);
                disk.crash();
                let (log, _) = open(&disk, LogConfig::default());
                assert_eq!(all(&log), want, "case {i} after reopen");
            }
            None => {
                assert!(result.is_err(), "case {i}");
                assert_eq!(all(&log), ents, "case {i}: a refused append changes nothing");
            }
        }
    }
}

#[test]
fn memstorage_snapshot() {
    let (_disk, mut log) = log_with(&[plain(3, 3), plain(4, 4), plain(5, 5)]);
    let unavailable = Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
    // The snapshot at 2 serves requests up to 2.
    assert_eq!(Storage::snapshot(&log, 2, 0).map(|s| s.get_metadata().index), Ok(2));
    assert_eq!(Storage::snapshot(&log, 3, 0).map(|s| s.get_metadata().index), unavailable);
    log.set_hard_state(hard_state(5, 0, 4)).unwrap();
    log.compact_through(4, 4, Bytes::from_static(b"s")).unwrap();
    let snap = Storage::snapshot(&log, 4, 0).unwrap();
    assert_eq!((snap.get_metadata().index, snap.get_metadata().term), (4, 4));
    assert_eq!(&snap.data[..], b"s");
}

#[test]
fn a_read_below_a_cache_of_only_newer_entries_comes_from_the_segments() {
    let disk = FaultyDisk::new(9);
    // Room in the cache for the newest few entries only.
    let (mut log, _) = open(&disk, LogConfig { cache_bytes: 200, ..tiny() });
    log.append(&entries(1..=10, 1)).unwrap();
    let read = log.entries(2, 4, None).unwrap();
    assert_eq!(read.iter().map(|e| e.index).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(read, entries(2..=3, 1));
}
