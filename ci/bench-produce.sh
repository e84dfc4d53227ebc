#!/usr/bin/env bash
# Produce benchmark (not a test): acks=all, replication factor 3, 1 KiB
# messages, three `keel broker` processes of a release build on this machine,
# driven by librdkafka's compiled `rdkafka_performance`. Alongside, the disk's
# own sequential write+fdatasync bandwidth on the same filesystem, so the
# produce numbers can be read as a ratio of what the disk allows.
#
#   bash ci/bench-produce.sh
#
# Knobs (environment):
#   BENCH_MSGS=200000        messages per measured run
#   BENCH_MSG_SIZE=1024      payload bytes per message
#   BENCH_PARTITIONS=3       partitions of the topic (RF is always 3)
#   BENCH_RUNS="default 16k paced"
#                            default: librdkafka's batching defaults (linger.ms=5, batch.size=1000000)
#                            16k:     batch.size=16384, linger.ms=10 (16 KiB batches)
#                            paced:   each of BENCH_PACED_RATES msg/s with BENCH_PACED_ARGS:
#                                     latency below saturation (the first two runs saturate,
#                                     so their latency is mostly time queued in the client)
#   BENCH_PACED_RATES="1000 5000"  requested msg/s of the paced runs (rdkafka_performance's
#                            -r sleeps per message, so the achieved rate is lower; it is reported)
#   BENCH_PACED_SECS=20      length of each paced run at the requested rate
#   BENCH_PACED_ARGS="-X linger.ms=0"   producer settings of the paced runs (no linger: the
#                            latency is the broker's, not the client's batching wait)
#   BENCH_PERF=0             1: record a perf profile of the brokers during the 16k run
#   BENCH_REV=               a commit (e.g. HEAD) to build keel from, in a clean git worktree
#                            under BENCH_DIR (own target dir); default: this working tree as is
#   BENCH_KEEL=              a prebuilt keel binary to run instead of building one (to compare
#                            two builds back to back); its commit is what you say it is
#   BENCH_KEEP=0             1: keep the data dir and broker logs
#   BENCH_DIR=target/bench-produce   where everything is built and run (same disk as the repo)
#   BENCH_BUILD_LIBRDKAFKA=0 1: link rdkafka_performance against the crate's own librdkafka,
#                            built from source, even if it builds against the system library
#
# Installs what it needs as root (apt-get: librdkafka-dev, build-essential,
# pkg-config; confluent-kafka with pip into a venv under BENCH_DIR if python3
# lacks it). librdkafka's rdkafka_performance.c comes from the source of the
# rdkafka-sys crate (fetched with cargo) and is built under BENCH_DIR; nothing
# of it is kept in the repository. `perf` (linux-perf) is optional: with it,
# each run counts the brokers' fdatasync calls. BENCH_REV registers a git
# worktree at BENCH_DIR/worktree (`git worktree remove` it when done).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

MSGS=${BENCH_MSGS:-200000}
MSG_SIZE=${BENCH_MSG_SIZE:-1024}
PARTITIONS=${BENCH_PARTITIONS:-3}
RUNS=${BENCH_RUNS:-default 16k paced}
PACED_RATES=${BENCH_PACED_RATES:-1000 5000}
PACED_SECS=${BENCH_PACED_SECS:-20}
PACED_ARGS=${BENCH_PACED_ARGS:--X linger.ms=0}
PERF=${BENCH_PERF:-0}
KEEP=${BENCH_KEEP:-0}
REV=${BENCH_REV:-}
PREBUILT=${BENCH_KEEL:-}
BUILD_LIBRDKAFKA=${BENCH_BUILD_LIBRDKAFKA:-0}
DIR=${BENCH_DIR:-$REPO/target/bench-produce}
TOPIC=bench
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
RESULTS=$DIR/results.txt

step() { printf '\n== %s (%s, load %s)\n' "$1" "$(date -u +%H:%M:%S)" "$(cut -d' ' -f1-3 /proc/loadavg)"; }
note() { printf '%s\n' "$*" | tee -a "$RESULTS"; }
die() { echo "bench-produce: $*" >&2; exit 1; }

: >"$RESULTS"

step "machine"
RUN_DIR=$(mktemp -d "$DIR/run.XXXXXX")
note "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
note "nproc:  $(nproc)   uname -m: $(uname -m)   cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
note "uptime: $(uptime)"
note "data:   $RUN_DIR"
note "df -T:  $(df -T "$RUN_DIR" | tail -1)"

step "dependencies (apt-get librdkafka-dev build-essential pkg-config; pip confluent-kafka)"
missing=()
dpkg -s librdkafka-dev >/dev/null 2>&1 || missing+=(librdkafka-dev)
command -v cc >/dev/null || missing+=(build-essential)
command -v make >/dev/null || missing+=(make)
command -v pkg-config >/dev/null || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]} and this is not root: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
PY=python3
if ! $PY -c 'import confluent_kafka' 2>/dev/null; then
  [ -x "$DIR/venv/bin/python" ] || python3 -m venv "$DIR/venv"
  "$DIR/venv/bin/pip" install -q --disable-pip-version-check confluent-kafka
  PY=$DIR/venv/bin/python
fi
echo "system librdkafka $(pkg-config --modversion rdkafka 2>/dev/null || echo '?')"

if [ -n "$PREBUILT" ]; then
  [ -x "$PREBUILT" ] || die "BENCH_KEEL=$PREBUILT is not an executable"
  KEEL=$(cd "$(dirname "$PREBUILT")" && pwd)/$(basename "$PREBUILT")
  note "keel:   prebuilt $KEEL"
elif [ -n "$REV" ]; then
  commit=$(git rev-parse --verify "$REV^{commit}")
  step "build keel (release) at $commit, in a clean worktree"
  wt=$DIR/worktree
  if [ ! -e "$wt/.git" ]; then
    git worktree prune
    git worktree add --detach "$wt" "$commit" >/dev/null
  else
    git -C "$wt" checkout -q --detach "$commit"
  fi
  (cd "$wt" && cargo build --release -p raft-node --bin keel --locked)
  KEEL=$wt/target/release/keel
  note "keel:   $commit (clean worktree, release build)"
else
  step "build keel (release) from this working tree"
  cargo build --release -p raft-node --bin keel --locked
  KEEL=$REPO/target/release/keel
  dirty=$(git status --porcelain --untracked-files=no -- raft-node log-core Cargo.lock Cargo.toml | wc -l)
  note "keel:   $(git rev-parse HEAD)$([ "$dirty" = 0 ] || echo " + $dirty uncommitted changed files") (release build)"
fi

step "rdkafka_performance from the rdkafka-sys crate's librdkafka"
PERF_BIN=$DIR/rdkafka_performance$([ "$BUILD_LIBRDKAFKA" != 1 ] || echo -bundled)
if [ ! -x "$PERF_BIN" ]; then
  fetch=$DIR/fetch
  mkdir -p "$fetch/src"
  cat >"$fetch/Cargo.toml" <<'EOF'
[package]
name = "bench-fetch-rdkafka"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rdkafka-sys = "4"

[workspace]
EOF
  echo 'fn main() {}' >"$fetch/src/main.rs"
  (cd "$fetch" && cargo fetch -q)
  crate=$(cd "$fetch" && cargo metadata -q --format-version 1 |
    python3 -c 'import json,sys,os; m=json.load(sys.stdin); print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"]=="rdkafka-sys"))')
  echo "source: $crate"
  src=$DIR/librdkafka
  rm -rf "$src"
  cp -r "$crate/librdkafka" "$src"
  # configure only generates config.h, which the example's internal headers need.
  (cd "$src" && ./configure --disable-ssl --disable-sasl --disable-zstd --disable-curl --disable-gssapi >"$DIR/configure.log" 2>&1) ||
    die "librdkafka configure failed, see $DIR/configure.log"
  # First against the system library (librdkafka-dev); if the example needs a
  # newer API than it has, build the crate's whole librdkafka and link that.
  if [ "$BUILD_LIBRDKAFKA" != 1 ] && cc -O2 -o "$PERF_BIN" "$src/examples/rdkafka_performance.c" -I"$(pkg-config --variable=includedir rdkafka)/librdkafka" \
    -I"$src/src" $(pkg-config --libs rdkafka) -lpthread -lm 2>"$DIR/cc.log"; then
    echo "linked against the system librdkafka"
  else
    echo "building librdkafka from $(basename "$crate") (system library: see $DIR/cc.log)"
    make -C "$src" -j"$(nproc)" libs >"$DIR/make.log" 2>&1 || die "librdkafka build failed, see $DIR/make.log"
    cc -O2 -o "$PERF_BIN" "$src/examples/rdkafka_performance.c" -I"$src/src" "$src/src/librdkafka.a" \
      $(grep -E '^LIBS' "$src/Makefile.config" | cut -d= -f2-) -lpthread -lm -ldl
  fi
fi
"$PERF_BIN" -h 2>&1 | grep -m1 'librdkafka version' | tee -a "$RESULTS" || true
cc -O2 -o "$DIR/fsync_ref" "$REPO/ci/bench/fsync_ref.c"

disk_reference() {
  local label=$1
  note "fdatasync reference ($label): $("$DIR/fsync_ref" "$RUN_DIR" 1048576 268435456)"
  note "fdatasync reference ($label): $("$DIR/fsync_ref" "$RUN_DIR" 16384 33554432)"
}
step "disk reference: 1 MiB and 16 KiB write+fdatasync, same filesystem"
disk_reference before

step "start 3 brokers"
read -r K1 K2 K3 R1 R2 R3 < <("$PY" ci/bench/cluster.py ports 6)
KAFKA=("$K1" "$K2" "$K3")
RAFT=("$R1" "$R2" "$R3")
members=""
for i in 1 2 3; do members+=$'[[cluster]]\n'"id = $i"$'\n'"raft = \"127.0.0.1:${RAFT[$((i - 1))]}\""$'\n'; done
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$KEEP" = 1 ]; then echo "kept $RUN_DIR"; else rm -rf "$RUN_DIR"; fi
}
trap cleanup EXIT
for i in 1 2 3; do
  cat >"$RUN_DIR/broker-$i.toml" <<EOF
node_id = $i
data_dir = "$RUN_DIR/data-$i"
[kafka]
listen = "127.0.0.1:${KAFKA[$((i - 1))]}"
[raft]
listen = "127.0.0.1:${RAFT[$((i - 1))]}"
$members
EOF
  "$KEEL" broker --config "$RUN_DIR/broker-$i.toml" >"$RUN_DIR/broker-$i.log" 2>&1 &
  PIDS+=($!)
done
BOOTSTRAP="127.0.0.1:$K1,127.0.0.1:$K2,127.0.0.1:$K3"
"$PY" ci/bench/cluster.py wait-brokers "$BOOTSTRAP" 3
echo "brokers up: $BOOTSTRAP (pids ${PIDS[*]})"

step "create topic $TOPIC: $PARTITIONS partitions, replication factor 3"
note "leaders: $("$PY" ci/bench/cluster.py create-topic "$BOOTSTRAP" "$TOPIC" "$PARTITIONS" 3)"

# CPU seconds (user+system) of the three brokers so far.
broker_cpu() {
  local tck total=0 pid
  tck=$(getconf CLK_TCK)
  for pid in "${PIDS[@]}"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  calc "$total / $tck"
}
calc() { awk "BEGIN { printf \"%.1f\", $1 }"; }

# run NAME COUNT [extra rdkafka_performance args...]
run() {
  local name=$1 count=$2
  shift 2
  local out=$RUN_DIR/$name.out lat=$RUN_DIR/$name.lat cpu0 cpu1 perf_pid=""
  # sticky.partitioning.linger.ms=0: keyless messages go to a random partition
  # each. With the sticky default, everything queued before the topic's
  # metadata arrives (the whole run, at 100k+ messages) lands on one partition.
  local cmd=("$PERF_BIN" -P -t "$TOPIC" -b "$BOOTSTRAP" -s "$MSG_SIZE" -c "$count" -a -1 -l -A "$lat" -i 5000
    -X sticky.partitioning.linger.ms=0 "$@")
  step "run '$name': $count x $MSG_SIZE B, acks=all ${*}"
  note ""
  note "run $name: uptime before: $(uptime)"
  note "command: ${cmd[*]}"
  cpu0=$(broker_cpu)
  # fdatasync calls of all three brokers during the run (syscall tracepoint).
  : >"$RUN_DIR/$name.fsyncs"
  if command -v perf >/dev/null; then
    perf stat -x, -e syscalls:sys_enter_fdatasync -p "$(IFS=,; echo "${PIDS[*]}")" -o "$RUN_DIR/$name.fsyncs" 2>/dev/null &
    perf_pid=$!
  fi
  local prof_pid=""
  if [ "$PERF" = 1 ] && [ "$name" = 16k ]; then
    perf record -q -F 499 -g -p "$(IFS=,; echo "${PIDS[*]}")" -o "$DIR/perf-$name.data" 2>/dev/null &
    prof_pid=$!
  fi
  "${cmd[@]}" >"$out" 2>&1 || { tail -20 "$out"; die "rdkafka_performance failed"; }
  [ -n "$prof_pid" ] && kill -INT "$prof_pid" && wait "$prof_pid" || true
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
  fi
  cpu1=$(broker_cpu)
  local summary
  summary=$(grep -E '^% [0-9]+ messages produced' "$out" | tail -1)
  [ -n "$summary" ] || { tail -20 "$out"; die "no summary line from rdkafka_performance"; }
  note "rdkafka_performance: ${summary#% }"
  local ms msgs failed
  msgs=$(sed -E 's/.* ([0-9]+) delivered.*/\1/' <<<"$summary")
  failed=$(sed -E 's/.*\(offset [0-9-]+, ([0-9]+) failed\).*/\1/' <<<"$summary")
  ms=$(sed -E 's/.* in ([0-9]+)ms.*/\1/' <<<"$summary")
  local rate mbs
  rate=$(awk "BEGIN { printf \"%d\", $msgs * 1000 / $ms }")
  mbs=$(calc "$msgs * $MSG_SIZE * 1000 / $ms / 1000000")
  local syncs
  syncs=$(grep -m1 fdatasync "$RUN_DIR/$name.fsyncs" | cut -d, -f1 || true)
  note "result $name: ${rate} msg/s, ${mbs} MB/s (payload, 1 MB = 10^6 B), $msgs delivered, $failed failed, $(calc "$ms / 1000") s"
  note "latency $name (produce() to delivery report): $("$PY" ci/bench/cluster.py percentiles "$lat")"
  note "brokers $name: $(calc "$cpu1 - $cpu0") CPU s over $(calc "$ms / 1000") s wall; ${syncs:-?} fdatasync calls (perf stat)"
  note "run $name: uptime after: $(uptime)"
}

step "warm-up (not reported)"
"$PERF_BIN" -P -t "$TOPIC" -b "$BOOTSTRAP" -s "$MSG_SIZE" -c 20000 -a -1 -q -X sticky.partitioning.linger.ms=0 \
  >"$RUN_DIR/warmup.out" 2>&1 ||
  { tail -20 "$RUN_DIR/warmup.out"; die "warm-up failed"; }

for r in $RUNS; do
  case $r in
  default) run default "$MSGS" ;;
  16k) run 16k "$MSGS" -X batch.size=16384 -X linger.ms=10 ;;
  paced)
    for rate in $PACED_RATES; do
      # shellcheck disable=SC2086
      run "paced-$rate" $((rate * PACED_SECS)) -r "$rate" $PACED_ARGS
    done
    ;;
  *) die "unknown run '$r' (default, 16k, paced)" ;;
  esac
done

step "disk reference again (the VM's disk speed drifts)"
disk_reference after

step "logs"
for i in 1 2 3; do
  n=$(grep -ciE ' (WARN|ERRO|CRIT) ' "$RUN_DIR/broker-$i.log" || true)
  echo "broker $i: $n warning/error lines in $RUN_DIR/broker-$i.log"
done
[ "$PERF" = 1 ] && echo "profile: perf report -i $DIR/perf-16k.data --no-children"

step "summary ($RESULTS)"
cat "$RESULTS"
