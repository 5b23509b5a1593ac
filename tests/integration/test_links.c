/* Links between records (associations) through libdossier against real
 * nodes: both directions listed, kept up to date by puts, deletes and
 * erasures, filtered by purpose and consent, paged, audited, refused when
 * asked badly, and replicated (a follower's own state, a new leader, a
 * follower caught up through a snapshot). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dossier/dossier.h>

#include "harness.h"

static struct node_proc node;
static char tok_crm[65], tok_dpo[65], tok_admin[65];
static struct dossier_client *crm; /* service role, purpose operations */

static int group_setup(void **state)
{
    static char auth[400];
    struct harness_principal p[] = {
        {"crm", "service", tok_crm, NULL},
        {"dpo", "compliance", tok_dpo, NULL},
        {"ops", "admin", tok_admin, NULL},
    };
    (void)state;
    harness_new_token(tok_crm);
    harness_new_token(tok_dpo);
    harness_new_token(tok_admin);
    node_init(&node);
    snprintf(auth, sizeof(auth), "%s/auth", node.dir);
    harness_write_auth_file(auth, p, 3);
    node.args[0] = "--auth-file";
    node.args[1] = auth;
    node.args[2] = NULL;
    harness_token = tok_admin;
    if (node_start(&node, NULL) != 0)
        return -1;
    crm = harness_client_as(node.addr, tok_crm, "operations");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    dossier_client_close(crm);
    assert_int_equal(node_stop(&node), 0);
    node_destroy(&node);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Writing records */

/* A new record; @subject may be NULL. Fields by kind, enough for its
 * schema. */
static struct dossier_record *rec(const char *kind, const char *id,
                                  const char *subject)
{
    struct dossier_record *r = dossier_record_new(kind, id, subject);
    assert_non_null(r);
    if (strcmp(kind, "company") == 0) {
        dossier_record_set_string(r, "name", id);
        dossier_record_set_double(r, "annual_revenue", 1e6);
    } else if (strcmp(kind, "contact") == 0) {
        dossier_record_set_string(r, "first_name", id);
        dossier_record_set_string(r, "job_title", "buyer");
        dossier_record_set_int(r, "lead_score", 40);
        dossier_record_set_double(r, "credit_limit", 500.0);
    } else if (strcmp(kind, "deal") == 0) {
        dossier_record_set_string(r, "name", id);
        dossier_record_set_string(r, "stage", "qualified");
    } else if (strcmp(kind, "ticket") == 0) {
        dossier_record_set_string(r, "title", "cannot log in");
        dossier_record_set_string(r, "status", "open");
    } else if (strcmp(kind, "activity") == 0) {
        dossier_record_set_string(r, "type", "call");
    }
    return r;
}

static void put_on(struct dossier_client *c, struct dossier_record *r)
{
    struct dossier_status st;
    if (dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) != 0)
        fail_msg("put %s %s: %s %s", r->kind, r->id,
                 dossier_code_name(st.code), st.message);
    dossier_record_free(r);
}

static void put(struct dossier_record *r)
{
    put_on(crm, r);
}

/* @r with a link added; returns @r. */
static struct dossier_record *with_link(struct dossier_record *r,
                                        const char *label, const char *kind,
                                        const char *id)
{
    assert_int_equal(dossier_record_add_link(r, label, kind, id), 0);
    return r;
}

static void del(const char *kind, const char *id)
{
    struct dossier_status st;
    if (dossier_delete(crm, NULL, kind, id, DOSSIER_ANY_VERSION, NULL, &st))
        fail_msg("delete %s %s: %s", kind, id, st.message);
}

/* ------------------------------------------------------------------ */
/* Listing */

/* Every link of a listing, all pages, as sorted lines
 * "dir label kind/id" (dir: out or in), in one string, each line ended by
 * '\n'; *@pages gets the number of pages. Fails the test on an error. */
static char *links_on(struct dossier_client *c,
                      const struct dossier_call_options *co, const char *kind,
                      const char *id, enum dossier_link_direction dir,
                      const char *label, uint32_t page_size, size_t *pages)
{
    struct dossier_page_request pr = {page_size, NULL};
    char **lines = NULL, *token = NULL, *out;
    size_t n = 0, len = 1;

    *pages = 0;
    for (;;) {
        struct dossier_link_page pg;
        struct dossier_status st;
        if (dossier_list_links(c, co, kind, id, dir, label, &pr, &pg, &st))
            fail_msg("list links of %s %s: %s %s", kind, id,
                     dossier_code_name(st.code), st.message);
        (*pages)++;
        assert_true(pg.n_links <= (page_size ? page_size : 100));
        for (size_t i = 0; i < pg.n_links; i++) {
            char line[600];
            assert_true(pg.links[i].direction == DOSSIER_LINKS_OUTGOING ||
                        pg.links[i].direction == DOSSIER_LINKS_INCOMING);
            snprintf(line, sizeof(line), "%s %s %s/%s\n",
                     pg.links[i].direction == DOSSIER_LINKS_OUTGOING ? "out"
                                                                     : "in",
                     pg.links[i].label, pg.links[i].record->kind,
                     pg.links[i].record->id);
            lines = realloc(lines, (n + 1) * sizeof(*lines));
            lines[n++] = strdup(line);
            len += strlen(line);
        }
        free(token);
        token = pg.next_page_token;
        pg.next_page_token = NULL;
        dossier_link_page_release(&pg);
        if (!token)
            break;
        pr.page_token = token;
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: lists are short */
        for (size_t j = i; j > 0 && strcmp(lines[j - 1], lines[j]) > 0; j--) {
            char *t = lines[j];
            lines[j] = lines[j - 1];
            lines[j - 1] = t;
        }
    out = calloc(1, len);
    for (size_t i = 0; i < n; i++) {
        /* Each link once, whatever the pages. */
        if (i > 0)
            assert_string_not_equal(lines[i - 1], lines[i]);
        strcat(out, lines[i]);
    }
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
    return out;
}

/* Asserts that listing (@kind, @id) in @dir (label @label, may be NULL)
 * gives exactly @want (sorted lines as links_on makes them). */
static void expect_links(const char *kind, const char *id,
                         enum dossier_link_direction dir, const char *label,
                         const char *want)
{
    size_t pages;
    char *got = links_on(crm, NULL, kind, id, dir, label, 0, &pages);
    if (strcmp(got, want) != 0)
        fail_msg("links of %s %s:\n%s--- wanted:\n%s", kind, id, got, want);
    free(got);
}

/* The links a record shows when read, as "label kind/id" lines. */
static char *record_links(struct dossier_client *c, const char *kind,
                          const char *id)
{
    struct dossier_record *r;
    struct dossier_status st;
    char *out = calloc(1, 4096);
    if (dossier_get(c, NULL, kind, id, &r, &st))
        fail_msg("get %s %s: %s", kind, id, st.message);
    for (size_t i = 0; i < r->n_links; i++)
        snprintf(out + strlen(out), 4096 - strlen(out), "%s %s/%s\n",
                 r->links[i].label, r->links[i].kind, r->links[i].id);
    dossier_record_free(r);
    return out;
}

static void expect_record_links(const char *kind, const char *id,
                                const char *want)
{
    char *got = record_links(crm, kind, id);
    if (strcmp(got, want) != 0)
        fail_msg("%s %s shows links:\n%s--- wanted:\n%s", kind, id, got, want);
    free(got);
}

/* ------------------------------------------------------------------ */

/* The CRM's associations list from either end: contact works_at company,
 * deal involves contact, ticket raised_by contact, activity logged_on
 * deal; a label narrows the listing, and a record shows its own links. */
static void test_links_list_from_both_ends(void **state)
{
    (void)state;
    put(rec("company", "acme", NULL));
    put(with_link(rec("contact", "c-ann", "s-ann"), "works_at", "company",
                  "acme"));
    put(with_link(
        with_link(rec("deal", "d-big", NULL), "involves", "contact", "c-ann"),
        "for", "company", "acme"));
    put(with_link(rec("ticket", "t-login", "s-ann"), "raised_by", "contact",
                  "c-ann"));
    put(with_link(rec("activity", "a-call", "s-ann"), "logged_on", "deal",
                  "d-big"));

    expect_links("contact", "c-ann", DOSSIER_LINKS_OUTGOING, NULL,
                 "out works_at company/acme\n");
    expect_links("contact", "c-ann", DOSSIER_LINKS_INCOMING, NULL,
                 "in involves deal/d-big\n"
                 "in raised_by ticket/t-login\n");
    expect_links("company", "acme", DOSSIER_LINKS_INCOMING, NULL,
                 "in for deal/d-big\n"
                 "in works_at contact/c-ann\n");
    expect_links("company", "acme", DOSSIER_LINKS_OUTGOING, NULL, "");
    expect_links("deal", "d-big", DOSSIER_LINKS_BOTH, NULL,
                 "in logged_on activity/a-call\n"
                 "out for company/acme\n"
                 "out involves contact/c-ann\n");
    expect_links("deal", "d-big", DOSSIER_LINKS_BOTH, "involves",
                 "out involves contact/c-ann\n");
    expect_links("activity", "a-call", DOSSIER_LINKS_OUTGOING, "logged_on",
                 "out logged_on deal/d-big\n");

    /* The linked records come whole, as Get returns them. */
    {
        struct dossier_link_page pg;
        struct dossier_status st;
        const struct dossier_value *v;
        assert_int_equal(dossier_list_links(crm, NULL, "ticket", "t-login",
                                            DOSSIER_LINKS_OUTGOING, NULL, NULL,
                                            &pg, &st),
                         0);
        assert_int_equal(pg.n_links, 1);
        assert_string_equal(pg.links[0].label, "raised_by");
        assert_int_equal(pg.links[0].direction, DOSSIER_LINKS_OUTGOING);
        assert_string_equal(pg.links[0].record->subject_id, "s-ann");
        assert_true(pg.links[0].record->version > 0);
        v = dossier_record_field(pg.links[0].record, "first_name");
        assert_non_null(v);
        assert_string_equal(v->u.s, "c-ann");
        assert_int_equal(pg.links[0].record->n_links, 1);
        assert_string_equal(pg.links[0].record->links[0].id, "acme");
        assert_null(pg.next_page_token);
        dossier_link_page_release(&pg);
    }
    /* Read back ordered by label. */
    expect_record_links("deal", "d-big",
                        "for company/acme\ninvolves contact/c-ann\n");
}

/* A link given twice is kept once; a link to a record not made yet is
 * kept, listed once the record exists, and shown by its source. */
static void test_repeated_and_forward_links(void **state)
{
    (void)state;
    put(with_link(with_link(rec("contact", "c-rep", "s-rep"), "works_at",
                            "company", "rep-co"),
                  "works_at", "company", "rep-co"));
    expect_record_links("contact", "c-rep", "works_at company/rep-co\n");
    /* rep-co does not exist: nothing to list, but the link is there. */
    expect_links("contact", "c-rep", DOSSIER_LINKS_OUTGOING, NULL, "");
    put(rec("company", "rep-co", NULL));
    expect_links("contact", "c-rep", DOSSIER_LINKS_OUTGOING, NULL,
                 "out works_at company/rep-co\n");
    expect_links("company", "rep-co", DOSSIER_LINKS_INCOMING, NULL,
                 "in works_at contact/c-rep\n");
}

/* A Put replaces a record's links: the old target no longer lists it, the
 * new one does, and links of other records stay. */
static void test_put_changing_links_updates_both_directions(void **state)
{
    (void)state;
    put(rec("company", "old-co", NULL));
    put(rec("company", "new-co", NULL));
    put(with_link(rec("contact", "c-mover", "s-mover"), "works_at", "company",
                  "old-co"));
    put(with_link(rec("contact", "c-stayer", "s-stayer"), "works_at",
                  "company", "old-co"));
    expect_links("company", "old-co", DOSSIER_LINKS_INCOMING, NULL,
                 "in works_at contact/c-mover\n"
                 "in works_at contact/c-stayer\n");

    put(with_link(with_link(rec("contact", "c-mover", "s-mover"), "works_at",
                            "company", "new-co"),
                  "advises", "company", "old-co"));
    expect_links("company", "old-co", DOSSIER_LINKS_INCOMING, NULL,
                 "in advises contact/c-mover\n"
                 "in works_at contact/c-stayer\n");
    expect_links("company", "new-co", DOSSIER_LINKS_INCOMING, NULL,
                 "in works_at contact/c-mover\n");
    expect_links("contact", "c-mover", DOSSIER_LINKS_OUTGOING, NULL,
                 "out advises company/old-co\n"
                 "out works_at company/new-co\n");

    /* A Put without links drops them all. */
    put(rec("contact", "c-mover", "s-mover"));
    expect_links("contact", "c-mover", DOSSIER_LINKS_BOTH, NULL, "");
    expect_links("company", "new-co", DOSSIER_LINKS_INCOMING, NULL, "");
    expect_record_links("contact", "c-mover", "");
}

/* Deleting a record removes its links from both sides' listings, and from
 * what the records at the other end show; making it again does not bring
 * them back. */
static void test_delete_removes_links_from_both_sides(void **state)
{
    (void)state;
    put(rec("company", "del-co", NULL));
    put(with_link(rec("contact", "c-del", "s-del"), "works_at", "company",
                  "del-co"));
    put(with_link(
        with_link(rec("deal", "d-del", NULL), "involves", "contact", "c-del"),
        "for", "company", "del-co"));

    /* The deal goes: the contact and the company no longer list it. */
    del("deal", "d-del");
    expect_links("contact", "c-del", DOSSIER_LINKS_BOTH, NULL,
                 "out works_at company/del-co\n");
    expect_links("company", "del-co", DOSSIER_LINKS_INCOMING, NULL,
                 "in works_at contact/c-del\n");

    /* The company goes: the contact's link to it goes too, from its
     * listing and from the record itself. */
    del("company", "del-co");
    expect_links("contact", "c-del", DOSSIER_LINKS_BOTH, NULL, "");
    expect_record_links("contact", "c-del", "");
    put(rec("company", "del-co", NULL));
    expect_links("company", "del-co", DOSSIER_LINKS_INCOMING, NULL, "");
    expect_record_links("contact", "c-del", "");
}

/* Erasing a subject removes the links to and from each of its records,
 * on both sides, and the records of others no longer show them. */
static void test_erase_removes_links_of_the_subject(void **state)
{
    struct dossier_client *dpo = harness_client_as(node.addr, tok_dpo, NULL);
    struct dossier_erasure_certificate cert;
    struct dossier_status st;
    (void)state;

    put(rec("company", "eve-co", NULL));
    put(with_link(rec("contact", "c-eve", "s-eve"), "works_at", "company",
                  "eve-co"));
    put(with_link(rec("ticket", "t-eve", "s-eve"), "raised_by", "contact",
                  "c-eve"));
    put(with_link(
        with_link(rec("deal", "d-eve", NULL), "involves", "contact", "c-eve"),
        "for", "company", "eve-co"));
    put(with_link(rec("contact", "c-other", "s-other"), "knows", "contact",
                  "c-eve"));

    assert_int_equal(
        dossier_subject_erase(dpo, NULL, "s-eve", "DSR-LINKS", &cert, &st), 0);
    assert_int_equal(cert.records_deleted, 2);
    expect_links("company", "eve-co", DOSSIER_LINKS_INCOMING, NULL,
                 "in for deal/d-eve\n");
    expect_links("deal", "d-eve", DOSSIER_LINKS_BOTH, NULL,
                 "out for company/eve-co\n");
    expect_record_links("deal", "d-eve", "for company/eve-co\n");
    expect_links("contact", "c-other", DOSSIER_LINKS_BOTH, NULL, "");
    expect_record_links("contact", "c-other", "");
    dossier_client_close(dpo);
}

/* Linked records are filtered as Get filters them: a purpose sees only
 * its categories' fields, and records of subjects it may not read (no
 * consent) are left out; the record asked about must be readable. */
static void test_purpose_filters_linked_records(void **state)
{
    struct dossier_client *mkt =
        harness_client_as(node.addr, tok_crm, "marketing");
    struct dossier_consent_event ev;
    struct dossier_link_page pg;
    struct dossier_status st;
    size_t pages;
    char *got;
    (void)state;

    put(rec("company", "p-co", NULL));
    put(with_link(rec("contact", "c-yes", "s-yes"), "works_at", "company",
                  "p-co"));
    put(with_link(rec("contact", "c-no", "s-no"), "works_at", "company",
                  "p-co"));
    assert_int_equal(dossier_consent_grant(crm, NULL, "s-yes", "marketing",
                                           "signup-form", "2026-03", &ev, &st),
                     0);

    /* operations sees both contacts, with their financial field. */
    got = links_on(crm, NULL, "company", "p-co", DOSSIER_LINKS_INCOMING, NULL,
                   0, &pages);
    assert_string_equal(got, "in works_at contact/c-no\n"
                             "in works_at contact/c-yes\n");
    free(got);
    /* marketing (identity, contact; on consent) sees only the one who
     * consented, and only the fields of its categories. */
    assert_int_equal(dossier_list_links(mkt, NULL, "company", "p-co",
                                        DOSSIER_LINKS_INCOMING, NULL, NULL,
                                        &pg, &st),
                     0);
    assert_int_equal(pg.n_links, 1);
    assert_string_equal(pg.links[0].record->id, "c-yes");
    assert_non_null(dossier_record_field(pg.links[0].record, "first_name"));
    assert_null(dossier_record_field(pg.links[0].record, "credit_limit"));
    assert_null(dossier_record_field(pg.links[0].record, "lead_score"));
    assert_null(dossier_record_field(pg.links[0].record, "job_title"));
    dossier_link_page_release(&pg);
    /* The company's own financial field is hidden from marketing too. */
    assert_int_equal(dossier_list_links(mkt, NULL, "contact", "c-yes",
                                        DOSSIER_LINKS_OUTGOING, NULL, NULL,
                                        &pg, &st),
                     0);
    assert_int_equal(pg.n_links, 1);
    assert_non_null(dossier_record_field(pg.links[0].record, "name"));
    assert_null(dossier_record_field(pg.links[0].record, "annual_revenue"));
    dossier_link_page_release(&pg);
    /* A record the purpose may not read cannot be listed from. */
    assert_int_equal(dossier_list_links(mkt, NULL, "contact", "c-no",
                                        DOSSIER_LINKS_BOTH, NULL, NULL, &pg,
                                        &st),
                     DOSSIER_PERMISSION_DENIED);
    assert_non_null(strstr(st.message, "consent"));
    dossier_client_close(mkt);
}

/* A listing of many links pages through every one exactly once, in both
 * directions and with a label; a token only works for its own listing. */
static void test_pagination_over_many_links(void **state)
{
    struct dossier_record *hub = rec("company", "hub", NULL);
    struct dossier_page_request pr = {10, NULL};
    struct dossier_link_page pg;
    struct dossier_status st;
    size_t pages;
    char *got, id[32];
    int lines = 0;
    (void)state;

    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof(id), "branch-%02d", i);
        put(rec("company", id, NULL));
        with_link(hub, "parent_of", "company", id);
    }
    put(hub);
    for (int i = 0; i < 120; i++) {
        char sid[32];
        snprintf(id, sizeof(id), "staff-%03d", i);
        snprintf(sid, sizeof(sid), "s-staff-%03d", i);
        put(with_link(rec("contact", id, sid), "works_at", "company", "hub"));
    }

    got = links_on(crm, NULL, "company", "hub", DOSSIER_LINKS_BOTH, NULL, 50,
                   &pages);
    for (char *p = got; (p = strchr(p, '\n')); p++)
        lines++;
    assert_int_equal(lines, 150);
    assert_int_equal(pages, 3);
    assert_non_null(strstr(got, "out parent_of company/branch-29\n"));
    assert_non_null(strstr(got, "in works_at contact/staff-119\n"));
    free(got);

    got = links_on(crm, NULL, "company", "hub", DOSSIER_LINKS_INCOMING,
                   "works_at", 7, &pages);
    lines = 0;
    for (char *p = got; (p = strchr(p, '\n')); p++)
        lines++;
    assert_int_equal(lines, 120);
    assert_int_equal(pages, 18);
    free(got);

    /* The first page's token resumes its own listing only. */
    assert_int_equal(dossier_list_links(crm, NULL, "company", "hub",
                                        DOSSIER_LINKS_INCOMING, "works_at",
                                        &pr, &pg, &st),
                     0);
    assert_int_equal(pg.n_links, 10);
    assert_non_null(pg.next_page_token);
    pr.page_token = pg.next_page_token;
    assert_int_equal(dossier_list_links(crm, NULL, "company", "hub",
                                        DOSSIER_LINKS_INCOMING, "parent_of",
                                        &pr, &(struct dossier_link_page){0},
                                        &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "page_token"));
    assert_int_equal(dossier_list_links(crm, NULL, "company", "hub",
                                        DOSSIER_LINKS_OUTGOING, NULL, &pr,
                                        &(struct dossier_link_page){0}, &st),
                     DOSSIER_INVALID_ARGUMENT);
    dossier_link_page_release(&pg);
    pr.page_token = "o00ff";
    assert_int_equal(dossier_list_links(crm, NULL, "company", "hub",
                                        DOSSIER_LINKS_BOTH, NULL, &pr,
                                        &(struct dossier_link_page){0}, &st),
                     DOSSIER_INVALID_ARGUMENT);
}

/* Bad requests get a clear error: an unknown direction, a label that is
 * not a name, a missing record, an unknown kind, an oversized page, the
 * wrong role; a Put with a bad link label is refused whole. */
static void test_bad_input_is_refused(void **state)
{
    struct dossier_client *dpo = harness_client_as(node.addr, tok_dpo, NULL);
    struct dossier_page_request big = {5000, NULL};
    struct dossier_link_page pg;
    struct dossier_record *r;
    struct dossier_status st;
    (void)state;

    put(rec("company", "bad-co", NULL));
    assert_int_equal(dossier_list_links(crm, NULL, "company", "bad-co",
                                        (enum dossier_link_direction)7, NULL,
                                        NULL, &pg, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "direction 7"));
    assert_int_equal(dossier_list_links(crm, NULL, "company", "bad-co",
                                        DOSSIER_LINKS_BOTH, "Works At", NULL,
                                        &pg, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "label"));
    assert_int_equal(dossier_list_links(crm, NULL, "company", "no-such-co",
                                        DOSSIER_LINKS_BOTH, NULL, NULL, &pg,
                                        &st),
                     DOSSIER_NOT_FOUND);
    assert_non_null(strstr(st.message, "company"));
    assert_int_equal(dossier_list_links(crm, NULL, "spaceship", "x",
                                        DOSSIER_LINKS_BOTH, NULL, NULL, &pg,
                                        &st),
                     DOSSIER_UNKNOWN_KIND);
    assert_int_equal(dossier_list_links(crm, NULL, "company", "bad-co",
                                        DOSSIER_LINKS_BOTH, NULL, &big, &pg,
                                        &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "page_size"));
    assert_int_equal(dossier_list_links(crm, NULL, "company", NULL,
                                        DOSSIER_LINKS_BOTH, NULL, NULL, &pg,
                                        &st),
                     DOSSIER_INVALID_ARGUMENT);
    /* Records reads are for the service role. */
    assert_int_equal(dossier_list_links(dpo, NULL, "company", "bad-co",
                                        DOSSIER_LINKS_BOTH, NULL, NULL, &pg,
                                        &st),
                     DOSSIER_PERMISSION_DENIED);

    r = with_link(with_link(rec("contact", "c-badlink", "s-badlink"),
                            "works_at", "company", "bad-co"),
                  "Works-At", "company", "bad-co");
    assert_int_equal(dossier_put(crm, NULL, r, DOSSIER_ANY_VERSION, NULL, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "label"));
    dossier_record_free(r);
    r = with_link(rec("contact", "c-badlink", "s-badlink"), "works_at",
                  "spaceship", "x");
    assert_int_equal(dossier_put(crm, NULL, r, DOSSIER_ANY_VERSION, NULL, &st),
                     DOSSIER_UNKNOWN_KIND);
    dossier_record_free(r);
    expect_links("company", "bad-co", DOSSIER_LINKS_INCOMING, NULL, "");
    dossier_client_close(dpo);
}

/* A listing that returns personal records leaves one read entry in the
 * audit log, naming the records read. */
static void test_listing_is_audited(void **state)
{
    struct dossier_client *dpo = harness_client_as(node.addr, tok_dpo, NULL);
    struct dossier_status st;
    uint8_t pk[32];
    uint64_t from, signed_index;
    size_t pages;
    int found = 0;
    (void)state;

    put(rec("company", "aud-co", NULL));
    put(with_link(rec("contact", "c-aud1", "s-aud1"), "works_at", "company",
                  "aud-co"));
    put(with_link(rec("contact", "c-aud2", "s-aud2"), "works_at", "company",
                  "aud-co"));
    assert_int_equal(
        dossier_audit_public_key(dpo, NULL, pk, &from, &signed_index, &st), 0);
    free(links_on(crm, NULL, "company", "aud-co", DOSSIER_LINKS_INCOMING, NULL,
                  0, &pages));
    for (int tries = 0; tries < 100 && !found; tries++) {
        struct dossier_audit_entry *e;
        size_t n;
        assert_int_equal(
            dossier_audit_read(dpo, NULL, from + 1, 10000, &e, &n, &st), 0);
        for (size_t i = 0; i < n; i++)
            if (strcmp(e[i].action, "records.list_links") == 0 &&
                strcmp(e[i].principal, "crm") == 0 && e[i].outcome == 0 &&
                e[i].n_records == 2 && !e[i].has_subject &&
                strcmp(e[i].purpose, "operations") == 0)
                found = 1;
        free(e);
        if (!found)
            usleep(100000);
    }
    assert_true(found);
    dossier_client_close(dpo);
}

/* ------------------------------------------------------------------ */
/* Replicated */

static const struct dossier_call_options serializable = {
    .consistency = DOSSIER_SERIALIZABLE};

/* On 3 nodes: incoming links are listed from a follower's own state, by a
 * new leader after a transfer, and by a follower that was down and caught
 * up through a snapshot; a delete through the new leader reaches every
 * node. */
static void test_links_replicate(void **state)
{
    const char *extra[] = {"--snapshot-entries", "32", NULL};
    const char *tokens = harness_token;
    struct cluster_proc c;
    struct dossier_client *cl, *node_cl;
    struct dossier_status st;
    int leader, f, to;
    size_t pages;
    char *got, log[64];
    (void)state;

    harness_token = NULL; /* no auth file on these nodes */
    cluster_init(&c, 3, extra);
    assert_int_equal(cluster_start_all(&c), 0);
    leader = cluster_leader(&c);
    assert_true(leader >= 0);
    cl = harness_client(c.targets, 15000);
    put_on(cl, rec("company", "r-co", NULL));
    put_on(cl, with_link(rec("contact", "r-ann", "s-r-ann"), "works_at",
                         "company", "r-co"));
    put_on(cl,
           with_link(rec("deal", "r-deal", NULL), "for", "company", "r-co"));
    assert_int_equal(cluster_wait_converged(&c), 0);
    for (int i = 0; i < 3; i++) {
        node_cl = harness_client(c.nodes[i].listen, 10000);
        got = links_on(node_cl, &serializable, "company", "r-co",
                       DOSSIER_LINKS_INCOMING, NULL, 0, &pages);
        assert_string_equal(got, "in for deal/r-deal\n"
                                 "in works_at contact/r-ann\n");
        free(got);
        dossier_client_close(node_cl);
    }

    /* A new leader lists them, and deletes one for every node. */
    to = (leader + 1) % 3;
    assert_int_equal(
        dossier_cluster_transfer_leader(cl, NULL, (uint64_t)to + 1, NULL, &st),
        0);
    assert_int_equal(cluster_leader(&c), to);
    node_cl = harness_client(c.nodes[to].listen, 10000);
    got = links_on(node_cl, NULL, "company", "r-co", DOSSIER_LINKS_INCOMING,
                   NULL, 0, &pages);
    assert_string_equal(got, "in for deal/r-deal\n"
                             "in works_at contact/r-ann\n");
    free(got);
    assert_int_equal(dossier_delete(node_cl, NULL, "deal", "r-deal",
                                    DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    dossier_client_close(node_cl);

    /* A follower down while links change catches up by a snapshot, whose
     * link family it then serves. */
    f = (to + 1) % 3;
    assert_int_equal(node_stop(&c.nodes[f]), 0);
    for (int i = 0; i < 80; i++) {
        char id[32], sid[32];
        snprintf(id, sizeof(id), "r-staff-%02d", i);
        snprintf(sid, sizeof(sid), "s-r-staff-%02d", i);
        put_on(cl, with_link(rec("contact", id, sid), "works_at", "company",
                             "r-co"));
    }
    assert_int_equal(node_start(&c.nodes[f], NULL), 0);
    assert_int_equal(cluster_wait_converged(&c), 0);
    harness_sh(log, sizeof(log), "grep -c 'installed a snapshot' %s",
               c.nodes[f].log);
    assert_true(atoi(log) >= 1);
    for (int i = 0; i < 3; i++) {
        int lines = 0;
        node_cl = harness_client(c.nodes[i].listen, 10000);
        got = links_on(node_cl, &serializable, "company", "r-co",
                       DOSSIER_LINKS_INCOMING, NULL, 25, &pages);
        for (char *p = got; (p = strchr(p, '\n')); p++)
            lines++;
        assert_int_equal(lines, 81);
        assert_null(strstr(got, "r-deal"));
        assert_non_null(strstr(got, "in works_at contact/r-staff-79\n"));
        free(got);
        dossier_client_close(node_cl);
    }
    dossier_client_close(cl);
    cluster_destroy(&c);
    harness_token = tokens;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_links_list_from_both_ends),
        cmocka_unit_test(test_repeated_and_forward_links),
        cmocka_unit_test(test_put_changing_links_updates_both_directions),
        cmocka_unit_test(test_delete_removes_links_from_both_sides),
        cmocka_unit_test(test_erase_removes_links_of_the_subject),
        cmocka_unit_test(test_purpose_filters_linked_records),
        cmocka_unit_test(test_pagination_over_many_links),
        cmocka_unit_test(test_bad_input_is_refused),
        cmocka_unit_test(test_listing_is_audited),
        cmocka_unit_test(test_links_replicate),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
