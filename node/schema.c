/* Built-in kinds, validation and normalisation of records, and the registry
 * of kinds. */
#include "schema.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

#define T(x) DOSSIER__V1__FIELD_TYPE__FIELD_TYPE_##x
#define C(x) DOSSIER__V1__CATEGORY__CATEGORY_##x
#define V(x) DOSSIER__V1__VALUE__KIND_##x

/* ------------------------------------------------------------------ */
/* Built-in kinds. Enumerations are '|'-separated. */

struct builtin_field {
    const char *name;
    int type;
    int category;
    int indexed;
    int required;
    unsigned retention_days;
    const char *allowed;
    const char *description;
};

struct builtin_kind {
    const char *kind;
    int personal;
    const char *description;
    const struct builtin_field *fields;
};

static const struct builtin_field contact_fields[] = {
    {"first_name", T(STRING), C(IDENTITY), 0, 0, 0, NULL, "given name"},
    {"last_name", T(STRING), C(IDENTITY), 0, 0, 0, NULL, "family name"},
    {"email", T(EMAIL), C(CONTACT), 1, 0, 0, NULL, "primary email address"},
    {"phone", T(PHONE), C(CONTACT), 1, 0, 0, NULL, "phone, stored in E.164"},
    {"job_title", T(STRING), C(OPERATIONAL), 0, 0, 0, NULL, NULL},
    {"company_name", T(STRING), C(OPERATIONAL), 0, 0, 0, NULL, NULL},
    {"address", T(STRING), C(CONTACT), 0, 0, 0, NULL, "postal address"},
    {"city", T(STRING), C(CONTACT), 0, 0, 0, NULL, NULL},
    {"country", T(STRING), C(CONTACT), 0, 0, 0, NULL, "ISO 3166 code"},
    {"date_of_birth", T(STRING), C(IDENTITY), 0, 0, 0, NULL, "YYYY-MM-DD"},
    {"lifecycle_stage", T(ENUM), C(OPERATIONAL), 0, 0, 0,
     "subscriber|lead|marketing_qualified|sales_qualified|opportunity|"
     "customer|evangelist|other", NULL},
    {"owner", T(STRING), C(OPERATIONAL), 0, 0, 0, NULL, "owning user"},
    {"lead_score", T(INT), C(BEHAVIORAL), 0, 0, 0, NULL, NULL},
    {"last_seen_at", T(TIMESTAMP), C(BEHAVIORAL), 0, 0, 0, NULL, NULL},
    {"credit_limit", T(DOUBLE), C(FINANCIAL), 0, 0, 0, NULL, NULL},
    {"tags", T(TAGS), C(OPERATIONAL), 0, 0, 0, NULL,
     "labels, comma-separated"},
    {"accessibility_needs", T(STRING), C(SPECIAL), 0, 0, 0, NULL,
     "health data: GDPR Art. 9"},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL},
};

static const struct builtin_field company_fields[] = {
    {"name", T(STRING), C(IDENTITY), 0, 1, 0, NULL, "legal or trading name"},
    {"domain", T(STRING), C(CONTACT), 1, 0, 0, NULL, "web domain"},
    {"industry", T(STRING), C(OPERATIONAL), 0, 0, 0, NULL, NULL},
    {"employees", T(INT), C(OPERATIONAL), 0, 0, 0, NULL, NULL},
    {"annual_revenue", T(DOUBLE), C(FINANCIAL), 0, 0, 0, NULL, NULL},
    {"country", T(STRING), C(CONTACT), 0, 0, 0, NULL, "ISO 3166 code"},
    {"owner", T(STRING), C(OPERATIONAL), 0, 0, 0, NULL, "owning user"},
    {"tags", T(TAGS), C(OPERATIONAL), 0, 0, 0, NULL,
     "labels, comma-separated"},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL},
};

static const struct builtin_field deal_fields[] = {
    {"name", T(STRING), C(OPERATIONAL), 0, 1, 0, NULL, NULL},
    {"stage", T(ENUM), C(OPERATIONAL), 1, 1, 0,
     "appointment_scheduled|qualified|presentation|decision_maker_bought_in|"
     "contract_sent|closed_won|closed_lost", NULL},
    {"amount", T(DOUBLE), C(FINANCIAL), 0, 0, 0, NULL, NULL},
    {"currency", T(STRING), C(FINANCIAL), 0, 0, 0, NULL, "ISO 4217 code"},
    {"close_date", T(TIMESTAMP), C(OPERATIONAL), 0, 0, 0, NULL, NULL},
    {"probability", T(DOUBLE), C(OPERATIONAL), 0, 0, 0, NULL, "0 to 1"},
    {"owner", T(STRING), C(OPERATIONAL), 1, 0, 0, NULL, "owning user"},
    {"tags", T(TAGS), C(OPERATIONAL), 0, 0, 0, NULL,
     "labels, comma-separated"},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL},
};

static const struct builtin_field activity_fields[] = {
    {"type", T(ENUM), C(OPERATIONAL), 1, 1, 0, "call|email|meeting|note|task",
     NULL},
    {"title", T(STRING), C(BEHAVIORAL), 0, 0, 1095, NULL, NULL},
    {"body", T(STRING), C(BEHAVIORAL), 0, 0, 1095, NULL,
     "notes, email body, call summary"},
    {"occurred_at", T(TIMESTAMP), C(BEHAVIORAL), 0, 0, 1095, NULL, NULL},
    {"duration_s", T(INT), C(BEHAVIORAL), 0, 0, 1095, NULL, NULL},
    {"due_at", T(TIMESTAMP), C(OPERATIONAL), 0, 0, 0, NULL, "tasks"},
    {"done", T(BOOL), C(OPERATIONAL), 0, 0, 0, NULL, "tasks"},
    {"owner", T(STRING), C(OPERATIONAL), 1, 0, 0, NULL, "owning user"},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL},
};

static const struct builtin_field ticket_fields[] = {
    {"title", T(STRING), C(BEHAVIORAL), 0, 1, 0, NULL, NULL},
    {"description", T(STRING), C(BEHAVIORAL), 0, 0, 1825, NULL, NULL},
    {"status", T(ENUM), C(OPERATIONAL), 1, 1, 0,
     "new|open|pending|on_hold|solved|closed", NULL},
    {"priority", T(ENUM), C(OPERATIONAL), 0, 0, 0, "low|normal|high|urgent",
     NULL},
    {"channel", T(ENUM), C(OPERATIONAL), 0, 0, 0,
     "email|phone|chat|web|other", NULL},
    {"owner", T(STRING), C(OPERATIONAL), 1, 0, 0, NULL, "assigned agent"},
    {"opened_at", T(TIMESTAMP), C(OPERATIONAL), 0, 0, 0, NULL, NULL},
    {"resolved_at", T(TIMESTAMP), C(OPERATIONAL), 0, 0, 0, NULL, NULL},
    {"tags", T(TAGS), C(OPERATIONAL), 0, 0, 0, NULL,
     "labels, comma-separated"},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL},
};

static const struct builtin_kind builtins[] = {
    {"activity", 1, "a call, email, meeting, note or task with a person",
     activity_fields},
    {"company", 0, "an organisation (not personal data)", company_fields},
    {"contact", 1, "a person", contact_fields},
    {"deal", 0, "a sales opportunity; may name the contact as subject",
     deal_fields},
    {"ticket", 1, "a support request raised by a person", ticket_fields},
};

#define N_BUILTINS (sizeof(builtins) / sizeof(builtins[0]))

int schema_is_builtin(const char *name)
{
    for (size_t i = 0; i < N_BUILTINS; i++)
        if (strcmp(builtins[i].kind, name) == 0)
            return 1;
    return 0;
}

/* Builds built-in kind @b as a message allocated like an unpacked one (so
 * that it is freed like every other kind): assembled on the stack, packed,
 * then unpacked. */
static KindSchema *builtin_build(const struct builtin_kind *b)
{
    FieldSchema fields[SCHEMA_FIELDS_MAX], *fptr[SCHEMA_FIELDS_MAX];
    char *allowed_buf[SCHEMA_FIELDS_MAX];
    char *allowed[SCHEMA_FIELDS_MAX][32];
    KindSchema k = DOSSIER__V1__KIND_SCHEMA__INIT;
    KindSchema *out = NULL;
    uint8_t *buf;
    size_t n = 0, len;

    for (; b->fields[n].name; n++) {
        const struct builtin_field *f = &b->fields[n];
        FieldSchema *m = &fields[n];
        dossier__v1__field_schema__init(m);
        m->name = (char *)f->name;
        m->type = f->type;
        m->category = f->category;
        m->indexed = f->indexed;
        m->required = f->required;
        m->retention_days = f->retention_days;
        m->description = (char *)(f->description ? f->description : "");
        allowed_buf[n] = NULL;
        if (f->allowed) {
            char *save = NULL, *tok;
            allowed_buf[n] = strdup(f->allowed);
            if (!allowed_buf[n])
                goto out;
            for (tok = strtok_r(allowed_buf[n], "|", &save); tok;
                 tok = strtok_r(NULL, "|", &save))
                allowed[n][m->n_allowed_values++] = tok;
            m->allowed_values = allowed[n];
        }
        fptr[n] = m;
    }
    k.kind = (char *)b->kind;
    k.personal = b->personal;
    k.description = (char *)b->description;
    k.builtin = 1;
    k.n_fields = n;
    k.fields = fptr;
    len = dossier__v1__kind_schema__get_packed_size(&k);
    buf = malloc(len ? len : 1);
    if (buf) {
        dossier__v1__kind_schema__pack(&k, buf);
        out = dossier__v1__kind_schema__unpack(NULL, len, buf);
        free(buf);
    }
out:
    for (size_t i = 0; i < n; i++)
        free(allowed_buf[i]);
    return out;
}

/* ------------------------------------------------------------------ */
/* Names, text and values */

int schema_name_valid(const char *s)
{
    size_t n = 0;
    if (!s || !(s[0] >= 'a' && s[0] <= 'z'))
        return 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') ||
              s[n] == '_'))
            return 0;
    return n <= SCHEMA_NAME_MAX;
}

int schema_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    while (i < len) {
        unsigned c = s[i];
        size_t need;
        uint32_t cp;
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            need = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (size_t j = 1; j <= need; j++) {
            if (i + j >= len || (s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        /* Overlong forms, surrogates and code points past U+10FFFF. */
        if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) ||
            (need == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

const FieldSchema *schema_field(const KindSchema *k, const char *name)
{
    for (size_t i = 0; i < k->n_fields; i++)
        if (strcmp(k->fields[i]->name, name) == 0)
            return k->fields[i];
    return NULL;
}

static const char *type_name(int t)
{
    const char *n = dossier_field_type_name((enum dossier_field_type)t);
    return n ? n : "unspecified";
}

/* Email: one '@', a non-empty local part of at most 64 bytes, a domain
 * with a dot and no empty label, no spaces or control characters; 254
 * bytes in all (RFC 5321 limits). Not a full RFC 5322 parser, on purpose:
 * it refuses what is certainly wrong. */
static int email_valid(const char *s)
{
    const char *at = strchr(s, '@'), *p;
    size_t len = strlen(s);
    if (!at || at == s || strchr(at + 1, '@') || len > 254 ||
        (size_t)(at - s) > 64)
        return 0;
    for (p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return 0;
    p = at + 1;
    if (!strchr(p, '.') || p[0] == '.' || s[len - 1] == '.' ||
        strstr(p, ".."))
        return 0;
    return 1;
}

/* Phone to E.164 in place: drops spaces and the separators - . ( ) /,
 * turns a leading 00 into +, then requires + and 8 to 15 digits, the first
 * not 0. Numbers without a country code are refused rather than guessed. */
static int phone_normalize(char *s)
{
    char *w = s;
    const char *r = s;
    size_t digits = 0;

    while (*r == ' ')
        r++;
    if (r[0] == '0' && r[1] == '0') {
        *w++ = '+';
        r += 2;
    } else if (*r == '+') {
        *w++ = *r++;
    } else {
        return 0;
    }
    for (; *r; r++) {
        if (*r >= '0' && *r <= '9') {
            *w++ = *r;
            digits++;
        } else if (!strchr(" -.()/", *r)) {
            return 0;
        }
    }
    *w = '\0';
    return digits >= 8 && digits <= 15 && s[1] != '0';
}

/* Tags: see schema.h. */
static int tag_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("_.:/-", c));
}

static int tag_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int schema_tags_normalize(char *s)
{
    char *tags[SCHEMA_TAGS_MAX], *copy, *p, *w = s;
    size_t n = 0, len = strlen(s);

    /* Every blank: a set of none. */
    for (p = s; *p == ' ' || *p == '\t'; p++)
        ;
    if (!*p) {
        s[0] = '\0';
        return 0;
    }
    if (!(copy = malloc(len + 1)))
        return -1;
    memcpy(copy, s, len + 1);
    for (p = copy;;) {
        char *comma = strchr(p, ','), *end;
        if (comma)
            *comma = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        end = p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (end == p || end - p > SCHEMA_TAG_MAX || n == SCHEMA_TAGS_MAX)
            goto bad;
        for (char *q = p; *q; q++) {
            *q = (char)tolower((unsigned char)*q);
            if (!tag_char((unsigned char)*q))
                goto bad;
        }
        tags[n++] = p;
        if (!comma)
            break;
        p = comma + 1;
    }
    qsort(tags, n, sizeof(tags[0]), tag_cmp);
    for (size_t i = 0; i < n; i++) {
        size_t tl;
        if (i && strcmp(tags[i], tags[i - 1]) == 0)
            continue;
        if (w != s)
            *w++ = ',';
        tl = strlen(tags[i]);
        memcpy(w, tags[i], tl);
        w += tl;
    }
    *w = '\0';
    free(copy);
    return 0;
bad:
    free(copy);
    return -1;
}

int schema_tags_has(const char *set, const char *tag)
{
    size_t tl = strlen(tag);
    for (const char *p = set; *p;) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        if (l == tl && memcmp(p, tag, tl) == 0)
            return 1;
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

/* Checks value @v (mutable: normalised in place) of field @f. */
static int check_value(const KindSchema *k, const FieldSchema *f,
                       Dossier__V1__Value *v, struct dossier_status *st)
{
    int ok = 0;

    switch (f->type) {
    case T(STRING):
    case T(EMAIL):
    case T(PHONE):
    case T(ENUM):
    case T(TAGS):
        ok = v->kind_case == V(STRING_VALUE);
        break;
    case T(INT):
    case T(TIMESTAMP):
        ok = v->kind_case == V(INT_VALUE);
        break;
    case T(DOUBLE):
        if (v->kind_case == V(INT_VALUE)) {
            int64_t i = v->int_value;
            v->kind_case = V(DOUBLE_VALUE);
            v->double_value = (double)i;
        }
        ok = v->kind_case == V(DOUBLE_VALUE);
        if (ok && !isfinite(v->double_value))
            return err_set(st, DOSSIER_SCHEMA_VIOLATION,
                           "field '%s' of kind '%s': must be a finite number",
                           f->name, k->kind);
        break;
    case T(BOOL):
        ok = v->kind_case == V(BOOL_VALUE);
        break;
    default:
        break;
    }
    if (!ok)
        return err_set(st, DOSSIER_SCHEMA_VIOLATION,
                       "field '%s' of kind '%s': expected a value of type %s",
                       f->name, k->kind, type_name(f->type));
    if (v->kind_case != V(STRING_VALUE))
        return 0;

    size_t len = strlen(v->string_value);
    if (len > SCHEMA_VALUE_MAX)
        return err_set(st, DOSSIER_SCHEMA_VIOLATION,
                       "field '%s' of kind '%s': longer than %d bytes",
                       f->name, k->kind, SCHEMA_VALUE_MAX);
    if (!schema_utf8_valid(v->string_value, len))
        return err_set(st, DOSSIER_SCHEMA_VIOLATION,
                       "field '%s' of kind '%s': not valid UTF-8", f->name,
                       k->kind);
    switch (f->type) {
    case T(EMAIL):
        if (!email_valid(v->string_value))
            return err_set(st, DOSSIER_SCHEMA_VIOLATION,
                           "field '%s' of kind '%s': not an email address",
                           f->name, k->kind);
        break;
    case T(PHONE):
        if (!phone_normalize(v->string_value))
            return err_set(st, DOSSIER_SCHEMA_VIOLATION,
                           "field '%s' of kind '%s': not a phone number in "
                           "international form (+<country code><number>, "
                           "8 to 15 digits)",
                           f->name, k->kind);
        break;
    case T(TAGS):
        if (schema_tags_normalize(v->string_value) != 0)
            return err_set(st, DOSSIER_SCHEMA_VIOLATION,
                           "field '%s' of kind '%s': not a tag set (at most "
                           "%d comma-separated tags of 1 to %d characters "
                           "[a-z0-9_.:/-] each)",
                           f->name, k->kind, SCHEMA_TAGS_MAX,
                           SCHEMA_TAG_MAX);
        break;
    case T(ENUM): {
        size_t i;
        for (i = 0; i < f->n_allowed_values; i++)
            if (strcmp(f->allowed_values[i], v->string_value) == 0)
                break;
        if (i == f->n_allowed_values)
            return err_set(st, DOSSIER_SCHEMA_VIOLATION,
                           "field '%s' of kind '%s': not one of its allowed "
                           "values (see the kind's schema)",
                           f->name, k->kind);
        break;
    }
    default:
        break;
    }
    return 0;
}

int schema_check_record(const KindSchema *k, Dossier__V1__Record *r,
                        struct dossier_status *st)
{
    int rc;

    for (size_t i = 0; i < r->n_fields; i++) {
        Dossier__V1__Field *fd = r->fields[i];
        const FieldSchema *f;

        if (!schema_name_valid(fd->name))
            return err_set(st, DOSSIER_SCHEMA_VIOLATION,
                           "field %zu of the record has an invalid name "
                           "(lower-case letters, digits and _, at most %d)",
                           i + 1, SCHEMA_NAME_MAX);
        f = schema_field(k, fd->name);
        if (!f)
            return err_set(st, DOSSIER_SCHEMA_VIOLATION,
                           "field '%s' is not in the schema of kind '%s'",
                           fd->name, k->kind);
        for (size_t j = 0; j < i; j++)
            if (strcmp(r->fields[j]->name, fd->name) == 0)
                return err_set(st, DOSSIER_SCHEMA_VIOLATION,
                               "field '%s' appears twice", fd->name);
        if (!fd->value ||
            fd->value->kind_case == DOSSIER__V1__VALUE__KIND__NOT_SET)
            continue; /* null: the field is absent */
        rc = check_value(k, f, fd->value, st);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < k->n_fields; i++) {
        const FieldSchema *f = k->fields[i];
        int present = 0;
        if (!f->required)
            continue;
        for (size_t j = 0; j < r->n_fields && !present; j++)
            present = strcmp(r->fields[j]->name, f->name) == 0 &&
                      r->fields[j]->value &&
                      r->fields[j]->value->kind_case !=
                          DOSSIER__V1__VALUE__KIND__NOT_SET;
        if (!present)
            return err_set(st, DOSSIER_SCHEMA_VIOLATION,
                           "field '%s' is required by kind '%s'", f->name,
                           k->kind);
    }
    return 0;
}

int schema_index_value(const KindSchema *k, const FieldSchema *f,
                       const Dossier__V1__Value *v, char *out, size_t cap,
                       size_t *len, struct dossier_status *st)
{
    Dossier__V1__Value copy = *v;
    char *tmp = NULL;
    int rc;

    if (!f->indexed)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "field '%s' is not indexed", f->name);
    if (v->kind_case == V(STRING_VALUE)) {
        tmp = strdup(v->string_value);
        if (!tmp)
            return err_set(st, DOSSIER_NOMEM, "out of memory");
        copy.string_value = tmp;
    }
    rc = check_value(k, f, &copy, st);
    if (rc) {
        /* A query value, not a record: the caller's argument is wrong. */
        free(tmp);
        if (st)
            st->code = DOSSIER_INVALID_ARGUMENT;
        return DOSSIER_INVALID_ARGUMENT;
    }
    switch (copy.kind_case) {
    case V(STRING_VALUE):
        *len = strlen(tmp);
        if (*len > cap) {
            free(tmp);
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "value of indexed field '%s' is longer than %zu "
                           "bytes",
                           f->name, cap);
        }
        if (f->type == T(EMAIL))
            for (size_t i = 0; i < *len; i++)
                tmp[i] = (char)tolower((unsigned char)tmp[i]);
        memcpy(out, tmp, *len);
        free(tmp);
        return 0;
    case V(INT_VALUE):
        *len = (size_t)snprintf(out, cap, "%" PRId64, copy.int_value);
        return 0;
    case V(BOOL_VALUE):
        *len = (size_t)snprintf(out, cap, "%s",
                                copy.bool_value ? "true" : "false");
        return 0;
    default:
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "field '%s' cannot be indexed", f->name);
    }
}

/* ------------------------------------------------------------------ */
/* Definitions */

int schema_check_definition(const KindSchema *k, struct dossier_status *st)
{
    if (!schema_name_valid(k->kind))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "kind name must be lower-case letters, digits and _, "
                       "starting with a letter, at most %d",
                       SCHEMA_NAME_MAX);
    if (k->n_fields == 0 || k->n_fields > SCHEMA_FIELDS_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "kind '%s' must have 1 to %d fields", k->kind,
                       SCHEMA_FIELDS_MAX);
    if (strlen(k->description) > 1024)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "description of kind '%s' is longer than 1024 bytes",
                       k->kind);
    if (k->record_retention_base !=
            DOSSIER__V1__RETENTION_BASE__RETENTION_BASE_UPDATED &&
        k->record_retention_base !=
            DOSSIER__V1__RETENTION_BASE__RETENTION_BASE_CREATED)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "kind '%s': record_retention_base is updated or "
                       "created",
                       k->kind);
    if (k->record_retention_days > SCHEMA_RETENTION_DAYS_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "kind '%s': record_retention_days is at most %d "
                       "(0: records are kept)",
                       k->kind, SCHEMA_RETENTION_DAYS_MAX);
    for (size_t i = 0; i < k->n_fields; i++) {
        const FieldSchema *f = k->fields[i];
        if (!schema_name_valid(f->name))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "field %zu of kind '%s' has an invalid name", i + 1,
                           k->kind);
        for (size_t j = 0; j < i; j++)
            if (strcmp(k->fields[j]->name, f->name) == 0)
                return err_set(st, DOSSIER_INVALID_ARGUMENT,
                               "field '%s' is defined twice", f->name);
        if (f->type <= T(UNSPECIFIED) || f->type > T(TAGS))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "field '%s' needs a type", f->name);
        if (f->category <= C(UNSPECIFIED) || f->category > C(OPERATIONAL))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "field '%s' needs a category (identity, contact, "
                           "financial, special, behavioral or operational)",
                           f->name);
        if (f->indexed && (f->type == T(DOUBLE) || f->type == T(TAGS)))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "field '%s': %s fields cannot be indexed",
                           f->name, type_name(f->type));
        if ((f->type == T(ENUM)) != (f->n_allowed_values > 0))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "field '%s': enum fields, and only they, list "
                           "allowed values",
                           f->name);
        for (size_t j = 0; j < f->n_allowed_values; j++) {
            size_t len = strlen(f->allowed_values[j]);
            if (len == 0 || len > 128 ||
                !schema_utf8_valid(f->allowed_values[j], len))
                return err_set(st, DOSSIER_INVALID_ARGUMENT,
                               "field '%s': allowed value %zu must be 1 to "
                               "128 bytes of UTF-8",
                               f->name, j + 1);
        }
        if (strlen(f->description) > 1024)
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "description of field '%s' is too long", f->name);
    }
    return 0;
}

int schema_check_compatible(const KindSchema *prev, const KindSchema *next,
                            struct dossier_status *st)
{
    if (prev->personal != next->personal)
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "kind '%s': whether records are personal cannot "
                       "change",
                       prev->kind);
    for (size_t i = 0; i < prev->n_fields; i++) {
        const FieldSchema *p = prev->fields[i];
        const FieldSchema *n = schema_field(next, p->name);
        if (!n)
            return err_set(st, DOSSIER_FAILED_PRECONDITION,
                           "kind '%s': field '%s' cannot be removed",
                           prev->kind, p->name);
        if (n->type != p->type)
            return err_set(st, DOSSIER_FAILED_PRECONDITION,
                           "kind '%s': the type of field '%s' cannot change",
                           prev->kind, p->name);
        if (n->indexed != p->indexed)
            return err_set(st, DOSSIER_FAILED_PRECONDITION,
                           "kind '%s': whether field '%s' is indexed cannot "
                           "change (existing records are not reindexed)",
                           prev->kind, p->name);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Registry: a sorted array of kinds behind a read-write lock. Replaced
 * definitions go to a retired list, freed with the registry, so a pointer
 * handed out stays valid. */

struct schema_registry {
    pthread_rwlock_t lock;
    KindSchema **kinds;
    size_t n, cap;
    KindSchema **retired;
    size_t n_retired, cap_retired;
};

static int grow(KindSchema ***arr, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 16;
    while (c < need)
        c *= 2;
    KindSchema **p = realloc(*arr, c * sizeof(*p));
    if (!p)
        return -1;
    *arr = p;
    *cap = c;
    return 0;
}

struct schema_registry *schema_registry_new(void)
{
    struct schema_registry *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    pthread_rwlock_init(&r->lock, NULL);
    for (size_t i = 0; i < N_BUILTINS; i++) {
        KindSchema *k = builtin_build(&builtins[i]);
        if (!k || schema_registry_set(r, k) != 0) {
            if (k)
                dossier__v1__kind_schema__free_unpacked(k, NULL);
            schema_registry_free(r);
            return NULL;
        }
    }
    return r;
}

void schema_registry_reset(struct schema_registry *r)
{
    size_t keep = 0;
    pthread_rwlock_wrlock(&r->lock);
    for (size_t i = 0; i < r->n; i++) {
        KindSchema *k = r->kinds[i];
        /* Built-in definitions are compiled in, not stored: keep them
         * unless a stored one replaced them. */
        if (k->builtin && k->version == 0) {
            r->kinds[keep++] = k;
        } else if (grow(&r->retired, &r->cap_retired, r->n_retired + 1) == 0) {
            r->retired[r->n_retired++] = k;
        } else {
            r->kinds[keep++] = k; /* out of memory: keep it rather than leak */
        }
    }
    r->n = keep;
    pthread_rwlock_unlock(&r->lock);
    /* Kinds replaced by a stored definition come back from the built-ins. */
    for (size_t i = 0; i < N_BUILTINS; i++)
        if (!schema_registry_get(r, builtins[i].kind)) {
            KindSchema *k = builtin_build(&builtins[i]);
            if (k && schema_registry_set(r, k) != 0)
                dossier__v1__kind_schema__free_unpacked(k, NULL);
        }
}

void schema_registry_free(struct schema_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        dossier__v1__kind_schema__free_unpacked(r->kinds[i], NULL);
    for (size_t i = 0; i < r->n_retired; i++)
        dossier__v1__kind_schema__free_unpacked(r->retired[i], NULL);
    free(r->kinds);
    free(r->retired);
    pthread_rwlock_destroy(&r->lock);
    free(r);
}

/* Index of @name, or where it would go (with *@found 0). */
static size_t find_locked(const struct schema_registry *r, const char *name,
                          int *found)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(r->kinds[mid]->kind, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

const KindSchema *schema_registry_get(struct schema_registry *r,
                                      const char *name)
{
    const KindSchema *k = NULL;
    int found;
    size_t i;

    pthread_rwlock_rdlock(&r->lock);
    i = find_locked(r, name, &found);
    if (found)
        k = r->kinds[i];
    pthread_rwlock_unlock(&r->lock);
    return k;
}

int schema_registry_set(struct schema_registry *r, KindSchema *k)
{
    int found, rc = 0;
    size_t i;

    pthread_rwlock_wrlock(&r->lock);
    i = find_locked(r, k->kind, &found);
    if (found) {
        if (grow(&r->retired, &r->cap_retired, r->n_retired + 1)) {
            rc = -1;
            goto out;
        }
        r->retired[r->n_retired++] = r->kinds[i];
        r->kinds[i] = k;
    } else {
        if (grow(&r->kinds, &r->cap, r->n + 1)) {
            rc = -1;
            goto out;
        }
        memmove(&r->kinds[i + 1], &r->kinds[i],
                (r->n - i) * sizeof(r->kinds[0]));
        r->kinds[i] = k;
        r->n++;
    }
out:
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int schema_registry_list(struct schema_registry *r, const KindSchema ***out,
                         size_t *n)
{
    pthread_rwlock_rdlock(&r->lock);
    *out = malloc((r->n ? r->n : 1) * sizeof(**out));
    if (*out) {
        memcpy(*out, r->kinds, r->n * sizeof(**out));
        *n = r->n;
    }
    pthread_rwlock_unlock(&r->lock);
    return *out ? 0 : -1;
}
