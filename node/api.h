/* The RPC handlers, a file per service or family of services
 * (api_records.c and api_links.c, api_schema.c, api_cluster.c, api_peer.c,
 * api_gdpr.c, api_requests.c, api_export.c, api_principals.c, api_dedup.c,
 * api_report.c, api_segments.c, api_merge.c, api_watch.c; backup.c and
 * health.c hold their own). Each validates its request, then reads
 * through the store or submits a command, and answers its call. */
#ifndef DOSSIER_NODE_API_H
#define DOSSIER_NODE_API_H

#include "dossier.pb-c.h"
#include "server.h"
#include "store.pb-c.h"

void api_records_put(struct call *c, ProtobufCMessage *req);
void api_records_get(struct call *c, ProtobufCMessage *req);
void api_records_delete(struct call *c, ProtobufCMessage *req);
void api_records_list_by_subject(struct call *c, ProtobufCMessage *req);
void api_records_find_by_index(struct call *c, ProtobufCMessage *req);
void api_records_scan(struct call *c, ProtobufCMessage *req);
void api_records_find_duplicates(struct call *c, ProtobufCMessage *req);
void api_records_aggregate(struct call *c, ProtobufCMessage *req);

/* Calls @fn with every stored record of @kind (taken: @fn frees it), its
 * pseudonym and its key, in key order, starting after key @after (NULL:
 * from the first), reading the store in slices so that no lock is held
 * while @fn runs. @fn returns 0 to go on, 1 to stop, or an error code
 * (with @st set), which is returned. Errors: DOSSIER_CORRUPT, DOSSIER_IO,
 * DOSSIER_NOMEM. */
struct store;
typedef int (*api_record_fn)(void *arg, Dossier__Store__V1__StoredRecord *sr,
                             const uint8_t *rid, const uint8_t *key,
                             size_t klen, struct dossier_status *st);
int api_scan_kind(struct store *s, const char *kind, const uint8_t *after,
                  size_t after_len, api_record_fn fn, void *arg,
                  struct dossier_status *st);
/* The field categories @c's purpose may see (all for calls without one). */
unsigned api_visible_categories(const struct call *c);

/* Duplicate rules (api_dedup.c). */
void api_duplicate_rules_define(struct call *c, ProtobufCMessage *req);
void api_duplicate_rules_get(struct call *c, ProtobufCMessage *req);
void api_duplicate_rules_list(struct call *c, ProtobufCMessage *req);

/* Merges (api_merge.c). */
void api_merges_merge(struct call *c, ProtobufCMessage *req);
void api_merges_undo(struct call *c, ProtobufCMessage *req);
void api_merges_confirm(struct call *c, ProtobufCMessage *req);
void api_merges_list(struct call *c, ProtobufCMessage *req);

/* Segments (api_segments.c). */
void api_segments_define(struct call *c, ProtobufCMessage *req);
void api_segments_get(struct call *c, ProtobufCMessage *req);
void api_segments_list(struct call *c, ProtobufCMessage *req);
void api_segments_run(struct call *c, ProtobufCMessage *req);

/* The change feed (api_watch.c). */
void api_watch_changes(struct call *c, ProtobufCMessage *req);
/* At a stop: watchers end (their calls answered UNAVAILABLE, so clients
 * resume elsewhere) and none starts; returns once none runs. */
void api_watch_stop(void);
/* In api_links.c. */
void api_records_list_links(struct call *c, ProtobufCMessage *req);

void api_schema_define_kind(struct call *c, ProtobufCMessage *req);
void api_schema_get_kind(struct call *c, ProtobufCMessage *req);
void api_schema_list_kinds(struct call *c, ProtobufCMessage *req);

void api_cluster_status(struct call *c, ProtobufCMessage *req);
void api_cluster_add_node(struct call *c, ProtobufCMessage *req);
void api_cluster_promote_node(struct call *c, ProtobufCMessage *req);
void api_cluster_remove_node(struct call *c, ProtobufCMessage *req);
void api_cluster_transfer_leader(struct call *c, ProtobufCMessage *req);

void api_purposes_define(struct call *c, ProtobufCMessage *req);
void api_purposes_get(struct call *c, ProtobufCMessage *req);
void api_purposes_list(struct call *c, ProtobufCMessage *req);

void api_consent_grant(struct call *c, ProtobufCMessage *req);
void api_consent_withdraw(struct call *c, ProtobufCMessage *req);
void api_consent_get(struct call *c, ProtobufCMessage *req);
void api_consent_history(struct call *c, ProtobufCMessage *req);
/* A stored consent event of @subject_id as the API shows it (strings
 * borrowed from @sc). */
void api_consent_event(const Dossier__Store__V1__StoredConsent *sc,
                       const char *subject_id, Dossier__V1__ConsentEvent *out);

void api_subjects_status(struct call *c, ProtobufCMessage *req);
void api_subjects_restrict(struct call *c, ProtobufCMessage *req);
void api_subjects_unrestrict(struct call *c, ProtobufCMessage *req);
void api_subjects_erase(struct call *c, ProtobufCMessage *req);
void api_subjects_erasure_ledger(struct call *c, ProtobufCMessage *req);
void api_subjects_export(struct call *c, ProtobufCMessage *req);
/* Art. 16 (api_rectify.c). */
void api_subjects_rectify(struct call *c, ProtobufCMessage *req);
/* Waits until no export is running (before the store closes). */
void api_export_wait_idle(void);
/* At a stop: exports under way end (their calls answered) and none
 * starts; returns once none runs. */
void api_export_stop(void);

void api_requests_file(struct call *c, ProtobufCMessage *req);
void api_requests_list(struct call *c, ProtobufCMessage *req);
void api_requests_get(struct call *c, ProtobufCMessage *req);
void api_requests_execute(struct call *c, ProtobufCMessage *req);
void api_requests_complete(struct call *c, ProtobufCMessage *req);
void api_requests_extend(struct call *c, ProtobufCMessage *req);
/* Tracked requests: open ones, executed ones, and open ones past their
 * deadline at @now (for metrics). Returns 0 or a store error code. */
int api_requests_count(struct node *n, int64_t now, uint64_t *open,
                       uint64_t *executed, uint64_t *overdue);

void api_principals_add(struct call *c, ProtobufCMessage *req);
void api_principals_remove(struct call *c, ProtobufCMessage *req);
void api_principals_list(struct call *c, ProtobufCMessage *req);

void api_backups_create(struct call *c, ProtobufCMessage *req);
void api_backups_list(struct call *c, ProtobufCMessage *req);

void api_audit_read(struct call *c, ProtobufCMessage *req);
void api_audit_public_key(struct call *c, ProtobufCMessage *req);
void api_peer_audit_append(struct call *c, ProtobufCMessage *req);

/* Checks subject id @id and makes its pseudonym into @sp; 0, or -1 after
 * answering @c with the reason. */
int api_subject_of(struct call *c, const char *id, uint8_t sp[16]);

/* As api_subject_of(), then follows merges: the pseudonym of the subject
 * @id was merged into (where its records, consent and restriction are
 * now), else @id's own. For reads about a person. */
int api_person_of(struct call *c, const char *id, uint8_t sp[16]);

/* 1 if @v is a label (a reference, a source: never personal data); else 0
 * after answering @c with the rule, naming the field @what. */
int api_label_ok(struct call *c, const char *what, const char *v);

/* Whether @c may see subject @sp's records under its purpose: 0 if so;
 * else DOSSIER_PERMISSION_DENIED (restricted subject, or no consent for a
 * consent purpose) with a message in @st, or a read error. */
int api_subject_visible(struct call *c, const uint8_t *sp,
                        struct dossier_status *st);

/* Master key rotation (api_keys.c). */
void api_keys_rotate(struct call *c, ProtobufCMessage *req);
void api_keys_status(struct call *c, ProtobufCMessage *req);
void api_peer_key_status(struct call *c, ProtobufCMessage *req);

void api_peer_send(struct call *c, ProtobufCMessage *req);
void api_peer_install_snapshot(struct call *c, ProtobufCMessage *req);
void api_peer_fault(struct call *c, ProtobufCMessage *req);

/* Refuses (answering @c) traffic of another cluster, from a node that is
 * not a member, or, in fault-injection tests, from a node this one is cut
 * off from; 0 when @from may talk to this node. */
int api_peer_check(struct call *c, const ProtobufCBinaryData *cid,
                   uint64_t from);

#endif
