/* libdossier: connecting and the unary calls of the records service. */
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
    grpc_channel_destroy(c->channel);
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

int client_unary(struct dossier_client *c, const struct dossier_call_options *co,
                 enum client_method m, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc,
                 ProtobufCMessage **resp, struct dossier_status *st)
{
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_op ops[6];
    grpc_metadata md[1];
    grpc_metadata_array init_md, trail_md;
    grpc_byte_buffer *send = NULL, *recv = NULL;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    const char *error_string = NULL;
    const char *purpose = co && co->purpose ? co->purpose : c->purpose;
    int64_t timeout = co && co->timeout_ms > 0 ? co->timeout_ms : c->timeout_ms;
    char name[32] = "";
    size_t n_md = 0;
    gpr_timespec deadline;
    grpc_event ev;
    int rc;

    *resp = NULL;
    if (strlen(purpose) > PURPOSE_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose is longer than %d bytes", PURPOSE_MAX);
    cq = grpc_completion_queue_create_for_pluck(NULL);
    deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                            gpr_time_from_millis(timeout, GPR_TIMESPAN));
    call = grpc_channel_create_registered_call(c->channel, NULL,
                                               GRPC_PROPAGATE_DEFAULTS, cq,
                                               c->methods[m], deadline, NULL);
    send = pack(req);
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    if (purpose[0]) {
        md[0].key = grpc_slice_from_static_string("dossier-purpose");
        md[0].value = grpc_slice_from_copied_string(purpose);
        n_md = 1;
    }
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = n_md;
    ops[0].data.send_initial_metadata.metadata = n_md ? md : NULL;
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
    ops[5].data.recv_status_on_client.error_string = &error_string;
    if (grpc_call_start_batch(call, ops, 6, call, NULL) != GRPC_CALL_OK) {
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "the call could not start (invalid metadata: a purpose "
                     "must be printable ASCII)");
        grpc_call_unref(call);
        goto out_noev;
    }
    ev = grpc_completion_queue_pluck(cq, call,
                                     gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    (void)ev;
    grpc_call_unref(call);

    for (size_t i = 0; i < trail_md.count; i++)
        if (grpc_slice_str_cmp(trail_md.metadata[i].key, ERR_METADATA_KEY) ==
            0) {
            size_t len = GRPC_SLICE_LENGTH(trail_md.metadata[i].value);
            if (len >= sizeof(name))
                len = sizeof(name) - 1;
            memcpy(name, GRPC_SLICE_START_PTR(trail_md.metadata[i].value), len);
            name[len] = '\0';
        }
    if (status == GRPC_STATUS_OK) {
        *resp = recv ? unpack(recv, resp_desc) : NULL;
        rc = *resp ? err_ok(st)
                   : err_set(st, DOSSIER_INTERNAL,
                             "the node sent a reply that does not decode");
    } else {
        char *text = grpc_slice_to_c_string(details);
        rc = err_from_grpc(status, name[0] ? name : NULL);
        if (!name[0] && status == GRPC_STATUS_UNAVAILABLE)
            err_set(st, rc, "cannot reach %s: %s", c->target,
                    text[0] ? text : "unavailable");
        else if (!name[0] && status == GRPC_STATUS_DEADLINE_EXCEEDED)
            err_set(st, rc, "no answer from %s within %lld ms", c->target,
                    (long long)timeout);
        else if (!name[0] && status == GRPC_STATUS_RESOURCE_EXHAUSTED)
            err_set(st, rc, "message too large: %s", text);
        else
            err_set(st, rc, "%s", text[0] ? text : dossier_code_message(rc));
        gpr_free(text);
    }
out_noev:
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    if (n_md)
        grpc_slice_unref(md[0].value);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_slice_unref(details);
    gpr_free((void *)error_string);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return rc;
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
