/* libdossier: master key rotation (dossier.v1.Keys). */
#include <stdio.h>
#include <string.h>

#include "errors.h"
#include "internal.h"
#include "keys.pb-c.h"

static void status_from_pb(const Dossier__V1__KeysStatus *m,
                           struct dossier_keys_status *out)
{
    memset(out, 0, sizeof(*out));
    out->node_id = m->node_id;
    out->active_version = m->active_version;
    snprintf(out->active_key_id, sizeof(out->active_key_id), "%s",
             m->active_key_id);
    for (size_t i = 0; i < m->n_loaded && i < DOSSIER_KEY_VERSIONS_MAX; i++) {
        out->loaded[i].version = m->loaded[i]->version;
        snprintf(out->loaded[i].key_id, sizeof(out->loaded[i].key_id), "%s",
                 m->loaded[i]->key_id);
        out->n_loaded = i + 1;
    }
    if (m->rotation) {
        const Dossier__V1__KeyRotationStatus *r = m->rotation;
        out->has_rotation = 1;
        out->rotation_running = r->running;
        out->from_version = r->from_version;
        out->to_version = r->to_version;
        out->subjects = r->subjects;
        out->rewrapped = r->rewrapped;
        out->skipped = r->skipped;
        out->started_ms = r->started_ms;
        out->finished_ms = r->finished_ms;
        snprintf(out->started_by, sizeof(out->started_by), "%s",
                 r->started_by);
    }
}

static int keys_call(struct dossier_client *c,
                     const struct dossier_call_options *co,
                     enum client_method m, const ProtobufCMessage *req,
                     struct dossier_keys_status *out,
                     struct dossier_status *st)
{
    Dossier__V1__KeysStatus *resp;
    int rc = client_unary(c, co, m, req, &dossier__v1__keys_status__descriptor,
                          (ProtobufCMessage **)&resp, st);
    if (rc)
        return rc;
    if (out)
        status_from_pb(resp, out);
    dossier__v1__keys_status__free_unpacked(resp, NULL);
    return 0;
}

int dossier_keys_status(struct dossier_client *c,
                        const struct dossier_call_options *co,
                        struct dossier_keys_status *out,
                        struct dossier_status *st)
{
    Dossier__V1__KeysStatusRequest req = DOSSIER__V1__KEYS_STATUS_REQUEST__INIT;
    if (!out)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "status is missing");
    return keys_call(c, co, M_KEYS_STATUS, &req.base, out, st);
}

int dossier_keys_rotate(struct dossier_client *c,
                        const struct dossier_call_options *co,
                        uint32_t version, struct dossier_keys_status *out,
                        struct dossier_status *st)
{
    Dossier__V1__RotateKeysRequest req = DOSSIER__V1__ROTATE_KEYS_REQUEST__INIT;
    req.version = version;
    return keys_call(c, co, M_KEYS_ROTATE, &req.base, out, st);
}
