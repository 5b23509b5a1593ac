/* Subjects/Rectify (GDPR Art. 16): corrects named fields of one record of
 * a subject, or removes them. The node reads the record, opens every
 * field, makes the changes, checks the result against the kind's schema as
 * a Put is checked, seals it again and proposes it as a RectifyOp: a Put
 * that must find the record at the version read (else VERSION_CONFLICT:
 * someone changed it meanwhile; rectify again), plus a row of the
 * subject's rectification history, which the export shows. The command's
 * audit entry is subjects.rectify, with the reference. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api.h"
#include "errors.h"
#include "policy.h"
#include "records.h"
#include "schema.h"
#include "store.h"

struct rectify_ctx {
    struct call *call;
    char **fields; /* borrowed from the request: set names, then unset */
    size_t n_fields;
};

static void rectify_done(void *arg, const struct store_result *res)
{
    struct rectify_ctx *x = arg;
    Dossier__V1__RectifyResponse resp = DOSSIER__V1__RECTIFY_RESPONSE__INIT;

    if (res->status.code) {
        call_fail_status(x->call, &res->status);
    } else {
        resp.version = res->version;
        resp.updated_at_ms = res->updated_at_ms;
        resp.n_fields = x->n_fields;
        resp.fields = x->fields;
        call_reply(x->call, &resp.base);
    }
    free(x->fields);
    free(x);
}

/* 1 if field @name is removed or replaced by @req. */
static int changed(const Dossier__V1__RectifyRequest *req, const char *name)
{
    for (size_t i = 0; i < req->n_set; i++)
        if (strcmp(req->set[i]->name, name) == 0)
            return 1;
    for (size_t i = 0; i < req->n_unset; i++)
        if (strcmp(req->unset[i], name) == 0)
            return 1;
    return 0;
}

/* Checks the names of @req against kind @k: every field named once, and
 * known to the kind. 0, or -1 after answering @c. */
static int names_ok(struct call *c, const Dossier__V1__RectifyRequest *req,
                    const KindSchema *k)
{
    size_t n = req->n_set + req->n_unset;
    if (n == 0) {
        call_fail(c, DOSSIER_INVALID_ARGUMENT,
                  "nothing to rectify: name fields to set or to remove");
        return -1;
    }
    if (n > SCHEMA_FIELDS_MAX) {
        call_fail(c, DOSSIER_INVALID_ARGUMENT,
                  "at most %d fields per rectification", SCHEMA_FIELDS_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = i < req->n_set ? req->set[i]->name
                                          : req->unset[i - req->n_set];
        if (!schema_name_valid(name)) {
            call_fail(c, DOSSIER_SCHEMA_VIOLATION,
                      "field %zu to rectify has an invalid name (lower-case "
                      "letters, digits and _)",
                      i + 1);
            return -1;
        }
        if (!schema_field(k, name)) {
            call_fail(c, DOSSIER_SCHEMA_VIOLATION,
                      "field '%s' is not in the schema of kind '%s'", name,
                      k->kind);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            const char *other = j < req->n_set ? req->set[j]->name
                                               : req->unset[j - req->n_set];
            if (strcmp(name, other) == 0) {
                call_fail(c, DOSSIER_INVALID_ARGUMENT,
                          "field '%s' is named twice", name);
                return -1;
            }
        }
    }
    return 0;
}

/* Wraps the packed Put command @put (taken; its time, request id and
 * principal stay) into a RectifyOp command with @req's reference and the
 * changed @fields (borrowed), packed into *@out (malloc'd). */
static int wrap(uint8_t *put, size_t len,
                const Dossier__V1__RectifyRequest *req, char **fields,
                uint8_t **out, size_t *out_len, struct dossier_status *st)
{
    Dossier__Store__V1__Command *cmd;
    Dossier__Store__V1__RectifyOp op = DOSSIER__STORE__V1__RECTIFY_OP__INIT;
    char *keep;
    int rc = 0;

    cmd = dossier__store__v1__command__unpack(NULL, len, put);
    sodium_memzero(put, len); /* sealed, but no copy need linger */
    free(put);
    if (!cmd || cmd->op_case != DOSSIER__STORE__V1__COMMAND__OP_PUT) {
        if (cmd)
            dossier__store__v1__command__free_unpacked(cmd, NULL);
        return err_set(st, DOSSIER_INTERNAL, "the sealed record did not "
                       "decode");
    }
    op.put = cmd->put;
    op.n_fields = req->n_set + req->n_unset;
    op.fields = fields;
    keep = cmd->reference;
    cmd->reference = req->reference;
    cmd->op_case = DOSSIER__STORE__V1__COMMAND__OP_RECTIFY;
    cmd->rectify = &op;
    *out_len = dossier__store__v1__command__get_packed_size(cmd);
    *out = malloc(*out_len);
    if (*out)
        dossier__store__v1__command__pack(cmd, *out);
    else
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    /* Give the message back what it owns, so that it is freed whole: the
     * put, and its own reference (the request's was only borrowed). */
    cmd->op_case = DOSSIER__STORE__V1__COMMAND__OP_PUT;
    cmd->put = op.put;
    cmd->reference = keep;
    dossier__store__v1__command__free_unpacked(cmd, NULL);
    return rc;
}

void api_subjects_rectify(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__RectifyRequest *req = (Dossier__V1__RectifyRequest *)msg;
    struct node *n = call_node(c);
    Dossier__V1__Record nr = DOSSIER__V1__RECORD__INIT;
    Dossier__V1__Field **fields = NULL;
    uint8_t sp[STORE_SP_BYTES], rid[STORE_RID_BYTES], seal_sp[STORE_SP_BYTES];
    uint8_t *put = NULL, *cmd = NULL;
    size_t put_len = 0, cmd_len = 0, nf = 0;
    struct records_opened o;
    struct rectify_ctx *x = NULL;
    struct dossier_status st;
    const KindSchema *k;
    StoredRecord *sr;
    uint64_t expected;
    int opened = 0, rc;

    if (api_person_of(c, req->subject_id, sp) != 0 ||
        !api_label_ok(c, "reference", req->reference))
        return;
    if (!req->reference[0])
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "reference is required: the ticket of the "
                         "subject's request");
    if (records_kind(n, req->kind, &k, &st) ||
        records_check_id(req->id, "id", &st))
        return call_fail_status(c, &st);
    if (names_ok(c, req, k) != 0)
        return;
    crypt_record_pseudonym(n->crypt, k->kind, req->id, strlen(req->id), rid);
    rc = store_record_get(n->store, k->kind, rid, &sr, &st);
    if (rc == 0 && (sr->subject.len != STORE_SP_BYTES ||
                    memcmp(sr->subject.data, sp, STORE_SP_BYTES) != 0)) {
        dossier__store__v1__stored_record__free_unpacked(sr, NULL);
        rc = DOSSIER_NOT_FOUND;
    }
    if (rc == DOSSIER_NOT_FOUND)
        return call_fail(c, DOSSIER_NOT_FOUND,
                         "the subject has no record of kind '%s' with that "
                         "id",
                         k->kind);
    if (rc)
        return call_fail_status(c, &st);
    if ((rc = records_open(n, sr, rid, POLICY_ALL_CATEGORIES, &o, &st)) != 0)
        return call_fail_status(c, &st);
    opened = 1;
    for (size_t i = 0; i < req->n_unset; i++)
        if (!records_field_value(&o.rec, req->unset[i])) {
            call_fail(c, DOSSIER_FAILED_PRECONDITION,
                      "the record has no field '%s' to remove",
                      req->unset[i]);
            goto out;
        }

    /* The record as it is, but for the fields named: those it had are
     * dropped, the corrected ones (not null) added. */
    fields = calloc(o.rec.n_fields + req->n_set + 1, sizeof(*fields));
    x = calloc(1, sizeof(*x));
    if (x)
        x->fields = calloc(req->n_set + req->n_unset, sizeof(*x->fields));
    if (!fields || !x || !x->fields) {
        call_fail(c, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < o.rec.n_fields; i++)
        if (!changed(req, o.rec.fields[i]->name))
            fields[nf++] = o.rec.fields[i];
    for (size_t i = 0; i < req->n_set; i++) {
        const Dossier__V1__Value *v = req->set[i]->value;
        if (v && v->kind_case != DOSSIER__V1__VALUE__KIND__NOT_SET)
            fields[nf++] = req->set[i];
        x->fields[x->n_fields++] = req->set[i]->name;
    }
    for (size_t i = 0; i < req->n_unset; i++)
        x->fields[x->n_fields++] = req->unset[i];
    nr.kind = o.rec.kind;
    nr.id = o.rec.id;
    nr.subject_id = o.rec.subject_id;
    nr.n_links = o.rec.n_links;
    nr.links = o.rec.links;
    nr.n_fields = nf;
    nr.fields = fields;
    if (schema_check_record(k, &nr, &st)) {
        call_fail_status(c, &st);
        goto out;
    }
    expected = o.rec.version;
    rc = records_seal_put(n, k, &nr, &expected, c, &put, &put_len, seal_sp,
                          &st);
    if (rc == 0)
        rc = wrap(put, put_len, req, x->fields, &cmd, &cmd_len, &st);
    if (rc) {
        call_fail_status(c, &st);
        goto out;
    }
    x->call = c;
    rc = call_submit(c, cmd, cmd_len, rectify_done, x);
    cmd = NULL; /* taken */
    if (rc) {
        call_fail(c, rc, "the node is shutting down");
        goto out;
    }
    x = NULL; /* rectify_done frees it */
out:
    if (x) {
        free(x->fields);
        free(x);
    }
    free(cmd);
    free(fields);
    if (opened)
        records_opened_release(&o);
}
