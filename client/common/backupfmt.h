/* What a backup is on disk, shared by the node that makes one and the CLI
 * that restores it (see docs/OPERATIONS.md, "Backup and restore").
 *
 *   <backup-dir>/<name>/DOSSIER       the data directory marker
 *   <backup-dir>/<name>/db/...        a RocksDB checkpoint
 *   <backup-dir>/<name>/BACKUP.json   the manifest: name, node, applied
 *                                     index, and every file with its
 *                                     size and SHA-256
 *
 * A restored data directory also holds RESTORE (the backup's name; the
 * node, at its next start, makes itself a one-node cluster and replays
 * the erasure ledger, then deletes it) and, unless the operator declined,
 * restore-ledger.jsonl (the certificates of `dossier subject ledger`). */
#ifndef DOSSIER_COMMON_BACKUPFMT_H
#define DOSSIER_COMMON_BACKUPFMT_H

#define BACKUP_MANIFEST "BACKUP.json"
#define BACKUP_FORMAT 1
#define BACKUP_RESTORE_MARKER "RESTORE"
#define BACKUP_RESTORE_LEDGER "restore-ledger.jsonl"

#endif
