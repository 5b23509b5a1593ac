/* Unit tests of reading PEM files for TLS: contents, refusals that name the
 * file, and the owner-only check shared with the master key file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pemfile.h"
#include "testutil.h"

#define PEM "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"

struct fixture {
    struct tmpdir dir;
    char path[128]; /* dir/file.pem, not made */
    char *pem;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    tmpdir_make(&f->dir);
    path_in(f->path, sizeof(f->path), f->dir.path, "file.pem");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pemfile_free(f->pem);
    tmpdir_remove(&f->dir);
    free(f);
    return 0;
}

/* A PEM file comes back whole and NUL-terminated. */
static void test_reads_the_whole_file(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;

    file_write(f->path, PEM, 0644);
    assert_int_equal(pemfile_read(f->path, "TLS CA file", 0, &f->pem, &st), 0);
    assert_string_equal(f->pem, PEM);
}

/* A missing file is DOSSIER_IO, and the message names it and its role. */
static void test_missing_file_is_named(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;

    assert_int_equal(pemfile_read(f->path, "TLS CA file", 0, &f->pem, &st),
                     DOSSIER_IO);
    assert_null(f->pem);
    assert_contains(st.message, f->path);
    assert_contains(st.message, "TLS CA file");
}

/* A file that is not PEM (or is empty) is refused before gRPC sees it. */
static void test_not_pem_is_refused(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;

    file_write(f->path, "dossier-master-key 1 00\n", 0600);
    assert_int_equal(pemfile_read(f->path, "TLS key file", 0, &f->pem, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_null(f->pem);
    assert_contains(st.message, "not PEM");
    file_write(f->path, "", 0600);
    assert_int_equal(pemfile_read(f->path, "TLS key file", 0, &f->pem, &st),
                     DOSSIER_INVALID_ARGUMENT);
}

/* PEMFILE_OWNER_ONLY refuses a file group or others can access, with the
 * master key file's message and remedy; mode 0600 passes. */
static void test_owner_only_refuses_group_access(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;

    file_write(f->path, PEM, 0640);
    assert_int_equal(pemfile_read(f->path, "TLS key file", PEMFILE_OWNER_ONLY,
                                  &f->pem, &st),
                     DOSSIER_PERMISSION_DENIED);
    assert_null(f->pem);
    assert_contains(st.message, "TLS key file");
    assert_contains(st.message, "chmod 600");
    file_write(f->path, PEM, 0600);
    assert_int_equal(pemfile_read(f->path, "TLS key file", PEMFILE_OWNER_ONLY,
                                  &f->pem, &st),
                     0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_reads_the_whole_file),
        T(test_missing_file_is_named),
        T(test_not_pem_is_refused),
        T(test_owner_only_refuses_group_access),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
