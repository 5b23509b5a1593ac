/* Unit tests of the store: the data directory, the meta record, the key
 * encodings, scans, and the state machine applying write commands in
 * batches. Each test works in a fresh temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <rocksdb/c.h>
#include <sodium.h>

#include "store.h"
#include "store_int.h" /* trim_faults */
#include "testutil.h"

#define CACHE_BYTES (1 << 20)

struct fixture {
    struct tmpdir dir;
    char data[128]; /* dir/data, the data directory; not made */
    struct store *s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    tmpdir_make(&f->dir);
    path_in(f->data, sizeof(f->data), f->dir.path, "data");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    tmpdir_remove(&f->dir);
    free(f);
    return 0;
}

/* Opens f->data into f->s, which must succeed; returns *created. */
static int fx_open(struct fixture *f)
{
    struct dossier_status st;
    int created = -1;
    if (store_open(f->data, CACHE_BYTES, &f->s, &created, &st) != 0)
        fail_msg("store_open: %s", st.message);
    assert_non_null(f->s);
    return created;
}

static void fx_reopen(struct fixture *f)
{
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(fx_open(f), 0);
}

/* ------------------------------------------------------------------ */
/* Commands built on the stack */

struct put {
    Command cmd;
    Dossier__Store__V1__PutOp op;
    SubjectKey sk;
    Dossier__Store__V1__SealedField field;
    Dossier__Store__V1__SealedField *fields[1];
    ProtobufCBinaryData ik[2];
    uint8_t ikbuf[2][STORE_KEY_MAX];
    uint8_t rid[STORE_RID_BYTES];
    uint8_t sp[STORE_SP_BYTES];
    uint8_t sealed_id[8];
    uint8_t wrapped[8];
    uint8_t sealed_sid[8];
    uint8_t box[8];
    Dossier__Store__V1__LinkEntry le[2];
    Dossier__Store__V1__LinkEntry *lep[2];
    uint8_t lrid[2][STORE_RID_BYTES];
};

/* A Put of record (@kind, rid = 16 x @rid_byte), of subject 16 x @sp_byte
 * (0: none) with data key @dek_id, at time @time_ms. No expected version,
 * no new subject key, one sealed field, no index key. */
static void put_init(struct put *p, const char *kind, uint8_t rid_byte,
                     uint8_t sp_byte, uint64_t dek_id, int64_t time_ms)
{
    memset(p, 0, sizeof(*p));
    dossier__store__v1__command__init(&p->cmd);
    dossier__store__v1__put_op__init(&p->op);
    dossier__store__v1__subject_key__init(&p->sk);
    dossier__store__v1__sealed_field__init(&p->field);
    p->cmd.time_ms = time_ms;
    p->cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_PUT;
    p->cmd.put = &p->op;
    memset(p->rid, rid_byte, sizeof(p->rid));
    memset(p->sealed_id, 0x11, sizeof(p->sealed_id));
    memset(p->box, 0x22, sizeof(p->box));
    p->op.kind = (char *)kind;
    p->op.rid = (ProtobufCBinaryData){sizeof(p->rid), p->rid};
    if (sp_byte) {
        memset(p->sp, sp_byte, sizeof(p->sp));
        p->op.subject = (ProtobufCBinaryData){sizeof(p->sp), p->sp};
    }
    p->op.dek_id = dek_id;
    p->op.sealed_id = (ProtobufCBinaryData){sizeof(p->sealed_id),
                                            p->sealed_id};
    p->field.name = "email";
    p->field.box = (ProtobufCBinaryData){sizeof(p->box), p->box};
    p->fields[0] = &p->field;
    p->op.fields = p->fields;
    p->op.n_fields = 1;
    p->op.index_keys = p->ik;
    p->op.links = p->lep;
}

/* Sets the new subject key the proposer made, with id @dek_id and wrapped
 * bytes 8 x @fill. */
static void put_new_key(struct put *p, uint64_t dek_id, uint8_t fill)
{
    memset(p->wrapped, fill, sizeof(p->wrapped));
    memset(p->sealed_sid, fill ^ 0xff, sizeof(p->sealed_sid));
    p->sk.dek_id = dek_id;
    p->sk.kek_version = 1;
    p->sk.wrapped_dek = (ProtobufCBinaryData){sizeof(p->wrapped), p->wrapped};
    p->sk.sealed_subject_id =
        (ProtobufCBinaryData){sizeof(p->sealed_sid), p->sealed_sid};
    p->sk.created_at_ms = p->cmd.time_ms;
    p->op.new_subject_key = &p->sk;
}

/* A Put of contact (16 x @rid_byte) of subject 16 x 0x5a under data key 7,
 * carrying that key for the case it is the subject's first write. Tests
 * that replace records use these rather than records without a subject,
 * whose replacement trips a bug (see
 * test_record_without_subject_can_be_replaced). */
static void put_person(struct put *p, uint8_t rid_byte, int64_t time_ms)
{
    put_init(p, "contact", rid_byte, 0x5a, 7, time_ms);
    put_new_key(p, 7, 0x70);
}

static void put_expect(struct put *p, uint64_t version)
{
    p->op.expect_case = DOSSIER__STORE__V1__PUT_OP__EXPECT_EXPECTED_VERSION;
    p->op.expected_version = version;
}

/* Adds the index key of field @field with blind index 16 x @blind_byte. */
static void put_index(struct put *p, const char *field, uint8_t blind_byte)
{
    uint8_t blind[STORE_BLIND_BYTES];
    size_t i = p->op.n_index_keys++;
    assert_true(i < 2);
    memset(blind, blind_byte, sizeof(blind));
    p->ik[i].len = store_index_key(p->ikbuf[i], p->op.kind, field, blind,
                                   p->rid);
    p->ik[i].data = p->ikbuf[i];
}

/* Adds a link with @label to (@kind, 16 x @rid_byte), its sealed target
 * id 8 x @rid_byte. */
static void put_link(struct put *p, const char *label, const char *kind,
                     uint8_t rid_byte)
{
    size_t i = p->op.n_links++;
    assert_true(i < 2);
    dossier__store__v1__link_entry__init(&p->le[i]);
    memset(p->lrid[i], rid_byte, STORE_RID_BYTES);
    p->le[i].label = (char *)label;
    p->le[i].kind = (char *)kind;
    p->le[i].rid = (ProtobufCBinaryData){STORE_RID_BYTES, p->lrid[i]};
    p->le[i].sealed_id = (ProtobufCBinaryData){8, p->lrid[i]};
    p->lep[i] = &p->le[i];
}

struct del {
    Command cmd;
    Dossier__Store__V1__DeleteOp op;
    uint8_t rid[STORE_RID_BYTES];
};

static void del_init(struct del *d, const char *kind, uint8_t rid_byte)
{
    memset(d, 0, sizeof(*d));
    dossier__store__v1__command__init(&d->cmd);
    dossier__store__v1__delete_op__init(&d->op);
    d->cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_DELETE;
    d->cmd.delete_ = &d->op;
    memset(d->rid, rid_byte, sizeof(d->rid));
    d->op.kind = (char *)kind;
    d->op.rid = (ProtobufCBinaryData){sizeof(d->rid), d->rid};
}

struct define {
    Command cmd;
    Dossier__Store__V1__DefineKindOp op;
    KindSchema k;
    FieldSchema f[2];
    FieldSchema *fp[2];
};

/* A DefineKind of @kind with a string field "title" and, when @two, an int
 * field "size". */
static void define_init(struct define *d, const char *kind, int two)
{
    memset(d, 0, sizeof(*d));
    dossier__store__v1__command__init(&d->cmd);
    dossier__store__v1__define_kind_op__init(&d->op);
    dossier__v1__kind_schema__init(&d->k);
    for (int i = 0; i < 2; i++) {
        dossier__v1__field_schema__init(&d->f[i]);
        d->fp[i] = &d->f[i];
    }
    d->f[0].name = "title";
    d->f[0].type = DOSSIER__V1__FIELD_TYPE__FIELD_TYPE_STRING;
    d->f[0].category = DOSSIER__V1__CATEGORY__CATEGORY_OPERATIONAL;
    d->f[1].name = "size";
    d->f[1].type = DOSSIER__V1__FIELD_TYPE__FIELD_TYPE_INT;
    d->f[1].category = DOSSIER__V1__CATEGORY__CATEGORY_OPERATIONAL;
    d->k.kind = (char *)kind;
    d->k.fields = d->fp;
    d->k.n_fields = two ? 2 : 1;
    d->cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_DEFINE_KIND;
    d->cmd.define_kind = &d->op;
    d->op.schema = &d->k;
}

/* Applies @cmd alone in a batch and commits it; returns the apply result. */
static int apply1(struct store *s, const Command *cmd,
                  struct store_result *res)
{
    struct store_batch *b = store_batch_begin(s);
    struct dossier_status st;
    int rc;

    assert_non_null(b);
    rc = store_apply(b, cmd, res);
    assert_int_equal(rc, res->status.code);
    if (store_batch_commit(b, 1, &st) != 0)
        fail_msg("commit: %s", st.message);
    return rc;
}

/* Like apply1, for a command that must succeed. */
static void apply1_ok(struct store *s, const Command *cmd,
                      struct store_result *res)
{
    if (apply1(s, cmd, res) != 0)
        fail_msg("apply: %s", res->status.message);
}

static void commit_ok(struct store_batch *b)
{
    struct dossier_status st;
    if (store_batch_commit(b, 1, &st) != 0)
        fail_msg("commit: %s", st.message);
}

/* The committed record (@kind, 16 x @rid_byte), or NULL when there is
 * none; free with dossier__store__v1__stored_record__free_unpacked. */
static StoredRecord *record_get(struct store *s, const char *kind,
                                uint8_t rid_byte)
{
    uint8_t rid[STORE_RID_BYTES];
    StoredRecord *r = NULL;
    struct dossier_status st;
    int rc;

    memset(rid, rid_byte, sizeof(rid));
    rc = store_record_get(s, kind, rid, &r, &st);
    if (rc == DOSSIER_NOT_FOUND) {
        assert_null(r);
        return NULL;
    }
    if (rc)
        fail_msg("store_record_get: %s", st.message);
    return r;
}

/* The committed version of (@kind, 16 x @rid_byte); 0 when missing. */
static uint64_t version_of(struct store *s, const char *kind,
                           uint8_t rid_byte)
{
    StoredRecord *r = record_get(s, kind, rid_byte);
    uint64_t v = r ? r->version : 0;
    if (r)
        dossier__store__v1__stored_record__free_unpacked(r, NULL);
    return v;
}

/* ------------------------------------------------------------------ */
/* Scans */

#define KEYS_MAX 32

struct keys {
    size_t n;
    size_t len[KEYS_MAX];
    uint8_t k[KEYS_MAX][STORE_KEY_MAX];
    int stop_after; /* 0: never; n: return 1 after n keys */
    int fail_with;  /* error code to return at the first key, or 0 */
};

static int keys_cb(void *arg, const uint8_t *key, size_t klen,
                   const uint8_t *val, size_t vlen)
{
    struct keys *ks = arg;
    (void)val;
    (void)vlen;
    if (ks->fail_with)
        return ks->fail_with;
    assert_true(ks->n < KEYS_MAX);
    assert_true(klen <= STORE_KEY_MAX);
    memcpy(ks->k[ks->n], key, klen);
    ks->len[ks->n++] = klen;
    return ks->stop_after && (int)ks->n == ks->stop_after;
}

static void scan(struct store *s, enum store_family fam,
                 const uint8_t *prefix, size_t plen, const uint8_t *after,
                 size_t alen, struct keys *out)
{
    struct dossier_status st;
    memset(out, 0, sizeof(*out));
    if (store_scan(s, fam, prefix, plen, after, alen, keys_cb, out, &st) != 0)
        fail_msg("store_scan: %s", st.message);
}

/* Whether @ks holds @key. */
static int keys_has(const struct keys *ks, const uint8_t *key, size_t len)
{
    for (size_t i = 0; i < ks->n; i++)
        if (ks->len[i] == len && memcmp(ks->k[i], key, len) == 0)
            return 1;
    return 0;
}

/* Every committed key of the index family that ends in rid 16 x @rid_byte. */
static size_t index_keys_of(struct store *s, uint8_t rid_byte)
{
    struct keys ks;
    uint8_t rid[STORE_RID_BYTES];
    size_t n = 0;

    memset(rid, rid_byte, sizeof(rid));
    scan(s, STORE_INDEX, NULL, 0, NULL, 0, &ks);
    for (size_t i = 0; i < ks.n; i++)
        if (ks.len[i] >= STORE_RID_BYTES &&
            memcmp(ks.k[i] + ks.len[i] - STORE_RID_BYTES, rid,
                   STORE_RID_BYTES) == 0)
            n++;
    return n;
}

/* The keys of the subject family under subject 16 x @sp_byte. */
static void subject_keys(struct store *s, uint8_t sp_byte, struct keys *ks)
{
    uint8_t sp[STORE_SP_BYTES];
    memset(sp, sp_byte, sizeof(sp));
    scan(s, STORE_SUBJECT, sp, sizeof(sp), NULL, 0, ks);
}

/* ------------------------------------------------------------------ */
/* Data directory */

/* store_open makes a missing data directory with mode 0700, reports it as
 * created and writes the DOSSIER marker. */
static void test_open_makes_missing_directory_with_marker(void **state)
{
    struct fixture *f = *state;
    char marker[256], text[128];
    struct stat sb;

    assert_int_equal(fx_open(f), 1);
    assert_int_equal(stat(f->data, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    path_in(marker, sizeof(marker), f->data, "DOSSIER");
    file_read(marker, text, sizeof(text));
    assert_string_equal(text, "dossier data directory\nformat 1\n");
    assert_int_equal(store_revision(f->s), 0);
}

/* An existing empty directory is made into a data directory too. */
static void test_open_uses_existing_empty_directory(void **state)
{
    struct fixture *f = *state;
    char marker[256];
    struct stat sb;

    assert_int_equal(mkdir(f->data, 0700), 0);
    assert_int_equal(fx_open(f), 1);
    path_in(marker, sizeof(marker), f->data, "DOSSIER");
    assert_int_equal(stat(marker, &sb), 0);
}

/* Reopening a data directory finds it (created 0) with what it holds. */
static void test_reopen_finds_existing_store(void **state)
{
    struct fixture *f = *state;
    struct put p;
    struct store_result res;

    assert_int_equal(fx_open(f), 1);
    put_init(&p, "company", 0x01, 0, 0, 1000);
    apply1_ok(f->s, &p.cmd, &res);
    fx_reopen(f);
    assert_int_equal(version_of(f->s, "company", 0x01), 1);
}

/* A non-empty directory without the marker is refused with
 * FAILED_PRECONDITION, and left as it was. */
static void test_open_refuses_foreign_non_empty_directory(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;
    char file[256], marker[256], text[64];
    struct store *s = NULL;
    struct stat sb;
    int created = -1;

    assert_int_equal(mkdir(f->data, 0700), 0);
    path_in(file, sizeof(file), f->data, "notes.txt");
    file_write(file, "mine\n", 0600);
    assert_int_equal(store_open(f->data, CACHE_BYTES, &s, &created, &st),
                     DOSSIER_FAILED_PRECONDITION);
    assert_int_equal(st.code, DOSSIER_FAILED_PRECONDITION);
    assert_null(s);
    path_in(marker, sizeof(marker), f->data, "DOSSIER");
    assert_int_equal(stat(marker, &sb), -1);
    file_read(file, text, sizeof(text));
    assert_string_equal(text, "mine\n");
}

/* A directory whose marker is not Dossier's format 1 is refused with
 * FAILED_PRECONDITION. */
static void test_open_refuses_other_format_marker(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;
    char marker[256];
    struct store *s = NULL;
    int created;

    assert_int_equal(mkdir(f->data, 0700), 0);
    path_in(marker, sizeof(marker), f->data, "DOSSIER");
    file_write(marker, "dossier data directory\nformat 2\n", 0600);
    assert_int_equal(store_open(f->data, CACHE_BYTES, &s, &created, &st),
                     DOSSIER_FAILED_PRECONDITION);
    assert_null(s);
}

/* A data directory already open is refused with FAILED_PRECONDITION. */
static void test_open_refuses_directory_in_use(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;
    struct store *s = NULL;
    int created;

    fx_open(f);
    assert_int_equal(store_open(f->data, CACHE_BYTES, &s, &created, &st),
                     DOSSIER_FAILED_PRECONDITION);
    assert_null(s);
}

/* A new store has no meta record: NOT_FOUND. */
static void test_meta_of_new_store_is_not_found(void **state)
{
    struct fixture *f = *state;
    Dossier__Store__V1__Meta *m = (void *)f; /* must become NULL */
    struct dossier_status st;

    fx_open(f);
    assert_int_equal(store_meta_get(f->s, &m, &st), DOSSIER_NOT_FOUND);
    assert_null(m);
}

/* The meta record written is the one read, also after reopening. */
static void test_meta_put_then_get_round_trips(void **state)
{
    struct fixture *f = *state;
    Dossier__Store__V1__Meta m = DOSSIER__STORE__V1__META__INIT, *got;
    uint8_t cluster[16], check[16], sealed[57];
    struct dossier_status st;

    memset(cluster, 0xc1, sizeof(cluster));
    memset(check, 0xc2, sizeof(check));
    memset(sealed, 0xc3, sizeof(sealed));
    m.format = 1;
    m.cluster_id = (ProtobufCBinaryData){sizeof(cluster), cluster};
    m.kek_version = 3;
    m.kek_check = (ProtobufCBinaryData){sizeof(check), check};
    m.sealed_keyset = (ProtobufCBinaryData){sizeof(sealed), sealed};
    m.created_at_ms = 1700000000123;
    fx_open(f);
    assert_int_equal(store_meta_put(f->s, &m, &st), 0);
    fx_reopen(f);
    assert_int_equal(store_meta_get(f->s, &got, &st), 0);
    assert_int_equal(got->format, 1);
    assert_int_equal(got->kek_version, 3);
    assert_int_equal(got->created_at_ms, 1700000000123);
    assert_int_equal(got->cluster_id.len, sizeof(cluster));
    assert_memory_equal(got->cluster_id.data, cluster, sizeof(cluster));
    assert_int_equal(got->kek_check.len, sizeof(check));
    assert_memory_equal(got->kek_check.data, check, sizeof(check));
    assert_int_equal(got->sealed_keyset.len, sizeof(sealed));
    assert_memory_equal(got->sealed_keyset.data, sealed, sizeof(sealed));
    dossier__store__v1__meta__free_unpacked(got, NULL);
}

/* ------------------------------------------------------------------ */
/* Key encodings (known answers) */

static const uint8_t RID[16] = {0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5,
                                0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb,
                                0xbc, 0xbd, 0xbe, 0xbf};

/* record key = kind 0x00 rid[16]. */
static void test_record_key_is_kind_nul_rid(void **state)
{
    static const uint8_t want[] = {
        'c',  'o',  'n',  't',  'a',  'c',  't',  0x00, 0xb0, 0xb1, 0xb2, 0xb3,
        0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf};
    uint8_t out[STORE_KEY_MAX];
    (void)state;
    assert_int_equal(store_record_key(out, "contact", RID), sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
}

/* membership key = sp[16] kind 0x00 rid[16]. */
static void test_membership_key_is_sp_kind_nul_rid(void **state)
{
    static const uint8_t sp[16] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5,
                                   0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
                                   0xac, 0xad, 0xae, 0xaf};
    static const uint8_t want[] = {
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9,
        0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 'd',  'e',  'a',  'l',
        0x00, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8,
        0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf};
    uint8_t out[STORE_KEY_MAX];
    (void)state;
    assert_int_equal(store_membership_key(out, sp, "deal", RID), sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
}

/* index key = kind 0x00 field 0x00 blind[16] rid[16]. */
static void test_index_key_is_kind_nul_field_nul_blind_rid(void **state)
{
    static const uint8_t blind[16] = {0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5,
                                      0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb,
                                      0xdc, 0xdd, 0xde, 0xdf};
    static const uint8_t want[] = {
        'c',  'o',  'n',  't',  'a',  'c',  't',  0x00, 'e',  'm',
        'a',  'i',  'l',  0x00, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5,
        0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf,
        0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9,
        0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf};
    uint8_t out[STORE_KEY_MAX];
    (void)state;
    assert_int_equal(store_index_key(out, "contact", "email", blind, RID),
                     sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
}

/* link row = dir kind 0x00 rid[16] label 0x00 kind 0x00 rid[16], and it
 * parses back into its parts. */
static void test_link_key_is_dir_kind_rid_label_kind_rid(void **state)
{
    static const uint8_t trid[16] = {0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5,
                                     0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb,
                                     0xcc, 0xcd, 0xce, 0xcf};
    static const uint8_t want[] = {
        'o',  'd',  'e',  'a',  'l',  0x00, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4,
        0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,
        'f',  'o',  'r',  0x00, 'c',  'o',  0x00, 0xc0, 0xc1, 0xc2, 0xc3,
        0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce,
        0xcf};
    uint8_t out[STORE_KEY_MAX];
    struct store_link_row r;
    (void)state;
    assert_int_equal(store_link_key(out, 'o', "deal", RID, "for", "co", trid),
                     sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(store_link_key_parse(out, sizeof(want), &r), 0);
    assert_int_equal(r.dir, 'o');
    assert_string_equal(r.a_kind, "deal");
    assert_memory_equal(r.a_rid, RID, 16);
    assert_string_equal(r.label, "for");
    assert_string_equal(r.b_kind, "co");
    assert_memory_equal(r.b_rid, trid, 16);
    /* One byte short, or a wrong direction letter: not a link row. */
    assert_int_equal(store_link_key_parse(out, sizeof(want) - 1, &r),
                     DOSSIER_CORRUPT);
    out[0] = 'x';
    assert_int_equal(store_link_key_parse(out, sizeof(want), &r),
                     DOSSIER_CORRUPT);
}

/* The longest names give keys of at most STORE_KEY_MAX bytes. */
static void test_longest_keys_fit_store_key_max(void **state)
{
    char name[SCHEMA_NAME_MAX + 1];
    uint8_t out[STORE_KEY_MAX + 64], blind[16] = {0}, sp[16] = {0};
    (void)state;
    memset(name, 'n', SCHEMA_NAME_MAX);
    name[SCHEMA_NAME_MAX] = '\0';
    assert_true(store_record_key(out, name, RID) <= STORE_KEY_MAX);
    assert_true(store_membership_key(out, sp, name, RID) <= STORE_KEY_MAX);
    assert_true(store_index_key(out, name, name, blind, RID) <= STORE_KEY_MAX);
    assert_true(store_link_key(out, 'i', name, RID, name, name, RID) <=
                STORE_KEY_MAX);
}

/* ------------------------------------------------------------------ */
/* Puts */

/* Each applied change takes the next revision and a record's version is
 * the revision of its last change: versions grow across records and
 * batches, and the store's revision follows. */
static void test_put_versions_are_revisions_and_grow(void **state)
{
    struct fixture *f = *state;
    struct put a, b;
    struct store_result res;

    fx_open(f);
    put_person(&a, 0x0a, 1000);
    put_expect(&a, 0);
    apply1_ok(f->s, &a.cmd, &res);
    assert_int_equal(res.version, 1);
    assert_true(res.created);
    assert_int_equal(res.updated_at_ms, 1000);
    assert_int_equal(store_revision(f->s), 1);

    put_person(&b, 0x0b, 2000);
    apply1_ok(f->s, &b.cmd, &res);
    assert_int_equal(res.version, 2);
    assert_int_equal(store_revision(f->s), 2);

    put_person(&a, 0x0a, 3000);
    put_expect(&a, 1);
    apply1_ok(f->s, &a.cmd, &res);
    assert_int_equal(res.version, 3);
    assert_false(res.created);
    assert_int_equal(store_revision(f->s), 3);
    assert_int_equal(version_of(f->s, "contact", 0x0a), 3);
    assert_int_equal(version_of(f->s, "contact", 0x0b), 2);
}

/* The stored record holds what the Put carried, its creation time from its
 * first Put and its update time from its last. */
static void test_put_stores_record_with_times(void **state)
{
    struct fixture *f = *state;
    struct put p;
    struct store_result res;
    StoredRecord *r;

    fx_open(f);
    put_init(&p, "contact", 0x0a, 0x5a, 7, 1000);
    put_new_key(&p, 7, 0x70);
    put_index(&p, "email", 0xe1);
    apply1_ok(f->s, &p.cmd, &res);
    put_init(&p, "contact", 0x0a, 0x5a, 7, 5000);
    put_index(&p, "email", 0xe1);
    apply1_ok(f->s, &p.cmd, &res);

    r = record_get(f->s, "contact", 0x0a);
    assert_non_null(r);
    assert_string_equal(r->kind, "contact");
    assert_int_equal(r->subject.len, 16);
    assert_memory_equal(r->subject.data, p.sp, 16);
    assert_int_equal(r->dek_id, 7);
    assert_int_equal(r->version, 2);
    assert_int_equal(r->created_at_ms, 1000);
    assert_int_equal(r->updated_at_ms, 5000);
    assert_int_equal(r->sealed_id.len, sizeof(p.sealed_id));
    assert_memory_equal(r->sealed_id.data, p.sealed_id, sizeof(p.sealed_id));
    assert_int_equal(r->n_fields, 1);
    assert_string_equal(r->fields[0]->name, "email");
    assert_memory_equal(r->fields[0]->box.data, p.box, sizeof(p.box));
    assert_int_equal(r->n_index_keys, 1);
    assert_memory_equal(r->index_keys[0].data, p.ikbuf[0], p.ik[0].len);
    dossier__store__v1__stored_record__free_unpacked(r, NULL);
}

/* A record without a subject can be replaced by a later Put. */
static void test_record_without_subject_can_be_replaced(void **state)
{
    struct fixture *f = *state;
    struct put p;
    struct store_result res;

    fx_open(f);
    put_init(&p, "company", 0x0c, 0, 0, 1000);
    apply1_ok(f->s, &p.cmd, &res);
    put_init(&p, "company", 0x0c, 0, 0, 2000);
    apply1_ok(f->s, &p.cmd, &res);
    assert_int_equal(res.version, 2);
    assert_false(res.created);
}

/* Expected version 0 means "must not exist": on an existing record it is
 * ALREADY_EXISTS and the record is unchanged. */
static void test_put_expecting_0_on_existing_is_already_exists(void **state)
{
    struct fixture *f = *state;
    struct put p;
    struct store_result res;

    fx_open(f);
    put_init(&p, "company", 0x0a, 0, 0, 1000);
    apply1_ok(f->s, &p.cmd, &res);
    put_expect(&p, 0);
    assert_int_equal(apply1(f->s, &p.cmd, &res), DOSSIER_ALREADY_EXISTS);
    assert_int_equal(version_of(f->s, "company", 0x0a), 1);
    assert_int_equal(store_revision(f->s), 1);
}

/* A Put expecting another version than the record's is VERSION_CONFLICT;
 * expecting the record's version succeeds. */
static void test_put_expecting_wrong_version_is_version_conflict(
    void **state)
{
    struct fixture *f = *state;
    struct put p;
    struct store_result res;

    fx_open(f);
    put_person(&p, 0x0a, 1000);
    apply1_ok(f->s, &p.cmd, &res);
    apply1_ok(f->s, &p.cmd, &res); /* now at version 2 */
    put_expect(&p, 1);
    assert_int_equal(apply1(f->s, &p.cmd, &res), DOSSIER_VERSION_CONFLICT);
    put_expect(&p, 3);
    assert_int_equal(apply1(f->s, &p.cmd, &res), DOSSIER_VERSION_CONFLICT);
    assert_int_equal(version_of(f->s, "contact", 0x0a), 2);
    put_expect(&p, 2);
    apply1_ok(f->s, &p.cmd, &res);
    assert_int_equal(res.version, 3);
}

/* A Put expecting version N of a record that does not exist is
 * NOT_FOUND. */
static void test_put_expecting_version_of_missing_record_is_not_found(
    void **state)
{
    struct fixture *f = *state;
    struct put p;
    struct store_result res;

    fx_open(f);
    put_init(&p, "company", 0x0a, 0, 0, 1000);
    put_expect(&p, 1);
    assert_int_equal(apply1(f->s, &p.cmd, &res), DOSSIER_NOT_FOUND);
    assert_null(record_get(f->s, "company", 0x0a));
}

/* A command that fails leaves its batch as it was: it takes no revision,
 * is not counted, and the next command of the batch still succeeds. */
static void test_failed_command_leaves_batch_unchanged(void **state)
{
    struct fixture *f = *state;
    struct put a, b;
    struct store_result res;
    struct store_batch *bt;

    fx_open(f);
    put_init(&a, "company", 0x0a, 0, 0, 1000);
    put_init(&b, "company", 0x0b, 0, 0, 1000);
    bt = store_batch_begin(f->s);
    assert_int_equal(store_apply(bt, &a.cmd, &res), 0);
    assert_int_equal(res.version, 1);
    put_expect(&a, 0);
    assert_int_equal(store_apply(bt, &a.cmd, &res), DOSSIER_ALREADY_EXISTS);
    assert_int_equal(res.status.code, DOSSIER_ALREADY_EXISTS);
    assert_int_equal(store_batch_count(bt), 1);
    assert_int_equal(store_apply(bt, &b.cmd, &res), 0);
    assert_int_equal(res.version, 2);
    assert_int_equal(store_batch_count(bt), 2);
    commit_ok(bt);
    assert_int_equal(store_revision(f->s), 2);
    assert_int_equal(version_of(f->s, "company", 0x0a), 1);
    assert_int_equal(version_of(f->s, "company", 0x0b), 2);
}

/* Applies a put of contact 16 x @rid_byte at @time_ms with request id
 * @n (as 16 bytes), alone in a batch. */
static void put_with_request(struct store *s, uint8_t rid_byte,
                             int64_t time_ms, uint32_t n)
{
    struct put p;
    struct store_result res;
    uint8_t id[STORE_REQUEST_ID_BYTES] = {0};
    id[0] = (uint8_t)(n >> 24);
    id[1] = (uint8_t)(n >> 16);
    id[2] = (uint8_t)(n >> 8);
    id[3] = (uint8_t)n;
    put_person(&p, rid_byte, time_ms);
    p.cmd.request_id = (ProtobufCBinaryData){sizeof(id), id};
    apply1_ok(s, &p.cmd, &res);
}

/* Request-id expiry resumes where the last one stopped. After 3,000 ids
 * expired (their deletions not yet compacted away), the next batch's
 * expiry steps over a handful of deleted entries, not all of them, and
 * the expired ids are gone while a recent one still deduplicates. Before,
 * every batch sought to the start of the time index: a 3-node cluster
 * loaded with 3 million records fell to 100 writes/s once its ids began
 * to expire (docs/BENCHMARKS.md). */
static void test_request_expiry_resumes_where_it_stopped(void **state)
{
    struct fixture *f = *state;
    const int64_t t0 = 1000000, later = t0 + 3000 + STORE_REQUEST_TTL_MS + 1;
    rocksdb_perfcontext_t *pc;
    uint64_t skipped;

    fx_open(f);
    for (uint32_t i = 0; i < 3000; i++)
        put_with_request(f->s, 0x01, t0 + i, i);
    /* Each command expires up to REQ_EXPIRE_PER_COMMAND (8) old ids. */
    for (uint32_t i = 0; i < 400; i++)
        put_with_request(f->s, 0x02, later + i, 10000 + i);
    rocksdb_set_perf_level(rocksdb_enable_count);
    pc = rocksdb_perfcontext_create();
    rocksdb_perfcontext_reset(pc);
    put_with_request(f->s, 0x02, later + 500, 20000);
    skipped = rocksdb_perfcontext_metric(pc,
                                         rocksdb_internal_delete_skipped_count);
    rocksdb_perfcontext_destroy(pc);
    rocksdb_set_perf_level(1 /* disabled */);
    if (skipped > 100)
        fail_msg("the expiry stepped over %llu deleted entries",
                 (unsigned long long)skipped);
    /* The old ids are gone: the same id applies again (a new version);
     * a recent one is still a duplicate (same version as before). */
    {
        struct put p;
        struct store_result res;
        uint8_t id[STORE_REQUEST_ID_BYTES] = {0};
        uint64_t v;
        id[3] = 5; /* old id 5 */
        put_person(&p, 0x03, later + 600);
        p.cmd.request_id = (ProtobufCBinaryData){sizeof(id), id};
        apply1_ok(f->s, &p.cmd, &res);
        assert_false(res.duplicate);
        v = res.version;
        apply1_ok(f->s, &p.cmd, &res);
        assert_true(res.duplicate);
        assert_int_equal(res.version, v);
    }
}

/* A RequestExpireOp (the leader's sweep) removes up to its limit of the
 * request ids past their TTL as of its time, oldest first, and changes
 * nothing else; store_requests_kept_before() tells the leader whether
 * one is due. */
static void test_request_sweep_removes_ids_past_their_ttl(void **state)
{
    struct fixture *f = *state;
    const int64_t t0 = 1000000, later = t0 + 100 + STORE_REQUEST_TTL_MS;
    Dossier__Store__V1__RequestExpireOp op =
        DOSSIER__STORE__V1__REQUEST_EXPIRE_OP__INIT;
    Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    struct store_result res;
    uint64_t rev;

    fx_open(f);
    assert_false(store_requests_kept_before(f->s, t0 + 1000));
    for (uint32_t i = 0; i < 100; i++)
        put_with_request(f->s, 0x01, t0 + i, i);
    assert_true(store_requests_kept_before(f->s, t0 + 1));
    assert_false(store_requests_kept_before(f->s, t0));
    rev = store_revision(f->s);

    cmd.time_ms = later; /* every id is past its TTL then */
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_REQUEST_EXPIRE;
    cmd.request_expire = &op;
    op.limit = 60;
    apply1_ok(f->s, &cmd, &res);
    /* The 60 oldest went: the oldest kept is the one of t0 + 60. */
    assert_false(store_requests_kept_before(f->s, t0 + 60));
    assert_true(store_requests_kept_before(f->s, t0 + 61));
    op.limit = 1000;
    apply1_ok(f->s, &cmd, &res);
    assert_false(store_requests_kept_before(f->s, later));
    assert_int_equal(store_revision(f->s), rev);

    /* An id within its TTL at the sweep's time stays. */
    put_with_request(f->s, 0x02, later - 10, 500);
    apply1_ok(f->s, &cmd, &res);
    assert_true(store_requests_kept_before(f->s, later));
    /* A malformed sweep is refused. */
    cmd.request_expire = NULL;
    assert_int_equal(apply1(f->s, &cmd, &res), DOSSIER_CORRUPT);
}

/* A Put that fails late (after reading the record and the subject key)
 * writes nothing: no record, no index key, no membership, no subject key
 * change. */
static void test_failed_put_writes_nothing(void **state)
{
    struct fixture *f = *state;
    struct put a, c, d;
    struct store_result res;
    struct store_batch *bt;
    struct keys ks;
    SubjectKey *sk;
    uint8_t sp[16];

    fx_open(f);
    put_init(&a, "contact", 0x0a, 0x5a, 7, 1000);
    put_new_key(&a, 7, 0x70);
    put_index(&a, "email", 0xe1);
    apply1_ok(f->s, &a.cmd, &res);

    put_init(&c, "contact", 0x0c, 0x5a, 8, 2000); /* stale data key */
    put_new_key(&c, 8, 0x80);
    put_index(&c, "email", 0xe2);
    put_init(&d, "company", 0x0d, 0, 0, 2000);
    bt = store_batch_begin(f->s);
    assert_int_equal(store_apply(bt, &c.cmd, &res), DOSSIER_RETRY);
    assert_int_equal(store_apply(bt, &d.cmd, &res), 0);
    commit_ok(bt);

    assert_null(record_get(f->s, "contact", 0x0c));
    assert_int_equal(index_keys_of(f->s, 0x0c), 0);
    subject_keys(f->s, 0x5a, &ks);
    assert_int_equal(ks.n, 2); /* the key row and a's membership */
    memset(sp, 0x5a, sizeof(sp));
    assert_int_equal(store_subject_key_get(f->s, sp, &sk, NULL), 0);
    assert_int_equal(sk->dek_id, 7);
    dossier__store__v1__subject_key__free_unpacked(sk, NULL);
    assert_int_equal(store_revision(f->s), 2);
}

/* A command sees the effects of the earlier commands of its batch: a
 * second Put of a record made in the same batch finds it (and its subject
 * key) before anything is committed. */
static void test_put_sees_earlier_put_of_same_batch(void **state)
{
    struct fixture *f = *state;
    struct put p1, p2;
    struct store_result res;
    struct store_batch *bt;

    fx_open(f);
    put_init(&p1, "contact", 0x0a, 0x5a, 7, 1000);
    put_new_key(&p1, 7, 0x70);
    put_expect(&p1, 0);
    put_init(&p2, "contact", 0x0a, 0x5a, 7, 2000); /* no new key */
    put_expect(&p2, 1);
    bt = store_batch_begin(f->s);
    assert_int_equal(store_apply(bt, &p1.cmd, &res), 0);
    assert_int_equal(store_apply(bt, &p2.cmd, &res), 0);
    assert_int_equal(res.version, 2);
    assert_false(res.created);
    /* Nothing is visible before the commit. */
    assert_null(record_get(f->s, "contact", 0x0a));
    assert_int_equal(store_revision(f->s), 0);
    commit_ok(bt);
    assert_int_equal(version_of(f->s, "contact", 0x0a), 2);
    assert_int_equal(store_revision(f->s), 2);
}

/* The first Put of a subject installs the subject key it carries. */
static void test_first_put_of_subject_installs_its_key(void **state)
{
    struct fixture *f = *state;
    struct put p;
    struct store_result res;
    SubjectKey *sk = NULL;
    struct dossier_status st;

    fx_open(f);
    put_init(&p, "contact", 0x0a, 0x5a, 7, 1000);
    put_new_key(&p, 7, 0x70);
    assert_int_equal(store_subject_key_get(f->s, p.sp, &sk, &st),
                     DOSSIER_NOT_FOUND);
    apply1_ok(f->s, &p.cmd, &res);
    assert_int_equal(store_subject_key_get(f->s, p.sp, &sk, &st), 0);
    assert_int_equal(sk->dek_id, 7);
    assert_int_equal(sk->kek_version, 1);
    assert_int_equal(sk->wrapped_dek.len, sizeof(p.wrapped));
    assert_memory_equal(sk->wrapped_dek.data, p.wrapped, sizeof(p.wrapped));
    assert_memory_equal(sk->sealed_subject_id.data, p.sealed_sid,
                        sizeof(p.sealed_sid));
    dossier__store__v1__subject_key__free_unpacked(sk, NULL);
}

/* The first Put of a subject without a new subject key is RETRY: the
 * proposer must make the key. */
static void test_first_put_of_subject_without_key_is_retry(void **state)
{
    struct fixture *f = *state;
    struct put p;
    struct store_result res;

    fx_open(f);
    put_init(&p, "contact", 0x0a, 0x5a, 7, 1000);
    assert_int_equal(apply1(f->s, &p.cmd, &res), DOSSIER_RETRY);
    put_new_key(&p, 8, 0x80); /* a key other than the one sealed with */
    assert_int_equal(apply1(f->s, &p.cmd, &res), DOSSIER_RETRY);
    assert_null(record_get(f->s, "contact", 0x0a));
}

/* A Put sealed under another data key than the subject's stored one (the
 * proposer lost a race) is RETRY, even when it carries a new key, and the
 * stored key stays. */
static void test_put_with_other_dek_id_than_subjects_is_retry(void **state)
{
    struct fixture *f = *state;
    struct put a, b;
    struct store_result res;
    SubjectKey *sk;

    fx_open(f);
    put_init(&a, "contact", 0x0a, 0x5a, 7, 1000);
    put_new_key(&a, 7, 0x70);
    apply1_ok(f->s, &a.cmd, &res);
    put_init(&b, "contact", 0x0b, 0x5a, 8, 2000);
    put_new_key(&b, 8, 0x80);
    assert_int_equal(apply1(f->s, &b.cmd, &res), DOSSIER_RETRY);
    assert_null(record_get(f->s, "contact", 0x0b));
    assert_int_equal(store_subject_key_get(f->s, a.sp, &sk, NULL), 0);
    assert_int_equal(sk->dek_id, 7);
    dossier__store__v1__subject_key__free_unpacked(sk, NULL);
}

/* A Put may not move a record to another subject, nor take its subject
 * away: FAILED_PRECONDITION, record unchanged. */
static void test_put_changing_subject_is_failed_precondition(void **state)
{
    struct fixture *f = *state;
    struct put a, b;
    struct store_result res;

    fx_open(f);
    put_init(&a, "contact", 0x0a, 0x5a, 7, 1000);
    put_new_key(&a, 7, 0x70);
    apply1_ok(f->s, &a.cmd, &res);

    put_init(&b, "contact", 0x0a, 0x5b, 9, 2000);
    put_new_key(&b, 9, 0x90);
    assert_int_equal(apply1(f->s, &b.cmd, &res), DOSSIER_FAILED_PRECONDITION);
    put_init(&b, "contact", 0x0a, 0, 0, 2000);
    assert_int_equal(apply1(f->s, &b.cmd, &res), DOSSIER_FAILED_PRECONDITION);
    assert_int_equal(version_of(f->s, "contact", 0x0a), 1);
}

/* A Put replaces the record's index keys: the old ones go, the new ones
 * come. */
static void test_put_replaces_index_keys(void **state)
{
    struct fixture *f = *state;
    struct put p;
    struct store_result res;
    struct keys ks;

    fx_open(f);
    put_person(&p, 0x0a, 1000);
    put_index(&p, "email", 0xe1);
    apply1_ok(f->s, &p.cmd, &res);
    scan(f->s, STORE_INDEX, NULL, 0, NULL, 0, &ks);
    assert_int_equal(ks.n, 1);
    assert_true(keys_has(&ks, p.ikbuf[0], p.ik[0].len));

    put_person(&p, 0x0a, 2000);
    put_index(&p, "email", 0xe2);
    apply1_ok(f->s, &p.cmd, &res);
    scan(f->s, STORE_INDEX, NULL, 0, NULL, 0, &ks);
    assert_int_equal(ks.n, 1);
    assert_true(keys_has(&ks, p.ikbuf[0], p.ik[0].len));
}

/* ------------------------------------------------------------------ */
/* Deletes */

/* Delete removes the record, its index keys and its subject membership,
 * and reports the deleted version; the subject's key stays. */
static void test_delete_removes_record_index_keys_and_membership(
    void **state)
{
    struct fixture *f = *state;
    struct put a, b;
    struct del d;
    struct store_result res;
    struct keys ks;
    uint8_t member[STORE_KEY_MAX];
    size_t mlen;

    fx_open(f);
    put_init(&a, "contact", 0x0a, 0x5a, 7, 1000);
    put_new_key(&a, 7, 0x70);
    put_index(&a, "email", 0xe1);
    put_index(&a, "phone", 0xe2);
    apply1_ok(f->s, &a.cmd, &res);
    put_init(&b, "contact", 0x0b, 0x5a, 7, 1000);
    put_index(&b, "email", 0xe3);
    apply1_ok(f->s, &b.cmd, &res);
    assert_int_equal(index_keys_of(f->s, 0x0a), 2);

    del_init(&d, "contact", 0x0a);
    apply1_ok(f->s, &d.cmd, &res);
    assert_int_equal(res.version, 1);
    assert_int_equal(store_revision(f->s), 3);

    assert_null(record_get(f->s, "contact", 0x0a));
    assert_int_equal(index_keys_of(f->s, 0x0a), 0);
    assert_int_equal(index_keys_of(f->s, 0x0b), 1);
    subject_keys(f->s, 0x5a, &ks);
    assert_int_equal(ks.n, 2);
    assert_true(keys_has(&ks, a.sp, 16)); /* the subject's key row */
    mlen = store_membership_key(member, a.sp, "contact", b.rid);
    assert_true(keys_has(&ks, member, mlen));
    mlen = store_membership_key(member, a.sp, "contact", a.rid);
    assert_false(keys_has(&ks, member, mlen));
}

/* Deleting a record that does not exist is NOT_FOUND. */
static void test_delete_of_missing_record_is_not_found(void **state)
{
    struct fixture *f = *state;
    struct del d;
    struct store_result res;

    fx_open(f);
    del_init(&d, "company", 0x0a);
    assert_int_equal(apply1(f->s, &d.cmd, &res), DOSSIER_NOT_FOUND);
    assert_int_equal(store_revision(f->s), 0);
}

/* A Delete expecting another version is VERSION_CONFLICT and deletes
 * nothing. */
static void test_delete_expecting_wrong_version_is_version_conflict(
    void **state)
{
    struct fixture *f = *state;
    struct put p;
    struct del d;
    struct store_result res;

    fx_open(f);
    put_init(&p, "company", 0x0a, 0, 0, 1000);
    apply1_ok(f->s, &p.cmd, &res);
    del_init(&d, "company", 0x0a);
    d.op.expect_case = DOSSIER__STORE__V1__DELETE_OP__EXPECT_EXPECTED_VERSION;
    d.op.expected_version = 2;
    assert_int_equal(apply1(f->s, &d.cmd, &res), DOSSIER_VERSION_CONFLICT);
    assert_int_equal(version_of(f->s, "company", 0x0a), 1);
    d.op.expected_version = 1;
    apply1_ok(f->s, &d.cmd, &res);
    assert_null(record_get(f->s, "company", 0x0a));
}

/* ------------------------------------------------------------------ */
/* Links */

/* The number of rows of the link family. */
static size_t link_rows(struct store *s)
{
    struct keys ks;
    scan(s, STORE_LINK, NULL, 0, NULL, 0, &ks);
    return ks.n;
}

/* Whether the link family holds the "o" row (@kind, 16 x @from) @label
 * (@tkind, 16 x @to), and whether it holds its "i" mirror: 1 if both, 0 if
 * neither (a row without its mirror fails the test). */
static int has_link(struct store *s, const char *kind, uint8_t from,
                    const char *label, const char *tkind, uint8_t to)
{
    uint8_t a[STORE_RID_BYTES], b[STORE_RID_BYTES], key[STORE_KEY_MAX];
    struct keys ks;
    size_t klen;
    int o, i;

    memset(a, from, sizeof(a));
    memset(b, to, sizeof(b));
    scan(s, STORE_LINK, NULL, 0, NULL, 0, &ks);
    klen = store_link_key(key, 'o', kind, a, label, tkind, b);
    o = keys_has(&ks, key, klen);
    klen = store_link_key(key, 'i', tkind, b, label, kind, a);
    i = keys_has(&ks, key, klen);
    assert_int_equal(o, i);
    return o;
}

/* A Put writes each link as an "o" row holding the sealed target id and an
 * "i" mirror, records how many, and store_record_links reads them back
 * with the record. */
static void test_put_writes_link_rows_both_ways(void **state)
{
    struct fixture *f = *state;
    struct put p;
    struct store_result res;
    struct store_link *links;
    StoredRecord *r;
    struct dossier_status st;
    size_t n;

    fx_open(f);
    put_person(&p, 0x0a, 1000);
    put_link(&p, "works_at", "company", 0x0c);
    put_link(&p, "owns", "deal", 0x0d);
    apply1_ok(f->s, &p.cmd, &res);
    assert_int_equal(link_rows(f->s), 4);
    assert_true(has_link(f->s, "contact", 0x0a, "works_at", "company", 0x0c));
    assert_true(has_link(f->s, "contact", 0x0a, "owns", "deal", 0x0d));

    assert_int_equal(store_record_links(f->s, "contact", p.rid, &r, &links, &n,
                                        &st),
                     0);
    assert_int_equal(r->version, res.version);
    assert_int_equal(r->n_links, 2);
    assert_int_equal(n, 2);
    /* Key order: by label. */
    assert_string_equal(links[0].label, "owns");
    assert_string_equal(links[0].kind, "deal");
    assert_memory_equal(links[0].rid, p.lrid[1], STORE_RID_BYTES);
    assert_int_equal(links[0].sealed_len, 8);
    assert_memory_equal(links[0].sealed_id, p.lrid[1], 8);
    assert_string_equal(links[1].label, "works_at");
    store_links_free(links, n);
    dossier__store__v1__stored_record__free_unpacked(r, NULL);

    /* A record that is not there has no links to read. */
    memset(p.rid, 0x0f, sizeof(p.rid));
    assert_int_equal(store_record_links(f->s, "contact", p.rid, &r, &links, &n,
                                        &st),
                     DOSSIER_NOT_FOUND);
    assert_null(r);
    assert_null(links);
}

/* A Put replaces the record's links: rows of links it no longer has go,
 * with their mirrors; other records' links stay. */
static void test_put_replaces_link_rows(void **state)
{
    struct fixture *f = *state;
    struct put p, q;
    struct store_result res;

    fx_open(f);
    put_person(&q, 0x0b, 1000);
    put_link(&q, "works_at", "company", 0x0c);
    apply1_ok(f->s, &q.cmd, &res);
    put_person(&p, 0x0a, 1000);
    put_link(&p, "works_at", "company", 0x0c);
    apply1_ok(f->s, &p.cmd, &res);
    put_person(&p, 0x0a, 2000);
    put_link(&p, "works_at", "company", 0x0e);
    apply1_ok(f->s, &p.cmd, &res);
    assert_false(has_link(f->s, "contact", 0x0a, "works_at", "company", 0x0c));
    assert_true(has_link(f->s, "contact", 0x0a, "works_at", "company", 0x0e));
    assert_true(has_link(f->s, "contact", 0x0b, "works_at", "company", 0x0c));
    assert_int_equal(link_rows(f->s), 4);

    put_person(&p, 0x0a, 3000); /* no links at all */
    apply1_ok(f->s, &p.cmd, &res);
    assert_int_equal(link_rows(f->s), 2);
}

/* Deleting a record removes its links and the links of other records to
 * it, both rows of each. */
static void test_delete_removes_links_from_and_to_the_record(void **state)
{
    struct fixture *f = *state;
    struct put a, b;
    struct del d;
    struct store_result res;

    fx_open(f);
    put_person(&a, 0x0a, 1000);
    put_link(&a, "works_at", "company", 0x0c);
    apply1_ok(f->s, &a.cmd, &res);
    put_init(&b, "deal", 0x0d, 0, 0, 1000);
    put_link(&b, "involves", "contact", 0x0a);
    put_link(&b, "for", "company", 0x0c);
    apply1_ok(f->s, &b.cmd, &res);
    assert_int_equal(link_rows(f->s), 6);

    del_init(&d, "contact", 0x0a);
    apply1_ok(f->s, &d.cmd, &res);
    assert_false(has_link(f->s, "contact", 0x0a, "works_at", "company", 0x0c));
    assert_false(has_link(f->s, "deal", 0x0d, "involves", "contact", 0x0a));
    assert_true(has_link(f->s, "deal", 0x0d, "for", "company", 0x0c));
    assert_int_equal(link_rows(f->s), 2);
}

/* Erasing a subject removes the links from and to each of its records. */
static void test_erase_removes_links_of_every_record(void **state)
{
    struct fixture *f = *state;
    struct put a, t, d;
    Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__EraseOp op = DOSSIER__STORE__V1__ERASE_OP__INIT;
    struct store_result res;

    fx_open(f);
    put_person(&a, 0x0a, 1000);
    put_link(&a, "works_at", "company", 0x0c);
    apply1_ok(f->s, &a.cmd, &res);
    put_init(&t, "ticket", 0x0b, 0x5a, 7, 1000);
    put_link(&t, "raised_by", "contact", 0x0a);
    apply1_ok(f->s, &t.cmd, &res);
    put_init(&d, "deal", 0x0d, 0, 0, 1000);
    put_link(&d, "involves", "contact", 0x0a);
    put_link(&d, "for", "company", 0x0c);
    apply1_ok(f->s, &d.cmd, &res);
    assert_int_equal(link_rows(f->s), 8);

    op.subject = (ProtobufCBinaryData){STORE_SP_BYTES, a.sp};
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_ERASE;
    cmd.erase = &op;
    apply1_ok(f->s, &cmd, &res);
    assert_int_equal(res.deleted, 2);
    assert_true(has_link(f->s, "deal", 0x0d, "for", "company", 0x0c));
    assert_int_equal(link_rows(f->s), 2);
}

/* Record retention: a RecordRetentionOp deletes a record only if, at the
 * command's time, its kind's record retention has passed since the base
 * the kind names (last update, or creation); the others stay. A deleted
 * record's links go both ways. */
static void test_record_retention_counts_from_the_kinds_base(void **state)
{
    struct fixture *f = *state;
    struct define du, dc;
    struct put a, b;
    struct store_result res;
    Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__RecordRetentionOp op =
        DOSSIER__STORE__V1__RECORD_RETENTION_OP__INIT;
    Dossier__Store__V1__RecordRetentionOp__Item it[2], *itp[2];
    const int64_t day = 86400000, t0 = 1000 * day;

    fx_open(f);
    define_init(&du, "visit", 0);
    du.k.record_retention_days = 30; /* since the last update */
    apply1_ok(f->s, &du.cmd, &res);
    define_init(&dc, "visit_c", 0);
    dc.k.record_retention_days = 30;
    dc.k.record_retention_base =
        DOSSIER__V1__RETENTION_BASE__RETENTION_BASE_CREATED;
    apply1_ok(f->s, &dc.cmd, &res);
    /* Both made at t0 and updated at t0 + 20 days. */
    put_init(&a, "visit", 0x0a, 0x5a, 7, t0);
    put_new_key(&a, 7, 0x70);
    put_link(&a, "at", "company", 0x0c);
    apply1_ok(f->s, &a.cmd, &res);
    put_init(&b, "visit_c", 0x0b, 0x5a, 7, t0);
    apply1_ok(f->s, &b.cmd, &res);
    a.cmd.time_ms = b.cmd.time_ms = t0 + 20 * day;
    a.op.new_subject_key = NULL;
    apply1_ok(f->s, &a.cmd, &res);
    apply1_ok(f->s, &b.cmd, &res);
    assert_int_equal(link_rows(f->s), 2);

    for (int i = 0; i < 2; i++) {
        dossier__store__v1__record_retention_op__item__init(&it[i]);
        it[i].kind = i ? "visit_c" : "visit";
        it[i].rid = i ? b.op.rid : a.op.rid;
        itp[i] = &it[i];
    }
    op.items = itp;
    op.n_items = 2;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_RECORD_RETENTION;
    cmd.record_retention = &op;
    /* 35 days after creation, 15 after the update: only visit_c goes. */
    cmd.time_ms = t0 + 35 * day;
    apply1_ok(f->s, &cmd, &res);
    assert_int_equal(res.deleted, 1);
    assert_int_not_equal(version_of(f->s, "visit", 0x0a), 0);
    assert_int_equal(version_of(f->s, "visit_c", 0x0b), 0);
    /* 31 days after the update: visit goes too, with its link rows. */
    cmd.time_ms = t0 + 51 * day;
    apply1_ok(f->s, &cmd, &res);
    assert_int_equal(res.deleted, 1);
    assert_int_equal(version_of(f->s, "visit", 0x0a), 0);
    assert_int_equal(link_rows(f->s), 0);
    /* Nothing left to delete: the command still applies, deleting none. */
    apply1_ok(f->s, &cmd, &res);
    assert_int_equal(res.deleted, 0);
}

/* Retention leaves a restricted subject's records alone at apply, whole
 * records and fields alike (Art. 18: storage only), whatever the sweeper
 * proposed; lifted, the same commands take them. */
static void test_retention_skips_restricted_subjects(void **state)
{
    struct fixture *f = *state;
    struct define d;
    struct put a;
    struct store_result res;
    Command rc_cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Command fc_cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Command rs_cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__RecordRetentionOp rop =
        DOSSIER__STORE__V1__RECORD_RETENTION_OP__INIT;
    Dossier__Store__V1__RecordRetentionOp__Item rit, *ritp = &rit;
    Dossier__Store__V1__RetentionOp fop = DOSSIER__STORE__V1__RETENTION_OP__INIT;
    Dossier__Store__V1__RetentionOp__Item fit, *fitp = &fit;
    Dossier__Store__V1__RestrictOp rs = DOSSIER__STORE__V1__RESTRICT_OP__INIT;
    char *fields[] = {"title"};
    uint8_t sp[STORE_SP_BYTES];
    StoredRecord *r;
    const int64_t day = 86400000, t0 = 1000 * day;

    fx_open(f);
    define_init(&d, "visit", 0);
    d.f[0].retention_days = 10;
    d.k.record_retention_days = 30;
    apply1_ok(f->s, &d.cmd, &res);
    put_init(&a, "visit", 0x0a, 0x5a, 7, t0);
    put_new_key(&a, 7, 0x70);
    a.field.name = "title";
    apply1_ok(f->s, &a.cmd, &res);
    memset(sp, 0x5a, sizeof(sp));
    rs.subject = (ProtobufCBinaryData){sizeof(sp), sp};
    rs.restricted = 1;
    rs_cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_RESTRICTION;
    rs_cmd.restriction = &rs;
    apply1_ok(f->s, &rs_cmd, &res);

    dossier__store__v1__retention_op__item__init(&fit);
    fit.kind = "visit";
    fit.rid = a.op.rid;
    fit.fields = fields;
    fit.n_fields = 1;
    fop.items = &fitp;
    fop.n_items = 1;
    fc_cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_RETENTION;
    fc_cmd.retention = &fop;
    fc_cmd.time_ms = t0 + 20 * day;
    dossier__store__v1__record_retention_op__item__init(&rit);
    rit.kind = "visit";
    rit.rid = a.op.rid;
    rop.items = &ritp;
    rop.n_items = 1;
    rc_cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_RECORD_RETENTION;
    rc_cmd.record_retention = &rop;
    rc_cmd.time_ms = t0 + 40 * day;

    /* Restricted: past both retentions, yet the record stays whole. */
    apply1_ok(f->s, &fc_cmd, &res);
    assert_int_equal(res.deleted, 0);
    apply1_ok(f->s, &rc_cmd, &res);
    assert_int_equal(res.deleted, 0);
    r = record_get(f->s, "visit", 0x0a);
    assert_non_null(r);
    assert_int_equal(r->n_fields, 1);
    dossier__store__v1__stored_record__free_unpacked(r, NULL);

    /* Lifted: the field goes, then the record. */
    rs.restricted = 0;
    apply1_ok(f->s, &rs_cmd, &res);
    apply1_ok(f->s, &fc_cmd, &res);
    assert_int_equal(res.deleted, 1);
    r = record_get(f->s, "visit", 0x0a);
    assert_non_null(r);
    assert_int_equal(r->n_fields, 0);
    dossier__store__v1__stored_record__free_unpacked(r, NULL);
    apply1_ok(f->s, &rc_cmd, &res);
    assert_int_equal(res.deleted, 1);
    assert_null(record_get(f->s, "visit", 0x0a));
}

/* An erasure report is recorded only for a member of the cluster (one
 * with a member row as applied), whatever the sender claimed: a
 * non-member's is refused, a member's names it in the ledger row. */
static void test_erasure_done_counts_members_only(void **state)
{
    struct fixture *f = *state;
    struct put a;
    struct store_result res;
    Command er_cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Command dn_cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Command mb_cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__EraseOp er = DOSSIER__STORE__V1__ERASE_OP__INIT;
    Dossier__Store__V1__ErasureDoneOp dn =
        DOSSIER__STORE__V1__ERASURE_DONE_OP__INIT;
    Dossier__Store__V1__ErasureDoneOp__Item it, *itp = &it;
    Dossier__Store__V1__SetMemberOp mb = DOSSIER__STORE__V1__SET_MEMBER_OP__INIT;
    Dossier__Store__V1__ErasureRecord *row;
    struct dossier_status st;
    uint8_t sp[STORE_SP_BYTES];

    fx_open(f);
    put_person(&a, 0x0a, 1000);
    apply1_ok(f->s, &a.cmd, &res);
    memset(sp, 0x5a, sizeof(sp));
    er.subject = (ProtobufCBinaryData){sizeof(sp), sp};
    er_cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_ERASE;
    er_cmd.erase = &er;
    apply1_ok(f->s, &er_cmd, &res);
    assert_int_equal(store_erasure_get(f->s, sp, &row, &st), 0);
    dossier__store__v1__erasure_done_op__item__init(&it);
    it.subject = er.subject;
    it.raft_index = row->raft_index;
    dossier__store__v1__erasure_record__free_unpacked(row, NULL);
    dn.node_id = 4;
    dn.completed_ms = 2000;
    dn.items = &itp;
    dn.n_items = 1;
    dn_cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_ERASURE_DONE;
    dn_cmd.erasure_done = &dn;
    assert_int_equal(apply1(f->s, &dn_cmd, &res), DOSSIER_FAILED_PRECONDITION);
    assert_non_null(strstr(res.status.message, "not a member"));
    mb.id = 4;
    mb.address = "127.0.0.1:7704";
    mb_cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_SET_MEMBER;
    mb_cmd.set_member = &mb;
    apply1_ok(f->s, &mb_cmd, &res);
    apply1_ok(f->s, &dn_cmd, &res);
    assert_int_equal(res.deleted, 1); /* the row now names node 4 */
    assert_int_equal(store_erasure_get(f->s, sp, &row, &st), 0);
    assert_int_equal(row->n_completed, 1);
    assert_int_equal(row->completed[0]->node_id, 4);
    dossier__store__v1__erasure_record__free_unpacked(row, NULL);
}

/* How many regular files under a directory hold needle (nftw callback). */
static const uint8_t *scan_needle;
static size_t scan_needle_len, scan_hits;

static int scan_one(const char *path, const struct stat *sb, int type,
                    struct FTW *ftw)
{
    (void)ftw;
    if (type == FTW_F && S_ISREG(sb->st_mode) && sb->st_size > 0) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        void *m;
        assert_true(fd >= 0);
        m = mmap(NULL, (size_t)sb->st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        assert_true(m != MAP_FAILED);
        scan_hits += memmem(m, (size_t)sb->st_size, scan_needle,
                            scan_needle_len) != NULL;
        munmap(m, (size_t)sb->st_size);
    }
    return 0;
}

static size_t files_holding(const char *dir, const uint8_t *needle,
                            size_t len)
{
    scan_needle = needle;
    scan_needle_len = len;
    scan_hits = 0;
    assert_int_equal(nftw(dir, scan_one, 16, FTW_PHYS), 0);
    return scan_hits;
}

/* What raftio_prepare_install does to the copy's log: delete it all. */
static int drop_log(void *arg, const struct store_raw *raw,
                    struct dossier_status *st)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    uint8_t lo[8] = {0}, hi[8];
    char *err = NULL;
    (void)arg;
    memset(hi, 0xff, sizeof(hi));
    rocksdb_writebatch_delete_range_cf(
        wb, ((rocksdb_column_family_handle_t *const *)raw->cf)[STORE_RAFTLOG],
        (const char *)lo, 8, (const char *)hi, 8);
    rocksdb_write(raw->db, raw->wo_sync, wb, &err);
    rocksdb_writebatch_destroy(wb);
    if (err) {
        rocksdb_free(err);
        st->code = DOSSIER_IO;
        snprintf(st->message, sizeof(st->message), "write failed");
        return DOSSIER_IO;
    }
    return 0;
}

/* A snapshot carries the sender's raft log files, which may still hold an
 * erased subject's entries (taken before the sender compacted its log):
 * once installed, no byte of them is left in the receiver's files. The
 * positive control finds the entries in the checkpoint first. */
static void test_install_leaves_no_byte_of_the_senders_log(void **state)
{
    struct fixture *f = *state;
    struct store *src;
    struct store_raw raw;
    struct dossier_status st;
    char src_dir[128], snap[128], *err = NULL;
    uint8_t marker[256];
    int created;

    fx_open(f);
    path_in(src_dir, sizeof(src_dir), f->dir.path, "src");
    path_in(snap, sizeof(snap), f->dir.path, "snap");
    assert_int_equal(store_open(src_dir, CACHE_BYTES, &src, &created, &st), 0);
    randombytes_buf(marker, sizeof(marker));
    store_raw(src, &raw);
    for (uint64_t i = 1; i <= 3; i++) {
        uint8_t key[8];
        store_u64_be(key, i);
        marker[0] = (uint8_t)i; /* the needle is the rest */
        rocksdb_put_cf(raw.db, raw.wo_sync,
                       ((rocksdb_column_family_handle_t *const *)
                            raw.cf)[STORE_RAFTLOG],
                       (const char *)key, 8, (const char *)marker,
                       sizeof(marker), &err);
        assert_null(err);
    }
    assert_int_equal(store_checkpoint(src, snap, &st), 0);
    store_close(src);
    assert_true(files_holding(snap, marker + 1, sizeof(marker) - 1) >= 1);

    assert_int_equal(store_install(f->s, snap, drop_log, NULL, &st), 0);
    assert_int_equal(files_holding(f->data, marker + 1, sizeof(marker) - 1),
                     0);
}

/* A PrincipalOp adding (@remove 0) or removing principal @name of role
 * @role, token hash 32 x @tok. */
struct prin {
    Command cmd;
    Dossier__Store__V1__PrincipalOp op;
    uint8_t hash[32];
};

static void prin_init(struct prin *p, int remove, const char *name,
                      const char *role, uint8_t tok)
{
    memset(p, 0, sizeof(*p));
    dossier__store__v1__command__init(&p->cmd);
    dossier__store__v1__principal_op__init(&p->op);
    p->cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_PRINCIPAL_OP;
    p->cmd.principal_op = &p->op;
    p->cmd.time_ms = 1000;
    memset(p->hash, tok, sizeof(p->hash));
    p->op.remove = remove;
    p->op.name = (char *)name;
    p->op.role = (char *)role;
    p->op.token_hash = (ProtobufCBinaryData){sizeof(p->hash), p->hash};
    p->op.purposes = "";
}

/* The bootstrap token's first_only add is applied only while the state
 * never held a principal: not twice in one batch, not after the first
 * principal was removed again (the "bootstrapped" row stays), and not
 * after a reopen. */
static void test_first_only_add_is_refused_once_bootstrapped(void **state)
{
    struct fixture *f = *state;
    struct prin a, b, rm;
    struct store_result res;
    struct store_batch *bt;

    fx_open(f);
    assert_int_equal(store_bootstrapped(f->s), 0);
    prin_init(&a, 0, "ops", "admin", 0x01);
    a.op.first_only = 1;
    prin_init(&b, 0, "ops2", "admin", 0x02);
    b.op.first_only = 1;
    /* Two bootstrap adds racing into one batch: the second loses. */
    bt = store_batch_begin(f->s);
    assert_int_equal(store_apply(bt, &a.cmd, &res), 0);
    assert_int_equal(store_apply(bt, &b.cmd, &res),
                     DOSSIER_FAILED_PRECONDITION);
    commit_ok(bt);
    assert_int_equal(store_principal_count(f->s), 1);
    assert_int_equal(store_bootstrapped(f->s), 1);
    /* The only principal removes itself: none left, still spent. */
    prin_init(&rm, 1, "ops", "", 0);
    apply1_ok(f->s, &rm.cmd, &res);
    assert_int_equal(store_principal_count(f->s), 0);
    assert_int_equal(store_bootstrapped(f->s), 1);
    prin_init(&b, 0, "mallory", "admin", 0x03);
    b.op.first_only = 1;
    assert_int_equal(apply1(f->s, &b.cmd, &res), DOSSIER_FAILED_PRECONDITION);
    fx_reopen(f);
    assert_int_equal(store_bootstrapped(f->s), 1);
    assert_int_equal(apply1(f->s, &b.cmd, &res), DOSSIER_FAILED_PRECONDITION);
    /* An add without first_only (an admin's) still works. */
    b.op.first_only = 0;
    apply1_ok(f->s, &b.cmd, &res);
    assert_int_equal(store_principal_count(f->s), 1);
}

/* A removal with keep_an_admin (from a node under --require-auth) never
 * takes the last admin out of the state; other removals go through. */
static void test_keep_an_admin_refuses_removing_the_last_admin(void **state)
{
    struct fixture *f = *state;
    struct prin ops, ops2, svc, rm;
    struct store_result res;

    fx_open(f);
    prin_init(&ops, 0, "ops", "admin", 0x01);
    prin_init(&ops2, 0, "ops2", "admin", 0x02);
    prin_init(&svc, 0, "svc", "service", 0x03);
    apply1_ok(f->s, &ops.cmd, &res);
    apply1_ok(f->s, &svc.cmd, &res);
    prin_init(&rm, 1, "ops", "", 0);
    rm.op.keep_an_admin = 1;
    assert_int_equal(apply1(f->s, &rm.cmd, &res), DOSSIER_FAILED_PRECONDITION);
    assert_non_null(strstr(res.status.message, "last admin"));
    apply1_ok(f->s, &ops2.cmd, &res);
    apply1_ok(f->s, &rm.cmd, &res); /* ops2 is still an admin */
    prin_init(&rm, 1, "ops2", "", 0);
    rm.op.keep_an_admin = 1;
    assert_int_equal(apply1(f->s, &rm.cmd, &res), DOSSIER_FAILED_PRECONDITION);
    prin_init(&rm, 1, "svc", "", 0);
    rm.op.keep_an_admin = 1;
    apply1_ok(f->s, &rm.cmd, &res); /* not an admin */
    prin_init(&rm, 1, "ops2", "", 0);
    apply1_ok(f->s, &rm.cmd, &res); /* without the flag: as asked */
    assert_int_equal(store_principal_count(f->s), 0);
}

/* A rectification is an update of a subject's record at a known version:
 * without one, or without a field named, it is malformed; at the wrong
 * version, a conflict; applied, the record changes. */
static void test_rectify_is_an_update_at_a_version(void **state)
{
    struct fixture *f = *state;
    struct put a;
    struct store_result res;
    Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__RectifyOp op = DOSSIER__STORE__V1__RECTIFY_OP__INIT;
    char *fields[] = {"email"};
    uint64_t v;

    fx_open(f);
    put_person(&a, 0x0a, 1000);
    apply1_ok(f->s, &a.cmd, &res);
    v = res.version;
    a.op.new_subject_key = NULL;
    op.put = &a.op;
    op.fields = fields;
    op.n_fields = 1;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_RECTIFY;
    cmd.rectify = &op;
    cmd.time_ms = 2000;
    cmd.reference = "DSR-1";
    assert_int_equal(apply1(f->s, &cmd, &res), DOSSIER_CORRUPT);
    put_expect(&a, v + 5);
    assert_int_equal(apply1(f->s, &cmd, &res), DOSSIER_VERSION_CONFLICT);
    put_expect(&a, v);
    apply1_ok(f->s, &cmd, &res);
    assert_true(res.version > v);
    assert_int_equal(version_of(f->s, "contact", 0x0a), res.version);
    op.n_fields = 0;
    put_expect(&a, res.version);
    assert_int_equal(apply1(f->s, &cmd, &res), DOSSIER_CORRUPT);
}

/* A link with a bad label, kind, pseudonym or no sealed id is a malformed
 * Put: nothing is written. */
static void test_put_with_malformed_link_is_corrupt(void **state)
{
    struct fixture *f = *state;
    struct put p;
    struct store_result res;

    fx_open(f);
    put_person(&p, 0x0a, 1000);
    put_link(&p, "Works At", "company", 0x0c);
    assert_int_equal(apply1(f->s, &p.cmd, &res), DOSSIER_CORRUPT);
    put_person(&p, 0x0a, 1000);
    put_link(&p, "works_at", "", 0x0c);
    assert_int_equal(apply1(f->s, &p.cmd, &res), DOSSIER_CORRUPT);
    put_person(&p, 0x0a, 1000);
    put_link(&p, "works_at", "company", 0x0c);
    p.le[0].rid.len = 15;
    assert_int_equal(apply1(f->s, &p.cmd, &res), DOSSIER_CORRUPT);
    put_person(&p, 0x0a, 1000);
    put_link(&p, "works_at", "company", 0x0c);
    p.le[0].sealed_id.len = 0;
    assert_int_equal(apply1(f->s, &p.cmd, &res), DOSSIER_CORRUPT);
    assert_null(record_get(f->s, "contact", 0x0a));
    assert_int_equal(link_rows(f->s), 0);
}

/* ------------------------------------------------------------------ */
/* Revision, batches and kinds */

/* The revision survives closing and reopening the store, and numbering
 * goes on from it. */
static void test_revision_survives_reopen(void **state)
{
    struct fixture *f = *state;
    struct put p;
    struct store_result res;

    fx_open(f);
    for (uint8_t i = 1; i <= 3; i++) {
        put_init(&p, "company", i, 0, 0, 1000);
        apply1_ok(f->s, &p.cmd, &res);
    }
    assert_int_equal(store_revision(f->s), 3);
    fx_reopen(f);
    assert_int_equal(store_revision(f->s), 3);
    put_init(&p, "company", 9, 0, 0, 1000);
    apply1_ok(f->s, &p.cmd, &res);
    assert_int_equal(res.version, 4);
}

/* A batch of only failed commands commits nothing and keeps the
 * revision. */
static void test_batch_of_failed_commands_keeps_revision(void **state)
{
    struct fixture *f = *state;
    struct del d;
    struct store_result res;
    struct store_batch *bt;

    fx_open(f);
    del_init(&d, "company", 0x0a);
    bt = store_batch_begin(f->s);
    assert_int_equal(store_apply(bt, &d.cmd, &res), DOSSIER_NOT_FOUND);
    assert_int_equal(store_batch_count(bt), 0);
    commit_ok(bt);
    assert_int_equal(store_revision(f->s), 0);
}

/* An aborted batch leaves no trace: no record, no kind, same revision. */
static void test_aborted_batch_writes_nothing(void **state)
{
    struct fixture *f = *state;
    struct put p;
    struct define k;
    struct store_result res;
    struct store_batch *bt;

    fx_open(f);
    put_init(&p, "company", 0x0a, 0, 0, 1000);
    define_init(&k, "widget", 0);
    bt = store_batch_begin(f->s);
    assert_int_equal(store_apply(bt, &p.cmd, &res), 0);
    assert_int_equal(store_apply(bt, &k.cmd, &res), 0);
    store_batch_abort(bt);
    assert_null(record_get(f->s, "company", 0x0a));
    assert_null(schema_registry_get(store_schemas(f->s), "widget"));
    assert_int_equal(store_revision(f->s), 0);
}

/* DefineKind adds the kind to store_schemas() only once its batch commits,
 * with the revision it took as its version, and the kind is still there
 * after reopening. */
static void test_define_kind_visible_after_commit_and_reopen(void **state)
{
    struct fixture *f = *state;
    struct define k;
    struct store_result res;
    struct store_batch *bt;
    const KindSchema *got;

    fx_open(f);
    define_init(&k, "widget", 1);
    bt = store_batch_begin(f->s);
    assert_int_equal(store_apply(bt, &k.cmd, &res), 0);
    assert_int_equal(res.version, 1);
    assert_null(schema_registry_get(store_schemas(f->s), "widget"));
    commit_ok(bt);
    got = schema_registry_get(store_schemas(f->s), "widget");
    assert_non_null(got);
    assert_int_equal(got->n_fields, 2);
    assert_int_equal(got->version, 1);
    assert_false(got->builtin);
    assert_int_equal(store_revision(f->s), 1);

    fx_reopen(f);
    got = schema_registry_get(store_schemas(f->s), "widget");
    assert_non_null(got);
    assert_int_equal(got->n_fields, 2);
    assert_int_equal(got->version, 1);
    assert_non_null(schema_registry_get(store_schemas(f->s), "contact"));
}

/* A DefineKind that is not a compatible change of the current definition
 * (here: removing a field) is FAILED_PRECONDITION, also against a
 * definition made earlier in the same batch. */
static void test_define_kind_refuses_incompatible_change(void **state)
{
    struct fixture *f = *state;
    struct define k2, k1;
    struct store_result res;
    struct store_batch *bt;

    fx_open(f);
    define_init(&k2, "widget", 1);
    define_init(&k1, "widget", 0);
    bt = store_batch_begin(f->s);
    assert_int_equal(store_apply(bt, &k2.cmd, &res), 0);
    assert_int_equal(store_apply(bt, &k1.cmd, &res),
                     DOSSIER_FAILED_PRECONDITION);
    commit_ok(bt);
    assert_int_equal(apply1(f->s, &k1.cmd, &res), DOSSIER_FAILED_PRECONDITION);
    assert_int_equal(
        schema_registry_get(store_schemas(f->s), "widget")->n_fields, 2);
}

/* A DefineKind of an invalid definition is INVALID_ARGUMENT and takes no
 * revision. */
static void test_define_kind_refuses_invalid_definition(void **state)
{
    struct fixture *f = *state;
    struct define k;
    struct store_result res;

    fx_open(f);
    define_init(&k, "Widget", 1);
    assert_int_equal(apply1(f->s, &k.cmd, &res), DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(store_revision(f->s), 0);
}

/* ------------------------------------------------------------------ */
/* Scans */

/* Puts three companies and two contacts (rids 0x01.., no subject for the
 * companies). */
static void put_five(struct fixture *f)
{
    struct put p;
    struct store_result res;
    for (uint8_t i = 1; i <= 3; i++) {
        put_init(&p, "company", i, 0, 0, 1000);
        apply1_ok(f->s, &p.cmd, &res);
    }
    for (uint8_t i = 1; i <= 2; i++) {
        put_init(&p, "contact", i, 0x5a, 7, 1000);
        put_new_key(&p, 7, 0x70);
        apply1_ok(f->s, &p.cmd, &res);
    }
}

/* A scan visits, in key order, exactly the keys that start with the
 * prefix. */
static void test_scan_visits_keys_with_prefix_in_order(void **state)
{
    struct fixture *f = *state;
    uint8_t key[STORE_KEY_MAX], rid[16];
    struct keys ks;

    fx_open(f);
    put_five(f);
    scan(f->s, STORE_RECORD, (const uint8_t *)"company", 8, NULL, 0, &ks);
    assert_int_equal(ks.n, 3);
    for (uint8_t i = 1; i <= 3; i++) {
        memset(rid, i, sizeof(rid));
        assert_int_equal(ks.len[i - 1], store_record_key(key, "company", rid));
        assert_memory_equal(ks.k[i - 1], key, ks.len[i - 1]);
    }
    scan(f->s, STORE_RECORD, NULL, 0, NULL, 0, &ks);
    assert_int_equal(ks.n, 5);
}

/* A scan with an 'after' key starts strictly after it. */
static void test_scan_after_is_exclusive(void **state)
{
    struct fixture *f = *state;
    uint8_t after[STORE_KEY_MAX], want[STORE_KEY_MAX], rid[16];
    size_t alen, wlen;
    struct keys ks;

    fx_open(f);
    put_five(f);
    memset(rid, 1, sizeof(rid));
    alen = store_record_key(after, "company", rid);
    scan(f->s, STORE_RECORD, (const uint8_t *)"company", 8, after, alen, &ks);
    assert_int_equal(ks.n, 2);
    memset(rid, 2, sizeof(rid));
    wlen = store_record_key(want, "company", rid);
    assert_int_equal(ks.len[0], wlen);
    assert_memory_equal(ks.k[0], want, wlen);

    /* An 'after' that is not itself a key: everything greater. */
    alen = store_record_key(after, "company", rid);
    after[alen - 1] = 0x80; /* between rid 0x02.. and rid 0x03.. */
    scan(f->s, STORE_RECORD, (const uint8_t *)"company", 8, after, alen, &ks);
    assert_int_equal(ks.n, 1);
}

/* A scan whose 'after' key sorts before the prefix visits every key of
 * the prefix (every such key sorts after it). */
static void test_scan_after_before_prefix_visits_whole_prefix(void **state)
{
    struct fixture *f = *state;
    struct keys ks;

    fx_open(f);
    put_five(f);
    scan(f->s, STORE_RECORD, (const uint8_t *)"contact", 8,
         (const uint8_t *)"a", 1, &ks);
    assert_int_equal(ks.n, 2);
}

/* A callback returning 1 stops the scan without error; one returning an
 * error code stops it with that code. */
static void test_scan_stops_as_callback_says(void **state)
{
    struct fixture *f = *state;
    struct keys ks;
    struct dossier_status st;

    fx_open(f);
    put_five(f);
    memset(&ks, 0, sizeof(ks));
    ks.stop_after = 2;
    assert_int_equal(store_scan(f->s, STORE_RECORD, NULL, 0, NULL, 0, keys_cb,
                                &ks, &st),
                     0);
    assert_int_equal(ks.n, 2);
    memset(&ks, 0, sizeof(ks));
    ks.fail_with = DOSSIER_CORRUPT;
    assert_int_equal(store_scan(f->s, STORE_RECORD, NULL, 0, NULL, 0, keys_cb,
                                &ks, &st),
                     DOSSIER_CORRUPT);
    assert_int_equal(st.code, DOSSIER_CORRUPT);
}

/* ------------------------------------------------------------------ */
/* Malformed commands */

/* Asserts that @cmd is refused as CORRUPT in a batch, counts for nothing,
 * and that committing the batch writes nothing. */
static void assert_malformed(struct fixture *f, const Command *cmd,
                             const char *what)
{
    struct store_result res;
    struct store_batch *bt = store_batch_begin(f->s);
    struct keys ks;
    uint64_t rev = store_revision(f->s);

    if (store_apply(bt, cmd, &res) != DOSSIER_CORRUPT)
        fail_msg("%s: not refused as CORRUPT (%d: %s)", what,
                 res.status.code, res.status.message);
    assert_int_equal(store_batch_count(bt), 0);
    commit_ok(bt);
    assert_int_equal(store_revision(f->s), rev);
    scan(f->s, STORE_RECORD, NULL, 0, NULL, 0, &ks);
    assert_int_equal(ks.n, 0);
    scan(f->s, STORE_INDEX, NULL, 0, NULL, 0, &ks);
    assert_int_equal(ks.n, 0);
    scan(f->s, STORE_SUBJECT, NULL, 0, NULL, 0, &ks);
    assert_int_equal(ks.n, 0);
}

/* A Put whose record pseudonym is not 16 bytes is CORRUPT and writes
 * nothing. */
static void test_put_with_rid_of_wrong_length_is_corrupt(void **state)
{
    struct fixture *f = *state;
    struct put p;

    fx_open(f);
    put_init(&p, "contact", 0x0a, 0x5a, 7, 1000);
    put_new_key(&p, 7, 0x70);
    p.op.rid.len = 15;
    assert_malformed(f, &p.cmd, "rid of 15 bytes");
    p.op.rid.len = 0;
    assert_malformed(f, &p.cmd, "empty rid");
}

/* A Put carrying an index key that is not one of its record's (another
 * record, another kind, too short, no field) is CORRUPT and writes
 * nothing. */
static void test_put_with_index_key_of_another_record_is_corrupt(
    void **state)
{
    struct fixture *f = *state;
    uint8_t blind[16], other[16];
    struct put p;

    memset(blind, 0xe1, sizeof(blind));
    memset(other, 0x0b, sizeof(other));
    fx_open(f);
    put_init(&p, "contact", 0x0a, 0x5a, 7, 1000);
    put_new_key(&p, 7, 0x70);
    put_index(&p, "email", 0xe1);
    p.ik[0].len = store_index_key(p.ikbuf[0], "contact", "email", blind,
                                  other);
    assert_malformed(f, &p.cmd, "index key of another record");
    p.ik[0].len = store_index_key(p.ikbuf[0], "company", "email", blind,
                                  p.rid);
    assert_malformed(f, &p.cmd, "index key of another kind");
    p.ik[0].len = store_record_key(p.ikbuf[0], "contact", p.rid);
    assert_malformed(f, &p.cmd, "record key as index key");
}

/* Other malformed Puts are CORRUPT and write nothing: a subject of the
 * wrong length, no sealed id, a data key id without a subject, an invalid
 * kind name. */
static void test_other_malformed_puts_are_corrupt(void **state)
{
    struct fixture *f = *state;
    struct put p;

    fx_open(f);
    put_init(&p, "contact", 0x0a, 0x5a, 7, 1000);
    put_new_key(&p, 7, 0x70);
    p.op.subject.len = 8;
    assert_malformed(f, &p.cmd, "subject of 8 bytes");

    put_init(&p, "contact", 0x0a, 0x5a, 7, 1000);
    put_new_key(&p, 7, 0x70);
    p.op.sealed_id.len = 0;
    assert_malformed(f, &p.cmd, "no sealed id");

    put_init(&p, "company", 0x0a, 0, 5, 1000);
    assert_malformed(f, &p.cmd, "dek id without subject");

    put_init(&p, "Company", 0x0a, 0, 0, 1000);
    assert_malformed(f, &p.cmd, "invalid kind");
}

/* A Delete with a record pseudonym of the wrong length, and a command with
 * no operation, are CORRUPT. */
static void test_malformed_delete_and_empty_command_are_corrupt(
    void **state)
{
    struct fixture *f = *state;
    struct del d;
    Command empty = DOSSIER__STORE__V1__COMMAND__INIT;

    fx_open(f);
    del_init(&d, "company", 0x0a);
    d.op.rid.len = 17;
    assert_malformed(f, &d.cmd, "delete rid of 17 bytes");
    assert_malformed(f, &empty, "no operation");
}

/* ------------------------------------------------------------------ */
/* Master key rotation */

/* A KeyRotateOp command of @step from version 1 to @to. */
struct rot {
    Command cmd;
    Dossier__Store__V1__KeyRotateOp op;
    Dossier__Store__V1__KeyRotateOp__Rewrap it[2], *itp[2];
    uint8_t check[16], cursor[16], sp[2][16], wrapped[2][8];
    Dossier__Store__V1__Meta meta;
};

static void rot_init(struct rot *r,
                     Dossier__Store__V1__KeyRotateOp__Step step, uint32_t to)
{
    memset(r, 0, sizeof(*r));
    dossier__store__v1__command__init(&r->cmd);
    dossier__store__v1__key_rotate_op__init(&r->op);
    dossier__store__v1__meta__init(&r->meta);
    r->cmd.time_ms = 5000;
    r->cmd.principal = "ops";
    r->cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_KEY_ROTATE;
    r->cmd.key_rotate = &r->op;
    r->op.step = step;
    r->op.from_version = 1;
    r->op.to_version = to;
    memset(r->check, 0xc2, sizeof(r->check));
    r->op.to_check = (ProtobufCBinaryData){16, r->check};
    r->op.items = r->itp;
}

/* Adds the rewrap of subject 16 x @sp_byte's key @dek_id, as 8 x @fill. */
static void rot_item(struct rot *r, uint8_t sp_byte, uint64_t dek_id,
                     uint8_t fill)
{
    size_t i = r->op.n_items++;
    dossier__store__v1__key_rotate_op__rewrap__init(&r->it[i]);
    memset(r->sp[i], sp_byte, 16);
    memset(r->wrapped[i], fill, 8);
    r->it[i].subject = (ProtobufCBinaryData){16, r->sp[i]};
    r->it[i].dek_id = dek_id;
    r->it[i].wrapped_dek = (ProtobufCBinaryData){8, r->wrapped[i]};
    r->itp[i] = &r->it[i];
}

static void meta_v1(struct store *s)
{
    Dossier__Store__V1__Meta m = DOSSIER__STORE__V1__META__INIT;
    uint8_t cid[16], check[16], box[48];
    struct dossier_status st;
    memset(cid, 0xc1, sizeof(cid));
    memset(check, 0xc1, sizeof(check));
    memset(box, 0xb1, sizeof(box));
    m.format = STORE_FORMAT;
    m.cluster_id = (ProtobufCBinaryData){16, cid};
    m.kek_version = 1;
    m.kek_check = (ProtobufCBinaryData){16, check};
    m.sealed_keyset = (ProtobufCBinaryData){sizeof(box), box};
    m.created_at_ms = 42;
    assert_int_equal(store_meta_put(s, &m, &st), 0);
}

static SubjectKey *subject_key_of(struct store *s, uint8_t sp_byte)
{
    uint8_t sp[16];
    SubjectKey *sk = NULL;
    memset(sp, sp_byte, sizeof(sp));
    assert_int_equal(store_subject_key_get(s, sp, &sk, NULL), 0);
    return sk;
}

/* A rotation as apply sees it: BEGIN makes new subject keys under another
 * version RETRY; REWRAP replaces a key only while the subject still has
 * that key under the old version, and moves the cursor forward only;
 * FINISH installs the resealed keyset (other fields kept) and ends it. */
static void test_key_rotation_steps_check_what_is_stored(void **state)
{
    struct fixture *f = *state;
    struct put a, b, c;
    struct rot r;
    struct store_result res;
    struct store_batch *bt;
    Dossier__Store__V1__KeyRotation *kr;
    Dossier__Store__V1__Meta *m;
    SubjectKey *sk;
    struct dossier_status st;
    uint8_t cid[16], box2[48];

    fx_open(f);
    meta_v1(f->s);
    put_init(&a, "contact", 0x0a, 0x5a, 7, 1000);
    put_new_key(&a, 7, 0x70);
    apply1_ok(f->s, &a.cmd, &res);
    put_init(&b, "contact", 0x0b, 0x5b, 8, 1000);
    put_new_key(&b, 8, 0x80);
    apply1_ok(f->s, &b.cmd, &res);
    assert_int_equal(store_key_rotation_get(f->s, &kr, &st),
                     DOSSIER_NOT_FOUND);

    rot_init(&r, DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__BEGIN, 1);
    assert_int_equal(apply1(f->s, &r.cmd, &res), DOSSIER_FAILED_PRECONDITION);
    rot_init(&r, DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__BEGIN, 2);
    r.op.subjects = 2;
    bt = store_batch_begin(f->s);
    assert_int_equal(store_apply(bt, &r.cmd, &res), 0);
    assert_true(store_batch_effects(bt) & STORE_EFFECT_KEYS);
    commit_ok(bt);
    assert_int_equal(store_key_rotation_get(f->s, &kr, &st), 0);
    assert_int_equal(kr->to_version, 2);
    assert_false(kr->done);
    assert_string_equal(kr->started_by, "ops");
    dossier__store__v1__key_rotation__free_unpacked(kr, NULL);
    /* Another rotation cannot begin meanwhile; the same one again is no-op. */
    rot_init(&r, DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__BEGIN, 3);
    assert_int_equal(apply1(f->s, &r.cmd, &res), DOSSIER_FAILED_PRECONDITION);

    /* A new subject's key: version 1 is refused now, version 2 taken. */
    put_init(&c, "contact", 0x0c, 0x5c, 9, 2000);
    put_new_key(&c, 9, 0x90);
    assert_int_equal(apply1(f->s, &c.cmd, &res), DOSSIER_RETRY);
    assert_null(record_get(f->s, "contact", 0x0c));
    c.sk.kek_version = 2;
    apply1_ok(f->s, &c.cmd, &res);

    /* A's key rewrapped; B's entry names another key: skipped. */
    rot_init(&r, DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__REWRAP, 2);
    rot_item(&r, 0x5a, 7, 0xa2);
    rot_item(&r, 0x5b, 99, 0xb2);
    memset(r.cursor, 0x5b, 16);
    r.op.cursor = (ProtobufCBinaryData){16, r.cursor};
    apply1_ok(f->s, &r.cmd, &res);
    sk = subject_key_of(f->s, 0x5a);
    assert_int_equal(sk->kek_version, 2);
    assert_int_equal(sk->dek_id, 7);
    assert_memory_equal(sk->wrapped_dek.data, r.wrapped[0], 8);
    assert_memory_equal(sk->sealed_subject_id.data, a.sealed_sid, 8);
    dossier__store__v1__subject_key__free_unpacked(sk, NULL);
    sk = subject_key_of(f->s, 0x5b);
    assert_int_equal(sk->kek_version, 1);
    assert_memory_equal(sk->wrapped_dek.data, b.wrapped, 8);
    dossier__store__v1__subject_key__free_unpacked(sk, NULL);
    /* A again (a new leader resending): skipped; the cursor stays. */
    rot_init(&r, DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__REWRAP, 2);
    rot_item(&r, 0x5a, 7, 0xa3);
    rot_item(&r, 0x5b, 8, 0xb3);
    memset(r.cursor, 0x5a, 16);
    r.op.cursor = (ProtobufCBinaryData){16, r.cursor};
    apply1_ok(f->s, &r.cmd, &res);
    sk = subject_key_of(f->s, 0x5a);
    assert_int_equal(sk->wrapped_dek.data[0], 0xa2);
    dossier__store__v1__subject_key__free_unpacked(sk, NULL);
    assert_int_equal(store_key_rotation_get(f->s, &kr, &st), 0);
    assert_int_equal(kr->rewrapped, 2);
    assert_int_equal(kr->skipped, 2);
    assert_int_equal(kr->cursor.len, 16);
    assert_int_equal(kr->cursor.data[0], 0x5b);
    dossier__store__v1__key_rotation__free_unpacked(kr, NULL);

    /* FINISH: another cluster's keyset is refused, ours installed. */
    rot_init(&r, DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__FINISH, 2);
    memset(cid, 0xee, sizeof(cid));
    memset(box2, 0xb2, sizeof(box2));
    r.meta.cluster_id = (ProtobufCBinaryData){16, cid};
    r.meta.kek_version = 2;
    r.meta.kek_check = (ProtobufCBinaryData){16, r.check};
    r.meta.sealed_keyset = (ProtobufCBinaryData){sizeof(box2), box2};
    r.op.meta = &r.meta;
    assert_int_equal(apply1(f->s, &r.cmd, &res), DOSSIER_FAILED_PRECONDITION);
    memset(cid, 0xc1, sizeof(cid));
    bt = store_batch_begin(f->s);
    assert_int_equal(store_apply(bt, &r.cmd, &res), 0);
    assert_true(store_batch_effects(bt) & STORE_EFFECT_ROTATED);
    commit_ok(bt);
    assert_int_equal(store_meta_get(f->s, &m, &st), 0);
    assert_int_equal(m->kek_version, 2);
    assert_memory_equal(m->kek_check.data, r.check, 16);
    assert_memory_equal(m->sealed_keyset.data, box2, sizeof(box2));
    assert_int_equal(m->created_at_ms, 42);
    dossier__store__v1__meta__free_unpacked(m, NULL);
    assert_int_equal(store_key_rotation_get(f->s, &kr, &st), 0);
    assert_true(kr->done);
    assert_int_equal(kr->finished_ms, 5000);
    dossier__store__v1__key_rotation__free_unpacked(kr, NULL);
    rot_init(&r, DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__REWRAP, 2);
    assert_int_equal(apply1(f->s, &r.cmd, &res), DOSSIER_FAILED_PRECONDITION);
    assert_int_equal(store_rotation_purge(f->s, &st), 0);
}

/* ------------------------------------------------------------------ */
/* The change feed */

#define FEED_MAX 64

/* Every change the feed holds, oldest first, into @out (free with
 * store_changes_free); returns how many. */
static size_t feed_read(struct store *s, struct store_change *out)
{
    struct dossier_status st;
    size_t n;
    if (store_changes_read(s, 1, 0, UINT64_MAX, FEED_MAX, out, &n, &st) != 0)
        fail_msg("store_changes_read: %s", st.message);
    return n;
}

/* Rows of @family (change_index or change_record) and the lowest
 * revision among them (UINT64_MAX when none). */
struct feed_rows {
    size_t n;
    uint64_t min_rev;
};

static int feed_rows_cb(void *arg, const uint8_t *key, size_t klen,
                        const uint8_t *val, size_t vlen)
{
    struct feed_rows *r = arg;
    (void)val;
    (void)vlen;
    assert_true(klen >= 16 + 12);
    if (store_be_u64(key + 16) < r->min_rev)
        r->min_rev = store_be_u64(key + 16);
    r->n++;
    return 0;
}

static struct feed_rows feed_rows(struct store *s, enum store_family family)
{
    struct feed_rows r = {0, UINT64_MAX};
    struct dossier_status st;
    if (store_scan(s, family, NULL, 0, NULL, 0, feed_rows_cb, &r, &st) != 0)
        fail_msg("store_scan: %s", st.message);
    return r;
}

/* A delete takes the record's earlier changes out of the feed, with their
 * index rows, and its own entry holds the record's sealed id and version
 * but no field, index key or link; for a record with a subject and for
 * one without. The other records' changes stay. */
static void test_delete_leaves_only_a_bare_deletion_in_the_feed(
    void **state)
{
    struct fixture *f = *state;
    struct store_change ch[FEED_MAX];
    struct store_result res;
    struct put p;
    struct del d;
    size_t n;

    fx_open(f);
    for (int k = 0; k < 2; k++) {
        uint8_t rid = k ? 0x0c : 0x0a;
        uint64_t v;
        if (k)
            put_init(&p, "company", rid, 0, 0, 1000);
        else
            put_person(&p, rid, 1000);
        put_index(&p, "email", 0xe1);
        put_link(&p, "works_at", "company", 0x0f);
        apply1_ok(f->s, &p.cmd, &res);
        if (k)
            put_init(&p, "company", rid, 0, 0, 2000);
        else
            put_person(&p, rid, 2000);
        put_index(&p, "email", 0xe1);
        apply1_ok(f->s, &p.cmd, &res);
        v = res.version;
        del_init(&d, k ? "company" : "contact", rid);
        apply1_ok(f->s, &d.cmd, &res);
        assert_int_equal(res.version, v);
    }
    put_person(&p, 0x0b, 3000); /* another record: its change stays */
    apply1_ok(f->s, &p.cmd, &res);

    n = feed_read(f->s, ch);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < 2; i++) {
        const Dossier__Store__V1__ChangeEntry *e = ch[i].e;
        StoredRecord *r = dossier__store__v1__stored_record__unpack(
            NULL, e->record.len, e->record.data);
        assert_int_equal(e->type, DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_DELETE);
        assert_non_null(r);
        assert_int_equal(r->n_fields, 0);
        assert_int_equal(r->n_index_keys, 0);
        assert_int_equal(r->n_links, 0);
        assert_int_equal(r->sealed_links.len, 0);
        assert_int_equal(r->sealed_id.len, 8);
        assert_int_equal(r->version, ch[i].rev - 1);
        assert_int_equal(e->subject.len, i == 0 ? STORE_SP_BYTES : 0);
        dossier__store__v1__stored_record__free_unpacked(r, NULL);
    }
    assert_int_equal(ch[2].e->type,
                     DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_PUT);
    store_changes_free(ch, n);
    /* The record index holds the company's deletion; the subject's index
     * holds its deletion and its other record's put. */
    assert_int_equal(feed_rows(f->s, STORE_CHANGE_RECORD).n, 1);
    assert_int_equal(feed_rows(f->s, STORE_CHANGE_INDEX).n, 2);
}

/* An erasure takes every change about the subject out of the feed, with
 * their index rows (a deleted record's deletion included), and leaves
 * only the erasure and the changes of others. */
static void test_erase_leaves_only_the_erasure_in_the_feed(void **state)
{
    struct fixture *f = *state;
    struct store_change ch[FEED_MAX];
    Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__EraseOp op = DOSSIER__STORE__V1__ERASE_OP__INIT;
    struct store_result res;
    struct put p, other;
    struct del d;
    size_t n;

    fx_open(f);
    put_person(&p, 0x0a, 1000);
    apply1_ok(f->s, &p.cmd, &res);
    put_person(&p, 0x0b, 1000);
    apply1_ok(f->s, &p.cmd, &res);
    del_init(&d, "contact", 0x0b);
    apply1_ok(f->s, &d.cmd, &res);
    put_init(&other, "company", 0x0c, 0, 0, 1000);
    apply1_ok(f->s, &other.cmd, &res);

    op.subject = (ProtobufCBinaryData){STORE_SP_BYTES, p.sp};
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_ERASE;
    cmd.erase = &op;
    apply1_ok(f->s, &cmd, &res);

    n = feed_read(f->s, ch);
    assert_int_equal(n, 2);
    assert_int_equal(ch[0].e->type, DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_PUT);
    assert_string_equal(ch[0].e->kind, "company");
    assert_int_equal(ch[1].e->type,
                     DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_ERASE);
    store_changes_free(ch, n);
    assert_int_equal(feed_rows(f->s, STORE_CHANGE_INDEX).n, 0);
    assert_int_equal(feed_rows(f->s, STORE_CHANGE_RECORD).n, 1);
}

/* Puts record @i of a mix: a contact of one subject (even @i) or a
 * company (odd @i), five records of each. */
static void put_mixed(struct store *s, int i)
{
    struct store_result res;
    struct put p;
    if (i % 2)
        put_init(&p, "company", (uint8_t)(0x40 + i % 5), 0, 0, 1000 + i);
    else
        put_person(&p, (uint8_t)(1 + i % 5), 1000 + i);
    apply1_ok(s, &p.cmd, &res);
}

/* The feed keeps the last N revisions: once it holds a 64th more, the
 * changes below the new floor go, and so do their rows in both indexes
 * (change_index by subject, change_record by record). */
static void test_trim_removes_old_changes_and_their_index_rows(void **state)
{
    struct fixture *f = *state;
    struct feed_rows by_subject, by_record;
    uint64_t floor;

    fx_open(f);
    store_set_change_history(f->s, 16);
    for (int i = 0; i < 40; i++)
        put_mixed(f->s, i);
    floor = store_change_floor(f->s);
    assert_true(floor > 1);
    assert_true(floor <= store_revision(f->s) - 16 + 1);
    by_subject = feed_rows(f->s, STORE_CHANGE_INDEX);
    by_record = feed_rows(f->s, STORE_CHANGE_RECORD);
    assert_true(by_subject.n > 0 && by_record.n > 0);
    assert_true(by_subject.min_rev >= floor);
    assert_true(by_record.min_rev >= floor);
    assert_int_equal(by_subject.n + by_record.n,
                     store_revision(f->s) - floor + 1);
    {
        struct store_change ch[FEED_MAX];
        size_t n = feed_read(f->s, ch);
        assert_int_equal(n, by_subject.n + by_record.n);
        assert_int_equal(ch[0].rev, floor);
        store_changes_free(ch, n);
    }
    /* The floor is kept across a reopen. */
    fx_reopen(f);
    assert_int_equal(store_change_floor(f->s), floor);
}

/* Trims stay small: the feed never holds more than a 64th beyond the
 * revisions it keeps (a trim reads every change it drops, inside the
 * apply of a write). */
static void test_trims_stay_small(void **state)
{
    struct fixture *f = *state;

    fx_open(f);
    store_set_change_history(f->s, 640);
    for (int i = 0; i < 800; i++) {
        put_mixed(f->s, i);
        assert_true(store_revision(f->s) - store_change_floor(f->s) + 1 <=
                    640 + 10);
    }
    assert_true(store_change_floor(f->s) > 1);
}

/* A trim whose write fails deletes nothing and leaves the floor where it
 * was; the next commit trims again, from that floor, so no change below
 * the floor is left behind in the feed or its indexes. */
static void test_failed_trim_is_tried_again(void **state)
{
    struct fixture *f = *state;
    uint64_t floor;
    int i = 0;

    fx_open(f);
    store_set_change_history(f->s, 16);
    f->s->trim_faults = 1;
    while (f->s->trim_faults) { /* up to the first trim, which fails */
        put_mixed(f->s, i);
        assert_true(++i < 100);
    }
    assert_int_equal(store_change_floor(f->s), 1);
    assert_int_equal(feed_rows(f->s, STORE_CHANGE_INDEX).min_rev, 1);
    assert_int_equal(feed_rows(f->s, STORE_CHANGE_RECORD).min_rev, 2);
    {
        struct store_change ch[FEED_MAX];
        size_t n = feed_read(f->s, ch);
        assert_int_equal(n, store_revision(f->s));
        store_changes_free(ch, n);
    }
    /* The next commit trims. */
    put_mixed(f->s, i);
    floor = store_change_floor(f->s);
    assert_int_equal(floor, store_revision(f->s) - 16 + 1);
    assert_true(feed_rows(f->s, STORE_CHANGE_INDEX).min_rev >= floor);
    assert_true(feed_rows(f->s, STORE_CHANGE_RECORD).min_rev >= floor);
    {
        struct store_change ch[FEED_MAX];
        size_t n = feed_read(f->s, ch);
        assert_int_equal(n, 16);
        assert_int_equal(ch[0].rev, floor);
        store_changes_free(ch, n);
    }
    fx_reopen(f);
    assert_int_equal(store_change_floor(f->s), floor);
}

/* ------------------------------------------------------------------ */
/* Merges (store_crm.c) */

/* Everything of the families a merge touches, as one byte string: each
 * key and value in key order, records with their version zeroed (an undo
 * brings records back at a new version). Free with free(). */
struct dump {
    uint8_t *b;
    size_t n, cap;
};

static void dump_add(struct dump *d, const void *p, size_t n)
{
    if (d->n + n + 8 > d->cap) {
        d->cap = 2 * (d->n + n + 8) + 4096;
        d->b = realloc(d->b, d->cap);
        assert_non_null(d->b);
    }
    memcpy(d->b + d->n, &n, sizeof(n));
    memcpy(d->b + d->n + sizeof(n), p, n);
    d->n += sizeof(n) + n;
}

static int dump_cb(void *arg, const uint8_t *key, size_t klen,
                   const uint8_t *val, size_t vlen)
{
    struct dump *d = arg;
    dump_add(d, key, klen);
    dump_add(d, val, vlen);
    return 0;
}

static int dump_record_cb(void *arg, const uint8_t *key, size_t klen,
                          const uint8_t *val, size_t vlen)
{
    struct dump *d = arg;
    StoredRecord *r = dossier__store__v1__stored_record__unpack(NULL, vlen,
                                                                val);
    uint8_t buf[4096];
    size_t n;
    assert_non_null(r);
    r->version = 0;
    n = dossier__store__v1__stored_record__get_packed_size(r);
    assert_true(n <= sizeof(buf));
    dossier__store__v1__stored_record__pack(r, buf);
    dossier__store__v1__stored_record__free_unpacked(r, NULL);
    dump_add(d, key, klen);
    dump_add(d, buf, n);
    return 0;
}

static void state_dump(struct store *s, struct dump *d)
{
    static const enum store_family fams[] = {STORE_INDEX, STORE_SUBJECT,
                                             STORE_LINK, STORE_CONSENT};
    struct dossier_status st;
    memset(d, 0, sizeof(*d));
    assert_int_equal(store_scan(s, STORE_RECORD, NULL, 0, NULL, 0,
                                dump_record_cb, d, &st),
                     0);
    for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++)
        assert_int_equal(
            store_scan(s, fams[i], NULL, 0, NULL, 0, dump_cb, d, &st), 0);
}

static int same_state(struct store *s, const struct dump *before)
{
    struct dump now;
    int same;
    state_dump(s, &now);
    same = now.n == before->n && memcmp(now.b, before->b, now.n) == 0;
    free(now.b);
    return same;
}

static void consent(struct store *s, uint8_t sp_byte, const char *purpose,
                    int granted)
{
    Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__ConsentOp op = DOSSIER__STORE__V1__CONSENT_OP__INIT;
    struct store_result res;
    uint8_t sp[STORE_SP_BYTES];
    memset(sp, sp_byte, sizeof(sp));
    op.subject = (ProtobufCBinaryData){sizeof(sp), sp};
    op.purpose = (char *)purpose;
    op.state = granted ? DOSSIER__V1__CONSENT_STATE__CONSENT_STATE_GRANTED
                       : DOSSIER__V1__CONSENT_STATE__CONSENT_STATE_WITHDRAWN;
    op.source = "form";
    op.notice_version = "v1";
    cmd.time_ms = 1000;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_CONSENT;
    cmd.consent = &op;
    apply1_ok(s, &cmd, &res);
}

/* State of subject 16 x @sp_byte's consent to @purpose: 0 undecided. */
static int consent_now(struct store *s, uint8_t sp_byte, const char *purpose)
{
    Dossier__Store__V1__StoredConsent *c;
    struct dossier_status st;
    uint8_t sp[STORE_SP_BYTES];
    int state;
    memset(sp, sp_byte, sizeof(sp));
    if (store_consent_get(s, sp, purpose, &c, &st) == DOSSIER_NOT_FOUND)
        return 0;
    state = c->state;
    dossier__store__v1__stored_consent__free_unpacked(c, NULL);
    return state;
}

/* The scenario of the merge tests: contact S (0x01, subject 0x5a, key 7),
 * its duplicate D (0x02, subject 0x6b, key 9) working at company 0x0c,
 * D's subject's activity R (0x03) logged on D, and deal X (0x04) linking
 * to D; 0x5a granted marketing, 0x6b withdrew it. */
static void merge_scenario(struct store *s)
{
    struct put p;
    struct store_result res;

    put_person(&p, 0x01, 1000);
    put_index(&p, "email", 0xe1);
    apply1_ok(s, &p.cmd, &res);
    put_init(&p, "contact", 0x02, 0x6b, 9, 1001);
    put_new_key(&p, 9, 0x90);
    put_index(&p, "email", 0xe1);
    put_link(&p, "works_at", "company", 0x0c);
    apply1_ok(s, &p.cmd, &res);
    put_init(&p, "activity", 0x03, 0x6b, 9, 1002);
    put_link(&p, "logged_on", "contact", 0x02);
    apply1_ok(s, &p.cmd, &res);
    put_init(&p, "deal", 0x04, 0, 0, 1003);
    put_link(&p, "involves", "contact", 0x02);
    apply1_ok(s, &p.cmd, &res);
    consent(s, 0x5a, "marketing", 1);
    consent(s, 0x6b, "marketing", 0);
}

/* The merge of D into S the leader would propose for merge_scenario. */
struct merge {
    Command cmd;
    Dossier__Store__V1__MergeOp op;
    struct put survivor, moved;
    Dossier__Store__V1__PutOp *moved_ptr[1];
    Dossier__Store__V1__MergeDuplicate dup, *dup_ptr[1];
    Dossier__Store__V1__LinkRepoint rp, *rp_ptr[1];
    ProtobufCBinaryData subjects[1];
    uint8_t dup_rid[STORE_RID_BYTES], x_rid[STORE_RID_BYTES];
    uint8_t sp_b[STORE_SP_BYTES], box[8];
};

static void merge_init(struct merge *m, struct store *s)
{
    memset(m, 0, sizeof(*m));
    dossier__store__v1__command__init(&m->cmd);
    dossier__store__v1__merge_op__init(&m->op);
    memset(m->box, 0x33, sizeof(m->box));
    put_init(&m->survivor, "contact", 0x01, 0x5a, 7, 2000);
    put_index(&m->survivor, "email", 0xe1);
    put_link(&m->survivor, "works_at", "company", 0x0c);
    put_expect(&m->survivor, version_of(s, "contact", 0x01));
    put_init(&m->moved, "activity", 0x03, 0x5a, 7, 2000);
    put_link(&m->moved, "logged_on", "contact", 0x01);
    put_expect(&m->moved, version_of(s, "activity", 0x03));
    m->moved_ptr[0] = &m->moved.op;
    dossier__store__v1__merge_duplicate__init(&m->dup);
    memset(m->dup_rid, 0x02, sizeof(m->dup_rid));
    m->dup.rid = (ProtobufCBinaryData){STORE_RID_BYTES, m->dup_rid};
    m->dup.expected_version = version_of(s, "contact", 0x02);
    m->dup.sealed_id = (ProtobufCBinaryData){sizeof(m->box), m->box};
    m->dup_ptr[0] = &m->dup;
    dossier__store__v1__link_repoint__init(&m->rp);
    memset(m->x_rid, 0x04, sizeof(m->x_rid));
    m->rp.kind = "deal";
    m->rp.rid = (ProtobufCBinaryData){STORE_RID_BYTES, m->x_rid};
    m->rp.label = "involves";
    m->rp.dup_rid = m->dup.rid;
    m->rp.sealed_id = (ProtobufCBinaryData){sizeof(m->box), m->box};
    m->rp_ptr[0] = &m->rp;
    memset(m->sp_b, 0x6b, sizeof(m->sp_b));
    m->subjects[0] = (ProtobufCBinaryData){STORE_SP_BYTES, m->sp_b};
    m->op.id = "MRG-0123456789ABCDEF";
    m->op.survivor = &m->survivor.op;
    m->op.n_duplicates = 1;
    m->op.duplicates = m->dup_ptr;
    m->op.n_moved = 1;
    m->op.moved = m->moved_ptr;
    m->op.n_repoints = 1;
    m->op.repoints = m->rp_ptr;
    m->op.n_subjects = 1;
    m->op.subjects = m->subjects;
    m->op.sealed_ids = (ProtobufCBinaryData){sizeof(m->box), m->box};
    m->cmd.time_ms = 2000;
    m->cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_MERGE;
    m->cmd.merge = &m->op;
}

static int settle(struct store *s, int undo, struct store_result *res)
{
    Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__MergeUndoOp u = DOSSIER__STORE__V1__MERGE_UNDO_OP__INIT;
    Dossier__Store__V1__MergeConfirmOp c =
        DOSSIER__STORE__V1__MERGE_CONFIRM_OP__INIT;
    uint8_t sp[STORE_SP_BYTES], rid[STORE_RID_BYTES];
    memset(sp, 0x5a, sizeof(sp));
    memset(rid, 0x01, sizeof(rid));
    cmd.time_ms = 3000;
    if (undo) {
        u.id = "MRG-0123456789ABCDEF";
        u.subject = (ProtobufCBinaryData){sizeof(sp), sp};
        u.survivor = (ProtobufCBinaryData){sizeof(rid), rid};
        cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_MERGE_UNDO;
        cmd.merge_undo = &u;
    } else {
        c.id = "MRG-0123456789ABCDEF";
        c.subject = (ProtobufCBinaryData){sizeof(sp), sp};
        c.survivor = (ProtobufCBinaryData){sizeof(rid), rid};
        cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_MERGE_CONFIRM;
        cmd.merge_confirm = &c;
    }
    return apply1(s, &cmd, res);
}

/* Rows of pending merges' summaries ("v" and "w" in the policy
 * family). */
static size_t pending_rows(struct store *s)
{
    struct keys v, w;
    scan(s, STORE_POLICY, (const uint8_t *)"v", 1, NULL, 0, &v);
    scan(s, STORE_POLICY, (const uint8_t *)"w", 1, NULL, 0, &w);
    return v.n + w.n;
}

/* A merge deletes the duplicate, re-points the links to it, moves its
 * subject's record to the survivor's subject, drops that subject's key,
 * makes consent the most restrictive; its undo brings every key of the
 * record, index, subject, link and consent families back as it was,
 * records at a new version. */
static void test_merge_then_undo_restores_the_state_exactly(void **state)
{
    struct fixture *f = *state;
    struct merge m;
    struct store_result res;
    struct dump before;
    struct keys ks;
    StoredRecord *r;
    uint64_t v_surv;

    fx_open(f);
    merge_scenario(f->s);
    state_dump(f->s, &before);
    v_surv = version_of(f->s, "contact", 0x01);
    merge_init(&m, f->s);
    apply1_ok(f->s, &m.cmd, &res);
    assert_int_equal(res.deleted, 1);
    assert_false(same_state(f->s, &before));
    assert_null(record_get(f->s, "contact", 0x02));
    r = record_get(f->s, "activity", 0x03);
    assert_int_equal(r->subject.data[0], 0x5a);
    assert_int_equal(r->dek_id, 7);
    dossier__store__v1__stored_record__free_unpacked(r, NULL);
    assert_true(has_link(f->s, "deal", 0x04, "involves", "contact", 0x01));
    assert_false(has_link(f->s, "deal", 0x04, "involves", "contact", 0x02));
    assert_true(has_link(f->s, "activity", 0x03, "logged_on", "contact", 0x01));
    subject_keys(f->s, 0x6b, &ks);
    assert_int_equal(ks.n, 0); /* its key and records went */
    assert_int_equal(consent_now(f->s, 0x5a, "marketing"),
                     DOSSIER__V1__CONSENT_STATE__CONSENT_STATE_WITHDRAWN);
    assert_int_equal(consent_now(f->s, 0x6b, "marketing"), 0);

    assert_int_equal(settle(f->s, 1, &res), 0);
    assert_true(same_state(f->s, &before));
    assert_true(version_of(f->s, "contact", 0x01) > v_surv);
    assert_int_equal(pending_rows(f->s), 0);
    /* Undone: it is no longer pending. */
    assert_int_equal(settle(f->s, 1, &res), DOSSIER_NOT_FOUND);
    assert_int_equal(settle(f->s, 0, &res), DOSSIER_NOT_FOUND);
    free(before.b);
}

/* Apply checks the leader's view: a record of the merged subject changed,
 * or a link to the duplicate made, since it was prepared is RETRY, and
 * the batch is left as it was. */
static void test_merge_of_a_changed_store_is_retry(void **state)
{
    struct fixture *f = *state;
    struct merge m;
    struct store_result res;
    struct dump before;
    struct put p;

    fx_open(f);
    merge_scenario(f->s);
    merge_init(&m, f->s);
    put_init(&p, "activity", 0x03, 0x6b, 9, 1500);
    apply1_ok(f->s, &p.cmd, &res); /* R changed */
    state_dump(f->s, &before);
    assert_int_equal(apply1(f->s, &m.cmd, &res), DOSSIER_RETRY);
    assert_true(same_state(f->s, &before));
    free(before.b);

    merge_init(&m, f->s);
    put_init(&p, "deal", 0x05, 0, 0, 1500);
    put_link(&p, "involves", "contact", 0x02); /* a new link to D */
    apply1_ok(f->s, &p.cmd, &res);
    state_dump(f->s, &before);
    assert_int_equal(apply1(f->s, &m.cmd, &res), DOSSIER_RETRY);
    assert_true(same_state(f->s, &before));
    free(before.b);

    merge_init(&m, f->s);
    m.op.id = "MRG-nothex";
    assert_int_equal(apply1(f->s, &m.cmd, &res), DOSSIER_CORRUPT);
}

/* Once a record the merge changed has changed again, the undo would lose
 * that: refused; a confirmation deletes the undo data for good. */
static void test_merge_undo_refused_after_a_change_then_confirmed(
    void **state)
{
    struct fixture *f = *state;
    struct merge m;
    struct store_result res;
    struct put p;
    struct keys ks;

    fx_open(f);
    merge_scenario(f->s);
    merge_init(&m, f->s);
    apply1_ok(f->s, &m.cmd, &res);
    put_init(&p, "contact", 0x01, 0x5a, 7, 2500);
    apply1_ok(f->s, &p.cmd, &res);
    assert_int_equal(settle(f->s, 1, &res), DOSSIER_FAILED_PRECONDITION);
    assert_non_null(strstr(res.status.message, "contact"));
    assert_int_equal(settle(f->s, 0, &res), 0);
    scan(f->s, STORE_POLICY, (const uint8_t *)"u", 1, NULL, 0, &ks);
    assert_int_equal(ks.n, 0);
    assert_int_equal(pending_rows(f->s), 0);
    assert_int_equal(settle(f->s, 1, &res), DOSSIER_NOT_FOUND);
}

/* Erasing the survivor's subject while the merge is pending erases the
 * merged subject too (a ledger row of its own) and the undo data. */
static void test_erase_takes_merged_subjects_and_pending_merges(void **state)
{
    struct fixture *f = *state;
    Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__EraseOp op = DOSSIER__STORE__V1__ERASE_OP__INIT;
    Dossier__Store__V1__ErasureRecord *er;
    struct dossier_status st;
    struct store_result res;
    struct merge m;
    struct keys ks;
    uint8_t sp_a[STORE_SP_BYTES], sp_b[STORE_SP_BYTES];

    fx_open(f);
    merge_scenario(f->s);
    merge_init(&m, f->s);
    apply1_ok(f->s, &m.cmd, &res);
    memset(sp_a, 0x5a, sizeof(sp_a));
    memset(sp_b, 0x6b, sizeof(sp_b));
    op.subject = (ProtobufCBinaryData){STORE_SP_BYTES, sp_a};
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_ERASE;
    cmd.erase = &op;
    apply1_ok(f->s, &cmd, &res);
    assert_int_equal(res.deleted, 2); /* S and R */
    scan(f->s, STORE_POLICY, (const uint8_t *)"u", 1, NULL, 0, &ks);
    assert_int_equal(ks.n, 0);
    assert_int_equal(pending_rows(f->s), 0);
    scan(f->s, STORE_CONSENT, sp_a, sizeof(sp_a), NULL, 0, &ks);
    assert_int_equal(ks.n, 0);
    scan(f->s, STORE_CONSENT, sp_b, sizeof(sp_b), NULL, 0, &ks);
    assert_int_equal(ks.n, 0);
    assert_int_equal(store_erasure_get(f->s, sp_b, &er, &st), 0);
    dossier__store__v1__erasure_record__free_unpacked(er, NULL);
    assert_int_equal(store_erasure_get(f->s, sp_a, &er, &st), 0);
    dossier__store__v1__erasure_record__free_unpacked(er, NULL);
}

/* How many changes of record 16 x @rid_byte the feed holds, and of
 * which types (a bit per ChangeType). */
static size_t feed_of(struct store *s, uint8_t rid_byte, unsigned *types)
{
    struct store_change ch[FEED_MAX];
    uint8_t rid[STORE_RID_BYTES];
    size_t n = feed_read(s, ch), hits = 0;
    memset(rid, rid_byte, sizeof(rid));
    *types = 0;
    for (size_t i = 0; i < n; i++)
        if (ch[i].e->rid.len == STORE_RID_BYTES &&
            memcmp(ch[i].e->rid.data, rid, STORE_RID_BYTES) == 0) {
            hits++;
            *types |= 1u << ch[i].e->type;
        }
    store_changes_free(ch, n);
    return hits;
}

#define BIT(t) (1u << DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_##t)

/* A merge takes the duplicate's earlier changes out of the feed, as a
 * Delete does, with their index rows: the feed keeps its deletion only,
 * and the moved record's changes stay. An undo puts the duplicate back
 * in the feed and takes the merge's own changes out. */
static void test_merge_forgets_the_duplicates_changes(void **state)
{
    struct fixture *f = *state;
    struct store_result res;
    struct merge m;
    struct put p;
    unsigned types;
    uint8_t sp_b[STORE_SP_BYTES];
    struct keys ks;

    fx_open(f);
    merge_scenario(f->s);
    put_init(&p, "contact", 0x02, 0x6b, 9, 1500); /* a second change of D */
    put_index(&p, "email", 0xe1);
    put_link(&p, "works_at", "company", 0x0c);
    apply1_ok(f->s, &p.cmd, &res);
    assert_int_equal(feed_of(f->s, 0x02, &types), 2);
    merge_init(&m, f->s);
    apply1_ok(f->s, &m.cmd, &res);
    assert_int_equal(feed_of(f->s, 0x02, &types), 1);
    assert_int_equal(types, BIT(DELETE));
    assert_int_equal(feed_of(f->s, 0x03, &types), 2); /* its put, moved */
    assert_int_equal(types, BIT(PUT));
    /* D's rows left the merged subject's index, and were not copied. */
    memset(sp_b, 0x6b, sizeof(sp_b));
    scan(f->s, STORE_CHANGE_INDEX, sp_b, sizeof(sp_b), NULL, 0, &ks);
    for (size_t i = 0; i < ks.n; i++)
        assert_int_not_equal(ks.k[i][ks.len[i] - 1], 0x02);
    /* The undo takes the merge's own changes out (they hold the merged
     * subject's values under the survivor's key) and puts each record it
     * restores: D's put only, and the moved record's first put and its
     * restoring one. */
    assert_int_equal(settle(f->s, 1, &res), 0);
    assert_int_equal(feed_of(f->s, 0x02, &types), 1);
    assert_int_equal(types, BIT(PUT));
    assert_int_equal(feed_of(f->s, 0x03, &types), 2);
    assert_int_equal(types, BIT(PUT));
}

/* A trim takes the copies a merge made of the merged subject's index rows
 * (under the survivor's subject) with the rows themselves: no index row
 * below the floor is left, under any subject. */
static void test_trim_takes_merge_copies_of_index_rows(void **state)
{
    struct fixture *f = *state;
    struct store_result res;
    struct merge m;
    struct keys ks;
    uint8_t sp_a[STORE_SP_BYTES];
    uint64_t merged_at, floor;
    size_t copies_before = 0;

    fx_open(f);
    merge_scenario(f->s);
    merge_init(&m, f->s);
    apply1_ok(f->s, &m.cmd, &res);
    merged_at = store_revision(f->s);
    memset(sp_a, 0x5a, sizeof(sp_a));
    scan(f->s, STORE_CHANGE_INDEX, sp_a, sizeof(sp_a), NULL, 0, &ks);
    copies_before = ks.n;
    assert_true(copies_before > 0);
    store_set_change_history(f->s, 16);
    for (int i = 0; i < 40; i++) {
        struct put p;
        put_init(&p, "company", (uint8_t)(0x40 + i % 5), 0, 0, 5000 + i);
        apply1_ok(f->s, &p.cmd, &res);
    }
    floor = store_change_floor(f->s);
    assert_true(floor > merged_at);
    assert_true(feed_rows(f->s, STORE_CHANGE_INDEX).min_rev >= floor);
    scan(f->s, STORE_CHANGE_INDEX, sp_a, sizeof(sp_a), NULL, 0, &ks);
    assert_int_equal(ks.n, 0);
}

/* Applies merge_scenario, @fillers company puts and the merge to @s. */
static void merge_with_fillers(struct store *s, int fillers)
{
    struct store_result res;
    struct merge m;
    struct put p;
    merge_scenario(s);
    for (int i = 0; i < fillers; i++) {
        put_init(&p, "company", (uint8_t)(0x40 + i % 5), 0, 0, 1100 + i);
        apply1_ok(s, &p.cmd, &res);
    }
    merge_init(&m, s);
    apply1_ok(s, &m.cmd, &res);
}

/* Whether every row of subject 16 x @from's change index has its copy
 * under 16 x @to (@want 1), or none has (@want 0). */
static void copies_are(struct store *s, uint8_t from, uint8_t to, int want)
{
    uint8_t sp[STORE_SP_BYTES];
    struct keys rows, copies;
    memset(sp, from, sizeof(sp));
    scan(s, STORE_CHANGE_INDEX, sp, sizeof(sp), NULL, 0, &rows);
    memset(sp, to, sizeof(sp));
    scan(s, STORE_CHANGE_INDEX, sp, sizeof(sp), NULL, 0, &copies);
    assert_true(rows.n > 0);
    for (size_t i = 0; i < rows.n; i++) {
        memset(rows.k[i], to, STORE_SP_BYTES);
        assert_int_equal(keys_has(&copies, rows.k[i], rows.len[i]), want);
    }
}

/* What a merge keeps for its undo is the same on every node, whatever
 * each trimmed of its change feed: a store keeping a short feed (the
 * merged subject's changes trimmed) holds the pending merge byte for byte
 * as one keeping it all. An undo takes out the change-index rows the
 * merge copied under the survivor's subject, found again from the merged
 * subject's rows. */
static void test_merge_record_does_not_depend_on_the_feed(void **state)
{
    struct fixture *f = *state;
    struct dossier_status st;
    struct store_result res;
    struct store *other;
    struct dump a, b;
    char path[160];
    int created;

    fx_open(f);
    path_in(path, sizeof(path), f->dir.path, "other");
    if (store_open(path, CACHE_BYTES, &other, &created, &st) != 0)
        fail_msg("store_open: %s", st.message);
    store_set_change_history(other, 16);
    merge_with_fillers(f->s, 20);
    merge_with_fillers(other, 20);
    assert_true(store_change_floor(other) > 6); /* the scenario trimmed */
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_int_equal(store_scan(f->s, STORE_POLICY, NULL, 0, NULL, 0,
                                dump_cb, &a, &st),
                     0);
    assert_int_equal(store_scan(other, STORE_POLICY, NULL, 0, NULL, 0,
                                dump_cb, &b, &st),
                     0);
    assert_true(a.n > 0);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.b, b.b, a.n);
    free(a.b);
    free(b.b);
    store_close(other);

    copies_are(f->s, 0x6b, 0x5a, 1);
    assert_int_equal(settle(f->s, 1, &res), 0);
    copies_are(f->s, 0x6b, 0x5a, 0);
}

static void restrict_subject(struct store *s, uint8_t sp_byte, int on)
{
    Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__RestrictOp op = DOSSIER__STORE__V1__RESTRICT_OP__INIT;
    struct store_result res;
    uint8_t sp[STORE_SP_BYTES];
    memset(sp, sp_byte, sizeof(sp));
    op.subject = (ProtobufCBinaryData){sizeof(sp), sp};
    op.restricted = on;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_RESTRICTION;
    cmd.restriction = &op;
    apply1_ok(s, &cmd, &res);
}

/* An undo restores the merged subjects as they were before the merge: a
 * restriction of the survivor's subject made since, or a consent decision
 * since for a purpose the merge did not touch, would not reach them, so
 * the undo is refused, naming why; with the restriction lifted again it
 * goes through. */
static void test_merge_undo_refused_after_a_restriction_or_consent(
    void **state)
{
    struct fixture *f = *state;
    struct store_result res;
    struct dump before;
    struct merge m;

    fx_open(f);
    merge_scenario(f->s);
    state_dump(f->s, &before);
    merge_init(&m, f->s);
    apply1_ok(f->s, &m.cmd, &res);
    restrict_subject(f->s, 0x5a, 1);
    assert_int_equal(settle(f->s, 1, &res), DOSSIER_FAILED_PRECONDITION);
    assert_non_null(strstr(res.status.message, "restriction"));
    restrict_subject(f->s, 0x5a, 0);
    assert_int_equal(settle(f->s, 1, &res), 0);
    assert_true(same_state(f->s, &before));
    free(before.b);

    merge_init(&m, f->s);
    apply1_ok(f->s, &m.cmd, &res);
    consent(f->s, 0x5a, "profiling", 0);
    assert_int_equal(settle(f->s, 1, &res), DOSSIER_FAILED_PRECONDITION);
    assert_non_null(strstr(res.status.message, "'profiling'"));
    assert_int_equal(settle(f->s, 0, &res), 0);
}

/* Pending merges are read as summaries, by id or page by page in the
 * order they were made, each with what a listing shows; a confirmed one
 * is gone from both. */
static void test_pending_merges_are_listed_in_pages(void **state)
{
    struct fixture *f = *state;
    Dossier__Store__V1__MergeSummary **l, *one;
    struct dossier_status st;
    struct store_result res;
    struct merge m;
    struct put p;
    size_t n;
    int more;

    fx_open(f);
    merge_scenario(f->s);
    merge_init(&m, f->s);
    apply1_ok(f->s, &m.cmd, &res);
    /* A second merge: deal 0x05 into deal 0x04, neither with a subject. */
    put_init(&p, "deal", 0x05, 0, 0, 2100);
    apply1_ok(f->s, &p.cmd, &res);
    merge_init(&m, f->s);
    put_init(&m.survivor, "deal", 0x04, 0, 0, 2200);
    put_link(&m.survivor, "involves", "contact", 0x01);
    put_expect(&m.survivor, version_of(f->s, "deal", 0x04));
    memset(m.dup_rid, 0x05, sizeof(m.dup_rid));
    m.dup.expected_version = version_of(f->s, "deal", 0x05);
    m.op.n_moved = 0;
    m.op.n_repoints = 0;
    m.op.n_subjects = 0;
    m.op.id = "MRG-00000000000000FF";
    apply1_ok(f->s, &m.cmd, &res);

    assert_int_equal(store_merge_list(f->s, 0, 1, &l, &n, &more, &st), 0);
    assert_int_equal(n, 1);
    assert_true(more);
    assert_string_equal(l[0]->id, "MRG-0123456789ABCDEF");
    assert_string_equal(l[0]->kind, "contact");
    assert_int_equal(l[0]->subject.len, STORE_SP_BYTES);
    assert_int_equal(l[0]->records_moved, 1);
    assert_int_equal(l[0]->links_moved, 1);
    assert_int_equal(store_merge_get(f->s, "MRG-0123456789ABCDEF", &one, &st),
                     0);
    assert_int_equal(one->revision, l[0]->revision);
    dossier__store__v1__merge_summary__free_unpacked(one, NULL);
    {
        uint64_t after = l[0]->revision;
        store_merges_free(l, n);
        assert_int_equal(
            store_merge_list(f->s, after, 10, &l, &n, &more, &st), 0);
    }
    assert_int_equal(n, 1);
    assert_false(more);
    assert_string_equal(l[0]->id, "MRG-00000000000000FF");
    assert_string_equal(l[0]->kind, "deal");
    assert_int_equal(l[0]->subject.len, 0);
    store_merges_free(l, n);

    assert_int_equal(settle(f->s, 0, &res), 0);
    assert_int_equal(store_merge_get(f->s, "MRG-0123456789ABCDEF", &one, &st),
                     DOSSIER_NOT_FOUND);
    assert_int_equal(store_merge_get(f->s, "MRG-0123456789abcdef", &one, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(store_merge_list(f->s, 0, 10, &l, &n, &more, &st), 0);
    assert_int_equal(n, 1);
    assert_string_equal(l[0]->id, "MRG-00000000000000FF");
    store_merges_free(l, n);
}

/* A FINISH to version 2 that meta_v1's cluster takes (its cluster id,
 * the check value BEGIN recorded). */
static void rot_finish(struct rot *r)
{
    rot_init(r, DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__FINISH, 2);
    memset(r->cursor, 0xc1, 16); /* meta_v1's cluster id */
    r->meta.cluster_id = (ProtobufCBinaryData){16, r->cursor};
    r->meta.kek_version = 2;
    r->meta.kek_check = (ProtobufCBinaryData){16, r->check};
    r->meta.sealed_keyset = (ProtobufCBinaryData){16, r->check};
    r->op.meta = &r->meta;
}

/* A pending merge keeps the merged subject's key as it was wrapped: while
 * a rotation runs, an undo that would bring it back under the old version
 * is refused and so is the FINISH; a REWRAP item naming the merge
 * replaces the kept key (in the record and its summary), then both go
 * through, and the key the undo restores is the rewrapped one. */
static void test_rotation_rewraps_keys_pending_merges_keep(void **state)
{
    struct fixture *f = *state;
    Dossier__Store__V1__MergeSummary *ms;
    struct dossier_status st;
    struct store_result res;
    struct merge m;
    struct rot r;
    SubjectKey *sk;
    uint8_t sp_b[STORE_SP_BYTES];

    fx_open(f);
    meta_v1(f->s);
    merge_scenario(f->s);
    merge_init(&m, f->s);
    apply1_ok(f->s, &m.cmd, &res);
    assert_int_equal(store_merge_get(f->s, m.op.id, &ms, &st), 0);
    assert_int_equal(ms->n_kept_keys, 1);
    assert_int_equal(ms->kept_keys[0]->kek_version, 1);
    assert_int_equal(ms->kept_keys[0]->dek_id, 9);
    dossier__store__v1__merge_summary__free_unpacked(ms, NULL);

    rot_init(&r, DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__BEGIN, 2);
    apply1_ok(f->s, &r.cmd, &res);
    assert_int_equal(settle(f->s, 1, &res), DOSSIER_FAILED_PRECONDITION);
    assert_non_null(strstr(res.status.message, "rotation to version 2"));
    rot_finish(&r);
    assert_int_equal(apply1(f->s, &r.cmd, &res), DOSSIER_FAILED_PRECONDITION);
    assert_non_null(strstr(res.status.message, m.op.id));

    /* The live key of the survivor's subject and the kept one. */
    rot_init(&r, DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__REWRAP, 2);
    rot_item(&r, 0x5a, 7, 0xa2);
    rot_item(&r, 0x6b, 9, 0xd2);
    r.it[1].merge_id = (char *)m.op.id;
    apply1_ok(f->s, &r.cmd, &res);
    assert_int_equal(res.deleted, 2);
    memset(sp_b, 0x6b, sizeof(sp_b));
    assert_int_equal(store_merge_kept_key(f->s, m.op.id, sp_b, &sk, &st), 0);
    assert_int_equal(sk->kek_version, 2);
    assert_memory_equal(sk->wrapped_dek.data, r.wrapped[1], 8);
    dossier__store__v1__subject_key__free_unpacked(sk, NULL);
    assert_int_equal(store_merge_get(f->s, m.op.id, &ms, &st), 0);
    assert_int_equal(ms->kept_keys[0]->kek_version, 2);
    dossier__store__v1__merge_summary__free_unpacked(ms, NULL);
    /* Sent again (a new leader): skipped. */
    apply1_ok(f->s, &r.cmd, &res);
    assert_int_equal(res.deleted, 0);

    rot_finish(&r);
    apply1_ok(f->s, &r.cmd, &res);
    assert_int_equal(settle(f->s, 1, &res), 0);
    sk = subject_key_of(f->s, 0x6b);
    assert_int_equal(sk->kek_version, 2);
    assert_int_equal(sk->dek_id, 9);
    assert_int_equal(sk->wrapped_dek.data[0], 0xd2);
    dossier__store__v1__subject_key__free_unpacked(sk, NULL);
    assert_int_equal(store_rotation_purge(f->s, &st), 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_open_makes_missing_directory_with_marker),
        T(test_open_uses_existing_empty_directory),
        T(test_reopen_finds_existing_store),
        T(test_open_refuses_foreign_non_empty_directory),
        T(test_open_refuses_other_format_marker),
        T(test_open_refuses_directory_in_use),
        T(test_meta_of_new_store_is_not_found),
        T(test_meta_put_then_get_round_trips),
        T(test_record_key_is_kind_nul_rid),
        T(test_membership_key_is_sp_kind_nul_rid),
        T(test_index_key_is_kind_nul_field_nul_blind_rid),
        T(test_link_key_is_dir_kind_rid_label_kind_rid),
        T(test_longest_keys_fit_store_key_max),
        T(test_put_versions_are_revisions_and_grow),
        T(test_put_stores_record_with_times),
        T(test_put_expecting_0_on_existing_is_already_exists),
        T(test_put_expecting_wrong_version_is_version_conflict),
        T(test_put_expecting_version_of_missing_record_is_not_found),
        T(test_failed_command_leaves_batch_unchanged),
        T(test_failed_put_writes_nothing),
        T(test_request_expiry_resumes_where_it_stopped),
        T(test_request_sweep_removes_ids_past_their_ttl),
        T(test_put_sees_earlier_put_of_same_batch),
        T(test_first_put_of_subject_installs_its_key),
        T(test_first_put_of_subject_without_key_is_retry),
        T(test_put_with_other_dek_id_than_subjects_is_retry),
        T(test_put_changing_subject_is_failed_precondition),
        T(test_put_replaces_index_keys),
        T(test_delete_removes_record_index_keys_and_membership),
        T(test_delete_of_missing_record_is_not_found),
        T(test_delete_expecting_wrong_version_is_version_conflict),
        T(test_put_writes_link_rows_both_ways),
        T(test_put_replaces_link_rows),
        T(test_delete_removes_links_from_and_to_the_record),
        T(test_erase_removes_links_of_every_record),
        T(test_put_with_malformed_link_is_corrupt),
        T(test_key_rotation_steps_check_what_is_stored),
        T(test_record_retention_counts_from_the_kinds_base),
        T(test_retention_skips_restricted_subjects),
        T(test_erasure_done_counts_members_only),
        T(test_install_leaves_no_byte_of_the_senders_log),
        T(test_rectify_is_an_update_at_a_version),
        T(test_first_only_add_is_refused_once_bootstrapped),
        T(test_keep_an_admin_refuses_removing_the_last_admin),
        T(test_revision_survives_reopen),
        T(test_batch_of_failed_commands_keeps_revision),
        T(test_aborted_batch_writes_nothing),
        T(test_define_kind_visible_after_commit_and_reopen),
        T(test_define_kind_refuses_incompatible_change),
        T(test_define_kind_refuses_invalid_definition),
        T(test_scan_visits_keys_with_prefix_in_order),
        T(test_scan_after_is_exclusive),
        T(test_scan_after_before_prefix_visits_whole_prefix),
        T(test_scan_stops_as_callback_says),
        T(test_put_with_rid_of_wrong_length_is_corrupt),
        T(test_put_with_index_key_of_another_record_is_corrupt),
        T(test_other_malformed_puts_are_corrupt),
        T(test_malformed_delete_and_empty_command_are_corrupt),
        T(test_delete_leaves_only_a_bare_deletion_in_the_feed),
        T(test_erase_leaves_only_the_erasure_in_the_feed),
        T(test_trim_removes_old_changes_and_their_index_rows),
        T(test_failed_trim_is_tried_again),
        T(test_trims_stay_small),
        T(test_trim_takes_merge_copies_of_index_rows),
        T(test_merge_then_undo_restores_the_state_exactly),
        T(test_merge_of_a_changed_store_is_retry),
        T(test_merge_undo_refused_after_a_change_then_confirmed),
        T(test_erase_takes_merged_subjects_and_pending_merges),
        T(test_merge_forgets_the_duplicates_changes),
        T(test_merge_record_does_not_depend_on_the_feed),
        T(test_merge_undo_refused_after_a_restriction_or_consent),
        T(test_pending_merges_are_listed_in_pages),
        T(test_rotation_rewraps_keys_pending_merges_keep),
        /* Last: under the sanitizer build this one currently aborts the
         * process (store.c memcmp on NULL), which would hide the rest. */
        T(test_record_without_subject_can_be_replaced),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
