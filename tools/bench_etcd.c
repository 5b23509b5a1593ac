/* dossier-bench's etcd driver: KV/Put and KV/Range of etcd's v3 API over
 * gRPC C core, the calls kept in flight on one completion queue drained by
 * one thread, as libdossier does for the Dossier driver, so both pay the
 * same client overhead. Client i calls member i mod n; an etcd follower
 * forwards a put to its leader, as a Dossier follower does. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "bench.h"
#include "etcd.pb-c.h"
#include "pbgrpc.h"

#define ETCD_MAX_MEMBERS 16
#define ETCD_CALL_TIMEOUT_MS 30000

struct etcd_member {
    grpc_channel *channel;
    void *put, *range; /* registered methods */
};

struct betcd {
    struct etcd_member members[ETCD_MAX_MEMBERS];
    size_t n;
    grpc_completion_queue *cq;
    pthread_t thread;
    int thread_started;
};

/* One client's call in flight: everything its batch points to. */
struct etcd_call {
    struct bench_worker *w;
    int is_put;
    grpc_call *call;
    grpc_op ops[6];
    grpc_metadata_array init_md, trail_md;
    grpc_byte_buffer *send, *recv;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
};

static void call_release(struct etcd_call *c)
{
    grpc_call_unref(c->call);
    c->call = NULL;
    grpc_byte_buffer_destroy(c->send);
    c->send = NULL;
    if (c->recv)
        grpc_byte_buffer_destroy(c->recv);
    c->recv = NULL;
    grpc_metadata_array_destroy(&c->init_md);
    grpc_metadata_array_destroy(&c->trail_md);
    grpc_slice_unref(c->details);
    gpr_free((void *)c->error_string);
    c->error_string = NULL;
}

/* The outcome of @c's completed batch (@ok: the batch's success): NULL
 * for a good answer, else a message in the worker's err. */
static const char *call_outcome(struct etcd_call *c, int ok)
{
    struct bench_worker *w = c->w;
    ProtobufCMessage *m;

    if (!ok) {
        snprintf(w->err, sizeof(w->err), "etcd: the call failed");
        return w->err;
    }
    if (c->status != GRPC_STATUS_OK) {
        snprintf(w->err, sizeof(w->err), "etcd: status %d: %.*s",
                 (int)c->status, (int)GRPC_SLICE_LENGTH(c->details),
                 (const char *)GRPC_SLICE_START_PTR(c->details));
        return w->err;
    }
    m = pbgrpc_unpack(c->recv, c->is_put
                                   ? &etcdserverpb__put_response__descriptor
                                   : &etcdserverpb__range_response__descriptor);
    if (!m) {
        snprintf(w->err, sizeof(w->err), "etcd: the answer does not decode");
        return w->err;
    }
    if (!c->is_put) {
        Etcdserverpb__RangeResponse *r = (Etcdserverpb__RangeResponse *)m;
        if (r->n_kvs != 1 || r->kvs[0]->value.len != w->b->value_size) {
            snprintf(w->err, sizeof(w->err),
                     "etcd: %zu keys or a value of the wrong size", r->n_kvs);
            protobuf_c_message_free_unpacked(m, NULL);
            return w->err;
        }
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return NULL;
}

static void *completion_main(void *arg)
{
    struct betcd *e = arg;

    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            e->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        struct etcd_call *c;
        const char *err;

        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        c = ev.tag;
        err = call_outcome(c, ev.success);
        call_release(c);
        bench_call_done(c->w, err);
    }
    return NULL;
}

static void betcd_close(struct bench *b)
{
    struct betcd *e = b->drv;

    if (e->thread_started) {
        /* Every call has ended: the queue drains at once. */
        grpc_completion_queue_shutdown(e->cq);
        pthread_join(e->thread, NULL);
    }
    if (e->cq)
        grpc_completion_queue_destroy(e->cq);
    for (size_t i = 0; i < e->n; i++)
        grpc_channel_destroy(e->members[i].channel);
    free(e);
    b->drv = NULL;
    grpc_shutdown();
}

static int betcd_open(struct bench *b)
{
    struct betcd *e = calloc(1, sizeof(*e));
    grpc_channel_credentials *creds;
    char *list, *save = NULL, *tok;

    if (!e)
        return -1;
    grpc_init();
    b->drv = e;
    list = strdup(b->target);
    creds = grpc_insecure_credentials_create();
    for (tok = list ? strtok_r(list, ",", &save) : NULL; tok;
         tok = strtok_r(NULL, ",", &save)) {
        struct etcd_member *m;
        if (e->n == ETCD_MAX_MEMBERS) {
            fprintf(stderr, "dossier-bench: at most %d etcd members\n",
                    ETCD_MAX_MEMBERS);
            break;
        }
        m = &e->members[e->n++];
        m->channel = grpc_channel_create(tok, creds, NULL);
        m->put = grpc_channel_register_call(m->channel, "/etcdserverpb.KV/Put",
                                            NULL, NULL);
        m->range = grpc_channel_register_call(
            m->channel, "/etcdserverpb.KV/Range", NULL, NULL);
    }
    grpc_channel_credentials_release(creds);
    free(list);
    if (e->n == 0 || tok) {
        if (e->n == 0)
            fprintf(stderr, "dossier-bench: no etcd member given\n");
        betcd_close(b);
        return -1;
    }
    e->cq = grpc_completion_queue_create_for_next(NULL);
    if (pthread_create(&e->thread, NULL, completion_main, e) != 0) {
        fprintf(stderr, "dossier-bench: cannot start a thread\n");
        betcd_close(b);
        return -1;
    }
    e->thread_started = 1;
    return 0;
}

static int betcd_worker_open(struct bench_worker *w)
{
    struct etcd_call *c = calloc(1, sizeof(*c));
    if (!c) {
        fprintf(stderr, "dossier-bench: out of memory\n");
        return -1;
    }
    c->w = w;
    w->drv = c;
    return 0;
}

static void betcd_worker_close(struct bench_worker *w)
{
    free(w->drv);
    w->drv = NULL;
}

static int betcd_start(struct bench_worker *w, int is_put, uint64_t id)
{
    struct betcd *e = w->b->drv;
    struct etcd_member *m = &e->members[(size_t)w->index % e->n];
    struct etcd_call *c = w->drv;
    grpc_op *ops = c->ops;
    char key[32];
    int klen = bench_key(key, sizeof(key), id);
    gpr_timespec deadline;

    if (is_put) {
        Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
        req.key.data = (uint8_t *)key;
        req.key.len = (size_t)klen;
        req.value.data = (uint8_t *)w->b->payload;
        req.value.len = w->b->value_size;
        c->send = pbgrpc_pack(&req.base);
    } else {
        Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
        req.key.data = (uint8_t *)key;
        req.key.len = (size_t)klen;
        req.serializable = w->b->serializable;
        c->send = pbgrpc_pack(&req.base);
    }
    c->is_put = is_put;
    c->recv = NULL;
    c->status = GRPC_STATUS_UNKNOWN;
    c->details = grpc_empty_slice();
    c->error_string = NULL;
    grpc_metadata_array_init(&c->init_md);
    grpc_metadata_array_init(&c->trail_md);
    deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                            gpr_time_from_millis(ETCD_CALL_TIMEOUT_MS,
                                                 GPR_TIMESPAN));
    c->call = grpc_channel_create_registered_call(
        m->channel, NULL, GRPC_PROPAGATE_DEFAULTS, e->cq,
        is_put ? m->put : m->range, deadline, NULL);
    memset(c->ops, 0, sizeof(c->ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trail_md;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    ops[5].data.recv_status_on_client.error_string = &c->error_string;
    if (grpc_call_start_batch(c->call, ops, 6, c, NULL) != GRPC_CALL_OK) {
        call_release(c);
        snprintf(w->err, sizeof(w->err), "etcd: the call could not start");
        return -1;
    }
    return 0;
}

const struct bench_driver bench_etcd_driver = {
    .name = "etcd",
    .open = betcd_open,
    .close = betcd_close,
    .worker_open = betcd_worker_open,
    .worker_close = betcd_worker_close,
    .start = betcd_start,
};
