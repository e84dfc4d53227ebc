//! The clients: producers sending unique values with acks=all (half of them
//! idempotent, one of those pipelining its batches), consumers polling their
//! partitions from offset 0, a liveness probe and the final read, all over the
//! Kafka protocol through `raft_node::client`, recorded in a jepsen-style
//! history. A pipelined burst's `send` lines are logged when it ends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jepsen_style::kafka::{self, Recorder, SendOutcome};
use jepsen_style::{Process, TopicPartition};
use raft_node::client::{Client, ClientConfig, IdempotentProducer};
use slog::{info, warn, Logger};

use crate::rng::Rng;

pub const TOPIC: &str = "keel-sim";
/// An operation that takes longer is given up (and its outcome is unknown).
const OP_TIMEOUT: Duration = Duration::from_secs(20);
const FETCH_WAIT: Duration = Duration::from_millis(200);

/// Producers, processes 1..=PRODUCERS.
pub const PRODUCERS: u64 = 4;

/// The producers that send idempotently: the upper half.
pub fn idempotent_producers() -> BTreeSet<Process> {
    (PRODUCERS / 2 + 1..=PRODUCERS).map(Process).collect()
}

/// The idempotent producer that pipelines its batches (the others send one at a time).
pub const PIPELINED: u64 = PRODUCERS;
/// Its produce requests in flight at once, at most (librdkafka's max.in.flight with idempotence).
const MAX_IN_FLIGHT: usize = 5;
/// Its bursts: 1..MAX_BURST values to one partition.
const MAX_BURST: u64 = 9;

/// Simulated time since the start of the run, in nanoseconds.
pub fn now_ns() -> u64 {
    madsim::time::TimeHandle::current().elapsed().as_nanos() as u64
}

/// What the clients share: where the cluster is, the recorder, the stop flag.
pub struct Workload {
    pub bootstrap: Vec<String>,
    pub partitions: i32,
    pub recorder: Arc<Recorder>,
    pub log: Logger,
    pub stop: AtomicBool,
    pub seed: u64,
}

impl Workload {
    pub(crate) fn client(&self, process: u64) -> Client {
        let mut config = ClientConfig::new(self.bootstrap.clone());
        config.client_id = format!("sim-{process}");
        config.request_timeout = Duration::from_secs(5);
        config.retries = 8;
        Client::new(config)
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn log(&self) -> &Logger {
        &self.log
    }
}

/// Creates the topic (replication factor 3), waits until every partition has a leader, and logs each
/// partition's raft group and preferred replica (`partition placed`).
pub async fn setup(workload: Arc<Workload>, brokers: usize) {
    let log = workload.log().clone();
    let mut client = workload.client(0);
    loop {
        match client.metadata().await {
            Ok(cluster) if cluster.brokers.len() >= brokers => break,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    loop {
        match client.create_topic(TOPIC, Some(workload.partitions), Some(3), &BTreeMap::new()).await {
            Ok(()) => break,
            Err(e) if e.to_string().contains("TOPIC_ALREADY_EXISTS") => break,
            Err(e) => {
                info!(log, "create topic: retrying"; "error" => %e);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let topic = loop {
        if let Ok(topic) = client.topic(TOPIC).await {
            if topic.partitions.len() == workload.partitions as usize
                && topic.partitions.iter().all(|p| p.leader.is_some())
            {
                break topic;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    info!(log, "topic ready"; "topic" => TOPIC, "partitions" => workload.partitions);
    // The group as the brokers' lines name it, so a reader of the trace can
    // tell whether the preferred replica leads.
    for p in &topic.partitions {
        let group = format!("{}-{}", topic.id.get(..8).unwrap_or_default(), p.partition);
        if let Some(preferred) = p.replicas.first() {
            info!(log, "partition placed"; "group" => group, "preferred" => preferred);
        }
    }
}

/// Sends one unique value to `partition`, as `producer`'s next batch when it
/// is idempotent; returns the offset if acknowledged.
async fn send(
    workload: &Workload,
    client: &mut Client,
    producer: Option<&mut IdempotentProducer>,
    process: u64,
    partition: i32,
    value: String,
) -> Option<i64> {
    let tp = TopicPartition::new(TOPIC, partition);
    let (recorder, fresh) = (&workload.recorder, || workload.client(process));
    let p = Process(process);
    let outcome = match producer {
        Some(producer) => {
            kafka::send_idempotent(recorder, client, fresh, producer, p, &tp, value.clone(), OP_TIMEOUT).await
        }
        None => kafka::send(recorder, client, fresh, p, &tp, value.clone(), OP_TIMEOUT).await,
    };
    log_send(workload, process, partition, &value, outcome)
}

/// Logs how the send of `value` ended; returns the offset if acknowledged.
fn log_send(workload: &Workload, process: u64, partition: i32, value: &str, outcome: SendOutcome) -> Option<i64> {
    let (result, offset) = match outcome {
        SendOutcome::Acked(offset) => (format!("ok {offset}"), Some(offset)),
        SendOutcome::Failed(e) => (format!("fail: {e}"), None),
        SendOutcome::Indeterminate(why) => (format!("info: {why}"), None),
    };
    info!(workload.log(), "send"; "p" => process, "partition" => partition, "value" => value, "result" => result);
    offset
}

/// Sends `values` to `partition` as `producer`'s next batches, pipelined on one connection.
async fn send_pipelined(
    workload: &Workload,
    client: &mut Client,
    producer: &mut IdempotentProducer,
    process: u64,
    partition: i32,
    values: Vec<String>,
) {
    let tp = TopicPartition::new(TOPIC, partition);
    let fresh = || workload.client(process);
    let (recorder, p) = (&workload.recorder, Process(process));
    let sends =
        kafka::send_idempotent_pipelined(recorder, client, fresh, producer, p, &tp, values, MAX_IN_FLIGHT, OP_TIMEOUT)
            .await;
    info!(workload.log(), "send pipelined"; "p" => process, "partition" => partition, "sent" => sends.outcomes.len(),
        "in flight" => sends.max_in_flight, "retries" => sends.retries, "gave up" => sends.gave_up.unwrap_or_default());
    for (value, outcome) in sends.outcomes {
        log_send(workload, process, partition, &value, outcome);
    }
}

/// Reads `partition` from `*position` once; advances it past what was read.
/// Returns the high watermark on success.
pub(crate) async fn poll(
    workload: &Workload,
    client: &mut Client,
    process: u64,
    partition: i32,
    position: &mut i64,
) -> Option<i64> {
    let tp = TopicPartition::new(TOPIC, partition);
    let from = *position;
    let fresh = || workload.client(process);
    let polled =
        kafka::poll(&workload.recorder, client, fresh, Process(process), &tp, position, FETCH_WAIT, OP_TIMEOUT).await;
    match polled {
        Ok(polled) => {
            if let Some(why) = &polled.broken {
                warn!(workload.log(), "fetch answer broken"; "p" => process, "partition" => partition, "why" => why);
            }
            if polled.records > 0 {
                info!(workload.log(), "poll"; "p" => process, "partition" => partition, "from" => from,
                    "records" => polled.records, "hw" => polled.high_watermark);
            }
            Some(polled.high_watermark)
        }
        Err(why) => {
            // A fetch changes nothing on the broker, and the position only moves on success.
            info!(workload.log(), "poll"; "p" => process, "partition" => partition, "from" => from, "result" => why);
            None
        }
    }
}

/// Assigns `partitions` to a consumer and seeks each to 0.
fn assign(workload: &Workload, process: u64, partitions: &[i32]) -> BTreeMap<i32, i64> {
    let tps: Vec<_> = partitions.iter().map(|&p| TopicPartition::new(TOPIC, p)).collect();
    kafka::assign_from_start(&workload.recorder, Process(process), &tps)
        .into_iter()
        .map(|(tp, offset)| (tp.partition, offset))
        .collect()
}

/// Sends unique values to random partitions until stopped, idempotently
/// (resending a batch whose fate is unknown) or not (never resending one).
/// The [`PIPELINED`] producer sends bursts of values to one partition, several
/// requests in flight at once.
pub async fn producer(workload: Arc<Workload>, process: u64, idempotent: bool) {
    let mut rng = Rng::new(workload.seed, 0x5052_4f44 + process);
    let mut client = workload.client(process);
    let mut producer = idempotent.then(IdempotentProducer::new);
    let mut n = 0;
    while !workload.stopped() {
        let partition = rng.range(0, workload.partitions as u64) as i32;
        match producer.as_mut() {
            Some(producer) if process == PIPELINED => {
                let burst = rng.range(1, MAX_BURST);
                let values = (n..n + burst).map(|n| format!("p{process}-{n}")).collect();
                send_pipelined(&workload, &mut client, producer, process, partition, values).await;
                n += burst;
            }
            producer => {
                send(&workload, &mut client, producer, process, partition, format!("p{process}-{n}")).await;
                n += 1;
            }
        }
        tokio::time::sleep(rng.millis(5, 150)).await;
    }
}

/// Polls `partitions` in turn from offset 0 until stopped.
pub async fn consumer(workload: Arc<Workload>, process: u64, partitions: Vec<i32>) {
    let mut rng = Rng::new(workload.seed, 0x434f_4e53 + process);
    let mut client = workload.client(process);
    let mut positions = assign(&workload, process, &partitions);
    while !workload.stopped() {
        for (&partition, position) in positions.iter_mut() {
            poll(&workload, &mut client, process, partition, position).await;
        }
        tokio::time::sleep(rng.millis(10, 300)).await;
    }
}

/// After the heal: every partition must acknowledge a write within `deadline`.
/// Returns the partitions that did not.
pub async fn liveness(workload: Arc<Workload>, deadline: Duration) -> Vec<i32> {
    let start = tokio::time::Instant::now();
    let mut handles = Vec::new();
    for partition in 0..workload.partitions {
        let workload = workload.clone();
        handles.push(tokio::spawn(async move {
            let process = 3000 + partition as u64;
            let mut client = workload.client(process);
            let mut n = 0;
            while start.elapsed() < deadline {
                if send(&workload, &mut client, None, process, partition, format!("live{partition}-{n}"))
                    .await
                    .is_some()
                {
                    return None;
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(partition)
        }));
    }
    let mut stuck = Vec::new();
    for handle in handles {
        if let Some(partition) = handle.await.expect("liveness probe") {
            stuck.push(partition);
        }
    }
    stuck
}

/// Reads every partition from 0 to its end (at least past its highest
/// acknowledged offset). Returns the partitions it could not finish by `deadline`.
pub async fn final_read(workload: Arc<Workload>, deadline: Duration) -> Vec<String> {
    let start = tokio::time::Instant::now();
    let mut handles = Vec::new();
    for partition in 0..workload.partitions {
        let workload = workload.clone();
        handles.push(tokio::spawn(async move {
            let process = 2000 + partition as u64;
            let mut client = workload.client(process);
            let mut position = assign(&workload, process, &[partition])[&partition];
            let target = workload.recorder.max_acked(&TopicPartition::new(TOPIC, partition)).map_or(0, |o| o + 1);
            let mut hw = None;
            while start.elapsed() < deadline {
                let before = position;
                if let Some(high) = poll(&workload, &mut client, process, partition, &mut position).await {
                    hw = Some(high);
                    if position == before && position >= high && position >= target {
                        info!(workload.log(), "final read done"; "partition" => partition, "end" => position);
                        return None;
                    }
                } else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Some(format!(
                "partition {partition}: read up to {position} (high watermark {hw:?}, highest ack {})",
                target - 1
            ))
        }));
    }
    let mut unfinished = Vec::new();
    for handle in handles {
        unfinished.extend(handle.await.expect("final reader"));
    }
    unfinished
}
