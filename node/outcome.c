/* Outcomes awaited by a thread (see outcome.h). */
#include "outcome.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errors.h"

#define SLICE_MS 100

struct outcome {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs, done;
    struct store_result res;
};

struct outcome *outcome_new(void)
{
    struct outcome *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    o->refs = 2;
    return o;
}

static void outcome_unref(struct outcome *o)
{
    int last;
    pthread_mutex_lock(&o->mu);
    last = --o->refs == 0;
    pthread_mutex_unlock(&o->mu);
    if (last) {
        pthread_mutex_destroy(&o->mu);
        pthread_cond_destroy(&o->cv);
        free(o);
    }
}

static void settle(struct outcome *o, const struct store_result *res)
{
    pthread_mutex_lock(&o->mu);
    o->res = *res;
    o->done = 1;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
    outcome_unref(o);
}

void outcome_applied(void *arg, const struct store_result *res)
{
    settle(arg, res);
}

void outcome_forwarded(void *arg, int code, const char *message,
                       const uint8_t *reply, size_t len)
{
    struct store_result res;
    (void)reply;
    (void)len;
    memset(&res, 0, sizeof(res));
    res.status.code = code;
    snprintf(res.status.message, sizeof(res.status.message), "%s",
             message ? message : "");
    settle(arg, &res);
}

void outcome_abandon(struct outcome *o)
{
    o->refs = 1; /* the callback's hold goes with the caller's */
    outcome_unref(o);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int outcome_wait(struct outcome *o, int64_t timeout_ms, const int *stop,
                 struct store_result *out)
{
    int64_t end = mono_ms() + timeout_ms;
    int done;

    pthread_mutex_lock(&o->mu);
    while (!o->done && (timeout_ms < 0 || mono_ms() < end) &&
           !(stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE))) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += SLICE_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&o->cv, &o->mu, &until);
    }
    done = o->done;
    if (done)
        *out = o->res;
    pthread_mutex_unlock(&o->mu);
    outcome_unref(o);
    return done;
}
