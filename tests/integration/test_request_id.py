#!/usr/bin/python3
"""The request id follows a call across nodes in the logs: a write sent to
a follower with request id R (metadata "dossier-request-id") is logged
with "request_id": R by the follower that forwarded it and by the leader
that applied it, every line is one JSON object, and no line holds the
record's marker values. Sent by an independent client (Debian's
python3-grpcio, bindings generated from proto/dossier.proto at test time)
because the C library picks request ids itself.
Usage: test_request_id.py DOSSIERD DOSSIER PROTO_DIR"""
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

DOSSIERD, DOSSIER, PROTO_DIR = sys.argv[1:4]
failures = 0


def check(cond, what):
    global failures
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        failures += 1


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def lines_with(path, rid):
    """Parses every line of the log at @path (each must be JSON) and
    returns those whose request_id is @rid."""
    found = []
    with open(path) as f:
        for line in f:
            obj = json.loads(line)  # raises on a line that is not JSON
            if obj.get("request_id") == rid:
                found.append(obj)
    return found


with tempfile.TemporaryDirectory(prefix="dossier-rid-") as work:
    assert protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={work}",
                        os.path.join(PROTO_DIR, "dossier.proto")]) == 0
    sys.path.insert(0, work)
    import dossier_pb2 as pb  # noqa: E402

    key = os.path.join(work, "master.key")
    subprocess.run([DOSSIER, "keygen", key], check=True,
                   stderr=subprocess.DEVNULL)
    ports = [free_port() for _ in range(3)]
    peers = ",".join(f"{i + 1}=127.0.0.1:{p}" for i, p in enumerate(ports))
    nodes, logs = [], []
    for i, port in enumerate(ports):
        logs.append(os.path.join(work, f"node{i + 1}.log"))
        nodes.append(subprocess.Popen(
            [DOSSIERD, "--node-id", str(i + 1), "--peers", peers,
             "--listen", f"127.0.0.1:{port}",
             "--data-dir", os.path.join(work, f"d{i + 1}"),
             "--key-file", key, "--tick-ms", "50", "--log-level", "debug",
             "--ready-file", os.path.join(work, f"ready{i + 1}")],
            stderr=open(logs[-1], "w")))
    try:
        for _ in range(400):
            if all(os.path.exists(os.path.join(work, f"ready{i + 1}"))
                   for i in range(3)):
                break
            time.sleep(0.05)
        env = dict(os.environ,
                   DOSSIER_TARGET=",".join(f"127.0.0.1:{p}" for p in ports))
        status = subprocess.run([DOSSIER, "cluster", "status"], env=env,
                                capture_output=True, text=True).stdout
        leader = next(i for i, line in enumerate(status.splitlines())
                      if '"role":"leader"' in line)
        follower = (leader + 1) % 3

        marker = "rid-marker-" + secrets.token_hex(8)
        rid = secrets.token_hex(16)
        rec = pb.Record(kind="contact", id="rid-1", subject_id=marker + "-s")
        rec.fields.add(name="first_name",
                       value=pb.Value(string_value=marker))
        ch = grpc.insecure_channel(f"127.0.0.1:{ports[follower]}")
        put = ch.unary_unary("/dossier.v1.Records/Put",
                             request_serializer=None,
                             response_deserializer=None)
        md = [("dossier-purpose", "operations"), ("dossier-request-id", rid)]
        raw = put(pb.PutRequest(record=rec).SerializeToString(), timeout=10,
                  metadata=md)
        check(pb.PutResponse.FromString(raw).version > 0,
              "the write through a follower is acknowledged")

        # A refusal is logged with its request id too.
        rid2 = secrets.token_hex(16)
        try:
            put(pb.PutRequest(record=rec).SerializeToString(), timeout=10,
                metadata=[("dossier-request-id", rid2)])
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        check(code == grpc.StatusCode.INVALID_ARGUMENT,
              f"a write without a purpose is refused ({code})")
        ch.close()
        time.sleep(0.5)  # let the log lines reach the files
    finally:
        for p in nodes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    on_follower = lines_with(logs[follower], rid)
    on_leader = lines_with(logs[leader], rid)
    check(any("/dossier.v1.Records/Put" in o["msg"] for o in on_follower),
          f"the follower logs the call with its request id ({on_follower})")
    check(any("(forwarded)" in o["msg"] for o in on_leader),
          f"the leader logs the forwarded call with the same request id "
          f"({on_leader})")
    refused = lines_with(logs[follower], rid2)
    check(any("refused" in o["msg"] for o in refused),
          f"the refusal is logged with its request id ({refused})")
    leaked = [p for p in logs if marker in open(p).read()]
    check(not leaked, f"no log holds the record's values ({leaked})")

print("FAILED" if failures else "all passed")
sys.exit(1 if failures else 0)
