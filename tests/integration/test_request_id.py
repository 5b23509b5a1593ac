#!/usr/bin/python3
"""The request id follows a call across nodes in the logs: a write sent to
a follower with request id R (metadata "dossier-request-id") is logged
with "request_id": R by the follower that forwarded it and by the leader
that applied it, every line is one JSON object, and no line holds the
record's marker values. A write retried with its request id is applied
once; once the leader's sweep removed the id (past its TTL: here a test
clock runs ahead), a retry applies again. Sent by an independent client (Debian's
python3-grpcio, bindings generated from proto/dossier.proto at test time)
because the C library picks request ids itself.
Usage: test_request_id.py DOSSIERD DOSSIER PROTO_DIR"""
import json
import os
import secrets
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pycluster  # noqa: E402
from pycluster import check  # noqa: E402

DOSSIERD, DOSSIER, PROTO_DIR = sys.argv[1:4]


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

    c = pycluster.Cluster(DOSSIERD, DOSSIER, work,
                          extra=("--log-level", "debug"))
    logs = c.logs
    try:
        leader = c.leader()
        follower = (leader + 1) % 3

        marker = "rid-marker-" + secrets.token_hex(8)
        rid = secrets.token_hex(16)
        rec = pb.Record(kind="contact", id="rid-1", subject_id=marker + "-s")
        rec.fields.add(name="first_name",
                       value=pb.Value(string_value=marker))
        ch = grpc.insecure_channel(c.target(follower))
        put = ch.unary_unary("/dossier.v1.Records/Put",
                             request_serializer=None,
                             response_deserializer=None)
        md = [("dossier-purpose", "operations"), ("dossier-request-id", rid)]
        raw = put(pb.PutRequest(record=rec).SerializeToString(), timeout=10,
                  metadata=md)
        first_version = pb.PutResponse.FromString(raw).version
        check(first_version > 0,
              "the write through a follower is acknowledged")
        # Retried with the same request id (its answer lost), it is
        # answered with its first outcome, not applied again.
        raw = put(pb.PutRequest(record=rec).SerializeToString(), timeout=10,
                  metadata=md)
        check(pb.PutResponse.FromString(raw).version == first_version,
              "a retried write is applied once")

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

        # A merge retried with its request id (its answer lost) is
        # answered with the merge it made, not refused for the duplicate
        # it deleted.
        for rid_, sub in (("mrg-1", "mrg-s1"), ("mrg-2", "mrg-s2")):
            r = pb.Record(kind="contact", id=rid_, subject_id=sub)
            r.fields.add(name="first_name", value=pb.Value(string_value="M"))
            put(pb.PutRequest(record=r).SerializeToString(), timeout=10,
                metadata=[("dossier-purpose", "operations")])
        merge = ch.unary_unary("/dossier.v1.Merges/Merge",
                               request_serializer=None,
                               response_deserializer=None)
        req = pb.MergeRequest(kind="contact", survivor_id="mrg-1",
                              duplicate_ids=["mrg-2"]).SerializeToString()
        md3 = [("dossier-purpose", "operations"),
               ("dossier-request-id", secrets.token_hex(16))]
        first = pb.MergeInfo.FromString(merge(req, timeout=10, metadata=md3))
        again = pb.MergeInfo.FromString(merge(req, timeout=10, metadata=md3))
        check(first.id.startswith("MRG-") and first.state == "pending",
              f"the merge is pending ({first.id}, {first.state})")
        check(again.id == first.id and again.state == "pending" and
              list(again.duplicate_ids) == ["mrg-2"],
              "its retry names the same merge")
        ch.close()
        time.sleep(0.5)  # let the log lines reach the files
    finally:
        c.close()

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

# The leader sweeps request ids kept past their TTL (a bulk load's would
# otherwise wait for later writes, each then deleting several): on a node
# whose sweep runs with its clock just past the TTL ahead, a write's id is
# swept within seconds, so a retry of it applies again, where above (no
# sweep due for ten minutes) it was answered as a duplicate.
with tempfile.TemporaryDirectory(prefix="dossier-sweep-") as work:
    c = pycluster.Cluster(DOSSIERD, DOSSIER, work, n=1,
                          extra=("--enable-fault-injection",
                                 "--request-sweep-clock-offset-ms", "601000"))
    try:
        ch = grpc.insecure_channel(c.target(c.leader()))
        put = ch.unary_unary("/dossier.v1.Records/Put",
                             request_serializer=None,
                             response_deserializer=None)
        rec = pb.Record(kind="contact", id="swept-1", subject_id="swept-s")
        rec.fields.add(name="first_name", value=pb.Value(string_value="S"))
        md = [("dossier-purpose", "operations"),
              ("dossier-request-id", secrets.token_hex(16))]
        req = pb.PutRequest(record=rec).SerializeToString()
        v1 = pb.PutResponse.FromString(put(req, timeout=10,
                                           metadata=md)).version
        v = v1
        for _ in range(100):
            time.sleep(0.1)
            v = pb.PutResponse.FromString(put(req, timeout=10,
                                              metadata=md)).version
            if v != v1:
                break
        check(v > v1, f"the swept id no longer deduplicates ({v1}, {v})")
        ch.close()
    finally:
        c.close()

print("FAILED" if pycluster.failures else "all passed")
sys.exit(1 if pycluster.failures else 0)
