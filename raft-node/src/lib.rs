//! The Keel broker: storage, raft groups, transport and the Kafka API.

pub mod kafka;
pub mod storage;
