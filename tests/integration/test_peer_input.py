#!/usr/bin/python3
"""Bad input on the node-to-node service, sent by an independent client
(Debian's python3-grpcio, with bindings generated from proto/peer.proto at
test time): every refusal gets a clear status, is logged, and the cluster
keeps working. Usage: test_peer_input.py DOSSIERD DOSSIER PROTO_DIR"""
import hashlib
import os
import subprocess
import sys
import tempfile

import grpc
from grpc_tools import protoc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pycluster  # noqa: E402
from fault import peer_token  # noqa: E402
from pycluster import check  # noqa: E402

DOSSIERD, DOSSIER, PROTO_DIR = sys.argv[1:4]
PEER_TOKEN = ""


def call(channel, method, payload, timeout=5, token=None):
    """Calls with the peer token (the one every member derives from the
    master key) unless another is given; token="" sends none."""
    stub = channel.unary_unary(method, request_serializer=None,
                               response_deserializer=None)
    token = PEER_TOKEN if token is None else token
    md = [("authorization", "Bearer " + token)] if token else []
    try:
        stub(payload, timeout=timeout, metadata=md)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details() or ""


with tempfile.TemporaryDirectory(prefix="dossier-peer-input-") as work:
    assert protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={work}"] +
                       [os.path.join(PROTO_DIR, f) for f in
                        ("peer.proto", "store.proto", "dossier.proto")]) == 0
    sys.path.insert(0, work)
    import peer_pb2 as pb  # noqa: E402

    c = pycluster.Cluster(DOSSIERD, DOSSIER, work)
    PEER_TOKEN = peer_token(c.key)
    ports = c.ports
    try:
        target = f"127.0.0.1:{ports[0]}"
        targets = ",".join(f"127.0.0.1:{p}" for p in ports)
        env = dict(os.environ, DOSSIER_TARGET=targets)
        ch = grpc.insecure_channel(target)
        cluster_id = hashlib.blake2b(b"dossier.cluster-id.v1" + b"dossier",
                                     digest_size=16).digest()

        # Peer calls without the peer token, or with another one, are
        # refused before anything is decoded.
        ping = pb.MessageBatch(cluster_id=cluster_id).SerializeToString()
        for tok, what in (("", "no token"), ("0" * 64, "a wrong token")):
            code, details = call(ch, "/dossier.peer.v1.Peer/Send", ping,
                                 token=tok)
            check(code == grpc.StatusCode.UNAUTHENTICATED,
                  f"a peer call with {what} is refused ({code}: {details})")
        stream = ch.stream_unary("/dossier.peer.v1.Peer/InstallSnapshot",
                                 request_serializer=None,
                                 response_deserializer=None)
        try:
            stream(iter([b"x"]), timeout=5)
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        check(code == grpc.StatusCode.UNAUTHENTICATED,
              f"a snapshot stream without the peer token is refused ({code})")

        # A vote request from a node that is not a member.
        # ("from" is a Python keyword: set it with setattr.)
        batch = pb.MessageBatch(cluster_id=cluster_id)
        setattr(batch, "from", 99)
        m = batch.messages.add(type=3, to=1, term=1000, log_term=1000,
                               index=1000)
        setattr(m, "from", 99)
        code, details = call(ch, "/dossier.peer.v1.Peer/Send",
                             batch.SerializeToString())
        check(code == grpc.StatusCode.PERMISSION_DENIED and
              "not a member" in details,
              f"a message from a non-member is refused ({code}: {details})")

        # Traffic of another cluster.
        other = pb.MessageBatch(cluster_id=b"\x01" * 16)
        setattr(other, "from", 2)
        code, details = call(ch, "/dossier.peer.v1.Peer/Send",
                             other.SerializeToString())
        check(code == grpc.StatusCode.PERMISSION_DENIED and
              "another cluster" in details,
              f"a message of another cluster is refused ({details})")

        # Garbage bytes.
        code, details = call(ch, "/dossier.peer.v1.Peer/Send",
                             b"\xff\xff\xff\x00\x01")
        check(code == grpc.StatusCode.INVALID_ARGUMENT,
              f"a malformed batch is refused ({code})")

        # A member's batch that claims another sender inside.
        forged = pb.MessageBatch(cluster_id=cluster_id)
        setattr(forged, "from", 2)
        fm = forged.messages.add(type=7, to=1, term=1)
        setattr(fm, "from", 3)
        code, details = call(ch, "/dossier.peer.v1.Peer/Send",
                             forged.SerializeToString())
        check(code == grpc.StatusCode.INVALID_ARGUMENT,
              f"a message claiming another sender is refused ({details})")

        # A snapshot message without its data, and an unknown message type.
        snap = pb.MessageBatch(cluster_id=cluster_id)
        setattr(snap, "from", 2)
        sm = snap.messages.add(type=9, to=1, term=1)
        setattr(sm, "from", 2)
        code, _ = call(ch, "/dossier.peer.v1.Peer/Send",
                       snap.SerializeToString())
        check(code == grpc.StatusCode.INVALID_ARGUMENT,
              "a snapshot message without data is refused")
        bad = pb.MessageBatch(cluster_id=cluster_id)
        setattr(bad, "from", 2)
        bm = bad.messages.add(type=77, to=1, term=1)
        setattr(bm, "from", 2)
        code, _ = call(ch, "/dossier.peer.v1.Peer/Send",
                       bad.SerializeToString())
        check(code == grpc.StatusCode.INVALID_ARGUMENT,
              "an unknown message type is refused")

        # A forwarded call from a non-member, and the fault switch without
        # --enable-fault-injection.
        fw = pb.ForwardRequest(cluster_id=cluster_id,
                               method="/dossier.v1.Records/Put")
        setattr(fw, "from", 99)
        code, _ = call(ch, "/dossier.peer.v1.Peer/Forward",
                       fw.SerializeToString())
        check(code == grpc.StatusCode.PERMISSION_DENIED,
              "a forward from a non-member is refused")
        code, _ = call(ch, "/dossier.peer.v1.Peer/Fault",
                       pb.FaultRequest(isolate_from=[2]).SerializeToString())
        check(code == grpc.StatusCode.PERMISSION_DENIED,
              "the fault switch is off on a normal node")

        # Erasure reports (Peer.ErasureDone): checked as every peer call
        # (cluster, membership), and a node reports for itself only.
        def erasure_done(cid, sender, node_id):
            req = pb.ErasureDoneRequest(cluster_id=cid)
            setattr(req, "from", sender)
            req.report.node_id = node_id
            req.report.completed_ms = 1
            return call(ch, "/dossier.peer.v1.Peer/ErasureDone",
                        req.SerializeToString(), timeout=10)
        code, details = erasure_done(b"\x01" * 16, 2, 2)
        check(code == grpc.StatusCode.PERMISSION_DENIED and
              "another cluster" in details,
              f"an erasure report of another cluster is refused ({details})")
        code, details = erasure_done(cluster_id, 99, 99)
        check(code == grpc.StatusCode.PERMISSION_DENIED and
              "not a member" in details,
              f"an erasure report from a non-member is refused ({details})")
        code, details = erasure_done(cluster_id, 2, 3)
        check(code == grpc.StatusCode.PERMISSION_DENIED and
              "comes from node 2" in details,
              f"a report for another node is refused ({code}: {details})")
        code, details = erasure_done(cluster_id, 2, 2)
        check(code == grpc.StatusCode.OK,
              f"a member's own (empty) report is taken ({code}: {details})")
        code, details = call(ch, "/dossier.peer.v1.Peer/ErasureDone",
                             b"\xff\xff\xff\x00\x01")
        check(code == grpc.StatusCode.INVALID_ARGUMENT,
              f"a malformed erasure report is refused ({code})")

        # Audit entries: only through Peer.Forward (which checks the
        # cluster and the membership of the sender), never a direct call
        # that any holder of the peer token could make.
        code, details = call(ch, "/dossier.peer.v1.Peer/AuditAppend",
                             b"", timeout=10)
        check(code == grpc.StatusCode.PERMISSION_DENIED and
              "Peer.Forward" in details,
              f"a direct audit append is refused ({code}: {details})")

        # A snapshot stream that is garbage.
        stream = ch.stream_unary("/dossier.peer.v1.Peer/InstallSnapshot",
                                 request_serializer=None,
                                 response_deserializer=None)
        try:
            stream(iter([b"\xff\x00garbage"]), timeout=5,
                   metadata=[("authorization", "Bearer " + PEER_TOKEN)])
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        check(code == grpc.StatusCode.INVALID_ARGUMENT,
              f"a malformed snapshot stream is refused ({code})")

        # The cluster keeps working, and the refusals were logged.
        r = subprocess.run([DOSSIER, "put", "-"], env=env, text=True,
                           capture_output=True,
                           input='{"kind":"contact","id":"c1",'
                                 '"subject_id":"s1","fields":'
                                 '{"first_name":"Ann"}}')
        check(r.returncode == 0, "a write still commits")
        for port in ports:
            r = subprocess.run([DOSSIER, "--target", f"127.0.0.1:{port}",
                                "get", "contact", "c1"], env=env, text=True,
                               capture_output=True)
            check(r.returncode == 0 and '"Ann"' in r.stdout,
                  f"node at port {port} reads it")
        text = open(c.logs[0]).read()
        check("refused" in text, "the node logged a refusal")
        check(all(n.poll() is None for n in c.nodes), "every node still runs")
    finally:
        for i in range(len(c.nodes)):
            rc = c.stop(i, timeout=20)
            check(rc == 0, f"a node stops cleanly (exit status {rc})")
            if rc != 0:
                print(f"--- node {i + 1} log (tail):")
                print("".join(open(c.logs[i]).readlines()[-30:]))
        c.close()

print(f"{pycluster.failures} failure(s)")
sys.exit(1 if pycluster.failures else 0)
