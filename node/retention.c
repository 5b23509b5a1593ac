/* The retention sweeper (see retention.h). */
#include "retention.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "errors.h"
#include "log.h"
#include "outcome.h"
#include "records.h"
#include "schema.h"
#include "store.h"

/* Records per command: the sweep's audit entry names each of them. */
#define ITEMS_PER_COMMAND 32
/* Records looked at per scan slice, so the store lock is never held long. */
#define SLICE_RECORDS 2000

struct retention {
    struct node *node;
    int64_t interval_ms;
    int64_t offset_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
};

struct sweep {
    struct store *store;
    int64_t now;
    Dossier__Store__V1__RetentionOp__Item items[ITEMS_PER_COMMAND];
    Dossier__Store__V1__RetentionOp__Item *ptrs[ITEMS_PER_COMMAND];
    uint8_t rids[ITEMS_PER_COMMAND][STORE_RID_BYTES];
    char kinds[ITEMS_PER_COMMAND][SCHEMA_NAME_MAX + 1];
    char **fields[ITEMS_PER_COMMAND];
    size_t n;
    /* Whole records past their kind's record retention. */
    Dossier__Store__V1__RecordRetentionOp__Item whole[ITEMS_PER_COMMAND];
    Dossier__Store__V1__RecordRetentionOp__Item *whole_ptrs[ITEMS_PER_COMMAND];
    uint8_t whole_rids[ITEMS_PER_COMMAND][STORE_RID_BYTES];
    char whole_kinds[ITEMS_PER_COMMAND][SCHEMA_NAME_MAX + 1];
    size_t n_whole;
    /* The subject of each item (items, then whole), for the restriction
     * check after the scan; has_sp 0: a record without a subject. */
    uint8_t sps[2][ITEMS_PER_COMMAND][STORE_SP_BYTES];
    int has_sp[2][ITEMS_PER_COMMAND];
    /* How many of ptrs and whole_ptrs are proposed: the items whose
     * subject is not restricted (drop_restricted). */
    size_t n_ptrs, n_whole_ptrs;
    size_t visited;
    uint8_t last[STORE_KEY_MAX];
    size_t last_len;
    int more;
};

static void sweep_clear(struct sweep *s)
{
    for (size_t i = 0; i < s->n; i++) {
        for (size_t j = 0; j < s->items[i].n_fields; j++)
            free(s->fields[i][j]);
        free(s->fields[i]);
    }
    s->n = 0;
    s->n_whole = 0;
    s->n_ptrs = 0;
    s->n_whole_ptrs = 0;
}

static void note_subject(struct sweep *s, int whole, size_t i,
                         const StoredRecord *r)
{
    s->has_sp[whole][i] = r->subject.len == STORE_SP_BYTES;
    if (s->has_sp[whole][i])
        memcpy(s->sps[whole][i], r->subject.data, STORE_SP_BYTES);
}

/* Leaves out of what is proposed the items of restricted subjects (GDPR
 * Art. 18: storage only, so retention waits until the restriction is
 * lifted; the state machine checks again when it applies). A subject
 * whose restriction cannot be read is left out too: the next sweep looks
 * again. */
static void drop_restricted(struct sweep *s)
{
    struct dossier_status st;
    size_t k = 0;

    for (size_t i = 0; i < s->n; i++)
        if (!s->has_sp[0][i] || store_restricted(s->store, s->sps[0][i],
                                                 &st) == 0)
            s->ptrs[k++] = &s->items[i];
    s->n_ptrs = k;
    k = 0;
    for (size_t i = 0; i < s->n_whole; i++)
        if (!s->has_sp[1][i] || store_restricted(s->store, s->sps[1][i],
                                                 &st) == 0)
            s->whole_ptrs[k++] = &s->whole[i];
    s->n_whole_ptrs = k;
}

/* Looks at one stored record: adds an item when some field is past its
 * kind's retention. */
static int record_cb(void *arg, const uint8_t *key, size_t klen,
                     const uint8_t *val, size_t vlen)
{
    struct sweep *s = arg;
    const KindSchema *k;
    StoredRecord *r;
    char **names = NULL;
    size_t n = 0;

    if (s->n == ITEMS_PER_COMMAND || s->n_whole == ITEMS_PER_COMMAND ||
        s->visited == SLICE_RECORDS) {
        s->more = 1;
        return 1;
    }
    s->visited++;
    memcpy(s->last, key, klen);
    s->last_len = klen;
    if (klen < STORE_RID_BYTES + 2)
        return 0;
    r = dossier__store__v1__stored_record__unpack(NULL, vlen, val);
    if (!r)
        return 0; /* reads report corruption; the sweep goes on */
    k = schema_registry_get(store_schemas(s->store), r->kind);
    if (store_record_past_retention(k, r, s->now) &&
        strlen(r->kind) <= SCHEMA_NAME_MAX) {
        /* The whole record goes: its fields need no look. */
        Dossier__Store__V1__RecordRetentionOp__Item *it =
            &s->whole[s->n_whole];
        dossier__store__v1__record_retention_op__item__init(it);
        snprintf(s->whole_kinds[s->n_whole], sizeof(s->whole_kinds[0]), "%s",
                 r->kind);
        memcpy(s->whole_rids[s->n_whole], key + klen - STORE_RID_BYTES,
               STORE_RID_BYTES);
        it->kind = s->whole_kinds[s->n_whole];
        it->rid = (ProtobufCBinaryData){STORE_RID_BYTES,
                                        s->whole_rids[s->n_whole]};
        note_subject(s, 1, s->n_whole, r);
        s->whole_ptrs[s->n_whole++] = it;
        dossier__store__v1__stored_record__free_unpacked(r, NULL);
        return 0;
    }
    for (size_t i = 0; k && i < r->n_fields; i++) {
        char **g;
        if (!store_field_past_retention(schema_field(k, r->fields[i]->name),
                                        r, s->now))
            continue;
        g = realloc(names, (n + 1) * sizeof(*names));
        if (!g || !(g[n] = strdup(r->fields[i]->name))) {
            names = g ? g : names;
            break;
        }
        names = g;
        n++;
    }
    if (n && strlen(r->kind) <= SCHEMA_NAME_MAX) {
        Dossier__Store__V1__RetentionOp__Item *it = &s->items[s->n];
        dossier__store__v1__retention_op__item__init(it);
        snprintf(s->kinds[s->n], sizeof(s->kinds[s->n]), "%s", r->kind);
        memcpy(s->rids[s->n], key + klen - STORE_RID_BYTES, STORE_RID_BYTES);
        it->kind = s->kinds[s->n];
        it->rid = (ProtobufCBinaryData){STORE_RID_BYTES, s->rids[s->n]};
        it->fields = names;
        it->n_fields = n;
        s->fields[s->n] = names;
        note_subject(s, 0, s->n, r);
        s->ptrs[s->n] = it;
        s->n++;
    } else {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
    }
    dossier__store__v1__stored_record__free_unpacked(r, NULL);
    return 0;
}

/* Proposes the field items of @s as one RetentionOp, or, with @whole,
 * its whole-record items as one RecordRetentionOp, and waits for it; adds
 * the fields dropped (records deleted) to *@dropped. */
static int propose(struct retention *rt, struct sweep *s, int whole,
                   uint64_t *dropped, struct dossier_status *st)
{
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__RetentionOp op = DOSSIER__STORE__V1__RETENTION_OP__INIT;
    Dossier__Store__V1__RecordRetentionOp rop =
        DOSSIER__STORE__V1__RECORD_RETENTION_OP__INIT;
    struct store_result res;
    struct outcome *o;
    uint8_t *buf;
    size_t len;

    cmd.time_ms = s->now;
    cmd.principal = (char *)"dossierd-retention";
    if (whole) {
        rop.n_items = s->n_whole_ptrs;
        rop.items = s->whole_ptrs;
        cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_RECORD_RETENTION;
        cmd.record_retention = &rop;
    } else {
        op.n_items = s->n_ptrs;
        op.items = s->ptrs;
        cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_RETENTION;
        cmd.retention = &op;
    }
    len = dossier__store__v1__command__get_packed_size(&cmd);
    if (!(o = outcome_new()))
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    if (!(buf = malloc(len))) {
        outcome_abandon(o);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    dossier__store__v1__command__pack(&cmd, buf);
    if (cluster_submit(rt->node->cluster, buf, len, outcome_applied, o) !=
        0) {
        outcome_abandon(o);
        return err_set(st, DOSSIER_UNAVAILABLE, "the node is stopping");
    }
    /* Until it is applied, or the node stops (the next leader sweeps). */
    if (!outcome_wait(o, -1, &rt->stopping, &res))
        return err_set(st, DOSSIER_UNAVAILABLE, "the node is stopping");
    *st = res.status;
    *dropped += res.deleted;
    return st->code;
}

/* One sweep over every record. */
static void sweep(struct retention *rt)
{
    struct sweep *s = calloc(1, sizeof(*s));
    struct dossier_status st;
    uint64_t dropped = 0, records = 0, commands = 0, expired = 0;
    int first = 1, rc = 0;

    if (!s)
        return;
    s->store = rt->node->store;
    s->now = records_now_ms() + rt->offset_ms;
    while (rc == 0 && (first || s->more)) {
        uint8_t after[STORE_KEY_MAX];
        size_t alen = s->last_len;
        memcpy(after, s->last, alen);
        s->more = 0;
        s->visited = 0;
        rc = store_scan(s->store, STORE_RECORD, (const uint8_t *)"", 0,
                        first ? NULL : after,
                        first ? 0 : alen, record_cb, s, &st);
        first = 0;
        if (rc == 1)
            rc = 0;
        drop_restricted(s);
        if (rc == 0 && s->n_ptrs) {
            records += s->n_ptrs;
            commands++;
            rc = propose(rt, s, 0, &dropped, &st);
        }
        if (rc == 0 && s->n_whole_ptrs) {
            commands++;
            rc = propose(rt, s, 1, &expired, &st);
        }
        sweep_clear(s);
        if (!cluster_is_leader(rt->node->cluster))
            break; /* the new leader sweeps */
        if (__atomic_load_n(&rt->stopping, __ATOMIC_ACQUIRE)) {
            free(s); /* the node is stopping; the next leader sweeps */
            return;
        }
    }
    /* Every sweep leaves an audit entry, also one that found nothing. */
    if (rc == 0 && commands == 0 && cluster_is_leader(rt->node->cluster))
        rc = propose(rt, s, 0, &dropped, &st);
    if (rc)
        log_printf(LOG_WARN, "retention sweep stopped: %s", st.message);
    else
        log_printf(records || expired ? LOG_INFO : LOG_DEBUG,
                   "retention sweep: %" PRIu64 " fields past their retention "
                   "dropped from %" PRIu64 " records; %" PRIu64 " records "
                   "past their kind's retention deleted",
                   dropped, records, expired);
    free(s);
}

static void *retention_main(void *arg)
{
    struct retention *rt = arg;
    pthread_mutex_lock(&rt->mu);
    while (!rt->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += rt->interval_ms / 1000;
        until.tv_nsec += (rt->interval_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&rt->cv, &rt->mu, &until);
        if (rt->stopping)
            break;
        pthread_mutex_unlock(&rt->mu);
        if (cluster_is_leader(rt->node->cluster) &&
            cluster_keys_ready(rt->node->cluster))
            sweep(rt);
        pthread_mutex_lock(&rt->mu);
    }
    pthread_mutex_unlock(&rt->mu);
    return NULL;
}

int retention_start(struct node *n, int64_t interval_ms, int64_t offset_ms,
                    struct retention **out, struct dossier_status *st)
{
    struct retention *rt;
    *out = NULL;
    if (interval_ms <= 0)
        return err_ok(st); /* off */
    rt = calloc(1, sizeof(*rt));
    if (!rt)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    rt->node = n;
    rt->interval_ms = interval_ms;
    rt->offset_ms = offset_ms;
    pthread_mutex_init(&rt->mu, NULL);
    pthread_cond_init(&rt->cv, NULL);
    if (pthread_create(&rt->thread, NULL, retention_main, rt) != 0) {
        pthread_mutex_destroy(&rt->mu);
        pthread_cond_destroy(&rt->cv);
        free(rt);
        return err_set(st, DOSSIER_INTERNAL,
                       "cannot start the retention thread");
    }
    *out = rt;
    return err_ok(st);
}

void retention_stop(struct retention *rt)
{
    if (!rt)
        return;
    pthread_mutex_lock(&rt->mu);
    __atomic_store_n(&rt->stopping, 1, __ATOMIC_RELEASE);
    pthread_cond_signal(&rt->cv);
    pthread_mutex_unlock(&rt->mu);
    pthread_join(rt->thread, NULL);
    pthread_mutex_destroy(&rt->mu);
    pthread_cond_destroy(&rt->cv);
    free(rt);
}
