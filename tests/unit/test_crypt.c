/* Unit tests of the key hierarchy: sealed boxes and their associated data,
 * the keyset, pseudonyms and blind indexes, subject keys and their cache.
 * Formats are checked against vectors built here from crypt.h's tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypt.h"
#include "testutil.h"

/* Master keys as $DOSSIER_MASTER_KEY gives them. KEK_A's bytes are 0..31. */
#define HEX_A "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define HEX_B "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f"

static const uint8_t SP[CRYPT_PSEUDONYM_BYTES] = {
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf};
static const uint8_t RID[16] = {0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5,
                                0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb,
                                0xbc, 0xbd, 0xbe, 0xbf};

/* A crypt context under master key @env, or a test failure. */
static struct crypt *crypt_make(const char *env)
{
    struct keyfile kf;
    struct dossier_status st;
    struct crypt *c = NULL;

    if (keyfile_parse_env(&kf, env, &st) != 0)
        fail_msg("keyfile_parse_env: %s", st.message);
    if (crypt_new(&kf, 64, &c, &st) != 0)
        fail_msg("crypt_new: %s", st.message);
    assert_int_equal(kf.n, 0); /* taken */
    return c;
}

/* Frees what crypt_keyset_create put into @m. */
static void meta_clear(Dossier__Store__V1__Meta *m)
{
    free(m->cluster_id.data);
    free(m->kek_check.data);
    free(m->sealed_keyset.data);
    dossier__store__v1__meta__init(m);
}

/* Frees what crypt_subject_key_new put into @sk. */
static void subject_key_clear(Dossier__Store__V1__SubjectKey *sk)
{
    free(sk->wrapped_dek.data);
    free(sk->sealed_subject_id.data);
    dossier__store__v1__subject_key__init(sk);
}

/* The associated data of @p per crypt.h, built independently of crypt.c:
 * "DSR1" | domain | lp(subject) | lp(kind) | lp(rid) | lp(name). */
static size_t ad_make(const struct crypt_place *p, uint8_t *out)
{
    size_t off = 0;
    const char *kind = p->kind ? p->kind : "", *name = p->name ? p->name : "";
    const void *parts[4] = {p->subject, kind, p->rid, name};
    size_t lens[4] = {p->subject ? p->subject_len : 0, strlen(kind),
                      p->rid ? p->rid_len : 0, strlen(name)};

    memcpy(out, "DSR1", 4);
    off = 4;
    out[off++] = (uint8_t)p->domain;
    for (int i = 0; i < 4; i++) {
        out[off++] = (uint8_t)(lens[i] >> 8);
        out[off++] = (uint8_t)lens[i];
        if (lens[i])
            memcpy(out + off, parts[i], lens[i]);
        off += lens[i];
    }
    return off;
}

/* Opens @box with libsodium directly, for place @p under @key: the check
 * that a box made by crypt.c follows the documented layout. */
static int box_open_independently(const unsigned char *key,
                                  const struct crypt_place *p,
                                  const uint8_t *box, size_t box_len,
                                  uint8_t *plain)
{
    uint8_t ad[1200];
    size_t ad_len = ad_make(p, ad);
    unsigned long long plen;

    if (box_len < 41 || box[0] != 0x01)
        return -1;
    return crypto_aead_xchacha20poly1305_ietf_decrypt(
        plain, &plen, NULL, box + 25, box_len - 25, ad, ad_len, box + 1, key);
}

/* A field place for SP / contact / RID / email. */
static struct crypt_place field_place(void)
{
    struct crypt_place p = {.domain = CRYPT_FIELD,
                            .subject = SP,
                            .subject_len = sizeof(SP),
                            .kind = "contact",
                            .rid = RID,
                            .rid_len = sizeof(RID),
                            .name = "email"};
    return p;
}

static unsigned char key_a[CRYPT_KEY_BYTES]; /* bytes 0x40.. */
static unsigned char key_b[CRYPT_KEY_BYTES]; /* bytes 0x80.. */

static int group_setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    for (int i = 0; i < CRYPT_KEY_BYTES; i++) {
        key_a[i] = (unsigned char)(0x40 + i);
        key_b[i] = (unsigned char)(0x80 + i);
    }
    return 0;
}

/* Seals "ada@example.com" into @box (crypt_box_len(15) bytes) for @p. */
#define PLAIN "ada@example.com"
#define PLAIN_LEN (sizeof(PLAIN) - 1)
static void seal_plain(const struct crypt_place *p, uint8_t *box)
{
    assert_int_equal(crypt_seal(key_a, p, (const uint8_t *)PLAIN, PLAIN_LEN,
                                box),
                     0);
}

/* ------------------------------------------------------------------ */
/* Boxes */

/* What crypt_seal seals, crypt_open opens, for the same key and place. */
static void test_open_returns_what_seal_sealed(void **state)
{
    struct crypt_place p = field_place();
    uint8_t box[crypt_box_len(PLAIN_LEN)], out[PLAIN_LEN];
    (void)state;

    assert_int_equal(crypt_box_len(PLAIN_LEN), PLAIN_LEN + 41);
    seal_plain(&p, box);
    assert_int_equal(crypt_open(key_a, &p, box, sizeof(box), out), 0);
    assert_memory_equal(out, PLAIN, PLAIN_LEN);
}

/* An empty plaintext seals into a box of the overhead alone and opens. */
static void test_empty_plaintext_round_trips(void **state)
{
    struct crypt_place p = field_place();
    uint8_t box[CRYPT_BOX_OVERHEAD], out[1];
    (void)state;

    assert_int_equal(crypt_seal(key_a, &p, (const uint8_t *)"", 0, box), 0);
    assert_int_equal(crypt_open(key_a, &p, box, sizeof(box), out), 0);
}

/* Known answer: a field box is 0x01 | nonce | XChaCha20-Poly1305 of the
 * plaintext under the associated data
 *   "DSR1" 'F' lp(subject) lp(kind) lp(rid) lp(name),
 * written out here byte by byte; the nonce is the one read from the box. */
static void test_field_box_has_documented_layout_and_ad(void **state)
{
    static const uint8_t ad[] = {
        'D', 'S', 'R', '1', 'F',
        0x00, 0x10, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
        0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
        0x00, 0x07, 'c', 'o', 'n', 't', 'a', 'c', 't',
        0x00, 0x10, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
        0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,
        0x00, 0x05, 'e', 'm', 'a', 'i', 'l'};
    struct crypt_place p = field_place();
    uint8_t box[crypt_box_len(PLAIN_LEN)], want[PLAIN_LEN + 16];
    unsigned long long want_len;
    (void)state;

    seal_plain(&p, box);
    assert_int_equal(box[0], 0x01);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        want, &want_len, (const uint8_t *)PLAIN, PLAIN_LEN, ad, sizeof(ad),
        NULL, box + 1, key_a);
    assert_int_equal(want_len, sizeof(want));
    assert_int_equal(sizeof(box), 1 + 24 + want_len);
    assert_memory_equal(box + 25, want, sizeof(want));
}

/* Known answer: absent (NULL) place components are sealed as empty ones,
 * lp("") = 00 00, as for a subject id box 'S' (subject, "", "", ""). */
static void test_absent_place_components_are_empty_in_ad(void **state)
{
    static const uint8_t ad[] = {
        'D', 'S', 'R', '1', 'S',
        0x00, 0x10, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
        0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    struct crypt_place p = {.domain = CRYPT_SUBJECT_ID,
                            .subject = SP,
                            .subject_len = sizeof(SP)};
    struct crypt_place empty = {.domain = CRYPT_SUBJECT_ID,
                                .subject = SP,
                                .subject_len = sizeof(SP),
                                .kind = "",
                                .rid = RID,
                                .rid_len = 0,
                                .name = ""};
    uint8_t box[crypt_box_len(PLAIN_LEN)], want[PLAIN_LEN + 16];
    uint8_t out[PLAIN_LEN];
    (void)state;

    seal_plain(&p, box);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        want, NULL, (const uint8_t *)PLAIN, PLAIN_LEN, ad, sizeof(ad), NULL,
        box + 1, key_a);
    assert_memory_equal(box + 25, want, sizeof(want));
    /* And a place spelling them out as "" opens it. */
    assert_int_equal(crypt_open(key_a, &empty, box, sizeof(box), out), 0);
}

/* Asserts that a box sealed for field_place() does not open at @moved. */
static void assert_does_not_open_at(const struct crypt_place *moved)
{
    struct crypt_place p = field_place();
    uint8_t box[crypt_box_len(PLAIN_LEN)], out[PLAIN_LEN];

    seal_plain(&p, box);
    assert_int_equal(crypt_open(key_a, moved, box, sizeof(box), out),
                     DOSSIER_CORRUPT);
    /* The place it belongs to still opens it. */
    assert_int_equal(crypt_open(key_a, &p, box, sizeof(box), out), 0);
}

/* A box does not open for another purpose (domain). */
static void test_open_fails_when_domain_changes(void **state)
{
    struct crypt_place q = field_place();
    (void)state;
    q.domain = CRYPT_LINKS;
    assert_does_not_open_at(&q);
}

/* A box does not open for another subject. */
static void test_open_fails_when_subject_changes(void **state)
{
    uint8_t other[sizeof(SP)];
    struct crypt_place q = field_place();
    (void)state;
    memcpy(other, SP, sizeof(SP));
    other[15] ^= 0x01;
    q.subject = other;
    assert_does_not_open_at(&q);
    q.subject = NULL; /* nor without one */
    q.subject_len = 0;
    assert_does_not_open_at(&q);
}

/* A box does not open for another kind. */
static void test_open_fails_when_kind_changes(void **state)
{
    struct crypt_place q = field_place();
    (void)state;
    q.kind = "company";
    assert_does_not_open_at(&q);
}

/* A box does not open for another record. */
static void test_open_fails_when_rid_changes(void **state)
{
    uint8_t other[sizeof(RID)];
    struct crypt_place q = field_place();
    (void)state;
    memcpy(other, RID, sizeof(RID));
    other[0] ^= 0x80;
    q.rid = other;
    assert_does_not_open_at(&q);
}

/* A box does not open for another field. */
static void test_open_fails_when_name_changes(void **state)
{
    struct crypt_place q = field_place();
    (void)state;
    q.name = "phone";
    assert_does_not_open_at(&q);
}

/* Components are length-prefixed: moving bytes from one component to the
 * next (kind "contact" name "email" vs kind "contacte" name "mail") is
 * another place. */
static void test_open_fails_when_bytes_move_between_components(void **state)
{
    struct crypt_place q = field_place();
    (void)state;
    q.kind = "contacte";
    q.name = "mail";
    assert_does_not_open_at(&q);
}

/* Flipping any bit of any byte of a box (version, nonce, ciphertext, tag)
 * makes it fail to open. */
static void test_open_fails_when_any_byte_is_flipped(void **state)
{
    struct crypt_place p = field_place();
    uint8_t box[crypt_box_len(PLAIN_LEN)], out[PLAIN_LEN];
    (void)state;

    seal_plain(&p, box);
    for (size_t i = 0; i < sizeof(box); i++) {
        for (int bit = 0; bit < 8; bit++) {
            box[i] ^= (uint8_t)(1u << bit);
            if (crypt_open(key_a, &p, box, sizeof(box), out) !=
                DOSSIER_CORRUPT)
                fail_msg("box opened with bit %d of byte %zu flipped", bit, i);
            box[i] ^= (uint8_t)(1u << bit);
        }
    }
    assert_int_equal(crypt_open(key_a, &p, box, sizeof(box), out), 0);
}

/* A truncated box, of any shorter length, fails to open. */
static void test_open_fails_when_box_is_truncated(void **state)
{
    struct crypt_place p = field_place();
    uint8_t box[crypt_box_len(PLAIN_LEN)], out[PLAIN_LEN];
    (void)state;

    seal_plain(&p, box);
    for (size_t len = 0; len < sizeof(box); len++)
        if (crypt_open(key_a, &p, box, len, out) != DOSSIER_CORRUPT)
            fail_msg("a box cut to %zu bytes opened", len);
}

/* A box whose version byte is not 0x01 fails to open, even when the rest
 * is intact. */
static void test_open_fails_when_version_byte_is_wrong(void **state)
{
    struct crypt_place p = field_place();
    uint8_t box[crypt_box_len(PLAIN_LEN)], out[PLAIN_LEN];
    (void)state;

    seal_plain(&p, box);
    box[0] = 0x02;
    assert_int_equal(crypt_open(key_a, &p, box, sizeof(box), out),
                     DOSSIER_CORRUPT);
    box[0] = 0x00;
    assert_int_equal(crypt_open(key_a, &p, box, sizeof(box), out),
                     DOSSIER_CORRUPT);
}

/* A box does not open under another key. */
static void test_open_fails_under_another_key(void **state)
{
    struct crypt_place p = field_place();
    uint8_t box[crypt_box_len(PLAIN_LEN)], out[PLAIN_LEN];
    (void)state;

    seal_plain(&p, box);
    assert_int_equal(crypt_open(key_b, &p, box, sizeof(box), out),
                     DOSSIER_CORRUPT);
}

/* Two seals of the same plaintext for the same place draw different
 * nonces, so their boxes differ. */
static void test_two_seals_draw_different_nonces(void **state)
{
    struct crypt_place p = field_place();
    uint8_t a[crypt_box_len(PLAIN_LEN)], b[crypt_box_len(PLAIN_LEN)];
    (void)state;

    seal_plain(&p, a);
    seal_plain(&p, b);
    assert_memory_not_equal(a + 1, b + 1, CRYPT_NONCE_BYTES);
    assert_memory_not_equal(a + 25, b + 25, PLAIN_LEN);
}

/* A place component longer than 65535 bytes cannot be length-prefixed:
 * crypt_seal refuses it with DOSSIER_INVALID_ARGUMENT. */
static void test_seal_refuses_place_component_over_65535_bytes(void **state)
{
    struct crypt_place p = field_place();
    uint8_t box[crypt_box_len(PLAIN_LEN)];
    static uint8_t huge[65536];
    (void)state;

    p.rid = huge;
    p.rid_len = sizeof(huge);
    assert_int_equal(crypt_seal(key_a, &p, (const uint8_t *)PLAIN, PLAIN_LEN,
                                box),
                     DOSSIER_INVALID_ARGUMENT);
}

/* A place whose subject, kind, rid and name each have the longest length
 * crypt.h allows (CRYPT_SUBJECT_ID_MAX bytes) seals and opens. */
static void test_place_of_maximal_components_seals_and_opens(void **state)
{
    static uint8_t subject[CRYPT_SUBJECT_ID_MAX], rid[CRYPT_SUBJECT_ID_MAX];
    static char kind[CRYPT_SUBJECT_ID_MAX + 1], name[CRYPT_SUBJECT_ID_MAX + 1];
    struct crypt_place p = {.domain = CRYPT_FIELD,
                            .subject = subject,
                            .subject_len = sizeof(subject),
                            .kind = kind,
                            .rid = rid,
                            .rid_len = sizeof(rid),
                            .name = name};
    uint8_t box[crypt_box_len(PLAIN_LEN)], out[PLAIN_LEN];
    (void)state;

    memset(subject, 's', sizeof(subject));
    memset(rid, 'r', sizeof(rid));
    memset(kind, 'k', CRYPT_SUBJECT_ID_MAX);
    memset(name, 'n', CRYPT_SUBJECT_ID_MAX);
    assert_int_equal(crypt_seal(key_a, &p, (const uint8_t *)PLAIN, PLAIN_LEN,
                                box),
                     0);
    assert_int_equal(crypt_open(key_a, &p, box, sizeof(box), out), 0);
    assert_memory_equal(out, PLAIN, PLAIN_LEN);
}

/* ------------------------------------------------------------------ */
/* Contexts and the keyset */

/* crypt_new refuses a key file without any key, and takes it anyway. */
static void test_new_refuses_empty_keyfile(void **state)
{
    struct keyfile kf = {0};
    struct dossier_status st;
    static char sentinel;
    struct crypt *c = (struct crypt *)&sentinel; /* must become NULL */
    (void)state;

    assert_int_equal(crypt_new(&kf, 16, &c, &st), DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(st.code, DOSSIER_INVALID_ARGUMENT);
    assert_null(c);
}

/* crypt_kek_id is 16 hex digits, the same for the same key in any context,
 * different for another key, and "unknown" for a version not loaded. */
static void test_kek_id_names_the_key_and_unknown_versions(void **state)
{
    struct crypt *a1 = crypt_make(HEX_A), *a2 = crypt_make(HEX_A);
    struct crypt *b = crypt_make(HEX_B);
    char ida1[17], ida2[17], idb[17], none[17];
    (void)state;

    crypt_kek_id(a1, 1, ida1);
    crypt_kek_id(a2, 1, ida2);
    crypt_kek_id(b, 1, idb);
    crypt_kek_id(a1, 2, none);
    assert_int_equal(strlen(ida1), 16);
    assert_int_equal(strspn(ida1, "0123456789abcdef"), 16);
    assert_string_equal(ida1, ida2);
    assert_string_not_equal(ida1, idb);
    assert_string_equal(none, "unknown");
    crypt_free(a1);
    crypt_free(a2);
    crypt_free(b);
}

/* A keyset created under a master key loads in a new context under the
 * same key, and gives the same pseudonyms, blind indexes and shared key. */
static void test_keyset_created_loads_under_the_same_key(void **state)
{
    struct crypt *a = crypt_make(HEX_A), *a2 = crypt_make(HEX_A);
    Dossier__Store__V1__Meta m = DOSSIER__STORE__V1__META__INIT;
    struct dossier_status st;
    uint8_t p1[16], p2[16];
    unsigned char k1[CRYPT_KEY_BYTES], k2[CRYPT_KEY_BYTES];
    struct crypt_dek d1 = {.key = k1}, d2 = {.key = k2};
    (void)state;

    assert_int_equal(crypt_keyset_create(a, &m, &st), 0);
    assert_int_equal(m.kek_version, 1);
    assert_int_equal(m.cluster_id.len, 16);
    assert_int_equal(m.kek_check.len, CRYPT_KEK_CHECK_BYTES);
    assert_int_equal(crypt_keyset_load(a2, &m, &st), 0);

    crypt_subject_pseudonym(a, "subject-42", 10, p1);
    crypt_subject_pseudonym(a2, "subject-42", 10, p2);
    assert_memory_equal(p1, p2, 16);
    crypt_record_pseudonym(a, "contact", "c-1", 3, p1);
    crypt_record_pseudonym(a2, "contact", "c-1", 3, p2);
    assert_memory_equal(p1, p2, 16);
    crypt_blind_index(a, "contact", "email", (const uint8_t *)PLAIN,
                      PLAIN_LEN, p1);
    crypt_blind_index(a2, "contact", "email", (const uint8_t *)PLAIN,
                      PLAIN_LEN, p2);
    assert_memory_equal(p1, p2, 16);
    crypt_shared_dek(a, &d1);
    crypt_shared_dek(a2, &d2);
    assert_memory_equal(k1, k2, CRYPT_KEY_BYTES);

    meta_clear(&m);
    crypt_free(a);
    crypt_free(a2);
}

/* Two keysets created under the same key are independent: their
 * pseudonyms differ. */
static void test_each_keyset_has_its_own_secrets(void **state)
{
    struct crypt *a = crypt_make(HEX_A), *a2 = crypt_make(HEX_A);
    Dossier__Store__V1__Meta m1 = DOSSIER__STORE__V1__META__INIT;
    Dossier__Store__V1__Meta m2 = DOSSIER__STORE__V1__META__INIT;
    uint8_t p1[16], p2[16];
    (void)state;

    assert_int_equal(crypt_keyset_create(a, &m1, NULL), 0);
    assert_int_equal(crypt_keyset_create(a2, &m2, NULL), 0);
    assert_memory_not_equal(m1.cluster_id.data, m2.cluster_id.data, 16);
    crypt_subject_pseudonym(a, "subject-42", 10, p1);
    crypt_subject_pseudonym(a2, "subject-42", 10, p2);
    assert_memory_not_equal(p1, p2, 16);
    meta_clear(&m1);
    meta_clear(&m2);
    crypt_free(a);
    crypt_free(a2);
}

/* Loading a keyset under another master key of the same version fails with
 * DOSSIER_WRONG_KEY and a message naming both key ids. */
static void test_keyset_load_under_other_key_names_both_key_ids(void **state)
{
    struct crypt *a = crypt_make(HEX_A), *b = crypt_make(HEX_B);
    Dossier__Store__V1__Meta m = DOSSIER__STORE__V1__META__INIT;
    struct dossier_status st;
    char ida[17], idb[17];
    (void)state;

    assert_int_equal(crypt_keyset_create(a, &m, &st), 0);
    assert_int_equal(crypt_keyset_load(b, &m, &st), DOSSIER_WRONG_KEY);
    assert_int_equal(st.code, DOSSIER_WRONG_KEY);
    crypt_kek_id(a, 1, ida);
    crypt_kek_id(b, 1, idb);
    assert_contains(st.message, ida);
    assert_contains(st.message, idb);
    meta_clear(&m);
    crypt_free(a);
    crypt_free(b);
}

/* Loading a keyset sealed under a master key version the key file does not
 * hold fails with DOSSIER_WRONG_KEY, naming the version needed and both key
 * ids. */
static void test_keyset_load_without_needed_version_is_wrong_key(void **state)
{
    struct crypt *v2 = crypt_make("2:" HEX_B), *v1 = crypt_make(HEX_A);
    Dossier__Store__V1__Meta m = DOSSIER__STORE__V1__META__INIT;
    struct dossier_status st;
    char need[17], have[17];
    (void)state;

    assert_int_equal(crypt_keyset_create(v2, &m, &st), 0);
    assert_int_equal(m.kek_version, 2);
    assert_int_equal(crypt_keyset_load(v1, &m, &st), DOSSIER_WRONG_KEY);
    crypt_kek_id(v2, 2, need);
    crypt_kek_id(v1, 1, have);
    assert_contains(st.message, "version 2");
    assert_contains(st.message, need);
    assert_contains(st.message, have);
    meta_clear(&m);
    crypt_free(v1);
    crypt_free(v2);
}

/* During a rotation the key file holds the old version next to the new
 * one: a keyset sealed under the old version still loads. */
static void test_keyset_loads_with_older_version_among_newer(void **state)
{
    struct crypt *old = crypt_make(HEX_A), *both;
    Dossier__Store__V1__Meta m = DOSSIER__STORE__V1__META__INIT;
    struct dossier_status st;
    struct tmpdir dir;
    struct keyfile kf;
    char path[128];
    int rc;
    (void)state;

    assert_int_equal(crypt_keyset_create(old, &m, &st), 0);
    tmpdir_make(&dir);
    path_in(path, sizeof(path), dir.path, "master.key");
    file_write(path,
               "dossier-master-key 1 " HEX_A "\n"
               "dossier-master-key 2 " HEX_B "\n",
               0600);
    rc = keyfile_load(&kf, path, &st);
    tmpdir_remove(&dir);
    assert_int_equal(rc, 0);
    assert_int_equal(crypt_new(&kf, 16, &both, &st), 0);
    assert_int_equal(crypt_keyset_load(both, &m, &st), 0);
    meta_clear(&m);
    crypt_free(old);
    crypt_free(both);
}

/* A sealed keyset with a byte changed is DOSSIER_CORRUPT, not a wrong
 * key. */
static void test_keyset_load_refuses_tampered_keyset(void **state)
{
    struct crypt *a = crypt_make(HEX_A), *a2 = crypt_make(HEX_A);
    Dossier__Store__V1__Meta m = DOSSIER__STORE__V1__META__INIT;
    struct dossier_status st;
    (void)state;

    assert_int_equal(crypt_keyset_create(a, &m, &st), 0);
    m.sealed_keyset.data[m.sealed_keyset.len - 1] ^= 0x01;
    assert_int_equal(crypt_keyset_load(a2, &m, &st), DOSSIER_CORRUPT);
    assert_int_equal(st.code, DOSSIER_CORRUPT);
    meta_clear(&m);
    crypt_free(a);
    crypt_free(a2);
}

/* Known answer: the sealed keyset is a box under the master key for place
 * 'X' (cluster id, "", "", "v<version>") holding a Keyset message of four
 * 32-byte keys. */
static void test_sealed_keyset_has_documented_place(void **state)
{
    struct crypt *a = crypt_make("3:" HEX_A);
    Dossier__Store__V1__Meta m = DOSSIER__STORE__V1__META__INIT;
    Dossier__Store__V1__Keyset *ks;
    unsigned char kek[CRYPT_KEY_BYTES];
    struct crypt_place p = {.domain = CRYPT_KEYSET, .name = "v3"};
    uint8_t plain[512];
    size_t plen;
    (void)state;

    for (int i = 0; i < CRYPT_KEY_BYTES; i++)
        kek[i] = (unsigned char)i;
    assert_int_equal(crypt_keyset_create(a, &m, NULL), 0);
    p.subject = m.cluster_id.data;
    p.subject_len = m.cluster_id.len;
    assert_true(m.sealed_keyset.len <= sizeof(plain));
    assert_int_equal(box_open_independently(kek, &p, m.sealed_keyset.data,
                                            m.sealed_keyset.len, plain),
                     0);
    plen = m.sealed_keyset.len - CRYPT_BOX_OVERHEAD;
    ks = dossier__store__v1__keyset__unpack(NULL, plen, plain);
    assert_non_null(ks);
    assert_int_equal(ks->pseudonym_key.len, 32);
    assert_int_equal(ks->record_key.len, 32);
    assert_int_equal(ks->index_key.len, 32);
    assert_int_equal(ks->shared_dek.len, 32);
    dossier__store__v1__keyset__free_unpacked(ks, NULL);
    sodium_memzero(plain, sizeof(plain));
    meta_clear(&m);
    crypt_free(a);
}

/* ------------------------------------------------------------------ */
/* Pseudonyms and blind indexes, under a keyset whose keys are known */

static const uint8_t CLUSTER[16] = {0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5,
                                    0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb,
                                    0xcc, 0xcd, 0xce, 0xcf};

/* Fills @k with 32 bytes counting up from @first. */
static void key_fill(uint8_t *k, int first)
{
    for (int i = 0; i < CRYPT_KEY_BYTES; i++)
        k[i] = (uint8_t)(first + i);
}

/* A context under HEX_A holding a keyset sealed here, per the documented
 * format, with pseudonym key 0x10.., record key 0x30.., index key 0x50..
 * and shared key 0x70... */
static struct crypt *crypt_with_known_keyset(void)
{
    struct crypt *a = crypt_make(HEX_A), *c = crypt_make(HEX_A);
    Dossier__Store__V1__Meta made = DOSSIER__STORE__V1__META__INIT;
    Dossier__Store__V1__Meta m = DOSSIER__STORE__V1__META__INIT;
    Dossier__Store__V1__Keyset ks = DOSSIER__STORE__V1__KEYSET__INIT;
    uint8_t keys[4][CRYPT_KEY_BYTES], kek[CRYPT_KEY_BYTES];
    uint8_t plain[256], box[512], ad[64];
    struct crypt_place p = {.domain = CRYPT_KEYSET,
                            .subject = CLUSTER,
                            .subject_len = sizeof(CLUSTER),
                            .name = "v1"};
    struct dossier_status st;
    size_t len, ad_len;

    /* The key check value of HEX_A, as crypt.c computes it. */
    assert_int_equal(crypt_keyset_create(a, &made, NULL), 0);

    for (int i = 0; i < 4; i++)
        key_fill(keys[i], 0x10 + 0x20 * i);
    key_fill(kek, 0);
    ks.pseudonym_key = (ProtobufCBinaryData){32, keys[0]};
    ks.record_key = (ProtobufCBinaryData){32, keys[1]};
    ks.index_key = (ProtobufCBinaryData){32, keys[2]};
    ks.shared_dek = (ProtobufCBinaryData){32, keys[3]};
    len = dossier__store__v1__keyset__pack(&ks, plain);
    ad_len = ad_make(&p, ad);
    box[0] = 0x01;
    memset(box + 1, 0x33, 24);
    crypto_aead_xchacha20poly1305_ietf_encrypt(box + 25, NULL, plain, len, ad,
                                               ad_len, NULL, box + 1, kek);

    m.format = 1;
    m.cluster_id = (ProtobufCBinaryData){sizeof(CLUSTER), (uint8_t *)CLUSTER};
    m.kek_version = 1;
    m.kek_check = made.kek_check;
    m.sealed_keyset = (ProtobufCBinaryData){crypt_box_len(len), box};
    if (crypt_keyset_load(c, &m, &st) != 0)
        fail_msg("a keyset sealed per crypt.h does not load: %s", st.message);
    meta_clear(&made);
    crypt_free(a);
    return c;
}

/* A keyset sealed by hand per the documented format loads, and its shared
 * key is the Keyset's shared_dek. */
static void test_keyset_sealed_per_documentation_loads(void **state)
{
    struct crypt *c = crypt_with_known_keyset();
    unsigned char k[CRYPT_KEY_BYTES], want[CRYPT_KEY_BYTES];
    struct crypt_dek d = {.id = 99, .key = k};
    (void)state;

    key_fill(want, 0x70);
    crypt_shared_dek(c, &d);
    assert_int_equal(d.id, 0);
    assert_memory_equal(k, want, CRYPT_KEY_BYTES);
    crypt_free(c);
}

/* Known answer: subject pseudonym = BLAKE2b-128 keyed with the pseudonym
 * key, of the subject id. */
static void test_subject_pseudonym_is_keyed_blake2b_of_id(void **state)
{
    static const uint8_t vector[16] = {0x45, 0x94, 0xa5, 0x07, 0x40, 0x9e,
                                       0x71, 0x53, 0x85, 0x17, 0xca, 0xdd,
                                       0xa1, 0x78, 0x6e, 0x5c};
    struct crypt *c = crypt_with_known_keyset();
    uint8_t key[32], want[16], got[16];
    (void)state;

    key_fill(key, 0x10);
    crypto_generichash(want, 16, (const uint8_t *)"subject-42", 10, key, 32);
    crypt_subject_pseudonym(c, "subject-42", 10, got);
    assert_memory_equal(got, want, 16);
    assert_memory_equal(got, vector, 16); /* Python hashlib.blake2b */
    crypt_free(c);
}

/* Known answer: record pseudonym = BLAKE2b-128 keyed with the record key,
 * of lp(kind) | lp(id). */
static void test_record_pseudonym_is_keyed_blake2b_of_kind_and_id(
    void **state)
{
    static const uint8_t msg[] = {0x00, 0x07, 'c', 'o', 'n', 't', 'a', 'c',
                                  't',  0x00, 0x03, 'c', '-', '1'};
    static const uint8_t vector[16] = {0xc6, 0xb8, 0xb8, 0x20, 0xfa, 0xbf,
                                       0x6a, 0xe7, 0x0d, 0x11, 0x58, 0x7e,
                                       0xe6, 0xae, 0x6f, 0xd5};
    struct crypt *c = crypt_with_known_keyset();
    uint8_t key[32], want[16], got[16];
    (void)state;

    key_fill(key, 0x30);
    crypto_generichash(want, 16, msg, sizeof(msg), key, 32);
    crypt_record_pseudonym(c, "contact", "c-1", 3, got);
    assert_memory_equal(got, want, 16);
    assert_memory_equal(got, vector, 16);
    crypt_free(c);
}

/* Known answer: blind index = BLAKE2b-128 keyed with the index key, of
 * lp(kind) | lp(field) | lp(normalized value). */
static void test_blind_index_is_keyed_blake2b_of_kind_field_value(
    void **state)
{
    static const uint8_t msg[] = {
        0x00, 0x07, 'c', 'o', 'n', 't', 'a', 'c', 't',
        0x00, 0x05, 'e', 'm', 'a', 'i', 'l',
        0x00, 0x0f, 'a', 'd', 'a', '@', 'e', 'x', 'a', 'm', 'p', 'l', 'e',
        '.',  'c',  'o', 'm'};
    static const uint8_t vector[16] = {0x3b, 0x5a, 0x91, 0x49, 0x5c, 0x46,
                                       0x25, 0x3b, 0x58, 0x87, 0xc6, 0xc9,
                                       0x48, 0xa8, 0xec, 0x36};
    struct crypt *c = crypt_with_known_keyset();
    uint8_t key[32], want[16], got[16];
    (void)state;

    key_fill(key, 0x50);
    crypto_generichash(want, 16, msg, sizeof(msg), key, 32);
    crypt_blind_index(c, "contact", "email", (const uint8_t *)PLAIN,
                      PLAIN_LEN, got);
    assert_memory_equal(got, want, 16);
    assert_memory_equal(got, vector, 16);
    crypt_free(c);
}

/* ------------------------------------------------------------------ */
/* Subject keys and the cache */

/* A subject key made by crypt_subject_key_new opens, in another context
 * under the same master key, to the same key bytes, id and subject id. */
static void test_subject_key_new_then_open_gives_same_key_and_id(
    void **state)
{
    struct crypt *a = crypt_make(HEX_A), *a2 = crypt_make(HEX_A);
    Dossier__Store__V1__SubjectKey sk = DOSSIER__STORE__V1__SUBJECT_KEY__INIT;
    unsigned char k1[CRYPT_KEY_BYTES], k2[CRYPT_KEY_BYTES];
    struct crypt_dek d1 = {.key = k1}, d2 = {.key = k2};
    struct dossier_status st;
    char sid[64];
    (void)state;

    assert_int_equal(crypt_subject_key_new(a, SP, "subject-42", 10, 1234, &d1,
                                           &sk, &st),
                     0);
    assert_int_not_equal(d1.id, 0); /* 0 is the shared key's id */
    assert_int_equal(sk.dek_id, d1.id);
    assert_int_equal(sk.kek_version, 1);
    assert_int_equal(sk.created_at_ms, 1234);

    assert_int_equal(crypt_subject_key_open(a2, SP, &sk, &d2, sid,
                                            sizeof(sid), &st),
                     0);
    assert_memory_equal(k1, k2, CRYPT_KEY_BYTES);
    assert_int_equal(d2.id, d1.id);
    assert_string_equal(sid, "subject-42");
    subject_key_clear(&sk);
    crypt_free(a);
    crypt_free(a2);
}

/* Known answer: the wrapped DEK is a box under the master key for place
 * 'K' (subject pseudonym, "", "", "v<version>"), and the sealed subject id
 * a box under the DEK for place 'S' (subject pseudonym, "", "", ""). */
static void test_subject_key_boxes_have_documented_places(void **state)
{
    struct crypt *a = crypt_make("5:" HEX_A);
    Dossier__Store__V1__SubjectKey sk = DOSSIER__STORE__V1__SUBJECT_KEY__INIT;
    unsigned char k[CRYPT_KEY_BYTES], kek[CRYPT_KEY_BYTES];
    unsigned char dek[CRYPT_KEY_BYTES];
    struct crypt_dek d = {.key = k};
    struct crypt_place wrap = {.domain = CRYPT_WRAPPED_DEK,
                               .subject = SP,
                               .subject_len = sizeof(SP),
                               .name = "v5"};
    struct crypt_place sidp = {.domain = CRYPT_SUBJECT_ID,
                               .subject = SP,
                               .subject_len = sizeof(SP)};
    char sid[16];
    (void)state;

    key_fill(kek, 0);
    assert_int_equal(crypt_subject_key_new(a, SP, "subject-42", 10, 0, &d,
                                           &sk, NULL),
                     0);
    assert_int_equal(sk.kek_version, 5);
    assert_int_equal(sk.wrapped_dek.len, crypt_box_len(CRYPT_KEY_BYTES));
    assert_int_equal(box_open_independently(kek, &wrap, sk.wrapped_dek.data,
                                            sk.wrapped_dek.len, dek),
                     0);
    assert_memory_equal(dek, k, CRYPT_KEY_BYTES);
    assert_int_equal(sk.sealed_subject_id.len, crypt_box_len(10));
    assert_int_equal(box_open_independently(dek, &sidp,
                                            sk.sealed_subject_id.data,
                                            sk.sealed_subject_id.len,
                                            (uint8_t *)sid),
                     0);
    assert_memory_equal(sid, "subject-42", 10);
    subject_key_clear(&sk);
    crypt_free(a);
}

/* Each new subject key is a fresh random key with a fresh id. */
static void test_each_subject_key_is_new(void **state)
{
    struct crypt *a = crypt_make(HEX_A);
    Dossier__Store__V1__SubjectKey s1 = DOSSIER__STORE__V1__SUBJECT_KEY__INIT;
    Dossier__Store__V1__SubjectKey s2 = DOSSIER__STORE__V1__SUBJECT_KEY__INIT;
    unsigned char k1[CRYPT_KEY_BYTES], k2[CRYPT_KEY_BYTES];
    struct crypt_dek d1 = {.key = k1}, d2 = {.key = k2};
    (void)state;

    assert_int_equal(crypt_subject_key_new(a, SP, "s", 1, 0, &d1, &s1, NULL),
                     0);
    assert_int_equal(crypt_subject_key_new(a, SP, "s", 1, 0, &d2, &s2, NULL),
                     0);
    assert_memory_not_equal(k1, k2, CRYPT_KEY_BYTES);
    assert_int_not_equal(d1.id, d2.id);
    subject_key_clear(&s1);
    subject_key_clear(&s2);
    crypt_free(a);
}

/* Once opened, a subject key is cached: it is found without its
 * SubjectKey. After crypt_cache_forget it is not (result 1) until the
 * SubjectKey is given again. */
static void test_cache_returns_key_after_forget_only_when_given_again(
    void **state)
{
    struct crypt *a = crypt_make(HEX_A);
    Dossier__Store__V1__SubjectKey sk = DOSSIER__STORE__V1__SUBJECT_KEY__INIT;
    unsigned char k0[CRYPT_KEY_BYTES], k[CRYPT_KEY_BYTES];
    struct crypt_dek d0 = {.key = k0}, d = {.key = k};
    struct dossier_status st;
    char sid[64];
    (void)state;

    assert_int_equal(crypt_subject_key_new(a, SP, "subject-42", 10, 0, &d0,
                                           &sk, NULL),
                     0);
    assert_int_equal(crypt_subject_key_open(a, SP, &sk, &d, sid, sizeof(sid),
                                            &st),
                     0);

    memset(k, 0, sizeof(k));
    memset(sid, 0, sizeof(sid));
    assert_int_equal(crypt_subject_key_open(a, SP, NULL, &d, sid, sizeof(sid),
                                            &st),
                     0);
    assert_memory_equal(k, k0, CRYPT_KEY_BYTES);
    assert_int_equal(d.id, d0.id);
    assert_string_equal(sid, "subject-42");

    crypt_cache_forget(a, SP);
    assert_int_equal(crypt_subject_key_open(a, SP, NULL, &d, sid, sizeof(sid),
                                            &st),
                     1);

    memset(k, 0, sizeof(k));
    assert_int_equal(crypt_subject_key_open(a, SP, &sk, &d, NULL, 0, &st), 0);
    assert_memory_equal(k, k0, CRYPT_KEY_BYTES);
    memset(k, 0, sizeof(k));
    assert_int_equal(crypt_subject_key_open(a, SP, NULL, &d, NULL, 0, &st),
                     0);
    assert_memory_equal(k, k0, CRYPT_KEY_BYTES);
    subject_key_clear(&sk);
    crypt_free(a);
}

/* A subject that came back with a new key (after erasure) gets the new key
 * when its new SubjectKey is given, even though the old one is cached. */
static void test_cached_key_is_replaced_by_a_newer_subject_key(void **state)
{
    struct crypt *a = crypt_make(HEX_A);
    Dossier__Store__V1__SubjectKey s1 = DOSSIER__STORE__V1__SUBJECT_KEY__INIT;
    Dossier__Store__V1__SubjectKey s2 = DOSSIER__STORE__V1__SUBJECT_KEY__INIT;
    unsigned char k1[CRYPT_KEY_BYTES], k2[CRYPT_KEY_BYTES], k[CRYPT_KEY_BYTES];
    struct crypt_dek d1 = {.key = k1}, d2 = {.key = k2}, d = {.key = k};
    (void)state;

    assert_int_equal(crypt_subject_key_new(a, SP, "s", 1, 0, &d1, &s1, NULL),
                     0);
    assert_int_equal(crypt_subject_key_open(a, SP, &s1, &d, NULL, 0, NULL), 0);
    assert_int_equal(crypt_subject_key_new(a, SP, "s", 1, 0, &d2, &s2, NULL),
                     0);
    assert_int_equal(crypt_subject_key_open(a, SP, &s2, &d, NULL, 0, NULL), 0);
    assert_int_equal(d.id, d2.id);
    assert_memory_equal(k, k2, CRYPT_KEY_BYTES);
    /* And the cache now holds the new one. */
    assert_int_equal(crypt_subject_key_open(a, SP, NULL, &d, NULL, 0, NULL),
                     0);
    assert_int_equal(d.id, d2.id);
    subject_key_clear(&s1);
    subject_key_clear(&s2);
    crypt_free(a);
}

/* A subject key wrapped under a master key version the key file lacks is
 * DOSSIER_WRONG_KEY. */
static void test_subject_key_under_missing_version_is_wrong_key(void **state)
{
    struct crypt *v2 = crypt_make("2:" HEX_B), *v1 = crypt_make(HEX_A);
    Dossier__Store__V1__SubjectKey sk = DOSSIER__STORE__V1__SUBJECT_KEY__INIT;
    unsigned char k0[CRYPT_KEY_BYTES], k[CRYPT_KEY_BYTES];
    struct crypt_dek d0 = {.key = k0}, d = {.key = k};
    struct dossier_status st;
    (void)state;

    assert_int_equal(crypt_subject_key_new(v2, SP, "s", 1, 0, &d0, &sk, NULL),
                     0);
    assert_int_equal(crypt_subject_key_open(v1, SP, &sk, &d, NULL, 0, &st),
                     DOSSIER_WRONG_KEY);
    assert_int_equal(st.code, DOSSIER_WRONG_KEY);
    subject_key_clear(&sk);
    crypt_free(v1);
    crypt_free(v2);
}

/* A SubjectKey copied to another subject's pseudonym does not open
 * (DOSSIER_CORRUPT), and nothing is cached for that subject. */
static void test_subject_key_of_another_subject_is_corrupt(void **state)
{
    struct crypt *a = crypt_make(HEX_A);
    Dossier__Store__V1__SubjectKey sk = DOSSIER__STORE__V1__SUBJECT_KEY__INIT;
    unsigned char k0[CRYPT_KEY_BYTES], k[CRYPT_KEY_BYTES];
    struct crypt_dek d0 = {.key = k0}, d = {.key = k};
    uint8_t other[CRYPT_PSEUDONYM_BYTES];
    struct dossier_status st;
    (void)state;

    memcpy(other, SP, sizeof(other));
    other[8] ^= 0x01;
    assert_int_equal(crypt_subject_key_new(a, SP, "s", 1, 0, &d0, &sk, NULL),
                     0);
    assert_int_equal(crypt_subject_key_open(a, other, &sk, &d, NULL, 0, &st),
                     DOSSIER_CORRUPT);
    assert_int_equal(crypt_subject_key_open(a, other, NULL, &d, NULL, 0, &st),
                     1);
    subject_key_clear(&sk);
    crypt_free(a);
}

/* ------------------------------------------------------------------ */
/* Master key rotation */

static void hex_to(const char *hex, unsigned char out[32])
{
    assert_int_equal(sodium_hex2bin(out, 32, hex, 64, NULL, NULL, NULL), 0);
}

/* A keyfile of versions 1 (HEX_A) and 2 (HEX_B), loaded. */
static void keyfile_both(struct keyfile *kf)
{
    struct dossier_status st;
    struct tmpdir dir;
    char path[128];
    int rc;
    tmpdir_make(&dir);
    path_in(path, sizeof(path), dir.path, "master.key");
    file_write(path,
               "dossier-master-key 1 " HEX_A "\n"
               "dossier-master-key 2 " HEX_B "\n",
               0600);
    rc = keyfile_load(kf, path, &st);
    tmpdir_remove(&dir);
    assert_int_equal(rc, 0);
}

/* A context holding versions 1 and 2 whose cluster uses version 1: the
 * keyset of @m (sealed under version 1) loaded. */
static struct crypt *crypt_rotating(Dossier__Store__V1__Meta *m)
{
    struct crypt *one = crypt_make(HEX_A), *both;
    struct dossier_status st;
    struct keyfile kf;
    assert_int_equal(crypt_keyset_create(one, m, &st), 0);
    crypt_free(one);
    keyfile_both(&kf);
    assert_int_equal(crypt_new(&kf, 16, &both, &st), 0);
    assert_int_equal(crypt_keyset_load(both, m, &st), 0);
    return both;
}

/* New subject keys are wrapped under the version the cluster uses, not
 * the highest loaded; under the rotation's target once one runs. */
static void test_new_subject_keys_follow_the_version_in_use(void **state)
{
    Dossier__Store__V1__Meta m = DOSSIER__STORE__V1__META__INIT;
    Dossier__Store__V1__SubjectKey sk = DOSSIER__STORE__V1__SUBJECT_KEY__INIT;
    unsigned char k[CRYPT_KEY_BYTES];
    struct crypt_dek d = {.key = k};
    struct dossier_status st;
    struct crypt *c;
    (void)state;

    c = crypt_rotating(&m);
    assert_int_equal(crypt_active_version(c), 1);
    assert_int_equal(crypt_subject_key_new(c, SP, "s", 1, 0, &d, &sk, &st), 0);
    assert_int_equal(sk.kek_version, 1);
    subject_key_clear(&sk);
    assert_int_equal(crypt_set_versions(c, 1, 2, &st), 0);
    assert_int_equal(crypt_wrap_version(c), 2);
    assert_int_equal(crypt_subject_key_new(c, SP, "s", 1, 0, &d, &sk, &st), 0);
    assert_int_equal(sk.kek_version, 2);
    subject_key_clear(&sk);
    meta_clear(&m);
    crypt_free(c);
}

/* A rewrapped subject key holds the same data key, opens under the new
 * version (in a context holding only it) and no longer under the old. */
static void test_rewrap_keeps_the_data_key_under_the_new_version(void **state)
{
    Dossier__Store__V1__Meta m = DOSSIER__STORE__V1__META__INIT;
    Dossier__Store__V1__SubjectKey sk = DOSSIER__STORE__V1__SUBJECT_KEY__INIT;
    unsigned char k1[CRYPT_KEY_BYTES], k2[CRYPT_KEY_BYTES], kek[32];
    unsigned char plain[CRYPT_KEY_BYTES];
    struct crypt_dek d1 = {.key = k1}, d2 = {.key = k2};
    struct crypt_place wrap = {.domain = CRYPT_WRAPPED_DEK,
                               .subject = SP,
                               .subject_len = sizeof(SP),
                               .name = "v1"};
    struct dossier_status st;
    struct crypt *c, *v2only;
    uint8_t *box, *old;
    size_t len;
    char sid[16];
    (void)state;

    c = crypt_rotating(&m);
    assert_int_equal(crypt_subject_key_new(c, SP, "s-1", 3, 0, &d1, &sk, &st),
                     0);
    assert_int_equal(crypt_subject_key_rewrap(c, SP, &sk, 2, &box, &len, &st),
                     0);
    assert_int_equal(len, crypt_box_len(CRYPT_KEY_BYTES));
    old = sk.wrapped_dek.data;
    sk.wrapped_dek.data = box;
    sk.kek_version = 2;
    v2only = crypt_make("2:" HEX_B);
    assert_int_equal(crypt_subject_key_open(v2only, SP, &sk, &d2, sid,
                                            sizeof(sid), &st),
                     0);
    assert_memory_equal(k1, k2, CRYPT_KEY_BYTES);
    assert_string_equal(sid, "s-1");
    /* Under the old master key it opens as neither version. */
    hex_to(HEX_A, kek);
    assert_int_not_equal(crypt_open(kek, &wrap, box, len, plain), 0);
    wrap.name = "v2";
    assert_int_not_equal(crypt_open(kek, &wrap, box, len, plain), 0);
    free(old);
    subject_key_clear(&sk);
    meta_clear(&m);
    crypt_free(c);
    crypt_free(v2only);
}

/* The keyset resealed under version 2 loads in a context holding only
 * version 2, with the same pseudonyms, and is the wrong key for version
 * 1 alone. */
static void test_resealed_keyset_loads_under_the_new_version_only(
    void **state)
{
    Dossier__Store__V1__Meta m = DOSSIER__STORE__V1__META__INIT;
    Dossier__Store__V1__Meta r = DOSSIER__STORE__V1__META__INIT;
    uint8_t p1[CRYPT_PSEUDONYM_BYTES], p2[CRYPT_PSEUDONYM_BYTES];
    struct dossier_status st;
    struct crypt *c, *v2only, *v1only;
    (void)state;

    c = crypt_rotating(&m);
    assert_int_equal(crypt_keyset_reseal(c, 2, &r, &st), 0);
    assert_int_equal(r.kek_version, 2);
    assert_memory_equal(r.cluster_id.data, m.cluster_id.data, 16);
    v2only = crypt_make("2:" HEX_B);
    v1only = crypt_make(HEX_A);
    assert_int_equal(crypt_keyset_load(v2only, &r, &st), 0);
    assert_int_equal(crypt_active_version(v2only), 2);
    crypt_subject_pseudonym(c, "s-9", 3, p1);
    crypt_subject_pseudonym(v2only, "s-9", 3, p2);
    assert_memory_equal(p1, p2, sizeof(p1));
    assert_int_equal(crypt_keyset_load(v1only, &r, &st), DOSSIER_WRONG_KEY);
    assert_contains(st.message, "version 2");
    assert_int_equal(crypt_keyset_reseal(v1only, 2, &m, &st),
                     DOSSIER_UNAVAILABLE); /* no keyset open */
    meta_clear(&m);
    meta_clear(&r);
    crypt_free(c);
    crypt_free(v2only);
    crypt_free(v1only);
}

/* A reload never drops a version in use nor changes a version's key; a
 * good one adds versions and takes effect. */
static void test_keys_reload_keeps_versions_in_use(void **state)
{
    Dossier__Store__V1__Meta m = DOSSIER__STORE__V1__META__INIT;
    struct dossier_status st;
    struct keyfile kf;
    uint32_t v[4];
    struct crypt *c;
    (void)state;

    c = crypt_rotating(&m);
    assert_int_equal(keyfile_parse_env(&kf, "2:" HEX_B, &st), 0);
    assert_int_equal(crypt_keys_reload(c, &kf, &st), DOSSIER_WRONG_KEY);
    assert_contains(st.message, "version 1");
    assert_int_equal(kf.n, 0); /* taken all the same */
    assert_int_equal(crypt_kek_versions(c, v, NULL, 4), 2);
    assert_int_equal(keyfile_parse_env(&kf, "1:" HEX_B, &st), 0);
    assert_int_equal(crypt_keys_reload(c, &kf, &st), DOSSIER_WRONG_KEY);
    assert_contains(st.message, "differs");
    assert_int_equal(keyfile_parse_env(&kf, "1:" HEX_A, &st), 0);
    assert_int_equal(crypt_keys_reload(c, &kf, &st), 0);
    assert_int_equal(crypt_kek_versions(c, v, NULL, 4), 1);
    assert_int_equal(v[0], 1);
    /* A rotation's target is in use too. */
    keyfile_both(&kf);
    assert_int_equal(crypt_keys_reload(c, &kf, &st), 0);
    assert_int_equal(crypt_set_versions(c, 1, 2, &st), 0);
    assert_int_equal(keyfile_parse_env(&kf, "1:" HEX_A, &st), 0);
    assert_int_equal(crypt_keys_reload(c, &kf, &st), DOSSIER_WRONG_KEY);
    assert_contains(st.message, "version 2");
    /* The other order: a reload that drops version 2 while nothing uses
     * it, then a rotation to it applied. The versions are recorded and the
     * missing one reported, so the node does not take it for held. */
    assert_int_equal(crypt_set_versions(c, 1, 0, &st), 0);
    assert_int_equal(keyfile_parse_env(&kf, "1:" HEX_A, &st), 0);
    assert_int_equal(crypt_keys_reload(c, &kf, &st), 0);
    assert_int_equal(crypt_set_versions(c, 1, 2, &st), DOSSIER_WRONG_KEY);
    assert_contains(st.message, "version 2");
    assert_int_equal(crypt_wrap_version(c), 2);
    meta_clear(&m);
    crypt_free(c);
}

/* Nodes present the token of the version in use and accept that of any
 * version they hold. */
static void test_peer_token_follows_the_version_in_use(void **state)
{
    Dossier__Store__V1__Meta m = DOSSIER__STORE__V1__META__INIT;
    struct crypt *c, *v1only, *v2only;
    char t1[65], t2[65], t[65];
    (void)state;

    c = crypt_rotating(&m);
    v1only = crypt_make(HEX_A);
    v2only = crypt_make("2:" HEX_B);
    crypt_peer_token(v1only, t1);
    crypt_peer_token(v2only, t2);
    assert_string_not_equal(t1, t2);
    crypt_peer_token(c, t);
    assert_string_equal(t, t1); /* version 1 in use, 2 loaded */
    assert_true(crypt_peer_token_ok(c, t1, 64));
    assert_true(crypt_peer_token_ok(c, t2, 64));
    assert_false(crypt_peer_token_ok(v1only, t2, 64));
    assert_int_equal(crypt_set_versions(c, 2, 0, NULL), 0);
    crypt_peer_token(c, t);
    assert_string_equal(t, t2);
    meta_clear(&m);
    crypt_free(c);
    crypt_free(v1only);
    crypt_free(v2only);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_returns_what_seal_sealed),
        cmocka_unit_test(test_empty_plaintext_round_trips),
        cmocka_unit_test(test_field_box_has_documented_layout_and_ad),
        cmocka_unit_test(test_absent_place_components_are_empty_in_ad),
        cmocka_unit_test(test_open_fails_when_domain_changes),
        cmocka_unit_test(test_open_fails_when_subject_changes),
        cmocka_unit_test(test_open_fails_when_kind_changes),
        cmocka_unit_test(test_open_fails_when_rid_changes),
        cmocka_unit_test(test_open_fails_when_name_changes),
        cmocka_unit_test(test_open_fails_when_bytes_move_between_components),
        cmocka_unit_test(test_open_fails_when_any_byte_is_flipped),
        cmocka_unit_test(test_open_fails_when_box_is_truncated),
        cmocka_unit_test(test_open_fails_when_version_byte_is_wrong),
        cmocka_unit_test(test_open_fails_under_another_key),
        cmocka_unit_test(test_two_seals_draw_different_nonces),
        cmocka_unit_test(test_seal_refuses_place_component_over_65535_bytes),
        cmocka_unit_test(test_place_of_maximal_components_seals_and_opens),
        cmocka_unit_test(test_new_refuses_empty_keyfile),
        cmocka_unit_test(test_kek_id_names_the_key_and_unknown_versions),
        cmocka_unit_test(test_keyset_created_loads_under_the_same_key),
        cmocka_unit_test(test_each_keyset_has_its_own_secrets),
        cmocka_unit_test(test_keyset_load_under_other_key_names_both_key_ids),
        cmocka_unit_test(test_keyset_load_without_needed_version_is_wrong_key),
        cmocka_unit_test(test_keyset_loads_with_older_version_among_newer),
        cmocka_unit_test(test_keyset_load_refuses_tampered_keyset),
        cmocka_unit_test(test_sealed_keyset_has_documented_place),
        cmocka_unit_test(test_keyset_sealed_per_documentation_loads),
        cmocka_unit_test(test_subject_pseudonym_is_keyed_blake2b_of_id),
        cmocka_unit_test(
            test_record_pseudonym_is_keyed_blake2b_of_kind_and_id),
        cmocka_unit_test(test_blind_index_is_keyed_blake2b_of_kind_field_value),
        cmocka_unit_test(test_subject_key_new_then_open_gives_same_key_and_id),
        cmocka_unit_test(test_subject_key_boxes_have_documented_places),
        cmocka_unit_test(test_each_subject_key_is_new),
        cmocka_unit_test(
            test_cache_returns_key_after_forget_only_when_given_again),
        cmocka_unit_test(test_cached_key_is_replaced_by_a_newer_subject_key),
        cmocka_unit_test(test_subject_key_under_missing_version_is_wrong_key),
        cmocka_unit_test(test_subject_key_of_another_subject_is_corrupt),
        cmocka_unit_test(test_new_subject_keys_follow_the_version_in_use),
        cmocka_unit_test(test_rewrap_keeps_the_data_key_under_the_new_version),
        cmocka_unit_test(
            test_resealed_keyset_loads_under_the_new_version_only),
        cmocka_unit_test(test_keys_reload_keeps_versions_in_use),
        cmocka_unit_test(test_peer_token_follows_the_version_in_use),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
