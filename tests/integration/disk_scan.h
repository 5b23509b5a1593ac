/* What a stopped node holds on disk, for the erasure tests: the sealed
 * fragments of a subject (read from its RocksDB) and a byte-for-byte search
 * of every file of a directory for them, or for a plaintext marker. Aborts
 * the calling cmocka test when a file cannot be read. */
#ifndef DOSSIER_TESTS_DISK_SCAN_H
#define DOSSIER_TESTS_DISK_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include <rocksdb/c.h>

/* The node's column families, in the order disk_db_open() opens them. */
#define DISK_N_FAMILIES 15
extern const char *const disk_families[DISK_N_FAMILIES];

/* Opens the database of a stopped node's data directory @data with every
 * family into @cf (read-only unless @read_only is 0). */
rocksdb_t *disk_db_open(const char *data, int read_only,
                        rocksdb_column_family_handle_t **cf);
void disk_db_close(rocksdb_t *db, rocksdb_column_family_handle_t **cf);

/* 32-byte fragments to look for. */
struct needles {
    uint8_t (*b)[32];
    size_t n;
};

/* Adds the first 32 bytes of @p (@len bytes; shorter ones are skipped). */
void needle_add(struct needles *nd, const uint8_t *p, size_t len);

/* From the stopped node's data directory @data: the first 32 bytes of
 * every sealed box (field values, ids, links) and of the wrapped data key
 * of subject @sp, the blind index + record pseudonym of each of its index
 * rows, and the sealed target id of every link from or to one of its
 * records (a link from another subject's record is sealed under that
 * subject's key, which erasure does not destroy: the row itself must go).
 * The subject must have a key there. */
void disk_collect(const char *data, const uint8_t sp[16], struct needles *nd);

/* How many of @nd occur in any regular file under @dir (set
 * DOSSIER_TEST_WHERE to print where). */
size_t disk_count(const char *dir, const struct needles *nd);

/* How many regular files under @dir hold the bytes of @text. */
size_t disk_find_text(const char *dir, const char *text);

#endif
