/* Purposes: built-ins, checks and the registry. */
#include "policy.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

#define CAT(c) (1u << DOSSIER__V1__CATEGORY__CATEGORY_##c)

static const struct policy_purpose builtins[] = {
    {"analytics", CAT(BEHAVIORAL) | CAT(OPERATIONAL),
     DOSSIER__V1__LAWFUL_BASIS__LAWFUL_BASIS_CONSENT,
     "product and usage analytics, with the subject's consent", 1, 0},
    {"legal_claims", POLICY_ALL_CATEGORIES,
     DOSSIER__V1__LAWFUL_BASIS__LAWFUL_BASIS_LEGAL_OBLIGATION,
     "establishing, exercising or defending legal claims; the only purpose "
     "that reads a restricted subject (Art. 18)",
     1, 0},
    {"marketing", CAT(IDENTITY) | CAT(CONTACT),
     DOSSIER__V1__LAWFUL_BASIS__LAWFUL_BASIS_CONSENT,
     "direct marketing, with the subject's consent", 1, 0},
    {"operations",
     CAT(IDENTITY) | CAT(CONTACT) | CAT(FINANCIAL) | CAT(BEHAVIORAL) |
         CAT(OPERATIONAL),
     DOSSIER__V1__LAWFUL_BASIS__LAWFUL_BASIS_CONTRACT,
     "running the customer relationship: sales, support, billing; no "
     "special-category data",
     1, 0},
};
#define N_BUILTINS (sizeof(builtins) / sizeof(builtins[0]))

int policy_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > POLICY_NAME_MAX || name[0] < 'a' || name[0] > 'z')
        return 0;
    for (size_t i = 1; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

int policy_label_valid(const char *s)
{
    size_t n = strlen(s);
    if (n > POLICY_LABEL_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || strchr("._:/-", c)))
            return 0;
    }
    return 1;
}

int policy_is_builtin(const char *name)
{
    for (size_t i = 0; i < N_BUILTINS; i++)
        if (strcmp(builtins[i].name, name) == 0)
            return 1;
    return 0;
}

unsigned policy_categories(const Dossier__V1__Purpose *pb)
{
    unsigned m = 0;
    for (size_t i = 0; i < pb->n_categories; i++)
        if (pb->categories[i] >= 1 && pb->categories[i] <= 6)
            m |= 1u << pb->categories[i];
    return m;
}

int policy_check_definition(const Dossier__V1__Purpose *p,
                            struct dossier_status *st)
{
    if (!policy_name_valid(p->name))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose name must be 1 to %d characters: a "
                       "lower-case letter, then letters, digits, _ or -",
                       POLICY_NAME_MAX);
    if (policy_is_builtin(p->name))
        return err_set(st, DOSSIER_FAILED_PRECONDITION,
                       "purpose '%s' is built in and cannot be redefined",
                       p->name);
    if (p->n_categories == 0)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose '%s': name at least one field category it "
                       "may see",
                       p->name);
    for (size_t i = 0; i < p->n_categories; i++)
        if (p->categories[i] < 1 || p->categories[i] > 6)
            return err_set(st, DOSSIER_INVALID_ARGUMENT,
                           "purpose '%s': category %zu is not one of "
                           "identity, contact, financial, special, "
                           "behavioral, operational",
                           p->name, i + 1);
    if (p->basis < 1 || p->basis > 6)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose '%s': a lawful basis is required (consent, "
                       "contract, legal_obligation, vital_interests, "
                       "public_task, legitimate_interest)",
                       p->name);
    if (strlen(p->description) > POLICY_DESCRIPTION_MAX)
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "purpose '%s': description is longer than %d bytes",
                       p->name, POLICY_DESCRIPTION_MAX);
    return err_ok(st);
}

struct policy {
    pthread_mutex_t mu;
    struct policy_purpose *defined;
    size_t n, cap;
};

struct policy *policy_new(void)
{
    struct policy *p = calloc(1, sizeof(*p));
    if (p)
        pthread_mutex_init(&p->mu, NULL);
    return p;
}

void policy_free(struct policy *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->mu);
    free(p->defined);
    free(p);
}

void policy_reset(struct policy *p)
{
    pthread_mutex_lock(&p->mu);
    p->n = 0;
    pthread_mutex_unlock(&p->mu);
}

void policy_set(struct policy *p, const Dossier__V1__Purpose *pb,
                uint64_t version)
{
    struct policy_purpose pp;
    size_t i;

    memset(&pp, 0, sizeof(pp));
    snprintf(pp.name, sizeof(pp.name), "%s", pb->name);
    pp.categories = policy_categories(pb);
    pp.basis = pb->basis;
    snprintf(pp.description, sizeof(pp.description), "%s", pb->description);
    pp.version = version;
    pthread_mutex_lock(&p->mu);
    for (i = 0; i < p->n; i++)
        if (strcmp(p->defined[i].name, pp.name) == 0)
            break;
    if (i == p->n && p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        struct policy_purpose *d = realloc(p->defined, cap * sizeof(*d));
        if (!d) {
            pthread_mutex_unlock(&p->mu);
            return; /* the definition shows after the next restart */
        }
        p->defined = d;
        p->cap = cap;
    }
    p->defined[i] = pp;
    if (i == p->n)
        p->n++;
    pthread_mutex_unlock(&p->mu);
}

int policy_get(struct policy *p, const char *name, struct policy_purpose *out)
{
    int rc = DOSSIER_NOT_FOUND;
    for (size_t i = 0; i < N_BUILTINS; i++)
        if (strcmp(builtins[i].name, name) == 0) {
            *out = builtins[i];
            return 0;
        }
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->defined[i].name, name) == 0) {
            *out = p->defined[i];
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct policy_purpose *)a)->name,
                  ((const struct policy_purpose *)b)->name);
}

int policy_list(struct policy *p, struct policy_purpose **out, size_t *n)
{
    struct policy_purpose *all;
    pthread_mutex_lock(&p->mu);
    all = malloc((N_BUILTINS + p->n) * sizeof(*all));
    if (!all) {
        pthread_mutex_unlock(&p->mu);
        return DOSSIER_NOMEM;
    }
    memcpy(all, builtins, sizeof(builtins));
    if (p->n)
        memcpy(all + N_BUILTINS, p->defined, p->n * sizeof(*all));
    *n = N_BUILTINS + p->n;
    pthread_mutex_unlock(&p->mu);
    qsort(all, *n, sizeof(*all), by_name);
    *out = all;
    return 0;
}

void policy_to_pb(const struct policy_purpose *pp, Dossier__V1__Purpose *out,
                  Dossier__V1__Category cats[6])
{
    size_t n = 0;
    dossier__v1__purpose__init(out);
    out->name = (char *)pp->name;
    for (int c = 1; c <= 6; c++)
        if (pp->categories & (1u << c))
            cats[n++] = (Dossier__V1__Category)c;
    out->n_categories = n;
    out->categories = cats;
    out->basis = (Dossier__V1__LawfulBasis)pp->basis;
    out->description = (char *)pp->description;
    out->builtin = pp->builtin;
    out->version = pp->version;
}
