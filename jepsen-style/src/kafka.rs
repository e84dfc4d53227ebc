//! Kafka client operations recorded in a history: one send or one poll through `raft_node::client`, with
//! what the answer (or its absence) means for the history. Runs on real tokio and on madsim alike (time
//! only through `tokio::time` and the recorder's clock), so the real-process runner and a simulated
//! workload can share it.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use raft_node::client::records::{ConsumedBatch, ProducerRecord, ProducerSequence};
use raft_node::client::{needs_new_producer_id, Acks, Client, Error, GroupError, IdempotentProducer, Membership};

use crate::{
    Commit, FetchCommitted, GroupOffset, History, HistoryBuilder, HistoryError, Op, OpIndex, Process, Record, Seek,
    TopicPartition,
};

/// The history and the counts progress reports show, shared by every client.
pub struct Recorder {
    state: Mutex<RecorderState>,
    /// Nanoseconds since the start of the run, on the runtime's monotonic clock.
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
}

#[derive(Default)]
struct RecorderState {
    history: HistoryBuilder,
    /// The highest acknowledged offset of each partition.
    acked: BTreeMap<TopicPartition, i64>,
    counts: Counts,
}

/// Operations so far, for progress reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub invoked: usize,
    pub acked: usize,
    pub failed: usize,
    pub indeterminate: usize,
    pub records_read: usize,
}

impl Recorder {
    pub fn new(clock: impl Fn() -> u64 + Send + Sync + 'static) -> Recorder {
        Recorder { state: Mutex::new(RecorderState::default()), clock: Box::new(clock) }
    }

    fn lock(&self) -> MutexGuard<'_, RecorderState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The clock is read under the lock, so times never go back along the history.
    fn record<T>(&self, f: impl FnOnce(&mut RecorderState, u64) -> Result<T, HistoryError>) -> T {
        let mut state = self.lock();
        let now = (self.clock)();
        // A history error is a bug of the workload, never of the brokers: fail loudly.
        f(&mut state, now).unwrap_or_else(|e| panic!("the workload recorded an ill-formed history: {e}"))
    }

    pub fn invoke(&self, process: Process, op: Op) -> OpIndex {
        self.record(|s, now| {
            s.counts.invoked += 1;
            s.history.invoke(process, now, op)
        })
    }

    pub fn ok(&self, op: OpIndex) {
        self.record(|s, now| s.history.ok(op, now))
    }

    fn ok_send(&self, op: OpIndex, tp: &TopicPartition, offset: i64) {
        self.record(|s, now| {
            s.counts.acked += 1;
            let max = s.acked.entry(tp.clone()).or_insert(offset);
            *max = (*max).max(offset);
            s.history.ok_send(op, now, offset)
        })
    }

    fn ok_poll(&self, op: OpIndex, records: Vec<Record>) {
        self.record(|s, now| {
            s.counts.records_read += records.len();
            s.history.ok_poll(op, now, records)
        })
    }

    fn ok_fetch_committed(&self, op: OpIndex, offsets: Vec<GroupOffset>) {
        self.record(|s, now| s.history.ok_fetch_committed(op, now, offsets))
    }

    /// The process's client is torn down: what it had in flight stays indeterminate.
    pub fn crash(&self, process: Process) {
        self.record(|s, now| s.history.crash(process, now))
    }

    fn fail(&self, op: OpIndex) {
        self.record(|s, now| {
            s.counts.failed += 1;
            s.history.fail(op, now)
        })
    }

    fn info(&self, op: OpIndex) {
        self.record(|s, now| {
            s.counts.indeterminate += 1;
            s.history.info(op, now)
        })
    }

    pub fn max_acked(&self, tp: &TopicPartition) -> Option<i64> {
        self.lock().acked.get(tp).copied()
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts
    }

    /// Nanoseconds since the start of the run.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    pub fn finish(&self) -> History {
        std::mem::take(&mut self.lock().history).finish()
    }
}

/// How a send ended, for the caller's log.
#[derive(Debug)]
pub enum SendOutcome {
    Acked(i64),
    /// Surely not written.
    Failed(String),
    /// May or may not have been written.
    Indeterminate(String),
}

/// How a poll ended, for the caller's log.
#[derive(Debug)]
pub struct PollOutcome {
    pub records: usize,
    pub high_watermark: i64,
    /// Why decoding stopped early, if it did.
    pub broken: Option<String>,
}

/// Errors after which the produce surely was not written: no attempt reached a broker that could have
/// appended it. Anything else (a timeout, a connection cut after sending, an error code) may hide a write.
pub fn surely_not_written(error: &Error) -> bool {
    match error {
        Error::Connect { .. } => true,
        Error::Unreachable(errors) => errors.iter().all(surely_not_written),
        _ => false,
    }
}

/// Sends one unique `value` to `tp` with acks=all, recorded as `process`. An answer later than `timeout`
/// is given up as indeterminate, and the client is replaced by `fresh()`: a request cut short may leave
/// its connection mid-exchange.
pub async fn send(
    recorder: &Recorder,
    client: &mut Client,
    fresh: impl FnOnce() -> Client,
    process: Process,
    tp: &TopicPartition,
    value: String,
    timeout: Duration,
) -> SendOutcome {
    let (op, record) = invoke_send(recorder, process, tp, value);
    let produced = tokio::time::timeout(timeout, client.produce(&tp.topic, tp.partition, &[record], Acks::All)).await;
    match produced {
        Ok(Ok(Some(offset))) => {
            recorder.ok_send(op, tp, offset);
            SendOutcome::Acked(offset)
        }
        Ok(Ok(None)) => {
            recorder.info(op);
            SendOutcome::Indeterminate("acknowledged without an offset".into())
        }
        Ok(Err(e)) if surely_not_written(&e) => {
            recorder.fail(op);
            SendOutcome::Failed(e.to_string())
        }
        Ok(Err(e)) => {
            recorder.info(op);
            SendOutcome::Indeterminate(e.to_string())
        }
        Err(_) => {
            recorder.info(op);
            *client = fresh();
            SendOutcome::Indeterminate(format!("no answer in {timeout:?}"))
        }
    }
}

/// Like [`send`], as `producer`'s next batch: an attempt whose fate is unknown is sent again with the same
/// sequence until `timeout`, since the leader writes a batch once however often it arrives. A batch still
/// unanswered then is indeterminate, and the producer starts over with a new producer id.
#[allow(clippy::too_many_arguments)]
pub async fn send_idempotent(
    recorder: &Recorder,
    client: &mut Client,
    fresh: impl Fn() -> Client,
    producer: &mut IdempotentProducer,
    process: Process,
    tp: &TopicPartition,
    value: String,
    timeout: Duration,
) -> SendOutcome {
    let (op, record) = invoke_send(recorder, process, tp, value);
    let deadline = tokio::time::Instant::now() + timeout;
    let sequence = match next_sequence(client, &fresh, producer, tp, deadline, timeout).await {
        Ok(sequence) => sequence,
        // Nothing was sent yet.
        Err(why) => {
            recorder.fail(op);
            return SendOutcome::Failed(why);
        }
    };
    let mut delivered = false;
    let why = loop {
        let records = std::slice::from_ref(&record);
        let attempt =
            tokio::time::timeout(left(deadline), client.produce_idempotent(&tp.topic, tp.partition, records, sequence));
        let error = match attempt.await {
            Ok(Ok(offset)) => {
                producer.acknowledged(&tp.topic, tp.partition, sequence, 1);
                recorder.ok_send(op, tp, offset);
                return SendOutcome::Acked(offset);
            }
            Ok(Err(e)) => e,
            Err(_) => {
                *client = fresh();
                delivered = true;
                break format!("no answer in {timeout:?}");
            }
        };
        delivered |= !surely_not_written(&error);
        if needs_new_producer_id(&error) {
            producer.reset();
            break error.to_string();
        }
        if tokio::time::Instant::now() + RETRY_PAUSE >= deadline {
            break error.to_string();
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    };
    if delivered {
        producer.reset();
        recorder.info(op);
        SendOutcome::Indeterminate(why)
    } else {
        recorder.fail(op);
        SendOutcome::Failed(why)
    }
}

/// How a pipelined burst of sends ended, for the caller's log.
#[derive(Debug, Default)]
pub struct PipelinedSends {
    /// Each value that was invoked, in order, with its outcome (the values after a failure that
    /// were never sent are not in the history, nor here).
    pub outcomes: Vec<(String, SendOutcome)>,
    /// The most produce requests that were in flight at once on one connection.
    pub max_in_flight: usize,
    /// How many times the unanswered batches were written again.
    pub retries: usize,
    /// Why the unanswered batches were given up, if any were.
    pub gave_up: Option<String>,
}

/// One batch of a pipelined burst.
struct Batch {
    value: String,
    sequence: ProducerSequence,
    op: Option<(OpIndex, ProducerRecord)>,
    /// Some attempt may have reached a broker.
    delivered: bool,
    offset: Option<i64>,
}

/// How a round of a pipelined burst ended.
enum RoundEnd {
    /// Worth another round: the first unanswered batch's error, if it got one.
    Retry(Option<Error>),
    /// Give up on the unanswered batches: why.
    GiveUp(String),
}

/// Sends `values` to `tp` as `producer`'s next batches, one record each, with acks=all and pipelined
/// as librdkafka's idempotent producer does: up to `max_in_flight` Produce requests in flight on one
/// connection to the leader, successive sequences, the answers read in order. Each value is its own
/// send op, invoked just before its batch is first written. A round writes every unanswered batch
/// (again, with its sequence) and stops writing at the first error; while the first unanswered batch
/// fails with an error that allows it, another round follows until `timeout`. Then the unanswered
/// batches are indeterminate (or failed if none was ever written) and the producer starts over with
/// a new producer id.
#[allow(clippy::too_many_arguments)]
pub async fn send_idempotent_pipelined(
    recorder: &Recorder,
    client: &mut Client,
    fresh: impl Fn() -> Client,
    producer: &mut IdempotentProducer,
    process: Process,
    tp: &TopicPartition,
    values: Vec<String>,
    max_in_flight: usize,
    timeout: Duration,
) -> PipelinedSends {
    let mut sends = PipelinedSends::default();
    let Some(first_value) = values.first() else { return sends };
    let deadline = tokio::time::Instant::now() + timeout;
    let first = match next_sequence(client, &fresh, producer, tp, deadline, timeout).await {
        Ok(sequence) => sequence,
        // Nothing was sent: the first value's op fails, the others never start.
        Err(why) => {
            let (op, _) = invoke_send(recorder, process, tp, first_value.clone());
            recorder.fail(op);
            sends.outcomes.push((first_value.clone(), SendOutcome::Failed(why)));
            return sends;
        }
    };
    let mut batches: Vec<Batch> = (0..)
        .zip(values)
        .map(|(i, value)| Batch { value, sequence: first.after(i), op: None, delivered: false, offset: None })
        .collect();
    let why = loop {
        let end =
            pipeline_round(recorder, client, process, tp, &mut batches, max_in_flight, deadline, &mut sends).await;
        let error = match end {
            RoundEnd::Retry(_) if batches.iter().all(|b| b.offset.is_some()) => break None,
            RoundEnd::Retry(error) => error,
            RoundEnd::GiveUp(why) => {
                *client = fresh();
                break Some(why);
            }
        };
        let why = error.as_ref().map_or_else(|| "no answer".to_string(), Error::to_string);
        if error.as_ref().is_some_and(needs_new_producer_id) || tokio::time::Instant::now() + RETRY_PAUSE >= deadline {
            break Some(why);
        }
        sends.retries += 1;
        tokio::time::sleep(RETRY_PAUSE).await;
    };
    // The answered prefix moves the sequence on; an unanswered batch that may have been written
    // leaves no later sequence of this producer id acceptable.
    let answered = batches.iter().take_while(|b| b.offset.is_some()).count();
    if let Some(last) = answered.checked_sub(1) {
        producer.acknowledged(&tp.topic, tp.partition, batches[last].sequence, 1);
    }
    if batches.iter().any(|b| b.offset.is_none() && b.delivered) {
        producer.reset();
    }
    sends.gave_up = why.clone();
    for batch in batches {
        let Some((op, _)) = batch.op else { continue };
        let outcome = match (batch.offset, &why) {
            (Some(offset), _) => SendOutcome::Acked(offset),
            (None, why) => {
                let why = why.clone().unwrap_or_default();
                if batch.delivered {
                    recorder.info(op);
                    SendOutcome::Indeterminate(why)
                } else {
                    recorder.fail(op);
                    SendOutcome::Failed(why)
                }
            }
        };
        sends.outcomes.push((batch.value, outcome));
    }
    sends
}

/// One round of [`send_idempotent_pipelined`]: writes the unanswered `batches` in order to the
/// leader's connection, at most `max_in_flight` unanswered at once, no more after an error, and
/// reads every answer due. An acknowledged batch is recorded ok at once.
#[allow(clippy::too_many_arguments)]
async fn pipeline_round(
    recorder: &Recorder,
    client: &mut Client,
    process: Process,
    tp: &TopicPartition,
    batches: &mut [Batch],
    max_in_flight: usize,
    deadline: tokio::time::Instant,
    sends: &mut PipelinedSends,
) -> RoundEnd {
    let pending: Vec<usize> = (0..batches.len()).filter(|&i| batches[i].offset.is_none()).collect();
    let mut pipeline =
        match tokio::time::timeout(left(deadline), client.produce_pipeline(&tp.topic, tp.partition)).await {
            Ok(Ok(pipeline)) => pipeline,
            Ok(Err(e)) => return RoundEnd::Retry(Some(e)),
            Err(_) => return RoundEnd::GiveUp("no leader connection in time".into()),
        };
    // The first error of the round, kept if it is the first unanswered batch's.
    let mut first_error: Option<(usize, Error)> = None;
    let (mut written, mut read) = (0, 0);
    while read < pending.len() {
        while first_error.is_none() && written < pending.len() && written - read < max_in_flight.max(1) {
            let batch = &mut batches[pending[written]];
            let (_, record) = batch.op.get_or_insert_with(|| invoke_send(recorder, process, tp, batch.value.clone()));
            batch.delivered = true;
            let write = pipeline.write(std::slice::from_ref(record), batch.sequence);
            match tokio::time::timeout(left(deadline), write).await {
                Ok(Ok(())) => written += 1,
                Ok(Err(e)) => first_error = Some((written, e)),
                Err(_) => return RoundEnd::GiveUp("no write in time".into()),
            }
            sends.max_in_flight = sends.max_in_flight.max(pipeline.in_flight());
        }
        if read == written {
            break;
        }
        let batch = &mut batches[pending[read]];
        match tokio::time::timeout(left(deadline), pipeline.read()).await {
            Ok(Ok(offset)) => {
                batch.offset = Some(offset);
                if let Some((op, _)) = &batch.op {
                    recorder.ok_send(*op, tp, offset);
                }
            }
            Ok(Err(e)) => {
                if first_error.is_none() {
                    first_error = Some((read, e));
                }
            }
            Err(_) => return RoundEnd::GiveUp("no answer in time".into()),
        }
        read += 1;
    }
    let first_unanswered = pending.iter().position(|&i| batches[i].offset.is_none());
    match (first_error, first_unanswered) {
        (Some((at, e)), Some(first)) if at == first => RoundEnd::Retry(Some(e)),
        _ => RoundEnd::Retry(None),
    }
}

/// The pause between an idempotent producer's attempts at a batch.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// `producer`'s next sequence for `tp` (a producer id first, if it has none), or why there is none
/// by `deadline`; a client that ran out of time is replaced, as it may be mid-request.
async fn next_sequence(
    client: &mut Client,
    fresh: &impl Fn() -> Client,
    producer: &mut IdempotentProducer,
    tp: &TopicPartition,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<ProducerSequence, String> {
    match tokio::time::timeout(left(deadline), producer.next_batch(client, &tp.topic, tp.partition)).await {
        Ok(Ok(sequence)) => Ok(sequence),
        Ok(Err(e)) => Err(format!("no producer id: {e}")),
        Err(_) => {
            *client = fresh();
            Err(format!("no producer id in {timeout:?}"))
        }
    }
}

/// The time until `deadline` (madsim has no `timeout_at`).
fn left(deadline: tokio::time::Instant) -> Duration {
    deadline.saturating_duration_since(tokio::time::Instant::now())
}

/// Records the invocation of a send of `value`, and the record that carries it.
fn invoke_send(recorder: &Recorder, process: Process, tp: &TopicPartition, value: String) -> (OpIndex, ProducerRecord) {
    let op = recorder
        .invoke(process, Op::Send(crate::Send { tp: tp.clone(), key: None, value: value.clone(), offset: None }));
    let timestamp = 1_700_000_000_000 + (recorder.now() / 1_000_000) as i64;
    (op, ProducerRecord { key: None, value: Some(Bytes::from(value)), timestamp })
}

/// Reads `tp` once from `*position` and advances it past what was read; a failed read is a failed poll.
#[allow(clippy::too_many_arguments)]
pub async fn poll(
    recorder: &Recorder,
    client: &mut Client,
    fresh: impl FnOnce() -> Client,
    process: Process,
    tp: &TopicPartition,
    position: &mut i64,
    max_wait: Duration,
    timeout: Duration,
) -> Result<PollOutcome, String> {
    const FETCH_BYTES: i32 = 1 << 20;
    let op = recorder.invoke(process, Op::Poll(Vec::new()));
    let fetch = client.fetch(&tp.topic, tp.partition, *position, max_wait, FETCH_BYTES);
    let answer = tokio::time::timeout(timeout, fetch).await.ok();
    let fetched = read_answer(recorder, op, client, fresh, timeout, answer)?;
    let (records, next, undecodable) = records_from(tp, &fetched.batches, *position);
    let outcome = PollOutcome {
        records: records.len(),
        high_watermark: fetched.high_watermark,
        broken: undecodable.or(fetched.broken),
    };
    recorder.ok_poll(op, records);
    *position = next;
    Ok(outcome)
}

/// The answer to read `op` (`None`: none within `timeout`). A read changes nothing on the broker, so
/// any error or timeout fails it; the client is replaced after a timeout.
fn read_answer<T, E: std::fmt::Display>(
    recorder: &Recorder,
    op: OpIndex,
    client: &mut Client,
    fresh: impl FnOnce() -> Client,
    timeout: Duration,
    answer: Option<Result<T, E>>,
) -> Result<T, String> {
    let why = match answer {
        Some(Ok(answer)) => return Ok(answer),
        Some(Err(e)) => e.to_string(),
        None => {
            *client = fresh();
            format!("no answer in {timeout:?}")
        }
    };
    recorder.fail(op);
    Err(why)
}

/// The records of `batches` from offset `from` on, the offset after the last, and why decoding stopped
/// early if it did (the records before the undecodable batch are kept).
fn records_from(tp: &TopicPartition, batches: &[ConsumedBatch], from: i64) -> (Vec<Record>, i64, Option<String>) {
    let text = |bytes: &Option<Bytes>| bytes.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    let mut records = Vec::new();
    let mut next = from;
    for batch in batches {
        let batch_records = match &batch.records {
            Ok(batch_records) => batch_records,
            Err(why) => return (records, next, Some(format!("batch at {}: {why}", batch.base_offset))),
        };
        for r in batch_records {
            if r.offset < next {
                continue;
            }
            records.push(Record {
                tp: tp.clone(),
                offset: r.offset,
                key: text(&r.key),
                value: text(&r.value).unwrap_or_default(),
            });
            next = r.offset + 1;
        }
    }
    (records, next, None)
}

/// Assigns `partitions` to a consumer and seeks each to offset 0: the positions to poll from.
pub fn assign_from_start(
    recorder: &Recorder,
    process: Process,
    partitions: &[TopicPartition],
) -> Vec<(TopicPartition, i64)> {
    assign(recorder, process, partitions);
    for tp in partitions {
        seek(recorder, process, tp, 0);
    }
    partitions.iter().map(|tp| (tp.clone(), 0)).collect()
}

/// A consumer's partitions are now `partitions`; it has no position in any until a seek.
pub fn assign(recorder: &Recorder, process: Process, partitions: &[TopicPartition]) {
    let op = recorder.invoke(process, Op::Assign(partitions.to_vec()));
    recorder.ok(op);
}

/// A consumer's next read of `tp` starts at `offset`.
pub fn seek(recorder: &Recorder, process: Process, tp: &TopicPartition, offset: i64) {
    let op = recorder.invoke(process, Op::Seek(Seek { tp: tp.clone(), offset }));
    recorder.ok(op);
}

/// Errors after which a commit surely was not written: the coordinator refuses a member, a generation
/// or a coordinator that is not (yet) its own before it writes, and an error of the lookup means the
/// commit was never sent. NOT_COORDINATOR may also come from a leader that stepped down after appending.
fn commit_surely_not_written(error: &GroupError) -> bool {
    const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    match error {
        GroupError::Rejoin(_) => true,
        GroupError::CoordinatorMoved(_) => {
            matches!(error.code(), Some(COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE))
        }
        GroupError::Client(e) => surely_not_written(e),
    }
}

/// Commits `offsets` (the next offset to read, by partition of the member's topic) as `member` of its
/// group, recorded as `process`: ok when acknowledged, fail when surely not written, else info.
pub async fn commit(
    recorder: &Recorder,
    client: &mut Client,
    member: &mut Membership,
    process: Process,
    offsets: &BTreeMap<i32, i64>,
) -> Result<(), GroupError> {
    let topic = member.topic().to_string();
    let offsets_of =
        offsets.iter().map(|(&partition, &offset)| GroupOffset { tp: TopicPartition::new(&topic, partition), offset });
    let op = recorder
        .invoke(process, Op::Commit(Commit { group: member.group().to_string(), offsets: offsets_of.collect() }));
    let committed = member.commit(client, offsets).await;
    match &committed {
        Ok(()) => recorder.ok(op),
        Err(e) if commit_surely_not_written(e) => recorder.fail(op),
        Err(_) => recorder.info(op),
    }
    committed
}

/// Reads `group`'s committed offsets of `partitions` (-1 where it committed none), recorded as
/// `process`.
pub async fn fetch_committed(
    recorder: &Recorder,
    client: &mut Client,
    fresh: impl FnOnce() -> Client,
    process: Process,
    group: &str,
    partitions: &[TopicPartition],
    timeout: Duration,
) -> Result<Vec<GroupOffset>, String> {
    let op = recorder.invoke(
        process,
        Op::FetchCommitted(FetchCommitted { group: group.to_string(), partitions: partitions.to_vec() }),
    );
    let answer = tokio::time::timeout(timeout, client.committed_offsets(group)).await.ok();
    let committed = read_answer(recorder, op, client, fresh, timeout, answer)?;
    let offset_of = |tp: &TopicPartition| {
        let found = committed.iter().find(|c| c.topic == tp.topic && c.partition == tp.partition);
        found.map_or(-1, |c| c.offset)
    };
    let offsets: Vec<GroupOffset> =
        partitions.iter().map(|tp| GroupOffset { tp: tp.clone(), offset: offset_of(tp) }).collect();
    recorder.ok_fetch_committed(op, offsets.clone());
    Ok(offsets)
}
