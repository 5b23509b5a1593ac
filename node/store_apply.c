/* The replicated state machine: applying write commands, deterministically,
 * into a batch that one RocksDB write makes durable. */
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "errors.h"
#include "store_int.h"

/* ------------------------------------------------------------------ */
/* Batches */

/* Request-id records expired per recorded request (see store_batch_commit). */
#define REQ_EXPIRE_PER_COMMAND 8
/* request_lookup: not seen (or expired): apply the command. */
#define REQ_NEW (-1)

struct store_batch *store_batch_begin(struct store *s)
{
    struct store_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->s = s;
    b->wb = rocksdb_writebatch_wi_create(64 << 10, 1);
    b->revision = store_revision(s);
    b->kinds_tail = &b->kinds;
    return b;
}

size_t store_batch_count(const struct store_batch *b)
{
    return b->n_applied;
}

void store_batch_set_applied(struct store_batch *b, uint64_t index)
{
    b->applied = index;
}

unsigned store_batch_effects(const struct store_batch *b)
{
    return b->effects;
}

static void pending_free(struct pending_kind *p)
{
    while (p) {
        struct pending_kind *next = p->next;
        if (p->schema)
            dossier__v1__kind_schema__free_unpacked(p->schema, NULL);
        free(p);
        p = next;
    }
}

void store_batch_abort(struct store_batch *b)
{
    if (!b)
        return;
    rocksdb_writebatch_wi_destroy(b->wb);
    pending_free(b->kinds);
    free(b);
}

static void request_expire(struct store_batch *b, int64_t now_ms,
                           size_t limit);

int store_batch_commit(struct store_batch *b, int sync,
                       struct dossier_status *st)
{
    struct store *s = b->s;
    char *err = NULL;
    uint8_t rev[8], applied[8];
    int rc = 0;

    if (b->n_applied == 0 && b->applied == 0) {
        store_batch_abort(b);
        return err_ok(st);
    }
    /* Old request ids go once per batch, as many as the batch recorded
     * (times a margin): one pass of two iterators, not one per command.
     * When they go does not change any result: a lookup ignores a record
     * past its TTL. */
    if (b->n_requests)
        request_expire(b, b->request_time_ms,
                       b->n_requests * REQ_EXPIRE_PER_COMMAND);
    store_u64_be(rev, b->revision);
    rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_DEFAULT], "revision", 8,
                                 (const char *)rev, 8);
    if (b->applied) {
        store_u64_be(applied, b->applied);
        rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_DEFAULT], "applied",
                                     7, (const char *)applied, 8);
    }
    rocksdb_write_writebatch_wi(s->db, sync ? s->wo_sync : s->wo_nosync,
                                b->wb, &err);
    if (err) {
        rc = store_rdb_error(st, err, "write failed");
        store_batch_abort(b);
        return rc;
    }
    __atomic_store_n(&s->revision, b->revision, __ATOMIC_RELEASE);
    if (b->applied)
        __atomic_store_n(&s->applied, b->applied, __ATOMIC_RELEASE);
    /* Kinds become visible to requests only once they are durable, in the
     * order they were defined, so the newest definition wins. */
    for (struct pending_kind *p = b->kinds; p; p = p->next)
        if (schema_registry_set(s->schemas, p->schema) == 0)
            p->schema = NULL; /* the registry owns it now */
    store_batch_abort(b);
    return err_ok(st);
}

static int bad_command(struct store_result *res, const char *what)
{
    return err_set(&res->status, DOSSIER_CORRUPT, "malformed command: %s",
                   what);
}

/* An index key of @op is well formed: kind 0x00 field 0x00 blind rid. */
static int index_key_valid(const Dossier__Store__V1__PutOp *op,
                           const ProtobufCBinaryData *k)
{
    size_t kl = strlen(op->kind);
    if (k->len < kl + 3 + STORE_BLIND_BYTES + STORE_RID_BYTES ||
        k->len > STORE_KEY_MAX || memcmp(k->data, op->kind, kl) != 0 ||
        k->data[kl] != 0 ||
        memcmp(k->data + k->len - STORE_RID_BYTES, op->rid.data,
               STORE_RID_BYTES) != 0)
        return 0;
    return memchr(k->data + kl + 1, 0, k->len - kl - 1 - 32) != NULL;
}

static int apply_put(struct store_batch *b, const Command *cmd,
                     struct store_result *res)
{
    const Dossier__Store__V1__PutOp *op = cmd->put;
    struct store *s = b->s;
    struct dossier_status *st = &res->status;
    StoredRecord *old = NULL;
    SubjectKey *sk = NULL;
    StoredRecord rec = DOSSIER__STORE__V1__STORED_RECORD__INIT;
    uint8_t key[STORE_KEY_MAX];
    size_t klen, len, sk_len;
    uint8_t *buf = NULL;
    int has_subject = op->subject.len == STORE_SP_BYTES;
    int rc;

    if (!schema_name_valid(op->kind) || op->rid.len != STORE_RID_BYTES ||
        (op->subject.len != 0 && !has_subject) ||
        op->sealed_id.len == 0 || (!has_subject && op->dek_id != 0))
        return bad_command(res, "put");
    for (size_t i = 0; i < op->n_index_keys; i++)
        if (!index_key_valid(op, &op->index_keys[i]))
            return bad_command(res, "put index key");

    rc = store_read_record(s, b, op->kind, op->rid.data, &old, st);
    if (rc && rc != DOSSIER_NOT_FOUND)
        return rc;
    if (op->expect_case ==
        DOSSIER__STORE__V1__PUT_OP__EXPECT_EXPECTED_VERSION) {
        if (op->expected_version == 0 && old) {
            rc = err_set(st, DOSSIER_ALREADY_EXISTS,
                         "a record of kind '%s' with that id already exists "
                         "(version %llu)",
                         op->kind, (unsigned long long)old->version);
            goto out;
        }
        if (op->expected_version != 0 && !old) {
            rc = err_set(st, DOSSIER_NOT_FOUND,
                         "no record of kind '%s' with that id (expected "
                         "version %llu)",
                         op->kind, (unsigned long long)op->expected_version);
            goto out;
        }
        if (old && old->version != op->expected_version) {
            rc = err_set(st, DOSSIER_VERSION_CONFLICT,
                         "the record is at version %llu, not the expected "
                         "%llu",
                         (unsigned long long)old->version,
                         (unsigned long long)op->expected_version);
            goto out;
        }
    }
    if (old && (old->subject.len != op->subject.len ||
                (op->subject.len &&
                 memcmp(old->subject.data, op->subject.data,
                        op->subject.len) != 0))) {
        rc = err_set(st, DOSSIER_FAILED_PRECONDITION,
                     "a record's subject cannot change; delete the record "
                     "and create it again");
        goto out;
    }
    if (has_subject) {
        rc = store_read_subject_key(s, b, op->subject.data, &sk, st);
        if (rc && rc != DOSSIER_NOT_FOUND)
            goto out;
        if (sk ? sk->dek_id != op->dek_id
               : !op->new_subject_key ||
                     op->new_subject_key->dek_id != op->dek_id) {
            /* Another write created the subject's key first, or it was
             * erased meanwhile: the proposer seals again and retries. */
            rc = err_set(st, DOSSIER_RETRY, "the subject's key changed");
            goto out;
        }
    }

    /* Every check passed. Encode everything first, so that once the first
     * write goes into the batch nothing can fail half-way. */
    rec.kind = op->kind;
    rec.subject = op->subject;
    rec.dek_id = op->dek_id;
    rec.version = b->revision + 1;
    rec.created_at_ms = old ? old->created_at_ms : cmd->time_ms;
    rec.updated_at_ms = cmd->time_ms;
    rec.sealed_id = op->sealed_id;
    rec.sealed_links = op->sealed_links;
    rec.n_fields = op->n_fields;
    rec.fields = op->fields;
    rec.n_index_keys = op->n_index_keys;
    rec.index_keys = op->index_keys;
    len = dossier__store__v1__stored_record__get_packed_size(&rec);
    sk_len = has_subject && !sk ? dossier__store__v1__subject_key__get_packed_size(
                                      op->new_subject_key)
                                : 0;
    buf = malloc(len + sk_len + 1);
    if (!buf) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    dossier__store__v1__stored_record__pack(&rec, buf);
    if (sk_len)
        dossier__store__v1__subject_key__pack(op->new_subject_key, buf + len);

    if (has_subject && !sk)
        rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_SUBJECT],
                                     (const char *)op->subject.data,
                                     STORE_SP_BYTES, (const char *)buf + len,
                                     sk_len);
    if (old)
        for (size_t i = 0; i < old->n_index_keys; i++)
            rocksdb_writebatch_wi_delete_cf(
                b->wb, s->cf[STORE_INDEX],
                (const char *)old->index_keys[i].data,
                old->index_keys[i].len);
    for (size_t i = 0; i < op->n_index_keys; i++)
        rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_INDEX],
                                     (const char *)op->index_keys[i].data,
                                     op->index_keys[i].len, "", 0);
    if (has_subject) {
        klen = store_membership_key(key, op->subject.data, op->kind,
                                    op->rid.data);
        rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_SUBJECT],
                                     (const char *)key, klen, "", 0);
    }
    klen = store_record_key(key, op->kind, op->rid.data);
    rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_RECORD],
                                 (const char *)key, klen, (const char *)buf,
                                 len);
    free(buf);
    b->revision++;
    res->version = rec.version;
    res->created = old == NULL;
    res->updated_at_ms = rec.updated_at_ms;
    rc = err_ok(st);
out:
    if (old)
        dossier__store__v1__stored_record__free_unpacked(old, NULL);
    if (sk)
        dossier__store__v1__subject_key__free_unpacked(sk, NULL);
    return rc;
}

static int apply_delete(struct store_batch *b, const Command *cmd,
                        struct store_result *res)
{
    const Dossier__Store__V1__DeleteOp *op = cmd->delete_;
    struct store *s = b->s;
    struct dossier_status *st = &res->status;
    StoredRecord *old = NULL;
    uint8_t key[STORE_KEY_MAX];
    size_t klen;
    int rc;

    if (!schema_name_valid(op->kind) || op->rid.len != STORE_RID_BYTES)
        return bad_command(res, "delete");
    rc = store_read_record(s, b, op->kind, op->rid.data, &old, st);
    if (rc)
        return rc;
    if (op->expect_case ==
            DOSSIER__STORE__V1__DELETE_OP__EXPECT_EXPECTED_VERSION &&
        old->version != op->expected_version) {
        rc = err_set(st, DOSSIER_VERSION_CONFLICT,
                     "the record is at version %llu, not the expected %llu",
                     (unsigned long long)old->version,
                     (unsigned long long)op->expected_version);
        goto out;
    }
    for (size_t i = 0; i < old->n_index_keys; i++)
        rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_INDEX],
                                        (const char *)old->index_keys[i].data,
                                        old->index_keys[i].len);
    if (old->subject.len == STORE_SP_BYTES) {
        klen = store_membership_key(key, old->subject.data, op->kind,
                                    op->rid.data);
        rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_SUBJECT],
                                        (const char *)key, klen);
    }
    klen = store_record_key(key, op->kind, op->rid.data);
    rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_RECORD],
                                    (const char *)key, klen);
    b->revision++;
    res->version = old->version;
    rc = err_ok(st);
out:
    dossier__store__v1__stored_record__free_unpacked(old, NULL);
    return rc;
}

/* The current definition of @kind as this batch sees it: the newest
 * pending definition (the list is oldest first), else the registry's. */
static const KindSchema *batch_schema(struct store_batch *b, const char *kind)
{
    const KindSchema *k = NULL;
    for (struct pending_kind *p = b->kinds; p; p = p->next)
        if (strcmp(p->schema->kind, kind) == 0)
            k = p->schema;
    return k ? k : schema_registry_get(b->s->schemas, kind);
}

static int apply_define_kind(struct store_batch *b, const Command *cmd,
                             struct store_result *res)
{
    const Dossier__Store__V1__DefineKindOp *op = cmd->define_kind;
    struct dossier_status *st = &res->status;
    const KindSchema *prev;
    struct pending_kind *p;
    KindSchema def;
    uint8_t *buf;
    size_t len;
    int rc;

    if (!op->schema)
        return bad_command(res, "define kind");
    rc = schema_check_definition(op->schema, st);
    if (rc)
        return rc;
    prev = batch_schema(b, op->schema->kind);
    if (prev) {
        rc = schema_check_compatible(prev, op->schema, st);
        if (rc)
            return rc;
    }
    def = *op->schema;
    def.builtin = schema_is_builtin(def.kind);
    def.version = b->revision + 1;
    len = dossier__v1__kind_schema__get_packed_size(&def);
    buf = malloc(len ? len : 1);
    p = calloc(1, sizeof(*p));
    if (!buf || !p) {
        free(buf);
        free(p);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    dossier__v1__kind_schema__pack(&def, buf);
    p->schema = dossier__v1__kind_schema__unpack(NULL, len, buf);
    if (!p->schema) {
        free(buf);
        free(p);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[STORE_SCHEMA], def.kind,
                                 strlen(def.kind), (const char *)buf, len);
    free(buf);
    *b->kinds_tail = p;
    b->kinds_tail = &p->next;
    b->revision++;
    res->version = b->revision;
    return err_ok(st);
}

static int apply_init_keyset(struct store_batch *b, const Command *cmd,
                             struct store_result *res)
{
    const Dossier__Store__V1__InitKeysetOp *op = cmd->init_keyset;
    struct store *s = b->s;
    char *v;
    size_t vlen, len;
    uint8_t *buf;
    int rc;

    if (!op->meta || op->meta->sealed_keyset.len == 0)
        return bad_command(res, "init keyset");
    rc = store_get_raw(s, b, STORE_DEFAULT, (const uint8_t *)"meta", 4, &v,
                       &vlen, &res->status);
    if (rc)
        return rc;
    if (v) {
        /* The cluster has its keyset: a second proposal (from a leader that
         * did not know) changes nothing. */
        rocksdb_free(v);
        return err_ok(&res->status);
    }
    len = dossier__store__v1__meta__get_packed_size(op->meta);
    buf = malloc(len ? len : 1);
    if (!buf)
        return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    dossier__store__v1__meta__pack(op->meta, buf);
    rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_DEFAULT], "meta", 4,
                                 (const char *)buf, len);
    free(buf);
    b->effects |= STORE_EFFECT_KEYSET;
    return err_ok(&res->status);
}

static int apply_set_member(struct store_batch *b, const Command *cmd,
                            struct store_result *res)
{
    const Dossier__Store__V1__SetMemberOp *op = cmd->set_member;
    Dossier__Store__V1__Member m = DOSSIER__STORE__V1__MEMBER__INIT;
    uint8_t key[15];
    size_t len;
    uint8_t *buf;

    if (op->id == 0 || (!op->remove && (!op->address[0] ||
                                        strlen(op->address) > 255)))
        return bad_command(res, "set member");
    memcpy(key, "member/", 7);
    store_u64_be(key + 7, op->id);
    if (op->remove) {
        rocksdb_writebatch_wi_delete_cf(b->wb, b->s->cf[STORE_DEFAULT],
                                        (const char *)key, sizeof(key));
    } else {
        m.id = op->id;
        m.address = op->address;
        len = dossier__store__v1__member__get_packed_size(&m);
        buf = malloc(len ? len : 1);
        if (!buf)
            return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
        dossier__store__v1__member__pack(&m, buf);
        rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[STORE_DEFAULT],
                                     (const char *)key, sizeof(key),
                                     (const char *)buf, len);
        free(buf);
    }
    b->effects |= STORE_EFFECT_MEMBERS;
    return err_ok(&res->status);
}

/* ------------------------------------------------------------------ */
/* Exactly-once retries: the outcome of every write with a request id is
 * kept under it for STORE_REQUEST_TTL_MS of command time, so that a client
 * retrying after a lost answer or a failover gets the first outcome
 * instead of a second application. Expiry follows the commands' own times,
 * which every replica sees identically. */

#define REQ_KEY_BYTES (1 + STORE_REQUEST_ID_BYTES)
#define REQ_TIME_KEY_BYTES (1 + 8 + STORE_REQUEST_ID_BYTES)
/* Expired records removed per command: bounded work per apply. */

static uint64_t time_key(int64_t ms)
{
    return (uint64_t)ms ^ (1ULL << 63); /* signed order as unsigned */
}

static int request_lookup(struct store_batch *b, const Command *cmd,
                          struct store_result *res)
{
    uint8_t key[REQ_KEY_BYTES];
    Dossier__Store__V1__RequestRecord *rec;
    char *v;
    size_t vlen;
    int rc;

    key[0] = 'r';
    memcpy(key + 1, cmd->request_id.data, STORE_REQUEST_ID_BYTES);
    rc = store_get_raw(b->s, b, STORE_REQUESTS, key, sizeof(key), &v, &vlen,
                       &res->status);
    if (rc)
        return rc; /* a read error is not a miss: it must not apply twice */
    if (!v)
        return REQ_NEW;
    rec = dossier__store__v1__request_record__unpack(NULL, vlen,
                                                     (const uint8_t *)v);
    rocksdb_free(v);
    if (!rec || cmd->time_ms - rec->time_ms > STORE_REQUEST_TTL_MS) {
        if (rec)
            dossier__store__v1__request_record__free_unpacked(rec, NULL);
        return REQ_NEW; /* expired (not yet swept): apply as new */
    }
    res->version = rec->version;
    res->created = rec->created;
    res->updated_at_ms = rec->updated_at_ms;
    res->duplicate = 1;
    dossier__store__v1__request_record__free_unpacked(rec, NULL);
    return err_ok(&res->status);
}

static void request_record(struct store_batch *b, const Command *cmd,
                           const struct store_result *res)
{
    Dossier__Store__V1__RequestRecord rec =
        DOSSIER__STORE__V1__REQUEST_RECORD__INIT;
    uint8_t key[REQ_KEY_BYTES], tkey[REQ_TIME_KEY_BYTES], buf[64];
    size_t len;

    rec.time_ms = cmd->time_ms;
    rec.version = res->version;
    rec.created = res->created;
    rec.updated_at_ms = res->updated_at_ms;
    len = dossier__store__v1__request_record__pack(&rec, buf);
    key[0] = 'r';
    memcpy(key + 1, cmd->request_id.data, STORE_REQUEST_ID_BYTES);
    tkey[0] = 't';
    store_u64_be(tkey + 1, time_key(cmd->time_ms));
    memcpy(tkey + 9, cmd->request_id.data, STORE_REQUEST_ID_BYTES);
    rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[STORE_REQUESTS],
                                 (const char *)key, sizeof(key),
                                 (const char *)buf, len);
    rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[STORE_REQUESTS],
                                 (const char *)tkey, sizeof(tkey), "", 0);
}

/* Removes up to @limit records older than the TTL, oldest first. */
static void request_expire(struct store_batch *b, int64_t now_ms,
                           size_t limit)
{
    struct store *s = b->s;
    rocksdb_iterator_t *base, *it;
    size_t n = 0;

    base = rocksdb_create_iterator_cf(s->db, s->ro, s->cf[STORE_REQUESTS]);
    it = rocksdb_writebatch_wi_create_iterator_with_base_cf(
        b->wb, base, s->cf[STORE_REQUESTS]);
    for (rocksdb_iter_seek(it, "t", 1);
         rocksdb_iter_valid(it) && n < limit;
         rocksdb_iter_next(it), n++) {
        size_t klen;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
        uint8_t rkey[REQ_KEY_BYTES];
        if (klen != REQ_TIME_KEY_BYTES || k[0] != 't' ||
            store_be_u64(k + 1) >= time_key(now_ms - STORE_REQUEST_TTL_MS))
            break;
        rkey[0] = 'r';
        memcpy(rkey + 1, k + 9, STORE_REQUEST_ID_BYTES);
        rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_REQUESTS],
                                        (const char *)rkey, sizeof(rkey));
        rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_REQUESTS],
                                        (const char *)k, klen);
    }
    /* The merged iterator owns the base iterator. */
    rocksdb_iter_destroy(it);
}

int store_apply(struct store_batch *b, const Command *cmd,
                struct store_result *res)
{
    int rc, dedupe;

    memset(res, 0, sizeof(*res));
    if (cmd->request_id.len != 0 &&
        cmd->request_id.len != STORE_REQUEST_ID_BYTES)
        return bad_command(res, "request id");
    dedupe = cmd->request_id.len == STORE_REQUEST_ID_BYTES &&
             (cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_PUT ||
              cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_DELETE ||
              cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_DEFINE_KIND);
    if (dedupe) {
        rc = request_lookup(b, cmd, res);
        if (rc != REQ_NEW) {
            if (rc == 0)
                b->n_applied++;
            return rc;
        }
        memset(res, 0, sizeof(*res));
    }
    switch (cmd->op_case) {
    case DOSSIER__STORE__V1__COMMAND__OP_PUT:
        rc = cmd->put ? apply_put(b, cmd, res) : bad_command(res, "put");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_DELETE:
        rc = cmd->delete_ ? apply_delete(b, cmd, res)
                          : bad_command(res, "delete");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_DEFINE_KIND:
        rc = apply_define_kind(b, cmd, res);
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_INIT_KEYSET:
        rc = cmd->init_keyset ? apply_init_keyset(b, cmd, res)
                              : bad_command(res, "init keyset");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_SET_MEMBER:
        rc = cmd->set_member ? apply_set_member(b, cmd, res)
                             : bad_command(res, "set member");
        break;
    default:
        rc = bad_command(res, "unknown operation");
        break;
    }
    if (rc == 0) {
        b->n_applied++;
        if (dedupe) {
            request_record(b, cmd, res);
            b->n_requests++;
            if (cmd->time_ms > b->request_time_ms)
                b->request_time_ms = cmd->time_ms;
        }
    }
    return rc;
}
