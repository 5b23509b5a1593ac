/* libdossier: kinds and their schemas. */
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "internal.h"

void dossier_kind_schema_free(struct dossier_kind_schema *s)
{
    if (!s)
        return;
    free((char *)s->kind);
    free((char *)s->description);
    for (size_t i = 0; i < s->n_fields; i++) {
        struct dossier_field_schema *f = &s->fields[i];
        free((char *)f->name);
        free((char *)f->description);
        for (size_t j = 0; j < f->n_allowed_values; j++)
            free((char *)f->allowed_values[j]);
        free(f->allowed_values);
    }
    free(s->fields);
    free(s);
}

static struct dossier_kind_schema *schema_from_pb(const Dossier__V1__KindSchema *m)
{
    struct dossier_kind_schema *s = calloc(1, sizeof(*s));
    int fail = 0;

    if (!s)
        return NULL;
    s->kind = strdup(m->kind);
    s->description = strdup(m->description);
    s->personal = m->personal;
    s->builtin = m->builtin;
    s->version = m->version;
    s->record_retention_days = m->record_retention_days;
    s->record_retention_base =
        (enum dossier_retention_base)m->record_retention_base;
    s->fields = calloc(m->n_fields ? m->n_fields : 1, sizeof(*s->fields));
    fail = !s->kind || !s->description || !s->fields;
    for (size_t i = 0; i < m->n_fields && !fail; i++) {
        const Dossier__V1__FieldSchema *fm = m->fields[i];
        struct dossier_field_schema *f = &s->fields[i];
        s->n_fields++;
        f->name = strdup(fm->name);
        f->description = strdup(fm->description);
        f->type = (enum dossier_field_type)fm->type;
        f->category = (enum dossier_category)fm->category;
        f->indexed = fm->indexed;
        f->required = fm->required;
        f->retention_days = fm->retention_days;
        f->allowed_values = calloc(fm->n_allowed_values + 1,
                                   sizeof(*f->allowed_values));
        fail = !f->name || !f->description || !f->allowed_values;
        for (size_t j = 0; j < fm->n_allowed_values && !fail; j++) {
            f->allowed_values[j] = strdup(fm->allowed_values[j]);
            fail = !f->allowed_values[j];
            f->n_allowed_values++;
        }
    }
    if (fail) {
        dossier_kind_schema_free(s);
        return NULL;
    }
    return s;
}

int dossier_schema_define(struct dossier_client *c,
                          const struct dossier_call_options *co,
                          const struct dossier_kind_schema *s,
                          struct dossier_kind_schema **out,
                          struct dossier_status *st)
{
    Dossier__V1__DefineKindRequest req = DOSSIER__V1__DEFINE_KIND_REQUEST__INIT;
    Dossier__V1__KindSchema k = DOSSIER__V1__KIND_SCHEMA__INIT;
    Dossier__V1__FieldSchema *fields = NULL, **ptrs = NULL;
    Dossier__V1__KindSchema *resp;
    int rc;

    if (out)
        *out = NULL;
    if (!s || !s->kind)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "schema is missing");
    fields = calloc(s->n_fields ? s->n_fields : 1, sizeof(*fields));
    ptrs = calloc(s->n_fields ? s->n_fields : 1, sizeof(*ptrs));
    if (!fields || !ptrs) {
        free(fields);
        free(ptrs);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    k.kind = (char *)s->kind;
    k.personal = s->personal;
    k.description = str_or_empty(s->description);
    k.record_retention_days = s->record_retention_days;
    k.record_retention_base =
        (Dossier__V1__RetentionBase)s->record_retention_base;
    for (size_t i = 0; i < s->n_fields; i++) {
        const struct dossier_field_schema *f = &s->fields[i];
        dossier__v1__field_schema__init(&fields[i]);
        fields[i].name = str_or_empty(f->name);
        fields[i].type = (Dossier__V1__FieldType)f->type;
        fields[i].category = (Dossier__V1__Category)f->category;
        fields[i].indexed = f->indexed;
        fields[i].required = f->required;
        fields[i].retention_days = f->retention_days;
        fields[i].n_allowed_values = f->n_allowed_values;
        fields[i].allowed_values = (char **)f->allowed_values;
        fields[i].description = str_or_empty(f->description);
        ptrs[i] = &fields[i];
    }
    k.n_fields = s->n_fields;
    k.fields = ptrs;
    req.schema = &k;
    rc = client_unary(c, co, M_DEFINE_KIND, &req.base,
                      &dossier__v1__kind_schema__descriptor,
                      (ProtobufCMessage **)&resp, st);
    free(fields);
    free(ptrs);
    if (rc)
        return rc;
    if (out) {
        *out = schema_from_pb(resp);
        if (!*out)
            rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    dossier__v1__kind_schema__free_unpacked(resp, NULL);
    return rc;
}

int dossier_schema_get(struct dossier_client *c,
                       const struct dossier_call_options *co, const char *kind,
                       struct dossier_kind_schema **out,
                       struct dossier_status *st)
{
    Dossier__V1__GetKindRequest req = DOSSIER__V1__GET_KIND_REQUEST__INIT;
    Dossier__V1__KindSchema *resp;
    int rc;

    *out = NULL;
    if (!kind || !kind[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "kind is missing");
    req.kind = (char *)kind;
    rc = client_unary(c, co, M_GET_KIND, &req.base,
                      &dossier__v1__kind_schema__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    *out = schema_from_pb(resp);
    dossier__v1__kind_schema__free_unpacked(resp, NULL);
    return *out ? 0 : err_set(st, DOSSIER_NOMEM, "out of memory");
}

int dossier_schema_list(struct dossier_client *c,
                        const struct dossier_call_options *co,
                        struct dossier_kind_schema ***out, size_t *n,
                        struct dossier_status *st)
{
    Dossier__V1__ListKindsRequest req = DOSSIER__V1__LIST_KINDS_REQUEST__INIT;
    Dossier__V1__ListKindsResponse *resp;
    int rc;

    *out = NULL;
    *n = 0;
    rc = client_unary(c, co, M_LIST_KINDS, &req.base,
                      &dossier__v1__list_kinds_response__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    *out = calloc(resp->n_kinds ? resp->n_kinds : 1, sizeof(**out));
    for (size_t i = 0; *out && i < resp->n_kinds; i++) {
        (*out)[i] = schema_from_pb(resp->kinds[i]);
        if (!(*out)[i]) {
            for (size_t j = 0; j < i; j++)
                dossier_kind_schema_free((*out)[j]);
            free(*out);
            *out = NULL;
        }
    }
    if (*out)
        *n = resp->n_kinds;
    dossier__v1__list_kinds_response__free_unpacked(resp, NULL);
    return *out ? 0 : err_set(st, DOSSIER_NOMEM, "out of memory");
}
