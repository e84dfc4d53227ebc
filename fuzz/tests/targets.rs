//! Every fuzz target of `keel_fuzz::targets`, one test each, named as ci/fuzz.sh selects
//! them. Under `cargo test`: the target's corpus and crash files, then random inputs for a
//! few seconds. Under `cargo bolero test <name> -p keel-fuzz`: coverage-guided fuzzing.
//! The property of each target is documented on its function.

use std::sync::atomic::Ordering;

use keel_fuzz::fuzz_target;
use keel_fuzz::targets::{batch, kafka, models, server, storage, transport};

/// Kafka request frames, raw and mutated valid requests of every supported API and version:
/// no panic, bounded allocation, a request or a typed error (`kafka::request_frames`).
#[test]
fn kafka_request_frames() {
    fuzz_target!("kafka_request_frames", kafka::request_frames, 1000);
    eprintln!(
        "kafka_request_frames: largest single allocation decoding one frame: {} bytes",
        kafka::LARGEST_SEEN.load(Ordering::Relaxed)
    );
}

/// A real Kafka server on loopback: garbage never wedges it; ApiVersions is still answered
/// (`server::garbage_then_api_versions`).
#[test]
fn kafka_server() {
    fuzz_target!("kafka_server", server::garbage_then_api_versions, 100);
}

/// Record batches: accepted ones re-validate after stamping, rejected ones carry their Kafka
/// error code (`batch::record_batches`).
#[test]
fn record_batches() {
    fuzz_target!("record_batches", batch::record_batches, 1000);
}

/// The partition log machine against its reference model (`models::partition_log`).
#[test]
fn partition_model() {
    fuzz_target!("partition_model", models::partition_log, 1000);
    let steps = models::PARTITION_OPS.load(Ordering::Relaxed);
    eprintln!("partition_model: {steps} operations");
    assert!(steps > 100_000, "too few operations were decoded");
}

/// The cluster metadata machine against its reference model (`models::metadata`).
#[test]
fn metadata_model() {
    fuzz_target!("metadata_model", models::metadata, 1000);
    let steps = models::METADATA_COMMANDS.load(Ordering::Relaxed);
    eprintln!("metadata_model: {steps} commands");
    assert!(steps > 10_000, "too few commands were decoded");
}

/// Storage recovery from damaged files: no panic, no bad entry served, nothing before the
/// first damage lost (`storage::recovery`).
#[test]
fn storage_recovery() {
    fuzz_target!("storage_recovery", storage::recovery, 300);
}

/// Raft transport frames: typed errors, canonical encoding (`transport::frames`).
#[test]
fn transport_frames() {
    fuzz_target!("transport_frames", transport::frames, 1000);
}

/// Peer messages (protobuf raft messages and leader hints): typed errors, round trips
/// (`transport::peer_messages`).
#[test]
fn peer_messages() {
    fuzz_target!("peer_messages", transport::peer_messages, 1000);
}
