/* Subjects/Export (Art. 15/20): everything stored about one subject,
 * streamed from a thread of its own, one message at a time, so that a slow
 * reader holds no lock and no completion-queue thread:
 *
 *   header, every record (every field, whatever the caller's purpose),
 *   every consent event, every audit entry naming the subject, footer.
 *
 * Reading the audit entries walks the whole audit log, in slices, so the
 * swap lock is never held for long. The export itself is audited. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "audit.h"
#include "crypt.h"
#include "errors.h"
#include "log.h"
#include "policy.h"
#include "records.h"
#include "store.h"

/* Audit entries visited per slice of the walk. */
#define AUDIT_SLICE 10000
/* Exports running at once on a node; more are refused until one ends. */
#define EXPORTS_MAX 4

/* Exports running, so that the node closes its store only after them. */
static pthread_mutex_t running_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t running_cv = PTHREAD_COND_INITIALIZER;
static int running;
static int exports_stopping;

static void running_add(int d)
{
    pthread_mutex_lock(&running_mu);
    running += d;
    if (running == 0)
        pthread_cond_broadcast(&running_cv);
    pthread_mutex_unlock(&running_mu);
}

void api_export_stop(void)
{
    __atomic_store_n(&exports_stopping, 1, __ATOMIC_RELEASE);
    api_export_wait_idle();
}

void api_export_wait_idle(void)
{
    pthread_mutex_lock(&running_mu);
    while (running > 0)
        pthread_cond_wait(&running_cv, &running_mu);
    pthread_mutex_unlock(&running_mu);
}

struct export_job {
    struct call *call;
    struct node *node;
    char *subject_id;
    uint8_t sp[CRYPT_PSEUDONYM_BYTES];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sending, broken, closed;
    int refs; /* the thread and the close callback */
    uint64_t n_records, n_consent, n_audit;
};

static void job_unref(struct export_job *j)
{
    int last;
    pthread_mutex_lock(&j->mu);
    last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (last) {
        pthread_mutex_destroy(&j->mu);
        pthread_cond_destroy(&j->cv);
        free(j->subject_id);
        free(j);
    }
}

static void on_sent(struct call *c, int ok)
{
    struct export_job *j = call_user(c);
    pthread_mutex_lock(&j->mu);
    j->sending = 0;
    if (!ok)
        j->broken = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void on_closed(struct call *c)
{
    struct export_job *j = call_user(c);
    pthread_mutex_lock(&j->mu);
    j->closed = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
}

/* Sends @chunk and waits until it has left; -1 when the reader is gone. */
static int send_chunk(struct export_job *j, Dossier__V1__ExportChunk *chunk)
{
    int ok;
    if (__atomic_load_n(&exports_stopping, __ATOMIC_ACQUIRE))
        return -1; /* the node is stopping */
    pthread_mutex_lock(&j->mu);
    if (j->closed || j->broken) {
        pthread_mutex_unlock(&j->mu);
        return -1;
    }
    j->sending = 1;
    if (call_stream_send(j->call, &chunk->base, on_sent) != 0) {
        j->sending = 0;
        pthread_mutex_unlock(&j->mu);
        return -1;
    }
    while (j->sending)
        pthread_cond_wait(&j->cv, &j->mu);
    ok = !j->broken && !j->closed;
    pthread_mutex_unlock(&j->mu);
    return ok ? 0 : -1;
}

/* ---- records ---- */

struct rec_key {
    char kind[SCHEMA_NAME_MAX + 1];
    uint8_t rid[STORE_RID_BYTES];
};

struct rec_keys {
    struct rec_key *k;
    size_t n, cap;
};

static int rec_key_cb(void *arg, const uint8_t *key, size_t klen,
                      const uint8_t *val, size_t vlen)
{
    struct rec_keys *l = arg;
    const uint8_t *kind = key + STORE_SP_BYTES, *nul;
    size_t kind_len;
    (void)val;
    (void)vlen;
    if (klen == STORE_SP_BYTES)
        return 0; /* the subject's key row */
    if (klen < STORE_SP_BYTES + 2 + STORE_RID_BYTES)
        return DOSSIER_CORRUPT;
    nul = memchr(kind, 0, klen - STORE_SP_BYTES - STORE_RID_BYTES);
    kind_len = nul ? (size_t)(nul - kind) : 0;
    if (!nul || nul != key + klen - STORE_RID_BYTES - 1 ||
        kind_len > SCHEMA_NAME_MAX)
        return DOSSIER_CORRUPT;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 32;
        struct rec_key *g = realloc(l->k, cap * sizeof(*g));
        if (!g)
            return DOSSIER_NOMEM;
        l->k = g;
        l->cap = cap;
    }
    memcpy(l->k[l->n].kind, kind, kind_len);
    l->k[l->n].kind[kind_len] = '\0';
    memcpy(l->k[l->n].rid, key + klen - STORE_RID_BYTES, STORE_RID_BYTES);
    l->n++;
    return 0;
}

static int export_records(struct export_job *j, struct dossier_status *st)
{
    struct rec_keys l = {0};
    int rc = store_scan(j->node->store, STORE_SUBJECT, j->sp, STORE_SP_BYTES,
                        NULL, 0, rec_key_cb, &l, st);
    if (rc == DOSSIER_CORRUPT || rc == DOSSIER_NOMEM)
        err_set(st, rc, rc == DOSSIER_NOMEM ? "out of memory"
                                            : "a subject row is malformed");
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        Dossier__V1__ExportChunk chunk = DOSSIER__V1__EXPORT_CHUNK__INIT;
        struct records_opened o;
        StoredRecord *sr;
        rc = store_record_get(j->node->store, l.k[i].kind, l.k[i].rid, &sr,
                              st);
        if (rc == DOSSIER_NOT_FOUND) {
            rc = 0; /* deleted meanwhile */
            continue;
        }
        if (rc)
            break;
        rc = records_open(j->node, sr, l.k[i].rid, POLICY_ALL_CATEGORIES, &o,
                          st);
        if (rc == DOSSIER_NOT_FOUND) {
            rc = 0; /* deleted while its links were read */
            continue;
        }
        if (rc)
            break;
        chunk.item_case = DOSSIER__V1__EXPORT_CHUNK__ITEM_RECORD;
        chunk.record = &o.rec;
        if (send_chunk(j, &chunk) != 0)
            rc = err_set(st, DOSSIER_CANCELLED, "the reader went away");
        else
            j->n_records++;
        records_opened_release(&o);
    }
    free(l.k);
    return rc;
}

/* ---- consent ---- */

static int export_consent(struct export_job *j, struct dossier_status *st)
{
    Dossier__Store__V1__StoredConsent **sc;
    uint8_t prefix[STORE_SP_BYTES + 1];
    size_t n;
    int rc;

    memcpy(prefix, j->sp, STORE_SP_BYTES);
    prefix[STORE_SP_BYTES] = 'h'; /* the history: every event */
    rc = store_scan_messages(j->node->store, STORE_CONSENT, prefix,
                             sizeof(prefix),
                             &dossier__store__v1__stored_consent__descriptor,
                             (ProtobufCMessage ***)&sc, &n, st);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        Dossier__V1__ExportChunk chunk = DOSSIER__V1__EXPORT_CHUNK__INIT;
        Dossier__V1__ConsentEvent ev;
        api_consent_event(sc[i], j->subject_id, &ev);
        chunk.item_case = DOSSIER__V1__EXPORT_CHUNK__ITEM_CONSENT;
        chunk.consent = &ev;
        if (send_chunk(j, &chunk) != 0)
            rc = err_set(st, DOSSIER_CANCELLED, "the reader went away");
        else
            j->n_consent++;
    }
    store_messages_free((ProtobufCMessage **)sc, n);
    return rc;
}

/* ---- audit ---- */

struct audit_slice {
    const uint8_t *sp;
    size_t visited;
    uint8_t last[9];
    int more;
    Dossier__V1__AuditRecord *recs;
    uint8_t **bufs;
    size_t n, cap;
};

static int audit_row_cb(void *arg, const uint8_t *key, size_t klen,
                        const uint8_t *val, size_t vlen)
{
    struct audit_slice *s = arg;
    struct audit_entry e;
    struct dossier_status st;
    uint8_t *copy;

    if (klen != 9 || vlen < AUDIT_HASH_BYTES)
        return DOSSIER_CORRUPT;
    if (s->visited == AUDIT_SLICE) {
        s->more = 1;
        return 1;
    }
    s->visited++;
    memcpy(s->last, key, 9);
    if (audit_entry_decode(val + AUDIT_HASH_BYTES, vlen - AUDIT_HASH_BYTES, &e,
                           &st) != 0)
        return DOSSIER_CORRUPT;
    if (!e.subject || e.pseudonym_len != STORE_SP_BYTES ||
        memcmp(e.subject, s->sp, STORE_SP_BYTES) != 0)
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        void *a = realloc(s->recs, cap * sizeof(*s->recs));
        void *b = a ? realloc(s->bufs, cap * sizeof(*s->bufs)) : NULL;
        if (a)
            s->recs = a;
        if (!a || !b)
            return DOSSIER_NOMEM;
        s->bufs = b;
        s->cap = cap;
    }
    if (!(copy = malloc(vlen)))
        return DOSSIER_NOMEM;
    memcpy(copy, val, vlen);
    dossier__v1__audit_record__init(&s->recs[s->n]);
    s->recs[s->n].index = store_be_u64(key + 1);
    s->recs[s->n].hash = (ProtobufCBinaryData){AUDIT_HASH_BYTES, copy};
    s->recs[s->n].entry = (ProtobufCBinaryData){vlen - AUDIT_HASH_BYTES,
                                                copy + AUDIT_HASH_BYTES};
    s->bufs[s->n++] = copy;
    return 0;
}

static int export_audit(struct export_job *j, struct dossier_status *st)
{
    struct audit_slice s;
    int rc = 0, first = 1;

    memset(&s, 0, sizeof(s));
    s.sp = j->sp;
    while (rc == 0 && (first || s.more)) {
        uint8_t after[9];
        memcpy(after, s.last, sizeof(after));
        s.visited = 0;
        s.more = 0;
        rc = store_scan(j->node->store, STORE_AUDIT, (const uint8_t *)"e", 1,
                        first ? NULL : after, first ? 0 : sizeof(after),
                        audit_row_cb, &s, st);
        first = 0;
        if (rc == 1)
            rc = 0;
        if (rc == DOSSIER_CORRUPT || rc == DOSSIER_NOMEM)
            err_set(st, rc, rc == DOSSIER_NOMEM ? "out of memory"
                                                : "an audit row is malformed");
        for (size_t i = 0; rc == 0 && i < s.n; i++) {
            Dossier__V1__ExportChunk chunk = DOSSIER__V1__EXPORT_CHUNK__INIT;
            chunk.item_case = DOSSIER__V1__EXPORT_CHUNK__ITEM_AUDIT;
            chunk.audit = &s.recs[i];
            if (send_chunk(j, &chunk) != 0)
                rc = err_set(st, DOSSIER_CANCELLED, "the reader went away");
            else
                j->n_audit++;
        }
        for (size_t i = 0; i < s.n; i++)
            free(s.bufs[i]);
        s.n = 0;
    }
    free(s.recs);
    free(s.bufs);
    return rc;
}

/* ---- the job ---- */

static int export_all(struct export_job *j, struct dossier_status *st)
{
    Dossier__V1__ExportChunk chunk = DOSSIER__V1__EXPORT_CHUNK__INIT;
    Dossier__V1__ExportHeader h = DOSSIER__V1__EXPORT_HEADER__INIT;
    Dossier__V1__ExportFooter f = DOSSIER__V1__EXPORT_FOOTER__INIT;
    Dossier__Store__V1__ErasureRecord *er = NULL;
    int rc, restricted;

    restricted = store_restricted(j->node->store, j->sp, st);
    if (restricted < 0 || restricted > 1)
        return st->code ? st->code : DOSSIER_INTERNAL;
    h.subject_id = j->subject_id;
    h.pseudonym = (ProtobufCBinaryData){STORE_SP_BYTES, j->sp};
    h.exported_at_ms = records_now_ms();
    h.applied_index = store_applied(j->node->store);
    h.restricted = restricted;
    rc = store_erasure_get(j->node->store, j->sp, &er, st);
    if (rc == 0) {
        h.erased = 1;
        dossier__store__v1__erasure_record__free_unpacked(er, NULL);
    } else if (rc != DOSSIER_NOT_FOUND) {
        return rc;
    }
    chunk.item_case = DOSSIER__V1__EXPORT_CHUNK__ITEM_HEADER;
    chunk.header = &h;
    if (send_chunk(j, &chunk) != 0)
        return err_set(st, DOSSIER_CANCELLED, "the reader went away");
    if ((rc = export_records(j, st)) != 0 ||
        (rc = export_consent(j, st)) != 0 || (rc = export_audit(j, st)) != 0)
        return rc;
    f.records = j->n_records;
    f.consent_events = j->n_consent;
    f.audit_entries = j->n_audit;
    chunk.item_case = DOSSIER__V1__EXPORT_CHUNK__ITEM_FOOTER;
    chunk.footer = &f;
    if (send_chunk(j, &chunk) != 0)
        return err_set(st, DOSSIER_CANCELLED, "the reader went away");
    return 0;
}

static void *export_main(void *arg)
{
    struct export_job *j = arg;
    struct dossier_status st;

    if (export_all(j, &st) == 0) {
        log_printf(LOG_INFO, "exported a subject: %llu records, %llu consent "
                   "events, %llu audit entries",
                   (unsigned long long)j->n_records,
                   (unsigned long long)j->n_consent,
                   (unsigned long long)j->n_audit);
        call_audit_read(j->call, j->sp, NULL, 0);
        call_stream_end(j->call);
    } else {
        if (__atomic_load_n(&exports_stopping, __ATOMIC_ACQUIRE))
            err_set(&st, DOSSIER_UNAVAILABLE, "the node is stopping: export "
                    "again, from another node");
        call_fail_status(j->call, &st);
    }
    job_unref(j);
    running_add(-1);
    return NULL;
}

void api_subjects_export(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__SubjectRequest *req = (Dossier__V1__SubjectRequest *)msg;
    struct node *n = call_node(c);
    struct export_job *j;
    struct dossier_status st;
    pthread_attr_t attr;
    pthread_t t;

    if (records_check_id(req->subject_id, "subject_id", &st))
        return call_fail_status(c, &st);
    pthread_mutex_lock(&running_mu);
    if (running >= EXPORTS_MAX) {
        pthread_mutex_unlock(&running_mu);
        return call_fail(c, DOSSIER_UNAVAILABLE,
                         "%d exports are running on this node; retry when "
                         "one has ended",
                         EXPORTS_MAX);
    }
    pthread_mutex_unlock(&running_mu);
    j = calloc(1, sizeof(*j));
    if (!j || !(j->subject_id = strdup(req->subject_id))) {
        free(j);
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    }
    j->call = c;
    j->node = n;
    crypt_subject_pseudonym(n->crypt, req->subject_id,
                            strlen(req->subject_id), j->sp);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 2;
    call_set_user(c, j);
    if (call_stream_open(c, on_closed) != 0) {
        call_set_user(c, NULL);
        pthread_mutex_destroy(&j->mu);
        pthread_cond_destroy(&j->cv);
        free(j->subject_id);
        free(j);
        return call_fail(c, DOSSIER_UNAVAILABLE, "the call ended");
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    running_add(1);
    if (pthread_create(&t, &attr, export_main, j) != 0) {
        running_add(-1);
        job_unref(j); /* the thread's reference */
        call_fail(c, DOSSIER_UNAVAILABLE, "cannot start an export thread");
    }
    pthread_attr_destroy(&attr);
}
