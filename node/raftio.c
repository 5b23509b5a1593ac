/* Raft's hard state, snapshot point and log in RocksDB; raft structs to and
 * from protobuf. */
#include "raftio.h"

#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "errors.h"
#include "store.pb-c.h"

#define RAFT_HS_KEY "hs"
#define RAFT_SNAP_KEY "snap"

static void be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v;
}

static int rdb_fail(struct dossier_status *st, char *err, const char *what)
{
    int code = strstr(err, "Corruption") ? DOSSIER_CORRUPT : DOSSIER_IO;
    err_set(st, code, "%s: %s", what, err);
    rocksdb_free(err);
    return code;
}

/* ------------------------------------------------------------------ */
/* Conversions */

void raftio_conf_to_pb(const struct raft_conf *c, Dossier__Peer__V1__Conf *out)
{
    dossier__peer__v1__conf__init(out);
    out->n_voters = c->n_voters;
    out->voters = (uint64_t *)c->voters;
    out->n_learners = c->n_learners;
    out->learners = (uint64_t *)c->learners;
}

int raftio_conf_from_pb(const Dossier__Peer__V1__Conf *pb,
                        struct raft_conf *out)
{
    memset(out, 0, sizeof(*out));
    if (!pb)
        return 0;
    if (pb->n_voters > RAFT_MAX_NODES || pb->n_learners > RAFT_MAX_NODES)
        return DOSSIER_INVALID_ARGUMENT;
    out->n_voters = pb->n_voters;
    if (pb->n_voters)
        memcpy(out->voters, pb->voters, pb->n_voters * sizeof(uint64_t));
    out->n_learners = pb->n_learners;
    if (pb->n_learners)
        memcpy(out->learners, pb->learners,
               pb->n_learners * sizeof(uint64_t));
    return 0;
}

static void meta_to_pb(const struct raft_snapshot_meta *m,
                       Dossier__Peer__V1__SnapshotMeta *out,
                       Dossier__Peer__V1__Conf *conf)
{
    dossier__peer__v1__snapshot_meta__init(out);
    out->index = m->index;
    out->term = m->term;
    raftio_conf_to_pb(&m->conf, conf);
    out->conf = conf;
}

static int meta_from_pb(const Dossier__Peer__V1__SnapshotMeta *pb,
                        struct raft_snapshot_meta *out)
{
    memset(out, 0, sizeof(*out));
    if (!pb)
        return 0;
    out->index = pb->index;
    out->term = pb->term;
    return raftio_conf_from_pb(pb->conf, &out->conf);
}

int raftio_msg_to_pb(const struct raft_msg *m, struct raftio_msg_pb *out)
{
    Dossier__Peer__V1__RaftMessage *pb = &out->msg;

    memset(out, 0, sizeof(*out));
    dossier__peer__v1__raft_message__init(pb);
    pb->type = m->type;
    pb->from = m->from;
    pb->to = m->to;
    pb->term = m->term;
    pb->log_term = m->log_term;
    pb->index = m->index;
    pb->commit = m->commit;
    pb->reject = m->reject;
    pb->reject_hint = m->reject_hint;
    pb->context = m->context;
    pb->force = m->force;
    if (m->n_entries) {
        out->ents = calloc(m->n_entries, sizeof(*out->ents));
        out->ptrs = calloc(m->n_entries, sizeof(*out->ptrs));
        if (!out->ents || !out->ptrs) {
            raftio_msg_pb_release(out);
            return DOSSIER_NOMEM;
        }
        for (size_t i = 0; i < m->n_entries; i++) {
            const struct raft_entry *e = &m->entries[i];
            dossier__peer__v1__entry__init(&out->ents[i]);
            out->ents[i].term = e->term;
            out->ents[i].index = e->index;
            out->ents[i].type = e->type;
            out->ents[i].data = (ProtobufCBinaryData){e->len, e->data};
            out->ptrs[i] = &out->ents[i];
        }
        pb->n_entries = m->n_entries;
        pb->entries = out->ptrs;
    }
    if (m->type == RAFT_MSG_SNAPSHOT) {
        meta_to_pb(&m->snapshot, &out->snap, &out->conf);
        pb->snapshot = &out->snap;
    }
    return 0;
}

void raftio_msg_pb_release(struct raftio_msg_pb *pb)
{
    free(pb->ents);
    free(pb->ptrs);
    memset(pb, 0, sizeof(*pb));
}

int raftio_msg_from_pb(const Dossier__Peer__V1__RaftMessage *pb,
                       struct raft_msg *out)
{
    memset(out, 0, sizeof(*out));
    if (pb->type < RAFT_MSG_APPEND || pb->type > RAFT_MSG_READ_INDEX_RESP)
        return DOSSIER_INVALID_ARGUMENT;
    out->type = (enum raft_msg_type)pb->type;
    out->from = pb->from;
    out->to = pb->to;
    out->term = pb->term;
    out->log_term = pb->log_term;
    out->index = pb->index;
    out->commit = pb->commit;
    out->reject = pb->reject;
    out->reject_hint = pb->reject_hint;
    out->context = pb->context;
    out->force = pb->force;
    if (meta_from_pb(pb->snapshot, &out->snapshot) != 0)
        return DOSSIER_INVALID_ARGUMENT;
    if (pb->n_entries) {
        out->entries = calloc(pb->n_entries, sizeof(*out->entries));
        if (!out->entries)
            return DOSSIER_NOMEM;
        for (size_t i = 0; i < pb->n_entries; i++) {
            const Dossier__Peer__V1__Entry *e = pb->entries[i];
            struct raft_entry *d = &out->entries[i];
            if (e->type > RAFT_ENTRY_CONF) {
                raftio_msg_release(out);
                return DOSSIER_INVALID_ARGUMENT;
            }
            d->term = e->term;
            d->index = e->index;
            d->type = (enum raft_entry_type)e->type;
            d->len = e->data.len;
            d->data = malloc(d->len ? d->len : 1);
            if (!d->data) {
                raftio_msg_release(out);
                return DOSSIER_NOMEM;
            }
            if (d->len)
                memcpy(d->data, e->data.data, d->len);
            out->n_entries = i + 1;
        }
    }
    return 0;
}

void raftio_msg_release(struct raft_msg *m)
{
    for (size_t i = 0; i < m->n_entries; i++)
        free(m->entries[i].data);
    free(m->entries);
    m->entries = NULL;
    m->n_entries = 0;
}

/* ------------------------------------------------------------------ */
/* Disk */

static void hs_put(rocksdb_writebatch_t *wb, rocksdb_column_family_handle_t *cf,
                   const struct raft_hard_state *hs)
{
    Dossier__Store__V1__RaftHardState pb =
        DOSSIER__STORE__V1__RAFT_HARD_STATE__INIT;
    uint8_t buf[64];
    size_t len;
    pb.term = hs->term;
    pb.vote = hs->vote;
    pb.commit = hs->commit;
    len = dossier__store__v1__raft_hard_state__pack(&pb, buf);
    rocksdb_writebatch_put_cf(wb, cf, RAFT_HS_KEY, 2, (const char *)buf, len);
}

static int snap_put(rocksdb_writebatch_t *wb,
                    rocksdb_column_family_handle_t *cf,
                    const struct raft_snapshot_meta *m)
{
    Dossier__Peer__V1__SnapshotMeta pb;
    Dossier__Peer__V1__Conf conf;
    uint8_t *buf;
    size_t len;
    meta_to_pb(m, &pb, &conf);
    len = dossier__peer__v1__snapshot_meta__get_packed_size(&pb);
    buf = malloc(len ? len : 1);
    if (!buf)
        return DOSSIER_NOMEM;
    dossier__peer__v1__snapshot_meta__pack(&pb, buf);
    rocksdb_writebatch_put_cf(wb, cf, RAFT_SNAP_KEY, 4, (const char *)buf,
                              len);
    free(buf);
    return 0;
}

/* Reads the snapshot point into @out (left as is when there is none). */
static int snap_get(const struct store_raw *raw,
                    rocksdb_column_family_handle_t *cf,
                    struct raft_snapshot_meta *out, struct dossier_status *st)
{
    char *err = NULL;
    size_t len;
    char *v = rocksdb_get_cf(raw->db, (const rocksdb_readoptions_t *)raw->ro,
                             cf, RAFT_SNAP_KEY, 4, &len, &err);
    Dossier__Peer__V1__SnapshotMeta *m;
    if (err)
        return rdb_fail(st, err, "reading the raft snapshot point");
    if (!v)
        return 0;
    m = dossier__peer__v1__snapshot_meta__unpack(NULL, len, (uint8_t *)v);
    rocksdb_free(v);
    if (!m || meta_from_pb(m, out) != 0) {
        if (m)
            dossier__peer__v1__snapshot_meta__free_unpacked(m, NULL);
        return err_set(st, DOSSIER_CORRUPT,
                       "the raft snapshot point is corrupt");
    }
    dossier__peer__v1__snapshot_meta__free_unpacked(m, NULL);
    return 0;
}

/* Deletes every log entry from @from on. */
static void log_delete_from(rocksdb_writebatch_t *wb,
                            rocksdb_column_family_handle_t *cf,
                            raft_index from)
{
    uint8_t lo[8], hi[8];
    be64(lo, from);
    memset(hi, 0xff, sizeof(hi));
    rocksdb_writebatch_delete_range_cf(wb, cf, (const char *)lo, 8,
                                       (const char *)hi, 8);
}

/* The index of the first persisted entry at or after @from, or 0 if there
 * is none. Range deletions are written only where entries exist: a range
 * tombstone per append would pile up overlapping tombstones that every
 * flush must fragment, which made a checkpoint of a busy node take
 * seconds. */
static raft_index log_first_from(const struct store_raw *raw,
                                 rocksdb_column_family_handle_t *cf,
                                 raft_index from)
{
    uint8_t k[8];
    raft_index found = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(
        raw->db, (const rocksdb_readoptions_t *)raw->ro, cf);
    be64(k, from);
    rocksdb_iter_seek(it, (const char *)k, 8);
    if (rocksdb_iter_valid(it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen == 8)
            found = get_be64((const uint8_t *)key);
    }
    rocksdb_iter_destroy(it);
    return found;
}

static int entry_put(rocksdb_writebatch_t *wb,
                     rocksdb_column_family_handle_t *cf,
                     const struct raft_entry *e)
{
    Dossier__Peer__V1__Entry pb = DOSSIER__PEER__V1__ENTRY__INIT;
    uint8_t key[8], *buf;
    size_t len;
    pb.term = e->term;
    pb.index = e->index;
    pb.type = e->type;
    pb.data = (ProtobufCBinaryData){e->len, e->data};
    len = dossier__peer__v1__entry__get_packed_size(&pb);
    buf = malloc(len ? len : 1);
    if (!buf)
        return DOSSIER_NOMEM;
    dossier__peer__v1__entry__pack(&pb, buf);
    be64(key, e->index);
    rocksdb_writebatch_put_cf(wb, cf, (const char *)key, 8, (const char *)buf,
                              len);
    free(buf);
    return 0;
}

static int write_opt(const struct store_raw *raw, rocksdb_writebatch_t *wb,
                     int sync, struct dossier_status *st)
{
    char *err = NULL;
    rocksdb_write(raw->db, sync ? raw->wo_sync : raw->wo_nosync, wb, &err);
    rocksdb_writebatch_destroy(wb);
    if (err)
        return rdb_fail(st, err, "cannot persist raft state");
    return 0;
}

static int write_sync(const struct store_raw *raw, rocksdb_writebatch_t *wb,
                      struct dossier_status *st)
{
    return write_opt(raw, wb, 1, st);
}

int raftio_save(struct store *s, const struct raft_ready *rd,
                struct dossier_status *st)
{
    struct store_raw raw;
    rocksdb_column_family_handle_t *const *cf;
    rocksdb_writebatch_t *wb;

    if (!rd->hs_changed && rd->n_entries == 0)
        return 0;
    store_raw(s, &raw);
    cf = (rocksdb_column_family_handle_t *const *)raw.cf;
    wb = rocksdb_writebatch_create();
    if (rd->n_entries) {
        /* The new entries overwrite their own indexes; only a truncated
         * tail beyond them needs deleting. */
        raft_index after = rd->entries[rd->n_entries - 1].index + 1;
        if (log_first_from(&raw, cf[STORE_RAFTLOG], after))
            log_delete_from(wb, cf[STORE_RAFTLOG], after);
        for (size_t i = 0; i < rd->n_entries; i++)
            if (entry_put(wb, cf[STORE_RAFTLOG], &rd->entries[i])) {
                rocksdb_writebatch_destroy(wb);
                return err_set(st, DOSSIER_NOMEM, "out of memory");
            }
    }
    if (rd->hs_changed)
        hs_put(wb, cf[STORE_RAFT], &rd->hs);
    /* Not synced when only the commit index changed: the apply write
     * that follows is not synced either, and a restart takes the applied
     * index as committed (raft_new). */
    return write_opt(&raw, wb, rd->must_sync, st);
}

int raftio_compact(struct store *s, const struct raft_snapshot_meta *meta,
                   struct dossier_status *st)
{
    struct store_raw raw;
    rocksdb_column_family_handle_t *const *cf;
    rocksdb_writebatch_t *wb;
    uint8_t lo[8], hi[8];
    raft_index first;
    struct raft_snapshot_meta cur;
    int rc;

    store_raw(s, &raw);
    cf = (rocksdb_column_family_handle_t *const *)raw.cf;
    memset(&cur, 0, sizeof(cur));
    if ((rc = snap_get(&raw, cf[STORE_RAFT], &cur, st)) != 0)
        return rc;
    if (meta->index <= cur.index)
        return 0; /* never move the snapshot point back */
    wb = rocksdb_writebatch_create();
    if (snap_put(wb, cf[STORE_RAFT], meta)) {
        rocksdb_writebatch_destroy(wb);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    /* From the first entry still stored, so tombstones never overlap. */
    first = log_first_from(&raw, cf[STORE_RAFTLOG], 0);
    if (first && first <= meta->index) {
        be64(lo, first);
        be64(hi, meta->index + 1);
        rocksdb_writebatch_delete_range_cf(wb, cf[STORE_RAFTLOG],
                                           (const char *)lo, 8,
                                           (const char *)hi, 8);
    }
    return write_sync(&raw, wb, st);
}

int raftio_prepare_install(void *arg, const struct store_raw *raw,
                           struct dossier_status *st)
{
    const struct raftio_install *in = arg;
    rocksdb_column_family_handle_t *const *cf =
        (rocksdb_column_family_handle_t *const *)raw->cf;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();

    log_delete_from(wb, cf[STORE_RAFTLOG], 0);
    hs_put(wb, cf[STORE_RAFT], &in->hs);
    if (snap_put(wb, cf[STORE_RAFT], &in->meta)) {
        rocksdb_writebatch_destroy(wb);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    return write_sync(raw, wb, st);
}

int raftio_load(struct store *s, struct raftio_state *out,
                struct dossier_status *st)
{
    struct store_raw raw;
    rocksdb_column_family_handle_t *const *cf;
    rocksdb_iterator_t *it;
    char *err = NULL, *v;
    size_t len, cap = 0;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    store_raw(s, &raw);
    cf = (rocksdb_column_family_handle_t *const *)raw.cf;

    v = rocksdb_get_cf(raw.db, raw.ro, cf[STORE_RAFT], RAFT_HS_KEY, 2, &len,
                       &err);
    if (err)
        return rdb_fail(st, err, "reading the raft state");
    if (v) {
        Dossier__Store__V1__RaftHardState *hs =
            dossier__store__v1__raft_hard_state__unpack(NULL, len,
                                                        (uint8_t *)v);
        rocksdb_free(v);
        if (!hs)
            return err_set(st, DOSSIER_CORRUPT, "the raft hard state is corrupt");
        out->p.hs = (struct raft_hard_state){hs->term, hs->vote, hs->commit};
        dossier__store__v1__raft_hard_state__free_unpacked(hs, NULL);
    }
    if ((rc = snap_get(&raw, cf[STORE_RAFT], &out->p.snap, st)) != 0)
        return rc;

    it = rocksdb_create_iterator_cf(raw.db, raw.ro, cf[STORE_RAFTLOG]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t vlen;
        const char *val = rocksdb_iter_value(it, &vlen);
        Dossier__Peer__V1__Entry *e =
            dossier__peer__v1__entry__unpack(NULL, vlen, (const uint8_t *)val);
        struct raft_entry *d;
        if (!e) {
            rc = err_set(st, DOSSIER_CORRUPT, "a raft log entry is corrupt");
            break;
        }
        if (e->index <= out->p.snap.index) {
            dossier__peer__v1__entry__free_unpacked(e, NULL);
            continue; /* compacted, its deletion not yet visible */
        }
        if (out->n_entries == cap) {
            cap = cap ? cap * 2 : 1024;
            d = realloc(out->entries, cap * sizeof(*out->entries));
            if (!d) {
                dossier__peer__v1__entry__free_unpacked(e, NULL);
                rc = err_set(st, DOSSIER_NOMEM, "out of memory");
                break;
            }
            out->entries = d;
        }
        d = &out->entries[out->n_entries];
        d->term = e->term;
        d->index = e->index;
        d->type = e->type == 1 ? RAFT_ENTRY_CONF : RAFT_ENTRY_NORMAL;
        d->len = e->data.len;
        d->data = malloc(d->len ? d->len : 1);
        if (!d->data) {
            dossier__peer__v1__entry__free_unpacked(e, NULL);
            rc = err_set(st, DOSSIER_NOMEM, "out of memory");
            break;
        }
        if (d->len)
            memcpy(d->data, e->data.data, d->len);
        out->n_entries++;
        dossier__peer__v1__entry__free_unpacked(e, NULL);
    }
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err && rc == 0)
        rc = rdb_fail(st, err, "reading the raft log");
    else if (err)
        rocksdb_free(err);
    if (rc) {
        raftio_state_release(out);
        return rc;
    }
    out->p.entries = out->entries;
    out->p.n_entries = out->n_entries;
    out->p.applied = store_applied(s);
    if (out->p.applied < out->p.snap.index)
        out->p.applied = out->p.snap.index;
    return 0;
}

void raftio_state_release(struct raftio_state *rs)
{
    for (size_t i = 0; i < rs->n_entries; i++)
        free(rs->entries[i].data);
    free(rs->entries);
    memset(rs, 0, sizeof(*rs));
}

int raftio_reset_single(struct store *s, uint64_t self, const char *address,
                        struct dossier_status *st)
{
    struct raftio_state rs;
    struct raft_snapshot_meta meta;
    struct raft_hard_state hs;
    struct store_raw raw;
    rocksdb_column_family_handle_t *const *cf;
    rocksdb_writebatch_t *wb;
    rocksdb_iterator_t *it;
    Dossier__Store__V1__Member m = DOSSIER__STORE__V1__MEMBER__INIT;
    uint64_t applied = store_applied(s);
    uint8_t key[15], buf[300];
    size_t len;
    int rc, found = 0;

    if (strlen(address) > 255)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "address too long");
    if ((rc = raftio_load(s, &rs, st)) != 0)
        return rc;
    memset(&meta, 0, sizeof(meta));
    meta.index = applied;
    if (applied == rs.p.snap.index) {
        meta.term = rs.p.snap.term;
        found = 1;
    }
    for (size_t i = 0; !found && i < rs.n_entries; i++)
        if (rs.entries[i].index == applied) {
            meta.term = rs.entries[i].term;
            found = 1;
        }
    hs = rs.p.hs;
    raftio_state_release(&rs);
    if (!found)
        return err_set(st, DOSSIER_CORRUPT,
                       "the term of applied index %llu is not on disk",
                       (unsigned long long)applied);
    meta.conf.n_voters = 1;
    meta.conf.voters[0] = self;
    hs.vote = 0;
    hs.commit = applied;

    store_raw(s, &raw);
    cf = (rocksdb_column_family_handle_t *const *)raw.cf;
    wb = rocksdb_writebatch_create();
    log_delete_from(wb, cf[STORE_RAFTLOG], 0);
    hs_put(wb, cf[STORE_RAFT], &hs);
    if (snap_put(wb, cf[STORE_RAFT], &meta)) {
        rocksdb_writebatch_destroy(wb);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    /* The member addresses: this node alone. */
    it = rocksdb_create_iterator_cf(raw.db, raw.ro, cf[STORE_DEFAULT]);
    for (rocksdb_iter_seek(it, "member/", 7); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen < 7 || memcmp(k, "member/", 7) != 0)
            break;
        rocksdb_writebatch_delete_cf(wb, cf[STORE_DEFAULT], k, klen);
    }
    rocksdb_iter_destroy(it);
    memcpy(key, "member/", 7);
    be64(key + 7, self);
    m.id = self;
    m.address = (char *)address;
    len = dossier__store__v1__member__pack(&m, buf);
    rocksdb_writebatch_put_cf(wb, cf[STORE_DEFAULT], (const char *)key,
                              sizeof(key), (const char *)buf, len);
    return write_sync(&raw, wb, st);
}
