/* A cluster of real dossierd processes on loopback: replication, failover,
 * catching up, partitions and membership, through libdossier. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include <dossier/dossier.h>

#include "harness.h"

static struct dossier_call_options serializable = {
    .consistency = DOSSIER_SERIALIZABLE};

static int put_name(struct dossier_client *c, const char *id, const char *name,
                    struct dossier_status *st)
{
    struct dossier_record *r = dossier_record_new("contact", id, "subj-cluster");
    int rc;
    dossier_record_set_string(r, "first_name", name);
    rc = dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, st);
    dossier_record_free(r);
    return rc;
}

static int cmp_lines(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every record of kind contact on node @i, read from its own state, as a
 * hash of the sorted "id=version=first_name" lines; *@n gets the count. */
static void node_state(struct cluster_proc *c, int i, unsigned char hash[32],
                       size_t *n)
{
    struct dossier_client *cl = harness_client(c->nodes[i].listen, 10000);
    struct dossier_page_request pr = {1000, NULL};
    char **lines = NULL;
    char *token = NULL;
    crypto_generichash_state h;

    *n = 0;
    for (;;) {
        struct dossier_page page;
        struct dossier_status st;
        assert_int_equal(dossier_scan(cl, &serializable, "contact", &pr, &page,
                                      &st),
                         0);
        for (size_t k = 0; k < page.n_records; k++) {
            const struct dossier_value *v =
                dossier_record_field(page.records[k], "first_name");
            char line[512];
            snprintf(line, sizeof(line), "%s=%" PRIu64 "=%s",
                     page.records[k]->id, page.records[k]->version,
                     v ? v->u.s : "");
            lines = realloc(lines, (*n + 1) * sizeof(*lines));
            lines[(*n)++] = strdup(line);
        }
        free(token);
        token = page.next_page_token;
        page.next_page_token = NULL;
        dossier_page_release(&page);
        if (!token)
            break;
        pr.page_token = token;
    }
    qsort(lines, *n, sizeof(*lines), cmp_lines);
    crypto_generichash_init(&h, NULL, 0, 32);
    for (size_t k = 0; k < *n; k++) {
        crypto_generichash_update(&h, (const uint8_t *)lines[k],
                                  strlen(lines[k]) + 1);
        free(lines[k]);
    }
    crypto_generichash_final(&h, hash, 32);
    free(lines);
    dossier_client_close(cl);
}

/* Every running node holds the same records, byte for byte; returns the
 * count. */
static size_t assert_nodes_agree(struct cluster_proc *c)
{
    unsigned char first[32], h[32];
    size_t n0 = 0, n;
    int have = 0;
    assert_int_equal(cluster_wait_converged(c), 0);
    for (int i = 0; i < c->n; i++) {
        if (!c->nodes[i].pid)
            continue;
        node_state(c, i, h, &n);
        if (!have) {
            memcpy(first, h, 32);
            n0 = n;
            have = 1;
        } else {
            if (n != n0 || memcmp(first, h, 32) != 0)
                fprintf(stderr, "node %d has %zu records, node 1st has %zu\n",
                        i + 1, n, n0);
            assert_int_equal(n, n0);
            assert_memory_equal(first, h, 32);
        }
    }
    return n0;
}

static int get_name(struct dossier_client *c,
                    const struct dossier_call_options *co, const char *id,
                    char *out, size_t cap)
{
    struct dossier_record *r;
    struct dossier_status st;
    int rc = dossier_get(c, co, "contact", id, &r, &st);
    if (rc == 0) {
        snprintf(out, cap, "%s", dossier_record_field(r, "first_name")->u.s);
        dossier_record_free(r);
    }
    return rc;
}

/* ------------------------------------------------------------------ */

/* A write acknowledged by the cluster, through any node, is on every node
 * after they all restart. */
static void test_writes_survive_full_restart(void **state)
{
    struct cluster_proc c;
    char name[64];
    (void)state;

    cluster_init(&c, 3, NULL);
    assert_int_equal(cluster_start_all(&c), 0);
    for (int i = 0; i < 3; i++) {
        struct dossier_client *cl = harness_client(c.nodes[i].listen, 10000);
        for (int k = 0; k < 20; k++) {
            char id[32];
            struct dossier_status st;
            snprintf(id, sizeof(id), "r-%d-%d", i, k);
            assert_int_equal(put_name(cl, id, id, &st), 0);
        }
        dossier_client_close(cl);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(node_stop(&c.nodes[i]), 0);
    assert_int_equal(cluster_start_all(&c), 0);
    assert_int_equal(assert_nodes_agree(&c), 60);
    for (int i = 0; i < 3; i++) {
        struct dossier_client *cl = harness_client(c.nodes[i].listen, 10000);
        assert_int_equal(get_name(cl, NULL, "r-2-19", name, sizeof(name)), 0);
        assert_string_equal(name, "r-2-19");
        dossier_client_close(cl);
    }
    cluster_destroy(&c);
}

/* kill -9 of the leader while 16 clients write: a new leader is elected,
 * the clients carry on, and every acknowledged write is on every node
 * exactly once, the old leader included once it is back. */
struct writer {
    struct cluster_proc *c;
    int t;
    volatile int *stop;
    int acked, failed;
    char (*ids)[24];
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct dossier_client *cl = harness_client(w->c->targets, 15000);
    for (int k = 0; !*w->stop && k < 100000; k++) {
        char id[24];
        struct dossier_status st;
        snprintf(id, sizeof(id), "w%d-%d", w->t, k);
        if (put_name(cl, id, id, &st) == 0) {
            w->ids = realloc(w->ids, (size_t)(w->acked + 1) * sizeof(*w->ids));
            memcpy(w->ids[w->acked++], id, sizeof(id));
        } else {
            if (w->failed++ < 2)
                fprintf(stderr, "writer %d: %s: %s\n", w->t,
                        dossier_code_name(st.code), st.message);
        }
    }
    dossier_client_close(cl);
    return NULL;
}

/* Every @step-th write each of the @n writers @w had acknowledged reads
 * back, with its value, from each node's own state; frees their ids. */
static void assert_writes_everywhere(struct cluster_proc *c, struct writer *w,
                                     int n, int step)
{
    for (int i = 0; i < c->n; i++) {
        struct dossier_client *cl = harness_client(c->nodes[i].listen, 10000);
        for (int t = 0; t < n; t++)
            for (int k = 0; k < w[t].acked; k += step) {
                char name[64];
                assert_int_equal(get_name(cl, &serializable, w[t].ids[k], name,
                                          sizeof(name)),
                                 0);
                assert_string_equal(name, w[t].ids[k]);
            }
        dossier_client_close(cl);
    }
    for (int t = 0; t < n; t++)
        free(w[t].ids);
}

static void test_leader_kill9_under_load(void **state)
{
    struct cluster_proc c;
    pthread_t th[16];
    struct writer w[16];
    volatile int stop = 0;
    int leader, total = 0, failed = 0, next;
    (void)state;

    cluster_init(&c, 3, NULL);
    assert_int_equal(cluster_start_all(&c), 0);
    for (int t = 0; t < 16; t++) {
        w[t] = (struct writer){&c, t, &stop, 0, 0, NULL};
        pthread_create(&th[t], NULL, writer_main, &w[t]);
    }
    sleep(2);
    leader = cluster_leader(&c);
    assert_true(leader >= 0);
    node_kill9(&c.nodes[leader]);
    sleep(4);
    stop = 1;
    for (int t = 0; t < 16; t++) {
        pthread_join(th[t], NULL);
        total += w[t].acked;
        failed += w[t].failed;
    }
    fprintf(stderr, "acknowledged %d writes, %d failed, across the kill\n",
            total, failed);
    next = cluster_leader(&c);
    assert_true(next >= 0);
    assert_int_not_equal(next, leader);
    /* Writes go on after the failover. */
    {
        struct dossier_client *cl = harness_client(c.targets, 10000);
        struct dossier_status st;
        assert_int_equal(put_name(cl, "after-failover", "x", &st), 0);
        dossier_client_close(cl);
    }
    assert_int_equal(node_start(&c.nodes[leader], NULL), 0);
    /* Every node holds every acknowledged write, once (scan keys are
     * unique, so equal counts and hashes mean equal sets). */
    assert_true(assert_nodes_agree(&c) >= (size_t)total + 1);
    assert_writes_everywhere(&c, w, 16, 7);
    cluster_destroy(&c);
}

/* A rolling restart (each node in turn: SIGTERM, start again, wait until
 * it has caught up) while 8 clients write through every node: no write
 * fails, a stopping leader hands leadership over first (its log says so),
 * and every acknowledged write is on every node. */
static void test_rolling_restart_under_load(void **state)
{
    struct cluster_proc c;
    pthread_t th[8];
    struct writer w[8];
    volatile int stop = 0;
    int total = 0, failed = 0, leader, handed_over = 0;
    (void)state;

    cluster_init(&c, 3, NULL);
    assert_int_equal(cluster_start_all(&c), 0);
    for (int t = 0; t < 8; t++) {
        w[t] = (struct writer){&c, t, &stop, 0, 0, NULL};
        pthread_create(&th[t], NULL, writer_main, &w[t]);
    }
    sleep(1);
    /* Followers first, the leader last, as an operator would. */
    leader = cluster_leader(&c);
    assert_true(leader >= 0);
    for (int k = 1; k <= 3; k++) {
        int i = (leader + k) % 3;
        int was_leader = i == leader;
        assert_int_equal(node_stop(&c.nodes[i]), 0);
        if (was_leader)
            handed_over = harness_log_count(&c.nodes[i], "leads now") > 0;
        assert_int_equal(node_start(&c.nodes[i], NULL), 0);
        assert_int_equal(cluster_wait_converged(&c), 0);
        sleep(1);
    }
    stop = 1;
    for (int t = 0; t < 8; t++) {
        pthread_join(th[t], NULL);
        total += w[t].acked;
        failed += w[t].failed;
    }
    fprintf(stderr, "rolling restart: %d writes acknowledged, %d failed\n",
            total, failed);
    assert_int_equal(failed, 0);
    assert_true(total > 0);
    assert_true(handed_over);
    assert_true(assert_nodes_agree(&c) >= (size_t)total);
    assert_writes_everywhere(&c, w, 8, 11);
    cluster_destroy(&c);
}

/* A follower stopped while thousands of writes happen, past a compaction
 * of the log, restarts and catches up through a streamed snapshot. */
static void test_follower_catches_up_through_snapshot(void **state)
{
    const char *extra[] = {"--snapshot-entries", "64", NULL};
    struct cluster_proc c;
    struct dossier_client *cl;
    int leader, f;
    (void)state;

    cluster_init(&c, 3, extra);
    assert_int_equal(cluster_start_all(&c), 0);
    leader = cluster_leader(&c);
    assert_true(leader >= 0);
    f = (leader + 1) % 3;
    assert_int_equal(node_stop(&c.nodes[f]), 0);
    cl = harness_client(c.nodes[leader].listen, 10000);
    for (int k = 0; k < 2000; k++) {
        char id[24];
        struct dossier_status st;
        snprintf(id, sizeof(id), "s-%d", k);
        assert_int_equal(put_name(cl, id, id, &st), 0);
    }
    dossier_client_close(cl);
    assert_int_equal(node_start(&c.nodes[f], NULL), 0);
    assert_int_equal(assert_nodes_agree(&c), 2000);
    assert_true(harness_log_count(&c.nodes[f], "installed a snapshot") >= 1);
    cluster_destroy(&c);
}

/* A follower stopped for a moment while the leader compacts its log
 * catches up from the log, not through a snapshot: the leader keeps the
 * newest half of --snapshot-entries behind its applied index. Before, it
 * compacted up to it, and under a sustained load a slower follower
 * installed one snapshot after another. */
static void test_follower_a_little_behind_catches_up_from_the_log(void **state)
{
    const char *extra[] = {"--snapshot-entries", "64", NULL};
    struct cluster_proc c;
    struct dossier_client *cl;
    struct dossier_cluster_status s;
    struct dossier_status st;
    uint64_t first;
    int leader, f, k, n = 0;
    char id[24];
    (void)state;

    cluster_init(&c, 3, extra);
    assert_int_equal(cluster_start_all(&c), 0);
    leader = cluster_leader(&c);
    assert_true(leader >= 0);
    f = (leader + 1) % 3;
    cl = harness_client(c.nodes[leader].listen, 10000);
    /* Past a first compaction. */
    for (; n < 100; n++) {
        snprintf(id, sizeof(id), "t-%d", n);
        assert_int_equal(put_name(cl, id, id, &st), 0);
    }
    assert_int_equal(cluster_wait_converged(&c), 0);
    assert_int_equal(node_stop(&c.nodes[f]), 0);
    usleep(1500000); /* the leader no longer counts it as answering */
    cluster_node_status(&c, leader, &s);
    first = s.first_index;
    assert_true(first > 1);
    /* Writes until the leader compacts again: at most 64 entries. */
    for (k = 0; k < 200 && s.first_index == first; k++, n++) {
        snprintf(id, sizeof(id), "t-%d", n);
        assert_int_equal(put_name(cl, id, id, &st), 0);
        cluster_node_status(&c, leader, &s);
    }
    assert_true(s.first_index > first);
    dossier_client_close(cl);
    assert_int_equal(node_start(&c.nodes[f], NULL), 0);
    assert_int_equal(assert_nodes_agree(&c), (size_t)n);
    assert_int_equal(harness_log_count(&c.nodes[f], "installed a snapshot"), 0);
    cluster_destroy(&c);
}

/* A partition: the leader cut off from the others cannot commit; the
 * majority elects a leader and commits; after healing every node agrees on
 * its records, without the writes the minority could not commit. */
static void test_partition_minority_cannot_commit(void **state)
{
    struct cluster_proc c;
    struct dossier_client *old, *maj;
    struct dossier_status st;
    int leader, other;
    char name[64];
    (void)state;

    cluster_init(&c, 3, NULL);
    assert_int_equal(cluster_start_all(&c), 0);
    leader = cluster_leader(&c);
    assert_true(leader >= 0);
    other = (leader + 1) % 3;
    cluster_isolate(&c, leader, 0x7u & ~(1u << leader));

    old = harness_client(c.nodes[leader].listen, 2500);
    assert_int_not_equal(put_name(old, "minority", "lost", &st), 0);
    dossier_client_close(old);

    maj = harness_client(c.nodes[other].listen, 15000);
    assert_int_equal(put_name(maj, "majority", "kept", &st), 0);
    dossier_client_close(maj);

    cluster_isolate(&c, leader, 0);
    assert_int_equal(assert_nodes_agree(&c), 1);
    maj = harness_client(c.targets, 10000);
    assert_int_equal(get_name(maj, NULL, "majority", name, sizeof(name)), 0);
    assert_int_equal(get_name(maj, NULL, "minority", name, sizeof(name)),
                     DOSSIER_NOT_FOUND);
    dossier_client_close(maj);
    cluster_destroy(&c);
}

/* A new node joins as a learner, catches up, is promoted; another node is
 * removed; the cluster keeps taking writes. */
static void test_membership_changes(void **state)
{
    struct cluster_proc c;
    struct node_proc *n4;
    struct dossier_client *cl;
    struct dossier_cluster_status s;
    struct dossier_status st;
    char addr4[64], id4[] = "4";
    int voters = 0, learners = 0;
    (void)state;

    cluster_init(&c, 3, NULL);
    assert_int_equal(cluster_start_all(&c), 0);
    cl = harness_client(c.targets, 15000);
    for (int k = 0; k < 50; k++) {
        char id[24];
        snprintf(id, sizeof(id), "m-%d", k);
        assert_int_equal(put_name(cl, id, id, &st), 0);
    }
    /* Node 4: started with --join, then added. */
    n4 = &c.nodes[3];
    node_init(n4);
    harness_sh(NULL, 0, "cp %s %s", c.nodes[0].key, n4->key);
    snprintf(addr4, sizeof(addr4), "127.0.0.1:%d", harness_free_port());
    snprintf(n4->listen, sizeof(n4->listen), "%s", addr4);
    {
        const char *args[] = {"--node-id", id4, "--join", "--tick-ms", "50",
                              "--enable-fault-injection", NULL};
        for (int a = 0; args[a]; a++)
            n4->args[a] = args[a];
    }
    c.n = 4;
    /* Added first: a joining node serves (and writes its ready file) only
     * once it has the cluster's keys, which come with the log. */
    /* A member's id cannot be added again (its address would change). */
    assert_int_not_equal(
        dossier_cluster_add_node(cl, NULL, 1, addr4, &s, &st), 0);
    assert_int_equal(st.code, DOSSIER_ALREADY_EXISTS);
    assert_int_equal(dossier_cluster_add_node(cl, NULL, 4, addr4, &s, &st), 0);
    /* A learner that has never answered is not promoted: as a voter that
     * cannot vote it would weaken the quorum. */
    assert_int_not_equal(
        dossier_cluster_promote_node(cl, NULL, 4, &s, &st), 0);
    assert_int_equal(st.code, DOSSIER_FAILED_PRECONDITION);
    assert_int_equal(node_start(n4, NULL), 0);
    /* Promote once it caught up (the call refuses while it lags). */
    for (int tries = 0; tries < 100; tries++) {
        if (dossier_cluster_promote_node(cl, NULL, 4, &s, &st) == 0)
            break;
        assert_int_equal(st.code, DOSSIER_FAILED_PRECONDITION);
        usleep(100000);
    }
    for (size_t i = 0; i < s.n_members; i++) {
        voters += s.members[i].voter;
        learners += !s.members[i].voter;
    }
    assert_int_equal(voters, 4);
    assert_int_equal(learners, 0);

    /* Remove a follower that is not node 4. */
    {
        int leader = cluster_leader(&c), gone = -1;
        for (int i = 0; i < 3; i++)
            if (i != leader)
                gone = i;
        assert_int_equal(dossier_cluster_remove_node(cl, NULL,
                                                     (uint64_t)gone + 1, &s,
                                                     &st),
                         0);
        assert_int_equal(s.n_members, 3);
        assert_int_equal(node_stop(&c.nodes[gone]), 0);
    }
    assert_int_equal(put_name(cl, "after-removal", "ok", &st), 0);
    dossier_client_close(cl);
    assert_int_equal(assert_nodes_agree(&c), 51);
    cluster_destroy(&c);
}

/* Leadership moves to the voter named. */
static void test_transfer_leadership(void **state)
{
    struct cluster_proc c;
    struct dossier_client *cl;
    struct dossier_cluster_status s;
    struct dossier_status st;
    int leader, to;
    (void)state;

    cluster_init(&c, 3, NULL);
    assert_int_equal(cluster_start_all(&c), 0);
    leader = cluster_leader(&c);
    assert_true(leader >= 0);
    to = (leader + 2) % 3;
    cl = harness_client(c.targets, 15000);
    assert_int_equal(dossier_cluster_transfer_leader(cl, NULL, (uint64_t)to + 1,
                                                     &s, &st),
                     0);
    assert_int_equal(cluster_leader(&c), to);
    assert_int_equal(put_name(cl, "after-transfer", "ok", &st), 0);
    dossier_client_close(cl);
    cluster_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writes_survive_full_restart),
        cmocka_unit_test(test_leader_kill9_under_load),
        cmocka_unit_test(test_rolling_restart_under_load),
        cmocka_unit_test(test_follower_catches_up_through_snapshot),
        cmocka_unit_test(test_follower_a_little_behind_catches_up_from_the_log),
        cmocka_unit_test(test_partition_minority_cannot_commit),
        cmocka_unit_test(test_membership_changes),
        cmocka_unit_test(test_transfer_leadership),
    };
    int rc;
    if (sodium_init() < 0)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (harness_running() != 0) {
        fprintf(stderr, "a test left a process running\n");
        return 1;
    }
    return rc;
}
