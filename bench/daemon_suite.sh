#!/bin/sh
# The whole daemon benchmark suite (about 20 minutes): builds release binaries, copies them aside
# (so concurrent builds cannot swap them mid-run; set $CANARYD and $FAKE_PROMETHEUS to skip that), then runs start-up, reaction and the load tests.
# One JSON object per line goes to $OUT (default bench/daemon_results.jsonl).
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/daemon_results.jsonl}
if [ -z "${CANARYD:-}" ] || [ -z "${FAKE_PROMETHEUS:-}" ]; then
  cargo build --release --bin canaryd --example fake_prometheus
  BIN=$(mktemp -d /tmp/canaryd-bench-bin.XXXXXX)
  trap 'rm -rf "$BIN"' EXIT
  cp target/release/canaryd target/release/examples/fake_prometheus "$BIN/"
  export CANARYD="$BIN/canaryd" FAKE_PROMETHEUS="$BIN/fake_prometheus"
fi
{
  CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  echo "{\"machine\": {\"nproc\": $(nproc), \"cpu\": \"$CPU\", \"mem_gib\": $(awk '/MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo), \"git\": \"$(git rev-parse --short HEAD)$(git diff --quiet || echo -dirty)\", \"date\": \"$(date -u +%FT%TZ)\"}}"
  python3 bench/daemon_bench.py startup 1000 15
  python3 bench/daemon_bench.py reaction 10
  python3 bench/daemon_bench.py reaction 10 --background 1000
  python3 bench/daemon_bench.py load 10 300
  python3 bench/daemon_bench.py load 100 120
  python3 bench/daemon_bench.py load 1000 120
  python3 bench/daemon_bench.py load 10000 300
  python3 bench/daemon_bench.py load 10 120 --backend prometheus
} | tee -a "$OUT"
