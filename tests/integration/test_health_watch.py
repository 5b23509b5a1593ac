#!/usr/bin/python3
"""grpc.health.v1.Health/Watch against a real 3-node cluster, through an
independent client (Debian's python3-grpcio, bindings generated from
proto/health.proto at test time), as a load balancer or Kubernetes would
use it: a watcher hears SERVING at once, NOT_SERVING when its node loses
the leader, SERVICE_UNKNOWN for a service the node lacks, and its stream
ends with UNAVAILABLE when the node stops, without holding the stop up.
Usage: test_health_watch.py DOSSIERD DOSSIER PROTO_DIR"""
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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


def watch(target, service, out):
    """Streams Watch(service) into the queue @out: each status name, then
    ("end", code) when the stream ends."""
    ch = grpc.insecure_channel(target)
    stub = ch.unary_stream("/grpc.health.v1.Health/Watch",
                           request_serializer=None,
                           response_deserializer=None)
    req = pb.HealthCheckRequest(service=service).SerializeToString()
    try:
        for raw in stub(req, timeout=60):
            r = pb.HealthCheckResponse.FromString(raw)
            out.put(pb.HealthCheckResponse.ServingStatus.Name(r.status))
        out.put(("end", grpc.StatusCode.OK))
    except grpc.RpcError as e:
        out.put(("end", e.code()))
    ch.close()


def next_item(q, timeout=15):
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        return None


with tempfile.TemporaryDirectory(prefix="dossier-health-") as work:
    assert protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={work}",
                        os.path.join(PROTO_DIR, "health.proto")]) == 0
    sys.path.insert(0, work)
    import health_pb2 as pb  # noqa: E402

    key = os.path.join(work, "master.key")
    subprocess.run([DOSSIER, "keygen", key], check=True,
                   stderr=subprocess.DEVNULL)
    ports = [free_port() for _ in range(3)]
    peers = ",".join(f"{i + 1}=127.0.0.1:{p}" for i, p in enumerate(ports))
    nodes = []
    for i, port in enumerate(ports):
        log = open(os.path.join(work, f"node{i + 1}.log"), "w+")
        nodes.append(subprocess.Popen(
            [DOSSIERD, "--node-id", str(i + 1), "--peers", peers,
             "--listen", f"127.0.0.1:{port}",
             "--data-dir", os.path.join(work, f"d{i + 1}"),
             "--key-file", key, "--tick-ms", "50",
             "--ready-file", os.path.join(work, f"ready{i + 1}")],
            stderr=log))
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
        other = (leader + 2) % 3
        target = f"127.0.0.1:{ports[follower]}"

        node_q, unknown_q = queue.Queue(), queue.Queue()
        threads = [threading.Thread(target=watch, args=(target, "", node_q)),
                   threading.Thread(target=watch,
                                    args=(target, "no.such.Service",
                                          unknown_q))]
        for t in threads:
            t.start()
        first = next_item(node_q)
        check(first == "SERVING", f"a watcher hears SERVING first ({first})")
        first = next_item(unknown_q)
        check(first == "SERVICE_UNKNOWN",
              f"an unknown service is SERVICE_UNKNOWN, stream open ({first})")

        # The leader and the other follower stop: this node has no leader.
        for i in (leader, other):
            nodes[i].send_signal(signal.SIGTERM)
            nodes[i].wait(timeout=30)
        item = next_item(node_q, timeout=20)
        check(item == "NOT_SERVING",
              f"losing the leader is pushed as NOT_SERVING ({item})")

        # Stopping the node ends both streams at once with UNAVAILABLE, and
        # the open streams do not hold the stop up.
        nodes[follower].send_signal(signal.SIGTERM)
        rc = nodes[follower].wait(timeout=30)
        check(rc == 0, f"the node stops cleanly with watchers open (exit {rc})")
        item = next_item(node_q)
        check(item == ("end", grpc.StatusCode.UNAVAILABLE),
              f"the watch ends with UNAVAILABLE at the stop ({item})")
        item = next_item(unknown_q)
        check(item == ("end", grpc.StatusCode.UNAVAILABLE),
              f"every watch ends at the stop ({item})")
        # A stop cancels the calls still running after its grace period,
        # and logs it: the watchers must have ended before that.
        with open(os.path.join(work, f"node{follower + 1}.log")) as f:
            log = f.read()
        check("still running" not in log and "stopped cleanly" in log,
              "the watchers ended before the stop's grace period ran out")
        for t in threads:
            t.join(timeout=10)
    finally:
        for p in nodes:
            if p.poll() is None:
                p.kill()
                p.wait()

print("FAILED" if failures else "all passed")
sys.exit(1 if failures else 0)
