/* Linearizability under faults: six clients read and write three keys of a
 * 3-node cluster while its leader is killed and restarted and nodes are
 * cut off and healed; each key's history, with real-time bounds, must be
 * linearizable as a register (linearizability.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <dossier/dossier.h>

#include "harness.h"
#include "linearizability.h"

#define CLIENTS 6
#define KEYS 3
#define RUN_SECONDS 11
#define MAX_OPS 4096

struct recorded {
    int key;
    struct lin_op op;
};

struct client {
    struct cluster_proc *c;
    int t;
    volatile int *stop;
    struct recorded ops[MAX_OPS];
    size_t n;
    unsigned seed;
    int unknown_writes;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *client_main(void *arg)
{
    struct client *cl = arg;
    struct dossier_client *dc = harness_client(cl->c->targets, 1500);
    uint64_t counter = 0;

    while (!*cl->stop && cl->n < MAX_OPS) {
        int key = (int)(rand_r(&cl->seed) % KEYS);
        int write = rand_r(&cl->seed) % 2;
        struct recorded *r = &cl->ops[cl->n];
        struct dossier_status st;
        char id[16];
        snprintf(id, sizeof(id), "lin-%d", key);
        r->key = key;
        if (write) {
            struct dossier_record *rec =
                dossier_record_new("contact", id, "lin-subject");
            char v[32];
            uint64_t value = (uint64_t)(cl->t + 1) * 1000000 + ++counter;
            snprintf(v, sizeof(v), "%" PRIu64, value);
            dossier_record_set_string(rec, "first_name", v);
            r->op.kind = LIN_WRITE;
            r->op.value = value;
            r->op.call_us = now_us();
            if (dossier_put(dc, NULL, rec, DOSSIER_ANY_VERSION, NULL, &st) ==
                0) {
                r->op.return_us = now_us();
            } else {
                /* It may still have been applied, now or later. */
                r->op.return_us = INT64_MAX;
                cl->unknown_writes++;
            }
            dossier_record_free(rec);
            cl->n++;
        } else {
            struct dossier_record *got = NULL;
            int rc;
            r->op.kind = LIN_READ;
            r->op.call_us = now_us();
            rc = dossier_get(dc, NULL, "contact", id, &got, &st);
            r->op.return_us = now_us();
            if (rc == 0) {
                r->op.value = strtoull(
                    dossier_record_field(got, "first_name")->u.s, NULL, 10);
                cl->n++;
            } else if (rc == DOSSIER_NOT_FOUND) {
                r->op.value = LIN_NONE;
                cl->n++;
            } /* a failed read observed nothing: leave it out */
            dossier_record_free(got);
        }
        usleep(5000 + rand_r(&cl->seed) % 20000);
    }
    dossier_client_close(dc);
    return NULL;
}

static void sleep_until(int64_t start, double seconds)
{
    int64_t at = start + (int64_t)(seconds * 1e6);
    while (now_us() < at)
        usleep(10000);
}

/* The history of every key is linearizable across leader crashes and
 * partitions. */
static void test_history_is_linearizable_under_faults(void **state)
{
    static struct client clients[CLIENTS];
    struct cluster_proc c;
    pthread_t th[CLIENTS];
    volatile int stop = 0;
    int64_t start;
    int leader, isolated;
    size_t total = 0;
    int unknown = 0;
    (void)state;

    cluster_init(&c, 3, NULL);
    assert_int_equal(cluster_start_all(&c), 0);
    for (int t = 0; t < CLIENTS; t++) {
        memset(&clients[t], 0, sizeof(clients[t]));
        clients[t] = (struct client){.c = &c, .t = t, .stop = &stop,
                                     .seed = (unsigned)(t * 7919 + 1)};
        pthread_create(&th[t], NULL, client_main, &clients[t]);
    }
    start = now_us();
    sleep_until(start, 1.5);
    leader = cluster_leader(&c);
    assert_true(leader >= 0);
    node_kill9(&c.nodes[leader]);
    sleep_until(start, 3.5);
    assert_int_equal(node_start(&c.nodes[leader], NULL), 0);
    sleep_until(start, 5);
    isolated = cluster_leader(&c);
    assert_true(isolated >= 0);
    cluster_isolate(&c, isolated, 0x7u & ~(1u << isolated));
    sleep_until(start, 7.5);
    cluster_isolate(&c, isolated, 0);
    sleep_until(start, 8.5);
    isolated = (isolated + 1) % 3;
    cluster_isolate(&c, isolated, 0x7u & ~(1u << isolated));
    sleep_until(start, 10);
    cluster_isolate(&c, isolated, 0);
    sleep_until(start, RUN_SECONDS);
    stop = 1;
    for (int t = 0; t < CLIENTS; t++) {
        pthread_join(th[t], NULL);
        total += clients[t].n;
        unknown += clients[t].unknown_writes;
    }
    fprintf(stderr, "history: %zu operations, %d writes of unknown outcome\n",
            total, unknown);
    assert_true(total > 200);

    for (int k = 0; k < KEYS; k++) {
        struct lin_op *ops = calloc(total, sizeof(*ops));
        size_t n = 0, culprit = 0;
        enum lin_result res;
        for (int t = 0; t < CLIENTS; t++)
            for (size_t i = 0; i < clients[t].n; i++)
                if (clients[t].ops[i].key == k)
                    ops[n++] = clients[t].ops[i].op;
        res = lin_check(ops, n, 200000000ULL, &culprit);
        fprintf(stderr, "key %d: %zu operations: %s\n", k, n,
                res == LIN_OK          ? "linearizable"
                : res == LIN_VIOLATION ? "NOT linearizable"
                                       : "undecided");
        if (res == LIN_VIOLATION)
            fprintf(stderr, "  stuck at a %s of %" PRIu64 " in [%" PRId64
                    ", %" PRId64 "] us\n",
                    ops[culprit].kind == LIN_READ ? "read" : "write",
                    ops[culprit].value, ops[culprit].call_us - start,
                    ops[culprit].return_us == INT64_MAX
                        ? -1
                        : ops[culprit].return_us - start);
        free(ops);
        assert_int_equal(res, LIN_OK);
    }
    cluster_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_history_is_linearizable_under_faults),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (harness_running() != 0) {
        fprintf(stderr, "a test left a process running\n");
        return 1;
    }
    return rc;
}
