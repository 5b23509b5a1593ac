/* The subject rights added after the first GDPR round, against real nodes
 * through libdossier:
 *  - rectification (Art. 16): named fields of one of a subject's records
 *    corrected or removed, checked by the schema, audited with its
 *    reference, listed in the subject's export; every refusal leaves the
 *    record as it was;
 *  - retention of whole records: a kind's record retention, applied by the
 *    leader's sweeper through replicated commands, and waiting while a
 *    subject is restricted;
 *  - erasure certificates listing every node that finished the erasure,
 *    and the ones still pending;
 *  - audit verification against a checkpoint kept outside the cluster,
 *    which finds a log cut off in a stopped node's RocksDB. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <rocksdb/c.h>
#include <sodium.h>

#include "disk_scan.h"
#include "harness.h"

static char tok_admin[65], tok_service[65], tok_dpo[65];

#define client_as harness_client_as

/* Starts @n with an auth file naming an admin, a service and a compliance
 * officer, and the @more flags (NULL-ended, may be NULL). */
static void start_with_auth(struct node_proc *n, const char *const *more)
{
    static char auth[400];
    const struct harness_principal p[] = {
        {"ops", "admin", tok_admin, "*"},
        {"crm", "service", tok_service, "*"},
        {"dpo", "compliance", tok_dpo, NULL}};
    int a = 2;
    node_init(n);
    snprintf(auth, sizeof(auth), "%s/auth", n->dir);
    harness_write_auth_file(auth, p, 3);
    n->args[0] = "--auth-file";
    n->args[1] = auth;
    for (int i = 0; more && more[i] && a < 23; i++)
        n->args[a++] = more[i];
    n->args[a] = NULL;
    harness_token = tok_admin;
    assert_int_equal(node_start(n, NULL), 0);
}

/* Waits (up to 10 s) for an audit entry of @principal, @action and
 * @outcome; with @reference, it must carry that reference. */
static int wait_entry(struct dossier_client *dpo, const char *principal,
                      const char *action, int outcome, const char *reference)
{
    for (int tries = 0; tries < 100; tries++) {
        struct dossier_audit_entry *e;
        struct dossier_status st;
        size_t n;
        int found = 0;
        if (dossier_audit_read(dpo, NULL, 1, 10000, &e, &n, &st) != 0)
            fail_msg("audit read: %s", st.message);
        for (size_t i = 0; i < n && !found; i++)
            found = strcmp(e[i].principal, principal) == 0 &&
                    strcmp(e[i].action, action) == 0 &&
                    e[i].outcome == outcome &&
                    (!reference || strcmp(e[i].reference, reference) == 0);
        free(e);
        if (found)
            return 1;
        usleep(100000);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Rectification */

struct rect_seen {
    size_t n;
    struct dossier_rectification r[4];
};

static int rect_cb(void *arg, const struct dossier_export_item *it)
{
    struct rect_seen *x = arg;
    if (it->kind == DOSSIER_EXPORT_RECTIFICATION && x->n < 4)
        x->r[x->n++] = *it->rectification;
    if (it->kind == DOSSIER_EXPORT_FOOTER &&
        it->footer->rectifications != x->n)
        return 1;
    return 0;
}

/* Rectifies with one field set to the string @v; the status code. */
static int rectify_one(struct dossier_client *c, const char *subject,
                       const char *kind, const char *id, const char *field,
                       const char *v, const char *reference)
{
    struct dossier_record *set = dossier_record_new(kind, id, subject);
    struct dossier_status st;
    int rc;
    dossier_record_set_string(set, field, v);
    rc = dossier_subject_rectify(c, NULL, subject, kind, id, set, NULL, 0,
                                 reference, NULL, &st);
    dossier_record_free(set);
    return rc ? st.code : 0;
}

/* What a watcher sees of record rc-1 up to revision @until. */
struct rect_feed {
    uint64_t until;
    int changes;   /* of rc-1 */
    int old_email; /* changes still holding the inaccurate address */
};

static int rect_feed_cb(void *arg, const struct dossier_change *ch)
{
    struct rect_feed *f = arg;
    if (ch->record && strcmp(ch->record->kind, "contact") == 0 &&
        strcmp(ch->record->id, "rc-1") == 0) {
        const struct dossier_value *e = dossier_record_field(ch->record,
                                                             "email");
        f->changes++;
        if (e && e->type == DOSSIER_TYPE_STRING &&
            strcmp(e->u.s, "rita@old.example") == 0)
            f->old_email++;
    }
    return ch->revision >= f->until;
}

static void test_rectification(void **state)
{
    struct node_proc n;
    struct dossier_client *svc, *dpo;
    struct dossier_record *r, *got, *set;
    struct dossier_rectify_result res;
    struct dossier_status st;
    struct dossier_page pg;
    struct dossier_value v = {0};
    struct rect_seen x;
    struct dossier_put_result put;
    const char *unset[] = {"lead_score"};
    const char *unset_title[] = {"title"};
    const char *unset_absent[] = {"city"};
    uint64_t version;
    (void)state;

    start_with_auth(&n, NULL);
    svc = client_as(n.addr, tok_service, "operations");
    dpo = client_as(n.addr, tok_dpo, NULL);
    r = dossier_record_new("company", "acme", NULL);
    dossier_record_set_string(r, "name", "Acme");
    assert_int_equal(dossier_put(svc, NULL, r, DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    dossier_record_free(r);
    r = dossier_record_new("contact", "rc-1", "subj-rect");
    dossier_record_set_string(r, "first_name", "Rita");
    dossier_record_set_string(r, "email", "rita@old.example");
    dossier_record_set_int(r, "lead_score", 40);
    dossier_record_add_link(r, "works_at", "company", "acme");
    assert_int_equal(dossier_put(svc, NULL, r, DOSSIER_ANY_VERSION, &put, &st),
                     0);
    dossier_record_free(r);
    version = put.version;
    r = dossier_record_new("contact", "ro-1", "subj-other");
    dossier_record_set_string(r, "first_name", "Otto");
    assert_int_equal(dossier_put(svc, NULL, r, DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    dossier_record_free(r);
    r = dossier_record_new("ticket", "rt-1", "subj-rect");
    dossier_record_set_string(r, "title", "Printer on fire");
    dossier_record_set_string(r, "status", "open");
    assert_int_equal(dossier_put(svc, NULL, r, DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    dossier_record_free(r);

    /* Two fields corrected (one typed: the phone is normalised as a Put
     * would), one removed; the others and the link stay. */
    set = dossier_record_new("contact", "rc-1", "subj-rect");
    dossier_record_set_string(set, "email", "rita@new.example");
    dossier_record_set_string(set, "phone", "+44 20 7946 0018");
    assert_int_equal(dossier_subject_rectify(dpo, NULL, "subj-rect",
                                             "contact", "rc-1", set, unset, 1,
                                             "DSR-21", &res, &st),
                     0);
    dossier_record_free(set);
    assert_true(res.version > version);
    assert_int_equal(res.n_fields, 3);
    assert_int_equal(dossier_get(svc, NULL, "contact", "rc-1", &got, &st), 0);
    assert_string_equal(dossier_record_field(got, "email")->u.s,
                        "rita@new.example");
    assert_string_equal(dossier_record_field(got, "phone")->u.s,
                        "+442079460018");
    assert_string_equal(dossier_record_field(got, "first_name")->u.s, "Rita");
    assert_null(dossier_record_field(got, "lead_score"));
    assert_int_equal(got->n_links, 1);
    assert_string_equal(got->links[0].id, "acme");
    assert_int_equal(got->version, res.version);
    version = got->version;
    dossier_record_free(got);
    /* The blind index follows: the old address finds nothing. */
    v.type = DOSSIER_TYPE_STRING;
    v.u.s = "rita@old.example";
    assert_int_equal(dossier_find(svc, NULL, "contact", "email", &v, NULL, &pg,
                                  &st),
                     0);
    assert_int_equal(pg.n_records, 0);
    dossier_page_release(&pg);
    v.u.s = "RITA@new.example";
    assert_int_equal(dossier_find(svc, NULL, "contact", "email", &v, NULL, &pg,
                                  &st),
                     0);
    assert_int_equal(pg.n_records, 1);
    dossier_page_release(&pg);
    /* The change feed no longer holds the inaccurate values: the
     * record's earlier changes left it, the rectified record is its one
     * change. */
    {
        struct rect_feed f = {.until = res.version};
        struct dossier_watch_options wo = {.start = {.revision = 1}};
        struct dossier_call_options co = {.timeout_ms = 10000};
        assert_int_equal(dossier_watch(svc, &co, &wo, rect_feed_cb, &f, NULL,
                                       &st),
                         0);
        assert_int_equal(f.changes, 1);
        assert_int_equal(f.old_email, 0);
    }

    /* Refused, each naming what is wrong, and nothing changes. */
    assert_int_equal(rectify_one(dpo, "subj-other", "contact", "rc-1",
                                 "first_name", "X", "DSR-22"),
                     DOSSIER_NOT_FOUND); /* not that subject's record */
    assert_int_equal(rectify_one(dpo, "subj-rect", "contact", "rc-9",
                                 "first_name", "X", "DSR-22"),
                     DOSSIER_NOT_FOUND);
    assert_int_equal(rectify_one(dpo, "subj-rect", "contact", "rc-1",
                                 "shoe_size", "44", "DSR-22"),
                     DOSSIER_SCHEMA_VIOLATION);
    set = dossier_record_new("contact", "rc-1", "subj-rect");
    dossier_record_set_string(set, "email", "not an address");
    assert_int_equal(dossier_subject_rectify(dpo, NULL, "subj-rect",
                                             "contact", "rc-1", set, NULL, 0,
                                             "DSR-22", NULL, &st),
                     DOSSIER_SCHEMA_VIOLATION);
    assert_non_null(strstr(st.message, "email"));
    dossier_record_free(set);
    assert_int_equal(dossier_subject_rectify(dpo, NULL, "subj-rect", "ticket",
                                             "rt-1", NULL, unset_title, 1,
                                             "DSR-22", NULL, &st),
                     DOSSIER_SCHEMA_VIOLATION); /* a required field */
    assert_non_null(strstr(st.message, "title"));
    assert_int_equal(dossier_subject_rectify(dpo, NULL, "subj-rect",
                                             "contact", "rc-1", NULL,
                                             unset_absent, 1, "DSR-22", NULL,
                                             &st),
                     DOSSIER_FAILED_PRECONDITION);
    assert_int_equal(dossier_subject_rectify(dpo, NULL, "subj-rect",
                                             "contact", "rc-1", NULL, NULL, 0,
                                             "DSR-22", NULL, &st),
                     DOSSIER_INVALID_ARGUMENT); /* nothing to change */
    assert_int_equal(rectify_one(dpo, "subj-rect", "contact", "rc-1",
                                 "first_name", "X", NULL),
                     DOSSIER_INVALID_ARGUMENT); /* no reference */
    assert_int_equal(rectify_one(dpo, "subj-rect", "contact", "rc-1",
                                 "first_name", "X", "not a label"),
                     DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(rectify_one(svc, "subj-rect", "contact", "rc-1",
                                 "first_name", "X", "DSR-22"),
                     DOSSIER_PERMISSION_DENIED); /* compliance only */
    assert_int_equal(dossier_get(svc, NULL, "contact", "rc-1", &got, &st), 0);
    assert_int_equal(got->version, version);
    assert_string_equal(dossier_record_field(got, "first_name")->u.s, "Rita");
    dossier_record_free(got);

    /* Audited as subjects.rectify with its reference; refusals too. */
    assert_true(wait_entry(dpo, "dpo", "subjects.rectify", 0, "DSR-21"));
    assert_true(wait_entry(dpo, "dpo", "subjects.rectify",
                           DOSSIER_SCHEMA_VIOLATION, NULL));
    assert_true(wait_entry(dpo, "crm", "subjects.rectify",
                           DOSSIER_PERMISSION_DENIED, NULL));

    /* The subject's export lists it: record, fields, who, why; the other
     * subject's export has none. */
    memset(&x, 0, sizeof(x));
    assert_int_equal(dossier_subject_export(dpo, NULL, "subj-rect", rect_cb,
                                            &x, &st),
                     0);
    assert_int_equal(x.n, 1);
    assert_string_equal(x.r[0].kind, "contact");
    assert_string_equal(x.r[0].id, "rc-1");
    assert_string_equal(x.r[0].fields, "email,phone,lead_score");
    assert_string_equal(x.r[0].principal, "dpo");
    assert_string_equal(x.r[0].reference, "DSR-21");
    assert_int_equal(x.r[0].revision, version);
    memset(&x, 0, sizeof(x));
    assert_int_equal(dossier_subject_export(dpo, NULL, "subj-other", rect_cb,
                                            &x, &st),
                     0);
    assert_int_equal(x.n, 0);

    /* The history goes with the subject when it is erased. */
    {
        struct dossier_erasure_certificate cert;
        assert_int_equal(dossier_subject_erase(dpo, NULL, "subj-rect",
                                               "DSR-23", &cert, &st),
                         0);
    }
    memset(&x, 0, sizeof(x));
    assert_int_equal(dossier_subject_export(dpo, NULL, "subj-rect", rect_cb,
                                            &x, &st),
                     0);
    assert_int_equal(x.n, 0);

    dossier_client_close(svc);
    dossier_client_close(dpo);
    node_destroy(&n);
    harness_token = NULL;
}

/* ------------------------------------------------------------------ */
/* Retention of whole records */

struct feed_seen {
    int expired_v1, put_v1, expired_kept;
    int put_log, expired_log; /* of l-1, a record without a subject */
};

static int feed_cb(void *arg, const struct dossier_change *ch)
{
    struct feed_seen *f = arg;
    const char *id = ch->record ? ch->record->id : "";
    if (ch->type == DOSSIER_CHANGE_PROGRESS)
        return 1; /* caught up */
    if (ch->type == DOSSIER_CHANGE_EXPIRE && ch->record_expired &&
        strcmp(id, "v-1") == 0 && ch->record->n_fields == 0)
        f->expired_v1++;
    if (ch->type == DOSSIER_CHANGE_PUT && strcmp(id, "v-1") == 0)
        f->put_v1++;
    if (ch->type == DOSSIER_CHANGE_EXPIRE && strcmp(id, "k-1") == 0)
        f->expired_kept++;
    if (ch->type == DOSSIER_CHANGE_PUT && strcmp(id, "l-1") == 0)
        f->put_log++;
    if (ch->type == DOSSIER_CHANGE_EXPIRE && ch->record_expired &&
        strcmp(id, "l-1") == 0 && ch->record->n_fields == 0)
        f->expired_log++;
    return 0;
}

/* A kind with a record retention of its own: the leader's sweeper (its
 * clock 45 days ahead) deletes a record of a 30-day kind whole, with its
 * index rows, its links both ways and its subject membership, puts the
 * expiry on the change feed (and takes the record's earlier changes out
 * of it) and audits the sweep; a record of a 60-day kind stays. */
static void test_record_retention(void **state)
{
    const char *more[] = {"--enable-fault-injection", "--retention-sweep-ms",
                          "200", "--retention-clock-offset-days", "45", NULL};
    struct dossier_field_schema fields[] = {
        {"email", DOSSIER_FIELD_EMAIL, DOSSIER_CATEGORY_CONTACT, 1, 0, 0, 0,
         NULL, NULL},
        {"note", DOSSIER_FIELD_STRING, DOSSIER_CATEGORY_OPERATIONAL, 0, 0, 0,
         0, NULL, NULL}};
    struct dossier_kind_schema visit = {
        "visit", 1, 0, 0, "kept 30 days", 2, fields, 30,
        DOSSIER_RETENTION_SINCE_UPDATE};
    struct dossier_kind_schema kept = {
        "visit_kept", 1, 0, 0, "kept 60 days", 2, fields, 60,
        DOSSIER_RETENTION_SINCE_CREATION};
    struct dossier_kind_schema log_kind = {
        "visit_log", 0, 0, 0, "no subject, kept 30 days", 2, fields, 30,
        DOSSIER_RETENTION_SINCE_UPDATE};
    struct dossier_kind_schema *got_kind;
    struct dossier_client *admin, *svc, *dpo;
    struct dossier_record *r, *got = NULL;
    struct dossier_subject_status ss;
    struct dossier_watch_options wo;
    struct dossier_link_page lp;
    struct dossier_status st;
    struct dossier_page pg;
    struct dossier_value email = {0};
    struct feed_seen feed = {0};
    struct node_proc n;
    int code = 0;
    (void)state;

    start_with_auth(&n, more);
    admin = client_as(n.addr, tok_admin, NULL);
    svc = client_as(n.addr, tok_service, "operations");
    dpo = client_as(n.addr, tok_dpo, NULL);
    assert_int_equal(dossier_schema_define(admin, NULL, &visit, &got_kind,
                                           &st),
                     0);
    assert_int_equal(got_kind->record_retention_days, 30);
    assert_int_equal(got_kind->record_retention_base,
                     DOSSIER_RETENTION_SINCE_UPDATE);
    dossier_kind_schema_free(got_kind);
    assert_int_equal(dossier_schema_define(admin, NULL, &kept, NULL, &st), 0);
    assert_int_equal(dossier_schema_define(admin, NULL, &log_kind, NULL, &st),
                     0);
    assert_int_equal(dossier_schema_get(admin, NULL, "visit_kept", &got_kind,
                                        &st),
                     0);
    assert_int_equal(got_kind->record_retention_days, 60);
    assert_int_equal(got_kind->record_retention_base,
                     DOSSIER_RETENTION_SINCE_CREATION);
    dossier_kind_schema_free(got_kind);

    r = dossier_record_new("company", "acme", NULL);
    dossier_record_set_string(r, "name", "Acme");
    assert_int_equal(dossier_put(svc, NULL, r, DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    dossier_record_free(r);
    /* The deal first: the sweeper may delete v-1 as soon as it is
     * written, and a link to a record that does not exist (yet) is
     * kept. */
    r = dossier_record_new("deal", "d-1", NULL);
    dossier_record_set_string(r, "name", "Deal");
    dossier_record_set_string(r, "stage", "qualified");
    dossier_record_add_link(r, "involves", "visit", "v-1");
    dossier_record_add_link(r, "for", "company", "acme");
    assert_int_equal(dossier_put(svc, NULL, r, DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    dossier_record_free(r);
    r = dossier_record_new("visit", "v-1", "subj-ret");
    dossier_record_set_string(r, "email", "gone@example.org");
    dossier_record_set_string(r, "note", "expires");
    dossier_record_add_link(r, "at", "company", "acme");
    assert_int_equal(dossier_put(svc, NULL, r, DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    dossier_record_free(r);
    r = dossier_record_new("visit_log", "l-1", NULL);
    dossier_record_set_string(r, "note", "expires without a subject");
    assert_int_equal(dossier_put(svc, NULL, r, DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    dossier_record_free(r);
    r = dossier_record_new("visit_kept", "k-1", "subj-ret");
    dossier_record_set_string(r, "note", "stays");
    assert_int_equal(dossier_put(svc, NULL, r, DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    dossier_record_free(r);

    /* The sweeper deletes v-1 whole. */
    for (int t = 0; t < 100; t++) {
        code = dossier_get(svc, NULL, "visit", "v-1", &got, &st) ? st.code : 0;
        dossier_record_free(got);
        got = NULL;
        if (code == DOSSIER_NOT_FOUND)
            break;
        usleep(100000);
    }
    assert_int_equal(code, DOSSIER_NOT_FOUND);
    for (int t = 0; t < 100; t++) { /* l-1 too, maybe a sweep later */
        code = dossier_get(svc, NULL, "visit_log", "l-1", &got, &st) ? st.code
                                                                     : 0;
        dossier_record_free(got);
        got = NULL;
        if (code == DOSSIER_NOT_FOUND)
            break;
        usleep(100000);
    }
    assert_int_equal(code, DOSSIER_NOT_FOUND);
    /* The 60-day record stays, whole. */
    assert_int_equal(dossier_get(svc, NULL, "visit_kept", "k-1", &got, &st),
                     0);
    assert_string_equal(dossier_record_field(got, "note")->u.s, "stays");
    dossier_record_free(got);
    /* Its index rows went: the address finds nothing. */
    email.type = DOSSIER_TYPE_STRING;
    email.u.s = "gone@example.org";
    assert_int_equal(dossier_find(svc, NULL, "visit", "email", &email, NULL,
                                  &pg, &st),
                     0);
    assert_int_equal(pg.n_records, 0);
    dossier_page_release(&pg);
    /* The link to it went from the deal, the deal's other link stays. */
    assert_int_equal(dossier_get(svc, NULL, "deal", "d-1", &got, &st), 0);
    assert_int_equal(got->n_links, 1);
    assert_string_equal(got->links[0].label, "for");
    dossier_record_free(got);
    /* Its subject has one record left. */
    assert_int_equal(dossier_subject_status(dpo, NULL, "subj-ret", NULL, &ss,
                                            &st),
                     0);
    assert_int_equal(ss.records, 1);
    /* The change feed has the expiry, naming the record but no field, and
     * none of its earlier changes; the audit log has the sweep. */
    memset(&wo, 0, sizeof(wo));
    wo.start.revision = 1;
    assert_int_equal(dossier_watch(svc, NULL, &wo, feed_cb, &feed, NULL, &st),
                     0);
    assert_int_equal(feed.expired_v1, 1);
    assert_int_equal(feed.put_v1, 0);
    assert_int_equal(feed.expired_kept, 0);
    /* The same for a record without a subject. */
    assert_int_equal(feed.expired_log, 1);
    assert_int_equal(feed.put_log, 0);
    assert_true(wait_entry(dpo, "dossierd-retention",
                           "retention.expire_records", 0, NULL));

    /* Its own link went both ways: made again without links, v-1 is not
     * listed as linking to acme (a mirror row left behind would be). The
     * new v-1 is past its retention too: the sweeper may delete it any
     * time now. */
    r = dossier_record_new("visit", "v-1", "subj-ret");
    dossier_record_set_string(r, "note", "new");
    assert_int_equal(dossier_put(svc, NULL, r, DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    dossier_record_free(r);
    assert_int_equal(dossier_list_links(svc, NULL, "company", "acme",
                                        DOSSIER_LINKS_INCOMING, NULL, NULL,
                                        &lp, &st),
                     0);
    for (size_t i = 0; i < lp.n_links; i++)
        assert_string_not_equal(lp.links[i].record->id, "v-1");
    assert_int_equal(lp.n_links, 1); /* the deal */
    dossier_link_page_release(&lp);

    /* A base that is neither is refused. */
    visit.kind = "visit_bad";
    visit.record_retention_base = (enum dossier_retention_base)7;
    assert_int_equal(dossier_schema_define(admin, NULL, &visit, NULL, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "record_retention_base"));

    dossier_client_close(admin);
    dossier_client_close(svc);
    dossier_client_close(dpo);
    node_destroy(&n);
    harness_token = NULL;
}

/* Waits (up to 10 s) until record (@kind, @id) is gone for @c; its code. */
static int wait_gone(struct dossier_client *c, const char *kind,
                     const char *id)
{
    struct dossier_record *got = NULL;
    struct dossier_status st;
    int code = 0;
    for (int t = 0; t < 100; t++) {
        code = dossier_get(c, NULL, kind, id, &got, &st) ? st.code : 0;
        dossier_record_free(got);
        got = NULL;
        if (code == DOSSIER_NOT_FOUND)
            break;
        usleep(100000);
    }
    return code;
}

/* 1 when record (@kind, @id) read by @c has field @field. */
static int has_field(struct dossier_client *c, const char *kind,
                     const char *id, const char *field)
{
    struct dossier_record *got = NULL;
    struct dossier_status st;
    int has;
    if (dossier_get(c, NULL, kind, id, &got, &st) != 0)
        fail_msg("get %s %s: %s", kind, id, st.message);
    has = dossier_record_field(got, field) != NULL;
    dossier_record_free(got);
    return has;
}

/* Retention waits while a subject is restricted (GDPR Art. 18: storage
 * only, e.g. kept for a legal claim): the sweeper, 45 days ahead, deletes
 * another subject's 30-day record and drops its 30-day field, while the
 * restricted subject keeps both, readable for legal_claims. Once the
 * restriction is lifted, the next sweeps catch up with it. */
static void test_retention_waits_for_a_restriction(void **state)
{
    const char *more[] = {"--enable-fault-injection", "--retention-sweep-ms",
                          "200", "--retention-clock-offset-days", "45", NULL};
    struct dossier_field_schema fields[] = {
        {"note", DOSSIER_FIELD_STRING, DOSSIER_CATEGORY_OPERATIONAL, 0, 0, 0,
         0, NULL, NULL},
        {"phone_note", DOSSIER_FIELD_STRING, DOSSIER_CATEGORY_CONTACT, 0, 0,
         30, 0, NULL, NULL}};
    struct dossier_kind_schema visit = {
        "claim_visit", 1, 0, 0, "kept 30 days", 1, fields, 30,
        DOSSIER_RETENTION_SINCE_UPDATE};
    struct dossier_kind_schema note = {
        "claim_note", 1, 0, 0, "a field kept 30 days", 2, fields, 0,
        DOSSIER_RETENTION_SINCE_UPDATE};
    struct dossier_client *admin, *svc, *legal, *dpo;
    struct dossier_subject_status ss;
    struct dossier_status st;
    struct dossier_record *r;
    struct node_proc n;
    const char *subj[2] = {"subj-claim", "subj-free"};
    int dropped = 0;
    (void)state;

    start_with_auth(&n, more);
    admin = client_as(n.addr, tok_admin, NULL);
    svc = client_as(n.addr, tok_service, "operations");
    legal = client_as(n.addr, tok_service, "legal_claims");
    dpo = client_as(n.addr, tok_dpo, NULL);
    assert_int_equal(dossier_schema_define(admin, NULL, &visit, NULL, &st), 0);
    assert_int_equal(dossier_schema_define(admin, NULL, &note, NULL, &st), 0);
    /* Restricted before its records exist, so no sweep comes first. */
    assert_int_equal(dossier_subject_restrict(dpo, NULL, subj[0], "REQ-90",
                                              &ss, &st),
                     0);
    assert_true(ss.restricted);
    for (int i = 0; i < 2; i++) {
        r = dossier_record_new("claim_visit", i ? "cv-free" : "cv-claim",
                               subj[i]);
        dossier_record_set_string(r, "note", "visit");
        assert_int_equal(dossier_put(i ? svc : legal, NULL, r,
                                     DOSSIER_ANY_VERSION, NULL, &st),
                         0);
        dossier_record_free(r);
        r = dossier_record_new("claim_note", i ? "cn-free" : "cn-claim",
                               subj[i]);
        dossier_record_set_string(r, "note", "stays");
        dossier_record_set_string(r, "phone_note", "call after six");
        assert_int_equal(dossier_put(i ? svc : legal, NULL, r,
                                     DOSSIER_ANY_VERSION, NULL, &st),
                         0);
        dossier_record_free(r);
    }
    /* The free subject's record goes whole, its 30-day field goes... */
    assert_int_equal(wait_gone(svc, "claim_visit", "cv-free"),
                     DOSSIER_NOT_FOUND);
    for (int t = 0; t < 100 && !dropped; t++) {
        dropped = !has_field(svc, "claim_note", "cn-free", "phone_note");
        if (!dropped)
            usleep(100000);
    }
    assert_true(dropped);
    /* ... and the restricted subject's stay, through more sweeps. */
    usleep(600000);
    assert_int_equal(dossier_subject_status(dpo, NULL, subj[0], NULL, &ss,
                                            &st),
                     0);
    assert_int_equal(ss.records, 2);
    assert_true(has_field(legal, "claim_note", "cn-claim", "phone_note"));
    assert_true(has_field(legal, "claim_visit", "cv-claim", "note"));

    /* Lifted: retention catches up. */
    assert_int_equal(dossier_subject_unrestrict(dpo, NULL, subj[0], "REQ-90",
                                                &ss, &st),
                     0);
    assert_int_equal(wait_gone(svc, "claim_visit", "cv-claim"),
                     DOSSIER_NOT_FOUND);
    dropped = 0;
    for (int t = 0; t < 100 && !dropped; t++) {
        dropped = !has_field(svc, "claim_note", "cn-claim", "phone_note");
        if (!dropped)
            usleep(100000);
    }
    assert_true(dropped);
    assert_true(has_field(svc, "claim_note", "cn-claim", "note"));

    dossier_client_close(admin);
    dossier_client_close(svc);
    dossier_client_close(legal);
    dossier_client_close(dpo);
    node_destroy(&n);
    harness_token = NULL;
}

/* ------------------------------------------------------------------ */
/* Erasure completion reported by every node */

static int has_node(const struct dossier_erasure_certificate *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_nodes; i++)
        if (c->nodes[i] == id)
            return 1;
    return 0;
}

/* On a 3-node cluster every node reports when it finished an erasure, and
 * the certificate, signed over the list, names all three. With a follower
 * stopped, the next erasure's certificate names two and the stopped one as
 * pending; once it restarts and catches up (by a snapshot: the log was
 * compacted past the erasure) it reports too, and the certificate issued
 * again names all three. The signature covers the list: a certificate
 * with a node added does not verify. The CLI shows and checks the same. */
static void test_erasure_completion_reports(void **state)
{
    struct cluster_proc c;
    struct dossier_client *cl;
    struct dossier_erasure_certificate cert, forged, *ledger;
    struct dossier_status st;
    struct dossier_record *r;
    char out[4096], *token = NULL;
    size_t n;
    int leader, f, found = 0;
    uint64_t stopped;
    (void)state;

    harness_token = NULL;
    cluster_init(&c, 3, NULL);
    assert_int_equal(cluster_start_all(&c), 0);
    leader = cluster_leader(&c);
    assert_true(leader >= 0);
    cl = harness_client(c.targets, 30000);
    for (int i = 0; i < 2; i++) {
        r = dossier_record_new("contact", i ? "done-b" : "done-a",
                               i ? "subj-done-b" : "subj-done-a");
        dossier_record_set_string(r, "first_name", "Dora");
        assert_int_equal(dossier_put(cl, NULL, r, DOSSIER_ANY_VERSION, NULL,
                                     &st),
                         0);
        dossier_record_free(r);
    }
    assert_int_equal(cluster_wait_converged(&c), 0);

    /* Every node up: all three report, within the wait. */
    assert_int_equal(dossier_subject_erase_wait(cl, NULL, "subj-done-a",
                                                "DSR-31", 20000, &cert, &st),
                     0);
    assert_int_equal(cert.version, 2);
    assert_int_equal(cert.n_nodes, 3);
    for (uint64_t id = 1; id <= 3; id++)
        assert_true(has_node(&cert, id));
    assert_int_equal(cert.n_pending, 0);
    assert_int_equal(dossier_erasure_certificate_verify(&cert, NULL, &st), 0);

    /* A follower is down during the next erasure. */
    f = (leader + 1) % 3;
    stopped = (uint64_t)f + 1;
    assert_int_equal(node_stop(&c.nodes[f]), 0);
    assert_int_equal(dossier_subject_erase_wait(cl, NULL, "subj-done-b",
                                                "DSR-32", 2000, &cert, &st),
                     0);
    /* The wait ended at its timeout (a node is down); on a busy machine
     * the running follower may report after it. */
    for (int t = 0; t < 300 && cert.n_nodes < 2; t++) {
        usleep(100000);
        assert_int_equal(dossier_subject_certificate(cl, NULL, "subj-done-b",
                                                     &cert, &st),
                         0);
    }
    assert_int_equal(cert.n_nodes, 2);
    assert_false(has_node(&cert, stopped));
    assert_int_equal(cert.n_pending, 1);
    assert_int_equal(cert.pending[0], stopped);
    assert_int_equal(dossier_erasure_certificate_verify(&cert, NULL, &st), 0);
    /* The list is signed: claiming the stopped node finished fails. */
    forged = cert;
    forged.n_nodes = 0;
    for (uint64_t id = 1; id <= 3; id++)
        forged.nodes[forged.n_nodes++] = id;
    assert_int_equal(dossier_erasure_certificate_verify(&forged, NULL, &st),
                     DOSSIER_CORRUPT);
    /* The CLI names the pending node, and the signature verifies. */
    assert_int_equal(harness_sh(out, sizeof(out),
                                "%s --target %s subject certificate "
                                "subj-done-b 2>/dev/null | /usr/bin/python3 "
                                "-c 'import json, sys; d = json.load("
                                "sys.stdin); print(len(d[\"nodes\"]), "
                                "d[\"pending_nodes\"])'",
                                DOSSIER_CLI_PATH, c.targets),
                     0);
    snprintf(st.message, sizeof(st.message), "2 [%llu]\n",
             (unsigned long long)stopped);
    assert_string_equal(out, st.message);

    /* Back: it catches up, finishes the erasure and reports it. */
    assert_int_equal(node_start(&c.nodes[f], NULL), 0);
    for (int t = 0; t < 300; t++) {
        assert_int_equal(dossier_subject_certificate(cl, NULL, "subj-done-b",
                                                     &cert, &st),
                         0);
        if (cert.n_nodes == 3)
            break;
        usleep(100000);
    }
    assert_int_equal(cert.n_nodes, 3);
    assert_true(has_node(&cert, stopped));
    assert_int_equal(cert.n_pending, 0);
    assert_int_equal(cert.raft_index, forged.raft_index);
    assert_int_equal(dossier_erasure_certificate_verify(&cert, NULL, &st), 0);
    assert_int_equal(harness_sh(out, sizeof(out),
                                "%s --target %s subject certificate "
                                "subj-done-b 2>/dev/null | /usr/bin/python3 "
                                "-c 'import json, sys; d = json.load("
                                "sys.stdin); print(d[\"nodes\"], "
                                "d[\"pending_nodes\"], d[\"version\"])'",
                                DOSSIER_CLI_PATH, c.targets),
                     0);
    assert_string_equal(out, "[1, 2, 3] [] 2\n");
    assert_int_equal(harness_sh(NULL, 0,
                                "%s --target %s subject certificate "
                                "subj-never-erased >/dev/null 2>&1",
                                DOSSIER_CLI_PATH, c.targets),
                     3);

    /* The ledger holds the same: each row certified over its nodes. */
    assert_int_equal(dossier_erasure_ledger(cl, NULL, NULL, &ledger, &n,
                                            &token, &st),
                     0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(dossier_erasure_certificate_verify(&ledger[i], NULL,
                                                            &st),
                         0);
        found += ledger[i].n_nodes == 3;
    }
    assert_int_equal(found, 2);
    free(ledger);
    free(token);
    dossier_client_close(cl);
    cluster_destroy(&c);
}

/* ------------------------------------------------------------------ */
/* Verifying the audit log against a checkpoint kept outside the cluster */

/* Families by their place in disk_families. */
#define CF_DEFAULT 0
#define CF_AUDIT 10

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* What someone holding a stopped node's files and the master key can do:
 * cut the audit log after entry @keep, entries and checkpoints alike,
 * and set the chain's head to match, so that the rest still verifies. */
static void cut_audit_log(const char *data, uint64_t keep)
{
    rocksdb_column_family_handle_t *cf[DISK_N_FAMILIES];
    rocksdb_t *db = disk_db_open(data, 0, cf);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_iterator_t *it;
    uint8_t head[8 + 32 + 8 + 8], key[9];
    uint64_t signed_index = 0, signed_ms = 0;
    char *err = NULL, *v;
    size_t vlen;

    /* Entry @keep's stored hash becomes the head's. */
    key[0] = 'e';
    put_be64(key + 1, keep);
    v = rocksdb_get_cf(db, ro, cf[CF_AUDIT], (const char *)key, sizeof(key),
                       &vlen, &err);
    assert_null(err);
    assert_non_null(v);
    assert_true(vlen >= 32);
    put_be64(head, keep);
    memcpy(head + 8, v, 32);
    rocksdb_free(v);
    /* Every entry and checkpoint after it goes; the last checkpoint at or
     * before it is the head's signed one. */
    it = rocksdb_create_iterator_cf(db, ro, cf[CF_AUDIT]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl != 9)
            continue;
        if (be64(k + 1) > keep) {
            rocksdb_delete_cf(db, wo, cf[CF_AUDIT], (const char *)k, kl,
                              &err);
            assert_null(err);
        } else if (k[0] == 'c' && vl == 113) {
            signed_index = be64(k + 1);
            signed_ms = be64(val + 41);
        }
    }
    rocksdb_iter_destroy(it);
    put_be64(head + 40, signed_index);
    put_be64(head + 48, signed_ms);
    rocksdb_put_cf(db, wo, cf[CF_DEFAULT], "audit_head", 10,
                   (const char *)head, sizeof(head), &err);
    assert_null(err);
    rocksdb_readoptions_destroy(ro);
    rocksdb_writeoptions_destroy(wo);
    disk_db_close(db, cf);
}

/* Waits until every entry of the log is signed; the last index. */
static uint64_t wait_signed(struct dossier_client *dpo, uint64_t at_least)
{
    uint8_t pk[32];
    uint64_t last = 0, signed_index = 0;
    struct dossier_status st;
    for (int t = 0; t < 200; t++) {
        assert_int_equal(dossier_audit_public_key(dpo, NULL, pk, &last,
                                                  &signed_index, &st),
                         0);
        if (last >= at_least && signed_index == last)
            break;
        usleep(50000);
    }
    assert_true(signed_index >= at_least);
    return signed_index;
}

/* A checkpoint saved outside the cluster catches what the log alone
 * cannot: the end of the log cut off together with its checkpoints (and
 * the head made to match) verifies with the public key alone, but not
 * against the kept checkpoint, which says the log was cut off; once the
 * log grows past the kept entry again, it says the entry was rewritten.
 * An untouched log passes; a kept checkpoint that is not the key's is
 * refused. The same through the CLI. */
static void test_kept_checkpoint_catches_a_cut_log(void **state)
{
    const char *more[] = {"--audit-window-ms", "50",
                          "--audit-checkpoint-entries", "4",
                          "--audit-checkpoint-ms", "200", NULL};
    struct node_proc n;
    struct dossier_client *svc, *dpo;
    struct dossier_audit_checkpoint kept, forged;
    struct dossier_audit_report rep;
    struct dossier_status st;
    char id[32], out[4096];
    uint8_t pk[32];
    uint64_t last, signed_index;
    (void)state;

    start_with_auth(&n, more);
    svc = client_as(n.addr, tok_service, "operations");
    dpo = client_as(n.addr, tok_dpo, NULL);
    for (int i = 0; i < 60; i++) {
        struct dossier_record *r;
        snprintf(id, sizeof(id), "cp-%d", i);
        r = dossier_record_new("company", id, NULL);
        dossier_record_set_string(r, "name", "Kept Ltd");
        assert_int_equal(dossier_put(svc, NULL, r, DOSSIER_ANY_VERSION, NULL,
                                     &st),
                         0);
        dossier_record_free(r);
    }
    wait_signed(dpo, 60);
    assert_int_equal(dossier_audit_public_key(dpo, NULL, pk, &last,
                                              &signed_index, &st),
                     0);
    /* Kept outside: through the library, and the CLI into cp.json. */
    assert_int_equal(dossier_audit_checkpoint_latest(dpo, NULL, pk, &kept,
                                                     &st),
                     0);
    assert_true(kept.index >= 60);
    assert_int_equal(harness_sh(NULL, 0,
                                "cd %s && DOSSIER_TOKEN=%s %s --target %s "
                                "audit public-key >audit.pub 2>/dev/null && "
                                "DOSSIER_TOKEN=%s %s --target %s audit "
                                "checkpoint --public-key-file audit.pub "
                                ">cp.json 2>/dev/null",
                                n.dir, tok_dpo, DOSSIER_CLI_PATH, n.addr,
                                tok_dpo, DOSSIER_CLI_PATH, n.addr),
                     0);

    /* Untouched: it passes, with the kept one too. */
    assert_int_equal(dossier_audit_verify_kept(dpo, NULL, pk, &kept, &rep,
                                               &st),
                     0);
    assert_int_equal(harness_sh(out, sizeof(out),
                                "cd %s && DOSSIER_TOKEN=%s %s --target %s "
                                "audit verify --public-key-file audit.pub "
                                "--checkpoint cp.json 2>&1",
                                n.dir, tok_dpo, DOSSIER_CLI_PATH, n.addr),
                     0);
    assert_non_null(strstr(out, "as the kept checkpoint signed it"));
    /* A kept checkpoint that is not what the key signed is refused. */
    forged = kept;
    forged.hash[0] ^= 1;
    assert_int_equal(dossier_audit_verify_kept(dpo, NULL, pk, &forged, &rep,
                                               &st),
                     DOSSIER_CORRUPT);
    assert_non_null(strstr(rep.message, "not signed by this public key"));

    /* The node stopped, its log cut 40 entries before the kept one. */
    dossier_client_close(svc);
    dossier_client_close(dpo);
    assert_int_equal(node_stop(&n), 0);
    cut_audit_log(n.data, kept.index - 40);
    assert_int_equal(node_start(&n, NULL), 0);
    svc = client_as(n.addr, tok_service, "operations");
    dpo = client_as(n.addr, tok_dpo, NULL);

    /* The public key alone sees nothing wrong ... */
    assert_int_equal(dossier_audit_verify(dpo, NULL, pk, &rep, &st), 0);
    assert_true(rep.entries < kept.index);
    /* ... the kept checkpoint does, and says what happened. */
    assert_int_equal(dossier_audit_verify_kept(dpo, NULL, pk, &kept, &rep,
                                               &st),
                     DOSSIER_CORRUPT);
    assert_non_null(strstr(rep.message, "cut off"));
    assert_true(rep.bad_index > kept.index - 40 && rep.bad_index <= kept.index);
    assert_int_equal(harness_sh(out, sizeof(out),
                                "cd %s && DOSSIER_TOKEN=%s %s --target %s "
                                "audit verify --public-key-file audit.pub "
                                "--checkpoint cp.json 2>&1",
                                n.dir, tok_dpo, DOSSIER_CLI_PATH, n.addr),
                     1);
    assert_non_null(strstr(out, "cut off"));

    /* New entries fill the gap past the kept index: the entry there is
     * not the one that was signed. */
    for (int i = 0; i < 60; i++) {
        struct dossier_record *r;
        snprintf(id, sizeof(id), "cq-%d", i);
        r = dossier_record_new("company", id, NULL);
        dossier_record_set_string(r, "name", "Later Ltd");
        assert_int_equal(dossier_put(svc, NULL, r, DOSSIER_ANY_VERSION, NULL,
                                     &st),
                         0);
        dossier_record_free(r);
    }
    wait_signed(dpo, kept.index + 1);
    assert_int_equal(dossier_audit_verify(dpo, NULL, pk, &rep, &st), 0);
    assert_int_equal(dossier_audit_verify_kept(dpo, NULL, pk, &kept, &rep,
                                               &st),
                     DOSSIER_CORRUPT);
    assert_non_null(strstr(rep.message, "rewritten"));
    assert_int_equal(rep.bad_index, kept.index);

    dossier_client_close(svc);
    dossier_client_close(dpo);
    node_destroy(&n);
    harness_token = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rectification),
        cmocka_unit_test(test_record_retention),
        cmocka_unit_test(test_retention_waits_for_a_restriction),
        cmocka_unit_test(test_erasure_completion_reports),
        cmocka_unit_test(test_kept_checkpoint_catches_a_cut_log),
    };
    int rc;
    if (sodium_init() < 0)
        return 1;
    harness_new_token(tok_admin);
    harness_new_token(tok_service);
    harness_new_token(tok_dpo);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (harness_running() != 0) {
        fprintf(stderr, "a test left a process running\n");
        return 1;
    }
    return rc;
}
