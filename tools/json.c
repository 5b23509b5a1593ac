/* Records and kinds to and from JSON with jansson, and the GDPR structs
 * out to JSON. */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

json_t *json_from_value(const struct dossier_value *v)
{
    switch (v->type) {
    case DOSSIER_TYPE_STRING: return json_string(v->u.s);
    case DOSSIER_TYPE_INT: return json_integer(v->u.i);
    case DOSSIER_TYPE_DOUBLE: return json_real(v->u.d);
    case DOSSIER_TYPE_BOOL: return json_boolean(v->u.b);
    default: return json_null();
    }
}

json_t *json_from_record(const struct dossier_record *r)
{
    json_t *o = json_object(), *fields = json_object(), *links = json_array();
    int fail = !o || !fields || !links;

    if (!fail) {
        fail |= json_object_set_new(o, "kind", json_string(r->kind));
        fail |= json_object_set_new(o, "id", json_string(r->id));
        if (r->subject_id && r->subject_id[0])
            fail |= json_object_set_new(o, "subject_id",
                                        json_string(r->subject_id));
        fail |= json_object_set_new(o, "version",
                                    json_integer((json_int_t)r->version));
        fail |= json_object_set_new(o, "created_at_ms",
                                    json_integer(r->created_at_ms));
        fail |= json_object_set_new(o, "updated_at_ms",
                                    json_integer(r->updated_at_ms));
        for (size_t i = 0; i < r->n_fields; i++)
            fail |= json_object_set_new(fields, r->fields[i].name,
                                        json_from_value(&r->fields[i].value));
        for (size_t i = 0; i < r->n_links; i++)
            fail |= json_array_append_new(
                links, json_pack("{s:s, s:s, s:s}", "label",
                                 r->links[i].label, "kind", r->links[i].kind,
                                 "id", r->links[i].id));
    }
    if (!fail) {
        fail |= json_object_set(o, "fields", fields);
        fail |= json_object_set(o, "links", links);
    }
    json_decref(fields);
    json_decref(links);
    if (fail) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int fail_with(char *err, size_t cap, const char *msg, const char *key)
{
    snprintf(err, cap, msg, key);
    return -1;
}

/* Reads optional string @key of @j into *@out (borrowed from @j). */
static int get_string(const json_t *j, const char *key, const char **out,
                      char *err, size_t cap)
{
    const json_t *v = json_object_get(j, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail_with(err, cap, "\"%s\" must be a string", key);
    *out = json_string_value(v);
    return 0;
}

static int check_keys(const json_t *j, const char *const *allowed, char *err,
                      size_t cap, const char *what)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        size_t i;
        for (i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], key) == 0)
                break;
        if (!allowed[i]) {
            snprintf(err, cap, "unknown key \"%s\" in %s", key, what);
            return -1;
        }
    }
    return 0;
}

int json_to_record(const json_t *j, struct dossier_record **out, char *err,
                   size_t cap)
{
    static const char *const keys[] = {"kind", "id", "subject_id", "version",
                                       "created_at_ms", "updated_at_ms",
                                       "fields", "links", NULL};
    const char *kind, *id, *subject;
    const json_t *fields, *links;
    struct dossier_record *r;
    const char *name;
    json_t *v;
    int rc = 0;

    *out = NULL;
    err[0] = '\0';
    if (!json_is_object(j))
        return fail_with(err, cap, "a record must be a JSON object%s", "");
    if (check_keys(j, keys, err, cap, "the record") ||
        get_string(j, "kind", &kind, err, cap) ||
        get_string(j, "id", &id, err, cap) ||
        get_string(j, "subject_id", &subject, err, cap))
        return -1;
    if (!kind || !id)
        return fail_with(err, cap, "a record needs \"%s\"",
                         !kind ? "kind" : "id");
    fields = json_object_get(j, "fields");
    links = json_object_get(j, "links");
    if (fields && !json_is_object(fields))
        return fail_with(err, cap, "\"%s\" must be an object", "fields");
    if (links && !json_is_array(links))
        return fail_with(err, cap, "\"%s\" must be an array", "links");
    r = dossier_record_new(kind, id, subject);
    if (!r)
        return fail_with(err, cap, "out of memory%s", "");
    json_object_foreach((json_t *)fields, name, v) {
        switch (json_typeof(v)) {
        case JSON_STRING:
            rc = dossier_record_set_string(r, name, json_string_value(v));
            break;
        case JSON_INTEGER:
            rc = dossier_record_set_int(r, name, json_integer_value(v));
            break;
        case JSON_REAL:
            rc = dossier_record_set_double(r, name, json_real_value(v));
            break;
        case JSON_TRUE:
        case JSON_FALSE:
            rc = dossier_record_set_bool(r, name, json_is_true(v));
            break;
        case JSON_NULL:
            break; /* absent */
        default:
            dossier_record_free(r);
            return fail_with(err, cap,
                             "field \"%s\": objects and arrays are not field "
                             "values",
                             name);
        }
        if (rc) {
            dossier_record_free(r);
            return fail_with(err, cap, "out of memory%s", "");
        }
    }
    for (size_t i = 0; links && i < json_array_size(links); i++) {
        const json_t *l = json_array_get(links, i);
        static const char *const lkeys[] = {"label", "kind", "id", NULL};
        const char *label, *lkind, *lid;
        if (!json_is_object(l) || check_keys(l, lkeys, err, cap, "a link") ||
            get_string(l, "label", &label, err, cap) ||
            get_string(l, "kind", &lkind, err, cap) ||
            get_string(l, "id", &lid, err, cap) || !label || !lkind || !lid) {
            if (json_is_object(l) && !err[0])
                snprintf(err, cap,
                         "link %zu needs \"label\", \"kind\" and \"id\"",
                         i + 1);
            else if (!err[0])
                snprintf(err, cap, "link %zu must be an object", i + 1);
            dossier_record_free(r);
            return -1;
        }
        if (dossier_record_add_link(r, label, lkind, lid)) {
            dossier_record_free(r);
            return fail_with(err, cap, "out of memory%s", "");
        }
    }
    *out = r;
    return 0;
}

json_t *json_from_kind(const struct dossier_kind_schema *s)
{
    json_t *fields = json_array();

    for (size_t i = 0; fields && i < s->n_fields; i++) {
        const struct dossier_field_schema *f = &s->fields[i];
        json_t *allowed = json_array();
        json_t *jf;
        const char *tname = dossier_field_type_name(f->type);
        const char *cname = dossier_category_name(f->category);
        for (size_t k = 0; allowed && k < f->n_allowed_values; k++)
            json_array_append_new(allowed, json_string(f->allowed_values[k]));
        jf = json_pack("{s:s, s:s, s:s, s:b, s:b, s:I, s:o, s:s}", "name",
                       f->name, "type", tname ? tname : "unspecified",
                       "category", cname ? cname : "unspecified", "indexed",
                       f->indexed, "required", f->required, "retention_days",
                       (json_int_t)f->retention_days, "allowed_values",
                       allowed ? allowed : json_array(), "description",
                       f->description ? f->description : "");
        if (!jf || json_array_append_new(fields, jf)) {
            json_decref(fields);
            return NULL;
        }
    }
    if (!fields)
        return NULL;
    return json_pack(
        "{s:s, s:b, s:b, s:I, s:s, s:I, s:s, s:o}", "kind", s->kind,
        "personal", s->personal, "builtin", s->builtin, "version",
        (json_int_t)s->version, "description",
        s->description ? s->description : "", "record_retention_days",
        (json_int_t)s->record_retention_days, "record_retention_base",
        s->record_retention_base == DOSSIER_RETENTION_SINCE_CREATION
            ? "created"
            : "updated",
        "fields", fields);
}

static int get_bool(const json_t *j, const char *key, int *out, char *err,
                    size_t cap)
{
    const json_t *v = json_object_get(j, key);
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return fail_with(err, cap, "\"%s\" must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

int json_to_kind(const json_t *j, struct dossier_kind_schema **out, char *err,
                 size_t cap)
{
    static const char *const keys[] = {"kind", "personal", "builtin",
                                       "version", "description", "fields",
                                       "record_retention_days",
                                       "record_retention_base", NULL};
    static const char *const fkeys[] = {"name", "type", "category", "indexed",
                                        "required", "retention_days",
                                        "allowed_values", "description",
                                        NULL};
    struct dossier_kind_schema *s;
    const char *kind, *desc;
    const json_t *fields;

    *out = NULL;
    if (!json_is_object(j))
        return fail_with(err, cap, "a kind must be a JSON object%s", "");
    if (check_keys(j, keys, err, cap, "the kind") ||
        get_string(j, "kind", &kind, err, cap) ||
        get_string(j, "description", &desc, err, cap))
        return -1;
    if (!kind)
        return fail_with(err, cap, "a kind needs \"%s\"", "kind");
    fields = json_object_get(j, "fields");
    if (!json_is_array(fields))
        return fail_with(err, cap, "a kind needs \"%s\", an array", "fields");
    s = calloc(1, sizeof(*s));
    if (!s)
        return fail_with(err, cap, "out of memory%s", "");
    s->kind = strdup(kind);
    s->description = strdup(desc ? desc : "");
    s->fields = calloc(json_array_size(fields) + 1, sizeof(*s->fields));
    if (!s->kind || !s->description || !s->fields ||
        get_bool(j, "personal", &s->personal, err, cap))
        goto fail;
    {
        const json_t *days = json_object_get(j, "record_retention_days");
        const json_t *base = json_object_get(j, "record_retention_base");
        if (days && !json_is_null(days)) {
            if (!json_is_integer(days) || json_integer_value(days) < 0 ||
                json_integer_value(days) > UINT32_MAX) {
                snprintf(err, cap, "record_retention_days must be a whole "
                         "number of days");
                goto fail;
            }
            s->record_retention_days = (uint32_t)json_integer_value(days);
        }
        if (base && !json_is_null(base)) {
            const char *b = json_is_string(base) ? json_string_value(base)
                                                 : "";
            if (strcmp(b, "created") == 0)
                s->record_retention_base = DOSSIER_RETENTION_SINCE_CREATION;
            else if (strcmp(b, "updated") != 0) {
                snprintf(err, cap, "record_retention_base must be \"updated\" "
                         "(since the last update) or \"created\"");
                goto fail;
            }
        }
    }
    for (size_t i = 0; i < json_array_size(fields); i++) {
        const json_t *jf = json_array_get(fields, i);
        struct dossier_field_schema *f = &s->fields[i];
        const char *name, *type, *cat, *fdesc;
        const json_t *ret, *allowed;
        if (!json_is_object(jf)) {
            snprintf(err, cap, "field %zu must be an object", i + 1);
            goto fail;
        }
        s->n_fields++;
        if (check_keys(jf, fkeys, err, cap, "a field") ||
            get_string(jf, "name", &name, err, cap) ||
            get_string(jf, "type", &type, err, cap) ||
            get_string(jf, "category", &cat, err, cap) ||
            get_string(jf, "description", &fdesc, err, cap) ||
            get_bool(jf, "indexed", &f->indexed, err, cap) ||
            get_bool(jf, "required", &f->required, err, cap))
            goto fail;
        if (!name || !type || !cat) {
            snprintf(err, cap,
                     "field %zu needs \"name\", \"type\" and \"category\"",
                     i + 1);
            goto fail;
        }
        f->name = strdup(name);
        f->description = strdup(fdesc ? fdesc : "");
        if (!f->name || !f->description)
            goto nomem;
        if (dossier_field_type_parse(type) < 0) {
            snprintf(err, cap,
                     "field \"%s\": unknown type \"%s\" (string, int, double, "
                     "bool, timestamp, email, phone or enum)",
                     name, type);
            goto fail;
        }
        f->type = (enum dossier_field_type)dossier_field_type_parse(type);
        if (dossier_category_parse(cat) < 0) {
            snprintf(err, cap,
                     "field \"%s\": unknown category \"%s\" (identity, "
                     "contact, financial, special, behavioral or "
                     "operational)",
                     name, cat);
            goto fail;
        }
        f->category = (enum dossier_category)dossier_category_parse(cat);
        ret = json_object_get(jf, "retention_days");
        if (ret && !json_is_null(ret)) {
            if (!json_is_integer(ret) || json_integer_value(ret) < 0 ||
                json_integer_value(ret) > UINT32_MAX) {
                snprintf(err, cap,
                         "field \"%s\": retention_days must be a whole "
                         "number of days",
                         name);
                goto fail;
            }
            f->retention_days = (uint32_t)json_integer_value(ret);
        }
        allowed = json_object_get(jf, "allowed_values");
        f->allowed_values =
            calloc(json_array_size(allowed) + 1, sizeof(*f->allowed_values));
        if (!f->allowed_values)
            goto nomem;
        if (allowed && !json_is_array(allowed)) {
            snprintf(err, cap, "field \"%s\": allowed_values must be an array",
                     name);
            goto fail;
        }
        for (size_t k = 0; k < json_array_size(allowed); k++) {
            const json_t *a = json_array_get(allowed, k);
            if (!json_is_string(a)) {
                snprintf(err, cap,
                         "field \"%s\": allowed_values must be strings", name);
                goto fail;
            }
            f->allowed_values[k] = strdup(json_string_value(a));
            if (!f->allowed_values[k])
                goto nomem;
            f->n_allowed_values++;
        }
    }
    *out = s;
    return 0;
nomem:
    snprintf(err, cap, "out of memory");
fail:
    dossier_kind_schema_free(s);
    return -1;
}

/* ------------------------------------------------------------------ */
/* GDPR: purposes, consent, subjects, erasure, audit entries */

/* @n bytes at @b as a lower-case hex string (at most 64 bytes). */
json_t *json_hex(const uint8_t *b, size_t n)
{
    char hex[2 * 64 + 1];

    if (n > 64)
        return NULL;
    sodium_bin2hex(hex, sizeof(hex), b, n);
    return json_string(hex);
}

json_t *json_from_purpose(const struct dossier_purpose *p)
{
    json_t *cats = json_array();

    for (unsigned c = 0; cats && c < 32; c++) {
        const char *name;
        char other[32];
        if (!(p->categories & (1u << c)))
            continue;
        name = dossier_category_name((enum dossier_category)c);
        if (!name) {
            /* A category this tool does not know: show its number. */
            snprintf(other, sizeof(other), "category-%u", c);
            name = other;
        }
        if (json_array_append_new(cats, json_string(name))) {
            json_decref(cats);
            return NULL;
        }
    }
    if (!cats)
        return NULL;
    return json_pack("{s:s, s:o, s:s, s:s, s:b, s:I}", "name", p->name,
                     "categories", cats, "basis", dossier_basis_name(p->basis),
                     "description", p->description, "builtin", p->builtin,
                     "version", (json_int_t)p->version);
}

json_t *json_from_consent_event(const struct dossier_consent_event *e)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:I}", "purpose",
                     e->purpose, "state", dossier_consent_state_name(e->state),
                     "source", e->source, "notice_version", e->notice_version,
                     "time_ms", (json_int_t)e->time_ms, "principal",
                     e->principal, "revision", (json_int_t)e->revision);
}

json_t *json_from_subject_status(const struct dossier_subject_status *s)
{
    json_t *o = json_pack("{s:o, s:b, s:I}", "pseudonym",
                          json_hex(s->pseudonym, sizeof(s->pseudonym)),
                          "restricted", s->restricted, "records",
                          (json_int_t)s->records);
    if (o && s->merged)
        json_object_set_new(o, "merged_into",
                            json_hex(s->merged_into, sizeof(s->merged_into)));
    return o;
}

json_t *json_from_erasure_certificate(
    const struct dossier_erasure_certificate *c)
{
    json_t *nodes = json_array(), *pending = json_array();

    for (size_t i = 0; nodes && i < c->n_nodes; i++)
        if (json_array_append_new(nodes, json_integer((json_int_t)c->nodes[i]))) {
            json_decref(nodes);
            nodes = NULL;
        }
    for (size_t i = 0; pending && i < c->n_pending; i++)
        if (json_array_append_new(pending,
                                  json_integer((json_int_t)c->pending[i]))) {
            json_decref(pending);
            pending = NULL;
        }
    if (!nodes || !pending) {
        json_decref(nodes);
        json_decref(pending);
        return NULL;
    }
    return json_pack("{s:i, s:o, s:I, s:I, s:I, s:o, s:o, s:o, s:o}",
                     "version", c->version, "pseudonym",
                     json_hex(c->pseudonym, sizeof(c->pseudonym)), "time_ms",
                     (json_int_t)c->time_ms, "raft_index",
                     (json_int_t)c->raft_index, "records_deleted",
                     (json_int_t)c->records_deleted, "nodes", nodes,
                     "pending_nodes", pending, "signature",
                     json_hex(c->signature, sizeof(c->signature)),
                     "public_key",
                     json_hex(c->public_key, sizeof(c->public_key)));
}

/* @s as a JSON string; the log's texts are bytes, so one that is not
 * UTF-8 is shown with '?' for each byte outside printable ASCII. */
static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    char safe[1024];
    size_t i;

    if (j)
        return j;
    for (i = 0; s[i] && i < sizeof(safe) - 1; i++)
        safe[i] = s[i] >= ' ' && s[i] <= '~' ? s[i] : '?';
    safe[i] = '\0';
    return json_string(safe);
}

json_t *json_from_rectification(const struct dossier_rectification *r)
{
    json_t *fields = json_array();
    const char *p = r->fields;
    while (fields && *p) {
        size_t n = strcspn(p, ",");
        json_array_append_new(fields, json_stringn(p, n));
        p += n + (p[n] == ',');
    }
    return json_pack("{s:s, s:o, s:o, s:o, s:I, s:o, s:s, s:I}", "kind",
                     r->kind, "id", r->id[0] ? json_text(r->id) : json_null(),
                     "record", json_hex(r->record, sizeof(r->record)),
                     "fields", fields ? fields : json_null(), "time_ms",
                     (json_int_t)r->time_ms, "principal",
                     json_text(r->principal), "reference", r->reference,
                     "revision", (json_int_t)r->revision);
}

json_t *json_from_audit_entry(const struct dossier_audit_entry *e)
{
    json_t *j = json_pack(
        "{s:I, s:I, s:o, s:o, s:o, s:o, s:I, s:s}", "index",
        (json_int_t)e->index, "time_ms", (json_int_t)e->time_ms, "principal",
        json_text(e->principal), "action", json_text(e->action), "purpose",
        json_text(e->purpose), "subject",
        e->has_subject ? json_hex(e->subject, sizeof(e->subject))
                       : json_null(),
        "records", (json_int_t)e->n_records, "outcome",
        dossier_code_name(e->outcome));
    /* Only subject rights carry one (entry version 2). */
    if (j && e->reference[0])
        json_object_set_new(j, "reference", json_text(e->reference));
    return j;
}
