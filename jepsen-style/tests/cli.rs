//! `keel-jepsen check`: exit status 0 when valid, 1 when invalid, 2 when the history is unreadable.

use std::path::Path;
use std::process::{Command, Output};

fn keel_jepsen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel-jepsen")).args(args).output().unwrap()
}

fn send(index: u64, kind: &str, value: &str, offset: Option<i64>) -> String {
    let offset = offset.map_or_else(String::new, |o| format!(r#","offset":{o}"#));
    format!(
        r#"{{"index":{index},"type":"{kind}","f":"send","process":1,"time":{index},"value":{{"topic":"t","partition":0,"key":null,"value":"{value}"{offset}}}}}"#
    )
}

fn poll(index: u64, records: &[(i64, &str)]) -> String {
    let records: Vec<String> = records
        .iter()
        .map(|(offset, value)| {
            format!(r#"{{"topic":"t","partition":0,"offset":{offset},"key":null,"value":"{value}"}}"#)
        })
        .collect();
    format!(
        "{{\"index\":{index},\"type\":\"invoke\",\"f\":\"poll\",\"process\":2,\"time\":10,\"value\":null}}\n\
         {{\"index\":{index},\"type\":\"ok\",\"f\":\"poll\",\"process\":2,\"time\":11,\"value\":[{}]}}",
        records.join(",")
    )
}

/// Two acknowledged sends; the poll reads `read` of them.
fn history(dir: &Path, read: &[(i64, &str)]) -> String {
    let lines = [
        send(0, "invoke", "a", None),
        send(0, "ok", "a", Some(0)),
        send(1, "invoke", "b", None),
        send(1, "ok", "b", Some(1)),
    ];
    let path = dir.join("history.jsonl");
    std::fs::write(&path, format!("{}\n{}\n", lines.join("\n"), poll(2, read))).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_valid_history_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = history(dir.path(), &[(0, "a"), (1, "b")]);
    let out = keel_jepsen(&["check", &path, "--idempotent"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("valid\n"));
}

#[test]
fn an_invalid_history_exits_one_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = history(dir.path(), &[(1, "b")]);
    let json = dir.path().join("report.json");
    let out = keel_jepsen(&["check", &path, "--json", json.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("invalid: lost-write\n"), "{stdout}");
    assert!(stdout.contains("\"a\" acknowledged at t/0@0"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["anomalies"][0]["count"], 1);
}

#[test]
fn an_unreadable_history_exits_two_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, format!("{}\n{{\"index\": 1}}\n", send(0, "invoke", "a", None))).unwrap();
    let out = keel_jepsen(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"), "{out:?}");
    let missing = keel_jepsen(&["check", dir.path().join("absent.jsonl").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
}
