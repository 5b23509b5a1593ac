/* The node's Raft loop: proposals, ticks, peer messages, persistence,
 * application of committed commands, ReadIndex batches, membership. */
#include "cluster.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "crypt.h"
#include "errors.h"
#include "fileutil.h"
#include "log.h"
#include "peer.h"
#include "raftio.h"
#include "store.pb-c.h"

#define DEFAULT_TICK_MS 100
#define DEFAULT_ELECTION_TICKS 10
/* A learner this close to the leader's log may be promoted. */
#define PROMOTE_LAG_MAX 64

/* A submitted command: queued, then proposed at (index, term). */
struct prop {
    uint8_t *data;
    size_t len;
    cluster_done_cb cb;
    void *arg;
    raft_index index;
    raft_term term;
    struct store_result res; /* once applied, for the answer thread */
    struct prop *next;
};

/* Runs the callbacks of applied proposals (which answer their gRPC calls)
 * on its own thread: sending an answer can wait for gRPC's completion
 * queue lock and wakes the pollers, which the Raft thread had been paying
 * for in every batch. */
struct answerer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, quit;
    struct prop *head, **tail;
};

struct read_wait {
    cluster_read_cb cb;
    void *arg;
    struct read_wait *next;
};

/* Reads that share one ReadIndex round. */
struct read_batch {
    uint64_t ctx;
    raft_index index; /* 0 until the read state arrives */
    int64_t started_ms;
    struct read_wait *waiters;
    struct read_batch *next;
};

struct in_msg {
    struct raft_msg m; /* entries owned (raftio_msg_release) */
    struct in_msg *next;
};

struct in_snap {
    char staged[4096];
    struct raft_msg m;
    struct in_snap *next;
};

enum report_kind { REPORT_UNREACHABLE, REPORT_SNAPSHOT };

struct report {
    enum report_kind kind;
    uint64_t id;
    int ok;
    struct report *next;
};

struct admin_req {
    enum cluster_admin_op op;
    uint64_t id;
    char address[CLUSTER_ADDRESS_MAX];
    cluster_read_cb cb;
    void *arg;
    raft_index wait_index; /* done once applied */
    raft_term term;        /* the term it was proposed in */
    int64_t deadline_ms;   /* transfers */
    struct admin_req *next;
};

struct cluster {
    struct store *store;
    struct crypt *crypt;
    struct raft *raft;
    struct peer_client *peers;
    uint64_t id;
    uint8_t cid[PEER_CLUSTER_ID_BYTES];
    unsigned tick_ms, election_ticks;
    size_t max_batch;
    uint64_t snapshot_entries;
    int erased; /* an erasure was applied: finish_erasure() is due */
    const char *purge_reason; /* "erasure" or "key rotation", for the log */
    /* Every erasure this node applied up to this raft index is finished
     * (compacted, raft log included): erasure reports may say so. Read by
     * any thread. */
    uint64_t erasure_finished;
    char snapshot_dir[4096];
    size_t n_initial;
    struct cluster_member *initial;
    /* The results of one applied batch, kept between batches (Raft
     * thread): no allocation per batch, and none left behind when a
     * storage failure ends the thread inside apply_committed (fatal()). */
    struct store_result *results;
    size_t results_cap;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping;
    /* A storage failure stopped the loop (fatal()); under lock, halted is
     * also read atomically. */
    int halted;
    char halt_reason[512];
    /* Inputs, under lock. */
    struct prop *in_props, **in_props_tail;
    struct read_wait *in_reads;
    struct read_wait *in_catchups; /* cluster_catch_up() */
    struct in_msg *in_msgs, **in_msgs_tail;
    struct in_snap *in_snaps;
    struct report *in_reports;
    struct admin_req *in_admin;
    int retry_keys; /* the key file was reloaded */

    struct answerer ans;
    /* Raft thread only. */
    struct prop *proposed, **proposed_tail;
    struct read_batch *batches;
    uint64_t read_ctx;
    struct admin_req *admin;
    char staged[4096]; /* snapshot stepped and awaiting install */
    int64_t next_tick_ms;
    raft_term bootstrapped_term; /* term whose leader seeded the cluster */
    uint64_t snap_seq;
    struct raft_msg *out; /* one node's messages of a ready, to send */
    size_t cap_out;
    uint64_t n_commands, n_batches, n_reads, n_erasures;
    /* Catch-ups waiting for the next round, the ticks so far, the tick in
     * which the last round started, and how many started. */
    struct read_wait *catchups;
    uint64_t n_ticks, catchup_tick, n_catchups;
    /* When the leader next looks for request ids past their TTL, and
     * how far ahead its clock runs for that (tests only). */
    int64_t next_request_sweep_ms, request_sweep_offset_ms;

    /* Read by any thread. */
    int keys_ready;
    int fast_reads;
    uint64_t commit_index;
    int is_leader;
    uint64_t leader;
    pthread_mutex_t status_lock;
    struct cluster_status status;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *raft_rc_text(int rc)
{
    switch (rc) {
    case RAFT_NOT_LEADER: return "this node is not the leader";
    case RAFT_NO_LEADER: return "no leader is elected";
    case RAFT_BUSY: return "another membership change or a leadership "
                           "transfer is in progress";
    case RAFT_INVALID: return "the change makes no sense for this membership";
    default: return "raft refused";
    }
}

/* ------------------------------------------------------------------ */
/* Inputs (any thread) */

static void wake(struct cluster *cl)
{
    pthread_cond_signal(&cl->wake);
}

int cluster_submit(struct cluster *cl, uint8_t *data, size_t len,
                   cluster_done_cb cb, void *arg)
{
    struct prop *p = calloc(1, sizeof(*p));
    if (!p) {
        free(data);
        return DOSSIER_NOMEM;
    }
    p->data = data;
    p->len = len;
    p->cb = cb;
    p->arg = arg;
    pthread_mutex_lock(&cl->lock);
    if (cl->stopping || cl->halted) {
        pthread_mutex_unlock(&cl->lock);
        free(data);
        free(p);
        return DOSSIER_UNAVAILABLE;
    }
    *cl->in_props_tail = p;
    cl->in_props_tail = &p->next;
    wake(cl);
    pthread_mutex_unlock(&cl->lock);
    return 0;
}

/* Queues a wait on @list (cl->in_reads or cl->in_catchups) for the Raft
 * loop; 1 when none is needed (fast reads); else 0, @cb called later or
 * at once on failure. */
static int queue_wait(struct cluster *cl, struct read_wait **list,
                      cluster_read_cb cb, void *arg)
{
    struct read_wait *w;
    if (__atomic_load_n(&cl->fast_reads, __ATOMIC_ACQUIRE))
        return 1;
    w = calloc(1, sizeof(*w));
    if (!w) {
        cb(arg, DOSSIER_NOMEM, "out of memory");
        return 0;
    }
    w->cb = cb;
    w->arg = arg;
    pthread_mutex_lock(&cl->lock);
    if (cl->stopping || cl->halted) {
        pthread_mutex_unlock(&cl->lock);
        free(w);
        cb(arg, DOSSIER_UNAVAILABLE, cl->halted ? "this node halted after a "
                                     "storage failure; see its log"
                                   : "the node is stopping");
        return 0;
    }
    w->next = *list;
    *list = w;
    wake(cl);
    pthread_mutex_unlock(&cl->lock);
    return 0;
}

int cluster_read_barrier(struct cluster *cl, cluster_read_cb cb, void *arg)
{
    return queue_wait(cl, &cl->in_reads, cb, arg);
}

int cluster_catch_up(struct cluster *cl, cluster_read_cb cb, void *arg)
{
    return queue_wait(cl, &cl->in_catchups, cb, arg);
}

uint64_t cluster_commit_index(struct cluster *cl)
{
    return __atomic_load_n(&cl->commit_index, __ATOMIC_ACQUIRE);
}

int cluster_is_leader(struct cluster *cl)
{
    return __atomic_load_n(&cl->is_leader, __ATOMIC_ACQUIRE);
}

int cluster_keys_ready(struct cluster *cl)
{
    return __atomic_load_n(&cl->keys_ready, __ATOMIC_ACQUIRE);
}

uint64_t cluster_leader(struct cluster *cl, char *address, size_t cap)
{
    uint64_t id = __atomic_load_n(&cl->leader, __ATOMIC_ACQUIRE);
    if (address && cap) {
        address[0] = '\0';
        if (id)
            peer_client_address(cl->peers, id, address, cap);
    }
    return id;
}

const uint8_t *cluster_id(const struct cluster *cl)
{
    return cl->cid;
}

int cluster_knows(struct cluster *cl, uint64_t id)
{
    int known = 0;
    if (id == 0)
        return 0;
    for (size_t i = 0; i < cl->n_initial; i++)
        known |= cl->initial[i].id == id;
    pthread_mutex_lock(&cl->status_lock);
    for (size_t i = 0; i < cl->status.n_members; i++)
        known |= cl->status.members[i].id == id;
    /* A node that joins knows no member until the leader's log or
     * snapshot tells it: until then any node of its cluster may talk to it
     * (the cluster name was checked). */
    if (cl->status.n_members == 0)
        known = 1;
    pthread_mutex_unlock(&cl->status_lock);
    return known;
}

int cluster_receive(struct cluster *cl, uint64_t from,
                    const char *from_address, const struct raft_msg *msgs,
                    size_t n, struct dossier_status *st)
{
    struct in_msg *head = NULL, **tail = &head;

    if (!cluster_knows(cl, from))
        return err_set(st, DOSSIER_PERMISSION_DENIED,
                       "node %" PRIu64 " is not a member of this cluster",
                       from);
    if (from_address && from_address[0] && strchr(from_address, ':'))
        peer_client_learn_address(cl->peers, from, from_address);
    for (size_t i = 0; i < n; i++) {
        struct in_msg *im;
        if (msgs[i].from != from || msgs[i].to != cl->id) {
            err_set(st, DOSSIER_INVALID_ARGUMENT,
                    "a message claims another sender or receiver");
            goto fail;
        }
        if (msgs[i].type == RAFT_MSG_SNAPSHOT) {
            /* A snapshot comes with its data, through InstallSnapshot. */
            err_set(st, DOSSIER_INVALID_ARGUMENT,
                    "a snapshot message without its data");
            goto fail;
        }
        im = calloc(1, sizeof(*im));
        if (!im)
            goto nomem;
        im->m = msgs[i];
        im->m.entries = NULL;
        im->m.n_entries = 0;
        if (msgs[i].n_entries) {
            im->m.entries = calloc(msgs[i].n_entries, sizeof(struct raft_entry));
            if (!im->m.entries) {
                free(im);
                goto nomem;
            }
            for (size_t j = 0; j < msgs[i].n_entries; j++) {
                struct raft_entry *e = &im->m.entries[j];
                *e = msgs[i].entries[j];
                e->data = malloc(e->len ? e->len : 1);
                if (!e->data) {
                    raftio_msg_release(&im->m);
                    free(im);
                    goto nomem;
                }
                if (e->len)
                    memcpy(e->data, msgs[i].entries[j].data, e->len);
                im->m.n_entries = j + 1;
            }
        }
        *tail = im;
        tail = &im->next;
    }
    pthread_mutex_lock(&cl->lock);
    if (cl->stopping || cl->halted) {
        pthread_mutex_unlock(&cl->lock);
        err_set(st, DOSSIER_UNAVAILABLE, cl->halted ? "the node halted"
                                                    : "the node is stopping");
        goto fail;
    }
    if (head) {
        *cl->in_msgs_tail = head;
        cl->in_msgs_tail = tail;
    }
    wake(cl);
    pthread_mutex_unlock(&cl->lock);
    return err_ok(st);
nomem:
    err_set(st, DOSSIER_NOMEM, "out of memory");
fail:
    while (head) {
        struct in_msg *next = head->next;
        raftio_msg_release(&head->m);
        free(head);
        head = next;
    }
    return st->code;
}

void cluster_snapshot_staging(struct cluster *cl, uint64_t from, char *out,
                              size_t cap)
{
    unsigned char r[8];
    char hex[17];
    randombytes_buf(r, sizeof(r));
    sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
    snprintf(out, cap, "%s/in-%" PRIu64 "-%s", cl->snapshot_dir, from, hex);
}

void cluster_snapshot_received(struct cluster *cl, const char *staged,
                               const struct raft_msg *msg)
{
    struct in_snap *s = calloc(1, sizeof(*s));
    if (!s) {
        fu_rmtree(staged);
        return;
    }
    snprintf(s->staged, sizeof(s->staged), "%s", staged);
    s->m = *msg;
    s->m.entries = NULL;
    s->m.n_entries = 0;
    pthread_mutex_lock(&cl->lock);
    if (cl->stopping || cl->halted) {
        pthread_mutex_unlock(&cl->lock);
        fu_rmtree(staged);
        free(s);
        return;
    }
    s->next = cl->in_snaps;
    cl->in_snaps = s;
    wake(cl);
    pthread_mutex_unlock(&cl->lock);
}

static void report_push(struct cluster *cl, enum report_kind kind,
                        uint64_t id, int ok)
{
    struct report *r = calloc(1, sizeof(*r));
    if (!r)
        return;
    r->kind = kind;
    r->id = id;
    r->ok = ok;
    pthread_mutex_lock(&cl->lock);
    r->next = cl->in_reports;
    cl->in_reports = r;
    wake(cl);
    pthread_mutex_unlock(&cl->lock);
}

static void on_unreachable(void *arg, uint64_t id)
{
    report_push(arg, REPORT_UNREACHABLE, id, 0);
}

static void on_snapshot_done(void *arg, uint64_t id, int ok)
{
    report_push(arg, REPORT_SNAPSHOT, id, ok);
}

int cluster_admin(struct cluster *cl, enum cluster_admin_op op, uint64_t id,
                  const char *address, cluster_read_cb cb, void *arg)
{
    struct admin_req *a = calloc(1, sizeof(*a));
    if (!a)
        return DOSSIER_NOMEM;
    a->op = op;
    a->id = id;
    snprintf(a->address, sizeof(a->address), "%s", address ? address : "");
    a->cb = cb;
    a->arg = arg;
    pthread_mutex_lock(&cl->lock);
    if (cl->stopping || cl->halted) {
        pthread_mutex_unlock(&cl->lock);
        free(a);
        return DOSSIER_UNAVAILABLE;
    }
    a->next = cl->in_admin;
    cl->in_admin = a;
    wake(cl);
    pthread_mutex_unlock(&cl->lock);
    return 0;
}

int cluster_forward(struct cluster *cl, const char *method,
                    const uint8_t *request, size_t len, const char *purpose,
                    const uint8_t *request_id, const char *principal,
                    unsigned role, int64_t timeout_ms,
                    cluster_forward_cb cb, void *arg)
{
    uint64_t leader = cluster_leader(cl, NULL, 0);
    if (leader == 0 || leader == cl->id)
        return DOSSIER_UNAVAILABLE;
    return peer_client_forward(cl->peers, leader, method, request, len,
                               purpose, request_id, principal, role,
                               timeout_ms, cb, arg);
}

void cluster_isolate(struct cluster *cl, const uint64_t *ids, size_t n)
{
    struct cluster_status s;
    cluster_status(cl, &s);
    for (size_t i = 0; i < s.n_members; i++)
        peer_client_block(cl->peers, s.members[i].id, 0);
    for (size_t i = 0; i < cl->n_initial; i++)
        peer_client_block(cl->peers, cl->initial[i].id, 0);
    for (size_t i = 0; i < n; i++)
        peer_client_block(cl->peers, ids[i], 1);
}

int cluster_key_status(struct cluster *cl, uint64_t id, int64_t timeout_ms,
                       Dossier__Peer__V1__KeyStatusResponse **out,
                       struct dossier_status *st)
{
    return peer_client_key_status(cl->peers, id, timeout_ms, out, st);
}

void cluster_renew_peer_channels(struct cluster *cl)
{
    peer_client_renew_channels(cl->peers);
}

void cluster_keys_reloaded(struct cluster *cl)
{
    /* The Raft thread opens the keys: a node that could not (a version
     * missing) tries again with the keys just loaded. */
    pthread_mutex_lock(&cl->lock);
    cl->retry_keys = 1;
    wake(cl);
    pthread_mutex_unlock(&cl->lock);
}

int cluster_is_isolated_from(struct cluster *cl, uint64_t id)
{
    return peer_client_blocked(cl->peers, id);
}

void cluster_status(struct cluster *cl, struct cluster_status *out)
{
    pthread_mutex_lock(&cl->status_lock);
    *out = cl->status;
    pthread_mutex_unlock(&cl->status_lock);
}

/* ------------------------------------------------------------------ */
/* Keys and members (Raft thread) */

/* Tells crypt which master key versions the replicated state uses now
 * (after a rotation began or ended), and makes peer calls present the
 * token of the version in use. 0, or WRONG_KEY when this node lacks the
 * version a rotation under way needs (st says which). */
static int refresh_versions(struct cluster *cl, struct dossier_status *st)
{
    Dossier__Store__V1__Meta *m = NULL;
    Dossier__Store__V1__KeyRotation *r = NULL;
    char token[65];
    uint32_t to = 0;
    int rc;

    if (store_meta_get(cl->store, &m, st) != 0)
        return err_ok(st);
    /* The version sealing the keyset may have moved under a snapshot. */
    if (crypt_kek_require(cl->crypt, m->kek_version, m->kek_check.data,
                          m->kek_check.len, "the cluster's keyset", st) != 0) {
        dossier__store__v1__meta__free_unpacked(m, NULL);
        return st->code;
    }
    rc = store_key_rotation_get(cl->store, &r, st);
    if (rc == 0 && !r->done) {
        to = r->to_version;
        rc = crypt_kek_require(cl->crypt, to, r->to_check.data,
                               r->to_check.len,
                               "the key rotation under way", st);
    } else {
        rc = err_ok(st);
    }
    if (rc == 0 || rc == DOSSIER_WRONG_KEY) {
        /* A key file reloaded since the checks above may have dropped a
         * version: the set reports it, under the reload's lock. */
        struct dossier_status set_st;
        int set_rc = crypt_set_versions(cl->crypt, m->kek_version, to,
                                        &set_st);
        if (rc == 0 && set_rc) {
            rc = set_rc;
            *st = set_st;
        }
        crypt_peer_token(cl->crypt, token);
        peer_client_set_token(cl->peers, token);
        sodium_memzero(token, sizeof(token));
    }
    if (r)
        dossier__store__v1__key_rotation__free_unpacked(r, NULL);
    dossier__store__v1__meta__free_unpacked(m, NULL);
    return rc;
}

static void load_keys(struct cluster *cl)
{
    Dossier__Store__V1__Meta *m = NULL;
    struct dossier_status st;

    if (cluster_keys_ready(cl)) {
        /* A snapshot may bring another version in use. */
        if (refresh_versions(cl, &st) != 0) {
            log_printf(LOG_ERROR, "%s; this node replicates but refuses to "
                       "serve data until its key file holds that version "
                       "(then SIGHUP)", st.message);
            __atomic_store_n(&cl->keys_ready, 0, __ATOMIC_RELEASE);
        }
        return;
    }
    if (store_meta_get(cl->store, &m, &st) != 0)
        return; /* not initialised yet */
    if (crypt_keyset_load(cl->crypt, m, &st) != 0 ||
        refresh_versions(cl, &st) != 0) {
        log_printf(LOG_ERROR,
                   "cannot open the cluster's keyset: %s; this node "
                   "replicates but refuses to serve data",
                   st.message);
    } else {
        __atomic_store_n(&cl->keys_ready, 1, __ATOMIC_RELEASE);
        log_printf(LOG_INFO, "cluster keyset open");
    }
    dossier__store__v1__meta__free_unpacked(m, NULL);
}

static void member_cb(void *arg, uint64_t id, const char *address)
{
    struct cluster *cl = arg;
    if (id != cl->id)
        peer_client_set_address(cl->peers, id, address);
}

static void load_members(struct cluster *cl)
{
    struct dossier_status st;
    for (size_t i = 0; i < cl->n_initial; i++)
        if (cl->initial[i].id != cl->id)
            peer_client_set_address(cl->peers, cl->initial[i].id,
                                    cl->initial[i].address);
    if (store_members(cl->store, member_cb, cl, &st) != 0)
        log_printf(LOG_WARN, "cannot read the members: %s", st.message);
}

static int pack_command(const Dossier__Store__V1__Command *cmd, uint8_t **out,
                        size_t *len)
{
    *len = dossier__store__v1__command__get_packed_size(cmd);
    *out = malloc(*len ? *len : 1);
    if (!*out)
        return DOSSIER_NOMEM;
    dossier__store__v1__command__pack(cmd, *out);
    return 0;
}

static void propose_internal(struct cluster *cl,
                             const Dossier__Store__V1__Command *cmd)
{
    uint8_t *buf;
    size_t len;
    if (pack_command(cmd, &buf, &len) == 0) {
        raft_propose(cl->raft, buf, len, NULL, NULL);
        free(buf);
    }
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct members_seen {
    const struct cluster_member *want;
    size_t n_want, n_seen;
};

static void count_member(void *arg, uint64_t id, const char *address)
{
    struct members_seen *m = arg;
    for (size_t i = 0; i < m->n_want; i++)
        if (m->want[i].id == id && strcmp(m->want[i].address, address) == 0)
            m->n_seen++;
}

/* 1 when every initial member's address is already replicated. */
static int members_recorded(struct cluster *cl)
{
    struct members_seen m = {cl->initial, cl->n_initial, 0};
    struct dossier_status st;
    if (store_members(cl->store, count_member, &m, &st) != 0)
        return 0;
    return m.n_seen == cl->n_initial;
}

/* A new leader seeds what the cluster lacks: the keyset (first leader of a
 * new cluster) and the addresses of the initial members. Proposing twice
 * is harmless: applying keeps the first keyset. */
static void leader_bootstrap(struct cluster *cl)
{
    Dossier__Store__V1__Meta *existing = NULL;
    struct dossier_status st;
    raft_term term = raft_term_now(cl->raft);

    if (cl->bootstrapped_term == term)
        return;
    cl->bootstrapped_term = term;
    if (store_meta_get(cl->store, &existing, &st) == DOSSIER_NOT_FOUND) {
        Dossier__Store__V1__Meta meta = DOSSIER__STORE__V1__META__INIT;
        Dossier__Store__V1__InitKeysetOp op =
            DOSSIER__STORE__V1__INIT_KEYSET_OP__INIT;
        Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
        meta.format = STORE_FORMAT;
        meta.created_at_ms = wall_ms();
        if (crypt_keyset_create(cl->crypt, &meta, &st) == 0) {
            op.meta = &meta;
            cmd.time_ms = meta.created_at_ms;
            cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_INIT_KEYSET;
            cmd.init_keyset = &op;
            propose_internal(cl, &cmd);
            free(meta.cluster_id.data);
            free(meta.kek_check.data);
            free(meta.sealed_keyset.data);
            log_printf(LOG_INFO, "proposed the cluster's keyset");
        } else {
            log_printf(LOG_ERROR, "cannot make a keyset: %s", st.message);
        }
    } else if (existing) {
        dossier__store__v1__meta__free_unpacked(existing, NULL);
    }
    if (members_recorded(cl))
        return;
    for (size_t i = 0; i < cl->n_initial; i++) {
        Dossier__Store__V1__SetMemberOp op =
            DOSSIER__STORE__V1__SET_MEMBER_OP__INIT;
        Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
        op.id = cl->initial[i].id;
        op.address = cl->initial[i].address;
        cmd.time_ms = wall_ms();
        cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_SET_MEMBER;
        cmd.set_member = &op;
        propose_internal(cl, &cmd);
    }
}

/* How often the leader looks for request ids kept past their TTL. */
#define REQUEST_SWEEP_MS 1000

/* The leader sweeps the request ids of past writes that wait past their
 * TTL: each write expires a few (store_apply.c), which keeps up while
 * writes flow, but after a burst (a bulk load) the rest would wait for
 * later writes, each then doing the deletions of several. One sweep a
 * second at most, STORE_REQUEST_SWEEP_MAX ids each, and only when ids
 * older than the TTL and a sweep period are still kept. */
static void leader_expire_requests(struct cluster *cl, int64_t now)
{
    Dossier__Store__V1__RequestExpireOp op =
        DOSSIER__STORE__V1__REQUEST_EXPIRE_OP__INIT;
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;

    if (now < cl->next_request_sweep_ms)
        return;
    cl->next_request_sweep_ms = now + REQUEST_SWEEP_MS;
    if (!cluster_is_leader(cl))
        return;
    cmd.time_ms = wall_ms() + cl->request_sweep_offset_ms;
    if (!store_requests_kept_before(
            cl->store, cmd.time_ms - STORE_REQUEST_TTL_MS - REQUEST_SWEEP_MS))
        return;
    op.limit = STORE_REQUEST_SWEEP_MAX;
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_REQUEST_EXPIRE;
    cmd.request_expire = &op;
    propose_internal(cl, &cmd);
}

/* ------------------------------------------------------------------ */
/* Proposals and their outcomes (Raft thread) */

static void prop_fail(struct prop *p, int code, const char *message)
{
    struct store_result res;
    memset(&res, 0, sizeof(res));
    err_set(&res.status, code, "%s", message);
    p->cb(p->arg, &res);
    free(p->data);
    free(p);
}

static void not_leader_message(struct cluster *cl, char *out, size_t cap)
{
    char addr[CLUSTER_ADDRESS_MAX];
    uint64_t leader = cluster_leader(cl, addr, sizeof(addr));
    if (leader)
        snprintf(out, cap, "this node is not the leader; node %" PRIu64
                 " at %s is", leader, addr[0] ? addr : "?");
    else
        snprintf(out, cap, "no leader is elected yet; retry shortly");
}

static void propose_all(struct cluster *cl, struct prop *list)
{
    char msg[CLUSTER_ADDRESS_MAX + 128];
    while (list) {
        struct prop *p = list;
        int rc;
        list = p->next;
        p->next = NULL;
        rc = raft_propose(cl->raft, p->data, p->len, &p->index, &p->term);
        if (rc != RAFT_OK) {
            not_leader_message(cl, msg, sizeof(msg));
            prop_fail(p, DOSSIER_UNAVAILABLE,
                      rc == RAFT_BUSY ? "leadership is being handed over; "
                                        "retry shortly"
                                      : msg);
            continue;
        }
        free(p->data);
        p->data = NULL;
        *cl->proposed_tail = p;
        cl->proposed_tail = &p->next;
    }
}

/* Runs the callbacks of the applied proposals @list and frees them. */
static void answer_list(struct prop *list)
{
    while (list) {
        struct prop *p = list;
        list = p->next;
        p->cb(p->arg, &p->res);
        free(p);
    }
}

static void *answerer_main(void *arg)
{
    struct answerer *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        struct prop *list;
        while (!a->head && !a->quit)
            pthread_cond_wait(&a->cv, &a->mu);
        if (!a->head)
            break; /* quitting, and nothing left to answer */
        list = a->head;
        a->head = NULL;
        a->tail = &a->head;
        pthread_mutex_unlock(&a->mu);
        answer_list(list);
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* Without its thread (pthread_create failed), the Raft thread answers. */
static void answerer_init(struct answerer *a)
{
    memset(a, 0, sizeof(*a));
    a->tail = &a->head;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    a->started = pthread_create(&a->thread, NULL, answerer_main, a) == 0;
    if (!a->started)
        log_printf(LOG_WARN, "no answer thread: the Raft thread answers "
                   "applied writes itself");
}

/* Answers what is queued, then stops the thread. */
static void answerer_stop(struct answerer *a)
{
    if (a->started) {
        pthread_mutex_lock(&a->mu);
        a->quit = 1;
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->thread, NULL);
        a->started = 0;
    }
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
}

/* Hands the applied proposals @list (linked by next) to the answer
 * thread, or answers them here without one. */
static void answerer_give(struct answerer *a, struct prop *list,
                          struct prop **last)
{
    if (!list)
        return;
    if (!a->started) {
        answer_list(list);
        return;
    }
    pthread_mutex_lock(&a->mu);
    *a->tail = list;
    a->tail = &(*last)->next;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* Answers the proposals whose index the state machine has reached: the
 * command at that index is ours if its term is the one we proposed in. */
static void settle_proposals(struct cluster *cl, const struct raft_entry *ents,
                             const struct store_result *results, size_t n)
{
    raft_index applied = store_applied(cl->store);
    struct prop *done = NULL, *last = NULL;
    while (cl->proposed && cl->proposed->index <= applied) {
        struct prop *p = cl->proposed;
        const struct store_result *res = NULL;
        cl->proposed = p->next;
        if (!cl->proposed)
            cl->proposed_tail = &cl->proposed;
        /* The committed entries are contiguous. */
        if (n && p->index >= ents[0].index && p->index - ents[0].index < n &&
            ents[p->index - ents[0].index].term == p->term)
            res = &results[p->index - ents[0].index];
        if (res) {
            p->res = *res;
            p->next = NULL;
            if (last)
                last->next = p;
            else
                done = p;
            last = p;
        } else {
            prop_fail(p, DOSSIER_UNAVAILABLE,
                      "leadership changed before the write committed: it "
                      "was not applied (or its outcome is unknown); retry "
                      "with the same request id");
        }
    }
    answerer_give(&cl->ans, done, &last);
}

/* ------------------------------------------------------------------ */
/* Reads (Raft thread) */

static void reads_fail(struct read_wait *w, int code, const char *message)
{
    while (w) {
        struct read_wait *next = w->next;
        w->cb(w->arg, code, message);
        free(w);
        w = next;
    }
}

static void reads_start(struct cluster *cl, struct read_wait *w)
{
    struct read_batch *b;
    int rc;
    char msg[CLUSTER_ADDRESS_MAX + 128];

    if (!w)
        return;
    if (!cluster_keys_ready(cl)) {
        reads_fail(w, DOSSIER_UNAVAILABLE,
                   "the cluster's keys are not open on this node yet");
        return;
    }
    b = calloc(1, sizeof(*b));
    if (!b) {
        reads_fail(w, DOSSIER_NOMEM, "out of memory");
        return;
    }
    b->ctx = ++cl->read_ctx;
    rc = raft_read_index(cl->raft, b->ctx);
    if (rc != RAFT_OK) {
        free(b);
        not_leader_message(cl, msg, sizeof(msg));
        reads_fail(w, DOSSIER_UNAVAILABLE, msg);
        return;
    }
    b->started_ms = now_ms();
    b->waiters = w;
    b->next = cl->batches;
    cl->batches = b;
    cl->n_reads++;
}

/* Takes @in (arrived catch-ups) and starts one round for every catch-up
 * waiting, unless a round started in this tick already: those wait for
 * the next tick. */
static void catchups_start(struct cluster *cl, struct read_wait *in)
{
    while (in) {
        struct read_wait *next = in->next;
        in->next = cl->catchups;
        cl->catchups = in;
        in = next;
    }
    if (!cl->catchups ||
        (cl->n_catchups && cl->catchup_tick == cl->n_ticks))
        return;
    cl->catchup_tick = cl->n_ticks;
    cl->n_catchups++;
    in = cl->catchups;
    cl->catchups = NULL;
    reads_start(cl, in);
}

/* Runs the reads whose index is applied; fails those that waited too
 * long for a leader to answer. */
static void reads_settle(struct cluster *cl)
{
    raft_index applied = store_applied(cl->store);
    int64_t limit = now_ms() - 3 * (int64_t)cl->tick_ms * cl->election_ticks;
    struct read_batch **pp = &cl->batches;

    while (*pp) {
        struct read_batch *b = *pp;
        if (b->index && b->index <= applied) {
            *pp = b->next;
            reads_fail(b->waiters, 0, "");
            free(b);
        } else if (!b->index && b->started_ms < limit) {
            *pp = b->next;
            reads_fail(b->waiters, DOSSIER_UNAVAILABLE,
                       "no leader confirmed the read in time; retry");
            free(b);
        } else {
            pp = &b->next;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Membership (Raft thread) */

static void admin_done(struct admin_req *a, int code, const char *message)
{
    a->cb(a->arg, code, message);
    free(a);
}

static int conf_has(const raft_id *ids, size_t n, raft_id id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return 1;
    return 0;
}

static void admin_start(struct cluster *cl, struct admin_req *a)
{
    struct raft_conf_change cc = {0, a->id};
    struct raft_status rs;
    raft_index idx = 0;
    int rc;

    if (!cluster_is_leader(cl))
        return admin_done(a, DOSSIER_UNAVAILABLE, "this node is not the leader");
    raft_status(cl->raft, &rs);
    switch (a->op) {
    case CLUSTER_ADD: {
        Dossier__Store__V1__SetMemberOp op =
            DOSSIER__STORE__V1__SET_MEMBER_OP__INIT;
        Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
        if (!a->address[0])
            return admin_done(a, DOSSIER_INVALID_ARGUMENT,
                              "a new node needs an address");
        /* A member's address is never rewritten here: that would cut it
         * off. Moving a node means removing it and adding it again. */
        if (conf_has(rs.conf.voters, rs.conf.n_voters, a->id) ||
            conf_has(rs.conf.learners, rs.conf.n_learners, a->id))
            return admin_done(a, DOSSIER_ALREADY_EXISTS,
                              "that node id is already a member; remove "
                              "it first to give it a new address");
        /* Its address first: by the time the membership change applies,
         * every node knows where the learner listens. Should the change be
         * refused (another change pending), the address recorded for a
         * non-member harms nothing. */
        op.id = a->id;
        op.address = a->address;
        cmd.time_ms = wall_ms();
        cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_SET_MEMBER;
        cmd.set_member = &op;
        propose_internal(cl, &cmd);
        peer_client_set_address(cl->peers, a->id, a->address);
        cc.op = RAFT_CONF_ADD_LEARNER;
        rc = raft_propose_conf_change(cl->raft, &cc, &idx);
        break;
    }
    case CLUSTER_PROMOTE:
        if (!conf_has(rs.conf.learners, rs.conf.n_learners, a->id))
            return admin_done(a, DOSSIER_FAILED_PRECONDITION,
                              "that node is not a learner of this cluster");
        /* Only a learner that answers and holds nearly the whole log:
         * a voter that cannot vote could cost the cluster its quorum. */
        for (size_t i = 0; i < rs.n_progress; i++)
            if (rs.progress[i].id == a->id &&
                (!rs.progress[i].recent_active || rs.progress[i].match == 0 ||
                 rs.progress[i].match + PROMOTE_LAG_MAX < rs.last_index))
                return admin_done(a, DOSSIER_FAILED_PRECONDITION,
                                  "the learner is not answering or still "
                                  "catching up; promote it once it is "
                                  "active and its log is close to the "
                                  "leader's (see cluster status)");
        cc.op = RAFT_CONF_PROMOTE;
        rc = raft_propose_conf_change(cl->raft, &cc, &idx);
        break;
    case CLUSTER_REMOVE:
        cc.op = RAFT_CONF_REMOVE;
        rc = raft_propose_conf_change(cl->raft, &cc, &idx);
        break;
    case CLUSTER_TRANSFER:
        if (!conf_has(rs.conf.voters, rs.conf.n_voters, a->id))
            return admin_done(a, DOSSIER_FAILED_PRECONDITION,
                              "leadership goes only to a voter of this "
                              "cluster");
        rc = raft_transfer_leader(cl->raft, a->id);
        a->deadline_ms = now_ms() + 3 * (int64_t)cl->tick_ms *
                                        cl->election_ticks;
        break;
    default:
        rc = RAFT_INVALID;
    }
    if (rc != RAFT_OK)
        return admin_done(a,
                          rc == RAFT_BUSY ? DOSSIER_FAILED_PRECONDITION
                          : rc == RAFT_NOT_LEADER || rc == RAFT_NO_LEADER
                              ? DOSSIER_UNAVAILABLE
                              : DOSSIER_INVALID_ARGUMENT,
                          raft_rc_text(rc));
    a->wait_index = idx;
    a->term = raft_term_now(cl->raft);
    a->next = cl->admin;
    cl->admin = a;
}

static void admin_settle(struct cluster *cl)
{
    struct admin_req **pp = &cl->admin;
    raft_index applied = store_applied(cl->store);
    while (*pp) {
        struct admin_req *a = *pp;
        int done = 0, code = 0;
        const char *msg = "";
        if (a->op == CLUSTER_TRANSFER) {
            if (raft_leader(cl->raft) == a->id) {
                done = 1;
            } else if (now_ms() > a->deadline_ms) {
                done = 1;
                code = DOSSIER_UNAVAILABLE;
                msg = "the transfer did not complete in time";
            }
        } else if (applied >= a->wait_index) {
            /* Applied: ours only if the entry there is of our term (a new
             * leader may have put another entry at that index). */
            raft_term t = 0;
            done = 1;
            if (raft_term_now(cl->raft) != a->term &&
                (raft_term_at(cl->raft, a->wait_index, &t) != RAFT_OK ||
                 t != a->term)) {
                code = DOSSIER_UNAVAILABLE;
                msg = "leadership changed before the change committed: "
                      "check cluster status";
            }
        } else if (!cluster_is_leader(cl)) {
            done = 1;
            code = DOSSIER_UNAVAILABLE;
            msg = "leadership changed: check cluster status";
        }
        if (done) {
            *pp = a->next;
            admin_done(a, code, msg);
        } else {
            pp = &a->next;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Readies (Raft thread) */

static void fail_pending(struct cluster *cl, const char *why);

/* Persisting Raft state or applying committed commands failed (a full
 * disk, an I/O error, corruption): going on could lose or reorder
 * acknowledged writes. The loop halts here for good: everything pending
 * is answered UNAVAILABLE, the node refuses data calls and reports
 * NOT_SERVING and dossier_node_halted, and keeps its process up so that
 * operators see why; a restart once the cause is fixed recovers from what
 * is on disk. Never returns. */
static void fatal(struct cluster *cl, const char *what,
                  const struct dossier_status *st)
{
    log_printf(LOG_ERROR, "halted: %s: %s; this node serves no data until "
               "it is restarted once the cause is fixed", what, st->message);
    fprintf(stderr, "dossierd: halted: %s: %s\n", what, st->message);
    pthread_mutex_lock(&cl->lock);
    snprintf(cl->halt_reason, sizeof(cl->halt_reason), "%.100s: %.400s", what,
             st->message);
    __atomic_store_n(&cl->halted, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&cl->lock);
    __atomic_store_n(&cl->fast_reads, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&cl->is_leader, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&cl->leader, 0, __ATOMIC_RELEASE);
    {
        char why[700];
        snprintf(why, sizeof(why),
                 "node %llu halted after a storage failure and serves no "
                 "data until it is restarted (%s); use another node",
                 (unsigned long long)cl->id, cl->halt_reason);
        fail_pending(cl, why);
    }
    pthread_mutex_lock(&cl->lock);
    while (!cl->stopping)
        pthread_cond_wait(&cl->wake, &cl->lock);
    pthread_mutex_unlock(&cl->lock);
    pthread_exit(NULL);
}

int cluster_halted(struct cluster *cl, char *why, size_t cap)
{
    int h = __atomic_load_n(&cl->halted, __ATOMIC_ACQUIRE);
    if (h && why && cap) {
        pthread_mutex_lock(&cl->lock);
        snprintf(why, cap, "%s", cl->halt_reason);
        pthread_mutex_unlock(&cl->lock);
    }
    return h;
}

static void install_snapshot(struct cluster *cl, const struct raft_ready *rd)
{
    struct raftio_install in;
    struct dossier_status st;

    if (!cl->staged[0]) {
        err_set(&st, DOSSIER_INTERNAL, "no staged snapshot data");
        fatal(cl, "installing a snapshot", &st);
    }
    in.hs = rd->hs;
    in.meta = rd->snapshot;
    if (store_install(cl->store, cl->staged, raftio_prepare_install, &in,
                      &st) != 0)
        fatal(cl, "installing a snapshot", &st);
    cl->staged[0] = '\0';
    crypt_cache_clear(cl->crypt);
    load_keys(cl);
    load_members(cl);
    log_printf(LOG_INFO, "installed a snapshot at index %" PRIu64,
               rd->snapshot.index);
    /* The whole database is the leader's now, and this node's old files
     * are gone. The leader may have taken it before finishing an erasure
     * (its raft log still held the subject's entries): store_install()
     * compacted the copy's raft log away before swapping it in, so every
     * erasure up to the snapshot is finished here too. */
    if (!cl->erased &&
        rd->snapshot.index > __atomic_load_n(&cl->erasure_finished,
                                             __ATOMIC_ACQUIRE))
        __atomic_store_n(&cl->erasure_finished, rd->snapshot.index,
                         __ATOMIC_RELEASE);
}

/* 1 when a message before @i in @rd goes to the same node (and so was
 * sent with those). */
static int sent_before(const struct raft_ready *rd, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (rd->msgs[j].to == rd->msgs[i].to &&
            rd->msgs[j].type != RAFT_MSG_SNAPSHOT)
            return 1;
    return 0;
}

/* Checkpoints the state applied so far and streams it to the node @m is
 * for. */
static void send_snapshot(struct cluster *cl, const struct raft_msg *m)
{
    char dir[4200];
    struct raft_msg sm = *m;
    struct dossier_status st;
    int64_t t0 = now_ms();

    snprintf(dir, sizeof(dir), "%s/out-%" PRIu64 "-%" PRIu64,
             cl->snapshot_dir, m->to, ++cl->snap_seq);
    fu_rmtree(dir);
    /* The checkpoint is the state applied so far, which is what
     * raft_snapshot_at_applied describes: this ready's committed entries
     * are applied after the messages are sent. */
    raft_snapshot_at_applied(cl->raft, &sm.snapshot);
    if (store_checkpoint(cl->store, dir, &st) != 0) {
        log_printf(LOG_WARN, "cannot make a snapshot for node %" PRIu64
                   ": %s", m->to, st.message);
        fu_rmtree(dir);
        on_snapshot_done(cl, m->to, 0);
        return;
    }
    log_printf(LOG_INFO, "sending a snapshot at index %" PRIu64
               " to node %" PRIu64 " (checkpoint made in %" PRId64 " ms)",
               sm.snapshot.index, m->to, now_ms() - t0);
    peer_client_send_snapshot(cl->peers, m->to, dir, &sm);
}

static void send_messages(struct cluster *cl, const struct raft_ready *rd)
{
    for (size_t i = 0; i < rd->n_msgs; i++)
        if (rd->msgs[i].type == RAFT_MSG_SNAPSHOT)
            send_snapshot(cl, &rd->msgs[i]);
    if (rd->n_msgs > cl->cap_out) {
        struct raft_msg *p = realloc(cl->out, rd->n_msgs * sizeof(*p));
        if (!p)
            return; /* lost, as on a network: Raft sends again */
        cl->out = p;
        cl->cap_out = rd->n_msgs;
    }
    /* One call per node with all of its messages, in their order: a turn's
     * appends and heartbeats to two followers come out interleaved, and
     * each call costs far more than a message in it. Messages to
     * different nodes have no order between them. */
    for (size_t i = 0; i < rd->n_msgs; i++) {
        const struct raft_msg *m = &rd->msgs[i];
        size_t k = 0;
        if (m->type == RAFT_MSG_SNAPSHOT || sent_before(rd, i))
            continue;
        for (size_t j = i; j < rd->n_msgs; j++)
            if (rd->msgs[j].to == m->to &&
                rd->msgs[j].type != RAFT_MSG_SNAPSHOT)
                cl->out[k++] = rd->msgs[j];
        peer_client_send(cl->peers, m->to, cl->out, k);
    }
}

static void apply_committed(struct cluster *cl, const struct raft_ready *rd)
{
    struct store_batch *b;
    struct store_result *results;
    struct dossier_status st;
    unsigned effects;
    int rc;

    if (rd->n_committed == 0)
        return;
    if (rd->n_committed > cl->results_cap) {
        results = realloc(cl->results, rd->n_committed * sizeof(*results));
        if (results) {
            cl->results = results;
            cl->results_cap = rd->n_committed;
        }
    }
    results = cl->results;
    b = store_batch_begin(cl->store);
    if (rd->n_committed > cl->results_cap || !b) {
        err_set(&st, DOSSIER_NOMEM, "out of memory");
        fatal(cl, "applying committed commands", &st);
    }
    memset(results, 0, rd->n_committed * sizeof(*results));
    for (size_t i = 0; i < rd->n_committed; i++) {
        const struct raft_entry *e = &rd->committed[i];
        Dossier__Store__V1__Command *cmd;
        if (e->type != RAFT_ENTRY_NORMAL || e->len == 0)
            continue; /* membership changes: the core applies them */
        cmd = dossier__store__v1__command__unpack(NULL, e->len, e->data);
        if (!cmd) {
            /* Every replica holds the same bytes, so every one skips the
             * entry alike; but its proposer loses the write, and an
             * operator must hear of it (no content: only where). */
            log_printf(LOG_ERROR, "committed raft entry %" PRIu64 " (term %"
                       PRIu64 ", %zu bytes) does not decode as a command: "
                       "not applied, its proposer is told CORRUPT",
                       e->index, e->term, e->len);
            err_set(&results[i].status, DOSSIER_CORRUPT,
                    "undecodable command");
            continue;
        }
        store_batch_set_applied(b, e->index);
        rc = store_apply(b, cmd, &results[i]);
        dossier__store__v1__command__free_unpacked(cmd, NULL);
        /* A failing disk or memory is this node's, not the command's: a
         * result from it would make this replica differ from the others. */
        if (rc == DOSSIER_IO || rc == DOSSIER_NOMEM)
            fatal(cl, "applying a committed command", &results[i].status);
        cl->n_commands++;
    }
    store_batch_set_applied(b, rd->committed[rd->n_committed - 1].index);
    effects = store_batch_effects(b);
    /* Not synced: the log entries are durable, and a restart applies
     * again whatever this write lost. */
    if (store_batch_commit(b, 0, &st) != 0)
        fatal(cl, "applying committed commands", &st);
    cl->n_batches++;
    if (effects & STORE_EFFECT_KEYSET)
        load_keys(cl);
    if (effects & STORE_EFFECT_KEYS) {
        /* Before the callbacks: a write retried because a rotation began
         * must be sealed again under the new version. */
        if (refresh_versions(cl, &st) != 0) {
            log_printf(LOG_ERROR, "%s; this node replicates but refuses to "
                       "serve data until its key file holds that version "
                       "(then SIGHUP)", st.message);
            __atomic_store_n(&cl->keys_ready, 0, __ATOMIC_RELEASE);
        }
    }
    if (effects & STORE_EFFECT_ROTATED) {
        /* No wrap under the old master key may stay on disk: the families
         * are rewritten now, the raft log that carried old wraps is
         * compacted and the database reopened next (finish_erasure). */
        int64_t t0 = now_ms();
        if (store_rotation_purge(cl->store, &st) != 0)
            fatal(cl, "compacting after a key rotation", &st);
        log_printf(LOG_INFO, "key rotation finished: master key version %u "
                   "in use; old wraps compacted away in %" PRId64 " ms",
                   crypt_active_version(cl->crypt), now_ms() - t0);
        cl->erased = 1;
        if (!(effects & STORE_EFFECT_ERASED))
            cl->purge_reason = "key rotation";
    }
    if (effects & STORE_EFFECT_MEMBERS)
        load_members(cl);
    if (effects & STORE_EFFECT_SUBJECT_KEYS)
        crypt_cache_clear(cl->crypt); /* merged subjects' keys went */
    if (effects & STORE_EFFECT_ERASED) {
        /* Before the answer: the erased rows leave the SST files and the
         * WAL. The raft log follows once the core has advanced. */
        int64_t t0 = now_ms();
        if (store_erase_finish(cl->store, &st) != 0)
            fatal(cl, "compacting after an erasure", &st);
        log_printf(LOG_INFO, "erasure: erased ranges compacted in %" PRId64
                   " ms", now_ms() - t0);
        /* No unwrapped copy of an erased key may stay in memory. */
        crypt_cache_clear(cl->crypt);
        cl->erased = 1;
        cl->purge_reason = "erasure";
        cl->n_erasures++;
    }
    settle_proposals(cl, rd->committed, results, rd->n_committed);
}

static void handle_ready(struct cluster *cl)
{
    struct raft_ready rd;
    struct dossier_status st;

    raft_ready(cl->raft, &rd);
    /* A leader's appends leave before its own write is synced, so the
     * followers' writes overlap it (raft.h, send_first). */
    if (rd.send_first)
        send_messages(cl, &rd);
    if (rd.has_snapshot)
        install_snapshot(cl, &rd);
    if (raftio_save(cl->store, &rd, &st) != 0)
        fatal(cl, "persisting raft state", &st);
    if (!rd.send_first)
        send_messages(cl, &rd);
    apply_committed(cl, &rd);
    for (size_t i = 0; i < rd.n_reads; i++)
        for (struct read_batch *b = cl->batches; b; b = b->next)
            if (b->ctx == rd.reads[i].context)
                b->index = rd.reads[i].index;
    if (rd.soft_changed) {
        log_printf(LOG_INFO, "node %" PRIu64 " is %s in term %" PRIu64
                   "; leader %" PRIu64,
                   cl->id, raft_role_name(rd.role), rd.hs.term, rd.leader);
        __atomic_store_n(&cl->leader, rd.leader, __ATOMIC_RELEASE);
        __atomic_store_n(&cl->is_leader, rd.role == RAFT_LEADER,
                         __ATOMIC_RELEASE);
    }
    raft_advance(cl->raft, &rd);
    if (rd.soft_changed && rd.role == RAFT_LEADER)
        leader_bootstrap(cl);
}

/* Collects the pseudonyms of the ledger rows ("e" + sp), in key order. */
struct ledger_keys {
    uint8_t (*sps)[STORE_SP_BYTES];
    size_t cap, *n;
};

static int ledger_key_cb(void *arg, const uint8_t *key, size_t klen,
                         const uint8_t *val, size_t vlen)
{
    struct ledger_keys *l = arg;
    (void)val;
    (void)vlen;
    if (klen != 1 + STORE_SP_BYTES)
        return DOSSIER_CORRUPT;
    if (*l->n == l->cap)
        return 1; /* a row written since the first scan: next start */
    memcpy(l->sps[(*l->n)++], key + 1, STORE_SP_BYTES);
    return 0;
}

/* After an erasure (or a key rotation): the raft log still holds the
 * subject's sealed writes and wrapped data key (or the old wraps), so it
 * is compacted up to what was applied, at once, whoever still needs those
 * entries (a follower behind gets a
 * snapshot instead), and the store then compacts the erased ranges. */
static void finish_erasure(struct cluster *cl)
{
    struct raft_snapshot_meta meta;
    struct dossier_status st;

    cl->erased = 0;
    raft_snapshot_at_applied(cl->raft, &meta);
    if (meta.index == 0)
        return;
    if (raftio_compact(cl->store, &meta, &st) != 0) {
        log_printf(LOG_WARN, "erasure: cannot compact the raft log: %s",
                   st.message);
        return;
    }
    raft_compact(cl->raft, meta.index);
    if (store_compact_raft_log(cl->store, &st) != 0)
        fatal(cl, "reopening the database after an erasure", &st);
    log_printf(LOG_INFO, "%s: raft log compacted through %" PRIu64,
               cl->purge_reason, meta.index);
    __atomic_store_n(&cl->erasure_finished, meta.index, __ATOMIC_RELEASE);
}

uint64_t cluster_erasures_finished(struct cluster *cl)
{
    return __atomic_load_n(&cl->erasure_finished, __ATOMIC_ACQUIRE);
}

/* At start: erasures in the ledger this node has not reported finishing
 * may not be finished (a crash between applying one and compacting), so
 * they are finished again before they are reported: their ranges and the
 * erased families are compacted now, the raft log on the first turn of
 * the loop. Returns how many; -1 with @st set on failure. */
static long refinish_erasures(struct cluster *cl, struct dossier_status *st)
{
    Dossier__Store__V1__ErasureRecord **rows;
    uint8_t (*sps)[STORE_SP_BYTES] = NULL;
    size_t n = 0, k = 0;
    long pending = 0;
    int rc;

    rc = store_scan_messages(cl->store, STORE_POLICY, (const uint8_t *)"e", 1,
                             &dossier__store__v1__erasure_record__descriptor,
                             (ProtobufCMessage ***)&rows, &n, st);
    if (rc)
        return -1;
    /* The pseudonyms are the keys: read them again beside the rows. */
    if (n && !(sps = calloc(n, sizeof(*sps)))) {
        store_messages_free((ProtobufCMessage **)rows, n);
        err_set(st, DOSSIER_NOMEM, "out of memory");
        return -1;
    }
    rc = store_scan(cl->store, STORE_POLICY, (const uint8_t *)"e", 1, NULL, 0,
                    ledger_key_cb, &(struct ledger_keys){sps, n, &k}, st);
    for (size_t i = 0; rc == 0 && i < n && i < k; i++) {
        int listed = 0;
        for (size_t j = 0; j < rows[i]->n_completed; j++)
            listed |= rows[i]->completed[j]->node_id == cl->id;
        if (listed)
            continue;
        if (store_erase_mark(cl->store, sps[i]) != 0) {
            rc = err_set(st, DOSSIER_NOMEM, "out of memory");
            break;
        }
        pending++;
    }
    store_messages_free((ProtobufCMessage **)rows, n);
    free(sps);
    if (rc)
        return -1;
    if (pending && store_erase_finish(cl->store, st) != 0)
        return -1;
    return pending;
}

/* Compacts the log once it holds many applied entries. */
static void maybe_compact(struct cluster *cl)
{
    struct raft_status rs;
    struct raft_snapshot_meta meta;
    struct dossier_status st;
    raft_index to;

    if (cl->erased) {
        finish_erasure(cl);
        return;
    }
    raft_status(cl->raft, &rs);
    if (rs.applied < rs.first_index + cl->snapshot_entries)
        return;
    /* The newest half of the budget stays: a follower a little behind (a
     * restart, a pause, a burst it is slower at) catches up from the log
     * instead of needing a whole snapshot, which costs a checkpoint and a
     * stream of the database, and under a sustained load left a slower
     * follower installing one snapshot after another (etcd keeps such a
     * tail too). */
    to = rs.applied - cl->snapshot_entries / 2;
    /* A follower that answers but lacks entries the compaction drops
     * would need a snapshot: wait for it, unless the log has grown to
     * twice its budget. */
    if (rs.applied < rs.first_index + 2 * cl->snapshot_entries)
        for (size_t i = 0; i < rs.n_progress; i++)
            if (rs.progress[i].id != cl->id && rs.progress[i].recent_active &&
                rs.progress[i].match < to)
                return;
    if (raft_compact_meta(cl->raft, to, &meta) != RAFT_OK)
        return;
    if (raftio_compact(cl->store, &meta, &st) != 0) {
        log_printf(LOG_WARN, "cannot compact the raft log: %s", st.message);
        return;
    }
    raft_compact(cl->raft, to);
}

static void update_status(struct cluster *cl)
{
    struct cluster_status s;
    memset(&s, 0, sizeof(s));
    raft_status(cl->raft, &s.raft);
    s.store_applied = store_applied(cl->store);
    s.commands = cl->n_commands;
    s.batches = cl->n_batches;
    s.reads = cl->n_reads;
    s.catchups = cl->n_catchups;
    s.peer_channels_retired = peer_client_retired(cl->peers);
    s.erasures = cl->n_erasures;
    s.erasure_log_pending = cl->erased;
    for (int pass = 0; pass < 2; pass++) {
        const raft_id *ids = pass ? s.raft.conf.learners : s.raft.conf.voters;
        size_t n = pass ? s.raft.conf.n_learners : s.raft.conf.n_voters;
        for (size_t i = 0; i < n; i++) {
            struct cluster_member *m = &s.members[s.n_members++];
            m->id = ids[i];
            if (ids[i] == cl->id) {
                for (size_t k = 0; k < cl->n_initial; k++)
                    if (cl->initial[k].id == cl->id)
                        snprintf(m->address, sizeof(m->address), "%s",
                                 cl->initial[k].address);
            } else {
                peer_client_address(cl->peers, ids[i], m->address,
                                    sizeof(m->address));
            }
        }
    }
    __atomic_store_n(&cl->commit_index, s.raft.hs.commit, __ATOMIC_RELEASE);
    __atomic_store_n(&cl->fast_reads,
                     s.raft.role == RAFT_LEADER &&
                         s.raft.conf.n_voters == 1 &&
                         cluster_keys_ready(cl),
                     __ATOMIC_RELEASE);
    pthread_mutex_lock(&cl->status_lock);
    cl->status = s;
    pthread_mutex_unlock(&cl->status_lock);
}

/* ------------------------------------------------------------------ */
/* The loop */

static void take_snapshot_inputs(struct cluster *cl, struct in_snap *s)
{
    while (s) {
        struct in_snap *next = s->next;
        if (cl->staged[0])
            fu_rmtree(cl->staged); /* superseded before it was used */
        snprintf(cl->staged, sizeof(cl->staged), "%s", s->staged);
        if (raft_step(cl->raft, &s->m) != RAFT_OK) {
            fu_rmtree(cl->staged);
            cl->staged[0] = '\0';
        }
        /* Install now, while the staged data matches what was stepped. */
        while (raft_has_ready(cl->raft))
            handle_ready(cl);
        if (cl->staged[0]) {
            /* The core did not take it (old news): drop the data. */
            fu_rmtree(cl->staged);
            cl->staged[0] = '\0';
        }
        free(s);
        s = next;
    }
}

static void *loop_main(void *arg)
{
    struct cluster *cl = arg;

    for (;;) {
        struct prop *props;
        struct read_wait *reads, *catchups;
        struct in_msg *msgs;
        struct in_snap *snaps;
        struct report *reports;
        struct admin_req *admin;
        int stopping, retry_keys, ticks = 0;
        int64_t now;

        pthread_mutex_lock(&cl->lock);
        for (;;) {
            now = now_ms();
            if (cl->stopping || cl->in_props || cl->in_reads ||
                cl->in_catchups ||
                cl->in_msgs || cl->in_snaps || cl->in_reports ||
                cl->in_admin || cl->retry_keys || now >= cl->next_tick_ms)
                break;
            {
                struct timespec ts;
                int64_t wait = cl->next_tick_ms - now;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_sec += wait / 1000;
                ts.tv_nsec += (wait % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&cl->wake, &cl->lock, &ts);
            }
        }
        /* At most max_batch proposals a turn (--group-commit-max); the
         * rest stay queued for the next turn. */
        {
            struct prop **pp = &cl->in_props;
            for (size_t k = 0; *pp && k < cl->max_batch; k++)
                pp = &(*pp)->next;
            props = cl->in_props;
            cl->in_props = *pp;
            *pp = NULL;
            if (!cl->in_props)
                cl->in_props_tail = &cl->in_props;
        }
        reads = cl->in_reads;
        cl->in_reads = NULL;
        catchups = cl->in_catchups;
        cl->in_catchups = NULL;
        msgs = cl->in_msgs;
        cl->in_msgs = NULL;
        cl->in_msgs_tail = &cl->in_msgs;
        snaps = cl->in_snaps;
        cl->in_snaps = NULL;
        reports = cl->in_reports;
        cl->in_reports = NULL;
        admin = cl->in_admin;
        cl->in_admin = NULL;
        stopping = cl->stopping;
        retry_keys = cl->retry_keys;
        cl->retry_keys = 0;
        pthread_mutex_unlock(&cl->lock);

        if (retry_keys)
            load_keys(cl);

        while (reports) {
            struct report *r = reports;
            reports = r->next;
            if (r->kind == REPORT_UNREACHABLE)
                raft_report_unreachable(cl->raft, r->id);
            else
                raft_report_snapshot(cl->raft, r->id, r->ok);
            free(r);
        }
        while (msgs) {
            struct in_msg *m = msgs;
            msgs = m->next;
            raft_step(cl->raft, &m->m);
            raftio_msg_release(&m->m);
            free(m);
        }
        take_snapshot_inputs(cl, snaps);
        while (admin) {
            struct admin_req *a = admin;
            admin = a->next;
            admin_start(cl, a);
        }
        propose_all(cl, props);
        reads_start(cl, reads);
        while (now >= cl->next_tick_ms && ticks < 5) {
            raft_tick(cl->raft);
            cl->next_tick_ms += cl->tick_ms;
            ticks++;
        }
        if (now >= cl->next_tick_ms)
            cl->next_tick_ms = now + cl->tick_ms; /* we were away: skip */
        if (ticks)
            cl->n_ticks++;
        catchups_start(cl, catchups);
        leader_expire_requests(cl, now);
        while (raft_has_ready(cl->raft))
            handle_ready(cl);
        maybe_compact(cl);
        /* Before the settles: admin answers report this status. */
        update_status(cl);
        reads_settle(cl);
        admin_settle(cl);
        if (stopping)
            break;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Life cycle */

static void cluster_id_from_name(const char *name, uint8_t out[16])
{
    static const char label[] = "dossier.cluster-id.v1";
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, PEER_CLUSTER_ID_BYTES);
    crypto_generichash_update(&h, (const uint8_t *)label, sizeof(label) - 1);
    crypto_generichash_update(&h, (const uint8_t *)name, strlen(name));
    crypto_generichash_final(&h, out, PEER_CLUSTER_ID_BYTES);
}

int cluster_start(struct store *s, struct crypt *c,
                  const struct cluster_options *o, struct cluster **out,
                  struct dossier_status *st)
{
    struct peer_events ev;
    struct raftio_state rs;
    struct raft_config rc;
    struct raft_entry *boot_entries = NULL;
    uint8_t *boot_bufs = NULL;
    struct cluster *cl;
    uint64_t seed;
    int self_listed = 0;

    *out = NULL;
    if (o->node_id == 0)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "node id must be 1 or more");
    if (o->n_members > RAFT_MAX_NODES)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "at most %d initial members", RAFT_MAX_NODES);
    for (size_t i = 0; i < o->n_members; i++)
        self_listed |= o->members[i].id == o->node_id;
    if (!self_listed && !o->join)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "node %" PRIu64 " is not among the initial members "
                       "(--peers); to add it to a running cluster use "
                       "--join",
                       o->node_id);
    cl = calloc(1, sizeof(*cl));
    if (!cl)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    cl->store = s;
    cl->crypt = c;
    cl->id = o->node_id;
    cl->tick_ms = o->tick_ms ? o->tick_ms : DEFAULT_TICK_MS;
    cl->election_ticks = o->election_ticks ? o->election_ticks
                                           : DEFAULT_ELECTION_TICKS;
    cl->max_batch = o->max_batch ? o->max_batch : 1024;
    cl->snapshot_entries = o->snapshot_entries ? o->snapshot_entries : 10000;
    cl->request_sweep_offset_ms = o->request_sweep_offset_ms;
    snprintf(cl->snapshot_dir, sizeof(cl->snapshot_dir), "%s", o->snapshot_dir);
    mkdir(cl->snapshot_dir, 0700);
    cl->initial = calloc(o->n_members ? o->n_members : 1,
                         sizeof(*cl->initial));
    if (!cl->initial) {
        free(cl);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    if (o->n_members)
        memcpy(cl->initial, o->members,
               o->n_members * sizeof(*cl->initial));
    cl->n_initial = o->n_members;
    cluster_id_from_name(o->cluster_name ? o->cluster_name : "dossier",
                         cl->cid);
    pthread_mutex_init(&cl->lock, NULL);
    {
        /* Ticks follow the monotonic clock: a wall clock stepped back
         * must not stall a leader's heartbeats. */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&cl->wake, &ca);
        pthread_condattr_destroy(&ca);
    }
    pthread_mutex_init(&cl->status_lock, NULL);
    cl->in_props_tail = &cl->in_props;
    cl->in_msgs_tail = &cl->in_msgs;
    cl->proposed_tail = &cl->proposed;

    ev = (struct peer_events){on_unreachable, on_snapshot_done, cl};
    if (peer_client_new(cl->cid, cl->id, o->advertise, o->peer_token, &ev,
                        &cl->peers, st) != 0)
        goto fail;
    if (raftio_load(s, &rs, st) != 0)
        goto fail;
    if (rs.p.hs.term == 0 && rs.n_entries == 0 && rs.p.snap.index == 0 &&
        rs.p.snap.conf.n_voters == 0 && !o->join) {
        /* A node that never ran: the initial membership as the first
         * entries of the log, identical on every initial member, durable
         * before anything else happens (see raft.h, bootstrap). */
        raft_id voters[RAFT_MAX_NODES];
        struct raft_ready boot;
        for (size_t i = 0; i < o->n_members; i++)
            voters[i] = o->members[i].id;
        memset(&boot, 0, sizeof(boot));
        boot_entries = calloc(o->n_members, sizeof(*boot_entries));
        boot_bufs = calloc(o->n_members, RAFT_CONF_CHANGE_BYTES);
        if (!boot_entries || !boot_bufs) {
            raftio_state_release(&rs);
            err_set(st, DOSSIER_NOMEM, "out of memory");
            goto fail;
        }
        raft_bootstrap_entries(voters, o->n_members, boot_entries, boot_bufs,
                               &boot.hs);
        boot.hs_changed = 1;
        boot.entries = boot_entries;
        boot.n_entries = o->n_members;
        if (raftio_save(s, &boot, st) != 0) {
            raftio_state_release(&rs);
            goto fail;
        }
        rs.p.hs = boot.hs;
        rs.p.entries = boot_entries;
        rs.p.n_entries = o->n_members;
    }
    randombytes_buf(&seed, sizeof(seed));
    raft_config_init(&rc, cl->id, seed);
    rc.election_ticks = cl->election_ticks;
    if (raft_new(&rc, &rs.p, &cl->raft) != RAFT_OK) {
        raftio_state_release(&rs);
        /* RocksDB opened the files, but what they hold does not add up
         * (e.g. a damaged MANIFEST read as a torn tail, losing its last
         * edits): refuse, rather than serve from a state that lost
         * acknowledged writes. */
        err_set(st, DOSSIER_CORRUPT,
                "the raft state on disk is inconsistent: the data "
                "directory is corrupt or incomplete (restore this node from "
                "a backup, or remove it and add it again)");
        goto fail;
    }
    raftio_state_release(&rs);
    free(boot_entries);
    free(boot_bufs);
    boot_entries = NULL;
    boot_bufs = NULL;
    load_members(cl);
    load_keys(cl);
    /* Apply what is committed (the bootstrap membership, or entries a
     * crash left unapplied) before anyone asks. */
    while (raft_has_ready(cl->raft))
        handle_ready(cl);
    {
        long pending = refinish_erasures(cl, st);
        if (pending < 0)
            goto fail;
        if (pending > 0) {
            log_printf(LOG_INFO, "erasure: %ld erasures not reported "
                       "finished by this node were compacted again; the "
                       "raft log follows", pending);
            cl->erased = 1; /* finish_erasure() sets erasure_finished */
            cl->purge_reason = "erasure";
        } else if (!cl->erased) {
            cl->erasure_finished = store_applied(cl->store);
        }
    }
    {
        struct raft_status s0;
        raft_status(cl->raft, &s0);
        /* Alone in its membership: no one to wait for. */
        if (s0.conf.n_voters == 1 && s0.conf.voters[0] == cl->id) {
            raft_campaign(cl->raft);
            while (raft_has_ready(cl->raft))
                handle_ready(cl);
        }
    }
    cl->next_tick_ms = now_ms() + cl->tick_ms;
    update_status(cl);
    answerer_init(&cl->ans);
    if (pthread_create(&cl->thread, NULL, loop_main, cl) != 0) {
        answerer_stop(&cl->ans);
        err_set(st, DOSSIER_INTERNAL, "cannot start the raft thread");
        goto fail;
    }
    *out = cl;
    return err_ok(st);
fail:
    free(boot_entries);
    free(boot_bufs);
    raft_free(cl->raft);
    peer_client_free(cl->peers);
    pthread_mutex_destroy(&cl->lock);
    pthread_cond_destroy(&cl->wake);
    pthread_mutex_destroy(&cl->status_lock);
    free(cl->initial);
    free(cl);
    return st->code;
}

/* Answers everything pending with UNAVAILABLE: the loop is gone (a stop)
 * or this is its last act (a halt). Inputs no longer grow: stopping or
 * halted is set. */
static void fail_pending(struct cluster *cl, const char *why)
{
    struct prop *in_props;
    struct read_wait *in_reads, *in_catchups;
    struct admin_req *in_admin;

    pthread_mutex_lock(&cl->lock);
    in_props = cl->in_props;
    cl->in_props = NULL;
    cl->in_props_tail = &cl->in_props;
    in_reads = cl->in_reads;
    cl->in_reads = NULL;
    in_catchups = cl->in_catchups;
    cl->in_catchups = NULL;
    in_admin = cl->in_admin;
    cl->in_admin = NULL;
    pthread_mutex_unlock(&cl->lock);
    while (cl->proposed) {
        struct prop *p = cl->proposed;
        cl->proposed = p->next;
        prop_fail(p, DOSSIER_UNAVAILABLE,
                  cl->halted ? why
                             : "the node stopped before the write "
                               "committed; retry with the same request id");
    }
    cl->proposed_tail = &cl->proposed;
    while (in_props) {
        struct prop *p = in_props;
        in_props = p->next;
        prop_fail(p, DOSSIER_UNAVAILABLE, why);
    }
    reads_fail(in_reads, DOSSIER_UNAVAILABLE, why);
    reads_fail(in_catchups, DOSSIER_UNAVAILABLE, why);
    reads_fail(cl->catchups, DOSSIER_UNAVAILABLE, why);
    cl->catchups = NULL;
    while (cl->batches) {
        struct read_batch *b = cl->batches;
        cl->batches = b->next;
        reads_fail(b->waiters, DOSSIER_UNAVAILABLE, why);
        free(b);
    }
    while (cl->admin) {
        struct admin_req *a = cl->admin;
        cl->admin = a->next;
        admin_done(a, DOSSIER_UNAVAILABLE, why);
    }
    while (in_admin) {
        struct admin_req *a = in_admin;
        in_admin = a->next;
        admin_done(a, DOSSIER_UNAVAILABLE, why);
    }
}

void cluster_shutdown(struct cluster *cl)
{
    pthread_mutex_lock(&cl->lock);
    if (cl->stopping) {
        pthread_mutex_unlock(&cl->lock);
        return;
    }
    cl->stopping = 1;
    wake(cl);
    pthread_mutex_unlock(&cl->lock);
    pthread_join(cl->thread, NULL);
    answerer_stop(&cl->ans); /* what the loop applied is answered first */
    log_printf(LOG_INFO, "raft loop stopped: %" PRIu64 " commands applied in "
               "%" PRIu64 " batches, %" PRIu64 " read rounds",
               cl->n_commands, cl->n_batches, cl->n_reads);
    /* The loop is gone: what is left was never answered. Inputs cannot
     * grow any more (stopping is set). */
    fail_pending(cl, "the node is stopping");
    __atomic_store_n(&cl->fast_reads, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&cl->is_leader, 0, __ATOMIC_RELEASE);
}

void cluster_free(struct cluster *cl)
{
    if (!cl)
        return;
    cluster_shutdown(cl);
    /* First: calls still in flight may report into the queues below. */
    peer_client_free(cl->peers);
    cl->peers = NULL;
    while (cl->in_msgs) {
        struct in_msg *m = cl->in_msgs;
        cl->in_msgs = m->next;
        raftio_msg_release(&m->m);
        free(m);
    }
    while (cl->in_snaps) {
        struct in_snap *s = cl->in_snaps;
        cl->in_snaps = s->next;
        fu_rmtree(s->staged);
        free(s);
    }
    while (cl->in_reports) {
        struct report *r = cl->in_reports;
        cl->in_reports = r->next;
        free(r);
    }
    raft_free(cl->raft);
    pthread_mutex_destroy(&cl->lock);
    pthread_cond_destroy(&cl->wake);
    pthread_mutex_destroy(&cl->status_lock);
    free(cl->initial);
    free(cl->out);
    free(cl->results);
    free(cl);
}
