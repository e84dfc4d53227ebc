//! The Keel broker: storage, raft groups, transport and the Kafka API.

pub mod kafka;
pub mod storage;
pub mod transport;
pub mod group_id;
pub mod peer_message;
pub mod replica;
pub mod node;
pub mod api;
pub mod broker;
pub mod config;
pub mod logging;
