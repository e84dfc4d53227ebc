//! What the nemesis may do in one run (drawn from the seed: swarm testing, or
//! a schedule), and the broker-to-broker network it does it to.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use raft_node::transport::{LinkDecision, LinkFaults};

use crate::config::{FaultKind, Faults, SimConfig};
use crate::rng::Rng;
pub use crate::schedule::Noise;
use crate::schedule::Schedule;

/// What the nemesis does in a run: episodes drawn from the seed as they come
/// (swarm testing), or exactly the episodes of a schedule.
#[derive(Clone, Debug)]
pub enum Plan {
    Swarm(Swarm),
    Scheduled(Schedule),
}

/// Which faults are on in a seeded run, and how hard they hit.
#[derive(Clone, Debug)]
pub struct Swarm {
    pub kinds: Vec<FaultKind>,
    /// Quiet time between two nemesis episodes, in ms.
    pub gap_ms: (u64, u64),
    /// How long an episode's fault lasts, in ms.
    pub hold_ms: (u64, u64),
    /// Link noise while a noise episode is on: per-message probabilities.
    pub loss: f64,
    pub duplicate: f64,
    pub delay: f64,
    pub delay_max_ms: u64,
    /// Per-read bit-flip probability on the corrupted broker.
    pub corrupt: f64,
}

impl Plan {
    pub fn draw(config: &SimConfig) -> Plan {
        match &config.faults {
            Faults::Scheduled(schedule) => Plan::Scheduled(schedule.clone()),
            _ => Plan::Swarm(Swarm::draw(config)),
        }
    }

    pub fn has(&self, kind: FaultKind) -> bool {
        match self {
            Plan::Swarm(swarm) => swarm.has(kind),
            Plan::Scheduled(schedule) => schedule.kinds().contains(&kind),
        }
    }

    /// One line for the trace and the summary.
    pub fn describe(&self) -> String {
        match self {
            Plan::Swarm(swarm) => swarm.describe(),
            Plan::Scheduled(schedule) => format!("scheduled, {} episodes", schedule.episodes.len()),
        }
    }
}

impl Swarm {
    fn draw(config: &SimConfig) -> Swarm {
        let mut rng = Rng::new(config.seed, 0x5741_524d);
        let kinds = match &config.faults {
            Faults::All { .. } => {
                let eligible = config.faults.kinds();
                loop {
                    let kinds: Vec<_> = eligible.iter().copied().filter(|_| rng.chance(0.5)).collect();
                    if !kinds.is_empty() || eligible.is_empty() {
                        break kinds;
                    }
                }
            }
            other => other.kinds(),
        };
        let gap_low = rng.range(200, 3_000);
        let hold_low = rng.range(500, 4_000);
        Swarm {
            kinds,
            gap_ms: (gap_low, gap_low + rng.range(500, 5_000)),
            hold_ms: (hold_low, hold_low + rng.range(1_000, 10_000)),
            loss: rng.between(0.01, 0.3),
            duplicate: rng.between(0.01, 0.2),
            delay: rng.between(0.02, 0.4),
            delay_max_ms: rng.range(20, 1_000),
            corrupt: rng.between(0.001, 0.05),
        }
    }

    pub fn has(&self, kind: FaultKind) -> bool {
        self.kinds.contains(&kind)
    }

    fn describe(&self) -> String {
        if self.kinds.is_empty() {
            return "none".into();
        }
        let mut text = String::new();
        for kind in &self.kinds {
            let _ = match kind {
                FaultKind::Loss => write!(text, "loss={:.1}% ", self.loss * 100.0),
                FaultKind::Duplicate => write!(text, "duplicate={:.1}% ", self.duplicate * 100.0),
                FaultKind::Delay => write!(text, "delay={:.1}%<{}ms ", self.delay * 100.0, self.delay_max_ms),
                FaultKind::Corrupt => write!(text, "corrupt={:.2}% ", self.corrupt * 100.0),
                other => write!(text, "{} ", other.name()),
            };
        }
        let _ = write!(
            text,
            "(episodes: gap {}-{}ms, hold {}-{}ms)",
            self.gap_ms.0, self.gap_ms.1, self.hold_ms.0, self.hold_ms.1
        );
        text
    }
}

/// The broker-to-broker links as the nemesis has left them. Every broker's
/// transport consults it for each outbound payload (in the simulation's one
/// deterministic order, so the draws replay).
pub struct Network {
    state: Mutex<NetState>,
}

struct NetState {
    /// Links (from, to) that deliver nothing.
    cut: BTreeSet<(u64, u64)>,
    noise: Noise,
    rng: Rng,
    counts: NetCounts,
}

/// What the network did to messages, for the summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetCounts {
    pub delivered: u64,
    pub cut: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub delayed: u64,
}

impl Network {
    pub fn new(seed: u64) -> Network {
        Network {
            state: Mutex::new(NetState {
                cut: BTreeSet::new(),
                noise: Noise::default(),
                rng: Rng::new(seed, 0x004e_4554),
                counts: NetCounts::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cuts every link from a broker in `from` to a broker in `to`.
    pub fn cut(&self, from: &[u64], to: &[u64]) {
        let mut state = self.lock();
        for &a in from {
            for &b in to {
                if a != b {
                    state.cut.insert((a, b));
                }
            }
        }
    }

    pub fn heal_links(&self) {
        self.lock().cut.clear();
    }

    pub fn set_noise(&self, noise: Noise) {
        self.lock().noise = noise;
    }

    pub fn counts(&self) -> NetCounts {
        self.lock().counts
    }
}

impl LinkFaults for Network {
    fn decide(&self, from: u64, to: u64) -> LinkDecision {
        let mut state = self.lock();
        if state.cut.contains(&(from, to)) {
            state.counts.cut += 1;
            return LinkDecision::Drop;
        }
        let noise = state.noise;
        if noise == Noise::default() {
            state.counts.delivered += 1;
            return LinkDecision::Deliver;
        }
        let draw = state.rng.unit();
        if draw < noise.loss {
            state.counts.lost += 1;
            LinkDecision::Drop
        } else if draw < noise.loss + noise.duplicate {
            state.counts.duplicated += 1;
            LinkDecision::Duplicate
        } else if draw < noise.loss + noise.duplicate + noise.delay {
            state.counts.delayed += 1;
            let ms = state.rng.range(1, noise.delay_max_ms.max(2));
            LinkDecision::Delay(Duration::from_millis(ms))
        } else {
            state.counts.delivered += 1;
            LinkDecision::Deliver
        }
    }
}
