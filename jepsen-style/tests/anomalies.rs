//! Hand-written histories: each anomaly caught, and correct histories (crashes, retries, indeterminate
//! operations, seeks, several consumers) left alone.

use jepsen_style::TopicPartition;
use jepsen_style::{
    check, Anomaly, Commit, FetchCommitted, GroupOffset, History, HistoryBuilder, Op, OpIndex, Options, Process,
    Record, Report, Seek, Send,
};

/// A history written by hand: one topic `t`; every call advances the clock.
#[derive(Default)]
struct Script {
    builder: HistoryBuilder,
    time: u64,
}

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new("t", partition)
}

impl Script {
    fn tick(&mut self) -> u64 {
        self.time += 10;
        self.time
    }

    fn invoke_send(&mut self, process: u64, partition: i32, value: &str) -> OpIndex {
        let send = Send { tp: tp(partition), key: Some("k".to_owned()), value: value.to_owned(), offset: None };
        let time = self.tick();
        self.builder.invoke(Process(process), time, Op::Send(send)).unwrap()
    }

    fn ack(&mut self, send: OpIndex, offset: i64) {
        let time = self.tick();
        self.builder.ok_send(send, time, offset).unwrap();
    }

    fn send_ok(&mut self, process: u64, partition: i32, value: &str, offset: i64) {
        let send = self.invoke_send(process, partition, value);
        self.ack(send, offset);
    }

    fn send_fail(&mut self, process: u64, partition: i32, value: &str) {
        let send = self.invoke_send(process, partition, value);
        let time = self.tick();
        self.builder.fail(send, time).unwrap();
    }

    fn send_info(&mut self, process: u64, partition: i32, value: &str) {
        let send = self.invoke_send(process, partition, value);
        let time = self.tick();
        self.builder.info(send, time).unwrap();
    }

    /// An ok poll of (partition, offset, value) records.
    fn poll(&mut self, process: u64, records: &[(i32, i64, &str)]) {
        let time = self.tick();
        let poll = self.builder.invoke(Process(process), time, Op::Poll(Vec::new())).unwrap();
        let records = records
            .iter()
            .map(|&(partition, offset, value)| Record {
                tp: tp(partition),
                offset,
                key: Some("k".to_owned()),
                value: value.to_owned(),
            })
            .collect();
        let time = self.tick();
        self.builder.ok_poll(poll, time, records).unwrap();
    }

    fn poll_info(&mut self, process: u64) {
        let time = self.tick();
        let poll = self.builder.invoke(Process(process), time, Op::Poll(Vec::new())).unwrap();
        let time = self.tick();
        self.builder.info(poll, time).unwrap();
    }

    fn poll_fail(&mut self, process: u64) {
        let time = self.tick();
        let poll = self.builder.invoke(Process(process), time, Op::Poll(Vec::new())).unwrap();
        let time = self.tick();
        self.builder.fail(poll, time).unwrap();
    }

    fn assign(&mut self, process: u64, partitions: &[i32]) {
        let time = self.tick();
        let op = Op::Assign(partitions.iter().map(|&p| tp(p)).collect());
        let assign = self.builder.invoke(Process(process), time, op).unwrap();
        let time = self.tick();
        self.builder.ok(assign, time).unwrap();
    }

    fn seek(&mut self, process: u64, partition: i32, offset: i64) {
        let time = self.tick();
        let seek = self.builder.invoke(Process(process), time, Op::Seek(Seek { tp: tp(partition), offset })).unwrap();
        let time = self.tick();
        self.builder.ok(seek, time).unwrap();
    }

    fn invoke_commit(&mut self, process: u64, group: &str, partition: i32, offset: i64) -> OpIndex {
        let commit = Commit { group: group.to_owned(), offsets: vec![GroupOffset { tp: tp(partition), offset }] };
        let time = self.tick();
        self.builder.invoke(Process(process), time, Op::Commit(commit)).unwrap()
    }

    /// Completes a commit: `ok` when `acked`, else `info`.
    fn complete_commit(&mut self, commit: OpIndex, acked: bool) {
        let time = self.tick();
        if acked {
            self.builder.ok(commit, time).unwrap();
        } else {
            self.builder.info(commit, time).unwrap();
        }
    }

    fn commit(&mut self, process: u64, group: &str, partition: i32, offset: i64) -> OpIndex {
        let commit = self.invoke_commit(process, group, partition, offset);
        self.complete_commit(commit, true);
        commit
    }

    /// An ok fetch-committed of one partition that returned `offset`.
    fn fetch_committed(&mut self, process: u64, group: &str, partition: i32, offset: i64) -> OpIndex {
        let fetch = FetchCommitted { group: group.to_owned(), partitions: vec![tp(partition)] };
        let time = self.tick();
        let fetch = self.builder.invoke(Process(process), time, Op::FetchCommitted(fetch)).unwrap();
        let time = self.tick();
        self.builder.ok_fetch_committed(fetch, time, vec![GroupOffset { tp: tp(partition), offset }]).unwrap();
        fetch
    }

    fn crash(&mut self, process: u64) {
        let time = self.tick();
        self.builder.crash(Process(process), time).unwrap();
    }

    fn history(self) -> History {
        self.builder.finish()
    }
}

fn found(report: &Report) -> Vec<Anomaly> {
    report.anomalies.iter().map(|finding| finding.anomaly).collect()
}

fn checked(script: Script, idempotent: bool) -> Report {
    check(&script.history(), &Options { idempotent, ..Options::default() })
}

/// Writes v0..v(n-1) to partition 0 at offsets 0..n from process 1.
fn written(n: i64) -> Script {
    let mut s = Script::default();
    for offset in 0..n {
        s.send_ok(1, 0, &format!("v{offset}"), offset);
    }
    s
}

#[test]
fn lost_write_is_an_acknowledged_send_that_reads_went_past() {
    let mut s = written(3);
    s.poll(10, &[(0, 0, "v0")]);
    s.assign(11, &[0]);
    s.seek(11, 0, 2);
    s.poll(11, &[(0, 2, "v2")]);
    let report = checked(s, true);
    assert_eq!(found(&report), [Anomaly::LostWrite]);
    assert_eq!(report.verdict, "invalid: lost-write");
    let finding = report.finding(Anomaly::LostWrite).unwrap();
    assert_eq!(finding.count, 1);
    assert!(finding.examples[0].detail.contains("\"v1\""), "{}", finding.examples[0].detail);
}

#[test]
fn unseen_is_an_acknowledged_send_no_read_reached() {
    let mut s = written(2);
    s.poll(10, &[(0, 0, "v0")]);
    let report = checked(s, true);
    assert_eq!(found(&report), [Anomaly::Unseen]);
    assert!(!report.valid);
}

#[test]
fn duplicate_invalidates_only_idempotent_producers() {
    let script = || {
        let mut s = written(2);
        s.poll(10, &[(0, 0, "v0"), (0, 1, "v1"), (0, 2, "v0")]);
        s
    };
    let strict = checked(script(), true);
    assert_eq!(found(&strict), [Anomaly::Duplicate]);
    assert_eq!(strict.verdict, "invalid: duplicate");
    let lax = checked(script(), false);
    assert_eq!(found(&lax), [Anomaly::Duplicate]);
    assert!(lax.valid, "{lax}");
    assert!(!lax.anomalies[0].invalidating);
}

#[test]
fn a_duplicate_of_an_idempotent_process_invalidates_on_its_own() {
    // Process 1 is idempotent, process 2 is not; each has one value written twice.
    let mut s = written(1);
    s.send_ok(2, 0, "plain", 1);
    s.poll(10, &[(0, 0, "v0"), (0, 1, "plain"), (0, 2, "v0"), (0, 3, "plain")]);
    let options = Options { idempotent_processes: [Process(1)].into(), ..Options::default() };
    let report = check(&s.history(), &options);
    assert_eq!(found(&report), [Anomaly::Duplicate, Anomaly::IdempotentDuplicate]);
    assert_eq!(report.verdict, "invalid: idempotent-duplicate");
    assert_eq!(report.finding(Anomaly::IdempotentDuplicate).map(|f| f.count), Some(1));
}

#[test]
fn two_values_at_one_offset_are_inconsistent() {
    let mut s = written(2);
    s.poll(10, &[(0, 0, "v1"), (0, 1, "v0")]);
    let report = checked(s, false);
    let finding = report.finding(Anomaly::InconsistentOffsets).expect("caught");
    assert_eq!(finding.count, 2);
    // Each value is also at two places: its acknowledged offset and the one it was read at.
    assert_eq!(found(&report), [Anomaly::Duplicate, Anomaly::InconsistentOffsets]);
}

#[test]
fn two_acknowledgements_of_one_offset_are_inconsistent() {
    let mut s = Script::default();
    s.send_ok(1, 0, "a", 0);
    s.send_ok(2, 0, "b", 0);
    s.poll(10, &[(0, 0, "a")]);
    let report = checked(s, true);
    assert!(report.finding(Anomaly::InconsistentOffsets).is_some(), "{report}");
}

#[test]
fn a_value_read_only_away_from_its_acknowledged_offset_is_inconsistent() {
    let mut s = Script::default();
    s.send_ok(1, 0, "a", 5);
    s.poll(10, &[(0, 0, "a")]);
    let report = checked(s, false);
    assert!(report.finding(Anomaly::InconsistentOffsets).is_some(), "{report}");
    assert!(!report.valid);
}

#[test]
fn a_later_send_of_one_process_must_land_higher() {
    let mut s = Script::default();
    s.send_ok(1, 0, "a", 1);
    s.send_ok(1, 0, "b", 0);
    s.poll(10, &[(0, 0, "b"), (0, 1, "a")]);
    assert_eq!(found(&checked(s, true)), [Anomaly::NonmonotonicSend]);
}

#[test]
fn concurrent_sends_of_one_process_may_land_in_any_order() {
    let mut s = Script::default();
    let a = s.invoke_send(1, 0, "a");
    let b = s.invoke_send(1, 0, "b");
    s.ack(b, 0);
    s.ack(a, 1);
    s.poll(10, &[(0, 0, "b"), (0, 1, "a")]);
    let report = checked(s, true);
    assert!(report.valid, "{report}");
}

#[test]
fn a_consumer_going_back_without_a_seek_is_nonmonotonic() {
    let mut s = written(3);
    s.poll(10, &[(0, 0, "v0"), (0, 1, "v1")]);
    s.poll(10, &[(0, 1, "v1"), (0, 2, "v2")]);
    assert_eq!(found(&checked(s, true)), [Anomaly::NonmonotonicPoll]);
}

#[test]
fn an_indeterminate_poll_does_not_let_a_consumer_go_back() {
    let mut s = written(3);
    s.poll(10, &[(0, 0, "v0"), (0, 1, "v1")]);
    s.poll_info(10);
    s.poll(10, &[(0, 0, "v0"), (0, 1, "v1"), (0, 2, "v2")]);
    assert_eq!(found(&checked(s, true)), [Anomaly::NonmonotonicPoll]);
}

#[test]
fn reading_below_a_seek_is_nonmonotonic() {
    let mut s = written(3);
    s.seek(10, 0, 2);
    s.poll(10, &[(0, 1, "v1"), (0, 2, "v2")]);
    s.poll(11, &[(0, 0, "v0")]);
    assert_eq!(found(&checked(s, true)), [Anomaly::NonmonotonicPoll]);
}

#[test]
fn a_gap_between_polls_is_a_skip() {
    let mut s = written(4);
    s.poll(10, &[(0, 0, "v0"), (0, 1, "v1")]);
    s.poll(10, &[(0, 3, "v3")]);
    s.poll(11, &[(0, 2, "v2")]);
    let report = checked(s, true);
    assert_eq!(found(&report), [Anomaly::PollSkip]);
    assert_eq!(report.finding(Anomaly::PollSkip).unwrap().examples[0].ops.len(), 2);
}

#[test]
fn a_gap_inside_one_poll_is_a_skip() {
    let mut s = written(3);
    s.poll(10, &[(0, 0, "v0"), (0, 2, "v2")]);
    s.poll(11, &[(0, 1, "v1")]);
    assert_eq!(found(&checked(s, true)), [Anomaly::PollSkip]);
}

#[test]
fn a_read_of_a_failed_send_is_a_phantom_write() {
    let mut s = written(1);
    s.send_fail(1, 0, "ghost");
    s.poll(10, &[(0, 0, "v0"), (0, 1, "ghost")]);
    let report = checked(s, true);
    assert_eq!(found(&report), [Anomaly::PhantomWrite]);
    assert_eq!(report.verdict, "invalid: phantom-write");
}

#[test]
fn a_read_of_a_value_never_sent_is_unknown() {
    let mut s = written(1);
    s.poll(10, &[(0, 0, "v0"), (0, 1, "nobody")]);
    assert_eq!(found(&checked(s, true)), [Anomaly::UnknownValue]);
}

#[test]
fn an_indeterminate_send_read_twice_is_a_duplicate() {
    let mut s = written(1);
    s.send_info(1, 0, "maybe");
    s.poll(10, &[(0, 0, "v0"), (0, 1, "maybe"), (0, 2, "maybe")]);
    assert_eq!(found(&checked(s, true)), [Anomaly::Duplicate]);
}

#[test]
fn crashes_and_indeterminate_sends_are_not_anomalies() {
    let mut s = written(1);
    s.invoke_send(1, 0, "in-flight-applied");
    s.invoke_send(1, 0, "in-flight-lost");
    s.crash(1);
    s.send_info(2, 0, "timed-out-applied");
    s.send_info(2, 0, "timed-out-lost");
    s.send_fail(2, 0, "refused");
    // The crashed process's id comes back as a new client.
    s.send_ok(1, 0, "after-crash", 3);
    s.invoke_send(2, 0, "never-completed");
    s.poll(10, &[(0, 0, "v0"), (0, 1, "in-flight-applied"), (0, 2, "timed-out-applied"), (0, 3, "after-crash")]);
    let report = checked(s, true);
    assert!(report.valid, "{report}");
    assert!(report.anomalies.is_empty());
    let sends = report.summary.sends;
    assert_eq!((sends.ok, sends.fail, sends.info), (2, 1, 5));
}

#[test]
fn a_retry_with_a_new_value_and_a_non_idempotent_duplicate_are_valid() {
    let mut s = Script::default();
    s.send_info(1, 0, "try-1");
    s.send_ok(1, 0, "try-2", 1);
    // The producer's own retry wrote "x" twice; the ack names the second copy.
    s.send_ok(1, 0, "x", 3);
    s.poll(10, &[(0, 0, "try-1"), (0, 1, "try-2"), (0, 2, "x"), (0, 3, "x")]);
    let report = checked(s, false);
    assert!(report.valid, "{report}");
    assert_eq!(found(&report), [Anomaly::Duplicate]);
}

#[test]
fn seeks_assigns_crashes_and_several_consumers_are_not_anomalies() {
    let mut s = Script::default();
    for offset in 0..4 {
        s.send_ok(1, 0, &format!("a{offset}"), offset);
        s.send_ok(2, 1, &format!("b{offset}"), offset);
    }
    // Consumer 10 reads both partitions interleaved, rereads after a seek back, and skips ahead by seeking.
    s.assign(10, &[0, 1]);
    s.poll(10, &[(0, 0, "a0"), (1, 0, "b0"), (0, 1, "a1")]);
    s.poll_fail(10);
    s.poll(10, &[(1, 1, "b1"), (0, 2, "a2")]);
    s.seek(10, 0, 0);
    s.poll(10, &[(0, 0, "a0"), (1, 2, "b2")]);
    s.seek(10, 1, 3);
    s.poll(10, &[(0, 1, "a1"), (1, 3, "b3")]);
    // An indeterminate poll may have consumed records we never saw.
    s.poll_info(10);
    s.poll(10, &[(0, 3, "a3")]);
    // Consumer 11 starts mid-log after its assign, crashes, and starts over from the beginning.
    s.assign(11, &[0]);
    s.poll(11, &[(0, 2, "a2"), (0, 3, "a3")]);
    s.crash(11);
    s.poll(11, &[(0, 0, "a0")]);
    s.assign(11, &[0, 1]);
    s.poll(11, &[(1, 1, "b1"), (0, 3, "a3")]);
    let report = checked(s, true);
    assert!(report.valid, "{report}");
    assert!(report.anomalies.is_empty(), "{report}");
    assert_eq!(report.summary.partitions.len(), 2);
    assert_eq!(report.summary.partitions[1].max_read_offset, Some(3));
}

#[test]
fn the_summary_reports_the_longest_gap_between_acknowledged_writes() {
    // The script's clock moves 10 ns per event: v0..v2 are acknowledged at 20, 40, 60, and v3 at 120.
    let mut s = written(3);
    s.send_info(1, 0, "slow");
    s.send_fail(1, 0, "refused");
    s.send_ok(1, 0, "v3", 3);
    s.send_ok(1, 1, "only", 0);
    let report = checked(s, true);
    let gaps: Vec<Option<u64>> = report.summary.partitions.iter().map(|p| p.longest_write_gap_ns).collect();
    assert_eq!(gaps, [Some(60), None], "the failed and indeterminate sends between do not count");
}

#[test]
fn examples_are_capped_but_every_instance_counted() {
    let mut s = written(20);
    s.poll(10, &[(0, 19, "v19")]);
    let report = checked(s, true);
    let finding = report.finding(Anomaly::LostWrite).unwrap();
    assert_eq!(finding.count, 19);
    assert_eq!(finding.examples.len(), 8);
}

#[test]
fn the_report_reads_as_json() {
    let mut s = written(2);
    s.poll(10, &[(0, 1, "v1")]);
    let report = checked(s, true);
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["verdict"], "invalid: lost-write");
    assert_eq!(json["anomalies"][0]["anomaly"], "lost-write");
    assert_eq!(json["anomalies"][0]["examples"][0]["ops"][0]["f"], "send");
    assert_eq!(json["summary"]["sends"]["ok"], 2);
}

#[test]
fn a_fetch_of_nothing_committed_after_an_acknowledged_commit_is_a_lost_commit() {
    let mut s = Script::default();
    let commit = s.commit(20, "g", 0, 3);
    let fetch = s.fetch_committed(21, "g", 0, -1);
    let report = checked(s, false);
    assert_eq!(found(&report), [Anomaly::LostCommit]);
    assert_eq!(report.verdict, "invalid: lost-commit");
    let example = &report.finding(Anomaly::LostCommit).unwrap().examples[0];
    assert!(example.detail.contains("group \"g\" t/0") && example.detail.contains("offset -1"), "{}", example.detail);
    let ops: Vec<OpIndex> = example.ops.iter().map(|op| op.index).collect();
    assert_eq!(ops, [commit, fetch]);
}

#[test]
fn an_overwritten_commit_read_back_is_a_lost_commit_and_the_latest_is_not() {
    let mut s = Script::default();
    s.commit(20, "g", 0, 40);
    let later = s.commit(20, "g", 0, 50);
    s.fetch_committed(21, "g", 0, 50);
    s.fetch_committed(21, "g", 0, 40);
    // Another group's register is another register.
    s.commit(22, "h", 0, 40);
    s.fetch_committed(22, "h", 0, 40);
    let report = checked(s, false);
    assert_eq!(found(&report), [Anomaly::LostCommit]);
    let finding = report.finding(Anomaly::LostCommit).unwrap();
    assert_eq!(finding.count, 1);
    let detail = &finding.examples[0].detail;
    assert!(
        detail.contains("returned offset 40") && detail.contains(&format!("commit {later} of offset 50")),
        "{detail}"
    );
}

#[test]
fn concurrent_commits_may_take_effect_in_either_order() {
    let mut s = Script::default();
    let a = s.invoke_commit(20, "g", 0, 50);
    let b = s.invoke_commit(21, "g", 0, 40);
    s.complete_commit(a, true);
    s.complete_commit(b, true);
    s.fetch_committed(22, "g", 0, 40);
    let mut other_order = Script::default();
    let a = other_order.invoke_commit(20, "g", 0, 50);
    let b = other_order.invoke_commit(21, "g", 0, 40);
    other_order.complete_commit(a, true);
    other_order.complete_commit(b, true);
    other_order.fetch_committed(22, "g", 0, 50);
    for script in [s, other_order] {
        let report = checked(script, false);
        assert!(report.valid && report.anomalies.is_empty(), "{report}");
    }
}

#[test]
fn an_indeterminate_commit_may_surface_late_and_a_failed_one_never() {
    let mut s = Script::default();
    s.commit(20, "g", 0, 40);
    let maybe = s.invoke_commit(20, "g", 0, 60);
    s.complete_commit(maybe, false);
    s.commit(20, "g", 0, 50);
    s.invoke_commit(21, "g", 0, 70);
    s.crash(21);
    s.fetch_committed(22, "g", 0, 60);
    s.fetch_committed(22, "g", 0, 70);
    // A commit invoked after a fetch completed cannot be what the fetch read.
    s.fetch_committed(22, "g", 0, 40);
    s.commit(20, "g", 0, 40);
    let refused = s.invoke_commit(20, "g", 0, 80);
    let time = s.tick();
    s.builder.fail(refused, time).unwrap();
    s.fetch_committed(22, "g", 0, 80);
    let report = checked(s, false);
    let finding = report.finding(Anomaly::LostCommit).expect("caught");
    assert_eq!(finding.count, 2, "{report}");
    assert!(finding.examples[0].detail.contains("returned offset 40,"), "{report}");
    assert!(finding.examples[1].detail.contains("returned offset 80, which no commit wrote"), "{report}");
}

/// Three records at offsets 0..3 of partition 0, and a consumer `p10` of group `g` that reads them all.
fn consumed_by_group() -> Script {
    let mut s = written(3);
    s.fetch_committed(10, "g", 0, -1);
    s.assign(10, &[0]);
    s.seek(10, 0, 0);
    s
}

#[test]
fn a_group_that_reads_before_it_commits_is_valid() {
    let mut s = consumed_by_group();
    s.poll(10, &[(0, 0, "v0"), (0, 1, "v1")]);
    s.commit(10, "g", 0, 2);
    s.poll(10, &[(0, 2, "v2")]);
    s.commit(10, "g", 0, 3);
    // Another member takes over from the committed offset.
    s.fetch_committed(11, "g", 0, 3);
    let report = checked(s, true);
    assert!(report.valid && report.anomalies.is_empty(), "{report}");
    assert_eq!((report.summary.commits.ok, report.summary.fetches_committed.ok), (2, 2));
}

#[test]
fn committing_past_what_the_group_read_is_unprocessed() {
    let mut s = consumed_by_group();
    s.poll(10, &[(0, 0, "v0")]);
    // Another group read everything and committed it: valid for that group.
    s.poll(12, &[(0, 0, "v0"), (0, 1, "v1"), (0, 2, "v2")]);
    s.commit(12, "h", 0, 3);
    let commit = s.commit(10, "g", 0, 3);
    // Reading after the commit began is too late.
    s.poll(10, &[(0, 1, "v1"), (0, 2, "v2")]);
    let report = checked(s, true);
    assert_eq!(found(&report), [Anomaly::Unprocessed]);
    assert_eq!(report.verdict, "invalid: unprocessed");
    let finding = report.finding(Anomaly::Unprocessed).unwrap();
    assert_eq!(finding.count, 1);
    let detail = &finding.examples[0].detail;
    assert!(detail.starts_with(&format!("group \"g\" committed t/0 offset 3 in {commit}")), "{detail}");
    assert!(detail.contains("read offset 1,") && detail.contains("(2 of the offsets below 3"), "{detail}");
}
