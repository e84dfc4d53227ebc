//! The reference model of the cluster metadata machine and its driver: command
//! sequences (valid and invalid) run against `ClusterMetadata` and against a
//! model of plain vectors and brute-force checks; after every step the two must
//! agree on the verdict (error code) and on everything observable, the new
//! topic's assignment must be balanced, and the state and the command must
//! survive encode/decode. A second replica applies the decoded commands,
//! restores from a snapshot midway, and must end byte-identical. Driven by
//! `log-core/tests/metadata_model.rs` and by the fuzz target in `fuzz/`.

use std::collections::BTreeMap;

use crate::metadata::{BrokerId, ClusterMetadata, Command, Outcome, TopicId, PRODUCER_ID_BLOCK_SIZE};
use crate::ErrorCode;
use bolero::TypeGenerator;

/// Thousands of sequences of up to 64 commands; `BOLERO_RANDOM_ITERATIONS` overrides.
pub const CASES: usize = 10_000;

/// Eight valid names (two of them collide), then five invalid ones.
pub const NAMES: [&str; 13] = ["a", "b", "c", "a.b", "a_b", "x-1", "Z9", "_", ".", "..", "", "a b", "é"];
pub const KEYS: [&str; 7] = [
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "max.message.bytes",
    "cleanup.policy",
    "min.insync.replicas",
    "Retention.ms",
];
pub const VALUES: [&str; 15] = [
    "-2",
    "-1",
    "0",
    "13",
    "14",
    "1000",
    " 77 ",
    "+5",
    "604800000",
    "2147483647",
    "2147483648",
    "9223372036854775808",
    "x",
    "delete",
    "delete,compact",
];

/// A topic name, `pick` weighting the kinds: mostly a few valid names (so
/// creates collide and deletes find their topic), then Kafka's edge cases,
/// lengths around the 249 limit, and any string at all.
#[derive(Clone, Debug, TypeGenerator)]
pub struct Name {
    #[generator(0..32usize)]
    pick: usize,
    #[generator(248..252usize)]
    long: usize,
    any: String,
}

/// Mostly small counts around the lower bound; sometimes any `i32` (the
/// upper bound, `MAX_PARTITIONS`, has its own test).
#[derive(Clone, Debug, TypeGenerator)]
pub struct Partitions {
    #[generator(0..8u8)]
    pick: u8,
    #[generator(-1..12)]
    few: i32,
    any: i32,
}

#[derive(Clone, Debug, TypeGenerator)]
pub enum Op {
    Register {
        #[generator(-1..8)]
        id: BrokerId,
        /// 0 means an empty host.
        #[generator(0..8u8)]
        host: u8,
        /// 0 is refused.
        #[generator(0..16u16)]
        port: u16,
        rack: Option<bool>,
        /// The raft address's port; 0 gives an address that is not host:port.
        raft: Option<RaftPort>,
    },
    /// Takes a broker out for good (refused while it holds replicas).
    Unregister(Broker8),
    Create {
        name: Name,
        /// The uuid's last byte; 0 and 1 are Kafka's reserved uuids.
        #[generator(0..40u8)]
        id: u8,
        partitions: Partitions,
        #[generator(-1..6)]
        replication_factor: i16,
        /// Mostly none: most picks are invalid.
        configs: Option<[Option<ConfigPick>; 2]>,
    },
    Delete(Name),
    AllocateProducerIds {
        #[generator(-1..8)]
        broker: BrokerId,
        token: u64,
    },
    /// `replicas` of `None` cancels; brokers -1..8 (some unregistered, some repeated).
    Reassign {
        name: Name,
        #[generator(-1..4)]
        partition: i32,
        replicas: Option<Vec<Broker8>>,
    },
    /// `broker` reports its replica of the partition deleted.
    Deleted {
        name: Name,
        #[generator(-1..4)]
        partition: i32,
        broker: Broker8,
    },
    /// Sets or clears a broker's move throttle (`None`: the default's).
    Throttle {
        broker: Option<Broker8>,
        bytes_per_sec: Option<Rate>,
    },
    /// Marks a broker draining, or clears the mark.
    Drain {
        broker: Broker8,
        draining: bool,
    },
    /// Completes the move in progress when `current` (the model supplies its
    /// target), else reports `other`.
    Complete {
        name: Name,
        #[generator(-1..4)]
        partition: i32,
        current: bool,
        other: Vec<Broker8>,
    },
}

/// The port of a raft address; 0 stands for one that is not host:port.
#[derive(Clone, Copy, Debug, TypeGenerator)]
pub struct RaftPort(#[generator(0..4u8)] pub u8);

/// A throttle in bytes per second, 0..4.
#[derive(Clone, Copy, Debug, TypeGenerator)]
pub struct Rate(#[generator(0..4u64)] pub u64);

/// A broker id in -1..8.
#[derive(Clone, Copy, Debug, TypeGenerator)]
pub struct Broker8(#[generator(-1..8)] pub BrokerId);

#[derive(Clone, Copy, Debug, TypeGenerator)]
pub struct ConfigPick {
    #[generator(0..KEYS.len())]
    key: usize,
    #[generator(0..VALUES.len())]
    value: usize,
}

fn name(n: &Name) -> String {
    match n.pick {
        0..=19 => NAMES[n.pick % 8].to_owned(),
        20..=29 => NAMES[8 + n.pick % 5].to_owned(),
        30 => "y".repeat(n.long),
        _ => n.any.clone(),
    }
}

/// The command `op` stands for; `target` gives the model's target of a
/// partition's move in progress (for `Op::Complete`).
pub fn command_with(op: &Op, target: impl Fn(&str, i32) -> Option<Vec<BrokerId>>) -> Command {
    let ids = |brokers: &[Broker8]| brokers.iter().take(5).map(|b| b.0).collect::<Vec<_>>();
    match op {
        Op::Reassign { name: n, partition, replicas } => {
            Command::ReassignPartition { topic: name(n), partition: *partition, replicas: replicas.as_deref().map(ids) }
        }
        Op::Complete { name: n, partition, current, other } => {
            let topic = name(n);
            let target = target(&topic, *partition).filter(|_| *current).unwrap_or_else(|| ids(other));
            Command::CompleteReassignment { topic, partition: *partition, target }
        }
        Op::Deleted { name: n, partition, broker } => {
            Command::ReplicaDeleted { topic: name(n), partition: *partition, broker: broker.0 }
        }
        other => command(other),
    }
}

pub fn command(op: &Op) -> Command {
    match op {
        Op::Reassign { .. } | Op::Complete { .. } | Op::Deleted { .. } => command_with(op, |_, _| None),
        Op::Register { id, host, port, rack, raft } => Command::RegisterBroker {
            id: *id,
            host: if *host == 0 { String::new() } else { format!("host{host}") },
            port: *port,
            rack: rack.map(|r| format!("rack{}", r as u8)),
            raft: raft.map(|RaftPort(r)| if r == 0 { "nohost".to_owned() } else { format!("host{r}:{r}") }),
        },
        Op::Unregister(Broker8(id)) => Command::UnregisterBroker { id: *id },
        Op::Create { name: n, id, partitions, replication_factor, configs } => {
            let mut uuid = [0u8; 16];
            uuid[15] = *id;
            Command::CreateTopic {
                name: name(n),
                id: uuid,
                partitions: if partitions.pick == 0 { partitions.any } else { partitions.few },
                replication_factor: *replication_factor,
                configs: configs
                    .iter()
                    .flatten()
                    .flatten()
                    .map(|c| (KEYS[c.key].to_owned(), VALUES[c.value].to_owned()))
                    .collect(),
            }
        }
        Op::Delete(n) => Command::DeleteTopic { name: name(n) },
        Op::AllocateProducerIds { broker, token } => Command::AllocateProducerIds { broker: *broker, token: *token },
        Op::Throttle { broker, bytes_per_sec } => {
            Command::SetMoveThrottle { broker: broker.map(|b| b.0), bytes_per_sec: bytes_per_sec.map(|r| r.0) }
        }
        Op::Drain { broker, draining } => Command::SetDraining { broker: broker.0, draining: *draining },
    }
}

#[derive(Clone, Debug, PartialEq)]
struct ModelBroker {
    id: BrokerId,
    host: String,
    port: u16,
    rack: Option<String>,
    raft: Option<String>,
}

#[derive(Clone, Debug)]
struct ModelTopic {
    name: String,
    id: TopicId,
    partitions: usize,
    replication_factor: usize,
    configs: BTreeMap<String, String>,
    /// The machine's assignment when the topic was created; only moves change it.
    assignment: Vec<Vec<BrokerId>>,
    /// The move in progress of each partition: (target, adding, removing).
    moves: Vec<Option<ModelMove>>,
    /// Moves started on each partition.
    move_counts: Vec<u32>,
    /// Each partition's replicas when its first move started.
    created_with: Vec<Vec<BrokerId>>,
    /// The move that added each broker of each partition (absent: 0).
    generations: Vec<BTreeMap<BrokerId, u32>>,
    /// Brokers removed by completed moves, not yet reported deleted.
    leaving: Vec<Vec<BrokerId>>,
}

type ModelMove = (Vec<BrokerId>, Vec<BrokerId>, Vec<BrokerId>);

impl ModelTopic {
    fn partition(&self, partition: i32) -> Option<usize> {
        usize::try_from(partition).ok().filter(|&p| p < self.partitions)
    }

    /// The move from `current` to `target`: the replica set becomes the
    /// target followed by the current replicas it drops.
    fn begin(&mut self, p: usize, target: Vec<BrokerId>) {
        let current = self.assignment[p].clone();
        let adding: Vec<BrokerId> = target.iter().copied().filter(|b| !current.contains(b)).collect();
        let removing: Vec<BrokerId> = current.iter().copied().filter(|b| !target.contains(b)).collect();
        if self.move_counts[p] == 0 {
            self.created_with[p] = current.clone();
        }
        self.assignment[p] = target.iter().chain(&removing).copied().collect();
        self.move_counts[p] += 1;
        for b in &adding {
            self.generations[p].insert(*b, self.move_counts[p]);
        }
        self.moves[p] = Some((target, adding, removing));
    }
}

/// The reference: unsorted vectors, every rule spelled out directly.
#[derive(Default)]
struct Model {
    epoch: u64,
    brokers: Vec<ModelBroker>,
    topics: Vec<ModelTopic>,
    /// Every block of producer ids handed out, in order: (broker, first id, token).
    producer_id_blocks: Vec<(BrokerId, i64, u64)>,
    /// Brokers unregistered, in order.
    removed: Vec<BrokerId>,
    /// Move throttles set: (broker, bytes per second), broker `None` the default.
    throttles: Vec<(Option<BrokerId>, u64)>,
    /// Brokers marked draining, in the order marked.
    draining: Vec<BrokerId>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars().count() <= 249
        && n != "."
        && n != ".."
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
}

/// Kafka's bounds on each known key; numbers compared as i128 so that
/// out-of-type values fail on range, not on parsing.
fn valid_config(key: &str, value: &str) -> bool {
    let number = value.trim().parse::<i128>().ok();
    let within = |min: i128, max: i128| number.is_some_and(|n| min <= n && n <= max);
    match key {
        "retention.ms" | "retention.bytes" => within(-1, i64::MAX as i128),
        "segment.bytes" => within(14, i32::MAX as i128),
        "max.message.bytes" => within(0, i32::MAX as i128),
        "cleanup.policy" => value.split(',').all(|p| p.trim() == "delete"),
        _ => false,
    }
}

impl Model {
    /// The verdict on `command`, applying it if accepted (assignment excepted:
    /// the caller records the machine's once it has checked it).
    fn apply(&mut self, command: &Command) -> Result<(), ErrorCode> {
        match command {
            Command::RegisterBroker { id, host, port, rack, raft } => {
                let bad_raft = raft.as_ref().is_some_and(|r| !r.contains(':'));
                if *id < 0 || host.is_empty() || *port == 0 || bad_raft || self.removed.contains(id) {
                    return Err(ErrorCode::InvalidRequest);
                }
                self.brokers.retain(|b| b.id != *id);
                let broker =
                    ModelBroker { id: *id, host: host.clone(), port: *port, rack: rack.clone(), raft: raft.clone() };
                self.brokers.push(broker);
            }
            Command::UnregisterBroker { id } => {
                if !self.brokers.iter().any(|b| b.id == *id) {
                    return Err(ErrorCode::UnknownServerError);
                }
                let named = |t: &ModelTopic, p: usize| {
                    t.assignment[p].contains(id) || t.moves[p].as_ref().is_some_and(|(target, ..)| target.contains(id))
                };
                if self.topics.iter().any(|t| (0..t.partitions).any(|p| named(t, p))) {
                    return Err(ErrorCode::InvalidRequest);
                }
                self.brokers.retain(|b| b.id != *id);
                self.topics.iter_mut().flat_map(|t| t.leaving.iter_mut()).for_each(|l| l.retain(|b| b != id));
                self.throttles.retain(|(b, _)| *b != Some(*id));
                self.draining.retain(|b| b != id);
                self.removed.push(*id);
            }
            Command::CreateTopic { name, id, partitions, replication_factor, configs } => {
                if !valid_name(name) {
                    return Err(ErrorCode::InvalidTopicException);
                }
                if self.topics.iter().any(|t| t.name == *name) {
                    return Err(ErrorCode::TopicAlreadyExists);
                }
                if self.topics.iter().any(|t| t.name.replace('.', "_") == name.replace('.', "_")) {
                    return Err(ErrorCode::InvalidTopicException);
                }
                let metadata_topic_id = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
                if *id == [0; 16] || *id == metadata_topic_id {
                    return Err(ErrorCode::UnknownServerError);
                }
                if self.topics.iter().any(|t| t.id == *id) {
                    return Err(ErrorCode::UnknownServerError);
                }
                if *partitions < 1 || *partitions > 10_000 {
                    return Err(ErrorCode::InvalidPartitions);
                }
                if *replication_factor < 1 || *replication_factor as usize > self.target_ids().len() {
                    return Err(ErrorCode::InvalidReplicationFactor);
                }
                if !configs.iter().all(|(k, v)| valid_config(k, v)) {
                    return Err(ErrorCode::InvalidConfig);
                }
                self.topics.push(ModelTopic {
                    name: name.clone(),
                    id: *id,
                    partitions: *partitions as usize,
                    replication_factor: *replication_factor as usize,
                    configs: configs.clone(),
                    assignment: Vec::new(),
                    moves: vec![None; *partitions as usize],
                    move_counts: vec![0; *partitions as usize],
                    created_with: vec![Vec::new(); *partitions as usize],
                    generations: vec![BTreeMap::new(); *partitions as usize],
                    leaving: vec![Vec::new(); *partitions as usize],
                });
            }
            Command::DeleteTopic { name } => {
                let before = self.topics.len();
                self.topics.retain(|t| t.name != *name);
                if self.topics.len() == before {
                    return Err(ErrorCode::UnknownTopicOrPartition);
                }
            }
            Command::AllocateProducerIds { broker, token } => {
                if !self.brokers.iter().any(|b| b.id == *broker) {
                    return Err(ErrorCode::UnknownServerError);
                }
                let next = self.producer_id_blocks.len() as i64 * PRODUCER_ID_BLOCK_SIZE;
                self.producer_id_blocks.push((*broker, next, *token));
            }
            Command::ReassignPartition { topic, partition, replicas } => {
                if let Some(target) = replicas {
                    let mut distinct = target.clone();
                    distinct.sort();
                    distinct.dedup();
                    if target.is_empty()
                        || distinct.len() != target.len()
                        || !target.iter().all(|b| self.brokers.iter().any(|m| m.id == *b))
                    {
                        return Err(ErrorCode::InvalidReplicaAssignment);
                    }
                }
                let t = self.topics.iter_mut().find(|t| t.name == *topic).ok_or(ErrorCode::UnknownTopicOrPartition)?;
                let p = t.partition(*partition).ok_or(ErrorCode::UnknownTopicOrPartition)?;
                match (replicas, t.moves[p].clone()) {
                    (Some(_), Some(_)) => return Err(ErrorCode::ReassignmentInProgress),
                    (None, None) => return Err(ErrorCode::NoReassignmentInProgress),
                    (Some(target), None) if target.iter().any(|b| t.leaving[p].contains(b)) => {
                        return Err(ErrorCode::ReassignmentInProgress)
                    }
                    (Some(target), None) => {
                        let mut same = target.clone();
                        same.sort();
                        let mut current = t.assignment[p].clone();
                        current.sort();
                        if same == current {
                            t.assignment[p] = target.clone();
                        } else {
                            t.begin(p, target.clone());
                        }
                    }
                    (None, Some((_, adding, _))) => {
                        let old: Vec<BrokerId> =
                            t.assignment[p].iter().copied().filter(|b| !adding.contains(b)).collect();
                        t.begin(p, old);
                    }
                }
            }
            Command::CompleteReassignment { topic, partition, target } => {
                let t = self.topics.iter_mut().find(|t| t.name == *topic).ok_or(ErrorCode::UnknownTopicOrPartition)?;
                let p = t.partition(*partition).ok_or(ErrorCode::UnknownTopicOrPartition)?;
                match &t.moves[p] {
                    Some((moving, ..)) if moving == target => {
                        let removed = t.assignment[p].iter().filter(|b| !target.contains(b));
                        t.leaving[p].extend(removed);
                        t.generations[p].retain(|b, _| target.contains(b));
                        t.assignment[p] = target.clone();
                        t.moves[p] = None;
                    }
                    _ => return Err(ErrorCode::NoReassignmentInProgress),
                }
            }
            Command::ReplicaDeleted { topic, partition, broker } => {
                let t = self.topics.iter_mut().find(|t| t.name == *topic).ok_or(ErrorCode::UnknownTopicOrPartition)?;
                let p = t.partition(*partition).ok_or(ErrorCode::UnknownTopicOrPartition)?;
                let at = t.leaving[p].iter().position(|b| b == broker).ok_or(ErrorCode::UnknownServerError)?;
                t.leaving[p].remove(at);
            }
            Command::SetMoveThrottle { broker, bytes_per_sec } => {
                if broker.is_some_and(|id| !self.brokers.iter().any(|b| b.id == id)) {
                    return Err(ErrorCode::UnknownServerError);
                }
                self.throttles.retain(|(b, _)| b != broker);
                self.throttles.extend(bytes_per_sec.map(|rate| (*broker, rate)));
            }
            Command::SetDraining { broker, draining } => {
                if !self.brokers.iter().any(|b| b.id == *broker) {
                    return Err(ErrorCode::UnknownServerError);
                }
                self.draining.retain(|b| b != broker);
                if *draining {
                    self.draining.push(*broker);
                }
            }
        }
        self.epoch += 1;
        Ok(())
    }

    /// The registered brokers new replicas may go to (not draining), sorted.
    fn target_ids(&self) -> Vec<BrokerId> {
        let mut ids: Vec<BrokerId> =
            self.brokers.iter().map(|b| b.id).filter(|id| !self.draining.contains(id)).collect();
        ids.sort();
        ids
    }
}

/// The new topic's assignment, brute force: sizes, distinct replicas on
/// `brokers` (the registered ones not draining), leaders and replicas balanced, and the leader rotation continuing
/// from the partitions assigned before (`assigned_before`).
fn check_assignment(brokers: &[BrokerId], assignment: &[Vec<BrokerId>], rf: usize, assigned_before: usize) {
    let (p, b) = (assignment.len(), brokers.len());
    for replicas in assignment {
        assert_eq!(replicas.len(), rf);
        for (i, r) in replicas.iter().enumerate() {
            assert!(brokers.contains(r), "replica on unregistered or draining broker {r}");
            assert!(!replicas[..i].contains(r), "broker {r} twice in {replicas:?}");
        }
    }
    for broker in brokers {
        let leads = assignment.iter().filter(|r| r[0] == *broker).count();
        let holds = assignment.iter().filter(|r| r.contains(broker)).count();
        assert!(leads == p / b || leads == p.div_ceil(b), "broker {broker} leads {leads} of {p} over {b}");
        assert!(
            holds == p * rf / b || holds == (p * rf).div_ceil(b),
            "broker {broker} holds {holds} of {p}x{rf} over {b}"
        );
    }
    assert_eq!(assignment[0][0], brokers[assigned_before % b]);
}

fn assignment(machine: &ClusterMetadata, topic: &str) -> Vec<Vec<BrokerId>> {
    machine.partitions(topic).expect("existing topic").iter().map(|p| p.replicas().to_vec()).collect()
}

fn compare(machine: &ClusterMetadata, model: &Model) {
    assert_eq!(machine.epoch(), model.epoch);

    let mut brokers = model.brokers.clone();
    brokers.sort_by_key(|b| b.id);
    let observed: Vec<ModelBroker> = machine
        .brokers()
        .map(|(id, b)| ModelBroker {
            id,
            host: b.host.clone(),
            port: b.port,
            rack: b.rack.clone(),
            raft: b.raft.clone(),
        })
        .collect();
    assert_eq!(observed, brokers);

    let mut topics = model.topics.clone();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = machine.topics().map(|(name, _)| name).collect();
    assert_eq!(names, topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>());
    for t in &topics {
        let topic = machine.topic(&t.name).expect("listed topic");
        assert_eq!(topic.id(), t.id);
        assert_eq!(machine.topic_by_id(&t.id).map(|(name, _)| name), Some(t.name.as_str()));
        let first_target = t.moves[0].as_ref().map_or(&t.assignment[0], |(target, ..)| target);
        assert_eq!(topic.replication_factor(), first_target.len());
        assert_eq!(assignment(machine, &t.name), t.assignment);
        for (p, partition) in topic.partitions().iter().enumerate() {
            let moving = partition.reassignment().map(|r| (r.target.clone(), r.adding.clone(), r.removing.clone()));
            assert_eq!(moving, t.moves[p], "partition {p} of {}", t.name);
            let created_with = if t.move_counts[p] == 0 { &t.assignment[p] } else { &t.created_with[p] };
            for b in -1..8 {
                let generation = t.generations[p].get(&b).copied().unwrap_or(0);
                assert_eq!(partition.generation(b), generation);
                let bootstrap = (generation == 0 && created_with.contains(&b)).then_some(&created_with[..]);
                assert_eq!(partition.bootstrap_voters(b), bootstrap, "broker {b}");
            }
            assert_eq!(partition.leaving(), t.leaving[p]);
        }
        let listed: Vec<(String, i32)> =
            machine.reassignments().filter(|(name, ..)| *name == t.name).map(|(n, p, _)| (n.to_owned(), p)).collect();
        let expected: Vec<(String, i32)> =
            (0..t.partitions).filter(|&p| t.moves[p].is_some()).map(|p| (t.name.clone(), p as i32)).collect();
        assert_eq!(listed, expected);
        for p in [-1, 0, t.partitions as i32 - 1, t.partitions as i32] {
            let expected = usize::try_from(p).ok().and_then(|p| t.assignment.get(p)).map(Vec::as_slice);
            assert_eq!(machine.replicas(&t.name, p), expected);
        }

        let config = topic.config();
        assert_eq!(config.entries(), &t.configs);
        let number =
            |key: &str, default: i64| t.configs.get(key).map_or(default, |v| v.trim().parse().expect("validated"));
        assert_eq!(config.retention_ms(), number("retention.ms", 604_800_000));
        assert_eq!(config.retention_bytes(), number("retention.bytes", -1));
        assert_eq!(i64::from(config.segment_bytes()), number("segment.bytes", 1 << 30));
        assert_eq!(i64::from(config.max_message_bytes()), number("max.message.bytes", 1_048_588));
    }

    for broker in -1..8 {
        // A removed broker's blocks are forgotten (its ids stay allocated).
        let newest = model.producer_id_blocks.iter().rev().find(|(b, ..)| *b == broker && !model.removed.contains(b));
        let observed = machine.producer_id_block(broker).map(|block| (block.first, block.token));
        assert_eq!(observed, newest.map(|(_, first, token)| (*first, *token)));
    }
    let allocated = model.producer_id_blocks.len() as i64 * PRODUCER_ID_BLOCK_SIZE;
    for id in [-1, 0, allocated - 1, allocated] {
        assert_eq!(machine.is_allocated_producer_id(id), (0..allocated).contains(&id), "producer id {id}");
    }
    let set = |broker: Option<BrokerId>| model.throttles.iter().find(|(b, _)| *b == broker).map(|(_, rate)| *rate);
    for broker in -1..8 {
        assert_eq!(machine.move_throttles().of(broker), set(Some(broker)).or(set(None)), "broker {broker}'s throttle");
        assert_eq!(machine.draining().contains(&broker), model.draining.contains(&broker), "broker {broker} draining");
    }
}

/// A new block shares no id with any block handed out before, to any broker.
fn check_new_block(model: &Model, first: i64) {
    let end = first + PRODUCER_ID_BLOCK_SIZE;
    for (broker, earlier, _) in &model.producer_id_blocks[..model.producer_id_blocks.len() - 1] {
        assert!(end <= *earlier || earlier + PRODUCER_ID_BLOCK_SIZE <= first, "overlaps broker {broker}'s {earlier}");
    }
}

pub fn run(ops: &[Op], restore_at: usize) {
    let mut machine = ClusterMetadata::default();
    let mut model = Model::default();
    let mut replica = ClusterMetadata::default();
    for (step, op) in ops.iter().enumerate() {
        let command = command_with(op, |topic, p| {
            let t = model.topics.iter().find(|t| t.name == topic)?;
            t.moves.get(usize::try_from(p).ok()?)?.as_ref().map(|(target, ..)| target.clone())
        });
        let bytes = command.encode();
        let decoded = Command::decode(&bytes).expect("an encoded command decodes");
        assert_eq!(decoded, command);

        let targets_before = model.target_ids();
        let assigned_before: usize = model.topics.iter().map(|t| t.partitions).sum();
        let deleted = match &command {
            Command::DeleteTopic { name } => machine.topic(name).cloned(),
            _ => None,
        };
        let previous_broker = match &command {
            Command::RegisterBroker { id, .. } => machine.broker(*id).cloned(),
            _ => None,
        };

        let expected = model.apply(&command);
        let outcome = machine.apply(command.clone());
        assert_eq!(
            outcome.as_ref().map(|_| ()).map_err(|e| e.code()),
            expected,
            "step {step}: {command:?} -> {outcome:?}"
        );
        match (outcome, &command) {
            (Err(_), _) => {}
            (Ok(Outcome::BrokerRegistered { id, previous }), Command::RegisterBroker { id: asked, .. }) => {
                assert_eq!((id, previous), (*asked, previous_broker));
            }
            (Ok(Outcome::BrokerUnregistered { id }), Command::UnregisterBroker { id: asked }) => {
                assert_eq!(id, *asked);
                assert!(machine.is_removed(id) && machine.broker(id).is_none());
            }
            (Ok(Outcome::TopicCreated { name, id }), Command::CreateTopic { name: asked, id: asked_id, .. }) => {
                assert_eq!((&name, &id), (asked, asked_id));
                let topic = model.topics.last_mut().expect("model created it too");
                topic.assignment = assignment(&machine, &name);
                check_assignment(&targets_before, &topic.assignment, topic.replication_factor, assigned_before);
            }
            (Ok(Outcome::TopicDeleted { name, topic }), Command::DeleteTopic { name: asked }) => {
                assert_eq!((&name, Some(topic)), (asked, deleted));
            }
            (
                Ok(Outcome::ProducerIdsAllocated { broker, block }),
                Command::AllocateProducerIds { broker: asked, token },
            ) => {
                assert_eq!((broker, block.token), (*asked, *token));
                check_new_block(&model, block.first);
            }
            (
                Ok(Outcome::PartitionReassigned { topic, partition }),
                Command::ReassignPartition { topic: t, partition: p, .. },
            ) => {
                assert_eq!((&topic, partition), (t, *p));
            }
            (
                Ok(Outcome::ReplicaDeleted { topic, partition, broker }),
                Command::ReplicaDeleted { topic: t, partition: p, broker: b },
            ) => {
                assert_eq!((&topic, partition, broker), (t, *p, *b));
            }
            (
                Ok(Outcome::ReassignmentCompleted { topic, partition, removed }),
                Command::CompleteReassignment { topic: t, partition: p, target },
            ) => {
                assert_eq!((&topic, partition), (t, *p));
                assert!(removed.iter().all(|b| !target.contains(b)));
            }
            (
                Ok(Outcome::MoveThrottleSet { broker, bytes_per_sec }),
                Command::SetMoveThrottle { broker: b, bytes_per_sec: r },
            ) => {
                assert_eq!((broker, bytes_per_sec), (*b, *r));
            }
            (Ok(Outcome::DrainingSet { broker, draining }), Command::SetDraining { broker: b, draining: d }) => {
                assert_eq!((broker, draining), (*b, *d));
            }
            (Ok(outcome), command) => panic!("{outcome:?} for {command:?}"),
        }
        compare(&machine, &model);

        let snapshot = machine.encode();
        let restored = ClusterMetadata::decode(&snapshot).expect("an encoded state decodes");
        assert_eq!(restored, machine);
        assert_eq!(restored.encode(), snapshot);

        // The other replica: decoded commands, a snapshot restore midway.
        let _ = replica.apply(decoded);
        if step == restore_at {
            replica = restored;
        }
    }
    assert_eq!(replica.encode(), machine.encode());
}

/// `ops` on a cluster that starts with 1 to 7 brokers (from `brokers`), so that
/// more creates succeed and topics pile up.
pub fn populated(brokers: u8, ops: &[Op]) -> Vec<Op> {
    let mut all: Vec<Op> = (0..1 + i32::from(brokers) % 7)
        .map(|id| Op::Register { id, host: 1, port: 9092, rack: None, raft: Some(RaftPort(1)) })
        .collect();
    all.extend(ops.iter().cloned());
    all
}
