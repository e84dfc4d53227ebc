//! One simulation run: the cluster, the workload, the nemesis, the heal, the
//! final read and the checker's verdict, all from one seed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jepsen_style::kafka::Recorder;
use jepsen_style::{History, Options, Process};
use madsim::runtime::{Handle, Runtime};
use raft_node::replica::panic_message;
use slog::{info, o};

use crate::cluster::{address, Cluster, CLIENT_HOST};
use crate::config::{header, FaultKind, SimConfig};
use crate::faults::{NetCounts, Network, Plan};
use crate::group_consumer::{self, Group};
use crate::invariants::CommittedEntries;
use crate::nemesis::{noise, Nemesis};
use crate::trace::Trace;
use crate::workload::{self, Workload};
use crate::{joiner, mover};

/// After the heal, every partition must take a write within this (simulated) time.
pub const LIVENESS_DEADLINE: Duration = Duration::from_secs(60);
/// And the final read must get through every partition within this, as must
/// the group's committed offsets (the drain, alongside the final read).
const FINAL_READ_DEADLINE: Duration = Duration::from_secs(60);
/// Consumers in the workload.
const CONSUMERS: u64 = 2;
/// Members of the consumer group.
const GROUP_MEMBERS: u64 = 3;

/// What a run found.
pub struct Outcome {
    pub trace: Vec<u8>,
    pub valid: bool,
    /// `valid`, or `invalid: ` and why, on one line.
    pub verdict: String,
    /// The checker's report and any other failure, for a human.
    pub details: String,
    pub plan: String,
    pub ops: usize,
    pub acked: usize,
    pub faults: usize,
    pub elections: usize,
    pub net: NetCounts,
    pub simulated: Duration,
    pub wall: Duration,
}

/// What the simulation hands back to be judged outside it.
struct Ran {
    history: History,
    failures: Vec<String>,
}

/// What the simulation shares with the code outside it, so a run that
/// panicked still reports how far it got.
struct Shared {
    recorder: Arc<Recorder>,
    network: Arc<Network>,
    injected: Arc<AtomicUsize>,
    committed: Arc<CommittedEntries>,
}

/// Runs the simulation of `config` on its own madsim runtime, on a thread of
/// its own: std's HashMap keys are per thread, and madsim can seed them from
/// the simulation seed only in a thread that has made none yet. (A second run
/// on one thread, as a sweep did, or any HashMap made before the runtime,
/// left madsim's own maps in a random order: the same seed gave another trace.)
pub fn run(config: &SimConfig) -> Outcome {
    std::thread::scope(|scope| scope.spawn(|| run_on_fresh_thread(config)).join())
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn run_on_fresh_thread(config: &SimConfig) -> Outcome {
    // First, before anything could make a HashMap on this thread.
    let mut runtime = Runtime::with_seed_and_config(config.seed, madsim::Config::default());
    let wall = Instant::now();
    let trace = Trace::default();
    trace.append(&header(config));
    let plan = Plan::draw(config);
    trace.append(&format!("faults: {}\n", plan.describe()));
    let logger = trace.logger_at(slog::Level::Info);
    let shared = Shared {
        recorder: Arc::new(Recorder::new(workload::now_ns)),
        network: Arc::new(Network::new(config.seed)),
        injected: Arc::new(AtomicUsize::new(0)),
        committed: Arc::new(CommittedEntries::default()),
    };
    // A hung simulation ends as a failure rather than running forever.
    let limit = config.duration + LIVENESS_DEADLINE + FINAL_READ_DEADLINE + Duration::from_secs(300);
    runtime.set_time_limit(limit);
    let simulated = {
        let (config, plan) = (config.clone(), plan.clone());
        let shared = Shared {
            recorder: shared.recorder.clone(),
            network: shared.network.clone(),
            injected: shared.injected.clone(),
            committed: shared.committed.clone(),
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            runtime.block_on(simulate(config, plan, logger, shared))
        }))
    };
    let mut failures = Vec::new();
    let (report, ran) = match simulated {
        Ok(ran) => {
            let options = Options { idempotent_processes: workload::idempotent_producers(), ..Options::default() };
            (Some(jepsen_style::check(&ran.history, &options)), Some(ran))
        }
        Err(panic) => {
            failures.push(format!("panic: {}", panic_message(&*panic)));
            (None, None)
        }
    };
    if let Some(ran) = &ran {
        failures.extend(ran.failures.iter().cloned());
    }
    let text = String::from_utf8_lossy(&trace.contents()).into_owned();
    let elections = text.matches("became leader at term").count();
    failures.extend(crate::invariants::one_leader_per_term(&text));
    failures.extend(shared.committed.violations(3));
    failures.extend(crate::invariants::no_critical_trouble(&text, plan.has(FaultKind::Corrupt)));
    let mut reasons = Vec::new();
    if let Some(report) = &report {
        if !report.valid {
            reasons.push(format!("checker: {}", report.verdict));
        }
    }
    reasons.extend(failures.iter().map(|f| f.lines().next().unwrap_or_default().to_string()));
    let valid = reasons.is_empty();
    let verdict = if valid { "valid".to_string() } else { format!("invalid: {}", reasons.join("; ")) };
    let mut details = String::new();
    if let Some(report) = &report {
        details.push_str(&report.to_string());
    }
    for failure in &failures {
        details.push_str(&format!("{failure}\n"));
    }
    let counts = shared.recorder.counts();
    let (ops, acked) = (counts.invoked, counts.acked);
    let faults = shared.injected.load(Ordering::Relaxed);
    let net = shared.network.counts();
    // The simulated time of the last line logged (a panicked run has no other clock left).
    let simulated = text
        .lines()
        .rev()
        .find_map(|line| line.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs_f64);
    trace.append(&format!(
        "summary: operations {ops}, acknowledged writes {acked}, faults {faults}, elections {elections}, simulated {:.3}s\n",
        simulated.as_secs_f64()
    ));
    if let Some(report) = &report {
        for finding in &report.anomalies {
            trace.append(&format!("anomaly: {} x{}\n", finding.anomaly, finding.count));
        }
    }
    for failure in &failures {
        trace.append(&format!("failure: {}\n", failure.lines().next().unwrap_or_default()));
    }
    trace.append(&format!("verdict: {verdict}\n"));
    Outcome {
        trace: trace.contents(),
        valid,
        verdict,
        details,
        plan: plan.describe(),
        ops,
        acked,
        faults,
        elections,
        net,
        simulated,
        wall: wall.elapsed(),
    }
}

async fn simulate(config: SimConfig, plan: Plan, logger: slog::Logger, shared: Shared) -> Ran {
    let handle = Handle::current();
    let log = logger.new(o!("sim" => "nemesis"));
    let network = shared.network;
    // The joiner starts a third of the way in, once the workload is under way.
    let join_at = config.join.then(|| tokio::time::Instant::now() + config.duration / 3);
    let cluster = Arc::new(Cluster::start(
        &handle,
        config.seed,
        config.brokers,
        join_at,
        config.auto_rebalance,
        network.clone(),
        &shared.committed,
        &logger,
    ));
    let client = handle.create_node().name("client").ip(address(CLIENT_HOST, 0).ip()).build();
    let workload = Arc::new(Workload {
        bootstrap: cluster.bootstrap(),
        partitions: i32::from(config.partitions),
        recorder: shared.recorder,
        log: logger.new(o!("sim" => "client")),
        stop: AtomicBool::new(false),
        seed: config.seed,
    });
    client.spawn(workload::setup(workload.clone(), usize::from(config.brokers))).await.expect("setup");

    let mut clients = Vec::new();
    let idempotent = workload::idempotent_producers();
    for p in 1..=workload::PRODUCERS {
        clients.push(client.spawn(workload::producer(workload.clone(), p, idempotent.contains(&Process(p)))));
    }
    for c in 0..CONSUMERS {
        let partitions: Vec<i32> = (0..i32::from(config.partitions)).filter(|p| *p as u64 % CONSUMERS == c).collect();
        clients.push(client.spawn(workload::consumer(workload.clone(), 100 + c, partitions)));
    }
    let group = Arc::new(Group::new(workload.clone()));
    let members: Vec<_> = (0..GROUP_MEMBERS).map(|m| client.spawn(group_consumer::member(group.clone(), m))).collect();

    let end = tokio::time::Instant::now() + config.duration;
    if config.moves {
        clients.push(client.spawn(mover::mover(workload.clone(), cluster.ids(), end)));
    }
    if config.join && config.auto_rebalance {
        clients.push(client.spawn(joiner::spread(workload.clone(), config.brokers + 1, end)));
    } else if config.join {
        // The last founder leaves: a metadata voter, replaced by the joiner.
        clients.push(client.spawn(joiner::joiner(workload.clone(), config.brokers + 1, config.brokers, end)));
    }
    let injected = shared.injected;
    let mut nemesis = Nemesis::new(cluster.clone(), network.clone(), plan.clone(), log.clone(), injected.clone());
    let noisy = noise(network.clone(), plan, log.clone(), injected.clone(), config.seed, end);
    tokio::join!(nemesis.run(config.seed, end), noisy);
    tokio::time::sleep_until(end).await;

    nemesis.heal();
    let healed = tokio::time::Instant::now();
    let mut failures = Vec::new();
    let stuck = client.spawn(workload::liveness(workload.clone(), LIVENESS_DEADLINE)).await.expect("liveness");
    if stuck.is_empty() {
        info!(log, "liveness: every partition took a write"; "after_heal_ms" => healed.elapsed().as_millis() as u64);
    } else {
        failures.push(format!(
            "liveness: partitions {stuck:?} took no write within {}s after the heal",
            LIVENESS_DEADLINE.as_secs()
        ));
    }
    workload.stop.store(true, Ordering::Relaxed);
    for handle in clients {
        handle.await.expect("a workload client");
    }
    info!(log, "workload stopped");
    let drained = client.spawn(group_consumer::drain(group, FINAL_READ_DEADLINE));
    let unfinished =
        client.spawn(workload::final_read(workload.clone(), FINAL_READ_DEADLINE)).await.expect("final read");
    for what in unfinished {
        failures.push(format!("final read unfinished: {what}"));
    }
    if let Some(what) = drained.await.expect("group drain") {
        failures.push(format!("group did not finish: {what}"));
    }
    for handle in members {
        handle.await.expect("a group member");
    }
    for (b, how) in cluster.exited() {
        failures.push(format!("broker {b} exited after the heal: {how}"));
    }
    Ran { history: workload.recorder.finish(), failures }
}
