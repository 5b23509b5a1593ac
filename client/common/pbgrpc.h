/* Protobuf messages in and out of gRPC byte buffers, for the client
 * library and the node's peer client alike. */
#ifndef DOSSIER_COMMON_PBGRPC_H
#define DOSSIER_COMMON_PBGRPC_H

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>

/* @m packed into a new byte buffer (the caller destroys it). */
grpc_byte_buffer *pbgrpc_pack(const ProtobufCMessage *m);

/* The message of type @d in @bb (NULL: none), or NULL when @bb is absent
 * or does not decode; free with protobuf_c_message_free_unpacked. */
ProtobufCMessage *pbgrpc_unpack(grpc_byte_buffer *bb,
                                const ProtobufCMessageDescriptor *d);

#endif
