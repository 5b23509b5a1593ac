/* The CRM commands of the replicated state machine: duplicate rules (and,
 * below, merges). Applied by store_apply(), deterministically, like every
 * command (store.h). */
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "errors.h"
#include "policy.h"
#include "store_int.h"

/* ------------------------------------------------------------------ */
/* Duplicate rules: "d" + kind in the policy family. The node checked the
 * rules against the kind when it proposed them; apply checks the form. */

int store_apply_duplicate_rules(struct store_batch *b, const Command *cmd,
                                struct store_result *res)
{
    const Dossier__Store__V1__DefineDuplicateRulesOp *op =
        cmd->define_duplicate_rules;
    Dossier__V1__DuplicateRuleSet def;
    uint8_t key[1 + SCHEMA_NAME_MAX];
    size_t n;

    if (!op || !op->rule_set || !schema_name_valid(op->rule_set->kind) ||
        op->rule_set->n_rules == 0)
        return store_apply_bad(res, "define duplicate rules");
    for (size_t i = 0; i < op->rule_set->n_rules; i++)
        if (!op->rule_set->rules[i] ||
            !policy_name_valid(op->rule_set->rules[i]->name) ||
            op->rule_set->rules[i]->n_fields == 0)
            return store_apply_bad(res, "duplicate rule");
    def = *op->rule_set;
    def.version = b->revision + 1;
    def.defined = 1;
    n = strlen(def.kind);
    key[0] = 'd';
    memcpy(key + 1, def.kind, n);
    if (store_batch_put_pb(b, STORE_POLICY, key, 1 + n, &def.base) != 0)
        return err_set(&res->status, DOSSIER_NOMEM, "out of memory");
    b->revision++;
    res->version = b->revision;
    return err_ok(&res->status);
}
