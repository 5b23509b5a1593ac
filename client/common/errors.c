/* The project's single error table: names, messages and the gRPC mapping. */
#include "errors.h"

#include <stdio.h>
#include <string.h>

struct err_row {
    const char *name;
    const char *message;
};

static const struct err_row rows[] = {
#define X(name, value, msg) [value] = {#name, msg},
    DOSSIER_ERRORS(X)
#undef X
};

#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

const char *dossier_code_name(int code)
{
    if (code < 0 || (size_t)code >= N_ROWS || !rows[code].name)
        return "UNKNOWN";
    return rows[code].name;
}

const char *dossier_code_message(int code)
{
    if (code < 0 || (size_t)code >= N_ROWS || !rows[code].message)
        return "unknown error";
    return rows[code].message;
}

int err_from_name(const char *name)
{
    for (size_t i = 0; i < N_ROWS; i++)
        if (rows[i].name && strcmp(rows[i].name, name) == 0)
            return (int)i;
    return -1;
}

grpc_status_code err_to_grpc(int code)
{
    switch (code) {
    case DOSSIER_OK: return GRPC_STATUS_OK;
    case DOSSIER_INVALID_ARGUMENT:
    case DOSSIER_UNKNOWN_KIND:
    case DOSSIER_SCHEMA_VIOLATION: return GRPC_STATUS_INVALID_ARGUMENT;
    case DOSSIER_NOT_FOUND: return GRPC_STATUS_NOT_FOUND;
    case DOSSIER_ALREADY_EXISTS: return GRPC_STATUS_ALREADY_EXISTS;
    /* ABORTED is gRPC's status for a lost read-modify-write race. */
    case DOSSIER_VERSION_CONFLICT:
    case DOSSIER_RETRY: return GRPC_STATUS_ABORTED;
    case DOSSIER_TOO_LARGE:
    case DOSSIER_NOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case DOSSIER_UNAUTHENTICATED: return GRPC_STATUS_UNAUTHENTICATED;
    case DOSSIER_PERMISSION_DENIED: return GRPC_STATUS_PERMISSION_DENIED;
    case DOSSIER_FAILED_PRECONDITION:
    case DOSSIER_WRONG_KEY: return GRPC_STATUS_FAILED_PRECONDITION;
    /* A node that cannot write (disk full, failing disk) is unavailable for
     * writes; a client may try another node. */
    case DOSSIER_UNAVAILABLE:
    case DOSSIER_IO: return GRPC_STATUS_UNAVAILABLE;
    case DOSSIER_DEADLINE_EXCEEDED: return GRPC_STATUS_DEADLINE_EXCEEDED;
    case DOSSIER_CANCELLED: return GRPC_STATUS_CANCELLED;
    case DOSSIER_CORRUPT: return GRPC_STATUS_DATA_LOSS;
    case DOSSIER_UNIMPLEMENTED: return GRPC_STATUS_UNIMPLEMENTED;
    case DOSSIER_OUT_OF_RANGE: return GRPC_STATUS_OUT_OF_RANGE;
    default: return GRPC_STATUS_INTERNAL;
    }
}

int err_from_grpc(grpc_status_code s, const char *name)
{
    if (name) {
        int code = err_from_name(name);
        /* A trailer naming success on a failed call is not believed. */
        if (code > 0 || (code == 0 && s == GRPC_STATUS_OK))
            return code;
    }
    switch (s) {
    case GRPC_STATUS_OK: return DOSSIER_OK;
    case GRPC_STATUS_INVALID_ARGUMENT: return DOSSIER_INVALID_ARGUMENT;
    case GRPC_STATUS_NOT_FOUND: return DOSSIER_NOT_FOUND;
    case GRPC_STATUS_ALREADY_EXISTS: return DOSSIER_ALREADY_EXISTS;
    case GRPC_STATUS_ABORTED: return DOSSIER_RETRY;
    /* Without a Dossier trailer this is gRPC's own message size limit. */
    case GRPC_STATUS_RESOURCE_EXHAUSTED: return DOSSIER_TOO_LARGE;
    case GRPC_STATUS_UNAUTHENTICATED: return DOSSIER_UNAUTHENTICATED;
    case GRPC_STATUS_PERMISSION_DENIED: return DOSSIER_PERMISSION_DENIED;
    case GRPC_STATUS_FAILED_PRECONDITION: return DOSSIER_FAILED_PRECONDITION;
    case GRPC_STATUS_UNAVAILABLE: return DOSSIER_UNAVAILABLE;
    case GRPC_STATUS_DEADLINE_EXCEEDED: return DOSSIER_DEADLINE_EXCEEDED;
    case GRPC_STATUS_CANCELLED: return DOSSIER_CANCELLED;
    case GRPC_STATUS_DATA_LOSS: return DOSSIER_CORRUPT;
    case GRPC_STATUS_UNIMPLEMENTED: return DOSSIER_UNIMPLEMENTED;
    case GRPC_STATUS_OUT_OF_RANGE: return DOSSIER_OUT_OF_RANGE;
    default: return DOSSIER_INTERNAL;
    }
}

int err_vset(struct dossier_status *st, int code, const char *fmt, va_list ap)
{
    if (!st)
        return code;
    st->code = code;
    if (!fmt || !fmt[0])
        snprintf(st->message, sizeof(st->message), "%s",
                 code ? dossier_code_message(code) : "");
    else
        vsnprintf(st->message, sizeof(st->message), fmt, ap);
    return code;
}

int err_set(struct dossier_status *st, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(st, code, fmt, ap);
    va_end(ap);
    return code;
}

int err_ok(struct dossier_status *st)
{
    if (st) {
        st->code = 0;
        st->message[0] = '\0';
    }
    return 0;
}
