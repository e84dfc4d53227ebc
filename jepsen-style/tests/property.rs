//! Histories generated from a small simulated log and consumer group are valid; one planted mutation is
//! reported as the anomaly it is.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use arbitrary::{Result, Unstructured};
use jepsen_style::{
    check, parse, write, Anomaly, Commit, Event, EventType, FetchCommitted, GroupOffset, History, HistoryBuilder,
    HistoryError, Op, OpIndex, Options, Process, Record, Seek, Send, TopicPartition,
};

const PARTITIONS: i32 = 2;
const PRODUCERS: [u64; 2] = [1, 2];
const CONSUMERS: [u64; 2] = [10, 11];
/// Reads every partition from the start once the workload is done, so nothing acknowledged is unseen.
/// It is no member of the group, so the group must have read what it commits by itself.
const DRAINER: u64 = 99;
/// The consumers' group.
const GROUP: &str = "g";

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new("t", partition)
}

/// A correct broker: one dense log per partition. Clients act on it and record what they see.
#[derive(Default)]
struct Sim {
    recorder: HistoryBuilder,
    time: u64,
    log: BTreeMap<i32, Vec<String>>,
    /// Per consumer, its assigned partitions and its next offset in each.
    positions: BTreeMap<u64, BTreeMap<i32, i64>>,
    /// Per consumer and partition, the offsets its ok polls read.
    read_by: BTreeMap<u64, BTreeMap<i32, BTreeSet<i64>>>,
    /// The consumers that invoked a commit or fetch-committed: the group's members.
    members: BTreeSet<u64>,
    /// The group's committed offset of each partition, as its coordinator holds it.
    committed: BTreeMap<i32, i64>,
    values: u64,
    ops: usize,
}

impl Sim {
    fn tick(&mut self) -> u64 {
        self.time += 1;
        self.time
    }

    fn len(&self, partition: i32) -> i64 {
        self.log.get(&partition).map_or(0, |log| log.len() as i64)
    }

    fn step(&mut self, u: &mut Unstructured) -> Result<()> {
        self.ops += 1;
        match u.int_in_range(0..=12)? {
            0..=4 => self.send(*u.choose(&PRODUCERS)?, u.int_in_range(0..=PARTITIONS - 1)?, u.int_in_range(0..=7)?),
            5..=6 => {
                let advance = u.arbitrary()?;
                self.poll(*u.choose(&CONSUMERS)?, u.int_in_range(0..=3)?, u.int_in_range(0..=5)?, advance)
            }
            7 => {
                let consumer = *u.choose(&CONSUMERS)?;
                let mut assigned = BTreeMap::new();
                for partition in 0..PARTITIONS {
                    if u.arbitrary()? {
                        assigned.insert(partition, u.int_in_range(0..=self.len(partition))?);
                    }
                }
                self.assign(consumer, assigned);
            }
            8 => {
                let consumer = *u.choose(&CONSUMERS)?;
                let partition = u.int_in_range(0..=PARTITIONS - 1)?;
                let offset = u.int_in_range(0..=self.len(partition))?;
                self.seek(consumer, partition, offset);
            }
            9 => {
                let process = *u.choose(&[PRODUCERS, CONSUMERS].concat())?;
                let time = self.tick();
                self.recorder.crash(Process(process), time).unwrap();
                self.positions.remove(&process);
            }
            10..=11 => {
                let consumer = *u.choose(&CONSUMERS)?;
                let mut offsets = Vec::new();
                for partition in 0..PARTITIONS {
                    if u.arbitrary()? {
                        // Committing less than what was processed rewinds the group, which is allowed.
                        offsets.push((partition, u.int_in_range(0..=self.processed(partition, consumer))?));
                    }
                }
                self.commit(consumer, offsets, u.int_in_range(0..=7)?);
            }
            _ => {
                let consumer = *u.choose(&CONSUMERS)?;
                let mut partitions = Vec::new();
                for partition in 0..PARTITIONS {
                    if u.arbitrary()? {
                        partitions.push(partition);
                    }
                }
                self.fetch_committed(consumer, partitions, u.int_in_range(0..=5)?);
            }
        }
        Ok(())
    }

    /// Completes an operation as `outcome` says (see [`applied`]), an ok one through `ok`.
    fn complete(
        &mut self,
        index: OpIndex,
        outcome: u8,
        ok: impl FnOnce(&mut HistoryBuilder, OpIndex, u64) -> std::result::Result<(), HistoryError>,
    ) {
        let time = self.tick();
        match outcome {
            0..=2 => ok(&mut self.recorder, index, time).unwrap(),
            3 => self.recorder.fail(index, time).unwrap(),
            4 | 5 => self.recorder.info(index, time).unwrap(),
            _ => {}
        }
    }

    /// `outcome` as [`applied`] says.
    fn send(&mut self, process: u64, partition: i32, outcome: u8) {
        self.values += 1;
        let value = format!("v{}", self.values);
        let send = Send { tp: tp(partition), key: Some(format!("k{process}")), value: value.clone(), offset: None };
        let time = self.tick();
        let index = self.recorder.invoke(Process(process), time, Op::Send(send)).unwrap();
        let offset = self.len(partition);
        if applied(outcome) {
            self.log.entry(partition).or_default().push(value);
        }
        self.complete(index, outcome, |recorder, index, time| recorder.ok_send(index, time, offset));
    }

    /// The offset below which the group's members, `committer` among them, have read every offset of
    /// `partition`.
    fn processed(&self, partition: i32, committer: u64) -> i64 {
        let members = self.members.iter().chain([&committer]);
        let read: BTreeSet<i64> =
            members.filter_map(|m| self.read_by.get(m)?.get(&partition)).flatten().copied().collect();
        let mut next = 0;
        while read.contains(&next) {
            next += 1;
        }
        next
    }

    /// `outcome` as [`applied`] says.
    fn commit(&mut self, consumer: u64, offsets: Vec<(i32, i64)>, outcome: u8) {
        self.members.insert(consumer);
        let offsets = offsets.into_iter().map(|(p, offset)| GroupOffset { tp: tp(p), offset }).collect();
        let commit = Commit { group: GROUP.to_owned(), offsets };
        let time = self.tick();
        let index = self.recorder.invoke(Process(consumer), time, Op::Commit(commit.clone())).unwrap();
        if applied(outcome) {
            for GroupOffset { tp, offset } in commit.offsets {
                self.committed.insert(tp.partition, offset);
            }
        }
        self.complete(index, outcome, HistoryBuilder::ok);
    }

    /// outcome: 0..=3 ok, 4 info, 5 fail.
    fn fetch_committed(&mut self, consumer: u64, partitions: Vec<i32>, outcome: u8) {
        self.members.insert(consumer);
        let fetch = FetchCommitted { group: GROUP.to_owned(), partitions: partitions.iter().map(|&p| tp(p)).collect() };
        let time = self.tick();
        let index = self.recorder.invoke(Process(consumer), time, Op::FetchCommitted(fetch)).unwrap();
        let offsets = partitions
            .iter()
            .map(|&p| GroupOffset { tp: tp(p), offset: self.committed.get(&p).copied().unwrap_or(-1) })
            .collect();
        let time = self.tick();
        match outcome {
            0..=3 => self.recorder.ok_fetch_committed(index, time, offsets).unwrap(),
            4 => self.recorder.info(index, time).unwrap(),
            _ => self.recorder.fail(index, time).unwrap(),
        }
    }

    /// Reads up to `max` records from each assigned partition. outcome: 0..=3 ok, 4 info (the consumer
    /// advanced or not), 5 fail.
    fn poll(&mut self, consumer: u64, max: i64, outcome: u8, advance: bool) {
        let time = self.tick();
        let index = self.recorder.invoke(Process(consumer), time, Op::Poll(Vec::new())).unwrap();
        let mut records = Vec::new();
        let mut positions = self.positions.remove(&consumer).unwrap_or_default();
        for (&partition, next) in positions.iter_mut() {
            let end = (*next + max).min(self.len(partition));
            for offset in *next..end {
                let value = self.log[&partition][offset as usize].clone();
                records.push(Record { tp: tp(partition), offset, key: None, value });
            }
            if outcome <= 3 || (outcome == 4 && advance) {
                *next = end.max(*next);
            }
        }
        self.positions.insert(consumer, positions);
        if outcome <= 3 {
            let read = self.read_by.entry(consumer).or_default();
            for record in &records {
                read.entry(record.tp.partition).or_default().insert(record.offset);
            }
        }
        let time = self.tick();
        match outcome {
            0..=3 => self.recorder.ok_poll(index, time, records).unwrap(),
            4 => self.recorder.info(index, time).unwrap(),
            _ => self.recorder.fail(index, time).unwrap(),
        }
    }

    /// `assigned` holds where the consumer starts in each partition (its committed offset, say).
    fn assign(&mut self, consumer: u64, assigned: BTreeMap<i32, i64>) {
        let time = self.tick();
        let op = Op::Assign(assigned.keys().map(|&p| tp(p)).collect());
        let index = self.recorder.invoke(Process(consumer), time, op).unwrap();
        let time = self.tick();
        self.recorder.ok(index, time).unwrap();
        self.positions.insert(consumer, assigned);
    }

    fn seek(&mut self, consumer: u64, partition: i32, offset: i64) {
        let time = self.tick();
        let index =
            self.recorder.invoke(Process(consumer), time, Op::Seek(Seek { tp: tp(partition), offset })).unwrap();
        let time = self.tick();
        self.recorder.ok(index, time).unwrap();
        self.positions.entry(consumer).or_default().insert(partition, offset);
    }

    fn drain(mut self) -> History {
        self.assign(DRAINER, (0..PARTITIONS).map(|p| (p, 0)).collect());
        let everything = self.log.values().map(|log| log.len() as i64).max().unwrap_or(0);
        self.poll(DRAINER, everything, 0, true);
        self.recorder.finish()
    }
}

/// outcome: 0..=2 ok, 3 fail, 4 info and applied, 5 info and lost, 6 never completes but applied, 7 never
/// completes and lost.
fn applied(outcome: u8) -> bool {
    matches!(outcome, 0..=2 | 4 | 6)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mutation {
    DropMiddleRead,
    DuplicateValue,
    ChangeValue,
    SwapPolls,
    ForgetCommit,
    CommitUnread,
}

impl Mutation {
    const ALL: [Mutation; 6] = [
        Mutation::DropMiddleRead,
        Mutation::DuplicateValue,
        Mutation::ChangeValue,
        Mutation::SwapPolls,
        Mutation::ForgetCommit,
        Mutation::CommitUnread,
    ];

    fn expected(self) -> Anomaly {
        match self {
            Mutation::DropMiddleRead => Anomaly::PollSkip,
            Mutation::DuplicateValue => Anomaly::Duplicate,
            Mutation::ChangeValue => Anomaly::InconsistentOffsets,
            Mutation::SwapPolls => Anomaly::NonmonotonicPoll,
            Mutation::ForgetCommit => Anomaly::LostCommit,
            Mutation::CommitUnread => Anomaly::Unprocessed,
        }
    }
}

fn records_of(event: &Event) -> Option<&Vec<Record>> {
    match (&event.op, event.kind) {
        (Op::Poll(records), EventType::Ok) => Some(records),
        _ => None,
    }
}

fn records_mut(events: &mut [Event], at: usize) -> &mut Vec<Record> {
    match &mut events[at].op {
        Op::Poll(records) => records,
        other => panic!("not a poll: {other:?}"),
    }
}

/// Applies `mutation` at the `pick`-th place it can go; `None` when it has nowhere to go.
fn mutate(history: &History, mutation: Mutation, pick: usize) -> Option<Vec<Event>> {
    let mut events = history.events().to_vec();
    let polls: Vec<usize> = (0..events.len()).filter(|&i| records_of(&events[i]).is_some()).collect();
    match mutation {
        Mutation::DropMiddleRead => {
            // Records with a neighbour of the same partition on both sides.
            let places: Vec<(usize, usize)> = polls
                .iter()
                .flat_map(|&at| {
                    let records = records_of(&events[at]).unwrap();
                    (1..records.len().saturating_sub(1))
                        .filter(move |&i| records[i - 1].tp == records[i].tp && records[i + 1].tp == records[i].tp)
                        .map(move |i| (at, i))
                })
                .collect();
            let &(at, i) = places.get(pick % places.len().max(1))?;
            records_mut(&mut events, at).remove(i);
        }
        Mutation::DuplicateValue => {
            // The drainer's poll reads each partition to its end: write a value again past that end.
            let at = *polls.last()?;
            let records = records_mut(&mut events, at);
            let copied = records.get(pick % records.len().max(1))?.clone();
            let end = records.iter().rposition(|r| r.tp == copied.tp)?;
            let offset = records[end].offset + 1;
            records.insert(end + 1, Record { offset, ..copied });
        }
        Mutation::ChangeValue => {
            // A read of an acknowledged value, so the acknowledgement contradicts the changed read.
            let acked: HashSet<String> = history
                .operations()
                .into_iter()
                .filter_map(|op| match op.op {
                    Op::Send(send) if send.offset.is_some() => Some(send.value),
                    _ => None,
                })
                .collect();
            let places: Vec<(usize, usize)> = polls
                .iter()
                .flat_map(|&at| {
                    let records = records_of(&events[at]).unwrap();
                    (0..records.len()).filter(|&i| acked.contains(&records[i].value)).map(move |i| (at, i))
                })
                .collect();
            let &(at, i) = places.get(pick % places.len().max(1))?;
            records_mut(&mut events, at)[i].value = "mutant".to_owned();
        }
        Mutation::SwapPolls => {
            let pairs = successive_polls(&events);
            let &(a, b) = pairs.get(pick % pairs.len().max(1))?;
            let first = std::mem::take(records_mut(&mut events, a));
            let second = std::mem::replace(records_mut(&mut events, b), first);
            *records_mut(&mut events, a) = second;
        }
        Mutation::ForgetCommit => {
            // A fetch-committed answering "nothing committed" after an ok commit of the partition.
            let places = forgettable_answers(&events);
            let &(at, i) = places.get(pick % places.len().max(1))?;
            group_offsets_mut(&mut events[at])[i].offset = -1;
        }
        Mutation::CommitUnread => {
            // An ok commit raised to the end of the partition, which the drainer read but the group had not.
            let end = drained_end(&events, *polls.last()?);
            let places = commits_short_of(&events, &end);
            let &(index, i, partition) = places.get(pick % places.len().max(1))?;
            // Its invocation and its completion alike.
            for event in events.iter_mut().filter(|event| event.index == index) {
                group_offsets_mut(event)[i].offset = end[&partition];
            }
        }
    }
    Some(events)
}

fn group_offsets_mut(event: &mut Event) -> &mut Vec<GroupOffset> {
    match &mut event.op {
        Op::Commit(commit) | Op::Committed(commit) => &mut commit.offsets,
        other => panic!("no group offsets: {other:?}"),
    }
}

/// The answers of ok fetch-committeds invoked after an ok commit of their partition completed.
fn forgettable_answers(events: &[Event]) -> Vec<(usize, usize)> {
    let mut acked: BTreeSet<&TopicPartition> = BTreeSet::new();
    let mut acked_at_invoke: HashMap<OpIndex, BTreeSet<&TopicPartition>> = HashMap::new();
    let mut places = Vec::new();
    for (at, event) in events.iter().enumerate() {
        match (&event.op, event.kind) {
            (Op::Commit(commit), EventType::Ok) => acked.extend(commit.offsets.iter().map(|o| &o.tp)),
            (Op::FetchCommitted(_), EventType::Invoke) => {
                acked_at_invoke.insert(event.index, acked.clone());
            }
            (Op::Committed(answer), EventType::Ok) => {
                let acked = &acked_at_invoke[&event.index];
                places.extend(
                    (0..answer.offsets.len()).filter(|&i| acked.contains(&answer.offsets[i].tp)).map(|i| (at, i)),
                );
            }
            _ => {}
        }
    }
    places
}

/// Per partition, the offset after the last one the drainer's poll (at `drain`) read.
fn drained_end(events: &[Event], drain: usize) -> BTreeMap<i32, i64> {
    let mut end = BTreeMap::new();
    for record in records_of(&events[drain]).into_iter().flatten() {
        let after = end.entry(record.tp.partition).or_insert(0);
        *after = (*after).max(record.offset + 1);
    }
    end
}

/// The ok commits (by index, which of their offsets, its partition) committed while some offset below `end`
/// was still unread by the group's members.
fn commits_short_of(events: &[Event], end: &BTreeMap<i32, i64>) -> Vec<(OpIndex, usize, i32)> {
    let members: BTreeSet<Process> = events
        .iter()
        .filter(|e| matches!(e.op, Op::Commit(_) | Op::FetchCommitted(_)) && e.kind == EventType::Invoke)
        .map(|e| e.process)
        .collect();
    let acked: HashSet<OpIndex> =
        events.iter().filter(|e| matches!(e.op, Op::Commit(_)) && e.kind == EventType::Ok).map(|e| e.index).collect();
    let mut read: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    let mut places = Vec::new();
    for event in events {
        match (&event.op, event.kind) {
            (Op::Poll(records), EventType::Ok) if members.contains(&event.process) => {
                for r in records {
                    read.entry(r.tp.partition).or_default().insert(r.offset);
                }
            }
            (Op::Commit(commit), EventType::Invoke) if acked.contains(&event.index) => {
                for (i, offset) in commit.offsets.iter().enumerate() {
                    let partition = offset.tp.partition;
                    let unread = |o: &i64| !read.get(&partition).is_some_and(|read| read.contains(o));
                    if (0..end.get(&partition).copied().unwrap_or(0)).any(|o| unread(&o)) {
                        places.push((event.index, i, partition));
                    }
                }
            }
            _ => {}
        }
    }
    places
}

/// Pairs of ok polls by one consumer with nothing in between that moves its position (assign, seek, crash,
/// an indeterminate poll), both reading some partition.
fn successive_polls(events: &[Event]) -> Vec<(usize, usize)> {
    let mut last: BTreeMap<Process, usize> = BTreeMap::new();
    let mut pairs = Vec::new();
    for (at, event) in events.iter().enumerate() {
        let resets = matches!(
            (&event.op, event.kind),
            (Op::Crash, EventType::Invoke)
                | (Op::Assign(_) | Op::Seek(_), EventType::Ok | EventType::Info)
                | (Op::Poll(_), EventType::Info)
        );
        if resets {
            last.remove(&event.process);
        }
        let Some(records) = records_of(event) else { continue };
        if records.is_empty() {
            continue;
        }
        if let Some(&earlier) = last.get(&event.process) {
            let before = records_of(&events[earlier]).unwrap();
            if before.iter().any(|r| records.iter().any(|s| s.tp == r.tp)) {
                pairs.push((earlier, at));
            }
        }
        last.insert(event.process, at);
    }
    pairs
}

#[test]
fn generated_histories_are_valid_and_each_mutation_is_caught() {
    let cases = AtomicUsize::new(0);
    let ops = AtomicUsize::new(0);
    let mutated: [AtomicUsize; 6] = Default::default();
    bolero::check!().with_type::<Vec<[u8; 16]>>().with_iterations(2_000).for_each(|chunks| {
        let [kind, pick_low, pick_high, rest @ ..] = chunks.as_flattened() else { return };
        let mut u = Unstructured::new(rest);
        let mut sim = Sim::default();
        while !u.is_empty() && sim.step(&mut u).is_ok() {}
        ops.fetch_add(sim.ops, Ordering::Relaxed);
        cases.fetch_add(1, Ordering::Relaxed);
        let history = sim.drain();

        let mut text = Vec::new();
        write(&history, &mut text).unwrap();
        assert_eq!(parse(std::str::from_utf8(&text).unwrap()).unwrap(), history);

        let options = Options { idempotent: true, ..Options::default() };
        let report = check(&history, &options);
        assert!(report.valid && report.anomalies.is_empty(), "{report}\n{}", String::from_utf8_lossy(&text));

        let mutation = Mutation::ALL[usize::from(*kind) % Mutation::ALL.len()];
        let pick = usize::from(u16::from_le_bytes([*pick_low, *pick_high]));
        let Some(events) = mutate(&history, mutation, pick) else { return };
        mutated[mutation as usize].fetch_add(1, Ordering::Relaxed);
        let mutant = History::from_events(events).unwrap();
        let report = check(&mutant, &options);
        assert!(!report.valid, "{mutation:?} went unnoticed");
        assert!(report.finding(mutation.expected()).is_some(), "{mutation:?} gave {report}");
    });
    let (cases, ops) = (cases.into_inner(), ops.into_inner());
    let mutated = mutated.map(AtomicUsize::into_inner);
    eprintln!("{cases} histories, {ops} operations, mutations applied {mutated:?}");
    // Guards against a generator that quietly produces nothing to check.
    assert!(cases >= 1_000 && ops >= 100_000, "too little was generated");
    assert!(mutated.iter().all(|&n| n >= 100), "some mutation rarely applied: {mutated:?}");
}

#[test]
fn one_mutation_of_each_kind_on_a_fixed_history() {
    // Two producers, one consumer reading in small steps and committing, then the drain: every mutation
    // has a place.
    let mut sim = Sim::default();
    for i in 0..12 {
        sim.send(PRODUCERS[i % 2], 0, 0);
    }
    sim.assign(CONSUMERS[0], [(0, 0)].into());
    for _ in 0..4 {
        sim.poll(CONSUMERS[0], 3, 0, true);
        let processed = sim.processed(0, CONSUMERS[0]);
        sim.commit(CONSUMERS[0], vec![(0, processed)], 0);
        sim.fetch_committed(CONSUMERS[0], vec![0], 0);
    }
    let history = sim.drain();
    assert!(check(&history, &Options { idempotent: true, ..Options::default() }).valid);
    for mutation in Mutation::ALL {
        let mutant = History::from_events(mutate(&history, mutation, 0).unwrap()).unwrap();
        let report = check(&mutant, &Options { idempotent: true, ..Options::default() });
        assert!(report.finding(mutation.expected()).is_some(), "{mutation:?} gave {report}");
    }
}
