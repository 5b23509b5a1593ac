/* RocksDB layout, reads and the deterministic state machine (store_apply).
 * The layout is documented in store.h. */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "errors.h"

#define MARKER_NAME "DOSSIER"
#define MARKER_TEXT "dossier data directory\nformat 1\n"

static const char *const family_names[STORE_N_FAMILIES] = {
    [STORE_DEFAULT] = "default", [STORE_SCHEMA] = "schema",
    [STORE_RECORD] = "record",   [STORE_SUBJECT] = "subject",
    [STORE_INDEX] = "index",
};

struct store {
    char *dir;
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_block_based_table_options_t *table;
    rocksdb_cache_t *cache;
    rocksdb_column_family_handle_t *cf[STORE_N_FAMILIES];
    rocksdb_readoptions_t *ro;
    rocksdb_writeoptions_t *wo_sync;
    rocksdb_writeoptions_t *wo_nosync;
    struct schema_registry *schemas;
    uint64_t revision; /* written by the committing thread, read by any */
};

/* Kinds defined by a batch, registered once it commits. */
struct pending_kind {
    KindSchema *schema; /* owned */
    struct pending_kind *next;
};

struct store_batch {
    struct store *s;
    rocksdb_writebatch_wi_t *wb;
    uint64_t revision; /* last revision taken by this batch */
    size_t applied;
    struct pending_kind *kinds; /* oldest first */
    struct pending_kind **kinds_tail;
};

/* Translates a RocksDB error (freed here) where it enters. RocksDB errors
 * name files and states, never keys or values. */
static int rdb_error(struct dossier_status *st, char *err, const char *what)
{
    int code = DOSSIER_IO;
    if (strstr(err, "Corruption"))
        code = DOSSIER_CORRUPT;
    else if (strstr(err, "lock"))
        code = DOSSIER_FAILED_PRECONDITION;
    err_set(st, code, "%s: %s", what, err);
    rocksdb_free(err);
    return code;
}

/* ------------------------------------------------------------------ */
/* Keys */

static size_t put_name(uint8_t *out, const char *name)
{
    size_t n = strlen(name);
    memcpy(out, name, n);
    out[n] = 0;
    return n + 1;
}

size_t store_record_key(uint8_t *out, const char *kind,
                        const uint8_t rid[STORE_RID_BYTES])
{
    size_t n = put_name(out, kind);
    memcpy(out + n, rid, STORE_RID_BYTES);
    return n + STORE_RID_BYTES;
}

size_t store_membership_key(uint8_t *out, const uint8_t sp[STORE_SP_BYTES],
                            const char *kind,
                            const uint8_t rid[STORE_RID_BYTES])
{
    memcpy(out, sp, STORE_SP_BYTES);
    return STORE_SP_BYTES + store_record_key(out + STORE_SP_BYTES, kind, rid);
}

size_t store_index_key(uint8_t *out, const char *kind, const char *field,
                       const uint8_t blind[STORE_BLIND_BYTES],
                       const uint8_t rid[STORE_RID_BYTES])
{
    size_t n = put_name(out, kind);
    n += put_name(out + n, field);
    memcpy(out + n, blind, STORE_BLIND_BYTES);
    memcpy(out + n + STORE_BLIND_BYTES, rid, STORE_RID_BYTES);
    return n + STORE_BLIND_BYTES + STORE_RID_BYTES;
}

static void u64_be(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

static uint64_t be_u64(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | in[i];
    return v;
}

/* ------------------------------------------------------------------ */
/* Data directory */

static int path_join(char *out, size_t cap, const char *dir, const char *name)
{
    return snprintf(out, cap, "%s/%s", dir, name) >= (int)cap ? -1 : 0;
}

static int dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int empty = 1;
    if (!d)
        return 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* Checks @dir: *@created is 1 when it is missing (then made, mode 0700) or
 * empty. */
static int dir_prepare(const char *dir, int *created, struct dossier_status *st)
{
    char marker[4096], buf[128];
    struct stat sb;
    ssize_t n;
    int fd;

    *created = 0;
    if (path_join(marker, sizeof(marker), dir, MARKER_NAME))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "data directory path is too long");
    if (stat(dir, &sb) != 0) {
        if (errno != ENOENT)
            return err_set(st, DOSSIER_IO, "data directory %s: %s", dir,
                           strerror(errno));
        if (mkdir(dir, 0700) != 0)
            return err_set(st, DOSSIER_IO, "cannot make data directory %s: %s",
                           dir, strerror(errno));
        *created = 1;
        return 0;
    }
    if (!S_ISDIR(sb.st_mode))
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "data directory %s is not a directory", dir);
    fd = open(marker, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && dir_is_empty(dir)) {
            *created = 1;
            return 0;
        }
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "%s is not a Dossier data directory (it is not empty "
                       "and has no " MARKER_NAME " file); refusing to use it",
                       dir);
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0 || (size_t)n != strlen(MARKER_TEXT) ||
        memcmp(buf, MARKER_TEXT, (size_t)n) != 0)
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "%s/" MARKER_NAME " is not a Dossier format %d marker; "
                       "this data directory belongs to another version or "
                       "program",
                       dir, STORE_FORMAT);
    return 0;
}

static int marker_write(const char *dir, struct dossier_status *st)
{
    char path[4096];
    size_t len = strlen(MARKER_TEXT);
    int fd;

    if (path_join(path, sizeof(path), dir, MARKER_NAME))
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "path too long");
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set(st, DOSSIER_IO, "cannot write %s: %s", path,
                       strerror(errno));
    if (write(fd, MARKER_TEXT, len) != (ssize_t)len || fsync(fd) != 0) {
        close(fd);
        return err_set(st, DOSSIER_IO, "cannot write %s: %s", path,
                       strerror(errno));
    }
    close(fd);
    if (fsync_path(dir) != 0)
        return err_set(st, DOSSIER_IO, "cannot sync %s: %s", dir,
                       strerror(errno));
    return 0;
}

/* ------------------------------------------------------------------ */
/* Open and close */

static int revision_load(struct store *s, struct dossier_status *st)
{
    char *err = NULL, *v;
    size_t len;

    v = rocksdb_get_cf(s->db, s->ro, s->cf[STORE_DEFAULT], "revision", 8,
                       &len, &err);
    if (err)
        return rdb_error(st, err, "reading the revision");
    if (!v) {
        s->revision = 0;
        return 0;
    }
    if (len != 8) {
        rocksdb_free(v);
        return err_set(st, DOSSIER_CORRUPT, "the revision row is corrupt");
    }
    s->revision = be_u64((const uint8_t *)v);
    rocksdb_free(v);
    return 0;
}

static int schema_cb(void *arg, const uint8_t *key, size_t klen,
                     const uint8_t *val, size_t vlen)
{
    struct store *s = arg;
    KindSchema *k = dossier__v1__kind_schema__unpack(NULL, vlen, val);
    (void)key;
    (void)klen;
    if (!k)
        return DOSSIER_CORRUPT;
    if (schema_registry_set(s->schemas, k) != 0) {
        dossier__v1__kind_schema__free_unpacked(k, NULL);
        return DOSSIER_NOMEM;
    }
    return 0;
}

int store_open(const char *dir, size_t block_cache_bytes, struct store **out,
               int *created, struct dossier_status *st)
{
    const char *names[STORE_N_FAMILIES];
    const rocksdb_options_t *cf_opts[STORE_N_FAMILIES];
    char dbpath[4096];
    char *err = NULL;
    struct store *s;
    int rc;

    *out = NULL;
    rc = dir_prepare(dir, created, st);
    if (rc)
        return rc;
    if (path_join(dbpath, sizeof(dbpath), dir, "db"))
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "path too long");
    if (!*created && access(dbpath, F_OK) != 0)
        return err_set(st, DOSSIER_CORRUPT,
                       "data directory %s has a " MARKER_NAME
                       " marker but no db/ directory",
                       dir);
    s = calloc(1, sizeof(*s));
    if (!s)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    s->dir = strdup(dir);
    s->schemas = schema_registry_new();
    if (!s->dir || !s->schemas) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto fail;
    }

    s->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->opts, *created);
    rocksdb_options_set_create_missing_column_families(s->opts, 1);
    rocksdb_options_set_paranoid_checks(s->opts, 1);
    /* Values are ciphertext: compression would only cost CPU. */
    rocksdb_options_set_compression(s->opts, rocksdb_no_compression);
    /* No WAL archive: erased data must leave the disk with its WAL files. */
    rocksdb_options_set_WAL_ttl_seconds(s->opts, 0);
    rocksdb_options_set_WAL_size_limit_MB(s->opts, 0);
    rocksdb_options_set_keep_log_file_num(s->opts, 5);
    rocksdb_options_set_max_log_file_size(s->opts, 16 << 20);
    rocksdb_options_set_max_background_jobs(s->opts, 2);
    /* A write first looks up the record and the subject key, which for a
     * new record are absent: a bloom filter on the memtable answers those
     * misses without walking its skiplist. */
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(s->opts, 0.02);
    rocksdb_options_set_memtable_whole_key_filtering(s->opts, 1);
    s->table = rocksdb_block_based_options_create();
    s->cache = rocksdb_cache_create_lru(block_cache_bytes);
    rocksdb_block_based_options_set_block_cache(s->table, s->cache);
    rocksdb_block_based_options_set_filter_policy(
        s->table, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(s->table, 1);
    rocksdb_options_set_block_based_table_factory(s->opts, s->table);

    for (int i = 0; i < STORE_N_FAMILIES; i++) {
        names[i] = family_names[i];
        cf_opts[i] = s->opts;
    }
    s->db = rocksdb_open_column_families(s->opts, dbpath, STORE_N_FAMILIES,
                                         names, cf_opts, s->cf, &err);
    if (err) {
        rc = rdb_error(st, err, "cannot open the database");
        if (rc == DOSSIER_FAILED_PRECONDITION)
            err_set(st, rc,
                    "data directory %s is in use by another process (its "
                    "database lock is held)",
                    dir);
        goto fail;
    }
    s->ro = rocksdb_readoptions_create();
    s->wo_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wo_sync, 1);
    s->wo_nosync = rocksdb_writeoptions_create();

    if (*created) {
        rc = marker_write(dir, st);
        if (rc)
            goto fail;
    }
    rc = revision_load(s, st);
    if (rc)
        goto fail;
    rc = store_scan(s, STORE_SCHEMA, NULL, 0, NULL, 0, schema_cb, s, st);
    if (rc) {
        if (rc == DOSSIER_CORRUPT)
            err_set(st, rc, "a stored schema is corrupt");
        goto fail;
    }
    *out = s;
    return err_ok(st);
fail:
    store_close(s);
    return rc;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    if (s->db) {
        for (int i = 0; i < STORE_N_FAMILIES; i++)
            if (s->cf[i])
                rocksdb_column_family_handle_destroy(s->cf[i]);
        rocksdb_close(s->db);
    }
    if (s->ro)
        rocksdb_readoptions_destroy(s->ro);
    if (s->wo_sync)
        rocksdb_writeoptions_destroy(s->wo_sync);
    if (s->wo_nosync)
        rocksdb_writeoptions_destroy(s->wo_nosync);
    if (s->opts)
        rocksdb_options_destroy(s->opts);
    if (s->table)
        rocksdb_block_based_options_destroy(s->table);
    if (s->cache)
        rocksdb_cache_destroy(s->cache);
    schema_registry_free(s->schemas);
    free(s->dir);
    free(s);
}

struct schema_registry *store_schemas(struct store *s)
{
    return s->schemas;
}

uint64_t store_revision(struct store *s)
{
    return __atomic_load_n(&s->revision, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------------ */
/* Reads */

int store_meta_get(struct store *s, Dossier__Store__V1__Meta **out,
                   struct dossier_status *st)
{
    char *err = NULL, *v;
    size_t len;

    *out = NULL;
    v = rocksdb_get_cf(s->db, s->ro, s->cf[STORE_DEFAULT], "meta", 4, &len,
                       &err);
    if (err)
        return rdb_error(st, err, "reading the meta record");
    if (!v)
        return err_set(st, DOSSIER_NOT_FOUND, "no meta record");
    *out = dossier__store__v1__meta__unpack(NULL, len, (const uint8_t *)v);
    rocksdb_free(v);
    if (!*out)
        return err_set(st, DOSSIER_CORRUPT, "the meta record is corrupt");
    if ((*out)->format != STORE_FORMAT) {
        uint32_t f = (*out)->format;
        dossier__store__v1__meta__free_unpacked(*out, NULL);
        *out = NULL;
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "the data directory has format %u; this dossierd "
                       "reads format %d",
                       f, STORE_FORMAT);
    }
    return 0;
}

int store_meta_put(struct store *s, const Dossier__Store__V1__Meta *m,
                   struct dossier_status *st)
{
    size_t len = dossier__store__v1__meta__get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    char *err = NULL;

    if (!buf)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    dossier__store__v1__meta__pack(m, buf);
    rocksdb_put_cf(s->db, s->wo_sync, s->cf[STORE_DEFAULT], "meta", 4,
                   (const char *)buf, len, &err);
    free(buf);
    if (err)
        return rdb_error(st, err, "writing the meta record");
    return 0;
}

/* Reads @key of @family, through @b's pending writes when @b is set. */
static int get_raw(struct store *s, struct store_batch *b,
                   enum store_family family, const uint8_t *key, size_t klen,
                   char **val, size_t *vlen, struct dossier_status *st)
{
    char *err = NULL;
    if (b)
        *val = rocksdb_writebatch_wi_get_from_batch_and_db_cf(
            b->wb, s->db, s->ro, s->cf[family], (const char *)key, klen, vlen,
            &err);
    else
        *val = rocksdb_get_cf(s->db, s->ro, s->cf[family], (const char *)key,
                              klen, vlen, &err);
    if (err)
        return rdb_error(st, err, "read failed");
    return 0;
}

static int record_read(struct store *s, struct store_batch *b,
                       const char *kind, const uint8_t *rid,
                       StoredRecord **out, struct dossier_status *st)
{
    uint8_t key[STORE_KEY_MAX];
    size_t klen = store_record_key(key, kind, rid), vlen;
    char *v;
    int rc;

    *out = NULL;
    rc = get_raw(s, b, STORE_RECORD, key, klen, &v, &vlen, st);
    if (rc)
        return rc;
    if (!v)
        return err_set(st, DOSSIER_NOT_FOUND, "no record of kind '%s' with "
                       "that id", kind);
    *out = dossier__store__v1__stored_record__unpack(NULL, vlen,
                                                     (const uint8_t *)v);
    rocksdb_free(v);
    if (!*out)
        return err_set(st, DOSSIER_CORRUPT, "a stored record is corrupt");
    return 0;
}

static int subject_key_read(struct store *s, struct store_batch *b,
                            const uint8_t *sp, SubjectKey **out,
                            struct dossier_status *st)
{
    size_t vlen;
    char *v;
    int rc;

    *out = NULL;
    rc = get_raw(s, b, STORE_SUBJECT, sp, STORE_SP_BYTES, &v, &vlen, st);
    if (rc)
        return rc;
    if (!v)
        return err_set(st, DOSSIER_NOT_FOUND, "no such subject");
    *out = dossier__store__v1__subject_key__unpack(NULL, vlen,
                                                   (const uint8_t *)v);
    rocksdb_free(v);
    if (!*out)
        return err_set(st, DOSSIER_CORRUPT, "a subject key is corrupt");
    return 0;
}

int store_record_get(struct store *s, const char *kind,
                     const uint8_t rid[STORE_RID_BYTES], StoredRecord **out,
                     struct dossier_status *st)
{
    return record_read(s, NULL, kind, rid, out, st);
}

int store_subject_key_get(struct store *s, const uint8_t sp[STORE_SP_BYTES],
                          SubjectKey **out, struct dossier_status *st)
{
    return subject_key_read(s, NULL, sp, out, st);
}

/* RocksDB's default order: bytewise, a proper prefix first. */
static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b,
                   size_t blen)
{
    int c = (alen && blen) ? memcmp(a, b, alen < blen ? alen : blen) : 0;
    if (c)
        return c;
    return (alen > blen) - (alen < blen);
}

/* The smallest key greater than every key starting with @p: @p with its
 * last byte below 0xff incremented and the rest cut. Returns 0 when there is
 * none (all 0xff). */
static size_t prefix_successor(const uint8_t *p, size_t len, uint8_t *out)
{
    while (len > 0 && p[len - 1] == 0xff)
        len--;
    if (len == 0)
        return 0;
    memcpy(out, p, len);
    out[len - 1]++;
    return len;
}

int store_scan(struct store *s, enum store_family family,
               const uint8_t *prefix, size_t prefix_len, const uint8_t *after,
               size_t after_len, store_scan_cb cb, void *arg,
               struct dossier_status *st)
{
    uint8_t upper[STORE_KEY_MAX];
    size_t upper_len = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it;
    char *err = NULL;
    int rc = 0;

    if (prefix_len && prefix_len <= sizeof(upper))
        upper_len = prefix_successor(prefix, prefix_len, upper);
    if (upper_len)
        rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)upper,
                                                    upper_len);
    it = rocksdb_create_iterator_cf(s->db, ro, s->cf[family]);
    /* Start at the greater of @after and @prefix: an @after that sorts
     * before the prefix must not hide the prefix's keys. */
    if (after && after_len &&
        key_cmp(after, after_len, prefix, prefix_len) > 0)
        rocksdb_iter_seek(it, (const char *)after, after_len);
    else if (prefix_len)
        rocksdb_iter_seek(it, (const char *)prefix, prefix_len);
    else
        rocksdb_iter_seek_to_first(it);
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        if (prefix_len &&
            (klen < prefix_len || memcmp(k, prefix, prefix_len) != 0))
            break;
        if (after && klen == after_len && memcmp(k, after, klen) == 0)
            continue;
        rc = cb(arg, (const uint8_t *)k, klen, (const uint8_t *)v, vlen);
        if (rc)
            break;
    }
    if (rc == 1)
        rc = 0;
    else if (rc)
        err_set(st, rc, "scan stopped: %s", dossier_code_message(rc));
    rocksdb_iter_get_error(it, &err);
    if (err && !rc)
        rc = rdb_error(st, err, "scan failed");
    else if (err)
        rocksdb_free(err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Batches and the state machine */

struct store_batch *store_batch_begin(struct store *s)
{
    struct store_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->s = s;
    b->wb = rocksdb_writebatch_wi_create(64 << 10, 1);
    b->revision = store_revision(s);
    b->kinds_tail = &b->kinds;
    return b;
}

size_t store_batch_count(const struct store_batch *b)
{
    return b->applied;
}

static void pending_free(struct pending_kind *p)
{
    while (p) {
        struct pending_kind *next = p->next;
        if (p->schema)
            dossier__v1__kind_schema__free_unpacked(p->schema, NULL);
        free(p);
        p = next;
    }
}

void store_batch_abort(struct store_batch *b)
{
    if (!b)
        return;
    rocksdb_writebatch_wi_destroy(b->wb);
    pending_free(b->kinds);
    free(b);
}

int store_batch_commit(struct store_batch *b, int sync,
                       struct dossier_status *st)
{
    struct store *s = b->s;
    char *err = NULL;
    uint8_t rev[8];
    int rc = 0;

    if (b->applied == 0) {
        store_batch_abort(b);
        return err_ok(st);
    }
    u64_be(rev, b->revision);
    rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_DEFAULT], "revision", 8,
                                 (const char *)rev, 8);
    rocksdb_write_writebatch_wi(s->db, sync ? s->wo_sync : s->wo_nosync,
                                b->wb, &err);
    if (err) {
        rc = rdb_error(st, err, "write failed");
        store_batch_abort(b);
        return rc;
    }
    __atomic_store_n(&s->revision, b->revision, __ATOMIC_RELEASE);
    /* Kinds become visible to requests only once they are durable, in the
     * order they were defined, so the newest definition wins. */
    for (struct pending_kind *p = b->kinds; p; p = p->next)
        if (schema_registry_set(s->schemas, p->schema) == 0)
            p->schema = NULL; /* the registry owns it now */
    store_batch_abort(b);
    return err_ok(st);
}

static int bad_command(struct store_result *res, const char *what)
{
    return err_set(&res->status, DOSSIER_CORRUPT, "malformed command: %s",
                   what);
}

/* An index key of @op is well formed: kind 0x00 field 0x00 blind rid. */
static int index_key_valid(const Dossier__Store__V1__PutOp *op,
                           const ProtobufCBinaryData *k)
{
    size_t kl = strlen(op->kind);
    if (k->len < kl + 3 + STORE_BLIND_BYTES + STORE_RID_BYTES ||
        k->len > STORE_KEY_MAX || memcmp(k->data, op->kind, kl) != 0 ||
        k->data[kl] != 0 ||
        memcmp(k->data + k->len - STORE_RID_BYTES, op->rid.data,
               STORE_RID_BYTES) != 0)
        return 0;
    return memchr(k->data + kl + 1, 0, k->len - kl - 1 - 32) != NULL;
}

static int apply_put(struct store_batch *b, const Command *cmd,
                     struct store_result *res)
{
    const Dossier__Store__V1__PutOp *op = cmd->put;
    struct store *s = b->s;
    struct dossier_status *st = &res->status;
    StoredRecord *old = NULL;
    SubjectKey *sk = NULL;
    StoredRecord rec = DOSSIER__STORE__V1__STORED_RECORD__INIT;
    uint8_t key[STORE_KEY_MAX];
    size_t klen, len, sk_len;
    uint8_t *buf = NULL;
    int has_subject = op->subject.len == STORE_SP_BYTES;
    int rc;

    if (!schema_name_valid(op->kind) || op->rid.len != STORE_RID_BYTES ||
        (op->subject.len != 0 && !has_subject) ||
        op->sealed_id.len == 0 || (!has_subject && op->dek_id != 0))
        return bad_command(res, "put");
    for (size_t i = 0; i < op->n_index_keys; i++)
        if (!index_key_valid(op, &op->index_keys[i]))
            return bad_command(res, "put index key");

    rc = record_read(s, b, op->kind, op->rid.data, &old, st);
    if (rc && rc != DOSSIER_NOT_FOUND)
        return rc;
    if (op->expect_case ==
        DOSSIER__STORE__V1__PUT_OP__EXPECT_EXPECTED_VERSION) {
        if (op->expected_version == 0 && old) {
            rc = err_set(st, DOSSIER_ALREADY_EXISTS,
                         "a record of kind '%s' with that id already exists "
                         "(version %llu)",
                         op->kind, (unsigned long long)old->version);
            goto out;
        }
        if (op->expected_version != 0 && !old) {
            rc = err_set(st, DOSSIER_NOT_FOUND,
                         "no record of kind '%s' with that id (expected "
                         "version %llu)",
                         op->kind, (unsigned long long)op->expected_version);
            goto out;
        }
        if (old && old->version != op->expected_version) {
            rc = err_set(st, DOSSIER_VERSION_CONFLICT,
                         "the record is at version %llu, not the expected "
                         "%llu",
                         (unsigned long long)old->version,
                         (unsigned long long)op->expected_version);
            goto out;
        }
    }
    if (old && (old->subject.len != op->subject.len ||
                (op->subject.len &&
                 memcmp(old->subject.data, op->subject.data,
                        op->subject.len) != 0))) {
        rc = err_set(st, DOSSIER_FAILED_PRECONDITION,
                     "a record's subject cannot change; delete the record "
                     "and create it again");
        goto out;
    }
    if (has_subject) {
        rc = subject_key_read(s, b, op->subject.data, &sk, st);
        if (rc && rc != DOSSIER_NOT_FOUND)
            goto out;
        if (sk ? sk->dek_id != op->dek_id
               : !op->new_subject_key ||
                     op->new_subject_key->dek_id != op->dek_id) {
            /* Another write created the subject's key first, or it was
             * erased meanwhile: the proposer seals again and retries. */
            rc = err_set(st, DOSSIER_RETRY, "the subject's key changed");
            goto out;
        }
    }

    /* Every check passed. Encode everything first, so that once the first
     * write goes into the batch nothing can fail half-way. */
    rec.kind = op->kind;
    rec.subject = op->subject;
    rec.dek_id = op->dek_id;
    rec.version = b->revision + 1;
    rec.created_at_ms = old ? old->created_at_ms : cmd->time_ms;
    rec.updated_at_ms = cmd->time_ms;
    rec.sealed_id = op->sealed_id;
    rec.sealed_links = op->sealed_links;
    rec.n_fields = op->n_fields;
    rec.fields = op->fields;
    rec.n_index_keys = op->n_index_keys;
    rec.index_keys = op->index_keys;
    len = dossier__store__v1__stored_record__get_packed_size(&rec);
    sk_len = has_subject && !sk ? dossier__store__v1__subject_key__get_packed_size(
                                      op->new_subject_key)
                                : 0;
    buf = malloc(len + sk_len + 1);
    if (!buf) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    dossier__store__v1__stored_record__pack(&rec, buf);
    if (sk_len)
        dossier__store__v1__subject_key__pack(op->new_subject_key, buf + len);

    if (has_subject && !sk)
        rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_SUBJECT],
                                     (const char *)op->subject.data,
                                     STORE_SP_BYTES, (const char *)buf + len,
                                     sk_len);
    if (old)
        for (size_t i = 0; i < old->n_index_keys; i++)
            rocksdb_writebatch_wi_delete_cf(
                b->wb, s->cf[STORE_INDEX],
                (const char *)old->index_keys[i].data,
                old->index_keys[i].len);
    for (size_t i = 0; i < op->n_index_keys; i++)
        rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_INDEX],
                                     (const char *)op->index_keys[i].data,
                                     op->index_keys[i].len, "", 0);
    if (has_subject) {
        klen = store_membership_key(key, op->subject.data, op->kind,
                                    op->rid.data);
        rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_SUBJECT],
                                     (const char *)key, klen, "", 0);
    }
    klen = store_record_key(key, op->kind, op->rid.data);
    rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_RECORD],
                                 (const char *)key, klen, (const char *)buf,
                                 len);
    free(buf);
    b->revision++;
    res->version = rec.version;
    res->created = old == NULL;
    res->updated_at_ms = rec.updated_at_ms;
    rc = err_ok(st);
out:
    if (old)
        dossier__store__v1__stored_record__free_unpacked(old, NULL);
    if (sk)
        dossier__store__v1__subject_key__free_unpacked(sk, NULL);
    return rc;
}

static int apply_delete(struct store_batch *b, const Command *cmd,
                        struct store_result *res)
{
    const Dossier__Store__V1__DeleteOp *op = cmd->delete_;
    struct store *s = b->s;
    struct dossier_status *st = &res->status;
    StoredRecord *old = NULL;
    uint8_t key[STORE_KEY_MAX];
    size_t klen;
    int rc;

    if (!schema_name_valid(op->kind) || op->rid.len != STORE_RID_BYTES)
        return bad_command(res, "delete");
    rc = record_read(s, b, op->kind, op->rid.data, &old, st);
    if (rc)
        return rc;
    if (op->expect_case ==
            DOSSIER__STORE__V1__DELETE_OP__EXPECT_EXPECTED_VERSION &&
        old->version != op->expected_version) {
        rc = err_set(st, DOSSIER_VERSION_CONFLICT,
                     "the record is at version %llu, not the expected %llu",
                     (unsigned long long)old->version,
                     (unsigned long long)op->expected_version);
        goto out;
    }
    for (size_t i = 0; i < old->n_index_keys; i++)
        rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_INDEX],
                                        (const char *)old->index_keys[i].data,
                                        old->index_keys[i].len);
    if (old->subject.len == STORE_SP_BYTES) {
        klen = store_membership_key(key, old->subject.data, op->kind,
                                    op->rid.data);
        rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_SUBJECT],
                                        (const char *)key, klen);
    }
    klen = store_record_key(key, op->kind, op->rid.data);
    rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_RECORD],
                                    (const char *)key, klen);
    b->revision++;
    res->version = old->version;
    rc = err_ok(st);
out:
    dossier__store__v1__stored_record__free_unpacked(old, NULL);
    return rc;
}

/* The current definition of @kind as this batch sees it: the newest
 * pending definition (the list is oldest first), else the registry's. */
static const KindSchema *batch_schema(struct store_batch *b, const char *kind)
{
    const KindSchema *k = NULL;
    for (struct pending_kind *p = b->kinds; p; p = p->next)
        if (strcmp(p->schema->kind, kind) == 0)
            k = p->schema;
    return k ? k : schema_registry_get(b->s->schemas, kind);
}

static int apply_define_kind(struct store_batch *b, const Command *cmd,
                             struct store_result *res)
{
    const Dossier__Store__V1__DefineKindOp *op = cmd->define_kind;
    struct dossier_status *st = &res->status;
    const KindSchema *prev;
    struct pending_kind *p;
    KindSchema def;
    uint8_t *buf;
    size_t len;
    int rc;

    if (!op->schema)
        return bad_command(res, "define kind");
    rc = schema_check_definition(op->schema, st);
    if (rc)
        return rc;
    prev = batch_schema(b, op->schema->kind);
    if (prev) {
        rc = schema_check_compatible(prev, op->schema, st);
        if (rc)
            return rc;
    }
    def = *op->schema;
    def.builtin = schema_is_builtin(def.kind);
    def.version = b->revision + 1;
    len = dossier__v1__kind_schema__get_packed_size(&def);
    buf = malloc(len ? len : 1);
    p = calloc(1, sizeof(*p));
    if (!buf || !p) {
        free(buf);
        free(p);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    dossier__v1__kind_schema__pack(&def, buf);
    p->schema = dossier__v1__kind_schema__unpack(NULL, len, buf);
    if (!p->schema) {
        free(buf);
        free(p);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[STORE_SCHEMA], def.kind,
                                 strlen(def.kind), (const char *)buf, len);
    free(buf);
    *b->kinds_tail = p;
    b->kinds_tail = &p->next;
    b->revision++;
    res->version = b->revision;
    return err_ok(st);
}

int store_apply(struct store_batch *b, const Command *cmd,
                struct store_result *res)
{
    int rc;

    memset(res, 0, sizeof(*res));
    switch (cmd->op_case) {
    case DOSSIER__STORE__V1__COMMAND__OP_PUT:
        rc = cmd->put ? apply_put(b, cmd, res) : bad_command(res, "put");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_DELETE:
        rc = cmd->delete_ ? apply_delete(b, cmd, res)
                          : bad_command(res, "delete");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_DEFINE_KIND:
        rc = apply_define_kind(b, cmd, res);
        break;
    default:
        rc = bad_command(res, "unknown operation");
        break;
    }
    if (rc == 0)
        b->applied++;
    return rc;
}
