/* The replicated state machine: applying write commands, deterministically,
 * into a batch that one RocksDB write makes durable. */
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "auth.h"
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
    b->purposes_tail = &b->purposes;
    store_audit_head(s, &b->audit);
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

static void pending_purposes_free(struct pending_purpose *p)
{
    while (p) {
        struct pending_purpose *next = p->next;
        if (p->purpose)
            dossier__v1__purpose__free_unpacked(p->purpose, NULL);
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
    pending_purposes_free(b->purposes);
    free(b->erased);
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
    if (b->req_expired_to) {
        uint8_t to[8];
        store_u64_be(to, b->req_expired_to);
        rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_DEFAULT],
                                     "req_expired_to", 14, (const char *)to,
                                     8);
    }
    store_u64_be(rev, b->revision);
    rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_DEFAULT], "revision", 8,
                                 (const char *)rev, 8);
    if (b->applied) {
        store_u64_be(applied, b->applied);
        rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_DEFAULT], "applied",
                                     7, (const char *)applied, 8);
    }
    if (b->audit_changed) {
        uint8_t head[STORE_AUDIT_HEAD_BYTES];
        store_audit_head_encode(&b->audit, head);
        rocksdb_writebatch_wi_put_cf(b->wb, s->cf[STORE_DEFAULT],
                                     "audit_head", 10, (const char *)head,
                                     sizeof(head));
    }
    rocksdb_write_writebatch_wi(s->db, sync ? s->wo_sync : s->wo_nosync,
                                b->wb, &err);
    if (err) {
        rc = store_rdb_error(st, err, "write failed");
        store_batch_abort(b);
        return rc;
    }
    __atomic_store_n(&s->revision, b->revision, __ATOMIC_RELEASE);
    if (b->req_expired_to)
        s->req_expired_to = b->req_expired_to;
    store_changes_committed(s, b->revision);
    if (b->applied)
        __atomic_store_n(&s->applied, b->applied, __ATOMIC_RELEASE);
    /* Kinds become visible to requests only once they are durable, in the
     * order they were defined, so the newest definition wins. */
    for (struct pending_kind *p = b->kinds; p; p = p->next)
        if (schema_registry_set(s->schemas, p->schema) == 0)
            p->schema = NULL; /* the registry owns it now */
    for (struct pending_purpose *p = b->purposes; p; p = p->next)
        policy_set(s->policy, p->purpose, p->version);
    if (b->principals_delta)
        __atomic_add_fetch(&s->principals, (uint64_t)b->principals_delta,
                           __ATOMIC_ACQ_REL);
    if (b->audit_changed) {
        pthread_mutex_lock(&s->audit_mu);
        s->audit = b->audit;
        pthread_mutex_unlock(&s->audit_mu);
    }
    if (b->n_erased) {
        uint8_t(*e)[STORE_SP_BYTES] =
            realloc(s->erased, (s->n_erased + b->n_erased) * sizeof(*e));
        if (e) {
            memcpy(e + s->n_erased, b->erased, b->n_erased * sizeof(*e));
            s->erased = e;
            s->n_erased += b->n_erased;
        }
        /* Out of memory: the erased rows are deleted all the same; only
         * the subject's own ranges then wait for RocksDB's own
         * compactions (the other families are compacted whole). */
    }
    store_batch_abort(b);
    return err_ok(st);
}

static int bad_command(struct store_result *res, const char *what)
{
    return err_set(&res->status, DOSSIER_CORRUPT, "malformed command: %s",
                   what);
}

/* Records change @e (its time from @cmd) in the feed at revision @rev,
 * after any change already recorded at @rev. Errors: DOSSIER_NOMEM. */
static int change_put(struct store_batch *b, const Command *cmd, uint64_t rev,
                      Dossier__Store__V1__ChangeEntry *e)
{
    uint8_t key[12], small[256], *val = small;
    size_t len;

    b->change_seq = b->change_rev == rev ? b->change_seq + 1 : 0;
    b->change_rev = rev;
    e->time_ms = cmd->time_ms;
    len = dossier__store__v1__change_entry__get_packed_size(e);
    if (len > sizeof(small) && !(val = malloc(len)))
        return DOSSIER_NOMEM;
    dossier__store__v1__change_entry__pack(e, val);
    store_change_key(key, rev, b->change_seq);
    rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[STORE_CHANGES],
                                 (const char *)key, sizeof(key),
                                 (const char *)val, len);
    if (val != small)
        free(val);
    /* One index row per change (a subject's records are found through the
     * subject's row: cheaper on the write path than a second one). */
    {
        uint8_t ix[STORE_CHANGE_INDEX_KEY_MAX];
        enum store_family family;
        size_t ixlen = store_change_index_key(e, key, ix, &family);
        if (ixlen)
            rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[family],
                                         (const char *)ix, ixlen, "", 0);
    }
    return 0;
}

/* Takes out of the feed the changes of subject @sp, or only those of its
 * record @rid (NULL: all) before revision @before. Errors: DOSSIER_NOMEM. */
static int changes_forget(struct store_batch *b, const uint8_t *sp,
                          const uint8_t *rid, uint64_t before);

/* Takes out of the feed the changes of record @rid (whose subject is @sp,
 * NULL for none) before revision @before, with their index rows: through
 * the subject's index, or the record index for a record without one.
 * Errors: DOSSIER_NOMEM. */
static int record_changes_forget(struct store_batch *b, const uint8_t *rid,
                                 const uint8_t *sp, uint64_t before);

/* A change of record @rid of kind @kind: @packed is the StoredRecord as
 * stored (after a put, before a delete). */
static int change_record(struct store_batch *b, const Command *cmd,
                         uint64_t rev, int type, const char *kind,
                         const uint8_t *rid, const ProtobufCBinaryData *subject,
                         const uint8_t *packed, size_t len)
{
    Dossier__Store__V1__ChangeEntry e = DOSSIER__STORE__V1__CHANGE_ENTRY__INIT;
    e.type = type;
    e.kind = (char *)kind;
    e.rid = (ProtobufCBinaryData){STORE_RID_BYTES, (uint8_t *)rid};
    e.subject = *subject;
    e.record = (ProtobufCBinaryData){len, (uint8_t *)packed};
    return change_put(b, cmd, rev, &e);
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

/* The link index (section "Links" below). Rows to delete are collected
 * into a keylist before anything is written, so a failure leaves the batch
 * as it was. */
struct keylist;
static int links_valid(const Dossier__Store__V1__PutOp *op);
static int links_collect(struct store_batch *b, const char *kind,
                         const uint8_t *rid, int outgoing, int incoming,
                         struct keylist **del);
static void links_delete(struct store_batch *b, const struct keylist *del);
static void links_put(struct store_batch *b,
                      const Dossier__Store__V1__PutOp *op);
static void links_release(struct keylist *del);

static int apply_put(struct store_batch *b, const Command *cmd,
                     struct store_result *res)
{
    const Dossier__Store__V1__PutOp *op = cmd->put;
    struct store *s = b->s;
    struct dossier_status *st = &res->status;
    StoredRecord *old = NULL;
    SubjectKey *sk = NULL;
    StoredRecord rec = DOSSIER__STORE__V1__STORED_RECORD__INIT;
    struct keylist *old_links = NULL;
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
    if (!links_valid(op))
        return bad_command(res, "put link");

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
        if (!sk) {
            /* A subject merged into another (meanwhile) gets no key of its
             * own: the proposer seals again under that subject's. */
            uint8_t root[STORE_SP_BYTES];
            rc = store_subject_root(s, b, op->subject.data, root, st);
            if (rc)
                goto out;
            if (memcmp(root, op->subject.data, STORE_SP_BYTES) != 0) {
                rc = err_set(st, DOSSIER_RETRY, "the subject was merged "
                             "into another");
                goto out;
            }
            /* A new key must be wrapped under the version in use now: a
             * rotation that began after it was proposed would otherwise
             * leave it under the old master key. */
            uint32_t want;
            rc = store_wrap_version(b, &want, st);
            if (rc)
                goto out;
            if (want && op->new_subject_key->kek_version != want) {
                rc = err_set(st, DOSSIER_RETRY, "new subject keys are "
                             "wrapped under master key version %u now",
                             want);
                goto out;
            }
        }
    }

    /* The links it had go, with their mirrors (a Put replaces them). */
    if (old && old->n_links) {
        rc = links_collect(b, op->kind, op->rid.data, 1, 0, &old_links);
        if (rc) {
            err_set(st, rc, rc == DOSSIER_NOMEM ? "out of memory"
                                                : "a link row is malformed");
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
    rec.n_links = (uint32_t)op->n_links;
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
    links_delete(b, old_links);
    links_put(b, op);
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
    /* Failing memory stops the node (cluster.c): no undoing here. */
    rc = change_record(b, cmd, rec.version, DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_PUT,
                       op->kind, op->rid.data, &op->subject, buf, len);
    free(buf);
    if (rc) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    b->revision++;
    res->version = rec.version;
    res->created = old == NULL;
    res->updated_at_ms = rec.updated_at_ms;
    rc = err_ok(st);
out:
    links_release(old_links);
    if (old)
        dossier__store__v1__stored_record__free_unpacked(old, NULL);
    if (sk)
        dossier__store__v1__subject_key__free_unpacked(sk, NULL);
    return rc;
}

/* What the feed keeps of a record that went (deleted or expired whole):
 * which record it was, not what it held: the sealed id, subject, version
 * and times, no fields, index keys or links. Packed into *@buf (free()).
 * Errors: DOSSIER_NOMEM. */
static int pack_gone(const StoredRecord *old, uint8_t **buf, size_t *len)
{
    StoredRecord gone = DOSSIER__STORE__V1__STORED_RECORD__INIT;
    gone.kind = old->kind;
    gone.subject = old->subject;
    gone.dek_id = old->dek_id;
    gone.version = old->version;
    gone.created_at_ms = old->created_at_ms;
    gone.updated_at_ms = old->updated_at_ms;
    gone.sealed_id = old->sealed_id;
    *len = dossier__store__v1__stored_record__get_packed_size(&gone);
    *buf = malloc(*len ? *len : 1);
    if (!*buf)
        return DOSSIER_NOMEM;
    dossier__store__v1__stored_record__pack(&gone, *buf);
    return 0;
}

static int apply_delete(struct store_batch *b, const Command *cmd,
                        struct store_result *res)
{
    const Dossier__Store__V1__DeleteOp *op = cmd->delete_;
    struct store *s = b->s;
    struct dossier_status *st = &res->status;
    StoredRecord *old = NULL;
    struct keylist *links = NULL;
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
    /* Its links go, and the links of other records to it. */
    rc = links_collect(b, op->kind, op->rid.data, old->n_links != 0, 1,
                       &links);
    if (rc) {
        err_set(st, rc, rc == DOSSIER_NOMEM ? "out of memory"
                                            : "a link row is malformed");
        goto out;
    }
    links_delete(b, links);
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
    {
        /* The feed keeps which record went, not what it held (pack_gone),
         * and its earlier changes leave the feed. */
        size_t len = 0;
        uint8_t *buf = NULL;

        rc = pack_gone(old, &buf, &len);
        if (rc == 0)
            rc = record_changes_forget(
                b, op->rid.data,
                old->subject.len == STORE_SP_BYTES ? old->subject.data : NULL,
                b->revision + 1);
        if (rc == 0) {
            rc = change_record(b, cmd, b->revision + 1,
                               DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_DELETE,
                               op->kind, op->rid.data, &old->subject, buf,
                               len);
        }
        free(buf);
        if (rc) {
            rc = err_set(st, DOSSIER_NOMEM, "out of memory");
            goto out;
        }
    }
    b->revision++;
    res->version = old->version;
    rc = err_ok(st);
out:
    links_release(links);
    dossier__store__v1__stored_record__free_unpacked(old, NULL);
    return rc;
}

/* Packs @m into @family at @key in @b; with @copy, also unpacks what was
 * stored into *@copy (for a registry, once the batch commits).
 * Errors: DOSSIER_NOMEM. */
static int put_pb(struct store_batch *b, enum store_family f,
                  const uint8_t *key, size_t klen, const ProtobufCMessage *m,
                  ProtobufCMessage **copy)
{
    uint8_t small[512], *buf = small;
    size_t len = protobuf_c_message_get_packed_size(m);
    if (len > sizeof(small) && !(buf = malloc(len)))
        return DOSSIER_NOMEM;
    protobuf_c_message_pack(m, buf);
    if (copy)
        *copy = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
    if (!copy || *copy)
        rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[f], (const char *)key,
                                     klen, (const char *)buf, len);
    if (buf != small)
        free(buf);
    return copy && !*copy ? DOSSIER_NOMEM : 0;
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
    if (!(p = calloc(1, sizeof(*p))) ||
        put_pb(b, STORE_SCHEMA, (const uint8_t *)def.kind, strlen(def.kind),
               &def.base, (ProtobufCMessage **)&p->schema) != 0) {
        free(p);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
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
/* Purposes, consent, restriction, erasure */

static int apply_define_segment(struct store_batch *b, const Command *cmd,
                                struct store_result *res)
{
    const Dossier__Store__V1__DefineSegmentOp *op = cmd->define_segment;
    Dossier__V1__Segment def;
    uint8_t key[1 + POLICY_NAME_MAX];
    size_t n;

    if (!op->segment || !policy_name_valid(op->segment->name) ||
        !schema_name_valid(op->segment->kind))
        return bad_command(res, "define segment");
    def = *op->segment;
    def.version = b->revision + 1;
    n = strlen(def.name);
    key[0] = 'g';
    memcpy(key + 1, def.name, n);
    if (put_pb(b, STORE_POLICY, key, 1 + n, &def.base, NULL) != 0)
        return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    b->revision++;
    res->version = b->revision;
    return err_ok(&res->status);
}

static int apply_define_purpose(struct store_batch *b, const Command *cmd,
                                struct store_result *res)
{
    const Dossier__Store__V1__DefinePurposeOp *op = cmd->define_purpose;
    struct dossier_status *st = &res->status;
    struct pending_purpose *p;
    Dossier__V1__Purpose def;
    uint8_t key[1 + POLICY_NAME_MAX];
    size_t n;
    int rc;

    if (!op->purpose)
        return bad_command(res, "define purpose");
    rc = policy_check_definition(op->purpose, st);
    if (rc)
        return rc;
    def = *op->purpose;
    def.builtin = 0;
    def.version = b->revision + 1;
    n = strlen(def.name);
    key[0] = 'p';
    memcpy(key + 1, def.name, n);
    if (!(p = calloc(1, sizeof(*p))) ||
        put_pb(b, STORE_POLICY, key, 1 + n, &def.base,
               (ProtobufCMessage **)&p->purpose) != 0) {
        free(p);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    p->version = def.version;
    *b->purposes_tail = p;
    b->purposes_tail = &p->next;
    b->revision++;
    res->version = b->revision;
    return err_ok(st);
}

static int apply_consent(struct store_batch *b, const Command *cmd,
                         struct store_result *res)
{
    const Dossier__Store__V1__ConsentOp *op = cmd->consent;
    Dossier__Store__V1__StoredConsent sc =
        DOSSIER__STORE__V1__STORED_CONSENT__INIT;
    uint8_t key[STORE_SP_BYTES + 1 + POLICY_NAME_MAX], root[STORE_SP_BYTES];
    size_t n;

    if (op->subject.len != STORE_SP_BYTES || !policy_name_valid(op->purpose) ||
        (op->state != DOSSIER__V1__CONSENT_STATE__CONSENT_STATE_GRANTED &&
         op->state != DOSSIER__V1__CONSENT_STATE__CONSENT_STATE_WITHDRAWN) ||
        !policy_label_valid(op->source) ||
        !policy_label_valid(op->notice_version))
        return bad_command(res, "consent");
    /* A subject merged into another: the decision is that person's (the
     * proposer resolved it too, but a merge may have come in between). */
    if (store_subject_root(b->s, b, op->subject.data, root, &res->status))
        return res->status.code;
    b->revision++;
    sc.purpose = op->purpose;
    sc.state = op->state;
    sc.source = op->source;
    sc.notice_version = op->notice_version;
    sc.time_ms = cmd->time_ms;
    sc.principal = cmd->principal;
    sc.revision = b->revision;
    n = strlen(op->purpose);
    memcpy(key, root, STORE_SP_BYTES);
    key[STORE_SP_BYTES] = 'c';
    memcpy(key + STORE_SP_BYTES + 1, op->purpose, n);
    /* Failing memory stops the node (cluster.c), so the batch needs no
     * undoing here. */
    if (put_pb(b, STORE_CONSENT, key, STORE_SP_BYTES + 1 + n, &sc.base,
               NULL) != 0)
        return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    key[STORE_SP_BYTES] = 'h';
    store_u64_be(key + STORE_SP_BYTES + 1, b->revision);
    if (put_pb(b, STORE_CONSENT, key, STORE_SP_BYTES + 9, &sc.base, NULL))
        return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    {
        Dossier__Store__V1__ChangeEntry e =
            DOSSIER__STORE__V1__CHANGE_ENTRY__INIT;
        e.type = DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_CONSENT;
        e.subject = (ProtobufCBinaryData){STORE_SP_BYTES, root};
        e.purpose = op->purpose;
        e.state = op->state;
        if (change_put(b, cmd, b->revision, &e))
            return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    }
    res->version = b->revision;
    res->updated_at_ms = cmd->time_ms;
    return err_ok(&res->status);
}

static int apply_restrict(struct store_batch *b, const Command *cmd,
                          struct store_result *res)
{
    const Dossier__Store__V1__RestrictOp *op = cmd->restriction;
    uint8_t key[STORE_SP_BYTES + 1];

    if (op->subject.len != STORE_SP_BYTES)
        return bad_command(res, "restrict");
    /* A subject merged into another: the restriction is that person's. */
    if (store_subject_root(b->s, b, op->subject.data, key, &res->status))
        return res->status.code;
    key[STORE_SP_BYTES] = 'r';
    if (op->restricted)
        rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[STORE_CONSENT],
                                     (const char *)key, sizeof(key), "", 0);
    else
        rocksdb_writebatch_wi_delete_cf(b->wb, b->s->cf[STORE_CONSENT],
                                        (const char *)key, sizeof(key));
    b->revision++;
    res->version = b->revision;
    return err_ok(&res->status);
}

/* Keys under @prefix in @family as this batch sees them: *@out, an array
 * of *@n malloc'd copies (free with keys_free). */
struct keylist {
    uint8_t **keys;
    size_t *lens;
    size_t n, cap;
};

static void keys_free(struct keylist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i]);
    free(l->keys);
    free(l->lens);
}

static int keys_under(struct store_batch *b, enum store_family family,
                      const uint8_t *prefix, size_t plen, struct keylist *l)
{
    struct store *s = b->s;
    rocksdb_iterator_t *base, *it;
    int rc = 0;

    memset(l, 0, sizeof(*l));
    base = rocksdb_create_iterator_cf(s->db, s->ro, s->cf[family]);
    it = rocksdb_writebatch_wi_create_iterator_with_base_cf(b->wb, base,
                                                            s->cf[family]);
    for (rocksdb_iter_seek(it, (const char *)prefix, plen);
         rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen < plen || memcmp(k, prefix, plen) != 0)
            break;
        if (l->n == l->cap) {
            size_t cap = l->cap ? 2 * l->cap : 16;
            uint8_t **keys = realloc(l->keys, cap * sizeof(*keys));
            size_t *lens = keys ? realloc(l->lens, cap * sizeof(*lens)) : NULL;
            if (keys)
                l->keys = keys;
            if (!keys || !lens) {
                rc = DOSSIER_NOMEM;
                break;
            }
            l->lens = lens;
            l->cap = cap;
        }
        if (!(l->keys[l->n] = malloc(klen ? klen : 1))) {
            rc = DOSSIER_NOMEM;
            break;
        }
        memcpy(l->keys[l->n], k, klen);
        l->lens[l->n++] = klen;
    }
    rocksdb_iter_destroy(it);
    if (rc)
        keys_free(l);
    return rc;
}

/* Deletes a change found through its subject index row @k (@len bytes:
 * sp, change key, rid), and that row. */
static void change_forget_indexed(struct store_batch *b, const uint8_t *k,
                                  size_t len)
{
    rocksdb_writebatch_wi_delete_cf(b->wb, b->s->cf[STORE_CHANGES],
                                    (const char *)k + STORE_SP_BYTES, 12);
    rocksdb_writebatch_wi_delete_cf(b->wb, b->s->cf[STORE_CHANGE_INDEX],
                                    (const char *)k, len);
}

static int changes_forget(struct store_batch *b, const uint8_t *sp,
                          const uint8_t *rid, uint64_t before)
{
    struct keylist l;
    if (keys_under(b, STORE_CHANGE_INDEX, sp, STORE_SP_BYTES, &l))
        return DOSSIER_NOMEM;
    for (size_t i = 0; i < l.n; i++) {
        const uint8_t *k = l.keys[i];
        if (l.lens[i] < STORE_SP_BYTES + 12)
            continue;
        if (rid && (l.lens[i] != STORE_SP_BYTES + 12 + STORE_RID_BYTES ||
                    memcmp(k + STORE_SP_BYTES + 12, rid, STORE_RID_BYTES) ||
                    store_be_u64(k + STORE_SP_BYTES) >= before))
            continue;
        change_forget_indexed(b, k, l.lens[i]);
    }
    keys_free(&l);
    return 0;
}

static int record_changes_forget(struct store_batch *b, const uint8_t *rid,
                                 const uint8_t *sp, uint64_t before)
{
    struct keylist l;
    if (sp)
        return changes_forget(b, sp, rid, before);
    if (keys_under(b, STORE_CHANGE_RECORD, rid, STORE_RID_BYTES, &l))
        return DOSSIER_NOMEM;
    for (size_t i = 0; i < l.n; i++) {
        const uint8_t *k = l.keys[i];
        if (l.lens[i] != STORE_RID_BYTES + 12 ||
            store_be_u64(k + STORE_RID_BYTES) >= before)
            continue;
        rocksdb_writebatch_wi_delete_cf(b->wb, b->s->cf[STORE_CHANGES],
                                        (const char *)k + STORE_RID_BYTES,
                                        12);
        rocksdb_writebatch_wi_delete_cf(b->wb, b->s->cf[STORE_CHANGE_RECORD],
                                        (const char *)k, l.lens[i]);
    }
    keys_free(&l);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Rectification (Art. 16): a Put of the corrected record, and a row of
 * the subject's history. */

static int apply_rectify(struct store_batch *b, const Command *cmd,
                         struct store_result *res)
{
    const Dossier__Store__V1__RectifyOp *op = cmd->rectify;
    Dossier__Store__V1__StoredRectification row =
        DOSSIER__STORE__V1__STORED_RECTIFICATION__INIT;
    Command put = *cmd;
    uint8_t key[STORE_SP_BYTES + 1 + 8];
    int rc;

    /* Only an update of an existing record of a subject. */
    if (!op->put || op->put->subject.len != STORE_SP_BYTES ||
        op->put->expect_case !=
            DOSSIER__STORE__V1__PUT_OP__EXPECT_EXPECTED_VERSION ||
        op->put->expected_version == 0 ||
        op->n_fields == 0 || op->n_fields > SCHEMA_FIELDS_MAX)
        return bad_command(res, "rectify");
    for (size_t i = 0; i < op->n_fields; i++)
        if (!schema_name_valid(op->fields[i]))
            return bad_command(res, "rectify field");
    put.op_case = DOSSIER__STORE__V1__COMMAND__OP_PUT;
    put.put = op->put;
    rc = apply_put(b, &put, res);
    if (rc)
        return rc;
    /* The inaccurate values leave the change feed with the record's
     * earlier changes; the rectified record is the change just made. */
    if (record_changes_forget(b, op->put->rid.data, op->put->subject.data,
                              res->version))
        return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    row.kind = op->put->kind;
    row.rid = op->put->rid;
    row.n_fields = op->n_fields;
    row.fields = op->fields;
    row.time_ms = cmd->time_ms;
    row.principal = cmd->principal;
    row.reference = cmd->reference;
    row.revision = res->version;
    memcpy(key, op->put->subject.data, STORE_SP_BYTES);
    key[STORE_SP_BYTES] = 'f';
    store_u64_be(key + STORE_SP_BYTES + 1, res->version);
    /* Failing memory stops the node (cluster.c): no undoing here. */
    if (put_pb(b, STORE_CONSENT, key, sizeof(key), &row.base, NULL))
        return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    return 0;
}

/* ------------------------------------------------------------------ */
/* Principals in the replicated state. */

/* Whether the state as @b sees it has an admin principal other than
 * @except into *@found. */
struct other_admin {
    struct store_batch *b;
    const char *except;
    int found;
    int rc;
    struct dossier_status *st;
};

static int other_admin_cb(void *arg, const uint8_t *key, size_t klen)
{
    struct other_admin *o = arg;
    Dossier__Store__V1__StoredPrincipal *sp;
    char *v;
    size_t vlen;

    if (klen - 1 == strlen(o->except) &&
        memcmp(key + 1, o->except, klen - 1) == 0)
        return 0;
    o->rc = store_get_raw(o->b->s, o->b, STORE_POLICY, key, klen, &v, &vlen,
                          o->st);
    if (o->rc)
        return 1;
    if (!v)
        return 0;
    sp = dossier__store__v1__stored_principal__unpack(NULL, vlen,
                                                      (uint8_t *)v);
    rocksdb_free(v);
    if (!sp) {
        o->rc = err_set(o->st, DOSSIER_CORRUPT, "a principal is corrupt");
        return 1;
    }
    o->found = auth_role_parse(sp->role) == AUTH_ADMIN;
    dossier__store__v1__stored_principal__free_unpacked(sp, NULL);
    return o->found;
}

static int apply_principal(struct store_batch *b, const Command *cmd,
                           struct store_result *res)
{
    const Dossier__Store__V1__PrincipalOp *op = cmd->principal_op;
    uint8_t akey[1 + 64], tkey[33];
    size_t n = strlen(op->name), vlen;
    char *v = NULL;
    int rc, booted;

    if (!auth_principal_name_valid(op->name))
        return bad_command(res, "principal name");
    akey[0] = 'a';
    memcpy(akey + 1, op->name, n);
    rc = store_get_raw(b->s, b, STORE_POLICY, akey, n + 1, &v, &vlen,
                       &res->status);
    if (rc)
        return rc;
    if (op->remove) {
        Dossier__Store__V1__StoredPrincipal *old;
        if (!v)
            return err_set(&res->status, DOSSIER_NOT_FOUND,
                           "no principal %s in the cluster's state", op->name);
        old = dossier__store__v1__stored_principal__unpack(NULL, vlen,
                                                           (uint8_t *)v);
        rocksdb_free(v);
        if (!old || old->token_hash.len != 32) {
            if (old)
                dossier__store__v1__stored_principal__free_unpacked(old, NULL);
            return err_set(&res->status, DOSSIER_CORRUPT,
                           "principal %s is corrupt", op->name);
        }
        if (op->keep_an_admin && auth_role_parse(old->role) == AUTH_ADMIN) {
            struct other_admin o = {b, op->name, 0, 0, &res->status};
            int cb = store_batch_keys(b, STORE_POLICY, (const uint8_t *)"a",
                                      1, other_admin_cb, &o);
            if (cb && !o.found && !o.rc)
                o.rc = err_set(&res->status, cb, "out of memory");
            if (o.rc || !o.found) {
                dossier__store__v1__stored_principal__free_unpacked(old,
                                                                    NULL);
                return o.rc ? o.rc
                            : err_set(&res->status,
                                      DOSSIER_FAILED_PRECONDITION,
                                      "%s is the last admin in the "
                                      "cluster's state, and nodes run with "
                                      "--require-auth: without an admin "
                                      "nobody could add principals again "
                                      "(the bootstrap token is spent); add "
                                      "another admin first",
                                      op->name);
            }
        }
        tkey[0] = 't';
        memcpy(tkey + 1, old->token_hash.data, 32);
        dossier__store__v1__stored_principal__free_unpacked(old, NULL);
        rocksdb_writebatch_wi_delete_cf(b->wb, b->s->cf[STORE_POLICY],
                                        (const char *)akey, n + 1);
        rocksdb_writebatch_wi_delete_cf(b->wb, b->s->cf[STORE_POLICY],
                                        (const char *)tkey, sizeof(tkey));
        b->principals_delta--;
    } else {
        Dossier__Store__V1__StoredPrincipal sp =
            DOSSIER__STORE__V1__STORED_PRINCIPAL__INIT;
        if (v) {
            rocksdb_free(v);
            return err_set(&res->status, DOSSIER_ALREADY_EXISTS,
                           "principal %s exists already", op->name);
        }
        if (op->token_hash.len != 32 || !auth_role_parse(op->role) ||
            strlen(op->purposes) > 500)
            return bad_command(res, "principal");
        /* The "bootstrapped" row stays when every principal is removed,
         * so the bootstrap token adds the first principal ever, once. */
        rc = store_get_raw(b->s, b, STORE_DEFAULT,
                           (const uint8_t *)STORE_BOOTSTRAPPED_KEY,
                           sizeof(STORE_BOOTSTRAPPED_KEY) - 1, &v, &vlen,
                           &res->status);
        if (rc)
            return rc;
        booted = v != NULL ||
                 store_principal_count(b->s) + (uint64_t)b->principals_delta >
                     0;
        rocksdb_free(v);
        v = NULL;
        if (op->first_only && booted)
            return err_set(&res->status, DOSSIER_FAILED_PRECONDITION,
                           "the cluster has had a principal already: the "
                           "bootstrap token adds only the first, once");
        tkey[0] = 't';
        memcpy(tkey + 1, op->token_hash.data, 32);
        rc = store_get_raw(b->s, b, STORE_POLICY, tkey, sizeof(tkey), &v,
                           &vlen, &res->status);
        if (rc)
            return rc;
        if (v) {
            rocksdb_free(v);
            return err_set(&res->status, DOSSIER_ALREADY_EXISTS,
                           "that token belongs to another principal");
        }
        sp.name = op->name;
        sp.role = op->role;
        sp.token_hash = op->token_hash;
        sp.purposes = op->purposes[0] ? op->purposes : (char *)"*";
        sp.created_ms = cmd->time_ms;
        sp.created_by = cmd->principal;
        if (put_pb(b, STORE_POLICY, akey, n + 1, &sp.base, NULL))
            return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
        rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[STORE_POLICY],
                                     (const char *)tkey, sizeof(tkey),
                                     op->name, n);
        if (!booted) {
            uint8_t rev[8];
            store_u64_be(rev, b->revision + 1);
            rocksdb_writebatch_wi_put_cf(
                b->wb, b->s->cf[STORE_DEFAULT], STORE_BOOTSTRAPPED_KEY,
                sizeof(STORE_BOOTSTRAPPED_KEY) - 1, (const char *)rev, 8);
        }
        b->principals_delta++;
    }
    b->revision++;
    res->version = b->revision;
    res->updated_at_ms = cmd->time_ms;
    return err_ok(&res->status);
}

/* ------------------------------------------------------------------ */
/* Retention: fields past their kind's retention are dropped. */

/* The field an index key "kind 0x00 field 0x00 blind rid" belongs to: 1
 * if it is @field. */
static int index_key_of(const ProtobufCBinaryData *k, const char *field)
{
    const uint8_t *p = memchr(k->data, 0, k->len), *q;
    size_t n = strlen(field);
    if (!p)
        return 0;
    p++;
    q = memchr(p, 0, k->len - (size_t)(p - k->data));
    return q && (size_t)(q - p) == n && memcmp(p, field, n) == 0;
}

/* Whether subject @subject (a pseudonym, or empty: none) is restricted as
 * @b sees it: 1, 0, or an error code in @res. */
static int batch_restricted(struct store_batch *b,
                            const ProtobufCBinaryData *subject,
                            struct store_result *res)
{
    uint8_t key[STORE_SP_BYTES + 1];
    size_t vlen;
    char *v;
    int rc;

    if (subject->len != STORE_SP_BYTES)
        return 0;
    memcpy(key, subject->data, STORE_SP_BYTES);
    key[STORE_SP_BYTES] = 'r';
    rc = store_get_raw(b->s, b, STORE_CONSENT, key, sizeof(key), &v, &vlen,
                       &res->status);
    if (rc)
        return -rc;
    rocksdb_free(v);
    return v != NULL;
}

/* Drops from the record of @item the listed fields that are past their
 * retention at @now; adds the count to *@dropped. A record of a
 * restricted subject keeps them (Art. 18: storage only) until the
 * restriction is lifted. */
static int retention_item(struct store_batch *b, const Command *cmd,
                          const Dossier__Store__V1__RetentionOp__Item *item,
                          int64_t now, uint64_t *dropped,
                          struct store_result *res)
{
    const KindSchema *k = batch_schema(b, item->kind);
    StoredRecord *r = NULL;
    uint8_t key[STORE_KEY_MAX];
    size_t kept = 0, kept_ix = 0, gone = 0, klen;
    int rc;

    if (!k || item->rid.len != STORE_RID_BYTES)
        return 0; /* the kind went away: nothing to do */
    rc = store_read_record(b->s, b, item->kind, item->rid.data, &r,
                           &res->status);
    if (rc == DOSSIER_NOT_FOUND)
        return 0; /* deleted or erased meanwhile */
    if (rc)
        return rc;
    rc = batch_restricted(b, &r->subject, res);
    if (rc) {
        dossier__store__v1__stored_record__free_unpacked(r, NULL);
        return rc < 0 ? -rc : 0; /* restricted: it stays as it is */
    }
    for (size_t i = 0; i < r->n_fields; i++) {
        const char *name = r->fields[i]->name;
        const FieldSchema *f = schema_field(k, name);
        int listed = 0, expired;
        for (size_t j = 0; j < item->n_fields; j++)
            listed |= strcmp(item->fields[j], name) == 0;
        expired = listed && store_field_past_retention(f, r, now);
        if (!expired) {
            r->fields[kept++] = r->fields[i];
            continue;
        }
        /* Its index rows go with it. */
        kept_ix = 0;
        for (size_t j = 0; j < r->n_index_keys; j++) {
            if (index_key_of(&r->index_keys[j], name)) {
                rocksdb_writebatch_wi_delete_cf(
                    b->wb, b->s->cf[STORE_INDEX],
                    (const char *)r->index_keys[j].data,
                    r->index_keys[j].len);
                free(r->index_keys[j].data); /* protobuf-c's malloc */
            } else {
                r->index_keys[kept_ix++] = r->index_keys[j];
            }
        }
        r->n_index_keys = kept_ix;
        dossier__store__v1__sealed_field__free_unpacked(r->fields[i], NULL);
        gone++;
    }
    if (gone) {
        r->n_fields = kept;
        r->version = b->revision; /* the revision of its last change */
        klen = store_record_key(key, item->kind, item->rid.data);
        size_t len = dossier__store__v1__stored_record__get_packed_size(r);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf || put_pb(b, STORE_RECORD, key, klen, &r->base, NULL))
            rc = err_set(&res->status, DOSSIER_NOMEM, "out of memory");
        /* The expired values leave the feed too: the record's earlier
         * changes go, the expiry carries what is left. */
        if (rc == 0 &&
            record_changes_forget(b, item->rid.data,
                                  r->subject.len == STORE_SP_BYTES
                                      ? r->subject.data
                                      : NULL,
                                  b->revision))
            rc = err_set(&res->status, DOSSIER_NOMEM, "out of memory");
        if (rc == 0) {
            dossier__store__v1__stored_record__pack(r, buf);
            if (change_record(b, cmd, b->revision,
                              DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_EXPIRE,
                              item->kind, item->rid.data, &r->subject, buf,
                              len))
                rc = err_set(&res->status, DOSSIER_NOMEM, "out of memory");
        }
        free(buf);
        *dropped += gone;
    }
    dossier__store__v1__stored_record__free_unpacked(r, NULL);
    return rc;
}

static int apply_retention(struct store_batch *b, const Command *cmd,
                           struct store_result *res)
{
    const Dossier__Store__V1__RetentionOp *op = cmd->retention;
    uint64_t dropped = 0;
    int rc = 0;

    /* Every item is checked before any is applied: a command fails whole. */
    for (size_t i = 0; i < op->n_items; i++)
        if (!schema_name_valid(op->items[i]->kind) ||
            op->items[i]->rid.len != STORE_RID_BYTES)
            return bad_command(res, "retention item");
    b->revision++;
    for (size_t i = 0; rc == 0 && i < op->n_items; i++)
        rc = retention_item(b, cmd, op->items[i], cmd->time_ms, &dropped,
                            res);
    if (rc) {
        b->revision--;
        return rc;
    }
    res->version = b->revision;
    res->deleted = dropped; /* fields dropped */
    res->index = b->applied;
    res->updated_at_ms = cmd->time_ms;
    return err_ok(&res->status);
}

/* Whole records past their kind's record retention at the command's
 * time go, as a Delete would take them. */

/* Deletes the record of @item if it is still past its retention and its
 * subject is not restricted (Art. 18: storage only); its expiry goes into
 * the feed at revision @rev. Adds 1 to *@expired. */
static int expire_record(struct store_batch *b, const Command *cmd,
                         const Dossier__Store__V1__RecordRetentionOp__Item *it,
                         uint64_t rev, uint64_t *expired,
                         struct store_result *res)
{
    struct store *s = b->s;
    StoredRecord *old = NULL;
    struct keylist *links = NULL;
    uint8_t key[STORE_KEY_MAX], *buf = NULL;
    size_t klen, len;
    int rc;

    rc = store_read_record(s, b, it->kind, it->rid.data, &old, &res->status);
    if (rc == DOSSIER_NOT_FOUND)
        return err_ok(&res->status); /* deleted or erased meanwhile */
    if (rc)
        return rc;
    /* Updated meanwhile, or its kind's retention changed: it stays. */
    if (!store_record_past_retention(batch_schema(b, it->kind), old,
                                     cmd->time_ms))
        goto out;
    /* Restricted meanwhile (or before: the sweeper may not know yet). */
    rc = batch_restricted(b, &old->subject, res);
    if (rc) {
        rc = rc < 0 ? -rc : 0;
        goto out;
    }
    rc = links_collect(b, it->kind, it->rid.data, old->n_links != 0, 1,
                       &links);
    if (rc) {
        err_set(&res->status, rc, rc == DOSSIER_NOMEM
                                      ? "out of memory"
                                      : "a link row is malformed");
        goto out;
    }
    /* The feed keeps which record expired, not its expired values. */
    if (pack_gone(old, &buf, &len)) {
        rc = err_set(&res->status, DOSSIER_NOMEM, "out of memory");
        goto out;
    }
    /* Failing memory stops the node (cluster.c): no undoing below. */
    links_delete(b, links);
    for (size_t i = 0; i < old->n_index_keys; i++)
        rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_INDEX],
                                        (const char *)old->index_keys[i].data,
                                        old->index_keys[i].len);
    if (old->subject.len == STORE_SP_BYTES) {
        klen = store_membership_key(key, old->subject.data, it->kind,
                                    it->rid.data);
        rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_SUBJECT],
                                        (const char *)key, klen);
    }
    /* Its earlier changes leave the feed: the values expired too. */
    if (record_changes_forget(b, it->rid.data,
                              old->subject.len == STORE_SP_BYTES
                                  ? old->subject.data
                                  : NULL,
                              rev))
        rc = err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    klen = store_record_key(key, it->kind, it->rid.data);
    rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_RECORD],
                                    (const char *)key, klen);
    if (rc == 0) {
        Dossier__Store__V1__ChangeEntry e =
            DOSSIER__STORE__V1__CHANGE_ENTRY__INIT;
        e.type = DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_EXPIRE;
        e.kind = it->kind;
        e.rid = it->rid;
        e.subject = old->subject;
        e.record = (ProtobufCBinaryData){len, buf};
        e.whole_record = 1;
        if (change_put(b, cmd, rev, &e))
            rc = err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    }
    if (rc == 0)
        (*expired)++;
out:
    free(buf);
    links_release(links);
    dossier__store__v1__stored_record__free_unpacked(old, NULL);
    return rc;
}

static int apply_record_retention(struct store_batch *b, const Command *cmd,
                                  struct store_result *res)
{
    const Dossier__Store__V1__RecordRetentionOp *op = cmd->record_retention;
    uint64_t expired = 0;
    int rc = 0;

    for (size_t i = 0; i < op->n_items; i++)
        if (!schema_name_valid(op->items[i]->kind) ||
            op->items[i]->rid.len != STORE_RID_BYTES)
            return bad_command(res, "record retention item");
    /* One revision for the sweep, a change (seq) per record. */
    b->revision++;
    for (size_t i = 0; rc == 0 && i < op->n_items; i++)
        rc = expire_record(b, cmd, op->items[i], b->revision, &expired, res);
    if (rc) {
        b->revision--;
        return rc;
    }
    res->version = b->revision;
    res->deleted = expired; /* records deleted */
    res->index = b->applied;
    res->updated_at_ms = cmd->time_ms;
    return err_ok(&res->status);
}

/* ------------------------------------------------------------------ */
/* Tracked GDPR requests: "q" + id in the policy family. */

#define REQUEST_ID_MAX 32

static int request_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > REQUEST_ID_MAX)
        return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
    return 1;
}

/* GDPR Art. 12(3): two further months. */
#define REQUEST_EXTENSION_MS (60LL * 24 * 3600 * 1000)

/* The tracked request @id as this batch sees it into *@out (free with
 * dossier__store__v1__tracked_request__free_unpacked), checked to be of
 * @kind, for subject @sp and not yet executed. */
static int request_open(struct store_batch *b, const char *id,
                        const char *kind, const uint8_t *sp,
                        Dossier__Store__V1__TrackedRequest **out,
                        struct store_result *res)
{
    uint8_t key[1 + REQUEST_ID_MAX];
    size_t n = strlen(id), vlen;
    char *v;
    int rc;

    *out = NULL;
    if (!request_id_ok(id))
        return bad_command(res, "request id");
    key[0] = 'q';
    memcpy(key + 1, id, n);
    rc = store_get_raw(b->s, b, STORE_POLICY, key, n + 1, &v, &vlen,
                       &res->status);
    if (rc)
        return rc;
    if (!v)
        return err_set(&res->status, DOSSIER_NOT_FOUND,
                       "no tracked request %s", id);
    *out = dossier__store__v1__tracked_request__unpack(NULL, vlen,
                                                       (const uint8_t *)v);
    rocksdb_free(v);
    if (!*out)
        return err_set(&res->status, DOSSIER_CORRUPT,
                       "tracked request %s is corrupt", id);
    if (strcmp((*out)->kind, kind) != 0)
        rc = err_set(&res->status, DOSSIER_FAILED_PRECONDITION,
                     "request %s is an %s request, not an %s request", id,
                     (*out)->kind, kind);
    else if ((*out)->executed)
        rc = err_set(&res->status, DOSSIER_FAILED_PRECONDITION,
                     "request %s was executed already", id);
    else if ((*out)->subject.len != STORE_SP_BYTES ||
             memcmp((*out)->subject.data, sp, STORE_SP_BYTES) != 0)
        rc = err_set(&res->status, DOSSIER_FAILED_PRECONDITION,
                     "request %s was filed for another subject", id);
    if (rc) {
        dossier__store__v1__tracked_request__free_unpacked(*out, NULL);
        *out = NULL;
    }
    return rc;
}

static int request_put(struct store_batch *b,
                       const Dossier__Store__V1__TrackedRequest *t)
{
    uint8_t key[1 + REQUEST_ID_MAX];
    size_t n = strlen(t->id);
    key[0] = 'q';
    memcpy(key + 1, t->id, n);
    return put_pb(b, STORE_POLICY, key, n + 1, &t->base, NULL);
}

static int apply_request(struct store_batch *b, const Command *cmd,
                         struct store_result *res)
{
    const Dossier__Store__V1__RequestOp *op = cmd->request;
    Dossier__Store__V1__TrackedRequest *t = NULL;
    int rc;

    if (op->subject.len != STORE_SP_BYTES || !request_id_ok(op->id) ||
        (strcmp(op->kind, "erasure") != 0 && strcmp(op->kind, "export") != 0))
        return bad_command(res, "request");
    if (op->action == DOSSIER__STORE__V1__REQUEST_OP__ACTION__FILE) {
        Dossier__Store__V1__TrackedRequest n =
            DOSSIER__STORE__V1__TRACKED_REQUEST__INIT;
        uint8_t key[1 + REQUEST_ID_MAX];
        size_t len = strlen(op->id), vlen;
        char *v;
        if (op->received_ms <= 0 || op->deadline_ms <= op->received_ms)
            return bad_command(res, "request times");
        key[0] = 'q';
        memcpy(key + 1, op->id, len);
        rc = store_get_raw(b->s, b, STORE_POLICY, key, len + 1, &v, &vlen,
                           &res->status);
        if (rc)
            return rc;
        if (v) {
            rocksdb_free(v);
            return err_set(&res->status, DOSSIER_ALREADY_EXISTS,
                           "request %s exists already", op->id);
        }
        n.id = op->id;
        n.kind = op->kind;
        n.subject = op->subject;
        n.reference = cmd->reference;
        n.received_ms = op->received_ms;
        n.deadline_ms = op->deadline_ms;
        n.filed_by = cmd->principal;
        if (request_put(b, &n))
            return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    } else if (op->action == DOSSIER__STORE__V1__REQUEST_OP__ACTION__COMPLETE) {
        if (strcmp(op->kind, "export") != 0 || op->digest.len != 32)
            return bad_command(res, "request completion");
        rc = request_open(b, op->id, "export", op->subject.data, &t, res);
        if (rc)
            return rc;
        t->executed = 1;
        t->executed_ms = cmd->time_ms;
        t->result_index = b->applied;
        t->digest = op->digest; /* borrowed until the put below */
        t->executed_by = cmd->principal;
        rc = request_put(b, t);
        t->digest = (ProtobufCBinaryData){0, NULL};
        t->executed_by = NULL;
        dossier__store__v1__tracked_request__free_unpacked(t, NULL);
        if (rc)
            return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    } else if (op->action == DOSSIER__STORE__V1__REQUEST_OP__ACTION__EXTEND) {
        if (!op->reason[0] || !policy_label_valid(op->reason))
            return bad_command(res, "request extension");
        rc = request_open(b, op->id, op->kind, op->subject.data, &t, res);
        if (rc)
            return rc;
        if (t->original_deadline_ms)
            rc = err_set(&res->status, DOSSIER_FAILED_PRECONDITION,
                         "request %s was extended already: GDPR allows "
                         "one extension",
                         op->id);
        else if (cmd->time_ms > t->deadline_ms)
            rc = err_set(&res->status, DOSSIER_FAILED_PRECONDITION,
                         "request %s is past its deadline: an extension "
                         "must be decided (and the subject told) within the "
                         "first month",
                         op->id);
        if (rc) {
            dossier__store__v1__tracked_request__free_unpacked(t, NULL);
            return rc;
        }
        t->original_deadline_ms = t->deadline_ms;
        t->deadline_ms += REQUEST_EXTENSION_MS;
        t->extended_ms = cmd->time_ms;
        t->extended_by = cmd->principal;       /* borrowed until the put */
        t->extension_reason = op->reason;
        rc = request_put(b, t);
        t->extended_by = NULL;
        t->extension_reason = NULL;
        dossier__store__v1__tracked_request__free_unpacked(t, NULL);
        if (rc)
            return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    } else {
        return bad_command(res, "request action");
    }
    b->revision++;
    res->version = b->revision;
    res->index = b->applied;
    res->updated_at_ms = cmd->time_ms;
    return err_ok(&res->status);
}

static int keylist_push(struct keylist *l, const uint8_t *k, size_t klen);

/* Appends to @l the keys under @prefix in @family, as @b sees them.
 * Errors: DOSSIER_NOMEM. */
static int keys_append(struct store_batch *b, enum store_family family,
                       const uint8_t *prefix, size_t plen, struct keylist *l)
{
    struct keylist more;
    int rc = 0;
    if (keys_under(b, family, prefix, plen, &more))
        return DOSSIER_NOMEM;
    for (size_t i = 0; rc == 0 && i < more.n; i++)
        rc = keylist_push(l, more.keys[i], more.lens[i]);
    keys_free(&more);
    return rc;
}

/* Erases subject op->subject and, when merges joined it to others, the
 * whole person: the subject it was merged into and every subject merged
 * into those (store_erase_subjects), each with a ledger row. */
static int apply_erase(struct store_batch *b, const Command *cmd,
                       struct store_result *res)
{
    const Dossier__Store__V1__EraseOp *op = cmd->erase;
    Dossier__Store__V1__ErasureRecord er =
        DOSSIER__STORE__V1__ERASURE_RECORD__INIT;
    struct store *s = b->s;
    struct keylist subj = {0}, cons = {0}, *links = NULL;
    uint8_t lkey[1 + STORE_SP_BYTES], (*erased)[STORE_SP_BYTES];
    uint8_t (*sps)[STORE_SP_BYTES] = NULL, (*rids)[STORE_RID_BYTES] = NULL;
    Dossier__Store__V1__TrackedRequest *treq = NULL;
    StoredRecord **recs = NULL;
    uint64_t deleted = 0;
    size_t n_sp = 0, n_rids = 0;
    int rc;

    if (op->subject.len != STORE_SP_BYTES)
        return bad_command(res, "erase");
    if (op->request_id[0]) {
        /* Executing a tracked request: it must be a pending erasure
         * request of this subject, checked before anything changes. */
        rc = request_open(b, op->request_id, "erasure", op->subject.data,
                          &treq, res);
        if (rc)
            return rc;
    }
    rc = store_erase_subjects(b, op->subject.data, &sps, &n_sp,
                              &res->status);
    for (size_t i = 0; rc == 0 && i < n_sp; i++)
        if (keys_append(b, STORE_SUBJECT, sps[i], STORE_SP_BYTES, &subj) ||
            keys_append(b, STORE_CONSENT, sps[i], STORE_SP_BYTES, &cons))
            rc = err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    if (rc == 0) {
        erased = realloc(b->erased, (b->n_erased + n_sp) * sizeof(*erased));
        if (erased)
            b->erased = erased;
        else
            rc = err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    }
    /* Read every record first: a failure must leave the batch as it was. */
    if (rc == 0) {
        recs = calloc(subj.n ? subj.n : 1, sizeof(*recs));
        rids = calloc(subj.n ? subj.n : 1, sizeof(*rids));
        if (!recs || !rids)
            rc = err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    }
    for (size_t i = 0; rc == 0 && i < subj.n; i++) {
        const uint8_t *k = subj.keys[i];
        size_t klen = subj.lens[i];
        const uint8_t *nul;
        if (klen == STORE_SP_BYTES)
            continue; /* the data key */
        nul = memchr(k + STORE_SP_BYTES, 0, klen - STORE_SP_BYTES);
        if (!nul || (size_t)(k + klen - nul - 1) != STORE_RID_BYTES) {
            rc = err_set(&res->status, DOSSIER_CORRUPT,
                         "a subject membership key is malformed");
            break;
        }
        rc = store_read_record(s, b, (const char *)k + STORE_SP_BYTES,
                               nul + 1, &recs[i], &res->status);
        if (rc == DOSSIER_NOT_FOUND)
            rc = 0; /* a dangling membership: deleted below */
        /* Its links go, and other records' links to it. */
        if (rc == 0 && recs[i]) {
            memcpy(rids[n_rids++], nul + 1, STORE_RID_BYTES);
            rc = links_collect(b, recs[i]->kind, nul + 1,
                               recs[i]->n_links != 0, 1, &links);
            if (rc)
                err_set(&res->status, rc,
                        rc == DOSSIER_NOMEM ? "out of memory"
                                            : "a link row is malformed");
        }
    }
    /* Merges pending undo keep what they changed: what they kept of these
     * subjects and records goes with them. */
    if (rc == 0)
        rc = store_erase_merges(b, (const uint8_t(*)[STORE_SP_BYTES])sps,
                                n_sp,
                                (const uint8_t(*)[STORE_RID_BYTES])rids,
                                n_rids, &res->status);
    if (rc == 0) {
        links_delete(b, links);
        for (size_t i = 0; i < subj.n; i++) {
            StoredRecord *r = recs[i];
            if (r) {
                uint8_t key[STORE_KEY_MAX];
                const uint8_t *rid = subj.keys[i] + subj.lens[i] -
                                     STORE_RID_BYTES;
                size_t klen = store_record_key(key, r->kind, rid);
                for (size_t j = 0; j < r->n_index_keys; j++)
                    rocksdb_writebatch_wi_delete_cf(
                        b->wb, s->cf[STORE_INDEX],
                        (const char *)r->index_keys[j].data,
                        r->index_keys[j].len);
                rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_RECORD],
                                                (const char *)key, klen);
                deleted++;
            }
            rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_SUBJECT],
                                            (const char *)subj.keys[i],
                                            subj.lens[i]);
        }
        for (size_t i = 0; i < cons.n; i++)
            rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_CONSENT],
                                            (const char *)cons.keys[i],
                                            cons.lens[i]);
        er.time_ms = cmd->time_ms;
        er.raft_index = b->applied;
        er.records_deleted = deleted;
        er.reference = cmd->reference;
        /* Each subject erased has its row in the ledger, so that a
         * restored backup erases every one of them again. Failing memory
         * stops the node (cluster.c): no undoing here. */
        for (size_t i = 0; rc == 0 && i < n_sp; i++) {
            lkey[0] = 'e';
            memcpy(lkey + 1, sps[i], STORE_SP_BYTES);
            if (put_pb(b, STORE_POLICY, lkey, sizeof(lkey), &er.base, NULL))
                rc = err_set(&res->status, DOSSIER_NOMEM, "out of memory");
        }
        if (rc == 0 && treq) {
            treq->executed = 1;
            treq->executed_ms = cmd->time_ms;
            treq->result_index = b->applied;
            treq->records = deleted;
            treq->executed_by = cmd->principal;
            if (request_put(b, treq))
                rc = err_set(&res->status, DOSSIER_NOMEM, "out of memory");
            treq->executed_by = NULL;
        }
    }
    if (treq)
        dossier__store__v1__tracked_request__free_unpacked(treq, NULL);
    /* The subjects' earlier changes leave the feed; the erasures stay. */
    for (size_t i = 0; rc == 0 && i < n_sp; i++)
        if (changes_forget(b, sps[i], NULL, 0))
            rc = err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n_sp; i++) {
        Dossier__Store__V1__ChangeEntry e =
            DOSSIER__STORE__V1__CHANGE_ENTRY__INIT;
        e.type = DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_ERASE;
        e.subject = (ProtobufCBinaryData){STORE_SP_BYTES, sps[i]};
        if (change_put(b, cmd, b->revision + 1, &e))
            rc = err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    }
    if (rc == 0) {
        memcpy(b->erased + b->n_erased, sps, n_sp * STORE_SP_BYTES);
        b->n_erased += n_sp;
        b->effects |= STORE_EFFECT_ERASED;
        b->revision++;
        res->version = b->revision;
        res->deleted = deleted;
        res->index = b->applied;
        res->updated_at_ms = cmd->time_ms;
        err_ok(&res->status);
    }
    for (size_t i = 0; recs && i < subj.n; i++)
        if (recs[i])
            dossier__store__v1__stored_record__free_unpacked(recs[i], NULL);
    free(recs);
    free(rids);
    free(sps);
    links_release(links);
    keys_free(&subj);
    keys_free(&cons);
    return rc;
}

/* A node finished erasures: it is recorded in each ledger row that is
 * still that erasure's and does not list it yet. A row replaced by a later
 * erasure of the subject, or gone, is skipped: the report is late. */
static int apply_erasure_done(struct store_batch *b, const Command *cmd,
                              struct store_result *res)
{
    const Dossier__Store__V1__ErasureDoneOp *op = cmd->erasure_done;
    uint64_t recorded = 0;

    if (op->node_id == 0 || op->n_items > ERASURE_DONE_ITEMS_MAX)
        return bad_command(res, "erasure done");
    for (size_t i = 0; i < op->n_items; i++)
        if (op->items[i]->subject.len != STORE_SP_BYTES)
            return bad_command(res, "erasure done item");
    /* Only a member's report counts: its member row, as applied so far. */
    {
        uint8_t mkey[15];
        char *v;
        size_t vlen;
        int rc;
        memcpy(mkey, "member/", 7);
        store_u64_be(mkey + 7, op->node_id);
        rc = store_get_raw(b->s, b, STORE_DEFAULT, mkey, sizeof(mkey), &v,
                           &vlen, &res->status);
        if (rc)
            return rc;
        if (!v)
            return err_set(&res->status, DOSSIER_FAILED_PRECONDITION,
                           "node %llu is not a member of the cluster: its "
                           "erasure report is not recorded",
                           (unsigned long long)op->node_id);
        rocksdb_free(v);
    }
    for (size_t i = 0; i < op->n_items; i++) {
        Dossier__Store__V1__ErasureRecord *er;
        Dossier__Store__V1__ErasureCompletion done =
            DOSSIER__STORE__V1__ERASURE_COMPLETION__INIT, **grown;
        uint8_t key[1 + STORE_SP_BYTES];
        char *v;
        size_t vlen;
        int listed = 0, rc;

        key[0] = 'e';
        memcpy(key + 1, op->items[i]->subject.data, STORE_SP_BYTES);
        rc = store_get_raw(b->s, b, STORE_POLICY, key, sizeof(key), &v,
                           &vlen, &res->status);
        if (rc)
            return rc;
        if (!v)
            continue;
        er = dossier__store__v1__erasure_record__unpack(NULL, vlen,
                                                        (uint8_t *)v);
        rocksdb_free(v);
        if (!er)
            return err_set(&res->status, DOSSIER_CORRUPT,
                           "an erasure ledger row is malformed");
        for (size_t k = 0; k < er->n_completed; k++)
            listed |= er->completed[k]->node_id == op->node_id;
        if (er->raft_index != op->items[i]->raft_index || listed ||
            er->n_completed >= ERASURE_NODES_MAX) {
            dossier__store__v1__erasure_record__free_unpacked(er, NULL);
            continue;
        }
        grown = realloc(er->completed,
                        (er->n_completed + 1) * sizeof(*er->completed));
        if (!grown) {
            dossier__store__v1__erasure_record__free_unpacked(er, NULL);
            return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
        }
        er->completed = grown;
        done.node_id = op->node_id;
        done.time_ms = op->completed_ms;
        er->completed[er->n_completed++] = &done;
        rc = put_pb(b, STORE_POLICY, key, sizeof(key), &er->base, NULL);
        er->n_completed--; /* @done is on the stack, not protobuf-c's */
        dossier__store__v1__erasure_record__free_unpacked(er, NULL);
        /* Failing memory stops the node (cluster.c): no undoing here. */
        if (rc)
            return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
        recorded++;
    }
    res->deleted = recorded; /* ledger rows that now list the node */
    res->index = b->applied;
    res->updated_at_ms = cmd->time_ms;
    return err_ok(&res->status);
}

/* ------------------------------------------------------------------ */
/* Links: each link is an "o" row (record, label, target) holding the
 * sealed target id and its "i" mirror (target, label, record), written
 * and deleted together (store.h). */

static int links_valid(const Dossier__Store__V1__PutOp *op)
{
    for (size_t i = 0; i < op->n_links; i++) {
        const Dossier__Store__V1__LinkEntry *l = op->links[i];
        if (!schema_name_valid(l->label) || !schema_name_valid(l->kind) ||
            l->rid.len != STORE_RID_BYTES || l->sealed_id.len == 0)
            return 0;
    }
    return 1;
}

static int keylist_push(struct keylist *l, const uint8_t *k, size_t klen)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        uint8_t **keys = realloc(l->keys, cap * sizeof(*keys));
        size_t *lens;
        if (!keys)
            return DOSSIER_NOMEM;
        l->keys = keys;
        if (!(lens = realloc(l->lens, cap * sizeof(*lens))))
            return DOSSIER_NOMEM;
        l->lens = lens;
        l->cap = cap;
    }
    if (!(l->keys[l->n] = malloc(klen)))
        return DOSSIER_NOMEM;
    memcpy(l->keys[l->n], k, klen);
    l->lens[l->n++] = klen;
    return 0;
}

/* The mirror of link row @k: the same link seen from its other end, into
 * @out (STORE_KEY_MAX bytes). Returns its length, 0 if @k is malformed. */
static size_t link_mirror(const uint8_t *k, size_t klen, uint8_t *out)
{
    struct store_link_row r;
    if (store_link_key_parse(k, klen, &r) != 0)
        return 0;
    return store_link_key(out, r.dir == 'o' ? 'i' : 'o', r.b_kind, r.b_rid,
                          r.label, r.a_kind, r.a_rid);
}

/* Adds to *@del (made on first use) the rows of record (@kind, @rid), as
 * this batch sees them: its own links ("o") if @outgoing, the links to it
 * ("i") if @incoming, each with its mirror.
 * Errors: DOSSIER_NOMEM, DOSSIER_CORRUPT (a malformed row). */
static int links_collect(struct store_batch *b, const char *kind,
                         const uint8_t *rid, int outgoing, int incoming,
                         struct keylist **del)
{
    uint8_t prefix[1 + SCHEMA_NAME_MAX + 1 + STORE_RID_BYTES];
    uint8_t mirror[STORE_KEY_MAX];
    int rc = 0;

    if (!*del && !(*del = calloc(1, sizeof(**del))))
        return DOSSIER_NOMEM;
    for (int pass = 0; rc == 0 && pass < 2; pass++) {
        struct keylist found;
        size_t plen;
        if (!(pass == 0 ? outgoing : incoming))
            continue;
        prefix[0] = pass == 0 ? 'o' : 'i';
        plen = 1 + store_record_key(prefix + 1, kind, rid);
        if (keys_under(b, STORE_LINK, prefix, plen, &found))
            return DOSSIER_NOMEM;
        for (size_t i = 0; rc == 0 && i < found.n; i++) {
            size_t mlen = link_mirror(found.keys[i], found.lens[i], mirror);
            if (!mlen)
                rc = DOSSIER_CORRUPT;
            else if (keylist_push(*del, found.keys[i], found.lens[i]) ||
                     keylist_push(*del, mirror, mlen))
                rc = DOSSIER_NOMEM;
        }
        keys_free(&found);
    }
    return rc;
}

static void links_delete(struct store_batch *b, const struct keylist *del)
{
    for (size_t i = 0; del && i < del->n; i++)
        rocksdb_writebatch_wi_delete_cf(b->wb, b->s->cf[STORE_LINK],
                                        (const char *)del->keys[i],
                                        del->lens[i]);
}

static void links_put(struct store_batch *b,
                      const Dossier__Store__V1__PutOp *op)
{
    uint8_t key[STORE_KEY_MAX];
    size_t klen;

    for (size_t i = 0; i < op->n_links; i++) {
        const Dossier__Store__V1__LinkEntry *l = op->links[i];
        klen = store_link_key(key, 'o', op->kind, op->rid.data, l->label,
                              l->kind, l->rid.data);
        rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[STORE_LINK],
                                     (const char *)key, klen,
                                     (const char *)l->sealed_id.data,
                                     l->sealed_id.len);
        klen = store_link_key(key, 'i', l->kind, l->rid.data, l->label,
                              op->kind, op->rid.data);
        rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[STORE_LINK],
                                     (const char *)key, klen, "", 0);
    }
}

static void links_release(struct keylist *del)
{
    if (del) {
        keys_free(del);
        free(del);
    }
}

/* ------------------------------------------------------------------ */
/* The audit log: every command leaves an entry, and AuditOp brings the
 * entries of reads and refused calls. All of it follows from the
 * commands, so every replica's chain is the same. */

/* Appends the encoded entry @enc to the chain and the audit family.
 * Errors: DOSSIER_NOMEM (the chain is then unchanged). */
static int audit_put(struct store_batch *b, const uint8_t *enc, size_t len)
{
    uint8_t key[9], small[512], *val = small;
    uint64_t i;
    if (AUDIT_HASH_BYTES + len > sizeof(small) &&
        !(val = malloc(AUDIT_HASH_BYTES + len)))
        return DOSSIER_NOMEM;
    i = audit_chain_append(&b->audit, enc, len);
    key[0] = 'e';
    store_u64_be(key + 1, i);
    memcpy(val, b->audit.hash, AUDIT_HASH_BYTES);
    memcpy(val + AUDIT_HASH_BYTES, enc, len);
    rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[STORE_AUDIT],
                                 (const char *)key, sizeof(key),
                                 (const char *)val, AUDIT_HASH_BYTES + len);
    if (val != small)
        free(val);
    b->audit_changed = 1;
    return 0;
}

/* Appends the entry of @cmd, whose outcome was @outcome. Errors:
 * DOSSIER_NOMEM. */
/* A sweep's entry names the records it looked at; the leader proposes at
 * most this many per command (retention.c). */
#define RETENTION_AUDIT_RECORDS 32

/* Appends an entry of @cmd for @action, naming subject @sp (may be NULL)
 * and the @n records @rids (16 bytes each), with @outcome.
 * Errors: DOSSIER_NOMEM. */
static int audit_entry_of(struct store_batch *b, const Command *cmd,
                          const char *action, const uint8_t *sp,
                          const uint8_t *rids, size_t n, int outcome)
{
    struct audit_entry e;
    uint8_t buf[1024];
    size_t len;
    struct dossier_status st;

    memset(&e, 0, sizeof(e));
    e.time_ms = cmd->time_ms > 0 ? cmd->time_ms : 0;
    e.principal = cmd->principal;
    e.principal_len = strnlen(cmd->principal, AUDIT_TEXT_MAX);
    e.action = action;
    e.action_len = strlen(action);
    /* The purpose was checked by the proposer; one that would not encode
     * (too long) is left out rather than losing the entry. */
    e.purpose = cmd->purpose;
    e.purpose_len = strnlen(cmd->purpose, POLICY_NAME_MAX + 1);
    if (e.purpose_len > POLICY_NAME_MAX)
        e.purpose_len = 0;
    e.pseudonym_len = STORE_SP_BYTES;
    e.subject = sp;
    e.records = rids;
    e.n_records = n;
    e.outcome = outcome;
    /* Subject rights say why (a label checked by the proposer). */
    e.reference = cmd->reference;
    e.reference_len = strnlen(cmd->reference, POLICY_LABEL_MAX + 1);
    if (e.reference_len > POLICY_LABEL_MAX)
        e.reference_len = 0;
    if (audit_entry_encode(&e, buf, sizeof(buf), &len, &st) != 0) {
        /* A principal with a NUL or too long: name nobody, keep the rest. */
        e.principal_len = 0;
        if (audit_entry_encode(&e, buf, sizeof(buf), &len, &st) != 0)
            return 0; /* cannot happen: action and pseudonyms are ours */
    }
    return audit_put(b, buf, len);
}

static int audit_command(struct store_batch *b, const Command *cmd,
                         int outcome)
{
    uint8_t swept[RETENTION_AUDIT_RECORDS][STORE_RID_BYTES];
    size_t n_swept = 0;
    const uint8_t *sp = NULL, *rid = NULL;
    const char *action = NULL;

    switch (cmd->op_case) {
    case DOSSIER__STORE__V1__COMMAND__OP_PUT:
        action = "records.put";
        if (cmd->put->subject.len == STORE_SP_BYTES)
            sp = cmd->put->subject.data;
        if (cmd->put->rid.len == STORE_RID_BYTES)
            rid = cmd->put->rid.data;
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_DELETE:
        action = "records.delete";
        if (cmd->delete_->rid.len == STORE_RID_BYTES)
            rid = cmd->delete_->rid.data;
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_DEFINE_KIND:
        action = "schema.define_kind";
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_INIT_KEYSET:
        action = "cluster.init_keyset";
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_SET_MEMBER:
        action = "cluster.set_member";
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_DEFINE_PURPOSE:
        action = "purposes.define";
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_DEFINE_SEGMENT:
        action = "segments.define";
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_DEFINE_DUPLICATE_RULES:
        action = "duplicate_rules.define";
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_MERGE:
        /* Names the survivor's subject, the survivor and the duplicates
         * (at most 16: the leader's limit). */
        action = "records.merge";
        if (cmd->merge && cmd->merge->survivor) {
            const Dossier__Store__V1__MergeOp *mo = cmd->merge;
            if (mo->survivor->subject.len == STORE_SP_BYTES)
                sp = mo->survivor->subject.data;
            if (mo->survivor->rid.len == STORE_RID_BYTES)
                memcpy(swept[n_swept++], mo->survivor->rid.data,
                       STORE_RID_BYTES);
            for (size_t i = 0; i < mo->n_duplicates &&
                               n_swept < RETENTION_AUDIT_RECORDS;
                 i++)
                if (mo->duplicates[i]->rid.len == STORE_RID_BYTES)
                    memcpy(swept[n_swept++], mo->duplicates[i]->rid.data,
                           STORE_RID_BYTES);
        }
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_MERGE_UNDO:
        action = "records.merge_undo";
        if (cmd->merge_undo && cmd->merge_undo->subject.len == STORE_SP_BYTES)
            sp = cmd->merge_undo->subject.data;
        if (cmd->merge_undo &&
            cmd->merge_undo->survivor.len == STORE_RID_BYTES)
            rid = cmd->merge_undo->survivor.data;
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_MERGE_CONFIRM:
        action = "records.merge_confirm";
        if (cmd->merge_confirm &&
            cmd->merge_confirm->subject.len == STORE_SP_BYTES)
            sp = cmd->merge_confirm->subject.data;
        if (cmd->merge_confirm &&
            cmd->merge_confirm->survivor.len == STORE_RID_BYTES)
            rid = cmd->merge_confirm->survivor.data;
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_CONSENT:
        action = cmd->consent->state ==
                         DOSSIER__V1__CONSENT_STATE__CONSENT_STATE_GRANTED
                     ? "consent.grant"
                     : "consent.withdraw";
        if (cmd->consent->subject.len == STORE_SP_BYTES)
            sp = cmd->consent->subject.data;
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_RESTRICTION:
        /* Named as the methods are, which server.c derives refusals'
         * actions from. */
        action = cmd->restriction->restricted
                     ? "subjects.restrict_processing"
                     : "subjects.lift_restriction";
        if (cmd->restriction->subject.len == STORE_SP_BYTES)
            sp = cmd->restriction->subject.data;
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_ERASE:
        action = "subjects.erase";
        if (cmd->erase->subject.len == STORE_SP_BYTES)
            sp = cmd->erase->subject.data;
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_PRINCIPAL_OP:
        action = cmd->principal_op->remove ? "principals.remove"
                                        : "principals.add";
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_RECORD_RETENTION:
        action = "retention.expire_records";
        for (size_t i = 0; i < cmd->record_retention->n_items &&
                           n_swept < RETENTION_AUDIT_RECORDS;
             i++)
            if (cmd->record_retention->items[i]->rid.len == STORE_RID_BYTES)
                memcpy(swept[n_swept++],
                       cmd->record_retention->items[i]->rid.data,
                       STORE_RID_BYTES);
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_ERASURE_DONE:
        /* One entry per reported erasure, naming its subject. */
        for (size_t i = 0; i + 1 < cmd->erasure_done->n_items; i++)
            if (cmd->erasure_done->items[i]->subject.len == STORE_SP_BYTES &&
                audit_entry_of(b, cmd, "subjects.erasure_completed",
                               cmd->erasure_done->items[i]->subject.data,
                               NULL, 0, outcome))
                return DOSSIER_NOMEM;
        action = "subjects.erasure_completed";
        if (cmd->erasure_done->n_items &&
            cmd->erasure_done->items[cmd->erasure_done->n_items - 1]
                    ->subject.len == STORE_SP_BYTES)
            sp = cmd->erasure_done->items[cmd->erasure_done->n_items - 1]
                     ->subject.data;
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_RECTIFY:
        action = "subjects.rectify";
        if (cmd->rectify->put &&
            cmd->rectify->put->subject.len == STORE_SP_BYTES)
            sp = cmd->rectify->put->subject.data;
        if (cmd->rectify->put && cmd->rectify->put->rid.len == STORE_RID_BYTES)
            rid = cmd->rectify->put->rid.data;
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_RETENTION:
        action = "retention.sweep";
        for (size_t i = 0; i < cmd->retention->n_items &&
                           n_swept < RETENTION_AUDIT_RECORDS;
             i++)
            if (cmd->retention->items[i]->rid.len == STORE_RID_BYTES)
                memcpy(swept[n_swept++], cmd->retention->items[i]->rid.data,
                       STORE_RID_BYTES);
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_REQUEST:
        action = cmd->request->action ==
                         DOSSIER__STORE__V1__REQUEST_OP__ACTION__FILE
                     ? "requests.file"
                 : cmd->request->action ==
                         DOSSIER__STORE__V1__REQUEST_OP__ACTION__EXTEND
                     ? "requests.extend"
                     : "requests.complete";
        if (cmd->request->subject.len == STORE_SP_BYTES)
            sp = cmd->request->subject.data;
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_KEY_ROTATE:
        action = !cmd->key_rotate ? "keys.rotate"
                 : cmd->key_rotate->step ==
                         DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__BEGIN
                     ? "keys.rotate"
                 : cmd->key_rotate->step ==
                         DOSSIER__STORE__V1__KEY_ROTATE_OP__STEP__FINISH
                     ? "keys.rotate_finish"
                     : "keys.rewrap";
        break;
    default:
        return 0; /* audit operations and unknown ones: no entry of theirs */
    }
    return audit_entry_of(b, cmd, action, sp, n_swept ? swept[0] : rid,
                          n_swept ? n_swept : rid ? 1 : 0, outcome);
}

static int apply_audit(struct store_batch *b, const Command *cmd,
                       struct store_result *res)
{
    const Dossier__Store__V1__AuditOp *op = cmd->audit;
    struct audit_entry e;
    struct dossier_status st;

    for (size_t i = 0; i < op->n_entries; i++)
        if (audit_entry_decode(op->entries[i].data, op->entries[i].len, &e,
                               &st) != 0)
            return bad_command(res, "audit entry");
    for (size_t i = 0; i < op->n_entries; i++)
        if (audit_put(b, op->entries[i].data, op->entries[i].len) != 0)
            return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    return err_ok(&res->status);
}

static int apply_audit_checkpoint(struct store_batch *b, const Command *cmd,
                                  struct store_result *res)
{
    const Dossier__Store__V1__AuditCheckpointOp *op = cmd->audit_checkpoint;
    struct audit_checkpoint cp;
    struct dossier_status st;
    uint8_t key[9];
    char *v;
    size_t vlen;
    int rc, match;

    if (audit_checkpoint_decode(op->checkpoint.data, op->checkpoint.len, &cp,
                                &st) != 0)
        return bad_command(res, "audit checkpoint");
    /* Only a checkpoint that moves forward over the chain as it is here;
     * a stale one (a new leader signing what was signed) changes nothing. */
    if (cp.index <= b->audit.signed_index || cp.index > b->audit.index)
        return err_ok(&res->status);
    key[0] = 'e';
    store_u64_be(key + 1, cp.index);
    rc = store_get_raw(b->s, b, STORE_AUDIT, key, sizeof(key), &v, &vlen,
                       &res->status);
    if (rc)
        return rc;
    match = v && vlen >= AUDIT_HASH_BYTES &&
            memcmp(v, cp.hash, AUDIT_HASH_BYTES) == 0;
    rocksdb_free(v);
    if (!match)
        return err_set(&res->status, DOSSIER_FAILED_PRECONDITION,
                       "the checkpoint does not match the audit chain");
    key[0] = 'c';
    rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[STORE_AUDIT],
                                 (const char *)key, sizeof(key),
                                 (const char *)op->checkpoint.data,
                                 op->checkpoint.len);
    b->audit.signed_index = cp.index;
    b->audit.signed_ms = cp.time_ms;
    b->audit_changed = 1;
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

/* Seeks @it to the request-id time index at time key @at: where the last
 * expiry stopped (the same point on every replica). A request id recorded
 * later with an older time (a new leader's clock behind) is left,
 * everywhere alike; a lookup ignores it once past its TTL. */
static void request_seek_time(rocksdb_iterator_t *it, uint64_t at)
{
    uint8_t from[9];
    from[0] = 't';
    store_u64_be(from + 1, at);
    rocksdb_iter_seek(it, (const char *)from, sizeof(from));
}

/* The time-index row @it is on when it was recorded before @before_ms,
 * else NULL (past the index, or a later one). */
static const uint8_t *request_time_row_before(rocksdb_iterator_t *it,
                                              int64_t before_ms)
{
    size_t klen;
    const uint8_t *k;
    if (!rocksdb_iter_valid(it))
        return NULL;
    k = (const uint8_t *)rocksdb_iter_key(it, &klen);
    if (klen != REQ_TIME_KEY_BYTES || k[0] != 't' ||
        store_be_u64(k + 1) >= time_key(before_ms))
        return NULL;
    return k;
}

/* Removes up to @limit records older than the TTL, oldest first. */
static void request_expire(struct store_batch *b, int64_t now_ms,
                           size_t limit)
{
    struct store *s = b->s;
    rocksdb_iterator_t *base, *it;
    const uint8_t *k;
    size_t n = 0;

    base = rocksdb_create_iterator_cf(s->db, s->ro, s->cf[STORE_REQUESTS]);
    it = rocksdb_writebatch_wi_create_iterator_with_base_cf(
        b->wb, base, s->cf[STORE_REQUESTS]);
    /* A second expiry in one batch (a sweep command and the batch's own)
     * goes on from where the first stopped. */
    request_seek_time(it, b->req_expired_to > s->req_expired_to
                              ? b->req_expired_to
                              : s->req_expired_to);
    for (; n < limit &&
           (k = request_time_row_before(it, now_ms - STORE_REQUEST_TTL_MS));
         rocksdb_iter_next(it), n++) {
        uint8_t rkey[REQ_KEY_BYTES];
        rkey[0] = 'r';
        memcpy(rkey + 1, k + 9, STORE_REQUEST_ID_BYTES);
        rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_REQUESTS],
                                        (const char *)rkey, sizeof(rkey));
        b->req_expired_to = store_be_u64(k + 1);
        rocksdb_writebatch_wi_delete_cf(b->wb, s->cf[STORE_REQUESTS],
                                        (const char *)k, REQ_TIME_KEY_BYTES);
    }
    /* The merged iterator owns the base iterator. */
    rocksdb_iter_destroy(it);
}

int store_requests_kept_before(struct store *s, int64_t before_ms)
{
    rocksdb_iterator_t *it;
    int kept;

    pthread_rwlock_rdlock(&s->swap);
    it = rocksdb_create_iterator_cf(s->db, s->ro, s->cf[STORE_REQUESTS]);
    request_seek_time(it, s->req_expired_to);
    kept = request_time_row_before(it, before_ms) != NULL;
    rocksdb_iter_destroy(it);
    pthread_rwlock_unlock(&s->swap);
    return kept;
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
              cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_DEFINE_KIND ||
             cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_DEFINE_PURPOSE ||
             cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_DEFINE_SEGMENT ||
             cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_CONSENT ||
             cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_RESTRICTION ||
             cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_ERASE ||
             cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_REQUEST ||
             cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_PRINCIPAL_OP ||
             cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_RECTIFY ||
             cmd->op_case ==
                 DOSSIER__STORE__V1__COMMAND__OP_DEFINE_DUPLICATE_RULES ||
             cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_MERGE ||
             cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_MERGE_UNDO ||
             cmd->op_case == DOSSIER__STORE__V1__COMMAND__OP_MERGE_CONFIRM);
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
    case DOSSIER__STORE__V1__COMMAND__OP_DEFINE_PURPOSE:
        rc = apply_define_purpose(b, cmd, res);
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_DEFINE_SEGMENT:
        rc = apply_define_segment(b, cmd, res);
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_CONSENT:
        rc = cmd->consent ? apply_consent(b, cmd, res)
                          : bad_command(res, "consent");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_RESTRICTION:
        rc = cmd->restriction ? apply_restrict(b, cmd, res)
                           : bad_command(res, "restrict");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_ERASE:
        rc = cmd->erase ? apply_erase(b, cmd, res)
                        : bad_command(res, "erase");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_AUDIT:
        rc = cmd->audit ? apply_audit(b, cmd, res)
                        : bad_command(res, "audit");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_AUDIT_CHECKPOINT:
        rc = cmd->audit_checkpoint ? apply_audit_checkpoint(b, cmd, res)
                                   : bad_command(res, "audit checkpoint");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_REQUEST:
        rc = cmd->request ? apply_request(b, cmd, res)
                          : bad_command(res, "request");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_RETENTION:
        rc = cmd->retention ? apply_retention(b, cmd, res)
                            : bad_command(res, "retention");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_PRINCIPAL_OP:
        rc = cmd->principal_op ? apply_principal(b, cmd, res)
                            : bad_command(res, "principal");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_KEY_ROTATE:
        rc = store_apply_key_rotate(b, cmd, res);
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_REQUEST_EXPIRE:
        if (!cmd->request_expire) {
            rc = bad_command(res, "request expire");
            break;
        }
        request_expire(b, cmd->time_ms,
                       cmd->request_expire->limit < STORE_REQUEST_SWEEP_MAX
                           ? cmd->request_expire->limit
                           : STORE_REQUEST_SWEEP_MAX);
        rc = err_ok(&res->status);
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_RECTIFY:
        rc = cmd->rectify ? apply_rectify(b, cmd, res)
                          : bad_command(res, "rectify");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_RECORD_RETENTION:
        rc = cmd->record_retention ? apply_record_retention(b, cmd, res)
                                   : bad_command(res, "record retention");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_ERASURE_DONE:
        rc = cmd->erasure_done ? apply_erasure_done(b, cmd, res)
                               : bad_command(res, "erasure done");
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_DEFINE_DUPLICATE_RULES:
        rc = store_apply_duplicate_rules(b, cmd, res);
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_MERGE:
        rc = store_apply_merge(b, cmd, res);
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_MERGE_UNDO:
        rc = store_apply_merge_undo(b, cmd, res);
        break;
    case DOSSIER__STORE__V1__COMMAND__OP_MERGE_CONFIRM:
        rc = store_apply_merge_confirm(b, cmd, res);
        break;
    default:
        rc = bad_command(res, "unknown operation");
        break;
    }
    /* Failures are audited too, but not a node's own trouble (memory,
     * disk), which is not the command's and would differ between
     * replicas. */
    if (rc != DOSSIER_NOMEM && rc != DOSSIER_IO &&
        audit_command(b, cmd, rc) != 0)
        rc = err_set(&res->status, DOSSIER_NOMEM, "out of memory");
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

/* ------------------------------------------------------------------ */
/* For store_crm.c (store_int.h). */

int store_apply_bad(struct store_result *res, const char *what)
{
    return bad_command(res, what);
}

int store_batch_put_pb(struct store_batch *b, enum store_family f,
                       const uint8_t *key, size_t klen,
                       const ProtobufCMessage *m)
{
    return put_pb(b, f, key, klen, m, NULL);
}

int store_batch_keys(struct store_batch *b, enum store_family family,
                     const uint8_t *prefix, size_t plen,
                     int (*cb)(void *arg, const uint8_t *key, size_t klen),
                     void *arg)
{
    struct keylist l;
    int rc = 0;
    if (keys_under(b, family, prefix, plen, &l))
        return DOSSIER_NOMEM;
    for (size_t i = 0; rc == 0 && i < l.n; i++)
        rc = cb(arg, l.keys[i], l.lens[i]);
    keys_free(&l);
    return rc;
}

int store_put_op_valid(const Dossier__Store__V1__PutOp *op)
{
    int has_subject = op->subject.len == STORE_SP_BYTES;
    if (!schema_name_valid(op->kind) || op->rid.len != STORE_RID_BYTES ||
        (op->subject.len != 0 && !has_subject) || op->sealed_id.len == 0 ||
        (!has_subject && op->dek_id != 0))
        return 0;
    for (size_t i = 0; i < op->n_index_keys; i++)
        if (!index_key_valid(op, &op->index_keys[i]))
            return 0;
    return links_valid(op);
}

int store_batch_changes_forget(struct store_batch *b, const uint8_t *rid,
                               const uint8_t *sp, uint64_t before)
{
    return record_changes_forget(b, rid, sp, before);
}

int store_batch_changes_forget_at(struct store_batch *b, const uint8_t *sp,
                                  uint64_t rev)
{
    uint8_t prefix[STORE_SP_BYTES + 8];
    struct keylist l;
    memcpy(prefix, sp, STORE_SP_BYTES);
    store_u64_be(prefix + STORE_SP_BYTES, rev);
    if (keys_under(b, STORE_CHANGE_INDEX, prefix, sizeof(prefix), &l))
        return DOSSIER_NOMEM;
    for (size_t i = 0; i < l.n; i++) {
        const uint8_t *k = l.keys[i];
        /* Record changes only: a consent change names no record. */
        if (l.lens[i] != STORE_SP_BYTES + 12 + STORE_RID_BYTES)
            continue;
        change_forget_indexed(b, k, l.lens[i]);
    }
    keys_free(&l);
    return 0;
}

int store_batch_change_record(struct store_batch *b, const Command *cmd,
                              uint64_t rev, int type, const char *kind,
                              const uint8_t *rid,
                              const ProtobufCBinaryData *subject,
                              const uint8_t *packed, size_t len)
{
    return change_record(b, cmd, rev, type, kind, rid, subject, packed, len);
}

int store_batch_change_consent(struct store_batch *b, const Command *cmd,
                               uint64_t rev, const uint8_t *sp,
                               const char *purpose, int state)
{
    Dossier__Store__V1__ChangeEntry e = DOSSIER__STORE__V1__CHANGE_ENTRY__INIT;
    e.type = DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_CONSENT;
    e.subject = (ProtobufCBinaryData){STORE_SP_BYTES, (uint8_t *)sp};
    e.purpose = (char *)purpose;
    e.state = state;
    return change_put(b, cmd, rev, &e);
}
