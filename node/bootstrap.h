/* The bootstrap token of a node started with --require-auth: how a new
 * cluster gets its first admin when no auth file names one.
 *
 * The token comes from --bootstrap-token-file (a file of mode 0600 holding
 * one line: the token; `dossier token bootstrap FILE` makes one) or from
 * $DOSSIER_BOOTSTRAP_TOKEN. It is 16 to 128 printable characters without
 * blanks. The node keeps only its SHA-256. A call presenting it is the
 * principal BOOTSTRAP_PRINCIPAL, which may call Principals/Add only, only to
 * add an admin, and only while the cluster's replicated state never held a
 * principal: the first principal added writes a "bootstrapped" row that is
 * never deleted (store.h), the command carries first_only, and the state
 * machine checks that row when it applies it, so two bootstrap calls racing
 * on two nodes cannot both succeed, and removing every principal later does
 * not make the token work again. A node with an auth file refuses the
 * token: the file's admins add principals there. */
#ifndef DOSSIER_NODE_BOOTSTRAP_H
#define DOSSIER_NODE_BOOTSTRAP_H

#include <stddef.h>
#include <stdint.h>

#include <dossier/dossier.h>

/* The environment variable read when no file is given. */
#define BOOTSTRAP_ENV "DOSSIER_BOOTSTRAP_TOKEN"
/* The principal a bootstrap call acts as (in its audit entries): not a
 * valid principal name, so no principal can ever be called so. */
#define BOOTSTRAP_PRINCIPAL "(bootstrap)"
#define BOOTSTRAP_TOKEN_MIN 16
#define BOOTSTRAP_TOKEN_MAX 128

/* Reads the token from @path, or, when @path is "", from $BOOTSTRAP_ENV,
 * into its SHA-256 @hash; *@have is 1 when one was given, 0 when neither
 * is set or @path does not exist (deleted once the token was spent, as the
 * docs say: no token then). The file must be a regular file only its
 * owner can access.
 * Errors: DOSSIER_IO (cannot read), DOSSIER_PERMISSION_DENIED (mode),
 * DOSSIER_INVALID_ARGUMENT (not a token: empty, too short or long, blanks
 * or control characters). Messages name the file, never the token. */
int bootstrap_token_load(const char *path, uint8_t hash[32], int *have,
                         struct dossier_status *st);

/* 1 if @token (@len bytes) has SHA-256 @hash, in constant time. */
int bootstrap_token_matches(const uint8_t hash[32], const char *token,
                            size_t len);

#endif
