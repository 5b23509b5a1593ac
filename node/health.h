/* The standard gRPC health service (grpc.health.v1.Health) and the state
 * it reports. A node is SERVING when it can answer data calls correctly
 * and promptly: the cluster's keys are open on it, it knows a leader, it
 * has applied what it knows to be committed (within --health-max-lag
 * entries), and it is not stopping. Otherwise NOT_SERVING, so that a load
 * balancer or a Kubernetes readiness probe sends traffic elsewhere.
 *
 * Service "" is the node as a whole; the names of Dossier's client
 * services ("dossier.v1.Records", ...) answer the same; any other name is
 * NOT_FOUND (Check) or SERVICE_UNKNOWN (Watch). Health calls need no
 * credentials and are not audited: they carry no data. */
#ifndef DOSSIER_NODE_HEALTH_H
#define DOSSIER_NODE_HEALTH_H

#include <stdint.h>

#include "server.h"

enum health_state {
    HEALTH_SERVING = 1,     /* the values of the proto's ServingStatus */
    HEALTH_NOT_SERVING = 2,
};

struct health;

/* Starts watching node @n (borrowed; store and cluster set), re-evaluated
 * every @poll_ms (0: 100). @max_lag: committed entries a node may still
 * have to apply and be SERVING. Errors: DOSSIER_NOMEM, DOSSIER_INTERNAL. */
int health_start(struct node *n, uint64_t max_lag, int poll_ms,
                 struct health **out, struct dossier_status *st);

/* The state now, and why when not serving (a static string, "" when
 * serving). NULL @h: NOT_SERVING. */
enum health_state health_state(struct health *h, const char **why);

/* The node is stopping: NOT_SERVING from now on, and every Watch stream
 * ends with UNAVAILABLE. Call before the server drains its calls. */
void health_shutdown(struct health *h);

/* Stops the thread and frees @h (after the server has stopped). */
void health_free(struct health *h);

/* The handlers of Health/Check and Health/Watch. */
void api_health_check(struct call *c, ProtobufCMessage *req);
void api_health_watch(struct call *c, ProtobufCMessage *req);

#endif
