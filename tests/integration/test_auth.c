/* Authentication and roles against real nodes started with --auth-file:
 * calls without a token or with an unknown one get UNAUTHENTICATED, calls
 * outside the caller's role PERMISSION_DENIED, data calls without a purpose
 * INVALID_ARGUMENT; each refusal is logged without the token; a service
 * writes through a follower (the forwarded call keeps its principal). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include <cmocka.h>
#include <sodium.h>

#include "harness.h"

/* Tokens of one principal per role, made fresh by the test. */
static char tok_admin[65], tok_service[65], tok_compliance[65];

/* Writes an auth file at @path granting the three tokens. */
static void write_auth_file(const char *path)
{
    const struct harness_principal p[] = {
        {"ops", "admin", tok_admin, NULL},
        {"crm-sync", "service", tok_service, NULL},
        {"dpo", "compliance", tok_compliance, NULL}};
    harness_write_auth_file(path, p, 3);
}

#define client_as harness_client_as

/* Puts a contact; returns the status code. */
static int put_contact(struct dossier_client *c, const char *id)
{
    struct dossier_record *r = dossier_record_new("contact", id, "subject-1");
    struct dossier_status st;
    int rc;
    dossier_record_set_string(r, "first_name", "Ann");
    rc = dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, &st);
    dossier_record_free(r);
    return rc ? st.code : 0;
}

static int cluster_status_code(struct dossier_client *c)
{
    struct dossier_cluster_status s;
    struct dossier_status st;
    return dossier_cluster_status(c, NULL, &s, &st) ? st.code : 0;
}

static int define_kind_code(struct dossier_client *c)
{
    struct dossier_field_schema f = {"note", DOSSIER_FIELD_STRING,
                                     DOSSIER_CATEGORY_OPERATIONAL, 0, 0, 0,
                                     0, NULL, NULL};
    struct dossier_kind_schema k = {"auth_test_kind", 0, 0, 0, "a kind", 1,
                                    &f, 0, DOSSIER_RETENTION_SINCE_UPDATE};
    struct dossier_status st;
    return dossier_schema_define(c, NULL, &k, NULL, &st) ? st.code : 0;
}

static void test_roles_on_one_node(void **state)
{
    struct node_proc n;
    char auth[400], out[4096];
    const char *extra[] = {"--auth-file", auth, NULL};
    struct dossier_client *none, *bad, *svc, *svc_nopurpose, *dpo, *ops;
    struct dossier_record *got;
    struct dossier_status st;
    (void)state;

    node_init(&n);
    snprintf(auth, sizeof(auth), "%s/auth", n.dir);
    write_auth_file(auth);
    assert_int_equal(node_start(&n, extra), 0);

    none = client_as(n.addr, NULL, "operations");
    assert_int_equal(put_contact(none, "c-1"), DOSSIER_UNAUTHENTICATED);
    assert_int_equal(cluster_status_code(none), DOSSIER_UNAUTHENTICATED);
    bad = client_as(n.addr, "not-a-known-token", "operations");
    assert_int_equal(put_contact(bad, "c-1"), DOSSIER_UNAUTHENTICATED);

    svc = client_as(n.addr, tok_service, "operations");
    assert_int_equal(define_kind_code(svc), DOSSIER_PERMISSION_DENIED);
    assert_int_equal(cluster_status_code(svc), DOSSIER_PERMISSION_DENIED);
    svc_nopurpose = client_as(n.addr, tok_service, NULL);
    assert_int_equal(put_contact(svc_nopurpose, "c-1"),
                     DOSSIER_INVALID_ARGUMENT);
    assert_int_equal(put_contact(svc, "c-1"), 0);
    assert_int_equal(dossier_get(svc, NULL, "contact", "c-1", &got, &st), 0);
    assert_string_equal(dossier_record_field(got, "first_name")->u.s, "Ann");
    dossier_record_free(got);

    dpo = client_as(n.addr, tok_compliance, "operations");
    assert_int_equal(put_contact(dpo, "c-2"), DOSSIER_PERMISSION_DENIED);
    assert_int_equal(dossier_get(dpo, NULL, "contact", "c-1", &got, &st),
                     DOSSIER_PERMISSION_DENIED);

    ops = client_as(n.addr, tok_admin, "operations");
    assert_int_equal(cluster_status_code(ops), 0);
    assert_int_equal(define_kind_code(ops), 0);
    assert_int_equal(put_contact(ops, "c-3"), DOSSIER_PERMISSION_DENIED);

    /* The CLI: tokens from $DOSSIER_TOKEN and --token-file, for every
     * command (cluster status opens a client per node). */
    assert_int_equal(harness_sh(NULL, 0,
                                "DOSSIER_TOKEN=%s %s --target %s cluster "
                                "status >/dev/null",
                                tok_admin, DOSSIER_CLI_PATH, n.addr),
                     0);
    assert_int_equal(harness_sh(NULL, 0,
                                "DOSSIER_TOKEN=%s %s --target %s cluster "
                                "status >/dev/null 2>&1",
                                tok_service, DOSSIER_CLI_PATH, n.addr),
                     7);
    harness_sh(NULL, 0, "echo %s >%s/admin.tok", tok_admin, n.dir);
    assert_int_equal(harness_sh(NULL, 0,
                                "%s --token-file %s/admin.tok --target %s "
                                "cluster status >/dev/null",
                                DOSSIER_CLI_PATH, n.dir, n.addr),
                     0);
    /* `dossier token new` prints a token and the line granting its hash. */
    harness_sh(out, sizeof(out),
               "%s token new probe service | /usr/bin/python3 -c 'import "
               "json, sys, hashlib; d = json.load(sys.stdin); print("
               "d[\"auth_line\"] == \"probe service \" + "
               "hashlib.sha256(d[\"token\"].encode()).hexdigest())'",
               DOSSIER_CLI_PATH);
    assert_string_equal(out, "True\n");

    dossier_client_close(none);
    dossier_client_close(bad);
    dossier_client_close(svc);
    dossier_client_close(svc_nopurpose);
    dossier_client_close(dpo);
    dossier_client_close(ops);
    assert_int_equal(node_stop(&n), 0);

    /* Refusals are logged, naming the principal but never a token. */
    harness_sh(out, sizeof(out), "grep -c 'refused' %s", n.log);
    assert_true(atoi(out) >= 7);
    harness_sh(out, sizeof(out), "grep -c 'crm-sync' %s", n.log);
    assert_true(atoi(out) >= 1);
    assert_int_equal(harness_sh(NULL, 0, "grep -q -e %s -e %s -e %s %s",
                                tok_service, tok_admin, tok_compliance,
                                n.log),
                     1); /* 1: no match (2 would be an error) */
    node_destroy(&n);
}

static void test_bad_auth_file_refused_at_start(void **state)
{
    struct node_proc n;
    char auth[400], err[2048];
    const char *args[16];
    FILE *f;
    (void)state;

    node_init(&n);
    snprintf(auth, sizeof(auth), "%s/auth", n.dir);
    f = fopen(auth, "w");
    assert_non_null(f);
    fprintf(f, "# comment\nops superuser 00\n");
    fclose(f);
    args[0] = "--data-dir";
    args[1] = n.data;
    args[2] = "--key-file";
    args[3] = n.key;
    args[4] = "--listen";
    args[5] = "127.0.0.1:0";
    args[6] = "--auth-file";
    args[7] = auth;
    args[8] = NULL;
    assert_int_equal(node_run_to_exit(&n, args, err, sizeof(err)), 1);
    assert_non_null(strstr(err, "line 2"));
    node_destroy(&n);
}

/* A service writes through a follower: the leader applies it with the
 * caller's principal; a compliance principal is refused the same way. */
static void test_forwarded_calls_keep_their_principal(void **state)
{
    struct cluster_proc c;
    char auth[400];
    const char *extra[] = {"--auth-file", auth, NULL};
    struct dossier_client *svc, *dpo, *all;
    struct dossier_record *got;
    struct dossier_status st;
    int leader, f;
    (void)state;

    harness_token = tok_admin; /* the harness watches the cluster as admin */
    cluster_init(&c, 3, extra);
    snprintf(auth, sizeof(auth), "%s/auth", c.nodes[0].dir);
    write_auth_file(auth);
    assert_int_equal(cluster_start_all(&c), 0);
    leader = cluster_leader(&c);
    assert_true(leader >= 0);
    f = (leader + 1) % 3;

    svc = client_as(c.nodes[f].addr, tok_service, "operations");
    assert_int_equal(put_contact(svc, "via-follower"), 0);
    dpo = client_as(c.nodes[f].addr, tok_compliance, "operations");
    assert_int_equal(put_contact(dpo, "refused"), DOSSIER_PERMISSION_DENIED);
    all = client_as(c.targets, tok_service, "operations");
    assert_int_equal(
        dossier_get(all, NULL, "contact", "via-follower", &got, &st), 0);
    dossier_record_free(got);
    assert_int_equal(dossier_get(all, NULL, "contact", "refused", &got, &st),
                     DOSSIER_NOT_FOUND);
    dossier_client_close(svc);
    dossier_client_close(dpo);
    dossier_client_close(all);
    cluster_destroy(&c);
    harness_token = NULL;
}

/* A flood of unknown tokens against one node, from several threads. */
#define FLOOD_THREADS 8
#define FLOOD_CALLS 25
struct flood {
    const char *target;
    int refused; /* calls answered UNAUTHENTICATED */
};

static void *flood_main(void *arg)
{
    struct flood *fl = arg;
    char tok[65];
    for (int i = 0; i < FLOOD_CALLS; i++) {
        struct dossier_client *c;
        harness_new_token(tok); /* a new unknown token every call */
        c = harness_client_as(fl->target, tok, "operations");
        fl->refused += put_contact(c, "flood") == DOSSIER_UNAUTHENTICATED;
        dossier_client_close(c);
    }
    return NULL;
}

/* The node's dossier_auth_catchups_total. */
static double catchups_of(const struct node_proc *n)
{
    char err[200];
    char *text = harness_scrape(harness_metrics_port(n), err, sizeof(err));
    double v = -1;
    if (!text)
        fail_msg("metrics: %s", err);
    assert_int_equal(harness_metric(text, "dossier_auth_catchups_total", &v),
                     0);
    free(text);
    return v;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Principals kept by the cluster: on a 3-node cluster without an auth
 * file, the first admin is added without credentials and authentication
 * is then on everywhere; a service principal is limited to its purposes
 * on every node (a follower forwards its writes); removing it revokes its
 * token at once; it all survives a restart of every node. */
static void test_principals_in_the_replicated_state(void **state)
{
    struct cluster_proc c;
    struct dossier_client *anon, *ops, *svc, *svc_mkt, *follower, *lagging;
    struct dossier_principal p, *list;
    struct dossier_status st;
    const char *metrics[] = {"--metrics-listen", "127.0.0.1:0", NULL};
    char tok_ops[65], tok_svc[65], scratch[65];
    struct flood fl[FLOOD_THREADS];
    pthread_t th[FLOOD_THREADS];
    double before, after;
    int64_t t0, elapsed;
    size_t n;
    int leader, f, lag_code, refused = 0;
    (void)state;

    harness_token = NULL;
    cluster_init(&c, 3, metrics);
    assert_int_equal(cluster_start_all(&c), 0);
    leader = cluster_leader(&c);
    assert_true(leader >= 0);
    f = (leader + 1) % 3;
    anon = harness_client_as(c.targets, NULL, "operations");
    assert_int_equal(put_contact(anon, "pr-0"), 0); /* auth is off */
    assert_int_equal(dossier_principal_add(anon, NULL, "ops", "admin", NULL,
                                           tok_ops, &p, &st),
                     0);
    assert_string_equal(p.role, "admin");
    assert_string_equal(p.purposes, "*");
    /* From now on every node wants credentials, once it has applied the
     * principal (a follower behind forwards writes, which the leader then
     * refuses without one). */
    harness_token = tok_ops;
    assert_int_equal(cluster_wait_converged(&c), 0);
    ops = harness_client_as(c.targets, tok_ops, "operations");
    for (int i = 0; i < 3; i++) {
        struct dossier_client *one = harness_client_as(c.nodes[i].addr, NULL,
                                                       "operations");
        int code = 0;
        for (int t = 0; t < 50; t++) { /* until the node applied the add */
            code = put_contact(one, "pr-anon");
            if (code == DOSSIER_UNAUTHENTICATED)
                break;
            usleep(100000);
        }
        assert_int_equal(code, DOSSIER_UNAUTHENTICATED);
        dossier_client_close(one);
    }
    assert_int_equal(dossier_principal_add(anon, NULL, "x", "admin", NULL,
                                           scratch, NULL, &st),
                     DOSSIER_UNAUTHENTICATED);
    /* The follower is cut off while the service principal is added, so
     * it cannot have applied it when its token first arrives. */
    cluster_isolate(&c, f, 0x7u & ~(1u << f));
    assert_int_equal(dossier_principal_add(ops, NULL, "svc", "service",
                                           "operations", tok_svc, &p, &st),
                     0);
    /* While cut off it cannot catch up: the token is not refused as
     * unknown, the call fails as the node being unavailable (so a client
     * with several targets tries another). */
    harness_token = tok_svc;
    lagging = harness_client(c.nodes[f].addr, 3000);
    harness_token = tok_ops;
    lag_code = put_contact(lagging, "pr-lag");
    assert_true(lag_code == DOSSIER_UNAVAILABLE ||
                lag_code == DOSSIER_DEADLINE_EXCEEDED);
    dossier_client_close(lagging);
    cluster_isolate(&c, f, 0);
    assert_int_equal(dossier_principal_add(ops, NULL, "svc", "service", NULL,
                                           scratch, NULL, &st),
                     DOSSIER_ALREADY_EXISTS);
    assert_int_equal(dossier_principal_add(ops, NULL, "Bad Name", "service",
                                           NULL, scratch, NULL, &st),
                     DOSSIER_INVALID_ARGUMENT);

    /* The service principal, through that follower at once: a token it
     * does not know makes it catch up with the leader before it decides,
     * so a principal works everywhere as soon as its addition returned.
     * Its purpose only, and no admin calls. */
    follower = harness_client_as(c.nodes[f].addr, tok_svc, "operations");
    assert_int_equal(put_contact(follower, "pr-1"), 0);
    svc_mkt = harness_client_as(c.nodes[f].addr, tok_svc, "marketing");
    assert_int_equal(put_contact(svc_mkt, "pr-2"), DOSSIER_PERMISSION_DENIED);
    assert_int_equal(cluster_status_code(follower), DOSSIER_PERMISSION_DENIED);
    assert_int_equal(dossier_principal_list(ops, NULL, &list, &n, &st), 0);
    assert_int_equal(n, 2);
    free(list);

    /* A flood of unknown tokens at that follower: every call refused as
     * unknown, while the catch-ups with the leader they cause are
     * rationed to one round per raft tick (--tick-ms 50 here), shared by
     * every call waiting. The bound follows from the rationing whatever
     * the machine's speed: a slower run has more ticks, not more rounds
     * per tick (ticks in the window, plus the window's two ends, plus one
     * to spare). Unrationed, each call made its own round: 200 here, where
     * a run on this machine counted 26 in 1.2 s. */
    before = catchups_of(&c.nodes[f]);
    t0 = mono_ms();
    for (int i = 0; i < FLOOD_THREADS; i++) {
        fl[i] = (struct flood){c.nodes[f].addr, 0};
        assert_int_equal(pthread_create(&th[i], NULL, flood_main, &fl[i]), 0);
    }
    for (int i = 0; i < FLOOD_THREADS; i++) {
        pthread_join(th[i], NULL);
        refused += fl[i].refused;
    }
    elapsed = mono_ms() - t0;
    after = catchups_of(&c.nodes[f]);
    assert_int_equal(refused, FLOOD_THREADS * FLOOD_CALLS);
    assert_true(after - before >= 1);
    assert_true(after - before <= (double)(elapsed / 50 + 3));
    /* The new principal's token still works there at once. */
    assert_int_equal(put_contact(follower, "pr-1b"), 0);

    /* All nodes restart: the principals are state, not configuration. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(node_stop(&c.nodes[i]), 0);
    assert_int_equal(cluster_start_all(&c), 0);
    assert_true(cluster_leader(&c) >= 0);
    svc = harness_client_as(c.targets, tok_svc, "operations");
    assert_int_equal(put_contact(svc, "pr-3"), 0);
    assert_int_equal(put_contact(anon, "pr-4"), DOSSIER_UNAUTHENTICATED);

    /* Removed: its token stops working. */
    assert_int_equal(dossier_principal_remove(ops, NULL, "svc", &st), 0);
    assert_int_equal(cluster_wait_converged(&c), 0);
    assert_int_equal(put_contact(svc, "pr-5"), DOSSIER_UNAUTHENTICATED);
    assert_int_equal(dossier_principal_remove(ops, NULL, "svc", &st),
                     DOSSIER_NOT_FOUND);

    dossier_client_close(anon);
    dossier_client_close(ops);
    dossier_client_close(svc);
    dossier_client_close(svc_mkt);
    dossier_client_close(follower);
    cluster_destroy(&c);
    harness_token = NULL;
}

/* Counts audit entries of @action with outcome @outcome, read by @c. */
static int audit_count(struct dossier_client *c, const char *action,
                       int outcome, const char *principal)
{
    struct dossier_audit_entry *e;
    struct dossier_status st;
    size_t n;
    int count = 0;
    assert_int_equal(dossier_audit_read(c, NULL, 1, 10000, &e, &n, &st), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i].action, action) == 0 && e[i].outcome == outcome &&
            (!principal || strcmp(e[i].principal, principal) == 0))
            count++;
    free(e);
    return count;
}

/* --require-auth: a new node without an auth file and without a single
 * principal refuses every call that has no credentials (UNAUTHENTICATED,
 * and audited); the bootstrap token adds the first admin and nothing
 * else, once; afterwards only principals' tokens work, also after a
 * restart. */
static void test_require_auth_with_bootstrap_token(void **state)
{
    struct node_proc n;
    char boot_file[400], boot[80], tok_ops[65], tok_dpo[65], tok_svc[65];
    char scratch[65];
    const char *extra[] = {"--require-auth", "--bootstrap-token-file",
                           boot_file, NULL};
    struct dossier_client *anon, *bt, *ops, *dpo, *svc;
    struct dossier_principal p;
    struct dossier_status st;
    FILE *f;
    (void)state;

    node_init(&n);
    snprintf(boot_file, sizeof(boot_file), "%s/bootstrap.token", n.dir);
    /* The CLI makes the token file, private. */
    assert_int_equal(harness_sh(NULL, 0, "%s token bootstrap %s 2>/dev/null",
                                DOSSIER_CLI_PATH, boot_file),
                     0);
    assert_int_equal(harness_sh(NULL, 0, "test $(stat -c %%a %s) = 600",
                                boot_file),
                     0);
    assert_int_equal(harness_sh(NULL, 0, "%s token bootstrap %s 2>/dev/null",
                                DOSSIER_CLI_PATH, boot_file),
                     4); /* never overwritten */
    f = fopen(boot_file, "r");
    assert_non_null(f);
    assert_non_null(fgets(boot, sizeof(boot), f));
    fclose(f);
    boot[strcspn(boot, "\n")] = '\0';
    assert_int_equal(strlen(boot), 64);
    assert_int_equal(node_start(&n, extra), 0);

    /* From the first moment: nothing without credentials. */
    anon = client_as(n.addr, NULL, "operations");
    assert_int_equal(put_contact(anon, "ra-1"), DOSSIER_UNAUTHENTICATED);
    assert_int_equal(cluster_status_code(anon), DOSSIER_UNAUTHENTICATED);
    assert_int_equal(dossier_principal_add(anon, NULL, "ops", "admin", NULL,
                                           scratch, NULL, &st),
                     DOSSIER_UNAUTHENTICATED);
    /* The bootstrap token: no data, no other role, only the first admin. */
    bt = client_as(n.addr, boot, "operations");
    assert_int_equal(put_contact(bt, "ra-2"), DOSSIER_PERMISSION_DENIED);
    assert_int_equal(cluster_status_code(bt), DOSSIER_PERMISSION_DENIED);
    assert_int_equal(dossier_principal_add(bt, NULL, "svc", "service", NULL,
                                           scratch, NULL, &st),
                     DOSSIER_PERMISSION_DENIED);
    assert_int_equal(dossier_principal_add(bt, NULL, "ops", "admin", NULL,
                                           tok_ops, &p, &st),
                     0);
    assert_string_equal(p.created_by, "(bootstrap)");
    /* Spent: the cluster has a principal now. */
    assert_int_equal(dossier_principal_add(bt, NULL, "ops2", "admin", NULL,
                                           scratch, NULL, &st),
                     DOSSIER_UNAUTHENTICATED);
    assert_non_null(strstr(st.message, "bootstrap"));

    ops = client_as(n.addr, tok_ops, "operations");
    assert_int_equal(cluster_status_code(ops), 0);
    assert_int_equal(dossier_principal_add(ops, NULL, "dpo", "compliance",
                                           NULL, tok_dpo, NULL, &st),
                     0);
    assert_int_equal(dossier_principal_add(ops, NULL, "svc", "service",
                                           "operations", tok_svc, NULL, &st),
                     0);
    svc = client_as(n.addr, tok_svc, "operations");
    assert_int_equal(put_contact(svc, "ra-3"), 0);

    /* Every refusal is in the audit log: the anonymous put, and the
     * bootstrap token's put; the first admin was added by "(bootstrap)". */
    dpo = client_as(n.addr, tok_dpo, NULL);
    usleep(600000); /* refusals are appended every audit window */
    assert_true(audit_count(dpo, "records.put", DOSSIER_UNAUTHENTICATED, "") >=
                1);
    assert_true(audit_count(dpo, "records.put", DOSSIER_PERMISSION_DENIED,
                            "(bootstrap)") >= 1);
    assert_int_equal(audit_count(dpo, "principals.add", 0, "(bootstrap)"), 1);
    assert_int_equal(audit_count(dpo, "records.put", 0, "svc"), 1);

    /* A restart changes nothing: still no anonymous call, and the
     * bootstrap token stays spent. */
    dossier_client_close(anon);
    dossier_client_close(bt);
    dossier_client_close(ops);
    dossier_client_close(dpo);
    dossier_client_close(svc);
    assert_int_equal(node_stop(&n), 0);
    assert_int_equal(node_start(&n, extra), 0);
    anon = client_as(n.addr, NULL, "operations");
    bt = client_as(n.addr, boot, "operations");
    svc = client_as(n.addr, tok_svc, "operations");
    assert_int_equal(put_contact(anon, "ra-4"), DOSSIER_UNAUTHENTICATED);
    assert_int_equal(dossier_principal_add(bt, NULL, "ops3", "admin", NULL,
                                           scratch, NULL, &st),
                     DOSSIER_UNAUTHENTICATED);
    assert_int_equal(put_contact(svc, "ra-5"), 0);
    dossier_client_close(anon);
    dossier_client_close(bt);
    dossier_client_close(svc);
    assert_int_equal(node_stop(&n), 0);
    /* The token never reaches the log. */
    assert_int_equal(harness_sh(NULL, 0, "grep -q -e %s %s", boot, n.log), 1);
    node_destroy(&n);
}

/* Reads the one-line token file @path into @out (@cap bytes). */
static void read_token_file(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(out, (int)cap, f));
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
}

/* The bootstrap token is spent for good: once the cluster had a principal
 * it never works again, also after that principal removed itself (which
 * a node under --require-auth refuses while it is the last admin: nobody
 * could add principals afterwards); its file, deleted, stops nothing from
 * starting; a node with an auth file never takes it, and there the auth
 * file's admins are the way in, so the last stored admin may go. */
static void test_bootstrap_token_spent_for_good(void **state)
{
    struct node_proc n, m;
    char boot_file[400], boot[80], auth[400], tok_ops[65], scratch[65];
    const char *strict[] = {"--require-auth", "--bootstrap-token-file",
                            boot_file, NULL};
    const char *with_file[] = {"--require-auth", "--bootstrap-token-file",
                               boot_file, "--auth-file", auth, NULL};
    struct dossier_client *bt, *ops, *root;
    struct dossier_status st;
    (void)state;

    node_init(&n);
    snprintf(boot_file, sizeof(boot_file), "%s/bootstrap.token", n.dir);
    assert_int_equal(harness_sh(NULL, 0, "%s token bootstrap %s 2>/dev/null",
                                DOSSIER_CLI_PATH, boot_file),
                     0);
    read_token_file(boot_file, boot, sizeof(boot));
    assert_int_equal(node_start(&n, strict), 0);
    bt = client_as(n.addr, boot, "operations");
    assert_int_equal(dossier_principal_add(bt, NULL, "ops", "admin", NULL,
                                           tok_ops, NULL, &st),
                     0);
    ops = client_as(n.addr, tok_ops, "operations");
    /* Under --require-auth the last admin stays. */
    assert_int_equal(dossier_principal_remove(ops, NULL, "ops", &st),
                     DOSSIER_FAILED_PRECONDITION);
    assert_non_null(strstr(st.message, "last admin"));
    dossier_client_close(ops);
    dossier_client_close(bt);
    assert_int_equal(node_stop(&n), 0);

    /* Without --require-auth it may remove itself: no principal is left. */
    assert_int_equal(node_start(&n, NULL), 0);
    ops = client_as(n.addr, tok_ops, "operations");
    assert_int_equal(dossier_principal_remove(ops, NULL, "ops", &st), 0);
    dossier_client_close(ops);
    assert_int_equal(node_stop(&n), 0);

    /* Back under --require-auth with the token: it stays spent. */
    assert_int_equal(node_start(&n, strict), 0);
    bt = client_as(n.addr, boot, "operations");
    assert_int_equal(dossier_principal_add(bt, NULL, "mallory", "admin", NULL,
                                           scratch, NULL, &st),
                     DOSSIER_UNAUTHENTICATED);
    assert_non_null(strstr(st.message, "bootstrap"));
    dossier_client_close(bt);
    /* The CLI, as an operator would try it. */
    assert_int_equal(harness_sh(NULL, 0,
                                "DOSSIER_TOKEN=$(cat %s) %s --target %s "
                                "principal add mallory admin >/dev/null "
                                "2>&1",
                                boot_file, DOSSIER_CLI_PATH, n.addr),
                     7);
    assert_int_equal(node_stop(&n), 0);
    /* The spent token's file deleted, as the docs say: the node restarts
     * with the same settings, without a token, and says so once. */
    assert_int_equal(unlink(boot_file), 0);
    assert_int_equal(node_start(&n, strict), 0);
    assert_int_equal(harness_log_count(&n, "is gone: no bootstrap token"), 1);
    bt = client_as(n.addr, boot, "operations");
    assert_int_equal(dossier_principal_add(bt, NULL, "mallory", "admin", NULL,
                                           scratch, NULL, &st),
                     DOSSIER_UNAUTHENTICATED);
    dossier_client_close(bt);
    assert_int_equal(node_stop(&n), 0);

    /* An auth file naming an admin: the token is refused from the start,
     * on a cluster that never had a principal. */
    node_init(&m);
    snprintf(auth, sizeof(auth), "%s/auth", m.dir);
    write_auth_file(auth);
    snprintf(boot_file, sizeof(boot_file), "%s/bootstrap.token", m.dir);
    assert_int_equal(harness_sh(NULL, 0, "%s token bootstrap %s 2>/dev/null",
                                DOSSIER_CLI_PATH, boot_file),
                     0);
    read_token_file(boot_file, boot, sizeof(boot));
    assert_int_equal(node_start(&m, with_file), 0);
    bt = client_as(m.addr, boot, "operations");
    assert_int_equal(dossier_principal_add(bt, NULL, "mallory", "admin", NULL,
                                           scratch, NULL, &st),
                     DOSSIER_UNAUTHENTICATED);
    assert_non_null(strstr(st.message, "auth file"));
    /* The file's admin adds a stored admin, who may remove itself: the
     * file's admins remain. */
    root = client_as(m.addr, tok_admin, "operations");
    assert_int_equal(dossier_principal_add(root, NULL, "ops-stored", "admin",
                                           NULL, tok_ops, NULL, &st),
                     0);
    ops = client_as(m.addr, tok_ops, "operations");
    assert_int_equal(dossier_principal_remove(ops, NULL, "ops-stored", &st),
                     0);
    dossier_client_close(ops);
    dossier_client_close(root);
    dossier_client_close(bt);
    assert_int_equal(harness_log_count(&m, boot), 0);
    node_destroy(&m);
    node_destroy(&n);
}

/* The settings that make security mandatory refuse to start a node that
 * would not have it, and say why: --require-tls without a certificate, a
 * bootstrap token without --require-auth, a bootstrap token file others
 * can read. */
static void test_mandatory_settings_refused_at_start(void **state)
{
    struct node_proc n;
    char err[2048], boot_file[400];
    const char *args[16];
    int k = 0;
    (void)state;

    node_init(&n);
    args[k++] = "--data-dir";
    args[k++] = n.data;
    args[k++] = "--key-file";
    args[k++] = n.key;
    args[k++] = "--listen";
    args[k++] = "127.0.0.1:0";
    args[k++] = "--require-tls";
    args[k] = NULL;
    assert_int_equal(node_run_to_exit(&n, args, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "--require-tls"));
    assert_non_null(strstr(err, "--tls-cert"));

    snprintf(boot_file, sizeof(boot_file), "%s/boot.token", n.dir);
    assert_int_equal(harness_sh(NULL, 0, "%s token bootstrap %s 2>/dev/null",
                                DOSSIER_CLI_PATH, boot_file),
                     0);
    args[k - 1] = "--bootstrap-token-file";
    args[k++] = boot_file;
    args[k] = NULL;
    assert_int_equal(node_run_to_exit(&n, args, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "--require-auth"));

    args[k++] = "--require-auth";
    args[k] = NULL;
    harness_sh(NULL, 0, "chmod 0644 %s", boot_file);
    assert_int_equal(node_run_to_exit(&n, args, err, sizeof(err)), 1);
    assert_non_null(strstr(err, "bootstrap token file"));
    node_destroy(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roles_on_one_node),
        cmocka_unit_test(test_bad_auth_file_refused_at_start),
        cmocka_unit_test(test_forwarded_calls_keep_their_principal),
        cmocka_unit_test(test_principals_in_the_replicated_state),
        cmocka_unit_test(test_require_auth_with_bootstrap_token),
        cmocka_unit_test(test_bootstrap_token_spent_for_good),
        cmocka_unit_test(test_mandatory_settings_refused_at_start),
    };
    int rc;
    if (sodium_init() < 0)
        return 1;
    harness_new_token(tok_admin);
    harness_new_token(tok_service);
    harness_new_token(tok_compliance);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (harness_running() != 0) {
        fprintf(stderr, "a test left a process running\n");
        return 1;
    }
    return rc;
}
