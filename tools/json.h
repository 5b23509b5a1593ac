/* Records and kinds as JSON, for the CLI (jansson does the parsing).
 *
 * A record:
 *   {"kind": "contact", "id": "c-1", "subject_id": "s-1",
 *    "version": 12, "created_at_ms": 1763900000000, "updated_at_ms": ...,
 *    "fields": {"email": "ann@example.com", "lead_score": 40},
 *    "links": [{"label": "works_at", "kind": "company", "id": "acme"}]}
 * Field values are JSON strings, integers, reals, booleans or null (absent).
 * On input, version and the times are ignored and any other key is an
 * error, so a typo is never silently dropped.
 *
 * A kind:
 *   {"kind": "member", "personal": true, "description": "...",
 *    "fields": [{"name": "tier", "type": "enum", "category": "operational",
 *                "indexed": true, "required": false, "retention_days": 0,
 *                "allowed_values": ["gold", "silver"], "description": ""}]}
 *
 * Output only, for the GDPR commands (subject ids are never included;
 * pseudonyms, signatures and keys are lower-case hex):
 *   purpose      {"name": "newsletter", "categories": ["identity",
 *                 "contact"], "basis": "consent", "description": "...",
 *                 "builtin": false, "version": 41}
 *   consent      {"purpose": "newsletter", "state": "granted",
 *                 "source": "signup-form", "notice_version": "2026-03",
 *                 "time_ms": ..., "principal": "crm", "revision": 42}
 *   subject      {"pseudonym": "9f..", "restricted": false, "records": 3}
 *   erasure      {"pseudonym": "9f..", "time_ms": ..., "raft_index": 88,
 *                 "records_deleted": 3, "nodes": [1, 2, 3],
 *                 "signature": "..", "public_key": ".."}
 *   audit entry  {"index": 7, "time_ms": ..., "principal": "crm",
 *                 "action": "records.get", "purpose": "operations",
 *                 "subject": "9f.." or null, "records": 1, "outcome": "OK"}
 */
#ifndef DOSSIER_TOOLS_JSON_H
#define DOSSIER_TOOLS_JSON_H

#include <jansson.h>

#include <dossier/dossier.h>

/* A new JSON object for @r; NULL when out of memory. */
json_t *json_from_record(const struct dossier_record *r);

/* A new record from @j into *@out. On failure returns -1 and writes what
 * is wrong, naming the key, into @err (@cap bytes). */
int json_to_record(const json_t *j, struct dossier_record **out, char *err,
                   size_t cap);

/* A JSON value for @v (null for a null value). */
json_t *json_from_value(const struct dossier_value *v);

/* Kinds. json_to_kind's result is freed with dossier_kind_schema_free. */
json_t *json_from_kind(const struct dossier_kind_schema *s);
int json_to_kind(const json_t *j, struct dossier_kind_schema **out, char *err,
                 size_t cap);

/* New JSON objects for the GDPR structs above; NULL when out of memory. */
json_t *json_from_purpose(const struct dossier_purpose *p);
json_t *json_from_consent_event(const struct dossier_consent_event *e);
json_t *json_from_subject_status(const struct dossier_subject_status *s);
json_t *json_from_rectification(const struct dossier_rectification *r);
json_t *json_from_erasure_certificate(
    const struct dossier_erasure_certificate *c);
json_t *json_from_audit_entry(const struct dossier_audit_entry *e);

/* @n bytes at @b as a lower-case hex string. */
json_t *json_hex(const uint8_t *b, size_t n);

#endif
