/* `dossier backup restore`: a backup made by a node (backupfmt.h) copied
 * into a new data directory, every file checked against the manifest's
 * SHA-256, with the erasure ledger to replay and the RESTORE marker the
 * node acts on at its next start. Plain file work: no node is called. */
#ifndef DOSSIER_TOOLS_RESTORE_H
#define DOSSIER_TOOLS_RESTORE_H

#include <stddef.h>

#include <jansson.h>

enum restore_result {
    RESTORE_OK = 0,
    RESTORE_BAD_INPUT,  /* not a backup, damaged file, bad ledger line */
    RESTORE_NOT_EMPTY,  /* the data directory holds something already */
    RESTORE_IO,         /* cannot read or write */
};

/* Restores @backup (a backup's directory) into @data_dir (missing or
 * empty). The summary names the master key versions the backup is sealed
 * under ("master_keys": [{"version", "key_id"}], when the manifest says):
 * the node started on it needs each in its key file. @ledger: a file of `dossier subject ledger` lines, or NULL to
 * restore without one. On success *@summary describes what was done. On
 * failure @err says why and whatever was copied is removed again. */
enum restore_result restore_backup(const char *backup, const char *data_dir,
                                   const char *ledger, json_t **summary,
                                   char *err, size_t cap);

#endif
