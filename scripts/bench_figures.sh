#!/usr/bin/env bash
# The README's performance figures, measured again on this machine (`make figures`): for the
# folder store (lease mode) and for PostgreSQL, the throughput table's row (3 runs, idle latency
# and CPU; for the folder also the file ceiling on the same filesystem), the time per phase of a
# transition, worker memory and rate against transitions processed, and rate and first commit
# against the backlog. Everything goes to $FIGURES as JSON, and PNG
# when matplotlib is installed (the `bench` extra, which `make figures` installs).
#
# Knobs (environment): FIGURES (docs/bench)  BENCH_PG (postgresql://postgres@127.0.0.1:5432/test;
# empty: folder store only)  BENCH_FOLDER (where the folder stores are made; default the system's
# temporary folder)  MEMORY_TRANSITIONS (5000000)  PENDING (10000,100000,1000000)
# PG_PENDING (10000,100000,1000000,10000000)  DOVES (.venv/bin/doves)
# The long curves take a while: at a few thousand transitions/s, 5,000,000 take about half an hour,
# and on a folder store every transition leaves two small files (about 8 KB of an ext4 disk)
# until the run's store is removed at its end: 5,000,000 transitions need some 40 GB.
set -euo pipefail

FIGURES=${FIGURES:-docs/bench}
BENCH_PG=${BENCH_PG-postgresql://postgres@127.0.0.1:5432/test}
MEMORY_TRANSITIONS=${MEMORY_TRANSITIONS:-5000000}
PENDING=${PENDING:-10000,100000,1000000}
PG_PENDING=${PG_PENDING:-10000,100000,1000000,10000000}
DOVES=${DOVES:-.venv/bin/doves}
mkdir -p "$FIGURES"

stores=("${BENCH_FOLDER:-}")
names=(folder-lease)
if [ -n "$BENCH_PG" ]; then
    stores+=("$BENCH_PG")
    names+=(postgresql)
fi

for i in "${!stores[@]}"; do
    store=${stores[$i]}
    name=${names[$i]}
    args=()
    [ -n "$store" ] && args=("$store")
    echo "== $name: throughput (3 runs), idle latency and CPU"
    ceiling=()
    [ "$name" = postgresql ] || ceiling=(--ceiling)
    "$DOVES" bench "${args[@]}" --runs 3 "${ceiling[@]}" --json > "$FIGURES/$name-throughput.json"
    echo "== $name: time per phase"
    "$DOVES" bench "${args[@]}" --probes 0 --idle-seconds 0 --phase-timings --json > "$FIGURES/$name-phases.json"
    echo "== $name: memory against transitions"
    "$DOVES" bench "${args[@]}" --scale memory -K 2 --transitions "$MEMORY_TRANSITIONS" --out "$FIGURES" --quiet
    echo "== $name: rate against the backlog"
    pending=$PENDING
    [ "$name" = postgresql ] && pending=$PG_PENDING
    "$DOVES" bench "${args[@]}" --scale pending -K 2 --pending "$pending" --out "$FIGURES" --quiet
done
echo "figures in $FIGURES"
