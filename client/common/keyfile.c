/* Creating and loading the master key file. */
#include "keyfile.h"

#include <errno.h>
#include <libgen.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "errors.h"

#define KEYFILE_TAG "dossier-master-key"
#define KEYFILE_MAX_BYTES 65536

void keyfile_release(struct keyfile *kf)
{
    for (size_t i = 0; i < kf->n; i++)
        sodium_free(kf->keys[i].key); /* sodium_free wipes */
    memset(kf, 0, sizeof(*kf));
}

const struct keyfile_key *keyfile_current(const struct keyfile *kf)
{
    const struct keyfile_key *best = NULL;
    for (size_t i = 0; i < kf->n; i++)
        if (!best || kf->keys[i].version > best->version)
            best = &kf->keys[i];
    return best;
}

const struct keyfile_key *keyfile_find(const struct keyfile *kf,
                                       uint32_t version)
{
    for (size_t i = 0; i < kf->n; i++)
        if (kf->keys[i].version == version)
            return &kf->keys[i];
    return NULL;
}

/* Adds the key in @hex (64 hex digits, borrowed) as @version. */
static int add_key(struct keyfile *kf, uint32_t version, const char *hex,
                   size_t hex_len, const char *where,
                   struct dossier_status *st)
{
    size_t bin_len = 0;
    unsigned char *key;

    if (version == 0)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "%s: key version must be 1 or more", where);
    if (keyfile_find(kf, version))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "%s: key version %u appears twice", where, version);
    if (kf->n == KEYFILE_MAX_VERSIONS)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "%s: more than %d key versions", where,
                       KEYFILE_MAX_VERSIONS);
    if (hex_len != 2 * KEYFILE_KEY_BYTES)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "%s: a key must be %d hex digits", where,
                       2 * KEYFILE_KEY_BYTES);
    key = sodium_malloc(KEYFILE_KEY_BYTES);
    if (!key)
        return err_set(st, DOSSIER_NOMEM, "%s: out of memory", where);
    if (sodium_hex2bin(key, KEYFILE_KEY_BYTES, hex, hex_len, NULL, &bin_len,
                       NULL) != 0 ||
        bin_len != KEYFILE_KEY_BYTES) {
        sodium_free(key);
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "%s: the key is not %d hex digits", where,
                       2 * KEYFILE_KEY_BYTES);
    }
    kf->keys[kf->n].version = version;
    kf->keys[kf->n].key = key;
    kf->n++;
    return 0;
}

/* Parses one line (NUL-terminated, borrowed). Never quotes the line: it
 * holds a secret. */
static int parse_line(struct keyfile *kf, char *line, const char *path,
                      int lineno, struct dossier_status *st)
{
    char where[512];
    char *save = NULL, *tag, *ver, *hex, *extra, *end;
    unsigned long v;

    snprintf(where, sizeof(where), "key file %s line %d", path, lineno);
    tag = strtok_r(line, " \t\r", &save);
    if (!tag || tag[0] == '#')
        return 0;
    ver = strtok_r(NULL, " \t\r", &save);
    hex = strtok_r(NULL, " \t\r", &save);
    extra = strtok_r(NULL, " \t\r", &save);
    if (strcmp(tag, KEYFILE_TAG) != 0 || !ver || !hex || extra)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "%s: expected \"" KEYFILE_TAG " <version> <hex key>\"",
                       where);
    errno = 0;
    v = strtoul(ver, &end, 10);
    if (errno || *end || v > UINT32_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "%s: the version is not a number", where);
    return add_key(kf, (uint32_t)v, hex, strlen(hex), where, st);
}

int keyfile_check_private(int fd, const char *what, const char *path,
                          struct stat *sb, struct dossier_status *st)
{
    if (fstat(fd, sb) != 0 || !S_ISREG(sb->st_mode))
        return err_set(st, DOSSIER_IO, "%s %s is not a regular file", what,
                       path);
    if (sb->st_mode & (S_IRWXG | S_IRWXO))
        return err_set(st, DOSSIER_PERMISSION_DENIED,
                       "%s %s is accessible by group or others (mode "
                       "%04o); run: chmod 600 %s",
                       what, path, (unsigned)(sb->st_mode & 07777), path);
    return 0;
}

int keyfile_load(struct keyfile *kf, const char *path,
                 struct dossier_status *st)
{
    struct stat sb;
    char *buf = NULL, *line, *next;
    ssize_t got;
    size_t len = 0;
    int fd, rc = 0, lineno = 0;

    memset(kf, 0, sizeof(*kf));
    if (sodium_init() < 0)
        return err_set(st, DOSSIER_INTERNAL, "libsodium failed to start");
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return err_set(st, DOSSIER_IO, "cannot open key file %s: %s", path,
                       strerror(errno));
    rc = keyfile_check_private(fd, "key file", path, &sb, st);
    if (rc)
        goto out_close;
    if (sb.st_size > KEYFILE_MAX_BYTES) {
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "key file %s is larger than %d bytes", path,
                     KEYFILE_MAX_BYTES);
        goto out_close;
    }
    /* The file holds secrets: read it into locked, guarded memory. */
    buf = sodium_malloc(KEYFILE_MAX_BYTES + 1);
    if (!buf) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out_close;
    }
    while (len < KEYFILE_MAX_BYTES &&
           (got = read(fd, buf + len, KEYFILE_MAX_BYTES - len)) != 0) {
        if (got < 0) {
            if (errno == EINTR)
                continue;
            rc = err_set(st, DOSSIER_IO, "cannot read key file %s: %s", path,
                         strerror(errno));
            goto out_free;
        }
        len += (size_t)got;
    }
    buf[len] = '\0';
    /* Split by hand rather than with strtok: blank lines must count, or the
     * line number in a message would point at the wrong line. */
    for (line = buf; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        rc = parse_line(kf, line, path, lineno, st);
        if (rc)
            goto out_free;
    }
    if (kf->n == 0)
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "key file %s holds no key", path);
out_free:
    sodium_free(buf);
out_close:
    close(fd);
    if (rc)
        keyfile_release(kf);
    return rc;
}

int keyfile_parse_env(struct keyfile *kf, const char *value,
                      struct dossier_status *st)
{
    const char *colon = strchr(value, ':');
    unsigned long v = 1;
    int rc;

    memset(kf, 0, sizeof(*kf));
    if (sodium_init() < 0)
        return err_set(st, DOSSIER_INTERNAL, "libsodium failed to start");
    if (colon) {
        char *end;
        errno = 0;
        v = strtoul(value, &end, 10);
        if (errno || end != colon || v > UINT32_MAX)
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "$" KEYFILE_ENV ": the version before ':' is not "
                           "a number");
        value = colon + 1;
    }
    rc = add_key(kf, (uint32_t)v, value, strlen(value), "$" KEYFILE_ENV, st);
    if (rc)
        keyfile_release(kf);
    return rc;
}

int keyfile_create(const char *path, struct dossier_status *st)
{
    unsigned char key[KEYFILE_KEY_BYTES];
    char hex[2 * KEYFILE_KEY_BYTES + 1];
    char text[512];
    char when[64];
    time_t now = time(NULL);
    struct tm tm;
    size_t len, off = 0;
    int fd, rc = 0;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
              0600);
    if (fd < 0)
        return err_set(st, errno == EEXIST ? DOSSIER_ALREADY_EXISTS
                                           : DOSSIER_IO,
                       "cannot create key file %s: %s", path,
                       strerror(errno));
    /* The umask may have cleared bits, never added them; make sure. */
    if (fchmod(fd, 0600) != 0) {
        rc = err_set(st, DOSSIER_IO, "cannot chmod key file %s: %s", path,
                     strerror(errno));
        goto out;
    }
    randombytes_buf(key, sizeof(key));
    sodium_bin2hex(hex, sizeof(hex), key, sizeof(key));
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    len = (size_t)snprintf(
        text, sizeof(text),
        "# Dossier master key, created %s by dossier keygen.\n"
        "# Keep it secret and backed up apart from the data: without it\n"
        "# nothing stored can be read. Never commit it, never log it.\n"
        KEYFILE_TAG " 1 %s\n",
        when, hex);
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = err_set(st, DOSSIER_IO, "cannot write key file %s: %s",
                         path, strerror(errno));
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0)
        rc = err_set(st, DOSSIER_IO, "cannot sync key file %s: %s", path,
                     strerror(errno));
out:
    sodium_memzero(key, sizeof(key));
    sodium_memzero(hex, sizeof(hex));
    sodium_memzero(text, sizeof(text));
    close(fd);
    if (rc)
        unlink(path);
    return rc ? rc : err_ok(st);
}

/* Writes @len bytes of @text to @fd. */
static int write_all(int fd, const char *text, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

int keyfile_add_version(const char *path, uint32_t *version,
                        struct dossier_status *st)
{
    struct keyfile kf;
    const struct keyfile_key *cur;
    unsigned char key[KEYFILE_KEY_BYTES];
    char hex[2 * KEYFILE_KEY_BYTES + 1], line[256], when[64];
    char *text = NULL, *dircopy = NULL, tmp[4200];
    struct stat sb;
    struct tm tm;
    time_t now = time(NULL);
    size_t len = 0;
    ssize_t got;
    int fd = -1, out = -1, dfd, rc;
    uint32_t v;

    /* Only a key file that loads gets a new version: its mode, format and
     * versions are checked as the node checks them. */
    rc = keyfile_load(&kf, path, st);
    if (rc)
        return rc;
    cur = keyfile_current(&kf);
    v = cur->version + 1;
    if (kf.n == KEYFILE_MAX_VERSIONS || cur->version == UINT32_MAX) {
        keyfile_release(&kf);
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "key file %s holds %d versions already: remove "
                       "versions no longer in use (dossier keys status) first",
                       path, KEYFILE_MAX_VERSIONS);
    }
    keyfile_release(&kf);

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || fstat(fd, &sb) != 0)
        return err_set(st, DOSSIER_IO, "cannot open key file %s: %s", path,
                       strerror(errno));
    text = sodium_malloc(KEYFILE_MAX_BYTES + 1);
    if (!text) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    while (len < KEYFILE_MAX_BYTES &&
           (got = read(fd, text + len, KEYFILE_MAX_BYTES - len)) != 0) {
        if (got < 0) {
            if (errno == EINTR)
                continue;
            rc = err_set(st, DOSSIER_IO, "cannot read key file %s: %s", path,
                         strerror(errno));
            goto out;
        }
        len += (size_t)got;
    }
    /* The new file is written beside the old one and renamed over it:
     * a crash leaves the old file or the new one, never half of one. */
    snprintf(tmp, sizeof(tmp), "%s.new-XXXXXX", path);
    out = mkstemp(tmp);
    if (out < 0) {
        rc = err_set(st, DOSSIER_IO, "cannot create a file beside %s: %s",
                     path, strerror(errno));
        goto out;
    }
    if (fchmod(out, 0600) != 0 ||
        (geteuid() == 0 && fchown(out, sb.st_uid, sb.st_gid) != 0)) {
        rc = err_set(st, DOSSIER_IO, "cannot set the mode of %s: %s", tmp,
                     strerror(errno));
        goto out_unlink;
    }
    randombytes_buf(key, sizeof(key));
    sodium_bin2hex(hex, sizeof(hex), key, sizeof(key));
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(line, sizeof(line),
             "# Version %u added %s by dossier keygen --add-version.\n"
             KEYFILE_TAG " %u %s\n",
             v, when, v, hex);
    if (write_all(out, text, len) != 0 ||
        (len && text[len - 1] != '\n' && write_all(out, "\n", 1) != 0) ||
        write_all(out, line, strlen(line)) != 0 || fsync(out) != 0) {
        rc = err_set(st, DOSSIER_IO, "cannot write %s: %s", tmp,
                     strerror(errno));
        goto out_unlink;
    }
    if (rename(tmp, path) != 0) {
        rc = err_set(st, DOSSIER_IO, "cannot replace key file %s: %s", path,
                     strerror(errno));
        goto out_unlink;
    }
    /* The rename itself must survive a crash. */
    dircopy = strdup(path);
    dfd = dircopy ? open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                  : -1;
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(dircopy);
    *version = v;
    rc = err_ok(st);
    goto out;
out_unlink:
    unlink(tmp);
out:
    sodium_memzero(key, sizeof(key));
    sodium_memzero(hex, sizeof(hex));
    sodium_memzero(line, sizeof(line));
    if (text)
        sodium_free(text);
    if (out >= 0)
        close(out);
    if (fd >= 0)
        close(fd);
    return rc;
}
