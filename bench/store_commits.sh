#!/bin/sh
# Commit throughput of the durable store (src/store): N full commit_step calls (state, 2 audit
# entries, an actuator intent, 2 notifications, an analysis), each one fsync'd (synchronous=FULL).
# The figure depends on the disk's fsync latency: run it where the state directory will live.
#
# usage: bench/store_commits.sh [N] [PARENT_DIR]     (defaults: 1000, $TMPDIR or /tmp)
set -eu
n="${1:-1000}"
parent="${2:-${TMPDIR:-/tmp}}"
cd "$(dirname "$0")/.."
cargo build --quiet --release --example store_crash_writer
dir="$(mktemp -d "$parent/canaryd-store-bench.XXXXXX")"
trap 'rm -rf "$dir"' EXIT
./target/release/examples/store_crash_writer --bench "$n" "$dir"
