/* libdossier: the cluster's status and membership. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "health.pb-c.h"
#include "internal.h"

static void status_from_pb(const Dossier__V1__ClusterStatus *m,
                           struct dossier_cluster_status *out)
{
    memset(out, 0, sizeof(*out));
    out->node_id = m->node_id;
    snprintf(out->role, sizeof(out->role), "%s", m->role);
    out->leader_id = m->leader_id;
    snprintf(out->leader_address, sizeof(out->leader_address), "%s",
             m->leader_address);
    out->term = m->term;
    out->commit_index = m->commit_index;
    out->applied_index = m->applied_index;
    out->first_index = m->first_index;
    out->last_index = m->last_index;
    out->keys_ready = m->keys_ready;
    for (size_t i = 0; i < m->n_members && i < DOSSIER_CLUSTER_MAX; i++) {
        struct dossier_cluster_member *d = &out->members[i];
        d->id = m->members[i]->id;
        snprintf(d->address, sizeof(d->address), "%s", m->members[i]->address);
        d->voter = m->members[i]->voter;
        d->match_index = m->members[i]->match_index;
        d->active = m->members[i]->active;
        out->n_members = i + 1;
    }
}

static int status_call(struct dossier_client *c,
                       const struct dossier_call_options *co,
                       enum client_method m, const ProtobufCMessage *req,
                       struct dossier_cluster_status *out,
                       struct dossier_status *st)
{
    Dossier__V1__ClusterStatus *resp;
    int rc = client_unary(c, co, m, req, &dossier__v1__cluster_status__descriptor,
                          (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    if (out)
        status_from_pb(resp, out);
    dossier__v1__cluster_status__free_unpacked(resp, NULL);
    return 0;
}

int dossier_cluster_status(struct dossier_client *c,
                           const struct dossier_call_options *co,
                           struct dossier_cluster_status *out,
                           struct dossier_status *st)
{
    Dossier__V1__ClusterStatusRequest req =
        DOSSIER__V1__CLUSTER_STATUS_REQUEST__INIT;
    if (!out)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "status is missing");
    return status_call(c, co, M_CLUSTER_STATUS, &req.base, out, st);
}

int dossier_cluster_add_node(struct dossier_client *c,
                             const struct dossier_call_options *co,
                             uint64_t id, const char *address,
                             struct dossier_cluster_status *out,
                             struct dossier_status *st)
{
    Dossier__V1__AddNodeRequest req = DOSSIER__V1__ADD_NODE_REQUEST__INIT;
    if (!address || !address[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "address is missing");
    req.id = id;
    req.address = (char *)address;
    return status_call(c, co, M_CLUSTER_ADD, &req.base, out, st);
}

static int node_call(struct dossier_client *c,
                     const struct dossier_call_options *co,
                     enum client_method m, uint64_t id,
                     struct dossier_cluster_status *out,
                     struct dossier_status *st)
{
    Dossier__V1__NodeRequest req = DOSSIER__V1__NODE_REQUEST__INIT;
    req.id = id;
    return status_call(c, co, m, &req.base, out, st);
}

int dossier_cluster_promote_node(struct dossier_client *c,
                                 const struct dossier_call_options *co,
                                 uint64_t id,
                                 struct dossier_cluster_status *out,
                                 struct dossier_status *st)
{
    return node_call(c, co, M_CLUSTER_PROMOTE, id, out, st);
}

int dossier_cluster_remove_node(struct dossier_client *c,
                                const struct dossier_call_options *co,
                                uint64_t id,
                                struct dossier_cluster_status *out,
                                struct dossier_status *st)
{
    return node_call(c, co, M_CLUSTER_REMOVE, id, out, st);
}

int dossier_cluster_transfer_leader(struct dossier_client *c,
                                    const struct dossier_call_options *co,
                                    uint64_t id,
                                    struct dossier_cluster_status *out,
                                    struct dossier_status *st)
{
    return node_call(c, co, M_CLUSTER_TRANSFER, id, out, st);
}

int dossier_health_check(struct dossier_client *c,
                         const struct dossier_call_options *co,
                         const char *service, enum dossier_health *out,
                         struct dossier_status *st)
{
    Grpc__Health__V1__HealthCheckRequest req =
        GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    Grpc__Health__V1__HealthCheckResponse *resp;
    int rc;

    if (!out)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "state is missing");
    *out = DOSSIER_HEALTH_UNKNOWN;
    req.service = (char *)(service ? service : "");
    rc = client_unary(c, co, M_HEALTH_CHECK, &req.base,
                      &grpc__health__v1__health_check_response__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    switch (resp->status) {
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING:
        *out = DOSSIER_HEALTH_SERVING;
        break;
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING:
        *out = DOSSIER_HEALTH_NOT_SERVING;
        break;
    default:
        *out = DOSSIER_HEALTH_UNKNOWN;
    }
    grpc__health__v1__health_check_response__free_unpacked(resp, NULL);
    return 0;
}

static void backup_from_pb(const Dossier__V1__BackupInfo *m,
                           struct dossier_backup *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", m->name);
    snprintf(out->path, sizeof(out->path), "%s", m->path);
    snprintf(out->cluster_name, sizeof(out->cluster_name), "%s",
             m->cluster_name);
    out->created_ms = m->created_ms;
    out->node_id = m->node_id;
    out->applied_index = m->applied_index;
    out->bytes = m->bytes;
    out->files = m->files;
}

int dossier_backup_create(struct dossier_client *c,
                          const struct dossier_call_options *co,
                          struct dossier_backup *out,
                          struct dossier_status *st)
{
    Dossier__V1__CreateBackupRequest req =
        DOSSIER__V1__CREATE_BACKUP_REQUEST__INIT;
    Dossier__V1__BackupInfo *resp;
    int rc = client_unary(c, co, M_BACKUP_CREATE, &req.base,
                          &dossier__v1__backup_info__descriptor,
                          (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    if (out)
        backup_from_pb(resp, out);
    dossier__v1__backup_info__free_unpacked(resp, NULL);
    return 0;
}

int dossier_backup_list(struct dossier_client *c,
                        const struct dossier_call_options *co,
                        struct dossier_backup **out, size_t *n,
                        struct dossier_status *st)
{
    Dossier__V1__ListBackupsRequest req =
        DOSSIER__V1__LIST_BACKUPS_REQUEST__INIT;
    Dossier__V1__ListBackupsResponse *resp;
    int rc;

    if (!out || !n)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "outputs are missing");
    *out = NULL;
    *n = 0;
    rc = client_unary(c, co, M_BACKUP_LIST, &req.base,
                      &dossier__v1__list_backups_response__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    *out = calloc(resp->n_backups ? resp->n_backups : 1, sizeof(**out));
    if (!*out) {
        dossier__v1__list_backups_response__free_unpacked(resp, NULL);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < resp->n_backups; i++)
        backup_from_pb(resp->backups[i], &(*out)[i]);
    *n = resp->n_backups;
    dossier__v1__list_backups_response__free_unpacked(resp, NULL);
    return 0;
}
