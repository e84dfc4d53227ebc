//! Produce: validate each partition's record set, hand its batches to the
//! partition leader, and answer when the requested acks are met.

use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use log_core::batch::validate_record_set;
use log_core::metadata::OFFSETS_TOPIC;
use log_core::ErrorCode;
use tokio::sync::oneshot;

use super::{group_of, until, KafkaApi};
use crate::kafka::Turn;
use crate::node::Request;
use crate::replica::partition::{Acks, ProduceResult};

/// The answer to one partition, once its batches resolve.
enum Pending {
    Done(Result<i64, ErrorCode>),
    Waiting(Vec<oneshot::Receiver<ProduceResult>>),
}

impl KafkaApi {
    /// `None` for acks=0, which Kafka never answers. `turn` is passed once every batch is
    /// handed to the node, whose queue keeps that order up to the partitions.
    pub async fn produce(&self, request: ProduceRequest, turn: Turn) -> Option<ProduceResponse> {
        let acks = match request.acks {
            0 => Acks::None,
            1 => Acks::Leader,
            _ => Acks::All,
        };
        let view = self.view();
        let mut pending = Vec::new();
        // Every partition's batches are proposed before any reply is awaited,
        // so the request takes as long as its slowest partition, not the sum.
        for topic in request.topic_data {
            let name = topic.name.to_string();
            let mut partitions = Vec::new();
            for data in topic.partition_data {
                let state = match self.propose_partition(&view.metadata, &name, data.index, data.records, acks).await {
                    Ok(receivers) => Pending::Waiting(receivers),
                    Err(code) => Pending::Done(Err(code)),
                };
                partitions.push((data.index, state));
            }
            pending.push((topic.name, partitions));
        }
        turn.pass();
        if acks == Acks::None {
            return None;
        }
        let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut responses = Vec::new();
        for (name, partitions) in pending {
            let mut partition_responses = Vec::new();
            for (index, state) in partitions {
                let result = match state {
                    Pending::Done(result) => result,
                    Pending::Waiting(receivers) => first_offset(receivers, deadline).await,
                };
                let (error, base_offset) = match result {
                    Ok(offset) => (ErrorCode::None, offset),
                    Err(code) => (code, -1),
                };
                partition_responses.push(
                    PartitionProduceResponse::default()
                        .with_index(index)
                        .with_error_code(error.code())
                        .with_base_offset(base_offset)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1),
                );
            }
            responses
                .push(TopicProduceResponse::default().with_name(name).with_partition_responses(partition_responses));
        }
        Some(ProduceResponse::default().with_responses(responses))
    }

    async fn propose_partition(
        &self,
        metadata: &log_core::metadata::ClusterMetadata,
        topic: &str,
        partition: i32,
        records: Option<bytes::Bytes>,
        acks: Acks,
    ) -> Result<Vec<oneshot::Receiver<ProduceResult>>, ErrorCode> {
        let group = group_of(metadata, topic, partition).ok_or(ErrorCode::UnknownTopicOrPartition)?;
        // Only the group coordinator writes the offsets log (not through here):
        // a client's record there could stop its partition from loading.
        if topic == OFFSETS_TOPIC {
            return Err(ErrorCode::InvalidTopicException);
        }
        let max_bytes = metadata.topic(topic).map_or(0, |t| t.config().max_message_bytes()).max(0) as usize;
        let batches = validate_record_set(records.unwrap_or_default(), max_bytes).map_err(|e| e.code())?;
        let mut receivers = Vec::with_capacity(batches.len());
        for batch in batches {
            let (reply, receiver) = oneshot::channel();
            if !self.node.send(Request::Produce { group, batch, acks, reply }).await {
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            receivers.push(receiver);
        }
        Ok(receivers)
    }
}

/// The base offset of the first batch once all succeed, or the first error.
async fn first_offset(
    receivers: Vec<oneshot::Receiver<ProduceResult>>,
    deadline: tokio::time::Instant,
) -> ProduceResult {
    let mut first = None;
    for receiver in receivers {
        let offset = match until(deadline, receiver).await {
            Some(Ok(result)) => result?,
            // The replica dropped the waiter: leadership or the group is gone.
            Some(Err(_)) => return Err(ErrorCode::NotLeaderOrFollower),
            None => return Err(ErrorCode::RequestTimedOut),
        };
        first.get_or_insert(offset);
    }
    first.ok_or(ErrorCode::CorruptMessage)
}
