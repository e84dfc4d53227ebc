//! CreateTopics and DeleteTopics, through the metadata group from any broker.
//!
//! A command is first applied to a copy of the current metadata: the machine
//! is pure, so its verdict (bad name, existing topic, bad config ...) is the
//! one the group would reach, with the exact Kafka error. A command that
//! passes is proposed (raft forwards it to the leader) and the request waits
//! until the published metadata shows its effect, or the timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse};
use log_core::metadata::{ClusterMetadata, Command, TopicId};
use log_core::ErrorCode;
use rand::RngCore;

use super::{str_bytes, topic_name, until, KafkaApi};
use crate::node::Request;

/// Partitions of a topic created without a count (Kafka's num.partitions).
const DEFAULT_PARTITIONS: i32 = 1;
/// Replication factor when none is given: Kafka's default, capped by brokers.
const DEFAULT_REPLICATION_FACTOR: usize = 3;

pub(super) type Refusal = (ErrorCode, String);

impl KafkaApi {
    pub async fn create_topics(&self, request: &CreateTopicsRequest) -> CreateTopicsResponse {
        let deadline = deadline(request.timeout_ms);
        let mut topics = Vec::new();
        for topic in &request.topics {
            let result = CreatableTopicResult::default().with_name(topic.name.clone());
            topics.push(match self.create_topic(topic, request.validate_only, deadline).await {
                Ok((id, partitions, factor)) => result
                    .with_topic_id(uuid::Uuid::from_bytes(id))
                    .with_num_partitions(partitions)
                    .with_replication_factor(factor),
                Err((code, message)) => result
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(&message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            });
        }
        CreateTopicsResponse::default().with_topics(topics)
    }

    async fn create_topic(
        &self,
        topic: &CreatableTopic,
        validate_only: bool,
        deadline: tokio::time::Instant,
    ) -> Result<(TopicId, i32, i16), Refusal> {
        if !topic.assignments.is_empty() {
            return Err((ErrorCode::InvalidRequest, "manual replica assignment is not supported".into()));
        }
        let view = self.view();
        let brokers = view.metadata.brokers().count();
        let partitions = if topic.num_partitions == -1 { DEFAULT_PARTITIONS } else { topic.num_partitions };
        let factor = match topic.replication_factor {
            -1 => DEFAULT_REPLICATION_FACTOR.min(brokers.max(1)) as i16,
            factor => factor,
        };
        let mut configs = BTreeMap::new();
        for c in &topic.configs {
            let value =
                c.value.as_ref().ok_or((ErrorCode::InvalidConfig, format!("config {} has no value", c.name)))?;
            if configs.insert(c.name.to_string(), value.to_string()).is_some() {
                return Err((ErrorCode::InvalidRequest, format!("config {} is given twice", c.name)));
            }
        }
        let id = self.new_topic_id();
        let name = topic.name.to_string();
        let command = Command::CreateTopic { name: name.clone(), id, partitions, replication_factor: factor, configs };
        precheck(&view.metadata, &command)?;
        if !validate_only {
            self.propose_and_wait(command, deadline, |m| match m.topic(&name) {
                Some(t) if t.id() == id => Some(Ok(())),
                Some(_) => Some(Err((ErrorCode::TopicAlreadyExists, format!("topic {name} already exists")))),
                None => None,
            })
            .await?;
        }
        Ok((id, partitions, factor))
    }

    pub async fn delete_topics(&self, request: &DeleteTopicsRequest) -> DeleteTopicsResponse {
        let deadline = deadline(request.timeout_ms);
        // Versions up to 5 name topics in `topic_names`; 6 in `topics`.
        let names: Vec<String> = request
            .topic_names
            .iter()
            .map(|n| n.to_string())
            .chain(request.topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.to_string())))
            .collect();
        let mut responses = Vec::new();
        for name in names {
            let result = DeletableTopicResult::default().with_name(Some(topic_name(&name)));
            responses.push(match self.delete_topic(&name, deadline).await {
                Ok(()) => result,
                Err((code, message)) => {
                    result.with_error_code(code.code()).with_error_message(Some(str_bytes(&message)))
                }
            });
        }
        DeleteTopicsResponse::default().with_responses(responses)
    }

    async fn delete_topic(&self, name: &str, deadline: tokio::time::Instant) -> Result<(), Refusal> {
        let command = Command::DeleteTopic { name: name.to_string() };
        let view = self.view();
        precheck(&view.metadata, &command)?;
        let id = view.metadata.topic(name).map(|t| t.id());
        self.propose_and_wait(command, deadline, |m| match m.topic(name) {
            Some(t) if Some(t.id()) == id => None,
            _ => Some(Ok(())),
        })
        .await
    }

    /// Proposes `command` and waits until `effect` sees the metadata settle
    /// it one way or the other.
    pub(super) async fn propose_and_wait(
        &self,
        command: Command,
        deadline: tokio::time::Instant,
        effect: impl Fn(&ClusterMetadata) -> Option<Result<(), Refusal>>,
    ) -> Result<(), Refusal> {
        let mut view = self.node.watch_view();
        if !self.node.send(Request::Propose { command }).await {
            return Err((ErrorCode::NotController, "the broker is shutting down".into()));
        }
        loop {
            if let Some(result) = effect(&view.borrow_and_update().metadata) {
                return result;
            }
            match until(deadline, view.changed()).await {
                Some(Ok(())) => {}
                _ => return Err((ErrorCode::RequestTimedOut, "the metadata change did not commit in time".into())),
            }
        }
    }

    fn new_topic_id(&self) -> TopicId {
        let mut id = [0u8; 16];
        // A poisoned lock only means another request panicked mid-draw; the
        // generator itself is still usable.
        let mut rng = self.topic_ids.lock().unwrap_or_else(|e| e.into_inner());
        rng.fill_bytes(&mut id);
        id
    }
}

/// The verdict the metadata machine would reach on `command` now.
pub(super) fn precheck(metadata: &ClusterMetadata, command: &Command) -> Result<(), Refusal> {
    let mut probe = metadata.clone();
    probe.apply(command.clone()).map(|_| ()).map_err(|e| (e.code(), e.to_string()))
}

pub(super) fn deadline(timeout_ms: i32) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64)
}
