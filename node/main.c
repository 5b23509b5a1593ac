/* dossierd: start-up, the order things are opened and closed in, signals. */
#include <errno.h>
#include <fcntl.h>
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

#include "cluster.h"
#include "config.h"
#include "crypt.h"
#include "errors.h"
#include "keyfile.h"
#include "log.h"
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

/* Opens the keyset of an existing directory, or makes one for a new
 * directory. */
static int open_keys(struct store *s, struct crypt *c, const char *dir,
                     struct dossier_status *st)
{
    Dossier__Store__V1__Meta *m = NULL, fresh = DOSSIER__STORE__V1__META__INIT;
    char id[17];
    int rc = store_meta_get(s, &m, st);

    if (rc == 0) {
        rc = crypt_keyset_load(c, m, st);
        dossier__store__v1__meta__free_unpacked(m, NULL);
        return rc;
    }
    if (rc != DOSSIER_NOT_FOUND)
        return rc;
    /* No meta record: a new directory (or one whose first start stopped
     * before writing it, which cannot hold data yet). */
    fresh.format = STORE_FORMAT;
    fresh.created_at_ms = (int64_t)time(NULL) * 1000;
    rc = crypt_keyset_create(c, &fresh, st);
    if (rc)
        return rc;
    rc = store_meta_put(s, &fresh, st);
    crypt_kek_id(c, fresh.kek_version, id);
    free(fresh.cluster_id.data);
    free(fresh.kek_check.data);
    free(fresh.sealed_keyset.data);
    if (rc == 0)
        log_printf(LOG_INFO,
                   "initialised data directory %s under master key id %s",
                   dir, id);
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

static void *server_thread(void *arg)
{
    server_run(arg);
    return NULL;
}

struct signal_ctx {
    sigset_t set;
    struct server *server;
};

static void *signal_main(void *arg)
{
    struct signal_ctx *sc = arg;
    int sig = 0;

    while (sigwait(&sc->set, &sig) == 0) {
        if (sig == SIGTERM || sig == SIGINT)
            break;
    }
    log_printf(LOG_INFO, "received %s: stopping", strsignal(sig));
    server_stop(sc->server);
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
    struct cluster *cluster = NULL;
    struct server *server = NULL;
    struct node node;
    struct signal_ctx sc;
    pthread_t sig_thread;
    char bound[300];
    pthread_t extra[63];
    int n_extra = 0, created = 0, rc, exit_code = 1;

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
    log_set_level((enum log_level)log_level_parse(cfg.log_level));

    /* Signals are taken by one thread with sigwait(); every other thread,
     * gRPC's and RocksDB's included, inherits this mask. */
    sigemptyset(&sc.set);
    sigaddset(&sc.set, SIGTERM);
    sigaddset(&sc.set, SIGINT);
    sigaddset(&sc.set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
    signal(SIGPIPE, SIG_IGN);

    grpc_init();
    rc = load_keys(&cfg, &kf, &st);
    if (rc == 0)
        rc = crypt_new(&kf, cfg.key_cache_entries, &crypt, &st);
    if (rc == 0)
        rc = store_open(cfg.data_dir, cfg.block_cache_mb << 20, &store,
                        &created, &st);
    if (rc == 0)
        rc = open_keys(store, crypt, cfg.data_dir, &st);
    if (rc == 0)
        rc = cluster_start(store, cfg.group_commit_max, &cluster, &st);
    if (rc == 0) {
        node = (struct node){store, crypt, cluster};
        rc = server_start(&node, cfg.listen, cfg.max_message_bytes, &server,
                          bound, sizeof(bound), &st);
    }
    if (rc) {
        log_printf(LOG_ERROR, "cannot start: %s", st.message);
        fprintf(stderr, "dossierd: cannot start: %s\n", st.message);
        goto out;
    }
    sc.server = server;
    if (pthread_create(&sig_thread, NULL, signal_main, &sc) != 0) {
        log_printf(LOG_ERROR, "cannot start the signal thread");
        server_stop(server);
        server_run(server);
        goto out;
    }
    for (n_extra = 0; (uint64_t)n_extra + 1 < cfg.server_threads && n_extra < 63;
         n_extra++)
        if (pthread_create(&extra[n_extra], NULL, server_thread, server) != 0)
            break;
    log_printf(LOG_INFO, "dossierd %s serving on %s, data directory %s, "
               "revision %llu",
               DOSSIER_VERSION, bound, cfg.data_dir,
               (unsigned long long)store_revision(store));
    if (cfg.ready_file[0] && write_ready_file(cfg.ready_file, bound) != 0)
        log_printf(LOG_WARN, "cannot write ready file %s: %s", cfg.ready_file,
                   strerror(errno));
    server_run(server);
    for (int i = 0; i < n_extra; i++)
        pthread_join(extra[i], NULL);
    pthread_join(sig_thread, NULL);
    exit_code = 0;
out:
    server_free(server);
    cluster_stop(cluster); /* makes pending writes durable */
    if (exit_code == 0)
        log_printf(LOG_INFO, "stopped cleanly at revision %llu",
                   (unsigned long long)store_revision(store));
    store_close(store);
    crypt_free(crypt);
    config_release(&cfg);
    grpc_shutdown();
    return exit_code;
}
