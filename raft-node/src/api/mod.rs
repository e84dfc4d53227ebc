//! The Kafka API's business logic: each request decoded by the wire layer
//! (`crate::kafka`) is answered from the node's cluster view, or turned into
//! node requests (produce, fetch, list offsets, metadata commands, producer
//! ids).

mod broker_configs;
mod brokers;
mod configs;
mod dispatch;
mod fetch;
mod group_coordinator;
mod group_offsets;
mod groups;
mod metadata;
mod offsets;
mod produce;
mod producer_ids;
mod quorum;
mod reassignments;
mod topics;

use std::sync::Arc;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use log_core::metadata::ClusterMetadata;

use crate::group_id::GroupId;
use crate::node::{ClusterView, NodeHandle};

/// What the API layer holds: the node it talks to.
#[derive(Clone)]
pub struct KafkaApi {
    node: NodeHandle,
    /// Seeds the uuids of topics created through this broker.
    topic_ids: Arc<std::sync::Mutex<rand_chacha::ChaCha8Rng>>,
    /// Held across the allocation of a new block, so requests take turns.
    producer_ids: Arc<tokio::sync::Mutex<producer_ids::ProducerIdCursor>>,
    /// The consumer group coordinators this broker runs.
    coordinators: group_coordinator::SharedCoordinators,
    /// Set while a task of this broker creates the offsets topic, so that
    /// concurrent FindCoordinator requests do not each propose it.
    creating_offsets_topic: Arc<std::sync::atomic::AtomicBool>,
}

impl KafkaApi {
    pub fn new(node: NodeHandle, seed: u64) -> Self {
        use rand::SeedableRng;
        KafkaApi {
            node,
            topic_ids: Arc::new(std::sync::Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(seed))),
            producer_ids: Arc::default(),
            coordinators: Arc::default(),
            creating_offsets_topic: Arc::default(),
        }
    }

    fn view(&self) -> Arc<ClusterView> {
        self.node.view()
    }
}

/// The raft group of `topic`'s `partition`, if both exist.
fn group_of(metadata: &ClusterMetadata, topic: &str, partition: i32) -> Option<GroupId> {
    let t = metadata.topic(topic)?;
    t.partition(partition)?;
    Some(GroupId::Partition { topic: t.id(), partition })
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Awaits `future` until `deadline`; `None` if the deadline came first.
/// (The simulator's time has `timeout` but not `timeout_at`.)
async fn until<F: std::future::Future>(deadline: tokio::time::Instant, future: F) -> Option<F::Output> {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    tokio::time::timeout(left, future).await.ok()
}
