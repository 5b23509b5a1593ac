/* Proof that no personal data touches the disk: records whose values, ids,
 * subject ids and links are unique markers are written through libdossier,
 * and segments whose conditions would hold markers are defined; the node
 * is stopped; every byte of every file under the data directory is
 * searched, raw and decoded (SST files through sst_dump, write-ahead logs
 * through ldb dump_wal). A positive control shows the scanner finds a
 * marker that is there, even in a compressed SST file, and another that
 * it finds a marker held by a segment definition (which is kept in the
 * clear) where one is allowed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rocksdb/c.h>
#include <sodium.h>

#include <dossier/dossier.h>

#include "harness.h"

#define N_MARKERS 14

struct scan {
    const char *markers[N_MARKERS];
    char hex[N_MARKERS][128];
    int hits[N_MARKERS];
    size_t n;
    int files, ssts, wals;
    int found;
    char report[4096];
};

static struct scan *cur;

static void note(struct scan *s, const char *file, size_t i,
                 const char *how)
{
    size_t len = strlen(s->report);
    s->found++;
    s->hits[i]++;
    snprintf(s->report + len, sizeof(s->report) - len,
             "  %s found in %s (%s)\n", s->markers[i], file, how);
}

/* Searches the output of @cmd for the hex forms of the markers. */
static void scan_decoded(struct scan *s, const char *file, const char *cmd,
                         const char *how)
{
    char *out = malloc(64 << 20);
    assert_non_null(out);
    harness_sh(out, 64 << 20, "%s 2>&1", cmd);
    for (size_t i = 0; i < s->n; i++)
        if (strstr(out, s->hex[i]))
            note(s, file, i, how);
    free(out);
}

static int scan_file(const char *path, const struct stat *sb, int flag,
                     struct FTW *ftw)
{
    struct scan *s = cur;
    const char *base = path + ftw->base;
    char cmd[1200];
    char *buf;
    FILE *f;
    size_t len;

    if (flag != FTW_F)
        return 0;
    s->files++;
    buf = malloc((size_t)sb->st_size + 1);
    f = fopen(path, "rb");
    assert_non_null(buf);
    assert_non_null(f);
    len = fread(buf, 1, (size_t)sb->st_size, f);
    fclose(f);
    for (size_t i = 0; i < s->n; i++)
        if (memmem(buf, len, s->markers[i], strlen(s->markers[i])))
            note(s, path, i, "raw bytes");
    free(buf);

    len = strlen(base);
    if (len > 4 && strcmp(base + len - 4, ".sst") == 0) {
        s->ssts++;
        snprintf(cmd, sizeof(cmd),
                 "sst_dump --file=%s --command=scan --output_hex", path);
        scan_decoded(s, path, cmd, "sst_dump scan");
    } else if (len > 4 && strcmp(base + len - 4, ".log") == 0 &&
               isdigit((unsigned char)base[0])) {
        s->wals++;
        snprintf(cmd, sizeof(cmd), "ldb dump_wal --walfile=%s --print_value",
                 path);
        scan_decoded(s, path, cmd, "ldb dump_wal");
    }
    return 0;
}

static void scan_init(struct scan *s, const char *const *markers, size_t n)
{
    memset(s, 0, sizeof(*s));
    s->n = n;
    for (size_t i = 0; i < n; i++) {
        s->markers[i] = markers[i];
        /* The decoders print bytes as upper-case hex. */
        sodium_bin2hex(s->hex[i], sizeof(s->hex[i]),
                       (const unsigned char *)markers[i], strlen(markers[i]));
        for (char *p = s->hex[i]; *p; p++)
            *p = (char)toupper((unsigned char)*p);
    }
}

static void scan_dir(struct scan *s, const char *dir)
{
    cur = s;
    assert_int_equal(nftw(dir, scan_file, 16, FTW_PHYS), 0);
    cur = NULL;
}

/* The scanner finds a marker stored in the clear, also when compression
 * hides it from a raw byte search: without this, a clean scan proves
 * nothing. */
static void test_scanner_finds_plaintext(void **state)
{
    char dir[] = "/tmp/dossier-control-XXXXXX";
    char value[4096];
    const char *markers[] = {"ctrlmarker7c1e0f"};
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    char *err = NULL;
    struct scan s;
    rocksdb_t *db;
    (void)state;

    assert_non_null(mkdtemp(dir));
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_compression(o, rocksdb_lz4_compression);
    db = rocksdb_open(o, dir, &err);
    assert_null(err);
    /* Compressible: the marker repeated. */
    value[0] = '\0';
    for (int i = 0; i < 200; i++)
        strcat(value, markers[0]);
    rocksdb_put(db, wo, "k", 1, value, strlen(value), &err);
    assert_null(err);
    rocksdb_flush(db, fo, &err);
    assert_null(err);
    rocksdb_close(db);
    rocksdb_flushoptions_destroy(fo);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_options_destroy(o);

    scan_init(&s, markers, 1);
    scan_dir(&s, dir);
    assert_true(s.ssts >= 1);
    assert_true(s.found >= 1);
    assert_non_null(strstr(s.report, "sst_dump scan"));
    harness_rmtree(dir);
}

static void put(struct dossier_client *c, struct dossier_record *r)
{
    struct dossier_status st;
    int rc = dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st);
    if (rc)
        fprintf(stderr, "put: %s\n", st.message);
    assert_int_equal(rc, 0);
    dossier_record_free(r);
}

/* Defines segment @name of @kind with the condition @field any_of @value;
 * returns the status code. */
static int define_segment(struct dossier_client *c, const char *name,
                          const char *kind, const char *field,
                          const char *value)
{
    struct dossier_value v = {.type = DOSSIER_TYPE_STRING, .u.s = value};
    struct dossier_segment_condition cond = {.field = field, .n_any_of = 1,
                                             .any_of = &v};
    struct dossier_segment seg = {.name = name, .kind = kind,
                                  .n_conditions = 1, .conditions = &cond};
    struct dossier_status st;
    return dossier_segment_define(c, NULL, &seg, NULL, &st) ? st.code : 0;
}

/* Nothing personal reaches any file of the data directory, and the same
 * values come back through Get. Segments that would keep personal values
 * in their definitions are refused; one that holds an allowed value shows
 * that such a definition would be found. */
static void test_no_marker_on_disk(void **state)
{
    struct node_proc n;
    struct dossier_client *c;
    struct dossier_record *r;
    struct dossier_status st;
    struct scan s;
    char m[N_MARKERS][48], email[96], seg_email[96], label[48];
    const char *markers[N_MARKERS];
    unsigned char rnd[8];
    char tag[17];
    (void)state;

    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(tag, sizeof(tag), rnd, sizeof(rnd));
    const char *what[N_MARKERS] = {"subject", "id", "name", "mail",
                                   "addr", "body", "link", "cname",
                                   "old", "deleted", "segmail", "segname",
                                   "segtitle", "segctl"};
    /* The last one is allowed in a segment: the positive control. */
    const size_t control = N_MARKERS - 1;
    for (int i = 0; i < N_MARKERS; i++) {
        snprintf(m[i], sizeof(m[i]), "mk%s%s", what[i], tag);
        markers[i] = m[i];
    }
    snprintf(email, sizeof(email), "%s@example.com", m[3]);
    snprintf(seg_email, sizeof(seg_email), "%s@example.com", m[10]);
    snprintf(label, sizeof(label), "lbl_%s", tag);

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    c = node_client(&n);

    /* An older value, overwritten: it must not linger either. */
    r = dossier_record_new("contact", m[1], m[0]);
    dossier_record_set_string(r, "first_name", m[8]);
    put(c, r);
    r = dossier_record_new("contact", m[1], m[0]);
    dossier_record_set_string(r, "first_name", m[2]);
    dossier_record_set_string(r, "email", email);
    dossier_record_set_string(r, "address", m[4]);
    dossier_record_add_link(r, label, "company", m[6]);
    put(c, r);
    r = dossier_record_new("activity", "act-1", m[0]);
    dossier_record_set_string(r, "type", "note");
    dossier_record_set_string(r, "body", m[5]);
    put(c, r);
    r = dossier_record_new("company", "co-1", NULL);
    dossier_record_set_string(r, "name", m[7]);
    put(c, r);
    r = dossier_record_new("contact", "gone-1", m[0]);
    dossier_record_set_string(r, "first_name", m[9]);
    put(c, r);
    assert_int_equal(dossier_delete(c, NULL, "contact", "gone-1",
                                    DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    /* Segment definitions are kept in the clear: those on personal fields
     * are refused before anything is written... */
    assert_int_equal(define_segment(c, "by_mail", "contact", "email",
                                    seg_email),
                     DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(define_segment(c, "by_name", "contact", "first_name",
                                    m[11]),
                     DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(define_segment(c, "by_title", "activity", "title",
                                    m[12]),
                     DOSSIER_INVALID_ARGUMENT);
    /* ...while one on an operational field is written, and must be found
     * by the scan: were a personal one let through, it would be too. */
    assert_int_equal(define_segment(c, "by_owner", "deal", "owner",
                                    m[control]),
                     0);
    dossier_client_close(c);

    /* Restart once so that the write-ahead log is replayed into SST files,
     * then stop: both kinds of file now exist. */
    assert_int_equal(node_stop(&n), 0);
    assert_int_equal(node_start(&n, NULL), 0);
    c = node_client(&n);
    assert_int_equal(dossier_get(c, NULL, "contact", m[1], &r, &st), 0);
    assert_string_equal(r->subject_id, m[0]);
    assert_string_equal(dossier_record_field(r, "first_name")->u.s, m[2]);
    assert_string_equal(dossier_record_field(r, "email")->u.s, email);
    assert_string_equal(dossier_record_field(r, "address")->u.s, m[4]);
    assert_string_equal(r->links[0].label, label);
    assert_string_equal(r->links[0].id, m[6]);
    dossier_record_free(r);
    assert_int_equal(dossier_get(c, NULL, "activity", "act-1", &r, &st), 0);
    assert_string_equal(dossier_record_field(r, "body")->u.s, m[5]);
    dossier_record_free(r);
    assert_int_equal(dossier_get(c, NULL, "company", "co-1", &r, &st), 0);
    assert_string_equal(dossier_record_field(r, "name")->u.s, m[7]);
    dossier_record_free(r);
    dossier_client_close(c);
    assert_int_equal(node_stop(&n), 0);

    scan_init(&s, markers, N_MARKERS);
    scan_dir(&s, n.data);
    /* The node's own log is outside the data directory: scan it too. */
    scan_dir(&s, n.log);
    fprintf(stderr, "scanned %d files (%d SST, %d WAL)\n", s.files, s.ssts,
            s.wals);
    if (s.found > s.hits[control])
        fprintf(stderr, "plaintext on disk:\n%s", s.report);
    assert_true(s.ssts >= 1);
    assert_true(s.wals >= 1);
    /* The control is found, and nothing else. */
    assert_true(s.hits[control] >= 1);
    assert_int_equal(s.found, s.hits[control]);
    node_destroy(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scanner_finds_plaintext),
        cmocka_unit_test(test_no_marker_on_disk),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
