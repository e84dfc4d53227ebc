//! Histories generated from a small simulated log are valid; one planted mutation is reported as the
//! anomaly it is.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use arbitrary::{Result, Unstructured};
use jepsen_style::{
    check, parse, write, Anomaly, Event, EventType, History, HistoryBuilder, Op, Options, Process, Record, Seek, Send,
    TopicPartition,
};

const PARTITIONS: i32 = 2;
const PRODUCERS: [u64; 2] = [1, 2];
const CONSUMERS: [u64; 2] = [10, 11];
/// Reads every partition from the start once the workload is done, so nothing acknowledged is unseen.
const DRAINER: u64 = 99;

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
        match u.int_in_range(0..=9)? {
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
            _ => {
                let process = *u.choose(&[PRODUCERS, CONSUMERS].concat())?;
                let time = self.tick();
                self.recorder.crash(Process(process), time).unwrap();
                self.positions.remove(&process);
            }
        }
        Ok(())
    }

    /// outcome: 0..=2 ok, 3 fail, 4 info and applied, 5 info and lost, 6 never completes but applied,
    /// 7 never completes and lost.
    fn send(&mut self, process: u64, partition: i32, outcome: u8) {
        self.values += 1;
        let value = format!("v{}", self.values);
        let send = Send { tp: tp(partition), key: Some(format!("k{process}")), value: value.clone(), offset: None };
        let time = self.tick();
        let index = self.recorder.invoke(Process(process), time, Op::Send(send)).unwrap();
        let offset = self.len(partition);
        if matches!(outcome, 0..=2 | 4 | 6) {
            self.log.entry(partition).or_default().push(value);
        }
        let time = self.tick();
        match outcome {
            0..=2 => self.recorder.ok_send(index, time, offset).unwrap(),
            3 => self.recorder.fail(index, time).unwrap(),
            4 | 5 => self.recorder.info(index, time).unwrap(),
            _ => {}
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mutation {
    DropMiddleRead,
    DuplicateValue,
    ChangeValue,
    SwapPolls,
}

impl Mutation {
    const ALL: [Mutation; 4] =
        [Mutation::DropMiddleRead, Mutation::DuplicateValue, Mutation::ChangeValue, Mutation::SwapPolls];

    fn expected(self) -> Anomaly {
        match self {
            Mutation::DropMiddleRead => Anomaly::PollSkip,
            Mutation::DuplicateValue => Anomaly::Duplicate,
            Mutation::ChangeValue => Anomaly::InconsistentOffsets,
            Mutation::SwapPolls => Anomaly::NonmonotonicPoll,
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
    }
    Some(events)
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
    let mutated: [AtomicUsize; 4] = Default::default();
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

        let options = Options { idempotent: true };
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
    // Two producers, one consumer reading in small steps, then the drain: every mutation has a place.
    let mut sim = Sim::default();
    for i in 0..12 {
        sim.send(PRODUCERS[i % 2], 0, 0);
    }
    sim.assign(CONSUMERS[0], [(0, 0)].into());
    for _ in 0..4 {
        sim.poll(CONSUMERS[0], 3, 0, true);
    }
    let history = sim.drain();
    assert!(check(&history, &Options { idempotent: true }).valid);
    for mutation in Mutation::ALL {
        let mutant = History::from_events(mutate(&history, mutation, 0).unwrap()).unwrap();
        let report = check(&mutant, &Options { idempotent: true });
        assert!(report.finding(mutation.expected()).is_some(), "{mutation:?} gave {report}");
    }
}
