/* Records between the API and the store: sealing a record into a write
 * command on the way in, opening a stored record on the way out. All
 * plaintext handled here is wiped before it is freed. */
#ifndef DOSSIER_NODE_RECORDS_H
#define DOSSIER_NODE_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "crypt.h"
#include "dossier.pb-c.h"
#include "schema.h"
#include "server.h"
#include "store.h"

/* Milliseconds since the epoch on the proposer's clock. */
int64_t records_now_ms(void);

/* Checks a record id or subject id: 1 to SCHEMA_ID_MAX bytes of UTF-8.
 * @what names it in the message ("id", "subject_id").
 * Errors: DOSSIER_INVALID_ARGUMENT. */
int records_check_id(const char *id, const char *what,
                     struct dossier_status *st);

/* The kind called @name, or DOSSIER_UNKNOWN_KIND / DOSSIER_INVALID_ARGUMENT
 * with a message. *@out is borrowed from the registry. */
int records_kind(struct node *n, const char *name, const KindSchema **out,
                 struct dossier_status *st);

/* Seals record @r (already checked against @k) into a packed Put command
 * *@out (*@len bytes, malloc'd, the caller owns it). @expected is NULL for
 * no version check; @call gives the request id, principal and purpose
 * (call_command_init()). *@sp gets the subject pseudonym (all zero: none), so a
 * caller that sees DOSSIER_RETRY can forget a stale cached key.
 * Errors: DOSSIER_NOMEM, DOSSIER_IO, DOSSIER_CORRUPT, DOSSIER_WRONG_KEY. */
int records_seal_put(struct node *n, const KindSchema *k,
                     const Dossier__V1__Record *r, const uint64_t *expected,
                     struct call *call, uint8_t **out, size_t *len,
                     uint8_t sp[CRYPT_PSEUDONYM_BYTES],
                     struct dossier_status *st);

/* A stored record opened for a reply. */
struct records_opened {
    Dossier__V1__Record rec; /* points into the members below */
    StoredRecord *stored;
    Dossier__V1__Field *fields;
    Dossier__V1__Field **field_ptrs;
    Dossier__V1__Value **values;
    Dossier__Store__V1__LinkList *links; /* links sealed in the record
                                            (before they were indexed) */
    struct store_link *index_links;      /* links from the link family */
    size_t n_index_links;
    Dossier__V1__Link *link_items, **link_ptrs;
    char **link_ids;                     /* opened target ids */
    char *id;
    char *subject_id;
};

/* A flag beside the categories of records_open(): open @stored exactly as
 * it is, an old version included (the change feed), without its links
 * (which the link family holds only as they are now). */
#define RECORDS_AS_STORED (1u << 31)

/* Opens @stored, the record whose pseudonym is @rid (taken: freed by
 * records_opened_release, also on failure) into @o, with only the fields
 * whose category is in @categories (bits 1 << Category; fields of no known
 * category are left out), and its links as the link family holds them.
 * A record with links is read again with them, at one moment, so @o may
 * show a newer version than @stored; one deleted meanwhile, or made again
 * for another subject, is DOSSIER_NOT_FOUND.
 * Errors: DOSSIER_CORRUPT (a box does not open: tampering or a key that no
 * longer exists), DOSSIER_NOT_FOUND, DOSSIER_NOMEM, DOSSIER_IO. */
int records_open(struct node *n, StoredRecord *stored,
                 const uint8_t rid[STORE_RID_BYTES], unsigned categories,
                 struct records_opened *o, struct dossier_status *st);

/* The value of field @name of @r, or NULL when it has none. */
const Dossier__V1__Value *records_field_value(const Dossier__V1__Record *r,
                                              const char *name);

/* Wipes and frees what @o holds. */
void records_opened_release(struct records_opened *o);

/* Seals @plain (@len bytes) at @place (its domain, kind, rid and name
 * set; its subject is filled here) under the current data key of subject
 * @sp (NULL: the shared key of records without a subject) into *@box
 * (*@box_len bytes, malloc'd); *@dek_id gets the key's id.
 * Errors: DOSSIER_NOT_FOUND (the subject has no key), DOSSIER_NOMEM,
 * DOSSIER_CORRUPT, DOSSIER_WRONG_KEY. */
int records_seal_box(struct node *n, const uint8_t *sp,
                     struct crypt_place place, const uint8_t *plain,
                     size_t len, uint8_t **box, size_t *box_len,
                     uint64_t *dek_id, struct dossier_status *st);

/* Opens @box (@box_len bytes) of @place under the current data key of
 * subject @sp (NULL: the shared key), which must be key @dek_id, into
 * *@plain (*@len bytes and a NUL, malloc'd: wipe it before freeing).
 * Errors: DOSSIER_NOT_FOUND (no key, or no longer key @dek_id),
 * DOSSIER_CORRUPT, DOSSIER_NOMEM. */
int records_open_box(struct node *n, const uint8_t *sp, uint64_t dek_id,
                     struct crypt_place place, const uint8_t *box,
                     size_t box_len, uint8_t **plain, size_t *len,
                     struct dossier_status *st);

/* Seals target id @tid of a link @label from record @src (stored, its
 * pseudonym @src_rid) to (@tkind, @trid) under @src's key, as a Put seals
 * it (crypt.h, domain 'A'), into *@box (*@box_len bytes, malloc'd).
 * Errors: DOSSIER_RETRY (@src's subject no longer has the key that sealed
 * it), as records_seal_box(). */
int records_seal_link_target(struct node *n, const StoredRecord *src,
                             const uint8_t src_rid[STORE_RID_BYTES],
                             const char *label, const char *tkind,
                             const uint8_t trid[STORE_RID_BYTES],
                             const char *tid, uint8_t **box,
                             size_t *box_len, struct dossier_status *st);

#endif
