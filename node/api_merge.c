/* Merges (dossier.v1.Merges): duplicates folded into a survivor, undone or
 * confirmed. The leader opens the records involved, decides the merged
 * fields and links, seals everything again (the survivor, the merged
 * subjects' other records under the survivor's subject, the links of
 * other records re-pointed at the survivor) and proposes one MergeOp,
 * which store_apply() checks against its own state and applies, keeping
 * what it changed for an undo (store_crm.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api.h"
#include "crypt.h"
#include "errors.h"
#include "policy.h"
#include "records.h"
#include "store.h"

#define MERGE_DUPS_MAX 16
#define MERGE_MOVED_MAX 1000
#define MERGE_REPOINTS_MAX 10000
/* A raft entry travels alone in a message when it is large; peers take
 * 4 MiB messages. */
#define MERGE_COMMAND_MAX (3u << 20)
/* Proposals that lost a race (RETRY) are prepared again this many times. */
#define MERGE_ATTEMPTS 3
#define MERGE_ID_LEN STORE_MERGE_ID_LEN

typedef Dossier__Store__V1__Command Command_t;
typedef Dossier__Store__V1__MergeSummary MergeSummary;

#define LIST_PAGE_DEFAULT 100
#define LIST_PAGE_MAX 1000

/* ------------------------------------------------------------------ */
/* What a merge is shown as */

/* A merge as MergeInfo, with what it points at. */
struct merge_info {
    Dossier__V1__MergeInfo m;
    struct records_opened survivor;
    int has_survivor;
    Dossier__Store__V1__MergeIds *ids;
};

static void merge_info_release(struct merge_info *mi)
{
    if (mi->has_survivor)
        records_opened_release(&mi->survivor);
    if (mi->ids)
        protobuf_c_message_free_unpacked(&mi->ids->base,
                                         &server_wiping_allocator);
    memset(mi, 0, sizeof(*mi));
}

/* Merge @mr (its summary) as @c may see it into @mi: the survivor's id
 * and the duplicates' ids when its purpose may read the subject, else
 * none. */
static int merge_info_of(struct call *c, const MergeSummary *mr,
                         struct merge_info *mi, struct dossier_status *st)
{
    struct node *n = call_node(c);
    const uint8_t *sp = mr->subject.len == STORE_SP_BYTES ? mr->subject.data
                                                          : NULL;
    StoredRecord *sr;
    int rc;

    memset(mi, 0, sizeof(*mi));
    dossier__v1__merge_info__init(&mi->m);
    mi->m.id = mr->id;
    mi->m.kind = mr->kind;
    mi->m.merged_ms = mr->time_ms;
    mi->m.merged_by = mr->principal;
    mi->m.reference = mr->reference;
    mi->m.version = mr->revision;
    mi->m.records_moved = mr->records_moved;
    mi->m.links_moved = mr->links_moved;
    mi->m.state = "pending";
    if (sp && api_subject_visible(c, sp, st) != 0)
        return 0; /* shown without ids */
    if (mr->survivor.len == STORE_RID_BYTES &&
        store_record_get(n->store, mr->kind, mr->survivor.data, &sr, st) ==
            0) {
        rc = records_open(n, sr, mr->survivor.data, 0, &mi->survivor, st);
        if (rc == 0) {
            mi->has_survivor = 1;
            mi->m.survivor_id = mi->survivor.rec.id;
        }
    }
    if (mr->sealed_ids.len && mr->survivor.len == STORE_RID_BYTES) {
        struct crypt_place place = {0};
        uint8_t *plain;
        size_t len;
        place.domain = CRYPT_MERGE_IDS;
        place.kind = mr->kind;
        place.rid = mr->survivor.data;
        place.rid_len = STORE_RID_BYTES;
        place.name = mr->id;
        if (records_open_box(n, sp, mr->dek_id, place, mr->sealed_ids.data,
                             mr->sealed_ids.len, &plain, &len, st) == 0) {
            mi->ids = dossier__store__v1__merge_ids__unpack(
                &server_wiping_allocator, len, plain);
            sodium_memzero(plain, len);
            free(plain);
            if (mi->ids) {
                mi->m.n_duplicate_ids = mi->ids->n_ids;
                mi->m.duplicate_ids = mi->ids->ids;
            }
        }
    }
    if (!mi->m.survivor_id)
        mi->m.survivor_id = "";
    return 0;
}

/* ------------------------------------------------------------------ */
/* Preparing a merge */

/* A record read and opened whole (every category). */
struct merge_rec {
    struct records_opened o;
    uint8_t rid[STORE_RID_BYTES];
    int opened;
};

struct merge_ctx {
    struct call *call;
    struct node *node;
    Dossier__V1__MergeRequest *req;
    const KindSchema *k;
    int attempts;
    char id[MERGE_ID_LEN + 1];
    size_t moved, repoints; /* of the last proposal */
};

/* A link of another record to a duplicate, to point at the survivor. */
struct repoint {
    struct store_link_row row; /* the "i" row: b_* is the linking record */
    const uint8_t *dup_rid;    /* borrowed from the prep */
    uint8_t *box;              /* the survivor's id sealed for the link */
    size_t box_len;
    uint64_t dek_id;
};

/* Everything one attempt holds; released by prep_release(). */
struct prep {
    struct merge_rec s;
    struct merge_rec d[MERGE_DUPS_MAX];
    size_t n_d;
    uint8_t (*subjects)[STORE_SP_BYTES];
    size_t n_subjects;
    struct merge_rec *moved;
    size_t n_moved, cap_moved;
    Command_t **cmds; /* unpacked Put commands, whose PutOps we borrow */
    size_t n_cmds, cap_cmds;
    struct repoint *rp;
    size_t n_rp, cap_rp;
    char *tags[SCHEMA_FIELDS_MAX]; /* merged tag sets, made here */
    Dossier__V1__Value tag_values[SCHEMA_FIELDS_MAX];
    size_t n_tags;
    uint8_t *sealed_ids;
    size_t sealed_ids_len;
    uint8_t *dup_ids[MERGE_DUPS_MAX]; /* each sealed under the survivor's */
    size_t dup_ids_len[MERGE_DUPS_MAX];
};

static void prep_release(struct prep *p)
{
    if (p->s.opened)
        records_opened_release(&p->s.o);
    for (size_t i = 0; i < p->n_d; i++)
        if (p->d[i].opened)
            records_opened_release(&p->d[i].o);
    for (size_t i = 0; i < p->n_moved; i++)
        if (p->moved[i].opened)
            records_opened_release(&p->moved[i].o);
    free(p->moved);
    free(p->subjects);
    for (size_t i = 0; i < p->n_cmds; i++)
        dossier__store__v1__command__free_unpacked(p->cmds[i], NULL);
    free(p->cmds);
    for (size_t i = 0; i < p->n_rp; i++)
        free(p->rp[i].box);
    free(p->rp);
    for (size_t i = 0; i < p->n_tags; i++) {
        sodium_memzero(p->tags[i], strlen(p->tags[i]));
        free(p->tags[i]);
    }
    free(p->sealed_ids);
    for (size_t i = 0; i < MERGE_DUPS_MAX; i++)
        free(p->dup_ids[i]);
    memset(p, 0, sizeof(*p));
}

/* Reads and opens record (@kind, @rid) whole into @r, if @c's purpose
 * may read its subject. @what names it in messages. */
static int rec_open(struct call *c, const char *kind, const uint8_t *rid,
                    const char *what, struct merge_rec *r,
                    struct dossier_status *st)
{
    struct node *n = call_node(c);
    StoredRecord *sr;
    int rc;

    memcpy(r->rid, rid, STORE_RID_BYTES);
    rc = store_record_get(n->store, kind, rid, &sr, st);
    if (rc == DOSSIER_NOT_FOUND)
        return err_set(st, rc, "%s: no record of kind '%s' with that id",
                       what, kind);
    if (rc)
        return rc;
    if (sr->subject.len == STORE_SP_BYTES &&
        (rc = api_subject_visible(c, sr->subject.data, st)) != 0) {
        dossier__store__v1__stored_record__free_unpacked(sr, NULL);
        if (rc == DOSSIER_PERMISSION_DENIED)
            return err_set(st, rc, "%s: the purpose may not process its "
                           "subject (restricted, or no consent): merge "
                           "refused",
                           what);
        return rc;
    }
    rc = records_open(n, sr, rid, POLICY_ALL_CATEGORIES, &r->o, st);
    if (rc == DOSSIER_NOT_FOUND)
        return err_set(st, rc, "%s: no record of kind '%s' with that id",
                       what, kind);
    if (rc == 0)
        r->opened = 1;
    return rc;
}

static const ProtobufCBinaryData *rec_subject(const struct merge_rec *r)
{
    return &r->o.stored->subject;
}

/* Whether (@kind, @id) is the survivor or a duplicate. */
static int is_merged(const struct merge_ctx *m, const char *kind,
                     const char *id)
{
    if (strcmp(kind, m->k->kind) != 0)
        return 0;
    if (strcmp(id, m->req->survivor_id) == 0)
        return 1;
    for (size_t i = 0; i < m->req->n_duplicate_ids; i++)
        if (strcmp(id, m->req->duplicate_ids[i]) == 0)
            return 1;
    return 0;
}

/* The links of @r with every link to a duplicate pointed at the survivor,
 * each once, none from the survivor to itself; appended to @out (*@n of
 * @cap), pointing into @r and @m's request. */
static int links_repointed(const struct merge_ctx *m,
                           const Dossier__V1__Record *r, int is_survivor,
                           Dossier__V1__Link *out, size_t *n, size_t cap,
                           struct dossier_status *st)
{
    for (size_t i = 0; i < r->n_links; i++) {
        Dossier__V1__Link l = *r->links[i];
        size_t j;
        if (is_merged(m, l.kind, l.id)) {
            if (is_survivor)
                continue; /* it would link the survivor to itself */
            l.id = m->req->survivor_id;
        }
        for (j = 0; j < *n; j++)
            if (strcmp(out[j].label, l.label) == 0 &&
                strcmp(out[j].kind, l.kind) == 0 &&
                strcmp(out[j].id, l.id) == 0)
                break;
        if (j < *n)
            continue;
        if (*n == cap)
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "the merged record would have more than %d links",
                           SCHEMA_LINKS_MAX);
        out[(*n)++] = l;
    }
    return 0;
}

/* Seals record @r (opened) as a Put of kind @k with @fields and @links,
 * at expected version @version, under subject @subject_id; the PutOp goes
 * into *@put, borrowed from @p. */
static int seal_put(struct merge_ctx *m, struct prep *p, const KindSchema *k,
                    const Dossier__V1__Record *r, const char *subject_id,
                    Dossier__V1__Field **fields, size_t n_fields,
                    Dossier__V1__Link *links, size_t n_links, uint64_t version,
                    Dossier__Store__V1__PutOp **put, struct dossier_status *st)
{
    Dossier__V1__Record rec = DOSSIER__V1__RECORD__INIT;
    Dossier__V1__Link **lp = calloc(n_links + 1, sizeof(*lp));
    uint8_t sp[CRYPT_PSEUDONYM_BYTES], *buf;
    Command_t *cmd;
    size_t len;
    int rc;

    if (!lp)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    if (p->n_cmds == p->cap_cmds) {
        size_t cap = p->cap_cmds ? 2 * p->cap_cmds : 16;
        void *np = realloc(p->cmds, cap * sizeof(*p->cmds));
        if (!np) {
            free(lp);
            return err_set(st, DOSSIER_NOMEM, "out of memory");
        }
        p->cmds = np;
        p->cap_cmds = cap;
    }
    for (size_t i = 0; i < n_links; i++)
        lp[i] = &links[i];
    rec.kind = (char *)k->kind;
    rec.id = r->id;
    rec.subject_id = (char *)subject_id;
    rec.n_fields = n_fields;
    rec.fields = fields;
    rec.n_links = n_links;
    rec.links = lp;
    rc = records_seal_put(m->node, k, &rec, &version, m->call, &buf, &len, sp,
                          st);
    free(lp);
    if (rc)
        return rc;
    cmd = dossier__store__v1__command__unpack(NULL, len, buf);
    free(buf);
    if (!cmd || !cmd->put) {
        if (cmd)
            dossier__store__v1__command__free_unpacked(cmd, NULL);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    p->cmds[p->n_cmds++] = cmd;
    *put = cmd->put;
    return 0;
}

/* The value field @f takes in the merged record, or NULL: by a choice,
 * the union of tags, or the rule. */
static int merged_value(struct merge_ctx *m, struct prep *p,
                        const FieldSchema *f, const Dossier__V1__Value **out,
                        struct dossier_status *st)
{
    const Dossier__V1__MergeRequest *req = m->req;
    const struct merge_rec *recs[1 + MERGE_DUPS_MAX];
    size_t n = 1 + p->n_d, pick = (size_t)-1;

    *out = NULL;
    recs[0] = &p->s;
    for (size_t i = 0; i < p->n_d; i++)
        recs[1 + i] = &p->d[i];
    for (size_t i = 0; i < req->n_choices; i++)
        if (strcmp(req->choices[i]->field, f->name) == 0) {
            for (size_t j = 0; j < n; j++)
                if (strcmp(recs[j]->o.rec.id, req->choices[i]->id) == 0)
                    pick = j;
            *out = records_field_value(&recs[pick]->o.rec, f->name);
            return 0;
        }
    if (f->type == DOSSIER__V1__FIELD_TYPE__FIELD_TYPE_TAGS) {
        size_t total = 0, at = 0;
        char *u;
        for (size_t j = 0; j < n; j++) {
            const Dossier__V1__Value *v =
                records_field_value(&recs[j]->o.rec, f->name);
            if (v && v->kind_case == DOSSIER__V1__VALUE__KIND_STRING_VALUE)
                total += strlen(v->string_value) + 1;
        }
        if (!total)
            return 0;
        if (!(u = malloc(total + 1)))
            return err_set(st, DOSSIER_NOMEM, "out of memory");
        for (size_t j = 0; j < n; j++) {
            const Dossier__V1__Value *v =
                records_field_value(&recs[j]->o.rec, f->name);
            size_t l;
            if (!v || v->kind_case != DOSSIER__V1__VALUE__KIND_STRING_VALUE ||
                !v->string_value[0])
                continue;
            l = strlen(v->string_value);
            if (at)
                u[at++] = ',';
            memcpy(u + at, v->string_value, l);
            at += l;
        }
        u[at] = '\0';
        p->tags[p->n_tags] = u;
        if (schema_tags_normalize(u) != 0) {
            p->n_tags++;
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "field '%s': the records hold more than %d tags "
                           "together; choose one record's with a per-field "
                           "choice",
                           f->name, SCHEMA_TAGS_MAX);
        }
        dossier__v1__value__init(&p->tag_values[p->n_tags]);
        p->tag_values[p->n_tags].kind_case =
            DOSSIER__V1__VALUE__KIND_STRING_VALUE;
        p->tag_values[p->n_tags].string_value = u;
        *out = &p->tag_values[p->n_tags++];
        return 0;
    }
    for (size_t j = 0; j < n; j++) {
        const Dossier__V1__Value *v =
            records_field_value(&recs[j]->o.rec, f->name);
        if (!v || v->kind_case == DOSSIER__V1__VALUE__KIND__NOT_SET)
            continue;
        if (req->prefer != DOSSIER__V1__MERGE_PREFER__MERGE_PREFER_NEWEST) {
            *out = v;
            return 0;
        }
        if (!*out || recs[j]->o.rec.updated_at_ms >
                         recs[pick]->o.rec.updated_at_ms) {
            *out = v;
            pick = j;
        }
    }
    return 0;
}

/* The merged survivor, sealed, into *@put. */
static int seal_survivor(struct merge_ctx *m, struct prep *p,
                         Dossier__Store__V1__PutOp **put,
                         struct dossier_status *st)
{
    const KindSchema *k = m->k;
    Dossier__V1__Field *fields = calloc(k->n_fields + 1, sizeof(*fields));
    Dossier__V1__Field **fp = calloc(k->n_fields + 1, sizeof(*fp));
    Dossier__V1__Link *links = calloc(SCHEMA_LINKS_MAX, sizeof(*links));
    Dossier__V1__Record check = DOSSIER__V1__RECORD__INIT;
    size_t nf = 0, nl = 0;
    int rc = 0;

    if (!fields || !fp || !links) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; rc == 0 && i < k->n_fields; i++) {
        const Dossier__V1__Value *v;
        rc = merged_value(m, p, k->fields[i], &v, st);
        if (rc == 0 && v) {
            dossier__v1__field__init(&fields[nf]);
            fields[nf].name = k->fields[i]->name;
            fields[nf].value = (Dossier__V1__Value *)v;
            fp[nf] = &fields[nf];
            nf++;
        }
    }
    if (rc == 0)
        rc = links_repointed(m, &p->s.o.rec, 1, links, &nl, SCHEMA_LINKS_MAX,
                             st);
    for (size_t i = 0; rc == 0 && i < p->n_d; i++)
        rc = links_repointed(m, &p->d[i].o.rec, 1, links, &nl,
                             SCHEMA_LINKS_MAX, st);
    if (rc)
        goto out;
    /* The merged record must be one its kind accepts (a choice may leave
     * a required field empty). */
    check.kind = (char *)k->kind;
    check.id = p->s.o.rec.id;
    check.n_fields = nf;
    check.fields = fp;
    if ((rc = schema_check_record(k, &check, st))) {
        st->code = rc = DOSSIER_INVALID_ARGUMENT;
        goto out;
    }
    rc = seal_put(m, p, k, &p->s.o.rec, p->s.o.rec.subject_id, fp, nf, links,
                  nl, p->s.o.stored->version, put, st);
out:
    free(fields);
    free(fp);
    free(links);
    return rc;
}

/* The records of subject @sp (membership rows), by kind and pseudonym. */
struct member {
    char kind[SCHEMA_NAME_MAX + 1];
    uint8_t rid[STORE_RID_BYTES];
};

struct members {
    struct member *v;
    size_t n, cap;
};

static int member_cb(void *arg, const uint8_t *key, size_t klen,
                     const uint8_t *val, size_t vlen)
{
    struct members *ms = arg;
    const uint8_t *nul;
    (void)val;
    (void)vlen;
    if (klen == STORE_SP_BYTES)
        return 0; /* the key */
    nul = memchr(key + STORE_SP_BYTES, 0, klen - STORE_SP_BYTES);
    if (!nul || (size_t)(key + klen - nul - 1) != STORE_RID_BYTES ||
        (size_t)(nul - key - STORE_SP_BYTES) > SCHEMA_NAME_MAX)
        return DOSSIER_CORRUPT;
    if (ms->n == ms->cap) {
        size_t cap = ms->cap ? 2 * ms->cap : 16;
        void *p = realloc(ms->v, cap * sizeof(*ms->v));
        if (!p)
            return DOSSIER_NOMEM;
        ms->v = p;
        ms->cap = cap;
    }
    memcpy(ms->v[ms->n].kind, key + STORE_SP_BYTES,
           (size_t)(nul - key - STORE_SP_BYTES));
    ms->v[ms->n].kind[nul - key - STORE_SP_BYTES] = '\0';
    memcpy(ms->v[ms->n].rid, nul + 1, STORE_RID_BYTES);
    ms->n++;
    return 0;
}

/* The other records of the merged subjects, opened and sealed again under
 * the survivor's subject, into @puts (*@n). */
static int seal_moved(struct merge_ctx *m, struct prep *p,
                      Dossier__Store__V1__PutOp ***puts, size_t *n,
                      struct dossier_status *st)
{
    struct members ms = {0};
    Dossier__V1__Link *links = NULL;
    int rc = 0;

    *puts = NULL;
    *n = 0;
    for (size_t j = 0; rc == 0 && j < p->n_subjects; j++) {
        rc = store_scan(m->node->store, STORE_SUBJECT, p->subjects[j],
                        STORE_SP_BYTES, NULL, 0, member_cb, &ms, st);
        if (rc == DOSSIER_NOMEM || rc == DOSSIER_CORRUPT)
            rc = err_set(st, rc, rc == DOSSIER_NOMEM
                                     ? "out of memory"
                                     : "a membership key is malformed");
    }
    if (rc)
        goto out;
    p->moved = calloc(ms.n + 1, sizeof(*p->moved));
    *puts = calloc(ms.n + 1, sizeof(**puts));
    links = calloc(SCHEMA_LINKS_MAX, sizeof(*links));
    if (!p->moved || !*puts || !links) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; rc == 0 && i < ms.n; i++) {
        struct merge_rec *r = &p->moved[p->n_moved];
        const KindSchema *k;
        size_t nl = 0, dup = 0;
        for (size_t d = 0; d < p->n_d; d++)
            dup |= strcmp(ms.v[i].kind, m->k->kind) == 0 &&
                   memcmp(ms.v[i].rid, p->d[d].rid, STORE_RID_BYTES) == 0;
        if (dup)
            continue;
        if (p->n_moved == MERGE_MOVED_MAX) {
            rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                         "the duplicates' subjects hold more than %d other "
                         "records: too many for one merge",
                         MERGE_MOVED_MAX);
            break;
        }
        if ((rc = records_kind(m->node, ms.v[i].kind, &k, st)))
            break;
        rc = rec_open(m->call, ms.v[i].kind, ms.v[i].rid,
                      "a record of a duplicate's subject", r, st);
        if (rc == DOSSIER_NOT_FOUND) {
            rc = 0; /* deleted meanwhile: apply checks */
            continue;
        }
        if (rc)
            break;
        p->n_moved++;
        rc = links_repointed(m, &r->o.rec, 0, links, &nl, SCHEMA_LINKS_MAX,
                             st);
        if (rc == 0)
            rc = seal_put(m, p, k, &r->o.rec, p->s.o.rec.subject_id,
                          r->o.rec.fields, r->o.rec.n_fields, links, nl,
                          r->o.stored->version, &(*puts)[*n], st);
        if (rc == 0)
            (*n)++;
    }
out:
    free(ms.v);
    free(links);
    return rc;
}

/* Whether (@kind, @rid) is the survivor, a duplicate or a moved record. */
static int rewritten(const struct merge_ctx *m, const struct prep *p,
                     const char *kind, const uint8_t *rid)
{
    if (strcmp(kind, m->k->kind) == 0) {
        if (memcmp(rid, p->s.rid, STORE_RID_BYTES) == 0)
            return 1;
        for (size_t i = 0; i < p->n_d; i++)
            if (memcmp(rid, p->d[i].rid, STORE_RID_BYTES) == 0)
                return 1;
    }
    for (size_t i = 0; i < p->n_moved; i++)
        if (strcmp(kind, p->moved[i].o.stored->kind) == 0 &&
            memcmp(rid, p->moved[i].rid, STORE_RID_BYTES) == 0)
            return 1;
    return 0;
}

/* The links of other records to duplicate @d, re-pointed at the
 * survivor (each link's target id sealed again under its record's key). */
struct incoming {
    struct merge_ctx *m;
    struct prep *p;
    const uint8_t *dup_rid;
    struct dossier_status *st;
};

static int incoming_cb(void *arg, const uint8_t *key, size_t klen,
                       const uint8_t *val, size_t vlen)
{
    struct incoming *in = arg;
    struct prep *p = in->p;
    struct repoint *rp;
    StoredRecord *src;
    int rc;
    (void)val;
    (void)vlen;

    if (p->n_rp == p->cap_rp) {
        size_t cap = p->cap_rp ? 2 * p->cap_rp : 32;
        void *a = realloc(p->rp, cap * sizeof(*p->rp));
        if (!a)
            return DOSSIER_NOMEM;
        p->rp = a;
        p->cap_rp = cap;
    }
    rp = &p->rp[p->n_rp];
    memset(rp, 0, sizeof(*rp));
    if (store_link_key_parse(key, klen, &rp->row) != 0)
        return DOSSIER_CORRUPT;
    if (rewritten(in->m, p, rp->row.b_kind, rp->row.b_rid))
        return 0; /* its own links are sealed again with it */
    rc = store_record_get(in->m->node->store, rp->row.b_kind, rp->row.b_rid,
                          &src, in->st);
    if (rc == DOSSIER_NOT_FOUND)
        return 0;
    if (rc)
        return rc;
    if (p->n_rp == MERGE_REPOINTS_MAX) {
        dossier__store__v1__stored_record__free_unpacked(src, NULL);
        return err_set(in->st, DOSSIER_INVALID_ARGUMENT,
                       "more than %d links point at the duplicates: too "
                       "many for one merge",
                       MERGE_REPOINTS_MAX);
    }
    rc = records_seal_link_target(in->m->node, src, rp->row.b_rid,
                                  rp->row.label, in->m->k->kind, p->s.rid,
                                  p->s.o.rec.id, &rp->box, &rp->box_len,
                                  in->st);
    rp->dek_id = src->dek_id;
    rp->dup_rid = in->dup_rid;
    dossier__store__v1__stored_record__free_unpacked(src, NULL);
    if (rc)
        return rc;
    p->n_rp++;
    return 0;
}

static int sp_seen(uint8_t (*v)[STORE_SP_BYTES], size_t n, const uint8_t *sp)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(v[i], sp, STORE_SP_BYTES) == 0)
            return 1;
    return 0;
}

/* Prepares the merge of @m into a packed Command *@out (*@len bytes). */
static int merge_prepare(struct merge_ctx *m, uint8_t **out, size_t *len,
                         struct dossier_status *st)
{
    const Dossier__V1__MergeRequest *req = m->req;
    const KindSchema *k = m->k;
    struct node *n = m->node;
    Command_t cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__MergeOp op = DOSSIER__STORE__V1__MERGE_OP__INIT;
    Dossier__Store__V1__MergeIds ids = DOSSIER__STORE__V1__MERGE_IDS__INIT;
    Dossier__Store__V1__MergeDuplicate dups[MERGE_DUPS_MAX],
        *dup_ptrs[MERGE_DUPS_MAX];
    Dossier__Store__V1__PutOp *survivor = NULL, **moved = NULL;
    Dossier__Store__V1__LinkRepoint *rps = NULL, **rp_ptrs = NULL;
    ProtobufCBinaryData *subjects = NULL;
    struct prep p;
    uint8_t rid[STORE_RID_BYTES];
    size_t n_moved = 0;
    const ProtobufCBinaryData *a;
    int rc;

    *out = NULL;
    memset(&p, 0, sizeof(p));
    crypt_record_pseudonym(n->crypt, k->kind, req->survivor_id,
                           strlen(req->survivor_id), rid);
    if ((rc = rec_open(m->call, k->kind, rid, "the survivor", &p.s, st)))
        goto out;
    for (size_t i = 0; i < req->n_duplicate_ids; i++) {
        char what[32];
        snprintf(what, sizeof(what), "duplicate %zu", i + 1);
        crypt_record_pseudonym(n->crypt, k->kind, req->duplicate_ids[i],
                               strlen(req->duplicate_ids[i]), rid);
        if ((rc = rec_open(m->call, k->kind, rid, what, &p.d[i], st)))
            goto out;
        p.n_d++;
    }
    /* Whose data it is: the survivor's subject takes the duplicates'. */
    a = rec_subject(&p.s);
    p.subjects = calloc(p.n_d, STORE_SP_BYTES);
    if (!p.subjects) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < p.n_d; i++) {
        const ProtobufCBinaryData *b = rec_subject(&p.d[i]);
        if (!b->len || (a->len && memcmp(a->data, b->data, a->len) == 0))
            continue;
        if (!a->len) {
            rc = err_set(st, DOSSIER_FAILED_PRECONDITION,
                         "duplicate %zu has a subject and the survivor has "
                         "none: its personal data would lose its subject "
                         "(merge into a record with a subject)",
                         i + 1);
            goto out;
        }
        if (!k->personal) {
            rc = err_set(st, DOSSIER_FAILED_PRECONDITION,
                         "duplicate %zu has another subject than the "
                         "survivor, and kind '%s' is not personal: merging "
                         "it would not make them one person (merge their "
                         "contacts)",
                         i + 1, k->kind);
            goto out;
        }
        if (!sp_seen(p.subjects, p.n_subjects, b->data))
            memcpy(p.subjects[p.n_subjects++], b->data, STORE_SP_BYTES);
    }
    if ((rc = seal_survivor(m, &p, &survivor, st)) ||
        (rc = seal_moved(m, &p, &moved, &n_moved, st)))
        goto out;
    for (size_t i = 0; i < p.n_d; i++) {
        uint8_t prefix[1 + STORE_KEY_MAX];
        struct incoming in = {m, &p, p.d[i].rid, st};
        size_t plen;
        prefix[0] = 'i';
        plen = 1 + store_record_key(prefix + 1, k->kind, p.d[i].rid);
        rc = store_scan(n->store, STORE_LINK, prefix, plen, NULL, 0,
                        incoming_cb, &in, st);
        if (rc == DOSSIER_NOMEM || rc == DOSSIER_CORRUPT)
            err_set(st, rc, rc == DOSSIER_NOMEM ? "out of memory"
                                                : "a link row is malformed");
        if (rc)
            goto out;
    }
    /* The duplicates' ids, for the list of pending merges. */
    ids.n_ids = req->n_duplicate_ids;
    ids.ids = req->duplicate_ids;
    {
        struct crypt_place place = {0};
        size_t ilen = dossier__store__v1__merge_ids__get_packed_size(&ids);
        uint8_t *plain = malloc(ilen ? ilen : 1);
        uint64_t dek_id;
        if (!plain) {
            rc = err_set(st, DOSSIER_NOMEM, "out of memory");
            goto out;
        }
        dossier__store__v1__merge_ids__pack(&ids, plain);
        place.domain = CRYPT_MERGE_IDS;
        place.kind = k->kind;
        place.rid = p.s.rid;
        place.rid_len = STORE_RID_BYTES;
        place.name = m->id;
        rc = records_seal_box(n, a->len ? a->data : NULL, place, plain, ilen,
                              &p.sealed_ids, &p.sealed_ids_len, &dek_id, st);
        sodium_memzero(plain, ilen);
        free(plain);
        if (rc == 0 && dek_id != survivor->dek_id)
            rc = err_set(st, DOSSIER_RETRY, "the subject's key changed");
        if (rc)
            goto out;
    }
    for (size_t i = 0; i < p.n_d; i++) {
        struct crypt_place place = {0};
        uint64_t dek_id;
        place.domain = CRYPT_RECORD_ID;
        place.kind = k->kind;
        place.rid = p.d[i].rid;
        place.rid_len = STORE_RID_BYTES;
        rc = records_seal_box(n, a->len ? a->data : NULL, place,
                              (const uint8_t *)p.d[i].o.rec.id,
                              strlen(p.d[i].o.rec.id), &p.dup_ids[i],
                              &p.dup_ids_len[i], &dek_id, st);
        if (rc)
            goto out;
    }
    rps = calloc(p.n_rp + 1, sizeof(*rps));
    rp_ptrs = calloc(p.n_rp + 1, sizeof(*rp_ptrs));
    subjects = calloc(p.n_subjects + 1, sizeof(*subjects));
    if (!rps || !rp_ptrs || !subjects) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < p.n_rp; i++) {
        struct repoint *r = &p.rp[i];
        dossier__store__v1__link_repoint__init(&rps[i]);
        rps[i].kind = r->row.b_kind;
        rps[i].rid = (ProtobufCBinaryData){STORE_RID_BYTES, r->row.b_rid};
        rps[i].label = r->row.label;
        rps[i].dup_rid = (ProtobufCBinaryData){STORE_RID_BYTES,
                                               (uint8_t *)r->dup_rid};
        rps[i].sealed_id = (ProtobufCBinaryData){r->box_len, r->box};
        rps[i].dek_id = r->dek_id;
        rp_ptrs[i] = &rps[i];
    }
    for (size_t i = 0; i < p.n_subjects; i++)
        subjects[i] = (ProtobufCBinaryData){STORE_SP_BYTES, p.subjects[i]};
    for (size_t i = 0; i < p.n_d; i++) {
        dossier__store__v1__merge_duplicate__init(&dups[i]);
        dups[i].rid = (ProtobufCBinaryData){STORE_RID_BYTES, p.d[i].rid};
        dups[i].expected_version = p.d[i].o.stored->version;
        dups[i].sealed_id = (ProtobufCBinaryData){p.dup_ids_len[i],
                                                  p.dup_ids[i]};
        dup_ptrs[i] = &dups[i];
    }
    op.id = m->id;
    op.survivor = survivor;
    op.n_duplicates = p.n_d;
    op.duplicates = dup_ptrs;
    op.n_moved = n_moved;
    op.moved = moved;
    op.n_repoints = p.n_rp;
    op.repoints = rp_ptrs;
    op.n_subjects = p.n_subjects;
    op.subjects = subjects;
    op.sealed_ids = (ProtobufCBinaryData){p.sealed_ids_len, p.sealed_ids};
    call_command_init(m->call, &cmd);
    cmd.reference = req->reference;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_MERGE;
    cmd.merge = &op;
    *len = dossier__store__v1__command__get_packed_size(&cmd);
    if (*len > MERGE_COMMAND_MAX) {
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "the merge would take %zu bytes to replicate, more "
                     "than %u: merge fewer records at a time",
                     *len, MERGE_COMMAND_MAX);
        goto out;
    }
    if (!(*out = malloc(*len))) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    dossier__store__v1__command__pack(&cmd, *out);
    m->moved = n_moved;
    m->repoints = p.n_rp;
    rc = 0;
out:
    free(moved);
    free(rps);
    free(rp_ptrs);
    free(subjects);
    prep_release(&p);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Merge */

static void merge_submit(struct merge_ctx *m);

static void merge_done(void *arg, const struct store_result *res)
{
    struct merge_ctx *m = arg;
    Dossier__V1__MergeInfo info = DOSSIER__V1__MERGE_INFO__INIT;

    if (res->status.code == DOSSIER_RETRY && m->attempts < MERGE_ATTEMPTS) {
        /* Something changed under the leader: look again. */
        merge_submit(m);
        return;
    }
    if (res->status.code) {
        call_fail_status(m->call, &res->status);
    } else {
        info.id = m->id;
        info.kind = (char *)m->k->kind;
        info.survivor_id = m->req->survivor_id;
        info.n_duplicate_ids = m->req->n_duplicate_ids;
        info.duplicate_ids = m->req->duplicate_ids;
        info.merged_ms = res->updated_at_ms;
        info.merged_by = (char *)call_principal(m->call);
        info.reference = m->req->reference;
        info.version = res->version;
        info.records_moved = m->moved;
        info.links_moved = m->repoints;
        info.state = "pending";
        call_reply(m->call, &info.base);
    }
    free(m);
}

static void merge_submit(struct merge_ctx *m)
{
    struct dossier_status st;
    uint8_t *cmd = NULL;
    size_t len;
    int rc;

    do {
        m->attempts++;
        rc = merge_prepare(m, &cmd, &len, &st);
    } while (rc == DOSSIER_RETRY && m->attempts < MERGE_ATTEMPTS);
    if (rc == 0 && call_submit(m->call, cmd, len, merge_done, m) != 0)
        rc = err_set(&st, DOSSIER_UNAVAILABLE, "the node is shutting down");
    if (rc) {
        free(cmd);
        call_fail_status(m->call, &st);
        free(m);
    }
}

/* Checks @req against kind @k. */
static int merge_check_request(struct call *c, const KindSchema *k,
                               const Dossier__V1__MergeRequest *req,
                               struct dossier_status *st)
{
    if (records_check_id(req->survivor_id, "survivor_id", st))
        return st->code;
    if (req->n_duplicate_ids == 0 || req->n_duplicate_ids > MERGE_DUPS_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "give 1 to %d duplicate ids", MERGE_DUPS_MAX);
    for (size_t i = 0; i < req->n_duplicate_ids; i++) {
        const char *id = req->duplicate_ids[i];
        if (records_check_id(id, "a duplicate id", st))
            return st->code;
        if (strcmp(id, req->survivor_id) == 0)
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "duplicate %zu is the survivor itself", i + 1);
        for (size_t j = 0; j < i; j++)
            if (strcmp(req->duplicate_ids[j], id) == 0)
                return err_set(st, DOSSIER_INVALID_ARGUMENT,
                               "duplicates %zu and %zu are the same record",
                               j + 1, i + 1);
    }
    if (req->prefer != DOSSIER__V1__MERGE_PREFER__MERGE_PREFER_SURVIVOR &&
        req->prefer != DOSSIER__V1__MERGE_PREFER__MERGE_PREFER_NEWEST)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "prefer is survivor or newest");
    if (req->n_choices > SCHEMA_FIELDS_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "too many choices");
    for (size_t i = 0; i < req->n_choices; i++) {
        const Dossier__V1__MergeFieldChoice *ch = req->choices[i];
        int known = strcmp(ch->id, req->survivor_id) == 0;
        if (!schema_field(k, ch->field))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "choice %zu: kind '%s' has no field '%.64s'",
                           i + 1, k->kind, ch->field);
        for (size_t j = 0; !known && j < req->n_duplicate_ids; j++)
            known = strcmp(ch->id, req->duplicate_ids[j]) == 0;
        if (!known)
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "choice of field '%s': the record is neither the "
                           "survivor nor a duplicate",
                           ch->field);
        for (size_t j = 0; j < i; j++)
            if (strcmp(req->choices[j]->field, ch->field) == 0)
                return err_set(st, DOSSIER_INVALID_ARGUMENT,
                               "field '%s' is chosen twice", ch->field);
    }
    (void)c;
    return 0;
}

void api_merges_merge(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__MergeRequest *req = (Dossier__V1__MergeRequest *)msg;
    struct node *n = call_node(c);
    struct dossier_status st;
    struct merge_ctx *m;
    const KindSchema *k;
    uint8_t rnd[8];

    if (records_kind(n, req->kind, &k, &st) ||
        merge_check_request(c, k, req, &st))
        return call_fail_status(c, &st);
    if (req->reference[0] && !api_label_ok(c, "reference", req->reference))
        return;
    if (!(m = calloc(1, sizeof(*m))))
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    m->call = c;
    m->node = n;
    m->req = req;
    m->k = k;
    /* From the call's request id when it has one: a retry of the call
     * names the same merge, which the store applies once. */
    call_request_derive(c, rnd, sizeof(rnd));
    memcpy(m->id, "MRG-", 4);
    sodium_bin2hex(m->id + 4, sizeof(m->id) - 4, rnd, sizeof(rnd));
    for (char *p = m->id + 4; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    if (call_request_id(c)) {
        /* A retry of a call whose merge was applied (the answer was lost
         * in a failover): its duplicates are gone, so it is answered
         * from the merge as it stands. */
        MergeSummary *mr;
        struct merge_info mi;
        if (store_merge_get(n->store, m->id, &mr, &st) == 0) {
            merge_info_of(c, mr, &mi, &st);
            call_reply(c, &mi.m.base);
            merge_info_release(&mi);
            dossier__store__v1__merge_summary__free_unpacked(mr, NULL);
            free(m);
            return;
        }
    }
    merge_submit(m);
}

/* ------------------------------------------------------------------ */
/* Undo and confirm */

struct settle_ctx {
    struct call *call;
    MergeSummary *mr;
    struct merge_info mi;
    const char *state;
};

static void settle_done(void *arg, const struct store_result *res)
{
    struct settle_ctx *x = arg;
    if (res->status.code) {
        call_fail_status(x->call, &res->status);
    } else {
        x->mi.m.state = (char *)x->state;
        x->mi.m.version = res->version;
        call_reply(x->call, &x->mi.m.base);
    }
    merge_info_release(&x->mi);
    dossier__store__v1__merge_summary__free_unpacked(x->mr, NULL);
    free(x);
}

/* Undoes (@undo) or confirms merge req->id. */
static void merge_settle(struct call *c, ProtobufCMessage *msg, int undo)
{
    Dossier__V1__MergeIdRequest *req = (Dossier__V1__MergeIdRequest *)msg;
    Command_t cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__MergeUndoOp uop = DOSSIER__STORE__V1__MERGE_UNDO_OP__INIT;
    Dossier__Store__V1__MergeConfirmOp cop =
        DOSSIER__STORE__V1__MERGE_CONFIRM_OP__INIT;
    struct node *n = call_node(c);
    struct dossier_status st;
    struct settle_ctx *x;
    uint8_t *buf;
    size_t len;

    if (req->reference[0] && !api_label_ok(c, "reference", req->reference))
        return;
    if (!(x = calloc(1, sizeof(*x))))
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    x->call = c;
    x->state = undo ? "undone" : "confirmed";
    if (store_merge_get(n->store, req->id, &x->mr, &st))
        goto fail;
    if (x->mr->subject.len == STORE_SP_BYTES &&
        api_subject_visible(c, x->mr->subject.data, &st) != 0)
        goto fail;
    if (merge_info_of(c, x->mr, &x->mi, &st))
        goto fail;
    if (undo) {
        uop.id = x->mr->id;
        uop.subject = x->mr->subject;
        uop.survivor = x->mr->survivor;
        cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_MERGE_UNDO;
        cmd.merge_undo = &uop;
    } else {
        cop.id = x->mr->id;
        cop.subject = x->mr->subject;
        cop.survivor = x->mr->survivor;
        cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_MERGE_CONFIRM;
        cmd.merge_confirm = &cop;
    }
    call_command_init(c, &cmd);
    cmd.reference = req->reference;
    len = dossier__store__v1__command__get_packed_size(&cmd);
    if (!(buf = malloc(len))) {
        err_set(&st, DOSSIER_NOMEM, "out of memory");
        goto fail;
    }
    dossier__store__v1__command__pack(&cmd, buf);
    if (call_submit(c, buf, len, settle_done, x) == 0)
        return;
    free(buf);
    err_set(&st, DOSSIER_UNAVAILABLE, "the node is shutting down");
fail:
    call_fail_status(c, &st);
    merge_info_release(&x->mi);
    if (x->mr)
        dossier__store__v1__merge_summary__free_unpacked(x->mr, NULL);
    free(x);
}

void api_merges_undo(struct call *c, ProtobufCMessage *msg)
{
    merge_settle(c, msg, 1);
}

void api_merges_confirm(struct call *c, ProtobufCMessage *msg)
{
    merge_settle(c, msg, 0);
}

/* ------------------------------------------------------------------ */
/* List: a page of summaries, never a MergeRecord with its before-images.
 * The page token is the last listed merge's revision (16 hex digits). */

void api_merges_list(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__ListMergesRequest *req = (Dossier__V1__ListMergesRequest *)msg;
    Dossier__V1__ListMergesResponse resp =
        DOSSIER__V1__LIST_MERGES_RESPONSE__INIT;
    MergeSummary **mr = NULL;
    struct merge_info *mi = NULL;
    Dossier__V1__MergeInfo **ptrs = NULL;
    uint8_t(*seen)[STORE_RID_BYTES] = NULL, tok[8];
    struct dossier_status st;
    size_t count = 0, n_seen = 0, bin = 0;
    uint64_t after = 0;
    char token[17] = "";
    int more;

    if (req->page_size > LIST_PAGE_MAX)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "page_size is at most %d", LIST_PAGE_MAX);
    if (req->page_token[0]) {
        if (strlen(req->page_token) != 16 ||
            sodium_hex2bin(tok, sizeof(tok), req->page_token, 16, NULL, &bin,
                           NULL) != 0 ||
            bin != sizeof(tok) || !(after = store_be_u64(tok)))
            return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                             "page_token is not one this listing issued");
    }
    if (store_merge_list(call_node(c)->store, after,
                         req->page_size ? req->page_size : LIST_PAGE_DEFAULT,
                         &mr, &count, &more, &st))
        return call_fail_status(c, &st);
    mi = calloc(count + 1, sizeof(*mi));
    ptrs = calloc(count + 1, sizeof(*ptrs));
    seen = calloc(count + 1, sizeof(*seen));
    if (!mi || !ptrs || !seen) {
        call_fail(c, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        if (mr[i]->subject.len == STORE_SP_BYTES &&
            api_subject_visible(c, mr[i]->subject.data, &st) != 0)
            continue; /* not for this purpose */
        if (merge_info_of(c, mr[i], &mi[resp.n_merges], &st)) {
            call_fail_status(c, &st);
            goto out;
        }
        if (mi[resp.n_merges].has_survivor &&
            mr[i]->subject.len == STORE_SP_BYTES)
            memcpy(seen[n_seen++], mr[i]->survivor.data, STORE_RID_BYTES);
        ptrs[resp.n_merges] = &mi[resp.n_merges].m;
        resp.n_merges++;
    }
    resp.merges = ptrs;
    if (more && count) {
        store_u64_be(tok, mr[count - 1]->revision);
        sodium_bin2hex(token, sizeof(token), tok, sizeof(tok));
    }
    resp.next_page_token = token;
    if (n_seen)
        call_audit_read(c, NULL, (const uint8_t *)seen, n_seen);
    call_reply(c, &resp.base);
out:
    for (size_t i = 0; mi && i < resp.n_merges; i++)
        merge_info_release(&mi[i]);
    free(mi);
    free(ptrs);
    free(seen);
    store_merges_free(mr, count);
}
