/* The client side of node-to-node traffic: Raft messages, forwarded calls,
 * snapshot streams. */
#include "peer.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <sodium.h>

#include "errors.h"
#include "fileutil.h"
#include "log.h"
#include "pbgrpc.h"
#include "peer.pb-c.h"
#include "raftio.h"
#include "store.h"

#define MAX_PEERS (RAFT_MAX_NODES * 2)
#define SEND_TIMEOUT_MS 5000
#define SNAPSHOT_TIMEOUT_MS (30 * 60 * 1000)

struct peer {
    uint64_t id;
    char address[256];
    grpc_channel *ch;
    void *m_send, *m_forward, *m_snapshot;
    int inflight;
    int snapshot_running;
    int blocked;
};

struct peer_client {
    uint8_t cid[PEER_CLUSTER_ID_BYTES];
    uint64_t self;
    char self_address[256];
    /* "Bearer <peer token>", sent as `authorization` with every call; its
     * value slice is replaced (under lock) when the token changes. */
    grpc_metadata auth_md;
    struct peer_events ev;
    pthread_mutex_t lock;
    pthread_cond_t idle;
    struct peer peers[MAX_PEERS];
    size_t n;
    grpc_completion_queue *cq;
    pthread_t cq_thread;
    int calls;     /* asynchronous calls in flight */
    int transfers; /* snapshot threads running */
    /* Channels replaced (a new address, a new certificate), destroyed
     * once no call or snapshot transfer is in flight (reap_retired): a
     * snapshot thread may hold one it has not made its call on yet. */
    grpc_channel **old;
    size_t n_old, cap_old;
};

/* Takes the retired channels when nothing can still use one (no call and
 * no transfer in flight): into *@out (*@n of them) for the caller to
 * destroy outside the lock. pc->lock held. */
static void reap_retired(struct peer_client *pc, grpc_channel ***out,
                         size_t *n)
{
    *out = NULL;
    *n = 0;
    if (pc->calls > 0 || pc->transfers > 0 || pc->n_old == 0)
        return;
    *out = pc->old;
    *n = pc->n_old;
    pc->old = NULL;
    pc->n_old = pc->cap_old = 0;
}

static void destroy_channels(grpc_channel **chs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        grpc_channel_destroy(chs[i]);
    free(chs);
}

/* Credentials of every peer channel; NULL: plaintext. Set by
 * peer_tls_set() before any peer client exists, replaced by
 * peer_tls_reload(), read under creds_mu, and shared by all channels
 * (each takes its own reference). */
static grpc_channel_credentials *peer_creds;
static pthread_mutex_t creds_mu = PTHREAD_MUTEX_INITIALIZER;

/* 1 when peer channels speak TLS. */
static int peer_tls_on(void)
{
    int on;
    pthread_mutex_lock(&creds_mu);
    on = peer_creds != NULL;
    pthread_mutex_unlock(&creds_mu);
    return on;
}

enum pcall_kind { PC_SEND, PC_FORWARD };

struct pcall {
    enum pcall_kind kind;
    struct peer_client *pc;
    uint64_t to;
    grpc_call *call;
    grpc_op ops[6];
    grpc_metadata_array init_md, trail_md;
    grpc_byte_buffer *send, *recv;
    grpc_status_code status;
    grpc_slice details;
    peer_forward_cb cb;
    void *arg;
};

static struct peer *find(struct peer_client *pc, uint64_t id)
{
    for (size_t i = 0; i < pc->n; i++)
        if (pc->peers[i].id == id)
            return &pc->peers[i];
    return NULL;
}

static gpr_timespec deadline_in(int64_t ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                        gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* ------------------------------------------------------------------ */
/* Asynchronous unary calls */

static void pcall_free(struct pcall *p)
{
    if (p->call)
        grpc_call_unref(p->call);
    if (p->send)
        grpc_byte_buffer_destroy(p->send);
    if (p->recv)
        grpc_byte_buffer_destroy(p->recv);
    grpc_metadata_array_destroy(&p->init_md);
    grpc_metadata_array_destroy(&p->trail_md);
    grpc_slice_unref(p->details);
    free(p);
}

static struct pcall *pcall_new(enum pcall_kind kind, struct peer_client *pc,
                               uint64_t to)
{
    struct pcall *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->kind = kind;
    p->pc = pc;
    p->to = to;
    p->details = grpc_empty_slice();
    grpc_metadata_array_init(&p->init_md);
    grpc_metadata_array_init(&p->trail_md);
    return p;
}

/* Starts @p on @ch with method @m; called with pc->lock held. */
static int pcall_start(struct peer_client *pc, struct pcall *p,
                       grpc_channel *ch, void *m, int64_t timeout_ms)
{
    grpc_op *ops = p->ops;
    p->call = grpc_channel_create_registered_call(
        ch, NULL, GRPC_PROPAGATE_DEFAULTS, pc->cq, m, deadline_in(timeout_ms),
        NULL);
    memset(p->ops, 0, sizeof(p->ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = 1;
    ops[0].data.send_initial_metadata.metadata = &pc->auth_md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = p->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &p->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &p->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &p->trail_md;
    ops[5].data.recv_status_on_client.status = &p->status;
    ops[5].data.recv_status_on_client.status_details = &p->details;
    if (grpc_call_start_batch(p->call, ops, 6, p, NULL) != GRPC_CALL_OK)
        return -1;
    pc->calls++;
    return 0;
}

static void forward_finish(struct pcall *p)
{
    Dossier__Peer__V1__ForwardResponse *r = NULL;
    if (p->status == GRPC_STATUS_OK)
        r = (Dossier__Peer__V1__ForwardResponse *)pbgrpc_unpack(
            p->recv, &dossier__peer__v1__forward_response__descriptor);
    if (r) {
        p->cb(p->arg, (int)r->code, r->message, r->response.data,
              r->response.len);
        dossier__peer__v1__forward_response__free_unpacked(r, NULL);
    } else {
        char *text = grpc_slice_to_c_string(p->details);
        char msg[512];
        snprintf(msg, sizeof(msg), "cannot reach the leader (node %" PRIu64
                 "): %s", p->to, text[0] ? text : "no answer");
        gpr_free(text);
        p->cb(p->arg, DOSSIER_UNAVAILABLE, msg, NULL, 0);
    }
}

static void *cq_main(void *arg)
{
    struct peer_client *pc = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            pc->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        struct pcall *p;
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        p = ev.tag;
        if (p->kind == PC_FORWARD) {
            forward_finish(p);
        } else if (p->status != GRPC_STATUS_OK && pc->ev.unreachable) {
            pc->ev.unreachable(pc->ev.arg, p->to);
        }
        grpc_channel **gone;
        size_t n_gone;
        pthread_mutex_lock(&pc->lock);
        {
            struct peer *peer = find(pc, p->to);
            if (peer && p->kind == PC_SEND)
                peer->inflight--;
        }
        if (--pc->calls == 0)
            pthread_cond_broadcast(&pc->idle);
        reap_retired(pc, &gone, &n_gone);
        pthread_mutex_unlock(&pc->lock);
        pcall_free(p);
        destroy_channels(gone, n_gone);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */

int peer_tls_set(const char *ca_pem, const char *cert_pem,
                 const char *key_pem, struct dossier_status *st)
{
    grpc_ssl_pem_key_cert_pair pair = {key_pem, cert_pem};

    assert(!peer_creds);
    /* Nodes are dialled at the address they advertise, and gRPC checks it
     * against the certificate's SANs: no target name override, so a
     * certificate for another name is refused. */
    peer_creds = grpc_ssl_credentials_create(ca_pem, &pair, NULL, NULL);
    if (!peer_creds)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "gRPC refused the TLS certificate and key for "
                       "calls to other nodes");
    return 0;
}

int peer_tls_reload(const char *ca_pem, const char *cert_pem,
                    const char *key_pem, struct dossier_status *st)
{
    grpc_ssl_pem_key_cert_pair pair = {key_pem, cert_pem};
    grpc_channel_credentials *fresh, *old;

    if (!peer_tls_on())
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "peer calls are plaintext; TLS is turned on only by a "
                       "restart");
    fresh = grpc_ssl_credentials_create(ca_pem, &pair, NULL, NULL);
    if (!fresh)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "gRPC refused the TLS certificate and key for calls "
                       "to other nodes");
    pthread_mutex_lock(&creds_mu);
    old = peer_creds;
    peer_creds = fresh;
    pthread_mutex_unlock(&creds_mu);
    /* Channels made with the old ones hold their own reference. */
    grpc_channel_credentials_release(old);
    return err_ok(st);
}

void peer_tls_clear(void)
{
    if (peer_creds)
        grpc_channel_credentials_release(peer_creds);
    peer_creds = NULL;
}

static grpc_slice bearer_slice(const char *token)
{
    char bearer[80];
    grpc_slice sl;
    snprintf(bearer, sizeof(bearer), "Bearer %s", token ? token : "");
    sl = grpc_slice_from_copied_string(bearer);
    sodium_memzero(bearer, sizeof(bearer));
    return sl;
}

void peer_client_set_token(struct peer_client *pc, const char *peer_token)
{
    grpc_slice old, fresh = bearer_slice(peer_token);
    pthread_mutex_lock(&pc->lock);
    old = pc->auth_md.value;
    pc->auth_md.value = fresh;
    pthread_mutex_unlock(&pc->lock);
    /* Calls already started hold their own reference. */
    grpc_slice_unref(old);
}

int peer_client_new(const uint8_t cluster_id[PEER_CLUSTER_ID_BYTES],
                    uint64_t self, const char *self_address,
                    const char *peer_token, const struct peer_events *ev,
                    struct peer_client **out, struct dossier_status *st)
{
    struct peer_client *pc = calloc(1, sizeof(*pc));
    *out = NULL;
    if (!pc)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    memcpy(pc->cid, cluster_id, PEER_CLUSTER_ID_BYTES);
    pc->self = self;
    snprintf(pc->self_address, sizeof(pc->self_address), "%s",
             self_address ? self_address : "");
    pc->auth_md.key = grpc_slice_from_static_string("authorization");
    pc->auth_md.value = bearer_slice(peer_token);
    pc->ev = *ev;
    pthread_mutex_init(&pc->lock, NULL);
    pthread_cond_init(&pc->idle, NULL);
    grpc_init();
    pc->cq = grpc_completion_queue_create_for_next(NULL);
    if (pthread_create(&pc->cq_thread, NULL, cq_main, pc) != 0) {
        grpc_completion_queue_shutdown(pc->cq);
        grpc_completion_queue_destroy(pc->cq);
        grpc_shutdown();
        free(pc);
        return err_set(st, DOSSIER_INTERNAL, "cannot start the peer thread");
    }
    *out = pc;
    return err_ok(st);
}

void peer_client_free(struct peer_client *pc)
{
    if (!pc)
        return;
    pthread_mutex_lock(&pc->lock);
    while (pc->calls > 0 || pc->transfers > 0)
        pthread_cond_wait(&pc->idle, &pc->lock);
    pthread_mutex_unlock(&pc->lock);
    grpc_completion_queue_shutdown(pc->cq);
    pthread_join(pc->cq_thread, NULL);
    grpc_completion_queue_destroy(pc->cq);
    for (size_t i = 0; i < pc->n; i++)
        if (pc->peers[i].ch)
            grpc_channel_destroy(pc->peers[i].ch);
    for (size_t i = 0; i < pc->n_old; i++)
        grpc_channel_destroy(pc->old[i]);
    free(pc->old);
    grpc_slice_unref(pc->auth_md.value);
    pthread_mutex_destroy(&pc->lock);
    pthread_cond_destroy(&pc->idle);
    free(pc);
    grpc_shutdown();
}

/* Retires @ch: destroyed once nothing can use it (reap_retired), at once
 * when nothing is in flight; pc->lock held. */
static void retire_channel(struct peer_client *pc, grpc_channel *ch)
{
    if (pc->calls == 0 && pc->transfers == 0 && pc->n_old == 0) {
        grpc_channel_destroy(ch);
        return;
    }
    if (pc->n_old == pc->cap_old) {
        size_t cap = pc->cap_old ? 2 * pc->cap_old : 16;
        grpc_channel **n = realloc(pc->old, cap * sizeof(*n));
        if (!n) {
            /* Calls hold the channel themselves; only a snapshot thread
             * that has not started its call yet could miss it. */
            grpc_channel_destroy(ch);
            return;
        }
        pc->old = n;
        pc->cap_old = cap;
    }
    pc->old[pc->n_old++] = ch;
}

/* (Re)makes @p's channel to @p->address with the current credentials;
 * pc->lock held. */
static void open_channel(struct peer_client *pc, struct peer *p)
{
    grpc_channel_credentials *creds;
    /* gRPC's minimal filter stack, as libdossier's channels (client.c):
     * less CPU per AppendEntries and forwarded write. It drops the
     * deadline filter, so deadlines are turned back on; the replies of
     * other nodes (small acknowledgements) need no size filter. A node
     * that was down is dialled again within about a second of its return:
     * gRPC's own pauses grow to 120 s between attempts, and it resolves
     * the address again only every 5 s (seen with GRPC_TRACE=subchannel),
     * so a node back from a 5-minute outage heard no leader for 16.6 s. */
    grpc_arg args[4] = {
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MINIMAL_STACK,
         .value.integer = 1},
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_ENABLE_DEADLINE_CHECKS,
         .value.integer = 1},
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
         .value.integer = 1000},
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS,
         .value.integer = 1000},
    };
    grpc_channel_args chargs = {4, args};
    if (p->ch)
        retire_channel(pc, p->ch);
    pthread_mutex_lock(&creds_mu);
    creds = peer_creds ? peer_creds : grpc_insecure_credentials_create();
    p->ch = grpc_channel_create(p->address, creds, &chargs);
    if (creds != peer_creds)
        grpc_channel_credentials_release(creds);
    pthread_mutex_unlock(&creds_mu);
    p->m_send = grpc_channel_register_call(p->ch, "/dossier.peer.v1.Peer/Send",
                                           NULL, NULL);
    p->m_forward = grpc_channel_register_call(
        p->ch, "/dossier.peer.v1.Peer/Forward", NULL, NULL);
    p->m_snapshot = grpc_channel_register_call(
        p->ch, "/dossier.peer.v1.Peer/InstallSnapshot", NULL, NULL);
}

size_t peer_client_retired(struct peer_client *pc)
{
    size_t n;
    pthread_mutex_lock(&pc->lock);
    n = pc->n_old;
    pthread_mutex_unlock(&pc->lock);
    return n;
}

void peer_client_renew_channels(struct peer_client *pc)
{
    pthread_mutex_lock(&pc->lock);
    for (size_t i = 0; i < pc->n; i++)
        if (pc->peers[i].ch)
            open_channel(pc, &pc->peers[i]);
    pthread_mutex_unlock(&pc->lock);
}

void peer_client_set_address(struct peer_client *pc, uint64_t id,
                             const char *address)
{
    struct peer *p;

    if (id == 0 || id == pc->self || !address || !address[0])
        return;
    pthread_mutex_lock(&pc->lock);
    p = find(pc, id);
    if (!p) {
        if (pc->n == MAX_PEERS) {
            pthread_mutex_unlock(&pc->lock);
            return;
        }
        p = &pc->peers[pc->n++];
        memset(p, 0, sizeof(*p));
        p->id = id;
    }
    if (strcmp(p->address, address) != 0) {
        snprintf(p->address, sizeof(p->address), "%s", address);
        open_channel(pc, p);
    }
    pthread_mutex_unlock(&pc->lock);
}

void peer_client_learn_address(struct peer_client *pc, uint64_t id,
                               const char *address)
{
    char known[256];
    peer_client_address(pc, id, known, sizeof(known));
    if (!known[0])
        peer_client_set_address(pc, id, address);
}

void peer_client_address(struct peer_client *pc, uint64_t id, char *out,
                         size_t cap)
{
    struct peer *p;
    pthread_mutex_lock(&pc->lock);
    p = find(pc, id);
    snprintf(out, cap, "%s", p ? p->address : "");
    pthread_mutex_unlock(&pc->lock);
}

void peer_client_block(struct peer_client *pc, uint64_t id, int blocked)
{
    struct peer *p;
    pthread_mutex_lock(&pc->lock);
    p = find(pc, id);
    if (p)
        p->blocked = blocked;
    pthread_mutex_unlock(&pc->lock);
}

int peer_client_blocked(struct peer_client *pc, uint64_t id)
{
    struct peer *p;
    int b;
    pthread_mutex_lock(&pc->lock);
    p = find(pc, id);
    b = p ? p->blocked : 0;
    pthread_mutex_unlock(&pc->lock);
    return b;
}

void peer_client_send(struct peer_client *pc, uint64_t to,
                      const struct raft_msg *msgs, size_t n)
{
    Dossier__Peer__V1__MessageBatch batch =
        DOSSIER__PEER__V1__MESSAGE_BATCH__INIT;
    Dossier__Peer__V1__RaftMessage *ptrs[64];
    struct raftio_msg_pb pbs[64];
    struct pcall *call;
    struct peer *p;
    size_t done = 0;

    while (done < n) {
        size_t k = n - done < 64 ? n - done : 64, bytes = 0;
        int failed = 0;
        for (size_t i = 0; i < k; i++) {
            size_t sz;
            if (raftio_msg_to_pb(&msgs[done + i], &pbs[i]) != 0) {
                for (size_t j = 0; j < i; j++)
                    raftio_msg_pb_release(&pbs[j]);
                return; /* out of memory: Raft treats it as a loss */
            }
            /* A call stays well under the receiver's message limit: the
             * rest goes in the next call. */
            sz = protobuf_c_message_get_packed_size(&pbs[i].msg.base);
            if (i > 0 && bytes + sz > PEER_BATCH_BYTES) {
                raftio_msg_pb_release(&pbs[i]);
                k = i;
                break;
            }
            bytes += sz;
            ptrs[i] = &pbs[i].msg;
        }
        batch.cluster_id = (ProtobufCBinaryData){PEER_CLUSTER_ID_BYTES,
                                                 pc->cid};
        batch.from = pc->self;
        batch.from_address = pc->self_address;
        batch.n_messages = k;
        batch.messages = ptrs;
        call = pcall_new(PC_SEND, pc, to);
        if (call)
            call->send = pbgrpc_pack(&batch.base);
        for (size_t i = 0; i < k; i++)
            raftio_msg_pb_release(&pbs[i]);
        done += k;
        if (!call)
            return;
        pthread_mutex_lock(&pc->lock);
        p = find(pc, to);
        if (!p || !p->ch || p->blocked || p->inflight >= PEER_MAX_INFLIGHT) {
            failed = 1;
        } else if (pcall_start(pc, call, p->ch, p->m_send, SEND_TIMEOUT_MS) !=
                   0) {
            failed = 1;
        } else {
            p->inflight++;
            call = NULL;
        }
        pthread_mutex_unlock(&pc->lock);
        if (failed) {
            if (call)
                pcall_free(call);
            if (pc->ev.unreachable)
                pc->ev.unreachable(pc->ev.arg, to);
            return;
        }
    }
}

int peer_client_forward(struct peer_client *pc, uint64_t to,
                        const char *method, const uint8_t *request,
                        size_t len, const char *purpose,
                        const uint8_t *request_id, const char *principal,
                        unsigned role, int64_t timeout_ms,
                        peer_forward_cb cb, void *arg)
{
    Dossier__Peer__V1__ForwardRequest req =
        DOSSIER__PEER__V1__FORWARD_REQUEST__INIT;
    struct pcall *call = pcall_new(PC_FORWARD, pc, to);
    struct peer *p;
    int rc = 0;

    if (!call)
        return DOSSIER_NOMEM;
    req.cluster_id = (ProtobufCBinaryData){PEER_CLUSTER_ID_BYTES, pc->cid};
    req.from = pc->self;
    req.method = (char *)method;
    req.request = (ProtobufCBinaryData){len, (uint8_t *)request};
    req.purpose = (char *)(purpose ? purpose : "");
    req.principal = (char *)(principal ? principal : "");
    req.role = role;
    if (request_id)
        req.request_id = (ProtobufCBinaryData){16, (uint8_t *)request_id};
    call->cb = cb;
    call->arg = arg;
    call->send = pbgrpc_pack(&req.base);
    pthread_mutex_lock(&pc->lock);
    p = find(pc, to);
    if (!p || !p->ch || p->blocked ||
        pcall_start(pc, call, p->ch, p->m_forward, timeout_ms) != 0)
        rc = DOSSIER_UNAVAILABLE;
    pthread_mutex_unlock(&pc->lock);
    if (rc)
        pcall_free(call);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Snapshot transfers */

struct transfer {
    struct peer_client *pc;
    uint64_t to;
    char dir[4096];
    struct raft_msg msg;
    grpc_channel *ch; /* borrowed: a retired channel lives until no transfer
                         runs (reap_retired) */
    void *method;
};

static int send_one(grpc_call *call, grpc_completion_queue *cq,
                    const Dossier__Peer__V1__SnapshotChunk *chunk)
{
    grpc_op op;
    grpc_byte_buffer *bb = pbgrpc_pack(&chunk->base);
    grpc_event ev;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    if (grpc_call_start_batch(call, &op, 1, &op, NULL) != GRPC_CALL_OK) {
        grpc_byte_buffer_destroy(bb);
        return -1;
    }
    ev = grpc_completion_queue_pluck(cq, &op, gpr_inf_future(GPR_CLOCK_REALTIME),
                                     NULL);
    grpc_byte_buffer_destroy(bb);
    return ev.success ? 0 : -1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int stream_files(struct transfer *t, grpc_call *call,
                        grpc_completion_queue *cq)
{
    Dossier__Peer__V1__SnapshotChunk chunk =
        DOSSIER__PEER__V1__SNAPSHOT_CHUNK__INIT;
    struct raftio_msg_pb mpb;
    char *names[4096];
    size_t n = 0;
    uint8_t *buf = malloc(PEER_CHUNK_BYTES);
    DIR *d = opendir(t->dir);
    struct dirent *e;
    int rc = 0, first = 1;

    if (!buf || !d || raftio_msg_to_pb(&t->msg, &mpb) != 0) {
        free(buf);
        if (d)
            closedir(d);
        return -1;
    }
    while ((e = readdir(d)) && n < 4096)
        if (e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp_names);
    chunk.cluster_id = (ProtobufCBinaryData){PEER_CLUSTER_ID_BYTES,
                                             t->pc->cid};
    chunk.from = t->pc->self;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[8192];
        int fd;
        uint64_t off = 0;
        snprintf(path, sizeof(path), "%s/%s", t->dir, names[i]);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = -1;
            break;
        }
        for (;;) {
            ssize_t got = read(fd, buf, PEER_CHUNK_BYTES);
            if (got < 0) {
                rc = -1;
                break;
            }
            chunk.message = first ? &mpb.msg : NULL;
            first = 0;
            chunk.file = names[i];
            chunk.offset = off;
            chunk.data = (ProtobufCBinaryData){(size_t)got, buf};
            if (send_one(call, cq, &chunk) != 0) {
                rc = -1;
                break;
            }
            off += (uint64_t)got;
            if (got == 0 || got < (ssize_t)PEER_CHUNK_BYTES)
                break;
        }
        close(fd);
    }
    if (rc == 0) {
        chunk.message = first ? &mpb.msg : NULL;
        chunk.file = (char *)"";
        chunk.offset = 0;
        chunk.data = (ProtobufCBinaryData){0, NULL};
        chunk.done = 1;
        rc = send_one(call, cq, &chunk);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    raftio_msg_pb_release(&mpb);
    free(buf);
    return rc;
}

static void *transfer_main(void *arg)
{
    struct transfer *t = arg;
    struct peer_client *pc = t->pc;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call *call = grpc_channel_create_registered_call(
        t->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, t->method,
        deadline_in(SNAPSHOT_TIMEOUT_MS), NULL);
    grpc_metadata_array init_md, trail_md;
    grpc_byte_buffer *recv = NULL;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[4];
    grpc_metadata auth;
    int ok = 0;

    pthread_mutex_lock(&pc->lock);
    auth = pc->auth_md;
    auth.value = grpc_slice_ref(pc->auth_md.value);
    pthread_mutex_unlock(&pc->lock);
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = 1;
    ops[0].data.send_initial_metadata.metadata = &auth;
    if (grpc_call_start_batch(call, ops, 1, ops, NULL) == GRPC_CALL_OK &&
        grpc_completion_queue_pluck(cq, ops, gpr_inf_future(GPR_CLOCK_REALTIME),
                                    NULL)
            .success &&
        stream_files(t, call, cq) == 0) {
        memset(ops, 0, sizeof(ops));
        ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[1].data.recv_initial_metadata.recv_initial_metadata = &init_md;
        ops[2].op = GRPC_OP_RECV_MESSAGE;
        ops[2].data.recv_message.recv_message = &recv;
        ops[3].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[3].data.recv_status_on_client.trailing_metadata = &trail_md;
        ops[3].data.recv_status_on_client.status = &status;
        ops[3].data.recv_status_on_client.status_details = &details;
        if (grpc_call_start_batch(call, ops, 4, ops, NULL) == GRPC_CALL_OK) {
            grpc_completion_queue_pluck(cq, ops,
                                        gpr_inf_future(GPR_CLOCK_REALTIME),
                                        NULL);
            ok = status == GRPC_STATUS_OK;
        }
    }
    if (!ok) {
        char *text = grpc_slice_to_c_string(details);
        log_printf(LOG_WARN, "snapshot to node %" PRIu64 " failed: %s", t->to,
                   text[0] ? text : "stream broken");
        gpr_free(text);
        grpc_call_cancel(call, NULL);
    }
    grpc_call_unref(call);
    grpc_slice_unref(auth.value);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_slice_unref(details);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    fu_rmtree(t->dir);
    if (pc->ev.snapshot_done)
        pc->ev.snapshot_done(pc->ev.arg, t->to, ok);
    pthread_mutex_lock(&pc->lock);
    {
        struct peer *p = find(pc, t->to);
        if (p)
            p->snapshot_running = 0;
    }
    if (--pc->transfers == 0)
        pthread_cond_broadcast(&pc->idle);
    {
        grpc_channel **gone;
        size_t n_gone;
        reap_retired(pc, &gone, &n_gone);
        pthread_mutex_unlock(&pc->lock);
        destroy_channels(gone, n_gone);
    }
    free(t);
    return NULL;
}

void peer_client_send_snapshot(struct peer_client *pc, uint64_t to,
                               const char *dir, const struct raft_msg *msg)
{
    struct transfer *t = calloc(1, sizeof(*t));
    struct peer *p;
    pthread_t th;
    pthread_attr_t attr;
    int ok = 0;

    if (t) {
        t->pc = pc;
        t->to = to;
        snprintf(t->dir, sizeof(t->dir), "%s", dir);
        t->msg = *msg;
        t->msg.entries = NULL;
        t->msg.n_entries = 0;
    }
    pthread_mutex_lock(&pc->lock);
    p = find(pc, to);
    if (t && p && p->ch && !p->blocked && !p->snapshot_running) {
        t->ch = p->ch;
        t->method = p->m_snapshot;
        p->snapshot_running = 1;
        pc->transfers++;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, transfer_main, t) == 0) {
            ok = 1;
        } else {
            p->snapshot_running = 0;
            pc->transfers--;
        }
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_unlock(&pc->lock);
    if (!ok) {
        free(t);
        fu_rmtree(dir);
        if (pc->ev.snapshot_done)
            pc->ev.snapshot_done(pc->ev.arg, to, 0);
    }
}

/* ------------------------------------------------------------------ */
/* Synchronous calls (never from the Raft thread) */

int peer_client_key_status(struct peer_client *pc, uint64_t to,
                           int64_t timeout_ms,
                           Dossier__Peer__V1__KeyStatusResponse **out,
                           struct dossier_status *st)
{
    Dossier__Peer__V1__KeyStatusRequest req =
        DOSSIER__PEER__V1__KEY_STATUS_REQUEST__INIT;
    grpc_completion_queue *cq;
    grpc_call *call = NULL;
    grpc_metadata auth;
    grpc_metadata_array init_md, trail_md;
    grpc_byte_buffer *send, *recv = NULL;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    struct peer *p;
    int rc;

    *out = NULL;
    req.cluster_id = (ProtobufCBinaryData){PEER_CLUSTER_ID_BYTES, pc->cid};
    req.from = pc->self;
    cq = grpc_completion_queue_create_for_pluck(NULL);
    pthread_mutex_lock(&pc->lock);
    p = find(pc, to);
    if (p && p->ch && !p->blocked) {
        grpc_slice method =
            grpc_slice_from_static_string("/dossier.peer.v1.Peer/KeyStatus");
        call = grpc_channel_create_call(p->ch, NULL, GRPC_PROPAGATE_DEFAULTS,
                                        cq, method, NULL,
                                        deadline_in(timeout_ms), NULL);
        pc->calls++; /* its channel stays until it is done */
    }
    auth = pc->auth_md;
    auth.value = grpc_slice_ref(pc->auth_md.value);
    pthread_mutex_unlock(&pc->lock);
    if (!call) {
        grpc_slice_unref(auth.value);
        grpc_completion_queue_shutdown(cq);
        grpc_completion_queue_destroy(cq);
        return err_set(st, DOSSIER_UNAVAILABLE, "no address known");
    }
    send = pbgrpc_pack(&req.base);
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = 1;
    ops[0].data.send_initial_metadata.metadata = &auth;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    if (grpc_call_start_batch(call, ops, 6, ops, NULL) == GRPC_CALL_OK)
        grpc_completion_queue_pluck(cq, ops,
                                    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (status == GRPC_STATUS_OK)
        *out = (Dossier__Peer__V1__KeyStatusResponse *)pbgrpc_unpack(
            recv, &dossier__peer__v1__key_status_response__descriptor);
    if (*out) {
        rc = err_ok(st);
    } else {
        char *text = grpc_slice_to_c_string(details);
        rc = err_set(st, DOSSIER_UNAVAILABLE, "%s",
                     text[0] ? text : "no answer");
        gpr_free(text);
    }
    grpc_call_unref(call);
    grpc_byte_buffer_destroy(send);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_slice_unref(details);
    grpc_slice_unref(auth.value);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    {
        grpc_channel **gone;
        size_t n_gone;
        pthread_mutex_lock(&pc->lock);
        if (--pc->calls == 0)
            pthread_cond_broadcast(&pc->idle);
        reap_retired(pc, &gone, &n_gone);
        pthread_mutex_unlock(&pc->lock);
        destroy_channels(gone, n_gone);
    }
    return rc;
}
