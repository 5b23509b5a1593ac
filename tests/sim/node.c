/* The simulated node: a Raft core over a disk and a state machine, driven
 * through readies in raft.h's order (persist, send, apply, advance) with a
 * crash possible between any two of those, and the network between nodes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define HASH0 0x6a09e667f3bcc908ULL

/* ------------------------------------------------------------------------
 * Payloads and hashes. A client command is its proposal id (8 bytes, little
 * endian) followed by filler derived from the id, so that any byte the core
 * damages is noticed and any entry names the proposal it came from. */

uint64_t payload_digest(int type, const uint8_t *data, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)(unsigned)type;
    h = (h ^ (uint64_t)len) * 0x100000001b3ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ data[i]) * 0x100000001b3ULL;
    return mix64(h);
}

void payload_make(uint64_t pid, uint8_t *out, size_t *len)
{
    size_t n = 8 + (size_t)((pid * 13) % 37);
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(pid >> (8 * i));
    for (size_t i = 8; i < n; i++)
        out[i] = (uint8_t)(pid * 31 + i);
    *len = n;
}

/* The proposal id an entry carries, 0 for an empty entry, or ~0 when its
 * bytes are not any payload the simulator made. */
static uint64_t payload_pid(const struct raft_entry *e)
{
    if (e->type != RAFT_ENTRY_NORMAL)
        return 0;
    if (e->len == 0)
        return 0;
    if (e->len < 8 || !e->data || e->len > PAYLOAD_MAX)
        return ~0ULL;
    uint64_t pid = 0;
    for (int i = 0; i < 8; i++)
        pid |= (uint64_t)e->data[i] << (8 * i);
    uint8_t want[PAYLOAD_MAX];
    size_t n;
    payload_make(pid, want, &n);
    if (n != e->len || memcmp(want, e->data, n) != 0)
        return ~0ULL;
    return pid;
}

static uint64_t chain(uint64_t h, raft_term t, int type, uint64_t digest)
{
    return mix64(mix64(h + 1) ^ mix64(t ^ ((uint64_t)(unsigned)type << 56)) ^
                 digest);
}

/* ------------------------------------------------------------------------
 * Memberships. */

static int ids_has(const raft_id *v, size_t n, raft_id id)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == id)
            return 1;
    return 0;
}

static void ids_del(raft_id *v, size_t *n, raft_id id)
{
    for (size_t i = 0; i < *n; i++)
        if (v[i] == id) {
            memmove(&v[i], &v[i + 1], (*n - i - 1) * sizeof(*v));
            (*n)--;
            return;
        }
}

int conf_has_voter(const struct raft_conf *c, raft_id id)
{
    return c->n_voters <= RAFT_MAX_NODES && ids_has(c->voters, c->n_voters, id);
}

int conf_has_learner(const struct raft_conf *c, raft_id id)
{
    return c->n_learners <= RAFT_MAX_NODES &&
           ids_has(c->learners, c->n_learners, id);
}

int conf_equal(const struct raft_conf *a, const struct raft_conf *b)
{
    if (a->n_voters != b->n_voters || a->n_learners != b->n_learners ||
        a->n_voters > RAFT_MAX_NODES || a->n_learners > RAFT_MAX_NODES)
        return 0;
    for (size_t i = 0; i < a->n_voters; i++)
        if (!conf_has_voter(b, a->voters[i]))
            return 0;
    for (size_t i = 0; i < a->n_learners; i++)
        if (!conf_has_learner(b, a->learners[i]))
            return 0;
    return 1;
}

void fmt_conf(char *buf, size_t len, const struct raft_conf *c)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "voters{");
    for (size_t i = 0; i < c->n_voters && i < RAFT_MAX_NODES && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%llu", i ? "," : "",
                              (unsigned long long)c->voters[i]);
    if (o < len)
        o += (size_t)snprintf(buf + o, len - o, "} learners{");
    for (size_t i = 0; i < c->n_learners && i < RAFT_MAX_NODES && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%llu", i ? "," : "",
                              (unsigned long long)c->learners[i]);
    if (o < len)
        snprintf(buf + o, len - o, "}");
}

/* Mirrors the core's rule for applying a change: changes that no longer
 * make sense when applied leave the membership as it is. */
static void conf_apply(struct raft_conf *c, const struct raft_conf_change *cc)
{
    switch (cc->op) {
    case RAFT_CONF_ADD_LEARNER:
        if (!conf_has_voter(c, cc->node) && !conf_has_learner(c, cc->node) &&
            c->n_learners < RAFT_MAX_NODES)
            c->learners[c->n_learners++] = cc->node;
        break;
    case RAFT_CONF_PROMOTE:
        if (conf_has_learner(c, cc->node) && c->n_voters < RAFT_MAX_NODES) {
            ids_del(c->learners, &c->n_learners, cc->node);
            c->voters[c->n_voters++] = cc->node;
        }
        break;
    case RAFT_CONF_ADD_VOTER: /* bootstrap entries */
        ids_del(c->learners, &c->n_learners, cc->node);
        if (!conf_has_voter(c, cc->node) && c->n_voters < RAFT_MAX_NODES)
            c->voters[c->n_voters++] = cc->node;
        break;
    case RAFT_CONF_REMOVE:
        if (conf_has_voter(c, cc->node) && c->n_voters > 1)
            ids_del(c->voters, &c->n_voters, cc->node);
        else if (conf_has_learner(c, cc->node))
            ids_del(c->learners, &c->n_learners, cc->node);
        break;
    }
}

/* ------------------------------------------------------------------------
 * State machines and images. */

void image_unref(struct image *img)
{
    if (img && --img->refs == 0) {
        free(img->recs);
        free(img);
    }
}

static struct image *image_of_sm(const struct sm *sm)
{
    struct image *img = sim_alloc(sizeof(*img));
    img->refs = 1;
    img->index = sm->applied;
    img->hash = sm->hash;
    img->conf = sm->conf;
    img->recs = sim_alloc((sm->applied ? sm->applied : 1) * sizeof(*img->recs));
    if (sm->applied)
        memcpy(img->recs, sm->recs, sm->applied * sizeof(*img->recs));
    return img;
}

static void sm_load_image(struct sm *sm, const struct image *img)
{
    if (sm->cap < img->index) {
        sm->cap = img->index + 64;
        sm->recs = sim_realloc(sm->recs, sm->cap * sizeof(*sm->recs));
    }
    if (img->index)
        memcpy(sm->recs, img->recs, img->index * sizeof(*sm->recs));
    sm->applied = img->index;
    sm->hash = img->hash;
    sm->conf = img->conf;
}

static void sm_apply(struct sm *sm, const struct raft_entry *e, uint64_t digest)
{
    if (sm->applied == sm->cap) {
        sm->cap = sm->cap ? sm->cap * 2 : 64;
        sm->recs = sim_realloc(sm->recs, sm->cap * sizeof(*sm->recs));
    }
    struct sm_rec *rec = &sm->recs[sm->applied++];
    rec->term = e->term;
    rec->digest = digest;
    rec->type = (uint8_t)e->type;
    sm->hash = chain(sm->hash, e->term, e->type, digest);
    struct raft_conf_change cc;
    if (e->type == RAFT_ENTRY_CONF &&
        raft_conf_change_decode(e->data, e->len, &cc) == RAFT_OK)
        conf_apply(&sm->conf, &cc);
}

/* ------------------------------------------------------------------------
 * Disks. */

raft_index disk_last(const struct disk *d)
{
    return d->snap.index + d->n;
}

const struct raft_entry *disk_entry(const struct disk *d, raft_index i)
{
    if (i <= d->snap.index || i > disk_last(d))
        return NULL;
    return &d->log[i - d->snap.index - 1];
}

static uint64_t disk_hash_at(const struct disk *d, raft_index i)
{
    return i == d->snap.index ? d->snap_hash : d->hashes[i - d->snap.index - 1];
}

/* Term at @i, or ~0 when the disk does not know it. */
static raft_term disk_term_at(const struct disk *d, raft_index i)
{
    if (i == d->snap.index)
        return d->snap.term;
    const struct raft_entry *e = disk_entry(d, i);
    return e ? e->term : ~0ULL;
}

static void entry_copy(struct raft_entry *dst, const struct raft_entry *src)
{
    *dst = *src;
    dst->data = NULL;
    if (src->len) {
        dst->data = sim_alloc(src->len);
        memcpy(dst->data, src->data, src->len);
    }
}

static void disk_truncate_from(struct disk *d, raft_index i)
{
    while (d->n && disk_last(d) >= i)
        free(d->log[--d->n].data);
}

/* Drops the entries through @i (covered by a new snapshot). */
static void disk_drop_through(struct disk *d, raft_index i)
{
    size_t k = 0;
    while (k < d->n && d->log[k].index <= i)
        free(d->log[k++].data);
    memmove(d->log, d->log + k, (d->n - k) * sizeof(*d->log));
    memmove(d->hashes, d->hashes + k, (d->n - k) * sizeof(*d->hashes));
    d->n -= k;
}

static void disk_append(struct disk *d, const struct raft_entry *e,
                        uint64_t hash)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->log = sim_realloc(d->log, d->cap * sizeof(*d->log));
        d->hashes = sim_realloc(d->hashes, d->cap * sizeof(*d->hashes));
    }
    entry_copy(&d->log[d->n], e);
    d->hashes[d->n] = hash;
    d->n++;
}

static int entry_same(const struct raft_entry *a, const struct raft_entry *b)
{
    return a->term == b->term && a->index == b->index && a->type == b->type &&
           a->len == b->len && (!a->len || memcmp(a->data, b->data, a->len) == 0);
}

/* ------------------------------------------------------------------------
 * Node lifecycle. */

static void node_unstage(struct node *n)
{
    for (size_t i = 0; i < n->n_staged; i++)
        image_unref(n->staged[i]);
    n->n_staged = 0;
}

void node_release(struct node *n)
{
    if (n->r)
        raft_free(n->r);
    n->r = NULL;
    node_unstage(n);
    for (size_t i = 0; i < n->disk.n; i++)
        free(n->disk.log[i].data);
    free(n->disk.log);
    free(n->disk.hashes);
    free(n->sm.recs);
    free(n->reads);
    memset(n, 0, sizeof(*n));
}

void node_start(struct world *w, struct node *n, int joining)
{
    if (!n->started) {
        /* A fresh disk and an empty state machine with no members. An
         * initial member's disk holds the bootstrap entries (one
         * RAFT_CONF_ADD_VOTER per initial voter, term 1, committed); a node
         * that joins later has nothing and learns the membership from the
         * log or a snapshot. */
        memset(&n->disk, 0, sizeof(n->disk));
        memset(&n->sm, 0, sizeof(n->sm));
        n->disk.snap_hash = HASH0;
        n->sm.hash = HASH0;
        n->started = 1;
        if (!joining) {
            raft_id voters[SIM_MAX_ID];
            struct raft_entry boot[SIM_MAX_ID];
            uint8_t bufs[SIM_MAX_ID * RAFT_CONF_CHANGE_BYTES];
            for (raft_id id = 1; id <= w->n_init; id++)
                voters[id - 1] = id;
            raft_bootstrap_entries(voters, w->n_init, boot, bufs, &n->disk.hs);
            for (size_t k = 0; k < w->n_init; k++) {
                const struct raft_entry *e = &boot[k];
                uint64_t h = chain(disk_hash_at(&n->disk, e->index - 1), e->term,
                                   e->type,
                                   payload_digest(e->type, e->data, e->len));
                raft_term prev = disk_term_at(&n->disk, e->index - 1);
                disk_append(&n->disk, e, h);
                hist_note_entry(w, n->id, e->index, e->term, prev, h);
            }
        }
    }
    struct raft_config c = w->cfg;
    c.id = n->id;
    c.seed = mix64(w->seed * 0x9e3779b97f4a7c15ULL + n->id * 1000003ULL + n->inc);
    struct raft_persisted p = {
        .hs = n->disk.hs,
        .snap = n->disk.snap,
        .entries = n->disk.log,
        .n_entries = n->disk.n,
        .applied = n->sm.applied,
    };
    int rc = raft_new(&c, &p, &n->r);
    sim_trace(w, "start n%llu%s (inc %u): hs t%llu v%llu c%llu, snap %llu@%llu, "
                 "log %llu..%llu, applied %llu -> rc %d",
              (unsigned long long)n->id, joining ? " joining" : "", n->inc + 1,
              (unsigned long long)p.hs.term, (unsigned long long)p.hs.vote,
              (unsigned long long)p.hs.commit, (unsigned long long)p.snap.index,
              (unsigned long long)p.snap.term,
              (unsigned long long)p.snap.index + 1,
              (unsigned long long)disk_last(&n->disk),
              (unsigned long long)p.applied, rc);
    if (rc != RAFT_OK || !n->r) {
        n->r = NULL;
        sim_violation(w, "raft_new refused n%llu's persisted state (rc %d): "
                         "hs t%llu v%llu c%llu, snap %llu@%llu, log through "
                         "%llu, applied %llu",
                      (unsigned long long)n->id, rc,
                      (unsigned long long)p.hs.term,
                      (unsigned long long)p.hs.vote,
                      (unsigned long long)p.hs.commit,
                      (unsigned long long)p.snap.index,
                      (unsigned long long)p.snap.term,
                      (unsigned long long)disk_last(&n->disk),
                      (unsigned long long)p.applied);
        return;
    }
    n->inc++;
    n->alive = 1;
    n->crash_armed = -1;
    n->mem_term = raft_term_now(n->r);
    n->role = raft_role(n->r);
    n->role_term = n->mem_term;
    n->touched = 1;
    if (n->mem_term != n->disk.hs.term)
        sim_violation(w, "n%llu restarted in term %llu but persisted term %llu",
                      (unsigned long long)n->id,
                      (unsigned long long)n->mem_term,
                      (unsigned long long)n->disk.hs.term);
}

void node_crash(struct world *w, struct node *n, const char *why)
{
    sim_trace(w, "crash n%llu (%s)", (unsigned long long)n->id, why);
    /* A commit index written without a sync may not have reached the
     * disk. */
    if (n->disk.hs.commit > n->disk.synced_commit && rng_pm(&w->rng, 500)) {
        sim_trace(w, "n%llu loses its unsynced commit %llu (back to %llu)",
                  (unsigned long long)n->id,
                  (unsigned long long)n->disk.hs.commit,
                  (unsigned long long)n->disk.synced_commit);
        n->disk.hs.commit = n->disk.synced_commit;
    }
    if (n->r)
        raft_free(n->r);
    n->r = NULL;
    n->alive = 0;
    n->crash_armed = -1;
    n->n_reads = 0;
    node_unstage(n);
    w->st.crashes++;
}

void node_drain(struct world *w, struct node *n, int force)
{
    for (int k = 0; k < 16 && n->alive && !w->violated && raft_has_ready(n->r);
         k++) {
        if (!force && !w->settling && rng_pm(&w->rng, w->prof.defer_pm))
            break;
        node_process_ready(w, n, n->crash_armed);
    }
}

/* ------------------------------------------------------------------------
 * The ready, step by step. */

static void trace_ready(struct world *w, const struct node *n,
                        const struct raft_ready *rd)
{
    char buf[SIM_TRACE_WIDTH];
    size_t o = 0, len = sizeof(buf);
    o += (size_t)snprintf(buf + o, len - o, "n%llu ready:",
                          (unsigned long long)n->id);
    if (rd->hs_changed && o < len)
        o += (size_t)snprintf(buf + o, len - o, " hs t%llu v%llu c%llu",
                              (unsigned long long)rd->hs.term,
                              (unsigned long long)rd->hs.vote,
                              (unsigned long long)rd->hs.commit);
    if (rd->n_entries && o < len)
        o += (size_t)snprintf(
            buf + o, len - o, " ents %llu@%llu..%llu@%llu",
            (unsigned long long)rd->entries[0].index,
            (unsigned long long)rd->entries[0].term,
            (unsigned long long)rd->entries[rd->n_entries - 1].index,
            (unsigned long long)rd->entries[rd->n_entries - 1].term);
    if (rd->has_snapshot && o < len)
        o += (size_t)snprintf(buf + o, len - o, " snap %llu@%llu",
                              (unsigned long long)rd->snapshot.index,
                              (unsigned long long)rd->snapshot.term);
    if (rd->n_msgs && o < len)
        o += (size_t)snprintf(buf + o, len - o, " msgs %zu", rd->n_msgs);
    if (rd->n_committed && o < len)
        o += (size_t)snprintf(
            buf + o, len - o, " commit %llu@%llu..%llu@%llu",
            (unsigned long long)rd->committed[0].index,
            (unsigned long long)rd->committed[0].term,
            (unsigned long long)rd->committed[rd->n_committed - 1].index,
            (unsigned long long)rd->committed[rd->n_committed - 1].term);
    if (rd->n_reads && o < len)
        o += (size_t)snprintf(buf + o, len - o, " reads %zu", rd->n_reads);
    if (o < len)
        snprintf(buf + o, len - o, " [%s, leader %llu]",
                 raft_role_name(rd->role), (unsigned long long)rd->leader);
    sim_trace(w, "%s", buf);
}

/* Entries in a ready or a message: contiguous, terms not decreasing, no
 * term beyond @max_term. */
static int entries_sane(struct world *w, const struct node *n, const char *what,
                        const struct raft_entry *e, size_t count,
                        raft_index first, raft_term max_term)
{
    if (count && !e) {
        sim_violation(w, "n%llu %s: %zu entries but no array",
                      (unsigned long long)n->id, what, count);
        return 0;
    }
    for (size_t k = 0; k < count; k++) {
        if (e[k].index != first + k) {
            sim_violation(w, "n%llu %s: entry %zu has index %llu, want %llu",
                          (unsigned long long)n->id, what, k,
                          (unsigned long long)e[k].index,
                          (unsigned long long)(first + k));
            return 0;
        }
        if (e[k].term > max_term || (k && e[k].term < e[k - 1].term)) {
            sim_violation(w, "n%llu %s: entry %llu has term %llu (previous "
                             "%llu, current term %llu)",
                          (unsigned long long)n->id, what,
                          (unsigned long long)e[k].index,
                          (unsigned long long)e[k].term,
                          (unsigned long long)(k ? e[k - 1].term : 0),
                          (unsigned long long)max_term);
            return 0;
        }
        if (e[k].len && !e[k].data) {
            sim_violation(w, "n%llu %s: entry %llu has %zu bytes but no data",
                          (unsigned long long)n->id, what,
                          (unsigned long long)e[k].index, e[k].len);
            return 0;
        }
    }
    return 1;
}

static struct image *node_find_staged(struct node *n, raft_index index,
                                      raft_term term)
{
    for (size_t i = n->n_staged; i-- > 0;) {
        struct image *img = n->staged[i];
        raft_term t = img->index ? img->recs[img->index - 1].term : 0;
        if (img->index == index && t == term)
            return img;
    }
    return NULL;
}

static void persist_snapshot(struct world *w, struct node *n,
                             const struct raft_snapshot_meta *meta)
{
    struct disk *d = &n->disk;
    struct image *img = node_find_staged(n, meta->index, meta->term);
    unsigned long long id = n->id;
    if (!img) {
        sim_violation(w, "n%llu's ready installs snapshot %llu@%llu, which it "
                         "never received",
                      id, (unsigned long long)meta->index,
                      (unsigned long long)meta->term);
        return;
    }
    if (meta->index <= n->sm.applied) {
        sim_violation(w, "n%llu's ready installs snapshot %llu@%llu, rolling "
                         "its state machine back from %llu",
                      id, (unsigned long long)meta->index,
                      (unsigned long long)meta->term,
                      (unsigned long long)n->sm.applied);
        return;
    }
    if (!conf_equal(&meta->conf, &img->conf)) {
        char a[128], b[128];
        fmt_conf(a, sizeof(a), &meta->conf);
        fmt_conf(b, sizeof(b), &img->conf);
        sim_violation(w, "n%llu installs snapshot %llu with membership %s but "
                         "the state machine at that index has %s",
                      id, (unsigned long long)meta->index, a, b);
        return;
    }
    for (raft_index i = 1; i <= img->index && !w->violated; i++)
        hist_check_rec(w, n, i, &img->recs[i - 1], 1,
                       "installs a snapshot holding");
    if (w->violated)
        return;
    /* Entries after the snapshot survive only when the log agrees with it at
     * its index; otherwise the whole log goes, as in etcd's storage. */
    if (disk_term_at(d, meta->index) == meta->term &&
        meta->index <= disk_last(d)) {
        if (disk_hash_at(d, meta->index) != img->hash) {
            sim_violation(w, "n%llu holds entry %llu@%llu but its log before "
                             "it differs from the snapshot's state machine",
                          id, (unsigned long long)meta->index,
                          (unsigned long long)meta->term);
            return;
        }
        disk_drop_through(d, meta->index);
    } else {
        disk_truncate_from(d, 0);
    }
    d->snap = *meta;
    d->snap_hash = img->hash;
    sm_load_image(&n->sm, img);
    w->st.snapshots_installed++;
    sim_trace(w, "n%llu installs snapshot %llu@%llu", id,
              (unsigned long long)meta->index, (unsigned long long)meta->term);
    /* Staged images at or below the installed one are of no further use. */
    size_t k = 0;
    for (size_t i = 0; i < n->n_staged; i++) {
        if (n->staged[i]->index <= meta->index)
            image_unref(n->staged[i]);
        else
            n->staged[k++] = n->staged[i];
    }
    n->n_staged = k;
}

static void persist_entries(struct world *w, struct node *n,
                            const struct raft_ready *rd, raft_index old_commit)
{
    struct disk *d = &n->disk;
    unsigned long long id = n->id;
    raft_index e0 = rd->entries[0].index;
    if (e0 <= d->snap.index) {
        sim_violation(w, "n%llu's ready persists entries from %llu, at or "
                         "below its snapshot %llu",
                      id, (unsigned long long)e0,
                      (unsigned long long)d->snap.index);
        return;
    }
    if (e0 > disk_last(d) + 1) {
        sim_violation(w, "n%llu's ready persists entries from %llu but its "
                         "persisted log ends at %llu",
                      id, (unsigned long long)e0,
                      (unsigned long long)disk_last(d));
        return;
    }
    for (size_t k = 0; k < rd->n_entries; k++) {
        const struct raft_entry *old = disk_entry(d, e0 + k);
        if (!old)
            break;
        if (!entry_same(old, &rd->entries[k])) {
            if (old->index <= old_commit)
                sim_commit_violation(w, "n%llu overwrites its entry %llu@%llu, at or "
                                 "below its persisted commit %llu, with "
                                 "%llu@%llu",
                              id, (unsigned long long)old->index,
                              (unsigned long long)old->term,
                              (unsigned long long)old_commit,
                              (unsigned long long)rd->entries[k].index,
                              (unsigned long long)rd->entries[k].term);
            break;
        }
    }
    if (w->violated)
        return;
    disk_truncate_from(d, e0);
    for (size_t k = 0; k < rd->n_entries; k++) {
        const struct raft_entry *e = &rd->entries[k];
        raft_index prev_i = e->index - 1;
        uint64_t h = chain(disk_hash_at(d, prev_i), e->term, e->type,
                           payload_digest(e->type, e->data, e->len));
        raft_term prev = disk_term_at(d, prev_i);
        disk_append(d, e, h);
        hist_note_entry(w, n->id, e->index, e->term, prev, h);
    }
}

static void check_send(struct world *w, struct node *n, const struct raft_msg *m)
{
    unsigned long long id = n->id;
    char buf[SIM_TRACE_WIDTH];
    if (m->from != n->id || m->to == 0 || m->to == n->id || m->to > SIM_MAX_ID) {
        fmt_msg(buf, sizeof(buf), m);
        sim_violation(w, "n%llu sends a misaddressed message: %s", id, buf);
        return;
    }
    const struct disk *d = &n->disk;
    if (m->type != RAFT_MSG_PRE_VOTE && m->type != RAFT_MSG_PRE_VOTE_RESP &&
        m->term > d->hs.term) {
        fmt_msg(buf, sizeof(buf), m);
        sim_violation(w, "n%llu sends %s in term %llu but has persisted only "
                         "term %llu",
                      id, buf, (unsigned long long)m->term,
                      (unsigned long long)d->hs.term);
        return;
    }
    switch (m->type) {
    case RAFT_MSG_VOTE_RESP:
        /* What is durable must rule out any other vote in that term: the
         * vote itself, or a later term. */
        if (!m->reject) {
            if (d->hs.term < m->term ||
                (d->hs.term == m->term && d->hs.vote != m->to)) {
                sim_violation(w, "n%llu grants its vote in term %llu to n%llu "
                                 "but persisted t%llu v%llu",
                              id, (unsigned long long)m->term,
                              (unsigned long long)m->to,
                              (unsigned long long)d->hs.term,
                              (unsigned long long)d->hs.vote);
                return;
            }
            hist_note_vote(w, m->term, n->id, m->to);
        }
        break;
    case RAFT_MSG_APPEND_RESP:
        /* A leader counts this toward a quorum: it must be durable. */
        if (!m->reject && m->index > disk_last(d)) {
            sim_violation(w, "n%llu acknowledges entries through %llu but has "
                             "persisted only through %llu",
                          id, (unsigned long long)m->index,
                          (unsigned long long)disk_last(d));
            return;
        }
        /* An entry of a later term than the answer's cannot be the one the
         * leader of that term sent: the acknowledged entry was replaced. */
        if (!m->reject && disk_term_at(d, m->index) != ~0ULL &&
            disk_term_at(d, m->index) > m->term) {
            sim_violation(w, "n%llu acknowledges entry %llu in term %llu but "
                             "has persisted an entry of term %llu there",
                          id, (unsigned long long)m->index,
                          (unsigned long long)m->term,
                          (unsigned long long)disk_term_at(d, m->index));
            return;
        }
        break;
    case RAFT_MSG_APPEND:
        hist_note_leader(w, m->term, n->id, "sends append");
        if (!entries_sane(w, n, "append", m->entries, m->n_entries,
                          m->index + 1, m->term))
            return;
        for (size_t k = 0; k < m->n_entries; k++)
            hist_note_entry(w, n->id, m->entries[k].index, m->entries[k].term,
                            k ? m->entries[k - 1].term : m->log_term, 0);
        break;
    case RAFT_MSG_HEARTBEAT:
        hist_note_leader(w, m->term, n->id, "sends heartbeat");
        break;
    case RAFT_MSG_SNAPSHOT:
        hist_note_leader(w, m->term, n->id, "sends snapshot");
        break;
    default:
        break;
    }
}

static struct nmsg *nmsg_copy(const struct raft_msg *m)
{
    struct nmsg *nm = sim_alloc(sizeof(*nm));
    nm->m = *m;
    nm->m.entries = NULL;
    if (m->n_entries) {
        nm->m.entries = sim_alloc(m->n_entries * sizeof(*m->entries));
        for (size_t k = 0; k < m->n_entries; k++)
            entry_copy(&nm->m.entries[k], &m->entries[k]);
    }
    return nm;
}

static void nmsg_free(struct nmsg *nm)
{
    for (size_t k = 0; k < nm->m.n_entries; k++)
        free(nm->m.entries[k].data);
    free(nm->m.entries);
    image_unref(nm->img);
    free(nm);
}

static void net_push(struct world *w, struct nmsg *nm)
{
    struct net *net = &w->net;
    if (net->n == net->cap) {
        net->cap = net->cap ? net->cap * 2 : 64;
        net->v = sim_realloc(net->v, net->cap * sizeof(*net->v));
    }
    nm->seq = ++net->seq;
    nm->at = w->now + rng_below(&w->rng, w->prof.max_latency + 1);
    net->v[net->n++] = nm;
}

/* raft_snapshot_at_applied must describe the state machine as it stands:
 * its applied index, the term of the entry there, its membership. */
static int check_meta_at_applied(struct world *w, struct node *n,
                                 const struct raft_snapshot_meta *meta)
{
    unsigned long long id = n->id;
    raft_index idx = n->sm.applied;
    raft_term want = idx ? n->sm.recs[idx - 1].term : 0;
    if (meta->index != idx || meta->term != want) {
        sim_violation(w, "n%llu: raft_snapshot_at_applied says %llu@%llu, the "
                         "state machine has applied %llu@%llu",
                      id, (unsigned long long)meta->index,
                      (unsigned long long)meta->term, (unsigned long long)idx,
                      (unsigned long long)want);
        return 0;
    }
    if (idx > 0 && !conf_equal(&meta->conf, &n->sm.conf)) {
        char a[128], b[128];
        fmt_conf(a, sizeof(a), &meta->conf);
        fmt_conf(b, sizeof(b), &n->sm.conf);
        sim_violation(w, "n%llu: raft_snapshot_at_applied says membership %s "
                         "at %llu, the applied conf entries make %s",
                      id, a, (unsigned long long)idx, b);
        return 0;
    }
    return 1;
}

static void send_msgs(struct world *w, struct node *n, const struct raft_ready *rd)
{
    char buf[SIM_TRACE_WIDTH];
    for (size_t k = 0; k < rd->n_msgs && !w->violated; k++) {
        const struct raft_msg *m = &rd->msgs[k];
        fmt_msg(buf, sizeof(buf), m);
        sim_trace(w, "send %s", buf);
        check_send(w, n, m);
        if (w->violated)
            return;
        struct nmsg *nm = nmsg_copy(m);
        nm->from_inc = n->inc;
        if (m->type == RAFT_MSG_SNAPSHOT) {
            /* As Dossier's node does: stream the state machine as it stands,
             * described by the core's meta at the applied index. */
            struct raft_snapshot_meta meta;
            raft_snapshot_at_applied(n->r, &meta);
            if (!check_meta_at_applied(w, n, &meta)) {
                nmsg_free(nm);
                return;
            }
            nm->m.snapshot = meta;
            nm->img = image_of_sm(&n->sm);
            w->st.snapshots_sent++;
            sim_trace(w, "n%llu streams its state machine at %llu@%llu",
                      (unsigned long long)n->id, (unsigned long long)meta.index,
                      (unsigned long long)meta.term);
        }
        net_push(w, nm);
    }
}

/* Applies the first @limit committed entries (each atomically with its
 * index, as Dossier's state machine does). */
static void apply_committed(struct world *w, struct node *n,
                            const struct raft_ready *rd, size_t limit)
{
    unsigned long long id = n->id;
    for (size_t k = 0; k < rd->n_committed && k < limit && !w->violated; k++) {
        const struct raft_entry *e = &rd->committed[k];
        if (e->index != n->sm.applied + 1) {
            sim_violation(w, "n%llu is given committed entry %llu to apply "
                             "after %llu",
                          id, (unsigned long long)e->index,
                          (unsigned long long)n->sm.applied);
            return;
        }
        const struct raft_entry *de = disk_entry(&n->disk, e->index);
        if (!de || !entry_same(de, e)) {
            sim_violation(w, "n%llu applies entry %llu@%llu, which is not what "
                             "it persisted (%s)",
                          id, (unsigned long long)e->index,
                          (unsigned long long)e->term,
                          de ? "a different entry" : "nothing");
            return;
        }
        uint64_t pid = payload_pid(e);
        struct raft_conf_change cc;
        if (pid == ~0ULL) {
            sim_violation(w, "n%llu applies entry %llu@%llu whose %zu bytes no "
                             "client proposed",
                          id, (unsigned long long)e->index,
                          (unsigned long long)e->term, e->len);
            return;
        }
        if (e->type == RAFT_ENTRY_CONF &&
            raft_conf_change_decode(e->data, e->len, &cc) != RAFT_OK) {
            sim_violation(w, "n%llu applies conf entry %llu that does not "
                             "decode",
                          id, (unsigned long long)e->index);
            return;
        }
        uint64_t digest = payload_digest(e->type, e->data, e->len);
        hist_note_committed(w, n, e, digest, pid);
        if (w->violated)
            return;
        sm_apply(&n->sm, e, digest);
        hist_check_rec(w, n, e->index, &n->sm.recs[e->index - 1], 1,
                       "applies");
        if (e->type == RAFT_ENTRY_CONF) {
            char c[128];
            fmt_conf(c, sizeof(c), &n->sm.conf);
            sim_trace(w, "n%llu applies conf %llu: op %d node %llu -> %s", id,
                      (unsigned long long)e->index, (int)cc.op,
                      (unsigned long long)cc.node, c);
            w->st.conf_applied++;
        }
    }
}

static void take_reads(struct world *w, struct node *n, const struct raft_ready *rd)
{
    for (size_t k = 0; k < rd->n_reads && !w->violated; k++) {
        const struct raft_read_state *rs = &rd->reads[k];
        if (rs->context == 0 || rs->context > w->h.n_reads) {
            sim_violation(w, "n%llu returns a read state for context %llu, "
                             "never asked",
                          (unsigned long long)n->id,
                          (unsigned long long)rs->context);
            return;
        }
        const struct readreq *q = &w->h.reads[rs->context - 1];
        if (q->node != n->id) {
            sim_violation(w, "n%llu returns read context %llu, asked of n%llu",
                          (unsigned long long)n->id,
                          (unsigned long long)rs->context,
                          (unsigned long long)q->node);
            return;
        }
        if (rs->index < q->floor) {
            sim_violation(w, "stale read: n%llu answers read %llu (asked at "
                             "step %llu) with index %llu, but entries through "
                             "%llu were committed before it was asked",
                          (unsigned long long)n->id,
                          (unsigned long long)rs->context,
                          (unsigned long long)q->step,
                          (unsigned long long)rs->index,
                          (unsigned long long)q->floor);
            return;
        }
        sim_trace(w, "n%llu read %llu ready at index %llu (floor %llu)",
                  (unsigned long long)n->id, (unsigned long long)rs->context,
                  (unsigned long long)rs->index, (unsigned long long)q->floor);
        if (n->n_reads == n->cap_reads) {
            n->cap_reads = n->cap_reads ? n->cap_reads * 2 : 8;
            n->reads = sim_realloc(n->reads, n->cap_reads * sizeof(*n->reads));
        }
        n->reads[n->n_reads].ctx = rs->context;
        n->reads[n->n_reads].index = rs->index;
        n->n_reads++;
    }
}

void node_serve_reads(struct world *w, struct node *n)
{
    size_t k = 0;
    for (size_t i = 0; i < n->n_reads; i++) {
        if (n->reads[i].index <= n->sm.applied)
            w->st.reads_served++;
        else
            n->reads[k++] = n->reads[i];
    }
    n->n_reads = k;
}

void node_process_ready(struct world *w, struct node *n, int crash_point)
{
    static const char *crash_why[] = {
        "in a ready, before persisting",
        "in a ready, between persisting and sending",
        "in a ready, after sending, before applying",
        "in a ready, after applying, before raft_advance",
        "in a ready, part way through applying",
    };
    struct raft_ready rd;
    memset(&rd, 0, sizeof(rd));
    raft_ready(n->r, &rd);
    n->touched = 1;
    trace_ready(w, n, &rd);
    struct disk *d = &n->disk;
    unsigned long long id = n->id;

    raft_term cur = rd.hs_changed ? rd.hs.term : d->hs.term;
    if (rd.n_entries &&
        !entries_sane(w, n, "ready", rd.entries, rd.n_entries,
                      rd.entries[0].index, cur))
        return;
    if (rd.has_snapshot && rd.n_entries &&
        rd.entries[0].index <= rd.snapshot.index) {
        sim_violation(w, "n%llu's ready has snapshot %llu and entries from "
                      "%llu",
                      id, (unsigned long long)rd.snapshot.index,
                      (unsigned long long)rd.entries[0].index);
        return;
    }
    if (crash_point == 0) {
        node_crash(w, n, crash_why[0]);
        return;
    }
    if (rd.send_first && rd.role != RAFT_LEADER) {
        sim_violation(w, "n%llu, a %s, may send before persisting", id,
                      raft_role_name(rd.role));
        return;
    }

    /* 2. send, first when the core allows it (as Dossier's leader does) */
    if (rd.send_first) {
        send_msgs(w, n, &rd);
        if (w->violated)
            return;
        if (crash_point == 1) {
            node_crash(w, n, crash_why[1]);
            return;
        }
    }

    /* 1. persist */
    raft_index old_commit = d->hs.commit;
    if (rd.hs_changed) {
        if (rd.hs.term < d->hs.term)
            sim_violation(w, "n%llu persists term %llu after term %llu", id,
                          (unsigned long long)rd.hs.term,
                          (unsigned long long)d->hs.term);
        else if (rd.hs.term == d->hs.term && d->hs.vote &&
                 rd.hs.vote != d->hs.vote)
            sim_violation(w, "n%llu changes its persisted vote in term %llu "
                             "from n%llu to n%llu",
                          id, (unsigned long long)rd.hs.term,
                          (unsigned long long)d->hs.vote,
                          (unsigned long long)rd.hs.vote);
        else if (rd.hs.commit < d->hs.commit)
            sim_violation(w, "n%llu persists commit %llu after %llu", id,
                          (unsigned long long)rd.hs.commit,
                          (unsigned long long)d->hs.commit);
        else if (!rd.must_sync && (rd.hs.term != d->hs.term ||
                                   rd.hs.vote != d->hs.vote))
            sim_violation(w, "n%llu persists term %llu vote %llu without a "
                             "sync",
                          id, (unsigned long long)rd.hs.term,
                          (unsigned long long)rd.hs.vote);
        if (w->violated)
            return;
        d->hs = rd.hs;
    }
    if (!rd.must_sync && (rd.n_entries || rd.has_snapshot)) {
        sim_violation(w, "n%llu's ready persists %s without a sync", id,
                      rd.n_entries ? "entries" : "a snapshot");
        return;
    }
    if (rd.must_sync)
        d->synced_commit = d->hs.commit;
    if (rd.has_snapshot)
        persist_snapshot(w, n, &rd.snapshot);
    if (!w->violated && rd.n_entries)
        persist_entries(w, n, &rd, old_commit);
    if (w->violated)
        return;
    if (d->hs.commit > disk_last(d)) {
        sim_violation(w, "n%llu persists commit %llu beyond its persisted log "
                         "(last %llu)",
                      id, (unsigned long long)d->hs.commit,
                      (unsigned long long)disk_last(d));
        return;
    }
    /* What the node has persisted as committed must be what was committed. */
    raft_index lo = old_commit + 1;
    if (rd.n_entries && rd.entries[0].index < lo)
        lo = rd.entries[0].index;
    if (lo <= d->snap.index)
        lo = d->snap.index + 1;
    for (raft_index i = lo; i <= d->hs.commit && !w->violated; i++) {
        const struct raft_entry *e = disk_entry(d, i);
        struct sm_rec rec = {e->term, payload_digest(e->type, e->data, e->len),
                             (uint8_t)e->type};
        hist_check_rec(w, n, i, &rec, 0, "persists, at or below its commit,");
    }
    if (w->violated)
        return;
    if (!rd.send_first) {
        if (crash_point == 1) {
            node_crash(w, n, crash_why[1]);
            return;
        }
        /* 2. send */
        send_msgs(w, n, &rd);
        if (w->violated)
            return;
    }
    if (crash_point == 2) {
        node_crash(w, n, crash_why[2]);
        return;
    }

    /* 3. apply, answer reads */
    if (crash_point == 4 && rd.n_committed >= 2) {
        apply_committed(w, n, &rd, 1 + rng_below(&w->rng, rd.n_committed - 1));
        if (!w->violated)
            node_crash(w, n, crash_why[4]);
        return;
    }
    apply_committed(w, n, &rd, rd.n_committed);
    take_reads(w, n, &rd);
    if (w->violated)
        return;
    if (crash_point >= 3) {
        node_crash(w, n, crash_why[3]);
        return;
    }

    /* 4. advance */
    raft_advance(n->r, &rd);
    struct raft_status st;
    raft_status(n->r, &st);
    if (st.applied != n->sm.applied) {
        sim_violation(w, "n%llu: after raft_advance the core's applied index "
                         "is %llu, the state machine's %llu",
                      id, (unsigned long long)st.applied,
                      (unsigned long long)n->sm.applied);
        return;
    }
    if (n->sm.applied > 0 && !conf_equal(&st.conf, &n->sm.conf)) {
        char a[128], b[128];
        fmt_conf(a, sizeof(a), &st.conf);
        fmt_conf(b, sizeof(b), &n->sm.conf);
        sim_violation(w, "n%llu's membership is %s but the conf entries it "
                         "applied through %llu make %s",
                      id, a, (unsigned long long)n->sm.applied, b);
        return;
    }
    node_serve_reads(w, n);
}

void node_compact(struct world *w, struct node *n)
{
    struct disk *d = &n->disk;
    unsigned long long id = n->id;
    raft_index idx = n->sm.applied;
    struct raft_snapshot_meta meta;
    raft_snapshot_at_applied(n->r, &meta);
    n->touched = 1;
    if (!check_meta_at_applied(w, n, &meta))
        return;
    /* Beyond the applied index nothing may be dropped. (RAFT_COMPACTED is
     * fair too when a received snapshot newer than that waits to be
     * installed.) */
    int rc = raft_compact(n->r, idx + 1);
    if (rc != RAFT_UNAVAILABLE && rc != RAFT_COMPACTED) {
        sim_violation(w, "n%llu: raft_compact(%llu) beyond applied %llu "
                         "returns %d, want RAFT_UNAVAILABLE",
                      id, (unsigned long long)idx + 1, (unsigned long long)idx,
                      rc);
        return;
    }
    if (idx <= d->snap.index)
        return;
    struct raft_status st;
    raft_status(n->r, &st);
    if (st.first_index > idx + 1)
        return; /* a snapshot beyond @idx is about to be installed */
    if (disk_term_at(d, idx) != meta.term) {
        sim_violation(w, "n%llu: raft_snapshot_at_applied says term %llu at "
                         "%llu, the persisted log says %llu",
                      id, (unsigned long long)meta.term,
                      (unsigned long long)idx,
                      (unsigned long long)disk_term_at(d, idx));
        return;
    }
    /* Save the state machine as the disk's snapshot first, then let the
     * core drop its log, as raft.h's raft_compact asks. */
    d->snap_hash = disk_hash_at(d, idx);
    if (d->snap_hash != n->sm.hash) {
        sim_violation(w, "n%llu: its persisted log through %llu differs from "
                         "what its state machine applied",
                      id, (unsigned long long)idx);
        return;
    }
    disk_drop_through(d, idx);
    d->snap = meta;
    rc = raft_compact(n->r, idx);
    sim_trace(w, "compact n%llu at %llu@%llu -> rc %d", id,
              (unsigned long long)idx, (unsigned long long)meta.term, rc);
    if (rc != RAFT_OK) {
        sim_violation(w, "n%llu: raft_compact(%llu) at its applied index "
                         "returns %d",
                      id, (unsigned long long)idx, rc);
        return;
    }
    w->st.compactions++;
    raft_term t = 0;
    rc = raft_term_at(n->r, idx, &t);
    if (rc != RAFT_OK || t != meta.term) {
        sim_violation(w, "n%llu: after raft_compact(%llu), raft_term_at(%llu) "
                         "gives rc %d term %llu, want term %llu",
                      id, (unsigned long long)idx, (unsigned long long)idx, rc,
                      (unsigned long long)t, (unsigned long long)meta.term);
        return;
    }
    rc = raft_compact(n->r, idx);
    if (rc != RAFT_COMPACTED)
        sim_violation(w, "n%llu: raft_compact(%llu) again returns %d, want "
                         "RAFT_COMPACTED",
                      id, (unsigned long long)idx, rc);
}

/* ------------------------------------------------------------------------
 * Network. */

void fmt_msg(char *buf, size_t len, const struct raft_msg *m)
{
    const char *name = raft_msg_type_name(m->type);
    int o = snprintf(buf, len, "%s %llu->%llu t%llu", name ? name : "?",
                     (unsigned long long)m->from, (unsigned long long)m->to,
                     (unsigned long long)m->term);
    if (o < 0 || (size_t)o >= len)
        return;
    buf += o;
    len -= (size_t)o;
    switch (m->type) {
    case RAFT_MSG_APPEND:
        if (m->n_entries && m->entries)
            snprintf(buf, len, " prev %llu@%llu c%llu [%llu@%llu..%llu@%llu]",
                     (unsigned long long)m->index,
                     (unsigned long long)m->log_term,
                     (unsigned long long)m->commit,
                     (unsigned long long)m->entries[0].index,
                     (unsigned long long)m->entries[0].term,
                     (unsigned long long)m->entries[m->n_entries - 1].index,
                     (unsigned long long)m->entries[m->n_entries - 1].term);
        else
            snprintf(buf, len, " prev %llu@%llu c%llu []",
                     (unsigned long long)m->index,
                     (unsigned long long)m->log_term,
                     (unsigned long long)m->commit);
        break;
    case RAFT_MSG_APPEND_RESP:
        snprintf(buf, len, " i%llu%s hint %llu", (unsigned long long)m->index,
                 m->reject ? " reject" : "",
                 (unsigned long long)m->reject_hint);
        break;
    case RAFT_MSG_VOTE:
    case RAFT_MSG_PRE_VOTE:
        snprintf(buf, len, " last %llu@%llu%s", (unsigned long long)m->index,
                 (unsigned long long)m->log_term, m->force ? " force" : "");
        break;
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_PRE_VOTE_RESP:
        snprintf(buf, len, "%s", m->reject ? " reject" : " grant");
        break;
    case RAFT_MSG_HEARTBEAT:
        snprintf(buf, len, " c%llu ctx %llu", (unsigned long long)m->commit,
                 (unsigned long long)m->context);
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        snprintf(buf, len, " ctx %llu%s", (unsigned long long)m->context,
                 m->reject ? " reject" : "");
        break;
    case RAFT_MSG_SNAPSHOT:
        snprintf(buf, len, " snap %llu@%llu", (unsigned long long)m->snapshot.index,
                 (unsigned long long)m->snapshot.term);
        break;
    case RAFT_MSG_READ_INDEX:
        snprintf(buf, len, " ctx %llu", (unsigned long long)m->context);
        break;
    case RAFT_MSG_READ_INDEX_RESP:
        snprintf(buf, len, " ctx %llu i%llu%s", (unsigned long long)m->context,
                 (unsigned long long)m->index, m->reject ? " reject" : "");
        break;
    default:
        break;
    }
}

int net_blocked(const struct world *w, raft_id from, raft_id to)
{
    if (from > SIM_MAX_ID || to > SIM_MAX_ID)
        return 1;
    return w->partitioned && w->group[from] != w->group[to];
}

static struct nmsg *net_take(struct world *w, size_t k)
{
    struct net *net = &w->net;
    struct nmsg *nm = net->v[k];
    net->v[k] = net->v[--net->n];
    return nm;
}

/* The sender, if the incarnation that sent @nm still runs. */
static struct node *sender_alive(struct world *w, const struct nmsg *nm)
{
    if (nm->m.from == 0 || nm->m.from > SIM_MAX_ID)
        return NULL;
    struct node *s = &w->nodes[nm->m.from];
    return s->alive && s->inc == nm->from_inc ? s : NULL;
}

/* A message that will not arrive: a leader streaming a snapshot learns of
 * the failure; a failed send is sometimes reported as unreachable. */
static void lost(struct world *w, struct nmsg *nm)
{
    struct node *s = sender_alive(w, nm);
    w->st.dropped++;
    if (!s)
        return;
    if (nm->m.type == RAFT_MSG_SNAPSHOT) {
        raft_report_snapshot(s->r, nm->m.to, 0);
        sim_trace(w, "report snapshot to n%llu failed, at n%llu",
                  (unsigned long long)nm->m.to, (unsigned long long)s->id);
    } else if (rng_pm(&w->rng, 300)) {
        raft_report_unreachable(s->r, nm->m.to);
        sim_trace(w, "report n%llu unreachable, at n%llu",
                  (unsigned long long)nm->m.to, (unsigned long long)s->id);
    } else {
        return;
    }
    s->touched = 1;
    node_drain(w, s, 0);
}

void net_drop(struct world *w, size_t k, const char *why)
{
    struct nmsg *nm = net_take(w, k);
    char buf[SIM_TRACE_WIDTH];
    fmt_msg(buf, sizeof(buf), &nm->m);
    sim_trace(w, "drop (%s) %s", why, buf);
    lost(w, nm);
    nmsg_free(nm);
}

void net_dup(struct world *w, size_t k)
{
    struct nmsg *src = w->net.v[k];
    struct nmsg *nm = nmsg_copy(&src->m);
    nm->from_inc = src->from_inc;
    nm->img = src->img;
    if (nm->img)
        nm->img->refs++;
    char buf[SIM_TRACE_WIDTH];
    fmt_msg(buf, sizeof(buf), &nm->m);
    sim_trace(w, "duplicate %s", buf);
    net_push(w, nm);
}

void net_deliver(struct world *w, size_t k)
{
    struct nmsg *nm = net_take(w, k);
    raft_id to = nm->m.to;
    struct node *n = to && to <= SIM_MAX_ID ? &w->nodes[to] : NULL;
    const char *why = NULL;
    if (net_blocked(w, nm->m.from, to))
        why = "partition";
    else if (!n || !n->alive)
        why = "node down";
    else if (!w->settling && rng_pm(&w->rng, w->prof.loss_pm))
        why = "loss";
    char buf[SIM_TRACE_WIDTH];
    fmt_msg(buf, sizeof(buf), &nm->m);
    if (why) {
        sim_trace(w, "lost (%s) %s", why, buf);
        lost(w, nm);
        nmsg_free(nm);
        return;
    }
    sim_trace(w, "deliver %s", buf);
    w->st.delivered++;
    if (nm->img) {
        if (n->n_staged == sizeof(n->staged) / sizeof(n->staged[0])) {
            image_unref(n->staged[0]);
            memmove(n->staged, n->staged + 1,
                    (n->n_staged - 1) * sizeof(n->staged[0]));
            n->n_staged--;
        }
        nm->img->refs++;
        n->staged[n->n_staged++] = nm->img;
    }
    int rc = raft_step(n->r, &nm->m);
    n->touched = 1;
    if (rc != RAFT_OK) {
        sim_violation(w, "n%llu: raft_step refuses a well-formed message "
                         "(rc %d): %s",
                      (unsigned long long)to, rc, buf);
        nmsg_free(nm);
        return;
    }
    node_drain(w, n, 0);
    if (nm->m.type == RAFT_MSG_SNAPSHOT) {
        struct node *s = sender_alive(w, nm);
        if (s && !w->violated) {
            raft_report_snapshot(s->r, to, 1);
            sim_trace(w, "report snapshot to n%llu done, at n%llu",
                      (unsigned long long)to, (unsigned long long)s->id);
            s->touched = 1;
            node_drain(w, s, 0);
        }
    }
    nmsg_free(nm);
}

void net_release(struct net *net)
{
    for (size_t i = 0; i < net->n; i++)
        nmsg_free(net->v[i]);
    free(net->v);
    memset(net, 0, sizeof(*net));
}
