/* The dossier.v1.Principals service: principals kept in the replicated
 * state, beside the auth file's. Adding the first one turns authentication
 * on for the whole cluster (server.c auth_on()); before that, as every
 * call, Add needs no credentials: that is how a cluster without an auth
 * file gets its first admin. A node started with --require-auth takes no
 * call without credentials: there the first admin is added with the
 * bootstrap token (bootstrap.h), and the last admin of the cluster's state
 * cannot be removed (unless the node's auth file names an admin), since
 * the token never works again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "bootstrap.h"
#include "errors.h"
#include "records.h"
#include "store.h"

struct principal_ctx {
    struct call *call;
    char name[AUTH_NAME_MAX + 1];
    int removed;
    Dossier__Store__V1__StoredPrincipal *old; /* remove: what it was */
};

static void info_from(const Dossier__Store__V1__StoredPrincipal *sp,
                      Dossier__V1__PrincipalInfo *out)
{
    dossier__v1__principal_info__init(out);
    out->name = sp->name;
    out->role = sp->role;
    out->purposes = sp->purposes;
    out->created_ms = sp->created_ms;
    out->created_by = sp->created_by;
}

static void principal_done(void *arg, const struct store_result *res)
{
    struct principal_ctx *x = arg;
    Dossier__Store__V1__StoredPrincipal *sp = NULL;
    Dossier__V1__PrincipalInfo info;
    struct dossier_status st;

    if (res->status.code) {
        call_fail_status(x->call, &res->status);
    } else if (x->removed) {
        info_from(x->old, &info);
        call_reply(x->call, &info.base);
    } else if (store_principal_get(call_node(x->call)->store, x->name, &sp,
                                   &st) != 0) {
        call_fail_status(x->call, &st);
    } else {
        info_from(sp, &info);
        call_reply(x->call, &info.base);
        dossier__store__v1__stored_principal__free_unpacked(sp, NULL);
    }
    if (x->old)
        dossier__store__v1__stored_principal__free_unpacked(x->old, NULL);
    free(x);
}

static int name_ok(struct call *c, const char *name)
{
    int ok = auth_principal_name_valid(name);
    if (!ok)
        call_fail(c, DOSSIER_INVALID_ARGUMENT,
                  "a principal's name is 1 to 64 characters of a-z 0-9 . _ -");
    return ok;
}

static void submit_op(struct call *c, Dossier__Store__V1__PrincipalOp *op,
                      struct principal_ctx *x)
{
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    uint8_t *buf;
    size_t len;
    int rc;

    call_command_init(c, &cmd);
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_PRINCIPAL_OP;
    cmd.principal_op = op;
    len = dossier__store__v1__command__get_packed_size(&cmd);
    if (!(buf = malloc(len))) {
        if (x->old)
            dossier__store__v1__stored_principal__free_unpacked(x->old, NULL);
        free(x);
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    }
    dossier__store__v1__command__pack(&cmd, buf);
    rc = call_submit(c, buf, len, principal_done, x);
    if (rc) {
        if (x->old)
            dossier__store__v1__stored_principal__free_unpacked(x->old, NULL);
        free(x);
        call_fail(c, rc, "the node is shutting down");
    }
}

void api_principals_add(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__AddPrincipalRequest *req =
        (Dossier__V1__AddPrincipalRequest *)msg;
    Dossier__Store__V1__PrincipalOp op = DOSSIER__STORE__V1__PRINCIPAL_OP__INIT;
    struct node *n = call_node(c);
    struct principal_ctx *x;

    if (!name_ok(c, req->name))
        return;
    if (!auth_role_parse(req->role))
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "role must be service, compliance or admin");
    if (req->token_hash.len != 32)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "token_hash must be the 32-byte SHA-256 of the token");
    if (strlen(req->purposes) > 500)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "purposes: at most 500 characters");
    for (const char *p = req->purposes; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == ',' || *p == '*'))
            return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                             "purposes: purpose names separated by commas, "
                             "or *");
    /* The bootstrap token adds the first admin and nothing else; the
     * state machine checks "first" again when it applies the command. */
    if (strcmp(call_principal(c), BOOTSTRAP_PRINCIPAL) == 0) {
        if (strcmp(req->role, "admin") != 0)
            return call_fail(c, DOSSIER_PERMISSION_DENIED,
                             "the bootstrap token adds only the cluster's "
                             "first admin: give role admin, then add the "
                             "others with that admin's token");
        op.first_only = 1;
    }
    if (n->auth && auth_may_use(n->auth, req->name, "operations") >= 0)
        return call_fail(c, DOSSIER_ALREADY_EXISTS,
                         "principal %s is in this node's auth file",
                         req->name);
    if (!(x = calloc(1, sizeof(*x))))
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    x->call = c;
    snprintf(x->name, sizeof(x->name), "%s", req->name);
    op.name = req->name;
    op.role = req->role;
    op.token_hash = req->token_hash;
    op.purposes = req->purposes;
    submit_op(c, &op, x);
}

void api_principals_remove(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__RemovePrincipalRequest *req =
        (Dossier__V1__RemovePrincipalRequest *)msg;
    Dossier__Store__V1__PrincipalOp op = DOSSIER__STORE__V1__PRINCIPAL_OP__INIT;
    struct node *n = call_node(c);
    struct principal_ctx *x;
    struct dossier_status st;

    if (!name_ok(c, req->name))
        return;
    if (!(x = calloc(1, sizeof(*x))))
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    x->call = c;
    x->removed = 1;
    snprintf(x->name, sizeof(x->name), "%s", req->name);
    if (store_principal_get(call_node(c)->store, req->name, &x->old, &st)) {
        free(x);
        return call_fail_status(c, &st);
    }
    op.remove = 1;
    op.name = req->name;
    /* Under --require-auth the cluster's last admin stays, unless this
     * node's auth file names an admin (another way in); the state machine
     * decides, so two removals racing cannot both take the last two. */
    op.keep_an_admin = n->require_auth && !auth_has_role(n->auth, AUTH_ADMIN);
    submit_op(c, &op, x);
}

void api_principals_list(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__ListPrincipalsResponse resp =
        DOSSIER__V1__LIST_PRINCIPALS_RESPONSE__INIT;
    Dossier__V1__PrincipalInfo *infos = NULL, **ptrs = NULL;
    Dossier__Store__V1__StoredPrincipal **p;
    struct dossier_status st;
    size_t n;
    int rc;
    (void)msg;

    rc = store_scan_messages(call_node(c)->store, STORE_POLICY,
                             (const uint8_t *)"a", 1,
                             &dossier__store__v1__stored_principal__descriptor,
                             (ProtobufCMessage ***)&p, &n, &st);
    if (rc == 0) {
        infos = calloc(n ? n : 1, sizeof(*infos));
        ptrs = calloc(n ? n : 1, sizeof(*ptrs));
        if (!infos || !ptrs)
            rc = err_set(&st, DOSSIER_NOMEM, "out of memory");
    }
    if (rc) {
        call_fail_status(c, &st);
    } else {
        for (size_t i = 0; i < n; i++) {
            info_from(p[i], &infos[i]);
            ptrs[i] = &infos[i];
        }
        resp.n_principals = n;
        resp.principals = ptrs;
        call_reply(c, &resp.base);
    }
    store_messages_free((ProtobufCMessage **)p, n);
    free(infos);
    free(ptrs);
}
