//! Brokers and topics as the metadata machine holds them, and Kafka's rules
//! for their names and ids.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::TopicConfig;
use super::reassign::Reassignment;

/// Kafka's `broker.id`.
pub type BrokerId = i32;

/// A topic's uuid (Kafka's `Uuid`, 16 bytes). Chosen by the proposer, so the
/// machine needs no randomness.
pub type TopicId = [u8; 16];

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Kafka's limit on topic name length.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// A registered broker's address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// Where other brokers reach its raft transport (`host:port`); absent
    /// from registrations written before brokers could join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<String>,
}

/// The replicas of one partition, preferred leader first, and the move in
/// progress if any. (Not `Deserialize`: only a whole checked state is, see
/// `snapshot`.) The optional fields are left out when unset, so a state
/// without moves encodes as it did before moves existed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionAssignment {
    pub(super) replicas: Vec<BrokerId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reassignment: Option<Reassignment>,
    /// Moves started so far.
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) moves: u32,
    /// The replicas the partition had when its first move started: its raft
    /// group's first voters, as every replica it was created with
    /// bootstrapped them (empty before the first move, and in states
    /// written before this was kept).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) created_with: Vec<BrokerId>,
    /// The move that added each broker's replica (absent: 0, the creation).
    /// A broker's raft id in the group is its id with this generation, so the
    /// group never takes a replica added again for the one it had before
    /// (messages to or from the old one are stale).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) generations: BTreeMap<BrokerId, u32>,
    /// Brokers a completed move removed that have not yet reported their
    /// replica deleted. None may be added back before it has: its group
    /// could take the old replica's log for the new replica's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) leaving: Vec<BrokerId>,
}

impl PartitionAssignment {
    pub(super) fn new(replicas: Vec<BrokerId>) -> Self {
        PartitionAssignment {
            replicas,
            reassignment: None,
            moves: 0,
            created_with: Vec::new(),
            generations: BTreeMap::new(),
            leaving: Vec::new(),
        }
    }

    /// Distinct registered brokers; never empty. During a move, every broker
    /// that may hold the partition's data: the target first, then those
    /// being removed (Kafka's KIP-455 replica set). A broker deletes its
    /// replica only once it has left this set.
    pub fn replicas(&self) -> &[BrokerId] {
        &self.replicas
    }

    /// The move in progress.
    pub fn reassignment(&self) -> Option<&Reassignment> {
        self.reassignment.as_ref()
    }

    /// Brokers still to delete the replica a completed move took off them.
    pub fn leaving(&self) -> &[BrokerId] {
        &self.leaving
    }

    /// The raft voters `broker`'s replica bootstraps an empty log with.
    /// A replica the partition was created with: the creation replicas,
    /// also when it first opens after a move started (a broker that was
    /// down, or applied the creation and a move in one go); it then catches
    /// up as one down since the creation would. A replica a move added:
    /// none, it joins as an empty learner and learns the configuration from
    /// the leader's snapshot; so does a creation replica in a state that
    /// predates `created_with`.
    pub fn bootstrap_voters(&self, broker: BrokerId) -> Option<&[BrokerId]> {
        let voters = if self.moves == 0 { &self.replicas } else { &self.created_with };
        Some(&voters[..]).filter(|v| self.generation(broker) == 0 && v.contains(&broker))
    }

    /// The generation of `broker`'s replica: the move that added it (0 for
    /// the replicas the partition was created with).
    pub fn generation(&self, broker: BrokerId) -> u32 {
        self.generations.get(&broker).copied().unwrap_or(0)
    }

    /// The first replica: where leadership goes when the cluster is balanced.
    pub fn preferred_leader(&self) -> BrokerId {
        self.replicas[0]
    }
}

/// A topic: its id, its partitions (index = partition number) and its config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Topic {
    pub(super) id: TopicId,
    pub(super) partitions: Vec<PartitionAssignment>,
    pub(super) config: TopicConfig,
}

impl Topic {
    pub fn id(&self) -> TopicId {
        self.id
    }

    /// Never empty; created with the same number of replicas each (a move may change one's).
    pub fn partitions(&self) -> &[PartitionAssignment] {
        &self.partitions
    }

    /// Partition `index`, if the topic has it (Kafka partition numbers are `int32`).
    pub fn partition(&self, index: i32) -> Option<&PartitionAssignment> {
        usize::try_from(index).ok().and_then(|i| self.partitions.get(i))
    }

    /// Partition 0's replica count, the target's while it moves.
    pub fn replication_factor(&self) -> usize {
        let first = &self.partitions[0];
        first.reassignment.as_ref().map_or(first.replicas.len(), |r| r.target.len())
    }

    pub fn config(&self) -> &TopicConfig {
        &self.config
    }
}

/// Kafka's `Topic.validate`: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
/// The name under which Kafka clients see the metadata log (KRaft's).
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// The internal topic whose partitions hold the consumer groups' committed
/// offsets (each partition's leader coordinates the groups hashed to it).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

pub fn validate_topic_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are not allowed");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err("the name is longer than 249 characters");
    }
    if collides(name, METADATA_TOPIC) {
        return Err("the name is reserved for the metadata log");
    }
    Ok(())
}

/// Kafka refuses a topic whose name equals an existing one once '.' and '_'
/// are unified: both become '_' in metric names.
pub(super) fn collides(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| unify(x) == unify(y))
}

pub(super) fn unified(name: &str) -> Vec<u8> {
    name.bytes().map(unify).collect()
}

fn unify(b: u8) -> u8 {
    if b == b'.' {
        b'_'
    } else {
        b
    }
}

/// Kafka reserves the zero uuid ("no topic") and 0…01 (the metadata topic).
pub(super) fn is_reserved(id: &TopicId) -> bool {
    id[..15].iter().all(|&b| b == 0) && id[15] <= 1
}

/// What a registration must carry: a non-negative id (Kafka uses -1 for "no
/// broker"), a host and a port.
pub(super) fn validate_broker(id: BrokerId, broker: &Broker) -> Result<(), &'static str> {
    if id < 0 {
        return Err("the broker id is negative");
    }
    if broker.host.is_empty() {
        return Err("the host is empty");
    }
    if broker.port == 0 {
        return Err("the port is 0");
    }
    if broker.raft.as_deref().is_some_and(|raft| raft.rsplit_once(':').is_none_or(|(host, _)| host.is_empty())) {
        return Err("the raft address is not host:port");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka() {
        for ok in ["a", "A-b_c.9", "..a", &"x".repeat(249)] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250), "__cluster_metadata", "__cluster.metadata"] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dot_and_underscore_collide() {
        assert!(collides("a.b", "a_b"));
        assert!(collides("a_b", "a_b"));
        assert!(!collides("a.b", "a-b"));
        assert!(!collides("a.b", "a.bc"));
    }

    #[test]
    fn zero_and_metadata_uuids_are_reserved() {
        let mut id = [0u8; 16];
        assert!(is_reserved(&id));
        id[15] = 1;
        assert!(is_reserved(&id));
        id[15] = 2;
        assert!(!is_reserved(&id));
        id = [0; 16];
        id[0] = 1;
        assert!(!is_reserved(&id));
    }
}
