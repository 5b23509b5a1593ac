/* gRPC C core plumbing: the method table, call contexts, decoding, replies
 * and the completion-queue loop. */
#include "server.h"

#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <sodium.h>

#include "api.h"
#include "dossier.pb-c.h"
#include "errors.h"
#include "log.h"

/* One row per RPC. The flags carry the policy (what a method may do);
 * authorization will check them here, before a handler runs. */
struct api_method {
    const char *path;
    const ProtobufCMessageDescriptor *request;
    api_handler_fn handler;
    unsigned flags;
    int outstanding; /* calls requested ahead from gRPC */
};

static const struct api_method methods[] = {
    /* path                              request type */
    {"/dossier.v1.Records/Put", &dossier__v1__put_request__descriptor,
     api_records_put, API_WRITE, 32},
    {"/dossier.v1.Records/Get", &dossier__v1__get_request__descriptor,
     api_records_get, API_READ, 32},
    {"/dossier.v1.Records/Delete", &dossier__v1__delete_request__descriptor,
     api_records_delete, API_WRITE, 4},
    {"/dossier.v1.Records/ListBySubject",
     &dossier__v1__list_by_subject_request__descriptor,
     api_records_list_by_subject, API_READ, 4},
    {"/dossier.v1.Records/FindByIndex",
     &dossier__v1__find_by_index_request__descriptor,
     api_records_find_by_index, API_READ, 4},
    {"/dossier.v1.Records/Scan", &dossier__v1__scan_request__descriptor,
     api_records_scan, API_READ, 4},
    {"/dossier.v1.Schema/DefineKind",
     &dossier__v1__define_kind_request__descriptor, api_schema_define_kind,
     API_WRITE | API_ADMIN, 2},
    {"/dossier.v1.Schema/GetKind", &dossier__v1__get_kind_request__descriptor,
     api_schema_get_kind, API_READ, 2},
    {"/dossier.v1.Schema/ListKinds",
     &dossier__v1__list_kinds_request__descriptor, api_schema_list_kinds,
     API_READ, 2},
};

#define N_METHODS (sizeof(methods) / sizeof(methods[0]))
#define PURPOSE_MAX 64
/* Calls still running this long after a stop is asked are cancelled. */
#define STOP_GRACE_MS 5000

enum tag_kind { TAG_NEW_CALL, TAG_UNKNOWN_CALL, TAG_DONE, TAG_SHUTDOWN };

struct tag {
    enum tag_kind kind;
    void *ptr;
};

struct call {
    struct server *srv;
    const struct api_method *m;
    void *registered;
    struct tag tag_new, tag_done;

    grpc_call *call;
    gpr_timespec deadline;
    grpc_call_details details_in; /* calls of methods not in the table */
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    ProtobufCMessage *req;
    char purpose[PURPOSE_MAX + 1];

    /* Reply state: kept alive until the reply batch completes. */
    int replied;
    int cancelled;
    grpc_byte_buffer *resp;
    grpc_slice details;
    grpc_metadata trailer;
};

struct server {
    struct node *node;
    grpc_server *grpc;
    grpc_completion_queue *cq;
    void *registered[N_METHODS];
    struct tag tag_shutdown;
    int stopping;      /* set by server_stop, read by the loop */
    int shutdown_done; /* the shutdown tag arrived */
    gpr_timespec stop_deadline;
    long in_flight;    /* calls received and not yet freed */
};

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

static void call_free(struct call *c)
{
    if (c->req)
        protobuf_c_message_free_unpacked(c->req, &server_wiping_allocator);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->resp)
        grpc_byte_buffer_destroy(c->resp);
    if (c->replied)
        grpc_slice_unref(c->details);
    grpc_metadata_array_destroy(&c->md);
    if (!c->m)
        grpc_call_details_destroy(&c->details_in);
    if (c->call)
        grpc_call_unref(c->call);
    free(c);
}

/* Asks gRPC for the next call of method @i. */
static void request_call(struct server *s, size_t i)
{
    struct call *c = calloc(1, sizeof(*c));
    grpc_call_error e;

    if (!c) {
        log_printf(LOG_ERROR, "out of memory: %s has one call slot less",
                   methods[i].path);
        return;
    }
    c->srv = s;
    c->m = &methods[i];
    c->registered = s->registered[i];
    c->tag_new = (struct tag){TAG_NEW_CALL, c};
    c->tag_done = (struct tag){TAG_DONE, c};
    grpc_metadata_array_init(&c->md);
    e = grpc_server_request_registered_call(s->grpc, c->registered, &c->call,
                                            &c->deadline, &c->md, &c->payload,
                                            s->cq, s->cq, &c->tag_new);
    if (e != GRPC_CALL_OK) {
        log_printf(LOG_ERROR, "cannot request calls of %s: error %d",
                   methods[i].path, (int)e);
        call_free(c);
    }
}

/* Asks gRPC for the next call of a method that is not in the table, so
 * that it gets UNIMPLEMENTED at once rather than waiting for its deadline. */
static void request_unknown(struct server *s)
{
    struct call *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->srv = s;
    c->tag_new = (struct tag){TAG_UNKNOWN_CALL, c};
    c->tag_done = (struct tag){TAG_DONE, c};
    grpc_call_details_init(&c->details_in);
    grpc_metadata_array_init(&c->md);
    if (grpc_server_request_call(s->grpc, &c->call, &c->details_in, &c->md,
                                 s->cq, s->cq, &c->tag_new) != GRPC_CALL_OK)
        call_free(c);
}

static const char *call_path(const struct call *c)
{
    return c->m ? c->m->path : "an unknown method";
}

/* Sends the whole answer of @c in one batch: initial metadata, the message
 * (on success), the status with the Dossier error name as a trailer, and
 * the receipt of the client's close. */
static void call_send(struct call *c, int code, const char *message,
                      const ProtobufCMessage *resp)
{
    grpc_op ops[4];
    size_t n = 0;
    grpc_call_error e;

    if (c->replied) {
        log_printf(LOG_ERROR, "bug: %s answered twice", call_path(c));
        return;
    }
    c->replied = 1;
    if (resp && code == 0) {
        size_t len = protobuf_c_message_get_packed_size(resp);
        grpc_slice sl = grpc_slice_malloc(len);
        protobuf_c_message_pack(resp, GRPC_SLICE_START_PTR(sl));
        c->resp = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
    }
    c->details = grpc_slice_from_copied_string(message ? message : "");
    memset(ops, 0, sizeof(ops));
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    n++;
    if (c->resp) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->resp;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = err_to_grpc(code);
    ops[n].data.send_status_from_server.status_details = &c->details;
    if (code) {
        c->trailer.key = grpc_slice_from_static_string(ERR_METADATA_KEY);
        c->trailer.value = grpc_slice_from_static_string(dossier_code_name(code));
        ops[n].data.send_status_from_server.trailing_metadata_count = 1;
        ops[n].data.send_status_from_server.trailing_metadata = &c->trailer;
    }
    n++;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &c->cancelled;
    n++;
    e = grpc_call_start_batch(c->call, ops, n, &c->tag_done, NULL);
    if (e != GRPC_CALL_OK) {
        /* The batch never completes, so the loop never sees tag_done. */
        log_printf(LOG_ERROR, "cannot answer %s: error %d", call_path(c),
                   (int)e);
        __atomic_fetch_sub(&c->srv->in_flight, 1, __ATOMIC_RELAXED);
        call_free(c);
    }
}

void call_reply(struct call *c, const ProtobufCMessage *resp)
{
    call_send(c, 0, "", resp);
}

void call_fail(struct call *c, int code, const char *fmt, ...)
{
    char msg[DOSSIER_STATUS_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    call_send(c, code ? code : DOSSIER_INTERNAL, msg, NULL);
}

void call_fail_status(struct call *c, const struct dossier_status *st)
{
    call_send(c, st->code ? st->code : DOSSIER_INTERNAL, st->message, NULL);
}

static void read_metadata(struct call *c)
{
    for (size_t i = 0; i < c->md.count; i++) {
        const grpc_metadata *m = &c->md.metadata[i];
        if (grpc_slice_str_cmp(m->key, "dossier-purpose") == 0) {
            size_t len = GRPC_SLICE_LENGTH(m->value);
            if (len > PURPOSE_MAX)
                len = PURPOSE_MAX;
            memcpy(c->purpose, GRPC_SLICE_START_PTR(m->value), len);
            c->purpose[len] = '\0';
        }
    }
}

/* A call arrived: decode it and run its handler. */
static void call_start(struct call *c)
{
    grpc_byte_buffer_reader reader;
    grpc_slice sl;

    read_metadata(c);
    if (!c->payload) {
        call_fail(c, DOSSIER_INVALID_ARGUMENT, "%s: the request has no "
                  "message", c->m->path);
        return;
    }
    if (!grpc_byte_buffer_reader_init(&reader, c->payload)) {
        call_fail(c, DOSSIER_INVALID_ARGUMENT, "%s: unreadable request",
                  c->m->path);
        return;
    }
    sl = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    c->req = protobuf_c_message_unpack(c->m->request, &server_wiping_allocator,
                                       GRPC_SLICE_LENGTH(sl),
                                       GRPC_SLICE_START_PTR(sl));
    /* The encoded request may hold personal values: wipe our copy. */
    sodium_memzero(GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
    grpc_slice_unref(sl);
    grpc_byte_buffer_destroy(c->payload);
    c->payload = NULL;
    if (!c->req) {
        call_fail(c, DOSSIER_INVALID_ARGUMENT,
                  "%s: malformed request: not a valid %s message", c->m->path,
                  c->m->request->name);
        return;
    }
    c->m->handler(c, c->req);
}

/* ------------------------------------------------------------------ */
/* Server */

int server_start(struct node *n, const char *listen, size_t max_message,
                 struct server **out, char *bound, size_t cap,
                 struct dossier_status *st)
{
    grpc_arg args[1];
    grpc_channel_args chargs = {1, args};
    grpc_server_credentials *creds;
    struct server *s;
    const char *colon;
    int port;

    *out = NULL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    s->node = n;
    s->tag_shutdown = (struct tag){TAG_SHUTDOWN, s};
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = (int)max_message;
    s->grpc = grpc_server_create(&chargs, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->grpc, s->cq, NULL);
    for (size_t i = 0; i < N_METHODS; i++)
        s->registered[i] = grpc_server_register_method(
            s->grpc, methods[i].path, NULL,
            GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    creds = grpc_insecure_server_credentials_create();
    port = grpc_server_add_http2_port(s->grpc, listen, creds);
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
        free(s);
        return err_set(st, DOSSIER_UNAVAILABLE,
                       "cannot listen on %s (address in use or invalid)",
                       listen);
    }
    colon = strrchr(listen, ':');
    snprintf(bound, cap, "%.*s:%d", colon ? (int)(colon - listen) : 0, listen,
             port);
    grpc_server_start(s->grpc);
    for (size_t i = 0; i < N_METHODS; i++)
        for (int k = 0; k < methods[i].outstanding; k++)
            request_call(s, i);
    request_unknown(s);
    *out = s;
    return err_ok(st);
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
            }
            continue;
        }
        struct tag *t = ev.tag;
        switch (t->kind) {
        case TAG_NEW_CALL: {
            struct call *c = t->ptr;
            if (!ev.success) {
                call_free(c); /* the server is shutting down */
                break;
            }
            if (!__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
                request_call(s, (size_t)(c->m - methods));
            __atomic_fetch_add(&s->in_flight, 1, __ATOMIC_RELAXED);
            call_start(c);
            break;
        }
        case TAG_UNKNOWN_CALL: {
            struct call *c = t->ptr;
            char *method;
            if (!ev.success) {
                call_free(c);
                break;
            }
            if (!__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
                request_unknown(s);
            __atomic_fetch_add(&s->in_flight, 1, __ATOMIC_RELAXED);
            method = grpc_slice_to_c_string(c->details_in.method);
            call_fail(c, DOSSIER_UNIMPLEMENTED, "this node has no method %.200s",
                      method);
            gpr_free(method);
            break;
        }
        case TAG_DONE:
            __atomic_fetch_sub(&s->in_flight, 1, __ATOMIC_RELAXED);
            call_free(t->ptr);
            break;
        case TAG_SHUTDOWN:
            s->shutdown_done = 1;
            grpc_completion_queue_shutdown(s->cq);
            break;
        }
    }
}

void server_free(struct server *s)
{
    if (!s)
        return;
    grpc_server_destroy(s->grpc);
    grpc_completion_queue_destroy(s->cq);
    free(s);
}
