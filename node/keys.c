/* Master key rotation on the leader: the checks before a rotation and the
 * thread that rewraps subject keys in batches (the design is in keys.h). */
#include "keys.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "api.h"
#include "cluster.h"
#include "crypt.h"
#include "errors.h"
#include "log.h"
#include "outcome.h"
#include "records.h"
#include "server.h"
#include "store.h"

/* How long a member gets to say which versions it holds. */
#define KEY_STATUS_TIMEOUT_MS 3000
/* How long a proposed step may take to apply before the thread looks
 * again (a leader change, a slow disk). */
#define STEP_TIMEOUT_MS 30000
/* Subject keys looked at per step, at most, as a multiple of the batch:
 * a step whose keys are mostly rewrapped already still moves on. */
#define SCAN_FACTOR 8
/* An idle thread looks for a rotation to drive this often. */
#define IDLE_MS 500

struct rotate_req {
    struct call *c;
    uint32_t version;
    struct rotate_req *next;
};

struct keys {
    struct node *n;
    size_t batch;
    unsigned pause_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;
    struct rotate_req *reqs;
    uint32_t warned_missing; /* target version not held here: logged */
};

/* ------------------------------------------------------------------ */
/* Proposing a step and waiting for its outcome */

/* Proposes @cmd (for call @c, which then audits through the command, or
 * for the node when NULL) and waits until it is applied: the outcome into
 * @res. Returns res->status.code. */
static int propose(struct keys *k, struct call *c, const Command *cmd,
                   struct store_result *res)
{
    struct outcome *o = outcome_new();
    size_t len = dossier__store__v1__command__get_packed_size(cmd);
    uint8_t *buf = malloc(len ? len : 1);
    int rc;

    memset(res, 0, sizeof(*res));
    if (!o || !buf) {
        if (o)
            outcome_abandon(o);
        free(buf);
        return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    }
    dossier__store__v1__command__pack(cmd, buf);
    rc = c ? call_submit(c, buf, len, outcome_applied, o)
           : cluster_submit(k->n->cluster, buf, len, outcome_applied, o);
    if (rc) {
        outcome_abandon(o);
        return err_set(&res->status, rc, "the node is stopping");
    }
    /* A node stopping is not held up by a step in flight. */
    if (!outcome_wait(o, STEP_TIMEOUT_MS, &k->stop, res))
        err_set(&res->status, DOSSIER_UNAVAILABLE,
                "the step was not applied in time (or the node is "
                "stopping); the rotation goes on from the replicated state");
    return res->status.code;
}

/* ------------------------------------------------------------------ */
/* Starting a rotation */

/* Appends "; " and the printf-style text to @msg (@cap bytes). */
static void msg_add(char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void msg_add(char *msg, size_t cap, const char *fmt, ...)
{
    size_t n = strlen(msg);
    va_list ap;
    if (n && n + 2 < cap) {
        memcpy(msg + n, "; ", 3);
        n += 2;
    }
    if (n >= cap)
        return;
    va_start(ap, fmt);
    vsnprintf(msg + n, cap - n, fmt, ap);
    va_end(ap);
}

/* Asks every member but this node whether it holds @version with check
 * value @check; what is wrong goes into @problems. */
static void check_members(struct keys *k, uint32_t version,
                          const uint8_t check[CRYPT_KEK_CHECK_BYTES],
                          char *problems, size_t cap)
{
    struct cluster_status cs;
    char want[17], have[17];

    sodium_bin2hex(want, sizeof(want), check, 8);
    cluster_status(k->n->cluster, &cs);
    for (size_t i = 0; i < cs.n_members; i++) {
        const struct cluster_member *m = &cs.members[i];
        Dossier__Peer__V1__KeyStatusResponse *r = NULL;
        struct dossier_status st;
        const Dossier__Peer__V1__KeyVersionCheck *found = NULL;

        if (m->id == k->n->id)
            continue;
        if (cluster_key_status(k->n->cluster, m->id, KEY_STATUS_TIMEOUT_MS,
                               &r, &st) != 0) {
            msg_add(problems, cap, "node %" PRIu64 " (%s) did not answer: "
                    "%.120s", m->id, m->address[0] ? m->address : "no "
                    "address", st.message);
            continue;
        }
        for (size_t v = 0; v < r->n_versions; v++)
            if (r->versions[v]->version == version)
                found = r->versions[v];
        if (!found) {
            msg_add(problems, cap, "node %" PRIu64 " (%s) does not hold it",
                    m->id, m->address);
        } else if (found->check.len != CRYPT_KEK_CHECK_BYTES ||
                   sodium_memcmp(found->check.data, check,
                                 CRYPT_KEK_CHECK_BYTES) != 0) {
            snprintf(have, sizeof(have), "?");
            if (found->check.len >= 8)
                sodium_bin2hex(have, sizeof(have), found->check.data, 8);
            msg_add(problems, cap, "node %" PRIu64 " (%s) holds another key "
                    "as version %u (key id %s, the leader's is %s)",
                    m->id, m->address, version, have, want);
        }
        dossier__peer__v1__key_status_response__free_unpacked(r, NULL);
    }
}

static int count_subject(void *arg, const uint8_t *key, size_t klen,
                         const uint8_t *val, size_t vlen)
{
    (void)key;
    (void)val;
    (void)vlen;
    if (klen == STORE_SP_BYTES)
        (*(uint64_t *)arg)++;
    return 0;
}

/* Calls @cb for each subject key pending merges keep for an undo,
 * oldest merge first, until it returns non-zero (returned). */
static int kept_keys_each(struct store *s,
                          int (*cb)(void *arg, const char *merge_id,
                                    const Dossier__Store__V1__MergeSummary__KeptKey *k),
                          void *arg, struct dossier_status *st)
{
    uint64_t after = 0;
    int more = 1, rc = 0;

    while (more && rc == 0) {
        Dossier__Store__V1__MergeSummary **m;
        size_t n;
        if ((rc = store_merge_list(s, after, 256, &m, &n, &more, st)))
            return rc;
        for (size_t i = 0; rc == 0 && i < n; i++)
            for (size_t j = 0; rc == 0 && j < m[i]->n_kept_keys; j++)
                rc = cb(arg, m[i]->id, m[i]->kept_keys[j]);
        if (n)
            after = m[n - 1]->revision;
        store_merges_free(m, n);
    }
    return rc;
}

static int count_kept(void *arg, const char *merge_id,
                      const Dossier__Store__V1__MergeSummary__KeptKey *k)
{
    (void)merge_id;
    (void)k;
    (*(uint64_t *)arg)++;
    return 0;
}

static void start_rotation(struct keys *k, struct call *c, uint32_t version)
{
    struct node *n = k->n;
    Dossier__Store__V1__Meta *meta = NULL;
    Dossier__Store__V1__KeyRotation *cur = NULL;
    Dossier__Store__V1__KeyRotateOp op = DOSSIER__STORE__V1__KEY_ROTATE_OP__INIT;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    struct dossier_status st;
    struct store_result res;
    uint8_t check[CRYPT_KEK_CHECK_BYTES];
    uint32_t versions[KEYFILE_MAX_VERSIONS];
    char problems[1500] = "", id[17];
    uint64_t subjects = 0;
    size_t nv;
    int rc;

    if (!cluster_is_leader(n->cluster))
        return call_fail(c, DOSSIER_UNAVAILABLE,
                         "this node is no longer the leader; retry");
    if (store_meta_get(n->store, &meta, &st) != 0)
        return call_fail(c, DOSSIER_UNAVAILABLE,
                         "the cluster has no keyset yet");
    rc = store_key_rotation_get(n->store, &cur, &st);
    if (rc && rc != DOSSIER_NOT_FOUND) {
        call_fail_status(c, &st);
        goto out;
    }
    if (cur && !cur->done) {
        if (version && version != cur->to_version) {
            call_fail(c, DOSSIER_FAILED_PRECONDITION,
                      "a rotation to master key version %u is under way; "
                      "let it finish first (dossier keys status)",
                      cur->to_version);
            goto out;
        }
        /* Running already: the thread drives it; say where it is. */
        keys_reply_status(c);
        goto out;
    }
    nv = crypt_kek_versions(n->crypt, versions, NULL, KEYFILE_MAX_VERSIONS);
    if (version == 0)
        version = nv ? versions[nv - 1] : 0;
    if (version == meta->kek_version) {
        crypt_kek_id(n->crypt, version, id);
        call_fail(c, DOSSIER_FAILED_PRECONDITION,
                  "the cluster already uses master key version %u (key id "
                  "%s): add a new version to every node's key file (dossier "
                  "keygen --add-version FILE), send each node SIGHUP, then "
                  "rotate",
                  version, id);
        goto out;
    }
    if (version < meta->kek_version) {
        call_fail(c, DOSSIER_FAILED_PRECONDITION,
                  "master key version %u is older than the version in use "
                  "(%u): rotate to a newer version",
                  version, meta->kek_version);
        goto out;
    }
    if (crypt_kek_check_of(n->crypt, version, check) != 0) {
        call_fail(c, DOSSIER_FAILED_PRECONDITION,
                  "the leader (node %llu) does not hold master key version "
                  "%u: add it to its key file and send it SIGHUP",
                  (unsigned long long)n->id, version);
        goto out;
    }
    check_members(k, version, check, problems, sizeof(problems));
    if (problems[0]) {
        call_fail(c, DOSSIER_FAILED_PRECONDITION,
                  "not every member holds master key version %u, so "
                  "nothing was rotated: %s. Add the same key line to those "
                  "nodes' key files, send them SIGHUP, and rotate again",
                  version, problems);
        goto out;
    }
    /* Every wrapped subject key: the subjects', and those pending merges
     * keep for an undo. */
    if (store_scan(n->store, STORE_SUBJECT, NULL, 0, NULL, 0, count_subject,
                   &subjects, &st) != 0 ||
        kept_keys_each(n->store, count_kept, &subjects, &st) != 0) {
        call_fail_status(c, &st);
        goto out;
    }
    call_command_init(c, &cmd);
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_KEY_ROTATE;
    cmd.key_rotate = &op;
    op.step = DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__BEGIN;
    op.from_version = meta->kek_version;
    op.to_version = version;
    op.to_check = (ProtobufCBinaryData){sizeof(check), check};
    op.subjects = subjects;
    if (propose(k, c, &cmd, &res) != 0) {
        call_fail_status(c, &res.status);
        goto out;
    }
    log_printf(LOG_INFO, "key rotation from master key version %u to %u "
               "begun by %s: %" PRIu64 " subject keys to rewrap",
               op.from_version, version,
               call_principal(c)[0] ? call_principal(c) : "(anonymous)",
               subjects);
    keys_reply_status(c);
out:
    if (cur)
        dossier__store__v1__key_rotation__free_unpacked(cur, NULL);
    dossier__store__v1__meta__free_unpacked(meta, NULL);
}

/* ------------------------------------------------------------------ */
/* Driving a rotation under way */

struct batch {
    struct keys *k;
    uint32_t to;
    size_t max_items, max_scanned;
    size_t scanned;
    Dossier__Store__V1__KeyRotateOp__Rewrap *items;
    Dossier__Store__V1__KeyRotateOp__Rewrap **ptrs;
    size_t n;
    uint8_t last[STORE_SP_BYTES];
    int has_last, stopped;
    int err;
    struct dossier_status st;
};

static int collect(void *arg, const uint8_t *key, size_t klen,
                   const uint8_t *val, size_t vlen)
{
    struct batch *b = arg;
    Dossier__Store__V1__SubjectKey *sk;
    Dossier__Store__V1__KeyRotateOp__Rewrap *it;
    uint8_t *wrapped;
    size_t wlen;

    if (klen != STORE_SP_BYTES)
        return 0; /* a membership row */
    if (b->n == b->max_items || b->scanned == b->max_scanned) {
        b->stopped = 1;
        return 1;
    }
    b->scanned++;
    memcpy(b->last, key, STORE_SP_BYTES);
    b->has_last = 1;
    sk = dossier__store__v1__subject_key__unpack(NULL, vlen, val);
    if (!sk) {
        b->err = err_set(&b->st, DOSSIER_CORRUPT, "a subject key is corrupt");
        return b->err;
    }
    if (sk->kek_version == b->to) {
        dossier__store__v1__subject_key__free_unpacked(sk, NULL);
        return 0;
    }
    if (crypt_subject_key_rewrap(b->k->n->crypt, key, sk, b->to, &wrapped,
                                 &wlen, &b->st) != 0) {
        b->err = b->st.code;
        dossier__store__v1__subject_key__free_unpacked(sk, NULL);
        return b->err;
    }
    it = &b->items[b->n];
    dossier__store__v1__key_rotate_op__rewrap__init(it);
    it->subject.data = malloc(STORE_SP_BYTES);
    if (!it->subject.data) {
        free(wrapped);
        dossier__store__v1__subject_key__free_unpacked(sk, NULL);
        b->err = err_set(&b->st, DOSSIER_NOMEM, "out of memory");
        return b->err;
    }
    memcpy(it->subject.data, key, STORE_SP_BYTES);
    it->subject.len = STORE_SP_BYTES;
    it->dek_id = sk->dek_id;
    it->wrapped_dek = (ProtobufCBinaryData){wlen, wrapped};
    b->ptrs[b->n++] = it;
    dossier__store__v1__subject_key__free_unpacked(sk, NULL);
    return 0;
}

/* A key pending merge @merge_id keeps for an undo, rewrapped into @arg
 * (a struct batch) unless it is under the target already. Returns 1 when
 * the batch is full, a negative number (b->err set) on failure. */
static int collect_kept(void *arg, const char *merge_id,
                        const Dossier__Store__V1__MergeSummary__KeptKey *k)
{
    struct batch *b = arg;
    Dossier__Store__V1__SubjectKey *sk;
    Dossier__Store__V1__KeyRotateOp__Rewrap *it;
    uint8_t *wrapped;
    size_t wlen;

    if (k->kek_version == b->to || k->subject.len != STORE_SP_BYTES)
        return 0;
    if (b->n == b->max_items)
        return 1;
    if (store_merge_kept_key(b->k->n->store, merge_id, k->subject.data, &sk,
                             &b->st) != 0) {
        b->err = b->st.code;
        return -1;
    }
    if (crypt_subject_key_rewrap(b->k->n->crypt, k->subject.data, sk, b->to,
                                 &wrapped, &wlen, &b->st) != 0) {
        b->err = b->st.code;
        dossier__store__v1__subject_key__free_unpacked(sk, NULL);
        return -1;
    }
    it = &b->items[b->n];
    dossier__store__v1__key_rotate_op__rewrap__init(it);
    it->subject.data = malloc(STORE_SP_BYTES);
    it->merge_id = strdup(merge_id);
    it->dek_id = sk->dek_id;
    it->wrapped_dek = (ProtobufCBinaryData){wlen, wrapped};
    dossier__store__v1__subject_key__free_unpacked(sk, NULL);
    b->ptrs[b->n++] = it; /* released by batch_release, even half made */
    if (!it->subject.data || !it->merge_id) {
        b->err = err_set(&b->st, DOSSIER_NOMEM, "out of memory");
        return -1;
    }
    memcpy(it->subject.data, k->subject.data, STORE_SP_BYTES);
    it->subject.len = STORE_SP_BYTES;
    return 0;
}

static void batch_release(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->items[i].subject.data);
        free(b->items[i].wrapped_dek.data);
        if (b->items[i].merge_id != protobuf_c_empty_string)
            free(b->items[i].merge_id);
    }
    free(b->items);
    free(b->ptrs);
}

/* Proposes a REWRAP of @b's items, moving the cursor to @b->last when
 * @move. Returns 0 when it applied. */
static int propose_rewrap(struct keys *k, const struct batch *b,
                          const Dossier__Store__V1__KeyRotation *cur, int move)
{
    Dossier__Store__V1__KeyRotateOp op = DOSSIER__STORE__V1__KEY_ROTATE_OP__INIT;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    struct store_result res;

    cmd.time_ms = records_now_ms();
    cmd.principal = (char *)"";
    cmd.purpose = (char *)"";
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_KEY_ROTATE;
    cmd.key_rotate = &op;
    op.step = DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__REWRAP;
    op.from_version = cur->from_version;
    op.to_version = cur->to_version;
    op.n_items = b->n;
    op.items = b->ptrs;
    if (move && b->has_last)
        op.cursor = (ProtobufCBinaryData){STORE_SP_BYTES, (uint8_t *)b->last};
    if (propose(k, NULL, &cmd, &res) != 0) {
        log_printf(LOG_WARN, "key rotation: a batch of %zu keys was not "
                   "applied (%s); trying again", b->n, res.status.message);
        return -1;
    }
    log_printf(LOG_DEBUG, "key rotation: %" PRIu64 " of %zu keys rewrapped",
               res.deleted, b->n);
    return 0;
}

static int propose_finish(struct keys *k,
                          const Dossier__Store__V1__KeyRotation *cur)
{
    Dossier__Store__V1__KeyRotateOp op = DOSSIER__STORE__V1__KEY_ROTATE_OP__INIT;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__Meta meta = DOSSIER__STORE__V1__META__INIT;
    struct store_result res;
    struct dossier_status st;
    int rc;

    if (crypt_keyset_reseal(k->n->crypt, cur->to_version, &meta, &st) != 0) {
        log_printf(LOG_ERROR, "key rotation: cannot reseal the keyset: %s",
                   st.message);
        return -1;
    }
    cmd.time_ms = records_now_ms();
    cmd.principal = (char *)"";
    cmd.purpose = (char *)"";
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_KEY_ROTATE;
    cmd.key_rotate = &op;
    op.step = DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__FINISH;
    op.from_version = cur->from_version;
    op.to_version = cur->to_version;
    meta.format = STORE_FORMAT;
    op.meta = &meta;
    rc = propose(k, NULL, &cmd, &res);
    free(meta.cluster_id.data);
    free(meta.kek_check.data);
    free(meta.sealed_keyset.data);
    if (rc) {
        log_printf(LOG_WARN, "key rotation: the finish was not applied (%s)",
                   res.status.message);
        return -1;
    }
    return 0;
}

/* Waits @ms unless stopped; returns 1 when asked to stop. */
static int nap(struct keys *k, unsigned ms)
{
    struct timespec until;
    int stop;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&k->lock);
    while (!k->stop && !k->reqs &&
           pthread_cond_timedwait(&k->wake, &k->lock, &until) != ETIMEDOUT)
        ;
    stop = k->stop;
    pthread_mutex_unlock(&k->lock);
    return stop;
}

/* One step of the rotation under way, if this node leads and one runs:
 * 1 when it did something (look again at once), else 0. */
static int drive(struct keys *k)
{
    struct node *n = k->n;
    Dossier__Store__V1__KeyRotation *cur = NULL;
    struct dossier_status st;
    struct batch b;
    int did = 0, rc;

    if (!cluster_is_leader(n->cluster) || !cluster_keys_ready(n->cluster))
        return 0;
    if (store_key_rotation_get(n->store, &cur, &st) != 0)
        return 0;
    if (cur->done)
        goto out;
    if (crypt_kek_check_of(n->crypt, cur->to_version,
                           (uint8_t[CRYPT_KEK_CHECK_BYTES]){0}) != 0) {
        if (k->warned_missing != cur->to_version)
            log_printf(LOG_ERROR, "key rotation to master key version %u "
                       "cannot go on from this leader: its key file lacks "
                       "that version (add it and send SIGHUP)",
                       cur->to_version);
        k->warned_missing = cur->to_version;
        goto out;
    }
    memset(&b, 0, sizeof(b));
    b.k = k;
    b.to = cur->to_version;
    b.max_items = k->batch;
    b.max_scanned = k->batch * SCAN_FACTOR;
    b.items = calloc(k->batch, sizeof(*b.items));
    b.ptrs = calloc(k->batch, sizeof(*b.ptrs));
    if (!b.items || !b.ptrs) {
        batch_release(&b);
        goto out;
    }
    /* From the cursor on, in pseudonym order. */
    if (store_scan(n->store, STORE_SUBJECT, NULL, 0,
                   cur->cursor.len == STORE_SP_BYTES ? cur->cursor.data : NULL,
                   cur->cursor.len == STORE_SP_BYTES ? STORE_SP_BYTES : 0,
                   collect, &b, &st) != 0 || b.err) {
        log_printf(LOG_ERROR, "key rotation: %s",
                   b.err ? b.st.message : st.message);
        batch_release(&b);
        goto out;
    }
    if (b.n || b.has_last) {
        did = propose_rewrap(k, &b, cur, 1) == 0;
        batch_release(&b);
        if (did && k->pause_ms)
            nap(k, k->pause_ms);
        goto out;
    }
    batch_release(&b);
    /* At the end: keys created before the rotation began but missed (none
     * should be) are rewrapped before the finish; keys created since are
     * under the new version already (apply refuses others). */
    memset(&b, 0, sizeof(b));
    b.k = k;
    b.to = cur->to_version;
    b.max_items = k->batch;
    b.max_scanned = (size_t)-1;
    b.items = calloc(k->batch, sizeof(*b.items));
    b.ptrs = calloc(k->batch, sizeof(*b.ptrs));
    if (!b.items || !b.ptrs ||
        store_scan(n->store, STORE_SUBJECT, NULL, 0, NULL, 0, collect, &b,
                   &st) != 0 ||
        b.err) {
        batch_release(&b);
        goto out;
    }
    if (b.n) {
        log_printf(LOG_INFO, "key rotation: %zu stragglers rewrapped", b.n);
        did = propose_rewrap(k, &b, cur, 0) == 0;
        batch_release(&b);
        goto out;
    }
    batch_release(&b);
    /* The keys pending merges keep for an undo (a merge made during the
     * rotation may keep one it had not rewrapped yet; FINISH refuses
     * while one is left). */
    memset(&b, 0, sizeof(b));
    b.k = k;
    b.to = cur->to_version;
    b.max_items = k->batch;
    b.items = calloc(k->batch, sizeof(*b.items));
    b.ptrs = calloc(k->batch, sizeof(*b.ptrs));
    if (!b.items || !b.ptrs ||
        ((rc = kept_keys_each(n->store, collect_kept, &b, &st)) != 0 &&
         rc != 1) ||
        b.err) {
        log_printf(LOG_ERROR, "key rotation: the keys pending merges keep: "
                   "%s", b.err ? b.st.message : st.message);
        batch_release(&b);
        goto out;
    }
    if (b.n) {
        log_printf(LOG_INFO, "key rotation: %zu keys kept by pending "
                   "merges rewrapped", b.n);
        did = propose_rewrap(k, &b, cur, 0) == 0;
        batch_release(&b);
        goto out;
    }
    batch_release(&b);
    did = propose_finish(k, cur) == 0;
out:
    dossier__store__v1__key_rotation__free_unpacked(cur, NULL);
    return did;
}

static void *keys_main(void *arg)
{
    struct keys *k = arg;

    for (;;) {
        struct rotate_req *reqs;
        pthread_mutex_lock(&k->lock);
        reqs = k->reqs;
        k->reqs = NULL;
        if (k->stop) {
            pthread_mutex_unlock(&k->lock);
            break;
        }
        pthread_mutex_unlock(&k->lock);
        while (reqs) {
            struct rotate_req *r = reqs;
            reqs = r->next;
            start_rotation(k, r->c, r->version);
            free(r);
        }
        if (drive(k))
            continue;
        if (nap(k, IDLE_MS))
            break;
    }
    /* Calls still queued are answered: the node is stopping. */
    pthread_mutex_lock(&k->lock);
    while (k->reqs) {
        struct rotate_req *r = k->reqs;
        k->reqs = r->next;
        call_fail(r->c, DOSSIER_UNAVAILABLE, "the node is stopping");
        free(r);
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

int keys_start(struct node *n, size_t batch, unsigned pause_ms,
               struct keys **out, struct dossier_status *st)
{
    struct keys *k = calloc(1, sizeof(*k));
    *out = NULL;
    if (!k)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    k->n = n;
    k->batch = batch ? batch : KEYS_ROTATION_BATCH_DEFAULT;
    k->pause_ms = pause_ms;
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->wake, NULL);
    if (pthread_create(&k->thread, NULL, keys_main, k) != 0) {
        pthread_mutex_destroy(&k->lock);
        pthread_cond_destroy(&k->wake);
        free(k);
        return err_set(st, DOSSIER_INTERNAL,
                       "cannot start the key rotation thread");
    }
    *out = k;
    return err_ok(st);
}

void keys_stop(struct keys *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->lock);
    __atomic_store_n(&k->stop, 1, __ATOMIC_RELEASE);
    pthread_cond_signal(&k->wake);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    pthread_mutex_destroy(&k->lock);
    pthread_cond_destroy(&k->wake);
    free(k);
}

void keys_rotate(struct keys *k, struct call *c, uint32_t version)
{
    struct rotate_req *r = calloc(1, sizeof(*r));
    if (!r)
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    r->c = c;
    r->version = version;
    pthread_mutex_lock(&k->lock);
    if (k->stop) {
        pthread_mutex_unlock(&k->lock);
        free(r);
        return call_fail(c, DOSSIER_UNAVAILABLE, "the node is stopping");
    }
    r->next = k->reqs;
    k->reqs = r;
    pthread_cond_signal(&k->wake);
    pthread_mutex_unlock(&k->lock);
}
