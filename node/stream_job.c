/* Server-streaming calls answered from a thread of their own. */
#include "stream_job.h"

#include <stdlib.h>

#include "errors.h"

struct stream_job {
    struct call *call;
    struct stream_group *g;
    stream_job_fn run;
    void *user;
    void (*free_user)(void *);
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sending, broken, closed;
    int refs; /* the thread and the close callback */
};

static void running_add(struct stream_group *g, int d)
{
    pthread_mutex_lock(&g->mu);
    g->running += d;
    if (g->running == 0)
        pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

int stream_group_stopping(struct stream_group *g)
{
    return __atomic_load_n(&g->stopping, __ATOMIC_ACQUIRE);
}

void stream_group_wait_idle(struct stream_group *g)
{
    pthread_mutex_lock(&g->mu);
    while (g->running > 0)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

void stream_group_stop(struct stream_group *g)
{
    __atomic_store_n(&g->stopping, 1, __ATOMIC_RELEASE);
    stream_group_wait_idle(g);
}

static void job_free(struct stream_job *j)
{
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    if (j->free_user)
        j->free_user(j->user);
    free(j);
}

static void job_unref(struct stream_job *j)
{
    int last;
    pthread_mutex_lock(&j->mu);
    last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (last)
        job_free(j);
}

static void on_sent(struct call *c, int ok)
{
    struct stream_job *j = call_user(c);
    pthread_mutex_lock(&j->mu);
    j->sending = 0;
    if (!ok)
        j->broken = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void on_closed(struct call *c)
{
    struct stream_job *j = call_user(c);
    pthread_mutex_lock(&j->mu);
    j->closed = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
}

struct call *stream_job_call(const struct stream_job *j)
{
    return j->call;
}

void *stream_job_user(const struct stream_job *j)
{
    return j->user;
}

int stream_job_over(struct stream_job *j)
{
    int over;
    if (stream_group_stopping(j->g))
        return 1;
    pthread_mutex_lock(&j->mu);
    over = j->closed || j->broken;
    pthread_mutex_unlock(&j->mu);
    return over;
}

int stream_job_send(struct stream_job *j, const ProtobufCMessage *m)
{
    int ok;
    if (stream_group_stopping(j->g))
        return -1;
    pthread_mutex_lock(&j->mu);
    if (j->closed || j->broken) {
        pthread_mutex_unlock(&j->mu);
        return -1;
    }
    j->sending = 1;
    if (call_stream_send(j->call, m, on_sent) != 0) {
        j->sending = 0;
        pthread_mutex_unlock(&j->mu);
        return -1;
    }
    while (j->sending)
        pthread_cond_wait(&j->cv, &j->mu);
    ok = !j->broken && !j->closed;
    pthread_mutex_unlock(&j->mu);
    return ok ? 0 : -1;
}

static void *job_main(void *arg)
{
    struct stream_job *j = arg;
    struct stream_group *g = j->g;
    j->run(j);
    job_unref(j);
    running_add(g, -1);
    return NULL;
}

void stream_job_start(struct call *c, struct stream_group *g,
                      stream_job_fn run, void *user,
                      void (*free_user)(void *))
{
    struct stream_job *j;
    pthread_attr_t attr;
    pthread_t t;

    pthread_mutex_lock(&g->mu);
    if (g->running >= g->max || stream_group_stopping(g)) {
        int stopping = stream_group_stopping(g);
        pthread_mutex_unlock(&g->mu);
        if (free_user)
            free_user(user);
        if (stopping)
            return call_fail(c, DOSSIER_UNAVAILABLE, "the node is stopping");
        return call_fail(c, DOSSIER_UNAVAILABLE,
                         "%d %ss are running on this node; retry when one "
                         "has ended, or on another node",
                         g->max, g->what);
    }
    g->running++; /* reserved here, so that max holds under a race */
    pthread_mutex_unlock(&g->mu);
    j = calloc(1, sizeof(*j));
    if (!j) {
        running_add(g, -1);
        if (free_user)
            free_user(user);
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    }
    j->call = c;
    j->g = g;
    j->run = run;
    j->user = user;
    j->free_user = free_user;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 2;
    call_set_user(c, j);
    if (call_stream_open(c, on_closed) != 0) {
        call_set_user(c, NULL);
        running_add(g, -1);
        job_free(j);
        return call_fail(c, DOSSIER_UNAVAILABLE, "the call ended");
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, job_main, j) != 0) {
        running_add(g, -1);
        job_unref(j); /* the thread's reference */
        call_fail(c, DOSSIER_UNAVAILABLE, "cannot start a %s thread",
                  g->what);
    }
    pthread_attr_destroy(&attr);
}
