/* The master key file: creating it (dossier keygen) and loading it
 * (dossierd). Keys live in sodium_malloc memory and never reach a log.
 *
 * Format: text, one key version per line, '#' comments and blank lines
 * ignored:
 *
 *     dossier-master-key <version> <64 hex digits>
 *
 * The highest version is the current key; older versions stay so that data
 * wrapped under them can still be opened during a rotation. The file must be
 * a regular file that neither group nor others can access (mode 0600). */
#ifndef DOSSIER_COMMON_KEYFILE_H
#define DOSSIER_COMMON_KEYFILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <dossier/dossier.h>

#define KEYFILE_KEY_BYTES 32
#define KEYFILE_MAX_VERSIONS 16
/* Environment variable that may hold the key instead of a file, as
 * "<version>:<hex>" or just "<hex>" (version 1). */
#define KEYFILE_ENV "DOSSIER_MASTER_KEY"

struct keyfile_key {
    uint32_t version;
    unsigned char *key; /* KEYFILE_KEY_BYTES, sodium_malloc'd */
};

struct keyfile {
    size_t n;
    struct keyfile_key keys[KEYFILE_MAX_VERSIONS];
};

/* Refuses the open file @fd unless it is a regular file that neither group
 * nor others can access: the check of the master key file, also applied to
 * the node's TLS key. @what and @path name the file in the message ("key
 * file", "TLS key file"); *@sb gets its fstat().
 * Errors: DOSSIER_IO (cannot stat, not a regular file),
 * DOSSIER_PERMISSION_DENIED (mode). */
int keyfile_check_private(int fd, const char *what, const char *path,
                          struct stat *sb, struct dossier_status *st);

/* Loads @path into @kf (zeroed first). Refuses a file readable or writable
 * by group or others, a malformed line (named by number, never quoted) and
 * a duplicated version.
 * Errors: DOSSIER_IO (cannot open/read), DOSSIER_PERMISSION_DENIED (mode),
 * DOSSIER_INVALID_ARGUMENT (format), DOSSIER_NOMEM. */
int keyfile_load(struct keyfile *kf, const char *path,
                 struct dossier_status *st);

/* Loads a key from @value, the content of $DOSSIER_MASTER_KEY.
 * Errors: DOSSIER_INVALID_ARGUMENT, DOSSIER_NOMEM. */
int keyfile_parse_env(struct keyfile *kf, const char *value,
                      struct dossier_status *st);

/* Wipes and frees every key of @kf. */
void keyfile_release(struct keyfile *kf);

/* The highest version, or NULL when @kf is empty. Borrowed. */
const struct keyfile_key *keyfile_current(const struct keyfile *kf);

/* Version @version, or NULL. Borrowed. */
const struct keyfile_key *keyfile_find(const struct keyfile *kf,
                                       uint32_t version);

/* Creates @path, which must not exist, with mode 0600 and one new random
 * key of version 1, and syncs it to disk.
 * Errors: DOSSIER_ALREADY_EXISTS, DOSSIER_IO. */
int keyfile_create(const char *path, struct dossier_status *st);

/* Adds a new random key to @path as the version after its highest, into
 * *@version: the file is checked as keyfile_load() checks it, written
 * whole beside itself (mode 0600, same owner), synced and renamed over the
 * old one, so a crash leaves one or the other. Lines and comments kept.
 * Errors: those of keyfile_load(), DOSSIER_INVALID_ARGUMENT (too many
 * versions), DOSSIER_IO. */
int keyfile_add_version(const char *path, uint32_t *version,
                        struct dossier_status *st);

#endif
