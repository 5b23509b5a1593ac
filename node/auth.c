/* Principals, roles and the peer token: see auth.h. */
#include "auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "errors.h"

/* The table is replaced whole by auth_reload(); readers hold the lock
 * for the length of one lookup. */
struct auth {
    pthread_rwlock_t lock;
    struct auth_principal *p;
    size_t n;
};

static const struct {
    const char *name;
    enum auth_role role;
} roles[] = {
    {"service", AUTH_SERVICE},
    {"compliance", AUTH_COMPLIANCE},
    {"admin", AUTH_ADMIN},
};

const char *auth_role_name(enum auth_role r)
{
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (roles[i].role == r)
            return roles[i].name;
    return "?";
}

enum auth_role auth_role_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (strcmp(roles[i].name, name) == 0)
            return roles[i].role;
    return 0;
}

/* Parses one non-blank, non-comment line into @p. */
static int parse_line(char *line, struct auth_principal *p)
{
    char *save = NULL, *name, *role, *hex, *purposes, *extra;
    size_t bin = 0;
    name = strtok_r(line, " \t", &save);
    role = strtok_r(NULL, " \t", &save);
    hex = strtok_r(NULL, " \t", &save);
    purposes = strtok_r(NULL, " \t", &save);
    extra = strtok_r(NULL, " \t", &save);
    if (!name || !role || !hex || extra || strlen(name) > AUTH_NAME_MAX ||
        (strlen(hex) != 64 && strcmp(hex, "cert") != 0) ||
        (purposes && strlen(purposes) >= sizeof(p->purposes)))
        return -1;
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(p->purposes, sizeof(p->purposes), "%s",
             purposes ? purposes : "*");
    p->role = auth_role_parse(role);
    if (!p->role)
        return -1;
    if (strcmp(hex, "cert") == 0) {
        p->cert = 1;
        return 0;
    }
    if (sodium_hex2bin(p->hash, sizeof(p->hash), hex, 64, NULL, &bin, NULL) !=
            0 ||
        bin != 32)
        return -1;
    return 0;
}

static void free_table(struct auth *a)
{
    free(a->p);
    a->p = NULL;
    a->n = 0;
}

/* Reads the principals of @path into @a's table (a->p, a->n; empty
 * before the call). */
static int load_table(const char *path, struct auth *a,
                      struct dossier_status *st)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int lineno = 0;

    if (!f)
        return err_set(st, DOSSIER_IO, "cannot read the auth file %s: %s",
                       path, strerror(errno));
    while (fgets(line, sizeof(line), f)) {
        char *s = line;
        struct auth_principal p, *grown;
        lineno++;
        s[strcspn(s, "\r\n")] = '\0';
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s || *s == '#')
            continue;
        if (parse_line(s, &p) != 0) {
            fclose(f);
            free_table(a);
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "%s line %d: expected 'name role sha256-hex|cert "
                           "[purpose,...|*]' with role service, compliance "
                           "or admin",
                           path, lineno);
        }
        for (size_t i = 0; i < a->n; i++)
            if (strcmp(a->p[i].name, p.name) == 0) {
                fclose(f);
                free_table(a);
                return err_set(st, DOSSIER_INVALID_ARGUMENT,
                               "%s line %d: principal '%s' is listed twice",
                               path, lineno, p.name);
            }
        grown = realloc(a->p, (a->n + 1) * sizeof(*a->p));
        if (!grown) {
            fclose(f);
            free_table(a);
            return err_set(st, DOSSIER_NOMEM, "out of memory");
        }
        a->p = grown;
        a->p[a->n++] = p;
    }
    fclose(f);
    if (a->n == 0) {
        free_table(a);
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "the auth file %s lists no principal", path);
    }
    return err_ok(st);
}

int auth_load(const char *path, struct auth **out, struct dossier_status *st)
{
    struct auth *a = calloc(1, sizeof(*a));
    *out = NULL;
    if (!a)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    if (load_table(path, a, st) != 0) {
        free(a);
        return st->code;
    }
    pthread_rwlock_init(&a->lock, NULL);
    *out = a;
    return 0;
}

int auth_reload(struct auth *a, const char *path, struct dossier_status *st)
{
    struct auth fresh = {.p = NULL, .n = 0};
    struct auth_principal *old;
    if (load_table(path, &fresh, st) != 0)
        return st->code;
    pthread_rwlock_wrlock(&a->lock);
    old = a->p;
    a->p = fresh.p;
    a->n = fresh.n;
    pthread_rwlock_unlock(&a->lock);
    free(old);
    return 0;
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    free_table(a);
    pthread_rwlock_destroy(&a->lock);
    free(a);
}

size_t auth_count(struct auth *a)
{
    size_t n;
    if (!a)
        return 0;
    pthread_rwlock_rdlock(&a->lock);
    n = a->n;
    pthread_rwlock_unlock(&a->lock);
    return n;
}

int auth_find(struct auth *a, const char *token, size_t len,
              struct auth_principal *out)
{
    uint8_t h[crypto_hash_sha256_BYTES];
    int found = 0;
    if (!a || !token || len == 0)
        return 0;
    crypto_hash_sha256(h, (const unsigned char *)token, len);
    pthread_rwlock_rdlock(&a->lock);
    /* Every entry is compared, so the time does not tell which matched. */
    for (size_t i = 0; i < a->n; i++)
        if (sodium_memcmp(h, a->p[i].hash, sizeof(h)) == 0 && !a->p[i].cert) {
            *out = a->p[i];
            found = 1;
        }
    pthread_rwlock_unlock(&a->lock);
    return found;
}

int auth_find_cert(struct auth *a, const char *cn, size_t len,
                   struct auth_principal *out)
{
    int found = 0;
    if (!a || !cn || len == 0 || len > AUTH_NAME_MAX)
        return 0;
    pthread_rwlock_rdlock(&a->lock);
    for (size_t i = 0; i < a->n && !found; i++)
        if (a->p[i].cert && strlen(a->p[i].name) == len &&
            memcmp(a->p[i].name, cn, len) == 0) {
            *out = a->p[i];
            found = 1;
        }
    pthread_rwlock_unlock(&a->lock);
    return found;
}

void auth_peer_token(const uint8_t kek[32],
                     char out[AUTH_PEER_TOKEN_CHARS + 1])
{
    static const char label[] = "dossier.peer-token.v1";
    uint8_t t[32];
    crypto_generichash(t, sizeof(t), (const unsigned char *)label,
                       sizeof(label) - 1, kek, 32);
    sodium_bin2hex(out, AUTH_PEER_TOKEN_CHARS + 1, t, sizeof(t));
    sodium_memzero(t, sizeof(t));
}

int auth_is_peer_token(const char *peer, const char *token, size_t len)
{
    return peer && token && len == AUTH_PEER_TOKEN_CHARS &&
           sodium_memcmp(peer, token, AUTH_PEER_TOKEN_CHARS) == 0;
}

/* auth_may_use() under the lock. */
int auth_principal_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64)
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

int auth_purposes_allow(const char *list, const char *purpose)
{
    size_t n = strlen(purpose);
    if (!list[0] || strcmp(list, "*") == 0)
        return 1;
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, purpose, n) == 0)
            return 1;
        p += len + (end ? 1 : 0);
    }
    return 0;
}

static int may_use(const struct auth *a, const char *name, const char *purpose)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->p[i].name, name) == 0)
            return auth_purposes_allow(a->p[i].purposes, purpose);
    return -1; /* not a principal of the file */
}

int auth_has_role(struct auth *a, enum auth_role role)
{
    int found = 0;
    if (!a)
        return 0;
    pthread_rwlock_rdlock(&a->lock);
    for (size_t i = 0; i < a->n && !found; i++)
        found = a->p[i].role == role;
    pthread_rwlock_unlock(&a->lock);
    return found;
}

int auth_may_use(struct auth *a, const char *name, const char *purpose)
{
    int ok;
    if (!a)
        return -1;
    pthread_rwlock_rdlock(&a->lock);
    ok = may_use(a, name, purpose);
    pthread_rwlock_unlock(&a->lock);
    return ok;
}
