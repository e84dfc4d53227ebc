//! The nemesis: episodes of faults, drawn from the seed or listed in a
//! schedule, each recorded in the trace, and the heal that turns them all off.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use slog::{info, Logger};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::config::FaultKind;
use crate::faults::{Network, Noise, Plan, Swarm};
use crate::rng::Rng;
use crate::schedule::{Cut, Episode, Fault, SKEW_PERCENT};

pub struct Nemesis {
    pub cluster: Arc<Cluster>,
    pub network: Arc<Network>,
    pub plan: Plan,
    pub log: Logger,
    /// Faults injected so far.
    pub injected: Arc<AtomicUsize>,
    killed: BTreeSet<u8>,
    paused: BTreeSet<u8>,
    corrupted: BTreeSet<u8>,
    armed: BTreeSet<u8>,
    skewed: BTreeSet<u8>,
    /// Brokers restarted while their reads were corrupt: the heal restarts them on clean reads.
    recovered_dirty: BTreeSet<u8>,
}

/// Kinds an episode of the process nemesis may pick; the rest is link noise.
const PROCESS: [FaultKind; 6] =
    [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition, FaultKind::Corrupt, FaultKind::Power, FaultKind::Skew];
const NOISE: [FaultKind; 3] = [FaultKind::Loss, FaultKind::Duplicate, FaultKind::Delay];

impl Nemesis {
    pub fn new(
        cluster: Arc<Cluster>,
        network: Arc<Network>,
        plan: Plan,
        log: Logger,
        injected: Arc<AtomicUsize>,
    ) -> Nemesis {
        Nemesis {
            cluster,
            network,
            plan,
            log,
            injected,
            killed: BTreeSet::new(),
            paused: BTreeSet::new(),
            corrupted: BTreeSet::new(),
            armed: BTreeSet::new(),
            skewed: BTreeSet::new(),
            recovered_dirty: BTreeSet::new(),
        }
    }

    fn fault(&self, what: &str, detail: String) {
        self.injected.fetch_add(1, Ordering::Relaxed);
        info!(self.log, "fault"; "kind" => what, "detail" => detail);
    }

    fn end(&self, what: &str, detail: String) {
        info!(self.log, "fault end"; "kind" => what, "detail" => detail);
    }

    /// Runs the process lane's episodes until `end` (simulated time); episodes end by then.
    pub async fn run(&mut self, seed: u64, end: Instant) {
        let mut episodes = Episodes::new(&self.plan, seed, Lane::Process, self.cluster.ids());
        while let Some((fault, hold)) = episodes.next(end).await {
            self.episode(fault, hold).await;
        }
    }

    async fn episode(&mut self, fault: Fault, hold: Duration) {
        match fault {
            Fault::Kill(victims) => {
                for &b in &victims {
                    self.cluster.kill(b);
                    self.killed.insert(b);
                    self.fault("kill", format!("broker {b} killed; its disk dropped unsynced writes"));
                }
                tokio::time::sleep(hold).await;
                for &b in &victims {
                    self.cluster.restart(b);
                    self.killed.remove(&b);
                    self.end("kill", format!("broker {b} restarted"));
                }
            }
            Fault::Pause(victims) => {
                for &b in &victims {
                    self.cluster.pause(b);
                    self.paused.insert(b);
                    self.fault("pause", format!("broker {b} paused"));
                }
                tokio::time::sleep(hold).await;
                for &b in &victims {
                    self.cluster.resume(b);
                    self.paused.remove(&b);
                    self.end("pause", format!("broker {b} resumed"));
                }
            }
            Fault::Partition(cut) => {
                let detail = self.cut(&cut);
                self.fault("partition", detail);
                tokio::time::sleep(hold).await;
                self.network.heal_links();
                self.end("partition", "links healed".into());
            }
            Fault::Corrupt { broker: b, rate, restart } => {
                self.cluster.disk(b).set_read_corruption(rate);
                self.corrupted.insert(b);
                self.fault("corrupt", format!("broker {b} reads flip bits with p={rate:.4}"));
                if restart {
                    // Recovery reads the whole log back: restart the broker while its reads are bad.
                    tokio::time::sleep(hold / 2).await;
                    self.cluster.kill(b);
                    self.cluster.restart(b);
                    self.recovered_dirty.insert(b);
                    self.fault("kill", format!("broker {b} killed and restarted on its corrupting disk"));
                    tokio::time::sleep(hold / 2).await;
                } else {
                    tokio::time::sleep(hold).await;
                }
                self.cluster.disk(b).set_read_corruption(0.0);
                self.corrupted.remove(&b);
                self.end("corrupt", format!("broker {b} reads clean"));
            }
            Fault::Power { broker: b, writes } => {
                self.cluster.disk(b).set_power_failure(Some(writes));
                self.armed.insert(b);
                self.fault("power", format!("broker {b} disk loses power after {writes} more writes"));
                tokio::time::sleep(hold).await;
                self.disarm(b);
            }
            Fault::Skew { brokers, percent } => {
                for &b in &brokers {
                    self.cluster.clock(b).set_percent(percent);
                    self.skewed.insert(b);
                    self.fault("skew", format!("broker {b} ticks at {percent}% of its rate"));
                }
                tokio::time::sleep(hold).await;
                for &b in &brokers {
                    self.cluster.clock(b).set_percent(100);
                    self.skewed.remove(&b);
                    self.end("skew", format!("broker {b} ticks at its rate"));
                }
            }
            Fault::Noise(_) => unreachable!("link noise runs in its own lane"),
        }
    }

    /// Cuts the links of `cut`; returns what the trace says about it.
    fn cut(&self, cut: &Cut) -> String {
        let ids64 = |s: &[u8]| s.iter().map(|&b| u64::from(b)).collect::<Vec<_>>();
        let others = |b: u8| ids64(&self.cluster.ids().into_iter().filter(|&o| o != b).collect::<Vec<_>>());
        match cut {
            Cut::Split { majority, minority } => {
                self.network.cut(&ids64(minority), &ids64(majority));
                self.network.cut(&ids64(majority), &ids64(minority));
                format!("majority/minority: {majority:?} | {minority:?}")
            }
            Cut::Isolate(b) => {
                self.network.cut(&[u64::from(*b)], &others(*b));
                self.network.cut(&others(*b), &[u64::from(*b)]);
                format!("broker {b} isolated")
            }
            Cut::OneWay { from, to } => {
                self.network.cut(&ids64(from), &ids64(to));
                format!("one-way: {from:?} cannot send to {to:?}")
            }
            Cut::Deaf(b) => {
                self.network.cut(&others(*b), &[u64::from(*b)]);
                format!("asymmetric: broker {b} sends but receives nothing")
            }
            Cut::Bridge { left, right, bridge } => {
                self.network.cut(&ids64(left), &ids64(right));
                self.network.cut(&ids64(right), &ids64(left));
                format!("bridge: {left:?} | {right:?} joined only through broker {bridge}")
            }
            Cut::Links(links) => {
                for &(a, b) in links {
                    self.network.cut(&[u64::from(a)], &[u64::from(b)]);
                }
                let links: Vec<_> = links.iter().map(|(a, b)| format!("{a}->{b}")).collect();
                format!("links cut: {}", links.join(" "))
            }
        }
    }

    /// Ends a power-failure episode: a tripped disk's broker is killed and restarted.
    fn disarm(&mut self, b: u8) {
        self.armed.remove(&b);
        let disk = self.cluster.disk(b);
        disk.set_power_failure(None);
        if disk.is_down() {
            self.cluster.kill(b);
            self.cluster.restart(b);
            self.end("power", format!("broker {b} power failed; restarted on what its disk kept"));
        } else {
            self.end("power", format!("broker {b} disk disarmed before it failed"));
        }
    }

    /// Turns every fault off: resumes, restarts, heals links, clean disks;
    /// restarts brokers that exited on their own.
    pub fn heal(&mut self) {
        self.network.heal_links();
        self.network.set_noise(Noise::default());
        for b in std::mem::take(&mut self.paused) {
            self.cluster.resume(b);
        }
        for b in std::mem::take(&mut self.corrupted) {
            self.cluster.disk(b).set_read_corruption(0.0);
        }
        for b in std::mem::take(&mut self.skewed) {
            self.cluster.clock(b).set_percent(100);
        }
        for b in self.armed.clone() {
            self.disarm(b);
        }
        for b in std::mem::take(&mut self.killed) {
            self.cluster.restart(b);
        }
        for b in std::mem::take(&mut self.recovered_dirty) {
            info!(self.log, "heal: restarting a broker that recovered on corrupt reads"; "broker" => b);
            self.cluster.kill(b);
            self.cluster.restart(b);
        }
        for (b, how) in self.cluster.exited() {
            info!(self.log, "heal: restarting a broker that exited"; "broker" => b, "how" => how);
            self.cluster.restart(b);
        }
        info!(self.log, "heal: all faults off");
    }
}

/// Episodes of link noise (loss, duplication, delay), independent of the
/// process nemesis, until `end`.
pub async fn noise(
    network: Arc<Network>,
    plan: Plan,
    log: Logger,
    injected: Arc<AtomicUsize>,
    seed: u64,
    end: Instant,
) {
    let mut episodes = Episodes::new(&plan, seed, Lane::Noise, Vec::new());
    while let Some((fault, hold)) = episodes.next(end).await {
        let Fault::Noise(noise) = fault else { unreachable!("the noise lane holds only noise") };
        network.set_noise(noise);
        injected.fetch_add(1, Ordering::Relaxed);
        info!(log, "fault"; "kind" => "noise", "detail" => format!("loss={:.3} duplicate={:.3} delay={:.3}<{}ms",
            noise.loss, noise.duplicate, noise.delay, noise.delay_max_ms));
        tokio::time::sleep(hold).await;
        network.set_noise(Noise::default());
        info!(log, "fault end"; "kind" => "noise", "detail" => "links quiet");
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lane {
    Process,
    Noise,
}

/// Where a lane's episodes come from: drawn from the seed one at a time (in
/// the order of draws every seeded trace was recorded with), or a schedule's.
enum Episodes {
    Drawn { swarm: Swarm, kinds: Vec<FaultKind>, rng: Rng, lane: Lane, ids: Vec<u8> },
    Listed(std::vec::IntoIter<Episode>),
}

impl Episodes {
    fn new(plan: &Plan, seed: u64, lane: Lane, ids: Vec<u8>) -> Episodes {
        match plan {
            Plan::Scheduled(schedule) => Episodes::Listed(schedule.lane(lane == Lane::Noise).into_iter()),
            Plan::Swarm(swarm) => {
                let (lane_kinds, stream) = match lane {
                    Lane::Process => (&PROCESS[..], 0x4e45_4d45),
                    Lane::Noise => (&NOISE[..], 0x4e4f_4953),
                };
                let kinds: Vec<FaultKind> = lane_kinds.iter().copied().filter(|k| swarm.has(*k)).collect();
                if kinds.is_empty() {
                    return Episodes::Listed(Vec::new().into_iter());
                }
                Episodes::Drawn { swarm: swarm.clone(), kinds, rng: Rng::new(seed, stream), lane, ids }
            }
        }
    }

    /// Waits out the next episode's gap; then its fault and its hold, cut
    /// short at `end`. None once the gap reaches `end`, or the list is done.
    async fn next(&mut self, end: Instant) -> Option<(Fault, Duration)> {
        let episode = match self {
            Episodes::Listed(episodes) => episodes.next()?,
            Episodes::Drawn { swarm, kinds, rng, lane: Lane::Process, ids } => {
                let gap = rng.millis(swarm.gap_ms.0, swarm.gap_ms.1);
                let hold = rng.millis(swarm.hold_ms.0, swarm.hold_ms.1);
                let kind = kinds[rng.range(0, kinds.len() as u64) as usize];
                Episode { gap, hold, fault: draw_process(kind, swarm, ids, rng) }
            }
            Episodes::Drawn { swarm, kinds, rng, lane: Lane::Noise, .. } => {
                let gap = rng.millis(swarm.gap_ms.0, swarm.gap_ms.1);
                let hold = rng.millis(swarm.hold_ms.0, swarm.hold_ms.1);
                let mut on = Vec::new();
                while on.is_empty() {
                    on = kinds.iter().copied().filter(|_| rng.chance(0.6)).collect();
                }
                let rate = |kind, p| if on.contains(&kind) { p } else { 0.0 };
                let fault = Fault::Noise(Noise {
                    loss: rate(FaultKind::Loss, swarm.loss),
                    duplicate: rate(FaultKind::Duplicate, swarm.duplicate),
                    delay: rate(FaultKind::Delay, swarm.delay),
                    delay_max_ms: swarm.delay_max_ms,
                });
                Episode { gap, hold, fault }
            }
        };
        tokio::time::sleep(episode.gap).await;
        let now = Instant::now();
        if now >= end {
            return None;
        }
        Some((episode.fault, episode.hold.min(end - now)))
    }
}

/// A process fault of `kind` with targets drawn from the seed.
fn draw_process(kind: FaultKind, swarm: &Swarm, ids: &[u8], rng: &mut Rng) -> Fault {
    let n = ids.len();
    match kind {
        // Mostly one broker; sometimes several, up to all of them.
        FaultKind::Kill | FaultKind::Pause => {
            let k = if rng.chance(0.25) { rng.range(2, n as u64 + 1) as usize } else { 1 };
            let victims = rng.pick(ids, k);
            if kind == FaultKind::Kill {
                Fault::Kill(victims)
            } else {
                Fault::Pause(victims)
            }
        }
        FaultKind::Partition => {
            let order = rng.pick(ids, n);
            let cut = match rng.range(0, 5) {
                0 => {
                    let m = rng.range(1, (n as u64 - 1) / 2 + 1) as usize;
                    let (minority, majority) = order.split_at(m);
                    Cut::Split { majority: majority.to_vec(), minority: minority.to_vec() }
                }
                1 => Cut::Isolate(order[0]),
                2 => {
                    let (from, to) = order.split_at(rng.range(1, n as u64) as usize);
                    Cut::OneWay { from: from.to_vec(), to: to.to_vec() }
                }
                3 => Cut::Deaf(order[0]),
                _ => {
                    let (left, right) = order[1..].split_at((n - 1) / 2);
                    Cut::Bridge { left: left.to_vec(), right: right.to_vec(), bridge: order[0] }
                }
            };
            Fault::Partition(cut)
        }
        // One broker: a minority of every partition's replicas.
        FaultKind::Corrupt => {
            Fault::Corrupt { broker: rng.pick(ids, 1)[0], rate: swarm.corrupt, restart: rng.chance(0.5) }
        }
        FaultKind::Power => Fault::Power { broker: rng.pick(ids, 1)[0], writes: rng.range(0, 400) },
        // A minority, slow or fast.
        FaultKind::Skew => {
            let k = rng.range(1, (n as u64 - 1) / 2 + 1) as usize;
            let brokers = rng.pick(ids, k);
            let (low, high) = if rng.chance(0.5) { (SKEW_PERCENT.0, 80) } else { (150, SKEW_PERCENT.1) };
            Fault::Skew { brokers, percent: rng.range(u64::from(low), u64::from(high) + 1) as u32 }
        }
        other => unreachable!("{other:?} is link noise"),
    }
}
