//! Partition replicas moving while the workload runs, inside the simulator:
//! `--moves 1` takes every replica off one broker after another and spreads
//! them evenly again (raft membership changes driven by each partition's
//! leader), with every fault the seed draws. The checker must find the
//! history valid (no acknowledged write lost, no offset with two values),
//! and the moves must really happen: learners added, voters swapped, the
//! old replicas deleted.
#![cfg(madsim)]

mod common;

fn run(seed: u64, faults: &str) -> String {
    common::run(seed, &[("--partitions", "4"), ("--duration", "30s"), ("--faults", faults), ("--moves", "1")])
}

#[test]
fn moves_without_faults_complete_and_delete_the_old_replicas() {
    let trace = run(7, "none");
    for step in ["step: AddLearner", "step: EnterJoint", "step: LeaveJoint", "step: TransferLeader"] {
        assert!(trace.contains(step), "no {step} in the trace");
    }
    assert!(trace.matches("move: plan done").count() >= 4, "decommissions and rebalances completed");
    assert!(trace.contains("deleting its data"), "removed replicas deleted");
}

#[test]
fn moves_under_faults_keep_every_acknowledged_write() {
    for seed in 1..=6 {
        let trace = run(seed, "all");
        assert!(trace.contains("step: LeaveJoint"), "seed {seed}: no move finished");
    }
}
