//! Errors of the storage layer.

use std::io;

/// Everything the raft log can fail with. Corruption found on disk is a value
/// here, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("I/O on {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: io::Error,
    },
    #[error("corrupt record in {file} at byte {offset}: {reason}")]
    CorruptRecord { file: String, offset: u64, reason: &'static str },
    #[error("corrupt state file {file}: {reason}")]
    CorruptState { file: String, reason: String },
    #[error("entries not contiguous: expected index {expected}, got {got}")]
    NonContiguous { expected: u64, got: u64 },
    #[error("index {index} is compacted (first index {first_index})")]
    Compacted { index: u64, first_index: u64 },
    #[error("index {index} is beyond the last index {last_index}")]
    Unavailable { index: u64, last_index: u64 },
    #[error("entry {index} would overwrite a committed entry (commit {commit})")]
    OverwritesCommitted { index: u64, commit: u64 },
    #[error("entry {index} is too large for a record ({bytes} bytes)")]
    EntryTooLarge { index: u64, bytes: usize },
    #[error("hard state would move backwards: term {term} commit {commit} after term {old_term} commit {old_commit}")]
    HardStateRegression { term: u64, commit: u64, old_term: u64, old_commit: u64 },
    #[error("commit {commit} is beyond the last index {last_index}")]
    CommitBeyondLog { commit: u64, last_index: u64 },
    #[error("committed entries lost: hard state commit is {commit} but the recovered log ends at {last_index}")]
    CommittedEntriesLost { commit: u64, last_index: u64 },
    #[error("snapshot at index {index} is out of date (commit {commit}, snapshot {snapshot_index})")]
    SnapshotOutOfDate { index: u64, commit: u64, snapshot_index: u64 },
    #[error("encoding protobuf: {0}")]
    Encode(String),
    #[error("term mismatch at index {index}: the log has term {log_term}, given {given}")]
    TermMismatch { index: u64, log_term: u64, given: u64 },
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// Wraps an `io::Error` with the name of the file it happened on.
pub(crate) fn io_err(file: &str) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io { file: file.to_owned(), source }
}

impl From<LogError> for raft::Error {
    fn from(e: LogError) -> Self {
        use raft::StorageError as S;
        raft::Error::Store(match e {
            LogError::Compacted { .. } => S::Compacted,
            LogError::Unavailable { .. } => S::Unavailable,
            other => S::Other(Box::new(other)),
        })
    }
}
