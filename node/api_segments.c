/* Segments: saved filters over the records of one kind ("policy" family,
 * "g" + name), defined through a replicated command and run by the node,
 * which returns the ids of the matching records the call's purpose may
 * read. Times and consent are checked on the stored record; conditions on
 * fields need it opened, as a read of the purpose opens it. Definitions
 * are kept in the clear, so their conditions may only name fields whose
 * values are no personal data (segment_field_allowed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "api.h"
#include "errors.h"
#include "policy.h"
#include "records.h"
#include "store.h"

#define CONDITIONS_MAX 16
#define VALUES_MAX 64
#define MATCHES_DEFAULT 100
#define MATCHES_MAX 1000
/* Records one page of a run looks at before it answers with a token. */
#define SCAN_MAX 20000

#define FT(t) DOSSIER__V1__FIELD_TYPE__FIELD_TYPE_##t
#define VK(k) DOSSIER__V1__VALUE__KIND_##k

static int is_number_field(const FieldSchema *f)
{
    return f->type == FT(INT) || f->type == FT(DOUBLE) ||
           f->type == FT(TIMESTAMP);
}

static int is_number(const Dossier__V1__Value *v)
{
    return v && (v->kind_case == VK(INT_VALUE) ||
                 (v->kind_case == VK(DOUBLE_VALUE) && isfinite(v->double_value)));
}

/* Whether @v is a value field @f can hold, so that a condition naming it
 * can match: a number for a number field (a whole one for an int or a
 * timestamp), a flag for a bool field, one of the allowed values for an
 * enumeration, a string otherwise. */
static int value_fits(const FieldSchema *f, const Dossier__V1__Value *v)
{
    switch (f->type) {
    case FT(INT):
    case FT(TIMESTAMP):
        return is_number(v) &&
               (v->kind_case == VK(INT_VALUE) ||
                (v->double_value == floor(v->double_value) &&
                 fabs(v->double_value) < 9.2e18));
    case FT(DOUBLE):
        return is_number(v);
    case FT(BOOL):
        return v->kind_case == VK(BOOL_VALUE);
    case FT(ENUM):
        if (v->kind_case != VK(STRING_VALUE))
            return 0;
        for (size_t i = 0; i < f->n_allowed_values; i++)
            if (strcmp(f->allowed_values[i], v->string_value) == 0)
                return 1;
        return 0;
    default:
        return v->kind_case == VK(STRING_VALUE);
    }
}

/* Checks the @n values @v of form @form of condition @cnd on @f; tags are
 * normalised in place. */
static int values_check(const FieldSchema *f, const char *form,
                        Dossier__V1__Value **v, size_t n,
                        struct dossier_status *st)
{
    if (n > VALUES_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "condition on '%s': at most %d values in %s", f->name,
                       VALUES_MAX, form);
    for (size_t j = 0; j < n; j++) {
        if (!v[j] || v[j]->kind_case == DOSSIER__V1__VALUE__KIND__NOT_SET)
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "condition on '%s': a value is missing", f->name);
        /* The value itself is not echoed: it could be anything. */
        if (!value_fits(f, v[j]))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "condition on '%s': %s holds a value that is "
                           "not of the field's type%s",
                           f->name, form,
                           f->type == FT(ENUM)
                               ? " (one of its allowed values)"
                           : f->type == FT(INT) || f->type == FT(TIMESTAMP)
                               ? " (a whole number)"
                               : "");
        if (f->type == FT(TAGS) &&
            (schema_tags_normalize(v[j]->string_value) != 0 ||
             !v[j]->string_value[0] || strchr(v[j]->string_value, ',')))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "condition on '%s': give one tag per value, 1 to "
                           "%d characters [a-z0-9_.:/-]",
                           f->name, SCHEMA_TAG_MAX);
    }
    return 0;
}

#define CAT(c) DOSSIER__V1__CATEGORY__CATEGORY_##c

/* Whether a segment may hold values of field @f. A definition is kept in
 * the clear (policy family, raft log, WAL) and read back by Get and List,
 * so its values must not be personal data:
 *  - enumerations and flags, whatever their category: their values come
 *    from the kind's schema, itself kept in the clear, so a condition on
 *    one names a class of people (a stage, a preference), never a person;
 *  - e-mail addresses and phone numbers never;
 *  - other values only of a category that describes no one by itself:
 *    operational fields (stage, owner, industry: the business's own data,
 *    as the schema declares them) of any type; behavioral and financial
 *    fields only as numbers and times (a lead score, an amount, a credit
 *    limit, a last visit: a bound or value of a measure is shared by many
 *    and the definition ties it to no one) and tags (labels of the
 *    business's vocabulary), not as text (titles, bodies, IBANs and
 *    account references identify or describe one person);
 *  - nothing of the identity, contact and special categories but
 *    enumerations and flags: their text, numbers and tags are names,
 *    addresses, birth dates, customer numbers or Art. 9 data. */
static int segment_field_allowed(const FieldSchema *f)
{
    switch (f->type) {
    case FT(ENUM):
    case FT(BOOL):
        return 1;
    case FT(EMAIL):
    case FT(PHONE):
        return 0;
    case FT(INT):
    case FT(DOUBLE):
    case FT(TIMESTAMP):
    case FT(TAGS):
        return f->category == CAT(OPERATIONAL) ||
               f->category == CAT(BEHAVIORAL) ||
               f->category == CAT(FINANCIAL);
    default:
        return f->category == CAT(OPERATIONAL);
    }
}

static int segment_field_refused(const FieldSchema *f,
                                 struct dossier_status *st)
{
    return err_set(st, DOSSIER_INVALID_ARGUMENT,
                   "condition on '%s': segment definitions are kept in the "
                   "clear, so they may not hold values of a field that can "
                   "identify or describe a person (e-mail and phone fields, "
                   "anything but enumerations and flags of the identity, "
                   "contact and special categories, text of the behavioral "
                   "and financial ones): filter on an enumeration, a flag, "
                   "tags, a number or an operational field",
                   f->name);
}

/* Checks condition @i, @cnd, on its field of kind @k. */
static int condition_check(const KindSchema *k, size_t i,
                           Dossier__V1__SegmentCondition *cnd,
                           struct dossier_status *st)
{
    const FieldSchema *f = schema_field(k, cnd->field);
    int range = cnd->at_least || cnd->below, forms, rc;

    if (!f)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "condition %zu: kind '%s' has no field '%.64s'", i + 1,
                       k->kind, cnd->field);
    if (!segment_field_allowed(f))
        return segment_field_refused(f, st);
    forms = (cnd->n_any_of > 0) + (cnd->n_all_of > 0) +
            (cnd->n_none_of > 0) + range;
    if (forms != 1)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "condition on '%s': give one of any_of, all_of, "
                       "none_of, or a range (at_least, below)",
                       f->name);
    if (cnd->n_all_of && f->type != FT(TAGS))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "condition on '%s': all_of is for tags fields",
                       f->name);
    if (range) {
        if (!is_number_field(f))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "condition on '%s': a range needs an int, double "
                           "or timestamp field",
                           f->name);
        if ((cnd->at_least && !is_number(cnd->at_least)) ||
            (cnd->below && !is_number(cnd->below)))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "condition on '%s': at_least and below are "
                           "numbers (timestamps in ms since the epoch)",
                           f->name);
    }
    if ((rc = values_check(f, "any_of", cnd->any_of, cnd->n_any_of, st)) ||
        (rc = values_check(f, "all_of", cnd->all_of, cnd->n_all_of, st)) ||
        (rc = values_check(f, "none_of", cnd->none_of, cnd->n_none_of, st)))
        return rc;
    return 0;
}

/* Checks @seg against its kind: fields exist and may be kept in a
 * definition (segment_field_allowed), values have their types; tags in
 * conditions are normalised in place. */
static int segment_check(struct node *n, Dossier__V1__Segment *seg,
                         const KindSchema **k, struct dossier_status *st)
{
    struct policy_purpose pp;
    if (!policy_name_valid(seg->name))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "name must be [a-z][a-z0-9_]*, at most %d characters",
                       POLICY_NAME_MAX);
    if (records_kind(n, seg->kind, k, st))
        return st->code;
    if (seg->n_conditions > CONDITIONS_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "at most %d conditions", CONDITIONS_MAX);
    for (size_t i = 0; i < seg->n_conditions; i++) {
        int rc = condition_check(*k, i, seg->conditions[i], st);
        if (rc)
            return rc;
    }
    if (seg->consent_purpose[0] &&
        policy_get(store_policy(n->store), seg->consent_purpose, &pp) != 0)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "consent_purpose: no purpose named '%.64s'",
                       seg->consent_purpose);
    if (strlen(seg->description) > 512)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "description is at most 512 bytes");
    return 0;
}

/* Reads segment @name into *@out (free with
 * dossier__v1__segment__free_unpacked). Errors: DOSSIER_NOT_FOUND. */
static int segment_get(struct node *n, const char *name,
                       Dossier__V1__Segment **out, struct dossier_status *st)
{
    uint8_t prefix[1 + POLICY_NAME_MAX];
    ProtobufCMessage **m;
    size_t len = strlen(name), count;
    int rc;

    *out = NULL;
    if (!policy_name_valid(name))
        return err_set(st, DOSSIER_NOT_FOUND, "no segment named '%.64s'",
                       name);
    prefix[0] = 'g';
    memcpy(prefix + 1, name, len);
    rc = store_scan_messages(n->store, STORE_POLICY, prefix, 1 + len,
                             &dossier__v1__segment__descriptor, &m, &count,
                             st);
    if (rc)
        return rc;
    for (size_t i = 0; i < count; i++)
        if (!*out && strcmp(((Dossier__V1__Segment *)m[i])->name, name) == 0) {
            *out = (Dossier__V1__Segment *)m[i];
            m[i] = NULL;
        }
    store_messages_free(m, count);
    return *out ? 0
                : err_set(st, DOSSIER_NOT_FOUND, "no segment named '%.64s'",
                          name);
}

struct define_ctx {
    struct call *call;
    char name[POLICY_NAME_MAX + 1];
};

static void define_done(void *arg, const struct store_result *res)
{
    struct define_ctx *d = arg;
    Dossier__V1__Segment *seg;
    struct dossier_status st;

    if (res->status.code)
        call_fail_status(d->call, &res->status);
    else if (segment_get(call_node(d->call), d->name, &seg, &st))
        call_fail_status(d->call, &st);
    else {
        call_reply(d->call, &seg->base);
        dossier__v1__segment__free_unpacked(seg, NULL);
    }
    free(d);
}

void api_segments_define(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__DefineSegmentRequest *req =
        (Dossier__V1__DefineSegmentRequest *)msg;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__DefineSegmentOp op =
        DOSSIER__STORE__V1__DEFINE_SEGMENT_OP__INIT;
    const KindSchema *k;
    struct dossier_status st;
    struct define_ctx *d;
    uint8_t *buf;
    size_t len;

    if (!req->segment)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT, "segment is missing");
    if (segment_check(call_node(c), req->segment, &k, &st))
        return call_fail_status(c, &st);
    req->segment->version = 0;
    if (!(d = calloc(1, sizeof(*d))))
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    d->call = c;
    snprintf(d->name, sizeof(d->name), "%s", req->segment->name);
    op.segment = req->segment;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_DEFINE_SEGMENT;
    cmd.define_segment = &op;
    call_command_init(c, &cmd);
    len = dossier__store__v1__command__get_packed_size(&cmd);
    if (!(buf = malloc(len))) {
        free(d);
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    }
    dossier__store__v1__command__pack(&cmd, buf);
    if (call_submit(c, buf, len, define_done, d) != 0) {
        free(d);
        call_fail(c, DOSSIER_UNAVAILABLE, "the node is shutting down");
    }
}

/* Whether @c's purpose may see every field @seg filters on: 0, or
 * DOSSIER_PERMISSION_DENIED naming the first it may not see (its values
 * in the definition would tell it what to look for, as a run would tell
 * it who has them). A kind no longer known hides nothing. */
static int segment_visible(struct call *c, const Dossier__V1__Segment *seg,
                           struct dossier_status *st)
{
    const KindSchema *k =
        schema_registry_get(store_schemas(call_node(c)->store), seg->kind);
    unsigned cats = api_visible_categories(c);

    for (size_t i = 0; k && i < seg->n_conditions; i++) {
        const FieldSchema *f = schema_field(k, seg->conditions[i]->field);
        if (f && (f->category < 1 || f->category > 6 ||
                  !(cats & (1u << f->category))))
            return err_set(st, DOSSIER_PERMISSION_DENIED,
                           "segment '%s' filters on field '%s', which "
                           "purpose '%s' may not see",
                           seg->name, f->name, call_purpose(c));
    }
    return 0;
}

void api_segments_get(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__GetSegmentRequest *req = (Dossier__V1__GetSegmentRequest *)msg;
    Dossier__V1__Segment *seg;
    struct dossier_status st;

    if (segment_get(call_node(c), req->name, &seg, &st))
        return call_fail_status(c, &st);
    if (segment_visible(c, seg, &st))
        call_fail_status(c, &st);
    else
        call_reply(c, &seg->base);
    dossier__v1__segment__free_unpacked(seg, NULL);
}

void api_segments_list(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__ListSegmentsResponse resp =
        DOSSIER__V1__LIST_SEGMENTS_RESPONSE__INIT;
    ProtobufCMessage **m;
    Dossier__V1__Segment **shown;
    struct dossier_status st;
    size_t count;
    (void)msg;

    if (store_scan_messages(call_node(c)->store, STORE_POLICY,
                            (const uint8_t *)"g", 1,
                            &dossier__v1__segment__descriptor, &m, &count,
                            &st))
        return call_fail_status(c, &st);
    /* Those on fields the purpose may not see are left out. */
    if (!(shown = calloc(count ? count : 1, sizeof(*shown)))) {
        store_messages_free(m, count);
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < count; i++)
        if (segment_visible(c, (Dossier__V1__Segment *)m[i], &st) == 0)
            shown[resp.n_segments++] = (Dossier__V1__Segment *)m[i];
    resp.segments = shown;
    call_reply(c, &resp.base);
    free(shown);
    store_messages_free(m, count);
}

/* ---- Run ---- */

struct seg_run {
    struct call *c;
    const Dossier__V1__Segment *seg;
    const KindSchema *k;
    unsigned cats;
    size_t want, scanned;
    char **ids;
    uint8_t (*seen)[STORE_RID_BYTES];
    size_t n, n_seen;
    uint8_t last[STORE_KEY_MAX];
    size_t last_len;
    int more;
};

/* -1, 0 or 1 as number @a is below, equal to or above number @b. */
static int number_cmp(const Dossier__V1__Value *a, const Dossier__V1__Value *b)
{
    double x, y;
    if (a->kind_case == VK(INT_VALUE) && b->kind_case == VK(INT_VALUE))
        return (a->int_value > b->int_value) - (a->int_value < b->int_value);
    x = a->kind_case == VK(INT_VALUE) ? (double)a->int_value : a->double_value;
    y = b->kind_case == VK(INT_VALUE) ? (double)b->int_value : b->double_value;
    return (x > y) - (x < y);
}

static int value_matches(const FieldSchema *f, const Dossier__V1__Value *v,
                         const Dossier__V1__Value *want)
{
    if (!v)
        return 0;
    if (is_number(v) && is_number(want))
        return number_cmp(v, want) == 0;
    if (v->kind_case != want->kind_case)
        return 0;
    switch (v->kind_case) {
    case VK(STRING_VALUE):
        return f->type == FT(EMAIL)
                   ? strcasecmp(v->string_value, want->string_value) == 0
                   : strcmp(v->string_value, want->string_value) == 0;
    case VK(BOOL_VALUE):
        return v->bool_value == want->bool_value;
    default:
        return 0;
    }
}

/* How many of the @n values @want value @v matches, up to the first. On a
 * tags field, a value matches when the record's set holds that tag. */
static size_t count_matches(const FieldSchema *f, const Dossier__V1__Value *v,
                            Dossier__V1__Value *const *want, size_t n,
                            int all)
{
    size_t hits = 0;
    for (size_t j = 0; j < n && (all || !hits); j++) {
        if (f->type == FT(TAGS))
            hits += v && v->kind_case == VK(STRING_VALUE) &&
                    schema_tags_has(v->string_value, want[j]->string_value);
        else
            hits += value_matches(f, v, want[j]);
    }
    return hits;
}

/* Whether value @v (NULL: the field is empty) of field @f meets @cnd. */
static int condition_matches(const FieldSchema *f,
                             const Dossier__V1__SegmentCondition *cnd,
                             const Dossier__V1__Value *v)
{
    if (cnd->n_any_of)
        return count_matches(f, v, cnd->any_of, cnd->n_any_of, 0) > 0;
    if (cnd->n_all_of)
        return count_matches(f, v, cnd->all_of, cnd->n_all_of, 1) ==
               cnd->n_all_of;
    if (cnd->n_none_of)
        return count_matches(f, v, cnd->none_of, cnd->n_none_of, 0) == 0;
    if (!is_number(v))
        return 0; /* empty: outside every range */
    return (!cnd->at_least || number_cmp(v, cnd->at_least) >= 0) &&
           (!cnd->below || number_cmp(v, cnd->below) < 0);
}

static int in_range(int64_t t, int64_t after, int64_t before)
{
    return (!after || t >= after) && (!before || t < before);
}

/* Whether record @sr (borrowed) matches, before it is opened: times,
 * visibility, consent. 1, 0, or -1 with @st set. */
static int pre_match(struct seg_run *r, const StoredRecord *sr,
                     struct dossier_status *st)
{
    const Dossier__V1__Segment *g = r->seg;
    int personal = sr->subject.len == STORE_SP_BYTES, rc;

    if (!in_range(sr->created_at_ms, g->created_after_ms,
                  g->created_before_ms) ||
        !in_range(sr->updated_at_ms, g->updated_after_ms,
                  g->updated_before_ms))
        return 0;
    if (personal) {
        rc = api_subject_visible(r->c, sr->subject.data, st);
        if (rc == DOSSIER_PERMISSION_DENIED)
            return 0;
        if (rc)
            return -1;
    }
    if (g->consent_purpose[0]) {
        Dossier__Store__V1__StoredConsent *sc;
        int granted;
        if (!personal)
            return 0;
        rc = store_consent_get(call_node(r->c)->store, sr->subject.data,
                               g->consent_purpose, &sc, st);
        if (rc == DOSSIER_NOT_FOUND)
            return 0;
        if (rc)
            return -1;
        granted = sc->state == DOSSIER__V1__CONSENT_STATE__CONSENT_STATE_GRANTED;
        dossier__store__v1__stored_consent__free_unpacked(sc, NULL);
        return granted;
    }
    return 1;
}

static int run_one(void *arg, StoredRecord *sr, const uint8_t *rid,
                   const uint8_t *key, size_t klen, struct dossier_status *st)
{
    struct seg_run *r = arg;
    struct records_opened o;
    int m, rc, personal = sr->subject.len == STORE_SP_BYTES;

    if (r->n == r->want || r->scanned == SCAN_MAX) {
        dossier__store__v1__stored_record__free_unpacked(sr, NULL);
        r->more = 1;
        return 1; /* the page ends before this record */
    }
    r->scanned++;
    memcpy(r->last, key, klen);
    r->last_len = klen;
    m = pre_match(r, sr, st);
    if (m <= 0) {
        dossier__store__v1__stored_record__free_unpacked(sr, NULL);
        return m < 0 ? st->code : 0;
    }
    rc = records_open(call_node(r->c), sr, rid, r->cats, &o, st);
    if (rc == DOSSIER_NOT_FOUND)
        return 0; /* deleted while its links were read: no longer a member */
    if (rc)
        return rc;
    for (size_t i = 0; m && i < r->seg->n_conditions; i++) {
        const Dossier__V1__SegmentCondition *cnd = r->seg->conditions[i];
        const FieldSchema *f = schema_field(r->k, cnd->field);
        m = f && condition_matches(f, cnd,
                                   records_field_value(&o.rec, cnd->field));
    }
    if (m) {
        if (!(r->ids[r->n] = strdup(o.rec.id))) {
            records_opened_release(&o);
            return err_set(st, DOSSIER_NOMEM, "out of memory");
        }
        r->n++;
        if (personal)
            memcpy(r->seen[r->n_seen++], rid, STORE_RID_BYTES);
    }
    records_opened_release(&o);
    return 0;
}

void api_segments_run(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__RunSegmentRequest *req = (Dossier__V1__RunSegmentRequest *)msg;
    Dossier__V1__SegmentMembers resp = DOSSIER__V1__SEGMENT_MEMBERS__INIT;
    Dossier__V1__RecordRef *refs = NULL, **ptrs = NULL;
    struct node *n = call_node(c);
    struct dossier_status st;
    struct seg_run r;
    Dossier__V1__Segment *seg;
    uint8_t after[STORE_KEY_MAX];
    size_t alen = 0, tlen = strlen(req->page_token), klen;
    char token[2 * STORE_KEY_MAX + 1] = "";
    int rc;

    if (req->page_size > MATCHES_MAX)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "page_size is at most %d", MATCHES_MAX);
    if (segment_get(n, req->name, &seg, &st))
        return call_fail_status(c, &st);
    memset(&r, 0, sizeof(r));
    r.c = c;
    r.seg = seg;
    r.cats = api_visible_categories(c);
    r.want = req->page_size ? req->page_size : MATCHES_DEFAULT;
    if (records_kind(n, seg->kind, &r.k, &st))
        goto fail;
    /* A condition on a field the purpose may not see would tell what the
     * field holds: refused, as reading it would be. A segment defined
     * before conditions on personal fields were refused is run only once
     * defined again without them. */
    for (size_t i = 0; i < seg->n_conditions; i++) {
        const FieldSchema *f = schema_field(r.k, seg->conditions[i]->field);
        if (f && !segment_field_allowed(f)) {
            err_set(&st, DOSSIER_FAILED_PRECONDITION,
                    "segment '%s' filters on field '%s', which segments may "
                    "no longer hold (their definitions are kept in the "
                    "clear): define it again without that condition",
                    seg->name, f->name);
            goto fail;
        }
        if (f && !(r.cats & (1u << f->category))) {
            err_set(&st, DOSSIER_PERMISSION_DENIED,
                    "segment '%s' filters on field '%s', which purpose '%s' "
                    "may not see",
                    seg->name, f->name, call_purpose(c));
            goto fail;
        }
    }
    klen = strlen(r.k->kind) + 1;
    if (tlen) {
        size_t bin = 0;
        memcpy(after, r.k->kind, klen);
        if (tlen % 2 || tlen / 2 != STORE_RID_BYTES ||
            sodium_hex2bin(after + klen, sizeof(after) - klen,
                           req->page_token, tlen, NULL, &bin, NULL) != 0) {
            err_set(&st, DOSSIER_INVALID_ARGUMENT,
                    "page_token is not one this segment issued");
            goto fail;
        }
        alen = klen + bin;
    }
    r.ids = calloc(r.want, sizeof(*r.ids));
    r.seen = calloc(r.want, sizeof(*r.seen));
    if (!r.ids || !r.seen) {
        err_set(&st, DOSSIER_NOMEM, "out of memory");
        goto fail;
    }
    rc = api_scan_kind(n->store, r.k->kind, alen ? after : NULL, alen,
                       run_one, &r, &st);
    if (rc)
        goto fail;
    refs = calloc(r.n ? r.n : 1, sizeof(*refs));
    ptrs = calloc(r.n ? r.n : 1, sizeof(*ptrs));
    if (!refs || !ptrs) {
        err_set(&st, DOSSIER_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < r.n; i++) {
        dossier__v1__record_ref__init(&refs[i]);
        refs[i].kind = (char *)r.k->kind;
        refs[i].id = r.ids[i];
        ptrs[i] = &refs[i];
    }
    /* The token is the last record looked at: its pseudonym. */
    if (r.more)
        sodium_bin2hex(token, sizeof(token), r.last + klen, STORE_RID_BYTES);
    resp.n_records = r.n;
    resp.records = ptrs;
    resp.next_page_token = token;
    if (r.n_seen)
        call_audit_read(c, NULL, (const uint8_t *)r.seen, r.n_seen);
    call_reply(c, &resp.base);
    goto out;
fail:
    call_fail_status(c, &st);
out:
    for (size_t i = 0; r.ids && i < r.n; i++)
        free(r.ids[i]);
    free(r.ids);
    free(r.seen);
    free(refs);
    free(ptrs);
    dossier__v1__segment__free_unpacked(seg, NULL);
}
