/* The bootstrap token (see bootstrap.h). */
#include "bootstrap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "errors.h"
#include "keyfile.h"

/* Checks @t (@len bytes, trailing newline already cut) and hashes it. */
static int token_hash(const char *t, size_t len, const char *where,
                      uint8_t hash[32], struct dossier_status *st)
{
    if (len < BOOTSTRAP_TOKEN_MIN || len > BOOTSTRAP_TOKEN_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "%s: a bootstrap token is %d to %d characters (make "
                       "one with `dossier token bootstrap FILE`)",
                       where, BOOTSTRAP_TOKEN_MIN, BOOTSTRAP_TOKEN_MAX);
    for (size_t i = 0; i < len; i++)
        if (t[i] <= ' ' || t[i] > '~')
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "%s: a bootstrap token is one line of printable "
                           "characters without blanks",
                           where);
    crypto_hash_sha256(hash, (const unsigned char *)t, len);
    return err_ok(st);
}

int bootstrap_token_load(const char *path, uint8_t hash[32], int *have,
                         struct dossier_status *st)
{
    char buf[BOOTSTRAP_TOKEN_MAX + 3], where[4200];
    struct stat sb;
    ssize_t got;
    size_t len = 0;
    int fd, rc;

    *have = 0;
    if (!path || !path[0]) {
        const char *env = getenv(BOOTSTRAP_ENV);
        if (!env || !env[0])
            return err_ok(st);
        rc = token_hash(env, strlen(env), "$" BOOTSTRAP_ENV, hash, st);
        *have = rc == 0;
        return rc;
    }
    snprintf(where, sizeof(where), "bootstrap token file %s", path);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    /* Operators delete the file once the token is spent: no token then. */
    if (fd < 0 && errno == ENOENT)
        return err_ok(st);
    if (fd < 0)
        return err_set(st, DOSSIER_IO, "cannot open %s: %s", where,
                       strerror(errno));
    rc = keyfile_check_private(fd, "bootstrap token file", path, &sb, st);
    while (rc == 0 && len < sizeof(buf)) {
        got = read(fd, buf + len, sizeof(buf) - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            rc = err_set(st, DOSSIER_IO, "cannot read %s: %s", where,
                         strerror(errno));
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    if (rc == 0 && len == sizeof(buf))
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "%s: longer than a bootstrap token", where);
    if (rc == 0) {
        if (len && buf[len - 1] == '\n')
            len--;
        if (len && buf[len - 1] == '\r')
            len--;
        rc = token_hash(buf, len, where, hash, st);
    }
    sodium_memzero(buf, sizeof(buf));
    *have = rc == 0;
    return rc;
}

int bootstrap_token_matches(const uint8_t hash[32], const char *token,
                            size_t len)
{
    uint8_t h[crypto_hash_sha256_BYTES];
    int eq;
    crypto_hash_sha256(h, (const unsigned char *)token, len);
    eq = sodium_memcmp(h, hash, sizeof(h)) == 0;
    sodium_memzero(h, sizeof(h));
    return eq;
}
