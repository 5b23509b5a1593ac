/* libdossier: purposes, consent, subject rights and the audit log, the
 * GDPR half of the API. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit.h"
#include "errors.h"
#include "internal.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Subjects and records are named by pseudonyms of this size (the node's
 * crypt.h); the public structs hold exactly that. */
#define PSEUDONYM_BYTES 16
/* A purpose's description on the wire, at most (dossier_purpose). */
#define DESCRIPTION_MAX 255
/* Every category a purpose may name, as bits 1 << c. */
#define CATEGORY_BITS                                                         \
    (((1u << (DOSSIER_CATEGORY_OPERATIONAL + 1)) - 1) &                       \
     ~(1u << DOSSIER_CATEGORY_UNSPECIFIED))
/* Audit.Read: entries per page when verifying, and the most one read may
 * ask for (dossier.proto, AuditReadRequest). */
#define AUDIT_VERIFY_PAGE 1000
#define AUDIT_READ_MAX 10000

_Static_assert(sizeof(((struct dossier_subject_status *)0)->pseudonym) ==
                   PSEUDONYM_BYTES,
               "subject pseudonym size");
_Static_assert(sizeof(((struct dossier_erasure_certificate *)0)->pseudonym) ==
                   PSEUDONYM_BYTES,
               "certificate pseudonym size");
_Static_assert(sizeof(((struct dossier_audit_entry *)0)->subject) ==
                   PSEUDONYM_BYTES,
               "audit entry pseudonym size");
_Static_assert(sizeof(((struct dossier_erasure_certificate *)0)->signature) ==
                   crypto_sign_BYTES,
               "Ed25519 signature size");
_Static_assert(sizeof(((struct dossier_erasure_certificate *)0)->public_key) ==
                   crypto_sign_PUBLICKEYBYTES,
               "Ed25519 public key size");
_Static_assert(AUDIT_PUBLIC_KEY_BYTES == crypto_sign_PUBLICKEYBYTES,
               "audit key size");
_Static_assert(sizeof(((struct dossier_purpose *)0)->description) ==
                   DESCRIPTION_MAX + 1,
               "purpose description size");
_Static_assert(DOSSIER_CATEGORY_OPERATIONAL < 32, "categories fit a mask");

/* ------------------------------------------------------------------ */
/* Names */

static const char *const basis_names[] = {
    [DOSSIER_BASIS_CONSENT] = "consent",
    [DOSSIER_BASIS_CONTRACT] = "contract",
    [DOSSIER_BASIS_LEGAL_OBLIGATION] = "legal_obligation",
    [DOSSIER_BASIS_VITAL_INTERESTS] = "vital_interests",
    [DOSSIER_BASIS_PUBLIC_TASK] = "public_task",
    [DOSSIER_BASIS_LEGITIMATE_INTEREST] = "legitimate_interest",
};

static const char *const consent_state_names[] = {
    [DOSSIER_CONSENT_GRANTED] = "granted",
    [DOSSIER_CONSENT_WITHDRAWN] = "withdrawn",
};

const char *dossier_basis_name(enum dossier_lawful_basis b)
{
    if ((unsigned)b < N(basis_names) && basis_names[b])
        return basis_names[b];
    return "unspecified";
}

enum dossier_lawful_basis dossier_basis_parse(const char *name)
{
    for (size_t i = 1; name && i < N(basis_names); i++)
        if (basis_names[i] && strcmp(basis_names[i], name) == 0)
            return (enum dossier_lawful_basis)i;
    return DOSSIER_BASIS_UNSPECIFIED;
}

const char *dossier_consent_state_name(enum dossier_consent_state s)
{
    if ((unsigned)s < N(consent_state_names) && consent_state_names[s])
        return consent_state_names[s];
    return "unspecified";
}

/* ------------------------------------------------------------------ */
/* Checks of arguments and copies of replies */

/* A subject id is personal data: messages name the argument, never its
 * value. */
static int subject_check(const char *subject_id, struct dossier_status *st)
{
    if (!subject_id || !subject_id[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "subject_id is missing");
    return 0;
}

/* @name as a purpose a call refers to: present (unless @optional) and no
 * longer than the node accepts. Its form is the node's to judge. */
static int purpose_ref_check(const char *name, bool optional,
                             struct dossier_status *st)
{
    if (!name || !name[0])
        return optional ? 0
                        : err_set(st, DOSSIER_INVALID_ARGUMENT,
                                  "purpose is missing");
    if (strlen(name) > DOSSIER_PURPOSE_NAME_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose name is longer than %d bytes",
                       DOSSIER_PURPOSE_NAME_MAX);
    return 0;
}

/* @name as the name of a new purpose: [a-z][a-z0-9_-]*, at most
 * DOSSIER_PURPOSE_NAME_MAX bytes (dossier.proto, Purpose.name). */
static int purpose_name_check(const char *name, struct dossier_status *st)
{
    int rc = purpose_ref_check(name, false, st);

    if (rc)
        return rc;
    if (name[0] < 'a' || name[0] > 'z')
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose name must start with a lower-case letter");
    for (const char *p = name + 1; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "purpose name may hold only lower-case letters, "
                           "digits, _ and -");
    return 0;
}

/* A label (consent source, notice version, reference): NULL or at most
 * DOSSIER_LABEL_MAX bytes of [A-Za-z0-9._:/-]. Labels must not carry
 * personal data, so a bad one is refused here, before it travels, and its
 * value is not repeated in the message. */
static int label_check(const char *s, const char *what,
                       struct dossier_status *st)
{
    if (!s)
        return 0;
    if (strlen(s) > DOSSIER_LABEL_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "%s is longer than %d bytes", what, DOSSIER_LABEL_MAX);
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || strchr("._:/-", *p)))
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "%s may hold only letters, digits and . _ : / - "
                           "(a short label, never personal data)",
                           what);
    return 0;
}

/* Copies @src into @dst (@cap bytes). Returns -1 when it does not fit: for
 * a value from the node that breaks the protocol, and the caller refuses
 * the reply rather than hand out a value cut short. */
static int text_copy(char *dst, size_t cap, const char *src)
{
    int n = snprintf(dst, cap, "%s", src ? src : "");
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Copies the @len-byte binary @b from the node into @dst of exactly @want
 * bytes, or fails naming @what. */
static int bytes_copy(uint8_t *dst, size_t want, const ProtobufCBinaryData *b,
                      const char *what, struct dossier_status *st)
{
    if (b->len != want)
        return err_set(st, DOSSIER_INTERNAL,
                       "the node sent a %s of %zu bytes, not %zu", what,
                       b->len, want);
    memcpy(dst, b->data, want);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Purposes */

/* Fills *@out from @m, or leaves it untouched when @m does not fit. */
static int purpose_from_pb(const Dossier__V1__Purpose *m,
                           struct dossier_purpose *out,
                           struct dossier_status *st)
{
    struct dossier_purpose p;

    memset(&p, 0, sizeof(p));
    if (text_copy(p.name, sizeof(p.name), m->name))
        return err_set(st, DOSSIER_INTERNAL,
                       "the node sent a purpose name longer than %d bytes",
                       DOSSIER_PURPOSE_NAME_MAX);
    if (text_copy(p.description, sizeof(p.description), m->description))
        return err_set(st, DOSSIER_INTERNAL,
                       "the node sent a description of purpose '%s' longer "
                       "than %d bytes",
                       p.name, DESCRIPTION_MAX);
    for (size_t i = 0; i < m->n_categories; i++) {
        int c = (int)m->categories[i];
        if (c < 0 || c >= 32)
            return err_set(st, DOSSIER_INTERNAL,
                           "the node sent category %d for purpose '%s', "
                           "which this client cannot represent",
                           c, p.name);
        p.categories |= 1u << c;
    }
    p.basis = (enum dossier_lawful_basis)m->basis;
    p.builtin = m->builtin;
    p.version = m->version;
    *out = p;
    return 0;
}

int dossier_purpose_define(struct dossier_client *c,
                           const struct dossier_call_options *co,
                           const struct dossier_purpose *p,
                           struct dossier_purpose *out,
                           struct dossier_status *st)
{
    Dossier__V1__DefinePurposeRequest req =
        DOSSIER__V1__DEFINE_PURPOSE_REQUEST__INIT;
    Dossier__V1__Purpose m = DOSSIER__V1__PURPOSE__INIT;
    Dossier__V1__Category cats[DOSSIER_CATEGORY_OPERATIONAL];
    Dossier__V1__Purpose *resp;
    int rc;

    if (!p)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "purpose is missing");
    /* The arrays are the caller's: make sure they end before reading. */
    if (!memchr(p->name, '\0', sizeof(p->name)))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose name is longer than %d bytes",
                       DOSSIER_PURPOSE_NAME_MAX);
    if (!memchr(p->description, '\0', sizeof(p->description)))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose description is longer than %d bytes",
                       DESCRIPTION_MAX);
    if ((rc = purpose_name_check(p->name, st)))
        return rc;
    if (!(p->categories & CATEGORY_BITS))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose '%s': name at least one field category it "
                       "may see",
                       p->name);
    if (p->categories & ~CATEGORY_BITS)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose '%s': categories hold bits that name no "
                       "category (0x%x)",
                       p->name, p->categories & ~CATEGORY_BITS);
    if (p->basis <= DOSSIER_BASIS_UNSPECIFIED ||
        p->basis > DOSSIER_BASIS_LEGITIMATE_INTEREST)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose '%s': a lawful basis is required (consent, "
                       "contract, legal_obligation, vital_interests, "
                       "public_task or legitimate_interest)",
                       p->name);
    m.name = (char *)p->name;
    m.description = (char *)p->description;
    m.basis = (Dossier__V1__LawfulBasis)p->basis;
    for (unsigned cat = 1; cat <= DOSSIER_CATEGORY_OPERATIONAL; cat++)
        if (p->categories & (1u << cat))
            cats[m.n_categories++] = (Dossier__V1__Category)cat;
    m.categories = cats;
    req.purpose = &m;
    rc = client_unary(c, co, M_DEFINE_PURPOSE, &req.base,
                      &dossier__v1__purpose__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    if (out)
        rc = purpose_from_pb(resp, out, st);
    dossier__v1__purpose__free_unpacked(resp, NULL);
    return rc;
}

int dossier_purpose_get(struct dossier_client *c,
                        const struct dossier_call_options *co,
                        const char *name, struct dossier_purpose *out,
                        struct dossier_status *st)
{
    Dossier__V1__GetPurposeRequest req = DOSSIER__V1__GET_PURPOSE_REQUEST__INIT;
    Dossier__V1__Purpose *resp;
    int rc;

    if (!out)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "output is missing");
    if ((rc = purpose_ref_check(name, false, st)))
        return rc;
    req.name = (char *)name;
    rc = client_unary(c, co, M_GET_PURPOSE, &req.base,
                      &dossier__v1__purpose__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    rc = purpose_from_pb(resp, out, st);
    dossier__v1__purpose__free_unpacked(resp, NULL);
    return rc;
}

int dossier_purpose_list(struct dossier_client *c,
                         const struct dossier_call_options *co,
                         struct dossier_purpose **out, size_t *n,
                         struct dossier_status *st)
{
    Dossier__V1__ListPurposesRequest req =
        DOSSIER__V1__LIST_PURPOSES_REQUEST__INIT;
    Dossier__V1__ListPurposesResponse *resp;
    struct dossier_purpose *list;
    size_t count;
    int rc;

    if (!out || !n)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "output is missing");
    *out = NULL;
    *n = 0;
    rc = client_unary(c, co, M_LIST_PURPOSES, &req.base,
                      &dossier__v1__list_purposes_response__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    count = resp->n_purposes;
    list = calloc(count ? count : 1, sizeof(*list));
    if (!list)
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < count; i++)
        rc = purpose_from_pb(resp->purposes[i], &list[i], st);
    dossier__v1__list_purposes_response__free_unpacked(resp, NULL);
    if (rc) {
        free(list);
        return rc;
    }
    *out = list;
    *n = count;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Consent */

static int consent_event_from_pb(const Dossier__V1__ConsentEvent *m,
                                 struct dossier_consent_event *out,
                                 struct dossier_status *st)
{
    struct dossier_consent_event e;

    memset(&e, 0, sizeof(e));
    if (text_copy(e.purpose, sizeof(e.purpose), m->purpose))
        return err_set(st, DOSSIER_INTERNAL,
                       "the node sent a consent event whose purpose is "
                       "longer than %d bytes",
                       DOSSIER_PURPOSE_NAME_MAX);
    if (text_copy(e.source, sizeof(e.source), m->source) ||
        text_copy(e.notice_version, sizeof(e.notice_version),
                  m->notice_version))
        return err_set(st, DOSSIER_INTERNAL,
                       "the node sent a consent event whose source or "
                       "notice version is longer than %d bytes",
                       DOSSIER_LABEL_MAX);
    if (text_copy(e.principal, sizeof(e.principal), m->principal))
        return err_set(st, DOSSIER_INTERNAL,
                       "the node sent a consent event whose principal is "
                       "longer than %zu bytes",
                       sizeof(e.principal) - 1);
    e.state = (enum dossier_consent_state)m->state;
    e.time_ms = m->time_ms;
    e.revision = m->revision;
    *out = e;
    return 0;
}

static int consent_change(struct dossier_client *c,
                          const struct dossier_call_options *co,
                          enum client_method method, const char *subject_id,
                          const char *purpose, const char *source,
                          const char *notice_version,
                          struct dossier_consent_event *out,
                          struct dossier_status *st)
{
    Dossier__V1__ConsentChange req = DOSSIER__V1__CONSENT_CHANGE__INIT;
    Dossier__V1__ConsentEvent *resp;
    int rc;

    if ((rc = subject_check(subject_id, st)) ||
        (rc = purpose_ref_check(purpose, false, st)) ||
        (rc = label_check(source, "source", st)) ||
        (rc = label_check(notice_version, "notice version", st)))
        return rc;
    req.subject_id = (char *)subject_id;
    req.purpose = (char *)purpose;
    req.source = str_or_empty(source);
    req.notice_version = str_or_empty(notice_version);
    rc = client_unary(c, co, method, &req.base,
                      &dossier__v1__consent_event__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    if (out)
        rc = consent_event_from_pb(resp, out, st);
    dossier__v1__consent_event__free_unpacked(resp, NULL);
    return rc;
}

int dossier_consent_grant(struct dossier_client *c,
                          const struct dossier_call_options *co,
                          const char *subject_id, const char *purpose,
                          const char *source, const char *notice_version,
                          struct dossier_consent_event *out,
                          struct dossier_status *st)
{
    return consent_change(c, co, M_CONSENT_GRANT, subject_id, purpose, source,
                          notice_version, out, st);
}

int dossier_consent_withdraw(struct dossier_client *c,
                             const struct dossier_call_options *co,
                             const char *subject_id, const char *purpose,
                             const char *source, const char *notice_version,
                             struct dossier_consent_event *out,
                             struct dossier_status *st)
{
    return consent_change(c, co, M_CONSENT_WITHDRAW, subject_id, purpose,
                          source, notice_version, out, st);
}

static int consent_query(struct dossier_client *c,
                         const struct dossier_call_options *co,
                         enum client_method method, const char *subject_id,
                         const char *purpose,
                         struct dossier_consent_event **out, size_t *n,
                         struct dossier_status *st)
{
    Dossier__V1__ConsentQuery req = DOSSIER__V1__CONSENT_QUERY__INIT;
    Dossier__V1__ConsentList *resp;
    struct dossier_consent_event *events;
    size_t count;
    int rc;

    if (!out || !n)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "output is missing");
    *out = NULL;
    *n = 0;
    if ((rc = subject_check(subject_id, st)) ||
        (rc = purpose_ref_check(purpose, true, st)))
        return rc;
    req.subject_id = (char *)subject_id;
    req.purpose = str_or_empty(purpose);
    rc = client_unary(c, co, method, &req.base,
                      &dossier__v1__consent_list__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    count = resp->n_events;
    events = calloc(count ? count : 1, sizeof(*events));
    if (!events)
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < count; i++)
        rc = consent_event_from_pb(resp->events[i], &events[i], st);
    dossier__v1__consent_list__free_unpacked(resp, NULL);
    if (rc) {
        free(events);
        return rc;
    }
    *out = events;
    *n = count;
    return 0;
}

int dossier_consent_get(struct dossier_client *c,
                        const struct dossier_call_options *co,
                        const char *subject_id, const char *purpose,
                        struct dossier_consent_event **out, size_t *n,
                        struct dossier_status *st)
{
    return consent_query(c, co, M_CONSENT_GET, subject_id, purpose, out, n,
                         st);
}

int dossier_consent_history(struct dossier_client *c,
                            const struct dossier_call_options *co,
                            const char *subject_id, const char *purpose,
                            struct dossier_consent_event **out, size_t *n,
                            struct dossier_status *st)
{
    return consent_query(c, co, M_CONSENT_HISTORY, subject_id, purpose, out,
                         n, st);
}

/* ------------------------------------------------------------------ */
/* Subject rights */

/* Sends a SubjectRequest to @method; the reply, decoded as @d, goes into
 * *@resp. */
static int subject_call(struct dossier_client *c,
                        const struct dossier_call_options *co,
                        enum client_method method, const char *subject_id,
                        const char *reference,
                        const ProtobufCMessageDescriptor *d,
                        ProtobufCMessage **resp, struct dossier_status *st)
{
    Dossier__V1__SubjectRequest req = DOSSIER__V1__SUBJECT_REQUEST__INIT;
    int rc;

    if ((rc = subject_check(subject_id, st)) ||
        (rc = label_check(reference, "reference", st)))
        return rc;
    req.subject_id = (char *)subject_id;
    req.reference = str_or_empty(reference);
    return client_unary(c, co, method, &req.base, d, resp, st);
}

static int subject_status_call(struct dossier_client *c,
                               const struct dossier_call_options *co,
                               enum client_method method,
                               const char *subject_id, const char *reference,
                               struct dossier_subject_status *out,
                               struct dossier_status *st)
{
    Dossier__V1__SubjectStatus *resp;
    struct dossier_subject_status s;
    int rc;

    rc = subject_call(c, co, method, subject_id, reference,
                      &dossier__v1__subject_status__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    if (out) {
        memset(&s, 0, sizeof(s));
        rc = bytes_copy(s.pseudonym, sizeof(s.pseudonym), &resp->pseudonym,
                        "subject pseudonym", st);
        s.restricted = resp->restricted;
        s.records = resp->records;
        if (rc == 0 && resp->merged_into.len) {
            s.merged = 1;
            rc = bytes_copy(s.merged_into, sizeof(s.merged_into),
                            &resp->merged_into, "merged-into pseudonym", st);
        }
        if (rc == 0)
            *out = s;
    }
    dossier__v1__subject_status__free_unpacked(resp, NULL);
    return rc;
}

int dossier_subject_status(struct dossier_client *c,
                           const struct dossier_call_options *co,
                           const char *subject_id, const char *reference,
                           struct dossier_subject_status *out,
                           struct dossier_status *st)
{
    if (!out)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "status is missing");
    return subject_status_call(c, co, M_SUBJECT_STATUS, subject_id, reference,
                               out, st);
}

int dossier_subject_restrict(struct dossier_client *c,
                             const struct dossier_call_options *co,
                             const char *subject_id, const char *reference,
                             struct dossier_subject_status *out,
                             struct dossier_status *st)
{
    return subject_status_call(c, co, M_SUBJECT_RESTRICT, subject_id,
                               reference, out, st);
}

int dossier_subject_unrestrict(struct dossier_client *c,
                               const struct dossier_call_options *co,
                               const char *subject_id, const char *reference,
                               struct dossier_subject_status *out,
                               struct dossier_status *st)
{
    return subject_status_call(c, co, M_SUBJECT_UNRESTRICT, subject_id,
                               reference, out, st);
}

static int certificate_from_pb(const Dossier__V1__ErasureCertificate *m,
                               struct dossier_erasure_certificate *out,
                               struct dossier_status *st)
{
    struct dossier_erasure_certificate cert;
    int rc;

    memset(&cert, 0, sizeof(cert));
    if ((rc = bytes_copy(cert.pseudonym, sizeof(cert.pseudonym), &m->pseudonym,
                         "certificate pseudonym", st)) ||
        (rc = bytes_copy(cert.signature, sizeof(cert.signature), &m->signature,
                         "certificate signature", st)) ||
        (rc = bytes_copy(cert.public_key, sizeof(cert.public_key),
                         &m->public_key, "certificate public key", st)))
        return rc;
    if (m->n_nodes > DOSSIER_CLUSTER_MAX ||
        m->n_pending_nodes > DOSSIER_CLUSTER_MAX)
        return err_set(st, DOSSIER_INTERNAL,
                       "the node sent a certificate naming %zu nodes, more "
                       "than a cluster has (%d)",
                       m->n_nodes + m->n_pending_nodes, DOSSIER_CLUSTER_MAX);
    cert.time_ms = m->time_ms;
    cert.raft_index = m->raft_index;
    cert.records_deleted = m->records_deleted;
    cert.n_nodes = m->n_nodes;
    if (m->n_nodes)
        memcpy(cert.nodes, m->nodes, m->n_nodes * sizeof(cert.nodes[0]));
    cert.n_pending = m->n_pending_nodes;
    if (m->n_pending_nodes)
        memcpy(cert.pending, m->pending_nodes,
               m->n_pending_nodes * sizeof(cert.pending[0]));
    cert.version = m->version ? (int)m->version : 1;
    *out = cert;
    return 0;
}

/* Erase (waiting up to @wait_ms) or Certificate of @subject_id. */
static int certificate_call(struct dossier_client *c,
                            const struct dossier_call_options *co,
                            enum client_method m, const char *subject_id,
                            const char *reference, uint32_t wait_ms,
                            struct dossier_erasure_certificate *out,
                            struct dossier_status *st)
{
    Dossier__V1__SubjectRequest req = DOSSIER__V1__SUBJECT_REQUEST__INIT;
    Dossier__V1__ErasureCertificate *resp;
    int rc;

    if (subject_check(subject_id, st) ||
        label_check(reference, "reference", st))
        return st->code;
    req.subject_id = (char *)subject_id;
    req.reference = str_or_empty(reference);
    req.completion_wait_ms = wait_ms;
    rc = client_unary(c, co, m, &req.base,
                      &dossier__v1__erasure_certificate__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    if (out)
        rc = certificate_from_pb(resp, out, st);
    dossier__v1__erasure_certificate__free_unpacked(resp, NULL);
    return rc;
}

int dossier_subject_erase(struct dossier_client *c,
                          const struct dossier_call_options *co,
                          const char *subject_id, const char *reference,
                          struct dossier_erasure_certificate *out,
                          struct dossier_status *st)
{
    return certificate_call(c, co, M_SUBJECT_ERASE, subject_id, reference, 0,
                            out, st);
}

int dossier_subject_erase_wait(struct dossier_client *c,
                               const struct dossier_call_options *co,
                               const char *subject_id, const char *reference,
                               uint32_t wait_ms,
                               struct dossier_erasure_certificate *out,
                               struct dossier_status *st)
{
    if (wait_ms > 60000)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "wait_ms is at most 60000");
    return certificate_call(c, co, M_SUBJECT_ERASE, subject_id, reference,
                            wait_ms, out, st);
}

int dossier_subject_certificate(struct dossier_client *c,
                                const struct dossier_call_options *co,
                                const char *subject_id,
                                struct dossier_erasure_certificate *out,
                                struct dossier_status *st)
{
    return certificate_call(c, co, M_SUBJECT_CERTIFICATE, subject_id, NULL,
                            0, out, st);
}

int dossier_erasure_certificate_verify(
    const struct dossier_erasure_certificate *cert, const uint8_t *pk,
    struct dossier_status *st)
{
    uint8_t msg[AUDIT_ERASURE_V2_MESSAGE_MAX];
    size_t len = 0;

    if (!cert)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "certificate is missing");
    if (sodium_init() < 0)
        return err_set(st, DOSSIER_INTERNAL, "libsodium failed to start");
    if (pk && memcmp(pk, cert->public_key, sizeof(cert->public_key)) != 0)
        return err_set(st, DOSSIER_CORRUPT,
                       "the erasure certificate is signed with another key "
                       "than the one given");
    if (cert->version == 2) {
        if (cert->n_nodes > DOSSIER_CLUSTER_MAX ||
            audit_erasure_message_v2(cert->pseudonym, cert->time_ms,
                                     cert->raft_index, cert->records_deleted,
                                     cert->nodes, cert->n_nodes, msg,
                                     &len) != 0)
            return err_set(st, DOSSIER_CORRUPT,
                           "the erasure certificate's nodes are not in "
                           "ascending order, or too many");
    } else if (cert->version == 1 || cert->version == 0) {
        audit_erasure_message(cert->pseudonym, cert->time_ms,
                              cert->raft_index, cert->records_deleted, msg);
        len = AUDIT_ERASURE_MESSAGE_BYTES;
    } else {
        return err_set(st, DOSSIER_CORRUPT,
                       "the erasure certificate has an unknown version %d",
                       cert->version);
    }
    if (crypto_sign_verify_detached(cert->signature, msg, len,
                                    cert->public_key) != 0)
        return err_set(st, DOSSIER_CORRUPT,
                       "the erasure certificate's signature does not verify "
                       "(forged, altered or damaged)");
    return err_ok(st);
}

int dossier_erasure_ledger(struct dossier_client *c,
                           const struct dossier_call_options *co,
                           const struct dossier_page_request *pr,
                           struct dossier_erasure_certificate **out,
                           size_t *n, char **next_token,
                           struct dossier_status *st)
{
    Dossier__V1__ErasureLedgerRequest req =
        DOSSIER__V1__ERASURE_LEDGER_REQUEST__INIT;
    Dossier__V1__ErasureLedgerPage *resp;
    int rc;

    if (!out || !n || !next_token)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "outputs are missing");
    *out = NULL;
    *n = 0;
    *next_token = NULL;
    if (pr) {
        req.limit = pr->page_size;
        req.page_token = (char *)(pr->page_token ? pr->page_token : "");
    }
    rc = client_unary(c, co, M_ERASURE_LEDGER, &req.base,
                      &dossier__v1__erasure_ledger_page__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    *out = calloc(resp->n_certificates ? resp->n_certificates : 1,
                  sizeof(**out));
    if (resp->next_page_token[0])
        *next_token = strdup(resp->next_page_token);
    if (!*out || (resp->next_page_token[0] && !*next_token))
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < resp->n_certificates; i++) {
        rc = certificate_from_pb(resp->certificates[i], &(*out)[i], st);
        if (rc == 0)
            *n = i + 1;
    }
    dossier__v1__erasure_ledger_page__free_unpacked(resp, NULL);
    if (rc) {
        free(*out);
        free(*next_token);
        *out = NULL;
        *next_token = NULL;
        *n = 0;
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* Audit log */

int dossier_audit_public_key(struct dossier_client *c,
                             const struct dossier_call_options *co,
                             uint8_t pk[32], uint64_t *last_index,
                             uint64_t *signed_index, struct dossier_status *st)
{
    Dossier__V1__AuditKeyRequest req = DOSSIER__V1__AUDIT_KEY_REQUEST__INIT;
    Dossier__V1__AuditKey *resp;
    int rc;

    if (!pk)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "public key buffer is missing");
    rc = client_unary(c, co, M_AUDIT_PUBLIC_KEY, &req.base,
                      &dossier__v1__audit_key__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    rc = bytes_copy(pk, AUDIT_PUBLIC_KEY_BYTES, &resp->public_key,
                    "audit public key", st);
    if (rc == 0 && last_index)
        *last_index = resp->last_index;
    if (rc == 0 && signed_index)
        *signed_index = resp->signed_index;
    dossier__v1__audit_key__free_unpacked(resp, NULL);
    return rc;
}

/* Copies the counted text @p (@len bytes) into @dst. These texts are for
 * display and an entry may hold up to AUDIT_TEXT_MAX bytes: one longer
 * than its field is cut short rather than refused, so that a long
 * principal or action does not hide the entry. The log itself is checked
 * by dossier_audit_verify(), on the encoded bytes. */
static void text_clip(char *dst, size_t cap, const char *p, size_t len)
{
    if (len >= cap) {
        len = cap - 1;
        /* Cut between UTF-8 characters, not inside one. */
        while (len > 0 && ((unsigned char)p[len] & 0xc0) == 0x80)
            len--;
    }
    if (len)
        memcpy(dst, p, len);
    dst[len] = '\0';
}

static int audit_entry_from_pb(const Dossier__V1__AuditRecord *m,
                               struct dossier_audit_entry *out,
                               struct dossier_status *st)
{
    struct dossier_audit_entry d;
    struct dossier_status why;
    struct audit_entry e;

    if (audit_entry_decode(m->entry.data, m->entry.len, &e, &why) != 0)
        return err_set(st, DOSSIER_CORRUPT,
                       "audit entry %" PRIu64 " does not decode (%s)",
                       m->index, why.message);
    if (e.subject && e.pseudonym_len != PSEUDONYM_BYTES)
        return err_set(st, DOSSIER_INTERNAL,
                       "audit entry %" PRIu64 " names its subject by a "
                       "%u-byte pseudonym; this client reads %d-byte ones",
                       m->index, e.pseudonym_len, PSEUDONYM_BYTES);
    memset(&d, 0, sizeof(d));
    d.index = m->index;
    d.time_ms = e.time_ms;
    text_clip(d.principal, sizeof(d.principal), e.principal, e.principal_len);
    text_clip(d.action, sizeof(d.action), e.action, e.action_len);
    text_clip(d.purpose, sizeof(d.purpose), e.purpose, e.purpose_len);
    if (e.subject) {
        d.has_subject = 1;
        memcpy(d.subject, e.subject, PSEUDONYM_BYTES);
    }
    d.n_records = e.n_records;
    d.outcome = e.outcome;
    text_clip(d.reference, sizeof(d.reference), e.reference,
              e.reference_len);
    *out = d;
    return 0;
}

int dossier_audit_read(struct dossier_client *c,
                       const struct dossier_call_options *co,
                       uint64_t from_index, uint32_t limit,
                       struct dossier_audit_entry **out, size_t *n,
                       struct dossier_status *st)
{
    Dossier__V1__AuditReadRequest req = DOSSIER__V1__AUDIT_READ_REQUEST__INIT;
    Dossier__V1__AuditPage *resp;
    struct dossier_audit_entry *entries;
    size_t count;
    int rc;

    if (!out || !n)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "output is missing");
    *out = NULL;
    *n = 0;
    if (from_index == 0)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "from_index starts at 1, the first entry");
    if (limit > AUDIT_READ_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "limit is above %d entries", AUDIT_READ_MAX);
    req.from_index = from_index;
    req.limit = limit;
    rc = client_unary(c, co, M_AUDIT_READ, &req.base,
                      &dossier__v1__audit_page__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    count = resp->n_entries;
    entries = calloc(count ? count : 1, sizeof(*entries));
    if (!entries)
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < count; i++)
        rc = audit_entry_from_pb(resp->entries[i], &entries[i], st);
    dossier__v1__audit_page__free_unpacked(resp, NULL);
    if (rc) {
        free(entries);
        return rc;
    }
    *out = entries;
    *n = count;
    return 0;
}

/* A verification of the log as Audit.Read serves it, page by page. */
struct audit_walk {
    struct audit_verifier v;
    uint64_t next;        /* index of the first entry of the next page */
    uint64_t fed_through; /* highest checkpoint index fed to the verifier */
    bool done;            /* nothing more to read */
    bool broken;          /* a fault was found: stop feeding */
    /* A fault the verifier has no input for (a checkpoint that does not
     * decode, a stored hash of the wrong size), found by the walk. */
    bool own_fault;
    uint64_t own_bad_index;
    char own_message[AUDIT_MESSAGE_MAX];
    /* A checkpoint kept outside the cluster (NULL: none), and whether the
     * walk reached its entry with the same hash. */
    const struct audit_checkpoint *kept;
    bool kept_reached;
};

__attribute__((format(printf, 3, 4))) static void
walk_fault(struct audit_walk *w, uint64_t bad_index, const char *fmt, ...)
{
    va_list ap;

    w->broken = w->done = w->own_fault = true;
    w->own_bad_index = bad_index;
    va_start(ap, fmt);
    vsnprintf(w->own_message, sizeof(w->own_message), fmt, ap);
    va_end(ap);
}

/* Feeds @cp unless a page before this one (whose highest checkpoint was
 * @floor) already did: a page that reaches the end of the log carries every
 * checkpoint from its first index on, so the next page repeats those beyond
 * its last entry, and a checkpoint fed twice ahead of the entries would
 * read as out of order. */
static void walk_checkpoint(struct audit_walk *w, uint64_t floor,
                            const struct audit_checkpoint *cp)
{
    if (w->broken || cp->index <= floor)
        return;
    if (cp->index > w->fed_through)
        w->fed_through = cp->index;
    if (audit_verify_checkpoint(&w->v, cp) != 0)
        w->broken = w->done = true;
}

static void walk_entry(struct audit_walk *w, const Dossier__V1__AuditRecord *e)
{
    if (w->broken)
        return;
    if (e->hash.len != AUDIT_HASH_BYTES) {
        walk_fault(w, e->index,
                   "entry %" PRIu64 " has a malformed stored hash (%zu "
                   "bytes, not %d)",
                   e->index, e->hash.len, AUDIT_HASH_BYTES);
        return;
    }
    if (audit_verify_entry(&w->v, e->index, e->entry.data, e->entry.len,
                           e->hash.data) != 0) {
        w->broken = w->done = true;
        return;
    }
    if (w->kept && e->index == w->kept->index) {
        uint8_t h[AUDIT_HASH_BYTES];
        audit_verify_head(&w->v, h);
        if (sodium_memcmp(h, w->kept->hash, AUDIT_HASH_BYTES) != 0)
            walk_fault(w, e->index,
                       "entry %" PRIu64 " does not hash as the checkpoint "
                       "kept outside the cluster signed it: the log up to "
                       "it was rewritten (and re-signed)",
                       e->index);
        else
            w->kept_reached = true;
    }
}

static int checkpoint_cmp(const void *a, const void *b)
{
    const struct audit_checkpoint *x = a, *y = b;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Feeds @page to @w: entries and checkpoints merged by index, each
 * checkpoint after the entry of its index and before the next entry, so
 * that those beyond the page's last entry come last (and, on the last
 * page, reveal a truncated log). Errors: DOSSIER_NOMEM; a fault is not an
 * error here, it is kept in @w. */
static int walk_page(struct audit_walk *w, const Dossier__V1__AuditPage *page,
                     struct dossier_status *st)
{
    struct audit_checkpoint *cps;
    uint64_t floor = w->fed_through;
    size_t n_cps = page->n_checkpoints, j = 0;

    cps = calloc(n_cps ? n_cps : 1, sizeof(*cps));
    if (!cps)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    for (size_t i = 0; i < n_cps; i++) {
        struct dossier_status why;
        if (audit_checkpoint_decode(page->checkpoints[i].data,
                                    page->checkpoints[i].len, &cps[i],
                                    &why) != 0) {
            walk_fault(w, 0,
                       "a checkpoint served with the entries from %" PRIu64
                       " on is malformed (%s)",
                       w->next, why.message);
            free(cps);
            return 0;
        }
    }
    qsort(cps, n_cps, sizeof(*cps), checkpoint_cmp);
    for (size_t i = 0; i < page->n_entries && !w->broken; i++) {
        const Dossier__V1__AuditRecord *e = page->entries[i];
        for (; j < n_cps && cps[j].index < e->index; j++)
            walk_checkpoint(w, floor, &cps[j]);
        walk_entry(w, e);
        for (; j < n_cps && cps[j].index == e->index; j++)
            walk_checkpoint(w, floor, &cps[j]);
    }
    for (; j < n_cps; j++)
        walk_checkpoint(w, floor, &cps[j]);
    free(cps);
    if (page->n_entries == 0) {
        w->done = true;
    } else if (!w->broken) {
        /* Accepted in sequence, so the last index is the verifier's and
         * the walk moves on. */
        uint64_t last = page->entries[page->n_entries - 1]->index;
        if (last == UINT64_MAX)
            w->done = true;
        else
            w->next = last + 1;
    }
    return 0;
}

/* The public checkpoint as the verifier's. */
static void checkpoint_in(const struct dossier_audit_checkpoint *k,
                          struct audit_checkpoint *cp)
{
    memset(cp, 0, sizeof(*cp));
    cp->index = k->index;
    memcpy(cp->hash, k->hash, AUDIT_HASH_BYTES);
    cp->time_ms = k->time_ms;
    memcpy(cp->sig, k->signature, AUDIT_SIGNATURE_BYTES);
}

int dossier_audit_verify(struct dossier_client *c,
                         const struct dossier_call_options *co,
                         const uint8_t pk[32],
                         struct dossier_audit_report *report,
                         struct dossier_status *st)
{
    return dossier_audit_verify_kept(c, co, pk, NULL, report, st);
}

int dossier_audit_verify_kept(struct dossier_client *c,
                              const struct dossier_call_options *co,
                              const uint8_t pk[32],
                              const struct dossier_audit_checkpoint *kept,
                              struct dossier_audit_report *report,
                              struct dossier_status *st)
{
    Dossier__V1__AuditReadRequest req = DOSSIER__V1__AUDIT_READ_REQUEST__INIT;
    struct audit_checkpoint kept_cp;
    struct audit_walk w;
    struct audit_report r;
    int rc = 0, verdict;

    if (report)
        memset(report, 0, sizeof(*report));
    if (!pk)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "public key is missing");
    memset(&w, 0, sizeof(w));
    if (audit_verify_init(&w.v, pk) != 0)
        return err_set(st, DOSSIER_INTERNAL, "libsodium failed to start");
    if (kept) {
        checkpoint_in(kept, &kept_cp);
        if (audit_checkpoint_verify(&kept_cp, pk) != 0) {
            if (report)
                snprintf(report->message, sizeof(report->message),
                         "the kept checkpoint (entry %" PRIu64 ") is not "
                         "signed by this public key",
                         kept->index);
            return err_set(st, DOSSIER_CORRUPT,
                           "the kept checkpoint (entry %" PRIu64 ") is not "
                           "signed by this public key",
                           kept->index);
        }
        w.kept = &kept_cp;
    }
    w.next = 1;
    while (!w.done) {
        Dossier__V1__AuditPage *page;
        req.from_index = w.next;
        req.limit = AUDIT_VERIFY_PAGE;
        rc = client_unary(c, co, M_AUDIT_READ, &req.base,
                          &dossier__v1__audit_page__descriptor,
                          (ProtobufCMessage **)&page, st);
        if (rc)
            break;
        rc = walk_page(&w, page, st);
        dossier__v1__audit_page__free_unpacked(page, NULL);
        if (rc)
            break;
    }
    if (rc == 0 && w.kept && !w.kept_reached && !w.broken) {
        uint8_t h[AUDIT_HASH_BYTES];
        uint64_t last = audit_verify_head(&w.v, h);
        walk_fault(&w, last + 1,
                   "the log ends at entry %" PRIu64 ", before entry %" PRIu64
                   " that the checkpoint kept outside the cluster signs: "
                   "entries were cut off",
                   last, w.kept->index);
    }
    verdict = audit_verify_finish(&w.v, &r);
    if (w.own_fault) {
        verdict = DOSSIER_CORRUPT;
        r.bad_index = r.suspect_from = w.own_bad_index;
        r.unsigned_tail = 0;
        snprintf(r.message, sizeof(r.message), "%s", w.own_message);
    }
    if (rc) {
        /* The walk stopped short: what was read verified so far, but the
         * verdict is not known (a checkpoint still ahead of the entries is
         * no proof of truncation here). */
        r.bad_index = r.suspect_from = r.unsigned_tail = 0;
        snprintf(r.message, sizeof(r.message),
                 "verification stopped after entry %" PRIu64 ": %.180s",
                 r.entries, st ? st->message : dossier_code_message(rc));
    }
    if (report) {
        report->entries = r.entries;
        report->checkpoints = r.checkpoints;
        report->signed_through = r.signed_through;
        report->unsigned_tail = r.unsigned_tail;
        report->bad_index = r.bad_index;
        report->suspect_from = r.suspect_from;
        snprintf(report->message, sizeof(report->message), "%s", r.message);
    }
    if (rc)
        return rc;
    if (verdict)
        return err_set(st, DOSSIER_CORRUPT, "%s", r.message);
    return err_ok(st);
}

int dossier_audit_checkpoint_latest(struct dossier_client *c,
                                    const struct dossier_call_options *co,
                                    const uint8_t *pk,
                                    struct dossier_audit_checkpoint *out,
                                    struct dossier_status *st)
{
    Dossier__V1__AuditReadRequest req = DOSSIER__V1__AUDIT_READ_REQUEST__INIT;
    Dossier__V1__AuditPage *page;
    struct audit_checkpoint cp;
    uint8_t node_pk[32];
    uint64_t last = 0, signed_index = 0;
    int rc, found = 0;

    if (!out)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "output is missing");
    if ((rc = dossier_audit_public_key(c, co, node_pk, &last, &signed_index,
                                       st)) != 0)
        return rc;
    if (signed_index == 0)
        return err_set(st, DOSSIER_NOT_FOUND,
                       "the audit log has no signed checkpoint yet");
    req.from_index = signed_index;
    req.limit = 1;
    rc = client_unary(c, co, M_AUDIT_READ, &req.base,
                      &dossier__v1__audit_page__descriptor,
                      (ProtobufCMessage **)&page, st);
    if (rc)
        return rc;
    /* The page holds the checkpoints from signed_index on: the latest is
     * the one of the highest index (a newer one may have come since). */
    for (size_t i = 0; i < page->n_checkpoints; i++) {
        struct audit_checkpoint one;
        struct dossier_status why;
        if (audit_checkpoint_decode(page->checkpoints[i].data,
                                    page->checkpoints[i].len, &one,
                                    &why) != 0) {
            dossier__v1__audit_page__free_unpacked(page, NULL);
            return err_set(st, DOSSIER_CORRUPT,
                           "the node sent a malformed checkpoint (%s)",
                           why.message);
        }
        if (!found || one.index > cp.index)
            cp = one;
        found = 1;
    }
    dossier__v1__audit_page__free_unpacked(page, NULL);
    if (!found)
        return err_set(st, DOSSIER_NOT_FOUND,
                       "the node sent no checkpoint at entry %" PRIu64,
                       signed_index);
    if (audit_checkpoint_verify(&cp, pk ? pk : node_pk) != 0)
        return err_set(st, DOSSIER_CORRUPT,
                       "the latest checkpoint (entry %" PRIu64 ") does not "
                       "verify with %s",
                       cp.index,
                       pk ? "the public key given" : "the node's public key");
    out->index = cp.index;
    memcpy(out->hash, cp.hash, sizeof(out->hash));
    out->time_ms = cp.time_ms;
    memcpy(out->signature, cp.sig, sizeof(out->signature));
    return err_ok(st);
}

/* ------------------------------------------------------------------ */
/* Export */

struct export_state {
    dossier_export_fn fn;
    void *arg;
    int header_seen, footer_seen;
    uint64_t records, consent, audit, rectifications;
};

static int export_chunk(void *arg, ProtobufCMessage *msg,
                        struct dossier_status *st)
{
    struct export_state *x = arg;
    Dossier__V1__ExportChunk *ch = (Dossier__V1__ExportChunk *)msg;
    struct dossier_export_item item;
    int rc = 0;

    memset(&item, 0, sizeof(item));
    if (x->footer_seen ||
        (!x->header_seen &&
         ch->item_case != DOSSIER__V1__EXPORT_CHUNK__ITEM_HEADER))
        return err_set(st, DOSSIER_INTERNAL,
                       "the node sent export items out of order");
    switch (ch->item_case) {
    case DOSSIER__V1__EXPORT_CHUNK__ITEM_HEADER: {
        struct dossier_export_header h;
        memset(&h, 0, sizeof(h));
        if (text_copy(h.subject_id, sizeof(h.subject_id),
                      ch->header->subject_id) ||
            bytes_copy(h.pseudonym, sizeof(h.pseudonym),
                       &ch->header->pseudonym, "pseudonym", st))
            return err_set(st, DOSSIER_INTERNAL,
                           "the node sent a malformed export header");
        h.exported_at_ms = ch->header->exported_at_ms;
        h.applied_index = ch->header->applied_index;
        h.restricted = ch->header->restricted;
        h.erased = ch->header->erased;
        x->header_seen = 1;
        item.kind = DOSSIER_EXPORT_HEADER;
        item.header = &h;
        rc = x->fn(x->arg, &item);
        break;
    }
    case DOSSIER__V1__EXPORT_CHUNK__ITEM_RECORD: {
        struct dossier_record *r = record_from_pb(ch->record);
        if (!r)
            return err_set(st, DOSSIER_NOMEM, "out of memory");
        x->records++;
        item.kind = DOSSIER_EXPORT_RECORD;
        item.record = r;
        rc = x->fn(x->arg, &item);
        dossier_record_free(r);
        break;
    }
    case DOSSIER__V1__EXPORT_CHUNK__ITEM_CONSENT: {
        struct dossier_consent_event e;
        if (consent_event_from_pb(ch->consent, &e, st))
            return st->code;
        x->consent++;
        item.kind = DOSSIER_EXPORT_CONSENT;
        item.consent = &e;
        rc = x->fn(x->arg, &item);
        break;
    }
    case DOSSIER__V1__EXPORT_CHUNK__ITEM_AUDIT: {
        struct dossier_audit_entry e;
        if (audit_entry_from_pb(ch->audit, &e, st))
            return st->code;
        x->audit++;
        item.kind = DOSSIER_EXPORT_AUDIT;
        item.audit = &e;
        rc = x->fn(x->arg, &item);
        break;
    }
    case DOSSIER__V1__EXPORT_CHUNK__ITEM_RECTIFICATION: {
        const Dossier__V1__Rectification *m = ch->rectification;
        struct dossier_rectification r;
        size_t used = 0;
        memset(&r, 0, sizeof(r));
        if (text_copy(r.kind, sizeof(r.kind), m->kind) ||
            text_copy(r.id, sizeof(r.id), m->id) ||
            text_copy(r.principal, sizeof(r.principal), m->principal) ||
            text_copy(r.reference, sizeof(r.reference), m->reference) ||
            bytes_copy(r.record, sizeof(r.record), &m->record,
                       "rectified record", st))
            return err_set(st, DOSSIER_INTERNAL,
                           "the node sent a malformed rectification");
        for (size_t i = 0; i < m->n_fields; i++) {
            size_t len = strlen(m->fields[i]);
            if (used + len + 2 > sizeof(r.fields))
                return err_set(st, DOSSIER_INTERNAL,
                               "the node sent a rectification naming more "
                               "fields than fit");
            if (used)
                r.fields[used++] = ',';
            memcpy(r.fields + used, m->fields[i], len + 1);
            used += len;
        }
        r.time_ms = m->time_ms;
        r.revision = m->revision;
        x->rectifications++;
        item.kind = DOSSIER_EXPORT_RECTIFICATION;
        item.rectification = &r;
        rc = x->fn(x->arg, &item);
        break;
    }
    case DOSSIER__V1__EXPORT_CHUNK__ITEM_FOOTER: {
        struct dossier_export_footer f;
        f.records = ch->footer->records;
        f.consent_events = ch->footer->consent_events;
        f.audit_entries = ch->footer->audit_entries;
        f.rectifications = ch->footer->rectifications;
        if (f.records != x->records || f.consent_events != x->consent ||
            f.audit_entries != x->audit ||
            f.rectifications != x->rectifications)
            return err_set(st, DOSSIER_CORRUPT,
                           "the export is incomplete: the node counted "
                           "%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64
                           " records/consent events/rectifications/audit "
                           "entries, %" PRIu64 "/%" PRIu64 "/%" PRIu64
                           "/%" PRIu64 " arrived",
                           f.records, f.consent_events, f.rectifications,
                           f.audit_entries, x->records, x->consent,
                           x->rectifications, x->audit);
        x->footer_seen = 1;
        item.kind = DOSSIER_EXPORT_FOOTER;
        item.footer = &f;
        rc = x->fn(x->arg, &item);
        break;
    }
    default:
        return err_set(st, DOSSIER_INTERNAL,
                       "the node sent an export item this client does not "
                       "know");
    }
    if (rc)
        return err_set(st, DOSSIER_CANCELLED, "the export was stopped by its "
                       "reader");
    return 0;
}

int dossier_subject_export(struct dossier_client *c,
                           const struct dossier_call_options *co,
                           const char *subject_id, dossier_export_fn fn,
                           void *arg, struct dossier_status *st)
{
    Dossier__V1__SubjectRequest req = DOSSIER__V1__SUBJECT_REQUEST__INIT;
    struct export_state x;
    int rc;

    if (subject_check(subject_id, st))
        return st->code;
    if (!fn)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "callback is missing");
    memset(&x, 0, sizeof(x));
    x.fn = fn;
    x.arg = arg;
    req.subject_id = (char *)subject_id;
    rc = client_stream(c, co, M_SUBJECT_EXPORT, &req.base,
                       &dossier__v1__export_chunk__descriptor, export_chunk,
                       &x, st);
    if (rc == 0 && !x.footer_seen)
        rc = err_set(st, DOSSIER_CORRUPT,
                     "the export ended before its footer");
    return rc;
}

/* ------------------------------------------------------------------ */
/* Tracked requests */

static int tracked_from_pb(const Dossier__V1__TrackedRequestInfo *m,
                           struct dossier_tracked_request *out,
                           struct dossier_status *st)
{
    struct dossier_tracked_request t;
    memset(&t, 0, sizeof(t));
    if (text_copy(t.id, sizeof(t.id), m->id) ||
        text_copy(t.kind, sizeof(t.kind), m->kind) ||
        text_copy(t.reference, sizeof(t.reference), m->reference) ||
        text_copy(t.filed_by, sizeof(t.filed_by), m->filed_by) ||
        text_copy(t.executed_by, sizeof(t.executed_by), m->executed_by) ||
        text_copy(t.extension_reason, sizeof(t.extension_reason),
                  m->extension_reason) ||
        bytes_copy(t.pseudonym, sizeof(t.pseudonym), &m->pseudonym,
                   "pseudonym", st))
        return err_set(st, DOSSIER_INTERNAL,
                       "the node sent a malformed tracked request");
    if (m->digest.len == 32) {
        memcpy(t.digest, m->digest.data, 32);
        t.has_digest = 1;
    }
    t.received_ms = m->received_ms;
    t.deadline_ms = m->deadline_ms;
    t.executed = strcmp(m->state, "executed") == 0;
    t.executed_ms = m->executed_ms;
    t.result_index = m->result_index;
    t.records = m->records;
    t.overdue = m->overdue;
    t.extended_ms = m->extended_ms;
    t.original_deadline_ms = m->original_deadline_ms;
    *out = t;
    return 0;
}

static int receipt_call(struct dossier_client *c,
                        const struct dossier_call_options *co,
                        enum client_method m, const ProtobufCMessage *req,
                        struct dossier_request_receipt *out,
                        struct dossier_status *st)
{
    Dossier__V1__RequestReceipt *resp;
    struct dossier_request_receipt r;
    int rc = client_unary(c, co, m, req,
                          &dossier__v1__request_receipt__descriptor,
                          (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    memset(&r, 0, sizeof(r));
    if (!resp->request)
        rc = err_set(st, DOSSIER_INTERNAL, "the node sent an empty receipt");
    else
        rc = tracked_from_pb(resp->request, &r.request, st);
    if (rc == 0 && resp->erasure) {
        rc = certificate_from_pb(resp->erasure, &r.erasure, st);
        r.has_erasure = rc == 0;
    }
    if (rc == 0 && resp->signature.len == 64 && resp->public_key.len == 32) {
        memcpy(r.signature, resp->signature.data, 64);
        r.has_signature = 1;
    }
    if (rc == 0 && resp->public_key.len == 32)
        memcpy(r.public_key, resp->public_key.data, 32);
    dossier__v1__request_receipt__free_unpacked(resp, NULL);
    if (rc == 0 && out)
        *out = r;
    return rc;
}

int dossier_request_file(struct dossier_client *c,
                         const struct dossier_call_options *co,
                         const char *kind, const char *subject_id,
                         const char *reference, int64_t received_ms,
                         struct dossier_tracked_request *out,
                         struct dossier_status *st)
{
    Dossier__V1__FileRequest req = DOSSIER__V1__FILE_REQUEST__INIT;
    struct dossier_request_receipt r;
    int rc;

    if (!kind || (strcmp(kind, "erasure") != 0 && strcmp(kind, "export") != 0))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "kind must be erasure or export");
    if (subject_check(subject_id, st) ||
        label_check(reference, "reference", st))
        return st->code;
    req.kind = (char *)kind;
    req.subject_id = (char *)subject_id;
    req.reference = (char *)(reference ? reference : "");
    req.received_ms = received_ms;
    rc = receipt_call(c, co, M_REQUEST_FILE, &req.base, &r, st);
    if (rc == 0 && out)
        *out = r.request;
    return rc;
}

int dossier_request_list(struct dossier_client *c,
                         const struct dossier_call_options *co, int open_only,
                         struct dossier_tracked_request **out, size_t *n,
                         struct dossier_status *st)
{
    Dossier__V1__ListRequestsRequest req =
        DOSSIER__V1__LIST_REQUESTS_REQUEST__INIT;
    Dossier__V1__ListRequestsResponse *resp;
    int rc;

    if (!out || !n)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "outputs are missing");
    *out = NULL;
    *n = 0;
    req.open_only = open_only != 0;
    rc = client_unary(c, co, M_REQUEST_LIST, &req.base,
                      &dossier__v1__list_requests_response__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    *out = calloc(resp->n_requests ? resp->n_requests : 1, sizeof(**out));
    if (!*out)
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < resp->n_requests; i++)
        if ((rc = tracked_from_pb(resp->requests[i], &(*out)[i], st)) == 0)
            *n = i + 1;
    dossier__v1__list_requests_response__free_unpacked(resp, NULL);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int dossier_request_get(struct dossier_client *c,
                        const struct dossier_call_options *co, const char *id,
                        struct dossier_request_receipt *out,
                        struct dossier_status *st)
{
    Dossier__V1__GetTrackedRequest req = DOSSIER__V1__GET_TRACKED_REQUEST__INIT;
    if (!id || !id[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "id is missing");
    req.id = (char *)id;
    return receipt_call(c, co, M_REQUEST_GET, &req.base, out, st);
}

int dossier_request_execute(struct dossier_client *c,
                            const struct dossier_call_options *co,
                            const char *id, const char *subject_id,
                            struct dossier_request_receipt *out,
                            struct dossier_status *st)
{
    Dossier__V1__ExecuteRequest req = DOSSIER__V1__EXECUTE_REQUEST__INIT;
    if (!id || !id[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "id is missing");
    if (subject_check(subject_id, st))
        return st->code;
    req.id = (char *)id;
    req.subject_id = (char *)subject_id;
    return receipt_call(c, co, M_REQUEST_EXECUTE, &req.base, out, st);
}

int dossier_request_complete(struct dossier_client *c,
                             const struct dossier_call_options *co,
                             const char *id, const char *subject_id,
                             const uint8_t digest[32],
                             struct dossier_request_receipt *out,
                             struct dossier_status *st)
{
    Dossier__V1__CompleteRequest req = DOSSIER__V1__COMPLETE_REQUEST__INIT;
    if (!id || !id[0] || !digest)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "id and digest are needed");
    if (subject_check(subject_id, st))
        return st->code;
    req.id = (char *)id;
    req.subject_id = (char *)subject_id;
    req.digest = (ProtobufCBinaryData){32, (uint8_t *)digest};
    return receipt_call(c, co, M_REQUEST_COMPLETE, &req.base, out, st);
}

int dossier_request_extend(struct dossier_client *c,
                           const struct dossier_call_options *co,
                           const char *id, const char *reason,
                           struct dossier_request_receipt *out,
                           struct dossier_status *st)
{
    Dossier__V1__ExtendRequest req = DOSSIER__V1__EXTEND_REQUEST__INIT;
    if (!id || !id[0] || !reason || !reason[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "id and reason are needed");
    req.id = (char *)id;
    req.reason = (char *)reason;
    return receipt_call(c, co, M_REQUEST_EXTEND, &req.base, out, st);
}

int dossier_request_receipt_verify(const struct dossier_request_receipt *r,
                                   const uint8_t *pk,
                                   struct dossier_status *st)
{
    uint8_t m[AUDIT_REQUEST_MESSAGE_MAX];
    size_t len;

    if (!r)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "receipt is missing");
    if (!r->request.executed)
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "request %s is not executed yet: no proof to check",
                       r->request.id);
    if (r->has_erasure)
        return dossier_erasure_certificate_verify(&r->erasure, pk, st);
    if (!r->has_signature)
        return err_set(st, DOSSIER_CORRUPT, "the receipt carries no proof");
    if (sodium_init() < 0)
        return err_set(st, DOSSIER_INTERNAL, "libsodium failed to start");
    if (pk && memcmp(pk, r->public_key, 32) != 0)
        return err_set(st, DOSSIER_CORRUPT,
                       "the receipt is signed with another key than the one "
                       "given");
    len = audit_request_message(r->request.id, r->request.kind,
                                r->request.pseudonym,
                                r->request.has_digest ? r->request.digest
                                                      : NULL,
                                r->request.executed_ms,
                                r->request.result_index, m);
    if (crypto_sign_verify_detached(r->signature, m, len, r->public_key) != 0)
        return err_set(st, DOSSIER_CORRUPT,
                       "the receipt's signature does not verify (forged, "
                       "altered or damaged)");
    return err_ok(st);
}
