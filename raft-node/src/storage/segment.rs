//! One segment file of the log: the records of a contiguous run of entries,
//! named by its first index, with a sparse in-memory index of record positions.
//! A sealed segment's sparse index and term runs are saved to an index file so
//! opening the log does not scan it; the file is checked, never trusted.

use bytes::Bytes;
use raft::eraftpb::Entry;

use super::codec::Reader;
use super::disk::{Disk, DiskFile};
use super::error::{io_err, LogError, Result};
use super::record::{self, Header, HEADER_LEN};

const INDEX_MAGIC: u32 = u32::from_le_bytes(*b"KIDX");
const DIGITS: usize = 20;

/// Reads of a record that fails its checksum before it counts as bad.
const READ_ATTEMPTS: u32 = 4;

pub(crate) fn segment_name(prefix: &str, first_index: u64) -> String {
    format!("{prefix}{first_index:0DIGITS$}.log")
}

pub(crate) fn index_name(prefix: &str, first_index: u64) -> String {
    format!("{prefix}{first_index:0DIGITS$}.idx")
}

/// What a file under `prefix` is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Segment(u64),
    Index(u64),
}

impl FileKind {
    pub(crate) fn parse(prefix: &str, name: &str) -> Option<Self> {
        let rest = name.strip_prefix(prefix)?;
        let (digits, ext) = rest.split_at_checked(DIGITS)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let first_index = digits.parse().ok()?;
        match ext {
            ".log" => Some(Self::Segment(first_index)),
            ".idx" => Some(Self::Index(first_index)),
            _ => None,
        }
    }
}

/// A segment and its sparse index.
pub(crate) struct Segment {
    pub(crate) first_index: u64,
    /// `first_index - 1` while empty.
    pub(crate) last_index: u64,
    pub(crate) name: String,
    file: Box<dyn DiskFile>,
    /// The file's length as this segment wrote it, so reads and sizes need not
    /// ask a disk that may have lost power (which fails that question too).
    len: u64,
    /// `(index, file position)` of the first record and then of a record at
    /// least `index_interval` bytes after the previous noted one.
    sparse: Vec<(u64, u64)>,
}

/// A bad record found while scanning a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadRecord {
    pub(crate) offset: u64,
    pub(crate) reason: &'static str,
}

/// A segment opened from disk.
pub(crate) struct Recovered {
    pub(crate) segment: Segment,
    /// `(first index, term)` of each term run in the segment.
    pub(crate) runs: Vec<(u64, u64)>,
    /// Whether it was scanned because its index file was missing or invalid.
    pub(crate) scanned: bool,
    /// Where a scan stopped early; the records from there on are unusable.
    pub(crate) bad_record: Option<BadRecord>,
}

impl Segment {
    /// Creates an empty segment starting at `first_index`.
    pub(crate) fn create(disk: &dyn Disk, prefix: &str, first_index: u64) -> Result<Self> {
        let name = segment_name(prefix, first_index);
        let mut file = disk.open(&name).map_err(io_err(&name))?;
        // Recovery removes every segment file it does not use, so this only
        // happens if that removal failed: start clean regardless.
        if !file.is_empty().map_err(io_err(&name))? {
            file.truncate(0).map_err(io_err(&name))?;
            file.sync().map_err(io_err(&name))?;
        }
        Ok(Self { first_index, last_index: first_index - 1, name, file, len: 0, sparse: Vec::new() })
    }

    /// Opens an existing segment from its index file if that is valid and
    /// matches, otherwise by scanning and verifying every record.
    pub(crate) fn recover(
        disk: &dyn Disk,
        prefix: &str,
        first_index: u64,
        has_index_file: bool,
        index_interval: u64,
    ) -> Result<Recovered> {
        let name = segment_name(prefix, first_index);
        let file = disk.open(&name).map_err(io_err(&name))?;
        let len = file.len().map_err(io_err(&name))?;
        let mut segment = Self { first_index, last_index: first_index - 1, name, file, len, sparse: Vec::new() };
        if has_index_file {
            if let Some(runs) = segment.load_index_file(disk, prefix)? {
                return Ok(Recovered { segment, runs, scanned: false, bad_record: None });
            }
        }
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut pos = 0;
        let mut bad_record = None;
        while pos < segment.bytes() {
            let index = segment.last_index + 1;
            match segment.read_record(pos, index) {
                Ok((entry, next)) => {
                    segment.note(index, pos, index_interval);
                    if runs.last().is_none_or(|&(_, term)| term != entry.term) {
                        runs.push((index, entry.term));
                    }
                    segment.last_index = index;
                    pos = next;
                }
                Err(LogError::CorruptRecord { offset, reason, .. }) => {
                    bad_record = Some(BadRecord { offset, reason });
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Recovered { segment, runs, scanned: true, bad_record })
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.len
    }

    /// Records that the entry `index` starts at file position `pos`.
    fn note(&mut self, index: u64, pos: u64, index_interval: u64) {
        if self.sparse.last().is_none_or(|&(_, p)| pos - p >= index_interval) {
            self.sparse.push((index, pos));
        }
    }

    /// Appends encoded records; `starts` holds `(index, file position)` of
    /// each. On error the file is cut back so no partial record stays in the
    /// middle of the log.
    pub(crate) fn append(&mut self, records: &[u8], starts: &[(u64, u64)], index_interval: u64) -> Result<()> {
        let before = self.bytes();
        debug_assert_eq!(starts.first().map(|&(_, pos)| pos), (!records.is_empty()).then_some(before));
        if let Err(e) = self.file.append(records) {
            // Best effort: if even this fails, recovery cuts the partial record.
            let _ = self.file.truncate(before);
            // A handle that cannot tell its length fails every later operation too.
            if let Ok(len) = self.file.len() {
                self.len = len;
            }
            return Err(io_err(&self.name)(e));
        }
        self.len += records.len() as u64;
        for &(index, pos) in starts {
            debug_assert_eq!(index, self.last_index + 1);
            self.note(index, pos, index_interval);
            self.last_index = index;
        }
        Ok(())
    }

    pub(crate) fn sync(&mut self) -> Result<()> {
        self.file.sync().map_err(io_err(&self.name))
    }

    /// Cuts the file at the entry `index`, which is in this segment.
    pub(crate) fn truncate_from(&mut self, index: u64) -> Result<()> {
        debug_assert!(self.first_index <= index && index <= self.last_index);
        let pos = self.position_of(index)?;
        self.file.truncate(pos).map_err(io_err(&self.name))?;
        self.len = pos;
        self.sparse.retain(|&(i, _)| i < index);
        self.last_index = index - 1;
        Ok(())
    }

    /// Cuts a bad tail found by `recover`, which stopped at `offset`, and makes
    /// the cut durable before anything is appended after it.
    pub(crate) fn cut_bad_tail(&mut self, offset: u64) -> Result<()> {
        debug_assert!(self.sparse.last().is_none_or(|&(_, p)| p < offset));
        self.file.truncate(offset).map_err(io_err(&self.name))?;
        self.len = offset;
        self.sync()
    }

    /// Reads the entries in `[low, high)` (within this segment) in order,
    /// handing each to `visit` until it returns false. Returns false if it did.
    pub(crate) fn read(&self, low: u64, high: u64, visit: &mut dyn FnMut(Entry) -> bool) -> Result<bool> {
        debug_assert!(self.first_index <= low && high <= self.last_index + 1);
        let (mut index, mut pos) = self.sparse_floor(low);
        while index < high {
            let (entry, next) = self.read_record(pos, index)?;
            if index >= low && !visit(entry) {
                return Ok(false);
            }
            index += 1;
            pos = next;
        }
        Ok(true)
    }

    fn position_of(&self, index: u64) -> Result<u64> {
        let (mut i, mut pos) = self.sparse_floor(index);
        while i < index {
            pos = self.read_record(pos, i)?.1;
            i += 1;
        }
        Ok(pos)
    }

    fn sparse_floor(&self, index: u64) -> (u64, u64) {
        let after = self.sparse.partition_point(|&(i, _)| i <= index);
        after.checked_sub(1).map_or((self.first_index, 0), |at| self.sparse[at])
    }

    /// Reads and verifies the record of entry `index` at `pos`; returns it and
    /// the position after it. A bad record is read again before it is
    /// reported: a transient read error must look neither like a torn write
    /// (recovery would cut synced entries) nor like a damaged log.
    fn read_record(&self, pos: u64, index: u64) -> Result<(Entry, u64)> {
        let mut attempt = 1;
        loop {
            match self.try_read_record(pos, index) {
                Err(LogError::CorruptRecord { .. }) if attempt < READ_ATTEMPTS => attempt += 1,
                other => return other,
            }
        }
    }

    fn try_read_record(&self, pos: u64, index: u64) -> Result<(Entry, u64)> {
        let corrupt = |reason| LogError::CorruptRecord { file: self.name.clone(), offset: pos, reason };
        let len = self.bytes();
        if pos + HEADER_LEN as u64 > len {
            return Err(corrupt("truncated header"));
        }
        let mut header = [0; HEADER_LEN];
        self.file.read_at(pos, &mut header).map_err(io_err(&self.name))?;
        let header = Header::parse(&header).map_err(corrupt)?;
        let payload_at = pos + HEADER_LEN as u64;
        let next = payload_at + header.payload_len as u64;
        if next > len {
            return Err(corrupt("record extends past the end of the file"));
        }
        let mut payload = vec![0; header.payload_len];
        self.file.read_at(payload_at, &mut payload).map_err(io_err(&self.name))?;
        let entry = record::decode(&header, Bytes::from(payload)).map_err(corrupt)?;
        if entry.index != index {
            return Err(corrupt("unexpected entry index"));
        }
        Ok((entry, next))
    }

    /// Writes the index file of this (now sealed) segment, synced: one sync per
    /// sealed segment spares scanning it at every open after a crash. A torn
    /// index file fails its checksum and the segment is scanned instead.
    pub(crate) fn write_index_file(&self, disk: &dyn Disk, prefix: &str, runs: &[(u64, u64)]) -> Result<()> {
        let mut buf = Vec::with_capacity(40 + 16 * (self.sparse.len() + runs.len()));
        buf.extend_from_slice(&INDEX_MAGIC.to_le_bytes());
        for n in [self.first_index, self.last_index, self.bytes()] {
            buf.extend_from_slice(&n.to_le_bytes());
        }
        for pairs in [&self.sparse[..], runs] {
            buf.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
            for &(a, b) in pairs {
                buf.extend_from_slice(&a.to_le_bytes());
                buf.extend_from_slice(&b.to_le_bytes());
            }
        }
        buf.extend_from_slice(&crc32c::crc32c(&buf).to_le_bytes());
        let name = index_name(prefix, self.first_index);
        let mut file = disk.open(&name).map_err(io_err(&name))?;
        file.truncate(0).map_err(io_err(&name))?;
        file.append(&buf).map_err(io_err(&name))?;
        file.sync().map_err(io_err(&name))
    }

    /// Loads the sparse index and last index from the index file and returns
    /// the term runs; `None` if the file is invalid or does not match.
    fn load_index_file(&mut self, disk: &dyn Disk, prefix: &str) -> Result<Option<Vec<(u64, u64)>>> {
        let name = index_name(prefix, self.first_index);
        let file = disk.open(&name).map_err(io_err(&name))?;
        let mut buf = vec![0; file.len().map_err(io_err(&name))? as usize];
        file.read_at(0, &mut buf).map_err(io_err(&name))?;
        let Some(split) = buf.len().checked_sub(4) else {
            return Ok(None);
        };
        let (body, crc) = buf.split_at(split);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Ok(None);
        }
        Ok(self.parse_index(body))
    }

    fn parse_index(&mut self, body: &[u8]) -> Option<Vec<(u64, u64)>> {
        let mut r = Reader::new(body);
        if r.u32()? != INDEX_MAGIC || r.u64()? != self.first_index {
            return None;
        }
        let (last_index, bytes) = (r.u64()?, r.u64()?);
        let mut pairs = || -> Option<Vec<(u64, u64)>> {
            let n = r.u32()? as usize;
            (0..n).map(|_| Some((r.u64()?, r.u64()?))).collect()
        };
        let (sparse, runs) = (pairs()?, pairs()?);
        let empty = last_index < self.first_index;
        let starts_at_first = |v: &[(u64, u64)]| v.first().map(|&(i, _)| i) == Some(self.first_index);
        let valid = r.remaining() == 0
            && bytes == self.bytes()
            && last_index >= self.first_index - 1
            && (empty || (starts_at_first(&sparse) && starts_at_first(&runs) && sparse[0].1 == 0))
            && sparse.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && runs.windows(2).all(|w| w[0].0 < w[1].0)
            && sparse.last().is_none_or(|&(i, p)| i <= last_index && p < bytes)
            && runs.last().is_none_or(|&(i, _)| i <= last_index);
        if !valid {
            return None;
        }
        self.last_index = last_index;
        self.sparse = sparse;
        Some(runs)
    }
}
