//! lost-commit and unprocessed: the offsets consumer groups commit.
//!
//! "Before" means earlier in the event list, not at a smaller time: the recorder orders events as they
//! happened even when they share a time (a simulated clock stands still between sleeps), and along the
//! list times never decrease, so the order agrees with every difference of times.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::check::report::{Anomaly, Example, Findings};
use crate::event::{Commit, Event, EventType, GroupOffset, Op, OpIndex, Process, TopicPartition};
use crate::history::Operation;

/// A place in the event list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum When {
    /// Before the first event: when the initial "nothing committed" took effect.
    Start,
    At(usize),
    /// After every event: when an indeterminate commit may still take effect, or what never happened.
    Never,
}

/// The offset a fetch-committed returns for a partition the group committed nothing for.
const NOTHING_COMMITTED: i64 = -1;

/// One group's committed offset of one partition: a register.
type Key<'a> = (&'a str, &'a TopicPartition);

/// A commit of one partition that may have taken effect.
struct Write {
    offset: i64,
    invoked: usize,
    /// When it completed `ok`; `Never` when indeterminate.
    done: When,
    commit: OpIndex,
}

/// One partition's offset returned by an ok fetch-committed.
struct Read {
    offset: i64,
    invoked: usize,
    completed: usize,
    fetch: OpIndex,
}

#[derive(Default)]
struct Register {
    /// In completion order, those that never completed last.
    writes: Vec<Write>,
    reads: Vec<Read>,
}

/// What the history says about group offsets, gathered in one pass over its events.
#[derive(Default)]
struct Gathered<'a> {
    registers: BTreeMap<Key<'a>, Register>,
    /// Per process, the groups it is a member of: those it invoked a commit or fetch-committed for.
    members: HashMap<Process, BTreeSet<&'a str>>,
    /// Per partition, every offset an ok poll read, and the first poll that read it.
    read_anywhere: BTreeMap<&'a TopicPartition, BTreeMap<i64, OpIndex>>,
    /// The ok polls' completions, each with its place in the event list.
    polls: Vec<(usize, &'a Event)>,
}

impl<'a> Gathered<'a> {
    fn gather(events: &'a [Event]) -> Gathered<'a> {
        let mut seen = Gathered::default();
        let mut invoked: HashMap<OpIndex, usize> = HashMap::new();
        let mut pending_commits: BTreeMap<OpIndex, &'a Commit> = BTreeMap::new();
        for (at, event) in events.iter().enumerate() {
            match (&event.op, event.kind) {
                (Op::Commit(commit), EventType::Invoke) => {
                    seen.members.entry(event.process).or_default().insert(&commit.group);
                    invoked.insert(event.index, at);
                    pending_commits.insert(event.index, commit);
                }
                (Op::FetchCommitted(fetch), EventType::Invoke) => {
                    seen.members.entry(event.process).or_default().insert(&fetch.group);
                    invoked.insert(event.index, at);
                }
                (Op::Commit(_), EventType::Fail) => {
                    pending_commits.remove(&event.index);
                }
                (Op::Commit(commit), EventType::Ok | EventType::Info) => {
                    pending_commits.remove(&event.index);
                    let done = if event.kind == EventType::Ok { When::At(at) } else { When::Never };
                    let Some(&invoked) = invoked.get(&event.index) else { continue };
                    seen.write(commit, invoked, done, event.index);
                }
                (Op::Committed(answer), EventType::Ok) => {
                    let Some(&invoked) = invoked.get(&event.index) else { continue };
                    for GroupOffset { tp, offset } in &answer.offsets {
                        let read = Read { offset: *offset, invoked, completed: at, fetch: event.index };
                        seen.registers.entry((&answer.group, tp)).or_default().reads.push(read);
                    }
                }
                (Op::Poll(records), EventType::Ok) => {
                    for record in records {
                        seen.read_anywhere.entry(&record.tp).or_default().entry(record.offset).or_insert(event.index);
                    }
                    seen.polls.push((at, event));
                }
                _ => {}
            }
        }
        // Commits that never completed (their process crashed, or the history ended) may still take effect.
        for (index, commit) in pending_commits {
            if let Some(&invoked) = invoked.get(&index) {
                seen.write(commit, invoked, When::Never, index);
            }
        }
        seen
    }

    fn write(&mut self, commit: &'a Commit, invoked: usize, done: When, index: OpIndex) {
        for GroupOffset { tp, offset } in &commit.offsets {
            let write = Write { offset: *offset, invoked, done, commit: index };
            self.registers.entry((&commit.group, tp)).or_default().writes.push(write);
        }
    }

    /// Per group and partition, where a member's ok poll first read each offset.
    fn first_read_by_members(&self) -> HashMap<Key<'a>, HashMap<i64, usize>> {
        let mut first: HashMap<Key<'a>, HashMap<i64, usize>> = HashMap::new();
        for &(at, poll) in &self.polls {
            let (Some(groups), Op::Poll(records)) = (self.members.get(&poll.process), &poll.op) else { continue };
            for &group in groups {
                for record in records {
                    first.entry((group, &record.tp)).or_default().entry(record.offset).or_insert(at);
                }
            }
        }
        first
    }
}

pub(crate) fn check(events: &[Event], operations: &HashMap<OpIndex, &Operation>, findings: &mut Findings) {
    let seen = Gathered::gather(events);
    for (&key, register) in &seen.registers {
        lost_commits(key, register, operations, findings);
    }
    let first_read = seen.first_read_by_members();
    let no_reads = HashMap::new();
    for (&key, register) in &seen.registers {
        let (_, tp) = key;
        let Some(read_anywhere) = seen.read_anywhere.get(tp) else { continue };
        let processed = Processed::new(read_anywhere, first_read.get(&key).unwrap_or(&no_reads));
        for write in register.writes.iter().filter(|write| matches!(write.done, When::At(_))) {
            processed.judge(key, write, operations, findings);
        }
    }
}

/// A read is stale when every write of its value that could have produced it was overwritten before the
/// read began: a later ok commit was invoked after that write completed, and completed before the read.
fn lost_commits(
    (group, tp): Key,
    register: &Register,
    operations: &HashMap<OpIndex, &Operation>,
    findings: &mut Findings,
) {
    // The ok writes in completion order, each with the latest-invoked ok write among it and those before it.
    let mut latest_invoked: Vec<(usize, &Write)> = Vec::new();
    let mut by_offset: HashMap<i64, Vec<&Write>> = HashMap::new();
    for write in &register.writes {
        by_offset.entry(write.offset).or_default().push(write);
        let When::At(done) = write.done else { continue };
        let latest = match latest_invoked.last() {
            Some(&(_, latest)) if latest.invoked > write.invoked => latest,
            _ => write,
        };
        latest_invoked.push((done, latest));
    }
    for read in &register.reads {
        let acked_before = latest_invoked.partition_point(|&(done, _)| done < read.invoked);
        let superseder = acked_before.checked_sub(1).map(|last| latest_invoked[last].1);
        let overwritten_at = superseder.map_or(When::Start, |w| When::At(w.invoked));
        // A write invoked after the read completed cannot be what it read.
        let candidates: Vec<&Write> = by_offset
            .get(&read.offset)
            .into_iter()
            .flatten()
            .copied()
            .filter(|write| write.invoked < read.completed)
            .collect();
        let initial = (read.offset == NOTHING_COMMITTED).then_some(When::Start);
        let survives = |done: When| done >= overwritten_at;
        if initial.is_some_and(survives) || candidates.iter().any(|write| survives(write.done)) {
            continue;
        }
        findings.add(Anomaly::LostCommit, || {
            let (fetch, value) = (read.fetch, read.offset);
            let written = initial.is_some() || !candidates.is_empty();
            let detail = match superseder {
                Some(latest) if written => format!(
                    "group {group:?} {tp}: {fetch} returned offset {value}, though commit {} of offset {} was \
                     acknowledged before the fetch began and invoked after every commit of {value} had completed",
                    latest.commit, latest.offset
                ),
                _ => format!("group {group:?} {tp}: {fetch} returned offset {value}, which no commit wrote"),
            };
            let ops = candidates.iter().map(|write| write.commit).chain(superseder.map(|w| w.commit)).chain([fetch]);
            Example::new(detail, ops.filter_map(|index| operations.get(&index).copied()))
        });
    }
}

/// For one group and partition, which offsets its members had read by when.
struct Processed<'a> {
    /// The offsets any ok poll read, ascending, each with the first poll that read it.
    offsets: Vec<(i64, OpIndex)>,
    /// Per offset, the latest of the first member reads of it and of every lower offset.
    all_read_by: Vec<When>,
    first_read: &'a HashMap<i64, usize>,
}

impl<'a> Processed<'a> {
    fn new(read_anywhere: &BTreeMap<i64, OpIndex>, first_read: &'a HashMap<i64, usize>) -> Processed<'a> {
        let offsets: Vec<(i64, OpIndex)> = read_anywhere.iter().map(|(&offset, &poll)| (offset, poll)).collect();
        let mut latest = When::Start;
        let all_read_by = offsets
            .iter()
            .map(|(offset, _)| {
                latest = latest.max(first_read.get(offset).map_or(When::Never, |&at| When::At(at)));
                latest
            })
            .collect();
        Processed { offsets, all_read_by, first_read }
    }

    /// A commit of offset c says every offset below c was processed: any of them that some poll read, a
    /// member must have read before the commit began.
    fn judge(
        &self,
        (group, tp): Key,
        write: &Write,
        operations: &HashMap<OpIndex, &Operation>,
        findings: &mut Findings,
    ) {
        let below = self.offsets.partition_point(|&(offset, _)| offset < write.offset);
        let began = When::At(write.invoked);
        // `all_read_by` never decreases, so the offsets read in time form a prefix.
        let in_time = self.all_read_by[..below].partition_point(|&by| by < began);
        let Some(&(offset, poll)) = self.offsets[..below].get(in_time) else { return };
        findings.add(Anomaly::Unprocessed, || {
            let unread = self.offsets[in_time..below]
                .iter()
                .filter(|(offset, _)| self.first_read.get(offset).is_none_or(|&at| When::At(at) > began))
                .count();
            let detail = format!(
                "group {group:?} committed {tp} offset {} in {} before any of its members read offset {offset}, \
                 which {poll} read ({unread} of the offsets below {} read elsewhere but not by the group then)",
                write.offset, write.commit, write.offset
            );
            Example::new(detail, [write.commit, poll].iter().filter_map(|index| operations.get(index).copied()))
        });
    }
}
