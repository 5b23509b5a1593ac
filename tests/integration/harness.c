/* Integration test harness: real dossierd processes, stopped by PID. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#ifndef DOSSIERD_PATH
#error "DOSSIERD_PATH must name the dossierd binary"
#endif
#ifndef DOSSIER_CLI_PATH
#error "DOSSIER_CLI_PATH must name the dossier binary"
#endif

#define MAX_PROCS 64

static pid_t started[MAX_PROCS];
static int cleanup_registered;

static void fatal(const char *what)
{
    fprintf(stderr, "harness: %s: %s\n", what, strerror(errno));
    abort();
}

/* Kills whatever is still running when the test program exits, so that no
 * process outlives its test even when an assertion fails half-way. */
/* DOSSIER_TEST_FILTER=<pattern> runs only the tests whose names match it
 * (cmocka's * and ? wildcards), in any integration test binary. */
__attribute__((constructor)) static void select_tests(void)
{
    const char *f = getenv("DOSSIER_TEST_FILTER");
    if (f && f[0])
        cmocka_set_test_filter(f);
}

static void kill_all(void)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (started[i] > 0) {
            kill(started[i], SIGKILL);
            waitpid(started[i], NULL, 0);
            started[i] = 0;
        }
}

static void on_fatal_signal(int sig)
{
    kill_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void track(pid_t pid)
{
    if (!cleanup_registered) {
        atexit(kill_all);
        signal(SIGABRT, on_fatal_signal);
        signal(SIGSEGV, on_fatal_signal);
        signal(SIGTERM, on_fatal_signal);
        signal(SIGINT, on_fatal_signal);
        cleanup_registered = 1;
    }
    for (int i = 0; i < MAX_PROCS; i++)
        if (started[i] == 0) {
            started[i] = pid;
            return;
        }
    fprintf(stderr, "harness: too many processes\n");
    abort();
}

static void untrack(pid_t pid)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (started[i] == pid)
            started[i] = 0;
}

int harness_running(void)
{
    int n = 0;
    for (int i = 0; i < MAX_PROCS; i++)
        n += started[i] > 0;
    return n;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void harness_rmtree(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int harness_sh(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    FILE *p;
    size_t n = 0;
    int status;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    fflush(NULL);
    p = popen(cmd, "r");
    if (!p)
        fatal("popen");
    if (out && cap) {
        size_t got;
        while (n + 1 < cap && (got = fread(out + n, 1, cap - 1 - n, p)) > 0)
            n += got;
        out[n] = '\0';
    }
    {
        char sink[4096];
        while (fread(sink, 1, sizeof(sink), p) > 0)
            ;
    }
    status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void node_init(struct node_proc *n)
{
    memset(n, 0, sizeof(*n));
    snprintf(n->dir, sizeof(n->dir), "/tmp/dossier-test-XXXXXX");
    if (!mkdtemp(n->dir))
        fatal("mkdtemp");
    snprintf(n->data, sizeof(n->data), "%s/data", n->dir);
    snprintf(n->key, sizeof(n->key), "%s/master.key", n->dir);
    snprintf(n->log, sizeof(n->log), "%s/node.log", n->dir);
    snprintf(n->ready, sizeof(n->ready), "%s/ready", n->dir);
    if (harness_sh(NULL, 0, "%s keygen %s 2>/dev/null", DOSSIER_CLI_PATH,
                   n->key) != 0) {
        fprintf(stderr, "harness: dossier keygen failed\n");
        abort();
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* fork+exec dossierd with @argv, stderr to @log (appended). */
static pid_t spawn(const char *const *argv, const char *log)
{
    pid_t pid = fork();
    if (pid < 0)
        fatal("fork");
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
            close(fd);
        }
        execv(DOSSIERD_PATH, (char *const *)argv);
        _exit(127);
    }
    track(pid);
    return pid;
}

static void print_log(const char *log)
{
    char buf[8192];
    int fd = open(log, O_RDONLY);
    ssize_t got;
    if (fd < 0)
        return;
    fprintf(stderr, "---- %s ----\n", log);
    while ((got = read(fd, buf, sizeof(buf))) > 0)
        fwrite(buf, 1, (size_t)got, stderr);
    close(fd);
    fprintf(stderr, "----\n");
}

int node_start(struct node_proc *n, const char *const *extra)
{
    const char *argv[64];
    int a = 0, status;
    double deadline = now_s() + 20;

    unlink(n->ready);
    argv[a++] = "dossierd";
    argv[a++] = "--data-dir";
    argv[a++] = n->data;
    argv[a++] = "--key-file";
    argv[a++] = n->key;
    argv[a++] = "--listen";
    argv[a++] = n->listen[0] ? n->listen : "127.0.0.1:0";
    argv[a++] = "--ready-file";
    argv[a++] = n->ready;
    for (int i = 0; n->args[i] && a < 40; i++)
        argv[a++] = n->args[i];
    for (int i = 0; extra && extra[i] && a < 62; i++)
        argv[a++] = extra[i];
    argv[a] = NULL;
    n->pid = spawn(argv, n->log);
    deadline = now_s() + 40;
    while (now_s() < deadline) {
        FILE *f = fopen(n->ready, "r");
        if (f) {
            int ok = fscanf(f, "%63s", n->addr) == 1;
            fclose(f);
            if (ok)
                return 0;
        }
        if (waitpid(n->pid, &status, WNOHANG) == n->pid) {
            untrack(n->pid);
            n->pid = 0;
            fprintf(stderr, "harness: dossierd exited while starting\n");
            print_log(n->log);
            return -1;
        }
        usleep(20000);
    }
    fprintf(stderr, "harness: dossierd not ready after 40 s\n");
    print_log(n->log);
    node_kill9(n);
    return -1;
}

static int wait_exit(pid_t pid, double seconds)
{
    double deadline = now_s() + seconds;
    int status;
    while (now_s() < deadline) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            untrack(pid);
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        if (r < 0)
            return -1;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    untrack(pid);
    return -1;
}

int node_run_to_exit(struct node_proc *n, const char *const *args, char *err,
                     size_t cap)
{
    char log[400];
    const char *argv[64];
    int a = 0, rc;
    pid_t pid;
    FILE *f;

    snprintf(log, sizeof(log), "%s/run-to-exit.log", n->dir);
    unlink(log);
    argv[a++] = "dossierd";
    for (int i = 0; args && args[i] && a < 63; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    pid = spawn(argv, log);
    rc = wait_exit(pid, 20);
    if (err && cap) {
        size_t got = 0;
        err[0] = '\0';
        f = fopen(log, "r");
        if (f) {
            got = fread(err, 1, cap - 1, f);
            err[got] = '\0';
            fclose(f);
        }
    }
    return rc;
}

/* Fails the running test when @n's log holds a sanitizer report: a node
 * built with ASan/UBSan writes them to its stderr, the log, and exits as
 * the test expects, so nothing else would notice. */
static void check_sanitizers(const struct node_proc *n)
{
    static const char *const marks[] = {"ERROR: AddressSanitizer",
                                        "ERROR: LeakSanitizer",
                                        "runtime error:"};
    char *text = harness_read_file(n->log);
    for (size_t i = 0; text && i < sizeof(marks) / sizeof(marks[0]); i++) {
        const char *at = strstr(text, marks[i]);
        if (at) {
            fprintf(stderr, "harness: sanitizer report in %s:\n%.3000s\n",
                    n->log, at);
            free(text);
            fail_msg("node %s: sanitizer report in its log", n->addr);
        }
    }
    free(text);
}

int node_stop(struct node_proc *n)
{
    int rc;
    if (!n->pid)
        return -1;
    kill(n->pid, SIGTERM);
    rc = wait_exit(n->pid, 20);
    n->pid = 0;
    check_sanitizers(n);
    return rc;
}

void node_kill9(struct node_proc *n)
{
    if (!n->pid)
        return;
    kill(n->pid, SIGKILL);
    waitpid(n->pid, NULL, 0);
    untrack(n->pid);
    n->pid = 0;
}

const char *harness_token;
/* Built in, every field category, no consent needed: the tests of
 * records see everything they wrote (the GDPR tests pick their own). */
const char *harness_purpose = "legal_claims";

void node_destroy(struct node_proc *n)
{
    if (n->pid)
        node_stop(n);
    /* DOSSIER_TEST_KEEP=1 keeps the node's directory (and log) to read. */
    if (n->dir[0] && !getenv("DOSSIER_TEST_KEEP"))
        harness_rmtree(n->dir);
    memset(n, 0, sizeof(*n));
}

struct dossier_client *node_client(const struct node_proc *n)
{
    struct dossier_client_options o;
    struct dossier_client *c;
    struct dossier_status st;

    dossier_client_options_init(&o);
    o.target = n->addr;
    o.purpose = harness_purpose;
    o.token = harness_token;
    o.timeout_ms = 20000;
    if (dossier_client_open(&o, &c, &st) != 0) {
        fprintf(stderr, "harness: client: %s\n", st.message);
        abort();
    }
    return c;
}

struct dossier_client *harness_client(const char *targets, int64_t timeout_ms)
{
    struct dossier_client_options o;
    struct dossier_client *c;
    struct dossier_status st;

    dossier_client_options_init(&o);
    o.target = targets;
    o.purpose = harness_purpose;
    o.token = harness_token;
    o.timeout_ms = timeout_ms;
    if (dossier_client_open(&o, &c, &st) != 0) {
        fprintf(stderr, "harness: client: %s\n", st.message);
        abort();
    }
    return c;
}

int harness_free_port(void)
{
    char out[32];
    /* Python is the shortest way to ask the kernel for a free port. */
    if (harness_sh(out, sizeof(out),
                   "/usr/bin/python3 -c 'import socket; s=socket.socket(); "
                   "s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'") !=
        0)
        fatal("free port");
    return atoi(out);
}

void cluster_init(struct cluster_proc *c, int n, const char *const *extra)
{
    memset(c, 0, sizeof(*c));
    c->n = n;
    for (int i = 0; i < n; i++) {
        struct node_proc *p = &c->nodes[i];
        int port, taken;
        /* The kernel may hand out a port it just handed out: the nodes'
         * ports must differ (two on one port fail to start). */
        do {
            char mine[32];
            port = harness_free_port();
            snprintf(mine, sizeof(mine), "127.0.0.1:%d", port);
            taken = 0;
            for (int k = 0; k < i; k++)
                taken |= strcmp(c->nodes[k].listen, mine) == 0;
        } while (taken);
        node_init(p);
        snprintf(p->listen, sizeof(p->listen), "127.0.0.1:%d", port);
        snprintf(c->ids[i], sizeof(c->ids[i]), "%d", i + 1);
        snprintf(c->peers + strlen(c->peers), sizeof(c->peers) - strlen(c->peers),
                 "%s%d=%s", i ? "," : "", i + 1, p->listen);
        snprintf(c->targets + strlen(c->targets),
                 sizeof(c->targets) - strlen(c->targets), "%s%s", i ? "," : "",
                 p->listen);
        if (i > 0) /* one master key for the whole cluster */
            harness_sh(NULL, 0, "cp %s %s", c->nodes[0].key, p->key);
    }
    for (int i = 0; i < n; i++) {
        struct node_proc *p = &c->nodes[i];
        int a = 0;
        p->args[a++] = "--node-id";
        p->args[a++] = c->ids[i];
        p->args[a++] = "--peers";
        p->args[a++] = c->peers;
        p->args[a++] = "--enable-fault-injection";
        p->args[a++] = "--tick-ms";
        p->args[a++] = "50";
        for (int k = 0; extra && extra[k] && a < 22; k++)
            p->args[a++] = extra[k];
        p->args[a] = NULL;
    }
}

int cluster_start_all(struct cluster_proc *c)
{
    /* Start them all before waiting: a node is ready only once a leader
     * exists, which takes a majority. */
    for (int i = 0; i < c->n; i++) {
        struct node_proc *p = &c->nodes[i];
        const char *argv[64];
        int a = 0;
        unlink(p->ready);
        argv[a++] = "dossierd";
        argv[a++] = "--data-dir";
        argv[a++] = p->data;
        argv[a++] = "--key-file";
        argv[a++] = p->key;
        argv[a++] = "--listen";
        argv[a++] = p->listen;
        argv[a++] = "--ready-file";
        argv[a++] = p->ready;
        for (int k = 0; p->args[k] && a < 62; k++)
            argv[a++] = p->args[k];
        argv[a] = NULL;
        p->pid = spawn(argv, p->log);
    }
    for (int i = 0; i < c->n; i++) {
        struct node_proc *p = &c->nodes[i];
        double deadline = now_s() + 40;
        int ok = 0;
        while (now_s() < deadline && !ok) {
            FILE *f = fopen(p->ready, "r");
            if (f) {
                ok = fscanf(f, "%63s", p->addr) == 1;
                fclose(f);
            }
            if (!ok)
                usleep(20000);
        }
        if (!ok) {
            fprintf(stderr, "harness: node %d not ready\n", i + 1);
            print_log(p->log);
            return -1;
        }
    }
    return 0;
}

void cluster_node_status(struct cluster_proc *c, int i,
                         struct dossier_cluster_status *out)
{
    struct dossier_client *cl = harness_client(c->nodes[i].listen, 3000);
    struct dossier_status st;
    if (dossier_cluster_status(cl, NULL, out, &st) != 0) {
        fprintf(stderr, "harness: status of node %d: %s\n", i + 1, st.message);
        memset(out, 0, sizeof(*out));
    }
    dossier_client_close(cl);
}

int cluster_leader(struct cluster_proc *c)
{
    double deadline = now_s() + 20;
    while (now_s() < deadline) {
        uint64_t leader = 0;
        int agree = 1, live = 0;
        for (int i = 0; i < c->n; i++) {
            struct dossier_cluster_status s;
            if (!c->nodes[i].pid)
                continue;
            cluster_node_status(c, i, &s);
            live++;
            if (s.leader_id == 0 || (leader && s.leader_id != leader))
                agree = 0;
            leader = s.leader_id;
        }
        if (live && agree && leader && c->nodes[leader - 1].pid)
            return (int)leader - 1;
        usleep(100000);
    }
    return -1;
}

int cluster_wait_converged(struct cluster_proc *c)
{
    double deadline = now_s() + 30;
    while (now_s() < deadline) {
        int l = cluster_leader(c), ok = l >= 0;
        struct dossier_cluster_status ls;
        if (ok) {
            cluster_node_status(c, l, &ls);
            for (int i = 0; i < c->n && ok; i++) {
                struct dossier_cluster_status s;
                if (!c->nodes[i].pid)
                    continue;
                cluster_node_status(c, i, &s);
                ok = s.applied_index >= ls.commit_index && s.keys_ready;
            }
        }
        if (ok)
            return 0;
        usleep(100000);
    }
    return -1;
}

void cluster_isolate(struct cluster_proc *c, int i, unsigned others)
{
    char ids[128] = "";
    for (int k = 0; k < c->n; k++)
        if (others & (1u << k))
            snprintf(ids + strlen(ids), sizeof(ids) - strlen(ids), " %d",
                     k + 1);
    /* Peer.Fault is test-only plumbing; the Python client reaches it
     * without libdossier knowing it exists. */
    if (harness_sh(NULL, 0, "/usr/bin/python3 %s %s %s%s", HARNESS_FAULT_PY,
                   c->nodes[i].key, c->nodes[i].listen, ids) != 0) {
        fprintf(stderr, "harness: fault switch of node %d failed\n", i + 1);
        abort();
    }
}

void cluster_destroy(struct cluster_proc *c)
{
    for (int i = 0; i < c->n; i++)
        node_destroy(&c->nodes[i]);
}

void harness_new_token(char out[65])
{
    uint8_t raw[32];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(out, 65, raw, sizeof(raw));
}

void harness_write_auth_file(const char *path,
                             const struct harness_principal *p, size_t n)
{
    FILE *f = fopen(path, "w");
    if (!f)
        fatal("auth file");
    fprintf(f, "# principals of the test\n");
    for (size_t i = 0; i < n; i++) {
        uint8_t h[32];
        char hex[65];
        crypto_hash_sha256(h, (const unsigned char *)p[i].token,
                           strlen(p[i].token));
        sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
        fprintf(f, "%s %s %s %s\n", p[i].name, p[i].role, hex,
                p[i].purposes ? p[i].purposes : "");
    }
    if (fclose(f) != 0)
        fatal("auth file");
}

struct dossier_client *harness_client_as(const char *target,
                                         const char *token,
                                         const char *purpose)
{
    struct dossier_client_options o;
    struct dossier_client *c;
    struct dossier_status st;
    dossier_client_options_init(&o);
    o.target = target;
    o.token = token;
    o.purpose = purpose;
    o.timeout_ms = 15000;
    if (dossier_client_open(&o, &c, &st) != 0) {
        fprintf(stderr, "harness: client: %s\n", st.message);
        fatal("client");
    }
    return c;
}

char *harness_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t cap = 1 << 16, len = 0, k;
    char *buf = f ? malloc(cap) : NULL, *g;

    while (buf && (k = fread(buf + len, 1, cap - 1 - len, f)) > 0) {
        len += k;
        if (len == cap - 1) {
            if (!(g = realloc(buf, 2 * cap))) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = g;
            cap *= 2;
        }
    }
    if (f)
        fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

int harness_log_count(const struct node_proc *n, const char *what)
{
    char *text = harness_read_file(n->log), *p;
    int k = 0;
    for (p = text; p && (p = strstr(p, what)); p++)
        k++;
    free(text);
    return k;
}

int harness_metrics_port(const struct node_proc *n)
{
    static const char tag[] = "metrics on http://127.0.0.1:";
    char *text = harness_read_file(n->log), *p, *last = NULL;
    int port;
    for (p = text; p && (p = strstr(p, tag)); p++)
        last = p;
    port = last ? atoi(last + strlen(tag)) : -1;
    free(text);
    return port;
}

char *harness_scrape(int port, char *err, size_t cap)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};
    static const char req[] = "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n";
    size_t bcap = 1 << 20, len = 0;
    char *buf = malloc(bcap), *body = NULL;
    ssize_t k;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!buf || fd < 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1) {
        snprintf(err, cap, "cannot ask 127.0.0.1:%d: %s", port,
                 strerror(errno));
        goto out;
    }
    while ((k = read(fd, buf + len, bcap - 1 - len)) > 0)
        len += (size_t)k;
    buf[len] = '\0';
    if (strncmp(buf, "HTTP/1.0 200", 12) != 0 &&
        strncmp(buf, "HTTP/1.1 200", 12) != 0)
        snprintf(err, cap, "status line: %.40s", buf);
    else if (!strstr(buf, "Content-Type: text/plain; version=0.0.4"))
        snprintf(err, cap, "not Prometheus' text format");
    else if (!(body = strstr(buf, "\r\n\r\n")))
        snprintf(err, cap, "no body");
    else
        body = strdup(body + 4);
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return body;
}

int harness_metric(const char *text, const char *series, double *out)
{
    size_t n = strlen(series);
    int found = -1;
    for (const char *line = text; line && *line;) {
        const char *next = strchr(line, '\n');
        if (line[0] != '#') {
            const char *sp = memchr(line, ' ',
                                    next ? (size_t)(next - line)
                                         : strlen(line));
            if (!sp)
                return -2; /* a sample is "name{labels} value" */
            if (found < 0 && strncmp(line, series, n) == 0 &&
                line[n] == ' ') {
                *out = strtod(line + n + 1, NULL);
                found = 0;
            }
        }
        line = next ? next + 1 : NULL;
    }
    return found;
}

enum dossier_health harness_health(const char *target, const char *service,
                                   int *code)
{
    struct dossier_client *c = harness_client_as(target, NULL, NULL);
    struct dossier_status st;
    enum dossier_health h = DOSSIER_HEALTH_UNKNOWN;
    *code = dossier_health_check(c, NULL, service, &h, &st);
    dossier_client_close(c);
    return h;
}
