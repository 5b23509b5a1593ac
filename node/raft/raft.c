/* The Raft consensus core (see raft.h for the contract). One file on
 * purpose: the log, the progress of followers, elections, replication,
 * snapshots, membership, leadership transfer and ReadIndex share the same
 * small state and are easier to check together. */
#include "raft.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Allocation: a failed allocation aborts (see raft.h). */

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "raft: out of memory\n");
        abort();
    }
    return q;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "raft: out of memory\n");
        abort();
    }
    return p;
}

static uint8_t *xdup(const uint8_t *data, size_t len)
{
    uint8_t *p = xrealloc(NULL, len);
    if (len)
        memcpy(p, data, len);
    return p;
}

/* ------------------------------------------------------------------ */
/* State */

enum progress_state { PR_PROBE = 0, PR_REPLICATE = 1, PR_SNAPSHOT = 2 };

#define MAX_INFLIGHT_CAP 512
#define MAX_PENDING_READS 1024

/* What the leader knows of one member. */
struct progress {
    raft_id id;
    int learner;
    raft_index match, next;
    enum progress_state state;
    int paused;               /* probe: one append sent, awaiting an answer */
    raft_index pending_snapshot;
    int recent_active;
    /* replicate: last index of each append in flight, oldest first */
    raft_index inflight[MAX_INFLIGHT_CAP];
    size_t in_start, in_count;
};

/* A read waiting for a quorum to confirm the leader (leader side). */
struct pending_read {
    uint64_t seq;             /* our heartbeat round for it */
    uint64_t context;         /* the asker's */
    raft_index index;
    raft_id from;             /* the follower that asked, or our own id */
    raft_id acks[RAFT_MAX_NODES];
    size_t n_acks;
};

struct vote_record {
    raft_id id;
    int granted;
};

struct raft {
    struct raft_config cfg;
    raft_id id;
    uint64_t rng;

    /* Persistent state (as the core knows it; persisted via ready). */
    raft_term term;
    raft_id vote;

    /* The log: snapshot (snap_index, snap_term, snap_conf), then entries
     * ents[0..n) at indexes snap_index+1 .. snap_index+n. */
    raft_index snap_index;
    raft_term snap_term;
    struct raft_conf snap_conf;
    struct raft_entry *ents;
    size_t n_ents, cap_ents;
    raft_index stable;    /* last index persisted */
    raft_index committed;
    raft_index applied;
    int snapshot_pending; /* a received snapshot to hand out in a ready */

    /* Volatile state. */
    enum raft_role role;
    raft_id leader;
    struct raft_conf conf; /* the membership in force: as of the applied
                            * index, or of a received snapshot not yet
                            * installed */
    /* What the state machine holds: the term of the applied entry and the
     * membership as of it. They differ from the log's view only while a
     * received snapshot waits to be installed. */
    raft_term applied_term;
    struct raft_conf applied_conf;
    unsigned election_elapsed, heartbeat_elapsed, randomized_timeout;
    struct vote_record votes[RAFT_MAX_NODES];
    size_t n_votes;

    /* Leader state. */
    struct progress *prs;
    size_t n_prs;
    raft_id transferee;
    raft_index pending_conf_index;
    int bcast_pending;
    struct pending_read *reads_pending;
    size_t n_reads_pending;
    uint64_t read_seq;
    uint64_t read_bcast_seq;  /* a heartbeat round to send at the ready */
    uint64_t *reads_deferred; /* local reads before the term's first commit */
    raft_id *reads_deferred_from;
    size_t n_reads_deferred;

    /* Output. */
    struct raft_msg *msgs;
    size_t n_msgs, cap_msgs;
    struct raft_read_state *read_states;
    size_t n_read_states, cap_read_states;

    /* Ready bookkeeping. */
    struct raft_hard_state prev_hs;
    enum raft_role prev_role;
    raft_id prev_leader;
    struct raft_msg *ready_msgs; /* handed out, freed at advance */
    size_t ready_n_msgs;
    struct raft_read_state *ready_reads;
    int ready_taken;
};

/* ------------------------------------------------------------------ */
/* Small helpers */

static uint64_t rng_next(struct raft *r)
{
    /* splitmix64: small, good enough, and deterministic from the seed */
    uint64_t z = (r->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int conf_is_voter(const struct raft_conf *c, raft_id id)
{
    for (size_t i = 0; i < c->n_voters; i++)
        if (c->voters[i] == id)
            return 1;
    return 0;
}

static int conf_is_learner(const struct raft_conf *c, raft_id id)
{
    for (size_t i = 0; i < c->n_learners; i++)
        if (c->learners[i] == id)
            return 1;
    return 0;
}

static void conf_remove(raft_id *arr, size_t *n, raft_id id)
{
    for (size_t i = 0; i < *n; i++)
        if (arr[i] == id) {
            arr[i] = arr[--*n];
            return;
        }
}

static size_t quorum(const struct raft *r)
{
    return r->conf.n_voters / 2 + 1;
}

static int promotable(const struct raft *r)
{
    return conf_is_voter(&r->conf, r->id) && !r->snapshot_pending;
}

/* ------------------------------------------------------------------ */
/* Queued messages */

/* Messages own copies of their entries (the log may be truncated,
 * compacted or reallocated before a ready sends them). */
static void msgs_free(struct raft_msg *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < msgs[i].n_entries; j++)
            free(msgs[i].entries[j].data);
        free(msgs[i].entries);
    }
    free(msgs);
}

/* The log from @from on is about to be replaced: an acknowledgment queued
 * for it would claim entries that will never be persisted, so drop it. The
 * leader asks again. */
static void drop_acks_from(struct raft *r, raft_index from)
{
    size_t k = 0;
    for (size_t i = 0; i < r->n_msgs; i++) {
        struct raft_msg *m = &r->msgs[i];
        if (m->type == RAFT_MSG_APPEND_RESP && !m->reject && m->index >= from)
            continue; /* carries no entries: nothing to free */
        r->msgs[k++] = *m;
    }
    r->n_msgs = k;
}

/* ------------------------------------------------------------------ */
/* The log */

static raft_index last_index(const struct raft *r)
{
    return r->snap_index + r->n_ents;
}

static const struct raft_entry *entry_at(const struct raft *r, raft_index i)
{
    assert(i > r->snap_index && i <= last_index(r));
    return &r->ents[i - r->snap_index - 1];
}

/* Term of @i, or 0 when compacted away or beyond the log. */
static raft_term term_of(const struct raft *r, raft_index i)
{
    if (i == r->snap_index)
        return r->snap_term;
    if (i < r->snap_index || i > last_index(r))
        return 0;
    return entry_at(r, i)->term;
}

static raft_term last_term(const struct raft *r)
{
    return term_of(r, last_index(r));
}

static int match_term(const struct raft *r, raft_index i, raft_term t)
{
    if (i < r->snap_index || i > last_index(r))
        return 0;
    return term_of(r, i) == t;
}

/* Candidate (@idx, @t) is at least as up to date as our log (§5.4.1). */
static int log_up_to_date(const struct raft *r, raft_index idx, raft_term t)
{
    raft_term lt = last_term(r);
    return t > lt || (t == lt && idx >= last_index(r));
}

/* Drops entries from @from (inclusive) to the end. */
static void log_truncate(struct raft *r, raft_index from)
{
    assert(from > r->snap_index);
    /* Removing committed entries would lose acknowledged writes. */
    assert(from > r->committed);
    drop_acks_from(r, from);
    while (last_index(r) >= from) {
        r->n_ents--;
        free(r->ents[r->n_ents].data);
    }
    if (r->stable >= from)
        r->stable = from - 1;
}

static void log_push(struct raft *r, raft_term term,
                     enum raft_entry_type type, const uint8_t *data,
                     size_t len)
{
    struct raft_entry *e;
    if (r->n_ents == r->cap_ents) {
        r->cap_ents = r->cap_ents ? r->cap_ents * 2 : 256;
        r->ents = xrealloc(r->ents, r->cap_ents * sizeof(*r->ents));
    }
    e = &r->ents[r->n_ents++];
    e->term = term;
    e->index = last_index(r);
    e->type = type;
    e->data = xdup(data, len);
    e->len = len;
}

/* Appends @ents (contiguous, after @prev_index) where they differ from our
 * log, truncating at the first conflict. */
static void log_append_from(struct raft *r, const struct raft_entry *ents,
                            size_t n)
{
    size_t i = 0;
    /* Skip what we already hold (and what a snapshot covers). */
    for (; i < n; i++) {
        const struct raft_entry *e = &ents[i];
        if (e->index <= r->snap_index)
            continue;
        if (e->index > last_index(r) || term_of(r, e->index) != e->term)
            break;
    }
    if (i == n)
        return;
    if (ents[i].index <= last_index(r))
        log_truncate(r, ents[i].index);
    for (; i < n; i++) {
        assert(ents[i].index == last_index(r) + 1);
        log_push(r, ents[i].term, ents[i].type, ents[i].data, ents[i].len);
    }
}

/* The largest index <= @idx whose term is <= @t: a follower's hint that
 * lets a leader skip a whole term of conflicting entries at once. */
static raft_index find_conflict_by_term(const struct raft *r, raft_index idx,
                                        raft_term t)
{
    if (idx > last_index(r))
        idx = last_index(r);
    while (idx > r->snap_index && term_of(r, idx) > t)
        idx--;
    return idx;
}

/* ------------------------------------------------------------------ */
/* Messages */

static struct raft_msg *msg_new(struct raft *r, enum raft_msg_type type,
                                raft_id to)
{
    struct raft_msg *m;
    if (r->n_msgs == r->cap_msgs) {
        r->cap_msgs = r->cap_msgs ? r->cap_msgs * 2 : 32;
        r->msgs = xrealloc(r->msgs, r->cap_msgs * sizeof(*r->msgs));
    }
    m = &r->msgs[r->n_msgs++];
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->from = r->id;
    m->to = to;
    m->term = r->term;
    return m;
}

static void read_state_add(struct raft *r, uint64_t ctx, raft_index index)
{
    if (r->n_read_states == r->cap_read_states) {
        r->cap_read_states = r->cap_read_states ? r->cap_read_states * 2 : 16;
        r->read_states = xrealloc(
            r->read_states, r->cap_read_states * sizeof(*r->read_states));
    }
    r->read_states[r->n_read_states++] = (struct raft_read_state){ctx, index};
}

/* ------------------------------------------------------------------ */
/* Progress (leader) */

static struct progress *progress_of(struct raft *r, raft_id id)
{
    for (size_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].id == id)
            return &r->prs[i];
    return NULL;
}

static void progress_reset(struct raft *r, struct progress *pr)
{
    raft_id id = pr->id;
    int learner = pr->learner;
    memset(pr, 0, sizeof(*pr));
    pr->id = id;
    pr->learner = learner;
    pr->next = last_index(r) + 1;
    pr->state = PR_PROBE;
}

/* Rebuilds the progress table from the membership, keeping what is known
 * of members that stay. */
static void progress_sync(struct raft *r)
{
    struct progress *old = r->prs;
    size_t n_old = r->n_prs, n = 0;
    r->prs = xcalloc(r->conf.n_voters + r->conf.n_learners,
                     sizeof(*r->prs));
    for (int pass = 0; pass < 2; pass++) {
        const raft_id *ids = pass ? r->conf.learners : r->conf.voters;
        size_t count = pass ? r->conf.n_learners : r->conf.n_voters;
        for (size_t i = 0; i < count; i++) {
            struct progress *pr = &r->prs[n++];
            struct progress *was = NULL;
            for (size_t j = 0; j < n_old; j++)
                if (old[j].id == ids[i])
                    was = &old[j];
            if (was) {
                *pr = *was;
            } else {
                pr->id = ids[i];
                progress_reset(r, pr);
                if (ids[i] == r->id)
                    pr->match = r->stable;
            }
            pr->learner = pass;
        }
    }
    r->n_prs = n;
    free(old);
}

static int inflight_full(const struct raft *r, const struct progress *pr)
{
    return pr->in_count >= r->cfg.max_inflight;
}

static void inflight_add(struct progress *pr, raft_index last)
{
    size_t slot = (pr->in_start + pr->in_count) % MAX_INFLIGHT_CAP;
    pr->inflight[slot] = last;
    pr->in_count++;
}

/* Frees the window up to @to (acknowledged). */
static void inflight_free_to(struct progress *pr, raft_index to)
{
    while (pr->in_count && pr->inflight[pr->in_start] <= to) {
        pr->in_start = (pr->in_start + 1) % MAX_INFLIGHT_CAP;
        pr->in_count--;
    }
}

static void become_probe(struct raft *r, struct progress *pr)
{
    (void)r;
    if (pr->state == PR_SNAPSHOT) {
        raft_index ps = pr->pending_snapshot;
        pr->next = (pr->match + 1 > ps + 1) ? pr->match + 1 : ps + 1;
    } else {
        pr->next = pr->match + 1;
    }
    pr->state = PR_PROBE;
    pr->paused = 0;
    pr->pending_snapshot = 0;
    pr->in_start = pr->in_count = 0;
}

static void become_replicate(struct progress *pr)
{
    pr->state = PR_REPLICATE;
    pr->paused = 0;
    pr->next = pr->match + 1;
    pr->in_start = pr->in_count = 0;
}

static int progress_is_paused(const struct raft *r, const struct progress *pr)
{
    switch (pr->state) {
    case PR_PROBE: return pr->paused;
    case PR_REPLICATE: return inflight_full(r, pr);
    default: return 1;
    }
}

/* Records an acknowledgment up to @n; returns 1 when it moved match. */
static int progress_update(struct progress *pr, raft_index n)
{
    int moved = 0;
    if (pr->match < n) {
        pr->match = n;
        moved = 1;
        pr->paused = 0;
    }
    if (pr->next < n + 1)
        pr->next = n + 1;
    return moved;
}

/* ------------------------------------------------------------------ */
/* Sending (leader) */

static int send_snapshot(struct raft *r, struct progress *pr)
{
    struct raft_msg *m;
    if (!pr->recent_active) {
        /* Do not stream a snapshot to a node that is not there; try again
         * once it answers a heartbeat. */
        pr->paused = 1;
        return 0;
    }
    m = msg_new(r, RAFT_MSG_SNAPSHOT, pr->id);
    m->snapshot.index = r->snap_index;
    m->snapshot.term = r->snap_term;
    m->snapshot.conf = r->snap_conf;
    pr->state = PR_SNAPSHOT;
    pr->pending_snapshot = r->snap_index;
    pr->paused = 0;
    pr->in_start = pr->in_count = 0;
    return 1;
}

/* Sends @pr what it lacks, within the flow control. Returns 1 if a message
 * went out. */
static int send_append(struct raft *r, struct progress *pr, int send_empty)
{
    raft_index prev = pr->next - 1;
    raft_term prev_term;
    struct raft_msg *m;
    size_t n = 0, bytes = 0;

    if (pr->id == r->id || progress_is_paused(r, pr))
        return 0;
    if (prev > last_index(r)) {
        pr->next = last_index(r) + 1;
        prev = last_index(r);
    }
    if (prev < r->snap_index)
        return send_snapshot(r, pr); /* the entries it needs are gone */
    prev_term = term_of(r, prev);
    while (pr->next + n <= last_index(r) && n < r->cfg.max_msg_entries) {
        const struct raft_entry *e = entry_at(r, pr->next + n);
        if (n > 0 && bytes + e->len > r->cfg.max_msg_bytes)
            break;
        bytes += e->len;
        n++;
    }
    if (n == 0 && !send_empty)
        return 0;
    m = msg_new(r, RAFT_MSG_APPEND, pr->id);
    m->index = prev;
    m->log_term = prev_term;
    m->commit = r->committed;
    if (n) {
        m->entries = xcalloc(n, sizeof(*m->entries));
        for (size_t i = 0; i < n; i++) {
            const struct raft_entry *e = entry_at(r, pr->next + i);
            m->entries[i] = *e;
            m->entries[i].data = xdup(e->data, e->len);
        }
        m->n_entries = n;
        if (pr->state == PR_REPLICATE) {
            raft_index last = pr->next + n - 1;
            pr->next = last + 1;
            inflight_add(pr, last);
        } else if (pr->state == PR_PROBE) {
            pr->paused = 1;
        }
    } else if (pr->state == PR_PROBE) {
        pr->paused = 1;
    }
    return 1;
}

static void bcast_append(struct raft *r)
{
    for (size_t i = 0; i < r->n_prs; i++)
        send_append(r, &r->prs[i], 0);
}

static void send_heartbeat(struct raft *r, struct progress *pr, uint64_t ctx)
{
    struct raft_msg *m = msg_new(r, RAFT_MSG_HEARTBEAT, pr->id);
    /* Never tell a follower to commit beyond what it holds. */
    m->commit = pr->match < r->committed ? pr->match : r->committed;
    m->context = ctx;
}

static void bcast_heartbeat(struct raft *r, uint64_t ctx)
{
    for (size_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].id != r->id)
            send_heartbeat(r, &r->prs[i], ctx);
}

/* ------------------------------------------------------------------ */
/* Commit (leader) */

static int cmp_index_desc(const void *a, const void *b)
{
    raft_index x = *(const raft_index *)a, y = *(const raft_index *)b;
    return (x < y) - (x > y);
}

static void release_deferred_reads(struct raft *r);

/* Moves the commit index to what a quorum of voters holds, if that entry
 * is of our term (§5.4.2). Returns 1 when it moved. */
static int maybe_commit(struct raft *r)
{
    raft_index matches[RAFT_MAX_NODES];
    size_t n = 0;
    raft_index q;

    for (size_t i = 0; i < r->n_prs; i++)
        if (!r->prs[i].learner)
            matches[n++] = r->prs[i].match;
    if (n == 0)
        return 0;
    qsort(matches, n, sizeof(matches[0]), cmp_index_desc);
    q = matches[quorum(r) - 1];
    if (q <= r->committed)
        return 0;
    /* Only an entry of the current term is committed by counting replicas;
     * earlier entries become committed with it. Counting replicas of an
     * older entry is the bug of the Raft paper's Figure 8. */
    if (!r->cfg.test_unsafe_commit && term_of(r, q) != r->term)
        return 0;
    r->committed = q;
    release_deferred_reads(r);
    return 1;
}

/* ------------------------------------------------------------------ */
/* Reads */

static int committed_in_term(const struct raft *r)
{
    return term_of(r, r->committed) == r->term;
}

/* Answers a read released at @index, to us or to the follower that asked. */
static void read_answer(struct raft *r, raft_id from, uint64_t ctx,
                        raft_index index)
{
    if (from == r->id || from == 0) {
        read_state_add(r, ctx, index);
    } else {
        struct raft_msg *m = msg_new(r, RAFT_MSG_READ_INDEX_RESP, from);
        m->context = ctx;
        m->index = index;
    }
}

static void read_start(struct raft *r, raft_id from, uint64_t ctx)
{
    struct pending_read *pr;
    if (quorum(r) == 1) {
        read_answer(r, from, ctx, r->committed);
        return;
    }
    if (r->n_reads_pending == MAX_PENDING_READS) {
        /* Drop the request: the asker times out and retries. */
        return;
    }
    pr = &r->reads_pending[r->n_reads_pending++];
    memset(pr, 0, sizeof(*pr));
    /* Heartbeats carry our own round number, not the asker's context:
     * only an answer to a heartbeat sent after the read was registered may
     * confirm it, and askers' contexts could coincide. */
    pr->seq = ++r->read_seq;
    pr->context = ctx;
    pr->index = r->committed;
    pr->from = from;
    pr->acks[pr->n_acks++] = r->id;
    /* The round goes out at the next ready, once for every read started
     * until then (ours and the followers'): a quorum's answer to it
     * confirms them all, as it was sent after each was registered. */
    r->read_bcast_seq = pr->seq;
}

static void release_deferred_reads(struct raft *r)
{
    if (r->role != RAFT_LEADER || !committed_in_term(r))
        return;
    for (size_t i = 0; i < r->n_reads_deferred; i++)
        read_start(r, r->reads_deferred_from[i], r->reads_deferred[i]);
    r->n_reads_deferred = 0;
}

/* A heartbeat answer from @from carried round @seq: count it, and release
 * every read up to the newest one a quorum confirmed (a confirmation of a
 * later round confirms the earlier ones too). */
static void read_ack(struct raft *r, raft_id from, uint64_t seq)
{
    size_t release = 0;
    if (!conf_is_voter(&r->conf, from))
        return;
    for (size_t i = 0; i < r->n_reads_pending; i++) {
        struct pending_read *p = &r->reads_pending[i];
        int seen = 0;
        if (p->seq > seq)
            break;
        if (p->seq != seq)
            continue;
        for (size_t j = 0; j < p->n_acks; j++)
            seen |= p->acks[j] == from;
        if (!seen && p->n_acks < RAFT_MAX_NODES)
            p->acks[p->n_acks++] = from;
        if (p->n_acks >= quorum(r))
            release = i + 1;
    }
    for (size_t i = 0; i < release; i++) {
        struct pending_read *p = &r->reads_pending[i];
        read_answer(r, p->from, p->context, p->index);
    }
    memmove(r->reads_pending, r->reads_pending + release,
            (r->n_reads_pending - release) * sizeof(*r->reads_pending));
    r->n_reads_pending -= release;
}

static void reads_drop(struct raft *r)
{
    r->n_reads_pending = 0;
    r->n_reads_deferred = 0;
    r->read_bcast_seq = 0;
}

/* ------------------------------------------------------------------ */
/* Roles */

static void reset_timers(struct raft *r)
{
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    r->randomized_timeout =
        r->cfg.election_ticks +
        (unsigned)(rng_next(r) % (r->cfg.election_ticks ? r->cfg.election_ticks
                                                         : 1));
}

static void reset(struct raft *r, raft_term term)
{
    if (r->term != term) {
        r->term = term;
        r->vote = 0;
    }
    r->leader = 0;
    reset_timers(r);
    r->n_votes = 0;
    r->transferee = 0;
    r->bcast_pending = 0;
    reads_drop(r);
    free(r->prs);
    r->prs = NULL;
    r->n_prs = 0;
}

static void become_follower(struct raft *r, raft_term term, raft_id leader)
{
    reset(r, term);
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
}

static void become_pre_candidate(struct raft *r)
{
    /* A pre-vote changes neither term nor vote: a node that cannot win does
     * not disturb the cluster by raising its term. */
    r->role = RAFT_PRE_CANDIDATE;
    r->leader = 0;
    r->n_votes = 0;
    reset_timers(r);
}

static void become_candidate(struct raft *r)
{
    reset(r, r->term + 1);
    r->vote = r->id;
    r->role = RAFT_CANDIDATE;
}

static void become_leader(struct raft *r)
{
    assert(r->role == RAFT_CANDIDATE);
    reset(r, r->term);
    r->role = RAFT_LEADER;
    r->leader = r->id;
    progress_sync(r);
    for (size_t i = 0; i < r->n_prs; i++) {
        progress_reset(r, &r->prs[i]);
        if (r->prs[i].id == r->id) {
            r->prs[i].match = r->stable;
            r->prs[i].recent_active = 1;
        }
    }
    /* An empty entry of the new term: committing it commits everything
     * before it (§5.4.2), and no membership change may be proposed until it
     * is applied. */
    log_push(r, r->term, RAFT_ENTRY_NORMAL, NULL, 0);
    r->pending_conf_index = last_index(r);
    r->bcast_pending = 1;
}

/* Records @from's answer; returns granted and rejected counts. */
static void poll(struct raft *r, raft_id from, int granted, size_t *yes,
                 size_t *no)
{
    size_t i;
    for (i = 0; i < r->n_votes; i++)
        if (r->votes[i].id == from)
            break;
    if (i == r->n_votes && r->n_votes < RAFT_MAX_NODES)
        r->votes[r->n_votes++] = (struct vote_record){from, granted};
    *yes = *no = 0;
    for (i = 0; i < r->n_votes; i++) {
        if (!conf_is_voter(&r->conf, r->votes[i].id))
            continue;
        if (r->votes[i].granted)
            (*yes)++;
        else
            (*no)++;
    }
}

static void campaign(struct raft *r, int pre, int force)
{
    enum raft_msg_type type;
    raft_term term;
    size_t yes, no;

    if (pre) {
        become_pre_candidate(r);
        type = RAFT_MSG_PRE_VOTE;
        term = r->term + 1;
    } else {
        become_candidate(r);
        type = RAFT_MSG_VOTE;
        term = r->term;
    }
    poll(r, r->id, 1, &yes, &no);
    if (yes >= quorum(r)) {
        /* A cluster of one wins at once. */
        if (pre)
            campaign(r, 0, force);
        else
            become_leader(r);
        return;
    }
    for (size_t i = 0; i < r->conf.n_voters; i++) {
        raft_id to = r->conf.voters[i];
        struct raft_msg *m;
        if (to == r->id)
            continue;
        m = msg_new(r, type, to);
        m->term = term;
        m->index = last_index(r);
        m->log_term = last_term(r);
        m->force = force;
    }
}

/* ------------------------------------------------------------------ */
/* Handling messages (follower side) */

static void handle_append(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg *resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);

    if (m->index < r->committed) {
        /* Old news: tell the leader how far we are. */
        resp->index = r->committed;
        return;
    }
    if (match_term(r, m->index, m->log_term)) {
        raft_index last_new = m->index + m->n_entries;
        log_append_from(r, m->entries, m->n_entries);
        if (r->committed < m->commit) {
            raft_index c = m->commit < last_new ? m->commit : last_new;
            if (c > r->committed)
                r->committed = c;
        }
        resp->index = last_new;
        return;
    }
    resp->reject = 1;
    resp->index = m->index;
    resp->reject_hint = find_conflict_by_term(r, m->index, m->log_term);
    resp->log_term = term_of(r, resp->reject_hint);
}

static void handle_heartbeat(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg *resp;
    if (m->commit > r->committed && m->commit <= last_index(r))
        r->committed = m->commit;
    resp = msg_new(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
    resp->context = m->context;
}

static void handle_snapshot(struct raft *r, const struct raft_msg *m)
{
    const struct raft_snapshot_meta *s = &m->snapshot;
    struct raft_msg *resp;

    if (s->index <= r->committed) {
        resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
        resp->index = r->committed;
        return;
    }
    if (match_term(r, s->index, s->term)) {
        /* We hold the snapshot's last entry: no need to install it. */
        r->committed = s->index;
        resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
        resp->index = s->index;
        return;
    }
    /* Restore: the log becomes the snapshot. What we acknowledged beyond
     * the committed index is gone with it. */
    drop_acks_from(r, r->committed + 1);
    resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
    while (r->n_ents) {
        r->n_ents--;
        free(r->ents[r->n_ents].data);
    }
    r->snap_index = s->index;
    r->snap_term = s->term;
    r->snap_conf = s->conf;
    r->stable = s->index;
    r->committed = s->index;
    r->conf = s->conf;
    r->snapshot_pending = 1;
    resp->index = s->index;
}

/* ------------------------------------------------------------------ */
/* Handling messages (leader side) */

static void handle_append_resp(struct raft *r, const struct raft_msg *m)
{
    struct progress *pr = progress_of(r, m->from);
    if (!pr)
        return;
    pr->recent_active = 1;
    if (m->reject) {
        /* Step back to the follower's hint, never below what it matched. */
        raft_index next;
        if (pr->state == PR_REPLICATE && m->index <= pr->match)
            return; /* a stale rejection */
        if (pr->state == PR_PROBE && m->index != pr->next - 1)
            return; /* an answer to an older probe */
        next = m->reject_hint;
        if (m->log_term > 0) {
            /* Skip our entries of terms the follower has not got. */
            raft_index ours = find_conflict_by_term(r, m->reject_hint,
                                                    m->log_term);
            if (ours < next)
                next = ours;
        }
        next = next + 1;
        if (next > m->index)
            next = m->index;
        if (next < pr->match + 1)
            next = pr->match + 1;
        if (next < 1)
            next = 1;
        if (pr->state == PR_REPLICATE)
            become_probe(r, pr);
        pr->next = next;
        pr->paused = 0;
        send_append(r, pr, 1);
        return;
    }
    if (progress_update(pr, m->index)) {
        switch (pr->state) {
        case PR_PROBE: become_replicate(pr); break;
        case PR_SNAPSHOT:
            if (pr->match >= pr->pending_snapshot)
                become_probe(r, pr);
            break;
        case PR_REPLICATE: inflight_free_to(pr, m->index); break;
        }
        if (maybe_commit(r))
            bcast_append(r);
        else
            while (send_append(r, pr, 0))
                ;
        if (r->transferee == m->from && pr->match == last_index(r))
            msg_new(r, RAFT_MSG_TIMEOUT_NOW, m->from);
    } else if (pr->state == PR_REPLICATE) {
        inflight_free_to(pr, m->index);
    }
}

static void handle_heartbeat_resp(struct raft *r, const struct raft_msg *m)
{
    struct progress *pr = progress_of(r, m->from);
    if (!pr)
        return;
    pr->recent_active = 1;
    pr->paused = 0;
    if (pr->state == PR_REPLICATE && inflight_full(r, pr))
        inflight_free_to(pr, pr->inflight[pr->in_start]); /* free one slot */
    /* Even with nothing new to send: an append the follower cannot match
     * (its appends were lost) makes it reject, and the rejection puts us
     * back on its track. */
    if (pr->match < last_index(r) || pr->state == PR_PROBE)
        send_append(r, pr, 1);
    if (m->context)
        read_ack(r, m->from, m->context);
}

/* ------------------------------------------------------------------ */
/* Stepping */

static void respond_vote(struct raft *r, const struct raft_msg *m)
{
    int pre = m->type == RAFT_MSG_PRE_VOTE;
    struct raft_msg *resp = msg_new(
        r, pre ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP, m->from);
    int can_vote = r->vote == m->from || (r->vote == 0 && r->leader == 0) ||
                   (pre && m->term > r->term);

    if (can_vote && log_up_to_date(r, m->index, m->log_term)) {
        /* A granted pre-vote answers with the term asked for, so that the
         * pre-candidate counts it; a real vote is recorded (and persisted
         * before this answer leaves). */
        resp->term = m->term;
        if (!pre) {
            r->vote = m->from;
            r->election_elapsed = 0;
        }
    } else {
        resp->reject = 1;
    }
}

static void step_candidate(struct raft *r, const struct raft_msg *m)
{
    size_t yes, no;
    enum raft_msg_type want = r->role == RAFT_PRE_CANDIDATE
                                  ? RAFT_MSG_PRE_VOTE_RESP
                                  : RAFT_MSG_VOTE_RESP;

    switch (m->type) {
    case RAFT_MSG_APPEND:
        become_follower(r, m->term, m->from);
        handle_append(r, m);
        break;
    case RAFT_MSG_HEARTBEAT:
        become_follower(r, m->term, m->from);
        handle_heartbeat(r, m);
        break;
    case RAFT_MSG_SNAPSHOT:
        become_follower(r, m->term, m->from);
        handle_snapshot(r, m);
        break;
    case RAFT_MSG_PRE_VOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        if (m->type != want)
            break;
        poll(r, m->from, !m->reject, &yes, &no);
        if (yes >= quorum(r)) {
            if (r->role == RAFT_PRE_CANDIDATE)
                campaign(r, 0, 0);
            else
                become_leader(r);
        } else if (no >= quorum(r)) {
            become_follower(r, r->term, 0);
        }
        break;
    default:
        break;
    }
}

static void step_follower(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APPEND:
        r->election_elapsed = 0;
        r->leader = m->from;
        handle_append(r, m);
        break;
    case RAFT_MSG_HEARTBEAT:
        r->election_elapsed = 0;
        r->leader = m->from;
        handle_heartbeat(r, m);
        break;
    case RAFT_MSG_SNAPSHOT:
        r->election_elapsed = 0;
        r->leader = m->from;
        handle_snapshot(r, m);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        /* The leader hands over: campaign at once, without a pre-vote and
         * past the others' leases. */
        if (promotable(r))
            campaign(r, 0, 1);
        break;
    case RAFT_MSG_READ_INDEX_RESP:
        if (!m->reject)
            read_state_add(r, m->context, m->index);
        break;
    case RAFT_MSG_READ_INDEX:
        /* A follower asked us, but we are not the leader: let it retry. */
        break;
    default:
        break;
    }
}

static void step_leader(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APPEND_RESP: handle_append_resp(r, m); break;
    case RAFT_MSG_HEARTBEAT_RESP: handle_heartbeat_resp(r, m); break;
    case RAFT_MSG_READ_INDEX:
        if (!progress_of(r, m->from))
            break;
        if (!committed_in_term(r)) {
            r->reads_deferred[r->n_reads_deferred] = m->context;
            r->reads_deferred_from[r->n_reads_deferred] = m->from;
            if (r->n_reads_deferred + 1 < MAX_PENDING_READS)
                r->n_reads_deferred++;
        } else {
            read_start(r, m->from, m->context);
        }
        break;
    default:
        break;
    }
}

static int msg_valid(const struct raft *r, const struct raft_msg *m)
{
    if (m->from == 0 || m->to != r->id || m->from == r->id)
        return 0;
    if (m->type < RAFT_MSG_APPEND || m->type > RAFT_MSG_READ_INDEX_RESP)
        return 0;
    for (size_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->index != m->index + 1 + i || e->term == 0 ||
            e->term > m->term || (i && e->term < m->entries[i - 1].term) ||
            (e->len && !e->data))
            return 0;
    }
    if (m->n_entries && m->log_term > m->entries[0].term)
        return 0;
    if (m->type == RAFT_MSG_SNAPSHOT &&
        (m->snapshot.index == 0 || m->snapshot.term == 0 ||
         m->snapshot.conf.n_voters > RAFT_MAX_NODES ||
         m->snapshot.conf.n_learners > RAFT_MAX_NODES))
        return 0;
    return 1;
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
    assert(!r->ready_taken);
    if (!msg_valid(r, m))
        return RAFT_INVALID;

    if (m->term > r->term) {
        if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE) {
            /* While we hear from a leader, a vote request is a node that
             * was cut off: ignore it (unless the leader handed over). */
            int in_lease = r->cfg.check_quorum && r->leader != 0 &&
                           r->election_elapsed < r->cfg.election_ticks;
            if (!m->force && in_lease)
                return RAFT_OK;
        }
        if (m->type == RAFT_MSG_PRE_VOTE ||
            (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject)) {
            /* A pre-vote's term is hypothetical: it changes nothing. */
        } else if (m->type == RAFT_MSG_APPEND ||
                   m->type == RAFT_MSG_HEARTBEAT ||
                   m->type == RAFT_MSG_SNAPSHOT) {
            become_follower(r, m->term, m->from);
        } else {
            become_follower(r, m->term, 0);
        }
    } else if (m->term < r->term) {
        if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
            (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT)) {
            /* A leader of an old term, perhaps cut off and back: tell it
             * our term so that it steps down. */
            msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
        } else if (m->type == RAFT_MSG_PRE_VOTE) {
            struct raft_msg *resp =
                msg_new(r, RAFT_MSG_PRE_VOTE_RESP, m->from);
            resp->reject = 1;
        }
        return RAFT_OK;
    }

    if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE) {
        respond_vote(r, m);
        return RAFT_OK;
    }
    switch (r->role) {
    case RAFT_FOLLOWER: step_follower(r, m); break;
    case RAFT_PRE_CANDIDATE:
    case RAFT_CANDIDATE: step_candidate(r, m); break;
    case RAFT_LEADER: step_leader(r, m); break;
    }
    return RAFT_OK;
}

/* ------------------------------------------------------------------ */
/* Time */

static void leader_check_quorum(struct raft *r)
{
    size_t active = 0;
    for (size_t i = 0; i < r->n_prs; i++) {
        struct progress *pr = &r->prs[i];
        if (pr->id == r->id)
            pr->recent_active = 1;
        if (!pr->learner && pr->recent_active)
            active++;
        if (pr->id != r->id)
            pr->recent_active = 0;
    }
    if (active < quorum(r))
        become_follower(r, r->term, 0);
}

void raft_tick(struct raft *r)
{
    assert(!r->ready_taken);
    if (r->role != RAFT_LEADER) {
        r->election_elapsed++;
        if (promotable(r) && r->election_elapsed >= r->randomized_timeout) {
            r->election_elapsed = 0;
            campaign(r, r->cfg.pre_vote, 0);
        }
        return;
    }
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->cfg.election_ticks) {
        r->election_elapsed = 0;
        if (r->cfg.check_quorum) {
            leader_check_quorum(r);
            if (r->role != RAFT_LEADER)
                return;
        }
        r->transferee = 0; /* a transfer that took this long failed */
    }
    if (r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        bcast_heartbeat(r, 0);
    }
}

void raft_campaign(struct raft *r)
{
    assert(!r->ready_taken);
    if (r->role != RAFT_LEADER && promotable(r))
        campaign(r, r->cfg.pre_vote, 0);
}

/* ------------------------------------------------------------------ */
/* Proposals and requests */

int raft_propose(struct raft *r, const uint8_t *data, size_t len,
                 raft_index *index, raft_term *term)
{
    assert(!r->ready_taken);
    if (r->role != RAFT_LEADER)
        return RAFT_NOT_LEADER;
    if (r->transferee)
        return RAFT_BUSY;
    log_push(r, r->term, RAFT_ENTRY_NORMAL, data, len);
    if (index)
        *index = last_index(r);
    if (term)
        *term = r->term;
    /* Many proposals between two readies travel in one append. */
    r->bcast_pending = 1;
    return RAFT_OK;
}

int raft_propose_conf_change(struct raft *r, const struct raft_conf_change *cc,
                             raft_index *index)
{
    uint8_t buf[RAFT_CONF_CHANGE_BYTES];
    int voter, learner;

    assert(!r->ready_taken);
    if (r->role != RAFT_LEADER)
        return RAFT_NOT_LEADER;
    if (r->transferee || r->pending_conf_index > r->applied)
        return RAFT_BUSY;
    if (cc->node == 0)
        return RAFT_INVALID;
    voter = conf_is_voter(&r->conf, cc->node);
    learner = conf_is_learner(&r->conf, cc->node);
    switch (cc->op) {
    case RAFT_CONF_ADD_LEARNER:
        if (voter || learner ||
            r->conf.n_voters + r->conf.n_learners >= RAFT_MAX_NODES)
            return RAFT_INVALID;
        break;
    case RAFT_CONF_PROMOTE:
        if (!learner)
            return RAFT_INVALID;
        break;
    case RAFT_CONF_REMOVE:
        if (!voter && !learner)
            return RAFT_INVALID;
        if (voter && r->conf.n_voters == 1)
            return RAFT_INVALID;
        break;
    default:
        /* Including RAFT_CONF_ADD_VOTER: voters join as learners first. */
        return RAFT_INVALID;
    }
    raft_conf_change_encode(cc, buf);
    log_push(r, r->term, RAFT_ENTRY_CONF, buf, sizeof(buf));
    r->pending_conf_index = last_index(r);
    if (index)
        *index = last_index(r);
    r->bcast_pending = 1;
    return RAFT_OK;
}

int raft_read_index(struct raft *r, uint64_t context)
{
    assert(!r->ready_taken);
    if (r->role == RAFT_LEADER) {
        if (!committed_in_term(r)) {
            /* Our commit index may lag until our first entry commits:
             * wait for it. */
            if (r->n_reads_deferred + 1 >= MAX_PENDING_READS)
                return RAFT_BUSY;
            r->reads_deferred[r->n_reads_deferred] = context;
            r->reads_deferred_from[r->n_reads_deferred] = r->id;
            r->n_reads_deferred++;
            return RAFT_OK;
        }
        read_start(r, r->id, context);
        return RAFT_OK;
    }
    if (r->leader == 0)
        return RAFT_NO_LEADER;
    {
        struct raft_msg *m = msg_new(r, RAFT_MSG_READ_INDEX, r->leader);
        m->context = context;
    }
    return RAFT_OK;
}

int raft_transfer_leader(struct raft *r, raft_id to)
{
    struct progress *pr;
    assert(!r->ready_taken);
    if (r->role != RAFT_LEADER)
        return RAFT_NOT_LEADER;
    if (to == r->id)
        return RAFT_OK;
    if (!conf_is_voter(&r->conf, to) || !(pr = progress_of(r, to)))
        return RAFT_INVALID;
    if (r->transferee)
        return r->transferee == to ? RAFT_OK : RAFT_BUSY;
    r->transferee = to;
    r->election_elapsed = 0;
    if (pr->match == last_index(r))
        msg_new(r, RAFT_MSG_TIMEOUT_NOW, to);
    else
        send_append(r, pr, 1);
    return RAFT_OK;
}

void raft_report_unreachable(struct raft *r, raft_id id)
{
    struct progress *pr;
    if (r->role != RAFT_LEADER || !(pr = progress_of(r, id)))
        return;
    if (pr->state == PR_REPLICATE)
        become_probe(r, pr);
}

void raft_report_snapshot(struct raft *r, raft_id id, int ok)
{
    struct progress *pr;
    if (r->role != RAFT_LEADER || !(pr = progress_of(r, id)) ||
        pr->state != PR_SNAPSHOT)
        return;
    if (!ok)
        pr->pending_snapshot = 0;
    become_probe(r, pr);
    /* Wait for the next heartbeat answer before probing again. */
    pr->paused = 1;
}

/* ------------------------------------------------------------------ */
/* Membership */

void raft_conf_change_encode(const struct raft_conf_change *cc,
                             uint8_t out[RAFT_CONF_CHANGE_BYTES])
{
    out[0] = (uint8_t)cc->op;
    for (int i = 0; i < 8; i++)
        out[1 + i] = (uint8_t)(cc->node >> (56 - 8 * i));
}

int raft_conf_change_decode(const uint8_t *data, size_t len,
                            struct raft_conf_change *cc)
{
    if (len != RAFT_CONF_CHANGE_BYTES || data[0] < RAFT_CONF_ADD_LEARNER ||
        data[0] > RAFT_CONF_ADD_VOTER)
        return RAFT_INVALID;
    cc->op = (enum raft_conf_op)data[0];
    cc->node = 0;
    for (int i = 0; i < 8; i++)
        cc->node = (cc->node << 8) | data[1 + i];
    return cc->node ? RAFT_OK : RAFT_INVALID;
}

/* Applies a committed membership change to @c. */
static void conf_apply(struct raft_conf *c, const struct raft_conf_change *cc)
{
    switch (cc->op) {
    case RAFT_CONF_ADD_LEARNER:
        if (!conf_is_voter(c, cc->node) && !conf_is_learner(c, cc->node) &&
            c->n_learners < RAFT_MAX_NODES)
            c->learners[c->n_learners++] = cc->node;
        break;
    case RAFT_CONF_PROMOTE:
        if (conf_is_learner(c, cc->node) && c->n_voters < RAFT_MAX_NODES) {
            conf_remove(c->learners, &c->n_learners, cc->node);
            c->voters[c->n_voters++] = cc->node;
        }
        break;
    case RAFT_CONF_REMOVE:
        conf_remove(c->voters, &c->n_voters, cc->node);
        conf_remove(c->learners, &c->n_learners, cc->node);
        break;
    case RAFT_CONF_ADD_VOTER:
        conf_remove(c->learners, &c->n_learners, cc->node);
        if (!conf_is_voter(c, cc->node) && c->n_voters < RAFT_MAX_NODES)
            c->voters[c->n_voters++] = cc->node;
        break;
    }
}

void raft_bootstrap_entries(const raft_id *voters, size_t n,
                            struct raft_entry *out, uint8_t *bufs,
                            struct raft_hard_state *hs)
{
    for (size_t i = 0; i < n; i++) {
        struct raft_conf_change cc = {RAFT_CONF_ADD_VOTER, voters[i]};
        uint8_t *b = bufs + i * RAFT_CONF_CHANGE_BYTES;
        raft_conf_change_encode(&cc, b);
        out[i] = (struct raft_entry){1, i + 1, RAFT_ENTRY_CONF, b,
                                     RAFT_CONF_CHANGE_BYTES};
    }
    *hs = (struct raft_hard_state){n ? 1 : 0, 0, n};
}

static void apply_conf_entry(struct raft *r, const struct raft_entry *e)
{
    struct raft_conf_change cc;
    if (raft_conf_change_decode(e->data, e->len, &cc) != RAFT_OK)
        return; /* a malformed change entry changes nothing */
    conf_apply(&r->conf, &cc);
    if (r->role == RAFT_LEADER) {
        progress_sync(r);
        if (!conf_is_voter(&r->conf, r->id)) {
            /* We removed ourselves (or demoted): step down now that the
             * change is committed; the others elect a new leader. */
            become_follower(r, r->term, 0);
            return;
        }
        maybe_commit(r);
        r->bcast_pending = 1; /* new commit index, or members to feed */
    }
}

/* ------------------------------------------------------------------ */
/* Ready */

int raft_has_ready(const struct raft *r)
{
    raft_index commit_to = r->committed < last_index(r) ? r->committed
                                                       : last_index(r);
    return r->n_msgs > 0 || r->bcast_pending || r->read_bcast_seq ||
           last_index(r) > r->stable ||
           r->snapshot_pending || commit_to > r->applied ||
           r->n_read_states > 0 || r->term != r->prev_hs.term ||
           r->vote != r->prev_hs.vote || r->committed != r->prev_hs.commit ||
           r->role != r->prev_role || r->leader != r->prev_leader;
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
    raft_index from, to;

    assert(!r->ready_taken);
    if (r->bcast_pending) {
        r->bcast_pending = 0;
        if (r->role == RAFT_LEADER)
            bcast_append(r);
    }
    if (r->read_bcast_seq) {
        if (r->role == RAFT_LEADER)
            bcast_heartbeat(r, r->read_bcast_seq);
        r->read_bcast_seq = 0;
    }
    memset(rd, 0, sizeof(*rd));
    rd->hs = (struct raft_hard_state){r->term, r->vote, r->committed};
    rd->hs_changed = rd->hs.term != r->prev_hs.term ||
                     rd->hs.vote != r->prev_hs.vote ||
                     rd->hs.commit != r->prev_hs.commit;
    if (r->snapshot_pending) {
        rd->has_snapshot = 1;
        rd->snapshot.index = r->snap_index;
        rd->snapshot.term = r->snap_term;
        rd->snapshot.conf = r->snap_conf;
    }
    if (last_index(r) > r->stable) {
        rd->entries = (struct raft_entry *)entry_at(r, r->stable + 1);
        rd->n_entries = last_index(r) - r->stable;
    }
    /* A term or a vote must be durable before any message that depends on
     * it leaves, and entries before they are acknowledged; a commit index
     * is learnt again after a restart (from the leader, or by committing
     * anew), as etcd's raft does (MustSync). */
    rd->must_sync = rd->n_entries > 0 || rd->has_snapshot ||
                    rd->hs.term != r->prev_hs.term ||
                    rd->hs.vote != r->prev_hs.vote;
    /* Everything committed and in the log, which this ready persists
     * before the node applies. */
    from = (r->snapshot_pending ? r->snap_index : r->applied) + 1;
    if (from <= r->snap_index)
        from = r->snap_index + 1;
    to = r->committed < last_index(r) ? r->committed : last_index(r);
    if (to >= from) {
        rd->committed = (struct raft_entry *)entry_at(r, from);
        rd->n_committed = to - from + 1;
    }
    rd->msgs = r->msgs;
    rd->n_msgs = r->n_msgs;
    /* A leader's messages (appends, heartbeats, read answers) never
     * depend on its own copy of the entries: it counts itself toward a
     * commit only at raft_advance. */
    rd->send_first = r->role == RAFT_LEADER && !rd->has_snapshot &&
                     rd->hs.term == r->prev_hs.term &&
                     rd->hs.vote == r->prev_hs.vote;
    r->ready_msgs = r->msgs;
    r->ready_n_msgs = r->n_msgs;
    r->msgs = NULL;
    r->n_msgs = r->cap_msgs = 0;
    rd->reads = r->read_states;
    rd->n_reads = r->n_read_states;
    r->ready_reads = r->read_states;
    r->read_states = NULL;
    r->n_read_states = r->cap_read_states = 0;
    rd->soft_changed = r->role != r->prev_role || r->leader != r->prev_leader;
    rd->role = r->role;
    rd->leader = r->leader;
    r->ready_taken = 1;
}

void raft_advance(struct raft *r, const struct raft_ready *rd)
{
    assert(r->ready_taken);
    r->ready_taken = 0;
    if (rd->has_snapshot) {
        r->snapshot_pending = 0;
        if (r->applied < rd->snapshot.index) {
            r->applied = rd->snapshot.index;
            r->applied_term = rd->snapshot.term;
            r->applied_conf = rd->snapshot.conf;
        }
    }
    if (rd->n_entries) {
        raft_index last = rd->entries[rd->n_entries - 1].index;
        if (last > r->stable)
            r->stable = last;
    }
    for (size_t i = 0; i < rd->n_committed; i++) {
        const struct raft_entry *e = &rd->committed[i];
        if (e->index <= r->applied)
            continue;
        r->applied = e->index;
        r->applied_term = e->term;
        if (e->type == RAFT_ENTRY_CONF) {
            apply_conf_entry(r, e);
            r->applied_conf = r->conf;
        }
    }
    r->prev_hs = rd->hs;
    r->prev_role = rd->role;
    r->prev_leader = rd->leader;
    msgs_free(r->ready_msgs, r->ready_n_msgs);
    r->ready_msgs = NULL;
    r->ready_n_msgs = 0;
    free(r->ready_reads);
    r->ready_reads = NULL;
    if (r->role == RAFT_LEADER) {
        struct progress *self = progress_of(r, r->id);
        if (self && self->match < r->stable) {
            self->match = r->stable;
            self->next = r->stable + 1;
            if (maybe_commit(r))
                r->bcast_pending = 1;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Compaction and snapshots */

/* The membership as of @index (in the log, at most the applied index):
 * the snapshot's, rolled forward over the changes up to @index. Changes
 * are rare, so recompute from the snapshot. */
static struct raft_conf conf_at(const struct raft *r, raft_index index)
{
    struct raft_conf c = r->snap_conf;
    for (raft_index i = r->snap_index + 1; i <= index; i++) {
        const struct raft_entry *e = entry_at(r, i);
        struct raft_conf_change cc;
        if (e->type == RAFT_ENTRY_CONF &&
            raft_conf_change_decode(e->data, e->len, &cc) == RAFT_OK)
            conf_apply(&c, &cc);
    }
    return c;
}

/* Whether the log may be compacted up to @index. */
static int compactable(const struct raft *r, raft_index index)
{
    if (index <= r->snap_index)
        return RAFT_COMPACTED;
    /* While a received snapshot waits to be installed, the log already
     * starts after it and the state machine is behind it. */
    if (index > r->applied || r->snapshot_pending)
        return RAFT_UNAVAILABLE;
    return RAFT_OK;
}

int raft_compact_meta(const struct raft *r, raft_index index,
                      struct raft_snapshot_meta *out)
{
    int rc = compactable(r, index);
    if (rc != RAFT_OK)
        return rc;
    out->index = index;
    out->term = term_of(r, index);
    out->conf = conf_at(r, index);
    return RAFT_OK;
}

int raft_compact(struct raft *r, raft_index index)
{
    size_t drop;
    int rc;
    assert(!r->ready_taken);
    if ((rc = compactable(r, index)) != RAFT_OK)
        return rc;
    r->snap_term = term_of(r, index);
    r->snap_conf = conf_at(r, index);
    drop = index - r->snap_index;
    for (size_t i = 0; i < drop; i++)
        free(r->ents[i].data);
    memmove(r->ents, r->ents + drop, (r->n_ents - drop) * sizeof(*r->ents));
    r->n_ents -= drop;
    r->snap_index = index;
    return RAFT_OK;
}

void raft_snapshot_at_applied(const struct raft *r,
                              struct raft_snapshot_meta *out)
{
    out->index = r->applied;
    out->term = r->applied_term;
    out->conf = r->applied_conf;
}

int raft_term_at(const struct raft *r, raft_index index, raft_term *term)
{
    if (index < r->snap_index)
        return RAFT_COMPACTED;
    if (index > last_index(r))
        return RAFT_UNAVAILABLE;
    *term = term_of(r, index);
    return RAFT_OK;
}

/* ------------------------------------------------------------------ */
/* Life cycle */

void raft_config_init(struct raft_config *c, raft_id id, uint64_t seed)
{
    memset(c, 0, sizeof(*c));
    c->id = id;
    c->election_ticks = 10;
    c->heartbeat_ticks = 1;
    c->pre_vote = 1;
    c->check_quorum = 1;
    c->max_msg_entries = 64;
    c->max_msg_bytes = 1 << 20;
    c->max_inflight = 64;
    c->seed = seed;
}

int raft_new(const struct raft_config *c, const struct raft_persisted *p,
             struct raft **out)
{
    struct raft *r;

    *out = NULL;
    if (c->id == 0 || c->election_ticks == 0 || c->heartbeat_ticks == 0 ||
        c->heartbeat_ticks >= c->election_ticks || c->max_msg_entries == 0 ||
        c->max_inflight == 0 || c->max_inflight > MAX_INFLIGHT_CAP)
        return RAFT_INVALID;
    if (p->snap.conf.n_voters > RAFT_MAX_NODES ||
        p->snap.conf.n_learners > RAFT_MAX_NODES ||
        p->applied < p->snap.index)
        return RAFT_INVALID;
    for (size_t i = 0; i < p->n_entries; i++)
        if (p->entries[i].index != p->snap.index + 1 + i ||
            p->entries[i].term == 0 ||
            (i ? p->entries[i].term < p->entries[i - 1].term
               : p->entries[i].term < p->snap.term))
            return RAFT_INVALID;
    if (p->hs.commit > p->snap.index + p->n_entries ||
        p->applied > p->snap.index + p->n_entries)
        return RAFT_INVALID;

    r = xcalloc(1, sizeof(*r));
    r->cfg = *c;
    r->id = c->id;
    r->rng = c->seed ^ (c->id * 0x9e3779b97f4a7c15ULL);
    r->term = p->hs.term;
    r->vote = p->hs.vote;
    r->snap_index = p->snap.index;
    r->snap_term = p->snap.term;
    r->snap_conf = p->snap.conf;
    r->conf = p->snap.conf;
    for (size_t i = 0; i < p->n_entries; i++)
        log_push(r, p->entries[i].term, p->entries[i].type,
                 p->entries[i].data, p->entries[i].len);
    r->stable = last_index(r);
    r->committed = p->hs.commit > p->snap.index ? p->hs.commit : p->snap.index;
    if (r->committed < p->applied)
        r->committed = p->applied;
    r->applied = p->applied;
    /* The membership as of the applied index. */
    for (raft_index i = r->snap_index + 1; i <= r->applied; i++) {
        const struct raft_entry *e = entry_at(r, i);
        if (e->type == RAFT_ENTRY_CONF)
            apply_conf_entry(r, e);
    }
    r->applied_term = term_of(r, r->applied);
    r->applied_conf = r->conf;
    r->reads_pending = xcalloc(MAX_PENDING_READS, sizeof(*r->reads_pending));
    r->reads_deferred = xcalloc(MAX_PENDING_READS, sizeof(*r->reads_deferred));
    r->reads_deferred_from =
        xcalloc(MAX_PENDING_READS, sizeof(*r->reads_deferred_from));
    r->prev_hs = p->hs;
    r->prev_hs.commit = r->committed;
    become_follower(r, r->term, 0);
    r->prev_role = r->role;
    r->prev_leader = r->leader;
    *out = r;
    return RAFT_OK;
}

void raft_free(struct raft *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_ents; i++)
        free(r->ents[i].data);
    free(r->ents);
    free(r->prs);
    msgs_free(r->msgs, r->n_msgs);
    msgs_free(r->ready_msgs, r->ready_n_msgs);
    free(r->read_states);
    free(r->ready_reads);
    free(r->reads_pending);
    free(r->reads_deferred);
    free(r->reads_deferred_from);
    free(r);
}

/* ------------------------------------------------------------------ */
/* Status */

void raft_status(const struct raft *r, struct raft_status *out)
{
    memset(out, 0, sizeof(*out));
    out->id = r->id;
    out->role = r->role;
    out->leader = r->leader;
    out->hs = (struct raft_hard_state){r->term, r->vote, r->committed};
    out->first_index = r->snap_index + 1;
    out->last_index = last_index(r);
    out->applied = r->applied;
    out->conf = r->conf;
    out->transferee = r->transferee;
    if (r->role == RAFT_LEADER)
        for (size_t i = 0; i < r->n_prs && i < RAFT_MAX_NODES * 2; i++) {
            const struct progress *pr = &r->prs[i];
            out->progress[i] = (struct raft_progress_status){
                pr->id, pr->learner, pr->match, pr->next, (int)pr->state,
                pr->recent_active};
            out->n_progress = i + 1;
        }
}

raft_id raft_leader(const struct raft *r)
{
    return r->leader;
}

enum raft_role raft_role(const struct raft *r)
{
    return r->role;
}

raft_term raft_term_now(const struct raft *r)
{
    return r->term;
}

const char *raft_role_name(enum raft_role role)
{
    switch (role) {
    case RAFT_FOLLOWER: return "follower";
    case RAFT_PRE_CANDIDATE: return "pre-candidate";
    case RAFT_CANDIDATE: return "candidate";
    case RAFT_LEADER: return "leader";
    }
    return "unknown";
}

const char *raft_msg_type_name(enum raft_msg_type t)
{
    static const char *const names[] = {
        [RAFT_MSG_APPEND] = "append",
        [RAFT_MSG_APPEND_RESP] = "append-resp",
        [RAFT_MSG_VOTE] = "vote",
        [RAFT_MSG_VOTE_RESP] = "vote-resp",
        [RAFT_MSG_PRE_VOTE] = "pre-vote",
        [RAFT_MSG_PRE_VOTE_RESP] = "pre-vote-resp",
        [RAFT_MSG_HEARTBEAT] = "heartbeat",
        [RAFT_MSG_HEARTBEAT_RESP] = "heartbeat-resp",
        [RAFT_MSG_SNAPSHOT] = "snapshot",
        [RAFT_MSG_TIMEOUT_NOW] = "timeout-now",
        [RAFT_MSG_READ_INDEX] = "read-index",
        [RAFT_MSG_READ_INDEX_RESP] = "read-index-resp",
    };
    if ((unsigned)t < sizeof(names) / sizeof(names[0]) && names[t])
        return names[t];
    return "unknown";
}
