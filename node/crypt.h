/* The key hierarchy, sealing of personal values, pseudonyms and blind
 * indexes: everything that makes the store hold no plaintext.
 *
 * Keys
 *   master key (KEK, from the key file; versioned)
 *     seals the keyset: pseudonym key, record key, index key, shared key
 *     wraps each subject's data key (DEK, random, one per subject)
 *   DEK seals every field value, record id, link target and the subject id
 *   of its subject's records; records without a subject use the shared key.
 *
 * Sealed box (all boxes, version 1)
 *   offset  size  content
 *   0       1     0x01, box format version
 *   1       24    XChaCha20 nonce, random
 *   25      n     ciphertext of the n-byte plaintext
 *   25+n    16    Poly1305 tag
 *
 * Associated data binds a box to its place, so a box moved to another
 * subject, record, field or purpose fails to open:
 *   "DSR1" | domain (1 byte) | lp(subject) | lp(kind) | lp(rid) | lp(name)
 * where lp(x) is x's length as 2 bytes big-endian followed by x. Domains:
 *   'F' field value   (subject pseudonym, kind, record pseudonym, field name)
 *   'I' record id     (subject pseudonym, kind, record pseudonym, "")
 *   'L' link list     (subject pseudonym, kind, record pseudonym, "")
 *                     (written only before links were indexed)
 *   'A' link target id (subject pseudonym, kind, record pseudonym,
 *                     label "/" target kind "/" hex(target pseudonym))
 *   'M' merged ids    (subject pseudonym, kind, survivor's pseudonym,
 *                     merge id): the duplicates' ids of a pending merge
 *   'S' subject id    (subject pseudonym, "", "", "")
 *   'K' wrapped DEK   (subject pseudonym, "", "", "v<kek version>")
 *   'X' sealed keyset (cluster id, "", "", "v<kek version>")
 *
 * Pseudonyms and blind indexes are keyed BLAKE2b, 16 bytes:
 *   subject pseudonym = H(pseudonym key; subject id)
 *   record pseudonym  = H(record key; lp(kind) | lp(id))
 *   blind index       = H(index key; lp(kind) | lp(field) | lp(normalized))
 *
 * Key check value of a master key (Meta.kek_check), keyed BLAKE2b, 16 bytes:
 *   H(master key; "dossier.kek-check.v1")
 * Its first 8 bytes in hex are the "key id" operators see in messages.
 *
 * Master key versions in use (from the replicated state, set with
 * crypt_set_versions): the active version seals the keyset (Meta); while
 * a rotation runs (keys.h) new subject keys are wrapped under its target
 * version, else under the active one. Never under the highest version
 * merely loaded: a version added to one node's key file is used only
 * once a rotation (which checks every node holds it) starts. The peer
 * token nodes present comes from the active version; a node accepts the
 * token of any version it holds, so nodes agree across a rotation.
 */
#ifndef DOSSIER_NODE_CRYPT_H
#define DOSSIER_NODE_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "keyfile.h"
#include "store.pb-c.h"

#define CRYPT_KEY_BYTES 32
#define CRYPT_PSEUDONYM_BYTES 16
#define CRYPT_BLIND_BYTES 16
#define CRYPT_NONCE_BYTES 24
#define CRYPT_TAG_BYTES 16
#define CRYPT_BOX_VERSION 0x01
#define CRYPT_BOX_OVERHEAD (1 + CRYPT_NONCE_BYTES + CRYPT_TAG_BYTES)
#define CRYPT_KEK_CHECK_BYTES 16
/* Longest subject id, kind, record id and field name a place may hold. */
#define CRYPT_SUBJECT_ID_MAX 256

enum crypt_domain {
    CRYPT_FIELD = 'F',
    CRYPT_RECORD_ID = 'I',
    CRYPT_LINKS = 'L',
    CRYPT_LINK_TARGET = 'A',
    CRYPT_MERGE_IDS = 'M',
    CRYPT_SUBJECT_ID = 'S',
    CRYPT_WRAPPED_DEK = 'K',
    CRYPT_KEYSET = 'X',
};

/* Where a box belongs; every member borrowed, strings may be NULL for "". */
struct crypt_place {
    enum crypt_domain domain;
    const uint8_t *subject; /* subject pseudonym or cluster id */
    size_t subject_len;
    const char *kind;
    const uint8_t *rid;
    size_t rid_len;
    const char *name;
};

/* A data key in the calling thread's locked scratch memory (see
 * crypt_scratch_key); id 0 is the shared key of records without subject. */
struct crypt_dek {
    uint64_t id;
    unsigned char *key; /* CRYPT_KEY_BYTES */
};

struct crypt;

/* Makes a crypt context holding the master keys of @kf, which it takes
 * (on success and failure alike; @kf is left empty). Initialises libsodium
 * and the key cache of @cache_entries subjects.
 * Errors: DOSSIER_INVALID_ARGUMENT (no key), DOSSIER_NOMEM. */
int crypt_new(struct keyfile *kf, size_t cache_entries, struct crypt **out,
              struct dossier_status *st);

/* Wipes every key and frees @c. NULL is a no-op. */
void crypt_free(struct crypt *c);

/* For a new data directory: draws a random keyset and a cluster id and
 * seals the keyset under the highest master key version loaded, filling @m's cluster_id,
 * kek_version, kek_check and sealed_keyset. The three byte fields are
 * malloc'd; the caller frees each data pointer with free(). */
int crypt_keyset_create(struct crypt *c, Dossier__Store__V1__Meta *m,
                        struct dossier_status *st);

/* For an existing data directory: checks that the key file holds the master
 * key version that sealed @m's keyset and opens it.
 * Errors: DOSSIER_WRONG_KEY (message gives both key ids), DOSSIER_CORRUPT. */
int crypt_keyset_load(struct crypt *c, const Dossier__Store__V1__Meta *m,
                      struct dossier_status *st);

/* The key id of master key version @version, as 16 hex digits, for
 * operators' messages; "unknown" when the version is not loaded. */
void crypt_kek_id(const struct crypt *c, uint32_t version, char out[17]);

/* The token this node presents to the others (auth.h), from the active
 * master key version (the highest loaded before the keyset is known). */
void crypt_peer_token(const struct crypt *c, char out[65]);

/* 1 if @token (@len bytes) is the peer token of a version this node
 * holds, else 0. Constant time per version. */
int crypt_peer_token_ok(const struct crypt *c, const char *token, size_t len);

/* Records which versions the cluster uses (see the top of this file);
 * @rotate_to 0: no rotation. Thread-safe, and serialized with
 * crypt_keys_reload(): a reload either sees these versions in use (and
 * keeps them) or happened before, and then this reports a version it
 * dropped. The versions are recorded either way.
 * Errors: DOSSIER_WRONG_KEY (a version in use is not loaded). */
int crypt_set_versions(struct crypt *c, uint32_t active, uint32_t rotate_to,
                       struct dossier_status *st);
uint32_t crypt_active_version(const struct crypt *c);
/* The version new subject keys are wrapped under. */
uint32_t crypt_wrap_version(const struct crypt *c);

/* The versions loaded, ascending, into @versions and their key check
 * values into @checks (may be NULL), at most @cap; returns how many. */
size_t crypt_kek_versions(const struct crypt *c, uint32_t *versions,
                          uint8_t (*checks)[CRYPT_KEK_CHECK_BYTES], size_t cap);

/* The key check value of version @version into @out: 0, or -1 when it is
 * not loaded. */
int crypt_kek_check_of(const struct crypt *c, uint32_t version,
                       uint8_t out[CRYPT_KEK_CHECK_BYTES]);

/* Checks that version @version is loaded and has key check value @check
 * (@check_len bytes); @why ("the data directory", ...) starts the
 * message. Errors: DOSSIER_WRONG_KEY (missing or another key; both key
 * ids named). */
int crypt_kek_require(const struct crypt *c, uint32_t version,
                      const uint8_t *check, size_t check_len,
                      const char *why, struct dossier_status *st);

/* Replaces the loaded master keys by @kf (taken, on success and failure
 * alike), e.g. on SIGHUP. Refuses, keeping the old ones, a key file that
 * lacks a version in use (the active one or a rotation's target) or gives
 * a loaded version another key. Calls in flight finish with the old keys.
 * Errors: DOSSIER_WRONG_KEY. */
int crypt_keys_reload(struct crypt *c, struct keyfile *kf,
                      struct dossier_status *st);

/* Rotation: the data key of @sk (subject @sp; borrowed) unwrapped and
 * wrapped again under version @to_version, into *@wrapped (malloc'd box
 * of *@len bytes, freed by the caller). The data key itself is unchanged.
 * Errors: DOSSIER_WRONG_KEY (a version not loaded), DOSSIER_CORRUPT,
 * DOSSIER_NOMEM. */
int crypt_subject_key_rewrap(const struct crypt *c,
                             const uint8_t sp[CRYPT_PSEUDONYM_BYTES],
                             const Dossier__Store__V1__SubjectKey *sk,
                             uint32_t to_version, uint8_t **wrapped,
                             size_t *len, struct dossier_status *st);

/* Rotation: the open keyset sealed again, unchanged, under version
 * @to_version: fills @m's cluster_id, kek_version, kek_check and
 * sealed_keyset (malloc'd; the caller frees each data pointer).
 * Errors: DOSSIER_UNAVAILABLE (no keyset open), DOSSIER_WRONG_KEY,
 * DOSSIER_NOMEM. */
int crypt_keyset_reseal(const struct crypt *c, uint32_t to_version,
                        Dossier__Store__V1__Meta *m,
                        struct dossier_status *st);

/* The cluster's audit signing key pair (Ed25519), derived from the
 * keyset so every node that may lead signs with the same key: public key
 * into @pk, secret key into @sk (64 bytes of caller memory: use
 * sodium_malloc, and sodium_free it after).
 * Errors: DOSSIER_UNAVAILABLE (no keyset open yet), DOSSIER_INTERNAL. */
int crypt_audit_keys(const struct crypt *c, uint8_t pk[32],
                     unsigned char sk[64], struct dossier_status *st);

/* Pseudonyms and blind indexes (see the table above); @out gets 16 bytes. */
void crypt_subject_pseudonym(const struct crypt *c, const char *subject_id,
                             size_t len, uint8_t out[CRYPT_PSEUDONYM_BYTES]);
void crypt_record_pseudonym(const struct crypt *c, const char *kind,
                            const char *id, size_t id_len,
                            uint8_t out[CRYPT_PSEUDONYM_BYTES]);
void crypt_blind_index(const struct crypt *c, const char *kind,
                       const char *field, const uint8_t *norm, size_t len,
                       uint8_t out[CRYPT_BLIND_BYTES]);

/* Locked scratch memory of the calling thread for one data key, allocated
 * on first use and freed when the thread exits. Callers wipe it with
 * crypt_dek_wipe() when done. Returns NULL when out of memory. */
unsigned char *crypt_scratch_key(void);
void crypt_dek_wipe(struct crypt_dek *k);

/* The shared key of records without a subject, copied into @k. */
void crypt_shared_dek(const struct crypt *c, struct crypt_dek *k);

/* Creates a new data key for subject @sp (id @subject_id, borrowed, 1 to
 * CRYPT_SUBJECT_ID_MAX bytes) into @k and fills @out, whose wrapped_dek and
 * sealed_subject_id data the caller frees with free().
 * Errors: DOSSIER_INVALID_ARGUMENT (id length), DOSSIER_NOMEM. */
int crypt_subject_key_new(const struct crypt *c,
                          const uint8_t sp[CRYPT_PSEUDONYM_BYTES],
                          const char *subject_id, size_t subject_len,
                          int64_t now_ms, struct crypt_dek *k,
                          Dossier__Store__V1__SubjectKey *out,
                          struct dossier_status *st);

/* Finds subject @sp's data key: from the cache, or by unwrapping @sk
 * (borrowed, may be NULL when the caller has not read it yet; then the
 * result is 1 for "not cached"). On success copies the key into @k and
 * the subject id into @sid (NUL-terminated, @sid_cap bytes) if @sid is not
 * NULL, caching both. Returns 0, 1 (not cached and @sk NULL) or an error.
 * Errors: DOSSIER_WRONG_KEY (master key version missing), DOSSIER_CORRUPT. */
int crypt_subject_key_open(struct crypt *c,
                           const uint8_t sp[CRYPT_PSEUDONYM_BYTES],
                           const Dossier__Store__V1__SubjectKey *sk,
                           struct crypt_dek *k, char *sid, size_t sid_cap,
                           struct dossier_status *st);

/* Forgets every cached key (after the store was replaced by a snapshot). */
void crypt_cache_clear(struct crypt *c);

/* Forgets subject @sp's cached key (after erasure or a lost key race). */
void crypt_cache_forget(struct crypt *c,
                        const uint8_t sp[CRYPT_PSEUDONYM_BYTES]);

/* Length of the box of an @plain_len-byte plaintext. */
static inline size_t crypt_box_len(size_t plain_len)
{
    return plain_len + CRYPT_BOX_OVERHEAD;
}

/* Seals @plain (@len bytes, borrowed) for place @p under @key into @box,
 * which has crypt_box_len(@len) bytes. Errors: DOSSIER_INVALID_ARGUMENT
 * (a place component longer than 65535 bytes). */
int crypt_seal(const unsigned char *key, const struct crypt_place *p,
               const uint8_t *plain, size_t len, uint8_t *box);

/* Opens @box (@box_len bytes) for place @p into @plain, which has
 * @box_len - CRYPT_BOX_OVERHEAD bytes.
 * Errors: DOSSIER_CORRUPT (wrong key, wrong place, tampered or truncated
 * box, unknown box version). */
int crypt_open(const unsigned char *key, const struct crypt_place *p,
               const uint8_t *box, size_t box_len, uint8_t *plain);

#endif
