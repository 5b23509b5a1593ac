/* The project's single error table, as the node, the client library and the
 * tools use it: names, gRPC status mapping and filling a dossier_status. */
#ifndef DOSSIER_COMMON_ERRORS_H
#define DOSSIER_COMMON_ERRORS_H

#include <stdarg.h>

#include <grpc/status.h>

#include <dossier/dossier.h>

/* Trailing metadata key that carries the Dossier error name on the wire. */
#define ERR_METADATA_KEY "dossier-error"

/* The gRPC status a code travels as. Codes and statuses are mapped here
 * and nowhere else. */
grpc_status_code err_to_grpc(int code);

/* The code for a call that ended with gRPC status @s. @name is the value of
 * the "dossier-error" trailer, or NULL when the node sent none (the failure
 * came from the transport, e.g. a refused connection or an oversized
 * message). */
int err_from_grpc(grpc_status_code s, const char *name);

/* The code named @name ("NOT_FOUND"), or -1. */
int err_from_name(const char *name);

/* Fills @st (may be NULL) with @code and a printf-style message, and
 * returns @code, so that callers can write `return err_set(st, ...)`.
 * A NULL or empty @fmt (possible through err_vset) uses the table's
 * message.
 *
 * Convention: the public API (dossier.h) fills a status on success too;
 * internal modules fill it only when they fail. */
int err_set(struct dossier_status *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int err_vset(struct dossier_status *st, int code, const char *fmt,
             va_list ap) __attribute__((format(printf, 3, 0)));

/* Clears @st (may be NULL) to OK and returns 0. */
int err_ok(struct dossier_status *st);

#endif
