//! Append throughput of the raft log on real files against the raw disk:
//! `write` + `fdatasync` of the same bytes in the same batches to a plain file.
//!
//! `cargo bench -p raft-node --bench storage` (set `KEEL_BENCH_MIB` to change
//! the data per case, default 256). A virtual disk's speed drifts by the
//! second, so raw and log batches alternate and each side sums its own time:
//! both see the same disk.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::eraftpb::Entry;
use raft_node::storage::{FileDisk, LogConfig, RaftLog};

const BATCH_BYTES: usize = 1 << 20;

fn main() {
    let total_mib: usize = std::env::var("KEEL_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let dir = tempfile::tempdir().expect("temp dir");
    println!("data per case: {total_mib} MiB, sync every {} KiB, in {}", BATCH_BYTES >> 10, dir.path().display());
    println!("{:>10} {:>12} {:>12} {:>8}", "entry", "raw MB/s", "log MB/s", "log/raw");
    // Incompressible, generated once: neither side pays for it.
    let batch: Bytes = (0..BATCH_BYTES as u64)
        .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
        .collect::<Vec<u8>>()
        .into();
    // Warm up the disk and the page cache's allocator; not reported.
    let warm_up = dir.path().join("warm-up");
    std::fs::create_dir(&warm_up).expect("warm-up dir");
    bench_case(&warm_up, &batch, 16 << 10, 32);
    std::fs::remove_dir_all(&warm_up).expect("clean up");
    for entry_bytes in [1 << 10, 16 << 10, 1 << 20] {
        let case_dir = dir.path().join(format!("{entry_bytes}"));
        std::fs::create_dir(&case_dir).expect("case dir");
        let (raw, log) = bench_case(&case_dir, &batch, entry_bytes, total_mib);
        std::fs::remove_dir_all(&case_dir).expect("clean up");
        let mbps = |d: Duration| (total_mib << 20) as f64 / 1e6 / d.as_secs_f64();
        println!(
            "{:>10} {:>12.0} {:>12.0} {:>8.2}",
            format!("{} KiB", entry_bytes >> 10),
            mbps(raw),
            mbps(log),
            raw.as_secs_f64() / log.as_secs_f64()
        );
    }
}

/// Time spent writing `batches` 1 MiB batches raw, and through the log.
fn bench_case(dir: &Path, batch: &Bytes, entry_bytes: usize, batches: usize) -> (Duration, Duration) {
    let mut raw_file = File::create(dir.join("raw")).expect("raw file");
    let disk = Arc::new(FileDisk::new(dir.join("log")).expect("disk"));
    let (mut log, _) = RaftLog::open(disk, "p0.", LogConfig::default()).expect("open");
    let (mut raw, mut logged) = (Duration::ZERO, Duration::ZERO);
    let mut index = 1;
    for n in 0..batches {
        let mut write_raw = || {
            let start = Instant::now();
            raw_file.write_all(batch).expect("write");
            raw_file.sync_data().expect("fdatasync");
            raw += start.elapsed();
        };
        // Alternate who goes first: the second of a pair may find the disk busier.
        if n % 2 == 0 {
            write_raw();
        }
        let start = Instant::now();
        let entries: Vec<Entry> = (0..batch.len() / entry_bytes)
            .map(|i| Entry {
                index: index + i as u64,
                term: 1,
                data: batch.slice(i * entry_bytes..(i + 1) * entry_bytes),
                ..Default::default()
            })
            .collect();
        index += entries.len() as u64;
        log.append(&entries).expect("append");
        log.sync().expect("sync");
        logged += start.elapsed();
        if n % 2 == 1 {
            write_raw();
        }
    }
    (raw, logged)
}
