/* Subjects/Export (Art. 15/20): everything stored about one subject,
 * streamed from a thread of its own (stream_job.h):
 *
 *   header, every record (every field, whatever the caller's purpose),
 *   every consent event, every rectification (which fields of which
 *   record, when, by whom, why; never the values), every audit entry
 *   naming the subject, footer.
 *
 * Reading the audit entries walks the whole audit log, in slices, so the
 * swap lock is never held for long. The export itself is audited. */
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
#include "stream_job.h"

/* Audit entries visited per slice of the walk. */
#define AUDIT_SLICE 10000
/* Exports running at once on a node; more are refused until one ends. */
#define EXPORTS_MAX 4

static struct stream_group exports = STREAM_GROUP_INIT(EXPORTS_MAX, "export");

void api_export_stop(void)
{
    stream_group_stop(&exports);
}

void api_export_wait_idle(void)
{
    stream_group_wait_idle(&exports);
}

struct export_job {
    struct stream_job *stream;
    struct node *node;
    char *subject_id;
    /* The subject asked about, and the one it was merged into (where its
     * records, consent and restriction are now), or the same again. */
    uint8_t asked[CRYPT_PSEUDONYM_BYTES];
    uint8_t sp[CRYPT_PSEUDONYM_BYTES];
    uint64_t n_records, n_consent, n_audit, n_rectifications;
};

static void export_job_free(void *arg)
{
    struct export_job *j = arg;
    free(j->subject_id);
    free(j);
}

/* Sends @chunk and waits until it has left; -1 when the reader is gone. */
static int send_chunk(struct export_job *j, Dossier__V1__ExportChunk *chunk)
{
    return stream_job_send(j->stream, &chunk->base);
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

/* ---- rectifications (Art. 16) ---- */

/* The id of record (@kind, @rid) as stored now, into *@id (malloc'd), or
 * NULL when it is gone. */
static int record_id(struct export_job *j, const char *kind,
                     const uint8_t *rid, char **id, struct dossier_status *st)
{
    struct records_opened o;
    StoredRecord *sr;
    int rc;

    *id = NULL;
    if (!schema_name_valid(kind))
        return 0;
    rc = store_record_get(j->node->store, kind, rid, &sr, st);
    if (rc == DOSSIER_NOT_FOUND)
        return 0;
    if (rc)
        return rc;
    /* No field is opened: only the id is wanted. */
    rc = records_open(j->node, sr, rid, 0, &o, st);
    if (rc == DOSSIER_NOT_FOUND)
        return 0;
    if (rc)
        return rc;
    if (o.rec.subject_id[0] && strcmp(o.rec.subject_id, j->subject_id) == 0 &&
        !(*id = strdup(o.rec.id)))
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    records_opened_release(&o);
    return rc;
}

static int export_rectifications(struct export_job *j,
                                 struct dossier_status *st)
{
    Dossier__Store__V1__StoredRectification **rows;
    uint8_t prefix[STORE_SP_BYTES + 1];
    size_t n;
    int rc;

    memcpy(prefix, j->sp, STORE_SP_BYTES);
    prefix[STORE_SP_BYTES] = 'f';
    rc = store_scan_messages(
        j->node->store, STORE_CONSENT, prefix, sizeof(prefix),
        &dossier__store__v1__stored_rectification__descriptor,
        (ProtobufCMessage ***)&rows, &n, st);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        Dossier__V1__ExportChunk chunk = DOSSIER__V1__EXPORT_CHUNK__INIT;
        Dossier__V1__Rectification r = DOSSIER__V1__RECTIFICATION__INIT;
        char *id = NULL;
        if (rows[i]->rid.len != STORE_RID_BYTES) {
            rc = err_set(st, DOSSIER_CORRUPT, "a rectification row is "
                         "malformed");
            break;
        }
        if ((rc = record_id(j, rows[i]->kind, rows[i]->rid.data, &id, st)))
            break;
        r.kind = rows[i]->kind;
        r.id = id ? id : (char *)"";
        r.record = rows[i]->rid;
        r.n_fields = rows[i]->n_fields;
        r.fields = rows[i]->fields;
        r.time_ms = rows[i]->time_ms;
        r.principal = rows[i]->principal;
        r.reference = rows[i]->reference;
        r.revision = rows[i]->revision;
        chunk.item_case = DOSSIER__V1__EXPORT_CHUNK__ITEM_RECTIFICATION;
        chunk.rectification = &r;
        if (send_chunk(j, &chunk) != 0)
            rc = err_set(st, DOSSIER_CANCELLED, "the reader went away");
        else
            j->n_rectifications++;
        free(id);
    }
    store_messages_free((ProtobufCMessage **)rows, n);
    return rc;
}

/* ---- audit ---- */

struct audit_slice {
    const uint8_t *sp, *asked;
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
        (memcmp(e.subject, s->sp, STORE_SP_BYTES) != 0 &&
         memcmp(e.subject, s->asked, STORE_SP_BYTES) != 0))
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
    s.asked = j->asked;
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
    h.pseudonym = (ProtobufCBinaryData){STORE_SP_BYTES, j->asked};
    h.exported_at_ms = records_now_ms();
    h.applied_index = store_applied(j->node->store);
    h.restricted = restricted;
    rc = store_erasure_get(j->node->store, j->asked, &er, st);
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
        (rc = export_consent(j, st)) != 0 ||
        (rc = export_rectifications(j, st)) != 0 ||
        (rc = export_audit(j, st)) != 0)
        return rc;
    f.rectifications = j->n_rectifications;
    f.records = j->n_records;
    f.consent_events = j->n_consent;
    f.audit_entries = j->n_audit;
    chunk.item_case = DOSSIER__V1__EXPORT_CHUNK__ITEM_FOOTER;
    chunk.footer = &f;
    if (send_chunk(j, &chunk) != 0)
        return err_set(st, DOSSIER_CANCELLED, "the reader went away");
    return 0;
}

static void export_main(struct stream_job *sj)
{
    struct export_job *j = stream_job_user(sj);
    struct call *c = stream_job_call(sj);
    struct dossier_status st;

    j->stream = sj;
    if (export_all(j, &st) == 0) {
        log_printf(LOG_INFO, "exported a subject: %llu records, %llu consent "
                   "events, %llu audit entries",
                   (unsigned long long)j->n_records,
                   (unsigned long long)j->n_consent,
                   (unsigned long long)j->n_audit);
        call_audit_read(c, j->sp, NULL, 0);
        call_stream_end(c);
    } else {
        if (stream_group_stopping(&exports))
            err_set(&st, DOSSIER_UNAVAILABLE, "the node is stopping: export "
                    "again, from another node");
        call_fail_status(c, &st);
    }
}

void api_subjects_export(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__SubjectRequest *req = (Dossier__V1__SubjectRequest *)msg;
    struct node *n = call_node(c);
    struct export_job *j;
    struct dossier_status st;

    if (records_check_id(req->subject_id, "subject_id", &st))
        return call_fail_status(c, &st);
    j = calloc(1, sizeof(*j));
    if (!j || !(j->subject_id = strdup(req->subject_id))) {
        free(j);
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    }
    j->node = n;
    crypt_subject_pseudonym(n->crypt, req->subject_id,
                            strlen(req->subject_id), j->asked);
    if (store_subject_root(n->store, NULL, j->asked, j->sp, &st) != 0) {
        export_job_free(j);
        return call_fail_status(c, &st);
    }
    stream_job_start(c, &exports, export_main, j, export_job_free);
}
