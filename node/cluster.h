/* Where writes go, and how reads stay linearizable: the node's Raft loop.
 *
 * One thread drives the Raft core (node/raft): it takes submitted commands
 * and proposes them (many per append, one synced write for many entries),
 * steps messages from peers, ticks, persists what the core asks (raftio.c),
 * sends messages (peer.c) and applies committed commands with
 * store_apply() in one batch per ready; an answer thread then runs the
 * callbacks of the commands it applied. A single-voter cluster is the same
 * loop with nobody to ask.
 *
 * The callback of a submitted command (cluster_submit) that was applied
 * runs on the answer thread, in the order of application; one that failed
 * unapplied (leadership lost, a stop, a halt) runs on the Raft thread or
 * the stopping one, as do the callbacks of reads and admin calls. They may
 * submit again and may answer gRPC calls; they must not block. */
#ifndef DOSSIER_NODE_CLUSTER_H
#define DOSSIER_NODE_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "peer.pb-c.h"
#include "raft.h"
#include "store.h"

struct crypt;

#define CLUSTER_ADDRESS_MAX 256

struct cluster_member {
    uint64_t id;
    char address[CLUSTER_ADDRESS_MAX];
};

struct cluster_options {
    uint64_t node_id;
    /* The initial members (this node among them) of a cluster being
     * bootstrapped; ignored once the node has Raft state of its own. */
    const struct cluster_member *members;
    size_t n_members;
    int join;                  /* joining a running cluster: no membership
                                  of its own until the leader adds it */
    const char *cluster_name;  /* peers of another cluster are refused */
    unsigned tick_ms;          /* 0: 100 */
    unsigned election_ticks;   /* 0: 10 */
    size_t max_batch;          /* commands proposed per loop turn */
    uint64_t snapshot_entries; /* compact the log past this many entries */
    const char *snapshot_dir;  /* where checkpoints to send are made */
    const char *advertise;     /* where the other nodes reach this one */
    const char *peer_token;    /* presented on every peer call (auth.h) */
    int64_t request_sweep_offset_ms; /* tests only: the request-id sweep's
                                        clock runs this far ahead */
};

/* Called once per submitted command, after it was applied (or failed).
 * @res borrowed for the call. */
typedef void (*cluster_done_cb)(void *arg, const struct store_result *res);

/* Called when a read may proceed (@code 0), or why it may not. */
typedef void (*cluster_read_cb)(void *arg, int code, const char *message);

struct cluster;

/* Starts the loop over @s and @c (borrowed). Loads Raft's state; a node
 * without one starts with the initial members of @o. Errors:
 * DOSSIER_INVALID_ARGUMENT, DOSSIER_CORRUPT, DOSSIER_IO, DOSSIER_NOMEM. */
int cluster_start(struct store *s, struct crypt *c,
                  const struct cluster_options *o, struct cluster **out,
                  struct dossier_status *st);

/* Proposes the packed Command @data (@len bytes, taken). @cb runs exactly
 * once unless this returns an error: DOSSIER_UNAVAILABLE when stopping.
 * On a node that is not the leader the callback gets DOSSIER_UNAVAILABLE
 * (the server forwards writes to the leader before they get here). */
int cluster_submit(struct cluster *cl, uint8_t *data, size_t len,
                   cluster_done_cb cb, void *arg);

/* Linearizable reads. Returns 1 when the read may run right now on the
 * calling thread (this node leads a cluster of one voter: its state is the
 * committed state); else 0, and @cb runs on the Raft thread once the node
 * has applied everything committed when the read was asked (ReadIndex,
 * batched), or with DOSSIER_UNAVAILABLE if no leader confirms in time. */
int cluster_read_barrier(struct cluster *cl, cluster_read_cb cb, void *arg);

/* A read barrier for a call whose token this node does not know (a
 * principal added a moment ago may not be applied here yet), as
 * cluster_read_barrier() answers, except that catch-ups are rationed: at
 * most one ReadIndex round starts per raft tick, and it serves every
 * catch-up asked before it started. A caller still waits for a round that
 * started after it asked, so what was committed before it asked is
 * applied when @cb runs; a flood of unknown tokens costs the cluster at
 * most one round a tick (cluster_status().catchups counts them). */
int cluster_catch_up(struct cluster *cl, cluster_read_cb cb, void *arg);

/* The raft index through which every erasure this node applied is
 * finished here: applied, its ranges and families compacted, the raft log
 * compacted past it (or a snapshot taken after it installed). Erasures at
 * or below it may be reported finished (ErasureDoneOp). */
uint64_t cluster_erasures_finished(struct cluster *cl);

/* The commit index this node knows of (for staleness reports). */
uint64_t cluster_commit_index(struct cluster *cl);

/* 1 when this node is the leader. */
int cluster_is_leader(struct cluster *cl);

/* The leader as this node knows it: its id (0: none) and address. */
uint64_t cluster_leader(struct cluster *cl, char *address, size_t cap);

/* 1 if a storage failure halted this node's Raft loop for good (it then
 * serves no data until restarted); the reason into @why (may be NULL). */
int cluster_halted(struct cluster *cl, char *why, size_t cap);

/* 1 once the cluster's keyset is open on this node (data calls may run). */
int cluster_keys_ready(struct cluster *cl);

/* The cluster id peers must present (16 bytes). */
const uint8_t *cluster_id(const struct cluster *cl);

/* 1 if @id is a member (voter or learner) or a configured peer. */
int cluster_knows(struct cluster *cl, uint64_t id);

/* Messages from a peer (borrowed; copied). Refuses them when @from is not
 * a member. @from_address (may be ""): where @from listens, recorded when
 * this node knows no address for it yet.
 * Errors: DOSSIER_PERMISSION_DENIED, DOSSIER_INVALID_ARGUMENT. */
int cluster_receive(struct cluster *cl, uint64_t from,
                    const char *from_address, const struct raft_msg *msgs,
                    size_t n, struct dossier_status *st);

/* A snapshot arrived complete in @staged (taken: the loop installs it or
 * removes it), with its Raft message (borrowed; copied). */
void cluster_snapshot_received(struct cluster *cl, const char *staged,
                               const struct raft_msg *msg);

/* Where to stage an incoming snapshot from @from: a fresh path under the
 * data directory, into @out. */
void cluster_snapshot_staging(struct cluster *cl, uint64_t from, char *out,
                              size_t cap);

/* Membership and leadership (leader only; callbacks on the Raft thread). */
enum cluster_admin_op {
    CLUSTER_ADD = 1,     /* a new learner at an address */
    CLUSTER_PROMOTE,     /* a caught-up learner becomes a voter */
    CLUSTER_REMOVE,
    CLUSTER_TRANSFER,    /* hand leadership to a voter */
};
int cluster_admin(struct cluster *cl, enum cluster_admin_op op, uint64_t id,
                  const char *address, cluster_read_cb cb, void *arg);

/* Hands a client call to the leader (@method, the encoded request, the
 * purpose and request id, all borrowed). Returns 0 and @cb runs once on a
 * transport thread with the leader's answer, or DOSSIER_UNAVAILABLE when
 * no leader is known or reachable (and @cb never runs). */
typedef void (*cluster_forward_cb)(void *arg, int code, const char *message,
                                   const uint8_t *reply, size_t len);
int cluster_forward(struct cluster *cl, const char *method,
                    const uint8_t *request, size_t len, const char *purpose,
                    const uint8_t *request_id, const char *principal,
                    unsigned role, int64_t timeout_ms,
                    cluster_forward_cb cb, void *arg);

/* Asks member @id which master key versions it holds (peer.h); blocks
 * up to @timeout_ms: never from the Raft thread. */
int cluster_key_status(struct cluster *cl, uint64_t id, int64_t timeout_ms,
                       Dossier__Peer__V1__KeyStatusResponse **out,
                       struct dossier_status *st);

/* Reopens the channels to the other nodes (after peer_tls_reload()). */
void cluster_renew_peer_channels(struct cluster *cl);

/* The key file was reloaded (SIGHUP): a node whose keys could not be
 * opened tries again. */
void cluster_keys_reloaded(struct cluster *cl);

/* TEST ONLY (--enable-fault-injection): drop all traffic to and from the
 * @n nodes in @ids; n = 0 heals. */
void cluster_isolate(struct cluster *cl, const uint64_t *ids, size_t n);
int cluster_is_isolated_from(struct cluster *cl, uint64_t id);

/* A picture of the node for status calls and metrics. */
struct cluster_status {
    struct raft_status raft;
    uint64_t store_applied;
    uint64_t commands, batches, reads;
    uint64_t catchups;       /* rounds started by cluster_catch_up() */
    size_t peer_channels_retired; /* peer_client_retired() */
    uint64_t erasures;       /* erasures applied since the node started */
    int erasure_log_pending; /* one applied, its raft log not yet compacted */
    size_t n_members;
    struct cluster_member members[RAFT_MAX_NODES * 2];
};
void cluster_status(struct cluster *cl, struct cluster_status *out);

/* Stops the loop and answers everything still pending with
 * DOSSIER_UNAVAILABLE. Afterwards submissions and reads fail at once, but
 * @cl stays valid until cluster_free(). */
void cluster_shutdown(struct cluster *cl);

/* Shuts down if needed and frees @cl. NULL is a no-op. */
void cluster_free(struct cluster *cl);

#endif
