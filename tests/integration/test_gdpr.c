/* GDPR operations against real nodes, through libdossier:
 *  - purposes limit the fields in answers; a consent purpose sees nothing
 *    of a subject without consent, and withdrawal takes effect at once;
 *    a principal only uses the purposes it was granted;
 *  - a restricted subject is read only for legal_claims;
 *  - the audit log records writes, reads and refused calls, verifies with
 *    the public key alone, and a byte flipped in one stored entry of a
 *    stopped node is found and named;
 *  - erasure on a 3-node cluster: certified, nothing of the subject reads
 *    back, and no byte of its sealed values, data key or index entries is
 *    left in any file of any node's data directory, while the other
 *    subject's are (the scan can find what is there). */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <rocksdb/c.h>
#include <sodium.h>

#include "disk_scan.h"
#include "harness.h"
#include "store.pb-c.h"

static char tok_admin[65], tok_service[65], tok_all[65], tok_dpo[65];

/* Principals of every test: an admin, a service granted two purposes, a
 * service granted all, and a compliance officer. */
static void write_auth_file(const char *path)
{
    const struct harness_principal p[] = {
        {"ops", "admin", tok_admin, "*"},
        {"crm", "service", tok_service, "operations,marketing"},
        {"all", "service", tok_all, "*"},
        {"dpo", "compliance", tok_dpo, NULL}};
    harness_write_auth_file(path, p, 4);
}

#define client_as harness_client_as

/* Starts @n with an auth file of the principals above and the @more
 * flags (NULL-ended, may be NULL); the harness watches it as admin. */
static void start_with_auth(struct node_proc *n, const char *const *more)
{
    static char auth[400];
    const char *argv[16] = {"--auth-file", auth};
    int a = 2;
    node_init(n);
    snprintf(auth, sizeof(auth), "%s/auth", n->dir);
    write_auth_file(auth);
    for (int i = 0; more && more[i] && a < 15; i++)
        argv[a++] = more[i];
    argv[a] = NULL;
    harness_token = tok_admin;
    for (int i = 0; i < a; i++)
        n->args[i] = argv[i];
    n->args[a] = NULL;
    assert_int_equal(node_start(n, NULL), 0);
}

static int put_contact(struct dossier_client *c, const char *id,
                       const char *subject, const char *marker)
{
    struct dossier_record *r = dossier_record_new("contact", id, subject);
    struct dossier_status st;
    char email[128];
    int rc;
    snprintf(email, sizeof(email), "%s@example.org", marker);
    dossier_record_set_string(r, "first_name", marker);
    dossier_record_set_string(r, "email", email);
    dossier_record_set_double(r, "credit_limit", 1500.0);
    dossier_record_set_string(r, "accessibility_needs", marker);
    rc = dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st);
    if (rc)
        print_message("put %s: %s\n", id, st.message);
    dossier_record_free(r);
    return rc ? st.code : 0;
}

/* Puts a minimal record (@kind, @id) of @subject (NULL: none) with one
 * link @label to a record of the same kind as its usual target (a
 * company for works_at, else a contact), or none when @label is NULL. */
static void put_linked(struct dossier_client *c, const char *kind,
                       const char *id, const char *subject, const char *label,
                       const char *target)
{
    struct dossier_record *r = dossier_record_new(kind, id, subject);
    struct dossier_status st;
    if (strcmp(kind, "deal") == 0)
        dossier_record_set_string(r, "stage", "qualified");
    dossier_record_set_string(r, strcmp(kind, "contact") == 0 ? "first_name"
                                                              : "name",
                              id);
    if (label)
        dossier_record_add_link(r, label,
                                strcmp(label, "works_at") == 0 ? "company"
                                                               : "contact",
                                target);
    if (dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) != 0)
        fail_msg("put %s %s: %s", kind, id, st.message);
    dossier_record_free(r);
}

/* Gets contact @id: the status code, and the record into *@out if asked. */
static int get_contact(struct dossier_client *c, const char *id,
                       struct dossier_record **out)
{
    struct dossier_record *r = NULL;
    struct dossier_status st;
    int rc = dossier_get(c, NULL, "contact", id, &r, &st);
    if (out)
        *out = r;
    else
        dossier_record_free(r);
    return rc ? st.code : 0;
}

static size_t scan_count(struct dossier_client *c)
{
    struct dossier_page pg;
    struct dossier_status st;
    size_t n;
    if (dossier_scan(c, NULL, "contact", NULL, &pg, &st) != 0)
        fail_msg("scan: %s", st.message);
    n = pg.n_records;
    dossier_page_release(&pg);
    return n;
}

/* ------------------------------------------------------------------ */

static void test_purposes_and_consent(void **state)
{
    struct node_proc n;
    struct dossier_client *ops, *mkt, *crm, *analytics, *nope, *dpo, *billing;
    struct dossier_record *r;
    struct dossier_consent_event ev, *evs;
    struct dossier_purpose p, got;
    struct dossier_status st;
    size_t nev;
    (void)state;

    start_with_auth(&n, NULL);

    crm = client_as(n.addr, tok_service, "operations");
    mkt = client_as(n.addr, tok_service, "marketing");
    analytics = client_as(n.addr, tok_service, "analytics");
    nope = client_as(n.addr, tok_all, "no-such-purpose");
    dpo = client_as(n.addr, tok_dpo, NULL);
    ops = client_as(n.addr, tok_admin, NULL);
    assert_int_equal(put_contact(crm, "c-a", "subj-a", "Alma"), 0);
    assert_int_equal(put_contact(crm, "c-b", "subj-b", "Bert"), 0);

    /* No consent yet: marketing sees nothing of either subject. */
    assert_int_equal(get_contact(mkt, "c-a", NULL), DOSSIER_PERMISSION_DENIED);
    assert_int_equal(scan_count(mkt), 0);
    /* A purpose not granted to the principal, and an unknown one. */
    assert_int_equal(get_contact(analytics, "c-a", NULL),
                     DOSSIER_PERMISSION_DENIED);
    assert_int_equal(get_contact(nope, "c-a", NULL), DOSSIER_INVALID_ARGUMENT);

    /* Consent for subject A: marketing sees A's identity and contact
     * fields, never the financial or the special ones; B stays hidden. */
    assert_int_equal(dossier_consent_grant(dpo, NULL, "subj-a", "marketing",
                                           "signup-form", "2026-03", &ev, &st),
                     0);
    assert_int_equal(ev.state, DOSSIER_CONSENT_GRANTED);
    assert_string_equal(ev.principal, "dpo");
    assert_int_equal(get_contact(mkt, "c-a", &r), 0);
    assert_string_equal(dossier_record_field(r, "first_name")->u.s, "Alma");
    assert_non_null(dossier_record_field(r, "email"));
    assert_null(dossier_record_field(r, "credit_limit"));
    assert_null(dossier_record_field(r, "accessibility_needs"));
    dossier_record_free(r);
    assert_int_equal(scan_count(mkt), 1);
    assert_int_equal(get_contact(mkt, "c-b", NULL), DOSSIER_PERMISSION_DENIED);

    /* operations (contract) sees financial data, never special-category. */
    assert_int_equal(get_contact(crm, "c-a", &r), 0);
    assert_non_null(dossier_record_field(r, "credit_limit"));
    assert_null(dossier_record_field(r, "accessibility_needs"));
    dossier_record_free(r);

    /* Withdrawal takes effect for the very next read. */
    assert_int_equal(dossier_consent_withdraw(dpo, NULL, "subj-a", "marketing",
                                              "preference-center", "2026-03",
                                              NULL, &st),
                     0);
    assert_int_equal(get_contact(mkt, "c-a", NULL), DOSSIER_PERMISSION_DENIED);
    assert_int_equal(scan_count(mkt), 0);
    assert_int_equal(dossier_consent_history(dpo, NULL, "subj-a", NULL, &evs,
                                             &nev, &st),
                     0);
    assert_int_equal(nev, 2);
    assert_int_equal(evs[0].state, DOSSIER_CONSENT_GRANTED);
    assert_string_equal(evs[0].source, "signup-form");
    assert_int_equal(evs[1].state, DOSSIER_CONSENT_WITHDRAWN);
    assert_true(evs[1].revision > evs[0].revision);
    free(evs);
    assert_int_equal(dossier_consent_get(dpo, NULL, "subj-a", "marketing",
                                         &evs, &nev, &st),
                     0);
    assert_int_equal(nev, 1);
    assert_int_equal(evs[0].state, DOSSIER_CONSENT_WITHDRAWN);
    free(evs);
    /* A label that could hold personal data is refused. */
    assert_int_not_equal(dossier_consent_grant(dpo, NULL, "subj-a",
                                               "marketing", "Alma Smith", "",
                                               NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);

    /* A purpose of our own: billing sees financial fields only. Only an
     * admin defines purposes; built-in ones cannot be redefined. */
    memset(&p, 0, sizeof(p));
    snprintf(p.name, sizeof(p.name), "billing");
    p.categories = 1u << DOSSIER_CATEGORY_FINANCIAL;
    p.basis = DOSSIER_BASIS_CONTRACT;
    snprintf(p.description, sizeof(p.description), "invoices");
    assert_int_not_equal(dossier_purpose_define(crm, NULL, &p, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_PERMISSION_DENIED);
    assert_int_equal(dossier_purpose_define(ops, NULL, &p, &got, &st), 0);
    assert_int_equal(got.categories, p.categories);
    assert_false(got.builtin);
    snprintf(p.name, sizeof(p.name), "marketing");
    assert_int_not_equal(dossier_purpose_define(ops, NULL, &p, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_FAILED_PRECONDITION);
    billing = client_as(n.addr, tok_all, "billing");
    assert_int_equal(get_contact(billing, "c-a", &r), 0);
    assert_non_null(dossier_record_field(r, "credit_limit"));
    assert_null(dossier_record_field(r, "first_name"));
    assert_null(dossier_record_field(r, "email"));
    dossier_record_free(r);
    /* crm was not granted billing. */
    dossier_client_close(analytics);
    analytics = client_as(n.addr, tok_service, "billing");
    assert_int_equal(get_contact(analytics, "c-a", NULL),
                     DOSSIER_PERMISSION_DENIED);

    /* The definition survives a restart. */
    assert_int_equal(node_stop(&n), 0);
    assert_int_equal(node_start(&n, NULL), 0);
    dossier_client_close(billing);
    billing = client_as(n.addr, tok_all, "billing");
    assert_int_equal(get_contact(billing, "c-a", NULL), 0);

    dossier_client_close(billing);
    dossier_client_close(analytics);
    dossier_client_close(ops);
    dossier_client_close(dpo);
    dossier_client_close(nope);
    dossier_client_close(crm);
    dossier_client_close(mkt);
    node_destroy(&n);
}

static void test_restriction(void **state)
{
    struct node_proc n;
    struct dossier_client *crm, *legal, *dpo;
    struct dossier_subject_status ss;
    struct dossier_status st;
    (void)state;

    start_with_auth(&n, NULL);
    crm = client_as(n.addr, tok_service, "operations");
    legal = client_as(n.addr, tok_all, "legal_claims");
    dpo = client_as(n.addr, tok_dpo, NULL);
    assert_int_equal(put_contact(crm, "c-r", "subj-r", "Rita"), 0);

    assert_int_equal(dossier_subject_restrict(dpo, NULL, "subj-r", "REQ-7",
                                              &ss, &st),
                     0);
    assert_true(ss.restricted);
    assert_int_equal(ss.records, 1);
    assert_int_equal(get_contact(crm, "c-r", NULL), DOSSIER_PERMISSION_DENIED);
    assert_int_equal(scan_count(crm), 0);
    assert_int_equal(get_contact(legal, "c-r", NULL), 0);
    /* Only compliance restricts. */
    assert_int_not_equal(dossier_subject_unrestrict(crm, NULL, "subj-r", NULL,
                                                    NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_PERMISSION_DENIED);
    assert_int_equal(dossier_subject_unrestrict(dpo, NULL, "subj-r", "REQ-7",
                                                &ss, &st),
                     0);
    assert_false(ss.restricted);
    assert_int_equal(get_contact(crm, "c-r", NULL), 0);

    dossier_client_close(dpo);
    dossier_client_close(legal);
    dossier_client_close(crm);
    node_destroy(&n);
}

/* ------------------------------------------------------------------ */
/* Audit */

static int find_entry(struct dossier_audit_entry *e, size_t n,
                      const char *principal, const char *action, int outcome)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i].principal, principal) == 0 &&
            strcmp(e[i].action, action) == 0 && e[i].outcome == outcome)
            return 1;
    return 0;
}

/* Waits until the log holds an entry like that; 1 if it came. */
static int wait_entry(struct dossier_client *dpo, const char *principal,
                      const char *action, int outcome)
{
    for (int tries = 0; tries < 100; tries++) {
        struct dossier_audit_entry *e;
        struct dossier_status st;
        size_t n;
        int found;
        if (dossier_audit_read(dpo, NULL, 1, 10000, &e, &n, &st) != 0)
            fail_msg("audit read: %s", st.message);
        found = find_entry(e, n, principal, action, outcome);
        free(e);
        if (found)
            return 1;
        usleep(100000);
    }
    return 0;
}

static void test_audit_log(void **state)
{
    struct node_proc n;
    const char *audit_flags[] = {"--audit-window-ms", "50",
                                 "--audit-checkpoint-entries", "4",
                                 "--audit-checkpoint-ms", "200", NULL};
    struct dossier_client *crm, *anon, *badtok, *nopurpose, *dpo, *mkt,
        *nosuch;
    struct dossier_audit_report rep;
    struct dossier_status st;
    rocksdb_column_family_handle_t *cf[DISK_N_FAMILIES];
    rocksdb_t *db;
    uint8_t pk[32], wrong[32], key[9];
    uint64_t last = 0, signed_through = 0, victim;
    char *v, *err = NULL;
    size_t vlen;
    (void)state;

    start_with_auth(&n, audit_flags);
    crm = client_as(n.addr, tok_service, "operations");
    mkt = client_as(n.addr, tok_service, "marketing");
    anon = client_as(n.addr, NULL, "operations");
    badtok = client_as(n.addr, "0123456789abcdef", "operations");
    nopurpose = client_as(n.addr, tok_service, NULL);
    nosuch = client_as(n.addr, tok_all, "email-marker-at-example-org");
    dpo = client_as(n.addr, tok_dpo, NULL);

    for (int i = 0; i < 6; i++) {
        char id[16];
        snprintf(id, sizeof(id), "c-%d", i);
        assert_int_equal(put_contact(crm, id, "subj-x", "Xena"), 0);
        assert_int_equal(get_contact(crm, id, NULL), 0);
    }
    assert_int_equal(put_contact(anon, "c-9", "subj-x", "Xena"),
                     DOSSIER_UNAUTHENTICATED);
    assert_int_equal(put_contact(badtok, "c-9", "subj-x", "Xena"),
                     DOSSIER_UNAUTHENTICATED);
    assert_int_equal(put_contact(nopurpose, "c-9", "subj-x", "Xena"),
                     DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(get_contact(mkt, "c-1", NULL), DOSSIER_PERMISSION_DENIED);
    assert_int_not_equal(dossier_audit_public_key(crm, NULL, pk, NULL, NULL,
                                                  &st),
                         0);
    assert_int_equal(st.code, DOSSIER_PERMISSION_DENIED);

    /* Writes, reads and every refusal are in the log. */
    assert_true(wait_entry(dpo, "crm", "records.put", 0));
    assert_true(wait_entry(dpo, "crm", "records.get", 0));
    assert_true(wait_entry(dpo, "", "records.put", DOSSIER_UNAUTHENTICATED));
    assert_true(wait_entry(dpo, "crm", "records.put",
                           DOSSIER_INVALID_ARGUMENT));
    assert_true(wait_entry(dpo, "crm", "records.get",
                           DOSSIER_PERMISSION_DENIED));
    assert_true(wait_entry(dpo, "crm", "audit.public_key",
                           DOSSIER_PERMISSION_DENIED));

    /* The purpose of an entry is a known purpose or none: a header that
     * names no purpose may be any text, and is not written down. */
    assert_int_equal(put_contact(nosuch, "c-9", "subj-x", "Xena"),
                     DOSSIER_INVALID_ARGUMENT);
    assert_true(wait_entry(dpo, "all", "records.put",
                           DOSSIER_INVALID_ARGUMENT));
    {
        struct dossier_audit_entry *e;
        size_t ne, with_purpose = 0;
        assert_int_equal(dossier_audit_read(dpo, NULL, 1, 10000, &e, &ne,
                                            &st),
                         0);
        for (size_t i = 0; i < ne; i++) {
            assert_null(strstr(e[i].purpose, "marker"));
            with_purpose += strcmp(e[i].purpose, "operations") == 0;
        }
        assert_true(with_purpose >= 12); /* the puts and gets of crm */
        free(e);
    }

    /* The whole log verifies with the public key alone, once signed. */
    for (int tries = 0; tries < 100 && (signed_through < 12 ||
                                        signed_through != last);
         tries++) {
        assert_int_equal(dossier_audit_public_key(dpo, NULL, pk, &last,
                                                  &signed_through, &st),
                         0);
        usleep(100000);
    }
    assert_true(signed_through >= 12);
    assert_int_equal(dossier_audit_verify(dpo, NULL, pk, &rep, &st), 0);
    assert_true(rep.entries >= signed_through);
    assert_true(rep.checkpoints >= 1);
    assert_int_equal(rep.bad_index, 0);
    memcpy(wrong, pk, sizeof(wrong));
    wrong[0] ^= 1;
    assert_int_not_equal(dossier_audit_verify(dpo, NULL, wrong, &rep, &st), 0);

    /* Flip one byte of entry 5 (its time) in the stopped node's RocksDB:
     * verification fails and names entry 5. */
    victim = 5;
    assert_int_equal(node_stop(&n), 0);
    db = disk_db_open(n.data, 0, cf);
    key[0] = 'e';
    for (int i = 0; i < 8; i++)
        key[1 + i] = (uint8_t)(victim >> (8 * (7 - i)));
    {
        rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
        rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
        v = rocksdb_get_cf(db, ro, cf[10], (const char *)key, sizeof(key),
                           &vlen, &err);
        assert_null(err);
        assert_non_null(v);
        assert_true(vlen > 32 + 9);
        v[32 + 8] ^= 0x01; /* the low byte of the entry's time */
        rocksdb_put_cf(db, wo, cf[10], (const char *)key, sizeof(key), v,
                       vlen, &err);
        assert_null(err);
        rocksdb_free(v);
        rocksdb_readoptions_destroy(ro);
        rocksdb_writeoptions_destroy(wo);
    }
    disk_db_close(db, cf);
    assert_int_equal(node_start(&n, NULL), 0);
    dossier_client_close(dpo);
    dpo = client_as(n.addr, tok_dpo, NULL);
    memset(&rep, 0, sizeof(rep));
    assert_int_equal(dossier_audit_verify(dpo, NULL, pk, &rep, &st),
                     DOSSIER_CORRUPT);
    assert_int_equal(rep.bad_index, victim);
    print_message("tampered log: %s\n", rep.message);

    dossier_client_close(dpo);
    dossier_client_close(nosuch);
    dossier_client_close(nopurpose);
    dossier_client_close(badtok);
    dossier_client_close(anon);
    dossier_client_close(mkt);
    dossier_client_close(crm);
    node_destroy(&n);
}

/* ------------------------------------------------------------------ */
/* Erasure */

static void wait_applied(struct cluster_proc *c, uint64_t index)
{
    for (int i = 0; i < c->n; i++) {
        struct dossier_cluster_status s;
        int tries = 0;
        do {
            cluster_node_status(c, i, &s);
            if (s.applied_index >= index)
                break;
            usleep(50000);
        } while (++tries < 200);
        assert_true(s.applied_index >= index);
    }
}

static void test_erasure(void **state)
{
    struct cluster_proc c;
    struct dossier_client *cl;
    struct dossier_subject_status ss_a, ss_b;
    struct dossier_erasure_certificate cert;
    struct dossier_page pg;
    struct dossier_status st;
    struct needles a = {0}, b = {0};
    struct dossier_record *r;
    uint8_t pk[32];
    (void)state;

    harness_token = NULL;
    cluster_init(&c, 3, NULL);
    assert_int_equal(cluster_start_all(&c), 0);
    assert_true(cluster_leader(&c) >= 0);
    cl = harness_client(c.targets, 20000);
    assert_int_equal(put_contact(cl, "ea-1", "subj-erase-a", "Erika"), 0);
    assert_int_equal(put_contact(cl, "ea-2", "subj-erase-a", "Erika2"), 0);
    assert_int_equal(put_contact(cl, "eb-1", "subj-erase-b", "Bruno"), 0);
    /* Links from A's records, and to them from B's and from a deal. */
    put_linked(cl, "company", "erase-co", NULL, NULL, NULL);
    put_linked(cl, "contact", "ea-2", "subj-erase-a", "works_at", "erase-co");
    put_linked(cl, "contact", "eb-2", "subj-erase-b", "knows", "ea-1");
    put_linked(cl, "deal", "ed-1", NULL, "involves", "ea-1");
    put_linked(cl, "contact", "eb-3", "subj-erase-b", "works_at", "erase-co");
    assert_int_equal(dossier_consent_grant(cl, NULL, "subj-erase-a",
                                           "marketing", "web", "1", NULL, &st),
                     0);
    assert_int_equal(dossier_subject_status(cl, NULL, "subj-erase-a", NULL,
                                            &ss_a, &st),
                     0);
    assert_int_equal(ss_a.records, 2);
    assert_int_equal(dossier_subject_status(cl, NULL, "subj-erase-b", NULL,
                                            &ss_b, &st),
                     0);
    assert_int_equal(cluster_wait_converged(&c), 0);

    /* What A and B look like on disk, read from a stopped follower. */
    {
        int f = (cluster_leader(&c) + 1) % 3;
        assert_int_equal(node_stop(&c.nodes[f]), 0);
        disk_collect(c.nodes[f].data, ss_a.pseudonym, &a);
        disk_collect(c.nodes[f].data, ss_b.pseudonym, &b);
        assert_int_equal(node_start(&c.nodes[f], NULL), 0);
    }
    assert_true(a.n >= 2 * 4 + 2 + 3);
    assert_true(b.n >= 4);
    assert_int_equal(cluster_wait_converged(&c), 0);

    assert_int_equal(dossier_subject_erase(cl, NULL, "subj-erase-a", "DSR-1",
                                           &cert, &st),
                     0);
    assert_int_equal(cert.records_deleted, 2);
    assert_memory_equal(cert.pseudonym, ss_a.pseudonym, 16);
    assert_true(cert.n_nodes >= 1);
    assert_int_equal(dossier_audit_public_key(cl, NULL, pk, NULL, NULL, &st),
                     0);
    assert_int_equal(dossier_erasure_certificate_verify(&cert, pk, &st), 0);
    cert.records_deleted++;
    assert_int_not_equal(dossier_erasure_certificate_verify(&cert, pk, &st),
                         0);

    /* Nothing of A reads back, on any node; B is intact. */
    assert_int_equal(get_contact(cl, "ea-1", NULL), DOSSIER_NOT_FOUND);
    assert_int_equal(dossier_list_by_subject(cl, NULL, "subj-erase-a", NULL,
                                             NULL, &pg, &st),
                     0);
    assert_int_equal(pg.n_records, 0);
    dossier_page_release(&pg);
    assert_int_equal(get_contact(cl, "eb-1", &r), 0);
    assert_string_equal(dossier_record_field(r, "first_name")->u.s, "Bruno");
    dossier_record_free(r);
    assert_int_equal(dossier_subject_status(cl, NULL, "subj-erase-a", NULL,
                                            &ss_a, &st),
                     0);
    assert_int_equal(ss_a.records, 0);
    /* The links to A's records went with them; B's own link stays. */
    assert_int_equal(dossier_get(cl, NULL, "contact", "eb-2", &r, &st), 0);
    assert_int_equal(r->n_links, 0);
    dossier_record_free(r);
    assert_int_equal(dossier_get(cl, NULL, "deal", "ed-1", &r, &st), 0);
    assert_int_equal(r->n_links, 0);
    dossier_record_free(r);
    {
        struct dossier_link_page lp;
        assert_int_equal(dossier_list_links(cl, NULL, "company", "erase-co",
                                            DOSSIER_LINKS_INCOMING, NULL, NULL,
                                            &lp, &st),
                         0);
        assert_int_equal(lp.n_links, 1);
        assert_string_equal(lp.links[0].record->id, "eb-3");
        dossier_link_page_release(&lp);
    }

    /* Every node applied it; then no byte of A is left on any disk. */
    wait_applied(&c, cert.raft_index);
    for (int i = 0; i < 3; i++)
        assert_int_equal(node_stop(&c.nodes[i]), 0);
    for (int i = 0; i < 3; i++) {
        size_t left = disk_count(c.nodes[i].dir, &a);
        size_t kept = disk_count(c.nodes[i].dir, &b);
        print_message("node %d: %zu of %zu needles of A left, %zu of %zu "
                      "of B found\n",
                      i + 1, left, a.n, kept, b.n);
        assert_int_equal(left, 0);
        assert_true(kept > 0);
    }

    /* The same subject id later starts a new subject. */
    assert_int_equal(cluster_start_all(&c), 0);
    assert_true(cluster_leader(&c) >= 0);
    assert_int_equal(put_contact(cl, "ea-3", "subj-erase-a", "Again"), 0);
    assert_int_equal(get_contact(cl, "ea-3", &r), 0);
    assert_string_equal(dossier_record_field(r, "first_name")->u.s, "Again");
    dossier_record_free(r);

    free(a.b);
    free(b.b);
    dossier_client_close(cl);
    cluster_destroy(&c);
}

/* Disaster recovery: a backup taken online from a follower of a 3-node
 * cluster, subject A erased after it, every node lost. The backup restored
 * with the erasure ledger becomes a one-node cluster that erases A again
 * before it serves: A cannot be read, and no byte of A is left in the new
 * data directory, though the restored copy held A before the replay. */
static void test_restore_replays_erasures(void **state)
{
    struct cluster_proc c;
    struct dossier_client *cl, *fc;
    struct dossier_subject_status ss_a, ss_b;
    struct dossier_erasure_certificate cert, *ledger;
    struct dossier_backup bk, *list;
    struct dossier_cluster_status cs;
    struct dossier_status st;
    struct dossier_record *r;
    struct needles a = {0}, b = {0};
    struct node_proc nr;
    char bdir[3][400], ledger_path[600], *next = NULL, out[4096];
    size_t n;
    uint8_t pk[32];
    int leader, f;
    (void)state;

    harness_token = NULL;
    cluster_init(&c, 3, NULL);
    for (int i = 0; i < 3; i++) {
        int k = 0;
        snprintf(bdir[i], sizeof(bdir[i]), "%s/backups", c.nodes[i].dir);
        while (c.nodes[i].args[k])
            k++;
        c.nodes[i].args[k++] = "--backup-dir";
        c.nodes[i].args[k++] = bdir[i];
        c.nodes[i].args[k] = NULL;
    }
    assert_int_equal(cluster_start_all(&c), 0);
    leader = cluster_leader(&c);
    assert_true(leader >= 0);
    f = (leader + 1) % 3;
    cl = harness_client(c.targets, 20000);
    assert_int_equal(put_contact(cl, "ra-1", "subj-restore-a", "Anna"), 0);
    assert_int_equal(put_contact(cl, "ra-2", "subj-restore-a", "Anna2"), 0);
    assert_int_equal(put_contact(cl, "rb-1", "subj-restore-b", "Berta"), 0);
    assert_int_equal(put_contact(cl, "rc-1", "subj-restore-c", "Carl"), 0);
    /* C is erased before the backup, A after it. D is erased before it,
     * written again, and erased again after it: the backup's ledger row
     * of D's first erasure must not stop the replay of the second. */
    assert_int_equal(dossier_subject_erase(cl, NULL, "subj-restore-c", "DSR-C",
                                           &cert, &st),
                     0);
    assert_int_equal(put_contact(cl, "rd-1", "subj-restore-d", "Dora"), 0);
    assert_int_equal(dossier_subject_erase(cl, NULL, "subj-restore-d", "DSR-D",
                                           &cert, &st),
                     0);
    assert_int_equal(put_contact(cl, "rd-2", "subj-restore-d", "Dora2"), 0);
    assert_int_equal(dossier_subject_status(cl, NULL, "subj-restore-a", NULL,
                                            &ss_a, &st),
                     0);
    assert_int_equal(dossier_subject_status(cl, NULL, "subj-restore-b", NULL,
                                            &ss_b, &st),
                     0);
    assert_int_equal(cluster_wait_converged(&c), 0);

    /* An online backup of a follower. */
    fc = harness_client(c.nodes[f].addr, 60000);
    assert_int_equal(dossier_backup_create(fc, NULL, &bk, &st), 0);
    assert_int_equal(bk.node_id, (uint64_t)f + 1);
    assert_true(bk.applied_index > 0);
    assert_true(bk.files >= 4);
    assert_int_equal(dossier_backup_list(fc, NULL, &list, &n, &st), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].name, bk.name);
    free(list);
    dossier_client_close(fc);

    assert_int_equal(dossier_subject_erase(cl, NULL, "subj-restore-a", "DSR-A",
                                           &cert, &st),
                     0);
    assert_int_equal(dossier_subject_erase(cl, NULL, "subj-restore-d",
                                           "DSR-D2", &cert, &st),
                     0);
    assert_int_equal(put_contact(cl, "rb-2", "subj-restore-b", "Later"), 0);

    /* The ledger: one row per erased subject (D's latest erasure), each
     * signed by the cluster's audit key. */
    assert_int_equal(dossier_erasure_ledger(cl, NULL, NULL, &ledger, &n, &next,
                                            &st),
                     0);
    assert_int_equal(n, 3);
    assert_null(next);
    assert_int_equal(dossier_audit_public_key(cl, NULL, pk, NULL, NULL, &st),
                     0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(dossier_erasure_certificate_verify(&ledger[i], pk,
                                                            &st),
                         0);
    free(ledger);
    snprintf(ledger_path, sizeof(ledger_path), "%s/ledger.jsonl",
             c.nodes[leader].dir);
    assert_int_equal(harness_sh(NULL, 0, "%s --target %s subject ledger > %s",
                                DOSSIER_CLI_PATH, c.targets, ledger_path),
                     0);
    dossier_client_close(cl);

    /* Disaster: every node is gone. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(node_stop(&c.nodes[i]), 0);

    node_init(&nr);
    assert_int_equal(harness_sh(NULL, 0, "cp %s %s", c.nodes[0].key, nr.key),
                     0);
    /* Without a ledger, or a damaged one, nothing is restored. */
    assert_int_equal(harness_sh(NULL, 0, "%s backup restore %s/%s %s "
                                "2>/dev/null",
                                DOSSIER_CLI_PATH, bdir[f], bk.name, nr.data),
                     2);
    assert_int_equal(harness_sh(NULL, 0, "cp -r %s/%s %s/damaged && printf X "
                                "| dd of=%s/damaged/DOSSIER conv=notrunc "
                                "2>/dev/null",
                                bdir[f], bk.name, nr.dir, nr.dir),
                     0);
    assert_int_equal(harness_sh(out, sizeof(out),
                                "%s backup restore --ledger %s %s/damaged %s "
                                "2>&1",
                                DOSSIER_CLI_PATH, ledger_path, nr.dir,
                                nr.data),
                     5);
    assert_non_null(strstr(out, "DOSSIER is damaged"));
    assert_int_equal(harness_sh(NULL, 0, "test -z \"$(ls -A %s)\"", nr.data),
                     0);
    assert_int_equal(harness_sh(out, sizeof(out),
                                "%s backup restore --ledger %s %s/%s %s",
                                DOSSIER_CLI_PATH, ledger_path, bdir[f],
                                bk.name, nr.data),
                     0);
    assert_non_null(strstr(out, "\"ledger_entries\":3"));
    /* The restored copy holds A's bytes until the node replays. */
    disk_collect(nr.data, ss_a.pseudonym, &a);
    disk_collect(nr.data, ss_b.pseudonym, &b);
    assert_true(a.n >= 2 * 4 + 2);
    assert_true(disk_count(nr.data, &a) > 0);
    {
        const char *extra[] = {"--node-id", "1", NULL};
        assert_int_equal(node_start(&nr, extra), 0);
    }
    cl = node_client(&nr);
    assert_int_equal(get_contact(cl, "ra-1", NULL), DOSSIER_NOT_FOUND);
    assert_int_equal(get_contact(cl, "ra-2", NULL), DOSSIER_NOT_FOUND);
    assert_int_equal(get_contact(cl, "rc-1", NULL), DOSSIER_NOT_FOUND);
    assert_int_equal(get_contact(cl, "rd-1", NULL), DOSSIER_NOT_FOUND);
    assert_int_equal(get_contact(cl, "rd-2", NULL), DOSSIER_NOT_FOUND);
    assert_int_equal(get_contact(cl, "rb-1", &r), 0);
    assert_string_equal(dossier_record_field(r, "first_name")->u.s, "Berta");
    dossier_record_free(r);
    /* Written after the backup: not in it. */
    assert_int_equal(get_contact(cl, "rb-2", NULL), DOSSIER_NOT_FOUND);
    assert_int_equal(dossier_cluster_status(cl, NULL, &cs, &st), 0);
    assert_string_equal(cs.role, "leader");
    assert_int_equal(cs.n_members, 1);
    assert_int_equal(cs.members[0].id, 1);
    assert_int_equal(dossier_erasure_ledger(cl, NULL, NULL, &ledger, &n, &next,
                                            &st),
                     0);
    assert_int_equal(n, 3);
    free(ledger);
    dossier_client_close(cl);
    assert_int_equal(node_stop(&nr), 0);
    {
        size_t left = disk_count(nr.data, &a), kept = disk_count(nr.data, &b);
        print_message("restored node: %zu of %zu needles of A left, %zu of "
                      "%zu of B found\n", left, a.n, kept, b.n);
        assert_int_equal(left, 0);
        assert_true(kept > 0);
    }
    free(a.b);
    free(b.b);
    node_destroy(&nr);
    cluster_destroy(&c);
}

/* Subject export (Art. 15/20): everything about one subject, and nothing
 * about anyone else, for the compliance role only; audited; an erased
 * subject exports no data. */
struct export_seen {
    struct dossier_export_header header;
    struct dossier_export_footer footer;
    size_t records, consent, audit, audit_other, kinds_seen;
    int emails, fields_all, order_ok, last_kind;
    char actions[32][65];
    size_t n_actions;
    uint8_t sp[16];
};

/* Where an item comes in an export: the order the header documents. */
static int export_rank(enum dossier_export_kind k)
{
    switch (k) {
    case DOSSIER_EXPORT_HEADER: return 1;
    case DOSSIER_EXPORT_RECORD: return 2;
    case DOSSIER_EXPORT_CONSENT: return 3;
    case DOSSIER_EXPORT_RECTIFICATION: return 4;
    case DOSSIER_EXPORT_AUDIT: return 5;
    case DOSSIER_EXPORT_FOOTER: return 6;
    }
    return 0;
}

static int export_cb(void *arg, const struct dossier_export_item *it)
{
    struct export_seen *x = arg;
    if (export_rank(it->kind) < x->last_kind)
        x->order_ok = 0;
    x->last_kind = export_rank(it->kind);
    switch (it->kind) {
    case DOSSIER_EXPORT_HEADER:
        x->header = *it->header;
        break;
    case DOSSIER_EXPORT_RECORD: {
        const struct dossier_value *e =
            dossier_record_field(it->record, "email");
        const struct dossier_value *a =
            dossier_record_field(it->record, "accessibility_needs");
        const struct dossier_value *cl =
            dossier_record_field(it->record, "credit_limit");
        x->records++;
        if (e && strstr(e->u.s, "@example.org"))
            x->emails++;
        if (a && cl) /* special and financial categories too */
            x->fields_all++;
        break;
    }
    case DOSSIER_EXPORT_CONSENT:
        x->consent++;
        break;
    case DOSSIER_EXPORT_AUDIT:
        x->audit++;
        if (!it->audit->has_subject ||
            memcmp(it->audit->subject, x->sp, 16) != 0)
            x->audit_other++;
        if (x->n_actions < 32)
            snprintf(x->actions[x->n_actions++], 65, "%s",
                     it->audit->action);
        break;
    case DOSSIER_EXPORT_FOOTER:
        x->footer = *it->footer;
        break;
    case DOSSIER_EXPORT_RECTIFICATION:
        break; /* test_gdpr_rights.c looks at them */
    }
    return 0;
}

static int has_action(const struct export_seen *x, const char *a, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < x->n_actions; i++)
        k += strcmp(x->actions[i], a) == 0;
    return k == n;
}

static void test_export(void **state)
{
    struct node_proc n;
    struct dossier_client *svc, *dpo;
    struct dossier_subject_status ss;
    struct dossier_erasure_certificate cert;
    struct dossier_status st;
    struct export_seen x;
    (void)state;

    start_with_auth(&n, NULL);
    svc = client_as(n.addr, tok_service, "operations");
    dpo = client_as(n.addr, tok_dpo, NULL);
    assert_int_equal(put_contact(svc, "ex-1", "subj-export-x", "Xena"), 0);
    assert_int_equal(put_contact(svc, "ex-2", "subj-export-x", "Xena2"), 0);
    assert_int_equal(put_contact(svc, "ey-1", "subj-export-y", "Yuri"), 0);
    assert_int_equal(dossier_consent_grant(svc, NULL, "subj-export-x",
                                           "marketing", "web", "1", NULL, &st),
                     0);
    assert_int_equal(dossier_consent_withdraw(svc, NULL, "subj-export-x",
                                              "marketing", "web", "1", NULL,
                                              &st),
                     0);
    assert_int_equal(get_contact(svc, "ex-1", NULL), 0);
    assert_int_equal(get_contact(svc, "ey-1", NULL), 0);
    assert_true(wait_entry(dpo, "crm", "records.get", 0));
    assert_int_equal(dossier_subject_status(dpo, NULL, "subj-export-x", NULL,
                                            &ss, &st),
                     0);

    memset(&x, 0, sizeof(x));
    x.order_ok = 1;
    memcpy(x.sp, ss.pseudonym, 16);
    assert_int_equal(dossier_subject_export(dpo, NULL, "subj-export-x",
                                            export_cb, &x, &st),
                     0);
    assert_true(x.order_ok);
    assert_string_equal(x.header.subject_id, "subj-export-x");
    assert_memory_equal(x.header.pseudonym, ss.pseudonym, 16);
    assert_false(x.header.erased);
    assert_int_equal(x.records, 2);
    assert_int_equal(x.emails, 2);
    assert_int_equal(x.fields_all, 2);
    assert_int_equal(x.consent, 2); /* granted, then withdrawn */
    assert_int_equal(x.audit_other, 0);
    assert_true(has_action(&x, "records.put", 2));
    assert_true(has_action(&x, "consent.grant", 1));
    assert_true(has_action(&x, "consent.withdraw", 1));
    assert_true(has_action(&x, "records.get", 1));
    assert_int_equal(x.footer.records, 2);
    assert_int_equal(x.footer.audit_entries, x.audit);

    /* Only the compliance role exports; the export is audited. */
    memset(&x, 0, sizeof(x));
    assert_int_equal(dossier_subject_export(svc, NULL, "subj-export-x",
                                            export_cb, &x, &st),
                     DOSSIER_PERMISSION_DENIED);
    assert_true(wait_entry(dpo, "dpo", "subjects.export", 0));

    /* Erased: no records, no consent; the header says so. */
    assert_int_equal(dossier_subject_erase(dpo, NULL, "subj-export-x", "DSR-9",
                                           &cert, &st),
                     0);
    memset(&x, 0, sizeof(x));
    x.order_ok = 1;
    memcpy(x.sp, ss.pseudonym, 16);
    assert_int_equal(dossier_subject_export(dpo, NULL, "subj-export-x",
                                            export_cb, &x, &st),
                     0);
    assert_true(x.header.erased);
    assert_int_equal(x.records, 0);
    assert_int_equal(x.consent, 0);
    assert_true(has_action(&x, "subjects.erase", 1));

    dossier_client_close(svc);
    dossier_client_close(dpo);
    node_destroy(&n);
    harness_token = NULL;
}

/* Tracked requests: filed with a one-month deadline (back-dated ones can
 * be overdue), met through the request with signed proof, refused when
 * they do not fit, kept across a restart. */
static void test_tracked_requests(void **state)
{
    struct node_proc n;
    struct dossier_client *svc, *dpo;
    struct dossier_tracked_request er, ex, *list;
    struct dossier_request_receipt r;
    struct dossier_status st;
    uint8_t digest[32], pk[32];
    int64_t now = (int64_t)time(NULL) * 1000;
    size_t count;
    (void)state;

    start_with_auth(&n, NULL);
    svc = client_as(n.addr, tok_service, "operations");
    dpo = client_as(n.addr, tok_dpo, NULL);
    assert_int_equal(put_contact(svc, "rq-1", "subj-req-1", "Rita"), 0);
    assert_int_equal(put_contact(svc, "rq-2", "subj-req-2", "Rolf"), 0);

    assert_int_equal(dossier_request_file(dpo, NULL, "erasure", "subj-req-1",
                                          "TICKET-1", 0, &er, &st),
                     0);
    assert_int_equal(er.deadline_ms - er.received_ms,
                     30LL * 24 * 3600 * 1000);
    assert_false(er.executed);
    assert_false(er.overdue);
    assert_string_equal(er.filed_by, "dpo");
    /* Received 40 days ago: already late. */
    assert_int_equal(dossier_request_file(dpo, NULL, "export", "subj-req-2",
                                          NULL, now - 40LL * 86400000, &ex,
                                          &st),
                     0);
    assert_true(ex.overdue);
    assert_int_equal(dossier_request_file(dpo, NULL, "rectify", "subj-req-2",
                                          NULL, 0, NULL, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(dossier_request_file(svc, NULL, "export", "subj-req-2",
                                          NULL, 0, NULL, &st),
                     DOSSIER_PERMISSION_DENIED);
    assert_int_equal(dossier_request_list(dpo, NULL, 1, &list, &count, &st),
                     0);
    assert_int_equal(count, 2);
    assert_string_equal(list[0].id, ex.id); /* the soonest deadline first */
    free(list);

    /* Erasure: only for its subject, once. */
    assert_int_equal(dossier_request_execute(dpo, NULL, er.id, "subj-req-2",
                                             &r, &st),
                     DOSSIER_FAILED_PRECONDITION);
    assert_int_equal(dossier_request_execute(dpo, NULL, ex.id, "subj-req-2",
                                             &r, &st),
                     DOSSIER_FAILED_PRECONDITION);
    assert_int_equal(dossier_request_execute(dpo, NULL, er.id, "subj-req-1",
                                             &r, &st),
                     0);
    assert_true(r.request.executed);
    assert_int_equal(r.request.records, 1);
    assert_true(r.has_erasure);
    assert_int_equal(dossier_audit_public_key(dpo, NULL, pk, NULL, NULL, &st),
                     0);
    assert_int_equal(dossier_request_receipt_verify(&r, pk, &st), 0);
    assert_int_equal(get_contact(svc, "rq-1", NULL), DOSSIER_NOT_FOUND);
    assert_int_equal(dossier_request_execute(dpo, NULL, er.id, "subj-req-1",
                                             &r, &st),
                     DOSSIER_FAILED_PRECONDITION);

    /* Export: completed with the digest of what was delivered. */
    memset(digest, 0x5a, sizeof(digest));
    assert_int_equal(dossier_request_complete(dpo, NULL, ex.id, "subj-req-2",
                                              digest, &r, &st),
                     0);
    assert_true(r.request.executed);
    assert_true(r.request.overdue); /* executed after its deadline */
    assert_memory_equal(r.request.digest, digest, 32);
    assert_int_equal(dossier_request_receipt_verify(&r, pk, &st), 0);
    r.request.digest[0] ^= 1;
    assert_int_equal(dossier_request_receipt_verify(&r, pk, &st),
                     DOSSIER_CORRUPT);

    /* Replicated state: still there after a restart, with its proof. */
    assert_int_equal(node_stop(&n), 0);
    assert_int_equal(node_start(&n, NULL), 0);
    dossier_client_close(dpo);
    dossier_client_close(svc);
    dpo = client_as(n.addr, tok_dpo, NULL);
    svc = client_as(n.addr, tok_service, "operations");
    assert_int_equal(dossier_request_list(dpo, NULL, 0, &list, &count, &st),
                     0);
    assert_int_equal(count, 2);
    free(list);
    assert_int_equal(dossier_request_list(dpo, NULL, 1, &list, &count, &st),
                     0);
    assert_int_equal(count, 0);
    free(list);
    assert_int_equal(dossier_request_get(dpo, NULL, ex.id, &r, &st), 0);
    assert_int_equal(dossier_request_receipt_verify(&r, pk, &st), 0);
    assert_int_equal(dossier_request_get(dpo, NULL, "REQ-NONE", &r, &st),
                     DOSSIER_NOT_FOUND);

    /* Art. 12(3): an open request received 10 days ago gets two further
     * months, once; one past its first month, or executed, gets none. */
    {
        struct dossier_tracked_request late, young;
        assert_int_equal(dossier_request_file(dpo, NULL, "export",
                                              "subj-req-3", NULL,
                                              now - 10LL * 86400000, &young,
                                              &st),
                         0);
        assert_int_equal(dossier_request_file(dpo, NULL, "export",
                                              "subj-req-4", NULL,
                                              now - 31LL * 86400000, &late,
                                              &st),
                         0);
        assert_int_equal(dossier_request_extend(dpo, NULL, young.id,
                                                "complexity", &r, &st),
                         0);
        assert_int_equal(r.request.deadline_ms - r.request.received_ms,
                         90LL * 24 * 3600 * 1000);
        assert_int_equal(r.request.original_deadline_ms, young.deadline_ms);
        assert_true(r.request.extended_ms >= now);
        assert_string_equal(r.request.extension_reason, "complexity");
        assert_false(r.request.overdue);
        assert_int_equal(dossier_request_extend(dpo, NULL, young.id,
                                                "complexity", &r, &st),
                         DOSSIER_FAILED_PRECONDITION);
        assert_non_null(strstr(st.message, "extended already"));
        assert_int_equal(dossier_request_extend(dpo, NULL, late.id,
                                                "complexity", &r, &st),
                         DOSSIER_FAILED_PRECONDITION);
        assert_non_null(strstr(st.message, "first month"));
        assert_int_equal(dossier_request_extend(dpo, NULL, ex.id, "complexity",
                                                &r, &st),
                         DOSSIER_FAILED_PRECONDITION);
        assert_int_equal(dossier_request_extend(dpo, NULL, young.id,
                                                "has spaces", &r, &st),
                         DOSSIER_INVALID_ARGUMENT);
        assert_int_equal(dossier_request_extend(svc, NULL, young.id,
                                                "complexity", &r, &st),
                         DOSSIER_PERMISSION_DENIED);
        /* Kept in the replicated state, with who and why. */
        assert_int_equal(dossier_request_get(dpo, NULL, young.id, &r, &st),
                         0);
        assert_int_equal(r.request.original_deadline_ms, young.deadline_ms);
        assert_string_equal(r.request.extension_reason, "complexity");
    }

    dossier_client_close(svc);
    dossier_client_close(dpo);
    node_destroy(&n);
    harness_token = NULL;
}

/* Retention: the leader's sweeper drops fields past their kind's
 * retention_days (its clock runs 45 days ahead here), with their blind
 * index rows, keeps the others, and audits each sweep. */
static void test_retention(void **state)
{
    const char *more[] = {"--enable-fault-injection", "--retention-sweep-ms",
                          "200", "--retention-clock-offset-days", "45", NULL};
    struct dossier_field_schema fields[] = {
        {"email", DOSSIER_FIELD_EMAIL, DOSSIER_CATEGORY_CONTACT, 1, 0, 30, 0,
         NULL, NULL},
        {"note", DOSSIER_FIELD_STRING, DOSSIER_CATEGORY_OPERATIONAL, 0, 0, 0,
         0, NULL, NULL},
        {"score", DOSSIER_FIELD_INT, DOSSIER_CATEGORY_BEHAVIORAL, 0, 0, 60, 0,
         NULL, NULL}};
    struct dossier_kind_schema k = {"lead", 1, 0, 0, "retention test", 3,
                                    fields, 0,
                                    DOSSIER_RETENTION_SINCE_UPDATE};
    struct dossier_client *admin, *svc, *dpo;
    struct dossier_record *r, *got = NULL;
    struct dossier_status st;
    struct dossier_page pg;
    struct dossier_value email = {0};
    struct node_proc n;
    int gone = 0;
    (void)state;

    start_with_auth(&n, more);
    admin = client_as(n.addr, tok_admin, NULL);
    svc = client_as(n.addr, tok_service, "operations");
    dpo = client_as(n.addr, tok_dpo, NULL);
    assert_int_equal(dossier_schema_define(admin, NULL, &k, NULL, &st), 0);
    r = dossier_record_new("lead", "l-1", "subj-retention");
    dossier_record_set_string(r, "email", "old@example.org");
    dossier_record_set_string(r, "note", "keep me");
    dossier_record_set_int(r, "score", 7);
    assert_int_equal(dossier_put(svc, NULL, r, DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    dossier_record_free(r);

    for (int t = 0; t < 100 && !gone; t++) {
        assert_int_equal(dossier_get(svc, NULL, "lead", "l-1", &got, &st), 0);
        gone = dossier_record_field(got, "email") == NULL;
        if (!gone) {
            dossier_record_free(got);
            got = NULL;
            usleep(100000);
        }
    }
    assert_true(gone);
    assert_string_equal(dossier_record_field(got, "note")->u.s, "keep me");
    assert_int_equal(dossier_record_field(got, "score")->u.i, 7);
    assert_true(got->version > 1);
    dossier_record_free(got);
    /* Its blind index row went with it. */
    email.type = DOSSIER_TYPE_STRING;
    email.u.s = "old@example.org";
    assert_int_equal(dossier_find(svc, NULL, "lead", "email", &email, NULL, &pg,
                                  &st),
                     0);
    assert_int_equal(pg.n_records, 0);
    dossier_page_release(&pg);
    assert_true(wait_entry(dpo, "dossierd-retention", "retention.sweep", 0));

    dossier_client_close(admin);
    dossier_client_close(svc);
    dossier_client_close(dpo);
    node_destroy(&n);
    harness_token = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_purposes_and_consent),
        cmocka_unit_test(test_restriction),
        cmocka_unit_test(test_audit_log),
        cmocka_unit_test(test_export),
        cmocka_unit_test(test_tracked_requests),
        cmocka_unit_test(test_retention),
        cmocka_unit_test(test_erasure),
        cmocka_unit_test(test_restore_replays_erasures),
    };
    if (sodium_init() < 0)
        return 1;
    harness_new_token(tok_admin);
    harness_new_token(tok_service);
    harness_new_token(tok_all);
    harness_new_token(tok_dpo);
    {
        int rc = cmocka_run_group_tests(tests, NULL, NULL);
        if (harness_running() != 0) {
            fprintf(stderr, "a test left a process running\n");
            return 1;
        }
        return rc;
    }
}
