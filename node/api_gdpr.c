/* The GDPR services: dossier.v1.Purposes, Consent, Subjects and Audit, and
 * the peer call that brings a follower's audit entries to the leader.
 * Writes become commands (the store applies and audits them); reads go
 * through the store. Subject ids become pseudonyms at once and never
 * reach a log or the disk. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api.h"
#include "audit.h"
#include "cluster.h"
#include "crypt.h"
#include "erasure.h"
#include "errors.h"
#include "log.h"
#include "policy.h"
#include "records.h"
#include "store.h"

/* ------------------------------------------------------------------ */
/* Shared */

/* One write of a call: the call and what its answer needs. */
struct gdpr_ctx {
    struct call *call;
    struct node *node;
    uint8_t sp[CRYPT_PSEUDONYM_BYTES];
    char purpose[POLICY_NAME_MAX + 1];
    char source[POLICY_LABEL_MAX + 1];
    char notice[POLICY_LABEL_MAX + 1];
    int state; /* consent: the state set; restrict: 1 restricted */
    /* erase: what was applied, for the certificate */
    int64_t time_ms;
    uint64_t index, deleted;
};

/* Packs @cmd (with the call's time, request id, principal and purpose)
 * and submits it; @d is freed and the call answered on failure. */
static void submit(struct call *c, Dossier__Store__V1__Command *cmd,
                   void (*cb)(void *arg, const struct store_result *res),
                   struct gdpr_ctx *d)
{
    uint8_t *buf;
    size_t len;
    int rc;

    call_command_init(c, cmd);
    /* The audit entry names the purpose the command is about (consent
     * given to it, its definition), not the header of the call. */
    if (d->purpose[0])
        cmd->purpose = d->purpose;
    len = dossier__store__v1__command__get_packed_size(cmd);
    if (!(buf = malloc(len))) {
        free(d);
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    }
    dossier__store__v1__command__pack(cmd, buf);
    rc = call_submit(c, buf, len, cb, d);
    if (rc) {
        free(d);
        call_fail(c, rc, "the node is shutting down");
    }
}

static struct gdpr_ctx *ctx_new(struct call *c)
{
    struct gdpr_ctx *d = calloc(1, sizeof(*d));
    if (!d) {
        call_fail(c, DOSSIER_NOMEM, "out of memory");
        return NULL;
    }
    d->call = c;
    d->node = call_node(c);
    return d;
}

int api_subject_of(struct call *c, const char *id,
                   uint8_t sp[CRYPT_PSEUDONYM_BYTES])
{
    struct dossier_status st;
    if (records_check_id(id, "subject_id", &st)) {
        call_fail_status(c, &st);
        return -1;
    }
    crypt_subject_pseudonym(call_node(c)->crypt, id, strlen(id), sp);
    return 0;
}

int api_person_of(struct call *c, const char *id,
                  uint8_t sp[CRYPT_PSEUDONYM_BYTES])
{
    struct dossier_status st;
    uint8_t asked[CRYPT_PSEUDONYM_BYTES];
    if (api_subject_of(c, id, asked) != 0)
        return -1;
    if (store_subject_root(call_node(c)->store, NULL, asked, sp, &st) != 0) {
        call_fail_status(c, &st);
        return -1;
    }
    return 0;
}

int api_label_ok(struct call *c, const char *what, const char *v)
{
    if (policy_label_valid(v))
        return 1;
    call_fail(c, DOSSIER_INVALID_ARGUMENT,
              "%s must be at most %d characters of A-Z a-z 0-9 . _ : / - "
              "(a label, never personal data)",
              what, POLICY_LABEL_MAX);
    return 0;
}

int api_subject_visible(struct call *c, const uint8_t *sp,
                        struct dossier_status *st)
{
    struct node *n = call_node(c);
    const struct policy_purpose *pp = call_purpose_def(c);
    Dossier__Store__V1__StoredConsent *sc;
    int rc, granted;

    if (!pp)
        return err_ok(st);
    if (strcmp(pp->name, POLICY_LEGAL_CLAIMS) != 0) {
        rc = store_restricted(n->store, sp, st);
        if (rc < 0 || rc > 1)
            return rc;
        if (rc == 1)
            return err_set(st, DOSSIER_PERMISSION_DENIED,
                           "the subject's processing is restricted (GDPR "
                           "Art. 18): only purpose legal_claims may read it");
    }
    if (pp->basis != DOSSIER__V1__LAWFUL_BASIS__LAWFUL_BASIS_CONSENT)
        return err_ok(st);
    rc = store_consent_get(n->store, sp, pp->name, &sc, st);
    if (rc == DOSSIER_NOT_FOUND)
        return err_set(st, DOSSIER_PERMISSION_DENIED,
                       "purpose '%s' rests on consent, which the subject "
                       "has not given",
                       pp->name);
    if (rc)
        return rc;
    granted = sc->state == DOSSIER__V1__CONSENT_STATE__CONSENT_STATE_GRANTED;
    dossier__store__v1__stored_consent__free_unpacked(sc, NULL);
    if (!granted)
        return err_set(st, DOSSIER_PERMISSION_DENIED,
                       "purpose '%s' rests on consent, which the subject "
                       "has withdrawn",
                       pp->name);
    return err_ok(st);
}

/* ------------------------------------------------------------------ */
/* Purposes */

static void purpose_done(void *arg, const struct store_result *res)
{
    struct gdpr_ctx *d = arg;
    struct policy_purpose pp;
    Dossier__V1__Purpose out;
    Dossier__V1__Category cats[6];

    if (res->status.code)
        call_fail_status(d->call, &res->status);
    else if (policy_get(store_policy(d->node->store), d->purpose, &pp) != 0)
        call_fail(d->call, DOSSIER_INTERNAL, "the purpose vanished");
    else {
        policy_to_pb(&pp, &out, cats);
        call_reply(d->call, &out.base);
    }
    free(d);
}

void api_purposes_define(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__DefinePurposeRequest *req =
        (Dossier__V1__DefinePurposeRequest *)msg;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__DefinePurposeOp op =
        DOSSIER__STORE__V1__DEFINE_PURPOSE_OP__INIT;
    struct dossier_status st;
    struct gdpr_ctx *d;

    if (!req->purpose)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT, "purpose is missing");
    if (policy_check_definition(req->purpose, &st))
        return call_fail_status(c, &st);
    if (!(d = ctx_new(c)))
        return;
    snprintf(d->purpose, sizeof(d->purpose), "%s", req->purpose->name);
    op.purpose = req->purpose;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_DEFINE_PURPOSE;
    cmd.define_purpose = &op;
    submit(c, &cmd, purpose_done, d);
}

void api_purposes_get(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__GetPurposeRequest *req = (Dossier__V1__GetPurposeRequest *)msg;
    struct policy_purpose pp;
    Dossier__V1__Purpose out;
    Dossier__V1__Category cats[6];

    if (policy_get(store_policy(call_node(c)->store), req->name, &pp) != 0)
        return call_fail(c, DOSSIER_NOT_FOUND, "no purpose named '%.64s'",
                         req->name);
    policy_to_pb(&pp, &out, cats);
    call_reply(c, &out.base);
}

void api_purposes_list(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__ListPurposesResponse resp =
        DOSSIER__V1__LIST_PURPOSES_RESPONSE__INIT;
    struct policy_purpose *all;
    Dossier__V1__Purpose *pbs, **ptrs;
    Dossier__V1__Category(*cats)[6];
    size_t n;
    (void)msg;

    if (policy_list(store_policy(call_node(c)->store), &all, &n) != 0)
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    pbs = calloc(n, sizeof(*pbs));
    ptrs = calloc(n, sizeof(*ptrs));
    cats = calloc(n, sizeof(*cats));
    if (!pbs || !ptrs || !cats) {
        call_fail(c, DOSSIER_NOMEM, "out of memory");
    } else {
        for (size_t i = 0; i < n; i++) {
            policy_to_pb(&all[i], &pbs[i], cats[i]);
            ptrs[i] = &pbs[i];
        }
        resp.n_purposes = n;
        resp.purposes = ptrs;
        call_reply(c, &resp.base);
    }
    free(pbs);
    free(ptrs);
    free(cats);
    free(all);
}

/* ------------------------------------------------------------------ */
/* Consent */

static void consent_done(void *arg, const struct store_result *res)
{
    struct gdpr_ctx *d = arg;
    Dossier__V1__ConsentChange *req;
    Dossier__V1__ConsentEvent ev = DOSSIER__V1__CONSENT_EVENT__INIT;

    if (res->status.code) {
        call_fail_status(d->call, &res->status);
        free(d);
        return;
    }
    /* The request is still alive: the call is not answered yet. */
    req = (Dossier__V1__ConsentChange *)call_request(d->call);
    ev.subject_id = req->subject_id;
    ev.purpose = d->purpose;
    ev.state = (Dossier__V1__ConsentState)d->state;
    ev.source = d->source;
    ev.notice_version = d->notice;
    ev.time_ms = res->updated_at_ms;
    ev.principal = (char *)call_principal(d->call);
    ev.revision = res->version;
    call_reply(d->call, &ev.base);
    free(d);
}

static void consent_change(struct call *c, ProtobufCMessage *msg, int state)
{
    Dossier__V1__ConsentChange *req = (Dossier__V1__ConsentChange *)msg;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__ConsentOp op = DOSSIER__STORE__V1__CONSENT_OP__INIT;
    struct policy_purpose pp;
    struct gdpr_ctx *d;
    uint8_t sp[CRYPT_PSEUDONYM_BYTES];

    if (api_subject_of(c, req->subject_id, sp) != 0)
        return;
    if (policy_get(store_policy(call_node(c)->store), req->purpose, &pp) != 0)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "unknown purpose '%.64s' (see dossier purpose list)",
                         req->purpose);
    if (!api_label_ok(c, "source", req->source) ||
        !api_label_ok(c, "notice_version", req->notice_version))
        return;
    if (!(d = ctx_new(c)))
        return;
    memcpy(d->sp, sp, sizeof(sp));
    snprintf(d->purpose, sizeof(d->purpose), "%s", pp.name);
    snprintf(d->source, sizeof(d->source), "%s", req->source);
    snprintf(d->notice, sizeof(d->notice), "%s", req->notice_version);
    d->state = state;
    op.subject = (ProtobufCBinaryData){sizeof(d->sp), d->sp};
    op.purpose = d->purpose;
    op.state = (Dossier__V1__ConsentState)state;
    op.source = d->source;
    op.notice_version = d->notice;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_CONSENT;
    cmd.consent = &op;
    submit(c, &cmd, consent_done, d);
}

void api_consent_grant(struct call *c, ProtobufCMessage *msg)
{
    consent_change(c, msg, DOSSIER__V1__CONSENT_STATE__CONSENT_STATE_GRANTED);
}

void api_consent_withdraw(struct call *c, ProtobufCMessage *msg)
{
    consent_change(c, msg,
                   DOSSIER__V1__CONSENT_STATE__CONSENT_STATE_WITHDRAWN);
}

struct consent_list {
    Dossier__V1__ConsentEvent **evs;
    Dossier__Store__V1__StoredConsent **stored;
    size_t n, cap;
    const char *subject_id;
    const char *purpose; /* "" every purpose */
    int rc;
};

void api_consent_event(const Dossier__Store__V1__StoredConsent *sc,
                       const char *subject_id, Dossier__V1__ConsentEvent *out)
{
    dossier__v1__consent_event__init(out);
    out->subject_id = (char *)subject_id;
    out->purpose = sc->purpose;
    out->state = sc->state;
    out->source = sc->source;
    out->notice_version = sc->notice_version;
    out->time_ms = sc->time_ms;
    out->principal = sc->principal;
    out->revision = sc->revision;
}

static int consent_cb(void *arg, const uint8_t *key, size_t klen,
                      const uint8_t *val, size_t vlen)
{
    struct consent_list *l = arg;
    Dossier__Store__V1__StoredConsent *sc;
    Dossier__V1__ConsentEvent *ev;
    (void)key;
    (void)klen;
    sc = dossier__store__v1__stored_consent__unpack(NULL, vlen, val);
    if (!sc)
        return DOSSIER_CORRUPT;
    if (l->purpose[0] && strcmp(sc->purpose, l->purpose) != 0) {
        dossier__store__v1__stored_consent__free_unpacked(sc, NULL);
        return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        void *a = realloc(l->evs, cap * sizeof(*l->evs));
        void *b = a ? realloc(l->stored, cap * sizeof(*l->stored)) : NULL;
        if (a)
            l->evs = a;
        if (!a || !b) {
            dossier__store__v1__stored_consent__free_unpacked(sc, NULL);
            return DOSSIER_NOMEM;
        }
        l->stored = b;
        l->cap = cap;
    }
    if (!(ev = malloc(sizeof(*ev)))) {
        dossier__store__v1__stored_consent__free_unpacked(sc, NULL);
        return DOSSIER_NOMEM;
    }
    api_consent_event(sc, l->subject_id, ev);
    l->evs[l->n] = ev;
    l->stored[l->n++] = sc;
    return 0;
}

static void consent_read(struct call *c, ProtobufCMessage *msg, char which)
{
    Dossier__V1__ConsentQuery *req = (Dossier__V1__ConsentQuery *)msg;
    Dossier__V1__ConsentList resp = DOSSIER__V1__CONSENT_LIST__INIT;
    struct consent_list l;
    struct dossier_status st;
    uint8_t prefix[CRYPT_PSEUDONYM_BYTES + 1];
    int rc;

    if (api_person_of(c, req->subject_id, prefix) != 0)
        return;
    prefix[CRYPT_PSEUDONYM_BYTES] = (uint8_t)which;
    memset(&l, 0, sizeof(l));
    l.subject_id = req->subject_id;
    l.purpose = req->purpose;
    rc = store_scan(call_node(c)->store, STORE_CONSENT, prefix, sizeof(prefix),
                    NULL, 0, consent_cb, &l, &st);
    if (rc == DOSSIER_NOMEM)
        call_fail(c, rc, "out of memory");
    else if (rc == DOSSIER_CORRUPT)
        call_fail(c, rc, "a consent record is corrupt");
    else if (rc)
        call_fail_status(c, &st);
    else {
        resp.n_events = l.n;
        resp.events = l.evs;
        call_audit_read(c, prefix, NULL, 0);
        call_reply(c, &resp.base);
    }
    for (size_t i = 0; i < l.n; i++) {
        free(l.evs[i]);
        dossier__store__v1__stored_consent__free_unpacked(l.stored[i], NULL);
    }
    free(l.evs);
    free(l.stored);
}

void api_consent_get(struct call *c, ProtobufCMessage *msg)
{
    consent_read(c, msg, 'c');
}

void api_consent_history(struct call *c, ProtobufCMessage *msg)
{
    consent_read(c, msg, 'h');
}

/* ------------------------------------------------------------------ */
/* Subjects */

static int count_cb(void *arg, const uint8_t *key, size_t klen,
                    const uint8_t *val, size_t vlen)
{
    (void)key;
    (void)val;
    (void)vlen;
    if (klen > CRYPT_PSEUDONYM_BYTES)
        (*(uint64_t *)arg)++;
    return 0;
}

/* Answers @c with the status of subject @asked: its restriction and
 * records are those of the subject it was merged into, if it was. */
static void status_reply(struct call *c, const char *subject_id,
                         const uint8_t *asked)
{
    Dossier__V1__SubjectStatus resp = DOSSIER__V1__SUBJECT_STATUS__INIT;
    struct dossier_status st;
    uint8_t sp[CRYPT_PSEUDONYM_BYTES];
    uint64_t records = 0;
    int rc;

    if (store_subject_root(call_node(c)->store, NULL, asked, sp, &st) != 0)
        return call_fail_status(c, &st);
    if (memcmp(sp, asked, sizeof(sp)) != 0)
        resp.merged_into = (ProtobufCBinaryData){sizeof(sp), sp};
    rc = store_restricted(call_node(c)->store, sp, &st);
    if (rc < 0 || rc > 1)
        return call_fail_status(c, &st);
    resp.restricted = rc;
    if (store_scan(call_node(c)->store, STORE_SUBJECT, sp,
                   CRYPT_PSEUDONYM_BYTES, NULL, 0, count_cb, &records, &st))
        return call_fail_status(c, &st);
    resp.subject_id = (char *)subject_id;
    resp.pseudonym = (ProtobufCBinaryData){CRYPT_PSEUDONYM_BYTES,
                                           (uint8_t *)asked};
    resp.records = records;
    call_audit_read(c, sp, NULL, 0);
    call_reply(c, &resp.base);
}

void api_subjects_status(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__SubjectRequest *req = (Dossier__V1__SubjectRequest *)msg;
    uint8_t sp[CRYPT_PSEUDONYM_BYTES];
    if (api_subject_of(c, req->subject_id, sp) != 0 ||
        !api_label_ok(c, "reference", req->reference))
        return;
    status_reply(c, req->subject_id, sp);
}

static void restrict_done(void *arg, const struct store_result *res)
{
    struct gdpr_ctx *d = arg;
    Dossier__V1__SubjectRequest *req =
        (Dossier__V1__SubjectRequest *)call_request(d->call);
    if (res->status.code)
        call_fail_status(d->call, &res->status);
    else
        status_reply(d->call, req->subject_id, d->sp);
    free(d);
}

static void restriction(struct call *c, ProtobufCMessage *msg, int on)
{
    Dossier__V1__SubjectRequest *req = (Dossier__V1__SubjectRequest *)msg;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__RestrictOp op = DOSSIER__STORE__V1__RESTRICT_OP__INIT;
    struct gdpr_ctx *d;
    uint8_t sp[CRYPT_PSEUDONYM_BYTES];

    if (api_subject_of(c, req->subject_id, sp) != 0 ||
        !api_label_ok(c, "reference", req->reference))
        return;
    if (!(d = ctx_new(c)))
        return;
    memcpy(d->sp, sp, sizeof(sp));
    op.subject = (ProtobufCBinaryData){sizeof(d->sp), d->sp};
    op.restricted = on;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_RESTRICTION;
    cmd.restriction = &op;
    cmd.reference = req->reference;
    submit(c, &cmd, restrict_done, d);
}

void api_subjects_restrict(struct call *c, ProtobufCMessage *msg)
{
    restriction(c, msg, 1);
}

void api_subjects_unrestrict(struct call *c, ProtobufCMessage *msg)
{
    restriction(c, msg, 0);
}

/* The erase call's wait is over (erasure.h): answers with the certificate
 * of the erasure, listing the nodes that reported finishing it. */
static void erase_reply(struct call *c, void *arg)
{
    struct gdpr_ctx *d = arg;
    Dossier__Store__V1__ErasureRecord mine =
        DOSSIER__STORE__V1__ERASURE_RECORD__INIT, *er = NULL;
    struct erasure_cert *cert = malloc(sizeof(*cert));
    struct dossier_status st;
    int rc;

    /* The ledger row, unless a later erasure of the subject replaced it:
     * then this one's own values, finished by no node known. */
    if (store_erasure_get(d->node->store, d->sp, &er, &st) == 0 &&
        er->raft_index != d->index) {
        dossier__store__v1__erasure_record__free_unpacked(er, NULL);
        er = NULL;
    }
    mine.time_ms = d->time_ms;
    mine.raft_index = d->index;
    mine.records_deleted = d->deleted;
    rc = cert ? erasure_certificate(d->node, d->sp, er ? er : &mine, cert,
                                    &st)
              : err_set(&st, DOSSIER_NOMEM, "out of memory");
    if (rc) {
        call_fail(c, st.code,
                  "the subject was erased, but the certificate could not be "
                  "signed: %s",
                  st.message);
    } else {
        log_printf(LOG_INFO, "erased a subject: %llu records, raft index "
                   "%llu; %zu nodes finished, %zu pending",
                   (unsigned long long)d->deleted,
                   (unsigned long long)d->index, cert->pb.n_nodes,
                   cert->pb.n_pending_nodes);
        call_reply(c, &cert->pb.base);
    }
    if (er)
        dossier__store__v1__erasure_record__free_unpacked(er, NULL);
    free(cert);
    free(d);
}

static void erase_done(void *arg, const struct store_result *res)
{
    struct gdpr_ctx *d = arg;
    Dossier__V1__SubjectRequest *req =
        (Dossier__V1__SubjectRequest *)call_request(d->call);

    if (res->status.code) {
        call_fail_status(d->call, &res->status);
        free(d);
        return;
    }
    d->time_ms = res->updated_at_ms;
    d->index = res->index;
    d->deleted = res->deleted;
    /* Every voter reports when it has finished; the answer waits for them
     * (a bounded time), on a thread of its own, not this one's. */
    if (erasure_wait(d->call, d->sp, d->index, req->completion_wait_ms,
                     erase_reply, d) != 0)
        erase_reply(d->call, d);
}

void api_subjects_erase(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__SubjectRequest *req = (Dossier__V1__SubjectRequest *)msg;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__EraseOp op = DOSSIER__STORE__V1__ERASE_OP__INIT;
    struct gdpr_ctx *d;
    uint8_t sp[CRYPT_PSEUDONYM_BYTES];

    if (api_subject_of(c, req->subject_id, sp) != 0 ||
        !api_label_ok(c, "reference", req->reference))
        return;
    if (!(d = ctx_new(c)))
        return;
    memcpy(d->sp, sp, sizeof(sp));
    op.subject = (ProtobufCBinaryData){sizeof(d->sp), d->sp};
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_ERASE;
    cmd.erase = &op;
    cmd.reference = req->reference;
    submit(c, &cmd, erase_done, d);
}

/* ------------------------------------------------------------------ */
/* Audit */

#define AUDIT_PAGE_DEFAULT 1000
#define AUDIT_PAGE_MAX 10000

struct audit_page {
    Dossier__V1__AuditRecord *recs, **ptrs;
    ProtobufCBinaryData *cps;
    uint8_t **bufs; /* copies of the values */
    size_t n, cap, n_cps, cap_cps;
    uint32_t limit;
};

static int audit_entry_cb(void *arg, const uint8_t *key, size_t klen,
                          const uint8_t *val, size_t vlen)
{
    struct audit_page *p = arg;
    uint8_t *copy;
    if (klen != 9 || vlen < AUDIT_HASH_BYTES)
        return DOSSIER_CORRUPT;
    if (p->n == p->limit)
        return 1;
    if (!(copy = malloc(vlen)))
        return DOSSIER_NOMEM;
    memcpy(copy, val, vlen);
    dossier__v1__audit_record__init(&p->recs[p->n]);
    p->recs[p->n].index = store_be_u64(key + 1);
    p->recs[p->n].hash = (ProtobufCBinaryData){AUDIT_HASH_BYTES, copy};
    p->recs[p->n].entry =
        (ProtobufCBinaryData){vlen - AUDIT_HASH_BYTES, copy + AUDIT_HASH_BYTES};
    p->ptrs[p->n] = &p->recs[p->n];
    p->bufs[p->n++] = copy;
    return 0;
}

static int audit_cp_cb(void *arg, const uint8_t *key, size_t klen,
                       const uint8_t *val, size_t vlen)
{
    struct audit_page *p = arg;
    uint8_t *copy;
    (void)key;
    if (klen != 9)
        return DOSSIER_CORRUPT;
    if (p->n_cps == p->cap_cps) {
        size_t cap = p->cap_cps ? 2 * p->cap_cps : 16;
        ProtobufCBinaryData *a = realloc(p->cps, cap * sizeof(*a));
        if (!a)
            return DOSSIER_NOMEM;
        p->cps = a;
        p->cap_cps = cap;
    }
    if (!(copy = malloc(vlen ? vlen : 1)))
        return DOSSIER_NOMEM;
    memcpy(copy, val, vlen);
    p->cps[p->n_cps++] = (ProtobufCBinaryData){vlen, copy};
    return 0;
}

/* Checkpoints up to @upto (inclusive; 0: no bound) stop the scan. */
struct cp_bound {
    struct audit_page *p;
    uint64_t upto;
};

static int audit_cp_bounded(void *arg, const uint8_t *key, size_t klen,
                            const uint8_t *val, size_t vlen)
{
    struct cp_bound *b = arg;
    if (klen == 9 && b->upto && store_be_u64(key + 1) > b->upto)
        return 1;
    return audit_cp_cb(b->p, key, klen, val, vlen);
}

void api_audit_read(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__AuditReadRequest *req = (Dossier__V1__AuditReadRequest *)msg;
    Dossier__V1__AuditPage resp = DOSSIER__V1__AUDIT_PAGE__INIT;
    struct store *s = call_node(c)->store;
    struct audit_page p;
    struct audit_chain head;
    struct dossier_status st;
    struct cp_bound bound;
    uint64_t start = req->from_index ? req->from_index : 1;
    int rc;

    if (req->limit > AUDIT_PAGE_MAX)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "limit is at most %d", AUDIT_PAGE_MAX);
    memset(&p, 0, sizeof(p));
    p.limit = req->limit ? req->limit : AUDIT_PAGE_DEFAULT;
    p.recs = calloc(p.limit, sizeof(*p.recs));
    p.ptrs = calloc(p.limit, sizeof(*p.ptrs));
    p.bufs = calloc(p.limit, sizeof(*p.bufs));
    if (!p.recs || !p.ptrs || !p.bufs) {
        rc = err_set(&st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    store_audit_head(s, &head);
    /* Scan from the key before @start: store_scan starts after a key. */
    {
        uint8_t after[9];
        after[0] = 'e';
        store_u64_be(after + 1, start - 1);
        rc = store_scan(s, STORE_AUDIT, (const uint8_t *)"e", 1, after,
                        sizeof(after), audit_entry_cb, &p, &st);
    }
    if (rc == 1)
        rc = 0;
    if (rc == 0) {
        uint8_t after[9];
        after[0] = 'c';
        store_u64_be(after + 1, start - 1);
        bound.p = &p;
        /* A full page: checkpoints up to its last entry; else all. */
        bound.upto = p.n == p.limit ? p.recs[p.n - 1].index : 0;
        rc = store_scan(s, STORE_AUDIT, (const uint8_t *)"c", 1, after,
                        sizeof(after), audit_cp_bounded, &bound, &st);
        if (rc == 1)
            rc = 0;
    }
    if (rc == DOSSIER_NOMEM || rc == DOSSIER_CORRUPT)
        err_set(&st, rc, rc == DOSSIER_NOMEM ? "out of memory"
                                             : "an audit row is malformed");
out:
    if (rc) {
        call_fail_status(c, &st);
    } else {
        resp.n_entries = p.n;
        resp.entries = p.ptrs;
        resp.n_checkpoints = p.n_cps;
        resp.checkpoints = p.cps;
        resp.last_index = head.index;
        call_reply(c, &resp.base);
    }
    for (size_t i = 0; i < p.n; i++)
        free(p.bufs[i]);
    for (size_t i = 0; i < p.n_cps; i++)
        free(p.cps[i].data);
    free(p.cps);
    free(p.recs);
    free(p.ptrs);
    free(p.bufs);
}

void api_audit_public_key(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__AuditKey resp = DOSSIER__V1__AUDIT_KEY__INIT;
    struct audit_chain head;
    struct dossier_status st;
    uint8_t pk[32];
    unsigned char *sk = sodium_malloc(64);
    (void)msg;

    if (!sk)
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    if (crypt_audit_keys(call_node(c)->crypt, pk, sk, &st) != 0) {
        sodium_free(sk);
        return call_fail_status(c, &st);
    }
    sodium_free(sk);
    store_audit_head(call_node(c)->store, &head);
    resp.public_key = (ProtobufCBinaryData){sizeof(pk), pk};
    resp.last_index = head.index;
    resp.signed_index = head.signed_index;
    call_reply(c, &resp.base);
}

/* ------------------------------------------------------------------ */
/* A follower's batch of audit entries, forwarded to the leader. */

static void append_done(void *arg, const struct store_result *res)
{
    struct call *c = arg;
    Dossier__Store__V1__AuditOp empty = DOSSIER__STORE__V1__AUDIT_OP__INIT;
    if (res->status.code)
        call_fail_status(c, &res->status);
    else
        call_reply(c, &empty.base);
}

void api_peer_audit_append(struct call *c, ProtobufCMessage *msg)
{
    Dossier__Store__V1__AuditOp *op = (Dossier__Store__V1__AuditOp *)msg;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    uint8_t *buf;
    size_t len;

    cmd.time_ms = records_now_ms();
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_AUDIT;
    cmd.audit = op;
    len = dossier__store__v1__command__get_packed_size(&cmd);
    if (!(buf = malloc(len)))
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    dossier__store__v1__command__pack(&cmd, buf);
    if (cluster_submit(call_node(c)->cluster, buf, len, append_done, c) != 0)
        call_fail(c, DOSSIER_UNAVAILABLE, "the node is shutting down");
}

/* ------------------------------------------------------------------ */
/* The erasure ledger, for restores (dossier subject ledger). */

#define LEDGER_PAGE_DEFAULT 1000
#define LEDGER_PAGE_MAX 10000

struct ledger_page {
    size_t n, limit;
    int more;
    uint8_t (*sp)[CRYPT_PSEUDONYM_BYTES];
    Dossier__Store__V1__ErasureRecord **rows;
};

static int ledger_row_cb(void *arg, const uint8_t *key, size_t klen,
                         const uint8_t *val, size_t vlen)
{
    struct ledger_page *p = arg;
    if (klen != 1 + CRYPT_PSEUDONYM_BYTES)
        return DOSSIER_CORRUPT;
    if (p->n == p->limit) {
        p->more = 1;
        return 1; /* stop: one more row exists */
    }
    p->rows[p->n] = dossier__store__v1__erasure_record__unpack(NULL, vlen,
                                                                val);
    if (!p->rows[p->n])
        return DOSSIER_CORRUPT;
    memcpy(p->sp[p->n], key + 1, CRYPT_PSEUDONYM_BYTES);
    p->n++;
    return 0;
}

void api_subjects_erasure_ledger(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__ErasureLedgerRequest *req =
        (Dossier__V1__ErasureLedgerRequest *)msg;
    Dossier__V1__ErasureLedgerPage resp =
        DOSSIER__V1__ERASURE_LEDGER_PAGE__INIT;
    Dossier__V1__ErasureCertificate **ptrs = NULL;
    struct erasure_cert *certs = NULL;
    struct ledger_page p;
    struct dossier_status st;
    uint8_t after[1 + CRYPT_PSEUDONYM_BYTES];
    char token[2 * CRYPT_PSEUDONYM_BYTES + 1];
    size_t bin = 0;
    int rc = 0;

    memset(&p, 0, sizeof(p));
    if (req->limit > LEDGER_PAGE_MAX)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT, "limit is at most %d",
                         LEDGER_PAGE_MAX);
    after[0] = 'e';
    if (req->page_token[0] &&
        (strlen(req->page_token) != 2 * CRYPT_PSEUDONYM_BYTES ||
         sodium_hex2bin(after + 1, CRYPT_PSEUDONYM_BYTES, req->page_token,
                        strlen(req->page_token), NULL, &bin, NULL) != 0 ||
         bin != CRYPT_PSEUDONYM_BYTES))
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "page_token is not one this call returned");
    p.limit = req->limit ? req->limit : LEDGER_PAGE_DEFAULT;
    p.sp = calloc(p.limit, sizeof(*p.sp));
    p.rows = calloc(p.limit, sizeof(*p.rows));
    certs = calloc(p.limit, sizeof(*certs));
    ptrs = calloc(p.limit, sizeof(*ptrs));
    if (!p.sp || !p.rows || !certs || !ptrs) {
        rc = err_set(&st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    rc = store_scan(call_node(c)->store, STORE_POLICY, (const uint8_t *)"e", 1,
                    req->page_token[0] ? after : NULL,
                    req->page_token[0] ? sizeof(after) : 0, ledger_row_cb, &p,
                    &st);
    if (rc == 1)
        rc = 0;
    if (rc == DOSSIER_CORRUPT)
        err_set(&st, rc, "an erasure ledger row is malformed");
    if (rc)
        goto out;
    /* Each row as a certificate signed now, over the nodes that reported
     * finishing it. */
    for (size_t i = 0; rc == 0 && i < p.n; i++) {
        rc = erasure_certificate(call_node(c), p.sp[i], p.rows[i], &certs[i],
                                 &st);
        ptrs[i] = &certs[i].pb;
    }
    if (rc)
        goto out;
    resp.n_certificates = p.n;
    resp.certificates = ptrs;
    token[0] = '\0';
    if (p.more && p.n)
        sodium_bin2hex(token, sizeof(token), p.sp[p.n - 1],
                       CRYPT_PSEUDONYM_BYTES);
    resp.next_page_token = token;
out:
    if (rc)
        call_fail_status(c, &st);
    else
        call_reply(c, &resp.base);
    for (size_t i = 0; i < p.n; i++)
        dossier__store__v1__erasure_record__free_unpacked(p.rows[i], NULL);
    free(p.sp);
    free(p.rows);
    free(certs);
    free(ptrs);
}
