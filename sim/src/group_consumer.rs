//! Group consumers: members of one consumer group reading the sim topic
//! through `raft_node::client::Membership`. Each joins, gets its range
//! assignment, seeks its partitions to the group's committed offsets, polls,
//! heartbeats and commits its positions, and rejoins on a rebalance or a
//! coordinator move. Until the drain, members also leave and come back, or
//! crash (abandoned without leaving: the coordinator must expire them), at
//! seeded random moments. After the producers stop, the drain: the group
//! consumes and commits until its committed offsets reach every partition's
//! end. Commits, committed-offset reads, assignments, seeks and crashes go to
//! the history.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jepsen_style::kafka;
use jepsen_style::{Process, TopicPartition};
use raft_node::client::{Client, GroupError, MemberConfig, Membership, OffsetSpec};
use slog::{info, Logger};
use tokio::time::Instant;

use crate::rng::Rng;
use crate::workload::{self, Workload, TOPIC};

pub const GROUP: &str = "keel-sim-group";
/// Members take processes 200, 201, ...; the drain's reader of committed offsets its own.
const FIRST_MEMBER: u64 = 200;
const DRAIN_PROCESS: u64 = 299;
/// The coordinator's minimum session.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(6);
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A member commits its positions every this many rounds of polls (every round while draining).
const COMMIT_EVERY: u64 = 3;
/// How long a member stays in the group before it leaves or crashes, and stays out after.
const CHURN_AFTER_MS: (u64, u64) = (5_000, 25_000);
const AWAY_MS: (u64, u64) = (500, 8_000);
const FETCH_COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);

/// What the members share: the workload, and the drain's progress.
pub struct Group {
    pub workload: Arc<Workload>,
    /// Producers stopped: no more churn, commit every round.
    draining: AtomicBool,
    /// The drain is over: members commit, leave and stop.
    finished: AtomicBool,
}

impl Group {
    pub fn new(workload: Arc<Workload>) -> Group {
        Group { workload, draining: AtomicBool::new(false), finished: AtomicBool::new(false) }
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn finished(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
    }

    fn log(&self) -> &Logger {
        &self.workload.log
    }
}

fn membership() -> Membership {
    Membership::new(MemberConfig {
        group: GROUP.into(),
        topic: TOPIC.into(),
        session_timeout: SESSION_TIMEOUT,
        rebalance_timeout: REBALANCE_TIMEOUT,
    })
}

/// Why a member stopped consuming its assignment.
enum Exit {
    /// Its generation ended (or it could not start): join again.
    Rejoin,
    /// Its time to leave or crash came.
    Churn,
    /// The drain is over.
    Finished,
}

/// Member number `slot` of the group, until the drain is over.
pub async fn member(group: Arc<Group>, slot: u64) {
    let process = FIRST_MEMBER + slot;
    let workload = group.workload.clone();
    let mut rng = Rng::new(workload.seed, 0x4752_4f55 + process);
    let mut client = workload.client(process);
    let mut member = membership();
    let mut churn_at = Instant::now() + rng.millis(CHURN_AFTER_MS.0, CHURN_AFTER_MS.1);
    while !group.finished() {
        let assignment = match member.join(&mut client).await {
            Ok(assignment) => assignment,
            Err(e) => {
                info!(group.log(), "group join"; "p" => process, "result" => %e);
                tokio::time::sleep(rng.millis(100, 500)).await;
                continue;
            }
        };
        let partitions = assignment.get(TOPIC).cloned().unwrap_or_default();
        info!(group.log(), "group assignment"; "p" => process, "generation" => member.generation(),
            "member" => member.member_id(), "partitions" => format!("{partitions:?}"));
        let exit = match start(&group, &mut client, process, &partitions).await {
            Some(positions) => consume(&group, &mut client, &mut member, process, &mut rng, positions, churn_at).await,
            None => Exit::Rejoin,
        };
        match exit {
            Exit::Rejoin => tokio::time::sleep(rng.millis(10, 200)).await,
            Exit::Churn if rng.chance(0.5) => {
                let left = member.leave(&mut client).await;
                info!(group.log(), "group leave"; "p" => process, "result" => result(&left));
                tokio::time::sleep(rng.millis(AWAY_MS.0, AWAY_MS.1)).await;
                churn_at = Instant::now() + rng.millis(CHURN_AFTER_MS.0, CHURN_AFTER_MS.1);
            }
            Exit::Churn => {
                info!(group.log(), "group member crashes"; "p" => process, "member" => member.member_id());
                workload.recorder.crash(Process(process));
                client = workload.client(process);
                member = membership();
                tokio::time::sleep(rng.millis(AWAY_MS.0, AWAY_MS.1)).await;
                churn_at = Instant::now() + rng.millis(CHURN_AFTER_MS.0, CHURN_AFTER_MS.1);
            }
            Exit::Finished => {
                let left = member.leave(&mut client).await;
                info!(group.log(), "group leave"; "p" => process, "result" => result(&left));
            }
        }
    }
}

/// Records the new assignment and seeks each partition to the group's
/// committed offset (0 when none): the positions to poll from, or `None`
/// when the committed offsets could not be read.
async fn start(group: &Group, client: &mut Client, process: u64, partitions: &[i32]) -> Option<BTreeMap<i32, i64>> {
    let workload = &group.workload;
    let tps: Vec<TopicPartition> = partitions.iter().map(|&p| TopicPartition::new(TOPIC, p)).collect();
    kafka::assign(&workload.recorder, Process(process), &tps);
    if tps.is_empty() {
        return Some(BTreeMap::new());
    }
    let fresh = || workload.client(process);
    let fetched = kafka::fetch_committed(
        &workload.recorder,
        client,
        fresh,
        Process(process),
        GROUP,
        &tps,
        FETCH_COMMITTED_TIMEOUT,
    )
    .await;
    let offsets = match fetched {
        Ok(offsets) => offsets,
        Err(why) => {
            info!(group.log(), "group fetch committed"; "p" => process, "result" => why);
            return None;
        }
    };
    let mut positions = BTreeMap::new();
    for committed in offsets {
        let offset = committed.offset.max(0);
        kafka::seek(&workload.recorder, Process(process), &committed.tp, offset);
        positions.insert(committed.tp.partition, offset);
    }
    Some(positions)
}

/// Polls the assigned partitions in turn, heartbeating and committing, until
/// the member must rejoin, churn or stop.
async fn consume(
    group: &Group,
    client: &mut Client,
    member: &mut Membership,
    process: u64,
    rng: &mut Rng,
    mut positions: BTreeMap<i32, i64>,
    churn_at: Instant,
) -> Exit {
    let workload = &group.workload;
    // What the group holds for these partitions, as far as this member knows.
    let mut committed = positions.clone();
    let mut heartbeat_at = Instant::now() + HEARTBEAT_INTERVAL;
    let mut rounds = 0u64;
    loop {
        if group.finished() {
            // Logged; the member leaves either way.
            let _ = commit(group, client, member, process, &positions, &mut committed).await;
            return Exit::Finished;
        }
        if !group.draining() && Instant::now() >= churn_at {
            return Exit::Churn;
        }
        for (&partition, position) in positions.iter_mut() {
            workload::poll(workload, client, process, partition, position).await;
        }
        rounds += 1;
        if rounds % COMMIT_EVERY == 0 || group.draining() {
            if let Err(GroupError::Rejoin(_)) = commit(group, client, member, process, &positions, &mut committed).await
            {
                return Exit::Rejoin;
            }
        }
        if Instant::now() >= heartbeat_at {
            heartbeat_at = Instant::now() + HEARTBEAT_INTERVAL;
            match member.heartbeat(client).await {
                Ok(()) => {}
                Err(e @ GroupError::Rejoin(_)) => {
                    info!(group.log(), "group heartbeat"; "p" => process, "result" => %e);
                    // A rebalance keeps the generation until it completes: hand the positions over first.
                    if e.code() == Some(log_core::ErrorCode::RebalanceInProgress.code()) {
                        let _ = commit(group, client, member, process, &positions, &mut committed).await;
                    }
                    return Exit::Rejoin;
                }
                Err(e) => info!(group.log(), "group heartbeat"; "p" => process, "result" => %e),
            }
        }
        tokio::time::sleep(rng.millis(100, 600)).await;
    }
}

/// Commits the positions that moved since the last commit.
async fn commit(
    group: &Group,
    client: &mut Client,
    member: &mut Membership,
    process: u64,
    positions: &BTreeMap<i32, i64>,
    committed: &mut BTreeMap<i32, i64>,
) -> Result<(), GroupError> {
    let moved: BTreeMap<i32, i64> =
        positions.iter().filter(|(p, o)| committed.get(p) != Some(o)).map(|(&p, &o)| (p, o)).collect();
    if moved.is_empty() {
        return Ok(());
    }
    let done = kafka::commit(&group.workload.recorder, client, member, Process(process), &moved).await;
    info!(group.log(), "group commit"; "p" => process, "offsets" => format!("{moved:?}"), "result" => result(&done));
    if done.is_ok() {
        committed.extend(moved);
    }
    done
}

fn result(outcome: &Result<(), GroupError>) -> String {
    match outcome {
        Ok(()) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

/// After the producers stopped: the group consumes and commits until its
/// committed offset of every partition reaches the partition's end (its
/// high watermark now), then its members leave. Returns what was not
/// reached by `deadline`.
pub async fn drain(group: Arc<Group>, deadline: Duration) -> Option<String> {
    group.draining.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let workload = group.workload.clone();
    let mut client = workload.client(DRAIN_PROCESS);
    let tps: Vec<TopicPartition> = (0..workload.partitions).map(|p| TopicPartition::new(TOPIC, p)).collect();
    let mut ends = BTreeMap::new();
    // Why the drain is not over yet, for the failure.
    let mut behind = String::new();
    while start.elapsed() < deadline {
        for tp in &tps {
            if let Entry::Vacant(unknown) = ends.entry(tp.partition) {
                match client.list_offset(TOPIC, tp.partition, OffsetSpec::Latest).await {
                    Ok(Some(end)) => {
                        unknown.insert(end);
                    }
                    other => behind = format!("the end of partition {} unknown: {other:?}", tp.partition),
                }
            }
        }
        if ends.len() == tps.len() {
            let fresh = || workload.client(DRAIN_PROCESS);
            let process = Process(DRAIN_PROCESS);
            let fetched = kafka::fetch_committed(
                &workload.recorder,
                &mut client,
                fresh,
                process,
                GROUP,
                &tps,
                FETCH_COMMITTED_TIMEOUT,
            )
            .await;
            match fetched {
                Ok(offsets) => {
                    let short: Vec<String> = offsets
                        .iter()
                        .filter(|c| c.offset.max(0) < ends[&c.tp.partition])
                        .map(|c| {
                            let end = ends[&c.tp.partition];
                            format!("partition {} committed {} of {end}", c.tp.partition, c.offset)
                        })
                        .collect();
                    if short.is_empty() {
                        info!(group.log(), "group drained"; "after_ms" => start.elapsed().as_millis() as u64);
                        group.finished.store(true, Ordering::Relaxed);
                        return None;
                    }
                    behind = short.join(", ");
                }
                Err(why) => behind = format!("the committed offsets unreadable: {why}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    group.finished.store(true, Ordering::Relaxed);
    Some(behind)
}
