//! Who belongs to the metadata group: every broker in the cluster, as a voter
//! or a learner. The group's leader computes it from the committed metadata
//! and the founders (the `[[cluster]]` brokers, voters from the start) and
//! moves the group there one raft configuration change at a time.

use std::collections::BTreeSet;

use super::topic::BrokerId;
use super::ClusterMetadata;

/// Voters once the cluster has this many brokers; below, `SMALL_VOTERS`.
pub const MAX_METADATA_VOTERS: usize = 5;
/// Three voters survive one failure; five, two.
const SMALL_VOTERS: usize = 3;

/// The metadata group's wanted configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataMembers {
    pub voters: BTreeSet<BrokerId>,
    pub learners: BTreeSet<BrokerId>,
}

impl ClusterMetadata {
    /// The members are the founders not removed (voters since the cluster
    /// formed, registered or not yet) and every registered broker. The voters
    /// are 3 of them (5 once there are 5 or more, all when fewer than 3):
    /// founders first, then the lowest ids; the rest are learners. So a voter
    /// that leaves is replaced by a learner, and a broker that joins becomes
    /// a learner that receives the metadata.
    pub fn metadata_members(&self, founders: &[BrokerId]) -> MetadataMembers {
        let founders: BTreeSet<BrokerId> = founders.iter().copied().filter(|id| !self.is_removed(*id)).collect();
        let others = self.brokers().map(|(id, _)| id).filter(|id| !founders.contains(id));
        let members: Vec<BrokerId> = founders.iter().copied().chain(others).collect();
        let count = match members.len() {
            n if n >= MAX_METADATA_VOTERS => MAX_METADATA_VOTERS,
            n => n.min(SMALL_VOTERS),
        };
        MetadataMembers {
            voters: members[..count].iter().copied().collect(),
            learners: members[count..].iter().copied().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Command;

    fn register(m: &mut ClusterMetadata, id: BrokerId) {
        m.apply(Command::RegisterBroker { id, host: "h".into(), port: 1, rack: None, raft: Some(format!("h:{id}")) })
            .unwrap();
    }

    fn members(voters: &[BrokerId], learners: &[BrokerId]) -> MetadataMembers {
        MetadataMembers { voters: voters.iter().copied().collect(), learners: learners.iter().copied().collect() }
    }

    #[test]
    fn founders_vote_from_the_start_and_joiners_learn() {
        let mut m = ClusterMetadata::default();
        assert_eq!(m.metadata_members(&[1, 2, 3]), members(&[1, 2, 3], &[]), "before anyone registered");
        register(&mut m, 2);
        assert_eq!(m.metadata_members(&[1, 2, 3]), members(&[1, 2, 3], &[]));
        for id in [1, 3, 7] {
            register(&mut m, id);
        }
        assert_eq!(m.metadata_members(&[1, 2, 3]), members(&[1, 2, 3], &[7]), "a joiner is a learner");
        register(&mut m, 5);
        assert_eq!(m.metadata_members(&[1, 2, 3]), members(&[1, 2, 3, 5, 7], &[]), "five brokers, five voters");
        register(&mut m, 4);
        assert_eq!(m.metadata_members(&[1, 2, 3]), members(&[1, 2, 3, 4, 5], &[7]), "then the lowest ids");
        assert_eq!(ClusterMetadata::default().metadata_members(&[1]), members(&[1], &[]), "keel dev with one broker");
    }

    #[test]
    fn a_voter_that_leaves_is_replaced_by_a_learner() {
        let mut m = ClusterMetadata::default();
        for id in [1, 2, 3, 4] {
            register(&mut m, id);
        }
        assert_eq!(m.metadata_members(&[1, 2, 3]), members(&[1, 2, 3], &[4]));
        m.apply(Command::UnregisterBroker { id: 2 }).unwrap();
        assert_eq!(m.metadata_members(&[1, 2, 3]), members(&[1, 3, 4], &[]), "founder 2 is gone for good");
        m.apply(Command::UnregisterBroker { id: 4 }).unwrap();
        assert_eq!(m.metadata_members(&[1, 2, 3]), members(&[1, 3], &[]), "no replacement left");
    }
}
