//! The elastic scenario (issue 8): under the workload, the cluster grows by two brokers, rebalances its
//! replicas over them, gives up broker 1 (its replicas moved off, then unregistered and stopped) and loses
//! broker 2 (SIGKILL, left dead). Each step is timed, and so is each replica move; after the run, each
//! step gets the longest stretch without an acknowledged write on a partition.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use log_core::metadata::plan;
use raft_node::client::{moves_between, Client, Move, Placement};
use serde::Serialize;

use super::cluster::Cluster;
use super::nemesis::sleep_unless;
use super::workload::Workload;
use super::{progress, Clock, RunError, TOPIC};
use crate::{History, Op, Outcome, Process, TopicPartition};

/// Brokers the scenario adds to the first ones.
pub const ADDED: usize = 2;
/// The process the scenario's administrative client is named after (it records nothing).
const ADMIN: Process = Process(0);
/// A step that has not finished by then is reported unfinished (and the run invalid).
const STEP_DEADLINE: Duration = Duration::from_secs(120);
/// How often moves in progress and leaders are looked at: the resolution of the measured times.
const POLL: Duration = Duration::from_millis(250);
/// A stopped broker that has not exited by then is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// Start these brokers and wait until they are registered.
    Grow(Vec<i32>),
    /// Spread the replicas evenly over the registered brokers; wait for the moves.
    Rebalance,
    /// Move every replica off the broker, wait for the moves, unregister it, stop its process.
    Decommission(i32),
    /// SIGKILL the broker (left dead); wait until no partition is led by it.
    Kill(i32),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Grow(ids) => write!(f, "start brokers {}", list(ids)),
            Step::Rebalance => write!(f, "rebalance"),
            Step::Decommission(id) => write!(f, "decommission broker {id}"),
            Step::Kill(id) => write!(f, "kill broker {id}"),
        }
    }
}

/// The steps at their fractions of the run; a step late because the one before took long starts when
/// that one ends.
fn schedule(first: usize) -> Vec<(f64, Step)> {
    let added = (first + 1..=first + ADDED).map(|id| id as i32).collect();
    vec![(0.15, Step::Grow(added)), (0.3, Step::Rebalance), (0.5, Step::Decommission(1)), (0.75, Step::Kill(2))]
}

/// When a step ran, what it moved, and how writes fared meanwhile.
#[derive(Clone, Debug, Serialize)]
pub struct StepWindow {
    pub step: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Why the step did not finish, if it did not.
    pub unfinished: Option<String>,
    pub moves: Vec<MoveTiming>,
    /// The longest interval between acknowledged writes of a partition, among those that ended during
    /// this step or before the next one (the end of the workload for the last): the write that ended it
    /// came after this step began.
    pub longest_write_gap: Option<WriteGap>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MoveTiming {
    pub topic: String,
    pub partition: i32,
    pub from: Vec<i32>,
    pub to: Vec<i32>,
    /// From the submission until the move was no longer in progress; `None` if it never finished.
    pub took_ns: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WriteGap {
    pub partition: TopicPartition,
    pub from_ns: u64,
    pub to_ns: u64,
    pub gap_ns: u64,
}

/// Awaits `$check` (a future over `$self.admin`, made anew each time) every [`POLL`] until it is
/// `Ok(answer)`; `Err` with its last error at `$deadline` or when the run ends. A try with no answer in
/// 5 s replaces the client: the request cut short may leave its connection mid-exchange.
macro_rules! until {
    ($self:ident, $deadline:expr, $stop:expr, $check:expr) => {
        loop {
            const ANSWER: Duration = Duration::from_secs(5);
            let why = match tokio::time::timeout(ANSWER, $check).await {
                Ok(Ok(answer)) => break Ok(answer),
                Ok(Err(why)) => why,
                Err(_) => {
                    $self.admin = $self.workload.client(ADMIN);
                    format!("no answer in {ANSWER:?}")
                }
            };
            if let Err(why) = give_up(why, $deadline, $stop) {
                break Err(why);
            }
            tokio::time::sleep(POLL).await;
        }
    };
}

/// Runs the steps, then waits for `stop`. Step windows go to `steps` as each ends.
pub struct Elastic {
    pub cluster: Arc<Cluster>,
    pub workload: Arc<Workload>,
    pub admin: Client,
    pub first: usize,
    pub duration: Duration,
    pub steps: Arc<Mutex<Vec<StepWindow>>>,
    pub clock: Clock,
}

impl Elastic {
    pub async fn run(mut self, stop: Arc<AtomicBool>) -> Result<(), RunError> {
        let begin = tokio::time::Instant::now();
        for (fraction, step) in schedule(self.first) {
            let at = begin + self.duration.mul_f64(fraction);
            sleep_unless(&stop, at.saturating_duration_since(tokio::time::Instant::now())).await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let start_ns = (self.clock)();
            progress(start_ns, &format!("step: {step}"));
            let mut moves = Vec::new();
            let outcome = self.apply(&step, &mut moves, &stop).await?;
            let end_ns = (self.clock)();
            let took = (end_ns - start_ns) as f64 / 1e9;
            progress(
                end_ns,
                &match &outcome {
                    Ok(()) => format!("step done in {took:.1} s: {step}"),
                    Err(why) => format!("step UNFINISHED after {took:.1} s: {step}: {why}"),
                },
            );
            let unfinished = outcome.err();
            let failed = unfinished.is_some();
            let window =
                StepWindow { step: step.to_string(), start_ns, end_ns, unfinished, moves, longest_write_gap: None };
            self.steps.lock().unwrap_or_else(PoisonError::into_inner).push(window);
            if failed {
                // The later steps assume this one happened.
                break;
            }
        }
        // The run sets `stop` before its duration has passed again.
        sleep_unless(&stop, self.duration).await;
        Ok(())
    }

    /// `Ok(Err(why))`: the step did not finish; `Err`: the harness failed.
    async fn apply(
        &mut self,
        step: &Step,
        moves: &mut Vec<MoveTiming>,
        stop: &AtomicBool,
    ) -> Result<Result<(), String>, RunError> {
        let deadline = tokio::time::Instant::now() + STEP_DEADLINE;
        match step {
            Step::Grow(ids) => {
                ids.iter().try_for_each(|&id| self.cluster.start(id as usize - 1))?;
                Ok(until!(self, deadline, stop, registered(&mut self.admin, ids)))
            }
            Step::Rebalance => {
                let even = |brokers: &[i32], lists: &[Vec<i32>]| Ok(plan::rebalance(brokers, lists));
                Ok(self.move_replicas(even, moves, deadline, stop).await)
            }
            Step::Decommission(id) => {
                let off = |brokers: &[i32], lists: &[Vec<i32>]| {
                    plan::decommission(brokers, lists, *id)
                        .map_err(|p| format!("no broker can take partition {p}'s replica on {id}"))
                };
                if let Err(why) = self.move_replicas(off, moves, deadline, stop).await {
                    return Ok(Err(why));
                }
                if let Err(why) = until!(self, deadline, stop, unregister(&mut self.admin, *id)) {
                    return Ok(Err(format!("unregister broker {id}: {why}")));
                }
                progress((self.clock)(), &format!("broker {id} unregistered"));
                self.cluster.terminate(*id as usize - 1, STOP_GRACE).await?;
                progress((self.clock)(), &format!("broker {id} stopped (SIGTERM)"));
                Ok(Ok(()))
            }
            Step::Kill(id) => {
                self.cluster.kill(*id as usize - 1)?;
                Ok(until!(self, deadline, stop, led_elsewhere(&mut self.admin, *id)))
            }
        }
    }

    /// Moves the replicas where `planner` puts them (given the registered brokers and the replicas now).
    async fn move_replicas(
        &mut self,
        planner: impl Fn(&[i32], &[Vec<i32>]) -> Result<Vec<Vec<i32>>, String>,
        timings: &mut Vec<MoveTiming>,
        deadline: tokio::time::Instant,
        stop: &AtomicBool,
    ) -> Result<(), String> {
        let (brokers, current) = until!(self, deadline, stop, self.admin.placement())?;
        let lists: Vec<Vec<i32>> = current.iter().map(|p| p.replicas.clone()).collect();
        let planned = moves_between(&current, planner(&brokers, &lists)?);
        self.carry_out(&current, planned, timings, deadline, stop).await
    }

    /// Submits the moves and waits until none is in progress, timing each; then checks that every
    /// partition has the replicas planned.
    async fn carry_out(
        &mut self,
        current: &[Placement],
        planned: Vec<Move>,
        timings: &mut Vec<MoveTiming>,
        deadline: tokio::time::Instant,
        stop: &AtomicBool,
    ) -> Result<(), String> {
        let before: BTreeMap<(&str, i32), &Vec<i32>> =
            current.iter().map(|p| ((p.topic.as_str(), p.partition), &p.replicas)).collect();
        for m in &planned {
            let from = before.get(&(m.topic.as_str(), m.partition)).map_or_else(Vec::new, |r| r.to_vec());
            let to = m.replicas.clone().unwrap_or_default();
            let line = format!("  move {}/{}: [{}] -> [{}]", m.topic, m.partition, list(&from), list(&to));
            progress((self.clock)(), &line);
            timings.push(MoveTiming { topic: m.topic.clone(), partition: m.partition, from, to, took_ns: None });
        }
        if planned.is_empty() {
            return Ok(());
        }
        let submitted = (self.clock)();
        let answers = self.admin.reassign(&planned).await.map_err(|e| format!("reassign: {e}"))?;
        let refused: Vec<String> = planned
            .iter()
            .zip(answers)
            .filter_map(|(m, a)| Some(format!("{}/{}: {}", m.topic, m.partition, a.err()?)))
            .collect();
        if !refused.is_empty() {
            return Err(format!("moves refused: {}", refused.join("; ")));
        }
        let clock = self.clock.clone();
        until!(self, deadline, stop, moves_done(&mut self.admin, timings, submitted, &clock))?;
        let cluster = self.admin.metadata().await.map_err(|e| e.to_string())?;
        let wrong: Vec<String> = timings
            .iter()
            .filter_map(|t| {
                let p = cluster.topics.get(&t.topic)?.partitions.iter().find(|p| p.partition == t.partition)?;
                let (mut now, mut to) = (p.replicas.clone(), t.to.clone());
                now.sort_unstable();
                to.sort_unstable();
                let planned =
                    format!("{}/{} has [{}], planned [{}]", t.topic, t.partition, list(&p.replicas), list(&t.to));
                (now != to).then_some(planned)
            })
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }
}

/// `Ok` once every broker of `ids` is registered.
async fn registered(client: &mut Client, ids: &[i32]) -> Result<(), String> {
    let cluster = client.metadata().await.map_err(|e| e.to_string())?;
    let missing: Vec<i32> = ids.iter().copied().filter(|id| !cluster.brokers.contains_key(id)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("brokers {} not registered", list(&missing)))
    }
}

/// Unregisters `broker`; `Ok` also when it is no longer registered (an earlier try whose answer was
/// lost took it out).
async fn unregister(client: &mut Client, broker: i32) -> Result<(), String> {
    let refused = match client.unregister_broker(broker).await {
        Ok(()) => return Ok(()),
        Err(e) => e.to_string(),
    };
    let cluster = client.metadata().await.map_err(|e| e.to_string())?;
    if cluster.brokers.contains_key(&broker) {
        Err(refused)
    } else {
        Ok(())
    }
}

/// `Ok` once every partition of the topic has a leader other than `dead`.
async fn led_elsewhere(client: &mut Client, dead: i32) -> Result<(), String> {
    let topic = client.topic(TOPIC).await.map_err(|e| e.to_string())?;
    let waiting: Vec<i32> =
        topic.partitions.iter().filter(|p| p.leader.is_none_or(|l| l == dead)).map(|p| p.partition).collect();
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(format!("partitions {} without a live leader", list(&waiting)))
    }
}

/// Times the moves no longer in progress (from `submitted`); `Ok` once none is. Prints a progress line
/// when more have finished.
async fn moves_done(
    client: &mut Client,
    timings: &mut [MoveTiming],
    submitted: u64,
    clock: &Clock,
) -> Result<(), String> {
    let moving = client.reassignments().await.map_err(|e| e.to_string())?;
    let now = clock();
    let before = timings.iter().filter(|t| t.took_ns.is_some()).count();
    for t in timings.iter_mut().filter(|t| t.took_ns.is_none()) {
        if !moving.iter().any(|m| m.topic == t.topic && m.partition == t.partition) {
            t.took_ns = Some(now - submitted);
        }
    }
    let finished = timings.iter().filter(|t| t.took_ns.is_some()).count();
    if finished > before {
        let left: Vec<String> =
            moving.iter().map(|m| format!("{}/{} adding [{}]", m.topic, m.partition, list(&m.adding))).collect();
        let left = if left.is_empty() { "none".to_string() } else { left.join(", ") };
        progress(now, &format!("  {finished} of {} moves done; in progress: {left}", timings.len()));
    }
    if finished == timings.len() {
        Ok(())
    } else {
        Err(format!("{} of {} moves unfinished", timings.len() - finished, timings.len()))
    }
}

/// After a try that failed with `why`: `Err` to give up (at `deadline`, or when the run ends).
fn give_up(why: String, deadline: tokio::time::Instant, stop: &AtomicBool) -> Result<(), String> {
    if stop.load(Ordering::Relaxed) {
        Err(format!("{why} when the run ended"))
    } else if tokio::time::Instant::now() >= deadline {
        Err(format!("{why} after {STEP_DEADLINE:?}"))
    } else {
        Ok(())
    }
}

/// Sets each step's longest write gap: the longest interval between consecutive acknowledged writes of
/// a partition that ended during the step or before the next step (`until_ns` for the last). Each gap
/// counts for one step only: a write stalled by a step is acknowledged after the step began.
pub fn longest_write_gaps(history: &History, steps: &mut [StepWindow], until_ns: u64) {
    let mut acked: BTreeMap<TopicPartition, Vec<u64>> = BTreeMap::new();
    for op in history.operations() {
        if let (Op::Send(send), Outcome::Ok, Some(time)) = (&op.op, op.outcome, op.complete_time) {
            acked.entry(send.tp.clone()).or_default().push(time);
        }
    }
    acked.values_mut().for_each(|times| times.sort_unstable());
    let ends: Vec<u64> = steps.iter().skip(1).map(|s| s.start_ns).chain([until_ns]).collect();
    for (step, end) in steps.iter_mut().zip(ends) {
        let start = step.start_ns;
        step.longest_write_gap = acked
            .iter()
            .flat_map(|(tp, times)| {
                times.windows(2).filter(move |w| start <= w[1] && w[1] < end).map(move |w| WriteGap {
                    partition: tp.clone(),
                    from_ns: w[0],
                    to_ns: w[1],
                    gap_ns: w[1] - w[0],
                })
            })
            .max_by_key(|gap| gap.gap_ns);
    }
}

fn list(ids: &[i32]) -> String {
    ids.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HistoryBuilder, Process, Send};

    #[test]
    fn each_step_gets_the_longest_write_gap_that_ended_in_it() {
        let mut history = HistoryBuilder::new();
        let mut n = 0;
        let mut ack = |history: &mut HistoryBuilder, partition: i32, at: u64| {
            let send =
                Send { tp: TopicPartition::new("t", partition), key: None, value: format!("v{n}"), offset: None };
            let op = history.invoke(Process(1), at - 1, Op::Send(send)).expect("invoke");
            history.ok_send(op, at, n).expect("ok");
            n += 1;
        };
        for (partition, at) in [(0, 10), (1, 12), (0, 20), (1, 50), (0, 60), (0, 65), (1, 70)] {
            ack(&mut history, partition, at);
        }
        let step = |start_ns| StepWindow {
            step: "s".into(),
            start_ns,
            end_ns: start_ns,
            unfinished: None,
            moves: Vec::new(),
            longest_write_gap: None,
        };
        let mut steps = [step(15), step(55), step(68)];
        longest_write_gaps(&history.finish(), &mut steps, 80);
        let gaps: Vec<(i32, u64)> = steps
            .iter()
            .map(|s| s.longest_write_gap.as_ref().map(|g| (g.partition.partition, g.gap_ns)).unwrap())
            .collect();
        // 15..55: partition 1 from 12 to 50 (0's from 20 to 60 ends later); 55..68: 0 from 20 to 60;
        // 68..80: 1 from 50 to 70.
        assert_eq!(gaps, [(1, 38), (0, 40), (1, 20)]);
    }
}
