//! The nemesis: episodes of faults drawn from the run's plan, each recorded
//! in the trace, and the heal that turns them all off.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use slog::{info, Logger};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::config::FaultKind;
use crate::faults::{Network, Noise, Plan};
use crate::rng::Rng;

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
    /// Brokers restarted while their reads were corrupt: the heal restarts them on clean reads.
    recovered_dirty: BTreeSet<u8>,
}

/// Kinds an episode of the process nemesis may pick; the rest is link noise.
const EPISODES: [FaultKind; 5] =
    [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition, FaultKind::Corrupt, FaultKind::Power];
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

    /// Runs fault episodes until `end` (simulated time); episodes end by then.
    pub async fn run(&mut self, seed: u64, end: Instant) {
        let kinds: Vec<FaultKind> = EPISODES.into_iter().filter(|k| self.plan.has(*k)).collect();
        if kinds.is_empty() {
            return;
        }
        let mut rng = Rng::new(seed, 0x4e45_4d45);
        loop {
            tokio::time::sleep(rng.millis(self.plan.gap_ms.0, self.plan.gap_ms.1)).await;
            let now = Instant::now();
            if now >= end {
                return;
            }
            let hold = rng.millis(self.plan.hold_ms.0, self.plan.hold_ms.1).min(end - now);
            let kind = kinds[rng.range(0, kinds.len() as u64) as usize];
            self.episode(kind, hold, &mut rng).await;
        }
    }

    async fn episode(&mut self, kind: FaultKind, hold: Duration, rng: &mut Rng) {
        let ids = self.cluster.ids();
        let n = ids.len();
        match kind {
            FaultKind::Kill => {
                // Mostly one broker; sometimes several, up to all of them.
                let k = if rng.chance(0.25) { rng.range(2, n as u64 + 1) as usize } else { 1 };
                let victims = rng.pick(&ids, k);
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
            FaultKind::Pause => {
                let k = if rng.chance(0.25) { rng.range(2, n as u64 + 1) as usize } else { 1 };
                let victims = rng.pick(&ids, k);
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
            FaultKind::Partition => {
                let order = rng.pick(&ids, n);
                let ids64 = |s: &[u8]| s.iter().map(|&b| u64::from(b)).collect::<Vec<_>>();
                let detail = match rng.range(0, 5) {
                    0 => {
                        let m = rng.range(1, (n as u64 - 1) / 2 + 1) as usize;
                        let (minority, majority) = order.split_at(m);
                        self.network.cut(&ids64(minority), &ids64(majority));
                        self.network.cut(&ids64(majority), &ids64(minority));
                        format!("majority/minority: {majority:?} | {minority:?}")
                    }
                    1 => {
                        let (alone, rest) = order.split_at(1);
                        self.network.cut(&ids64(alone), &ids64(rest));
                        self.network.cut(&ids64(rest), &ids64(alone));
                        format!("broker {} isolated", alone[0])
                    }
                    2 => {
                        let m = rng.range(1, n as u64) as usize;
                        let (from, to) = order.split_at(m);
                        self.network.cut(&ids64(from), &ids64(to));
                        format!("one-way: {from:?} cannot send to {to:?}")
                    }
                    3 => {
                        let (deaf, rest) = order.split_at(1);
                        self.network.cut(&ids64(rest), &ids64(deaf));
                        format!("asymmetric: broker {} sends but receives nothing", deaf[0])
                    }
                    _ => {
                        let (bridge, rest) = order.split_at(1);
                        let (left, right) = rest.split_at(rest.len() / 2);
                        self.network.cut(&ids64(left), &ids64(right));
                        self.network.cut(&ids64(right), &ids64(left));
                        format!("bridge: {left:?} | {right:?} joined only through broker {}", bridge[0])
                    }
                };
                self.fault("partition", detail);
                tokio::time::sleep(hold).await;
                self.network.heal_links();
                self.end("partition", "links healed".into());
            }
            FaultKind::Corrupt => {
                // One broker: a minority of every partition's replicas.
                let b = rng.pick(&ids, 1)[0];
                self.cluster.disk(b).set_read_corruption(self.plan.corrupt);
                self.corrupted.insert(b);
                self.fault("corrupt", format!("broker {b} reads flip bits with p={:.4}", self.plan.corrupt));
                if rng.chance(0.5) {
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
            FaultKind::Power => {
                let b = rng.pick(&ids, 1)[0];
                let ops = rng.range(0, 400);
                self.cluster.disk(b).set_power_failure(Some(ops));
                self.armed.insert(b);
                self.fault("power", format!("broker {b} disk loses power after {ops} more writes"));
                tokio::time::sleep(hold).await;
                self.disarm(b);
            }
            other => unreachable!("{other:?} is link noise"),
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
    let kinds: Vec<FaultKind> = NOISE.into_iter().filter(|k| plan.has(*k)).collect();
    if kinds.is_empty() {
        return;
    }
    let mut rng = Rng::new(seed, 0x4e4f_4953);
    loop {
        tokio::time::sleep(rng.millis(plan.gap_ms.0, plan.gap_ms.1)).await;
        let now = Instant::now();
        if now >= end {
            return;
        }
        let hold = rng.millis(plan.hold_ms.0, plan.hold_ms.1).min(end - now);
        let mut on = Vec::new();
        while on.is_empty() {
            on = kinds.iter().copied().filter(|_| rng.chance(0.6)).collect();
        }
        let noise = Noise {
            loss: if on.contains(&FaultKind::Loss) { plan.loss } else { 0.0 },
            duplicate: if on.contains(&FaultKind::Duplicate) { plan.duplicate } else { 0.0 },
            delay: if on.contains(&FaultKind::Delay) { plan.delay } else { 0.0 },
            delay_max_ms: plan.delay_max_ms,
        };
        network.set_noise(noise);
        injected.fetch_add(1, Ordering::Relaxed);
        info!(log, "fault"; "kind" => "noise", "detail" => format!("loss={:.3} duplicate={:.3} delay={:.3}<{}ms",
            noise.loss, noise.duplicate, noise.delay, noise.delay_max_ms));
        tokio::time::sleep(hold).await;
        network.set_noise(Noise::default());
        info!(log, "fault end"; "kind" => "noise", "detail" => "links quiet");
    }
}
