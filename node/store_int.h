/* What store.c and store_apply.c share: the store's insides. Private to
 * those two files (and the store's unit tests). */
#ifndef DOSSIER_NODE_STORE_INT_H
#define DOSSIER_NODE_STORE_INT_H

#include <pthread.h>

#include <rocksdb/c.h>

#include "store.h"

struct store {
    char *dir;
    char *db_path;
    size_t block_cache_bytes;
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_block_based_table_options_t *table;
    rocksdb_cache_t *cache;
    rocksdb_column_family_handle_t *cf[STORE_N_FAMILIES];
    rocksdb_readoptions_t *ro;
    rocksdb_writeoptions_t *wo_sync;
    rocksdb_writeoptions_t *wo_nosync;
    struct schema_registry *schemas;
    struct policy *policy;
    /* The audit chain as committed; guarded by audit_mu. */
    pthread_mutex_t audit_mu;
    struct audit_chain audit;
    /* Subjects erased since the last store_erase_finish() (applying
     * thread only). */
    uint8_t (*erased)[STORE_SP_BYTES];
    size_t n_erased;
    /* Readers hold it shared; installing a snapshot holds it exclusively
     * while the database underneath is replaced. */
    pthread_rwlock_t swap;
    /* Written by the applying thread, read by any. */
    uint64_t revision;
    uint64_t applied;
    uint64_t principals; /* principals in the replicated state */
    /* The change feed: its first revision (atomic), how many revisions it
     * keeps; revision_cv is signalled under revision_mu at each commit. */
    uint64_t changes_floor;
    uint64_t change_history;
    /* Request ids recorded before this time key are expired (replicated,
     * the "req_expired_to" row; applying thread): expiry seeks here, not
     * to the start of the time index, whose deletions it would otherwise
     * step over again in every batch until compactions drop them. */
    uint64_t req_expired_to;
    /* Unit tests only: the next this many trims of the feed fail as a
     * failed RocksDB write would (applying thread). */
    unsigned trim_faults;
    pthread_mutex_t revision_mu;
    pthread_cond_t revision_cv;
};

/* Kinds defined by a batch, registered once it commits. */
struct pending_kind {
    KindSchema *schema; /* owned */
    struct pending_kind *next;
};

/* Purposes defined by a batch, registered once it commits. */
struct pending_purpose {
    Dossier__V1__Purpose *purpose; /* owned */
    uint64_t version;
    struct pending_purpose *next;
};

struct store_batch {
    struct store *s;
    rocksdb_writebatch_wi_t *wb;
    uint64_t req_expired_to; /* new value of the store's, 0: unchanged */
    uint64_t revision; /* last revision taken by this batch */
    uint64_t applied;  /* raft index to record, 0: unchanged */
    size_t n_applied;
    size_t n_requests;       /* request ids recorded by this batch */
    int64_t request_time_ms; /* the latest command time among them */
    unsigned effects;  /* STORE_EFFECT_* of the commands applied */
    struct pending_kind *kinds; /* oldest first */
    struct pending_kind **kinds_tail;
    struct pending_purpose *purposes; /* oldest first */
    struct pending_purpose **purposes_tail;
    struct audit_chain audit; /* the chain as this batch leaves it */
    int audit_changed;
    uint8_t (*erased)[STORE_SP_BYTES];
    size_t n_erased;
    int64_t principals_delta; /* principals added minus removed */
    uint64_t change_rev; /* revision of the last change entry written */
    uint32_t change_seq; /* its seq */
};

/* After a batch committed at @revision: wakes the feed's readers and trims
 * the feed. */
void store_changes_committed(struct store *s, uint64_t revision);

#define STORE_AUDIT_HEAD_BYTES (8 + AUDIT_HASH_BYTES + 8 + 8)
void store_audit_head_encode(const struct audit_chain *c,
                             uint8_t out[STORE_AUDIT_HEAD_BYTES]);

/* Translates a RocksDB error (freed here) where it enters. */
int store_rdb_error(struct dossier_status *st, char *err, const char *what);

/* Reads @key of @family, through @b's pending writes when @b is set. *@val
 * is NULL when absent, else freed with rocksdb_free. Call without the swap
 * lock for batches (the applying thread), with it for readers. */
int store_get_raw(struct store *s, struct store_batch *b,
                  enum store_family family, const uint8_t *key, size_t klen,
                  char **val, size_t *vlen, struct dossier_status *st);

/* Reads @key of @family (through @b when set, as store_get_raw) and
 * unpacks it as @desc into *@out (free with
 * protobuf_c_message_free_unpacked), NULL when absent.
 * Errors: DOSSIER_CORRUPT (naming @what) when it does not decode, those
 * of store_get_raw(). */
int store_get_pb(struct store *s, struct store_batch *b,
                 enum store_family family, const uint8_t *key, size_t klen,
                 const ProtobufCMessageDescriptor *desc, const char *what,
                 ProtobufCMessage **out, struct dossier_status *st);

int store_read_record(struct store *s, struct store_batch *b, const char *kind,
                      const uint8_t *rid, StoredRecord **out,
                      struct dossier_status *st);
int store_read_subject_key(struct store *s, struct store_batch *b,
                           const uint8_t *sp, SubjectKey **out,
                           struct dossier_status *st);

/* ---- For store_crm.c: the CRM commands (duplicate rules, merges) ----
 * Helpers of store_apply.c, each as its static counterpart there. */

/* A malformed command: DOSSIER_CORRUPT naming @what. */
int store_apply_bad(struct store_result *res, const char *what);

/* Packs @m into @family at @key in @b. Errors: DOSSIER_NOMEM. */
int store_batch_put_pb(struct store_batch *b, enum store_family f,
                       const uint8_t *key, size_t klen,
                       const ProtobufCMessage *m);

/* Calls @cb with every key under @prefix in @family as @b sees it (the
 * keys copied first, so @cb may write to @b); stops at @cb's first
 * non-zero return, which it returns. Errors: DOSSIER_NOMEM. */
int store_batch_keys(struct store_batch *b, enum store_family family,
                     const uint8_t *prefix, size_t plen,
                     int (*cb)(void *arg, const uint8_t *key, size_t klen),
                     void *arg);

/* Whether Put @op is well formed, as apply_put checks it. */
int store_put_op_valid(const Dossier__Store__V1__PutOp *op);

/* Records a change of record (@kind, @rid) at revision @rev in the feed:
 * @packed is the StoredRecord as stored. Errors: DOSSIER_NOMEM. */
int store_batch_change_record(struct store_batch *b, const Command *cmd,
                              uint64_t rev, int type, const char *kind,
                              const uint8_t *rid,
                              const ProtobufCBinaryData *subject,
                              const uint8_t *packed, size_t len);

/* Takes out of the feed the changes of record @rid (whose subject is @sp,
 * NULL for none) before revision @before, with their index rows, as a
 * Delete does. Errors: DOSSIER_NOMEM. */
int store_batch_changes_forget(struct store_batch *b, const uint8_t *rid,
                               const uint8_t *sp, uint64_t before);

/* The index row of change @e stored under change key @key: a subject's
 * change (other than its erasure, which stays in the feed) under the
 * subject (sp, key, rid when it names a record) in the change_index
 * family, so that the subject's erasure takes it out; a change of a record
 * without a subject under the record (rid, key) in change_record, so that
 * a delete or an expiry does. Into @out (STORE_CHANGE_INDEX_KEY_MAX
 * bytes), with *@family; returns its length, 0 for a change without one. */
#define STORE_CHANGE_INDEX_KEY_MAX (STORE_SP_BYTES + 12 + STORE_RID_BYTES)
size_t store_change_index_key(const Dossier__Store__V1__ChangeEntry *e,
                              const uint8_t key[12], uint8_t *out,
                              enum store_family *family);

/* Takes out of the feed the record changes indexed under subject @sp at
 * revision @rev (a merge's own, when it is undone), with their index rows;
 * consent changes stay. Errors: DOSSIER_NOMEM. */
int store_batch_changes_forget_at(struct store_batch *b, const uint8_t *sp,
                                  uint64_t rev);

/* Records a consent change of subject @sp at revision @rev in the feed.
 * Errors: DOSSIER_NOMEM. */
int store_batch_change_consent(struct store_batch *b, const Command *cmd,
                               uint64_t rev, const uint8_t *sp,
                               const char *purpose, int state);

/* The commands of store_crm.c, called by store_apply(). */
int store_apply_duplicate_rules(struct store_batch *b, const Command *cmd,
                                struct store_result *res);
int store_apply_merge(struct store_batch *b, const Command *cmd,
                      struct store_result *res);
int store_apply_merge_undo(struct store_batch *b, const Command *cmd,
                           struct store_result *res);
int store_apply_merge_confirm(struct store_batch *b, const Command *cmd,
                              struct store_result *res);

/* Follows @sp's alias row ("a": the subject it was merged into) one step,
 * as @b sees it (NULL: the committed state): *@found 1 and @sp replaced by
 * that subject, or 0 when it has none. Errors: DOSSIER_IO. */
int store_subject_alias(struct store *s, struct store_batch *b, uint8_t *sp,
                        int *found, struct dossier_status *st);
/* Aliases are followed at most this far (a chain of merges; a cycle
 * cannot form, but a bound costs nothing). */
#define STORE_ALIAS_HOPS 64

/* For an erasure of subject @sp: into *@out (malloc'd, *@n of them, @sp
 * first) every subject it erases: @sp, the subject it was merged into
 * (following merges up), and every subject merged into those.
 * Errors: DOSSIER_NOMEM, DOSSIER_IO. */
int store_erase_subjects(struct store_batch *b, const uint8_t *sp,
                         uint8_t (**out)[STORE_SP_BYTES], size_t *n,
                         struct dossier_status *st);

/* For an erasure of the @n_sp subjects @sps, whose records @rids (@n_rids)
 * it deleted: deletes every pending merge that kept anything of them for
 * an undo. Errors: DOSSIER_NOMEM, DOSSIER_CORRUPT, DOSSIER_IO. */
int store_erase_merges(struct store_batch *b,
                       const uint8_t (*sps)[STORE_SP_BYTES], size_t n_sp,
                       const uint8_t (*rids)[STORE_RID_BYTES], size_t n_rids,
                       struct dossier_status *st);

/* Master key rotation (store_keys.c): applies a KeyRotateOp, and the
 * version a new subject key must be wrapped under as of @b (the
 * rotation's target, else the keyset's version; 0: no keyset). */
int store_apply_key_rotate(struct store_batch *b, const Command *cmd,
                           struct store_result *res);
int store_wrap_version(struct store_batch *b, uint32_t *out,
                       struct dossier_status *st);

/* The version a rotation under way as of @b rewraps to into *@out, 0
 * when none is under way. Errors: DOSSIER_CORRUPT, DOSSIER_IO. */
int store_rotation_target(struct store_batch *b, uint32_t *out,
                          struct dossier_status *st);

/* For a REWRAP (store_keys.c): applies the items of @op that name a
 * pending merge (merge_id): each replaces the subject key that merge
 * keeps for its undo, in its MergeRecord and its summary, if the merge is
 * still pending and keeps that very key (dek_id) under another version
 * than op->to_version; *@done and *@skipped count them.
 * Errors: DOSSIER_NOMEM, DOSSIER_CORRUPT, DOSSIER_IO. */
int store_merge_rewrap(struct store_batch *b,
                       const Dossier__Store__V1__KeyRotateOp *op,
                       uint64_t *done, uint64_t *skipped,
                       struct dossier_status *st);

/* For a FINISH: *@found is the master key version of a subject key a
 * pending merge keeps under another version than @version (its id into
 * @id), or 0 when there is none. Errors: DOSSIER_NOMEM, DOSSIER_CORRUPT,
 * DOSSIER_IO. */
int store_merges_kept_other(struct store_batch *b, uint32_t version,
                            char id[STORE_MERGE_ID_LEN + 1], uint32_t *found,
                            struct dossier_status *st);

#endif
