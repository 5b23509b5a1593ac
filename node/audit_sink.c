/* The node's audit buffer and checkpoint signer (see audit_sink.h). */
#include "audit_sink.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "audit.h"
#include "cluster.h"
#include "crypt.h"
#include "errors.h"
#include "log.h"
#include "records.h"
#include "store.h"

#define AUDIT_APPEND_METHOD "/dossier.peer.v1.Peer/AuditAppend"
/* Entries per AuditOp command, so one command stays well below the
 * message limits. */
#define ENTRIES_PER_COMMAND 2000

struct buffered {
    uint8_t *enc;
    size_t len;
};

struct audit_sink {
    struct node *node;
    struct audit_sink_options o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    int joined;
    struct buffered *q; /* oldest first */
    size_t n, cap;
    uint64_t dropped;
    /* Appends in flight (their entries are out of the queue). */
    int in_flight;
    struct buffered *sent;
    size_t n_sent;
    uint64_t proposed_index; /* last checkpoint proposed */
    uint8_t pk[AUDIT_PUBLIC_KEY_BYTES];
    unsigned char *sk; /* sodium_malloc, NULL until the keys are open */
};

static void drop_oldest(struct audit_sink *s, size_t k)
{
    for (size_t i = 0; i < k; i++)
        free(s->q[i].enc);
    memmove(s->q, s->q + k, (s->n - k) * sizeof(*s->q));
    s->n -= k;
    s->dropped += k;
}

void audit_sink_add(struct audit_sink *s, const char *principal,
                    const char *action, const char *purpose,
                    const uint8_t *sp, const uint8_t *rids, size_t n,
                    int outcome)
{
    struct audit_entry e;
    struct dossier_status st;
    uint8_t *enc;
    size_t len;

    if (!s)
        return;
    memset(&e, 0, sizeof(e));
    e.time_ms = records_now_ms();
    e.principal = principal;
    e.principal_len = principal ? strlen(principal) : 0;
    e.action = action;
    e.action_len = strlen(action);
    e.purpose = purpose;
    e.purpose_len = purpose ? strlen(purpose) : 0;
    e.pseudonym_len = CRYPT_PSEUDONYM_BYTES;
    e.subject = sp;
    e.records = rids;
    e.n_records = n > AUDIT_RECORDS_MAX ? AUDIT_RECORDS_MAX : n;
    e.outcome = outcome;
    if (audit_entry_encode_alloc(&e, &enc, &len, &st) != 0) {
        log_printf(LOG_ERROR, "an audit entry of %s was lost: %s", action,
                   st.message);
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (s->n == s->cap && s->cap < AUDIT_SINK_MAX) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        struct buffered *q = realloc(s->q, cap * sizeof(*q));
        if (q) {
            s->q = q;
            s->cap = cap;
        }
    }
    if (s->n == s->cap || s->n >= AUDIT_SINK_MAX) {
        if (s->n == 0) { /* no room at all: this entry is the one lost */
            free(enc);
            s->dropped++;
            pthread_mutex_unlock(&s->mu);
            return;
        }
        drop_oldest(s, 1);
    }
    s->q[s->n++] = (struct buffered){enc, len};
    pthread_mutex_unlock(&s->mu);
}

void audit_sink_stats(struct audit_sink *s, uint64_t *queued,
                      uint64_t *dropped)
{
    *queued = *dropped = 0;
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    *queued = s->n + s->n_sent;
    *dropped = s->dropped;
    pthread_mutex_unlock(&s->mu);
}

/* Packs up to ENTRIES_PER_COMMAND queued entries into an AuditOp command
 * (into *@cmd, malloc'd) and its request alone (*@op, for forwarding);
 * the entries move to s->sent. Returns 0 if nothing is queued. */
static int take_batch(struct audit_sink *s, uint8_t **cmd, size_t *cmd_len,
                      uint8_t **op_buf, size_t *op_len)
{
    Dossier__Store__V1__Command c = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__AuditOp op = DOSSIER__STORE__V1__AUDIT_OP__INIT;
    ProtobufCBinaryData *items;
    size_t k;

    pthread_mutex_lock(&s->mu);
    k = s->n < ENTRIES_PER_COMMAND ? s->n : ENTRIES_PER_COMMAND;
    if (k == 0 || s->in_flight) {
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    s->sent = malloc(k * sizeof(*s->sent));
    items = malloc(k * sizeof(*items));
    if (!s->sent || !items) {
        free(s->sent);
        s->sent = NULL;
        free(items);
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    memcpy(s->sent, s->q, k * sizeof(*s->q));
    memmove(s->q, s->q + k, (s->n - k) * sizeof(*s->q));
    s->n -= k;
    s->n_sent = k;
    s->in_flight = 1;
    pthread_mutex_unlock(&s->mu);

    for (size_t i = 0; i < k; i++)
        items[i] = (ProtobufCBinaryData){s->sent[i].len, s->sent[i].enc};
    op.n_entries = k;
    op.entries = items;
    c.time_ms = records_now_ms();
    c.op_case = DOSSIER__STORE__V1__COMMAND__OP_AUDIT;
    c.audit = &op;
    *cmd_len = dossier__store__v1__command__get_packed_size(&c);
    *op_len = dossier__store__v1__audit_op__get_packed_size(&op);
    *cmd = malloc(*cmd_len);
    *op_buf = malloc(*op_len ? *op_len : 1);
    if (*cmd)
        dossier__store__v1__command__pack(&c, *cmd);
    if (*op_buf)
        dossier__store__v1__audit_op__pack(&op, *op_buf);
    free(items);
    return 1;
}

/* The batch in flight is done: dropped if @ok, else put back in front. */
static void settle(struct audit_sink *s, int ok)
{
    pthread_mutex_lock(&s->mu);
    if (ok) {
        for (size_t i = 0; i < s->n_sent; i++)
            free(s->sent[i].enc);
    } else {
        size_t need = s->n + s->n_sent;
        struct buffered *q = need > s->cap
                                 ? realloc(s->q, need * sizeof(*q))
                                 : s->q;
        if (q) {
            s->q = q;
            if (need > s->cap)
                s->cap = need;
            memmove(s->q + s->n_sent, s->q, s->n * sizeof(*q));
            memcpy(s->q, s->sent, s->n_sent * sizeof(*q));
            s->n = need;
            if (s->n > AUDIT_SINK_MAX)
                drop_oldest(s, s->n - AUDIT_SINK_MAX);
        } else {
            for (size_t i = 0; i < s->n_sent; i++)
                free(s->sent[i].enc);
            s->dropped += s->n_sent;
        }
    }
    free(s->sent);
    s->sent = NULL;
    s->n_sent = 0;
    s->in_flight = 0;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void appended(void *arg, const struct store_result *res)
{
    settle(arg, res->status.code == 0);
}

static void forwarded(void *arg, int code, const char *message,
                      const uint8_t *reply, size_t len)
{
    (void)message;
    (void)reply;
    (void)len;
    settle(arg, code == 0);
}

static void flush_once(struct audit_sink *s)
{
    struct node *n = s->node;
    uint8_t *cmd = NULL, *op = NULL;
    size_t cmd_len = 0, op_len = 0;

    if (!take_batch(s, &cmd, &cmd_len, &op, &op_len))
        return;
    if (!cmd || !op) {
        free(cmd);
        free(op);
        settle(s, 0);
        return;
    }
    if (cluster_is_leader(n->cluster)) {
        free(op);
        if (cluster_submit(n->cluster, cmd, cmd_len, appended, s) != 0)
            settle(s, 0);
    } else {
        free(cmd);
        if (cluster_forward(n->cluster, AUDIT_APPEND_METHOD, op, op_len, "",
                            NULL, "", 0, 5000, forwarded, s) != 0)
            settle(s, 0);
        free(op);
    }
}

static void checkpoint_done(void *arg, const struct store_result *res)
{
    (void)arg;
    if (res->status.code && res->status.code != DOSSIER_UNAVAILABLE)
        log_printf(LOG_WARN, "an audit checkpoint was refused: %s",
                   res->status.message);
}

/* On the leader: signs the chain's head when a checkpoint is due. */
static void maybe_checkpoint(struct audit_sink *s)
{
    struct node *n = s->node;
    struct audit_chain head;
    struct audit_checkpoint cp;
    struct dossier_status st;
    Dossier__Store__V1__Command c = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__AuditCheckpointOp op =
        DOSSIER__STORE__V1__AUDIT_CHECKPOINT_OP__INIT;
    uint8_t enc[AUDIT_CHECKPOINT_BYTES], *buf;
    size_t len;
    int64_t now = records_now_ms();

    if (!cluster_is_leader(n->cluster) || !cluster_keys_ready(n->cluster))
        return;
    if (!s->sk) {
        s->sk = sodium_malloc(AUDIT_SECRET_KEY_BYTES);
        if (!s->sk || crypt_audit_keys(n->crypt, s->pk, s->sk, &st) != 0) {
            sodium_free(s->sk);
            s->sk = NULL;
            return;
        }
    }
    store_audit_head(n->store, &head);
    if (head.index <= s->proposed_index && head.index > head.signed_index)
        return; /* the last one proposed is still on its way */
    if (!audit_chain_checkpoint_due(&head, now, s->o.checkpoint_entries,
                                    s->o.checkpoint_ms))
        return;
    memset(&cp, 0, sizeof(cp));
    cp.index = head.index;
    memcpy(cp.hash, head.hash, AUDIT_HASH_BYTES);
    cp.time_ms = now;
    audit_checkpoint_sign(&cp, s->sk);
    audit_checkpoint_encode(&cp, enc);
    op.checkpoint = (ProtobufCBinaryData){sizeof(enc), enc};
    c.time_ms = now;
    c.op_case = DOSSIER__STORE__V1__COMMAND__OP_AUDIT_CHECKPOINT;
    c.audit_checkpoint = &op;
    len = dossier__store__v1__command__get_packed_size(&c);
    if (!(buf = malloc(len)))
        return;
    dossier__store__v1__command__pack(&c, buf);
    if (cluster_submit(n->cluster, buf, len, checkpoint_done, NULL) == 0)
        s->proposed_index = head.index;
}

static void *sink_main(void *arg)
{
    struct audit_sink *s = arg;
    uint64_t reported = 0;

    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += s->o.window_ms / 1000;
        until.tv_nsec += (s->o.window_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &until);
        if (s->stopping)
            break;
        if (s->dropped != reported) {
            log_printf(LOG_ERROR, "%" PRIu64 " audit entries were lost: the "
                       "cluster could not take them (no leader for long?)",
                       s->dropped - reported);
            reported = s->dropped;
        }
        pthread_mutex_unlock(&s->mu);
        flush_once(s);
        maybe_checkpoint(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int audit_sink_start(struct node *n, const struct audit_sink_options *o,
                     struct audit_sink **out, struct dossier_status *st)
{
    struct audit_sink *s = calloc(1, sizeof(*s));
    if (!s)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    s->node = n;
    s->o = *o;
    if (s->o.window_ms <= 0)
        s->o.window_ms = 200;
    if (s->o.checkpoint_entries == 0)
        s->o.checkpoint_entries = 1000;
    if (s->o.checkpoint_ms <= 0)
        s->o.checkpoint_ms = 10000;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, sink_main, s) != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return err_set(st, DOSSIER_INTERNAL, "cannot start the audit thread");
    }
    *out = s;
    return err_ok(st);
}

void audit_sink_stop(struct audit_sink *s)
{
    struct timespec until;
    if (!s || s->joined)
        return;
    s->joined = 1;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    /* A last append of what is left, waiting a little for it. */
    flush_once(s);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2;
    pthread_mutex_lock(&s->mu);
    while (s->in_flight &&
           pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0)
        ;
    if (s->in_flight || s->n)
        log_printf(LOG_WARN, "%zu audit entries were not appended before "
                   "shutdown", s->n + s->n_sent);
    pthread_mutex_unlock(&s->mu);
}

void audit_sink_free(struct audit_sink *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->q[i].enc);
    for (size_t i = 0; i < s->n_sent; i++)
        free(s->sent[i].enc);
    free(s->sent);
    free(s->q);
    sodium_free(s->sk);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
