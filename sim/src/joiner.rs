//! Elastic membership while the workload runs (`--join 1`): the broker
//! beyond the founders starts mid-run and joins (a metadata learner first),
//! the replicas are spread evenly again (onto it), then one founder, a
//! metadata voter, is decommissioned and removed for good: the metadata
//! group replaces it with the joiner. Plans are `keel cluster`'s, submitted
//! and awaited through the Kafka API. With `--auto-rebalance 1` the brokers
//! spread the replicas themselves: the task submits nothing and only logs
//! each settled placement it sees (`spread`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use log_core::metadata::plan;
use raft_node::client::{Client, Move};
use slog::info;
use tokio::time::Instant;

use crate::workload::Workload;

/// The joiner task's client id (`sim-N`); it records nothing in the history.
const JOINER: u64 = 98;
const POLL: Duration = Duration::from_millis(500);

/// Waits for `joiner` to register, rebalances onto it, then takes `leaver`
/// out of the cluster; gives up at `end`.
pub async fn joiner(workload: Arc<Workload>, joiner: u8, leaver: u8, end: Instant) {
    let log = workload.log().clone();
    let mut client = workload.client(JOINER);
    let running = |w: &Workload| !w.stopped() && Instant::now() < end;
    let (joiner, leaver) = (i32::from(joiner), i32::from(leaver));
    await_registration(&workload, &mut client, joiner, end).await;
    for (what, gone) in [("rebalance", None), ("decommission", Some(leaver))] {
        let moves = loop {
            if !running(&workload) {
                return;
            }
            match planned(&mut client, gone).await {
                Ok(moves) => break moves,
                Err(why) => info!(log, "join: cannot plan yet"; "why" => why),
            }
            tokio::time::sleep(POLL).await;
        };
        info!(log, "join: plan"; "plan" => what, "moves" => moves.len());
        if let Err(e) = client.reassign(&moves).await {
            info!(log, "join: moves not submitted"; "error" => %e);
        }
        while running(&workload) && !client.reassignments().await.is_ok_and(|moving| moving.is_empty()) {
            tokio::time::sleep(POLL).await;
        }
        info!(log, "join: plan done"; "plan" => what);
    }
    while running(&workload) {
        match client.unregister_broker(leaver).await {
            Ok(()) => {
                info!(log, "join: broker removed"; "broker" => leaver);
                return;
            }
            Err(e) => info!(log, "join: broker not removed yet"; "broker" => leaver, "error" => %e),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `joiner` is registered (logging it), or until `end`.
async fn await_registration(workload: &Workload, client: &mut Client, joiner: i32, end: Instant) {
    while !workload.stopped() && Instant::now() < end {
        if client.metadata().await.is_ok_and(|c| c.brokers.contains_key(&joiner)) {
            info!(workload.log(), "join: broker registered"; "broker" => joiner);
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// For the automatic rebalance: once `joiner` is registered, logs the
/// replicas per registered broker each time they change with no move in
/// progress (`join: spread, replicas: 1=3 2=3 ...`), until `end`.
pub async fn spread(workload: Arc<Workload>, joiner: u8, end: Instant) {
    let mut client = workload.client(JOINER);
    await_registration(&workload, &mut client, i32::from(joiner), end).await;
    let mut logged = String::new();
    while !workload.stopped() && Instant::now() < end {
        if client.reassignments().await.is_ok_and(|moving| moving.is_empty()) {
            if let Ok(cluster) = client.metadata().await {
                let mut loads: BTreeMap<i32, usize> = cluster.brokers.keys().map(|&b| (b, 0)).collect();
                let replicas = cluster.topics.values().flat_map(|t| t.partitions.iter().flat_map(|p| &p.replicas));
                replicas.for_each(|b| *loads.entry(*b).or_default() += 1);
                let now: Vec<String> = loads.iter().map(|(b, n)| format!("{b}={n}")).collect();
                let now = now.join(" ");
                if now != logged {
                    info!(workload.log(), "join: spread"; "replicas" => &now);
                    logged = now;
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The moves of a rebalance over every topic, or of a decommission of `gone`.
async fn planned(client: &mut Client, gone: Option<i32>) -> Result<Vec<Move>, String> {
    let moving = client.reassignments().await.map_err(|e| e.to_string())?;
    if !moving.is_empty() {
        return Err(format!("{} moves in progress", moving.len()));
    }
    let cluster = client.metadata().await.map_err(|e| e.to_string())?;
    let brokers: Vec<i32> = cluster.brokers.keys().copied().collect();
    let mut moves = Vec::new();
    for (name, topic) in &cluster.topics {
        let current: Vec<Vec<i32>> = topic.partitions.iter().map(|p| p.replicas.clone()).collect();
        let next = match gone {
            Some(b) => {
                plan::decommission(&brokers, &current, b).map_err(|p| format!("{name}/{p} has nowhere to go"))?
            }
            None => plan::rebalance(&brokers, &current),
        };
        for (p, (now, next)) in topic.partitions.iter().zip(current.iter().zip(next)) {
            if *now != next {
                moves.push(Move { topic: name.clone(), partition: p.partition, replicas: Some(next) });
            }
        }
    }
    Ok(moves)
}
