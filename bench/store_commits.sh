#!/bin/sh
# Commit throughput of the durable store (src/store): N full commit_step calls (state, 2 audit
# entries, an actuator intent, 2 notifications, an analysis), each durable (synchronous=FULL)
# before its call returns, from W threads at once for each W listed (concurrent steps share a
# transaction and its fsync on the store's writer thread; the daemon's runners hand theirs in as
# futures). The figure depends on the disk's fsync latency: run it where the state directory
# will live.
#
# usage: bench/store_commits.sh [N] [PARENT_DIR] [WRITERS...]
#        (defaults: 1000, $TMPDIR or /tmp, "1 8 64")
set -eu
n="${1:-1000}"
parent="${2:-${TMPDIR:-/tmp}}"
[ "$#" -gt 2 ] && shift 2 || set -- 1 8 64
cd "$(dirname "$0")/.."
dir=""
trap '[ -n "$dir" ] && rm -rf "$dir"' EXIT
cargo build --quiet --release --example store_crash_writer
for writers in "$@"; do
    dir="$(mktemp -d "$parent/canaryd-store-bench.XXXXXX")"
    ./target/release/examples/store_crash_writer --bench "$n" --writers "$writers" "$dir"
    rm -rf "$dir"
done
