/* Kinds and their fields: the built-in CRM kinds, validation and
 * normalisation of records against a kind, and the registry of kinds the
 * node knows. */
#ifndef DOSSIER_NODE_SCHEMA_H
#define DOSSIER_NODE_SCHEMA_H

#include <stddef.h>

#include <dossier/dossier.h>

#include "dossier.pb-c.h"

typedef Dossier__V1__KindSchema KindSchema;
typedef Dossier__V1__FieldSchema FieldSchema;

/* Limits on names and values, checked on every write. */
#define SCHEMA_NAME_MAX 63          /* kind, field and link label names */
#define SCHEMA_ID_MAX 256           /* record ids and subject ids, bytes */
#define SCHEMA_VALUE_MAX 65536      /* one string value, bytes */
#define SCHEMA_FIELDS_MAX 256       /* fields of a kind */
#define SCHEMA_LINKS_MAX 1024       /* links of a record */
#define SCHEMA_NORM_MAX 512         /* longest normalised indexed value */
#define SCHEMA_RETENTION_DAYS_MAX 36500 /* a kind's record retention */

/* 1 if @s is a valid kind, field or label name: [a-z][a-z0-9_]{0,62}. */
int schema_name_valid(const char *s);

/* 1 if @s (@len bytes) is valid UTF-8 without NUL bytes. */
int schema_utf8_valid(const char *s, size_t len);

/* The field of @k called @name, or NULL. Borrowed from @k. */
const FieldSchema *schema_field(const KindSchema *k, const char *name);

/* Checks @r against @k and normalises it in place: phones become E.164,
 * integers given for double fields become doubles. A field whose value is
 * null (no member set) is absent: callers skip it. The message names the
 * field at fault. On failure @r may be partly normalised: it is a request
 * being refused, to be discarded.
 * Errors: DOSSIER_SCHEMA_VIOLATION, DOSSIER_INVALID_ARGUMENT. */
int schema_check_record(const KindSchema *k, Dossier__V1__Record *r,
                        struct dossier_status *st);

/* The normalised form of @v for the blind index of @k's field @f into @out (@cap bytes):
 * emails lower-cased, phones in E.164, integers in decimal. @v may be a
 * caller's query value, so it is validated like a write.
 * Errors: DOSSIER_INVALID_ARGUMENT (not indexed, wrong type, too long). */
int schema_index_value(const KindSchema *k, const FieldSchema *f,
                       const Dossier__V1__Value *v, char *out, size_t cap,
                       size_t *len, struct dossier_status *st);

/* Tags (FIELD_TYPE_TAGS): a set of labels kept as one string. */
#define SCHEMA_TAG_MAX 64  /* bytes of one tag */
#define SCHEMA_TAGS_MAX 64 /* tags of one value */

/* Normalises the tag set @s in place: tags split on commas, blanks around
 * them dropped, lower-cased, each kept once, sorted, joined with ','
 * ("VIP, eu ,vip" becomes "eu,vip"; "" stays ""). Returns 0, or -1 when a
 * tag is empty or longer than SCHEMA_TAG_MAX, holds a character other
 * than [a-z0-9_.:/-], or there are more than SCHEMA_TAGS_MAX (then @s is
 * unspecified). */
int schema_tags_normalize(char *s);

/* 1 if the normalised tag set @set holds the tag @tag (normalised). */
int schema_tags_has(const char *set, const char *tag);

/* Checks a definition on its own: names, types, categories, enums.
 * Errors: DOSSIER_INVALID_ARGUMENT. */
int schema_check_definition(const KindSchema *k, struct dossier_status *st);

/* Checks that @next may replace @prev (both borrowed): no field removed, no
 * type or indexing changed, the personal flag kept. Categories,
 * descriptions, retention, the required flag and allowed values may change
 * (records already stored keep the values they have).
 * Errors: DOSSIER_FAILED_PRECONDITION. */
int schema_check_compatible(const KindSchema *prev, const KindSchema *next,
                            struct dossier_status *st);

/* The registry: every kind the node knows, built-in ones first. Lookups
 * may run on any thread while another thread sets a kind. A kind returned
 * stays valid until the registry is freed, even when it is redefined. */
struct schema_registry;

/* A registry holding the built-in kinds. Returns NULL when out of memory. */
struct schema_registry *schema_registry_new(void);
void schema_registry_free(struct schema_registry *r);

/* Forgets every defined kind (they are retired, so pointers handed out stay
 * valid) and keeps the built-in ones: before loading another database. */
void schema_registry_reset(struct schema_registry *r);

/* The kind called @name, or NULL. Borrowed (see above). */
const KindSchema *schema_registry_get(struct schema_registry *r,
                                      const char *name);

/* Sets @k (taken on success; freed with protobuf_c_message_free_unpacked
 * and the default allocator) as the current definition of its kind.
 * Returns 0, or -1 when out of memory (then @k stays the caller's). */
int schema_registry_set(struct schema_registry *r, KindSchema *k);

/* Every kind, sorted by name, into *@out (an array the caller frees with
 * free(); the kinds are borrowed as for schema_registry_get()). Returns 0,
 * or -1 when out of memory. */
int schema_registry_list(struct schema_registry *r, const KindSchema ***out,
                         size_t *n);

/* 1 if @name is one of the kinds compiled into Dossier. */
int schema_is_builtin(const char *name);

#endif
