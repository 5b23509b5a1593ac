/* The dossier.v1.Records service: request validation, then the store (reads)
 * or the writer (writes). */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api.h"
#include "cluster.h"
#include "crypt.h"
#include "errors.h"
#include "records.h"
#include "store.h"

#define PAGE_DEFAULT 100
#define PAGE_MAX 1000
/* A page stops early once its records reach this many bytes. */
#define PAGE_BYTES_MAX (2u << 20)
/* Puts retried after losing a subject key race before giving up. */
#define PUT_ATTEMPTS 3

/* ------------------------------------------------------------------ */
/* Put */

struct put_ctx {
    struct call *call;
    struct node *node;
    const Dossier__V1__PutRequest *req; /* borrowed from the call */
    const KindSchema *kind;
    uint8_t sp[CRYPT_PSEUDONYM_BYTES];
    int attempts;
};

static void put_done(void *arg, const struct store_result *res);

/* Seals the request and submits it; on failure answers the call and frees
 * @p. */
static void put_submit(struct put_ctx *p)
{
    const uint64_t *expected =
        p->req->expect_case ==
                DOSSIER__V1__PUT_REQUEST__EXPECT_EXPECTED_VERSION
            ? &p->req->expected_version
            : NULL;
    struct dossier_status st;
    uint8_t *cmd;
    size_t len;
    int rc;

    p->attempts++;
    rc = records_seal_put(p->node, p->kind, p->req->record, expected,
                          p->call, &cmd, &len, p->sp, &st);
    if (rc == 0)
        rc = call_submit(p->call, cmd, len, put_done, p);
    if (rc) {
        if (rc == DOSSIER_UNAVAILABLE)
            err_set(&st, rc, "the node is shutting down");
        call_fail_status(p->call, &st);
        free(p);
    }
}

static void put_done(void *arg, const struct store_result *res)
{
    struct put_ctx *p = arg;
    Dossier__V1__PutResponse resp = DOSSIER__V1__PUT_RESPONSE__INIT;
    static const uint8_t none[CRYPT_PSEUDONYM_BYTES];

    if (res->status.code == DOSSIER_RETRY && p->attempts < PUT_ATTEMPTS) {
        /* The subject's key changed under us: forget the stale copy and
         * seal again with the key that won. */
        if (memcmp(p->sp, none, sizeof(none)) != 0)
            crypt_cache_forget(p->node->crypt, p->sp);
        put_submit(p);
        return;
    }
    if (res->status.code) {
        call_fail_status(p->call, &res->status);
    } else {
        resp.version = res->version;
        resp.created = res->created;
        resp.updated_at_ms = res->updated_at_ms;
        call_reply(p->call, &resp.base);
    }
    free(p);
}

void api_records_put(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__PutRequest *req = (Dossier__V1__PutRequest *)msg;
    struct node *n = call_node(c);
    Dossier__V1__Record *r = req->record;
    const KindSchema *k, *target;
    struct dossier_status st;
    struct put_ctx *p;

    if (!r)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT, "record is missing");
    if (records_kind(n, r->kind, &k, &st) ||
        records_check_id(r->id, "id", &st))
        return call_fail_status(c, &st);
    if (r->subject_id[0]) {
        if (records_check_id(r->subject_id, "subject_id", &st))
            return call_fail_status(c, &st);
    } else if (k->personal) {
        return call_fail(c, DOSSIER_SCHEMA_VIOLATION,
                         "kind '%s' holds personal data: subject_id is "
                         "required",
                         k->kind);
    }
    if (r->n_links > SCHEMA_LINKS_MAX)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "a record has at most %d links", SCHEMA_LINKS_MAX);
    for (size_t i = 0; i < r->n_links; i++) {
        const Dossier__V1__Link *l = r->links[i];
        if (!schema_name_valid(l->label))
            return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                             "link %zu: label must be lower-case letters, "
                             "digits and _",
                             i + 1);
        if (records_kind(n, l->kind, &target, &st) ||
            records_check_id(l->id, "link id", &st))
            return call_fail(c, st.code, "link %zu: %s", i + 1, st.message);
    }
    if (schema_check_record(k, r, &st))
        return call_fail_status(c, &st);

    p = calloc(1, sizeof(*p));
    if (!p)
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    p->call = c;
    p->node = n;
    p->req = req;
    p->kind = k;
    put_submit(p);
}

/* ------------------------------------------------------------------ */
/* Delete */

struct delete_ctx {
    struct call *call;
};

static void delete_done(void *arg, const struct store_result *res)
{
    struct delete_ctx *d = arg;
    Dossier__V1__DeleteResponse resp = DOSSIER__V1__DELETE_RESPONSE__INIT;

    if (res->status.code) {
        call_fail_status(d->call, &res->status);
    } else {
        resp.version = res->version;
        call_reply(d->call, &resp.base);
    }
    free(d);
}

void api_records_delete(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__DeleteRequest *req = (Dossier__V1__DeleteRequest *)msg;
    struct node *n = call_node(c);
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__DeleteOp op = DOSSIER__STORE__V1__DELETE_OP__INIT;
    uint8_t rid[CRYPT_PSEUDONYM_BYTES], *buf;
    const KindSchema *k;
    struct dossier_status st;
    struct delete_ctx *d;
    size_t len;
    int rc;

    if (records_kind(n, req->kind, &k, &st) ||
        records_check_id(req->id, "id", &st))
        return call_fail_status(c, &st);
    if (req->expect_case ==
        DOSSIER__V1__DELETE_REQUEST__EXPECT_EXPECTED_VERSION) {
        if (req->expected_version == 0)
            return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                             "expected_version 0 means \"must not exist\" "
                             "and cannot apply to a delete");
        op.expect_case = DOSSIER__STORE__V1__DELETE_OP__EXPECT_EXPECTED_VERSION;
        op.expected_version = req->expected_version;
    }
    crypt_record_pseudonym(n->crypt, k->kind, req->id, strlen(req->id), rid);
    op.kind = k->kind;
    op.rid = (ProtobufCBinaryData){sizeof(rid), rid};
    call_command_init(c, &cmd);
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_DELETE;
    cmd.delete_ = &op;
    len = dossier__store__v1__command__get_packed_size(&cmd);
    buf = malloc(len);
    d = calloc(1, sizeof(*d));
    if (!buf || !d) {
        free(buf);
        free(d);
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    }
    dossier__store__v1__command__pack(&cmd, buf);
    d->call = c;
    rc = call_submit(c, buf, len, delete_done, d);
    if (rc) {
        free(d);
        call_fail(c, rc, "the node is shutting down");
    }
}

unsigned api_visible_categories(const struct call *c)
{
    const struct policy_purpose *pp = call_purpose_def(c);
    return pp ? pp->categories : POLICY_ALL_CATEGORIES;
}

/* ------------------------------------------------------------------ */
/* Get */

void api_records_get(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__GetRequest *req = (Dossier__V1__GetRequest *)msg;
    Dossier__V1__GetResponse resp = DOSSIER__V1__GET_RESPONSE__INIT;
    struct node *n = call_node(c);
    uint8_t rid[CRYPT_PSEUDONYM_BYTES], sp[STORE_SP_BYTES];
    struct records_opened o;
    struct dossier_status st;
    StoredRecord *sr;
    const KindSchema *k;

    if (records_kind(n, req->kind, &k, &st) ||
        records_check_id(req->id, "id", &st))
        return call_fail_status(c, &st);
    crypt_record_pseudonym(n->crypt, k->kind, req->id, strlen(req->id), rid);
    if (store_record_get(n->store, k->kind, rid, &sr, &st))
        return call_fail_status(c, &st);
    if (sr->subject.len == STORE_SP_BYTES) {
        memcpy(sp, sr->subject.data, STORE_SP_BYTES);
        if (api_subject_visible(c, sp, &st)) {
            dossier__store__v1__stored_record__free_unpacked(sr, NULL);
            return call_fail_status(c, &st);
        }
    }
    if (records_open(n, sr, rid, api_visible_categories(c), &o, &st))
        return call_fail_status(c, &st);
    if (o.rec.subject_id[0])
        call_audit_read(c, sp, rid, 1);
    resp.record = &o.rec;
    call_reply(c, &resp.base);
    records_opened_release(&o);
}

/* ------------------------------------------------------------------ */
/* Pages: Scan, ListBySubject and FindByIndex collect record keys, then open
 * each record. A page token is the hex of the key suffix the page ended
 * on; the next page starts after it. */

struct page {
    struct node *node;
    uint32_t want;
    size_t n, cap;
    StoredRecord **stored;
    uint8_t (*rids)[STORE_RID_BYTES];
    uint8_t last[STORE_KEY_MAX]; /* key the page ended on */
    size_t last_len;
    size_t bytes;
    int more; /* stopped with keys left */
    const KindSchema *kind; /* FindByIndex: the kind searched */
    const uint8_t *subject; /* ListBySubject: the subject's pseudonym */
    uint64_t revision; /* read before the store: the page shows at least
                          every change up to it */
};

static int page_init(struct page *pg, struct node *n, uint32_t size,
                     struct dossier_status *st)
{
    memset(pg, 0, sizeof(*pg));
    pg->node = n;
    pg->revision = store_revision(n->store);
    if (size > PAGE_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "page_size is at most %d", PAGE_MAX);
    pg->want = size ? size : PAGE_DEFAULT;
    pg->stored = calloc(pg->want, sizeof(*pg->stored));
    pg->rids = calloc(pg->want, sizeof(*pg->rids));
    if (!pg->stored || !pg->rids) {
        free(pg->stored);
        free(pg->rids);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    return 0;
}

static void page_release(struct page *pg)
{
    for (size_t i = 0; i < pg->n; i++)
        if (pg->stored[i])
            dossier__store__v1__stored_record__free_unpacked(pg->stored[i],
                                                             NULL);
    free(pg->stored);
    free(pg->rids);
}

/* Adds stored record @sr (taken) found at @key; returns 1 when full. */
static int page_add(struct page *pg, const uint8_t *key, size_t klen,
                    const uint8_t *rid, StoredRecord *sr, size_t bytes)
{
    if (pg->n == pg->want || pg->bytes >= PAGE_BYTES_MAX) {
        dossier__store__v1__stored_record__free_unpacked(sr, NULL);
        pg->more = 1;
        return 1;
    }
    pg->stored[pg->n] = sr;
    memcpy(pg->rids[pg->n], rid, STORE_RID_BYTES);
    pg->n++;
    pg->bytes += bytes;
    memcpy(pg->last, key, klen);
    pg->last_len = klen;
    return 0;
}

/* Decodes @token (hex) into @after after @prefix (@plen bytes); checks it
 * has the length of a key of this listing (@min..@max bytes of suffix). */
static int token_decode(const char *token, const uint8_t *prefix, size_t plen,
                        size_t min, size_t max, uint8_t *after,
                        size_t *after_len, struct dossier_status *st)
{
    size_t tlen = strlen(token), bin = 0;

    *after_len = 0;
    if (!tlen)
        return 0;
    memcpy(after, prefix, plen);
    if (tlen % 2 || tlen / 2 < min || tlen / 2 > max ||
        sodium_hex2bin(after + plen, STORE_KEY_MAX - plen, token, tlen, NULL,
                       &bin, NULL) != 0 ||
        bin != tlen / 2)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "page_token is not one this listing issued");
    *after_len = plen + bin;
    return 0;
}

/* Opens every record of @pg and answers @c with them. */
static void page_reply(struct call *c, struct page *pg, size_t prefix_len)
{
    Dossier__V1__RecordPage resp = DOSSIER__V1__RECORD_PAGE__INIT;
    struct records_opened *o = calloc(pg->n ? pg->n : 1, sizeof(*o));
    Dossier__V1__Record **recs = calloc(pg->n ? pg->n : 1, sizeof(*recs));
    uint8_t(*seen)[STORE_RID_BYTES] = calloc(pg->n ? pg->n : 1, sizeof(*seen));
    char token[2 * STORE_KEY_MAX + 1] = "";
    struct dossier_status st;
    size_t opened = 0, n_seen = 0;

    if (!o || !recs || !seen) {
        call_fail(c, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < pg->n; i++) {
        StoredRecord *sr = pg->stored[i];
        int personal = sr->subject.len == STORE_SP_BYTES, rc;
        pg->stored[i] = NULL; /* records_open or we free it */
        if (personal) {
            /* ListBySubject checked its one subject before the scan. */
            rc = pg->subject ? 0
                             : api_subject_visible(c, sr->subject.data, &st);
            if (rc == DOSSIER_PERMISSION_DENIED) {
                /* Not for this purpose: left out of the page. */
                dossier__store__v1__stored_record__free_unpacked(sr, NULL);
                continue;
            }
            if (rc) {
                dossier__store__v1__stored_record__free_unpacked(sr, NULL);
                call_fail_status(c, &st);
                goto out;
            }
        }
        rc = records_open(pg->node, sr, pg->rids[i], api_visible_categories(c),
                          &o[opened], &st);
        if (rc == DOSSIER_NOT_FOUND)
            continue; /* deleted while its links were read */
        if (rc) {
            call_fail_status(c, &st);
            goto out;
        }
        if (personal)
            memcpy(seen[n_seen++], pg->rids[i], STORE_RID_BYTES);
        recs[opened] = &o[opened].rec;
        opened++;
    }
    if (pg->more)
        sodium_bin2hex(token, sizeof(token), pg->last + prefix_len,
                       pg->last_len - prefix_len);
    resp.n_records = opened;
    resp.records = recs;
    resp.next_page_token = token;
    resp.revision = pg->revision;
    if (n_seen)
        call_audit_read(c, pg->subject, (const uint8_t *)seen, n_seen);
    call_reply(c, &resp.base);
out:
    for (size_t i = 0; i < opened; i++)
        records_opened_release(&o[i]);
    free(o);
    free(recs);
    free(seen);
}

static int scan_cb(void *arg, const uint8_t *key, size_t klen,
                   const uint8_t *val, size_t vlen)
{
    struct page *pg = arg;
    StoredRecord *sr;

    if (pg->n == pg->want || pg->bytes >= PAGE_BYTES_MAX) {
        pg->more = 1;
        return 1;
    }
    sr = dossier__store__v1__stored_record__unpack(NULL, vlen, val);
    if (!sr)
        return DOSSIER_CORRUPT;
    return page_add(pg, key, klen, key + klen - STORE_RID_BYTES, sr, vlen);
}

void api_records_scan(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__ScanRequest *req = (Dossier__V1__ScanRequest *)msg;
    struct node *n = call_node(c);
    uint8_t prefix[STORE_KEY_MAX], after[STORE_KEY_MAX];
    size_t plen, alen;
    const KindSchema *k;
    struct dossier_status st;
    struct page pg;

    if (records_kind(n, req->kind, &k, &st))
        return call_fail_status(c, &st);
    plen = strlen(k->kind) + 1;
    memcpy(prefix, k->kind, plen);
    if (token_decode(req->page_token, prefix, plen, STORE_RID_BYTES,
                     STORE_RID_BYTES, after, &alen, &st) ||
        page_init(&pg, n, req->page_size, &st))
        return call_fail_status(c, &st);
    if (store_scan(n->store, STORE_RECORD, prefix, plen, alen ? after : NULL,
                   alen, scan_cb, &pg, &st))
        call_fail_status(c, &st);
    else
        page_reply(c, &pg, plen);
    page_release(&pg);
}

/* ListBySubject and FindByIndex: the key ends in what names the record;
 * fetch it. */
static int fetch_record(struct page *pg, const uint8_t *key, size_t klen,
                        const char *kind, const uint8_t *rid)
{
    struct dossier_status st;
    StoredRecord *sr;
    int rc;

    if (pg->n == pg->want || pg->bytes >= PAGE_BYTES_MAX) {
        pg->more = 1;
        return 1;
    }
    rc = store_record_get(pg->node->store, kind, rid, &sr, &st);
    if (rc == DOSSIER_NOT_FOUND)
        return 0; /* deleted between the index read and now */
    if (rc)
        return rc;
    return page_add(pg, key, klen, rid, sr,
                    dossier__store__v1__stored_record__get_packed_size(sr));
}

static int subject_cb(void *arg, const uint8_t *key, size_t klen,
                      const uint8_t *val, size_t vlen)
{
    struct page *pg = arg;
    const uint8_t *kind = key + STORE_SP_BYTES, *nul;
    (void)val;
    (void)vlen;

    if (klen == STORE_SP_BYTES)
        return 0; /* the subject's key row */
    if (klen < STORE_SP_BYTES + 2 + STORE_RID_BYTES)
        return DOSSIER_CORRUPT;
    nul = memchr(kind, 0, klen - STORE_SP_BYTES - STORE_RID_BYTES);
    if (!nul || nul != key + klen - STORE_RID_BYTES - 1)
        return DOSSIER_CORRUPT;
    return fetch_record(pg, key, klen, (const char *)kind,
                        key + klen - STORE_RID_BYTES);
}

void api_records_list_by_subject(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__ListBySubjectRequest *req =
        (Dossier__V1__ListBySubjectRequest *)msg;
    struct node *n = call_node(c);
    uint8_t prefix[STORE_KEY_MAX], after[STORE_KEY_MAX];
    size_t plen = STORE_SP_BYTES, alen;
    const KindSchema *k = NULL;
    struct dossier_status st;
    struct page pg;

    if (records_check_id(req->subject_id, "subject_id", &st) ||
        (req->kind[0] && records_kind(n, req->kind, &k, &st)))
        return call_fail_status(c, &st);
    /* A subject merged into another: its records are that one's. */
    if (api_person_of(c, req->subject_id, prefix) != 0)
        return;
    if (k) {
        memcpy(prefix + plen, k->kind, strlen(k->kind) + 1);
        plen += strlen(k->kind) + 1;
    }
    if (token_decode(req->page_token, prefix, STORE_SP_BYTES,
                     STORE_RID_BYTES + 2, STORE_KEY_MAX - STORE_SP_BYTES,
                     after, &alen, &st))
        return call_fail_status(c, &st);
    /* A token from a listing with another kind filter does not belong
     * here. */
    if (alen && memcmp(after, prefix, plen) != 0)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "page_token is not one this listing issued");
    if (api_subject_visible(c, prefix, &st))
        return call_fail_status(c, &st);
    if (page_init(&pg, n, req->page_size, &st))
        return call_fail_status(c, &st);
    pg.subject = prefix;
    if (store_scan(n->store, STORE_SUBJECT, prefix, plen, alen ? after : NULL,
                   alen, subject_cb, &pg, &st))
        call_fail_status(c, &st);
    else
        page_reply(c, &pg, STORE_SP_BYTES);
    page_release(&pg);
}

static int index_cb(void *arg, const uint8_t *key, size_t klen,
                    const uint8_t *val, size_t vlen)
{
    struct page *pg = arg;
    (void)val;
    (void)vlen;
    return fetch_record(pg, key, klen, pg->kind->kind,
                        key + klen - STORE_RID_BYTES);
}

void api_records_find_by_index(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__FindByIndexRequest *req =
        (Dossier__V1__FindByIndexRequest *)msg;
    struct node *n = call_node(c);
    uint8_t prefix[STORE_KEY_MAX], after[STORE_KEY_MAX];
    uint8_t blind[CRYPT_BLIND_BYTES], rid0[STORE_RID_BYTES] = {0};
    char norm[SCHEMA_NORM_MAX];
    size_t plen, alen, nlen;
    const KindSchema *k;
    const FieldSchema *f;
    struct dossier_status st;
    struct page pg;

    if (records_kind(n, req->kind, &k, &st))
        return call_fail_status(c, &st);
    f = schema_field(k, req->field);
    if (!f)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "kind '%s' has no field '%.64s'", k->kind,
                         req->field);
    if (!req->value ||
        req->value->kind_case == DOSSIER__V1__VALUE__KIND__NOT_SET)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT, "value is missing");
    if (schema_index_value(k, f, req->value, norm, sizeof(norm), &nlen, &st))
        return call_fail_status(c, &st);
    crypt_blind_index(n->crypt, k->kind, f->name, (const uint8_t *)norm, nlen,
                      blind);
    sodium_memzero(norm, sizeof(norm));
    /* The prefix is an index key without its record pseudonym. */
    plen = store_index_key(prefix, k->kind, f->name, blind, rid0) -
           STORE_RID_BYTES;
    if (token_decode(req->page_token, prefix, plen, STORE_RID_BYTES,
                     STORE_RID_BYTES, after, &alen, &st) ||
        page_init(&pg, n, req->page_size, &st))
        return call_fail_status(c, &st);
    pg.kind = k;
    if (store_scan(n->store, STORE_INDEX, prefix, plen, alen ? after : NULL,
                   alen, index_cb, &pg, &st))
        call_fail_status(c, &st);
    else
        page_reply(c, &pg, plen);
    page_release(&pg);
}
