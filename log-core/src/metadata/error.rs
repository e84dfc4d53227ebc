//! Why the metadata machine rejects a command, and the Kafka code for it.

use super::config::ConfigError;
use super::topic::{BrokerId, TopicId};
use crate::ErrorCode;

/// A rejected command. Rejection changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("invalid broker registration: {0}")]
    InvalidBroker(&'static str),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("topic {0:?} already exists")]
    TopicAlreadyExists(String),
    #[error("topic {name:?} collides with existing topic {existing:?}")]
    TopicNameCollision { name: String, existing: String },
    #[error("topic id {0:02x?} is reserved")]
    ReservedTopicId(TopicId),
    #[error("topic id {id:02x?} is already the id of topic {existing:?}")]
    TopicIdInUse { id: TopicId, existing: String },
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    #[error("replication factor {factor} is not within 1..={brokers} (the registered brokers{})", not_draining(.draining))]
    InvalidReplicationFactor { factor: i16, brokers: usize, draining: Vec<BrokerId> },
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    #[error("topic {name:?} is internal: {reason}")]
    InternalTopic { name: String, reason: &'static str },
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("broker {broker} still holds a replica of {topic:?} partition {partition}: move it off first (keel cluster decommission)")]
    BrokerInUse { broker: BrokerId, topic: String, partition: i32 },
    #[error("broker {0} was removed from the cluster; a new broker needs a new id")]
    BrokerRemoved(BrokerId),
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
    #[error("producer ids are exhausted")]
    ProducerIdsExhausted,
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(&'static str),
    #[error("a reassignment of the partition is in progress")]
    ReassignmentInProgress,
    #[error("no such reassignment of the partition is in progress")]
    NoReassignmentInProgress,
    #[error("broker {0} has not yet deleted the replica a move took off it")]
    ReplicaLeaving(BrokerId),
    #[error("broker {0} has no replica of the partition to delete")]
    NotLeaving(BrokerId),
}

/// Names the draining brokers a replication factor could not count on.
fn not_draining(draining: &[BrokerId]) -> String {
    match draining {
        [] => String::new(),
        ids => {
            let ids: Vec<String> = ids.iter().map(BrokerId::to_string).collect();
            format!(" not draining; draining: {}", ids.join(", "))
        }
    }
}

impl MetadataError {
    /// The code a Kafka client gets for this rejection.
    pub fn code(&self) -> ErrorCode {
        match self {
            MetadataError::InvalidBroker(_) | MetadataError::BrokerInUse { .. } | MetadataError::BrokerRemoved(_) => {
                ErrorCode::InvalidRequest
            }
            MetadataError::InvalidTopicName { .. }
            | MetadataError::TopicNameCollision { .. }
            | MetadataError::InternalTopic { .. } => ErrorCode::InvalidTopicException,
            MetadataError::TopicAlreadyExists(_) => ErrorCode::TopicAlreadyExists,
            // The broker that proposed the command chose the id, not the client.
            MetadataError::ReservedTopicId(_) | MetadataError::TopicIdInUse { .. } => ErrorCode::UnknownServerError,
            MetadataError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
            MetadataError::InvalidReplicationFactor { .. } => ErrorCode::InvalidReplicationFactor,
            MetadataError::InvalidConfig(_) => ErrorCode::InvalidConfig,
            MetadataError::UnknownTopic(_) | MetadataError::UnknownPartition { .. } => {
                ErrorCode::UnknownTopicOrPartition
            }
            MetadataError::InvalidReplicaAssignment(_) => ErrorCode::InvalidReplicaAssignment,
            MetadataError::ReassignmentInProgress | MetadataError::ReplicaLeaving(_) => {
                ErrorCode::ReassignmentInProgress
            }
            // Brokers report their own deletions, not clients.
            MetadataError::NotLeaving(_) => ErrorCode::UnknownServerError,
            MetadataError::NoReassignmentInProgress => ErrorCode::NoReassignmentInProgress,
            // Brokers ask for producer ids on their own behalf, not a client's.
            MetadataError::UnknownBroker(_) | MetadataError::ProducerIdsExhausted => ErrorCode::UnknownServerError,
        }
    }
}
