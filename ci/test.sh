#!/usr/bin/env bash
# The whole test suite: the command README.md names and .ci/run calls.
# Runs on a fresh machine with only the Rust toolchain and Python; installs
# everything else it needs (kcat, the Python Kafka clients).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "unit, model-based and crash-recovery tests"
# Property tests draw fresh random cases each run; a failure prints the
# BOLERO_RANDOM_SEED that replays it.
cargo test --workspace --locked

step "simulation: the real broker code inside madsim (same seed, same trace)"
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo test --locked -p sim
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo test --locked -p raft-node --test transport_sim

step "simulation sweep: keel-sim, 200 seeds x 60 s with swarm faults, a fixed seed twice gives the same trace"
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo build --locked --profile test -p sim --bin keel-sim
keel_sim=target/sim/debug/keel-sim
sim_out=target/sim/ci-traces
rm -rf "$sim_out" && mkdir -p "$sim_out"
# A failing seed prints the `keel-sim run --seed N ...` command that replays it; its trace is kept in $sim_out.
"$keel_sim" sweep --seeds 1..200 --jobs 2 --duration 60s --faults all --trace-dir "$sim_out"
# Replica moves (decommissions and rebalances, raft membership changes) under the same faults.
"$keel_sim" sweep --seeds 1..50 --jobs 2 --duration 60s --faults all --moves 1 --trace-dir "$sim_out"
# A broker joining mid-run, taking replicas, and a founder (a metadata voter) leaving for good.
"$keel_sim" sweep --seeds 1..50 --jobs 2 --brokers 3 --duration 60s --faults all --join 1 --trace-dir "$sim_out"
# The metadata leader's automatic rebalance, together with the operator's moves.
rebalance_flags=(--duration 60s --faults all --moves 1 --auto-rebalance 1)
"$keel_sim" sweep --seeds 1..50 --jobs 2 "${rebalance_flags[@]}" --trace-dir "$sim_out" --keep-traces 6,7,38
# A seed run alone must repeat its trace from the sweep: process-wide state (tokio's thread RNG,
# seeded from a process-wide counter) once ordered a dying broker's connections differently in a
# sweep, where other simulations ran first. These three seeds showed it.
for seed in 6 7 38; do
  "$keel_sim" run --seed "$seed" "${rebalance_flags[@]}" --trace "$sim_out/alone-$seed.trace" >/dev/null
  cmp "$sim_out/sim-$seed.trace" "$sim_out/alone-$seed.trace" \
    || { echo "seed $seed: the sweep and a run alone gave different traces (nondeterminism)" >&2; exit 1; }
done
for seed in 7 19 23 42 46 57; do
  "$keel_sim" run --seed "$seed" --trace "$sim_out/twice-$seed-a.trace" >/dev/null
  "$keel_sim" run --seed "$seed" --trace "$sim_out/twice-$seed-b.trace" >/dev/null
  cmp "$sim_out/twice-$seed-a.trace" "$sim_out/twice-$seed-b.trace" \
    || { echo "seed $seed: two runs gave different traces (nondeterminism)" >&2; exit 1; }
done
# The recorded traces must still pass (identical bytes only on the build that recorded them: exit 3).
for trace in traces/*.trace; do
  status=0
  "$keel_sim" replay "$trace" --trace "$sim_out/replay.trace" >"$sim_out/replay.out" || status=$?
  if [ "$status" != 0 ] && [ "$status" != 3 ]; then
    cat "$sim_out/replay.out" >&2
    exit 1
  fi
done
# Every seed that ever found a bug, run again with its config (flags, then "  # what it found").
while IFS= read -r line; do
  case "$line" in '#'* | '') continue ;; esac
  args=${line%%  #*}
  # shellcheck disable=SC2086 # the flags split into words; a schedule holds no glob characters
  "$keel_sim" run $args --trace "$sim_out/regression.trace" >"$sim_out/regression.out" \
    || { cat "$sim_out/regression.out" >&2; echo "regression run failed: keel-sim run $args" >&2; exit 1; }
done <traces/regressions.txt

step "planted bugs: the simulator catches each one within seeds 1..40 (docs/VERIFICATION.md)"
# Built with the planted-bugs feature (production builds never have it); KEEL_PLANTED_BUG picks one.
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim \
  cargo build --locked --profile test -p sim --bin keel-sim --features raft-node/planted-bugs
cp target/sim/debug/keel-sim target/sim/keel-sim-planted
# Each bug with the workload flags that exercise it (a move's bug needs moves).
for planted in ack-before-commit skip-sync offset-after-restart fetch-above-hw dedup-window-off-by-one \
  "remove-before-commit --moves 1"; do
  bug=${planted%% *}
  flags=${planted#"$bug"}
  out="$sim_out/planted-$bug"
  # shellcheck disable=SC2086 # the flags split into words
  if KEEL_PLANTED_BUG="$bug" target/sim/keel-sim-planted sweep --seeds 1..40 --jobs 2 --duration 60s \
    --faults all $flags --trace-dir "$out" >"$out.txt"; then
    cat "$out.txt" >&2
    echo "planted bug $bug went unnoticed by seeds 1..40" >&2
    exit 1
  fi
  echo "$bug: $(grep '^sweep: [0-9]* seeds' "$out.txt")"
done

step "fuzzing: every keel-fuzz target under libFuzzer, 20 s each"
ci/fuzz.sh

step "end-to-end: unmodified Kafka clients against keel broker processes"
if ! command -v kcat >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null
  else
    echo "kcat is missing and this is not root: install the Debian package kcat" >&2
    exit 1
  fi
fi
venv=target/e2e-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check \
  confluent-kafka kafka-python pytest lz4 python-snappy zstandard
cargo build --locked -p raft-node --bin keel -p jepsen-style --bin keel-jepsen
KEEL_BIN="$PWD/target/debug/keel" "$venv/bin/python" -m pytest -q -p no:cacheprovider raft-node/tests/e2e

step "real processes: keel-jepsen run, 60 s of kill, pause, partition and power faults (ci/jepsen.sh)"
# Partitions cut links with iptables (without it: blackhole routes, which fail connects at once).
if ! command -v iptables >/dev/null && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null || echo "no iptables: blackhole routes"
fi
# A fixed seed: the same fault schedule every run (seed 21 draws all four kinds).
KEEL_JEPSEN_SEED="${KEEL_JEPSEN_SEED:-21}" ci/jepsen.sh

step "real processes: an elastic cluster (ci/elastic.sh): brokers 4 and 5 join, rebalance, decommission 1, kill 2"
KEEL_JEPSEN_SEED="${KEEL_JEPSEN_SEED:-21}" ci/elastic.sh

step "done"
