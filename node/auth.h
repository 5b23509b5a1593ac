/* Who may call: principals with bearer tokens, their roles, and the token
 * nodes use between themselves.
 *
 * Principals live in an auth file (--auth-file), one per line:
 *
 *   # name     role        SHA-256 of the token, hex      [purposes]
 *   crm-sync   service     9f86d081884c...b0f00a08   operations,marketing
 *
 * The optional fourth column lists the purposes the principal may name,
 * comma-separated; "*" or nothing: every purpose.
 *
 * The word `cert` in the third column, instead of a hash, makes a
 * certificate principal: a caller is that principal when it presents, over
 * TLS, a client certificate that verified against the node's --tls-ca and
 * whose subject CN is exactly the principal's name (so a CN with blanks
 * cannot be one). It has no token:
 *
 *   dpo-laptop compliance  cert                             *
 *
 * A call is authenticated by its bearer token first; without a known
 * token, by its certificate; with neither, it is refused.
 * Roles: service (reads and writes records for a purpose), compliance
 * (consent, export, erasure, audit), admin (schema, cluster, principals).
 * Only hashes are stored: `dossier token new NAME ROLE` prints a fresh token
 * and its line. A call names its token in the `authorization` metadata as
 * `Bearer <token>`.
 *
 * Peer calls carry the peer token instead: BLAKE2b-256 keyed with the
 * current master key over "dossier.peer-token.v1", in hex. Every node of a
 * cluster holds the master key and so the token; nothing else does. */
#ifndef DOSSIER_NODE_AUTH_H
#define DOSSIER_NODE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include <dossier/dossier.h>

enum auth_role {
    AUTH_SERVICE = 1,
    AUTH_COMPLIANCE = 2,
    AUTH_ADMIN = 4,
};

#define AUTH_NAME_MAX 64
#define AUTH_PEER_TOKEN_CHARS 64

struct auth_principal {
    char name[AUTH_NAME_MAX + 1];
    enum auth_role role;
    uint8_t hash[32]; /* SHA-256 of the token; zero for cert */
    int cert;         /* 1: known by its client certificate's CN */
    char purposes[512]; /* "a,b,c" or "*" */
};

struct auth;

/* Reads @path. Errors: DOSSIER_IO (unreadable), DOSSIER_INVALID_ARGUMENT
 * (a line that is not "name role hash|cert", an unknown role, a name used
 * twice, no principal at all), DOSSIER_NOMEM. The message names the line. */
int auth_load(const char *path, struct auth **out, struct dossier_status *st);
void auth_free(struct auth *a);
size_t auth_count(struct auth *a);

/* Reads @path again and, if it is valid, replaces @a's principals at once
 * (calls in flight keep what they were granted); if not, @a is unchanged.
 * Errors: as auth_load(). Thread-safe with every lookup. */
int auth_reload(struct auth *a, const char *path, struct dossier_status *st);

/* 1 and a copy of the principal whose token is @token (@len bytes) in
 * *@out, or 0. Compares against every principal in constant time per
 * entry. */
int auth_find(struct auth *a, const char *token, size_t len,
              struct auth_principal *out);

/* 1 and a copy of the certificate principal named @cn (@len bytes: the
 * subject CN of a verified client certificate) in *@out, or 0. Token
 * principals never match. */
int auth_find_cert(struct auth *a, const char *cn, size_t len,
                   struct auth_principal *out);

/* 1 if principal @name of the file may name purpose @purpose, 0 if not,
 * -1 if the file has no principal @name (or @a is NULL). */
int auth_may_use(struct auth *a, const char *name, const char *purpose);

/* 1 if the file names a principal of role @role (0 for a NULL @a). */
int auth_has_role(struct auth *a, enum auth_role role);

/* 1 if @name may name a principal of the cluster's replicated state:
 * 1 to 64 characters of a-z 0-9 . _ - */
int auth_principal_name_valid(const char *name);

/* 1 if the purposes list @list ("a,b", "*" or "": every purpose) holds
 * @purpose. */
int auth_purposes_allow(const char *list, const char *purpose);

/* "service", "compliance", "admin"; "?" for anything else. */
const char *auth_role_name(enum auth_role r);
/* The role named @name, or 0. */
enum auth_role auth_role_parse(const char *name);

/* The peer token for master key @kek (32 bytes), as hex (+ NUL). */
void auth_peer_token(const uint8_t kek[32],
                     char out[AUTH_PEER_TOKEN_CHARS + 1]);

/* 1 if @token (@len bytes) equals @peer, in constant time. */
int auth_is_peer_token(const char *peer, const char *token, size_t len);

#endif
