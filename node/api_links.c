/* The Records ListLinks call: the records linked to and from a record,
 * read through the link family (store.h), filtered as Get filters. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api.h"
#include "crypt.h"
#include "errors.h"
#include "records.h"
#include "store.h"

#define LINKS_PAGE_DEFAULT 100
#define LINKS_PAGE_MAX 1000
/* A page stops early once its records reach this many bytes. */
#define LINKS_PAGE_BYTES_MAX (2u << 20)
/* The rows of one record in one direction: dir kind 0x00 rid. */
#define LINKS_PREFIX_MAX (1 + SCHEMA_NAME_MAX + 1 + STORE_RID_BYTES)
/* A page token: the direction letter, then the hex of the row's key after
 * that prefix (label 0x00 kind 0x00 rid). */
#define LINKS_TOKEN_MAX (1 + 2 * (STORE_KEY_MAX - 2 - STORE_RID_BYTES) + 1)

/* One row found: the record at the other end, not yet opened. */
struct linked {
    char label[SCHEMA_NAME_MAX + 1];
    int incoming;
    uint8_t rid[STORE_RID_BYTES];
    StoredRecord *stored;
};

struct links_page {
    struct node *node;
    uint32_t want;
    size_t n;
    struct linked *items;
    size_t bytes;
    int more;                    /* stopped with rows left */
    size_t plen;                 /* of the prefix being scanned */
    uint8_t last[STORE_KEY_MAX]; /* the last row visited */
    size_t last_len;
};

static int row_cb(void *arg, const uint8_t *key, size_t klen,
                  const uint8_t *val, size_t vlen)
{
    struct links_page *pg = arg;
    struct store_link_row row;
    struct dossier_status st;
    struct linked *it;
    StoredRecord *sr;
    int rc;
    (void)val;
    (void)vlen;

    if (pg->n == pg->want || pg->bytes >= LINKS_PAGE_BYTES_MAX) {
        pg->more = 1;
        return 1;
    }
    if (store_link_key_parse(key, klen, &row) != 0)
        return DOSSIER_CORRUPT;
    memcpy(pg->last, key, klen);
    pg->last_len = klen;
    rc = store_record_get(pg->node->store, row.b_kind, row.b_rid, &sr, &st);
    if (rc == DOSSIER_NOT_FOUND)
        return 0; /* a link to a record not made yet (or gone meanwhile) */
    if (rc)
        return rc;
    it = &pg->items[pg->n++];
    memcpy(it->label, row.label, sizeof(it->label));
    it->incoming = row.dir == 'i';
    memcpy(it->rid, row.b_rid, STORE_RID_BYTES);
    it->stored = sr;
    pg->bytes += dossier__store__v1__stored_record__get_packed_size(sr);
    return 0;
}

static void links_page_release(struct links_page *pg)
{
    for (size_t i = 0; i < pg->n; i++)
        if (pg->items[i].stored)
            dossier__store__v1__stored_record__free_unpacked(
                pg->items[i].stored, NULL);
    free(pg->items);
}

/* The subject pseudonym every audited record shares, or NULL. */
struct audit_set {
    uint8_t sp[STORE_SP_BYTES];
    int n_subjects; /* 0, 1, or 2 for "more than one" */
    uint8_t (*rids)[STORE_RID_BYTES];
    size_t n;
};

static void audit_set_add(struct audit_set *a, const uint8_t *sp,
                          const uint8_t *rid)
{
    if (a->n_subjects == 0) {
        memcpy(a->sp, sp, STORE_SP_BYTES);
        a->n_subjects = 1;
    } else if (memcmp(a->sp, sp, STORE_SP_BYTES) != 0) {
        a->n_subjects = 2;
    }
    memcpy(a->rids[a->n++], rid, STORE_RID_BYTES);
}

/* Opens the records of @pg and answers @c; @anchor_sp (NULL: the record
 * has no subject) and @anchor_rid name the record asked about. */
static void links_reply(struct call *c, struct links_page *pg,
                        const uint8_t *anchor_sp, const uint8_t *anchor_rid,
                        const char *token)
{
    Dossier__V1__LinkedPage resp = DOSSIER__V1__LINKED_PAGE__INIT;
    const struct policy_purpose *pp = call_purpose_def(c);
    unsigned categories = pp ? pp->categories : POLICY_ALL_CATEGORIES;
    size_t cap = pg->n ? pg->n : 1, opened = 0;
    struct records_opened *o = calloc(cap, sizeof(*o));
    Dossier__V1__LinkedRecord *lr = calloc(cap, sizeof(*lr));
    Dossier__V1__LinkedRecord **ptrs = calloc(cap, sizeof(*ptrs));
    struct audit_set seen = {.rids = calloc(cap + 1, STORE_RID_BYTES)};
    struct dossier_status st;
    int rc;

    if (!o || !lr || !ptrs || !seen.rids) {
        call_fail(c, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    if (anchor_sp)
        audit_set_add(&seen, anchor_sp, anchor_rid);
    for (size_t i = 0; i < pg->n; i++) {
        struct linked *it = &pg->items[i];
        StoredRecord *sr = it->stored;
        uint8_t sp[STORE_SP_BYTES];
        int personal = sr->subject.len == STORE_SP_BYTES;
        it->stored = NULL; /* records_open or we free it */
        if (personal) {
            memcpy(sp, sr->subject.data, STORE_SP_BYTES);
            rc = api_subject_visible(c, sp, &st);
            if (rc) {
                dossier__store__v1__stored_record__free_unpacked(sr, NULL);
                if (rc == DOSSIER_PERMISSION_DENIED)
                    continue; /* not for this purpose: left out */
                call_fail_status(c, &st);
                goto out;
            }
        }
        rc = records_open(pg->node, sr, it->rid, categories, &o[opened], &st);
        if (rc == DOSSIER_NOT_FOUND)
            continue; /* deleted while the page was read */
        if (rc) {
            call_fail_status(c, &st);
            goto out;
        }
        if (personal)
            audit_set_add(&seen, sp, it->rid);
        dossier__v1__linked_record__init(&lr[opened]);
        lr[opened].label = it->label;
        lr[opened].direction =
            it->incoming
                ? DOSSIER__V1__LINK_DIRECTION__LINK_DIRECTION_INCOMING
                : DOSSIER__V1__LINK_DIRECTION__LINK_DIRECTION_OUTGOING;
        lr[opened].record = &o[opened].rec;
        ptrs[opened] = &lr[opened];
        opened++;
    }
    resp.n_links = opened;
    resp.links = ptrs;
    resp.next_page_token = (char *)token;
    if (seen.n)
        call_audit_read(c, seen.n_subjects == 1 ? seen.sp : NULL,
                        (const uint8_t *)seen.rids, seen.n);
    call_reply(c, &resp.base);
out:
    for (size_t i = 0; o && i < opened; i++)
        records_opened_release(&o[i]);
    free(o);
    free(lr);
    free(ptrs);
    free(seen.rids);
}

/* Decodes page token @token for the rows of (@kind, @rid) with @label
 * ("" for all) into *@dir (the direction letter it resumes) and @after
 * (the full row key to resume after). */
static int token_decode(const char *token, const char *kind,
                        const uint8_t *rid, const char *label, char *dir,
                        uint8_t *after, size_t *after_len,
                        struct dossier_status *st)
{
    size_t tlen = strlen(token), plen, llen = strlen(label), bin = 0;

    *after_len = 0;
    if (!tlen)
        return 0;
    if (tlen < 3 || tlen > LINKS_TOKEN_MAX ||
        (token[0] != 'o' && token[0] != 'i'))
        goto bad;
    *dir = token[0];
    after[0] = (uint8_t)token[0];
    plen = 1 + store_record_key(after + 1, kind, rid);
    if (sodium_hex2bin(after + plen, STORE_KEY_MAX - plen, token + 1, tlen - 1,
                       NULL, &bin, NULL) != 0 ||
        bin != (tlen - 1) / 2 || (tlen - 1) % 2 || bin < 4 + STORE_RID_BYTES)
        goto bad;
    /* A token of a listing of another label does not belong here. */
    if (llen && (bin < llen + 1 || memcmp(after + plen, label, llen) != 0 ||
                 after[plen + llen] != 0))
        goto bad;
    *after_len = plen + bin;
    return 0;
bad:
    return err_set(st, DOSSIER_INVALID_ARGUMENT,
                   "page_token is not one this listing issued");
}

void api_records_list_links(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__ListLinksRequest *req = (Dossier__V1__ListLinksRequest *)msg;
    struct node *n = call_node(c);
    uint8_t rid[STORE_RID_BYTES], sp[STORE_SP_BYTES];
    uint8_t prefix[LINKS_PREFIX_MAX + SCHEMA_NAME_MAX + 1];
    uint8_t after[STORE_KEY_MAX];
    char token[LINKS_TOKEN_MAX + 1] = "", from = 0;
    size_t alen, plen;
    const KindSchema *k;
    struct dossier_status st;
    struct links_page pg;
    StoredRecord *anchor;
    int personal, rc = 0;
    int out = 1, in = 1;

    if (records_kind(n, req->kind, &k, &st) ||
        records_check_id(req->id, "id", &st))
        return call_fail_status(c, &st);
    switch (req->direction) {
    case DOSSIER__V1__LINK_DIRECTION__LINK_DIRECTION_UNSPECIFIED:
    case DOSSIER__V1__LINK_DIRECTION__LINK_DIRECTION_BOTH:
        break;
    case DOSSIER__V1__LINK_DIRECTION__LINK_DIRECTION_OUTGOING:
        in = 0;
        break;
    case DOSSIER__V1__LINK_DIRECTION__LINK_DIRECTION_INCOMING:
        out = 0;
        break;
    default:
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "direction %d is not one of OUTGOING (1), INCOMING "
                         "(2) or BOTH (3, or 0)",
                         (int)req->direction);
    }
    if (req->label[0] && !schema_name_valid(req->label))
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "label '%.64s' is not a link label (lower-case "
                         "letters, digits and _, at most %d bytes)",
                         req->label, SCHEMA_NAME_MAX);
    if (req->page_size > LINKS_PAGE_MAX)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "page_size is at most %d", LINKS_PAGE_MAX);
    crypt_record_pseudonym(n->crypt, k->kind, req->id, strlen(req->id), rid);
    if (token_decode(req->page_token, k->kind, rid, req->label, &from, after,
                     &alen, &st))
        return call_fail_status(c, &st);
    if (alen && ((from == 'o' && !out) || (from == 'i' && !in)))
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "page_token is not one this listing issued");

    /* The record itself, checked as Get would check it. */
    if (store_record_get(n->store, k->kind, rid, &anchor, &st))
        return call_fail_status(c, &st);
    personal = anchor->subject.len == STORE_SP_BYTES;
    if (personal)
        memcpy(sp, anchor->subject.data, STORE_SP_BYTES);
    dossier__store__v1__stored_record__free_unpacked(anchor, NULL);
    if (personal && api_subject_visible(c, sp, &st))
        return call_fail_status(c, &st);

    memset(&pg, 0, sizeof(pg));
    pg.node = n;
    pg.want = req->page_size ? req->page_size : LINKS_PAGE_DEFAULT;
    pg.items = calloc(pg.want, sizeof(*pg.items));
    if (!pg.items)
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    /* Outgoing rows first, then incoming; a token resumes in its own. */
    for (int pass = 0; rc == 0 && !pg.more && pass < 2; pass++) {
        char dir = pass == 0 ? 'o' : 'i';
        int resume = alen && from == dir;
        if (!(pass == 0 ? out : in) || (alen && from == 'i' && dir == 'o'))
            continue;
        prefix[0] = (uint8_t)dir;
        plen = 1 + store_record_key(prefix + 1, k->kind, rid);
        pg.plen = plen;
        if (req->label[0]) {
            size_t llen = strlen(req->label);
            memcpy(prefix + plen, req->label, llen + 1);
            plen += llen + 1;
        }
        rc = store_scan(n->store, STORE_LINK, prefix, plen,
                        resume ? after : NULL, resume ? alen : 0, row_cb, &pg,
                        &st);
    }
    if (rc) {
        call_fail_status(c, &st);
        links_page_release(&pg);
        return;
    }
    if (pg.more) {
        token[0] = (char)pg.last[0];
        sodium_bin2hex(token + 1, sizeof(token) - 1, pg.last + pg.plen,
                       pg.last_len - pg.plen);
    }
    links_reply(c, &pg, personal ? sp : NULL, rid, token);
    links_page_release(&pg);
}
