//! DescribeQuorum: each raft group's members and how far each one's log
//! reaches, answered by the group's leader (only it tracks its followers).
//! Partition groups answer in Kafka offsets; the metadata group answers as
//! KRaft's `__cluster_metadata` partition 0, in raft indices.

use std::collections::BTreeSet;

use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use log_core::metadata::METADATA_TOPIC;
use log_core::ErrorCode;
use tokio::sync::oneshot;

use super::{group_of, str_bytes, KafkaApi};
use crate::group_id::GroupId;
use crate::node::{ClusterView, Request};
use crate::replica::QuorumState;

/// The listener name v2 reports with each node's Kafka address.
const LISTENER: &str = "PLAINTEXT";

impl KafkaApi {
    pub async fn describe_quorum(&self, request: &DescribeQuorumRequest, version: i16) -> DescribeQuorumResponse {
        let view = self.view();
        let mut topics = Vec::new();
        let mut members = BTreeSet::new();
        for topic in &request.topics {
            let mut partitions = Vec::new();
            for p in &topic.partitions {
                let group = match &**topic.topic_name {
                    METADATA_TOPIC => (p.partition_index == 0).then_some(GroupId::Metadata),
                    name => group_of(&view.metadata, name, p.partition_index),
                };
                let answer = match group {
                    None => Err(ErrorCode::UnknownTopicOrPartition),
                    Some(group) => self.describe_group(group).await,
                };
                let partition = match answer {
                    Ok(quorum) => {
                        members.extend(quorum.voters.iter().chain(&quorum.learners).map(|&(id, _)| id));
                        partition_data(p.partition_index, &quorum)
                    }
                    // Kafka names the leader it knows, so a client can go there.
                    Err(code) => {
                        let leader = group.and_then(|g| known_leader(&view, g));
                        PartitionData::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code.code())
                            .with_leader_id(BrokerId(leader.map_or(-1, |id| id as i32)))
                            .with_leader_epoch(-1)
                            .with_high_watermark(-1)
                    }
                };
                partitions.push(partition);
            }
            topics.push(TopicData::default().with_topic_name(topic.topic_name.clone()).with_partitions(partitions));
        }
        let response = DescribeQuorumResponse::default().with_topics(topics);
        // `nodes` exists from v2 on; encoding it earlier fails.
        if version < 2 {
            return response;
        }
        let nodes = members
            .into_iter()
            .filter_map(|id| {
                let broker = view.metadata.broker(i32::try_from(id).ok()?)?;
                let listener = Listener::default()
                    .with_name(str_bytes(LISTENER))
                    .with_host(str_bytes(&broker.host))
                    .with_port(broker.port);
                Some(Node::default().with_node_id(BrokerId(id as i32)).with_listeners(vec![listener]))
            })
            .collect();
        response.with_nodes(nodes)
    }

    async fn describe_group(&self, group: GroupId) -> Result<QuorumState, ErrorCode> {
        let (reply, receiver) = oneshot::channel();
        match self.node.send(Request::DescribeGroup { group, reply }).await {
            true => receiver.await.unwrap_or(Err(ErrorCode::NotLeaderOrFollower)),
            false => Err(ErrorCode::NotLeaderOrFollower),
        }
    }
}

fn known_leader(view: &ClusterView, group: GroupId) -> Option<u64> {
    match group {
        GroupId::Metadata => view.controller,
        _ => view.leaders.get(&group).map(|l| l.leader),
    }
}

/// Raft has no fetch times to report: they are -1, Kafka's "unknown".
fn replica_state(&(id, log_end_offset): &(u64, Option<i64>)) -> ReplicaState {
    ReplicaState::default()
        .with_replica_id(BrokerId(i32::try_from(id).unwrap_or(-1)))
        .with_log_end_offset(log_end_offset.unwrap_or(-1))
        .with_last_fetch_timestamp(-1)
        .with_last_caught_up_timestamp(-1)
}

fn partition_data(index: i32, quorum: &QuorumState) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_leader_id(BrokerId(i32::try_from(quorum.leader).unwrap_or(-1)))
        // Kafka's leader epoch is the raft term (see Produce).
        .with_leader_epoch(i32::try_from(quorum.term).unwrap_or(i32::MAX))
        .with_high_watermark(quorum.high_watermark)
        .with_current_voters(quorum.voters.iter().map(replica_state).collect())
        .with_observers(quorum.learners.iter().map(replica_state).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_log_ends_and_fetch_times_are_minus_one() {
        let quorum = QuorumState {
            leader: 2,
            term: 7,
            high_watermark: 40,
            voters: vec![(1, Some(40)), (2, Some(42)), (3, None)],
            learners: vec![(4, Some(12))],
        };
        let p = partition_data(5, &quorum);
        assert_eq!((p.partition_index, p.error_code, p.leader_id, p.leader_epoch), (5, 0, BrokerId(2), 7));
        assert_eq!(p.high_watermark, 40);
        let ends: Vec<(i32, i64)> = p.current_voters.iter().map(|r| (r.replica_id.0, r.log_end_offset)).collect();
        assert_eq!(ends, [(1, 40), (2, 42), (3, -1)]);
        assert_eq!((p.observers[0].replica_id, p.observers[0].log_end_offset), (BrokerId(4), 12));
        assert!(p.current_voters.iter().all(|r| r.last_fetch_timestamp == -1 && r.last_caught_up_timestamp == -1));
    }
}
