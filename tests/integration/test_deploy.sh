#!/bin/bash
# The deployment files in deploy/ work as shipped: the three per-node config
# examples of deploy/cluster/, with only their addresses and paths moved to
# loopback and a temporary directory, start a 3-node cluster that elects a
# leader, refuses calls without credentials, takes its first admin from the
# bootstrap token and replicates a write; the systemd unit passes
# systemd-analyze.
# Usage: test_deploy.sh DOSSIERD DOSSIER SOURCE_DIR
set -u
DOSSIERD=$1
DOSSIER=$2
SRC=$3
WORK=$(mktemp -d /tmp/dossier-deploy-XXXXXX)
PIDS=()
failures=0

cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

# Three free loopback ports, known before the nodes start (peers name them).
read -r P1 P2 P3 < <(/usr/bin/python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)
PORTS=("" "$P1" "$P2" "$P3")

"$DOSSIER" keygen "$WORK/master.key" 2>/dev/null || { echo "FAIL: keygen"; exit 1; }
"$DOSSIER" token bootstrap "$WORK/bootstrap.token" 2>/dev/null || { echo "FAIL: token bootstrap"; exit 1; }
for i in 1 2 3; do
    conf=$WORK/node$i.conf
    sed -e "s/10\.0\.0\.1:7700/127.0.0.1:$P1/g" \
        -e "s/10\.0\.0\.2:7700/127.0.0.1:$P2/g" \
        -e "s/10\.0\.0\.3:7700/127.0.0.1:$P3/g" \
        -e "s|/var/lib/dossier|$WORK/data$i|" \
        -e "s|/etc/dossier/master.key|$WORK/master.key|" \
        -e "s|/etc/dossier/bootstrap.token|$WORK/bootstrap.token|" \
        -e "s|/run/dossier/ready|$WORK/ready$i|" \
        "$SRC/deploy/cluster/node$i.conf" >"$conf"
    # Every machine address and system path was moved (a setting the rewrite
    # missed would make this test use the machine's own paths).
    if grep -v '^#' "$conf" | grep -qE '10\.0\.0\.|/var/|/etc/|/run/'; then
        fail "node$i.conf: an address or path the rewrite did not move:"
        grep -v '^#' "$conf" | grep -E '10\.0\.0\.|/var/|/etc/|/run/' | sed 's/^/    /'
    fi
    "$DOSSIERD" --config "$conf" 2>"$WORK/log$i" &
    PIDS+=($!)
done
for i in 1 2 3; do
    for _ in $(seq 400); do [ -s "$WORK/ready$i" ] && break; sleep 0.05; done
    if [ -s "$WORK/ready$i" ]; then ok "node $i from deploy/cluster/node$i.conf is ready"
    else fail "node $i did not get ready"; sed 's/^/    /' "$WORK/log$i"; fi
done

TARGETS=127.0.0.1:$P1,127.0.0.1:$P2,127.0.0.1:$P3
# The examples require authentication: nothing without a token; the
# bootstrap token adds the first admin once, who adds a service.
if "$DOSSIER" --target "$TARGETS" get company deploy-0 >/dev/null 2>"$WORK/err"; then
    fail "a call without a token was answered"
elif [ $? -eq 7 ] && grep -q UNAUTHENTICATED "$WORK/err"; then
    ok "a call without a token is refused (UNAUTHENTICATED)"
else fail "a call without a token"; sed 's/^/    /' "$WORK/err"; fi
if DOSSIER_TOKEN=$(cat "$WORK/bootstrap.token") "$DOSSIER" --target "$TARGETS" \
        principal add ops admin >"$WORK/ops.json" 2>"$WORK/err"; then
    ok "the bootstrap token adds the first admin"
else fail "principal add with the bootstrap token"; sed 's/^/    /' "$WORK/err"; fi
ADMIN=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['token'])" "$WORK/ops.json" 2>/dev/null)
DOSSIER_TOKEN=$ADMIN "$DOSSIER" --target "$TARGETS" principal add deployer service \
    >"$WORK/svc.json" 2>"$WORK/err" || { fail "principal add service"; sed 's/^/    /' "$WORK/err"; }
SERVICE=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['token'])" "$WORK/svc.json" 2>/dev/null)
if DOSSIER_TOKEN=$(cat "$WORK/bootstrap.token") "$DOSSIER" --target "$TARGETS" \
        principal add ops2 admin >/dev/null 2>&1; then
    fail "the bootstrap token worked twice"
else ok "the bootstrap token is spent"; fi
export DOSSIER_TOKEN=$ADMIN
"$DOSSIER" --target "$TARGETS" cluster status >"$WORK/status" 2>"$WORK/err"
if /usr/bin/python3 - "$WORK/status" <<'PY'
import json, sys
nodes = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(nodes) == 3, nodes
assert sorted(n["role"] for n in nodes) == ["follower", "follower", "leader"]
assert len({n["leader_id"] for n in nodes}) == 1, nodes
leader = [n for n in nodes if n["role"] == "leader"][0]
assert {n["leader_address"] for n in nodes} == {leader["target"]}, nodes
for n in nodes:
    assert [m["role"] for m in n["members"]] == ["voter"] * 3, n
PY
then ok "cluster status: one leader, three voters, every node agrees"
else fail "cluster status"; sed 's/^/    /' "$WORK/status" "$WORK/err"; fi

export DOSSIER_TOKEN=$SERVICE
echo '{"kind":"company","id":"deploy-1","fields":{"name":"Deployed Ltd"}}' \
    | "$DOSSIER" --target "127.0.0.1:$P2" put - >/dev/null 2>"$WORK/err" \
    || { fail "put through node 2"; sed 's/^/    /' "$WORK/err"; }
if "$DOSSIER" --target "127.0.0.1:$P3" get company deploy-1 2>"$WORK/err" \
        | grep -q "Deployed Ltd"; then ok "a write through node 2 reads back on node 3"
else fail "read on node 3"; sed 's/^/    /' "$WORK/err"; fi

for i in 1 2 3; do
    p=${PIDS[$((i - 1))]}
    kill -TERM "$p"
    if wait "$p"; then ok "node $i stops cleanly on SIGTERM"; else fail "node $i exit status"; fi
    PIDS[$((i - 1))]=
done
PIDS=()

# The systemd unit, pointed at the built binary (its shipped path is where
# `cmake --install --prefix /usr/local` puts it).
# tools/deps.sh installs systemd for systemd-analyze: its absence is a failure.
sed "s|/usr/local/sbin/dossierd|$DOSSIERD|" "$SRC/deploy/dossierd.service" \
    >"$WORK/dossierd.service"
if systemd-analyze verify "$WORK/dossierd.service" >"$WORK/err" 2>&1; then
    ok "systemd-analyze verify deploy/dossierd.service"
else fail "systemd-analyze verify"; sed 's/^/    /' "$WORK/err"; fi

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all deploy checks passed"
