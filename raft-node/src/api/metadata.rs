//! Metadata: brokers, the controller, and every partition's leader, answered
//! by any broker from its cluster view.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use log_core::metadata::OFFSETS_TOPIC;
use log_core::ErrorCode;

use super::{str_bytes, topic_name, KafkaApi};
use crate::group_id::GroupId;

/// Kafka clients show it; any stable string does.
const CLUSTER_ID: &str = "keel";

impl KafkaApi {
    pub fn metadata(&self, request: &MetadataRequest) -> MetadataResponse {
        let view = self.view();
        let metadata = &view.metadata;
        let brokers = metadata
            .brokers()
            .map(|(id, b)| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(str_bytes(&b.host))
                    .with_port(i32::from(b.port))
                    .with_rack(b.rack.as_deref().map(str_bytes))
            })
            .collect();
        // `None` asks for every topic; names not found are answered as unknown.
        let names: Vec<String> = match &request.topics {
            None => metadata.topics().map(|(name, _)| name.to_string()).collect(),
            Some(topics) => topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.to_string())).collect(),
        };
        let topics = names
            .into_iter()
            .map(|name| {
                let Some(topic) = metadata.topic(&name) else {
                    return MetadataResponseTopic::default()
                        .with_name(Some(topic_name(&name)))
                        .with_error_code(ErrorCode::UnknownTopicOrPartition.code());
                };
                let partitions = topic
                    .partitions()
                    .iter()
                    .enumerate()
                    .map(|(index, assignment)| {
                        let group = GroupId::Partition { topic: topic.id(), partition: index as i32 };
                        let replicas: Vec<BrokerId> = assignment.replicas().iter().map(|&b| BrokerId(b)).collect();
                        let partition = MetadataResponsePartition::default()
                            .with_partition_index(index as i32)
                            .with_replica_nodes(replicas.clone())
                            // Raft has no ISR; every voter is a candidate to lead.
                            .with_isr_nodes(replicas);
                        match view.leaders.get(&group) {
                            Some(l) => partition
                                .with_leader_id(BrokerId(l.leader as i32))
                                .with_leader_epoch(i32::try_from(l.term).unwrap_or(i32::MAX)),
                            None => partition
                                .with_leader_id(BrokerId(-1))
                                .with_leader_epoch(-1)
                                .with_error_code(ErrorCode::LeaderNotAvailable.code()),
                        }
                    })
                    .collect();
                MetadataResponseTopic::default()
                    .with_name(Some(topic_name(&name)))
                    .with_topic_id(uuid::Uuid::from_bytes(topic.id()))
                    .with_is_internal(name == OFFSETS_TOPIC)
                    .with_partitions(partitions)
            })
            .collect();
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(str_bytes(CLUSTER_ID)))
            .with_controller_id(BrokerId(view.controller.map_or(-1, |c| c as i32)))
            .with_topics(topics)
    }
}
