//! Durable storage of a partition replica: the `Disk` abstraction (real files
//! or a deterministic faulty in-memory disk) and the segmented raft log on it.

mod codec;
pub mod disk;
mod entry_cache;
pub mod error;
pub mod faulty_disk;
pub mod file_disk;
pub mod raft_log;
mod record;
mod segment;
mod slot_file;
mod term_runs;

pub use disk::{Disk, DiskFile};
pub use error::LogError;
pub use faulty_disk::FaultyDisk;
pub use file_disk::FileDisk;
pub use raft_log::{LogConfig, RaftLog, RecoveryReport, SegmentInfo, TornTail};
