/* The dossier.peer.v1.Peer service, node-to-node: Raft messages, snapshot
 * streams and the test-only fault switch. (Forward is dispatched by
 * server.c, which knows the method table.) */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


#include "api.h"
#include "cluster.h"
#include "errors.h"
#include "fileutil.h"
#include "log.h"
#include "pbgrpc.h"
#include "peer.pb-c.h"
#include "raftio.h"
#include "store.h"

/* Logs a refusal at most every 10 s: a misconfigured peer retries many
 * times a second. */
static int refusal_log_due(void)
{
    static int64_t last;
    struct timespec ts;
    int64_t now;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (int64_t)ts.tv_sec;
    if (now - __atomic_load_n(&last, __ATOMIC_RELAXED) < 10)
        return 0;
    __atomic_store_n(&last, now, __ATOMIC_RELAXED);
    return 1;
}

int api_peer_check(struct call *c, const ProtobufCBinaryData *cid,
                   uint64_t from)
{
    struct node *n = call_node(c);
    if (cid->len != 16 || memcmp(cid->data, cluster_id(n->cluster), 16) != 0) {
        if (refusal_log_due())
            log_printf(LOG_WARN, "refused peer traffic of another cluster "
                       "(from node %" PRIu64 ")", from);
        call_fail(c, DOSSIER_PERMISSION_DENIED,
                  "this node belongs to another cluster");
        return -1;
    }
    if (!cluster_knows(n->cluster, from)) {
        if (refusal_log_due())
            log_printf(LOG_WARN, "refused peer traffic from node %" PRIu64
                       ", which is not a member", from);
        call_fail(c, DOSSIER_PERMISSION_DENIED,
                  "node %" PRIu64 " is not a member of this cluster", from);
        return -1;
    }
    if (cluster_is_isolated_from(n->cluster, from)) {
        call_fail(c, DOSSIER_UNAVAILABLE, "cut off (fault injection)");
        return -1;
    }
    return 0;
}

void api_peer_send(struct call *c, ProtobufCMessage *msg)
{
    Dossier__Peer__V1__MessageBatch *b = (Dossier__Peer__V1__MessageBatch *)msg;
    Dossier__Peer__V1__Ack ack = DOSSIER__PEER__V1__ACK__INIT;
    struct raft_msg *msgs;
    struct dossier_status st;
    size_t n = 0;
    int rc = 0;

    if (api_peer_check(c, &b->cluster_id, b->from))
        return;
    msgs = calloc(b->n_messages ? b->n_messages : 1, sizeof(*msgs));
    if (!msgs)
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    for (; n < b->n_messages; n++) {
        rc = raftio_msg_from_pb(b->messages[n], &msgs[n]);
        if (rc)
            break;
    }
    if (rc == 0)
        rc = cluster_receive(call_node(c)->cluster, b->from, b->from_address,
                             msgs, n, &st);
    else
        err_set(&st, rc, "malformed raft message");
    for (size_t i = 0; i < n; i++)
        raftio_msg_release(&msgs[i]);
    free(msgs);
    if (rc) {
        if (refusal_log_due())
            log_printf(LOG_WARN, "refused messages from node %" PRIu64 ": %s",
                       b->from, st.message);
        return call_fail_status(c, &st);
    }
    call_reply(c, &ack.base);
}

/* ------------------------------------------------------------------ */
/* Snapshot streams: files written into a staging directory, chunk by
 * chunk, in order; the last chunk hands the whole to the Raft loop. */

struct snap_in {
    char dir[4096];
    uint64_t from;
    struct raft_msg msg;
    char file[256];
    int fd;
    uint64_t offset;
};

static void snap_abort(struct call *c, struct snap_in *s, int code,
                       const char *why)
{
    if (s) {
        if (s->fd >= 0)
            close(s->fd);
        if (s->dir[0])
            fu_rmtree(s->dir);
        free(s);
    }
    call_set_user(c, NULL);
    log_printf(LOG_WARN, "snapshot stream refused: %s", why);
    call_fail(c, code, "%s", why);
}

static int name_ok(const char *f)
{
    size_t n = strlen(f);
    return n > 0 && n < 255 && !strchr(f, '/') && strcmp(f, ".") != 0 &&
           strcmp(f, "..") != 0;
}

static int file_close(struct snap_in *s)
{
    int rc = 0;
    if (s->fd >= 0) {
        rc = fsync(s->fd);
        close(s->fd);
        s->fd = -1;
    }
    return rc;
}

static void snap_chunk(struct call *c, grpc_byte_buffer *bb);

static int handle_chunk(struct call *c, struct snap_in *s,
                        const Dossier__Peer__V1__SnapshotChunk *ch)
{
    struct node *n = call_node(c);

    if (!s->dir[0]) {
        if (api_peer_check(c, &ch->cluster_id, ch->from))
            return -2; /* already answered */
        if (!ch->message || ch->message->type != RAFT_MSG_SNAPSHOT)
            return DOSSIER_INVALID_ARGUMENT;
        if (raftio_msg_from_pb(ch->message, &s->msg) != 0)
            return DOSSIER_INVALID_ARGUMENT;
        if (s->msg.n_entries != 0) {
            raftio_msg_release(&s->msg);
            return DOSSIER_INVALID_ARGUMENT;
        }
        s->from = ch->from;
        cluster_snapshot_staging(n->cluster, ch->from, s->dir, sizeof(s->dir));
        if (mkdir(s->dir, 0700) != 0)
            return DOSSIER_IO;
    } else if (ch->from != s->from) {
        return DOSSIER_INVALID_ARGUMENT;
    }
    if (ch->done) /* a checkpoint has files: an empty stream is refused */
        return !s->file[0] ? DOSSIER_INVALID_ARGUMENT
               : file_close(s) == 0 ? 1 : DOSSIER_IO;
    if (!name_ok(ch->file))
        return DOSSIER_INVALID_ARGUMENT;
    if (strcmp(ch->file, s->file) != 0) {
        char path[4400];
        if (file_close(s) != 0 || ch->offset != 0)
            return DOSSIER_INVALID_ARGUMENT;
        snprintf(s->file, sizeof(s->file), "%s", ch->file);
        snprintf(path, sizeof(path), "%s/%s", s->dir, s->file);
        s->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (s->fd < 0)
            return DOSSIER_IO;
        s->offset = 0;
    }
    if (ch->offset != s->offset)
        return DOSSIER_INVALID_ARGUMENT;
    for (size_t done = 0; done < ch->data.len;) {
        ssize_t w = write(s->fd, ch->data.data + done, ch->data.len - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return DOSSIER_IO;
        }
        done += (size_t)w;
    }
    s->offset += ch->data.len;
    return 0;
}

static void snap_chunk(struct call *c, grpc_byte_buffer *bb)
{
    struct snap_in *s = call_user(c);
    Dossier__Peer__V1__SnapshotChunk *ch;
    int rc;

    if (!bb)
        return snap_abort(c, s, DOSSIER_INVALID_ARGUMENT,
                          "the snapshot stream ended early");
    ch = (Dossier__Peer__V1__SnapshotChunk *)pbgrpc_unpack(
        bb, &dossier__peer__v1__snapshot_chunk__descriptor);
    grpc_byte_buffer_destroy(bb);
    if (!ch)
        return snap_abort(c, s, DOSSIER_INVALID_ARGUMENT, "malformed chunk");
    rc = handle_chunk(c, s, ch);
    dossier__peer__v1__snapshot_chunk__free_unpacked(ch, NULL);
    if (rc == -2) {
        /* refused and answered by api_peer_check */
        if (s->dir[0])
            fu_rmtree(s->dir);
        free(s);
        call_set_user(c, NULL);
        return;
    }
    if (rc > 0) {
        Dossier__Peer__V1__Ack ack = DOSSIER__PEER__V1__ACK__INIT;
        cluster_snapshot_received(call_node(c)->cluster, s->dir, &s->msg);
        free(s);
        call_set_user(c, NULL);
        return call_reply(c, &ack.base);
    }
    if (rc)
        return snap_abort(c, s, rc,
                          rc == DOSSIER_IO ? "cannot write the snapshot"
                                           : "malformed snapshot stream");
    call_recv(c, snap_chunk);
}

void api_peer_install_snapshot(struct call *c, ProtobufCMessage *req)
{
    struct snap_in *s = calloc(1, sizeof(*s));
    (void)req;
    if (!s)
        return call_fail(c, DOSSIER_NOMEM, "out of memory");
    s->fd = -1;
    call_set_user(c, s);
    call_recv(c, snap_chunk);
}

void api_peer_fault(struct call *c, ProtobufCMessage *msg)
{
    Dossier__Peer__V1__FaultRequest *f = (Dossier__Peer__V1__FaultRequest *)msg;
    Dossier__Peer__V1__Ack ack = DOSSIER__PEER__V1__ACK__INIT;
    struct node *n = call_node(c);

    if (!n->fault_injection)
        return call_fail(c, DOSSIER_PERMISSION_DENIED,
                         "fault injection is off on this node");
    cluster_isolate(n->cluster, f->isolate_from, f->n_isolate_from);
    log_printf(LOG_WARN, "fault injection: cut off from %zu nodes",
               f->n_isolate_from);
    call_reply(c, &ack.base);
}
