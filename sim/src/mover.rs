//! Replica moves while the workload runs (`--moves 1`): every replica is
//! moved off one broker (a decommission), then the replicas are spread
//! evenly again (a rebalance), the brokers taken in turn, each plan's moves
//! completing before the next plan. Plans are `keel cluster`'s
//! (`log_core::metadata::plan`), submitted and awaited through the Kafka API
//! (AlterPartitionReassignments, ListPartitionReassignments).

use std::sync::Arc;
use std::time::Duration;

use log_core::metadata::plan;
use raft_node::client::{Client, Move};
use slog::info;
use tokio::time::Instant;

use crate::workload::{Workload, TOPIC};

/// The mover's client id (`sim-N`); it records nothing in the history.
const MOVER: u64 = 99;
const POLL: Duration = Duration::from_millis(500);

/// Moves replicas until `end` or until the workload stops; moves still in
/// progress then finish on their own.
pub async fn mover(workload: Arc<Workload>, brokers: Vec<u8>, end: Instant) {
    let log = workload.log().clone();
    let mut client = workload.client(MOVER);
    let running = |w: &Workload| !w.stopped() && Instant::now() < end;
    for broker in brokers.iter().cycle() {
        for decommission in [true, false] {
            if !running(&workload) {
                return;
            }
            let moves = loop {
                match planned(&mut client, i32::from(*broker), decommission).await {
                    Ok(moves) => break moves,
                    Err(why) if running(&workload) => {
                        info!(log, "move: cannot plan yet"; "why" => why);
                        tokio::time::sleep(POLL).await;
                    }
                    Err(_) => return,
                }
            };
            let what = if decommission { "decommission" } else { "rebalance" };
            info!(log, "move: plan"; "plan" => what, "broker" => broker, "moves" => moves.len());
            match client.reassign(&moves).await {
                Ok(answers) => {
                    for (m, answer) in moves.iter().zip(answers) {
                        let result = answer.map_or_else(|e| e.to_string(), |()| "started".into());
                        info!(log, "move"; "partition" => m.partition, "to" => ?m.replicas, "result" => result);
                    }
                }
                Err(e) => info!(log, "move: not submitted"; "error" => %e),
            }
            while running(&workload) {
                if client.reassignments().await.is_ok_and(|moving| moving.is_empty()) {
                    info!(log, "move: plan done"; "plan" => what, "broker" => broker);
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// The moves of a decommission of `broker`, or of a rebalance, over the
/// workload's topic; an error while moves are in progress or the cluster
/// cannot be read.
async fn planned(client: &mut Client, broker: i32, decommission: bool) -> Result<Vec<Move>, String> {
    let moving = client.reassignments().await.map_err(|e| e.to_string())?;
    if !moving.is_empty() {
        return Err(format!("{} moves in progress", moving.len()));
    }
    let cluster = client.metadata().await.map_err(|e| e.to_string())?;
    let brokers: Vec<i32> = cluster.brokers.keys().copied().collect();
    let topic = cluster.topics.get(TOPIC).ok_or("no topic yet")?;
    let current: Vec<Vec<i32>> = topic.partitions.iter().map(|p| p.replicas.clone()).collect();
    let next = match decommission {
        true => {
            plan::decommission(&brokers, &current, broker).map_err(|p| format!("partition {p} has nowhere to go"))?
        }
        false => plan::rebalance(&brokers, &current),
    };
    let moves = topic.partitions.iter().zip(current.iter().zip(next)).filter(|(_, (now, next))| now != &next);
    Ok(moves
        .map(|(p, (_, next))| Move { topic: TOPIC.to_owned(), partition: p.partition, replicas: Some(next) })
        .collect())
}
