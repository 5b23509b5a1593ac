/* Watch/Changes: the change feed. Each watcher is a stream of its own
 * (stream_job.h) that reads the changes family (store.h) from where the
 * watcher asked, sends what its purpose may see, filtered exactly as reads
 * are, and then waits for the next commit.
 *
 * A watcher's position is the next change to look at, (revision, seq).
 * It moves past every change looked at, sent or left out, and past the
 * head once caught up, so a PROGRESS message always names a revision up to
 * which the watcher has been told everything it may see. A watcher that
 * is sent nothing for a second while its position moves (every change
 * left out: another kind, a subject its purpose may not see) hears a
 * PROGRESS, so its resume position keeps up with the feed and does not
 * fall below the floor while it waits for a change of its own. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "errors.h"
#include "log.h"
#include "policy.h"
#include "records.h"
#include "store.h"
#include "stream_job.h"

/* Watchers one node serves at once; more are refused until one ends. */
#define WATCHERS_MAX 64
/* Kinds one watcher may name. */
#define WATCH_KINDS_MAX 64
/* Changes read from the store at a time. */
#define WATCH_SLICE 128
/* Longest wait for a commit before looking at the reader again. */
#define WATCH_WAIT_MS 500
/* Longest wait for this node to apply up to a start it has not reached
 * (a serializable watch on a lagging follower), before the watcher is
 * told to go elsewhere; at most half the time the call has left. */
#define WATCH_BEHIND_WAIT_MS 5000
/* A watcher hears PROGRESS at most this often when it has been sent
 * nothing since its position moved, and at least this often (heartbeat)
 * when nothing happens at all. */
#define WATCH_PROGRESS_MS 1000
#define WATCH_HEARTBEAT_MS 5000

static struct stream_group watchers =
    STREAM_GROUP_INIT(WATCHERS_MAX, "watcher");

void api_watch_stop(void)
{
    stream_group_stop(&watchers);
}

struct watch_job {
    struct stream_job *stream;
    struct node *node;
    char **kinds;
    size_t n_kinds;
    uint64_t rev; /* the next change to look at */
    uint32_t seq;
    uint64_t looked_at, left_out, sent;
};

static void watch_job_free(void *arg)
{
    struct watch_job *j = arg;
    for (size_t i = 0; i < j->n_kinds; i++)
        free(j->kinds[i]);
    free(j->kinds);
    free(j);
}

/* Sends @ev to the watcher: 0, or -1 when the reader is gone. */
static int watch_send(struct watch_job *j, Dossier__V1__ChangeEvent *ev)
{
    int rc = stream_job_send(j->stream, &ev->base);
    if (rc == 0)
        j->sent++;
    return rc;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int kind_wanted(const struct watch_job *j, const char *kind)
{
    if (!j->n_kinds)
        return 1;
    for (size_t i = 0; i < j->n_kinds; i++)
        if (strcmp(j->kinds[i], kind) == 0)
            return 1;
    return 0;
}

/* Whether the record of @e can no longer be opened because its subject
 * was erased since (no data key, or a new one): @dek_id sealed it. */
static int content_erased(struct node *n,
                          const Dossier__Store__V1__ChangeEntry *e,
                          uint64_t dek_id)
{
    struct dossier_status st;
    SubjectKey *sk;
    int gone;

    if (e->subject.len != STORE_SP_BYTES)
        return 0;
    if (store_subject_key_get(n->store, e->subject.data, &sk, &st) != 0)
        return st.code == DOSSIER_NOT_FOUND;
    gone = sk->dek_id != dek_id;
    dossier__store__v1__subject_key__free_unpacked(sk, NULL);
    return gone;
}

/* Sends the record change @ch, or leaves it out (another kind, a subject
 * the purpose may not see). 0, -1 (the reader is gone) or an error code
 * with @st set. */
static int send_record_change(struct watch_job *j,
                              const struct store_change *ch,
                              Dossier__V1__ChangeEvent *ev,
                              struct dossier_status *st)
{
    const Dossier__Store__V1__ChangeEntry *e = ch->e;
    struct call *c = stream_job_call(j->stream);
    int personal = e->subject.len == STORE_SP_BYTES, rc;
    /* A record that expired whole is shown as a deletion is. */
    int is_delete = e->type == DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_DELETE ||
                    (e->type == DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_EXPIRE &&
                     e->whole_record);
    Dossier__V1__Record gone = DOSSIER__V1__RECORD__INIT;
    struct records_opened o;
    StoredRecord *sr;
    uint64_t dek_id, version;

    if (!kind_wanted(j, e->kind) || e->rid.len != STORE_RID_BYTES) {
        j->left_out++;
        return 0;
    }
    if (personal) {
        rc = api_subject_visible(c, e->subject.data, st);
        if (rc == DOSSIER_PERMISSION_DENIED) {
            j->left_out++;
            return 0;
        }
        if (rc)
            return rc;
    }
    sr = dossier__store__v1__stored_record__unpack(NULL, e->record.len,
                                                   e->record.data);
    if (!sr)
        return err_set(st, DOSSIER_CORRUPT, "a change feed entry holds a "
                                            "malformed record");
    dek_id = sr->dek_id;
    version = sr->version;
    /* A deletion tells which record went: no fields, no links. */
    rc = records_open(j->node, sr, e->rid.data,
                      RECORDS_AS_STORED |
                          (is_delete ? 0 : api_visible_categories(c)),
                      &o, st);
    if (rc == DOSSIER_CORRUPT && content_erased(j->node, e, dek_id)) {
        gone.kind = e->kind;
        gone.version = version;
        ev->record = &gone;
        ev->content_erased = 1;
        return watch_send(j, ev);
    }
    if (rc)
        return rc;
    if (is_delete) {
        o.rec.n_links = 0;
        o.rec.n_fields = 0;
    }
    ev->record = &o.rec;
    rc = watch_send(j, ev);
    if (rc == 0 && personal)
        call_audit_read(c, e->subject.data, e->rid.data, 1);
    records_opened_release(&o);
    return rc;
}

/* Whether the watcher may be told of consent change @e: only a change of
 * consent to its own purpose (what another purpose rests on is not its
 * business: Consent/History is for compliance), and only about a subject
 * whose processing is not restricted, unless its purpose is legal_claims,
 * as for reads. 0 if so, DOSSIER_PERMISSION_DENIED if not, or a read
 * error with @st set. A withdrawal reaches the watchers of its purpose,
 * although the subject's records no longer do: that is what they must
 * act on. */
static int consent_visible(struct watch_job *j,
                           const Dossier__Store__V1__ChangeEntry *e,
                           struct dossier_status *st)
{
    struct call *c = stream_job_call(j->stream);
    const char *purpose = call_purpose(c);
    int rc;

    if (!purpose || strcmp(e->purpose, purpose) != 0 ||
        e->subject.len != STORE_SP_BYTES)
        return DOSSIER_PERMISSION_DENIED;
    if (strcmp(purpose, POLICY_LEGAL_CLAIMS) == 0)
        return 0;
    rc = store_restricted(j->node->store, e->subject.data, st);
    if (rc == 1)
        return DOSSIER_PERMISSION_DENIED;
    return rc;
}

/* Sends change @ch if the watcher may see it: 0, -1 (the reader is gone)
 * or an error code with @st set. */
static int send_change(struct watch_job *j, const struct store_change *ch,
                       struct dossier_status *st)
{
    const Dossier__Store__V1__ChangeEntry *e = ch->e;
    Dossier__V1__ChangeEvent ev = DOSSIER__V1__CHANGE_EVENT__INIT;
    int rc;

    ev.type = e->type;
    ev.record_expired = e->whole_record;
    ev.revision = ch->rev;
    ev.seq = ch->seq;
    ev.time_ms = e->time_ms;
    if (e->subject.len == STORE_SP_BYTES)
        ev.subject_ref = e->subject;
    switch (e->type) {
    case DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_PUT:
    case DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_EXPIRE:
    case DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_DELETE:
        return send_record_change(j, ch, &ev, st);
    case DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_CONSENT:
        rc = consent_visible(j, e, st);
        if (rc == DOSSIER_PERMISSION_DENIED) {
            j->left_out++;
            return 0;
        }
        if (rc)
            return rc;
        ev.purpose = e->purpose;
        ev.consent_state = e->state;
        return watch_send(j, &ev);
    case DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_ERASE:
        return watch_send(j, &ev);
    default:
        return err_set(st, DOSSIER_CORRUPT,
                       "a change feed entry of an unknown type (%d)",
                       (int)e->type);
    }
}

static int send_progress(struct watch_job *j, uint64_t head)
{
    Dossier__V1__ChangeEvent ev = DOSSIER__V1__CHANGE_EVENT__INIT;
    ev.type = DOSSIER__V1__CHANGE_TYPE__CHANGE_TYPE_PROGRESS;
    ev.revision = head;
    return stream_job_send(j->stream, &ev.base);
}

static int trimmed(struct store *s, uint64_t rev, struct dossier_status *st)
{
    uint64_t floor = store_change_floor(s);
    if (rev >= floor)
        return 0;
    return err_set(st, DOSSIER_OUT_OF_RANGE,
                   "this node keeps changes from revision %llu on, not "
                   "from %llu: scan, then watch from the revision after "
                   "the one the scan's first page gives",
                   (unsigned long long)floor, (unsigned long long)rev);
}

/* Waits until this node has applied every revision before the watcher's
 * start (it may lag the node the watcher's position came from): 0, -1
 * when the reader goes, or UNAVAILABLE with @st set after a bounded
 * wait, so that the client tries another node. */
static int wait_applied(struct watch_job *j, struct dossier_status *st)
{
    struct store *s = j->node->store;
    int64_t wait = call_time_left_ms(stream_job_call(j->stream)) / 2;
    int64_t until = now_ms() + (wait < WATCH_BEHIND_WAIT_MS
                                    ? wait
                                    : WATCH_BEHIND_WAIT_MS);
    uint64_t head;

    while ((head = store_revision(s)) + 1 < j->rev) {
        int64_t left = until - now_ms();
        if (stream_job_over(j->stream))
            return -1;
        if (left <= 0)
            return err_set(st, DOSSIER_UNAVAILABLE,
                           "this node has applied changes up to revision "
                           "%llu, not yet up to the start %llu: watch on "
                           "another node, or here later",
                           (unsigned long long)head,
                           (unsigned long long)j->rev);
        store_wait_revision(s, head,
                            (int)(left < WATCH_WAIT_MS ? left
                                                       : WATCH_WAIT_MS));
    }
    return 0;
}

/* Sends changes until the reader goes, the node stops or a read fails. */
static int watch_loop(struct watch_job *j, struct dossier_status *st)
{
    struct store *s = j->node->store;
    struct store_change buf[WATCH_SLICE];
    /* told: the watcher knows every change up to this revision was sent
     * or left out (it was sent a change of it, or a PROGRESS naming it). */
    uint64_t told = 0;
    int64_t last_send = now_ms();
    int caught_up = 0;

    for (;;) {
        uint64_t head = store_revision(s), done;
        size_t got;
        int rc;

        if (stream_job_over(j->stream))
            return -1;
        rc = store_changes_read(s, j->rev, j->seq, head, WATCH_SLICE, buf,
                                &got, st);
        if (rc)
            return rc;
        /* Read first, then check: a trim that raced the read shows. */
        if (trimmed(s, j->rev, st)) {
            store_changes_free(buf, got);
            return st->code;
        }
        for (size_t i = 0; rc == 0 && i < got; i++) {
            uint64_t sent = j->sent;
            rc = send_change(j, &buf[i], st);
            if (rc == 0) {
                j->rev = buf[i].rev;
                j->seq = buf[i].seq + 1;
                j->looked_at++;
                if (j->sent != sent) {
                    told = buf[i].rev;
                    last_send = now_ms();
                }
            }
        }
        store_changes_free(buf, got);
        if (rc)
            return rc;
        /* Once the slice ends before the head, every change up to the
         * head has been looked at. */
        if (got < WATCH_SLICE && j->rev <= head) {
            j->rev = head + 1;
            j->seq = 0;
        }
        /* Every change up to done has been looked at: sent or left out.
         * PROGRESS on catching up, when the position moved past what the
         * watcher was told and nothing was sent for a while (also in the
         * middle of a long stretch of changes all left out), and as a
         * heartbeat. */
        done = j->rev - 1;
        {
            int64_t now = now_ms(), idle = now - last_send;
            int catching_up = got < WATCH_SLICE && !caught_up;
            if (catching_up ||
                (done > told && idle >= WATCH_PROGRESS_MS) ||
                idle >= WATCH_HEARTBEAT_MS) {
                if (send_progress(j, done) != 0)
                    return -1;
                if (done > told)
                    told = done;
                last_send = now;
                caught_up |= got < WATCH_SLICE;
            }
        }
        if (got == WATCH_SLICE)
            continue; /* more to read */
        store_wait_revision(s, head, WATCH_WAIT_MS);
    }
}

static void watch_main(struct stream_job *sj)
{
    struct watch_job *j = stream_job_user(sj);
    struct call *c = stream_job_call(sj);
    struct dossier_status st;
    int rc;

    j->stream = sj;
    rc = wait_applied(j, &st);
    if (rc == 0)
        rc = watch_loop(j, &st);
    log_printf(LOG_INFO, "watcher ended at revision %llu: %llu changes "
               "looked at, %llu left out",
               (unsigned long long)j->rev, (unsigned long long)j->looked_at,
               (unsigned long long)j->left_out);
    if (rc == -1 || stream_group_stopping(&watchers))
        return call_fail(c, stream_group_stopping(&watchers)
                                ? DOSSIER_UNAVAILABLE
                                : DOSSIER_CANCELLED,
                         "the node is stopping: watch again, from another "
                         "node, from the last change seen");
    call_fail_status(c, &st);
}

void api_watch_changes(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__WatchRequest *req = (Dossier__V1__WatchRequest *)msg;
    struct node *n = call_node(c);
    struct watch_job *j;
    struct dossier_status st;
    uint64_t head = store_revision(n->store);

    if (req->n_kinds > WATCH_KINDS_MAX)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "at most %d kinds per watcher", WATCH_KINDS_MAX);
    for (size_t i = 0; i < req->n_kinds; i++) {
        const KindSchema *k;
        if (records_kind(n, req->kinds[i], &k, &st))
            return call_fail_status(c, &st);
    }
    /* A linearizable watch runs once this node has applied everything
     * committed when the call began, so a start past that was never a
     * position of this cluster. A serializable one may have reached a
     * lagging follower: its thread waits for the node to catch up, for a
     * while (wait_applied). */
    if (req->start_revision > head + 1 && !call_serializable(c))
        return call_fail(c, DOSSIER_OUT_OF_RANGE,
                         "start_revision %llu is past the cluster's last "
                         "revision %llu",
                         (unsigned long long)req->start_revision,
                         (unsigned long long)head);
    if (req->start_revision && trimmed(n->store, req->start_revision, &st))
        return call_fail_status(c, &st);
    j = calloc(1, sizeof(*j));
    if (j && req->n_kinds)
        j->kinds = calloc(req->n_kinds, sizeof(*j->kinds));
    if (!j || (req->n_kinds && !j->kinds)) {
        free(j);
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < req->n_kinds; i++) {
        if (!(j->kinds[j->n_kinds] = strdup(req->kinds[i]))) {
            watch_job_free(j);
            return call_fail(c, DOSSIER_NOMEM, "out of memory");
        }
        j->n_kinds++;
    }
    j->node = n;
    j->rev = req->start_revision ? req->start_revision : head + 1;
    j->seq = req->start_revision ? req->start_seq : 0;
    log_printf(LOG_INFO, "watcher started at revision %llu (%zu kinds)",
               (unsigned long long)j->rev, j->n_kinds);
    stream_job_start(c, &watchers, watch_main, j, watch_job_free);
}
