/* Duplicates: the duplicate rules of each kind (DuplicateRules, policy
 * family "d" + kind) and Records/FindDuplicates, which groups candidate
 * duplicates by those rules through the blind indexes alone.
 *
 * A rule is a set of indexed fields; two records match under it when each
 * of those fields holds the same normalised value in both, which is when
 * their index rows (kind 0x00 field 0x00 blind rid) carry the same blind
 * index. A rule of one field is a run of adjacent rows; a rule of several
 * joins the rows of its fields by record and sorts the tuples. A group is
 * every record connected by matches under any rule (union-find). Only
 * fields the call's purpose may see are compared (rules_of). Only the
 * records taking part in a match are read, to know whether the call's
 * purpose may see them (a record it may not see takes no part, so a group
 * never rests on one), and only the records of the groups returned are
 * opened, each as Get opens it. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api.h"
#include "errors.h"
#include "policy.h"
#include "records.h"
#include "store.h"

#define GROUPS_DEFAULT 100
#define GROUPS_MAX 1000
/* Records shown per group; a larger group shows its first ones. */
#define GROUP_RECORDS_MAX 100
#define RULES_MAX 16
#define RULE_FIELDS_MAX 4

/* ------------------------------------------------------------------ */
/* Rules */

struct dup_rule {
    char name[POLICY_NAME_MAX + 1];
    const char *fields[RULE_FIELDS_MAX]; /* borrowed from the kind */
    size_t n;
};

struct dup_rules {
    struct dup_rule r[RULES_MAX];
    size_t n;
    uint64_t version; /* 0: the default set */
};

/* Checks rule set @rs against kind @k. */
static int rules_check(const KindSchema *k,
                       const Dossier__V1__DuplicateRuleSet *rs,
                       struct dossier_status *st)
{
    if (rs->n_rules == 0 || rs->n_rules > RULES_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "give 1 to %d rules", RULES_MAX);
    for (size_t i = 0; i < rs->n_rules; i++) {
        const Dossier__V1__DuplicateRule *r = rs->rules[i];
        if (!policy_name_valid(r->name))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "rule %zu: a name is [a-z][a-z0-9_]*, at most %d "
                           "characters",
                           i + 1, POLICY_NAME_MAX);
        for (size_t j = 0; j < i; j++)
            if (strcmp(rs->rules[j]->name, r->name) == 0)
                return err_set(st, DOSSIER_INVALID_ARGUMENT,
                               "rule '%s' is given twice", r->name);
        if (r->n_fields == 0 || r->n_fields > RULE_FIELDS_MAX)
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "rule '%s': give 1 to %d fields", r->name,
                           RULE_FIELDS_MAX);
        for (size_t j = 0; j < r->n_fields; j++) {
            const FieldSchema *f = schema_field(k, r->fields[j]);
            if (!f || !f->indexed)
                return err_set(st, DOSSIER_INVALID_ARGUMENT,
                               "rule '%s': '%.64s' is not an indexed field "
                               "of kind '%s' (rules compare blind indexes)",
                               r->name, r->fields[j], k->kind);
            for (size_t l = 0; l < j; l++)
                if (strcmp(r->fields[l], r->fields[j]) == 0)
                    return err_set(st, DOSSIER_INVALID_ARGUMENT,
                                   "rule '%s': field '%s' is given twice",
                                   r->name, r->fields[j]);
        }
    }
    return 0;
}

/* The defined rule set of @kind into *@out (free with
 * dossier__v1__duplicate_rule_set__free_unpacked), or NULL when none is
 * defined. */
static int rules_stored(struct node *n, const char *kind,
                        Dossier__V1__DuplicateRuleSet **out,
                        struct dossier_status *st)
{
    uint8_t prefix[1 + SCHEMA_NAME_MAX];
    ProtobufCMessage **m;
    size_t len = strlen(kind), count;
    int rc;

    *out = NULL;
    prefix[0] = 'd';
    memcpy(prefix + 1, kind, len);
    rc = store_scan_messages(n->store, STORE_POLICY, prefix, 1 + len,
                             &dossier__v1__duplicate_rule_set__descriptor, &m,
                             &count, st);
    if (rc)
        return rc;
    for (size_t i = 0; i < count; i++)
        if (!*out &&
            strcmp(((Dossier__V1__DuplicateRuleSet *)m[i])->kind, kind) == 0) {
            *out = (Dossier__V1__DuplicateRuleSet *)m[i];
            m[i] = NULL;
        }
    store_messages_free(m, count);
    return 0;
}

/* 1 if a purpose seeing categories @cats may see field @f. */
static int field_visible(const FieldSchema *f, unsigned cats)
{
    return f->category >= 1 && f->category <= 6 &&
           (cats & (1u << f->category));
}

/* The rules of kind @k: defined, or each indexed field alone. With
 * @fields (@n_fields > 0), each of those fields alone instead. Only
 * fields of the categories @cats (a purpose's, or POLICY_ALL_CATEGORIES)
 * take part: a group tells that its records share a field's value, so
 * comparing a field the purpose may not see would reveal it. A field
 * named in @fields that it may not see is refused (PERMISSION_DENIED,
 * naming it, as reports and segments refuse one); a rule of the set
 * that uses one is left out, as is such an indexed field of the default
 * set. @purpose names the purpose in messages. */
static int rules_of(struct node *n, const KindSchema *k,
                    char *const *fields, size_t n_fields, unsigned cats,
                    const char *purpose, struct dup_rules *out,
                    struct dossier_status *st)
{
    Dossier__V1__DuplicateRuleSet *rs = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if (n_fields) {
        for (size_t i = 0; i < n_fields; i++) {
            const FieldSchema *f = schema_field(k, fields[i]);
            if (!f || !f->indexed)
                return err_set(st, DOSSIER_INVALID_ARGUMENT,
                               "field '%.64s' is not an indexed field of "
                               "kind '%s'",
                               fields[i], k->kind);
            if (!field_visible(f, cats))
                return err_set(st, DOSSIER_PERMISSION_DENIED,
                               "purpose '%s' may not see field '%s' of "
                               "kind '%s', so it may not compare it",
                               purpose, f->name, k->kind);
            if (out->n == RULES_MAX)
                return err_set(st, DOSSIER_INVALID_ARGUMENT,
                               "at most %d fields", RULES_MAX);
            snprintf(out->r[out->n].name, sizeof(out->r[0].name), "%s",
                     f->name);
            out->r[out->n].fields[0] = f->name;
            out->r[out->n++].n = 1;
        }
        return 0;
    }
    if ((rc = rules_stored(n, k->kind, &rs, st)))
        return rc;
    if (rs) {
        /* Checked when defined; fields are never removed nor unindexed,
         * so they still are indexed fields of the kind. */
        for (size_t i = 0; i < rs->n_rules && out->n < RULES_MAX; i++) {
            struct dup_rule *r = &out->r[out->n];
            int hidden = 0;
            memset(r, 0, sizeof(*r));
            snprintf(r->name, sizeof(r->name), "%s", rs->rules[i]->name);
            for (size_t j = 0;
                 j < rs->rules[i]->n_fields && r->n < RULE_FIELDS_MAX; j++) {
                const FieldSchema *f = schema_field(k, rs->rules[i]->fields[j]);
                if (f && f->indexed)
                    r->fields[r->n++] = f->name;
                hidden |= f && !field_visible(f, cats);
            }
            if (r->n && !hidden)
                out->n++;
        }
        out->version = rs->version;
        dossier__v1__duplicate_rule_set__free_unpacked(rs, NULL);
        return 0;
    }
    for (size_t i = 0; i < k->n_fields && out->n < RULES_MAX; i++)
        if (k->fields[i]->indexed && field_visible(k->fields[i], cats)) {
            snprintf(out->r[out->n].name, sizeof(out->r[0].name), "%s",
                     k->fields[i]->name);
            out->r[out->n].fields[0] = k->fields[i]->name;
            out->r[out->n++].n = 1;
        }
    return 0;
}

/* @r as a message into @m, pointing into @r and @ptrs / @fptrs. */
static void rules_to_pb(const char *kind, const struct dup_rules *r,
                        Dossier__V1__DuplicateRuleSet *m,
                        Dossier__V1__DuplicateRule *rules,
                        Dossier__V1__DuplicateRule **ptrs)
{
    dossier__v1__duplicate_rule_set__init(m);
    m->kind = (char *)kind;
    m->version = r->version;
    m->defined = r->version != 0;
    for (size_t i = 0; i < r->n; i++) {
        dossier__v1__duplicate_rule__init(&rules[i]);
        rules[i].name = (char *)r->r[i].name;
        rules[i].fields = (char **)r->r[i].fields;
        rules[i].n_fields = r->r[i].n;
        ptrs[i] = &rules[i];
    }
    m->rules = ptrs;
    m->n_rules = r->n;
}

static void rules_reply(struct call *c, const KindSchema *k)
{
    Dossier__V1__DuplicateRuleSet m;
    Dossier__V1__DuplicateRule rules[RULES_MAX], *ptrs[RULES_MAX];
    struct dup_rules r;
    struct dossier_status st;

    if (rules_of(call_node(c), k, NULL, 0, POLICY_ALL_CATEGORIES, "", &r,
                 &st))
        return call_fail_status(c, &st);
    rules_to_pb(k->kind, &r, &m, rules, ptrs);
    call_reply(c, &m.base);
}

struct rules_define_ctx {
    struct call *call;
    const KindSchema *kind;
};

static void rules_define_done(void *arg, const struct store_result *res)
{
    struct rules_define_ctx *d = arg;
    if (res->status.code)
        call_fail_status(d->call, &res->status);
    else
        rules_reply(d->call, d->kind);
    free(d);
}

void api_duplicate_rules_define(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__DefineDuplicateRulesRequest *req =
        (Dossier__V1__DefineDuplicateRulesRequest *)msg;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__DefineDuplicateRulesOp op =
        DOSSIER__STORE__V1__DEFINE_DUPLICATE_RULES_OP__INIT;
    const KindSchema *k;
    struct dossier_status st;
    struct rules_define_ctx *d;
    uint8_t *buf;
    size_t len;

    if (!req->rule_set)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT, "rule_set is missing");
    if (records_kind(call_node(c), req->rule_set->kind, &k, &st) ||
        rules_check(k, req->rule_set, &st))
        return call_fail_status(c, &st);
    req->rule_set->version = 0;
    req->rule_set->defined = 0;
    if (!(d = calloc(1, sizeof(*d))))
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    d->call = c;
    d->kind = k;
    op.rule_set = req->rule_set;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_DEFINE_DUPLICATE_RULES;
    cmd.define_duplicate_rules = &op;
    call_command_init(c, &cmd);
    len = dossier__store__v1__command__get_packed_size(&cmd);
    if (!(buf = malloc(len))) {
        free(d);
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    }
    dossier__store__v1__command__pack(&cmd, buf);
    if (call_submit(c, buf, len, rules_define_done, d) != 0) {
        free(d);
        call_fail(c, DOSSIER_UNAVAILABLE, "the node is shutting down");
    }
}

void api_duplicate_rules_get(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__GetDuplicateRulesRequest *req =
        (Dossier__V1__GetDuplicateRulesRequest *)msg;
    const KindSchema *k;
    struct dossier_status st;

    if (records_kind(call_node(c), req->kind, &k, &st))
        return call_fail_status(c, &st);
    rules_reply(c, k);
}

void api_duplicate_rules_list(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__ListDuplicateRulesResponse resp =
        DOSSIER__V1__LIST_DUPLICATE_RULES_RESPONSE__INIT;
    ProtobufCMessage **m;
    struct dossier_status st;
    size_t count;
    (void)msg;

    if (store_scan_messages(call_node(c)->store, STORE_POLICY,
                            (const uint8_t *)"d", 1,
                            &dossier__v1__duplicate_rule_set__descriptor, &m,
                            &count, &st))
        return call_fail_status(c, &st);
    resp.n_rule_sets = count;
    resp.rule_sets = (Dossier__V1__DuplicateRuleSet **)m;
    call_reply(c, &resp.base);
    store_messages_free(m, count);
}

/* ------------------------------------------------------------------ */
/* Matching */

typedef uint8_t rid_t[STORE_RID_BYTES];

/* A growing array of record pseudonyms. */
struct rids {
    rid_t *v;
    size_t n, cap;
};

static int rids_push(struct rids *a, const uint8_t *rid)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        rid_t *v = realloc(a->v, cap * sizeof(*v));
        if (!v)
            return DOSSIER_NOMEM;
        a->v = v;
        a->cap = cap;
    }
    memcpy(a->v[a->n++], rid, STORE_RID_BYTES);
    return 0;
}

/* A match: the records of run [start, start + n) of the members array
 * share the values of rule @rule. */
struct match {
    size_t start, n;
    unsigned rule;
};

struct matches {
    struct rids members;
    struct match *m;
    size_t n, cap;
};

static int match_add(struct matches *ms, unsigned rule, size_t start)
{
    if (ms->members.n - start < 2) {
        ms->members.n = start; /* one record matches nothing */
        return 0;
    }
    if (ms->n == ms->cap) {
        size_t cap = ms->cap ? 2 * ms->cap : 32;
        struct match *m = realloc(ms->m, cap * sizeof(*m));
        if (!m)
            return DOSSIER_NOMEM;
        ms->m = m;
        ms->cap = cap;
    }
    ms->m[ms->n++] = (struct match){start, ms->members.n - start, rule};
    return 0;
}

/* One index row: a record and its field's blind index. */
struct row {
    uint8_t rid[STORE_RID_BYTES];
    uint8_t blind[STORE_BLIND_BYTES];
};

struct rows {
    struct row *v;
    size_t n, cap;
};

/* Collects the rows of one field: kind 0x00 field 0x00 blind rid. */
static int rows_cb(void *arg, const uint8_t *key, size_t klen,
                   const uint8_t *val, size_t vlen)
{
    struct rows *r = arg;
    (void)val;
    (void)vlen;
    if (klen < STORE_BLIND_BYTES + STORE_RID_BYTES)
        return DOSSIER_CORRUPT;
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 256;
        struct row *v = realloc(r->v, cap * sizeof(*v));
        if (!v)
            return DOSSIER_NOMEM;
        r->v = v;
        r->cap = cap;
    }
    memcpy(r->v[r->n].blind, key + klen - STORE_RID_BYTES - STORE_BLIND_BYTES,
           STORE_BLIND_BYTES);
    memcpy(r->v[r->n].rid, key + klen - STORE_RID_BYTES, STORE_RID_BYTES);
    r->n++;
    return 0;
}

static int row_by_rid(const void *a, const void *b)
{
    return memcmp(((const struct row *)a)->rid, ((const struct row *)b)->rid,
                  STORE_RID_BYTES);
}

/* A record's values under a rule of several fields. */
struct tuple {
    uint8_t blinds[RULE_FIELDS_MAX * STORE_BLIND_BYTES];
    uint8_t rid[STORE_RID_BYTES];
};

/* Bytes of blinds tuple_cmp compares: set before each sort. */
static __thread size_t sort_len;

static int tuple_cmp(const void *a, const void *b)
{
    int c = memcmp(((const struct tuple *)a)->blinds,
                   ((const struct tuple *)b)->blinds, sort_len);
    return c ? c
             : memcmp(((const struct tuple *)a)->rid,
                      ((const struct tuple *)b)->rid, STORE_RID_BYTES);
}

/* Reads the rows of field @field of @kind into @out. */
static int field_rows(struct store *s, const char *kind, const char *field,
                      struct rows *out, struct dossier_status *st)
{
    uint8_t prefix[2 * (SCHEMA_NAME_MAX + 1)];
    size_t kl = strlen(kind), fl = strlen(field);
    int rc;

    memcpy(prefix, kind, kl + 1);
    memcpy(prefix + kl + 1, field, fl + 1);
    memset(out, 0, sizeof(*out));
    rc = store_scan(s, STORE_INDEX, prefix, kl + fl + 2, NULL, 0, rows_cb,
                    out, st);
    if (rc == DOSSIER_CORRUPT)
        err_set(st, rc, "an index row is malformed");
    else if (rc == DOSSIER_NOMEM)
        err_set(st, rc, "out of memory");
    return rc;
}

/* The matches under rule @ri (@r) of kind @kind into @ms. */
static int rule_matches(struct store *s, const char *kind,
                        const struct dup_rule *r, unsigned ri,
                        struct matches *ms, struct dossier_status *st)
{
    struct rows rows[RULE_FIELDS_MAX] = {{0}};
    struct tuple *t = NULL;
    size_t nt = 0, at[RULE_FIELDS_MAX] = {0};
    int rc = 0;

    for (size_t j = 0; rc == 0 && j < r->n; j++)
        rc = field_rows(s, kind, r->fields[j], &rows[j], st);
    if (rc)
        goto out;
    if (r->n == 1) {
        /* Rows come by blind index: a match is a run. */
        for (size_t i = 0; rc == 0 && i < rows[0].n;) {
            size_t start = ms->members.n, j = i;
            for (; rc == 0 && j < rows[0].n &&
                   memcmp(rows[0].v[j].blind, rows[0].v[i].blind,
                          STORE_BLIND_BYTES) == 0;
                 j++)
                rc = rids_push(&ms->members, rows[0].v[j].rid);
            if (rc == 0)
                rc = match_add(ms, ri, start);
            i = j;
        }
        goto out;
    }
    /* Several fields: join the rows by record (a record has one row per
     * field it holds), then sort the tuples of values. */
    for (size_t j = 0; j < r->n; j++)
        if (rows[j].n)
            qsort(rows[j].v, rows[j].n, sizeof(struct row), row_by_rid);
    if (!(t = malloc((rows[0].n ? rows[0].n : 1) * sizeof(*t)))) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < rows[0].n; i++) {
        const uint8_t *rid = rows[0].v[i].rid;
        size_t j;
        memcpy(t[nt].blinds, rows[0].v[i].blind, STORE_BLIND_BYTES);
        for (j = 1; j < r->n; j++) {
            while (at[j] < rows[j].n &&
                   memcmp(rows[j].v[at[j]].rid, rid, STORE_RID_BYTES) < 0)
                at[j]++;
            if (at[j] == rows[j].n ||
                memcmp(rows[j].v[at[j]].rid, rid, STORE_RID_BYTES) != 0)
                break; /* the record lacks this field */
            memcpy(t[nt].blinds + j * STORE_BLIND_BYTES,
                   rows[j].v[at[j]].blind, STORE_BLIND_BYTES);
        }
        if (j == r->n)
            memcpy(t[nt++].rid, rid, STORE_RID_BYTES);
    }
    sort_len = r->n * STORE_BLIND_BYTES;
    if (nt)
        qsort(t, nt, sizeof(*t), tuple_cmp);
    for (size_t i = 0; rc == 0 && i < nt;) {
        size_t start = ms->members.n, j = i;
        for (; rc == 0 && j < nt &&
               memcmp(t[j].blinds, t[i].blinds, sort_len) == 0;
             j++)
            rc = rids_push(&ms->members, t[j].rid);
        if (rc == 0)
            rc = match_add(ms, ri, start);
        i = j;
    }
    if (rc)
        err_set(st, rc, "out of memory");
out:
    free(t);
    for (size_t j = 0; j < RULE_FIELDS_MAX; j++)
        free(rows[j].v);
    return rc;
}

/* The distinct records of the matches, sorted, each with its union-find
 * parent, the rules of its component and whether the purpose may see it. */
struct node_set {
    rid_t *rid;
    size_t *parent;
    uint32_t *rules;
    uint8_t *visible;
    size_t n;
};

static int rid_cmp(const void *a, const void *b)
{
    return memcmp(a, b, STORE_RID_BYTES);
}

static size_t node_find(const struct node_set *ns, const uint8_t *rid)
{
    size_t lo = 0, hi = ns->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = memcmp(ns->rid[mid], rid, STORE_RID_BYTES);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (size_t)-1; /* every member was added */
}

static size_t uf_root(size_t *parent, size_t i)
{
    while (parent[i] != i) {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    return i;
}

/* Whether @c may see record (@kind, @rid): 1, 0, or -1 with @st set. */
static int record_visible(struct call *c, const char *kind,
                          const uint8_t *rid, struct dossier_status *st)
{
    StoredRecord *sr;
    int rc = store_record_get(call_node(c)->store, kind, rid, &sr, st);
    if (rc == DOSSIER_NOT_FOUND)
        return 0; /* deleted since the index was read */
    if (rc)
        return -1;
    if (sr->subject.len == STORE_SP_BYTES)
        rc = api_subject_visible(c, sr->subject.data, st);
    dossier__store__v1__stored_record__free_unpacked(sr, NULL);
    if (rc == DOSSIER_PERMISSION_DENIED)
        return 0;
    return rc ? -1 : 1;
}

/* A group found: its members' slots, the smallest pseudonym first. */
struct dup_group {
    size_t *members;
    size_t n;
    uint32_t rules;
};

/* Everything a call holds; released by dup_release(). */
struct dup_work {
    struct matches ms;
    struct node_set ns;
    struct dup_group *groups;
    size_t n_groups;
    size_t *slots;
};

static void dup_release(struct dup_work *w)
{
    free(w->ms.members.v);
    free(w->ms.m);
    free(w->ns.rid);
    free(w->ns.parent);
    free(w->ns.rules);
    free(w->ns.visible);
    free(w->groups);
    free(w->slots);
}

/* Finds the groups of @kind under @rules as @c may see them into @w,
 * sorted by their first record. */
static int dup_find(struct call *c, const KindSchema *k,
                    const struct dup_rules *rules, struct dup_work *w,
                    struct dossier_status *st)
{
    struct node_set *ns = &w->ns;
    size_t *count, *gidx;
    int rc = 0;

    for (unsigned i = 0; rc == 0 && i < rules->n; i++)
        rc = rule_matches(call_node(c)->store, k->kind, &rules->r[i], i,
                          &w->ms, st);
    if (rc)
        return rc;
    /* The distinct records taking part. */
    ns->rid = malloc((w->ms.members.n ? w->ms.members.n : 1) * sizeof(rid_t));
    if (!ns->rid)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    if (w->ms.members.n) {
        memcpy(ns->rid, w->ms.members.v, w->ms.members.n * sizeof(rid_t));
        qsort(ns->rid, w->ms.members.n, sizeof(rid_t), rid_cmp);
    }
    for (size_t i = 0; i < w->ms.members.n; i++)
        if (ns->n == 0 ||
            memcmp(ns->rid[ns->n - 1], ns->rid[i], STORE_RID_BYTES) != 0)
            memmove(ns->rid[ns->n++], ns->rid[i], STORE_RID_BYTES);
    ns->parent = malloc((ns->n ? ns->n : 1) * sizeof(*ns->parent));
    ns->rules = calloc(ns->n ? ns->n : 1, sizeof(*ns->rules));
    ns->visible = calloc(ns->n ? ns->n : 1, 1);
    w->slots = malloc((ns->n ? ns->n : 1) * sizeof(*w->slots));
    w->groups = calloc(ns->n ? ns->n : 1, sizeof(*w->groups));
    if (!ns->parent || !ns->rules || !ns->visible || !w->slots || !w->groups)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    for (size_t i = 0; i < ns->n; i++) {
        int v = record_visible(c, k->kind, ns->rid[i], st);
        if (v < 0)
            return st->code;
        ns->visible[i] = (uint8_t)v;
        ns->parent[i] = i;
    }
    /* Union of the visible members of each match, then the rules of each
     * component. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t m = 0; m < w->ms.n; m++) {
            const struct match *mt = &w->ms.m[m];
            size_t first = (size_t)-1, seen = 0;
            for (size_t j = 0; j < mt->n; j++) {
                size_t i = node_find(ns, w->ms.members.v[mt->start + j]);
                if (!ns->visible[i])
                    continue;
                seen++;
                if (first == (size_t)-1)
                    first = i;
                else if (pass == 0)
                    ns->parent[uf_root(ns->parent, i)] =
                        uf_root(ns->parent, first);
            }
            if (pass == 1 && seen >= 2)
                ns->rules[uf_root(ns->parent, first)] |= 1u << mt->rule;
        }
    /* Components of two visible records or more, in the order of their
     * smallest record (the records are sorted: the first seen of each). */
    count = calloc(ns->n ? ns->n : 1, sizeof(*count));
    gidx = malloc((ns->n ? ns->n : 1) * sizeof(*gidx));
    if (!count || !gidx) {
        free(count);
        free(gidx);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < ns->n; i++) {
        gidx[i] = (size_t)-1;
        if (ns->visible[i])
            count[uf_root(ns->parent, i)]++;
    }
    for (size_t i = 0, at = 0; i < ns->n; i++) {
        size_t r = uf_root(ns->parent, i);
        struct dup_group *g;
        if (!ns->visible[i] || count[r] < 2)
            continue;
        if (gidx[r] == (size_t)-1) {
            gidx[r] = w->n_groups++;
            g = &w->groups[gidx[r]];
            g->members = w->slots + at;
            g->rules = ns->rules[r];
            at += count[r];
        }
        g = &w->groups[gidx[r]];
        g->members[g->n++] = i;
    }
    free(count);
    free(gidx);
    return 0;
}

/* Opens the members of group @g that @c may see into @o (counted in *@n),
 * at most GROUP_RECORDS_MAX; adds the personal ones to @seen. On failure
 * the records it opened are released (wiped) and *@n is 0. */
static int group_open(struct call *c, const KindSchema *k,
                      const struct node_set *ns, const struct dup_group *g,
                      struct records_opened *o, size_t *n,
                      uint8_t (*seen)[STORE_RID_BYTES], size_t *n_seen,
                      struct dossier_status *st)
{
    struct node *nd = call_node(c);
    size_t seen0 = *n_seen;
    int rc = 0;
    *n = 0;
    for (size_t i = 0; i < g->n && *n < GROUP_RECORDS_MAX; i++) {
        const uint8_t *rid = ns->rid[g->members[i]];
        StoredRecord *sr;
        int personal;
        rc = store_record_get(nd->store, k->kind, rid, &sr, st);
        if (rc == DOSSIER_NOT_FOUND) {
            rc = 0;
            continue; /* deleted meanwhile */
        }
        if (rc)
            break;
        personal = sr->subject.len == STORE_SP_BYTES;
        if (personal) {
            rc = api_subject_visible(c, sr->subject.data, st);
            if (rc) {
                dossier__store__v1__stored_record__free_unpacked(sr, NULL);
                if (rc != DOSSIER_PERMISSION_DENIED)
                    break;
                rc = 0;
                continue;
            }
        }
        /* records_open takes @sr, also when it fails. */
        rc = records_open(nd, sr, rid, api_visible_categories(c), &o[*n], st);
        if (rc == DOSSIER_NOT_FOUND) {
            rc = 0;
            continue; /* deleted while its links were read */
        }
        if (rc)
            break;
        if (personal)
            memcpy(seen[(*n_seen)++], rid, STORE_RID_BYTES);
        (*n)++;
    }
    if (rc) {
        for (size_t j = 0; j < *n; j++)
            records_opened_release(&o[j]);
        *n = 0;
        *n_seen = seen0;
    }
    return rc;
}

void api_records_find_duplicates(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__FindDuplicatesRequest *req =
        (Dossier__V1__FindDuplicatesRequest *)msg;
    Dossier__V1__DuplicateReport resp = DOSSIER__V1__DUPLICATE_REPORT__INIT;
    struct node *n = call_node(c);
    struct dossier_status st;
    struct dup_rules rules;
    struct dup_work w;
    const KindSchema *k;
    uint8_t after[STORE_RID_BYTES];
    size_t tlen = strlen(req->page_token), want, first = 0, end, total = 0;
    size_t opened = 0, n_seen = 0;
    char token[2 * STORE_RID_BYTES + 1] = "";
    Dossier__V1__DuplicateGroup *groups = NULL, **gptrs = NULL;
    Dossier__V1__Record **recs = NULL;
    struct records_opened *o = NULL;
    uint8_t(*seen)[STORE_RID_BYTES] = NULL;
    char *(*names)[RULES_MAX] = NULL;

    memset(&w, 0, sizeof(w));
    if (records_kind(n, req->kind, &k, &st) ||
        rules_of(n, k, req->fields, req->n_fields,
                 api_visible_categories(c), call_purpose(c), &rules, &st))
        return call_fail_status(c, &st);
    if (req->page_size > GROUPS_MAX)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "page_size is at most %d groups", GROUPS_MAX);
    want = req->page_size ? req->page_size : GROUPS_DEFAULT;
    /* A token is the first record of the last group sent, in hex: groups
     * come in the order of their first records. */
    if (tlen) {
        size_t bin = 0;
        if (tlen != 2 * STORE_RID_BYTES ||
            sodium_hex2bin(after, sizeof(after), req->page_token, tlen, NULL,
                           &bin, NULL) != 0 ||
            bin != STORE_RID_BYTES)
            return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                             "page_token is not one this listing issued");
    }
    if (dup_find(c, k, &rules, &w, &st)) {
        call_fail_status(c, &st);
        goto out;
    }
    while (tlen && first < w.n_groups &&
           memcmp(w.ns.rid[w.groups[first].members[0]], after,
                  STORE_RID_BYTES) <= 0)
        first++;
    end = first + want < w.n_groups ? first + want : w.n_groups;
    for (size_t i = first; i < end; i++)
        total += w.groups[i].n < GROUP_RECORDS_MAX ? w.groups[i].n
                                                   : GROUP_RECORDS_MAX;
    groups = calloc(end - first + 1, sizeof(*groups));
    gptrs = calloc(end - first + 1, sizeof(*gptrs));
    names = calloc(end - first + 1, sizeof(*names));
    recs = calloc(total + 1, sizeof(*recs));
    o = calloc(total + 1, sizeof(*o));
    seen = calloc(total + 1, sizeof(*seen));
    if (!groups || !gptrs || !names || !recs || !o || !seen) {
        call_fail(c, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = first; i < end; i++) {
        Dossier__V1__DuplicateGroup *g = &groups[resp.n_groups];
        size_t got, seen0 = n_seen;
        if (group_open(c, k, &w.ns, &w.groups[i], o + opened, &got, seen,
                       &n_seen, &st)) {
            call_fail_status(c, &st);
            goto out;
        }
        if (got < 2) { /* changed meanwhile: no longer a group */
            for (size_t j = 0; j < got; j++)
                records_opened_release(&o[opened + j]);
            n_seen = seen0; /* nothing of it is shown */
            continue;
        }
        dossier__v1__duplicate_group__init(g);
        g->records = recs + opened;
        g->n_records = got;
        for (size_t j = 0; j < got; j++)
            recs[opened + j] = &o[opened + j].rec;
        g->rules = names[resp.n_groups];
        for (unsigned r = 0; r < rules.n; r++)
            if (w.groups[i].rules & (1u << r)) {
                if (!g->n_rules)
                    g->field = (char *)rules.r[r].fields[0];
                g->rules[g->n_rules++] = rules.r[r].name;
            }
        if (!g->field)
            g->field = (char *)"";
        gptrs[resp.n_groups++] = g;
        opened += got;
    }
    if (end < w.n_groups && end > 0)
        sodium_bin2hex(token, sizeof(token),
                       w.ns.rid[w.groups[end - 1].members[0]],
                       STORE_RID_BYTES);
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
    free(names);
    free(seen);
    dup_release(&w);
}
