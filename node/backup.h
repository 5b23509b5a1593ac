/* Backups and restores of one node (format: client/common/backupfmt.h).
 *
 * A backup is made online: a RocksDB checkpoint (hard links where it can),
 * the data directory marker and a manifest with every file's SHA-256, in
 * a temporary directory renamed into place once complete, on a thread of
 * its own so calls keep flowing.
 *
 * A restore is offline: `dossier backup restore` copies a backup into an
 * empty data directory (checking every hash) and leaves a RESTORE marker.
 * At its next start, before serving, the node then (1) makes itself a
 * cluster of one voter at the state it had applied (other members join
 * later with dossier cluster add), and (2) replays the erasure ledger
 * given with the restore: every subject erased after the backup was taken
 * is erased again, through the ordinary erasure command, so that no
 * erased subject comes back. Only then is the marker removed. */
#ifndef DOSSIER_NODE_BACKUP_H
#define DOSSIER_NODE_BACKUP_H

#include "server.h"

struct cluster;

/* 1 if @data_dir holds a RESTORE marker not yet finished. */
int backup_restore_pending(const char *data_dir);

/* Step (1), before the cluster starts: rewrites @s's Raft state into a
 * one-voter cluster of node @self_id at @address. Errors: DOSSIER_IO,
 * DOSSIER_CORRUPT, DOSSIER_NOMEM. */
int backup_restore_membership(struct store *s, uint64_t self_id,
                              const char *address, struct dossier_status *st);

/* Step (2), once the cluster runs, before the server starts: waits for
 * this node to lead with its keys open, checks every certificate of the
 * ledger against the cluster's audit key, erases every subject not yet
 * erased here, and removes the marker. Errors: DOSSIER_INVALID_ARGUMENT
 * (a ledger line that is malformed or not signed by this cluster),
 * DOSSIER_UNAVAILABLE, DOSSIER_IO. */
int backup_restore_finish(struct node *n, const char *data_dir,
                          struct dossier_status *st);

/* Waits until no backup is being made (before the store closes). */
void backup_wait_idle(void);

/* At a stop: a backup under way is abandoned (its call answered
 * UNAVAILABLE) and no new one starts; returns once none runs. */
void backup_stop(void);

#endif
