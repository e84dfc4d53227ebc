//! Fetch: committed batches up to the high watermark, served as stored, with
//! Kafka's long poll (wait up to `max_wait_ms` for `min_bytes`).

use std::time::Duration;

use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use log_core::ErrorCode;
use tokio::sync::oneshot;

use super::{group_of, until, KafkaApi};
use crate::node::{FetchReply, Request};
use crate::watch;

impl KafkaApi {
    pub async fn fetch(&self, request: &FetchRequest) -> FetchResponse {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
        loop {
            let (response, bytes, mut watches) = self.fetch_once(request).await;
            let now = tokio::time::Instant::now();
            if bytes >= request.min_bytes.max(0) as usize || now >= deadline || watches.is_empty() {
                return response;
            }
            // Sleep until some partition's high watermark moves, or the deadline.
            let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            if until(deadline, changed).await.is_none() {
                return self.fetch_once(request).await.0;
            }
        }
    }

    /// One pass over the requested partitions: the response, its record
    /// bytes, and the high watermarks to wait on for more.
    async fn fetch_once(&self, request: &FetchRequest) -> (FetchResponse, usize, Vec<watch::Receiver<i64>>) {
        let view = self.view();
        let mut total = 0usize;
        let mut watches = Vec::new();
        let mut responses = Vec::new();
        for topic in &request.topics {
            let mut partitions = Vec::new();
            for p in &topic.partitions {
                // The request's max_bytes caps the sum, yet the first
                // non-empty partition always gets through (KIP-74).
                let budget = (request.max_bytes.max(0) as usize).saturating_sub(total);
                let max_bytes =
                    if total == 0 { p.partition_max_bytes } else { p.partition_max_bytes.min(budget as i32) };
                let result = match group_of(&view.metadata, &topic.topic, p.partition) {
                    None => Err(ErrorCode::UnknownTopicOrPartition),
                    Some(_) if max_bytes <= 0 => Err(ErrorCode::None),
                    Some(group) => {
                        let (reply, receiver) = oneshot::channel();
                        let request =
                            Request::Fetch { group, offset: p.fetch_offset, max_bytes: max_bytes as u64, reply };
                        match self.node.send(request).await {
                            true => receiver.await.unwrap_or(Err(ErrorCode::NotLeaderOrFollower)),
                            false => Err(ErrorCode::NotLeaderOrFollower),
                        }
                    }
                };
                partitions.push(match result {
                    Ok(FetchReply { data, high_watermark }) => {
                        total += data.records.len();
                        watches.push(high_watermark);
                        PartitionData::default()
                            .with_partition_index(p.partition)
                            .with_high_watermark(data.high_watermark)
                            .with_last_stable_offset(data.high_watermark)
                            .with_log_start_offset(data.log_start_offset)
                            .with_preferred_read_replica(BrokerId(-1))
                            .with_records(Some(data.records))
                    }
                    Err(code) => PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_error_code(code.code())
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                        .with_preferred_read_replica(BrokerId(-1)),
                });
            }
            responses
                .push(FetchableTopicResponse::default().with_topic(topic.topic.clone()).with_partitions(partitions));
        }
        (FetchResponse::default().with_responses(responses), total, watches)
    }
}
