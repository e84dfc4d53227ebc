//! Replica assignment for a new topic, rack-unaware like Kafka's, but with a
//! layout that balances replicas exactly, not only leaders.
//!
//! Number the `P * RF` replica slots column by column (all first replicas,
//! then all second replicas, ...): slot `j * P + p` is replica `j` of
//! partition `p`. Slot `s` goes to broker `(start + s + s / L) mod B`, where
//! `L = lcm(P, B)`:
//! - consecutive slots take consecutive brokers, and every full run of `L`
//!   slots covers each broker `L / B` times, so each broker holds
//!   `floor(P * RF / B)` or `ceil(P * RF / B)` replicas;
//! - the first replicas are slots `0..P`, consecutive brokers, so leaders are
//!   spread the same way;
//! - replicas `j` and `k > j` of a partition are `(k - j) * P + (k / m - j / m)`
//!   brokers apart, with `m = L / P = B / gcd(P, B)`. `(k - j) * P mod B` is a
//!   multiple of `g = gcd(P, B)`, zero only when `m` divides `k - j`; the
//!   second term is below `g` because `RF <= B = m * g`, and it is nonzero
//!   exactly when `m` divides `k - j`. So the sum is never a multiple of `B`:
//!   the replicas of a partition are distinct.

use super::topic::{BrokerId, PartitionAssignment};

/// Assigns `partitions` partitions of `replication_factor` replicas over
/// `brokers` (sorted, distinct), starting at `brokers[start % B]`.
pub(super) fn assign(
    brokers: &[BrokerId],
    partitions: usize,
    replication_factor: usize,
    start: usize,
) -> Vec<PartitionAssignment> {
    debug_assert!(brokers.windows(2).all(|w| w[0] < w[1]), "brokers must be sorted and distinct");
    debug_assert!(partitions >= 1 && (1..=brokers.len()).contains(&replication_factor));
    // u64: `j * P` may exceed a 32-bit usize.
    let (b, p_count) = (brokers.len() as u64, partitions as u64);
    let m = b / gcd(p_count, b);
    (0..p_count)
        .map(|p| {
            let replicas: Vec<BrokerId> = (0..replication_factor as u64)
                .map(|j| brokers[((start as u64 + p + j * p_count + j / m) % b) as usize])
                .collect();
            debug_assert!(distinct(&replicas), "partition {p} got {replicas:?}");
            PartitionAssignment::new(replicas)
        })
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn distinct(replicas: &[BrokerId]) -> bool {
    replicas.iter().enumerate().all(|(i, r)| !replicas[..i].contains(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(brokers: &[BrokerId], partitions: usize, rf: usize, start: usize) -> Vec<Vec<BrokerId>> {
        assign(brokers, partitions, rf, start).into_iter().map(|a| a.replicas).collect()
    }

    #[test]
    fn full_rounds_rotate_like_kafka() {
        assert_eq!(layout(&[1, 2, 3], 3, 3, 0), [[1, 2, 3], [2, 3, 1], [3, 1, 2]]);
        assert_eq!(layout(&[1, 2, 3], 3, 2, 1), [[2, 3], [3, 1], [1, 2]]);
    }

    #[test]
    fn partial_rounds_still_balance_replicas() {
        // Kafka's layout would give broker 1 two replicas and broker 3 none here.
        assert_eq!(layout(&[0, 1, 2, 3], 2, 2, 0), [[0, 2], [1, 3]]);
        assert_eq!(layout(&[0, 1, 2, 3], 2, 3, 0), [[0, 2, 1], [1, 3, 2]]);
    }

    #[test]
    fn wrapping_columns_shift_to_stay_distinct() {
        // P = B: every column would land on the leader without the shift.
        assert_eq!(layout(&[10, 20], 2, 2, 0), [[10, 20], [20, 10]]);
        assert_eq!(layout(&[10, 20, 30, 40], 4, 3, 3), [[40, 10, 20], [10, 20, 30], [20, 30, 40], [30, 40, 10]]);
    }

    #[test]
    fn single_broker() {
        assert_eq!(layout(&[7], 3, 1, 5), [[7], [7], [7]]);
    }

    #[test]
    fn balanced_and_distinct_for_all_small_shapes() {
        for b in 1..=8usize {
            let brokers: Vec<BrokerId> = (0..b as BrokerId).collect();
            for p in 1..=20 {
                for rf in 1..=b {
                    for start in 0..b {
                        let l = layout(&brokers, p, rf, start);
                        for broker in &brokers {
                            let leads = l.iter().filter(|r| r[0] == *broker).count();
                            let holds = l.iter().filter(|r| r.contains(broker)).count();
                            assert!(leads == p / b || leads == p.div_ceil(b));
                            assert!(holds == p * rf / b || holds == (p * rf).div_ceil(b));
                        }
                        assert!(l.iter().all(|r| r.len() == rf && distinct(r)));
                        assert_eq!(l[0][0], brokers[start]);
                    }
                }
            }
        }
    }
}
