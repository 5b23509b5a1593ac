/* Master key rotation on a 3-node cluster, through libdossier:
 *  - a rotation is refused, naming the node, while one member lacks the
 *    new key version; SIGHUP loads a version added to the key files;
 *  - rotated with subjects written during it and the leader killed half
 *    way (the next leader finishes it), every record reads back on every
 *    node, and the rotation is audited and shows in the metrics;
 *  - on every node's disk each subject key and the keyset open under the
 *    new master key only, wrapping the very same data keys, and no byte
 *    of an old wrap is left in any file (the scan finds them before);
 *    so are the keys pending merges keep for an undo (one merge made
 *    before the rotation, one during it), and once the old version is
 *    dropped, both merges are undone and their records read back;
 *  - a node given only the old key refuses to start (WRONG_KEY); with
 *    only the new one it serves; SIGHUP never drops a version in use. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <rocksdb/c.h>
#include <sodium.h>

#include "disk_scan.h"
#include "harness.h"
#include "store.pb-c.h"

#define SUBJECTS 60
#define WRAP_BYTES (1 + 24 + 32 + 16)
/* Subjects of the merges: mp-a, mp-b (merged before the rotation), rs-a
 * and rs-b (merged during it). */
#define MERGE_SUBJECTS 4
/* enum store_family (node/store.h): a MergeImage's family. */
#define FAMILY_SUBJECT 3
/* Families by their place in disk_families. */
#define CF_DEFAULT 0
#define CF_SUBJECT 3
#define CF_POLICY 8

static char tok_admin[65], tok_svc[65], tok_dpo[65];

/* Master key version @version of key file @path into @out; 0 if there. */
static int key_of(const char *path, unsigned version, uint8_t out[32])
{
    FILE *f = fopen(path, "r");
    char line[256];
    int found = -1;
    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        unsigned v;
        char hex[65];
        if (sscanf(line, "dossier-master-key %u %64s", &v, hex) == 2 &&
            v == version) {
            assert_int_equal(sodium_hex2bin(out, 32, hex, 64, NULL, NULL,
                                            NULL),
                             0);
            found = 0;
        }
    }
    fclose(f);
    return found;
}

/* Opens a box (node/crypt.h: version byte, nonce, ciphertext, tag) of
 * domain @domain bound to (@subject, "", "", @name): 0 if it opens. An
 * implementation apart from the node's, from the documented format. */
static int open_box(const uint8_t key[32], char domain, const uint8_t *subject,
                    size_t slen, const char *name, const uint8_t *box,
                    size_t blen, uint8_t *plain)
{
    uint8_t ad[128];
    size_t n = 0, nlen = strlen(name);
    memcpy(ad, "DSR1", 4);
    n = 4;
    ad[n++] = (uint8_t)domain;
    ad[n++] = (uint8_t)(slen >> 8);
    ad[n++] = (uint8_t)slen;
    memcpy(ad + n, subject, slen);
    n += slen;
    memset(ad + n, 0, 4); /* kind and record: empty */
    n += 4;
    ad[n++] = (uint8_t)(nlen >> 8);
    ad[n++] = (uint8_t)nlen;
    memcpy(ad + n, name, nlen);
    n += nlen;
    if (blen < 41 || box[0] != 1)
        return -1;
    return crypto_aead_xchacha20poly1305_ietf_decrypt(
        plain, NULL, NULL, box + 25, blen - 25, ad, n, box + 1, key);
}

/* A subject key as one node stored it. */
struct wrap {
    uint8_t sp[16];
    uint64_t dek_id;
    unsigned version;
    uint8_t box[WRAP_BYTES];
    uint8_t dek[32]; /* unwrapped by the test */
};

struct disk {
    struct wrap *w;
    size_t n;
    struct wrap *kept; /* subject keys pending merges keep for an undo */
    size_t n_kept;
    unsigned meta_version;
    uint8_t cluster_id[16];
    uint8_t *keyset; /* sealed keyset box */
    size_t keyset_len;
};

static void disk_free(struct disk *d)
{
    free(d->w);
    free(d->kept);
    free(d->keyset);
    memset(d, 0, sizeof(*d));
}

/* Appends subject key @k of @sp to @w (*@n of them). */
static void wrap_add(struct wrap **w, size_t *n, const uint8_t *sp,
                     const Dossier__Store__V1__SubjectKey *k)
{
    assert_int_equal(k->wrapped_dek.len, WRAP_BYTES);
    *w = realloc(*w, (*n + 1) * sizeof(**w));
    assert_non_null(*w);
    memcpy((*w)[*n].sp, sp, 16);
    (*w)[*n].dek_id = k->dek_id;
    (*w)[*n].version = k->kek_version;
    memcpy((*w)[*n].box, k->wrapped_dek.data, WRAP_BYTES);
    (*n)++;
}

/* Reads the subject keys, those pending merges keep, and the meta record
 * of a stopped node's database (read-only, those families only). */
static void disk_read(const char *data, struct disk *d)
{
    rocksdb_column_family_handle_t *cf[DISK_N_FAMILIES];
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it;
    rocksdb_t *db;
    char *err = NULL, *v;
    size_t vlen;
    Dossier__Store__V1__Meta *m;

    memset(d, 0, sizeof(*d));
    db = disk_db_open(data, 1, cf);
    it = rocksdb_create_iterator_cf(db, ro, cf[CF_SUBJECT]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, len;
        const char *key = rocksdb_iter_key(it, &klen);
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &len);
        Dossier__Store__V1__SubjectKey *k;
        if (klen != 16)
            continue; /* membership rows */
        k = dossier__store__v1__subject_key__unpack(NULL, len, val);
        assert_non_null(k);
        wrap_add(&d->w, &d->n, (const uint8_t *)key, k);
        dossier__store__v1__subject_key__free_unpacked(k, NULL);
    }
    rocksdb_iter_destroy(it);
    /* Pending merges ("u" + id): the subject keys their images keep. */
    it = rocksdb_create_iterator_cf(db, ro, cf[CF_POLICY]);
    for (rocksdb_iter_seek(it, "u", 1); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, len;
        const char *key = rocksdb_iter_key(it, &klen);
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &len);
        Dossier__Store__V1__MergeRecord *mr;
        if (key[0] != 'u')
            break;
        mr = dossier__store__v1__merge_record__unpack(NULL, len, val);
        assert_non_null(mr);
        for (size_t i = 0; i < mr->n_images; i++) {
            const Dossier__Store__V1__MergeImage *im = mr->images[i];
            Dossier__Store__V1__SubjectKey *k;
            if (im->family != FAMILY_SUBJECT || im->key.len != 16 ||
                !im->existed)
                continue;
            k = dossier__store__v1__subject_key__unpack(NULL, im->before.len,
                                                        im->before.data);
            assert_non_null(k);
            wrap_add(&d->kept, &d->n_kept, im->key.data, k);
            dossier__store__v1__subject_key__free_unpacked(k, NULL);
        }
        dossier__store__v1__merge_record__free_unpacked(mr, NULL);
    }
    rocksdb_iter_destroy(it);
    v = rocksdb_get_cf(db, ro, cf[CF_DEFAULT], "meta", 4, &vlen, &err);
    assert_null(err);
    assert_non_null(v);
    m = dossier__store__v1__meta__unpack(NULL, vlen, (const uint8_t *)v);
    assert_non_null(m);
    assert_int_equal(m->cluster_id.len, 16);
    memcpy(d->cluster_id, m->cluster_id.data, 16);
    d->meta_version = m->kek_version;
    d->keyset_len = m->sealed_keyset.len;
    d->keyset = malloc(d->keyset_len);
    assert_non_null(d->keyset);
    memcpy(d->keyset, m->sealed_keyset.data, d->keyset_len);
    dossier__store__v1__meta__free_unpacked(m, NULL);
    rocksdb_free(v);
    rocksdb_readoptions_destroy(ro);
    disk_db_close(db, cf);
}

/* 1 if the keyset of @d opens under @key as version @version. */
static int keyset_opens(const struct disk *d, const uint8_t key[32],
                        unsigned version)
{
    char name[16];
    uint8_t *plain = malloc(d->keyset_len);
    int ok;
    snprintf(name, sizeof(name), "v%u", version);
    ok = open_box(key, 'X', d->cluster_id, 16, name, d->keyset,
                  d->keyset_len, plain) == 0;
    free(plain);
    return ok;
}

/* 1 if wrap @w opens under @key as version @version (DEK into w->dek). */
static int wrap_opens(struct wrap *w, const uint8_t key[32], unsigned version)
{
    char name[16];
    snprintf(name, sizeof(name), "v%u", version);
    return open_box(key, 'K', w->sp, 16, name, w->box, WRAP_BYTES,
                    w->dek) == 0;
}

static void put_contact(struct dossier_client *c, const char *id,
                        const char *subject)
{
    struct dossier_record *r = dossier_record_new("contact", id, subject);
    struct dossier_status st;
    char email[96];
    snprintf(email, sizeof(email), "%s@example.org", id);
    dossier_record_set_string(r, "first_name", id);
    dossier_record_set_string(r, "email", email);
    if (dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) != 0)
        fail_msg("put %s: %s", id, st.message);
    dossier_record_free(r);
}

/* Every contact c-0..c-(n-1) and d-0..d-(m-1) reads back through @target
 * with its own first name. */
static void read_all(const char *target, int n, int m)
{
    struct dossier_client *c =
        harness_client_as(target, tok_svc, "operations");
    for (int i = 0; i < n + m; i++) {
        struct dossier_record *r = NULL;
        struct dossier_status st;
        const struct dossier_value *v;
        char id[32];
        snprintf(id, sizeof(id), i < n ? "c-%d" : "d-%d", i < n ? i : i - n);
        if (dossier_get(c, NULL, "contact", id, &r, &st) != 0)
            fail_msg("get %s through %s: %s", id, target, st.message);
        v = dossier_record_field(r, "first_name");
        assert_non_null(v);
        assert_string_equal(v->u.s, id);
        dossier_record_free(r);
    }
    dossier_client_close(c);
}

/* Merges contact @dup into @surv; the merge's id into @id. */
static void merge_two(struct dossier_client *c, const char *surv,
                      const char *dup, char id[24])
{
    const char *dups[] = {dup};
    struct dossier_merge_request req = {.kind = "contact",
                                        .survivor_id = surv,
                                        .n_duplicates = 1,
                                        .duplicate_ids = dups};
    struct dossier_merge_info mi;
    struct dossier_status st;
    if (dossier_merge(c, NULL, &req, &mi, &st) != 0)
        fail_msg("merge %s into %s: %s", dup, surv, st.message);
    snprintf(id, 24, "%s", mi.id);
    dossier_merge_info_release(&mi);
}

/* Record @kind @id reads back through @c with first name (or type) @v. */
static void reads_back(struct dossier_client *c, const char *kind,
                       const char *id, const char *field, const char *v)
{
    struct dossier_record *r = NULL;
    struct dossier_status st;
    const struct dossier_value *f;
    if (dossier_get(c, NULL, kind, id, &r, &st) != 0)
        fail_msg("get %s %s: %s", kind, id, st.message);
    f = dossier_record_field(r, field);
    assert_non_null(f);
    assert_string_equal(f->u.s, v);
    dossier_record_free(r);
}

static void keys_status(const char *target, struct dossier_keys_status *out)
{
    struct dossier_client *c = harness_client_as(target, tok_admin, NULL);
    struct dossier_status st;
    if (dossier_keys_status(c, NULL, out, &st) != 0)
        fail_msg("keys status of %s: %s", target, st.message);
    dossier_client_close(c);
}

/* Waits until node @n has loaded @versions key versions (after SIGHUP). */
static void wait_loaded(const struct node_proc *n, size_t versions)
{
    struct dossier_keys_status ks;
    for (int tries = 0; tries < 100; tries++) {
        keys_status(n->addr, &ks);
        if (ks.n_loaded == versions)
            return;
        usleep(50000);
    }
    fail_msg("node %s did not load %zu key versions", n->addr, versions);
}

static int has_entry(struct dossier_client *dpo, const char *principal,
                     const char *action)
{
    struct dossier_audit_entry *e;
    struct dossier_status st;
    size_t n;
    int found = 0;
    for (int tries = 0; tries < 50 && !found; tries++) {
        if (dossier_audit_read(dpo, NULL, 1, 10000, &e, &n, &st) != 0)
            fail_msg("audit read: %s", st.message);
        for (size_t i = 0; i < n; i++)
            found |= strcmp(e[i].action, action) == 0 &&
                     strcmp(e[i].principal, principal) == 0 &&
                     e[i].outcome == 0;
        free(e);
        if (!found)
            usleep(100000);
    }
    return found;
}

/* The key file of node @i with only the lines of version @keep (0: all)
 * kept, written in place (mode 0600). */
static void keep_version(const struct node_proc *n, unsigned keep,
                         const char *path)
{
    assert_int_equal(harness_sh(NULL, 0,
                                "umask 077; grep -v '^dossier-master-key' %s "
                                "> %s.tmp; grep '^dossier-master-key %u ' %s "
                                ">> %s.tmp; mv %s.tmp %s",
                                n->key, path, keep, n->key, path, path, path),
                     0);
}

static void test_rotation(void **state)
{
    struct cluster_proc c;
    struct dossier_client *adm, *svc, *dpo;
    struct dossier_keys_status ks;
    struct dossier_status st;
    struct disk before, after;
    uint8_t v1[32], v2[32];
    struct needles old_wraps = {0};
    char auth[300], only_old[400], err[4096], line[200];
    char merge_before[24], merge_during[24];
    const char *extra[] = {"--auth-file", auth, "--key-rotation-batch", "4",
                           "--key-rotation-pause-ms", "150",
                           "--metrics-listen", "127.0.0.1:0", NULL};
    int leader, f, killed;
    size_t n_old;
    (void)state;

    harness_new_token(tok_admin);
    harness_new_token(tok_svc);
    harness_new_token(tok_dpo);
    {
        const struct harness_principal p[] = {
            {"ops", "admin", tok_admin, NULL},
            {"crm", "service", tok_svc, "*"},
            {"dpo", "compliance", tok_dpo, NULL}};
        snprintf(auth, sizeof(auth), "/tmp/dossier-keys-auth-%d", getpid());
        harness_write_auth_file(auth, p, 3);
    }
    harness_token = tok_admin;
    cluster_init(&c, 3, extra);
    assert_int_equal(cluster_start_all(&c), 0);
    assert_true(cluster_leader(&c) >= 0);
    adm = harness_client_as(c.targets, tok_admin, NULL);
    svc = harness_client_as(c.targets, tok_svc, "operations");
    dpo = harness_client_as(c.targets, tok_dpo, NULL);
    for (int i = 0; i < SUBJECTS; i++) {
        char id[32], subject[32];
        snprintf(id, sizeof(id), "c-%d", i);
        snprintf(subject, sizeof(subject), "subject-%d", i);
        put_contact(svc, id, subject);
    }
    /* A merge pending undo keeps mp-b's key; rs-b is merged during the
     * rotation. */
    put_contact(svc, "m-surv", "mp-a");
    put_contact(svc, "m-dup", "mp-b");
    {
        struct dossier_record *r = dossier_record_new("activity", "m-act",
                                                      "mp-b");
        dossier_record_set_string(r, "type", "call");
        if (dossier_put(svc, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) != 0)
            fail_msg("put m-act: %s", st.message);
        dossier_record_free(r);
    }
    put_contact(svc, "r-surv", "rs-a");
    put_contact(svc, "r-dup", "rs-b");
    merge_two(svc, "m-surv", "m-dup", merge_before);
    assert_int_equal(cluster_wait_converged(&c), 0);
    assert_int_equal(key_of(c.nodes[0].key, 1, v1), 0);

    /* The wraps as they are before, from a stopped follower: each opens
     * under version 1, and the scan finds them in its files. */
    f = (cluster_leader(&c) + 1) % 3;
    assert_int_equal(node_stop(&c.nodes[f]), 0);
    disk_read(c.nodes[f].data, &before);
    assert_int_equal(before.n, SUBJECTS + MERGE_SUBJECTS - 1);
    assert_int_equal(before.n_kept, 1); /* mp-b's */
    assert_int_equal(before.meta_version, 1);
    assert_true(keyset_opens(&before, v1, 1));
    n_old = before.n + before.n_kept;
    for (size_t i = 0; i < n_old; i++) {
        struct wrap *w = i < before.n ? &before.w[i]
                                      : &before.kept[i - before.n];
        assert_int_equal(w->version, 1);
        assert_true(wrap_opens(w, v1, 1));
        needle_add(&old_wraps, w->box, WRAP_BYTES);
    }
    assert_int_equal(disk_count(c.nodes[f].dir, &old_wraps), n_old);
    needle_add(&old_wraps, before.keyset, before.keyset_len);
    assert_int_equal(old_wraps.n, n_old + 1);
    assert_int_equal(node_start(&c.nodes[f], NULL), 0);

    /* Nothing to rotate to yet. */
    assert_int_not_equal(dossier_keys_rotate(adm, NULL, 0, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_FAILED_PRECONDITION);
    assert_non_null(strstr(st.message, "keygen --add-version"));

    /* Version 2 on nodes 1 and 2 only: refused, naming node 3. */
    assert_int_equal(harness_sh(NULL, 0, "%s keygen --add-version %s "
                                         ">/dev/null 2>&1",
                                DOSSIER_CLI_PATH, c.nodes[0].key),
                     0);
    assert_int_equal(key_of(c.nodes[0].key, 2, v2), 0);
    assert_int_equal(harness_sh(NULL, 0, "cp %s %s", c.nodes[0].key,
                                c.nodes[1].key),
                     0);
    for (int i = 0; i < 2; i++) {
        kill(c.nodes[i].pid, SIGHUP);
        wait_loaded(&c.nodes[i], 2);
    }
    assert_int_not_equal(dossier_keys_rotate(adm, NULL, 2, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_FAILED_PRECONDITION);
    print_message("refused: %s\n", st.message);
    assert_non_null(strstr(st.message, "node 3"));
    assert_null(strstr(st.message, "node 1 "));
    keys_status(c.nodes[0].addr, &ks);
    assert_int_equal(ks.active_version, 1);
    assert_false(ks.has_rotation);

    /* Every node holds it: the rotation begins. */
    assert_int_equal(harness_sh(NULL, 0, "cp %s %s", c.nodes[0].key,
                                c.nodes[2].key),
                     0);
    kill(c.nodes[2].pid, SIGHUP);
    wait_loaded(&c.nodes[2], 2);
    if (dossier_keys_rotate(adm, NULL, 0, &ks, &st) != 0)
        fail_msg("rotate: %s", st.message);
    assert_true(ks.has_rotation);
    assert_int_equal(ks.from_version, 1);
    assert_int_equal(ks.to_version, 2);
    /* Every wrapped key: the subjects' and the one the merge keeps. */
    assert_int_equal(ks.subjects, SUBJECTS + MERGE_SUBJECTS);
    assert_string_equal(ks.started_by, "ops");

    /* Subjects made during the rotation, and a merge made during it
     * (rs-b's key is kept as it is then: rewrapped or not yet). */
    for (int i = 0; i < 5; i++) {
        char id[32], subject[32];
        snprintf(id, sizeof(id), "d-%d", i);
        snprintf(subject, sizeof(subject), "during-%d", i);
        put_contact(svc, id, subject);
    }
    merge_two(svc, "r-surv", "r-dup", merge_during);

    /* The leader dies half way; the next one finishes. */
    killed = -1;
    for (int tries = 0; tries < 200; tries++) {
        keys_status(c.targets, &ks);
        if (ks.rotation_running && ks.rewrapped > 0) {
            killed = cluster_leader(&c);
            break;
        }
        usleep(20000);
    }
    assert_true(killed >= 0);
    print_message("killing leader node %d after %llu of %llu keys\n",
                  killed + 1, (unsigned long long)ks.rewrapped,
                  (unsigned long long)ks.subjects);
    assert_true(ks.rewrapped < SUBJECTS + MERGE_SUBJECTS);
    node_kill9(&c.nodes[killed]);
    leader = cluster_leader(&c);
    assert_true(leader >= 0 && leader != killed);
    /* The operator may run it again: it resumes, not restarts. */
    for (int tries = 0; tries < 50; tries++) {
        if (dossier_keys_rotate(adm, NULL, 0, &ks, &st) == 0)
            break;
        assert_int_equal(st.code, DOSSIER_UNAVAILABLE);
        usleep(100000);
    }
    assert_int_equal(ks.to_version, 2);
    assert_int_equal(node_start(&c.nodes[killed], NULL), 0);
    for (int tries = 0; tries < 600; tries++) {
        keys_status(c.targets, &ks);
        if (!ks.rotation_running)
            break;
        usleep(50000);
    }
    assert_false(ks.rotation_running);
    assert_int_equal(ks.active_version, 2);
    assert_true(ks.finished_ms >= ks.started_ms);
    /* Each key rewrapped once, whatever a leader change repeated, live or
     * kept by a merge. */
    assert_int_equal(ks.rewrapped, SUBJECTS + MERGE_SUBJECTS);
    /* Once rotated, nothing is left to rotate to. */
    assert_int_not_equal(dossier_keys_rotate(adm, NULL, 0, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_FAILED_PRECONDITION);

    /* Every record reads back on every node, and it is all audited. */
    assert_int_equal(cluster_wait_converged(&c), 0);
    for (int i = 0; i < 3; i++) {
        keys_status(c.nodes[i].addr, &ks);
        assert_int_equal(ks.active_version, 2);
        read_all(c.nodes[i].addr, SUBJECTS, 5);
    }
    /* The metrics say the same. */
    {
        char merr[256], *text;
        double v;
        text = harness_scrape(harness_metrics_port(&c.nodes[0]), merr,
                              sizeof(merr));
        if (!text)
            fail_msg("scrape: %s", merr);
        assert_int_equal(harness_metric(text, "dossier_master_key_version",
                                        &v),
                         0);
        assert_true(v == 2);
        assert_int_equal(harness_metric(text, "dossier_key_rotation_running",
                                        &v),
                         0);
        assert_true(v == 0);
        assert_int_equal(harness_metric(text,
                                        "dossier_key_rotation_rewrapped", &v),
                         0);
        assert_true(v == SUBJECTS + MERGE_SUBJECTS);
        free(text);
    }
    assert_true(has_entry(dpo, "ops", "keys.rotate"));
    assert_true(has_entry(dpo, "", "keys.rewrap"));
    assert_true(has_entry(dpo, "", "keys.rotate_finish"));

    /* On every disk: the same data keys, wrapped under version 2 only,
     * and not one byte of an old wrap anywhere. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(node_stop(&c.nodes[i]), 0);
    for (int i = 0; i < 3; i++) {
        size_t left;
        disk_read(c.nodes[i].data, &after);
        assert_int_equal(after.n, SUBJECTS + MERGE_SUBJECTS - 2 + 5);
        assert_int_equal(after.n_kept, 2); /* mp-b's and rs-b's */
        assert_int_equal(after.meta_version, 2);
        assert_true(keyset_opens(&after, v2, 2));
        assert_false(keyset_opens(&after, v1, 1));
        assert_false(keyset_opens(&after, v1, 2));
        for (size_t k = 0; k < after.n + after.n_kept; k++) {
            struct wrap *w = k < after.n ? &after.w[k]
                                         : &after.kept[k - after.n];
            assert_int_equal(w->version, 2);
            assert_false(wrap_opens(w, v1, 1));
            assert_false(wrap_opens(w, v1, 2));
            assert_true(wrap_opens(w, v2, 2));
            for (size_t b = 0; b < n_old; b++) {
                struct wrap *o = b < before.n ? &before.w[b]
                                              : &before.kept[b - before.n];
                if (memcmp(o->sp, w->sp, 16) == 0) {
                    assert_int_equal(o->dek_id, w->dek_id);
                    assert_memory_equal(o->dek, w->dek, 32);
                }
            }
        }
        left = disk_count(c.nodes[i].dir, &old_wraps);
        print_message("node %d: %zu subject keys and %zu kept by merges "
                      "under version 2; %zu of %zu old wraps left on disk\n",
                      i + 1, after.n, after.n_kept, left, n_old + 1);
        assert_int_equal(left, 0);
        disk_free(&after);
    }

    /* Only the old key: refused. Only the new one: serves. */
    snprintf(only_old, sizeof(only_old), "%s/only-v1.key", c.nodes[0].dir);
    keep_version(&c.nodes[0], 1, only_old);
    {
        const char *args[] = {"--data-dir", c.nodes[0].data, "--key-file",
                              only_old, "--listen", c.nodes[0].listen,
                              "--node-id", "1", "--peers", c.peers,
                              "--auth-file", auth, NULL};
        assert_int_equal(node_run_to_exit(&c.nodes[0], args, err,
                                          sizeof(err)),
                         1);
    }
    print_message("only version 1: %s", err);
    assert_non_null(strstr(err, "WRONG_KEY"));
    assert_non_null(strstr(err, "version 2"));
    for (int i = 0; i < 3; i++)
        keep_version(&c.nodes[i], 2, c.nodes[i].key);
    assert_int_equal(cluster_start_all(&c), 0);
    assert_true(cluster_leader(&c) >= 0);
    read_all(c.nodes[0].addr, SUBJECTS, 5);
    keys_status(c.nodes[0].addr, &ks);
    assert_int_equal(ks.n_loaded, 1);
    assert_int_equal(ks.loaded[0].version, 2);
    /* Version 1 is gone from every node: both merges are undone, and the
     * keys they kept, rewrapped, open the restored records. */
    {
        struct dossier_client *s2 =
            harness_client_as(c.targets, tok_svc, "operations");
        if (dossier_merge_undo(s2, NULL, merge_before, NULL, NULL, &st) != 0)
            fail_msg("undo %s: %s", merge_before, st.message);
        if (dossier_merge_undo(s2, NULL, merge_during, NULL, NULL, &st) != 0)
            fail_msg("undo %s: %s", merge_during, st.message);
        reads_back(s2, "contact", "m-dup", "first_name", "m-dup");
        reads_back(s2, "activity", "m-act", "type", "call");
        reads_back(s2, "contact", "r-dup", "first_name", "r-dup");
        reads_back(s2, "contact", "m-surv", "first_name", "m-surv");
        dossier_client_close(s2);
    }

    /* A key file without the version in use is not taken on SIGHUP. */
    assert_int_equal(harness_sh(NULL, 0, "cp %s %s", only_old,
                                c.nodes[0].key),
                     0);
    kill(c.nodes[0].pid, SIGHUP);
    for (int tries = 0;
         tries < 100 && harness_log_count(&c.nodes[0], "master keys not "
                                                       "reloaded") == 0;
         tries++)
        usleep(50000);
    assert_true(harness_log_count(&c.nodes[0], "master keys not reloaded") >
                0);
    read_all(c.nodes[0].addr, SUBJECTS, 5);
    keys_status(c.nodes[0].addr, &ks);
    assert_int_equal(ks.n_loaded, 1);
    assert_int_equal(ks.loaded[0].version, 2);
    snprintf(line, sizeof(line), "%s", ks.loaded[0].key_id);
    assert_string_equal(line, ks.active_key_id);

    free(old_wraps.b);
    disk_free(&before);
    dossier_client_close(adm);
    dossier_client_close(svc);
    dossier_client_close(dpo);
    cluster_destroy(&c);
    unlink(auth);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotation),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
