//! The Keel broker: storage, raft groups, transport and the Kafka API.

pub mod storage;
