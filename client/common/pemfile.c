/* Reading PEM files for TLS: see pemfile.h. */
#include "pemfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "errors.h"
#include "keyfile.h"

int pemfile_read(const char *path, const char *what, unsigned flags,
                 char **out, struct dossier_status *st)
{
    struct stat sb;
    char *buf = NULL;
    size_t len = 0, cap;
    int fd, rc = 0;

    *out = NULL;
    if (sodium_init() < 0)
        return err_set(st, DOSSIER_INTERNAL, "libsodium failed to start");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(st, DOSSIER_IO, "cannot open %s %s: %s", what, path,
                       strerror(errno));
    if (flags & PEMFILE_OWNER_ONLY) {
        rc = keyfile_check_private(fd, what, path, &sb, st);
        if (rc)
            goto out_close;
    } else if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = err_set(st, DOSSIER_IO, "%s %s is not a regular file", what,
                     path);
        goto out_close;
    }
    if (sb.st_size <= 0 || (unsigned long long)sb.st_size > PEMFILE_MAX_BYTES) {
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "%s %s is empty or larger than %u bytes", what, path,
                     PEMFILE_MAX_BYTES);
        goto out_close;
    }
    cap = (size_t)sb.st_size;
    buf = sodium_malloc(cap + 1);
    if (!buf) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out_close;
    }
    while (len < cap) {
        ssize_t got = read(fd, buf + len, cap - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = err_set(st, DOSSIER_IO, "cannot read %s %s: %s", what, path,
                         strerror(errno));
            goto out_free;
        }
        if (got == 0)
            break; /* shrank while read: what is there is checked below */
        len += (size_t)got;
    }
    buf[len] = '\0';
    /* gRPC's own message for a file that is not PEM comes much later (at
     * the first handshake, or as a port that cannot be bound) and does
     * not name the file. */
    if (strlen(buf) != len || !strstr(buf, "-----BEGIN ")) {
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "%s %s is not PEM (no \"-----BEGIN \" line)", what,
                     path);
        goto out_free;
    }
    *out = buf;
    buf = NULL;
out_free:
    if (buf)
        sodium_free(buf);
out_close:
    close(fd);
    return rc;
}

void pemfile_free(char *pem)
{
    if (pem)
        sodium_free(pem); /* sodium_free wipes */
}
