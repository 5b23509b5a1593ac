/* Unit tests of the auth file: token principals, certificate principals
 * (the `cert` column) and how each is found. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "auth.h"
#include "testutil.h"

/* The token of the token principal; its line holds the SHA-256 of it. */
#define TOKEN "s3cret-token-of-crm-sync"

struct fixture {
    struct tmpdir dir;
    char path[128];
    char line[256]; /* the token principal's line */
    struct auth *a;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    uint8_t h[crypto_hash_sha256_BYTES];
    char hex[2 * sizeof(h) + 1];

    if (!f || sodium_init() < 0)
        return -1;
    tmpdir_make(&f->dir);
    path_in(f->path, sizeof(f->path), f->dir.path, "principals");
    crypto_hash_sha256(h, (const unsigned char *)TOKEN, strlen(TOKEN));
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    snprintf(f->line, sizeof(f->line), "crm-sync service %s operations\n",
             hex);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    auth_free(f->a);
    tmpdir_remove(&f->dir);
    free(f);
    return 0;
}

/* Writes the token principal's line and @more to the auth file, loads it. */
static void load(struct fixture *f, const char *more)
{
    char text[1024];
    struct dossier_status st;
    snprintf(text, sizeof(text), "%s%s", f->line, more);
    file_write(f->path, text, 0600);
    if (auth_load(f->path, &f->a, &st) != 0)
        fail_msg("auth_load: %s", st.message);
}

/* A line with `cert` in place of the hash is a certificate principal with
 * its role and purposes, found by its name as a certificate CN. */
static void test_cert_principal_is_found_by_cn(void **state)
{
    struct fixture *f = *state;
    struct auth_principal p;

    load(f, "dpo-cert compliance cert consent,audit\n");
    assert_int_equal(auth_count(f->a), 2);
    assert_int_equal(auth_find_cert(f->a, "dpo-cert", 8, &p), 1);
    assert_string_equal(p.name, "dpo-cert");
    assert_int_equal(p.role, AUTH_COMPLIANCE);
    assert_int_equal(p.cert, 1);
    assert_int_equal(auth_may_use(f->a, "dpo-cert", "audit"), 1);
    assert_int_equal(auth_may_use(f->a, "dpo-cert", "marketing"), 0);
}

/* The CN must equal the name: no prefix, no longer name, no other case. */
static void test_cert_lookup_needs_the_exact_name(void **state)
{
    struct fixture *f = *state;
    struct auth_principal p;

    load(f, "dpo-cert compliance cert\n");
    assert_int_equal(auth_find_cert(f->a, "dpo-cert", 7, &p), 0);
    assert_int_equal(auth_find_cert(f->a, "dpo-certs", 9, &p), 0);
    assert_int_equal(auth_find_cert(f->a, "DPO-CERT", 8, &p), 0);
    assert_int_equal(auth_find_cert(f->a, "", 0, &p), 0);
}

/* A token principal is never found by a certificate with its name, and a
 * certificate principal has no token. */
static void test_token_and_cert_principals_do_not_mix(void **state)
{
    struct fixture *f = *state;
    struct auth_principal p;

    load(f, "dpo-cert compliance cert\n");
    assert_int_equal(auth_find_cert(f->a, "crm-sync", 8, &p), 0);
    assert_int_equal(auth_find(f->a, TOKEN, strlen(TOKEN), &p), 1);
    assert_string_equal(p.name, "crm-sync");
    assert_int_equal(p.cert, 0);
    assert_int_equal(auth_find(f->a, "dpo-cert", 8, &p), 0);
}

/* A third column that is neither 64 hex digits nor `cert` is refused,
 * naming the line. */
static void test_bad_third_column_is_refused(void **state)
{
    static const char *const bad[] = {"dpo compliance certificate\n",
                                      "dpo compliance CERT\n",
                                      "dpo compliance abc\n"};
    struct fixture *f = *state;
    struct dossier_status st;
    char text[1024];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "%s%s", f->line, bad[i]);
        file_write(f->path, text, 0600);
        assert_int_equal(auth_load(f->path, &f->a, &st),
                         DOSSIER_INVALID_ARGUMENT);
        assert_null(f->a);
        assert_contains(st.message, "line 2");
    }
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_cert_principal_is_found_by_cn),
        T(test_cert_lookup_needs_the_exact_name),
        T(test_token_and_cert_principals_do_not_mix),
        T(test_bad_third_column_is_refused),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
