/* Unit tests of the master key file: creating, loading, permissions, the
 * line format and the environment variable form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <sodium.h>

#include "keyfile.h"
#include "testutil.h"

/* Two distinct keys, as the file holds them, and their bytes. */
#define HEX_A "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define HEX_B "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f"
#define LINE(v, hex) "dossier-master-key " #v " " hex "\n"

struct fixture {
    struct tmpdir dir;
    char path[128]; /* dir/master.key, not made */
    struct keyfile kf;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    tmpdir_make(&f->dir);
    path_in(f->path, sizeof(f->path), f->dir.path, "master.key");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    keyfile_release(&f->kf);
    tmpdir_remove(&f->dir);
    free(f);
    return 0;
}

/* The 32 bytes that @hex (64 hex digits) stands for. */
static void hex_bytes(const char *hex, unsigned char out[KEYFILE_KEY_BYTES])
{
    size_t len = 0;
    assert_int_equal(sodium_hex2bin(out, KEYFILE_KEY_BYTES, hex, strlen(hex),
                                    NULL, &len, NULL),
                     0);
    assert_int_equal(len, KEYFILE_KEY_BYTES);
}

/* Asserts that @kf holds version @v with the key written as @hex. */
static void assert_has_key(const struct keyfile *kf, uint32_t v,
                           const char *hex)
{
    unsigned char want[KEYFILE_KEY_BYTES];
    const struct keyfile_key *k = keyfile_find(kf, v);
    assert_non_null(k);
    assert_int_equal(k->version, v);
    hex_bytes(hex, want);
    assert_memory_equal(k->key, want, KEYFILE_KEY_BYTES);
}

/* keyfile_create makes a regular file of mode 0600 holding one version-1
 * key, which keyfile_load reads back. */
static void test_create_makes_owner_only_file_that_load_reads(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;
    struct stat sb;
    mode_t old = umask(0); /* the file must not depend on the umask */

    int rc = keyfile_create(f->path, &st);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(stat(f->path, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sb.st_mode & 07777, 0600);

    assert_int_equal(keyfile_load(&f->kf, f->path, &st), 0);
    assert_int_equal(f->kf.n, 1);
    assert_non_null(keyfile_current(&f->kf));
    assert_int_equal(keyfile_current(&f->kf)->version, 1);
    assert_non_null(keyfile_find(&f->kf, 1));
}

/* Each created file holds a fresh random key. */
static void test_create_draws_a_new_key_each_time(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;
    struct keyfile other = {0};
    char path2[128];

    path_in(path2, sizeof(path2), f->dir.path, "second.key");
    assert_int_equal(keyfile_create(f->path, &st), 0);
    assert_int_equal(keyfile_create(path2, &st), 0);
    assert_int_equal(keyfile_load(&f->kf, f->path, &st), 0);
    assert_int_equal(keyfile_load(&other, path2, &st), 0);
    assert_memory_not_equal(keyfile_current(&f->kf)->key,
                            keyfile_current(&other)->key, KEYFILE_KEY_BYTES);
    keyfile_release(&other);
}

/* keyfile_create refuses to overwrite an existing file, which it leaves as
 * it was. */
static void test_create_refuses_existing_file(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;
    char text[256];

    file_write(f->path, "# precious\n" LINE(1, HEX_A), 0600);
    assert_int_equal(keyfile_create(f->path, &st), DOSSIER_ALREADY_EXISTS);
    assert_int_equal(st.code, DOSSIER_ALREADY_EXISTS);
    file_read(f->path, text, sizeof(text));
    assert_string_equal(text, "# precious\n" LINE(1, HEX_A));
}

/* keyfile_load reads every version of a file with comments and blank lines,
 * each key with its bytes. */
static void test_load_reads_every_version(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;

    file_write(f->path,
               "# rotated keys\n"
               "\n" LINE(1, HEX_A) "   # indented comment\n"
               "\tdossier-master-key 2 " HEX_B "\r\n",
               0600);
    assert_int_equal(keyfile_load(&f->kf, f->path, &st), 0);
    assert_int_equal(f->kf.n, 2);
    assert_has_key(&f->kf, 1, HEX_A);
    assert_has_key(&f->kf, 2, HEX_B);
}

/* keyfile_current is the highest version, wherever it is in the file, and
 * keyfile_find finds only versions the file holds. */
static void test_current_is_the_highest_version(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;

    file_write(f->path, LINE(2, HEX_A) LINE(7, HEX_B) LINE(3, HEX_A), 0600);
    assert_int_equal(keyfile_load(&f->kf, f->path, &st), 0);
    assert_non_null(keyfile_current(&f->kf));
    assert_int_equal(keyfile_current(&f->kf)->version, 7);
    assert_has_key(&f->kf, 7, HEX_B);
    assert_null(keyfile_find(&f->kf, 1));
    assert_null(keyfile_find(&f->kf, 4));
}

/* An empty key file set (never loaded, or released) has no current key. */
static void test_empty_keyfile_has_no_current_key(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;

    assert_null(keyfile_current(&f->kf));
    assert_int_equal(keyfile_parse_env(&f->kf, HEX_A, &st), 0);
    keyfile_release(&f->kf);
    assert_int_equal(f->kf.n, 0);
    assert_null(keyfile_current(&f->kf));
}

/* keyfile_load refuses a file that group or others can read or write, with
 * DOSSIER_PERMISSION_DENIED, and loads nothing. */
static void test_load_refuses_file_accessible_by_others(void **state)
{
    static const mode_t modes[] = {0644, 0640, 0604, 0620, 0602, 0610, 0601};
    struct fixture *f = *state;
    struct dossier_status st;

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        file_write(f->path, LINE(1, HEX_A), modes[i]);
        assert_int_equal(keyfile_load(&f->kf, f->path, &st),
                         DOSSIER_PERMISSION_DENIED);
        assert_int_equal(st.code, DOSSIER_PERMISSION_DENIED);
        assert_int_equal(f->kf.n, 0);
        assert_null(keyfile_current(&f->kf));
    }
    /* Owner read-only is fine. */
    file_write(f->path, LINE(1, HEX_A), 0400);
    assert_int_equal(keyfile_load(&f->kf, f->path, &st), 0);
}

/* keyfile_load of a missing file is DOSSIER_IO. */
static void test_load_of_missing_file_is_io_error(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;

    assert_int_equal(keyfile_load(&f->kf, f->path, &st), DOSSIER_IO);
    assert_int_equal(st.code, DOSSIER_IO);
    assert_int_equal(f->kf.n, 0);
}

/* A malformed line is refused with DOSSIER_INVALID_ARGUMENT and a message
 * naming its line number, and the message never holds key material, not
 * even of the well-formed lines around it. */
static void test_load_refuses_malformed_line_naming_it_without_key(
    void **state)
{
    static const char *const bad[] = {
        "dossier-master-kex 2 " HEX_B,            /* wrong tag */
        "dossier-master-key 2",                   /* no key */
        "dossier-master-key " HEX_B,              /* no version */
        "dossier-master-key 2 " HEX_B " extra",   /* trailing word */
        "dossier-master-key two " HEX_B,          /* version not a number */
        "dossier-master-key 0 " HEX_B,            /* version 0 */
        "dossier-master-key 4294967296 " HEX_B,   /* version past u32 */
        "dossier-master-key 2 " HEX_B "00",       /* 66 digits */
        "dossier-master-key 2 f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5"
        "968778695a4b3c2d1e",                     /* 62 digits */
        "dossier-master-key 2 g0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5"
        "968778695a4b3c2d1e0f",                   /* not hex */
    };
    struct fixture *f = *state;
    struct dossier_status st;
    char text[512];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "# keys\n" LINE(1, HEX_A) "%s\n",
                 bad[i]);
        file_write(f->path, text, 0600);
        assert_int_equal(keyfile_load(&f->kf, f->path, &st),
                         DOSSIER_INVALID_ARGUMENT);
        assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
        assert_contains(st.message, "line 3");
        assert_not_contains(st.message, "f0e1d2c3b4a59687");
        assert_not_contains(st.message, "g0e1d2c3b4a59687");
        assert_not_contains(st.message, "0001020304050607");
        assert_int_equal(f->kf.n, 0);
    }
}

/* Blank lines count in the line numbers of messages, so the number given
 * is the line an editor shows. */
static void test_load_counts_blank_lines_when_naming_a_line(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;

    file_write(f->path, "# keys\n\n" LINE(1, HEX_A) "\nnot a key line\n",
               0600);
    assert_int_equal(keyfile_load(&f->kf, f->path, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_contains(st.message, "line 5");
}

/* A version that appears twice is refused, naming the second line. */
static void test_load_refuses_duplicated_version(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;

    file_write(f->path, LINE(1, HEX_A) LINE(1, HEX_B), 0600);
    assert_int_equal(keyfile_load(&f->kf, f->path, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_contains(st.message, "line 2");
    assert_not_contains(st.message, "f0e1d2c3b4a59687");
    assert_int_equal(f->kf.n, 0);
}

/* A file with only comments and blank lines holds no key and is refused. */
static void test_load_refuses_file_without_key(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;

    file_write(f->path, "# nothing here\n\n", 0600);
    assert_int_equal(keyfile_load(&f->kf, f->path, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(f->kf.n, 0);
}

/* $DOSSIER_MASTER_KEY without "N:" is the key of version 1. */
static void test_env_without_version_is_version_1(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;

    assert_int_equal(keyfile_parse_env(&f->kf, HEX_A, &st), 0);
    assert_int_equal(f->kf.n, 1);
    assert_int_equal(keyfile_current(&f->kf)->version, 1);
    assert_has_key(&f->kf, 1, HEX_A);
}

/* $DOSSIER_MASTER_KEY as "N:<hex>" is the key of version N. */
static void test_env_with_version_prefix_is_that_version(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;

    assert_int_equal(keyfile_parse_env(&f->kf, "12:" HEX_B, &st), 0);
    assert_int_equal(f->kf.n, 1);
    assert_int_equal(keyfile_current(&f->kf)->version, 12);
    assert_has_key(&f->kf, 12, HEX_B);
    assert_null(keyfile_find(&f->kf, 1));
}

/* A malformed $DOSSIER_MASTER_KEY is refused with
 * DOSSIER_INVALID_ARGUMENT, no key loaded and no key material quoted. */
static void test_env_refuses_malformed_value(void **state)
{
    static const char *const bad[] = {
        "",
        "0:" HEX_B,
        "x:" HEX_B,
        ":" HEX_B,
        "2x:" HEX_B,
        "4294967296:" HEX_B,
        HEX_B "0",
        "2:" HEX_B "\n",
        "2:g0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f",
    };
    struct fixture *f = *state;
    struct dossier_status st;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(keyfile_parse_env(&f->kf, bad[i], &st),
                         DOSSIER_INVALID_ARGUMENT);
        assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
        assert_not_contains(st.message, "f0e1d2c3b4a59687");
        assert_not_contains(st.message, "g0e1d2c3b4a59687");
        assert_int_equal(f->kf.n, 0);
    }
}

/* keyfile_add_version appends the version after the highest, keeps every
 * line before it (comments too), and leaves a private file that loads
 * with the old keys unchanged and a new random one. */
static void test_add_version_appends_the_next_version(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;
    struct stat sb;
    char text[2048];
    uint32_t v = 0;

    file_write(f->path, "# precious\n" LINE(1, HEX_A) LINE(3, HEX_B), 0600);
    assert_int_equal(keyfile_add_version(f->path, &v, &st), 0);
    assert_int_equal(v, 4);
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    file_read(f->path, text, sizeof(text));
    assert_memory_equal(text, "# precious\n" LINE(1, HEX_A) LINE(3, HEX_B),
                        strlen("# precious\n" LINE(1, HEX_A) LINE(3, HEX_B)));
    assert_int_equal(keyfile_load(&f->kf, f->path, &st), 0);
    assert_int_equal(f->kf.n, 3);
    assert_has_key(&f->kf, 1, HEX_A);
    assert_has_key(&f->kf, 3, HEX_B);
    assert_int_equal(keyfile_current(&f->kf)->version, 4);
    assert_memory_not_equal(keyfile_find(&f->kf, 4)->key,
                            keyfile_find(&f->kf, 3)->key, KEYFILE_KEY_BYTES);
}

/* keyfile_add_version refuses a file the node would refuse, and leaves it
 * as it was. */
static void test_add_version_refuses_what_load_refuses(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;
    char text[512];
    uint32_t v = 0;

    file_write(f->path, LINE(1, HEX_A), 0644);
    assert_int_equal(keyfile_add_version(f->path, &v, &st),
                     DOSSIER_PERMISSION_DENIED);
    file_write(f->path, "dossier-master-key one " HEX_A "\n", 0600);
    assert_int_equal(keyfile_add_version(f->path, &v, &st),
                     DOSSIER_INVALID_ARGUMENT);
    file_read(f->path, text, sizeof(text));
    assert_string_equal(text, "dossier-master-key one " HEX_A "\n");
    assert_int_equal(v, 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_create_makes_owner_only_file_that_load_reads),
        T(test_create_draws_a_new_key_each_time),
        T(test_create_refuses_existing_file),
        T(test_load_reads_every_version),
        T(test_current_is_the_highest_version),
        T(test_empty_keyfile_has_no_current_key),
        T(test_load_refuses_file_accessible_by_others),
        T(test_load_of_missing_file_is_io_error),
        T(test_load_refuses_malformed_line_naming_it_without_key),
        T(test_load_counts_blank_lines_when_naming_a_line),
        T(test_load_refuses_duplicated_version),
        T(test_load_refuses_file_without_key),
        T(test_env_without_version_is_version_1),
        T(test_env_with_version_prefix_is_that_version),
        T(test_env_refuses_malformed_value),
        T(test_add_version_appends_the_next_version),
        T(test_add_version_refuses_what_load_refuses),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
