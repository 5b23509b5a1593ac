/* File and directory chores (see fileutil.h). */
#include "fileutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

int fu_join(char *out, size_t cap, const char *dir, const char *name)
{
    int k = snprintf(out, cap, "%s/%s", dir, name);
    return k < 0 || (size_t)k >= cap ? -1 : 0;
}

int fu_fsync(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

int fu_dir_empty(const char *dir)
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

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void fu_rmtree(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Reads @in to its end, writing to @out (-1: nowhere) and hashing. */
static int pump(int in, int out, uint8_t sha256[32], uint64_t *size)
{
    crypto_hash_sha256_state h;
    unsigned char buf[1 << 16];
    uint64_t n = 0;
    ssize_t k;

    crypto_hash_sha256_init(&h);
    for (;;) {
        k = read(in, buf, sizeof(buf));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        crypto_hash_sha256_update(&h, buf, (unsigned long long)k);
        n += (uint64_t)k;
        if (out >= 0 && write(out, buf, (size_t)k) != k)
            return -1;
    }
    if (k < 0)
        return -1;
    if (sha256)
        crypto_hash_sha256_final(&h, sha256);
    if (size)
        *size = n;
    return 0;
}

int fu_copy(const char *from, const char *to, mode_t mode,
            uint8_t sha256[32], uint64_t *size)
{
    int in = open(from, O_RDONLY | O_CLOEXEC), out, rc, e;
    if (in < 0)
        return -1;
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (out < 0) {
        e = errno;
        close(in);
        errno = e;
        return -1;
    }
    rc = pump(in, out, sha256, size);
    if (rc == 0 && fsync(out) != 0)
        rc = -1;
    e = errno;
    close(in);
    if (close(out) != 0 && rc == 0)
        return -1;
    errno = e;
    return rc;
}

int fu_sha256_file(const char *path, uint8_t out[32], uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc, e;
    if (fd < 0)
        return -1;
    rc = pump(fd, -1, out, size);
    e = errno;
    close(fd);
    errno = e;
    return rc;
}
