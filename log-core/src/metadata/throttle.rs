//! The move throttle set at run time (Kafka's dynamic broker config
//! `leader.replication.throttled.rate`): bytes per second a broker sends to
//! the replicas moves add, for one broker or as every broker's default. It
//! overrides the `[moves] throttle_bytes_per_sec` of the brokers' files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::topic::BrokerId;

/// Kafka's name for it.
pub const LEADER_THROTTLED_RATE: &str = "leader.replication.throttled.rate";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveThrottles {
    /// Every broker's, unless it has its own (Kafka's default entity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub brokers: BTreeMap<BrokerId, u64>,
}

impl MoveThrottles {
    /// What `broker` is set to, if anything (0: no limit).
    pub fn of(&self, broker: BrokerId) -> Option<u64> {
        self.brokers.get(&broker).copied().or(self.default)
    }

    /// Sets (`Some`) or clears (`None`) the rate of `broker`, or the default.
    pub(super) fn set(&mut self, broker: Option<BrokerId>, bytes_per_sec: Option<u64>) {
        match (broker, bytes_per_sec) {
            (None, rate) => self.default = rate,
            (Some(b), Some(rate)) => drop(self.brokers.insert(b, rate)),
            (Some(b), None) => drop(self.brokers.remove(&b)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self == &MoveThrottles::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_s_own_rate_overrides_the_default() {
        let mut t = MoveThrottles::default();
        assert_eq!(t.of(1), None);
        t.set(None, Some(100));
        t.set(Some(2), Some(0));
        assert_eq!((t.of(1), t.of(2)), (Some(100), Some(0)));
        t.set(Some(2), None);
        assert_eq!(t.of(2), Some(100));
        t.set(None, None);
        assert!(t.is_empty());
    }
}
