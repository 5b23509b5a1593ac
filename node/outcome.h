/* An outcome a thread waits for: a proposed command's result, or a
 * forwarded call's code, delivered by a callback on another thread.
 *
 * The outcome is held twice, by the waiting thread and by the callback,
 * and freed by whichever lets go last, so a thread that stops waiting (a
 * stop, a timeout) never leaves the callback a dangling pointer:
 *
 *   struct outcome *o = outcome_new();
 *   if (cluster_submit(cl, buf, len, outcome_applied, o) != 0)
 *       outcome_abandon(o);             (the callback never runs)
 *   else if (!outcome_wait(o, 5000, &stopping, &res))
 *       ...                             (no outcome in time: o is gone)
 *
 * Used by the key rotation thread (keys.c), the retention sweeper
 * (retention.c) and the erasure reporter (erasure.c). */
#ifndef DOSSIER_NODE_OUTCOME_H
#define DOSSIER_NODE_OUTCOME_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct outcome;

/* A new outcome, held by the caller and by the callback still to run.
 * NULL: out of memory. */
struct outcome *outcome_new(void);

/* Callbacks delivering it (and letting go of the callback's hold):
 * outcome_applied is a cluster_done_cb (the result is copied);
 * outcome_forwarded is a cluster_forward_cb (the result gets @code and
 * @message; the reply is ignored). @arg is the outcome. */
void outcome_applied(void *arg, const struct store_result *res);
void outcome_forwarded(void *arg, int code, const char *message,
                       const uint8_t *reply, size_t len);

/* The callback will never run (the submission failed): frees @o. */
void outcome_abandon(struct outcome *o);

/* Waits for @o's outcome up to @timeout_ms (negative: no limit), in
 * slices of 100 ms so that a stop is noticed: it gives up early once
 * *@stop (may be NULL; read atomically) is non-zero. 1 and the result in
 * *@out when it came, else 0 (*@out untouched). Lets go of the caller's
 * hold either way: @o must not be used afterwards. */
int outcome_wait(struct outcome *o, int64_t timeout_ms, const int *stop,
                 struct store_result *out);

#endif
