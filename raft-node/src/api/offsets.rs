//! ListOffsets: earliest, latest, or the first offset at a timestamp.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use log_core::ErrorCode;
use tokio::sync::oneshot;

use super::{group_of, KafkaApi};
use crate::node::Request;
use crate::replica::partition::OffsetSpec;

/// Kafka's special timestamps in ListOffsets.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

impl KafkaApi {
    pub async fn list_offsets(&self, request: &ListOffsetsRequest) -> ListOffsetsResponse {
        let view = self.view();
        let mut topics = Vec::new();
        for topic in &request.topics {
            let mut partitions = Vec::new();
            for p in &topic.partitions {
                let spec = match p.timestamp {
                    LATEST => Ok(OffsetSpec::Latest),
                    EARLIEST => Ok(OffsetSpec::Earliest),
                    ts if ts >= 0 => Ok(OffsetSpec::Timestamp(ts)),
                    _ => Err(ErrorCode::InvalidRequest),
                };
                let result = match (spec, group_of(&view.metadata, &topic.name, p.partition_index)) {
                    (_, None) => Err(ErrorCode::UnknownTopicOrPartition),
                    (Err(code), _) => Err(code),
                    (Ok(spec), Some(group)) => {
                        let (reply, receiver) = oneshot::channel();
                        match self.node.send(Request::ListOffsets { group, spec, reply }).await {
                            true => receiver.await.unwrap_or(Err(ErrorCode::NotLeaderOrFollower)),
                            false => Err(ErrorCode::NotLeaderOrFollower),
                        }
                    }
                };
                let (error, offset) = match result {
                    Ok(offset) => (ErrorCode::None, offset),
                    Err(code) => (code, -1),
                };
                partitions.push(
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.code())
                        .with_timestamp(-1)
                        .with_offset(offset)
                        .with_leader_epoch(-1),
                );
            }
            topics.push(ListOffsetsTopicResponse::default().with_name(topic.name.clone()).with_partitions(partitions));
        }
        ListOffsetsResponse::default().with_topics(topics)
    }
}
