//! Where consumer groups live on this broker: one coordinator per partition of
//! `__consumer_offsets` that this broker leads. A group's coordinator is the
//! leader of the partition its id hashes to, so it moves with leadership.
//!
//! The partition's log holds the committed offsets (written through raft like
//! any produce, so they survive failover and restarts); a new leader rebuilds
//! them by writing a load marker and reading its log through it. Group
//! membership is kept in memory only: a new coordinator starts with none and
//! members rejoin, as in Kafka after a coordinator moves.
//!
//! Time for the pure machine is milliseconds since this broker started. The
//! machine is ticked by every group request, and by JoinGroup and SyncGroup
//! requests while they wait, which is all the clock it needs: a session can
//! only expire while some member of its group is still talking.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use log_core::batch::validate_record_set;
use log_core::group::offsets::{Committed, OffsetKey, OffsetStore, RecordKey};
use log_core::group::{coordinator_partition, Groups, Replies, Reply, Token};
use log_core::metadata::{ClusterMetadata, Command};
use log_core::ErrorCode;
use tokio::sync::oneshot;

use super::{until, KafkaApi};
use crate::client::records::{decode_record_set, encode_batch, ProducerRecord};
use crate::group_id::GroupId;
use crate::node::Request;
use crate::replica::partition::Acks;

pub use log_core::metadata::OFFSETS_TOPIC;
const OFFSETS_REPLICATION: usize = 3;
/// How long a write to the offsets log (a commit, a load marker) may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a waiting JoinGroup or SyncGroup ticks the machine.
const WAIT_TICK: Duration = Duration::from_millis(200);
const LOAD_FETCH_BYTES: u64 = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    NotStarted,
    Loading,
    Loaded,
}

/// The coordinator of one offsets partition, for one leadership term.
struct Coordinator {
    term: u64,
    load: Load,
    groups: Groups,
    offsets: OffsetStore,
}

/// The coordinators this broker runs, and the requests waiting on them.
pub(super) struct Coordinators {
    started: tokio::time::Instant,
    by_partition: BTreeMap<i32, Coordinator>,
    tokens: Token,
    waiting: BTreeMap<Token, (i32, oneshot::Sender<Reply>)>,
}

impl Default for Coordinators {
    fn default() -> Self {
        Coordinators {
            started: tokio::time::Instant::now(),
            by_partition: BTreeMap::new(),
            tokens: 0,
            waiting: BTreeMap::new(),
        }
    }
}

pub(super) type SharedCoordinators = Arc<Mutex<Coordinators>>;

/// A group's coordinator partition, led by this broker in `term`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Seat {
    pub partition: i32,
    pub term: u64,
    pub group: GroupId,
}

impl Coordinators {
    fn now(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    fn deliver(&mut self, replies: Replies) {
        for (token, reply) in replies {
            if let Some((_, sender)) = self.waiting.remove(&token) {
                // The client may have gone; nothing to do then.
                let _ = sender.send(reply);
            }
        }
    }

    /// The coordinator of `seat`'s partition, replaced by a fresh one when
    /// `seat` is of a later term (whatever waited on the old one is dropped:
    /// its requests answer NOT_COORDINATOR). A request of an earlier term
    /// finds the later coordinator, which it must check for.
    fn seat(&mut self, seat: Seat) -> &mut Coordinator {
        if self.by_partition.get(&seat.partition).is_some_and(|c| c.term < seat.term) {
            self.by_partition.remove(&seat.partition);
            self.waiting.retain(|_, (p, _)| *p != seat.partition);
        }
        self.by_partition.entry(seat.partition).or_insert_with(|| Coordinator {
            term: seat.term,
            load: Load::NotStarted,
            // Member ids carry the term, so no two coordinators hand out the same.
            groups: Groups::new(&format!("{}.{}", seat.partition, seat.term)),
            offsets: OffsetStore::default(),
        })
    }
}

/// The partition of the offsets topic that coordinates `group_id`, if the topic exists.
pub(super) fn offsets_partition(metadata: &ClusterMetadata, group_id: &str) -> Option<GroupId> {
    let topic = metadata.topic(OFFSETS_TOPIC)?;
    let partitions = i32::try_from(topic.partitions().len()).ok()?;
    Some(GroupId::Partition { topic: topic.id(), partition: coordinator_partition(group_id, partitions) })
}

impl KafkaApi {
    /// Creates the offsets topic if it does not exist yet (the first
    /// FindCoordinator does); concurrent creations from several brokers
    /// settle on one.
    /// Creates the offsets topic in a task of its own, unless one is at it.
    pub(super) fn start_creating_offsets_topic(&self) {
        use std::sync::atomic::Ordering;
        if self.creating_offsets_topic.swap(true, Ordering::SeqCst) {
            return;
        }
        let api = self.clone();
        tokio::spawn(async move {
            api.ensure_offsets_topic().await;
            api.creating_offsets_topic.store(false, Ordering::SeqCst);
        });
    }

    async fn ensure_offsets_topic(&self) {
        let view = self.view();
        if view.metadata.topic(OFFSETS_TOPIC).is_some() {
            return;
        }
        // Three replicas, or as many as the cluster has; and not before they
        // have registered: created early on a forming cluster, it would keep
        // fewer replicas than the cluster will have.
        let brokers = view.metadata.brokers().count();
        let replication = OFFSETS_REPLICATION.min(self.node.founders.max(brokers).max(1));
        if brokers < replication {
            return;
        }
        // The committed offsets are the log: retention must never delete them.
        let configs = [("retention.ms", "-1"), ("retention.bytes", "-1")];
        let command = Command::CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            id: self.offsets_topic_id(),
            partitions: self.node.offsets_partitions,
            replication_factor: replication as i16,
            configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        if super::topics::precheck(&view.metadata, &command).is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        let _ = self.propose_and_wait(command, deadline, |m| m.topic(OFFSETS_TOPIC).map(|_| Ok(()))).await;
    }

    fn offsets_topic_id(&self) -> log_core::metadata::TopicId {
        use rand::RngCore;
        let mut id = [0u8; 16];
        self.topic_ids.lock().unwrap_or_else(|e| e.into_inner()).fill_bytes(&mut id);
        id
    }

    /// The seat of `group_id`'s coordinator if this broker holds it, its
    /// offsets loaded; else the error the client should see.
    pub(super) async fn coordinator_seat(&self, group_id: &str) -> Result<Seat, ErrorCode> {
        let view = self.view();
        let group = offsets_partition(&view.metadata, group_id).ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let GroupId::Partition { partition, .. } = group else { return Err(ErrorCode::CoordinatorNotAvailable) };
        let term = match view.leaders.get(&group) {
            Some(l) if l.leader == self.node.node_id => l.term,
            Some(_) => return Err(ErrorCode::NotCoordinator),
            None => return Err(ErrorCode::CoordinatorNotAvailable),
        };
        let seat = Seat { partition, term, group };
        let load = {
            let mut coordinators = self.lock_coordinators();
            let coordinator = coordinators.seat(seat);
            let load = coordinator.load;
            if load == Load::NotStarted {
                coordinator.load = Load::Loading;
            }
            load
        };
        match load {
            Load::Loaded => Ok(seat),
            Load::Loading => Err(ErrorCode::CoordinatorLoadInProgress),
            Load::NotStarted => {
                // A task of its own: the load ends (loaded, or back to not
                // started) even if this request is dropped on the way.
                let api = self.clone();
                let load = tokio::spawn(async move { api.load(seat).await });
                load.await.unwrap_or(Err(ErrorCode::CoordinatorLoadInProgress))
            }
        }
    }

    /// Loads `seat`'s offsets from its log and installs them, unless
    /// leadership moved on meanwhile.
    async fn load(&self, seat: Seat) -> Result<Seat, ErrorCode> {
        let loaded = self.load_offsets(seat.group).await;
        let mut coordinators = self.lock_coordinators();
        let coordinator = coordinators.seat(seat);
        if coordinator.term != seat.term {
            // That later term loads its own.
            return Err(ErrorCode::NotCoordinator);
        }
        match loaded {
            Ok(offsets) => {
                coordinator.offsets = offsets;
                coordinator.load = Load::Loaded;
                Ok(seat)
            }
            Err(_) => {
                coordinator.load = Load::NotStarted;
                Err(ErrorCode::CoordinatorLoadInProgress)
            }
        }
    }

    fn lock_coordinators(&self) -> std::sync::MutexGuard<'_, Coordinators> {
        // A poisoned lock means a request panicked mid-update; the maps are
        // still whole (every update is a single insert or remove).
        self.coordinators.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the machine of `seat` at the current time (after ticking
    /// it), delivering the answers it releases.
    pub(super) fn with_groups<T>(&self, seat: Seat, f: impl FnOnce(&mut Groups, i64) -> (T, Replies)) -> T {
        let mut coordinators = self.lock_coordinators();
        let now = coordinators.now();
        let coordinator = coordinators.seat(seat);
        let mut replies = coordinator.groups.tick(now);
        let (result, more) = f(&mut coordinator.groups, now);
        replies.extend(more);
        coordinators.deliver(replies);
        result
    }

    pub(super) fn with_offsets<T>(&self, seat: Seat, f: impl FnOnce(&mut OffsetStore) -> T) -> T {
        let mut coordinators = self.lock_coordinators();
        f(&mut coordinators.seat(seat).offsets)
    }

    /// Reads every offsets coordinator this broker runs: (groups, offsets).
    pub(super) fn each_coordinator<T>(&self, mut f: impl FnMut(&Groups, &OffsetStore) -> T) -> Vec<T> {
        let coordinators = self.lock_coordinators();
        coordinators
            .by_partition
            .values()
            .filter(|c| c.load == Load::Loaded)
            .map(|c| f(&c.groups, &c.offsets))
            .collect()
    }

    /// Sends a request that may wait (JoinGroup, SyncGroup) to the machine of
    /// `seat` and waits for its answer, ticking the machine meanwhile. `None`
    /// when the coordinator went away (leadership moved).
    pub(super) async fn wait_for_reply(
        &self,
        seat: Seat,
        send: impl FnOnce(&mut Groups, i64, Token) -> Replies,
    ) -> Option<Reply> {
        let mut receiver = {
            let mut coordinators = self.lock_coordinators();
            coordinators.tokens += 1;
            let token = coordinators.tokens;
            let (sender, receiver) = oneshot::channel();
            coordinators.waiting.insert(token, (seat.partition, sender));
            let now = coordinators.now();
            let replies = send(&mut coordinators.seat(seat).groups, now, token);
            coordinators.deliver(replies);
            receiver
        };
        loop {
            match tokio::time::timeout(WAIT_TICK, &mut receiver).await {
                Ok(reply) => return reply.ok(),
                Err(_) => {
                    if self.coordinator_moved(seat) {
                        return None;
                    }
                    self.with_groups(seat, |_, _| ((), Vec::new()));
                }
            }
        }
    }

    /// Whether this broker no longer leads `seat` in its term.
    fn coordinator_moved(&self, seat: Seat) -> bool {
        let view = self.view();
        !view.leaders.get(&seat.group).is_some_and(|l| l.leader == self.node.node_id && l.term == seat.term)
    }

    /// Writes `records` to the offsets partition; the base offset once committed.
    pub(super) async fn write_offsets_log(
        &self,
        group: GroupId,
        records: &[(RecordKey, Option<Committed>)],
    ) -> Result<i64, ErrorCode> {
        let records: Vec<ProducerRecord> = records
            .iter()
            .map(|(key, value)| ProducerRecord {
                key: Some(Bytes::from(key.encode())),
                value: value.as_ref().map(|v| Bytes::from(v.encode())),
                timestamp: 0,
            })
            .collect();
        let bytes = encode_batch(&records, None).map_err(|_| ErrorCode::UnknownServerError)?;
        let mut batches = validate_record_set(bytes, usize::MAX).map_err(|e| e.code())?;
        let batch = batches.pop().ok_or(ErrorCode::UnknownServerError)?;
        let (reply, receiver) = oneshot::channel();
        if !self.node.send(Request::Produce { group, batch, acks: Acks::All, reply }).await {
            return Err(ErrorCode::NotCoordinator);
        }
        match until(tokio::time::Instant::now() + WRITE_TIMEOUT, receiver).await {
            Some(Ok(Ok(offset))) => Ok(offset),
            Some(Ok(Err(ErrorCode::NotLeaderOrFollower)) | Err(_)) => Err(ErrorCode::NotCoordinator),
            Some(Ok(Err(e))) => Err(e),
            None => Err(ErrorCode::RequestTimedOut),
        }
    }

    /// The committed offsets in `group`'s log: everything through a load
    /// marker written now, so nothing committed before this leader is missed.
    async fn load_offsets(&self, group: GroupId) -> Result<OffsetStore, ErrorCode> {
        let marker = self.write_offsets_log(group, &[(RecordKey::LoadMarker, None)]).await?;
        let mut store = OffsetStore::default();
        let mut offset = 0;
        while offset <= marker {
            let (reply, receiver) = oneshot::channel();
            if !self.node.send(Request::Fetch { group, offset, max_bytes: LOAD_FETCH_BYTES, reply }).await {
                return Err(ErrorCode::NotCoordinator);
            }
            let data = receiver.await.map_err(|_| ErrorCode::NotCoordinator)??.data;
            // Retention never runs on this topic, but start where the log does.
            offset = offset.max(data.log_start_offset);
            let set = decode_record_set(data.records, offset);
            if set.batches.is_empty() {
                // The marker is committed, so the log reaches it: no data means
                // this replica is no longer the leader it was.
                return Err(ErrorCode::NotCoordinator);
            }
            for batch in set.batches {
                offset = batch.next_offset;
                for record in batch.records.unwrap_or_default() {
                    let Some(key) = record.key.as_deref().and_then(|k| RecordKey::decode(k).ok()) else { continue };
                    if let RecordKey::Offset(key) = key {
                        let value = record.value.as_deref().and_then(|v| Committed::decode(v).ok());
                        store.apply(record.offset, key, value);
                    }
                }
            }
        }
        Ok(store)
    }
}

/// The key a committed offset is stored under.
pub(super) fn offset_key(group: &str, topic: &str, partition: i32) -> OffsetKey {
    OffsetKey { group: group.to_string(), topic: topic.to_string(), partition }
}
