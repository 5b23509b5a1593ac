#!/bin/sh
# A long simulator run: a range of seeds for 3 and for 5 nodes, split over
# the machine's cores. Prints every failure with its replay command, then one
# summary line per job; exits 1 if any seed failed.
#
# usage: tests/sim/long-run.sh [BUILD_DIR] [FIRST-LAST] [raft-sim options...]
#   e.g. tests/sim/long-run.sh build-sim 1-100000 --steps 3000
set -eu

build=${1:-build-sim}
range=${2:-1-100000}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] && shift
sim=$build/tests/sim/raft-sim
[ -x "$sim" ] || { echo "no $sim: build the raft-sim target first" >&2; exit 2; }

first=${range%-*}
last=${range#*-}
jobs=$(nproc 2>/dev/null || echo 2)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

count=$((last - first + 1))
per=$(( (count + jobs - 1) / jobs ))
pids=
for nodes in 3 5; do
    j=0
    while [ $j -lt "$jobs" ]; do
        a=$((first + j * per))
        b=$((a + per - 1))
        [ $b -gt "$last" ] && b=$last
        if [ $a -le "$last" ]; then
            # The 5-node runs take seeds offset by 10^9 so that their
            # schedules differ from the 3-node ones.
            off=0
            [ "$nodes" = 5 ] && off=1000000000
            "$sim" --seeds $((a + off))-$((b + off)) --nodes $nodes \
                --keep-going "$@" > "$out/$nodes-$j.log" 2>&1 &
            pids="$pids $!"
        fi
        j=$((j + 1))
    done
    # One node count at a time keeps the machine at one job per core.
    status=0
    for p in $pids; do wait "$p" || status=1; done
    pids=
    [ $status -eq 0 ] || failed=1
done

grep -h -A3 -E '^(VIOLATION|LIVENESS)' "$out"/*.log || true
for f in "$out"/*.log; do
    printf '%s: ' "$(basename "$f" .log)"
    grep '^runs=' "$f" || echo "(no summary)"
done
[ -z "${failed:-}" ]
