#!/bin/bash
# TLS against real processes on loopback: a 3-node cluster whose nodes talk
# mutual TLS elects a leader and replicates; clients verify the nodes and
# present certificates; a plaintext client, a missing or foreign client
# certificate are refused; a principal known by its certificate's CN gets
# its role and no other; the node refuses bad TLS settings at start;
# SIGHUP gives new connections a renewed certificate, and a bad one changes
# nothing; many reloads leave no replaced channel to the other nodes behind.
# Certificates are made here with the openssl CLI.
# Usage: test_tls.sh DOSSIERD DOSSIER [DOSSIER_BENCH]
set -u
DOSSIERD=$1
DOSSIER=$2
BENCH=${3:-}
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/dossier-tls-XXXXXX)
PIDS=()
failures=0

cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

# expect CODE DESCRIPTION -- COMMAND...: runs COMMAND, checks its exit code,
# leaves stdout in $WORK/out and stderr in $WORK/err.
expect() {
    local want=$1 what=$2
    shift 3
    "$@" >"$WORK/out" 2>"$WORK/err"
    local got=$?
    if [ "$got" -eq "$want" ]; then ok "$what"; else
        fail "$what: exit $got, wanted $want"; sed 's/^/    /' "$WORK/out" "$WORK/err"; fi
}
contains() { # FILE TEXT DESCRIPTION
    if grep -qF -- "$2" "$1"; then ok "$3"; else fail "$3: '$2' not in it"; sed 's/^/    /' "$1"; fi
}
# Stops the node whose PID is $1 with SIGTERM; echoes its exit status.
stop() {
    kill -TERM "$1" 2>/dev/null
    for _ in $(seq 200); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

command -v openssl >/dev/null || { echo "FAIL: openssl is not installed (tools/deps.sh)"; exit 1; }

# --- certificates -----------------------------------------------------------
C=$WORK/certs
mkdir -p "$C"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null && chmod 600 "$1"; }
ca() { # NAME CN
    key "$C/$1.key"
    openssl req -x509 -new -key "$C/$1.key" -out "$C/$1.pem" -days 2 -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
cert() { # NAME CN CA EXTENSIONS
    key "$C/$1.key"
    openssl req -new -key "$C/$1.key" -subj "/CN=$2" -out "$C/$1.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n%s\n' "$4" >"$C/$1.ext"
    openssl x509 -req -in "$C/$1.csr" -CA "$C/$3.pem" -CAkey "$C/$3.key" \
        -CAcreateserial -days 2 -extfile "$C/$1.ext" -out "$C/$1.pem" 2>/dev/null
}
ca ca "Dossier test CA"
ca other "Unrelated CA"
for i in 1 2 3; do
    cert "node$i" "node$i" ca "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth,clientAuth"
done
cert dpo dpo-cert ca "extendedKeyUsage=clientAuth"
# Same CN, wrong CA: the CA is what makes a certificate count.
cert foreign dpo-cert other "extendedKeyUsage=clientAuth"
n=0
for f in ca other node1 node2 node3 dpo foreign; do [ -s "$C/$f.pem" ] && n=$((n + 1)); done
if [ "$n" -eq 7 ] && openssl verify -CAfile "$C/ca.pem" "$C/node1.pem" "$C/dpo.pem" >/dev/null &&
    ! openssl verify -CAfile "$C/ca.pem" "$C/foreign.pem" >/dev/null 2>&1; then
    ok "openssl made 2 CAs, 3 node and 2 client certificates"
else fail "certificates were not made"; exit 1; fi
"$DOSSIER" keygen "$WORK/master.key" 2>/dev/null || { echo "FAIL: keygen"; exit 1; }

# --- help and refusals at start (no node serves) ----------------------------
expect 0 "dossierd --help" -- "$DOSSIERD" --help
for flag in --tls-cert --tls-key --tls-ca --tls-client-cert; do
    contains "$WORK/out" "$flag" "dossierd --help documents $flag"
done
expect 0 "dossier --help" -- "$DOSSIER" --help
for flag in --tls-ca --tls-cert --tls-key DOSSIER_TLS_CA; do
    contains "$WORK/out" "$flag" "dossier --help documents $flag"
done

NODE=(--key-file "$WORK/master.key" --listen 127.0.0.1:0)
expect 2 "--tls-cert without --tls-key is a usage error" -- \
    timeout 20 "$DOSSIERD" "${NODE[@]}" --data-dir "$WORK/d0" --tls-cert "$C/node1.pem"
contains "$WORK/err" "tls-key" "the message names tls-key"
expect 2 "--tls-key without --tls-cert is a usage error" -- \
    timeout 20 "$DOSSIERD" "${NODE[@]}" --data-dir "$WORK/d0" --tls-key "$C/node1.key"
expect 2 "--require-tls without a certificate refuses to start" -- \
    timeout 20 "$DOSSIERD" "${NODE[@]}" --data-dir "$WORK/d0" --require-tls
contains "$WORK/err" "--tls-cert" "the message says what is missing"
expect 2 "--tls-ca without --tls-cert is a usage error" -- \
    timeout 20 "$DOSSIERD" "${NODE[@]}" --data-dir "$WORK/d0" --tls-ca "$C/ca.pem"
expect 2 "--tls-client-cert takes none, request or require" -- \
    timeout 20 "$DOSSIERD" "${NODE[@]}" --data-dir "$WORK/d0" --tls-cert "$C/node1.pem" \
    --tls-key "$C/node1.key" --tls-ca "$C/ca.pem" --tls-client-cert maybe
cp "$C/node1.key" "$WORK/open.key"
chmod 640 "$WORK/open.key"
expect 1 "a TLS key group can read is refused" -- \
    timeout 20 "$DOSSIERD" "${NODE[@]}" --data-dir "$WORK/d0" --tls-cert "$C/node1.pem" \
    --tls-key "$WORK/open.key"
contains "$WORK/err" "$WORK/open.key" "the message names the key file"
contains "$WORK/err" "chmod 600" "the message says how to fix it"
expect 1 "a missing certificate file is refused" -- \
    timeout 20 "$DOSSIERD" "${NODE[@]}" --data-dir "$WORK/d0" --tls-cert "$WORK/nothing.pem" \
    --tls-key "$C/node1.key"
contains "$WORK/err" "$WORK/nothing.pem" "the message names the certificate file"
expect 1 "a CA file that is not PEM is refused" -- \
    timeout 20 "$DOSSIERD" "${NODE[@]}" --data-dir "$WORK/d0" --tls-cert "$C/node1.pem" \
    --tls-key "$C/node1.key" --tls-ca "$WORK/master.key"
contains "$WORK/err" "not PEM" "the message says the file is not PEM"
expect 5 "dossier refuses an unreadable --tls-ca" -- \
    "$DOSSIER" --tls-ca "$WORK/nothing.pem" --target 127.0.0.1:1 health
contains "$WORK/err" "$WORK/nothing.pem" "the client's message names the file"
expect 2 "dossier --tls-cert without --tls-key is a usage error" -- \
    "$DOSSIER" --tls-ca "$C/ca.pem" --tls-cert "$C/dpo.pem" health

# --- a 3-node cluster, mutual TLS between nodes, client certificates required
read -r P1 P2 P3 < <($PY - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)
PEERS="1=127.0.0.1:$P1,2=127.0.0.1:$P2,3=127.0.0.1:$P3"
PORTS=("" "$P1" "$P2" "$P3")
CLUSTER=()
for i in 1 2 3; do
    "$DOSSIERD" --key-file "$WORK/master.key" --data-dir "$WORK/c$i" \
        --listen "127.0.0.1:${PORTS[$i]}" --node-id "$i" --peers "$PEERS" \
        --ready-file "$WORK/ready$i" --tick-ms 50 \
        --tls-cert "$C/node$i.pem" --tls-key "$C/node$i.key" --tls-ca "$C/ca.pem" \
        --tls-client-cert require --require-tls \
        --metrics-listen 127.0.0.1:0 2>"$WORK/clog$i" &
    PIDS+=($!)
    CLUSTER+=($!)
done
for i in 1 2 3; do
    for _ in $(seq 400); do [ -s "$WORK/ready$i" ] && break; sleep 0.05; done
    # Ready means: a leader is known and the cluster's keys are open, which
    # needs Raft messages between the nodes, over their TLS-only ports.
    if [ -s "$WORK/ready$i" ]; then ok "TLS node $i is ready (a leader was elected)"
    else fail "TLS node $i did not get ready"; sed 's/^/    /' "$WORK/clog$i"; fi
done
ALL=127.0.0.1:$P1,127.0.0.1:$P2,127.0.0.1:$P3
MTLS=(--tls-ca "$C/ca.pem" --tls-cert "$C/dpo.pem" --tls-key "$C/dpo.key")
expect 0 "cluster status over mutual TLS" -- "$DOSSIER" --target "$ALL" "${MTLS[@]}" cluster status
if $PY -c "
import json, sys
nodes = [json.loads(l) for l in open('$WORK/out') if l.strip()]
roles = sorted(n['role'] for n in nodes)
sys.exit(0 if roles == ['follower', 'follower', 'leader'] else 1)"; then
    ok "one leader and two followers, all reached over TLS"
else fail "cluster status"; sed 's/^/    /' "$WORK/out"; fi

echo '{"kind":"contact","id":"c-tls","subject_id":"s-tls","fields":{"first_name":"Tess","email":"tess@example.com"}}' >"$WORK/rec.json"
# Node 1 may be a follower: then the write is forwarded to the leader over
# the nodes' mutual TLS.
expect 0 "a put through node 1 over TLS" -- \
    "$DOSSIER" --target "127.0.0.1:$P1" "${MTLS[@]}" put "$WORK/rec.json"
for i in 2 3; do
    expect 0 "the record reads from node $i (linearizable, over TLS)" -- \
        "$DOSSIER" --target "127.0.0.1:${PORTS[$i]}" "${MTLS[@]}" get contact c-tls
    contains "$WORK/out" '"Tess"' "node $i returns the record written through node 1"
done
found=0
for _ in $(seq 100); do
    if "$DOSSIER" --target "127.0.0.1:$P3" "${MTLS[@]}" --serializable get contact c-tls \
        >"$WORK/out" 2>"$WORK/err"; then found=1; break; fi
    sleep 0.05
done
[ "$found" = 1 ] && ok "node 3 holds the record in its own store (serializable read)" ||
    fail "node 3 never served the record from its own state"

expect 6 "a plaintext client is refused (UNAVAILABLE)" -- \
    "$DOSSIER" --target "127.0.0.1:$P1" --timeout 2000 get contact c-tls
contains "$WORK/err" UNAVAILABLE "the plaintext client hears UNAVAILABLE"
expect 6 "require: a client without a certificate fails the handshake" -- \
    "$DOSSIER" --target "127.0.0.1:$P1" --timeout 2000 --tls-ca "$C/ca.pem" get contact c-tls
contains "$WORK/err" UNAVAILABLE "the client without a certificate hears UNAVAILABLE"
expect 6 "require: a client certificate of another CA is refused" -- \
    "$DOSSIER" --target "127.0.0.1:$P1" --timeout 2000 --tls-ca "$C/ca.pem" \
    --tls-cert "$C/foreign.pem" --tls-key "$C/foreign.key" get contact c-tls
expect 6 "a client that trusts another CA refuses the node" -- \
    "$DOSSIER" --target "127.0.0.1:$P1" --timeout 2000 --tls-ca "$C/other.pem" \
    --tls-cert "$C/dpo.pem" --tls-key "$C/dpo.key" get contact c-tls
expect 0 "the environment variables work as the flags do" -- \
    env DOSSIER_TLS_CA="$C/ca.pem" DOSSIER_TLS_CERT="$C/dpo.pem" DOSSIER_TLS_KEY="$C/dpo.key" \
    "$DOSSIER" --target "127.0.0.1:$P2" get contact c-tls
if [ -n "$BENCH" ]; then
    expect 0 "dossier-bench runs over mutual TLS" -- \
        "$BENCH" --target "$ALL" "${MTLS[@]}" --clients 2 --duration 1 --warmup 0 \
        --mix 50:50 --keys 20 --trace "$WORK/trace.csv"
    # --trace: one row per measured call, started within the last minute.
    ops=$(sed -n 's/.* ops=\([0-9]*\) .*/\1/p' "$WORK/out")
    rows=$(/usr/bin/python3 - "$WORK/trace.csv" <<'PY'
import csv, sys, time
rows = list(csv.DictReader(open(sys.argv[1])))
now = time.time()
ok = all(now - 60 < float(r["start_unix_s"]) <= now and
         float(r["latency_ms"]) > 0 and r["op"] in ("put", "get") and
         r["client"] in ("0", "1") for r in rows)
print(len(rows) if ok else -1)
PY
)
    [ -n "$ops" ] && [ "$ops" -gt 0 ] && [ "$rows" = "$ops" ] &&
        ok "dossier-bench --trace writes one row per measured call ($rows)" ||
        fail "dossier-bench --trace: $rows rows for ${ops:-no} calls"
fi

# --- certificates reloaded on SIGHUP -----------------------------------------
# The subject of the certificate node $1 presents to a new connection.
served_cn() {
    openssl s_client -connect "127.0.0.1:${PORTS[$1]}" -alpn h2 -CAfile "$C/ca.pem" \
        -cert "$C/dpo.pem" -key "$C/dpo.key" </dev/null 2>/dev/null |
        openssl x509 -noout -subject 2>/dev/null | sed 's/.*CN *= *//'
}
# Waits until node $1's log holds $2 (up to 5 s).
wait_log() {
    for _ in $(seq 100); do grep -qF -- "$2" "$WORK/clog$1" && return 0; sleep 0.05; done
    return 1
}
[ "$(served_cn 1)" = node1 ] && ok "node 1 presents its certificate (CN node1)" ||
    fail "node 1 presents CN '$(served_cn 1)'"
cert node1b node1-renewed ca "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth,clientAuth"
cp "$C/node1b.pem" "$C/node1.pem"
cp "$C/node1b.key" "$C/node1.key"
kill -HUP "${CLUSTER[0]}"
wait_log 1 "TLS certificate reloaded" && ok "node 1 logs the reload" ||
    { fail "node 1 did not reload its certificate"; tail -3 "$WORK/clog1"; }
[ "$(served_cn 1)" = node1-renewed ] && ok "a new connection to node 1 gets the new certificate" ||
    fail "after SIGHUP node 1 presents CN '$(served_cn 1)'"
echo '{"kind":"contact","id":"c-renew","subject_id":"s-renew","fields":{"first_name":"Rene"}}' >"$WORK/renew.json"
expect 0 "node 1 keeps serving: a put through it" -- \
    "$DOSSIER" --target "127.0.0.1:$P1" "${MTLS[@]}" put "$WORK/renew.json"
for i in 2 3; do
    expect 0 "node $i reads the record written through node 1 after its reload" -- \
        "$DOSSIER" --target "127.0.0.1:${PORTS[$i]}" "${MTLS[@]}" get contact c-renew
done
expect 0 "node 1 answers over the connection made before its reload too" -- \
    "$DOSSIER" --target "127.0.0.1:$P1" "${MTLS[@]}" get contact c-tls
# Each reload replaces node 1's channel to each other node; the replaced
# ones are freed once no call to another node is in flight, so many
# reloads leave none behind (they used to be kept until the node stopped).
retired() {
    local port
    port=$(grep -o 'metrics on http://127.0.0.1:[0-9]*' "$WORK/clog1" | tail -1 | sed 's/.*://')
    $PY -c "import urllib.request,sys
for l in urllib.request.urlopen('http://127.0.0.1:$port/metrics').read().decode().splitlines():
    if l.startswith('dossier_peer_channels_retired '): print(int(float(l.split()[1])))"
}
for _ in $(seq 10); do kill -HUP "${CLUSTER[0]}"; sleep 0.1; done
for _ in $(seq 100); do [ "$(grep -c 'TLS certificate reloaded from' "$WORK/clog1")" -ge 11 ] && break; sleep 0.05; done
[ "$(grep -c 'TLS certificate reloaded from' "$WORK/clog1")" -ge 11 ] && ok "node 1 reloaded ten more times" ||
    fail "node 1 did not reload ten more times"
for _ in $(seq 100); do [ "$(retired)" = 0 ] && break; sleep 0.1; done
[ "$(retired)" = 0 ] && ok "no replaced peer channel is left after 11 reloads" ||
    fail "replaced peer channels left after 11 reloads: $(retired)"
expect 0 "node 1 still replicates after the reloads" -- \
    "$DOSSIER" --target "127.0.0.1:$P1" "${MTLS[@]}" put "$WORK/renew.json"
# A bad new certificate changes nothing, and the log says why.
cp "$C/node2.pem" "$WORK/node2.pem.good"
echo "not a certificate" >"$C/node2.pem"
kill -HUP "${CLUSTER[1]}"
wait_log 2 "TLS certificate not reloaded" && ok "node 2 refuses a file that is not PEM, and logs why" ||
    { fail "node 2 did not log the refused reload"; tail -3 "$WORK/clog2"; }
contains "$WORK/clog2" "$C/node2.pem" "the log names the file"
[ "$(served_cn 2)" = node2 ] && ok "node 2 still presents its certificate" ||
    fail "node 2 presents CN '$(served_cn 2)' after a bad reload"
cp "$C/node3.pem" "$C/node2.pem" # a certificate that is not of node 2's key
kill -HUP "${CLUSTER[1]}"
for _ in $(seq 100); do [ "$(grep -c 'TLS certificate not reloaded' "$WORK/clog2")" -ge 2 ] && break; sleep 0.05; done
[ "$(grep -c 'TLS certificate not reloaded' "$WORK/clog2")" -ge 2 ] &&
    ok "node 2 refuses a certificate its key does not match" ||
    { fail "a mismatched key and certificate were taken"; tail -3 "$WORK/clog2"; }
[ "$(served_cn 2)" = node2 ] && ok "node 2 still presents its certificate" ||
    fail "node 2 presents CN '$(served_cn 2)' after a mismatched reload"
expect 0 "node 2 keeps serving" -- \
    "$DOSSIER" --target "127.0.0.1:$P2" "${MTLS[@]}" get contact c-renew
cp "$WORK/node2.pem.good" "$C/node2.pem"

for i in 1 2 3; do
    stop "${CLUSTER[$((i - 1))]}"
    st=$?
    [ "$st" -eq 0 ] && ok "TLS node $i stops cleanly" || { fail "TLS node $i exit $st"; tail -5 "$WORK/clog$i"; }
done

# --- one node, client certificates requested, principals by certificate ----
TOK_JSON=$("$DOSSIER" token new crm-sync service)
SVC_TOKEN=$($PY -c "import json,sys; print(json.loads(sys.argv[1])['token'])" "$TOK_JSON")
SVC_LINE=$($PY -c "import json,sys; print(json.loads(sys.argv[1])['auth_line'])" "$TOK_JSON")
printf '# TLS test principals\n%s\ndpo-cert compliance cert\n' "$SVC_LINE" >"$WORK/principals"
"$DOSSIERD" --key-file "$WORK/master.key" --data-dir "$WORK/s1" --listen 127.0.0.1:0 \
    --ready-file "$WORK/sready" --auth-file "$WORK/principals" \
    --tls-cert "$C/node1.pem" --tls-key "$C/node1.key" --tls-ca "$C/ca.pem" \
    2>"$WORK/slog" &
SPID=$!
PIDS+=($SPID)
for _ in $(seq 400); do [ -s "$WORK/sready" ] && break; sleep 0.05; done
[ -s "$WORK/sready" ] || { fail "the single TLS node did not start"; sed 's/^/    /' "$WORK/slog"; exit 1; }
T=$(cat "$WORK/sready")
contains "$WORK/slog" "client certificates: request" "the node logs that it requests client certificates"

echo '{"kind":"contact","id":"c-one","subject_id":"s-one","fields":{"first_name":"Uma"}}' >"$WORK/one.json"
expect 0 "dossier --tls-ca with a token writes" -- \
    env DOSSIER_TOKEN="$SVC_TOKEN" "$DOSSIER" --target "$T" --tls-ca "$C/ca.pem" put "$WORK/one.json"
expect 0 "dossier --tls-ca with a token reads" -- \
    env DOSSIER_TOKEN="$SVC_TOKEN" "$DOSSIER" --target "$T" --tls-ca "$C/ca.pem" get contact c-one
contains "$WORK/out" '"Uma"' "the record written over TLS reads back"
expect 7 "request: no token and no certificate is UNAUTHENTICATED" -- \
    "$DOSSIER" --target "$T" --tls-ca "$C/ca.pem" audit public-key
contains "$WORK/err" UNAUTHENTICATED "the refusal says UNAUTHENTICATED"
expect 0 "the dpo-cert certificate, no token: audit public-key (compliance)" -- \
    "$DOSSIER" --target "$T" "${MTLS[@]}" audit public-key
expect 7 "the dpo-cert certificate may not run an admin command" -- \
    "$DOSSIER" --target "$T" "${MTLS[@]}" backup list
contains "$WORK/err" PERMISSION_DENIED "the refusal says PERMISSION_DENIED"
contains "$WORK/err" "dpo-cert" "the refusal names the certificate principal"
expect 7 "a verified certificate whose CN is no principal is UNAUTHENTICATED" -- \
    "$DOSSIER" --target "$T" --tls-ca "$C/ca.pem" --tls-cert "$C/node2.pem" \
    --tls-key "$C/node2.key" audit public-key
contains "$WORK/slog" "a client certificate that names no principal" "the node logs the refusal, without the CN (often a name)"
expect 6 "request: a certificate of another CA fails the handshake" -- \
    "$DOSSIER" --target "$T" --timeout 2000 --tls-ca "$C/ca.pem" \
    --tls-cert "$C/foreign.pem" --tls-key "$C/foreign.key" audit public-key
expect 6 "a plaintext client is refused by the single node too" -- \
    "$DOSSIER" --target "$T" --timeout 2000 audit public-key
contains "$WORK/err" UNAVAILABLE "the plaintext client hears UNAVAILABLE"
stop "$SPID"
st=$?
[ "$st" -eq 0 ] && ok "the single TLS node stops cleanly" || { fail "single TLS node exit $st"; tail -5 "$WORK/slog"; }

# The logs name certificate files and CNs, never a certificate or key.
# (A message may say a file lacks a "-----BEGIN " line: that is no PEM.)
PEM_RE='-----BEGIN [A-Z ]+-----|PRIVATE KEY|MII[A-Za-z0-9+/]{16}|MHc[A-Za-z0-9+/]{16}'
if cat "$WORK"/clog* "$WORK/slog" | grep -qE -- "$PEM_RE"; then
    fail "a node log holds PEM text"; grep -hE -- "$PEM_RE" "$WORK"/clog* "$WORK/slog" | head -3
else ok "no node log holds certificate or key text"; fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
