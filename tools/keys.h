/* `dossier keys status|rotate` and `dossier keygen --add-version`: master
 * key versions and their rotation. */
#ifndef DOSSIER_TOOLS_KEYS_H
#define DOSSIER_TOOLS_KEYS_H

#include <stddef.h>

#include <jansson.h>

#include <dossier/dossier.h>

/* A new JSON object for @s (NULL when out of memory):
 *   {"node_id": 1, "active_version": 2, "active_key_id": "..",
 *    "loaded": [{"version": 1, "key_id": ".."}, ...],
 *    "rotation": {"running": false, "from_version": 1, "to_version": 2,
 *                 "subjects": 500, "rewrapped": 500, "skipped": 0,
 *                 "started_ms": .., "started_by": "ops",
 *                 "finished_ms": ..}}          (rotation: null if none) */
json_t *json_from_keys_status(const struct dossier_keys_status *s);

/* What the CLI lends the command: a connected client and how to print. */
struct keys_cli {
    struct dossier_client *client;
    size_t json_flags;
    /* Prints @st and returns the CLI's exit code for it. */
    int (*report)(const struct dossier_status *st);
};

/* `keys status` and `keys rotate [--version N] [--no-wait]`, argv[0] being
 * "keys". Returns the exit code. */
int keys_command(struct keys_cli *k, int argc, char **argv);

/* `keygen --add-version FILE`: returns the exit code. */
int keys_add_version(const char *path);

#endif
