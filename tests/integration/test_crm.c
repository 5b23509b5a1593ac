/* CRM capabilities against a real node, through libdossier:
 *  - duplicates: records sharing an e-mail address (in any case) or a
 *    phone number (however written), or matching under a kind's own
 *    rules (several fields at once), are grouped through the blind
 *    indexes, a group being the union of the matches; a purpose sees only
 *    the records it may read; groups come a page at a time;
 *  - reports: deals per stage with their amounts, activities per owner per
 *    week, computed by the node; records a purpose may not see are left
 *    out and counted, fields it may not see refused;
 *  - segments: saved filters (values of fields, ranges of numbers and
 *    times, tags, creation times, consent to a purpose) return the ids of
 *    the matching records the purpose may read, a page at a time. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "harness.h"

static void put(struct dossier_client *c, const char *id, const char *subject,
                const char *email, const char *phone)
{
    struct dossier_record *r = dossier_record_new("contact", id, subject);
    struct dossier_status st;
    dossier_record_set_string(r, "first_name", id);
    dossier_record_set_string(r, "email", email);
    if (phone)
        dossier_record_set_string(r, "phone", phone);
    dossier_record_set_string(r, "accessibility_needs", "none");
    if (dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) != 0)
        fail_msg("put %s: %s", id, st.message);
    dossier_record_free(r);
}

/* The ids of group @g, sorted, joined with ','. */
static void group_ids(const struct dossier_duplicate_group *g, char *out,
                      size_t cap)
{
    const char *ids[16];
    size_t n = g->n_records < 16 ? g->n_records : 16;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        ids[i] = g->records[i]->id;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(ids[j], ids[i]) < 0) {
                const char *t = ids[i];
                ids[i] = ids[j];
                ids[j] = t;
            }
    for (size_t i = 0; i < n; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "",
                 ids[i]);
}

/* The group of field @field in @d, as "id,id", or "" when there is none. */
static const char *find_group(const struct dossier_duplicates *d,
                              const char *field, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (size_t i = 0; i < d->n_groups; i++)
        if (strcmp(d->groups[i].field, field) == 0)
            group_ids(&d->groups[i], buf, cap);
    return buf;
}

/* The rules of group @g, joined with ','. */
static const char *group_rules(const struct dossier_duplicate_group *g,
                               char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < g->n_rules; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "",
                 g->rules[i]);
    return out;
}

/* By default each indexed field is a rule: records sharing an e-mail (in
 * any case) or a phone (however written) match, and a group is every
 * record connected by matches (d1 shares an e-mail with d2 and d4 and a
 * phone with d3). A purpose sees only the records it may read, and those
 * take no part in matching; groups come a page at a time. */
static void test_duplicates(void **state)
{
    struct node_proc n;
    struct dossier_client *ops, *mkt;
    struct dossier_duplicates d;
    struct dossier_status st;
    struct dossier_page_request pr = {0, NULL};
    const char *phone_only[] = {"phone"}, *not_indexed[] = {"first_name"};
    char buf[256];
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    mkt = harness_client_as(n.addr, NULL, "marketing");
    put(ops, "d1", "s1", "Ann@Example.com", "+44 20 7946 0958");
    put(ops, "d2", "s2", "ann@example.com", NULL);
    put(ops, "d3", "s3", "other@example.org", "+442079460958");
    put(ops, "d4", "s4", "ann@EXAMPLE.com", "+1 415 555 0100");
    put(ops, "d5", "s5", "unique@example.net", "+1 415 555 0199");

    /* The default rules: one group, under both. */
    assert_int_equal(
        dossier_find_duplicates(ops, NULL, "contact", NULL, 0, NULL, &d, &st),
        0);
    assert_int_equal(d.n_groups, 1);
    group_ids(&d.groups[0], buf, sizeof(buf));
    assert_string_equal(buf, "d1,d2,d3,d4");
    assert_string_equal(group_rules(&d.groups[0], buf, sizeof(buf)),
                        "email,phone");
    assert_string_equal(d.groups[0].field, "email");
    assert_null(d.next_page_token);
    /* Records come as Get returns them for the purpose. */
    for (size_t j = 0; j < d.groups[0].n_records; j++) {
        assert_non_null(dossier_record_field(d.groups[0].records[j], "email"));
        assert_null(dossier_record_field(d.groups[0].records[j],
                                         "accessibility_needs"));
    }
    dossier_duplicates_release(&d);

    /* One field only. */
    assert_int_equal(dossier_find_duplicates(ops, NULL, "contact", phone_only,
                                             1, NULL, &d, &st),
                     0);
    assert_int_equal(d.n_groups, 1);
    assert_string_equal(find_group(&d, "phone", buf, sizeof(buf)), "d1,d3");
    dossier_duplicates_release(&d);

    /* Marketing needs consent: s1 and s2 gave it. d3 and d4 take no part,
     * so only the e-mail match of d1 and d2 is left. */
    assert_int_equal(dossier_consent_grant(ops, NULL, "s1", "marketing",
                                           "form", "v1", NULL, &st),
                     0);
    assert_int_equal(dossier_consent_grant(ops, NULL, "s2", "marketing",
                                           "form", "v1", NULL, &st),
                     0);
    assert_int_equal(
        dossier_find_duplicates(mkt, NULL, "contact", NULL, 0, NULL, &d, &st),
        0);
    assert_int_equal(d.n_groups, 1);
    assert_string_equal(find_group(&d, "email", buf, sizeof(buf)), "d1,d2");
    assert_string_equal(group_rules(&d.groups[0], buf, sizeof(buf)), "email");
    dossier_duplicates_release(&d);

    /* A second group; a page of one group, then the rest from its token. */
    put(ops, "d6", "s6", "bo@example.com", NULL);
    put(ops, "d7", "s7", "BO@example.com", NULL);
    pr.page_size = 1;
    assert_int_equal(
        dossier_find_duplicates(ops, NULL, "contact", NULL, 0, &pr, &d, &st),
        0);
    assert_int_equal(d.n_groups, 1);
    assert_non_null(d.next_page_token);
    {
        char first[256], token[256], second[256];
        struct dossier_duplicates d2;
        group_ids(&d.groups[0], first, sizeof(first));
        snprintf(token, sizeof(token), "%s", d.next_page_token);
        dossier_duplicates_release(&d);
        pr.page_token = token;
        assert_int_equal(dossier_find_duplicates(ops, NULL, "contact", NULL, 0,
                                                 &pr, &d2, &st),
                         0);
        assert_int_equal(d2.n_groups, 1);
        group_ids(&d2.groups[0], second, sizeof(second));
        assert_string_not_equal(second, first);
        assert_true((!strcmp(first, "d1,d2,d3,d4") &&
                     !strcmp(second, "d6,d7")) ||
                    (!strcmp(first, "d6,d7") &&
                     !strcmp(second, "d1,d2,d3,d4")));
        /* A full page does not know whether more follow: the last may be
         * empty, and then has no token. */
        if (d2.next_page_token) {
            snprintf(token, sizeof(token), "%s", d2.next_page_token);
            dossier_duplicates_release(&d2);
            assert_int_equal(dossier_find_duplicates(ops, NULL, "contact",
                                                     NULL, 0, &pr, &d2, &st),
                             0);
            assert_int_equal(d2.n_groups, 0);
            assert_null(d2.next_page_token);
        }
        dossier_duplicates_release(&d2);
        pr.page_token = "not-a-token";
        assert_int_not_equal(dossier_find_duplicates(ops, NULL, "contact",
                                                     NULL, 0, &pr, &d2, &st),
                             0);
        assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    }

    /* Bad input. */
    assert_int_not_equal(dossier_find_duplicates(ops, NULL, "contact",
                                                 not_indexed, 1, NULL, &d,
                                                 &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "first_name"));
    assert_int_not_equal(dossier_find_duplicates(ops, NULL, "spaceship", NULL,
                                                 0, NULL, &d, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_UNKNOWN_KIND);

    dossier_client_close(ops);
    dossier_client_close(mkt);
    node_destroy(&n);
}

static void put_lead(struct dossier_client *c, const char *id,
                     const char *email, const char *last_name,
                     const char *postcode)
{
    struct dossier_record *r = dossier_record_new("lead", id, id);
    struct dossier_status st;
    dossier_record_set_string(r, "first_name", id);
    dossier_record_set_string(r, "email", email);
    dossier_record_set_string(r, "last_name", last_name);
    dossier_record_set_string(r, "postcode", postcode);
    if (dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) != 0)
        fail_msg("put %s: %s", id, st.message);
    dossier_record_free(r);
}

/* The rules in the cluster's state: a kind's rules replace the default
 * (each indexed field alone); a rule of several fields matches records
 * that agree on all of them; groups are the union of the matches, and
 * name the rules they rest on. Rules name only indexed fields. */
static void test_duplicate_rules(void **state)
{
    struct node_proc n;
    struct dossier_client *ops;
    struct dossier_duplicates d;
    struct dossier_duplicate_rule_set rs, *all;
    struct dossier_status st;
    struct dossier_field_schema fields[] = {
        {.name = "first_name", .type = DOSSIER_FIELD_STRING,
         .category = DOSSIER_CATEGORY_IDENTITY},
        {.name = "last_name", .type = DOSSIER_FIELD_STRING,
         .category = DOSSIER_CATEGORY_IDENTITY, .indexed = 1},
        {.name = "email", .type = DOSSIER_FIELD_EMAIL,
         .category = DOSSIER_CATEGORY_CONTACT, .indexed = 1},
        {.name = "postcode", .type = DOSSIER_FIELD_STRING,
         .category = DOSSIER_CATEGORY_CONTACT, .indexed = 1}};
    const struct dossier_kind_schema lead = {
        .kind = "lead", .personal = 1, .n_fields = 4, .fields = fields};
    const char *f_email[] = {"email"}, *f_np[] = {"last_name", "postcode"};
    const char *f_bad[] = {"first_name"}, *f_five[] = {"email", "last_name",
                                                       "postcode", "email",
                                                       "last_name"};
    const struct dossier_duplicate_rule rules[] = {
        {"same_email", 1, f_email}, {"name_postcode", 2, f_np}};
    struct dossier_duplicate_rule bad[] = {{"nope", 1, f_bad}};
    size_t n_all;
    char buf[256];
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    assert_int_equal(dossier_schema_define(ops, NULL, &lead, NULL, &st), 0);
    put_lead(ops, "l1", "a@x.example", "Smith", "1000");
    put_lead(ops, "l2", "b@x.example", "Smith", "1000");
    put_lead(ops, "l3", "A@x.example", "Jones", "2000");
    put_lead(ops, "l4", "c@x.example", "Smith", "3000");
    put_lead(ops, "l5", "d@x.example", "Brown", "4000");
    put_lead(ops, "l6", "e@x.example", "Brown", "4000");

    /* The default set: each indexed field alone, so every Smith is one
     * group with l3 (l1's e-mail), and the Browns another. */
    assert_int_equal(dossier_duplicate_rules_get(ops, NULL, "lead", &rs, &st),
                     0);
    assert_false(rs.defined);
    assert_int_equal(rs.n_rules, 3);
    assert_int_equal(
        dossier_find_duplicates(ops, NULL, "lead", NULL, 0, NULL, &d, &st), 0);
    assert_int_equal(d.n_groups, 2);
    for (size_t i = 0; i < d.n_groups; i++) {
        char rb[128];
        group_ids(&d.groups[i], buf, sizeof(buf));
        group_rules(&d.groups[i], rb, sizeof(rb));
        if (!strcmp(buf, "l1,l2,l3,l4"))
            assert_string_equal(rb, "last_name,email,postcode");
        else
            assert_string_equal(buf, "l5,l6");
    }
    dossier_duplicates_release(&d);

    /* Same e-mail, or same last name and postcode. */
    assert_int_equal(dossier_duplicate_rules_define(ops, NULL, "lead", rules,
                                                    2, &rs, &st),
                     0);
    assert_true(rs.defined);
    assert_true(rs.version > 0);
    assert_int_equal(rs.n_rules, 2);
    assert_string_equal(rs.rules[1].name, "name_postcode");
    assert_int_equal(rs.rules[1].n_fields, 2);
    assert_string_equal(rs.rules[1].fields[1], "postcode");
    assert_int_equal(
        dossier_find_duplicates(ops, NULL, "lead", NULL, 0, NULL, &d, &st), 0);
    assert_int_equal(d.n_groups, 2);
    for (size_t i = 0; i < d.n_groups; i++) {
        group_ids(&d.groups[i], buf, sizeof(buf));
        if (!strcmp(buf, "l1,l2,l3")) {
            assert_string_equal(group_rules(&d.groups[i], buf, sizeof(buf)),
                                "same_email,name_postcode");
        } else {
            assert_string_equal(buf, "l5,l6");
            assert_string_equal(group_rules(&d.groups[i], buf, sizeof(buf)),
                                "name_postcode");
            assert_string_equal(d.groups[i].field, "last_name");
        }
    }
    dossier_duplicates_release(&d);
    /* A change of a record changes its matches. */
    put_lead(ops, "l4", "c@x.example", "Smith", "1000");
    assert_int_equal(
        dossier_find_duplicates(ops, NULL, "lead", NULL, 0, NULL, &d, &st), 0);
    assert_string_equal(find_group(&d, "email", buf, sizeof(buf)),
                        "l1,l2,l3,l4");
    dossier_duplicates_release(&d);

    /* A group at a time: every group once, also two of one last name
     * (one run of index rows) with two postcodes, split between pages. */
    put_lead(ops, "j1", "j1@x.example", "Jones", "5000");
    put_lead(ops, "j2", "j2@x.example", "Jones", "5000");
    put_lead(ops, "j3", "j3@x.example", "Jones", "6000");
    put_lead(ops, "j4", "j4@x.example", "Jones", "6000");
    {
        struct dossier_page_request pr = {1, NULL};
        char token[512], all[1024] = "";
        int pages = 0;
        for (;;) {
            assert_int_equal(dossier_find_duplicates(ops, NULL, "lead", NULL,
                                                     0, &pr, &d, &st),
                             0);
            assert_true(d.n_groups <= 1);
            for (size_t i = 0; i < d.n_groups; i++) {
                group_ids(&d.groups[i], buf, sizeof(buf));
                snprintf(all + strlen(all), sizeof(all) - strlen(all), "[%s]",
                         buf);
            }
            pages++;
            if (!d.next_page_token) {
                dossier_duplicates_release(&d);
                break;
            }
            snprintf(token, sizeof(token), "%s", d.next_page_token);
            pr.page_token = token;
            dossier_duplicates_release(&d);
            assert_true(pages < 10);
        }
        /* By rule, then by the rule's blind indexes: the order is not
         * meaningful, the groups are. */
        assert_int_equal(strlen(all), strlen("[l1,l2,l3,l4][l5,l6][j1,j2]"
                                             "[j3,j4]"));
        assert_non_null(strstr(all, "[l1,l2,l3,l4]"));
        assert_non_null(strstr(all, "[l5,l6]"));
        assert_non_null(strstr(all, "[j1,j2]"));
        assert_non_null(strstr(all, "[j3,j4]"));
    }

    /* Kept by the cluster, listed, and other kinds keep their default. */
    assert_int_equal(dossier_duplicate_rules_list(ops, NULL, &all, &n_all,
                                                  &st),
                     0);
    assert_int_equal(n_all, 1);
    assert_string_equal(all[0].kind, "lead");
    free(all);
    assert_int_equal(
        dossier_duplicate_rules_get(ops, NULL, "contact", &rs, &st), 0);
    assert_false(rs.defined);
    assert_int_equal(rs.n_rules, 2);

    /* Bad rules, each named. */
    assert_int_not_equal(dossier_duplicate_rules_define(ops, NULL, "lead", bad,
                                                        1, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "first_name"));
    bad[0].fields = f_five;
    bad[0].n_fields = 5;
    assert_int_not_equal(dossier_duplicate_rules_define(ops, NULL, "lead", bad,
                                                        1, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    bad[0].n_fields = 4; /* email twice */
    assert_int_not_equal(dossier_duplicate_rules_define(ops, NULL, "lead", bad,
                                                        1, NULL, &st),
                         0);
    assert_non_null(strstr(st.message, "twice"));
    assert_int_not_equal(dossier_duplicate_rules_define(ops, NULL, "lead",
                                                        rules, 0, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_int_not_equal(dossier_duplicate_rules_define(
                             ops, NULL, "spaceship", rules, 1, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_UNKNOWN_KIND);
    /* The set defined before is unchanged. */
    assert_int_equal(dossier_duplicate_rules_get(ops, NULL, "lead", &rs, &st),
                     0);
    assert_int_equal(rs.n_rules, 2);

    dossier_client_close(ops);
    node_destroy(&n);
}

static void put_payer(struct dossier_client *c, const char *id,
                      const char *email, const char *iban)
{
    struct dossier_record *r = dossier_record_new("payer", id, id);
    struct dossier_status st;
    dossier_record_set_string(r, "name", id);
    dossier_record_set_string(r, "email", email);
    dossier_record_set_string(r, "iban", iban);
    if (dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) != 0)
        fail_msg("put %s: %s", id, st.message);
    dossier_record_free(r);
}

/* A group tells that its records share a field's value, so a purpose
 * compares only fields it may see: billing (financial fields only) does
 * not learn that two payers share an e-mail address. A field it may not
 * see is refused when named, and left out (with the rules using it) when
 * the kind's rules are used; fields it may see still group. */
static void test_duplicates_of_fields_the_purpose_may_not_see(void **state)
{
    struct node_proc n;
    struct dossier_client *ops, *billing;
    struct dossier_duplicates d;
    struct dossier_status st;
    struct dossier_purpose p;
    struct dossier_field_schema fields[] = {
        {.name = "name", .type = DOSSIER_FIELD_STRING,
         .category = DOSSIER_CATEGORY_IDENTITY},
        {.name = "email", .type = DOSSIER_FIELD_EMAIL,
         .category = DOSSIER_CATEGORY_CONTACT, .indexed = 1},
        {.name = "iban", .type = DOSSIER_FIELD_STRING,
         .category = DOSSIER_CATEGORY_FINANCIAL, .indexed = 1}};
    const struct dossier_kind_schema payer = {
        .kind = "payer", .personal = 1, .n_fields = 3, .fields = fields};
    const char *f_email[] = {"email"}, *f_iban[] = {"iban"},
               *f_both[] = {"email", "iban"};
    const struct dossier_duplicate_rule rules[] = {
        {"by_email", 1, f_email}, {"by_iban", 1, f_iban},
        {"by_both", 2, f_both}};
    char buf[256];
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    memset(&p, 0, sizeof(p));
    snprintf(p.name, sizeof(p.name), "billing");
    p.categories = 1u << DOSSIER_CATEGORY_FINANCIAL;
    p.basis = DOSSIER_BASIS_CONTRACT;
    assert_int_equal(dossier_purpose_define(ops, NULL, &p, NULL, &st), 0);
    billing = harness_client_as(n.addr, NULL, "billing");
    assert_int_equal(dossier_schema_define(ops, NULL, &payer, NULL, &st), 0);
    /* p1 and p2 share an e-mail address (in another case), p3 and p4 an
     * IBAN. */
    put_payer(ops, "p1", "Dee@Example.com", "DE01");
    put_payer(ops, "p2", "dee@example.COM", "DE02");
    put_payer(ops, "p3", "p3@example.com", "DE03");
    put_payer(ops, "p4", "p4@example.com", "DE03");
    put_payer(ops, "p5", "p5@example.com", "DE05");

    /* Operations sees both fields: two groups. */
    assert_int_equal(
        dossier_find_duplicates(ops, NULL, "payer", NULL, 0, NULL, &d, &st),
        0);
    assert_int_equal(d.n_groups, 2);
    assert_string_equal(find_group(&d, "email", buf, sizeof(buf)), "p1,p2");
    assert_string_equal(find_group(&d, "iban", buf, sizeof(buf)), "p3,p4");
    dossier_duplicates_release(&d);

    /* Billing: the default rules without the e-mail address. */
    assert_int_equal(dossier_find_duplicates(billing, NULL, "payer", NULL, 0,
                                             NULL, &d, &st),
                     0);
    assert_int_equal(d.n_groups, 1);
    assert_string_equal(find_group(&d, "iban", buf, sizeof(buf)), "p3,p4");
    assert_string_equal(group_rules(&d.groups[0], buf, sizeof(buf)), "iban");
    for (size_t j = 0; j < d.groups[0].n_records; j++)
        assert_null(dossier_record_field(d.groups[0].records[j], "email"));
    dossier_duplicates_release(&d);
    /* Named, it is refused, and the refusal names it. */
    assert_int_not_equal(dossier_find_duplicates(billing, NULL, "payer",
                                                 f_email, 1, NULL, &d, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_PERMISSION_DENIED);
    assert_non_null(strstr(st.message, "email"));
    assert_int_equal(dossier_find_duplicates(billing, NULL, "payer", f_iban,
                                             1, NULL, &d, &st),
                     0);
    assert_int_equal(d.n_groups, 1);
    dossier_duplicates_release(&d);

    /* Defined rules: those on the e-mail address are left out. */
    assert_int_equal(dossier_duplicate_rules_define(ops, NULL, "payer", rules,
                                                    3, NULL, &st),
                     0);
    assert_int_equal(dossier_find_duplicates(billing, NULL, "payer", NULL, 0,
                                             NULL, &d, &st),
                     0);
    assert_int_equal(d.n_groups, 1);
    assert_string_equal(find_group(&d, "iban", buf, sizeof(buf)), "p3,p4");
    assert_string_equal(group_rules(&d.groups[0], buf, sizeof(buf)),
                        "by_iban");
    dossier_duplicates_release(&d);
    assert_int_equal(
        dossier_find_duplicates(ops, NULL, "payer", NULL, 0, NULL, &d, &st),
        0);
    assert_int_equal(d.n_groups, 2);
    dossier_duplicates_release(&d);

    dossier_client_close(ops);
    dossier_client_close(billing);
    node_destroy(&n);
}

/* Puts of many records at once, a bounded number in flight. */
struct flight {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int in_flight, failed;
};

static void flight_done(void *arg, const struct dossier_status *st,
                        const struct dossier_put_result *res)
{
    struct flight *f = arg;
    (void)res;
    pthread_mutex_lock(&f->lock);
    f->failed += st->code != 0;
    f->in_flight--;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void flight_put(struct flight *f, struct dossier_client *c,
                       struct dossier_record *r)
{
    struct dossier_status st;
    pthread_mutex_lock(&f->lock);
    while (f->in_flight >= 64)
        pthread_cond_wait(&f->cond, &f->lock);
    f->in_flight++;
    pthread_mutex_unlock(&f->lock);
    if (dossier_put_async(c, NULL, r, DOSSIER_ANY_VERSION, flight_done, f,
                          &st) != 0)
        fail_msg("put %s: %s", r->id, st.message);
    dossier_record_free(r);
}

static void flight_wait(struct flight *f)
{
    pthread_mutex_lock(&f->lock);
    while (f->in_flight > 0)
        pthread_cond_wait(&f->cond, &f->lock);
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(f->failed, 0);
}

static struct dossier_record *visitor(const char *id, const char *code,
                                      const char *ref)
{
    struct dossier_record *r = dossier_record_new("visitor", id, NULL);
    dossier_record_set_string(r, "code", code);
    if (ref)
        dossier_record_set_string(r, "ref", ref);
    return r;
}

/* A page of duplicates reads a bounded part of the index (about 20,000
 * rows and records) and answers with a token when the walk is not done,
 * even with fewer groups than asked; following the tokens finds every
 * group once, also one connected across two rules (x shares a code with
 * y, y a reference with z) and across pages. */
static void test_duplicates_a_page_reads_a_bounded_part(void **state)
{
    enum { SINGLES = 21000, PAIRS = 40, TRIPLES = 10 };
    struct node_proc n;
    struct dossier_client *ops;
    struct dossier_status st;
    struct dossier_field_schema fields[] = {
        {.name = "code", .type = DOSSIER_FIELD_STRING,
         .category = DOSSIER_CATEGORY_OPERATIONAL, .indexed = 1},
        {.name = "ref", .type = DOSSIER_FIELD_STRING,
         .category = DOSSIER_CATEGORY_OPERATIONAL, .indexed = 1}};
    const struct dossier_kind_schema kind = {
        .kind = "visitor", .personal = 0, .n_fields = 2, .fields = fields};
    struct flight f = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0,
                       0};
    struct dossier_page_request pr = {1000, NULL};
    char token[512], buf[256];
    int pages = 0, seen[PAIRS + TRIPLES] = {0}, first_had_token = -1;
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    assert_int_equal(dossier_schema_define(ops, NULL, &kind, NULL, &st), 0);
    for (int i = 0; i < SINGLES; i++) {
        char id[16], code[16];
        snprintf(id, sizeof(id), "s%d", i);
        snprintf(code, sizeof(code), "c%d", i);
        flight_put(&f, ops, visitor(id, code, NULL));
    }
    for (int i = 0; i < PAIRS; i++) {
        char a[16], b[16], code[16];
        snprintf(a, sizeof(a), "p%02da", i);
        snprintf(b, sizeof(b), "p%02db", i);
        snprintf(code, sizeof(code), "pair%d", i);
        flight_put(&f, ops, visitor(a, code, NULL));
        flight_put(&f, ops, visitor(b, code, NULL));
    }
    for (int i = 0; i < TRIPLES; i++) {
        char x[16], y[16], z[16], code[16], ref[16], lone[16];
        snprintf(x, sizeof(x), "t%02dx", i);
        snprintf(y, sizeof(y), "t%02dy", i);
        snprintf(z, sizeof(z), "t%02dz", i);
        snprintf(code, sizeof(code), "tri%d", i);
        snprintf(ref, sizeof(ref), "ref%d", i);
        snprintf(lone, sizeof(lone), "lone%d", i);
        flight_put(&f, ops, visitor(x, code, NULL));
        flight_put(&f, ops, visitor(y, code, ref));
        flight_put(&f, ops, visitor(z, lone, ref));
    }
    flight_wait(&f);

    for (;;) {
        struct dossier_duplicates d;
        assert_int_equal(dossier_find_duplicates(ops, NULL, "visitor", NULL,
                                                 0, &pr, &d, &st),
                         0);
        pages++;
        if (first_had_token < 0)
            first_had_token = d.next_page_token != NULL;
        for (size_t g = 0; g < d.n_groups; g++) {
            int i;
            group_ids(&d.groups[g], buf, sizeof(buf));
            if (sscanf(buf, "p%da", &i) == 1 && i >= 0 && i < PAIRS) {
                char want[32];
                snprintf(want, sizeof(want), "p%02da,p%02db", i, i);
                assert_string_equal(buf, want);
                seen[i]++;
            } else if (sscanf(buf, "t%dx", &i) == 1 && i >= 0 &&
                       i < TRIPLES) {
                char want[32], rules[64];
                snprintf(want, sizeof(want), "t%02dx,t%02dy,t%02dz", i, i, i);
                assert_string_equal(buf, want);
                assert_string_equal(
                    group_rules(&d.groups[g], rules, sizeof(rules)),
                    "code,ref");
                seen[PAIRS + i]++;
            } else {
                fail_msg("unexpected group %s", buf);
            }
        }
        if (!d.next_page_token) {
            dossier_duplicates_release(&d);
            break;
        }
        snprintf(token, sizeof(token), "%s", d.next_page_token);
        pr.page_token = token;
        dossier_duplicates_release(&d);
        assert_true(pages < 50);
    }
    fprintf(stderr, "%d pages of duplicates among %d records\n", pages,
            SINGLES + 2 * PAIRS + 3 * TRIPLES);
    /* The index holds more rows than a page reads. */
    assert_int_equal(first_had_token, 1);
    assert_true(pages >= 2);
    for (int i = 0; i < PAIRS + TRIPLES; i++)
        assert_int_equal(seen[i], 1);

    dossier_client_close(ops);
    node_destroy(&n);
}

/* A page of duplicates holds about 2 MiB of records at most: a group of
 * large records shows its first ones (two at least) and the page ends
 * there, with a token; the next group comes on the next page. Without
 * the cap, the two groups would make one reply of 4.8 MB. */
static void test_duplicates_reply_is_bounded(void **state)
{
    enum { PER_GROUP = 40, BLOB = 60000 };
    struct node_proc n;
    struct dossier_client *ops;
    struct dossier_status st;
    struct dossier_field_schema fields[] = {
        {.name = "code", .type = DOSSIER_FIELD_STRING,
         .category = DOSSIER_CATEGORY_OPERATIONAL, .indexed = 1},
        {.name = "blob", .type = DOSSIER_FIELD_STRING,
         .category = DOSSIER_CATEGORY_OPERATIONAL}};
    const struct dossier_kind_schema kind = {
        .kind = "bulky", .personal = 0, .n_fields = 2, .fields = fields};
    struct dossier_page_request pr = {10, NULL};
    char *blob = malloc(BLOB + 1), token[512];
    size_t shown[2] = {0, 0};
    int pages = 0, groups = 0;
    (void)state;

    assert_non_null(blob);
    memset(blob, 'x', BLOB);
    blob[BLOB] = '\0';
    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    assert_int_equal(dossier_schema_define(ops, NULL, &kind, NULL, &st), 0);
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < PER_GROUP; i++) {
            struct dossier_record *r;
            char id[16];
            snprintf(id, sizeof(id), "b%d-%02d", g, i);
            r = dossier_record_new("bulky", id, NULL);
            dossier_record_set_string(r, "code", g ? "one" : "zero");
            dossier_record_set_string(r, "blob", blob);
            if (dossier_put(ops, NULL, r, DOSSIER_ANY_VERSION, NULL, &st))
                fail_msg("put %s: %s", id, st.message);
            dossier_record_free(r);
        }
    for (;;) {
        struct dossier_duplicates d;
        size_t bytes = 0;
        assert_int_equal(dossier_find_duplicates(ops, NULL, "bulky", NULL, 0,
                                                 &pr, &d, &st),
                         0);
        pages++;
        for (size_t g = 0; g < d.n_groups; g++) {
            int which = d.groups[g].records[0]->id[1] - '0';
            assert_true(d.groups[g].n_records >= 2);
            for (size_t j = 0; j < d.groups[g].n_records; j++) {
                assert_int_equal(d.groups[g].records[j]->id[1] - '0', which);
                bytes += strlen(
                    dossier_record_field(d.groups[g].records[j], "blob")->u.s);
            }
            shown[which] += d.groups[g].n_records;
            groups++;
        }
        /* The cap, and at most one record beyond it. */
        assert_true(bytes <= (2u << 20) + BLOB);
        if (!d.next_page_token) {
            dossier_duplicates_release(&d);
            break;
        }
        snprintf(token, sizeof(token), "%s", d.next_page_token);
        pr.page_token = token;
        dossier_duplicates_release(&d);
        assert_true(pages < 10);
    }
    /* Each group once, each cut to what 2 MiB holds. */
    assert_int_equal(groups, 2);
    assert_true(pages >= 2);
    assert_true(shown[0] >= 2 && shown[0] < PER_GROUP);
    assert_true(shown[1] >= 2 && shown[1] < PER_GROUP);

    free(blob);
    dossier_client_close(ops);
    node_destroy(&n);
}

static void put_deal(struct dossier_client *c, const char *id,
                     const char *stage, double amount, const char *subject)
{
    struct dossier_record *r = dossier_record_new("deal", id, subject);
    struct dossier_status st;
    dossier_record_set_string(r, "name", id);
    dossier_record_set_string(r, "stage", stage);
    if (amount > 0)
        dossier_record_set_double(r, "amount", amount);
    if (dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) != 0)
        fail_msg("put %s: %s", id, st.message);
    dossier_record_free(r);
}

static void put_activity(struct dossier_client *c, const char *id,
                         const char *owner, int64_t at)
{
    struct dossier_record *r = dossier_record_new("activity", id, "s-act");
    struct dossier_status st;
    dossier_record_set_string(r, "type", "call");
    dossier_record_set_string(r, "owner", owner);
    if (at >= 0)
        dossier_record_set_int(r, "occurred_at", at);
    if (dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) != 0)
        fail_msg("put %s: %s", id, st.message);
    dossier_record_free(r);
}

static void test_reports(void **state)
{
    struct node_proc n;
    struct dossier_client *ops, *mkt, *analytics;
    struct dossier_aggregate a;
    struct dossier_status st;
    struct dossier_aggregate_request pipeline = {"deal", "stage", "amount",
                                                 NULL, NULL};
    struct dossier_aggregate_request weekly = {"activity", "owner", NULL,
                                               "occurred_at", "week"};
    /* 2026-11-16 is a Monday. */
    const int64_t mon = INT64_C(1794787200000), day = 86400000;
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    mkt = harness_client_as(n.addr, NULL, "marketing");
    analytics = harness_client_as(n.addr, NULL, "analytics");
    put_deal(ops, "q1", "qualified", 100, NULL);
    put_deal(ops, "q2", "qualified", 250, "s-q2");
    put_deal(ops, "w1", "closed_won", 1000, NULL);
    put_deal(ops, "w2", "closed_won", 500.5, NULL);
    put_deal(ops, "l1", "closed_lost", 0, NULL);

    assert_int_equal(dossier_aggregate(ops, NULL, &pipeline, &a, &st), 0);
    assert_int_equal(a.records, 5);
    assert_int_equal(a.left_out, 0);
    assert_int_equal(a.n_rows, 3);
    assert_string_equal(a.rows[0].key, "closed_lost");
    assert_int_equal(a.rows[0].count, 1);
    assert_true(a.rows[0].sum == 0);
    assert_string_equal(a.rows[1].key, "closed_won");
    assert_int_equal(a.rows[1].count, 2);
    assert_true(a.rows[1].sum == 1500.5);
    assert_string_equal(a.rows[2].key, "qualified");
    assert_int_equal(a.rows[2].count, 2);
    assert_true(a.rows[2].sum == 350);
    dossier_aggregate_release(&a);

    /* Analytics needs consent: q2's subject gave none, so it is left out
     * (counted); amounts are financial, which analytics may not total, and
     * marketing may not even see stages. */
    pipeline.sum = NULL;
    assert_int_equal(dossier_aggregate(analytics, NULL, &pipeline, &a, &st),
                     0);
    assert_int_equal(a.records, 4);
    assert_int_equal(a.left_out, 1);
    assert_string_equal(a.rows[2].key, "qualified");
    assert_int_equal(a.rows[2].count, 1);
    dossier_aggregate_release(&a);
    pipeline.sum = "amount";
    assert_int_not_equal(
        dossier_aggregate(analytics, NULL, &pipeline, &a, &st), 0);
    assert_int_equal(st.code, DOSSIER_PERMISSION_DENIED);
    assert_non_null(strstr(st.message, "amount"));
    assert_int_not_equal(dossier_aggregate(mkt, NULL, &pipeline, &a, &st), 0);
    assert_int_equal(st.code, DOSSIER_PERMISSION_DENIED);
    assert_non_null(strstr(st.message, "stage"));

    /* Activities per owner per week (from Monday, UTC). */
    put_activity(ops, "a1", "amy", mon + 2 * day);
    put_activity(ops, "a2", "amy", mon + 6 * day + 3600000);
    put_activity(ops, "a3", "amy", mon + 7 * day);
    put_activity(ops, "a4", "bob", mon + 1000);
    put_activity(ops, "a5", "bob", -1); /* no time: a group of its own */
    assert_int_equal(dossier_aggregate(ops, NULL, &weekly, &a, &st), 0);
    assert_int_equal(a.n_rows, 4);
    assert_true(a.rows[0].no_time);
    assert_string_equal(a.rows[0].key, "bob");
    memmove(a.rows, a.rows + 1, 3 * sizeof(*a.rows)); /* the timed ones */
    for (size_t i = 0; i < 3; i++)
        assert_false(a.rows[i].no_time);
    assert_true(a.rows[0].bucket_start_ms == mon);
    assert_string_equal(a.rows[0].key, "amy");
    assert_int_equal(a.rows[0].count, 2);
    assert_true(a.rows[1].bucket_start_ms == mon);
    assert_string_equal(a.rows[1].key, "bob");
    assert_true(a.rows[2].bucket_start_ms == mon + 7 * day);
    assert_int_equal(a.rows[2].count, 1);
    dossier_aggregate_release(&a);
    /* analytics rests on consent, which s-act never gave. */
    assert_int_equal(dossier_aggregate(analytics, NULL, &weekly, &a, &st), 0);
    assert_int_equal(a.records, 0);
    assert_int_equal(a.left_out, 5);
    dossier_aggregate_release(&a);

    /* Bad input. */
    weekly.bucket = "year";
    assert_int_not_equal(dossier_aggregate(ops, NULL, &weekly, &a, &st), 0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    weekly.bucket = "week";
    weekly.time_field = NULL;
    assert_int_not_equal(dossier_aggregate(ops, NULL, &weekly, &a, &st), 0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    pipeline.sum = "stage"; /* not a number */
    assert_int_not_equal(dossier_aggregate(ops, NULL, &pipeline, &a, &st), 0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    pipeline.kind = "spaceship";
    assert_int_not_equal(dossier_aggregate(ops, NULL, &pipeline, &a, &st), 0);
    assert_int_equal(st.code, DOSSIER_UNKNOWN_KIND);

    dossier_client_close(ops);
    dossier_client_close(mkt);
    dossier_client_close(analytics);
    node_destroy(&n);
}

struct deleter {
    const char *addr;
    int n, done;
    pthread_mutex_t mu;
};

static void *delete_deals(void *arg)
{
    struct deleter *d = arg;
    struct dossier_client *c = harness_client_as(d->addr, NULL, "operations");
    struct dossier_status st;
    for (int i = 0; i < d->n; i++) {
        char id[16];
        snprintf(id, sizeof(id), "ld%d", i);
        if (dossier_delete(c, NULL, "deal", id, DOSSIER_ANY_VERSION, NULL,
                           &st) != 0)
            fail_msg("delete %s: %s", id, st.message);
    }
    dossier_client_close(c);
    pthread_mutex_lock(&d->mu);
    d->done = 1;
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* Writes @n qualified deals ld0..ld(n-1), each linked to company acme. */
static void put_linked_deals(struct dossier_client *ops, int n)
{
    struct dossier_status st;
    for (int i = 0; i < n; i++) {
        struct dossier_record *rec;
        char id[16];
        snprintf(id, sizeof(id), "ld%d", i);
        rec = dossier_record_new("deal", id, NULL);
        dossier_record_set_string(rec, "name", id);
        dossier_record_set_string(rec, "stage", "qualified");
        dossier_record_add_link(rec, "for", "company", "acme");
        if (dossier_put(ops, NULL, rec, DOSSIER_ANY_VERSION, NULL, &st) != 0)
            fail_msg("put %s: %s", id, st.message);
        dossier_record_free(rec);
    }
}

/* Starts deleting deals ld0..ld(n-1) of the node at @addr on *@t. */
static void deleter_start(struct deleter *d, const char *addr, int n,
                          pthread_t *t)
{
    d->addr = addr;
    d->n = n;
    d->done = 0;
    pthread_mutex_init(&d->mu, NULL);
    assert_int_equal(pthread_create(t, NULL, delete_deals, d), 0);
}

/* A record deleted while a report reads its kind is left out of the
 * report, not a failure of it: reports run while records are deleted
 * (linked records are read a second time, with their links, so a delete
 * between the two reads is seen). */
static void test_report_while_deleting(void **state)
{
    enum { N = 400 };
    struct node_proc n;
    struct dossier_client *ops;
    struct dossier_aggregate a;
    struct dossier_status st;
    struct dossier_aggregate_request r = {"deal", "stage", NULL, NULL, NULL};
    struct deleter d;
    pthread_t t;
    int reports = 0, done = 0;
    uint64_t last = N;
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    put_linked_deals(ops, N);
    deleter_start(&d, n.addr, N, &t);
    while (!done) {
        pthread_mutex_lock(&d.mu);
        done = d.done;
        pthread_mutex_unlock(&d.mu);
        if (dossier_aggregate(ops, NULL, &r, &a, &st) != 0)
            fail_msg("report %d while deleting: %s", reports, st.message);
        /* Fewer and fewer deals, never more. */
        assert_true(a.records <= last);
        last = a.records;
        dossier_aggregate_release(&a);
        reports++;
    }
    pthread_join(t, NULL);
    pthread_mutex_destroy(&d.mu);
    assert_int_equal(last, 0);
    fprintf(stderr, "%d reports while %d linked deals were deleted\n",
            reports, N);

    dossier_client_close(ops);
    node_destroy(&n);
}

/* A record deleted while duplicates are found is left out of its group
 * (or its group out of the page), not a failure: calls go on while
 * linked deals, one group by their stage, are deleted. */
static void test_duplicates_while_deleting(void **state)
{
    enum { N = 400 };
    struct node_proc n;
    struct dossier_client *ops;
    struct dossier_status st;
    const char *by_stage[] = {"stage"};
    struct deleter d;
    pthread_t t;
    int calls = 0, done = 0;
    size_t last = 100;
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    put_linked_deals(ops, N);
    deleter_start(&d, n.addr, N, &t);
    while (!done) {
        struct dossier_duplicates dd;
        size_t shown;
        pthread_mutex_lock(&d.mu);
        done = d.done;
        pthread_mutex_unlock(&d.mu);
        if (dossier_find_duplicates(ops, NULL, "deal", by_stage, 1, NULL, &dd,
                                    &st) != 0)
            fail_msg("call %d while deleting: %s", calls, st.message);
        assert_true(dd.n_groups <= 1);
        /* A group shows its first 100 records: fewer once fewer are
         * left. */
        shown = dd.n_groups ? dd.groups[0].n_records : 0;
        assert_true(shown <= last);
        last = shown;
        dossier_duplicates_release(&dd);
        calls++;
    }
    pthread_join(t, NULL);
    pthread_mutex_destroy(&d.mu);
    assert_int_equal(last, 0);
    fprintf(stderr, "%d calls while %d linked deals were deleted\n", calls,
            N);

    dossier_client_close(ops);
    node_destroy(&n);
}

/* How many records segment @name matches for @c, over every page; -1
 * with @st set when a page fails. */
static long segment_count(struct dossier_client *c, const char *name,
                          struct dossier_status *st)
{
    struct dossier_page_request pr = {0, NULL};
    char token[256];
    long n = 0;

    for (;;) {
        struct dossier_segment_members m;
        if (dossier_segment_run(c, NULL, name, &pr, &m, st) != 0)
            return -1;
        n += (long)m.n_ids;
        if (!m.next_page_token) {
            dossier_segment_members_release(&m);
            return n;
        }
        snprintf(token, sizeof(token), "%s", m.next_page_token);
        pr.page_token = token;
        dossier_segment_members_release(&m);
    }
}

/* A record deleted while a segment runs is no longer a member, not a
 * failure of the run: runs go on while linked deals are deleted (a linked
 * record is read a second time, with its links, so a delete between the
 * two reads is seen). */
static void test_segment_while_deleting(void **state)
{
    enum { N = 400 };
    struct node_proc n;
    struct dossier_client *ops;
    struct dossier_status st;
    const struct dossier_value q = {.type = DOSSIER_TYPE_STRING,
                                    .u.s = "qualified"};
    const struct dossier_segment_condition cond = {
        .field = "stage", .n_any_of = 1, .any_of = &q};
    const struct dossier_segment seg = {.name = "qualified", .kind = "deal",
                                        .n_conditions = 1,
                                        .conditions = &cond};
    struct deleter d;
    pthread_t t;
    int runs = 0, done = 0;
    long last = N;
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    put_linked_deals(ops, N);
    assert_int_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st), 0);
    deleter_start(&d, n.addr, N, &t);
    while (!done) {
        long got;
        pthread_mutex_lock(&d.mu);
        done = d.done;
        pthread_mutex_unlock(&d.mu);
        got = segment_count(ops, "qualified", &st);
        if (got < 0)
            fail_msg("run %d while deleting: %s", runs, st.message);
        /* Pages are read one after another, so a run may miss a deal
         * deleted meanwhile, never count one twice. */
        assert_true(got <= last);
        last = got;
        runs++;
    }
    pthread_join(t, NULL);
    pthread_mutex_destroy(&d.mu);
    assert_int_equal(segment_count(ops, "qualified", &st), 0);
    fprintf(stderr, "%d segment runs while %d linked deals were deleted\n",
            runs, N);

    dossier_client_close(ops);
    node_destroy(&n);
}

/* Timestamps outside years 0 to 9999 (up to the ends of int64) fall in
 * the no_time group of every bucketing, and the node lives on; a time
 * before 1970 falls in its own month. */
static void test_report_extreme_times(void **state)
{
    struct node_proc n;
    struct dossier_client *ops;
    struct dossier_aggregate a;
    struct dossier_status st;
    struct dossier_aggregate_request r = {"activity", NULL, NULL,
                                          "occurred_at", NULL};
    static const char *const buckets[] = {"day", "week", "month"};
    const int64_t extreme[] = {INT64_MIN + 1, INT64_MAX,
                               INT64_C(-62167219200001),  /* year -1 */
                               INT64_C(253402300800000)}; /* year 10000 */
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    for (size_t i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof(id), "x%zu", i);
        {
            struct dossier_record *rec = dossier_record_new("activity", id,
                                                            "s-act");
            dossier_record_set_string(rec, "type", "call");
            dossier_record_set_string(rec, "owner", "amy");
            dossier_record_set_int(rec, "occurred_at", extreme[i]);
            assert_int_equal(dossier_put(ops, NULL, rec, DOSSIER_ANY_VERSION,
                                         NULL, &st),
                             0);
            dossier_record_free(rec);
        }
    }
    {
        /* 1969-12-31T23:59:59.999Z */
        struct dossier_record *rec = dossier_record_new("activity", "early",
                                                        "s-act");
        dossier_record_set_string(rec, "type", "call");
        dossier_record_set_int(rec, "occurred_at", -1);
        assert_int_equal(
            dossier_put(ops, NULL, rec, DOSSIER_ANY_VERSION, NULL, &st), 0);
        dossier_record_free(rec);
    }
    for (size_t b = 0; b < 3; b++) {
        r.bucket = buckets[b];
        if (dossier_aggregate(ops, NULL, &r, &a, &st) != 0)
            fail_msg("per %s: %s", buckets[b], st.message);
        assert_int_equal(a.records, 5);
        assert_int_equal(a.n_rows, 2);
        assert_true(a.rows[0].no_time);
        assert_int_equal(a.rows[0].count, 4);
        assert_false(a.rows[1].no_time);
        assert_int_equal(a.rows[1].count, 1);
        if (b == 0)
            assert_true(a.rows[1].bucket_start_ms == -86400000);
        if (b == 2)
            assert_true(a.rows[1].bucket_start_ms ==
                        INT64_C(-2678400000)); /* 1969-12-01 */
        dossier_aggregate_release(&a);
    }
    /* The node still serves. */
    assert_int_equal(dossier_aggregate(ops, NULL, &r, &a, &st), 0);
    dossier_aggregate_release(&a);

    dossier_client_close(ops);
    node_destroy(&n);
}

static void put_scored(struct dossier_client *c, const char *id,
                       const char *owner, int64_t score)
{
    struct dossier_record *r = dossier_record_new("contact", id, id);
    struct dossier_status st;
    char email[64];
    snprintf(email, sizeof(email), "%s@example.org", id);
    dossier_record_set_string(r, "first_name", id);
    dossier_record_set_string(r, "email", email);
    dossier_record_set_string(r, "phone", "+44 20 7946 0958");
    dossier_record_set_string(r, "country", "GB");
    dossier_record_set_string(r, "owner", owner);
    dossier_record_set_string(r, "lifecycle_stage", "lead");
    dossier_record_set_string(r, "accessibility_needs", "none");
    dossier_record_set_int(r, "lead_score", score);
    dossier_record_set_int(r, "last_seen_at", INT64_C(1764547200000));
    if (dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) != 0)
        fail_msg("put %s: %s", id, st.message);
    dossier_record_free(r);
}

/* Group keys leave the node: a report may not group by a field whose
 * values identify people (e-mail, phone, text of the identity, contact or
 * special category), and a group keyed by another personal field shows
 * only with 3 records or more; operational fields and enumerations group
 * as before. */
static void test_report_keys_identify_no_one(void **state)
{
    struct node_proc n;
    struct dossier_client *ops, *legal;
    struct dossier_aggregate a;
    struct dossier_status st;
    struct dossier_aggregate_request r = {"contact", NULL, NULL, NULL, NULL};
    static const char *const refused[] = {"email", "phone", "first_name",
                                          "country"};
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    legal = harness_client_as(n.addr, NULL, "legal_claims");
    put_scored(ops, "k1", "amy", 10);
    put_scored(ops, "k2", "amy", 10);
    put_scored(ops, "k3", "bob", 10);
    put_scored(ops, "k4", "bob", 20);

    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        r.group_by = refused[i];
        assert_int_not_equal(dossier_aggregate(ops, NULL, &r, &a, &st), 0);
        assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
        assert_non_null(strstr(st.message, refused[i]));
        assert_null(strstr(st.message, "@example.org"));
    }
    /* Special-category text, for a purpose that may see it. */
    r.group_by = "accessibility_needs";
    assert_int_not_equal(dossier_aggregate(legal, NULL, &r, &a, &st), 0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "accessibility_needs"));

    /* Operational text and enumerations: every group, however small. */
    r.group_by = "owner";
    assert_int_equal(dossier_aggregate(ops, NULL, &r, &a, &st), 0);
    assert_int_equal(a.n_rows, 2);
    assert_string_equal(a.rows[0].key, "amy");
    assert_int_equal(a.rows[0].count, 2);
    assert_string_equal(a.rows[1].key, "bob");
    assert_int_equal(a.suppressed, 0);
    dossier_aggregate_release(&a);
    r.group_by = "lifecycle_stage";
    assert_int_equal(dossier_aggregate(ops, NULL, &r, &a, &st), 0);
    assert_int_equal(a.n_rows, 1);
    assert_int_equal(a.rows[0].count, 4);
    dossier_aggregate_release(&a);

    /* A behavioral value: the score of one contact is not shown. */
    r.group_by = "lead_score";
    assert_int_equal(dossier_aggregate(ops, NULL, &r, &a, &st), 0);
    assert_int_equal(a.records, 4);
    assert_int_equal(a.n_rows, 1);
    assert_string_equal(a.rows[0].key, "10");
    assert_int_equal(a.rows[0].count, 3);
    assert_int_equal(a.suppressed, 1);
    dossier_aggregate_release(&a);

    /* A total of a personal field: groups of one or two persons are not
     * shown either (their summed score), a larger one is; a time bucket
     * says when, not whose, so every bucket shows. */
    r.group_by = "owner";
    r.sum = "lead_score";
    assert_int_equal(dossier_aggregate(ops, NULL, &r, &a, &st), 0);
    assert_int_equal(a.n_rows, 0);
    assert_int_equal(a.suppressed, 4);
    dossier_aggregate_release(&a);
    r.group_by = NULL;
    assert_int_equal(dossier_aggregate(ops, NULL, &r, &a, &st), 0);
    assert_int_equal(a.n_rows, 1);
    assert_int_equal(a.rows[0].count, 4);
    assert_true(a.rows[0].sum == 50.0);
    dossier_aggregate_release(&a);
    r.sum = NULL;
    r.group_by = "owner";
    r.time_field = "last_seen_at";
    r.bucket = "day";
    assert_int_equal(dossier_aggregate(ops, NULL, &r, &a, &st), 0);
    assert_int_equal(a.n_rows, 2);
    assert_int_equal(a.suppressed, 0);
    dossier_aggregate_release(&a);
    r.time_field = NULL;
    r.bucket = NULL;

    /* Deals are not a personal kind: a stage of one deal shows its amount
     * in the pipeline report, even when the deal names its contact. */
    {
        struct dossier_aggregate_request dr = {"deal", "stage", "amount",
                                               NULL, NULL};
        struct dossier_record *d = dossier_record_new("deal", "dl-1", "k1");
        dossier_record_set_string(d, "name", "Ann's");
        dossier_record_set_string(d, "stage", "closed_won");
        dossier_record_set_double(d, "amount", 12345.5);
        assert_int_equal(dossier_put(ops, NULL, d, DOSSIER_ANY_VERSION, NULL,
                                     &st),
                         0);
        dossier_record_free(d);
        assert_int_equal(dossier_aggregate(ops, NULL, &dr, &a, &st), 0);
        assert_int_equal(a.n_rows, 1);
        assert_string_equal(a.rows[0].key, "closed_won");
        assert_true(a.rows[0].sum == 12345.5);
        assert_int_equal(a.suppressed, 0);
        dossier_aggregate_release(&a);
    }

    dossier_client_close(ops);
    dossier_client_close(legal);
    node_destroy(&n);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Every id segment @name matches for @c, over pages of @page, sorted and
 * joined with ','; the status code of the first failing page. */
static int run_all(struct dossier_client *c, const char *name, uint32_t page,
                   char *out, size_t cap, struct dossier_status *st)
{
    struct dossier_page_request pr = {page, NULL};
    char *ids[64], token[256];
    size_t n = 0;
    int pages = 0;

    out[0] = '\0';
    for (;;) {
        struct dossier_segment_members m;
        if (dossier_segment_run(c, NULL, name, &pr, &m, st) != 0)
            return st->code;
        for (size_t i = 0; i < m.n_ids && n < 64; i++)
            ids[n++] = strdup(m.ids[i]);
        pages++;
        if (!m.next_page_token) {
            dossier_segment_members_release(&m);
            break;
        }
        snprintf(token, sizeof(token), "%s", m.next_page_token);
        pr.page_token = token;
        dossier_segment_members_release(&m);
        assert_true(pages < 100);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(ids[j], ids[i]) < 0) {
                char *t = ids[i];
                ids[i] = ids[j];
                ids[j] = t;
            }
    for (size_t i = 0; i < n; i++) {
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "",
                 ids[i]);
        free(ids[i]);
    }
    return 0;
}

static void put_owned_deal(struct dossier_client *c, const char *id,
                           const char *stage, const char *owner,
                           const char *subject)
{
    struct dossier_record *r = dossier_record_new("deal", id, subject);
    struct dossier_status st;
    dossier_record_set_string(r, "name", id);
    dossier_record_set_string(r, "stage", stage);
    dossier_record_set_string(r, "owner", owner);
    if (dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) != 0)
        fail_msg("put %s: %s", id, st.message);
    dossier_record_free(r);
}

static void test_segments(void **state)
{
    struct node_proc n;
    struct dossier_client *ops, *mkt, *analytics;
    struct dossier_status st;
    const struct dossier_value stages[] = {
        {.type = DOSSIER_TYPE_STRING, .u.s = "qualified"},
        {.type = DOSSIER_TYPE_STRING, .u.s = "presentation"}};
    const struct dossier_value sam = {.type = DOSSIER_TYPE_STRING,
                                      .u.s = "sam"};
    const struct dossier_segment_condition conds[] = {
        {.field = "stage", .n_any_of = 2, .any_of = stages},
        {.field = "owner", .n_any_of = 1, .any_of = &sam}};
    struct dossier_segment open_deals = {"open_deals", "deal", "sam's open",
                                         2, conds, 0, 0, 0, 0, NULL};
    struct dossier_segment consented = {"consented", "contact", NULL, 0,
                                        NULL, 0, 0, 0, 0, "marketing"};
    struct dossier_segment recent = {"recent", "deal", NULL, 0, NULL,
                                     0, 0, 0, 0, NULL};
    const struct dossier_segment_condition nofield[] = {
        {.field = "colour", .n_any_of = 1, .any_of = &sam}};
    struct dossier_segment bad = {"bad", "deal", NULL, 1, nofield,
                                  0, 0, 0, 0, NULL};
    uint64_t version = 0;
    int64_t cut;
    char ids[512];
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    mkt = harness_client_as(n.addr, NULL, "marketing");
    analytics = harness_client_as(n.addr, NULL, "analytics");
    put_owned_deal(ops, "d1", "qualified", "sam", NULL);
    put_owned_deal(ops, "d2", "presentation", "sam", NULL);
    put_owned_deal(ops, "d3", "qualified", "ines", NULL);
    put_owned_deal(ops, "d4", "closed_won", "sam", NULL);
    usleep(20000);
    cut = now_ms();
    usleep(20000);
    put_owned_deal(ops, "d5", "qualified", "sam", "s-d5");
    put(ops, "c1", "s1", "c1@example.org", NULL);
    put(ops, "c2", "s2", "c2@example.org", NULL);

    assert_int_equal(dossier_segment_define(ops, NULL, &open_deals, &version,
                                            &st),
                     0);
    assert_true(version > 0);
    assert_int_equal(run_all(ops, "open_deals", 0, ids, sizeof(ids), &st), 0);
    assert_string_equal(ids, "d1,d2,d5");
    /* A page at a time: the same members. */
    assert_int_equal(run_all(ops, "open_deals", 1, ids, sizeof(ids), &st), 0);
    assert_string_equal(ids, "d1,d2,d5");
    /* Analytics rests on consent, which d5's subject never gave. */
    assert_int_equal(
        run_all(analytics, "open_deals", 0, ids, sizeof(ids), &st), 0);
    assert_string_equal(ids, "d1,d2");
    /* Marketing may not see stages or owners: the filter would tell. */
    assert_int_equal(run_all(mkt, "open_deals", 0, ids, sizeof(ids), &st),
                     DOSSIER_PERMISSION_DENIED);
    assert_non_null(strstr(st.message, "stage"));

    /* Created after a time. */
    recent.created_after_ms = cut;
    assert_int_equal(dossier_segment_define(ops, NULL, &recent, NULL, &st), 0);
    assert_int_equal(run_all(ops, "recent", 0, ids, sizeof(ids), &st), 0);
    assert_string_equal(ids, "d5");

    /* Consent to a purpose. */
    assert_int_equal(dossier_consent_grant(ops, NULL, "s1", "marketing",
                                           "form", "v1", NULL, &st),
                     0);
    assert_int_equal(dossier_segment_define(ops, NULL, &consented, NULL, &st),
                     0);
    assert_int_equal(run_all(ops, "consented", 0, ids, sizeof(ids), &st), 0);
    assert_string_equal(ids, "c1");

    /* Bad definitions and runs. */
    assert_int_not_equal(dossier_segment_define(ops, NULL, &bad, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "colour"));
    bad.n_conditions = 0;
    bad.kind = "spaceship";
    assert_int_not_equal(dossier_segment_define(ops, NULL, &bad, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_UNKNOWN_KIND);
    bad.kind = "deal";
    bad.name = "Bad Name";
    assert_int_not_equal(dossier_segment_define(ops, NULL, &bad, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(run_all(ops, "nothing_here", 0, ids, sizeof(ids), &st),
                     DOSSIER_NOT_FOUND);

    dossier_client_close(ops);
    dossier_client_close(mkt);
    dossier_client_close(analytics);
    node_destroy(&n);
}

static void put_tagged_deal(struct dossier_client *c, const char *id,
                            double amount, int64_t close, const char *tags)
{
    struct dossier_record *r = dossier_record_new("deal", id, NULL);
    struct dossier_status st;
    dossier_record_set_string(r, "name", id);
    dossier_record_set_string(r, "stage", "qualified");
    if (amount >= 0)
        dossier_record_set_double(r, "amount", amount);
    if (close >= 0)
        dossier_record_set_int(r, "close_date", close);
    if (tags)
        dossier_record_set_string(r, "tags", tags);
    if (dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) != 0)
        fail_msg("put %s: %s", id, st.message);
    dossier_record_free(r);
}

/* Segments by ranges of numbers and times, and by tags: a tags field holds
 * a set of labels, stored normalised (lower case, each once, sorted), and
 * conditions match it by membership (any of, all of, none of). */
static void test_segment_ranges_and_tags(void **state)
{
    struct node_proc n;
    struct dossier_client *ops, *analytics;
    struct dossier_status st;
    struct dossier_record *r;
    /* 2026-11-01 and 2026-12-01, UTC. */
    const int64_t nov = INT64_C(1793491200000), dec = INT64_C(1796083200000);
    const struct dossier_value big = {.type = DOSSIER_TYPE_INT, .u.i = 10000};
    const struct dossier_value cap = {.type = DOSSIER_TYPE_DOUBLE,
                                      .u.d = 50000.5};
    const struct dossier_value from = {.type = DOSSIER_TYPE_INT, .u.i = nov};
    const struct dossier_value to = {.type = DOSSIER_TYPE_INT, .u.i = dec};
    const struct dossier_value vip[] = {
        {.type = DOSSIER_TYPE_STRING, .u.s = "VIP"},
        {.type = DOSSIER_TYPE_STRING, .u.s = "eu"}};
    const struct dossier_value churned = {.type = DOSSIER_TYPE_STRING,
                                          .u.s = "churned"};
    struct dossier_value text = {.type = DOSSIER_TYPE_STRING, .u.s = "lots"};
    struct dossier_segment_condition c_amount[] = {
        {.field = "amount", .at_least = &big, .below = &cap}};
    struct dossier_segment_condition c_close[] = {
        {.field = "close_date", .at_least = &from, .below = &to}};
    struct dossier_segment_condition c_all[] = {
        {.field = "tags", .n_all_of = 2, .all_of = vip}};
    struct dossier_segment_condition c_any_none[] = {
        {.field = "tags", .n_any_of = 2, .any_of = vip},
        {.field = "tags", .n_none_of = 1, .none_of = &churned}};
    struct dossier_segment_condition c_mix[] = {
        {.field = "amount", .at_least = &big},
        {.field = "tags", .n_none_of = 1, .none_of = &churned}};
    struct dossier_segment seg = {.name = "s", .kind = "deal"};
    char ids[512];
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    analytics = harness_client_as(n.addr, NULL, "analytics");
    put_tagged_deal(ops, "t1", 9999.99, nov - 1, "VIP, eu ,vip");
    put_tagged_deal(ops, "t2", 10000, nov, "eu");
    put_tagged_deal(ops, "t3", 50000.5, dec - 1, "vip,EU,churned");
    put_tagged_deal(ops, "t4", 25000, dec, NULL);
    put_tagged_deal(ops, "t5", -1, -1, "");

    /* Tags are stored normalised. */
    assert_int_equal(dossier_get(ops, NULL, "deal", "t1", &r, &st), 0);
    assert_string_equal(dossier_record_field(r, "tags")->u.s, "eu,vip");
    dossier_record_free(r);
    assert_int_equal(dossier_get(ops, NULL, "deal", "t3", &r, &st), 0);
    assert_string_equal(dossier_record_field(r, "tags")->u.s,
                        "churned,eu,vip");
    dossier_record_free(r);

    /* amount in [10000, 50000.5): an int bound on a double field. */
    seg.name = "mid_amount";
    seg.n_conditions = 1;
    seg.conditions = c_amount;
    assert_int_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st), 0);
    assert_int_equal(run_all(ops, "mid_amount", 0, ids, sizeof(ids), &st), 0);
    assert_string_equal(ids, "t2,t4");
    /* Amounts are financial: analytics may not filter on them. */
    assert_int_equal(
        run_all(analytics, "mid_amount", 0, ids, sizeof(ids), &st),
        DOSSIER_PERMISSION_DENIED);

    /* close_date in November: at_least inclusive, below exclusive; a
     * record without one is in no range. */
    seg.name = "closes_in_november";
    seg.conditions = c_close;
    assert_int_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st), 0);
    assert_int_equal(
        run_all(ops, "closes_in_november", 1, ids, sizeof(ids), &st), 0);
    assert_string_equal(ids, "t2,t3");

    /* Every one of the tags (given in any case). */
    seg.name = "vip_eu";
    seg.conditions = c_all;
    assert_int_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st), 0);
    assert_int_equal(run_all(ops, "vip_eu", 0, ids, sizeof(ids), &st), 0);
    assert_string_equal(ids, "t1,t3");

    /* Any of them, and not churned. */
    seg.name = "any_not_churned";
    seg.n_conditions = 2;
    seg.conditions = c_any_none;
    assert_int_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st), 0);
    assert_int_equal(
        run_all(ops, "any_not_churned", 0, ids, sizeof(ids), &st), 0);
    assert_string_equal(ids, "t1,t2");

    /* A range and none_of together; none_of holds for an empty field. */
    seg.name = "big_not_churned";
    seg.conditions = c_mix;
    assert_int_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st), 0);
    assert_int_equal(
        run_all(ops, "big_not_churned", 0, ids, sizeof(ids), &st), 0);
    assert_string_equal(ids, "t2,t4");

    /* Bad definitions, each named. */
    seg.name = "bad";
    seg.n_conditions = 1;
    c_amount[0].field = "stage"; /* a range on an enum */
    seg.conditions = c_amount;
    assert_int_not_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "stage"));
    assert_non_null(strstr(st.message, "range"));
    c_amount[0].field = "amount";
    c_amount[0].below = &text; /* a bound that is no number */
    assert_int_not_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    c_amount[0].below = &cap;
    c_amount[0].n_any_of = 1; /* two forms in one condition */
    c_amount[0].any_of = &big;
    assert_int_not_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "one of"));
    c_all[0].field = "name"; /* all_of on a field without tags */
    seg.conditions = c_all;
    assert_int_not_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "tags"));
    c_all[0].field = "tags";
    c_all[0].n_all_of = 1;
    c_all[0].all_of = &text;
    text.u.s = "a,b"; /* not one tag */
    assert_int_not_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "one tag"));

    /* A tag set that is no tag set is refused on write. */
    {
        struct dossier_record *bad = dossier_record_new("deal", "t9", NULL);
        dossier_record_set_string(bad, "name", "t9");
        dossier_record_set_string(bad, "stage", "qualified");
        dossier_record_set_string(bad, "tags", "ok,not ok");
        assert_int_not_equal(
            dossier_put(ops, NULL, bad, DOSSIER_ANY_VERSION, NULL, &st), 0);
        assert_int_equal(st.code, DOSSIER_SCHEMA_VIOLATION);
        assert_non_null(strstr(st.message, "tags"));
        dossier_record_free(bad);
    }

    dossier_client_close(ops);
    dossier_client_close(analytics);
    node_destroy(&n);
}

/* Values in a condition have the field's type, so that a condition can
 * match: a string for an int field, a fraction for an int field or a
 * value an enumeration does not allow is refused, naming the field and
 * not echoing the value. */
static void test_segment_values_have_their_types(void **state)
{
    struct node_proc n;
    struct dossier_client *ops;
    struct dossier_status st;
    struct dossier_value v = {.type = DOSSIER_TYPE_STRING, .u.s = "forty"};
    struct dossier_segment_condition cond = {.field = "lead_score",
                                             .n_any_of = 1, .any_of = &v};
    struct dossier_segment seg = {.name = "typed", .kind = "contact",
                                  .n_conditions = 1, .conditions = &cond};
    char ids[512];
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    {
        struct dossier_record *r = dossier_record_new("contact", "c40", "s40");
        dossier_record_set_string(r, "first_name", "Forty");
        dossier_record_set_int(r, "lead_score", 40);
        dossier_record_set_string(r, "lifecycle_stage", "lead");
        assert_int_equal(
            dossier_put(ops, NULL, r, DOSSIER_ANY_VERSION, NULL, &st), 0);
        dossier_record_free(r);
    }

    /* {"lead_score": ["forty"]} */
    assert_int_not_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "lead_score"));
    assert_null(strstr(st.message, "forty"));
    /* 40.5 is no int; 40.0 is 40 and matches. */
    v.type = DOSSIER_TYPE_DOUBLE;
    v.u.d = 40.5;
    cond.field = "lead_score";
    assert_int_not_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "lead_score"));
    v.u.d = 40.0;
    assert_int_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st), 0);
    assert_int_equal(run_all(ops, "typed", 0, ids, sizeof(ids), &st), 0);
    assert_string_equal(ids, "c40");
    /* An enumeration's values only. */
    cond.field = "lifecycle_stage";
    v.type = DOSSIER_TYPE_STRING;
    v.u.s = "Lead";
    assert_int_not_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "lifecycle_stage"));
    assert_non_null(strstr(st.message, "allowed"));
    v.u.s = "lead";
    assert_int_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st), 0);
    assert_int_equal(run_all(ops, "typed", 0, ids, sizeof(ids), &st), 0);
    assert_string_equal(ids, "c40");
    /* A flag for a bool field. */
    cond.field = "done";
    seg.kind = "activity";
    assert_int_not_equal(dossier_segment_define(ops, NULL, &seg, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "done"));

    dossier_client_close(ops);
    node_destroy(&n);
}

/* Defines a segment of @kind with the one condition @field any_of @v (or
 * the range at_least @v when @range); returns the status code. */
static int define_one(struct dossier_client *c, const char *kind,
                      const char *field, const struct dossier_value *v,
                      int range, struct dossier_status *st)
{
    struct dossier_segment_condition cond = {.field = field};
    struct dossier_segment seg = {.name = "one", .kind = kind,
                                  .n_conditions = 1, .conditions = &cond};
    if (range)
        cond.at_least = v;
    else {
        cond.n_any_of = 1;
        cond.any_of = v;
    }
    return dossier_segment_define(c, NULL, &seg, NULL, st) ? st->code : 0;
}

/* A segment's definition is kept in the clear (replicated state, raft
 * log) and read back by Get and List, so its conditions hold no personal
 * data: values of e-mail and phone fields, of text, numbers and tags of
 * the identity, contact and special categories, and of text of the
 * behavioral and financial categories are refused, naming the field;
 * enumerations and flags, operational fields, and numbers, times and
 * tags of the behavioral and financial categories are not. */
static void test_segment_conditions_hold_no_personal_data(void **state)
{
    struct node_proc n;
    struct dossier_client *ops;
    struct dossier_status st;
    const struct dossier_value mail = {.type = DOSSIER_TYPE_STRING,
                                       .u.s = "victim.person@example.org"};
    const struct dossier_value name = {.type = DOSSIER_TYPE_STRING,
                                       .u.s = "Victim"};
    const struct dossier_value phone = {.type = DOSSIER_TYPE_STRING,
                                        .u.s = "+44 20 7946 0958"};
    const struct dossier_value forty = {.type = DOSSIER_TYPE_INT, .u.i = 40};
    const struct dossier_value cash = {.type = DOSSIER_TYPE_DOUBLE,
                                       .u.d = 1000};
    const struct dossier_value lead = {.type = DOSSIER_TYPE_STRING,
                                       .u.s = "lead"};
    const struct dossier_value vip = {.type = DOSSIER_TYPE_STRING,
                                      .u.s = "vip"};
    static const struct {
        const char *kind, *field;
    } refused[] = {
        {"contact", "email"},         {"contact", "phone"},
        {"contact", "first_name"},    {"contact", "address"},
        {"contact", "date_of_birth"}, {"contact", "accessibility_needs"},
        {"activity", "title"},        {"activity", "body"},
        {"deal", "currency"},         {"company", "domain"},
    };
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        const struct dossier_value *v =
            !strcmp(refused[i].field, "email")   ? &mail
            : !strcmp(refused[i].field, "phone") ? &phone
                                                 : &name;
        assert_int_equal(
            define_one(ops, refused[i].kind, refused[i].field, v, 0, &st),
            DOSSIER_INVALID_ARGUMENT);
        assert_non_null(strstr(st.message, refused[i].field));
        assert_non_null(strstr(st.message, "clear"));
        /* The value is not echoed. */
        assert_null(strstr(st.message, "ictim"));
    }
    /* Whatever the form. */
    assert_int_equal(define_one(ops, "contact", "email", &mail, 1, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "email"));

    /* Allowed: a behavioral number, a financial number, an operational
     * enumeration, operational tags and text. */
    assert_int_equal(define_one(ops, "contact", "lead_score", &forty, 1, &st),
                     0);
    assert_int_equal(define_one(ops, "contact", "credit_limit", &cash, 1,
                                &st),
                     0);
    assert_int_equal(
        define_one(ops, "contact", "lifecycle_stage", &lead, 0, &st), 0);
    assert_int_equal(define_one(ops, "contact", "tags", &vip, 0, &st), 0);
    assert_int_equal(define_one(ops, "deal", "owner", &name, 0, &st), 0);

    /* A field whose category changed since (a kind may be redefined so)
     * makes its segments stop running until defined again. */
    {
        struct dossier_field_schema f[] = {
            {.name = "source", .type = DOSSIER_FIELD_STRING,
             .category = DOSSIER_CATEGORY_OPERATIONAL}};
        struct dossier_kind_schema k = {.kind = "signup", .personal = 1,
                                        .n_fields = 1, .fields = f};
        const struct dossier_value web = {.type = DOSSIER_TYPE_STRING,
                                          .u.s = "web"};
        char ids[64];
        assert_int_equal(dossier_schema_define(ops, NULL, &k, NULL, &st), 0);
        assert_int_equal(define_one(ops, "signup", "source", &web, 0, &st),
                         0);
        assert_int_equal(run_all(ops, "one", 0, ids, sizeof(ids), &st), 0);
        f[0].category = DOSSIER_CATEGORY_IDENTITY;
        assert_int_equal(dossier_schema_define(ops, NULL, &k, NULL, &st), 0);
        assert_int_equal(run_all(ops, "one", 0, ids, sizeof(ids), &st),
                         DOSSIER_FAILED_PRECONDITION);
        assert_non_null(strstr(st.message, "source"));
        assert_non_null(strstr(st.message, "again"));
    }

    dossier_client_close(ops);
    node_destroy(&n);
}

/* The conditions of @s, as "field:form=value;..." (values as numbers or
 * strings), for comparing a definition read back with what was given. */
static const char *conditions_text(const struct dossier_segment *s, char *out,
                                   size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < s->n_conditions; i++) {
        const struct dossier_segment_condition *c = &s->conditions[i];
        const struct dossier_value *v =
            c->n_any_of ? c->any_of : c->at_least ? c->at_least : c->below;
        const char *form = c->n_any_of ? "any_of" : c->at_least ? "at_least"
                                                                : "below";
        snprintf(out + strlen(out), cap - strlen(out), "%s%s:%s=", i ? ";" : "",
                 c->field, form);
        if (v && v->type == DOSSIER_TYPE_STRING)
            snprintf(out + strlen(out), cap - strlen(out), "%s", v->u.s);
        else if (v && v->type == DOSSIER_TYPE_INT)
            snprintf(out + strlen(out), cap - strlen(out), "%lld",
                     (long long)v->u.i);
        else if (v && v->type == DOSSIER_TYPE_DOUBLE)
            snprintf(out + strlen(out), cap - strlen(out), "%g", v->u.d);
    }
    return out;
}

/* Segment definitions are read as the other definitions of data calls
 * are: by the roles that define and run them (service, admin), for a
 * purpose, and not when they filter on a field the purpose may not see
 * (Get refuses naming the field, List leaves them out): the values in
 * them would tell what the purpose may not know. A definition comes back
 * as it was given. */
static void test_segment_definitions_by_role_and_purpose(void **state)
{
    char tok_admin[65], tok_svc[65], tok_dpo[65], auth[400], text[256];
    const struct harness_principal p[] = {
        {"ops", "admin", tok_admin, "*"},
        {"crm", "service", tok_svc, "operations,marketing"},
        {"dpo", "compliance", tok_dpo, NULL}};
    struct node_proc n;
    struct dossier_client *ops, *mkt, *admin, *dpo;
    struct dossier_status st;
    struct dossier_segment_info info, *all;
    size_t n_all;
    const struct dossier_value thousand = {.type = DOSSIER_TYPE_INT,
                                           .u.i = 1000};
    const struct dossier_value won = {.type = DOSSIER_TYPE_STRING,
                                      .u.s = "closed_won"};
    const struct dossier_segment_condition c_spend[] = {
        {.field = "credit_limit", .at_least = &thousand}};
    const struct dossier_segment_condition c_won[] = {
        {.field = "stage", .n_any_of = 1, .any_of = &won}};
    const struct dossier_segment spenders = {
        .name = "big_spenders", .kind = "contact", .description = "limits",
        .n_conditions = 1, .conditions = c_spend};
    const struct dossier_segment won_deals = {
        .name = "won_deals", .kind = "deal", .n_conditions = 1,
        .conditions = c_won};
    const struct dossier_segment consented = {
        .name = "consented", .kind = "contact",
        .consent_purpose = "marketing"};
    (void)state;

    harness_new_token(tok_admin);
    harness_new_token(tok_svc);
    harness_new_token(tok_dpo);
    node_init(&n);
    snprintf(auth, sizeof(auth), "%s/auth", n.dir);
    harness_write_auth_file(auth, p, 3);
    n.args[0] = "--auth-file";
    n.args[1] = auth;
    n.args[2] = NULL;
    harness_token = tok_admin;
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, tok_svc, "operations");
    mkt = harness_client_as(n.addr, tok_svc, "marketing");
    admin = harness_client_as(n.addr, tok_admin, "operations");
    dpo = harness_client_as(n.addr, tok_dpo, "operations");
    assert_int_equal(dossier_segment_define(ops, NULL, &spenders, NULL, &st),
                     0);
    assert_int_equal(dossier_segment_define(ops, NULL, &won_deals, NULL, &st),
                     0);
    assert_int_equal(dossier_segment_define(ops, NULL, &consented, NULL, &st),
                     0);

    /* Operations sees them all, as they were given. */
    assert_int_equal(dossier_segment_get(ops, NULL, "big_spenders", &info,
                                         &st),
                     0);
    assert_string_equal(info.segment.kind, "contact");
    assert_string_equal(info.segment.description, "limits");
    assert_null(info.segment.consent_purpose);
    assert_true(info.version > 0);
    assert_string_equal(conditions_text(&info.segment, text, sizeof(text)),
                        "credit_limit:at_least=1000");
    dossier_segment_info_release(&info);
    assert_int_equal(dossier_segment_list(ops, NULL, &all, &n_all, &st), 0);
    assert_int_equal(n_all, 3);
    for (size_t i = 0; i < n_all; i++)
        if (!strcmp(all[i].segment.name, "won_deals"))
            assert_string_equal(
                conditions_text(&all[i].segment, text, sizeof(text)),
                "stage:any_of=closed_won");
    dossier_segment_infos_free(all, n_all);
    /* So does an admin, for a purpose. */
    assert_int_equal(dossier_segment_get(admin, NULL, "won_deals", &info,
                                         &st),
                     0);
    dossier_segment_info_release(&info);

    /* Marketing may not see credit limits nor stages: Get refuses, naming
     * the field, and List shows only the segment on consent. */
    assert_int_not_equal(dossier_segment_get(mkt, NULL, "big_spenders", &info,
                                             &st),
                         0);
    assert_int_equal(st.code, DOSSIER_PERMISSION_DENIED);
    assert_non_null(strstr(st.message, "credit_limit"));
    assert_int_equal(dossier_segment_list(mkt, NULL, &all, &n_all, &st), 0);
    assert_int_equal(n_all, 1);
    assert_string_equal(all[0].segment.name, "consented");
    assert_string_equal(all[0].segment.consent_purpose, "marketing");
    dossier_segment_infos_free(all, n_all);

    /* The compliance role neither defines nor reads them. */
    assert_int_not_equal(dossier_segment_get(dpo, NULL, "consented", &info,
                                             &st),
                         0);
    assert_int_equal(st.code, DOSSIER_PERMISSION_DENIED);
    assert_int_not_equal(dossier_segment_list(dpo, NULL, &all, &n_all, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_PERMISSION_DENIED);
    /* Nor does a caller without a purpose. */
    {
        struct dossier_client *none = harness_client_as(n.addr, tok_svc, NULL);
        assert_int_not_equal(
            dossier_segment_list(none, NULL, &all, &n_all, &st), 0);
        assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
        assert_non_null(strstr(st.message, "purpose"));
        dossier_client_close(none);
    }
    assert_int_not_equal(
        dossier_segment_get(ops, NULL, "nothing_here", &info, &st), 0);
    assert_int_equal(st.code, DOSSIER_NOT_FOUND);

    dossier_client_close(ops);
    dossier_client_close(mkt);
    dossier_client_close(admin);
    dossier_client_close(dpo);
    node_destroy(&n);
    harness_token = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_duplicate_rules),
        cmocka_unit_test(test_duplicates_of_fields_the_purpose_may_not_see),
        cmocka_unit_test(test_duplicates_a_page_reads_a_bounded_part),
        cmocka_unit_test(test_duplicates_reply_is_bounded),
        cmocka_unit_test(test_reports),
        cmocka_unit_test(test_report_keys_identify_no_one),
        cmocka_unit_test(test_report_extreme_times),
        cmocka_unit_test(test_report_while_deleting),
        cmocka_unit_test(test_segments),
        cmocka_unit_test(test_segment_ranges_and_tags),
        cmocka_unit_test(test_segment_values_have_their_types),
        cmocka_unit_test(test_segment_conditions_hold_no_personal_data),
        cmocka_unit_test(test_segment_definitions_by_role_and_purpose),
        cmocka_unit_test(test_segment_while_deleting),
        cmocka_unit_test(test_duplicates_while_deleting),
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
