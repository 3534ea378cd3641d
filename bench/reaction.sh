#!/bin/sh
# Daemon benchmark: `bench/reaction.sh ARGS` = `python3 bench/daemon_bench.py reaction ARGS` (see its --help).
# Uses $CANARYD and $FAKE_PROMETHEUS if set, else target/release/{canaryd,examples/fake_prometheus}.
set -eu
cd "$(dirname "$0")/.."
exec python3 bench/daemon_bench.py reaction "$@"
