/* Merges of duplicate records: dossier_merge() and its undo, confirmation
 * and listing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "internal.h"

void dossier_merge_info_release(struct dossier_merge_info *m)
{
    if (!m)
        return;
    free(m->survivor_id);
    for (size_t i = 0; i < m->n_duplicates; i++)
        free(m->duplicate_ids[i]);
    free(m->duplicate_ids);
    memset(m, 0, sizeof(*m));
}

void dossier_merge_infos_free(struct dossier_merge_info *m, size_t n)
{
    for (size_t i = 0; m && i < n; i++)
        dossier_merge_info_release(&m[i]);
    free(m);
}

static int info_from_pb(const Dossier__V1__MergeInfo *p,
                        struct dossier_merge_info *out,
                        struct dossier_status *st)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", p->id);
    snprintf(out->kind, sizeof(out->kind), "%s", p->kind);
    snprintf(out->merged_by, sizeof(out->merged_by), "%s", p->merged_by);
    snprintf(out->reference, sizeof(out->reference), "%s", p->reference);
    snprintf(out->state, sizeof(out->state), "%s", p->state);
    out->merged_ms = p->merged_ms;
    out->version = p->version;
    out->records_moved = p->records_moved;
    out->links_moved = p->links_moved;
    out->survivor_id = strdup(p->survivor_id);
    out->duplicate_ids = calloc(p->n_duplicate_ids + 1,
                                sizeof(*out->duplicate_ids));
    if (!out->survivor_id || !out->duplicate_ids)
        goto nomem;
    for (size_t i = 0; i < p->n_duplicate_ids; i++) {
        if (!(out->duplicate_ids[i] = strdup(p->duplicate_ids[i])))
            goto nomem;
        out->n_duplicates++;
    }
    return 0;
nomem:
    dossier_merge_info_release(out);
    return err_set(st, DOSSIER_NOMEM, "out of memory");
}

/* Answers with @resp into @out (may be NULL) and frees @resp. */
static int info_reply(Dossier__V1__MergeInfo *resp,
                      struct dossier_merge_info *out,
                      struct dossier_status *st)
{
    int rc = out ? info_from_pb(resp, out, st) : 0;
    dossier__v1__merge_info__free_unpacked(resp, NULL);
    return rc;
}

int dossier_merge(struct dossier_client *c, const struct dossier_call_options *co,
                  const struct dossier_merge_request *r,
                  struct dossier_merge_info *out, struct dossier_status *st)
{
    Dossier__V1__MergeRequest req = DOSSIER__V1__MERGE_REQUEST__INIT;
    Dossier__V1__MergeFieldChoice *ch = NULL, **chp = NULL;
    Dossier__V1__MergeInfo *resp;
    int rc;

    if (out)
        memset(out, 0, sizeof(*out));
    if (!r || !r->kind || !r->survivor_id ||
        (r->n_duplicates && !r->duplicate_ids) ||
        (r->n_choices && !r->choices))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "kind, survivor_id or duplicate_ids is missing");
    for (size_t i = 0; i < r->n_duplicates; i++)
        if (!r->duplicate_ids[i])
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "duplicate id %zu is missing", i + 1);
    for (size_t i = 0; i < r->n_choices; i++)
        if (!r->choices[i].field || !r->choices[i].id)
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "choice %zu is missing its field or id", i + 1);
    ch = calloc(r->n_choices + 1, sizeof(*ch));
    chp = calloc(r->n_choices + 1, sizeof(*chp));
    if (!ch || !chp) {
        free(ch);
        free(chp);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < r->n_choices; i++) {
        dossier__v1__merge_field_choice__init(&ch[i]);
        ch[i].field = (char *)r->choices[i].field;
        ch[i].id = (char *)r->choices[i].id;
        chp[i] = &ch[i];
    }
    req.kind = (char *)r->kind;
    req.survivor_id = (char *)r->survivor_id;
    req.n_duplicate_ids = r->n_duplicates;
    req.duplicate_ids = (char **)r->duplicate_ids;
    req.prefer = r->prefer == DOSSIER_MERGE_PREFER_NEWEST
                     ? DOSSIER__V1__MERGE_PREFER__MERGE_PREFER_NEWEST
                     : DOSSIER__V1__MERGE_PREFER__MERGE_PREFER_SURVIVOR;
    req.n_choices = r->n_choices;
    req.choices = chp;
    req.reference = str_or_empty(r->reference);
    rc = client_unary(c, co, M_MERGE, &req.base,
                      &dossier__v1__merge_info__descriptor,
                      (ProtobufCMessage **)&resp, st);
    free(ch);
    free(chp);
    return rc ? rc : info_reply(resp, out, st);
}

static int settle(struct dossier_client *c,
                  const struct dossier_call_options *co, enum client_method m,
                  const char *id, const char *reference,
                  struct dossier_merge_info *out, struct dossier_status *st)
{
    Dossier__V1__MergeIdRequest req = DOSSIER__V1__MERGE_ID_REQUEST__INIT;
    Dossier__V1__MergeInfo *resp;
    int rc;

    if (out)
        memset(out, 0, sizeof(*out));
    if (!id || !id[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "id is missing");
    req.id = (char *)id;
    req.reference = str_or_empty(reference);
    rc = client_unary(c, co, m, &req.base,
                      &dossier__v1__merge_info__descriptor,
                      (ProtobufCMessage **)&resp, st);
    return rc ? rc : info_reply(resp, out, st);
}

int dossier_merge_undo(struct dossier_client *c,
                       const struct dossier_call_options *co, const char *id,
                       const char *reference, struct dossier_merge_info *out,
                       struct dossier_status *st)
{
    return settle(c, co, M_MERGE_UNDO, id, reference, out, st);
}

int dossier_merge_confirm(struct dossier_client *c,
                          const struct dossier_call_options *co,
                          const char *id, const char *reference,
                          struct dossier_merge_info *out,
                          struct dossier_status *st)
{
    return settle(c, co, M_MERGE_CONFIRM, id, reference, out, st);
}

void dossier_merge_page_release(struct dossier_merge_page *p)
{
    if (!p)
        return;
    dossier_merge_infos_free(p->merges, p->n_merges);
    free(p->next_page_token);
    memset(p, 0, sizeof(*p));
}

int dossier_merge_list_page(struct dossier_client *c,
                            const struct dossier_call_options *co,
                            const struct dossier_page_request *pr,
                            struct dossier_merge_page *out,
                            struct dossier_status *st)
{
    Dossier__V1__ListMergesRequest req = DOSSIER__V1__LIST_MERGES_REQUEST__INIT;
    Dossier__V1__ListMergesResponse *resp;
    int rc;

    memset(out, 0, sizeof(*out));
    if (pr) {
        req.page_size = pr->page_size;
        req.page_token = (char *)(pr->page_token ? pr->page_token : "");
    }
    rc = client_unary(c, co, M_MERGE_LIST, &req.base,
                      &dossier__v1__list_merges_response__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    out->merges = calloc(resp->n_merges + 1, sizeof(*out->merges));
    if (!out->merges)
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < resp->n_merges; i++)
        if ((rc = info_from_pb(resp->merges[i], &out->merges[i], st)) == 0)
            out->n_merges++;
    if (rc == 0 && resp->next_page_token[0] &&
        !(out->next_page_token = strdup(resp->next_page_token)))
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    dossier__v1__list_merges_response__free_unpacked(resp, NULL);
    if (rc)
        dossier_merge_page_release(out);
    return rc;
}

int dossier_merge_list(struct dossier_client *c,
                       const struct dossier_call_options *co,
                       struct dossier_merge_info **out, size_t *n,
                       struct dossier_status *st)
{
    struct dossier_page_request pr = {1000, NULL};
    struct dossier_merge_page pg;
    char *token = NULL;
    size_t cap = 0;
    int rc;

    *out = NULL;
    *n = 0;
    for (;;) {
        rc = dossier_merge_list_page(c, co, &pr, &pg, st);
        if (rc)
            break;
        if (*n + pg.n_merges + 1 > cap) {
            size_t ncap = 2 * (*n + pg.n_merges + 1);
            struct dossier_merge_info *m = realloc(*out, ncap * sizeof(*m));
            if (!m) {
                dossier_merge_page_release(&pg);
                rc = err_set(st, DOSSIER_NOMEM, "out of memory");
                break;
            }
            *out = m;
            cap = ncap;
        }
        /* The infos move: their strings now belong to *out. */
        memcpy(*out + *n, pg.merges, pg.n_merges * sizeof(*pg.merges));
        *n += pg.n_merges;
        free(pg.merges);
        free(token);
        token = pg.next_page_token;
        if (!token)
            break;
        pr.page_token = token;
    }
    free(token);
    if (rc) {
        dossier_merge_infos_free(*out, *n);
        *out = NULL;
        *n = 0;
    } else if (!*out && !(*out = calloc(1, sizeof(**out)))) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    return rc;
}
