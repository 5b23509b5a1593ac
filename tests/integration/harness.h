/* Integration test harness: starts real dossierd processes on loopback
 * ports with their own temporary data directory and key file, waits until
 * they serve, and stops every process it started, by PID, when a test ends
 * or the test program exits. */
#ifndef DOSSIER_TESTS_HARNESS_H
#define DOSSIER_TESTS_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#include <dossier/dossier.h>

struct node_proc {
    pid_t pid;          /* 0 when not running */
    char listen[64];    /* --listen; "" for 127.0.0.1:0 */
    const char *args[24]; /* arguments given at every start, NULL-ended */
    char addr[64];      /* 127.0.0.1:PORT once serving */
    char dir[256];      /* the test's temporary directory */
    char data[320];     /* dir/data: the data directory */
    char key[320];      /* dir/master.key */
    char log[320];      /* dir/node.log: stderr of the node */
    char ready[320];    /* dir/ready */
};

/* Makes a temporary directory and a master key for @n, without starting
 * anything. Aborts the test program on failure. */
void node_init(struct node_proc *n);

/* Starts dossierd for @n with its data directory and key, plus the extra
 * arguments @extra (NULL-terminated, may be NULL), on a free loopback port,
 * and waits until it serves. Returns 0, or -1 when the process exited or
 * did not get ready within 20 s (its log is printed). */
int node_start(struct node_proc *n, const char *const *extra);

/* Runs dossierd for @n with exactly @args after the program name
 * (NULL-terminated) and waits for it to exit within 20 s; returns its exit
 * status (or -1) and puts what it wrote on stderr into @err (@cap bytes). */
int node_run_to_exit(struct node_proc *n, const char *const *args, char *err,
                     size_t cap);

/* SIGTERM, then waits for the exit; returns the exit status (or -1). */
int node_stop(struct node_proc *n);

/* SIGKILL and reaps the process. */
void node_kill9(struct node_proc *n);

/* Stops @n if running and removes its temporary directory. */
void node_destroy(struct node_proc *n);

/* A client for @n (aborts on failure); close with dossier_client_close. */
struct dossier_client *node_client(const struct node_proc *n);

/* A client for @targets ("host:port,..."), with @timeout_ms per call. */
struct dossier_client *harness_client(const char *targets, int64_t timeout_ms);

/* The bearer token node_client, harness_client and the cluster helpers
 * present (NULL: none); for nodes started with --auth-file. */
extern const char *harness_token;
/* The purpose clients of node_client() and harness_client() name. */
extern const char *harness_purpose;

/* A fresh random bearer token: 64 hex digits and a NUL. */
void harness_new_token(char out[65]);

/* One line of an auth file: its token is hashed into the file. */
struct harness_principal {
    const char *name, *role, *token;
    const char *purposes; /* the optional fourth column, NULL: none */
};

/* Writes an auth file at @path for the @n principals @p. Aborts the test
 * when it cannot. */
void harness_write_auth_file(const char *path,
                             const struct harness_principal *p, size_t n);

/* A client of @target calling with @token and @purpose (either may be
 * NULL), 15 s per call. Aborts the test when it cannot open one. */
struct dossier_client *harness_client_as(const char *target,
                                         const char *token,
                                         const char *purpose);

/* A loopback port nothing listens on right now. */
int harness_free_port(void);

/* A cluster of up to 5 nodes on fixed loopback ports, sharing a key. */
#define CLUSTER_MAX 5
struct cluster_proc {
    int n;
    struct node_proc nodes[CLUSTER_MAX];
    char ids[CLUSTER_MAX][12];
    char peers[512];   /* --peers of the initial members */
    char targets[512]; /* every node, for a failover client */
};

/* Prepares @n nodes (1..n are the initial voters) with @extra arguments
 * for every node (NULL-ended, may be NULL; borrowed, kept). Starts none. */
void cluster_init(struct cluster_proc *c, int n, const char *const *extra);

/* Starts every node and waits until each serves. Returns 0 or -1. */
int cluster_start_all(struct cluster_proc *c);

/* Node @i (0-based) as the cluster sees it; aborts when it cannot ask. */
void cluster_node_status(struct cluster_proc *c, int i,
                         struct dossier_cluster_status *out);

/* Index of the node every live node agrees leads, waiting up to 20 s;
 * -1 when none. */
int cluster_leader(struct cluster_proc *c);

/* Waits until every running node applied as much as the leader committed
 * (up to 30 s). Returns 0 or -1. */
int cluster_wait_converged(struct cluster_proc *c);

/* Cuts node @i off from the nodes in @others (bitmask of indexes), on both
 * sides, through the test-only fault switch; 0 heals node @i. */
void cluster_isolate(struct cluster_proc *c, int i, unsigned others);

void cluster_destroy(struct cluster_proc *c);

/* Number of processes the harness started and has not reaped. */
int harness_running(void);

/* Runs a command line through /bin/sh, capturing stdout into @out (@cap
 * bytes, NUL-terminated; may be NULL); returns the exit status. */
int harness_sh(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Recursively removes @path. */
void harness_rmtree(const char *path);

/* The whole file at @path, NUL-terminated (free it); NULL if unreadable. */
char *harness_read_file(const char *path);

/* How many times @what occurs in @n's log. */
int harness_log_count(const struct node_proc *n, const char *what);

/* The metrics port @n logged last ("metrics on http://127.0.0.1:PORT/"; the
 * log is appended to at each start), or -1. */
int harness_metrics_port(const struct node_proc *n);

/* GET /metrics from 127.0.0.1:@port: the body (free it), or NULL with the
 * reason in @err when the answer is not 200 with Prometheus' text format
 * (Content-Type text/plain; version=0.0.4). */
char *harness_scrape(int port, char *err, size_t cap);

/* The value of @series (name and labels exactly as exposed, e.g.
 * dossier_raft_role{role="leader"}) in the scrape @text into *@out: 0, -1
 * when absent, -2 when a sample line of @text is malformed. */
int harness_metric(const char *text, const char *series, double *out);

/* What the health service of @target says of @service ("" : the node);
 * *@code gets the call's outcome (0 or a DOSSIER_* code). */
enum dossier_health harness_health(const char *target, const char *service,
                                   int *code);

#endif
