/* Settings from defaults, an INI file and flags, all from one table. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "errors.h"
#include "log.h"

enum opt_type { OPT_STR, OPT_U64, OPT_BOOL };

struct opt {
    const char *name; /* flag without "--", INI key with '-' as '_' */
    enum opt_type type;
    size_t offset;
    const char *def;
    uint64_t min, max;
    const char *help;
};

#define OFF(f) offsetof(struct config, f)

static const struct opt opts[] = {
    {"listen", OPT_STR, OFF(listen), "127.0.0.1:7700", 0, 0,
     "address:port to serve gRPC on; port 0 picks a free port"},
    {"data-dir", OPT_STR, OFF(data_dir), "./dossier-data", 0, 0,
     "data directory; made (mode 0700) when missing or empty"},
    {"key-file", OPT_STR, OFF(key_file), "", 0, 0,
     "master key file from `dossier keygen` (mode 0600); when empty, the key "
     "is read from $DOSSIER_MASTER_KEY"},
    {"auth-file", OPT_STR, OFF(auth_file), "", 0, 0,
     "principals allowed to call, one 'name role sha256-of-token' per line "
     "(`dossier token new` makes one), or 'name role cert' for a principal "
     "known by its TLS client certificate's CN; empty: clients are not "
     "authenticated (development only)"},
    {"require-auth", OPT_BOOL, OFF(require_auth), "false", 0, 0,
     "refuse every call without credentials of a known principal from the "
     "first moment (UNAUTHENTICATED, audited), even while the cluster has "
     "no principal of its own yet; the first admin comes from auth-file or "
     "bootstrap-token-file. Without it, clients are authenticated only "
     "once an auth file or a principal of the cluster exists"},
    {"bootstrap-token-file", OPT_STR, OFF(bootstrap_token_file), "", 0, 0,
     "with require-auth: a file (mode 0600; `dossier token bootstrap FILE` "
     "makes one) holding a one-time token that may only add the cluster's "
     "first admin (dossier principal add NAME admin), and only while the "
     "cluster never had a principal of its own (delete the file then: a "
     "missing file means no token); empty: the token in "
     "$DOSSIER_BOOTSTRAP_TOKEN, if set"},
    {"tls-cert", OPT_STR, OFF(tls_cert), "", 0, 0,
     "PEM certificate (chain) of this node; with tls-key, the gRPC port "
     "speaks TLS only, and this node presents it to the nodes it calls. It "
     "must name the address others dial (SAN IP:10.0.0.1 or "
     "DNS:node1.example); empty: plaintext"},
    {"tls-key", OPT_STR, OFF(tls_key), "", 0, 0,
     "PEM private key of tls-cert; refused if group or others can access "
     "it (mode 0600, like the master key file)"},
    {"tls-ca", OPT_STR, OFF(tls_ca), "", 0, 0,
     "PEM bundle of the CA(s) that client certificates and the other "
     "nodes' certificates must chain to; needs tls-cert; empty: clients "
     "are not asked for certificates, and other nodes are checked against "
     "the system's CAs"},
    {"tls-client-cert", OPT_STR, OFF(tls_client_cert), "request", 0, 0,
     "with tls-ca: 'request' (a client certificate, if presented, must "
     "verify against tls-ca; callers without one still connect and need a "
     "token), 'require' (a connection without a verified client "
     "certificate fails its handshake) or 'none' (not asked for). An "
     "auth-file principal with 'cert' for its hash is authenticated by a "
     "verified certificate whose subject CN is its name"},
    {"require-tls", OPT_BOOL, OFF(require_tls), "false", 0, 0,
     "refuse to start without tls-cert and tls-key: clients and the other "
     "nodes then reach this node over TLS only, and it calls the other "
     "nodes over mutual TLS"},
    {"ready-file", OPT_STR, OFF(ready_file), "", 0, 0,
     "file to write the bound address to once the node serves"},
    {"log-level", OPT_STR, OFF(log_level), "info", 0, 0,
     "lowest level logged: debug, info, warn or error"},
    {"max-message-bytes", OPT_U64, OFF(max_message_bytes), "4194304",
     2u << 20, 1u << 30,
     "largest request accepted; larger ones get RESOURCE_EXHAUSTED (at "
     "least 2 MiB: nodes send each other calls of up to 1 MiB of entries)"},
    {"key-cache-entries", OPT_U64, OFF(key_cache_entries), "65536", 16,
     1u << 26, "subject keys kept unwrapped in locked memory"},
    {"block-cache-mb", OPT_U64, OFF(block_cache_mb), "64", 1, 1u << 20,
     "RocksDB block cache size in MiB"},
    {"group-commit-max", OPT_U64, OFF(group_commit_max), "1024", 1, 1u << 20,
     "most write commands proposed in one turn of the Raft loop, and so "
     "made durable by one synced write"},
    {"server-threads", OPT_U64, OFF(server_threads), "2", 1, 64,
     "threads taking gRPC calls from the completion queue and doing their "
     "connections' I/O (on 2 cores, 2 measured fastest)"},
    {"node-id", OPT_U64, OFF(node_id), "1", 1, UINT32_MAX,
     "this node's id in its cluster"},
    {"peers", OPT_STR, OFF(peers), "", 0, 0,
     "initial members when bootstrapping a cluster, as id=host:port,... "
     "including this node; empty: a cluster of this node alone"},
    {"advertise", OPT_STR, OFF(advertise), "", 0, 0,
     "host:port other nodes reach this one at; empty: the listen address"},
    {"join", OPT_BOOL, OFF(join), "false", 0, 0,
     "join a running cluster: wait to be added (dossier cluster add) "
     "instead of bootstrapping one"},
    {"cluster-name", OPT_STR, OFF(cluster_name), "dossier", 0, 0,
     "nodes only talk to nodes of the same cluster name"},
    {"tick-ms", OPT_U64, OFF(tick_ms), "100", 10, 10000,
     "raft tick in ms: heartbeats every tick; a follower campaigns after "
     "election-ticks to twice that many silent ticks"},
    {"election-ticks", OPT_U64, OFF(election_ticks), "10", 2, 1000,
     "ticks of silence before a follower campaigns"},
    {"snapshot-entries", OPT_U64, OFF(snapshot_entries), "10000", 16,
     1u << 30, "the log is compacted once it holds this many applied "
     "entries, keeping the newest half for followers a little behind"},
    {"audit-window-ms", OPT_U64, OFF(audit_window_ms), "200", 10, 60000,
     "reads and refused calls are appended to the audit log in batches "
     "this often; a crash loses at most one window of them"},
    {"audit-checkpoint-entries", OPT_U64, OFF(audit_checkpoint_entries),
     "1000", 1, 1u << 30,
     "the leader signs the audit chain at least every this many entries"},
    {"audit-checkpoint-ms", OPT_U64, OFF(audit_checkpoint_ms), "10000", 100,
     86400000, "the leader also signs the audit chain at least this often (ms) "
     "while entries come"},
    {"backup-dir", OPT_STR, OFF(backup_dir), "", 0, 0,
     "directory where `dossier backup create` puts this node's backups "
     "(made mode 0700; best on the data directory's file system, where "
     "SST files are hard-linked); empty: backups are refused"},
    {"metrics-listen", OPT_STR, OFF(metrics_listen), "", 0, 0,
     "IPv4 host:port to serve Prometheus metrics on over HTTP (GET "
     "/metrics); port 0 picks a free port; empty: no metrics"},
    {"health-max-lag", OPT_U64, OFF(health_max_lag), "1000", 0, 1u << 30,
     "committed entries a node may still have to apply and report SERVING "
     "to the gRPC health service; beyond that it is catching up "
     "(NOT_SERVING)"},
    {"retention-sweep-ms", OPT_U64, OFF(retention_sweep_ms), "3600000", 0,
     7u * 86400000u,
     "the leader drops fields past their kind's retention_days this often "
     "(ms; each sweep reads every record); 0: never"},
    {"watch-history", OPT_U64, OFF(watch_history), "100000", 1, 1ull << 40,
     "revisions of changes this node keeps for the change feed (Watch); a "
     "watcher may resume from any of them"},
    {"key-rotation-batch", OPT_U64, OFF(key_rotation_batch), "256", 1, 65536,
     "subject keys a leader rewraps per replicated command during a master "
     "key rotation (dossier keys rotate)"},
    {"key-rotation-pause-ms", OPT_U64, OFF(key_rotation_pause_ms), "0", 0,
     60000,
     "TESTS ONLY (needs --enable-fault-injection): pause between the "
     "batches of a key rotation, so a test can interrupt one"},
    {"submit-pause-ms", OPT_U64, OFF(submit_pause_ms), "0", 0, 10000,
     "TESTS ONLY (needs --enable-fault-injection): a server thread pauses "
     "this long after handing a write to the Raft loop, past its answer, so "
     "that a sanitizer build catches a call used after it was freed"},
    {"retention-clock-offset-days", OPT_U64, OFF(retention_offset_days), "0",
     0, 36500,
     "TESTS ONLY (needs --enable-fault-injection): the retention sweeper's "
     "clock runs this many days ahead"},
    {"request-sweep-clock-offset-ms", OPT_U64, OFF(request_sweep_offset_ms),
     "0", 0, 86400000,
     "TESTS ONLY (needs --enable-fault-injection): the leader's sweep of "
     "request ids past their TTL runs with its clock this far ahead"},
    {"enable-fault-injection", OPT_BOOL, OFF(fault_injection), "false", 0, 0,
     "TESTS ONLY: let Peer.Fault cut this node off from others"},
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static int opt_set(struct config *c, const struct opt *o, const char *value,
                   const char *where, struct dossier_status *st)
{
    void *field = (char *)c + o->offset;

    if (o->type == OPT_BOOL) {
        int *b = field;
        if (!strcmp(value, "true") || !strcmp(value, "yes") ||
            !strcmp(value, "1") || !strcmp(value, "on"))
            *b = 1;
        else if (!strcmp(value, "false") || !strcmp(value, "no") ||
                 !strcmp(value, "0") || !strcmp(value, "off"))
            *b = 0;
        else
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "%s: %s must be true or false", where, o->name);
        return 0;
    }
    if (o->type == OPT_STR) {
        char *copy = strdup(value);
        if (!copy)
            return err_set(st, DOSSIER_NOMEM, "out of memory");
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno || end == value || *end || value[0] == '-' || v < o->min ||
        v > o->max)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "%s: %s must be a whole number from %llu to %llu",
                       where, o->name, (unsigned long long)o->min,
                       (unsigned long long)o->max);
    *(uint64_t *)field = v;
    return 0;
}

static const struct opt *opt_find(const char *name, int ini)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        const char *a = opts[i].name, *b = name;
        for (; *a && *b; a++, b++)
            if (*a != *b && !(ini && *a == '-' && *b == '_'))
                break;
        if (!*a && !*b)
            return &opts[i];
    }
    return NULL;
}

struct ini_ctx {
    struct config *c;
    const char *path;
    struct dossier_status *st;
    int rc;
};

static int config_ini_line(void *user, const char *section, const char *name,
                       const char *value)
{
    struct ini_ctx *x = user;
    const struct opt *o;
    char where[4200];

    if (x->rc)
        return 0;
    snprintf(where, sizeof(where), "config %s", x->path);
    if (strcmp(section, "node") != 0) {
        x->rc = err_set(x->st, DOSSIER_INVALID_ARGUMENT,
                        "%s: unknown section [%s] (settings go in [node])",
                        where, section);
        return 0;
    }
    o = opt_find(name, 1);
    if (!o) {
        x->rc = err_set(x->st, DOSSIER_INVALID_ARGUMENT,
                        "%s: unknown setting '%s'", where, name);
        return 0;
    }
    x->rc = opt_set(x->c, o, value, where, x->st);
    return x->rc == 0;
}

void config_release(struct config *c)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (opts[i].type == OPT_STR) {
            char **f = (char **)((char *)c + opts[i].offset);
            free(*f);
            *f = NULL;
        }
}

int config_load(struct config *c, int argc, char **argv,
                enum config_action *action, struct dossier_status *st)
{
    struct option lopts[N_OPTS + 4];
    const char *config_path = NULL;
    int rc, ch, idx;

    memset(c, 0, sizeof(*c));
    *action = CONFIG_RUN;
    for (size_t i = 0; i < N_OPTS; i++) {
        rc = opt_set(c, &opts[i], opts[i].def, "default", st);
        if (rc)
            goto fail;
        lopts[i] = (struct option){opts[i].name,
                                   opts[i].type == OPT_BOOL ? optional_argument
                                                            : required_argument,
                                   NULL, (int)(256 + i)};
    }
    lopts[N_OPTS] = (struct option){"config", required_argument, NULL, 'c'};
    lopts[N_OPTS + 1] = (struct option){"help", no_argument, NULL, 'h'};
    lopts[N_OPTS + 2] = (struct option){"version", no_argument, NULL, 'V'};
    lopts[N_OPTS + 3] = (struct option){NULL, 0, NULL, 0};

    /* First pass: find --config, --help and --version. */
    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:hV", lopts, &idx)) != -1) {
        if (ch == 'c')
            config_path = optarg;
        else if (ch == 'h')
            *action = CONFIG_HELP;
        else if (ch == 'V')
            *action = CONFIG_VERSION;
        else if (ch == '?') {
            rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                         "unknown or incomplete option '%s' (see --help)",
                         argv[optind - 1]);
            goto fail;
        }
    }
    if (optind < argc) {
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "unexpected argument '%s' (see --help)", argv[optind]);
        goto fail;
    }
    if (*action != CONFIG_RUN)
        return 0;
    if (config_path) {
        struct ini_ctx x = {c, config_path, st, 0};
        int line = ini_parse(config_path, config_ini_line, &x);
        if (x.rc) {
            rc = x.rc;
            goto fail;
        }
        if (line < 0) {
            rc = err_set(st, DOSSIER_IO, "cannot read config %s",
                         config_path);
            goto fail;
        }
        if (line > 0) {
            rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                         "config %s: line %d is not a setting", config_path,
                         line);
            goto fail;
        }
    }
    /* Second pass: flags override the file. */
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:hV", lopts, &idx)) != -1) {
        if (ch >= 256) {
            rc = opt_set(c, &opts[ch - 256], optarg ? optarg : "true", "flag",
                         st);
            if (rc)
                goto fail;
        }
    }
    /* "--join false" would leave "false" here and turn the flag on. */
    if (optind < argc) {
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "unexpected argument '%s' (a yes/no flag takes its "
                     "value as --flag=false)", argv[optind]);
        goto fail;
    }
    if (log_level_parse(c->log_level) < 0) {
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "log-level must be debug, info, warn or error");
        goto fail;
    }
    if (!c->tls_cert[0] != !c->tls_key[0]) {
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "tls-cert and tls-key go together: give both (TLS) or "
                     "neither (plaintext)");
        goto fail;
    }
    if (c->tls_ca[0] && !c->tls_cert[0]) {
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "tls-ca needs tls-cert and tls-key: client certificates "
                     "are only asked for over TLS");
        goto fail;
    }
    if (strcmp(c->tls_client_cert, "none") != 0 &&
        strcmp(c->tls_client_cert, "request") != 0 &&
        strcmp(c->tls_client_cert, "require") != 0) {
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "tls-client-cert must be none, request or require");
        goto fail;
    }
    if (!strcmp(c->tls_client_cert, "require") && !c->tls_ca[0]) {
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "tls-client-cert require needs tls-ca to verify client "
                     "certificates against");
        goto fail;
    }
    if (!c->data_dir[0] || !c->listen[0]) {
        rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                     "listen and data-dir must not be empty");
        goto fail;
    }
    return err_ok(st);
fail:
    config_release(c);
    return rc;
}

void config_usage(FILE *out, const char *prog)
{
    fprintf(out,
            "Usage: %s [--config FILE] [OPTIONS]\n"
            "\n"
            "Runs a Dossier storage node: encrypted customer records over "
            "gRPC.\n"
            "Every option can also be set in the [node] section of the "
            "config file,\n"
            "under its name with '_' for '-'; flags override the file.\n"
            "\n"
            "  --config FILE\n      INI file to read settings from\n",
            prog);
    for (size_t i = 0; i < N_OPTS; i++)
        fprintf(out, "  --%s%s\n      %s (default: %s)\n", opts[i].name,
                opts[i].type == OPT_U64    ? " N"
                : opts[i].type == OPT_BOOL ? "[=true|false]"
                                           : " VALUE",
                opts[i].help, opts[i].def[0] ? opts[i].def : "empty");
    fprintf(out,
            "  --help\n      this text\n"
            "  --version\n      print the version and exit\n"
            "\n"
            "Environment:\n"
            "  DOSSIER_MASTER_KEY  master key as [<version>:]<64 hex digits>, "
            "used when\n"
            "                      no key file is set\n"
            "  DOSSIER_BOOTSTRAP_TOKEN  with --require-auth: the bootstrap "
            "token, used\n"
            "                      when no bootstrap token file is set\n"
            "\n"
            "Signals: SIGTERM and SIGINT stop the node cleanly: it reports\n"
            "NOT_SERVING, a leader hands leadership to another voter, calls in\n"
            "flight finish, pending writes are made durable, then it exits 0.\n"
            "SIGHUP reads the config file and flags again and applies the log\n"
            "level and the auth file (principals, roles, purpose grants); a\n"
            "bad file changes nothing and the log says why.\n"
            "Exit status: 0 clean stop, 1 failure to start or run (the "
            "reason is on\n"
            "stderr), 2 bad usage.\n");
}
