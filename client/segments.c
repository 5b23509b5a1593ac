/* Segment definitions read back: dossier_segment_get() and
 * dossier_segment_list() (defining and running them: dedup.c). */
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "internal.h"

/* What a dossier_segment_info points into. */
struct seg_priv {
    Dossier__V1__Segment *pb; /* a copy of its own: strings live here */
    struct dossier_segment_condition *conds;
    struct dossier_value *vals;
};

void dossier_segment_info_release(struct dossier_segment_info *s)
{
    struct seg_priv *p;
    if (!s)
        return;
    if ((p = s->priv)) {
        if (p->pb)
            dossier__v1__segment__free_unpacked(p->pb, NULL);
        free(p->conds);
        free(p->vals);
        free(p);
    }
    memset(s, 0, sizeof(*s));
}

void dossier_segment_infos_free(struct dossier_segment_info *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        dossier_segment_info_release(&v[i]);
    free(v);
}

/* @v as a public value (strings borrowed); -1 for a value of no kind. */
static int value_from_pb(const Dossier__V1__Value *v, struct dossier_value *out)
{
    switch (v ? v->kind_case : DOSSIER__V1__VALUE__KIND__NOT_SET) {
    case DOSSIER__V1__VALUE__KIND_STRING_VALUE:
        out->type = DOSSIER_TYPE_STRING;
        out->u.s = v->string_value;
        return 0;
    case DOSSIER__V1__VALUE__KIND_INT_VALUE:
        out->type = DOSSIER_TYPE_INT;
        out->u.i = v->int_value;
        return 0;
    case DOSSIER__V1__VALUE__KIND_DOUBLE_VALUE:
        out->type = DOSSIER_TYPE_DOUBLE;
        out->u.d = v->double_value;
        return 0;
    case DOSSIER__V1__VALUE__KIND_BOOL_VALUE:
        out->type = DOSSIER_TYPE_BOOL;
        out->u.b = v->bool_value;
        return 0;
    default:
        return -1;
    }
}

/* The values @v (@n) into @vals from *@at on; *@out points at the first. */
static int values_from_pb(Dossier__V1__Value *const *v, size_t n,
                          struct dossier_value *vals, size_t *at,
                          const struct dossier_value **out)
{
    *out = n ? &vals[*at] : NULL;
    for (size_t i = 0; i < n; i++)
        if (value_from_pb(v[i], &vals[(*at)++]))
            return -1;
    return 0;
}

/* @m (borrowed: copied) into @out. */
static int info_from_pb(const Dossier__V1__Segment *m,
                        struct dossier_segment_info *out,
                        struct dossier_status *st)
{
    struct seg_priv *p;
    struct dossier_segment *s = &out->segment;
    size_t len = dossier__v1__segment__get_packed_size(m), n_vals = 0, at = 0;
    uint8_t *buf;

    memset(out, 0, sizeof(*out));
    if (!(p = calloc(1, sizeof(*p))))
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    out->priv = p;
    if (!(buf = malloc(len ? len : 1)))
        goto nomem;
    dossier__v1__segment__pack(m, buf);
    p->pb = dossier__v1__segment__unpack(NULL, len, buf);
    free(buf);
    if (!p->pb)
        goto nomem;
    m = p->pb;
    for (size_t i = 0; i < m->n_conditions; i++)
        n_vals += m->conditions[i]->n_any_of + m->conditions[i]->n_all_of +
                  m->conditions[i]->n_none_of + 2;
    p->conds = calloc(m->n_conditions + 1, sizeof(*p->conds));
    p->vals = calloc(n_vals + 1, sizeof(*p->vals));
    if (!p->conds || !p->vals)
        goto nomem;
    for (size_t i = 0; i < m->n_conditions; i++) {
        const Dossier__V1__SegmentCondition *sc = m->conditions[i];
        struct dossier_segment_condition *c = &p->conds[i];
        const struct dossier_value *bound;
        c->field = sc->field;
        c->n_any_of = sc->n_any_of;
        c->n_all_of = sc->n_all_of;
        c->n_none_of = sc->n_none_of;
        if (values_from_pb(sc->any_of, sc->n_any_of, p->vals, &at,
                           &c->any_of) ||
            values_from_pb(sc->all_of, sc->n_all_of, p->vals, &at,
                           &c->all_of) ||
            values_from_pb(sc->none_of, sc->n_none_of, p->vals, &at,
                           &c->none_of))
            goto malformed;
        if (sc->at_least) {
            if (values_from_pb(&sc->at_least, 1, p->vals, &at, &bound))
                goto malformed;
            c->at_least = bound;
        }
        if (sc->below) {
            if (values_from_pb(&sc->below, 1, p->vals, &at, &bound))
                goto malformed;
            c->below = bound;
        }
    }
    s->name = m->name;
    s->kind = m->kind;
    s->description = m->description[0] ? m->description : NULL;
    s->consent_purpose = m->consent_purpose[0] ? m->consent_purpose : NULL;
    s->n_conditions = m->n_conditions;
    s->conditions = p->conds;
    s->created_after_ms = m->created_after_ms;
    s->created_before_ms = m->created_before_ms;
    s->updated_after_ms = m->updated_after_ms;
    s->updated_before_ms = m->updated_before_ms;
    out->version = m->version;
    return 0;
nomem:
    dossier_segment_info_release(out);
    return err_set(st, DOSSIER_NOMEM, "out of memory");
malformed:
    dossier_segment_info_release(out);
    return err_set(st, DOSSIER_INTERNAL,
                   "the node sent a segment condition without a value");
}

int dossier_segment_get(struct dossier_client *c,
                        const struct dossier_call_options *co, const char *name,
                        struct dossier_segment_info *out,
                        struct dossier_status *st)
{
    Dossier__V1__GetSegmentRequest req = DOSSIER__V1__GET_SEGMENT_REQUEST__INIT;
    Dossier__V1__Segment *resp;
    int rc;

    if (!out)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "the output is missing");
    memset(out, 0, sizeof(*out));
    if (!name || !name[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "name is missing");
    req.name = (char *)name;
    rc = client_unary(c, co, M_SEGMENT_GET, &req.base,
                      &dossier__v1__segment__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    rc = info_from_pb(resp, out, st);
    dossier__v1__segment__free_unpacked(resp, NULL);
    return rc;
}

int dossier_segment_list(struct dossier_client *c,
                         const struct dossier_call_options *co,
                         struct dossier_segment_info **out, size_t *n,
                         struct dossier_status *st)
{
    Dossier__V1__ListSegmentsRequest req =
        DOSSIER__V1__LIST_SEGMENTS_REQUEST__INIT;
    Dossier__V1__ListSegmentsResponse *resp;
    int rc = 0;

    if (!out || !n)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "the output is missing");
    *out = NULL;
    *n = 0;
    rc = client_unary(c, co, M_SEGMENT_LIST, &req.base,
                      &dossier__v1__list_segments_response__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    if (!(*out = calloc(resp->n_segments + 1, sizeof(**out))))
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < resp->n_segments; i++)
        if ((rc = info_from_pb(resp->segments[i], &(*out)[i], st)) == 0)
            (*n)++;
    dossier__v1__list_segments_response__free_unpacked(resp, NULL);
    if (rc) {
        dossier_segment_infos_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}
