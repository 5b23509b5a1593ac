/* gRPC plumbing: the method table, one context per call, and the
 * completion-queue loop that decodes requests, applies each method's
 * policy (keys ready, leader or forward, read barrier) and hands them to
 * handlers. */
#ifndef DOSSIER_NODE_SERVER_H
#define DOSSIER_NODE_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>

#include <dossier/dossier.h>

#include "policy.h"
#include "store.pb-c.h"

struct store_result;

/* What handlers work with; all borrowed for the node's life. */
struct node {
    struct store *store;
    struct crypt *crypt;
    struct cluster *cluster;
    uint64_t id;
    int fault_injection; /* tests only: Peer.Fault is answered */
    unsigned submit_pause_ms; /* tests only: call_submit() pauses after
                                 the hand-off (--submit-pause-ms) */
    struct auth *auth;   /* principals (--auth-file); NULL: no client
                            authentication */
    int require_auth;    /* --require-auth: always authenticate */
    int has_bootstrap;   /* a bootstrap token was given (bootstrap.h) */
    uint8_t bootstrap_hash[32]; /* its SHA-256 */
    char peer_token[65]; /* what peer calls must present (auth.h) */
    struct audit_sink *audit; /* reads and refusals go here */
    struct health *health;    /* what the health service reports */
    struct node_metrics *metrics; /* NULL: no metrics */
    const char *data_dir;
    const char *backup_dir;   /* "": backups are off */
    const char *cluster_name;
    struct keys *keys;        /* master key rotation (keys.h) */
};

/* One RPC in flight. A handler answers it exactly once, with call_reply()
 * or call_fail(), from any thread, now or later (e.g. once its write is
 * applied). The request stays valid until then. */
struct call;

typedef void (*api_handler_fn)(struct call *c, ProtobufCMessage *req);

/* Flags of a method in the table (server.c): the policy applied before
 * its handler runs. */
enum api_flags {
    API_READ = 1 << 0,   /* reads replicated state: linearizable by default
                            (a ReadIndex barrier), or serializable */
    API_WRITE = 1 << 1,  /* submits a command: runs on the leader; a
                            follower forwards the call there */
    API_ADMIN = 1 << 2,  /* changes definitions or membership */
    API_DATA = 1 << 3,   /* needs the cluster's keys */
    API_PEER = 1 << 4,   /* node-to-node traffic */
    API_LOCAL = 1 << 5,  /* answered by this node as it is, no barrier */
    API_STREAM_IN = 1 << 6, /* client streaming: see call_recv() */
    API_PURPOSE = 1 << 7, /* names a purpose the principal was granted */
    API_LOG_OK = 1 << 8,  /* a success is audited too (admin actions) */
    API_PUBLIC = 1 << 9,  /* no credentials needed, never audited: the
                             health service, for probes */
    API_FORWARDED = 1 << 10, /* taken only inside Peer.Forward from a
                                member (checked there), never called
                                directly */
};

struct node *call_node(struct call *c);

/* The purpose the caller named in the "dossier-purpose" metadata, or "".
 * Borrowed from @c. */
const char *call_purpose(const struct call *c);

/* The definition of the call's purpose, for API_PURPOSE methods (checked
 * before the handler runs); NULL for others. Borrowed from @c. */
const struct policy_purpose *call_purpose_def(const struct call *c);

/* The decoded request of @c (forwarded or not), alive until answered. */
ProtobufCMessage *call_request(const struct call *c);

/* The authenticated principal's name, or "" (authentication off). */
const char *call_principal(const struct call *c);

/* Fills what every command of @c carries: time, request id, principal
 * and purpose (borrowed from @c). */
void call_command_init(struct call *c, Dossier__Store__V1__Command *cmd);

/* Submits the packed command @data (taken) for @c: cluster_submit(), and
 * the command's own audit entry stands for the call's. On 0, @c belongs to
 * @cb from the moment it is queued: the Raft loop may answer it and
 * another thread free it before call_submit() returns, so neither it nor
 * the caller touches @c (or @arg, or anything the call owns) again. On an
 * error nothing was queued and @c is still the caller's to answer. */
int call_submit(struct call *c, uint8_t *data, size_t len,
                void (*cb)(void *arg, const struct store_result *res),
                void *arg);

/* Audits a successful read of @c that showed personal data: the subject
 * @sp (NULL: none named) and the @n records @rids (16 bytes each). */
void call_audit_read(struct call *c, const uint8_t *sp, const uint8_t *rids,
                     size_t n);

/* The request id the caller sent ("dossier-request-id", 32 hex digits),
 * or NULL. 16 bytes, borrowed from @c. */
const uint8_t *call_request_id(const struct call *c);

/* Fills @out (@n bytes, at most 64) with bytes drawn from the call's
 * request id (a hash of it, so a retry of the call draws the same ones
 * whatever the id's layout), or random ones for a call without one. */
void call_request_derive(const struct call *c, uint8_t *out, size_t n);

/* Milliseconds left before the caller's deadline (at least 1). */
int64_t call_time_left_ms(const struct call *c);

/* 1 when @c asked for a serializable read: it ran on this node's state
 * without a ReadIndex barrier, so that state may lag the cluster's. */
int call_serializable(const struct call *c);

/* Answers @c with @resp (borrowed; packed before this returns). */
void call_reply(struct call *c, const ProtobufCMessage *resp);

/* Answers @c with error @code and a printf-style message, which goes to the
 * caller and must never hold personal data. */
void call_fail(struct call *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void call_fail_status(struct call *c, const struct dossier_status *st);

/* Client streaming: receives the next message of @c and calls @cb with it
 * (NULL at the end of the stream or when the call broke; the buffer is
 * the callee's to destroy) on a completion-queue thread. */
typedef void (*call_recv_cb)(struct call *c, grpc_byte_buffer *msg);
void call_recv(struct call *c, call_recv_cb cb);

/* Server streaming. call_stream_open() makes @c a stream: @closed runs
 * once, on a completion-queue thread, when the call is over for the
 * client (it cancelled or went away, or the final status was sent); @c
 * stays valid until @closed has returned. call_stream_send() sends @msg
 * (packed before it returns) as the next message; @sent runs when it has
 * left (@ok 0: the call broke). One send at a time. The stream ends with
 * call_stream_end() or call_fail(). Both return 0, or -1 when gRPC refused
 * (the callback then never runs). */
typedef void (*call_closed_cb)(struct call *c);
typedef void (*call_sent_cb)(struct call *c, int ok);
int call_stream_open(struct call *c, call_closed_cb closed);
int call_stream_send(struct call *c, const ProtobufCMessage *msg,
                     call_sent_cb sent);
void call_stream_end(struct call *c);

/* Per-call storage for a streaming handler's state. */
void call_set_user(struct call *c, void *user);
void *call_user(const struct call *c);

struct server;

/* 1 if @name is "" (the node) or a client service this node serves
 * ("dossier.v1.Records", ...): what the health service answers for. */
int server_has_service(const char *name);

/* Whether a TLS port asks callers for a certificate. Every certificate it
 * asks for must verify against the CA; the CN of a verified one can name
 * a certificate principal (auth.h). */
enum server_client_cert {
    SERVER_CLIENT_CERT_NONE,    /* not asked for */
    SERVER_CLIENT_CERT_REQUEST, /* optional; one presented must verify */
    SERVER_CLIENT_CERT_REQUIRE, /* the handshake fails without one */
};

/* TLS settings of the gRPC port: PEM text (not paths), borrowed for the
 * call (gRPC copies it). */
struct server_tls {
    const char *cert_pem;  /* NULL: plaintext; else with key_pem */
    const char *key_pem;
    const char *ca_pem;    /* NULL: client certificates are not asked */
    enum server_client_cert client_cert;
};

/* Binds @listen ("host:port"; port 0 for any) for @n (borrowed), without
 * serving yet, speaking TLS only when @tls (may be NULL) has a cert_pem;
 * the bound address goes into @bound (@cap bytes).
 * Errors: DOSSIER_UNAVAILABLE (cannot bind, or gRPC refused the TLS
 * certificate, key or CA), DOSSIER_NOMEM. */
int server_bind(struct node *n, const char *listen, size_t max_message,
                const struct server_tls *tls, struct server **out,
                char *bound, size_t cap, struct dossier_status *st);

/* Replaces the port's TLS certificate, key and CA by @tls's (PEM text,
 * copied), for connections made from now on (SIGHUP); connections made
 * before keep theirs. The files are checked by gRPC first: a certificate
 * it refuses changes nothing. Errors: DOSSIER_FAILED_PRECONDITION (the
 * port is plaintext, or the client certificate policy would change: a
 * restart does that), DOSSIER_INVALID_ARGUMENT (refused). */
int server_tls_reload(struct server *s, const struct server_tls *tls,
                      struct dossier_status *st);

/* Starts taking calls; @n must be complete by now. */
void server_start(struct server *s);

/* Runs the completion-queue loop on the calling thread until the server has
 * stopped and every call in flight has been answered. Several threads may
 * run it at once; each returns when the queue is shut down. */
void server_run(struct server *s);

/* Asks the server to stop: no new calls, calls in flight finish (those
 * still running after a grace period are cancelled). Thread-safe; returns
 * at once. */
void server_stop(struct server *s);

/* Calls received and not yet answered. */
long server_in_flight(struct server *s);

/* 1 once a stopping server has answered every call it took and gRPC will
 * hand it no more. */
int server_idle(struct server *s);

/* Ends what a stopping server still holds: calls gRPC received but no
 * request took, and calls not yet answered. Nothing once gRPC reported
 * the shutdown done. */
void server_end_untaken(struct server *s);

/* Frees a server whose server_run() has returned. */
void server_free(struct server *s);

/* Allocator for request messages: wipes every block it frees, so decoded
 * personal values do not linger in freed heap memory. */
extern ProtobufCAllocator server_wiping_allocator;

#endif
