/* Unit tests of kinds: the built-in CRM kinds, validation and normalisation
 * of records, index values, definitions, compatibility and the registry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "schema.h"
#include "testutil.h"

#define T(x) DOSSIER__V1__FIELD_TYPE__FIELD_TYPE_##x
#define C(x) DOSSIER__V1__CATEGORY__CATEGORY_##x
#define V(x) DOSSIER__V1__VALUE__KIND_##x

/* The registry every test starts from, holding the built-in kinds. */
static int setup(void **state)
{
    struct schema_registry *r = schema_registry_new();
    *state = r;
    return r ? 0 : -1;
}

static int teardown(void **state)
{
    schema_registry_free(*state);
    return 0;
}

static const KindSchema *kind_of(void **state, const char *name)
{
    const KindSchema *k = schema_registry_get(*state, name);
    if (!k)
        fail_msg("no kind '%s'", name);
    return k;
}

/* ------------------------------------------------------------------ */
/* Records built on the stack. String values are copied into the record's
 * own buffers, since checking normalises them in place. */

#define REC_MAX 8

struct rec {
    Dossier__V1__Record r;
    Dossier__V1__Field f[REC_MAX];
    Dossier__V1__Field *fp[REC_MAX];
    Dossier__V1__Value v[REC_MAX];
    char s[REC_MAX][300];
};

static void rec_init(struct rec *x, const char *kind)
{
    memset(x, 0, sizeof(*x));
    dossier__v1__record__init(&x->r);
    x->r.kind = (char *)kind;
    x->r.id = "r-1";
    x->r.fields = x->fp;
}

static Dossier__V1__Value *rec_add(struct rec *x, const char *name)
{
    size_t i = x->r.n_fields++;
    assert_true(i < REC_MAX);
    dossier__v1__field__init(&x->f[i]);
    dossier__v1__value__init(&x->v[i]);
    x->f[i].name = (char *)name;
    x->f[i].value = &x->v[i];
    x->fp[i] = &x->f[i];
    return &x->v[i];
}

static void rec_str(struct rec *x, const char *name, const char *s)
{
    Dossier__V1__Value *v = rec_add(x, name);
    size_t i = x->r.n_fields - 1;
    assert_true(strlen(s) < sizeof(x->s[i]));
    strcpy(x->s[i], s);
    v->kind_case = V(STRING_VALUE);
    v->string_value = x->s[i];
}

static void rec_int(struct rec *x, const char *name, int64_t n)
{
    Dossier__V1__Value *v = rec_add(x, name);
    v->kind_case = V(INT_VALUE);
    v->int_value = n;
}

static void rec_double(struct rec *x, const char *name, double d)
{
    Dossier__V1__Value *v = rec_add(x, name);
    v->kind_case = V(DOUBLE_VALUE);
    v->double_value = d;
}

/* Asserts that checking @x against @k fails with SCHEMA_VIOLATION and a
 * message naming @field. */
static void assert_violation(const KindSchema *k, struct rec *x,
                             const char *field)
{
    struct dossier_status st;
    char quoted[80];
    assert_int_equal(schema_check_record(k, &x->r, &st),
                     DOSSIER_SCHEMA_VIOLATION);
    assert_int_equal(st.code, DOSSIER_SCHEMA_VIOLATION);
    snprintf(quoted, sizeof(quoted), "'%s'", field);
    assert_contains(st.message, quoted);
}

/* Asserts that a contact whose @field is @value is refused, naming it. */
static void assert_contact_string_refused(void **state, const char *field,
                                          const char *value)
{
    struct rec x;
    rec_init(&x, "contact");
    rec_str(&x, field, value);
    assert_violation(kind_of(state, "contact"), &x, field);
}

static void assert_contact_ok(void **state, struct rec *x)
{
    struct dossier_status st;
    if (schema_check_record(kind_of(state, "contact"), &x->r, &st) != 0)
        fail_msg("refused: %s", st.message);
}

/* ------------------------------------------------------------------ */
/* Definitions built on the stack */

#define DEF_MAX 4

struct def {
    KindSchema k;
    FieldSchema f[DEF_MAX];
    FieldSchema *fp[DEF_MAX];
    char *allowed[DEF_MAX][4];
};

/* A valid definition of kind @name: "title" (string, required), "email"
 * (email, indexed) and "state" (enum "open|closed"). */
static void def_init(struct def *d, const char *name)
{
    memset(d, 0, sizeof(*d));
    dossier__v1__kind_schema__init(&d->k);
    d->k.kind = (char *)name;
    d->k.personal = 1;
    d->k.fields = d->fp;
    d->k.n_fields = 3;
    for (int i = 0; i < DEF_MAX; i++) {
        dossier__v1__field_schema__init(&d->f[i]);
        d->fp[i] = &d->f[i];
    }
    d->f[0].name = "title";
    d->f[0].type = T(STRING);
    d->f[0].category = C(BEHAVIORAL);
    d->f[0].required = 1;
    d->f[1].name = "email";
    d->f[1].type = T(EMAIL);
    d->f[1].category = C(CONTACT);
    d->f[1].indexed = 1;
    d->f[2].name = "state";
    d->f[2].type = T(ENUM);
    d->f[2].category = C(OPERATIONAL);
    d->allowed[2][0] = "open";
    d->allowed[2][1] = "closed";
    d->f[2].allowed_values = d->allowed[2];
    d->f[2].n_allowed_values = 2;
}

/* A copy of @k allocated as an unpacked message, for the registry. */
static KindSchema *kind_copy(const KindSchema *k)
{
    size_t len = dossier__v1__kind_schema__get_packed_size(k);
    uint8_t *buf = malloc(len ? len : 1);
    KindSchema *out;
    assert_non_null(buf);
    dossier__v1__kind_schema__pack(k, buf);
    out = dossier__v1__kind_schema__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(out);
    return out;
}

static void assert_definition_refused(struct def *d)
{
    struct dossier_status st;
    assert_int_equal(schema_check_definition(&d->k, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
}

static void assert_incompatible(const struct def *prev, const struct def *next)
{
    struct dossier_status st;
    assert_int_equal(schema_check_compatible(&prev->k, &next->k, &st),
                     DOSSIER_FAILED_PRECONDITION);
    assert_int_equal(st.code, DOSSIER_FAILED_PRECONDITION);
}

/* ------------------------------------------------------------------ */
/* Built-in kinds */

/* The five built-in kinds exist, marked built-in, with their personal
 * flags: contact, activity and ticket are about a person; company and deal
 * are not. */
static void test_builtin_kinds_exist_with_personal_flags(void **state)
{
    static const struct {
        const char *name;
        int personal;
    } want[] = {{"activity", 1}, {"company", 0}, {"contact", 1},
                {"deal", 0},     {"ticket", 1}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const KindSchema *k = kind_of(state, want[i].name);
        assert_string_equal(k->kind, want[i].name);
        assert_int_equal(k->personal, want[i].personal);
        assert_true(k->builtin);
        assert_true(schema_is_builtin(want[i].name));
    }
    assert_false(schema_is_builtin("widget"));
    assert_null(schema_registry_get(*state, "widget"));
}

/* The contact's email and phone are indexed fields of their own types, so
 * contacts can be found by them. */
static void test_contact_email_and_phone_are_indexed(void **state)
{
    const KindSchema *k = kind_of(state, "contact");
    const FieldSchema *email = schema_field(k, "email");
    const FieldSchema *phone = schema_field(k, "phone");
    assert_non_null(email);
    assert_non_null(phone);
    assert_int_equal(email->type, T(EMAIL));
    assert_int_equal(phone->type, T(PHONE));
    assert_true(email->indexed);
    assert_true(phone->indexed);
    assert_null(schema_field(k, "no_such_field"));
}

/* Every built-in kind passes the checks a user's definition must pass. */
static void test_builtin_kinds_are_valid_definitions(void **state)
{
    const KindSchema **all;
    size_t n;
    struct dossier_status st;

    assert_int_equal(schema_registry_list(*state, &all, &n), 0);
    for (size_t i = 0; i < n; i++)
        if (schema_check_definition(all[i], &st) != 0)
            fail_msg("built-in kind '%s': %s", all[i]->kind, st.message);
    free(all);
}

/* ------------------------------------------------------------------ */
/* Names and text */

/* Names are [a-z][a-z0-9_]{0,62}. */
static void test_name_valid_accepts_only_lower_snake_case_up_to_63(
    void **state)
{
    char longest[64], too_long[65];
    (void)state;
    memset(longest, 'a', 63);
    longest[63] = '\0';
    memset(too_long, 'a', 64);
    too_long[64] = '\0';
    assert_true(schema_name_valid("a"));
    assert_true(schema_name_valid("first_name"));
    assert_true(schema_name_valid("x9_"));
    assert_true(schema_name_valid(longest));
    assert_false(schema_name_valid(too_long));
    assert_false(schema_name_valid(""));
    assert_false(schema_name_valid(NULL));
    assert_false(schema_name_valid("First"));
    assert_false(schema_name_valid("_a"));
    assert_false(schema_name_valid("1a"));
    assert_false(schema_name_valid("a-b"));
    assert_false(schema_name_valid("a b"));
    assert_false(schema_name_valid("caf\xc3\xa9"));
}

/* schema_utf8_valid accepts well-formed UTF-8 of one to four bytes per
 * character, up to U+10FFFF. */
static void test_utf8_valid_accepts_well_formed_text(void **state)
{
    static const char *const good[] = {
        "",
        "plain ascii",
        "Zo\xc3\xab",                 /* U+00EB */
        "\xe6\x97\xa5\xe6\x9c\xac",   /* U+65E5 U+672C */
        "\xed\x9f\xbf",               /* U+D7FF, just below surrogates */
        "\xee\x80\x80",               /* U+E000, just above */
        "\xf0\x9f\x98\x80",           /* U+1F600 */
        "\xf4\x8f\xbf\xbf",           /* U+10FFFF */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!schema_utf8_valid(good[i], strlen(good[i])))
            fail_msg("refused valid UTF-8 #%zu", i);
}

/* Invalid UTF-8 sequences. */
static const char *const bad_utf8[] = {
    "\xc0\xaf",         /* overlong '/' in two bytes */
    "\xc1\xbf",         /* overlong in two bytes */
    "\xe0\x80\xaf",     /* overlong '/' in three bytes */
    "\xf0\x80\x80\xaf", /* overlong '/' in four bytes */
    "\xed\xa0\x80",     /* U+D800, a high surrogate */
    "\xed\xbf\xbf",     /* U+DFFF, a low surrogate */
    "\xe2\x82",         /* truncated three-byte sequence (euro sign) */
    "ab\xf0\x9f\x98",   /* truncated four-byte sequence at the end */
    "\xc3",             /* lone lead byte */
    "\x80",             /* stray continuation byte */
    "a\xbf" "b",        /* stray continuation byte inside text */
    "\xc3\x28",         /* lead byte followed by ASCII */
    "\xf4\x90\x80\x80", /* U+110000, past the last code point */
    "\xf8\x88\x80\x80\x80", /* five-byte form */
    "\xfe",
    "\xff",
};

/* schema_utf8_valid refuses overlong forms, surrogates, truncated
 * sequences, stray continuation bytes and code points past U+10FFFF. */
static void test_utf8_valid_refuses_ill_formed_text(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++)
        if (schema_utf8_valid(bad_utf8[i], strlen(bad_utf8[i])))
            fail_msg("accepted invalid UTF-8 #%zu", i);
}

/* A NUL byte inside the given length is refused. */
static void test_utf8_valid_refuses_nul_byte(void **state)
{
    (void)state;
    assert_false(schema_utf8_valid("a\0b", 3));
}

/* A record whose string value is invalid UTF-8 is a schema violation
 * naming the field, for each kind of invalid sequence. */
static void test_record_with_invalid_utf8_is_refused_naming_field(
    void **state)
{
    for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++)
        assert_contact_string_refused(state, "first_name", bad_utf8[i]);
}

/* ------------------------------------------------------------------ */
/* Records */

/* A contact with fields of every type it has passes, unchanged. */
static void test_valid_contact_passes(void **state)
{
    struct rec x;
    rec_init(&x, "contact");
    rec_str(&x, "first_name", "Ada");
    rec_str(&x, "email", "ada@example.com");
    rec_str(&x, "phone", "+442079460018");
    rec_str(&x, "lifecycle_stage", "customer");
    rec_int(&x, "lead_score", 42);
    rec_double(&x, "credit_limit", 1500.5);
    rec_str(&x, "accessibility_needs", "Zo\xc3\xab \xf0\x9f\x98\x80");
    assert_contact_ok(state, &x);
    assert_string_equal(x.v[2].string_value, "+442079460018");
    assert_true(x.v[5].double_value == 1500.5);
}

/* A field the kind does not define is refused, naming the field. */
static void test_unknown_field_is_refused(void **state)
{
    assert_contact_string_refused(state, "shoe_size", "42");
}

/* A field name that is not a valid name is refused. */
static void test_field_with_invalid_name_is_refused(void **state)
{
    struct rec x;
    struct dossier_status st;
    rec_init(&x, "contact");
    rec_str(&x, "first_name", "Ada");
    rec_str(&x, "Last Name", "Lovelace");
    assert_int_equal(schema_check_record(kind_of(state, "contact"), &x.r, &st),
                     DOSSIER_SCHEMA_VIOLATION);
    assert_contains(st.message, "field 2");
}

/* A value of the wrong type is refused, naming the field. */
static void test_value_of_wrong_type_is_refused(void **state)
{
    struct rec x;
    rec_init(&x, "contact");
    rec_str(&x, "lead_score", "42");
    assert_violation(kind_of(state, "contact"), &x, "lead_score");

    rec_init(&x, "contact");
    rec_int(&x, "first_name", 7);
    assert_violation(kind_of(state, "contact"), &x, "first_name");

    rec_init(&x, "contact");
    rec_double(&x, "last_seen_at", 1.5); /* timestamps are integers */
    assert_violation(kind_of(state, "contact"), &x, "last_seen_at");
}

/* A missing required field is refused, naming it. */
static void test_missing_required_field_is_refused(void **state)
{
    struct rec x;
    rec_init(&x, "company");
    rec_str(&x, "domain", "example.com");
    assert_violation(kind_of(state, "company"), &x, "name");
}

/* A required field given as null counts as missing. */
static void test_null_required_field_counts_as_missing(void **state)
{
    struct rec x;
    rec_init(&x, "company");
    rec_add(&x, "name"); /* no member set: null */
    assert_violation(kind_of(state, "company"), &x, "name");
}

/* A null optional field is absent: the record passes. */
static void test_null_optional_field_is_accepted(void **state)
{
    struct rec x;
    rec_init(&x, "contact");
    rec_add(&x, "email");
    x.f[0].value = NULL; /* no Value at all */
    rec_add(&x, "lead_score");
    assert_contact_ok(state, &x);
}

/* A field given twice is refused, naming it. */
static void test_duplicate_field_is_refused(void **state)
{
    struct rec x;
    rec_init(&x, "contact");
    rec_str(&x, "first_name", "Ada");
    rec_str(&x, "email", "ada@example.com");
    rec_str(&x, "first_name", "Augusta");
    assert_violation(kind_of(state, "contact"), &x, "first_name");
}

/* Malformed email addresses are refused, naming the field. */
static void test_bad_email_is_refused(void **state)
{
    static const char *const bad[] = {
        "ada",                  "ada@",
        "@example.com",         "ada@example",
        "ada@@example.com",     "ada@b@example.com",
        "ada lovelace@example.com", "ada@example..com",
        "ada@.example.com",     "ada@example.com.",
        "ada\t@example.com",    "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_contact_string_refused(state, "email", bad[i]);
}

/* Email addresses that are unusual but valid pass. */
static void test_unusual_valid_email_is_accepted(void **state)
{
    static const char *const good[] = {"Ada.Lovelace+crm@Example.CO.uk",
                                       "a@b.c", "o'brien@example.ie"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct rec x;
        rec_init(&x, "contact");
        rec_str(&x, "email", good[i]);
        assert_contact_ok(state, &x);
    }
}

/* A phone number without a country code is refused rather than guessed. */
static void test_phone_without_country_code_is_refused(void **state)
{
    assert_contact_string_refused(state, "phone", "020 7946 0018");
    assert_contact_string_refused(state, "phone", "2079460018");
}

/* A phone number with a country code starting with 0, fewer than 8 or more
 * than 15 digits, or other characters than digits and separators is
 * refused. */
static void test_malformed_phone_is_refused(void **state)
{
    static const char *const bad[] = {
        "+0 20 7946 0018", "+1234567",      "+1234567890123456",
        "+44 20 7946 001x", "+44#2079460018", "+", "", "0044",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_contact_string_refused(state, "phone", bad[i]);
}

/* Phones are normalised in place to E.164: separators dropped. */
static void test_phone_is_normalised_to_e164(void **state)
{
    struct rec x;
    rec_init(&x, "contact");
    rec_str(&x, "phone", "+44 (20) 7946-0018");
    assert_contact_ok(state, &x);
    assert_string_equal(x.v[0].string_value, "+442079460018");

    rec_init(&x, "contact");
    rec_str(&x, "phone", " +1 415.555.0100 / 2");
    assert_contact_ok(state, &x);
    assert_string_equal(x.v[0].string_value, "+141555501002");
}

/* A leading international prefix 00 becomes +. */
static void test_phone_with_00_prefix_becomes_plus(void **state)
{
    struct rec x;
    rec_init(&x, "contact");
    rec_str(&x, "phone", "0044 20 7946 0018");
    assert_contact_ok(state, &x);
    assert_string_equal(x.v[0].string_value, "+442079460018");
}

/* A tag set is normalised in place: blanks around tags dropped, lower
 * case, each tag once, sorted; an all-blank value is the empty set. */
static void test_tags_are_normalised(void **state)
{
    static const char *const cases[][2] = {
        {"VIP, eu ,vip", "eu,vip"},
        {"b,a,c,a", "a,b,c"},
        {"x.y:z/w-1_2", "x.y:z/w-1_2"},
        {"", ""},
        {"  ", ""},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[64];
        snprintf(buf, sizeof(buf), "%s", cases[i][0]);
        assert_int_equal(schema_tags_normalize(buf), 0);
        assert_string_equal(buf, cases[i][1]);
    }
    assert_true(schema_tags_has("eu,vip", "vip"));
    assert_true(schema_tags_has("eu,vip", "eu"));
    assert_false(schema_tags_has("eu,vip", "v"));
    assert_false(schema_tags_has("eu,vip", "eu,vip"));
    assert_false(schema_tags_has("", "eu"));
}

/* A tags value with an empty tag, a blank or another character inside a
 * tag, a tag of more than 64 bytes or more than 64 tags is refused, naming
 * the field. */
static void test_bad_tags_are_refused(void **state)
{
    char long_tag[80], many[400] = "";
    static const char *const bad[] = {"a,,b", "a,", "not ok", "vip!",
                                      "caf\xc3\xa9"};
    memset(long_tag, 'a', 65);
    long_tag[65] = '\0';
    for (int i = 0; i < 65; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s%d",
                 i ? "," : "", i);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_contact_string_refused(state, "tags", bad[i]);
    assert_contact_string_refused(state, "tags", long_tag);
    assert_contact_string_refused(state, "tags", many);
}

/* An enum value outside the allowed values is refused, naming the field;
 * allowed values match exactly (case included). */
static void test_enum_value_not_allowed_is_refused(void **state)
{
    struct rec x;
    assert_contact_string_refused(state, "lifecycle_stage", "prospect");
    assert_contact_string_refused(state, "lifecycle_stage", "Customer");
    rec_init(&x, "contact");
    rec_str(&x, "lifecycle_stage", "evangelist");
    assert_contact_ok(state, &x);
}

/* An integer given for a double field becomes a double. */
static void test_int_for_double_field_becomes_double(void **state)
{
    struct rec x;
    rec_init(&x, "contact");
    rec_int(&x, "credit_limit", 1500);
    assert_contact_ok(state, &x);
    assert_int_equal(x.v[0].kind_case, V(DOUBLE_VALUE));
    assert_true(x.v[0].double_value == 1500.0);
}

/* A double field refuses NaN and infinities. */
static void test_double_field_refuses_non_finite(void **state)
{
    struct rec x;
    rec_init(&x, "contact");
    rec_double(&x, "credit_limit", strtod("nan", NULL));
    assert_violation(kind_of(state, "contact"), &x, "credit_limit");
    rec_init(&x, "contact");
    rec_double(&x, "credit_limit", strtod("-inf", NULL));
    assert_violation(kind_of(state, "contact"), &x, "credit_limit");
}

/* A string longer than SCHEMA_VALUE_MAX bytes is refused; one of exactly
 * SCHEMA_VALUE_MAX passes. */
static void test_string_longer_than_limit_is_refused(void **state)
{
    const KindSchema *k = kind_of(state, "contact");
    char *big = malloc(SCHEMA_VALUE_MAX + 2);
    struct dossier_status st;
    struct rec x;

    assert_non_null(big);
    memset(big, 'a', SCHEMA_VALUE_MAX + 1);
    big[SCHEMA_VALUE_MAX + 1] = '\0';
    rec_init(&x, "contact");
    rec_add(&x, "address");
    x.v[0].kind_case = V(STRING_VALUE);
    x.v[0].string_value = big;
    assert_int_equal(schema_check_record(k, &x.r, &st),
                     DOSSIER_SCHEMA_VIOLATION);
    assert_contains(st.message, "'address'");
    big[SCHEMA_VALUE_MAX] = '\0';
    assert_int_equal(schema_check_record(k, &x.r, &st), 0);
    free(big);
}

/* ------------------------------------------------------------------ */
/* Index values */

/* Asserts that the index value of @v for field @field of @kind is @want. */
static void assert_index_value(void **state, const char *kind,
                               const char *field, Dossier__V1__Value *v,
                               const char *want)
{
    const KindSchema *k = kind_of(state, kind);
    char out[SCHEMA_NORM_MAX];
    size_t len = 0;
    struct dossier_status st;

    if (schema_index_value(k, schema_field(k, field), v, out, sizeof(out),
                           &len, &st) != 0)
        fail_msg("index value refused: %s", st.message);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(out, want, len);
}

/* Emails are indexed lower-cased, and the caller's value is left as it
 * was. */
static void test_index_value_lower_cases_email(void **state)
{
    char s[] = "Ada.Lovelace@Example.COM";
    Dossier__V1__Value v = DOSSIER__V1__VALUE__INIT;
    v.kind_case = V(STRING_VALUE);
    v.string_value = s;
    assert_index_value(state, "contact", "email", &v,
                       "ada.lovelace@example.com");
    assert_string_equal(s, "Ada.Lovelace@Example.COM");
}

/* Phones are indexed in E.164, so any spelling of a number finds it. */
static void test_index_value_of_phone_is_e164(void **state)
{
    char s[] = "0044 (20) 7946-0018";
    Dossier__V1__Value v = DOSSIER__V1__VALUE__INIT;
    v.kind_case = V(STRING_VALUE);
    v.string_value = s;
    assert_index_value(state, "contact", "phone", &v, "+442079460018");
    assert_string_equal(s, "0044 (20) 7946-0018");
}

/* Integers are indexed in decimal. */
static void test_index_value_of_int_is_decimal(void **state)
{
    struct def d;
    Dossier__V1__Value v = DOSSIER__V1__VALUE__INIT;
    def_init(&d, "invoice");
    d.f[0].name = "number";
    d.f[0].type = T(INT);
    d.f[0].indexed = 1;
    assert_int_equal(schema_registry_set(*state, kind_copy(&d.k)), 0);
    v.kind_case = V(INT_VALUE);
    v.int_value = -9007199254740993;
    assert_index_value(state, "invoice", "number", &v, "-9007199254740993");
}

/* A field that is not indexed has no index value: INVALID_ARGUMENT. */
static void test_index_value_refuses_field_not_indexed(void **state)
{
    const KindSchema *k = kind_of(state, "contact");
    Dossier__V1__Value v = DOSSIER__V1__VALUE__INIT;
    char out[SCHEMA_NORM_MAX];
    size_t len;
    struct dossier_status st;

    v.kind_case = V(STRING_VALUE);
    v.string_value = "Ada";
    assert_int_equal(schema_index_value(k, schema_field(k, "first_name"), &v,
                                        out, sizeof(out), &len, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
}

/* A query value that would not be valid in a write (a bad email, a wrong
 * type) is INVALID_ARGUMENT, the caller's error, not a schema violation. */
static void test_index_value_refuses_invalid_value(void **state)
{
    const KindSchema *k = kind_of(state, "contact");
    const FieldSchema *f = schema_field(k, "email");
    Dossier__V1__Value v = DOSSIER__V1__VALUE__INIT;
    char out[SCHEMA_NORM_MAX];
    size_t len;
    struct dossier_status st;

    v.kind_case = V(STRING_VALUE);
    v.string_value = "not an email";
    assert_int_equal(schema_index_value(k, f, &v, out, sizeof(out), &len, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    v.kind_case = V(INT_VALUE);
    v.int_value = 3;
    assert_int_equal(schema_index_value(k, f, &v, out, sizeof(out), &len, &st),
                     DOSSIER_INVALID_ARGUMENT);
}

/* The status is optional: without one, an invalid query value is still
 * DOSSIER_INVALID_ARGUMENT. */
static void test_index_value_without_status_gives_same_code(void **state)
{
    const KindSchema *k = kind_of(state, "contact");
    Dossier__V1__Value v = DOSSIER__V1__VALUE__INIT;
    char out[SCHEMA_NORM_MAX];
    size_t len;

    v.kind_case = V(STRING_VALUE);
    v.string_value = "not an email";
    assert_int_equal(schema_index_value(k, schema_field(k, "email"), &v, out,
                                        sizeof(out), &len, NULL),
                     DOSSIER_INVALID_ARGUMENT);
}

/* A normalised value longer than the caller's buffer is INVALID_ARGUMENT. */
static void test_index_value_refuses_value_longer_than_buffer(void **state)
{
    const KindSchema *k = kind_of(state, "contact");
    Dossier__V1__Value v = DOSSIER__V1__VALUE__INIT;
    char out[8];
    size_t len;
    struct dossier_status st;

    v.kind_case = V(STRING_VALUE);
    v.string_value = "ada@example.com";
    assert_int_equal(schema_index_value(k, schema_field(k, "email"), &v, out,
                                        sizeof(out), &len, &st),
                     DOSSIER_INVALID_ARGUMENT);
}

/* ------------------------------------------------------------------ */
/* Definitions */

/* A well-formed definition passes. */
static void test_valid_definition_passes(void **state)
{
    struct def d;
    struct dossier_status st;
    (void)state;
    def_init(&d, "support_case");
    assert_int_equal(schema_check_definition(&d.k, &st), 0);
}

/* A kind name that is not [a-z][a-z0-9_]{0,62} is refused. */
static void test_definition_refuses_bad_kind_name(void **state)
{
    static const char *const bad[] = {"", "Case", "1case", "support-case",
                                      "_case"};
    struct def d;
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        def_init(&d, bad[i]);
        assert_definition_refused(&d);
    }
}

/* A field name that is not valid is refused. */
static void test_definition_refuses_bad_field_name(void **state)
{
    struct def d;
    (void)state;
    def_init(&d, "support_case");
    d.f[1].name = "E-mail";
    assert_definition_refused(&d);
}

/* A kind without fields is refused. */
static void test_definition_refuses_kind_without_fields(void **state)
{
    struct def d;
    (void)state;
    def_init(&d, "support_case");
    d.k.n_fields = 0;
    assert_definition_refused(&d);
}

/* A field defined twice is refused. */
static void test_definition_refuses_duplicate_field(void **state)
{
    struct def d;
    (void)state;
    def_init(&d, "support_case");
    d.f[2].name = "title";
    d.f[2].type = T(STRING);
    d.f[2].n_allowed_values = 0;
    assert_definition_refused(&d);
}

/* A field without a type, or with a type outside the enum, is refused. */
static void test_definition_refuses_missing_or_unknown_type(void **state)
{
    struct def d;
    (void)state;
    def_init(&d, "support_case");
    d.f[0].type = T(UNSPECIFIED);
    assert_definition_refused(&d);
    def_init(&d, "support_case");
    d.f[0].type = 99;
    assert_definition_refused(&d);
}

/* A field without a category, or with a category outside the enum, is
 * refused. */
static void test_definition_refuses_missing_or_unknown_category(void **state)
{
    struct def d;
    (void)state;
    def_init(&d, "support_case");
    d.f[1].category = C(UNSPECIFIED);
    assert_definition_refused(&d);
    def_init(&d, "support_case");
    d.f[1].category = 99;
    assert_definition_refused(&d);
}

/* An enum field without allowed values is refused, as is a non-enum field
 * with some. */
static void test_definition_refuses_allowed_values_on_wrong_types(
    void **state)
{
    struct def d;
    (void)state;
    def_init(&d, "support_case");
    d.f[2].n_allowed_values = 0;
    assert_definition_refused(&d);
    def_init(&d, "support_case");
    d.f[0].allowed_values = d.allowed[2];
    d.f[0].n_allowed_values = 2;
    assert_definition_refused(&d);
}

/* An empty allowed value, or one that is not UTF-8, is refused. */
static void test_definition_refuses_bad_allowed_value(void **state)
{
    struct def d;
    (void)state;
    def_init(&d, "support_case");
    d.allowed[2][1] = "";
    assert_definition_refused(&d);
    def_init(&d, "support_case");
    d.allowed[2][1] = "clos\xc0\xaf" "ed";
    assert_definition_refused(&d);
}

/* A tags field cannot be indexed (a blind index would find only equal
 * sets, not a tag). */
static void test_definition_refuses_indexed_tags(void **state)
{
    struct def d;
    (void)state;
    def_init(&d, "support_case");
    d.f[0].type = T(TAGS);
    d.f[0].indexed = 1;
    assert_definition_refused(&d);
    d.f[0].indexed = 0;
    assert_int_equal(schema_check_definition(&d.k, NULL), 0);
}

/* A double field cannot be indexed. */
static void test_definition_refuses_indexed_double(void **state)
{
    struct def d;
    (void)state;
    def_init(&d, "support_case");
    d.f[0].type = T(DOUBLE);
    d.f[0].indexed = 1;
    assert_definition_refused(&d);
}

/* ------------------------------------------------------------------ */
/* Compatibility */

/* Adding a field and changing a field's category, description or
 * retention, or the kind's description, is a compatible change. */
static void test_compatible_accepts_added_field_and_metadata_changes(
    void **state)
{
    struct def prev, next;
    struct dossier_status st;
    (void)state;
    def_init(&prev, "support_case");
    def_init(&next, "support_case");
    next.f[3].name = "priority";
    next.f[3].type = T(INT);
    next.f[3].category = C(OPERATIONAL);
    next.k.n_fields = 4;
    next.f[0].category = C(SPECIAL);
    next.f[0].description = "now with a description";
    next.f[0].retention_days = 30;
    next.k.description = "support cases";
    assert_int_equal(schema_check_compatible(&prev.k, &next.k, &st), 0);
    /* Fields may also be listed in another order. */
    next.fp[0] = &next.f[3];
    next.fp[3] = &next.f[0];
    assert_int_equal(schema_check_compatible(&prev.k, &next.k, &st), 0);
}

/* Removing a field is refused. */
static void test_compatible_refuses_removed_field(void **state)
{
    struct def prev, next;
    (void)state;
    def_init(&prev, "support_case");
    def_init(&next, "support_case");
    next.k.n_fields = 2;
    assert_incompatible(&prev, &next);
}

/* Changing a field's type is refused. */
static void test_compatible_refuses_type_change(void **state)
{
    struct def prev, next;
    (void)state;
    def_init(&prev, "support_case");
    def_init(&next, "support_case");
    next.f[1].type = T(STRING);
    assert_incompatible(&prev, &next);
}

/* Changing whether a field is indexed is refused, both ways. */
static void test_compatible_refuses_indexing_change(void **state)
{
    struct def prev, next;
    (void)state;
    def_init(&prev, "support_case");
    def_init(&next, "support_case");
    next.f[1].indexed = 0;
    assert_incompatible(&prev, &next);
    next.f[1].indexed = 1;
    next.f[0].indexed = 1;
    assert_incompatible(&prev, &next);
}

/* Changing whether the kind is personal is refused. */
static void test_compatible_refuses_personal_flag_change(void **state)
{
    struct def prev, next;
    (void)state;
    def_init(&prev, "support_case");
    def_init(&next, "support_case");
    next.k.personal = 0;
    assert_incompatible(&prev, &next);
}

/* ------------------------------------------------------------------ */
/* Registry */

/* A kind set in the registry is returned by name. */
static void test_registry_returns_kind_by_name(void **state)
{
    struct def d;
    const KindSchema *k;
    def_init(&d, "support_case");
    assert_int_equal(schema_registry_set(*state, kind_copy(&d.k)), 0);
    k = schema_registry_get(*state, "support_case");
    assert_non_null(k);
    assert_string_equal(k->kind, "support_case");
    assert_int_equal(k->n_fields, 3);
    assert_non_null(schema_field(k, "email"));
}

/* The registry lists every kind, built-in ones included, sorted by name. */
static void test_registry_lists_kinds_sorted(void **state)
{
    static const char *const want[] = {"aardvark", "activity", "company",
                                       "contact",  "deal",     "mmm",
                                       "ticket",   "zebra"};
    const char *const add[] = {"zebra", "aardvark", "mmm"};
    const KindSchema **all;
    size_t n;
    struct def d;

    for (size_t i = 0; i < 3; i++) {
        def_init(&d, add[i]);
        assert_int_equal(schema_registry_set(*state, kind_copy(&d.k)), 0);
    }
    assert_int_equal(schema_registry_list(*state, &all, &n), 0);
    assert_int_equal(n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < n; i++)
        assert_string_equal(all[i]->kind, want[i]);
    free(all);
}

/* Redefining a kind replaces it for later lookups and does not add a
 * second entry. */
static void test_registry_redefinition_replaces_kind(void **state)
{
    struct def d;
    const KindSchema **all;
    size_t n;

    def_init(&d, "support_case");
    assert_int_equal(schema_registry_set(*state, kind_copy(&d.k)), 0);
    d.k.description = "second definition";
    assert_int_equal(schema_registry_set(*state, kind_copy(&d.k)), 0);
    assert_string_equal(schema_registry_get(*state, "support_case")->description,
                        "second definition");
    assert_int_equal(schema_registry_list(*state, &all, &n), 0);
    assert_int_equal(n, 6);
    free(all);
}

/* A kind returned by get stays valid after the kind is redefined: its
 * fields can still be read through the old pointer (ASan reports a use
 * after free otherwise). */
static void test_registry_pointer_stays_valid_after_redefinition(
    void **state)
{
    const KindSchema *old = kind_of(state, "contact");
    const KindSchema *now;
    KindSchema *next = kind_copy(old);
    size_t n_fields = old->n_fields;

    next->description[0] = 'X'; /* tell the two apart */
    assert_int_equal(schema_registry_set(*state, next), 0);
    now = kind_of(state, "contact");
    assert_ptr_not_equal(now, old);
    assert_string_equal(old->kind, "contact");
    assert_int_equal(old->n_fields, n_fields);
    assert_string_equal(old->fields[0]->name, "first_name");
    assert_non_null(schema_field(old, "email"));
    assert_string_equal(old->description, "a person");
    assert_int_equal(now->description[0], 'X');
}

int main(void)
{
#define TS(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        TS(test_builtin_kinds_exist_with_personal_flags),
        TS(test_contact_email_and_phone_are_indexed),
        TS(test_builtin_kinds_are_valid_definitions),
        TS(test_name_valid_accepts_only_lower_snake_case_up_to_63),
        TS(test_utf8_valid_accepts_well_formed_text),
        TS(test_utf8_valid_refuses_ill_formed_text),
        TS(test_utf8_valid_refuses_nul_byte),
        TS(test_record_with_invalid_utf8_is_refused_naming_field),
        TS(test_valid_contact_passes),
        TS(test_unknown_field_is_refused),
        TS(test_field_with_invalid_name_is_refused),
        TS(test_value_of_wrong_type_is_refused),
        TS(test_missing_required_field_is_refused),
        TS(test_null_required_field_counts_as_missing),
        TS(test_null_optional_field_is_accepted),
        TS(test_duplicate_field_is_refused),
        TS(test_bad_email_is_refused),
        TS(test_unusual_valid_email_is_accepted),
        TS(test_phone_without_country_code_is_refused),
        TS(test_malformed_phone_is_refused),
        TS(test_phone_is_normalised_to_e164),
        TS(test_phone_with_00_prefix_becomes_plus),
        TS(test_tags_are_normalised),
        TS(test_bad_tags_are_refused),
        TS(test_enum_value_not_allowed_is_refused),
        TS(test_int_for_double_field_becomes_double),
        TS(test_double_field_refuses_non_finite),
        TS(test_string_longer_than_limit_is_refused),
        TS(test_index_value_lower_cases_email),
        TS(test_index_value_of_phone_is_e164),
        TS(test_index_value_of_int_is_decimal),
        TS(test_index_value_refuses_field_not_indexed),
        TS(test_index_value_refuses_invalid_value),
        TS(test_index_value_without_status_gives_same_code),
        TS(test_index_value_refuses_value_longer_than_buffer),
        TS(test_valid_definition_passes),
        TS(test_definition_refuses_bad_kind_name),
        TS(test_definition_refuses_bad_field_name),
        TS(test_definition_refuses_kind_without_fields),
        TS(test_definition_refuses_duplicate_field),
        TS(test_definition_refuses_missing_or_unknown_type),
        TS(test_definition_refuses_missing_or_unknown_category),
        TS(test_definition_refuses_allowed_values_on_wrong_types),
        TS(test_definition_refuses_bad_allowed_value),
        TS(test_definition_refuses_indexed_tags),
        TS(test_definition_refuses_indexed_double),
        TS(test_compatible_accepts_added_field_and_metadata_changes),
        TS(test_compatible_refuses_removed_field),
        TS(test_compatible_refuses_type_change),
        TS(test_compatible_refuses_indexing_change),
        TS(test_compatible_refuses_personal_flag_change),
        TS(test_registry_returns_kind_by_name),
        TS(test_registry_lists_kinds_sorted),
        TS(test_registry_redefinition_replaces_kind),
        TS(test_registry_pointer_stays_valid_after_redefinition),
    };
#undef TS
    return cmocka_run_group_tests(tests, NULL, NULL);
}
