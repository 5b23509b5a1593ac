/* Names of field types and categories, as the CLI, JSON and messages spell
 * them. */
#include <string.h>

#include <dossier/dossier.h>

static const char *const type_names[] = {
    [DOSSIER_FIELD_STRING] = "string",   [DOSSIER_FIELD_INT] = "int",
    [DOSSIER_FIELD_DOUBLE] = "double",   [DOSSIER_FIELD_BOOL] = "bool",
    [DOSSIER_FIELD_TIMESTAMP] = "timestamp",
    [DOSSIER_FIELD_EMAIL] = "email",     [DOSSIER_FIELD_PHONE] = "phone",
    [DOSSIER_FIELD_ENUM] = "enum",       [DOSSIER_FIELD_TAGS] = "tags",
};

static const char *const category_names[] = {
    [DOSSIER_CATEGORY_IDENTITY] = "identity",
    [DOSSIER_CATEGORY_CONTACT] = "contact",
    [DOSSIER_CATEGORY_FINANCIAL] = "financial",
    [DOSSIER_CATEGORY_SPECIAL] = "special",
    [DOSSIER_CATEGORY_BEHAVIORAL] = "behavioral",
    [DOSSIER_CATEGORY_OPERATIONAL] = "operational",
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

const char *dossier_field_type_name(enum dossier_field_type t)
{
    return (unsigned)t < N(type_names) ? type_names[t] : NULL;
}

const char *dossier_category_name(enum dossier_category c)
{
    return (unsigned)c < N(category_names) ? category_names[c] : NULL;
}

static int parse(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 1; i < n; i++)
        if (names[i] && strcmp(names[i], name) == 0)
            return (int)i;
    return -1;
}

int dossier_field_type_parse(const char *name)
{
    return parse(type_names, N(type_names), name);
}

int dossier_category_parse(const char *name)
{
    return parse(category_names, N(category_names), name);
}
