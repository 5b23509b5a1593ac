#!/usr/bin/python3
"""Test-only: sets a node's fault switch (Peer.Fault) so that it drops all
traffic to and from the given nodes. Usage: fault.py KEY_FILE HOST:PORT
[ID...] (no ids heals). The call carries the peer token, derived from the
cluster's master key as node/auth.h says. The request is encoded by hand:
one repeated uint64 field (1, packed), which is all FaultRequest holds."""
import hashlib
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


def peer_token(key_file):
    """The token peer calls carry (node/auth.h): BLAKE2b-256 keyed with the
    master key over "dossier.peer-token.v1", in hex."""
    for line in open(key_file):
        parts = line.split()
        if len(parts) == 3 and parts[0] == "dossier-master-key":
            kek = bytes.fromhex(parts[2])
    return hashlib.blake2b(b"dossier.peer-token.v1", key=kek,
                           digest_size=32).hexdigest()


def main():
    key_file, target = sys.argv[1], sys.argv[2]
    ids = [int(x) for x in sys.argv[3:]]
    body = b"".join(varint(i) for i in ids)
    payload = (b"\x0a" + varint(len(body)) + body) if ids else b""
    channel = grpc.insecure_channel(target)
    call = channel.unary_unary("/dossier.peer.v1.Peer/Fault",
                               request_serializer=None,
                               response_deserializer=None)
    call(payload, timeout=5,
         metadata=[("authorization", "Bearer " + peer_token(key_file))])


if __name__ == "__main__":
    main()
