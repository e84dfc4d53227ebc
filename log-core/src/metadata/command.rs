//! The commands the metadata group commits, their wire form, and what
//! applying one did.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::producer_ids::ProducerIdBlock;
use super::topic::{Broker, BrokerId, Topic, TopicId};

/// One entry of the metadata raft log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Adds a broker, or updates the address of a registered one. Refused
    /// for an id that was unregistered: that broker left for good.
    RegisterBroker {
        id: BrokerId,
        host: String,
        port: u16,
        rack: Option<String>,
        /// Its raft transport address; absent from commands written before
        /// brokers could join.
        #[serde(default)]
        raft: Option<String>,
    },
    /// Takes a broker out of the cluster for good, once no partition replica
    /// (nor a move's target) names it. Its id is never registered again.
    UnregisterBroker {
        id: BrokerId,
    },
    /// The machine computes the replica assignment; the proposer supplies the
    /// uuid so that the machine stays deterministic.
    CreateTopic {
        name: String,
        id: TopicId,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// Hands `broker` the next block of producer ids, marked with `token`
    /// (chosen by the proposer to recognise its own allocation).
    AllocateProducerIds {
        broker: BrokerId,
        token: u64,
    },
    /// Starts moving a partition's replicas to `replicas` (preferred leader
    /// first), or with `None` cancels the move in progress: KIP-455's
    /// AlterPartitionReassignments.
    ReassignPartition {
        topic: String,
        partition: i32,
        replicas: Option<Vec<BrokerId>>,
    },
    /// The partition's raft group has committed `target` as its voters
    /// (proposed by the group's leader): the move to `target` is done.
    CompleteReassignment {
        topic: String,
        partition: i32,
        target: Vec<BrokerId>,
    },
    /// `broker` has deleted the replica a completed move took off it (it may
    /// now be added back).
    ReplicaDeleted {
        topic: String,
        partition: i32,
        broker: BrokerId,
    },
    /// Sets (`Some`, bytes per second, 0 for no limit) or clears the move
    /// throttle of a registered broker, or with no broker every broker's default.
    SetMoveThrottle {
        broker: Option<BrokerId>,
        bytes_per_sec: Option<u64>,
    },
    /// Marks a registered broker draining (or clears the mark): no planner
    /// puts a replica on it, and rebalances move its replicas off, so that a
    /// decommissioned broker stays empty until it is removed.
    SetDraining {
        broker: BrokerId,
        draining: bool,
    },
}

/// Bytes that are not an encoded command or state.
#[derive(Debug, thiserror::Error)]
#[error("undecodable metadata: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a command always serializes: string map keys only")
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// What an accepted command changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `previous` is the replaced registration, if the broker was known.
    BrokerRegistered {
        id: BrokerId,
        previous: Option<Broker>,
    },
    BrokerUnregistered {
        id: BrokerId,
    },
    TopicCreated {
        name: String,
        id: TopicId,
    },
    /// The removed topic, so the broker can tear down its partitions.
    TopicDeleted {
        name: String,
        topic: Topic,
    },
    ProducerIdsAllocated {
        broker: BrokerId,
        block: ProducerIdBlock,
    },
    /// A move started or was cancelled (or, for the same brokers in another
    /// order, the preferred leader changed at once).
    PartitionReassigned {
        topic: String,
        partition: i32,
    },
    /// The brokers that left the replica set may now delete their replica.
    ReassignmentCompleted {
        topic: String,
        partition: i32,
        removed: Vec<BrokerId>,
    },
    ReplicaDeleted {
        topic: String,
        partition: i32,
        broker: BrokerId,
    },
    MoveThrottleSet {
        broker: Option<BrokerId>,
        bytes_per_sec: Option<u64>,
    },
    DrainingSet {
        broker: BrokerId,
        draining: bool,
    },
}
