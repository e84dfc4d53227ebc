//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455),
//! through the metadata group from any broker, as CreateTopics is: each
//! partition's command is checked against a copy of the metadata, proposed,
//! and answered once the published metadata shows it. The move itself is
//! carried out by the partition's raft leader (`replica::membership`).

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use log_core::metadata::{ClusterMetadata, Command, PartitionAssignment};

use super::topics::{deadline, Refusal};
use super::{str_bytes, topic_name, KafkaApi};

impl KafkaApi {
    pub async fn alter_partition_reassignments(
        &self,
        request: &AlterPartitionReassignmentsRequest,
    ) -> AlterPartitionReassignmentsResponse {
        let deadline = deadline(request.timeout_ms);
        let mut responses = Vec::new();
        for topic in &request.topics {
            let mut partitions = Vec::new();
            for p in &topic.partitions {
                let replicas = p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
                let command = Command::ReassignPartition {
                    topic: topic.name.to_string(),
                    partition: p.partition_index,
                    replicas,
                };
                let result = ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
                partitions.push(match self.reassign(command, deadline).await {
                    Ok(()) => result,
                    Err((code, message)) => {
                        result.with_error_code(code.code()).with_error_message(Some(str_bytes(&message)))
                    }
                });
            }
            responses
                .push(ReassignableTopicResponse::default().with_name(topic.name.clone()).with_partitions(partitions));
        }
        AlterPartitionReassignmentsResponse::default()
            .with_allow_replication_factor_change(request.allow_replication_factor_change)
            .with_responses(responses)
    }

    /// Proposes one partition's command and waits for the metadata to show
    /// its effect (the partition as the command leaves it, or moved on from
    /// there: a move may complete before this broker's view shows it began).
    async fn reassign(&self, command: Command, deadline: tokio::time::Instant) -> Result<(), Refusal> {
        let Command::ReassignPartition { topic, partition, replicas } = &command else {
            unreachable!("only reassignments come here")
        };
        let (topic, partition) = (topic.clone(), *partition);
        let view = self.view();
        let mut probe = view.metadata.as_ref().clone();
        probe.apply(command.clone()).map_err(|e| (e.code(), e.to_string()))?;
        let before = assignment(&view.metadata, &topic, partition);
        let expected = assignment(&probe, &topic, partition);
        if expected == before {
            return Ok(());
        }
        let target = replicas.clone();
        self.propose_and_wait(command, deadline, |m| {
            let now = assignment(m, &topic, partition);
            let moved_on = target.as_deref().is_some_and(|t| now.as_ref().is_some_and(|a| a.replicas() == t));
            (now == expected || moved_on).then_some(Ok(()))
        })
        .await
    }

    pub fn list_partition_reassignments(
        &self,
        request: &ListPartitionReassignmentsRequest,
    ) -> ListPartitionReassignmentsResponse {
        let view = self.view();
        let metadata = &view.metadata;
        let wanted = |name: &str, partition: i32| match &request.topics {
            None => true,
            Some(topics) => topics.iter().any(|t| t.name.as_str() == name && t.partition_indexes.contains(&partition)),
        };
        let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
        for (name, partition, assignment) in metadata.reassignments().filter(|(n, p, _)| wanted(n, *p)) {
            let Some(moving) = assignment.reassignment() else { continue };
            let ids = |brokers: &[i32]| brokers.iter().map(|&b| BrokerId(b)).collect::<Vec<_>>();
            let ongoing = OngoingPartitionReassignment::default()
                .with_partition_index(partition)
                .with_replicas(ids(assignment.replicas()))
                .with_adding_replicas(ids(&moving.adding))
                .with_removing_replicas(ids(&moving.removing));
            match topics.last_mut() {
                Some(t) if t.name.as_str() == name => t.partitions.push(ongoing),
                _ => topics.push(
                    OngoingTopicReassignment::default().with_name(topic_name(name)).with_partitions(vec![ongoing]),
                ),
            }
        }
        ListPartitionReassignmentsResponse::default().with_topics(topics)
    }
}

fn assignment(metadata: &ClusterMetadata, topic: &str, partition: i32) -> Option<PartitionAssignment> {
    metadata.topic(topic)?.partition(partition).cloned()
}
