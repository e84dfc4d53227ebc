//! The one disk abstraction the storage layer writes through, so durability
//! can be tested against a disk that loses unsynced writes (see `FaultyDisk`).

use std::io;

/// A flat namespace of append-only files.
///
/// Creating and removing files is durable when the call returns (a real
/// implementation syncs the directory); file *contents* are durable only up
/// to the last [`DiskFile::sync`].
pub trait Disk: Send + Sync {
    /// Opens `name`, creating it empty if it does not exist.
    fn open(&self, name: &str) -> io::Result<Box<dyn DiskFile>>;
    /// Removes `name`; an error if it does not exist.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// All file names, sorted.
    fn list(&self) -> io::Result<Vec<String>>;
}

/// An open file: appends at the end, positional reads, explicit sync.
pub trait DiskFile: Send {
    /// Appends `data` at the end and returns the offset it was written at.
    fn append(&mut self, data: &[u8]) -> io::Result<u64>;
    /// Fills `buf` from `offset`; `ErrorKind::UnexpectedEof` if the file is shorter.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Makes every previous append and truncate durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Shrinks the file to `len` bytes; growing is an `InvalidInput` error.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Current length, including unsynced appends. Fallible like every other
    /// operation: a handle that cannot read must not report a length either.
    fn len(&self) -> io::Result<u64>;
    /// Whether [`DiskFile::len`] is zero.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// The error for a truncate that would grow a file.
pub(crate) fn grow_error(len: u64, current: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("truncate to {len} would grow a file of {current} bytes"))
}
