/* The gRPC health service and the node state behind it (see health.h). */
#include "health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "errors.h"
#include "health.pb-c.h"
#include "log.h"
#include "store.h"

/* One Watch stream. Freed when its call is closed and no send of it is
 * still in flight. */
struct watcher {
    struct watcher *next;
    struct call *call;
    int known;     /* the service named is one of ours */
    int last_sent; /* ServingStatus last sent; 0: nothing yet */
    int sending;
    int ended;     /* the final status was asked for */
    int closed;    /* the call is over for the client */
};

/* Watch streams a node keeps at once (they need no credentials). */
#define WATCHERS_MAX 256

struct health {
    struct node *node;
    uint64_t max_lag;
    int poll_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping, quit, started;
    enum health_state state;
    const char *why;
    struct watcher *watchers;
    size_t n_watchers;
};

static int service_known(const char *name)
{
    return server_has_service(name ? name : "");
}

/* What the node is now; h->mu held. */
static enum health_state evaluate(struct health *h, const char **why)
{
    struct node *n = h->node;
    uint64_t commit, applied;

    if (h->stopping) {
        *why = "the node is stopping";
        return HEALTH_NOT_SERVING;
    }
    if (cluster_halted(n->cluster, NULL, 0)) {
        *why = "halted after a storage failure (see the log)";
        return HEALTH_NOT_SERVING;
    }
    if (!cluster_keys_ready(n->cluster)) {
        *why = "the cluster's keys are not open on this node yet";
        return HEALTH_NOT_SERVING;
    }
    if (cluster_leader(n->cluster, NULL, 0) == 0) {
        *why = "no leader is known";
        return HEALTH_NOT_SERVING;
    }
    commit = cluster_commit_index(n->cluster);
    applied = store_applied(n->store);
    if (commit > applied && commit - applied > h->max_lag) {
        *why = "catching up: committed entries are still to be applied";
        return HEALTH_NOT_SERVING;
    }
    *why = "";
    return HEALTH_SERVING;
}

static int status_for(const struct health *h, const struct watcher *w)
{
    if (!w->known)
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    return (int)h->state;
}

static void on_sent(struct call *c, int ok);

/* Sends @w its status if it changed and nothing is in flight; h->mu
 * held. */
static void push(struct health *h, struct watcher *w)
{
    Grpc__Health__V1__HealthCheckResponse r =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    int status = status_for(h, w);

    if (w->sending || w->ended || w->closed || w->last_sent == status)
        return;
    r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
    if (call_stream_send(w->call, &r.base, on_sent) == 0) {
        w->sending = 1;
        w->last_sent = status;
    }
}

static void remove_watcher(struct health *h, struct watcher *w)
{
    for (struct watcher **p = &h->watchers; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            h->n_watchers--;
            break;
        }
    free(w);
}

static void on_sent(struct call *c, int ok)
{
    struct health *h = call_node(c)->health;
    struct watcher *w = call_user(c);

    pthread_mutex_lock(&h->mu);
    w->sending = 0;
    if (w->closed)
        remove_watcher(h, w);
    else if (ok)
        push(h, w); /* it may have changed again meanwhile */
    pthread_mutex_unlock(&h->mu);
}

static void on_closed(struct call *c)
{
    struct health *h = call_node(c)->health;
    struct watcher *w = call_user(c);

    pthread_mutex_lock(&h->mu);
    w->closed = 1;
    if (!w->ended) { /* the client went away: finish our side too */
        w->ended = 1;
        call_stream_end(c);
    }
    if (!w->sending)
        remove_watcher(h, w);
    pthread_mutex_unlock(&h->mu);
}

/* Re-evaluates the state; on a change, logs it and tells every watcher.
 * h->mu held. */
static void update(struct health *h)
{
    const char *why;
    enum health_state s = evaluate(h, &why);

    if (s == h->state && why == h->why)
        return;
    if (s == HEALTH_SERVING)
        log_printf(LOG_INFO, "health: SERVING");
    else
        log_printf(LOG_INFO, "health: NOT_SERVING (%s)", why);
    h->state = s;
    h->why = why;
    for (struct watcher *w = h->watchers; w; w = w->next)
        push(h, w);
}

static void *health_main(void *arg)
{
    struct health *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->quit) {
        struct timespec until;
        update(h);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)h->poll_ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&h->cv, &h->mu, &until);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

int health_start(struct node *n, uint64_t max_lag, int poll_ms,
                 struct health **out, struct dossier_status *st)
{
    struct health *h = calloc(1, sizeof(*h));
    *out = NULL;
    if (!h)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    h->node = n;
    h->max_lag = max_lag;
    h->poll_ms = poll_ms > 0 ? poll_ms : 100;
    h->state = HEALTH_NOT_SERVING;
    h->why = "";
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (pthread_create(&h->thread, NULL, health_main, h) != 0) {
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        free(h);
        return err_set(st, DOSSIER_INTERNAL,
                       "cannot start the health thread");
    }
    h->started = 1;
    *out = h;
    return err_ok(st);
}

enum health_state health_state(struct health *h, const char **why)
{
    enum health_state s;
    if (!h) {
        if (why)
            *why = "starting";
        return HEALTH_NOT_SERVING;
    }
    pthread_mutex_lock(&h->mu);
    update(h);
    s = h->state;
    if (why)
        *why = h->why;
    pthread_mutex_unlock(&h->mu);
    return s;
}

void health_shutdown(struct health *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stopping = 1;
    h->state = HEALTH_NOT_SERVING;
    h->why = "the node is stopping";
    for (struct watcher *w = h->watchers; w; w = w->next)
        if (!w->ended && !w->closed) {
            w->ended = 1;
            call_fail(w->call, DOSSIER_UNAVAILABLE, "the node is stopping");
        }
    pthread_mutex_unlock(&h->mu);
    log_printf(LOG_INFO, "health: NOT_SERVING (the node is stopping)");
}

void health_free(struct health *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->quit = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    /* The server has stopped: every stream was closed and its watcher
     * freed; anything left is only memory. */
    while (h->watchers) {
        struct watcher *w = h->watchers;
        h->watchers = w->next;
        free(w);
    }
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

void api_health_check(struct call *c, ProtobufCMessage *msg)
{
    Grpc__Health__V1__HealthCheckRequest *req =
        (Grpc__Health__V1__HealthCheckRequest *)msg;
    Grpc__Health__V1__HealthCheckResponse r =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

    if (!service_known(req->service))
        return call_fail(c, DOSSIER_NOT_FOUND,
                         "unknown service '%.100s': ask for \"\" (the node) "
                         "or a dossier.v1 service",
                         req->service);
    r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)
        health_state(call_node(c)->health, NULL);
    call_reply(c, &r.base);
}

void api_health_watch(struct call *c, ProtobufCMessage *msg)
{
    Grpc__Health__V1__HealthCheckRequest *req =
        (Grpc__Health__V1__HealthCheckRequest *)msg;
    struct health *h = call_node(c)->health;
    struct watcher *w;

    if (!h)
        return call_fail(c, DOSSIER_UNAVAILABLE, "the node is starting");
    w = calloc(1, sizeof(*w));
    if (!w)
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    w->call = c;
    w->known = service_known(req->service);
    call_set_user(c, w);
    pthread_mutex_lock(&h->mu);
    if (h->stopping) {
        pthread_mutex_unlock(&h->mu);
        free(w);
        call_set_user(c, NULL);
        return call_fail(c, DOSSIER_UNAVAILABLE, "the node is stopping");
    }
    if (h->n_watchers >= WATCHERS_MAX) {
        pthread_mutex_unlock(&h->mu);
        free(w);
        call_set_user(c, NULL);
        return call_fail(c, DOSSIER_UNAVAILABLE,
                         "%d health watchers already; use Check",
                         WATCHERS_MAX);
    }
    if (call_stream_open(c, on_closed) != 0) {
        pthread_mutex_unlock(&h->mu);
        free(w);
        call_set_user(c, NULL);
        return call_fail(c, DOSSIER_UNAVAILABLE, "the call ended");
    }
    w->next = h->watchers;
    h->watchers = w;
    h->n_watchers++;
    update(h);
    push(h, w); /* the first message: the state now */
    pthread_mutex_unlock(&h->mu);
}
