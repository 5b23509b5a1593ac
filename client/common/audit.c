/* The audit log's entry encoding, hash chain, checkpoints and streaming
 * verifier. Formats are documented in audit.h. */
#include "audit.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "errors.h"

#define CHAIN_DOMAIN "dossier.audit.v1"
#define CHECKPOINT_DOMAIN "dossier.audit.checkpoint.v1"
#define SEED_DOMAIN "dossier.audit.signing-seed.v1"

/* Fixed part of an entry: version, time, outcome, three text lengths,
 * pseudonym length, subject flag, record count. */
#define ENTRY_FIXED (1 + 8 + 4 + 2 + 2 + 2 + 1 + 1 + 4)
#define CHECKPOINT_MSG_BYTES                                                  \
    (sizeof(CHECKPOINT_DOMAIN) - 1 + 8 + AUDIT_HASH_BYTES + 8)

_Static_assert(AUDIT_HASH_BYTES <= crypto_generichash_BYTES_MAX &&
                   AUDIT_HASH_BYTES >= crypto_generichash_BYTES_MIN,
               "BLAKE2b output size");
_Static_assert(AUDIT_PUBLIC_KEY_BYTES == crypto_sign_PUBLICKEYBYTES,
               "Ed25519 public key size");
_Static_assert(AUDIT_SECRET_KEY_BYTES == crypto_sign_SECRETKEYBYTES,
               "Ed25519 secret key size");
_Static_assert(AUDIT_SEED_BYTES == crypto_sign_SEEDBYTES, "Ed25519 seed");
_Static_assert(AUDIT_SIGNATURE_BYTES == crypto_sign_BYTES, "Ed25519 sig");
_Static_assert(AUDIT_TEXT_MAX <= 0xffff, "text lengths travel in 2 bytes");
_Static_assert(AUDIT_PSEUDONYM_MAX <= 0xff, "pseudonym length in 1 byte");

/* ------------------------------------------------------------------ */
/* Big-endian integers */

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* ------------------------------------------------------------------ */
/* Entries */

/* Whether a text of @len bytes at @p may appear in an entry. */
static bool text_ok(const char *p, size_t len)
{
    if (len > AUDIT_TEXT_MAX || (len && !p))
        return false;
    return len == 0 || !memchr(p, '\0', len);
}

/* Whether @e names any pseudonym, and so needs pseudonym_len. */
static bool has_pseudonyms(const struct audit_entry *e)
{
    return e->subject || e->n_records;
}

int audit_entry_size(const struct audit_entry *e, size_t *len,
                     struct dossier_status *st)
{
    size_t w = has_pseudonyms(e) ? e->pseudonym_len : 0;

    if (e->time_ms < 0)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "audit entry: negative time");
    if (!e->action_len)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "audit entry: no action");
    if (!text_ok(e->principal, e->principal_len) ||
        !text_ok(e->action, e->action_len) ||
        !text_ok(e->purpose, e->purpose_len) ||
        !text_ok(e->reference, e->reference_len))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "audit entry: a text is longer than %d bytes or "
                       "holds a NUL byte",
                       AUDIT_TEXT_MAX);
    if (has_pseudonyms(e) && (w < 1 || w > AUDIT_PSEUDONYM_MAX))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "audit entry: pseudonyms must have 1 to %d bytes",
                       AUDIT_PSEUDONYM_MAX);
    if (e->n_records > AUDIT_RECORDS_MAX || (e->n_records && !e->records))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "audit entry: more than %u records, or none given",
                       AUDIT_RECORDS_MAX);
    *len = ENTRY_FIXED + e->principal_len + e->action_len + e->purpose_len +
           (e->subject ? w : 0) + e->n_records * w +
           (e->reference_len ? 2 + e->reference_len : 0);
    return 0;
}

/* Appends length-prefixed @p (@len bytes) at @buf + *@off. */
static void put_text(uint8_t *buf, size_t *off, const char *p, size_t len)
{
    put_be16(buf + *off, (uint16_t)len);
    if (len)
        memcpy(buf + *off + 2, p, len);
    *off += 2 + len;
}

int audit_entry_encode(const struct audit_entry *e, uint8_t *buf, size_t cap,
                       size_t *len, struct dossier_status *st)
{
    size_t need, off = 0;
    size_t w = has_pseudonyms(e) ? e->pseudonym_len : 0;
    int rc = audit_entry_size(e, &need, st);

    if (rc)
        return rc;
    if (cap < need)
        return err_set(st, DOSSIER_TOO_LARGE,
                       "audit entry: needs %zu bytes, buffer has %zu", need,
                       cap);
    /* Version 2 exactly when there is a reference: one encoding each. */
    buf[off++] = e->reference_len ? AUDIT_ENTRY_VERSION_REFERENCE
                                  : AUDIT_ENTRY_VERSION;
    put_be64(buf + off, (uint64_t)e->time_ms);
    off += 8;
    put_be32(buf + off, (uint32_t)e->outcome);
    off += 4;
    put_text(buf, &off, e->principal, e->principal_len);
    put_text(buf, &off, e->action, e->action_len);
    put_text(buf, &off, e->purpose, e->purpose_len);
    buf[off++] = (uint8_t)w;
    buf[off++] = e->subject ? 1 : 0;
    if (e->subject) {
        memcpy(buf + off, e->subject, w);
        off += w;
    }
    put_be32(buf + off, (uint32_t)e->n_records);
    off += 4;
    if (e->n_records) {
        memcpy(buf + off, e->records, e->n_records * w);
        off += e->n_records * w;
    }
    if (e->reference_len)
        put_text(buf, &off, e->reference, e->reference_len);
    assert(off == need);
    *len = need;
    return 0;
}

int audit_entry_encode_alloc(const struct audit_entry *e, uint8_t **out,
                             size_t *len, struct dossier_status *st)
{
    size_t need = 0;
    uint8_t *buf;
    int rc;

    *out = NULL;
    rc = audit_entry_size(e, &need, st);
    if (rc)
        return rc;
    buf = malloc(need);
    if (!buf)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    rc = audit_entry_encode(e, buf, need, len, st);
    if (rc) { /* cannot happen: the size was computed for this entry */
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

/* A bounded cursor over an input; every read checks what is left first. */
struct reader {
    const uint8_t *p;
    size_t len;
    size_t off;
};

/* Points *@out at the next @n bytes, or returns false when fewer remain. */
static bool take(struct reader *r, size_t n, const uint8_t **out)
{
    if (r->len - r->off < n)
        return false;
    *out = r->p + r->off;
    r->off += n;
    return true;
}

static bool take_be(struct reader *r, size_t n, uint64_t *v)
{
    const uint8_t *p;
    if (!take(r, n, &p))
        return false;
    *v = get_be(p, n);
    return true;
}

static bool take_text(struct reader *r, const char **p, size_t *len)
{
    uint64_t n;
    const uint8_t *b;
    if (!take_be(r, 2, &n) || !take(r, (size_t)n, &b) ||
        !text_ok((const char *)b, (size_t)n))
        return false;
    *p = (const char *)b;
    *len = (size_t)n;
    return true;
}

/* Fills @e from @r, or returns a short reason it cannot. */
static const char *entry_parse(struct reader *r, struct audit_entry *e)
{
    const uint8_t *b;
    uint64_t v;
    int version;

    if (!take(r, 1, &b))
        return "empty";
    if (*b != AUDIT_ENTRY_VERSION && *b != AUDIT_ENTRY_VERSION_REFERENCE)
        return "unknown version";
    version = *b;
    if (!take_be(r, 8, &v))
        return "truncated";
    if (v > INT64_MAX)
        return "negative time";
    e->time_ms = (int64_t)v;
    if (!take_be(r, 4, &v))
        return "truncated";
    e->outcome = (int32_t)(uint32_t)v;
    if (!take_text(r, &e->principal, &e->principal_len) ||
        !take_text(r, &e->action, &e->action_len) ||
        !take_text(r, &e->purpose, &e->purpose_len))
        return "truncated, or a text too long or holding a NUL";
    if (!e->action_len)
        return "no action";
    if (!take(r, 1, &b))
        return "truncated";
    e->pseudonym_len = *b;
    if (e->pseudonym_len > AUDIT_PSEUDONYM_MAX)
        return "pseudonym length out of range";
    if (!take(r, 1, &b))
        return "truncated";
    if (*b > 1)
        return "bad subject flag";
    if (*b && !e->pseudonym_len)
        return "pseudonym length does not match the pseudonyms";
    e->subject = NULL;
    if (*b && !take(r, e->pseudonym_len, &e->subject))
        return "truncated";
    if (!take_be(r, 4, &v))
        return "truncated";
    if (v > AUDIT_RECORDS_MAX)
        return "too many records";
    e->n_records = (size_t)v;
    e->records = NULL;
    /* One encoding per entry: a pseudonym length exactly when needed. */
    if (has_pseudonyms(e) != (e->pseudonym_len != 0))
        return "pseudonym length does not match the pseudonyms";
    if (e->n_records &&
        !take(r, e->n_records * e->pseudonym_len, &e->records))
        return "truncated";
    e->reference = NULL;
    e->reference_len = 0;
    if (version == AUDIT_ENTRY_VERSION_REFERENCE) {
        if (!take_text(r, &e->reference, &e->reference_len))
            return "truncated, or a reference too long or holding a NUL";
        if (!e->reference_len)
            return "version 2 without a reference";
    }
    if (r->off != r->len)
        return "trailing bytes";
    return NULL;
}

int audit_entry_decode(const uint8_t *buf, size_t len,
                       struct audit_entry *out, struct dossier_status *st)
{
    struct reader r = {buf, len, 0};
    struct audit_entry e;
    const char *why;

    memset(&e, 0, sizeof(e));
    why = entry_parse(&r, &e);
    if (why)
        return err_set(st, DOSSIER_CORRUPT, "audit entry: %s (byte %zu)",
                       why, r.off);
    *out = e;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Chain */

void audit_chain_next(const uint8_t prev[AUDIT_HASH_BYTES], uint64_t index,
                      const uint8_t *encoded, size_t len,
                      uint8_t out[AUDIT_HASH_BYTES])
{
    crypto_generichash_state s;
    uint8_t be[8];

    assert(index >= 1);
    put_be64(be, index);
    crypto_generichash_init(&s, NULL, 0, AUDIT_HASH_BYTES);
    crypto_generichash_update(&s, (const uint8_t *)CHAIN_DOMAIN,
                              sizeof(CHAIN_DOMAIN) - 1);
    crypto_generichash_update(&s, be, sizeof(be));
    crypto_generichash_update(&s, prev, AUDIT_HASH_BYTES);
    crypto_generichash_update(&s, encoded, len);
    crypto_generichash_final(&s, out, AUDIT_HASH_BYTES);
}

void audit_chain_init(struct audit_chain *c)
{
    memset(c, 0, sizeof(*c));
}

uint64_t audit_chain_append(struct audit_chain *c, const uint8_t *encoded,
                            size_t len)
{
    assert(c->index < UINT64_MAX);
    c->index++;
    audit_chain_next(c->hash, c->index, encoded, len, c->hash);
    return c->index;
}

bool audit_chain_checkpoint_due(const struct audit_chain *c, int64_t now_ms,
                                uint64_t every_entries, int64_t every_ms)
{
    if (c->index <= c->signed_index)
        return false;
    if (every_entries && c->index - c->signed_index >= every_entries)
        return true;
    return every_ms > 0 && now_ms - c->signed_ms >= every_ms;
}

void audit_chain_checkpoint(struct audit_chain *c, int64_t now_ms,
                            const unsigned char sk[AUDIT_SECRET_KEY_BYTES],
                            struct audit_checkpoint *out)
{
    assert(c->index >= 1);
    out->index = c->index;
    memcpy(out->hash, c->hash, AUDIT_HASH_BYTES);
    out->time_ms = now_ms;
    audit_checkpoint_sign(out, sk);
    c->signed_index = c->index;
    c->signed_ms = now_ms;
}

/* ------------------------------------------------------------------ */
/* Checkpoints and keys */

int audit_signing_keypair_from_seed(
    const unsigned char seed[AUDIT_SEED_BYTES],
    uint8_t pk[AUDIT_PUBLIC_KEY_BYTES],
    unsigned char sk[AUDIT_SECRET_KEY_BYTES], struct dossier_status *st)
{
    if (sodium_init() < 0)
        return err_set(st, DOSSIER_INTERNAL, "libsodium failed to start");
    crypto_sign_seed_keypair(pk, sk, seed);
    return 0;
}

void audit_signing_seed_derive(const unsigned char key[32],
                               unsigned char seed[AUDIT_SEED_BYTES])
{
    crypto_generichash(seed, AUDIT_SEED_BYTES, (const uint8_t *)SEED_DOMAIN,
                       sizeof(SEED_DOMAIN) - 1, key, 32);
}

/* The message a checkpoint's signature covers (audit.h's table). */
static void checkpoint_msg(const struct audit_checkpoint *cp,
                           uint8_t msg[CHECKPOINT_MSG_BYTES])
{
    size_t off = sizeof(CHECKPOINT_DOMAIN) - 1;

    memcpy(msg, CHECKPOINT_DOMAIN, off);
    put_be64(msg + off, cp->index);
    off += 8;
    memcpy(msg + off, cp->hash, AUDIT_HASH_BYTES);
    off += AUDIT_HASH_BYTES;
    put_be64(msg + off, (uint64_t)cp->time_ms);
}

void audit_checkpoint_sign(struct audit_checkpoint *cp,
                           const unsigned char sk[AUDIT_SECRET_KEY_BYTES])
{
    uint8_t msg[CHECKPOINT_MSG_BYTES];

    assert(cp->index >= 1 && cp->time_ms >= 0);
    checkpoint_msg(cp, msg);
    crypto_sign_detached(cp->sig, NULL, msg, sizeof(msg), sk);
}

int audit_checkpoint_verify(const struct audit_checkpoint *cp,
                            const uint8_t pk[AUDIT_PUBLIC_KEY_BYTES])
{
    uint8_t msg[CHECKPOINT_MSG_BYTES];

    if (cp->index < 1 || cp->time_ms < 0)
        return DOSSIER_CORRUPT;
    checkpoint_msg(cp, msg);
    if (crypto_sign_verify_detached(cp->sig, msg, sizeof(msg), pk) != 0)
        return DOSSIER_CORRUPT;
    return 0;
}

void audit_checkpoint_encode(const struct audit_checkpoint *cp,
                             uint8_t out[AUDIT_CHECKPOINT_BYTES])
{
    out[0] = AUDIT_CHECKPOINT_VERSION;
    put_be64(out + 1, cp->index);
    memcpy(out + 9, cp->hash, AUDIT_HASH_BYTES);
    put_be64(out + 9 + AUDIT_HASH_BYTES, (uint64_t)cp->time_ms);
    memcpy(out + 17 + AUDIT_HASH_BYTES, cp->sig, AUDIT_SIGNATURE_BYTES);
}

int audit_checkpoint_decode(const uint8_t *buf, size_t len,
                            struct audit_checkpoint *cp,
                            struct dossier_status *st)
{
    uint64_t index, time;

    if (len != AUDIT_CHECKPOINT_BYTES)
        return err_set(st, DOSSIER_CORRUPT,
                       "audit checkpoint: %zu bytes, not %d", len,
                       AUDIT_CHECKPOINT_BYTES);
    if (buf[0] != AUDIT_CHECKPOINT_VERSION)
        return err_set(st, DOSSIER_CORRUPT,
                       "audit checkpoint: unknown version %u", buf[0]);
    index = get_be(buf + 1, 8);
    time = get_be(buf + 9 + AUDIT_HASH_BYTES, 8);
    if (index < 1 || time > INT64_MAX)
        return err_set(st, DOSSIER_CORRUPT,
                       "audit checkpoint: index 0 or negative time");
    cp->index = index;
    memcpy(cp->hash, buf + 9, AUDIT_HASH_BYTES);
    cp->time_ms = (int64_t)time;
    memcpy(cp->sig, buf + 17 + AUDIT_HASH_BYTES, AUDIT_SIGNATURE_BYTES);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Verifier */

/* Records @v's first fault and returns DOSSIER_CORRUPT. */
__attribute__((format(printf, 5, 6))) static int
fault(struct audit_verifier *v, enum audit_fault f, uint64_t bad,
      uint64_t suspect_from, const char *fmt, ...)
{
    va_list ap;

    assert(v->fault == AUDIT_FAULT_NONE);
    v->fault = f;
    v->bad_index = bad;
    v->suspect_from = suspect_from;
    va_start(ap, fmt);
    vsnprintf(v->message, sizeof(v->message), fmt, ap);
    va_end(ap);
    return DOSSIER_CORRUPT;
}

int audit_verify_init(struct audit_verifier *v,
                      const uint8_t pk[AUDIT_PUBLIC_KEY_BYTES])
{
    memset(v, 0, sizeof(*v));
    if (sodium_init() < 0)
        return DOSSIER_INTERNAL;
    memcpy(v->pk, pk, AUDIT_PUBLIC_KEY_BYTES);
    return 0;
}

int audit_verify_init_from(struct audit_verifier *v,
                           const uint8_t pk[AUDIT_PUBLIC_KEY_BYTES],
                           const struct audit_checkpoint *from)
{
    int rc = audit_verify_init(v, pk);

    if (rc)
        return rc;
    if (audit_checkpoint_verify(from, pk) != 0)
        return DOSSIER_CORRUPT;
    v->index = v->signed_through = from->index;
    memcpy(v->hash, from->hash, AUDIT_HASH_BYTES);
    memcpy(v->signed_hash, from->hash, AUDIT_HASH_BYTES);
    return 0;
}

/* Accepts a checkpoint at @v's current index when its hash is the chain's;
 * @v->index == @cp->index. */
static int checkpoint_match(struct audit_verifier *v,
                            const struct audit_checkpoint *cp)
{
    if (sodium_memcmp(cp->hash, v->hash, AUDIT_HASH_BYTES) != 0) {
        uint64_t from = v->signed_through + 1;
        return fault(v, AUDIT_FAULT_CHAIN, cp->index, from,
                     "entries %" PRIu64 "..%" PRIu64 " do not hash to the "
                     "value signed at entry %" PRIu64
                     ": one of them was changed, removed or inserted",
                     from, cp->index, cp->index);
    }
    v->signed_through = cp->index;
    memcpy(v->signed_hash, cp->hash, AUDIT_HASH_BYTES);
    v->checkpoints++;
    return 0;
}

int audit_verify_entry(struct audit_verifier *v, uint64_t index,
                       const uint8_t *encoded, size_t len,
                       const uint8_t stored_hash[AUDIT_HASH_BYTES])
{
    struct audit_entry e;
    struct dossier_status st;
    uint8_t h[AUDIT_HASH_BYTES];
    uint64_t want = v->index + 1;

    assert(!v->finished);
    if (v->fault)
        return DOSSIER_CORRUPT;
    if (index < want)
        return fault(v, AUDIT_FAULT_SEQUENCE, index, index,
                     "entry %" PRIu64 " appears again after entry %" PRIu64
                     " (repeated or out of order)",
                     index, v->index);
    if (index > want)
        return fault(v, AUDIT_FAULT_SEQUENCE, want, want,
                     "entry %" PRIu64 " is missing (entry %" PRIu64
                     " comes after entry %" PRIu64 ")",
                     want, index, v->index);
    if (audit_entry_decode(encoded, len, &e, &st) != 0)
        return fault(v, AUDIT_FAULT_MALFORMED, index, index,
                     "entry %" PRIu64 " is malformed: %s", index, st.message);
    audit_chain_next(v->hash, index, encoded, len, h);
    if (stored_hash && sodium_memcmp(stored_hash, h, AUDIT_HASH_BYTES) != 0)
        return fault(v, AUDIT_FAULT_STORED_HASH, index, index,
                     "entry %" PRIu64 " does not match its stored hash",
                     index);
    v->index = index;
    memcpy(v->hash, h, AUDIT_HASH_BYTES);
    if (v->pending && v->ahead.index == index) {
        v->pending = false;
        return checkpoint_match(v, &v->ahead);
    }
    return 0;
}

int audit_verify_checkpoint(struct audit_verifier *v,
                            const struct audit_checkpoint *cp)
{
    assert(!v->finished);
    if (v->fault)
        return DOSSIER_CORRUPT;
    if (cp->index < 1 || cp->time_ms < 0)
        return fault(v, AUDIT_FAULT_MALFORMED, cp->index, cp->index,
                     "a checkpoint has index 0 or a negative time");
    if (audit_checkpoint_verify(cp, v->pk) != 0)
        return fault(v, AUDIT_FAULT_SIGNATURE, cp->index, cp->index,
                     "the checkpoint at entry %" PRIu64
                     " has a bad signature (forged, altered or signed with "
                     "another key)",
                     cp->index);
    /* A new leader may sign the head its predecessor signed; signing
     * another hash for the same entry means two histories. */
    if (cp->index == v->signed_through) {
        if (sodium_memcmp(cp->hash, v->signed_hash, AUDIT_HASH_BYTES) == 0)
            return 0;
        return fault(v, AUDIT_FAULT_CHAIN, cp->index, cp->index,
                     "two checkpoints at entry %" PRIu64
                     " sign different hashes (a forked log)",
                     cp->index);
    }
    if (cp->index <= v->signed_through ||
        (v->pending && cp->index <= v->ahead.index))
        return fault(v, AUDIT_FAULT_SEQUENCE, cp->index, cp->index,
                     "the checkpoint at entry %" PRIu64
                     " comes after a checkpoint at entry %" PRIu64,
                     cp->index,
                     v->pending ? v->ahead.index : v->signed_through);
    if (cp->index < v->index)
        return fault(v, AUDIT_FAULT_SEQUENCE, cp->index, cp->index,
                     "the checkpoint at entry %" PRIu64
                     " comes after entry %" PRIu64 " (out of order)",
                     cp->index, v->index);
    if (cp->index == v->index)
        return checkpoint_match(v, cp);
    /* Ahead of the entries: fed in index order, only entries missing can
     * bring a second checkpoint before the first is reached. */
    if (v->pending)
        return fault(v, AUDIT_FAULT_TRUNCATED, v->index + 1, v->index + 1,
                     "the log ends at entry %" PRIu64
                     " but checkpoints sign entries up to %" PRIu64,
                     v->index, cp->index);
    v->pending = true;
    v->ahead = *cp;
    return 0;
}

uint64_t audit_verify_head(const struct audit_verifier *v,
                           uint8_t hash[AUDIT_HASH_BYTES])
{
    memcpy(hash, v->hash, AUDIT_HASH_BYTES);
    return v->index;
}

int audit_verify_finish(struct audit_verifier *v, struct audit_report *r)
{
    if (!v->finished && !v->fault && v->pending)
        fault(v, AUDIT_FAULT_TRUNCATED, v->index + 1, v->index + 1,
              "the log ends at entry %" PRIu64
              " but a checkpoint signs entries up to %" PRIu64,
              v->index, v->ahead.index);
    v->finished = true;
    memset(r, 0, sizeof(*r));
    r->code = v->fault ? DOSSIER_CORRUPT : 0;
    r->fault = v->fault;
    r->bad_index = v->bad_index;
    r->suspect_from = v->suspect_from;
    r->entries = v->index;
    r->checkpoints = v->checkpoints;
    r->signed_through = v->signed_through;
    r->unsigned_tail = v->fault ? 0 : v->index - v->signed_through;
    if (v->fault)
        snprintf(r->message, sizeof(r->message), "%s", v->message);
    else if (r->unsigned_tail)
        snprintf(r->message, sizeof(r->message),
                 "%" PRIu64 " entries verified, signed through entry %" PRIu64
                 "; the last %" PRIu64 " are not signed yet",
                 r->entries, r->signed_through, r->unsigned_tail);
    else if (r->entries)
        snprintf(r->message, sizeof(r->message),
                 "%" PRIu64 " entries verified, all signed", r->entries);
    else
        snprintf(r->message, sizeof(r->message), "the log is empty");
    return r->code;
}

size_t audit_request_message(const char *id, const char *kind,
                             const uint8_t pseudonym[16],
                             const uint8_t digest[32], int64_t executed_ms,
                             uint64_t result_index,
                             uint8_t out[AUDIT_REQUEST_MESSAGE_MAX])
{
    static const char domain[] = "dossier.request.v1";
    size_t o = 0, il = strnlen(id, 64), kl = strnlen(kind, 16);
    memcpy(out, domain, sizeof(domain)); /* with its NUL */
    o += sizeof(domain);
    memcpy(out + o, id, il);
    o += il;
    out[o++] = 0;
    memcpy(out + o, kind, kl);
    o += kl;
    out[o++] = 0;
    memcpy(out + o, pseudonym, 16);
    o += 16;
    if (digest)
        memcpy(out + o, digest, 32);
    else
        memset(out + o, 0, 32);
    o += 32;
    put_be64(out + o, (uint64_t)executed_ms);
    put_be64(out + o + 8, result_index);
    return o + 16;
}

void audit_erasure_message(const uint8_t pseudonym[16], int64_t time_ms,
                           uint64_t raft_index, uint64_t records_deleted,
                           uint8_t out[AUDIT_ERASURE_MESSAGE_BYTES])
{
    static const char domain[] = "dossier.erasure.v1";
    size_t o = sizeof(domain) - 1;
    memcpy(out, domain, o);
    memcpy(out + o, pseudonym, 16);
    put_be64(out + o + 16, (uint64_t)time_ms);
    put_be64(out + o + 24, raft_index);
    put_be64(out + o + 32, records_deleted);
}

int audit_erasure_message_v2(const uint8_t pseudonym[16], int64_t time_ms,
                             uint64_t raft_index, uint64_t records_deleted,
                             const uint64_t *nodes, size_t n,
                             uint8_t out[AUDIT_ERASURE_V2_MESSAGE_MAX],
                             size_t *len)
{
    static const char domain[] = "dossier.erasure.v2";
    size_t o = sizeof(domain) - 1;

    if (n > AUDIT_ERASURE_NODES_MAX)
        return -1;
    for (size_t i = 1; i < n; i++)
        if (nodes[i - 1] >= nodes[i])
            return -1; /* one encoding: ascending, no repeats */
    memcpy(out, domain, o);
    memcpy(out + o, pseudonym, 16);
    put_be64(out + o + 16, (uint64_t)time_ms);
    put_be64(out + o + 24, raft_index);
    put_be64(out + o + 32, records_deleted);
    put_be32(out + o + 40, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        put_be64(out + o + 44 + 8 * i, nodes[i]);
    *len = o + 44 + 8 * n;
    return 0;
}
