//! The fault schedule: one fault at a time, chosen from a seeded RNG, held for a while, then healed,
//! with quiet spells between. Each fault is printed and kept as a window for the report and pictures.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::cluster::Cluster;
use super::disks::Disks;
use super::network::Network;
use super::{progress, Clock, RunError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
    Power,
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kill" => Ok(FaultKind::Kill),
            "pause" => Ok(FaultKind::Pause),
            "partition" => Ok(FaultKind::Partition),
            "power" => Ok(FaultKind::Power),
            other => Err(format!("unknown fault {other:?}: one of kill, pause, partition, power")),
        }
    }
}

/// One fault, on 0-based broker indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, restarted at the heal.
    Kill(Vec<usize>),
    /// SIGSTOP, SIGCONT at the heal.
    Pause(Vec<usize>),
    /// Packets from `.0` to `.1` dropped for each cut.
    Partition { shape: &'static str, cuts: Vec<(usize, usize)> },
    /// SIGKILL, and the disk loses what was not synced; restarted at the heal.
    Power(Vec<usize>),
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Kill(_) => FaultKind::Kill,
            Fault::Pause(_) => FaultKind::Pause,
            Fault::Partition { .. } => FaultKind::Partition,
            Fault::Power(_) => FaultKind::Power,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = |brokers: &[usize]| brokers.iter().map(|b| (b + 1).to_string()).collect::<Vec<_>>().join(",");
        match self {
            Fault::Kill(brokers) => write!(f, "kill {}", ids(brokers)),
            Fault::Pause(brokers) => write!(f, "pause {}", ids(brokers)),
            Fault::Power(brokers) => write!(f, "power loss {}", ids(brokers)),
            Fault::Partition { shape, cuts } => {
                let cuts: Vec<String> = cuts.iter().map(|(a, b)| format!("{}->{}", a + 1, b + 1)).collect();
                write!(f, "partition {shape} (dropping {})", cuts.join(" "))
            }
        }
    }
}

/// When a fault was on, in nanoseconds since the start of the run.
#[derive(Clone, Debug, Serialize)]
pub struct FaultWindow {
    pub fault: String,
    pub kind: FaultKind,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The kinds of the next faults: each kind once in a shuffled round, round after round, so a short run
/// still applies every kind asked for.
pub fn next_kind(rng: &mut ChaCha8Rng, kinds: &[FaultKind], round: &mut Vec<FaultKind>) -> Option<FaultKind> {
    if round.is_empty() {
        round.extend_from_slice(kinds);
        round.shuffle(rng);
    }
    round.pop()
}

/// Picks a fault of `kind` for `brokers` brokers.
pub fn choose(rng: &mut ChaCha8Rng, kind: FaultKind, brokers: usize) -> Fault {
    let mut order: Vec<usize> = (0..brokers).collect();
    order.shuffle(rng);
    let minority = (brokers - 1) / 2;
    match kind {
        // Now and then every broker at once: the whole cluster recovers from its disks.
        FaultKind::Kill if rng.gen_bool(0.2) => Fault::Kill(sorted(order)),
        FaultKind::Kill => Fault::Kill(vec![order[0]]),
        FaultKind::Pause => Fault::Pause(sorted(order[..rng.gen_range(1..=minority.max(1))].to_vec())),
        FaultKind::Partition => partition(rng, &order, minority.max(1)),
        // Half the time every broker: a lost write survives only if no majority lost it.
        FaultKind::Power if rng.gen_bool(0.5) => Fault::Power(sorted(order)),
        FaultKind::Power => Fault::Power(vec![order[0]]),
    }
}

fn partition(rng: &mut ChaCha8Rng, order: &[usize], minority: usize) -> Fault {
    let both_ways = |a: &[usize], b: &[usize]| {
        let mut cuts: Vec<(usize, usize)> =
            a.iter().flat_map(|&x| b.iter().flat_map(move |&y| [(x, y), (y, x)])).collect();
        cuts.sort();
        cuts
    };
    match rng.gen_range(0..4) {
        0 => {
            let (small, large) = order.split_at(minority);
            Fault::Partition { shape: "majority/minority", cuts: both_ways(small, large) }
        }
        1 => Fault::Partition { shape: "one isolated", cuts: both_ways(&order[..1], &order[1..]) },
        // Two brokers cannot talk; a third hears both (Jepsen's bridge).
        2 if order.len() >= 3 => Fault::Partition { shape: "bridge", cuts: both_ways(&order[..1], &order[1..2]) },
        _ => {
            // One broker's packets to the others are lost, theirs to it still arrive.
            let mut cuts: Vec<(usize, usize)> = order[1..].iter().map(|&to| (order[0], to)).collect();
            cuts.sort();
            Fault::Partition { shape: "asymmetric", cuts }
        }
    }
}

fn sorted(mut brokers: Vec<usize>) -> Vec<usize> {
    brokers.sort();
    brokers
}

/// Applies faults until `stop`, each held `hold` and followed by `quiet` (ranges in ms), healing the
/// last one before it returns. The windows go to `windows` as each heals.
pub struct Nemesis {
    pub cluster: Arc<Cluster>,
    pub network: Option<Arc<Network>>,
    pub disks: Option<Arc<Disks>>,
    pub kinds: Vec<FaultKind>,
    pub rng: ChaCha8Rng,
    pub windows: Arc<Mutex<Vec<FaultWindow>>>,
    pub clock: Clock,
}

impl Nemesis {
    pub async fn run(
        mut self,
        stop: Arc<AtomicBool>,
        hold_ms: (u64, u64),
        quiet_ms: (u64, u64),
    ) -> Result<(), RunError> {
        if self.kinds.is_empty() {
            return Ok(());
        }
        let brokers = self.cluster.size();
        let mut round = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            sleep_unless(&stop, Duration::from_millis(self.rng.gen_range(quiet_ms.0..=quiet_ms.1))).await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let Some(kind) = next_kind(&mut self.rng, &self.kinds, &mut round) else { break };
            let fault = choose(&mut self.rng, kind, brokers);
            let start_ns = (self.clock)();
            progress(start_ns, &format!("fault: {fault}"));
            self.apply(&fault)?;
            sleep_unless(&stop, Duration::from_millis(self.rng.gen_range(hold_ms.0..=hold_ms.1))).await;
            self.heal(&fault)?;
            let end_ns = (self.clock)();
            progress(end_ns, &format!("heal: {fault}"));
            let window = FaultWindow { fault: fault.to_string(), kind: fault.kind(), start_ns, end_ns };
            self.windows.lock().unwrap_or_else(PoisonError::into_inner).push(window);
        }
        Ok(())
    }

    fn apply(&self, fault: &Fault) -> Result<(), RunError> {
        match fault {
            Fault::Kill(brokers) => brokers.iter().try_for_each(|&b| self.cluster.kill(b)),
            Fault::Pause(brokers) => brokers.iter().try_for_each(|&b| self.cluster.pause(b)),
            Fault::Partition { cuts, .. } => {
                let network =
                    self.network.as_ref().ok_or_else(|| RunError::Harness("partition without a network".into()))?;
                cuts.iter().try_for_each(|&(from, to)| network.cut(from, to))
            }
            Fault::Power(brokers) => {
                let disks = self.disks.as_ref().ok_or_else(|| RunError::Harness("power loss without disks".into()))?;
                brokers.iter().try_for_each(|&b| self.cluster.kill(b))?;
                brokers.iter().try_for_each(|&b| disks.lose_power(b))
            }
        }
    }

    fn heal(&self, fault: &Fault) -> Result<(), RunError> {
        match fault {
            Fault::Kill(brokers) | Fault::Power(brokers) => brokers.iter().try_for_each(|&b| self.cluster.start(b)),
            Fault::Pause(brokers) => brokers.iter().try_for_each(|&b| self.cluster.resume(b)),
            Fault::Partition { .. } => self.network.as_ref().map_or(Ok(()), |n| n.heal()),
        }
    }
}

/// Sleeps `duration`, or less once `stop` is set (checked every 100 ms).
pub async fn sleep_unless(stop: &AtomicBool, duration: Duration) {
    let deadline = tokio::time::Instant::now() + duration;
    while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100).min(deadline - tokio::time::Instant::now())).await;
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn faults_touch_only_existing_brokers_and_partitions_cut_real_links() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let kinds = [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition, FaultKind::Power];
        let mut shapes = std::collections::BTreeSet::new();
        let mut round = Vec::new();
        for i in 0..500 {
            let kind = next_kind(&mut rng, &kinds, &mut round).expect("a kind");
            if i % kinds.len() == kinds.len() - 1 {
                assert!(round.is_empty(), "every {} faults, each kind once", kinds.len());
            }
            let fault = choose(&mut rng, kind, 3);
            assert_eq!(fault.kind(), kind);
            match fault {
                Fault::Kill(b) => assert!(b.len() == 1 || b == [0, 1, 2], "{b:?}"),
                Fault::Pause(b) => assert_eq!(b.len(), 1, "a pause leaves a majority running"),
                Fault::Power(b) => assert!(b.len() == 1 || b == [0, 1, 2], "{b:?}"),
                Fault::Partition { shape, cuts } => {
                    shapes.insert(shape);
                    assert!(!cuts.is_empty() && cuts.iter().all(|&(a, b)| a != b && a < 3 && b < 3), "{cuts:?}");
                }
            }
        }
        assert_eq!(shapes.len(), 4, "every partition shape is chosen: {shapes:?}");
    }
}
