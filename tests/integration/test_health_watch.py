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
import sys
import tempfile
import threading

import grpc
from grpc_tools import protoc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pycluster  # noqa: E402
from pycluster import check  # noqa: E402

DOSSIERD, DOSSIER, PROTO_DIR = sys.argv[1:4]


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

    c = pycluster.Cluster(DOSSIERD, DOSSIER, work)
    try:
        leader = c.leader()
        follower = (leader + 1) % 3
        other = (leader + 2) % 3
        target = c.target(follower)

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
        # A stopping leader hands its leadership over first, so the other
        # follower may lead for a moment before it stops too: the watcher
        # may hear NOT_SERVING, SERVING, NOT_SERVING. What counts is the
        # state it is left in (nothing new for 3 s, longer than an
        # election takes).
        for i in (leader, other):
            c.stop(i)
        item, heard = None, []
        while True:
            nxt = next_item(node_q, timeout=3 if item == "NOT_SERVING" else 20)
            if nxt is None:
                break
            item = nxt
            heard.append(item)
        check(item == "NOT_SERVING",
              f"losing the leader is pushed as NOT_SERVING ({heard})")

        # Stopping the node ends both streams at once with UNAVAILABLE, and
        # the open streams do not hold the stop up.
        rc = c.stop(follower)
        check(rc == 0, f"the node stops cleanly with watchers open (exit {rc})")
        item = next_item(node_q)
        check(item == ("end", grpc.StatusCode.UNAVAILABLE),
              f"the watch ends with UNAVAILABLE at the stop ({item})")
        item = next_item(unknown_q)
        check(item == ("end", grpc.StatusCode.UNAVAILABLE),
              f"every watch ends at the stop ({item})")
        # A stop cancels the calls still running after its grace period,
        # and logs it: the watchers must have ended before that.
        with open(c.logs[follower]) as f:
            log = f.read()
        check("still running" not in log and "stopped cleanly" in log,
              "the watchers ended before the stop's grace period ran out")
        for t in threads:
            t.join(timeout=10)
    finally:
        c.close()

print("FAILED" if pycluster.failures else "all passed")
sys.exit(1 if pycluster.failures else 0)
