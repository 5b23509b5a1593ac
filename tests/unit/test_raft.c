/* Scenario tests of the Raft core: each drives a few cores through a small
 * network by hand and pins one behaviour. The randomized proof is the
 * simulator (tests/sim); these say what each behaviour is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "raft.h"

#define MAXN 6
#define MAXQ 4096

struct dnode {
    struct raft *r;
    raft_id id;
    int up;
    /* disk */
    struct raft_hard_state hs;
    struct raft_snapshot_meta snap;
    struct raft_entry *log;
    size_t n_log;
    /* state machine: applied payloads */
    char applied[512][16];
    size_t n_applied;
    raft_index applied_index;
    struct raft_read_state reads[64];
    size_t n_reads;
};

struct qmsg {
    struct raft_msg m;
    struct raft_entry ents[64];
};

struct net {
    struct dnode nodes[MAXN];
    size_t n;
    struct qmsg *q;
    size_t nq;
    int cut[MAXN + 1][MAXN + 1]; /* cut[a][b]: a cannot reach b */
};

static struct net *net_new(size_t n, size_t voters)
{
    struct net *net = calloc(1, sizeof(*net));
    net->q = calloc(MAXQ, sizeof(*net->q));
    net->n = n;
    for (size_t i = 0; i < n; i++) {
        struct dnode *d = &net->nodes[i];
        struct raft_config c;
        struct raft_persisted p = {0};
        d->id = i + 1;
        for (size_t v = 0; v < voters; v++)
            p.snap.conf.voters[p.snap.conf.n_voters++] = v + 1;
        d->snap = p.snap;
        raft_config_init(&c, d->id, 42);
        assert_int_equal(raft_new(&c, &p, &d->r), RAFT_OK);
        d->up = 1;
    }
    return net;
}

static void disk_free(struct dnode *d)
{
    for (size_t i = 0; i < d->n_log; i++)
        free(d->log[i].data);
    free(d->log);
    d->log = NULL;
    d->n_log = 0;
}

static void net_free(struct net *net)
{
    for (size_t i = 0; i < net->n; i++) {
        raft_free(net->nodes[i].r);
        disk_free(&net->nodes[i]);
    }
    for (size_t i = 0; i < net->nq; i++)
        for (size_t j = 0; j < net->q[i].m.n_entries; j++)
            free(net->q[i].ents[j].data);
    free(net->q);
    free(net);
}

static struct dnode *node(struct net *net, raft_id id)
{
    return &net->nodes[id - 1];
}

/* Processes every ready of @d the way a node must. */
static void handle_ready(struct net *net, struct dnode *d)
{
    while (d->up && raft_has_ready(d->r)) {
        struct raft_ready rd;
        raft_ready(d->r, &rd);
        /* What must be durable is synced. */
        if (rd.n_entries || rd.has_snapshot ||
            (rd.hs_changed &&
             (rd.hs.term != d->hs.term || rd.hs.vote != d->hs.vote)))
            assert_true(rd.must_sync);
        if (rd.hs_changed)
            d->hs = rd.hs;
        if (rd.has_snapshot) {
            disk_free(d);
            d->snap = rd.snapshot;
            d->applied_index = rd.snapshot.index;
        }
        if (rd.n_entries) {
            raft_index first = rd.entries[0].index;
            while (d->n_log && d->log[d->n_log - 1].index >= first)
                free(d->log[--d->n_log].data);
            d->log = realloc(d->log, (d->n_log + rd.n_entries) * sizeof(*d->log));
            for (size_t i = 0; i < rd.n_entries; i++) {
                struct raft_entry e = rd.entries[i];
                e.data = malloc(e.len + 1);
                memcpy(e.data, rd.entries[i].data, e.len);
                d->log[d->n_log++] = e;
            }
        }
        for (size_t i = 0; i < rd.n_msgs; i++) {
            struct qmsg *q;
            assert_true(net->nq < MAXQ);
            q = &net->q[net->nq++];
            q->m = rd.msgs[i];
            assert_true(q->m.n_entries <= 64);
            for (size_t j = 0; j < q->m.n_entries; j++) {
                q->ents[j] = q->m.entries[j];
                q->ents[j].data = malloc(q->ents[j].len + 1);
                memcpy(q->ents[j].data, q->m.entries[j].data,
                       q->ents[j].len);
            }
            q->m.entries = q->ents;
        }
        for (size_t i = 0; i < rd.n_committed; i++) {
            const struct raft_entry *e = &rd.committed[i];
            if (e->type == RAFT_ENTRY_NORMAL && e->len) {
                assert_true(e->len < 16);
                memcpy(d->applied[d->n_applied], e->data, e->len);
                d->applied[d->n_applied][e->len] = 0;
                d->n_applied++;
            }
            d->applied_index = e->index;
        }
        for (size_t i = 0; i < rd.n_reads && d->n_reads < 64; i++)
            d->reads[d->n_reads++] = rd.reads[i];
        raft_advance(d->r, &rd);
    }
}

/* Delivers every queued message (and what they cause) until quiet. */
static void deliver_all(struct net *net)
{
    for (int rounds = 0; rounds < 1000; rounds++) {
        struct qmsg *batch;
        size_t n;
        for (size_t i = 0; i < net->n; i++)
            handle_ready(net, &net->nodes[i]);
        if (net->nq == 0)
            return;
        n = net->nq;
        batch = malloc(n * sizeof(*batch));
        memcpy(batch, net->q, n * sizeof(*batch));
        net->nq = 0;
        for (size_t i = 0; i < n; i++) {
            struct raft_msg *m = &batch[i].m;
            struct dnode *to = node(net, m->to);
            m->entries = batch[i].ents;
            if (to->up && !net->cut[m->from][m->to])
                raft_step(to->r, m);
            for (size_t j = 0; j < m->n_entries; j++)
                free(batch[i].ents[j].data);
        }
        free(batch);
    }
    fail_msg("the network never went quiet");
}

/* Drops every queued message (after a test stepped the ones it wanted). */
static void drop_queue(struct net *net)
{
    for (size_t i = 0; i < net->nq; i++)
        for (size_t j = 0; j < net->q[i].m.n_entries; j++)
            free(net->q[i].ents[j].data);
    net->nq = 0;
}

static void tick_all(struct net *net, int ticks)
{
    for (int t = 0; t < ticks; t++) {
        for (size_t i = 0; i < net->n; i++)
            if (net->nodes[i].up)
                raft_tick(net->nodes[i].r);
        deliver_all(net);
    }
}

/* Ticks until some node leads; returns its id. */
static raft_id elect(struct net *net)
{
    for (int t = 0; t < 200; t++) {
        tick_all(net, 1);
        for (size_t i = 0; i < net->n; i++)
            if (net->nodes[i].up &&
                raft_role(net->nodes[i].r) == RAFT_LEADER)
                return net->nodes[i].id;
    }
    fail_msg("no leader elected");
    return 0;
}

static void propose(struct net *net, raft_id leader, const char *s)
{
    assert_int_equal(raft_propose(node(net, leader)->r, (const uint8_t *)s,
                                  strlen(s), NULL, NULL),
                     RAFT_OK);
    deliver_all(net);
}

static void isolate(struct net *net, raft_id id, int on)
{
    for (size_t i = 1; i <= net->n; i++) {
        net->cut[id][i] = on;
        net->cut[i][id] = on;
    }
}

/* Crash: drop the core, keep the disk; restart from the disk. */
static void crash(struct dnode *d)
{
    raft_free(d->r);
    d->r = NULL;
    d->up = 0;
}

static void restart(struct dnode *d)
{
    struct raft_config c;
    struct raft_persisted p = {0};
    p.hs = d->hs;
    p.snap = d->snap;
    p.entries = d->log;
    p.n_entries = d->n_log;
    p.applied = d->applied_index;
    raft_config_init(&c, d->id, 42 + d->id);
    assert_int_equal(raft_new(&c, &p, &d->r), RAFT_OK);
    d->up = 1;
}

/* ------------------------------------------------------------------ */

/* A single-voter cluster elects itself and commits what it proposes. */
static void test_single_node_elects_itself_and_commits(void **state)
{
    struct net *net = net_new(1, 1);
    (void)state;
    assert_int_equal(elect(net), 1);
    propose(net, 1, "a");
    propose(net, 1, "b");
    assert_int_equal(node(net, 1)->n_applied, 2);
    assert_string_equal(node(net, 1)->applied[1], "b");
    net_free(net);
}

/* A ready that only moves the commit index asks for no sync; one with
 * entries or a new term or vote does. A restart whose persisted commit
 * index was lost (the unsynced write) takes the applied index instead and
 * applies nothing twice. */
static void test_commit_only_ready_needs_no_sync(void **state)
{
    struct net *net = net_new(1, 1);
    struct dnode *d = node(net, 1);
    struct raft_ready rd;
    raft_index index;
    (void)state;

    assert_int_equal(elect(net), 1); /* handle_ready checks the syncs */
    assert_int_equal(raft_propose(d->r, (const uint8_t *)"a", 1, &index,
                                  NULL),
                     RAFT_OK);
    raft_ready(d->r, &rd);
    assert_int_equal(rd.n_entries, 1);
    assert_true(rd.must_sync);
    /* Persist it the way handle_ready does, by hand. */
    d->log = realloc(d->log, (d->n_log + 1) * sizeof(*d->log));
    d->log[d->n_log] = rd.entries[0];
    d->log[d->n_log].data = malloc(2);
    memcpy(d->log[d->n_log].data, "a", 1);
    d->n_log++;
    if (rd.hs_changed)
        d->hs = rd.hs;
    raft_advance(d->r, &rd);
    raft_ready(d->r, &rd);
    assert_int_equal(rd.n_entries, 0);
    assert_true(rd.hs_changed);
    assert_int_equal(rd.hs.commit, index);
    assert_false(rd.must_sync);
    assert_int_equal(rd.n_committed, 1);
    assert_int_equal(rd.committed[0].index, index);
    /* Applied, but the commit index never reached the disk. */
    d->applied_index = index;
    memcpy(d->applied[d->n_applied++], "a", 2);
    raft_advance(d->r, &rd);
    assert_true(d->hs.commit < index);
    crash(d);
    restart(d);
    elect(net);
    propose(net, 1, "b");
    assert_int_equal(d->n_applied, 2);
    assert_string_equal(d->applied[0], "a");
    assert_string_equal(d->applied[1], "b");
    net_free(net);
}

/* Three nodes elect exactly one leader, and a proposal is applied by all
 * in the same order. */
static void test_three_nodes_replicate_in_order(void **state)
{
    struct net *net = net_new(3, 3);
    raft_id l;
    int leaders = 0;
    (void)state;

    l = elect(net);
    for (size_t i = 0; i < 3; i++)
        leaders += raft_role(net->nodes[i].r) == RAFT_LEADER;
    assert_int_equal(leaders, 1);
    propose(net, l, "x1");
    propose(net, l, "x2");
    tick_all(net, 2); /* heartbeats carry the commit index */
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(net->nodes[i].n_applied, 2);
        assert_string_equal(net->nodes[i].applied[0], "x1");
        assert_string_equal(net->nodes[i].applied[1], "x2");
    }
    net_free(net);
}

/* Only the leader accepts proposals. */
static void test_followers_refuse_proposals(void **state)
{
    struct net *net = net_new(3, 3);
    raft_id l = elect(net);
    raft_id f = l % 3 + 1;
    (void)state;
    assert_int_equal(raft_propose(node(net, f)->r, (const uint8_t *)"z", 1,
                                  NULL, NULL),
                     RAFT_NOT_LEADER);
    assert_int_equal(raft_leader(node(net, f)->r), l);
    net_free(net);
}

/* With pre-vote, a node cut off from the others campaigns without raising
 * its term, so that it does not depose the leader when it comes back. */
static void test_prevote_keeps_term_of_isolated_node(void **state)
{
    struct net *net = net_new(3, 3);
    raft_id l = elect(net), f = l % 3 + 1;
    raft_term before = raft_term_now(node(net, f)->r);
    (void)state;

    isolate(net, f, 1);
    tick_all(net, 100);
    assert_int_equal(raft_term_now(node(net, f)->r), before);
    isolate(net, f, 0);
    tick_all(net, 5);
    assert_int_equal(raft_role(node(net, l)->r), RAFT_LEADER);
    net_free(net);
}

/* A leader cut off from a quorum steps down (check-quorum), and the
 * majority elects another. */
static void test_leader_without_quorum_steps_down(void **state)
{
    struct net *net = net_new(3, 3);
    raft_id l = elect(net);
    raft_id other = 0;
    (void)state;

    isolate(net, l, 1);
    tick_all(net, 60);
    assert_int_not_equal(raft_role(node(net, l)->r), RAFT_LEADER);
    for (size_t i = 0; i < 3; i++)
        if (net->nodes[i].id != l &&
            raft_role(net->nodes[i].r) == RAFT_LEADER)
            other = net->nodes[i].id;
    assert_int_not_equal(other, 0);
    net_free(net);
}

/* A proposal committed before a crash of the leader survives it: the new
 * leader has it, and the restarted old leader applies it once. */
static void test_committed_entry_survives_leader_crash(void **state)
{
    struct net *net = net_new(3, 3);
    raft_id l = elect(net), l2;
    (void)state;

    propose(net, l, "keep");
    tick_all(net, 2);
    crash(node(net, l));
    l2 = elect(net);
    assert_int_not_equal(l2, l);
    propose(net, l2, "next");
    restart(node(net, l));
    tick_all(net, 30);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(net->nodes[i].n_applied, 2);
        assert_string_equal(net->nodes[i].applied[0], "keep");
        assert_string_equal(net->nodes[i].applied[1], "next");
    }
    net_free(net);
}

/* Raft's Figure 8: an entry of an earlier term replicated to a majority is
 * not committed by counting replicas; only an entry of the leader's own
 * term commits it. Built by hand: node 1 leads term 2 and gets an entry to
 * node 2 only; a leader of term 3 appends another entry; node 1 leads again
 * in term 4 and replicates its term-2 entry to a majority. */
static void test_old_term_entry_not_committed_by_counting(void **state)
{
    struct raft_config c;
    struct raft_persisted p = {0};
    struct raft *r;
    struct raft_entry e1 = {1, 1, RAFT_ENTRY_NORMAL, (uint8_t *)"a", 1};
    struct raft_entry e2 = {2, 2, RAFT_ENTRY_NORMAL, (uint8_t *)"b", 1};
    struct raft_entry ents[2] = {e1, e2};
    struct raft_msg m = {0};
    struct raft_ready rd;
    (void)state;

    /* Node 1 restarts in term 3 with entries 1 (term 1, committed) and 2
     * (term 2, on node 2 too). */
    p.hs = (struct raft_hard_state){3, 0, 1};
    p.snap.conf.n_voters = 3;
    p.snap.conf.voters[0] = 1;
    p.snap.conf.voters[1] = 2;
    p.snap.conf.voters[2] = 3;
    p.entries = ents;
    p.n_entries = 2;
    p.applied = 1;
    raft_config_init(&c, 1, 7);
    c.pre_vote = 0;
    assert_int_equal(raft_new(&c, &p, &r), RAFT_OK);
    /* It wins the election of term 4 with node 3's vote. */
    while (raft_role(r) != RAFT_CANDIDATE)
        raft_tick(r);
    while (raft_has_ready(r)) {
        raft_ready(r, &rd);
        raft_advance(r, &rd);
    }
    m.type = RAFT_MSG_VOTE_RESP;
    m.from = 3;
    m.to = 1;
    m.term = raft_term_now(r);
    assert_int_equal(raft_step(r, &m), RAFT_OK);
    assert_int_equal(raft_role(r), RAFT_LEADER);
    raft_ready(r, &rd); /* persists its empty entry 3 of term 4 */
    raft_advance(r, &rd);
    /* Node 3 acknowledges entry 2 (the term-2 entry) but not entry 3. */
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_APPEND_RESP;
    m.from = 3;
    m.to = 1;
    m.term = raft_term_now(r);
    m.index = 2;
    assert_int_equal(raft_step(r, &m), RAFT_OK);
    raft_ready(r, &rd);
    /* Entry 2 is on nodes 1, 2 and 3 by now, yet not committed. */
    assert_int_equal(rd.hs.commit, 1);
    raft_advance(r, &rd);
    /* Once node 3 holds entry 3, of the leader's term, both commit. */
    m.index = 3;
    assert_int_equal(raft_step(r, &m), RAFT_OK);
    raft_ready(r, &rd);
    assert_int_equal(rd.hs.commit, 3);
    raft_advance(r, &rd);
    raft_free(r);
}

/* A follower that missed entries the leader compacted away catches up
 * through a snapshot. */
static void test_lagging_follower_gets_snapshot(void **state)
{
    struct net *net = net_new(3, 3);
    raft_id l = elect(net), f = l % 3 + 1;
    struct dnode *lead;
    (void)state;

    isolate(net, f, 1);
    for (int i = 0; i < 20; i++) {
        char s[8];
        snprintf(s, sizeof(s), "p%d", i);
        propose(net, l, s);
    }
    tick_all(net, 2);
    lead = node(net, l);
    assert_int_equal(raft_compact(lead->r, lead->applied_index), RAFT_OK);
    isolate(net, f, 0);
    tick_all(net, 5);
    /* The follower installed a snapshot at the leader's compaction point or
     * later, then received the rest. */
    assert_true(node(net, f)->snap.index > 0);
    assert_int_equal(node(net, f)->applied_index, lead->applied_index);
    net_free(net);
}

/* Compacting short of the applied index (the tail cluster.c keeps) spares
 * a follower that lags by less than the tail: it catches up from the log,
 * no snapshot. raft_compact_meta describes the compaction point with its
 * own term and membership: a learner added after it is not in it. */
static void test_compaction_tail_spares_a_lagging_follower(void **state)
{
    struct net *net = net_new(4, 3);
    raft_id l = elect(net), f = l % 3 + 1;
    struct raft_conf_change cc = {RAFT_CONF_ADD_LEARNER, 4};
    struct raft_snapshot_meta before, after;
    struct dnode *lead;
    raft_index conf_index;
    (void)state;

    for (int i = 0; i < 5; i++)
        propose(net, l, "a");
    tick_all(net, 2);
    lead = node(net, l);
    assert_int_equal(raft_propose_conf_change(lead->r, &cc, NULL), RAFT_OK);
    deliver_all(net);
    tick_all(net, 2);
    conf_index = lead->applied_index;
    isolate(net, f, 1);
    for (int i = 0; i < 10; i++)
        propose(net, l, "b");
    tick_all(net, 2);
    /* The learner's entry is in the membership as of it, not before. */
    assert_int_equal(raft_compact_meta(lead->r, conf_index - 1, &before),
                     RAFT_OK);
    assert_int_equal(before.conf.n_learners, 0);
    assert_int_equal(raft_compact_meta(lead->r, conf_index, &after),
                     RAFT_OK);
    assert_int_equal(after.conf.n_learners, 1);
    assert_int_equal(after.index, conf_index);
    assert_true(after.term > 0);
    assert_int_equal(raft_compact_meta(lead->r, lead->applied_index + 1,
                                       &after),
                     RAFT_UNAVAILABLE);
    /* Compact up to the follower's last entry, keeping what it lacks. */
    assert_int_equal(raft_compact(lead->r, conf_index), RAFT_OK);
    assert_int_equal(raft_compact_meta(lead->r, conf_index, &after),
                     RAFT_COMPACTED);
    isolate(net, f, 0);
    tick_all(net, 5);
    assert_int_equal(node(net, f)->snap.index, 0);
    assert_int_equal(node(net, f)->applied_index, lead->applied_index);
    net_free(net);
}

/* A learner receives the log without voting; once promoted it counts
 * towards the quorum; a removed node no longer does. */
static void test_membership_learner_promote_remove(void **state)
{
    struct net *net = net_new(4, 3);
    raft_id l = elect(net);
    struct raft_conf_change cc = {RAFT_CONF_ADD_LEARNER, 4};
    struct raft_status s;
    (void)state;

    assert_int_equal(raft_propose_conf_change(node(net, l)->r, &cc, NULL),
                     RAFT_OK);
    deliver_all(net);
    tick_all(net, 3);
    propose(net, l, "for-4");
    tick_all(net, 3);
    assert_int_equal(node(net, 4)->n_applied, 1);
    raft_status(node(net, l)->r, &s);
    assert_int_equal(s.conf.n_learners, 1);

    cc = (struct raft_conf_change){RAFT_CONF_PROMOTE, 4};
    assert_int_equal(raft_propose_conf_change(node(net, l)->r, &cc, NULL),
                     RAFT_OK);
    /* One change at a time. */
    assert_int_equal(raft_propose_conf_change(node(net, l)->r, &cc, NULL),
                     RAFT_BUSY);
    tick_all(net, 3);
    raft_status(node(net, l)->r, &s);
    assert_int_equal(s.conf.n_voters, 4);

    cc = (struct raft_conf_change){RAFT_CONF_REMOVE, l % 4 + 1};
    assert_int_equal(raft_propose_conf_change(node(net, l)->r, &cc, NULL),
                     RAFT_OK);
    tick_all(net, 3);
    raft_status(node(net, l)->r, &s);
    assert_int_equal(s.conf.n_voters, 3);
    net_free(net);
}

/* Leadership transfer hands over to an up-to-date voter. */
static void test_transfer_leadership(void **state)
{
    struct net *net = net_new(3, 3);
    raft_id l = elect(net), to = l % 3 + 1;
    (void)state;

    propose(net, l, "before");
    assert_int_equal(raft_transfer_leader(node(net, l)->r, to), RAFT_OK);
    tick_all(net, 3);
    assert_int_equal(raft_role(node(net, to)->r), RAFT_LEADER);
    assert_int_not_equal(raft_role(node(net, l)->r), RAFT_LEADER);
    net_free(net);
}

/* ReadIndex: the leader answers a read with its commit index only after a
 * quorum confirmed it still leads; a follower gets the index from the
 * leader; a leader cut off from the others never answers. */
static void test_read_index(void **state)
{
    struct net *net = net_new(3, 3);
    raft_id l = elect(net), f = l % 3 + 1;
    raft_index committed;
    (void)state;

    propose(net, l, "w");
    committed = node(net, l)->applied_index;
    assert_int_equal(raft_read_index(node(net, l)->r, 77), RAFT_OK);
    deliver_all(net);
    assert_int_equal(node(net, l)->n_reads, 1);
    assert_int_equal(node(net, l)->reads[0].context, 77);
    assert_true(node(net, l)->reads[0].index >= committed);

    assert_int_equal(raft_read_index(node(net, f)->r, 88), RAFT_OK);
    deliver_all(net);
    assert_int_equal(node(net, f)->n_reads, 1);
    assert_int_equal(node(net, f)->reads[0].context, 88);

    isolate(net, l, 1);
    assert_int_equal(raft_read_index(node(net, l)->r, 99), RAFT_OK);
    deliver_all(net);
    assert_int_equal(node(net, l)->n_reads, 1);
    net_free(net);
}

/* Reads started in one turn share one heartbeat round: the leader's two
 * and a follower's, which all arrive before the leader's ready, go out as
 * one heartbeat to each follower, and the answers release all three. */
static void test_reads_of_one_turn_share_a_heartbeat_round(void **state)
{
    struct net *net = net_new(3, 3);
    raft_id l = elect(net), f = l % 3 + 1;
    size_t heartbeats = 0;
    (void)state;

    propose(net, l, "w");
    assert_int_equal(raft_read_index(node(net, f)->r, 3), RAFT_OK);
    handle_ready(net, node(net, f)); /* its READ_INDEX, queued */
    assert_int_equal(net->nq, 1);
    assert_int_equal(net->q[0].m.type, RAFT_MSG_READ_INDEX);
    assert_int_equal(raft_step(node(net, l)->r, &net->q[0].m), RAFT_OK);
    drop_queue(net);
    assert_int_equal(raft_read_index(node(net, l)->r, 1), RAFT_OK);
    assert_int_equal(raft_read_index(node(net, l)->r, 2), RAFT_OK);
    handle_ready(net, node(net, l));
    for (size_t i = 0; i < net->nq; i++)
        heartbeats += net->q[i].m.type == RAFT_MSG_HEARTBEAT;
    assert_int_equal(heartbeats, 2);
    deliver_all(net);
    assert_int_equal(node(net, l)->n_reads, 2);
    assert_int_equal(node(net, l)->reads[0].context, 1);
    assert_int_equal(node(net, l)->reads[1].context, 2);
    assert_int_equal(node(net, f)->n_reads, 1);
    assert_int_equal(node(net, f)->reads[0].context, 3);
    net_free(net);
}

/* A leader may send a ready's appends before it persists the entries
 * (send_first); a follower answers only after persisting, and a candidate
 * asks for votes only once its term and vote are durable. */
static void test_only_a_leader_sends_before_persisting(void **state)
{
    struct net *net = net_new(3, 3);
    raft_id l = elect(net), f = l % 3 + 1, other = f % 3 + 1;
    struct raft_ready rd;
    struct raft_status s;
    raft_index last;
    (void)state;

    if (other == l)
        other = other % 3 + 1;
    assert_int_equal(raft_propose(node(net, l)->r, (const uint8_t *)"x", 1,
                                  NULL, NULL),
                     RAFT_OK);
    raft_ready(node(net, l)->r, &rd);
    assert_true(rd.n_entries > 0);
    assert_true(rd.n_msgs > 0);
    assert_true(rd.send_first);
    last = rd.entries[rd.n_entries - 1].index;
    raft_advance(node(net, l)->r, &rd);
    /* Its own copy alone commits nothing. */
    raft_status(node(net, l)->r, &s);
    assert_true(s.hs.commit < last);
    tick_all(net, 2); /* those appends were dropped: sent again */

    /* A follower's answer to an append waits for its own write. */
    assert_int_equal(raft_propose(node(net, l)->r, (const uint8_t *)"y", 1,
                                  NULL, NULL),
                     RAFT_OK);
    handle_ready(net, node(net, l));
    for (size_t i = 0; i < net->nq; i++)
        if (net->q[i].m.to == f)
            raft_step(node(net, f)->r, &net->q[i].m);
    drop_queue(net);
    raft_ready(node(net, f)->r, &rd);
    assert_true(rd.n_entries > 0);
    assert_false(rd.send_first);
    raft_advance(node(net, f)->r, &rd);

    /* A candidate's vote requests wait for its term and vote. */
    isolate(net, other, 1);
    for (int t = 0; t < 100 && raft_role(node(net, other)->r) == RAFT_FOLLOWER;
         t++)
        raft_tick(node(net, other)->r);
    assert_int_not_equal(raft_role(node(net, other)->r), RAFT_FOLLOWER);
    raft_ready(node(net, other)->r, &rd);
    assert_false(rd.send_first);
    raft_advance(node(net, other)->r, &rd);
    net_free(net);
}

/* A crash before the ready's entries were persisted loses them, and the
 * restarted node rebuilds from what it persisted. */
static void test_restart_from_persisted_state(void **state)
{
    struct net *net = net_new(3, 3);
    raft_id l = elect(net);
    raft_term term = raft_term_now(node(net, l)->r);
    (void)state;

    propose(net, l, "durable");
    tick_all(net, 2);
    for (size_t i = 0; i < 3; i++)
        crash(&net->nodes[i]);
    for (size_t i = 0; i < 3; i++) {
        restart(&net->nodes[i]);
        assert_true(raft_term_now(net->nodes[i].r) >= term);
    }
    l = elect(net);
    propose(net, l, "again");
    tick_all(net, 3);
    for (size_t i = 0; i < 3; i++) {
        /* Applied before the crash, kept by the state machine: the restart
         * applies only what follows. */
        assert_string_equal(net->nodes[i].applied[net->nodes[i].n_applied - 1],
                            "again");
    }
    net_free(net);
}

/* Malformed messages are refused. */
static void test_malformed_messages_are_refused(void **state)
{
    struct net *net = net_new(3, 3);
    struct raft_msg m = {0};
    struct raft_entry e = {5, 9, RAFT_ENTRY_NORMAL, (uint8_t *)"q", 1};
    (void)state;

    m.type = RAFT_MSG_APPEND;
    m.from = 2;
    m.to = 3; /* not us */
    m.term = 5;
    assert_int_equal(raft_step(node(net, 1)->r, &m), RAFT_INVALID);
    m.to = 1;
    m.from = 0;
    assert_int_equal(raft_step(node(net, 1)->r, &m), RAFT_INVALID);
    m.from = 2;
    m.index = 3;
    m.entries = &e; /* index 9 does not follow 3 */
    m.n_entries = 1;
    assert_int_equal(raft_step(node(net, 1)->r, &m), RAFT_INVALID);
    m.type = 99;
    m.n_entries = 0;
    assert_int_equal(raft_step(node(net, 1)->r, &m), RAFT_INVALID);
    net_free(net);
}

/* Membership change entries encode as documented. */
static void test_conf_change_encoding(void **state)
{
    struct raft_conf_change cc = {RAFT_CONF_PROMOTE, 0x0102030405060708ULL},
                            back;
    uint8_t buf[RAFT_CONF_CHANGE_BYTES];
    const uint8_t want[] = {2, 1, 2, 3, 4, 5, 6, 7, 8};
    (void)state;
    raft_conf_change_encode(&cc, buf);
    assert_memory_equal(buf, want, sizeof(want));
    assert_int_equal(raft_conf_change_decode(buf, sizeof(buf), &back),
                     RAFT_OK);
    assert_int_equal(back.op, cc.op);
    assert_true(back.node == cc.node);
    buf[0] = 9;
    assert_int_equal(raft_conf_change_decode(buf, sizeof(buf), &back),
                     RAFT_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_node_elects_itself_and_commits),
        cmocka_unit_test(test_commit_only_ready_needs_no_sync),
        cmocka_unit_test(test_three_nodes_replicate_in_order),
        cmocka_unit_test(test_followers_refuse_proposals),
        cmocka_unit_test(test_prevote_keeps_term_of_isolated_node),
        cmocka_unit_test(test_leader_without_quorum_steps_down),
        cmocka_unit_test(test_committed_entry_survives_leader_crash),
        cmocka_unit_test(test_old_term_entry_not_committed_by_counting),
        cmocka_unit_test(test_lagging_follower_gets_snapshot),
        cmocka_unit_test(test_compaction_tail_spares_a_lagging_follower),
        cmocka_unit_test(test_membership_learner_promote_remove),
        cmocka_unit_test(test_transfer_leadership),
        cmocka_unit_test(test_read_index),
        cmocka_unit_test(test_reads_of_one_turn_share_a_heartbeat_round),
        cmocka_unit_test(test_only_a_leader_sends_before_persisting),
        cmocka_unit_test(test_restart_from_persisted_state),
        cmocka_unit_test(test_malformed_messages_are_refused),
        cmocka_unit_test(test_conf_change_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
