/* The node's metrics: what is counted and what is read at a scrape. */
#include "node_metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "audit_sink.h"
#include "cluster.h"
#include "crypt.h"
#include "errors.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "records.h"
#include "store.h"

struct node_metrics {
    struct node *node;
    struct metrics *reg;
    struct metrics_http *http;
    struct metrics_counter *calls;
    struct metrics_histogram *latency;
};

void node_metrics_call(struct node_metrics *m, const char *path, int code,
                       double seconds)
{
    const char *labels[2];
    if (!m)
        return;
    labels[0] = path;
    labels[1] = dossier_code_name(code);
    metrics_counter_add(m->calls, labels, 1);
    metrics_histogram_observe(m->latency, labels, seconds);
}

static void gauge(struct metrics_writer *w, const char *name,
                  const char *help, double v)
{
    metrics_write(w, name, "gauge", help, 0, NULL, NULL, v);
}

static void counter(struct metrics_writer *w, const char *name,
                    const char *help, double v)
{
    metrics_write(w, name, "counter", help, 0, NULL, NULL, v);
}

/* Raft: role, term, indexes, and each follower's lag (leader only). */
static void collect_raft(struct metrics_writer *w, struct node *n)
{
    static const char *const role_names[] = {"follower", "pre-candidate",
                                             "candidate", "leader"};
    static const char *const role_label[] = {"role"};
    static const char *const peer_label[] = {"peer"};
    struct cluster_status cs;
    const char *role;

    cluster_status(n->cluster, &cs);
    role = raft_role_name(cs.raft.role);
    for (size_t i = 0; i < sizeof(role_names) / sizeof(*role_names); i++) {
        const char *v[1] = {role_names[i]};
        metrics_write(w, "dossier_raft_role", "gauge",
                      "1 for the role this node has now", 1, role_label, v,
                      strcmp(role, role_names[i]) == 0);
    }
    gauge(w, "dossier_raft_term", "current Raft term", (double)cs.raft.hs.term);
    gauge(w, "dossier_raft_leader_id", "the leader this node knows (0: none)",
          (double)cs.raft.leader);
    gauge(w, "dossier_raft_commit_index", "highest log index known committed",
          (double)cluster_commit_index(n->cluster));
    gauge(w, "dossier_raft_applied_index",
          "highest log index applied to the store",
          (double)store_applied(n->store));
    gauge(w, "dossier_raft_last_index", "last index in this node's log",
          (double)cs.raft.last_index);
    gauge(w, "dossier_raft_first_index",
          "first index still in this node's log (older ones are compacted)",
          (double)cs.raft.first_index);
    for (size_t i = 0; i < cs.raft.n_progress; i++) {
        const struct raft_progress_status *p = &cs.raft.progress[i];
        char id[24];
        const char *v[1] = {id};
        if (p->id == cs.raft.id)
            continue;
        snprintf(id, sizeof(id), "%" PRIu64, (uint64_t)p->id);
        metrics_write(w, "dossier_raft_follower_lag_entries", "gauge",
                      "leader only: log entries a follower has yet to "
                      "acknowledge",
                      1, peer_label, v,
                      cs.raft.last_index > p->match
                          ? (double)(cs.raft.last_index - p->match)
                          : 0);
    }
    counter(w, "dossier_raft_commands_applied_total",
            "commands (one log entry each) applied since the node started",
            (double)cs.commands);
    counter(w, "dossier_raft_apply_batches_total",
            "batches of committed entries applied in one store write; "
            "commands/batches is the group-commit factor",
            (double)cs.batches);
    counter(w, "dossier_raft_read_barriers_total",
            "linearizable read barriers (ReadIndex rounds) since the start",
            (double)cs.reads);
    counter(w, "dossier_auth_catchups_total",
            "catch-ups with the leader for tokens this node did not know "
            "(one ReadIndex round each, at most one per raft tick, shared "
            "by every such call)",
            (double)cs.catchups);
    gauge(w, "dossier_peer_channels_retired",
          "channels to other nodes replaced (a TLS reload, a new address) "
          "and not freed yet: freed once no call to another node is in "
          "flight",
          (double)cs.peer_channels_retired);
    counter(w, "dossier_erasures_total",
            "subject erasures applied on this node since it started",
            (double)cs.erasures);
    gauge(w, "dossier_erasure_log_compaction_pending",
          "1 while an applied erasure's raft log entries still await "
          "compaction",
          cs.erasure_log_pending);
}

static void collect_store(struct metrics_writer *w, struct node *n)
{
    struct audit_chain chain;
    uint64_t queued, dropped;

    gauge(w, "dossier_rocksdb_sst_bytes", "bytes of all SST files",
          (double)store_property_sum(n->store, "rocksdb.total-sst-files-size"));
    gauge(w, "dossier_rocksdb_live_sst_bytes",
          "bytes of the SST files of the current version",
          (double)store_property_sum(n->store, "rocksdb.live-sst-files-size"));
    gauge(w, "dossier_rocksdb_memtable_bytes",
          "bytes in all memtables",
          (double)store_property_sum(n->store,
                                     "rocksdb.cur-size-all-mem-tables"));
    gauge(w, "dossier_rocksdb_pending_compaction_bytes",
          "bytes RocksDB estimates compaction has to rewrite",
          (double)store_property_sum(
              n->store, "rocksdb.estimate-pending-compaction-bytes"));
    gauge(w, "dossier_rocksdb_write_stopped",
          "1 while RocksDB stops writes (write stall)",
          store_property_sum(n->store, "rocksdb.is-write-stopped") > 0);
    gauge(w, "dossier_rocksdb_delayed_write_rate",
          "bytes/s RocksDB slows writes to (0: not slowed)",
          (double)store_property_sum(n->store,
                                     "rocksdb.actual-delayed-write-rate"));
    gauge(w, "dossier_rocksdb_estimated_keys",
          "keys RocksDB estimates it holds, all families",
          (double)store_property_sum(n->store, "rocksdb.estimate-num-keys"));

    {
        static const char *const state_label[] = {"state"};
        uint64_t open, executed, overdue;
        if (api_requests_count(n, records_now_ms(), &open, &executed,
                               &overdue) == 0) {
            const char *vo[1] = {"open"}, *ve[1] = {"executed"};
            metrics_write(w, "dossier_gdpr_requests", "gauge",
                          "tracked GDPR requests (dossier request) by state",
                          1, state_label, vo, (double)open);
            metrics_write(w, "dossier_gdpr_requests", "gauge",
                          "tracked GDPR requests (dossier request) by state",
                          1, state_label, ve, (double)executed);
            gauge(w, "dossier_gdpr_requests_overdue",
                  "open tracked requests past their one-month deadline",
                  (double)overdue);
        }
    }
    store_audit_head(n->store, &chain);
    gauge(w, "dossier_audit_entries", "entries in the audit chain",
          (double)chain.index);
    gauge(w, "dossier_audit_unsigned_entries",
          "entries after the last signed checkpoint",
          (double)(chain.index - chain.signed_index));
    audit_sink_stats(n->audit, &queued, &dropped);
    gauge(w, "dossier_audit_buffered_entries",
          "read and refusal entries buffered, not yet in the chain",
          (double)queued);
    counter(w, "dossier_audit_dropped_entries_total",
            "buffered entries dropped because the buffer was full",
            (double)dropped);
}

/* Master keys: the version in use, those loaded, a rotation's progress. */
static void collect_keys(struct metrics_writer *w, struct node *n)
{
    Dossier__Store__V1__KeyRotation *r = NULL;
    struct dossier_status st;
    uint32_t versions[KEYFILE_MAX_VERSIONS];
    size_t nv = crypt_kek_versions(n->crypt, versions, NULL,
                                   KEYFILE_MAX_VERSIONS);

    gauge(w, "dossier_master_key_version",
          "master key version sealing the cluster's keyset (0: no keyset "
          "yet)",
          crypt_active_version(n->crypt));
    gauge(w, "dossier_master_key_versions_loaded",
          "master key versions in this node's key file",
          (double)nv);
    gauge(w, "dossier_master_key_newest_loaded",
          "highest master key version in this node's key file",
          nv ? versions[nv - 1] : 0);
    if (store_key_rotation_get(n->store, &r, &st) != 0)
        r = NULL;
    gauge(w, "dossier_key_rotation_running",
          "1 while a master key rotation is under way",
          r && !r->done);
    gauge(w, "dossier_key_rotation_subjects",
          "subject keys the current or last rotation had to rewrap",
          r ? (double)r->subjects : 0);
    gauge(w, "dossier_key_rotation_rewrapped",
          "subject keys the current or last rotation rewrapped so far",
          r ? (double)r->rewrapped : 0);
    if (r)
        dossier__store__v1__key_rotation__free_unpacked(r, NULL);
}

static void collect(struct metrics_writer *w, void *arg)
{
    struct node *n = arg;
    const char *why;

    gauge(w, "dossier_health_serving",
          "1 when the health service answers SERVING",
          health_state(n->health, &why) == HEALTH_SERVING);
    gauge(w, "dossier_keys_ready", "1 once the cluster's keys are open",
          n->cluster && cluster_keys_ready(n->cluster));
    if (n->cluster) {
        static const char *const reason_label[] = {"reason"};
        char why[512];
        int halted = cluster_halted(n->cluster, why, sizeof(why));
        const char *v[1] = {!halted ? "none"
                            : strstr(why, "No space left") ? "disk_full"
                            : strstr(why, "orrupt") ? "corruption"
                                                     : "storage_error"};
        metrics_write(w, "dossier_node_halted", "gauge",
                      "1 once a storage failure halted this node (it serves "
                      "no data until restarted); reason: disk_full, "
                      "corruption or storage_error",
                      1, reason_label, v, halted);
        collect_raft(w, n);
    }
    if (n->store)
        collect_store(w, n);
    if (n->store && n->crypt)
        collect_keys(w, n);
}

int node_metrics_start(struct node *n, const char *listen,
                       struct node_metrics **out, char *bound, size_t cap,
                       struct dossier_status *st)
{
    static const char *const call_labels[] = {"method", "code"};
    struct node_metrics *m;
    char host[64], err[256];
    const char *colon = strrchr(listen, ':');
    char *end;
    long port;

    *out = NULL;
    if (!colon || (size_t)(colon - listen) >= sizeof(host) || colon == listen)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "--metrics-listen: '%s' is not host:port", listen);
    port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "--metrics-listen: bad port in '%s'", listen);
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    m = calloc(1, sizeof(*m));
    if (!m || !(m->reg = metrics_new())) {
        free(m);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    m->node = n;
    m->calls = metrics_counter(m->reg, "dossier_grpc_calls_total",
                               "calls answered, per method and status", 2,
                               call_labels);
    m->latency = metrics_histogram(
        m->reg, "dossier_grpc_call_seconds",
        "time from a call's arrival to its answer, per method and status", 2,
        call_labels, metrics_latency_bounds, metrics_latency_n_bounds);
    if (!m->calls || !m->latency ||
        metrics_add_collector(m->reg, collect, n) != 0) {
        node_metrics_free(m);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    m->http = metrics_http_start(m->reg, host, (int)port, err, sizeof(err));
    if (!m->http) {
        node_metrics_free(m);
        return err_set(st, DOSSIER_UNAVAILABLE, "%s", err);
    }
    snprintf(bound, cap, "%s:%d", host, metrics_http_port(m->http));
    *out = m;
    return err_ok(st);
}

void node_metrics_free(struct node_metrics *m)
{
    if (!m)
        return;
    if (m->http)
        metrics_http_stop(m->http);
    metrics_free(m->reg);
    free(m);
}
