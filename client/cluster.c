/* libdossier: the cluster's status and membership. */
#include <stdio.h>
#include <stdlib.h>

#include <sodium.h>
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

static void principal_from_pb(const Dossier__V1__PrincipalInfo *m,
                              struct dossier_principal *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", m->name);
    snprintf(out->role, sizeof(out->role), "%s", m->role);
    snprintf(out->purposes, sizeof(out->purposes), "%s", m->purposes);
    snprintf(out->created_by, sizeof(out->created_by), "%s", m->created_by);
    out->created_ms = m->created_ms;
}

int dossier_principal_add(struct dossier_client *c,
                          const struct dossier_call_options *co,
                          const char *name, const char *role,
                          const char *purposes, char token[65],
                          struct dossier_principal *out,
                          struct dossier_status *st)
{
    Dossier__V1__AddPrincipalRequest req =
        DOSSIER__V1__ADD_PRINCIPAL_REQUEST__INIT;
    Dossier__V1__PrincipalInfo *resp;
    uint8_t raw[32], hash[crypto_hash_sha256_BYTES];
    int rc;

    if (!name || !role || !token)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "name, role and token are needed");
    if (sodium_init() < 0)
        return err_set(st, DOSSIER_INTERNAL, "libsodium failed to start");
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(token, 65, raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    crypto_hash_sha256(hash, (const unsigned char *)token, 64);
    req.name = (char *)name;
    req.role = (char *)role;
    req.purposes = (char *)(purposes ? purposes : "*");
    req.token_hash = (ProtobufCBinaryData){sizeof(hash), hash};
    rc = client_unary(c, co, M_PRINCIPAL_ADD, &req.base,
                      &dossier__v1__principal_info__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc) {
        sodium_memzero(token, 65);
        return rc;
    }
    if (out)
        principal_from_pb(resp, out);
    dossier__v1__principal_info__free_unpacked(resp, NULL);
    return 0;
}

int dossier_principal_remove(struct dossier_client *c,
                             const struct dossier_call_options *co,
                             const char *name, struct dossier_status *st)
{
    Dossier__V1__RemovePrincipalRequest req =
        DOSSIER__V1__REMOVE_PRINCIPAL_REQUEST__INIT;
    Dossier__V1__PrincipalInfo *resp;
    int rc;
    if (!name)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "name is missing");
    req.name = (char *)name;
    rc = client_unary(c, co, M_PRINCIPAL_REMOVE, &req.base,
                      &dossier__v1__principal_info__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc == 0)
        dossier__v1__principal_info__free_unpacked(resp, NULL);
    return rc;
}

int dossier_principal_list(struct dossier_client *c,
                           const struct dossier_call_options *co,
                           struct dossier_principal **out, size_t *n,
                           struct dossier_status *st)
{
    Dossier__V1__ListPrincipalsRequest req =
        DOSSIER__V1__LIST_PRINCIPALS_REQUEST__INIT;
    Dossier__V1__ListPrincipalsResponse *resp;
    int rc;

    if (!out || !n)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "outputs are missing");
    *out = NULL;
    *n = 0;
    rc = client_unary(c, co, M_PRINCIPAL_LIST, &req.base,
                      &dossier__v1__list_principals_response__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    *out = calloc(resp->n_principals ? resp->n_principals : 1, sizeof(**out));
    if (!*out) {
        dossier__v1__list_principals_response__free_unpacked(resp, NULL);
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < resp->n_principals; i++)
        principal_from_pb(resp->principals[i], &(*out)[i]);
    *n = resp->n_principals;
    dossier__v1__list_principals_response__free_unpacked(resp, NULL);
    return 0;
}
