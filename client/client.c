/* libdossier: connecting and the unary calls of the records service. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "errors.h"
#include "internal.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_MESSAGE (16u << 20)
#define PURPOSE_MAX 64

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
};

struct dossier_client {
    grpc_channel *channel;
    void *methods[M_COUNT];
    char *target;
    char *purpose;
    int64_t timeout_ms;

    /* Asynchronous calls: a completion queue and the thread draining it,
     * started on first use. */
    pthread_mutex_t lock;
    pthread_cond_t idle;
    grpc_completion_queue *async_cq;
    pthread_t async_thread;
    int async_started;
    long async_in_flight;
};

/* One call in flight; everything its batch points to lives here until the
 * batch completes. */
struct client_call {
    struct dossier_client *c;
    grpc_call *call;
    grpc_op ops[6];
    grpc_metadata md[1];
    size_t n_md;
    grpc_metadata_array init_md, trail_md;
    grpc_byte_buffer *send, *recv;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    int64_t timeout_ms;
    /* Asynchronous calls only. */
    const ProtobufCMessageDescriptor *resp_desc;
    void (*complete)(struct client_call *cc, const struct dossier_status *st,
                     ProtobufCMessage *resp);
    void (*cb)(void); /* the caller's typed callback */
    void *arg;
};

void dossier_client_options_init(struct dossier_client_options *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = DEFAULT_TIMEOUT_MS;
    o->max_message_bytes = DEFAULT_MAX_MESSAGE;
}

int dossier_client_open(const struct dossier_client_options *o,
                        struct dossier_client **out, struct dossier_status *st)
{
    struct dossier_client *c;
    grpc_channel_credentials *creds;
    grpc_arg args[1];
    grpc_channel_args chargs = {1, args};

    *out = NULL;
    if (!o || !o->target || !o->target[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "no target: give the node's host:port");
    if (o->purpose && strlen(o->purpose) > PURPOSE_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose is longer than %d bytes", PURPOSE_MAX);
    c = calloc(1, sizeof(*c));
    if (!c)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    c->target = strdup(o->target);
    c->purpose = strdup(o->purpose ? o->purpose : "");
    if (!c->target || !c->purpose) {
        free(c->target);
        free(c->purpose);
        free(c);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->idle, NULL);
    grpc_init();
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = (int)(o->max_message_bytes
                                      ? o->max_message_bytes
                                      : DEFAULT_MAX_MESSAGE);
    creds = grpc_insecure_credentials_create();
    c->channel = grpc_channel_create(c->target, creds, &chargs);
    grpc_channel_credentials_release(creds);
    for (int i = 0; i < M_COUNT; i++)
        c->methods[i] =
            grpc_channel_register_call(c->channel, method_paths[i], NULL, NULL);
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
    grpc_channel_destroy(c->channel);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->idle);
    free(c->target);
    free(c->purpose);
    free(c);
    grpc_shutdown();
}

static grpc_byte_buffer *pack(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    grpc_slice sl = grpc_slice_malloc(len);
    grpc_byte_buffer *bb;
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(sl));
    bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

static ProtobufCMessage *unpack(grpc_byte_buffer *bb,
                                const ProtobufCMessageDescriptor *d)
{
    grpc_byte_buffer_reader r;
    ProtobufCMessage *m;
    grpc_slice sl;

    if (!grpc_byte_buffer_reader_init(&r, bb))
        return NULL;
    sl = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    m = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(sl),
                                  GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    return m;
}

static void call_release(struct client_call *cc)
{
    if (cc->call)
        grpc_call_unref(cc->call);
    if (cc->recv)
        grpc_byte_buffer_destroy(cc->recv);
    if (cc->send)
        grpc_byte_buffer_destroy(cc->send);
    if (cc->n_md)
        grpc_slice_unref(cc->md[0].value);
    grpc_metadata_array_destroy(&cc->init_md);
    grpc_metadata_array_destroy(&cc->trail_md);
    grpc_slice_unref(cc->details);
    gpr_free((void *)cc->error_string);
}

/* Starts call @cc of method @m on @cq with @req (packed here), tagged with
 * @cc itself. On failure @cc holds nothing. */
static int call_start(struct dossier_client *c,
                      const struct dossier_call_options *co,
                      enum client_method m, const ProtobufCMessage *req,
                      grpc_completion_queue *cq, struct client_call *cc,
                      struct dossier_status *st)
{
    const char *purpose = co && co->purpose ? co->purpose : c->purpose;
    gpr_timespec deadline;
    grpc_op *ops = cc->ops;

    cc->c = c;
    cc->timeout_ms = co && co->timeout_ms > 0 ? co->timeout_ms : c->timeout_ms;
    cc->status = GRPC_STATUS_UNKNOWN;
    cc->details = grpc_empty_slice();
    if (strlen(purpose) > PURPOSE_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose is longer than %d bytes", PURPOSE_MAX);
    deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                            gpr_time_from_millis(cc->timeout_ms, GPR_TIMESPAN));
    cc->call = grpc_channel_create_registered_call(
        c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, c->methods[m], deadline,
        NULL);
    cc->send = pack(req);
    grpc_metadata_array_init(&cc->init_md);
    grpc_metadata_array_init(&cc->trail_md);
    if (purpose[0]) {
        cc->md[0].key = grpc_slice_from_static_string("dossier-purpose");
        cc->md[0].value = grpc_slice_from_copied_string(purpose);
        cc->n_md = 1;
    }
    memset(cc->ops, 0, sizeof(cc->ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = cc->n_md;
    ops[0].data.send_initial_metadata.metadata = cc->n_md ? cc->md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = cc->send;
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
        call_release(cc);
        memset(cc, 0, sizeof(*cc));
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "the call could not start (invalid metadata: a purpose "
                       "must be printable ASCII)");
    }
    return 0;
}

/* Turns the outcome of completed call @cc into a code, @st and *@resp
 * (decoded as @d), then releases @cc's resources. */
static int call_finish(struct client_call *cc,
                       const ProtobufCMessageDescriptor *d,
                       ProtobufCMessage **resp, struct dossier_status *st)
{
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
    if (cc->status == GRPC_STATUS_OK) {
        *resp = cc->recv ? unpack(cc->recv, d) : NULL;
        rc = *resp ? err_ok(st)
                   : err_set(st, DOSSIER_INTERNAL,
                             "the node sent a reply that does not decode");
    } else {
        char *text = grpc_slice_to_c_string(cc->details);
        rc = err_from_grpc(cc->status, name[0] ? name : NULL);
        if (!name[0] && cc->status == GRPC_STATUS_UNAVAILABLE)
            err_set(st, rc, "cannot reach %s: %s", cc->c->target,
                    text[0] ? text : "unavailable");
        else if (!name[0] && cc->status == GRPC_STATUS_DEADLINE_EXCEEDED)
            err_set(st, rc, "no answer from %s within %lld ms", cc->c->target,
                    (long long)cc->timeout_ms);
        else if (!name[0] && cc->status == GRPC_STATUS_RESOURCE_EXHAUSTED)
            err_set(st, rc, "message too large: %s", text);
        else
            err_set(st, rc, "%s", text[0] ? text : dossier_code_message(rc));
        gpr_free(text);
    }
    call_release(cc);
    return rc;
}

int client_unary(struct dossier_client *c, const struct dossier_call_options *co,
                 enum client_method m, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc,
                 ProtobufCMessage **resp, struct dossier_status *st)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    struct client_call cc = {0};
    int rc;

    *resp = NULL;
    rc = call_start(c, co, m, req, cq, &cc, st);
    if (rc == 0) {
        grpc_completion_queue_pluck(cq, &cc, gpr_inf_future(GPR_CLOCK_REALTIME),
                                    NULL);
        rc = call_finish(&cc, resp_desc, resp, st);
    }
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Asynchronous calls */

static void *async_main(void *arg)
{
    struct dossier_client *c = arg;

    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            c->async_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        struct client_call *cc;
        struct dossier_status st;
        ProtobufCMessage *resp;

        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        cc = ev.tag;
        call_finish(cc, cc->resp_desc, &resp, &st);
        cc->complete(cc, &st, resp);
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        free(cc);
        pthread_mutex_lock(&c->lock);
        if (--c->async_in_flight == 0)
            pthread_cond_broadcast(&c->idle);
        pthread_mutex_unlock(&c->lock);
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
        rc = call_start(c, co, m, req, c->async_cq, cc, st);
    if (rc) {
        free(cc);
        pthread_mutex_lock(&c->lock);
        if (--c->async_in_flight == 0)
            pthread_cond_broadcast(&c->idle);
        pthread_mutex_unlock(&c->lock);
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
