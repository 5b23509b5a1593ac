/* The Raft simulator's shared model: nodes with their disks and state
 * machines, the network, the history the invariants are checked against,
 * and the seeded random source that makes every run replayable. */
#ifndef DOSSIER_SIM_H
#define DOSSIER_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "raft.h"

/* Node ids are 1..SIM_MAX_ID; 3 or 5 start as voters, the rest may join. */
#define SIM_MAX_ID 9
/* At most this many members (voters and learners) at once. */
#define SIM_MAX_MEMBERS 7
/* Lines of history kept for a violation report. */
#define SIM_TRACE_LINES 4096
#define SIM_TRACE_WIDTH 200

/* ------------------------------------------------------------------------
 * Random source: xoshiro256** seeded through splitmix64. Never rand() or
 * time(): a run is a function of its seed. */
struct rng {
    uint64_t s[4];
};

void rng_seed(struct rng *g, uint64_t seed);
uint64_t rng_next(struct rng *g);

/* Uniform in [0, n); 0 when n is 0. */
static inline uint64_t rng_below(struct rng *g, uint64_t n)
{
    return n ? rng_next(g) % n : 0;
}

/* True with probability @pm per mille. */
static inline int rng_pm(struct rng *g, unsigned pm)
{
    return rng_below(g, 1000) < pm;
}

uint64_t mix64(uint64_t x);

/* ------------------------------------------------------------------------
 * State machine. It records every applied entry (one record per log index,
 * empty and membership entries included), so two state machines can be
 * compared entry by entry; a rolling hash over the records lets a disk log
 * that starts after a snapshot be hashed as if it started at index 1. */
struct sm_rec {
    raft_term term;
    uint64_t digest; /* of the entry's type and bytes */
    uint8_t type;
};

/* A frozen copy of a state machine: what a snapshot carries. Shared by
 * reference count between the network, staging and disks. */
struct image {
    unsigned refs;
    raft_index index;
    uint64_t hash;
    struct raft_conf conf;
    struct sm_rec *recs; /* recs[i] holds index i + 1 */
};

struct sm {
    raft_index applied;
    size_t cap;
    struct sm_rec *recs;
    uint64_t hash;
    struct raft_conf conf; /* membership by the applied conf entries */
};

/* ------------------------------------------------------------------------
 * Disk: what survives a crash besides the state machine (which is durable
 * on its own, like Dossier's RocksDB state, applied atomically with its
 * index). */
struct disk {
    struct raft_hard_state hs;
    raft_index synced_commit; /* hs.commit as of the last synced write: a
                                 crash may lose a later unsynced one */
    struct raft_snapshot_meta snap;
    uint64_t snap_hash;     /* state machine hash at snap.index */
    struct raft_entry *log; /* log[k] holds index snap.index + 1 + k */
    uint64_t *hashes;       /* prefix hash through log[k] */
    size_t n, cap;
};

/* A read state returned to the node, waiting for its index to be applied. */
struct pending_read {
    uint64_t ctx;
    raft_index index;
};

struct node {
    raft_id id;
    int started; /* ever started (initial voters, or joined) */
    int alive;
    int retired; /* removed from the cluster and shut down for good */
    unsigned inc; /* incarnation: bumped at every (re)start */
    struct raft *r;
    struct disk disk;
    struct sm sm;
    struct image *staged[4]; /* received snapshots, not installed yet */
    size_t n_staged;
    struct pending_read *reads;
    size_t n_reads, cap_reads;
    /* >= 0: crash at that point of the next ready: 0 before persisting,
     * 1 before sending, 2 before applying, 3 before raft_advance, 4 part way
     * through applying. */
    int crash_armed;
    raft_term mem_term; /* highest term seen in this incarnation */
    enum raft_role role;
    raft_term role_term;
    int touched; /* called into since the last invariant pass */
};

/* ------------------------------------------------------------------------
 * Network: messages in flight, each deep-copied out of the sender's ready,
 * with the tick at which it may be delivered. */
struct nmsg {
    struct raft_msg m;
    uint64_t at;
    uint64_t seq;
    unsigned from_inc;
    struct image *img; /* snapshots only */
};

struct net {
    struct nmsg **v;
    size_t n, cap;
    uint64_t seq;
};

/* ------------------------------------------------------------------------
 * History: everything the invariants compare against, kept for the whole
 * run across crashes. */
struct term_rec {
    raft_term term;
    raft_term prev; /* term of the entry before; ~0 when not known */
    uint64_t hash;  /* prefix hash through this entry; 0 when not known */
    raft_id who;
};

struct idx_hist {
    struct term_rec *t;
    uint32_t n, cap;
    int committed;
    raft_term cterm;
    uint8_t ctype;
    uint64_t cdigest;
    raft_term cobs;   /* lowest term of a node reporting it committed */
    raft_id cby;
    uint64_t cstep;
    uint64_t cpid;    /* the proposal it carries, 0 for none */
    uint64_t acked_pid;
};

enum prop_state { PROP_REJECTED = 0, PROP_PENDING, PROP_ACKED };

struct proposal {
    raft_id node;
    unsigned inc;
    raft_index index;
    raft_term term;
    enum prop_state state;
    uint64_t digest;
};

struct readreq {
    raft_id node;
    unsigned inc;
    raft_index floor;
    uint64_t step;
};

struct hist {
    struct idx_hist *v;
    size_t cap;
    raft_index max_committed;
    raft_index max_acked;
    raft_id *leader;            /* leader[term] */
    raft_id (*votes)[SIM_MAX_ID + 1]; /* votes[term][voter] */
    size_t n_terms;
    struct proposal *props; /* props[pid - 1] */
    size_t n_props, cap_props;
    struct readreq *reads; /* reads[ctx - 1] */
    size_t n_reads, cap_reads;
};

/* ------------------------------------------------------------------------
 * A run. */
struct opts {
    uint64_t seed_from, seed_to;
    uint64_t steps;
    unsigned nodes;
    int verbose;
    int unsafe_commit;
    int expect_violation;
    int trace_lines;
    int scenario; /* -1: chosen by the seed; else a fixed fault profile */
};

/* How often each kind of event happens; chosen per seed. */
enum ev {
    EV_DELIVER,
    EV_CLOCK,
    EV_TICK_ONE,
    EV_PROPOSE,
    EV_PROPOSE_ANY,
    EV_READ,
    EV_DROP,
    EV_DUP,
    EV_DELAY,
    EV_PARTITION,
    EV_HEAL,
    EV_CRASH,
    EV_RESTART,
    EV_TRANSFER,
    EV_COMPACT,
    EV_CONF,
    EV_READY,
    EV_MALFORMED,
    EV_CAMPAIGN,
    EV_COUNT
};

struct profile {
    const char *name;
    unsigned w[EV_COUNT];
    unsigned loss_pm;     /* lost at delivery */
    unsigned defer_pm;    /* ready left pending after an event */
    unsigned max_latency; /* ticks */
    unsigned busy_clock_pm; /* clock ticks while messages are due */
    unsigned isolate_leader_pm; /* after a proposal, cut the leader off */
    unsigned crash_leader_pm;   /* crashes pick the leader */
};

struct stats {
    uint64_t runs, steps, acked, elections, snapshots_sent, snapshots_installed;
    uint64_t crashes, restarts, delivered, dropped, reads_served, conf_applied;
    uint64_t compactions, partitions, violations, liveness_failures;
};

struct world {
    const struct opts *o;
    uint64_t seed;
    struct rng rng;
    unsigned n_init;
    struct node nodes[SIM_MAX_ID + 1];
    raft_id next_id;
    struct raft_config cfg; /* shared by every node but id and seed */
    struct profile prof;
    struct net net;
    uint64_t now; /* ticks */
    uint64_t step;
    int group[SIM_MAX_ID + 1];
    int partitioned;
    int settling;
    struct hist h;
    uint64_t retire_at[SIM_MAX_ID + 1]; /* 0: not scheduled */
    raft_id fresh_leader; /* became leader in the last step */
    struct stats st;
    /* the first violation; the run stops after the step that found it */
    int violated;
    char violation[512];
    int commit_violation; /* it was one of commit safety */
    char header[256]; /* the run's scenario and configuration */
    /* the trace ring */
    char (*trace)[SIM_TRACE_WIDTH];
    uint64_t n_trace;
};

/* sim.c */
void sim_trace(struct world *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sim_violation(struct world *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A violation of commit safety: a committed entry changed or lost. */
void sim_commit_violation(struct world *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void *sim_alloc(size_t n);
void *sim_realloc(void *p, size_t n);

/* node.c: the node model and the network. */
uint64_t payload_digest(int type, const uint8_t *data, size_t len);
void payload_make(uint64_t pid, uint8_t *out, size_t *len);
#define PAYLOAD_MAX 48
void image_unref(struct image *img);
void node_start(struct world *w, struct node *n, int joining);
void node_crash(struct world *w, struct node *n, const char *why);
void node_release(struct node *n);
/* Processes up to a few readies; @force ignores the profile's deferral. */
void node_drain(struct world *w, struct node *n, int force);
void node_process_ready(struct world *w, struct node *n, int crash_point);
void node_compact(struct world *w, struct node *n);
void node_serve_reads(struct world *w, struct node *n);
raft_index disk_last(const struct disk *d);
const struct raft_entry *disk_entry(const struct disk *d, raft_index i);
void net_deliver(struct world *w, size_t k);
void net_drop(struct world *w, size_t k, const char *why);
void net_dup(struct world *w, size_t k);
void net_release(struct net *net);
int net_blocked(const struct world *w, raft_id from, raft_id to);
void fmt_msg(char *buf, size_t len, const struct raft_msg *m);
int conf_has_voter(const struct raft_conf *c, raft_id id);
int conf_has_learner(const struct raft_conf *c, raft_id id);
int conf_equal(const struct raft_conf *a, const struct raft_conf *b);
void fmt_conf(char *buf, size_t len, const struct raft_conf *c);

/* check.c: the history and the invariants. */
void hist_release(struct hist *h);
struct idx_hist *hist_at(struct world *w, raft_index i);
/* An entry (@i, @t) after an entry of term @prev (~0 unknown) whose prefix
 * hash is @hash (0 unknown) was seen in @who's log. */
void hist_note_entry(struct world *w, raft_id who, raft_index i, raft_term t,
                     raft_term prev, uint64_t hash);
void hist_note_leader(struct world *w, raft_term term, raft_id id,
                      const char *how);
void hist_note_vote(struct world *w, raft_term term, raft_id voter,
                    raft_id cand);
/* Node @n reports @e committed (in the ready being processed). */
void hist_note_committed(struct world *w, struct node *n,
                         const struct raft_entry *e, uint64_t digest,
                         uint64_t pid);
/* @rec, which @n holds at @i, must match what was committed there; with
 * @must, something must have been committed there. */
void hist_check_rec(struct world *w, struct node *n, raft_index i,
                    const struct sm_rec *rec, int must, const char *how);
uint64_t hist_new_proposal(struct world *w);
uint64_t hist_new_read(struct world *w, struct node *n);
void check_node(struct world *w, struct node *n);
void check_step(struct world *w);

#endif
