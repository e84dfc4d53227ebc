//! Model-based test of the cluster metadata machine against the reference
//! model in `log_core::testing::metadata_model`: random command sequences
//! (valid and invalid), compared after every step, encoded, decoded, applied
//! to a second replica restored from a snapshot midway.

use std::collections::BTreeMap;

use bolero::check;
use log_core::metadata::{ClusterMetadata, Command, MAX_PARTITIONS};
use log_core::testing::metadata_model::{command, populated, run, Op, CASES};
use log_core::ErrorCode;

#[test]
fn machine_matches_model() {
    check!().with_type::<(Vec<Op>, u8)>().with_iterations(CASES).for_each(|(ops, restore_at)| {
        run(ops, *restore_at as usize % (ops.len() + 1));
    });
}

/// The same, on a cluster that starts with 1 to 7 brokers, so that more
/// creates succeed and topics pile up: the leader rotation and deletes get
/// exercised on a populated state.
#[test]
fn populated_cluster_matches_model() {
    check!().with_type::<(u8, Vec<Op>)>().with_iterations(CASES).for_each(|(brokers, ops)| {
        let all = populated(*brokers, ops);
        run(&all, all.len() / 2);
    });
}

/// Bytes that are not a command never panic, and nor does applying whatever
/// a corrupted encoding still decodes to.
#[test]
fn corrupted_commands_are_errors_not_panics() {
    check!().with_type::<(Op, u16, u8, Vec<u8>)>().with_iterations(CASES).for_each(|(op, at, byte, garbage)| {
        let _ = Command::decode(garbage);
        let _ = ClusterMetadata::decode(garbage);
        let mut bytes = command(op).encode();
        let at = *at as usize % bytes.len();
        bytes[at] = *byte;
        let mut machine = ClusterMetadata::default();
        let _ = machine.apply(Command::RegisterBroker { id: 0, host: "h".into(), port: 1, rack: None, raft: None });
        for bytes in [&bytes[..], &bytes[..at]] {
            if let Ok(command) = Command::decode(bytes) {
                let _ = machine.apply(command);
            }
        }
    });
}

#[test]
fn partitions_beyond_the_limit_are_refused() {
    let mut m = ClusterMetadata::default();
    m.apply(Command::RegisterBroker { id: 0, host: "h".into(), port: 1, rack: None, raft: None }).unwrap();
    let create = |partitions| Command::CreateTopic {
        name: "big".into(),
        id: [9; 16],
        partitions,
        replication_factor: 1,
        configs: BTreeMap::new(),
    };
    assert_eq!(m.apply(create(MAX_PARTITIONS + 1)).unwrap_err().code(), ErrorCode::InvalidPartitions);
    assert!(m.apply(create(MAX_PARTITIONS)).is_ok());
}
