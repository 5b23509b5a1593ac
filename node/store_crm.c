/* The CRM commands of the replicated state machine: duplicate rules (and,
 * below, merges). Applied by store_apply(), deterministically, like every
 * command (store.h); also the reads of pending merges' summaries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <rocksdb/c.h>
#include <sodium.h>

#include "errors.h"
#include "policy.h"
#include "store_int.h"

/* ------------------------------------------------------------------ */
/* Duplicate rules: "d" + kind in the policy family. The node checked the
 * rules against the kind when it proposed them; apply checks the form. */

int store_apply_duplicate_rules(struct store_batch *b, const Command *cmd,
                                struct store_result *res)
{
    const Dossier__Store__V1__DefineDuplicateRulesOp *op =
        cmd->define_duplicate_rules;
    Dossier__V1__DuplicateRuleSet def;
    uint8_t key[1 + SCHEMA_NAME_MAX];
    size_t n;

    if (!op || !op->rule_set || !schema_name_valid(op->rule_set->kind) ||
        op->rule_set->n_rules == 0)
        return store_apply_bad(res, "define duplicate rules");
    for (size_t i = 0; i < op->rule_set->n_rules; i++)
        if (!op->rule_set->rules[i] ||
            !policy_name_valid(op->rule_set->rules[i]->name) ||
            op->rule_set->rules[i]->n_fields == 0)
            return store_apply_bad(res, "duplicate rule");
    def = *op->rule_set;
    def.version = b->revision + 1;
    def.defined = 1;
    n = strlen(def.kind);
    key[0] = 'd';
    memcpy(key + 1, def.kind, n);
    if (store_batch_put_pb(b, STORE_POLICY, key, 1 + n, &def.base) != 0)
        return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    b->revision++;
    res->version = b->revision;
    return err_ok(&res->status);
}

/* ------------------------------------------------------------------ */
/* Merges (api_merge.c proposes them; proto/store.proto MergeOp).
 *
 * A merge writes through a tracking writer: the first time it touches a
 * key it reads the value the key had (through the batch) and keeps it,
 * and it keeps a hash of the last value it wrote. What it kept becomes the
 * MergeRecord ("u" + id, policy family) from which an undo writes every
 * key back, after checking that none changed since (its value still
 * hashes to what the merge wrote). Records come back with a new version,
 * as every change gives one. Change-feed rows are not tracked: the feed
 * records the merge and the undo as changes of their own, and the
 * duplicates' earlier changes leave it at the merge, as a deleted
 * record's do. */

#define MERGE_ID_LEN STORE_MERGE_ID_LEN
#define HASH_BYTES 16

typedef Dossier__Store__V1__MergeSummary MergeSummary;

int store_merge_id_valid(const char *id)
{
    if (strlen(id) != MERGE_ID_LEN || memcmp(id, "MRG-", 4) != 0)
        return 0;
    for (const char *p = id + 4; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F')))
            return 0;
    return 1;
}

/* ---- Summaries: "w" revision id (MergeSummary) and "v" id (revision),
 * what a listing and the API read instead of the MergeRecord. ---- */

#define SUMMARY_KEY_LEN (1 + 8 + MERGE_ID_LEN)

static void summary_key(uint8_t key[SUMMARY_KEY_LEN], uint64_t rev,
                        const char *id)
{
    key[0] = 'w';
    store_u64_be(key + 1, rev);
    memcpy(key + 9, id, MERGE_ID_LEN);
}

/* Writes summary @ms and its "v" row. Errors: DOSSIER_NOMEM. */
static int summary_put(struct store_batch *b, const MergeSummary *ms)
{
    uint8_t key[SUMMARY_KEY_LEN], vkey[1 + MERGE_ID_LEN], rev[8];
    summary_key(key, ms->revision, ms->id);
    if (store_batch_put_pb(b, STORE_POLICY, key, sizeof(key), &ms->base))
        return DOSSIER_NOMEM;
    vkey[0] = 'v';
    memcpy(vkey + 1, ms->id, MERGE_ID_LEN);
    store_u64_be(rev, ms->revision);
    rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[STORE_POLICY],
                                 (const char *)vkey, sizeof(vkey),
                                 (const char *)rev, sizeof(rev));
    return 0;
}

/* Reads the summary of merge @id (a valid id), through @b when set (else
 * the caller holds the swap lock), into *@out.
 * Errors: DOSSIER_NOT_FOUND, DOSSIER_CORRUPT, DOSSIER_IO. */
static int summary_read(struct store *s, struct store_batch *b,
                        const char *id, MergeSummary **out,
                        struct dossier_status *st)
{
    uint8_t vkey[1 + MERGE_ID_LEN], key[SUMMARY_KEY_LEN];
    char *v;
    size_t vlen;
    uint64_t rev;
    int rc;

    *out = NULL;
    vkey[0] = 'v';
    memcpy(vkey + 1, id, MERGE_ID_LEN);
    if ((rc = store_get_raw(s, b, STORE_POLICY, vkey, sizeof(vkey), &v, &vlen,
                            st)))
        return rc;
    if (!v)
        return err_set(st, DOSSIER_NOT_FOUND,
                       "no pending merge %s (never made, undone or "
                       "confirmed)",
                       id);
    rev = vlen == 8 ? store_be_u64((const uint8_t *)v) : 0;
    rocksdb_free(v);
    summary_key(key, rev, id);
    if ((rc = store_get_raw(s, b, STORE_POLICY, key, sizeof(key), &v, &vlen,
                            st)))
        return rc;
    *out = v ? dossier__store__v1__merge_summary__unpack(NULL, vlen,
                                                         (const uint8_t *)v)
             : NULL;
    rocksdb_free(v);
    if (!*out)
        return err_set(st, DOSSIER_CORRUPT, "the summary of merge %s is "
                                            "missing or corrupt",
                       id);
    return 0;
}

int store_merge_get(struct store *s, const char *id, MergeSummary **out,
                    struct dossier_status *st)
{
    int rc;
    *out = NULL;
    if (!store_merge_id_valid(id))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "a merge id is MRG- and 16 upper-case hex digits");
    pthread_rwlock_rdlock(&s->swap);
    rc = summary_read(s, NULL, id, out, st);
    pthread_rwlock_unlock(&s->swap);
    return rc ? rc : err_ok(st);
}

struct merge_list {
    MergeSummary **v;
    size_t n, max;
    int more;
};

static int merge_list_cb(void *arg, const uint8_t *key, size_t klen,
                         const uint8_t *val, size_t vlen)
{
    struct merge_list *l = arg;
    (void)key;
    if (klen != SUMMARY_KEY_LEN)
        return DOSSIER_CORRUPT;
    if (l->n == l->max) {
        l->more = 1;
        return 1;
    }
    if (!(l->v[l->n] = dossier__store__v1__merge_summary__unpack(NULL, vlen,
                                                                 val)))
        return DOSSIER_CORRUPT;
    l->n++;
    return 0;
}

int store_merge_list(struct store *s, uint64_t after, size_t max,
                     MergeSummary ***out, size_t *n, int *more,
                     struct dossier_status *st)
{
    struct merge_list l = {NULL, 0, max, 0};
    uint8_t from[1 + 8 + 1];
    int rc;

    *out = NULL;
    *n = 0;
    *more = 0;
    if (!(l.v = calloc(max + 1, sizeof(*l.v))))
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    /* After every summary of revision @after: an id never holds 0xff. */
    from[0] = 'w';
    store_u64_be(from + 1, after);
    from[9] = 0xff;
    rc = store_scan(s, STORE_POLICY, (const uint8_t *)"w", 1,
                    after ? from : NULL, after ? sizeof(from) : 0,
                    merge_list_cb, &l, st);
    if (rc == 1)
        rc = 0;
    if (rc) {
        store_merges_free(l.v, l.n);
        return rc == DOSSIER_CORRUPT
                   ? err_set(st, rc, "a pending merge's summary is corrupt")
                   : rc;
    }
    *out = l.v;
    *n = l.n;
    *more = l.more;
    return err_ok(st);
}

void store_merges_free(MergeSummary **m, size_t n)
{
    for (size_t i = 0; m && i < n; i++)
        dossier__store__v1__merge_summary__free_unpacked(m[i], NULL);
    free(m);
}

/* One key the merge touched. */
struct img {
    int family;
    uint8_t *key;
    size_t klen;
    int existed;
    uint8_t *before;
    size_t blen;
    int exists_after;
    uint8_t hash[HASH_BYTES];
};

/* The tracking writer. */
struct mw {
    struct store_batch *b;
    struct img *v;
    size_t n, cap;
    size_t *slots; /* open addressing: index + 1, 0 empty */
    size_t n_slots;
    int rc;        /* the first failure (DOSSIER_NOMEM, DOSSIER_IO) */
    struct dossier_status *st;
};

static size_t key_hash(int family, const uint8_t *k, size_t n)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)family;
    for (size_t i = 0; i < n; i++)
        h = (h ^ k[i]) * 1099511628211ULL;
    return (size_t)h;
}

static int mw_grow(struct mw *w)
{
    size_t n = w->n_slots ? 2 * w->n_slots : 256;
    size_t *slots = calloc(n, sizeof(*slots));
    if (!slots)
        return DOSSIER_NOMEM;
    for (size_t i = 0; i < w->n; i++) {
        size_t h = key_hash(w->v[i].family, w->v[i].key, w->v[i].klen) &
                   (n - 1);
        while (slots[h])
            h = (h + 1) & (n - 1);
        slots[h] = i + 1;
    }
    free(w->slots);
    w->slots = slots;
    w->n_slots = n;
    return 0;
}

/* The image of (@family, @key), made (with the value it has now) on
 * first use; NULL after a failure (w->rc set). */
static struct img *mw_touch(struct mw *w, int family, const uint8_t *key,
                            size_t klen)
{
    size_t h;
    struct img *im;
    char *v = NULL;
    size_t vlen = 0;

    if (w->rc)
        return NULL;
    if (2 * (w->n + 1) > w->n_slots && (w->rc = mw_grow(w)))
        return NULL;
    for (h = key_hash(family, key, klen) & (w->n_slots - 1); w->slots[h];
         h = (h + 1) & (w->n_slots - 1)) {
        im = &w->v[w->slots[h] - 1];
        if (im->family == family && im->klen == klen &&
            memcmp(im->key, key, klen) == 0)
            return im;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        struct img *nv = realloc(w->v, cap * sizeof(*nv));
        if (!nv) {
            w->rc = DOSSIER_NOMEM;
            return NULL;
        }
        w->v = nv;
        w->cap = cap;
    }
    if ((w->rc = store_get_raw(w->b->s, w->b, family, key, klen, &v, &vlen,
                               w->st)))
        return NULL;
    im = &w->v[w->n];
    memset(im, 0, sizeof(*im));
    im->family = family;
    im->klen = klen;
    im->existed = v != NULL;
    im->exists_after = im->existed;
    if (!(im->key = malloc(klen ? klen : 1)) ||
        (v && !(im->before = malloc(vlen ? vlen : 1)))) {
        free(im->key);
        rocksdb_free(v);
        w->rc = DOSSIER_NOMEM;
        return NULL;
    }
    memcpy(im->key, key, klen);
    if (v) {
        memcpy(im->before, v, vlen);
        im->blen = vlen;
        crypto_generichash(im->hash, HASH_BYTES, (const uint8_t *)v, vlen,
                           NULL, 0);
        rocksdb_free(v);
    }
    w->slots[h] = ++w->n;
    return im;
}

static void mw_put(struct mw *w, int family, const uint8_t *key, size_t klen,
                   const uint8_t *val, size_t vlen)
{
    struct img *im = mw_touch(w, family, key, klen);
    if (!im)
        return;
    im->exists_after = 1;
    crypto_generichash(im->hash, HASH_BYTES, val, vlen, NULL, 0);
    rocksdb_writebatch_wi_put_cf(w->b->wb, w->b->s->cf[family],
                                 (const char *)key, klen, (const char *)val,
                                 vlen);
}

static void mw_del(struct mw *w, int family, const uint8_t *key, size_t klen)
{
    struct img *im = mw_touch(w, family, key, klen);
    if (!im)
        return;
    im->exists_after = 0;
    rocksdb_writebatch_wi_delete_cf(w->b->wb, w->b->s->cf[family],
                                    (const char *)key, klen);
}

static void mw_put_pb(struct mw *w, int family, const uint8_t *key,
                      size_t klen, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        w->rc = DOSSIER_NOMEM;
        return;
    }
    protobuf_c_message_pack(m, buf);
    mw_put(w, family, key, klen, buf, len);
    free(buf);
}

static void mw_release(struct mw *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->v[i].key);
        free(w->v[i].before);
    }
    free(w->v);
    free(w->slots);
}

/* Deletes every link row under @dir (kind, rid), each with its mirror. */
struct link_del {
    struct mw *w;
};

static int link_del_cb(void *arg, const uint8_t *key, size_t klen)
{
    struct mw *w = arg;
    struct store_link_row r;
    uint8_t mirror[STORE_KEY_MAX];
    size_t mlen;
    if (store_link_key_parse(key, klen, &r) != 0)
        return DOSSIER_CORRUPT;
    mlen = store_link_key(mirror, r.dir == 'o' ? 'i' : 'o', r.b_kind, r.b_rid,
                          r.label, r.a_kind, r.a_rid);
    mw_del(w, STORE_LINK, key, klen);
    mw_del(w, STORE_LINK, mirror, mlen);
    return w->rc;
}

static int links_drop(struct mw *w, char dir, const char *kind,
                      const uint8_t *rid)
{
    uint8_t prefix[1 + STORE_KEY_MAX];
    size_t plen;
    prefix[0] = (uint8_t)dir;
    plen = 1 + store_record_key(prefix + 1, kind, rid);
    return store_batch_keys(w->b, STORE_LINK, prefix, plen, link_del_cb, w);
}

/* Writes the rows of Put @op's links ("o" with the sealed id, "i"). */
static void links_write(struct mw *w, const Dossier__Store__V1__PutOp *op)
{
    uint8_t key[STORE_KEY_MAX];
    size_t klen;
    for (size_t i = 0; i < op->n_links; i++) {
        const Dossier__Store__V1__LinkEntry *l = op->links[i];
        klen = store_link_key(key, 'o', op->kind, op->rid.data, l->label,
                              l->kind, l->rid.data);
        mw_put(w, STORE_LINK, key, klen, l->sealed_id.data, l->sealed_id.len);
        klen = store_link_key(key, 'i', l->kind, l->rid.data, l->label,
                              op->kind, op->rid.data);
        mw_put(w, STORE_LINK, key, klen, (const uint8_t *)"", 0);
    }
}

/* Deletes record @old (@kind, @rid): its index rows, its links both
 * ways, its membership and itself. */
static int record_drop(struct mw *w, const char *kind, const uint8_t *rid,
                       const StoredRecord *old)
{
    uint8_t key[STORE_KEY_MAX];
    size_t klen;
    int rc;
    if ((rc = links_drop(w, 'o', kind, rid)) ||
        (rc = links_drop(w, 'i', kind, rid)))
        return rc;
    for (size_t i = 0; i < old->n_index_keys; i++)
        mw_del(w, STORE_INDEX, old->index_keys[i].data,
               old->index_keys[i].len);
    if (old->subject.len == STORE_SP_BYTES) {
        klen = store_membership_key(key, old->subject.data, kind, rid);
        mw_del(w, STORE_SUBJECT, key, klen);
    }
    klen = store_record_key(key, kind, rid);
    mw_del(w, STORE_RECORD, key, klen);
    return w->rc;
}

/* Writes Put @op over record @old: its index rows and links replaced, its
 * membership moved to @op's subject, the record at @version with times
 * @created and @updated; its packed form into *@packed (*@plen bytes,
 * malloc'd) for the feed. */
static int record_write(struct mw *w, const Dossier__Store__V1__PutOp *op,
                        const StoredRecord *old, uint64_t version,
                        int64_t created, int64_t updated, uint8_t **packed,
                        size_t *plen)
{
    StoredRecord rec = DOSSIER__STORE__V1__STORED_RECORD__INIT;
    uint8_t key[STORE_KEY_MAX];
    size_t klen;
    int rc;

    *packed = NULL;
    if ((rc = links_drop(w, 'o', op->kind, op->rid.data)))
        return rc;
    for (size_t i = 0; i < old->n_index_keys; i++)
        mw_del(w, STORE_INDEX, old->index_keys[i].data,
               old->index_keys[i].len);
    if (old->subject.len == STORE_SP_BYTES) {
        klen = store_membership_key(key, old->subject.data, op->kind,
                                    op->rid.data);
        mw_del(w, STORE_SUBJECT, key, klen);
    }
    for (size_t i = 0; i < op->n_index_keys; i++)
        mw_put(w, STORE_INDEX, op->index_keys[i].data, op->index_keys[i].len,
               (const uint8_t *)"", 0);
    links_write(w, op);
    if (op->subject.len == STORE_SP_BYTES) {
        klen = store_membership_key(key, op->subject.data, op->kind,
                                    op->rid.data);
        mw_put(w, STORE_SUBJECT, key, klen, (const uint8_t *)"", 0);
    }
    rec.kind = op->kind;
    rec.subject = op->subject;
    rec.dek_id = op->dek_id;
    rec.version = version;
    rec.created_at_ms = created;
    rec.updated_at_ms = updated;
    rec.sealed_id = op->sealed_id;
    rec.n_fields = op->n_fields;
    rec.fields = op->fields;
    rec.n_index_keys = op->n_index_keys;
    rec.index_keys = op->index_keys;
    rec.n_links = (uint32_t)op->n_links;
    *plen = dossier__store__v1__stored_record__get_packed_size(&rec);
    if (!(*packed = malloc(*plen ? *plen : 1)))
        return w->rc = DOSSIER_NOMEM;
    dossier__store__v1__stored_record__pack(&rec, *packed);
    klen = store_record_key(key, op->kind, op->rid.data);
    mw_put(w, STORE_RECORD, key, klen, *packed, *plen);
    return w->rc;
}

/* ---- Checks before anything is written ---- */

static int same_rid(const ProtobufCBinaryData *a, const uint8_t *b)
{
    return a->len == STORE_RID_BYTES && memcmp(a->data, b, STORE_RID_BYTES) == 0;
}

static int same_bytes(const ProtobufCBinaryData *a,
                      const ProtobufCBinaryData *b)
{
    return a->len == b->len && (!a->len || memcmp(a->data, b->data, a->len) == 0);
}

/* What apply read of the merge's records. */
struct merge_state {
    const Dossier__Store__V1__MergeOp *op;
    StoredRecord *survivor;
    StoredRecord **dups;
    StoredRecord **moved;
    int *moved_seen;
    int *rp_used;
    size_t n_members; /* membership rows found of op->subjects */
    int mismatch;     /* a row or record apply did not expect */
};

static void merge_state_release(struct merge_state *m)
{
    const Dossier__Store__V1__MergeOp *op = m->op;
    if (m->survivor)
        dossier__store__v1__stored_record__free_unpacked(m->survivor, NULL);
    for (size_t i = 0; m->dups && i < op->n_duplicates; i++)
        if (m->dups[i])
            dossier__store__v1__stored_record__free_unpacked(m->dups[i], NULL);
    for (size_t i = 0; m->moved && i < op->n_moved; i++)
        if (m->moved[i])
            dossier__store__v1__stored_record__free_unpacked(m->moved[i],
                                                             NULL);
    free(m->dups);
    free(m->moved);
    free(m->moved_seen);
    free(m->rp_used);
}

static ssize_t dup_index(const Dossier__Store__V1__MergeOp *op,
                         const char *kind, const uint8_t *rid)
{
    if (strcmp(kind, op->survivor->kind) != 0)
        return -1;
    for (size_t i = 0; i < op->n_duplicates; i++)
        if (same_rid(&op->duplicates[i]->rid, rid))
            return (ssize_t)i;
    return -1;
}

static ssize_t moved_index(const Dossier__Store__V1__MergeOp *op,
                           const char *kind, const uint8_t *rid)
{
    for (size_t i = 0; i < op->n_moved; i++)
        if (strcmp(op->moved[i]->kind, kind) == 0 &&
            same_rid(&op->moved[i]->rid, rid))
            return (ssize_t)i;
    return -1;
}

/* A membership row of a merged subject: a duplicate or a moved record. */
static int member_cb(void *arg, const uint8_t *key, size_t klen)
{
    struct merge_state *m = arg;
    const uint8_t *nul;
    const char *kind = (const char *)key + STORE_SP_BYTES;
    ssize_t i;
    if (klen == STORE_SP_BYTES)
        return 0; /* the subject's key */
    nul = memchr(key + STORE_SP_BYTES, 0, klen - STORE_SP_BYTES);
    if (!nul || (size_t)(key + klen - nul - 1) != STORE_RID_BYTES)
        return DOSSIER_CORRUPT;
    m->n_members++;
    if (dup_index(m->op, kind, nul + 1) >= 0)
        return 0;
    i = moved_index(m->op, kind, nul + 1);
    if (i < 0)
        m->mismatch = 1; /* a record the leader did not see */
    else
        m->moved_seen[i] = 1;
    return 0;
}

/* An incoming link row of a duplicate: its source must be the survivor,
 * a duplicate, a moved record (their own links are rewritten), a record
 * that no longer exists, or a re-pointed link. */
struct incoming {
    struct merge_state *m;
    struct store_batch *b;
    const uint8_t *dup_rid;
    struct dossier_status *st;
};

static int incoming_cb(void *arg, const uint8_t *key, size_t klen)
{
    struct incoming *in = arg;
    const Dossier__Store__V1__MergeOp *op = in->m->op;
    struct store_link_row r;
    StoredRecord *src;
    int rc;

    if (store_link_key_parse(key, klen, &r) != 0)
        return DOSSIER_CORRUPT;
    if ((strcmp(r.b_kind, op->survivor->kind) == 0 &&
         same_rid(&op->survivor->rid, r.b_rid)) ||
        dup_index(op, r.b_kind, r.b_rid) >= 0 ||
        moved_index(op, r.b_kind, r.b_rid) >= 0)
        return 0;
    rc = store_read_record(in->b->s, in->b, r.b_kind, r.b_rid, &src, in->st);
    if (rc == DOSSIER_NOT_FOUND)
        return 0;
    if (rc)
        return rc;
    for (size_t i = 0; i < op->n_repoints; i++) {
        const Dossier__Store__V1__LinkRepoint *p = op->repoints[i];
        if (strcmp(p->kind, r.b_kind) == 0 && same_rid(&p->rid, r.b_rid) &&
            strcmp(p->label, r.label) == 0 &&
            same_rid(&p->dup_rid, in->dup_rid)) {
            in->m->rp_used[i] = 1;
            if (p->dek_id != src->dek_id)
                in->m->mismatch = 1; /* its key changed since */
            dossier__store__v1__stored_record__free_unpacked(src, NULL);
            return 0;
        }
    }
    dossier__store__v1__stored_record__free_unpacked(src, NULL);
    in->m->mismatch = 1; /* a link made since the leader looked */
    return 0;
}

/* A link row that parses (checked before anything is written). */
static int link_row_cb(void *arg, const uint8_t *key, size_t klen)
{
    struct store_link_row r;
    (void)arg;
    return store_link_key_parse(key, klen, &r) != 0 ? DOSSIER_CORRUPT : 0;
}

static int links_parse(struct store_batch *b, char dir, const char *kind,
                       const uint8_t *rid)
{
    uint8_t prefix[1 + STORE_KEY_MAX];
    size_t plen;
    prefix[0] = (uint8_t)dir;
    plen = 1 + store_record_key(prefix + 1, kind, rid);
    return store_batch_keys(b, STORE_LINK, prefix, plen, link_row_cb, NULL);
}

/* A current consent row that decodes. */
struct consent_check {
    struct store_batch *b;
    struct dossier_status *st;
};

static int consent_row_cb(void *arg, const uint8_t *key, size_t klen)
{
    struct consent_check *cc = arg;
    Dossier__Store__V1__StoredConsent *c;
    char *v;
    size_t vlen;
    int rc;
    if (klen <= STORE_SP_BYTES || key[STORE_SP_BYTES] != 'c')
        return 0;
    if ((rc = store_get_raw(cc->b->s, cc->b, STORE_CONSENT, key, klen, &v,
                            &vlen, cc->st)))
        return rc;
    c = v ? dossier__store__v1__stored_consent__unpack(NULL, vlen,
                                                       (const uint8_t *)v)
          : NULL;
    rocksdb_free(v);
    if (!c)
        return DOSSIER_CORRUPT;
    dossier__store__v1__stored_consent__free_unpacked(c, NULL);
    return 0;
}

/* Every row the merge's writes will parse, parsed now: a command fails
 * before it writes anything, never half-way. */
static int merge_parse_rows(struct store_batch *b,
                            const Dossier__Store__V1__MergeOp *op,
                            struct dossier_status *st)
{
    const Dossier__Store__V1__PutOp *s = op->survivor;
    struct consent_check cc = {b, st};
    int rc = links_parse(b, 'o', s->kind, s->rid.data);
    for (size_t i = 0; rc == 0 && i < op->n_duplicates; i++)
        if ((rc = links_parse(b, 'o', s->kind, op->duplicates[i]->rid.data)) ==
            0)
            rc = links_parse(b, 'i', s->kind, op->duplicates[i]->rid.data);
    for (size_t i = 0; rc == 0 && i < op->n_moved; i++)
        rc = links_parse(b, 'o', op->moved[i]->kind, op->moved[i]->rid.data);
    for (size_t j = 0; rc == 0 && j < op->n_subjects; j++)
        rc = store_batch_keys(b, STORE_CONSENT, op->subjects[j].data,
                              STORE_SP_BYTES, consent_row_cb, &cc);
    /* The merged subjects' keys, which the merge's summary lists. */
    for (size_t j = 0; rc == 0 && j < op->n_subjects; j++) {
        SubjectKey *sk;
        rc = store_read_subject_key(b->s, b, op->subjects[j].data, &sk, st);
        if (rc == 0)
            dossier__store__v1__subject_key__free_unpacked(sk, NULL);
        else if (rc == DOSSIER_NOT_FOUND)
            rc = 0;
        else if (rc == DOSSIER_CORRUPT)
            return rc;
    }
    if (rc == DOSSIER_CORRUPT)
        return err_set(st, rc, "a link or consent row is malformed");
    if (rc == DOSSIER_NOMEM)
        return err_set(st, rc, "out of memory");
    return rc;
}

static int retry(struct store_result *res)
{
    return err_set(&res->status, DOSSIER_RETRY,
                   "the records changed while the merge was prepared");
}

/* Checks @op's form; 0 or a malformed-command status. */
static int merge_form(const Dossier__Store__V1__MergeOp *op,
                      struct store_result *res)
{
    const Dossier__Store__V1__PutOp *s = op->survivor;
    if (!store_merge_id_valid(op->id) || !s || !store_put_op_valid(s) ||
        s->expect_case != DOSSIER__STORE__V1__PUT_OP__EXPECT_EXPECTED_VERSION ||
        s->new_subject_key || op->n_duplicates == 0)
        return store_apply_bad(res, "merge");
    for (size_t i = 0; i < op->n_duplicates; i++)
        if (op->duplicates[i]->rid.len != STORE_RID_BYTES ||
            op->duplicates[i]->sealed_id.len == 0 ||
            same_rid(&op->duplicates[i]->rid, s->rid.data))
            return store_apply_bad(res, "merge duplicate");
    for (size_t i = 0; i < op->n_moved; i++) {
        const Dossier__Store__V1__PutOp *p = op->moved[i];
        if (!store_put_op_valid(p) || p->new_subject_key ||
            p->expect_case !=
                DOSSIER__STORE__V1__PUT_OP__EXPECT_EXPECTED_VERSION ||
            !same_bytes(&p->subject, &s->subject) || p->dek_id != s->dek_id ||
            (strcmp(p->kind, s->kind) == 0 && same_rid(&p->rid, s->rid.data)))
            return store_apply_bad(res, "merge moved record");
    }
    for (size_t i = 0; i < op->n_repoints; i++) {
        const Dossier__Store__V1__LinkRepoint *p = op->repoints[i];
        if (!schema_name_valid(p->kind) || p->rid.len != STORE_RID_BYTES ||
            !schema_name_valid(p->label) ||
            p->dup_rid.len != STORE_RID_BYTES || p->sealed_id.len == 0)
            return store_apply_bad(res, "merge link");
    }
    for (size_t i = 0; i < op->n_subjects; i++)
        if (op->subjects[i].len != STORE_SP_BYTES ||
            s->subject.len != STORE_SP_BYTES ||
            same_bytes(&op->subjects[i], &s->subject))
            return store_apply_bad(res, "merge subject");
    return 0;
}

/* Reads and checks what @op depends on into @m: RETRY when the store is
 * no longer what the leader saw. */
static int merge_check(struct store_batch *b, const Dossier__Store__V1__MergeOp *op,
                       struct merge_state *m, struct store_result *res)
{
    struct dossier_status *st = &res->status;
    const Dossier__Store__V1__PutOp *s = op->survivor;
    uint8_t key[1 + MERGE_ID_LEN];
    char *v;
    size_t vlen;
    int rc;

    memset(m, 0, sizeof(*m));
    m->op = op;
    key[0] = 'u';
    memcpy(key + 1, op->id, MERGE_ID_LEN);
    if ((rc = store_get_raw(b->s, b, STORE_POLICY, key, sizeof(key), &v,
                            &vlen, st)))
        return rc;
    if (v) {
        rocksdb_free(v);
        return err_set(st, DOSSIER_ALREADY_EXISTS, "merge %s exists already",
                       op->id);
    }
    m->dups = calloc(op->n_duplicates, sizeof(*m->dups));
    m->moved = calloc(op->n_moved + 1, sizeof(*m->moved));
    m->moved_seen = calloc(op->n_moved + 1, sizeof(*m->moved_seen));
    m->rp_used = calloc(op->n_repoints + 1, sizeof(*m->rp_used));
    if (!m->dups || !m->moved || !m->moved_seen || !m->rp_used)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    rc = store_read_record(b->s, b, s->kind, s->rid.data, &m->survivor, st);
    if (rc)
        return rc == DOSSIER_NOT_FOUND ? retry(res) : rc;
    if (m->survivor->version != s->expected_version ||
        !same_bytes(&m->survivor->subject, &s->subject))
        return retry(res);
    if (s->subject.len == STORE_SP_BYTES) {
        SubjectKey *sk;
        rc = store_read_subject_key(b->s, b, s->subject.data, &sk, st);
        if (rc)
            return rc == DOSSIER_NOT_FOUND ? retry(res) : rc;
        rc = sk->dek_id != s->dek_id;
        dossier__store__v1__subject_key__free_unpacked(sk, NULL);
        if (rc)
            return retry(res);
    }
    for (size_t i = 0; i < op->n_duplicates; i++) {
        const ProtobufCBinaryData *sub;
        int known;
        for (size_t j = 0; j < i; j++)
            if (same_bytes(&op->duplicates[j]->rid, &op->duplicates[i]->rid))
                return store_apply_bad(res, "merge duplicate twice");
        rc = store_read_record(b->s, b, s->kind, op->duplicates[i]->rid.data,
                               &m->dups[i], st);
        if (rc)
            return rc == DOSSIER_NOT_FOUND ? retry(res) : rc;
        if (m->dups[i]->version != op->duplicates[i]->expected_version)
            return retry(res);
        /* Its subject: the survivor's or one of op->subjects. */
        sub = &m->dups[i]->subject;
        known = sub->len == 0 || same_bytes(sub, &s->subject);
        for (size_t j = 0; !known && j < op->n_subjects; j++)
            known = same_bytes(sub, &op->subjects[j]);
        if (!known)
            return retry(res);
    }
    /* Every merged subject: its records are the duplicates and the moved
     * ones, and nothing else. */
    for (size_t j = 0; j < op->n_subjects; j++) {
        int has = 0;
        for (size_t i = 0; !has && i < op->n_duplicates; i++)
            has = same_bytes(&m->dups[i]->subject, &op->subjects[j]);
        if (!has)
            return store_apply_bad(res, "merge subject without duplicate");
        rc = store_batch_keys(b, STORE_SUBJECT, op->subjects[j].data,
                              STORE_SP_BYTES, member_cb, m);
        if (rc)
            return err_set(st, rc, rc == DOSSIER_NOMEM
                                       ? "out of memory"
                                       : "a membership key is malformed");
    }
    for (size_t i = 0; i < op->n_moved; i++) {
        const Dossier__Store__V1__PutOp *p = op->moved[i];
        int known = 0;
        if (!m->moved_seen[i])
            return retry(res);
        rc = store_read_record(b->s, b, p->kind, p->rid.data, &m->moved[i], st);
        if (rc)
            return rc == DOSSIER_NOT_FOUND ? retry(res) : rc;
        if (m->moved[i]->version != p->expected_version)
            return retry(res);
        for (size_t j = 0; !known && j < op->n_subjects; j++)
            known = same_bytes(&m->moved[i]->subject, &op->subjects[j]);
        if (!known)
            return retry(res);
    }
    /* The links of other records to each duplicate. */
    for (size_t i = 0; i < op->n_duplicates; i++) {
        uint8_t prefix[1 + STORE_KEY_MAX];
        struct incoming in = {m, b, op->duplicates[i]->rid.data, st};
        size_t plen;
        prefix[0] = 'i';
        plen = 1 + store_record_key(prefix + 1, s->kind,
                                    op->duplicates[i]->rid.data);
        rc = store_batch_keys(b, STORE_LINK, prefix, plen, incoming_cb, &in);
        if (rc == DOSSIER_NOMEM || rc == DOSSIER_CORRUPT)
            return err_set(st, rc, rc == DOSSIER_NOMEM
                                       ? "out of memory"
                                       : "a link row is malformed");
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < op->n_repoints; i++)
        if (!m->rp_used[i])
            return retry(res);
    if (m->mismatch)
        return retry(res);
    return merge_parse_rows(b, op, st);
}

/* ---- Consent ---- */

/* The current consent rows ("c") of the merged subjects, collected while
 * their rows move. */
struct consents {
    Dossier__Store__V1__StoredConsent **c;
    size_t n, cap;
};

static int consents_add(struct consents *l, Dossier__Store__V1__StoredConsent *c)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        void *p = realloc(l->c, cap * sizeof(*l->c));
        if (!p)
            return DOSSIER_NOMEM;
        l->c = p;
        l->cap = cap;
    }
    l->c[l->n++] = c;
    return 0;
}

static void consents_free(struct consents *l)
{
    for (size_t i = 0; i < l->n; i++)
        dossier__store__v1__stored_consent__free_unpacked(l->c[i], NULL);
    free(l->c);
}

/* Moves the consent rows of a merged subject to the survivor's subject:
 * history, merged subjects and pending merges go under it as they are;
 * the current states are kept in @cur for the merge of states; a
 * restriction carries over. Every row of the merged subject goes. */
struct consent_move {
    struct mw *w;
    const uint8_t *to;
    struct consents *cur;
    int restricted;
};

static int consent_move_cb(void *arg, const uint8_t *key, size_t klen)
{
    struct consent_move *cm = arg;
    struct mw *w = cm->w;
    uint8_t nkey[STORE_KEY_MAX + 64];
    char *v;
    size_t vlen;
    int rc;

    if (klen <= STORE_SP_BYTES || klen > sizeof(nkey))
        return DOSSIER_CORRUPT;
    if ((rc = store_get_raw(w->b->s, w->b, STORE_CONSENT, key, klen, &v, &vlen,
                            w->st)))
        return rc;
    if (!v)
        return 0;
    memcpy(nkey, cm->to, STORE_SP_BYTES);
    memcpy(nkey + STORE_SP_BYTES, key + STORE_SP_BYTES, klen - STORE_SP_BYTES);
    switch (key[STORE_SP_BYTES]) {
    case 'c': {
        Dossier__Store__V1__StoredConsent *c =
            dossier__store__v1__stored_consent__unpack(NULL, vlen,
                                                       (const uint8_t *)v);
        if (!c || consents_add(cm->cur, c)) {
            if (c)
                dossier__store__v1__stored_consent__free_unpacked(c, NULL);
            rocksdb_free(v);
            return c ? DOSSIER_NOMEM : DOSSIER_CORRUPT;
        }
        break;
    }
    case 'h': /* revisions are unique in the store: no clash */
    case 'm':
    case 'u':
        mw_put(w, STORE_CONSENT, nkey, klen, (const uint8_t *)v, vlen);
        break;
    case 'r':
        cm->restricted = 1;
        break;
    default: /* 'a': it is merged into the survivor's subject now */
        break;
    }
    rocksdb_free(v);
    mw_del(w, STORE_CONSENT, key, klen);
    return w->rc;
}

/* The survivor subject @sp's current state for @purpose (0: undecided). */
static int consent_state(struct store_batch *b, const uint8_t *sp,
                         const char *purpose, struct dossier_status *st,
                         int *state)
{
    uint8_t key[STORE_SP_BYTES + 1 + POLICY_NAME_MAX];
    size_t n = strlen(purpose), vlen;
    char *v;
    int rc;

    *state = 0;
    memcpy(key, sp, STORE_SP_BYTES);
    key[STORE_SP_BYTES] = 'c';
    memcpy(key + STORE_SP_BYTES + 1, purpose, n);
    if ((rc = store_get_raw(b->s, b, STORE_CONSENT, key, STORE_SP_BYTES + 1 + n,
                            &v, &vlen, st)))
        return rc;
    if (v) {
        Dossier__Store__V1__StoredConsent *c =
            dossier__store__v1__stored_consent__unpack(NULL, vlen,
                                                       (const uint8_t *)v);
        rocksdb_free(v);
        if (!c)
            return err_set(st, DOSSIER_CORRUPT, "a consent record is corrupt");
        *state = c->state;
        dossier__store__v1__stored_consent__free_unpacked(c, NULL);
    }
    return 0;
}

#define GRANTED DOSSIER__V1__CONSENT_STATE__CONSENT_STATE_GRANTED
#define WITHDRAWN DOSSIER__V1__CONSENT_STATE__CONSENT_STATE_WITHDRAWN

/* Per purpose the merged subjects decided on, the most restrictive state
 * of all (withdrawn over granted over undecided) becomes the survivor
 * subject's, as a new event at revision *@rev + 1 on (each its own);
 * *@rev is left at the last one taken. */
static int consent_merge(struct mw *w, const Command *cmd, const uint8_t *sp,
                         const struct consents *cur, uint64_t *rev)
{
    for (size_t i = 0; i < cur->n; i++) {
        const char *purpose = cur->c[i]->purpose;
        Dossier__Store__V1__StoredConsent sc =
            DOSSIER__STORE__V1__STORED_CONSENT__INIT;
        const Dossier__Store__V1__StoredConsent *decided = NULL;
        uint8_t key[STORE_SP_BYTES + 1 + POLICY_NAME_MAX];
        size_t n = strlen(purpose);
        int mine, merged = 0, rc, seen = 0;

        for (size_t j = 0; j < i; j++)
            seen |= strcmp(cur->c[j]->purpose, purpose) == 0;
        if (seen || n > POLICY_NAME_MAX)
            continue; /* done with its first row */
        if ((rc = consent_state(w->b, sp, purpose, w->st, &mine)))
            return rc;
        merged = mine;
        for (size_t j = i; j < cur->n; j++) {
            const Dossier__Store__V1__StoredConsent *c = cur->c[j];
            if (strcmp(c->purpose, purpose) != 0)
                continue;
            if (c->state == WITHDRAWN ||
                (c->state == GRANTED && merged != WITHDRAWN))
                merged = (int)c->state;
            if ((int)c->state == merged &&
                (!decided || c->time_ms > decided->time_ms))
                decided = c;
        }
        if (merged == mine || !decided)
            continue;
        ++*rev;
        sc.purpose = (char *)purpose;
        sc.state = merged;
        sc.source = "merge";
        sc.notice_version = decided->notice_version;
        sc.time_ms = cmd->time_ms;
        sc.principal = cmd->principal;
        sc.revision = *rev;
        memcpy(key, sp, STORE_SP_BYTES);
        key[STORE_SP_BYTES] = 'c';
        memcpy(key + STORE_SP_BYTES + 1, purpose, n);
        mw_put_pb(w, STORE_CONSENT, key, STORE_SP_BYTES + 1 + n, &sc.base);
        key[STORE_SP_BYTES] = 'h';
        store_u64_be(key + STORE_SP_BYTES + 1, *rev);
        mw_put_pb(w, STORE_CONSENT, key, STORE_SP_BYTES + 9, &sc.base);
        if (w->rc)
            return w->rc;
        if (store_batch_change_consent(w->b, cmd, *rev, sp, purpose, merged))
            return w->rc = DOSSIER_NOMEM;
    }
    return 0;
}

/* Copies the merged subject's rows of the change index under the
 * survivor's subject (@del 0), or deletes those copies again (@del 1, an
 * undo): the moved records' earlier changes are then found through their
 * new subject's index, so that a later delete, rectification or expiry
 * of one takes them out of the feed. The copies are not listed in the
 * MergeRecord: the change index is trimmed by each node on its own, so
 * an undo finds them from the merged subject's rows as its node holds
 * them (a copy has the same revision, seq and record as its row, and is
 * trimmed with it). */
struct feed_copy {
    struct store_batch *b;
    const uint8_t *to;
    int del;
};

static int feed_copy_cb(void *arg, const uint8_t *key, size_t klen)
{
    struct feed_copy *f = arg;
    uint8_t nk[STORE_SP_BYTES + 12 + STORE_RID_BYTES];
    if (klen <= STORE_SP_BYTES || klen > sizeof(nk))
        return 0;
    memcpy(nk, f->to, STORE_SP_BYTES);
    memcpy(nk + STORE_SP_BYTES, key + STORE_SP_BYTES, klen - STORE_SP_BYTES);
    if (f->del)
        rocksdb_writebatch_wi_delete_cf(f->b->wb,
                                        f->b->s->cf[STORE_CHANGE_INDEX],
                                        (const char *)nk, klen);
    else
        rocksdb_writebatch_wi_put_cf(f->b->wb, f->b->s->cf[STORE_CHANGE_INDEX],
                                     (const char *)nk, klen, "", 0);
    return 0;
}

static int feed_copies(struct store_batch *b, const uint8_t *from,
                       const uint8_t *to, int del)
{
    struct feed_copy f = {b, to, del};
    return store_batch_keys(b, STORE_CHANGE_INDEX, from, STORE_SP_BYTES,
                            feed_copy_cb, &f);
}

/* ---- Apply ---- */

typedef Dossier__Store__V1__MergeSummary__KeptKey KeptKey;
static int kept_keys_of(const struct mw *w, KeptKey **keys, KeptKey ***ptrs,
                        size_t *n);
static int kept_keys_current(struct store_batch *b,
                             const Dossier__Store__V1__MergeRecord *mr,
                             struct store_result *res);

/* The images of @w as messages, into @mr (*@im and mr->images malloc'd,
 * pointing into @w; free both). */
static int images_to_record(const struct mw *w,
                            Dossier__Store__V1__MergeRecord *mr,
                            Dossier__Store__V1__MergeImage **imp)
{
    Dossier__Store__V1__MergeImage *im = calloc(w->n + 1, sizeof(*im));
    Dossier__Store__V1__MergeImage **p = calloc(w->n + 1, sizeof(*p));
    *imp = im;
    if (!im || !p) {
        free(p);
        return DOSSIER_NOMEM;
    }
    for (size_t i = 0; i < w->n; i++) {
        const struct img *g = &w->v[i];
        dossier__store__v1__merge_image__init(&im[i]);
        im[i].family = (uint32_t)g->family;
        im[i].key = (ProtobufCBinaryData){g->klen, g->key};
        im[i].existed = g->existed;
        im[i].before = (ProtobufCBinaryData){g->existed ? g->blen : 0,
                                             g->before};
        im[i].exists_after = g->exists_after;
        if (g->exists_after)
            im[i].after_hash = (ProtobufCBinaryData){HASH_BYTES,
                                                     (uint8_t *)g->hash};
        p[i] = &im[i];
    }
    mr->images = p;
    mr->n_images = w->n;
    return 0;
}

int store_apply_merge(struct store_batch *b, const Command *cmd,
                      struct store_result *res)
{
    const Dossier__Store__V1__MergeOp *op = cmd->merge;
    const Dossier__Store__V1__PutOp *s;
    Dossier__Store__V1__MergeRecord mr = DOSSIER__STORE__V1__MERGE_RECORD__INIT;
    struct dossier_status *st = &res->status;
    struct merge_state m;
    struct consents cur = {0};
    struct mw w;
    uint8_t **packed = NULL, key[STORE_KEY_MAX + 32];
    size_t *plen = NULL, n_packed, klen;
    ProtobufCBinaryData *dup_rids = NULL;
    uint64_t rev, crev;
    int rc, restricted = 0;

    if (!op)
        return store_apply_bad(res, "merge");
    if ((rc = merge_form(op, res)))
        return rc;
    s = op->survivor;
    memset(&w, 0, sizeof(w));
    w.b = b;
    w.st = st;
    if ((rc = merge_check(b, op, &m, res)))
        goto out;
    /* Everything checked: from here on only memory or the disk fail, and
     * either stops the node (cluster.c), so nothing is undone here. */
    rev = b->revision + 1;
    n_packed = 1 + op->n_moved;
    packed = calloc(n_packed, sizeof(*packed));
    plen = calloc(n_packed, sizeof(*plen));
    dup_rids = calloc(op->n_duplicates, sizeof(*dup_rids));
    if (!packed || !plen || !dup_rids) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; rc == 0 && i < op->n_duplicates; i++)
        rc = record_drop(&w, s->kind, op->duplicates[i]->rid.data, m.dups[i]);
    /* As a Delete does: the duplicates' earlier changes leave the feed, so
     * the values that lost to the survivor's are not kept there (the feed
     * keeps each deletion, below). An undo does not need them: it puts
     * every record it restores. Before the merged subjects' rows of the
     * change index are copied below, so none of theirs is copied. */
    for (size_t i = 0; rc == 0 && i < op->n_duplicates; i++) {
        const ProtobufCBinaryData *sub = &m.dups[i]->subject;
        if (store_batch_changes_forget(
                b, op->duplicates[i]->rid.data,
                sub->len == STORE_SP_BYTES ? sub->data : NULL, rev))
            rc = DOSSIER_NOMEM;
    }
    if (rc == 0)
        rc = record_write(&w, s, m.survivor, rev, m.survivor->created_at_ms,
                          cmd->time_ms, &packed[0], &plen[0]);
    for (size_t i = 0; rc == 0 && i < op->n_moved; i++)
        rc = record_write(&w, op->moved[i], m.moved[i], rev,
                          m.moved[i]->created_at_ms,
                          m.moved[i]->updated_at_ms, &packed[1 + i],
                          &plen[1 + i]);
    for (size_t i = 0; rc == 0 && i < op->n_repoints; i++) {
        const Dossier__Store__V1__LinkRepoint *p = op->repoints[i];
        klen = store_link_key(key, 'o', p->kind, p->rid.data, p->label,
                              s->kind, s->rid.data);
        mw_put(&w, STORE_LINK, key, klen, p->sealed_id.data, p->sealed_id.len);
        klen = store_link_key(key, 'i', s->kind, s->rid.data, p->label,
                              p->kind, p->rid.data);
        mw_put(&w, STORE_LINK, key, klen, (const uint8_t *)"", 0);
        rc = w.rc;
    }
    /* The merged subjects: keys go, consent and history move. */
    for (size_t j = 0; rc == 0 && j < op->n_subjects; j++) {
        const uint8_t *bsp = op->subjects[j].data;
        struct consent_move cm = {&w, s->subject.data, &cur, 0};
        Dossier__Store__V1__MergedSubject ms =
            DOSSIER__STORE__V1__MERGED_SUBJECT__INIT;
        mw_del(&w, STORE_SUBJECT, bsp, STORE_SP_BYTES);
        rc = store_batch_keys(b, STORE_CONSENT, bsp, STORE_SP_BYTES,
                              consent_move_cb, &cm);
        restricted |= cm.restricted;
        if (rc == 0) {
            memcpy(key, bsp, STORE_SP_BYTES);
            key[STORE_SP_BYTES] = 'a';
            mw_put(&w, STORE_CONSENT, key, STORE_SP_BYTES + 1,
                   s->subject.data, STORE_SP_BYTES);
            memcpy(key, s->subject.data, STORE_SP_BYTES);
            key[STORE_SP_BYTES] = 'm';
            memcpy(key + STORE_SP_BYTES + 1, bsp, STORE_SP_BYTES);
            ms.merge_id = op->id;
            ms.time_ms = cmd->time_ms;
            mw_put_pb(&w, STORE_CONSENT, key, 2 * STORE_SP_BYTES + 1,
                      &ms.base);
            rc = w.rc;
        }
        if (rc == 0)
            rc = feed_copies(b, bsp, s->subject.data, 0);
    }
    /* The survivor subject's restriction is watched: its image is kept
     * even when the merge leaves it as it is, so an undo sees one made or
     * lifted since (the merged subjects it restores would not carry it). */
    if (rc == 0 && s->subject.len == STORE_SP_BYTES) {
        memcpy(key, s->subject.data, STORE_SP_BYTES);
        key[STORE_SP_BYTES] = 'r';
        if (!mw_touch(&w, STORE_CONSENT, key, STORE_SP_BYTES + 1))
            rc = w.rc;
    }
    if (rc == 0 && restricted) {
        memcpy(key, s->subject.data, STORE_SP_BYTES);
        key[STORE_SP_BYTES] = 'r';
        mw_put(&w, STORE_CONSENT, key, STORE_SP_BYTES + 1,
               (const uint8_t *)"", 0);
        rc = w.rc;
    }
    if (rc == 0 && s->subject.len == STORE_SP_BYTES) {
        memcpy(key, s->subject.data, STORE_SP_BYTES);
        key[STORE_SP_BYTES] = 'u';
        memcpy(key + STORE_SP_BYTES + 1, op->id, MERGE_ID_LEN);
        mw_put(&w, STORE_CONSENT, key, STORE_SP_BYTES + 1 + MERGE_ID_LEN,
               (const uint8_t *)"", 0);
        rc = w.rc;
    }
    /* The feed: the survivor, the duplicates deleted, the moved records,
     * then the consent the merge changed, each at a revision of its own. */
    if (rc == 0 &&
        store_batch_change_record(b, cmd, rev,
                                  DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_PUT,
                                  s->kind, s->rid.data, &s->subject, packed[0],
                                  plen[0]))
        rc = DOSSIER_NOMEM;
    for (size_t i = 0; rc == 0 && i < op->n_duplicates; i++) {
        /* The feed names it under the survivor's subject, whose key it
         * is sealed with now: the merged subjects' keys are gone. */
        StoredRecord del = DOSSIER__STORE__V1__STORED_RECORD__INIT;
        size_t len;
        uint8_t *buf;
        del.kind = s->kind;
        del.subject = s->subject;
        del.dek_id = s->dek_id;
        del.version = m.dups[i]->version;
        del.created_at_ms = m.dups[i]->created_at_ms;
        del.updated_at_ms = m.dups[i]->updated_at_ms;
        del.sealed_id = op->duplicates[i]->sealed_id;
        len = dossier__store__v1__stored_record__get_packed_size(&del);
        if (!(buf = malloc(len ? len : 1))) {
            rc = DOSSIER_NOMEM;
            break;
        }
        dossier__store__v1__stored_record__pack(&del, buf);
        if (store_batch_change_record(
                b, cmd, rev, DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_DELETE,
                s->kind, op->duplicates[i]->rid.data, &s->subject, buf, len))
            rc = DOSSIER_NOMEM;
        free(buf);
    }
    for (size_t i = 0; rc == 0 && i < op->n_moved; i++)
        if (store_batch_change_record(
                b, cmd, rev, DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_PUT,
                op->moved[i]->kind, op->moved[i]->rid.data, &s->subject,
                packed[1 + i], plen[1 + i]))
            rc = DOSSIER_NOMEM;
    crev = rev;
    if (rc == 0 && cur.n)
        rc = consent_merge(&w, cmd, s->subject.data, &cur, &crev);
    if (rc == 0)
        rc = w.rc;
    if (rc == 0) {
        uint8_t ukey[1 + MERGE_ID_LEN];
        for (size_t i = 0; i < op->n_duplicates; i++)
            dup_rids[i] = op->duplicates[i]->rid;
        mr.id = op->id;
        mr.kind = s->kind;
        mr.survivor = s->rid;
        mr.subject = s->subject;
        mr.dek_id = s->dek_id;
        mr.n_duplicates = op->n_duplicates;
        mr.duplicates = dup_rids;
        mr.n_subjects = op->n_subjects;
        mr.subjects = op->subjects;
        mr.sealed_ids = op->sealed_ids;
        mr.time_ms = cmd->time_ms;
        mr.principal = cmd->principal;
        mr.reference = cmd->reference;
        mr.revision = rev;
        mr.records_moved = op->n_moved;
        mr.links_moved = op->n_repoints;
        Dossier__Store__V1__MergeImage *im = NULL;
        if (images_to_record(&w, &mr, &im))
            rc = DOSSIER_NOMEM;
        ukey[0] = 'u';
        memcpy(ukey + 1, op->id, MERGE_ID_LEN);
        if (rc == 0 &&
            store_batch_put_pb(b, STORE_POLICY, ukey, sizeof(ukey), &mr.base))
            rc = DOSSIER_NOMEM;
        free(im);
        free(mr.images);
        if (rc == 0) {
            MergeSummary ms = DOSSIER__STORE__V1__MERGE_SUMMARY__INIT;
            KeptKey *kept = NULL, **kept_ptrs = NULL;
            size_t n_kept = 0;
            rc = kept_keys_of(&w, &kept, &kept_ptrs, &n_kept);
            ms.n_kept_keys = n_kept;
            ms.kept_keys = kept_ptrs;
            ms.id = mr.id;
            ms.kind = mr.kind;
            ms.survivor = mr.survivor;
            ms.subject = mr.subject;
            ms.dek_id = mr.dek_id;
            ms.sealed_ids = mr.sealed_ids;
            ms.time_ms = mr.time_ms;
            ms.principal = mr.principal;
            ms.reference = mr.reference;
            ms.revision = mr.revision;
            ms.records_moved = mr.records_moved;
            ms.links_moved = mr.links_moved;
            if (rc == 0)
                rc = summary_put(b, &ms);
            free(kept);
            free(kept_ptrs);
        }
    }
    if (rc) {
        if (rc == DOSSIER_NOMEM)
            err_set(st, rc, "out of memory");
        else if (rc == DOSSIER_CORRUPT)
            err_set(st, rc, "a stored row is malformed");
        goto out;
    }
    if (op->n_subjects)
        b->effects |= STORE_EFFECT_SUBJECT_KEYS;
    b->revision = crev;
    res->version = rev;
    res->deleted = op->n_duplicates;
    res->updated_at_ms = cmd->time_ms;
    rc = err_ok(st);
out:
    for (size_t i = 0; packed && i < n_packed; i++)
        free(packed[i]);
    free(packed);
    free(plen);
    free(dup_rids);
    consents_free(&cur);
    mw_release(&w);
    merge_state_release(&m);
    return rc;
}

/* The pending merge @id into *@out (free with
 * dossier__store__v1__merge_record__free_unpacked). */
static int merge_record_get(struct store_batch *b, const char *id,
                            Dossier__Store__V1__MergeRecord **out,
                            struct store_result *res)
{
    uint8_t key[1 + MERGE_ID_LEN];
    char *v;
    size_t vlen;
    int rc;

    *out = NULL;
    if (!store_merge_id_valid(id))
        return store_apply_bad(res, "merge id");
    key[0] = 'u';
    memcpy(key + 1, id, MERGE_ID_LEN);
    if ((rc = store_get_raw(b->s, b, STORE_POLICY, key, sizeof(key), &v,
                            &vlen, &res->status)))
        return rc;
    if (!v)
        return err_set(&res->status, DOSSIER_NOT_FOUND,
                       "no pending merge %s (never made, undone or "
                       "confirmed)",
                       id);
    *out = dossier__store__v1__merge_record__unpack(NULL, vlen,
                                                    (const uint8_t *)v);
    rocksdb_free(v);
    if (!*out)
        return err_set(&res->status, DOSSIER_CORRUPT, "merge %s is corrupt",
                       id);
    return 0;
}

/* Whether the op names the merge as it is (audit entries rely on it). */
static int names_merge(const Dossier__Store__V1__MergeRecord *mr,
                       const ProtobufCBinaryData *subject,
                       const ProtobufCBinaryData *survivor)
{
    return same_bytes(&mr->subject, subject) &&
           same_bytes(&mr->survivor, survivor);
}

/* Deletes merge @mr's rows (the record and its summary) and its
 * subject's pointer to it. */
static void merge_forget(struct store_batch *b,
                         const Dossier__Store__V1__MergeRecord *mr)
{
    uint8_t key[STORE_SP_BYTES + 1 + MERGE_ID_LEN], skey[SUMMARY_KEY_LEN];
    key[0] = 'u';
    memcpy(key + 1, mr->id, MERGE_ID_LEN);
    rocksdb_writebatch_wi_delete_cf(b->wb, b->s->cf[STORE_POLICY],
                                    (const char *)key, 1 + MERGE_ID_LEN);
    key[0] = 'v';
    rocksdb_writebatch_wi_delete_cf(b->wb, b->s->cf[STORE_POLICY],
                                    (const char *)key, 1 + MERGE_ID_LEN);
    summary_key(skey, mr->revision, mr->id);
    rocksdb_writebatch_wi_delete_cf(b->wb, b->s->cf[STORE_POLICY],
                                    (const char *)skey, sizeof(skey));
    if (mr->subject.len == STORE_SP_BYTES) {
        memcpy(key, mr->subject.data, STORE_SP_BYTES);
        key[STORE_SP_BYTES] = 'u';
        memcpy(key + STORE_SP_BYTES + 1, mr->id, MERGE_ID_LEN);
        rocksdb_writebatch_wi_delete_cf(b->wb, b->s->cf[STORE_CONSENT],
                                        (const char *)key, sizeof(key));
    }
}

/* Names, for a refused undo, what changed: a record by kind and version,
 * else the kind of row. */
static int changed_since(const Dossier__Store__V1__MergeRecord *mr,
                         const Dossier__Store__V1__MergeImage *im,
                         const char *v, size_t vlen, struct store_result *res)
{
    static const char *const what[STORE_N_FAMILIES] = {
        [STORE_INDEX] = "an index entry",
        [STORE_SUBJECT] = "a subject's key or records",
        [STORE_CONSENT] = "a consent record",
        [STORE_LINK] = "a link",
    };
    if (im->family == STORE_CONSENT && im->key.len == STORE_SP_BYTES + 1 &&
        im->key.data[STORE_SP_BYTES] == 'r')
        return err_set(&res->status, DOSSIER_FAILED_PRECONDITION,
                       "merge %s cannot be undone: a restriction of "
                       "processing (Art. 18) of a subject it merged was "
                       "made or lifted since, and the subjects the undo "
                       "restores would not have it as decided; confirm the "
                       "merge, or set the restriction back as it was before "
                       "undoing",
                       mr->id);
    if (im->family == STORE_RECORD && v) {
        StoredRecord *r = dossier__store__v1__stored_record__unpack(
            NULL, vlen, (const uint8_t *)v);
        if (r) {
            err_set(&res->status, DOSSIER_FAILED_PRECONDITION,
                    "merge %s cannot be undone: a record of kind '%s' it "
                    "changed has changed since (now version %llu); undo "
                    "would lose that change",
                    mr->id, r->kind, (unsigned long long)r->version);
            dossier__store__v1__stored_record__free_unpacked(r, NULL);
            return DOSSIER_FAILED_PRECONDITION;
        }
    }
    return err_set(&res->status, DOSSIER_FAILED_PRECONDITION,
                   "merge %s cannot be undone: %s it changed has changed "
                   "since (or was deleted); undo would lose that change",
                   mr->id,
                   im->family < STORE_N_FAMILIES && what[im->family]
                       ? what[im->family]
                       : im->family == STORE_RECORD ? "a record" : "a row");
}

/* Whether merge @mr kept an image of (@family, @key). */
static int has_image(const Dossier__Store__V1__MergeRecord *mr, int family,
                     const uint8_t *key, size_t klen)
{
    for (size_t i = 0; i < mr->n_images; i++)
        if ((int)mr->images[i]->family == family &&
            mr->images[i]->key.len == klen &&
            memcmp(mr->images[i]->key.data, key, klen) == 0)
            return 1;
    return 0;
}

/* A consent event of the survivor's subject after the merge, not the
 * merge's own: its history row ("h" revision) is newer than the merge and
 * the merge kept no image of it. */
struct consent_since {
    struct store_batch *b;
    const Dossier__Store__V1__MergeRecord *mr;
    struct store_result *res;
};

static int consent_since_cb(void *arg, const uint8_t *key, size_t klen)
{
    struct consent_since *cs = arg;
    Dossier__Store__V1__StoredConsent *c;
    char *v;
    size_t vlen;
    int rc;

    if (klen != STORE_SP_BYTES + 9 ||
        store_be_u64(key + STORE_SP_BYTES + 1) <= cs->mr->revision ||
        has_image(cs->mr, STORE_CONSENT, key, klen))
        return 0;
    if ((rc = store_get_raw(cs->b->s, cs->b, STORE_CONSENT, key, klen, &v,
                            &vlen, &cs->res->status)))
        return rc;
    c = v ? dossier__store__v1__stored_consent__unpack(NULL, vlen,
                                                       (const uint8_t *)v)
          : NULL;
    rocksdb_free(v);
    if (!c)
        return err_set(&cs->res->status, DOSSIER_CORRUPT,
                       "a consent record is corrupt");
    rc = err_set(&cs->res->status, DOSSIER_FAILED_PRECONDITION,
                 "merge %s cannot be undone: consent of the survivor's "
                 "subject to purpose '%s' was decided since (revision %llu), "
                 "and the subjects the undo restores would not carry that "
                 "decision; confirm the merge instead",
                 cs->mr->id, c->purpose, (unsigned long long)c->revision);
    dossier__store__v1__stored_consent__free_unpacked(c, NULL);
    return rc;
}

/* FAILED_PRECONDITION when the survivor's subject decided on consent
 * since merge @mr (an undo would split the person without it). */
static int consent_since(struct store_batch *b,
                         const Dossier__Store__V1__MergeRecord *mr,
                         struct store_result *res)
{
    struct consent_since cs = {b, mr, res};
    uint8_t prefix[STORE_SP_BYTES + 1];
    int rc;
    if (mr->subject.len != STORE_SP_BYTES)
        return 0;
    memcpy(prefix, mr->subject.data, STORE_SP_BYTES);
    prefix[STORE_SP_BYTES] = 'h';
    rc = store_batch_keys(b, STORE_CONSENT, prefix, sizeof(prefix),
                          consent_since_cb, &cs);
    if (rc == DOSSIER_NOMEM)
        return err_set(&res->status, rc, "out of memory");
    return rc;
}

int store_apply_merge_undo(struct store_batch *b, const Command *cmd,
                           struct store_result *res)
{
    const Dossier__Store__V1__MergeUndoOp *op = cmd->merge_undo;
    Dossier__Store__V1__MergeRecord *mr;
    uint64_t rev;
    int rc;

    if (!op)
        return store_apply_bad(res, "merge undo");
    if ((rc = merge_record_get(b, op->id, &mr, res)))
        return rc;
    if (!names_merge(mr, &op->subject, &op->survivor)) {
        rc = store_apply_bad(res, "merge undo names another merge");
        goto out;
    }
    /* Nothing it wrote has changed since: else the undo would lose it.
     * A changed record is named first: it is what a user changed. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < mr->n_images; i++) {
            const Dossier__Store__V1__MergeImage *im = mr->images[i];
            uint8_t hash[HASH_BYTES];
            char *v;
            size_t vlen;
            int same;
            if (im->family >= STORE_N_FAMILIES || im->key.len == 0) {
                rc = store_apply_bad(res, "merge image");
                goto out;
            }
            if ((pass == 0) != (im->family == STORE_RECORD))
                continue;
            if (pass == 0 && im->existed) {
                /* It must decode: the undo rewrites its version. */
                StoredRecord *r = dossier__store__v1__stored_record__unpack(
                    NULL, im->before.len, im->before.data);
                if (!r || im->key.len < STORE_RID_BYTES + 2) {
                    if (r)
                        dossier__store__v1__stored_record__free_unpacked(r,
                                                                         NULL);
                    rc = err_set(&res->status, DOSSIER_CORRUPT,
                                 "merge %s keeps a corrupt record", mr->id);
                    goto out;
                }
                dossier__store__v1__stored_record__free_unpacked(r, NULL);
            }
            if ((rc = store_get_raw(b->s, b, (enum store_family)im->family,
                                    im->key.data, im->key.len, &v, &vlen,
                                    &res->status)))
                goto out;
            if (v)
                crypto_generichash(hash, HASH_BYTES, (const uint8_t *)v, vlen,
                                   NULL, 0);
            same = v ? im->exists_after && im->after_hash.len == HASH_BYTES &&
                           memcmp(hash, im->after_hash.data, HASH_BYTES) == 0
                     : !im->exists_after;
            if (!same)
                rc = changed_since(mr, im, v, vlen, res);
            rocksdb_free(v);
            if (rc)
                goto out;
        }
    /* A consent decision of the survivor's subject since the merge, for
     * a purpose the merge did not touch, is not among the images: the
     * undo would leave it with the survivor only. */
    if ((rc = consent_since(b, mr, res)) ||
        (rc = kept_keys_current(b, mr, res)))
        goto out;
    rev = b->revision + 1;
    /* The copies of the merged subjects' change-index rows go (before
     * the undo's own changes are indexed under those subjects). */
    for (size_t j = 0; rc == 0 && j < mr->n_subjects; j++)
        if (mr->subjects[j].len == STORE_SP_BYTES &&
            mr->subject.len == STORE_SP_BYTES)
            rc = feed_copies(b, mr->subjects[j].data, mr->subject.data, 1);
    /* The merge's own changes of the records it moved, deleted or filled
     * go too, as a Delete takes a record's earlier changes: they are
     * sealed under the survivor's key and hold the merged subjects'
     * values, which would otherwise outlive an erasure of those subjects
     * in the survivor's feed. The undo puts every record it restores. */
    if (rc == 0 && mr->subject.len == STORE_SP_BYTES &&
        store_batch_changes_forget_at(b, mr->subject.data, mr->revision))
        rc = DOSSIER_NOMEM;
    for (size_t i = 0; rc == 0 && i < mr->n_images; i++) {
        const Dossier__Store__V1__MergeImage *im = mr->images[i];
        rocksdb_column_family_handle_t *cf = b->s->cf[im->family];
        if (!im->existed) {
            rocksdb_writebatch_wi_delete_cf(b->wb, cf,
                                            (const char *)im->key.data,
                                            im->key.len);
            continue;
        }
        if (im->family != STORE_RECORD) {
            rocksdb_writebatch_wi_put_cf(b->wb, cf, (const char *)im->key.data,
                                         im->key.len,
                                         (const char *)im->before.data,
                                         im->before.len);
            if (im->family == STORE_CONSENT &&
                im->key.len > STORE_SP_BYTES + 1 &&
                im->key.len <= STORE_SP_BYTES + 1 + POLICY_NAME_MAX &&
                im->key.data[STORE_SP_BYTES] == 'c') {
                /* The state comes back: the feed says so. */
                Dossier__Store__V1__StoredConsent *c =
                    dossier__store__v1__stored_consent__unpack(
                        NULL, im->before.len, im->before.data);
                if (c) {
                    if (store_batch_change_consent(b, cmd, rev,
                                                   im->key.data, c->purpose,
                                                   c->state))
                        rc = DOSSIER_NOMEM;
                    dossier__store__v1__stored_consent__free_unpacked(c,
                                                                      NULL);
                }
            }
            continue;
        }
        /* A record comes back as it was, at a new version. */
        {
            StoredRecord *r = dossier__store__v1__stored_record__unpack(
                NULL, im->before.len, im->before.data);
            uint8_t *buf;
            size_t len;
            const uint8_t *rid = im->key.data + im->key.len - STORE_RID_BYTES;
            if (!r || im->key.len < STORE_RID_BYTES + 2) {
                if (r)
                    dossier__store__v1__stored_record__free_unpacked(r, NULL);
                rc = err_set(&res->status, DOSSIER_CORRUPT,
                             "merge %s keeps a corrupt record", mr->id);
                break;
            }
            r->version = rev;
            len = dossier__store__v1__stored_record__get_packed_size(r);
            if (!(buf = malloc(len ? len : 1))) {
                dossier__store__v1__stored_record__free_unpacked(r, NULL);
                rc = DOSSIER_NOMEM;
                break;
            }
            dossier__store__v1__stored_record__pack(r, buf);
            rocksdb_writebatch_wi_put_cf(b->wb, cf, (const char *)im->key.data,
                                         im->key.len, (const char *)buf, len);
            if (store_batch_change_record(
                    b, cmd, rev, DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_PUT,
                    r->kind, rid, &r->subject, buf, len))
                rc = DOSSIER_NOMEM;
            free(buf);
            dossier__store__v1__stored_record__free_unpacked(r, NULL);
        }
    }
    if (rc) {
        if (rc == DOSSIER_NOMEM)
            err_set(&res->status, rc, "out of memory");
        goto out;
    }
    merge_forget(b, mr);
    b->revision = rev;
    res->version = rev;
    res->updated_at_ms = cmd->time_ms;
    rc = err_ok(&res->status);
out:
    dossier__store__v1__merge_record__free_unpacked(mr, NULL);
    return rc;
}

int store_apply_merge_confirm(struct store_batch *b, const Command *cmd,
                              struct store_result *res)
{
    const Dossier__Store__V1__MergeConfirmOp *op = cmd->merge_confirm;
    Dossier__Store__V1__MergeRecord *mr;
    int rc;

    if (!op)
        return store_apply_bad(res, "merge confirm");
    if ((rc = merge_record_get(b, op->id, &mr, res)))
        return rc;
    if (!names_merge(mr, &op->subject, &op->survivor)) {
        dossier__store__v1__merge_record__free_unpacked(mr, NULL);
        return store_apply_bad(res, "merge confirm names another merge");
    }
    /* The undo data goes; the merged subjects stay merged (their rows "m"
     * and "a" lead an erasure to everything merged). */
    merge_forget(b, mr);
    dossier__store__v1__merge_record__free_unpacked(mr, NULL);
    b->revision++;
    res->version = b->revision;
    res->updated_at_ms = cmd->time_ms;
    return err_ok(&res->status);
}

/* ------------------------------------------------------------------ */
/* Kept subject keys and master key rotation
 *
 * A merge deletes the merged subjects' keys and keeps them, wrapped as
 * they were, in its images. A rotation must rewrap those too, or an undo
 * after it would bring back a key only the old master key opens: the
 * summary lists them (kept_keys), the leader rewraps them with REWRAP
 * items naming the merge (store_merge_rewrap), FINISH waits until none is
 * left under another version (store_merges_kept_other), and an undo
 * refuses to restore a key under another version than new keys get. */

/* The subject keys @w's images keep (existing keys it deleted) into
 * *@keys, pointed to by *@ptrs (both malloc'd, *@n of them; subjects
 * point into @w). Errors: DOSSIER_NOMEM, DOSSIER_CORRUPT. */
static int kept_keys_of(const struct mw *w, KeptKey **keys, KeptKey ***ptrs,
                        size_t *n)
{
    *n = 0;
    *keys = calloc(w->n + 1, sizeof(**keys));
    *ptrs = calloc(w->n + 1, sizeof(**ptrs));
    if (!*keys || !*ptrs)
        return DOSSIER_NOMEM;
    for (size_t i = 0; i < w->n; i++) {
        const struct img *g = &w->v[i];
        KeptKey *k = &(*keys)[*n];
        SubjectKey *sk;
        if (g->family != STORE_SUBJECT || g->klen != STORE_SP_BYTES ||
            !g->existed)
            continue;
        if (!(sk = dossier__store__v1__subject_key__unpack(NULL, g->blen,
                                                           g->before)))
            return DOSSIER_CORRUPT;
        dossier__store__v1__merge_summary__kept_key__init(k);
        k->subject = (ProtobufCBinaryData){STORE_SP_BYTES, g->key};
        k->dek_id = sk->dek_id;
        k->kek_version = sk->kek_version;
        dossier__store__v1__subject_key__free_unpacked(sk, NULL);
        (*ptrs)[(*n)++] = k;
    }
    return 0;
}

/* The image of merge @mr that keeps subject @sp's key, or NULL. */
static Dossier__Store__V1__MergeImage *
kept_image(const Dossier__Store__V1__MergeRecord *mr, const uint8_t *sp)
{
    for (size_t i = 0; i < mr->n_images; i++) {
        Dossier__Store__V1__MergeImage *im = mr->images[i];
        if (im->family == STORE_SUBJECT && im->existed &&
            im->key.len == STORE_SP_BYTES &&
            memcmp(im->key.data, sp, STORE_SP_BYTES) == 0)
            return im;
    }
    return NULL;
}

/* FAILED_PRECONDITION when merge @mr keeps a subject key wrapped under
 * another master key version than new keys get now: restored, it would
 * need a version the nodes may no longer hold. */
static int kept_keys_current(struct store_batch *b,
                             const Dossier__Store__V1__MergeRecord *mr,
                             struct store_result *res)
{
    uint32_t want, rotating;
    int rc;

    if ((rc = store_wrap_version(b, &want, &res->status)))
        return rc;
    for (size_t i = 0; want && i < mr->n_images; i++) {
        const Dossier__Store__V1__MergeImage *im = mr->images[i];
        SubjectKey *sk;
        uint32_t v;
        if (im->family != STORE_SUBJECT || im->key.len != STORE_SP_BYTES ||
            !im->existed)
            continue;
        if (!(sk = dossier__store__v1__subject_key__unpack(
                  NULL, im->before.len, im->before.data)))
            return err_set(&res->status, DOSSIER_CORRUPT,
                           "merge %s keeps a corrupt subject key", mr->id);
        v = sk->kek_version;
        dossier__store__v1__subject_key__free_unpacked(sk, NULL);
        if (v == want)
            continue;
        if ((rc = store_rotation_target(b, &rotating, &res->status)))
            return rc;
        if (rotating)
            return err_set(&res->status, DOSSIER_FAILED_PRECONDITION,
                           "merge %s cannot be undone yet: it keeps a "
                           "subject key wrapped under master key version "
                           "%u, and a rotation to version %u is under way; "
                           "the rotation rewraps the key before it finishes "
                           "(dossier keys status): undo again then",
                           mr->id, v, rotating);
        return err_set(&res->status, DOSSIER_FAILED_PRECONDITION,
                       "merge %s cannot be undone: it keeps a subject key "
                       "wrapped under master key version %u, not under the "
                       "version in use (%u)",
                       mr->id, v, want);
    }
    return 0;
}

/* Reads MergeRecord @id (a valid id) through @b, else under the caller's
 * swap lock. Errors: DOSSIER_NOT_FOUND, DOSSIER_CORRUPT, DOSSIER_IO. */
static int record_read(struct store *s, struct store_batch *b, const char *id,
                       Dossier__Store__V1__MergeRecord **out,
                       struct dossier_status *st)
{
    uint8_t key[1 + MERGE_ID_LEN];
    char *v;
    size_t vlen;
    int rc;

    *out = NULL;
    key[0] = 'u';
    memcpy(key + 1, id, MERGE_ID_LEN);
    if ((rc = store_get_raw(s, b, STORE_POLICY, key, sizeof(key), &v, &vlen,
                            st)))
        return rc;
    if (!v)
        return err_set(st, DOSSIER_NOT_FOUND, "no pending merge %s", id);
    *out = dossier__store__v1__merge_record__unpack(NULL, vlen,
                                                    (const uint8_t *)v);
    rocksdb_free(v);
    return *out ? 0
                : err_set(st, DOSSIER_CORRUPT, "merge %s is corrupt", id);
}

/* Applies the REWRAP items of @op that name merge @id; with @dry, only
 * checks that they can be (nothing written, nothing counted). */
static int rewrap_merge(struct store_batch *b,
                        const Dossier__Store__V1__KeyRotateOp *op,
                        const char *id, int dry, uint64_t *done,
                        uint64_t *skipped, struct dossier_status *st)
{
    uint64_t n_done = 0, n_skipped = 0;
    MergeSummary *ms = NULL;
    Dossier__Store__V1__MergeRecord *mr = NULL;
    /* Images given a new value: restored before the record is freed. */
    Dossier__Store__V1__MergeImage **swapped = NULL;
    ProtobufCBinaryData *old = NULL;
    size_t n_swapped = 0;
    int rc;

    rc = summary_read(b->s, b, id, &ms, st);
    if (rc == DOSSIER_NOT_FOUND) {
        /* Undone, confirmed or erased since the leader read it. */
        for (size_t i = 0; !dry && i < op->n_items; i++)
            *skipped += strcmp(op->items[i]->merge_id, id) == 0;
        return err_ok(st);
    }
    if (rc || (rc = record_read(b->s, b, id, &mr, st)))
        goto out;
    swapped = calloc(op->n_items + 1, sizeof(*swapped));
    old = calloc(op->n_items + 1, sizeof(*old));
    if (!swapped || !old) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < op->n_items; i++) {
        const Dossier__Store__V1__KeyRotateOp__Rewrap *it = op->items[i];
        Dossier__Store__V1__MergeImage *im;
        KeptKey *k = NULL;
        SubjectKey *sk;
        ProtobufCBinaryData keep;
        uint8_t *buf;
        size_t len;

        if (strcmp(it->merge_id, id) != 0)
            continue;
        for (size_t j = 0; !k && j < ms->n_kept_keys; j++)
            if (ms->kept_keys[j]->subject.len == STORE_SP_BYTES &&
                memcmp(ms->kept_keys[j]->subject.data, it->subject.data,
                       STORE_SP_BYTES) == 0)
                k = ms->kept_keys[j];
        if (!k || k->dek_id != it->dek_id ||
            k->kek_version == op->to_version) {
            n_skipped++; /* rewrapped by an earlier step */
            continue;
        }
        im = kept_image(mr, it->subject.data);
        sk = im ? dossier__store__v1__subject_key__unpack(
                      NULL, im->before.len, im->before.data)
                : NULL;
        if (!sk || sk->dek_id != it->dek_id) {
            if (sk)
                dossier__store__v1__subject_key__free_unpacked(sk, NULL);
            rc = err_set(st, DOSSIER_CORRUPT,
                         "merge %s does not keep the subject key its "
                         "summary lists",
                         id);
            goto out;
        }
        sk->kek_version = op->to_version;
        keep = sk->wrapped_dek;
        sk->wrapped_dek = it->wrapped_dek; /* borrowed from the command */
        len = dossier__store__v1__subject_key__get_packed_size(sk);
        if ((buf = malloc(len ? len : 1)))
            dossier__store__v1__subject_key__pack(sk, buf);
        sk->wrapped_dek = keep;
        dossier__store__v1__subject_key__free_unpacked(sk, NULL);
        if (!buf) {
            rc = err_set(st, DOSSIER_NOMEM, "out of memory");
            goto out;
        }
        swapped[n_swapped] = im;
        old[n_swapped++] = im->before;
        im->before = (ProtobufCBinaryData){len, buf};
        k->kek_version = op->to_version;
        n_done++;
    }
    if (dry)
        goto out;
    *done += n_done;
    *skipped += n_skipped;
    if (n_swapped) {
        uint8_t ukey[1 + MERGE_ID_LEN];
        ukey[0] = 'u';
        memcpy(ukey + 1, id, MERGE_ID_LEN);
        if (store_batch_put_pb(b, STORE_POLICY, ukey, sizeof(ukey),
                               &mr->base) ||
            summary_put(b, ms))
            rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    }
out:
    for (size_t i = 0; i < n_swapped; i++) {
        free(swapped[i]->before.data);
        swapped[i]->before = old[i];
    }
    free(swapped);
    free(old);
    if (mr)
        dossier__store__v1__merge_record__free_unpacked(mr, NULL);
    if (ms)
        dossier__store__v1__merge_summary__free_unpacked(ms, NULL);
    return rc;
}

int store_merge_rewrap(struct store_batch *b,
                       const Dossier__Store__V1__KeyRotateOp *op,
                       uint64_t *done, uint64_t *skipped,
                       struct dossier_status *st)
{
    /* Everything checked before anything is written: a command that
     * fails writes nothing. */
    for (int dry = 1; dry >= 0; dry--)
        for (size_t i = 0; i < op->n_items; i++) {
            const char *id = op->items[i]->merge_id;
            int first = 1, rc;
            if (!id[0])
                continue;
            for (size_t j = 0; first && j < i; j++)
                first = strcmp(op->items[j]->merge_id, id) != 0;
            if (first &&
                (rc = rewrap_merge(b, op, id, dry, done, skipped, st)))
                return rc;
        }
    return 0;
}

struct kept_other {
    struct store_batch *b;
    uint32_t version;
    char *id;
    uint32_t *found;
    struct dossier_status *st;
};

static int kept_other_cb(void *arg, const uint8_t *key, size_t klen)
{
    struct kept_other *ko = arg;
    MergeSummary *ms;
    char *v;
    size_t vlen;
    int rc;

    if ((rc = store_get_raw(ko->b->s, ko->b, STORE_POLICY, key, klen, &v,
                            &vlen, ko->st)))
        return rc;
    ms = v ? dossier__store__v1__merge_summary__unpack(NULL, vlen,
                                                       (const uint8_t *)v)
           : NULL;
    rocksdb_free(v);
    if (!ms)
        return err_set(ko->st, DOSSIER_CORRUPT,
                       "a pending merge's summary is corrupt");
    for (size_t i = 0; !*ko->found && i < ms->n_kept_keys; i++)
        if (ms->kept_keys[i]->kek_version != ko->version) {
            *ko->found = ms->kept_keys[i]->kek_version;
            snprintf(ko->id, MERGE_ID_LEN + 1, "%s", ms->id);
        }
    dossier__store__v1__merge_summary__free_unpacked(ms, NULL);
    return *ko->found ? 1 : 0;
}

int store_merges_kept_other(struct store_batch *b, uint32_t version,
                            char id[STORE_MERGE_ID_LEN + 1], uint32_t *found,
                            struct dossier_status *st)
{
    struct kept_other ko = {b, version, id, found, st};
    int rc;
    *found = 0;
    id[0] = '\0';
    rc = store_batch_keys(b, STORE_POLICY, (const uint8_t *)"w", 1,
                          kept_other_cb, &ko);
    if (rc == 1)
        return 0;
    if (rc == DOSSIER_NOMEM)
        return err_set(st, rc, "out of memory");
    return rc;
}

int store_merge_kept_key(struct store *s, const char *id,
                         const uint8_t sp[STORE_SP_BYTES], SubjectKey **out,
                         struct dossier_status *st)
{
    Dossier__Store__V1__MergeRecord *mr;
    const Dossier__Store__V1__MergeImage *im;
    int rc;

    *out = NULL;
    if (!store_merge_id_valid(id))
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "not a merge id");
    pthread_rwlock_rdlock(&s->swap);
    rc = record_read(s, NULL, id, &mr, st);
    pthread_rwlock_unlock(&s->swap);
    if (rc)
        return rc;
    im = kept_image(mr, sp);
    if (im)
        *out = dossier__store__v1__subject_key__unpack(NULL, im->before.len,
                                                       im->before.data);
    dossier__store__v1__merge_record__free_unpacked(mr, NULL);
    if (!*out)
        return err_set(st, im ? DOSSIER_CORRUPT : DOSSIER_NOT_FOUND,
                       "merge %s keeps no such subject key", id);
    return err_ok(st);
}

/* ------------------------------------------------------------------ */
/* Erasure and merges */

struct sp_set {
    uint8_t (*v)[STORE_SP_BYTES];
    size_t n, cap;
};

static int sp_add(struct sp_set *s, const uint8_t *sp)
{
    for (size_t i = 0; i < s->n; i++)
        if (memcmp(s->v[i], sp, STORE_SP_BYTES) == 0)
            return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        void *p = realloc(s->v, cap * sizeof(*s->v));
        if (!p)
            return DOSSIER_NOMEM;
        s->v = p;
        s->cap = cap;
    }
    memcpy(s->v[s->n++], sp, STORE_SP_BYTES);
    return 0;
}

static int merged_cb(void *arg, const uint8_t *key, size_t klen)
{
    if (klen != 2 * STORE_SP_BYTES + 1)
        return 0;
    return sp_add(arg, key + STORE_SP_BYTES + 1);
}

int store_subject_alias(struct store *s, struct store_batch *b, uint8_t *sp,
                        int *found, struct dossier_status *st)
{
    uint8_t key[STORE_SP_BYTES + 1];
    char *v;
    size_t vlen;
    int rc;
    memcpy(key, sp, STORE_SP_BYTES);
    key[STORE_SP_BYTES] = 'a';
    *found = 0;
    if ((rc = store_get_raw(s, b, STORE_CONSENT, key, sizeof(key), &v, &vlen,
                            st)))
        return rc;
    if (v && vlen == STORE_SP_BYTES) {
        memcpy(sp, v, STORE_SP_BYTES);
        *found = 1;
    }
    if (v)
        rocksdb_free(v);
    return 0;
}

int store_subject_root(struct store *s, struct store_batch *b,
                       const uint8_t *sp, uint8_t *root,
                       struct dossier_status *st)
{
    memcpy(root, sp, STORE_SP_BYTES);
    for (int hop = 0; hop < STORE_ALIAS_HOPS; hop++) {
        int found, rc;
        if ((rc = store_subject_alias(s, b, root, &found, st)))
            return rc;
        if (!found)
            break;
    }
    return 0;
}

int store_erase_subjects(struct store_batch *b, const uint8_t *sp,
                         uint8_t (**out)[STORE_SP_BYTES], size_t *n,
                         struct dossier_status *st)
{
    struct sp_set set = {0};
    uint8_t root[STORE_SP_BYTES], key[STORE_SP_BYTES + 1];
    int rc;

    *out = NULL;
    *n = 0;
    if (sp_add(&set, sp))
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    /* Merged into another subject: the erasure is that person's. */
    memcpy(root, sp, STORE_SP_BYTES);
    for (int hop = 0; hop < STORE_ALIAS_HOPS; hop++) {
        int found;
        if ((rc = store_subject_alias(b->s, b, root, &found, st))) {
            free(set.v);
            return rc;
        }
        if (!found || sp_add(&set, root))
            break;
    }
    /* Everything merged into any of them, transitively (the set grows as
     * it is walked). */
    for (size_t i = 0; i < set.n; i++) {
        memcpy(key, set.v[i], STORE_SP_BYTES);
        key[STORE_SP_BYTES] = 'm';
        if ((rc = store_batch_keys(b, STORE_CONSENT, key, sizeof(key),
                                   merged_cb, &set))) {
            free(set.v);
            return err_set(st, rc, "out of memory");
        }
    }
    *out = set.v;
    *n = set.n;
    return 0;
}

/* Whether image key @im of a merge holds anything of the erased subjects
 * or records. */
static int image_erased(const Dossier__Store__V1__MergeImage *im,
                        const uint8_t (*sps)[STORE_SP_BYTES], size_t n_sp,
                        const uint8_t (*rids)[STORE_RID_BYTES], size_t n_rids)
{
    const uint8_t *k = im->key.data;
    size_t kl = im->key.len;
    if ((im->family == STORE_SUBJECT || im->family == STORE_CONSENT) &&
        kl >= STORE_SP_BYTES)
        for (size_t i = 0; i < n_sp; i++)
            if (memcmp(k, sps[i], STORE_SP_BYTES) == 0)
                return 1;
    if (im->family == STORE_RECORD || im->family == STORE_INDEX ||
        im->family == STORE_LINK)
        for (size_t i = 0; i < n_rids; i++)
            if (kl >= STORE_RID_BYTES && memmem(k, kl, rids[i], STORE_RID_BYTES))
                return 1;
    return 0;
}

struct merge_sweep {
    struct store_batch *b;
    const uint8_t (*sps)[STORE_SP_BYTES];
    size_t n_sp;
    const uint8_t (*rids)[STORE_RID_BYTES];
    size_t n_rids;
    struct dossier_status *st;
};

static int merge_sweep_cb(void *arg, const uint8_t *key, size_t klen)
{
    struct merge_sweep *ms = arg;
    Dossier__Store__V1__MergeRecord *mr;
    char *v;
    size_t vlen;
    int rc, hit = 0;

    if ((rc = store_get_raw(ms->b->s, ms->b, STORE_POLICY, key, klen, &v, &vlen,
                            ms->st)))
        return rc;
    if (!v)
        return 0;
    mr = dossier__store__v1__merge_record__unpack(NULL, vlen,
                                                  (const uint8_t *)v);
    rocksdb_free(v);
    if (!mr)
        return DOSSIER_CORRUPT;
    for (size_t i = 0; !hit && i < ms->n_sp; i++) {
        hit = mr->subject.len == STORE_SP_BYTES &&
              memcmp(mr->subject.data, ms->sps[i], STORE_SP_BYTES) == 0;
        for (size_t j = 0; !hit && j < mr->n_subjects; j++)
            hit = mr->subjects[j].len == STORE_SP_BYTES &&
                  memcmp(mr->subjects[j].data, ms->sps[i], STORE_SP_BYTES) ==
                      0;
    }
    for (size_t i = 0; !hit && i < mr->n_images; i++)
        hit = image_erased(mr->images[i], ms->sps, ms->n_sp, ms->rids,
                           ms->n_rids);
    if (hit)
        merge_forget(ms->b, mr);
    dossier__store__v1__merge_record__free_unpacked(mr, NULL);
    return 0;
}

int store_erase_merges(struct store_batch *b,
                       const uint8_t (*sps)[STORE_SP_BYTES], size_t n_sp,
                       const uint8_t (*rids)[STORE_RID_BYTES], size_t n_rids,
                       struct dossier_status *st)
{
    struct merge_sweep ms = {b, sps, n_sp, rids, n_rids, st};
    int rc = store_batch_keys(b, STORE_POLICY, (const uint8_t *)"u", 1,
                              merge_sweep_cb, &ms);
    if (rc == DOSSIER_NOMEM)
        return err_set(st, rc, "out of memory");
    if (rc == DOSSIER_CORRUPT)
        return err_set(st, rc, "a pending merge is corrupt");
    return rc;
}
