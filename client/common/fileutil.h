/* File and directory chores shared by the node (data directory, backups)
 * and the CLI (restores). */
#ifndef DOSSIER_COMMON_FILEUTIL_H
#define DOSSIER_COMMON_FILEUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* "@dir/@name" into @out; -1 when it does not fit in @cap bytes. */
int fu_join(char *out, size_t cap, const char *dir, const char *name);

/* fsync() of the file or directory at @path; 0 or -1 (errno set). */
int fu_fsync(const char *path);

/* 1 if @dir is a directory with nothing in it. */
int fu_dir_empty(const char *dir);

/* Removes @path and everything under it; errors are ignored (for copies
 * no longer needed). */
void fu_rmtree(const char *path);

/* Copies @from to the new file @to (created with @mode, refused if it
 * exists), synced. With @sha256 and @size (either may be NULL), the
 * SHA-256 and the size of what was copied. 0, or -1 with errno set. */
int fu_copy(const char *from, const char *to, mode_t mode,
            uint8_t sha256[32], uint64_t *size);

/* SHA-256 and size of the file at @path; 0, or -1 with errno set. */
int fu_sha256_file(const char *path, uint8_t out[32], uint64_t *size);

#endif
