/* The tamper-evident audit log: the canonical encoding of entries, their
 * hash chain, signed checkpoints and a streaming verifier. Pure: libsodium
 * and libc only, no storage, no threads; the node stores what it makes.
 *
 * Entry (version 1 or 2), every integer big-endian
 *   size    content
 *   1       0x01, entry format version; 0x02 when a reference follows
 *   8       time, ms since the epoch, >= 0
 *   4       outcome, a DOSSIER_* code (0 = ok), two's complement
 *   2 + P   principal: length P, then P bytes (may be empty)
 *   2 + A   action ("records.put"): length A >= 1, then A bytes
 *   2 + U   purpose: length U, then U bytes (may be empty)
 *   1       W, bytes per pseudonym: 1..32, or 0 when the entry names none
 *   1       1 if a subject pseudonym follows, else 0
 *   W       subject pseudonym, only when the byte above is 1
 *   4       N, number of record pseudonyms, <= AUDIT_RECORDS_MAX
 *   N * W   record pseudonyms
 *   2 + R   version 2 only: the reference of a subject right (a ticket or
 *           request label, "DSR-114"): length R >= 1, then R bytes. An
 *           entry without a reference is version 1, so each has exactly
 *           one encoding, and entries written before references existed
 *           keep their hashes.
 * Texts are at most AUDIT_TEXT_MAX bytes and hold no NUL byte. Nothing may
 * follow the last field. An entry has exactly one encoding: a decoder
 * rejects any other byte string, so the hash of an entry is the hash of
 * what it says.
 *
 * Chain: entry i (1-based) has hash
 *   h_i = BLAKE2b-256("dossier.audit.v1" | be64(i) | h_(i-1) | entry i)
 * with h_0 = 32 zero bytes. Every input but the last has a fixed size, so
 * the concatenation is unambiguous; binding i makes a moved entry fail.
 *
 * Checkpoint (version 1), 113 bytes
 *   offset  size  content
 *   0       1     0x01, checkpoint format version
 *   1       8     index i of the last entry it covers, >= 1
 *   9       32    h_i
 *   41      8     time the leader signed it, ms since the epoch, >= 0
 *   49      64    Ed25519 signature of the message
 *                 "dossier.audit.checkpoint.v1" | be64(i) | h_i | be64(time)
 *
 * What the verifier can name. The chain proves that h_c, as signed, is the
 * hash of entries 1..c. A changed entry k between checkpoints p < k <= c
 * is found when the chain reaches c, and without anything else all the
 * verifier can prove is "h_c is wrong; the cause is in p+1..c". When the
 * caller also hands in each entry's stored hash (the node keeps h_i next to
 * entry i), a changed entry whose stored hash was left alone is named
 * exactly. Entries after the last checkpoint are an "unsigned tail": not an
 * error, but not protected against rewriting either (stored hashes catch
 * only careless rewriting). Cutting off the tail together with its
 * checkpoints is invisible unless the verifier is given a checkpoint kept
 * elsewhere (e.g., the last one an auditor saw), which then reports the
 * log truncated.
 *
 * libsodium must be initialised (sodium_init(), as crypt_new() does) before
 * the chain and checkpoint functions run; audit_verify_init(),
 * audit_verify_init_from() and audit_signing_keypair_from_seed() do it
 * themselves. */
#ifndef DOSSIER_NODE_AUDIT_H
#define DOSSIER_NODE_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dossier/dossier.h>

#define AUDIT_ENTRY_VERSION 0x01
#define AUDIT_ENTRY_VERSION_REFERENCE 0x02
#define AUDIT_CHECKPOINT_VERSION 0x01
#define AUDIT_HASH_BYTES 32
#define AUDIT_PSEUDONYM_MAX 32
#define AUDIT_TEXT_MAX 1024
#define AUDIT_RECORDS_MAX 65536u
#define AUDIT_PUBLIC_KEY_BYTES 32
#define AUDIT_SECRET_KEY_BYTES 64
#define AUDIT_SEED_BYTES 32
#define AUDIT_SIGNATURE_BYTES 64
#define AUDIT_CHECKPOINT_BYTES                                                \
    (1 + 8 + AUDIT_HASH_BYTES + 8 + AUDIT_SIGNATURE_BYTES)
#define AUDIT_MESSAGE_MAX 256

/* One audit entry. To encode, the caller fills it with borrowed pointers;
 * audit_entry_decode() fills it with pointers into the decoded buffer.
 * Texts are counted, not NUL-terminated (print them with "%.*s"); a NULL
 * text with length 0 is "". There is no personal data here by design:
 * subjects and records appear only as pseudonyms (crypt.h's, 16 bytes). */
struct audit_entry {
    int64_t time_ms;
    const char *principal; /* who called: a name, may be empty */
    size_t principal_len;
    const char *action; /* "records.put", "subjects.erase", ... */
    size_t action_len;
    const char *purpose; /* declared purpose, may be empty */
    size_t purpose_len;
    /* Bytes per pseudonym (1..AUDIT_PSEUDONYM_MAX), for the subject and
     * every record alike. Ignored when the entry names no pseudonym, and
     * then 0 after decoding. */
    uint8_t pseudonym_len;
    const uint8_t *subject; /* subject pseudonym, or NULL for none */
    const uint8_t *records; /* n_records * pseudonym_len bytes */
    size_t n_records;
    int32_t outcome; /* DOSSIER_* code of the call, 0 = ok */
    /* Why, for subject rights (a label such as "DSR-114"), may be empty:
     * an entry with one is encoded as version 2. */
    const char *reference;
    size_t reference_len;
};

/* Size of @e's encoding into *@len, after checking @e.
 * Errors: DOSSIER_INVALID_ARGUMENT (negative time, empty action, a text too
 * long or holding a NUL, a pseudonym length out of range, too many
 * records). */
int audit_entry_size(const struct audit_entry *e, size_t *len,
                     struct dossier_status *st);

/* Encodes @e (borrowed) into @buf of @cap bytes and its length into *@len.
 * On failure @buf and *@len are untouched.
 * Errors: those of audit_entry_size(), DOSSIER_TOO_LARGE (@cap too small:
 * ask audit_entry_size()). */
int audit_entry_encode(const struct audit_entry *e, uint8_t *buf, size_t cap,
                       size_t *len, struct dossier_status *st);

/* Encodes @e into *@out, malloc'd, which the caller frees with free(), and
 * its length into *@len. On failure *@out is NULL.
 * Errors: those of audit_entry_size(), DOSSIER_NOMEM. */
int audit_entry_encode_alloc(const struct audit_entry *e, uint8_t **out,
                             size_t *len, struct dossier_status *st);

/* Decodes the @len bytes at @buf into *@out, whose pointers then borrow
 * @buf: keep @buf alive while using them. Accepts exactly the encodings
 * audit_entry_encode() produces and reads nothing outside @buf. On failure
 * *@out is untouched.
 * Errors: DOSSIER_CORRUPT (unknown version, truncated, a length out of
 * range, a NUL in a text, a non-canonical encoding, trailing bytes). */
DOSSIER_MUST_CHECK int audit_entry_decode(const uint8_t *buf, size_t len,
                                          struct audit_entry *out,
                                          struct dossier_status *st);

/* h_@index of the chain into @out, from h_(@index - 1) in @prev and the
 * @len-byte encoded entry @encoded (both borrowed). @index >= 1. @out may
 * be @prev. */
void audit_chain_next(const uint8_t prev[AUDIT_HASH_BYTES], uint64_t index,
                      const uint8_t *encoded, size_t len,
                      uint8_t out[AUDIT_HASH_BYTES]);

/* ------------------------------------------------------------------------
 * Writing: the chain's head, as every node computes it while applying the
 * log, and the leader's checkpoints. */

/* A signed statement that h_index is the chain's hash of entries
 * 1..index (see the table above). */
struct audit_checkpoint {
    uint64_t index; /* last entry covered, >= 1 */
    uint8_t hash[AUDIT_HASH_BYTES];
    int64_t time_ms;
    uint8_t sig[AUDIT_SIGNATURE_BYTES];
};

/* The head of a chain. Plain data: a node that restarts sets the fields
 * from what it stored. */
struct audit_chain {
    uint64_t index;                 /* index of the last entry, 0 if none */
    uint8_t hash[AUDIT_HASH_BYTES]; /* h_index */
    uint64_t signed_index;          /* index of the last checkpoint, 0 none */
    int64_t signed_ms;              /* its time, 0 if none */
};

/* Makes @c the head of an empty chain (h_0 = zeros, nothing signed). */
void audit_chain_init(struct audit_chain *c);

/* Appends the @len-byte encoded entry @encoded (borrowed) to @c and
 * returns its index; @c->hash is then its hash, to store next to it. */
uint64_t audit_chain_append(struct audit_chain *c, const uint8_t *encoded,
                            size_t len);

/* Whether a checkpoint is due at @now_ms: some entry is unsigned and
 * either @every_entries entries or @every_ms ms have passed since the last
 * checkpoint (0 disables either rule). The first is due as soon as there
 * is an entry to sign when @every_ms is set. */
bool audit_chain_checkpoint_due(const struct audit_chain *c, int64_t now_ms,
                                uint64_t every_entries, int64_t every_ms);

/* Signs the head of @c (which holds an entry) at @now_ms with secret key
 * @sk (borrowed, see audit_signing_keypair_from_seed()) into @out, and
 * records it in @c as the last checkpoint. */
void audit_chain_checkpoint(struct audit_chain *c, int64_t now_ms,
                            const unsigned char sk[AUDIT_SECRET_KEY_BYTES],
                            struct audit_checkpoint *out);

/* ------------------------------------------------------------------------
 * Checkpoints and keys */

/* Makes the Ed25519 key pair of the 32-byte @seed (borrowed): public key
 * into @pk, secret key into @sk, both caller memory. @sk holds the seed:
 * keep it in sodium_malloc() memory and sodium_free() it when done. Every
 * node that may lead must sign with the same key, so the seed should come
 * from cluster-wide secret state (see audit_signing_seed_derive()), not be
 * drawn per node.
 * Errors: DOSSIER_INTERNAL (libsodium failed to start). */
int audit_signing_keypair_from_seed(
    const unsigned char seed[AUDIT_SEED_BYTES],
    uint8_t pk[AUDIT_PUBLIC_KEY_BYTES],
    unsigned char sk[AUDIT_SECRET_KEY_BYTES], struct dossier_status *st);

/* A signing seed derived from the 32-byte secret @key (borrowed) as
 * keyed BLAKE2b-256(@key; "dossier.audit.signing-seed.v1") into @seed,
 * caller memory to wipe with sodium_memzero() after use. */
void audit_signing_seed_derive(const unsigned char key[32],
                               unsigned char seed[AUDIT_SEED_BYTES]);

/* Signs @cp's index, hash and time with @sk (borrowed) into @cp->sig.
 * @cp->index >= 1 and @cp->time_ms >= 0. */
void audit_checkpoint_sign(struct audit_checkpoint *cp,
                           const unsigned char sk[AUDIT_SECRET_KEY_BYTES]);

/* Checks @cp's signature under public key @pk.
 * Errors: DOSSIER_CORRUPT (bad signature, or index 0 or negative time). */
DOSSIER_MUST_CHECK int
audit_checkpoint_verify(const struct audit_checkpoint *cp,
                        const uint8_t pk[AUDIT_PUBLIC_KEY_BYTES]);

/* Encodes @cp into the AUDIT_CHECKPOINT_BYTES at @out. */
void audit_checkpoint_encode(const struct audit_checkpoint *cp,
                             uint8_t out[AUDIT_CHECKPOINT_BYTES]);

/* Decodes the @len bytes at @buf into *@cp (untouched on failure). Does not
 * check the signature: that takes the public key.
 * Errors: DOSSIER_CORRUPT (wrong length or version, index 0, negative
 * time). */
DOSSIER_MUST_CHECK int audit_checkpoint_decode(const uint8_t *buf, size_t len,
                                               struct audit_checkpoint *cp,
                                               struct dossier_status *st);

/* ------------------------------------------------------------------------
 * Erasure certificates: what the cluster's audit key signs for an erasure,
 * the same message on the node (signing) and in the client (checking).
 *   offset  size  content
 *   0       18    "dossier.erasure.v1", no NUL
 *   18      16    subject pseudonym
 *   34      8     be64(time_ms)
 *   42      8     be64(raft_index)
 *   50      8     be64(records_deleted) */
#define AUDIT_ERASURE_MESSAGE_BYTES (18 + 16 + 3 * 8)

/* What an export request's receipt signs (see RequestReceipt in
 * proto/dossier.proto): "dossier.request.v1" NUL id NUL kind NUL |
 * pseudonym | digest (NULL: zeros) | be64(executed_ms) |
 * be64(result_index), into @out; returns its length. @id is at most 64
 * bytes and @kind 16 (longer ones are cut). */
#define AUDIT_REQUEST_MESSAGE_MAX (19 + 65 + 17 + 16 + 32 + 16)
size_t audit_request_message(const char *id, const char *kind,
                             const uint8_t pseudonym[16],
                             const uint8_t digest[32], int64_t executed_ms,
                             uint64_t result_index,
                             uint8_t out[AUDIT_REQUEST_MESSAGE_MAX]);

void audit_erasure_message(const uint8_t pseudonym[16], int64_t time_ms,
                           uint64_t raft_index, uint64_t records_deleted,
                           uint8_t out[AUDIT_ERASURE_MESSAGE_BYTES]);

/* Erasure certificates, version 2: the nodes that finished the erasure
 * are signed too.
 *   offset  size    content
 *   0       18      "dossier.erasure.v2", no NUL
 *   18      16      subject pseudonym
 *   34      8       be64(time_ms)
 *   42      8       be64(raft_index)
 *   50      8       be64(records_deleted)
 *   58      4       be32(n), the number of nodes
 *   62      8 * n   be64(node id), ascending, no repeats
 * Into @out, its length into *@len; -1 (nothing written) when @nodes are
 * not ascending or more than AUDIT_ERASURE_NODES_MAX. */
#define AUDIT_ERASURE_NODES_MAX 18
#define AUDIT_ERASURE_V2_MESSAGE_MAX (18 + 16 + 3 * 8 + 4 + 8 * AUDIT_ERASURE_NODES_MAX)
int audit_erasure_message_v2(const uint8_t pseudonym[16], int64_t time_ms,
                             uint64_t raft_index, uint64_t records_deleted,
                             const uint64_t *nodes, size_t n,
                             uint8_t out[AUDIT_ERASURE_V2_MESSAGE_MAX],
                             size_t *len);

/* ------------------------------------------------------------------------
 * Verifying, streaming: memory stays constant however long the log.
 *
 * Feed the log in order: entries by increasing index, and each checkpoint
 * after the entry it covers and before the next one, i.e. merge the two
 * sequences by index, a checkpoint after an entry of the same index. A
 * checkpoint whose entries are missing is still fed once the entries run
 * out: that is how truncation is found. A checkpoint fed after a later
 * entry cannot be checked and counts as out of order.
 *
 * The first fault ends verification: later calls do nothing and return
 * DOSSIER_CORRUPT, and audit_verify_finish() describes that fault. */

enum audit_fault {
    AUDIT_FAULT_NONE = 0,
    AUDIT_FAULT_MALFORMED,   /* an entry or checkpoint does not decode */
    AUDIT_FAULT_SEQUENCE,    /* an index missing, repeated or out of order */
    AUDIT_FAULT_STORED_HASH, /* an entry does not match its stored hash */
    AUDIT_FAULT_CHAIN,       /* the chain does not reach a checkpoint's hash */
    AUDIT_FAULT_SIGNATURE,   /* a checkpoint's signature does not verify */
    AUDIT_FAULT_TRUNCATED,   /* a checkpoint covers entries the log lacks */
};

/* The outcome of a verification. */
struct audit_report {
    int code;               /* 0, or DOSSIER_CORRUPT when @fault is set */
    enum audit_fault fault; /* the first fault found */
    /* The first index proven bad, 0 when none:
     *   MALFORMED, STORED_HASH  the entry itself
     *   SEQUENCE                the entry expected where another came (the
     *                           missing one), or a repeated index; for a
     *                           checkpoint, its index
     *   CHAIN, SIGNATURE        the checkpoint's index
     *   TRUNCATED               the first missing entry */
    uint64_t bad_index;
    /* The lowest index that may hold the cause: bad_index when the entry is
     * known exactly, the entry after the previous good checkpoint for a
     * CHAIN fault. */
    uint64_t suspect_from;
    /* Index of the last entry accepted in sequence: the number of entries
     * when verifying from entry 1. */
    uint64_t entries;
    uint64_t checkpoints;    /* checkpoints that matched the chain */
    uint64_t signed_through; /* index of the last one, 0 if none */
    uint64_t unsigned_tail;  /* entries after signed_through (no fault) */
    char message[AUDIT_MESSAGE_MAX]; /* for a human; no personal data */
};

/* A verification in progress. The caller holds it; it owns nothing, so
 * there is nothing to release. Fields are private. */
struct audit_verifier {
    uint8_t pk[AUDIT_PUBLIC_KEY_BYTES];
    uint64_t index;                 /* last entry accepted */
    uint8_t hash[AUDIT_HASH_BYTES]; /* h_index */
    uint64_t signed_through;
    uint8_t signed_hash[AUDIT_HASH_BYTES];
    uint64_t checkpoints;
    bool pending; /* a checkpoint ahead of the entries, awaiting them */
    struct audit_checkpoint ahead;
    bool finished;
    enum audit_fault fault;
    uint64_t bad_index;
    uint64_t suspect_from;
    char message[AUDIT_MESSAGE_MAX];
};

/* Starts verifying a whole log (from entry 1) under public key @pk
 * (copied).
 * Errors: DOSSIER_INTERNAL (libsodium failed to start). */
int audit_verify_init(struct audit_verifier *v,
                      const uint8_t pk[AUDIT_PUBLIC_KEY_BYTES]);

/* Starts verifying a log whose entries up to checkpoint @from (copied)
 * were removed, e.g. after their retention ended: the next entry expected
 * is @from->index + 1, chained onto @from->hash. @from must be trusted
 * for its index (an auditor's copy), as nothing before it is checked.
 * Errors: DOSSIER_INTERNAL, DOSSIER_CORRUPT (@from's signature is bad). */
int audit_verify_init_from(struct audit_verifier *v,
                           const uint8_t pk[AUDIT_PUBLIC_KEY_BYTES],
                           const struct audit_checkpoint *from);

/* Feeds entry @index, encoded in the @len bytes at @encoded, and, when not
 * NULL, the hash stored with it (all borrowed). Returns 0, or
 * DOSSIER_CORRUPT once a fault is found (now or before). */
int audit_verify_entry(struct audit_verifier *v, uint64_t index,
                       const uint8_t *encoded, size_t len,
                       const uint8_t stored_hash[AUDIT_HASH_BYTES]);

/* Feeds checkpoint @cp (borrowed). A checkpoint repeating the last one
 * (same index and hash, e.g. re-signed by a new leader) is accepted; one
 * at the same index with another hash is a CHAIN fault (a forked log).
 * Returns 0, or DOSSIER_CORRUPT once a fault is found. */
int audit_verify_checkpoint(struct audit_verifier *v,
                            const struct audit_checkpoint *cp);

/* The index of the last entry accepted so far (0: none) and, into @hash,
 * its chain hash h_index: what a checkpoint kept outside the cluster is
 * compared with once the walk reaches its index. */
uint64_t audit_verify_head(const struct audit_verifier *v,
                           uint8_t hash[AUDIT_HASH_BYTES]);

/* Ends the log: a checkpoint still ahead of the entries means truncation.
 * Fills @report and returns its code: 0 (an unsigned tail is no fault) or
 * DOSSIER_CORRUPT. No more entries may be fed afterwards. */
DOSSIER_MUST_CHECK int audit_verify_finish(struct audit_verifier *v,
                                           struct audit_report *report);

#endif
