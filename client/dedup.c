/* What the node computes over many records: dossier_find_duplicates(),
 * dossier_aggregate() and segments. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "internal.h"

void dossier_duplicates_release(struct dossier_duplicates *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n_groups; i++) {
        for (size_t j = 0; j < d->groups[i].n_records; j++)
            dossier_record_free(d->groups[i].records[j]);
        free(d->groups[i].records);
    }
    free(d->groups);
    free(d->next_page_token);
    memset(d, 0, sizeof(*d));
}

static int from_pb(const Dossier__V1__DuplicateReport *m,
                   struct dossier_duplicates *out, struct dossier_status *st)
{
    out->groups = calloc(m->n_groups ? m->n_groups : 1, sizeof(*out->groups));
    if (!out->groups)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_groups; i++) {
        const Dossier__V1__DuplicateGroup *g = m->groups[i];
        struct dossier_duplicate_group *o = &out->groups[i];
        if (strlen(g->field) >= sizeof(o->field))
            return err_set(st, DOSSIER_INTERNAL,
                           "the node sent a field name too long");
        out->n_groups++;
        snprintf(o->field, sizeof(o->field), "%s", g->field);
        for (size_t j = 0;
             j < g->n_rules && o->n_rules < DOSSIER_DUPLICATE_RULES_MAX; j++)
            snprintf(o->rules[o->n_rules++], sizeof(o->rules[0]), "%s",
                     g->rules[j]);
        o->records = calloc(g->n_records ? g->n_records : 1,
                            sizeof(*o->records));
        if (!o->records)
            return err_set(st, DOSSIER_NOMEM, "out of memory");
        for (size_t j = 0; j < g->n_records; j++) {
            if (!(o->records[j] = record_from_pb(g->records[j])))
                return err_set(st, DOSSIER_NOMEM, "out of memory");
            o->n_records++;
        }
    }
    if (m->next_page_token[0] &&
        !(out->next_page_token = strdup(m->next_page_token)))
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    return 0;
}

int dossier_find_duplicates(struct dossier_client *c,
                            const struct dossier_call_options *co,
                            const char *kind, const char *const *fields,
                            size_t n_fields,
                            const struct dossier_page_request *pr,
                            struct dossier_duplicates *out,
                            struct dossier_status *st)
{
    Dossier__V1__FindDuplicatesRequest req =
        DOSSIER__V1__FIND_DUPLICATES_REQUEST__INIT;
    Dossier__V1__DuplicateReport *resp;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!kind || !kind[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "kind is missing");
    if (n_fields && !fields)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "fields is missing");
    req.kind = (char *)kind;
    req.n_fields = n_fields;
    req.fields = (char **)fields;
    if (pr) {
        req.page_size = pr->page_size;
        req.page_token = str_or_empty(pr->page_token);
    }
    rc = client_unary(c, co, M_FIND_DUPLICATES, &req.base,
                      &dossier__v1__duplicate_report__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    rc = from_pb(resp, out, st);
    dossier__v1__duplicate_report__free_unpacked(resp, NULL);
    if (rc)
        dossier_duplicates_release(out);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Duplicate rules */

static void rule_set_from_pb(const Dossier__V1__DuplicateRuleSet *m,
                             struct dossier_duplicate_rule_set *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->kind, sizeof(out->kind), "%s", m->kind);
    out->defined = m->defined;
    out->version = m->version;
    for (size_t i = 0; i < m->n_rules && i < DOSSIER_DUPLICATE_RULES_MAX;
         i++) {
        const Dossier__V1__DuplicateRule *r = m->rules[i];
        snprintf(out->rules[i].name, sizeof(out->rules[i].name), "%s",
                 r->name);
        for (size_t j = 0;
             j < r->n_fields && j < DOSSIER_DUPLICATE_RULE_FIELDS_MAX; j++)
            snprintf(out->rules[i].fields[out->rules[i].n_fields++],
                     sizeof(out->rules[i].fields[0]), "%s", r->fields[j]);
        out->n_rules++;
    }
}

int dossier_duplicate_rules_define(struct dossier_client *c,
                                   const struct dossier_call_options *co,
                                   const char *kind,
                                   const struct dossier_duplicate_rule *rules,
                                   size_t n,
                                   struct dossier_duplicate_rule_set *out,
                                   struct dossier_status *st)
{
    Dossier__V1__DefineDuplicateRulesRequest req =
        DOSSIER__V1__DEFINE_DUPLICATE_RULES_REQUEST__INIT;
    Dossier__V1__DuplicateRuleSet set = DOSSIER__V1__DUPLICATE_RULE_SET__INIT,
                                  *resp;
    Dossier__V1__DuplicateRule *r, **rp;
    int rc;

    if (!kind || !kind[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "kind is missing");
    if (n && !rules)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "rules is missing");
    for (size_t i = 0; i < n; i++)
        if (!rules[i].name || (rules[i].n_fields && !rules[i].fields))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "rule %zu is missing its name or fields", i + 1);
    r = calloc(n + 1, sizeof(*r));
    rp = calloc(n + 1, sizeof(*rp));
    if (!r || !rp) {
        free(r);
        free(rp);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        dossier__v1__duplicate_rule__init(&r[i]);
        r[i].name = (char *)rules[i].name;
        r[i].n_fields = rules[i].n_fields;
        r[i].fields = (char **)rules[i].fields;
        rp[i] = &r[i];
    }
    set.kind = (char *)kind;
    set.n_rules = n;
    set.rules = rp;
    req.rule_set = &set;
    rc = client_unary(c, co, M_DUP_RULES_DEFINE, &req.base,
                      &dossier__v1__duplicate_rule_set__descriptor,
                      (ProtobufCMessage **)&resp, st);
    free(r);
    free(rp);
    if (rc)
        return rc;
    if (out)
        rule_set_from_pb(resp, out);
    dossier__v1__duplicate_rule_set__free_unpacked(resp, NULL);
    return 0;
}

int dossier_duplicate_rules_get(struct dossier_client *c,
                                const struct dossier_call_options *co,
                                const char *kind,
                                struct dossier_duplicate_rule_set *out,
                                struct dossier_status *st)
{
    Dossier__V1__GetDuplicateRulesRequest req =
        DOSSIER__V1__GET_DUPLICATE_RULES_REQUEST__INIT;
    Dossier__V1__DuplicateRuleSet *resp;
    int rc;

    if (!kind || !kind[0] || !out)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "kind or the output is missing");
    req.kind = (char *)kind;
    rc = client_unary(c, co, M_DUP_RULES_GET, &req.base,
                      &dossier__v1__duplicate_rule_set__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    rule_set_from_pb(resp, out);
    dossier__v1__duplicate_rule_set__free_unpacked(resp, NULL);
    return 0;
}

int dossier_duplicate_rules_list(struct dossier_client *c,
                                 const struct dossier_call_options *co,
                                 struct dossier_duplicate_rule_set **out,
                                 size_t *n, struct dossier_status *st)
{
    Dossier__V1__ListDuplicateRulesRequest req =
        DOSSIER__V1__LIST_DUPLICATE_RULES_REQUEST__INIT;
    Dossier__V1__ListDuplicateRulesResponse *resp;
    int rc;

    *out = NULL;
    *n = 0;
    rc = client_unary(c, co, M_DUP_RULES_LIST, &req.base,
                      &dossier__v1__list_duplicate_rules_response__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    *out = calloc(resp->n_rule_sets + 1, sizeof(**out));
    if (!*out) {
        dossier__v1__list_duplicate_rules_response__free_unpacked(resp, NULL);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < resp->n_rule_sets; i++)
        rule_set_from_pb(resp->rule_sets[i], &(*out)[i]);
    *n = resp->n_rule_sets;
    dossier__v1__list_duplicate_rules_response__free_unpacked(resp, NULL);
    return 0;
}

void dossier_aggregate_release(struct dossier_aggregate *a)
{
    if (!a)
        return;
    free(a->rows);
    memset(a, 0, sizeof(*a));
}

int dossier_aggregate(struct dossier_client *c,
                      const struct dossier_call_options *co,
                      const struct dossier_aggregate_request *r,
                      struct dossier_aggregate *out, struct dossier_status *st)
{
    Dossier__V1__AggregateRequest req = DOSSIER__V1__AGGREGATE_REQUEST__INIT;
    Dossier__V1__AggregateResult *resp;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!r || !r->kind || !r->kind[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "kind is missing");
    req.kind = (char *)r->kind;
    req.group_by = str_or_empty(r->group_by);
    req.sum = str_or_empty(r->sum);
    req.time_field = str_or_empty(r->time_field);
    req.bucket = str_or_empty(r->bucket);
    rc = client_unary(c, co, M_AGGREGATE, &req.base,
                      &dossier__v1__aggregate_result__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    out->rows = calloc(resp->n_rows ? resp->n_rows : 1, sizeof(*out->rows));
    if (!out->rows) {
        dossier__v1__aggregate_result__free_unpacked(resp, NULL);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < resp->n_rows; i++) {
        struct dossier_aggregate_row *o = &out->rows[i];
        snprintf(o->key, sizeof(o->key), "%s", resp->rows[i]->key);
        o->bucket_start_ms = resp->rows[i]->bucket_start_ms;
        o->no_time = resp->rows[i]->no_time;
        o->count = resp->rows[i]->count;
        o->sum = resp->rows[i]->sum;
    }
    out->n_rows = resp->n_rows;
    out->records = resp->records;
    out->left_out = resp->left_out;
    out->suppressed = resp->suppressed;
    dossier__v1__aggregate_result__free_unpacked(resp, NULL);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Segments */

/* Values of @n (@v) into @vals from *@at on, their pointers into @vptrs;
 * *@out points at the first. */
static int values_to_pb(const struct dossier_value *v, size_t n,
                        Dossier__V1__Value *vals, Dossier__V1__Value **vptrs,
                        size_t *at, Dossier__V1__Value ***out)
{
    *out = vptrs + *at;
    for (size_t j = 0; j < n; j++, (*at)++) {
        if (value_to_pb(&v[j], &vals[*at]) != 0)
            return -1;
        vptrs[*at] = &vals[*at];
    }
    return 0;
}

int dossier_segment_define(struct dossier_client *c,
                           const struct dossier_call_options *co,
                           const struct dossier_segment *s, uint64_t *version,
                           struct dossier_status *st)
{
    Dossier__V1__DefineSegmentRequest req =
        DOSSIER__V1__DEFINE_SEGMENT_REQUEST__INIT;
    Dossier__V1__Segment seg = DOSSIER__V1__SEGMENT__INIT, *resp;
    Dossier__V1__SegmentCondition *conds = NULL, **cptrs = NULL;
    Dossier__V1__Value *vals = NULL, **vptrs = NULL;
    size_t n_vals = 0, at = 0;
    int rc;

    if (!s || !s->name || !s->kind)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "the segment, its name or its kind is missing");
    if (s->n_conditions && !s->conditions)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "conditions is missing");
    for (size_t i = 0; i < s->n_conditions; i++) {
        const struct dossier_segment_condition *sc = &s->conditions[i];
        if (!sc->field || (sc->n_any_of && !sc->any_of) ||
            (sc->n_all_of && !sc->all_of) || (sc->n_none_of && !sc->none_of))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "condition %zu is missing its field or values",
                           i + 1);
        n_vals += sc->n_any_of + sc->n_all_of + sc->n_none_of + 2;
    }
    conds = calloc(s->n_conditions + 1, sizeof(*conds));
    cptrs = calloc(s->n_conditions + 1, sizeof(*cptrs));
    vals = calloc(n_vals + 1, sizeof(*vals));
    vptrs = calloc(n_vals + 1, sizeof(*vptrs));
    if (!conds || !cptrs || !vals || !vptrs) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < s->n_conditions; i++) {
        const struct dossier_segment_condition *sc = &s->conditions[i];
        Dossier__V1__Value **bound;
        dossier__v1__segment_condition__init(&conds[i]);
        conds[i].field = (char *)sc->field;
        conds[i].n_any_of = sc->n_any_of;
        conds[i].n_all_of = sc->n_all_of;
        conds[i].n_none_of = sc->n_none_of;
        if (values_to_pb(sc->any_of, sc->n_any_of, vals, vptrs, &at,
                         &conds[i].any_of) ||
            values_to_pb(sc->all_of, sc->n_all_of, vals, vptrs, &at,
                         &conds[i].all_of) ||
            values_to_pb(sc->none_of, sc->n_none_of, vals, vptrs, &at,
                         &conds[i].none_of))
            goto malformed;
        if (sc->at_least) {
            if (values_to_pb(sc->at_least, 1, vals, vptrs, &at, &bound))
                goto malformed;
            conds[i].at_least = *bound;
        }
        if (sc->below) {
            if (values_to_pb(sc->below, 1, vals, vptrs, &at, &bound))
                goto malformed;
            conds[i].below = *bound;
        }
        cptrs[i] = &conds[i];
        continue;
    malformed:
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "condition on '%s': a value is malformed", sc->field);
        goto out;
    }
    seg.name = (char *)s->name;
    seg.kind = (char *)s->kind;
    seg.description = str_or_empty(s->description);
    seg.consent_purpose = str_or_empty(s->consent_purpose);
    seg.n_conditions = s->n_conditions;
    seg.conditions = cptrs;
    seg.created_after_ms = s->created_after_ms;
    seg.created_before_ms = s->created_before_ms;
    seg.updated_after_ms = s->updated_after_ms;
    seg.updated_before_ms = s->updated_before_ms;
    req.segment = &seg;
    rc = client_unary(c, co, M_SEGMENT_DEFINE, &req.base,
                      &dossier__v1__segment__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc == 0) {
        if (version)
            *version = resp->version;
        dossier__v1__segment__free_unpacked(resp, NULL);
    }
out:
    free(conds);
    free(cptrs);
    free(vals);
    free(vptrs);
    return rc;
}

void dossier_segment_members_release(struct dossier_segment_members *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_ids; i++)
        free(m->ids[i]);
    free(m->ids);
    free(m->next_page_token);
    memset(m, 0, sizeof(*m));
}

int dossier_segment_run(struct dossier_client *c,
                        const struct dossier_call_options *co, const char *name,
                        const struct dossier_page_request *pr,
                        struct dossier_segment_members *out,
                        struct dossier_status *st)
{
    Dossier__V1__RunSegmentRequest req = DOSSIER__V1__RUN_SEGMENT_REQUEST__INIT;
    Dossier__V1__SegmentMembers *resp;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!name || !name[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "name is missing");
    req.name = (char *)name;
    if (pr) {
        req.page_size = pr->page_size;
        req.page_token = str_or_empty(pr->page_token);
    }
    rc = client_unary(c, co, M_SEGMENT_RUN, &req.base,
                      &dossier__v1__segment_members__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    out->ids = calloc(resp->n_records ? resp->n_records : 1,
                      sizeof(*out->ids));
    if (!out->ids)
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < resp->n_records; i++) {
        if (!(out->ids[i] = strdup(resp->records[i]->id)))
            rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        else
            out->n_ids++;
        if (i == 0)
            snprintf(out->kind, sizeof(out->kind), "%s",
                     resp->records[i]->kind);
    }
    if (rc == 0 && resp->next_page_token[0] &&
        !(out->next_page_token = strdup(resp->next_page_token)))
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    dossier__v1__segment_members__free_unpacked(resp, NULL);
    if (rc)
        dossier_segment_members_release(out);
    return rc;
}
