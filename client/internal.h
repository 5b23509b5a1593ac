/* What the files of libdossier share: the unary call, and conversions
 * between the public structs and the protobuf messages. Not installed. */
#ifndef DOSSIER_CLIENT_INTERNAL_H
#define DOSSIER_CLIENT_INTERNAL_H

#include <protobuf-c/protobuf-c.h>

#include <dossier/dossier.h>

#include "dossier.pb-c.h"

/* Methods of the client, indexes into its registered-call table. */
enum client_method {
    M_PUT,
    M_GET,
    M_DELETE,
    M_LIST_BY_SUBJECT,
    M_FIND_BY_INDEX,
    M_SCAN,
    M_DEFINE_KIND,
    M_GET_KIND,
    M_LIST_KINDS,
    M_CLUSTER_STATUS,
    M_CLUSTER_ADD,
    M_CLUSTER_PROMOTE,
    M_CLUSTER_REMOVE,
    M_CLUSTER_TRANSFER,
    M_DEFINE_PURPOSE,
    M_GET_PURPOSE,
    M_LIST_PURPOSES,
    M_CONSENT_GRANT,
    M_CONSENT_WITHDRAW,
    M_CONSENT_GET,
    M_CONSENT_HISTORY,
    M_SUBJECT_STATUS,
    M_SUBJECT_RESTRICT,
    M_SUBJECT_UNRESTRICT,
    M_SUBJECT_ERASE,
    M_AUDIT_READ,
    M_AUDIT_PUBLIC_KEY,
    M_HEALTH_CHECK,
    M_ERASURE_LEDGER,
    M_BACKUP_CREATE,
    M_BACKUP_LIST,
    M_SUBJECT_EXPORT,
    M_REQUEST_FILE,
    M_REQUEST_LIST,
    M_REQUEST_GET,
    M_REQUEST_EXECUTE,
    M_REQUEST_COMPLETE,
    M_PRINCIPAL_ADD,
    M_PRINCIPAL_REMOVE,
    M_PRINCIPAL_LIST,
    M_WATCH,
    M_FIND_DUPLICATES,
    M_AGGREGATE,
    M_SEGMENT_DEFINE,
    M_SEGMENT_RUN,
    M_LIST_LINKS,
    M_REQUEST_EXTEND,
    M_KEYS_ROTATE,
    M_KEYS_STATUS,
    M_SUBJECT_RECTIFY,
    M_SUBJECT_CERTIFICATE,
    M_DUP_RULES_DEFINE,
    M_DUP_RULES_GET,
    M_DUP_RULES_LIST,
    M_MERGE,
    M_MERGE_UNDO,
    M_MERGE_CONFIRM,
    M_MERGE_LIST,
    M_SEGMENT_GET,
    M_SEGMENT_LIST,
    M_COUNT,
};

/* Writes carry a request id so that a retry is applied once. */
static inline int client_method_is_write(enum client_method m)
{
    switch (m) {
    case M_PUT:
    case M_DELETE:
    case M_DEFINE_KIND:
    case M_CLUSTER_ADD:
    case M_CLUSTER_PROMOTE:
    case M_CLUSTER_REMOVE:
    case M_CLUSTER_TRANSFER:
    case M_DEFINE_PURPOSE:
    case M_CONSENT_GRANT:
    case M_CONSENT_WITHDRAW:
    case M_SUBJECT_RESTRICT:
    case M_SUBJECT_UNRESTRICT:
    case M_SUBJECT_ERASE:
    case M_REQUEST_FILE:
    case M_REQUEST_EXECUTE:
    case M_REQUEST_COMPLETE:
    case M_PRINCIPAL_ADD:
    case M_PRINCIPAL_REMOVE:
    case M_SEGMENT_DEFINE:
    case M_REQUEST_EXTEND:
    case M_KEYS_ROTATE:
    case M_SUBJECT_RECTIFY:
    case M_DUP_RULES_DEFINE:
    case M_MERGE:
    case M_MERGE_UNDO:
    case M_MERGE_CONFIRM:
        return 1;
    default:
        return 0;
    }
}

/* Sends @req (borrowed) to method @m and waits for the answer, decoded
 * into *@resp as @resp_desc (free with protobuf_c_message_free_unpacked
 * and a NULL allocator). Returns 0 or the call's error code. */
int client_unary(struct dossier_client *c, const struct dossier_call_options *co,
                 enum client_method m, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc,
                 ProtobufCMessage **resp, struct dossier_status *st);

/* The client's default timeout (ms) of a call. */
int64_t client_timeout_ms(const struct dossier_client *c);

/* Server streaming: sends @req to method @m (failing over like a unary
 * call until a first message arrives) and calls @on_msg with each message
 * decoded as @d (borrowed for the call). A non-zero return from @on_msg
 * (with @st set) cancels the stream and is returned. */
typedef int (*client_stream_cb)(void *arg, ProtobufCMessage *msg,
                                struct dossier_status *st);
int client_stream(struct dossier_client *c,
                  const struct dossier_call_options *co, enum client_method m,
                  const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *d, client_stream_cb on_msg,
                  void *arg, struct dossier_status *st);

/* A public record seen as a message. Borrows every string of @r; holds
 * the arrays it needs, freed by record_pb_release(). */
struct record_pb {
    Dossier__V1__Record msg;
    Dossier__V1__Field *fields, **field_ptrs;
    Dossier__V1__Value *values;
    Dossier__V1__Link *links, **link_ptrs;
};
int record_pb_init(struct record_pb *p, const struct dossier_record *r,
                   struct dossier_status *st);
void record_pb_release(struct record_pb *p);

/* A new public record copied from @m; NULL when out of memory. */
struct dossier_record *record_from_pb(const Dossier__V1__Record *m);

/* The same for values. */
int value_to_pb(const struct dossier_value *v, Dossier__V1__Value *out);

/* Safe string: "" for NULL. */
static inline char *str_or_empty(const char *s)
{
    return (char *)(s ? s : "");
}

#endif
