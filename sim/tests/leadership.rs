//! Preferred leadership coming back after a failure, inside the simulator:
//! three brokers, 18 partitions (each broker is the preferred replica, the
//! first of the replica list, of six), the normal workload, and one
//! scheduled fault: broker 1 is killed, so the partitions it led elect other
//! leaders, then restarted. The brokers' `balance_leaders` must hand those
//! partitions back to it, as `[leadership]` has it on the simulator's brokers
//! (the defaults: a look every 5 s, at most `max_transfers` hand-overs under
//! way per broker), so that leadership returns a few partitions at a time.
//!
//! Everything is read from the trace: `partition placed` lines name each
//! partition's raft group and preferred replica, `became leader` lines say
//! who leads a group from when, `handing leadership` lines when a broker
//! starts a hand-over.
#![cfg(madsim)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use raft_node::config::LeadershipSection;

/// The property holds on seeds `1..=SEEDS`; `SEED` runs twice, to the same trace.
const SEEDS: u64 = 12;
const SEED: u64 = 5;
const VICTIM: u8 = 1;
/// Broker 1 is down from 5 s to 15 s into the fault phase, which goes on
/// for longer than [`RETURN_DEADLINE`] after that.
const FLAGS: [(&str, &str); 4] =
    [("--brokers", "3"), ("--partitions", "18"), ("--duration", "50s"), ("--faults", "schedule:5000+10000=kill(1)")];
/// From the restart until every partition is led by its preferred replica:
/// the broker recovers and catches up, then each other broker hands its
/// partitions back at most `max_transfers` per 5 s look (six partitions on
/// one broker at most: three looks).
const RETURN_DEADLINE: Duration = Duration::from_secs(30);
/// raft-rs abandons a leadership transfer that has not finished within an
/// election timeout (10 ticks of 100 ms on the simulator's brokers), so a
/// hand-over started at `t` is over by `t` + this.
const HAND_OVER_LIMIT: Duration = Duration::from_secs(1);

#[test]
fn leadership_returns_to_the_preferred_replicas_a_few_partitions_at_a_time() {
    for seed in 1..=SEEDS {
        returns_gradually(seed);
    }
}

/// Checks one seed's run.
fn returns_gradually(seed: u64) {
    // The simulator's brokers run the default [leadership] section.
    let max_transfers = LeadershipSection::default().max_transfers;
    let trace = common::run(seed, &FLAGS);
    let preferred = preferred_replicas(&trace);
    assert_eq!(preferred.len(), 18, "every partition placed");
    let restart = format!("detail: broker {VICTIM} restarted");

    let mut leaders = Leaders::default();
    let mut restarted = None;
    let mut settled = None;
    for line in trace.lines() {
        leaders.see(line);
        let Some(at) = time(line) else { continue };
        if restarted.is_none() && line.contains(&restart) {
            restarted = Some(at);
            // Leadership moved away from the victim, onto brokers that now
            // have more to give back than they may hand over at once.
            let mut away: BTreeMap<u8, usize> = BTreeMap::new();
            for (group, _) in preferred.iter().filter(|(_, &b)| b == VICTIM) {
                let leader = leaders.of(group).filter(|&l| l != VICTIM);
                *away
                    .entry(
                        leader.unwrap_or_else(|| panic!("seed {seed}: {group} still led by {VICTIM} at its restart")),
                    )
                    .or_default() += 1;
            }
            assert!(
                away.values().any(|&n| n > max_transfers),
                "seed {seed}: no broker leads more than {max_transfers} of broker {VICTIM}'s partitions ({away:?}): the limit is not exercised"
            );
        }
        if restarted.is_some() {
            let all_preferred = preferred.iter().all(|(group, &b)| leaders.of(group) == Some(b));
            settled = if all_preferred { settled.or(Some(at)) } else { None };
        }
    }
    let restarted = restarted.expect("the victim was restarted");
    let astray: Vec<_> = preferred
        .iter()
        .filter(|(group, &b)| leaders.of(group) != Some(b))
        .map(|(group, b)| format!("{group} led by {:?}, not {b}", leaders.of(group)))
        .collect();
    assert!(astray.is_empty(), "seed {seed}: at the end, {}", astray.join("; "));
    let settled = settled.expect("led by the preferred replicas since some time after the restart");
    assert!(
        settled - restarted <= RETURN_DEADLINE,
        "seed {seed}: leadership came back {:?} after the restart, more than {RETURN_DEADLINE:?}",
        settled - restarted
    );

    let hand_overs = hand_overs(&trace);
    let owed = preferred.values().filter(|&&b| b == VICTIM).count();
    let to_victim = hand_overs.values().flatten().filter(|(at, to)| *at >= restarted && *to == VICTIM).count();
    assert!(to_victim >= owed, "seed {seed}: {owed} partitions came back by {to_victim} hand-overs, not all by them");
    for (broker, started) in &hand_overs {
        // Hand-overs that started less than HAND_OVER_LIMIT apart may be under
        // way together: counting them bounds those under way at once from above.
        for (i, &(at, _)) in started.iter().enumerate() {
            let at_once = started[i..].iter().take_while(|(later, _)| *later < at + HAND_OVER_LIMIT).count();
            assert!(
                at_once <= max_transfers,
                "seed {seed}: broker {broker} had {at_once} hand-overs under way at {at:?}, more than {max_transfers}"
            );
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    assert_eq!(common::run(SEED, &FLAGS), common::run(SEED, &FLAGS));
}

/// Each partition's raft group and its preferred replica.
fn preferred_replicas(trace: &str) -> BTreeMap<&str, u8> {
    trace
        .lines()
        .filter(|line| line.contains(" partition placed, "))
        .filter_map(|line| Some((field(line, "group")?, field(line, "preferred")?.parse().ok()?)))
        .collect()
}

/// Who leads each group: the broker that became leader at the highest term.
#[derive(Default)]
struct Leaders<'a>(BTreeMap<&'a str, (u64, u8)>);

impl<'a> Leaders<'a> {
    fn see(&mut self, line: &'a str) {
        if !line.contains(" became leader at term ") {
            return;
        }
        let parsed =
            || Some((field(line, "group")?, field(line, "term")?.parse().ok()?, field(line, "broker")?.parse().ok()?));
        if let Some((group, term, broker)) = parsed() {
            let leader = self.0.entry(group).or_insert((term, broker));
            if term >= leader.0 {
                *leader = (term, broker);
            }
        }
    }

    fn of(&self, group: &str) -> Option<u8> {
        self.0.get(group).map(|&(_, broker)| broker)
    }
}

/// Per broker, when it started each hand-over and to whom, in order.
fn hand_overs(trace: &str) -> BTreeMap<u8, Vec<(Duration, u8)>> {
    let mut started: BTreeMap<u8, Vec<(Duration, u8)>> = BTreeMap::new();
    for line in trace.lines().filter(|line| line.contains(" handing leadership to the preferred replica")) {
        let parsed = || Some((field(line, "broker")?.parse().ok()?, time(line)?, field(line, "to")?.parse().ok()?));
        let (broker, at, to) = parsed().unwrap_or_else(|| panic!("unreadable hand-over line {line:?}"));
        started.entry(broker).or_default().push((at, to));
    }
    started
}

/// The simulated time a trace line was logged at.
fn time(line: &str) -> Option<Duration> {
    line.split_whitespace().next()?.parse().ok().map(Duration::from_secs_f64)
}

/// The value of `key` in a trace line (`..., key: value, ...`).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(", {key}: "))? + key.len() + 4;
    line[start..].split(", ").next()
}
