/* dossierd's settings: one table gives every setting its flag, its key in
 * the [node] section of the INI file, its default and its help text. Flags
 * override the file. */
#ifndef DOSSIER_NODE_CONFIG_H
#define DOSSIER_NODE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <dossier/dossier.h>

struct config {
    char *listen;
    char *data_dir;
    char *key_file;
    char *ready_file;
    char *auth_file;
    int require_auth;      /* clients always need a principal */
    char *bootstrap_token_file; /* with require_auth: the first admin */
    int require_tls;       /* refuse to start without tls_cert */
    char *tls_cert;        /* PEM; with tls_key: the port speaks TLS only */
    char *tls_key;
    char *tls_ca;          /* PEM bundle: client and peer certificates */
    char *tls_client_cert; /* none, request or require */
    char *log_level;
    uint64_t max_message_bytes;
    uint64_t key_cache_entries;
    uint64_t block_cache_mb;
    uint64_t group_commit_max;
    uint64_t server_threads;
    uint64_t node_id;
    char *peers;
    char *advertise;
    int join;
    char *cluster_name;
    uint64_t tick_ms;
    uint64_t election_ticks;
    uint64_t snapshot_entries;
    uint64_t audit_window_ms;
    uint64_t audit_checkpoint_entries;
    uint64_t audit_checkpoint_ms;
    char *metrics_listen;
    char *backup_dir;
    uint64_t health_max_lag;
    uint64_t retention_sweep_ms;
    uint64_t retention_offset_days;
    uint64_t request_sweep_offset_ms;
    uint64_t watch_history;
    uint64_t key_rotation_batch;
    uint64_t key_rotation_pause_ms;
    uint64_t submit_pause_ms;
    int fault_injection;
};

/* Result of parsing the command line. */
enum config_action { CONFIG_RUN, CONFIG_HELP, CONFIG_VERSION };

/* Fills @c from defaults, then the file given by --config (if any), then
 * the other flags. Errors: DOSSIER_INVALID_ARGUMENT (unknown flag or key,
 * bad value; the message names it), DOSSIER_IO (unreadable file). */
int config_load(struct config *c, int argc, char **argv,
                enum config_action *action, struct dossier_status *st);

/* Frees the strings of @c. */
void config_release(struct config *c);

/* Prints the usage text, every flag with its key, default and meaning. */
void config_usage(FILE *out, const char *prog);

#endif
