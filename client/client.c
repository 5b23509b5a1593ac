/* libdossier: connecting and the unary calls of the records service. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <sodium.h>
#include <unistd.h>

#include "errors.h"
#include "internal.h"
#include "pbgrpc.h"
#include "pemfile.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_MESSAGE (16u << 20)
#define PURPOSE_MAX 64
#define TOKEN_MAX 128
#define MAX_TARGETS 16
/* Pause before retrying on another node: doubles from the first to the
 * last, never past the deadline. */
#define BACKOFF_FIRST_MS 20
#define BACKOFF_MAX_MS 500

static const char *const method_paths[M_COUNT] = {
    [M_PUT] = "/dossier.v1.Records/Put",
    [M_GET] = "/dossier.v1.Records/Get",
    [M_DELETE] = "/dossier.v1.Records/Delete",
    [M_LIST_BY_SUBJECT] = "/dossier.v1.Records/ListBySubject",
    [M_FIND_BY_INDEX] = "/dossier.v1.Records/FindByIndex",
    [M_SCAN] = "/dossier.v1.Records/Scan",
    [M_DEFINE_KIND] = "/dossier.v1.Schema/DefineKind",
    [M_GET_KIND] = "/dossier.v1.Schema/GetKind",
    [M_LIST_KINDS] = "/dossier.v1.Schema/ListKinds",
    [M_CLUSTER_STATUS] = "/dossier.v1.Cluster/Status",
    [M_CLUSTER_ADD] = "/dossier.v1.Cluster/AddNode",
    [M_CLUSTER_PROMOTE] = "/dossier.v1.Cluster/PromoteNode",
    [M_CLUSTER_REMOVE] = "/dossier.v1.Cluster/RemoveNode",
    [M_CLUSTER_TRANSFER] = "/dossier.v1.Cluster/TransferLeader",
    [M_DEFINE_PURPOSE] = "/dossier.v1.Purposes/Define",
    [M_GET_PURPOSE] = "/dossier.v1.Purposes/Get",
    [M_LIST_PURPOSES] = "/dossier.v1.Purposes/List",
    [M_CONSENT_GRANT] = "/dossier.v1.Consent/Grant",
    [M_CONSENT_WITHDRAW] = "/dossier.v1.Consent/Withdraw",
    [M_CONSENT_GET] = "/dossier.v1.Consent/Get",
    [M_CONSENT_HISTORY] = "/dossier.v1.Consent/History",
    [M_SUBJECT_STATUS] = "/dossier.v1.Subjects/Status",
    [M_SUBJECT_RESTRICT] = "/dossier.v1.Subjects/RestrictProcessing",
    [M_SUBJECT_UNRESTRICT] = "/dossier.v1.Subjects/LiftRestriction",
    [M_SUBJECT_ERASE] = "/dossier.v1.Subjects/Erase",
    [M_AUDIT_READ] = "/dossier.v1.Audit/Read",
    [M_AUDIT_PUBLIC_KEY] = "/dossier.v1.Audit/PublicKey",
    [M_HEALTH_CHECK] = "/grpc.health.v1.Health/Check",
    [M_ERASURE_LEDGER] = "/dossier.v1.Subjects/ErasureLedger",
    [M_BACKUP_CREATE] = "/dossier.v1.Backups/Create",
    [M_BACKUP_LIST] = "/dossier.v1.Backups/List",
    [M_SUBJECT_EXPORT] = "/dossier.v1.Subjects/Export",
    [M_WATCH] = "/dossier.v1.Watch/Changes",
    [M_FIND_DUPLICATES] = "/dossier.v1.Records/FindDuplicates",
    [M_AGGREGATE] = "/dossier.v1.Records/Aggregate",
    [M_SEGMENT_DEFINE] = "/dossier.v1.Segments/Define",
    [M_SEGMENT_RUN] = "/dossier.v1.Segments/Run",
    [M_REQUEST_EXTEND] = "/dossier.v1.Requests/Extend",
    [M_SUBJECT_RECTIFY] = "/dossier.v1.Subjects/Rectify",
    [M_SUBJECT_CERTIFICATE] = "/dossier.v1.Subjects/Certificate",
    [M_REQUEST_FILE] = "/dossier.v1.Requests/File",
    [M_REQUEST_LIST] = "/dossier.v1.Requests/List",
    [M_REQUEST_GET] = "/dossier.v1.Requests/Get",
    [M_REQUEST_EXECUTE] = "/dossier.v1.Requests/Execute",
    [M_REQUEST_COMPLETE] = "/dossier.v1.Requests/Complete",
    [M_PRINCIPAL_ADD] = "/dossier.v1.Principals/Add",
    [M_PRINCIPAL_REMOVE] = "/dossier.v1.Principals/Remove",
    [M_PRINCIPAL_LIST] = "/dossier.v1.Principals/List",
    [M_LIST_LINKS] = "/dossier.v1.Records/ListLinks",
    [M_KEYS_ROTATE] = "/dossier.v1.Keys/Rotate",
    [M_KEYS_STATUS] = "/dossier.v1.Keys/Status",
    [M_DUP_RULES_DEFINE] = "/dossier.v1.DuplicateRules/Define",
    [M_DUP_RULES_GET] = "/dossier.v1.DuplicateRules/Get",
    [M_DUP_RULES_LIST] = "/dossier.v1.DuplicateRules/List",
    [M_MERGE] = "/dossier.v1.Merges/Merge",
    [M_MERGE_UNDO] = "/dossier.v1.Merges/Undo",
    [M_MERGE_CONFIRM] = "/dossier.v1.Merges/Confirm",
    [M_MERGE_LIST] = "/dossier.v1.Merges/List",
    [M_SEGMENT_GET] = "/dossier.v1.Segments/Get",
    [M_SEGMENT_LIST] = "/dossier.v1.Segments/List",
};

struct target {
    char *address;
    grpc_channel *channel;
    void *methods[M_COUNT];
};

struct dossier_client {
    struct target targets[MAX_TARGETS];
    size_t n_targets;
    unsigned current; /* the target tried first; moves on failures */
    char *purpose;
    char *bearer; /* "Bearer <token>", or NULL */
    int64_t timeout_ms;
    size_t max_message; /* largest reply accepted (checked here, see open) */

    /* Asynchronous calls: a completion queue and the thread draining it,
     * started on first use, and calls waiting to be retried. */
    pthread_mutex_t lock;
    pthread_cond_t idle;
    grpc_completion_queue *async_cq;
    pthread_t async_thread;
    int async_started;
    long async_in_flight;
    struct client_call *retries; /* by due time, earliest first */
};

/* One call, across its attempts. Everything an attempt's batch points to
 * lives here until the batch completes. */
struct client_call {
    struct dossier_client *c;
    enum client_method m;
    grpc_byte_buffer *send; /* the encoded request, for every attempt */
    grpc_byte_buffer *attempt_send; /* the copy the attempt in flight sends */
    char purpose[PURPOSE_MAX + 1];
    char request_id[33];    /* hex, "" for none */
    int serializable;
    struct dossier_staleness *staleness;
    gpr_timespec deadline;
    unsigned target;
    int attempts;
    /* The attempt in flight. */
    grpc_call *call;
    grpc_op ops[6];
    grpc_metadata md[4];
    size_t n_md;
    grpc_metadata_array init_md, trail_md;
    grpc_byte_buffer *recv;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    /* Asynchronous calls only. */
    const ProtobufCMessageDescriptor *resp_desc;
    void (*complete)(struct client_call *cc, const struct dossier_status *st,
                     ProtobufCMessage *resp);
    void (*cb)(void); /* the caller's typed callback */
    void *arg;
    gpr_timespec retry_at;
    struct client_call *next;
};

void dossier_client_options_init(struct dossier_client_options *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = DEFAULT_TIMEOUT_MS;
    o->max_message_bytes = DEFAULT_MAX_MESSAGE;
}

static void targets_free(struct dossier_client *c)
{
    for (size_t i = 0; i < c->n_targets; i++) {
        if (c->targets[i].channel)
            grpc_channel_destroy(c->targets[i].channel);
        free(c->targets[i].address);
    }
    c->n_targets = 0;
}

/* The PEM text of @o's TLS files (all NULL for plaintext); the caller
 * frees each with pemfile_free(). Errors: DOSSIER_INVALID_ARGUMENT,
 * naming the file that cannot be read or is not PEM. */
static int client_tls_read(const struct dossier_client_options *o,
                           char *pem[3], struct dossier_status *st)
{
    const char *paths[3] = {o->tls_ca, o->tls_cert, o->tls_key};
    const char *what[3] = {"TLS CA file", "TLS certificate file",
                           "TLS key file"};
    struct dossier_status fst;

    if (!o->tls_cert != !o->tls_key)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "tls_cert and tls_key go together: give both or "
                       "neither");
    if (o->tls_cert && !o->tls_ca)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "a client certificate needs tls_ca: it is only "
                       "presented over TLS");
    for (int i = 0; i < 3; i++)
        if (paths[i] && pemfile_read(paths[i], what[i], 0, &pem[i], &fst)) {
            for (int k = 0; k < i; k++) {
                pemfile_free(pem[k]);
                pem[k] = NULL;
            }
            /* Whatever went wrong, it is the option that is wrong. */
            return err_set(st, DOSSIER_INVALID_ARGUMENT, "%s", fst.message);
        }
    return 0;
}

int dossier_client_open(const struct dossier_client_options *o,
                        struct dossier_client **out, struct dossier_status *st)
{
    grpc_channel_credentials *creds;
    grpc_ssl_pem_key_cert_pair pair;
    char *pem[3] = {NULL, NULL, NULL}; /* TLS: CA, certificate, key */
    struct dossier_client *c;
    grpc_arg args[5];
    grpc_channel_args chargs = {5, args};
    char *list, *save = NULL, *tok;

    *out = NULL;
    if (!o || !o->target || !o->target[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "no target: give the node's host:port");
    if (o->purpose && strlen(o->purpose) > PURPOSE_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose is longer than %d bytes", PURPOSE_MAX);
    if (o->token) {
        size_t n = strlen(o->token);
        if (n > TOKEN_MAX)
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "token is longer than %d bytes", TOKEN_MAX);
        for (size_t i = 0; i < n; i++)
            if (o->token[i] <= ' ' || o->token[i] > '~')
                return err_set(st, DOSSIER_INVALID_ARGUMENT,
                               "token holds a character that is not "
                               "printable ASCII");
    }
    if (client_tls_read(o, pem, st))
        return st ? st->code : DOSSIER_INVALID_ARGUMENT;
    c = calloc(1, sizeof(*c));
    list = strdup(o->target);
    if (!c || !list) {
        free(c);
        free(list);
        for (int i = 0; i < 3; i++)
            pemfile_free(pem[i]);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    c->purpose = strdup(o->purpose ? o->purpose : "");
    if (o->token && o->token[0]) {
        size_t n = strlen(o->token) + sizeof("Bearer ");
        c->bearer = malloc(n);
        if (c->bearer)
            snprintf(c->bearer, n, "Bearer %s", o->token);
    }
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->idle, NULL);
    grpc_init();
    c->max_message = o->max_message_bytes ? o->max_message_bytes
                                          : DEFAULT_MAX_MESSAGE;
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = (int)c->max_message;
    /* gRPC's minimal filter stack: a call costs the client about a sixth
     * less CPU (measured with dossier-bench, docs/BENCHMARKS.md). It
     * leaves out two filters whose work is done here instead: deadlines
     * are turned back on explicitly, and the reply size limit, which the
     * dropped message-size filter enforced, is checked on every received
     * message (reply_too_large). */
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MINIMAL_STACK;
    args[1].value.integer = 1;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char *)GRPC_ARG_ENABLE_DEADLINE_CHECKS;
    args[2].value.integer = 1;
    /* A node that was down is dialled again within about a second of its
     * return, as the nodes dial each other (node/peer.c): gRPC's own
     * pauses grow to 120 s between attempts, and it resolves the address
     * again at most every 5 s or so. */
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[3].value.integer = 1000;
    args[4].type = GRPC_ARG_INTEGER;
    args[4].key = (char *)GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS;
    args[4].value.integer = 1000;
    /* One set of credentials for every target; they copy the PEM text. */
    pair.cert_chain = pem[1];
    pair.private_key = pem[2];
    creds = pem[0] ? grpc_ssl_credentials_create(pem[0], pem[1] ? &pair : NULL,
                                                 NULL, NULL)
                   : grpc_insecure_credentials_create();
    for (int i = 0; i < 3; i++)
        pemfile_free(pem[i]);
    for (tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        struct target *t;
        while (*tok == ' ')
            tok++;
        if (!*tok)
            continue;
        if (c->n_targets == MAX_TARGETS) {
            free(list);
            targets_free(c);
            free(c->purpose);
            free(c->bearer);
            free(c);
            grpc_channel_credentials_release(creds);
            grpc_shutdown();
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "at most %d targets", MAX_TARGETS);
        }
        t = &c->targets[c->n_targets++];
        t->address = strdup(tok);
        t->channel = grpc_channel_create(tok, creds, &chargs);
        for (int i = 0; i < M_COUNT; i++)
            t->methods[i] = grpc_channel_register_call(t->channel,
                                                       method_paths[i], NULL,
                                                       NULL);
    }
    free(list);
    grpc_channel_credentials_release(creds);
    if (c->n_targets == 0 || !c->purpose ||
        (o->token && o->token[0] && !c->bearer)) {
        targets_free(c);
        free(c->purpose);
        free(c->bearer);
        free(c);
        grpc_shutdown();
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "no target: give the node's host:port");
    }
    *out = c;
    return err_ok(st);
}

void dossier_client_close(struct dossier_client *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    while (c->async_in_flight > 0)
        pthread_cond_wait(&c->idle, &c->lock);
    pthread_mutex_unlock(&c->lock);
    if (c->async_started) {
        grpc_completion_queue_shutdown(c->async_cq);
        pthread_join(c->async_thread, NULL);
        grpc_completion_queue_destroy(c->async_cq);
    }
    targets_free(c);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->idle);
    free(c->purpose);
    if (c->bearer)
        sodium_memzero(c->bearer, strlen(c->bearer));
    free(c->bearer);
    free(c);
    grpc_shutdown();
}

/* Frees what one attempt used. */
static void attempt_release(struct client_call *cc)
{
    if (cc->call)
        grpc_call_unref(cc->call);
    cc->call = NULL;
    if (cc->attempt_send)
        grpc_byte_buffer_destroy(cc->attempt_send);
    cc->attempt_send = NULL;
    if (cc->recv)
        grpc_byte_buffer_destroy(cc->recv);
    cc->recv = NULL;
    for (size_t i = 0; i < cc->n_md; i++)
        grpc_slice_unref(cc->md[i].value);
    cc->n_md = 0;
    /* Destroying does not reset: init again so a second release is safe. */
    grpc_metadata_array_destroy(&cc->init_md);
    grpc_metadata_array_init(&cc->init_md);
    grpc_metadata_array_destroy(&cc->trail_md);
    grpc_metadata_array_init(&cc->trail_md);
    grpc_slice_unref(cc->details);
    cc->details = grpc_empty_slice();
    gpr_free((void *)cc->error_string);
    cc->error_string = NULL;
}

static void call_free(struct client_call *cc)
{
    attempt_release(cc);
    if (cc->send)
        grpc_byte_buffer_destroy(cc->send);
    free(cc);
}

/* Prepares @cc for method @m with request @req (packed here). */
static int call_init(struct dossier_client *c,
                     const struct dossier_call_options *co,
                     enum client_method m, const ProtobufCMessage *req,
                     int write, struct client_call *cc,
                     struct dossier_status *st)
{
    const char *purpose = co && co->purpose ? co->purpose : c->purpose;
    int64_t timeout = co && co->timeout_ms > 0 ? co->timeout_ms : c->timeout_ms;

    if (strlen(purpose) > PURPOSE_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose is longer than %d bytes", PURPOSE_MAX);
    cc->c = c;
    cc->m = m;
    snprintf(cc->purpose, sizeof(cc->purpose), "%s", purpose);
    if (write) {
        /* One id for every attempt of this write: the time in ms (48
         * bits, big-endian) then 80 random bits. The node keeps the ids
         * of recent writes in a table keyed by the id, so ids in time
         * order go in near its end instead of at a random place. */
        unsigned char id[16];
        struct timespec now;
        uint64_t ms;
        clock_gettime(CLOCK_REALTIME, &now);
        ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
        for (int i = 0; i < 6; i++)
            id[i] = (unsigned char)(ms >> (40 - 8 * i));
        randombytes_buf(id + 6, sizeof(id) - 6);
        sodium_bin2hex(cc->request_id, sizeof(cc->request_id), id, sizeof(id));
    }
    cc->serializable = co && co->consistency == DOSSIER_SERIALIZABLE;
    cc->staleness = co ? co->staleness : NULL;
    if (cc->staleness)
        memset(cc->staleness, 0, sizeof(*cc->staleness));
    cc->deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                gpr_time_from_millis(timeout, GPR_TIMESPAN));
    cc->target = __atomic_load_n(&c->current, __ATOMIC_RELAXED) %
                 c->n_targets;
    cc->details = grpc_empty_slice();
    cc->send = pbgrpc_pack(req);
    return 0;
}

/* Creates the call of an attempt of @cc on its target, with its
 * metadata in cc->md. */
static void attempt_call(struct client_call *cc, grpc_completion_queue *cq)
{
    struct target *t = &cc->c->targets[cc->target];

    cc->attempts++;
    cc->status = GRPC_STATUS_UNKNOWN;
    grpc_metadata_array_init(&cc->init_md);
    grpc_metadata_array_init(&cc->trail_md);
    cc->call = grpc_channel_create_registered_call(
        t->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, t->methods[cc->m],
        cc->deadline, NULL);
    cc->n_md = 0;
    if (cc->c->bearer) {
        cc->md[cc->n_md].key = grpc_slice_from_static_string("authorization");
        cc->md[cc->n_md++].value =
            grpc_slice_from_static_string(cc->c->bearer);
    }
    if (cc->purpose[0]) {
        cc->md[cc->n_md].key = grpc_slice_from_static_string("dossier-purpose");
        cc->md[cc->n_md++].value = grpc_slice_from_copied_string(cc->purpose);
    }
    if (cc->request_id[0]) {
        cc->md[cc->n_md].key =
            grpc_slice_from_static_string("dossier-request-id");
        cc->md[cc->n_md++].value =
            grpc_slice_from_copied_string(cc->request_id);
    }
    if (cc->serializable) {
        cc->md[cc->n_md].key =
            grpc_slice_from_static_string("dossier-consistency");
        cc->md[cc->n_md++].value =
            grpc_slice_from_static_string("serializable");
    }
}

/* Starts an attempt of @cc on its target, tagged with @cc itself. */
static int attempt_start(struct client_call *cc, grpc_completion_queue *cq,
                         struct dossier_status *st)
{
    grpc_op *ops = cc->ops;

    attempt_call(cc, cq);
    memset(cc->ops, 0, sizeof(cc->ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = cc->n_md;
    ops[0].data.send_initial_metadata.metadata = cc->n_md ? cc->md : NULL;
    /* gRPC takes the slices out of the buffer it sends: each attempt sends
     * a copy, so that a retry still has the request. */
    cc->attempt_send = grpc_byte_buffer_copy(cc->send);
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = cc->attempt_send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &cc->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &cc->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &cc->trail_md;
    ops[5].data.recv_status_on_client.status = &cc->status;
    ops[5].data.recv_status_on_client.status_details = &cc->details;
    ops[5].data.recv_status_on_client.error_string = &cc->error_string;
    if (grpc_call_start_batch(cc->call, ops, 6, cc, NULL) != GRPC_CALL_OK) {
        attempt_release(cc);
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "the call could not start (invalid metadata: a purpose "
                       "must be printable ASCII)");
    }
    return 0;
}

static uint64_t trailer_u64(const grpc_metadata_array *md, const char *key)
{
    for (size_t i = 0; i < md->count; i++)
        if (grpc_slice_str_cmp(md->metadata[i].key, key) == 0) {
            char buf[32];
            size_t len = GRPC_SLICE_LENGTH(md->metadata[i].value);
            if (len >= sizeof(buf))
                return 0;
            memcpy(buf, GRPC_SLICE_START_PTR(md->metadata[i].value), len);
            buf[len] = '\0';
            return strtoull(buf, NULL, 10);
        }
    return 0;
}

/* DOSSIER_TOO_LARGE (and @st set) when the message @bb is larger than the
 * client accepts, as gRPC's own limit would refuse it; else 0. */
static int reply_too_large(const struct client_call *cc,
                           grpc_byte_buffer *bb, struct dossier_status *st)
{
    size_t len = bb ? grpc_byte_buffer_length(bb) : 0;
    if (len <= cc->c->max_message)
        return 0;
    return err_set(st, DOSSIER_TOO_LARGE,
                   "message too large: a reply of %zu bytes, over the "
                   "client's limit of %zu (max_message_bytes)",
                   len, cc->c->max_message);
}

/* Interprets the completed attempt of @cc into a code, @st and *@resp
 * (decoded as @d). Does not release the attempt. */
static int attempt_outcome(struct client_call *cc,
                           const ProtobufCMessageDescriptor *d,
                           ProtobufCMessage **resp, struct dossier_status *st)
{
    const char *target = cc->c->targets[cc->target].address;
    char name[32] = "";
    int rc;

    *resp = NULL;
    for (size_t i = 0; i < cc->trail_md.count; i++)
        if (grpc_slice_str_cmp(cc->trail_md.metadata[i].key,
                               ERR_METADATA_KEY) == 0) {
            size_t len = GRPC_SLICE_LENGTH(cc->trail_md.metadata[i].value);
            if (len >= sizeof(name))
                len = sizeof(name) - 1;
            memcpy(name, GRPC_SLICE_START_PTR(cc->trail_md.metadata[i].value),
                   len);
            name[len] = '\0';
        }
    if (cc->staleness && cc->serializable) {
        cc->staleness->applied_index =
            trailer_u64(&cc->trail_md, "dossier-applied-index");
        cc->staleness->commit_index =
            trailer_u64(&cc->trail_md, "dossier-commit-index");
    }
    if (cc->status == GRPC_STATUS_OK && !d)
        return err_ok(st); /* a stream: its messages were read already */
    if (cc->status == GRPC_STATUS_OK) {
        rc = reply_too_large(cc, cc->recv, st);
        if (rc)
            return rc;
        *resp = cc->recv ? pbgrpc_unpack(cc->recv, d) : NULL;
        return *resp ? err_ok(st)
                     : err_set(st, DOSSIER_INTERNAL,
                               "the node sent a reply that does not decode");
    }
    {
        char *text = grpc_slice_to_c_string(cc->details);
        rc = err_from_grpc(cc->status, name[0] ? name : NULL);
        if (!name[0] && cc->status == GRPC_STATUS_UNAVAILABLE)
            err_set(st, rc, "cannot reach %s: %s", target,
                    text[0] ? text : "unavailable");
        else if (!name[0] && cc->status == GRPC_STATUS_DEADLINE_EXCEEDED)
            err_set(st, rc, "no answer from %s in time", target);
        else if (!name[0] && cc->status == GRPC_STATUS_RESOURCE_EXHAUSTED)
            err_set(st, rc, "message too large: %s", text);
        else
            err_set(st, rc, "%s", text[0] ? text : dossier_code_message(rc));
        gpr_free(text);
    }
    return rc;
}

static int64_t backoff_ms(const struct client_call *cc);

/* 1 when @rc after an attempt of @cc is worth another attempt, on the next
 * node: the node was unreachable, had no leader, or lost its leadership,
 * and the deadline leaves room for another try after the pause (else the
 * caller hears of the last failure rather than of a deadline). Writes are
 * safe to repeat: their request id makes a second application a no-op. */
static int retryable(const struct client_call *cc, int rc)
{
    gpr_timespec next = gpr_time_add(
        gpr_now(GPR_CLOCK_REALTIME),
        gpr_time_from_millis(backoff_ms(cc) + 10, GPR_TIMESPAN));
    /* CANCELLED: libdossier cancels nothing itself, so the node did, as
     * it stopped with the call unanswered (gRPC cancels calls a stopping
     * server never took up). Like UNAVAILABLE, the call may be tried on
     * another node: a write carries its request id. */
    return (rc == DOSSIER_UNAVAILABLE || rc == DOSSIER_CANCELLED) &&
           gpr_time_cmp(next, cc->deadline) < 0;
}

static int64_t backoff_ms(const struct client_call *cc)
{
    int64_t ms = BACKOFF_FIRST_MS;
    for (int i = 1; i < cc->attempts && ms < BACKOFF_MAX_MS; i++)
        ms *= 2;
    if (ms > BACKOFF_MAX_MS)
        ms = BACKOFF_MAX_MS;
    /* A first failure on a cluster: try the next node at once. */
    if (cc->attempts == 1 && cc->c->n_targets > 1)
        ms = 0;
    return ms;
}

/* Moves @cc (and the client's first choice) to the next target. */
static void next_target(struct client_call *cc)
{
    struct dossier_client *c = cc->c;
    unsigned next = (cc->target + 1) % c->n_targets;
    __atomic_compare_exchange_n(&c->current, &(unsigned){cc->target}, next, 0,
                                __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    cc->target = next;
}

int client_unary(struct dossier_client *c, const struct dossier_call_options *co,
                 enum client_method m, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc,
                 ProtobufCMessage **resp, struct dossier_status *st)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    struct client_call *cc = calloc(1, sizeof(*cc));
    int rc;

    *resp = NULL;
    if (!cc) {
        grpc_completion_queue_shutdown(cq);
        grpc_completion_queue_destroy(cq);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    rc = call_init(c, co, m, req, client_method_is_write(m), cc, st);
    while (rc == 0) {
        struct dossier_status prev;
        int had_prev = cc->attempts > 0 && st;
        if (had_prev)
            prev = *st;
        rc = attempt_start(cc, cq, st);
        if (rc)
            break;
        grpc_completion_queue_pluck(cq, cc, gpr_inf_future(GPR_CLOCK_REALTIME),
                                    NULL);
        rc = attempt_outcome(cc, resp_desc, resp, st);
        attempt_release(cc);
        if (rc == DOSSIER_DEADLINE_EXCEEDED && had_prev &&
            prev.code == DOSSIER_UNAVAILABLE) {
            /* Out of time while retrying: the failure that made us retry
             * says more than the deadline does. */
            *st = prev;
            rc = prev.code;
        }
        if (!retryable(cc, rc))
            break;
        {
            int64_t wait = backoff_ms(cc);
            next_target(cc);
            if (wait)
                usleep((useconds_t)wait * 1000);
        }
        rc = 0;
    }
    call_free(cc);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return rc;
}

int64_t client_timeout_ms(const struct dossier_client *c)
{
    return c->timeout_ms;
}

/* Runs one batch of @n ops on @cc's call and waits for it. */
static int stream_batch(struct client_call *cc, grpc_completion_queue *cq,
                        grpc_op *ops, size_t n)
{
    if (grpc_call_start_batch(cc->call, ops, n, cc, NULL) != GRPC_CALL_OK)
        return -1;
    grpc_completion_queue_pluck(cq, cc, gpr_inf_future(GPR_CLOCK_REALTIME),
                                NULL);
    return 0;
}

int client_stream(struct dossier_client *c,
                  const struct dossier_call_options *co, enum client_method m,
                  const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *d, client_stream_cb on_msg,
                  void *arg, struct dossier_status *st)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    struct client_call *cc = calloc(1, sizeof(*cc));
    int rc;

    if (!cc) {
        grpc_completion_queue_shutdown(cq);
        grpc_completion_queue_destroy(cq);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    rc = call_init(c, co, m, req, 0, cc, st);
    while (rc == 0) {
        grpc_op ops[4];
        size_t got = 0;
        int stopped = 0;
        ProtobufCMessage *none;

        attempt_call(cc, cq);
        memset(ops, 0, sizeof(ops));
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[0].data.send_initial_metadata.count = cc->n_md;
        ops[0].data.send_initial_metadata.metadata = cc->n_md ? cc->md : NULL;
        cc->attempt_send = grpc_byte_buffer_copy(cc->send);
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = cc->attempt_send;
        ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[3].data.recv_initial_metadata.recv_initial_metadata = &cc->init_md;
        if (stream_batch(cc, cq, ops, 4) != 0) {
            attempt_release(cc);
            rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                         "the call could not start (invalid metadata)");
            break;
        }
        for (;;) {
            ProtobufCMessage *msg;
            memset(ops, 0, sizeof(ops));
            ops[0].op = GRPC_OP_RECV_MESSAGE;
            ops[0].data.recv_message.recv_message = &cc->recv;
            if (stream_batch(cc, cq, ops, 1) != 0 || !cc->recv)
                break; /* the end, or a failure the status tells */
            rc = reply_too_large(cc, cc->recv, st);
            msg = rc ? NULL : pbgrpc_unpack(cc->recv, d);
            grpc_byte_buffer_destroy(cc->recv);
            cc->recv = NULL;
            if (rc) {
                stopped = 1;
            } else if (!msg) {
                rc = err_set(st, DOSSIER_INTERNAL,
                             "the node sent a message that does not decode");
                stopped = 1;
            } else {
                got++;
                rc = on_msg(arg, msg, st);
                protobuf_c_message_free_unpacked(msg, NULL);
                stopped = rc != 0;
            }
            if (stopped) {
                grpc_call_cancel(cc->call, NULL);
                break;
            }
        }
        memset(ops, 0, sizeof(ops));
        ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[0].data.recv_status_on_client.trailing_metadata = &cc->trail_md;
        ops[0].data.recv_status_on_client.status = &cc->status;
        ops[0].data.recv_status_on_client.status_details = &cc->details;
        ops[0].data.recv_status_on_client.error_string = &cc->error_string;
        stream_batch(cc, cq, ops, 1);
        if (!stopped)
            rc = attempt_outcome(cc, NULL, &none, st);
        attempt_release(cc);
        /* Only a stream that delivered nothing may start again elsewhere. */
        if (stopped || got || !retryable(cc, rc))
            break;
        {
            int64_t wait = backoff_ms(cc);
            next_target(cc);
            if (wait)
                usleep((useconds_t)wait * 1000);
        }
        rc = 0;
    }
    call_free(cc);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Asynchronous calls */

static void async_done(struct dossier_client *c)
{
    pthread_mutex_lock(&c->lock);
    if (--c->async_in_flight == 0)
        pthread_cond_broadcast(&c->idle);
    pthread_mutex_unlock(&c->lock);
}

/* Starts the next attempt of @cc, or finishes it with @st if it cannot. */
static void async_attempt(struct client_call *cc)
{
    struct dossier_status st;
    if (attempt_start(cc, cc->c->async_cq, &st) != 0) {
        struct dossier_client *c = cc->c;
        cc->complete(cc, &st, NULL);
        call_free(cc);
        async_done(c);
    }
}

static void *async_main(void *arg)
{
    struct dossier_client *c = arg;

    for (;;) {
        gpr_timespec wait = gpr_inf_future(GPR_CLOCK_REALTIME);
        grpc_event ev;
        struct client_call *cc;
        struct dossier_status st;
        ProtobufCMessage *resp;
        int rc;

        /* Start the retries that are due; sleep until the next one. */
        for (;;) {
            pthread_mutex_lock(&c->lock);
            cc = c->retries;
            if (cc && gpr_time_cmp(cc->retry_at,
                                   gpr_now(GPR_CLOCK_REALTIME)) <= 0) {
                c->retries = cc->next;
                pthread_mutex_unlock(&c->lock);
                async_attempt(cc);
                continue;
            }
            if (cc)
                wait = cc->retry_at;
            pthread_mutex_unlock(&c->lock);
            break;
        }
        ev = grpc_completion_queue_next(c->async_cq, wait, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_QUEUE_TIMEOUT)
            continue;
        cc = ev.tag;
        rc = attempt_outcome(cc, cc->resp_desc, &resp, &st);
        attempt_release(cc);
        if (retryable(cc, rc)) {
            struct client_call **pp;
            cc->retry_at = gpr_time_add(
                gpr_now(GPR_CLOCK_REALTIME),
                gpr_time_from_millis(backoff_ms(cc), GPR_TIMESPAN));
            next_target(cc);
            pthread_mutex_lock(&c->lock);
            for (pp = &c->retries;
                 *pp && gpr_time_cmp((*pp)->retry_at, cc->retry_at) <= 0;
                 pp = &(*pp)->next)
                ;
            cc->next = *pp;
            *pp = cc;
            pthread_mutex_unlock(&c->lock);
            continue;
        }
        cc->complete(cc, &st, resp);
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        call_free(cc);
        async_done(c);
    }
    return NULL;
}

/* Starts asynchronous call @cc (taken: freed after its callback). */
static int async_start(struct dossier_client *c,
                       const struct dossier_call_options *co,
                       enum client_method m, const ProtobufCMessage *req,
                       struct client_call *cc, struct dossier_status *st)
{
    int rc = 0;

    pthread_mutex_lock(&c->lock);
    if (!c->async_started) {
        c->async_cq = grpc_completion_queue_create_for_next(NULL);
        if (pthread_create(&c->async_thread, NULL, async_main, c) != 0) {
            grpc_completion_queue_shutdown(c->async_cq);
            grpc_completion_queue_destroy(c->async_cq);
            rc = err_set(st, DOSSIER_INTERNAL,
                         "cannot start the completion thread");
        } else {
            c->async_started = 1;
        }
    }
    if (rc == 0)
        c->async_in_flight++;
    pthread_mutex_unlock(&c->lock);
    if (rc == 0)
        rc = call_init(c, co, m, req, client_method_is_write(m), cc, st);
    if (rc == 0)
        rc = attempt_start(cc, c->async_cq, st);
    if (rc) {
        call_free(cc);
        async_done(c);
    }
    return rc;
}

static void put_complete(struct client_call *cc, const struct dossier_status *st,
                         ProtobufCMessage *msg)
{
    Dossier__V1__PutResponse *resp = (Dossier__V1__PutResponse *)msg;
    struct dossier_put_result res;

    if (resp) {
        res.version = resp->version;
        res.created = resp->created;
        res.updated_at_ms = resp->updated_at_ms;
    }
    ((dossier_put_cb)cc->cb)(cc->arg, st, resp ? &res : NULL);
}

static void get_complete(struct client_call *cc, const struct dossier_status *st,
                         ProtobufCMessage *msg)
{
    Dossier__V1__GetResponse *resp = (Dossier__V1__GetResponse *)msg;
    struct dossier_status nomem;
    struct dossier_record *r = NULL;

    if (resp) {
        r = resp->record ? record_from_pb(resp->record) : NULL;
        if (!r) {
            err_set(&nomem, resp->record ? DOSSIER_NOMEM : DOSSIER_INTERNAL,
                    "%s", resp->record ? "out of memory" : "no record in reply");
            st = &nomem;
        }
    }
    ((dossier_get_cb)cc->cb)(cc->arg, st, r);
}

/* ------------------------------------------------------------------ */
/* Records */

static int need(const char *s, const char *what, struct dossier_status *st)
{
    if (!s || !s[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "%s is missing", what);
    return 0;
}

int dossier_put(struct dossier_client *c, const struct dossier_call_options *co,
                const struct dossier_record *r, uint64_t expected_version,
                struct dossier_put_result *res, struct dossier_status *st)
{
    Dossier__V1__PutRequest req = DOSSIER__V1__PUT_REQUEST__INIT;
    Dossier__V1__PutResponse *resp;
    struct record_pb pb;
    int rc;

    if (!r)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "record is missing");
    rc = record_pb_init(&pb, r, st);
    if (rc)
        return rc;
    req.record = &pb.msg;
    if (expected_version != DOSSIER_ANY_VERSION) {
        req.expect_case = DOSSIER__V1__PUT_REQUEST__EXPECT_EXPECTED_VERSION;
        req.expected_version = expected_version;
    }
    rc = client_unary(c, co, M_PUT, &req.base,
                      &dossier__v1__put_response__descriptor,
                      (ProtobufCMessage **)&resp, st);
    record_pb_release(&pb);
    if (rc)
        return rc;
    if (res) {
        res->version = resp->version;
        res->created = resp->created;
        res->updated_at_ms = resp->updated_at_ms;
    }
    dossier__v1__put_response__free_unpacked(resp, NULL);
    return 0;
}

int dossier_get(struct dossier_client *c, const struct dossier_call_options *co,
                const char *kind, const char *id, struct dossier_record **out,
                struct dossier_status *st)
{
    Dossier__V1__GetRequest req = DOSSIER__V1__GET_REQUEST__INIT;
    Dossier__V1__GetResponse *resp;
    int rc;

    *out = NULL;
    if ((rc = need(kind, "kind", st)) || (rc = need(id, "id", st)))
        return rc;
    req.kind = (char *)kind;
    req.id = (char *)id;
    rc = client_unary(c, co, M_GET, &req.base,
                      &dossier__v1__get_response__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    if (!resp->record) {
        dossier__v1__get_response__free_unpacked(resp, NULL);
        return err_set(st, DOSSIER_INTERNAL, "the reply holds no record");
    }
    *out = record_from_pb(resp->record);
    dossier__v1__get_response__free_unpacked(resp, NULL);
    return *out ? 0 : err_set(st, DOSSIER_NOMEM, "out of memory");
}

int dossier_delete(struct dossier_client *c,
                   const struct dossier_call_options *co, const char *kind,
                   const char *id, uint64_t expected_version,
                   uint64_t *deleted_version, struct dossier_status *st)
{
    Dossier__V1__DeleteRequest req = DOSSIER__V1__DELETE_REQUEST__INIT;
    Dossier__V1__DeleteResponse *resp;
    int rc;

    if ((rc = need(kind, "kind", st)) || (rc = need(id, "id", st)))
        return rc;
    req.kind = (char *)kind;
    req.id = (char *)id;
    if (expected_version != DOSSIER_ANY_VERSION) {
        req.expect_case = DOSSIER__V1__DELETE_REQUEST__EXPECT_EXPECTED_VERSION;
        req.expected_version = expected_version;
    }
    rc = client_unary(c, co, M_DELETE, &req.base,
                      &dossier__v1__delete_response__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    if (deleted_version)
        *deleted_version = resp->version;
    dossier__v1__delete_response__free_unpacked(resp, NULL);
    return 0;
}

void dossier_page_release(struct dossier_page *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_records; i++)
        dossier_record_free(p->records[i]);
    free(p->records);
    free(p->next_page_token);
    memset(p, 0, sizeof(*p));
}

/* Sends a listing request and turns its RecordPage into @out. */
static int page_call(struct dossier_client *c,
                     const struct dossier_call_options *co, enum client_method m,
                     const ProtobufCMessage *req, struct dossier_page *out,
                     struct dossier_status *st)
{
    Dossier__V1__RecordPage *resp;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = client_unary(c, co, m, req, &dossier__v1__record_page__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    out->records = calloc(resp->n_records ? resp->n_records : 1,
                          sizeof(*out->records));
    if (!out->records)
        goto nomem;
    for (size_t i = 0; i < resp->n_records; i++) {
        out->records[i] = record_from_pb(resp->records[i]);
        if (!out->records[i])
            goto nomem;
        out->n_records++;
    }
    if (resp->next_page_token[0]) {
        out->next_page_token = strdup(resp->next_page_token);
        if (!out->next_page_token)
            goto nomem;
    }
    out->revision = resp->revision;
    dossier__v1__record_page__free_unpacked(resp, NULL);
    return 0;
nomem:
    dossier__v1__record_page__free_unpacked(resp, NULL);
    dossier_page_release(out);
    return err_set(st, DOSSIER_NOMEM, "out of memory");
}

int dossier_list_by_subject(struct dossier_client *c,
                            const struct dossier_call_options *co,
                            const char *subject_id, const char *kind,
                            const struct dossier_page_request *pr,
                            struct dossier_page *out, struct dossier_status *st)
{
    Dossier__V1__ListBySubjectRequest req =
        DOSSIER__V1__LIST_BY_SUBJECT_REQUEST__INIT;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = need(subject_id, "subject_id", st)))
        return rc;
    req.subject_id = (char *)subject_id;
    req.kind = str_or_empty(kind);
    if (pr) {
        req.page_size = pr->page_size;
        req.page_token = str_or_empty(pr->page_token);
    }
    return page_call(c, co, M_LIST_BY_SUBJECT, &req.base, out, st);
}

int dossier_find(struct dossier_client *c, const struct dossier_call_options *co,
                 const char *kind, const char *field,
                 const struct dossier_value *v,
                 const struct dossier_page_request *pr, struct dossier_page *out,
                 struct dossier_status *st)
{
    Dossier__V1__FindByIndexRequest req =
        DOSSIER__V1__FIND_BY_INDEX_REQUEST__INIT;
    Dossier__V1__Value value = DOSSIER__V1__VALUE__INIT;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = need(kind, "kind", st)) || (rc = need(field, "field", st)))
        return rc;
    if (!v || value_to_pb(v, &value) != 0 ||
        value.kind_case == DOSSIER__V1__VALUE__KIND__NOT_SET)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "value is missing");
    req.kind = (char *)kind;
    req.field = (char *)field;
    req.value = &value;
    if (pr) {
        req.page_size = pr->page_size;
        req.page_token = str_or_empty(pr->page_token);
    }
    return page_call(c, co, M_FIND_BY_INDEX, &req.base, out, st);
}

int dossier_scan(struct dossier_client *c, const struct dossier_call_options *co,
                 const char *kind, const struct dossier_page_request *pr,
                 struct dossier_page *out, struct dossier_status *st)
{
    Dossier__V1__ScanRequest req = DOSSIER__V1__SCAN_REQUEST__INIT;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = need(kind, "kind", st)))
        return rc;
    req.kind = (char *)kind;
    if (pr) {
        req.page_size = pr->page_size;
        req.page_token = str_or_empty(pr->page_token);
    }
    return page_call(c, co, M_SCAN, &req.base, out, st);
}

/* ------------------------------------------------------------------ */
/* Links */

void dossier_link_page_release(struct dossier_link_page *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_links; i++) {
        free(p->links[i].label);
        dossier_record_free(p->links[i].record);
    }
    free(p->links);
    free(p->next_page_token);
    memset(p, 0, sizeof(*p));
}

int dossier_list_links(struct dossier_client *c,
                       const struct dossier_call_options *co, const char *kind,
                       const char *id, enum dossier_link_direction direction,
                       const char *label, const struct dossier_page_request *pr,
                       struct dossier_link_page *out, struct dossier_status *st)
{
    Dossier__V1__ListLinksRequest req = DOSSIER__V1__LIST_LINKS_REQUEST__INIT;
    Dossier__V1__LinkedPage *resp;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = need(kind, "kind", st)) || (rc = need(id, "id", st)))
        return rc;
    req.kind = (char *)kind;
    req.id = (char *)id;
    /* The public values are the wire's; the node names a wrong one. */
    req.direction = (Dossier__V1__LinkDirection)direction;
    req.label = str_or_empty(label);
    if (pr) {
        req.page_size = pr->page_size;
        req.page_token = str_or_empty(pr->page_token);
    }
    rc = client_unary(c, co, M_LIST_LINKS, &req.base,
                      &dossier__v1__linked_page__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    out->links = calloc(resp->n_links ? resp->n_links : 1,
                        sizeof(*out->links));
    if (!out->links)
        goto nomem;
    for (size_t i = 0; i < resp->n_links; i++) {
        const Dossier__V1__LinkedRecord *l = resp->links[i];
        struct dossier_linked_record *d = &out->links[out->n_links];
        if (!l->record) {
            dossier__v1__linked_page__free_unpacked(resp, NULL);
            dossier_link_page_release(out);
            return err_set(st, DOSSIER_INTERNAL,
                           "a linked record in the reply holds no record");
        }
        d->label = strdup(l->label);
        d->direction = (enum dossier_link_direction)l->direction;
        d->record = record_from_pb(l->record);
        if (!d->label || !d->record) {
            free(d->label);
            dossier_record_free(d->record);
            goto nomem;
        }
        out->n_links++;
    }
    if (resp->next_page_token[0] &&
        !(out->next_page_token = strdup(resp->next_page_token)))
        goto nomem;
    dossier__v1__linked_page__free_unpacked(resp, NULL);
    return 0;
nomem:
    dossier__v1__linked_page__free_unpacked(resp, NULL);
    dossier_link_page_release(out);
    return err_set(st, DOSSIER_NOMEM, "out of memory");
}

/* ------------------------------------------------------------------ */
/* Asynchronous records calls */

int dossier_put_async(struct dossier_client *c,
                      const struct dossier_call_options *co,
                      const struct dossier_record *r, uint64_t expected_version,
                      dossier_put_cb cb, void *arg, struct dossier_status *st)
{
    Dossier__V1__PutRequest req = DOSSIER__V1__PUT_REQUEST__INIT;
    struct client_call *cc;
    struct record_pb pb;
    int rc;

    if (!r || !cb)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "record and callback are required");
    cc = calloc(1, sizeof(*cc));
    if (!cc)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    rc = record_pb_init(&pb, r, st);
    if (rc) {
        free(cc);
        return rc;
    }
    req.record = &pb.msg;
    if (expected_version != DOSSIER_ANY_VERSION) {
        req.expect_case = DOSSIER__V1__PUT_REQUEST__EXPECT_EXPECTED_VERSION;
        req.expected_version = expected_version;
    }
    cc->resp_desc = &dossier__v1__put_response__descriptor;
    cc->complete = put_complete;
    cc->cb = (void (*)(void))cb;
    cc->arg = arg;
    rc = async_start(c, co, M_PUT, &req.base, cc, st);
    record_pb_release(&pb);
    return rc;
}

int dossier_get_async(struct dossier_client *c,
                      const struct dossier_call_options *co, const char *kind,
                      const char *id, dossier_get_cb cb, void *arg,
                      struct dossier_status *st)
{
    Dossier__V1__GetRequest req = DOSSIER__V1__GET_REQUEST__INIT;
    struct client_call *cc;
    int rc;

    if ((rc = need(kind, "kind", st)) || (rc = need(id, "id", st)))
        return rc;
    if (!cb)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "callback is required");
    cc = calloc(1, sizeof(*cc));
    if (!cc)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    req.kind = (char *)kind;
    req.id = (char *)id;
    cc->resp_desc = &dossier__v1__get_response__descriptor;
    cc->complete = get_complete;
    cc->cb = (void (*)(void))cb;
    cc->arg = arg;
    return async_start(c, co, M_GET, &req.base, cc, st);
}
