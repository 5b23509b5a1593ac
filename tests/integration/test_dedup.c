/* Duplicate detection against a real node, through libdossier: records
 * sharing an e-mail address (in any case) or a phone number (however
 * written) are grouped per field, through the blind indexes; a purpose
 * sees only the records it may read, and a group left with one record is
 * not one; groups come a page at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

    /* Every indexed field: one group per shared value. */
    assert_int_equal(
        dossier_find_duplicates(ops, NULL, "contact", NULL, 0, NULL, &d, &st),
        0);
    assert_int_equal(d.n_groups, 2);
    assert_string_equal(find_group(&d, "email", buf, sizeof(buf)),
                        "d1,d2,d4");
    assert_string_equal(find_group(&d, "phone", buf, sizeof(buf)), "d1,d3");
    assert_null(d.next_page_token);
    /* Records come as Get returns them for the purpose. */
    for (size_t i = 0; i < d.n_groups; i++)
        for (size_t j = 0; j < d.groups[i].n_records; j++) {
            assert_non_null(
                dossier_record_field(d.groups[i].records[j], "email"));
            assert_null(dossier_record_field(d.groups[i].records[j],
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

    /* Marketing needs consent: s1 and s2 gave it. d4 is left out of the
     * e-mail group, and the phone group (d1 and d3) is no group for it. */
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
    dossier_duplicates_release(&d);

    /* A page of one group, then the rest from its token. */
    pr.page_size = 1;
    assert_int_equal(
        dossier_find_duplicates(ops, NULL, "contact", NULL, 0, &pr, &d, &st),
        0);
    assert_int_equal(d.n_groups, 1);
    assert_non_null(d.next_page_token);
    {
        char first[65], token[256];
        struct dossier_duplicates d2;
        size_t more = 0;
        snprintf(first, sizeof(first), "%s", d.groups[0].field);
        snprintf(token, sizeof(token), "%s", d.next_page_token);
        dossier_duplicates_release(&d);
        pr.page_token = token;
        assert_int_equal(dossier_find_duplicates(ops, NULL, "contact", NULL, 0,
                                                 &pr, &d2, &st),
                         0);
        more = d2.n_groups;
        assert_int_equal(more, 1);
        assert_string_not_equal(d2.groups[0].field, first);
        dossier_duplicates_release(&d2);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duplicates),
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
