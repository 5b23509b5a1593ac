/* Duplicates: the duplicate rules of each kind (DuplicateRules, policy
 * family "d" + kind) and Records/FindDuplicates, which groups candidate
 * duplicates by those rules through the blind indexes alone.
 *
 * A rule is a set of indexed fields; two records match under it when each
 * of those fields holds the same normalised value in both, which is when
 * their index rows (kind 0x00 field 0x00 blind rid) carry the same blind
 * index. A group is every record connected by matches under any rule.
 * Only fields the call's purpose may see are compared (rules_of), and a
 * record it may not see takes no part, so a group never rests on one.
 * Groups are found by a walk over the index a page at a time, reading a
 * bounded part of it per call (see "Matching" below); only the records of
 * the groups sent are opened, each as Get opens it. */
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
/* Matching: a walk over the index, a page at a time
 *
 * A position is a rule and a tuple of blind indexes, one per field of the
 * rule; the records holding that tuple are a match when they are two or
 * more. The walk takes the rules in order, and each rule's positions in
 * the order of its first field's index rows (kind 0x00 field 0x00 blind
 * rid): records sharing that field's value are a run of rows, and the
 * values of the rule's other fields are read from the records. From each
 * match it meets, the walk grows a group: the records of the match, then
 * those of every match one of them takes part in under any rule, and so
 * on. A group that meets a match at an earlier position is left to that
 * position, so each group is sent once, at the first of its positions.
 * A page ends after its groups, after about VISIT_MAX reads, or once its
 * records hold REPLY_BYTES_MAX bytes; its token is the last position it
 * finished. The index is read in slices and records one at a time, so
 * the store's swap lock is never held long, and never while a record is
 * opened. */

/* Index rows and records a page reads before it answers with a token
 * (it finishes the run or group it is in). */
#define VISIT_MAX 20000
/* Records of one value (one run of index rows) looked at: a value shared
 * by more records matches its first RUN_MAX, by pseudonym. */
#define RUN_MAX 1000
/* Index rows read at a time. */
#define SLICE (RUN_MAX + 24)
/* A group grows to at most GROW_MAX records, GROW_READS_MAX reads; one
 * that would grow further is sent as grown so far. */
#define GROW_MAX 1000
#define GROW_READS_MAX 20000
/* A page's records stop at this many bytes (a group shows two at least). */
#define REPLY_BYTES_MAX (2u << 20)
#define FIELDS_MAX (RULES_MAX * RULE_FIELDS_MAX)
#define TUPLE_MAX (RULE_FIELDS_MAX * STORE_BLIND_BYTES)
/* Bytes of a token that tie it to the rules it was made under. */
#define TOKEN_CHECK 4
/* Results of the walk's steps beside 0 and the error codes (all > 0). */
#define WALK_FULL (-1)       /* the page is full */
#define GROWN_ELSEWHERE (-2) /* the group has a match at an earlier place */

/* A record as the walk knows it: whether the call's purpose may see it
 * (one deleted meanwhile is not seen), and its blind indexes of the
 * fields the rules use, read from its own index keys. */
struct rec {
    uint8_t rid[STORE_RID_BYTES];
    int visible;
    uint64_t has;     /* bit f: it holds field f (dup_walk.fname) */
    uint8_t *blinds;  /* STORE_BLIND_BYTES per field of dup_walk.fname */
    uint32_t growth;  /* the group it was last added to (dup_walk.growth) */
    uint32_t looked;  /* rules its matches were looked up under, then */
};

/* One index row: a record and its field's blind index. */
struct row {
    uint8_t blind[STORE_BLIND_BYTES];
    uint8_t rid[STORE_RID_BYTES];
};

/* A record of a run with its tuple under the run's rule. */
struct cand {
    struct rec *r;
    uint8_t tuple[TUPLE_MAX];
};

struct walk_pos {
    unsigned rule;
    uint8_t tuple[TUPLE_MAX];
};

struct dup_walk;
/* Called with each group grown (dup_walk.members): 0 to go on,
 * WALK_FULL when the page is full after it, or an error code with @st
 * set. */
typedef int (*dup_emit_fn)(struct dup_walk *w, void *arg,
                           struct dossier_status *st);

/* What a page's walk holds; released by walk_release(). */
struct dup_walk {
    struct call *c;
    struct store *s;
    const KindSchema *k;
    const struct dup_rules *rules;
    const char *fname[FIELDS_MAX]; /* the fields the rules use */
    size_t n_fields;
    unsigned fi[RULES_MAX][RULE_FIELDS_MAX]; /* each rule's, numbered */
    struct rec **tab; /* records read, by pseudonym (open addressing) */
    size_t cap, n;
    size_t visits;
    uint32_t growth;
    struct rec **members; /* the group grown last */
    size_t n_members, cap_members;
    uint32_t group_rules;
    int truncated;
    struct row *slice, *looked_up; /* rows of the walk, of a lookup */
    struct cand *run, *found;      /* a run's records, a lookup's */
};

static void walk_release(struct dup_walk *w)
{
    for (size_t i = 0; w->tab && i < w->cap; i++)
        if (w->tab[i]) {
            free(w->tab[i]->blinds);
            free(w->tab[i]);
        }
    free(w->tab);
    free(w->members);
    free(w->slice);
    free(w->looked_up);
    free(w->run);
    free(w->found);
}

/* Numbers the fields of @rules into @w. */
static int walk_init(struct dup_walk *w, struct call *c, const KindSchema *k,
                     const struct dup_rules *rules, struct dossier_status *st)
{
    memset(w, 0, sizeof(*w));
    w->c = c;
    w->s = call_node(c)->store;
    w->k = k;
    w->rules = rules;
    for (size_t r = 0; r < rules->n; r++)
        for (size_t j = 0; j < rules->r[r].n; j++) {
            size_t f = 0;
            while (f < w->n_fields &&
                   strcmp(w->fname[f], rules->r[r].fields[j]) != 0)
                f++;
            if (f == w->n_fields)
                w->fname[w->n_fields++] = rules->r[r].fields[j];
            w->fi[r][j] = (unsigned)f;
        }
    w->cap = 1024;
    w->tab = calloc(w->cap, sizeof(*w->tab));
    w->slice = malloc(SLICE * sizeof(*w->slice));
    w->looked_up = malloc(SLICE * sizeof(*w->looked_up));
    w->run = malloc(RUN_MAX * sizeof(*w->run));
    w->found = malloc(RUN_MAX * sizeof(*w->found));
    if (!w->tab || !w->slice || !w->looked_up || !w->run || !w->found)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    return 0;
}

/* Pseudonyms are keyed hashes: their first bytes spread well. */
static size_t rid_slot(const uint8_t *rid, size_t cap)
{
    uint64_t h;
    memcpy(&h, rid, sizeof(h));
    return (size_t)h & (cap - 1);
}

static int tab_grow(struct dup_walk *w)
{
    size_t cap = 2 * w->cap;
    struct rec **tab = calloc(cap, sizeof(*tab));
    if (!tab)
        return DOSSIER_NOMEM;
    for (size_t i = 0; i < w->cap; i++)
        if (w->tab[i]) {
            size_t h = rid_slot(w->tab[i]->rid, cap);
            while (tab[h])
                h = (h + 1) & (cap - 1);
            tab[h] = w->tab[i];
        }
    free(w->tab);
    w->tab = tab;
    w->cap = cap;
    return 0;
}

/* The blind indexes of @sr's fields the rules use, from its index keys
 * (kind 0x00 field 0x00 blind rid), into @r. */
static int rec_blinds(struct dup_walk *w, struct rec *r, const StoredRecord *sr)
{
    size_t kl = strlen(w->k->kind), tail = STORE_BLIND_BYTES + STORE_RID_BYTES;
    for (size_t i = 0; i < sr->n_index_keys; i++) {
        const uint8_t *d = sr->index_keys[i].data;
        size_t l = sr->index_keys[i].len, fl;
        if (l < kl + 3 + tail || memcmp(d, w->k->kind, kl + 1) != 0 ||
            d[l - tail - 1] != 0)
            continue;
        fl = l - tail - kl - 2;
        for (size_t f = 0; f < w->n_fields; f++)
            if (strlen(w->fname[f]) == fl &&
                memcmp(w->fname[f], d + kl + 1, fl) == 0) {
                if (!r->blinds &&
                    !(r->blinds = malloc(w->n_fields * STORE_BLIND_BYTES)))
                    return DOSSIER_NOMEM;
                memcpy(r->blinds + f * STORE_BLIND_BYTES, d + l - tail,
                       STORE_BLIND_BYTES);
                r->has |= UINT64_C(1) << f;
            }
    }
    return 0;
}

/* Record @rid as the walk knows it into *@out (stays valid until the
 * walk is released), read once. */
static int rec_get(struct dup_walk *w, const uint8_t *rid, struct rec **out,
                   struct dossier_status *st)
{
    size_t h = rid_slot(rid, w->cap);
    StoredRecord *sr;
    struct rec *r;
    int rc;

    for (; w->tab[h]; h = (h + 1) & (w->cap - 1))
        if (memcmp(w->tab[h]->rid, rid, STORE_RID_BYTES) == 0) {
            *out = w->tab[h];
            return 0;
        }
    if (!(r = calloc(1, sizeof(*r))))
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    memcpy(r->rid, rid, STORE_RID_BYTES);
    w->visits++;
    rc = store_record_get(w->s, w->k->kind, rid, &sr, st);
    if (rc == 0) {
        r->visible = 1;
        if (sr->subject.len == STORE_SP_BYTES) {
            rc = api_subject_visible(w->c, sr->subject.data, st);
            if (rc == DOSSIER_PERMISSION_DENIED) {
                r->visible = 0; /* takes no part */
                rc = 0;
            }
        }
        if (rc == 0 && r->visible && rec_blinds(w, r, sr))
            rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        dossier__store__v1__stored_record__free_unpacked(sr, NULL);
    } else if (rc == DOSSIER_NOT_FOUND) {
        rc = 0; /* deleted since its index row was read */
    }
    if (rc == 0 && 2 * (w->n + 1) > w->cap && tab_grow(w))
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    if (rc) {
        free(r->blinds);
        free(r);
        return rc;
    }
    for (h = rid_slot(rid, w->cap); w->tab[h]; h = (h + 1) & (w->cap - 1))
        ;
    w->tab[h] = r;
    w->n++;
    *out = r;
    return 0;
}

/* @r's tuple under rule @ri into @t: 1, or 0 when it lacks a field. */
static int rec_tuple(const struct dup_walk *w, const struct rec *r,
                     unsigned ri, uint8_t *t)
{
    const struct dup_rule *rule = &w->rules->r[ri];
    for (size_t j = 0; j < rule->n; j++) {
        unsigned f = w->fi[ri][j];
        if (!(r->has & (UINT64_C(1) << f)))
            return 0;
        memcpy(t + j * STORE_BLIND_BYTES, r->blinds + f * STORE_BLIND_BYTES,
               STORE_BLIND_BYTES);
    }
    return 1;
}

static size_t tuple_len(const struct dup_walk *w, unsigned ri)
{
    return w->rules->r[ri].n * STORE_BLIND_BYTES;
}

/* -1, 0 or 1 as position (@ra, @ta) comes before, at or after (@rb, @tb). */
static int pos_cmp(const struct dup_walk *w, unsigned ra, const uint8_t *ta,
                   unsigned rb, const uint8_t *tb)
{
    if (ra != rb)
        return ra < rb ? -1 : 1;
    return memcmp(ta, tb, tuple_len(w, ra));
}

struct rows_read {
    struct row *v;
    size_t n, max, plen;
    int more;
};

static int rows_cb(void *arg, const uint8_t *key, size_t klen,
                   const uint8_t *val, size_t vlen)
{
    struct rows_read *rr = arg;
    (void)val;
    (void)vlen;
    if (rr->n == rr->max) {
        rr->more = 1;
        return 1;
    }
    if (klen != rr->plen + STORE_BLIND_BYTES + STORE_RID_BYTES)
        return DOSSIER_CORRUPT;
    memcpy(rr->v[rr->n].blind, key + klen - STORE_RID_BYTES - STORE_BLIND_BYTES,
           STORE_BLIND_BYTES);
    memcpy(rr->v[rr->n].rid, key + klen - STORE_RID_BYTES, STORE_RID_BYTES);
    rr->n++;
    return 0;
}

/* kind 0x00 field 0x00 into @key: its length. */
static size_t field_prefix(const struct dup_walk *w, unsigned f, uint8_t *key)
{
    size_t kl = strlen(w->k->kind) + 1, fl = strlen(w->fname[f]) + 1;
    memcpy(key, w->k->kind, kl);
    memcpy(key + kl, w->fname[f], fl);
    return kl + fl;
}

/* Up to @max index rows of field @f (of the value @blind only, when not
 * NULL) after key @after (NULL: from the first) into @rr->v. */
static int rows_read(struct dup_walk *w, unsigned f, const uint8_t *blind,
                     const uint8_t *after, size_t alen, size_t max,
                     struct rows_read *rr, struct dossier_status *st)
{
    uint8_t prefix[STORE_KEY_MAX];
    size_t plen = field_prefix(w, f, prefix), flen = plen;
    int rc;

    if (blind) {
        memcpy(prefix + plen, blind, STORE_BLIND_BYTES);
        plen += STORE_BLIND_BYTES;
    }
    rr->n = 0;
    rr->max = max;
    rr->more = 0;
    rr->plen = flen;
    rc = store_scan(w->s, STORE_INDEX, prefix, plen, after, alen, rows_cb, rr,
                    st);
    w->visits += rr->n;
    if (rc == DOSSIER_CORRUPT)
        return err_set(st, rc, "an index row is malformed");
    return rc;
}

/* The visible records holding tuple @t under rule @ri into w->found
 * (*@n of them): the first RUN_MAX rows of its first field's value. */
static int lookup(struct dup_walk *w, unsigned ri, const uint8_t *t,
                  size_t *n, struct dossier_status *st)
{
    struct rows_read rr = {.v = w->looked_up};
    size_t tl = tuple_len(w, ri);
    int rc = rows_read(w, w->fi[ri][0], t, NULL, 0, RUN_MAX, &rr, st);

    *n = 0;
    for (size_t i = 0; rc == 0 && i < rr.n; i++) {
        struct rec *r;
        if ((rc = rec_get(w, rr.v[i].rid, &r, st)))
            break;
        if (r->visible && rec_tuple(w, r, ri, w->found[*n].tuple) &&
            memcmp(w->found[*n].tuple, t, tl) == 0)
            w->found[(*n)++].r = r;
    }
    return rc;
}

static int member_add(struct dup_walk *w, struct rec *r, uint32_t looked)
{
    if (w->n_members == w->cap_members) {
        size_t cap = w->cap_members ? 2 * w->cap_members : 64;
        struct rec **v = realloc(w->members, cap * sizeof(*v));
        if (!v)
            return DOSSIER_NOMEM;
        w->members = v;
        w->cap_members = cap;
    }
    r->growth = w->growth;
    r->looked = looked;
    w->members[w->n_members++] = r;
    return 0;
}

/* Grows the group of the match of @n records @m at position (@ri, @t)
 * into w->members: 0, GROWN_ELSEWHERE when the group has a match at an
 * earlier position (it is sent from there), or an error code. */
static int grow(struct dup_walk *w, unsigned ri, const uint8_t *t,
                const struct cand *m, size_t n, struct dossier_status *st)
{
    size_t reads0 = w->visits;

    w->growth++;
    w->n_members = 0;
    w->group_rules = 1u << ri;
    w->truncated = 0;
    for (size_t i = 0; i < n; i++)
        if (member_add(w, m[i].r, 1u << ri))
            return err_set(st, DOSSIER_NOMEM, "out of memory");
    for (size_t q = 0; q < w->n_members; q++) {
        struct rec *x = w->members[q];
        for (unsigned r2 = 0; r2 < w->rules->n; r2++) {
            uint8_t t2[TUPLE_MAX];
            size_t found, in = 0;
            int rc;
            if (x->looked & (1u << r2))
                continue;
            x->looked |= 1u << r2;
            if (!rec_tuple(w, x, r2, t2))
                continue;
            if (w->n_members >= GROW_MAX ||
                w->visits - reads0 >= GROW_READS_MAX) {
                w->truncated = 1;
                return 0;
            }
            if ((rc = lookup(w, r2, t2, &found, st)))
                return rc;
            for (size_t i = 0; i < found; i++)
                in |= w->found[i].r == x;
            if (found < 2 || !in)
                continue; /* no match, or one of other records */
            if (pos_cmp(w, r2, t2, ri, t) < 0)
                return GROWN_ELSEWHERE;
            w->group_rules |= 1u << r2;
            for (size_t i = 0; i < found; i++) {
                struct rec *y = w->found[i].r;
                if (y->growth == w->growth)
                    y->looked |= 1u << r2;
                else if (member_add(w, y, 1u << r2))
                    return err_set(st, DOSSIER_NOMEM, "out of memory");
            }
        }
    }
    return 0;
}

/* Bytes of tuples cand_cmp compares: set before each sort. */
static __thread size_t sort_len;

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    int c = memcmp(x->tuple, y->tuple, sort_len);
    return c ? c : memcmp(x->r->rid, y->r->rid, STORE_RID_BYTES);
}

/* Where a walk is: the resume position of its page and its progress. */
struct walk_state {
    const struct walk_pos *from; /* NULL: from the start */
    struct walk_pos done;        /* the last position finished */
    int progressed;
    dup_emit_fn emit;
    void *arg;
};

/* The matches of a run of @n index rows @rows of rule @ri's first field:
 * each is grown into a group and emitted. WALK_FULL when the page is
 * full (its token in ws->done), 0 to go on, or an error code. */
static int walk_run(struct dup_walk *w, struct walk_state *ws, unsigned ri,
                    const struct row *rows, size_t n,
                    struct dossier_status *st)
{
    size_t tl = tuple_len(w, ri), nc = 0;
    int skip = ws->from && ws->from->rule == ri &&
               memcmp(rows[0].blind, ws->from->tuple, STORE_BLIND_BYTES) == 0;
    int rc = 0;

    if (n < 2)
        return 0;
    for (size_t i = 0; i < n; i++) {
        struct rec *r;
        if ((rc = rec_get(w, rows[i].rid, &r, st)))
            return rc;
        /* One changed since its row was read no longer holds the value. */
        if (r->visible && rec_tuple(w, r, ri, w->run[nc].tuple) &&
            memcmp(w->run[nc].tuple, rows[i].blind, STORE_BLIND_BYTES) == 0)
            w->run[nc++].r = r;
    }
    sort_len = tl;
    qsort(w->run, nc, sizeof(*w->run), cand_cmp);
    for (size_t i = 0; i < nc;) {
        size_t j = i + 1;
        while (j < nc && memcmp(w->run[j].tuple, w->run[i].tuple, tl) == 0)
            j++;
        if (j - i >= 2 &&
            !(skip && memcmp(w->run[i].tuple, ws->from->tuple, tl) <= 0)) {
            if (w->visits >= VISIT_MAX && ws->progressed)
                return WALK_FULL; /* the page ends before this match */
            rc = grow(w, ri, w->run[i].tuple, w->run + i, j - i, st);
            if (rc > 0)
                return rc;
            ws->done.rule = ri;
            memcpy(ws->done.tuple, w->run[i].tuple, tl);
            ws->progressed = 1;
            if (rc == 0 && (rc = ws->emit(w, ws->arg, st)) != 0)
                return rc; /* full after this group, or an error */
        }
        i = j;
    }
    return 0;
}

/* Walks the positions from ws->from on, emitting groups, until the page
 * is full (WALK_FULL: ws->done is the token) or the rules are done (0);
 * or an error code. */
static int walk(struct dup_walk *w, struct walk_state *ws,
                struct dossier_status *st)
{
    uint8_t after[STORE_KEY_MAX];

    for (unsigned ri = ws->from ? ws->from->rule : 0; ri < w->rules->n;
         ri++) {
        unsigned f0 = w->fi[ri][0];
        size_t plen = field_prefix(w, f0, after), alen = 0, tl = tuple_len(w, ri);
        struct rows_read rr = {.v = w->slice};

        if (ws->from && ws->from->rule == ri) {
            /* From the token's value on; past it when it was finished. */
            int whole = 1;
            for (size_t b = STORE_BLIND_BYTES; b < tl; b++)
                whole &= ws->from->tuple[b] == 0xff;
            memcpy(after + plen, ws->from->tuple, STORE_BLIND_BYTES);
            alen = plen + STORE_BLIND_BYTES;
            if (whole) {
                memset(after + alen, 0xff, STORE_RID_BYTES);
                alen += STORE_RID_BYTES;
            }
        }
        for (;;) {
            int rc = rows_read(w, f0, NULL, alen ? after : NULL, alen, SLICE,
                               &rr, st);
            size_t i = 0;
            if (rc)
                return rc;
            while (i < rr.n) {
                size_t j = i + 1;
                while (j < rr.n && memcmp(rr.v[j].blind, rr.v[i].blind,
                                          STORE_BLIND_BYTES) == 0)
                    j++;
                /* A run cut by the slice is read again from its start,
                 * unless it fills the slice: then its first RUN_MAX rows
                 * are all it has. */
                if (j == rr.n && rr.more && i > 0)
                    break;
                rc = walk_run(w, ws, ri, rr.v + i,
                              j - i < RUN_MAX ? j - i : RUN_MAX, st);
                if (rc)
                    return rc;
                /* The run is finished: the next read starts past it. */
                ws->done.rule = ri;
                memcpy(ws->done.tuple, rr.v[i].blind, STORE_BLIND_BYTES);
                memset(ws->done.tuple + STORE_BLIND_BYTES, 0xff,
                       tl - STORE_BLIND_BYTES);
                ws->progressed = 1;
                memcpy(after + plen, rr.v[i].blind, STORE_BLIND_BYTES);
                memset(after + plen + STORE_BLIND_BYTES, 0xff,
                       STORE_RID_BYTES);
                alen = plen + STORE_BLIND_BYTES + STORE_RID_BYTES;
                if (w->visits >= VISIT_MAX)
                    return WALK_FULL;
                i = j;
            }
            if (!rr.more)
                break;
        }
        ws->from = NULL; /* the next rule from its first row */
    }
    return 0;
}

/* A token: the rule (1 byte), the tuple and TOKEN_CHECK bytes of a hash
 * of the rules, so that a token of other rules is refused. */
static void rules_check_hash(const struct dup_rules *rules,
                             uint8_t out[TOKEN_CHECK])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, TOKEN_CHECK);
    for (size_t r = 0; r < rules->n; r++) {
        crypto_generichash_update(&h, (const uint8_t *)rules->r[r].name,
                                  strlen(rules->r[r].name) + 1);
        for (size_t j = 0; j < rules->r[r].n; j++)
            crypto_generichash_update(&h,
                                      (const uint8_t *)rules->r[r].fields[j],
                                      strlen(rules->r[r].fields[j]) + 1);
        crypto_generichash_update(&h, (const uint8_t *)"", 1);
    }
    crypto_generichash_final(&h, out, TOKEN_CHECK);
}

static void token_encode(const struct dup_rules *rules,
                         const struct walk_pos *p, char *out, size_t cap)
{
    uint8_t bin[1 + TUPLE_MAX + TOKEN_CHECK];
    size_t tl = rules->r[p->rule].n * STORE_BLIND_BYTES;
    bin[0] = (uint8_t)p->rule;
    memcpy(bin + 1, p->tuple, tl);
    rules_check_hash(rules, bin + 1 + tl);
    sodium_bin2hex(out, cap, bin, 1 + tl + TOKEN_CHECK);
}

static int token_decode(const struct dup_rules *rules, const char *token,
                        struct walk_pos *p)
{
    uint8_t bin[1 + TUPLE_MAX + TOKEN_CHECK], check[TOKEN_CHECK];
    size_t len = 0, tl;

    if (strlen(token) > 2 * sizeof(bin) ||
        sodium_hex2bin(bin, sizeof(bin), token, strlen(token), NULL, &len,
                       NULL) != 0 ||
        len < 1 || bin[0] >= rules->n)
        return -1;
    tl = rules->r[bin[0]].n * STORE_BLIND_BYTES;
    rules_check_hash(rules, check);
    if (len != 1 + tl + TOKEN_CHECK ||
        memcmp(bin + 1 + tl, check, TOKEN_CHECK) != 0)
        return -1;
    p->rule = bin[0];
    memcpy(p->tuple, bin + 1, tl);
    return 0;
}

/* ------------------------------------------------------------------ */
/* FindDuplicates: a page of groups */

/* A group sent: its records are page.o[first, first + n). */
struct page_group {
    size_t first, n;
    uint32_t rules;
};

struct dup_page {
    struct call *c;
    size_t want;
    struct page_group *groups;
    size_t n_groups;
    struct records_opened **o; /* each allocated */
    size_t n_o, cap_o;
    uint8_t (*seen)[STORE_RID_BYTES]; /* personal records sent */
    size_t n_seen, cap_seen;
    size_t bytes;
};

static void page_release(struct dup_page *pg)
{
    for (size_t i = 0; i < pg->n_o; i++) {
        records_opened_release(pg->o[i]);
        free(pg->o[i]);
    }
    free(pg->o);
    free(pg->groups);
    free(pg->seen);
}

static int rec_rid_cmp(const void *a, const void *b)
{
    return memcmp((*(struct rec *const *)a)->rid,
                  (*(struct rec *const *)b)->rid, STORE_RID_BYTES);
}

/* Opens record @rid for the page, as Get opens it for the call's purpose,
 * into *@o (allocated; NULL when the record is gone or the purpose may
 * not see it now): 0 or an error code. */
static int open_one(struct dup_page *pg, const KindSchema *k,
                    const uint8_t *rid, struct records_opened **o, int *personal,
                    struct dossier_status *st)
{
    struct node *nd = call_node(pg->c);
    StoredRecord *sr;
    int rc = store_record_get(nd->store, k->kind, rid, &sr, st);

    *o = NULL;
    if (rc == DOSSIER_NOT_FOUND)
        return 0; /* deleted meanwhile */
    if (rc)
        return rc;
    *personal = sr->subject.len == STORE_SP_BYTES;
    if (*personal && (rc = api_subject_visible(pg->c, sr->subject.data, st))) {
        dossier__store__v1__stored_record__free_unpacked(sr, NULL);
        return rc == DOSSIER_PERMISSION_DENIED ? 0 : rc;
    }
    if (!(*o = calloc(1, sizeof(**o)))) {
        dossier__store__v1__stored_record__free_unpacked(sr, NULL);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    /* records_open takes @sr, also when it fails. */
    rc = records_open(nd, sr, rid, api_visible_categories(pg->c), *o, st);
    if (rc) {
        free(*o);
        *o = NULL;
        return rc == DOSSIER_NOT_FOUND ? 0 : rc; /* NOT_FOUND: deleted while
                                                    its links were read */
    }
    return 0;
}

/* Room in @pg->seen for one more. */
static int seen_room(struct dup_page *pg)
{
    if (pg->n_seen == pg->cap_seen) {
        size_t cap = pg->cap_seen ? 2 * pg->cap_seen : 64;
        void *v = realloc(pg->seen, cap * sizeof(*pg->seen));
        if (!v)
            return DOSSIER_NOMEM;
        pg->seen = v;
        pg->cap_seen = cap;
    }
    return 0;
}

/* dup_emit_fn: opens the first GROUP_RECORDS_MAX records of the group
 * grown (by pseudonym) and adds it to the page when two or more open. On
 * failure the records of the group opened so far are released (wiped). */
static int page_emit(struct dup_walk *w, void *arg, struct dossier_status *st)
{
    struct dup_page *pg = arg;
    size_t first = pg->n_o, seen0 = pg->n_seen, n = 0;
    int rc = 0;

    qsort(w->members, w->n_members, sizeof(*w->members), rec_rid_cmp);
    for (size_t i = 0; i < w->n_members && n < GROUP_RECORDS_MAX; i++) {
        struct records_opened *o = NULL;
        int personal = 0;
        if (n >= 2 && pg->bytes >= REPLY_BYTES_MAX)
            break; /* the group shows its first records */
        if (pg->n_o == pg->cap_o) {
            size_t cap = pg->cap_o ? 2 * pg->cap_o : 64;
            void *v = realloc(pg->o, cap * sizeof(*pg->o));
            if (!v) {
                rc = err_set(st, DOSSIER_NOMEM, "out of memory");
                break;
            }
            pg->o = v;
            pg->cap_o = cap;
        }
        if (seen_room(pg)) {
            rc = err_set(st, DOSSIER_NOMEM, "out of memory");
            break;
        }
        if ((rc = open_one(pg, w->k, w->members[i]->rid, &o, &personal, st)))
            break;
        if (!o)
            continue;
        pg->o[pg->n_o++] = o;
        pg->bytes += dossier__v1__record__get_packed_size(&o->rec);
        if (personal)
            memcpy(pg->seen[pg->n_seen++], w->members[i]->rid,
                   STORE_RID_BYTES);
        n++;
    }
    if (rc || n < 2) {
        /* Failed, or no longer a group (changed meanwhile): nothing of
         * it is sent. */
        while (pg->n_o > first) {
            records_opened_release(pg->o[--pg->n_o]);
            free(pg->o[pg->n_o]);
        }
        pg->n_seen = seen0;
        return rc;
    }
    pg->groups[pg->n_groups++] = (struct page_group){first, n, w->group_rules};
    return pg->n_groups == pg->want || pg->bytes >= REPLY_BYTES_MAX
               ? WALK_FULL
               : 0;
}

void api_records_find_duplicates(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__FindDuplicatesRequest *req =
        (Dossier__V1__FindDuplicatesRequest *)msg;
    Dossier__V1__DuplicateReport resp = DOSSIER__V1__DUPLICATE_REPORT__INIT;
    struct node *n = call_node(c);
    struct dossier_status st;
    struct dup_rules rules;
    struct dup_walk w;
    struct dup_page pg;
    struct walk_pos from;
    struct walk_state ws;
    const KindSchema *k;
    char token[2 * (1 + TUPLE_MAX + TOKEN_CHECK) + 1] = "";
    Dossier__V1__DuplicateGroup *groups = NULL, **gptrs = NULL;
    Dossier__V1__Record **recs = NULL;
    char *(*names)[RULES_MAX] = NULL;
    int rc = 0;

    memset(&w, 0, sizeof(w));
    memset(&pg, 0, sizeof(pg));
    memset(&ws, 0, sizeof(ws));
    if (records_kind(n, req->kind, &k, &st) ||
        rules_of(n, k, req->fields, req->n_fields,
                 api_visible_categories(c), call_purpose(c), &rules, &st))
        return call_fail_status(c, &st);
    if (req->page_size > GROUPS_MAX)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "page_size is at most %d groups", GROUPS_MAX);
    if (req->page_token[0]) {
        if (token_decode(&rules, req->page_token, &from) != 0)
            return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                             "page_token is not one this listing issued "
                             "(or the kind's rules changed since)");
        ws.from = &from;
    }
    pg.c = c;
    pg.want = req->page_size ? req->page_size : GROUPS_DEFAULT;
    pg.groups = calloc(pg.want, sizeof(*pg.groups));
    if (!pg.groups) {
        call_fail(c, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    ws.emit = page_emit;
    ws.arg = &pg;
    if (walk_init(&w, c, k, &rules, &st) || (rc = walk(&w, &ws, &st)) > 0) {
        call_fail_status(c, &st);
        goto out;
    }
    if (rc == WALK_FULL)
        token_encode(&rules, &ws.done, token, sizeof(token));
    groups = calloc(pg.n_groups + 1, sizeof(*groups));
    gptrs = calloc(pg.n_groups + 1, sizeof(*gptrs));
    names = calloc(pg.n_groups + 1, sizeof(*names));
    recs = calloc(pg.n_o + 1, sizeof(*recs));
    if (!groups || !gptrs || !names || !recs) {
        call_fail(c, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < pg.n_o; i++)
        recs[i] = &pg.o[i]->rec;
    for (size_t i = 0; i < pg.n_groups; i++) {
        Dossier__V1__DuplicateGroup *g = &groups[i];
        dossier__v1__duplicate_group__init(g);
        g->records = recs + pg.groups[i].first;
        g->n_records = pg.groups[i].n;
        g->rules = names[i];
        for (unsigned r = 0; r < rules.n; r++)
            if (pg.groups[i].rules & (1u << r)) {
                if (!g->n_rules)
                    g->field = (char *)rules.r[r].fields[0];
                g->rules[g->n_rules++] = rules.r[r].name;
            }
        if (!g->field)
            g->field = (char *)"";
        gptrs[i] = g;
    }
    resp.groups = gptrs;
    resp.n_groups = pg.n_groups;
    resp.next_page_token = token;
    if (pg.n_seen)
        call_audit_read(c, NULL, (const uint8_t *)pg.seen, pg.n_seen);
    call_reply(c, &resp.base);
out:
    page_release(&pg);
    walk_release(&w);
    free(groups);
    free(gptrs);
    free(names);
    free(recs);
}
