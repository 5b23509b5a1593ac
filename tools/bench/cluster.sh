#!/bin/bash
# 3-node cluster benchmark: durable replicated writes at growing concurrency,
# and linearizable and serializable reads, on loopback on this machine.
#
# For each of RUNS rounds it starts a fresh 3-node cluster and measures,
# with dossier-bench for SECONDS each:
#   put-N         1 KiB records written to the leader by N closed-loop
#                 clients, for N in CLIENT_COUNTS (default "1 16 64"); each
#                 write is sealed, replicated and synced on a majority
#   get-lin-64    linearizable reads (ReadIndex) by 64 clients of records
#                 picked at random among KEYS preloaded ones
#   get-ser-64    the same reads, serializable (answered by the node asked)
# then prints the median (min..max) of each and how writes scale with
# concurrency.
#
#   tools/bench/cluster.sh [RUNS] [SECONDS]
# Environment: OUT (results dir, default build/bench), KEYS (10000),
# CLIENT_COUNTS ("1 16 64").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${1:-3}
SECONDS_PER=${2:-10}
KEYS=${KEYS:-10000}
CLIENT_COUNTS=${CLIENT_COUNTS:-1 16 64}
OUT=${OUT:-$ROOT/build/bench}
# shellcheck source=lib.sh
. "$ROOT/tools/bench/lib.sh"
bench_prepare dossier-bench
CSV=$OUT/cluster.csv
echo "$CSV_COLUMNS" >"$CSV"

start_cluster() {
    start_nodes 3
    TARGETS=$(leader_first)
}

bench() { # LABEL ARGS...
    local label=$1; shift
    "$BUILD/dossier-bench" --label "$label" --csv "$CSV" \
        --duration "$SECONDS_PER" --warmup 1 --target "$TARGETS" "$@"
}

order=""
for n in $CLIENT_COUNTS; do order="$order put-$n"; done
order="$order get-lin-64 get-ser-64"
for run in $(seq "$RUNS"); do
    echo "--- round $run of $RUNS"
    start_cluster
    for n in $CLIENT_COUNTS; do
        bench "put-$n" --clients "$n" --mix put
    done
    bench get-lin-64 --clients 64 --mix get --keys "$KEYS"
    bench get-ser-64 --clients 64 --mix get --keys "$KEYS" --serializable
    stop_all
done

echo
echo "3-node cluster on loopback, medians of $RUNS runs (min..max), 1 KiB values, ${SECONDS_PER}s each:"
awk -v order="$order" -v counts="$CLIENT_COUNTS" -f "$ROOT/tools/bench/summary.awk" -f <(cat <<'AWK'
END {
    n = split(counts, c, " ")
    if (n > 1 && tput["put-" c[1]] > 0)
        for (k = 2; k <= n; k++)
            printf "\nwrites with %d clients / with %d: %.1fx", c[k], c[1], tput["put-" c[k]] / tput["put-" c[1]]
    printf "\n"
}
AWK
) "$CSV" | tee "$OUT/cluster.txt"
echo "(raw rows: $CSV)"
