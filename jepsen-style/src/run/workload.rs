//! The clients of a real-process run: producers sending unique values with acks=all at a paced rate,
//! consumers polling every partition from offset 0, then after the heal a liveness probe and the final
//! read, all recorded through [`crate::kafka`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raft_node::client::{Client, ClientConfig, IdempotentProducer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::kafka::{self, Recorder, SendOutcome};
use crate::{Process, TopicPartition};

/// An operation that takes longer is given up (a send's outcome is then unknown).
const OP_TIMEOUT: Duration = Duration::from_secs(20);
const FETCH_WAIT: Duration = Duration::from_millis(200);

/// What the clients share.
pub struct Workload {
    pub bootstrap: Vec<String>,
    pub partitions: Vec<TopicPartition>,
    pub recorder: Arc<Recorder>,
    pub stop: AtomicBool,
    pub seed: u64,
}

impl Workload {
    pub fn client(&self, process: Process) -> Client {
        let mut config = ClientConfig::new(self.bootstrap.clone());
        config.client_id = format!("keel-jepsen-{}", process.0);
        config.request_timeout = Duration::from_secs(5);
        config.retries = 8;
        Client::new(config)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn rng(&self, stream: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream);
        rng
    }
}

/// Sends unique values to random partitions, one every `interval` at most, until stopped; idempotently
/// (a batch whose fate is unknown is sent again, and written once) or not (never sent again).
pub async fn producer(workload: Arc<Workload>, process: Process, interval: Duration, idempotent: bool) {
    let mut rng = workload.rng(process.0);
    let mut client = workload.client(process);
    let mut idempotence = idempotent.then(IdempotentProducer::new);
    let mut next = tokio::time::Instant::now();
    let mut n = 0u64;
    while !workload.stopped() {
        let tp = &workload.partitions[rng.gen_range(0..workload.partitions.len())];
        let value = format!("p{}-{n}", process.0);
        let (recorder, fresh) = (&workload.recorder, || workload.client(process));
        match idempotence.as_mut() {
            Some(p) => kafka::send_idempotent(recorder, &mut client, fresh, p, process, tp, value, OP_TIMEOUT).await,
            None => kafka::send(recorder, &mut client, fresh, process, tp, value, OP_TIMEOUT).await,
        };
        n += 1;
        next += interval;
        let now = tokio::time::Instant::now();
        if next > now {
            tokio::time::sleep(next - now).await;
        } else {
            next = now;
        }
    }
}

/// Polls every partition in turn from offset 0 until stopped.
pub async fn consumer(workload: Arc<Workload>, process: Process) {
    let mut client = workload.client(process);
    let mut positions = kafka::assign_from_start(&workload.recorder, process, &workload.partitions);
    while !workload.stopped() {
        for (tp, position) in positions.iter_mut() {
            let fresh = || workload.client(process);
            let polled =
                kafka::poll(&workload.recorder, &mut client, fresh, process, tp, position, FETCH_WAIT, OP_TIMEOUT)
                    .await;
            if polled.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// After the heal: every partition must acknowledge a write within `deadline`. Returns the partitions
/// that did not.
pub async fn liveness(workload: Arc<Workload>, deadline: Duration) -> Vec<TopicPartition> {
    let end = tokio::time::Instant::now() + deadline;
    let probes = workload.partitions.iter().enumerate().map(|(i, tp)| {
        let workload = workload.clone();
        let tp = tp.clone();
        tokio::spawn(async move {
            let process = Process(3000 + i as u64);
            let mut client = workload.client(process);
            let mut n = 0;
            while tokio::time::Instant::now() < end {
                let value = format!("live{}-{n}", tp.partition);
                let left = end.saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_secs(1));
                let fresh = || workload.client(process);
                let sent =
                    kafka::send(&workload.recorder, &mut client, fresh, process, &tp, value, left.min(OP_TIMEOUT));
                if let SendOutcome::Acked(_) = sent.await {
                    return None;
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(tp)
        })
    });
    let probes: Vec<_> = probes.collect();
    let mut stuck = Vec::new();
    for (probe, tp) in probes.into_iter().zip(&workload.partitions) {
        match probe.await {
            Ok(None) => {}
            Ok(Some(tp)) => stuck.push(tp),
            Err(_) => stuck.push(tp.clone()),
        }
    }
    stuck
}

/// Reads every partition from 0 to its end (at least past its highest acknowledged offset). Returns, for
/// each partition it could not finish within `deadline`, why.
pub async fn final_read(workload: Arc<Workload>, deadline: Duration) -> Vec<String> {
    let end = tokio::time::Instant::now() + deadline;
    let readers: Vec<_> = workload
        .partitions
        .iter()
        .enumerate()
        .map(|(i, tp)| {
            let workload = workload.clone();
            let tp = tp.clone();
            tokio::spawn(async move {
                let process = Process(2000 + i as u64);
                let mut client = workload.client(process);
                let mut position =
                    kafka::assign_from_start(&workload.recorder, process, std::slice::from_ref(&tp))[0].1;
                let target = workload.recorder.max_acked(&tp).map_or(0, |o| o + 1);
                let mut last = String::from("no answer");
                while tokio::time::Instant::now() < end {
                    let before = position;
                    let fresh = || workload.client(process);
                    let polled = kafka::poll(
                        &workload.recorder,
                        &mut client,
                        fresh,
                        process,
                        &tp,
                        &mut position,
                        FETCH_WAIT,
                        OP_TIMEOUT,
                    )
                    .await;
                    match polled {
                        Ok(p) if position == before && position >= p.high_watermark && position >= target => {
                            return None
                        }
                        Ok(p) => last = format!("high watermark {}", p.high_watermark),
                        Err(e) => {
                            last = e;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                Some(format!(
                    "{}/{}: read up to {position}, highest ack {} ({last})",
                    tp.topic,
                    tp.partition,
                    target - 1
                ))
            })
        })
        .collect();
    let mut unfinished = Vec::new();
    for (reader, tp) in readers.into_iter().zip(&workload.partitions) {
        match reader.await {
            Ok(None) => {}
            Ok(Some(why)) => unfinished.push(why),
            Err(e) => unfinished.push(format!("{}/{}: the reader failed: {e}", tp.topic, tp.partition)),
        }
    }
    unfinished
}
