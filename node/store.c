/* The data directory, RocksDB's layout, reads, checkpoints and installing a
 * snapshot. The layout is documented in store.h; applying commands is in
 * store_apply.c. */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "errors.h"
#include "fileutil.h"

#define MARKER_NAME "DOSSIER"
#define MARKER_TEXT "dossier data directory\nformat 1\n"

static const char *const family_names[STORE_N_FAMILIES] = {
    [STORE_DEFAULT] = "default",   [STORE_SCHEMA] = "schema",
    [STORE_RECORD] = "record",     [STORE_SUBJECT] = "subject",
    [STORE_INDEX] = "index",       [STORE_REQUESTS] = "requests",
    [STORE_RAFT] = "raft",         [STORE_RAFTLOG] = "raftlog",
    [STORE_POLICY] = "policy",     [STORE_CONSENT] = "consent",
    [STORE_AUDIT] = "audit",       [STORE_CHANGES] = "changes",
    [STORE_CHANGE_INDEX] = "change_index", [STORE_LINK] = "link",
    [STORE_CHANGE_RECORD] = "change_record",
};

/* Translates a RocksDB error (freed here) where it enters. RocksDB errors
 * name files and states, never keys or values. */
int store_rdb_error(struct dossier_status *st, char *err, const char *what)
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

size_t store_link_key(uint8_t *out, char dir, const char *a_kind,
                      const uint8_t a_rid[STORE_RID_BYTES], const char *label,
                      const char *b_kind, const uint8_t b_rid[STORE_RID_BYTES])
{
    size_t n = 1;
    out[0] = (uint8_t)dir;
    n += store_record_key(out + n, a_kind, a_rid);
    n += put_name(out + n, label);
    n += store_record_key(out + n, b_kind, b_rid);
    return n;
}

/* Copies the name at *@p (up to a 0x00 before @end) into @out and moves
 * *@p past its 0x00; -1 if there is none or it is empty or too long. */
static int take_name(const uint8_t **p, const uint8_t *end, char *out)
{
    const uint8_t *nul = memchr(*p, 0, (size_t)(end - *p));
    size_t n = nul ? (size_t)(nul - *p) : 0;
    if (!nul || n == 0 || n > SCHEMA_NAME_MAX)
        return -1;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p = nul + 1;
    return 0;
}

int store_link_key_parse(const uint8_t *key, size_t klen,
                         struct store_link_row *out)
{
    const uint8_t *p = key + 1, *end = key + klen;

    if (klen < 1 || (key[0] != 'o' && key[0] != 'i'))
        return DOSSIER_CORRUPT;
    out->dir = (char)key[0];
    if (take_name(&p, end, out->a_kind) ||
        (size_t)(end - p) < STORE_RID_BYTES)
        return DOSSIER_CORRUPT;
    memcpy(out->a_rid, p, STORE_RID_BYTES);
    p += STORE_RID_BYTES;
    if (take_name(&p, end, out->label) || take_name(&p, end, out->b_kind) ||
        (size_t)(end - p) != STORE_RID_BYTES)
        return DOSSIER_CORRUPT;
    memcpy(out->b_rid, p, STORE_RID_BYTES);
    return 0;
}

void store_u64_be(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

uint64_t store_be_u64(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | in[i];
    return v;
}

/* ------------------------------------------------------------------ */
/* Data directory */

/* Checks @dir: *@created is 1 when it is missing (then made, mode 0700) or
 * empty. */
static int dir_prepare(const char *dir, int *created, struct dossier_status *st)
{
    char marker[4096], buf[128];
    struct stat sb;
    ssize_t n;
    int fd;

    *created = 0;
    if (fu_join(marker, sizeof(marker), dir, MARKER_NAME))
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
        if (errno == ENOENT && fu_dir_empty(dir)) {
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

    if (fu_join(path, sizeof(path), dir, MARKER_NAME))
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
    if (fu_fsync(dir) != 0)
        return err_set(st, DOSSIER_IO, "cannot sync %s: %s", dir,
                       strerror(errno));
    return 0;
}

/* ------------------------------------------------------------------ */
/* Open and close */

/* Reads a u64 row of the default family into *@out (0 when absent). */
static int u64_load(struct store *s, const char *key, uint64_t *out,
                    struct dossier_status *st)
{
    char *err = NULL, *v;
    size_t len;

    v = rocksdb_get_cf(s->db, s->ro, s->cf[STORE_DEFAULT], key, strlen(key),
                       &len, &err);
    if (err)
        return store_rdb_error(st, err, "reading the state");
    *out = 0;
    if (!v)
        return 0;
    if (len != 8) {
        rocksdb_free(v);
        return err_set(st, DOSSIER_CORRUPT, "the %s row is corrupt", key);
    }
    *out = store_be_u64((const uint8_t *)v);
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

static int scan_unlocked(struct store *s, enum store_family family,
                         const uint8_t *prefix, size_t prefix_len,
                         const uint8_t *after, size_t after_len,
                         store_scan_cb cb, void *arg,
                         struct dossier_status *st);

static int purpose_cb(void *arg, const uint8_t *key, size_t klen,
                      const uint8_t *val, size_t vlen)
{
    struct store *s = arg;
    Dossier__V1__Purpose *p = dossier__v1__purpose__unpack(NULL, vlen, val);
    (void)key;
    (void)klen;
    if (!p)
        return DOSSIER_CORRUPT;
    policy_set(s->policy, p, p->version);
    dossier__v1__purpose__free_unpacked(p, NULL);
    return 0;
}

void store_audit_head_encode(const struct audit_chain *c,
                             uint8_t out[STORE_AUDIT_HEAD_BYTES])
{
    store_u64_be(out, c->index);
    memcpy(out + 8, c->hash, AUDIT_HASH_BYTES);
    store_u64_be(out + 8 + AUDIT_HASH_BYTES, c->signed_index);
    store_u64_be(out + 16 + AUDIT_HASH_BYTES, (uint64_t)c->signed_ms);
}

static int audit_head_load(struct store *s, struct dossier_status *st)
{
    char *err = NULL, *v;
    size_t len;
    struct audit_chain c;

    audit_chain_init(&c);
    v = rocksdb_get_cf(s->db, s->ro, s->cf[STORE_DEFAULT], "audit_head", 10,
                       &len, &err);
    if (err)
        return store_rdb_error(st, err, "reading the audit head");
    if (v && len != STORE_AUDIT_HEAD_BYTES) {
        rocksdb_free(v);
        return err_set(st, DOSSIER_CORRUPT, "the audit head row is corrupt");
    }
    if (v) {
        const uint8_t *u = (const uint8_t *)v;
        c.index = store_be_u64(u);
        memcpy(c.hash, u + 8, AUDIT_HASH_BYTES);
        c.signed_index = store_be_u64(u + 8 + AUDIT_HASH_BYTES);
        c.signed_ms = (int64_t)store_be_u64(u + 16 + AUDIT_HASH_BYTES);
        rocksdb_free(v);
    }
    pthread_mutex_lock(&s->audit_mu);
    s->audit = c;
    pthread_mutex_unlock(&s->audit_mu);
    return 0;
}

/* Opens RocksDB at @path with every family (made when missing). */
static int db_open(struct store *s, const char *path, rocksdb_t **db,
                   rocksdb_column_family_handle_t **cf,
                   struct dossier_status *st)
{
    const char *names[STORE_N_FAMILIES];
    const rocksdb_options_t *cf_opts[STORE_N_FAMILIES];
    char *err = NULL;

    for (int i = 0; i < STORE_N_FAMILIES; i++) {
        names[i] = family_names[i];
        cf_opts[i] = s->opts;
    }
    *db = rocksdb_open_column_families(s->opts, path, STORE_N_FAMILIES, names,
                                       cf_opts, cf, &err);
    if (err)
        return store_rdb_error(st, err, "cannot open the database");
    return 0;
}

static void db_close(rocksdb_t *db, rocksdb_column_family_handle_t **cf)
{
    if (!db)
        return;
    for (int i = 0; i < STORE_N_FAMILIES; i++)
        if (cf[i]) {
            rocksdb_column_family_handle_destroy(cf[i]);
            cf[i] = NULL;
        }
    rocksdb_close(db);
}

/* Loads what is kept in memory about the open database. */
static int count_row_cb(void *arg, const uint8_t *key, size_t klen,
                        const uint8_t *val, size_t vlen)
{
    (void)key;
    (void)klen;
    (void)val;
    (void)vlen;
    (*(uint64_t *)arg)++;
    return 0;
}

/* The change feed's floor: a store made before the feed existed (no row)
 * has its changes from now on, and remembers that. */
static int changes_floor_load(struct store *s, struct dossier_status *st)
{
    uint64_t floor;
    int rc = u64_load(s, "changes_floor", &floor, st);
    if (rc == 0 && floor == 0) {
        uint8_t v[8];
        char *err = NULL;
        floor = s->revision + 1;
        store_u64_be(v, floor);
        rocksdb_put_cf(s->db, s->wo_sync, s->cf[STORE_DEFAULT],
                       "changes_floor", 13, (const char *)v, 8, &err);
        if (err)
            rc = store_rdb_error(st, err, "writing the change feed's floor");
    }
    __atomic_store_n(&s->changes_floor, floor, __ATOMIC_RELEASE);
    return rc;
}

static int state_load(struct store *s, struct dossier_status *st)
{
    int rc = u64_load(s, "revision", &s->revision, st);
    if (rc == 0)
        rc = u64_load(s, "applied", &s->applied, st);
    if (rc == 0)
        rc = changes_floor_load(s, st);
    if (rc == 0)
        rc = u64_load(s, "req_expired_to", &s->req_expired_to, st);
    if (rc == 0) {
        schema_registry_reset(s->schemas);
        rc = scan_unlocked(s, STORE_SCHEMA, NULL, 0, NULL, 0, schema_cb, s,
                           st);
        if (rc == DOSSIER_CORRUPT)
            err_set(st, rc, "a stored schema is corrupt");
    }
    if (rc == 0) {
        policy_reset(s->policy);
        rc = scan_unlocked(s, STORE_POLICY, (const uint8_t *)"p", 1, NULL, 0,
                           purpose_cb, s, st);
        if (rc == DOSSIER_CORRUPT)
            err_set(st, rc, "a stored purpose is corrupt");
    }
    if (rc == 0)
        rc = audit_head_load(s, st);
    if (rc == 0) {
        uint64_t n = 0;
        rc = scan_unlocked(s, STORE_POLICY, (const uint8_t *)"a", 1, NULL, 0,
                           count_row_cb, &n, st);
        __atomic_store_n(&s->principals, n, __ATOMIC_RELEASE);
    }
    return rc;
}

/* A crash in the middle of store_install() leaves db.old beside db or in
 * place of it: finish the swap if the new copy is complete, else undo. */
static int install_recover(const char *dir, struct dossier_status *st)
{
    char db[4096], old[4096], staged[4096];
    if (fu_join(db, sizeof(db), dir, "db") ||
        fu_join(old, sizeof(old), dir, "db.old") ||
        fu_join(staged, sizeof(staged), dir, "db.new"))
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "path too long");
    if (access(old, F_OK) != 0)
        return 0;
    if (access(db, F_OK) != 0) {
        const char *from = access(staged, F_OK) == 0 ? staged : old;
        if (rename(from, db) != 0)
            return err_set(st, DOSSIER_IO, "cannot recover %s: %s", db,
                           strerror(errno));
        fu_fsync(dir);
    }
    if (access(old, F_OK) == 0)
        fu_rmtree(old);
    return 0;
}

int store_open(const char *dir, size_t block_cache_bytes, struct store **out,
               int *created, struct dossier_status *st)
{
    char dbpath[4096];
    struct store *s;
    int rc;

    *out = NULL;
    rc = dir_prepare(dir, created, st);
    if (rc)
        return rc;
    if (fu_join(dbpath, sizeof(dbpath), dir, "db"))
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "path too long");
    if (!*created && (rc = install_recover(dir, st)) != 0)
        return rc;
    if (!*created && access(dbpath, F_OK) != 0)
        return err_set(st, DOSSIER_CORRUPT,
                       "data directory %s has a " MARKER_NAME
                       " marker but no db/ directory",
                       dir);
    s = calloc(1, sizeof(*s));
    if (!s)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    pthread_rwlock_init(&s->swap, NULL);
    s->block_cache_bytes = block_cache_bytes;
    s->dir = strdup(dir);
    s->db_path = strdup(dbpath);
    s->schemas = schema_registry_new();
    s->policy = policy_new();
    pthread_mutex_init(&s->audit_mu, NULL);
    pthread_mutex_init(&s->revision_mu, NULL);
    pthread_cond_init(&s->revision_cv, NULL);
    s->change_history = STORE_CHANGE_HISTORY_DEFAULT;
    if (!s->dir || !s->db_path || !s->schemas || !s->policy) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto fail;
    }

    s->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->opts, 1);
    rocksdb_options_set_create_missing_column_families(s->opts, 1);
    rocksdb_options_set_paranoid_checks(s->opts, 1);
    /* A damaged write-ahead log stops the start (Corruption: ...) rather
     * than being cut short silently, which would drop acknowledged writes;
     * only a half-written last record (a crash mid-write) is tolerated. */
    rocksdb_options_set_wal_recovery_mode(
        s->opts, rocksdb_tolerate_corrupted_tail_records_recovery);
    /* RocksDB's own LOG sits on the data disk: on a full disk, Debian's
     * build (assertions on) aborts on its second failed write there before
     * the node can halt cleanly. Only fatal lines go to it. */
    rocksdb_options_set_info_log_level(s->opts, 4 /* FATAL */);
    /* Values are ciphertext: compression would only cost CPU. */
    rocksdb_options_set_compression(s->opts, rocksdb_no_compression);
    /* No WAL archive: erased data must leave the disk with its WAL files. */
    rocksdb_options_set_WAL_ttl_seconds(s->opts, 0);
    rocksdb_options_set_WAL_size_limit_MB(s->opts, 0);
    rocksdb_options_set_keep_log_file_num(s->opts, 5);
    rocksdb_options_set_max_log_file_size(s->opts, 16 << 20);
    /* A WAL file lives until every family with data in it is flushed, so
     * a family written once (a purpose defined at start-up) kept every
     * later WAL file: 1.7 GB of WAL in a 2.5 GB node after 600k writes,
     * growing with the load. Past this total the families holding the
     * oldest WAL file are flushed. It also bounds how long sealed data
     * erased since stays in WAL files. */
    rocksdb_options_set_max_total_wal_size(s->opts, (uint64_t)1 << 30);
    rocksdb_options_set_max_background_jobs(s->opts, 2);
    /* A flush writes a whole memtable (64 MiB) and syncs it at the end;
     * that burst held the WAL's syncs, every write's, for up to 150 ms
     * (all clients stalled at the end of each flush; tools/bench traces
     * of 2026-12-07). Syncing the file as it is written spreads the
     * burst. */
    rocksdb_options_set_bytes_per_sync(s->opts, 1 << 20);
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
    /* Partitioned filters and a two-level index: a lookup reads one small
     * partition, not the whole filter block of a large SST. With whole
     * filters, once they outgrew the block cache every Get read a filter
     * block of megabytes again (a loaded node fell to 2k puts/s after a
     * restart, 60% of its time in filter reads). The top level of each
     * stays pinned in the cache. */
    rocksdb_block_based_options_set_index_type(
        s->table, rocksdb_block_based_table_index_type_two_level_index_search);
    rocksdb_block_based_options_set_partition_filters(s->table, 1);
    rocksdb_block_based_options_set_metadata_block_size(s->table, 4096);
    rocksdb_block_based_options_set_pin_top_level_index_and_filter(s->table,
                                                                   1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(
        s->table, 1);
    rocksdb_options_set_block_based_table_factory(s->opts, s->table);
    s->ro = rocksdb_readoptions_create();
    s->wo_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wo_sync, 1);
    s->wo_nosync = rocksdb_writeoptions_create();

    rc = db_open(s, dbpath, &s->db, s->cf, st);
    if (rc) {
        if (rc == DOSSIER_FAILED_PRECONDITION)
            err_set(st, rc,
                    "data directory %s is in use by another process (its "
                    "database lock is held)",
                    dir);
        goto fail;
    }
    if (*created) {
        rc = marker_write(dir, st);
        if (rc)
            goto fail;
    }
    rc = state_load(s, st);
    if (rc)
        goto fail;
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
    db_close(s->db, s->cf);
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
    policy_free(s->policy);
    free(s->erased);
    pthread_mutex_destroy(&s->audit_mu);
    pthread_mutex_destroy(&s->revision_mu);
    pthread_cond_destroy(&s->revision_cv);
    pthread_rwlock_destroy(&s->swap);
    free(s->dir);
    free(s->db_path);
    free(s);
}

struct schema_registry *store_schemas(struct store *s)
{
    return s->schemas;
}

struct policy *store_policy(struct store *s)
{
    return s->policy;
}

void store_audit_head(struct store *s, struct audit_chain *out)
{
    pthread_mutex_lock(&s->audit_mu);
    *out = s->audit;
    pthread_mutex_unlock(&s->audit_mu);
}

uint64_t store_revision(struct store *s)
{
    return __atomic_load_n(&s->revision, __ATOMIC_ACQUIRE);
}

uint64_t store_applied(struct store *s)
{
    return __atomic_load_n(&s->applied, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------------ */
/* The change feed */

void store_set_change_history(struct store *s, uint64_t revisions)
{
    __atomic_store_n(&s->change_history, revisions ? revisions : 1,
                     __ATOMIC_RELEASE);
}

uint64_t store_change_floor(struct store *s)
{
    return __atomic_load_n(&s->changes_floor, __ATOMIC_ACQUIRE);
}

uint64_t store_wait_revision(struct store *s, uint64_t seen, int timeout_ms)
{
    struct timespec until;
    uint64_t rev;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->revision_mu);
    while ((rev = store_revision(s)) == seen &&
           pthread_cond_timedwait(&s->revision_cv, &s->revision_mu,
                                  &until) == 0)
        ;
    pthread_mutex_unlock(&s->revision_mu);
    return store_revision(s);
}

size_t store_change_index_key(const Dossier__Store__V1__ChangeEntry *e,
                              const uint8_t key[12], uint8_t *out,
                              enum store_family *family)
{
    size_t len;

    if (e->subject.len == STORE_SP_BYTES &&
        e->type != DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_ERASE) {
        *family = STORE_CHANGE_INDEX;
        memcpy(out, e->subject.data, STORE_SP_BYTES);
        memcpy(out + STORE_SP_BYTES, key, 12);
        len = STORE_SP_BYTES + 12;
        if (e->rid.len == STORE_RID_BYTES) {
            memcpy(out + len, e->rid.data, STORE_RID_BYTES);
            len += STORE_RID_BYTES;
        }
        return len;
    }
    if (e->rid.len == STORE_RID_BYTES && e->subject.len != STORE_SP_BYTES) {
        *family = STORE_CHANGE_RECORD;
        memcpy(out, e->rid.data, STORE_RID_BYTES);
        memcpy(out + STORE_RID_BYTES, key, 12);
        return STORE_RID_BYTES + 12;
    }
    return 0;
}

/* Adds to @wb the deletion of the index rows of the changes from revision
 * @floor up to @to (excluded), found from those changes themselves (each
 * names its subject and record): work in proportion to what is trimmed.
 * (It was one pass over both index families per trim, which also walked
 * every deletion not yet compacted away: on a node with a million writes
 * behind it, a tenth of the Raft loop's time.) A subject merged into
 * another has copies of its rows under that subject (and further up, for
 * a chain of merges): they go too. */
static void change_index_trim(struct store *s, rocksdb_writebatch_t *wb,
                              uint64_t floor, uint64_t to)
{
    uint8_t from_key[12], to_key[12];
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it;

    store_change_key(from_key, floor, 0);
    store_change_key(to_key, to, 0);
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)to_key,
                                                sizeof(to_key));
    it = rocksdb_create_iterator_cf(s->db, ro, s->cf[STORE_CHANGES]);
    for (rocksdb_iter_seek(it, (const char *)from_key, sizeof(from_key));
         rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        Dossier__Store__V1__ChangeEntry *e;
        uint8_t ix[STORE_CHANGE_INDEX_KEY_MAX];
        enum store_family family;
        size_t ixlen;
        if (klen != 12)
            continue;
        e = dossier__store__v1__change_entry__unpack(NULL, vlen,
                                                     (const uint8_t *)v);
        if (!e)
            continue;
        ixlen = store_change_index_key(e, (const uint8_t *)k, ix, &family);
        dossier__store__v1__change_entry__free_unpacked(e, NULL);
        if (ixlen == 0)
            continue;
        rocksdb_writebatch_delete_cf(wb, s->cf[family], (const char *)ix,
                                     ixlen);
        if (family != STORE_CHANGE_INDEX)
            continue;
        /* A subject's row has copies under the subjects it was merged
         * into. */
        for (int hop = 0; hop < STORE_ALIAS_HOPS; hop++) {
            struct dossier_status st;
            int found;
            if (store_subject_alias(s, NULL, ix, &found, &st) != 0 || !found)
                break;
            rocksdb_writebatch_delete_cf(wb, s->cf[STORE_CHANGE_INDEX],
                                         (const char *)ix, ixlen);
        }
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
}

void store_changes_committed(struct store *s, uint64_t revision)
{
    uint64_t hist = __atomic_load_n(&s->change_history, __ATOMIC_ACQUIRE);
    uint64_t floor = store_change_floor(s);

    pthread_mutex_lock(&s->revision_mu);
    pthread_cond_broadcast(&s->revision_cv);
    pthread_mutex_unlock(&s->revision_mu);
    /* Trim once the feed holds a 64th more than it keeps: one range
     * deletion now and then, not one per write, but small, since the
     * trim reads every change it drops (for its index rows) on the Raft
     * loop, on every replica at once; an eighth of the default history
     * (12,500 changes) held every write for 70-100 ms. The floor moves
     * first, so a reader that finds it past where it read knows it may
     * have missed something; if the deletion fails, nothing was deleted
     * and the floor moves back, so the next commit tries again from the
     * same place (a reader that saw the higher floor meanwhile was only
     * refused early). */
    if (revision >= floor + hist + (hist >= 64 ? hist / 64 : 1)) {
        uint64_t new_floor = revision - hist + 1;
        uint8_t from[12], to[12], v[8];
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        char *err = NULL;
        int failed;

        store_change_key(from, floor, 0);
        store_change_key(to, new_floor, 0);
        store_u64_be(v, new_floor);
        __atomic_store_n(&s->changes_floor, new_floor, __ATOMIC_RELEASE);
        rocksdb_writebatch_put_cf(wb, s->cf[STORE_DEFAULT], "changes_floor",
                                  13, (const char *)v, 8);
        /* The index rows first: they are found from the rows to go. */
        change_index_trim(s, wb, floor, new_floor);
        rocksdb_writebatch_delete_range_cf(wb, s->cf[STORE_CHANGES],
                                           (const char *)from, sizeof(from),
                                           (const char *)to, sizeof(to));
        if (s->trim_faults > 0) {
            s->trim_faults--;
            failed = 1;
        } else {
            rocksdb_write(s->db, s->wo_nosync, wb, &err);
            failed = err != NULL;
            free(err);
        }
        rocksdb_writebatch_destroy(wb);
        if (failed)
            __atomic_store_n(&s->changes_floor, floor, __ATOMIC_RELEASE);
    }
}

void store_change_key(uint8_t out[12], uint64_t rev, uint32_t seq)
{
    store_u64_be(out, rev);
    out[8] = (uint8_t)(seq >> 24);
    out[9] = (uint8_t)(seq >> 16);
    out[10] = (uint8_t)(seq >> 8);
    out[11] = (uint8_t)seq;
}

struct changes_read {
    struct store_change *out;
    size_t n, max;
    uint64_t last;
};

static int change_row_cb(void *arg, const uint8_t *key, size_t klen,
                         const uint8_t *val, size_t vlen)
{
    struct changes_read *r = arg;
    struct store_change *c = &r->out[r->n];

    if (klen != 12)
        return DOSSIER_CORRUPT;
    if (r->n == r->max || store_be_u64(key) > r->last)
        return 1;
    c->rev = store_be_u64(key);
    c->seq = (uint32_t)key[8] << 24 | (uint32_t)key[9] << 16 |
             (uint32_t)key[10] << 8 | key[11];
    c->e = dossier__store__v1__change_entry__unpack(NULL, vlen, val);
    if (!c->e)
        return DOSSIER_CORRUPT;
    r->n++;
    return 0;
}

void store_changes_free(struct store_change *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dossier__store__v1__change_entry__free_unpacked(c[i].e, NULL);
}

int store_changes_read(struct store *s, uint64_t rev, uint32_t seq,
                       uint64_t last, size_t max, struct store_change *out,
                       size_t *n, struct dossier_status *st)
{
    struct changes_read r = {out, 0, max, last};
    uint8_t after[12];
    int rc, from_start = rev <= 1 && seq == 0;

    /* store_scan starts after a key: the one just before (rev, seq). */
    if (seq > 0)
        store_change_key(after, rev, seq - 1);
    else
        store_change_key(after, rev - 1, UINT32_MAX);
    rc = store_scan(s, STORE_CHANGES, NULL, 0, from_start ? NULL : after,
                    from_start ? 0 : sizeof(after), change_row_cb, &r, st);
    if (rc == 1)
        rc = 0;
    if (rc == DOSSIER_CORRUPT)
        err_set(st, rc, "a change feed entry is corrupt");
    if (rc) {
        store_changes_free(out, r.n);
        r.n = 0;
    }
    *n = r.n;
    return rc ? rc : err_ok(st);
}

uint64_t store_property_sum(struct store *s, const char *name)
{
    uint64_t sum = 0, v;
    pthread_rwlock_rdlock(&s->swap);
    for (int i = 0; s->db && i < STORE_N_FAMILIES; i++)
        if (s->cf[i] &&
            rocksdb_property_int_cf(s->db, s->cf[i], name, &v) == 0)
            sum += v;
    pthread_rwlock_unlock(&s->swap);
    return sum;
}

void store_raw(struct store *s, struct store_raw *out)
{
    out->db = s->db;
    out->cf = (void *const *)s->cf;
    out->wo_sync = s->wo_sync;
    out->wo_nosync = s->wo_nosync;
    out->ro = s->ro;
}

int store_checkpoint(struct store *s, const char *dir,
                     struct dossier_status *st)
{
    char *err = NULL;
    rocksdb_checkpoint_t *cp;
    /* Backups call this from their own thread: not while an erasure
     * reopens the database. */
    pthread_rwlock_rdlock(&s->swap);
    if (!s->db) {
        pthread_rwlock_unlock(&s->swap);
        return err_set(st, DOSSIER_UNAVAILABLE, "the store is closed (the "
                       "node halted after a storage failure)");
    }
    cp = rocksdb_checkpoint_object_create(s->db, &err);
    if (!err) {
        /* 0: flush the memtables first, so the copy needs no WAL replay. */
        rocksdb_checkpoint_create(cp, dir, 0, &err);
        rocksdb_checkpoint_object_destroy(cp);
    }
    pthread_rwlock_unlock(&s->swap);
    if (err)
        return store_rdb_error(st, err, "cannot make a checkpoint");
    return 0;
}

static void compact_forced_db(rocksdb_t *db,
                              rocksdb_column_family_handle_t *cf,
                              const uint8_t *from, size_t flen,
                              const uint8_t *to, size_t tlen);

int store_install(struct store *s, const char *staged,
                  int (*prepare)(void *arg, const struct store_raw *raw,
                                 struct dossier_status *st),
                  void *arg, struct dossier_status *st)
{
    rocksdb_t *sdb = NULL;
    rocksdb_column_family_handle_t *scf[STORE_N_FAMILIES] = {0};
    char newp[4096], oldp[4096];
    struct store_raw raw;
    int rc;

    if (fu_join(newp, sizeof(newp), s->dir, "db.new") ||
        fu_join(oldp, sizeof(oldp), s->dir, "db.old"))
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "path too long");
    /* A checkpoint always has its CURRENT file; opening a directory
     * without one would create an empty database in its place. */
    {
        char cur[4200];
        struct stat sb;
        if (fu_join(cur, sizeof(cur), staged, "CURRENT") ||
            stat(cur, &sb) != 0)
            return err_set(st, DOSSIER_CORRUPT,
                           "the staged snapshot is not a database");
    }
    /* Give the copy this node's Raft state before it becomes the
     * database: the sender's term and vote must never be taken for ours. */
    rc = db_open(s, staged, &sdb, scf, st);
    if (rc) {
        if (rc == DOSSIER_IO)
            st->code = rc = DOSSIER_CORRUPT;
        return rc;
    }
    raw = (struct store_raw){sdb, (void *const *)scf, s->wo_sync,
                             s->wo_nosync, s->ro};
    rc = prepare(arg, &raw, st);
    /* The copy's raft log files are the sender's, holding entries it had
     * not compacted away when it took the checkpoint: sealed writes and
     * wrapped keys of subjects it may have erased since (before its own
     * log compaction). prepare deleted them; their bytes leave the files
     * now, before this node can report an erasure finished. The copy is
     * opened afresh next, so no older MANIFEST names them either. */
    if (rc == 0)
        compact_forced_db(sdb, scf[STORE_RAFTLOG], NULL, 0, NULL, 0);
    db_close(sdb, scf);
    if (rc)
        return rc;
    if (strcmp(staged, newp) != 0) {
        fu_rmtree(newp);
        if (rename(staged, newp) != 0)
            return err_set(st, DOSSIER_IO, "cannot move %s: %s", staged,
                           strerror(errno));
    }

    pthread_rwlock_wrlock(&s->swap);
    db_close(s->db, s->cf);
    s->db = NULL;
    if (rename(s->db_path, oldp) != 0 || rename(newp, s->db_path) != 0) {
        rc = err_set(st, DOSSIER_IO, "cannot swap in the snapshot: %s",
                     strerror(errno));
        install_recover(s->dir, st);
    }
    fu_fsync(s->dir);
    if (db_open(s, s->db_path, &s->db, s->cf, st) != 0 && rc == 0)
        rc = st->code;
    if (rc == 0)
        rc = state_load(s, st);
    pthread_rwlock_unlock(&s->swap);
    fu_rmtree(oldp);
    return rc;
}

int store_members(struct store *s,
                  void (*cb)(void *arg, uint64_t id, const char *address),
                  void *arg, struct dossier_status *st)
{
    rocksdb_iterator_t *it;
    char *err = NULL;

    pthread_rwlock_rdlock(&s->swap);
    it = rocksdb_create_iterator_cf(s->db, s->ro, s->cf[STORE_DEFAULT]);
    for (rocksdb_iter_seek(it, "member/", 7); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        Dossier__Store__V1__Member *m;
        if (klen != 15 || memcmp(k, "member/", 7) != 0)
            break;
        m = dossier__store__v1__member__unpack(NULL, vlen, (const uint8_t *)v);
        if (m) {
            cb(arg, m->id, m->address);
            dossier__store__v1__member__free_unpacked(m, NULL);
        }
    }
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    pthread_rwlock_unlock(&s->swap);
    if (err)
        return store_rdb_error(st, err, "reading the members");
    return 0;
}

int store_meta_get(struct store *s, Dossier__Store__V1__Meta **out,
                   struct dossier_status *st)
{
    int rc;

    pthread_rwlock_rdlock(&s->swap);
    rc = store_get_pb(s, NULL, STORE_DEFAULT, (const uint8_t *)"meta", 4,
                      &dossier__store__v1__meta__descriptor, "meta record",
                      (ProtobufCMessage **)out, st);
    pthread_rwlock_unlock(&s->swap);
    if (rc)
        return rc;
    if (!*out)
        return err_set(st, DOSSIER_NOT_FOUND, "no meta record");
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
        return store_rdb_error(st, err, "writing the meta record");
    return 0;
}

/* Reads @key of @family, through @b's pending writes when @b is set. */
int store_get_raw(struct store *s, struct store_batch *b,
                   enum store_family family, const uint8_t *key, size_t klen,
                   char **val, size_t *vlen, struct dossier_status *st)
{
    char *err = NULL;
    *val = NULL;
    if (!s->db) /* a reopen failed and the node halted */
        return err_set(st, DOSSIER_UNAVAILABLE, "the store is closed (the "
                       "node halted after a storage failure)");
    if (b)
        *val = rocksdb_writebatch_wi_get_from_batch_and_db_cf(
            b->wb, s->db, s->ro, s->cf[family], (const char *)key, klen, vlen,
            &err);
    else
        *val = rocksdb_get_cf(s->db, s->ro, s->cf[family], (const char *)key,
                              klen, vlen, &err);
    if (err)
        return store_rdb_error(st, err, "read failed");
    return 0;
}

int store_get_pb(struct store *s, struct store_batch *b,
                 enum store_family family, const uint8_t *key, size_t klen,
                 const ProtobufCMessageDescriptor *desc, const char *what,
                 ProtobufCMessage **out, struct dossier_status *st)
{
    size_t len;
    char *v;
    int rc = store_get_raw(s, b, family, key, klen, &v, &len, st);

    *out = NULL;
    if (rc || !v)
        return rc;
    *out = protobuf_c_message_unpack(desc, NULL, len, (const uint8_t *)v);
    rocksdb_free(v);
    if (!*out)
        return err_set(st, DOSSIER_CORRUPT, "the %s is corrupt", what);
    return 0;
}

int store_read_record(struct store *s, struct store_batch *b,
                       const char *kind, const uint8_t *rid,
                       StoredRecord **out, struct dossier_status *st)
{
    uint8_t key[STORE_KEY_MAX];
    size_t klen = store_record_key(key, kind, rid), vlen;
    char *v;
    int rc;

    *out = NULL;
    rc = store_get_raw(s, b, STORE_RECORD, key, klen, &v, &vlen, st);
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

int store_read_subject_key(struct store *s, struct store_batch *b,
                            const uint8_t *sp, SubjectKey **out,
                            struct dossier_status *st)
{
    size_t vlen;
    char *v;
    int rc;

    *out = NULL;
    rc = store_get_raw(s, b, STORE_SUBJECT, sp, STORE_SP_BYTES, &v, &vlen, st);
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
    int rc;
    pthread_rwlock_rdlock(&s->swap);
    rc = store_read_record(s, NULL, kind, rid, out, st);
    pthread_rwlock_unlock(&s->swap);
    return rc;
}

int store_subject_key_get(struct store *s, const uint8_t sp[STORE_SP_BYTES],
                          SubjectKey **out, struct dossier_status *st)
{
    int rc;
    pthread_rwlock_rdlock(&s->swap);
    rc = store_read_subject_key(s, NULL, sp, out, st);
    pthread_rwlock_unlock(&s->swap);
    return rc;
}

static size_t prefix_successor(const uint8_t *p, size_t len, uint8_t *out);

/* Reads @key of @family under the swap lock into *@v (NULL: absent). */
static int get_locked(struct store *s, enum store_family family,
                      const uint8_t *key, size_t klen, char **v, size_t *vlen,
                      struct dossier_status *st)
{
    int rc;
    pthread_rwlock_rdlock(&s->swap);
    rc = store_get_raw(s, NULL, family, key, klen, v, vlen, st);
    pthread_rwlock_unlock(&s->swap);
    return rc;
}

int store_consent_get(struct store *s, const uint8_t sp[STORE_SP_BYTES],
                      const char *purpose,
                      Dossier__Store__V1__StoredConsent **out,
                      struct dossier_status *st)
{
    uint8_t key[STORE_SP_BYTES + 1 + POLICY_NAME_MAX];
    size_t n = strlen(purpose), vlen;
    char *v;
    int rc;

    *out = NULL;
    if (n > POLICY_NAME_MAX)
        return err_set(st, DOSSIER_NOT_FOUND, "no such purpose");
    memcpy(key, sp, STORE_SP_BYTES);
    key[STORE_SP_BYTES] = 'c';
    memcpy(key + STORE_SP_BYTES + 1, purpose, n);
    rc = get_locked(s, STORE_CONSENT, key, STORE_SP_BYTES + 1 + n, &v, &vlen,
                    st);
    if (rc)
        return rc;
    if (!v)
        return err_set(st, DOSSIER_NOT_FOUND, "no consent recorded");
    *out = dossier__store__v1__stored_consent__unpack(NULL, vlen,
                                                      (const uint8_t *)v);
    rocksdb_free(v);
    if (!*out)
        return err_set(st, DOSSIER_CORRUPT, "a consent record is corrupt");
    return 0;
}

int store_restricted(struct store *s, const uint8_t sp[STORE_SP_BYTES],
                     struct dossier_status *st)
{
    uint8_t key[STORE_SP_BYTES + 1];
    size_t vlen;
    char *v;
    int rc;

    memcpy(key, sp, STORE_SP_BYTES);
    key[STORE_SP_BYTES] = 'r';
    rc = get_locked(s, STORE_CONSENT, key, sizeof(key), &v, &vlen, st);
    if (rc)
        return rc;
    rocksdb_free(v);
    return v != NULL;
}

int store_erasure_get(struct store *s, const uint8_t sp[STORE_SP_BYTES],
                      Dossier__Store__V1__ErasureRecord **out,
                      struct dossier_status *st)
{
    uint8_t key[1 + STORE_SP_BYTES];
    size_t vlen;
    char *v;
    int rc;

    *out = NULL;
    key[0] = 'e';
    memcpy(key + 1, sp, STORE_SP_BYTES);
    rc = get_locked(s, STORE_POLICY, key, sizeof(key), &v, &vlen, st);
    if (rc)
        return rc;
    if (!v)
        return err_set(st, DOSSIER_NOT_FOUND, "not erased");
    *out = dossier__store__v1__erasure_record__unpack(NULL, vlen,
                                                      (const uint8_t *)v);
    rocksdb_free(v);
    if (!*out)
        return err_set(st, DOSSIER_CORRUPT, "an erasure record is corrupt");
    return 0;
}

struct message_list {
    const ProtobufCMessageDescriptor *desc;
    ProtobufCMessage **m;
    size_t n, cap;
};

static int message_row_cb(void *arg, const uint8_t *key, size_t klen,
                          const uint8_t *val, size_t vlen)
{
    struct message_list *l = arg;
    (void)key;
    (void)klen;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        ProtobufCMessage **g = realloc(l->m, cap * sizeof(*g));
        if (!g)
            return DOSSIER_NOMEM;
        l->m = g;
        l->cap = cap;
    }
    l->m[l->n] = protobuf_c_message_unpack(l->desc, NULL, vlen, val);
    if (!l->m[l->n])
        return DOSSIER_CORRUPT;
    l->n++;
    return 0;
}

int store_scan_messages(struct store *s, enum store_family family,
                        const uint8_t *prefix, size_t plen,
                        const ProtobufCMessageDescriptor *desc,
                        ProtobufCMessage ***out, size_t *n,
                        struct dossier_status *st)
{
    struct message_list l = {desc, NULL, 0, 0};
    int rc = store_scan(s, family, prefix, plen, NULL, 0, message_row_cb, &l,
                        st);
    if (rc == DOSSIER_NOMEM || rc == DOSSIER_CORRUPT)
        err_set(st, rc, rc == DOSSIER_NOMEM ? "out of memory"
                                            : "a stored %s does not decode",
                desc->short_name);
    if (rc) {
        store_messages_free(l.m, l.n);
        l.m = NULL;
        l.n = 0;
    }
    *out = l.m;
    *n = l.n;
    return rc;
}

void store_messages_free(ProtobufCMessage **m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        protobuf_c_message_free_unpacked(m[i], NULL);
    free(m);
}

uint64_t store_principal_count(struct store *s)
{
    return __atomic_load_n(&s->principals, __ATOMIC_ACQUIRE);
}

#define DAY_MS (24LL * 3600 * 1000)

int store_record_past_retention(const KindSchema *k, const StoredRecord *r,
                                int64_t now)
{
    int64_t base;
    if (!k || k->record_retention_days == 0)
        return 0;
    base = k->record_retention_base ==
                   DOSSIER__V1__RETENTION_BASE__RETENTION_BASE_CREATED
               ? r->created_at_ms
               : r->updated_at_ms;
    return base + (int64_t)k->record_retention_days * DAY_MS <= now;
}

int store_field_past_retention(const FieldSchema *f, const StoredRecord *r,
                               int64_t now)
{
    return f && f->retention_days > 0 &&
           r->updated_at_ms + (int64_t)f->retention_days * DAY_MS <= now;
}

int store_bootstrapped(struct store *s)
{
    struct dossier_status st;
    size_t vlen;
    char *v;

    if (store_principal_count(s) > 0)
        return 1;
    if (get_locked(s, STORE_DEFAULT, (const uint8_t *)STORE_BOOTSTRAPPED_KEY,
                   sizeof(STORE_BOOTSTRAPPED_KEY) - 1, &v, &vlen, &st) != 0)
        return 1;
    rocksdb_free(v);
    return v != NULL;
}

int store_principal_by_hash(struct store *s, const uint8_t hash[32],
                            Dossier__Store__V1__StoredPrincipal **out,
                            struct dossier_status *st)
{
    uint8_t key[33];
    char *v, name[80];
    size_t vlen;
    int rc;

    *out = NULL;
    key[0] = 't';
    memcpy(key + 1, hash, 32);
    rc = get_locked(s, STORE_POLICY, key, sizeof(key), &v, &vlen, st);
    if (rc)
        return rc;
    if (!v)
        return err_set(st, DOSSIER_NOT_FOUND, "no such token");
    if (vlen >= sizeof(name)) {
        rocksdb_free(v);
        return err_set(st, DOSSIER_CORRUPT, "a token row is corrupt");
    }
    memcpy(name, v, vlen);
    name[vlen] = '\0';
    rocksdb_free(v);
    return store_principal_get(s, name, out, st);
}

int store_principal_get(struct store *s, const char *name,
                        Dossier__Store__V1__StoredPrincipal **out,
                        struct dossier_status *st)
{
    uint8_t key[1 + 80];
    size_t n = strlen(name), vlen;
    char *v;
    int rc;

    *out = NULL;
    if (n == 0 || n > 64)
        return err_set(st, DOSSIER_NOT_FOUND, "no such principal");
    key[0] = 'a';
    memcpy(key + 1, name, n);
    rc = get_locked(s, STORE_POLICY, key, n + 1, &v, &vlen, st);
    if (rc)
        return rc;
    if (!v)
        return err_set(st, DOSSIER_NOT_FOUND, "no principal %s", name);
    *out = dossier__store__v1__stored_principal__unpack(NULL, vlen,
                                                        (const uint8_t *)v);
    rocksdb_free(v);
    if (!*out)
        return err_set(st, DOSSIER_CORRUPT, "principal %s is corrupt", name);
    return 0;
}

int store_request_get(struct store *s, const char *id,
                      Dossier__Store__V1__TrackedRequest **out,
                      struct dossier_status *st)
{
    uint8_t key[1 + 64];
    size_t n = strlen(id), vlen;
    char *v;
    int rc;

    *out = NULL;
    if (n == 0 || n > 64)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "bad request id");
    key[0] = 'q';
    memcpy(key + 1, id, n);
    rc = get_locked(s, STORE_POLICY, key, n + 1, &v, &vlen, st);
    if (rc)
        return rc;
    if (!v)
        return err_set(st, DOSSIER_NOT_FOUND, "no tracked request %s", id);
    *out = dossier__store__v1__tracked_request__unpack(NULL, vlen,
                                                       (const uint8_t *)v);
    rocksdb_free(v);
    if (!*out)
        return err_set(st, DOSSIER_CORRUPT, "tracked request %s is corrupt",
                       id);
    return 0;
}

/* Compacts [@from, @to) of @family (NULL: open end) down to the last
 * level, rewriting even files already there, so deleted bytes go. */
static void compact_forced_db(rocksdb_t *db,
                              rocksdb_column_family_handle_t *cf,
                              const uint8_t *from, size_t flen,
                              const uint8_t *to, size_t tlen)
{
    rocksdb_compactoptions_t *co = rocksdb_compactoptions_create();
    rocksdb_compactoptions_set_bottommost_level_compaction(co, 2 /* force */);
    rocksdb_compactoptions_set_exclusive_manual_compaction(co, 0);
    rocksdb_compact_range_cf_opt(db, cf, co, (const char *)from, flen,
                                 (const char *)to, tlen);
    rocksdb_compactoptions_destroy(co);
}

static void compact_forced(struct store *s, enum store_family family,
                           const uint8_t *from, size_t flen, const uint8_t *to,
                           size_t tlen)
{
    compact_forced_db(s->db, s->cf[family], from, flen, to, tlen);
}

int store_erase_mark(struct store *s, const uint8_t sp[STORE_SP_BYTES])
{
    uint8_t(*e)[STORE_SP_BYTES] =
        realloc(s->erased, (s->n_erased + 1) * sizeof(*e));
    if (!e)
        return DOSSIER_NOMEM;
    memcpy(e[s->n_erased], sp, STORE_SP_BYTES);
    s->erased = e;
    s->n_erased++;
    return 0;
}

int store_erase_finish(struct store *s, struct dossier_status *st)
{
    rocksdb_flushoptions_t *fo;
    char *err = NULL;

    if (s->n_erased == 0)
        return err_ok(st);
    /* Every family, so that no memtable still needs the WAL files that
     * carried the erased writes: RocksDB then deletes them. */
    fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    for (int i = 0; i < STORE_N_FAMILIES && !err; i++)
        rocksdb_flush_cf(s->db, fo, s->cf[i], &err);
    rocksdb_flushoptions_destroy(fo);
    if (err)
        return store_rdb_error(st, err, "flushing after an erasure");
    /* The subject's ranges hold only deletions now; the records and index
     * entries were elsewhere, and the raft log carried the sealed writes:
     * those families are compacted whole (they are what erasure is for;
     * the cost is a rewrite of their files). */
    for (size_t i = 0; i < s->n_erased; i++) {
        uint8_t to[STORE_SP_BYTES];
        size_t tlen = prefix_successor(s->erased[i], STORE_SP_BYTES, to);
        compact_forced(s, STORE_SUBJECT, s->erased[i], STORE_SP_BYTES,
                       tlen ? to : NULL, tlen);
        compact_forced(s, STORE_CONSENT, s->erased[i], STORE_SP_BYTES,
                       tlen ? to : NULL, tlen);
    }
    for (size_t i = 0; i < s->n_erased; i++) {
        uint8_t to[STORE_SP_BYTES];
        size_t tlen = prefix_successor(s->erased[i], STORE_SP_BYTES, to);
        compact_forced(s, STORE_CHANGE_INDEX, s->erased[i], STORE_SP_BYTES,
                       tlen ? to : NULL, tlen);
    }
    compact_forced(s, STORE_RECORD, NULL, 0, NULL, 0);
    compact_forced(s, STORE_INDEX, NULL, 0, NULL, 0);
    compact_forced(s, STORE_CHANGES, NULL, 0, NULL, 0);
    compact_forced(s, STORE_LINK, NULL, 0, NULL, 0);
    compact_forced(s, STORE_REQUESTS, NULL, 0, NULL, 0);
    /* Merges pending undo keep what they changed, sealed as stored, in
     * the policy family: an erasure deletes those of its subjects. */
    compact_forced(s, STORE_POLICY, NULL, 0, NULL, 0);
    s->n_erased = 0;
    return err_ok(st);
}

int store_rotation_purge(struct store *s, struct dossier_status *st)
{
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    char *err = NULL;

    /* As after an erasure: no memtable may still need a WAL file that
     * carried an old wrap, and the families holding wrapped keys (subject
     * keys, the meta record, and in the policy family the keys pending
     * merges keep for an undo) are rewritten whole, so that the versions
     * overwritten by the rotation leave the SST files. */
    rocksdb_flushoptions_set_wait(fo, 1);
    for (int i = 0; i < STORE_N_FAMILIES && !err; i++)
        rocksdb_flush_cf(s->db, fo, s->cf[i], &err);
    rocksdb_flushoptions_destroy(fo);
    if (err)
        return store_rdb_error(st, err, "flushing after a key rotation");
    compact_forced(s, STORE_SUBJECT, NULL, 0, NULL, 0);
    compact_forced(s, STORE_DEFAULT, NULL, 0, NULL, 0);
    compact_forced(s, STORE_POLICY, NULL, 0, NULL, 0);
    return err_ok(st);
}

int store_compact_raft_log(struct store *s, struct dossier_status *st)
{
    int rc;
    compact_forced(s, STORE_RAFTLOG, NULL, 0, NULL, 0);
    /* RocksDB's MANIFEST is a log of every file it ever made, with each
     * file's first and last key, and index keys hold blind indexes: only a
     * new MANIFEST, written when the database opens, forgets the files
     * the compactions dropped. Readers wait meanwhile (tens of ms). */
    pthread_rwlock_wrlock(&s->swap);
    db_close(s->db, s->cf);
    s->db = NULL;
    rc = db_open(s, s->db_path, &s->db, s->cf, st);
    pthread_rwlock_unlock(&s->swap);
    return rc ? rc : err_ok(st);
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
    int rc;
    pthread_rwlock_rdlock(&s->swap);
    rc = scan_unlocked(s, family, prefix, prefix_len, after, after_len, cb,
                       arg, st);
    pthread_rwlock_unlock(&s->swap);
    return rc;
}

static int scan_unlocked(struct store *s, enum store_family family,
                         const uint8_t *prefix, size_t prefix_len,
                         const uint8_t *after, size_t after_len,
                         store_scan_cb cb, void *arg,
                         struct dossier_status *st)
{
    uint8_t upper[STORE_KEY_MAX];
    size_t upper_len = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it;
    char *err = NULL;
    int rc = 0;

    if (!s->db) { /* a reopen failed and the node halted */
        rocksdb_readoptions_destroy(ro);
        return err_set(st, DOSSIER_UNAVAILABLE, "the store is closed (the "
                       "node halted after a storage failure)");
    }
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
        rc = store_rdb_error(st, err, "scan failed");
    else if (err)
        rocksdb_free(err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Links: a record's "o" rows, read with the record at one moment. */

void store_links_free(struct store_link *l, size_t n)
{
    for (size_t i = 0; l && i < n; i++)
        free(l[i].sealed_id);
    free(l);
}

int store_record_links(struct store *s, const char *kind,
                       const uint8_t rid[STORE_RID_BYTES], StoredRecord **rec,
                       struct store_link **links, size_t *n,
                       struct dossier_status *st)
{
    uint8_t prefix[1 + SCHEMA_NAME_MAX + 1 + STORE_RID_BYTES];
    uint8_t upper[sizeof(prefix)], key[STORE_KEY_MAX];
    size_t plen, ulen, klen, vlen, cap = 0;
    const rocksdb_snapshot_t *snap = NULL;
    rocksdb_readoptions_t *ro = NULL;
    rocksdb_iterator_t *it = NULL;
    StoredRecord *fresh = NULL;
    struct store_link_row row;
    char *err = NULL, *v = NULL;
    int rc = 0;

    *links = NULL;
    *n = 0;
    *rec = NULL;
    prefix[0] = 'o';
    plen = 1 + store_record_key(prefix + 1, kind, rid);
    ulen = prefix_successor(prefix, plen, upper);
    pthread_rwlock_rdlock(&s->swap);
    if (!s->db) {
        rc = err_set(st, DOSSIER_UNAVAILABLE, "the store is closed (the "
                     "node halted after a storage failure)");
        goto out;
    }
    /* One snapshot for the record and its rows: a Put applied meanwhile
     * shows whole or not at all. */
    snap = rocksdb_create_snapshot(s->db);
    ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(ro, snap);
    klen = store_record_key(key, kind, rid);
    v = rocksdb_get_cf(s->db, ro, s->cf[STORE_RECORD], (const char *)key,
                       klen, &vlen, &err);
    if (err) {
        rc = store_rdb_error(st, err, "read failed");
        goto out;
    }
    if (!v) {
        rc = err_set(st, DOSSIER_NOT_FOUND, "no record of kind '%s' with "
                     "that id",
                     kind);
        goto out;
    }
    fresh = dossier__store__v1__stored_record__unpack(NULL, vlen,
                                                      (const uint8_t *)v);
    if (!fresh) {
        rc = err_set(st, DOSSIER_CORRUPT, "a stored record is corrupt");
        goto out;
    }
    if (ulen)
        rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)upper,
                                                    ulen);
    it = rocksdb_create_iterator_cf(s->db, ro, s->cf[STORE_LINK]);
    for (rocksdb_iter_seek(it, (const char *)prefix, plen);
         rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        struct store_link *l;
        if (klen < plen || memcmp(k, prefix, plen) != 0)
            break;
        if (*n == cap) {
            size_t ncap = cap ? 2 * cap : 8;
            struct store_link *g = realloc(*links, ncap * sizeof(*g));
            if (!g) {
                rc = err_set(st, DOSSIER_NOMEM, "out of memory");
                goto out;
            }
            *links = g;
            cap = ncap;
        }
        l = &(*links)[*n];
        memset(l, 0, sizeof(*l));
        if (store_link_key_parse(k, klen, &row) != 0 || vlen == 0) {
            rc = err_set(st, DOSSIER_CORRUPT, "a link row is malformed");
            goto out;
        }
        memcpy(l->label, row.label, sizeof(l->label));
        memcpy(l->kind, row.b_kind, sizeof(l->kind));
        memcpy(l->rid, row.b_rid, STORE_RID_BYTES);
        if (!(l->sealed_id = malloc(vlen))) {
            rc = err_set(st, DOSSIER_NOMEM, "out of memory");
            goto out;
        }
        memcpy(l->sealed_id, val, vlen);
        l->sealed_len = vlen;
        (*n)++;
    }
    rocksdb_iter_get_error(it, &err);
    if (err)
        rc = store_rdb_error(st, err, "reading links failed");
out:
    if (it)
        rocksdb_iter_destroy(it);
    if (ro)
        rocksdb_readoptions_destroy(ro);
    if (snap)
        rocksdb_release_snapshot(s->db, snap);
    pthread_rwlock_unlock(&s->swap);
    rocksdb_free(v);
    if (rc) {
        if (fresh)
            dossier__store__v1__stored_record__free_unpacked(fresh, NULL);
        store_links_free(*links, *n);
        *links = NULL;
        *n = 0;
        return rc;
    }
    *rec = fresh;
    return err_ok(st);
}
