//! The cluster under fault schedules chosen by a fuzzer: the input decodes to
//! a seed, a cluster shape and a [`Schedule`] of episodes (kills, pauses,
//! partitions of every shape, corrupt reads, power failures, link noise, each with its
//! targets, gap and hold), which drives a short `keel-sim` run; the run's
//! verdict (jepsen-style checker, election safety, no unexpected CRIT,
//! liveness after the heal, the final read) must be valid.
//!
//! Under `cargo test` (madsim build): the seeds in `fuzz/corpus/cluster_schedules/`
//! and any regressions in `fuzz/crashes/cluster_schedules/`, then bolero's random
//! engine for [`TEST_SECS`]. Under `cargo bolero test cluster_schedules -p sim`
//! (ci/fuzz.sh): coverage-guided, libFuzzer.
#![cfg(madsim)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arbitrary::Unstructured;
use sim::config::{Faults, SimConfig};
use sim::run::run;
use sim::schedule::Schedule;

/// Seconds of random inputs under `cargo test` (`BOLERO_RANDOM_TEST_TIME_MS` overrides).
const TEST_SECS: u64 = 10;
/// Fewer random cases than this in [`TEST_SECS`] means the target silently tests nothing.
const MIN_CASES: usize = 10;
const BROKERS: u8 = 3;

/// The run an input stands for: short enough for a fuzzer (well under a
/// second of wall time), long enough for several episodes.
fn decode(input: &[u8]) -> arbitrary::Result<SimConfig> {
    let mut u = Unstructured::new(input);
    let seed = u.arbitrary()?;
    let partitions = u.int_in_range(2..=4)?;
    let duration = Duration::from_secs(u.int_in_range(10..=20)?);
    let schedule = Schedule::decode(&mut u, BROKERS)?;
    Ok(SimConfig {
        seed,
        brokers: BROKERS,
        partitions,
        duration,
        faults: Faults::Scheduled(schedule),
        moves: false,
        join: false,
        auto_rebalance: false,
    })
}

/// The property: the run a schedule drives is valid. A failure names the
/// schedule, keeps the trace and prints the command that replays it.
fn cluster_schedule(input: &[u8]) {
    let Ok(config) = decode(input) else { return };
    let outcome = run(&config);
    if outcome.valid {
        return;
    }
    let Faults::Scheduled(schedule) = &config.faults else { unreachable!("decode schedules every run") };
    // The run is over: writing a real file is fine here.
    let trace = std::env::temp_dir().join(format!("keel-schedule-{}.trace", config.seed));
    let written =
        std::fs::write(&trace, &outcome.trace).map_or_else(|e| format!(" (not written: {e})"), |()| "".into());
    panic!(
        "{}\nschedule (start in its lane, hold, fault):\n{}\n{}\ntrace: {}{written}\nreplay: {}",
        outcome.verdict,
        schedule.describe(),
        outcome.details.trim_end(),
        trace.display(),
        config.command()
    );
}

fn inputs(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz").join(kind).join("cluster_schedules");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok).map(|e| e.path()).collect();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

/// Seeds and regressions, then the fuzzer's inputs; the test fails if too few ran.
#[test]
fn cluster_schedules() {
    let mut replayed = 0;
    for path in inputs("corpus").into_iter().chain(inputs("crashes")) {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("cluster_schedules: {}", path.display());
        cluster_schedule(&bytes);
        replayed += 1;
    }
    let cases = AtomicUsize::new(0);
    bolero::check!().with_test_time(Duration::from_secs(TEST_SECS)).for_each(|input: &[u8]| {
        cases.fetch_add(1, Ordering::Relaxed);
        cluster_schedule(input)
    });
    let cases = cases.into_inner();
    eprintln!("cluster_schedules: {replayed} corpus and crash inputs, {cases} random inputs");
    assert!(cases >= MIN_CASES, "only {cases} random inputs ran (want {MIN_CASES})");
}

/// What the fuzzer explores: the bytes reach every kind of episode.
#[test]
fn inputs_decode_to_schedules_of_every_kind() {
    let mut kinds = std::collections::BTreeSet::new();
    for seed in 0..64u64 {
        let bytes: Vec<u8> =
            (0..512u64).map(|i| (i.wrapping_mul(0x9E37_79B9) ^ seed.wrapping_mul(131)) as u8).collect();
        let config = decode(&bytes).expect("512 bytes decode");
        config.check().expect("a decoded schedule names only the cluster's brokers");
        kinds.extend(config.faults.kinds());
    }
    let names: Vec<_> = kinds.iter().map(|k| k.name()).collect();
    let every: Vec<_> = sim::config::FaultKind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(names, every);
}
