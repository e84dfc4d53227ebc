//! One raft group replica on this broker: raft-rs's `RawNode` over the
//! group's segmented log, and the state machine its entries drive.
//!
//! The Ready loop keeps the order raft needs for safety: entries and hard
//! state are written and synced before any message that depends on them
//! leaves (raft-rs's persisted messages), and the state machine sees every
//! entry when it is appended (to assign Kafka offsets on every replica alike)
//! and again when it commits.
//!
//! Compaction is local to each replica: it records the machine's snapshot at
//! a committed, applied index and drops the whole segments below it. A
//! follower that then needs entries below the leader's log start gets that
//! snapshot (raft-rs's MsgSnapshot: metadata and the machine's small state
//! blob, never the log) and continues from the log after it.

pub mod jitter;
pub mod membership;
pub mod metadata;
pub mod partition;
pub mod throttle;

use std::collections::BTreeMap;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::MessageType;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use slog::{o, Logger};

use crate::group_id::GroupId;
use crate::replica_id::broker_of;
use crate::storage::{Disk, LogConfig, RaftLog};
use jitter::ElectionJitter;

/// Raft settings shared by every group on a broker.
#[derive(Clone, Debug)]
pub struct RaftSettings {
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    pub max_size_per_msg: u64,
    pub max_inflight_msgs: usize,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings { election_ticks: 10, heartbeat_ticks: 2, max_size_per_msg: 1 << 20, max_inflight_msgs: 256 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::LogError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The state machine refused the log: a replica that diverged from its
    /// leader, or a bug. The group stops rather than serve wrong data.
    #[error("state machine: {0}")]
    Machine(String),
    /// raft-rs panicked (it does on a storage read it cannot use, such as a
    /// log entry that keeps failing its checksum); the group is done.
    #[error("raft failed: {0}")]
    Failed(String),
}

/// What a replica's entries drive: the partition log or the cluster metadata.
pub trait Machine: Sized {
    /// Rebuilds the state from what the log holds, through its commit index.
    fn recover(log: &RaftLog) -> Result<Self, ReplicaError>;
    /// Entries about to be written: new ones, or ones replacing an
    /// uncommitted suffix. A rejection stops the group before they are stored.
    fn on_entries(&mut self, entries: &[Entry]) -> Result<(), ReplicaError>;
    /// The log is durable through `index`.
    fn on_persisted(&mut self, _index: u64, _log: &RaftLog) {}
    /// Entries committed by a quorum, in order.
    fn on_committed(&mut self, entries: &[Entry], log: &RaftLog) -> Result<(), ReplicaError>;
    /// A leader's snapshot replaced the log.
    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), ReplicaError>;
    /// The snapshot data raft sends a follower that lags behind the log start.
    fn snapshot_data(&self, index: u64) -> Result<Vec<u8>, ReplicaError>;
    /// The log no longer serves entries through `index` (a compaction).
    fn on_compacted(&mut self, index: u64) -> Result<(), ReplicaError>;
    /// The Kafka offset after raft entry `index`: the log end offset of a
    /// replica whose log ends there. `None` when this replica cannot tell.
    fn offset_after(&self, index: u64) -> Option<i64>;
}

/// A group as its leader sees it, in Kafka offsets (DescribeQuorum).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumState {
    pub leader: u64,
    pub term: u64,
    pub high_watermark: i64,
    /// Voters and learners by broker id, each with its log end offset if known.
    pub voters: Vec<(u64, Option<i64>)>,
    pub learners: Vec<(u64, Option<i64>)>,
}

/// A group as its leader sees it, in raft indices: each member's `matched`
/// (the end of its log known to agree with the leader's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupProgress {
    pub leader: u64,
    pub term: u64,
    pub applied: u64,
    /// By broker id, ascending.
    pub voters: Vec<(u64, u64)>,
    pub learners: Vec<(u64, u64)>,
}

impl GroupProgress {
    /// Translates indices to offsets with `offset_after`. A leader starts
    /// every follower's `matched` at 0 when elected, and raft logs start at
    /// index 1: a 0 means the leader has not yet learned where that log ends.
    pub fn in_offsets(&self, offset_after: impl Fn(u64) -> Option<i64>) -> QuorumState {
        let end = |members: &[(u64, u64)]| -> Vec<(u64, Option<i64>)> {
            members
                .iter()
                .map(|&(id, matched)| (id, Some(matched).filter(|&m| m > 0).and_then(&offset_after)))
                .collect()
        };
        QuorumState {
            leader: self.leader,
            term: self.term,
            high_watermark: offset_after(self.applied).unwrap_or(-1),
            voters: end(&self.voters),
            learners: end(&self.learners),
        }
    }
}

/// Outbound raft messages of one processing round, for the transport.
#[derive(Default)]
pub struct Outbox {
    pub messages: Vec<(GroupId, Message)>,
}

impl Outbox {
    /// Queues `messages`; notes the followers sent a snapshot in `snapshots_to`.
    fn push(&mut self, group: GroupId, messages: Vec<Message>, snapshots_to: &mut Vec<u64>) {
        for m in messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                snapshots_to.push(m.to);
            }
            self.messages.push((group, m));
        }
    }
}

/// What every replica on a broker shares: who it is, where it stores, how
/// its raft is tuned, where it logs.
#[derive(Clone)]
pub struct ReplicaEnv {
    pub node_id: u64,
    pub disk: Arc<dyn Disk>,
    pub log_config: LogConfig,
    pub settings: RaftSettings,
    pub logger: Logger,
}

/// Sees every committed entry as a replica applies it (the simulator checks
/// that committed entries never change), and no entries when the node opens
/// a partition replica (which applies from its own start); production has none.
#[derive(Clone)]
pub struct AppliedHook(Arc<AppliedFn>);

type AppliedFn = dyn Fn(&GroupId, &[Entry]) + Send + Sync;

impl AppliedHook {
    pub fn new(f: impl Fn(&GroupId, &[Entry]) + Send + Sync + 'static) -> Self {
        AppliedHook(Arc::new(f))
    }

    pub fn call(&self, group: &GroupId, entries: &[Entry]) {
        (self.0)(group, entries)
    }
}

impl std::fmt::Debug for AppliedHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppliedHook")
    }
}

/// Ticks a commit-only change of the hard state may wait before it is synced.
const COMMIT_SYNC_TICKS: usize = 10;

pub struct Replica<M: Machine> {
    pub group: GroupId,
    raw: RawNode<RaftLog>,
    pub machine: M,
    jitter: ElectionJitter,
    rng: ChaCha8Rng,
    /// The stored commit index lags raft's (see `persist_hard_state`).
    commit_behind: bool,
    /// Why raft-rs panicked, once it has: the replica does nothing more.
    failed: Option<String>,
    on_applied: Option<AppliedHook>,
    ticks_since_commit_sync: usize,
    /// The index of the last configuration change applied, or a bound above
    /// it: a snapshot records the configuration as applied now, so none may
    /// be taken below this index (it would name the wrong members).
    last_conf_change: u64,
    /// The commit is stored before entries are applied (see `set_durable_apply`).
    durable_apply: bool,
    /// A window `pace_learners` set below the configured one may remain.
    learners_paced: bool,
    /// Ticks so far, and the tick each peer (by raft id) was last heard
    /// from: raft-rs's `recent_active` is cleared every election timeout
    /// under check_quorum, so it says little at an arbitrary moment.
    ticks: u64,
    heard: BTreeMap<u64, u64>,
    logger: Logger,
}

impl<M: Machine> Replica<M> {
    /// Opens the group's log (recovering it) and rebuilds its state machine.
    /// A fresh log is bootstrapped with `voters`; an existing one keeps its
    /// own configuration. With no `voters`, a fresh replica is an empty
    /// learner-to-be: it never campaigns, and learns its configuration from
    /// the leader's snapshot once the leader adds it. `seed` drives the
    /// group's election jitter.
    pub fn open(group: GroupId, voters: &[u64], seed: u64, env: &ReplicaEnv) -> Result<Self, ReplicaError> {
        let logger = env.logger.new(o!("group" => group.to_string()));
        let (mut log, report) = RaftLog::open(env.disk.clone(), &group.file_prefix(), env.log_config.clone())?;
        if report.torn_tail.is_some() {
            slog::warn!(logger, "recovered log"; "report" => ?report);
        }
        if log.conf_state().voters.is_empty() {
            log.set_conf_state(ConfState { voters: voters.to_vec(), ..Default::default() })?;
        }
        let machine = M::recover(&log)?;
        let applied = log.hard_state().commit;
        // Every replica records a snapshot before it applies its first
        // configuration change (`apply`), so without one there was none.
        // With one whose configuration is the current, none since; else the
        // last may be anywhere up to the commit.
        let snapshot = log.snapshot().get_metadata();
        let last_conf_change = match snapshot.index {
            0 => 0,
            index if snapshot.get_conf_state() == log.conf_state() => index,
            _ => applied,
        };
        let settings = &env.settings;
        let config = raft::Config {
            id: env.node_id,
            election_tick: settings.election_ticks,
            heartbeat_tick: settings.heartbeat_ticks,
            // A one-value range: raft-rs's own (unseeded) randomness is unused;
            // `ElectionJitter` supplies it from the seeded RNG.
            min_election_tick: settings.election_ticks,
            max_election_tick: settings.election_ticks + 1,
            applied,
            max_size_per_msg: settings.max_size_per_msg,
            max_inflight_msgs: settings.max_inflight_msgs,
            pre_vote: true,
            check_quorum: true,
            ..Default::default()
        };
        let raw = RawNode::new(&config, log, &logger)?;
        let mut replica = Replica {
            group,
            raw,
            machine,
            jitter: ElectionJitter::new(settings.election_ticks),
            rng: ChaCha8Rng::seed_from_u64(seed),
            commit_behind: false,
            failed: None,
            on_applied: None,
            ticks_since_commit_sync: 0,
            last_conf_change,
            durable_apply: false,
            learners_paced: false,
            ticks: 0,
            heard: BTreeMap::new(),
            logger,
        };
        replica.observe();
        Ok(replica)
    }

    pub fn set_on_applied(&mut self, hook: Option<AppliedHook>) {
        self.on_applied = hook;
    }

    /// Stores the commit index before applying entries, instead of lazily:
    /// after a restart the machine then recovers at least every entry it
    /// had applied, so what was acted on is never seen undone (the metadata
    /// group: a broker deletes a replica moved off it by what it applied).
    pub fn set_durable_apply(&mut self) {
        self.durable_apply = true;
    }

    pub fn role(&self) -> StateRole {
        self.raw.raft.state
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// This replica's raft id (see `replica_id`).
    pub fn id(&self) -> u64 {
        self.raw.raft.id
    }

    /// The current leader's broker id, if known.
    pub fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&id| id != raft::INVALID_ID).map(broker_of)
    }

    pub fn is_leader(&self) -> bool {
        self.role() == StateRole::Leader
    }

    /// Every member's progress, when this replica leads (only the leader knows it).
    pub fn progress(&self) -> Option<GroupProgress> {
        if !self.is_leader() {
            return None;
        }
        let prs = self.raw.raft.prs();
        // Sorted: raft-rs keeps progress in a HashMap.
        let members: std::collections::BTreeMap<u64, u64> = prs.iter().map(|(&id, pr)| (id, pr.matched)).collect();
        let (learners, voters): (Vec<_>, Vec<_>) =
            members.into_iter().partition(|(id, _)| prs.conf().learners().contains(id));
        let by_broker = |members: Vec<(u64, u64)>| {
            let mut members: Vec<(u64, u64)> = members.into_iter().map(|(id, m)| (broker_of(id), m)).collect();
            members.sort_unstable();
            members
        };
        Some(GroupProgress {
            leader: broker_of(self.raw.raft.id),
            term: self.term(),
            applied: self.raw.raft.raft_log.applied,
            voters: by_broker(voters),
            learners: by_broker(learners),
        })
    }

    /// The configuration raft has applied.
    pub fn conf_state(&self) -> ConfState {
        self.raw.raft.prs().conf().to_conf_state()
    }

    /// One step of moving the group's voters to `target` (and its learners
    /// to `keep`), when this replica leads (`None` otherwise); see
    /// `membership`. Returns the step taken: `Done` once the target is the
    /// applied configuration.
    pub fn drive_membership(&mut self, target: &[u64], keep: &[u64]) -> Result<Option<membership::Step>, ReplicaError> {
        if !self.is_leader() {
            return Ok(None);
        }
        if self.raw.raft.has_pending_conf() || self.raw.raft.lead_transferee.is_some() {
            return Ok(Some(membership::Step::Wait));
        }
        let target: std::collections::BTreeSet<u64> = target.iter().copied().collect();
        let keep: std::collections::BTreeSet<u64> = keep.iter().copied().collect();
        let prs = self.raw.raft.prs();
        let matched = |id: u64| prs.get(id).map_or(0, |pr| pr.matched);
        let committed = self.raw.raft.raft_log.committed;
        let step = membership::next_step(&target, &keep, &self.conf_state(), self.raw.raft.id, matched, committed);
        match &step {
            membership::Step::AddLearner(_) if self.log().snapshot().get_metadata().index == 0 => {
                // A learner must start from a snapshot that holds the group's
                // configuration: take it before the first change.
                if self.raw.raft.raft_log.applied < 1 {
                    return Ok(Some(membership::Step::Wait));
                }
                self.guarded(|r| r.record_base_snapshot())?;
            }
            membership::Step::TransferLeader(to) => {
                let to = *to;
                self.guarded(|r| {
                    r.raw.transfer_leader(to);
                    Ok(())
                })?;
            }
            _ => {}
        }
        if let Some(cc) = membership::conf_change(&step) {
            let proposed = self.guarded(|r| Ok(r.raw.propose_conf_change(vec![], cc)))?;
            if let Err(e) = proposed {
                slog::debug!(self.logger, "configuration change not proposed"; "step" => ?step, "error" => %e);
                return Ok(Some(membership::Step::Wait));
            }
        }
        if step != membership::Step::Wait && step != membership::Step::Done {
            slog::info!(self.logger, "membership change"; "step" => ?step, "target" => ?target);
        }
        Ok(Some(step))
    }

    /// Records a snapshot through entry 1 (the first leader's empty entry,
    /// which holds no data) while the configuration is still the one the
    /// group was bootstrapped with: the snapshot a learner is sent when it
    /// joins must carry the configuration that the log after it changes.
    fn record_base_snapshot(&mut self) -> Result<(), ReplicaError> {
        if self.log().snapshot().get_metadata().index > 0 {
            return Ok(());
        }
        debug_assert_eq!(self.last_conf_change, 0, "a configuration change applied before the base snapshot");
        if self.log().entries(1, 2, None)?.iter().any(|e| !e.data.is_empty()) {
            return Err(ReplicaError::Machine("entry 1 holds data: no snapshot can precede it".into()));
        }
        self.compact_through(1)
    }

    /// Starts handing leadership to `to` when this replica leads, `to` is
    /// another voter heard from within an election timeout and has the
    /// whole log, and
    /// no hand-over or configuration change is under way. Returns whether it
    /// started; raft gives up a hand-over that takes an election timeout.
    pub fn hand_over_to(&mut self, to: u64) -> Result<bool, ReplicaError> {
        let raft = &self.raw.raft;
        if !self.is_leader() || to == raft.id || self.handing_over() || raft.has_pending_conf() {
            return Ok(false);
        }
        let voter = raft.prs().conf().voters().contains(to);
        let heard = self.heard.get(&to).is_some_and(|&at| self.ticks - at <= raft.election_timeout() as u64);
        let caught_up = raft.prs().get(to).is_some_and(|pr| pr.matched == raft.raft_log.last_index());
        if !voter || !heard || !caught_up {
            return Ok(false);
        }
        self.guarded(|r| {
            r.raw.transfer_leader(to);
            Ok(())
        })?;
        Ok(true)
    }

    /// Whether raft id `id` is a learner of the group, by the applied configuration.
    pub fn is_learner(&self, id: u64) -> bool {
        self.raw.raft.prs().conf().learners().contains(&id)
    }

    /// On the leader, keeps each learner's inflight window at `learner_cap`
    /// appends and every voter's at the configured one (a learner just
    /// promoted gets its full window back). `None` (no throttle) gives every
    /// window back, once: raft gives a new peer the configured window and
    /// keeps each across terms, so only a window set smaller here needs it.
    pub fn pace_learners(&mut self, learner_cap: Option<usize>) {
        if !self.is_leader() || (learner_cap.is_none() && !self.learners_paced) {
            return;
        }
        let raft = &mut self.raw.raft;
        let learner_cap = learner_cap.unwrap_or(raft.max_inflight);
        let caps: Vec<(u64, usize)> = raft
            .prs()
            .iter()
            .map(|(&id, _)| {
                (id, if raft.prs().conf().learners().contains(&id) { learner_cap } else { raft.max_inflight })
            })
            .collect();
        for (id, cap) in caps {
            raft.adjust_max_inflight_msgs(id, cap);
        }
        self.learners_paced = learner_cap != raft.max_inflight;
    }

    /// Whether a leadership hand-over is under way.
    pub fn handing_over(&self) -> bool {
        self.raw.raft.lead_transferee.is_some()
    }

    /// The group in Kafka offsets, when this replica leads.
    pub fn quorum(&self) -> Option<QuorumState> {
        self.progress().map(|p| p.in_offsets(|index| self.machine.offset_after(index)))
    }

    pub fn log(&self) -> &RaftLog {
        self.raw.store()
    }

    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    fn observe(&mut self) {
        self.jitter.observe(self.raw.raft.term, self.raw.raft.state, &mut self.rng);
    }

    /// Runs `f`, which calls into raft-rs. raft-rs panics on a storage error
    /// it cannot handle; the panic ends this group only (the broker's other
    /// groups go on), and every later call reports it. The failed `RawNode`
    /// is never used again: the node drops the replica and may reopen it
    /// from disk.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, ReplicaError>) -> Result<T, ReplicaError> {
        if let Some(why) = &self.failed {
            return Err(ReplicaError::Failed(why.clone()));
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) {
            Ok(result) => result,
            Err(panic) => {
                let why = panic_message(&*panic);
                self.failed = Some(why.clone());
                Err(ReplicaError::Failed(why))
            }
        }
    }

    /// A failure here surfaces at the next `handle_ready`.
    pub fn tick(&mut self) {
        self.ticks += 1;
        let _ = self.guarded(|r| {
            r.ticks_since_commit_sync += 1;
            if r.jitter.should_tick(r.role()) {
                r.raw.tick();
            }
            r.observe();
            Ok(())
        });
    }

    /// Feeds a message from a peer; a message raft refuses is logged and
    /// dropped. A failure surfaces at the next `handle_ready`.
    pub fn step(&mut self, message: Message) {
        self.heard.insert(message.from, self.ticks);
        let stepped = self.guarded(|r| {
            let stepped = r.raw.step(message);
            r.observe();
            Ok(stepped)
        });
        if let Ok(Err(e)) = stepped {
            slog::debug!(self.logger, "dropped raft message"; "error" => %e);
        }
    }

    /// Proposes `data` as a normal entry; returns the index it will take.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<u64, ReplicaError> {
        self.guarded(|r| {
            r.raw.propose(vec![], data)?;
            r.observe();
            Ok(r.last_index())
        })
    }

    pub fn has_ready(&self) -> bool {
        self.raw.has_ready()
    }

    /// One round of raft's Ready protocol.
    pub fn handle_ready(&mut self, outbox: &mut Outbox) -> Result<(), ReplicaError> {
        self.guarded(|r| r.ready_round(outbox))
    }

    fn ready_round(&mut self, outbox: &mut Outbox) -> Result<(), ReplicaError> {
        if self.commit_behind && self.ticks_since_commit_sync >= COMMIT_SYNC_TICKS {
            self.store_commit(self.raw.raft.raft_log.applied)?;
        }
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        let mut snapshots_to = Vec::new();
        // The leader's appends may go out before its own write: it counts
        // itself only once the entries are durable (advance below).
        outbox.push(self.group, ready.take_messages(), &mut snapshots_to);
        let installs_snapshot = !ready.snapshot().is_empty();
        if installs_snapshot {
            let snapshot = ready.snapshot().clone();
            self.machine.on_snapshot(&snapshot)?;
            self.raw.mut_store().apply_snapshot(snapshot)?;
        }
        let mut wrote = false;
        if !ready.entries().is_empty() {
            self.machine.on_entries(ready.entries())?;
            self.raw.mut_store().append(ready.entries())?;
            wrote = true;
        }
        if installs_snapshot {
            // Recovery tells an unfinished install by a stored commit below
            // the snapshot: the snapshot's index becomes durable with the
            // install (entries after it are applied, and their commit
            // stored, later).
            let index = self.log().snapshot().get_metadata().index;
            self.store_commit(index)?;
        } else if let Some(hs) = ready.hs() {
            self.persist_hard_state(hs.clone())?;
        }
        if wrote {
            self.raw.mut_store().sync()?;
            let last = self.raw.store().last_index();
            self.machine.on_persisted(last, self.raw.store());
        }
        outbox.push(self.group, ready.take_persisted_messages(), &mut snapshots_to);
        let committed = ready.take_committed_entries();
        self.apply(&committed)?;
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.commit_behind |= commit != self.raw.store().hard_state().commit;
        }
        outbox.push(self.group, light.take_messages(), &mut snapshots_to);
        let committed = light.take_committed_entries();
        self.apply(&committed)?;
        self.raw.advance_apply();
        // raft-rs pauses replication to a follower sent a snapshot until told
        // how the send went. The transport is fire-and-forget, so report it
        // done once handed over: if it was lost, the follower rejects the next
        // append (it lacks the snapshot's index), the leader probes back below
        // its log start, and sends the snapshot again.
        for to in snapshots_to {
            self.raw.report_snapshot(to, SnapshotStatus::Finish);
        }
        self.observe();
        Ok(())
    }

    /// Term and vote must be durable before any message that depends on them
    /// leaves. The commit index need not be: a restarted replica learns it
    /// again from the leader, and a replica's high watermark lagging for that
    /// moment is answered like any other (no data yet). So a commit-only
    /// change waits up to `COMMIT_SYNC_TICKS` instead of costing an fsync of
    /// its own every round (measured: a quarter to a third of all syncs).
    fn persist_hard_state(&mut self, hs: HardState) -> Result<(), ReplicaError> {
        let stored = self.raw.store().hard_state();
        if hs.term != stored.term || hs.vote != stored.vote {
            self.store_commit(self.raw.raft.raft_log.applied)
        } else {
            self.commit_behind |= hs.commit != stored.commit;
            Ok(())
        }
    }

    /// Stores raft's hard state with the commit at `commit`, cut to what the
    /// log holds and never below what is stored. A restart takes every entry
    /// through the stored commit as applied (its configuration changes
    /// included), so `commit` is at most what is applied, or what the caller
    /// is about to apply with nothing but normal entries; raft's own commit
    /// may cover a configuration change not yet applied, and entries a peer
    /// sent since the last Ready.
    fn store_commit(&mut self, commit: u64) -> Result<(), ReplicaError> {
        let mut hs = self.raw.raft.hard_state();
        let raft_commit = hs.commit;
        hs.commit = commit.min(self.raw.store().last_index()).max(self.raw.store().hard_state().commit);
        let behind = hs.commit != raft_commit;
        self.raw.mut_store().set_hard_state(hs)?;
        self.commit_behind = behind;
        self.ticks_since_commit_sync = 0;
        Ok(())
    }

    /// Compacts the log through `index`, which must be applied: records the
    /// machine's snapshot there (what a lagging follower will be sent), drops
    /// the whole segments it covers, and has the machine forget the entries.
    /// A no-op at or below the current snapshot.
    pub fn compact(&mut self, index: u64) -> Result<(), ReplicaError> {
        let applied = self.raw.raft.raft_log.applied;
        if index > applied {
            return Err(ReplicaError::Machine(format!(
                "compaction through {index} beyond the applied index {applied}"
            )));
        }
        self.compact_through(index)
    }

    /// Whether a snapshot at `index` would record the configuration in force there.
    pub fn can_compact_through(&self, index: u64) -> bool {
        index >= self.last_conf_change
    }

    /// `compact` for an index the machine has committed (raft's applied
    /// index moves only at the end of a Ready).
    fn compact_through(&mut self, index: u64) -> Result<(), ReplicaError> {
        if !self.can_compact_through(index) {
            return Err(ReplicaError::Machine(format!(
                "compaction through {index} below the configuration change at {}",
                self.last_conf_change
            )));
        }
        if index < self.log().first_index() {
            return Ok(());
        }
        if self.log().hard_state().commit < index {
            // The storage compacts only what it knows to be committed.
            self.store_commit(index)?;
        }
        let term = self.log().term(index)?;
        let data = self.machine.snapshot_data(index)?;
        self.raw.mut_store().compact_through(index, term, data.into())?;
        self.machine.on_compacted(index)
    }

    fn apply(&mut self, entries: &[Entry]) -> Result<(), ReplicaError> {
        if entries.is_empty() {
            return Ok(());
        }
        let last = entries[entries.len() - 1].index;
        if self.durable_apply {
            // Through the first configuration change at most: it stores its
            // own index with the configuration it makes.
            let normal = entries.iter().take_while(|e| e.get_entry_type() == EntryType::EntryNormal).last();
            if let Some(through) = normal.map(|e| e.index).filter(|&i| i > self.log().hard_state().commit) {
                self.store_commit(through)?;
            }
        }
        if let Some(hook) = &self.on_applied {
            hook.call(&self.group, entries);
        }
        // The machine sees the entries before each configuration change first:
        // a base snapshot taken there must hold them.
        let mut done = 0;
        for (i, entry) in entries.iter().enumerate() {
            if entry.get_entry_type() == EntryType::EntryNormal {
                continue;
            }
            if self.log().snapshot().get_metadata().index == 0 {
                self.machine.on_committed(&entries[done..i], self.raw.store())?;
                done = i;
                self.record_base_snapshot()?;
            }
            let conf_state = match entry.get_entry_type() {
                EntryType::EntryNormal => unreachable!("skipped above"),
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&entry.data)
                        .map_err(|e| ReplicaError::Machine(format!("bad conf change: {e}")))?;
                    self.raw.apply_conf_change(&cc)?
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&entry.data)
                        .map_err(|e| ReplicaError::Machine(format!("bad conf change: {e}")))?;
                    self.raw.apply_conf_change(&cc)?
                }
            };
            let id = self.raw.raft.id;
            if self.is_leader() && !conf_state.voters.contains(&id) && !conf_state.voters_outgoing.contains(&id) {
                // A leave proposed by an earlier leader, committed by this
                // one, removed it: raft-rs would go on leading without
                // itself (and later panic). Step down; the voters elect.
                slog::info!(self.logger, "removed from the voters while leading: stepping down");
                let term = self.raw.raft.term;
                self.raw.raft.become_follower(term, raft::INVALID_ID);
            }
            self.raw.mut_store().set_applied_conf_state(conf_state, entry.index)?;
            self.last_conf_change = entry.index;
        }
        if self.durable_apply && self.log().hard_state().commit < last {
            self.store_commit(last)?;
        }
        self.machine.on_committed(&entries[done..], self.raw.store())
    }
}

/// The message a panic carried, for the log.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_translates_to_offsets_and_zero_is_unknown() {
        let progress = GroupProgress {
            leader: 1,
            term: 3,
            applied: 6,
            voters: vec![(1, 8), (2, 5), (3, 0)],
            learners: vec![(4, 2)],
        };
        // Ten records per entry, and nothing known below index 2 (compacted).
        let quorum = progress.in_offsets(|index| (index >= 2).then_some(index as i64 * 10));
        assert_eq!(
            quorum,
            QuorumState {
                leader: 1,
                term: 3,
                high_watermark: 60,
                voters: vec![(1, Some(80)), (2, Some(50)), (3, None)],
                learners: vec![(4, Some(20))],
            }
        );
        let compacted = GroupProgress { voters: vec![(1, 8), (2, 1)], learners: vec![], ..progress };
        assert_eq!(compacted.in_offsets(|index| (index >= 2).then_some(0)).voters, [(1, Some(0)), (2, None)]);
    }
}
