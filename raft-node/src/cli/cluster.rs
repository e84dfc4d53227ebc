//! `keel cluster reassign | rebalance | decommission`: moving partition
//! replicas (raft membership changes the partition leaders carry out), and
//! the moves in progress for `keel cluster status`.

use log_core::metadata::plan;
use serde_json::json;

use super::output::{ids, table};
use super::{connect, fail, Common};
use crate::client::{moves_between, Client, Move, MoveInProgress, Placement, QuorumInfo};

/// Moves one partition to `replicas`, or cancels its move.
pub async fn reassign(common: &Common, topic: &str, partition: i32, replicas: Option<Vec<i32>>) -> Result<(), String> {
    let mut client = connect(common).await?;
    let moves = [Move { topic: topic.to_owned(), partition, replicas }];
    submit(&mut client, common, &moves, false).await
}

/// Plans an even spread of replicas and preferred leaders over every
/// registered broker not draining (moving the draining ones' replicas off)
/// and submits it (or only prints it).
pub async fn rebalance(common: &Common, dry_run: bool) -> Result<(), String> {
    let mut client = connect(common).await?;
    let (brokers, current) = client.placement().await?;
    let draining = client.draining().await.map_err(|e| e.to_string())?;
    let moves: Vec<Move> = plan::rebalance_moves(&brokers, &draining, &current).into_iter().map(Move::from).collect();
    submit(&mut client, common, &moves, dry_run).await
}

/// Marks broker `broker` draining, so that no rebalance (the automatic one
/// included) nor new topic puts a replica back on it, then moves every
/// replica off it onto brokers not draining. A dry run marks nothing.
pub async fn decommission(common: &Common, broker: i32, dry_run: bool) -> Result<(), String> {
    let mut client = connect(common).await?;
    let brokers: Vec<i32> = client.metadata().await.map_err(|e| e.to_string())?.brokers.keys().copied().collect();
    if !brokers.contains(&broker) {
        return Err(format!("broker {broker} is not registered (brokers: {})", ids(&brokers)));
    }
    if !dry_run {
        client.set_draining(broker, true).await.map_err(|e| e.to_string())?;
        if !common.json {
            println!("broker {broker} marked draining (undo: keel cluster decommission {broker} --undo)");
        }
    }
    // The automatic rebalance, if on, may already be moving its replicas off.
    let marked = |e: String| if dry_run { e } else { format!("broker {broker} is marked draining; its moves: {e}") };
    let (brokers, current) = client.placement().await.map_err(marked)?;
    let mut draining = client.draining().await.map_err(|e| e.to_string())?;
    draining.insert(broker);
    let lists: Vec<Vec<i32>> = current.iter().map(|p| p.replicas.clone()).collect();
    let planned = plan::decommission(&plan::targets(brokers, &draining), &lists, broker).map_err(|p| {
        let Placement { topic, partition, replicas } = &current[p];
        format!("no broker that is not draining can take {topic}/{partition} (replicas {})", ids(replicas))
    })?;
    submit(&mut client, common, &moves_between(&current, planned), dry_run).await
}

/// Clears broker `broker`'s draining mark: it may take replicas again (the
/// next rebalance gives it its share). Moves nothing back by itself.
pub async fn undo_decommission(common: &Common, broker: i32) -> Result<(), String> {
    let mut client = connect(common).await?;
    client.set_draining(broker, false).await.map_err(|e| e.to_string())?;
    match common.json {
        true => println!("{}", json!({"broker": broker, "draining": false})),
        false => println!("broker {broker} no longer draining; `keel cluster rebalance` gives it replicas again"),
    }
    Ok(())
}

/// Sets (or with `None` clears) the move throttle of `broker`, or of every broker.
pub async fn throttle(common: &Common, broker: Option<i32>, bytes_per_sec: Option<u64>) -> Result<(), String> {
    let mut client = connect(common).await?;
    client.set_move_throttle(broker, bytes_per_sec).await.map_err(|e| e.to_string())?;
    let whose = broker.map_or("every broker".to_owned(), |b| format!("broker {b}"));
    match bytes_per_sec {
        Some(0) => println!("moves from {whose}: no limit"),
        Some(rate) => println!("moves from {whose}: at most {rate} bytes/s"),
        None => println!("move throttle of {whose} cleared"),
    }
    Ok(())
}

/// Takes a broker out of the cluster for good, once `decommission` has moved
/// every replica off it: the metadata group drops it (a voter is replaced by
/// a learner first) and every broker stops talking to it. Its id is not
/// registered again.
pub async fn remove_broker(common: &Common, broker: i32) -> Result<(), String> {
    let mut client = connect(common).await?;
    client.unregister_broker(broker).await.map_err(|e| e.to_string())?;
    println!("broker {broker} removed from the cluster; it can be stopped");
    Ok(())
}

/// Prints the plan and, unless `dry_run`, submits it and prints each answer.
async fn submit(client: &mut Client, common: &Common, moves: &[Move], dry_run: bool) -> Result<(), String> {
    let before = client.metadata().await.map_err(|e| e.to_string())?.clone();
    let replicas_now = |m: &Move| {
        let t = before.topics.get(&m.topic)?;
        t.partitions.iter().find(|p| p.partition == m.partition).map(|p| p.replicas.clone())
    };
    let answers: Vec<Option<Result<(), crate::client::Error>>> = if dry_run || moves.is_empty() {
        moves.iter().map(|_| None).collect()
    } else {
        match client.reassign(moves).await {
            Ok(answers) => answers.into_iter().map(Some).collect(),
            Err(e) => return Err(fail(client, e).await),
        }
    };
    let verdict = |answer: &Option<Result<(), crate::client::Error>>| match answer {
        None => "planned".to_string(),
        Some(Ok(())) => "started".to_string(),
        Some(Err(e)) => e.to_string(),
    };
    let target = |m: &Move| m.replicas.as_deref().map_or("(cancel)".into(), ids);
    if common.json {
        let rows: Vec<_> = moves
            .iter()
            .zip(&answers)
            .map(|(m, a)| {
                json!({"topic": m.topic, "partition": m.partition, "from": replicas_now(m), "to": m.replicas,
                       "result": verdict(a)})
            })
            .collect();
        println!("{}", json!({"dry_run": dry_run, "moves": rows}));
    } else if moves.is_empty() {
        println!("nothing to move");
    } else {
        let rows: Vec<Vec<String>> = moves
            .iter()
            .zip(&answers)
            .map(|(m, a)| {
                let from = replicas_now(m).map_or("?".into(), |r| ids(&r));
                vec![m.topic.clone(), m.partition.to_string(), from, target(m), verdict(a)]
            })
            .collect();
        print!("{}", table(&["TOPIC", "PARTITION", "REPLICAS", "TARGET", "RESULT"], &rows));
    }
    match answers.iter().flatten().filter(|a| a.is_err()).count() {
        0 => Ok(()),
        failed => Err(format!("{failed} of {} moves were refused", moves.len())),
    }
}

/// The moves in progress for the status: each with its adding replicas'
/// lag behind the leader (`?` while unknown), from the group's quorum.
pub fn moves_rows(moves: &[MoveInProgress], quorum: impl Fn(&str, i32) -> Option<QuorumInfo>) -> Vec<Vec<String>> {
    moves
        .iter()
        .map(|m| {
            let q = quorum(&m.topic, m.partition);
            let lag = |id: i32| {
                let member = q.as_ref().and_then(|q| q.voters.iter().chain(&q.observers).find(|r| r.id == id).copied());
                let lag = q.as_ref().zip(member).and_then(|(q, r)| q.lag(&r));
                format!("{id}:{}", lag.map_or("?".into(), |l| l.to_string()))
            };
            let adding: Vec<String> = m.adding.iter().map(|&id| lag(id)).collect();
            vec![m.topic.clone(), m.partition.to_string(), ids(&m.replicas), adding.join(" "), ids(&m.removing)]
        })
        .collect()
}

pub const MOVES_HEADER: [&str; 5] = ["TOPIC", "PARTITION", "REPLICAS", "ADDING:LAG", "REMOVING"];
