#!/bin/bash
# Rejoin: how soon is a node that was down serving again, and how soon do
# its clients reach it?
#
# On a fresh 3-node cluster (127.0.0.1, data under a mktemp folder, every
# node stopped by PID at the end), one dossier-bench client writes through
# node 3 alone (its only target) while node 3 is stopped for DOWN seconds
# and started again. Prints, from node 3's start:
#   ready     when node 3 heard a leader and serves data again (its log's
#             "ready:" line): the other nodes have to dial it again
#   client    when the client's first write through node 3 returned
#             (dossier-bench --trace): the client has to dial it again
# gRPC waits longer and longer between attempts to reach an address that
# refuses connections (up to 120 s unless told otherwise), so both grow
# with DOWN unless the channels cap that wait.
#
#   tools/bench/rejoin.sh [DOWN]
# Environment: DOWN (seconds, default 60), OUT (results dir, default
# build/bench).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DOWN=${1:-${DOWN:-60}}
BUILD=$ROOT/build/release
OUT=${OUT:-$ROOT/build/bench}
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/dossier-rejoin-XXXXXX)
PIDS=()
BENCH=""

cleanup() {
    local p
    [ -n "$BENCH" ] && kill -TERM "$BENCH" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}" $BENCH; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$ROOT/tools/deps.sh"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target dossierd dossier dossier-bench >/dev/null
mkdir -p "$OUT"
"$BUILD/dossier" keygen "$WORK/master.key" 2>/dev/null

read -r -a PORTS < <($PY -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
PEERS=""
for i in 1 2 3; do PEERS="$PEERS${PEERS:+,}$i=127.0.0.1:${PORTS[$((i - 1))]}"; done

start_node() { # I: starts node I, waits for it to serve; sets PIDS[I-1]
    local i=$1
    rm -f "$WORK/ready$i"
    "$BUILD/dossierd" --node-id "$i" --peers "$PEERS" \
        --listen "127.0.0.1:${PORTS[$((i - 1))]}" --data-dir "$WORK/data$i" \
        --key-file "$WORK/master.key" --ready-file "$WORK/ready$i" \
        2>>"$WORK/node$i.log" &
    PIDS[$((i - 1))]=$!
}
wait_ready() { # I
    for _ in $(seq 600); do [ -s "$WORK/ready$1" ] && return 0; sleep 0.05; done
    echo "node $1 did not serve within 30 s"; tail -20 "$WORK/node$1.log"; exit 1
}
for i in 1 2 3; do start_node "$i"; done
for i in 1 2 3; do wait_ready "$i"; done

"$BUILD/dossier-bench" --target "127.0.0.1:${PORTS[2]}" --clients 1 \
    --warmup 0 --duration $((DOWN + 30)) --trace "$WORK/trace.csv" \
    >"$WORK/bench.txt" 2>&1 &
BENCH=$!
sleep 5
kill -TERM "${PIDS[2]}"
wait "${PIDS[2]}" || true
echo "node 3 stopped for $DOWN s"
sleep "$DOWN"
T_START=$(date +%s.%N)
start_node 3
wait_ready 3
wait "$BENCH" || true
BENCH=""
cp "$WORK/node3.log" "$OUT/rejoin-node3.log"

$PY - "$WORK/node3.log" "$WORK/trace.csv" "$T_START" "$DOWN" <<'EOF'
import csv, datetime, json, sys
log, trace, t_start, down = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
ready = None
for line in open(log):
    if not line.startswith("{"):
        continue
    e = json.loads(line)
    if e.get("msg", "").startswith("ready:"):
        ts = datetime.datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
        ready = ts.replace(tzinfo=datetime.timezone.utc).timestamp()
ends = []
for row in csv.reader(open(trace)):
    if row and row[0][:1].isdigit():
        ends.append(float(row[0]) + float(row[1]) / 1000)
after = [t for t in ends if t >= t_start]
print(f"down {down} s; from node 3's start:")
print(f"  ready   {ready - t_start:6.2f} s" if ready else "  ready   never")
print(f"  client  {min(after) - t_start:6.2f} s (first write through node 3)"
      if after else "  client  never within the run")
EOF
