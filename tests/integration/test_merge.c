/* Merges of duplicates against real nodes, through libdossier:
 *  - a merge folds a duplicate contact into a survivor: fields by the
 *    conflict rule (tags: the union), the duplicate's links, the links of
 *    other records to it (an activity, a deal, another contact) now on the
 *    survivor, the duplicate subject's activity now the survivor
 *    subject's, consent the most restrictive per purpose with both
 *    histories kept; audited, listed while pending;
 *  - the newest rule and per-field choices; bad merges refused, each
 *    named;
 *  - an undo restores every record, link and consent row exactly; an undo
 *    is refused once a merged record changed; a confirmed merge cannot be
 *    undone, and erasing the merged-away subject erases the person;
 *  - on a 3-node cluster, a merge pending undo followed by an erasure of
 *    the survivor's subject leaves no sealed fragment of either record,
 *    before or after the merge, in any file of any node;
 *  - finding the duplicates to merge fails cleanly on a record that does
 *    not open, releasing what it had opened. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "disk_scan.h"
#include "harness.h"
#include "store.pb-c.h"

/* ------------------------------------------------------------------ */
/* The scenario: a survivor contact of subject p-a, a duplicate of subject
 * p-b that works at acme, an activity of p-b logged on the duplicate, a
 * deal and another subject's contact linking to it, and consent that
 * differs between p-a and p-b. */

static void put_or_fail(struct dossier_client *c, struct dossier_record *r)
{
    struct dossier_status st;
    if (dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) != 0)
        fail_msg("put %s %s: %s", r->kind, r->id, st.message);
    dossier_record_free(r);
}

static void contact(struct dossier_client *c, const char *id,
                    const char *subject, const char *first_name,
                    const char *email, const char *phone, const char *city,
                    const char *tags)
{
    struct dossier_record *r = dossier_record_new("contact", id, subject);
    dossier_record_set_string(r, "first_name", first_name);
    if (email)
        dossier_record_set_string(r, "email", email);
    if (phone)
        dossier_record_set_string(r, "phone", phone);
    if (city)
        dossier_record_set_string(r, "city", city);
    if (tags)
        dossier_record_set_string(r, "tags", tags);
    put_or_fail(c, r);
}

static void scenario(struct dossier_client *c, const char *marker)
{
    struct dossier_record *r;
    struct dossier_status st;
    char buf[128];

    r = dossier_record_new("company", "acme", NULL);
    dossier_record_set_string(r, "name", "Acme");
    put_or_fail(c, r);
    snprintf(buf, sizeof(buf), "Ann%s", marker);
    r = dossier_record_new("contact", "c-surv", "p-a");
    dossier_record_set_string(r, "first_name", buf);
    dossier_record_set_string(r, "email", "ann@x.example");
    dossier_record_set_string(r, "job_title", "CTO");
    dossier_record_set_string(r, "tags", "vip");
    dossier_record_set_string(r, "accessibility_needs", buf);
    put_or_fail(c, r);
    snprintf(buf, sizeof(buf), "Leeds%s", marker);
    r = dossier_record_new("contact", "c-dup", "p-b");
    dossier_record_set_string(r, "first_name", "Anne");
    dossier_record_set_string(r, "email", "ANN@x.example");
    dossier_record_set_string(r, "phone", "+44 20 7946 0018");
    dossier_record_set_string(r, "city", buf);
    dossier_record_set_string(r, "tags", "eu");
    dossier_record_add_link(r, "works_at", "company", "acme");
    put_or_fail(c, r);
    snprintf(buf, sizeof(buf), "call%s", marker);
    r = dossier_record_new("activity", "act-1", "p-b");
    dossier_record_set_string(r, "type", "call");
    dossier_record_set_string(r, "title", buf);
    dossier_record_add_link(r, "logged_on", "contact", "c-dup");
    put_or_fail(c, r);
    r = dossier_record_new("deal", "deal-1", NULL);
    dossier_record_set_string(r, "name", "D1");
    dossier_record_set_string(r, "stage", "qualified");
    dossier_record_add_link(r, "involves", "contact", "c-dup");
    put_or_fail(c, r);
    r = dossier_record_new("contact", "c-other", "p-c");
    dossier_record_set_string(r, "first_name", "Otto");
    dossier_record_add_link(r, "knows", "contact", "c-dup");
    put_or_fail(c, r);
    assert_int_equal(dossier_consent_grant(c, NULL, "p-a", "marketing",
                                           "form", "v1", NULL, &st),
                     0);
    assert_int_equal(dossier_consent_withdraw(c, NULL, "p-b", "marketing",
                                              "email", "v2", NULL, &st),
                     0);
    assert_int_equal(dossier_consent_grant(c, NULL, "p-b", "analytics",
                                           "app", "v3", NULL, &st),
                     0);
}

static int merge_dup(struct dossier_client *c, const char *survivor,
                     const char *dup, enum dossier_merge_prefer prefer,
                     struct dossier_merge_info *out,
                     struct dossier_status *st)
{
    const char *dups[] = {dup};
    struct dossier_merge_request req = {.kind = "contact",
                                        .survivor_id = survivor,
                                        .n_duplicates = 1,
                                        .duplicate_ids = dups,
                                        .prefer = prefer,
                                        .reference = "TICKET-9"};
    return dossier_merge(c, NULL, &req, out, st);
}

static const char *str_field(const struct dossier_record *r, const char *f)
{
    const struct dossier_value *v = dossier_record_field(r, f);
    return v && v->type == DOSSIER_TYPE_STRING ? v->u.s : "(none)";
}

/* The one link of @kind @id, as "label kind id", or "" / "many". */
static const char *only_link(struct dossier_client *c, const char *kind,
                             const char *id, char *buf, size_t cap)
{
    struct dossier_record *r;
    struct dossier_status st;
    if (dossier_get(c, NULL, kind, id, &r, &st) != 0)
        fail_msg("get %s %s: %s", kind, id, st.message);
    buf[0] = '\0';
    if (r->n_links == 1)
        snprintf(buf, cap, "%s %s %s", r->links[0].label, r->links[0].kind,
                 r->links[0].id);
    else if (r->n_links > 1)
        snprintf(buf, cap, "many");
    dossier_record_free(r);
    return buf;
}

static const char *consent_of(struct dossier_client *c, const char *subject,
                              const char *purpose, char *buf, size_t cap)
{
    struct dossier_consent_event *e;
    struct dossier_status st;
    size_t n;
    assert_int_equal(dossier_consent_get(c, NULL, subject, purpose, &e, &n,
                                         &st),
                     0);
    if (n == 0)
        snprintf(buf, cap, "none");
    else
        snprintf(buf, cap, "%s/%s",
                 dossier_consent_state_name(e[0].state), e[0].source);
    free(e);
    return buf;
}

static size_t history_len(struct dossier_client *c, const char *subject)
{
    struct dossier_consent_event *e;
    struct dossier_status st;
    size_t n;
    assert_int_equal(
        dossier_consent_history(c, NULL, subject, NULL, &e, &n, &st), 0);
    free(e);
    return n;
}

static int get_code(struct dossier_client *c, const char *kind,
                    const char *id)
{
    struct dossier_record *r = NULL;
    struct dossier_status st;
    int rc = dossier_get(c, NULL, kind, id, &r, &st);
    dossier_record_free(r);
    return rc ? st.code : 0;
}

/* Whether the audit log holds an entry of @action with outcome 0 naming
 * a subject and @records records (-1: any number). */
static int audited_with(struct dossier_client *c, const char *action,
                        int records)
{
    struct dossier_audit_entry *e;
    struct dossier_status st;
    size_t n;
    int found = 0;
    for (int tries = 0; tries < 50 && !found; tries++) {
        assert_int_equal(dossier_audit_read(c, NULL, 1, 10000, &e, &n, &st),
                         0);
        for (size_t i = 0; i < n; i++)
            found |= strcmp(e[i].action, action) == 0 && e[i].outcome == 0 &&
                     e[i].has_subject &&
                     (records < 0 || e[i].n_records == (size_t)records);
        free(e);
        if (!found)
            usleep(100000);
    }
    return found;
}

static int audited(struct dossier_client *c, const char *action)
{
    return audited_with(c, action, -1);
}

/* ------------------------------------------------------------------ */

/* The survivor keeps its values and takes the duplicate's where it has
 * none (tags: both); every link to the duplicate is now on the survivor;
 * the duplicate's subject's activity is the survivor subject's; consent
 * is the most restrictive per purpose, both histories kept. */
static void test_merge_contacts(void **state)
{
    struct node_proc n;
    struct dossier_client *c;
    struct dossier_merge_info mi, *list;
    struct dossier_subject_status ss;
    struct dossier_link_page lp;
    struct dossier_duplicates d;
    struct dossier_status st;
    struct dossier_record *r;
    size_t n_list;
    char buf[256];
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    c = harness_client_as(n.addr, NULL, "operations");
    scenario(c, "");
    assert_int_equal(
        dossier_find_duplicates(c, NULL, "contact", NULL, 0, NULL, &d, &st),
        0);
    assert_int_equal(d.n_groups, 1);
    dossier_duplicates_release(&d);

    assert_int_equal(merge_dup(c, "c-surv", "c-dup",
                               DOSSIER_MERGE_PREFER_SURVIVOR, &mi, &st),
                     0);
    assert_memory_equal(mi.id, "MRG-", 4);
    assert_int_equal(strlen(mi.id), 20);
    assert_string_equal(mi.state, "pending");
    assert_string_equal(mi.survivor_id, "c-surv");
    assert_int_equal(mi.n_duplicates, 1);
    assert_string_equal(mi.duplicate_ids[0], "c-dup");
    assert_int_equal(mi.records_moved, 1); /* act-1 */
    assert_int_equal(mi.links_moved, 2);   /* deal-1, c-other */
    assert_string_equal(mi.reference, "TICKET-9");

    /* Fields: the survivor's, then the duplicate's; tags: both. */
    assert_int_equal(dossier_get(c, NULL, "contact", "c-surv", &r, &st), 0);
    assert_string_equal(str_field(r, "first_name"), "Ann");
    assert_string_equal(str_field(r, "job_title"), "CTO");
    assert_string_equal(str_field(r, "phone"), "+442079460018");
    assert_string_equal(str_field(r, "city"), "Leeds");
    assert_string_equal(str_field(r, "tags"), "eu,vip");
    assert_int_equal(r->version, mi.version);
    assert_int_equal(r->n_links, 1);
    assert_string_equal(r->links[0].label, "works_at");
    assert_string_equal(r->links[0].id, "acme");
    dossier_record_free(r);
    assert_int_equal(get_code(c, "contact", "c-dup"), DOSSIER_NOT_FOUND);

    /* Links to the duplicate are on the survivor, the activity included,
     * which is now the survivor subject's. */
    assert_string_equal(only_link(c, "deal", "deal-1", buf, sizeof(buf)),
                        "involves contact c-surv");
    assert_string_equal(only_link(c, "contact", "c-other", buf, sizeof(buf)),
                        "knows contact c-surv");
    assert_string_equal(only_link(c, "activity", "act-1", buf, sizeof(buf)),
                        "logged_on contact c-surv");
    assert_int_equal(dossier_get(c, NULL, "activity", "act-1", &r, &st), 0);
    assert_string_equal(r->subject_id, "p-a");
    assert_string_equal(str_field(r, "title"), "call");
    dossier_record_free(r);
    assert_int_equal(dossier_list_links(c, NULL, "contact", "c-surv",
                                        DOSSIER_LINKS_INCOMING, NULL, NULL,
                                        &lp, &st),
                     0);
    assert_int_equal(lp.n_links, 3);
    dossier_link_page_release(&lp);
    assert_int_equal(
        dossier_subject_status(c, NULL, "p-b", NULL, &ss, &st), 0);
    assert_true(ss.merged); /* its records are p-a's now */
    assert_int_equal(ss.records, 2);
    assert_int_equal(
        dossier_subject_status(c, NULL, "p-a", NULL, &ss, &st), 0);
    assert_false(ss.merged);
    assert_int_equal(ss.records, 2);

    /* Consent: withdrawn beats granted, granted beats undecided; p-b's
     * history is p-a's too, with the merge's own events. */
    assert_string_equal(consent_of(c, "p-a", "marketing", buf, sizeof(buf)),
                        "withdrawn/merge");
    assert_string_equal(consent_of(c, "p-a", "analytics", buf, sizeof(buf)),
                        "granted/merge");
    assert_int_equal(history_len(c, "p-a"), 1 + 2 + 2);
    /* Read under p-b: the person's, p-a's (no row is left under p-b). */
    assert_int_equal(history_len(c, "p-b"), 1 + 2 + 2);

    /* No longer a duplicate; pending, listed and audited. */
    assert_int_equal(
        dossier_find_duplicates(c, NULL, "contact", NULL, 0, NULL, &d, &st),
        0);
    assert_int_equal(d.n_groups, 0);
    dossier_duplicates_release(&d);
    assert_int_equal(dossier_merge_list(c, NULL, &list, &n_list, &st), 0);
    assert_int_equal(n_list, 1);
    assert_string_equal(list[0].id, mi.id);
    assert_string_equal(list[0].survivor_id, "c-surv");
    assert_int_equal(list[0].n_duplicates, 1);
    assert_string_equal(list[0].duplicate_ids[0], "c-dup");
    dossier_merge_infos_free(list, n_list);
    /* The survivor's subject, the survivor and the duplicate. */
    assert_true(audited_with(c, "records.merge", 2));

    dossier_merge_info_release(&mi);
    dossier_client_close(c);
    node_destroy(&n);
}

static void deal(struct dossier_client *c, const char *id, const char *subject,
                 const char *name, const char *stage, double amount,
                 const char *currency)
{
    struct dossier_record *r = dossier_record_new("deal", id, subject);
    dossier_record_set_string(r, "name", name);
    dossier_record_set_string(r, "stage", stage);
    if (amount > 0)
        dossier_record_set_double(r, "amount", amount);
    if (currency)
        dossier_record_set_string(r, "currency", currency);
    put_or_fail(c, r);
}

/* The newest value wins with prefer newest; a per-field choice takes one
 * record's value, even none. Bad merges are refused, saying why. */
static void test_merge_rules_and_refusals(void **state)
{
    struct node_proc n;
    struct dossier_client *c, *mkt;
    struct dossier_status st;
    struct dossier_record *r;
    const char *m2[] = {"m2"}, *m4[] = {"m4"}, *none[] = {"nope"},
               *self[] = {"m1"}, *twice[] = {"m2", "m2"}, *s2[] = {"d-s2"},
               *s3[] = {"d-s3"}, *r2[] = {"r2"};
    const struct dossier_merge_choice keep_name[] = {{"name", "m1"}};
    const struct dossier_merge_choice from_m4[] = {{"currency", "m4"},
                                                   {"name", "m4"}};
    const struct dossier_merge_choice bad_field[] = {{"colour", "m3"}};
    const struct dossier_merge_choice bad_rec[] = {{"name", "m9"}};
    struct dossier_merge_request req = {.kind = "deal"};
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    c = harness_client_as(n.addr, NULL, "operations");
    mkt = harness_client_as(n.addr, NULL, "marketing");
    deal(c, "m1", NULL, "First", "qualified", 100, "EUR");
    usleep(5000);
    deal(c, "m2", NULL, "Second", "closed_won", 250, NULL);
    deal(c, "m3", NULL, "Third", "qualified", 10, "USD");
    deal(c, "m4", NULL, "Fourth", "qualified", 20, NULL);

    /* Newest, but the name chosen from m1. */
    req.survivor_id = "m1";
    req.n_duplicates = 1;
    req.duplicate_ids = m2;
    req.prefer = DOSSIER_MERGE_PREFER_NEWEST;
    req.n_choices = 1;
    req.choices = keep_name;
    assert_int_equal(dossier_merge(c, NULL, &req, NULL, &st), 0);
    assert_int_equal(dossier_get(c, NULL, "deal", "m1", &r, &st), 0);
    assert_string_equal(str_field(r, "name"), "First");
    assert_string_equal(str_field(r, "stage"), "closed_won");
    assert_true(dossier_record_field(r, "amount")->u.d == 250);
    assert_string_equal(str_field(r, "currency"), "EUR"); /* only m1's */
    dossier_record_free(r);

    /* The survivor's values, but m4's name and m4's currency: none. */
    req.survivor_id = "m3";
    req.duplicate_ids = m4;
    req.prefer = DOSSIER_MERGE_PREFER_SURVIVOR;
    req.n_choices = 2;
    req.choices = from_m4;
    assert_int_equal(dossier_merge(c, NULL, &req, NULL, &st), 0);
    assert_int_equal(dossier_get(c, NULL, "deal", "m3", &r, &st), 0);
    assert_string_equal(str_field(r, "name"), "Fourth");
    assert_true(dossier_record_field(r, "amount")->u.d == 10);
    assert_null(dossier_record_field(r, "currency"));
    dossier_record_free(r);

    /* Refusals. */
    deal(c, "m5", NULL, "Fifth", "qualified", 1, NULL);
    req.survivor_id = "m5";
    req.n_choices = 0;
    req.n_duplicates = 0;
    assert_int_not_equal(dossier_merge(c, NULL, &req, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    req.n_duplicates = 1;
    req.duplicate_ids = none;
    assert_int_not_equal(dossier_merge(c, NULL, &req, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_NOT_FOUND);
    assert_non_null(strstr(st.message, "duplicate 1"));
    req.survivor_id = "m1";
    req.duplicate_ids = self;
    assert_int_not_equal(dossier_merge(c, NULL, &req, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "survivor"));
    req.survivor_id = "m5";
    req.n_duplicates = 2;
    req.duplicate_ids = twice;
    assert_int_not_equal(dossier_merge(c, NULL, &req, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    req.n_duplicates = 1;
    req.duplicate_ids = m2; /* merged already: gone */
    assert_int_not_equal(dossier_merge(c, NULL, &req, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_NOT_FOUND);
    req.duplicate_ids = m4;
    req.n_choices = 1;
    req.choices = bad_field;
    assert_int_not_equal(dossier_merge(c, NULL, &req, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "colour"));
    req.choices = bad_rec;
    assert_int_not_equal(dossier_merge(c, NULL, &req, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    req.n_choices = 0;
    req.kind = "spaceship";
    assert_int_not_equal(dossier_merge(c, NULL, &req, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_UNKNOWN_KIND);

    /* Deals are not personal: deals of two subjects do not merge the two
     * persons, nor does a deal with a subject go into one without. */
    deal(c, "d-s1", "s1", "S1", "qualified", 1, NULL);
    deal(c, "d-s2", "s2", "S2", "qualified", 1, NULL);
    deal(c, "d-s3", NULL, "S3", "qualified", 1, NULL);
    req.kind = "deal";
    req.survivor_id = "d-s1";
    req.duplicate_ids = s2;
    assert_int_not_equal(dossier_merge(c, NULL, &req, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_FAILED_PRECONDITION);
    assert_non_null(strstr(st.message, "not personal"));
    req.survivor_id = "d-s3";
    req.duplicate_ids = s2;
    assert_int_not_equal(dossier_merge(c, NULL, &req, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_FAILED_PRECONDITION);
    req.survivor_id = "d-s1";
    req.duplicate_ids = s3; /* no subject into one with: fine */
    assert_int_equal(dossier_merge(c, NULL, &req, NULL, &st), 0);

    /* A restricted subject is not processed; nor one without the consent
     * the purpose needs. */
    contact(c, "r1", "p-r1", "Rae", NULL, NULL, NULL, NULL);
    contact(c, "r2", "p-r2", "Ray", NULL, NULL, NULL, NULL);
    assert_int_equal(
        dossier_subject_restrict(c, NULL, "p-r2", "REQ-1", NULL, &st), 0);
    req.kind = "contact";
    req.survivor_id = "r1";
    req.duplicate_ids = r2;
    assert_int_not_equal(dossier_merge(c, NULL, &req, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_PERMISSION_DENIED);
    assert_int_equal(
        dossier_subject_unrestrict(c, NULL, "p-r2", "REQ-1", NULL, &st), 0);
    assert_int_not_equal(dossier_merge(mkt, NULL, &req, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_PERMISSION_DENIED);
    assert_int_equal(get_code(c, "contact", "r2"), 0);

    /* Three merges pending (m1, m3, d-s1), listed in pages, oldest
     * first. */
    {
        struct dossier_page_request pr = {2, NULL};
        struct dossier_merge_page pg, pg2;
        struct dossier_merge_info *all;
        size_t n_all;
        assert_int_equal(dossier_merge_list_page(c, NULL, &pr, &pg, &st), 0);
        assert_int_equal(pg.n_merges, 2);
        assert_non_null(pg.next_page_token);
        assert_string_equal(pg.merges[0].survivor_id, "m1");
        assert_string_equal(pg.merges[1].survivor_id, "m3");
        assert_true(pg.merges[0].version < pg.merges[1].version);
        pr.page_token = pg.next_page_token;
        assert_int_equal(dossier_merge_list_page(c, NULL, &pr, &pg2, &st), 0);
        assert_int_equal(pg2.n_merges, 1);
        assert_null(pg2.next_page_token);
        assert_string_equal(pg2.merges[0].survivor_id, "d-s1");
        assert_string_equal(pg2.merges[0].duplicate_ids[0], "d-s3");
        dossier_merge_page_release(&pg2);
        dossier_merge_page_release(&pg);
        pr.page_token = "not-a-token";
        assert_int_equal(dossier_merge_list_page(c, NULL, &pr, &pg, &st),
                         DOSSIER_INVALID_ARGUMENT);
        pr.page_token = NULL;
        pr.page_size = 1001;
        assert_int_equal(dossier_merge_list_page(c, NULL, &pr, &pg, &st),
                         DOSSIER_INVALID_ARGUMENT);
        assert_int_equal(dossier_merge_list(c, NULL, &all, &n_all, &st), 0);
        assert_int_equal(n_all, 3);
        dossier_merge_infos_free(all, n_all);
    }

    dossier_client_close(mkt);
    dossier_client_close(c);
    node_destroy(&n);
}

/* A record as a line of text, without its version: what an undo must
 * bring back exactly. */
static void dump(struct dossier_client *c, const char *kind, const char *id,
                 char *out, size_t cap, uint64_t *version)
{
    struct dossier_record *r;
    struct dossier_status st;
    size_t at;
    if (dossier_get(c, NULL, kind, id, &r, &st) != 0)
        fail_msg("get %s %s: %s", kind, id, st.message);
    at = (size_t)snprintf(out, cap, "%s/%s/%s c%lld u%lld |", r->kind, r->id,
                          r->subject_id ? r->subject_id : "",
                          (long long)r->created_at_ms,
                          (long long)r->updated_at_ms);
    for (size_t i = 0; i < r->n_fields && at < cap; i++) {
        const struct dossier_value *v = &r->fields[i].value;
        if (v->type == DOSSIER_TYPE_STRING)
            at += (size_t)snprintf(out + at, cap - at, " %s=%s",
                                   r->fields[i].name, v->u.s);
        else if (v->type == DOSSIER_TYPE_INT)
            at += (size_t)snprintf(out + at, cap - at, " %s=%lld",
                                   r->fields[i].name, (long long)v->u.i);
        else
            at += (size_t)snprintf(out + at, cap - at, " %s=?",
                                   r->fields[i].name);
    }
    for (size_t i = 0; i < r->n_links && at < cap; i++)
        at += (size_t)snprintf(out + at, cap - at, " ->%s:%s:%s",
                               r->links[i].label, r->links[i].kind,
                               r->links[i].id);
    if (version)
        *version = r->version;
    dossier_record_free(r);
}

/* Every consent event of @subject, one line each. */
static void consent_dump(struct dossier_client *c, const char *subject,
                         char *out, size_t cap)
{
    struct dossier_consent_event *e;
    struct dossier_status st;
    size_t n, at = 0;
    out[0] = '\0';
    assert_int_equal(
        dossier_consent_history(c, NULL, subject, NULL, &e, &n, &st), 0);
    for (size_t i = 0; i < n && at < cap; i++)
        at += (size_t)snprintf(out + at, cap - at, "%s:%d:%s:%llu;",
                               e[i].purpose, e[i].state, e[i].source,
                               (unsigned long long)e[i].revision);
    free(e);
    assert_int_equal(dossier_consent_get(c, NULL, subject, NULL, &e, &n, &st),
                     0);
    for (size_t i = 0; i < n && at < cap; i++)
        at += (size_t)snprintf(out + at, cap - at, "now %s:%d:%llu;",
                               e[i].purpose, e[i].state,
                               (unsigned long long)e[i].revision);
    free(e);
}

static const char *const recs[][2] = {
    {"contact", "c-surv"}, {"contact", "c-dup"}, {"activity", "act-1"},
    {"deal", "deal-1"},    {"contact", "c-other"}};
#define N_RECS (sizeof(recs) / sizeof(recs[0]))

/* Until it is confirmed, an undo restores every record (at a new
 * version), link and consent row as they were; once something the merge
 * changed has changed, it is refused; once confirmed, it is impossible. An
 * erasure of the merged-away subject then erases the whole person. */
static void test_merge_undo_and_confirm(void **state)
{
    struct node_proc n;
    struct dossier_client *c;
    struct dossier_merge_info mi, *list;
    struct dossier_subject_status ss_a, ss_b;
    struct dossier_erasure_certificate cert, *ledger;
    struct dossier_link_page lp;
    struct dossier_status st;
    struct dossier_record *r;
    char before[N_RECS][1024], after[1024], cons_a[1024], cons_b[1024],
        now[1024], id[24];
    uint64_t v_before[N_RECS], v_after;
    size_t n_list, n_ledger;
    char *next;
    int seen_a = 0, seen_b = 0;
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    c = harness_client_as(n.addr, NULL, "operations");
    scenario(c, "");
    for (size_t i = 0; i < N_RECS; i++)
        dump(c, recs[i][0], recs[i][1], before[i], sizeof(before[i]),
             &v_before[i]);
    consent_dump(c, "p-a", cons_a, sizeof(cons_a));
    consent_dump(c, "p-b", cons_b, sizeof(cons_b));

    assert_int_equal(merge_dup(c, "c-surv", "c-dup",
                               DOSSIER_MERGE_PREFER_NEWEST, &mi, &st),
                     0);
    snprintf(id, sizeof(id), "%s", mi.id);
    dossier_merge_info_release(&mi);
    assert_int_equal(dossier_merge_undo(c, NULL, id, "TICKET-10", &mi, &st),
                     0);
    assert_string_equal(mi.state, "undone");
    assert_string_equal(mi.survivor_id, "c-surv");
    assert_string_equal(mi.duplicate_ids[0], "c-dup");
    dossier_merge_info_release(&mi);
    for (size_t i = 0; i < N_RECS; i++) {
        dump(c, recs[i][0], recs[i][1], after, sizeof(after), &v_after);
        assert_string_equal(after, before[i]);
        if (i < 3)
            assert_true(v_after > v_before[i]); /* each change a version */
    }
    consent_dump(c, "p-a", now, sizeof(now));
    assert_string_equal(now, cons_a);
    consent_dump(c, "p-b", now, sizeof(now));
    assert_string_equal(now, cons_b);
    assert_int_equal(dossier_list_links(c, NULL, "contact", "c-dup",
                                        DOSSIER_LINKS_INCOMING, NULL, NULL,
                                        &lp, &st),
                     0);
    assert_int_equal(lp.n_links, 3);
    dossier_link_page_release(&lp);
    assert_int_equal(dossier_list_links(c, NULL, "contact", "c-surv",
                                        DOSSIER_LINKS_INCOMING, NULL, NULL,
                                        &lp, &st),
                     0);
    assert_int_equal(lp.n_links, 0);
    dossier_link_page_release(&lp);
    assert_int_equal(dossier_merge_list(c, NULL, &list, &n_list, &st), 0);
    assert_int_equal(n_list, 0);
    free(list);
    assert_int_equal(dossier_merge_undo(c, NULL, id, NULL, NULL, &st),
                     DOSSIER_NOT_FOUND);
    assert_int_equal(dossier_merge_confirm(c, NULL, id, NULL, NULL, &st),
                     DOSSIER_NOT_FOUND);
    assert_true(audited(c, "records.merge_undo"));
    /* What is no merge id is refused as such, before any lookup: the
     * API checks ids as apply does (lower-case or non-hex digits). */
    assert_int_equal(dossier_merge_undo(c, NULL, "MRG-0123456789abcdef",
                                        NULL, NULL, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "upper-case hex"));
    assert_int_equal(dossier_merge_confirm(c, NULL, "MRG-0123456789ABCDEG",
                                           NULL, NULL, &st),
                     DOSSIER_INVALID_ARGUMENT);

    /* A change to a merged record since: the undo would lose it. */
    assert_int_equal(merge_dup(c, "c-surv", "c-dup",
                               DOSSIER_MERGE_PREFER_SURVIVOR, &mi, &st),
                     0);
    snprintf(id, sizeof(id), "%s", mi.id);
    dossier_merge_info_release(&mi);
    assert_int_equal(dossier_get(c, NULL, "contact", "c-surv", &r, &st), 0);
    dossier_record_set_string(r, "job_title", "CEO");
    assert_int_equal(dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    dossier_record_free(r);
    assert_int_equal(dossier_merge_undo(c, NULL, id, NULL, NULL, &st),
                     DOSSIER_FAILED_PRECONDITION);
    assert_non_null(strstr(st.message, "contact"));

    /* Confirmed: no undo, nothing pending; the merged-away subject stays
     * merged. */
    assert_int_equal(dossier_merge_confirm(c, NULL, id, "TICKET-11", &mi, &st),
                     0);
    assert_string_equal(mi.state, "confirmed");
    dossier_merge_info_release(&mi);
    assert_int_equal(dossier_merge_undo(c, NULL, id, NULL, NULL, &st),
                     DOSSIER_NOT_FOUND);
    assert_int_equal(dossier_merge_list(c, NULL, &list, &n_list, &st), 0);
    assert_int_equal(n_list, 0);
    free(list);
    assert_int_equal(get_code(c, "contact", "c-dup"), DOSSIER_NOT_FOUND);
    assert_true(audited(c, "records.merge_confirm"));

    /* p-b is p-a now: erasing p-b erases the person, and the ledger
     * names both, so a restored backup erases both again. */
    assert_int_equal(
        dossier_subject_status(c, NULL, "p-a", NULL, &ss_a, &st), 0);
    assert_int_equal(
        dossier_subject_status(c, NULL, "p-b", NULL, &ss_b, &st), 0);
    assert_int_equal(
        dossier_subject_erase(c, NULL, "p-b", "DSR-7", &cert, &st), 0);
    assert_int_equal(cert.records_deleted, 2);
    assert_int_equal(get_code(c, "contact", "c-surv"), DOSSIER_NOT_FOUND);
    assert_int_equal(get_code(c, "activity", "act-1"), DOSSIER_NOT_FOUND);
    assert_int_equal(get_code(c, "contact", "c-other"), 0);
    assert_int_equal(dossier_erasure_ledger(c, NULL, NULL, &ledger, &n_ledger,
                                            &next, &st),
                     0);
    free(next);
    for (size_t i = 0; i < n_ledger; i++) {
        seen_a |= !memcmp(ledger[i].pseudonym, ss_a.pseudonym, 16);
        seen_b |= !memcmp(ledger[i].pseudonym, ss_b.pseudonym, 16);
    }
    free(ledger);
    assert_true(seen_a && seen_b);

    dossier_client_close(c);
    node_destroy(&n);
}

/* What a watcher from revision 1 sees of the duplicates. */
struct dup_feed {
    uint64_t until;
    int puts, deletes, erased; /* changes of d-same and d-other */
    int old_values;            /* changes holding a value that lost */
    int survivor_city;         /* survivor puts holding the moved city */
};

static int dup_feed_cb(void *arg, const struct dossier_change *ch)
{
    struct dup_feed *f = arg;
    const struct dossier_record *r = ch->record;
    if (r && (strcmp(r->id, "d-same") == 0 || strcmp(r->id, "d-other") == 0)) {
        const char *n = str_field(r, "first_name");
        f->puts += ch->type == DOSSIER_CHANGE_PUT;
        f->deletes += ch->type == DOSSIER_CHANGE_DELETE;
        f->erased += ch->content_erased;
        f->old_values += !strcmp(n, "Annie") || !strcmp(n, "Anny") ||
                         !strcmp(n, "Anja");
    }
    if (r && strcmp(r->id, "s-1") == 0 && ch->type == DOSSIER_CHANGE_PUT &&
        !strcmp(str_field(r, "city"), "Bath"))
        f->survivor_city++;
    return ch->revision >= f->until;
}

/* Once merged and confirmed, the duplicates' earlier changes are gone
 * from the change feed, as a deleted record's are: a watcher from
 * revision 1 sees each duplicate's deletion only, none of the values
 * that lost to the survivor's (for a duplicate of the survivor's own
 * subject, whose key stays, and one of another subject), and the values
 * that won in the survivor's put. */
static void test_merge_leaves_no_lost_values_in_the_feed(void **state)
{
    struct node_proc n;
    struct dossier_client *c;
    struct dossier_merge_info mi;
    struct dossier_status st;
    struct dossier_merge_request req = {.kind = "contact",
                                        .survivor_id = "s-1",
                                        .n_duplicates = 2,
                                        .prefer = DOSSIER_MERGE_PREFER_SURVIVOR};
    const char *dups[] = {"d-same", "d-other"};
    struct dossier_watch_options wo = {.start = {.revision = 1}};
    struct dossier_call_options co = {.timeout_ms = 10000};
    struct dup_feed f = {0};
    char id[24];
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    c = harness_client_as(n.addr, NULL, "operations");
    contact(c, "s-1", "p-x", "Ann", NULL, NULL, NULL, NULL);
    contact(c, "d-same", "p-x", "Annie", NULL, NULL, "Bath", NULL);
    contact(c, "d-same", "p-x", "Anny", NULL, NULL, "Bath", NULL);
    contact(c, "d-other", "p-y", "Anja", NULL, NULL, NULL, NULL);
    req.duplicate_ids = dups;
    assert_int_equal(dossier_merge(c, NULL, &req, &mi, &st), 0);
    snprintf(id, sizeof(id), "%s", mi.id);
    dossier_merge_info_release(&mi);
    assert_int_equal(dossier_merge_confirm(c, NULL, id, NULL, &mi, &st), 0);
    f.until = mi.version; /* the confirmation's revision: after the merge */
    dossier_merge_info_release(&mi);
    assert_int_equal(dossier_watch(c, &co, &wo, dup_feed_cb, &f, NULL, &st),
                     0);
    assert_int_equal(f.deletes, 2);
    assert_int_equal(f.puts, 0);
    assert_int_equal(f.erased, 0);
    assert_int_equal(f.old_values, 0);
    assert_int_equal(f.survivor_city, 1);

    dossier_client_close(c);
    node_destroy(&n);
}

/* How many records an export streamed. */
struct export_count {
    uint64_t records;
};

static int export_count_cb(void *arg, const struct dossier_export_item *it)
{
    struct export_count *x = arg;
    x->records += it->kind == DOSSIER_EXPORT_RECORD;
    return 0;
}

/* Once a subject is merged into another, what a compliance officer does
 * under the merged-away subject's id reaches the person: a consent
 * decision, a restriction and its lifting land on the survivor's subject,
 * consent reads and the subject's records are the survivor subject's, and
 * the status names the subject it was merged into. */
static void test_merged_subject_id_reaches_the_person(void **state)
{
    struct node_proc n;
    struct dossier_client *c;
    struct dossier_merge_info mi;
    struct dossier_subject_status ss_a, ss_b;
    struct dossier_page pa, pb;
    struct dossier_status st;
    struct dossier_record *r;
    uint64_t records_before;
    char buf_a[128], buf_b[128];
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    c = harness_client_as(n.addr, NULL, "operations");
    scenario(c, "");
    assert_int_equal(merge_dup(c, "c-surv", "c-dup",
                               DOSSIER_MERGE_PREFER_SURVIVOR, &mi, &st),
                     0);
    dossier_merge_info_release(&mi);

    assert_int_equal(dossier_subject_status(c, NULL, "p-a", NULL, &ss_a, &st),
                     0);
    assert_int_equal(dossier_subject_status(c, NULL, "p-b", NULL, &ss_b, &st),
                     0);
    assert_false(ss_a.merged);
    assert_true(ss_b.merged);
    assert_memory_equal(ss_b.merged_into, ss_a.pseudonym, 16);
    assert_memory_not_equal(ss_b.pseudonym, ss_a.pseudonym, 16);
    assert_true(ss_a.records >= 2);
    assert_int_equal(ss_b.records, ss_a.records);

    /* The person grants marketing again, under the id the merge folded. */
    assert_int_equal(dossier_consent_grant(c, NULL, "p-b", "marketing",
                                           "pref-center", "v4", NULL, &st),
                     0);
    assert_string_equal(consent_of(c, "p-a", "marketing", buf_a,
                                   sizeof(buf_a)),
                        "granted/pref-center");
    assert_string_equal(consent_of(c, "p-b", "marketing", buf_b,
                                   sizeof(buf_b)),
                        buf_a);
    assert_int_equal(history_len(c, "p-b"), history_len(c, "p-a"));
    assert_int_equal(dossier_consent_withdraw(c, NULL, "p-b", "marketing",
                                              "email", "v4", NULL, &st),
                     0);
    assert_string_equal(consent_of(c, "p-a", "marketing", buf_a,
                                   sizeof(buf_a)),
                        "withdrawn/email");

    /* Restricted and lifted under the old id: the survivor's subject. */
    assert_int_equal(
        dossier_subject_restrict(c, NULL, "p-b", "DSR-30", &ss_b, &st), 0);
    assert_true(ss_b.restricted);
    assert_int_equal(dossier_subject_status(c, NULL, "p-a", NULL, &ss_a, &st),
                     0);
    assert_true(ss_a.restricted);
    assert_int_equal(
        dossier_subject_unrestrict(c, NULL, "p-b", "DSR-30", &ss_b, &st), 0);
    assert_int_equal(dossier_subject_status(c, NULL, "p-a", NULL, &ss_a, &st),
                     0);
    assert_false(ss_a.restricted);

    /* The records listed under either id are the same. */
    assert_int_equal(dossier_list_by_subject(c, NULL, "p-a", NULL, NULL, &pa,
                                             &st),
                     0);
    assert_int_equal(dossier_list_by_subject(c, NULL, "p-b", NULL, NULL, &pb,
                                             &st),
                     0);
    assert_int_equal(pb.n_records, pa.n_records);
    assert_int_equal((uint64_t)pa.n_records, ss_a.records);
    dossier_page_release(&pa);
    dossier_page_release(&pb);

    /* An export under the old id is the person's: the survivor
     * subject's records; a rectification under it reaches them. */
    {
        struct export_count x = {0};
        struct dossier_record *set = dossier_record_new("contact", "c-surv",
                                                        "p-b");
        struct dossier_rectify_result rr;
        assert_int_equal(dossier_subject_export(c, NULL, "p-b", export_count_cb,
                                                &x, &st),
                         0);
        assert_int_equal(x.records, ss_a.records);
        dossier_record_set_string(set, "job_title", "CEO");
        assert_int_equal(dossier_subject_rectify(c, NULL, "p-b", "contact",
                                                 "c-surv", set, NULL, 0,
                                                 "DSR-31", &rr, &st),
                         0);
        dossier_record_free(set);
        assert_int_equal(dossier_get(c, NULL, "contact", "c-surv", &r, &st),
                         0);
        assert_string_equal(str_field(r, "job_title"), "CEO");
        dossier_record_free(r);
    }

    /* A record written under the old id joins the person. */
    r = dossier_record_new("activity", "act-after", "p-b");
    dossier_record_set_string(r, "type", "note");
    dossier_record_set_string(r, "title", "after the merge");
    put_or_fail(c, r);
    assert_int_equal(dossier_get(c, NULL, "activity", "act-after", &r, &st),
                     0);
    assert_string_equal(r->subject_id, "p-a");
    dossier_record_free(r);
    records_before = ss_a.records;
    assert_int_equal(dossier_subject_status(c, NULL, "p-a", NULL, &ss_a, &st),
                     0);
    assert_int_equal(ss_a.records, records_before + 1);

    dossier_client_close(c);
    node_destroy(&n);
}

/* What a watcher from revision 1 sees of an undone merge's values. */
struct undo_feed {
    uint64_t until;
    int leaks; /* changes holding a value of the erased subject */
};

static int undo_feed_cb(void *arg, const struct dossier_change *ch)
{
    struct undo_feed *f = arg;
    const struct dossier_record *r = ch->record;
    if (r && (!strcmp(str_field(r, "city"), "BathUndoMark") ||
              !strcmp(str_field(r, "first_name"), "AnjaUndoMark") ||
              !strcmp(str_field(r, "title"), "callUndoMark")))
        f->leaks++;
    return ch->revision >= f->until;
}

/* A merge writes the merged subject's values sealed under the survivor's
 * key into the survivor's feed (the survivor filled from the duplicate,
 * the moved activity). Once the merge is undone and the merged-away
 * subject erased, a watcher from revision 1 sees none of that subject's
 * values: the undo took the merge's own changes out of the feed. */
static void test_merge_undo_then_erase_leaves_nothing_in_the_feed(void **state)
{
    struct node_proc n;
    struct dossier_client *c;
    struct dossier_merge_info mi;
    struct dossier_erasure_certificate cert;
    struct dossier_put_result pr;
    struct dossier_status st;
    struct dossier_record *r;
    struct dossier_watch_options wo = {.start = {.revision = 1}};
    struct dossier_call_options co = {.timeout_ms = 10000};
    struct undo_feed f = {0};
    char id[24];
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    c = harness_client_as(n.addr, NULL, "operations");
    contact(c, "s-1", "p-x", "Ann", NULL, NULL, NULL, NULL);
    contact(c, "d-1", "p-y", "AnjaUndoMark", NULL, NULL, "BathUndoMark",
            NULL);
    r = dossier_record_new("activity", "act-y", "p-y");
    dossier_record_set_string(r, "type", "call");
    dossier_record_set_string(r, "title", "callUndoMark");
    dossier_record_add_link(r, "logged_on", "contact", "d-1");
    put_or_fail(c, r);
    assert_int_equal(merge_dup(c, "s-1", "d-1", DOSSIER_MERGE_PREFER_SURVIVOR,
                               &mi, &st),
                     0);
    snprintf(id, sizeof(id), "%s", mi.id);
    dossier_merge_info_release(&mi);
    assert_int_equal(dossier_get(c, NULL, "contact", "s-1", &r, &st), 0);
    assert_string_equal(str_field(r, "city"), "BathUndoMark");
    dossier_record_free(r);
    assert_int_equal(dossier_merge_undo(c, NULL, id, NULL, &mi, &st), 0);
    dossier_merge_info_release(&mi);
    assert_int_equal(dossier_get(c, NULL, "contact", "d-1", &r, &st), 0);
    assert_string_equal(str_field(r, "city"), "BathUndoMark");
    dossier_record_free(r);
    assert_int_equal(
        dossier_subject_erase(c, NULL, "p-y", "DSR-8", &cert, &st), 0);
    assert_int_equal(cert.records_deleted, 2);
    assert_int_equal(get_code(c, "contact", "s-1"), 0);

    r = dossier_record_new("contact", "z-end", "p-z");
    dossier_record_set_string(r, "first_name", "Zed");
    assert_int_equal(dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, &pr, &st),
                     0);
    dossier_record_free(r);
    f.until = pr.version;
    assert_int_equal(dossier_watch(c, &co, &wo, undo_feed_cb, &f, NULL, &st),
                     0);
    assert_int_equal(f.leaks, 0);

    dossier_client_close(c);
    node_destroy(&n);
}

/* An undo restores the merged subject as it was before the merge, so it
 * must not undo what the person decided since: with the survivor's
 * subject restricted after the merge, even a legal_claims undo is
 * refused and the duplicate stays merged (its subject is not handed back
 * unrestricted); lifted again, the undo goes through. A consent decision
 * since, for a purpose the merge did not touch, refuses the undo too. */
static void test_merge_undo_keeps_later_restrictions(void **state)
{
    struct node_proc n;
    struct dossier_client *c, *legal;
    struct dossier_merge_info mi;
    struct dossier_subject_status ss;
    struct dossier_status st;
    struct dossier_record *r;
    char id[24];
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    c = harness_client_as(n.addr, NULL, "operations");
    legal = harness_client_as(n.addr, NULL, "legal_claims");
    contact(c, "m-surv", "mp-a", "Mia", NULL, NULL, NULL, NULL);
    contact(c, "m-dup", "mp-b", "Mya", NULL, NULL, "York", NULL);
    r = dossier_record_new("activity", "m-act", "mp-b");
    dossier_record_set_string(r, "type", "call");
    put_or_fail(c, r);
    assert_int_equal(merge_dup(c, "m-surv", "m-dup",
                               DOSSIER_MERGE_PREFER_SURVIVOR, &mi, &st),
                     0);
    snprintf(id, sizeof(id), "%s", mi.id);
    dossier_merge_info_release(&mi);

    assert_int_equal(
        dossier_subject_restrict(c, NULL, "mp-a", "DSR-30", NULL, &st), 0);
    assert_int_equal(dossier_merge_undo(legal, NULL, id, NULL, NULL, &st),
                     DOSSIER_FAILED_PRECONDITION);
    assert_non_null(strstr(st.message, "restriction"));
    assert_int_equal(get_code(c, "contact", "m-dup"), DOSSIER_NOT_FOUND);
    assert_int_equal(dossier_subject_status(legal, NULL, "mp-a", NULL, &ss,
                                            &st),
                     0);
    assert_true(ss.restricted);
    assert_int_equal(ss.records, 2);

    assert_int_equal(
        dossier_subject_unrestrict(c, NULL, "mp-a", "DSR-30", NULL, &st), 0);
    assert_int_equal(dossier_merge_undo(c, NULL, id, NULL, NULL, &st), 0);
    assert_int_equal(get_code(c, "contact", "m-dup"), 0);
    assert_int_equal(get_code(c, "activity", "m-act"), 0);

    /* Consent to a purpose neither had decided on, given after the
     * merge. */
    assert_int_equal(merge_dup(c, "m-surv", "m-dup",
                               DOSSIER_MERGE_PREFER_SURVIVOR, &mi, &st),
                     0);
    snprintf(id, sizeof(id), "%s", mi.id);
    dossier_merge_info_release(&mi);
    assert_int_equal(dossier_consent_withdraw(c, NULL, "mp-a", "analytics",
                                              "app", "v4", NULL, &st),
                     0);
    assert_int_equal(dossier_merge_undo(c, NULL, id, NULL, NULL, &st),
                     DOSSIER_FAILED_PRECONDITION);
    assert_non_null(strstr(st.message, "'analytics'"));
    assert_int_equal(get_code(c, "contact", "m-dup"), DOSSIER_NOT_FOUND);

    dossier_client_close(legal);
    dossier_client_close(c);
    node_destroy(&n);
}

/* A merge followed by an erasure leaves nothing of either record: on a
 * 3-node cluster, the survivor subject is erased while the merge is still
 * pending undo (which keeps the records as they were); then no sealed
 * fragment of the survivor or the duplicate, as written before the merge
 * or sealed again by it, and no marker, is left in any file of any node,
 * while another subject's fragments are found (the scan can fail). */
static void test_merge_then_erase(void **state)
{
    static const char *const markers[] = {"AnnQz81MergeMark", "LeedsQz81MergeMark",
                                          "callQz81MergeMark"};
    struct cluster_proc cl;
    struct dossier_client *c;
    struct dossier_subject_status ss_a, ss_b, ss_c;
    struct dossier_erasure_certificate cert, *ledger;
    struct dossier_merge_info mi, *list;
    struct dossier_status st;
    struct needles a = {0}, b = {0}, a2 = {0}, ctl = {0};
    size_t n_list, n_ledger;
    char *next;
    int f, seen_b = 0;
    char buf[128];
    (void)state;

    harness_token = NULL;
    cluster_init(&cl, 3, NULL);
    assert_int_equal(cluster_start_all(&cl), 0);
    assert_true(cluster_leader(&cl) >= 0);
    c = harness_client(cl.targets, 20000);
    scenario(c, "Qz81MergeMark");
    assert_int_equal(dossier_subject_status(c, NULL, "p-a", NULL, &ss_a, &st),
                     0);
    assert_int_equal(dossier_subject_status(c, NULL, "p-b", NULL, &ss_b, &st),
                     0);
    assert_int_equal(dossier_subject_status(c, NULL, "p-c", NULL, &ss_c, &st),
                     0);
    assert_int_equal(cluster_wait_converged(&cl), 0);

    /* Both subjects as written, read from a stopped follower. */
    f = (cluster_leader(&cl) + 1) % 3;
    assert_int_equal(node_stop(&cl.nodes[f]), 0);
    disk_collect(cl.nodes[f].data, ss_a.pseudonym, &a);
    disk_collect(cl.nodes[f].data, ss_b.pseudonym, &b);
    disk_collect(cl.nodes[f].data, ss_c.pseudonym, &ctl);
    assert_int_equal(node_start(&cl.nodes[f], NULL), 0);
    assert_true(a.n >= 8 && b.n >= 8 && ctl.n >= 3);
    assert_int_equal(cluster_wait_converged(&cl), 0);

    /* Merged, pending undo; the survivor subject as the merge left it. */
    assert_int_equal(merge_dup(c, "c-surv", "c-dup",
                               DOSSIER_MERGE_PREFER_SURVIVOR, &mi, &st),
                     0);
    dossier_merge_info_release(&mi);
    assert_int_equal(cluster_wait_converged(&cl), 0);
    f = (cluster_leader(&cl) + 1) % 3;
    assert_int_equal(node_stop(&cl.nodes[f]), 0);
    disk_collect(cl.nodes[f].data, ss_a.pseudonym, &a2);
    assert_int_equal(node_start(&cl.nodes[f], NULL), 0);
    assert_true(a2.n >= 8);
    assert_int_equal(cluster_wait_converged(&cl), 0);

    assert_int_equal(
        dossier_subject_erase(c, NULL, "p-a", "DSR-21", &cert, &st), 0);
    assert_int_equal(cert.records_deleted, 2); /* c-surv, act-1 */
    assert_int_equal(get_code(c, "contact", "c-surv"), DOSSIER_NOT_FOUND);
    assert_int_equal(get_code(c, "contact", "c-dup"), DOSSIER_NOT_FOUND);
    assert_int_equal(get_code(c, "activity", "act-1"), DOSSIER_NOT_FOUND);
    assert_string_equal(only_link(c, "deal", "deal-1", buf, sizeof(buf)), "");
    assert_string_equal(only_link(c, "contact", "c-other", buf, sizeof(buf)),
                        "");
    assert_int_equal(dossier_merge_list(c, NULL, &list, &n_list, &st), 0);
    assert_int_equal(n_list, 0); /* the undo data went with the subject */
    free(list);
    assert_int_equal(dossier_erasure_ledger(c, NULL, NULL, &ledger, &n_ledger,
                                            &next, &st),
                     0);
    free(next);
    for (size_t i = 0; i < n_ledger; i++)
        seen_b |= !memcmp(ledger[i].pseudonym, ss_b.pseudonym, 16);
    free(ledger);
    assert_true(seen_b);

    /* Every node applied it; then no byte of either is left anywhere. */
    assert_int_equal(cluster_wait_converged(&cl), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(node_stop(&cl.nodes[i]), 0);
    for (int i = 0; i < 3; i++) {
        size_t left_a = disk_count(cl.nodes[i].dir, &a);
        size_t left_b = disk_count(cl.nodes[i].dir, &b);
        size_t left_a2 = disk_count(cl.nodes[i].dir, &a2);
        size_t kept = disk_count(cl.nodes[i].dir, &ctl);
        print_message("node %d: left %zu/%zu of the survivor, %zu/%zu of "
                      "the duplicate, %zu/%zu of the merged survivor; "
                      "%zu/%zu of another subject found\n",
                      i + 1, left_a, a.n, left_b, b.n, left_a2, a2.n, kept,
                      ctl.n);
        assert_int_equal(left_a, 0);
        assert_int_equal(left_b, 0);
        assert_int_equal(left_a2, 0);
        assert_true(kept > 0);
        for (size_t m = 0; m < sizeof(markers) / sizeof(markers[0]); m++)
            assert_int_equal(disk_find_text(cl.nodes[i].dir, markers[m]), 0);
    }

    free(a.b);
    free(b.b);
    free(a2.b);
    free(ctl.b);
    dossier_client_close(c);
    cluster_destroy(&cl);
}

/* Flips a byte of the first sealed field of the last record of @kind in
 * the stopped node's data directory @data (records sort by pseudonym). */
static void corrupt_last_record(const char *data, const char *kind)
{
    rocksdb_column_family_handle_t *cf[DISK_N_FAMILIES];
    rocksdb_t *db = disk_db_open(data, 0, cf);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, ro, cf[2]);
    Dossier__Store__V1__StoredRecord *sr = NULL;
    char key[256];
    size_t klen = 0, plen = strlen(kind) + 1;
    char *err = NULL;

    for (rocksdb_iter_seek(it, kind, plen); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t l, vlen;
        const char *k = rocksdb_iter_key(it, &l);
        const char *v = rocksdb_iter_value(it, &vlen);
        if (l < plen || memcmp(k, kind, plen) != 0)
            break;
        assert_true(l <= sizeof(key));
        memcpy(key, k, l);
        klen = l;
        if (sr)
            dossier__store__v1__stored_record__free_unpacked(sr, NULL);
        sr = dossier__store__v1__stored_record__unpack(NULL, vlen,
                                                       (const uint8_t *)v);
        assert_non_null(sr);
    }
    rocksdb_iter_destroy(it);
    assert_non_null(sr);
    assert_true(sr->n_fields > 0 && sr->fields[0]->box.len > 0);
    sr->fields[0]->box.data[sr->fields[0]->box.len / 2] ^= 0x01;
    {
        size_t len = dossier__store__v1__stored_record__get_packed_size(sr);
        uint8_t *buf = malloc(len);
        assert_non_null(buf);
        dossier__store__v1__stored_record__pack(sr, buf);
        rocksdb_put_cf(db, wo, cf[2], key, klen, (const char *)buf, len,
                       &err);
        assert_null(err);
        free(buf);
    }
    dossier__store__v1__stored_record__free_unpacked(sr, NULL);
    rocksdb_readoptions_destroy(ro);
    rocksdb_writeoptions_destroy(wo);
    disk_db_close(db, cf);
}

/* Duplicates are found before they are merged: when a record of a group
 * does not open (its sealed value was altered), the call fails with
 * CORRUPT and a message saying so, the records of the group opened
 * before it are released (the node stops without a leak: the sanitizer
 * build checks), and the node serves on. */
static void test_duplicates_with_a_record_that_does_not_open(void **state)
{
    struct node_proc n;
    struct dossier_client *c;
    struct dossier_duplicates d;
    struct dossier_status st;
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    c = node_client(&n);
    contact(c, "t1", "p-1", "Tom", "tom@x.example", NULL, NULL, NULL);
    contact(c, "t2", "p-2", "Tom", "TOM@x.example", NULL, NULL, NULL);
    contact(c, "t3", "p-3", "Tom", "Tom@X.example", NULL, NULL, NULL);
    assert_int_equal(
        dossier_find_duplicates(c, NULL, "contact", NULL, 0, NULL, &d, &st),
        0);
    assert_int_equal(d.n_groups, 1);
    assert_int_equal(d.groups[0].n_records, 3);
    dossier_duplicates_release(&d);
    dossier_client_close(c);
    assert_int_equal(node_stop(&n), 0);

    /* The last of the group to be opened no longer opens. */
    corrupt_last_record(n.data, "contact");
    assert_int_equal(node_start(&n, NULL), 0);
    c = node_client(&n);
    assert_int_equal(
        dossier_find_duplicates(c, NULL, "contact", NULL, 0, NULL, &d, &st),
        DOSSIER_CORRUPT);
    assert_non_null(strstr(st.message, "does not open"));
    for (int i = 0; i < 20; i++) { /* a leak per call would add up */
        assert_int_not_equal(dossier_find_duplicates(c, NULL, "contact", NULL,
                                                     0, NULL, &d, &st),
                             0);
    }
    dossier_client_close(c);
    assert_int_equal(node_stop(&n), 0);
    node_destroy(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_contacts),
        cmocka_unit_test(test_merge_rules_and_refusals),
        cmocka_unit_test(test_merge_undo_and_confirm),
        cmocka_unit_test(test_merge_leaves_no_lost_values_in_the_feed),
        cmocka_unit_test(test_merged_subject_id_reaches_the_person),
        cmocka_unit_test(test_merge_undo_then_erase_leaves_nothing_in_the_feed),
        cmocka_unit_test(test_merge_undo_keeps_later_restrictions),
        cmocka_unit_test(test_merge_then_erase),
        cmocka_unit_test(test_duplicates_with_a_record_that_does_not_open),
    };
    int rc;
    if (sodium_init() < 0)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (harness_running() != 0) {
        fprintf(stderr, "a test left a process running\n");
        return 1;
    }
    return rc;
}
