/* gRPC C core plumbing: the method table and its policy, call contexts,
 * decoding, forwarding to the leader, replies and the completion-queue
 * loop. */
#include "server.h"

#include <assert.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <sodium.h>

#include "api.h"
#include "audit_sink.h"
#include "auth.h"
#include "bootstrap.h"
#include "cluster.h"
#include "crypt.h"
#include "dossier.pb-c.h"
#include "erasure.h"
#include "errors.h"
#include "health.h"
#include "health.pb-c.h"
#include "keys.pb-c.h"
#include "log.h"
#include "node_metrics.h"
#include "peer.pb-c.h"
#include "records.h"
#include "store.h"

/* One row per RPC. The flags carry the policy that call_start() enforces
 * before a handler runs, so handlers stay about their one job. */
struct api_method {
    const char *path;
    const ProtobufCMessageDescriptor *request;
    api_handler_fn handler;
    unsigned flags;
    int outstanding; /* calls requested ahead from gRPC */
    unsigned roles;  /* enum auth_role bits allowed; 0: peers only */
};

#define R API_READ
#define W API_WRITE
#define D API_DATA
#define P API_PURPOSE
#define LOG API_LOG_OK
#define SVC AUTH_SERVICE
#define CMP AUTH_COMPLIANCE
#define ADM AUTH_ADMIN
#define ANY (AUTH_SERVICE | AUTH_COMPLIANCE | AUTH_ADMIN)
static void forward_in(struct call *c, ProtobufCMessage *req);

static const struct api_method methods[] = {
    {"/dossier.v1.Records/Put", &dossier__v1__put_request__descriptor,
     api_records_put, W | D | P, 32, SVC},
    {"/dossier.v1.Records/Get", &dossier__v1__get_request__descriptor,
     api_records_get, R | D | P, 32, SVC},
    {"/dossier.v1.Records/Delete", &dossier__v1__delete_request__descriptor,
     api_records_delete, W | D | P, 4, SVC},
    {"/dossier.v1.Records/ListBySubject",
     &dossier__v1__list_by_subject_request__descriptor,
     api_records_list_by_subject, R | D | P, 4, SVC},
    {"/dossier.v1.Records/FindByIndex",
     &dossier__v1__find_by_index_request__descriptor,
     api_records_find_by_index, R | D | P, 4, SVC},
    {"/dossier.v1.Records/Scan", &dossier__v1__scan_request__descriptor,
     api_records_scan, R | D | P, 4, SVC},
    {"/dossier.v1.Records/FindDuplicates",
     &dossier__v1__find_duplicates_request__descriptor,
     api_records_find_duplicates, R | D | P, 2, SVC},
    {"/dossier.v1.Records/Aggregate",
     &dossier__v1__aggregate_request__descriptor, api_records_aggregate,
     R | D | P, 2, SVC},
    {"/dossier.v1.Watch/Changes", &dossier__v1__watch_request__descriptor,
     api_watch_changes, R | D | P, 4, SVC},
    {"/dossier.v1.Segments/Define",
     &dossier__v1__define_segment_request__descriptor, api_segments_define,
     W | LOG, 1, SVC | ADM},
    {"/dossier.v1.Segments/Get", &dossier__v1__get_segment_request__descriptor,
     api_segments_get, R | P, 1, SVC | ADM},
    {"/dossier.v1.Segments/List",
     &dossier__v1__list_segments_request__descriptor, api_segments_list,
     R | P, 1, SVC | ADM},
    {"/dossier.v1.Segments/Run", &dossier__v1__run_segment_request__descriptor,
     api_segments_run, R | D | P, 2, SVC},
    {"/dossier.v1.DuplicateRules/Define",
     &dossier__v1__define_duplicate_rules_request__descriptor,
     api_duplicate_rules_define, W | LOG, 1, SVC | ADM},
    {"/dossier.v1.DuplicateRules/Get",
     &dossier__v1__get_duplicate_rules_request__descriptor,
     api_duplicate_rules_get, R, 1, ANY},
    {"/dossier.v1.DuplicateRules/List",
     &dossier__v1__list_duplicate_rules_request__descriptor,
     api_duplicate_rules_list, R, 1, ANY},
    {"/dossier.v1.Merges/Merge", &dossier__v1__merge_request__descriptor,
     api_merges_merge, W | D | P, 2, SVC},
    {"/dossier.v1.Merges/Undo", &dossier__v1__merge_id_request__descriptor,
     api_merges_undo, W | D | P, 1, SVC},
    {"/dossier.v1.Merges/Confirm", &dossier__v1__merge_id_request__descriptor,
     api_merges_confirm, W | D | P, 1, SVC},
    {"/dossier.v1.Merges/List", &dossier__v1__list_merges_request__descriptor,
     api_merges_list, R | D | P, 1, SVC},
    {"/dossier.v1.Records/ListLinks",
     &dossier__v1__list_links_request__descriptor, api_records_list_links,
     R | D | P, 4, SVC},
    {"/dossier.v1.Schema/DefineKind",
     &dossier__v1__define_kind_request__descriptor, api_schema_define_kind,
     W | API_ADMIN, 2, ADM},
    {"/dossier.v1.Schema/GetKind", &dossier__v1__get_kind_request__descriptor,
     api_schema_get_kind, R, 2, ANY},
    {"/dossier.v1.Schema/ListKinds",
     &dossier__v1__list_kinds_request__descriptor, api_schema_list_kinds, R,
     2, ANY},
    {"/dossier.v1.Cluster/Status",
     &dossier__v1__cluster_status_request__descriptor, api_cluster_status,
     API_LOCAL, 2, ADM},
    {"/dossier.v1.Cluster/AddNode", &dossier__v1__add_node_request__descriptor,
     api_cluster_add_node, W | API_ADMIN | LOG, 1, ADM},
    {"/dossier.v1.Cluster/PromoteNode", &dossier__v1__node_request__descriptor,
     api_cluster_promote_node, W | API_ADMIN | LOG, 1, ADM},
    {"/dossier.v1.Cluster/RemoveNode", &dossier__v1__node_request__descriptor,
     api_cluster_remove_node, W | API_ADMIN | LOG, 1, ADM},
    {"/dossier.v1.Cluster/TransferLeader",
     &dossier__v1__node_request__descriptor, api_cluster_transfer_leader,
     W | API_ADMIN | LOG, 1, ADM},
    {"/dossier.v1.Purposes/Define",
     &dossier__v1__define_purpose_request__descriptor, api_purposes_define,
     W | API_ADMIN, 1, ADM},
    {"/dossier.v1.Purposes/Get", &dossier__v1__get_purpose_request__descriptor,
     api_purposes_get, R, 2, ANY},
    {"/dossier.v1.Purposes/List",
     &dossier__v1__list_purposes_request__descriptor, api_purposes_list, R,
     1, ANY},
    {"/dossier.v1.Consent/Grant", &dossier__v1__consent_change__descriptor,
     api_consent_grant, W | D, 4, CMP | SVC},
    {"/dossier.v1.Consent/Withdraw", &dossier__v1__consent_change__descriptor,
     api_consent_withdraw, W | D, 4, CMP | SVC},
    {"/dossier.v1.Consent/Get", &dossier__v1__consent_query__descriptor,
     api_consent_get, R | D, 2, CMP | SVC},
    {"/dossier.v1.Consent/History", &dossier__v1__consent_query__descriptor,
     api_consent_history, R | D, 2, CMP},
    {"/dossier.v1.Subjects/Status", &dossier__v1__subject_request__descriptor,
     api_subjects_status, R | D, 2, CMP},
    {"/dossier.v1.Subjects/RestrictProcessing",
     &dossier__v1__subject_request__descriptor, api_subjects_restrict,
     W | D, 1, CMP},
    {"/dossier.v1.Subjects/LiftRestriction",
     &dossier__v1__subject_request__descriptor, api_subjects_unrestrict,
     W | D, 1, CMP},
    {"/dossier.v1.Subjects/Erase", &dossier__v1__subject_request__descriptor,
     api_subjects_erase, W | D, 1, CMP},
    {"/dossier.v1.Subjects/Rectify", &dossier__v1__rectify_request__descriptor,
     api_subjects_rectify, W | D, 1, CMP},
    {"/dossier.v1.Subjects/Certificate",
     &dossier__v1__subject_request__descriptor, api_subjects_certificate,
     R | D, 1, CMP},
    {"/dossier.v1.Subjects/Export", &dossier__v1__subject_request__descriptor,
     api_subjects_export, R | D | LOG, 1, CMP},
    {"/dossier.v1.Subjects/ErasureLedger",
     &dossier__v1__erasure_ledger_request__descriptor,
     api_subjects_erasure_ledger, R | D | LOG, 1, CMP},
    {"/dossier.v1.Requests/File", &dossier__v1__file_request__descriptor,
     api_requests_file, W | D, 1, CMP},
    {"/dossier.v1.Requests/List",
     &dossier__v1__list_requests_request__descriptor, api_requests_list,
     R | D, 1, CMP},
    {"/dossier.v1.Requests/Get", &dossier__v1__get_tracked_request__descriptor,
     api_requests_get, R | D, 1, CMP},
    {"/dossier.v1.Requests/Execute", &dossier__v1__execute_request__descriptor,
     api_requests_execute, W | D, 1, CMP},
    {"/dossier.v1.Requests/Complete",
     &dossier__v1__complete_request__descriptor, api_requests_complete,
     W | D, 1, CMP},
    {"/dossier.v1.Requests/Extend", &dossier__v1__extend_request__descriptor,
     api_requests_extend, W | D, 1, CMP},
    {"/dossier.v1.Principals/Add",
     &dossier__v1__add_principal_request__descriptor, api_principals_add,
     W | API_ADMIN, 1, ADM},
    {"/dossier.v1.Principals/Remove",
     &dossier__v1__remove_principal_request__descriptor,
     api_principals_remove, W | API_ADMIN, 1, ADM},
    {"/dossier.v1.Principals/List",
     &dossier__v1__list_principals_request__descriptor, api_principals_list,
     R, 1, ADM},
    {"/dossier.v1.Backups/Create",
     &dossier__v1__create_backup_request__descriptor, api_backups_create,
     API_LOCAL | LOG, 1, ADM},
    {"/dossier.v1.Backups/List",
     &dossier__v1__list_backups_request__descriptor, api_backups_list,
     API_LOCAL, 1, ADM},
    {"/dossier.v1.Audit/Read", &dossier__v1__audit_read_request__descriptor,
     api_audit_read, R | LOG, 2, CMP},
    {"/dossier.v1.Audit/PublicKey", &dossier__v1__audit_key_request__descriptor,
     api_audit_public_key, R | D, 1, CMP},
    {"/grpc.health.v1.Health/Check",
     &grpc__health__v1__health_check_request__descriptor, api_health_check,
     API_LOCAL | API_PUBLIC, 4, ANY},
    {"/grpc.health.v1.Health/Watch",
     &grpc__health__v1__health_check_request__descriptor, api_health_watch,
     API_LOCAL | API_PUBLIC, 4, ANY},
    {"/dossier.peer.v1.Peer/Send",
     &dossier__peer__v1__message_batch__descriptor, api_peer_send,
     API_PEER | API_LOCAL, 16, 0},
    {"/dossier.peer.v1.Peer/Forward",
     &dossier__peer__v1__forward_request__descriptor, forward_in,
     API_PEER | API_LOCAL, 16, 0},
    {"/dossier.peer.v1.Peer/InstallSnapshot", NULL, api_peer_install_snapshot,
     API_PEER | API_LOCAL | API_STREAM_IN, 2, 0},
    {"/dossier.peer.v1.Peer/Fault", &dossier__peer__v1__fault_request__descriptor,
     api_peer_fault, API_PEER | API_LOCAL, 1, 0},
    {"/dossier.v1.Keys/Rotate", &dossier__v1__rotate_keys_request__descriptor,
     api_keys_rotate, W | API_ADMIN | LOG, 1, ADM},
    {"/dossier.v1.Keys/Status", &dossier__v1__keys_status_request__descriptor,
     api_keys_status, R, 1, ADM},
    {"/dossier.peer.v1.Peer/KeyStatus",
     &dossier__peer__v1__key_status_request__descriptor, api_peer_key_status,
     API_PEER | API_LOCAL, 2, 0},
    {"/dossier.peer.v1.Peer/AuditAppend",
     &dossier__store__v1__audit_op__descriptor, api_peer_audit_append,
     API_PEER | API_FORWARDED | W, 4, 0},
    {ERASURE_DONE_METHOD,
     &dossier__peer__v1__erasure_done_request__descriptor,
     api_peer_erasure_done, API_PEER | W, 2, 0},
};
#undef R
#undef W
#undef D
#undef P
#undef LOG
#undef SVC
#undef CMP
#undef ADM
#undef ANY

#define N_METHODS (sizeof(methods) / sizeof(methods[0]))
#define PURPOSE_MAX 64
/* Calls still running this long after a stop is asked are cancelled (the
 * node answers what the Raft loop still holds well before that). */
#define STOP_GRACE_MS 15000

enum tag_kind { TAG_NEW_CALL, TAG_UNKNOWN_CALL, TAG_RECV, TAG_DONE,
                TAG_READ, TAG_AUTH, TAG_SENT, TAG_CLOSED, TAG_SHUTDOWN };

struct tag {
    enum tag_kind kind;
    void *ptr;
};

struct call {
    struct server *srv;
    const struct api_method *m;
    void *registered;
    struct tag tag_new, tag_recv, tag_done, tag_read, tag_auth, tag_sent,
        tag_closed;

    grpc_call *call;
    gpr_timespec deadline;
    grpc_call_details details_in; /* calls of methods not in the table */
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    ProtobufCMessage *req;
    char purpose[PURPOSE_MAX + 1];
    /* The bearer token sent (wiped when the call is freed), and who it
     * names once authenticated. */
    char token[160];
    size_t token_len;
    char principal[AUTH_NAME_MAX + 1];
    unsigned role;
    struct policy_purpose purpose_def; /* API_PURPOSE: resolved */
    char grants[512]; /* purposes the authenticated principal may name */
    int grants_set;   /* grants holds them (not for forwarded calls) */
    int auth_waited;  /* an unknown token waited for the node to catch up */
    int purpose_known; /* purpose_def holds the named purpose */
    int audited; /* an entry stands for this call already */
    uint8_t request_id[16];
    int has_request_id;
    int serializable;

    /* A call a follower forwarded here: the answer goes back wrapped in a
     * ForwardResponse. */
    const struct api_method *inner;
    ProtobufCMessage *inner_req;
    /* A call this follower forwards to the leader: the request bytes. */
    uint8_t *raw;
    size_t raw_len;

    /* Client streaming. */
    grpc_byte_buffer *recv_buf;
    call_recv_cb on_recv;
    void *user;

    /* Server streaming: the call is freed when the last of its batches
     * (close watch, sends, final status) completes. */
    int stream;
    int refs;
    int md_sent;
    grpc_byte_buffer *stream_buf;
    call_closed_cb on_closed;
    call_sent_cb on_sent;

    struct timespec arrived; /* CLOCK_MONOTONIC, for the latency metric */

    /* Reply state: kept alive until the reply batch completes. */
    int replied;
    int cancelled;
    grpc_byte_buffer *resp;
    grpc_slice details;
    grpc_metadata trailers[3];
    size_t n_trailers;
};

/* The port's certificate, handed to gRPC through a config fetcher that
 * gRPC calls at each new TLS handshake: a certificate reloaded on SIGHUP
 * is picked up by the next connection, while connections already made
 * keep theirs. */
struct tls_fetch {
    pthread_mutex_t mu;
    grpc_ssl_server_certificate_config *pending; /* NULL: unchanged */
    int on;                                      /* the port speaks TLS */
    grpc_ssl_client_certificate_request_type req;
};

struct server {
    struct node *node;
    struct tls_fetch tls;
    grpc_server *grpc;
    grpc_completion_queue *cq;
    void *registered[N_METHODS];
    struct tag tag_shutdown;
    int started;
    int stopping;
    gpr_timespec stop_deadline;
    long in_flight; /* calls received and not yet freed */
    /* Calls asked of gRPC (request_call) and not yet delivered. Once the
     * server stops, gRPC fails every one of them, and with none left and
     * none in flight the node has answered every call it will ever see. */
    long requested;
    /* gRPC reported the server shut down, but calls are still to be
     * answered (by the Raft loop as it stops): the queue is shut down
     * once the last is freed, since answering a call whose queue is shut
     * down aborts the process. */
    int shutdown_seen;
    int cq_shut;
};

/* Shuts the queue down once gRPC's shutdown came and no call is left. */
static void maybe_shut_queue(struct server *s, int force)
{
    if (!__atomic_load_n(&s->shutdown_seen, __ATOMIC_ACQUIRE))
        return;
    if (!force && __atomic_load_n(&s->in_flight, __ATOMIC_ACQUIRE) > 0)
        return;
    if (__atomic_exchange_n(&s->cq_shut, 1, __ATOMIC_ACQ_REL))
        return;
    grpc_completion_queue_shutdown(s->cq);
}

int server_has_service(const char *name)
{
    size_t n = strlen(name);
    if (n == 0)
        return 1; /* the node as a whole */
    for (size_t i = 0; i < N_METHODS; i++)
        if ((methods[i].flags & (API_PEER | API_PUBLIC)) == 0 &&
            strncmp(methods[i].path + 1, name, n) == 0 &&
            methods[i].path[n + 1] == '/')
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Wiping allocator for decoded requests. */

static void *wipe_alloc(void *data, size_t size)
{
    (void)data;
    return malloc(size);
}

static void wipe_free(void *data, void *p)
{
    (void)data;
    if (p) {
        sodium_memzero(p, malloc_usable_size(p));
        free(p);
    }
}

ProtobufCAllocator server_wiping_allocator = {wipe_alloc, wipe_free, NULL};

/* ------------------------------------------------------------------ */
/* Calls */

struct node *call_node(struct call *c)
{
    return c->srv->node;
}

const char *call_purpose(const struct call *c)
{
    return c->purpose;
}

const struct policy_purpose *call_purpose_def(const struct call *c)
{
    return c->purpose_known ? &c->purpose_def : NULL;
}

/* The purpose to write into a command or an audit entry: only a known
 * one. The header is the caller's text, and any text could hold personal
 * data. */
static const char *recorded_purpose(const struct call *c)
{
    return c->purpose_known ? c->purpose_def.name : "";
}

ProtobufCMessage *call_request(const struct call *c)
{
    return c->inner_req ? c->inner_req : c->req;
}

const char *call_principal(const struct call *c)
{
    return c->principal;
}

void call_command_init(struct call *c, Dossier__Store__V1__Command *cmd)
{
    cmd->time_ms = records_now_ms();
    if (c->has_request_id)
        cmd->request_id = (ProtobufCBinaryData){16, c->request_id};
    cmd->principal = c->principal;
    cmd->purpose = (char *)recorded_purpose(c);
}

int call_submit(struct call *c, uint8_t *data, size_t len,
                void (*cb)(void *arg, const struct store_result *res),
                void *arg)
{
    struct node *n = call_node(c);
    int rc;

    /* Marked before the hand-off, never after: once queued, the Raft loop
     * may apply the command and answer @c, and another server thread free
     * it, before this thread runs again. (Writing the flag afterwards
     * wrote into freed memory, which could land in another write's
     * command on its way into the raft log.) */
    c->audited = 1;
    rc = cluster_submit(n->cluster, data, len, cb, arg);
    if (rc) {
        c->audited = 0; /* not queued: @c is still the caller's */
        return rc;
    }
    /* Tests only (--submit-pause-ms): hold this thread here, past the
     * answer, so that a sanitizer build catches any use of @c after the
     * hand-off. */
    if (n->submit_pause_ms)
        usleep(n->submit_pause_ms * 1000u);
    return 0;
}

/* The audit action of method @path: "/dossier.v1.Records/ListBySubject"
 * becomes "records.list_by_subject". */
static void action_name(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    const char *dot = slash ? slash : path;
    size_t n = 0;
    while (dot > path && dot[-1] != '.')
        dot--;
    for (const char *p = dot; p < slash && n + 1 < cap; p++)
        out[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    if (n + 1 < cap)
        out[n++] = '.';
    for (const char *p = slash ? slash + 1 : path; *p && n + 2 < cap; p++) {
        if (*p >= 'A' && *p <= 'Z') {
            if (p != slash + 1)
                out[n++] = '_';
            out[n++] = (char)(*p + 32);
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

static void audit_call(struct call *c, const uint8_t *sp, const uint8_t *rids,
                       size_t n, int outcome)
{
    const struct api_method *m = c->inner ? c->inner : c->m;
    char action[80];
    if (!m || (m->flags & (API_PEER | API_PUBLIC)) || c->audited)
        return;
    c->audited = 1;
    action_name(m->path, action, sizeof(action));
    audit_sink_add(call_node(c)->audit, c->principal, action,
                   recorded_purpose(c), sp, rids, n, outcome);
}

void call_audit_read(struct call *c, const uint8_t *sp, const uint8_t *rids,
                     size_t n)
{
    audit_call(c, sp, rids, n, 0);
}

const uint8_t *call_request_id(const struct call *c)
{
    return c->has_request_id ? c->request_id : NULL;
}

void call_request_derive(const struct call *c, uint8_t *out, size_t n)
{
    uint8_t h[crypto_generichash_BYTES_MAX];

    assert(n <= sizeof(h));
    if (!c->has_request_id) {
        randombytes_buf(out, n);
        return;
    }
    crypto_generichash(h,
                       n < crypto_generichash_BYTES_MIN
                           ? crypto_generichash_BYTES_MIN
                           : n,
                       c->request_id, sizeof(c->request_id), NULL, 0);
    memcpy(out, h, n);
}

int64_t call_time_left_ms(const struct call *c)
{
    gpr_timespec left;
    if (gpr_time_cmp(c->deadline, gpr_inf_future(c->deadline.clock_type)) == 0)
        return 3600 * 1000; /* no deadline (not libdossier: it sets one) */
    left = gpr_time_sub(
        gpr_convert_clock_type(c->deadline, GPR_CLOCK_MONOTONIC),
        gpr_now(GPR_CLOCK_MONOTONIC));
    int64_t ms = (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
    if (ms > 3600 * 1000)
        ms = 3600 * 1000; /* no deadline */
    return ms > 0 ? ms : 1;
}

int call_serializable(const struct call *c)
{
    return c->serializable;
}

void call_set_user(struct call *c, void *user)
{
    c->user = user;
}

void *call_user(const struct call *c)
{
    return c->user;
}

static void call_free(struct call *c)
{
    if (c->req)
        protobuf_c_message_free_unpacked(c->req, &server_wiping_allocator);
    if (c->inner_req)
        protobuf_c_message_free_unpacked(c->inner_req,
                                         &server_wiping_allocator);
    if (c->raw) {
        sodium_memzero(c->raw, c->raw_len);
        free(c->raw);
    }
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->recv_buf)
        grpc_byte_buffer_destroy(c->recv_buf);
    if (c->resp)
        grpc_byte_buffer_destroy(c->resp);
    if (c->stream_buf)
        grpc_byte_buffer_destroy(c->stream_buf);
    if (c->replied)
        grpc_slice_unref(c->details);
    for (size_t i = 0; i < c->n_trailers; i++)
        grpc_slice_unref(c->trailers[i].value);
    grpc_metadata_array_destroy(&c->md);
    if (!c->m)
        grpc_call_details_destroy(&c->details_in);
    if (c->call)
        grpc_call_unref(c->call);
    sodium_memzero(c->token, sizeof(c->token));
    free(c);
}

/* Drops one reference of a stream's batches; the last frees it. */
static void call_unref(struct call *c)
{
    if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0)
        call_free(c);
}

static struct call *call_new(struct server *s, const struct api_method *m)
{
    struct call *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->srv = s;
    c->m = m;
    c->tag_new = (struct tag){m ? TAG_NEW_CALL : TAG_UNKNOWN_CALL, c};
    c->tag_recv = (struct tag){TAG_RECV, c};
    c->tag_done = (struct tag){TAG_DONE, c};
    c->tag_read = (struct tag){TAG_READ, c};
    c->tag_auth = (struct tag){TAG_AUTH, c};
    c->tag_sent = (struct tag){TAG_SENT, c};
    c->tag_closed = (struct tag){TAG_CLOSED, c};
    grpc_metadata_array_init(&c->md);
    if (!m)
        grpc_call_details_init(&c->details_in);
    return c;
}

/* Asks gRPC for the next call of method @i. */
static void request_call(struct server *s, size_t i)
{
    struct call *c = call_new(s, &methods[i]);
    grpc_call_error e;

    if (!c) {
        log_printf(LOG_ERROR, "out of memory: %s has one call slot less",
                   methods[i].path);
        return;
    }
    c->registered = s->registered[i];
    __atomic_fetch_add(&s->requested, 1, __ATOMIC_ACQ_REL);
    e = grpc_server_request_registered_call(
        s->grpc, c->registered, &c->call, &c->deadline, &c->md,
        (methods[i].flags & API_STREAM_IN) ? NULL : &c->payload, s->cq, s->cq,
        &c->tag_new);
    if (e != GRPC_CALL_OK) {
        log_printf(LOG_ERROR, "cannot request calls of %s: error %d",
                   methods[i].path, (int)e);
        __atomic_fetch_sub(&s->requested, 1, __ATOMIC_ACQ_REL);
        call_free(c);
    }
}

/* Asks gRPC for the next call of a method that is not in the table, so
 * that it gets UNIMPLEMENTED at once rather than waiting for its deadline. */
static void request_unknown(struct server *s)
{
    struct call *c = call_new(s, NULL);
    if (!c)
        return;
    __atomic_fetch_add(&s->requested, 1, __ATOMIC_ACQ_REL);
    if (grpc_server_request_call(s->grpc, &c->call, &c->details_in, &c->md,
                                 s->cq, s->cq, &c->tag_new) != GRPC_CALL_OK) {
        __atomic_fetch_sub(&s->requested, 1, __ATOMIC_ACQ_REL);
        call_free(c);
    }
}

static const char *call_path(const struct call *c)
{
    return c->m ? c->m->path : "an unknown method";
}

/* Sends the whole answer of @c in one batch: initial metadata, the message
 * (on success), the status with the Dossier error name as a trailer, and
 * the receipt of the client's close. @raw/@raw_len: an already encoded
 * message to send instead of @resp. */
static void call_send(struct call *c, int code, const char *message,
                      const ProtobufCMessage *resp, const uint8_t *raw,
                      size_t raw_len)
{
    grpc_op ops[4];
    size_t n = 0;
    grpc_call_error e;

    if (c->replied) {
        log_printf(LOG_ERROR, "bug: %s answered twice", call_path(c));
        return;
    }
    c->replied = 1;
    {
        struct timespec now;
        double secs;
        const char *path = c->inner ? c->inner->path : call_path(c);
        clock_gettime(CLOCK_MONOTONIC, &now);
        secs = (double)(now.tv_sec - c->arrived.tv_sec) +
               (double)(now.tv_nsec - c->arrived.tv_nsec) / 1e9;
        node_metrics_call(call_node(c)->metrics,
                          c->m ? c->m->path : "unknown", code, secs);
        /* The node's own failures always; every call at debug level. The
         * message may echo the request: never logged, only its code. */
        if (code == DOSSIER_INTERNAL || code == DOSSIER_IO ||
            code == DOSSIER_CORRUPT || code == DOSSIER_NOMEM)
            log_call(LOG_WARN, call_request_id(c), "%s%s failed: %s",
                     path, c->inner ? " (forwarded)" : "",
                     dossier_code_name(code));
        else if (log_enabled(LOG_DEBUG))
            log_call(LOG_DEBUG, call_request_id(c), "%s%s: %s in %.3f ms",
                     path, c->inner ? " (forwarded)" : "",
                     dossier_code_name(code), secs * 1e3);
    }
    {
        /* Refusals and failures are audited, and the successes of
         * methods that say so; reads audit themselves (call_audit_read),
         * commands through their own entry. */
        const struct api_method *am = c->inner ? c->inner : c->m;
        if (am && (code != 0 || (am->flags & API_LOG_OK)))
            audit_call(c, NULL, NULL, 0, code);
    }
    if (c->inner) {
        /* A forwarded call: the real answer travels inside the reply. */
        Dossier__Peer__V1__ForwardResponse fr =
            DOSSIER__PEER__V1__FORWARD_RESPONSE__INIT;
        uint8_t *buf = NULL;
        size_t len = 0;
        fr.code = (uint32_t)code;
        fr.message = (char *)(message ? message : "");
        if (code == 0 && resp) {
            len = protobuf_c_message_get_packed_size(resp);
            buf = malloc(len ? len : 1);
            if (buf) {
                protobuf_c_message_pack(resp, buf);
                fr.response = (ProtobufCBinaryData){len, buf};
            } else {
                fr.code = DOSSIER_NOMEM;
                fr.message = (char *)"out of memory";
            }
        }
        {
            size_t flen = protobuf_c_message_get_packed_size(&fr.base);
            grpc_slice sl = grpc_slice_malloc(flen);
            protobuf_c_message_pack(&fr.base, GRPC_SLICE_START_PTR(sl));
            c->resp = grpc_raw_byte_buffer_create(&sl, 1);
            grpc_slice_unref(sl);
        }
        if (buf) {
            sodium_memzero(buf, len);
            free(buf);
        }
        code = 0;
        message = "";
    } else if (code == 0 && (resp || raw)) {
        size_t len = raw ? raw_len : protobuf_c_message_get_packed_size(resp);
        grpc_slice sl = grpc_slice_malloc(len);
        if (raw)
            memcpy(GRPC_SLICE_START_PTR(sl), raw, len);
        else
            protobuf_c_message_pack(resp, GRPC_SLICE_START_PTR(sl));
        c->resp = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
    }
    c->details = grpc_slice_from_copied_string(message ? message : "");
    memset(ops, 0, sizeof(ops));
    if (!c->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
    }
    if (c->resp) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->resp;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = err_to_grpc(code);
    ops[n].data.send_status_from_server.status_details = &c->details;
    {
        size_t nt = 0;
        if (code) {
            c->trailers[nt].key = grpc_slice_from_static_string(ERR_METADATA_KEY);
            c->trailers[nt++].value =
                grpc_slice_from_static_string(dossier_code_name(code));
        } else if (c->serializable && c->m && (c->m->flags & API_READ)) {
            /* A read that may be stale says how stale it may be. */
            struct node *nd = call_node(c);
            char buf[32];
            snprintf(buf, sizeof(buf), "%llu",
                     (unsigned long long)store_applied(nd->store));
            c->trailers[nt].key =
                grpc_slice_from_static_string("dossier-applied-index");
            c->trailers[nt++].value = grpc_slice_from_copied_string(buf);
            snprintf(buf, sizeof(buf), "%llu",
                     (unsigned long long)cluster_commit_index(nd->cluster));
            c->trailers[nt].key =
                grpc_slice_from_static_string("dossier-commit-index");
            c->trailers[nt++].value = grpc_slice_from_copied_string(buf);
        }
        c->n_trailers = nt;
        ops[n].data.send_status_from_server.trailing_metadata_count = nt;
        ops[n].data.send_status_from_server.trailing_metadata = c->trailers;
    }
    n++;
    if (!c->stream) { /* a stream watches for the close from its start */
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n].data.recv_close_on_server.cancelled = &c->cancelled;
        n++;
    }
    e = grpc_call_start_batch(c->call, ops, n, &c->tag_done, NULL);
    if (e != GRPC_CALL_OK) {
        /* The batch never completes, so the loop never sees tag_done. */
        struct server *srv = c->srv;
        log_printf(LOG_ERROR, "cannot answer %s: error %d", call_path(c),
                   (int)e);
        __atomic_fetch_sub(&srv->in_flight, 1, __ATOMIC_ACQ_REL);
        if (c->stream)
            call_unref(c);
        else
            call_free(c);
        maybe_shut_queue(srv, 0);
    }
}

void call_reply(struct call *c, const ProtobufCMessage *resp)
{
    call_send(c, 0, "", resp, NULL, 0);
}

void call_fail(struct call *c, int code, const char *fmt, ...)
{
    char msg[DOSSIER_STATUS_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    call_send(c, code ? code : DOSSIER_INTERNAL, msg, NULL, NULL, 0);
}

void call_fail_status(struct call *c, const struct dossier_status *st)
{
    call_send(c, st->code ? st->code : DOSSIER_INTERNAL, st->message, NULL,
              NULL, 0);
}

void call_recv(struct call *c, call_recv_cb cb)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_buf;
    c->on_recv = cb;
    if (grpc_call_start_batch(c->call, &op, 1, &c->tag_recv, NULL) !=
        GRPC_CALL_OK)
        cb(c, NULL);
}

int call_stream_open(struct call *c, call_closed_cb closed)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    c->on_closed = closed;
    /* One reference for the close watch, one for the final status. */
    __atomic_store_n(&c->refs, 2, __ATOMIC_RELEASE);
    c->stream = 1;
    if (grpc_call_start_batch(c->call, &op, 1, &c->tag_closed, NULL) !=
        GRPC_CALL_OK) {
        c->stream = 0;
        return -1;
    }
    return 0;
}

int call_stream_send(struct call *c, const ProtobufCMessage *msg,
                     call_sent_cb sent)
{
    grpc_op ops[2];
    size_t n = 0, len = protobuf_c_message_get_packed_size(msg);
    grpc_slice sl = grpc_slice_malloc(len);

    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(sl));
    if (c->stream_buf)
        grpc_byte_buffer_destroy(c->stream_buf);
    c->stream_buf = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    memset(ops, 0, sizeof(ops));
    if (!c->md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->md_sent = 1;
    }
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->stream_buf;
    c->on_sent = sent;
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
    if (grpc_call_start_batch(c->call, ops, n, &c->tag_sent, NULL) !=
        GRPC_CALL_OK) {
        __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
        return -1;
    }
    return 0;
}

void call_stream_end(struct call *c)
{
    call_send(c, 0, "", NULL, NULL, 0);
}

static void read_metadata(struct call *c)
{
    for (size_t i = 0; i < c->md.count; i++) {
        const grpc_metadata *m = &c->md.metadata[i];
        size_t len = GRPC_SLICE_LENGTH(m->value);
        const char *v = (const char *)GRPC_SLICE_START_PTR(m->value);
        if (grpc_slice_str_cmp(m->key, "dossier-purpose") == 0) {
            if (len > PURPOSE_MAX)
                len = PURPOSE_MAX;
            memcpy(c->purpose, v, len);
            c->purpose[len] = '\0';
        } else if (grpc_slice_str_cmp(m->key, "dossier-request-id") == 0) {
            size_t bin = 0;
            c->has_request_id =
                len == 32 && sodium_hex2bin(c->request_id, 16, v, len, NULL,
                                            &bin, NULL) == 0 &&
                bin == 16;
        } else if (grpc_slice_str_cmp(m->key, "authorization") == 0) {
            static const char bearer[] = "Bearer ";
            size_t pre = sizeof(bearer) - 1;
            if (len > pre && len - pre < sizeof(c->token) &&
                memcmp(v, bearer, pre) == 0) {
                c->token_len = len - pre;
                memcpy(c->token, v + pre, c->token_len);
            } else {
                c->token_len = (size_t)-1; /* present but not a bearer */
            }
        } else if (grpc_slice_str_cmp(m->key, "dossier-consistency") == 0) {
            c->serializable = len == 12 && memcmp(v, "serializable", 12) == 0;
        }
    }
}

/* Reads the payload of @c into a fresh slice (the caller unrefs it), or
 * returns an empty slice. */
static grpc_slice payload_slice(struct call *c)
{
    grpc_byte_buffer_reader reader;
    grpc_slice sl;
    if (!c->payload || !grpc_byte_buffer_reader_init(&reader, c->payload))
        return grpc_empty_slice();
    sl = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    grpc_byte_buffer_destroy(c->payload);
    c->payload = NULL;
    return sl;
}

/* A follower's write went to the leader: pass the answer on. */
static void forwarded_back(void *arg, int code, const char *message,
                           const uint8_t *reply, size_t len)
{
    struct call *c = arg;
    if (code == 0)
        call_send(c, 0, "", NULL, reply ? reply : (const uint8_t *)"", len);
    else
        call_fail(c, code, "%s", message);
}

/* Sends a write this follower received to the leader, unchanged. */
static void forward_out(struct call *c)
{
    struct node *n = call_node(c);
    char leader[CLUSTER_ADDRESS_MAX];
    grpc_slice sl = payload_slice(c);

    c->raw_len = GRPC_SLICE_LENGTH(sl);
    c->raw = malloc(c->raw_len ? c->raw_len : 1);
    if (!c->raw) {
        grpc_slice_unref(sl);
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    }
    memcpy(c->raw, GRPC_SLICE_START_PTR(sl), c->raw_len);
    sodium_memzero(GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
    grpc_slice_unref(sl);
    c->audited = 1; /* the leader audits the call */
    if (cluster_forward(n->cluster, c->m->path, c->raw, c->raw_len,
                        c->purpose, call_request_id(c), c->principal, c->role,
                        call_time_left_ms(c),
                        forwarded_back, c) != 0) {
        c->audited = 0; /* not forwarded: audited here */
        uint64_t id = cluster_leader(n->cluster, leader, sizeof(leader));
        if (id)
            call_fail(c, DOSSIER_UNAVAILABLE,
                      "cannot reach the leader (node %llu at %s); retry",
                      (unsigned long long)id, leader);
        else
            call_fail(c, DOSSIER_UNAVAILABLE,
                      "no leader is elected yet; retry shortly");
    }
}

/* A linearizable read may proceed, or may not. This runs on the Raft
 * thread, which must not do the read: an empty batch puts the call back
 * on the completion queue (TAG_READ), whose thread runs the handler. */
static void read_ready(void *arg, int code, const char *message)
{
    struct call *c = arg;
    if (code)
        return call_fail(c, code, "%s", message);
    if (grpc_call_start_batch(c->call, NULL, 0, &c->tag_read, NULL) !=
        GRPC_CALL_OK)
        call_fail(c, DOSSIER_UNAVAILABLE, "the call ended before its read");
}

/* Runs @m's handler for @c on request @req under the method's policy. */
static void dispatch(struct call *c, const struct api_method *m,
                     ProtobufCMessage *req)
{
    struct node *n = call_node(c);
    if ((m->flags & API_DATA) && !cluster_keys_ready(n->cluster))
        return call_fail(c, DOSSIER_UNAVAILABLE,
                         "this node cannot serve data yet: the cluster's "
                         "keys are not open (no leader elected, or a wrong "
                         "master key: see the node's log)");
    if ((m->flags & API_READ) && !c->serializable &&
        !cluster_read_barrier(n->cluster, read_ready, c))
        return; /* read_ready runs the handler */
    m->handler(c, req);
}

/* 1 when authentication is on: the node requires it (--require-auth),
 * has an auth file, or the cluster's state holds a principal. */
static int auth_on(struct node *n)
{
    return n->require_auth || n->auth || store_principal_count(n->store) > 0;
}

/* A call presenting the bootstrap token (bootstrap.h): 1 and *@out when
 * it may act as the bootstrap principal for @m, which is only while the
 * cluster never had a principal of its own, only on a node without an
 * auth file, and only for Principals/Add; -1 after answering @c when the
 * token is spent or refused here or @m is another method; 0 when @token
 * is not the bootstrap token. */
static int bootstrap_principal(struct call *c, const struct api_method *m,
                               struct auth_principal *out)
{
    struct node *n = call_node(c);
    if (!n->has_bootstrap ||
        !bootstrap_token_matches(n->bootstrap_hash, c->token, c->token_len))
        return 0;
    if (n->auth) {
        log_call(LOG_WARN, call_request_id(c),
                 "refused %s: the bootstrap token, on a node with an auth "
                 "file", m->path);
        call_fail(c, DOSSIER_UNAUTHENTICATED,
                  "this node has an auth file, whose admins add principals: "
                  "it does not take the bootstrap token");
        return -1;
    }
    /* Spent for good once the cluster had a principal, also after every
     * principal was removed: the state machine keeps that fact. */
    if (store_bootstrapped(n->store)) {
        log_call(LOG_WARN, call_request_id(c),
                 "refused %s: the bootstrap token is spent", m->path);
        call_fail(c, DOSSIER_UNAUTHENTICATED,
                  "the bootstrap token was for the cluster's first admin, "
                  "and the cluster has had principals: use a principal's "
                  "token");
        return -1;
    }
    if (strcmp(m->path, "/dossier.v1.Principals/Add") != 0) {
        log_call(LOG_WARN, call_request_id(c),
                 "refused %s to the bootstrap token", m->path);
        /* The refusal's audit entry names who was refused. */
        snprintf(c->principal, sizeof(c->principal), "%s",
                 BOOTSTRAP_PRINCIPAL);
        call_fail(c, DOSSIER_PERMISSION_DENIED,
                  "the bootstrap token may only add the cluster's first "
                  "admin (dossier principal add NAME admin)");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", BOOTSTRAP_PRINCIPAL);
    out->role = AUTH_ADMIN;
    snprintf(out->purposes, sizeof(out->purposes), "*");
    return 1;
}

/* A principal of the cluster's state whose token is @token: 1 and *@out. */
static int stored_principal(struct node *n, const char *token, size_t len,
                            struct auth_principal *out)
{
    Dossier__Store__V1__StoredPrincipal *sp;
    struct dossier_status st;
    uint8_t h[crypto_hash_sha256_BYTES];

    if (store_principal_count(n->store) == 0)
        return 0;
    crypto_hash_sha256(h, (const unsigned char *)token, len);
    if (store_principal_by_hash(n->store, h, &sp, &st) != 0)
        return 0;
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%.*s", AUTH_NAME_MAX, sp->name);
    out->role = auth_role_parse(sp->role);
    snprintf(out->purposes, sizeof(out->purposes), "%s", sp->purposes);
    dossier__store__v1__stored_principal__free_unpacked(sp, NULL);
    return out->role != 0;
}

/* Whether @c's principal may name @purpose: its grants as authenticated
 * here, or, for a call forwarded with only a name, the grants of that
 * name in the auth file or the cluster's state. */
static int principal_may_use(struct call *c, const char *purpose)
{
    struct node *n = call_node(c);
    Dossier__Store__V1__StoredPrincipal *sp;
    struct dossier_status st;
    int ok;

    if (c->grants_set)
        return auth_purposes_allow(c->grants, purpose);
    ok = auth_may_use(n->auth, c->principal, purpose);
    if (ok >= 0)
        return ok;
    if (store_principal_get(n->store, c->principal, &sp, &st) != 0)
        return 0;
    ok = auth_purposes_allow(sp->purposes, purpose);
    dossier__store__v1__stored_principal__free_unpacked(sp, NULL);
    return ok;
}

/* Refuses @c unless it names a known purpose its principal was granted,
 * for the methods that need one; 0 if it may go on. */
static int authorize_purpose(struct call *c, const struct api_method *m)
{
    struct node *n = call_node(c);
    if (!(m->flags & API_PURPOSE))
        return 0;
    if (!c->purpose[0]) {
        log_call(LOG_WARN, call_request_id(c), "refused %s to %s: no purpose", m->path,
                   c->principal[0] ? c->principal : "(anonymous)");
        call_fail(c, DOSSIER_INVALID_ARGUMENT,
                  "data calls must name a purpose (metadata "
                  "'dossier-purpose'); see dossier purpose list");
        return -1;
    }
    c->purpose_known =
        policy_get(store_policy(n->store), c->purpose, &c->purpose_def) == 0;
    if (!c->purpose_known) {
        log_call(LOG_WARN, call_request_id(c), "refused %s: unknown purpose",
                 m->path);
        call_fail(c, DOSSIER_INVALID_ARGUMENT,
                  "unknown purpose '%s': define it first (dossier purpose "
                  "define) or use one of dossier purpose list",
                  c->purpose);
        return -1;
    }
    if (c->principal[0] && !principal_may_use(c, c->purpose)) {
        log_call(LOG_WARN, call_request_id(c),
                 "refused %s to %s: purpose not granted",
                   m->path, c->principal);
        call_fail(c, DOSSIER_PERMISSION_DENIED,
                  "principal '%s' was not granted purpose '%s'",
                  c->principal, c->purpose);
        return -1;
    }
    return 0;
}

/* The certificate principal of @c's caller: 1 and *@out when the call
 * came over TLS with a verified client certificate whose subject CN names
 * a `cert` principal of @a. That CN (printable ASCII, '?' for the rest;
 * "" for none) goes into @cn for the log: nothing else of a certificate
 * is ever logged. */
static int cert_principal(struct call *c, struct auth *a,
                          struct auth_principal *out, char *cn, size_t cap)
{
    grpc_auth_context *ctx = grpc_call_auth_context(c->call);
    grpc_auth_property_iterator it;
    const grpc_auth_property *p = NULL;
    int found = 0;

    cn[0] = '\0';
    if (!ctx)
        return 0;
    /* The port asks only for certificates it verifies (server_bind), so
     * an authenticated peer's CN is from a certificate that verified. */
    if (grpc_auth_context_peer_is_authenticated(ctx)) {
        it = grpc_auth_context_find_properties_by_name(
            ctx, GRPC_X509_CN_PROPERTY_NAME);
        p = grpc_auth_property_iterator_next(&it);
    }
    if (p && p->value && p->value_length > 0) {
        size_t i;
        found = auth_find_cert(a, p->value, p->value_length, out);
        for (i = 0; i < p->value_length && i + 1 < cap; i++)
            cn[i] = p->value[i] >= ' ' && p->value[i] <= '~' ? p->value[i]
                                                             : '?';
        cn[i] = '\0';
    }
    grpc_auth_context_release(ctx);
    return found;
}

/* The node caught up with the leader after an unknown token (authorize):
 * back on the completion queue (TAG_AUTH), whose thread starts the call
 * again, or refused when the node cannot catch up. Raft thread. */
static void auth_ready(void *arg, int code, const char *message)
{
    struct call *c = arg;
    if (code)
        return call_fail(c, DOSSIER_UNAVAILABLE,
                         "the token is not known to this node, which cannot "
                         "catch up with the cluster to check again (%s); try "
                         "another node",
                         message);
    if (grpc_call_start_batch(c->call, NULL, 0, &c->tag_auth, NULL) !=
        GRPC_CALL_OK)
        call_fail(c, DOSSIER_UNAVAILABLE, "the call ended before its check");
}

/* Refuses @c (answering it) unless its caller may call @m; 0 if it may.
 * Peer methods need the peer token. With an auth file, every other call
 * needs a known token, or a verified client certificate of a certificate
 * principal, whose role the method allows, and data calls need a
 * purpose. Every refusal is logged (no token or personal data in it).
 * A token this node does not know may name a principal added on another
 * node a moment ago and not yet applied here: the call then waits for a
 * catch-up (cluster_catch_up(): a read barrier shared by every such call,
 * at most one a raft tick; the node applies what the leader had committed
 * when the call arrived) and is started again (TAG_AUTH); -1 then too,
 * without an answer yet. */
static int authorize(struct call *c, const struct api_method *m)
{
    struct node *n = call_node(c);
    int have = c->token_len > 0 && c->token_len != (size_t)-1;
    if (m->flags & API_PUBLIC)
        return 0;
    if (m->flags & API_PEER) {
        if (!have || !crypt_peer_token_ok(n->crypt, c->token,
                                          c->token_len)) {
            log_call(LOG_WARN, call_request_id(c),
                     "refused %s: no valid peer token", m->path);
            call_fail(c, DOSSIER_UNAUTHENTICATED,
                      "peer calls need the cluster's peer token (nodes of "
                      "one cluster share the master key it comes from)");
            return -1;
        }
        return 0;
    }
    if (!auth_on(n))
        return authorize_purpose(c, m); /* authentication is off */
    if (!c->principal[0]) {
        struct auth_principal pr;
        char cn[AUTH_NAME_MAX + 1] = "";
        const struct auth_principal *p =
            have && n->auth && auth_find(n->auth, c->token, c->token_len, &pr)
                ? &pr
                : NULL;
        if (!p && have && stored_principal(n, c->token, c->token_len, &pr))
            p = &pr;
        if (!p && n->auth && cert_principal(c, n->auth, &pr, cn, sizeof(cn)))
            p = &pr;
        if (!p && have) {
            int b = bootstrap_principal(c, m, &pr);
            if (b < 0)
                return -1;
            if (b > 0)
                p = &pr;
        }
        if (!p && have && !c->auth_waited && n->cluster) {
            c->auth_waited = 1;
            /* 1: a lone voter, which has applied everything it knows.
             * Catch-ups are rationed (one round a tick, shared), so a
             * flood of bad tokens costs the cluster little. */
            if (!cluster_catch_up(n->cluster, auth_ready, c))
                return -1;
        }
        if (!p) {
            /* Not the CN itself: it is often a person's name. */
            log_call(LOG_WARN, call_request_id(c), "refused %s: %s%s",
                     m->path, have ? "unknown token" : "no bearer token",
                     cn[0] ? ", and a client certificate that names no "
                             "principal"
                           : "");
            call_fail(c, DOSSIER_UNAUTHENTICATED,
                      have ? "the token is not known to this cluster"
                           : cn[0] ? "the client certificate's CN is not a "
                                     "principal of this cluster"
                                   : "no credentials: send the metadata "
                                     "'authorization: Bearer <token>', or a "
                                     "client certificate of a cert "
                                     "principal over TLS");
            return -1;
        }
        snprintf(c->principal, sizeof(c->principal), "%.*s", AUTH_NAME_MAX,
                 p->name);
        c->role = p->role;
        snprintf(c->grants, sizeof(c->grants), "%s", p->purposes);
        c->grants_set = 1;
    }
    if (!(m->roles & c->role)) {
        log_call(LOG_WARN, call_request_id(c),
                 "refused %s to %s: role %s may not call it",
                   m->path, c->principal,
                   auth_role_name((enum auth_role)c->role));
        call_fail(c, DOSSIER_PERMISSION_DENIED,
                  "principal '%s' (role %s) may not call %s", c->principal,
                  auth_role_name((enum auth_role)c->role), m->path);
        return -1;
    }
    return authorize_purpose(c, m);
}

/* Peer.Forward on the leader: run the inner call as if a client made it. */
static void forward_in(struct call *c, ProtobufCMessage *msg)
{
    Dossier__Peer__V1__ForwardRequest *fr =
        (Dossier__Peer__V1__ForwardRequest *)msg;
    struct node *n = call_node(c);
    const struct api_method *m = NULL;

    if (api_peer_check(c, &fr->cluster_id, fr->from) != 0)
        return;
    for (size_t i = 0; i < N_METHODS; i++)
        if (strcmp(methods[i].path, fr->method) == 0)
            m = &methods[i];
    if (!m || !(m->flags & API_WRITE))
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "only writes are forwarded");
    if (!cluster_is_leader(n->cluster))
        return call_fail(c, DOSSIER_UNAVAILABLE,
                         "the node forwarded to is no longer the leader; "
                         "retry");
    c->inner = m;
    c->inner_req = protobuf_c_message_unpack(m->request,
                                             &server_wiping_allocator,
                                             fr->request.len,
                                             fr->request.data);
    if (!c->inner_req)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "%s: malformed request: not a valid %s message",
                         m->path, m->request->name);
    snprintf(c->purpose, sizeof(c->purpose), "%.*s", PURPOSE_MAX,
             fr->purpose);
    /* The forwarding node authenticated the caller; check the role here
     * too, against this node's method table. */
    snprintf(c->principal, sizeof(c->principal), "%.*s", AUTH_NAME_MAX,
             fr->principal);
    c->role = fr->role;
    if (auth_on(call_node(c)) && !(m->flags & API_PEER) &&
        (!c->principal[0] || !c->role))
        return call_fail(c, DOSSIER_UNAUTHENTICATED,
                         "a forwarded call without its principal");
    if (fr->request_id.len == 16) {
        memcpy(c->request_id, fr->request_id.data, 16);
        c->has_request_id = 1;
    }
    if (authorize(c, m) != 0)
        return;
    dispatch(c, m, c->inner_req);
}

/* A call arrived: decode it and run its handler under its policy. */
static void call_start(struct call *c)
{
    struct node *n = call_node(c);
    grpc_slice sl;

    read_metadata(c);
    if (authorize(c, c->m) != 0)
        return;
    /* Not through Peer.Forward, whose sender is checked (api_peer_check):
     * any holder of the peer token could otherwise call it. */
    if (c->m->flags & API_FORWARDED)
        return call_fail(c, DOSSIER_PERMISSION_DENIED,
                         "%s is taken from a member node through "
                         "Peer.Forward only",
                         c->m->path);
    if (!(c->m->flags & (API_PEER | API_PUBLIC)) &&
        (c->m->flags & (API_DATA | API_READ | API_WRITE))) {
        char why[512];
        if (cluster_halted(n->cluster, why, sizeof(why)))
            return call_fail(c, DOSSIER_UNAVAILABLE,
                             "node %llu halted after a storage failure and "
                             "serves no data until it is restarted (%s); "
                             "use another node",
                             (unsigned long long)n->id, why);
    }
    if (c->m->flags & API_STREAM_IN) {
        c->m->handler(c, NULL);
        return;
    }
    if (!c->payload)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "%s: the request has no message", c->m->path);
    if ((c->m->flags & API_WRITE) && !cluster_is_leader(n->cluster))
        return forward_out(c);
    sl = payload_slice(c);
    c->req = protobuf_c_message_unpack(c->m->request, &server_wiping_allocator,
                                       GRPC_SLICE_LENGTH(sl),
                                       GRPC_SLICE_START_PTR(sl));
    /* The encoded request may hold personal values: wipe our copy. */
    sodium_memzero(GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
    grpc_slice_unref(sl);
    if (!c->req)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "%s: malformed request: not a valid %s message",
                         c->m->path, c->m->request->name);
    dispatch(c, c->m, c->req);
}

/* ------------------------------------------------------------------ */
/* Server */

/* Whether and how the port asks for client certificates under @tls. */
static grpc_ssl_client_certificate_request_type
client_cert_request(const struct server_tls *tls)
{
    /* Only the verifying modes: a certificate that did not verify must
     * never reach authorize(), where its CN could name a principal. */
    if (tls->ca_pem && tls->client_cert == SERVER_CLIENT_CERT_REQUEST)
        return GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
    if (tls->ca_pem && tls->client_cert == SERVER_CLIENT_CERT_REQUIRE)
        return GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    return GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
}

static grpc_ssl_server_certificate_config *
certificate_config(const struct server_tls *tls)
{
    grpc_ssl_pem_key_cert_pair pair;
    pair.private_key = tls->key_pem;
    pair.cert_chain = tls->cert_pem;
    /* gRPC copies the PEM text. */
    return grpc_ssl_server_certificate_config_create(tls->ca_pem, &pair, 1);
}

/* gRPC asks at each new handshake: a config set by server_tls_reload() is
 * handed over (gRPC takes it), else the one it has stays. */
static grpc_ssl_certificate_config_reload_status
fetch_certificate(void *arg, grpc_ssl_server_certificate_config **config)
{
    struct tls_fetch *t = arg;
    grpc_ssl_certificate_config_reload_status rc =
        GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    pthread_mutex_lock(&t->mu);
    if (t->pending) {
        *config = t->pending;
        t->pending = NULL;
        rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* The credentials of the gRPC port: TLS when @tls has a certificate, its
 * certificate given through @fetch (may be NULL: given once, for a check
 * of the files only). */
static grpc_server_credentials *server_credentials(const struct server_tls *tls,
                                                   struct tls_fetch *fetch)
{
    grpc_ssl_client_certificate_request_type req;

    if (!tls || !tls->cert_pem)
        return grpc_insecure_server_credentials_create();
    req = client_cert_request(tls);
    if (!fetch)
        return grpc_ssl_server_credentials_create_with_options(
            grpc_ssl_server_credentials_create_options_using_config(
                req, certificate_config(tls)));
    pthread_mutex_lock(&fetch->mu);
    fetch->on = 1;
    fetch->req = req;
    fetch->pending = certificate_config(tls);
    pthread_mutex_unlock(&fetch->mu);
    return grpc_ssl_server_credentials_create_with_options(
        grpc_ssl_server_credentials_create_options_using_config_fetcher(
            req, fetch_certificate, fetch));
}

/* Whether gRPC takes @tls's certificate, key and CA: it builds a TLS
 * context for them when a port is added, on a throwaway server bound to
 * a free loopback port. 0 if it does. */
static int tls_check(const struct server_tls *tls)
{
    grpc_server *g = grpc_server_create(NULL, NULL);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_credentials *creds;
    int port;
    char tag;

    grpc_server_register_completion_queue(g, cq, NULL);
    creds = server_credentials(tls, NULL);
    port = creds ? grpc_server_add_http2_port(g, "127.0.0.1:0", creds) : 0;
    if (creds)
        grpc_server_credentials_release(creds);
    grpc_server_shutdown_and_notify(g, cq, &tag);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                      NULL)
               .type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_server_destroy(g);
    grpc_completion_queue_destroy(cq);
    return port ? 0 : -1;
}

int server_tls_reload(struct server *s, const struct server_tls *tls,
                      struct dossier_status *st)
{
    grpc_ssl_server_certificate_config *config, *old;
    int on;

    pthread_mutex_lock(&s->tls.mu);
    on = s->tls.on;
    pthread_mutex_unlock(&s->tls.mu);
    if (!on || !tls || !tls->cert_pem)
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "TLS is turned on or off only by a restart");
    if (client_cert_request(tls) != s->tls.req)
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "whether client certificates are asked for changes "
                       "only by a restart");
    if (tls_check(tls) != 0)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "gRPC refused the new certificate, key or CA (they "
                       "must be PEM and the key must match the certificate)");
    config = certificate_config(tls);
    pthread_mutex_lock(&s->tls.mu);
    old = s->tls.pending;
    s->tls.pending = config;
    pthread_mutex_unlock(&s->tls.mu);
    if (old) /* set by a reload no connection has picked up yet */
        grpc_ssl_server_certificate_config_destroy(old);
    return err_ok(st);
}

int server_bind(struct node *n, const char *listen, size_t max_message,
                const struct server_tls *tls, struct server **out,
                char *bound, size_t cap, struct dossier_status *st)
{
    grpc_arg args[2];
    grpc_channel_args chargs = {2, args};
    grpc_server_credentials *creds;
    struct server *s;
    const char *colon;
    int port;

    *out = NULL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    s->node = n;
    pthread_mutex_init(&s->tls.mu, NULL);
    s->tag_shutdown = (struct tag){TAG_SHUTDOWN, s};
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = (int)max_message;
    /* gRPC binds with SO_REUSEPORT by default: a second node started on
     * the same address would share it silently, the kernel handing each
     * connection to either, so peers and clients reached the wrong node
     * (seen in the tests: a node never heard its leader). Refuse it. */
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
    args[1].value.integer = 0;
    s->grpc = grpc_server_create(&chargs, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->grpc, s->cq, NULL);
    for (size_t i = 0; i < N_METHODS; i++)
        s->registered[i] = grpc_server_register_method(
            s->grpc, methods[i].path, NULL,
            (methods[i].flags & API_STREAM_IN)
                ? GRPC_SRM_PAYLOAD_NONE
                : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
            0);
    creds = server_credentials(tls, &s->tls);
    port = creds ? grpc_server_add_http2_port(s->grpc, listen, creds) : 0;
    if (creds)
        grpc_server_credentials_release(creds);
    if (port == 0) {
        grpc_server_destroy(s->grpc);
        grpc_completion_queue_shutdown(s->cq);
        while (grpc_completion_queue_next(s->cq,
                                          gpr_inf_future(GPR_CLOCK_REALTIME),
                                          NULL)
                   .type != GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(s->cq);
        if (s->tls.pending)
            grpc_ssl_server_certificate_config_destroy(s->tls.pending);
        pthread_mutex_destroy(&s->tls.mu);
        free(s);
        if (tls && tls->cert_pem)
            return err_set(st, DOSSIER_UNAVAILABLE,
                           "cannot listen on %s with TLS (address in use "
                           "or invalid, or gRPC refused the certificate, "
                           "key or CA: they must be PEM and the key must "
                           "match the certificate)",
                           listen);
        return err_set(st, DOSSIER_UNAVAILABLE,
                       "cannot listen on %s (address in use or invalid)",
                       listen);
    }
    colon = strrchr(listen, ':');
    snprintf(bound, cap, "%.*s:%d", colon ? (int)(colon - listen) : 0, listen,
             port);
    *out = s;
    return err_ok(st);
}

void server_start(struct server *s)
{
    s->started = 1;
    grpc_server_start(s->grpc);
    for (size_t i = 0; i < N_METHODS; i++)
        for (int k = 0; k < methods[i].outstanding; k++)
            request_call(s, i);
    request_unknown(s);
}

void server_stop(struct server *s)
{
    if (__atomic_exchange_n(&s->stopping, 1, __ATOMIC_ACQ_REL))
        return;
    s->stop_deadline = gpr_time_add(
        gpr_now(GPR_CLOCK_MONOTONIC),
        gpr_time_from_millis(STOP_GRACE_MS, GPR_TIMESPAN));
    grpc_server_shutdown_and_notify(s->grpc, s->cq, &s->tag_shutdown);
}

void server_run(struct server *s)
{
    int cancelled_all = 0;

    for (;;) {
        gpr_timespec tick = gpr_time_add(
            gpr_now(GPR_CLOCK_MONOTONIC),
            gpr_time_from_millis(500, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(s->cq, tick, NULL);
        struct tag *t;

        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            if (__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE) &&
                !cancelled_all &&
                gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC),
                             s->stop_deadline) > 0) {
                log_printf(LOG_WARN, "cancelling %ld calls still running "
                           "after %d ms", s->in_flight, STOP_GRACE_MS);
                grpc_server_cancel_all_calls(s->grpc);
                cancelled_all = 1;
            } else if (cancelled_all &&
                       gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC),
                                    gpr_time_add(s->stop_deadline,
                                                 gpr_time_from_millis(
                                                     STOP_GRACE_MS,
                                                     GPR_TIMESPAN))) > 0 &&
                       __atomic_load_n(&s->shutdown_seen, __ATOMIC_ACQUIRE) &&
                       !__atomic_load_n(&s->cq_shut, __ATOMIC_ACQUIRE)) {
                /* A call nobody answers must not keep the node up. */
                log_printf(LOG_WARN, "stopping with %ld calls never "
                           "answered", s->in_flight);
                maybe_shut_queue(s, 1);
            }
            continue;
        }
        t = ev.tag;
        switch (t->kind) {
        case TAG_NEW_CALL: {
            struct call *c = t->ptr;
            if (!ev.success) {
                call_free(c); /* the server is shutting down */
                __atomic_fetch_sub(&s->requested, 1, __ATOMIC_ACQ_REL);
                break;
            }
            clock_gettime(CLOCK_MONOTONIC, &c->arrived);
            if (!__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
                request_call(s, (size_t)(c->m - methods));
            /* Counted in flight before it stops counting as requested,
             * so that server_idle() never misses it in between. */
            __atomic_fetch_add(&s->in_flight, 1, __ATOMIC_ACQ_REL);
            __atomic_fetch_sub(&s->requested, 1, __ATOMIC_ACQ_REL);
            call_start(c);
            break;
        }
        case TAG_UNKNOWN_CALL: {
            struct call *c = t->ptr;
            char *method;
            if (!ev.success) {
                call_free(c);
                __atomic_fetch_sub(&s->requested, 1, __ATOMIC_ACQ_REL);
                break;
            }
            clock_gettime(CLOCK_MONOTONIC, &c->arrived);
            if (!__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
                request_unknown(s);
            __atomic_fetch_add(&s->in_flight, 1, __ATOMIC_ACQ_REL);
            __atomic_fetch_sub(&s->requested, 1, __ATOMIC_ACQ_REL);
            method = grpc_slice_to_c_string(c->details_in.method);
            call_fail(c, DOSSIER_UNIMPLEMENTED, "this node has no method %.200s",
                      method);
            gpr_free(method);
            break;
        }
        case TAG_READ: {
            struct call *c = t->ptr;
            /* The barrier may have applied the cluster's first principal:
             * an anonymous read let in before it is refused now. */
            if (!c->principal[0] && !(c->m->flags & (API_PEER | API_PUBLIC)) &&
                auth_on(call_node(c)))
                call_fail(c, DOSSIER_UNAUTHENTICATED,
                          "authentication was turned on: send the metadata "
                          "'authorization: Bearer <token>'");
            else
                c->m->handler(c, c->req);
            break;
        }
        case TAG_AUTH:
            call_start(t->ptr); /* authorized again, now caught up */
            break;
        case TAG_RECV: {
            struct call *c = t->ptr;
            grpc_byte_buffer *bb = ev.success ? c->recv_buf : NULL;
            if (!ev.success && c->recv_buf)
                grpc_byte_buffer_destroy(c->recv_buf);
            c->recv_buf = NULL;
            c->on_recv(c, bb);
            break;
        }
        case TAG_SENT: {
            struct call *c = t->ptr;
            if (c->on_sent)
                c->on_sent(c, ev.success);
            call_unref(c);
            break;
        }
        case TAG_CLOSED: {
            struct call *c = t->ptr;
            if (c->on_closed)
                c->on_closed(c);
            call_unref(c);
            break;
        }
        case TAG_DONE: {
            struct call *c = t->ptr;
            __atomic_fetch_sub(&s->in_flight, 1, __ATOMIC_ACQ_REL);
            if (c->stream)
                call_unref(c);
            else
                call_free(c);
            maybe_shut_queue(s, 0);
            break;
        }
        case TAG_SHUTDOWN:
            __atomic_store_n(&s->shutdown_seen, 1, __ATOMIC_RELEASE);
            maybe_shut_queue(s, 0);
            break;
        }
    }
}

long server_in_flight(struct server *s)
{
    return __atomic_load_n(&s->in_flight, __ATOMIC_RELAXED);
}

int server_idle(struct server *s)
{
    return __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE) &&
           __atomic_load_n(&s->requested, __ATOMIC_ACQUIRE) == 0 &&
           __atomic_load_n(&s->in_flight, __ATOMIC_ACQUIRE) == 0;
}

void server_end_untaken(struct server *s)
{
    if (!__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE) ||
        __atomic_load_n(&s->shutdown_seen, __ATOMIC_ACQUIRE))
        return;
    /* gRPC can hold a call that arrived as the server stopped and that no
     * request will ever take; it would wait for its deadline, and the
     * server's shutdown with it. Closing the connections fails it at once
     * (UNAVAILABLE: the client retries elsewhere), and any call still
     * running. */
    if (server_in_flight(s) > 0)
        log_printf(LOG_WARN, "cancelling %ld calls still running",
                   server_in_flight(s));
    grpc_server_cancel_all_calls(s->grpc);
}

void server_free(struct server *s)
{
    if (!s)
        return;
    if (!s->started) {
        /* Bound but never served: nothing is in flight. */
        grpc_server_shutdown_and_notify(s->grpc, s->cq, &s->tag_shutdown);
        grpc_completion_queue_shutdown(s->cq);
        while (grpc_completion_queue_next(s->cq,
                                          gpr_inf_future(GPR_CLOCK_REALTIME),
                                          NULL)
                   .type != GRPC_QUEUE_SHUTDOWN)
            ;
    }
    grpc_server_destroy(s->grpc);
    grpc_completion_queue_destroy(s->cq);
    if (s->tls.pending)
        grpc_ssl_server_certificate_config_destroy(s->tls.pending);
    pthread_mutex_destroy(&s->tls.mu);
    free(s);
}
