/* Talking to the other nodes: Raft messages as asynchronous gRPC calls
 * (Peer.Send, many messages per call, several calls in flight per peer),
 * client calls forwarded to the leader (Peer.Forward), and snapshots
 * streamed as the files of a checkpoint (Peer.InstallSnapshot).
 *
 * One completion-queue thread finishes the asynchronous calls; snapshot
 * transfers run on a thread each. A peer that does not answer gets
 * reported, so that the leader stops pushing entries it cannot deliver. */
#ifndef DOSSIER_NODE_PEER_H
#define DOSSIER_NODE_PEER_H

#include <stddef.h>
#include <stdint.h>

#include <dossier/dossier.h>

#include "peer.pb-c.h"
#include "raft.h"

#define PEER_CLUSTER_ID_BYTES 16
/* Calls in flight to one peer before further messages are dropped. */
#define PEER_MAX_INFLIGHT 128
/* Raft messages are packed into one call up to this many bytes (one
 * message may be larger: Raft caps an append at 1 MiB of entries). Nodes
 * refuse --max-message-bytes below 2 MiB so a call always fits. */
#define PEER_BATCH_BYTES (1u << 20)
/* Bytes of file per snapshot chunk. */
#define PEER_CHUNK_BYTES (1u << 20)

/* What the transport reports back (called on its threads). */
struct peer_events {
    void (*unreachable)(void *arg, uint64_t id);
    void (*snapshot_done)(void *arg, uint64_t id, int ok);
    void *arg;
};

/* Outcome of a forwarded call: the leader's code, message and encoded
 * reply (borrowed for the call). */
typedef void (*peer_forward_cb)(void *arg, int code, const char *message,
                                const uint8_t *reply, size_t len);

struct peer_client;

/* Makes every peer channel opened from now on mutual TLS: the other node's
 * certificate must verify against @ca_pem (NULL: the system's CAs) and
 * name the address dialled, and this node presents @cert_pem with
 * @key_pem (all PEM text, copied). The peer token is still sent on every
 * call. The TLS identity is the process's, like grpc_init(): call it once,
 * before the first peer_client_new() (cluster_start() makes the client),
 * and peer_tls_clear() after the last peer_client_free(). Without it,
 * peers talk plaintext. Errors: DOSSIER_INVALID_ARGUMENT (gRPC refused the
 * credentials). */
int peer_tls_set(const char *ca_pem, const char *cert_pem,
                 const char *key_pem, struct dossier_status *st);
void peer_tls_clear(void);

/* Replaces the certificate, key and CA of peer channels opened from now
 * on (SIGHUP; copied); then peer_client_renew_channels() reopens the
 * channels already made. Errors: DOSSIER_FAILED_PRECONDITION (peers talk
 * plaintext), DOSSIER_INVALID_ARGUMENT (gRPC refused them). */
int peer_tls_reload(const char *ca_pem, const char *cert_pem,
                    const char *key_pem, struct dossier_status *st);

/* Reopens every peer channel with the current credentials; calls in
 * flight finish on the old ones. */
void peer_client_renew_channels(struct peer_client *pc);

/* Channels replaced (a reload, a new address) and not destroyed yet: they
 * go once no call to another node and no snapshot transfer is in flight,
 * so this stays small however often the node reloads. */
size_t peer_client_retired(struct peer_client *pc);

/* @self_address (copied) is sent with every message batch, @peer_token
 * (copied; see auth.h) with every call. Errors: DOSSIER_NOMEM,
 * DOSSIER_INTERNAL (no thread). */
int peer_client_new(const uint8_t cluster_id[PEER_CLUSTER_ID_BYTES],
                    uint64_t self, const char *self_address,
                    const char *peer_token, const struct peer_events *ev,
                    struct peer_client **out, struct dossier_status *st);

/* Records @address for @id only if none is known yet. */
void peer_client_learn_address(struct peer_client *pc, uint64_t id,
                               const char *address);

/* Waits for calls in flight and transfers, then frees. */
void peer_client_free(struct peer_client *pc);

/* Sets (or changes) where node @id listens. */
void peer_client_set_address(struct peer_client *pc, uint64_t id,
                             const char *address);

/* Where @id listens, into @out ("" if unknown). */
void peer_client_address(struct peer_client *pc, uint64_t id, char *out,
                         size_t cap);

/* Sends @msgs (all to @to; borrowed: encoded before this returns). Never
 * blocks; a peer with too many calls in flight, or without an address,
 * loses the messages and is reported unreachable, as Raft expects of a
 * lossy network. */
void peer_client_send(struct peer_client *pc, uint64_t to,
                      const struct raft_msg *msgs, size_t n);

/* Forwards a client call to @to (the leader). Returns 0 and @cb runs once
 * later, or an error (DOSSIER_UNAVAILABLE: no address) and it never runs. */
int peer_client_forward(struct peer_client *pc, uint64_t to,
                        const char *method, const uint8_t *request,
                        size_t len, const char *purpose,
                        const uint8_t *request_id, const char *principal,
                        unsigned role, int64_t timeout_ms,
                        peer_forward_cb cb, void *arg);

/* Streams the checkpoint in @dir (taken: removed afterwards) to @to,
 * starting with @msg (borrowed; copied), on a thread of its own; reports
 * the outcome through snapshot_done. At most one transfer per peer: a
 * second one while the first runs is refused (reported failed). */
void peer_client_send_snapshot(struct peer_client *pc, uint64_t to,
                               const char *dir, const struct raft_msg *msg);

/* Changes the token presented on every call from now on (@peer_token
 * copied), when the master key version in use changed. */
void peer_client_set_token(struct peer_client *pc, const char *peer_token);

/* Asks node @to which master key versions it holds (Peer.KeyStatus),
 * waiting up to @timeout_ms: *@out (free with
 * dossier__peer__v1__key_status_response__free_unpacked). Blocks: never
 * call it from the Raft thread. Errors: DOSSIER_UNAVAILABLE (no address,
 * no answer, or a refusal; the message says which). */
int peer_client_key_status(struct peer_client *pc, uint64_t to,
                           int64_t timeout_ms,
                           Dossier__Peer__V1__KeyStatusResponse **out,
                           struct dossier_status *st);

/* Test switch: while set, every message to or from @id is dropped, as if
 * the network were cut (tests/integration partitions nodes with it). */
void peer_client_block(struct peer_client *pc, uint64_t id, int blocked);
int peer_client_blocked(struct peer_client *pc, uint64_t id);

#endif
