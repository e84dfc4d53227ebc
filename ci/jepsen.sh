#!/usr/bin/env bash
# A real-process test: three `keel broker` processes under kill, pause, partition and power-loss faults
# for 60 s, producers and consumers recording a history, then the heal (every partition must take a write
# within 60 s), the final read and the checker. Fails on an invalid verdict. Partitions need root and
# `ip netns`, power losses root and loop mounts; elsewhere keel-jepsen skips them and says why.
# Results (history, report, pictures, broker logs) stay in target/jepsen-ci.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked -p raft-node --bin keel
cargo build --locked -p jepsen-style --bin keel-jepsen
out=target/jepsen-ci
rm -rf "$out"
# Generous deadlines for a loaded 2-core machine; the liveness deadline is the only timing judged.
target/debug/keel-jepsen run --brokers 3 --duration 60s --nemesis kill,pause,partition,power --rate 200 \
  --liveness-deadline 60s --final-read-deadline 180s --seed "${KEEL_JEPSEN_SEED:-$RANDOM}" \
  --keel target/debug/keel --out "$out"
