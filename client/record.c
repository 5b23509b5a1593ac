/* libdossier: records as plain structs, and their protobuf form. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "errors.h"
#include "internal.h"

/* Frees a string the library allocated, wiping it first: it may be a
 * personal value. */
static void str_free(const char *s)
{
    if (s) {
        sodium_memzero((char *)s, strlen(s));
        free((char *)s);
    }
}

static char *dup_or_null(const char *s, int *fail)
{
    char *d;
    if (!s)
        return NULL;
    d = strdup(s);
    if (!d)
        *fail = 1;
    return d;
}

struct dossier_record *dossier_record_new(const char *kind, const char *id,
                                          const char *subject_id)
{
    struct dossier_record *r = calloc(1, sizeof(*r));
    int fail = 0;
    if (!r)
        return NULL;
    r->kind = dup_or_null(kind ? kind : "", &fail);
    r->id = dup_or_null(id ? id : "", &fail);
    r->subject_id = dup_or_null(subject_id, &fail);
    if (fail) {
        dossier_record_free(r);
        return NULL;
    }
    return r;
}

static void value_release(struct dossier_value *v)
{
    if (v->type == DOSSIER_TYPE_STRING)
        str_free(v->u.s);
    memset(v, 0, sizeof(*v));
}

void dossier_record_free(struct dossier_record *r)
{
    if (!r)
        return;
    str_free(r->kind);
    str_free(r->id);
    str_free(r->subject_id);
    for (size_t i = 0; i < r->n_fields; i++) {
        str_free(r->fields[i].name);
        value_release(&r->fields[i].value);
    }
    free(r->fields);
    for (size_t i = 0; i < r->n_links; i++) {
        str_free(r->links[i].label);
        str_free(r->links[i].kind);
        str_free(r->links[i].id);
    }
    free(r->links);
    free(r);
}

const struct dossier_value *dossier_record_field(const struct dossier_record *r,
                                                 const char *name)
{
    for (size_t i = 0; i < r->n_fields; i++)
        if (r->fields[i].name && strcmp(r->fields[i].name, name) == 0)
            return &r->fields[i].value;
    return NULL;
}

/* Sets field @name to @v, whose string (if any) the record now owns. */
static int set_field(struct dossier_record *r, const char *name,
                     struct dossier_value v)
{
    struct dossier_field *f;
    char *n;

    for (size_t i = 0; i < r->n_fields; i++)
        if (strcmp(r->fields[i].name, name) == 0) {
            value_release(&r->fields[i].value);
            r->fields[i].value = v;
            return 0;
        }
    n = strdup(name);
    f = realloc(r->fields, (r->n_fields + 1) * sizeof(*f));
    if (!n || !f) {
        free(n);
        if (f)
            r->fields = f;
        value_release(&v);
        return DOSSIER_NOMEM;
    }
    r->fields = f;
    f[r->n_fields].name = n;
    f[r->n_fields].value = v;
    r->n_fields++;
    return 0;
}

int dossier_record_set_string(struct dossier_record *r, const char *name,
                              const char *s)
{
    struct dossier_value v = {.type = DOSSIER_TYPE_STRING};
    v.u.s = strdup(s ? s : "");
    if (!v.u.s)
        return DOSSIER_NOMEM;
    return set_field(r, name, v);
}

int dossier_record_set_int(struct dossier_record *r, const char *name,
                           int64_t i)
{
    struct dossier_value v = {.type = DOSSIER_TYPE_INT, .u.i = i};
    return set_field(r, name, v);
}

int dossier_record_set_double(struct dossier_record *r, const char *name,
                              double d)
{
    struct dossier_value v = {.type = DOSSIER_TYPE_DOUBLE, .u.d = d};
    return set_field(r, name, v);
}

int dossier_record_set_bool(struct dossier_record *r, const char *name, int b)
{
    struct dossier_value v = {.type = DOSSIER_TYPE_BOOL, .u.b = !!b};
    return set_field(r, name, v);
}

int dossier_record_add_link(struct dossier_record *r, const char *label,
                            const char *kind, const char *id)
{
    struct dossier_link *l = realloc(r->links, (r->n_links + 1) * sizeof(*l));
    int fail = 0;
    if (!l)
        return DOSSIER_NOMEM;
    r->links = l;
    l += r->n_links;
    l->label = dup_or_null(label ? label : "", &fail);
    l->kind = dup_or_null(kind ? kind : "", &fail);
    l->id = dup_or_null(id ? id : "", &fail);
    if (fail) {
        str_free(l->label);
        str_free(l->kind);
        str_free(l->id);
        return DOSSIER_NOMEM;
    }
    r->n_links++;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Protobuf form */

int value_to_pb(const struct dossier_value *v, Dossier__V1__Value *out)
{
    dossier__v1__value__init(out);
    switch (v->type) {
    case DOSSIER_TYPE_NULL:
        return 0;
    case DOSSIER_TYPE_STRING:
        if (!v->u.s)
            return -1;
        out->kind_case = DOSSIER__V1__VALUE__KIND_STRING_VALUE;
        out->string_value = (char *)v->u.s;
        return 0;
    case DOSSIER_TYPE_INT:
        out->kind_case = DOSSIER__V1__VALUE__KIND_INT_VALUE;
        out->int_value = v->u.i;
        return 0;
    case DOSSIER_TYPE_DOUBLE:
        out->kind_case = DOSSIER__V1__VALUE__KIND_DOUBLE_VALUE;
        out->double_value = v->u.d;
        return 0;
    case DOSSIER_TYPE_BOOL:
        out->kind_case = DOSSIER__V1__VALUE__KIND_BOOL_VALUE;
        out->bool_value = v->u.b != 0;
        return 0;
    }
    return -1;
}

int record_pb_init(struct record_pb *p, const struct dossier_record *r,
                   struct dossier_status *st)
{
    size_t nf = r->n_fields, nl = r->n_links;

    memset(p, 0, sizeof(*p));
    dossier__v1__record__init(&p->msg);
    p->fields = calloc(nf ? nf : 1, sizeof(*p->fields));
    p->field_ptrs = calloc(nf ? nf : 1, sizeof(*p->field_ptrs));
    p->values = calloc(nf ? nf : 1, sizeof(*p->values));
    p->links = calloc(nl ? nl : 1, sizeof(*p->links));
    p->link_ptrs = calloc(nl ? nl : 1, sizeof(*p->link_ptrs));
    if (!p->fields || !p->field_ptrs || !p->values || !p->links ||
        !p->link_ptrs) {
        record_pb_release(p);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    p->msg.kind = str_or_empty(r->kind);
    p->msg.id = str_or_empty(r->id);
    p->msg.subject_id = str_or_empty(r->subject_id);
    for (size_t i = 0; i < nf; i++) {
        if (!r->fields[i].name || value_to_pb(&r->fields[i].value,
                                              &p->values[i]) != 0) {
            record_pb_release(p);
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "field %zu has no name or an invalid value", i + 1);
        }
        dossier__v1__field__init(&p->fields[i]);
        p->fields[i].name = (char *)r->fields[i].name;
        p->fields[i].value = &p->values[i];
        p->field_ptrs[i] = &p->fields[i];
    }
    for (size_t i = 0; i < nl; i++) {
        dossier__v1__link__init(&p->links[i]);
        p->links[i].label = str_or_empty(r->links[i].label);
        p->links[i].kind = str_or_empty(r->links[i].kind);
        p->links[i].id = str_or_empty(r->links[i].id);
        p->link_ptrs[i] = &p->links[i];
    }
    p->msg.n_fields = nf;
    p->msg.fields = p->field_ptrs;
    p->msg.n_links = nl;
    p->msg.links = p->link_ptrs;
    return 0;
}

void record_pb_release(struct record_pb *p)
{
    free(p->fields);
    free(p->field_ptrs);
    free(p->values);
    free(p->links);
    free(p->link_ptrs);
    memset(p, 0, sizeof(*p));
}

struct dossier_record *record_from_pb(const Dossier__V1__Record *m)
{
    struct dossier_record *r = dossier_record_new(
        m->kind, m->id, m->subject_id[0] ? m->subject_id : NULL);
    int rc = 0;

    if (!r)
        return NULL;
    r->version = m->version;
    r->created_at_ms = m->created_at_ms;
    r->updated_at_ms = m->updated_at_ms;
    for (size_t i = 0; i < m->n_fields && rc == 0; i++) {
        const Dossier__V1__Value *v = m->fields[i]->value;
        if (!v)
            continue;
        switch (v->kind_case) {
        case DOSSIER__V1__VALUE__KIND_STRING_VALUE:
            rc = dossier_record_set_string(r, m->fields[i]->name,
                                           v->string_value);
            break;
        case DOSSIER__V1__VALUE__KIND_INT_VALUE:
            rc = dossier_record_set_int(r, m->fields[i]->name, v->int_value);
            break;
        case DOSSIER__V1__VALUE__KIND_DOUBLE_VALUE:
            rc = dossier_record_set_double(r, m->fields[i]->name,
                                           v->double_value);
            break;
        case DOSSIER__V1__VALUE__KIND_BOOL_VALUE:
            rc = dossier_record_set_bool(r, m->fields[i]->name,
                                         v->bool_value);
            break;
        default:
            break;
        }
    }
    for (size_t i = 0; i < m->n_links && rc == 0; i++)
        rc = dossier_record_add_link(r, m->links[i]->label, m->links[i]->kind,
                                     m->links[i]->id);
    if (rc) {
        dossier_record_free(r);
        return NULL;
    }
    return r;
}
