//! OffsetCommit and OffsetFetch. A commit is checked against the group's
//! membership by the coordinator machine, written to the group's offsets
//! partition through raft, and answered once committed there; a fetch reads
//! the coordinator's map, which its log rebuilt.

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
};
use log_core::group::offsets::{Committed, OffsetStore, RecordKey};
use log_core::ErrorCode;

use super::group_coordinator::offset_key;
use super::{str_bytes, KafkaApi};

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA_BYTES: usize = 4096;

/// One partition's committed offset as OffsetFetch answers it: -1 when none.
struct Fetched {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
    error: ErrorCode,
}

impl KafkaApi {
    pub async fn offset_commit(&self, request: &OffsetCommitRequest) -> OffsetCommitResponse {
        let code = self.commit_offsets(request).await.err();
        let topics = request
            .topics
            .iter()
            .map(|t| {
                let partitions = t.partitions.iter().map(|p| {
                    let metadata_too_big = p.committed_metadata.as_ref().is_some_and(|m| m.len() > MAX_METADATA_BYTES);
                    let error = match code {
                        Some(code) => code,
                        None if metadata_too_big => ErrorCode::OffsetMetadataTooLarge,
                        None => ErrorCode::None,
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.code())
                });
                OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions.collect())
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }

    /// Writes the request's offsets (all in one batch: they commit together).
    async fn commit_offsets(&self, request: &OffsetCommitRequest) -> Result<(), ErrorCode> {
        let group = request.group_id.to_string();
        let seat = self.coordinator_seat(&group).await?;
        let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
        self.with_groups(seat, |groups, now| {
            let member = request.member_id.as_str();
            (
                groups.check_commit(now, &group, member, instance.as_deref(), request.generation_id_or_member_epoch),
                vec![],
            )
        })?;
        let records: Vec<(RecordKey, Option<Committed>)> = request
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .filter(|(_, p)| p.committed_metadata.as_ref().is_none_or(|m| m.len() <= MAX_METADATA_BYTES))
            .map(|(t, p)| {
                let committed = Committed {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                };
                (RecordKey::Offset(offset_key(&group, &t.name, p.partition_index)), Some(committed))
            })
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        let base = self.write_offsets_log(seat.group, &records).await?;
        self.with_offsets(seat, |store| {
            for (i, (key, value)) in records.into_iter().enumerate() {
                if let RecordKey::Offset(key) = key {
                    store.apply(base + i as i64, key, value);
                }
            }
        });
        Ok(())
    }

    pub async fn offset_fetch(&self, request: &OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        if version >= 8 {
            let mut groups = Vec::new();
            for g in &request.groups {
                let wanted =
                    g.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.as_str(), &t.partition_indexes)).collect());
                let (code, topics) = self.fetch_offsets(&g.group_id, wanted).await;
                groups.push(group_answer(&g.group_id, code, topics));
            }
            return OffsetFetchResponse::default().with_groups(groups);
        }
        let wanted =
            request.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.as_str(), &t.partition_indexes)).collect());
        let (code, topics) = self.fetch_offsets(&request.group_id, wanted).await;
        fetch_answer(code, topics, version)
    }

    /// The committed offsets `wanted` (every one of the group's when `None`),
    /// by topic, and the group-level error.
    async fn fetch_offsets(
        &self,
        group: &str,
        wanted: Option<Vec<(&str, &Vec<i32>)>>,
    ) -> (ErrorCode, Vec<(String, Vec<Fetched>)>) {
        let seat = match self.coordinator_seat(group).await {
            Ok(seat) => seat,
            Err(code) => {
                let topics = wanted.unwrap_or_default();
                let none = |&p: &i32| Fetched {
                    partition: p,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: String::new(),
                    error: code,
                };
                let topics = topics.into_iter().map(|(t, ps)| (t.to_string(), ps.iter().map(none).collect())).collect();
                return (code, topics);
            }
        };
        let topics = self.with_offsets(seat, |store| committed(store, group, wanted));
        (ErrorCode::None, topics)
    }
}

fn committed(store: &OffsetStore, group: &str, wanted: Option<Vec<(&str, &Vec<i32>)>>) -> Vec<(String, Vec<Fetched>)> {
    let fetched = |partition: i32, c: Option<&Committed>| match c {
        Some(c) => Fetched {
            partition,
            offset: c.offset,
            leader_epoch: c.leader_epoch,
            metadata: c.metadata.clone(),
            error: ErrorCode::None,
        },
        None => Fetched { partition, offset: -1, leader_epoch: -1, metadata: String::new(), error: ErrorCode::None },
    };
    match wanted {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let found = partitions.iter().map(|&p| fetched(p, store.get(group, topic, p))).collect();
                (topic.to_string(), found)
            })
            .collect(),
        None => {
            let mut by_topic: Vec<(String, Vec<Fetched>)> = Vec::new();
            for (key, c) in store.of_group(group) {
                match by_topic.last_mut() {
                    Some((topic, parts)) if *topic == key.topic => parts.push(fetched(key.partition, Some(c))),
                    _ => by_topic.push((key.topic.clone(), vec![fetched(key.partition, Some(c))])),
                }
            }
            by_topic
        }
    }
}

/// One group's offsets in OffsetFetch v8's batched form.
fn group_answer(group: &GroupId, code: ErrorCode, topics: Vec<(String, Vec<Fetched>)>) -> OffsetFetchResponseGroup {
    let topics = topics.into_iter().map(|(name, parts)| {
        let partitions = parts.into_iter().map(|f| {
            OffsetFetchResponsePartitions::default()
                .with_partition_index(f.partition)
                .with_committed_offset(f.offset)
                .with_committed_leader_epoch(f.leader_epoch)
                .with_metadata(Some(str_bytes(&f.metadata)))
                .with_error_code(f.error.code())
        });
        OffsetFetchResponseTopics::default().with_name(super::topic_name(&name)).with_partitions(partitions.collect())
    });
    OffsetFetchResponseGroup::default()
        .with_group_id(group.clone())
        .with_error_code(code.code())
        .with_topics(topics.collect())
}

/// One group's offsets before v8. v1 has no top-level error: it rides on
/// every partition; leader epochs come with v5.
fn fetch_answer(code: ErrorCode, topics: Vec<(String, Vec<Fetched>)>, version: i16) -> OffsetFetchResponse {
    let topics = topics.into_iter().map(|(name, parts)| {
        let partitions = parts.into_iter().map(|f| {
            let error = if version < 2 && f.error == ErrorCode::None { code } else { f.error };
            OffsetFetchResponsePartition::default()
                .with_partition_index(f.partition)
                .with_committed_offset(f.offset)
                .with_committed_leader_epoch(if version >= 5 { f.leader_epoch } else { -1 })
                .with_metadata(Some(str_bytes(&f.metadata)))
                .with_error_code(error.code())
        });
        OffsetFetchResponseTopic::default().with_name(super::topic_name(&name)).with_partitions(partitions.collect())
    });
    let code = if version >= 2 { code } else { ErrorCode::None };
    OffsetFetchResponse::default().with_error_code(code.code()).with_topics(topics.collect())
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::protocol::Encodable;

    use super::*;
    use crate::kafka::versions::supported;

    fn offsets() -> Vec<(String, Vec<Fetched>)> {
        let fetched = |partition, offset| Fetched {
            partition,
            offset,
            leader_epoch: 4,
            metadata: "m".into(),
            error: ErrorCode::None,
        };
        vec![("t".to_string(), vec![fetched(0, 10), fetched(1, -1)])]
    }

    #[test]
    fn offset_fetch_answers_encode_at_every_supported_version() {
        let api = supported(ApiKey::OffsetFetch).unwrap();
        for version in api.min..=api.max {
            let answer = if version >= 8 {
                let g = GroupId(str_bytes("g"));
                OffsetFetchResponse::default().with_groups(vec![group_answer(&g, ErrorCode::None, offsets())])
            } else {
                fetch_answer(ErrorCode::CoordinatorLoadInProgress, offsets(), version)
            };
            answer.encode(&mut BytesMut::new(), version).unwrap_or_else(|e| panic!("OffsetFetch v{version}: {e}"));
        }
    }

    #[test]
    fn before_v2_a_group_error_rides_on_every_partition() {
        let old = fetch_answer(ErrorCode::NotCoordinator, offsets(), 1);
        assert_eq!(old.error_code, 0);
        assert!(old.topics[0].partitions.iter().all(|p| p.error_code == ErrorCode::NotCoordinator.code()));
        let new = fetch_answer(ErrorCode::NotCoordinator, offsets(), 2);
        assert_eq!(new.error_code, ErrorCode::NotCoordinator.code());
        assert!(new.topics[0].partitions.iter().all(|p| p.error_code == 0));
    }
}
