/* Sealed fragments of a subject on a stopped node's disk, and a search of
 * every file of a directory for them (disk_scan.h). */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "disk_scan.h"
#include "store.pb-c.h"

const char *const disk_families[DISK_N_FAMILIES] = {
    "default", "schema",  "record", "subject", "index",  "requests",
    "raft",    "raftlog", "policy", "consent", "audit",  "changes",
    "change_index", "link", "change_record"};

rocksdb_t *disk_db_open(const char *data, int read_only,
                          rocksdb_column_family_handle_t **cf)
{
    char path[400], *err = NULL;
    const rocksdb_options_t *fo[DISK_N_FAMILIES];
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_t *db;
    snprintf(path, sizeof(path), "%s/db", data);
    for (size_t i = 0; i < DISK_N_FAMILIES; i++)
        fo[i] = o;
    db = read_only ? rocksdb_open_for_read_only_column_families(
                         o, path, DISK_N_FAMILIES, disk_families, fo, cf, 0, &err)
                   : rocksdb_open_column_families(o, path, DISK_N_FAMILIES,
                                                  disk_families, fo, cf, &err);
    rocksdb_options_destroy(o);
    if (err)
        fail_msg("open %s: %s", path, err);
    return db;
}

void disk_db_close(rocksdb_t *db, rocksdb_column_family_handle_t **cf)
{
    for (size_t i = 0; i < DISK_N_FAMILIES; i++)
        rocksdb_column_family_handle_destroy(cf[i]);
    rocksdb_close(db);
}

void needle_add(struct needles *nd, const uint8_t *p, size_t len)
{
    if (len < 32)
        return;
    nd->b = realloc(nd->b, (nd->n + 1) * sizeof(*nd->b));
    assert_non_null(nd->b);
    memcpy(nd->b[nd->n++], p, 32);
}

void disk_collect(const char *data, const uint8_t sp[16],
                  struct needles *nd)
{
    rocksdb_column_family_handle_t *cf[DISK_N_FAMILIES];
    rocksdb_t *db = disk_db_open(data, 1, cf);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, ro, cf[2]);
    uint8_t (*rids)[16] = NULL;
    size_t n_rids = 0;
    char *v, *err = NULL;
    size_t vlen;

    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t len, klen;
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &len);
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &klen);
        Dossier__Store__V1__StoredRecord *r =
            dossier__store__v1__stored_record__unpack(NULL, len, val);
        assert_non_null(r);
        if (r->subject.len == 16 && memcmp(r->subject.data, sp, 16) == 0) {
            for (size_t i = 0; i < r->n_fields; i++)
                needle_add(nd, r->fields[i]->box.data, r->fields[i]->box.len);
            needle_add(nd, r->sealed_id.data, r->sealed_id.len);
            for (size_t i = 0; i < r->n_index_keys; i++)
                needle_add(nd, r->index_keys[i].data + r->index_keys[i].len -
                                   32,
                           32);
            rids = realloc(rids, (n_rids + 1) * sizeof(*rids));
            assert_non_null(rids);
            memcpy(rids[n_rids++], key + klen - 16, 16);
        }
        dossier__store__v1__stored_record__free_unpacked(r, NULL);
    }
    rocksdb_iter_destroy(it);
    /* Link rows "o" kind 0 rid label 0 kind 0 rid: the record's pseudonym
     * follows the first 0x00, the target's ends the key. */
    it = rocksdb_create_iterator_cf(db, ro, cf[13]);
    for (rocksdb_iter_seek(it, "o", 1); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, len;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &klen);
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &len);
        const uint8_t *from = (const uint8_t *)memchr(key, 0, klen) + 1;
        if (key[0] != 'o')
            break;
        for (size_t i = 0; i < n_rids; i++)
            if (memcmp(from, rids[i], 16) == 0 ||
                memcmp(key + klen - 16, rids[i], 16) == 0) {
                needle_add(nd, val, len);
                break;
            }
    }
    rocksdb_iter_destroy(it);
    free(rids);
    v = rocksdb_get_cf(db, ro, cf[3], (const char *)sp, 16, &vlen, &err);
    assert_null(err);
    assert_non_null(v);
    {
        Dossier__Store__V1__SubjectKey *k =
            dossier__store__v1__subject_key__unpack(NULL, vlen,
                                                    (const uint8_t *)v);
        assert_non_null(k);
        needle_add(nd, k->wrapped_dek.data, k->wrapped_dek.len);
        needle_add(nd, k->sealed_subject_id.data, k->sealed_subject_id.len);
        dossier__store__v1__subject_key__free_unpacked(k, NULL);
    }
    rocksdb_free(v);
    rocksdb_readoptions_destroy(ro);
    disk_db_close(db, cf);
}

/* How many of @nd occur in any regular file under @dir. */
static size_t found_in(const char *dir, const struct needles *nd,
                       int *seen)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t hits = 0;
    assert_non_null(d);
    while ((e = readdir(d))) {
        char path[1024];
        struct stat sb;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (lstat(path, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            hits += found_in(path, nd, seen);
        } else if (S_ISREG(sb.st_mode) && sb.st_size > 0) {
            int fd = open(path, O_RDONLY);
            uint8_t *m;
            assert_true(fd >= 0);
            m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
            close(fd);
            assert_true(m != MAP_FAILED);
            for (size_t i = 0; i < nd->n; i++)
                if (memmem(m, (size_t)sb.st_size, nd->b[i], 32)) {
                    if (!seen[i])
                        hits++;
                    if (getenv("DOSSIER_TEST_WHERE"))
                        print_message("needle %zu in %s\n", i, path);
                    seen[i] = 1;
                }
            munmap(m, (size_t)sb.st_size);
        }
    }
    closedir(d);
    return hits;
}

size_t disk_count(const char *dir, const struct needles *nd)
{
    int *seen = calloc(nd->n ? nd->n : 1, sizeof(int));
    size_t hits;
    assert_non_null(seen);
    hits = found_in(dir, nd, seen);
    free(seen);
    return hits;
}


/* Files under @dir that hold @text. */
size_t disk_find_text(const char *dir, const char *text)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t hits = 0, tlen = strlen(text);
    assert_non_null(d);
    while ((e = readdir(d))) {
        char path[1024];
        struct stat sb;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (lstat(path, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            hits += disk_find_text(path, text);
        } else if (S_ISREG(sb.st_mode) && sb.st_size > 0) {
            int fd = open(path, O_RDONLY);
            uint8_t *m;
            assert_true(fd >= 0);
            m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
            close(fd);
            assert_true(m != MAP_FAILED);
            if (memmem(m, (size_t)sb.st_size, text, tlen)) {
                hits++;
                if (getenv("DOSSIER_TEST_WHERE"))
                    print_message("text in %s\n", path);
            }
            munmap(m, (size_t)sb.st_size);
        }
    }
    closedir(d);
    return hits;
}
