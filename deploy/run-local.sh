#!/bin/bash
# The README's run command: installs what is needed, builds Dossier, starts
# a local node on 127.0.0.1:7700 with a fresh master key and sample CRM data
# (companies, contacts, deals, activities, tickets), and shows a few CLI
# calls against it. The node keeps running in the background.
#
#   deploy/run-local.sh          build, start, load the sample data, demo
#   deploy/run-local.sh stop     stop the node (SIGTERM, by its PID)
#   deploy/run-local.sh reset    stop it and delete its data and key
#
# Everything lives in run/ at the top of the repository (not committed).
# DOSSIER_LISTEN overrides the address (default 127.0.0.1:7700).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN=$ROOT/run
BUILD=$ROOT/build/release
LISTEN=${DOSSIER_LISTEN:-127.0.0.1:7700}
PIDFILE=$RUN/node.pid

stop_node() {
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        pid=$(cat "$PIDFILE")
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "stopped dossierd (pid $pid)"
    else
        echo "no dossierd running from $RUN"
    fi
    rm -f "$PIDFILE"
}

case "${1:-start}" in
stop) stop_node; exit 0 ;;
reset) stop_node; rm -rf "$RUN"; echo "removed $RUN"; exit 0 ;;
start) ;;
*) echo "usage: $0 [start|stop|reset]" >&2; exit 2 ;;
esac

"$ROOT/tools/deps.sh"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target dossierd dossier dossier-bench

mkdir -p "$RUN"
chmod 700 "$RUN"
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "dossierd is already running (pid $(cat "$PIDFILE")); '$0 stop' stops it"
    exit 0
fi
[ -f "$RUN/master.key" ] || "$BUILD/dossier" keygen "$RUN/master.key"
fresh=0
[ -d "$RUN/data" ] || fresh=1
rm -f "$RUN/ready"
nohup "$BUILD/dossierd" --data-dir "$RUN/data" --key-file "$RUN/master.key" \
    --listen "$LISTEN" --ready-file "$RUN/ready" >>"$RUN/node.log" 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq 200); do [ -s "$RUN/ready" ] && break; sleep 0.05; done
if [ ! -s "$RUN/ready" ]; then
    echo "dossierd did not start; its log:" >&2
    tail -20 "$RUN/node.log" >&2
    exit 1
fi
export DOSSIER_TARGET
DOSSIER_TARGET=$(cat "$RUN/ready")
echo "dossierd serving on $DOSSIER_TARGET (pid $(cat "$PIDFILE"), log $RUN/node.log)"

if [ "$fresh" = 1 ]; then
    echo "loading sample data from deploy/sample-data.jsonl"
    "$BUILD/dossier" put "$ROOT/deploy/sample-data.jsonl" >/dev/null
fi

show() {
    echo
    echo "\$ dossier $*"
    "$BUILD/dossier" "$@"
}
show --pretty get contact c-ann
show find contact email ANN.ARCHER@acme.example
show list person-ann --kind activity
show scan deal --limit 2
echo
echo "The CLI is $BUILD/dossier (DOSSIER_TARGET=$DOSSIER_TARGET)."
echo "Stop the node with: $0 stop"
