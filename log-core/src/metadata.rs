//! The cluster metadata machine: the state of the raft metadata group (the
//! controller), replicated on every broker.
//!
//! Every broker applies the same committed `Command`s in the same order and
//! reaches the same `ClusterMetadata`, byte for byte: ordered maps only, the
//! replica assignment computed from the state alone, topic ids supplied by
//! the proposer. A rejected command changes nothing, not even the epoch.

mod assign;
mod auto_rebalance;
mod command;
mod config;
mod error;
pub mod plan;
mod producer_ids;
mod quorum;
mod reassign;
mod snapshot;
mod throttle;
mod topic;

use std::collections::{BTreeMap, BTreeSet};

pub use command::{Command, DecodeError, Outcome};
pub use config::{
    ConfigError, TopicConfig, CLEANUP_POLICY, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_RETENTION_BYTES, DEFAULT_RETENTION_MS,
    DEFAULT_SEGMENT_BYTES, MAX_MESSAGE_BYTES, RETENTION_BYTES, RETENTION_MS, SEGMENT_BYTES,
};
pub use error::MetadataError;
pub use producer_ids::{ProducerIdBlock, PRODUCER_ID_BLOCK_SIZE};
pub use quorum::{MetadataMembers, MAX_METADATA_VOTERS};
pub use reassign::Reassignment;
pub use throttle::{MoveThrottles, LEADER_THROTTLED_RATE};
pub use topic::{
    validate_topic_name, Broker, BrokerId, PartitionAssignment, Topic, TopicId, MAX_TOPIC_NAME_LEN, METADATA_TOPIC,
    OFFSETS_TOPIC,
};

/// The broker config that marks a broker draining (`true`/`false`), set
/// through IncrementalAlterConfigs; Keel's own, Kafka has none.
pub const BROKER_DRAINING: &str = "keel.broker.draining";

/// The most partitions one topic may have: each is a raft group, and one
/// committed command must not be able to exhaust every broker's memory.
pub const MAX_PARTITIONS: i32 = 10_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Bumped by every accepted command.
    epoch: u64,
    brokers: BTreeMap<BrokerId, Broker>,
    topics: BTreeMap<String, Topic>,
    /// One past the last producer id allocated.
    next_producer_id: i64,
    /// The newest block of producer ids of each broker that asked for one.
    producer_id_blocks: BTreeMap<BrokerId, ProducerIdBlock>,
    /// Brokers unregistered: they left for good, and their ids stay unused
    /// (a removed broker still running must not register itself back).
    removed: BTreeSet<BrokerId>,
    /// Move throttles set at run time.
    throttles: MoveThrottles,
    /// Registered brokers being emptied for removal: never a planner's target.
    draining: BTreeSet<BrokerId>,
    /// Derived from `topics` (not serialized): lookups by id, as Fetch v13+ does.
    names_by_id: BTreeMap<TopicId, String>,
}

impl ClusterMetadata {
    /// Applies a committed command: all of it, or nothing and an error.
    pub fn apply(&mut self, command: Command) -> Result<Outcome, MetadataError> {
        let outcome = match command {
            Command::RegisterBroker { id, host, port, rack, raft } => {
                self.register_broker(id, Broker { host, port, rack, raft })?
            }
            Command::UnregisterBroker { id } => self.unregister_broker(id)?,
            Command::CreateTopic { name, id, partitions, replication_factor, configs } => {
                self.create_topic(name, id, partitions, replication_factor, configs)?
            }
            Command::DeleteTopic { name } => self.delete_topic(name)?,
            Command::AllocateProducerIds { broker, token } => self.allocate_producer_ids(broker, token)?,
            Command::ReassignPartition { topic, partition, replicas } => {
                self.reassign_partition(topic, partition, replicas)?
            }
            Command::CompleteReassignment { topic, partition, target } => {
                let assignment = self.partition_mut(&topic, partition)?;
                let before = assignment.replicas.clone();
                assignment.complete_reassignment(&target)?;
                let removed = before.into_iter().filter(|b| !target.contains(b)).collect();
                Outcome::ReassignmentCompleted { topic, partition, removed }
            }
            Command::ReplicaDeleted { topic, partition, broker } => {
                self.partition_mut(&topic, partition)?.replica_deleted(broker)?;
                Outcome::ReplicaDeleted { topic, partition, broker }
            }
            Command::SetMoveThrottle { broker, bytes_per_sec } => {
                if let Some(b) = broker.filter(|b| !self.brokers.contains_key(b)) {
                    return Err(MetadataError::UnknownBroker(b));
                }
                self.throttles.set(broker, bytes_per_sec);
                Outcome::MoveThrottleSet { broker, bytes_per_sec }
            }
            Command::SetDraining { broker, draining } => {
                if !self.brokers.contains_key(&broker) {
                    return Err(MetadataError::UnknownBroker(broker));
                }
                match draining {
                    true => self.draining.insert(broker),
                    false => self.draining.remove(&broker),
                };
                Outcome::DrainingSet { broker, draining }
            }
        };
        self.epoch += 1;
        debug_assert_eq!(self.check(), Ok(()));
        Ok(outcome)
    }

    fn register_broker(&mut self, id: BrokerId, broker: Broker) -> Result<Outcome, MetadataError> {
        topic::validate_broker(id, &broker).map_err(MetadataError::InvalidBroker)?;
        if self.removed.contains(&id) {
            return Err(MetadataError::BrokerRemoved(id));
        }
        let previous = self.brokers.insert(id, broker);
        Ok(Outcome::BrokerRegistered { id, previous })
    }

    /// Refused while any replica, or a move's target, names the broker: its
    /// data must have moved off first.
    fn unregister_broker(&mut self, id: BrokerId) -> Result<Outcome, MetadataError> {
        if !self.brokers.contains_key(&id) {
            return Err(MetadataError::UnknownBroker(id));
        }
        if let Some((topic, partition)) = self.partitions_on(id).next() {
            return Err(MetadataError::BrokerInUse { broker: id, topic: topic.to_owned(), partition });
        }
        // A replica it has not reported deleted is moot: the id never comes
        // back, so no move can bring the partition back onto it. (A broker
        // that died for good never reports.)
        for p in self.topics.values_mut().flat_map(|t| t.partitions.iter_mut()) {
            p.leaving.retain(|&b| b != id);
        }
        self.brokers.remove(&id);
        self.producer_id_blocks.remove(&id);
        self.throttles.set(Some(id), None);
        self.draining.remove(&id);
        self.removed.insert(id);
        Ok(Outcome::BrokerUnregistered { id })
    }

    /// The partitions whose replicas (those being added included) or move
    /// target name `broker`.
    pub fn partitions_on(&self, broker: BrokerId) -> impl Iterator<Item = (&str, i32)> + '_ {
        self.topics.iter().flat_map(move |(name, t)| {
            let named = t.partitions.iter().enumerate().filter(move |(_, p)| {
                p.replicas.contains(&broker) || p.reassignment.as_ref().is_some_and(|r| r.target.contains(&broker))
            });
            named.map(move |(i, _)| (name.as_str(), i as i32))
        })
    }

    /// Whether `id` was unregistered (it left the cluster for good).
    pub fn is_removed(&self, id: BrokerId) -> bool {
        self.removed.contains(&id)
    }
    /// Checks in Kafka's order (name, existence, then the request's numbers),
    /// and mutates only once everything has passed.
    fn create_topic(
        &mut self,
        name: String,
        id: TopicId,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) -> Result<Outcome, MetadataError> {
        if let Err(reason) = topic::validate_topic_name(&name) {
            return Err(MetadataError::InvalidTopicName { name, reason });
        }
        if self.topics.contains_key(&name) {
            return Err(MetadataError::TopicAlreadyExists(name));
        }
        if let Some(existing) = self.topics.keys().find(|t| topic::collides(t, &name)) {
            return Err(MetadataError::TopicNameCollision { existing: existing.clone(), name });
        }
        if topic::is_reserved(&id) {
            return Err(MetadataError::ReservedTopicId(id));
        }
        if let Some(existing) = self.names_by_id.get(&id) {
            return Err(MetadataError::TopicIdInUse { id, existing: existing.clone() });
        }
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(MetadataError::InvalidPartitions(partitions));
        }
        let brokers = self.targets();
        let factor = usize::try_from(replication_factor).unwrap_or(0);
        if !(1..=brokers.len()).contains(&factor) {
            return Err(MetadataError::InvalidReplicationFactor {
                factor: replication_factor,
                brokers: brokers.len(),
                draining: self.draining.iter().copied().collect(),
            });
        }
        let config = TopicConfig::new(configs)?;
        // Its log is the offsets store: retention must never delete from it.
        if name == topic::OFFSETS_TOPIC && (config.retention_ms() != -1 || config.retention_bytes() != -1) {
            return Err(MetadataError::InternalTopic {
                name,
                reason: "it needs retention.ms=-1 and retention.bytes=-1",
            });
        }
        // Start where the previous topics left off, so that partition 0 of
        // every topic is not led by the same broker.
        let assigned: usize = self.topics.values().map(|t| t.partitions.len()).sum();
        let partitions = assign::assign(&brokers, partitions as usize, factor, assigned % brokers.len());
        self.names_by_id.insert(id, name.clone());
        self.topics.insert(name.clone(), Topic { id, partitions, config });
        Ok(Outcome::TopicCreated { name, id })
    }

    fn delete_topic(&mut self, name: String) -> Result<Outcome, MetadataError> {
        if name == topic::OFFSETS_TOPIC {
            return Err(MetadataError::InternalTopic { name, reason: "it holds the committed offsets of every group" });
        }
        let Some(topic) = self.topics.remove(&name) else {
            return Err(MetadataError::UnknownTopic(name));
        };
        self.names_by_id.remove(&topic.id);
        Ok(Outcome::TopicDeleted { name, topic })
    }

    fn allocate_producer_ids(&mut self, broker: BrokerId, token: u64) -> Result<Outcome, MetadataError> {
        if !self.brokers.contains_key(&broker) {
            return Err(MetadataError::UnknownBroker(broker));
        }
        let block = producer_ids::allocate(self.next_producer_id, token).ok_or(MetadataError::ProducerIdsExhausted)?;
        self.next_producer_id = block.end();
        self.producer_id_blocks.insert(broker, block);
        Ok(Outcome::ProducerIdsAllocated { broker, block })
    }

    /// Starts (`Some`) or cancels (`None`) a move; the target must name
    /// distinct registered brokers.
    fn reassign_partition(
        &mut self,
        topic: String,
        partition: i32,
        replicas: Option<Vec<BrokerId>>,
    ) -> Result<Outcome, MetadataError> {
        if let Some(target) = &replicas {
            if target.is_empty() {
                return Err(MetadataError::InvalidReplicaAssignment("no replicas"));
            }
            if target.iter().enumerate().any(|(i, b)| target[..i].contains(b)) {
                return Err(MetadataError::InvalidReplicaAssignment("a broker is named twice"));
            }
            if !target.iter().all(|b| self.brokers.contains_key(b)) {
                return Err(MetadataError::InvalidReplicaAssignment("a broker is not registered"));
            }
        }
        let assignment = self.partition_mut(&topic, partition)?;
        match replicas {
            Some(target) => assignment.start_reassignment(target)?,
            None => assignment.cancel_reassignment()?,
        }
        Ok(Outcome::PartitionReassigned { topic, partition })
    }

    fn partition_mut(&mut self, topic: &str, partition: i32) -> Result<&mut PartitionAssignment, MetadataError> {
        let t = self.topics.get_mut(topic).ok_or_else(|| MetadataError::UnknownTopic(topic.to_owned()))?;
        usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get_mut(i))
            .ok_or_else(|| MetadataError::UnknownPartition { topic: topic.to_owned(), partition })
    }

    /// Every partition with a move in progress: (topic, partition, assignment).
    pub fn reassignments(&self) -> impl Iterator<Item = (&str, i32, &PartitionAssignment)> + '_ {
        self.topics.iter().flat_map(|(name, t)| {
            let moving = t.partitions.iter().enumerate().filter(|(_, p)| p.reassignment.is_some());
            moving.map(move |(i, p)| (name.as_str(), i as i32, p))
        })
    }

    /// Move throttles set at run time.
    pub fn move_throttles(&self) -> &MoveThrottles {
        &self.throttles
    }

    /// The brokers marked draining, by ascending id.
    pub fn draining(&self) -> &BTreeSet<BrokerId> {
        &self.draining
    }

    /// The brokers new replicas may go to: the registered ones not draining.
    fn targets(&self) -> Vec<BrokerId> {
        plan::targets(self.brokers.keys().copied(), &self.draining)
    }

    /// The number of commands accepted so far.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn broker(&self, id: BrokerId) -> Option<&Broker> {
        self.brokers.get(&id)
    }

    /// By ascending id.
    pub fn brokers(&self) -> impl Iterator<Item = (BrokerId, &Broker)> + '_ {
        self.brokers.iter().map(|(id, broker)| (*id, broker))
    }

    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    /// The name and topic with this id.
    pub fn topic_by_id(&self, id: &TopicId) -> Option<(&str, &Topic)> {
        let name = self.names_by_id.get(id)?;
        self.topics.get(name).map(|topic| (name.as_str(), topic))
    }

    /// The newest block of producer ids allocated to `broker`.
    pub fn producer_id_block(&self, broker: BrokerId) -> Option<ProducerIdBlock> {
        self.producer_id_blocks.get(&broker).copied()
    }

    /// Whether `id` was ever handed out in a block.
    pub fn is_allocated_producer_id(&self, id: i64) -> bool {
        (0..self.next_producer_id).contains(&id)
    }

    /// By ascending name.
    pub fn topics(&self) -> impl Iterator<Item = (&str, &Topic)> + '_ {
        self.topics.iter().map(|(name, topic)| (name.as_str(), topic))
    }

    /// By partition number.
    pub fn partitions(&self, topic: &str) -> Option<&[PartitionAssignment]> {
        self.topic(topic).map(Topic::partitions)
    }

    /// Preferred leader first.
    pub fn replicas(&self, topic: &str, partition: i32) -> Option<&[BrokerId]> {
        self.topic(topic)?.partition(partition).map(PartitionAssignment::replicas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn register(id: BrokerId) -> Command {
        Command::RegisterBroker { id, host: format!("b{id}"), port: 9092, rack: None, raft: None }
    }

    fn create(name: &str, id: u8, partitions: i32, replication_factor: i16) -> Command {
        let mut uuid = [0; 16];
        uuid[0] = id;
        Command::CreateTopic { name: name.into(), id: uuid, partitions, replication_factor, configs: BTreeMap::new() }
    }

    fn leaders(m: &ClusterMetadata, topic: &str) -> Vec<BrokerId> {
        m.partitions(topic).unwrap().iter().map(PartitionAssignment::preferred_leader).collect()
    }

    #[test]
    fn topics_continue_the_leader_rotation() {
        let mut m = ClusterMetadata::default();
        for id in [3, 1, 2] {
            m.apply(register(id)).unwrap();
        }
        m.apply(create("a", 1, 2, 2)).unwrap();
        m.apply(create("b", 2, 2, 3)).unwrap();
        assert_eq!(leaders(&m, "a"), [1, 2]);
        assert_eq!(leaders(&m, "b"), [3, 1]);
        assert_eq!(m.replicas("a", 1), Some(&[2, 1][..]));
        assert_eq!(m.replicas("b", 0), Some(&[3, 2, 1][..]));
        assert_eq!(m.replicas("b", 2), None);
        assert_eq!(m.replicas("b", -1), None);
        assert_eq!(m.epoch(), 5);
    }

    #[test]
    fn the_offsets_topic_keeps_everything_and_stays() {
        let mut m = ClusterMetadata::default();
        m.apply(register(0)).unwrap();
        let refused = m.apply(create(OFFSETS_TOPIC, 1, 8, 1)).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::InvalidTopicException);
        let keep = [("retention.ms", "-1"), ("retention.bytes", "-1")];
        let configs = keep.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let Command::CreateTopic { name, id, partitions, replication_factor, .. } = create(OFFSETS_TOPIC, 1, 8, 1)
        else {
            unreachable!()
        };
        m.apply(Command::CreateTopic { name, id, partitions, replication_factor, configs }).unwrap();
        let before = m.clone();
        let refused = m.apply(Command::DeleteTopic { name: OFFSETS_TOPIC.into() }).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::InvalidTopicException);
        assert_eq!(m, before);
    }

    #[test]
    fn rejections_change_nothing() {
        let mut m = ClusterMetadata::default();
        m.apply(register(0)).unwrap();
        m.apply(create("t", 1, 1, 1)).unwrap();
        let before = m.clone();
        let rejected = [
            (create("a b", 2, 1, 1), ErrorCode::InvalidTopicException),
            (create("t", 2, 1, 1), ErrorCode::TopicAlreadyExists),
            (create("x", 1, 1, 1), ErrorCode::UnknownServerError),
            (create("x", 0, 1, 1), ErrorCode::UnknownServerError),
            (create("x", 2, 0, 1), ErrorCode::InvalidPartitions),
            (create("x", 2, MAX_PARTITIONS + 1, 1), ErrorCode::InvalidPartitions),
            (create("x", 2, 1, 2), ErrorCode::InvalidReplicationFactor),
            (create("x", 2, 1, -1), ErrorCode::InvalidReplicationFactor),
            (Command::DeleteTopic { name: "x".into() }, ErrorCode::UnknownTopicOrPartition),
            (
                Command::RegisterBroker { id: -1, host: "h".into(), port: 1, rack: None, raft: None },
                ErrorCode::InvalidRequest,
            ),
        ];
        for (command, code) in rejected {
            assert_eq!(m.apply(command.clone()).map_err(|e| e.code()), Err(code), "{command:?}");
            assert_eq!(m, before);
        }
    }

    #[test]
    fn dot_and_underscore_names_collide() {
        let mut m = ClusterMetadata::default();
        m.apply(register(0)).unwrap();
        m.apply(create("a.b", 1, 1, 1)).unwrap();
        let err = m.apply(create("a_b", 2, 1, 1)).unwrap_err();
        assert_eq!(err, MetadataError::TopicNameCollision { name: "a_b".into(), existing: "a.b".into() });
        assert_eq!(err.code(), ErrorCode::InvalidTopicException);
    }

    #[test]
    fn delete_returns_the_topic_and_frees_name_and_id() {
        let mut m = ClusterMetadata::default();
        m.apply(register(0)).unwrap();
        m.apply(create("t", 1, 2, 1)).unwrap();
        let id = m.topic("t").unwrap().id();
        let Ok(Outcome::TopicDeleted { topic, .. }) = m.apply(Command::DeleteTopic { name: "t".into() }) else {
            panic!("delete failed");
        };
        assert_eq!(topic.partitions().len(), 2);
        assert!(m.topic_by_id(&id).is_none());
        m.apply(create("t", 1, 1, 1)).unwrap();
        assert_eq!(m.topic_by_id(&id).map(|(name, _)| name), Some("t"));
    }

    fn reassign(topic: &str, partition: i32, replicas: Option<&[BrokerId]>) -> Command {
        Command::ReassignPartition { topic: topic.into(), partition, replicas: replicas.map(<[_]>::to_vec) }
    }

    #[test]
    fn reassignments_are_validated_and_survive_a_snapshot() {
        let mut m = ClusterMetadata::default();
        for id in [1, 2, 3, 4] {
            m.apply(register(id)).unwrap();
        }
        m.apply(create("t", 1, 2, 3)).unwrap();
        let before = m.clone();
        let refused = [
            (reassign("t", 0, Some(&[])), ErrorCode::InvalidReplicaAssignment),
            (reassign("t", 0, Some(&[1, 1])), ErrorCode::InvalidReplicaAssignment),
            (reassign("t", 0, Some(&[1, 9])), ErrorCode::InvalidReplicaAssignment),
            (reassign("t", 2, Some(&[1])), ErrorCode::UnknownTopicOrPartition),
            (reassign("u", 0, Some(&[1])), ErrorCode::UnknownTopicOrPartition),
            (reassign("t", 0, None), ErrorCode::NoReassignmentInProgress),
        ];
        for (command, code) in refused {
            assert_eq!(m.apply(command.clone()).map_err(|e| e.code()), Err(code), "{command:?}");
            assert_eq!(m, before);
        }
        m.apply(reassign("t", 0, Some(&[1, 2, 4]))).unwrap();
        let moving = m.topic("t").unwrap().partition(0).unwrap().clone();
        assert_eq!(moving.replicas(), [1, 2, 4, 3]);
        let err = m.apply(reassign("t", 0, Some(&[1, 2, 3]))).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ReassignmentInProgress);
        assert_eq!(m.reassignments().map(|(t, p, _)| (t, p)).collect::<Vec<_>>(), [("t", 0)]);

        let restored = ClusterMetadata::decode(&m.encode()).unwrap();
        assert_eq!(restored, m);
        assert_eq!(restored.topic("t").unwrap().partition(0), Some(&moving));

        let done = Command::CompleteReassignment { topic: "t".into(), partition: 0, target: vec![1, 2, 4] };
        let outcome = m.apply(done.clone()).unwrap();
        assert_eq!(outcome, Outcome::ReassignmentCompleted { topic: "t".into(), partition: 0, removed: vec![3] });
        assert_eq!(m.replicas("t", 0), Some(&[1, 2, 4][..]));
        assert_eq!(m.apply(done).unwrap_err().code(), ErrorCode::NoReassignmentInProgress);
        assert_eq!(m.reassignments().count(), 0);
        assert_eq!(ClusterMetadata::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn re_registration_updates_the_address() {
        let mut m = ClusterMetadata::default();
        m.apply(register(4)).unwrap();
        let moved = Command::RegisterBroker { id: 4, host: "new".into(), port: 1, rack: Some("r".into()), raft: None };
        let outcome = m.apply(moved).unwrap();
        assert_eq!(
            outcome,
            Outcome::BrokerRegistered {
                id: 4,
                previous: Some(Broker { host: "b4".into(), port: 9092, rack: None, raft: None })
            }
        );
        assert_eq!(m.broker(4).map(|b| b.host.as_str()), Some("new"));
        assert_eq!(m.brokers().count(), 1);
    }

    #[test]
    fn a_broker_leaves_only_once_empty_and_for_good() {
        let mut m = ClusterMetadata::default();
        for id in [1, 2, 3, 4] {
            m.apply(register(id)).unwrap();
        }
        m.apply(create("t", 1, 1, 3)).unwrap();
        let replicas = m.replicas("t", 0).unwrap().to_vec();
        let empty = *[1, 2, 3, 4].iter().find(|b| !replicas.contains(b)).unwrap();
        let holder = replicas[0];
        let before = m.clone();
        let refused = m.apply(Command::UnregisterBroker { id: holder }).unwrap_err();
        assert!(matches!(refused, MetadataError::BrokerInUse { broker, .. } if broker == holder), "{refused}");
        assert_eq!(refused.code(), ErrorCode::InvalidRequest);
        assert_eq!(m.apply(Command::UnregisterBroker { id: 9 }), Err(MetadataError::UnknownBroker(9)));
        assert_eq!(m, before);

        // A move's target names a broker before its replicas do.
        let target: Vec<BrokerId> = replicas.iter().copied().filter(|&b| b != holder).chain([empty]).collect();
        m.apply(reassign("t", 0, Some(&target))).unwrap();
        assert!(matches!(m.apply(Command::UnregisterBroker { id: empty }), Err(MetadataError::BrokerInUse { .. })));
        m.apply(Command::CompleteReassignment { topic: "t".into(), partition: 0, target }).unwrap();
        assert_eq!(m.topic("t").unwrap().partition(0).unwrap().leaving(), [holder]);

        m.apply(Command::AllocateProducerIds { broker: holder, token: 1 }).unwrap();
        assert_eq!(m.apply(Command::UnregisterBroker { id: holder }), Ok(Outcome::BrokerUnregistered { id: holder }));
        assert!(m.broker(holder).is_none() && m.is_removed(holder));
        let partition = m.topic("t").unwrap().partition(0).unwrap();
        assert!(partition.leaving().is_empty(), "a removed broker never reports its replica deleted");
        assert_eq!(m.producer_id_block(holder), None, "its producer ids go with it");
        assert_eq!(m.apply(register(holder)), Err(MetadataError::BrokerRemoved(holder)));
        assert_eq!(ClusterMetadata::decode(&m.encode()).unwrap(), m, "removals survive a snapshot");
    }

    #[test]
    fn new_topics_avoid_draining_brokers() {
        let mut m = ClusterMetadata::default();
        for id in [1, 2, 3] {
            m.apply(register(id)).unwrap();
        }
        let before = m.clone();
        let unknown = m.apply(Command::SetDraining { broker: 9, draining: true });
        assert_eq!(unknown, Err(MetadataError::UnknownBroker(9)));
        assert_eq!(m, before);
        m.apply(Command::SetDraining { broker: 2, draining: true }).unwrap();
        assert_eq!(ClusterMetadata::decode(&m.encode()).unwrap(), m, "the mark survives a snapshot");

        m.apply(create("t", 1, 4, 2)).unwrap();
        assert!(m.partitions("t").unwrap().iter().all(|p| p.replicas() == [1, 3] || p.replicas() == [3, 1]));
        let refused = m.apply(create("u", 2, 1, 3)).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::InvalidReplicationFactor);
        assert!(refused.to_string().ends_with("1..=2 (the registered brokers not draining; draining: 2)"), "{refused}");

        m.apply(Command::SetDraining { broker: 2, draining: false }).unwrap();
        m.apply(create("u", 2, 1, 3)).unwrap();
        assert!(m.draining().is_empty());
    }

    #[test]
    fn registrations_from_before_raft_addresses_still_decode() {
        let old = br#"{"RegisterBroker":{"id":1,"host":"h","port":9092,"rack":null}}"#;
        let command = Command::decode(old).expect("an old command decodes");
        assert_eq!(command, Command::RegisterBroker { id: 1, host: "h".into(), port: 9092, rack: None, raft: None });
        let mut m = ClusterMetadata::default();
        m.apply(command).unwrap();
        let state = String::from_utf8(m.encode()).unwrap();
        let new = ["raft", "removed", "throttles", "draining"];
        assert!(new.iter().all(|field| !state.contains(field)), "encoded as before: {state}");
    }
}
