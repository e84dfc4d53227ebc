//! Planning moves of partition replicas: an even spread over the brokers
//! (rebalance), or every replica off one broker (decommission). Pure: the
//! plans are computed from the replica lists alone, and moving as little as
//! they can, since every moved replica copies the partition's log. A
//! draining broker is never a target: left out of `brokers`, its replicas
//! are moved off and none is moved on.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::topic::BrokerId;

/// One partition's replicas, preferred leader first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<BrokerId>,
}

/// The partitions whose replicas `planned` (lists in `current`'s order)
/// changes, each with its planned replicas: the moves to submit.
pub fn changes(current: &[Placement], planned: Vec<Vec<BrokerId>>) -> Vec<Placement> {
    current
        .iter()
        .zip(planned)
        .filter(|(now, next)| &now.replicas != next)
        .map(|(now, next)| Placement { topic: now.topic.clone(), partition: now.partition, replicas: next })
        .collect()
}

/// The brokers of `brokers` that may take replicas: those not `draining`.
pub fn targets(brokers: impl IntoIterator<Item = BrokerId>, draining: &BTreeSet<BrokerId>) -> Vec<BrokerId> {
    brokers.into_iter().filter(|b| !draining.contains(b)).collect()
}

/// The moves of `rebalance` over the `brokers` not `draining`, planned over
/// every partition in `current` at once (a spread per topic would still pile
/// replicas up).
pub fn rebalance_moves(brokers: &[BrokerId], draining: &BTreeSet<BrokerId>, current: &[Placement]) -> Vec<Placement> {
    let lists: Vec<Vec<BrokerId>> = current.iter().map(|p| p.replicas.clone()).collect();
    changes(current, rebalance(&targets(brokers.iter().copied(), draining), &lists))
}

/// Replicas per broker of `brokers` (every one listed, even with none; the
/// others' replicas uncounted: they are never a target).
fn loads(brokers: &[BrokerId], partitions: &[Vec<BrokerId>]) -> BTreeMap<BrokerId, usize> {
    let mut loads: BTreeMap<BrokerId, usize> = brokers.iter().map(|&b| (b, 0)).collect();
    for replica in partitions.iter().flatten() {
        if let Some(n) = loads.get_mut(replica) {
            *n += 1;
        }
    }
    loads
}

/// The replica lists after spreading replicas evenly over `brokers` (each
/// holds the floor or the ceiling of the average, where the replication
/// factors allow it) and then preferred leaders (the first replica): each
/// move takes a replica from a most loaded broker to a least loaded one that
/// lacks that partition. Replication factors are kept. Replicas on brokers
/// not in `brokers` are moved onto them first.
pub fn rebalance(brokers: &[BrokerId], partitions: &[Vec<BrokerId>]) -> Vec<Vec<BrokerId>> {
    let mut plan = partitions.to_vec();
    if brokers.is_empty() {
        return plan;
    }
    let gone: BTreeSet<BrokerId> = partitions.iter().flatten().copied().filter(|b| !brokers.contains(b)).collect();
    for gone in gone {
        plan = decommission(brokers, &plan, gone).unwrap_or(plan);
    }
    let mut loads = loads(brokers, &plan);
    loop {
        let mut by_load: Vec<(usize, BrokerId)> = loads.iter().map(|(&b, &n)| (n, b)).collect();
        by_load.sort_by_key(|&(n, b)| (std::cmp::Reverse(n), b));
        let moved = by_load.iter().find_map(|&(high, from)| {
            by_load.iter().rev().filter(|&&(low, _)| low + 2 <= high).find_map(|&(_, to)| {
                let p = plan.iter().position(|r| r.contains(&from) && !r.contains(&to))?;
                Some((p, from, to))
            })
        });
        let Some((p, from, to)) = moved else { break };
        for r in plan[p].iter_mut().filter(|r| **r == from) {
            *r = to;
        }
        *loads.entry(from).or_default() -= 1;
        *loads.entry(to).or_default() += 1;
    }
    balance_leaders(&mut plan);
    plan
}

/// Rotates each partition's least-leading replica to the front, keeping the
/// current preferred leader where it is among the least leading.
fn balance_leaders(plan: &mut [Vec<BrokerId>]) {
    let mut leads: BTreeMap<BrokerId, usize> = BTreeMap::new();
    for replicas in plan.iter_mut() {
        let count = |b: &BrokerId| leads.get(b).copied().unwrap_or(0);
        let Some(least) = replicas.iter().map(count).min() else { continue };
        let pick = match replicas.iter().position(|b| count(b) == least) {
            Some(_) if count(&replicas[0]) == least => 0,
            Some(i) => i,
            None => continue,
        };
        replicas.swap(0, pick);
        *leads.entry(replicas[0]).or_default() += 1;
    }
}

/// The replica lists with every replica on `broker` replaced by the least
/// loaded other broker of `brokers` (only those) the partition lacks (same position, so
/// a preferred leader is replaced by its successor). `Err` names a partition
/// (by index) that has no such broker.
pub fn decommission(
    brokers: &[BrokerId],
    partitions: &[Vec<BrokerId>],
    broker: BrokerId,
) -> Result<Vec<Vec<BrokerId>>, usize> {
    let mut loads = loads(brokers, partitions);
    loads.remove(&broker);
    let mut plan = partitions.to_vec();
    for (p, replicas) in plan.iter_mut().enumerate() {
        let Some(slot) = replicas.iter().position(|&b| b == broker) else { continue };
        let candidates = loads.iter().filter(|(b, _)| !replicas.contains(b));
        let (&to, _) = candidates.min_by_key(|&(&b, &n)| (n, b)).ok_or(p)?;
        replicas[slot] = to;
        *loads.entry(to).or_default() += 1;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(brokers: &[BrokerId], plan: &[Vec<BrokerId>]) -> (usize, usize) {
        let loads = loads(brokers, plan);
        (*loads.values().min().unwrap(), *loads.values().max().unwrap())
    }

    #[test]
    fn a_new_broker_takes_its_share_and_no_more_moves_than_needed() {
        let before = vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2], vec![1, 2, 3]];
        let plan = rebalance(&[1, 2, 3, 4], &before);
        assert_eq!(spread(&[1, 2, 3, 4], &plan), (3, 3));
        let moved: usize = before.iter().zip(&plan).map(|(a, b)| b.iter().filter(|r| !a.contains(r)).count()).sum();
        assert_eq!(moved, 3, "exactly broker 4's share moves");
        assert_eq!(rebalance(&[1, 2, 3, 4], &plan), plan, "a balanced plan stays");
    }

    #[test]
    fn rebalanced_plans_are_distinct_balanced_and_keep_factors() {
        for brokers in 1..=6 {
            let ids: Vec<BrokerId> = (1..=brokers).collect();
            for partitions in 1..=8usize {
                for rf in 1..=brokers as usize {
                    // Everything piled on the first brokers.
                    let before: Vec<Vec<BrokerId>> = (0..partitions)
                        .map(|p| (1..=rf as BrokerId).map(|r| (r + p as BrokerId % 2 - 1) % brokers + 1).collect())
                        .collect();
                    let plan = rebalance(&ids, &before);
                    for (a, b) in before.iter().zip(&plan) {
                        assert_eq!(a.len(), b.len());
                        assert!(b.iter().enumerate().all(|(i, r)| !b[..i].contains(r) && ids.contains(r)), "{b:?}");
                    }
                    let (min, max) = spread(&ids, &plan);
                    assert!(max - min <= 1, "{brokers} brokers, {partitions}x{rf}: {plan:?}");
                    // The automatic rebalance proposes whatever differs: a plan must be its own plan.
                    assert_eq!(rebalance(&ids, &plan), plan, "{brokers} brokers, {partitions}x{rf}: no thrash");
                    let mut leads = BTreeMap::new();
                    plan.iter().for_each(|r| *leads.entry(r[0]).or_insert(0) += 1);
                    assert!(leads.values().all(|&n| n <= partitions.div_ceil(brokers as usize) + 1), "{plan:?}");
                }
            }
        }
    }

    #[test]
    fn only_changed_partitions_are_moves() {
        let at = |partition: i32, replicas: &[BrokerId]| Placement {
            topic: "t".into(),
            partition,
            replicas: replicas.to_vec(),
        };
        let current = [at(0, &[1, 2]), at(1, &[2, 3]), at(2, &[3, 1])];
        let planned = vec![vec![1, 2], vec![3, 2], vec![3, 4]];
        assert_eq!(changes(&current, planned), [at(1, &[3, 2]), at(2, &[3, 4])]);
        let even = [at(0, &[1, 2]), at(1, &[2, 3]), at(2, &[3, 1])];
        let none = BTreeSet::new();
        assert_eq!(rebalance_moves(&[1, 2, 3], &none, &even), []);
        let moves = rebalance_moves(&[1, 2, 3, 4], &none, &even);
        assert!(moves.iter().any(|m| m.replicas.contains(&4)), "the new broker takes a replica: {moves:?}");
    }

    #[test]
    fn a_draining_broker_is_emptied_and_never_filled() {
        let at = |partition: i32, replicas: &[BrokerId]| Placement {
            topic: "t".into(),
            partition,
            replicas: replicas.to_vec(),
        };
        let current: Vec<Placement> = (0..8).map(|p| at(p, &[p % 4 + 1, (p + 1) % 4 + 1])).collect();
        let draining = BTreeSet::from([4]);
        let moves = rebalance_moves(&[1, 2, 3, 4], &draining, &current);
        let mut after: Vec<Vec<BrokerId>> = current.iter().map(|p| p.replicas.clone()).collect();
        for m in &moves {
            after[m.partition as usize] = m.replicas.clone();
        }
        assert!(after.iter().all(|r| !r.contains(&4) && r.len() == 2), "{after:?}");
        assert_eq!(spread(&[1, 2, 3], &after), (5, 6), "even over the others");
        let settled: Vec<Placement> = after.iter().enumerate().map(|(p, r)| at(p as i32, r)).collect();
        assert_eq!(rebalance_moves(&[1, 2, 3, 4], &draining, &settled), [], "emptied, it stays empty");

        // Another draining broker is no place for a decommissioned one's replicas.
        let before = [vec![3, 1], vec![4, 5], vec![2, 1], vec![2, 1]];
        let plan = decommission(&[1, 2], &before, 3).unwrap();
        assert_eq!(plan[0], [2, 1], "not onto the least loaded broker 4, unlisted");
    }

    #[test]
    fn decommission_moves_every_replica_off_the_broker() {
        let before = vec![vec![1, 2, 3], vec![2, 3, 4], vec![3, 4, 1], vec![4, 1, 2]];
        let plan = decommission(&[1, 2, 3, 4, 5], &before, 4).unwrap();
        assert!(plan.iter().all(|r| !r.contains(&4) && r.len() == 3));
        assert_eq!(plan[0], before[0], "partitions without it stay");
        assert_eq!(plan[3][1..], [1, 2], "the replaced replica keeps its place");
        assert_eq!(decommission(&[1, 2, 3], &before[..1], 3), Err(0), "no broker left to take it");
    }
}
