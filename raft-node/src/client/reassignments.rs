//! Moving partition replicas as an administrator does: start or cancel
//! moves (AlterPartitionReassignments), list those in progress
//! (ListPartitionReassignments), set how fast moves copy
//! (IncrementalAlterConfigs of the move throttle), mark brokers draining
//! and read the marks (IncrementalAlterConfigs and DescribeConfigs of
//! `keel.broker.draining`), and take an emptied broker out of the cluster
//! (UnregisterBroker), all answered by any broker through the metadata
//! group.

use std::collections::BTreeSet;

use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId, DescribeConfigsRequest,
    DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, UnregisterBrokerRequest,
    UnregisterBrokerResponse,
};
use kafka_protocol::protocol::StrBytes;
use log_core::metadata::plan::{self, Placement};
use log_core::metadata::{BROKER_DRAINING, LEADER_THROTTLED_RATE};
use serde::Serialize;

use super::{str_bytes, topic_name, Client, Error, DESCRIBE_CONFIGS_VERSION};
use crate::kafka::config_codes::{OP_DELETE, OP_SET, RESOURCE_BROKER};

const ALTER_PARTITION_REASSIGNMENTS_VERSION: i16 = 0;
const LIST_PARTITION_REASSIGNMENTS_VERSION: i16 = 0;
const UNREGISTER_BROKER_VERSION: i16 = 0;
const INCREMENTAL_ALTER_CONFIGS_VERSION: i16 = 0;

/// One partition's move: to `replicas`, or `None` to cancel the move in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub replicas: Option<Vec<i32>>,
}

impl From<Placement> for Move {
    /// The move of a partition to the replicas of a planned placement.
    fn from(planned: Placement) -> Move {
        Move { topic: planned.topic, partition: planned.partition, replicas: Some(planned.replicas) }
    }
}

/// The moves that turn `current` into `planned` (replica lists in the same order).
pub fn moves_between(current: &[Placement], planned: Vec<Vec<i32>>) -> Vec<Move> {
    plan::changes(current, planned).into_iter().map(Move::from).collect()
}

/// A move in progress, as the metadata holds it (KIP-455).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MoveInProgress {
    pub topic: String,
    pub partition: i32,
    /// Every broker holding the partition until the move completes.
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl Client {
    /// Submits `moves`; the answer for each, in order: accepted, or why not.
    pub async fn reassign(&mut self, moves: &[Move]) -> Result<Vec<Result<(), Error>>, Error> {
        let mut topics: Vec<ReassignableTopic> = Vec::new();
        for m in moves {
            let partition = ReassignablePartition::default()
                .with_partition_index(m.partition)
                .with_replicas(m.replicas.as_ref().map(|r| r.iter().map(|&b| BrokerId(b)).collect()));
            match topics.iter_mut().find(|t| t.name.as_str() == m.topic) {
                Some(t) => t.partitions.push(partition),
                None => topics.push(
                    ReassignableTopic::default().with_name(topic_name(&m.topic)).with_partitions(vec![partition]),
                ),
            }
        }
        let request =
            AlterPartitionReassignmentsRequest::default().with_topics(topics).with_timeout_ms(self.timeout_ms());
        // Not retried on another broker once sent: a second try would meet its own first.
        let response: AlterPartitionReassignmentsResponse =
            self.any_broker(ALTER_PARTITION_REASSIGNMENTS_VERSION, &request, false).await?;
        if response.error_code != 0 {
            let message = response.error_message.map(|m| m.to_string());
            return Err(Error::kafka("reassign".into(), response.error_code, message));
        }
        let answer = |m: &Move| {
            let p = response
                .responses
                .iter()
                .filter(|t| t.name.as_str() == m.topic)
                .flat_map(|t| &t.partitions)
                .find(|p| p.partition_index == m.partition);
            let context = || format!("move {}/{}", m.topic, m.partition);
            match p {
                None => Err(Error::Protocol(format!("the broker did not answer for {}", context()))),
                Some(p) if p.error_code == 0 => Ok(()),
                Some(p) => Err(Error::kafka(context(), p.error_code, p.error_message.as_ref().map(|m| m.to_string()))),
            }
        };
        Ok(moves.iter().map(answer).collect())
    }

    /// The registered brokers and every partition's replicas, to plan moves
    /// over; refused while moves are in progress, since a plan over a moving
    /// cluster would fight them.
    pub async fn placement(&mut self) -> Result<(Vec<i32>, Vec<Placement>), String> {
        let moving = self.reassignments().await.map_err(|e| e.to_string())?;
        if let Some(m) = moving.first() {
            return Err(format!(
                "{} move(s) in progress (first: {}/{}); see `keel cluster status`, or wait",
                moving.len(),
                m.topic,
                m.partition
            ));
        }
        let cluster = self.metadata().await.map_err(|e| e.to_string())?;
        let brokers: Vec<i32> = cluster.brokers.keys().copied().collect();
        let partitions = cluster
            .topics
            .values()
            .flat_map(|t| {
                t.partitions.iter().map(|p| Placement {
                    topic: t.name.clone(),
                    partition: p.partition,
                    replicas: p.replicas.clone(),
                })
            })
            .collect();
        Ok((brokers, partitions))
    }

    /// Every move in progress, by topic and partition.
    pub async fn reassignments(&mut self) -> Result<Vec<MoveInProgress>, Error> {
        let request = ListPartitionReassignmentsRequest::default().with_timeout_ms(self.timeout_ms()).with_topics(None);
        let response: ListPartitionReassignmentsResponse =
            self.any_broker(LIST_PARTITION_REASSIGNMENTS_VERSION, &request, true).await?;
        if response.error_code != 0 {
            let message = response.error_message.map(|m| m.to_string());
            return Err(Error::kafka("list moves".into(), response.error_code, message));
        }
        let ids = |brokers: &[BrokerId]| brokers.iter().map(|b| b.0).collect();
        Ok(response
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| MoveInProgress {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    replicas: ids(&p.replicas),
                    adding: ids(&p.adding_replicas),
                    removing: ids(&p.removing_replicas),
                })
            })
            .collect())
    }

    /// Sets the move throttle of `broker` (`None`: every broker's default)
    /// to `bytes_per_sec` (0: no limit), or with `None` clears it.
    pub async fn set_move_throttle(&mut self, broker: Option<i32>, bytes_per_sec: Option<u64>) -> Result<(), Error> {
        let value = bytes_per_sec.map(|rate| rate.to_string());
        self.alter_broker_config(broker, LEADER_THROTTLED_RATE, value, "set the move throttle").await
    }

    /// Marks `broker` draining (no replica is placed on it; rebalances move
    /// its replicas off), or clears the mark.
    pub async fn set_draining(&mut self, broker: i32, draining: bool) -> Result<(), Error> {
        let what = format!("mark broker {broker} {}", if draining { "draining" } else { "not draining" });
        self.alter_broker_config(Some(broker), BROKER_DRAINING, draining.then(|| "true".into()), &what).await
    }

    /// Sets broker config `key` of `broker` (`None`: every broker's default)
    /// to `value`, or with `None` deletes it.
    async fn alter_broker_config(
        &mut self,
        broker: Option<i32>,
        key: &'static str,
        value: Option<String>,
        what: &str,
    ) -> Result<(), Error> {
        let config = AlterableConfig::default()
            .with_name(StrBytes::from_static_str(key))
            .with_config_operation(if value.is_some() { OP_SET } else { OP_DELETE })
            .with_value(value.map(StrBytes::from_string));
        let resource = AlterConfigsResource::default()
            .with_resource_type(RESOURCE_BROKER)
            .with_resource_name(StrBytes::from_string(broker.map(|b| b.to_string()).unwrap_or_default()))
            .with_configs(vec![config]);
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![resource]);
        let response: IncrementalAlterConfigsResponse =
            self.any_broker(INCREMENTAL_ALTER_CONFIGS_VERSION, &request, true).await?;
        match response.responses.first() {
            Some(r) if r.error_code != 0 => {
                let message = r.error_message.as_ref().map(|m| m.to_string());
                Err(Error::kafka(what.into(), r.error_code, message))
            }
            Some(_) => Ok(()),
            None => Err(Error::kafka(what.into(), -1, Some("no answer for the broker".into()))),
        }
    }

    /// The registered brokers marked draining: those whose DescribeConfigs
    /// shows `keel.broker.draining` true.
    pub async fn draining(&mut self) -> Result<BTreeSet<i32>, Error> {
        let brokers: Vec<i32> = self.metadata().await?.brokers.keys().copied().collect();
        let resources = brokers
            .iter()
            .map(|b| {
                DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_BROKER)
                    .with_resource_name(str_bytes(&b.to_string()))
                    .with_configuration_keys(Some(vec![str_bytes(BROKER_DRAINING)]))
            })
            .collect();
        let request = DescribeConfigsRequest::default().with_resources(resources);
        let response: DescribeConfigsResponse = self.any_broker(DESCRIBE_CONFIGS_VERSION, &request, true).await?;
        let mut draining = BTreeSet::new();
        for result in response.results {
            if result.error_code != 0 {
                let message = result.error_message.map(|m| m.to_string());
                return Err(Error::kafka(
                    format!("configs of broker {}", &*result.resource_name),
                    result.error_code,
                    message,
                ));
            }
            let marked =
                result.configs.iter().any(|c| &*c.name == BROKER_DRAINING && c.value.as_deref() == Some("true"));
            match result.resource_name.parse::<i32>() {
                Ok(id) if marked => drop(draining.insert(id)),
                Ok(_) => {}
                Err(_) => {
                    return Err(Error::Protocol(format!("configs of an unasked resource {:?}", &*result.resource_name)))
                }
            }
        }
        Ok(draining)
    }

    /// Takes `broker` out of the cluster for good; refused while any
    /// partition replica is still on it.
    pub async fn unregister_broker(&mut self, broker: i32) -> Result<(), Error> {
        let request = UnregisterBrokerRequest::default().with_broker_id(BrokerId(broker));
        let response: UnregisterBrokerResponse = self.any_broker(UNREGISTER_BROKER_VERSION, &request, false).await?;
        if response.error_code != 0 {
            let message = response.error_message.map(|m| m.to_string());
            return Err(Error::kafka(format!("remove broker {broker}"), response.error_code, message));
        }
        Ok(())
    }
}
