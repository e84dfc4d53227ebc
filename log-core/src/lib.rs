//! Keel's pure core: state machines with no I/O, no clock, no randomness and no
//! async. Inputs in, outputs out; time is passed in as a value. The broker
//! (`raft-node`) and the simulator drive these; the checker reads their types.

pub mod batch;
pub mod error_code;
pub mod group;
pub mod metadata;
pub mod partition;
pub mod producer;
#[cfg(feature = "testing")]
pub mod testing;

pub use error_code::ErrorCode;
