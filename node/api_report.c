/* Records/Aggregate: counts and totals per group over every record of a
 * kind, computed in the store, so that a pipeline report (deals per stage
 * with their amounts), tickets per status or activities per owner per week
 * leave the node as figures, never as records.
 *
 * Group keys are values, so a report may not group by a field whose
 * values identify people (group_by_allowed): e-mail addresses, phone
 * numbers, and free text or numbers of the identity, contact and special
 * categories. When the key comes from a field of any other personal
 * category (an enumeration of a special category, a behavioral or
 * financial value), or, in a personal kind, the total does, a group that holds a record about a person is shown only with at
 * least REPORT_MIN_GROUP records; the records of smaller ones are counted
 * as suppressed (suppress_small_groups).
 *
 * Each record is opened as a read of the call's purpose would open it: a
 * record whose subject the purpose may not see is left out (and counted as
 * such), and the fields named must be of categories the purpose sees. The
 * kind is read in slices, so the store's swap lock is never held long;
 * groups are found through a hash table (SipHash under a key drawn per
 * call, so values chosen to collide cannot slow a report down), and a
 * report that reaches the call's deadline stops with DEADLINE_EXCEEDED
 * rather than run on for a caller that is gone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "api.h"
#include "errors.h"
#include "policy.h"
#include "records.h"
#include "store.h"

/* Records read from the store at a time. */
#define SLICE 256
/* Groups one report may have. */
#define GROUPS_MAX 10000
#define KEY_MAX 128
/* Fewest records a group keyed by a personal field must hold to be shown. */
#define REPORT_MIN_GROUP 3
/* A report looks at the time left every this many records, and stops
 * when less than REPORT_MARGIN_MS is left, so that its answer still
 * reaches the caller. */
#define REPORT_DEADLINE_EVERY 64
#define REPORT_MARGIN_MS 20

static const int64_t DAY = 86400000;

struct group {
    char key[KEY_MAX];
    int64_t bucket;
    uint64_t count;
    uint64_t persons; /* records of the group that have a subject */
    double sum;
};

/* ---- reading a kind in slices ---- */

struct kind_slice {
    StoredRecord *sr[SLICE];
    uint8_t rid[SLICE][STORE_RID_BYTES];
    uint8_t key[SLICE][STORE_KEY_MAX];
    size_t klen[SLICE];
    size_t n;
    int more;
};

static int slice_cb(void *arg, const uint8_t *key, size_t klen,
                    const uint8_t *val, size_t vlen)
{
    struct kind_slice *sl = arg;
    if (sl->n == SLICE) {
        sl->more = 1;
        return 1;
    }
    if (klen < STORE_RID_BYTES || klen > STORE_KEY_MAX)
        return DOSSIER_CORRUPT;
    sl->sr[sl->n] = dossier__store__v1__stored_record__unpack(NULL, vlen, val);
    if (!sl->sr[sl->n])
        return DOSSIER_CORRUPT;
    memcpy(sl->rid[sl->n], key + klen - STORE_RID_BYTES, STORE_RID_BYTES);
    memcpy(sl->key[sl->n], key, klen);
    sl->klen[sl->n] = klen;
    sl->n++;
    return 0;
}

int api_scan_kind(struct store *s, const char *kind, const uint8_t *after,
                  size_t after_len, api_record_fn fn, void *arg,
                  struct dossier_status *st)
{
    struct kind_slice *sl = calloc(1, sizeof(*sl));
    uint8_t prefix[SCHEMA_NAME_MAX + 1], last[STORE_KEY_MAX];
    size_t plen = strlen(kind) + 1, last_len = after_len;
    int rc = 0, first = 1, stop = 0;

    if (!sl)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    memcpy(prefix, kind, plen); /* kind 0x00 */
    if (after_len)
        memcpy(last, after, after_len);
    while (rc == 0 && !stop && (first || sl->more)) {
        sl->more = 0;
        sl->n = 0;
        rc = store_scan(s, STORE_RECORD, prefix, plen,
                        last_len ? last : NULL, last_len, slice_cb, sl, st);
        first = 0;
        if (rc == 1)
            rc = 0;
        if (rc == DOSSIER_CORRUPT)
            err_set(st, rc, "a stored record is malformed");
        for (size_t i = 0; i < sl->n; i++) {
            StoredRecord *sr = sl->sr[i];
            sl->sr[i] = NULL;
            if (rc || stop) {
                dossier__store__v1__stored_record__free_unpacked(sr, NULL);
                continue;
            }
            rc = fn(arg, sr, sl->rid[i], sl->key[i], sl->klen[i], st);
            if (rc == 1) {
                stop = 1;
                rc = 0;
            }
            memcpy(last, sl->key[i], sl->klen[i]);
            last_len = sl->klen[i];
        }
    }
    free(sl);
    return rc;
}

/* ---- Aggregate ---- */

struct agg {
    struct call *c;
    const KindSchema *k;
    const char *by, *sum, *time; /* "" when not asked */
    int bucket;                  /* 0 none, 1 day, 2 week, 3 month */
    struct group *g;
    size_t n, cap;
    /* Open addressing over g: each slot holds 1 + the index of a group, 0
     * when empty; n_slots is a power of two, at least twice n. */
    uint32_t *slots;
    size_t n_slots;
    unsigned char hkey[crypto_shorthash_KEYBYTES];
    uint64_t records, left_out, suppressed, looked_at;
    unsigned cats;
};

/* The group key of @v as text ("" for no value). */
static void key_of(const Dossier__V1__Value *v, char *out)
{
    out[0] = '\0';
    if (!v)
        return;
    switch (v->kind_case) {
    case DOSSIER__V1__VALUE__KIND_STRING_VALUE:
        snprintf(out, KEY_MAX, "%s", v->string_value);
        break;
    case DOSSIER__V1__VALUE__KIND_INT_VALUE:
        snprintf(out, KEY_MAX, "%lld", (long long)v->int_value);
        break;
    case DOSSIER__V1__VALUE__KIND_BOOL_VALUE:
        snprintf(out, KEY_MAX, "%s", v->bool_value ? "true" : "false");
        break;
    case DOSSIER__V1__VALUE__KIND_DOUBLE_VALUE:
        snprintf(out, KEY_MAX, "%g", v->double_value);
        break;
    default:
        break;
    }
}

/* Times a bucket can hold: years 0 to 9999 (UTC), in ms since the epoch.
 * Outside them a timestamp field holds no date a calendar shows, and the
 * arithmetic below could overflow: such records go with those without a
 * time. */
#define TIME_MIN_MS INT64_C(-62167219200000) /* 0000-01-01T00:00:00Z */
#define TIME_MAX_MS INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z */

/* The start of the bucket (UTC) that @ms falls in, or INT64_MIN (no time)
 * when @ms is outside years 0 to 9999. */
static int64_t bucket_start(int bucket, int64_t ms)
{
    int64_t day;
    struct tm tm;
    time_t t;

    if (ms < TIME_MIN_MS || ms > TIME_MAX_MS)
        return INT64_MIN;
    day = (ms >= 0 ? ms : ms - DAY + 1) / DAY * DAY;
    switch (bucket) {
    case 1:
        return day;
    case 2: /* weeks start on Monday; 1970-01-01 was a Thursday */
        return day - (((day / DAY) % 7 + 7 + 3) % 7) * DAY;
    case 3:
        /* Floor, not truncation: a time before 1970 that is not on a
         * whole second belongs to the second before. */
        t = (time_t)((ms >= 0 ? ms : ms - 999) / 1000);
        if (!gmtime_r(&t, &tm))
            return INT64_MIN;
        tm.tm_mday = 1;
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        return (int64_t)timegm(&tm) * 1000;
    default:
        return 0;
    }
}

static uint64_t group_hash(const struct agg *a, const char *key,
                           int64_t bucket)
{
    uint8_t buf[8 + KEY_MAX], h[crypto_shorthash_BYTES];
    size_t len = strnlen(key, KEY_MAX - 1);
    uint64_t v;

    memcpy(buf, &bucket, 8);
    memcpy(buf + 8, key, len);
    crypto_shorthash(h, buf, 8 + len, a->hkey);
    memcpy(&v, h, sizeof(v));
    return v;
}

/* The slot of group (@key, @bucket) in @a's table, or of the empty slot
 * where it would go. */
static size_t group_slot(const struct agg *a, const char *key, int64_t bucket)
{
    size_t mask = a->n_slots - 1;
    for (size_t i = group_hash(a, key, bucket) & mask;; i = (i + 1) & mask) {
        const struct group *g;
        if (!a->slots[i])
            return i;
        g = &a->g[a->slots[i] - 1];
        if (g->bucket == bucket && strcmp(g->key, key) == 0)
            return i;
    }
}

/* Makes @a's table @n_slots large (a power of two above a->n).
 * Errors: DOSSIER_NOMEM (the table is then as it was). */
static int groups_rehash(struct agg *a, size_t n_slots)
{
    uint32_t *old = a->slots;
    size_t old_n = a->n_slots;

    if (!(a->slots = calloc(n_slots, sizeof(*a->slots)))) {
        a->slots = old;
        return DOSSIER_NOMEM;
    }
    a->n_slots = n_slots;
    for (size_t i = 0; i < old_n; i++)
        if (old[i]) {
            const struct group *g = &a->g[old[i] - 1];
            a->slots[group_slot(a, g->key, g->bucket)] = old[i];
        }
    free(old);
    return 0;
}

static int add(struct agg *a, const char *key, int64_t bucket, double sum,
               int person)
{
    size_t slot;

    if (!a->slots && groups_rehash(a, 128))
        return DOSSIER_NOMEM;
    slot = group_slot(a, key, bucket);
    if (a->slots[slot]) {
        struct group *g = &a->g[a->slots[slot] - 1];
        g->count++;
        g->persons += person != 0;
        g->sum += sum;
        return 0;
    }
    if (a->n == GROUPS_MAX)
        return DOSSIER_INVALID_ARGUMENT;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        struct group *g = realloc(a->g, cap * sizeof(*g));
        if (!g)
            return DOSSIER_NOMEM;
        a->g = g;
        a->cap = cap;
    }
    if (2 * (a->n + 1) > a->n_slots) {
        if (groups_rehash(a, 2 * a->n_slots))
            return DOSSIER_NOMEM;
        slot = group_slot(a, key, bucket);
    }
    snprintf(a->g[a->n].key, KEY_MAX, "%s", key);
    a->g[a->n].bucket = bucket;
    a->g[a->n].count = 1;
    a->g[a->n].persons = person != 0;
    a->g[a->n].sum = sum;
    a->n++;
    a->slots[slot] = (uint32_t)a->n;
    return 0;
}

/* Counts record @sr (taken) of pseudonym @rid. */
static int count_one(void *arg, StoredRecord *sr, const uint8_t *rid,
                     const uint8_t *rkey, size_t klen,
                     struct dossier_status *st)
{
    struct agg *a = arg;
    struct records_opened o;
    char key[KEY_MAX] = "";
    int64_t bucket = 0;
    double sum = 0;
    int rc, sr_subject;

    (void)rkey;
    (void)klen;
    if (++a->looked_at % REPORT_DEADLINE_EVERY == 0 &&
        call_time_left_ms(a->c) <= REPORT_MARGIN_MS) {
        dossier__store__v1__stored_record__free_unpacked(sr, NULL);
        return err_set(st, DOSSIER_DEADLINE_EXCEEDED,
                       "the report reached the call's deadline after %llu "
                       "records of kind '%s': give it a longer timeout",
                       (unsigned long long)a->looked_at, a->k->kind);
    }
    if (sr->subject.len == STORE_SP_BYTES) {
        rc = api_subject_visible(a->c, sr->subject.data, st);
        if (rc == DOSSIER_PERMISSION_DENIED) {
            a->left_out++;
            dossier__store__v1__stored_record__free_unpacked(sr, NULL);
            return 0;
        }
        if (rc) {
            dossier__store__v1__stored_record__free_unpacked(sr, NULL);
            return rc;
        }
    }
    sr_subject = sr->subject.len == STORE_SP_BYTES;
    rc = records_open(call_node(a->c), sr, rid, a->cats, &o, st);
    if (rc == DOSSIER_NOT_FOUND)
        return 0; /* deleted while its links were read: as pages do */
    if (rc)
        return rc;
    if (a->by[0])
        key_of(records_field_value(&o.rec, a->by), key);
    if (a->sum[0]) {
        const Dossier__V1__Value *v = records_field_value(&o.rec, a->sum);
        if (v && v->kind_case == DOSSIER__V1__VALUE__KIND_DOUBLE_VALUE)
            sum = v->double_value;
        else if (v && v->kind_case == DOSSIER__V1__VALUE__KIND_INT_VALUE)
            sum = (double)v->int_value;
    }
    if (a->bucket) {
        int64_t t = strcmp(a->time, "created_at") == 0   ? o.rec.created_at_ms
                    : strcmp(a->time, "updated_at") == 0 ? o.rec.updated_at_ms
                                                         : INT64_MIN;
        if (t == INT64_MIN) {
            const Dossier__V1__Value *v = records_field_value(&o.rec, a->time);
            t = v && v->kind_case == DOSSIER__V1__VALUE__KIND_INT_VALUE
                    ? v->int_value
                    : INT64_MIN;
        }
        bucket = t == INT64_MIN ? INT64_MIN : bucket_start(a->bucket, t);
    }
    records_opened_release(&o);
    a->records++;
    rc = add(a, key, bucket, sum, sr_subject);
    if (rc == DOSSIER_INVALID_ARGUMENT)
        return err_set(st, rc, "more than %d groups: group by a field with "
                       "fewer values", GROUPS_MAX);
    if (rc)
        return err_set(st, rc, "out of memory");
    return 0;
}

/* Checks that @name is a field of the kind of one of @types (bit per
 * FieldType) that the purpose of @c may see. */
static int check_field(struct call *c, const KindSchema *k, const char *what,
                       const char *name, unsigned types,
                       struct dossier_status *st)
{
    const FieldSchema *f = schema_field(k, name);
    if (!f)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "%s: kind '%s' has no field '%.64s'", what, k->kind,
                       name);
    if (!(types & (1u << f->type)))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "%s: field '%s' has a type that cannot be used here",
                       what, f->name);
    if (!(api_visible_categories(c) & (1u << f->category)))
        return err_set(st, DOSSIER_PERMISSION_DENIED,
                       "%s: purpose '%s' may not see field '%s'", what,
                       call_purpose(c), f->name);
    return 0;
}

#define TYPE(t) (1u << DOSSIER__V1__FIELD_TYPE__FIELD_TYPE_##t)
#define CAT(c) DOSSIER__V1__CATEGORY__CATEGORY_##c

/* Whether a report may group by @f: not when its values identify people,
 * for they would leave the node as group keys, one per person, with an
 * audit entry that names nobody. E-mail addresses and phone numbers never;
 * free text and numbers of the identity, contact and special categories
 * (names, addresses, dates of birth, customer numbers) neither.
 * Enumerations and flags always may: their values are the schema's. */
static int group_by_allowed(const FieldSchema *f, struct dossier_status *st)
{
    int identifying = f->category == CAT(IDENTITY) ||
                      f->category == CAT(CONTACT) ||
                      f->category == CAT(SPECIAL);
    unsigned t = 1u << f->type;

    if ((t & (TYPE(EMAIL) | TYPE(PHONE))) ||
        (identifying && (t & (TYPE(STRING) | TYPE(INT)))))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "group_by: field '%s' (%s, %s) identifies people, and "
                       "a report's group keys leave the node: group by an "
                       "enumeration, a flag or an operational field",
                       f->name,
                       dossier_field_type_name((enum dossier_field_type)f->type),
                       dossier_category_name((enum dossier_category)f->category));
    return 0;
}

/* 1 when field @name of @a's kind is of a personal category (anything
 * but operational); "" is not. */
static int personal_field(const struct agg *a, const char *name)
{
    const FieldSchema *f;
    if (!name[0])
        return 0;
    f = schema_field(a->k, name);
    return f && f->category != CAT(OPERATIONAL);
}

/* Leaves out of @a the groups of fewer than REPORT_MIN_GROUP records that
 * hold a record about a person (one with a subject), counting their
 * records as suppressed, when the group's key comes from a field of a
 * personal category, or, for a personal kind (its records are about
 * people: contacts, tickets, activities), when its total does: the score
 * or credit limit of a group of one or two is a person's value. A time
 * bucket says when something happened, not to whom, so activities per
 * owner per week show every week; and a deal's amount stays in the
 * pipeline report however few deals a stage holds (a deal is not a
 * personal kind, even when it names its contact). */
static void suppress_small_groups(struct agg *a)
{
    size_t kept = 0;

    if (!personal_field(a, a->by) &&
        !(a->k->personal && personal_field(a, a->sum)))
        return;
    for (size_t i = 0; i < a->n; i++) {
        if (a->g[i].count < REPORT_MIN_GROUP && a->g[i].persons > 0)
            a->suppressed += a->g[i].count;
        else
            a->g[kept++] = a->g[i];
    }
    a->n = kept;
}

static int cmp_group(const void *x, const void *y)
{
    const struct group *a = x, *b = y;
    if (a->bucket != b->bucket)
        return a->bucket < b->bucket ? -1 : 1;
    return strcmp(a->key, b->key);
}

void api_records_aggregate(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__AggregateRequest *req = (Dossier__V1__AggregateRequest *)msg;
    Dossier__V1__AggregateResult resp = DOSSIER__V1__AGGREGATE_RESULT__INIT;
    Dossier__V1__AggregateRow *rows = NULL, **ptrs = NULL;
    struct node *n = call_node(c);
    struct dossier_status st;
    struct agg *a;
    int rc;

    a = calloc(1, sizeof(*a));
    if (!a)
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    a->c = c;
    randombytes_buf(a->hkey, sizeof(a->hkey));
    a->by = req->group_by;
    a->sum = req->sum;
    a->time = req->time_field;
    if (records_kind(n, req->kind, &a->k, &st))
        goto fail;
    if (strcmp(req->bucket, "") == 0)
        a->bucket = 0;
    else if (strcmp(req->bucket, "day") == 0)
        a->bucket = 1;
    else if (strcmp(req->bucket, "week") == 0)
        a->bucket = 2;
    else if (strcmp(req->bucket, "month") == 0)
        a->bucket = 3;
    else {
        err_set(&st, DOSSIER_INVALID_ARGUMENT,
                "bucket must be day, week, month or empty");
        goto fail;
    }
    if (!a->bucket != !a->time[0]) {
        err_set(&st, DOSSIER_INVALID_ARGUMENT,
                "bucket and time_field go together");
        goto fail;
    }
    if ((a->by[0] &&
         (check_field(c, a->k, "group_by", a->by,
                      TYPE(STRING) | TYPE(ENUM) | TYPE(BOOL) | TYPE(INT) |
                          TYPE(EMAIL) | TYPE(PHONE),
                      &st) ||
          group_by_allowed(schema_field(a->k, a->by), &st))) ||
        (a->sum[0] && check_field(c, a->k, "sum", a->sum,
                                  TYPE(INT) | TYPE(DOUBLE), &st)) ||
        (a->time[0] && strcmp(a->time, "created_at") != 0 &&
         strcmp(a->time, "updated_at") != 0 &&
         check_field(c, a->k, "time_field", a->time, TYPE(TIMESTAMP), &st)))
        goto fail;

    a->cats = api_visible_categories(c);
    rc = api_scan_kind(n->store, a->k->kind, NULL, 0, count_one, a, &st);
    if (rc)
        goto fail;
    suppress_small_groups(a);
    if (a->n)
        qsort(a->g, a->n, sizeof(*a->g), cmp_group);
    rows = calloc(a->n ? a->n : 1, sizeof(*rows));
    ptrs = calloc(a->n ? a->n : 1, sizeof(*ptrs));
    if (!rows || !ptrs) {
        err_set(&st, DOSSIER_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < a->n; i++) {
        dossier__v1__aggregate_row__init(&rows[i]);
        rows[i].key = a->g[i].key;
        rows[i].no_time = a->bucket && a->g[i].bucket == INT64_MIN;
        rows[i].bucket_start_ms = rows[i].no_time ? 0 : a->g[i].bucket;
        rows[i].count = a->g[i].count;
        rows[i].sum = a->g[i].sum;
        ptrs[i] = &rows[i];
    }
    resp.n_rows = a->n;
    resp.rows = ptrs;
    resp.records = a->records;
    resp.left_out = a->left_out;
    resp.suppressed = a->suppressed;
    /* Figures only, none of them a person's value (group_by_allowed,
     * suppress_small_groups): the audit entry names no subject and no
     * record. */
    call_audit_read(c, NULL, NULL, 0);
    call_reply(c, &resp.base);
    free(rows);
    free(ptrs);
    free(a->slots);
    free(a->g);
    free(a);
    return;
fail:
    call_fail_status(c, &st);
    free(rows);
    free(ptrs);
    free(a->slots);
    free(a->g);
    free(a);
}
