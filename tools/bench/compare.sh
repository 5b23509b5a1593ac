#!/bin/bash
# Dossier against its peers, in one run, on this machine: a 3-node Dossier
# cluster against a 3-member etcd 3.4 cluster, and a single Dossier node
# against a single etcd member, PostgreSQL 15 and raw RocksDB. Every system
# is driven by dossier-bench (same closed loop, same 1 KiB values), runs on
# 127.0.0.1 with its data under one mktemp folder, and is stopped by PID.
#
# For each of RUNS rounds, fresh deployments, SECONDS of measure each (after
# one second of warm-up):
#   3-node, Dossier and etcd (both durable: a write is acknowledged once a
#   majority has synced it):
#     put-leader-N  new 1 KiB records written through the leader by N
#                   closed-loop clients, N in CLIENT_COUNTS
#     put-all-N     the same, the clients spread over the three members
#                   (followers forward to the leader)
#     get-lin-leader, get-ser-leader, get-lin-all, get-ser-all
#                   linearizable and serializable reads by CLIENTS clients of
#                   records picked at random among KEYS written first
#   1-node, CLIENTS clients: put, for Dossier, etcd, PostgreSQL
#   (synchronous_commit on, one row per INSERT) and raw RocksDB (synced
#   writes, in dossier-bench's own process).
# Each row records throughput, p50/p99/p99.9 latency, the CPU seconds the
# servers used while measuring (utime + stime from /proc, children
# included, summed over the server processes) and disk bytes per record
# (du of the data directories after the run, less du right after start,
# over every record written to that deployment so far).
#
# Prints one table (medians of the rounds, throughput with min..max) and
# Dossier's ratio to each peer (of the medians, and per round: each round
# measures both within minutes), and writes OUT/compare.csv (every row),
# OUT/compare-summary.csv (median, min and max of every figure),
# OUT/compare.txt (the table) and OUT/compare.png (a chart).
#
#   tools/bench/compare.sh [RUNS] [SECONDS]
# Environment: RUNS (3), SECONDS_PER (5), CLIENTS (64: reads and single
# node), CLIENT_COUNTS ("1 16 64 256": 3-node writes), KEYS (10000),
# OUT (results dir, default build/bench). About 12 minutes with the
# defaults on 2 cores.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${1:-${RUNS:-3}}
SECONDS_PER=${2:-${SECONDS_PER:-5}}
CLIENTS=${CLIENTS:-64}
CLIENT_COUNTS=${CLIENT_COUNTS:-1 16 64 256}
KEYS=${KEYS:-10000}
OUT=${OUT:-$ROOT/build/bench}
PGBIN=/usr/lib/postgresql/15/bin
POLICY=""   # a policy-rc.d this script made, to remove
# shellcheck source=lib.sh
. "$ROOT/tools/bench/lib.sh"
bench_cleanup_hook() {
    [ -z "$POLICY" ] || rm -f "$POLICY"
}

# ---------------------------------------------------------------------------
# What the comparison needs beyond the build: the peers and gnuplot, from
# Debian. Their packages would start system services of their own (etcd on
# 2379, a PostgreSQL cluster on 5432) that would share the cores with the
# benchmark: a policy-rc.d keeps them from starting during the install.
bench_install_extras() {
    local p missing="" sudo=""
    for p in etcd-server etcd-client postgresql-15 gnuplot-nox; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    [ -n "$missing" ] || return 0
    echo "installing:$missing"
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        POLICY=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$POLICY" >/dev/null
        $sudo chmod 755 "$POLICY"
    fi
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
    if [ -n "$POLICY" ]; then $sudo rm -f "$POLICY"; POLICY=""; fi
}

bench_prepare dossier-compare
# PostgreSQL runs as the postgres user (it refuses root): it must reach
# its directory, which it alone may read.
chmod 711 "$WORK"
CSV=$OUT/compare.csv
echo "$CSV_COLUMNS,disk_bytes,records,disk_per_record" >"$CSV"
START=$(date +%s)

# The deployment under test: its servers, data dirs, records written and
# du right after start.
SERVER_PIDS=""; DATA_DIRS=(); RECORDS=0; DISK0=0

# Apparent size (bytes in files): RocksDB preallocates its WAL with
# fallocate(KEEP_SIZE), which block counts would show as used before a
# byte is written.
disk_bytes() { du -sb -c "${DATA_DIRS[@]}" | tail -n 1 | cut -f1; }

deployment_started() { # PID... of the servers just started
    SERVER_PIDS=$(IFS=,; echo "$*")
    RECORDS=0
    DISK0=$(disk_bytes)
}

# Runs dossier-bench with LABEL and ARGS against the deployment and appends
# its row, with the deployment's disk use, to the CSV.
bench() { # LABEL ARGS...
    local label=$1 row written disk
    shift
    : >"$WORK/row.csv"
    "$BUILD/dossier-bench" --label "$label" --csv "$WORK/row.csv" \
        --duration "$SECONDS_PER" --warmup 1 --server-pid "$SERVER_PIDS" "$@" ||
        echo "(dossier-bench reported errors for $label; counted in the row)"
    row=$(cat "$WORK/row.csv")
    [ -n "$row" ] || { echo "no result for $label" >&2; exit 1; }
    written=$(echo "$row" | cut -d, -f15)
    RECORDS=$((RECORDS + written))
    disk=$(($(disk_bytes) - DISK0))
    echo "$row,$disk,$RECORDS,$(awk -v d="$disk" -v r="$RECORDS" 'BEGIN { printf "%.0f", r ? d / r : 0 }')" >>"$CSV"
}

# ---------------------------------------------------------------------------
# Dossier

# Starts N Dossier nodes (N = 1 or 3); sets TARGETS (all nodes).
start_dossier() { # N
    start_nodes "$1"
    deployment_started "${NODE_PIDS[@]}"
}

# ---------------------------------------------------------------------------
# etcd

# Starts N etcd members; sets TARGETS (their client addresses).
start_etcd() { # N
    local n=$1 ports i cluster="" pids=() token="bench-$RANDOM$RANDOM"
    read -r -a ports < <(free_ports $((2 * n)))
    TARGETS=""
    for i in $(seq "$n"); do
        cluster="$cluster${cluster:+,}e$i=http://127.0.0.1:${ports[$((n + i - 1))]}"
        TARGETS="$TARGETS${TARGETS:+,}127.0.0.1:${ports[$((i - 1))]}"
    done
    DATA_DIRS=()
    for i in $(seq "$n"); do
        local c=${ports[$((i - 1))]} p=${ports[$((n + i - 1))]}
        rm -rf "$WORK/etcd$i"
        etcd --name "e$i" --data-dir "$WORK/etcd$i" \
            --listen-client-urls "http://127.0.0.1:$c" \
            --advertise-client-urls "http://127.0.0.1:$c" \
            --listen-peer-urls "http://127.0.0.1:$p" \
            --initial-advertise-peer-urls "http://127.0.0.1:$p" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token "$token" \
            --logger zap --log-outputs stderr --log-level warn \
            2>>"$WORK/etcd$i.log" &
        PIDS+=($!)
        pids+=($!)
        DATA_DIRS+=("$WORK/etcd$i")
    done
    wait_for 30 "etcd" etcdctl_ endpoint health
    wait_for 20 "an etcd leader" etcd_leader
    deployment_started "${pids[@]}"
}

etcdctl_() { # ARGS...: etcdctl on every member of the deployment
    ETCDCTL_API=3 etcdctl --endpoints="$TARGETS" --dial-timeout=1s \
        --command-timeout=2s "$@"
}

etcd_leader() { # prints the leader's client address; fails without one
    local l
    l=$(etcdctl_ endpoint status -w json 2>/dev/null |
        $PY -c 'import json, sys
for e in json.load(sys.stdin):
    s = e["Status"]
    if s["header"]["member_id"] == s["leader"]: print(e["Endpoint"])')
    [ -n "$l" ] && echo "$l"
}

# ---------------------------------------------------------------------------
# PostgreSQL: the postgres user, its own data dir and socket dir under
# WORK, TCP on 127.0.0.1 only; durable commits (the defaults, made
# explicit). initdb skips its own fsync of the new files: that only
# matters if the machine crashes during initdb.
start_postgres() {
    local port
    port=$(free_ports 1)
    rm -rf "$WORK/pg"
    install -d -o postgres -g postgres -m 700 "$WORK/pg"
    install -d -o postgres -g postgres -m 700 "$WORK/pg/sock"
    setpriv --reuid=postgres --regid=postgres --init-groups \
        "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust \
        --no-sync -E UTF8 >>"$WORK/postgres.log" 2>&1
    setpriv --reuid=postgres --regid=postgres --init-groups \
        "$PGBIN/postgres" -D "$WORK/pg/data" -p "$port" \
        -c listen_addresses=127.0.0.1 -c unix_socket_directories="$WORK/pg/sock" \
        -c max_connections=300 -c fsync=on -c synchronous_commit=on \
        2>>"$WORK/postgres.log" &
    PIDS+=($!)
    DATA_DIRS=("$WORK/pg/data")
    CONNINFO="host=127.0.0.1 port=$port user=postgres dbname=postgres"
    wait_for 30 "PostgreSQL" pg_isready -q -h 127.0.0.1 -p "$port"
    deployment_started "${PIDS[-1]}"
}

# ---------------------------------------------------------------------------

order=""
for n in $CLIENT_COUNTS; do order="$order 3-node:put-leader-$n"; done
for n in $CLIENT_COUNTS; do order="$order 3-node:put-all-$n"; done
order="$order 3-node:get-lin-leader 3-node:get-ser-leader 3-node:get-lin-all 3-node:get-ser-all 1-node:put"

cluster_round() { # SYSTEM: dossier or etcd
    local sys=$1 n leader args
    if [ "$sys" = dossier ]; then start_dossier 3; else start_etcd 3; fi
    local all=$TARGETS
    for n in $CLIENT_COUNTS; do
        if [ "$sys" = dossier ]; then
            leader=$(dossier_leader); args=(--target "$leader")
        else
            leader=$(etcd_leader); args=(--etcd "$leader")
        fi
        bench "3-node:put-leader-$n" "${args[@]}" --clients "$n" --mix put
    done
    if [ "$sys" = dossier ]; then args=(--target "$all" --spread); else args=(--etcd "$all"); fi
    for n in $CLIENT_COUNTS; do
        bench "3-node:put-all-$n" "${args[@]}" --clients "$n" --mix put
    done
    local rd ser
    for rd in leader all; do
        for ser in lin ser; do
            local flags=()
            [ "$ser" = lin ] || flags=(--serializable)
            if [ "$rd" = all ]; then
                if [ "$sys" = dossier ]; then args=(--target "$all" --spread); else args=(--etcd "$all"); fi
            elif [ "$sys" = dossier ]; then
                args=(--target "$(dossier_leader)")
            else
                args=(--etcd "$(etcd_leader)")
            fi
            bench "3-node:get-$ser-$rd" "${args[@]}" "${flags[@]}" \
                --clients "$CLIENTS" --mix get --keys "$KEYS"
        done
    done
    stop_all
}

for run in $(seq "$RUNS"); do
    echo "--- round $run of $RUNS ($(($(date +%s) - START)) s so far)"
    cluster_round dossier
    cluster_round etcd
    start_dossier 1
    bench 1-node:put --target "$TARGETS" --clients "$CLIENTS" --mix put
    stop_all
    start_etcd 1
    bench 1-node:put --etcd "$TARGETS" --clients "$CLIENTS" --mix put
    stop_all
    start_postgres
    bench 1-node:put --postgres "$CONNINFO" --clients "$CLIENTS" --mix put
    stop_all
    rm -rf "$WORK/rocksdb"
    DATA_DIRS=("$WORK/rocksdb")
    mkdir -p "$WORK/rocksdb"
    deployment_started   # in dossier-bench's own process: no server
    bench 1-node:put --rocksdb "$WORK/rocksdb" --clients "$CLIENTS" --mix put
done
ELAPSED=$(($(date +%s) - START))

echo
{
    echo "Dossier against etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p'), PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') and raw RocksDB;"
    echo "medians of $RUNS rounds (ops/s with min..max), 1 KiB values, ${SECONDS_PER} s each, $(nproc) cores, $(date -u +%Y-%m-%d):"
    awk -v order="$order" -v summary="$OUT/compare-summary.csv" \
        -v plot="$OUT/compare-plot.dat" -v clients="$CLIENTS" \
        -f "$ROOT/tools/bench/compare.awk" "$CSV"
    echo "(whole run: ${ELAPSED} s)"
} | tee "$OUT/compare.txt"
gnuplot -e "datafile='$OUT/compare-plot.dat'; outfile='$OUT/compare.png'" \
    "$ROOT/tools/bench/compare.gp" && echo "chart: $OUT/compare.png"
echo "(rows: $CSV; medians, minima and maxima: $OUT/compare-summary.csv)"
