/* Erasure completion (GDPR Art. 17): each node reports when it has
 * finished an erasure, and erasure certificates list the nodes that did.
 *
 * - The reporter, a thread on every node, watches how far this node has
 *   finished the erasures it applied (cluster_erasures_finished()) and
 *   reports the ledger rows at or below it that do not name it yet: one
 *   ErasureDoneOp (up to ERASURE_DONE_ITEMS_MAX erasures) proposed by the
 *   leader itself, or sent by a follower to the leader (Peer.ErasureDone,
 *   an ErasureDoneRequest naming the cluster and the sender, which the
 *   leader checks as every peer call's, and which must be the node the
 *   report names). Applying it adds the node and its time to each ledger
 *   row, if the node is a member (has a member row); else it is refused.
 *   A report that fails is tried again a second later.
 * - A certificate (version 2) is signed with the cluster's audit key over
 *   the erasure and the ascending list of the nodes its ledger row names
 *   (client/common/audit.h); the voters it does not name are listed as
 *   pending, unsigned.
 * - An Erase (or an erasure request's Execute) answers once every voter
 *   has reported, or when its wait ends (SubjectRequest.completion_wait_ms,
 *   default ERASURE_WAIT_DEFAULT_MS), from a thread of its own. */
#ifndef DOSSIER_NODE_ERASURE_H
#define DOSSIER_NODE_ERASURE_H

#include <stdint.h>

#include "dossier.pb-c.h"
#include "server.h"
#include "store.h"

#define ERASURE_WAIT_DEFAULT_MS 5000
#define ERASURE_WAIT_MAX_MS 60000
/* Peer method a follower reports through. */
#define ERASURE_DONE_METHOD "/dossier.peer.v1.Peer/ErasureDone"

struct erasure_report;

/* Starts node @n's reporter (borrowed: store, cluster and id set).
 * Errors: DOSSIER_NOMEM, DOSSIER_INTERNAL. */
int erasure_report_start(struct node *n, struct erasure_report **out,
                         struct dossier_status *st);

/* Stops the reporter; a report in flight is abandoned (the next start
 * reports it). NULL is a no-op. Call before the cluster stops. */
void erasure_report_stop(struct erasure_report *r);

/* A certificate as the API sends it, with the storage it points into. */
struct erasure_cert {
    Dossier__V1__ErasureCertificate pb;
    uint8_t sp[16], sig[64], pk[32];
    uint64_t nodes[ERASURE_NODES_MAX], pending[ERASURE_NODES_MAX];
};

/* Makes the certificate of ledger row @er (borrowed) of subject @sp,
 * signed now, into @out: the nodes the row names, and as pending the
 * voters it does not (as this node knows the membership).
 * Errors: those of crypt_audit_keys(), DOSSIER_NOMEM. */
int erasure_certificate(struct node *n, const uint8_t sp[16],
                        const Dossier__Store__V1__ErasureRecord *er,
                        struct erasure_cert *out, struct dossier_status *st);

/* Called when a wait ends, on the waiting thread; it answers @c. */
typedef void (*erasure_wait_cb)(struct call *c, void *arg);

/* Waits, on a thread of its own, until every voter has reported finishing
 * the erasure of @sp recorded at raft index @index, for at most @wait_ms
 * (and less than @c's deadline), then calls @done(@c, @arg). Returns 0,
 * or -1 when no thread could be started or the node is stopping (the
 * caller then answers at once). */
int erasure_wait(struct call *c, const uint8_t sp[16], uint64_t index,
                 int64_t wait_ms, erasure_wait_cb done, void *arg);

/* At a stop: waits under way end at once (their calls answered with what
 * is known) and none starts; returns once none runs. */
void erasure_wait_stop(void);

/* Subjects/Certificate. */
void api_subjects_certificate(struct call *c, ProtobufCMessage *req);
/* Peer.ErasureDone, on the leader. */
void api_peer_erasure_done(struct call *c, ProtobufCMessage *req);

#endif
