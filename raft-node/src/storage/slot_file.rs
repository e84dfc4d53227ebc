//! Crash-safe replacement of a small value without rename: two alternating
//! slot files, each `[magic u32][seq u64][len u32][crc32c u32][payload]`, the
//! checksum over `seq, len, payload`. A write goes to the older slot and syncs,
//! so a crash mid-write leaves the other slot, the previous value, intact;
//! reading picks the valid slot with the highest sequence number.
//!
//! The first value goes to both slots, one after the other: from then on one
//! slot always holds a value, so a lone damaged slot is recognised as damage
//! (an error) instead of as a first write torn by a crash (no value yet),
//! which would silently forget, say, a raft vote.

use bytes::Bytes;

use super::codec::Reader;
use super::disk::{Disk, DiskFile};
use super::error::{io_err, LogError, Result};

const MAGIC: u32 = u32::from_le_bytes(*b"KSLT");
const HEADER_LEN: usize = 4 + 8 + 4 + 4;

pub(crate) struct SlotFile {
    names: [String; 2],
    files: [Box<dyn DiskFile>; 2],
    /// Sequence number of the newest valid slot; 0 if none was ever written.
    seq: u64,
}

impl SlotFile {
    /// Opens the slots `{base}.0` and `{base}.1` and returns the newest valid
    /// payload, `None` if nothing was ever written completely.
    pub(crate) fn open(disk: &dyn Disk, base: &str) -> Result<(Self, Option<Bytes>)> {
        let names = [format!("{base}.0"), format!("{base}.1")];
        let files =
            [disk.open(&names[0]).map_err(io_err(&names[0]))?, disk.open(&names[1]).map_err(io_err(&names[1]))?];
        let mut newest: Option<(u64, Bytes)> = None;
        let mut nonempty_invalid = 0;
        for (name, file) in names.iter().zip(&files) {
            match read_slot(name, file.as_ref())? {
                Some((seq, payload)) if newest.as_ref().is_none_or(|(s, _)| seq > *s) => {
                    newest = Some((seq, payload));
                }
                Some(_) => {}
                None if !file.is_empty().map_err(io_err(name))? => nonempty_invalid += 1,
                None => {}
            }
        }
        // One bad slot beside a good one is a write torn by a crash; beside
        // an empty one, the first write torn (nothing was durable yet). Two
        // mean a value was completely written once and then damaged: refuse
        // to guess.
        if nonempty_invalid == 2 {
            return Err(LogError::CorruptState { file: base.to_owned(), reason: "both slots are corrupt".to_owned() });
        }
        let (seq, payload) = newest.map_or((0, None), |(seq, p)| (seq, Some(p)));
        Ok((Self { names, files, seq }, payload))
    }

    /// Replaces the value durably.
    pub(crate) fn write(&mut self, payload: &[u8]) -> Result<()> {
        if self.seq == 0 {
            self.write_slot(payload)?;
        }
        self.write_slot(payload)
    }

    fn write_slot(&mut self, payload: &[u8]) -> Result<()> {
        let seq = self.seq + 1;
        let slot = (seq % 2) as usize;
        let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
        buf.extend_from_slice(&MAGIC.to_le_bytes());
        buf.extend_from_slice(&seq.to_le_bytes());
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&checksum(seq, payload).to_le_bytes());
        buf.extend_from_slice(payload);
        let (name, file) = (&self.names[slot], &mut self.files[slot]);
        file.truncate(0).map_err(io_err(name))?;
        file.append(&buf).map_err(io_err(name))?;
        file.sync().map_err(io_err(name))?;
        self.seq = seq;
        Ok(())
    }
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&seq.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &(payload.len() as u32).to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// The slot's `(seq, payload)` if it is valid. An invalid slot is read a second
/// time first: a transient read error must not make us fall back to the older
/// value.
fn read_slot(name: &str, file: &dyn DiskFile) -> Result<Option<(u64, Bytes)>> {
    for _ in 0..2 {
        let mut buf = vec![0; file.len().map_err(io_err(name))? as usize];
        file.read_at(0, &mut buf).map_err(io_err(name))?;
        if let Some(valid) = parse(Bytes::from(buf)) {
            return Ok(Some(valid));
        }
    }
    Ok(None)
}

fn parse(bytes: Bytes) -> Option<(u64, Bytes)> {
    let mut r = Reader::new(&bytes);
    let (magic, seq, len, crc) = (r.u32()?, r.u64()?, r.u32()? as usize, r.u32()?);
    if magic != MAGIC || r.remaining() != len {
        return None;
    }
    let payload = bytes.slice(HEADER_LEN..);
    (checksum(seq, &payload) == crc).then_some((seq, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FaultyDisk;

    #[test]
    fn a_crash_during_a_write_leaves_the_old_or_the_new_value() {
        for seed in 0..300 {
            let disk = FaultyDisk::new(seed);
            let (mut slots, none) = SlotFile::open(&disk, "hs").unwrap();
            assert!(none.is_none());
            slots.write(b"one").unwrap();
            slots.write(b"two").unwrap();
            // An unsynced third write, as if the process died inside `write`:
            // it goes to the older slot (the first value filled both).
            let mut f = disk.open("hs.0").unwrap();
            f.truncate(0).unwrap();
            f.append(&[0xab; 2000]).unwrap();
            disk.crash();
            let (mut slots, value) = SlotFile::open(&disk, "hs").unwrap();
            assert_eq!(value.as_deref(), Some(&b"two"[..]), "seed {seed}");
            slots.write(b"three").unwrap();
            let (_, value) = SlotFile::open(&disk, "hs").unwrap();
            assert_eq!(value.as_deref(), Some(&b"three"[..]));
        }
    }

    #[test]
    fn a_first_value_survives_damage_to_either_slot() {
        for slot in ["hs.0", "hs.1"] {
            let disk = FaultyDisk::new(2);
            let (mut slots, _) = SlotFile::open(&disk, "hs").unwrap();
            slots.write(b"vote for 3").unwrap();
            let mut f = disk.open(slot).unwrap();
            let len = f.len().unwrap();
            f.truncate(len - 1).unwrap();
            f.sync().unwrap();
            let (_, value) = SlotFile::open(&disk, "hs").unwrap();
            assert_eq!(value.as_deref(), Some(&b"vote for 3"[..]), "{slot} damaged");
        }
    }

    #[test]
    fn a_first_write_torn_by_a_crash_leaves_no_value() {
        let disk = FaultyDisk::new(3);
        disk.open("hs.1").unwrap().append(b"KSLT and then nothing").unwrap();
        let (_, value) = SlotFile::open(&disk, "hs").unwrap();
        assert_eq!(value, None);
    }

    #[test]
    fn two_corrupt_slots_are_an_error() {
        let disk = FaultyDisk::new(1);
        for name in ["s.0", "s.1"] {
            disk.open(name).unwrap().append(b"garbage garbage garbage").unwrap();
        }
        assert!(matches!(SlotFile::open(&disk, "s"), Err(LogError::CorruptState { .. })));
    }
}
