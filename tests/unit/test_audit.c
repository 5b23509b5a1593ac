/* Unit tests of the audit log: the entry encoding (known answers, round
 * trips, every truncation and many random mutations), the hash chain and
 * checkpoints against constructions built here from audit.h's tables, and
 * the streaming verifier on a 1050-entry log with every kind of tampering
 * it must name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "audit.h"
#include "testutil.h"

/* The test log: LOG_SIGNED entries under checkpoints every CP_EVERY, then
 * an unsigned tail up to LOG_ENTRIES. */
#define LOG_ENTRIES 1050
#define LOG_SIGNED 1000
#define CP_EVERY 100
#define N_CPS (LOG_SIGNED / CP_EVERY)
#define T0 1700000000000LL

struct log {
    uint8_t *enc[LOG_ENTRIES + 1]; /* 1-based, malloc'd */
    size_t len[LOG_ENTRIES + 1];
    uint8_t hash[LOG_ENTRIES + 1][AUDIT_HASH_BYTES];
    struct audit_checkpoint cp[N_CPS]; /* cp[k] covers (k + 1) * CP_EVERY */
    uint8_t pk[AUDIT_PUBLIC_KEY_BYTES];
    unsigned char *sk; /* sodium_malloc'd */
    uint8_t pk_other[AUDIT_PUBLIC_KEY_BYTES];
    unsigned char *sk_other;
};

/* A small deterministic generator, so a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static const char *const ACTIONS[] = {
    "records.put",    "records.get",     "records.export", "subjects.erase",
    "consent.change", "records.refused", "cluster.add",
};
#define N_ACTIONS (sizeof(ACTIONS) / sizeof(ACTIONS[0]))

/* Fills @e as the @i-th entry of the test log; @pseudo holds its
 * pseudonyms (1 + 3 of up to 32 bytes). Varies every field. */
static void entry_make(uint64_t i, struct audit_entry *e, uint8_t pseudo[128])
{
    static const char *const principals[] = {"ops-alice", "svc-import", ""};
    const char *pr = principals[i % 3];
    const char *purpose = (i % 4) ? "support" : "";
    const char *action = ACTIONS[i % N_ACTIONS];

    memset(e, 0, sizeof(*e));
    for (size_t k = 0; k < 128; k++)
        pseudo[k] = (uint8_t)(i * 31 + k);
    e->time_ms = T0 + (int64_t)i * 7;
    e->principal = pr;
    e->principal_len = strlen(pr);
    e->action = action;
    e->action_len = strlen(action);
    e->purpose = purpose;
    e->purpose_len = strlen(purpose);
    e->pseudonym_len = (i % 5 == 0) ? 32 : 16;
    e->subject = (i % 3 != 1) ? pseudo : NULL;
    e->n_records = i % 4;
    e->records = e->n_records ? pseudo + 32 : NULL;
    e->outcome = (i % 11 == 0) ? DOSSIER_PERMISSION_DENIED : 0;
}

static int group_setup(void **state)
{
    struct log *l = calloc(1, sizeof(*l));
    struct audit_chain c;
    unsigned char seed[AUDIT_SEED_BYTES];
    struct dossier_status st;

    if (!l || sodium_init() < 0)
        return -1;
    l->sk = sodium_malloc(AUDIT_SECRET_KEY_BYTES);
    l->sk_other = sodium_malloc(AUDIT_SECRET_KEY_BYTES);
    if (!l->sk || !l->sk_other)
        return -1;
    memset(seed, 0x5a, sizeof(seed));
    if (audit_signing_keypair_from_seed(seed, l->pk, l->sk, &st) != 0)
        return -1;
    memset(seed, 0xa5, sizeof(seed));
    if (audit_signing_keypair_from_seed(seed, l->pk_other, l->sk_other,
                                        &st) != 0)
        return -1;
    sodium_memzero(seed, sizeof(seed));

    audit_chain_init(&c);
    for (uint64_t i = 1; i <= LOG_ENTRIES; i++) {
        struct audit_entry e;
        uint8_t pseudo[128];
        entry_make(i, &e, pseudo);
        if (audit_entry_encode_alloc(&e, &l->enc[i], &l->len[i], &st) != 0)
            return -1;
        if (audit_chain_append(&c, l->enc[i], l->len[i]) != i)
            return -1;
        memcpy(l->hash[i], c.hash, AUDIT_HASH_BYTES);
        if (i <= LOG_SIGNED && i % CP_EVERY == 0)
            audit_chain_checkpoint(&c, T0 + (int64_t)i * 7 + 1, l->sk,
                                   &l->cp[i / CP_EVERY - 1]);
    }
    *state = l;
    return 0;
}

static int group_teardown(void **state)
{
    struct log *l = *state;
    for (size_t i = 1; i <= LOG_ENTRIES; i++)
        free(l->enc[i]);
    sodium_free(l->sk);
    sodium_free(l->sk_other);
    free(l);
    return 0;
}

/* How a test feeds the log to the verifier. */
struct feed {
    const uint64_t *order; /* entries fed, by index; NULL: 1..n in order */
    size_t n;              /* entries fed */
    int renumber;          /* pass the position (1-based), not the index */
    int stored;            /* hand in the stored hashes */
    const struct audit_checkpoint *cps; /* NULL: the log's own */
    size_t n_cps;
};

/* Feeds @l to a fresh verifier as @f says, merging checkpoints by index
 * as audit.h asks, and returns the report. */
static struct audit_report verify(const struct log *l, const struct feed *f)
{
    struct audit_verifier v;
    struct audit_report r;
    const struct audit_checkpoint *cps = f->cps ? f->cps : l->cp;
    size_t n_cps = f->cps ? f->n_cps : N_CPS, next_cp = 0;

    assert_int_equal(audit_verify_init(&v, l->pk), 0);
    for (size_t j = 0; j < f->n; j++) {
        uint64_t i = f->order ? f->order[j] : j + 1;
        uint64_t as = f->renumber ? j + 1 : i;
        while (next_cp < n_cps && cps[next_cp].index < as)
            (void)audit_verify_checkpoint(&v, &cps[next_cp++]);
        (void)audit_verify_entry(&v, as, l->enc[i], l->len[i],
                                 f->stored ? l->hash[i] : NULL);
    }
    while (next_cp < n_cps)
        (void)audit_verify_checkpoint(&v, &cps[next_cp++]);
    int rc = audit_verify_finish(&v, &r);
    assert_int_equal(rc, r.code);
    return r;
}

/* Fails unless @r reports @fault at @bad, showing the message. */
static void assert_fault(const struct audit_report *r, enum audit_fault fault,
                         uint64_t bad)
{
    if (r->fault != fault || r->bad_index != bad)
        fail_msg("want fault %d at %llu, got %d at %llu: %s", fault,
                 (unsigned long long)bad, r->fault,
                 (unsigned long long)r->bad_index, r->message);
    assert_int_equal(r->code, DOSSIER_CORRUPT);
}

/* A heap copy of @len bytes at @p, so that ASan sees any read past them. */
static uint8_t *dup_exact(const uint8_t *p, size_t len)
{
    uint8_t *q = malloc(len ? len : 1);
    assert_non_null(q);
    if (len)
        memcpy(q, p, len);
    return q;
}

/* ------------------------------------------------------------------ */
/* Entry encoding */

/* An entry encodes byte for byte as audit.h's table says. */
static void test_entry_encoding_matches_the_table(void **state)
{
    static const uint8_t subject[2] = {0xaa, 0xbb};
    static const uint8_t records[4] = {0x01, 0x02, 0x03, 0x04};
    static const uint8_t want[] = {
        0x01,                                           /* version */
        0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, /* T0 */
        0x00, 0x00, 0x00, 0x09,                         /* outcome */
        0x00, 0x03, 'o', 'p', 's',                      /* principal */
        0x00, 0x0b, 'r', 'e', 'c', 'o', 'r', 'd', 's', '.', 'g', 'e', 't',
        0x00, 0x00,             /* purpose "" */
        0x02, 0x01, 0xaa, 0xbb, /* width, subject */
        0x00, 0x00, 0x00, 0x02, 0x01, 0x02, 0x03, 0x04, /* records */
    };
    struct audit_entry e = {
        .time_ms = T0, .principal = "ops", .principal_len = 3,
        .action = "records.get", .action_len = 11, .pseudonym_len = 2,
        .subject = subject, .records = records, .n_records = 2,
        .outcome = DOSSIER_PERMISSION_DENIED};
    uint8_t buf[sizeof(want)];
    size_t len = 0, size = 0;
    struct dossier_status st;

    (void)state;
    assert_int_equal(audit_entry_size(&e, &size, &st), 0);
    assert_int_equal(size, sizeof(want));
    assert_int_equal(audit_entry_encode(&e, buf, sizeof(buf), &len, &st), 0);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
}

/* An entry with a reference is version 2: the version 1 table, then the
 * reference, length-prefixed (a known-answer vector); it decodes back, and
 * a version 2 entry with an empty reference is refused (an entry has one
 * encoding only: without a reference it is version 1). */
static void test_entry_with_reference_is_version_2(void **state)
{
    static const uint8_t want[] = {
        0x02,                                           /* version */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, /* time */
        0x00, 0x00, 0x00, 0x00,                         /* outcome */
        0x00, 0x03, 'd', 'p', 'o',                      /* principal */
        0x00, 0x10, 's', 'u', 'b', 'j', 'e', 'c', 't', 's', '.', 'r', 'e',
        'c', 't', 'i', 'f', 'y',                        /* action */
        0x00, 0x00,                                     /* purpose "" */
        0x01, 0x01, 0xaa,                               /* width, subject */
        0x00, 0x00, 0x00, 0x01, 0xbb,                   /* records */
        0x00, 0x05, 'D', 'S', 'R', '-', '9',            /* reference */
    };
    static const uint8_t subject[1] = {0xaa}, records[1] = {0xbb};
    struct audit_entry e = {.time_ms = 7, .principal = "dpo",
                            .principal_len = 3, .action = "subjects.rectify",
                            .action_len = 16, .pseudonym_len = 1,
                            .subject = subject, .records = records,
                            .n_records = 1, .reference = "DSR-9",
                            .reference_len = 5};
    struct audit_entry d;
    struct dossier_status st;
    uint8_t buf[sizeof(want)], bad[sizeof(want)];
    size_t len = 0;

    (void)state;
    assert_int_equal(audit_entry_encode(&e, buf, sizeof(buf), &len, &st), 0);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    assert_int_equal(audit_entry_decode(buf, len, &d, &st), 0);
    assert_int_equal(d.reference_len, 5);
    assert_memory_equal(d.reference, "DSR-9", 5);
    assert_int_equal(d.n_records, 1);
    /* Version 2 with an empty reference: not an encoding. */
    memcpy(bad, want, sizeof(want) - 5);
    bad[sizeof(want) - 6] = 0;
    assert_int_equal(audit_entry_decode(bad, sizeof(want) - 5, &d, &st),
                     DOSSIER_CORRUPT);
    /* Version 1 with a reference after it: trailing bytes. */
    memcpy(bad, want, sizeof(want));
    bad[0] = AUDIT_ENTRY_VERSION;
    assert_int_equal(audit_entry_decode(bad, sizeof(want), &d, &st),
                     DOSSIER_CORRUPT);
}

/* The version 2 erasure message is the documented table (a known-answer
 * vector); nodes must be ascending, without repeats. */
static void test_erasure_message_v2_matches_the_table(void **state)
{
    static const uint64_t nodes[] = {1, 3}, unsorted[] = {3, 1},
                          twice[] = {2, 2};
    uint8_t sp[16], m[AUDIT_ERASURE_V2_MESSAGE_MAX], want[18 + 16 + 24 + 4 +
                                                          16];
    size_t len = 0, o = 0;

    (void)state;
    memset(sp, 0xab, sizeof(sp));
    memcpy(want, "dossier.erasure.v2", 18);
    o = 18;
    memcpy(want + o, sp, 16);
    o += 16;
    for (int k = 0; k < 8; k++) /* time 0x0102, index 7, records 2 */
        want[o + k] = k == 6 ? 0x01 : k == 7 ? 0x02 : 0;
    for (int k = 0; k < 8; k++)
        want[o + 8 + k] = k == 7 ? 7 : 0;
    for (int k = 0; k < 8; k++)
        want[o + 16 + k] = k == 7 ? 2 : 0;
    o += 24;
    memcpy(want + o, "\0\0\0\2", 4);
    o += 4;
    for (int k = 0; k < 16; k++)
        want[o + k] = k == 7 ? 1 : k == 15 ? 3 : 0;
    assert_int_equal(audit_erasure_message_v2(sp, 0x0102, 7, 2, nodes, 2, m,
                                              &len),
                     0);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(m, want, sizeof(want));
    assert_int_equal(audit_erasure_message_v2(sp, 0x0102, 7, 2, unsorted, 2,
                                              m, &len),
                     -1);
    assert_int_equal(audit_erasure_message_v2(sp, 0x0102, 7, 2, twice, 2, m,
                                              &len),
                     -1);
    assert_int_equal(audit_erasure_message_v2(sp, 1, 1, 0, NULL, 0, m, &len),
                     0);
    assert_int_equal(len, 18 + 16 + 24 + 4);
}

/* An entry naming no pseudonym has width 0 and no subject, whatever
 * pseudonym_len says: one encoding per entry. */
static void test_entry_without_pseudonyms_has_width_zero(void **state)
{
    struct audit_entry e = {.time_ms = 5, .action = "admin.login",
                            .action_len = 11, .pseudonym_len = 16};
    struct audit_entry d;
    uint8_t *buf;
    size_t len;
    struct dossier_status st;

    (void)state;
    assert_int_equal(audit_entry_encode_alloc(&e, &buf, &len, &st), 0);
    assert_int_equal(len, 1 + 8 + 4 + 2 + (2 + 11) + 2 + 1 + 1 + 4);
    assert_int_equal(buf[len - 6], 0); /* width */
    assert_int_equal(buf[len - 5], 0); /* no subject */
    assert_int_equal(audit_entry_decode(buf, len, &d, &st), 0);
    assert_int_equal(d.pseudonym_len, 0);
    assert_null(d.subject);
    assert_null(d.records);
    assert_int_equal(d.n_records, 0);
    assert_int_equal(d.principal_len, 0);
    free(buf);
}

/* Decoding an encoded entry gives back every field. */
static void test_entry_round_trips(void **state)
{
    const struct log *l = *state;
    struct dossier_status st;

    for (uint64_t i = 1; i <= 60; i++) {
        struct audit_entry e, d;
        uint8_t pseudo[128];
        entry_make(i, &e, pseudo);
        assert_int_equal(audit_entry_decode(l->enc[i], l->len[i], &d, &st),
                         0);
        assert_int_equal(d.time_ms, e.time_ms);
        assert_int_equal(d.outcome, e.outcome);
        assert_int_equal(d.principal_len, e.principal_len);
        assert_memory_equal(d.principal, e.principal, e.principal_len);
        assert_int_equal(d.action_len, e.action_len);
        assert_memory_equal(d.action, e.action, e.action_len);
        assert_int_equal(d.purpose_len, e.purpose_len);
        assert_memory_equal(d.purpose, e.purpose, e.purpose_len);
        assert_int_equal(d.n_records, e.n_records);
        assert_int_equal(d.subject != NULL, e.subject != NULL);
        if (e.subject || e.n_records)
            assert_int_equal(d.pseudonym_len, e.pseudonym_len);
        if (e.subject)
            assert_memory_equal(d.subject, e.subject, e.pseudonym_len);
        if (e.n_records)
            assert_memory_equal(d.records, e.records,
                                e.n_records * e.pseudonym_len);
    }
}

/* Fails unless audit_entry_size refuses @e as an invalid argument. */
static void assert_refused(const struct audit_entry *e, size_t *len)
{
    struct dossier_status st;
    assert_int_equal(audit_entry_size(e, len, &st), DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
}

/* The encoder refuses entries it could not encode canonically, and a
 * buffer that is too small, leaving outputs untouched. */
static void test_entry_encode_rejects_bad_entries(void **state)
{
    static const uint8_t p[32] = {1};
    char nul[3] = {'a', '\0', 'b'};
    static char big[AUDIT_TEXT_MAX + 1];
    const struct audit_entry ok = {.time_ms = 1, .action = "x",
                                   .action_len = 1, .pseudonym_len = 16,
                                   .subject = p};
    struct audit_entry e;
    uint8_t buf[256], *out = (uint8_t *)1;
    size_t len = 77;
    struct dossier_status st;

    (void)state;
    memset(big, 'a', sizeof(big));
    e = ok, e.time_ms = -1;
    assert_refused(&e, &len);
    e = ok, e.action_len = 0;
    assert_refused(&e, &len);
    e = ok, e.principal = nul, e.principal_len = sizeof(nul);
    assert_refused(&e, &len);
    e = ok, e.purpose = big, e.purpose_len = sizeof(big);
    assert_refused(&e, &len);
    e = ok, e.purpose = NULL, e.purpose_len = 3;
    assert_refused(&e, &len);
    e = ok, e.pseudonym_len = 0;
    assert_refused(&e, &len);
    e = ok, e.pseudonym_len = AUDIT_PSEUDONYM_MAX + 1;
    assert_refused(&e, &len);
    e = ok, e.records = p, e.n_records = AUDIT_RECORDS_MAX + 1;
    assert_refused(&e, &len);
    e = ok, e.n_records = 1; /* records NULL */
    assert_refused(&e, &len);
    assert_int_equal(len, 77);

    e = ok, e.action = NULL;
    assert_int_equal(audit_entry_encode(&e, buf, sizeof(buf), &len, &st),
                     DOSSIER_INVALID_ARGUMENT);
    e = ok;
    assert_int_equal(audit_entry_encode(&e, buf, 10, &len, &st),
                     DOSSIER_TOO_LARGE);
    assert_int_equal(len, 77);
    e.time_ms = -5;
    assert_int_equal(audit_entry_encode_alloc(&e, &out, &len, &st),
                     DOSSIER_INVALID_ARGUMENT);
    assert_null(out);
    assert_contains(st.message, "negative time");
}

/* Every proper prefix of an entry, and the entry with a byte appended, is
 * rejected as corrupt, and no decode reads outside its input. */
static void test_entry_decode_rejects_every_truncation(void **state)
{
    const struct log *l = *state;
    struct audit_entry d;
    struct dossier_status st;

    for (uint64_t i = 1; i <= 20; i++) {
        for (size_t n = 0; n < l->len[i]; n++) {
            uint8_t *b = dup_exact(l->enc[i], n);
            assert_int_equal(audit_entry_decode(b, n, &d, &st),
                             DOSSIER_CORRUPT);
            free(b);
        }
        uint8_t *b = malloc(l->len[i] + 1);
        assert_non_null(b);
        memcpy(b, l->enc[i], l->len[i]);
        b[l->len[i]] = 0;
        assert_int_equal(audit_entry_decode(b, l->len[i] + 1, &d, &st),
                         DOSSIER_CORRUPT);
        assert_contains(st.message, "trailing bytes");
        free(b);
    }
    assert_int_equal(audit_entry_decode(NULL, 0, &d, &st), DOSSIER_CORRUPT);
}

/* Hand-made non-canonical and out-of-range encodings are rejected. */
static void test_entry_decode_rejects_noncanonical(void **state)
{
    const struct log *l = *state;
    /* Entry 3: principal "ops-alice", action ACTIONS[3], purpose
     * "support", a subject and 3 records of 16 bytes. @a is the offset of
     * the action's length, @w_off the pseudonym width's, per the table. */
    const size_t a = 13 + 2 + 9, w_off = a + 2 + strlen(ACTIONS[3]) + 2 + 7;
    struct audit_entry d;
    struct dossier_status st;
    uint8_t *b;

    assert_int_equal(l->enc[3][w_off], 16);
    assert_int_equal(l->enc[3][w_off + 1], 1);
#define MUTATED(off, val, why)                                                \
    do {                                                                      \
        b = dup_exact(l->enc[3], l->len[3]);                                  \
        b[(off)] = (uint8_t)(val);                                            \
        assert_int_equal(audit_entry_decode(b, l->len[3], &d, &st),           \
                         DOSSIER_CORRUPT);                                    \
        assert_contains(st.message, why);                                     \
        free(b);                                                              \
    } while (0)
    MUTATED(0, 0x03, "unknown version");
    MUTATED(0, 0x02, "reference"); /* version 2 needs one */
    MUTATED(1, 0x80, "negative time");
    MUTATED(a + 2, 0, "NUL");            /* first byte of the action */
    MUTATED(w_off, 0, "does not match"); /* width 0 with pseudonyms */
    MUTATED(w_off, 33, "out of range");
    MUTATED(w_off + 1, 2, "subject flag");
    MUTATED(w_off + 2 + 16, 0x01, "too many records");
#undef MUTATED

    /* An empty action, though well-formed otherwise. */
    static const uint8_t no_action[] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                        0, 0, 0};
    b = dup_exact(no_action, sizeof(no_action));
    assert_int_equal(audit_entry_decode(b, sizeof(no_action), &d, &st),
                     DOSSIER_CORRUPT);
    assert_contains(st.message, "no action");
    free(b);

    /* Width set though no pseudonym follows. */
    static const uint8_t width_alone[] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                          0, 0, 0, 0, 0, 1, 'x', 0, 0, 16,
                                          0, 0, 0, 0, 0};
    b = dup_exact(width_alone, sizeof(width_alone));
    assert_int_equal(audit_entry_decode(b, sizeof(width_alone), &d, &st),
                     DOSSIER_CORRUPT);
    free(b);
}

/* Random mutations (byte changes, cuts, growth, garbage) never crash the
 * decoder, and whatever it accepts re-encodes to exactly the same bytes:
 * an accepted entry has one encoding. */
static void test_entry_decode_survives_random_mutations(void **state)
{
    const struct log *l = *state;
    size_t accepted = 0;

    for (int round = 0; round < 20000; round++) {
        uint64_t i = 1 + rng() % 40;
        size_t n = l->len[i];
        uint8_t *b;
        struct audit_entry d;
        struct dossier_status st;
        int kind = (int)(rng() % 4);

        if (kind == 2)
            n = (size_t)(rng() % (n + 8));
        b = malloc(n ? n : 1);
        assert_non_null(b);
        if (kind == 3) {
            for (size_t k = 0; k < n; k++)
                b[k] = (uint8_t)rng();
            if (n)
                b[0] = AUDIT_ENTRY_VERSION;
        } else {
            for (size_t k = 0; k < n; k++)
                b[k] = k < l->len[i] ? l->enc[i][k] : (uint8_t)rng();
        }
        for (int m = 0, muts = 1 + (int)(rng() % 3); n && m < muts; m++) {
            size_t at = (size_t)(rng() % n);
            /* Small values hit lengths and flags that still parse. */
            b[at] = (rng() & 1) ? (uint8_t)rng() : (uint8_t)(rng() % 4);
        }
        if (audit_entry_decode(b, n, &d, &st) == 0) {
            uint8_t *again;
            size_t len;
            accepted++;
            assert_int_equal(audit_entry_encode_alloc(&d, &again, &len, &st),
                             0);
            assert_int_equal(len, n);
            assert_memory_equal(again, b, n);
            free(again);
        } else {
            assert_int_equal(st.code, DOSSIER_CORRUPT);
        }
        free(b);
    }
    /* Changes inside texts and pseudonyms must have been accepted. */
    assert_true(accepted > 100);
}

/* ------------------------------------------------------------------ */
/* Chain and checkpoints */

/* h_i is BLAKE2b-256 of domain | be64(i) | h_(i-1) | entry, h_0 zeros. */
static void test_chain_hash_matches_the_table(void **state)
{
    const struct log *l = *state;
    uint8_t prev[AUDIT_HASH_BYTES] = {0}, want[AUDIT_HASH_BYTES];

    for (uint64_t i = 1; i <= 3; i++) {
        size_t n = 16 + 8 + 32 + l->len[i];
        uint8_t *in = malloc(n);
        assert_non_null(in);
        memcpy(in, "dossier.audit.v1", 16);
        for (int k = 0; k < 8; k++)
            in[16 + k] = (uint8_t)(i >> (56 - 8 * k));
        memcpy(in + 24, prev, 32);
        memcpy(in + 56, l->enc[i], l->len[i]);
        crypto_generichash(want, sizeof(want), in, n, NULL, 0);
        assert_memory_equal(l->hash[i], want, sizeof(want));
        memcpy(prev, want, sizeof(prev));
        free(in);
    }
}

/* A checkpoint's signature is Ed25519 over the documented message, and
 * its encoding follows the table and round-trips. */
static void test_checkpoint_matches_the_table(void **state)
{
    const struct log *l = *state;
    const struct audit_checkpoint *cp = &l->cp[2];
    uint8_t msg[27 + 8 + 32 + 8], enc[AUDIT_CHECKPOINT_BYTES];
    struct audit_checkpoint d;
    struct dossier_status st;

    memcpy(msg, "dossier.audit.checkpoint.v1", 27);
    for (int k = 0; k < 8; k++) {
        msg[27 + k] = (uint8_t)(cp->index >> (56 - 8 * k));
        msg[67 + k] = (uint8_t)((uint64_t)cp->time_ms >> (56 - 8 * k));
    }
    memcpy(msg + 35, cp->hash, 32);
    assert_int_equal(cp->index, 300);
    assert_memory_equal(cp->hash, l->hash[300], AUDIT_HASH_BYTES);
    assert_int_equal(
        crypto_sign_verify_detached(cp->sig, msg, sizeof(msg), l->pk), 0);
    assert_int_equal(audit_checkpoint_verify(cp, l->pk), 0);
    assert_int_equal(audit_checkpoint_verify(cp, l->pk_other),
                     DOSSIER_CORRUPT);

    audit_checkpoint_encode(cp, enc);
    assert_int_equal(enc[0], 0x01);
    assert_memory_equal(enc + 1, msg + 27, 8);
    assert_memory_equal(enc + 9, cp->hash, 32);
    assert_memory_equal(enc + 41, msg + 67, 8);
    assert_memory_equal(enc + 49, cp->sig, 64);
    assert_int_equal(audit_checkpoint_decode(enc, sizeof(enc), &d, &st), 0);
    assert_memory_equal(&d, cp, sizeof(d));
}

/* A checkpoint of the wrong size or version, index 0 or negative time
 * does not decode; the output stays untouched. */
static void test_checkpoint_decode_rejects_malformed(void **state)
{
    const struct log *l = *state;
    uint8_t enc[AUDIT_CHECKPOINT_BYTES + 1];
    struct audit_checkpoint d;
    struct dossier_status st;

    memset(&d, 0x33, sizeof(d));
    audit_checkpoint_encode(&l->cp[0], enc);
    for (size_t n = 0; n < sizeof(enc); n++)
        if (n != AUDIT_CHECKPOINT_BYTES) {
            uint8_t *b = dup_exact(enc, n);
            assert_int_equal(audit_checkpoint_decode(b, n, &d, &st),
                             DOSSIER_CORRUPT);
            free(b);
        }
    enc[0] = 2;
    assert_int_equal(
        audit_checkpoint_decode(enc, AUDIT_CHECKPOINT_BYTES, &d, &st),
        DOSSIER_CORRUPT);
    audit_checkpoint_encode(&l->cp[0], enc);
    memset(enc + 1, 0, 8);
    assert_int_equal(
        audit_checkpoint_decode(enc, AUDIT_CHECKPOINT_BYTES, &d, &st),
        DOSSIER_CORRUPT);
    audit_checkpoint_encode(&l->cp[0], enc);
    enc[41] = 0x80;
    assert_int_equal(
        audit_checkpoint_decode(enc, AUDIT_CHECKPOINT_BYTES, &d, &st),
        DOSSIER_CORRUPT);
    assert_int_equal(d.index, 0x3333333333333333ull);
}

/* The same seed gives the same keys; seeds derived from different keys
 * differ, and derivation is keyed BLAKE2b of the documented domain. */
static void test_signing_keys_are_deterministic(void **state)
{
    const struct log *l = *state;
    unsigned char seed[AUDIT_SEED_BYTES], want[AUDIT_SEED_BYTES];
    unsigned char key[32], *sk = sodium_malloc(AUDIT_SECRET_KEY_BYTES);
    uint8_t pk[AUDIT_PUBLIC_KEY_BYTES];
    struct dossier_status st;

    assert_non_null(sk);
    memset(seed, 0x5a, sizeof(seed));
    assert_int_equal(audit_signing_keypair_from_seed(seed, pk, sk, &st), 0);
    assert_memory_equal(pk, l->pk, sizeof(pk));
    assert_memory_equal(sk, l->sk, AUDIT_SECRET_KEY_BYTES);

    memset(key, 7, sizeof(key));
    audit_signing_seed_derive(key, seed);
    crypto_generichash(want, sizeof(want),
                       (const uint8_t *)"dossier.audit.signing-seed.v1", 29,
                       key, sizeof(key));
    assert_memory_equal(seed, want, sizeof(seed));
    key[0] ^= 1;
    audit_signing_seed_derive(key, want);
    assert_memory_not_equal(seed, want, sizeof(seed));
    sodium_free(sk);
}

/* A checkpoint falls due after every_entries entries or every_ms ms, and
 * never with nothing new to sign. */
static void test_checkpoint_due_by_count_or_time(void **state)
{
    const struct log *l = *state;
    struct audit_chain c;
    struct audit_checkpoint cp;

    audit_chain_init(&c);
    assert_false(audit_chain_checkpoint_due(&c, 1000000, 10, 1000));
    audit_chain_append(&c, l->enc[1], l->len[1]);
    assert_true(audit_chain_checkpoint_due(&c, 1000000, 10, 1000));
    audit_chain_checkpoint(&c, 1000000, l->sk, &cp);
    assert_int_equal(cp.index, 1);
    assert_false(audit_chain_checkpoint_due(&c, 5000000, 10, 1000));
    for (uint64_t i = 2; i <= 10; i++)
        audit_chain_append(&c, l->enc[i], l->len[i]);
    assert_false(audit_chain_checkpoint_due(&c, 1000999, 10, 1000));
    assert_true(audit_chain_checkpoint_due(&c, 1001000, 10, 1000));
    audit_chain_append(&c, l->enc[11], l->len[11]);
    assert_true(audit_chain_checkpoint_due(&c, 1000001, 10, 1000));
    assert_false(audit_chain_checkpoint_due(&c, 1000001, 0, 0));
}

/* ------------------------------------------------------------------ */
/* Verifier */

/* 1000 entries under checkpoints every 100 verify, with or without the
 * stored hashes. */
static void test_verify_accepts_the_signed_log(void **state)
{
    const struct log *l = *state;
    struct feed f = {.n = LOG_SIGNED};

    for (f.stored = 0; f.stored <= 1; f.stored++) {
        struct audit_report r = verify(l, &f);
        if (r.code)
            fail_msg("%s", r.message);
        assert_int_equal(r.fault, AUDIT_FAULT_NONE);
        assert_int_equal(r.entries, LOG_SIGNED);
        assert_int_equal(r.checkpoints, N_CPS);
        assert_int_equal(r.signed_through, LOG_SIGNED);
        assert_int_equal(r.unsigned_tail, 0);
        assert_int_equal(r.bad_index, 0);
        assert_contains(r.message, "1000 entries verified, all signed");
    }
}

/* Entries after the last checkpoint are an unsigned tail: reported and
 * counted, not an error. */
static void test_verify_reports_the_unsigned_tail(void **state)
{
    const struct log *l = *state;
    struct feed f = {.n = LOG_ENTRIES, .stored = 1};
    struct audit_report r = verify(l, &f);

    assert_int_equal(r.code, 0);
    assert_int_equal(r.entries, LOG_ENTRIES);
    assert_int_equal(r.signed_through, LOG_SIGNED);
    assert_int_equal(r.unsigned_tail, LOG_ENTRIES - LOG_SIGNED);
    assert_contains(r.message, "the last 50 are not signed yet");

    struct feed none = {.n = 5, .cps = l->cp, .n_cps = 0};
    r = verify(l, &none);
    assert_int_equal(r.code, 0);
    assert_int_equal(r.unsigned_tail, 5);
    assert_int_equal(r.signed_through, 0);
}

/* An empty log verifies and says so. */
static void test_verify_accepts_an_empty_log(void **state)
{
    const struct log *l = *state;
    struct feed f = {.n = 0, .cps = l->cp, .n_cps = 0};
    struct audit_report r = verify(l, &f);

    assert_int_equal(r.code, 0);
    assert_int_equal(r.entries, 0);
    assert_contains(r.message, "empty");
}

/* Flipping any one byte of an entry is found. With stored hashes the
 * report names that entry exactly; without them it names the checkpoint
 * that covers it, with suspect_from at the entry after the previous
 * checkpoint (or the entry itself when the flip makes it malformed). */
static void test_verify_names_a_modified_entry(void **state)
{
    struct log *l = *state;
    static const uint64_t which[] = {1, 2, 99, 100, 101, 437, 999, 1000};

    for (size_t w = 0; w < sizeof(which) / sizeof(which[0]); w++) {
        uint64_t i = which[w];
        uint8_t *orig = l->enc[i];
        size_t n = l->len[i];
        size_t pos[] = {0, 1, 8, 12, 14, n / 2, n - 2, n - 1};
        uint64_t cp_at = (i + CP_EVERY - 1) / CP_EVERY * CP_EVERY;

        for (size_t p = 0; p < sizeof(pos) / sizeof(pos[0]); p++) {
            uint8_t *b = dup_exact(orig, n);
            struct audit_entry d;
            struct dossier_status st;
            struct audit_report r;
            int malformed;

            b[pos[p]] ^= 0x01;
            malformed = audit_entry_decode(b, n, &d, &st) != 0;
            l->enc[i] = b;

            struct feed stored = {.n = LOG_SIGNED, .stored = 1};
            r = verify(l, &stored);
            assert_fault(&r, malformed ? AUDIT_FAULT_MALFORMED
                                       : AUDIT_FAULT_STORED_HASH,
                         i);
            assert_int_equal(r.suspect_from, i);

            struct feed bare = {.n = LOG_SIGNED};
            r = verify(l, &bare);
            if (malformed) {
                assert_fault(&r, AUDIT_FAULT_MALFORMED, i);
                assert_int_equal(r.suspect_from, i);
            } else {
                assert_fault(&r, AUDIT_FAULT_CHAIN, cp_at);
                assert_int_equal(r.suspect_from, cp_at - CP_EVERY + 1);
            }
            l->enc[i] = orig;
            free(b);
        }
    }
}

/* A changed entry whose stored hashes an attacker recomputed still fails
 * at the next checkpoint. */
static void test_verify_finds_a_rewrite_with_recomputed_hashes(void **state)
{
    struct log *l = *state;
    uint8_t saved[CP_EVERY][AUDIT_HASH_BYTES];
    uint8_t *orig = l->enc[450], *b = dup_exact(orig, l->len[450]);
    struct feed f = {.n = LOG_SIGNED, .stored = 1};
    struct audit_report r;

    b[2] ^= 0x10; /* the time */
    l->enc[450] = b;
    memcpy(saved, l->hash[401], sizeof(saved));
    for (uint64_t i = 450; i <= 500; i++)
        audit_chain_next(l->hash[i - 1], i, l->enc[i], l->len[i], l->hash[i]);
    r = verify(l, &f);
    assert_fault(&r, AUDIT_FAULT_CHAIN, 500);
    assert_int_equal(r.suspect_from, 401);
    assert_int_equal(r.checkpoints, 4);
    memcpy(l->hash[401], saved, sizeof(saved));
    l->enc[450] = orig;
    free(b);
}

/* A removed entry is named: the first index missing. */
static void test_verify_names_a_removed_entry(void **state)
{
    const struct log *l = *state;
    uint64_t order[LOG_SIGNED - 1];
    size_t n = 0;

    for (uint64_t i = 1; i <= LOG_SIGNED; i++)
        if (i != 437)
            order[n++] = i;
    struct feed f = {.order = order, .n = n};
    struct audit_report r = verify(l, &f);
    assert_fault(&r, AUDIT_FAULT_SEQUENCE, 437);
    assert_contains(r.message, "entry 437 is missing");
    assert_int_equal(r.entries, 436);

    /* Removing entry 500 leaves its checkpoint ahead of the entries; the
     * next entry shows the gap. */
    n = 0;
    for (uint64_t i = 1; i <= LOG_SIGNED; i++)
        if (i != 500)
            order[n++] = i;
    f.n = n;
    r = verify(l, &f);
    assert_fault(&r, AUDIT_FAULT_SEQUENCE, 500);
}

/* Removing an entry and renumbering the rest to hide the gap breaks the
 * chain at the next checkpoint. */
static void test_verify_finds_a_removal_hidden_by_renumbering(void **state)
{
    const struct log *l = *state;
    uint64_t order[LOG_SIGNED];
    size_t n = 0;

    for (uint64_t i = 1; i <= LOG_SIGNED; i++)
        if (i != 437)
            order[n++] = i;
    order[n++] = LOG_SIGNED + 1; /* keeps 1000 entries in the feed */
    struct feed f = {.order = order, .n = n, .renumber = 1};
    struct audit_report r = verify(l, &f);
    assert_fault(&r, AUDIT_FAULT_CHAIN, 500);
    assert_int_equal(r.suspect_from, 401);
}

/* A duplicated entry is named: the index that came again. */
static void test_verify_names_a_duplicated_entry(void **state)
{
    const struct log *l = *state;
    uint64_t order[LOG_SIGNED + 1];
    size_t n = 0;

    for (uint64_t i = 1; i <= LOG_SIGNED; i++) {
        order[n++] = i;
        if (i == 437)
            order[n++] = i;
    }
    struct feed f = {.order = order, .n = n};
    struct audit_report r = verify(l, &f);
    assert_fault(&r, AUDIT_FAULT_SEQUENCE, 437);
    assert_contains(r.message, "entry 437 appears again");
}

/* Swapped entries are named: the first of the pair, found missing. */
static void test_verify_names_swapped_entries(void **state)
{
    const struct log *l = *state;
    uint64_t order[LOG_SIGNED];

    for (uint64_t i = 1; i <= LOG_SIGNED; i++)
        order[i - 1] = i;
    order[436] = 438;
    order[437] = 437;
    struct feed f = {.order = order, .n = LOG_SIGNED};
    struct audit_report r = verify(l, &f);
    assert_fault(&r, AUDIT_FAULT_SEQUENCE, 437);
}

/* A checkpoint with an altered signature, or with its index, hash or time
 * altered under the old signature, fails at its index. */
static void test_verify_rejects_a_forged_checkpoint(void **state)
{
    const struct log *l = *state;
    struct audit_checkpoint cps[N_CPS];
    struct feed f = {.n = LOG_SIGNED, .cps = cps, .n_cps = N_CPS};
    struct audit_report r;

    for (int what = 0; what < 4; what++) {
        memcpy(cps, l->cp, sizeof(cps));
        switch (what) {
        case 0: cps[4].sig[17] ^= 0x40; break;
        case 1: cps[4].sig[63] ^= 0x01; break;
        case 2: cps[4].hash[0] ^= 0x01; break;
        case 3: cps[4].time_ms += 1; break;
        }
        r = verify(l, &f);
        assert_fault(&r, AUDIT_FAULT_SIGNATURE, 500);
        assert_int_equal(r.checkpoints, 4);
        assert_contains(r.message, "bad signature");
    }
}

/* Checkpoints signed by another key fail at the first of them, even when
 * they sign the true chain. */
static void test_verify_rejects_another_key(void **state)
{
    const struct log *l = *state;
    struct audit_checkpoint cps[N_CPS];
    struct feed f = {.n = LOG_SIGNED, .cps = cps, .n_cps = N_CPS};
    struct audit_report r;

    memcpy(cps, l->cp, sizeof(cps));
    for (int k = 0; k < N_CPS; k++)
        audit_checkpoint_sign(&cps[k], l->sk_other);
    r = verify(l, &f);
    assert_fault(&r, AUDIT_FAULT_SIGNATURE, 100);

    /* Only one re-signed: found there. */
    memcpy(cps, l->cp, sizeof(cps));
    audit_checkpoint_sign(&cps[7], l->sk_other);
    r = verify(l, &f);
    assert_fault(&r, AUDIT_FAULT_SIGNATURE, 800);
}

/* A validly signed checkpoint whose hash is not the chain's (a leader bug,
 * or a log rewritten before signing) is a chain fault at its index. */
static void test_verify_rejects_a_checkpoint_off_the_chain(void **state)
{
    const struct log *l = *state;
    struct audit_checkpoint cps[N_CPS];
    struct feed f = {.n = LOG_SIGNED, .cps = cps, .n_cps = N_CPS};
    struct audit_report r;

    memcpy(cps, l->cp, sizeof(cps));
    memcpy(cps[2].hash, l->hash[299], AUDIT_HASH_BYTES);
    audit_checkpoint_sign(&cps[2], l->sk);
    r = verify(l, &f);
    assert_fault(&r, AUDIT_FAULT_CHAIN, 300);
    assert_int_equal(r.suspect_from, 201);
}

/* A log cut short below a checkpoint is truncated, naming the first
 * missing entry, whether one or several checkpoints lie beyond its end. */
static void test_verify_reports_a_truncated_log(void **state)
{
    const struct log *l = *state;
    struct feed f = {.n = 950};
    struct audit_report r = verify(l, &f);

    assert_fault(&r, AUDIT_FAULT_TRUNCATED, 951);
    assert_contains(r.message, "up to 1000");
    assert_int_equal(r.signed_through, 900);

    f.n = 850;
    r = verify(l, &f);
    assert_fault(&r, AUDIT_FAULT_TRUNCATED, 851);

    /* An auditor's own copy of checkpoint 1000 reveals a cut that removed
     * the log's last checkpoint with it. */
    struct feed cut = {.n = 950, .cps = l->cp, .n_cps = N_CPS - 1};
    r = verify(l, &cut);
    assert_int_equal(r.code, 0);
    assert_int_equal(r.unsigned_tail, 50);
    struct audit_verifier v;
    assert_int_equal(audit_verify_init(&v, l->pk), 0);
    for (uint64_t i = 1; i <= 950; i++)
        assert_int_equal(
            audit_verify_entry(&v, i, l->enc[i], l->len[i], l->hash[i]), 0);
    assert_int_equal(audit_verify_checkpoint(&v, &l->cp[N_CPS - 1]), 0);
    assert_int_equal(audit_verify_finish(&v, &r), DOSSIER_CORRUPT);
    assert_fault(&r, AUDIT_FAULT_TRUNCATED, 951);
}

/* Checkpoints out of order are faults; a repeated checkpoint is accepted,
 * a second one at the same index with another hash is a fork. */
static void test_verify_checks_checkpoint_order(void **state)
{
    const struct log *l = *state;
    struct audit_verifier v;
    struct audit_report r;
    struct audit_checkpoint fork;

    /* Checkpoint 100 fed after entry 101. */
    assert_int_equal(audit_verify_init(&v, l->pk), 0);
    for (uint64_t i = 1; i <= 101; i++)
        assert_int_equal(
            audit_verify_entry(&v, i, l->enc[i], l->len[i], NULL), 0);
    assert_int_equal(audit_verify_checkpoint(&v, &l->cp[0]),
                     DOSSIER_CORRUPT);
    assert_int_equal(audit_verify_finish(&v, &r), DOSSIER_CORRUPT);
    assert_fault(&r, AUDIT_FAULT_SEQUENCE, 100);

    /* Checkpoint 200 then 100. */
    assert_int_equal(audit_verify_init(&v, l->pk), 0);
    for (uint64_t i = 1; i <= 200; i++)
        assert_int_equal(
            audit_verify_entry(&v, i, l->enc[i], l->len[i], NULL), 0);
    assert_int_equal(audit_verify_checkpoint(&v, &l->cp[1]), 0);
    assert_int_equal(audit_verify_checkpoint(&v, &l->cp[1]), 0); /* again */
    assert_int_equal(audit_verify_checkpoint(&v, &l->cp[0]),
                     DOSSIER_CORRUPT);
    assert_int_equal(audit_verify_finish(&v, &r), DOSSIER_CORRUPT);
    assert_fault(&r, AUDIT_FAULT_SEQUENCE, 100);

    /* Two signed hashes for entry 200. */
    fork = l->cp[1];
    fork.hash[5] ^= 1;
    audit_checkpoint_sign(&fork, l->sk);
    assert_int_equal(audit_verify_init(&v, l->pk), 0);
    for (uint64_t i = 1; i <= 200; i++)
        assert_int_equal(
            audit_verify_entry(&v, i, l->enc[i], l->len[i], NULL), 0);
    assert_int_equal(audit_verify_checkpoint(&v, &l->cp[1]), 0);
    assert_int_equal(audit_verify_checkpoint(&v, &fork), DOSSIER_CORRUPT);
    assert_int_equal(audit_verify_finish(&v, &r), DOSSIER_CORRUPT);
    assert_fault(&r, AUDIT_FAULT_CHAIN, 200);
    assert_contains(r.message, "forked");
}

/* A checkpoint fed before the entry it covers waits for that entry and is
 * checked when it comes; a checkpoint with index 0 is malformed. */
static void test_verify_checks_a_checkpoint_fed_early(void **state)
{
    struct log *l = *state;
    struct audit_verifier v;
    struct audit_report r;
    struct audit_checkpoint zero = l->cp[0];
    uint8_t *orig = l->enc[150], *b = dup_exact(orig, l->len[150]);

    for (int tamper = 0; tamper <= 1; tamper++) {
        int rc = 0;
        assert_int_equal(audit_verify_init(&v, l->pk), 0);
        for (uint64_t i = 1; i <= 200; i++) {
            if (i == 100 || i == 200)
                assert_int_equal(
                    audit_verify_checkpoint(&v, &l->cp[i / CP_EVERY - 1]),
                    0);
            rc = audit_verify_entry(&v, i, l->enc[i], l->len[i], NULL);
            if (i < 200)
                assert_int_equal(rc, 0);
        }
        assert_int_equal(rc, tamper ? DOSSIER_CORRUPT : 0);
        assert_int_equal(audit_verify_finish(&v, &r),
                         tamper ? DOSSIER_CORRUPT : 0);
        if (tamper) {
            assert_fault(&r, AUDIT_FAULT_CHAIN, 200);
            assert_int_equal(r.suspect_from, 101);
        } else {
            assert_int_equal(r.checkpoints, 2);
            assert_int_equal(r.unsigned_tail, 0);
        }
        b[1] ^= 0x01; /* the time of entry 150 */
        l->enc[150] = b;
    }
    l->enc[150] = orig;
    free(b);

    zero.index = 0;
    assert_int_equal(audit_checkpoint_verify(&zero, l->pk), DOSSIER_CORRUPT);
    assert_int_equal(audit_verify_init(&v, l->pk), 0);
    assert_int_equal(audit_verify_checkpoint(&v, &zero), DOSSIER_CORRUPT);
    assert_int_equal(audit_verify_finish(&v, &r), DOSSIER_CORRUPT);
    assert_int_equal(r.fault, AUDIT_FAULT_MALFORMED);
}

/* After the first fault every call returns DOSSIER_CORRUPT and the report
 * keeps naming that first fault. */
static void test_verify_keeps_the_first_fault(void **state)
{
    const struct log *l = *state;
    struct audit_verifier v;
    struct audit_report r;

    assert_int_equal(audit_verify_init(&v, l->pk), 0);
    assert_int_equal(audit_verify_entry(&v, 2, l->enc[2], l->len[2], NULL),
                     DOSSIER_CORRUPT);
    assert_int_equal(audit_verify_entry(&v, 1, l->enc[1], l->len[1], NULL),
                     DOSSIER_CORRUPT);
    assert_int_equal(audit_verify_checkpoint(&v, &l->cp[0]), DOSSIER_CORRUPT);
    assert_int_equal(audit_verify_finish(&v, &r), DOSSIER_CORRUPT);
    assert_fault(&r, AUDIT_FAULT_SEQUENCE, 1);
    assert_int_equal(r.entries, 0);
}

/* A log whose head was pruned verifies from a trusted checkpoint; a
 * forged starting checkpoint is refused. */
static void test_verify_from_a_checkpoint(void **state)
{
    const struct log *l = *state;
    struct audit_verifier v;
    struct audit_report r;
    struct audit_checkpoint bad = l->cp[4];

    assert_int_equal(audit_verify_init_from(&v, l->pk, &l->cp[4]), 0);
    for (uint64_t i = 501; i <= LOG_ENTRIES; i++) {
        if (i % CP_EVERY == 1 && i > 501)
            assert_int_equal(
                audit_verify_checkpoint(&v, &l->cp[i / CP_EVERY - 1]), 0);
        assert_int_equal(
            audit_verify_entry(&v, i, l->enc[i], l->len[i], l->hash[i]), 0);
    }
    assert_int_equal(audit_verify_finish(&v, &r), 0);
    assert_int_equal(r.entries, LOG_ENTRIES);
    assert_int_equal(r.checkpoints, 5);
    assert_int_equal(r.unsigned_tail, 50);

    bad.sig[0] ^= 1;
    assert_int_equal(audit_verify_init_from(&v, l->pk, &bad),
                     DOSSIER_CORRUPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entry_encoding_matches_the_table),
        cmocka_unit_test(test_entry_without_pseudonyms_has_width_zero),
        cmocka_unit_test(test_entry_with_reference_is_version_2),
        cmocka_unit_test(test_erasure_message_v2_matches_the_table),
        cmocka_unit_test(test_entry_round_trips),
        cmocka_unit_test(test_entry_encode_rejects_bad_entries),
        cmocka_unit_test(test_entry_decode_rejects_every_truncation),
        cmocka_unit_test(test_entry_decode_rejects_noncanonical),
        cmocka_unit_test(test_entry_decode_survives_random_mutations),
        cmocka_unit_test(test_chain_hash_matches_the_table),
        cmocka_unit_test(test_checkpoint_matches_the_table),
        cmocka_unit_test(test_checkpoint_decode_rejects_malformed),
        cmocka_unit_test(test_signing_keys_are_deterministic),
        cmocka_unit_test(test_checkpoint_due_by_count_or_time),
        cmocka_unit_test(test_verify_accepts_the_signed_log),
        cmocka_unit_test(test_verify_reports_the_unsigned_tail),
        cmocka_unit_test(test_verify_accepts_an_empty_log),
        cmocka_unit_test(test_verify_names_a_modified_entry),
        cmocka_unit_test(test_verify_finds_a_rewrite_with_recomputed_hashes),
        cmocka_unit_test(test_verify_names_a_removed_entry),
        cmocka_unit_test(test_verify_finds_a_removal_hidden_by_renumbering),
        cmocka_unit_test(test_verify_names_a_duplicated_entry),
        cmocka_unit_test(test_verify_names_swapped_entries),
        cmocka_unit_test(test_verify_rejects_a_forged_checkpoint),
        cmocka_unit_test(test_verify_rejects_another_key),
        cmocka_unit_test(test_verify_rejects_a_checkpoint_off_the_chain),
        cmocka_unit_test(test_verify_reports_a_truncated_log),
        cmocka_unit_test(test_verify_checks_checkpoint_order),
        cmocka_unit_test(test_verify_checks_a_checkpoint_fed_early),
        cmocka_unit_test(test_verify_keeps_the_first_fault),
        cmocka_unit_test(test_verify_from_a_checkpoint),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
