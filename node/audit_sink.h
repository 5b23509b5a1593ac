/* Where the node's audit entries go that no command carries: reads of
 * personal data and refused calls. They are buffered and, every window,
 * appended to the replicated log in one AuditOp command (the leader
 * proposes it; a follower forwards it to the leader), so that reads stay
 * fast: a read costs a memcpy here, not a consensus round. The same thread
 * makes the leader sign a checkpoint of the chain every N entries or T ms.
 *
 * What the window costs: entries of the last window are lost if the node
 * dies before it ends (at most one window of reads and refusals); entries
 * that cannot be appended (no leader) are kept and retried, up to
 * AUDIT_SINK_MAX of them, beyond which the oldest are dropped and the loss
 * is logged. */
#ifndef DOSSIER_NODE_AUDIT_SINK_H
#define DOSSIER_NODE_AUDIT_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

#define AUDIT_SINK_MAX 100000

struct audit_sink_options {
    int64_t window_ms;          /* 0: 200 */
    uint64_t checkpoint_entries;/* 0: 1000 */
    int64_t checkpoint_ms;      /* 0: 10000 */
};

struct audit_sink;

/* Starts the sink's thread for node @n (borrowed; its store, cluster and
 * crypt must be set). Errors: DOSSIER_NOMEM, DOSSIER_INTERNAL. */
int audit_sink_start(struct node *n, const struct audit_sink_options *o,
                     struct audit_sink **out, struct dossier_status *st);

/* Buffers one entry, now. @sp: subject pseudonym or NULL; @rids: @n
 * record pseudonyms (16 bytes each). Texts are borrowed. Thread-safe, does
 * not block on I/O. NULL @s is a no-op. */
void audit_sink_add(struct audit_sink *s, const char *principal,
                    const char *action, const char *purpose,
                    const uint8_t *sp, const uint8_t *rids, size_t n,
                    int outcome);

/* Stops the thread and appends what is buffered (best effort: waits up to
 * 2 s). Call before the cluster stops. NULL is a no-op. */
void audit_sink_stop(struct audit_sink *s);

/* Entries buffered (not yet appended) and dropped since the start. */
void audit_sink_stats(struct audit_sink *s, uint64_t *queued,
                      uint64_t *dropped);

/* Frees @s, once the cluster is shut down (no callback can come). */
void audit_sink_free(struct audit_sink *s);

#endif
