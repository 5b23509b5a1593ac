#!/usr/bin/python3
"""Bad bytes on the wire, sent by an independent gRPC client (Debian's
python3-grpcio), since libdossier only ever sends well-formed messages:
each gets a clear status, nothing is written, and the node keeps serving.

Usage: test_malformed.py DOSSIERD DOSSIER
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

import grpc

DOSSIERD, DOSSIER = sys.argv[1], sys.argv[2]
failures = 0


def check(cond, what):
    global failures
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        failures += 1


def raw_call(channel, method, payload, timeout=10):
    """Sends payload bytes as they are; returns (code, details, trailers)."""
    call = channel.unary_unary(method, request_serializer=None,
                               response_deserializer=None)
    try:
        # A purpose every node knows (built in): what is refused here must
        # be refused for the payload, not for a missing purpose.
        call(payload, timeout=timeout,
             metadata=[("dossier-purpose", "legal_claims")])
        return grpc.StatusCode.OK, "", {}
    except grpc.RpcError as e:
        return e.code(), e.details() or "", dict(e.trailing_metadata() or ())


def cli(*args):
    return subprocess.run([DOSSIER, *args], capture_output=True, text=True,
                          env=dict(os.environ, DOSSIER_TARGET=target))


with tempfile.TemporaryDirectory(prefix="dossier-malformed-") as work:
    key = os.path.join(work, "master.key")
    ready = os.path.join(work, "ready")
    subprocess.run([DOSSIER, "keygen", key], check=True,
                   stderr=subprocess.DEVNULL)
    log = open(os.path.join(work, "node.log"), "w")
    node = subprocess.Popen([DOSSIERD, "--data-dir", os.path.join(work, "d"),
                             "--key-file", key, "--listen", "127.0.0.1:0",
                             "--ready-file", ready], stderr=log)
    try:
        for _ in range(400):
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        target = open(ready).read().strip()
        channel = grpc.insecure_channel(
            target, options=[("grpc.max_send_message_length", 64 << 20)])

        seed = subprocess.run(
            [DOSSIER, "put", "-"], text=True, capture_output=True,
            env=dict(os.environ, DOSSIER_TARGET=target),
            input='{"kind":"contact","id":"c1","subject_id":"s1",'
                  '"fields":{"first_name":"Ann"}}')
        check(seed.returncode == 0, "a valid record is written first")

        cases = [
            ("garbage bytes", b"\xff\xff\xff\xff\xff"),
            ("a truncated length-delimited field", b"\x0a\x50\x0a\x07contact"),
            ("a wire type that does not exist", b"\x0f\x01"),
            ("a varint that never ends", b"\x10" + b"\xff" * 11),
        ]
        for what, payload in cases:
            code, details, trailers = raw_call(
                channel, "/dossier.v1.Records/Put", payload)
            check(code == grpc.StatusCode.INVALID_ARGUMENT,
                  f"{what}: INVALID_ARGUMENT (got {code})")
            check("malformed" in details, f"{what}: the message says so "
                  f"({details!r})")
            check(trailers.get("dossier-error") == "INVALID_ARGUMENT",
                  f"{what}: the dossier-error trailer names the code")

        code, details, _ = raw_call(channel, "/dossier.v1.Records/Put", b"")
        check(code == grpc.StatusCode.INVALID_ARGUMENT and
              "record is missing" in details,
              f"an empty Put says the record is missing ({details!r})")

        code, details, _ = raw_call(channel, "/dossier.v1.Records/Put",
                                    b"\x0a" + b"\x80\x80\x80\x03" +
                                    b"x" * (6 << 20))
        check(code == grpc.StatusCode.RESOURCE_EXHAUSTED,
              f"an oversized message: RESOURCE_EXHAUSTED (got {code})")

        # The CRM writes: bad bytes and empty requests are refused, naming
        # what is wrong, and write nothing.
        for method in ("/dossier.v1.Merges/Merge", "/dossier.v1.Merges/Undo",
                       "/dossier.v1.Merges/Confirm",
                       "/dossier.v1.DuplicateRules/Define",
                       "/dossier.v1.Segments/Define"):
            code, details, _ = raw_call(channel, method, b"\xff\xff\xff\xff")
            check(code == grpc.StatusCode.INVALID_ARGUMENT and
                  "malformed" in details,
                  f"{method}, garbage bytes: INVALID_ARGUMENT ({details!r})")
            code, details, _ = raw_call(channel, method, b"")
            check(code == grpc.StatusCode.INVALID_ARGUMENT and details != "",
                  f"{method}, an empty request: INVALID_ARGUMENT saying why "
                  f"({details!r})")

        code, _, _ = raw_call(channel, "/dossier.v1.Records/Frobnicate", b"")
        check(code == grpc.StatusCode.UNIMPLEMENTED,
              f"an unknown method: UNIMPLEMENTED (got {code})")

        r = cli("scan", "contact", "--all")
        check(r.returncode == 0 and len(r.stdout.splitlines()) == 1,
              "the node still serves and holds only the valid record")
        r = cli("get", "contact", "c1")
        check(r.returncode == 0 and '"Ann"' in r.stdout,
              "the valid record reads back")
        check(node.poll() is None, "the node is still running")
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            rc = node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
            rc = node.wait()
        check(rc == 0, "the node stops cleanly")
        log.close()

print(f"{failures} failure(s)")
sys.exit(1 if failures else 0)
