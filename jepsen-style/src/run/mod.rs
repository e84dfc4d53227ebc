//! `keel-jepsen run`: a cluster of real `keel broker` processes, Kafka clients recording a history,
//! faults on a seeded schedule (or the elastic scenario's steps), then the heal, a liveness deadline, the
//! final read and the checker.

mod cluster;
mod disks;
mod elastic;
mod nemesis;
mod network;
mod output;
mod plot;
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::kafka::Recorder;
use crate::{check, Options, Process, Report, TopicPartition};
use cluster::Cluster;
use disks::Disks;
pub use elastic::{MoveTiming, StepWindow, WriteGap};
pub use nemesis::{FaultKind, FaultWindow};
use network::Network;
use workload::Workload;

pub const TOPIC: &str = "jepsen";
/// Issue 8's goal for the longest stretch without an acknowledged write on a partition.
const WRITE_GAP_GOAL_NS: u64 = 5_000_000_000;

/// Nanoseconds since the start of the run.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What happens to the cluster while the clients run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// The nemesis's faults on a seeded schedule, then the heal.
    Faults,
    /// Two brokers added, a rebalance, broker 1 decommissioned, broker 2 killed; idempotent producers.
    Elastic,
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "faults" => Ok(Scenario::Faults),
            "elastic" => Ok(Scenario::Elastic),
            other => Err(format!("unknown scenario {other:?}: faults or elastic")),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scenario::Faults => "faults",
            Scenario::Elastic => "elastic",
        })
    }
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub scenario: Scenario,
    /// Brokers at the start.
    pub brokers: usize,
    pub partitions: i32,
    pub duration: Duration,
    pub nemesis: Vec<FaultKind>,
    /// Target sends per second over all producers (an upper bound: each waits for its answer).
    pub rate: u32,
    pub producers: u64,
    pub consumers: u64,
    pub out: PathBuf,
    pub keel: PathBuf,
    /// The planted bug the brokers run with (a keel built with the planted-bugs feature).
    pub planted: Option<String>,
    pub seed: u64,
    /// After the heal, every partition must take a write within this.
    pub liveness_deadline: Duration,
    pub final_read_deadline: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{0}")]
    Harness(String),
}

impl RunError {
    fn io(context: impl Into<String>, source: std::io::Error) -> RunError {
        RunError::Io { context: context.into(), source }
    }
}

/// What a run found besides the checker's report.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub scenario: Scenario,
    pub seed: u64,
    pub brokers: usize,
    pub partitions: i32,
    pub duration_s: f64,
    pub nemesis: Vec<FaultKind>,
    pub planted: Option<String>,
    /// Faults asked for and impossible here, with why.
    pub skipped: Vec<String>,
    pub faults: Vec<FaultWindow>,
    /// The elastic scenario's steps.
    pub steps: Vec<StepWindow>,
    /// The longest interval between acknowledged writes of one partition (the checker's summary), against
    /// issue 8's goal; reported, not judged.
    pub longest_write_gap: Option<LongestWriteGap>,
    /// Brokers that exited by themselves (a crash of the broker, not a fault), with the exit status.
    pub broker_exits: Vec<String>,
    pub heal_ns: u64,
    /// Partitions that took no write within the liveness deadline after the heal.
    pub stuck_partitions: Vec<TopicPartition>,
    /// Partitions the final read could not finish, with why.
    pub unfinished_reads: Vec<String>,
    pub valid: bool,
    pub verdict: String,
}

#[derive(Debug, Serialize)]
pub struct LongestWriteGap {
    pub partition: TopicPartition,
    pub gap_ns: u64,
    pub goal_ns: u64,
    pub within_goal: bool,
}

impl LongestWriteGap {
    fn of(report: &Report) -> Option<LongestWriteGap> {
        let (partition, gap_ns) = report
            .summary
            .partitions
            .iter()
            .filter_map(|p| Some((p.partition.clone(), p.longest_write_gap_ns?)))
            .max_by_key(|&(_, gap)| gap)?;
        Some(LongestWriteGap { partition, gap_ns, goal_ns: WRITE_GAP_GOAL_NS, within_goal: gap_ns < WRITE_GAP_GOAL_NS })
    }
}

/// The faults a run applies, and what they need.
struct Faults {
    network: Option<Arc<Network>>,
    disks: Option<Arc<Disks>>,
    kinds: Vec<FaultKind>,
}

/// Sets up what faults of `kind` need, if they were asked for. Where that is impossible, they are
/// skipped (dropped from `kinds`) and the run says why rather than failing.
fn prepare<T>(
    kinds: &mut Vec<FaultKind>,
    kind: FaultKind,
    skipped: &mut Vec<String>,
    clock: &Clock,
    unavailable: impl FnOnce() -> Option<String>,
    create: impl FnOnce() -> Result<(String, T), RunError>,
) -> Option<Arc<T>> {
    if !kinds.contains(&kind) {
        return None;
    }
    match unavailable().map_or_else(create, |why| Err(RunError::Harness(why))) {
        Ok((ready, made)) => {
            progress(clock(), &ready);
            Some(Arc::new(made))
        }
        Err(why) => {
            let name = format!("{kind:?}").to_lowercase();
            progress(clock(), &format!("{name} faults skipped: {why}"));
            kinds.retain(|k| *k != kind);
            skipped.push(format!("{name}: {why}"));
            None
        }
    }
}

/// Prints a progress line stamped with seconds since the start.
pub fn progress(now_ns: u64, line: &str) {
    println!("[{:7.1}s] {line}", now_ns as f64 / 1e9);
}

/// Runs the test; `Ok` carries the verdict (valid or not), `Err` a harness failure.
pub async fn run(config: RunConfig) -> Result<(RunSummary, Report), RunError> {
    let start = Instant::now();
    let clock: Clock = Arc::new(move || start.elapsed().as_nanos() as u64);
    std::fs::create_dir_all(&config.out)
        .map_err(|e| RunError::io(format!("cannot create {}", config.out.display()), e))?;
    progress(
        0,
        &format!(
            "scenario {}, seed {}, {} brokers, faults {:?}, results in {}",
            config.scenario,
            config.seed,
            config.brokers,
            config.nemesis,
            config.out.display()
        ),
    );

    let mut kinds = config.nemesis.clone();
    let mut skipped = Vec::new();
    // Both are declared before the cluster, so they go after the brokers that use them.
    let network = prepare(&mut kinds, FaultKind::Partition, &mut skipped, &clock, Network::unavailable, || {
        let network = Network::create(config.brokers)?;
        Ok((network.cutter_description(), network))
    });
    let disks = prepare(&mut kinds, FaultKind::Power, &mut skipped, &clock, Disks::unavailable, || {
        Ok((
            "each broker's data on its own loop-mounted ext4 image".into(),
            Disks::create(&config.out, config.brokers)?,
        ))
    });
    let (count, founders) = match config.scenario {
        Scenario::Faults => (config.brokers, config.brokers),
        // The added brokers join: they start empty and ask the first ones, the founders, to let them in.
        Scenario::Elastic => (config.brokers + elastic::ADDED, config.brokers),
    };
    let cluster = Arc::new(Cluster::new(
        &config.out,
        &config.keel,
        count,
        founders,
        network.as_deref(),
        disks.as_deref(),
        config.planted.clone(),
    )?);
    let faults = Faults { network: network.clone(), disks: disks.clone(), kinds };
    let result = run_cluster(&config, &cluster, faults, clock.clone()).await;
    cluster.shutdown();
    let (mut summary, report) = result?;
    summary.skipped = skipped;
    output::write(&config.out, &summary, &report)?;
    Ok((summary, report))
}

async fn run_cluster(
    config: &RunConfig,
    cluster: &Arc<Cluster>,
    faults: Faults,
    clock: Clock,
) -> Result<(RunSummary, Report), RunError> {
    (0..config.brokers).try_for_each(|i| cluster.start(i))?;
    let recorder = Arc::new(Recorder::new({
        let clock = clock.clone();
        move || clock()
    }));
    let partitions: Vec<TopicPartition> = (0..config.partitions).map(|p| TopicPartition::new(TOPIC, p)).collect();
    let workload = Arc::new(Workload {
        bootstrap: cluster.bootstrap(),
        partitions,
        recorder: recorder.clone(),
        stop: Default::default(),
        seed: config.seed,
    });
    setup(config, cluster, &workload).await?;
    progress(clock(), &format!("topic {TOPIC} ready with {} partitions", config.partitions));

    let mut broker_exits = Vec::new();
    let mut clients = Vec::new();
    let interval = Duration::from_secs_f64(config.producers as f64 / f64::from(config.rate.max(1)));
    // The elastic scenario judges duplicates strictly: its producers are idempotent.
    let idempotent = config.scenario == Scenario::Elastic;
    for p in 1..=config.producers {
        clients.push(tokio::spawn(workload::producer(workload.clone(), Process(p), interval, idempotent)));
    }
    for c in 1..=config.consumers {
        clients.push(tokio::spawn(workload::consumer(workload.clone(), Process(100 + c))));
    }
    let windows = Arc::new(Mutex::new(Vec::new()));
    let steps = Arc::new(Mutex::new(Vec::new()));
    let stop_nemesis = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let nemesis = match config.scenario {
        Scenario::Faults => {
            let nemesis = nemesis::Nemesis {
                cluster: cluster.clone(),
                network: faults.network.clone(),
                disks: faults.disks,
                kinds: faults.kinds,
                rng: ChaCha8Rng::seed_from_u64(config.seed),
                windows: windows.clone(),
                clock: clock.clone(),
            };
            tokio::spawn(nemesis.run(stop_nemesis.clone(), (3_000, 10_000), (2_000, 6_000)))
        }
        Scenario::Elastic => {
            let elastic = elastic::Elastic {
                cluster: cluster.clone(),
                workload: workload.clone(),
                admin: workload.client(Process(0)),
                first: config.brokers,
                duration: config.duration,
                steps: steps.clone(),
                clock: clock.clone(),
            };
            tokio::spawn(elastic.run(stop_nemesis.clone()))
        }
    };

    let end = tokio::time::Instant::now() + config.duration;
    let mut last = recorder.counts();
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(5).min(end - tokio::time::Instant::now())).await;
        let counts = recorder.counts();
        progress(
            clock(),
            &format!(
                "ops {} (+{}), acked {} (+{}), failed {}, indeterminate {}, records read {}",
                counts.invoked,
                counts.invoked - last.invoked,
                counts.acked,
                counts.acked - last.acked,
                counts.failed,
                counts.indeterminate,
                counts.records_read
            ),
        );
        last = counts;
        note_exits(cluster, &clock, &mut broker_exits);
        if nemesis.is_finished() {
            break;
        }
    }

    // Heal: the nemesis heals its fault, then every fault is off.
    stop_nemesis.store(true, Ordering::Relaxed);
    match nemesis.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(RunError::Harness(format!("the nemesis failed: {e}"))),
    }
    note_exits(cluster, &clock, &mut broker_exits);
    if let Some(network) = &faults.network {
        network.heal()?;
    }
    let heal_ns = clock();
    match config.scenario {
        Scenario::Faults => {
            cluster.heal()?;
            progress(heal_ns, "healed: every broker running, every link whole");
        }
        Scenario::Elastic => progress(heal_ns, "workload stopped; the brokers stay as the steps left them"),
    }
    workload.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.map_err(|e| RunError::Harness(format!("a client failed: {e}")))?;
    }

    let stuck = workload::liveness(workload.clone(), config.liveness_deadline).await;
    progress(
        clock(),
        &if stuck.is_empty() {
            "liveness: every partition took a write".to_string()
        } else {
            format!("liveness FAILED: no write within {:?} on {stuck:?}", config.liveness_deadline)
        },
    );
    let unfinished = workload::final_read(workload.clone(), config.final_read_deadline).await;
    progress(
        clock(),
        &if unfinished.is_empty() {
            "final read done".to_string()
        } else {
            format!("final read unfinished: {unfinished:?}")
        },
    );
    note_exits(cluster, &clock, &mut broker_exits);

    let history = recorder.finish();
    let idempotent_processes: BTreeSet<Process> =
        if idempotent { (1..=config.producers).map(Process).collect() } else { BTreeSet::new() };
    let report = check(&history, &Options { idempotent: false, idempotent_processes });
    let mut steps = std::mem::take(&mut *steps.lock().unwrap_or_else(PoisonError::into_inner));
    elastic::longest_write_gaps(&history, &mut steps, heal_ns);
    let mut problems: Vec<String> = Vec::new();
    problems.extend(report.anomalies.iter().filter(|f| f.invalidating).map(|f| f.anomaly.name().to_string()));
    if !stuck.is_empty() {
        problems.push("liveness".into());
    }
    if !unfinished.is_empty() {
        problems.push("final read unfinished".into());
    }
    if !broker_exits.is_empty() {
        problems.push("broker exited by itself".into());
    }
    problems.extend(steps.iter().filter(|s| s.unfinished.is_some()).map(|s| format!("{} unfinished", s.step)));
    let valid = problems.is_empty();
    let verdict = if valid { "valid".to_string() } else { format!("invalid: {}", problems.join("; ")) };
    let faults = std::mem::take(&mut *windows.lock().unwrap_or_else(PoisonError::into_inner));
    let summary = RunSummary {
        scenario: config.scenario,
        seed: config.seed,
        brokers: config.brokers,
        partitions: config.partitions,
        duration_s: config.duration.as_secs_f64(),
        nemesis: config.nemesis.clone(),
        planted: config.planted.clone(),
        skipped: Vec::new(),
        faults,
        steps,
        longest_write_gap: LongestWriteGap::of(&report),
        broker_exits,
        heal_ns,
        stuck_partitions: stuck,
        unfinished_reads: unfinished,
        valid,
        verdict,
    };
    output::write_history(&config.out, &history)?;
    plot::draw(&config.out, &history, &summary.faults, &summary.steps)?;
    Ok((summary, report))
}

/// Reports brokers that exited by themselves; the heal restarts them.
fn note_exits(cluster: &Cluster, clock: &Clock, exits: &mut Vec<String>) {
    for (id, status) in cluster.take_exits() {
        progress(
            clock(),
            &format!("broker {id} exited by itself ({status}); its log ends:\n{}", cluster.log_tail(id, 10)),
        );
        exits.push(format!("broker {id}: {status}"));
    }
}

/// Waits for every broker to join, creates the topic and waits for a leader on each partition.
async fn setup(config: &RunConfig, cluster: &Cluster, workload: &Workload) -> Result<(), RunError> {
    const SETUP_DEADLINE: Duration = Duration::from_secs(120);
    let end = tokio::time::Instant::now() + SETUP_DEADLINE;
    let mut client = workload.client(Process(0));
    let mut last = String::new();
    let replication = config.brokers.min(3) as i16;
    let mut created = false;
    loop {
        if let Some((id, status)) = cluster.take_exits().into_iter().next() {
            return Err(RunError::Harness(format!(
                "broker {id} exited during startup ({status}); its log ends:\n{}",
                cluster.log_tail(id, 20)
            )));
        }
        if tokio::time::Instant::now() >= end {
            return Err(RunError::Harness(format!("the cluster was not ready within {SETUP_DEADLINE:?}: {last}")));
        }
        match client.metadata().await {
            Ok(info) if info.brokers.len() < config.brokers => {
                last = format!("{} of {} brokers registered", info.brokers.len(), config.brokers)
            }
            Ok(_) if !created => {
                match client.create_topic(TOPIC, Some(config.partitions), Some(replication), &BTreeMap::new()).await {
                    Ok(()) => created = true,
                    Err(e) if e.to_string().contains("TOPIC_ALREADY_EXISTS") => created = true,
                    Err(e) => last = format!("create topic: {e}"),
                }
            }
            Ok(_) => match client.topic(TOPIC).await {
                Ok(topic)
                    if topic.partitions.len() == config.partitions as usize
                        && topic.partitions.iter().all(|p| p.leader.is_some()) =>
                {
                    return Ok(())
                }
                Ok(_) => last = "waiting for partition leaders".into(),
                Err(e) => last = format!("topic metadata: {e}"),
            },
            Err(e) => last = format!("metadata: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
