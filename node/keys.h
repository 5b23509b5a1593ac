/* Master key rotation, the leader's side: a thread that starts rotations
 * asked for with Keys/Rotate and drives the one under way to its end.
 *
 * A rotation moves every wrapped key from the active master key version
 * to a new one without touching data: the data keys stay the same, only
 * their wrapping changes. Steps, each a replicated KeyRotateOp
 * (store_keys.c applies them):
 *   1. Rotate (admin) on the leader: every member (voters and learners)
 *      is asked for its key versions (Peer.KeyStatus); a member that does
 *      not hold the target version with the leader's key check value, or
 *      does not answer, refuses the rotation, named in the message.
 *   2. BEGIN records the rotation (from, to, the target's check value).
 *      From then on new subject keys are wrapped under the target only.
 *   3. REWRAP batches: the leader reads subject keys in pseudonym order
 *      from the rotation's cursor, unwraps each and wraps it again under
 *      the target, and proposes the batch with the new cursor. Apply
 *      replaces a key only if the subject still has that very key.
 *   4. At the end of the family, a check pass rewraps any straggler, and
 *      a pass over the pending merges' summaries rewraps the subject keys
 *      they keep for an undo (REWRAP items naming the merge); then FINISH
 *      installs the keyset sealed under the target (apply refuses it while
 *      a pending merge keeps a key under another version, so a merge made
 *      during the rotation is caught by the next pass). Every node then
 *      purges the old wraps from its disk (store_rotation_purge, raft log
 *      compaction) and the old version opens nothing.
 * The cursor and counts live in the replicated state, so a new leader (or
 * a restarted one) continues where the last batch ended. */
#ifndef DOSSIER_NODE_KEYS_H
#define DOSSIER_NODE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include <dossier/dossier.h>

struct node;
struct call;
struct keys;

/* Subject keys rewrapped per command by default (--key-rotation-batch). */
#define KEYS_ROTATION_BATCH_DEFAULT 256

/* Starts the rotation thread of node @n (borrowed; its store, crypt and
 * cluster must be set), rewrapping @batch keys per command and waiting
 * @pause_ms between commands (0 in production; tests slow a rotation
 * down to interrupt it). Errors: DOSSIER_NOMEM, DOSSIER_INTERNAL. */
int keys_start(struct node *n, size_t batch, unsigned pause_ms,
               struct keys **out, struct dossier_status *st);

/* Stops the thread (a rotation under way stays recorded, to be resumed by
 * the next leader or the next start) and frees @k. NULL is a no-op. */
void keys_stop(struct keys *k);

/* Keys/Rotate on the leader: checks and begins a rotation to @version
 * (0: the highest version this node holds) on the rotation thread, which
 * answers @c. */
void keys_rotate(struct keys *k, struct call *c, uint32_t version);

/* Answers @c with the Keys/Status of this node (api_keys.c). */
void keys_reply_status(struct call *c);

#endif
