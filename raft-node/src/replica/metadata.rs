//! The metadata replica: the controller group's log applied to log-core's
//! cluster metadata machine, identically on every broker. Brokers learn the
//! topics and assignments from what it publishes.
//!
//! Commands carry no reply channel: a proposer pre-validates a command
//! against a copy of the current metadata (the machine is pure, so that
//! verdict is exact), proposes it from any broker (raft forwards proposals to
//! the leader), and waits until the published metadata shows its effect.

use std::sync::Arc;

use log_core::metadata::{ClusterMetadata, Command, Outcome, TopicId};
use raft::eraftpb::{Entry, EntryType, Snapshot};

use super::{Machine, ReplicaError};
use crate::storage::RaftLog;

pub struct MetadataMachine {
    state: ClusterMetadata,
    /// The raft index `state` is at.
    applied: u64,
    /// Topics deleted by applied commands, whose local data is to be removed.
    deleted: Vec<TopicId>,
    /// A shared copy of `state` as of the last epoch change, for the node's
    /// cluster view (cloned only when the metadata changes).
    published: Arc<ClusterMetadata>,
}

impl MetadataMachine {
    pub fn state(&self) -> &ClusterMetadata {
        &self.state
    }

    /// The metadata as last published.
    pub fn published(&self) -> Arc<ClusterMetadata> {
        self.published.clone()
    }

    /// Topics deleted since the last call (also those replayed on recovery:
    /// removing their data again is harmless).
    pub fn take_deleted(&mut self) -> Vec<TopicId> {
        std::mem::take(&mut self.deleted)
    }

    fn apply(&mut self, entry: &Entry) {
        if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
            return;
        }
        // Every replica decodes the same bytes the same way, so a command the
        // machine refuses (a race lost to another proposer) is refused alike
        // everywhere and changes nothing.
        if let Ok(command) = Command::decode(&entry.data) {
            if let Ok(Outcome::TopicDeleted { topic, .. }) = self.state.apply(command) {
                self.deleted.push(topic.id());
            }
        }
    }

    fn publish(&mut self) {
        self.published = Arc::new(self.state.clone());
    }
}

impl Machine for MetadataMachine {
    fn recover(log: &RaftLog) -> Result<Self, ReplicaError> {
        let snapshot = log.snapshot().data.clone();
        let state = if snapshot.is_empty() {
            ClusterMetadata::default()
        } else {
            ClusterMetadata::decode(&snapshot)
                .map_err(|e| ReplicaError::Machine(format!("unreadable metadata snapshot: {e}")))?
        };
        let (mut next, commit) = (log.first_index(), log.hard_state().commit);
        let applied = commit.max(log.snapshot().get_metadata().index);
        let mut machine = MetadataMachine { state, applied, deleted: Vec::new(), published: Arc::default() };
        while next <= commit {
            let entries = log.entries(next, commit + 1, Some(16 << 20))?;
            entries.iter().for_each(|e| machine.apply(e));
            next += entries.len() as u64;
        }
        machine.publish();
        Ok(machine)
    }

    fn on_entries(&mut self, _entries: &[Entry]) -> Result<(), ReplicaError> {
        Ok(())
    }

    fn on_committed(&mut self, entries: &[Entry], _log: &RaftLog) -> Result<(), ReplicaError> {
        let epoch = self.state.epoch();
        entries.iter().for_each(|e| self.apply(e));
        if let Some(last) = entries.last() {
            self.applied = last.index;
        }
        if self.state.epoch() != epoch {
            self.publish();
        }
        Ok(())
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), ReplicaError> {
        let state = ClusterMetadata::decode(&snapshot.data)
            .map_err(|e| ReplicaError::Machine(format!("unreadable metadata snapshot: {e}")))?;
        let kept: std::collections::BTreeSet<TopicId> = state.topics().map(|(_, t)| t.id()).collect();
        self.deleted.extend(self.state.topics().map(|(_, t)| t.id()).filter(|id| !kept.contains(id)));
        self.state = state;
        self.applied = snapshot.get_metadata().index;
        self.publish();
        Ok(())
    }

    /// The state at `index`: the current one, or the empty one at index 1
    /// (the base snapshot a group records before its first membership change,
    /// when entry 1 is the first leader's empty entry; see
    /// `Replica::record_base_snapshot`). Sending the current state as of
    /// index 1 would have a learner apply every command twice.
    fn snapshot_data(&self, index: u64) -> Result<Vec<u8>, ReplicaError> {
        match index {
            i if i == self.applied => Ok(self.state.encode()),
            1 => Ok(ClusterMetadata::default().encode()),
            _ => Err(ReplicaError::Machine(format!("no metadata state at index {index} (applied {})", self.applied))),
        }
    }

    /// The state holds everything applied; the log behind it is not needed.
    fn on_compacted(&mut self, _index: u64) -> Result<(), ReplicaError> {
        Ok(())
    }

    /// KRaft's `__cluster_metadata` offsets, here raft indices: entry `i` is
    /// offset `i - 1`, so a log through `i` ends at offset `i`.
    fn offset_after(&self, index: u64) -> Option<i64> {
        i64::try_from(index).ok()
    }
}
