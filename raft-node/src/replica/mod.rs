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
pub mod metadata;
pub mod partition;

use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::MessageType;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use slog::{o, Logger};

use crate::group_id::GroupId;
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

pub struct Replica<M: Machine> {
    pub group: GroupId,
    raw: RawNode<RaftLog>,
    pub machine: M,
    jitter: ElectionJitter,
    rng: ChaCha8Rng,
    logger: Logger,
}

impl<M: Machine> Replica<M> {
    /// Opens the group's log (recovering it) and rebuilds its state machine.
    /// A fresh log is bootstrapped with `voters`; an existing one keeps its
    /// own configuration. `seed` drives the group's election jitter.
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
            logger,
        };
        replica.observe();
        Ok(replica)
    }

    pub fn role(&self) -> StateRole {
        self.raw.raft.state
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The current leader's broker id, if known.
    pub fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&id| id != raft::INVALID_ID)
    }

    pub fn is_leader(&self) -> bool {
        self.role() == StateRole::Leader
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

    pub fn tick(&mut self) {
        if self.jitter.should_tick(self.role()) {
            self.raw.tick();
        }
        self.observe();
    }

    /// Feeds a message from a peer; a message raft refuses is logged and dropped.
    pub fn step(&mut self, message: Message) {
        if let Err(e) = self.raw.step(message) {
            slog::debug!(self.logger, "dropped raft message"; "error" => %e);
        }
        self.observe();
    }

    /// Proposes `data` as a normal entry; returns the index it will take.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<u64, ReplicaError> {
        self.raw.propose(vec![], data)?;
        self.observe();
        Ok(self.last_index())
    }

    pub fn has_ready(&self) -> bool {
        self.raw.has_ready()
    }

    /// One round of raft's Ready protocol.
    pub fn handle_ready(&mut self, outbox: &mut Outbox) -> Result<(), ReplicaError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        let mut snapshots_to = Vec::new();
        // The leader's appends may go out before its own write: it counts
        // itself only once the entries are durable (advance below).
        outbox.push(self.group, ready.take_messages(), &mut snapshots_to);
        if !ready.snapshot().is_empty() {
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
        if let Some(hs) = ready.hs() {
            self.raw.mut_store().set_hard_state(hs.clone())?;
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
            let mut hs = self.raw.store().hard_state().clone();
            hs.commit = commit;
            self.raw.mut_store().set_hard_state(hs)?;
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
        if index < self.log().first_index() {
            return Ok(());
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
        for entry in entries {
            let conf_state = match entry.get_entry_type() {
                EntryType::EntryNormal => continue,
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
            self.raw.mut_store().set_conf_state(conf_state)?;
        }
        self.machine.on_committed(entries, self.raw.store())
    }
}
