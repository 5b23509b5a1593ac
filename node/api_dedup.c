/* Records/FindDuplicates: candidate duplicates found through the blind
 * indexes alone. Records of one kind whose indexed field holds the same
 * normalised value (an e-mail address in any case, a phone number however
 * written) share the index prefix kind 0x00 field 0x00 blind, so one pass
 * over the kind's index rows groups them without opening a box. Only the
 * records of the groups returned are opened, each as a read of the call's
 * purpose: a record the purpose may not see is left out, and a group left
 * with fewer than two records with it. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api.h"
#include "errors.h"
#include "records.h"
#include "store.h"

#define GROUPS_DEFAULT 100
#define GROUPS_MAX 1000
/* Records shown per group; a larger group shows its first ones. */
#define GROUP_RECORDS_MAX 100

struct dup_group {
    char field[SCHEMA_NAME_MAX + 1];
    uint8_t (*rids)[STORE_RID_BYTES];
    size_t n;
};

struct dup_scan {
    const KindSchema *k;
    size_t kind_len;
    char *const *fields; /* wanted; n_fields 0: every indexed field */
    size_t n_fields;
    /* The group being read: its prefix (field 0x00 blind) and rids. */
    uint8_t prefix[STORE_KEY_MAX];
    size_t plen;
    struct dup_group cur;
    struct dup_group *groups;
    size_t n_groups, want;
    uint8_t last[STORE_KEY_MAX]; /* prefix of the last group returned */
    size_t last_len;
    int more;
};

static int field_wanted(const struct dup_scan *d, const char *field)
{
    if (!d->n_fields)
        return 1;
    for (size_t i = 0; i < d->n_fields; i++)
        if (strcmp(d->fields[i], field) == 0)
            return 1;
    return 0;
}

/* Ends the group being read: kept when two records or more share it. */
static int group_end(struct dup_scan *d)
{
    if (d->cur.n >= 2 && field_wanted(d, d->cur.field)) {
        d->groups[d->n_groups++] = d->cur;
        memcpy(d->last, d->prefix, d->plen);
        d->last_len = d->plen;
        memset(&d->cur, 0, sizeof(d->cur));
    }
    d->cur.n = 0;
    return 0;
}

static int dup_row_cb(void *arg, const uint8_t *key, size_t klen,
                      const uint8_t *val, size_t vlen)
{
    struct dup_scan *d = arg;
    const uint8_t *p = key + d->kind_len + 1, *nul;
    size_t plen;
    (void)val;
    (void)vlen;

    if (klen < d->kind_len + 3 + STORE_BLIND_BYTES + STORE_RID_BYTES)
        return DOSSIER_CORRUPT;
    plen = klen - (d->kind_len + 1) - STORE_RID_BYTES;
    nul = memchr(p, 0, plen);
    if (!nul || (size_t)(nul - p) > SCHEMA_NAME_MAX)
        return DOSSIER_CORRUPT;
    if (plen != d->plen || memcmp(p, d->prefix, plen) != 0) {
        group_end(d);
        if (d->n_groups == d->want) {
            d->more = 1;
            return 1;
        }
        memcpy(d->prefix, p, plen);
        d->plen = plen;
        memcpy(d->cur.field, p, (size_t)(nul - p));
        d->cur.field[nul - p] = '\0';
    }
    if (d->cur.n < GROUP_RECORDS_MAX) {
        if (!d->cur.rids &&
            !(d->cur.rids = calloc(GROUP_RECORDS_MAX, STORE_RID_BYTES)))
            return DOSSIER_NOMEM;
        memcpy(d->cur.rids[d->cur.n], key + klen - STORE_RID_BYTES,
               STORE_RID_BYTES);
    }
    d->cur.n++;
    if (d->cur.n > GROUP_RECORDS_MAX)
        d->cur.n = GROUP_RECORDS_MAX; /* shown: the first ones */
    return 0;
}

static void dup_free(struct dup_scan *d)
{
    for (size_t i = 0; i < d->n_groups; i++)
        free(d->groups[i].rids);
    free(d->groups);
    free(d->cur.rids);
}

/* Opens the records of @g the call may see into @o (counted in *@n). */
static int group_open(struct call *c, const KindSchema *k,
                      const struct dup_group *g, struct records_opened *o,
                      size_t *n, uint8_t (*seen)[STORE_RID_BYTES],
                      size_t *n_seen, struct dossier_status *st)
{
    struct node *nd = call_node(c);
    *n = 0;
    for (size_t i = 0; i < g->n; i++) {
        StoredRecord *sr;
        int rc = store_record_get(nd->store, k->kind, g->rids[i], &sr, st);
        if (rc == DOSSIER_NOT_FOUND)
            continue; /* deleted since the index was read */
        if (rc)
            return rc;
        if (sr->subject.len == STORE_SP_BYTES) {
            rc = api_subject_visible(c, sr->subject.data, st);
            if (rc == DOSSIER_PERMISSION_DENIED) {
                dossier__store__v1__stored_record__free_unpacked(sr, NULL);
                continue;
            }
            if (rc) {
                dossier__store__v1__stored_record__free_unpacked(sr, NULL);
                return rc;
            }
            memcpy(seen[(*n_seen)++], g->rids[i], STORE_RID_BYTES);
        }
        rc = records_open(nd, sr, g->rids[i], api_visible_categories(c),
                          &o[*n], st);
        if (rc)
            return rc;
        (*n)++;
    }
    return 0;
}

void api_records_find_duplicates(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__FindDuplicatesRequest *req =
        (Dossier__V1__FindDuplicatesRequest *)msg;
    Dossier__V1__DuplicateReport resp = DOSSIER__V1__DUPLICATE_REPORT__INIT;
    struct node *n = call_node(c);
    struct dossier_status st;
    struct dup_scan d;
    uint8_t prefix[SCHEMA_NAME_MAX + 1], after[STORE_KEY_MAX];
    size_t alen = 0, tlen, total = 0, opened = 0, n_seen = 0;
    char token[2 * STORE_KEY_MAX + 1] = "";
    Dossier__V1__DuplicateGroup *groups = NULL, **gptrs = NULL;
    Dossier__V1__Record **recs = NULL;
    struct records_opened *o = NULL;
    uint8_t(*seen)[STORE_RID_BYTES] = NULL;
    int rc;

    memset(&d, 0, sizeof(d));
    if (records_kind(n, req->kind, &d.k, &st))
        return call_fail_status(c, &st);
    for (size_t i = 0; i < req->n_fields; i++) {
        const FieldSchema *f = schema_field(d.k, req->fields[i]);
        if (!f || !f->indexed)
            return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                             "field '%.64s' is not an indexed field of kind "
                             "'%s'",
                             req->fields[i], d.k->kind);
    }
    if (req->page_size > GROUPS_MAX)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "page_size is at most %d groups", GROUPS_MAX);
    d.kind_len = strlen(d.k->kind);
    d.fields = req->fields;
    d.n_fields = req->n_fields;
    d.want = req->page_size ? req->page_size : GROUPS_DEFAULT;
    memcpy(prefix, d.k->kind, d.kind_len + 1); /* kind 0x00 */
    /* A token is the hex of the last group's prefix: the next page starts
     * after every row of that group. */
    tlen = strlen(req->page_token);
    if (tlen) {
        size_t bin = 0;
        memcpy(after, prefix, d.kind_len + 1);
        if (tlen % 2 || tlen / 2 < 2 + STORE_BLIND_BYTES ||
            tlen / 2 > SCHEMA_NAME_MAX + 1 + STORE_BLIND_BYTES ||
            sodium_hex2bin(after + d.kind_len + 1,
                           sizeof(after) - d.kind_len - 1 - STORE_RID_BYTES,
                           req->page_token, tlen, NULL, &bin, NULL) != 0)
            return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                             "page_token is not one this listing issued");
        alen = d.kind_len + 1 + bin;
        memset(after + alen, 0xff, STORE_RID_BYTES);
        alen += STORE_RID_BYTES;
    }
    if (!(d.groups = calloc(d.want, sizeof(*d.groups))))
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    rc = store_scan(n->store, STORE_INDEX, prefix, d.kind_len + 1,
                    alen ? after : NULL, alen, dup_row_cb, &d, &st);
    if (rc == 1)
        rc = 0;
    if (rc == 0 && !d.more)
        group_end(&d); /* the last group of the kind */
    if (rc) {
        if (rc == DOSSIER_CORRUPT)
            err_set(&st, rc, "an index row is malformed");
        else if (rc == DOSSIER_NOMEM)
            err_set(&st, rc, "out of memory");
        call_fail_status(c, &st);
        goto out;
    }
    for (size_t i = 0; i < d.n_groups; i++)
        total += d.groups[i].n;
    groups = calloc(d.n_groups ? d.n_groups : 1, sizeof(*groups));
    gptrs = calloc(d.n_groups ? d.n_groups : 1, sizeof(*gptrs));
    recs = calloc(total ? total : 1, sizeof(*recs));
    o = calloc(total ? total : 1, sizeof(*o));
    seen = calloc(total ? total : 1, sizeof(*seen));
    if (!groups || !gptrs || !recs || !o || !seen) {
        call_fail(c, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < d.n_groups; i++) {
        size_t got;
        rc = group_open(c, d.k, &d.groups[i], o + opened, &got, seen, &n_seen,
                        &st);
        if (rc) {
            call_fail_status(c, &st);
            goto out;
        }
        if (got < 2) { /* not a duplicate for this purpose */
            for (size_t j = 0; j < got; j++)
                records_opened_release(&o[opened + j]);
            continue;
        }
        dossier__v1__duplicate_group__init(&groups[resp.n_groups]);
        groups[resp.n_groups].field = d.groups[i].field;
        groups[resp.n_groups].records = recs + opened;
        groups[resp.n_groups].n_records = got;
        for (size_t j = 0; j < got; j++)
            recs[opened + j] = &o[opened + j].rec;
        gptrs[resp.n_groups] = &groups[resp.n_groups];
        resp.n_groups++;
        opened += got;
    }
    if (d.more)
        sodium_bin2hex(token, sizeof(token), d.last, d.last_len);
    resp.groups = gptrs;
    resp.next_page_token = token;
    if (n_seen)
        call_audit_read(c, NULL, (const uint8_t *)seen, n_seen);
    call_reply(c, &resp.base);
out:
    for (size_t i = 0; o && i < opened; i++)
        records_opened_release(&o[i]);
    free(o);
    free(recs);
    free(groups);
    free(gptrs);
    free(seen);
    dup_free(&d);
}
