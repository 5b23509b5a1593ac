/* The dossier.v1.Cluster service: status and membership. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cluster.h"
#include "errors.h"

/* Fills @out from this node's view; strings borrowed from @s and @members,
 * which must outlive @out. */
static void status_fill(struct call *c, const struct cluster_status *s,
                        Dossier__V1__ClusterStatus *out,
                        Dossier__V1__ClusterMember *members,
                        Dossier__V1__ClusterMember **ptrs, char *leader_addr,
                        size_t cap)
{
    struct node *n = call_node(c);
    dossier__v1__cluster_status__init(out);
    out->node_id = s->raft.id;
    out->role = (char *)raft_role_name(s->raft.role);
    out->leader_id = cluster_leader(n->cluster, leader_addr, cap);
    out->leader_address = leader_addr;
    out->term = s->raft.hs.term;
    out->commit_index = s->raft.hs.commit;
    out->applied_index = s->store_applied;
    out->first_index = s->raft.first_index;
    out->last_index = s->raft.last_index;
    out->keys_ready = cluster_keys_ready(n->cluster);
    for (size_t i = 0; i < s->n_members; i++) {
        Dossier__V1__ClusterMember *m = &members[i];
        dossier__v1__cluster_member__init(m);
        m->id = s->members[i].id;
        m->address = (char *)s->members[i].address;
        m->voter = i < s->raft.conf.n_voters;
        for (size_t k = 0; k < s->raft.n_progress; k++)
            if (s->raft.progress[k].id == m->id) {
                m->match_index = s->raft.progress[k].match;
                m->active = s->raft.progress[k].recent_active;
            }
        ptrs[i] = m;
        /* The leader reports its own address too. */
        if (m->id == out->leader_id && !leader_addr[0] && m->address[0])
            snprintf(leader_addr, cap, "%s", m->address);
    }
    out->n_members = s->n_members;
    out->members = ptrs;
}

static void reply_status(struct call *c)
{
    struct cluster_status s;
    Dossier__V1__ClusterStatus out;
    Dossier__V1__ClusterMember members[RAFT_MAX_NODES * 2];
    Dossier__V1__ClusterMember *ptrs[RAFT_MAX_NODES * 2];
    char leader[CLUSTER_ADDRESS_MAX];

    cluster_status(call_node(c)->cluster, &s);
    status_fill(c, &s, &out, members, ptrs, leader, sizeof(leader));
    call_reply(c, &out.base);
}

void api_cluster_status(struct call *c, ProtobufCMessage *req)
{
    (void)req;
    reply_status(c);
}

static void admin_done(void *arg, int code, const char *message)
{
    struct call *c = arg;
    if (code)
        return call_fail(c, code, "%s", message);
    reply_status(c);
}

static void admin(struct call *c, enum cluster_admin_op op, uint64_t id,
                  const char *address)
{
    int rc;
    if (id == 0)
        return call_fail(c, DOSSIER_INVALID_ARGUMENT, "node id must be 1 or "
                         "more");
    rc = cluster_admin(call_node(c)->cluster, op, id, address, admin_done, c);
    if (rc)
        call_fail(c, rc, rc == DOSSIER_NOMEM ? "out of memory"
                                             : "the node is stopping");
}

void api_cluster_add_node(struct call *c, ProtobufCMessage *msg)
{
    Dossier__V1__AddNodeRequest *r = (Dossier__V1__AddNodeRequest *)msg;
    if (!r->address[0] || strlen(r->address) >= CLUSTER_ADDRESS_MAX ||
        !strchr(r->address, ':'))
        return call_fail(c, DOSSIER_INVALID_ARGUMENT,
                         "address must be host:port");
    admin(c, CLUSTER_ADD, r->id, r->address);
}

void api_cluster_promote_node(struct call *c, ProtobufCMessage *msg)
{
    admin(c, CLUSTER_PROMOTE, ((Dossier__V1__NodeRequest *)msg)->id, NULL);
}

void api_cluster_remove_node(struct call *c, ProtobufCMessage *msg)
{
    admin(c, CLUSTER_REMOVE, ((Dossier__V1__NodeRequest *)msg)->id, NULL);
}

void api_cluster_transfer_leader(struct call *c, ProtobufCMessage *msg)
{
    admin(c, CLUSTER_TRANSFER, ((Dossier__V1__NodeRequest *)msg)->id, NULL);
}
