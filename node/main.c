/* dossierd: start-up, the order things are opened and closed in, signals. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "api.h"
#include "audit_sink.h"
#include "auth.h"
#include "backup.h"
#include "bootstrap.h"
#include "cluster.h"
#include "config.h"
#include "crypt.h"
#include "erasure.h"
#include "errors.h"
#include "keyfile.h"
#include "keys.h"
#include "health.h"
#include "log.h"
#include "node_metrics.h"
#include "retention.h"
#include "peer.h"
#include "pemfile.h"
#include "server.h"
#include "store.h"

#ifndef DOSSIER_VERSION
#define DOSSIER_VERSION "0.0.0"
#endif

/* The process must never leave its keys in a core file or let another
 * process of the same user read its memory through ptrace. */
static void harden_process(void)
{
    struct rlimit none = {0, 0};
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    setrlimit(RLIMIT_CORE, &none);
}

static int load_keys(const struct config *cfg, struct keyfile *kf,
                     struct dossier_status *st)
{
    const char *env = getenv(KEYFILE_ENV);
    if (cfg->key_file[0])
        return keyfile_load(kf, cfg->key_file, st);
    if (env && env[0])
        return keyfile_parse_env(kf, env, st);
    return err_set(st, DOSSIER_INVALID_ARGUMENT,
                   "no master key: give --key-file (make one with `dossier "
                   "keygen`) or set $" KEYFILE_ENV);
}

/* The node's TLS files (--tls-*), read whole: gRPC takes PEM text. */
struct tls_files {
    char *cert, *key, *ca; /* pemfile_free(); NULL when not given */
};

/* Reads the TLS files of @cfg into @t and describes them in @out. The key
 * file must be private, as the master key file must. Errors: those of
 * pemfile_read(), naming the file. */
static int tls_load(const struct config *cfg, struct tls_files *t,
                    struct server_tls *out, struct dossier_status *st)
{
    int rc = pemfile_read(cfg->tls_cert, "TLS certificate file", 0, &t->cert,
                          st);
    if (rc == 0)
        rc = pemfile_read(cfg->tls_key, "TLS key file", PEMFILE_OWNER_ONLY,
                          &t->key, st);
    if (rc == 0 && cfg->tls_ca[0])
        rc = pemfile_read(cfg->tls_ca, "TLS CA file", 0, &t->ca, st);
    if (rc)
        return rc;
    out->cert_pem = t->cert;
    out->key_pem = t->key;
    out->ca_pem = t->ca;
    out->client_cert = !strcmp(cfg->tls_client_cert, "require")
                           ? SERVER_CLIENT_CERT_REQUIRE
                       : !strcmp(cfg->tls_client_cert, "none")
                           ? SERVER_CLIENT_CERT_NONE
                           : SERVER_CLIENT_CERT_REQUEST;
    return 0;
}

/* Wipes and frees what tls_load() read (gRPC keeps its own copies). */
static void tls_release(struct tls_files *t)
{
    pemfile_free(t->cert);
    pemfile_free(t->key);
    pemfile_free(t->ca);
    memset(t, 0, sizeof(*t));
}

/* A data directory that already holds the cluster's keyset must open it
 * with the master key given, or the node refuses to start. A directory
 * without one gets it from the cluster (its first leader makes it). */
static int check_keys(struct store *s, struct crypt *c,
                      struct dossier_status *st)
{
    Dossier__Store__V1__Meta *m = NULL;
    int rc = store_meta_get(s, &m, st);
    if (rc == DOSSIER_NOT_FOUND)
        return err_ok(st);
    if (rc)
        return rc;
    rc = crypt_keyset_load(c, m, st);
    if (rc == 0) {
        /* A rotation under way needs its target version too: subject
         * keys rewrapped already open only under it. */
        Dossier__Store__V1__KeyRotation *r = NULL;
        int rr = store_key_rotation_get(s, &r, st);
        if (rr == 0 && !r->done) {
            /* Missing versions: crypt_kek_require() below says which. */
            (void)crypt_set_versions(c, m->kek_version, r->to_version,
                                     NULL);
            rc = crypt_kek_require(c, r->to_version, r->to_check.data,
                                   r->to_check.len,
                                   "the key rotation under way", st);
        } else if (rr != 0 && rr != DOSSIER_NOT_FOUND) {
            rc = rr;
        } else {
            err_ok(st);
        }
        if (r)
            dossier__store__v1__key_rotation__free_unpacked(r, NULL);
    }
    dossier__store__v1__meta__free_unpacked(m, NULL);
    return rc;
}

/* Parses "id=host:port,..." into @out (at most @cap members). */
static int parse_peers(const char *text, struct cluster_member *out,
                       size_t cap, size_t *n, struct dossier_status *st)
{
    char *copy = strdup(text), *save = NULL, *tok;
    int rc = 0;

    *n = 0;
    if (!copy)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    for (tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '='), *end;
        unsigned long long id;
        if (!eq || !strchr(eq + 1, ':') || *n == cap) {
            rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                         "--peers: expected id=host:port,... with at most %zu "
                         "members",
                         cap);
            break;
        }
        *eq = '\0';
        errno = 0;
        id = strtoull(tok, &end, 10);
        if (errno || *end || id == 0 || strlen(eq + 1) >= CLUSTER_ADDRESS_MAX) {
            rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                         "--peers: '%s' is not a node id", tok);
            break;
        }
        for (size_t i = 0; i < *n; i++)
            if (out[i].id == id) {
                rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                             "--peers: node %llu appears twice", id);
                break;
            }
        if (rc)
            break;
        out[*n].id = id;
        snprintf(out[*n].address, sizeof(out[*n].address), "%s", eq + 1);
        (*n)++;
    }
    free(copy);
    return rc;
}

static int write_ready_file(const char *path, const char *addr)
{
    char tmp[4200];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%s\n", addr);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return -1;
    return 0;
}

struct signal_ctx {
    sigset_t set;
    int tls_on; /* the port was started with --tls-cert */
    struct crypt *crypt;
    struct keys *keys;
    struct server *server;
    struct cluster *cluster;
    struct audit_sink *audit;
    struct health *health;
    struct auth *auth;
    struct retention *retention;
    struct erasure_report *erasure_report;
    int argc;
    char **argv;
};

/* SIGHUP: reads the config file and flags again and applies what can
 * change while running: the log level and the auth file's principals,
 * roles and purpose grants. A bad file changes nothing, and says why. */
static void reload(struct signal_ctx *sc)
{
    struct config fresh;
    enum config_action action;
    struct dossier_status st;

    memset(&fresh, 0, sizeof(fresh));
    if (config_load(&fresh, sc->argc, sc->argv, &action, &st) != 0) {
        log_printf(LOG_WARN, "SIGHUP: nothing reloaded: %s", st.message);
        return;
    }
    if (log_level_parse(fresh.log_level) >= 0) {
        log_set_level((enum log_level)log_level_parse(fresh.log_level));
        log_printf(LOG_INFO, "SIGHUP: log level %s", fresh.log_level);
    }
    if (fresh.key_file[0]) {
        /* New master key versions (a rotation is coming); a version the
         * cluster still uses can never be dropped. */
        struct keyfile kf;
        if (keyfile_load(&kf, fresh.key_file, &st) != 0 ||
            crypt_keys_reload(sc->crypt, &kf, &st) != 0) {
            log_printf(LOG_WARN, "SIGHUP: master keys not reloaded, the "
                       "loaded ones stay: %s", st.message);
        } else {
            uint32_t v[KEYFILE_MAX_VERSIONS];
            char list[200] = "";
            size_t n = crypt_kek_versions(sc->crypt, v, NULL,
                                          KEYFILE_MAX_VERSIONS);
            for (size_t i = 0; i < n; i++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list),
                         "%s%u", i ? ", " : "", v[i]);
            log_printf(LOG_INFO, "SIGHUP: master key versions %s loaded "
                       "from %s (version %u in use)",
                       list, fresh.key_file, crypt_active_version(sc->crypt));
            cluster_keys_reloaded(sc->cluster);
        }
    }
    if (sc->tls_on || fresh.tls_cert[0]) {
        /* New certificates for connections made from now on, the port's
         * and the peer channels'; a file gRPC refuses changes nothing. */
        struct tls_files tf = {NULL, NULL, NULL};
        struct server_tls t;
        if (!sc->tls_on || !fresh.tls_cert[0])
            log_printf(LOG_WARN, "SIGHUP: TLS is turned on or off only by "
                       "a restart; the port is unchanged");
        else if (tls_load(&fresh, &tf, &t, &st) != 0 ||
                 server_tls_reload(sc->server, &t, &st) != 0)
            log_printf(LOG_WARN, "SIGHUP: TLS certificate not reloaded, the "
                       "current one stays: %s", st.message);
        else if (peer_tls_reload(t.ca_pem, t.cert_pem, t.key_pem, &st) != 0)
            log_printf(LOG_WARN, "SIGHUP: TLS certificate reloaded for the "
                       "port but not for calls to other nodes: %s",
                       st.message);
        else {
            cluster_renew_peer_channels(sc->cluster);
            log_printf(LOG_INFO, "SIGHUP: TLS certificate reloaded from %s: "
                       "new connections, and calls to other nodes, use it",
                       fresh.tls_cert);
        }
        tls_release(&tf);
    }
    if (sc->auth && fresh.auth_file[0]) {
        if (auth_reload(sc->auth, fresh.auth_file, &st) == 0)
            log_printf(LOG_INFO, "SIGHUP: %zu principals may call (from %s)",
                       auth_count(sc->auth), fresh.auth_file);
        else
            log_printf(LOG_WARN, "SIGHUP: principals not reloaded, the "
                       "previous ones stay: %s", st.message);
    } else if (sc->auth || fresh.auth_file[0]) {
        log_printf(LOG_WARN, "SIGHUP: authentication is turned on or off "
                   "only by a restart; the principals are unchanged");
    }
    config_release(&fresh);
}

/* Calls that need the Raft loop get this long to finish at a stop. */
#define STOP_DRAIN_MS 5000
/* ...and after the Raft loop stopped, for the calls it answered last. */
#define STOP_LAST_MS 1000

struct handoff {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, code;
};

static void handoff_done(void *arg, int code, const char *message)
{
    struct handoff *h = arg;
    (void)message;
    pthread_mutex_lock(&h->mu);
    h->done = 1;
    h->code = code;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* A leader that stops first hands leadership to its most caught-up
 * active voter, so the cluster does not wait out an election timeout:
 * writes go on at once, through the new leader. */
static void hand_over_leadership(struct cluster *cl)
{
    struct cluster_status cs;
    struct handoff *h;
    struct timespec until;
    uint64_t best = 0, best_match = 0;
    int done, code;

    cluster_status(cl, &cs);
    if (!cluster_is_leader(cl))
        return;
    for (size_t i = 0; i < cs.raft.n_progress; i++) {
        const struct raft_progress_status *p = &cs.raft.progress[i];
        int voter = 0;
        for (size_t k = 0; k < cs.raft.conf.n_voters; k++)
            voter |= cs.raft.conf.voters[k] == p->id;
        if (p->id == cs.raft.id || !voter || p->learner ||
            !p->recent_active)
            continue;
        if (!best || p->match > best_match) {
            best = p->id;
            best_match = p->match;
        }
    }
    if (!best || !(h = calloc(1, sizeof(*h))))
        return;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    log_printf(LOG_INFO, "stopping: handing leadership to node %" PRIu64,
               best);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5; /* the Raft loop gives up after 3 election timeouts */
    cluster_admin(cl, CLUSTER_TRANSFER, best, NULL, handoff_done, h);
    pthread_mutex_lock(&h->mu);
    while (!h->done && pthread_cond_timedwait(&h->cv, &h->mu, &until) == 0)
        ;
    done = h->done;
    code = h->code;
    pthread_mutex_unlock(&h->mu);
    if (!done) {
        /* The callback may still run: @h stays allocated for it. */
        log_printf(LOG_WARN, "stopping: node %" PRIu64 " did not take "
                   "leadership in time; stopping anyway", best);
        return;
    }
    if (code == 0)
        log_printf(LOG_INFO, "stopping: node %" PRIu64 " leads now", best);
    else
        log_printf(LOG_WARN, "stopping: leadership was not handed over (%s)",
                   dossier_code_name(code));
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

/* Waits up to @ms for @s to answer every call it took. */
static void drain(struct server *s, int ms)
{
    for (int waited = 0; waited < ms && !server_idle(s); waited += 10)
        usleep(10000);
}

static void *signal_main(void *arg)
{
    struct signal_ctx *sc = arg;
    int sig = 0;

    while (sigwait(&sc->set, &sig) == 0) {
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (sig == SIGHUP)
            reload(sc);
    }
    log_printf(LOG_INFO, "received %s: stopping", strsignal(sig));
    /* Probes and load balancers hear first, and Watch streams end, so the
     * server's drain below is not held up by them. */
    health_shutdown(sc->health);
    hand_over_leadership(sc->cluster);
    retention_stop(sc->retention);
    sc->retention = NULL;
    keys_stop(sc->keys);
    sc->keys = NULL;
    erasure_report_stop(sc->erasure_report);
    sc->erasure_report = NULL;
    /* No new calls; calls in flight finish while the Raft loop still runs
     * (writes commit, reads pass their barrier); what remains after a
     * while is answered as unavailable. */
    server_stop(sc->server);
    /* Their calls are answered while the server loop still runs. */
    backup_stop();
    api_export_stop();
    api_watch_stop();
    erasure_wait_stop(); /* waiting erase calls answer with what is known */
    drain(sc->server, STOP_DRAIN_MS);
    audit_sink_stop(sc->audit);
    cluster_shutdown(sc->cluster); /* answers what waited on the Raft loop */
    drain(sc->server, STOP_LAST_MS);
    server_end_untaken(sc->server);
    return NULL;
}

static void *server_thread(void *arg)
{
    server_run(arg);
    return NULL;
}

/* Announces readiness once the cluster's keys are open on this node and a
 * leader is known: only then can it serve data. */
struct ready_ctx {
    struct cluster *cluster;
    const char *path;
    char addr[300];
    int stop;
};

static void *ready_main(void *arg)
{
    struct ready_ctx *r = arg;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        if (cluster_keys_ready(r->cluster) &&
            cluster_leader(r->cluster, NULL, 0) != 0) {
            log_printf(LOG_INFO, "ready: serving data on %s", r->addr);
            if (r->path[0] && write_ready_file(r->path, r->addr) != 0)
                log_printf(LOG_WARN, "cannot write ready file %s: %s",
                           r->path, strerror(errno));
            return NULL;
        }
        usleep(20000);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    struct config cfg;
    enum config_action action;
    struct dossier_status st;
    struct keyfile kf;
    struct crypt *crypt = NULL;
    struct store *store = NULL;
    struct auth *auth = NULL;
    struct cluster *cluster = NULL;
    struct server *server = NULL;
    struct cluster_member members[RAFT_MAX_NODES];
    struct cluster_options co;
    struct node node;
    struct signal_ctx sc;
    struct ready_ctx ready;
    struct tls_files tls_files = {NULL, NULL, NULL};
    struct server_tls tls = {NULL, NULL, NULL, SERVER_CLIENT_CERT_NONE};
    pthread_t sig_thread, ready_thread, extra[63];
    char bound[300], snapdir[4200];
    size_t n_members = 0;
    int n_extra = 0, created = 0, rc, exit_code = 1, ready_started = 0;
    int halted = 0;

    harden_process();
    if (config_load(&cfg, argc, argv, &action, &st) != 0) {
        fprintf(stderr, "dossierd: %s\n", st.message);
        return 2;
    }
    if (action == CONFIG_HELP) {
        config_usage(stdout, "dossierd");
        config_release(&cfg);
        return 0;
    }
    if (action == CONFIG_VERSION) {
        printf("dossierd %s\n", DOSSIER_VERSION);
        config_release(&cfg);
        return 0;
    }
    if (parse_peers(cfg.peers, members, RAFT_MAX_NODES, &n_members, &st)) {
        fprintf(stderr, "dossierd: %s\n", st.message);
        config_release(&cfg);
        return 2;
    }
    log_set_level((enum log_level)log_level_parse(cfg.log_level));
    if (cfg.require_tls && (!cfg.tls_cert[0] || !cfg.tls_key[0])) {
        fprintf(stderr, "dossierd: --require-tls: refusing to start without "
                        "TLS: give --tls-cert and --tls-key (the node would "
                        "otherwise talk plaintext to clients and to the "
                        "other nodes)\n");
        config_release(&cfg);
        return 2;
    }
    if (cfg.bootstrap_token_file[0] && !cfg.require_auth) {
        fprintf(stderr, "dossierd: --bootstrap-token-file is for nodes "
                        "started with --require-auth (without it, the "
                        "first principal is added without credentials)\n");
        config_release(&cfg);
        return 2;
    }

    /* Signals are taken by one thread with sigwait(); every other thread,
     * gRPC's and RocksDB's included, inherits this mask. */
    sigemptyset(&sc.set);
    sigaddset(&sc.set, SIGTERM);
    sigaddset(&sc.set, SIGINT);
    sigaddset(&sc.set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* gRPC's "poll" engine instead of its default, epoll1: each completion
     * queue then polls its own connections, so the thread that takes a
     * call off the server's queue also reads and writes its connection,
     * where with epoll1 any thread waiting on any queue (the peer client's
     * among them) may pick the I/O up and hand it over. Measured with
     * dossier-bench on this 2-core machine: reads of one node +15%, of a
     * 3-node cluster +40%, writes unchanged (docs/BENCHMARKS.md). An
     * operator's own GRPC_POLL_STRATEGY wins. */
    setenv("GRPC_POLL_STRATEGY", "poll", 0);
    grpc_init();
    memset(&node, 0, sizeof(node));
    sc.retention = NULL;
    sc.keys = NULL;
    sc.erasure_report = NULL;
    rc = load_keys(&cfg, &kf, &st);
    if (rc == 0)
        rc = crypt_new(&kf, cfg.key_cache_entries, &crypt, &st);
    if (rc == 0 && cfg.auth_file[0])
        rc = auth_load(cfg.auth_file, &auth, &st);
    if (rc == 0 && cfg.require_auth)
        rc = bootstrap_token_load(cfg.bootstrap_token_file,
                                  node.bootstrap_hash, &node.has_bootstrap,
                                  &st);
    if (rc == 0 && cfg.tls_cert[0])
        rc = tls_load(&cfg, &tls_files, &tls, &st);
    if (rc == 0)
        rc = store_open(cfg.data_dir, cfg.block_cache_mb << 20, &store,
                        &created, &st);
    if (rc == 0)
        store_set_change_history(store, cfg.watch_history);
    if (rc == 0) {
        rc = check_keys(store, crypt, &st);
        if (rc == DOSSIER_WRONG_KEY && backup_restore_pending(cfg.data_dir)) {
            char why[DOSSIER_STATUS_MESSAGE_MAX];
            snprintf(why, sizeof(why), "%s", st.message);
            err_set(&st, rc, "%s. This data directory is a restored backup: "
                    "it needs the master key version it was sealed under "
                    "when the backup was taken (dossier backup restore "
                    "named it), even if the cluster rotated away from it "
                    "since; rotate again once it serves", why);
        }
    }
    /* From the version in use, known once the keyset is open. */
    if (rc == 0)
        crypt_peer_token(crypt, node.peer_token);
    if (rc == 0)
        rc = server_bind(&node, cfg.listen, cfg.max_message_bytes, &tls,
                         &server, bound, sizeof(bound), &st);
    /* Node-to-node calls are mutual TLS too: this node's certificate is
     * its client certificate when it calls the others. */
    if (rc == 0 && tls.cert_pem)
        rc = peer_tls_set(tls.ca_pem, tls.cert_pem, tls.key_pem, &st);
    if (rc == 0) {
        const char *self = cfg.advertise[0] ? cfg.advertise : bound;
        if (n_members == 0) {
            /* No peers given: a cluster of this node alone. */
            members[0].id = cfg.node_id;
            snprintf(members[0].address, sizeof(members[0].address), "%.255s",
                     self);
            n_members = cfg.join ? 0 : 1;
        }
        if (backup_restore_pending(cfg.data_dir)) {
            rc = backup_restore_membership(store, cfg.node_id, self, &st);
            if (rc)
                goto started;
        }
        snprintf(snapdir, sizeof(snapdir), "%s/snapshots", cfg.data_dir);
        memset(&co, 0, sizeof(co));
        co.node_id = cfg.node_id;
        co.members = members;
        co.n_members = n_members;
        co.join = cfg.join;
        co.cluster_name = cfg.cluster_name;
        co.tick_ms = (unsigned)cfg.tick_ms;
        co.election_ticks = (unsigned)cfg.election_ticks;
        co.max_batch = cfg.group_commit_max;
        co.snapshot_entries = cfg.snapshot_entries;
        co.snapshot_dir = snapdir;
        co.advertise = self;
        co.peer_token = node.peer_token;
        co.request_sweep_offset_ms = (int64_t)cfg.request_sweep_offset_ms;
        if (cfg.request_sweep_offset_ms && !cfg.fault_injection)
            rc = err_set(&st, DOSSIER_INVALID_ARGUMENT,
                         "--request-sweep-clock-offset-ms is for tests and "
                         "needs --enable-fault-injection");
        else
            rc = cluster_start(store, crypt, &co, &cluster, &st);
    }
started:
    tls_release(&tls_files);
    if (rc) {
        log_printf(LOG_ERROR, "cannot start: %s: %s",
                   dossier_code_name(st.code), st.message);
        fprintf(stderr, "dossierd: cannot start: %s: %s\n",
                dossier_code_name(st.code), st.message);
        goto out;
    }
    node.store = store;
    node.crypt = crypt;
    node.cluster = cluster;
    node.id = cfg.node_id;
    node.fault_injection = cfg.fault_injection;
    node.submit_pause_ms = (unsigned)cfg.submit_pause_ms;
    node.auth = auth;
    node.require_auth = cfg.require_auth;
    node.data_dir = cfg.data_dir;
    node.backup_dir = cfg.backup_dir;
    node.cluster_name = cfg.cluster_name;
    {
        struct audit_sink_options ao;
        ao.window_ms = (int64_t)cfg.audit_window_ms;
        ao.checkpoint_entries = cfg.audit_checkpoint_entries;
        ao.checkpoint_ms = (int64_t)cfg.audit_checkpoint_ms;
        if (audit_sink_start(&node, &ao, &node.audit, &st) != 0) {
            log_printf(LOG_ERROR, "cannot start: %s", st.message);
            fprintf(stderr, "dossierd: cannot start: %s\n", st.message);
            goto out;
        }
    }
    if (backup_restore_pending(cfg.data_dir) &&
        backup_restore_finish(&node, cfg.data_dir, &st) != 0) {
        log_printf(LOG_ERROR, "cannot start: %s", st.message);
        fprintf(stderr, "dossierd: cannot start: restore: %s\n", st.message);
        goto out;
    }
    if (health_start(&node, cfg.health_max_lag, 0, &node.health, &st) != 0) {
        log_printf(LOG_ERROR, "cannot start: %s", st.message);
        fprintf(stderr, "dossierd: cannot start: %s\n", st.message);
        goto out;
    }
    if (cfg.metrics_listen[0]) {
        char maddr[128];
        if (node_metrics_start(&node, cfg.metrics_listen, &node.metrics, maddr,
                               sizeof(maddr), &st) != 0) {
            log_printf(LOG_ERROR, "cannot start: %s", st.message);
            fprintf(stderr, "dossierd: cannot start: %s\n", st.message);
            goto out;
        }
        log_printf(LOG_INFO, "metrics on http://%s/metrics", maddr);
    }
    if (cfg.retention_offset_days && !cfg.fault_injection) {
        fprintf(stderr, "dossierd: --retention-clock-offset-days is for "
                        "tests and needs --enable-fault-injection\n");
        goto out;
    }
    if (cfg.key_rotation_pause_ms && !cfg.fault_injection) {
        fprintf(stderr, "dossierd: --key-rotation-pause-ms is for tests and "
                        "needs --enable-fault-injection\n");
        goto out;
    }
    if (cfg.submit_pause_ms && !cfg.fault_injection) {
        fprintf(stderr, "dossierd: --submit-pause-ms is for tests and needs "
                        "--enable-fault-injection\n");
        goto out;
    }
    if (keys_start(&node, cfg.key_rotation_batch,
                   (unsigned)cfg.key_rotation_pause_ms, &node.keys,
                   &st) != 0) {
        log_printf(LOG_ERROR, "cannot start: %s", st.message);
        fprintf(stderr, "dossierd: cannot start: %s\n", st.message);
        goto out;
    }
    sc.keys = node.keys;
    if (retention_start(&node, (int64_t)cfg.retention_sweep_ms,
                        (int64_t)cfg.retention_offset_days * 86400000LL,
                        &sc.retention, &st) != 0) {
        log_printf(LOG_ERROR, "cannot start: %s", st.message);
        fprintf(stderr, "dossierd: cannot start: %s\n", st.message);
        goto out;
    }
    if (cfg.require_auth)
        log_printf(LOG_INFO, "authentication required: every call needs a "
                   "principal's token or certificate%s",
                   node.has_bootstrap
                       ? "; the bootstrap token may add the first admin "
                         "while the cluster never had a principal"
                       : "");
    if (cfg.require_auth && cfg.bootstrap_token_file[0] && !node.has_bootstrap)
        log_printf(LOG_INFO, "bootstrap token file %s is gone: no bootstrap "
                   "token (it is deleted once the first admin exists)",
                   cfg.bootstrap_token_file);
    if (auth && node.has_bootstrap)
        log_printf(LOG_WARN, "a bootstrap token and an auth file: the token "
                   "is refused on this node (the auth file's admins add "
                   "principals)");
    if (cfg.require_auth && !auth && !node.has_bootstrap &&
        store_principal_count(store) == 0)
        log_printf(LOG_WARN, "--require-auth without --auth-file or a "
                   "bootstrap token, and the cluster has no principal yet: "
                   "nobody can call until a principal is replicated here "
                   "(give --bootstrap-token-file to add the first admin)");
    if (erasure_report_start(&node, &sc.erasure_report, &st) != 0) {
        log_printf(LOG_ERROR, "cannot start: %s", st.message);
        fprintf(stderr, "dossierd: cannot start: %s\n", st.message);
        goto out;
    }
    if (!auth && !cfg.require_auth)
        log_printf(LOG_WARN, "no --auth-file and no --require-auth: clients "
                             "are not authenticated until the cluster has a "
                             "principal; use this only for development");
    else if (auth)
        log_printf(LOG_INFO, "%zu principals may call (from %s)",
                   auth_count(auth), cfg.auth_file);
    if (!cfg.tls_cert[0])
        log_printf(LOG_WARN, "no --tls-cert: clients and nodes talk "
                             "plaintext gRPC; keep them on a private "
                             "network");
    else
        log_printf(LOG_INFO, "TLS only on %s, to other nodes too (certificate "
                   "%s); client certificates: %s", bound, cfg.tls_cert,
                   cfg.tls_ca[0] ? cfg.tls_client_cert
                                 : "not asked (no --tls-ca)");
    server_start(server);
    sc.server = server;
    sc.cluster = cluster;
    sc.audit = node.audit;
    sc.health = node.health;
    sc.auth = auth;
    sc.crypt = crypt;
    sc.tls_on = cfg.tls_cert[0] != '\0';
    sc.argc = argc;
    sc.argv = argv;
    if (pthread_create(&sig_thread, NULL, signal_main, &sc) != 0) {
        log_printf(LOG_ERROR, "cannot start the signal thread");
        audit_sink_stop(node.audit);
        server_stop(server);
        server_run(server);
        goto out;
    }
    for (n_extra = 0; (uint64_t)n_extra + 1 < cfg.server_threads && n_extra < 63;
         n_extra++)
        if (pthread_create(&extra[n_extra], NULL, server_thread, server) != 0)
            break;
    log_printf(LOG_INFO, "dossierd %s node %" PRIu64 " listening on %s, "
               "data directory %s, applied index %" PRIu64,
               DOSSIER_VERSION, cfg.node_id, bound, cfg.data_dir,
               store_applied(store));
    ready.cluster = cluster;
    ready.path = cfg.ready_file;
    ready.stop = 0;
    snprintf(ready.addr, sizeof(ready.addr), "%s", bound);
    ready_started = pthread_create(&ready_thread, NULL, ready_main, &ready) == 0;
    server_run(server);
    for (int i = 0; i < n_extra; i++)
        pthread_join(extra[i], NULL);
    pthread_join(sig_thread, NULL);
    exit_code = 0;
out:
    if (ready_started) {
        __atomic_store_n(&ready.stop, 1, __ATOMIC_RELEASE);
        pthread_join(ready_thread, NULL);
    }
    if (exit_code != 0)
        audit_sink_stop(node.audit); /* stopped by the signal thread else */
    retention_stop(sc.retention); /* stopped by the signal thread else */
    keys_stop(sc.keys);           /* likewise */
    erasure_report_stop(sc.erasure_report); /* likewise */
    erasure_wait_stop();
    node_metrics_free(node.metrics); /* its scrapes read the cluster */
    backup_wait_idle();
    api_export_wait_idle();
    api_watch_stop(); /* stopped by the signal thread, or not at all */
    if (exit_code == 0 && cluster && cluster_halted(cluster, NULL, 0)) {
        /* Stopped as asked, but not everything it had to write was
         * written: a supervisor should see a failure. */
        log_printf(LOG_ERROR, "stopped after a halt (its reason is logged "
                   "above); restart once the cause is fixed");
        exit_code = 1;
        halted = 1;
    }
    cluster_free(cluster);
    peer_tls_clear(); /* after the last peer channel is gone */
    audit_sink_free(node.audit);
    server_free(server);
    health_free(node.health);
    if (exit_code == 0 || halted)
        log_printf(LOG_INFO, "stopped %sat applied index %" PRIu64,
                   halted ? "after a halt " : "cleanly ",
                   store_applied(store));
    store_close(store);
    crypt_free(crypt);
    auth_free(auth);
    config_release(&cfg);
    grpc_shutdown();
    return exit_code;
}
