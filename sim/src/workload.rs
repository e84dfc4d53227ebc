//! The clients: producers sending unique values with acks=all, consumers
//! polling their partitions from offset 0, a liveness probe and the final
//! read, all over the Kafka protocol through `raft_node::client`, recorded in
//! a jepsen-style history.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use jepsen_style::{History, HistoryBuilder, Op, OpIndex, Process, Record, Seek, Send, TopicPartition};
use raft_node::client::records::ProducerRecord;
use raft_node::client::{Acks, Client, ClientConfig, Error};
use slog::{info, warn, Logger};

use crate::rng::Rng;

pub const TOPIC: &str = "keel-sim";
/// An operation that takes longer is given up (and its outcome is unknown).
const OP_TIMEOUT: Duration = Duration::from_secs(20);
const FETCH_WAIT: Duration = Duration::from_millis(200);
const FETCH_BYTES: i32 = 1 << 20;

/// Simulated time since the start of the run, in nanoseconds.
pub fn now_ns() -> u64 {
    madsim::time::TimeHandle::current().elapsed().as_nanos() as u64
}

/// The history and what the summary counts, shared by every client.
pub struct Recorder {
    state: Mutex<RecorderState>,
    log: Logger,
}

#[derive(Default)]
struct RecorderState {
    history: HistoryBuilder,
    /// The highest acknowledged offset of each partition.
    acked: BTreeMap<i32, i64>,
    acks: usize,
    ops: usize,
}

impl Recorder {
    pub fn new(log: Logger) -> Recorder {
        Recorder { state: Mutex::new(RecorderState::default()), log }
    }

    fn lock(&self) -> MutexGuard<'_, RecorderState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // A history error is a bug of the workload, never of the brokers: fail loudly.
    fn invoke(&self, process: u64, op: Op) -> OpIndex {
        let mut state = self.lock();
        state.ops += 1;
        state.history.invoke(Process(process), now_ns(), op).expect("the workload records a well-formed history")
    }

    fn ok(&self, op: OpIndex) {
        self.lock().history.ok(op, now_ns()).expect("well-formed history");
    }

    fn ok_send(&self, op: OpIndex, partition: i32, offset: i64) {
        let mut state = self.lock();
        state.history.ok_send(op, now_ns(), offset).expect("well-formed history");
        state.acks += 1;
        let max = state.acked.entry(partition).or_insert(offset);
        *max = (*max).max(offset);
    }

    fn ok_poll(&self, op: OpIndex, records: Vec<Record>) {
        self.lock().history.ok_poll(op, now_ns(), records).expect("well-formed history");
    }

    fn fail(&self, op: OpIndex) {
        self.lock().history.fail(op, now_ns()).expect("well-formed history");
    }

    fn info(&self, op: OpIndex) {
        self.lock().history.info(op, now_ns()).expect("well-formed history");
    }

    pub fn max_acked(&self, partition: i32) -> Option<i64> {
        self.lock().acked.get(&partition).copied()
    }

    /// (operations invoked, writes acknowledged)
    pub fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.ops, state.acks)
    }

    pub fn finish(&self) -> History {
        std::mem::take(&mut self.lock().history).finish()
    }
}

/// What the clients share: where the cluster is, the recorder, the stop flag.
pub struct Workload {
    pub bootstrap: Vec<String>,
    pub partitions: i32,
    pub recorder: Arc<Recorder>,
    pub stop: AtomicBool,
    pub seed: u64,
}

impl Workload {
    fn client(&self, process: u64) -> Client {
        let mut config = ClientConfig::new(self.bootstrap.clone());
        config.client_id = format!("sim-{process}");
        config.request_timeout = Duration::from_secs(5);
        config.retries = 8;
        Client::new(config)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn log(&self) -> &Logger {
        &self.recorder.log
    }
}

/// Errors after which the produce surely was not written: no attempt reached
/// a broker that could have appended it.
fn surely_not_written(error: &Error) -> bool {
    match error {
        Error::Connect { .. } => true,
        Error::Unreachable(errors) => errors.iter().all(surely_not_written),
        _ => false,
    }
}

/// Creates the topic (replication factor 3) and waits until every partition has a leader.
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
    loop {
        if let Ok(topic) = client.topic(TOPIC).await {
            if topic.partitions.len() == workload.partitions as usize
                && topic.partitions.iter().all(|p| p.leader.is_some())
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    info!(log, "topic ready"; "topic" => TOPIC, "partitions" => workload.partitions);
}

/// Sends one unique value to `partition`; returns the offset if acknowledged.
async fn send(workload: &Workload, client: &mut Client, process: u64, partition: i32, value: String) -> Option<i64> {
    let recorder = &workload.recorder;
    let tp = TopicPartition::new(TOPIC, partition);
    let op = recorder.invoke(process, Op::Send(Send { tp, key: None, value: value.clone(), offset: None }));
    let timestamp = 1_700_000_000_000 + (now_ns() / 1_000_000) as i64;
    let record = ProducerRecord { key: None, value: Some(Bytes::from(value.clone())), timestamp };
    let produced = tokio::time::timeout(OP_TIMEOUT, client.produce(TOPIC, partition, &[record], Acks::All)).await;
    let (result, offset) = match produced {
        Ok(Ok(Some(offset))) => {
            recorder.ok_send(op, partition, offset);
            (format!("ok {offset}"), Some(offset))
        }
        Ok(Ok(None)) => {
            recorder.info(op);
            ("info: no offset".to_string(), None)
        }
        Ok(Err(e)) if surely_not_written(&e) => {
            recorder.fail(op);
            (format!("fail: {e}"), None)
        }
        Ok(Err(e)) => {
            recorder.info(op);
            (format!("info: {e}"), None)
        }
        Err(_) => {
            recorder.info(op);
            // A request cut short may leave a connection mid-exchange: start afresh.
            *client = workload.client(process);
            ("info: timed out".to_string(), None)
        }
    };
    info!(workload.log(), "send"; "p" => process, "partition" => partition, "value" => &value, "result" => result);
    offset
}

/// Reads `partition` from `*position` once; advances it past what was read.
/// Returns the high watermark on success.
async fn poll(
    workload: &Workload,
    client: &mut Client,
    process: u64,
    partition: i32,
    position: &mut i64,
) -> Option<i64> {
    let recorder = &workload.recorder;
    let op = recorder.invoke(process, Op::Poll(Vec::new()));
    let from = *position;
    let fetched = tokio::time::timeout(OP_TIMEOUT, client.fetch(TOPIC, partition, from, FETCH_WAIT, FETCH_BYTES)).await;
    match fetched {
        Ok(Ok(fetched)) => {
            let mut records = Vec::new();
            let mut next = from;
            'batches: for batch in &fetched.batches {
                match &batch.records {
                    Ok(batch_records) => {
                        for r in batch_records {
                            if r.offset < next {
                                continue;
                            }
                            records.push(Record {
                                tp: TopicPartition::new(TOPIC, partition),
                                offset: r.offset,
                                key: r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
                                value: r
                                    .value
                                    .as_ref()
                                    .map(|v| String::from_utf8_lossy(v).into_owned())
                                    .unwrap_or_default(),
                            });
                            next = r.offset + 1;
                        }
                    }
                    Err(why) => {
                        warn!(workload.log(), "undecodable batch"; "p" => process, "partition" => partition,
                            "base_offset" => batch.base_offset, "why" => why);
                        break 'batches;
                    }
                }
            }
            if let Some(why) = &fetched.broken {
                warn!(workload.log(), "fetch answer broken"; "p" => process, "partition" => partition, "why" => why);
            }
            let count = records.len();
            recorder.ok_poll(op, records);
            *position = next;
            if count > 0 {
                info!(workload.log(), "poll"; "p" => process, "partition" => partition, "from" => from,
                    "records" => count, "hw" => fetched.high_watermark);
            }
            Some(fetched.high_watermark)
        }
        Ok(Err(e)) => {
            // A fetch changes nothing on the broker, and the position only moves on success.
            recorder.fail(op);
            info!(workload.log(), "poll"; "p" => process, "partition" => partition, "from" => from, "result" => %e);
            None
        }
        Err(_) => {
            recorder.fail(op);
            *client = workload.client(process);
            info!(workload.log(), "poll"; "p" => process, "partition" => partition, "from" => from, "result" => "timed out");
            None
        }
    }
}

/// Assigns `partitions` to a consumer and seeks each to 0.
fn assign(workload: &Workload, process: u64, partitions: &[i32]) -> BTreeMap<i32, i64> {
    let recorder = &workload.recorder;
    let tps: Vec<_> = partitions.iter().map(|&p| TopicPartition::new(TOPIC, p)).collect();
    let op = recorder.invoke(process, Op::Assign(tps));
    recorder.ok(op);
    for &partition in partitions {
        let op = recorder.invoke(process, Op::Seek(Seek { tp: TopicPartition::new(TOPIC, partition), offset: 0 }));
        recorder.ok(op);
    }
    partitions.iter().map(|&p| (p, 0)).collect()
}

/// Sends unique values to random partitions until stopped.
pub async fn producer(workload: Arc<Workload>, process: u64) {
    let mut rng = Rng::new(workload.seed, 0x5052_4f44 + process);
    let mut client = workload.client(process);
    let mut n = 0;
    while !workload.stopped() {
        let partition = rng.range(0, workload.partitions as u64) as i32;
        send(&workload, &mut client, process, partition, format!("p{process}-{n}")).await;
        n += 1;
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
                if send(&workload, &mut client, process, partition, format!("live{partition}-{n}")).await.is_some() {
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
            let target = workload.recorder.max_acked(partition).map_or(0, |o| o + 1);
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
