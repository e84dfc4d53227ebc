//! `keel group list|describe|reset-offsets`: consumer groups through their
//! coordinators (ListGroups, DescribeGroups, OffsetFetch, OffsetCommit), with
//! each committed offset's lag behind its partition's end (ListOffsets).

use serde_json::json;

use super::output::table;
use super::{connect, fail, Common};
use crate::client::{Client, CommittedOffset, OffsetSpec};

/// Where `reset-offsets` moves a group's offsets.
#[derive(Clone, Copy, Debug)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
}

pub async fn list(common: &Common) -> Result<(), String> {
    let mut client = connect(common).await?;
    let groups = client.list_groups().await.map_err(|e| e.to_string())?;
    if common.json {
        println!("{}", json!(groups));
    } else if groups.is_empty() {
        println!("no consumer groups");
    } else {
        let rows: Vec<Vec<String>> =
            groups.iter().map(|g| vec![g.group.clone(), g.state.clone(), g.protocol_type.clone()]).collect();
        print!("{}", table(&["GROUP", "STATE", "PROTOCOL TYPE"], &rows));
    }
    Ok(())
}

/// A committed offset with its partition's end and the lag between them.
struct OffsetLag {
    committed: CommittedOffset,
    log_end: Option<i64>,
}

impl OffsetLag {
    fn lag(&self) -> Option<i64> {
        self.log_end.map(|end| (end - self.committed.offset).max(0))
    }
}

async fn offsets_with_lag(client: &mut Client, group: &str) -> Result<Vec<OffsetLag>, String> {
    let committed = client.committed_offsets(group).await.map_err(|e| e.to_string())?;
    let mut offsets = Vec::new();
    for c in committed {
        // A deleted topic's offsets stay committed; they have no end to lag behind.
        let log_end = client.list_offset(&c.topic, c.partition, OffsetSpec::Latest).await.ok().flatten();
        offsets.push(OffsetLag { committed: c, log_end });
    }
    Ok(offsets)
}

pub async fn describe(common: &Common, group: &str) -> Result<(), String> {
    let mut client = connect(common).await?;
    let info = match client.describe_group(group).await {
        Ok(info) => info,
        Err(e) => return Err(fail(&mut client, e).await),
    };
    let offsets = offsets_with_lag(&mut client, group).await?;
    let owner = |topic: &str, partition: i32| {
        let holds =
            |m: &&crate::client::GroupMember| m.assignment.iter().any(|(t, ps)| t == topic && ps.contains(&partition));
        info.members.iter().find(holds).map(|m| m.member_id.clone())
    };
    if common.json {
        let offsets: Vec<_> = offsets
            .iter()
            .map(|o| {
                json!({"topic": o.committed.topic, "partition": o.committed.partition, "committed": o.committed.offset,
                       "log_end": o.log_end, "lag": o.lag(), "member": owner(&o.committed.topic, o.committed.partition)})
            })
            .collect();
        println!(
            "{}",
            json!({"group": info.group, "state": info.state, "protocol_type": info.protocol_type,
                   "protocol": info.protocol, "members": info.members, "offsets": offsets})
        );
        return Ok(());
    }
    println!("group {} is {} ({} member(s), protocol {:?})", info.group, info.state, info.members.len(), info.protocol);
    if !info.members.is_empty() {
        let rows: Vec<Vec<String>> = info
            .members
            .iter()
            .map(|m| {
                let assigned: Vec<String> = m.assignment.iter().map(|(t, ps)| format!("{t}:{}", join(ps))).collect();
                vec![
                    m.member_id.clone(),
                    m.instance_id.clone().unwrap_or("-".into()),
                    m.client_id.clone(),
                    assigned.join(" "),
                ]
            })
            .collect();
        print!("{}", table(&["MEMBER", "INSTANCE", "CLIENT", "ASSIGNMENT"], &rows));
    }
    if offsets.is_empty() {
        println!("no committed offsets");
    } else {
        let cell = |v: Option<i64>| v.map_or("?".to_string(), |v| v.to_string());
        let rows: Vec<Vec<String>> = offsets
            .iter()
            .map(|o| {
                vec![
                    o.committed.topic.clone(),
                    o.committed.partition.to_string(),
                    o.committed.offset.to_string(),
                    cell(o.log_end),
                    cell(o.lag()),
                    owner(&o.committed.topic, o.committed.partition).unwrap_or("-".into()),
                ]
            })
            .collect();
        print!("{}", table(&["TOPIC", "PARTITION", "COMMITTED", "LOG END", "LAG", "MEMBER"], &rows));
    }
    Ok(())
}

fn join(partitions: &[i32]) -> String {
    partitions.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Moves the group's committed offsets of `topic` (every partition, or one)
/// to `to`. Like Kafka's tool, only for a group without members: a live
/// member would commit over the reset.
pub async fn reset_offsets(
    common: &Common,
    group: &str,
    topic: &str,
    partition: Option<i32>,
    to: ResetTo,
) -> Result<(), String> {
    let mut client = connect(common).await?;
    let info = client.describe_group(group).await.map_err(|e| e.to_string())?;
    if !info.members.is_empty() {
        return Err(format!(
            "group {group} has {} active member(s) ({}); stop its consumers before resetting its offsets",
            info.members.len(),
            info.state
        ));
    }
    let partitions: Vec<i32> = match partition {
        Some(p) => vec![p],
        None => match client.topic(topic).await {
            Ok(t) => t.partitions.iter().map(|p| p.partition).collect(),
            Err(e) => return Err(fail(&mut client, e).await),
        },
    };
    let mut offsets = Vec::new();
    for p in partitions {
        let offset = match to {
            ResetTo::Offset(offset) => offset,
            ResetTo::Earliest | ResetTo::Latest => {
                let spec = if matches!(to, ResetTo::Earliest) { OffsetSpec::Earliest } else { OffsetSpec::Latest };
                match client.list_offset(topic, p, spec).await {
                    Ok(offset) => offset.unwrap_or(0),
                    Err(e) => return Err(fail(&mut client, e).await),
                }
            }
        };
        offsets.push(CommittedOffset { topic: topic.to_string(), partition: p, offset });
    }
    client.commit_offsets(group, &offsets).await.map_err(|e| e.to_string())?;
    if common.json {
        println!("{}", json!({"group": group, "offsets": offsets}));
    } else {
        for o in &offsets {
            println!("{group} {}/{} -> {}", o.topic, o.partition, o.offset);
        }
    }
    Ok(())
}
