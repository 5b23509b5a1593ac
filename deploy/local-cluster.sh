#!/bin/bash
# The README's run command: installs what is needed, builds Dossier, starts
# a local 3-node cluster on 127.0.0.1:7701-7703 sharing one fresh master
# key, loads sample CRM data (companies, contacts, deals, activities,
# tickets) and shows a few CLI calls. The nodes keep running.
#
#   deploy/local-cluster.sh          build, start, load the sample data, demo
#   deploy/local-cluster.sh status   the cluster as each node sees it
#   deploy/local-cluster.sh stop     stop the nodes (SIGTERM, by their PIDs)
#   deploy/local-cluster.sh reset    stop them and delete their data and key
#
# Everything lives in run/ at the top of the repository (not committed).
# DOSSIER_NODES (default 3) and DOSSIER_BASE_PORT (default 7700) change the
# size and the ports (node N listens on BASE_PORT+N).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN=$ROOT/run
BUILD=$ROOT/build/release
NODES=${DOSSIER_NODES:-3}
BASE=${DOSSIER_BASE_PORT:-7700}

addr() { echo "127.0.0.1:$((BASE + $1))"; }
metrics_addr() { echo "127.0.0.1:$((BASE + 100 + $1))"; }
targets() {
    local t="" i
    for i in $(seq "$NODES"); do t="$t${t:+,}$(addr "$i")"; done
    echo "$t"
}
running() { [ -f "$RUN/node$1.pid" ] && kill -0 "$(cat "$RUN/node$1.pid")" 2>/dev/null; }

stop_nodes() {
    local i pid any=0
    for i in $(seq "$NODES"); do
        if running "$i"; then
            pid=$(cat "$RUN/node$i.pid")
            kill -TERM "$pid"
            for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            echo "stopped node $i (pid $pid)"
            any=1
        fi
        rm -f "$RUN/node$i.pid"
    done
    [ "$any" = 1 ] || echo "no node running from $RUN"
}

case "${1:-start}" in
stop) stop_nodes; exit 0 ;;
reset) stop_nodes; rm -rf "$RUN"; echo "removed $RUN"; exit 0 ;;
status) exec "$BUILD/dossier" --target "$(targets)" --pretty cluster status ;;
start) ;;
*) echo "usage: $0 [start|status|stop|reset]" >&2; exit 2 ;;
esac

"$ROOT/tools/deps.sh"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target dossierd dossier dossier-bench

mkdir -p "$RUN"
chmod 700 "$RUN"
[ -f "$RUN/master.key" ] || "$BUILD/dossier" keygen "$RUN/master.key"
fresh=0
[ -d "$RUN/node1" ] || fresh=1
peers=""
for i in $(seq "$NODES"); do peers="$peers${peers:+,}$i=$(addr "$i")"; done
for i in $(seq "$NODES"); do
    if running "$i"; then
        echo "node $i already running (pid $(cat "$RUN/node$i.pid"))"
        continue
    fi
    rm -f "$RUN/node$i.ready"
    nohup "$BUILD/dossierd" --node-id "$i" --peers "$peers" \
        --listen "$(addr "$i")" --data-dir "$RUN/node$i" \
        --key-file "$RUN/master.key" --ready-file "$RUN/node$i.ready" \
        --metrics-listen "$(metrics_addr "$i")" --backup-dir "$RUN/backups$i" \
        >>"$RUN/node$i.log" 2>&1 &
    echo $! >"$RUN/node$i.pid"
done
for i in $(seq "$NODES"); do
    for _ in $(seq 300); do [ -s "$RUN/node$i.ready" ] && break; sleep 0.05; done
    if [ ! -s "$RUN/node$i.ready" ]; then
        echo "node $i did not get ready; its log:" >&2
        tail -20 "$RUN/node$i.log" >&2
        exit 1
    fi
done
export DOSSIER_TARGET
DOSSIER_TARGET=$(targets)
echo "cluster of $NODES nodes serving on $DOSSIER_TARGET (logs in $RUN)"

if [ "$fresh" = 1 ]; then
    echo "loading sample data from deploy/sample-data.jsonl"
    "$BUILD/dossier" put "$ROOT/deploy/sample-data.jsonl" >/dev/null
fi

show() {
    echo
    echo "\$ dossier $*"
    "$BUILD/dossier" "$@"
}
show cluster status
show health
show --pretty get contact c-ann
show find contact email ANN.ARCHER@acme.example
show list person-ann --kind activity
show links company acme --direction in
show --target "$(addr 2)" --serializable scan deal --limit 2
show report pipeline
show watch --kind deal --from 1 --count 2
echo
echo "The CLI is $BUILD/dossier; DOSSIER_TARGET=$DOSSIER_TARGET reaches every node."
echo "Metrics: http://$(metrics_addr 1)/metrics (node 1; +1 per node)."
echo "Backups: dossier --target $(addr 2) backup create (into $RUN/backups2)."
env_prefix=""
[ -n "${DOSSIER_NODES:-}" ] && env_prefix="DOSSIER_NODES=$NODES "
[ -n "${DOSSIER_BASE_PORT:-}" ] && env_prefix="${env_prefix}DOSSIER_BASE_PORT=$BASE "
echo "Stop the cluster with: $env_prefix$0 stop"
