/* The state machine's part of master key rotation: the rotation row, and
 * applying the leader's BEGIN, REWRAP and FINISH steps (KeyRotateOp). The
 * leader unwraps and wraps (node/keys.c); apply only checks each step
 * against the state it meets and writes what the command carries. */
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "store_int.h"

#define ROTATION_KEY "keyrotation"
#define ROTATION_KEY_LEN (sizeof(ROTATION_KEY) - 1)
#define KEK_CHECK_BYTES 16

static int malformed(struct store_result *res, const char *what)
{
    return err_set(&res->status, DOSSIER_CORRUPT,
                   "malformed command: key rotation %s", what);
}

/* The rotation row and the meta record (through @b when set) into *@out,
 * NULL when absent. */
static int rotation_read(struct store *s, struct store_batch *b,
                         Dossier__Store__V1__KeyRotation **out,
                         struct dossier_status *st)
{
    return store_get_pb(s, b, STORE_DEFAULT, (const uint8_t *)ROTATION_KEY,
                        ROTATION_KEY_LEN,
                        &dossier__store__v1__key_rotation__descriptor,
                        "key rotation row", (ProtobufCMessage **)out, st);
}

static int meta_read(struct store *s, struct store_batch *b,
                     Dossier__Store__V1__Meta **out, struct dossier_status *st)
{
    return store_get_pb(s, b, STORE_DEFAULT, (const uint8_t *)"meta", 4,
                        &dossier__store__v1__meta__descriptor, "meta record",
                        (ProtobufCMessage **)out, st);
}

/* Puts @m (any message) at @key of the default family in @b. */
static int put_message(struct store_batch *b, const char *key,
                       const ProtobufCMessage *m, struct dossier_status *st)
{
    if (store_batch_put_pb(b, STORE_DEFAULT, (const uint8_t *)key,
                           strlen(key), m))
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    return 0;
}

int store_key_rotation_get(struct store *s,
                           Dossier__Store__V1__KeyRotation **out,
                           struct dossier_status *st)
{
    int rc;
    pthread_rwlock_rdlock(&s->swap);
    rc = rotation_read(s, NULL, out, st);
    pthread_rwlock_unlock(&s->swap);
    if (rc == 0 && !*out)
        return err_set(st, DOSSIER_NOT_FOUND, "never rotated");
    return rc;
}

int store_wrap_version(struct store_batch *b, uint32_t *out,
                       struct dossier_status *st)
{
    Dossier__Store__V1__KeyRotation *r;
    Dossier__Store__V1__Meta *m;
    int rc = rotation_read(b->s, b, &r, st);

    *out = 0;
    if (rc)
        return rc;
    if (r && !r->done) {
        *out = r->to_version;
        dossier__store__v1__key_rotation__free_unpacked(r, NULL);
        return 0;
    }
    if (r)
        dossier__store__v1__key_rotation__free_unpacked(r, NULL);
    rc = meta_read(b->s, b, &m, st);
    if (rc)
        return rc;
    if (m) {
        *out = m->kek_version;
        dossier__store__v1__meta__free_unpacked(m, NULL);
    }
    return 0;
}

int store_rotation_target(struct store_batch *b, uint32_t *out,
                          struct dossier_status *st)
{
    Dossier__Store__V1__KeyRotation *r;
    int rc = rotation_read(b->s, b, &r, st);
    *out = 0;
    if (rc)
        return rc;
    if (r && !r->done)
        *out = r->to_version;
    if (r)
        dossier__store__v1__key_rotation__free_unpacked(r, NULL);
    return 0;
}

static int begin(struct store_batch *b, const Command *cmd,
                 const Dossier__Store__V1__KeyRotateOp *op,
                 Dossier__Store__V1__KeyRotation *cur,
                 const Dossier__Store__V1__Meta *meta,
                 struct store_result *res)
{
    Dossier__Store__V1__KeyRotation r = DOSSIER__STORE__V1__KEY_ROTATION__INIT;
    struct dossier_status *st = &res->status;

    if (op->to_check.len != KEK_CHECK_BYTES)
        return malformed(res, "check value");
    if (cur && !cur->done) {
        /* A second BEGIN (a retried call, a new leader) of the same
         * rotation changes nothing. */
        if (cur->to_version == op->to_version)
            return err_ok(st);
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "a rotation to master key version %u is under way; "
                       "let it finish first (dossier keys status)",
                       cur->to_version);
    }
    if (meta->kek_version != op->from_version)
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "the cluster's keyset is sealed under master key "
                       "version %u, not %u",
                       meta->kek_version, op->from_version);
    if (op->to_version == op->from_version)
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "the cluster already uses master key version %u",
                       op->to_version);
    r.from_version = op->from_version;
    r.to_version = op->to_version;
    r.to_check = op->to_check;
    r.subjects = op->subjects;
    r.started_ms = cmd->time_ms;
    r.started_by = cmd->principal;
    if (put_message(b, ROTATION_KEY, &r.base, st))
        return st->code;
    b->effects |= STORE_EFFECT_KEYS;
    return err_ok(st);
}

static int rewrap(struct store_batch *b,
                  const Dossier__Store__V1__KeyRotateOp *op,
                  Dossier__Store__V1__KeyRotation *cur,
                  struct store_result *res)
{
    struct dossier_status *st = &res->status;
    uint64_t done = 0, skipped = 0;
    int rc;

    if (!cur || cur->done || cur->to_version != op->to_version)
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "no rotation to master key version %u is under way",
                       op->to_version);
    if (op->cursor.len != 0 && op->cursor.len != STORE_SP_BYTES)
        return malformed(res, "cursor");
    for (size_t i = 0; i < op->n_items; i++) {
        const Dossier__Store__V1__KeyRotateOp__Rewrap *it = op->items[i];
        if (it->subject.len != STORE_SP_BYTES || it->wrapped_dek.len == 0 ||
            (it->merge_id[0] && !store_merge_id_valid(it->merge_id)))
            return malformed(res, "item");
    }
    /* The keys pending merges keep for an undo (store_crm.c). */
    if ((rc = store_merge_rewrap(b, op, &done, &skipped, st)))
        return rc;
    for (size_t i = 0; i < op->n_items; i++) {
        const Dossier__Store__V1__KeyRotateOp__Rewrap *it = op->items[i];
        SubjectKey *sk = NULL;
        ProtobufCBinaryData old_wrap;
        size_t len;
        uint8_t *buf;

        if (it->merge_id[0])
            continue;

        rc = store_read_subject_key(b->s, b, it->subject.data, &sk, st);
        if (rc == DOSSIER_NOT_FOUND) {
            skipped++; /* erased since the leader read it */
            continue;
        }
        if (rc)
            return rc;
        if (sk->dek_id != it->dek_id || sk->kek_version == op->to_version) {
            /* Erased and made again (the new key is under to_version
             * already), or rewrapped by an earlier step. */
            dossier__store__v1__subject_key__free_unpacked(sk, NULL);
            skipped++;
            continue;
        }
        sk->kek_version = op->to_version;
        old_wrap = sk->wrapped_dek;
        sk->wrapped_dek = it->wrapped_dek; /* borrowed from the command */
        len = dossier__store__v1__subject_key__get_packed_size(sk);
        buf = malloc(len ? len : 1);
        if (buf)
            dossier__store__v1__subject_key__pack(sk, buf);
        /* The message frees its own buffer, not the command's. */
        sk->wrapped_dek = old_wrap;
        dossier__store__v1__subject_key__free_unpacked(sk, NULL);
        if (!buf)
            return err_set(st, DOSSIER_NOMEM, "out of memory");
        rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[STORE_SUBJECT],
                                     (const char *)it->subject.data,
                                     STORE_SP_BYTES, (const char *)buf, len);
        free(buf);
        done++;
    }
    cur->rewrapped += done;
    cur->skipped += skipped;
    if (op->cursor.len == STORE_SP_BYTES &&
        (cur->cursor.len != STORE_SP_BYTES ||
         memcmp(op->cursor.data, cur->cursor.data, STORE_SP_BYTES) > 0)) {
        /* cur is freed by the caller with the allocator that made it: the
         * cursor is swapped back before that. */
        ProtobufCBinaryData keep = cur->cursor;
        cur->cursor = op->cursor;
        rc = put_message(b, ROTATION_KEY, &cur->base, st);
        cur->cursor = keep;
    } else {
        rc = put_message(b, ROTATION_KEY, &cur->base, st);
    }
    if (rc)
        return rc;
    res->deleted = done; /* how many were rewrapped, for the leader */
    return err_ok(st);
}

static int finish(struct store_batch *b, const Command *cmd,
                  const Dossier__Store__V1__KeyRotateOp *op,
                  Dossier__Store__V1__KeyRotation *cur,
                  const Dossier__Store__V1__Meta *meta,
                  struct store_result *res)
{
    struct dossier_status *st = &res->status;
    Dossier__Store__V1__Meta m;
    char merge_id[STORE_MERGE_ID_LEN + 1];
    uint32_t kept;
    int rc;

    if (!cur || cur->done || cur->to_version != op->to_version)
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "no rotation to master key version %u is under way",
                       op->to_version);
    /* A merge made while the rotation ran may keep a key it had not
     * rewrapped yet: the leader rewraps it, then finishes. */
    if ((rc = store_merges_kept_other(b, op->to_version, merge_id, &kept,
                                      st)))
        return rc;
    if (kept)
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "pending merge %s keeps a subject key under master "
                       "key version %u: it is rewrapped before the rotation "
                       "finishes",
                       merge_id, kept);
    if (!op->meta || op->meta->kek_version != op->to_version ||
        op->meta->kek_check.len != KEK_CHECK_BYTES ||
        op->meta->sealed_keyset.len == 0)
        return malformed(res, "meta");
    if (op->meta->cluster_id.len != meta->cluster_id.len ||
        memcmp(op->meta->cluster_id.data, meta->cluster_id.data,
               meta->cluster_id.len) != 0 ||
        cur->to_check.len != KEK_CHECK_BYTES ||
        memcmp(op->meta->kek_check.data, cur->to_check.data,
               KEK_CHECK_BYTES) != 0)
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "the resealed keyset is not of this cluster or not "
                       "under the rotation's key");
    /* The meta record keeps what it had (format, creation time). */
    m = *meta;
    m.kek_version = op->meta->kek_version;
    m.kek_check = op->meta->kek_check;
    m.sealed_keyset = op->meta->sealed_keyset;
    if (put_message(b, "meta", &m.base, st))
        return st->code;
    cur->done = 1;
    cur->finished_ms = cmd->time_ms;
    if (put_message(b, ROTATION_KEY, &cur->base, st))
        return st->code;
    b->effects |= STORE_EFFECT_KEYS | STORE_EFFECT_ROTATED;
    return err_ok(st);
}

int store_apply_key_rotate(struct store_batch *b, const Command *cmd,
                           struct store_result *res)
{
    const Dossier__Store__V1__KeyRotateOp *op = cmd->key_rotate;
    Dossier__Store__V1__KeyRotation *cur = NULL;
    Dossier__Store__V1__Meta *meta = NULL;
    int rc;

    if (!op || op->to_version == 0)
        return malformed(res, "operation");
    rc = rotation_read(b->s, b, &cur, &res->status);
    if (rc == 0)
        rc = meta_read(b->s, b, &meta, &res->status);
    if (rc)
        goto out;
    if (!meta) {
        rc = err_set(&res->status, DOSSIER_FAILED_PRECONDITION,
                     "the cluster has no keyset yet");
        goto out;
    }
    switch (op->step) {
    case DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__BEGIN:
        rc = begin(b, cmd, op, cur, meta, res);
        break;
    case DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__REWRAP:
        rc = rewrap(b, op, cur, res);
        break;
    case DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__FINISH:
        rc = finish(b, cmd, op, cur, meta, res);
        break;
    default:
        rc = malformed(res, "step");
        break;
    }
out:
    if (cur)
        dossier__store__v1__key_rotation__free_unpacked(cur, NULL);
    if (meta)
        dossier__store__v1__meta__free_unpacked(meta, NULL);
    return rc;
}
