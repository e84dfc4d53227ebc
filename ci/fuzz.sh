#!/usr/bin/env bash
# Coverage-guided fuzzing of every keel-fuzz target, and of the cluster under fault schedules
# (sim's cluster_schedules), with libFuzzer (through cargo-bolero),
# on the stable toolchain: RUSTC_BOOTSTRAP lets stable rustc take the sanitizer flags
# (-Zsanitizer=address) cargo-bolero passes.
#
#   ci/fuzz.sh                      every target, FUZZ_SECONDS (default 20) each
#   FUZZ_SECONDS=300 ci/fuzz.sh record_batches storage_recovery
#
# Each target starts from its seeds in fuzz/corpus/<target>/ (copied: the run's own corpus
# grows under target/fuzz-corpus/, not in the repository). A crash fails the script; bolero
# prints the input, and libFuzzer writes it to fuzz/crashes/<target>/, where `cargo test -p
# keel-fuzz` (for cluster_schedules, the madsim `cargo test -p sim`) replays it from then on:
# commit the file with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(kafka_request_frames kafka_server record_batches partition_model metadata_model
  storage_recovery transport_frames peer_messages cluster_schedules)
[ $# -gt 0 ] && TARGETS=("$@")
SECONDS_EACH="${FUZZ_SECONDS:-20}"

if ! cargo bolero --version >/dev/null 2>&1; then
  cargo install cargo-bolero --version 0.13.5 --locked
fi

# cargo-bolero builds with a `fuzz` profile; the workspace defines none, so define it here:
# release speed, with debug assertions and overflow checks on.
export CARGO_PROFILE_FUZZ_INHERITS=release
export CARGO_PROFILE_FUZZ_DEBUG_ASSERTIONS=true
export CARGO_PROFILE_FUZZ_OVERFLOW_CHECKS=true

# -len_control=0: use the whole 4 KiB input length from the start; libFuzzer's default grows
# it slowly, which in a 20 s run keeps inputs to a few bytes (measured: more coverage so).
failed=()
for target in "${TARGETS[@]}"; do
  printf '\n== fuzz %s for %ss (%s)\n' "$target" "$SECONDS_EACH" "$(date -u +%H:%M:%S)"
  corpus="target/fuzz-corpus/$target"
  mkdir -p "$corpus" "fuzz/crashes/$target"
  if [ -d "fuzz/corpus/$target" ]; then
    cp -n "fuzz/corpus/$target"/* "$corpus"/ 2>/dev/null || true
  fi
  package=keel-fuzz target_dir=target/fuzz env=() engine_args="-len_control=0"
  if [ "$target" = cluster_schedules ]; then
    # sim/tests/schedule_fuzz.rs runs the whole cluster inside madsim: the sim crate, built with
    # --cfg madsim (cargo-bolero appends RUSTFLAGS to its own flags) into its own target dir.
    # A madsim run leaves its killed nodes' tasks allocated (about 10 MB per run by
    # LeakSanitizer's count), so leak detection is off and the RSS limit raised.
    package=sim target_dir=target/fuzz-sim
    env=(RUSTFLAGS="--cfg madsim ${RUSTFLAGS:-}" ASAN_OPTIONS=detect_leaks=0)
    engine_args="$engine_args -detect_leaks=0 -rss_limit_mb=8192"
  fi
  if ! env "${env[@]}" cargo bolero test "$target" --package "$package" --engine libfuzzer \
    --rustc-bootstrap --target-dir "$target_dir" --corpus-dir "$corpus" --crashes-dir "fuzz/crashes/$target" \
    --engine-args="$engine_args" -T "${SECONDS_EACH}s"; then
    failed+=("$target")
    echo "fuzz target $target failed: the input is printed above and saved in fuzz/crashes/$target/" >&2
  fi
done

# libFuzzer writes nothing there unless it crashed; leave no empty directories behind.
find fuzz/crashes -type d -empty -delete 2>/dev/null || true

if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
echo "all fuzz targets ran ${SECONDS_EACH}s each without a failure"
