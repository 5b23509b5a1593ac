/* Helpers shared by the unit tests: temporary directories, small files and
 * message assertions. Include after <cmocka.h>. */
#ifndef DOSSIER_TESTS_UNIT_TESTUTIL_H
#define DOSSIER_TESTS_UNIT_TESTUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A temporary directory, made by tmpdir_make and removed with everything in
 * it by tmpdir_remove. */
struct tmpdir {
    char path[64];
};

static inline void tmpdir_make(struct tmpdir *t)
{
    snprintf(t->path, sizeof(t->path), "/tmp/dossier-unit-XXXXXX");
    if (!mkdtemp(t->path))
        fail_msg("mkdtemp: %s", strerror(errno));
}

static inline int tmpdir_remove_one(const char *path, const struct stat *sb,
                                    int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

/* Removes @t depth first; a no-op when it was never made. */
static inline void tmpdir_remove(struct tmpdir *t)
{
    if (!t->path[0])
        return;
    if (nftw(t->path, tmpdir_remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0 &&
        errno != ENOENT)
        fprintf(stderr, "cannot remove %s: %s\n", t->path, strerror(errno));
    t->path[0] = '\0';
}

/* @dir/@name into @out (@cap bytes). */
static inline void path_in(char *out, size_t cap, const char *dir,
                           const char *name)
{
    if ((size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap)
        fail_msg("path too long");
}

/* Writes @text to @path (created or truncated) with mode @mode. */
static inline void file_write(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    size_t len = strlen(text);
    if (fd < 0)
        fail_msg("open %s: %s", path, strerror(errno));
    if (write(fd, text, len) != (ssize_t)len)
        fail_msg("write %s: %s", path, strerror(errno));
    close(fd);
    if (chmod(path, mode) != 0)
        fail_msg("chmod %s: %s", path, strerror(errno));
}

/* Reads at most @cap - 1 bytes of @path into @out, NUL-terminated. */
static inline size_t file_read(const char *path, char *out, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    if (fd < 0)
        fail_msg("open %s: %s", path, strerror(errno));
    n = read(fd, out, cap - 1);
    close(fd);
    if (n < 0)
        fail_msg("read %s: %s", path, strerror(errno));
    out[n] = '\0';
    return (size_t)n;
}

/* Fails unless @hay contains @needle, showing both. */
#define assert_contains(hay, needle)                                          \
    do {                                                                      \
        const char *h_ = (hay), *n_ = (needle);                               \
        if (!strstr(h_, n_))                                                  \
            fail_msg("\"%s\" does not contain \"%s\"", h_, n_);               \
    } while (0)

/* Fails if @hay contains @needle, showing both. */
#define assert_not_contains(hay, needle)                                      \
    do {                                                                      \
        const char *h_ = (hay), *n_ = (needle);                               \
        if (strstr(h_, n_))                                                   \
            fail_msg("\"%s\" contains \"%s\"", h_, n_);                       \
    } while (0)

#endif
