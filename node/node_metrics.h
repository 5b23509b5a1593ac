/* The node's Prometheus metrics (see docs/OPERATIONS.md, "Metrics", for
 * what each means): calls per gRPC method and status with their latency,
 * and, read at each scrape, Raft, RocksDB, audit, erasure and health
 * state. Served over HTTP by metrics.c's exporter on --metrics-listen. */
#ifndef DOSSIER_NODE_NODE_METRICS_H
#define DOSSIER_NODE_NODE_METRICS_H

#include <stddef.h>

#include "server.h"

struct node_metrics;

/* Registers the metrics of node @n (borrowed; its parts may be set later,
 * a scrape reads what is set) and serves them on @listen ("host:port",
 * IPv4; port 0 picks one), the bound address into @bound.
 * Errors: DOSSIER_INVALID_ARGUMENT (bad address), DOSSIER_UNAVAILABLE
 * (cannot bind), DOSSIER_NOMEM. */
int node_metrics_start(struct node *n, const char *listen,
                       struct node_metrics **out, char *bound, size_t cap,
                       struct dossier_status *st);

/* Counts one answered call of method @path (e.g.
 * "/dossier.v1.Records/Get") with Dossier code @code, @seconds after it
 * arrived. NULL @m: a no-op. Thread-safe. */
void node_metrics_call(struct node_metrics *m, const char *path, int code,
                       double seconds);

/* Stops serving and frees @m. NULL is a no-op. */
void node_metrics_free(struct node_metrics *m);

#endif
