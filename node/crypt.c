/* Key hierarchy, sealed boxes, pseudonyms, blind indexes and the cache of
 * unwrapped subject keys. Formats are documented in crypt.h. */
#include "crypt.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit.h"
#include "auth.h"
#include "errors.h"

/* Secrets opened from the keyset, in one sodium_malloc block. */
struct keyset_secrets {
    unsigned char pseudonym[CRYPT_KEY_BYTES];
    unsigned char record[CRYPT_KEY_BYTES];
    unsigned char index[CRYPT_KEY_BYTES];
    unsigned char shared[CRYPT_KEY_BYTES];
};

/* One cached subject key. A slot is empty when dek_id is 0 (subject keys
 * never have id 0: that is the shared key's). */
struct cache_slot {
    uint8_t sp[CRYPT_PSEUDONYM_BYTES];
    uint64_t dek_id;
    uint32_t stamp;
    uint16_t sid_len;
    unsigned char key[CRYPT_KEY_BYTES];
    char sid[CRYPT_SUBJECT_ID_MAX];
};

#define CACHE_WAYS 4

struct crypt {
    /* The master keys; replaced whole by crypt_keys_reload() (SIGHUP), so
     * readers hold kek_lock shared while they use one. */
    pthread_rwlock_t kek_lock;
    struct keyfile kek;
    /* Versions in use, from the replicated state (crypt_set_versions):
     * active seals the keyset, rotate_to is the rotation's target (0:
     * none). Atomic. */
    uint32_t active, rotate_to;
    struct keyset_secrets *ks; /* NULL until create or load */
    uint8_t cluster_id[16];

    pthread_mutex_t cache_lock;
    struct cache_slot *slots; /* sodium_malloc'd, n_sets * CACHE_WAYS */
    size_t n_sets;            /* a power of two */
    uint32_t clock;
};

/* ------------------------------------------------------------------ */
/* Per-thread scratch: a locked buffer for one data key and a pool of
 * random nonces. The pool is refilled with one getrandom() for 170 boxes;
 * nonces are not secret. Dossier never forks after start-up, so no two
 * processes share a pool. */

static pthread_key_t scratch_tls;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static __thread unsigned char *scratch_key;
static __thread uint8_t nonce_pool[4080];
static __thread size_t nonce_pos = sizeof(nonce_pool);

static void scratch_destroy(void *p)
{
    sodium_free(p);
}

static void scratch_init(void)
{
    (void)pthread_key_create(&scratch_tls, scratch_destroy);
}

unsigned char *crypt_scratch_key(void)
{
    if (!scratch_key) {
        pthread_once(&scratch_once, scratch_init);
        scratch_key = sodium_malloc(CRYPT_KEY_BYTES);
        if (scratch_key)
            pthread_setspecific(scratch_tls, scratch_key);
    }
    return scratch_key;
}

void crypt_dek_wipe(struct crypt_dek *k)
{
    if (k->key)
        sodium_memzero(k->key, CRYPT_KEY_BYTES);
    k->id = 0;
}

static void nonce_draw(uint8_t out[CRYPT_NONCE_BYTES])
{
    if (nonce_pos + CRYPT_NONCE_BYTES > sizeof(nonce_pool)) {
        randombytes_buf(nonce_pool, sizeof(nonce_pool));
        nonce_pos = 0;
    }
    memcpy(out, nonce_pool + nonce_pos, CRYPT_NONCE_BYTES);
    nonce_pos += CRYPT_NONCE_BYTES;
}

/* ------------------------------------------------------------------ */
/* Boxes */

/* Room for the largest place crypt.h allows: four 256-byte components. */
#define AD_MAX 2048

static int lp_put(uint8_t *ad, size_t *off, const void *p, size_t len)
{
    if (len > 0xffff || *off + 2 + len > AD_MAX)
        return -1;
    ad[(*off)++] = (uint8_t)(len >> 8);
    ad[(*off)++] = (uint8_t)len;
    if (len)
        memcpy(ad + *off, p, len);
    *off += len;
    return 0;
}

static int ad_build(const struct crypt_place *p, uint8_t ad[AD_MAX],
                    size_t *len)
{
    size_t off = 0;
    const char *kind = p->kind ? p->kind : "";
    const char *name = p->name ? p->name : "";

    memcpy(ad, "DSR1", 4);
    off = 4;
    ad[off++] = (uint8_t)p->domain;
    if (lp_put(ad, &off, p->subject, p->subject ? p->subject_len : 0) ||
        lp_put(ad, &off, kind, strlen(kind)) ||
        lp_put(ad, &off, p->rid, p->rid ? p->rid_len : 0) ||
        lp_put(ad, &off, name, strlen(name)))
        return DOSSIER_INVALID_ARGUMENT;
    *len = off;
    return 0;
}

int crypt_seal(const unsigned char *key, const struct crypt_place *p,
               const uint8_t *plain, size_t len, uint8_t *box)
{
    uint8_t ad[AD_MAX];
    size_t ad_len;
    int rc = ad_build(p, ad, &ad_len);

    if (rc)
        return rc;
    box[0] = CRYPT_BOX_VERSION;
    nonce_draw(box + 1);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        box + 1 + CRYPT_NONCE_BYTES, NULL, plain, len, ad, ad_len, NULL,
        box + 1, key);
    return 0;
}

int crypt_open(const unsigned char *key, const struct crypt_place *p,
               const uint8_t *box, size_t box_len, uint8_t *plain)
{
    uint8_t ad[AD_MAX];
    size_t ad_len;

    if (box_len < CRYPT_BOX_OVERHEAD || box[0] != CRYPT_BOX_VERSION)
        return DOSSIER_CORRUPT;
    if (ad_build(p, ad, &ad_len))
        return DOSSIER_CORRUPT;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            plain, NULL, NULL, box + 1 + CRYPT_NONCE_BYTES,
            box_len - 1 - CRYPT_NONCE_BYTES, ad, ad_len, box + 1, key) != 0)
        return DOSSIER_CORRUPT;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Context */

int crypt_new(struct keyfile *kf, size_t cache_entries, struct crypt **out,
              struct dossier_status *st)
{
    struct crypt *c;
    size_t sets = 1;

    *out = NULL;
    if (sodium_init() < 0) {
        keyfile_release(kf);
        return err_set(st, DOSSIER_INTERNAL, "libsodium failed to start");
    }
    if (!keyfile_current(kf)) {
        keyfile_release(kf);
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "no master key given");
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        goto nomem;
    c->kek = *kf;
    memset(kf, 0, sizeof(*kf));
    pthread_rwlock_init(&c->kek_lock, NULL);
    while (sets * CACHE_WAYS < cache_entries)
        sets <<= 1;
    c->n_sets = sets;
    c->slots = sodium_allocarray(sets * CACHE_WAYS, sizeof(struct cache_slot));
    if (!c->slots)
        goto nomem_c;
    memset(c->slots, 0, sets * CACHE_WAYS * sizeof(struct cache_slot));
    pthread_mutex_init(&c->cache_lock, NULL);
    *out = c;
    return err_ok(st);
nomem_c:
    keyfile_release(&c->kek);
    free(c);
nomem:
    keyfile_release(kf);
    return err_set(st, DOSSIER_NOMEM, "out of memory for the key cache");
}

void crypt_free(struct crypt *c)
{
    if (!c)
        return;
    keyfile_release(&c->kek);
    pthread_rwlock_destroy(&c->kek_lock);
    if (c->ks)
        sodium_free(c->ks);
    sodium_free(c->slots);
    pthread_mutex_destroy(&c->cache_lock);
    free(c);
}

static void kek_check(const unsigned char *kek, uint8_t out[CRYPT_KEK_CHECK_BYTES])
{
    static const char label[] = "dossier.kek-check.v1";
    crypto_generichash(out, CRYPT_KEK_CHECK_BYTES, (const uint8_t *)label,
                       sizeof(label) - 1, kek, CRYPT_KEY_BYTES);
}

static void check_hex(const uint8_t check[CRYPT_KEK_CHECK_BYTES], char out[17])
{
    sodium_bin2hex(out, 17, check, 8);
}

/* The version new wraps and the peer token use: the rotation's target,
 * else the active version, else (no keyset yet) the highest loaded.
 * Caller holds kek_lock. */
static const struct keyfile_key *kek_in_use(const struct crypt *c,
                                            int for_wrap)
{
    uint32_t to = __atomic_load_n(&c->rotate_to, __ATOMIC_ACQUIRE);
    uint32_t active = __atomic_load_n(&c->active, __ATOMIC_ACQUIRE);
    if (for_wrap && to)
        return keyfile_find(&c->kek, to);
    if (active)
        return keyfile_find(&c->kek, active);
    return keyfile_current(&c->kek);
}

static void kek_rdlock(const struct crypt *c)
{
    pthread_rwlock_rdlock((pthread_rwlock_t *)&c->kek_lock);
}

static void kek_unlock(const struct crypt *c)
{
    pthread_rwlock_unlock((pthread_rwlock_t *)&c->kek_lock);
}

void crypt_peer_token(const struct crypt *c,
                      char out[AUTH_PEER_TOKEN_CHARS + 1])
{
    const struct keyfile_key *k;
    kek_rdlock(c);
    k = kek_in_use(c, 0);
    if (!k) /* the active version was checked at load: cannot happen */
        k = keyfile_current(&c->kek);
    auth_peer_token(k->key, out);
    kek_unlock(c);
}

int crypt_peer_token_ok(const struct crypt *c, const char *token, size_t len)
{
    char t[AUTH_PEER_TOKEN_CHARS + 1];
    int ok = 0;
    kek_rdlock(c);
    for (size_t i = 0; i < c->kek.n && !ok; i++) {
        auth_peer_token(c->kek.keys[i].key, t);
        ok = auth_is_peer_token(t, token, len);
    }
    kek_unlock(c);
    sodium_memzero(t, sizeof(t));
    return ok;
}

/* Whether every version in use (@in_use, 0: none) is in @kf: 0, or
 * DOSSIER_WRONG_KEY naming the first missing one. */
static int in_use_held(const struct keyfile *kf, const uint32_t in_use[2],
                       const char *what, struct dossier_status *st)
{
    for (size_t i = 0; i < 2; i++)
        if (in_use[i] && !keyfile_find(kf, in_use[i]))
            return err_set(st, DOSSIER_WRONG_KEY,
                           "the key file %s master key version %u, which "
                           "the cluster still uses%s",
                           what, in_use[i],
                           i ? " (a rotation to it is under way)"
                             : " (it seals the cluster's keyset)");
    return 0;
}

int crypt_set_versions(struct crypt *c, uint32_t active, uint32_t rotate_to,
                       struct dossier_status *st)
{
    const uint32_t in_use[2] = {active, rotate_to};
    int rc;

    /* Under the write lock: a reload checks what is in use and swaps the
     * keys under it too, so neither can slip between the other's check
     * and its change. */
    pthread_rwlock_wrlock(&c->kek_lock);
    __atomic_store_n(&c->active, active, __ATOMIC_RELEASE);
    __atomic_store_n(&c->rotate_to, rotate_to, __ATOMIC_RELEASE);
    rc = in_use_held(&c->kek, in_use, "does not hold", st);
    pthread_rwlock_unlock(&c->kek_lock);
    return rc ? rc : err_ok(st);
}

uint32_t crypt_active_version(const struct crypt *c)
{
    return __atomic_load_n(&c->active, __ATOMIC_ACQUIRE);
}

uint32_t crypt_wrap_version(const struct crypt *c)
{
    uint32_t to = __atomic_load_n(&c->rotate_to, __ATOMIC_ACQUIRE);
    return to ? to : __atomic_load_n(&c->active, __ATOMIC_ACQUIRE);
}

size_t crypt_kek_versions(const struct crypt *c, uint32_t *versions,
                          uint8_t (*checks)[CRYPT_KEK_CHECK_BYTES], size_t cap)
{
    size_t n = 0;
    kek_rdlock(c);
    /* In version order, for listings. */
    for (uint32_t last = 0;;) {
        const struct keyfile_key *next = NULL;
        for (size_t i = 0; i < c->kek.n; i++)
            if (c->kek.keys[i].version > last &&
                (!next || c->kek.keys[i].version < next->version))
                next = &c->kek.keys[i];
        if (!next || n == cap)
            break;
        versions[n] = next->version;
        if (checks)
            kek_check(next->key, checks[n]);
        n++;
        last = next->version;
    }
    kek_unlock(c);
    return n;
}

int crypt_kek_check_of(const struct crypt *c, uint32_t version,
                       uint8_t out[CRYPT_KEK_CHECK_BYTES])
{
    const struct keyfile_key *k;
    int rc = -1;
    kek_rdlock(c);
    k = keyfile_find(&c->kek, version);
    if (k) {
        kek_check(k->key, out);
        rc = 0;
    }
    kek_unlock(c);
    return rc;
}

int crypt_kek_require(const struct crypt *c, uint32_t version,
                      const uint8_t *check, size_t check_len,
                      const char *why, struct dossier_status *st)
{
    uint8_t have[CRYPT_KEK_CHECK_BYTES];
    char want_id[17] = "?", have_id[17];

    if (check_len == CRYPT_KEK_CHECK_BYTES)
        check_hex(check, want_id);
    if (crypt_kek_check_of(c, version, have) != 0)
        return err_set(st, DOSSIER_WRONG_KEY,
                       "wrong master key: %s needs master key version %u "
                       "(key id %s), which the key given does not hold; add "
                       "that version to the key file",
                       why, version, want_id);
    check_hex(have, have_id);
    if (check_len != CRYPT_KEK_CHECK_BYTES ||
        sodium_memcmp(have, check, CRYPT_KEK_CHECK_BYTES) != 0)
        return err_set(st, DOSSIER_WRONG_KEY,
                       "wrong master key: %s needs master key version %u "
                       "with key id %s, but version %u of the key given has "
                       "key id %s",
                       why, version, want_id, version, have_id);
    return err_ok(st);
}

int crypt_keys_reload(struct crypt *c, struct keyfile *kf,
                      struct dossier_status *st)
{
    uint32_t in_use[2];
    struct keyfile old;
    int rc;

    /* What is in use is read under the lock crypt_set_versions() takes: a
     * BEGIN applied meanwhile either comes first (and is seen here) or
     * after the swap (and reports the version missing). */
    pthread_rwlock_wrlock(&c->kek_lock);
    in_use[0] = __atomic_load_n(&c->active, __ATOMIC_ACQUIRE);
    in_use[1] = __atomic_load_n(&c->rotate_to, __ATOMIC_ACQUIRE);
    rc = in_use_held(kf, in_use, "no longer holds", st);
    for (size_t i = 0; i < kf->n && !rc; i++) {
        const struct keyfile_key *k = keyfile_find(&c->kek, kf->keys[i].version);
        if (k && sodium_memcmp(k->key, kf->keys[i].key, CRYPT_KEY_BYTES) != 0)
            rc = err_set(st, DOSSIER_WRONG_KEY,
                         "master key version %u in the key file differs from "
                         "the one loaded: a version's key never changes "
                         "(add a new version instead)",
                         kf->keys[i].version);
    }
    if (rc) {
        pthread_rwlock_unlock(&c->kek_lock);
        keyfile_release(kf);
        return rc;
    }
    old = c->kek;
    c->kek = *kf;
    memset(kf, 0, sizeof(*kf));
    pthread_rwlock_unlock(&c->kek_lock);
    keyfile_release(&old);
    return err_ok(st);
}

int crypt_audit_keys(const struct crypt *c, uint8_t pk[32],
                     unsigned char sk[64], struct dossier_status *st)
{
    unsigned char seed[AUDIT_SEED_BYTES];
    int rc;
    if (!c->ks)
        return err_set(st, DOSSIER_UNAVAILABLE,
                       "the cluster's keyset is not open yet");
    /* From the shared data key: a cipher key, never a hash key, so no
     * message hashed elsewhere can meet this derivation. */
    audit_signing_seed_derive(c->ks->shared, seed);
    rc = audit_signing_keypair_from_seed(seed, pk, sk, st);
    sodium_memzero(seed, sizeof(seed));
    return rc;
}

void crypt_kek_id(const struct crypt *c, uint32_t version, char out[17])
{
    uint8_t check[CRYPT_KEK_CHECK_BYTES];

    if (crypt_kek_check_of(c, version, check) != 0) {
        snprintf(out, 17, "unknown");
        return;
    }
    check_hex(check, out);
}

static void version_name(uint32_t v, char out[16])
{
    snprintf(out, 16, "v%u", v);
}

int crypt_keyset_create(struct crypt *c, Dossier__Store__V1__Meta *m,
                        struct dossier_status *st)
{
    const struct keyfile_key *kek;
    Dossier__Store__V1__Keyset msg = DOSSIER__STORE__V1__KEYSET__INIT;
    struct keyset_secrets *ks;
    uint8_t *plain = NULL, *box = NULL, *check = NULL;
    char vname[16];
    size_t len;
    struct crypt_place place = {.domain = CRYPT_KEYSET};

    ks = sodium_malloc(sizeof(*ks));
    if (!ks)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    randombytes_buf(ks, sizeof(*ks));
    randombytes_buf(c->cluster_id, sizeof(c->cluster_id));
    msg.pseudonym_key = (ProtobufCBinaryData){CRYPT_KEY_BYTES, ks->pseudonym};
    msg.record_key = (ProtobufCBinaryData){CRYPT_KEY_BYTES, ks->record};
    msg.index_key = (ProtobufCBinaryData){CRYPT_KEY_BYTES, ks->index};
    msg.shared_dek = (ProtobufCBinaryData){CRYPT_KEY_BYTES, ks->shared};
    len = dossier__store__v1__keyset__get_packed_size(&msg);
    plain = sodium_malloc(len);
    box = malloc(crypt_box_len(len));
    check = malloc(CRYPT_KEK_CHECK_BYTES);
    m->cluster_id.data = malloc(sizeof(c->cluster_id));
    if (!plain || !box || !check || !m->cluster_id.data)
        goto nomem;
    dossier__store__v1__keyset__pack(&msg, plain);
    kek_rdlock(c);
    kek = keyfile_current(&c->kek);
    version_name(kek->version, vname);
    place.subject = c->cluster_id;
    place.subject_len = sizeof(c->cluster_id);
    place.name = vname;
    crypt_seal(kek->key, &place, plain, len, box);
    sodium_free(plain);
    kek_check(kek->key, check);
    m->kek_version = kek->version;
    kek_unlock(c);

    memcpy(m->cluster_id.data, c->cluster_id, sizeof(c->cluster_id));
    m->cluster_id.len = sizeof(c->cluster_id);
    m->kek_check = (ProtobufCBinaryData){CRYPT_KEK_CHECK_BYTES, check};
    m->sealed_keyset = (ProtobufCBinaryData){crypt_box_len(len), box};
    if (c->ks)
        sodium_free(c->ks);
    c->ks = ks;
    /* The version just sealed the keyset: it is loaded. */
    (void)crypt_set_versions(c, m->kek_version, 0, NULL);
    return err_ok(st);
nomem:
    sodium_free(plain);
    free(box);
    free(check);
    free(m->cluster_id.data);
    m->cluster_id.data = NULL;
    sodium_free(ks);
    return err_set(st, DOSSIER_NOMEM, "out of memory");
}

int crypt_keyset_load(struct crypt *c, const Dossier__Store__V1__Meta *m,
                      struct dossier_status *st)
{
    const struct keyfile_key *kek;
    uint8_t check[CRYPT_KEK_CHECK_BYTES];
    char want[17] = "?", have[17];
    Dossier__Store__V1__Keyset *msg = NULL;
    struct keyset_secrets *ks = NULL;
    uint8_t *plain = NULL;
    size_t len;
    char vname[16];
    struct crypt_place place = {.domain = CRYPT_KEYSET};
    int rc;

    if (m->kek_check.len == CRYPT_KEK_CHECK_BYTES)
        check_hex(m->kek_check.data, want);
    kek_rdlock(c);
    kek = keyfile_find(&c->kek, m->kek_version);
    if (!kek) {
        kek_check(keyfile_current(&c->kek)->key, check);
        check_hex(check, have);
        kek_unlock(c);
        return err_set(st, DOSSIER_WRONG_KEY,
                       "wrong master key: the data directory needs master key "
                       "version %u (key id %s), which the key given does not "
                       "hold (its current key id is %s)",
                       m->kek_version, want, have);
    }
    kek_check(kek->key, check);
    check_hex(check, have);
    if (m->kek_check.len != CRYPT_KEK_CHECK_BYTES ||
        sodium_memcmp(check, m->kek_check.data, CRYPT_KEK_CHECK_BYTES) != 0) {
        kek_unlock(c);
        return err_set(st, DOSSIER_WRONG_KEY,
                       "wrong master key: the data directory was sealed with "
                       "master key version %u, key id %s; version %u of the "
                       "key given has key id %s",
                       m->kek_version, want, m->kek_version, have);
    }
    if (m->cluster_id.len != sizeof(c->cluster_id) ||
        m->sealed_keyset.len < CRYPT_BOX_OVERHEAD) {
        kek_unlock(c);
        return err_set(st, DOSSIER_CORRUPT, "corrupt meta record");
    }
    memcpy(c->cluster_id, m->cluster_id.data, sizeof(c->cluster_id));
    len = m->sealed_keyset.len - CRYPT_BOX_OVERHEAD;
    plain = sodium_malloc(len ? len : 1);
    ks = sodium_malloc(sizeof(*ks));
    if (!plain || !ks) {
        kek_unlock(c);
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    version_name(kek->version, vname);
    place.subject = c->cluster_id;
    place.subject_len = sizeof(c->cluster_id);
    place.name = vname;
    rc = crypt_open(kek->key, &place, m->sealed_keyset.data,
                    m->sealed_keyset.len, plain);
    kek_unlock(c);
    kek = NULL;
    if (rc != 0) {
        rc = err_set(st, DOSSIER_CORRUPT,
                     "the sealed keyset does not open under the right master "
                     "key: the meta record is corrupt");
        goto out;
    }
    msg = dossier__store__v1__keyset__unpack(NULL, len, plain);
    if (!msg || msg->pseudonym_key.len != CRYPT_KEY_BYTES ||
        msg->record_key.len != CRYPT_KEY_BYTES ||
        msg->index_key.len != CRYPT_KEY_BYTES ||
        msg->shared_dek.len != CRYPT_KEY_BYTES) {
        rc = err_set(st, DOSSIER_CORRUPT, "the keyset is malformed");
        goto out;
    }
    memcpy(ks->pseudonym, msg->pseudonym_key.data, CRYPT_KEY_BYTES);
    memcpy(ks->record, msg->record_key.data, CRYPT_KEY_BYTES);
    memcpy(ks->index, msg->index_key.data, CRYPT_KEY_BYTES);
    memcpy(ks->shared, msg->shared_dek.data, CRYPT_KEY_BYTES);
    if (c->ks)
        sodium_free(c->ks);
    c->ks = ks;
    ks = NULL;
    if (crypt_active_version(c) != m->kek_version)
        (void)crypt_set_versions(c, m->kek_version, 0, NULL); /* it opened */
    rc = err_ok(st);
out:
    if (msg) {
        sodium_memzero(msg->pseudonym_key.data, msg->pseudonym_key.len);
        sodium_memzero(msg->record_key.data, msg->record_key.len);
        sodium_memzero(msg->index_key.data, msg->index_key.len);
        sodium_memzero(msg->shared_dek.data, msg->shared_dek.len);
        dossier__store__v1__keyset__free_unpacked(msg, NULL);
    }
    if (plain)
        sodium_free(plain);
    if (ks)
        sodium_free(ks);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Pseudonyms and blind indexes */

static void hash_lp(crypto_generichash_state *h, const void *p, size_t len)
{
    uint8_t l[2] = {(uint8_t)(len >> 8), (uint8_t)len};
    crypto_generichash_update(h, l, 2);
    crypto_generichash_update(h, p, len);
}

void crypt_subject_pseudonym(const struct crypt *c, const char *subject_id,
                             size_t len, uint8_t out[CRYPT_PSEUDONYM_BYTES])
{
    crypto_generichash(out, CRYPT_PSEUDONYM_BYTES, (const uint8_t *)subject_id,
                       len, c->ks->pseudonym, CRYPT_KEY_BYTES);
}

void crypt_record_pseudonym(const struct crypt *c, const char *kind,
                            const char *id, size_t id_len,
                            uint8_t out[CRYPT_PSEUDONYM_BYTES])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, c->ks->record, CRYPT_KEY_BYTES,
                            CRYPT_PSEUDONYM_BYTES);
    hash_lp(&h, kind, strlen(kind));
    hash_lp(&h, id, id_len);
    crypto_generichash_final(&h, out, CRYPT_PSEUDONYM_BYTES);
}

void crypt_blind_index(const struct crypt *c, const char *kind,
                       const char *field, const uint8_t *norm, size_t len,
                       uint8_t out[CRYPT_BLIND_BYTES])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, c->ks->index, CRYPT_KEY_BYTES,
                            CRYPT_BLIND_BYTES);
    hash_lp(&h, kind, strlen(kind));
    hash_lp(&h, field, strlen(field));
    hash_lp(&h, norm, len);
    crypto_generichash_final(&h, out, CRYPT_BLIND_BYTES);
}

/* ------------------------------------------------------------------ */
/* Data keys and their cache */

void crypt_shared_dek(const struct crypt *c, struct crypt_dek *k)
{
    memcpy(k->key, c->ks->shared, CRYPT_KEY_BYTES);
    k->id = 0;
}

static struct cache_slot *cache_set(struct crypt *c,
                                    const uint8_t sp[CRYPT_PSEUDONYM_BYTES])
{
    uint64_t h;
    memcpy(&h, sp, sizeof(h)); /* a pseudonym is already a uniform hash */
    return &c->slots[(h & (c->n_sets - 1)) * CACHE_WAYS];
}

/* Copies a cached key out; returns 1 on a hit. Caller holds the lock. */
static int cache_get_locked(struct crypt *c, const uint8_t *sp,
                            struct crypt_dek *k, char *sid, size_t sid_cap)
{
    struct cache_slot *set = cache_set(c, sp);
    for (int i = 0; i < CACHE_WAYS; i++) {
        struct cache_slot *s = &set[i];
        if (s->dek_id && memcmp(s->sp, sp, CRYPT_PSEUDONYM_BYTES) == 0) {
            if (sid && s->sid_len >= sid_cap)
                return 0; /* caller's buffer too small: treat as a miss */
            memcpy(k->key, s->key, CRYPT_KEY_BYTES);
            k->id = s->dek_id;
            if (sid) {
                memcpy(sid, s->sid, s->sid_len);
                sid[s->sid_len] = '\0';
            }
            s->stamp = ++c->clock;
            return 1;
        }
    }
    return 0;
}

static void cache_put_locked(struct crypt *c, const uint8_t *sp,
                             const struct crypt_dek *k, const char *sid,
                             size_t sid_len)
{
    struct cache_slot *set = cache_set(c, sp), *victim = &set[0];
    if (sid_len > CRYPT_SUBJECT_ID_MAX)
        return;
    for (int i = 0; i < CACHE_WAYS; i++) {
        struct cache_slot *s = &set[i];
        if (s->dek_id && memcmp(s->sp, sp, CRYPT_PSEUDONYM_BYTES) == 0) {
            victim = s;
            break;
        }
        if (!s->dek_id || s->stamp < victim->stamp)
            victim = s; /* an empty slot or the least recently used */
    }
    memcpy(victim->sp, sp, CRYPT_PSEUDONYM_BYTES);
    memcpy(victim->key, k->key, CRYPT_KEY_BYTES);
    memcpy(victim->sid, sid, sid_len);
    victim->sid_len = (uint16_t)sid_len;
    victim->dek_id = k->id;
    victim->stamp = ++c->clock;
}

void crypt_cache_clear(struct crypt *c)
{
    pthread_mutex_lock(&c->cache_lock);
    sodium_memzero(c->slots, c->n_sets * CACHE_WAYS * sizeof(*c->slots));
    pthread_mutex_unlock(&c->cache_lock);
}

void crypt_cache_forget(struct crypt *c,
                        const uint8_t sp[CRYPT_PSEUDONYM_BYTES])
{
    struct cache_slot *set;

    pthread_mutex_lock(&c->cache_lock);
    set = cache_set(c, sp);
    for (int i = 0; i < CACHE_WAYS; i++)
        if (set[i].dek_id &&
            memcmp(set[i].sp, sp, CRYPT_PSEUDONYM_BYTES) == 0)
            sodium_memzero(&set[i], sizeof(set[i]));
    pthread_mutex_unlock(&c->cache_lock);
}

int crypt_subject_key_new(const struct crypt *c,
                          const uint8_t sp[CRYPT_PSEUDONYM_BYTES],
                          const char *subject_id, size_t subject_len,
                          int64_t now_ms, struct crypt_dek *k,
                          Dossier__Store__V1__SubjectKey *out,
                          struct dossier_status *st)
{
    const struct keyfile_key *kek;
    struct crypt_place wrap = {.domain = CRYPT_WRAPPED_DEK,
                               .subject = sp,
                               .subject_len = CRYPT_PSEUDONYM_BYTES};
    struct crypt_place sidp = {.domain = CRYPT_SUBJECT_ID,
                               .subject = sp,
                               .subject_len = CRYPT_PSEUDONYM_BYTES};
    char vname[16];
    uint8_t *wrapped, *sealed;

    if (subject_len == 0 || subject_len > CRYPT_SUBJECT_ID_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "a subject id has 1 to %d bytes", CRYPT_SUBJECT_ID_MAX);
    wrapped = malloc(crypt_box_len(CRYPT_KEY_BYTES));
    sealed = malloc(crypt_box_len(subject_len));
    if (!wrapped || !sealed) {
        free(wrapped);
        free(sealed);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    kek_rdlock(c);
    kek = kek_in_use(c, 1);
    if (!kek) {
        uint32_t v = crypt_wrap_version(c);
        kek_unlock(c);
        free(wrapped);
        free(sealed);
        return err_set(st, DOSSIER_WRONG_KEY,
                       "new subject keys are wrapped under master key "
                       "version %u, which this node's key file does not "
                       "hold",
                       v);
    }
    randombytes_buf(k->key, CRYPT_KEY_BYTES);
    do
        randombytes_buf(&k->id, sizeof(k->id));
    while (k->id == 0);
    version_name(kek->version, vname);
    wrap.name = vname;
    crypt_seal(kek->key, &wrap, k->key, CRYPT_KEY_BYTES, wrapped);
    out->kek_version = kek->version;
    kek_unlock(c);
    crypt_seal(k->key, &sidp, (const uint8_t *)subject_id, subject_len,
               sealed);
    out->dek_id = k->id;
    out->wrapped_dek = (ProtobufCBinaryData){crypt_box_len(CRYPT_KEY_BYTES),
                                             wrapped};
    out->sealed_subject_id =
        (ProtobufCBinaryData){crypt_box_len(subject_len), sealed};
    out->created_at_ms = now_ms;
    return err_ok(st);
}

/* Unwraps @sk (subject @sp) into @key (CRYPT_KEY_BYTES).
 * Errors: DOSSIER_WRONG_KEY, DOSSIER_CORRUPT. */
static int unwrap_dek(const struct crypt *c,
                      const uint8_t sp[CRYPT_PSEUDONYM_BYTES],
                      const Dossier__Store__V1__SubjectKey *sk,
                      unsigned char *key, struct dossier_status *st)
{
    const struct keyfile_key *kek;
    struct crypt_place wrap = {.domain = CRYPT_WRAPPED_DEK,
                               .subject = sp,
                               .subject_len = CRYPT_PSEUDONYM_BYTES};
    char vname[16];
    int rc;

    version_name(sk->kek_version, vname);
    wrap.name = vname;
    kek_rdlock(c);
    kek = keyfile_find(&c->kek, sk->kek_version);
    if (!kek) {
        kek_unlock(c);
        return err_set(st, DOSSIER_WRONG_KEY,
                       "a subject key is wrapped under master key version %u, "
                       "which the key file does not hold",
                       sk->kek_version);
    }
    rc = sk->wrapped_dek.len != crypt_box_len(CRYPT_KEY_BYTES) ||
         crypt_open(kek->key, &wrap, sk->wrapped_dek.data,
                    sk->wrapped_dek.len, key) != 0;
    kek_unlock(c);
    if (rc) {
        sodium_memzero(key, CRYPT_KEY_BYTES);
        return err_set(st, DOSSIER_CORRUPT, "a subject key does not unwrap");
    }
    return err_ok(st);
}

int crypt_subject_key_rewrap(const struct crypt *c,
                             const uint8_t sp[CRYPT_PSEUDONYM_BYTES],
                             const Dossier__Store__V1__SubjectKey *sk,
                             uint32_t to_version, uint8_t **wrapped,
                             size_t *len, struct dossier_status *st)
{
    struct crypt_place wrap = {.domain = CRYPT_WRAPPED_DEK,
                               .subject = sp,
                               .subject_len = CRYPT_PSEUDONYM_BYTES};
    const struct keyfile_key *kek;
    unsigned char *key = crypt_scratch_key();
    uint8_t *box;
    char vname[16];
    int rc;

    *wrapped = NULL;
    *len = 0;
    if (!key)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    box = malloc(crypt_box_len(CRYPT_KEY_BYTES));
    if (!box)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    rc = unwrap_dek(c, sp, sk, key, st);
    if (rc) {
        free(box);
        return rc;
    }
    version_name(to_version, vname);
    wrap.name = vname;
    kek_rdlock(c);
    kek = keyfile_find(&c->kek, to_version);
    if (kek)
        crypt_seal(kek->key, &wrap, key, CRYPT_KEY_BYTES, box);
    kek_unlock(c);
    sodium_memzero(key, CRYPT_KEY_BYTES);
    if (!kek) {
        free(box);
        return err_set(st, DOSSIER_WRONG_KEY,
                       "master key version %u is not loaded on this node",
                       to_version);
    }
    *wrapped = box;
    *len = crypt_box_len(CRYPT_KEY_BYTES);
    return err_ok(st);
}

int crypt_keyset_reseal(const struct crypt *c, uint32_t to_version,
                        Dossier__Store__V1__Meta *m, struct dossier_status *st)
{
    Dossier__Store__V1__Keyset msg = DOSSIER__STORE__V1__KEYSET__INIT;
    struct crypt_place place = {.domain = CRYPT_KEYSET};
    const struct keyfile_key *kek;
    uint8_t *plain, *box, *check, *cid;
    char vname[16];
    size_t len;

    if (!c->ks)
        return err_set(st, DOSSIER_UNAVAILABLE,
                       "the cluster's keyset is not open yet");
    msg.pseudonym_key = (ProtobufCBinaryData){CRYPT_KEY_BYTES,
                                              c->ks->pseudonym};
    msg.record_key = (ProtobufCBinaryData){CRYPT_KEY_BYTES, c->ks->record};
    msg.index_key = (ProtobufCBinaryData){CRYPT_KEY_BYTES, c->ks->index};
    msg.shared_dek = (ProtobufCBinaryData){CRYPT_KEY_BYTES, c->ks->shared};
    len = dossier__store__v1__keyset__get_packed_size(&msg);
    plain = sodium_malloc(len);
    box = malloc(crypt_box_len(len));
    check = malloc(CRYPT_KEK_CHECK_BYTES);
    cid = malloc(sizeof(c->cluster_id));
    if (!plain || !box || !check || !cid) {
        if (plain)
            sodium_free(plain);
        free(box);
        free(check);
        free(cid);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    dossier__store__v1__keyset__pack(&msg, plain);
    version_name(to_version, vname);
    place.subject = c->cluster_id;
    place.subject_len = sizeof(c->cluster_id);
    place.name = vname;
    kek_rdlock(c);
    kek = keyfile_find(&c->kek, to_version);
    if (kek) {
        crypt_seal(kek->key, &place, plain, len, box);
        kek_check(kek->key, check);
    }
    kek_unlock(c);
    sodium_free(plain);
    if (!kek) {
        free(box);
        free(check);
        free(cid);
        return err_set(st, DOSSIER_WRONG_KEY,
                       "master key version %u is not loaded on this node",
                       to_version);
    }
    memcpy(cid, c->cluster_id, sizeof(c->cluster_id));
    m->cluster_id = (ProtobufCBinaryData){sizeof(c->cluster_id), cid};
    m->kek_version = to_version;
    m->kek_check = (ProtobufCBinaryData){CRYPT_KEK_CHECK_BYTES, check};
    m->sealed_keyset = (ProtobufCBinaryData){crypt_box_len(len), box};
    return err_ok(st);
}

int crypt_subject_key_open(struct crypt *c,
                           const uint8_t sp[CRYPT_PSEUDONYM_BYTES],
                           const Dossier__Store__V1__SubjectKey *sk,
                           struct crypt_dek *k, char *sid, size_t sid_cap,
                           struct dossier_status *st)
{
    struct crypt_place sidp = {.domain = CRYPT_SUBJECT_ID,
                               .subject = sp,
                               .subject_len = CRYPT_PSEUDONYM_BYTES};
    char plain_sid[CRYPT_SUBJECT_ID_MAX + 1];
    size_t sid_len;
    int hit;

    pthread_mutex_lock(&c->cache_lock);
    hit = cache_get_locked(c, sp, k, sid, sid_cap);
    pthread_mutex_unlock(&c->cache_lock);
    if (hit && (!sk || sk->dek_id == k->id))
        return err_ok(st);
    if (!sk)
        return 1;
    /* A stale cache entry (the subject was erased and came back with a new
     * key) is replaced below. */
    if (unwrap_dek(c, sp, sk, k->key, st) != 0)
        return st->code;
    k->id = sk->dek_id;
    if (sk->sealed_subject_id.len < CRYPT_BOX_OVERHEAD ||
        sk->sealed_subject_id.len - CRYPT_BOX_OVERHEAD > CRYPT_SUBJECT_ID_MAX ||
        crypt_open(k->key, &sidp, sk->sealed_subject_id.data,
                   sk->sealed_subject_id.len, (uint8_t *)plain_sid) != 0) {
        crypt_dek_wipe(k);
        return err_set(st, DOSSIER_CORRUPT, "a subject id does not open");
    }
    sid_len = sk->sealed_subject_id.len - CRYPT_BOX_OVERHEAD;
    plain_sid[sid_len] = '\0';
    if (sid) {
        if (sid_len >= sid_cap) {
            sodium_memzero(plain_sid, sizeof(plain_sid));
            crypt_dek_wipe(k);
            return err_set(st, DOSSIER_INTERNAL, "subject id buffer too small");
        }
        memcpy(sid, plain_sid, sid_len + 1);
    }
    pthread_mutex_lock(&c->cache_lock);
    cache_put_locked(c, sp, k, plain_sid, sid_len);
    pthread_mutex_unlock(&c->cache_lock);
    sodium_memzero(plain_sid, sizeof(plain_sid));
    return err_ok(st);
}
