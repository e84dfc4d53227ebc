//! A broker joining a running cluster and a founder leaving it, inside the
//! simulator (`--join 1`): broker 4 starts a third of the way into the run
//! with a joiner's config (the founders 1..=3 to contact), becomes a learner
//! of the metadata group, takes replicas in a rebalance; then founder 3, a
//! metadata voter, is decommissioned and removed, and the metadata group
//! promotes the joiner in its place. The checker must find the history
//! valid throughout.
#![cfg(madsim)]

mod common;

fn run(seed: u64, faults: &str) -> String {
    let flags =
        [("--brokers", "3"), ("--partitions", "4"), ("--duration", "40s"), ("--faults", faults), ("--join", "1")];
    common::run(seed, &flags)
}

#[test]
fn a_joiner_learns_takes_replicas_and_replaces_a_leaving_voter() {
    let trace = run(3, "none");
    for step in [
        "step: AddLearner(4), group: metadata",
        "join: broker registered",
        "join: plan done, plan: rebalance",
        "join: broker removed, broker: 3",
        "step: EnterJoint { add: [4], remove: [3] }, group: metadata",
    ] {
        assert!(trace.contains(step), "no {step:?} in the trace");
    }
    assert!(trace.contains("peer dropped, peer: 3"), "the brokers stop talking to the removed one");
}

#[test]
fn joining_and_leaving_under_faults_keep_every_acknowledged_write() {
    for seed in 1..=3 {
        let trace = run(seed, "all");
        assert!(trace.contains("join: broker registered"), "seed {seed}: broker 4 never joined");
    }
}
