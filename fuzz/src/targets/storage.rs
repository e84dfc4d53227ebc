//! Storage recovery: a valid segmented raft log on the in-memory `FaultyDisk`, its files then
//! damaged as the fuzzer says, then `RaftLog::open`.

use std::sync::Arc;

use arbitrary::Unstructured;
use bytes::Bytes;
use raft::eraftpb::{Entry, HardState};
use raft_node::storage::{Disk, FaultyDisk, LogConfig, RaftLog};

const PREFIX: &str = "p.";

/// Where an entry's record lies: its segment (by first index) and the byte after it.
#[derive(Clone, Copy, Debug)]
struct Place {
    segment: u64,
    end: u64,
}

#[derive(Debug)]
enum Damage {
    Flip { at: u64, bit: u8 },
    Truncate { at: u64 },
    Append { garbage: Vec<u8> },
}

/// Property: whatever the damage (bit flips, truncation, appended garbage, in any file:
/// segments, index files, hard state, snapshot), `RaftLog::open` never panics; if it opens,
/// every entry it serves is bit-exact what was written (so never one whose checksum fails;
/// entries past the written ones only from appended garbage that forms valid records), and it
/// keeps every entry before the first damaged byte of a segment. It must open when the only
/// damage is to index files or to the last segment after the last committed entry.
pub fn recovery(input: &[u8]) {
    let mut u = Unstructured::new(input);
    let config = LogConfig {
        segment_bytes: u.int_in_range(60..=600).unwrap_or(300),
        index_interval_bytes: u.int_in_range(1..=200).unwrap_or(100),
        cache_bytes: 0,
    };
    let disk = FaultyDisk::new(0);
    let (written, places, commit, compacted) = write_log(&mut u, &disk, &config);

    let mut names = disk.list().expect("list");
    names.sort();
    let last_segment = places.last().map(|p| p.segment);
    let mut must_open = true;
    // The first entry a damage may have cost, over all damages.
    let mut first_lost = written.len() as u64 + 1;
    let mut garbage_appended = false;
    for _ in 0..u.int_in_range(1..=3u8).unwrap_or(1) {
        let Ok(name) = u.choose(&names).cloned() else { break };
        let len = disk.open(&name).expect("open").len().expect("a powered disk answers its length");
        let damage = match u.int_in_range(0..=2u8).unwrap_or(0) {
            0 if len > 0 => {
                Damage::Flip { at: u.int_in_range(0..=len - 1).unwrap_or(0), bit: u.int_in_range(0..=7).unwrap_or(0) }
            }
            1 => Damage::Truncate { at: u.int_in_range(0..=len).unwrap_or(0) },
            _ => Damage::Append {
                garbage: (0..u.int_in_range(1..=64usize).unwrap_or(1)).map(|_| u.arbitrary().unwrap_or(0)).collect(),
            },
        };
        let segment = segment_of(&name);
        let from = match &damage {
            Damage::Flip { at, .. } | Damage::Truncate { at } => *at,
            Damage::Append { .. } => len,
        };
        if let Some(first) = segment {
            // Entries of this segment from the one whose record holds byte `from` on, and
            // every entry of later segments, may be gone.
            let lost = (1..=written.len() as u64)
                .find(|&i| {
                    let p = places[i as usize - 1];
                    p.segment > first || (p.segment == first && p.end > from)
                })
                .unwrap_or(written.len() as u64 + 1);
            first_lost = first_lost.min(lost);
            let after_commit = lost > commit;
            if Some(first) != last_segment || !after_commit {
                must_open = false;
            }
            garbage_appended |= matches!(damage, Damage::Append { .. }) && Some(first) == last_segment;
        } else if !name.ends_with(".idx") {
            must_open = false; // the hard state or the snapshot
        }
        if debug() {
            eprintln!("damage {name} ({len} bytes): {damage:?}");
        }
        apply(&disk, &name, &damage);
    }

    if debug() {
        eprintln!("{config:?}; places {places:?}; commit {commit}, compacted {compacted}");
    }
    let log = match RaftLog::open(Arc::new(disk.clone()), PREFIX, config) {
        Ok((log, report)) => {
            if debug() {
                eprintln!("opened: {:?} {report:?}", log.segments());
            }
            log
        }
        Err(error) => {
            assert!(!must_open, "damage only after the committed entries or to index files, yet: {error}");
            return;
        }
    };
    let (first, last) = (log.first_index(), log.last_index());
    if first_lost > compacted + 1 {
        assert!(
            last + 1 >= first_lost,
            "entries before the first damage were dropped: last {last}, first lost {first_lost}"
        );
    }
    for index in first..=last {
        let served = log.entries(index, index + 1, None);
        match written.get(index as usize - 1) {
            Some(original) if index < first_lost => {
                assert_eq!(served.expect("an undamaged entry reads").first(), Some(original), "entry {index}");
            }
            Some(original) => {
                if let Ok(entries) = served {
                    assert_eq!(entries.first(), Some(original), "entry {index} served with other contents");
                }
            }
            None => assert!(garbage_appended, "entry {index} was never written"),
        }
    }
}

/// Writes 1..60 entries one call each (so each record's end is known), commits a prefix, and
/// maybe compacts; returns the entries, their places, the commit index and the snapshot index.
fn write_log(u: &mut Unstructured<'_>, disk: &FaultyDisk, config: &LogConfig) -> (Vec<Entry>, Vec<Place>, u64, u64) {
    let (mut log, _) = RaftLog::open(Arc::new(disk.clone()), PREFIX, config.clone()).expect("an empty log opens");
    let count = u.int_in_range(1..=60u64).unwrap_or(1);
    let mut written = Vec::new();
    let mut places = Vec::new();
    for index in 1..=count {
        let data: Vec<u8> = (0..u.int_in_range(0..=40usize).unwrap_or(0)).map(|_| u.arbitrary().unwrap_or(0)).collect();
        let entry = Entry { index, term: 1 + index / 8, data: data.into(), ..Default::default() };
        log.append(std::slice::from_ref(&entry)).expect("append");
        let segment = log.segments().last().cloned().expect("an active segment");
        places.push(Place { segment: segment.first_index, end: segment.bytes });
        written.push(entry);
    }
    log.sync().expect("sync");
    let commit = u.int_in_range(0..=count).unwrap_or(0);
    log.set_hard_state(HardState { term: 1 + count / 8, vote: 1, commit, ..Default::default() }).expect("hard state");
    let mut compacted = 0;
    if commit > 0 && u.ratio(1, 4).unwrap_or(false) {
        compacted = u.int_in_range(1..=commit).unwrap_or(1);
        log.compact_through(compacted, 1 + compacted / 8, Bytes::from_static(b"state")).expect("compact");
    }
    (written, places, commit, compacted)
}

/// `FUZZ_DEBUG=1` prints each case's log, damage and recovery.
fn debug() -> bool {
    std::env::var_os("FUZZ_DEBUG").is_some()
}

/// The first index of a segment file's name (`p.<20 digits>.log`).
fn segment_of(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.strip_suffix(".log")?.parse().ok()
}

fn apply(disk: &FaultyDisk, name: &str, damage: &Damage) {
    let mut file = disk.open(name).expect("open");
    let mut bytes = vec![0; file.len().expect("a powered disk answers its length") as usize];
    file.read_at(0, &mut bytes).expect("read");
    match damage {
        Damage::Flip { at, bit } => bytes[*at as usize] ^= 1 << bit,
        Damage::Truncate { at } => bytes.truncate(*at as usize),
        Damage::Append { garbage } => bytes.extend_from_slice(garbage),
    }
    file.truncate(0).expect("truncate");
    file.append(&bytes).expect("append");
    file.sync().expect("sync");
}
