//! The pure state machines against their reference models (`log_core::testing`), on
//! operation sequences decoded from the fuzzer's bytes.

use std::sync::atomic::{AtomicUsize, Ordering};

use bolero::generator::bolero_generator::driver::{ByteSliceDriver, Options};
use bolero::generator::TypeGenerator;
use log_core::testing::{metadata_model, ops, partition_model};

/// Property: `PartitionLog` agrees with the reference model after every operation of any
/// sequence (offsets, high watermark, log start, idempotent producer verdicts, locate by
/// offset and timestamp, snapshot restore): `partition_model::run`'s assertions.
pub fn partition_log(input: &[u8]) {
    let ops = ops::<partition_model::Op>(input);
    PARTITION_OPS.fetch_add(ops.len(), Ordering::Relaxed);
    partition_model::run(&ops);
}

/// Operations and commands checked so far: a guard against a decoder that quietly produces
/// nothing to check.
pub static PARTITION_OPS: AtomicUsize = AtomicUsize::new(0);
pub static METADATA_COMMANDS: AtomicUsize = AtomicUsize::new(0);

/// Property: `ClusterMetadata` agrees with the reference model after every command of any
/// sequence (verdicts, brokers, topics, balanced assignments), state and commands survive
/// encode/decode, and a replica restored from a snapshot midway ends byte-identical:
/// `metadata_model::run`'s assertions. The first byte picks an empty or a populated cluster.
pub fn metadata(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else { return };
    // bolero's own decoding of bytes into the model's generated operations.
    let mut driver = ByteSliceDriver::new(rest, &Options::default());
    let Some((brokers, restore_at, ops)) = <(u8, u8, Vec<metadata_model::Op>)>::generate(&mut driver) else {
        return;
    };
    let ops = if mode % 2 == 0 { ops } else { metadata_model::populated(brokers, &ops) };
    METADATA_COMMANDS.fetch_add(ops.len(), Ordering::Relaxed);
    metadata_model::run(&ops, usize::from(restore_at) % (ops.len() + 1));
}
