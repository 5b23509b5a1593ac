/* Purposes of processing: the built-in ones, checks of definitions, and
 * the registry every call's purpose is looked up in.
 *
 * A purpose names the field categories its answers may carry and its
 * lawful basis; a basis of consent means a subject's data is seen only
 * while the subject has granted consent to that purpose. Built-in
 * purposes:
 *   operations    contract: identity, contact, financial, behavioral,
 *                 operational (running the customer relationship)
 *   marketing     consent: identity, contact
 *   analytics     consent: behavioral, operational
 *   legal_claims  legal obligation: every category; the only purpose that
 *                 sees a restricted subject (Art. 18) */
#ifndef DOSSIER_NODE_POLICY_H
#define DOSSIER_NODE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include <dossier/dossier.h>

#include "dossier.pb-c.h"

#define POLICY_NAME_MAX 64
#define POLICY_DESCRIPTION_MAX 255
#define POLICY_LABEL_MAX 64
#define POLICY_LEGAL_CLAIMS "legal_claims"
/* Every category (bits 1 << Category). */
#define POLICY_ALL_CATEGORIES 0x7eu

struct policy_purpose {
    char name[POLICY_NAME_MAX + 1];
    unsigned categories; /* bit 1 << c for each Dossier__V1__Category c */
    int basis;           /* Dossier__V1__LawfulBasis */
    char description[POLICY_DESCRIPTION_MAX + 1];
    int builtin;
    uint64_t version;
};

/* 1 if @name is a well-formed purpose name: [a-z][a-z0-9_-]*, at most
 * POLICY_NAME_MAX bytes. */
int policy_name_valid(const char *name);

/* 1 if @s is a well-formed label (source, notice version, reference):
 * [A-Za-z0-9._:/-]*, at most POLICY_LABEL_MAX bytes; "" is one. */
int policy_label_valid(const char *s);

int policy_is_builtin(const char *name);

/* Checks a definition from a caller.
 * Errors: DOSSIER_INVALID_ARGUMENT (bad name, no or unknown category, no
 * or unknown basis, description too long), DOSSIER_FAILED_PRECONDITION
 * (a built-in purpose). */
int policy_check_definition(const Dossier__V1__Purpose *p,
                            struct dossier_status *st);

/* The registry: built-in purposes plus those defined. Thread-safe; lookups
 * copy. */
struct policy;

struct policy *policy_new(void);
void policy_free(struct policy *p);
/* Back to the built-in purposes only. */
void policy_reset(struct policy *p);
/* Adds or replaces @pb's purpose (a checked definition), at @version. */
void policy_set(struct policy *p, const Dossier__V1__Purpose *pb,
                uint64_t version);
/* 0 and *@out filled if @name is known, else DOSSIER_NOT_FOUND. */
int policy_get(struct policy *p, const char *name, struct policy_purpose *out);
/* Every purpose, sorted by name: *@out malloc'd (free()), *@n of them.
 * Errors: DOSSIER_NOMEM. */
int policy_list(struct policy *p, struct policy_purpose **out, size_t *n);

/* @pp as a message; @cats is caller memory for 6 categories, which
 * @out->categories points into; strings are borrowed from @pp. */
void policy_to_pb(const struct policy_purpose *pp, Dossier__V1__Purpose *out,
                  Dossier__V1__Category cats[6]);

/* Bit mask of @pb's categories. */
unsigned policy_categories(const Dossier__V1__Purpose *pb);

#endif
