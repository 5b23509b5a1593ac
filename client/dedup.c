/* What the node computes over many records: dossier_find_duplicates()
 * and dossier_aggregate(). */
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
        o->count = resp->rows[i]->count;
        o->sum = resp->rows[i]->sum;
    }
    out->n_rows = resp->n_rows;
    out->records = resp->records;
    out->left_out = resp->left_out;
    dossier__v1__aggregate_result__free_unpacked(resp, NULL);
    return 0;
}
