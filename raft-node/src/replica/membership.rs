//! Moving a group's voters to a target set while it serves, driven by its
//! leader one raft configuration change at a time:
//!
//! 1. every new member joins as a learner (an empty replica that catches up
//!    from the leader's snapshot and the log after it), one per change;
//! 2. once every learner has the leader's commit index, one joint change
//!    (ConfChangeV2, explicit transition) promotes them and removes the
//!    voters not in the target;
//! 3. a leader that is not an incoming voter hands leadership to one, and
//!    the leader (an incoming voter) leaves the joint configuration;
//! 4. learners outside the target (a cancelled move) are removed, unless
//!    they are wanted as learners (the metadata group keeps every broker
//!    that is not a voter as one), and wanted learners are added.
//!
//! The step is computed afresh from the applied configuration each time, so
//! a new leader (after a failover mid-move) carries on where the old one
//! stopped, and a changed target (a cancel) is simply followed.

use std::collections::BTreeSet;

use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState};

/// What the leader does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The voters are the target and the learners the wanted ones.
    Done,
    /// A learner is still catching up, or a change is in flight.
    Wait,
    AddLearner(u64),
    RemoveLearner(u64),
    /// Promote the caught-up learners, remove the voters not in the target.
    EnterJoint {
        add: Vec<u64>,
        remove: Vec<u64>,
    },
    /// The leader is only an outgoing voter: hand leadership to an incoming one.
    TransferLeader(u64),
    LeaveJoint,
}

/// The next step towards voters `target` and learners `keep` (disjoint
/// from `target`) from the applied configuration `conf`, on leader `leader`;
/// `matched(id)` is how far a member's log is known to agree with the
/// leader's, `caught_up_at` the index a learner must reach before it may vote
/// (the leader's commit index).
pub fn next_step(
    target: &BTreeSet<u64>,
    keep: &BTreeSet<u64>,
    conf: &ConfState,
    leader: u64,
    matched: impl Fn(u64) -> u64,
    caught_up_at: u64,
) -> Step {
    let voters: BTreeSet<u64> = conf.voters.iter().copied().collect();
    let learners: BTreeSet<u64> = conf.learners.iter().copied().collect();
    if !conf.voters_outgoing.is_empty() {
        if voters.contains(&leader) {
            return Step::LeaveJoint;
        }
        return match voters.iter().max_by_key(|&&id| (matched(id), std::cmp::Reverse(id))) {
            Some(&to) => Step::TransferLeader(to),
            None => Step::Wait,
        };
    }
    if let Some(&stale) = learners.iter().find(|id| !target.contains(id) && !keep.contains(id)) {
        return Step::RemoveLearner(stale);
    }
    if let Some(&new) = target.iter().find(|id| !voters.contains(id) && !learners.contains(id)) {
        return Step::AddLearner(new);
    }
    if voters == *target {
        // Voters leaving become learners again after the joint change.
        return match keep.iter().find(|id| !voters.contains(id) && !learners.contains(id)) {
            Some(&new) => Step::AddLearner(new),
            None => Step::Done,
        };
    }
    // Every target member not voting is now a learner; only those about to
    // vote must have caught up (a kept learner may lag, or be down).
    if target.iter().any(|&id| !voters.contains(&id) && matched(id) < caught_up_at) {
        return Step::Wait;
    }
    Step::EnterJoint {
        add: target.difference(&voters).copied().collect(),
        remove: voters.difference(target).copied().collect(),
    }
}

/// The raft configuration change a step proposes; `None` for the steps that
/// propose none.
pub fn conf_change(step: &Step) -> Option<ConfChangeV2> {
    let single = |id: u64, ty: ConfChangeType| ConfChangeSingle { node_id: id, change_type: ty, ..Default::default() };
    let mut cc = ConfChangeV2::default();
    match step {
        Step::AddLearner(id) => cc.changes = vec![single(*id, ConfChangeType::AddLearnerNode)].into(),
        Step::RemoveLearner(id) => cc.changes = vec![single(*id, ConfChangeType::RemoveNode)].into(),
        Step::EnterJoint { add, remove } => {
            // Explicit: the leader leaves when it is an incoming voter, not
            // automatically while it may be about to be removed.
            cc.set_transition(ConfChangeTransition::Explicit);
            let adds = add.iter().map(|&id| single(id, ConfChangeType::AddNode));
            cc.changes = adds.chain(remove.iter().map(|&id| single(id, ConfChangeType::RemoveNode))).collect();
        }
        // An empty change with the automatic transition leaves a joint configuration.
        Step::LeaveJoint => {}
        Step::Done | Step::Wait | Step::TransferLeader(_) => return None,
    }
    Some(cc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(voters: &[u64], outgoing: &[u64], learners: &[u64]) -> ConfState {
        ConfState {
            voters: voters.to_vec(),
            voters_outgoing: outgoing.to_vec(),
            learners: learners.to_vec(),
            ..Default::default()
        }
    }

    fn target(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    fn none() -> BTreeSet<u64> {
        BTreeSet::new()
    }

    #[test]
    fn kept_learners_stay_and_a_leaving_voter_is_replaced_first() {
        let (t, keep) = (target(&[1, 2, 3]), target(&[4]));
        let all = |_| 10;
        assert_eq!(next_step(&t, &keep, &conf(&[1, 2, 3], &[], &[]), 1, all, 10), Step::AddLearner(4));
        assert_eq!(
            next_step(&t, &keep, &conf(&[1, 2, 3], &[], &[4]), 1, |_| 0, 10),
            Step::Done,
            "a kept learner may lag"
        );
        // Voter 2 leaves; learner 4 replaces it in one joint change, so the
        // group keeps three voters throughout.
        let t = target(&[1, 3, 4]);
        assert_eq!(
            next_step(&t, &none(), &conf(&[1, 2, 3], &[], &[4]), 1, all, 10),
            Step::EnterJoint { add: vec![4], remove: vec![2] }
        );
        // A voter demoted to learner (still in the cluster) comes back as one.
        assert_eq!(next_step(&t, &target(&[2]), &conf(&[1, 3, 4], &[], &[]), 1, all, 10), Step::AddLearner(2));
        let lagging_keep = |id| if id == 5 { 0 } else { 10 };
        assert_eq!(
            next_step(&t, &target(&[5]), &conf(&[1, 2, 3], &[], &[4, 5]), 1, lagging_keep, 10),
            Step::EnterJoint { add: vec![4], remove: vec![2] },
            "a lagging kept learner does not hold up a promotion"
        );
    }

    #[test]
    fn a_move_adds_learners_then_swaps_voters_jointly() {
        let t = target(&[1, 2, 4]);
        let all = |_| 10;
        assert_eq!(next_step(&t, &none(), &conf(&[1, 2, 3], &[], &[]), 1, all, 10), Step::AddLearner(4));
        let lagging = |id| if id == 4 { 9 } else { 10 };
        assert_eq!(next_step(&t, &none(), &conf(&[1, 2, 3], &[], &[4]), 1, lagging, 10), Step::Wait);
        assert_eq!(
            next_step(&t, &none(), &conf(&[1, 2, 3], &[], &[4]), 1, all, 10),
            Step::EnterJoint { add: vec![4], remove: vec![3] }
        );
        assert_eq!(next_step(&t, &none(), &conf(&[1, 2, 4], &[1, 2, 3], &[]), 1, all, 10), Step::LeaveJoint);
        assert_eq!(next_step(&t, &none(), &conf(&[4, 2, 1], &[], &[]), 1, all, 10), Step::Done);
    }

    #[test]
    fn a_leader_being_removed_hands_over_inside_the_joint_configuration() {
        let t = target(&[2, 3, 4]);
        let matched = |id| [0, 10, 7, 9, 8][id as usize];
        assert_eq!(
            next_step(&t, &none(), &conf(&[1, 2, 3], &[], &[4]), 1, matched, 8),
            Step::EnterJoint { add: vec![4], remove: vec![1] }
        );
        let joint = conf(&[2, 3, 4], &[1, 2, 3], &[]);
        assert_eq!(
            next_step(&t, &none(), &joint, 1, matched, 8),
            Step::TransferLeader(3),
            "the most caught-up incoming voter"
        );
        assert_eq!(next_step(&t, &none(), &joint, 3, matched, 8), Step::LeaveJoint);
    }

    #[test]
    fn a_cancel_removes_the_learners_and_shrinking_needs_none() {
        let t = target(&[1, 2, 3]);
        assert_eq!(next_step(&t, &none(), &conf(&[1, 2, 3], &[], &[4, 5]), 1, |_| 0, 5), Step::RemoveLearner(4));
        let t = target(&[1, 2]);
        assert_eq!(
            next_step(&t, &none(), &conf(&[1, 2, 3], &[], &[]), 1, |_| 0, 5),
            Step::EnterJoint { add: vec![], remove: vec![3] }
        );
    }

    #[test]
    fn steps_become_the_conf_changes_raft_expects() {
        let joint = conf_change(&Step::EnterJoint { add: vec![4], remove: vec![3] }).unwrap();
        assert_eq!(joint.enter_joint(), Some(false), "explicit: no automatic leave");
        assert_eq!(joint.changes.len(), 2);
        let learner = conf_change(&Step::AddLearner(4)).unwrap();
        assert_eq!((learner.enter_joint(), learner.leave_joint()), (None, false), "a simple change");
        assert!(conf_change(&Step::LeaveJoint).unwrap().leave_joint());
        assert_eq!(conf_change(&Step::TransferLeader(2)), None);
    }
}
