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
BUILD=$ROOT/build/release
OUT=${OUT:-$ROOT/build/bench}
WORK=$(mktemp -d /tmp/dossier-bench-XXXXXX)
PIDS=()

stop_cluster() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
cleanup() {
    stop_cluster
    rm -rf "$WORK"
}
trap cleanup EXIT

"$ROOT/tools/deps.sh"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target dossierd dossier dossier-bench >/dev/null
mkdir -p "$OUT"
CSV=$OUT/cluster.csv
echo "label,target,mix,clients,value,duration,ops,throughput,p50_ms,p99_ms,p999_ms,errors,client_cpu_s,server_cpu_s,written" >"$CSV"
"$BUILD/dossier" keygen "$WORK/master.key" 2>/dev/null

start_cluster() {
    local ports i peers=""
    read -r -a ports < <(/usr/bin/python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
    TARGETS=""
    for i in 1 2 3; do
        peers="$peers${peers:+,}$i=127.0.0.1:${ports[$((i - 1))]}"
        TARGETS="$TARGETS${TARGETS:+,}127.0.0.1:${ports[$((i - 1))]}"
    done
    for i in 1 2 3; do
        rm -rf "$WORK/data$i" "$WORK/ready$i"
        "$BUILD/dossierd" --node-id "$i" --peers "$peers" \
            --listen "127.0.0.1:${ports[$((i - 1))]}" --data-dir "$WORK/data$i" \
            --key-file "$WORK/master.key" --ready-file "$WORK/ready$i" \
            2>>"$WORK/node$i.log" &
        PIDS+=($!)
    done
    for i in 1 2 3; do
        for _ in $(seq 400); do [ -s "$WORK/ready$i" ] && break; sleep 0.05; done
        [ -s "$WORK/ready$i" ] || { echo "node $i did not start"; cat "$WORK/node$i.log"; exit 1; }
    done
    # The leader first: the client calls the first target that answers, so
    # writes and reads go to the leader, not through a forwarding follower.
    local leader
    leader=$("$BUILD/dossier" --target "$TARGETS" cluster status |
        /usr/bin/python3 -c 'import json, sys
for l in sys.stdin:
    n = json.loads(l)
    if n.get("role") == "leader": print(n["target"])')
    [ -n "$leader" ] || { echo "no leader elected"; exit 1; }
    TARGETS="$leader,$(echo "$TARGETS" | tr , '\n' | grep -vx "$leader" | paste -sd,)"
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
    stop_cluster
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
