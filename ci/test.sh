#!/usr/bin/env bash
# The whole test suite: the command README.md names and .ci/run calls.
# Runs on a fresh machine with only the Rust toolchain; installs what it needs.
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

step "done"
