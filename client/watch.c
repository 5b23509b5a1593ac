/* The change feed: dossier_watch(), which resumes a broken stream from
 * the change after the last one it delivered. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "errors.h"
#include "internal.h"

static const char *const change_names[] = {
    [DOSSIER_CHANGE_PUT] = "put",         [DOSSIER_CHANGE_DELETE] = "delete",
    [DOSSIER_CHANGE_ERASE] = "erase",     [DOSSIER_CHANGE_CONSENT] = "consent",
    [DOSSIER_CHANGE_EXPIRE] = "expire",   [DOSSIER_CHANGE_PROGRESS] = "progress",
};

const char *dossier_change_type_name(enum dossier_change_type t)
{
    if ((int)t < DOSSIER_CHANGE_PUT || (int)t > DOSSIER_CHANGE_PROGRESS)
        return "unknown";
    return change_names[t];
}

struct watch_state {
    dossier_change_fn fn;
    void *arg;
    struct dossier_watch_position pos; /* the next change to deliver */
    int stopped;                       /* fn asked to stop */
};

static int change_cb(void *arg, ProtobufCMessage *msg,
                     struct dossier_status *st)
{
    struct watch_state *w = arg;
    Dossier__V1__ChangeEvent *ev = (Dossier__V1__ChangeEvent *)msg;
    struct dossier_change ch;
    struct dossier_record *r = NULL;
    int rc;

    memset(&ch, 0, sizeof(ch));
    if (ev->type < DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_PUT ||
        ev->type > DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_PROGRESS ||
        (ev->subject_ref.len != 0 && ev->subject_ref.len != 16) ||
        strlen(ev->purpose) > DOSSIER_PURPOSE_NAME_MAX)
        return err_set(st, DOSSIER_INTERNAL,
                       "the node sent a change this client does not know");
    /* Changes come in order; one before the position was delivered
     * already (a resumed stream never repeats one, but check). */
    if (ev->type != DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_PROGRESS &&
        (ev->revision < w->pos.revision ||
         (ev->revision == w->pos.revision && ev->seq < w->pos.seq)))
        return err_set(st, DOSSIER_INTERNAL,
                       "the node sent change %llu.%u, before %llu.%u",
                       (unsigned long long)ev->revision, ev->seq,
                       (unsigned long long)w->pos.revision, w->pos.seq);
    ch.type = (enum dossier_change_type)ev->type;
    ch.revision = ev->revision;
    ch.seq = ev->seq;
    ch.time_ms = ev->time_ms;
    if (ev->subject_ref.len)
        sodium_bin2hex(ch.subject_ref, sizeof(ch.subject_ref),
                       ev->subject_ref.data, ev->subject_ref.len);
    ch.content_erased = ev->content_erased;
    ch.record_expired = ev->record_expired;
    snprintf(ch.purpose, sizeof(ch.purpose), "%s", ev->purpose);
    ch.consent_state = (enum dossier_consent_state)ev->consent_state;
    if (ev->record) {
        if (!(r = record_from_pb(ev->record)))
            return err_set(st, DOSSIER_NOMEM, "out of memory");
        ch.record = r;
    }
    rc = w->fn(w->arg, &ch);
    dossier_record_free(r);
    /* Where to resume: after this change, or past a progress mark. */
    if (ch.type == DOSSIER_CHANGE_PROGRESS) {
        if (ev->revision >= w->pos.revision) {
            w->pos.revision = ev->revision + 1;
            w->pos.seq = 0;
        }
    } else {
        w->pos.revision = ev->revision;
        w->pos.seq = ev->seq + 1;
    }
    if (rc) {
        w->stopped = 1;
        return err_set(st, DOSSIER_CANCELLED, "stopped by the callback");
    }
    return 0;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int dossier_watch(struct dossier_client *c, const struct dossier_call_options *co,
                  const struct dossier_watch_options *o, dossier_change_fn fn,
                  void *arg, struct dossier_watch_position *next,
                  struct dossier_status *st)
{
    Dossier__V1__WatchRequest req = DOSSIER__V1__WATCH_REQUEST__INIT;
    struct dossier_call_options opts = {0};
    struct watch_state w;
    int64_t timeout, deadline;
    int rc;

    if (!c || !fn)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "client or callback is missing");
    if (o && o->n_kinds && !o->kinds)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "kinds is missing");
    if (co)
        opts = *co;
    timeout = opts.timeout_ms > 0 ? opts.timeout_ms : client_timeout_ms(c);
    deadline = mono_ms() + timeout;
    memset(&w, 0, sizeof(w));
    w.fn = fn;
    w.arg = arg;
    if (o)
        w.pos = o->start;
    req.n_kinds = o ? o->n_kinds : 0;
    req.kinds = req.n_kinds ? (char **)o->kinds : NULL;
    for (;;) {
        struct dossier_watch_position before = w.pos;
        int64_t left = deadline - mono_ms();
        if (left <= 0) {
            rc = err_set(st, DOSSIER_DEADLINE_EXCEEDED,
                         "the watch reached its deadline");
            break;
        }
        opts.timeout_ms = left;
        req.start_revision = w.pos.revision;
        req.start_seq = w.pos.seq;
        rc = client_stream(c, &opts, M_WATCH, &req.base,
                           &dossier__v1__change_event__descriptor, change_cb,
                           &w, st);
        if (w.stopped) {
            rc = err_ok(st);
            break;
        }
        /* A stream that ended after delivering something (its node
         * stopped or went away) resumes where it broke, elsewhere if need
         * be; one that delivered nothing already failed over inside. A
         * watch that began "from now" resumes from its first progress. */
        if ((rc == DOSSIER_UNAVAILABLE || rc == DOSSIER_CANCELLED ||
             rc == 0) &&
            (w.pos.revision != before.revision || w.pos.seq != before.seq))
            continue;
        if (rc == 0) /* the node ended the stream without a reason */
            rc = err_set(st, DOSSIER_UNAVAILABLE,
                         "the node ended the change feed");
        break;
    }
    if (next)
        *next = w.pos;
    return rc;
}
