#!/bin/sh
# `canaryd check` on large inputs, to see that validation stays linear (issue 16, point 8):
#   1. one rule file with N stages (default 20,000; weights cannot all increase, so most stages
#      are reported: the cost of many problems is measured too),
#   2. the same file with a quarter and a half as many stages (time should grow ~linearly),
#   3. one valid rule file with N checks, each in its own scoring group (and a quarter, a half),
#   4. M rule files (default 1,000) in one directory.
# Usage: bench/check_large.sh [N] [M]. Uses $CANARYD if set, else target/release/canaryd.
set -eu
cd "$(dirname "$0")/.."
N=${1:-20000}
M=${2:-1000}
BIN=${CANARYD:-target/release/canaryd}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

header() { # $1 = rollout name
    cat <<TOML
[rollout]
name = "$1"
team = "bench"
source = "prometheus"
actuator = "builtin"

[analysis]
every = "1m"

[sides]
baseline = "v1"
canary = "v2"

[[checks]]
name = "latency"
kind = "absolute"
threshold = 0.5
query = 'sum(rate(x{version="{{side}}"}[{{step}}]))'
window = "5m"
TOML
}

stages_file() { # $1 = stages, $2 = path
    header big > "$2"
    awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "\n[[stages]]\nname = \"s%d\"\nweight = %d\nmin_duration = \"1m\"\n", i, (i < 101 ? i : 100) }' >> "$2"
}

run() { # $1 = label, rest = paths
    label=$1; shift
    start=$(date +%s.%N)
    "$BIN" check --config config/canaryd.toml "$@" > "$TMP/out" 2>&1 || true
    end=$(date +%s.%N)
    printf '%-28s %8.3f s   %s\n' "$label" "$(echo "$end - $start" | bc)" "$(tail -n 1 "$TMP/out")"
}

for n in $((N / 4)) $((N / 2)) "$N"; do
    stages_file "$n" "$TMP/stages-$n.toml"
    run "$n stages" "$TMP/stages-$n.toml"
done

checks_file() { # $1 = checks, $2 = path
    header big > "$2"
    printf '\n[[stages]]\nname = "10%%"\nweight = 10\n' >> "$2"
    awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "\n[[checks]]\nname = \"c%d\"\nkind = \"absolute\"\nthreshold = 0.5\ngroup = \"g%d\"\nquery = '"'"'x{v=\"{{side}}\"}'"'"'\nwindow = \"5m\"\n", i, i }' >> "$2"
}

for n in $((N / 4)) $((N / 2)) "$N"; do
    checks_file "$n" "$TMP/checks-$n.toml"
    run "$n checks" "$TMP/checks-$n.toml"
done

mkdir "$TMP/many"
i=0
while [ "$i" -lt "$M" ]; do
    { header "r$i"; printf '\n[[stages]]\nname = "10%%"\nweight = 10\n\n[[stages]]\nname = "100%%"\nweight = 100\n'; } > "$TMP/many/r$i.toml"
    i=$((i + 1))
done
run "$M rule files" "$TMP/many"
