/* libdossier: the C client library of Dossier, a replicated store for
 * customer records. */
#ifndef DOSSIER_DOSSIER_H
#define DOSSIER_DOSSIER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(DOSSIER_BUILDING_LIBRARY)
#define DOSSIER_API __attribute__((visibility("default")))
#else
#define DOSSIER_API
#endif
#define DOSSIER_MUST_CHECK __attribute__((warn_unused_result))

/* ------------------------------------------------------------------------
 * Errors
 *
 * Every fallible call returns 0 (DOSSIER_OK) or one of the codes below, and
 * fills the caller's optional struct dossier_status with a message for a
 * human. Codes are stable: a program may switch on them. The same table is
 * used by the node; on the wire a code travels as the gRPC status plus its
 * name in the trailing metadata key "dossier-error".
 *
 *  X(NAME, value, message) */
#define DOSSIER_ERRORS(X)                                                     \
    X(OK, 0, "ok")                                                          \
    X(INVALID_ARGUMENT, 1, "invalid argument")                              \
    X(NOT_FOUND, 2, "not found")                                            \
    X(ALREADY_EXISTS, 3, "already exists")                                  \
    X(VERSION_CONFLICT, 4, "version conflict")                              \
    X(UNKNOWN_KIND, 5, "unknown kind")                                      \
    X(SCHEMA_VIOLATION, 6, "record does not match its kind's schema")       \
    X(TOO_LARGE, 7, "message too large")                                    \
    X(UNAUTHENTICATED, 8, "unauthenticated")                                \
    X(PERMISSION_DENIED, 9, "permission denied")                            \
    X(FAILED_PRECONDITION, 10, "failed precondition")                       \
    X(UNAVAILABLE, 11, "unavailable")                                       \
    X(DEADLINE_EXCEEDED, 12, "deadline exceeded")                           \
    X(CANCELLED, 13, "cancelled")                                           \
    X(NOMEM, 14, "out of memory")                                           \
    X(IO, 15, "input/output error")                                         \
    X(CORRUPT, 16, "corrupt data")                                          \
    X(WRONG_KEY, 17, "wrong master key")                                    \
    X(RETRY, 18, "transient conflict, retry")                               \
    X(INTERNAL, 19, "internal error")                                       \
    X(UNIMPLEMENTED, 20, "method not implemented by this node")            \
    X(OUT_OF_RANGE, 21, "before the history the node keeps")

enum dossier_code {
#define DOSSIER_X_ENUM(name, value, msg) DOSSIER_##name = value,
    DOSSIER_ERRORS(DOSSIER_X_ENUM)
#undef DOSSIER_X_ENUM
};

#define DOSSIER_STATUS_MESSAGE_MAX 512

/* Outcome of a call. The caller owns it; every call that takes one fills it
 * (on success too: code 0 and an empty message). */
struct dossier_status {
    int code;
    char message[DOSSIER_STATUS_MESSAGE_MAX];
};

/* "VERSION_CONFLICT" for DOSSIER_VERSION_CONFLICT; "UNKNOWN" for a code not
 * in the table. The string is static. */
DOSSIER_API const char *dossier_code_name(int code);

/* The table's one-line description of @code ("version conflict"). Static. */
DOSSIER_API const char *dossier_code_message(int code);

/* ------------------------------------------------------------------------
 * Values, fields, links and records
 *
 * Records are plain structs. A record the library returns is owned by the
 * caller and freed with dossier_record_free(). A record the caller builds
 * for dossier_put() may point at the caller's own memory (borrowed; the
 * library copies what it needs) or be made with dossier_record_new() and the
 * setters below, which copy every string. */

enum dossier_type {
    DOSSIER_TYPE_NULL = 0,
    DOSSIER_TYPE_STRING,
    DOSSIER_TYPE_INT,
    DOSSIER_TYPE_DOUBLE,
    DOSSIER_TYPE_BOOL,
};

struct dossier_value {
    enum dossier_type type;
    union {
        const char *s; /* UTF-8, NUL-terminated */
        int64_t i;
        double d;
        int b;
    } u;
};

struct dossier_field {
    const char *name;
    struct dossier_value value;
};

/* A link to another record (see "Links between records" below). The
 * label is a name like a kind's (lower-case letters, digits and _, at most
 * 63 bytes) and is not secret: never put personal data in it. A record's
 * links are a set, read back ordered by label and kind. */
struct dossier_link {
    const char *label; /* e.g. "works_at" */
    const char *kind;
    const char *id;
};

struct dossier_record {
    const char *kind;
    const char *id;
    const char *subject_id; /* NULL or "" for records without a subject */
    uint64_t version;       /* output only: store revision of last change */
    int64_t created_at_ms;  /* output only */
    int64_t updated_at_ms;  /* output only */
    size_t n_fields;
    struct dossier_field *fields;
    size_t n_links;
    struct dossier_link *links;
};

/* A new empty record owning copies of @kind, @id and @subject_id (NULL for
 * none). Returns NULL when out of memory. */
DOSSIER_API struct dossier_record *dossier_record_new(const char *kind,
                                                      const char *id,
                                                      const char *subject_id);

/* Setters for records made by dossier_record_new() or returned by the
 * library: each copies @name and the value, replacing a field of the same
 * name. Errors: DOSSIER_NOMEM. */
DOSSIER_API int dossier_record_set_string(struct dossier_record *r,
                                          const char *name, const char *v);
DOSSIER_API int dossier_record_set_int(struct dossier_record *r,
                                       const char *name, int64_t v);
DOSSIER_API int dossier_record_set_double(struct dossier_record *r,
                                          const char *name, double v);
DOSSIER_API int dossier_record_set_bool(struct dossier_record *r,
                                        const char *name, int v);
DOSSIER_API int dossier_record_add_link(struct dossier_record *r,
                                        const char *label, const char *kind,
                                        const char *id);

/* The field called @name, or NULL. Borrowed from @r. */
DOSSIER_API const struct dossier_value *
dossier_record_field(const struct dossier_record *r, const char *name);

/* Frees a record made by the library (dossier_record_new, dossier_get, a
 * page). NULL is a no-op. Never pass a record built from borrowed memory. */
DOSSIER_API void dossier_record_free(struct dossier_record *r);

/* ------------------------------------------------------------------------
 * Schemas */

enum dossier_field_type {
    DOSSIER_FIELD_UNSPECIFIED = 0,
    DOSSIER_FIELD_STRING,
    DOSSIER_FIELD_INT,
    DOSSIER_FIELD_DOUBLE,
    DOSSIER_FIELD_BOOL,
    DOSSIER_FIELD_TIMESTAMP, /* int, ms since the epoch */
    DOSSIER_FIELD_EMAIL,     /* string, indexed lower-cased */
    DOSSIER_FIELD_PHONE,     /* string, stored in E.164 */
    DOSSIER_FIELD_ENUM,      /* string, one of allowed_values */
    DOSSIER_FIELD_TAGS,      /* string: a set of comma-separated tags,
                                stored lower-cased, each once, sorted
                                ("eu,vip"); each tag 1 to 64 characters
                                [a-z0-9_.:/-]; never indexed */
};

enum dossier_category {
    DOSSIER_CATEGORY_UNSPECIFIED = 0,
    DOSSIER_CATEGORY_IDENTITY,
    DOSSIER_CATEGORY_CONTACT,
    DOSSIER_CATEGORY_FINANCIAL,
    DOSSIER_CATEGORY_SPECIAL, /* GDPR Art. 9 */
    DOSSIER_CATEGORY_BEHAVIORAL,
    DOSSIER_CATEGORY_OPERATIONAL,
};

struct dossier_field_schema {
    const char *name;
    enum dossier_field_type type;
    enum dossier_category category;
    int indexed;
    int required;
    uint32_t retention_days; /* 0: no retention limit */
    size_t n_allowed_values;
    const char **allowed_values;
    const char *description; /* may be NULL */
};

/* Where a kind's record retention is counted from. */
enum dossier_retention_base {
    DOSSIER_RETENTION_SINCE_UPDATE = 0,   /* the record's last update */
    DOSSIER_RETENTION_SINCE_CREATION = 1, /* its creation */
};

struct dossier_kind_schema {
    const char *kind;
    int personal; /* records must name a subject */
    int builtin;  /* output only */
    uint64_t version; /* output only */
    const char *description;
    size_t n_fields;
    struct dossier_field_schema *fields;
    /* Whole records are deleted by the retention sweep once this many days
     * have passed since their base; 0: records are kept. */
    uint32_t record_retention_days;
    enum dossier_retention_base record_retention_base;
};

/* "string", "email", ...; NULL for an unknown value. Static. */
DOSSIER_API const char *dossier_field_type_name(enum dossier_field_type t);
DOSSIER_API const char *dossier_category_name(enum dossier_category c);
/* Parse the names above; return -1 for an unknown name. */
DOSSIER_API int dossier_field_type_parse(const char *name);
DOSSIER_API int dossier_category_parse(const char *name);

/* Frees a schema returned by the library. NULL is a no-op. */
DOSSIER_API void dossier_kind_schema_free(struct dossier_kind_schema *s);

/* ------------------------------------------------------------------------
 * Connecting */

/* Client settings. Initialise with dossier_client_options_init() and then
 * set what you need: fields added in later versions get safe defaults. */
struct dossier_client_options {
    const char *target;     /* "host:port" of a node, or several separated
                               by commas (the nodes of a cluster): calls go
                               to one and move to another when it fails;
                               required */
    const char *purpose;    /* default purpose of calls; may be NULL */
    const char *token;      /* bearer token of the calling principal (from
                               `dossier token new`); NULL: none. Up to 128
                               printable ASCII characters. */
    int64_t timeout_ms;     /* default deadline of a call; default 10000 */
    size_t max_message_bytes; /* largest reply accepted; default 16 MiB */
    /* TLS (paths of PEM files; all NULL: plaintext, the default).
     * tls_ca set: calls go over TLS, and each node's certificate must
     * verify against this CA bundle and name the address dialled (SAN
     * IP:... or DNS:...). tls_cert and tls_key (both or neither, and only
     * with tls_ca): the client certificate and its key, presented to nodes
     * that ask for one; its subject CN can name a principal (see dossierd
     * --auth-file), so no token is needed. */
    const char *tls_ca;
    const char *tls_cert;
    const char *tls_key;
};

DOSSIER_API void dossier_client_options_init(struct dossier_client_options *o);

enum dossier_consistency {
    DOSSIER_LINEARIZABLE = 0, /* default: a read sees every write that was
                                 acknowledged before it started */
    DOSSIER_SERIALIZABLE,     /* answered by any node from its own state,
                                 which may lag behind (faster, and works
                                 without a leader) */
};

/* How far behind the node that answered a serializable read was: it had
 * applied the log up to applied_index, and knew it committed up to
 * commit_index. 0/0 when the node did not say. */
struct dossier_staleness {
    uint64_t applied_index;
    uint64_t commit_index;
};

/* Per-call settings; pass NULL to every call for the client's defaults. */
struct dossier_call_options {
    const char *purpose; /* NULL: the client's default purpose */
    int64_t timeout_ms;  /* 0: the client's default; covers retries */
    enum dossier_consistency consistency; /* reads only */
    struct dossier_staleness *staleness;  /* out, may be NULL: filled by
                                             serializable reads */
};

struct dossier_client;

/* Opens a client for @o->target (strings copied). The connection is made
 * lazily: an unreachable node shows as DOSSIER_UNAVAILABLE on the first
 * call, not here. A client is safe to share between threads.
 *
 * Failover: a call that finds its node unreachable, without a leader,
 * losing leadership or stopping, is retried on the next target until its
 * deadline,
 * with a short growing pause. Every write carries a request id, the same
 * on each retry, and the cluster applies a retried write only once.
 *
 * The TLS files are read here (a node's certificate is checked at the
 * first call: a node that does not verify, or that refuses this client's
 * certificate, shows as DOSSIER_UNAVAILABLE then).
 *
 * Errors: DOSSIER_INVALID_ARGUMENT (no target, too many; a TLS file that
 * cannot be read or is not PEM, named in the message; tls_cert without
 * tls_key or either without tls_ca), DOSSIER_NOMEM. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_client_open(const struct dossier_client_options *o,
                    struct dossier_client **out, struct dossier_status *st);

/* Closes @c: waits for the callbacks of asynchronous calls still in flight,
 * then frees it. Synchronous calls running on other threads must have
 * returned. NULL is a no-op. */
DOSSIER_API void dossier_client_close(struct dossier_client *c);

/* ------------------------------------------------------------------------
 * Records
 *
 * Every call below may also fail with DOSSIER_UNAVAILABLE (node not
 * reachable), DOSSIER_DEADLINE_EXCEEDED, DOSSIER_INVALID_ARGUMENT (a missing
 * or malformed argument, named in the message), DOSSIER_UNKNOWN_KIND,
 * DOSSIER_TOO_LARGE and DOSSIER_INTERNAL. */

/* Pass as expected_version to skip the version check. */
#define DOSSIER_ANY_VERSION UINT64_MAX

struct dossier_put_result {
    uint64_t version;
    int created;
    int64_t updated_at_ms;
};

/* Creates or replaces record @r (borrowed): its fields and links replace
 * the stored ones. @expected_version is DOSSIER_ANY_VERSION, 0 (must not
 * exist yet) or the version the stored record must have. @res may be NULL.
 * Durable when it returns 0.
 *
 * Errors: DOSSIER_SCHEMA_VIOLATION (message names the field),
 * DOSSIER_VERSION_CONFLICT, DOSSIER_ALREADY_EXISTS (expected 0). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_put(struct dossier_client *c, const struct dossier_call_options *co,
            const struct dossier_record *r, uint64_t expected_version,
            struct dossier_put_result *res, struct dossier_status *st);

/* Reads record (@kind, @id) into *@out, which the caller frees with
 * dossier_record_free(). Errors: DOSSIER_NOT_FOUND. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_get(struct dossier_client *c, const struct dossier_call_options *co,
            const char *kind, const char *id, struct dossier_record **out,
            struct dossier_status *st);

/* Deletes record (@kind, @id); @expected_version as for dossier_put(), 0
 * excepted. @deleted_version (may be NULL) gets the version deleted.
 * Errors: DOSSIER_NOT_FOUND, DOSSIER_VERSION_CONFLICT. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_delete(struct dossier_client *c, const struct dossier_call_options *co,
               const char *kind, const char *id, uint64_t expected_version,
               uint64_t *deleted_version, struct dossier_status *st);

/* A page of records. The caller releases it with dossier_page_release(). */
struct dossier_page {
    size_t n_records;
    struct dossier_record **records;
    char *next_page_token; /* NULL when there is nothing more */
    /* The store revision the page was read at: it shows every change up
     * to it. A scan followed by dossier_watch() from the first page's
     * revision + 1 misses no change (a change may show in both). */
    uint64_t revision;
};

/* Which page to fetch: page_size 0 means 100 (at most 1000); page_token
 * NULL for the first page, else a previous page's next_page_token. */
struct dossier_page_request {
    uint32_t page_size;
    const char *page_token;
};

DOSSIER_API void dossier_page_release(struct dossier_page *p);

/* Records of subject @subject_id, of kind @kind (NULL: all kinds). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_list_by_subject(struct dossier_client *c,
                        const struct dossier_call_options *co,
                        const char *subject_id, const char *kind,
                        const struct dossier_page_request *pr,
                        struct dossier_page *out, struct dossier_status *st);

/* Records of @kind whose indexed field @field equals @v after
 * normalisation (emails compare case-insensitively, phones in E.164).
 * Errors: DOSSIER_INVALID_ARGUMENT when the field is not indexed. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_find(struct dossier_client *c, const struct dossier_call_options *co,
             const char *kind, const char *field,
             const struct dossier_value *v,
             const struct dossier_page_request *pr, struct dossier_page *out,
             struct dossier_status *st);

/* Every record of @kind, a page at a time, in an order that is stable
 * but not meaningful. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_scan(struct dossier_client *c, const struct dossier_call_options *co,
             const char *kind, const struct dossier_page_request *pr,
             struct dossier_page *out, struct dossier_status *st);

/* ------------------------------------------------------------------------
 * Links between records
 *
 * A record's links (struct dossier_link, written with dossier_put) are
 * kept in an index both ways: from a record to its targets (outgoing) and
 * from a record to the records that link to it (incoming). Deleting or
 * erasing either end removes the link. */

enum dossier_link_direction {
    DOSSIER_LINKS_BOTH = 0,     /* outgoing, then incoming */
    DOSSIER_LINKS_OUTGOING = 1, /* the record's links, to their targets */
    DOSSIER_LINKS_INCOMING = 2, /* other records' links to the record */
};

/* A record at the other end of a link. */
struct dossier_linked_record {
    char *label;
    /* DOSSIER_LINKS_OUTGOING: the record asked about links to @record;
     * DOSSIER_LINKS_INCOMING: @record links to it. */
    enum dossier_link_direction direction;
    struct dossier_record *record;
};

/* A page of linked records. The caller releases it with
 * dossier_link_page_release(). */
struct dossier_link_page {
    size_t n_links;
    struct dossier_linked_record *links;
    char *next_page_token; /* NULL when there is nothing more */
};

DOSSIER_API void dossier_link_page_release(struct dossier_link_page *p);

/* The records linked from and/or to record (@kind, @id), in @direction,
 * with link label @label only (NULL: every label), a page at a time
 * (@pr may be NULL: the first page of 100), into @out. Each comes as
 * dossier_get() would return it under the call's purpose: fields the
 * purpose may not see are left out. Records the purpose may not read at
 * all (a restricted subject, or one without the consent the purpose
 * needs) and links to records that do not exist are left out of the
 * page, so a page may be short while next_page_token says more follow.
 * The read is audited.
 * Errors: DOSSIER_NOT_FOUND (no such record), DOSSIER_PERMISSION_DENIED
 * (the purpose may not read the record itself), DOSSIER_INVALID_ARGUMENT
 * (a direction not above, a label that is not a name, a foreign page
 * token). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_list_links(struct dossier_client *c,
                   const struct dossier_call_options *co, const char *kind,
                   const char *id, enum dossier_link_direction direction,
                   const char *label, const struct dossier_page_request *pr,
                   struct dossier_link_page *out, struct dossier_status *st);

/* ------------------------------------------------------------------------
 * Asynchronous records calls
 *
 * For services that keep many calls in flight from few threads. A call
 * started this way returns at once; its callback runs exactly once, later,
 * on the client's completion thread (one per client, started on first use).
 * A callback should return quickly; it may start further calls, synchronous
 * or not. dossier_client_close() waits until every callback has run.
 * A start function that returns an error never runs the callback. */

/* @st is borrowed for the call; @res is NULL unless st->code is 0. */
typedef void (*dossier_put_cb)(void *arg, const struct dossier_status *st,
                               const struct dossier_put_result *res);

/* @r is the caller's to free with dossier_record_free(); NULL unless
 * st->code is 0. */
typedef void (*dossier_get_cb)(void *arg, const struct dossier_status *st,
                               struct dossier_record *r);

/* As dossier_put(); @r is copied before this returns. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_put_async(struct dossier_client *c,
                  const struct dossier_call_options *co,
                  const struct dossier_record *r, uint64_t expected_version,
                  dossier_put_cb cb, void *arg, struct dossier_status *st);

/* As dossier_get(). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_get_async(struct dossier_client *c,
                  const struct dossier_call_options *co, const char *kind,
                  const char *id, dossier_get_cb cb, void *arg,
                  struct dossier_status *st);

/* ------------------------------------------------------------------------
 * Schema */

/* Creates or extends kind @s (borrowed). @out (may be NULL) gets the kind
 * as stored, to free with dossier_kind_schema_free().
 * Errors: DOSSIER_INVALID_ARGUMENT, DOSSIER_FAILED_PRECONDITION (an
 * incompatible change to an existing kind; the message says which). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_schema_define(struct dossier_client *c,
                      const struct dossier_call_options *co,
                      const struct dossier_kind_schema *s,
                      struct dossier_kind_schema **out,
                      struct dossier_status *st);

DOSSIER_API DOSSIER_MUST_CHECK int
dossier_schema_get(struct dossier_client *c,
                   const struct dossier_call_options *co, const char *kind,
                   struct dossier_kind_schema **out,
                   struct dossier_status *st);

/* Every kind, built-in ones included. *@out is an array of *@n schemas;
 * free each with dossier_kind_schema_free() and the array with free(). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_schema_list(struct dossier_client *c,
                    const struct dossier_call_options *co,
                    struct dossier_kind_schema ***out, size_t *n,
                    struct dossier_status *st);

/* ------------------------------------------------------------------------
 * Cluster */

#define DOSSIER_CLUSTER_MAX 18
#define DOSSIER_ADDRESS_MAX 256

struct dossier_cluster_member {
    uint64_t id;
    char address[DOSSIER_ADDRESS_MAX];
    int voter;            /* 0: a learner */
    uint64_t match_index; /* known on the leader only */
    int active;           /* known on the leader only */
};

/* One node's view of its cluster. */
struct dossier_cluster_status {
    uint64_t node_id;
    char role[16]; /* "leader", "follower", "candidate", "pre-candidate" */
    uint64_t leader_id; /* 0: none known */
    char leader_address[DOSSIER_ADDRESS_MAX];
    uint64_t term, commit_index, applied_index, first_index, last_index;
    int keys_ready;
    size_t n_members;
    struct dossier_cluster_member members[DOSSIER_CLUSTER_MAX];
};

/* The status as the first reachable target sees it. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_cluster_status(struct dossier_client *c,
                       const struct dossier_call_options *co,
                       struct dossier_cluster_status *out,
                       struct dossier_status *st);

/* Membership changes, run by the leader and answered once applied, with
 * the leader's status in @out (may be NULL). A new node is added as a
 * learner (it receives the log without voting), then promoted to voter
 * once caught up. Errors: DOSSIER_ALREADY_EXISTS (add: already a member),
 * DOSSIER_FAILED_PRECONDITION (another change in progress; promote: not a
 * learner, not answering or still catching up; transfer: not a voter),
 * DOSSIER_INVALID_ARGUMENT (removing the last voter), DOSSIER_UNAVAILABLE
 * (no leader, leadership changed, a transfer that did not complete in
 * time). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_cluster_add_node(struct dossier_client *c,
                         const struct dossier_call_options *co, uint64_t id,
                         const char *address,
                         struct dossier_cluster_status *out,
                         struct dossier_status *st);
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_cluster_promote_node(struct dossier_client *c,
                             const struct dossier_call_options *co,
                             uint64_t id, struct dossier_cluster_status *out,
                             struct dossier_status *st);
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_cluster_remove_node(struct dossier_client *c,
                            const struct dossier_call_options *co,
                            uint64_t id, struct dossier_cluster_status *out,
                            struct dossier_status *st);
/* Hands leadership to voter @id; answers once it leads. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_cluster_transfer_leader(struct dossier_client *c,
                                const struct dossier_call_options *co,
                                uint64_t id,
                                struct dossier_cluster_status *out,
                                struct dossier_status *st);

/* Master key rotation (admin role; docs/OPERATIONS.md). A key file holds
 * numbered master key versions; the cluster uses one (the active version)
 * until a rotation moves every wrapped key to a newer one. */
#define DOSSIER_KEY_VERSIONS_MAX 16

struct dossier_key_version {
    uint32_t version;
    char key_id[17]; /* first 8 bytes of its key check value, hex */
};

/* What one node says of the master keys. */
struct dossier_keys_status {
    uint64_t node_id;         /* the node that answered */
    uint32_t active_version;  /* seals the keyset (and, once no rotation
                                 runs, every subject key) */
    char active_key_id[17];
    size_t n_loaded;          /* versions in that node's key file */
    struct dossier_key_version loaded[DOSSIER_KEY_VERSIONS_MAX];
    int has_rotation;         /* a rotation runs or has run: below */
    int rotation_running;
    uint32_t from_version, to_version;
    uint64_t subjects;        /* subject keys when it began (with those
                                 pending merges keep for an undo) */
    uint64_t rewrapped;       /* rewrapped so far */
    uint64_t skipped;         /* erased or replaced before their turn, or
                                 sent twice across a leader change */
    int64_t started_ms, finished_ms;
    char started_by[65];      /* principal; "" without authentication */
};

/* The key versions and the rotation under way (or the last one), as the
 * first reachable target sees them. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_keys_status(struct dossier_client *c,
                    const struct dossier_call_options *co,
                    struct dossier_keys_status *out, struct dossier_status *st);

/* Starts rotating every wrapped key to master key version @version (0:
 * the highest version the leader holds), or resumes the rotation under
 * way to it, and answers once it is recorded, with the status in @out
 * (may be NULL); follow it with dossier_keys_status() until
 * rotation_running is 0. Data is not touched and stays readable
 * throughout. Errors: DOSSIER_FAILED_PRECONDITION (a member does not hold
 * the version, or holds another key under it, or did not answer: the
 * message names each; the cluster uses that version already; another
 * rotation runs), DOSSIER_UNAVAILABLE (no leader). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_keys_rotate(struct dossier_client *c,
                    const struct dossier_call_options *co, uint32_t version,
                    struct dossier_keys_status *out, struct dossier_status *st);

/* A backup of one node (admin role): a consistent RocksDB checkpoint in
 * that node's --backup-dir. Restoring is offline: `dossier backup
 * restore`. */
struct dossier_backup {
    char name[128];
    char path[DOSSIER_ADDRESS_MAX * 4]; /* on the node's machine */
    int64_t created_ms;
    uint64_t node_id;
    uint64_t applied_index;
    uint64_t bytes;
    uint32_t files;
    char cluster_name[DOSSIER_ADDRESS_MAX];
};

/* Makes a backup on the first reachable target (give one target to choose
 * the node) and describes it in @out. Takes as long as hashing the
 * database: give a long deadline. Errors: DOSSIER_FAILED_PRECONDITION (no
 * --backup-dir, or a backup in progress), DOSSIER_IO. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_backup_create(struct dossier_client *c,
                      const struct dossier_call_options *co,
                      struct dossier_backup *out, struct dossier_status *st);

/* The backups of the first reachable target, oldest first, in *@out
 * (free with free()). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_backup_list(struct dossier_client *c,
                    const struct dossier_call_options *co,
                    struct dossier_backup **out, size_t *n,
                    struct dossier_status *st);

/* What the standard gRPC health service (grpc.health.v1.Health) says of a
 * node: SERVING when it has the cluster's keys, knows a leader, has
 * applied what is committed and is not stopping. */
enum dossier_health {
    DOSSIER_HEALTH_UNKNOWN = 0,
    DOSSIER_HEALTH_SERVING = 1,
    DOSSIER_HEALTH_NOT_SERVING = 2,
};

/* Health/Check of @service ("" or NULL: the node as a whole; or a service
 * such as "dossier.v1.Records") on the first reachable target. Needs no
 * credentials. Errors: DOSSIER_NOT_FOUND (a service the node lacks). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_health_check(struct dossier_client *c,
                     const struct dossier_call_options *co,
                     const char *service, enum dossier_health *out,
                     struct dossier_status *st);

/* ------------------------------------------------------------------------
 * Purposes (GDPR purpose limitation)
 *
 * Every data call names a purpose (dossier_call_options.purpose, or the
 * client's default). A purpose says which field categories its answers may
 * carry and on which lawful basis it rests; one whose basis is consent sees
 * nothing of a subject who has not granted it. Unknown purposes are
 * refused (DOSSIER_INVALID_ARGUMENT), as are purposes not granted to the
 * caller's principal (DOSSIER_PERMISSION_DENIED). */

enum dossier_lawful_basis {
    DOSSIER_BASIS_UNSPECIFIED = 0,
    DOSSIER_BASIS_CONSENT,
    DOSSIER_BASIS_CONTRACT,
    DOSSIER_BASIS_LEGAL_OBLIGATION,
    DOSSIER_BASIS_VITAL_INTERESTS,
    DOSSIER_BASIS_PUBLIC_TASK,
    DOSSIER_BASIS_LEGITIMATE_INTEREST,
};

/* "consent", "contract", "legal_obligation", "vital_interests",
 * "public_task", "legitimate_interest"; "unspecified" otherwise. */
DOSSIER_API const char *dossier_basis_name(enum dossier_lawful_basis b);
/* The basis named @name (as above), or DOSSIER_BASIS_UNSPECIFIED. */
DOSSIER_API enum dossier_lawful_basis dossier_basis_parse(const char *name);

#define DOSSIER_PURPOSE_NAME_MAX 64

struct dossier_purpose {
    char name[DOSSIER_PURPOSE_NAME_MAX + 1];
    /* Bit (1u << c) for each enum dossier_category c it may see. */
    unsigned categories;
    enum dossier_lawful_basis basis;
    char description[256];
    int builtin;      /* output only */
    uint64_t version; /* output only */
};

/* Defines or changes purpose @p (admin role). @out (may be NULL) gets it as
 * stored. Errors: DOSSIER_INVALID_ARGUMENT (bad name, no category, no
 * basis), DOSSIER_FAILED_PRECONDITION (a built-in purpose). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_purpose_define(struct dossier_client *c,
                       const struct dossier_call_options *co,
                       const struct dossier_purpose *p,
                       struct dossier_purpose *out, struct dossier_status *st);

/* Errors: DOSSIER_NOT_FOUND. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_purpose_get(struct dossier_client *c,
                    const struct dossier_call_options *co, const char *name,
                    struct dossier_purpose *out, struct dossier_status *st);

/* Every purpose, built-in ones included: *@out is an array of *@n, to
 * free with free(). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_purpose_list(struct dossier_client *c,
                     const struct dossier_call_options *co,
                     struct dossier_purpose **out, size_t *n,
                     struct dossier_status *st);

/* ------------------------------------------------------------------------
 * Consent (compliance or service role) */

enum dossier_consent_state {
    DOSSIER_CONSENT_UNSPECIFIED = 0, /* never decided: as withdrawn */
    DOSSIER_CONSENT_GRANTED,
    DOSSIER_CONSENT_WITHDRAWN,
};

/* "granted", "withdrawn", "unspecified". */
DOSSIER_API const char *dossier_consent_state_name(
    enum dossier_consent_state s);

#define DOSSIER_LABEL_MAX 64

struct dossier_consent_event {
    char purpose[DOSSIER_PURPOSE_NAME_MAX + 1];
    enum dossier_consent_state state;
    char source[DOSSIER_LABEL_MAX + 1];         /* e.g. "signup-form" */
    char notice_version[DOSSIER_LABEL_MAX + 1]; /* e.g. "2026-03" */
    int64_t time_ms;
    char principal[65]; /* who recorded it */
    uint64_t revision;
};

/* Records that subject @subject_id granted (or withdrew) consent to
 * @purpose. @source and @notice_version are short labels, never personal
 * data ([A-Za-z0-9._:/-], at most DOSSIER_LABEL_MAX bytes; NULL: "").
 * @out (may be NULL) gets the event as recorded. Takes effect for every
 * read that starts after it returns.
 * Errors: DOSSIER_INVALID_ARGUMENT (a bad label, an unknown purpose). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_consent_grant(struct dossier_client *c,
                      const struct dossier_call_options *co,
                      const char *subject_id, const char *purpose,
                      const char *source, const char *notice_version,
                      struct dossier_consent_event *out,
                      struct dossier_status *st);
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_consent_withdraw(struct dossier_client *c,
                         const struct dossier_call_options *co,
                         const char *subject_id, const char *purpose,
                         const char *source, const char *notice_version,
                         struct dossier_consent_event *out,
                         struct dossier_status *st);

/* The current state per purpose (@purpose NULL or "": every purpose the
 * subject decided on), or every event oldest first (history). *@out is an
 * array of *@n events, to free with free(); none is not an error. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_consent_get(struct dossier_client *c,
                    const struct dossier_call_options *co,
                    const char *subject_id, const char *purpose,
                    struct dossier_consent_event **out, size_t *n,
                    struct dossier_status *st);
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_consent_history(struct dossier_client *c,
                        const struct dossier_call_options *co,
                        const char *subject_id, const char *purpose,
                        struct dossier_consent_event **out, size_t *n,
                        struct dossier_status *st);

/* ------------------------------------------------------------------------
 * Subject rights (compliance role). @reference: why (a ticket number, a
 * label as for consent; NULL: ""), written to the audit log. */

struct dossier_subject_status {
    uint8_t pseudonym[16]; /* as the audit log names the subject */
    int restricted;        /* Art. 18: only purpose legal_claims reads */
    uint64_t records;      /* records held about the subject */
    /* The subject was merged into another (a merge of duplicates): that
     * subject's pseudonym. Its records, consent and restriction are there
     * now; restricted and records are that subject's. */
    int merged;
    uint8_t merged_into[16];
};

DOSSIER_API DOSSIER_MUST_CHECK int
dossier_subject_status(struct dossier_client *c,
                       const struct dossier_call_options *co,
                       const char *subject_id, const char *reference,
                       struct dossier_subject_status *out,
                       struct dossier_status *st);
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_subject_restrict(struct dossier_client *c,
                         const struct dossier_call_options *co,
                         const char *subject_id, const char *reference,
                         struct dossier_subject_status *out,
                         struct dossier_status *st);
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_subject_unrestrict(struct dossier_client *c,
                           const struct dossier_call_options *co,
                           const char *subject_id, const char *reference,
                           struct dossier_subject_status *out,
                           struct dossier_status *st);

/* What an erasure proves (see dossier.proto, ErasureCertificate). */
struct dossier_erasure_certificate {
    uint8_t pseudonym[16];
    int64_t time_ms;
    uint64_t raft_index;
    uint64_t records_deleted;
    uint8_t signature[64];
    uint8_t public_key[32];
    /* Version 2: the nodes that reported they finished the erasure
     * (applied it and compacted what it erased), ascending, signed.
     * Version 1 (older nodes, or a tracked request whose subject was
     * erased again since): not signed. */
    size_t n_nodes;
    uint64_t nodes[DOSSIER_CLUSTER_MAX];
    /* The voters that had not reported when it was made (not signed). */
    size_t n_pending;
    uint64_t pending[DOSSIER_CLUSTER_MAX];
    int version;
};

/* Erases subject @subject_id everywhere (Art. 17): their data key is
 * destroyed on every node, their records, index entries and consent
 * deleted, their key ranges compacted. Afterwards nothing of them can be
 * read; a later write naming the same id starts a new subject.
 * Erasing a subject the store holds nothing of still succeeds (and is
 * certified): the ledger remembers it. Each node reports when it has
 * finished (compacted what was erased); the answer waits up to 5 s for
 * every voter, and the certificate lists those that did (nodes) and those
 * that had not yet (pending): dossier_subject_certificate() re-issues it
 * later. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_subject_erase(struct dossier_client *c,
                      const struct dossier_call_options *co,
                      const char *subject_id, const char *reference,
                      struct dossier_erasure_certificate *out,
                      struct dossier_status *st);

/* dossier_subject_erase(), waiting up to @wait_ms (0: 5000, at most
 * 60000; less than the call's deadline) for every voter to report. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_subject_erase_wait(struct dossier_client *c,
                           const struct dossier_call_options *co,
                           const char *subject_id, const char *reference,
                           uint32_t wait_ms,
                           struct dossier_erasure_certificate *out,
                           struct dossier_status *st);

/* The certificate of @subject_id's last erasure, signed now over the
 * nodes that have reported finishing it (compliance role).
 * Errors: DOSSIER_NOT_FOUND (never erased). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_subject_certificate(struct dossier_client *c,
                            const struct dossier_call_options *co,
                            const char *subject_id,
                            struct dossier_erasure_certificate *out,
                            struct dossier_status *st);

/* Checks @cert's signature under its own public key (and, when @pk is not
 * NULL, that this is the key @pk); for version 2, over its nodes too.
 * Returns 0 or DOSSIER_CORRUPT. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_erasure_certificate_verify(
    const struct dossier_erasure_certificate *cert, const uint8_t *pk,
    struct dossier_status *st);

/* What a rectification did. */
struct dossier_rectify_result {
    uint64_t version;      /* the record's new version */
    int64_t updated_at_ms;
    size_t n_fields;       /* fields changed (set and removed) */
};

/* Rectification (Art. 16; compliance role): corrects fields of record
 * (@kind, @id) of subject @subject_id. The fields of @set (a record made
 * with dossier_record_new() and the setters; its kind, id and subject are
 * not looked at) replace the record's fields of the same names, a NULL
 * value removing one; the @n_unset fields named in @unset are removed. The
 * record keeps its other fields and its links; the result is checked
 * against the kind's schema as a Put is. @reference (a label, required)
 * says why: the call is audited as subjects.rectify with it, and the
 * subject's export lists every rectification (record, fields, time,
 * principal, reference; never the values). @set may be NULL and @out may
 * be NULL.
 * Errors: DOSSIER_NOT_FOUND (the subject has no such record),
 * DOSSIER_SCHEMA_VIOLATION (a field the kind lacks, a value it refuses,
 * a required field removed), DOSSIER_INVALID_ARGUMENT (nothing to change,
 * a field named twice, a missing or malformed reference),
 * DOSSIER_FAILED_PRECONDITION (removing a field the record lacks),
 * DOSSIER_VERSION_CONFLICT (the record changed while it was rectified:
 * call again). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_subject_rectify(struct dossier_client *c,
                        const struct dossier_call_options *co,
                        const char *subject_id, const char *kind,
                        const char *id, const struct dossier_record *set,
                        const char *const *unset, size_t n_unset,
                        const char *reference,
                        struct dossier_rectify_result *out,
                        struct dossier_status *st);

/* One page of the erasure ledger (compliance role): every erasure this
 * cluster applied, oldest pseudonym order, each as a certificate signed
 * now over the nodes that reported finishing it. `dossier subject ledger` saves it for restores, which
 * replay it so that no erased subject comes back from a backup. @pr may
 * be NULL (first page of 1000); *@next_token (malloc'd, or NULL at the
 * end) asks for the next one. Free *@out with free().
 * Errors: DOSSIER_INVALID_ARGUMENT (bad token, page size over 10000). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_erasure_ledger(struct dossier_client *c,
                       const struct dossier_call_options *co,
                       const struct dossier_page_request *pr,
                       struct dossier_erasure_certificate **out, size_t *n,
                       char **next_token, struct dossier_status *st);

/* ------------------------------------------------------------------------
 * Audit log (compliance role) */

/* One decoded entry. Texts are NUL-terminated copies. */
struct dossier_audit_entry {
    uint64_t index;
    int64_t time_ms;
    char principal[65];
    char action[65];
    char purpose[DOSSIER_PURPOSE_NAME_MAX + 1];
    int has_subject;
    uint8_t subject[16]; /* subject pseudonym */
    size_t n_records;    /* record pseudonyms named (not copied) */
    int outcome;         /* DOSSIER_* code of the call, 0 = ok */
    char reference[65];  /* a subject right's reference ("DSR-114"), or "" */
};

/* The audit log's public key (32 bytes) and how far it reaches. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_audit_public_key(struct dossier_client *c,
                         const struct dossier_call_options *co,
                         uint8_t pk[32], uint64_t *last_index,
                         uint64_t *signed_index, struct dossier_status *st);

/* Up to @limit entries from @from_index on (1: the first), decoded, into
 * *@out (an array of *@n, free with free()). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_audit_read(struct dossier_client *c,
                   const struct dossier_call_options *co, uint64_t from_index,
                   uint32_t limit, struct dossier_audit_entry **out,
                   size_t *n, struct dossier_status *st);

/* Verifies the whole log as the node serves it, against public key @pk
 * (32 bytes, obtained once and kept apart from the node): every entry's
 * encoding, the hash chain, every stored hash and every checkpoint's
 * signature. Returns 0 if it verifies, DOSSIER_CORRUPT if not, with
 * @report filled either way (may be NULL). */
struct dossier_audit_report {
    uint64_t entries;        /* entries checked */
    uint64_t checkpoints;    /* signed checkpoints that matched */
    uint64_t signed_through; /* last entry a checkpoint covers */
    uint64_t unsigned_tail;  /* entries after it (not yet signed) */
    uint64_t bad_index;      /* first entry proven bad, 0 if none */
    uint64_t suspect_from;   /* lowest entry that may hold the cause */
    char message[256];       /* for a human */
};
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_audit_verify(struct dossier_client *c,
                     const struct dossier_call_options *co,
                     const uint8_t pk[32], struct dossier_audit_report *report,
                     struct dossier_status *st);

/* A signed checkpoint of the audit log: the leader's Ed25519 signature
 * that the chain's hash of entries 1..index is @hash (the format is in
 * client/common/audit.h). Kept outside the cluster, it lets a later
 * verification prove the log was not cut off or rewritten since. */
struct dossier_audit_checkpoint {
    uint64_t index;        /* the last entry it signs */
    uint8_t hash[32];      /* the chain's hash of entries 1..index */
    int64_t time_ms;       /* when the leader signed it */
    uint8_t signature[64];
};

/* The log's latest checkpoint, checked against public key @pk (32 bytes;
 * NULL: the key the node names, which proves less).
 * Errors: DOSSIER_NOT_FOUND (nothing signed yet), DOSSIER_CORRUPT (its
 * signature does not verify). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_audit_checkpoint_latest(struct dossier_client *c,
                                const struct dossier_call_options *co,
                                const uint8_t *pk,
                                struct dossier_audit_checkpoint *out,
                                struct dossier_status *st);

/* dossier_audit_verify(), and also against checkpoint @kept (borrowed;
 * NULL: none), one saved earlier outside the cluster: it must be signed
 * by @pk, and the log must still hold its entry with the same chain hash.
 * A log cut off before it fails ("the log ends at entry N, before entry M
 * ..."), and so does one rewritten up to it, even when re-signed with the
 * cluster's key: what the kept copy catches that the log alone cannot.
 * Returns 0, or DOSSIER_CORRUPT with @report saying why. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_audit_verify_kept(struct dossier_client *c,
                          const struct dossier_call_options *co,
                          const uint8_t pk[32],
                          const struct dossier_audit_checkpoint *kept,
                          struct dossier_audit_report *report,
                          struct dossier_status *st);

/* ------------------------------------------------------------------------
 * Subject export (Art. 15 access, Art. 20 portability; compliance role) */

/* What an export is made of, in this order: one header, every record
 * (with every field, whatever the purpose), every consent event, every
 * rectification, every audit entry that names the subject, one footer. */
enum dossier_export_kind {
    DOSSIER_EXPORT_HEADER = 1,
    DOSSIER_EXPORT_RECORD,
    DOSSIER_EXPORT_CONSENT,
    DOSSIER_EXPORT_AUDIT,
    DOSSIER_EXPORT_FOOTER,
    DOSSIER_EXPORT_RECTIFICATION, /* after the consent events */
};

struct dossier_export_header {
    char subject_id[256];
    uint8_t pseudonym[16];
    int64_t exported_at_ms;
    uint64_t applied_index; /* applied when the export began */
    int restricted;
    int erased; /* the erasure ledger holds this subject id */
};

struct dossier_export_footer {
    uint64_t records, consent_events, audit_entries, rectifications;
};

/* One rectification of the subject's records (Art. 16). */
struct dossier_rectification {
    char kind[65];
    char id[257];        /* "" when the record no longer exists */
    uint8_t record[16];  /* the record's pseudonym */
    char fields[1024];   /* the fields changed, comma-separated */
    int64_t time_ms;
    char principal[65];
    char reference[65];
    uint64_t revision;   /* store revision of the rectified version */
};

/* One item; only the member of its kind is set, borrowed for the
 * callback. */
struct dossier_export_item {
    enum dossier_export_kind kind;
    const struct dossier_export_header *header;
    const struct dossier_record *record;
    const struct dossier_consent_event *consent;
    const struct dossier_audit_entry *audit;
    const struct dossier_export_footer *footer;
    const struct dossier_rectification *rectification;
};

/* Called once per item as it arrives; return 0 to go on, anything else to
 * stop (the export then fails with DOSSIER_CANCELLED). */
typedef int (*dossier_export_fn)(void *arg,
                                 const struct dossier_export_item *item);

/* Streams everything stored about @subject_id to @fn, without holding it
 * all in memory. Returns 0 once the footer arrived (and its counts match
 * what came). Give a long deadline for subjects with much history: the
 * node walks its whole audit log. The export is audited. Errors:
 * DOSSIER_INVALID_ARGUMENT, DOSSIER_CANCELLED, DOSSIER_CORRUPT. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_subject_export(struct dossier_client *c,
                       const struct dossier_call_options *co,
                       const char *subject_id, dossier_export_fn fn,
                       void *arg, struct dossier_status *st);

/* ------------------------------------------------------------------------
 * Duplicate detection (service role; a purpose) */

#define DOSSIER_DUPLICATE_RULES_MAX 16
#define DOSSIER_DUPLICATE_RULE_FIELDS_MAX 4

/* Records of one kind connected by matches under the kind's duplicate
 * rules: @rules names the rules they matched under, @field is the first
 * field of the first of them (for a rule of one field, the field whose
 * value they share). */
struct dossier_duplicate_group {
    char field[65];
    size_t n_records;
    struct dossier_record **records;
    size_t n_rules;
    char rules[DOSSIER_DUPLICATE_RULES_MAX][65];
};

/* A page of groups; release with dossier_duplicates_release(). */
struct dossier_duplicates {
    size_t n_groups;
    struct dossier_duplicate_group *groups;
    char *next_page_token; /* NULL when there is nothing more */
};

/* Candidate duplicates among the records of @kind, grouped by the kind's
 * duplicate rules (see dossier_duplicate_rules_define; by default each
 * indexed field is a rule of its own): two records match under a rule
 * when each of its fields holds the same value after normalisation
 * (e-mails in any case, phones however written), and a group is every
 * record connected by matches under any rule. With @fields (@n_fields of
 * them), each of those indexed fields is a rule of its own instead. Found
 * through the blind indexes without decrypting anything. Records come as
 * dossier_get() would return them for the call's purpose; those it may
 * not see take no part, and a group needs two. Only fields the purpose
 * may see are compared (a group tells that its records share a value):
 * rules using another are left out. @pr pages through groups
 * (page_size: groups); a page reads a bounded part of the index and
 * holds about 2 MiB of records, so it may hold fewer groups than asked
 * and still have a next_page_token (and the last page may be empty):
 * follow the tokens. Errors: DOSSIER_UNKNOWN_KIND,
 * DOSSIER_INVALID_ARGUMENT (a field that is not indexed, a page token
 * of other rules),
 * DOSSIER_PERMISSION_DENIED (a field in @fields the purpose may not
 * see). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_find_duplicates(struct dossier_client *c,
                        const struct dossier_call_options *co,
                        const char *kind, const char *const *fields,
                        size_t n_fields, const struct dossier_page_request *pr,
                        struct dossier_duplicates *out,
                        struct dossier_status *st);

DOSSIER_API void dossier_duplicates_release(struct dossier_duplicates *d);

/* One duplicate rule, as given: records match when every one of @fields
 * (indexed fields of the kind, 1 to 4) holds the same normalised value.
 * Strings borrowed. */
struct dossier_duplicate_rule {
    const char *name; /* [a-z][a-z0-9_]*, at most 64 */
    size_t n_fields;
    const char *const *fields;
};

/* The duplicate rules of a kind, as the cluster keeps them. */
struct dossier_duplicate_rule_set {
    char kind[65];
    int defined;      /* 0: the default set, each indexed field alone */
    uint64_t version; /* 0 for the default set */
    size_t n_rules;
    struct {
        char name[65];
        size_t n_fields;
        char fields[DOSSIER_DUPLICATE_RULE_FIELDS_MAX][65];
    } rules[DOSSIER_DUPLICATE_RULES_MAX];
};

/* Replaces the duplicate rules of @kind by the @n rules @rules (1 to 16,
 * names distinct), kept in the cluster's replicated state (service or
 * admin role); *@out (may be NULL) gets the set as stored.
 * Errors: DOSSIER_UNKNOWN_KIND, DOSSIER_INVALID_ARGUMENT (a field that is
 * not indexed, a rule without fields or with more than 4, a name twice). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_duplicate_rules_define(struct dossier_client *c,
                               const struct dossier_call_options *co,
                               const char *kind,
                               const struct dossier_duplicate_rule *rules,
                               size_t n, struct dossier_duplicate_rule_set *out,
                               struct dossier_status *st);

/* The duplicate rules of @kind: the defined set or the default one.
 * Errors: DOSSIER_UNKNOWN_KIND. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_duplicate_rules_get(struct dossier_client *c,
                            const struct dossier_call_options *co,
                            const char *kind,
                            struct dossier_duplicate_rule_set *out,
                            struct dossier_status *st);

/* Every defined rule set, by kind; free *@out with free(). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_duplicate_rules_list(struct dossier_client *c,
                             const struct dossier_call_options *co,
                             struct dossier_duplicate_rule_set **out,
                             size_t *n, struct dossier_status *st);

/* ------------------------------------------------------------------------
 * Merges (service role; a purpose that may read every subject involved)
 *
 * dossier_merge() folds duplicates into a survivor of the same kind: the
 * survivor gets the merged fields and every record's links; links of
 * other records to a duplicate point at the survivor; the duplicates are
 * deleted. For a personal kind (a contact), duplicates of other subjects
 * make those subjects one person with the survivor's: their other records
 * (activities, tickets...) become the survivor subject's, whose consent
 * becomes, per purpose, the most restrictive of all (withdrawn over
 * granted over undecided; restricted if any was), every history kept.
 * Until dossier_merge_confirm(), dossier_merge_undo() restores every
 * record, link and consent row exactly (records at a new version). An
 * erasure of the survivor's subject, or of a merged one, erases every
 * merged subject and the undo data. Audited as records.merge,
 * records.merge_undo and records.merge_confirm. */

enum dossier_merge_prefer {
    /* The survivor's value where it has one, else the first duplicate's
     * (in the order given) that has one. */
    DOSSIER_MERGE_PREFER_SURVIVOR = 0,
    /* The value of the most recently updated record that has one. */
    DOSSIER_MERGE_PREFER_NEWEST = 1,
};

/* Field @field takes record @id's value (the survivor or a duplicate),
 * even none. */
struct dossier_merge_choice {
    const char *field;
    const char *id;
};

/* Strings borrowed. Tags fields take the union of every record's tags
 * unless a choice names one record. */
struct dossier_merge_request {
    const char *kind;
    const char *survivor_id;
    size_t n_duplicates; /* 1 to 16 */
    const char *const *duplicate_ids;
    enum dossier_merge_prefer prefer;
    size_t n_choices;
    const struct dossier_merge_choice *choices;
    const char *reference; /* a label for the audit log; may be NULL */
};

/* A merge; release with dossier_merge_info_release(). */
struct dossier_merge_info {
    char id[24];        /* MRG- and 16 hex digits */
    char kind[65];
    char *survivor_id;  /* "" when the purpose may not see it */
    size_t n_duplicates;
    char **duplicate_ids;
    int64_t merged_ms;
    char merged_by[65];
    char reference[DOSSIER_LABEL_MAX + 1];
    uint64_t version;       /* the survivor's version after the merge (after
                               an undo: the revision of the undo) */
    uint64_t records_moved; /* records of merged subjects now the
                               survivor subject's */
    uint64_t links_moved;   /* other records' links re-pointed */
    char state[16];         /* "pending", "undone" or "confirmed" */
};

/* Merges @r's duplicates into its survivor; @out (may be NULL) gets the
 * pending merge. Errors: DOSSIER_NOT_FOUND (a record that does not exist),
 * DOSSIER_INVALID_ARGUMENT (no duplicates or more than 16, one named
 * twice or the survivor itself, a choice of an unknown field or record, a
 * merged record its kind refuses, too many records for one merge),
 * DOSSIER_FAILED_PRECONDITION (records of different subjects of a kind
 * that is not personal; a duplicate with a subject into a survivor
 * without one), DOSSIER_PERMISSION_DENIED (a subject the purpose may not
 * process: restricted, or no consent), DOSSIER_RETRY (the records kept
 * changing while the merge was prepared). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_merge(struct dossier_client *c, const struct dossier_call_options *co,
              const struct dossier_merge_request *r,
              struct dossier_merge_info *out, struct dossier_status *st);

/* Undoes pending merge @id (@reference: a label, may be NULL).
 * Errors: DOSSIER_INVALID_ARGUMENT (@id is not MRG- and 16 upper-case hex
 * digits), DOSSIER_NOT_FOUND (no such pending merge: never made, undone or
 * confirmed), DOSSIER_FAILED_PRECONDITION (something the merge changed has
 * changed since, or the survivor's subject was restricted or unrestricted,
 * or decided on consent, since the merge: the restored subjects would not
 * carry it; the message names it). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_merge_undo(struct dossier_client *c,
                   const struct dossier_call_options *co, const char *id,
                   const char *reference, struct dossier_merge_info *out,
                   struct dossier_status *st);

/* Confirms pending merge @id: its undo data is deleted, and it can no
 * longer be undone. Errors: DOSSIER_INVALID_ARGUMENT (not a merge id),
 * DOSSIER_NOT_FOUND. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_merge_confirm(struct dossier_client *c,
                      const struct dossier_call_options *co, const char *id,
                      const char *reference, struct dossier_merge_info *out,
                      struct dossier_status *st);

/* A page of pending merges; release with dossier_merge_page_release(). */
struct dossier_merge_page {
    size_t n_merges;
    struct dossier_merge_info *merges;
    char *next_page_token; /* NULL when there is nothing more */
};

/* One page of the pending merges the purpose may see, oldest first (@pr:
 * page_size merges, NULL for the first page of 100). The node reads a
 * small summary of each merge, never its undo data. A page holds fewer
 * than page_size when merges of subjects the purpose may not see are left
 * out, while next_page_token says more follow. Errors:
 * DOSSIER_INVALID_ARGUMENT (page_size over 1000, a token this listing did
 * not issue). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_merge_list_page(struct dossier_client *c,
                        const struct dossier_call_options *co,
                        const struct dossier_page_request *pr,
                        struct dossier_merge_page *out,
                        struct dossier_status *st);
DOSSIER_API void dossier_merge_page_release(struct dossier_merge_page *p);

/* Every pending merge the purpose may see, oldest first, fetched page by
 * page; free with dossier_merge_infos_free(). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_merge_list(struct dossier_client *c,
                   const struct dossier_call_options *co,
                   struct dossier_merge_info **out, size_t *n,
                   struct dossier_status *st);

DOSSIER_API void dossier_merge_info_release(struct dossier_merge_info *m);
DOSSIER_API void dossier_merge_infos_free(struct dossier_merge_info *m,
                                          size_t n);

/* ------------------------------------------------------------------------
 * Reports (service role; a purpose): figures computed by the node */

struct dossier_aggregate_request {
    const char *kind;
    const char *group_by;   /* NULL: one group */
    const char *sum;        /* an int or double field; NULL: counts only */
    const char *time_field; /* with bucket: a timestamp field, "created_at"
                               or "updated_at" */
    const char *bucket;     /* NULL, "day", "week" (from Monday) or
                               "month", in UTC */
};

struct dossier_aggregate_row {
    char key[128];           /* the group_by value ("" for none) */
    int64_t bucket_start_ms; /* with a bucket */
    int no_time;             /* with a bucket: records without a time */
    uint64_t count;
    double sum;
};

struct dossier_aggregate {
    size_t n_rows;
    struct dossier_aggregate_row *rows; /* by bucket, then key */
    uint64_t records;  /* records counted */
    uint64_t left_out; /* records the purpose may not see */
    uint64_t suppressed; /* records of groups keyed by a personal field
                            that held fewer than 3 records: not shown */
};

/* Counts and totals per group over every record of a kind (e.g. deals per
 * stage with their amounts), computed by the node: no record leaves it.
 * Records the call's purpose may not see are left out; every field named
 * must be of a category it sees. Group keys are values, so @r->group_by
 * may not be a field that identifies people (an e-mail or phone field, a
 * string or int field of the identity, contact or special category);
 * groups keyed by a field of another personal category are shown only
 * with 3 records or more. Release @out with dossier_aggregate_release().
 * Errors: DOSSIER_UNKNOWN_KIND, DOSSIER_INVALID_ARGUMENT (a field of no
 * such name or type, a group_by field that identifies people, more than
 * 10,000 groups), DOSSIER_PERMISSION_DENIED (a field the purpose may not
 * see), DOSSIER_DEADLINE_EXCEEDED (the node stops a report that reaches
 * the call's deadline: give a longer timeout for a large kind). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_aggregate(struct dossier_client *c,
                  const struct dossier_call_options *co,
                  const struct dossier_aggregate_request *r,
                  struct dossier_aggregate *out, struct dossier_status *st);

DOSSIER_API void dossier_aggregate_release(struct dossier_aggregate *a);

/* ------------------------------------------------------------------------
 * Segments: saved filters over the records of one kind */

/* A condition on one field, in one form (the others left zero):
 *  - @any_of: the value is one of these. Strings compare exactly, e-mails
 *    in any case, phones in E.164. On a tags field: the record has at
 *    least one of these tags;
 *  - @all_of: tags fields only: the record has every one of these tags;
 *  - @none_of: the value is none of these, or the field is empty; on a
 *    tags field: the record has none of these tags;
 *  - a range, on an int, double or timestamp field: @at_least (inclusive)
 *    and/or @below (exclusive), each NULL when open; a record without a
 *    value is outside every range.
 * Tags are given one per value (any case: they are lower-cased). */
struct dossier_segment_condition {
    const char *field;
    size_t n_any_of;
    const struct dossier_value *any_of;
    size_t n_all_of;
    const struct dossier_value *all_of;
    size_t n_none_of;
    const struct dossier_value *none_of;
    const struct dossier_value *at_least;
    const struct dossier_value *below;
};

/* Every condition holds, the times fall in the ranges (after: inclusive,
 * before: exclusive; 0: open) and, with @consent_purpose, the record's
 * subject has granted consent to that purpose. Strings are borrowed. */
struct dossier_segment {
    const char *name; /* [a-z][a-z0-9_]*, at most 64 */
    const char *kind;
    const char *description; /* may be NULL; kept in the clear, like the
                                name: never personal data */
    size_t n_conditions;
    const struct dossier_segment_condition *conditions;
    int64_t created_after_ms, created_before_ms;
    int64_t updated_after_ms, updated_before_ms;
    const char *consent_purpose; /* may be NULL */
};

/* Defines or replaces segment @s (service or admin role); *@version (may
 * be NULL) gets its version. A definition is kept in the clear, so a
 * condition may not name a field whose values can identify or describe a
 * person: e-mail and phone fields, text of the behavioral and financial
 * categories, and anything but enumerations and flags of the identity,
 * contact and special categories. Errors: DOSSIER_UNKNOWN_KIND,
 * DOSSIER_INVALID_ARGUMENT (such a field, a field the kind lacks, a
 * condition with no
 * form or two, a value that is not of its field's type — a whole number
 * for an int or timestamp field, one of the allowed values for an
 * enumeration —, a range on a field that is not a number or a time,
 * all_of on a field that holds no tags, a malformed tag, an unknown
 * consent purpose), DOSSIER_PERMISSION_DENIED. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_segment_define(struct dossier_client *c,
                       const struct dossier_call_options *co,
                       const struct dossier_segment *s, uint64_t *version,
                       struct dossier_status *st);

/* A segment as the cluster keeps it: @segment and everything it points
 * to belong to it (string values of conditions included); release with
 * dossier_segment_info_release(). */
struct dossier_segment_info {
    struct dossier_segment segment;
    uint64_t version;
    void *priv; /* the library's */
};

/* Segment @name into @out (service or admin role, and a purpose: a
 * segment filtering on a field the purpose may not see is refused).
 * Errors: DOSSIER_NOT_FOUND, DOSSIER_PERMISSION_DENIED (naming the field,
 * or a role that may not read definitions), DOSSIER_NOMEM. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_segment_get(struct dossier_client *c,
                    const struct dossier_call_options *co, const char *name,
                    struct dossier_segment_info *out,
                    struct dossier_status *st);

/* Every segment the call's purpose may see (those filtering on a field it
 * may not see are left out), by name, into *@out (*@n of them); free
 * with dossier_segment_infos_free(). Same role as dossier_segment_get(). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_segment_list(struct dossier_client *c,
                     const struct dossier_call_options *co,
                     struct dossier_segment_info **out, size_t *n,
                     struct dossier_status *st);

DOSSIER_API void dossier_segment_info_release(struct dossier_segment_info *s);
DOSSIER_API void dossier_segment_infos_free(struct dossier_segment_info *v,
                                            size_t n);

/* The ids of records that match a segment, a page at a time; release with
 * dossier_segment_members_release(). */
struct dossier_segment_members {
    char kind[65];
    size_t n_ids;
    char **ids;
    char *next_page_token; /* NULL when the run is complete */
};

/* Runs segment @name (service role) for the call's purpose: only records
 * it may read match, and a condition on a field it may not see is
 * refused (DOSSIER_PERMISSION_DENIED). A page may hold fewer matches than
 * asked and still have a next_page_token: the node looks at a bounded
 * number of records per call. Errors: DOSSIER_NOT_FOUND,
 * DOSSIER_FAILED_PRECONDITION (a condition on a field segments may no
 * longer hold: define the segment again). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_segment_run(struct dossier_client *c,
                    const struct dossier_call_options *co, const char *name,
                    const struct dossier_page_request *pr,
                    struct dossier_segment_members *out,
                    struct dossier_status *st);

DOSSIER_API void
dossier_segment_members_release(struct dossier_segment_members *m);

/* ------------------------------------------------------------------------
 * Change feed (service role; a purpose)
 *
 * Every put, delete, erasure, consent change and retention expiry, in
 * commit order, from a given revision, filtered by the call's purpose
 * exactly as reads are: fields the purpose may not see are left out, and
 * record changes about subjects it may not see (no consent for a consent
 * purpose, restricted) are not delivered. A consent change goes only to
 * watchers of the purpose it is about, and not while its subject is
 * restricted (except to legal_claims); a withdrawal does reach them.
 * Erasures go to every watcher. */

enum dossier_change_type {
    DOSSIER_CHANGE_PUT = 1,  /* record: as after the change */
    DOSSIER_CHANGE_DELETE,   /* record: kind, id, subject, version only;
                                the record's earlier changes left the
                                feed */
    DOSSIER_CHANGE_ERASE,    /* forget everything with this subject_ref */
    DOSSIER_CHANGE_CONSENT,  /* purpose and consent_state */
    DOSSIER_CHANGE_EXPIRE,   /* fields past retention dropped; record: as
                                after; the record's earlier changes left
                                the feed */
    DOSSIER_CHANGE_PROGRESS, /* not a change: every change up to revision
                                has been delivered */
};

/* "put", "delete", "erase", "consent", "expire", "progress"; "unknown". */
DOSSIER_API const char *dossier_change_type_name(enum dossier_change_type t);

/* Where a feed resumes: the next change to deliver. */
struct dossier_watch_position {
    uint64_t revision; /* 0: from the changes after the call began */
    uint32_t seq;
};

/* One change, borrowed for the callback. Changes are ordered by
 * (revision, seq): revision is the store revision of the command (a
 * record's version after a put), seq orders the changes of one command. */
struct dossier_change {
    enum dossier_change_type type;
    uint64_t revision;
    uint32_t seq;
    int64_t time_ms;
    /* The subject's pseudonym as 32 hex digits ("" for none): the same in
     * every change about one subject, and what an erasure names. */
    char subject_ref[33];
    const struct dossier_record *record; /* PUT, EXPIRE, DELETE */
    /* The subject was erased while this change was being read: record
     * holds only kind and version. (An erasure takes the subject's
     * changes out of the feed, so later readers do not get them.) */
    int content_erased;
    /* EXPIRE: the whole record was deleted, past its kind's record
     * retention (record then as for DELETE); else fields expired. */
    int record_expired;
    char purpose[DOSSIER_PURPOSE_NAME_MAX + 1]; /* CONSENT */
    enum dossier_consent_state consent_state;   /* CONSENT */
};

struct dossier_watch_options {
    const char *const *kinds; /* record changes of these kinds only */
    size_t n_kinds;           /* 0: every kind */
    struct dossier_watch_position start;
};

/* Called once per change; return 0 to go on, anything else to stop. */
typedef int (*dossier_change_fn)(void *arg, const struct dossier_change *ch);

/* Delivers changes to @fn until @fn returns non-zero (then returns 0) or
 * the call's deadline passes (DOSSIER_DEADLINE_EXCEEDED): give @co a
 * timeout as long as the watch should last. When the node goes away or
 * stops, the watch resumes on the next target from the change after the
 * last one delivered, so nothing is missed or delivered twice. *@next
 * (may be NULL) gets the position to resume from later. A serializable
 * watch (@co->consistency) that reaches a node which has not applied up to
 * the start yet waits there a while, then tries the next target. Errors:
 * DOSSIER_UNKNOWN_KIND, DOSSIER_OUT_OF_RANGE (the nodes no longer keep
 * changes that old: scan, then watch from the first page's revision + 1;
 * or a linearizable start past the cluster's last revision),
 * DOSSIER_UNAVAILABLE (no node had applied up to a serializable start
 * before the deadline), DOSSIER_PERMISSION_DENIED. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_watch(struct dossier_client *c, const struct dossier_call_options *co,
              const struct dossier_watch_options *o, dossier_change_fn fn,
              void *arg, struct dossier_watch_position *next,
              struct dossier_status *st);

/* ------------------------------------------------------------------------
 * Principals in the cluster's replicated state (admin role)
 *
 * Every node knows them, beside the principals of its --auth-file. Once
 * one exists, every call needs credentials. Before that (a cluster
 * without an auth file), adding one needs none: that is how a cluster gets
 * its first admin. */

struct dossier_principal {
    char name[65];
    char role[16];      /* "service", "compliance" or "admin" */
    char purposes[512]; /* "a,b" or "*" */
    int64_t created_ms;
    char created_by[65];
};

/* Adds principal @name with @role ("service", "compliance", "admin") and
 * @purposes ("a,b"; NULL or "*": every purpose). A fresh bearer token is
 * made here and written into @token (64 hex digits and a NUL): only its
 * SHA-256 leaves the client; show the token to its owner once.
 * Errors: DOSSIER_ALREADY_EXISTS, DOSSIER_INVALID_ARGUMENT. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_principal_add(struct dossier_client *c,
                      const struct dossier_call_options *co, const char *name,
                      const char *role, const char *purposes, char token[65],
                      struct dossier_principal *out,
                      struct dossier_status *st);

/* Removes principal @name: its token stops working at once on every
 * node. Errors: DOSSIER_NOT_FOUND. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_principal_remove(struct dossier_client *c,
                         const struct dossier_call_options *co,
                         const char *name, struct dossier_status *st);

/* Every principal of the cluster's state (not the auth files'); free
 * *@out with free(). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_principal_list(struct dossier_client *c,
                       const struct dossier_call_options *co,
                       struct dossier_principal **out, size_t *n,
                       struct dossier_status *st);

/* ------------------------------------------------------------------------
 * Tracked GDPR requests (compliance role)
 *
 * An erasure or export request is filed when it arrives and is then met
 * through the request, which records when and by whom, so that every
 * request can be shown with its one-month deadline (GDPR Art. 12(3)). */

struct dossier_tracked_request {
    char id[40];       /* REQ- and 16 hex digits, made by the node */
    char kind[16];     /* "erasure" or "export" */
    uint8_t pseudonym[16];
    char reference[DOSSIER_LABEL_MAX + 1];
    int64_t received_ms;
    int64_t deadline_ms; /* received + 30 days */
    int executed;
    int64_t executed_ms;
    uint64_t result_index; /* raft index of the executing command */
    int has_digest;
    uint8_t digest[32]; /* export: SHA-256 of what was delivered */
    uint64_t records;   /* erasure: records deleted */
    char filed_by[65];
    char executed_by[65];
    int overdue; /* open past its deadline, or executed after it */
    /* Extended (GDPR Art. 12(3)): when, why, and the deadline before. */
    int64_t extended_ms; /* 0: not extended */
    char extension_reason[DOSSIER_LABEL_MAX + 1];
    int64_t original_deadline_ms;
};

/* An executed request's proof: the erasure certificate, or for an export
 * a signature by the audit key (see dossier_request_receipt_verify). */
struct dossier_request_receipt {
    struct dossier_tracked_request request;
    int has_erasure;
    struct dossier_erasure_certificate erasure;
    int has_signature;
    uint8_t signature[64];
    uint8_t public_key[32];
};

/* Files a request of @kind ("erasure" or "export") for @subject_id that
 * arrived at @received_ms (0: now; at most a year back). @reference: a
 * label such as a ticket number (may be NULL). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_request_file(struct dossier_client *c,
                     const struct dossier_call_options *co, const char *kind,
                     const char *subject_id, const char *reference,
                     int64_t received_ms, struct dossier_tracked_request *out,
                     struct dossier_status *st);

/* Every request (or only open ones), soonest deadline first; free *@out
 * with free(). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_request_list(struct dossier_client *c,
                     const struct dossier_call_options *co, int open_only,
                     struct dossier_tracked_request **out, size_t *n,
                     struct dossier_status *st);

/* One request, with its proof once executed. Errors: DOSSIER_NOT_FOUND. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_request_get(struct dossier_client *c,
                    const struct dossier_call_options *co, const char *id,
                    struct dossier_request_receipt *out,
                    struct dossier_status *st);

/* Executes erasure request @id: erases @subject_id (which must be the
 * subject it was filed for) and answers with the certificate.
 * Errors: DOSSIER_NOT_FOUND, DOSSIER_FAILED_PRECONDITION (another kind,
 * another subject, executed already). */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_request_execute(struct dossier_client *c,
                        const struct dossier_call_options *co, const char *id,
                        const char *subject_id,
                        struct dossier_request_receipt *out,
                        struct dossier_status *st);

/* Records that export request @id was met by delivering the export
 * document whose SHA-256 is @digest; answers with the signed receipt. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_request_complete(struct dossier_client *c,
                         const struct dossier_call_options *co,
                         const char *id, const char *subject_id,
                         const uint8_t digest[32],
                         struct dossier_request_receipt *out,
                         struct dossier_status *st);

/* Extends open request @id by two further months (GDPR Art. 12(3)), for
 * @reason (a label such as "complexity" or a ticket): once, and only
 * within the first month after receipt, when the subject must be told.
 * Errors: DOSSIER_NOT_FOUND, DOSSIER_FAILED_PRECONDITION (executed,
 * extended already, or past its deadline), DOSSIER_INVALID_ARGUMENT. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_request_extend(struct dossier_client *c,
                       const struct dossier_call_options *co, const char *id,
                       const char *reason, struct dossier_request_receipt *out,
                       struct dossier_status *st);

/* Checks a receipt's proof under its public key (and, when @pk is not
 * NULL, that this is the key @pk). Returns 0, DOSSIER_CORRUPT, or
 * DOSSIER_FAILED_PRECONDITION for a request not executed. */
DOSSIER_API DOSSIER_MUST_CHECK int
dossier_request_receipt_verify(const struct dossier_request_receipt *r,
                               const uint8_t *pk, struct dossier_status *st);

#ifdef __cplusplus
}
#endif
#endif
