/* Erasure completion reports, certificates and waiting erase calls (see
 * erasure.h). */
#include "erasure.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "api.h"
#include "audit.h"
#include "cluster.h"
#include "crypt.h"
#include "errors.h"
#include "log.h"
#include "outcome.h"
#include "peer.h"
#include "records.h"

/* How often the reporter looks, and waits after a failed report. */
#define REPORT_POLL_MS 50
#define REPORT_RETRY_MS 1000
/* How long a report may take before it counts as failed. */
#define REPORT_TIMEOUT_MS 5000
/* How often a waiting erase call looks at its ledger row. */
#define WAIT_POLL_MS 50

static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int row_names(const Dossier__Store__V1__ErasureRecord *er,
                     uint64_t id)
{
    for (size_t i = 0; i < er->n_completed; i++)
        if (er->completed[i]->node_id == id)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Certificates */

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int erasure_certificate(struct node *n, const uint8_t sp[16],
                        const Dossier__Store__V1__ErasureRecord *er,
                        struct erasure_cert *out, struct dossier_status *st)
{
    uint8_t msg[AUDIT_ERASURE_V2_MESSAGE_MAX];
    struct cluster_status cs;
    unsigned char *sk;
    size_t nn = 0, np = 0, len = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < er->n_completed && nn < ERASURE_NODES_MAX; i++)
        out->nodes[nn++] = er->completed[i]->node_id;
    qsort(out->nodes, nn, sizeof(out->nodes[0]), u64_cmp);
    /* The state machine never lists a node twice; be safe all the same. */
    for (size_t i = 1, w = 1; i <= nn; i++) {
        if (i == nn) {
            nn = w;
            break;
        }
        if (out->nodes[i] != out->nodes[w - 1])
            out->nodes[w++] = out->nodes[i];
    }
    cluster_status(n->cluster, &cs);
    for (size_t i = 0; i < cs.raft.conf.n_voters && np < ERASURE_NODES_MAX;
         i++)
        if (!bsearch(&cs.raft.conf.voters[i], out->nodes, nn,
                     sizeof(out->nodes[0]), u64_cmp))
            out->pending[np++] = cs.raft.conf.voters[i];
    qsort(out->pending, np, sizeof(out->pending[0]), u64_cmp);

    if (!(sk = sodium_malloc(64)))
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    rc = crypt_audit_keys(n->crypt, out->pk, sk, st);
    if (rc == 0 &&
        audit_erasure_message_v2(sp, er->time_ms, er->raft_index,
                                 er->records_deleted, out->nodes, nn, msg,
                                 &len) != 0)
        rc = err_set(st, DOSSIER_INTERNAL, "cannot encode the certificate");
    if (rc == 0)
        crypto_sign_detached(out->sig, NULL, msg, len, sk);
    sodium_free(sk);
    if (rc)
        return rc;
    memcpy(out->sp, sp, 16);
    dossier__v1__erasure_certificate__init(&out->pb);
    out->pb.pseudonym = (ProtobufCBinaryData){16, out->sp};
    out->pb.time_ms = er->time_ms;
    out->pb.raft_index = er->raft_index;
    out->pb.records_deleted = er->records_deleted;
    out->pb.signature = (ProtobufCBinaryData){64, out->sig};
    out->pb.public_key = (ProtobufCBinaryData){32, out->pk};
    out->pb.n_nodes = nn;
    out->pb.nodes = out->nodes;
    out->pb.n_pending_nodes = np;
    out->pb.pending_nodes = out->pending;
    out->pb.version = 2;
    return err_ok(st);
}

void api_subjects_certificate(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__SubjectRequest *req = (Dossier__V1__SubjectRequest *)msg;
    Dossier__Store__V1__ErasureRecord *er;
    struct erasure_cert cert;
    struct dossier_status st;
    uint8_t sp[STORE_SP_BYTES];
    int rc;

    if (api_subject_of(c, req->subject_id, sp) != 0 ||
        !api_label_ok(c, "reference", req->reference))
        return;
    rc = store_erasure_get(call_node(c)->store, sp, &er, &st);
    if (rc == DOSSIER_NOT_FOUND)
        return call_fail(c, rc, "the subject was never erased here");
    if (rc)
        return call_fail_status(c, &st);
    rc = erasure_certificate(call_node(c), sp, er, &cert, &st);
    dossier__store__v1__erasure_record__free_unpacked(er, NULL);
    if (rc)
        return call_fail_status(c, &st);
    call_audit_read(c, sp, NULL, 0);
    call_reply(c, &cert.pb.base);
}

/* ------------------------------------------------------------------ */
/* Reports */

/* Proposes (on the leader) the report @done (borrowed); @cb(@arg, res)
 * runs once applied. */
static int propose_done(struct node *n,
                        Dossier__Store__V1__ErasureDoneOp *done,
                        void (*cb)(void *arg, const struct store_result *res),
                        void *arg)
{
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    char principal[48];
    uint8_t *buf;
    size_t len;

    snprintf(principal, sizeof(principal), "dossierd-node-%" PRIu64,
             done->node_id);
    cmd.time_ms = records_now_ms();
    cmd.principal = principal;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_ERASURE_DONE;
    cmd.erasure_done = done;
    len = dossier__store__v1__command__get_packed_size(&cmd);
    buf = malloc(len);
    if (!buf)
        return DOSSIER_NOMEM;
    dossier__store__v1__command__pack(&cmd, buf);
    return cluster_submit(n->cluster, buf, len, cb, arg);
}

static void peer_done_applied(void *arg, const struct store_result *res)
{
    struct call *c = arg;
    Dossier__Peer__V1__Ack ack = DOSSIER__PEER__V1__ACK__INIT;
    if (res->status.code)
        call_fail_status(c, &res->status);
    else
        call_reply(c, &ack.base);
}

void api_peer_erasure_done(struct call *c, ProtobufCMessage *msg)
{
    Dossier__Peer__V1__ErasureDoneRequest *req =
        (Dossier__Peer__V1__ErasureDoneRequest *)msg;
    int rc;

    if (api_peer_check(c, &req->cluster_id, req->from) != 0)
        return;
    if (!req->report)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "an erasure report without its report");
    /* A node reports for itself only: the state machine then checks that
     * the node is a member when it records it. */
    if (req->report->node_id != req->from) {
        log_printf(LOG_WARN, "refused an erasure report naming node %" PRIu64
                   " sent by node %" PRIu64, req->report->node_id, req->from);
        return call_fail(c, DOSSIER_PERMISSION_DENIED,
                         "an erasure report names node %" PRIu64
                         " but comes from node %" PRIu64
                         ": a node reports its own erasures only",
                         req->report->node_id, req->from);
    }
    rc = propose_done(call_node(c), req->report, peer_done_applied, c);
    if (rc)
        call_fail(c, rc, "cannot propose the erasure report");
}

struct erasure_report {
    struct node *node;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
};

/* Rows to report: erasures at or below @upto not naming this node. */
struct pending_rows {
    uint64_t self, upto;
    Dossier__Store__V1__ErasureDoneOp__Item items[ERASURE_DONE_ITEMS_MAX];
    Dossier__Store__V1__ErasureDoneOp__Item *ptrs[ERASURE_DONE_ITEMS_MAX];
    uint8_t sps[ERASURE_DONE_ITEMS_MAX][STORE_SP_BYTES];
    size_t n;
    int more; /* more than fit in one report */
};

static int pending_cb(void *arg, const uint8_t *key, size_t klen,
                      const uint8_t *val, size_t vlen)
{
    struct pending_rows *p = arg;
    Dossier__Store__V1__ErasureRecord *er;
    int report;

    if (klen != 1 + STORE_SP_BYTES)
        return 0;
    er = dossier__store__v1__erasure_record__unpack(NULL, vlen, val);
    if (!er)
        return 0; /* reads of the ledger report corruption */
    report = er->raft_index <= p->upto && !row_names(er, p->self);
    if (report && p->n == ERASURE_DONE_ITEMS_MAX) {
        p->more = 1;
        dossier__store__v1__erasure_record__free_unpacked(er, NULL);
        return 1;
    }
    if (report) {
        Dossier__Store__V1__ErasureDoneOp__Item *it = &p->items[p->n];
        dossier__store__v1__erasure_done_op__item__init(it);
        memcpy(p->sps[p->n], key + 1, STORE_SP_BYTES);
        it->subject = (ProtobufCBinaryData){STORE_SP_BYTES, p->sps[p->n]};
        it->raft_index = er->raft_index;
        p->ptrs[p->n++] = it;
    }
    dossier__store__v1__erasure_record__free_unpacked(er, NULL);
    return 0;
}

/* Sends the report of @p and waits for its outcome: 0 or an error code. */
static int report_send(struct erasure_report *r, struct pending_rows *p)
{
    struct node *n = r->node;
    Dossier__Store__V1__ErasureDoneOp op =
        DOSSIER__STORE__V1__ERASURE_DONE_OP__INIT;
    Dossier__Peer__V1__ErasureDoneRequest req =
        DOSSIER__PEER__V1__ERASURE_DONE_REQUEST__INIT;
    struct outcome *o = outcome_new();
    struct store_result res;
    uint8_t *buf;
    size_t len;
    int rc;

    op.node_id = n->id;
    op.completed_ms = records_now_ms();
    op.n_items = p->n;
    op.items = p->ptrs;
    req.cluster_id = (ProtobufCBinaryData){PEER_CLUSTER_ID_BYTES,
                                           (uint8_t *)cluster_id(n->cluster)};
    req.from = n->id;
    req.report = &op;
    len = dossier__peer__v1__erasure_done_request__get_packed_size(&req);
    buf = malloc(len ? len : 1);
    if (!o || !buf) {
        if (o)
            outcome_abandon(o);
        free(buf);
        return DOSSIER_NOMEM;
    }
    dossier__peer__v1__erasure_done_request__pack(&req, buf);
    if (cluster_is_leader(n->cluster))
        rc = propose_done(n, &op, outcome_applied, o);
    else
        rc = cluster_forward(n->cluster, ERASURE_DONE_METHOD, buf, len, "",
                             NULL, "", 0, REPORT_TIMEOUT_MS, outcome_forwarded,
                             o);
    free(buf);
    if (rc) {
        outcome_abandon(o);
        return rc;
    }
    /* A stop is not held up by a report in flight. */
    if (!outcome_wait(o, REPORT_TIMEOUT_MS, &r->stopping, &res))
        return DOSSIER_DEADLINE_EXCEEDED;
    return res.status.code;
}

static void *report_main(void *arg)
{
    struct erasure_report *r = arg;
    struct node *n = r->node;
    uint64_t reported_through = 0;
    int64_t retry_at = 0;
    int again = 1;

    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        struct timespec until;
        uint64_t fin;
        deadline_in(&until, REPORT_POLL_MS);
        pthread_cond_timedwait(&r->cv, &r->mu, &until);
        if (r->stopping)
            break;
        pthread_mutex_unlock(&r->mu);
        fin = cluster_erasures_finished(n->cluster);
        if ((fin != reported_through || again) && mono_ms() >= retry_at &&
            cluster_keys_ready(n->cluster) &&
            cluster_leader(n->cluster, NULL, 0) != 0) {
            struct pending_rows *p = calloc(1, sizeof(*p));
            struct dossier_status st;
            int rc = p ? 0 : DOSSIER_NOMEM;
            if (p) {
                p->self = n->id;
                p->upto = fin;
                rc = store_scan(n->store, STORE_POLICY, (const uint8_t *)"e",
                                1, NULL, 0, pending_cb, p, &st);
                if (rc == 1)
                    rc = 0;
            }
            if (rc == 0 && p->n) {
                rc = report_send(r, p);
                if (rc == 0)
                    log_printf(LOG_INFO, "erasure: reported %zu finished "
                               "erasures", p->n);
                else
                    log_printf(LOG_WARN, "erasure: the report of %zu "
                               "finished erasures failed (%s); trying "
                               "again", p->n, dossier_code_name(rc));
            }
            again = rc != 0 || (p && p->more);
            retry_at = rc ? mono_ms() + REPORT_RETRY_MS : 0;
            reported_through = fin;
            free(p);
        }
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int erasure_report_start(struct node *n, struct erasure_report **out,
                         struct dossier_status *st)
{
    struct erasure_report *r = calloc(1, sizeof(*r));
    *out = NULL;
    if (!r)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    r->node = n;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, report_main, r) != 0) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        free(r);
        return err_set(st, DOSSIER_INTERNAL,
                       "cannot start the erasure reporter's thread");
    }
    *out = r;
    return err_ok(st);
}

void erasure_report_stop(struct erasure_report *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    __atomic_store_n(&r->stopping, 1, __ATOMIC_RELEASE);
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* ------------------------------------------------------------------ */
/* Waiting erase calls */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running, stopping;
} waits = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

struct waiter {
    struct call *call;
    uint8_t sp[STORE_SP_BYTES];
    uint64_t index;
    int64_t until; /* CLOCK_MONOTONIC ms */
    erasure_wait_cb done;
    void *arg;
};

/* 1 when the ledger row of @w names every voter, or is another erasure's
 * (a later one replaced it: waiting longer tells nothing). */
static int all_reported(struct waiter *w)
{
    struct node *n = call_node(w->call);
    Dossier__Store__V1__ErasureRecord *er;
    struct cluster_status cs;
    struct dossier_status st;
    int all = 1;

    if (store_erasure_get(n->store, w->sp, &er, &st) != 0)
        return 0;
    if (er->raft_index == w->index) {
        cluster_status(n->cluster, &cs);
        for (size_t i = 0; i < cs.raft.conf.n_voters && all; i++)
            all = row_names(er, cs.raft.conf.voters[i]);
    }
    dossier__store__v1__erasure_record__free_unpacked(er, NULL);
    return all;
}

static void *wait_main(void *arg)
{
    struct waiter *w = arg;
    while (!__atomic_load_n(&waits.stopping, __ATOMIC_ACQUIRE) &&
           mono_ms() < w->until && !all_reported(w)) {
        struct timespec until;
        deadline_in(&until, WAIT_POLL_MS);
        pthread_mutex_lock(&waits.mu);
        if (!waits.stopping)
            pthread_cond_timedwait(&waits.cv, &waits.mu, &until);
        pthread_mutex_unlock(&waits.mu);
    }
    w->done(w->call, w->arg);
    free(w);
    pthread_mutex_lock(&waits.mu);
    waits.running--;
    pthread_cond_broadcast(&waits.cv);
    pthread_mutex_unlock(&waits.mu);
    return NULL;
}

int erasure_wait(struct call *c, const uint8_t sp[16], uint64_t index,
                 int64_t wait_ms, erasure_wait_cb done, void *arg)
{
    struct waiter *w;
    pthread_attr_t attr;
    pthread_t t;
    int64_t left = call_time_left_ms(c) - 500;
    int rc;

    if (wait_ms <= 0)
        wait_ms = ERASURE_WAIT_DEFAULT_MS;
    if (wait_ms > ERASURE_WAIT_MAX_MS)
        wait_ms = ERASURE_WAIT_MAX_MS;
    if (wait_ms > left)
        wait_ms = left > 0 ? left : 0;
    if (!(w = calloc(1, sizeof(*w))))
        return -1;
    w->call = c;
    memcpy(w->sp, sp, STORE_SP_BYTES);
    w->index = index;
    w->until = mono_ms() + wait_ms;
    w->done = done;
    w->arg = arg;
    pthread_mutex_lock(&waits.mu);
    if (waits.stopping) {
        pthread_mutex_unlock(&waits.mu);
        free(w);
        return -1;
    }
    waits.running++;
    pthread_mutex_unlock(&waits.mu);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&t, &attr, wait_main, w);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(w);
        pthread_mutex_lock(&waits.mu);
        waits.running--;
        pthread_cond_broadcast(&waits.cv);
        pthread_mutex_unlock(&waits.mu);
        return -1;
    }
    return 0;
}

void erasure_wait_stop(void)
{
    pthread_mutex_lock(&waits.mu);
    waits.stopping = 1;
    pthread_cond_broadcast(&waits.cv);
    while (waits.running > 0)
        pthread_cond_wait(&waits.cv, &waits.mu);
    pthread_mutex_unlock(&waits.mu);
}
