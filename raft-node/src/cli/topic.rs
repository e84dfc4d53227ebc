//! `keel topic` and `keel cluster status`: the cluster's shape, read through
//! Metadata, ListOffsets, DescribeConfigs and DescribeQuorum.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::cluster::{moves_rows, MOVES_HEADER};
use super::output::{ids, lag_summary, quorum_json, replicas_cell, table};
use super::{connect, fail, Common};
use crate::client::{OffsetSpec, TopicInfo, METADATA_TOPIC};

pub async fn create(
    common: &Common,
    name: &str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: Vec<(String, String)>,
) -> Result<(), String> {
    let mut client = connect(common).await?;
    let mut unique = BTreeMap::new();
    for (key, value) in configs {
        if unique.insert(key.clone(), value).is_some() {
            return Err(format!("--config {key} is given twice"));
        }
    }
    if let Err(e) = client.create_topic(name, partitions, replication_factor, &unique).await {
        return Err(fail(&mut client, e).await);
    }
    // Each partition elects its leader after the creation commits; wait for
    // them, so that what follows (produce, describe) finds the topic usable.
    let mut topic = client.topic(name).await.map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    while topic.partitions.iter().any(|p| p.leader.is_none()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(LEADER_POLL).await;
        topic = client.topic(name).await.map_err(|e| e.to_string())?;
    }
    let leaderless = topic.partitions.iter().filter(|p| p.leader.is_none()).count();
    if common.json {
        println!(
            "{}",
            json!({"created": name, "partitions": topic.partitions.len(), "id": topic.id, "leaderless": leaderless})
        );
    } else {
        println!("created topic {name} with {} partition(s)", topic.partitions.len());
        if leaderless > 0 {
            println!("{leaderless} partition(s) have no leader yet");
        }
    }
    Ok(())
}

/// How long `topic create` waits for the new partitions' leaders, and how often it looks.
const LEADER_WAIT: Duration = Duration::from_secs(15);
const LEADER_POLL: Duration = Duration::from_millis(100);

pub async fn list(common: &Common) -> Result<(), String> {
    let mut client = connect(common).await?;
    let cluster = client.metadata().await.map_err(|e| e.to_string())?;
    let topics: Vec<&TopicInfo> = cluster.topics.values().collect();
    if common.json {
        let list: Vec<_> = topics
            .iter()
            .map(|t| json!({"name": t.name, "partitions": t.partitions.len(), "replication_factor": replication(t)}))
            .collect();
        println!("{}", json!(list));
    } else if topics.is_empty() {
        println!("no topics (create one with `keel topic create NAME`)");
    } else {
        let rows: Vec<Vec<String>> = topics
            .iter()
            .map(|t| vec![t.name.clone(), t.partitions.len().to_string(), replication(t).to_string()])
            .collect();
        print!("{}", table(&["TOPIC", "PARTITIONS", "REPLICATION"], &rows));
    }
    Ok(())
}

fn replication(topic: &TopicInfo) -> usize {
    topic.partitions.iter().map(|p| p.replicas.len()).max().unwrap_or(0)
}

pub async fn describe(common: &Common, name: &str) -> Result<(), String> {
    let mut client = connect(common).await?;
    let topic = match client.topic(name).await {
        Ok(topic) => topic,
        Err(e) => return Err(fail(&mut client, e).await),
    };
    let configs = client.topic_configs(name).await.map_err(|e| e.to_string())?;
    let mut partitions = Vec::new();
    for p in &topic.partitions {
        // A partition without a leader has no offsets to report; say so
        // rather than fail the whole description.
        let earliest = client.list_offset(name, p.partition, OffsetSpec::Earliest).await.ok().flatten();
        let latest = client.list_offset(name, p.partition, OffsetSpec::Latest).await.ok().flatten();
        partitions.push((p, earliest, latest));
    }
    if common.json {
        let partitions: Vec<_> = partitions
            .iter()
            .map(|(p, earliest, latest)| {
                json!({"partition": p.partition, "leader": p.leader, "leader_epoch": p.leader_epoch,
                       "replicas": p.replicas, "isr": p.isr, "earliest_offset": earliest, "latest_offset": latest})
            })
            .collect();
        let configs: serde_json::Map<String, serde_json::Value> = configs
            .iter()
            .map(|c| {
                (c.name.clone(), json!({"value": c.value, "source": if c.explicit { "topic" } else { "default" }}))
            })
            .collect();
        println!("{}", json!({"name": topic.name, "id": topic.id, "partitions": partitions, "configs": configs}));
        return Ok(());
    }
    let known = |o: &Option<i64>| o.map_or("?".to_string(), |o| o.to_string());
    println!("topic {} (id {}), {} partition(s)", topic.name, topic.id, topic.partitions.len());
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|(p, earliest, latest)| {
            vec![
                p.partition.to_string(),
                p.leader.map_or("none".into(), |l| l.to_string()),
                ids(&p.replicas),
                known(earliest),
                known(latest),
            ]
        })
        .collect();
    print!("{}", table(&["PARTITION", "LEADER", "REPLICAS", "EARLIEST", "LATEST"], &rows));
    println!("configs:");
    for c in &configs {
        let source = if c.explicit { "set on the topic" } else { "default" };
        println!("  {} = {} ({source})", c.name, c.value.as_deref().unwrap_or("null"));
    }
    Ok(())
}

pub async fn delete(common: &Common, name: &str) -> Result<(), String> {
    let mut client = connect(common).await?;
    if let Err(e) = client.delete_topic(name).await {
        return Err(fail(&mut client, e).await);
    }
    if common.json {
        println!("{}", json!({"deleted": name}));
    } else {
        println!("deleted topic {name}");
    }
    Ok(())
}

pub async fn cluster_status(common: &Common) -> Result<(), String> {
    let mut client = connect(common).await?;
    let cluster = client.metadata().await.map_err(|e| e.to_string())?.clone();
    let metadata_group = (METADATA_TOPIC.to_string(), 0);
    let mut groups = vec![metadata_group.clone()];
    groups.extend(cluster.topics.values().flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition))));
    let quorums = client.describe_quorum(&groups).await.map_err(|e| e.to_string())?;
    let moves = client.reassignments().await.map_err(|e| e.to_string())?;
    let draining = client.draining().await.map_err(|e| e.to_string())?;
    let quorum = |topic: &str, partition: i32| match quorums.get(&(topic.to_string(), partition)) {
        Some(answer) => answer.as_ref().map_err(String::as_str),
        None => Err("not described"),
    };
    if common.json {
        // What the group's leader says, else why it could not be asked.
        let status = |topic: &str, partition: i32| match quorum(topic, partition) {
            Ok(q) => quorum_json(q),
            Err(e) => json!({"error": e}),
        };
        let brokers: Vec<_> = cluster
            .brokers
            .values()
            .map(|b| {
                json!({"id": b.id, "address": b.addr(), "rack": b.rack, "controller": cluster.controller == Some(b.id),
                       "draining": draining.contains(&b.id)})
            })
            .collect();
        let topics: Vec<_> = cluster
            .topics
            .values()
            .map(|t| {
                let partitions: Vec<_> = t
                    .partitions
                    .iter()
                    .map(|p| {
                        json!({"partition": p.partition, "leader": p.leader, "leader_epoch": p.leader_epoch,
                               "replicas": p.replicas, "isr": p.isr, "quorum": status(&t.name, p.partition)})
                    })
                    .collect();
                json!({"name": t.name, "partitions": partitions})
            })
            .collect();
        println!(
            "{}",
            json!({"cluster_id": cluster.cluster_id, "controller": cluster.controller, "brokers": brokers,
                   "metadata_quorum": status(METADATA_TOPIC, 0), "topics": topics, "moves": moves})
        );
        return Ok(());
    }
    println!("cluster {}", cluster.cluster_id.as_deref().unwrap_or("(no id)"));
    let rows: Vec<Vec<String>> = cluster
        .brokers
        .values()
        .map(|b| {
            let controller = (cluster.controller == Some(b.id)).then_some("controller");
            let role: Vec<&str> =
                controller.into_iter().chain(draining.contains(&b.id).then_some("draining")).collect();
            vec![b.id.to_string(), b.addr(), role.join(", ")]
        })
        .collect();
    print!("{}", table(&["BROKER", "ADDRESS", "ROLE"], &rows));
    if cluster.controller.is_none() {
        println!("no controller elected");
    }
    println!();
    // One row per group, the metadata log first: readable with many partitions.
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|(topic, partition)| {
            let mut row = vec![topic.clone(), partition.to_string()];
            row.extend(match quorum(topic, *partition) {
                Ok(q) => {
                    [q.leader.to_string(), q.leader_epoch.to_string(), q.high_watermark.to_string(), replicas_cell(q)]
                }
                Err(e) => ["?".into(), "?".into(), "?".into(), e.to_string()],
            });
            row
        })
        .collect();
    print!("{}", table(&["TOPIC", "PARTITION", "LEADER", "EPOCH", "HIGH WATERMARK", "REPLICA:LOG END(-LAG)"], &rows));
    println!("{}", lag_summary(quorums.values().filter_map(|q| q.as_ref().ok())));
    if !moves.is_empty() {
        println!();
        let rows = moves_rows(&moves, |topic, partition| quorum(topic, partition).ok().cloned());
        print!("{}", table(&MOVES_HEADER, &rows));
    }
    Ok(())
}
