//! Partition replicas in process: three replicas of one partition, each on
//! its own `FaultyDisk`, raft messages routed by hand (in order,
//! deterministic, no sleeps), time passed in.
//!
//! - retention deletes whole segments below the cut on every replica, moves
//!   the log start offset, and fetching below it is OFFSET_OUT_OF_RANGE while
//!   everything above reads back as produced;
//! - a follower cut off while the others compacted past its log catches up
//!   through a snapshot (even when the first snapshot message is lost) and
//!   ends with the leader's entries, log start offset and high watermark;
//! - a replica restarted (after a power loss) after compaction recovers the
//!   same state from its snapshot and log;
//! - along the way, the leader (and only it) reports each replica's log end
//!   offset: lagging while cut off, unknown once compacted past, caught up after;
//! - a follower's delayed commit sync stores only a commit its log holds,
//!   whatever raft learned since its last Ready;
//! - a replica whose log reads back corrupt fails alone, as an error (raft-rs
//!   panics on such a read), and the other two go on;
//! - the idempotent producer: the leader answers a retried batch with its
//!   original offset and writes it once, whether the original is committed or
//!   still in flight; a gap in the sequence is OUT_OF_ORDER_SEQUENCE_NUMBER,
//!   an older epoch INVALID_PRODUCER_EPOCH, and neither is written; the
//!   producer state is rebuilt from the log on every replica, so a new leader
//!   after failover, and every replica after a power loss of all three, still
//!   recognise the retries.
//! - moving the partition to other replicas (raft membership changes driven
//!   by the leader) while producing with acks=all: the new replica joins as
//!   a learner from a snapshot and the log after it, the voters swap in one
//!   joint change, a leader being removed hands over first, and every
//!   acknowledged record is on every replica of the new configuration,
//!   which commits without the removed one; a broker added back later is a
//!   new member (a new generation): a delayed message from its deleted
//!   replica does not count for the new one; with the move throttle, the
//!   learner gets no more than the allowance over any stretch while every
//!   batch produced meanwhile commits at once, and once it is lifted the
//!   learner's inflight window is the configured one again; a learner that
//!   loses power anywhere while installing the snapshot and applying the
//!   log of configuration changes after it (also when one Ready holds all
//!   of it) comes back with the right configuration and becomes a voter;
//! - leadership is handed to another voter (the preferred replica) only
//!   once it has the whole log and was heard from within an election
//!   timeout, one hand-over at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use log_core::batch::testing::{encode, BatchSpec};
use log_core::batch::RecordBatch;
use log_core::partition::RetentionPolicy;
use log_core::ErrorCode;
use protobuf::Message as _;
use raft::eraftpb::{Entry, EntryType, Message, MessageType};
use raft_node::group_id::GroupId;
use raft_node::replica::membership::Step;
use raft_node::replica::partition::{Acks, OffsetSpec, PartitionMachine, ProduceResult};
use raft_node::replica::throttle::{Throttle, LEARNER_INFLIGHT};
use raft_node::replica::{Outbox, RaftSettings, Replica, ReplicaEnv, ReplicaError};
use raft_node::replica_id::replica_id;
use raft_node::storage::{FaultyDisk, LogConfig};
use tokio::sync::oneshot;

const GROUP: GroupId = GroupId::Partition { topic: [7; 16], partition: 0 };
const IDS: [u64; 3] = [1, 2, 3];
/// A few batches per segment.
const SEGMENT_BYTES: u64 = 300;
const PAYLOAD_BYTES: usize = 64;
const MAX_MESSAGE_BYTES: u64 = 4096;
const KEEP_ALL: RetentionPolicy = RetentionPolicy { retention_ms: -1, retention_bytes: -1 };

fn env(id: u64, disk: &Arc<FaultyDisk>) -> ReplicaEnv {
    ReplicaEnv {
        node_id: id,
        disk: disk.clone(),
        // No entry cache: every entry raft asks for is read back from disk.
        log_config: LogConfig { segment_bytes: SEGMENT_BYTES, cache_bytes: 0, ..LogConfig::default() },
        // Small appends, so a learner catching up gets many (see the throttle test).
        settings: RaftSettings { max_size_per_msg: MAX_MESSAGE_BYTES, ..RaftSettings::default() },
        logger: slog::Logger::root(slog::Discard, slog::o!()),
    }
}

/// The payload of the batch holding offset `offset` (one record per batch).
fn payload(offset: i64) -> Vec<u8> {
    let mut p = format!("record-{offset}-").into_bytes();
    p.resize(PAYLOAD_BYTES, b'.');
    p
}

/// Three replicas of one partition and the network between them.
struct Cluster {
    disks: BTreeMap<u64, Arc<FaultyDisk>>,
    replicas: BTreeMap<u64, Replica<PartitionMachine>>,
    /// Replicas cut off from every other: their messages are dropped both ways.
    isolated: BTreeSet<u64>,
    /// How many more MsgSnapshot messages the network loses.
    lose_snapshots: usize,
    /// MsgSnapshot messages delivered, per receiver.
    snapshots_delivered: BTreeMap<u64, usize>,
    /// Batches produced, in offset order (one record each).
    produced: i64,
    /// Replicas whose Ready failed, taken out of `replicas` (as the node does).
    failed: BTreeMap<u64, ReplicaError>,
    /// Routes messages as the node does, when set.
    throttle: Option<Throttle>,
    /// Bytes of appends and snapshots delivered to learners, per tick.
    to_learners: Vec<u64>,
    /// The most appends and snapshots delivered to learners in one round:
    /// what raft sends at once is bounded by the learners' inflight window.
    largest_burst: usize,
    /// A replica whose next MsgSnapshot, and every append or snapshot to it
    /// after that, the network delays into `held` until the test steps them.
    hold_from_snapshot: Option<u64>,
    held: Vec<Message>,
}

impl Cluster {
    fn new() -> Cluster {
        let disks: BTreeMap<u64, Arc<FaultyDisk>> = IDS.iter().map(|&id| (id, Arc::new(FaultyDisk::new(id)))).collect();
        let replicas = IDS.iter().map(|&id| (id, Self::open(id, &disks[&id]))).collect();
        let mut cluster = Cluster {
            disks,
            replicas,
            isolated: BTreeSet::new(),
            lose_snapshots: 0,
            snapshots_delivered: BTreeMap::new(),
            produced: 0,
            failed: BTreeMap::new(),
            throttle: None,
            to_learners: vec![0],
            largest_burst: 0,
            hold_from_snapshot: None,
            held: Vec::new(),
        };
        cluster.elect();
        cluster
    }

    fn open(id: u64, disk: &Arc<FaultyDisk>) -> Replica<PartitionMachine> {
        Replica::open(GROUP, &IDS, 100 + id, &env(id, disk)).expect("open replica")
    }

    fn replica(&self, id: u64) -> &Replica<PartitionMachine> {
        &self.replicas[&id]
    }

    fn leader(&self) -> u64 {
        let leaders: Vec<u64> = self.replicas.iter().filter(|(_, r)| r.is_leader()).map(|(&id, _)| id).collect();
        assert_eq!(leaders.len(), 1, "exactly one leader");
        leaders[0]
    }

    /// Handles every Ready and delivers every message until nothing moves.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut outbox = Outbox::default();
            for (&id, replica) in self.replicas.iter_mut() {
                if let Err(e) = replica.handle_ready(&mut outbox) {
                    self.failed.insert(id, e);
                }
            }
            self.replicas.retain(|id, _| !self.failed.contains_key(id));
            if outbox.messages.is_empty() && self.replicas.values().all(|r| !r.has_ready()) {
                return;
            }
            let mut outgoing = self.throttle.as_mut().map(Throttle::release).unwrap_or_default();
            for (group, message) in outbox.messages {
                let to_learner = self.replicas.get(&message.from).is_some_and(|r| r.is_learner(message.to));
                let admitted = match &mut self.throttle {
                    Some(throttle) => throttle.admit(group, message, to_learner),
                    None => Some(message),
                };
                outgoing.extend(admitted.map(|m| (group, m)));
            }
            let mut burst = 0;
            for (_, message) in outgoing {
                let (from, to) = (message.from, message.to);
                // A failed or stopped replica gets nothing.
                if self.isolated.contains(&from) || self.isolated.contains(&to) || !self.replicas.contains_key(&to) {
                    continue;
                }
                let snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
                let catch_up = snapshot || message.get_msg_type() == MessageType::MsgAppend;
                if self.hold_from_snapshot == Some(to) && (snapshot || catch_up && !self.held.is_empty()) {
                    self.held.push(message);
                    continue;
                }
                if snapshot {
                    if self.lose_snapshots > 0 {
                        self.lose_snapshots -= 1;
                        continue;
                    }
                    *self.snapshots_delivered.entry(to).or_default() += 1;
                }
                if catch_up && self.replicas.get(&from).is_some_and(|r| r.is_learner(to)) {
                    *self.to_learners.last_mut().expect("a tick") += u64::from(message.compute_size());
                    burst += 1;
                }
                self.replicas.get_mut(&to).expect("known replica").step(message);
            }
            self.largest_burst = self.largest_burst.max(burst);
        }
        panic!("the cluster never settled");
    }

    fn tick(&mut self, ticks: usize) {
        for _ in 0..ticks {
            self.to_learners.push(0);
            if let Some(throttle) = &mut self.throttle {
                throttle.tick();
                let cap = throttle.limit().map(|_| LEARNER_INFLIGHT);
                self.replicas.values_mut().for_each(|r| r.pace_learners(cap));
            }
            self.replicas.values_mut().for_each(|r| r.tick());
            self.settle();
        }
    }

    fn elect(&mut self) {
        for _ in 0..500 {
            self.tick(1);
            if self.replicas.values().filter(|r| r.is_leader()).count() == 1
                && self.replicas.values().all(|r| r.leader().is_some())
            {
                return;
            }
        }
        panic!("no leader elected");
    }

    /// Produces `count` one-record batches with acks=all; batch `i` (offset
    /// `i`) has timestamp `i * 1000`.
    fn produce(&mut self, count: i64) {
        for _ in 0..count {
            let (offset, mut rx) = self.start_produce();
            self.settle();
            assert_eq!(rx.try_recv(), Ok(Ok(offset)), "acks=all produce of offset {offset}");
            self.produced += 1;
        }
    }

    /// Hands the next batch to the leader; nothing moves until Readys are handled.
    fn start_produce(&mut self) -> (i64, oneshot::Receiver<ProduceResult>) {
        let offset = self.produced;
        let spec = BatchSpec {
            first_timestamp: offset * 1000,
            max_timestamp: offset * 1000,
            payload: payload(offset),
            ..BatchSpec::default()
        };
        (offset, self.start_produce_batch(RecordBatch::read(encode(&spec)).expect("valid batch")))
    }

    /// Hands `batch` to the leader with acks=all; nothing moves until Readys are handled.
    fn start_produce_batch(&mut self, batch: RecordBatch) -> oneshot::Receiver<ProduceResult> {
        let leader = self.leader();
        let (tx, rx) = oneshot::channel();
        self.replicas.get_mut(&leader).expect("leader").produce(batch, Acks::All, tx);
        rx
    }

    /// Produces `batch` with acks=all and returns the answer once settled.
    fn produce_batch(&mut self, batch: RecordBatch) -> ProduceResult {
        let mut rx = self.start_produce_batch(batch);
        self.settle();
        rx.try_recv().expect("answered once settled")
    }

    /// Handles replica `id`'s Ready and steps its messages into their
    /// receivers, without handling theirs.
    fn ready_of(&mut self, id: u64) {
        let mut outbox = Outbox::default();
        let result = self.replicas.get_mut(&id).expect("replica").handle_ready(&mut outbox);
        assert!(result.is_ok(), "replica {id}: {result:?}");
        for (_, message) in outbox.messages {
            self.replicas.get_mut(&message.to).expect("known replica").step(message);
        }
    }

    fn retain(&mut self, id: u64, now_ms: i64, policy: RetentionPolicy) -> Option<u64> {
        let cut = self.replicas.get_mut(&id).expect("replica").enforce_retention(now_ms, policy).expect("retention");
        self.settle();
        cut
    }

    /// A power loss and restart of replica `id`.
    fn restart(&mut self, id: u64) {
        self.stop(id);
        self.start(id);
    }

    /// A power loss: the replica stops, its unsynced writes are gone, and it
    /// gets no messages until `start`.
    fn stop(&mut self, id: u64) {
        self.replicas.remove(&id);
        self.disks[&id].crash();
    }

    fn start(&mut self, id: u64) {
        let replica = Self::open(id, &self.disks[&id]);
        self.replicas.insert(id, replica);
    }

    /// A replica on a new broker: an empty log and no configuration, as the
    /// node opens one the metadata is adding to the partition.
    fn add_empty(&mut self, id: u64) {
        let disk = Arc::new(FaultyDisk::new(id));
        let replica = Replica::open(GROUP, &[], 100 + id, &env(id, &disk)).expect("open empty replica");
        self.disks.insert(id, disk);
        self.replicas.insert(id, replica);
    }

    /// Produces one batch with acks=all; `false` if the leader refused it
    /// (NOT_LEADER_OR_FOLLOWER while it hands leadership over), in which
    /// case nothing was written.
    fn try_produce(&mut self) -> bool {
        let next = self.replica(self.leader()).machine.log().next_offset();
        let (offset, mut rx) = self.start_produce();
        self.settle();
        match rx.try_recv() {
            Ok(Ok(base)) => {
                assert_eq!(base, offset);
                self.produced += 1;
                true
            }
            Ok(Err(ErrorCode::NotLeaderOrFollower)) => {
                assert_eq!(
                    self.replica(self.leader()).machine.log().next_offset(),
                    next,
                    "a refused batch is not written"
                );
                false
            }
            other => panic!("produce of offset {offset}: {other:?}"),
        }
    }

    /// Drives the leader's membership changes towards `target`, producing a
    /// batch between steps, until the leader reports the target applied.
    /// Returns the steps taken.
    fn move_to(&mut self, target: &[u64]) -> Vec<Step> {
        let mut steps = Vec::new();
        for _ in 0..500 {
            let leader = self.leader();
            let step = self.replicas.get_mut(&leader).expect("leader").drive_membership(target, &[]).expect("drive");
            let step = step.expect("the leader drives");
            if step == Step::Done {
                return steps;
            }
            if step != Step::Wait {
                steps.push(step);
            }
            self.try_produce();
            self.tick(1);
        }
        panic!("the move to {target:?} never finished: {steps:?}");
    }

    /// The next offset and high watermark of every running replica.
    fn ends(&self) -> BTreeMap<u64, (i64, i64)> {
        let ends = self
            .replicas
            .iter()
            .map(|(&id, r)| (id, (r.machine.log().next_offset(), r.machine.log().high_watermark())));
        ends.collect()
    }

    fn assert_ends(&self, offset: i64) {
        assert!(self.ends().values().all(|&end| end == (offset, offset)), "{:?} != {offset}", self.ends());
    }
}

/// The committed entries a replica serves, as (index, term, data).
fn committed_entries(replica: &Replica<PartitionMachine>) -> Vec<(u64, u64, Bytes)> {
    entries_through(replica, replica.log().hard_state().commit)
}

/// The entries a replica serves from its log start through `commit`.
fn entries_through(replica: &Replica<PartitionMachine>, commit: u64) -> Vec<(u64, u64, Bytes)> {
    let log = replica.log();
    let entries: Vec<Entry> = log.entries(log.first_index(), commit + 1, None).expect("entries");
    assert_eq!(entries.len() as u64, commit + 1 - log.first_index(), "every committed entry is served");
    entries.into_iter().map(|e| (e.index, e.term, e.data)).collect()
}

/// (log start offset, high watermark, next offset) of a replica's partition log.
fn offsets(replica: &Replica<PartitionMachine>) -> (i64, i64, i64) {
    let log = replica.machine.log();
    (log.log_start_offset(), log.high_watermark(), log.next_offset())
}

/// Each voter's log end offset as the leader reports it.
fn log_ends(c: &Cluster) -> BTreeMap<u64, Option<i64>> {
    let quorum = c.replica(c.leader()).quorum().expect("the leader describes its group");
    assert!(quorum.learners.is_empty());
    quorum.voters.into_iter().collect()
}

/// Fetches everything from `from` on the leader and checks every batch is
/// the one produced at its offset, contiguously up to the high watermark.
fn assert_reads_back(replica: &Replica<PartitionMachine>, from: i64) {
    let fetched = replica.fetch(from, u64::MAX).expect("fetch");
    let mut records = fetched.records;
    let mut offset = from;
    while !records.is_empty() {
        let len = 12 + i32::from_be_bytes(records[8..12].try_into().expect("4 bytes")) as usize;
        let batch = RecordBatch::read(records.split_to(len)).expect("stored batch");
        assert_eq!(batch.base_offset(), offset);
        assert_eq!(batch.as_bytes()[batch.len() - PAYLOAD_BYTES..], payload(offset)[..], "payload at {offset}");
        offset += 1;
    }
    assert_eq!(offset, fetched.high_watermark, "read up to the high watermark");
}

#[test]
fn retention_by_size_and_time_trims_every_replica() {
    let mut c = Cluster::new();
    c.produce(40);
    let leader = c.leader();
    for &id in &IDS {
        assert_eq!(c.retain(id, 1_000_000, KEEP_ALL), None, "unlimited retention keeps everything");
        assert!(c.replica(id).log().segments().len() > 5, "small segments rolled");
    }

    // By time: batch i has timestamp i * 1000; at now = 31_500 with
    // retention.ms = 10_000 exactly the segments whose batches are all below
    // offset 22 (timestamp 21_500) go. The first entry is the leader's no-op,
    // so offset = index - 2.
    let by_time = RetentionPolicy { retention_ms: 10_000, retention_bytes: -1 };
    for &id in &IDS {
        let cut = c.retain(id, 31_500, by_time).expect("expired segments");
        let first = c.replica(id).log().segments()[0].clone();
        assert_eq!(first.first_index, cut + 1, "replica {id}: whole segments through the cut are gone");
        assert!(cut as i64 - 2 <= 21, "replica {id}: an unexpired batch was deleted");
        assert!(first.last_index as i64 - 2 >= 22, "replica {id}: an expired segment was kept");
        assert_eq!(c.replica(id).log().first_index(), cut + 1);
        assert_eq!(c.replica(id).machine.log().log_start_offset(), cut as i64 - 1, "offset after the cut");
        assert_eq!(c.retain(id, 31_500, by_time), None, "nothing more to do");
    }

    // By size: keep at least 1000 bytes, and no segment more than needed.
    let by_size = RetentionPolicy { retention_ms: -1, retention_bytes: 1000 };
    for &id in &IDS {
        let before = c.replica(id).log().segments();
        let cut = c.retain(id, 0, by_size).expect("something to delete");
        assert!(before.iter().any(|s| s.last_index == cut), "the cut is a segment boundary");
        let after = c.replica(id).log().segments();
        assert_eq!(after[0].first_index, cut + 1, "replica {id}: whole segments through the cut are gone");
        let total: u64 = after.iter().map(|s| s.bytes).sum();
        assert!(total >= 1000, "replica {id} keeps at least retention.bytes ({total})");
        assert!(total - after[0].bytes < 1000, "replica {id} could have deleted another segment");
        assert_eq!(c.replica(id).machine.log().log_start_offset(), cut as i64 - 1);
    }
    let (start, hw, _) = offsets(c.replica(leader));
    assert_eq!(hw, 40);
    assert!(start > 22);
    assert_eq!(c.replica(leader).fetch(start - 1, 1 << 20), Err(ErrorCode::OffsetOutOfRange));
    assert_eq!(c.replica(leader).fetch(0, 1 << 20), Err(ErrorCode::OffsetOutOfRange));
    assert_eq!(c.replica(leader).list_offset(OffsetSpec::Earliest), Ok(start));
    assert_reads_back(c.replica(leader), c.replica(leader).machine.log().log_start_offset());
    c.produce(5);
    assert_reads_back(c.replica(leader), c.replica(leader).machine.log().log_start_offset());
}

#[test]
fn a_follower_behind_the_log_start_catches_up_by_snapshot() {
    let mut c = Cluster::new();
    c.produce(10);
    let leader = c.leader();
    let lagging = *IDS.iter().find(|&&id| id != leader).expect("a follower");
    let lagging_last = c.replica(lagging).last_index();
    c.isolated.insert(lagging);
    c.produce(40);
    assert_eq!(log_ends(&c), BTreeMap::from(IDS.map(|id| (id, Some(if id == lagging { 10 } else { 50 })))));
    assert!(
        IDS.iter().filter(|&&id| id != leader).all(|&id| c.replica(id).quorum().is_none()),
        "followers cannot tell"
    );
    // Past an election timeout the leader no longer counts the cut-off
    // follower as active, so it does not hold retention back for it.
    c.tick(40);
    assert_eq!(c.leader(), leader);
    let by_size = RetentionPolicy { retention_ms: -1, retention_bytes: 800 };
    for id in IDS.into_iter().filter(|&id| id != lagging) {
        let cut = c.retain(id, 0, by_size).expect("compacted");
        assert!(cut > lagging_last, "replica {id} compacted past the lagging follower's log");
    }
    let snapshot_index = c.replica(leader).log().snapshot().get_metadata().index;
    assert_eq!(log_ends(&c)[&lagging], None, "the lagging log ends below the leader's log start");
    assert_eq!(c.replica(lagging).log().snapshot().get_metadata().index, 0);

    // The first snapshot sent is lost: the leader must try again.
    c.lose_snapshots = 1;
    c.isolated.clear();
    c.tick(30);
    assert_eq!(c.lose_snapshots, 0, "a snapshot was sent");
    assert!(c.snapshots_delivered.get(&lagging).is_some_and(|&n| n >= 1), "and sent again");
    c.produce(3);
    c.tick(5);

    let installed = c.replica(lagging).log().snapshot().get_metadata().index;
    assert!(installed >= snapshot_index, "installed the leader's snapshot");
    assert_eq!(c.replica(lagging).log().hard_state().commit, c.replica(leader).log().hard_state().commit);
    assert_eq!(offsets(c.replica(lagging)), offsets(c.replica(leader)));
    let (start, hw, _) = offsets(c.replica(lagging));
    assert_eq!(hw, 53);
    assert!(start > 0);
    assert_eq!(committed_entries(c.replica(lagging)), committed_entries(c.replica(leader)));
    assert_eq!(c.replica(lagging).machine.log().first_index(), c.replica(lagging).log().first_index());
    assert_eq!(log_ends(&c), BTreeMap::from(IDS.map(|id| (id, Some(53)))));
    assert_eq!(c.replica(leader).quorum().map(|q| q.high_watermark), Some(53));
}

#[test]
fn a_restart_after_compaction_recovers_the_same_state() {
    let mut c = Cluster::new();
    c.produce(30);
    let by_size = RetentionPolicy { retention_ms: -1, retention_bytes: 900 };
    for &id in &IDS {
        c.retain(id, 0, by_size).expect("compacted");
    }
    c.produce(4);
    for &id in &IDS {
        let (start, hw, end) = offsets(c.replica(id));
        let commit = c.replica(id).machine.log().committed_index();
        let before = ((start, end), entries_through(c.replica(id), commit), c.replica(id).log().segments());
        c.restart(id);
        let (start, hw_after, end) = offsets(c.replica(id));
        let after = ((start, end), entries_through(c.replica(id), commit), c.replica(id).log().segments());
        assert_eq!(after, before, "replica {id} after restart: log start and end, entries, segments");
        // The commit index is synced lazily, so right after a power cut the
        // high watermark may lag (never lead) until the leader speaks again.
        assert!(hw_after <= hw, "replica {id}: high watermark {hw_after} after restart, {hw} before");
        assert_eq!(c.replica(id).machine.log().first_index(), c.replica(id).log().first_index());
    }
    c.elect();
    c.produce(3);
    let leader = c.leader();
    assert_eq!(offsets(c.replica(leader)).1, 37);
    assert_reads_back(c.replica(leader), offsets(c.replica(leader)).0);
    for &id in &IDS {
        assert_eq!(committed_entries(c.replica(id)).last(), committed_entries(c.replica(leader)).last());
    }
}

#[test]
fn a_leader_keeps_what_an_active_follower_still_needs() {
    let mut c = Cluster::new();
    c.produce(10);
    let leader = c.leader();
    let behind = *IDS.iter().find(|&&id| id != leader).expect("a follower");
    let behind_last = c.replica(behind).last_index();
    // Briefly cut off: no tick passes, so the leader still counts it active.
    c.isolated.insert(behind);
    c.produce(30);
    let everything_but_the_active_segment = RetentionPolicy { retention_ms: -1, retention_bytes: 0 };
    let cut = c.retain(leader, 0, everything_but_the_active_segment).expect("some segment below the follower");
    assert!(cut <= behind_last, "the leader compacted through {cut}, past the follower's {behind_last}");
    c.isolated.clear();
    c.tick(10);
    assert_eq!(c.snapshots_delivered.get(&behind), None, "caught up from the log, no snapshot");
    assert_eq!(committed_entries(c.replica(behind)).last(), committed_entries(c.replica(leader)).last());
    // Caught up, it no longer holds retention back.
    assert!(c.retain(leader, 0, everything_but_the_active_segment).is_some_and(|later| later > behind_last));
}

/// A follower can step the leader's entries and then the commit covering
/// them before its next Ready. When its commit sync, delayed some ticks, comes
/// due at that Ready, it must store only what its log holds: it once stored
/// raft's commit, beyond its log, and the replica failed (seen as a killed
/// broker that never caught up in the end-to-end failover test).
#[test]
fn a_delayed_commit_sync_stores_no_commit_beyond_the_log() {
    let mut c = Cluster::new();
    let leader = c.leader();
    let followers: Vec<u64> = IDS.into_iter().filter(|&id| id != leader).collect();
    let (slow, quick) = (followers[0], followers[1]);
    // Enough rounds for the slow follower's delay to run out during one.
    for _ in 0..30 {
        c.replicas.values_mut().for_each(|r| r.tick());
        let (offset, mut rx) = c.start_produce();
        c.ready_of(leader); // the entry goes out to both followers
        c.ready_of(quick); // one persists it and acknowledges
        c.ready_of(leader); // committed: the new commit goes out to both
        c.ready_of(slow); // entry and commit arrive in one Ready
        c.settle();
        assert_eq!(rx.try_recv(), Ok(Ok(offset)));
        c.produced += 1;
    }
    for &id in &IDS {
        let log = c.replica(id).log();
        assert!(log.hard_state().commit <= log.last_index(), "replica {id}");
        let commit = log.hard_state().commit;
        assert_eq!(committed_entries(c.replica(id)), entries_through(c.replica(leader), commit), "replica {id}");
    }
}

#[test]
fn a_replica_whose_log_reads_back_corrupt_fails_alone() {
    let mut c = Cluster::new();
    c.produce(3);
    let leader = c.leader();
    let victim = *IDS.iter().find(|&&id| id != leader).expect("a follower");
    // Every read flips a bit: applying the next committed entry reads it back
    // from the victim's disk, fails its checksum every time, and raft-rs panics.
    c.disks[&victim].set_read_corruption(1.0);
    c.produce(3);
    match c.failed.get(&victim) {
        Some(ReplicaError::Failed(why)) => assert!(why.contains("CorruptRecord"), "{why}"),
        other => panic!("replica {victim} should have failed on its corrupt log, not {other:?}"),
    }
    assert_eq!(c.failed.len(), 1, "only the victim failed");
    // The other two go on without it.
    c.produce(3);
    assert_reads_back(c.replica(c.leader()), 0);
    assert_eq!(offsets(c.replica(c.leader())).1, 9);
}

/// The idempotent producer's id in the tests below.
const PRODUCER: i64 = 4_000;

/// A batch of `records` records from the producer at `epoch`, starting at `seq`.
fn batch(epoch: i16, seq: i32, records: i32) -> RecordBatch {
    let spec = BatchSpec {
        record_count: records,
        producer_id: PRODUCER,
        producer_epoch: epoch,
        base_sequence: seq,
        ..BatchSpec::default()
    };
    RecordBatch::read(encode(&spec)).expect("valid batch")
}

#[test]
fn retries_get_their_offset_and_gaps_and_old_epochs_are_refused() {
    let mut c = Cluster::new();
    assert_eq!(c.produce_batch(batch(0, 0, 2)), Ok(0));
    assert_eq!(c.produce_batch(batch(0, 2, 3)), Ok(2));
    assert_eq!(c.produce_batch(batch(0, 0, 2)), Ok(0), "a committed retry");
    assert_eq!(c.produce_batch(batch(0, 2, 3)), Ok(2));
    c.assert_ends(5);

    // A retry of a batch still in flight is not written again; the client
    // hears nothing conclusive until the original commits, then its offset.
    let mut original = c.start_produce_batch(batch(0, 5, 1));
    let mut early_retry = c.start_produce_batch(batch(0, 5, 1));
    c.settle();
    assert_eq!(original.try_recv(), Ok(Ok(5)));
    assert_eq!(early_retry.try_recv(), Ok(Err(ErrorCode::RequestTimedOut)));
    assert_eq!(c.produce_batch(batch(0, 5, 1)), Ok(5));
    c.assert_ends(6);

    assert_eq!(c.produce_batch(batch(0, 7, 1)), Err(ErrorCode::OutOfOrderSequenceNumber), "a gap");
    assert_eq!(c.produce_batch(batch(1, 3, 1)), Err(ErrorCode::OutOfOrderSequenceNumber), "a new epoch starts at 0");
    assert_eq!(c.produce_batch(batch(1, 0, 1)), Ok(6));
    assert_eq!(c.produce_batch(batch(0, 6, 1)), Err(ErrorCode::InvalidProducerEpoch), "the old epoch is fenced");
    c.assert_ends(7);
}

#[test]
fn deduplication_survives_failover_and_a_power_loss_of_every_replica() {
    let mut c = Cluster::new();
    for seq in 0..5 {
        assert_eq!(c.produce_batch(batch(0, seq, 1)), Ok(i64::from(seq)));
    }

    let old_leader = c.leader();
    c.stop(old_leader);
    c.elect();
    assert_ne!(c.leader(), old_leader);
    for seq in 0..5 {
        assert_eq!(c.produce_batch(batch(0, seq, 1)), Ok(i64::from(seq)), "retry of {seq} on the new leader");
    }
    assert_eq!(c.produce_batch(batch(0, 6, 1)), Err(ErrorCode::OutOfOrderSequenceNumber));
    assert_eq!(c.produce_batch(batch(0, 5, 1)), Ok(5));
    c.start(old_leader);
    c.settle();

    for id in IDS {
        c.stop(id);
    }
    for id in IDS {
        c.start(id);
    }
    c.elect();
    // The window holds the last five batches: 1..=5.
    assert_eq!(c.produce_batch(batch(0, 0, 1)), Err(ErrorCode::OutOfOrderSequenceNumber), "0 left the window");
    for seq in 1..=5 {
        assert_eq!(c.produce_batch(batch(0, seq, 1)), Ok(i64::from(seq)), "retry of {seq} after the restart");
    }
    assert_eq!(c.produce_batch(batch(0, 6, 1)), Ok(6));
    c.assert_ends(7);
}

/// The configuration every replica in `ids` has applied: (voters, learners), sorted.
fn applied_confs(c: &Cluster, ids: &[u64]) -> Vec<(Vec<u64>, Vec<u64>)> {
    let sorted = |mut v: Vec<u64>| {
        v.sort();
        v
    };
    ids.iter()
        .map(|id| {
            let conf = c.replica(*id).conf_state();
            assert!(conf.voters_outgoing.is_empty(), "replica {id} left the joint configuration");
            (sorted(conf.voters), sorted(conf.learners))
        })
        .collect()
}

/// Every replica in `ids` holds every acknowledged record, as the leader does.
fn assert_holds_everything(c: &Cluster, ids: &[u64]) {
    let leader = c.replica(c.leader());
    let commit = leader.log().hard_state().commit;
    for &id in ids {
        let replica = c.replica(id);
        assert_eq!(offsets(replica), (0, c.produced, c.produced), "replica {id}: offsets");
        let first = replica.log().first_index();
        let theirs = entries_through(replica, commit);
        let ours: Vec<_> = entries_through(leader, commit).into_iter().filter(|(i, ..)| *i >= first).collect();
        assert_eq!(theirs, ours, "replica {id}: the leader's entries");
    }
    assert_reads_back(leader, 0);
}

/// Moves the partition off the replica `pick` names onto broker 4 while
/// producing, then checks the new configuration: every record on every new
/// replica, commits without the removed one, and the new replica restarts
/// intact. Returns the replica removed and the steps taken.
fn move_off(pick: impl Fn(&Cluster) -> u64) -> (u64, Vec<Step>) {
    let mut c = Cluster::new();
    c.produce(20);
    let removed = pick(&c);
    c.add_empty(4);
    c.tick(5);
    assert!(c.replica(4).leader().is_none(), "an empty replica waits to be added: it never campaigns");
    let target: Vec<u64> = IDS.iter().copied().filter(|&id| id != removed).chain([4]).collect();
    let steps = c.move_to(&target);

    assert_eq!(c.replica(4).log().first_index(), 2, "the learner started from the snapshot through entry 1");
    assert!(c.snapshots_delivered.get(&4).is_some_and(|&n| n >= 1));
    let voters: Vec<u64> = target.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
    assert_eq!(applied_confs(&c, &target), vec![(voters, vec![]); 3]);
    assert!(target.contains(&c.leader()), "a removed replica does not lead");
    assert_holds_everything(&c, &target);

    // The removed replica's data can go: the new voters commit without it,
    // even with one of them down.
    c.stop(removed);
    c.produce(5);
    let follower = *target.iter().find(|&&id| id != c.leader() && id != 4).expect("an old follower");
    c.stop(follower);
    c.produce(5);
    c.start(follower);
    c.restart(4);
    c.settle();
    c.tick(5);
    assert_holds_everything(&c, &target);
    (removed, steps)
}

#[test]
fn moving_a_follower_adds_a_learner_then_swaps_voters_jointly() {
    let (follower, steps) = move_off(|c| *IDS.iter().find(|&&id| id != c.leader()).expect("a follower"));
    assert_eq!(steps[0], Step::AddLearner(4));
    assert!(steps.contains(&Step::EnterJoint { add: vec![4], remove: vec![follower] }), "{steps:?}");
    assert_eq!(steps.last(), Some(&Step::LeaveJoint));
    assert!(!steps.iter().any(|s| matches!(s, Step::TransferLeader(_))), "{steps:?}");
}

#[test]
fn moving_the_leader_hands_leadership_over_before_it_leaves() {
    let (leader, steps) = move_off(Cluster::leader);
    assert!(steps.iter().any(|s| matches!(s, Step::TransferLeader(to) if *to != leader)), "{steps:?}");
    assert_eq!(steps.last(), Some(&Step::LeaveJoint));
}

#[test]
fn a_throttled_learner_catches_up_at_the_rate_while_produce_goes_on() {
    let per_tick = 2_000;
    let mut c = Cluster::new();
    c.produce(300);
    c.add_empty(4);
    c.throttle = Some(Throttle::new(Some(per_tick)));
    let follower = *IDS.iter().find(|&&id| id != c.leader()).expect("a follower");
    let target: Vec<u64> = IDS.iter().copied().filter(|&id| id != follower).chain([4]).collect();
    let start = c.to_learners.len() - 1; // this tick's, on
                                         // Every batch move_to produces between steps commits at once: the
                                         // voters' traffic is never held.
    c.move_to(&target);
    assert_holds_everything(&c, &target);
    let ticks = &c.to_learners[start..];
    let total: u64 = ticks.iter().sum();
    assert!(total > 300 * PAYLOAD_BYTES as u64, "the learner got the log: {total} bytes");
    // The allowance holds over every stretch from the start (a message
    // larger than what is left may overdraw it once).
    let mut sent = 0;
    for (k, bytes) in ticks.iter().enumerate() {
        sent += bytes;
        let allowed = per_tick * (k as u64 + 1) + MAX_MESSAGE_BYTES + 1024;
        assert!(sent <= allowed, "{sent} bytes to the learner by tick {k}, allowed {allowed}: {ticks:?}");
    }
}

/// Drives the leader's membership changes towards `target`, producing a
/// batch between steps, until the leader reports the target applied and the
/// learner `learner` runs; the learner is restarted (a new process on the
/// same disk) whenever its disk has lost power. Any other failure of a
/// replica fails the test.
fn move_restarting_after_power_loss(c: &mut Cluster, learner: u64, target: &[u64], case: &str) {
    for _ in 0..500 {
        if c.disks[&learner].is_down() {
            c.failed.remove(&learner);
            c.replicas.remove(&learner);
            c.disks[&learner].crash();
            let replica = Replica::open(GROUP, &[], 100 + learner, &env(learner, &c.disks[&learner]))
                .expect("reopen the learner");
            c.replicas.insert(learner, replica);
        }
        assert!(c.failed.is_empty(), "{case}: {:?}", c.failed);
        let leader = c.leader();
        let step = c.replicas.get_mut(&leader).expect("leader").drive_membership(target, &[]).expect("drive");
        if step == Some(Step::Done) && c.replicas.contains_key(&learner) && !c.disks[&learner].is_down() {
            c.tick(5);
            assert!(c.failed.is_empty(), "{case}: {:?}", c.failed);
            return;
        }
        c.try_produce();
        c.tick(1);
    }
    panic!("{case}: the move to {target:?} never finished");
}

#[test]
fn a_learner_gets_its_whole_inflight_window_back_once_the_throttle_is_lifted() {
    let mut c = Cluster::new();
    c.produce(300);
    c.add_empty(4);
    let leader = c.leader();
    let step = c.replicas.get_mut(&leader).expect("leader").drive_membership(&[1, 2, 3, 4], &[]).expect("drive");
    assert_eq!(step, Some(Step::AddLearner(4)));
    c.isolated.insert(4);
    c.settle();
    // Let back in with the learners' window at `window`, the learner
    // catches up through many appends. Nothing is held back (no throttle
    // here), so the most that go out at once is what raft lets fly.
    let catch_up = |c: &mut Cluster, window: Option<usize>| {
        c.replicas.values_mut().for_each(|r| r.pace_learners(window));
        c.largest_burst = 0;
        c.isolated.clear();
        for _ in 0..50 {
            if c.replica(4).last_index() == c.replica(leader).last_index() {
                return c.largest_burst;
            }
            c.tick(1);
        }
        panic!("the learner never caught up");
    };
    assert_eq!(catch_up(&mut c, Some(LEARNER_INFLIGHT)), LEARNER_INFLIGHT, "the capped window, used whole");
    c.isolated.insert(4);
    c.produce(300);
    assert!(catch_up(&mut c, None) > LEARNER_INFLIGHT, "the window is the configured one again");
}

#[test]
fn a_learner_that_loses_power_while_applying_configuration_changes_recovers_them() {
    // The learner gets the base snapshot and then a log with a whole move's
    // configuration changes in it; its disk loses power after `ops`
    // operations, wherever that falls (installing, appending, applying).
    // The snapshot and the appends after it arrive in separate Readies here;
    // the next test hands them to the learner in one.
    for ops in 1..=60 {
        let mut c = Cluster::new();
        c.produce(3);
        c.add_empty(4);
        c.move_to(&[1, 2, 4]);
        c.add_empty(5);
        c.disks[&5].set_power_failure(Some(ops));
        let target = [1, 2, 5];
        move_restarting_after_power_loss(&mut c, 5, &target, &format!("ops {ops}"));
        assert_eq!(applied_confs(&c, &target), vec![(vec![1, 2, 5], vec![]); 3], "ops {ops}");
        assert_holds_everything(&c, &target);
    }
}

/// The case `keel-sim sweep --moves 1 --auto-rebalance 1` found (seed 38):
/// the learner steps the base snapshot and an append after it before its
/// next Ready, so one Ready installs the snapshot, appends a log holding a
/// whole move's configuration changes, and commits all of it. Its disk
/// loses power at each operation of that Ready in turn. The commit once
/// stored with the install covered the changes not yet applied, and the
/// restarted learner took them all as applied: cut after the first, it kept
/// an old configuration and ended the next move with voters the others do
/// not have; cut after the joint one, it failed the next move with "config
/// is already joint".
#[test]
fn a_learner_that_loses_power_applying_a_snapshot_and_moves_from_one_ready_recovers_them() {
    let mut within_the_ready = true;
    let mut ops = 0;
    while within_the_ready {
        ops += 1;
        assert!(ops < 200, "the Ready never completed");
        let case = format!("ops {ops}");
        let mut c = Cluster::new();
        c.produce(3);
        c.add_empty(4);
        c.move_to(&[1, 2, 4]);
        c.add_empty(5);
        let leader = c.leader();
        let step = c.replicas.get_mut(&leader).expect("leader").drive_membership(&[1, 2, 5], &[]).expect("drive");
        assert_eq!(step, Some(Step::AddLearner(5)));

        // The snapshot is delayed; the leader, told it was sent, resumes
        // appending after it once the learner answers a heartbeat.
        c.hold_from_snapshot = Some(5);
        for _ in 0..50 {
            if c.held.iter().any(|m| m.get_msg_type() == MessageType::MsgAppend) {
                break;
            }
            c.tick(1);
        }
        c.hold_from_snapshot = None;
        let held = std::mem::take(&mut c.held);
        let append = held.iter().find(|m| m.get_msg_type() == MessageType::MsgAppend).expect("an append held");
        assert_eq!(held[0].get_msg_type(), MessageType::MsgSnapshot);
        let snapshot = held[0].get_snapshot().get_metadata().index;
        assert_eq!(append.index, snapshot, "the append follows the snapshot");
        let changes: Vec<u64> =
            append.entries.iter().filter(|e| e.get_entry_type() != EntryType::EntryNormal).map(|e| e.index).collect();
        assert!(changes.len() >= 3, "{case}: the append holds the move's configuration changes: {changes:?}");
        assert!(append.commit >= changes[changes.len() - 1], "{case}: and commits them");
        for message in held {
            c.replicas.get_mut(&5).expect("learner").step(message);
        }

        c.disks[&5].set_power_failure(Some(ops));
        let mut outbox = Outbox::default();
        let result = c.replicas.get_mut(&5).expect("learner").handle_ready(&mut outbox);
        within_the_ready = c.disks[&5].is_down();
        c.disks[&5].set_power_failure(None);
        if within_the_ready {
            c.failed.insert(5, result.expect_err("a Ready whose disk lost power fails"));
        } else {
            assert!(result.is_ok(), "{case}: {result:?}");
        }
        for (_, message) in outbox.messages {
            c.replicas.get_mut(&message.to).expect("known replica").step(message);
        }
        let target = [1, 2, 5];
        move_restarting_after_power_loss(&mut c, 5, &target, &case);
        assert_eq!(applied_confs(&c, &target), vec![(vec![1, 2, 5], vec![]); 3], "{case}");
        assert_holds_everything(&c, &target);
    }
}

#[test]
fn a_cancelled_move_removes_the_learner_and_keeps_the_voters() {
    let mut c = Cluster::new();
    c.produce(5);
    c.add_empty(4);
    let leader = c.leader();
    let step = c.replicas.get_mut(&leader).expect("leader").drive_membership(&[1, 2, 4], &[]).expect("drive");
    assert_eq!(step, Some(Step::AddLearner(4)));
    c.settle();
    assert_eq!(applied_confs(&c, &[1, 2, 3, 4]), vec![(vec![1, 2, 3], vec![4]); 4]);
    assert_eq!(c.move_to(&IDS), vec![Step::RemoveLearner(4)]);
    c.settle();
    assert_eq!(applied_confs(&c, &IDS), vec![(vec![1, 2, 3], vec![]); 3]);
    c.produce(3);
    assert_holds_everything(&c, &IDS);
}

#[test]
fn a_replica_added_back_is_a_new_member_that_stale_messages_do_not_speak_for() {
    let mut c = Cluster::new();
    c.produce(10);
    let leader = c.leader();
    let gone = *IDS.iter().find(|&&id| id != leader).expect("a follower");
    let kept: Vec<u64> = IDS.iter().copied().filter(|&id| id != gone).collect();
    // What `gone` would answer to the leader's next append, delayed in the network.
    let mut stale = Message::default();
    stale.set_msg_type(MessageType::MsgAppendResponse);
    (stale.from, stale.to, stale.term) = (gone, leader, c.replica(leader).term());
    stale.index = c.replica(leader).last_index();

    c.add_empty(4);
    c.move_to(&[kept[0], kept[1], 4]);
    c.stop(gone); // its replica deleted
    c.produce(5);

    // Added back by a later move: generation 2, a new raft id.
    let back = replica_id(gone, 2);
    c.add_empty(back);
    c.isolated.insert(back);
    let leader = c.leader();
    let step = c.replicas.get_mut(&leader).expect("leader").drive_membership(&[kept[0], kept[1], back], &[]);
    assert_eq!(step.expect("drive"), Some(Step::AddLearner(back)));
    c.settle();
    stale.to = leader;
    c.replicas.get_mut(&leader).expect("leader").step(stale);
    let progress = c.replica(leader).progress().expect("the leader's progress");
    assert_eq!(progress.learners, [(gone, 0)], "the old replica's answer is a stranger's");

    c.isolated.clear();
    c.move_to(&[kept[0], kept[1], back]);
    c.produce(5);
    assert_holds_everything(&c, &[kept[0], kept[1], back]);
}

#[test]
fn leadership_goes_to_another_voter_only_once_it_has_the_whole_log() {
    let mut c = Cluster::new();
    c.produce(5);
    let leader = c.leader();
    let to = IDS.into_iter().find(|&id| id != leader).expect("a follower");
    let hand_over = |c: &mut Cluster, to: u64| {
        let leader = c.leader();
        c.replicas.get_mut(&leader).expect("leader").hand_over_to(to).expect("no raft failure")
    };
    assert!(!hand_over(&mut c, leader), "not to itself");
    // Cut off, it falls behind: leadership stays.
    c.isolated.insert(to);
    c.produce(3);
    assert!(!hand_over(&mut c, to));
    // Back, it catches up on the next heartbeats and takes over.
    c.isolated.remove(&to);
    c.tick(RaftSettings::default().heartbeat_ticks);
    assert!(hand_over(&mut c, to));
    assert!(c.replica(leader).handing_over());
    assert!(!hand_over(&mut c, to), "one hand-over at a time");
    c.settle();
    assert_eq!(c.leader(), to);
    assert!(!c.replica(to).handing_over() && !c.replica(leader).handing_over());
    c.produce(2);
    c.assert_ends(10);
    assert_reads_back(c.replica(to), 0);

    // A voter with the whole log that has gone silent for an election
    // timeout gets nothing: it could not take over, and writes would stall
    // until raft gave the hand-over up.
    let silent = IDS.into_iter().find(|&id| id != to).expect("a follower");
    c.isolated.insert(silent);
    c.tick(RaftSettings::default().election_ticks + 1);
    assert_eq!(c.replica(silent).last_index(), c.replica(to).last_index(), "it has the whole log");
    assert!(!hand_over(&mut c, silent));
}
