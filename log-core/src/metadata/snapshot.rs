//! The machine's state as bytes (raft snapshots), and the invariants every
//! state must hold, checked after each command in debug builds and on every
//! decode.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::command::DecodeError;
use super::config::TopicConfig;
use super::producer_ids::{ProducerIdBlock, PRODUCER_ID_BLOCK_SIZE};
use super::reassign::Reassignment;
use super::throttle::MoveThrottles;
use super::topic::{self, Broker, BrokerId, PartitionAssignment, Topic, TopicId};
use super::{ClusterMetadata, MAX_PARTITIONS};

/// The serialized fields: everything but the derived id index.
#[derive(Serialize)]
struct StateRef<'a> {
    epoch: u64,
    brokers: &'a BTreeMap<BrokerId, Broker>,
    topics: &'a BTreeMap<String, Topic>,
    next_producer_id: i64,
    producer_id_blocks: &'a BTreeMap<BrokerId, ProducerIdBlock>,
    /// Left out while empty: a state without removals encodes as before.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    removed: &'a BTreeSet<BrokerId>,
    #[serde(skip_serializing_if = "MoveThrottles::is_empty")]
    throttles: &'a MoveThrottles,
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    draining: &'a BTreeSet<BrokerId>,
}

/// The same fields read back, unchecked: topics and assignments exist only
/// inside a checked state.
#[derive(Deserialize)]
struct State {
    epoch: u64,
    brokers: BTreeMap<BrokerId, Broker>,
    topics: BTreeMap<String, TopicState>,
    /// Absent from states written before producer ids existed.
    #[serde(default)]
    next_producer_id: i64,
    #[serde(default)]
    producer_id_blocks: BTreeMap<BrokerId, ProducerIdBlock>,
    /// Absent from states written before brokers could leave.
    #[serde(default)]
    removed: BTreeSet<BrokerId>,
    /// Absent from states written before throttles could be set, and when none is.
    #[serde(default)]
    throttles: MoveThrottles,
    /// Absent from states written before brokers could drain, and when none does.
    #[serde(default)]
    draining: BTreeSet<BrokerId>,
}

#[derive(Deserialize)]
struct TopicState {
    id: TopicId,
    partitions: Vec<PartitionState>,
    config: TopicConfig,
}

#[derive(Deserialize)]
struct PartitionState {
    replicas: Vec<BrokerId>,
    /// Absent from states written before moves existed, and when unset.
    #[serde(default)]
    reassignment: Option<Reassignment>,
    #[serde(default)]
    moves: u32,
    #[serde(default)]
    created_with: Vec<BrokerId>,
    #[serde(default)]
    generations: BTreeMap<BrokerId, u32>,
    #[serde(default)]
    leaving: Vec<BrokerId>,
}

impl From<TopicState> for Topic {
    fn from(t: TopicState) -> Topic {
        let partitions = t
            .partitions
            .into_iter()
            .map(|p| PartitionAssignment {
                replicas: p.replicas,
                reassignment: p.reassignment,
                moves: p.moves,
                created_with: p.created_with,
                generations: p.generations,
                leaving: p.leaving,
            })
            .collect();
        Topic { id: t.id, partitions, config: t.config }
    }
}

impl Serialize for ClusterMetadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StateRef {
            epoch: self.epoch,
            brokers: &self.brokers,
            topics: &self.topics,
            next_producer_id: self.next_producer_id,
            producer_id_blocks: &self.producer_id_blocks,
            removed: &self.removed,
            throttles: &self.throttles,
            draining: &self.draining,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ClusterMetadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let State { epoch, brokers, topics, next_producer_id, producer_id_blocks, removed, throttles, draining } =
            State::deserialize(deserializer)?;
        let topics: BTreeMap<String, Topic> = topics.into_iter().map(|(name, t)| (name, t.into())).collect();
        let names_by_id = topics.iter().map(|(name, t)| (t.id, name.clone())).collect();
        let state = ClusterMetadata {
            epoch,
            brokers,
            topics,
            next_producer_id,
            producer_id_blocks,
            removed,
            throttles,
            draining,
            names_by_id,
        };
        state.check().map_err(serde::de::Error::custom)?;
        Ok(state)
    }
}

impl ClusterMetadata {
    /// The state as snapshot bytes; equal states give equal bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the state always serializes: string or integer map keys only")
    }

    /// A state from snapshot bytes, refused unless it holds every invariant.
    pub fn decode(bytes: &[u8]) -> Result<ClusterMetadata, DecodeError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// What every accepted command preserves (topic configs are valid by type).
    pub(super) fn check(&self) -> Result<(), String> {
        for (id, broker) in &self.brokers {
            topic::validate_broker(*id, broker).map_err(|e| format!("broker {id}: {e}"))?;
            if self.removed.contains(id) {
                return Err(format!("broker {id} is both registered and removed"));
            }
        }
        if let Some(b) = self.throttles.brokers.keys().find(|b| !self.brokers.contains_key(b)) {
            return Err(format!("a move throttle for unregistered broker {b}"));
        }
        if let Some(b) = self.draining.iter().find(|b| !self.brokers.contains_key(b)) {
            return Err(format!("unregistered broker {b} is draining"));
        }
        let unified: BTreeSet<Vec<u8>> = self.topics.keys().map(|name| topic::unified(name)).collect();
        if unified.len() != self.topics.len() {
            return Err("two topic names collide".into());
        }
        if self.names_by_id.len() != self.topics.len() {
            return Err("two topics share an id".into());
        }
        for (name, t) in &self.topics {
            let fail = |e: &str| Err(format!("topic {name:?}: {e}"));
            if let Err(e) = topic::validate_topic_name(name) {
                return fail(e);
            }
            if topic::is_reserved(&t.id) || self.names_by_id.get(&t.id) != Some(name) {
                return fail("bad or unindexed id");
            }
            if t.partitions.is_empty() || t.partitions.len() > MAX_PARTITIONS as usize {
                return fail("partition count out of range");
            }
            for p in &t.partitions {
                let distinct: BTreeSet<&BrokerId> = p.replicas.iter().collect();
                if p.replicas.is_empty() || distinct.len() != p.replicas.len() {
                    return fail("replicas are empty or repeated");
                }
                if !p.replicas.iter().chain(&p.leaving).all(|r| self.brokers.contains_key(r)) {
                    return fail("a replica is on an unregistered broker");
                }
                if let Err(e) = p.check_reassignment() {
                    return fail(e);
                }
            }
        }
        self.check_producer_ids()
    }

    /// Every block was allocated (below the counter) to a registered broker,
    /// and no two blocks share an id.
    fn check_producer_ids(&self) -> Result<(), String> {
        if self.next_producer_id < 0 {
            return Err("negative producer id counter".into());
        }
        let mut blocks: Vec<(ProducerIdBlock, BrokerId)> =
            self.producer_id_blocks.iter().map(|(broker, block)| (*block, *broker)).collect();
        blocks.sort();
        for (block, broker) in &blocks {
            if !self.brokers.contains_key(broker) {
                return Err(format!("producer ids of unregistered broker {broker}"));
            }
            if block.first < 0 || block.first > self.next_producer_id - PRODUCER_ID_BLOCK_SIZE {
                return Err(format!("producer id block {block:?} of broker {broker} was never allocated"));
            }
        }
        if blocks.windows(2).any(|w| w[0].0.end() > w[1].0.first) {
            return Err("two producer id blocks overlap".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Command;

    #[test]
    fn round_trips_and_refuses_broken_states() {
        let mut m = ClusterMetadata::default();
        m.apply(Command::RegisterBroker { id: 1, host: "h".into(), port: 1, rack: None, raft: None }).unwrap();
        let create = Command::CreateTopic {
            name: "t".into(),
            id: [7; 16],
            partitions: 2,
            replication_factor: 1,
            configs: [("retention.ms".to_string(), "5".to_string())].into(),
        };
        m.apply(create).unwrap();
        let bytes = m.encode();
        assert_eq!(ClusterMetadata::decode(&bytes).unwrap(), m);
        assert_eq!(ClusterMetadata::decode(&bytes).unwrap().encode(), bytes);

        let text = String::from_utf8(bytes).unwrap();
        for broken in [
            text.replace("[1]", "[2]"),               // replica on an unknown broker
            text.replace("\"5\"", "\"x\""),           // bad config value
            text.replace("\"port\":1", "\"port\":0"), // bad registration
            text.replace("\"t\":", "\"a b\":"),       // bad name
            text.replace("[7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7]", &format!("{:?}", [0u8; 16])), // reserved id
            text.replacen(
                "{\"replicas\":[1]}",
                "{\"replicas\":[1],\"reassignment\":{\"target\":[1],\"adding\":[],\"removing\":[1]},\"moves\":1}",
                1,
            ), // a move that keeps what it removes
        ] {
            assert_ne!(broken, text);
            assert!(ClusterMetadata::decode(broken.as_bytes()).is_err(), "{broken}");
        }
        assert!(ClusterMetadata::decode(b"\xff{").is_err());
    }
}
