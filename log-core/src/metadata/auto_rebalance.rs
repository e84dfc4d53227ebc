//! The automatic rebalance (`[moves] auto_rebalance`): the moves the
//! metadata group's leader proposes by itself, from the committed metadata.
//! They are `keel cluster rebalance`'s plan: `plan::rebalance_moves` over
//! every registered broker not draining (a draining broker's replicas move
//! off; an empty one stays empty) and every partition, `__consumer_offsets`
//! included (its replicas copy data and lead groups as any topic's do).

use super::plan::{self, Placement};
use super::{ClusterMetadata, Command};

impl ClusterMetadata {
    /// Every partition's replicas, by topic name, then partition number.
    pub fn placements(&self) -> Vec<Placement> {
        self.topics()
            .flat_map(|(name, topic)| {
                topic.partitions().iter().enumerate().map(move |(i, p)| Placement {
                    topic: name.to_owned(),
                    partition: i as i32,
                    replicas: p.replicas().to_vec(),
                })
            })
            .collect()
    }

    /// What an automatic rebalance proposes now. Nothing until the last plan
    /// is carried out to the end: no move in progress, and every replica a
    /// move took off a broker deleted there (a move onto a broker still
    /// holding its old replica is refused). A plan made over a moving
    /// cluster would fight the moves under way; one plan at a time, each
    /// made from settled placements, never thrashes. Otherwise the moves
    /// that spread replicas and preferred leaders evenly; none once even.
    pub fn auto_rebalance(&self) -> Vec<Command> {
        let mut partitions = self.topics.values().flat_map(|t| &t.partitions);
        if partitions.any(|p| p.reassignment.is_some() || !p.leaving.is_empty()) {
            return Vec::new();
        }
        let brokers: Vec<_> = self.brokers.keys().copied().collect();
        plan::rebalance_moves(&brokers, &self.draining, &self.placements())
            .into_iter()
            .map(|m| Command::ReassignPartition { topic: m.topic, partition: m.partition, replicas: Some(m.replicas) })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::{BrokerId, OFFSETS_TOPIC};

    fn register(id: BrokerId) -> Command {
        Command::RegisterBroker { id, host: format!("b{id}"), port: 9092, rack: None, raft: None }
    }

    /// Brokers 1..=3 with `orders` (6 partitions) and `__consumer_offsets`
    /// (3 partitions), 3 replicas each: evenly spread at creation.
    fn cluster() -> ClusterMetadata {
        let mut m = ClusterMetadata::default();
        for id in 1..=3 {
            m.apply(register(id)).unwrap();
        }
        let keep = [("retention.ms", "-1"), ("retention.bytes", "-1")];
        let topics =
            [("orders", 1, 6, BTreeMap::new()), (OFFSETS_TOPIC, 2, 3, keep.map(|(k, v)| (k.into(), v.into())).into())];
        for (name, id, partitions, configs) in topics {
            let mut uuid = [0; 16];
            uuid[0] = id;
            m.apply(Command::CreateTopic { name: name.into(), id: uuid, partitions, replication_factor: 3, configs })
                .unwrap();
        }
        m
    }

    fn loads(m: &ClusterMetadata) -> BTreeMap<BrokerId, usize> {
        let mut loads: BTreeMap<BrokerId, usize> = m.brokers().map(|(id, _)| (id, 0)).collect();
        for p in m.placements() {
            p.replicas.iter().for_each(|b| *loads.entry(*b).or_default() += 1);
        }
        loads
    }

    /// Completes every move in progress and reports the old replicas deleted,
    /// as the partition leaders and the brokers would.
    fn carry_out(m: &mut ClusterMetadata) {
        let moving: Vec<(String, i32, Vec<BrokerId>)> = m
            .reassignments()
            .filter_map(|(t, p, a)| Some((t.to_owned(), p, a.reassignment()?.target.clone())))
            .collect();
        for (topic, partition, target) in moving {
            m.apply(Command::CompleteReassignment { topic: topic.clone(), partition, target }).unwrap();
            for broker in m.topic(&topic).unwrap().partition(partition).unwrap().leaving().to_vec() {
                m.apply(Command::ReplicaDeleted { topic: topic.clone(), partition, broker }).unwrap();
            }
        }
    }

    #[test]
    fn an_even_cluster_proposes_nothing() {
        let m = cluster();
        assert_eq!(loads(&m), BTreeMap::from([(1, 9), (2, 9), (3, 9)]));
        assert_eq!(m.auto_rebalance(), []);
    }

    #[test]
    fn a_new_empty_broker_gets_its_share_internal_topics_included() {
        let mut m = cluster();
        m.apply(register(4)).unwrap();
        let commands = m.auto_rebalance();
        let moved = |topic: &str| {
            commands.iter().any(|c| matches!(c, Command::ReassignPartition { topic: t, replicas: Some(r), .. } if t == topic && r.contains(&4)))
        };
        assert!(moved("orders") && moved(OFFSETS_TOPIC), "{commands:?}");
        for command in commands {
            m.apply(command).unwrap();
        }
        carry_out(&mut m);
        let loads = loads(&m);
        assert_eq!(loads.values().sum::<usize>(), 27);
        assert!(loads.values().all(|&n| (6..=7).contains(&n)), "even over 4 brokers: {loads:?}");
        assert_eq!(m.auto_rebalance(), [], "once even, it stays");
    }

    #[test]
    fn a_draining_broker_is_emptied_and_never_refilled() {
        let mut m = cluster();
        m.apply(register(4)).unwrap();
        for command in m.auto_rebalance() {
            m.apply(command).unwrap();
        }
        carry_out(&mut m);
        assert!(loads(&m)[&4] > 0, "broker 4 took its share");

        m.apply(Command::SetDraining { broker: 4, draining: true }).unwrap();
        let commands = m.auto_rebalance();
        let onto_4 = |c: &Command| matches!(c, Command::ReassignPartition { replicas: Some(r), .. } if r.contains(&4));
        assert!(!commands.is_empty() && !commands.iter().any(onto_4), "{commands:?}");
        for command in commands {
            m.apply(command).unwrap();
        }
        carry_out(&mut m);
        assert_eq!(loads(&m)[&4], 0, "broker 4 emptied");
        assert_eq!(m.auto_rebalance(), [], "the next look leaves it empty");
        m.apply(Command::UnregisterBroker { id: 4 }).unwrap();
        assert!(m.draining().is_empty(), "the mark goes with the broker");
    }

    #[test]
    fn clearing_the_mark_makes_the_broker_a_target_again() {
        let mut m = cluster();
        m.apply(register(4)).unwrap();
        m.apply(Command::SetDraining { broker: 4, draining: true }).unwrap();
        assert_eq!(m.auto_rebalance(), [], "an empty draining broker is not filled");
        m.apply(Command::SetDraining { broker: 4, draining: false }).unwrap();
        assert!(!m.auto_rebalance().is_empty());
    }

    #[test]
    fn nothing_while_a_move_is_in_progress_or_an_old_replica_remains() {
        let mut m = cluster();
        m.apply(register(4)).unwrap();
        let mut commands = m.auto_rebalance().into_iter();
        m.apply(commands.next().unwrap()).unwrap();
        assert_eq!(m.auto_rebalance(), [], "one plan at a time");
        let (topic, partition, target) = {
            let (t, p, a) = m.reassignments().next().unwrap();
            (t.to_owned(), p, a.reassignment().unwrap().target.clone())
        };
        m.apply(Command::CompleteReassignment { topic: topic.clone(), partition, target }).unwrap();
        assert_eq!(m.auto_rebalance(), [], "the old replica is not deleted yet");
        let broker = m.topic(&topic).unwrap().partition(partition).unwrap().leaving()[0];
        m.apply(Command::ReplicaDeleted { topic, partition, broker }).unwrap();
        assert!(!m.auto_rebalance().is_empty(), "settled again, the rest of the spread is planned anew");
    }
}
