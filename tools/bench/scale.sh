#!/bin/bash
# Scale: does a loaded 3-node cluster write as fast as an empty one?
#
# On one fresh 3-node cluster (127.0.0.1, data under a mktemp folder, every
# node stopped by PID at the end):
#   1. empty:  RUNS rounds of the write benchmark (new 1 KiB records by
#              CLIENTS closed-loop clients through the leader, SECONDS each)
#   2. load:   RECORDS contact-like records (an indexed e-mail and a VALUE-byte
#              payload, each of its own data subject, so each has its own
#              sealed data key) written by LOAD_CLIENTS clients
#   3. loaded: the same RUNS rounds of the write benchmark again, at once
#   4. settled: once the nodes are idle again (RocksDB's compactions of
#              the load done: no compaction pending on any node, by its
#              dossier_rocksdb_pending_compaction_bytes metric, and the
#              three together under a tenth of a core for 5 s; at most
#              SETTLE_MAX seconds), the same rounds again
# then prints the median (min..max) of each, loaded / empty, the load's
# rate, each node's resident memory (VmRSS) and the data directories' size
# per record, the sealing overhead per field, and how many snapshots and
# elections the nodes' logs show (the logs are kept in OUT).
#
#   tools/bench/scale.sh [RECORDS] [SECONDS]
# Environment: RECORDS (10000000), SECONDS_PER (10), RUNS (3), CLIENTS (64),
# LOAD_CLIENTS (256), VALUE (200), SETTLE_MAX (600), OUT (results dir,
# default build/bench).
# Disk: about 3 x RECORDS x 1.5 KB with the defaults' 200-byte payload.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RECORDS=${1:-${RECORDS:-10000000}}
SECONDS_PER=${2:-${SECONDS_PER:-10}}
RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-64}
LOAD_CLIENTS=${LOAD_CLIENTS:-256}
VALUE=${VALUE:-200}
SETTLE_MAX=${SETTLE_MAX:-600}
OUT=${OUT:-$ROOT/build/bench}
# shellcheck source=lib.sh
. "$ROOT/tools/bench/lib.sh"
bench_prepare dossier-scale
CSV=$OUT/scale.csv
echo "$CSV_COLUMNS" >"$CSV"

# Three nodes, each with its metrics endpoint (the settle check reads it).
nodes_config 3
read -r -a METRICS < <(free_ports 3)
for i in 1 2 3; do
    start_node "$i" --metrics-listen "127.0.0.1:${METRICS[$((i - 1))]}"
done
for i in 1 2 3; do wait_ready "$i"; done
SERVER_PIDS=$(IFS=,; echo "${NODE_PIDS[*]}")

writes() { # LABEL: RUNS rounds of the write benchmark
    local t r
    t=$(leader_first)
    for r in $(seq "$RUNS"); do
        "$BUILD/dossier-bench" --label "$1" --csv "$CSV" --target "$t" \
            --clients "$CLIENTS" --duration "$SECONDS_PER" --warmup 1 \
            --mix put --server-pid "$SERVER_PIDS"
    done
}

cpu_ticks() { # the nodes' utime + stime, in clock ticks
    local p t=0
    for p in "${NODE_PIDS[@]}"; do
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$t"
}

pending() { # bytes RocksDB estimates it still has to compact, all nodes
    $PY - "${METRICS[@]}" <<'EOF'
import sys, urllib.request
total = 0
try:
    for port in sys.argv[1:]:
        url = f"http://127.0.0.1:{port}/metrics"
        for line in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
            if line.startswith("dossier_rocksdb_pending_compaction_bytes "):
                total += float(line.split()[1])
except OSError as e:
    print(f"scale.sh: cannot read the metrics: {e}", file=sys.stderr)
    total = -1  # unknown
print(int(total))
EOF
}

settle() { # waits until the nodes are idle; prints the seconds it took
    local t0 a b hz
    hz=$(getconf CLK_TCK)
    t0=$(date +%s)
    while [ $(($(date +%s) - t0)) -lt "$SETTLE_MAX" ]; do
        a=$(cpu_ticks); sleep 5; b=$(cpu_ticks)
        # under a tenth of a core over 5 s, and no compaction owed
        [ $((b - a)) -lt $((hz / 2)) ] && [ "$(pending)" -eq 0 ] && break
    done
    echo $(($(date +%s) - t0))
}
gb() { awk -v b="$1" 'BEGIN { if (b < 0) print "unknown"; else printf "%.2f GB", b / 1e9 }'; }

rss_mb() { # PID
    awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"
}

writes empty
echo "--- loading $RECORDS records of $VALUE bytes with $LOAD_CLIENTS clients"
T0=$(date +%s)
# The preload of a read run writes ids [0, RECORDS) before it reads; the
# short read that follows is not part of this benchmark.
"$BUILD/dossier-bench" --label load --target "$(leader_first)" \
    --clients "$LOAD_CLIENTS" --mix get --keys "$RECORDS" \
    --value-size "$VALUE" --duration 1 --warmup 0 >"$WORK/load.txt"
T1=$(date +%s)
LOAD_S=$((T1 - T0))
PENDING_LOADED=$(pending)
writes loaded
SETTLE_S=$(settle)
PENDING_SETTLED=$(pending)
writes settled

DISK=$(du -sb -c "$WORK"/data1 "$WORK"/data2 "$WORK"/data3 | tail -n 1 | cut -f1)
# Every record the cluster holds: the load and the benchmark's own writes.
TOTAL=$(awk -F, -v n="$RECORDS" 'NR > 1 { n += $15 } END { print n }' "$CSV")
{
    echo
    echo "Scale, 3 nodes, $CLIENTS clients, 1 KiB records, ${SECONDS_PER}s x $RUNS each, $(date -u +%F):"
    awk -v order="empty loaded settled" -f "$ROOT/tools/bench/summary.awk" -f <(cat <<'AWK'
END {
    if (tput["empty"] > 0) {
        printf "\nloaded / empty: %.2f (target >= 0.80)\n", tput["loaded"] / tput["empty"]
        printf "settled / empty: %.2f\n", tput["settled"] / tput["empty"]
    }
}
AWK
) "$CSV"
    echo "settled: the nodes were idle ${SETTLE_S}s after the loaded rounds (at most ${SETTLE_MAX}s)"
    echo "compaction pending (3 nodes): $(gb "$PENDING_LOADED") as the loaded rounds began, $(gb "$PENDING_SETTLED") as the settled ones began"
    echo "load: $RECORDS records in ${LOAD_S}s ($(awk -v n="$RECORDS" -v s="$LOAD_S" 'BEGIN { printf "%.0f", s ? n / s : 0 }')/s)"
    for i in 1 2 3; do
        echo "node $i: resident $(rss_mb "${NODE_PIDS[$((i - 1))]}") MB, data directory $(du -sb "$WORK/data$i" | cut -f1) bytes"
    done
    echo "disk per record: $(awk -v d="$DISK" -v n="$TOTAL" 'BEGIN { printf "%.0f", d / n }') bytes ($TOTAL records, 3 replicas, du -sb)"
    echo "sealing overhead per field: 41 bytes (1 version + 24 nonce + 16 tag, node/crypt.h)"
    # A follower that falls behind the leader's compacted log is sent a
    # whole-database snapshot; at scale that costs far more than the log.
    echo "snapshots sent: $(cat "$WORK"/node?.log | grep -c 'sending a snapshot' || true)," \
        "installed: $(cat "$WORK"/node?.log | grep -c 'installed a snapshot' || true)," \
        "leaders elected: $(cat "$WORK"/node?.log | grep -c ' is leader in term' || true)"
} | tee "$OUT/scale.txt"
for i in 1 2 3; do cp "$WORK/node$i.log" "$OUT/scale-node$i.log"; done
echo "(raw rows: $CSV)"
