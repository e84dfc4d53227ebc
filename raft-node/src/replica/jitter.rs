//! Randomized election timeouts from a seeded RNG.
//!
//! raft-rs draws its randomized election timeout from `rand::thread_rng()`,
//! which madsim does not intercept on Linux, so a simulation would not replay.
//! Groups are configured with a one-value election range (raft-rs then always
//! draws `election_ticks`), and this module adds the randomness: after every
//! election-timer reset it withholds a seeded-random number of ticks in
//! `[0, election_ticks)` from the group, so the effective timeout is uniform in
//! `[election_ticks, 2 * election_ticks)`, as raft-rs's own default.

use raft::StateRole;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// What raft-rs resets its election timer on: a new term or a new role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Epoch {
    term: u64,
    role: StateRole,
}

#[derive(Debug)]
pub struct ElectionJitter {
    election_ticks: usize,
    seen: Option<Epoch>,
    /// Ticks still to withhold before the group's own timer runs again.
    withheld: usize,
}

impl ElectionJitter {
    pub fn new(election_ticks: usize) -> Self {
        ElectionJitter { election_ticks, seen: None, withheld: 0 }
    }

    /// Called after every step, tick or proposal: notices a timer reset and
    /// draws the extra delay for it.
    pub fn observe(&mut self, term: u64, role: StateRole, rng: &mut ChaCha8Rng) {
        let now = Epoch { term, role };
        if self.seen != Some(now) {
            self.seen = Some(now);
            self.withheld = if role == StateRole::Leader { 0 } else { rng.gen_range(0..self.election_ticks) };
        }
    }

    /// Whether this tick reaches the group. Leaders always tick (heartbeats,
    /// quorum checks); others sit out their withheld ticks first.
    pub fn should_tick(&mut self, role: StateRole) -> bool {
        if role == StateRole::Leader || self.withheld == 0 {
            return true;
        }
        self.withheld -= 1;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn delays(seed: u64) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut jitter = ElectionJitter::new(10);
        (1..=50)
            .map(|term| {
                jitter.observe(term, StateRole::Follower, &mut rng);
                std::iter::from_fn(|| (!jitter.should_tick(StateRole::Follower)).then_some(())).count()
            })
            .collect()
    }

    #[test]
    fn delays_are_seeded_spread_and_bounded() {
        let a = delays(1);
        assert_eq!(a, delays(1), "same seed, same delays");
        assert_ne!(a, delays(2), "different seeds differ");
        assert!(a.iter().all(|&d| d < 10));
        assert!(a.iter().collect::<std::collections::BTreeSet<_>>().len() > 3, "delays spread: {a:?}");
    }

    #[test]
    fn leaders_always_tick_and_an_unchanged_epoch_draws_nothing() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut jitter = ElectionJitter::new(10);
        jitter.observe(1, StateRole::Leader, &mut rng);
        assert!(jitter.should_tick(StateRole::Leader));
        jitter.observe(2, StateRole::Follower, &mut rng);
        let withheld = jitter.withheld;
        jitter.observe(2, StateRole::Follower, &mut rng);
        assert_eq!(jitter.withheld, withheld);
    }
}
