/* libdossier: rectification (GDPR Art. 16), Subjects/Rectify. */
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "internal.h"

int dossier_subject_rectify(struct dossier_client *c,
                            const struct dossier_call_options *co,
                            const char *subject_id, const char *kind,
                            const char *id, const struct dossier_record *set,
                            const char *const *unset, size_t n_unset,
                            const char *reference,
                            struct dossier_rectify_result *out,
                            struct dossier_status *st)
{
    Dossier__V1__RectifyRequest req = DOSSIER__V1__RECTIFY_REQUEST__INIT;
    Dossier__V1__RectifyResponse *resp;
    struct record_pb pb;
    int rc, have_pb = 0;

    /* Ids are personal data: messages name the argument, not its value. */
    if (!subject_id || !subject_id[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "subject_id is missing");
    if (!kind || !kind[0] || !id || !id[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "kind and id of the record are needed");
    if (!reference || !reference[0])
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "reference is required: the ticket of the subject's "
                       "request");
    /* A label never carries personal data: a bad one does not travel. */
    if (strlen(reference) > DOSSIER_LABEL_MAX ||
        strspn(reference, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                          "0123456789._:/-") != strlen(reference))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "reference is at most %d characters of letters, "
                       "digits and . _ : / - (a label, never personal data)",
                       DOSSIER_LABEL_MAX);
    if (n_unset && !unset)
        return err_set(st, DOSSIER_INVALID_ARGUMENT, "unset is missing");
    for (size_t i = 0; i < n_unset; i++)
        if (!unset[i] || !unset[i][0])
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "unset: field %zu has no name", i + 1);
    if (set) {
        if ((rc = record_pb_init(&pb, set, st)) != 0)
            return rc;
        have_pb = 1;
        req.n_set = pb.msg.n_fields;
        req.set = pb.msg.fields;
    }
    req.subject_id = (char *)subject_id;
    req.kind = (char *)kind;
    req.id = (char *)id;
    req.n_unset = n_unset;
    req.unset = (char **)unset;
    req.reference = (char *)reference;
    rc = client_unary(c, co, M_SUBJECT_RECTIFY, &req.base,
                      &dossier__v1__rectify_response__descriptor,
                      (ProtobufCMessage **)&resp, st);
    if (have_pb)
        record_pb_release(&pb);
    if (rc)
        return rc;
    if (out) {
        out->version = resp->version;
        out->updated_at_ms = resp->updated_at_ms;
        out->n_fields = resp->n_fields;
    }
    dossier__v1__rectify_response__free_unpacked(resp, NULL);
    return 0;
}
