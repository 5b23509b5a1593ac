#!/bin/bash
# Single-node benchmark: Dossier against raw RocksDB, same machine, same run.
#
# For each of RUNS rounds it measures, with dossier-bench and CLIENTS
# closed-loop clients for SECONDS each:
#   dossier-put   1 KiB records into a fresh node (synced group commit,
#                 every field sealed, a new subject key per record)
#   rocksdb-put   the same keys and values as synced RocksDB puts from
#                 CLIENTS threads (RocksDB's write groups batch them)
#   dossier-get   reads of one record at random among KEYS preloaded ones
# then prints the median (min..max) of each and Dossier's ratio to RocksDB.
#
#   tools/bench/single-node.sh [RUNS] [SECONDS] [CLIENTS]
# Environment: OUT (results dir, default build/bench), KEYS (10000).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${1:-3}
SECONDS_PER=${2:-10}
CLIENTS=${3:-64}
KEYS=${KEYS:-10000}
OUT=${OUT:-$ROOT/build/bench}
# shellcheck source=lib.sh
. "$ROOT/tools/bench/lib.sh"
bench_prepare dossier-bench
CSV=$OUT/single-node.csv
echo "$CSV_COLUMNS" >"$CSV"

bench() { # LABEL ARGS...
    local label=$1; shift
    "$BUILD/dossier-bench" --label "$label" --csv "$CSV" --clients "$CLIENTS" \
        --duration "$SECONDS_PER" --warmup 1 "$@"
}

for run in $(seq "$RUNS"); do
    echo "--- round $run of $RUNS"
    start_nodes 1
    bench dossier-put --target "$TARGETS" --mix put
    bench dossier-get --target "$TARGETS" --mix get --keys "$KEYS"
    stop_all
    rm -rf "$WORK/raw"
    bench rocksdb-put --rocksdb "$WORK/raw" --mix put
done

echo
echo "Medians of $RUNS runs (min..max), $CLIENTS clients, 1 KiB values, ${SECONDS_PER}s each:"
awk -v order="dossier-put rocksdb-put dossier-get" -f "$ROOT/tools/bench/summary.awk" -f <(cat <<'AWK'
END {
    if (tput["rocksdb-put"] > 0)
        printf "\nDossier put / raw RocksDB put: %.2f (target >= 0.50)\n", tput["dossier-put"] / tput["rocksdb-put"]
    printf "Dossier get: %.0f/s (target >= 40000)\n", tput["dossier-get"]
}
AWK
) "$CSV" | tee "$OUT/single-node.txt"
echo "(raw rows: $CSV)"
