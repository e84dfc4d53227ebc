//! The automatic rebalance inside the simulator (`--join 1 --auto-rebalance
//! 1`): broker 4 joins a running 3-broker cluster a third of the way into
//! the run, and no operator plans anything; the metadata group's leader
//! moves replicas onto it by itself, until replicas are spread evenly. The
//! checker must find the history valid throughout.
#![cfg(madsim)]

use sim::config::SimConfig;

const JOINER: i32 = 4;

fn run(seed: u64, faults: &str) -> String {
    let mut config = SimConfig::new(seed);
    let flags = [
        ("--brokers", "3"),
        ("--partitions", "4"),
        ("--duration", "40s"),
        ("--faults", faults),
        ("--join", "1"),
        ("--auto-rebalance", "1"),
    ];
    for (flag, value) in flags {
        config.set(flag, value).expect("a valid flag");
    }
    let outcome = sim::run::run(&config);
    assert!(outcome.valid, "seed {seed} --faults {faults}: {}\n{}", outcome.verdict, outcome.details);
    String::from_utf8_lossy(&outcome.trace).into_owned()
}

/// The replicas per broker last seen with no move in progress, from the
/// joiner task's `join: spread, replicas: 1=3 2=3 ...` lines.
fn last_spread(trace: &str) -> Vec<(i32, usize)> {
    const LINE: &str = "join: spread, replicas: ";
    let Some(line) = trace.lines().rev().find_map(|l| l.split_once(LINE).map(|(_, rest)| rest)) else {
        return Vec::new();
    };
    line.split_whitespace()
        .map_while(|pair| {
            let (broker, count) = pair.trim_end_matches(',').split_once('=')?;
            Some((broker.parse().ok()?, count.parse().ok()?))
        })
        .collect()
}

#[test]
fn a_joiner_takes_replicas_without_an_operator_and_the_spread_ends_even() {
    let trace = run(3, "none");
    assert!(trace.contains("join: broker registered"), "broker 4 never joined");
    assert!(!trace.contains("join: plan"), "no operator plan may run alongside");
    let spread = last_spread(&trace);
    let held = spread.iter().find(|(b, _)| *b == JOINER).map(|&(_, n)| n);
    assert!(held.is_some_and(|n| n > 0), "the joiner holds no replicas in the end: {spread:?}");
    let counts = spread.iter().map(|&(_, n)| n);
    let (min, max) = (counts.clone().min().unwrap_or(0), counts.max().unwrap_or(0));
    assert!(max - min <= 1, "uneven in the end: {spread:?}");
    assert_eq!(spread.len(), 4, "every broker counted: {spread:?}");
    assert!(trace.contains("automatic rebalance: moving"), "the metadata leader never moved a replica");
}

#[test]
fn the_automatic_rebalance_under_faults_keeps_every_acknowledged_write() {
    for seed in 1..=2 {
        let trace = run(seed, "all");
        assert!(trace.contains("join: broker registered"), "seed {seed}: broker 4 never joined");
        assert!(trace.contains("automatic rebalance: moving"), "seed {seed}: the metadata leader moved nothing");
    }
}
