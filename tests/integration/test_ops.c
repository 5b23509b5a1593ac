/* Observability against real nodes: Prometheus metrics scraped over HTTP
 * and parsed, and the gRPC health service through libdossier, as a
 * platform team's monitoring and a load balancer's probes would use them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <dossier/dossier.h>

#include "harness.h"

/* A scrape of @port (the test fails unless it is a 200 in Prometheus'
 * text format); free it. */
static char *scrape(int port)
{
    char err[256];
    char *text = harness_scrape(port, err, sizeof(err));
    if (!text)
        fail_msg("scrape of port %d: %s", port, err);
    return text;
}

/* The value of @series in @text; the test fails when it is absent or when
 * a sample line of the scrape is malformed. */
static double metric(const char *text, const char *series)
{
    double v = 0;
    int rc = harness_metric(text, series, &v);
    if (rc == -2)
        fail_msg("a sample line is not \"name{labels} value\"");
    if (rc)
        fail_msg("no series %s in the scrape", series);
    return v;
}

static int has_series(const char *text, const char *series)
{
    double v;
    return harness_metric(text, series, &v) == 0;
}

static void put_contact(struct dossier_client *c, const char *id)
{
    struct dossier_record *r = dossier_record_new("contact", id, "subj-ops");
    struct dossier_status st;
    dossier_record_set_string(r, "first_name", "Ops");
    assert_int_equal(dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st),
                     0);
    dossier_record_free(r);
}

/* A 3-node cluster: every node exposes its role, term and indexes; the
 * leader counts the calls it answered per method and status, with their
 * latency, and each follower's lag; losing quorum turns health and the
 * metric to NOT_SERVING. */
static void test_metrics_and_health_in_a_cluster(void **state)
{
    const char *extra[] = {"--metrics-listen", "127.0.0.1:0", NULL};
    struct cluster_proc c;
    struct dossier_client *cl;
    struct dossier_record *r = NULL;
    struct dossier_status st;
    char series[256], *text;
    int leader, leaders = 0, code, ports[3];
    double term = -1;
    (void)state;

    cluster_init(&c, 3, extra);
    assert_int_equal(cluster_start_all(&c), 0);
    leader = cluster_leader(&c);
    assert_true(leader >= 0);
    for (int i = 0; i < 3; i++) {
        ports[i] = harness_metrics_port(&c.nodes[i]);
        assert_true(ports[i] > 0);
        assert_int_equal(harness_health(c.nodes[i].addr, "", &code),
                         DOSSIER_HEALTH_SERVING);
        assert_int_equal(code, 0);
        assert_int_equal(harness_health(c.nodes[i].addr, "dossier.v1.Records",
                                   &code),
                         DOSSIER_HEALTH_SERVING);
        harness_health(c.nodes[i].addr, "no.such.Service", &code);
        assert_int_equal(code, DOSSIER_NOT_FOUND);

        text = scrape(ports[i]);
        leaders += metric(text, "dossier_raft_role{role=\"leader\"}") == 1;
        assert_true(metric(text, "dossier_health_serving") == 1);
        assert_true(metric(text, "dossier_keys_ready") == 1);
        if (term < 0)
            term = metric(text, "dossier_raft_term");
        else
            assert_true(metric(text, "dossier_raft_term") == term);
        free(text);
    }
    assert_int_equal(leaders, 1);

    /* 40 writes and one read of a missing record, on the leader. */
    cl = harness_client(c.nodes[leader].addr, 10000);
    for (int i = 0; i < 40; i++) {
        char id[32];
        snprintf(id, sizeof(id), "ops-%d", i);
        put_contact(cl, id);
    }
    assert_int_equal(dossier_get(cl, NULL, "contact", "ops-none", &r, &st),
                     DOSSIER_NOT_FOUND);
    dossier_client_close(cl);
    assert_int_equal(cluster_wait_converged(&c), 0);

    /* The failed Get's audit entry is committed up to one audit window
     * (200 ms) later, and a scrape between its commit and its apply sees
     * them differ: the leader must show them equal again soon, not at
     * once (seen on a busy machine). */
    text = scrape(ports[leader]);
    for (int k = 0; k < 200 && metric(text, "dossier_raft_applied_index") !=
                                   metric(text, "dossier_raft_commit_index");
         k++) {
        free(text);
        usleep(50000);
        text = scrape(ports[leader]);
    }
    assert_true(metric(text, "dossier_grpc_calls_total{method=\"/dossier.v1."
                             "Records/Put\",code=\"OK\"}") == 40);
    assert_true(metric(text, "dossier_grpc_call_seconds_count{method=\"/"
                             "dossier.v1.Records/Put\",code=\"OK\"}") == 40);
    assert_true(metric(text, "dossier_grpc_call_seconds_bucket{method=\"/"
                             "dossier.v1.Records/Put\",code=\"OK\",le=\"+Inf\"}") ==
                40);
    assert_true(metric(text, "dossier_grpc_call_seconds_sum{method=\"/"
                             "dossier.v1.Records/Put\",code=\"OK\"}") > 0);
    assert_true(metric(text, "dossier_grpc_calls_total{method=\"/dossier.v1."
                             "Records/Get\",code=\"NOT_FOUND\"}") == 1);
    assert_true(metric(text, "dossier_raft_commit_index") >= 40);
    assert_true(metric(text, "dossier_raft_applied_index") ==
                metric(text, "dossier_raft_commit_index"));
    assert_true(metric(text, "dossier_raft_commands_applied_total") >= 40);
    assert_true(metric(text, "dossier_audit_entries") >= 40);
    assert_true(metric(text, "dossier_gdpr_requests_overdue") == 0);
    for (int i = 0; i < 3; i++) {
        if (i == leader)
            continue;
        snprintf(series, sizeof(series),
                 "dossier_raft_follower_lag_entries{peer=\"%s\"}", c.ids[i]);
        assert_true(has_series(text, series));
        assert_true(metric(text, series) >= 0);
    }
    free(text);

    /* A tracked request received 40 days ago is past its deadline. */
    {
        struct dossier_client *c2 = harness_client(c.nodes[leader].addr,
                                                   10000);
        int64_t now = (int64_t)time(NULL) * 1000;
        assert_int_equal(dossier_request_file(c2, NULL, "export", "subj-ops",
                                              NULL, now - 40LL * 86400000,
                                              NULL, &st),
                         0);
        assert_int_equal(dossier_request_file(c2, NULL, "erasure", "subj-ops",
                                              NULL, 0, NULL, &st),
                         0);
        dossier_client_close(c2);
        text = scrape(ports[leader]);
        assert_true(metric(text, "dossier_gdpr_requests_overdue") == 1);
        assert_true(metric(text, "dossier_gdpr_requests{state=\"open\"}") ==
                    2);
        free(text);
    }

        /* Quorum lost: the survivor (a follower) knows no leader any more. */
    {
        int survivor = (leader + 1) % 3, other = (leader + 2) % 3;
        enum dossier_health h = DOSSIER_HEALTH_SERVING;
        assert_int_equal(node_stop(&c.nodes[leader]), 0);
        assert_int_equal(node_stop(&c.nodes[other]), 0);
        for (int t = 0; t < 150 && h == DOSSIER_HEALTH_SERVING; t++) {
            h = harness_health(c.nodes[survivor].addr, "", &code);
            assert_int_equal(code, 0);
            if (h == DOSSIER_HEALTH_SERVING)
                usleep(100000);
        }
        assert_int_equal(h, DOSSIER_HEALTH_NOT_SERVING);
        text = scrape(ports[survivor]);
        assert_true(metric(text, "dossier_health_serving") == 0);
        assert_true(metric(text, "dossier_raft_role{role=\"leader\"}") == 0);
        free(text);
    }
    cluster_destroy(&c);
}

/* With authentication on, probes still work without credentials, and
 * nothing else does. */
static void test_health_needs_no_credentials(void **state)
{
    struct harness_principal p[] = {{"svc", "service", NULL, NULL}};
    char token[65], auth[400];
    struct node_proc n;
    struct dossier_client *c;
    struct dossier_record *r = NULL;
    struct dossier_status st;
    enum dossier_health h;
    (void)state;

    node_init(&n);
    harness_new_token(token);
    p[0].token = token;
    snprintf(auth, sizeof(auth), "%s/auth", n.dir);
    harness_write_auth_file(auth, p, 1);
    {
        const char *extra[] = {"--auth-file", auth, NULL};
        assert_int_equal(node_start(&n, extra), 0);
    }
    c = harness_client_as(n.addr, NULL, "operations");
    assert_int_equal(dossier_health_check(c, NULL, "", &h, &st), 0);
    assert_int_equal(h, DOSSIER_HEALTH_SERVING);
    assert_int_equal(dossier_get(c, NULL, "contact", "x", &r, &st),
                     DOSSIER_UNAUTHENTICATED);
    dossier_client_close(c);
    node_destroy(&n);
}

/* Sends SIGHUP and waits until the log shows @what once more. */
static void sighup(struct node_proc *n, const char *what)
{
    int before = harness_log_count(n, what);
    assert_int_equal(kill(n->pid, SIGHUP), 0);
    for (int t = 0; t < 200 && harness_log_count(n, what) == before; t++)
        usleep(50000);
    assert_int_equal(harness_log_count(n, what), before + 1);
}

static int get_code(const char *target, const char *token,
                    const char *purpose)
{
    struct dossier_client *c = harness_client_as(target, token, purpose);
    struct dossier_record *r = NULL;
    struct dossier_status st;
    int rc = dossier_get(c, NULL, "contact", "hup-1", &r, &st);
    if (rc == 0)
        dossier_record_free(r);
    dossier_client_close(c);
    return rc;
}

/* SIGHUP reloads the auth file: a new principal may call at once, a
 * narrowed grant applies at once, and a broken file changes nothing. */
static void test_sighup_reloads_principals(void **state)
{
    char ta[65], tb[65], auth[400];
    struct harness_principal one[] = {{"svc-a", "service", ta, NULL}};
    struct harness_principal two[] = {{"svc-a", "service", ta, "marketing"},
                                      {"svc-b", "service", tb, NULL}};
    struct node_proc n;
    struct dossier_client *c;
    FILE *f;
    (void)state;

    node_init(&n);
    harness_new_token(ta);
    harness_new_token(tb);
    snprintf(auth, sizeof(auth), "%s/auth", n.dir);
    harness_write_auth_file(auth, one, 1);
    {
        const char *extra[] = {"--auth-file", auth, NULL};
        assert_int_equal(node_start(&n, extra), 0);
    }
    c = harness_client_as(n.addr, ta, "operations");
    put_contact(c, "hup-1");
    dossier_client_close(c);
    assert_int_equal(get_code(n.addr, tb, "operations"),
                     DOSSIER_UNAUTHENTICATED);

    harness_write_auth_file(auth, two, 2);
    sighup(&n, "SIGHUP: 2 principals may call");
    assert_int_equal(get_code(n.addr, tb, "operations"), 0);
    assert_int_equal(get_code(n.addr, ta, "operations"),
                     DOSSIER_PERMISSION_DENIED);

    f = fopen(auth, "w");
    assert_non_null(f);
    fputs("svc-b nonsense-role 1234\n", f);
    fclose(f);
    sighup(&n, "principals not reloaded");
    assert_int_equal(get_code(n.addr, tb, "operations"), 0);
    assert_int_equal(node_stop(&n), 0);
    node_destroy(&n);
}

/* A bad or taken metrics address stops the start with a clear message. */
static void test_metrics_address_errors(void **state)
{
    struct node_proc n, holder;
    char err[4096], addr[64], port[16];
    (void)state;

    node_init(&n);
    {
        const char *args[] = {"--data-dir", n.data, "--key-file", n.key,
                              "--listen", "127.0.0.1:0", "--metrics-listen",
                              "nowhere", NULL};
        assert_int_equal(node_run_to_exit(&n, args, err, sizeof(err)), 1);
        assert_non_null(strstr(err, "--metrics-listen"));
        assert_non_null(strstr(err, "nowhere"));
    }
    /* A port another node's exporter holds. */
    node_init(&holder);
    snprintf(port, sizeof(port), "%d", harness_free_port());
    snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
    {
        const char *extra[] = {"--metrics-listen", addr, NULL};
        assert_int_equal(node_start(&holder, extra), 0);
    }
    {
        const char *args[] = {"--data-dir", n.data, "--key-file", n.key,
                              "--listen", "127.0.0.1:0", "--metrics-listen",
                              addr, NULL};
        assert_int_equal(node_run_to_exit(&n, args, err, sizeof(err)), 1);
        assert_non_null(strstr(err, port));
    }
    node_destroy(&holder);
    node_destroy(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_and_health_in_a_cluster),
        cmocka_unit_test(test_health_needs_no_credentials),
        cmocka_unit_test(test_metrics_address_errors),
        cmocka_unit_test(test_sighup_reloads_principals),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    return rc || harness_running() != 0;
}
