/* The history of a run and the Raft invariants checked against it: one
 * leader per term, log matching, committed entries that never change,
 * leader completeness, acknowledged proposals kept, and terms that never go
 * back. See README.md for what each one protects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define UNKNOWN_TERM (~0ULL)
/* Beyond these a core reports nonsense; refuse rather than allocate. */
#define HIST_MAX_INDEX (1u << 22)
#define HIST_MAX_TERM (1u << 20)

static const char *describe(char *buf, size_t len, int type, uint64_t pid)
{
    if (type == RAFT_ENTRY_CONF)
        snprintf(buf, len, "conf");
    else if (pid)
        snprintf(buf, len, "cmd %llu", (unsigned long long)pid);
    else
        snprintf(buf, len, "empty");
    return buf;
}

void hist_release(struct hist *h)
{
    for (size_t i = 0; i < h->cap; i++)
        free(h->v[i].t);
    free(h->v);
    free(h->leader);
    free(h->votes);
    free(h->props);
    free(h->reads);
    memset(h, 0, sizeof(*h));
}

struct idx_hist *hist_at(struct world *w, raft_index i)
{
    static struct idx_hist junk;
    struct hist *h = &w->h;
    if (i >= HIST_MAX_INDEX) {
        sim_violation(w, "a core reports index %llu", (unsigned long long)i);
        free(junk.t);
        memset(&junk, 0, sizeof(junk));
        return &junk;
    }
    if (i >= h->cap) {
        size_t cap = h->cap ? h->cap : 256;
        while (cap <= i)
            cap *= 2;
        h->v = sim_realloc(h->v, cap * sizeof(*h->v));
        memset(h->v + h->cap, 0, (cap - h->cap) * sizeof(*h->v));
        h->cap = cap;
    }
    return &h->v[i];
}

static int hist_terms(struct world *w, raft_term term)
{
    struct hist *h = &w->h;
    if (term >= HIST_MAX_TERM) {
        sim_violation(w, "a core reports term %llu", (unsigned long long)term);
        return 0;
    }
    if (term >= h->n_terms) {
        size_t n = h->n_terms ? h->n_terms : 64;
        while (n <= term)
            n *= 2;
        h->leader = sim_realloc(h->leader, n * sizeof(*h->leader));
        h->votes = sim_realloc(h->votes, n * sizeof(*h->votes));
        memset(h->leader + h->n_terms, 0, (n - h->n_terms) * sizeof(*h->leader));
        memset(h->votes + h->n_terms, 0, (n - h->n_terms) * sizeof(*h->votes));
        h->n_terms = n;
    }
    return 1;
}

void hist_note_entry(struct world *w, raft_id who, raft_index i, raft_term t,
                     raft_term prev, uint64_t hash)
{
    if (i == 0)
        return;
    struct idx_hist *ih = hist_at(w, i);
    for (uint32_t k = 0; k < ih->n; k++) {
        struct term_rec *r = &ih->t[k];
        if (r->term != t)
            continue;
        if (prev != UNKNOWN_TERM && r->prev != UNKNOWN_TERM && prev != r->prev) {
            sim_violation(w, "log matching: entry %llu@%llu follows an entry of "
                             "term %llu in n%llu's log, of term %llu in "
                             "n%llu's",
                          (unsigned long long)i, (unsigned long long)t,
                          (unsigned long long)prev, (unsigned long long)who,
                          (unsigned long long)r->prev,
                          (unsigned long long)r->who);
            return;
        }
        if (hash && r->hash && hash != r->hash) {
            sim_violation(w, "log matching: n%llu and n%llu both persisted "
                             "entry %llu@%llu, but the entries through it "
                             "differ",
                          (unsigned long long)who, (unsigned long long)r->who,
                          (unsigned long long)i, (unsigned long long)t);
            return;
        }
        if (r->prev == UNKNOWN_TERM)
            r->prev = prev;
        if (!r->hash)
            r->hash = hash;
        return;
    }
    if (ih->n == ih->cap) {
        ih->cap = ih->cap ? ih->cap * 2 : 2;
        ih->t = sim_realloc(ih->t, ih->cap * sizeof(*ih->t));
    }
    ih->t[ih->n++] = (struct term_rec){t, prev, hash, who};
}

void hist_note_leader(struct world *w, raft_term term, raft_id id,
                      const char *how)
{
    if (!hist_terms(w, term))
        return;
    raft_id *l = &w->h.leader[term];
    if (*l == 0) {
        *l = id;
        w->st.elections++;
        sim_trace(w, "n%llu leads term %llu (%s)", (unsigned long long)id,
                  (unsigned long long)term, how);
    } else if (*l != id) {
        sim_violation(w, "two leaders in term %llu: n%llu, and n%llu, which %s",
                      (unsigned long long)term, (unsigned long long)*l,
                      (unsigned long long)id, how);
    }
}

void hist_note_vote(struct world *w, raft_term term, raft_id voter,
                    raft_id cand)
{
    if (!hist_terms(w, term) || voter > SIM_MAX_ID)
        return;
    raft_id *v = &w->h.votes[term][voter];
    if (*v == 0)
        *v = cand;
    else if (*v != cand)
        sim_violation(w, "n%llu votes twice in term %llu: for n%llu and for "
                         "n%llu",
                      (unsigned long long)voter, (unsigned long long)term,
                      (unsigned long long)*v, (unsigned long long)cand);
}

void hist_note_committed(struct world *w, struct node *n,
                         const struct raft_entry *e, uint64_t digest,
                         uint64_t pid)
{
    struct hist *h = &w->h;
    struct idx_hist *ih = hist_at(w, e->index);
    raft_term now = raft_term_now(n->r);
    char a[64], b[64];
    if (!ih->committed) {
        ih->committed = 1;
        ih->cterm = e->term;
        ih->ctype = (uint8_t)e->type;
        ih->cdigest = digest;
        ih->cpid = pid;
        ih->cobs = now;
        ih->cby = n->id;
        ih->cstep = w->step;
        if (e->index > h->max_committed)
            h->max_committed = e->index;
        struct raft_conf_change cc;
        if (e->type == RAFT_ENTRY_CONF &&
            raft_conf_change_decode(e->data, e->len, &cc) == RAFT_OK &&
            cc.op == RAFT_CONF_REMOVE && cc.node && cc.node <= SIM_MAX_ID &&
            !w->retire_at[cc.node])
            /* Removed: shut it down a little later, as an operator would. */
            w->retire_at[cc.node] = w->step + 1 + rng_below(&w->rng, 200);
    } else if (ih->cterm != e->term || ih->cdigest != digest ||
               ih->ctype != e->type) {
        sim_commit_violation(w, "committed entry changed: index %llu was committed as "
                         "%llu@%llu (%s) by n%llu at step %llu; now n%llu "
                         "commits %llu@%llu (%s)",
                      (unsigned long long)e->index,
                      (unsigned long long)e->index,
                      (unsigned long long)ih->cterm,
                      describe(a, sizeof(a), ih->ctype, ih->cpid),
                      (unsigned long long)ih->cby,
                      (unsigned long long)ih->cstep, (unsigned long long)n->id,
                      (unsigned long long)e->index, (unsigned long long)e->term,
                      describe(b, sizeof(b), e->type, pid));
        return;
    } else if (now < ih->cobs) {
        ih->cobs = now;
    }
    if (pid) {
        if (pid > h->n_props) {
            sim_violation(w, "entry %llu@%llu carries proposal %llu, never made",
                          (unsigned long long)e->index,
                          (unsigned long long)e->term, (unsigned long long)pid);
            return;
        }
        struct proposal *p = &h->props[pid - 1];
        if (p->state == PROP_REJECTED) {
            sim_violation(w, "committed entry %llu@%llu carries proposal %llu, "
                             "which raft_propose refused",
                          (unsigned long long)e->index,
                          (unsigned long long)e->term, (unsigned long long)pid);
            return;
        }
        if (p->index != e->index || p->term != e->term) {
            sim_violation(w, "proposal %llu was placed at %llu@%llu but is "
                             "committed at %llu@%llu",
                          (unsigned long long)pid, (unsigned long long)p->index,
                          (unsigned long long)p->term,
                          (unsigned long long)e->index,
                          (unsigned long long)e->term);
            return;
        }
        if (p->state == PROP_PENDING && p->node == n->id && p->inc == n->inc) {
            p->state = PROP_ACKED;
            ih->acked_pid = pid;
            if (e->index > h->max_acked)
                h->max_acked = e->index;
            w->st.acked++;
        }
    }
    if (ih->acked_pid && ih->acked_pid != pid)
        sim_commit_violation(w, "acknowledged proposal %llu at index %llu is replaced "
                         "by %s at n%llu",
                      (unsigned long long)ih->acked_pid,
                      (unsigned long long)e->index,
                      describe(a, sizeof(a), e->type, pid),
                      (unsigned long long)n->id);
}

void hist_check_rec(struct world *w, struct node *n, raft_index i,
                    const struct sm_rec *rec, int must, const char *how)
{
    struct idx_hist *ih = hist_at(w, i);
    char a[64];
    if (!ih->committed) {
        if (must)
            sim_violation(w, "n%llu %s entry %llu@%llu, which no node reported "
                             "committed",
                          (unsigned long long)n->id, how, (unsigned long long)i,
                          (unsigned long long)rec->term);
        return;
    }
    if (ih->cterm != rec->term || ih->cdigest != rec->digest ||
        ih->ctype != rec->type)
        sim_commit_violation(w, "n%llu %s entry %llu@%llu, but %llu@%llu (%s) was "
                         "committed there (first reported by n%llu at step "
                         "%llu)",
                      (unsigned long long)n->id, how, (unsigned long long)i,
                      (unsigned long long)rec->term, (unsigned long long)i,
                      (unsigned long long)ih->cterm,
                      describe(a, sizeof(a), ih->ctype, ih->cpid),
                      (unsigned long long)ih->cby, (unsigned long long)ih->cstep);
}

uint64_t hist_new_proposal(struct world *w)
{
    struct hist *h = &w->h;
    if (h->n_props == h->cap_props) {
        h->cap_props = h->cap_props ? h->cap_props * 2 : 256;
        h->props = sim_realloc(h->props, h->cap_props * sizeof(*h->props));
    }
    memset(&h->props[h->n_props], 0, sizeof(*h->props));
    return ++h->n_props;
}

uint64_t hist_new_read(struct world *w, struct node *n)
{
    struct hist *h = &w->h;
    if (h->n_reads == h->cap_reads) {
        h->cap_reads = h->cap_reads ? h->cap_reads * 2 : 256;
        h->reads = sim_realloc(h->reads, h->cap_reads * sizeof(*h->reads));
    }
    /* Everything committed anywhere before the read is asked must be
     * visible to it: a linearizable read follows every completed write. */
    h->reads[h->n_reads] = (struct readreq){n->id, n->inc, h->max_committed,
                                            w->step};
    return ++h->n_reads;
}

/* Leader completeness: a leader of term T holds every entry committed in a
 * term below T. An entry's commit term is bounded by the term of the first
 * node that reported it committed. */
static void check_new_leader(struct world *w, struct node *n, raft_term term,
                             const struct raft_status *st)
{
    struct hist *h = &w->h;
    raft_index from = st->first_index ? st->first_index : 1;
    for (raft_index i = from; i <= h->max_committed && i < h->cap; i++) {
        struct idx_hist *ih = &h->v[i];
        if (!ih->committed || ih->cobs >= term)
            continue;
        raft_term t = 0;
        int rc = raft_term_at(n->r, i, &t);
        if (rc != RAFT_OK || t != ih->cterm) {
            sim_commit_violation(w, "n%llu leads term %llu without entry %llu@%llu, "
                             "committed before (n%llu reported it in term %llu "
                             "at step %llu); it has %s",
                          (unsigned long long)n->id, (unsigned long long)term,
                          (unsigned long long)i, (unsigned long long)ih->cterm,
                          (unsigned long long)ih->cby,
                          (unsigned long long)ih->cobs,
                          (unsigned long long)ih->cstep,
                          rc == RAFT_OK ? "another term there" : "no entry");
            return;
        }
    }
}

/* The in-memory log as raft_term_at shows it: terms never decrease, each
 * (index, term) always follows the same term (log matching), entries up
 * to the commit index are the committed ones. */
static void check_log(struct world *w, struct node *n, raft_term term,
                      const struct raft_status *st)
{
    unsigned long long id = n->id;
    raft_index first = st->first_index, last = st->last_index;
    if (first == 0 || last + 1 < first) {
        sim_violation(w, "n%llu reports log bounds first %llu last %llu", id,
                      (unsigned long long)first, (unsigned long long)last);
        return;
    }
    if (st->hs.commit > last) {
        sim_violation(w, "n%llu's commit %llu is beyond its last index %llu", id,
                      (unsigned long long)st->hs.commit,
                      (unsigned long long)last);
        return;
    }
    raft_term prev = first == 1 ? 0 : UNKNOWN_TERM, t = 0;
    if (first > 1 && raft_term_at(n->r, first - 1, &t) == RAFT_OK)
        prev = t;
    for (raft_index i = first; i <= last; i++) {
        int rc = raft_term_at(n->r, i, &t);
        if (rc != RAFT_OK) {
            sim_violation(w, "n%llu: raft_term_at(%llu) returns %d inside its "
                             "log %llu..%llu",
                          id, (unsigned long long)i, rc,
                          (unsigned long long)first, (unsigned long long)last);
            return;
        }
        if ((prev != UNKNOWN_TERM && t < prev) || t > term) {
            sim_violation(w, "n%llu's entry %llu has term %llu after term %llu "
                             "(current term %llu)",
                          id, (unsigned long long)i, (unsigned long long)t,
                          (unsigned long long)prev, (unsigned long long)term);
            return;
        }
        hist_note_entry(w, n->id, i, t, prev, 0);
        if (w->violated)
            return;
        if (i <= st->hs.commit && i < w->h.cap && w->h.v[i].committed &&
            w->h.v[i].cterm != t) {
            sim_commit_violation(w, "n%llu holds %llu@%llu at or below its commit "
                             "%llu, but %llu@%llu was committed",
                          id, (unsigned long long)i, (unsigned long long)t,
                          (unsigned long long)st->hs.commit,
                          (unsigned long long)i,
                          (unsigned long long)w->h.v[i].cterm);
            return;
        }
        prev = t;
    }
    int rc = raft_term_at(n->r, last + 1, &t);
    if (rc != RAFT_UNAVAILABLE) {
        sim_violation(w, "n%llu: raft_term_at(%llu) past its last index returns "
                         "%d, want RAFT_UNAVAILABLE",
                      id, (unsigned long long)last + 1, rc);
        return;
    }
    if (first >= 3) {
        rc = raft_term_at(n->r, first - 2, &t);
        if (rc != RAFT_COMPACTED)
            sim_violation(w, "n%llu: raft_term_at(%llu) below its first index "
                             "%llu returns %d, want RAFT_COMPACTED",
                          id, (unsigned long long)first - 2,
                          (unsigned long long)first, rc);
    }
}

void check_node(struct world *w, struct node *n)
{
    unsigned long long id = n->id;
    enum raft_role role = raft_role(n->r);
    raft_term term = raft_term_now(n->r);
    if (term < n->mem_term) {
        sim_violation(w, "n%llu's term goes back from %llu to %llu", id,
                      (unsigned long long)n->mem_term,
                      (unsigned long long)term);
        return;
    }
    if (term < n->disk.hs.term) {
        sim_violation(w, "n%llu is in term %llu, below its persisted term %llu",
                      id, (unsigned long long)term,
                      (unsigned long long)n->disk.hs.term);
        return;
    }
    n->mem_term = term;
    int changed = role != n->role || term != n->role_term;
    if (!changed && !n->touched)
        return;
    struct raft_status st;
    raft_status(n->r, &st);
    if (changed) {
        sim_trace(w, "n%llu is %s in term %llu (leader %llu)", id,
                  raft_role_name(role), (unsigned long long)term,
                  (unsigned long long)raft_leader(n->r));
        if (role == RAFT_LEADER) {
            hist_note_leader(w, term, n->id, "is leader");
            if (w->violated)
                return;
            check_new_leader(w, n, term, &st);
            w->fresh_leader = n->id;
        }
        n->role = role;
        n->role_term = term;
    }
    if (!w->violated)
        check_log(w, n, term, &st);
}

void check_step(struct world *w)
{
    for (raft_id id = 1; id <= SIM_MAX_ID && !w->violated; id++) {
        struct node *n = &w->nodes[id];
        if (n->alive && n->r)
            check_node(w, n);
        n->touched = 0;
    }
}
