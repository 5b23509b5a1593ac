/* PEM files for TLS (certificates, CA bundles, private keys), read whole:
 * gRPC's SSL credentials take PEM text, not paths. Shared by the node and
 * the client library. */
#ifndef DOSSIER_COMMON_PEMFILE_H
#define DOSSIER_COMMON_PEMFILE_H

#include <dossier/dossier.h>

/* Larger files are refused (a full system CA bundle is about 200 KiB). */
#define PEMFILE_MAX_BYTES (4u << 20)

/* Flags of pemfile_read(). */
enum pemfile_flags {
    /* Refuse a file that group or others can access, as the master key
     * file is (keyfile_check_private()): for the node's private key. */
    PEMFILE_OWNER_ONLY = 1,
};

/* Reads @path whole into *@out (NUL-terminated, in sodium_malloc memory
 * that pemfile_free() wipes, since it may hold a private key). @what names
 * the file in messages ("TLS key file"). On failure *@out is NULL.
 * Errors: DOSSIER_IO (cannot open or read, not a regular file),
 * DOSSIER_PERMISSION_DENIED (PEMFILE_OWNER_ONLY and the mode),
 * DOSSIER_INVALID_ARGUMENT (empty, too large, or not PEM), DOSSIER_NOMEM.
 * Every message names @path. */
int pemfile_read(const char *path, const char *what, unsigned flags,
                 char **out, struct dossier_status *st);

/* Wipes and frees @pem (NULL is a no-op). */
void pemfile_free(char *pem);

#endif
