#!/usr/bin/env bash
# The elastic scenario on real processes (issue 8): three `keel broker` processes under idempotent acks=all
# producers and consumers for 75 s; brokers 4 and 5 join, the replicas are rebalanced, broker 1
# decommissioned, unregistered and stopped, broker 2 killed and left dead; then the final read and the checker. Fails on
# an invalid verdict (a lost or duplicated write, an unfinished step, a stuck partition). The longest
# stretch without an acknowledged write on a partition is printed and recorded, not judged.
# Results (history, report, pictures, broker logs) stay in target/elastic-ci; the binaries are taken from
# CARGO_TARGET_DIR when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked -p raft-node --bin keel
cargo build --locked -p jepsen-style --bin keel-jepsen
bin="${CARGO_TARGET_DIR:-target}/debug"
out=target/elastic-ci
rm -rf "$out"
"$bin/keel-jepsen" run --scenario elastic --brokers 3 --partitions 6 --duration 75s --rate 300 \
  --liveness-deadline 60s --final-read-deadline 180s --seed "${KEEL_JEPSEN_SEED:-$RANDOM}" \
  --keel "$bin/keel" --out "$out"
