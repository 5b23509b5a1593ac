/* The Raft consensus core: pure logic, in the manner of etcd's raft library.
 *
 * It never touches a disk, a socket, a clock or a thread. The node drives
 * it: raft_tick() on a timer, raft_step() for every message that arrives,
 * raft_propose() for writes; then, whenever raft_has_ready(), it takes a
 * struct raft_ready and does, in this order:
 *
 *   1. persist, in one write (synced when must_sync): the hard state
 *      (term, vote, commit), the entries (appended at entries[0].index,
 *      replacing any persisted entries from that index on) and, if set,
 *      the snapshot (install its data, staged beforehand, as the state
 *      machine, and drop the whole persisted log: the core's log now
 *      starts after the snapshot);
 *   2. send the messages (they may depend on what step 1 persisted: a vote
 *      must not leave before the term and vote that grant it are durable);
 *      when send_first is set, the messages may be sent before step 1
 *      instead, or while it runs (Raft thesis §10.2.1: a leader writes its
 *      log in parallel with replicating it; it counts itself toward a
 *      quorum only for entries persisted, at raft_advance);
 *   3. apply the committed entries in order, and answer the read states;
 *   4. call raft_advance().
 *
 * Everything a ready points to belongs to the core and stays valid until
 * raft_advance(); between raft_ready() and raft_advance() the node calls
 * nothing that changes the core (raft_status and raft_snapshot_at_applied
 * only read it). Messages carry copies of their entries, so what the core
 * does before the ready is taken (truncating, compacting, growing its log)
 * never changes a message already queued; and an acknowledgment of
 * entries that are replaced before they were persisted is withdrawn, never
 * sent.
 *
 * Membership: a change takes effect when its entry is applied (in
 * raft_advance), except that a received snapshot's membership takes effect
 * as soon as the snapshot message is stepped.
 *
 * Deterministic: given the same seed and the same sequence of calls, the
 * core makes the same decisions, which is what lets a simulator drive many
 * cores through seeded chaos and replay any failure.
 *
 * What it implements: leader election with pre-vote and check-quorum;
 * log replication with the commit rule of Raft §5.4.2 (a leader commits by
 * counting replicas only entries of its own term, and appends an empty entry
 * when elected); flow control (probe/replicate/snapshot progress, a window
 * of messages in flight); snapshots and log compaction; single-server
 * membership changes with non-voting learners; leadership transfer; and
 * linearizable reads by ReadIndex, many reads sharing one heartbeat round.
 *
 * Memory: the core aborts when an allocation fails. A transition half made
 * would be worse than a crash, which Raft is built to survive. */
#ifndef DOSSIER_RAFT_H
#define DOSSIER_RAFT_H

#include <stddef.h>
#include <stdint.h>

typedef uint64_t raft_id;    /* node id; 0 means none */
typedef uint64_t raft_term;
typedef uint64_t raft_index; /* log position; the first entry is 1 */

#define RAFT_MAX_NODES 9

/* Results of the calls below. */
enum raft_rc {
    RAFT_OK = 0,
    RAFT_NOT_LEADER,     /* only the leader can do that; see raft_leader() */
    RAFT_NO_LEADER,      /* no leader known right now */
    RAFT_BUSY,           /* a configuration change or transfer is pending */
    RAFT_INVALID,        /* a malformed argument or message */
    RAFT_COMPACTED,      /* the index is below the first one kept */
    RAFT_UNAVAILABLE,    /* the index is beyond the last one */
};

enum raft_role {
    RAFT_FOLLOWER = 0,
    RAFT_PRE_CANDIDATE,
    RAFT_CANDIDATE,
    RAFT_LEADER,
};

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0, /* data for the state machine; empty on election */
    RAFT_ENTRY_CONF,       /* a membership change, see raft_conf_change */
};

struct raft_entry {
    raft_term term;
    raft_index index;
    enum raft_entry_type type;
    uint8_t *data;
    size_t len;
};

/* A membership: voters elect and commit; learners only receive the log. */
struct raft_conf {
    size_t n_voters;
    raft_id voters[RAFT_MAX_NODES];
    size_t n_learners;
    raft_id learners[RAFT_MAX_NODES];
};

/* One change at a time. A new node joins as a learner, is promoted to voter
 * once caught up, and any node can be removed. A change takes effect when
 * its entry is applied (raft_advance after it was in committed). */
enum raft_conf_op {
    RAFT_CONF_ADD_LEARNER = 1,
    RAFT_CONF_PROMOTE = 2,
    RAFT_CONF_REMOVE = 3,
    RAFT_CONF_ADD_VOTER = 4, /* bootstrap entries only (see raft_persisted) */
};

struct raft_conf_change {
    enum raft_conf_op op;
    raft_id node;
};

/* Encoding of a change in a RAFT_ENTRY_CONF entry: op (1 byte), node id (8
 * bytes big-endian). */
#define RAFT_CONF_CHANGE_BYTES 9
void raft_conf_change_encode(const struct raft_conf_change *cc,
                             uint8_t out[RAFT_CONF_CHANGE_BYTES]);
/* Returns RAFT_OK or RAFT_INVALID. */
int raft_conf_change_decode(const uint8_t *data, size_t len,
                            struct raft_conf_change *cc);

/* Where a snapshot stands: the last index and term it covers and the
 * membership at that index. Index 0 means "no snapshot"; its conf is then
 * the initial membership. */
struct raft_snapshot_meta {
    raft_index index;
    raft_term term;
    struct raft_conf conf;
};

struct raft_hard_state {
    raft_term term;
    raft_id vote;
    raft_index commit;
};

enum raft_msg_type {
    RAFT_MSG_APPEND = 1,     /* log_term/index: entry before entries[0] */
    RAFT_MSG_APPEND_RESP,    /* index: last matching index, or hint on reject */
    RAFT_MSG_VOTE,           /* log_term/index: candidate's last entry */
    RAFT_MSG_VOTE_RESP,
    RAFT_MSG_PRE_VOTE,       /* term: the term the candidate would take */
    RAFT_MSG_PRE_VOTE_RESP,
    RAFT_MSG_HEARTBEAT,      /* commit: min(leader commit, follower match) */
    RAFT_MSG_HEARTBEAT_RESP,
    RAFT_MSG_SNAPSHOT,       /* snapshot: what the follower must install */
    RAFT_MSG_TIMEOUT_NOW,    /* leadership transfer: campaign at once */
    RAFT_MSG_READ_INDEX,     /* follower asks the leader for a read index */
    RAFT_MSG_READ_INDEX_RESP,/* index: the read index, or reject */
};

struct raft_msg {
    enum raft_msg_type type;
    raft_id from, to;
    raft_term term;
    raft_term log_term;
    raft_index index;
    raft_index commit;
    int reject;
    raft_index reject_hint; /* append: follower's last index */
    uint64_t context;       /* read index: the caller's context */
    int force;              /* vote: a leadership transfer, ignore leases */
    struct raft_entry *entries;
    size_t n_entries;
    struct raft_snapshot_meta snapshot;
};

/* The answer to a raft_read_index(): reads that wait for @index to be
 * applied, then read, are linearizable. */
struct raft_read_state {
    uint64_t context;
    raft_index index;
};

struct raft_ready {
    /* 1. persist */
    int must_sync; /* 0: only the commit index changed, which need not be
                      durable (raft_new takes the applied index as
                      committed), so the write may skip the sync */
    int hs_changed;
    struct raft_hard_state hs;
    struct raft_entry *entries;
    size_t n_entries;
    int has_snapshot;
    struct raft_snapshot_meta snapshot;
    /* 2. send */
    struct raft_msg *msgs;
    size_t n_msgs;
    int send_first; /* the messages do not depend on this ready's step 1:
                       set for a leader whose term and vote are already
                       durable */
    /* 3. apply; never beyond what is persisted */
    struct raft_entry *committed;
    size_t n_committed;
    struct raft_read_state *reads;
    size_t n_reads;
    /* for the node's information */
    int soft_changed;
    enum raft_role role;
    raft_id leader;
};

struct raft_config {
    raft_id id;
    unsigned election_ticks;  /* a follower campaigns after a random
                                 [election, 2*election) ticks of silence */
    unsigned heartbeat_ticks; /* a leader heartbeats this often */
    int pre_vote;             /* campaign only after winning a pre-vote */
    int check_quorum;         /* a leader not hearing from a quorum for an
                                 election timeout steps down; followers
                                 ignore votes while they have a leader */
    size_t max_msg_entries;   /* entries per append message */
    size_t max_msg_bytes;     /* entry bytes per append message */
    size_t max_inflight;      /* append messages in flight per follower */
    uint64_t seed;            /* randomises election timeouts */
    /* TEST ONLY: commit entries of earlier terms by counting replicas,
     * breaking §5.4.2 (the bug of Figure 8), so that tests can show the
     * simulator catches it. Never set outside tests. */
    int test_unsafe_commit;
};

/* Fills @c with defaults: 10 election ticks, 1 heartbeat tick, pre-vote and
 * check-quorum on, 64 entries and 1 MiB per message, 64 in flight. */
void raft_config_init(struct raft_config *c, raft_id id, uint64_t seed);

/* What was persisted, to start from (all borrowed; copied).
 *
 * Bootstrap: every initial member of a new cluster starts with the same
 * entries 1..n, one RAFT_ENTRY_CONF of RAFT_CONF_ADD_VOTER per initial
 * voter in term 1, and hs = {term 1, no vote, commit n}; see
 * raft_bootstrap_entries(). The membership is then in the log, where a
 * node that joins later (with no entries and an empty conf, waiting to
 * hear from the leader) learns it. (Putting the initial voters in
 * snap.conf at index 0 instead works only for a membership that never
 * grows: a joining node replaying the log from 1 would never see them.)
 * @applied is the state machine's applied index (at least snap.index). */
struct raft_persisted {
    struct raft_hard_state hs;
    struct raft_snapshot_meta snap;
    const struct raft_entry *entries; /* snap.index + 1 onwards */
    size_t n_entries;
    raft_index applied;
};

struct raft;

/* Returns RAFT_OK, or RAFT_INVALID (bad config, or persisted state that
 * contradicts itself: entries not contiguous after the snapshot, a commit
 * beyond the log, ...). */
int raft_new(const struct raft_config *c, const struct raft_persisted *p,
             struct raft **out);

/* Fills @out (@n entries, one per voter in @voters, in that order) and @hs
 * with the bootstrap described above. Entry data points into @bufs, which
 * holds @n * RAFT_CONF_CHANGE_BYTES bytes. */
void raft_bootstrap_entries(const raft_id *voters, size_t n,
                            struct raft_entry *out, uint8_t *bufs,
                            struct raft_hard_state *hs);
void raft_free(struct raft *r);

/* One unit of logical time. */
void raft_tick(struct raft *r);

/* Campaigns now rather than after an election timeout: for a node that is
 * alone in its membership at start, or an operator's request. Ignored
 * by a leader and by a node that cannot vote. */
void raft_campaign(struct raft *r);

/* Feeds a message from another node (borrowed; copied). Messages of other
 * terms, from unknown nodes or that contradict the log are handled as Raft
 * says (ignored, answered or rejected). Returns RAFT_OK or RAFT_INVALID
 * (a malformed message: not for this node, no sender, entries that are not
 * contiguous). */
int raft_step(struct raft *r, const struct raft_msg *m);

/* Appends @data (@len bytes, copied) to the leader's log; *@index and
 * *@term (may be NULL) tell where. The entry is committed when it shows in
 * a ready's committed entries with that index and term. Returns RAFT_OK,
 * RAFT_NOT_LEADER, or RAFT_BUSY during a leadership transfer. */
int raft_propose(struct raft *r, const uint8_t *data, size_t len,
                 raft_index *index, raft_term *term);

/* Proposes a membership change. RAFT_BUSY while another one is not yet
 * applied (or the leader's first entry of its term is not); RAFT_INVALID
 * when it makes no sense (adding a member, promoting a non-learner,
 * removing the last voter). */
int raft_propose_conf_change(struct raft *r, const struct raft_conf_change *cc,
                             raft_index *index);

/* Asks for a read index for @context. The answer comes as a read state in a
 * later ready (on the leader once a quorum confirmed its leadership; on a
 * follower once the leader answered). Returns RAFT_OK, or RAFT_NO_LEADER. */
int raft_read_index(struct raft *r, uint64_t context);

/* Leader: hands leadership to @to once it is up to date. RAFT_NOT_LEADER,
 * RAFT_INVALID (not a voter), RAFT_BUSY (a transfer is running). */
int raft_transfer_leader(struct raft *r, raft_id to);

/* Leader: the node could not reach @id (send failed): go back to probing. */
void raft_report_unreachable(struct raft *r, raft_id id);

/* Leader: the snapshot sent to @id was installed (@ok) or failed. */
void raft_report_snapshot(struct raft *r, raft_id id, int ok);

int raft_has_ready(const struct raft *r);
void raft_ready(struct raft *r, struct raft_ready *rd);
/* The node did everything @rd asked (it must be the last ready taken). */
void raft_advance(struct raft *r, const struct raft_ready *rd);

/* The state machine has a snapshot at its applied index: drop the log up to
 * @index (at most the applied index), keeping @index's term and the
 * membership for snapshot messages. RAFT_COMPACTED if already dropped,
 * RAFT_UNAVAILABLE beyond the applied index or while a received snapshot
 * waits to be installed. Not between raft_ready() and raft_advance(). */
int raft_compact(struct raft *r, raft_index index);

/* What the log compacted up to @index (at most the applied index) starts
 * after: @index, its term and the membership as of it, to persist before
 * raft_compact(). Errors as raft_compact(). */
int raft_compact_meta(const struct raft *r, raft_index index,
                      struct raft_snapshot_meta *out);

/* The snapshot meta describing the state machine at its applied index
 * (its term and the membership as of it, even while a received snapshot
 * waits to be installed), which is what a node sends when it streams its
 * current state. */
void raft_snapshot_at_applied(const struct raft *r,
                              struct raft_snapshot_meta *out);

/* Term of entry @index into *@term. RAFT_COMPACTED, RAFT_UNAVAILABLE. */
int raft_term_at(const struct raft *r, raft_index index, raft_term *term);

/* State for status pages and tests. */
struct raft_progress_status {
    raft_id id;
    int learner;
    raft_index match, next;
    int state; /* 0 probe, 1 replicate, 2 snapshot */
    int recent_active;
};

struct raft_status {
    raft_id id;
    enum raft_role role;
    raft_id leader;
    struct raft_hard_state hs;
    raft_index first_index, last_index, applied;
    struct raft_conf conf;
    size_t n_progress; /* leader only */
    struct raft_progress_status progress[RAFT_MAX_NODES * 2];
    raft_id transferee;
};

void raft_status(const struct raft *r, struct raft_status *out);
raft_id raft_leader(const struct raft *r);
enum raft_role raft_role(const struct raft *r);
raft_term raft_term_now(const struct raft *r);

/* Names for logs: "follower", "append", ... (static strings). */
const char *raft_role_name(enum raft_role role);
const char *raft_msg_type_name(enum raft_msg_type t);

#endif
