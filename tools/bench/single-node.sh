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
BUILD=$ROOT/build/release
OUT=${OUT:-$ROOT/build/bench}
WORK=$(mktemp -d /tmp/dossier-bench-XXXXXX)
NODE_PID=

cleanup() {
    if [ -n "$NODE_PID" ]; then kill -TERM "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$ROOT/tools/deps.sh"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target dossierd dossier dossier-bench >/dev/null
mkdir -p "$OUT"
CSV=$OUT/single-node.csv
echo "label,target,mix,clients,value,duration,ops,throughput,p50_ms,p99_ms,p999_ms,errors,client_cpu_s,server_cpu_s,written" >"$CSV"
"$BUILD/dossier" keygen "$WORK/master.key" 2>/dev/null

start_node() {
    rm -rf "$WORK/data" "$WORK/ready"
    "$BUILD/dossierd" --data-dir "$WORK/data" --key-file "$WORK/master.key" \
        --listen 127.0.0.1:0 --ready-file "$WORK/ready" 2>>"$WORK/node.log" &
    NODE_PID=$!
    for _ in $(seq 200); do [ -s "$WORK/ready" ] && break; sleep 0.05; done
    [ -s "$WORK/ready" ] || { echo "node did not start"; cat "$WORK/node.log"; exit 1; }
}

stop_node() {
    kill -TERM "$NODE_PID"; wait "$NODE_PID" || true; NODE_PID=
}

bench() { # LABEL ARGS...
    local label=$1; shift
    "$BUILD/dossier-bench" --label "$label" --csv "$CSV" --clients "$CLIENTS" \
        --duration "$SECONDS_PER" --warmup 1 "$@"
}

for run in $(seq "$RUNS"); do
    echo "--- round $run of $RUNS"
    start_node
    bench dossier-put --target "$(cat "$WORK/ready")" --mix put
    bench dossier-get --target "$(cat "$WORK/ready")" --mix get --keys "$KEYS"
    stop_node
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
