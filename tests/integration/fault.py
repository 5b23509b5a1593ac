#!/usr/bin/python3
"""Test-only: sets a node's fault switch (Peer.Fault) so that it drops all
traffic to and from the given nodes. Usage: fault.py HOST:PORT [ID...]
(no ids heals). The request is encoded by hand: one repeated uint64 field
(1, packed), which is all FaultRequest holds."""
import sys

import grpc


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


target, ids = sys.argv[1], [int(x) for x in sys.argv[2:]]
body = b"".join(varint(i) for i in ids)
payload = (b"\x0a" + varint(len(body)) + body) if ids else b""
channel = grpc.insecure_channel(target)
call = channel.unary_unary("/dossier.peer.v1.Peer/Fault",
                           request_serializer=None, response_deserializer=None)
call(payload, timeout=5)
