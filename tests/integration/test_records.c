/* Records and schemas through libdossier against a real dossierd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dossier/dossier.h>

#include "harness.h"

static struct node_proc node;
static struct dossier_client *client;

static int group_setup(void **state)
{
    (void)state;
    node_init(&node);
    if (node_start(&node, NULL) != 0)
        return -1;
    client = node_client(&node);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    dossier_client_close(client);
    assert_int_equal(node_stop(&node), 0);
    node_destroy(&node);
    return 0;
}

/* A contact of subject @sid with an email and a first name. */
static struct dossier_record *contact(const char *id, const char *sid,
                                      const char *email, const char *name)
{
    struct dossier_record *r = dossier_record_new("contact", id, sid);
    assert_non_null(r);
    if (email)
        assert_int_equal(dossier_record_set_string(r, "email", email), 0);
    if (name)
        assert_int_equal(dossier_record_set_string(r, "first_name", name), 0);
    return r;
}

static uint64_t put_ok(struct dossier_record *r, uint64_t expected)
{
    struct dossier_put_result res;
    struct dossier_status st;
    int rc = dossier_put(client, NULL, r, expected, &res, &st);
    if (rc)
        fprintf(stderr, "put failed: %s %s\n", dossier_code_name(rc),
                st.message);
    assert_int_equal(rc, 0);
    return res.version;
}

static int put_code(struct dossier_record *r, uint64_t expected,
                    struct dossier_status *st)
{
    return dossier_put(client, NULL, r, expected, NULL, st);
}

static struct dossier_record *get_ok(const char *kind, const char *id)
{
    struct dossier_record *r;
    struct dossier_status st;
    int rc = dossier_get(client, NULL, kind, id, &r, &st);
    if (rc)
        fprintf(stderr, "get failed: %s %s\n", dossier_code_name(rc),
                st.message);
    assert_int_equal(rc, 0);
    return r;
}

static int get_code(const char *kind, const char *id)
{
    struct dossier_record *r = NULL;
    struct dossier_status st;
    int rc = dossier_get(client, NULL, kind, id, &r, &st);
    dossier_record_free(r);
    return rc;
}

static const char *field_str(const struct dossier_record *r, const char *name)
{
    const struct dossier_value *v = dossier_record_field(r, name);
    if (!v || v->type != DOSSIER_TYPE_STRING)
        return NULL;
    return v->u.s;
}

/* ------------------------------------------------------------------ */

/* Every value type, links and the subject come back as written, phones in
 * E.164. */
static void test_put_get_round_trips_every_type(void **state)
{
    struct dossier_record *r = contact("rt-1", "subj-rt", "Ann@Example.com",
                                       "Ann");
    struct dossier_record *got;
    const struct dossier_value *v;
    uint64_t version;
    (void)state;

    dossier_record_set_string(r, "phone", "+44 (20) 7946-0018");
    dossier_record_set_int(r, "lead_score", -42);
    dossier_record_set_double(r, "credit_limit", 1234.5);
    dossier_record_set_int(r, "last_seen_at", 1795400000123LL);
    dossier_record_set_string(r, "lifecycle_stage", "customer");
    dossier_record_set_string(r, "accessibility_needs", "wheelchair \xc3\xa9");
    dossier_record_add_link(r, "works_at", "company", "acme");
    version = put_ok(r, DOSSIER_ANY_VERSION);
    assert_true(version > 0);

    got = get_ok("contact", "rt-1");
    assert_string_equal(got->kind, "contact");
    assert_string_equal(got->id, "rt-1");
    assert_string_equal(got->subject_id, "subj-rt");
    assert_int_equal(got->version, version);
    assert_true(got->created_at_ms > 0);
    assert_int_equal(got->created_at_ms, got->updated_at_ms);
    assert_string_equal(field_str(got, "email"), "Ann@Example.com");
    assert_string_equal(field_str(got, "first_name"), "Ann");
    assert_string_equal(field_str(got, "phone"), "+442079460018");
    assert_string_equal(field_str(got, "lifecycle_stage"), "customer");
    assert_string_equal(field_str(got, "accessibility_needs"),
                        "wheelchair \xc3\xa9");
    v = dossier_record_field(got, "lead_score");
    assert_non_null(v);
    assert_int_equal(v->type, DOSSIER_TYPE_INT);
    assert_int_equal(v->u.i, -42);
    v = dossier_record_field(got, "credit_limit");
    assert_non_null(v);
    assert_int_equal(v->type, DOSSIER_TYPE_DOUBLE);
    assert_true(v->u.d == 1234.5);
    v = dossier_record_field(got, "last_seen_at");
    assert_int_equal(v->u.i, 1795400000123LL);
    assert_int_equal(got->n_fields, 8);
    assert_int_equal(got->n_links, 1);
    assert_string_equal(got->links[0].label, "works_at");
    assert_string_equal(got->links[0].kind, "company");
    assert_string_equal(got->links[0].id, "acme");
    dossier_record_free(got);
    dossier_record_free(r);
}

/* A Put replaces the whole record and keeps its creation time. */
static void test_put_replaces_fields_and_keeps_created_time(void **state)
{
    struct dossier_record *r = contact("rp-1", "subj-rp", "a@x.example", "A");
    struct dossier_record *first, *second;
    uint64_t v1, v2;
    (void)state;

    v1 = put_ok(r, DOSSIER_ANY_VERSION);
    first = get_ok("contact", "rp-1");
    dossier_record_free(r);
    r = contact("rp-1", "subj-rp", NULL, "B");
    v2 = put_ok(r, v1);
    assert_true(v2 > v1);
    second = get_ok("contact", "rp-1");
    assert_null(dossier_record_field(second, "email"));
    assert_string_equal(field_str(second, "first_name"), "B");
    assert_int_equal(second->created_at_ms, first->created_at_ms);
    assert_true(second->updated_at_ms >= first->updated_at_ms);
    dossier_record_free(first);
    dossier_record_free(second);
    dossier_record_free(r);
}

/* A stale expected version is refused and changes nothing. */
static void test_version_conflict_changes_nothing(void **state)
{
    struct dossier_record *r = contact("vc-1", "subj-vc", NULL, "Old");
    struct dossier_record *got;
    struct dossier_status st;
    uint64_t v;
    (void)state;

    v = put_ok(r, DOSSIER_ANY_VERSION);
    dossier_record_free(r);
    r = contact("vc-1", "subj-vc", NULL, "New");
    assert_int_equal(put_code(r, v + 1000, &st), DOSSIER_VERSION_CONFLICT);
    assert_non_null(strstr(st.message, "version"));
    got = get_ok("contact", "vc-1");
    assert_string_equal(field_str(got, "first_name"), "Old");
    assert_int_equal(got->version, v);
    dossier_record_free(got);
    dossier_record_free(r);
}

/* expected_version 0 creates a new record and refuses an existing one;
 * a positive expected version on a missing record is NOT_FOUND. */
static void test_create_only_and_update_only(void **state)
{
    struct dossier_record *r = contact("co-1", "subj-co", NULL, "X");
    struct dossier_status st;
    (void)state;

    assert_int_equal(put_code(r, 7, &st), DOSSIER_NOT_FOUND);
    assert_int_equal(get_code("contact", "co-1"), DOSSIER_NOT_FOUND);
    put_ok(r, 0);
    assert_int_equal(put_code(r, 0, &st), DOSSIER_ALREADY_EXISTS);
    dossier_record_free(r);
}

/* Delete removes the record; deleting again or a wrong version fails. */
static void test_delete(void **state)
{
    struct dossier_record *r = contact("del-1", "subj-del", "del@x.example",
                                       "D");
    struct dossier_status st;
    uint64_t v, deleted;
    struct dossier_value email = {DOSSIER_TYPE_STRING, {.s = "del@x.example"}};
    struct dossier_page page;
    (void)state;

    v = put_ok(r, DOSSIER_ANY_VERSION);
    assert_int_equal(dossier_delete(client, NULL, "contact", "del-1", v + 1,
                                    &deleted, &st),
                     DOSSIER_VERSION_CONFLICT);
    assert_int_equal(get_code("contact", "del-1"), 0);
    assert_int_equal(
        dossier_delete(client, NULL, "contact", "del-1", v, &deleted, &st), 0);
    assert_int_equal(deleted, v);
    assert_int_equal(get_code("contact", "del-1"), DOSSIER_NOT_FOUND);
    assert_int_equal(dossier_delete(client, NULL, "contact", "del-1",
                                    DOSSIER_ANY_VERSION, NULL, &st),
                     DOSSIER_NOT_FOUND);
    /* Its index entries and subject membership went with it. */
    assert_int_equal(
        dossier_find(client, NULL, "contact", "email", &email, NULL, &page, &st),
        0);
    assert_int_equal(page.n_records, 0);
    dossier_page_release(&page);
    assert_int_equal(dossier_list_by_subject(client, NULL, "subj-del", NULL,
                                             NULL, &page, &st),
                     0);
    assert_int_equal(page.n_records, 0);
    dossier_page_release(&page);
    dossier_record_free(r);
}

/* Versions are never reused, even for a record deleted and made again. */
static void test_versions_never_reused(void **state)
{
    struct dossier_record *r = contact("nr-1", "subj-nr", NULL, "N");
    struct dossier_status st;
    uint64_t a, b;
    (void)state;

    a = put_ok(r, DOSSIER_ANY_VERSION);
    assert_int_equal(dossier_delete(client, NULL, "contact", "nr-1",
                                    DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    b = put_ok(r, 0);
    assert_true(b > a);
    dossier_record_free(r);
}

/* Collects every page of a listing; returns the number of records and
 * checks no id comes twice. */
enum listing { BY_SUBJECT, BY_SCAN };

static size_t collect(enum listing which, const char *arg, const char *kind,
                      uint32_t page_size, size_t *pages)
{
    struct dossier_page_request pr = {page_size, NULL};
    char **ids = NULL;
    size_t n = 0;
    char *token = NULL;

    *pages = 0;
    for (;;) {
        struct dossier_page page;
        struct dossier_status st;
        int rc = which == BY_SUBJECT
                     ? dossier_list_by_subject(client, NULL, arg, kind, &pr,
                                               &page, &st)
                     : dossier_scan(client, NULL, arg, &pr, &page, &st);
        assert_int_equal(rc, 0);
        (*pages)++;
        assert_true(page.n_records <= page_size);
        for (size_t i = 0; i < page.n_records; i++) {
            char key[300];
            snprintf(key, sizeof(key), "%s/%s", page.records[i]->kind,
                     page.records[i]->id);
            for (size_t j = 0; j < n; j++)
                assert_string_not_equal(ids[j], key);
            ids = realloc(ids, (n + 1) * sizeof(*ids));
            ids[n++] = strdup(key);
        }
        free(token);
        token = page.next_page_token;
        page.next_page_token = NULL;
        dossier_page_release(&page);
        if (!token)
            break;
        pr.page_token = token;
    }
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return n;
}

/* ListBySubject returns every record of the subject once, page by page,
 * and filters by kind. */
static void test_list_by_subject_pages(void **state)
{
    struct dossier_record *r = contact("ls-c", "subj-ls", NULL, "L");
    size_t pages;
    (void)state;

    put_ok(r, DOSSIER_ANY_VERSION);
    dossier_record_free(r);
    for (int i = 0; i < 24; i++) {
        char id[32];
        snprintf(id, sizeof(id), "ls-a%02d", i);
        r = dossier_record_new("activity", id, "subj-ls");
        dossier_record_set_string(r, "type", i % 2 ? "call" : "note");
        put_ok(r, DOSSIER_ANY_VERSION);
        dossier_record_free(r);
    }
    /* A record of another subject stays out. */
    r = contact("ls-other", "subj-ls-other", NULL, "O");
    put_ok(r, DOSSIER_ANY_VERSION);
    dossier_record_free(r);

    assert_int_equal(collect(BY_SUBJECT, "subj-ls", NULL, 10, &pages), 25);
    assert_int_equal(pages, 3);
    assert_int_equal(collect(BY_SUBJECT, "subj-ls", "activity", 100, &pages),
                     24);
    assert_int_equal(pages, 1);
    assert_int_equal(collect(BY_SUBJECT, "subj-none", NULL, 10, &pages), 0);
}

/* FindByIndex compares emails case-insensitively and phones in E.164, and
 * follows updates. */
static void test_find_by_index_follows_normalisation_and_updates(void **state)
{
    struct dossier_record *r = contact("fi-1", "subj-fi", "Finder@Example.COM",
                                       "F");
    struct dossier_value q = {DOSSIER_TYPE_STRING, {.s = "finder@example.com"}};
    struct dossier_page page;
    struct dossier_status st;
    (void)state;

    dossier_record_set_string(r, "phone", "0049 30 1234567");
    put_ok(r, DOSSIER_ANY_VERSION);
    assert_int_equal(
        dossier_find(client, NULL, "contact", "email", &q, NULL, &page, &st), 0);
    assert_int_equal(page.n_records, 1);
    assert_string_equal(page.records[0]->id, "fi-1");
    dossier_page_release(&page);

    q.u.s = "+49 (30) 123-4567";
    assert_int_equal(
        dossier_find(client, NULL, "contact", "phone", &q, NULL, &page, &st), 0);
    assert_int_equal(page.n_records, 1);
    dossier_page_release(&page);

    /* Change the email: the old one finds nothing, the new one finds it. */
    dossier_record_set_string(r, "email", "moved@example.com");
    put_ok(r, DOSSIER_ANY_VERSION);
    q.u.s = "finder@example.com";
    assert_int_equal(
        dossier_find(client, NULL, "contact", "email", &q, NULL, &page, &st), 0);
    assert_int_equal(page.n_records, 0);
    dossier_page_release(&page);
    q.u.s = "MOVED@example.com";
    assert_int_equal(
        dossier_find(client, NULL, "contact", "email", &q, NULL, &page, &st), 0);
    assert_int_equal(page.n_records, 1);
    dossier_page_release(&page);
    dossier_record_free(r);

    /* An unindexed field cannot be searched. */
    q.u.s = "F";
    assert_int_equal(dossier_find(client, NULL, "contact", "first_name", &q,
                                  NULL, &page, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "not indexed"));
}

/* Scan visits every record of a kind exactly once across pages, and
 * refuses a token it did not issue. */
static void test_scan_pages_through_a_kind(void **state)
{
    struct dossier_field_schema f[] = {
        {"n", DOSSIER_FIELD_INT, DOSSIER_CATEGORY_OPERATIONAL, 0, 0, 0, 0, NULL,
         NULL},
    };
    struct dossier_kind_schema k = {"scan_probe", 0, 0, 0, "", 1, f, 0,
                                    DOSSIER_RETENTION_SINCE_UPDATE};
    struct dossier_page_request pr = {10, "zz"};
    struct dossier_page page;
    struct dossier_status st;
    size_t pages;
    (void)state;

    assert_int_equal(dossier_schema_define(client, NULL, &k, NULL, &st), 0);
    for (int i = 0; i < 250; i++) {
        char id[32];
        struct dossier_record *r;
        snprintf(id, sizeof(id), "sp-%d", i);
        r = dossier_record_new("scan_probe", id, NULL);
        dossier_record_set_int(r, "n", i);
        put_ok(r, DOSSIER_ANY_VERSION);
        dossier_record_free(r);
    }
    assert_int_equal(collect(BY_SCAN, "scan_probe", NULL, 100, &pages), 250);
    assert_int_equal(pages, 3);
    assert_int_equal(dossier_scan(client, NULL, "scan_probe", &pr, &page, &st),
                     DOSSIER_INVALID_ARGUMENT);
}

/* Each kind of bad record is refused with the right code, a message naming
 * what is wrong, and nothing written. */
static void test_bad_records_are_refused_and_write_nothing(void **state)
{
    struct {
        const char *what;
        const char *kind, *id, *subject, *field, *value;
        int int_value;
        int code;
        const char *message_part;
    } cases[] = {
        {"unknown kind", "spaceship", "b1", "s", "name", "x", 0,
         DOSSIER_UNKNOWN_KIND, "spaceship"},
        {"field not in schema", "contact", "b2", "s", "shoe_size", "x", 0,
         DOSSIER_SCHEMA_VIOLATION, "shoe_size"},
        {"wrong type", "contact", "b3", "s", "lead_score", "high", 0,
         DOSSIER_SCHEMA_VIOLATION, "lead_score"},
        {"empty id", "contact", "", "s", "first_name", "x", 0,
         DOSSIER_INVALID_ARGUMENT, "id"},
        {"personal kind without subject", "contact", "b5", NULL, "first_name",
         "x", 0, DOSSIER_SCHEMA_VIOLATION, "subject_id"},
        {"bad email", "contact", "b6", "s", "email", "not-an-email", 0,
         DOSSIER_SCHEMA_VIOLATION, "email"},
        {"phone without country code", "contact", "b7", "s", "phone",
         "020 7946 0018", 0, DOSSIER_SCHEMA_VIOLATION, "phone"},
        {"enum value not allowed", "contact", "b8", "s", "lifecycle_stage",
         "wizard", 0, DOSSIER_SCHEMA_VIOLATION, "lifecycle_stage"},
        {"missing required field", "company", "b9", NULL, "industry", "x", 0,
         DOSSIER_SCHEMA_VIOLATION, "name"},
        {"invalid UTF-8", "contact", "b10", "s", "first_name", "\xc3\x28", 0,
         DOSSIER_SCHEMA_VIOLATION, "UTF-8"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dossier_record *r =
            dossier_record_new(cases[i].kind, cases[i].id, cases[i].subject);
        struct dossier_status st;
        int rc;
        dossier_record_set_string(r, cases[i].field, cases[i].value);
        rc = put_code(r, DOSSIER_ANY_VERSION, &st);
        if (rc != cases[i].code || !strstr(st.message, cases[i].message_part))
            fprintf(stderr, "case '%s': got %s '%s'\n", cases[i].what,
                    dossier_code_name(rc), st.message);
        assert_int_equal(rc, cases[i].code);
        assert_non_null(strstr(st.message, cases[i].message_part));
        if (cases[i].id[0] && rc != DOSSIER_UNKNOWN_KIND)
            assert_int_equal(get_code(cases[i].kind, cases[i].id),
                             DOSSIER_NOT_FOUND);
        dossier_record_free(r);
    }
}

/* A request over the node's message limit is refused by size, and the node
 * keeps serving. */
static void test_oversized_request_refused(void **state)
{
    size_t big = 5u << 20;
    char *text = malloc(big + 1);
    struct dossier_record *r = contact("big-1", "subj-big", NULL, NULL);
    struct dossier_status st;
    (void)state;

    memset(text, 'a', big);
    text[big] = '\0';
    dossier_record_set_string(r, "address", text);
    assert_int_equal(put_code(r, DOSSIER_ANY_VERSION, &st), DOSSIER_TOO_LARGE);
    assert_int_equal(get_code("contact", "big-1"), DOSSIER_NOT_FOUND);
    free(text);
    dossier_record_free(r);
}

/* A reply over the client's own limit (max_message_bytes) is refused as
 * TOO_LARGE, and the same client reads it once the limit allows. */
static void test_reply_over_the_client_limit_refused(void **state)
{
    struct dossier_client_options o;
    struct dossier_client *small;
    struct dossier_record *r = contact("big-reply", "subj-big-reply", NULL,
                                       NULL), *got = NULL;
    struct dossier_status st;
    char text[3001];
    (void)state;

    memset(text, 'b', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    assert_int_equal(dossier_record_set_string(r, "address", text), 0);
    put_ok(r, DOSSIER_ANY_VERSION);
    dossier_client_options_init(&o);
    o.target = node.addr;
    o.purpose = harness_purpose;
    o.token = harness_token;
    o.max_message_bytes = 1000;
    assert_int_equal(dossier_client_open(&o, &small, &st), 0);
    assert_int_equal(dossier_get(small, NULL, "contact", "big-reply", &got,
                                 &st),
                     DOSSIER_TOO_LARGE);
    assert_null(got);
    assert_non_null(strstr(st.message, "max_message_bytes"));
    dossier_client_close(small);
    assert_int_equal(get_code("contact", "big-reply"), DOSSIER_OK);
    dossier_record_free(r);
}

/* A call to a node that does not answer (stopped with SIGSTOP) ends with
 * DEADLINE_EXCEEDED once its deadline passed, not later; the node answers
 * again once it runs. */
static void test_deadline_of_a_call_to_a_frozen_node(void **state)
{
    struct dossier_client *c = harness_client(node.addr, 500);
    struct dossier_record *got = NULL;
    struct dossier_status st;
    struct timespec t0, t1;
    double waited;
    int rc;
    (void)state;

    assert_int_equal(kill(node.pid, SIGSTOP), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = dossier_get(c, NULL, "contact", "big-reply", &got, &st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(kill(node.pid, SIGCONT), 0);
    assert_int_equal(rc, DOSSIER_DEADLINE_EXCEEDED);
    assert_null(got);
    /* Not a speed check: a client that ignored its deadline would wait
     * for the node forever, so anything under a minute tells them apart. */
    waited = (double)(t1.tv_sec - t0.tv_sec) +
             (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(waited >= 0.4 && waited < 60.0);
    dossier_client_close(c);
    assert_int_equal(get_code("contact", "big-reply"), DOSSIER_OK);
}

/* A record without a subject (a company) round-trips. */
static void test_company_without_subject(void **state)
{
    struct dossier_record *r = dossier_record_new("company", "acme", NULL);
    struct dossier_record *got;
    (void)state;

    dossier_record_set_string(r, "name", "Acme Ltd");
    dossier_record_set_int(r, "employees", 120);
    put_ok(r, DOSSIER_ANY_VERSION);
    got = get_ok("company", "acme");
    assert_null(got->subject_id);
    assert_string_equal(field_str(got, "name"), "Acme Ltd");
    dossier_record_free(got);
    dossier_record_free(r);
}

/* Kinds can be defined, read, listed and extended; incompatible changes
 * and incomplete definitions are refused. */
static void test_schema_define_extend_and_refuse(void **state)
{
    const char *tiers[] = {"gold", "silver"};
    struct dossier_field_schema f[] = {
        {"tier", DOSSIER_FIELD_ENUM, DOSSIER_CATEGORY_OPERATIONAL, 1, 1, 0, 2,
         tiers, "loyalty tier"},
        {"points", DOSSIER_FIELD_INT, DOSSIER_CATEGORY_BEHAVIORAL, 0, 0, 365, 0,
         NULL, NULL},
    };
    struct dossier_kind_schema k = {"loyalty_member", 1, 0, 0, "members", 2, f,
                                    0, DOSSIER_RETENTION_SINCE_UPDATE};
    struct dossier_kind_schema *got, **all;
    struct dossier_status st;
    struct dossier_record *r;
    size_t n;
    int seen_builtin = 0, seen_new = 0;
    (void)state;

    assert_int_equal(dossier_schema_define(client, NULL, &k, &got, &st), 0);
    assert_string_equal(got->kind, "loyalty_member");
    assert_true(got->version > 0);
    assert_false(got->builtin);
    dossier_kind_schema_free(got);

    assert_int_equal(dossier_schema_get(client, NULL, "loyalty_member", &got,
                                        &st),
                     0);
    assert_int_equal(got->n_fields, 2);
    assert_int_equal(got->fields[0].type, DOSSIER_FIELD_ENUM);
    assert_int_equal(got->fields[0].n_allowed_values, 2);
    assert_int_equal(got->fields[1].retention_days, 365);
    dossier_kind_schema_free(got);

    assert_int_equal(dossier_schema_list(client, NULL, &all, &n, &st), 0);
    for (size_t i = 0; i < n; i++) {
        seen_builtin += strcmp(all[i]->kind, "contact") == 0 && all[i]->builtin;
        seen_new += strcmp(all[i]->kind, "loyalty_member") == 0;
        if (i > 0)
            assert_true(strcmp(all[i - 1]->kind, all[i]->kind) < 0);
    }
    for (size_t i = 0; i < n; i++)
        dossier_kind_schema_free(all[i]);
    free(all);
    assert_int_equal(seen_builtin, 1);
    assert_int_equal(seen_new, 1);

    /* Records follow the definition. */
    r = dossier_record_new("loyalty_member", "lm-1", "subj-lm");
    dossier_record_set_string(r, "tier", "gold");
    put_ok(r, DOSSIER_ANY_VERSION);
    dossier_record_free(r);

    /* Changing a field's type is refused; adding a field is allowed. */
    f[1].type = DOSSIER_FIELD_STRING;
    assert_int_equal(dossier_schema_define(client, NULL, &k, NULL, &st),
                     DOSSIER_FAILED_PRECONDITION);
    assert_non_null(strstr(st.message, "points"));
    f[1].type = DOSSIER_FIELD_INT;
    {
        struct dossier_field_schema f3[3] = {
            f[0], f[1],
            {"nickname", DOSSIER_FIELD_STRING, DOSSIER_CATEGORY_IDENTITY, 0, 0,
             0, 0, NULL, NULL}};
        struct dossier_kind_schema k3 = k;
        k3.fields = f3;
        k3.n_fields = 3;
        assert_int_equal(dossier_schema_define(client, NULL, &k3, NULL, &st),
                         0);
        r = dossier_record_new("loyalty_member", "lm-2", "subj-lm");
        dossier_record_set_string(r, "tier", "silver");
        dossier_record_set_string(r, "nickname", "Sil");
        put_ok(r, DOSSIER_ANY_VERSION);
        dossier_record_free(r);
    }

    /* A field without a category is an incomplete definition. */
    {
        struct dossier_field_schema bad[] = {
            {"x", DOSSIER_FIELD_STRING, DOSSIER_CATEGORY_UNSPECIFIED, 0, 0, 0,
             0, NULL, NULL}};
        struct dossier_kind_schema kb = {"bad_kind", 0, 0, 0, "", 1, bad, 0,
                                         DOSSIER_RETENTION_SINCE_UPDATE};
        assert_int_equal(dossier_schema_define(client, NULL, &kb, NULL, &st),
                         DOSSIER_INVALID_ARGUMENT);
        assert_non_null(strstr(st.message, "category"));
        assert_int_equal(dossier_schema_get(client, NULL, "bad_kind", &got,
                                            &st),
                         DOSSIER_UNKNOWN_KIND);
    }

    /* A built-in kind can be extended with a custom field. */
    assert_int_equal(dossier_schema_get(client, NULL, "contact", &got, &st), 0);
    {
        struct dossier_field_schema *more =
            calloc(got->n_fields + 1, sizeof(*more));
        struct dossier_kind_schema ext = *got;
        memcpy(more, got->fields, got->n_fields * sizeof(*more));
        more[got->n_fields] = (struct dossier_field_schema){
            "favourite_colour", DOSSIER_FIELD_STRING,
            DOSSIER_CATEGORY_BEHAVIORAL, 0, 0, 0, 0, NULL, NULL};
        ext.fields = more;
        ext.n_fields = got->n_fields + 1;
        assert_int_equal(dossier_schema_define(client, NULL, &ext, NULL, &st),
                         0);
        free(more);
    }
    dossier_kind_schema_free(got);
    r = contact("ext-1", "subj-ext", NULL, "E");
    dossier_record_set_string(r, "favourite_colour", "teal");
    put_ok(r, DOSSIER_ANY_VERSION);
    dossier_record_free(r);
}

/* Asynchronous puts and gets: every callback runs once with the right
 * result. */
struct async_state {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done, failed;
    char names[100][16];
};

static void async_put_cb(void *arg, const struct dossier_status *st,
                         const struct dossier_put_result *res)
{
    struct async_state *a = arg;
    pthread_mutex_lock(&a->lock);
    if (st->code || !res || res->version == 0)
        a->failed++;
    a->done++;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->lock);
}

static void async_get_cb(void *arg, const struct dossier_status *st,
                         struct dossier_record *r)
{
    struct async_state *a = arg;
    pthread_mutex_lock(&a->lock);
    if (st->code || !r) {
        a->failed++;
    } else {
        int i = atoi(r->id + 3);
        const struct dossier_value *v = dossier_record_field(r, "first_name");
        if (i < 0 || i >= 100 || !v || strcmp(v->u.s, a->names[i]) != 0)
            a->failed++;
    }
    dossier_record_free(r);
    a->done++;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->lock);
}

static void test_async_calls(void **state)
{
    struct async_state a = {.lock = PTHREAD_MUTEX_INITIALIZER,
                            .cond = PTHREAD_COND_INITIALIZER};
    struct dossier_status st;
    (void)state;

    for (int i = 0; i < 100; i++) {
        char id[16], sid[16];
        struct dossier_record *r;
        snprintf(id, sizeof(id), "as-%d", i);
        snprintf(sid, sizeof(sid), "subj-as%d", i % 7);
        snprintf(a.names[i], sizeof(a.names[i]), "name%d", i * 31);
        r = contact(id, sid, NULL, a.names[i]);
        assert_int_equal(dossier_put_async(client, NULL, r, DOSSIER_ANY_VERSION,
                                           async_put_cb, &a, &st),
                         0);
        dossier_record_free(r); /* copied by the start call */
    }
    pthread_mutex_lock(&a.lock);
    while (a.done < 100)
        pthread_cond_wait(&a.cond, &a.lock);
    pthread_mutex_unlock(&a.lock);
    assert_int_equal(a.failed, 0);
    a.done = 0;
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof(id), "as-%d", i);
        assert_int_equal(dossier_get_async(client, NULL, "contact", id,
                                           async_get_cb, &a, &st),
                         0);
    }
    pthread_mutex_lock(&a.lock);
    while (a.done < 100)
        pthread_cond_wait(&a.cond, &a.lock);
    pthread_mutex_unlock(&a.lock);
    assert_int_equal(a.failed, 0);
}

/* Threads racing to write the first records of the same new subjects all
 * succeed (the losers of the key race are re-sealed), and every record
 * reads back. */
struct racer {
    int t;
    int failures;
};

static void *race_main(void *arg)
{
    struct racer *rc = arg;
    for (int s = 0; s < 40; s++) {
        char id[32], sid[32];
        struct dossier_record *r;
        struct dossier_status st;
        snprintf(id, sizeof(id), "race-%d-%d", s, rc->t);
        snprintf(sid, sizeof(sid), "subj-race-%d", s);
        r = contact(id, sid, NULL, "R");
        if (dossier_put(client, NULL, r, DOSSIER_ANY_VERSION, NULL, &st)) {
            fprintf(stderr, "race put: %s\n", st.message);
            rc->failures++;
        }
        dossier_record_free(r);
    }
    return NULL;
}

static void test_concurrent_first_writes_of_a_subject(void **state)
{
    pthread_t th[6];
    struct racer rc[6];
    size_t pages;
    (void)state;

    for (int t = 0; t < 6; t++) {
        rc[t] = (struct racer){t, 0};
        pthread_create(&th[t], NULL, race_main, &rc[t]);
    }
    for (int t = 0; t < 6; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(rc[t].failures, 0);
    }
    for (int s = 0; s < 40; s++) {
        char sid[32];
        snprintf(sid, sizeof(sid), "subj-race-%d", s);
        assert_int_equal(collect(BY_SUBJECT, sid, NULL, 100, &pages), 6);
        for (int t = 0; t < 6; t++) {
            char id[32];
            struct dossier_record *r;
            snprintf(id, sizeof(id), "race-%d-%d", s, t);
            r = get_ok("contact", id);
            assert_string_equal(r->subject_id, sid);
            dossier_record_free(r);
        }
    }
}

/* A node of its own for a test that needs other flags, and its client;
 * the teardown stops both. */
static struct node_proc own;
static struct dossier_client *own_client;

static int own_teardown(void **state)
{
    (void)state;
    dossier_client_close(own_client);
    own_client = NULL;
    node_kill9(&own);
    node_destroy(&own);
    return 0;
}

/* The Raft loop may answer a write, and another server thread free its
 * call, before the thread that submitted it has returned from the
 * submit: nothing may touch the call after the hand-off (writing into the
 * freed call once corrupted another write's command in the raft log).
 * --submit-pause-ms holds the submitting thread past the answer at every
 * write, so the sanitizer build, which runs this suite too, aborts the
 * node as soon as a write touches its call late (the node is gone by the
 * fourth write when the bug is there). In both builds every write is
 * acknowledged, reads back exact, and the node stops cleanly. */
static void test_writes_answered_while_their_submitter_is_paused(void **state)
{
    const char *extra[] = {"--enable-fault-injection", "--server-threads",
                           "2", "--submit-pause-ms", "200", NULL};
    struct dossier_client *c;
    struct dossier_status st;
    char id[32], name[32];
    int rc;
    (void)state;

    node_init(&own);
    assert_int_equal(node_start(&own, extra), 0);
    c = own_client = node_client(&own);
    for (int i = 0; i < 6; i++) {
        struct dossier_record *r;
        snprintf(id, sizeof(id), "paused-%d", i);
        snprintf(name, sizeof(name), "Name%d", i);
        r = contact(id, "subj-paused", NULL, name);
        rc = dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st);
        dossier_record_free(r);
        if (rc)
            fail_msg("put %s: %s: %s", id, dossier_code_name(rc),
                     st.message);
    }
    rc = dossier_delete(c, NULL, "contact", "paused-0", DOSSIER_ANY_VERSION,
                        NULL, &st);
    if (rc)
        fail_msg("delete: %s: %s", dossier_code_name(rc), st.message);
    for (int i = 0; i < 6; i++) {
        struct dossier_record *r = NULL;
        snprintf(id, sizeof(id), "paused-%d", i);
        snprintf(name, sizeof(name), "Name%d", i);
        rc = dossier_get(c, NULL, "contact", id, &r, &st);
        if (i == 0) {
            assert_int_equal(rc, DOSSIER_NOT_FOUND);
            continue;
        }
        if (rc)
            fail_msg("get %s: %s: %s", id, dossier_code_name(rc),
                     st.message);
        assert_string_equal(r->subject_id, "subj-paused");
        assert_string_equal(field_str(r, "first_name"), name);
        dossier_record_free(r);
    }
    assert_int_equal(node_stop(&own), 0);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The request ids libdossier gives writes begin with the time in ms (48
 * bits, big-endian; the node keeps recent ids in a table keyed by the
 * id, where ids in time order go in near its end) and differ after it:
 * read back from the node's debug log, which names each call's id. */
static void test_write_request_ids_begin_with_the_time(void **state)
{
    const char *extra[] = {"--log-level", "debug", NULL};
    char ids[8][33], line[4096];
    int n = 0;
    int64_t t0, t1;
    FILE *f;
    (void)state;

    node_init(&own);
    assert_int_equal(node_start(&own, extra), 0);
    own_client = node_client(&own);
    t0 = wall_ms();
    for (int i = 0; i < 3; i++) {
        char id[32];
        snprintf(id, sizeof(id), "timed-%d", i);
        struct dossier_record *r = contact(id, "subj-timed", NULL, "Timed");
        struct dossier_status st;
        int rc = dossier_put(own_client, NULL, r, DOSSIER_ANY_VERSION,
                             NULL, &st);
        dossier_record_free(r);
        if (rc)
            fail_msg("put %s: %s: %s", id, dossier_code_name(rc),
                     st.message);
    }
    t1 = wall_ms();
    assert_int_equal(node_stop(&own), 0);

    f = fopen(own.log, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, "\"request_id\":\"");
        if (!p || !strstr(line, "Put"))
            continue;
        p += strlen("\"request_id\":\"");
        int seen = 0;
        for (int i = 0; i < n; i++)
            seen |= strncmp(ids[i], p, 32) == 0;
        if (!seen && n < 8) {
            memcpy(ids[n], p, 32);
            ids[n++][32] = '\0';
        }
    }
    fclose(f);
    assert_int_equal(n, 3); /* one id per write, each logged */
    for (int i = 0; i < n; i++) {
        char head[13];
        memcpy(head, ids[i], 12);
        head[12] = '\0';
        int64_t ms = (int64_t)strtoull(head, NULL, 16);
        if (ms < t0 - 1000 || ms > t1 + 1000)
            fail_msg("request id %s: its first 48 bits are %lld, not a time "
                     "between %lld and %lld",
                     ids[i], (long long)ms, (long long)t0, (long long)t1);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(ids[i], ids[j]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_round_trips_every_type),
        cmocka_unit_test(test_put_replaces_fields_and_keeps_created_time),
        cmocka_unit_test(test_version_conflict_changes_nothing),
        cmocka_unit_test(test_create_only_and_update_only),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_versions_never_reused),
        cmocka_unit_test(test_list_by_subject_pages),
        cmocka_unit_test(test_find_by_index_follows_normalisation_and_updates),
        cmocka_unit_test(test_scan_pages_through_a_kind),
        cmocka_unit_test(test_bad_records_are_refused_and_write_nothing),
        cmocka_unit_test(test_oversized_request_refused),
        cmocka_unit_test(test_reply_over_the_client_limit_refused),
        cmocka_unit_test(test_deadline_of_a_call_to_a_frozen_node),
        cmocka_unit_test(test_company_without_subject),
        cmocka_unit_test(test_schema_define_extend_and_refuse),
        cmocka_unit_test(test_async_calls),
        cmocka_unit_test(test_concurrent_first_writes_of_a_subject),
        cmocka_unit_test_teardown(
            test_writes_answered_while_their_submitter_is_paused,
            own_teardown),
        cmocka_unit_test_teardown(test_write_request_ids_begin_with_the_time,
                                  own_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
