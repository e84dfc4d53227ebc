//! The Keel broker: storage, raft groups, transport and the Kafka API.

pub mod api;
pub mod broker;
#[cfg(not(madsim))]
pub mod cli;
pub mod client;
pub mod config;
pub mod group_id;
pub mod kafka;
pub mod logging;
pub mod node;
pub mod peer_message;
pub mod planted;
pub mod replica;
pub mod replica_id;
pub mod storage;
pub mod transport;
pub mod watch;
