# What the benchmark scripts under tools/bench share: sourced, not run.
# The script sets ROOT (the repository) before sourcing it, and OUT if it
# writes results.
#
#   bench_prepare NAME   installs the Debian packages of the build, builds
#                        dossierd, dossier and dossier-bench (release), makes
#                        WORK (a mktemp folder /tmp/NAME-*) with a master
#                        key in it, and OUT; when the script exits,
#                        bench_cleanup_hook runs (if the script has one),
#                        every server in PIDS is stopped, WORK removed
#   free_ports N         prints N free loopback ports
#   wait_for S WHAT CMD  retries CMD for up to S seconds, else exits
#   nodes_config N       picks the ports of N Dossier nodes: PORTS,
#                        PEERS, TARGETS (N = 1: a node alone)
#   start_node I [ARGS]  starts node I of them, data in WORK/dataI, log
#                        WORK/nodeI.log; NODE_PIDS[I-1], and in PIDS
#   wait_ready I         waits up to 30 s for node I to serve
#   stop_node I          stops node I (SIGTERM) and waits for it
#   start_nodes N [ARGS] all of the above, each node with ARGS, then waits
#                        for a leader; sets SERVER_PIDS (comma-separated)
#                        and DATA_DIRS
#   leader_first         prints TARGETS with the leader's address first
#                        (waits up to 20 s for a leader)
#   stop_all             stops every server in PIDS, by PID, and waits
#   CSV_COLUMNS          dossier-bench's CSV header
# BUILD, the build directory, is build/release unless the environment
# says otherwise.

# shellcheck shell=bash
BUILD=${BUILD:-$ROOT/build/release}
PY=/usr/bin/python3
PIDS=()
CSV_COLUMNS="label,target,mix,clients,value,duration,ops,throughput,p50_ms,p99_ms,p999_ms,errors,client_cpu_s,server_cpu_s,written"

# Stops every server started, by PID: PostgreSQL with SIGINT (its fast
# shutdown), the others with SIGTERM.
stop_all() {
    local p
    for p in "${PIDS[@]}"; do
        if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = postgres ]; then
            kill -INT "$p" 2>/dev/null || true
        else
            kill -TERM "$p" 2>/dev/null || true
        fi
    done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

bench_cleanup() {
    if declare -F bench_cleanup_hook >/dev/null; then bench_cleanup_hook; fi
    stop_all
    [ -z "${WORK:-}" ] || rm -rf "$WORK"
}

bench_prepare() { # NAME
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    "$ROOT/tools/deps.sh"
    if declare -F bench_install_extras >/dev/null; then bench_install_extras; fi
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target dossierd dossier dossier-bench >/dev/null
    [ -z "${OUT:-}" ] || mkdir -p "$OUT"
    WORK=$(mktemp -d "/tmp/$1-XXXXXX")
    "$BUILD/dossier" keygen "$WORK/master.key" 2>/dev/null
}

free_ports() { # N
    $PY -c '
import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])' "$1"
}

wait_for() { # SECONDS WHAT COMMAND...
    local end=$(($(date +%s) + $1)) what=$2
    shift 2
    while [ "$(date +%s)" -lt "$end" ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "$what did not come up; logs in $WORK:" >&2
    tail -n 20 "$WORK"/*.log >&2 || true
    exit 1
}

nodes_config() { # N
    local i
    read -r -a PORTS < <(free_ports "$1")
    PEERS=""
    TARGETS=""
    for i in $(seq "$1"); do
        PEERS="$PEERS${PEERS:+,}$i=127.0.0.1:${PORTS[$((i - 1))]}"
        TARGETS="$TARGETS${TARGETS:+,}127.0.0.1:${PORTS[$((i - 1))]}"
    done
    NODE_PIDS=()
}

start_node() { # I [DOSSIERD ARGS...]
    local i=$1 cluster=()
    shift
    [ "${#PORTS[@]}" -eq 1 ] || cluster=(--node-id "$i" --peers "$PEERS")
    rm -f "$WORK/ready$i"
    "$BUILD/dossierd" "${cluster[@]}" --listen "127.0.0.1:${PORTS[$((i - 1))]}" \
        --data-dir "$WORK/data$i" --key-file "$WORK/master.key" \
        --ready-file "$WORK/ready$i" "$@" 2>>"$WORK/node$i.log" &
    NODE_PIDS[i - 1]=$!
    PIDS+=($!)
}

wait_ready() { # I
    wait_for 30 "dossier node $1" test -s "$WORK/ready$1"
}

stop_node() { # I
    local pid=${NODE_PIDS[$1 - 1]} p rest=()
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || rest+=("$p"); done
    PIDS=("${rest[@]}")
}

dossier_leader() { # prints the leader's address; fails without one
    local l
    l=$("$BUILD/dossier" --target "$TARGETS" cluster status 2>/dev/null |
        $PY -c 'import json, sys
for l in sys.stdin:
    n = json.loads(l)
    if n.get("role") == "leader": print(n["target"])')
    [ -n "$l" ] && echo "$l"
}

start_nodes() { # N [DOSSIERD ARGS...]: fresh data directories
    local n=$1 i
    shift
    nodes_config "$n"
    DATA_DIRS=()
    for i in $(seq "$n"); do
        rm -rf "$WORK/data$i"
        DATA_DIRS+=("$WORK/data$i")
        start_node "$i" "$@"
    done
    for i in $(seq "$n"); do wait_ready "$i"; done
    wait_for 20 "a Dossier leader" dossier_leader
    SERVER_PIDS=$(IFS=,; echo "${NODE_PIDS[*]}")
}

# The client calls the first target that answers: with the leader first,
# calls go to the leader, not through a forwarding follower. Waits up to
# 20 s for one (an election under way).
leader_first() {
    local l
    wait_for 20 "a Dossier leader" dossier_leader
    l=$(dossier_leader) || { echo "no leader elected" >&2; exit 1; }
    echo "$l$(echo "$TARGETS" | tr , '\n' | grep -vx "$l" | sed 's/^/,/' | tr -d '\n')"
}
