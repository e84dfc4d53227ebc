//! The pure parts of the client commands: argument parsing helpers, error
//! advice and output formatting.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::client::records::ConsumedRecord;
use crate::client::{Error, QuorumInfo, ReplicaProgress};

/// Parses `key=value` of `--config`.
pub fn parse_config(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// Splits an input line into key and value at the first `separator`; a line
/// without it is a value without key.
pub fn split_line<'a>(line: &'a str, separator: Option<&str>) -> (Option<&'a str>, &'a str) {
    match separator.filter(|s| !s.is_empty()).and_then(|s| line.split_once(s)) {
        Some((key, value)) => (Some(key), value),
        None => (None, line),
    }
}

/// The existing topic a mistyped name most likely meant: same name but for
/// case, `.`/`_`/`-`, or within a small edit distance.
pub fn suggest<'a>(name: &str, topics: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let fold = |s: &str| s.to_lowercase().replace(['.', '_'], "-");
    let budget = (name.chars().count() / 4).clamp(1, 3);
    topics
        .into_iter()
        .filter(|t| *t != name)
        .map(|t| (if fold(t) == fold(name) { 0 } else { edit_distance(&fold(t), &fold(name)) }, t))
        .filter(|(d, _)| *d <= budget)
        .min()
        .map(|(_, t)| t)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// A client error as the user should read it, with what to do about it.
/// `topics` are the cluster's topic names, for suggestions.
pub fn explain(error: &Error, topics: &[String]) -> String {
    match error {
        Error::UnknownTopic(name) => match suggest(name, topics.iter().map(String::as_str)) {
            Some(similar) => format!("unknown topic {name:?}; did you mean {similar:?}?"),
            None => format!("unknown topic {name:?} (see `keel topic list`)"),
        },
        e if e.is_refused() => format!("{e}\nis a cluster running there? `keel dev` starts one on 127.0.0.1:9092"),
        e => e.to_string(),
    }
}

/// Columns padded to their widest cell; no trailing spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Broker ids as `1,2,3`.
pub fn ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Every member of a group with its role: voters, then observers.
fn members(quorum: &QuorumInfo) -> impl Iterator<Item = (&ReplicaProgress, bool)> {
    quorum.voters.iter().map(|r| (r, true)).chain(quorum.observers.iter().map(|r| (r, false)))
}

/// A group's replicas in the status table, `id:log-end-offset` each, with
/// `(-lag)` when behind the leader, `?` when the leader does not know, and
/// `(observer)` for a non-voting member: `1:120  2:108(-12)  3:?`.
pub fn replicas_cell(quorum: &QuorumInfo) -> String {
    let cells: Vec<String> = members(quorum)
        .map(|(r, voter)| {
            let end = r.log_end_offset.map_or("?".into(), |o| o.to_string());
            let lag = quorum.lag(r).filter(|&l| l != 0).map_or(String::new(), |l| format!("(-{l})"));
            let role = if voter { "" } else { "(observer)" };
            format!("{}:{end}{lag}{role}", r.id)
        })
        .collect();
    cells.join("  ")
}

/// The JSON of one group's quorum: the leader's view, and each member's log
/// end offset and lag (`null` when unknown).
pub fn quorum_json(quorum: &QuorumInfo) -> Value {
    let replicas: Vec<Value> = members(quorum)
        .map(|(r, voter)| json!({"id": r.id, "voter": voter, "log_end_offset": r.log_end_offset, "lag": quorum.lag(r)}))
        .collect();
    json!({"leader": quorum.leader, "leader_epoch": quorum.leader_epoch, "high_watermark": quorum.high_watermark,
           "log_end_offset": quorum.log_end_offset(), "replica_status": replicas})
}

/// Replicas behind their leader, and replicas whose place the leader does
/// not know, over `quorums`: the status's last line.
pub fn lag_summary<'a>(quorums: impl IntoIterator<Item = &'a QuorumInfo>) -> String {
    let (mut total, mut behind, mut unknown) = (0, 0, 0);
    for quorum in quorums {
        for (r, _) in members(quorum) {
            total += 1;
            match quorum.lag(r) {
                Some(0) => {}
                Some(_) => behind += 1,
                None => unknown += 1,
            }
        }
    }
    if behind == 0 && unknown == 0 {
        return format!("all {total} replicas are caught up with their leaders");
    }
    let mut parts = vec![format!("{behind} of {total} replicas behind their leaders")];
    if unknown > 0 {
        parts.push(format!("{unknown} unknown (?: not heard from since the leader was elected)"));
    }
    parts.join("; ")
}

fn text(bytes: &Option<Bytes>) -> Option<String> {
    bytes.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

/// `partition offset key value`; a missing key or value prints as `-`.
pub fn record_line(partition: i32, record: &ConsumedRecord) -> String {
    let or_dash = |b: &Option<Bytes>| text(b).unwrap_or_else(|| "-".into());
    format!("{partition} {} {} {}", record.offset, or_dash(&record.key), or_dash(&record.value))
}

/// One JSON object per record; bytes as (lossy) UTF-8, absent as null.
pub fn record_json(partition: i32, record: &ConsumedRecord) -> Value {
    let headers: serde_json::Map<String, Value> =
        record.headers.iter().map(|(k, v)| (k.clone(), json!(text(v)))).collect();
    json!({
        "partition": partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": text(&record.key),
        "value": text(&record.value),
        "headers": headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_parse_as_key_value() {
        assert_eq!(parse_config("retention.ms=1000"), Ok(("retention.ms".into(), "1000".into())));
        assert_eq!(parse_config("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_config("retention.ms").is_err());
        assert!(parse_config("=1").is_err());
    }

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(split_line("k\tv\tw", Some("\t")), (Some("k"), "v\tw"));
        assert_eq!(split_line("no key", Some("\t")), (None, "no key"));
        assert_eq!(split_line("k:v", None), (None, "k:v"));
        assert_eq!(split_line("k:v", Some("")), (None, "k:v"));
    }

    #[test]
    fn suggestions_find_near_names_only() {
        let topics = ["orders", "payments", "order_events", "logs"];
        assert_eq!(suggest("ordrs", topics), Some("orders"));
        assert_eq!(suggest("Orders", topics), Some("orders"));
        assert_eq!(suggest("order-events", topics), Some("order_events"));
        assert_eq!(suggest("inventory", topics), None);
        assert_eq!(suggest("orders", topics), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn unknown_topics_and_refusals_are_explained() {
        let unknown = explain(&Error::UnknownTopic("ordrs".into()), &["orders".into()]);
        assert_eq!(unknown, "unknown topic \"ordrs\"; did you mean \"orders\"?");
        let refused = Error::Connect {
            addr: "127.0.0.1:9092".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        let advice = explain(&Error::Unreachable(vec![refused]), &[]);
        assert!(advice.contains("127.0.0.1:9092") && advice.contains("keel dev"), "{advice}");
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![vec!["0".into(), "1".into(), "1,2,3".into()], vec!["10".into(), "2".into(), "2".into()]];
        assert_eq!(
            table(&["PARTITION", "LEADER", "REPLICAS"], &rows),
            "PARTITION  LEADER  REPLICAS\n0          1       1,2,3\n10         2       2\n"
        );
    }

    fn quorum() -> QuorumInfo {
        let replica = |id, end| ReplicaProgress { id, log_end_offset: end };
        QuorumInfo {
            leader: 2,
            leader_epoch: 3,
            high_watermark: 118,
            voters: vec![replica(1, Some(108)), replica(2, Some(120)), replica(3, None)],
            observers: vec![replica(4, Some(120))],
        }
    }

    #[test]
    fn replica_lag_shows_in_the_table_and_json() {
        let q = quorum();
        assert_eq!(replicas_cell(&q), "1:108(-12)  2:120  3:?  4:120(observer)");
        let status = quorum_json(&q);
        assert_eq!(status["log_end_offset"], 120);
        assert_eq!(
            status["replica_status"],
            json!([
                {"id": 1, "voter": true, "log_end_offset": 108, "lag": 12},
                {"id": 2, "voter": true, "log_end_offset": 120, "lag": 0},
                {"id": 3, "voter": true, "log_end_offset": null, "lag": null},
                {"id": 4, "voter": false, "log_end_offset": 120, "lag": 0},
            ])
        );
        assert_eq!(
            lag_summary([&q, &q]),
            "2 of 8 replicas behind their leaders; 2 unknown (?: not heard from since the leader was elected)"
        );
        let caught_up = QuorumInfo { voters: q.voters[1..2].to_vec(), ..q.clone() };
        assert_eq!(lag_summary([&caught_up]), "all 2 replicas are caught up with their leaders");
    }

    #[test]
    fn records_format_as_lines_and_json() {
        let record = ConsumedRecord {
            offset: 7,
            timestamp: 1,
            key: None,
            value: Some(Bytes::from_static(b"hello world")),
            headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
        };
        assert_eq!(record_line(2, &record), "2 7 - hello world");
        assert_eq!(
            record_json(2, &record),
            json!({"partition": 2, "offset": 7, "timestamp": 1, "key": null, "value": "hello world", "headers": {"h": "x"}})
        );
    }
}
