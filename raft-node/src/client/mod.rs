//! A small Kafka client over [`crate::kafka::client::Connection`]: bootstrap,
//! metadata, routing to partition leaders with bounded retries, topic admin,
//! produce, fetch and list offsets. The `keel` CLI uses it, and so will the
//! simulator's workloads: it runs on real tokio and on madsim alike (time only
//! through `tokio::time`, no threads, no randomness).
//!
//! Requests go one at a time, except an idempotent producer's batches through
//! a [`ProducePipeline`]; a client is `&mut`, cheap, and meant to be owned by
//! one task.

pub mod consumer_protocol;
mod error;
mod group_member;
mod groups;
mod idempotence;
mod partitioner;
mod pipeline;
mod reassignments;
pub mod records;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_quorum_request;
use kafka_protocol::messages::describe_quorum_response;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, DescribeQuorumRequest,
    DescribeQuorumResponse, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use serde::Serialize;

use crate::kafka::client::Connection;
use crate::kafka::config_codes::{RESOURCE_TOPIC, SOURCE_DYNAMIC_TOPIC};
pub use error::{error_name, Error};
pub use group_member::{GroupError, MemberConfig, Membership};
pub use groups::{CommittedOffset, GroupInfo, GroupListing, GroupMember};
pub use idempotence::{needs_new_producer_id, IdempotentProducer, ProducerIdentity};
pub use log_core::metadata::{plan::Placement, METADATA_TOPIC};
pub use partitioner::partition_for_key;
pub use pipeline::ProducePipeline;
pub use reassignments::{moves_between, Move, MoveInProgress};
use records::{ConsumedBatch, ProducerRecord};

// The newest version of each API the broker speaks (crate::kafka::versions).
const METADATA_VERSION: i16 = 12;
const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const LIST_OFFSETS_VERSION: i16 = 7;
const CREATE_TOPICS_VERSION: i16 = 7;
const DELETE_TOPICS_VERSION: i16 = 6;
const DESCRIBE_CONFIGS_VERSION: i16 = 4;
const DESCRIBE_QUORUM_VERSION: i16 = 2;

/// Kafka error codes the client handles itself.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// Time for an answer to travel back once the broker's own timeout expired.
const NETWORK_SLACK: Duration = Duration::from_secs(1);

/// How a client connects, waits and retries.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `host:port` of brokers to learn the cluster from.
    pub bootstrap: Vec<String>,
    pub client_id: String,
    /// How long to wait for a connection or an answer; also the broker-side
    /// timeout of produce and topic admin requests.
    pub request_timeout: Duration,
    /// The first pause before a retry; it doubles up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Retries after the first attempt of a request routed to a leader.
    pub retries: u32,
}

impl ClientConfig {
    /// Defaults that ride out a leader election (about 10 s of retries).
    pub fn new(bootstrap: Vec<String>) -> Self {
        ClientConfig {
            bootstrap,
            client_id: "keel".into(),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(50),
            retry_backoff_max: Duration::from_secs(1),
            retries: 14,
        }
    }

    /// The pause before retry number `attempt` (0-based).
    fn backoff(&self, attempt: u32) -> Duration {
        self.retry_backoff.saturating_mul(1u32 << attempt.min(16)).min(self.retry_backoff_max)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    /// `None` while the partition has no leader.
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub id: String,
    pub partitions: Vec<PartitionInfo>,
}

/// What the last Metadata answer said about the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClusterInfo {
    pub cluster_id: Option<String>,
    pub controller: Option<i32>,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
}

/// A topic config as DescribeConfigs reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    /// Whether the topic sets it (Kafka's DYNAMIC_TOPIC_CONFIG) rather than inheriting a default.
    pub explicit: bool,
}

/// One member of a raft group as the group's leader reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaProgress {
    pub id: i32,
    /// `None` while the leader does not know where this replica's log ends
    /// (it has not heard from it since it was elected, or the replica is
    /// behind the leader's log start).
    pub log_end_offset: Option<i64>,
}

/// A partition's raft group as its leader reports it (DescribeQuorum).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuorumInfo {
    pub leader: i32,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<ReplicaProgress>,
    /// Members that replicate without voting (learners).
    pub observers: Vec<ReplicaProgress>,
}

impl QuorumInfo {
    /// The leader's log end offset.
    pub fn log_end_offset(&self) -> Option<i64> {
        self.voters.iter().find(|r| r.id == self.leader).and_then(|r| r.log_end_offset)
    }

    /// How many offsets `replica`'s log is behind the leader's, if both ends are known.
    pub fn lag(&self, replica: &ReplicaProgress) -> Option<i64> {
        Some(self.log_end_offset()? - replica.log_end_offset?)
    }
}

/// Each partition's quorum, or why it could not be described.
pub type Quorums = BTreeMap<(String, i32), Result<QuorumInfo, String>>;

/// Which offset ListOffsets should find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The first offset whose timestamp is at or after this (ms since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Latest => -1,
            OffsetSpec::Earliest => -2,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// Fire and forget: no answer, no offset.
    None,
    Leader,
    All,
}

/// One partition's answer to a fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Complete batches from the requested offset on, in offset order.
    pub batches: Vec<ConsumedBatch>,
    /// Why decoding stopped before the end of the bytes, if it did.
    pub broken: Option<String>,
}

/// How one routed attempt ended.
enum Attempt<T> {
    Done(T),
    /// Worth another try after refreshing metadata; the error if none is
    /// left, and whether the request reached a broker (which may have acted).
    Retry {
        error: Error,
        delivered: bool,
    },
}

pub struct Client {
    config: ClientConfig,
    cluster: ClusterInfo,
    /// By address: bootstrap addresses and brokers share one pool.
    connections: BTreeMap<String, Connection>,
}

impl Client {
    /// A client that has not connected yet; the first request bootstraps it.
    pub fn new(config: ClientConfig) -> Self {
        Client { config, cluster: ClusterInfo::default(), connections: BTreeMap::new() }
    }

    /// Connects to the cluster and learns its brokers.
    pub async fn connect(config: ClientConfig) -> Result<Self, Error> {
        let mut client = Client::new(config);
        client.refresh(Some(&[])).await?;
        Ok(client)
    }

    /// The cluster as last seen.
    pub fn cluster(&self) -> &ClusterInfo {
        &self.cluster
    }

    /// Fetches the metadata of every topic.
    pub async fn metadata(&mut self) -> Result<&ClusterInfo, Error> {
        self.refresh(None).await?;
        Ok(&self.cluster)
    }

    /// Fetches one topic's metadata.
    pub async fn topic(&mut self, name: &str) -> Result<TopicInfo, Error> {
        self.refresh(Some(&[name])).await?;
        self.cluster.topics.get(name).cloned().ok_or_else(|| Error::UnknownTopic(name.into()))
    }

    /// Asks any broker for metadata (`None`: every topic) and merges the answer.
    async fn refresh(&mut self, topics: Option<&[&str]>) -> Result<(), Error> {
        let request =
            MetadataRequest::default().with_allow_auto_topic_creation(false).with_topics(topics.map(|names| {
                names.iter().map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n)))).collect()
            }));
        let response: MetadataResponse = self.any_broker(METADATA_VERSION, &request, true).await?;
        self.merge(response, topics.is_none())
    }

    fn merge(&mut self, response: MetadataResponse, all_topics: bool) -> Result<(), Error> {
        self.cluster.cluster_id = response.cluster_id.map(|id| id.to_string());
        self.cluster.controller = (response.controller_id.0 >= 0).then_some(response.controller_id.0);
        self.cluster.brokers = response
            .brokers
            .into_iter()
            .map(|b| {
                let info = BrokerInfo {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                };
                (b.node_id.0, info)
            })
            .collect();
        if all_topics {
            self.cluster.topics.clear();
        }
        for topic in response.topics {
            let Some(name) = topic.name.map(|n| n.to_string()) else { continue };
            match topic.error_code {
                0 => {}
                UNKNOWN_TOPIC_OR_PARTITION => {
                    self.cluster.topics.remove(&name);
                    continue;
                }
                code => return Err(Error::kafka(format!("metadata of {name}"), code, None)),
            }
            let mut partitions: Vec<PartitionInfo> = topic
                .partitions
                .into_iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let info = TopicInfo { name: name.clone(), id: topic.topic_id.to_string(), partitions };
            self.cluster.topics.insert(name, info);
        }
        Ok(())
    }

    /// Creates a topic; `None` leaves the partition count or replication
    /// factor to the broker.
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: Option<i32>,
        replication_factor: Option<i16>,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions.unwrap_or(-1))
            .with_replication_factor(replication_factor.unwrap_or(-1))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default().with_name(str_bytes(k)).with_value(Some(str_bytes(v)))
                    })
                    .collect(),
            );
        let request = CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(self.timeout_ms());
        // Not retried on another broker once sent: a second try would meet its own first.
        let response = self.any_broker(CREATE_TOPICS_VERSION, &request, false).await?;
        let result = response
            .topics
            .into_iter()
            .find(|t| &*t.name == name)
            .ok_or_else(|| Error::Protocol(format!("the broker did not answer for topic {name}")))?;
        match result.error_code {
            0 => Ok(()),
            code => {
                Err(Error::kafka(format!("create topic {name}"), code, result.error_message.map(|m| m.to_string())))
            }
        }
    }

    pub async fn delete_topic(&mut self, name: &str) -> Result<(), Error> {
        let request = DeleteTopicsRequest::default()
            .with_topics(vec![DeleteTopicState::default().with_name(Some(topic_name(name)))])
            .with_timeout_ms(self.timeout_ms());
        let response = self.any_broker(DELETE_TOPICS_VERSION, &request, false).await?;
        self.cluster.topics.remove(name);
        let result = response
            .responses
            .into_iter()
            .find(|t| t.name.as_deref().map(|n| &**n) == Some(name))
            .ok_or_else(|| Error::Protocol(format!("the broker did not answer for topic {name}")))?;
        match result.error_code {
            0 => Ok(()),
            UNKNOWN_TOPIC_OR_PARTITION => Err(Error::UnknownTopic(name.into())),
            code => {
                Err(Error::kafka(format!("delete topic {name}"), code, result.error_message.map(|m| m.to_string())))
            }
        }
    }

    /// Every config of a topic, with its value and whether the topic sets it.
    pub async fn topic_configs(&mut self, name: &str) -> Result<Vec<ConfigEntry>, Error> {
        // No key list means every key; an empty one would mean none.
        let resource = DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(str_bytes(name))
            .with_configuration_keys(None);
        let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
        let response = self.any_broker(DESCRIBE_CONFIGS_VERSION, &request, true).await?;
        let result = response
            .results
            .into_iter()
            .find(|r| r.resource_type == RESOURCE_TOPIC && &*r.resource_name == name)
            .ok_or_else(|| Error::Protocol(format!("the broker did not answer for topic {name}")))?;
        match result.error_code {
            0 => {}
            UNKNOWN_TOPIC_OR_PARTITION => return Err(Error::UnknownTopic(name.into())),
            code => {
                let message = result.error_message.map(|m| m.to_string());
                return Err(Error::kafka(format!("configs of {name}"), code, message));
            }
        }
        Ok(result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                explicit: c.config_source == SOURCE_DYNAMIC_TOPIC,
            })
            .collect())
    }

    /// Appends `records` to a partition as one uncompressed batch. Returns the
    /// base offset, or `None` with `Acks::None`, which gets no answer.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[ProducerRecord],
        acks: Acks,
    ) -> Result<Option<i64>, Error> {
        let batch = records::encode_batch(records, None)?;
        // A produce whose fate is unknown is not sent again: that could duplicate it.
        self.produce_batch(topic, partition, batch, acks, false).await
    }

    /// Sends one encoded batch; `retry_unknown` says whether an attempt whose
    /// fate is unknown may be sent again (only when the broker deduplicates it).
    async fn produce_batch(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: Acks,
        retry_unknown: bool,
    ) -> Result<Option<i64>, Error> {
        let request = self.produce_request(topic, partition, batch, acks);
        if acks == Acks::None {
            let addr = self.leader_addr(topic, partition).await?;
            self.connection(&addr).await?;
            return self.write_unanswered(&addr, &request).await.map(|_| None);
        }
        let response: ProduceResponse = self
            .send_to_leader(topic, partition, PRODUCE_VERSION, &request, retry_unknown, |r: &ProduceResponse| {
                produce_answer(r, topic, partition).map(|p| p.error_code)
            })
            .await?;
        produce_offset(&response, topic, partition, &format!("produce to {topic}/{partition}")).map(Some)
    }

    /// Writes a Produce request on the open connection to `addr` without
    /// reading its answer; its correlation id. A failed write leaves the
    /// connection mid-frame, so it is dropped.
    async fn write_unanswered(&mut self, addr: &str, request: &ProduceRequest) -> Result<i32, Error> {
        let timeout = self.config.request_timeout;
        let connection =
            self.connections.get_mut(addr).ok_or_else(|| Error::Protocol(format!("no connection to {addr}")))?;
        let error = match tokio::time::timeout(timeout, connection.write_request(PRODUCE_VERSION, request)).await {
            Ok(Ok(correlation_id)) => return Ok(correlation_id),
            Ok(Err(source)) => Error::Connection { addr: addr.to_string(), source },
            Err(_) => Error::Timeout { addr: addr.to_string(), timeout },
        };
        self.connections.remove(addr);
        Err(error)
    }

    /// A Produce request carrying one batch to one partition.
    fn produce_request(&self, topic: &str, partition: i32, batch: Bytes, acks: Acks) -> ProduceRequest {
        let data = TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(batch))]);
        let wire_acks = match acks {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        };
        ProduceRequest::default().with_acks(wire_acks).with_timeout_ms(self.timeout_ms()).with_topic_data(vec![data])
    }

    /// Reads a partition from `offset`, waiting up to `max_wait` for data.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait: Duration,
        max_bytes: i32,
    ) -> Result<Fetched, Error> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX))
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_topics(vec![FetchTopic::default().with_topic(topic_name(topic)).with_partitions(vec![
                FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_current_leader_epoch(-1)
                    .with_last_fetched_epoch(-1)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(max_bytes),
            ])]);
        let response: FetchResponse = self
            .send_to_leader(topic, partition, FETCH_VERSION, &request, true, |r: &FetchResponse| {
                fetch_answer(r, topic, partition).map(|p| p.error_code)
            })
            .await?;
        let data = fetch_answer(&response, topic, partition)
            .ok_or_else(|| Error::Protocol(format!("no fetch answer for {topic}/{partition}")))?;
        if data.error_code != 0 {
            return Err(Error::kafka(format!("fetch {topic}/{partition} at {offset}"), data.error_code, None));
        }
        let decoded = records::decode_record_set(data.records.clone().unwrap_or_default(), offset);
        Ok(Fetched {
            high_watermark: data.high_watermark,
            log_start_offset: data.log_start_offset,
            batches: decoded.batches,
            broken: decoded.broken,
        })
    }

    /// The offset `spec` names in a partition; `None` when no record is at or
    /// after a timestamp.
    pub async fn list_offset(&mut self, topic: &str, partition: i32, spec: OffsetSpec) -> Result<Option<i64>, Error> {
        let request =
            ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(spec.wire())])]);
        let response = self
            .send_to_leader(topic, partition, LIST_OFFSETS_VERSION, &request, true, |r: &ListOffsetsResponse| {
                list_offsets_answer(r, topic, partition).map(|p| p.error_code)
            })
            .await?;
        match list_offsets_answer(&response, topic, partition).map(|p| (p.error_code, p.offset)) {
            Some((0, offset)) => Ok((offset >= 0).then_some(offset)),
            Some((code, _)) => Err(Error::kafka(format!("list offsets of {topic}/{partition}"), code, None)),
            None => Err(Error::Protocol(format!("no list offsets answer for {topic}/{partition}"))),
        }
    }

    /// Describes the raft group of each of `partitions` (`METADATA_TOPIC`
    /// partition 0 is the metadata group), asking each group's leader: one
    /// request per leader, and again, with fresh metadata and backoff, for the
    /// partitions whose leader moved, is unknown or could not be reached.
    pub async fn describe_quorum(&mut self, partitions: &[(String, i32)]) -> Result<Quorums, Error> {
        let mut answers = Quorums::new();
        let mut pending: Vec<(String, i32)> = partitions.to_vec();
        let mut attempt = 0;
        while !pending.is_empty() {
            if attempt > 0 {
                tokio::time::sleep(self.config.backoff(attempt - 1)).await;
            }
            self.refresh(None).await?;
            let mut by_leader: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
            for (topic, partition) in std::mem::take(&mut pending) {
                match self.group_leader_addr(&topic, partition) {
                    Ok(addr) => by_leader.entry(addr).or_default().push((topic, partition)),
                    Err((why, retry)) => {
                        if retry {
                            pending.push((topic.clone(), partition));
                        }
                        answers.insert((topic, partition), Err(why));
                    }
                }
            }
            for (addr, group) in by_leader {
                let request = describe_quorum_request(&group);
                let response: DescribeQuorumResponse =
                    match self.request(&addr, DESCRIBE_QUORUM_VERSION, &request).await {
                        Ok(response) => response,
                        Err(e) => {
                            for key in group {
                                answers.insert(key.clone(), Err(e.to_string()));
                                pending.push(key);
                            }
                            continue;
                        }
                    };
                for (topic, partition) in group {
                    let answer = quorum_answer(&response, &topic, partition);
                    let retry = answer.as_ref().is_some_and(|p| stale_leader(p.error_code));
                    let result = match answer {
                        None => Err(format!("{addr} did not answer for {topic}/{partition}")),
                        Some(p) if p.error_code == 0 => Ok(quorum_info(p)),
                        Some(p) => {
                            Err(Error::kafka(format!("{topic}/{partition} at {addr}"), p.error_code, None).to_string())
                        }
                    };
                    if retry {
                        pending.push((topic.clone(), partition));
                    }
                    answers.insert((topic, partition), result);
                }
            }
            if attempt >= self.config.retries {
                break;
            }
            attempt += 1;
        }
        Ok(answers)
    }

    /// The address of the leader of a partition's group (the controller for
    /// the metadata group), from the metadata just refreshed; else why not,
    /// and whether that may change (a leader yet to be elected or announced).
    fn group_leader_addr(&self, topic: &str, partition: i32) -> Result<String, (String, bool)> {
        let leader = if topic == METADATA_TOPIC {
            self.cluster.controller.ok_or(("no controller elected".to_string(), true))?
        } else {
            let info = self.cluster.topics.get(topic).ok_or_else(|| (format!("unknown topic {topic}"), false))?;
            let p = info.partitions.iter().find(|p| p.partition == partition);
            let p = p.ok_or_else(|| (format!("topic {topic} has no partition {partition}"), false))?;
            p.leader.ok_or(("no leader".to_string(), true))?
        };
        let broker = self.cluster.brokers.get(&leader);
        broker.map(BrokerInfo::addr).ok_or_else(|| (format!("leader {leader} is not a known broker"), true))
    }

    /// Sends `request` to the leader of `topic`'s `partition`, refreshing
    /// metadata and retrying with backoff while the partition has no leader,
    /// the leader moved, or the leader cannot be reached. `error_of` finds the
    /// partition's error code in the answer. A request that is not
    /// `idempotent` is retried only when it surely was not delivered.
    async fn send_to_leader<R: Request>(
        &mut self,
        topic: &str,
        partition: i32,
        version: i16,
        request: &R,
        idempotent: bool,
        error_of: impl Fn(&R::Response) -> Option<i16>,
    ) -> Result<R::Response, Error> {
        let mut attempt = 0;
        let mut any_delivered = false;
        loop {
            let error = match self.attempt(topic, partition, version, request, idempotent, &error_of).await? {
                Attempt::Done(response) => return Ok(response),
                Attempt::Retry { error, delivered } => {
                    any_delivered |= delivered;
                    error
                }
            };
            if attempt >= self.config.retries {
                // A last attempt that never reached a broker must not hide an
                // earlier one that did.
                let undelivered = matches!(error, Error::Connect { .. } | Error::Unreachable(_));
                return Err(if any_delivered && undelivered { Error::AfterDelivery(Box::new(error)) } else { error });
            }
            // The next attempt looks the leader up again.
            self.cluster.topics.remove(topic);
            tokio::time::sleep(self.config.backoff(attempt)).await;
            attempt += 1;
        }
    }

    async fn attempt<R: Request>(
        &mut self,
        topic: &str,
        partition: i32,
        version: i16,
        request: &R,
        idempotent: bool,
        error_of: &impl Fn(&R::Response) -> Option<i16>,
    ) -> Result<Attempt<R::Response>, Error> {
        let addr = match self.leader_addr(topic, partition).await {
            Ok(addr) => addr,
            Err(e @ (Error::Kafka { .. } | Error::Connect { .. } | Error::Unreachable(_))) => {
                return Ok(Attempt::Retry { error: e, delivered: false })
            }
            Err(e) => return Err(e),
        };
        match self.request(&addr, version, request).await {
            Ok(response) => match error_of(&response) {
                Some(code) if stale_leader(code) => {
                    let error = Error::kafka(format!("{topic}/{partition} at {addr}"), code, None);
                    Ok(Attempt::Retry { error, delivered: true })
                }
                _ => Ok(Attempt::Done(response)),
            },
            Err(e @ Error::Connect { .. }) => Ok(Attempt::Retry { error: e, delivered: false }),
            Err(e) if idempotent => Ok(Attempt::Retry { error: e, delivered: true }),
            Err(e) => Err(e),
        }
    }

    /// The address of the partition's leader, from cached metadata or a
    /// fresh look. An unknown topic or partition is final; a missing leader
    /// is a retriable LEADER_NOT_AVAILABLE.
    async fn leader_addr(&mut self, topic: &str, partition: i32) -> Result<String, Error> {
        if !self.cluster.topics.contains_key(topic) {
            self.refresh(Some(&[topic])).await?;
        }
        let info = self.cluster.topics.get(topic).ok_or_else(|| Error::UnknownTopic(topic.into()))?;
        let p = info
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .ok_or_else(|| Error::UnknownPartition { topic: topic.into(), partition })?;
        let no_leader = || Error::kafka(format!("{topic}/{partition}"), LEADER_NOT_AVAILABLE, None);
        let leader = p.leader.ok_or_else(no_leader)?;
        self.cluster.brokers.get(&leader).map(BrokerInfo::addr).ok_or_else(no_leader)
    }

    /// Sends to any broker: known brokers first, then the bootstrap list. The
    /// next one is tried when a broker cannot be reached, or for an
    /// `idempotent` request, on any failure of the exchange.
    async fn any_broker<R: Request>(
        &mut self,
        version: i16,
        request: &R,
        idempotent: bool,
    ) -> Result<R::Response, Error> {
        let mut addrs: Vec<String> = self.connections.keys().cloned().collect();
        for addr in self.cluster.brokers.values().map(BrokerInfo::addr).chain(self.config.bootstrap.iter().cloned()) {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        let mut failures = Vec::new();
        for addr in addrs {
            match self.request(&addr, version, request).await {
                Ok(response) => return Ok(response),
                Err(e @ Error::Connect { .. }) => failures.push(e),
                Err(e) if idempotent => failures.push(e),
                Err(e) => return Err(e),
            }
        }
        Err(Error::Unreachable(failures))
    }

    /// One exchange with the broker at `addr`. A connection that failed or
    /// timed out is dropped: what it would read next is unknown.
    async fn request<R: Request>(&mut self, addr: &str, version: i16, request: &R) -> Result<R::Response, Error> {
        self.request_within(addr, version, request, self.config.request_timeout).await
    }

    /// `request`, for an answer the broker may hold back up to `timeout`.
    async fn request_within<R: Request>(
        &mut self,
        addr: &str,
        version: i16,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Response, Error> {
        let timeout = timeout + NETWORK_SLACK;
        let connection = self.connection(addr).await?;
        let result = match tokio::time::timeout(timeout, connection.send(version, request)).await {
            Ok(Ok(response)) => return Ok(response),
            Ok(Err(source)) => Error::Connection { addr: addr.into(), source },
            Err(_) => Error::Timeout { addr: addr.into(), timeout },
        };
        self.connections.remove(addr);
        Err(result)
    }

    async fn connection(&mut self, addr: &str) -> Result<&mut Connection, Error> {
        if !self.connections.contains_key(addr) {
            let timeout = self.config.request_timeout;
            let connected = tokio::time::timeout(timeout, Connection::connect(addr, &self.config.client_id)).await;
            let connection = match connected {
                Ok(Ok(connection)) => connection,
                Ok(Err(crate::kafka::client::ClientError::Io(source))) => {
                    return Err(Error::Connect { addr: addr.into(), source })
                }
                Ok(Err(other)) => return Err(Error::Connection { addr: addr.into(), source: other }),
                Err(_) => {
                    let source = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer in {timeout:?}"));
                    return Err(Error::Connect { addr: addr.into(), source });
                }
            };
            self.connections.insert(addr.to_string(), connection);
        }
        self.connections.get_mut(addr).ok_or_else(|| Error::Protocol(format!("lost the connection to {addr}")))
    }

    fn timeout_ms(&self) -> i32 {
        i32::try_from(self.config.request_timeout.as_millis()).unwrap_or(i32::MAX)
    }
}

fn produce_answer<'a>(r: &'a ProduceResponse, topic: &str, partition: i32) -> Option<&'a PartitionProduceResponse> {
    r.responses.iter().filter(|t| &*t.name == topic).flat_map(|t| &t.partition_responses).find(|p| p.index == partition)
}

/// The base offset a Produce response gives `topic`/`partition`, or its error (`what` names the request).
fn produce_offset(r: &ProduceResponse, topic: &str, partition: i32, what: &str) -> Result<i64, Error> {
    let answer = produce_answer(r, topic, partition).ok_or_else(|| Error::Protocol(format!("no answer in {what}")))?;
    match answer.error_code {
        0 => Ok(answer.base_offset),
        code => Err(Error::kafka(what.to_string(), code, answer.error_message.as_ref().map(|m| m.to_string()))),
    }
}

/// An error after which the partition's leader is to be looked up again. An
/// unknown topic counts: the metadata said it exists, so the broker answering
/// has not caught up yet.
fn stale_leader(code: i16) -> bool {
    matches!(code, NOT_LEADER_OR_FOLLOWER | LEADER_NOT_AVAILABLE | UNKNOWN_TOPIC_OR_PARTITION)
}

fn fetch_answer<'a>(r: &'a FetchResponse, topic: &str, partition: i32) -> Option<&'a PartitionData> {
    r.responses
        .iter()
        .filter(|t| &*t.topic == topic)
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == partition)
}

fn list_offsets_answer<'a>(
    r: &'a ListOffsetsResponse,
    topic: &str,
    partition: i32,
) -> Option<&'a ListOffsetsPartitionResponse> {
    r.topics.iter().filter(|t| &*t.name == topic).flat_map(|t| &t.partitions).find(|p| p.partition_index == partition)
}

/// One DescribeQuorum request for `partitions`, grouped by topic.
fn describe_quorum_request(partitions: &[(String, i32)]) -> DescribeQuorumRequest {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        topics.entry(topic).or_default().push(*partition);
    }
    DescribeQuorumRequest::default().with_topics(
        topics
            .into_iter()
            .map(|(topic, partitions)| {
                describe_quorum_request::TopicData::default().with_topic_name(topic_name(topic)).with_partitions(
                    partitions
                        .into_iter()
                        .map(|p| describe_quorum_request::PartitionData::default().with_partition_index(p))
                        .collect(),
                )
            })
            .collect(),
    )
}

fn quorum_answer<'a>(
    r: &'a DescribeQuorumResponse,
    topic: &str,
    partition: i32,
) -> Option<&'a describe_quorum_response::PartitionData> {
    r.topics
        .iter()
        .filter(|t| &*t.topic_name == topic)
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == partition)
}

/// Kafka reports an unknown log end offset as -1.
fn quorum_info(p: &describe_quorum_response::PartitionData) -> QuorumInfo {
    let members = |replicas: &[describe_quorum_response::ReplicaState]| {
        replicas
            .iter()
            .map(|r| ReplicaProgress {
                id: r.replica_id.0,
                log_end_offset: (r.log_end_offset >= 0).then_some(r.log_end_offset),
            })
            .collect()
    };
    QuorumInfo {
        leader: p.leader_id.0,
        leader_epoch: p.leader_epoch,
        high_watermark: p.high_watermark,
        voters: members(&p.current_voters),
        observers: members(&p.observers),
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = ClientConfig::new(vec![]);
        let pauses: Vec<u128> = (0..8).map(|a| config.backoff(a).as_millis()).collect();
        assert_eq!(pauses, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(config.backoff(u32::MAX), config.retry_backoff_max);
    }

    #[test]
    fn quorum_requests_group_by_topic_and_answers_read_back() {
        let partitions = [("b".to_string(), 1), ("a".to_string(), 0), ("b".to_string(), 0)];
        let request = describe_quorum_request(&partitions);
        let asked: Vec<(String, Vec<i32>)> = request
            .topics
            .iter()
            .map(|t| (t.topic_name.to_string(), t.partitions.iter().map(|p| p.partition_index).collect()))
            .collect();
        assert_eq!(asked, [("a".to_string(), vec![0]), ("b".to_string(), vec![1, 0])]);

        let replica = |id, end| {
            describe_quorum_response::ReplicaState::default().with_replica_id(BrokerId(id)).with_log_end_offset(end)
        };
        let answer = describe_quorum_response::PartitionData::default()
            .with_partition_index(1)
            .with_leader_id(BrokerId(2))
            .with_leader_epoch(4)
            .with_high_watermark(90)
            .with_current_voters(vec![replica(1, 90), replica(2, 100), replica(3, -1)])
            .with_observers(vec![replica(4, 60)]);
        let response =
            DescribeQuorumResponse::default().with_topics(vec![describe_quorum_response::TopicData::default()
                .with_topic_name(topic_name("b"))
                .with_partitions(vec![answer])]);
        assert!(quorum_answer(&response, "b", 0).is_none() && quorum_answer(&response, "a", 1).is_none());
        let info = quorum_info(quorum_answer(&response, "b", 1).expect("answered"));
        assert_eq!((info.leader, info.leader_epoch, info.high_watermark, info.log_end_offset()), (2, 4, 90, Some(100)));
        let lags: Vec<Option<i64>> = info.voters.iter().chain(&info.observers).map(|r| info.lag(r)).collect();
        assert_eq!(lags, [Some(10), Some(0), None, Some(40)]);
        let leaderless = QuorumInfo { leader: 7, ..info };
        assert_eq!(leaderless.lag(&leaderless.voters[0]), None, "no lag without the leader's log end");
    }
}
