/* gRPC plumbing: the method table, one context per call, and the
 * completion-queue loop that decodes requests and hands them to handlers. */
#ifndef DOSSIER_NODE_SERVER_H
#define DOSSIER_NODE_SERVER_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include <dossier/dossier.h>

/* What handlers work with; all borrowed for the node's life. */
struct node {
    struct store *store;
    struct crypt *crypt;
    struct cluster *cluster;
};

/* One RPC in flight. A handler answers it exactly once, with call_reply()
 * or call_fail(), from any thread, now or later (e.g. once its write is
 * durable). The request stays valid until then. */
struct call;

typedef void (*api_handler_fn)(struct call *c, ProtobufCMessage *req);

/* Flags of a method in the table (server.c). */
enum api_flags {
    API_READ = 1 << 0,  /* reads records or schemas */
    API_WRITE = 1 << 1, /* submits a command */
    API_ADMIN = 1 << 2, /* changes the node's definitions */
};

struct node *call_node(struct call *c);

/* The purpose the caller named in the "dossier-purpose" metadata, or "".
 * Borrowed from @c. */
const char *call_purpose(const struct call *c);

/* Answers @c with @resp (borrowed; packed before this returns). */
void call_reply(struct call *c, const ProtobufCMessage *resp);

/* Answers @c with error @code and a printf-style message, which goes to the
 * caller and must never hold personal data. */
void call_fail(struct call *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void call_fail_status(struct call *c, const struct dossier_status *st);

struct server;

/* Binds @listen ("host:port"; port 0 for any) and starts serving @n
 * (borrowed). The bound address goes into @bound (@cap bytes).
 * Errors: DOSSIER_UNAVAILABLE (cannot bind), DOSSIER_NOMEM. */
int server_start(struct node *n, const char *listen, size_t max_message,
                 struct server **out, char *bound, size_t cap,
                 struct dossier_status *st);

/* Runs the completion-queue loop on the calling thread until the server has
 * stopped and every call in flight has been answered. Several threads may
 * run it at once; each returns when the queue is shut down. */
void server_run(struct server *s);

/* Asks the server to stop: no new calls, calls in flight finish (those
 * still running after a grace period are cancelled). Thread-safe; returns
 * at once. */
void server_stop(struct server *s);

/* Frees a server whose server_run() has returned. */
void server_free(struct server *s);

/* Allocator for request messages: wipes every block it frees, so decoded
 * personal values do not linger in freed heap memory. */
extern ProtobufCAllocator server_wiping_allocator;

#endif
