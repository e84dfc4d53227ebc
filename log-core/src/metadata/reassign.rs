//! Moving a partition's replicas (Kafka's KIP-455): the metadata records the
//! target and, until the partition's raft group reports the target as its
//! committed configuration, keeps every broker that may hold the data in the
//! replica set.
//!
//! States of one partition, `R` its replica set:
//! - settled: no reassignment; `R` is the raft group's voters.
//! - moving to `T`: `R` = `T` then the old replicas not in `T`;
//!   `adding` = `T` − old, `removing` = old − `T`. The group's leader adds
//!   `adding` as learners, swaps voters with joint consensus, then proposes
//!   `CompleteReassignment`.
//! - completed: `R` = `T`, settled again; brokers no longer in `R` delete
//!   their replica.
//!
//! A cancel is a move back to the old replicas (`R` − `adding`): the group
//! may already have added learners or even swapped voters, so it converges
//! back the same way, and no broker deletes anything until that completes.

use serde::{Deserialize, Serialize};

use super::topic::{BrokerId, PartitionAssignment};
use super::MetadataError;

/// A move in progress, in KIP-455's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    /// The replicas once the move completes, preferred leader first.
    pub target: Vec<BrokerId>,
    /// Brokers in the target that are not old replicas: they join as learners.
    pub adding: Vec<BrokerId>,
    /// Old replicas not in the target: they leave once the target is committed.
    pub removing: Vec<BrokerId>,
}

impl PartitionAssignment {
    /// Starts a move to `target` (distinct, registered: checked by the
    /// caller). The same brokers in another order only change the preferred
    /// leader, which needs no raft change: applied at once.
    pub(super) fn start_reassignment(&mut self, target: Vec<BrokerId>) -> Result<(), MetadataError> {
        if self.reassignment.is_some() {
            return Err(MetadataError::ReassignmentInProgress);
        }
        if let Some(&broker) = target.iter().find(|b| self.leaving.contains(b)) {
            return Err(MetadataError::ReplicaLeaving(broker));
        }
        let mut sorted_target = target.clone();
        sorted_target.sort_unstable();
        let mut sorted_current = self.replicas.clone();
        sorted_current.sort_unstable();
        if sorted_target == sorted_current {
            self.replicas = target;
            return Ok(());
        }
        self.begin(target, &self.replicas.clone());
        Ok(())
    }

    /// Turns the move in progress into a move back to the old replicas.
    pub(super) fn cancel_reassignment(&mut self) -> Result<(), MetadataError> {
        let Some(moving) = self.reassignment.take() else {
            return Err(MetadataError::NoReassignmentInProgress);
        };
        let old: Vec<BrokerId> = self.replicas.iter().copied().filter(|b| !moving.adding.contains(b)).collect();
        let current = self.replicas.clone();
        self.begin(old, &current);
        Ok(())
    }

    /// Ends the move to `target` once the raft group has committed it as its
    /// configuration. Refused for any other target (a report about a move
    /// that was since cancelled or replaced).
    pub(super) fn complete_reassignment(&mut self, target: &[BrokerId]) -> Result<(), MetadataError> {
        match &self.reassignment {
            Some(moving) if moving.target == target => {
                self.leaving.extend(self.replicas.iter().filter(|b| !target.contains(b)));
                self.generations.retain(|b, _| target.contains(b));
                self.replicas = target.to_vec();
                self.reassignment = None;
                Ok(())
            }
            _ => Err(MetadataError::NoReassignmentInProgress),
        }
    }

    /// `broker` has deleted the replica a completed move took off it.
    pub(super) fn replica_deleted(&mut self, broker: BrokerId) -> Result<(), MetadataError> {
        let before = self.leaving.len();
        self.leaving.retain(|&b| b != broker);
        if self.leaving.len() == before {
            return Err(MetadataError::NotLeaving(broker));
        }
        Ok(())
    }

    /// The move from the replicas `current` to `target`.
    fn begin(&mut self, target: Vec<BrokerId>, current: &[BrokerId]) {
        let adding = target.iter().copied().filter(|b| !current.contains(b)).collect();
        let removing: Vec<BrokerId> = current.iter().copied().filter(|b| !target.contains(b)).collect();
        self.replicas = target.iter().chain(&removing).copied().collect();
        if self.moves == 0 {
            self.created_with = current.to_vec();
        }
        self.moves += 1;
        for &broker in &adding {
            self.generations.insert(broker, self.moves);
        }
        self.reassignment = Some(Reassignment { target, adding, removing });
    }

    /// What `check` demands of a move: the replica set is the target then
    /// the removed brokers, `adding` is within the target.
    pub(super) fn check_reassignment(&self) -> Result<(), &'static str> {
        let distinct = self.leaving.iter().enumerate().all(|(i, b)| !self.leaving[..i].contains(b));
        if !distinct || self.leaving.iter().any(|b| self.replicas.contains(b)) {
            return Err("a leaving broker is repeated or still a replica");
        }
        if self.moves == 0 && (self.reassignment.is_some() || !self.leaving.is_empty() || !self.created_with.is_empty())
        {
            return Err("a partition with moves counts none");
        }
        let creation_replicas = self.replicas.iter().filter(|&&b| self.generation(b) == 0);
        if !self.created_with.is_empty() && !creation_replicas.clone().all(|b| self.created_with.contains(b)) {
            return Err("a replica of the creation is not among the replicas it was created with");
        }
        if self.generations.iter().any(|(b, &g)| !self.replicas.contains(b) || g == 0 || g > self.moves) {
            return Err("a replica generation is of no replica or of no move");
        }
        let Some(moving) = &self.reassignment else { return Ok(()) };
        let expected: Vec<BrokerId> = moving.target.iter().chain(&moving.removing).copied().collect();
        if moving.target.is_empty() || self.replicas != expected {
            return Err("a move's replica set is not its target then the replicas it removes");
        }
        if !moving.adding.iter().all(|b| moving.target.contains(b)) {
            return Err("a move adds a broker outside its target");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moving(replicas: &[BrokerId], target: &[BrokerId]) -> PartitionAssignment {
        let mut p = PartitionAssignment::new(replicas.to_vec());
        p.start_reassignment(target.to_vec()).unwrap();
        p
    }

    #[test]
    fn a_move_keeps_every_holder_until_it_completes() {
        let mut p = moving(&[1, 2, 3], &[4, 1, 2]);
        assert_eq!(p.replicas(), [4, 1, 2, 3]);
        assert_eq!(p.reassignment(), Some(&Reassignment { target: vec![4, 1, 2], adding: vec![4], removing: vec![3] }));
        assert_eq!(p.bootstrap_voters(4), None, "new replicas join as learners");
        assert_eq!(p.bootstrap_voters(1), Some(&[1, 2, 3][..]), "the creation's, as when it was created");
        assert_eq!((p.generation(4), p.generation(1)), (1, 0));
        assert_eq!(p.start_reassignment(vec![1, 2, 5]), Err(MetadataError::ReassignmentInProgress));
        assert_eq!(p.complete_reassignment(&[1, 2, 4]), Err(MetadataError::NoReassignmentInProgress));
        p.complete_reassignment(&[4, 1, 2]).unwrap();
        assert_eq!((p.replicas(), p.reassignment()), (&[4, 1, 2][..], None));
        assert_eq!(p.check_reassignment(), Ok(()));
        // Broker 3 comes back only once it has deleted its old replica.
        assert_eq!(p.leaving(), [3]);
        assert_eq!(p.start_reassignment(vec![3, 1, 2]), Err(MetadataError::ReplicaLeaving(3)));
        assert_eq!(p.replica_deleted(4), Err(MetadataError::NotLeaving(4)));
        p.replica_deleted(3).unwrap();
        p.start_reassignment(vec![3, 1, 2]).unwrap();
        assert_eq!(p.check_reassignment(), Ok(()));
        assert_eq!(p.generation(3), 2, "broker 3's new replica is a new member of the group");
        assert_eq!(p.bootstrap_voters(3), None, "and a learner");
        assert_eq!(p.bootstrap_voters(2), Some(&[1, 2, 3][..]));
    }

    #[test]
    fn a_cancel_moves_back_and_keeps_the_added_brokers_until_then() {
        let mut p = moving(&[1, 2, 3], &[1, 4, 5]);
        p.cancel_reassignment().unwrap();
        assert_eq!(p.replicas(), [1, 2, 3, 4, 5]);
        assert_eq!(
            p.reassignment(),
            Some(&Reassignment { target: vec![1, 2, 3], adding: vec![], removing: vec![4, 5] })
        );
        assert_eq!(p.check_reassignment(), Ok(()));
        p.complete_reassignment(&[1, 2, 3]).unwrap();
        assert_eq!(p.replicas(), [1, 2, 3]);
        assert_eq!(p.cancel_reassignment(), Err(MetadataError::NoReassignmentInProgress));
    }

    #[test]
    fn reordering_only_moves_the_preferred_leader() {
        let mut p = PartitionAssignment::new(vec![1, 2, 3]);
        p.start_reassignment(vec![3, 1, 2]).unwrap();
        assert_eq!((p.replicas(), p.reassignment()), (&[3, 1, 2][..], None));
        assert_eq!(p.bootstrap_voters(1), Some(&[3, 1, 2][..]), "the raft configuration is unchanged");
        assert_eq!(p.bootstrap_voters(4), None, "not a replica");
    }

    #[test]
    fn shrinking_and_growing_the_replication_factor() {
        let p = moving(&[1, 2, 3], &[2, 3]);
        assert_eq!(p.replicas(), [2, 3, 1]);
        assert_eq!(p.reassignment().map(|r| (&r.adding[..], &r.removing[..])), Some((&[][..], &[1][..])));
        let p = moving(&[1], &[1, 2]);
        assert_eq!(p.replicas(), [1, 2]);
        assert_eq!(p.reassignment().map(|r| (&r.adding[..], &r.removing[..])), Some((&[2][..], &[][..])));
    }
}
