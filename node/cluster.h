/* Where writes go: every mutation is a packed Command handed to
 * cluster_submit(), applied by store_apply() and made durable before its
 * callback runs. On a single node one writer thread takes every pending
 * command, applies them all into one batch and makes one synced RocksDB
 * write (group commit). Replication replaces the inside of this module (the
 * writer becomes the raft loop) without changing its interface. */
#ifndef DOSSIER_NODE_CLUSTER_H
#define DOSSIER_NODE_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Called once per submitted command, on the writer thread, after the batch
 * holding it is durable (or failed). @res is borrowed for the call. The
 * callback may submit again; it must not block for long: the next batch
 * waits for it. */
typedef void (*cluster_done_cb)(void *arg, const struct store_result *res);

struct cluster;

/* Starts the writer over @s (borrowed). @max_batch bounds the commands of
 * one write. Errors: DOSSIER_NOMEM, DOSSIER_INTERNAL (no thread). */
int cluster_start(struct store *s, size_t max_batch, struct cluster **out,
                  struct dossier_status *st);

/* Submits the packed Command @data (@len bytes, taken: freed with free()
 * whatever the outcome). @cb runs exactly once, unless this returns an
 * error. Errors: DOSSIER_UNAVAILABLE (stopping). */
int cluster_submit(struct cluster *cl, uint8_t *data, size_t len,
                   cluster_done_cb cb, void *arg);

/* Applies what is pending, stops the writer and frees @cl. NULL is a
 * no-op. */
void cluster_stop(struct cluster *cl);

/* Counters since start, for benchmarks and metrics. */
struct cluster_stats {
    uint64_t commands;
    uint64_t batches;
};
void cluster_stats(struct cluster *cl, struct cluster_stats *out);

#endif
