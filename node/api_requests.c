/* The dossier.v1.Requests service: tracked GDPR requests. A request is a
 * replicated row ("q" + id, policy family) filed when it arrives, with a
 * one-month deadline; an erasure request is executed by the erasure
 * command carrying its id (one atomic apply), an export request is
 * completed with the digest of what was delivered. Executed requests come
 * with a proof signed by the audit key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api.h"
#include "audit.h"
#include "crypt.h"
#include "erasure.h"
#include "errors.h"
#include "records.h"
#include "store.h"

#define REQUEST_DEADLINE_MS (30LL * 24 * 3600 * 1000) /* one month */
#define REQUEST_BACKDATE_MAX_MS (366LL * 24 * 3600 * 1000)

struct req_ctx {
    struct call *call;
    struct node *node;
    char id[40];
    uint8_t sp[CRYPT_PSEUDONYM_BYTES];
    uint8_t digest[32];
    int erasure; /* Execute of an erasure request */
};

/* Reads tracked request @id into *@out (free with
 * dossier__store__v1__tracked_request__free_unpacked). */
static int request_read(struct node *n, const char *id,
                        Dossier__Store__V1__TrackedRequest **out,
                        struct dossier_status *st)
{
    size_t len = strlen(id);
    *out = NULL;
    if (len == 0 || len > 32)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "a request id is 1 to 32 characters");
    return store_request_get(n->store, id, out, st);
}

static void request_info(const Dossier__Store__V1__TrackedRequest *t,
                         int64_t now, Dossier__V1__TrackedRequestInfo *out)
{
    dossier__v1__tracked_request_info__init(out);
    out->id = t->id;
    out->kind = t->kind;
    out->pseudonym = t->subject;
    out->reference = t->reference;
    out->received_ms = t->received_ms;
    out->deadline_ms = t->deadline_ms;
    out->state = (char *)(t->executed ? "executed" : "received");
    out->executed_ms = t->executed_ms;
    out->result_index = t->result_index;
    out->digest = t->digest;
    out->records = t->records;
    out->filed_by = t->filed_by;
    out->executed_by = t->executed_by;
    out->overdue = t->executed ? t->executed_ms > t->deadline_ms
                               : now > t->deadline_ms;
    out->extended_ms = t->extended_ms;
    out->extension_reason = t->extension_reason;
    out->original_deadline_ms = t->original_deadline_ms;
}

/* Answers @c with request @id as stored now and, once executed, its
 * proof: the erasure certificate or the export receipt, signed now. */
static void receipt_reply(struct call *c, const char *id)
{
    struct node *n = call_node(c);
    Dossier__V1__RequestReceipt resp = DOSSIER__V1__REQUEST_RECEIPT__INIT;
    Dossier__V1__TrackedRequestInfo info;
    Dossier__V1__ErasureCertificate cert =
        DOSSIER__V1__ERASURE_CERTIFICATE__INIT;
    Dossier__Store__V1__TrackedRequest *t;
    Dossier__Store__V1__ErasureRecord *er = NULL;
    struct erasure_cert *v2 = NULL;
    struct dossier_status st;
    uint8_t pk[32], sig[64], esig[64];
    unsigned char *sk = NULL;

    if (request_read(n, id, &t, &st))
        return call_fail_status(c, &st);
    request_info(t, records_now_ms(), &info);
    resp.request = &info;
    if (t->executed) {
        sk = sodium_malloc(64);
        if (!sk || crypt_audit_keys(n->crypt, pk, sk, &st) != 0) {
            if (!sk)
                err_set(&st, DOSSIER_NOMEM, "out of memory");
            sodium_free(sk);
            dossier__store__v1__tracked_request__free_unpacked(t, NULL);
            return call_fail_status(c, &st);
        }
        resp.public_key = (ProtobufCBinaryData){32, pk};
        if (strcmp(t->kind, "erasure") == 0 && t->subject.len == 16 &&
            store_erasure_get(n->store, t->subject.data, &er, &st) == 0 &&
            er->raft_index == t->result_index &&
            (v2 = malloc(sizeof(*v2))) &&
            erasure_certificate(n, t->subject.data, er, v2, &st) == 0) {
            /* The erasure this request executed, still the subject's
             * last: its ledger row names the nodes that finished it. */
            resp.erasure = &v2->pb;
        } else if (strcmp(t->kind, "erasure") == 0 && t->subject.len == 16) {
            /* The row belongs to a later erasure by now: this one as the
             * request recorded it (the values its row had then), in the
             * version 1 form, which names no node. */
            uint8_t m[AUDIT_ERASURE_MESSAGE_BYTES];
            audit_erasure_message(t->subject.data, t->executed_ms,
                                  t->result_index, t->records, m);
            crypto_sign_detached(esig, NULL, m, sizeof(m), sk);
            cert.pseudonym = t->subject;
            cert.time_ms = t->executed_ms;
            cert.raft_index = t->result_index;
            cert.records_deleted = t->records;
            cert.signature = (ProtobufCBinaryData){64, esig};
            cert.public_key = (ProtobufCBinaryData){32, pk};
            cert.version = 1;
            resp.erasure = &cert;
        } else if (strcmp(t->kind, "export") == 0 && t->subject.len == 16) {
            uint8_t m[AUDIT_REQUEST_MESSAGE_MAX];
            size_t len = audit_request_message(
                t->id, t->kind, t->subject.data,
                t->digest.len == 32 ? t->digest.data : NULL, t->executed_ms,
                t->result_index, m);
            crypto_sign_detached(sig, NULL, m, len, sk);
            resp.signature = (ProtobufCBinaryData){64, sig};
        }
        sodium_free(sk);
    }
    call_audit_read(c, t->subject.len == 16 ? t->subject.data : NULL, NULL,
                    0);
    call_reply(c, &resp.base);
    dossier__store__v1__tracked_request__free_unpacked(t, NULL);
    if (er)
        dossier__store__v1__erasure_record__free_unpacked(er, NULL);
    free(v2);
}

/* An executed erasure request's wait is over (erasure.h). */
static void executed_reply(struct call *c, void *arg)
{
    struct req_ctx *r = arg;
    receipt_reply(c, r->id);
    free(r);
}

static void request_done(void *arg, const struct store_result *res)
{
    struct req_ctx *r = arg;
    if (res->status.code) {
        call_fail_status(r->call, &res->status);
    } else if (r->erasure) {
        /* As an erase call, the answer waits for the voters to report. */
        if (erasure_wait(r->call, r->sp, res->index, 0, executed_reply, r) ==
            0)
            return;
        receipt_reply(r->call, r->id);
    } else {
        receipt_reply(r->call, r->id);
    }
    free(r);
}

static void request_submit(struct call *c, Dossier__Store__V1__Command *cmd,
                           struct req_ctx *r)
{
    uint8_t *buf;
    size_t len;
    int rc;

    call_command_init(c, cmd);
    len = dossier__store__v1__command__get_packed_size(cmd);
    if (!(buf = malloc(len))) {
        free(r);
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    }
    dossier__store__v1__command__pack(cmd, buf);
    rc = call_submit(c, buf, len, request_done, r);
    if (rc) {
        free(r);
        call_fail(c, rc, "the node is shutting down");
    }
}

static struct req_ctx *req_new(struct call *c)
{
    struct req_ctx *r = calloc(1, sizeof(*r));
    if (!r)
        call_fail(c, DOSSIER_NOMEM, "out of memory");
    else {
        r->call = c;
        r->node = call_node(c);
    }
    return r;
}

void api_requests_file(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__FileRequest *req = (Dossier__V1__FileRequest *)msg;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__RequestOp op = DOSSIER__STORE__V1__REQUEST_OP__INIT;
    int64_t now = records_now_ms(), received;
    uint8_t rnd[8];
    struct req_ctx *r;

    if (strcmp(req->kind, "erasure") != 0 && strcmp(req->kind, "export") != 0)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "kind must be erasure or export");
    received = req->received_ms ? req->received_ms : now;
    if (received > now + 60000 || received < now - REQUEST_BACKDATE_MAX_MS)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "received_ms must be a time of the past year");
    if (!api_label_ok(c, "reference", req->reference) || !(r = req_new(c)))
        return;
    if (api_subject_of(c, req->subject_id, r->sp) != 0) {
        free(r);
        return;
    }
    /* From the call's request id when it has one: a retry of this call
     * files the same request, which the store then applies once. */
    call_request_derive(c, rnd, sizeof(rnd));
    snprintf(r->id, sizeof(r->id), "REQ-");
    sodium_bin2hex(r->id + 4, sizeof(r->id) - 4, rnd, sizeof(rnd));
    for (char *p = r->id + 4; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    op.action = DOSSIER__STORE__V1__REQUEST_OP__ACTION__FILE;
    op.id = r->id;
    op.kind = req->kind;
    op.subject = (ProtobufCBinaryData){sizeof(r->sp), r->sp};
    op.received_ms = received;
    op.deadline_ms = received + REQUEST_DEADLINE_MS;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_REQUEST;
    cmd.request = &op;
    cmd.reference = req->reference;
    request_submit(c, &cmd, r);
}

static int info_cmp(const void *a, const void *b)
{
    const Dossier__V1__TrackedRequestInfo *x =
        *(Dossier__V1__TrackedRequestInfo *const *)a;
    const Dossier__V1__TrackedRequestInfo *y =
        *(Dossier__V1__TrackedRequestInfo *const *)b;
    return x->deadline_ms < y->deadline_ms   ? -1
           : x->deadline_ms > y->deadline_ms ? 1
                                             : strcmp(x->id, y->id);
}

/* Every tracked request into *@t (free with store_messages_free). */
static int requests_all(struct node *n, Dossier__Store__V1__TrackedRequest ***t,
                        size_t *count, struct dossier_status *st)
{
    return store_scan_messages(
        n->store, STORE_POLICY, (const uint8_t *)"q", 1,
        &dossier__store__v1__tracked_request__descriptor,
        (ProtobufCMessage ***)t, count, st);
}

int api_requests_count(struct node *n, int64_t now, uint64_t *open,
                       uint64_t *executed, uint64_t *overdue)
{
    Dossier__Store__V1__TrackedRequest **t;
    struct dossier_status st;
    size_t count;
    int rc = requests_all(n, &t, &count, &st);

    *open = *executed = *overdue = 0;
    for (size_t i = 0; i < count; i++) {
        if (t[i]->executed)
            (*executed)++;
        else
            (*open)++;
        if (!t[i]->executed && now > t[i]->deadline_ms)
            (*overdue)++;
    }
    store_messages_free((ProtobufCMessage **)t, count);
    return rc;
}

void api_requests_list(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__ListRequestsRequest *req =
        (Dossier__V1__ListRequestsRequest *)msg;
    Dossier__V1__ListRequestsResponse resp =
        DOSSIER__V1__LIST_REQUESTS_RESPONSE__INIT;
    Dossier__V1__TrackedRequestInfo *infos = NULL, **ptrs = NULL;
    Dossier__Store__V1__TrackedRequest **t;
    struct dossier_status st;
    int64_t now = records_now_ms();
    size_t count, k = 0;
    int rc = requests_all(call_node(c), &t, &count, &st);

    if (rc == 0) {
        infos = calloc(count ? count : 1, sizeof(*infos));
        ptrs = calloc(count ? count : 1, sizeof(*ptrs));
        if (!infos || !ptrs)
            rc = err_set(&st, DOSSIER_NOMEM, "out of memory");
    }
    for (size_t i = 0; rc == 0 && i < count; i++) {
        if (req->open_only && t[i]->executed)
            continue;
        request_info(t[i], now, &infos[k]);
        ptrs[k] = &infos[k];
        k++;
    }
    if (rc) {
        call_fail_status(c, &st);
    } else {
        qsort(ptrs, k, sizeof(*ptrs), info_cmp);
        resp.n_requests = k;
        resp.requests = ptrs;
        resp.now_ms = now;
        call_reply(c, &resp.base);
    }
    store_messages_free((ProtobufCMessage **)t, count);
    free(infos);
    free(ptrs);
}

void api_requests_get(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__GetTrackedRequest *req = (Dossier__V1__GetTrackedRequest *)msg;
    receipt_reply(c, req->id);
}

/* Checks that @id is a pending request of @kind for @subject_id, so that
 * a mistake is refused before anything is proposed (apply checks again). */
static int request_precheck(struct call *c, const char *id, const char *kind,
                            const char *subject_id, struct req_ctx *r)
{
    Dossier__Store__V1__TrackedRequest *t;
    struct dossier_status st;
    int bad = 0;

    if (api_subject_of(c, subject_id, r->sp) != 0)
        return -1;
    if (request_read(call_node(c), id, &t, &st)) {
        call_fail_status(c, &st);
        return -1;
    }
    if (strcmp(t->kind, kind) != 0)
        bad = err_set(&st, DOSSIER_FAILED_PRECONDITION,
                      "request %s is an %s request", id, t->kind);
    else if (t->executed)
        bad = err_set(&st, DOSSIER_FAILED_PRECONDITION,
                      "request %s was executed already", id);
    else if (t->subject.len != 16 || memcmp(t->subject.data, r->sp, 16) != 0)
        bad = err_set(&st, DOSSIER_FAILED_PRECONDITION,
                      "request %s was filed for another subject", id);
    dossier__store__v1__tracked_request__free_unpacked(t, NULL);
    if (bad) {
        call_fail_status(c, &st);
        return -1;
    }
    snprintf(r->id, sizeof(r->id), "%s", id);
    return 0;
}

void api_requests_execute(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__ExecuteRequest *req = (Dossier__V1__ExecuteRequest *)msg;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__EraseOp op = DOSSIER__STORE__V1__ERASE_OP__INIT;
    struct req_ctx *r = req_new(c);

    if (!r)
        return;
    if (request_precheck(c, req->id, "erasure", req->subject_id, r) != 0) {
        free(r);
        return;
    }
    op.subject = (ProtobufCBinaryData){sizeof(r->sp), r->sp};
    op.request_id = r->id;
    r->erasure = 1;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_ERASE;
    cmd.erase = &op;
    cmd.reference = r->id;
    request_submit(c, &cmd, r);
}

void api_requests_complete(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__CompleteRequest *req = (Dossier__V1__CompleteRequest *)msg;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__RequestOp op = DOSSIER__STORE__V1__REQUEST_OP__INIT;
    struct req_ctx *r;

    if (req->digest.len != 32)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "digest must be the 32-byte SHA-256 of the export");
    if (!(r = req_new(c)))
        return;
    if (request_precheck(c, req->id, "export", req->subject_id, r) != 0) {
        free(r);
        return;
    }
    memcpy(r->digest, req->digest.data, 32);
    op.action = DOSSIER__STORE__V1__REQUEST_OP__ACTION__COMPLETE;
    op.id = r->id;
    op.kind = (char *)"export";
    op.subject = (ProtobufCBinaryData){sizeof(r->sp), r->sp};
    op.digest = (ProtobufCBinaryData){32, r->digest};
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_REQUEST;
    cmd.request = &op;
    request_submit(c, &cmd, r);
}

void api_requests_extend(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__ExtendRequest *req = (Dossier__V1__ExtendRequest *)msg;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__RequestOp op = DOSSIER__STORE__V1__REQUEST_OP__INIT;
    Dossier__Store__V1__TrackedRequest *t;
    struct dossier_status st;
    struct req_ctx *r;
    char kind[16];

    if (!req->reason[0])
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "reason is needed: why the request needs longer");
    if (!api_label_ok(c, "reason", req->reason))
        return;
    if (request_read(call_node(c), req->id, &t, &st))
        return call_fail_status(c, &st);
    if (!(r = req_new(c))) {
        dossier__store__v1__tracked_request__free_unpacked(t, NULL);
        return;
    }
    /* The state machine checks the rest (open, not extended, in time)
     * against the request as it is when the command applies. */
    snprintf(r->id, sizeof(r->id), "%s", t->id);
    snprintf(kind, sizeof(kind), "%s", t->kind);
    if (t->subject.len == sizeof(r->sp))
        memcpy(r->sp, t->subject.data, sizeof(r->sp));
    dossier__store__v1__tracked_request__free_unpacked(t, NULL);
    op.action = DOSSIER__STORE__V1__REQUEST_OP__ACTION__EXTEND;
    op.id = r->id;
    op.kind = kind;
    op.subject = (ProtobufCBinaryData){sizeof(r->sp), r->sp};
    op.reason = req->reason;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_REQUEST;
    cmd.request = &op;
    request_submit(c, &cmd, r);
}
