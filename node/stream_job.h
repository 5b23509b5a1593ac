/* Server-streaming calls answered from a thread of their own: one message
 * at a time, waiting for each to leave, so that a slow reader holds no
 * lock and no completion-queue thread. Subject exports and change-feed
 * watchers are such streams. */
#ifndef DOSSIER_NODE_STREAM_JOB_H
#define DOSSIER_NODE_STREAM_JOB_H

#include <pthread.h>

#include <protobuf-c/protobuf-c.h>

#include "server.h"

/* Streams of one kind: how many run, how many may, and whether the node is
 * stopping them. */
struct stream_group {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running;
    int max;
    int stopping;
    const char *what; /* "export", for messages */
};

#define STREAM_GROUP_INIT(max_, what_)                                      \
    {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, (max_), 0,     \
     (what_)}

struct stream_job;

/* What a stream's thread runs: it sends with stream_job_send() and ends
 * the call with call_stream_end() or call_fail*() on stream_job_call(). */
typedef void (*stream_job_fn)(struct stream_job *j);

/* Makes @c a stream of @g served by a new thread running @run; @user
 * (freed with @free_user once the thread and the call are done) is the
 * job's state. When @g is full, the node stopping or no thread can start,
 * answers @c with UNAVAILABLE instead (and frees @user). */
void stream_job_start(struct call *c, struct stream_group *g,
                      stream_job_fn run, void *user,
                      void (*free_user)(void *));

struct call *stream_job_call(const struct stream_job *j);
void *stream_job_user(const struct stream_job *j);

/* Sends @m and waits until it has left: 0, or -1 when the reader is gone
 * or the node is stopping. */
int stream_job_send(struct stream_job *j, const ProtobufCMessage *m);

/* 1 once the reader is gone or the node is stopping. */
int stream_job_over(struct stream_job *j);

/* 1 while the node is stopping the streams of @g. */
int stream_group_stopping(struct stream_group *g);

/* Waits until no stream of @g runs. */
void stream_group_wait_idle(struct stream_group *g);

/* The streams of @g end (their calls answered) and no new one starts;
 * returns once none runs. */
void stream_group_stop(struct stream_group *g);

#endif
