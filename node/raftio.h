/* Raft's state on this node's disk (the raft and raftlog column families,
 * see store.h), and the conversion of Raft's structs to and from their
 * protobuf form for the disk and the wire. */
#ifndef DOSSIER_NODE_RAFTIO_H
#define DOSSIER_NODE_RAFTIO_H

#include <dossier/dossier.h>

#include "peer.pb-c.h"
#include "raft.h"
#include "store.h"

/* What raftio_load() read: raft_persisted plus the memory behind it. */
struct raftio_state {
    struct raft_persisted p;
    struct raft_entry *entries; /* owned */
    size_t n_entries;
};

/* Reads the hard state, the snapshot point, every log entry and the
 * applied index. A node that never ran has zeros and no entries; its
 * snapshot conf is left empty for the caller to fill with the initial
 * members. Errors: DOSSIER_CORRUPT, DOSSIER_IO, DOSSIER_NOMEM. */
int raftio_load(struct store *s, struct raftio_state *out,
                struct dossier_status *st);
void raftio_state_release(struct raftio_state *rs);

/* Makes durable, in one synced write, what @rd asks to persist: the hard
 * state and the entries (replacing every persisted entry from the first
 * one's index on). The snapshot part is written by store_install's prepare
 * step (raftio_prepare_install). Errors: DOSSIER_IO. */
int raftio_save(struct store *s, const struct raft_ready *rd,
                struct dossier_status *st);

/* Records @meta as the snapshot point and drops the entries it covers.
 * Synced. A point at or below the current one changes nothing. Errors:
 * DOSSIER_IO, DOSSIER_CORRUPT. */
int raftio_compact(struct store *s, const struct raft_snapshot_meta *meta,
                   struct dossier_status *st);

/* Restores only: makes this node's Raft state a cluster of one voter,
 * @self (reachable at @address), at the index its store has applied: the
 * log is emptied (entries past the applied index are dropped), the
 * snapshot point moves to the applied index with @self as the only voter,
 * and the member addresses list @self alone. Synced.
 * Errors: DOSSIER_CORRUPT, DOSSIER_IO, DOSSIER_NOMEM. */
int raftio_reset_single(struct store *s, uint64_t self, const char *address,
                        struct dossier_status *st);

/* The arguments of raftio_prepare_install (borrowed). */
struct raftio_install {
    struct raft_hard_state hs;
    struct raft_snapshot_meta meta;
};

/* store_install() prepare step: writes this node's hard state and the
 * snapshot point into the staged copy and empties its log. @arg is a
 * struct raftio_install. */
int raftio_prepare_install(void *arg, const struct store_raw *raw,
                           struct dossier_status *st);

/* Conversions. raftio_msg_to_pb fills @out with pointers into @m (no
 * copies; @out needs @ents and @ptrs arrays of m->n_entries and its conf
 * arrays); raftio_msg_from_pb copies everything into @out, whose entries
 * are freed with raftio_msg_release. */
struct raftio_msg_pb {
    Dossier__Peer__V1__RaftMessage msg;
    Dossier__Peer__V1__SnapshotMeta snap;
    Dossier__Peer__V1__Conf conf;
    Dossier__Peer__V1__Entry *ents;
    Dossier__Peer__V1__Entry **ptrs;
};
/* Errors: DOSSIER_NOMEM. */
int raftio_msg_to_pb(const struct raft_msg *m, struct raftio_msg_pb *out);
void raftio_msg_pb_release(struct raftio_msg_pb *pb);
/* Errors: DOSSIER_INVALID_ARGUMENT (too many members, bad type). */
int raftio_msg_from_pb(const Dossier__Peer__V1__RaftMessage *pb,
                       struct raft_msg *out);
void raftio_msg_release(struct raft_msg *m);

void raftio_conf_to_pb(const struct raft_conf *c, Dossier__Peer__V1__Conf *out);
int raftio_conf_from_pb(const Dossier__Peer__V1__Conf *pb,
                        struct raft_conf *out);

#endif
