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
OUT=${OUT:-$ROOT/build/bench}
BENCH=""
# shellcheck source=lib.sh
. "$ROOT/tools/bench/lib.sh"
bench_cleanup_hook() {
    [ -z "$BENCH" ] || { kill -TERM "$BENCH" 2>/dev/null; wait "$BENCH" 2>/dev/null; } || true
}
bench_prepare dossier-rejoin

start_nodes 3

"$BUILD/dossier-bench" --target "127.0.0.1:${PORTS[2]}" --clients 1 \
    --warmup 0 --duration $((DOWN + 30)) --trace "$WORK/trace.csv" \
    >"$WORK/bench.txt" 2>&1 &
BENCH=$!
sleep 5
stop_node 3
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
