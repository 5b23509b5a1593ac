/* The dossier.v1.Keys service (master key rotation: Rotate, Status) and
 * Peer.KeyStatus, which the leader asks every member before a rotation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api.h"
#include "cluster.h"
#include "crypt.h"
#include "errors.h"
#include "keys.h"
#include "keys.pb-c.h"
#include "peer.pb-c.h"
#include "store.h"

void keys_reply_status(struct call *c)
{
    struct node *n = call_node(c);
    Dossier__V1__KeysStatus out = DOSSIER__V1__KEYS_STATUS__INIT;
    Dossier__V1__KeyRotationStatus rs = DOSSIER__V1__KEY_ROTATION_STATUS__INIT;
    Dossier__V1__MasterKeyVersion loaded[KEYFILE_MAX_VERSIONS];
    Dossier__V1__MasterKeyVersion *ptrs[KEYFILE_MAX_VERSIONS];
    char ids[KEYFILE_MAX_VERSIONS][17], active_id[17];
    uint8_t checks[KEYFILE_MAX_VERSIONS][CRYPT_KEK_CHECK_BYTES];
    uint32_t versions[KEYFILE_MAX_VERSIONS];
    Dossier__Store__V1__Meta *meta = NULL;
    Dossier__Store__V1__KeyRotation *r = NULL;
    struct dossier_status st;
    size_t nv;
    int rc;

    if (store_meta_get(n->store, &meta, &st) != 0)
        return call_fail(c, DOSSIER_UNAVAILABLE,
                         "the cluster has no keyset yet");
    rc = store_key_rotation_get(n->store, &r, &st);
    if (rc && rc != DOSSIER_NOT_FOUND) {
        dossier__store__v1__meta__free_unpacked(meta, NULL);
        return call_fail_status(c, &st);
    }
    out.node_id = n->id;
    out.active_version = meta->kek_version;
    snprintf(active_id, sizeof(active_id), "?");
    if (meta->kek_check.len == CRYPT_KEK_CHECK_BYTES)
        sodium_bin2hex(active_id, sizeof(active_id), meta->kek_check.data, 8);
    out.active_key_id = active_id;
    nv = crypt_kek_versions(n->crypt, versions, checks, KEYFILE_MAX_VERSIONS);
    for (size_t i = 0; i < nv; i++) {
        dossier__v1__master_key_version__init(&loaded[i]);
        loaded[i].version = versions[i];
        sodium_bin2hex(ids[i], sizeof(ids[i]), checks[i], 8);
        loaded[i].key_id = ids[i];
        ptrs[i] = &loaded[i];
    }
    out.n_loaded = nv;
    out.loaded = ptrs;
    if (r) {
        rs.running = !r->done;
        rs.from_version = r->from_version;
        rs.to_version = r->to_version;
        rs.subjects = r->subjects;
        rs.rewrapped = r->rewrapped;
        rs.skipped = r->skipped;
        rs.started_ms = r->started_ms;
        rs.started_by = r->started_by;
        rs.finished_ms = r->finished_ms;
        out.rotation = &rs;
    }
    call_reply(c, &out.base);
    if (r)
        dossier__store__v1__key_rotation__free_unpacked(r, NULL);
    dossier__store__v1__meta__free_unpacked(meta, NULL);
}

void api_keys_status(struct call *c, ProtobufCMessage *req)
{
    (void)req;
    keys_reply_status(c);
}

void api_keys_rotate(struct call *c, ProtobufCMessage *req)
{
    Dossier__V1__RotateKeysRequest *r = (Dossier__V1__RotateKeysRequest *)req;
    struct node *n = call_node(c);
    if (!n->keys)
        return call_fail(c, DOSSIER_UNAVAILABLE, "the node is starting");
    keys_rotate(n->keys, c, r->version);
}

void api_peer_key_status(struct call *c, ProtobufCMessage *req)
{
    Dossier__Peer__V1__KeyStatusRequest *r =
        (Dossier__Peer__V1__KeyStatusRequest *)req;
    Dossier__Peer__V1__KeyStatusResponse out =
        DOSSIER__PEER__V1__KEY_STATUS_RESPONSE__INIT;
    Dossier__Peer__V1__KeyVersionCheck v[KEYFILE_MAX_VERSIONS];
    Dossier__Peer__V1__KeyVersionCheck *ptrs[KEYFILE_MAX_VERSIONS];
    uint8_t checks[KEYFILE_MAX_VERSIONS][CRYPT_KEK_CHECK_BYTES];
    uint32_t versions[KEYFILE_MAX_VERSIONS];
    struct node *n = call_node(c);
    size_t nv;

    if (api_peer_check(c, &r->cluster_id, r->from) != 0)
        return;
    nv = crypt_kek_versions(n->crypt, versions, checks, KEYFILE_MAX_VERSIONS);
    for (size_t i = 0; i < nv; i++) {
        dossier__peer__v1__key_version_check__init(&v[i]);
        v[i].version = versions[i];
        v[i].check = (ProtobufCBinaryData){CRYPT_KEK_CHECK_BYTES, checks[i]};
        ptrs[i] = &v[i];
    }
    out.node_id = n->id;
    out.n_versions = nv;
    out.versions = ptrs;
    call_reply(c, &out.base);
}
