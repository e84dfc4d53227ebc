//! Reconnect delays: exponential, capped, with seeded jitter so that brokers
//! restarting together do not reconnect in lockstep, and a simulation replays.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    /// Consecutive failures since the last success.
    failures: u32,
    rng: ChaCha8Rng,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration, seed: u64) -> Self {
        assert!(!base.is_zero() && base <= max, "validated by TransportConfig");
        Backoff { base, max, failures: 0, rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Records a failure and returns how long to wait before the next attempt:
    /// uniform in `[d/2, d]` for `d = min(max, base * 2^(failures-1))`.
    pub fn failed(&mut self) -> Duration {
        let ceiling = self.base.saturating_mul(1 << self.failures.min(31)).min(self.max);
        self.failures = self.failures.saturating_add(1);
        let delay = self.rng.gen_range(ceiling / 2..=ceiling);
        debug_assert!(delay <= self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_jittered_and_resets() {
        let (base, max) = (Duration::from_millis(10), Duration::from_millis(100));
        let mut backoff = Backoff::new(base, max, 7);
        let ceilings = [10, 20, 40, 80, 100, 100].map(Duration::from_millis);
        for ceiling in ceilings {
            let delay = backoff.failed();
            assert!(ceiling / 2 <= delay && delay <= ceiling, "{delay:?} for {ceiling:?}");
        }
        backoff.succeeded();
        assert!(backoff.failed() <= base);
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let delays = |seed| {
            let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_secs(1), seed);
            (0..20).map(|_| backoff.failed()).collect::<Vec<_>>()
        };
        assert_eq!(delays(3), delays(3));
        assert_ne!(delays(3), delays(4));
    }
}
