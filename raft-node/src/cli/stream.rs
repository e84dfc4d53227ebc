//! `keel produce` (stdin lines to a topic) and `keel consume` (a topic's
//! records to stdout).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;

use super::output::{record_json, record_line, split_line};
use super::{connect, fail, Common};
use crate::client::records::ProducerRecord;
use crate::client::{partition_for_key, Acks, Client, OffsetSpec, TopicInfo};

/// Records per produce request, and their payload bytes: well under the
/// default max.message.bytes (1 MiB).
const BATCH_RECORDS: usize = 1000;
const BATCH_BYTES: usize = 512 * 1024;
/// Bytes asked of one fetch.
const FETCH_BYTES: i32 = 1024 * 1024;
/// How long a following consumer's fetch waits on one partition for data.
const FOLLOW_WAIT: Duration = Duration::from_millis(500);

pub struct ProduceArgs {
    pub topic: String,
    pub key: Option<String>,
    pub key_separator: Option<String>,
    pub partition: Option<i32>,
    pub acks: Acks,
}

pub async fn produce(common: &Common, args: ProduceArgs) -> Result<(), String> {
    let mut client = connect(common).await?;
    let topic = match client.topic(&args.topic).await {
        Ok(topic) => topic,
        Err(e) => return Err(fail(&mut client, e).await),
    };
    let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    if count == 0 {
        return Err(format!("topic {} has no partitions", args.topic));
    }
    if let Some(p) = args.partition {
        check_partition(&topic, p)?;
    }
    // Stdin blocks; a thread of its own feeds lines to the async side, which
    // sends whatever has arrived as one batch: bulk input goes in large
    // requests, typed lines go at once.
    let (lines, mut incoming) = mpsc::channel::<std::io::Result<String>>(BATCH_RECORDS);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if lines.blocking_send(line).is_err() {
                return;
            }
        }
    });
    let mut next_partition = 0;
    let mut produced: BTreeMap<i32, (usize, Option<i64>, Option<i64>)> = BTreeMap::new();
    while let Some(first) = incoming.recv().await {
        let mut batch = vec![first.map_err(|e| format!("reading stdin: {e}"))?];
        let mut bytes = batch[0].len();
        while batch.len() < BATCH_RECORDS && bytes < BATCH_BYTES {
            match incoming.try_recv() {
                Ok(line) => {
                    let line = line.map_err(|e| format!("reading stdin: {e}"))?;
                    bytes += line.len();
                    batch.push(line);
                }
                Err(_) => break,
            }
        }
        let timestamp = now_ms();
        let mut by_partition: BTreeMap<i32, Vec<ProducerRecord>> = BTreeMap::new();
        for line in &batch {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let (key, value) = match &args.key {
                Some(key) => (Some(key.as_str()), line),
                None => split_line(line, args.key_separator.as_deref()),
            };
            let partition = match (args.partition, key) {
                (Some(p), _) => p,
                (None, Some(key)) => partition_for_key(key.as_bytes(), count),
                (None, None) => {
                    next_partition = (next_partition + 1) % count;
                    next_partition
                }
            };
            by_partition.entry(partition).or_default().push(ProducerRecord {
                key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                value: Some(Bytes::copy_from_slice(value.as_bytes())),
                timestamp,
            });
        }
        for (partition, records) in by_partition {
            let base = client.produce(&args.topic, partition, &records, args.acks).await.map_err(|e| e.to_string())?;
            let entry = produced.entry(partition).or_insert((0, None, None));
            entry.0 += records.len();
            if let Some(base) = base {
                entry.1.get_or_insert(base);
                entry.2 = Some(base + records.len() as i64 - 1);
            }
        }
    }
    let total: usize = produced.values().map(|(n, _, _)| n).sum();
    if common.json {
        let partitions: Vec<_> = produced
            .iter()
            .map(|(p, (n, first, last))| json!({"partition": p, "records": n, "first_offset": first, "last_offset": last}))
            .collect();
        println!("{}", json!({"topic": args.topic, "records": total, "partitions": partitions}));
    } else {
        eprintln!("produced {total} record(s) to {}", args.topic);
        for (p, (n, first, last)) in &produced {
            match (first, last) {
                (Some(first), Some(last)) => eprintln!("  partition {p}: {n} at offsets {first}..={last}"),
                _ => eprintln!("  partition {p}: {n} (acks=0: offsets unknown)"),
            }
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

fn check_partition(topic: &TopicInfo, partition: i32) -> Result<(), String> {
    if topic.partitions.iter().any(|p| p.partition == partition) {
        Ok(())
    } else {
        Err(format!("topic {} has no partition {partition} (it has 0..{})", topic.name, topic.partitions.len()))
    }
}

/// Where `keel consume` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Beginning,
    End,
    Offset(i64),
    Timestamp(i64),
}

pub struct ConsumeArgs {
    pub topic: String,
    pub partition: Option<i32>,
    pub start: Start,
    pub follow: bool,
    pub max_messages: Option<u64>,
}

pub async fn consume(common: &Common, args: ConsumeArgs) -> Result<(), String> {
    let mut client = connect(common).await?;
    let topic = match client.topic(&args.topic).await {
        Ok(topic) => topic,
        Err(e) => return Err(fail(&mut client, e).await),
    };
    let partitions: Vec<i32> = match args.partition {
        Some(p) => {
            check_partition(&topic, p)?;
            vec![p]
        }
        None => topic.partitions.iter().map(|p| p.partition).collect(),
    };
    // partition -> (next offset, where to stop when not following)
    let mut positions = BTreeMap::new();
    for &p in &partitions {
        let start = start_offset(&mut client, &args.topic, p, args.start).await?;
        let end = match args.follow {
            true => None,
            false => Some(offset_of(&mut client, &args.topic, p, OffsetSpec::Latest).await?),
        };
        positions.insert(p, (start, end));
    }
    let mut printed = 0u64;
    let mut undecodable = 0usize;
    let mut stdout = std::io::stdout().lock();
    let limit_reached = |printed: u64| args.max_messages.is_some_and(|max| printed >= max);
    loop {
        for (&partition, (offset, end)) in positions.iter_mut() {
            // Without --follow each partition is read to the end it had at
            // the start, one after another, so output is grouped by partition;
            // with it, one fetch per partition per round.
            while !limit_reached(printed) && end.is_none_or(|end| *offset < end) {
                let wait = if end.is_some() { Duration::ZERO } else { FOLLOW_WAIT };
                let fetched = client
                    .fetch(&args.topic, partition, *offset, wait, FETCH_BYTES)
                    .await
                    .map_err(|e| e.to_string())?;
                let before = *offset;
                for batch in fetched.batches {
                    match batch.records {
                        Ok(records) => {
                            for record in records {
                                if limit_reached(printed) {
                                    break;
                                }
                                let line = match common.json {
                                    true => record_json(partition, &record).to_string(),
                                    false => record_line(partition, &record),
                                };
                                writeln!(stdout, "{line}").map_err(|e| format!("writing stdout: {e}"))?;
                                printed += 1;
                                *offset = record.offset + 1;
                            }
                        }
                        Err(reason) => {
                            undecodable += 1;
                            eprintln!(
                                "keel: partition {partition} offsets {}..{}: cannot decode: {reason}",
                                batch.base_offset, batch.next_offset
                            );
                        }
                    }
                    if limit_reached(printed) {
                        break;
                    }
                    *offset = (*offset).max(batch.next_offset);
                }
                stdout.flush().map_err(|e| format!("writing stdout: {e}"))?;
                if *offset == before {
                    if let Some(broken) = fetched.broken {
                        return Err(format!("partition {partition} at offset {before}: {broken}"));
                    }
                }
                if *offset == before || end.is_none() {
                    break;
                }
            }
        }
        if limit_reached(printed) || !args.follow {
            break;
        }
    }
    if undecodable > 0 {
        return Err(format!("{undecodable} batch(es) could not be decoded (see above)"));
    }
    Ok(())
}

async fn start_offset(client: &mut Client, topic: &str, partition: i32, start: Start) -> Result<i64, String> {
    match start {
        Start::Offset(offset) => Ok(offset),
        Start::Beginning => offset_of(client, topic, partition, OffsetSpec::Earliest).await,
        Start::End => offset_of(client, topic, partition, OffsetSpec::Latest).await,
        Start::Timestamp(ms) => match client.list_offset(topic, partition, OffsetSpec::Timestamp(ms)).await {
            Ok(Some(offset)) => Ok(offset),
            // Nothing that recent yet: start at the end.
            Ok(None) => offset_of(client, topic, partition, OffsetSpec::Latest).await,
            Err(e) => Err(e.to_string()),
        },
    }
}

async fn offset_of(client: &mut Client, topic: &str, partition: i32, spec: OffsetSpec) -> Result<i64, String> {
    match client.list_offset(topic, partition, spec).await {
        Ok(Some(offset)) => Ok(offset),
        Ok(None) => Err(format!("{topic}/{partition}: the broker returned no {spec:?} offset")),
        Err(e) => Err(e.to_string()),
    }
}
