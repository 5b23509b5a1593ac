/* The dossier.v1.Schema service: define, get and list kinds. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cluster.h"
#include "errors.h"
#include "records.h"
#include "schema.h"
#include "store.h"

struct define_ctx {
    struct call *call;
    struct node *node;
    char kind[SCHEMA_NAME_MAX + 1];
};

static void define_done(void *arg, const struct store_result *res)
{
    struct define_ctx *d = arg;
    const KindSchema *k;

    if (res->status.code) {
        call_fail_status(d->call, &res->status);
    } else {
        k = schema_registry_get(store_schemas(d->node->store), d->kind);
        if (k)
            call_reply(d->call, &k->base);
        else
            call_fail(d->call, DOSSIER_INTERNAL, "the kind vanished");
    }
    free(d);
}

void api_schema_define_kind(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__DefineKindRequest *req =
        (Dossier__V1__DefineKindRequest *)msg;
    struct node *n = call_node(c);
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__DefineKindOp op =
        DOSSIER__STORE__V1__DEFINE_KIND_OP__INIT;
    const KindSchema *prev;
    struct dossier_status st;
    struct define_ctx *d;
    uint8_t *buf;
    size_t len;
    int rc;

    if (!req->schema)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT, "schema is missing");
    /* Checked here for a quick answer, and again when applied, against
     * whatever definition is current then. */
    if (schema_check_definition(req->schema, &st))
        return call_fail_status(c, &st);
    prev = schema_registry_get(store_schemas(n->store), req->schema->kind);
    if (prev && schema_check_compatible(prev, req->schema, &st))
        return call_fail_status(c, &st);

    op.schema = req->schema;
    call_command_init(c, &cmd);
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_DEFINE_KIND;
    cmd.define_kind = &op;
    len = dossier__store__v1__command__get_packed_size(&cmd);
    buf = malloc(len);
    d = calloc(1, sizeof(*d));
    if (!buf || !d) {
        free(buf);
        free(d);
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    }
    dossier__store__v1__command__pack(&cmd, buf);
    d->call = c;
    d->node = n;
    strcpy(d->kind, req->schema->kind);
    rc = call_submit(c, buf, len, define_done, d);
    if (rc) {
        free(d);
        call_fail(c, rc, "the node is shutting down");
    }
}

void api_schema_get_kind(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__GetKindRequest *req = (Dossier__V1__GetKindRequest *)msg;
    const KindSchema *k;
    struct dossier_status st;

    if (records_kind(call_node(c), req->kind, &k, &st))
        return call_fail_status(c, &st);
    call_reply(c, &k->base);
}

void api_schema_list_kinds(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__ListKindsResponse resp = DOSSIER__V1__LIST_KINDS_RESPONSE__INIT;
    const KindSchema **kinds;
    size_t n;
    (void)msg;

    if (schema_registry_list(store_schemas(call_node(c)->store), &kinds, &n))
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    resp.n_kinds = n;
    resp.kinds = (KindSchema **)kinds;
    call_reply(c, &resp.base);
    free(kinds);
}
