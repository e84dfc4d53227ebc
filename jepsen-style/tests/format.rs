//! The JSON lines format and the recorder: documented examples parse, writing round-trips, and malformed
//! input is a typed error naming its line.

use jepsen_style::{
    check, parse, write, Commit, Event, EventType, FetchCommitted, GroupOffset, History, HistoryBuilder, HistoryError,
    Op, OpIndex, Options, ParseError, Process, Send, ShapeError, TopicPartition,
};

/// The example in the crate documentation, without the `//! ` prefixes.
fn documented_example() -> String {
    let lib = include_str!("../src/lib.rs");
    lib.lines().filter_map(|line| line.strip_prefix("//! ")).filter(|line| line.starts_with('{')).fold(
        String::new(),
        |mut text, line| {
            text.push_str(line);
            text.push('\n');
            text
        },
    )
}

fn written(history: &History) -> String {
    let mut out = Vec::new();
    write(history, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn the_documented_example_parses_checks_and_round_trips() {
    let text = documented_example();
    assert_eq!(text.lines().count(), 12);
    let history = parse(&text).unwrap();
    assert_eq!(written(&history), text);
    let report = check(&history, &Options { idempotent: true, ..Options::default() });
    assert!(report.valid, "{report}");
    assert_eq!((report.summary.sends.ok, report.summary.sends.info), (1, 1));
}

#[test]
fn the_readme_shows_the_same_example() {
    let readme = include_str!("../README.md");
    let example: String =
        readme.lines().filter(|line| line.starts_with("{\"index\"")).flat_map(|line| [line, "\n"]).collect();
    assert_eq!(example, documented_example());
}

#[test]
fn a_line_that_is_not_an_event_names_its_line() {
    let text = documented_example();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(2, "");
    lines.insert(3, "{not json");
    let err = parse(&lines.join("\n")).unwrap_err();
    assert!(matches!(err, ParseError::Json { line: 4, .. }), "{err}");
}

#[test]
fn an_ok_send_without_offset_is_refused() {
    let line = r#"{"index":0,"type":"invoke","f":"send","process":1,"time":1,"value":{"topic":"t","partition":0,"key":null,"value":"a"}}
{"index":0,"type":"ok","f":"send","process":1,"time":2,"value":{"topic":"t","partition":0,"key":null,"value":"a"}}"#;
    let err = parse(line).unwrap_err();
    assert!(matches!(err, ParseError::Json { line: 2, .. }), "{err}");
    assert!(err.to_string().contains("offset"), "{err}");
}

#[test]
fn ill_formed_histories_are_refused_with_their_line() {
    let send = |index: u64, kind: &str, process: u64, time: u64, value: &str| {
        format!(
            r#"{{"index":{index},"type":"{kind}","f":"send","process":{process},"time":{time},"value":{{"topic":"t","partition":0,"key":null,"value":"{value}"}}}}"#
        )
    };
    // The lines, and what the error on the last one must be.
    type Case = (Vec<String>, fn(&HistoryError) -> bool);
    let cases: Vec<Case> = vec![
        (vec![send(0, "fail", 1, 1, "a")], |e| matches!(e, HistoryError::NotPending(OpIndex(0)))),
        (vec![send(0, "invoke", 1, 5, "a"), send(0, "fail", 1, 4, "a")], |e| {
            matches!(e, HistoryError::TimeWentBack { previous: 5, time: 4 })
        }),
        (vec![send(0, "invoke", 1, 1, "a"), send(0, "invoke", 1, 1, "b")], |e| {
            matches!(e, HistoryError::IndexReused(OpIndex(0)))
        }),
        (
            vec![send(0, "invoke", 1, 1, "a"), send(1, "invoke", 1, 1, "a")],
            |e| matches!(e, HistoryError::ValueReused(v) if v == "a"),
        ),
        (vec![send(0, "invoke", 1, 1, "a"), send(0, "info", 2, 1, "a")], |e| {
            matches!(e, HistoryError::WrongProcess { .. })
        }),
        (vec![send(0, "invoke", 1, 1, "a"), send(0, "info", 1, 1, "b")], |e| matches!(e, HistoryError::WrongWrite(_))),
        (
            vec![
                send(0, "invoke", 1, 1, "a"),
                r#"{"index":0,"type":"info","f":"poll","process":1,"time":1,"value":null}"#.to_owned(),
            ],
            |e| matches!(e, HistoryError::WrongFunction { .. }),
        ),
        (
            vec![
                send(0, "invoke", 1, 1, "a"),
                r#"{"index":1,"type":"invoke","f":"crash","process":1,"time":2,"value":null}"#.to_owned(),
                send(0, "info", 1, 3, "a"),
            ],
            |e| matches!(e, HistoryError::NotPending(OpIndex(0))),
        ),
    ];
    for (lines, expected) in cases {
        let text = lines.join("\n");
        match parse(&text) {
            Err(ParseError::Invalid { line, source }) => {
                assert_eq!(line, lines.len(), "{text}");
                assert!(expected(&source), "{source} for {text}");
            }
            other => panic!("{other:?} for {text}"),
        }
    }
}

#[test]
fn from_events_names_the_position_of_a_bad_event() {
    let mut events = parse(&documented_example()).unwrap().into_events();
    events[3].time = 0;
    let err = History::from_events(events).unwrap_err();
    assert_eq!(err.position, 3);
    assert!(matches!(err.error, HistoryError::TimeWentBack { .. }));
}

#[test]
fn the_recorder_refuses_completions_that_do_not_fit() {
    let mut b = HistoryBuilder::new();
    let send = Send { tp: TopicPartition::new("t", 0), key: None, value: "a".to_owned(), offset: None };
    let s = b.invoke(Process(1), 1, Op::Send(send.clone())).unwrap();
    assert!(matches!(b.ok(s, 2), Err(HistoryError::ResultMissing { .. })));
    assert!(matches!(b.ok_poll(s, 2, Vec::new()), Err(HistoryError::WrongFunction { .. })));
    assert!(matches!(b.ok_send(s, 0, 0), Err(HistoryError::TimeWentBack { .. })));
    b.ok_send(s, 2, 0).unwrap();
    assert!(matches!(b.fail(s, 3), Err(HistoryError::NotPending(_))));
    // An invocation shaped as a completion.
    let done = Send { value: "b".to_owned(), offset: Some(1), ..send };
    assert!(matches!(b.invoke(Process(1), 3, Op::Send(done)), Err(HistoryError::Shape(_))));
    let history = b.finish();
    assert_eq!(history.events().len(), 2);
    assert_eq!(history.events()[1].kind, EventType::Ok);
}

#[test]
fn a_crash_completes_the_pending_operations_of_its_process_only() {
    let mut b = HistoryBuilder::new();
    let send = |value: &str| {
        Op::Send(Send { tp: TopicPartition::new("t", 0), key: None, value: value.to_owned(), offset: None })
    };
    b.invoke(Process(1), 1, send("a")).unwrap();
    let other = b.invoke(Process(2), 1, send("b")).unwrap();
    b.invoke(Process(1), 1, Op::Poll(Vec::new())).unwrap();
    b.crash(Process(1), 2).unwrap();
    b.ok_send(other, 3, 0).unwrap();
    let history = b.finish();
    let kinds: Vec<(u64, EventType)> = history.events().iter().map(|e| (e.process.0, e.kind)).collect();
    use EventType::{Info, Invoke, Ok};
    assert_eq!(kinds, [(1, Invoke), (2, Invoke), (1, Invoke), (1, Info), (1, Info), (1, Invoke), (1, Ok), (2, Ok)]);
    // What the recorder wrote, a parser reads back the same.
    assert_eq!(parse(&written(&history)).unwrap(), history);
}

fn group_offset(partition: i32, offset: i64) -> GroupOffset {
    GroupOffset { tp: TopicPartition::new("t", partition), offset }
}

fn fetch_committed(partitions: &[i32]) -> Op {
    let partitions = partitions.iter().map(|&p| TopicPartition::new("t", p)).collect();
    Op::FetchCommitted(FetchCommitted { group: "g".to_owned(), partitions })
}

#[test]
fn commits_and_fetches_of_committed_offsets_round_trip() {
    let mut b = HistoryBuilder::new();
    let commit = Op::Commit(Commit { group: "g".to_owned(), offsets: vec![group_offset(0, 5), group_offset(1, 0)] });
    let acked = b.invoke(Process(1), 1, commit.clone()).unwrap();
    b.ok(acked, 2).unwrap();
    let refused = b.invoke(Process(1), 3, commit.clone()).unwrap();
    b.fail(refused, 4).unwrap();
    let fetched = b.invoke(Process(2), 5, fetch_committed(&[0, 1])).unwrap();
    b.ok_fetch_committed(fetched, 6, vec![group_offset(0, 5), group_offset(1, -1)]).unwrap();
    let timed_out = b.invoke(Process(2), 7, fetch_committed(&[0])).unwrap();
    b.info(timed_out, 8).unwrap();
    b.invoke(Process(1), 9, commit).unwrap();
    let history = b.finish();
    let text = written(&history);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1],
        r#"{"index":0,"type":"ok","f":"commit","process":1,"time":2,"value":{"group":"g","offsets":[{"topic":"t","partition":0,"offset":5},{"topic":"t","partition":1,"offset":0}]}}"#
    );
    assert_eq!(
        lines[4],
        r#"{"index":2,"type":"invoke","f":"fetch-committed","process":2,"time":5,"value":{"group":"g","partitions":[{"topic":"t","partition":0},{"topic":"t","partition":1}]}}"#
    );
    assert_eq!(
        lines[5],
        r#"{"index":2,"type":"ok","f":"fetch-committed","process":2,"time":6,"value":{"group":"g","offsets":[{"topic":"t","partition":0,"offset":5},{"topic":"t","partition":1,"offset":-1}]}}"#
    );
    assert_eq!(parse(&text).unwrap(), history);
    let report = check(&history, &Options::default());
    let (commits, fetches) = (report.summary.commits, report.summary.fetches_committed);
    assert_eq!((commits.ok, commits.fail, commits.info), (1, 1, 1));
    assert_eq!((fetches.ok, fetches.fail, fetches.info), (1, 0, 1));
}

#[test]
fn answers_that_do_not_fit_their_fetch_or_commit_are_refused() {
    let mut b = HistoryBuilder::new();
    let fetch = b.invoke(Process(2), 1, fetch_committed(&[0])).unwrap();
    assert!(matches!(b.ok(fetch, 2), Err(HistoryError::ResultMissing { .. })));
    let unasked = b.ok_fetch_committed(fetch, 2, vec![group_offset(1, 3)]);
    assert!(matches!(unasked, Err(HistoryError::UnaskedPartition { partition, .. }) if partition.partition == 1));
    let twice = b.ok_fetch_committed(fetch, 2, vec![group_offset(0, 3), group_offset(0, 4)]);
    assert!(matches!(twice, Err(HistoryError::UnaskedPartition { .. })), "{twice:?}");
    // A fetch completed as if it carried no result is refused by its shape.
    let event = Event { index: fetch, kind: EventType::Ok, process: Process(2), time: 2, op: fetch_committed(&[0]) };
    assert!(matches!(event.check_shape(), Err(ShapeError::MissingCommitted)));
    b.ok_fetch_committed(fetch, 2, Vec::new()).unwrap();

    let lines = |first: &str, second: &str| format!("{first}\n{second}\n");
    let other_group = lines(
        r#"{"index":0,"type":"invoke","f":"fetch-committed","process":1,"time":1,"value":{"group":"g","partitions":[{"topic":"t","partition":0}]}}"#,
        r#"{"index":0,"type":"ok","f":"fetch-committed","process":1,"time":2,"value":{"group":"h","offsets":[]}}"#,
    );
    let err = parse(&other_group).unwrap_err();
    assert!(matches!(err, ParseError::Invalid { line: 2, source: HistoryError::WrongGroup { .. } }), "{err}");
    let other_offsets = lines(
        r#"{"index":0,"type":"invoke","f":"commit","process":1,"time":1,"value":{"group":"g","offsets":[{"topic":"t","partition":0,"offset":1}]}}"#,
        r#"{"index":0,"type":"ok","f":"commit","process":1,"time":2,"value":{"group":"g","offsets":[{"topic":"t","partition":0,"offset":2}]}}"#,
    );
    let err = parse(&other_offsets).unwrap_err();
    assert!(matches!(err, ParseError::Invalid { line: 2, source: HistoryError::WrongWrite(_) }), "{err}");
    let commit_without_group =
        r#"{"index":0,"type":"invoke","f":"commit","process":1,"time":1,"value":{"offsets":[]}}"#;
    assert!(matches!(parse(commit_without_group), Err(ParseError::Json { line: 1, .. })));
}
