/* The node's RocksDB: data directory, key layout, reads, and the
 * deterministic state machine that applies write commands in batches.
 *
 * Data directory
 *   DOSSIER     marker file: "dossier data directory\nformat 1\n"
 *   db/         the RocksDB database
 *
 * Column families and keys (pseudonyms and blind indexes: see crypt.h;
 * "kind" is the kind name, never personal; 0x00 separates it)
 *   family    key                                     value
 *   default   "meta"                                  Meta
 *   default   "keyrotation"                           KeyRotation: under
 *                                                     way or last finished
 *   default   "revision"                              u64 big-endian
 *   default   "applied"                               u64 BE: raft index applied
 *   default   "bootstrapped"                          u64 BE: the revision
 *                                                     that added the first
 *                                                     principal; never
 *                                                     deleted (bootstrap.h)
 *   default   "member/" id (u64 BE)                   Member
 *   schema    kind                                    dossier.v1.KindSchema
 *   record    kind 0x00 rid[16]                       StoredRecord
 *   subject   sp[16]                                  SubjectKey
 *   subject   sp[16] kind 0x00 rid[16]                empty (membership)
 *   index     kind 0x00 field 0x00 blind[16] rid[16]  empty
 *   requests  "r" request_id[16]                      RequestRecord
 *   requests  "t" time (u64 BE, ms + 2^63) id[16]     empty (expiry order)
 *   raft      "hs"                                    RaftHardState
 *   raft      "snap"                                  peer.v1.SnapshotMeta
 *   raftlog   index (u64 BE)                          peer.v1.Entry
 *   default   "audit_head"                            index, hash[32],
 *                                                     signed index, time
 *   policy    "p" purpose name                        dossier.v1.Purpose
 *   policy    "e" sp[16]                              ErasureRecord (ledger,
 *                                                     with the nodes that
 *                                                     finished it)
 *   policy    "q" request id (REQ-...)                TrackedRequest
 *   policy    "a" principal name                      StoredPrincipal
 *   policy    "t" sha256(token)[32]                   principal name
 *   policy    "g" segment name                        dossier.v1.Segment
 *   policy    "d" kind                                dossier.v1.
 *                                                     DuplicateRuleSet
 *   policy    "u" merge id (MRG-...)                  MergeRecord: a merge
 *                                                     pending confirmation
 *   policy    "v" merge id                            u64 BE: its revision
 *   policy    "w" revision (u64 BE) merge id          MergeSummary (what a
 *                                                     listing reads)
 *   consent   sp[16] "u" merge id                     empty: sp survived
 *                                                     merge id, pending
 *   consent   sp[16] "m" merged sp[16]                MergedSubject: that
 *                                                     subject was merged
 *                                                     into sp
 *   consent   sp[16] "a"                              sp[16] it was merged
 *                                                     into (an alias)
 *   consent   sp[16] "c" purpose                      StoredConsent (now)
 *   consent   sp[16] "h" revision (u64 BE)            StoredConsent (history)
 *   consent   sp[16] "r"                              empty: restricted
 *   consent   sp[16] "f" revision (u64 BE)            StoredRectification
 *                                                     (Art. 16 history)
 *   audit     "e" index (u64 BE)                      hash[32] entry
 *   audit     "c" index (u64 BE)                      checkpoint (113 bytes)
 *   default   "changes_floor"                         u64 BE: first revision
 *                                                     the feed still holds
 *   changes   revision (u64 BE) seq (u32 BE)          ChangeEntry
 *   change_index sp[16] revision seq [rid[16]]        empty: a subject's
 *                                                     changes (not its
 *                                                     erasure), so erasing
 *                                                     it removes them
 *   change_record rid[16] revision seq                empty: the changes
 *                                                     of a record without a
 *                                                     subject, so an expiry
 *                                                     or a delete removes
 *                                                     the earlier ones (a
 *                                                     subject's records are
 *                                                     found in change_index)
 *   link      "o" kind 0x00 rid[16]                   sealed target id
 *               label 0x00 tkind 0x00 trid[16]        (box domain 'A')
 *   link      "i" tkind 0x00 trid[16]                 empty (the mirror:
 *               label 0x00 kind 0x00 rid[16]          incoming links)
 * Everything about one subject in the subject family shares the prefix
 * sp[16], and so does everything in the consent family, so erasing a
 * subject is one key range in each. No key or value holds a
 * subject id, record id or field value in plaintext.
 *
 * The link family is the association index: record (kind, rid) links with
 * label to target (tkind, trid). Each link is two rows written and deleted
 * together, so both directions list with one prefix scan ("o" + record for
 * its links, "i" + record for the links to it). Labels are names like
 * kinds, not personal. A Put replaces the record's "o" rows (and their
 * mirrors); deleting or erasing a record deletes its "o" and "i" rows and
 * their mirrors, so a link goes with either end, and so does the target id
 * sealed in it. A target need not exist.
 *
 * The families raft and raftlog are this node's Raft state; every other
 * family is the replicated state machine, identical on every node at the
 * same applied index, and is what a snapshot carries. The changes and
 * change_index families (the change feed) are written by the state
 * machine too, but each node trims them on its own
 * (store_set_change_history), so how far back they reach may differ
 * between nodes. The change_record family joins them (changes of records
 * without a subject recorded before it existed are in no index, and leave
 * with the trim).
 *
 * The revision is the number of changes applied since the store was made;
 * each applied change takes the next one, and a record's version is the
 * revision of its last change. */
#ifndef DOSSIER_NODE_STORE_H
#define DOSSIER_NODE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <dossier/dossier.h>

#include "audit.h"
#include "policy.h"
#include "schema.h"
#include "store.pb-c.h"

#define STORE_FORMAT 1
/* The default family's row marking a cluster that has had a principal. */
#define STORE_BOOTSTRAPPED_KEY "bootstrapped"
#define STORE_RID_BYTES 16
#define STORE_SP_BYTES 16
#define STORE_BLIND_BYTES 16
/* Longest key the layout above can make: a link row. */
#define STORE_LINK_KEY_MAX (1 + 3 * (SCHEMA_NAME_MAX + 1) + 2 * STORE_RID_BYTES)
#define STORE_KEY_MAX STORE_LINK_KEY_MAX

enum store_family {
    STORE_DEFAULT = 0,
    STORE_SCHEMA,
    STORE_RECORD,
    STORE_SUBJECT,
    STORE_INDEX,
    STORE_REQUESTS,
    STORE_RAFT,
    STORE_RAFTLOG,
    STORE_POLICY,
    STORE_CONSENT,
    STORE_AUDIT,
    STORE_CHANGES,
    STORE_CHANGE_INDEX,
    STORE_LINK,
    STORE_CHANGE_RECORD,
    STORE_N_FAMILIES,
};

/* How long a request id is remembered for exactly-once retries. */
#define STORE_REQUEST_TTL_MS (10 * 60 * 1000)
#define STORE_REQUEST_ID_BYTES 16
/* The most request ids one RequestExpireOp removes. */
#define STORE_REQUEST_SWEEP_MAX 4096

typedef Dossier__Store__V1__StoredRecord StoredRecord;
typedef Dossier__Store__V1__SubjectKey SubjectKey;
typedef Dossier__Store__V1__Command Command;

struct store;

/* Opens the data directory @dir, making it (mode 0700) when it is missing
 * and initialising it when it is missing or empty; *@created tells which. Refuses a non-empty directory that is
 * not Dossier's, and a database RocksDB finds corrupt.
 * Errors: DOSSIER_FAILED_PRECONDITION (not a Dossier directory, another
 * process holds it), DOSSIER_IO, DOSSIER_CORRUPT, DOSSIER_NOMEM. */
int store_open(const char *dir, size_t block_cache_bytes, struct store **out,
               int *created, struct dossier_status *st);

/* Closes @s; every batch must be committed or aborted. NULL is a no-op. */
void store_close(struct store *s);

/* The meta record into *@out (free with
 * dossier__store__v1__meta__free_unpacked). Errors: DOSSIER_NOT_FOUND (a
 * directory made but never initialised), DOSSIER_FAILED_PRECONDITION (a
 * format this version does not read), DOSSIER_CORRUPT, DOSSIER_IO. */
int store_meta_get(struct store *s, Dossier__Store__V1__Meta **out,
                   struct dossier_status *st);

/* Writes the meta record, synced. Errors: DOSSIER_IO. */
int store_meta_put(struct store *s, const Dossier__Store__V1__Meta *m,
                   struct dossier_status *st);

/* The kinds the store knows; valid until store_close(). */
struct schema_registry *store_schemas(struct store *s);

/* The purposes the store knows; valid until store_close(). */
struct policy *store_policy(struct store *s);

/* The audit chain's head as committed, into *@out. */
void store_audit_head(struct store *s, struct audit_chain *out);

/* Subject @sp's current consent to @purpose into *@out (free with
 * dossier__store__v1__stored_consent__free_unpacked).
 * Errors: DOSSIER_NOT_FOUND (never decided), DOSSIER_CORRUPT, DOSSIER_IO. */
int store_consent_get(struct store *s, const uint8_t sp[STORE_SP_BYTES],
                      const char *purpose,
                      Dossier__Store__V1__StoredConsent **out,
                      struct dossier_status *st);

/* 1 if subject @sp is restricted, 0 if not, or an error code (st set). */
int store_restricted(struct store *s, const uint8_t sp[STORE_SP_BYTES],
                     struct dossier_status *st);

/* Every value of @family under @prefix (@plen bytes), in key order,
 * unpacked as @desc into *@out, an array of *@n messages (free with
 * store_messages_free, also after a failure: then NULL and 0).
 * Errors: DOSSIER_CORRUPT (a value that does not decode), DOSSIER_NOMEM,
 * DOSSIER_IO. */
int store_scan_messages(struct store *s, enum store_family family,
                        const uint8_t *prefix, size_t plen,
                        const ProtobufCMessageDescriptor *desc,
                        ProtobufCMessage ***out, size_t *n,
                        struct dossier_status *st);
void store_messages_free(ProtobufCMessage **m, size_t n);

/* Principals in the replicated state ("a" + name -> StoredPrincipal and
 * "t" + SHA-256 of the token -> name, policy family): how many, and one by
 * its token's hash or its name (free *@out with
 * dossier__store__v1__stored_principal__free_unpacked).
 * Errors: DOSSIER_NOT_FOUND, DOSSIER_CORRUPT, DOSSIER_IO. */
uint64_t store_principal_count(struct store *s);
int store_principal_by_hash(struct store *s, const uint8_t hash[32],
                            Dossier__Store__V1__StoredPrincipal **out,
                            struct dossier_status *st);
int store_principal_get(struct store *s, const char *name,
                        Dossier__Store__V1__StoredPrincipal **out,
                        struct dossier_status *st);

/* Retention, as the sweeper proposes it (retention.c) and the state
 * machine checks it again at the command's time @now (ms):
 * store_record_past_retention: record @r is past its kind @k's record
 * retention, counted from its creation or last update as the kind says
 * (0 when @k is NULL or keeps records until deleted);
 * store_field_past_retention: field schema @f's retention has passed
 * for record @r, counted from the record's last update (0 when @f is
 * NULL or has none). */
int store_record_past_retention(const KindSchema *k, const StoredRecord *r,
                                int64_t now);
int store_field_past_retention(const FieldSchema *f, const StoredRecord *r,
                               int64_t now);

/* 1 once the cluster's state ever held a principal: the "bootstrapped"
 * row, written with the first principal added and never deleted, or (for
 * a store from before that row) a principal now. The bootstrap token is
 * spent for good once this is 1, even if every principal is removed
 * later. On a read error: 1 (refusing is the safe side). */
int store_bootstrapped(struct store *s);

/* Tracked request @id ("q" + id in the policy family) into *@out (free
 * with dossier__store__v1__tracked_request__free_unpacked).
 * Errors: DOSSIER_NOT_FOUND, DOSSIER_CORRUPT, DOSSIER_IO. */
int store_request_get(struct store *s, const char *id,
                      Dossier__Store__V1__TrackedRequest **out,
                      struct dossier_status *st);

/* The erasure ledger's record of @sp into *@out (free with
 * dossier__store__v1__erasure_record__free_unpacked).
 * Errors: DOSSIER_NOT_FOUND (never erased), DOSSIER_CORRUPT, DOSSIER_IO. */
int store_erasure_get(struct store *s, const uint8_t sp[STORE_SP_BYTES],
                      Dossier__Store__V1__ErasureRecord **out,
                      struct dossier_status *st);

/* Erasure reports (ErasureDoneOp): at most this many erasures per
 * command, and this many nodes recorded per ledger row. */
#define ERASURE_DONE_ITEMS_MAX 256
#define ERASURE_NODES_MAX 18

/* Adds subject @sp to the ranges the next store_erase_finish() compacts:
 * for an erasure applied before a restart whose finishing may not have
 * run. Applying thread only. Errors: DOSSIER_NOMEM. */
int store_erase_mark(struct store *s, const uint8_t sp[STORE_SP_BYTES]);

/* After a batch with STORE_EFFECT_ERASED committed: flushes every family
 * (so the WAL files that held the erased data are dropped) and compacts
 * the erased key ranges, and the record, index, link, request and policy
 * families, down to the last level, so their bytes leave the SST files.
 * Slow; applying thread only. Errors: DOSSIER_IO. */
int store_erase_finish(struct store *s, struct dossier_status *st);

/* After a key rotation finished (STORE_EFFECT_ROTATED): flushes every
 * family (the WAL files that carried old wraps are dropped) and compacts
 * the subject and default families whole, down to the last level, so no
 * subject key or keyset sealed under the old master key is left in an SST
 * file. The raft log follows (store_compact_raft_log). Applying thread
 * only. Errors: DOSSIER_IO. */
int store_rotation_purge(struct store *s, struct dossier_status *st);

/* The key rotation row into *@out (free with
 * dossier__store__v1__key_rotation__free_unpacked).
 * Errors: DOSSIER_NOT_FOUND (never rotated), DOSSIER_CORRUPT, DOSSIER_IO. */
int store_key_rotation_get(struct store *s,
                           Dossier__Store__V1__KeyRotation **out,
                           struct dossier_status *st);

/* Compacts the whole raft log family down to the last level: after the
 * log was compacted past an erasure, its deleted entries leave the disk.
 * Then reopens the database, so that RocksDB writes a new MANIFEST and
 * deletes the old one, which still names the dropped files' first and
 * last keys. Applying thread only; handles from store_raw() change.
 * Errors: DOSSIER_IO, DOSSIER_CORRUPT (the node cannot go on). */
int store_compact_raft_log(struct store *s, struct dossier_status *st);

/* The last committed revision. */
uint64_t store_revision(struct store *s);

/* The raft index of the last command applied (0 before any). */
uint64_t store_applied(struct store *s);

/* ---- The change feed ---- */

/* Revisions of changes each node keeps by default (store_set_change_history). */
#define STORE_CHANGE_HISTORY_DEFAULT 100000

/* Keeps the changes of the last @revisions revisions (at least 1); older
 * ones are deleted as new ones come, a little at a time. */
void store_set_change_history(struct store *s, uint64_t revisions);

/* The first revision whose changes the feed still holds, all of them. */
uint64_t store_change_floor(struct store *s);

/* Waits up to @timeout_ms for the revision to move past @seen; returns
 * the last committed revision. */
uint64_t store_wait_revision(struct store *s, uint64_t seen, int timeout_ms);

/* The key of change (@rev, @seq) in the changes family. */
void store_change_key(uint8_t out[12], uint64_t rev, uint32_t seq);

/* One change read from the feed. */
struct store_change {
    uint64_t rev;
    uint32_t seq;
    Dossier__Store__V1__ChangeEntry *e; /* owned */
};

/* Reads into @out up to @max changes from (@rev, @seq) on, in order, up to
 * and including revision @last; *@n tells how many (free them with
 * store_changes_free). The caller checks store_change_floor() after
 * reading: changes below it may have been trimmed while it read.
 * Errors: DOSSIER_CORRUPT (an entry that does not decode), DOSSIER_IO,
 * DOSSIER_NOMEM. */
int store_changes_read(struct store *s, uint64_t rev, uint32_t seq,
                       uint64_t last, size_t max, struct store_change *out,
                       size_t *n, struct dossier_status *st);
void store_changes_free(struct store_change *c, size_t n);

/* RocksDB's integer property @name (e.g. "rocksdb.total-sst-files-size")
 * summed over every column family; 0 where a family lacks it. */
uint64_t store_property_sum(struct store *s, const char *name);

/* Calls @cb for every cluster member recorded by SetMember commands;
 * @address is borrowed for the call. */
int store_members(struct store *s,
                  void (*cb)(void *arg, uint64_t id, const char *address),
                  void *arg, struct dossier_status *st);

/* Makes a RocksDB checkpoint of the whole database in @dir (which must not
 * exist): a consistent copy at the last committed batch, made of hard links
 * where it can. Any thread.
 * Errors: DOSSIER_IO. */
int store_checkpoint(struct store *s, const char *dir,
                     struct dossier_status *st);

/* The raw handles, for raftio.c, which keeps Raft's own state in the raft
 * and raftlog families. Valid until store_install() or store_close(). */
struct store_raw {
    void *db; /* rocksdb_t */
    void *const *cf; /* rocksdb_column_family_handle_t *[STORE_N_FAMILIES] */
    void *wo_sync; /* rocksdb_writeoptions_t, synced */
    void *wo_nosync; /* rocksdb_writeoptions_t, not synced */
    void *ro;      /* rocksdb_readoptions_t */
};
void store_raw(struct store *s, struct store_raw *out);

/* Replaces the whole database by the checkpoint in @staged (a directory
 * received from the leader), after letting @prepare rewrite the staged
 * copy's Raft state through @raw (this node's term, vote and snapshot
 * point, not the sender's). The raftlog family of the copy is then
 * compacted (forced to the bottom level), so the log entries @prepare
 * deleted leave the files before the copy is used: the sender's log may
 * hold an erased subject's rows it had not compacted yet. The swap is two
 * renames of directories, so a
 * crash leaves either the old database or the new one; store_open()
 * finishes or undoes a swap it finds half done. Readers wait meanwhile.
 * Errors: DOSSIER_IO, DOSSIER_CORRUPT (the staged copy does not open). */
int store_install(struct store *s, const char *staged,
                  int (*prepare)(void *arg, const struct store_raw *raw,
                                 struct dossier_status *st),
                  void *arg, struct dossier_status *st);

/* Key encodings of the table above. Each writes into @out, which holds
 * STORE_KEY_MAX bytes, and returns the length. */
size_t store_record_key(uint8_t *out, const char *kind,
                        const uint8_t rid[STORE_RID_BYTES]);
size_t store_membership_key(uint8_t *out, const uint8_t sp[STORE_SP_BYTES],
                            const char *kind,
                            const uint8_t rid[STORE_RID_BYTES]);
size_t store_index_key(uint8_t *out, const char *kind, const char *field,
                       const uint8_t blind[STORE_BLIND_BYTES],
                       const uint8_t rid[STORE_RID_BYTES]);

/* A link row: @dir ('o' or 'i') @a_kind 0x00 @a_rid @label 0x00 @b_kind
 * 0x00 @b_rid. An "o" row names (record, label, target), its "i" mirror
 * (target, label, record). */
size_t store_link_key(uint8_t *out, char dir, const char *a_kind,
                      const uint8_t a_rid[STORE_RID_BYTES], const char *label,
                      const char *b_kind, const uint8_t b_rid[STORE_RID_BYTES]);

/* A link row taken apart (store_link_key's arguments). */
struct store_link_row {
    char dir; /* 'o' or 'i' */
    char a_kind[SCHEMA_NAME_MAX + 1];
    uint8_t a_rid[STORE_RID_BYTES];
    char label[SCHEMA_NAME_MAX + 1];
    char b_kind[SCHEMA_NAME_MAX + 1];
    uint8_t b_rid[STORE_RID_BYTES];
};

/* Parses link row @key (@klen bytes) into @out.
 * Errors: DOSSIER_CORRUPT (not a link row). */
int store_link_key_parse(const uint8_t *key, size_t klen,
                         struct store_link_row *out);

/* Big-endian u64, as keys hold them. */
void store_u64_be(uint8_t out[8], uint64_t v);
uint64_t store_be_u64(const uint8_t in[8]);

/* Reads the committed record (@kind, @rid) into *@out (free with
 * dossier__store__v1__stored_record__free_unpacked).
 * Errors: DOSSIER_NOT_FOUND, DOSSIER_CORRUPT, DOSSIER_IO. */
int store_record_get(struct store *s, const char *kind,
                     const uint8_t rid[STORE_RID_BYTES], StoredRecord **out,
                     struct dossier_status *st);

/* One link of a record as the link family holds it. */
struct store_link {
    char label[SCHEMA_NAME_MAX + 1];
    char kind[SCHEMA_NAME_MAX + 1];  /* the target's */
    uint8_t rid[STORE_RID_BYTES];    /* the target's */
    uint8_t *sealed_id;              /* malloc'd: the target's id, sealed */
    size_t sealed_len;
};

/* Reads record (@kind, @rid) into *@rec (free with
 * dossier__store__v1__stored_record__free_unpacked) and its links ("o"
 * rows) into *@links, an array of *@n in key order (free with
 * store_links_free), both as of one moment: a caller that read the record
 * before gets it again, as it is with these links (it may be newer). On
 * failure *@rec and *@links are NULL and *@n 0.
 * Errors: DOSSIER_NOT_FOUND, DOSSIER_CORRUPT, DOSSIER_NOMEM, DOSSIER_IO. */
int store_record_links(struct store *s, const char *kind,
                       const uint8_t rid[STORE_RID_BYTES], StoredRecord **rec,
                       struct store_link **links, size_t *n,
                       struct dossier_status *st);
void store_links_free(struct store_link *l, size_t n);

/* Merges (store_crm.c). A merge id is "MRG-" and 16 upper-case hex
 * digits: 1 if @id is one, else 0. The API and apply check ids with this
 * one function. */
#define STORE_MERGE_ID_LEN 20
int store_merge_id_valid(const char *id);

/* The subject @sp now is: the one it was merged into, following merges
 * up (its records, consent and restriction moved there), or @sp itself,
 * into @root (STORE_SP_BYTES). As batch @b sees it (NULL: the committed
 * state). Errors: DOSSIER_IO, DOSSIER_UNAVAILABLE. */
struct store_batch;
int store_subject_root(struct store *s, struct store_batch *b,
                       const uint8_t *sp, uint8_t *root,
                       struct dossier_status *st);

/* The summary of pending merge @id into *@out (free with
 * dossier__store__v1__merge_summary__free_unpacked).
 * Errors: DOSSIER_INVALID_ARGUMENT (not a merge id), DOSSIER_NOT_FOUND
 * (not pending: never made, undone or confirmed), DOSSIER_CORRUPT,
 * DOSSIER_IO. */
int store_merge_get(struct store *s, const char *id,
                    Dossier__Store__V1__MergeSummary **out,
                    struct dossier_status *st);

/* Up to @max summaries of pending merges, oldest first, from the first
 * one after revision @after (0: from the oldest), into *@out, an array of
 * *@n (free with store_merges_free); *@more is 1 when more follow. Reads
 * no before-image. Errors: DOSSIER_NOMEM, DOSSIER_CORRUPT, DOSSIER_IO. */
int store_merge_list(struct store *s, uint64_t after, size_t max,
                     Dossier__Store__V1__MergeSummary ***out, size_t *n,
                     int *more, struct dossier_status *st);
void store_merges_free(Dossier__Store__V1__MergeSummary **m, size_t n);

/* The subject key of subject @sp that pending merge @id deleted and keeps
 * for its undo (MergeSummary.kept_keys), as wrapped then, into *@out
 * (free with dossier__store__v1__subject_key__free_unpacked): what a key
 * rotation rewraps. Reads the whole MergeRecord.
 * Errors: DOSSIER_INVALID_ARGUMENT, DOSSIER_NOT_FOUND, DOSSIER_CORRUPT,
 * DOSSIER_IO. */
int store_merge_kept_key(struct store *s, const char *id,
                         const uint8_t sp[STORE_SP_BYTES], SubjectKey **out,
                         struct dossier_status *st);

/* Reads subject @sp's key into *@out (free with
 * dossier__store__v1__subject_key__free_unpacked).
 * Errors: DOSSIER_NOT_FOUND, DOSSIER_CORRUPT, DOSSIER_IO. */
int store_subject_key_get(struct store *s, const uint8_t sp[STORE_SP_BYTES],
                          SubjectKey **out, struct dossier_status *st);

/* Called for each key/value (borrowed, valid during the call) of a scan;
 * returns 0 to go on, 1 to stop, or an error code to stop with it. */
typedef int (*store_scan_cb)(void *arg, const uint8_t *key, size_t klen,
                             const uint8_t *val, size_t vlen);

/* Visits, in key order, every committed key of @family that starts with
 * @prefix and sorts after @after (exclusive; NULL: from the start).
 * Returns 0, the callback's error, or DOSSIER_IO / DOSSIER_CORRUPT. */
int store_scan(struct store *s, enum store_family family,
               const uint8_t *prefix, size_t prefix_len, const uint8_t *after,
               size_t after_len, store_scan_cb cb, void *arg,
               struct dossier_status *st);

/* Effects of applied commands that the node acts on once they are
 * durable. */
enum store_effect {
    STORE_EFFECT_KEYSET = 1 << 0,  /* the cluster's keyset was set */
    STORE_EFFECT_MEMBERS = 1 << 1, /* a member's address changed */
    STORE_EFFECT_ERASED = 1 << 2,  /* a subject was erased: call
                                      store_erase_finish() */
    STORE_EFFECT_KEYS = 1 << 3,    /* the master key versions in use
                                      changed (a rotation began or ended) */
    STORE_EFFECT_ROTATED = 1 << 4, /* a rotation finished: call
                                      store_rotation_purge() */
    STORE_EFFECT_SUBJECT_KEYS = 1 << 5, /* subject keys went (a merge):
                                           forget the cached ones */
};

/* Outcome of one applied command. */
struct store_result {
    struct dossier_status status;
    uint64_t version;  /* put: new version; delete: deleted version */
    int created;       /* put: the record did not exist */
    int64_t updated_at_ms;
    int duplicate;     /* a retry of a write already applied: the result
                          is the first one's, nothing was applied again */
    uint64_t deleted;  /* erase: records deleted */
    uint64_t index;    /* erase: raft index recorded */
};

/* A batch of commands applied together and made durable by one write.
 * Each command sees the effects of the ones before it in the batch. */
struct store_batch;

/* Errors: NULL when out of memory. */
struct store_batch *store_batch_begin(struct store *s);

/* Applies @cmd (borrowed) to @b. Deterministic: the outcome depends only on
 * the store's state and @cmd, never on a clock or a random draw. A command
 * that fails leaves @b as it was and reports why in @res->status (NOT_FOUND,
 * ALREADY_EXISTS, VERSION_CONFLICT, FAILED_PRECONDITION, RETRY when a
 * subject key changed under the proposer, CORRUPT for a malformed command).
 * A command whose request id was applied within STORE_REQUEST_TTL_MS is
 * not applied again: @res repeats the first outcome (res->duplicate).
 * Returns @res->status.code. */
int store_apply(struct store_batch *b, const Command *cmd,
                struct store_result *res);

/* 1 when a request id recorded before @before_ms (command time) is still
 * kept, else 0 (also on a read error). Cheap: one seek from where the last
 * expiry stopped. */
int store_requests_kept_before(struct store *s, int64_t before_ms);

/* Number of commands of @b that succeeded so far. */
size_t store_batch_count(const struct store_batch *b);

/* Records that @b brings the state machine to raft index @index; set
 * before each command, it is also the index an erasure records. */
void store_batch_set_applied(struct store_batch *b, uint64_t index);

/* STORE_EFFECT_* of the commands applied to @b so far. */
unsigned store_batch_effects(const struct store_batch *b);

/* Writes @b in one RocksDB write (synced when @sync) and frees it. On
 * failure nothing of @b is visible and the revision is unchanged.
 * Errors: DOSSIER_IO. */
int store_batch_commit(struct store_batch *b, int sync,
                       struct dossier_status *st);

/* Drops @b unwritten. */
void store_batch_abort(struct store_batch *b);

#endif
