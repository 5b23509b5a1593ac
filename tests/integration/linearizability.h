/* A linearizability checker for histories of one register (a key read and
 * written by concurrent clients): the Wing & Gong search with Lowe's
 * memoization of (operations linearized, register value).
 *
 * A write whose outcome is unknown (it timed out or its node was lost) may
 * have taken effect at any time after it started, or never: it is given a
 * return time of infinity, so that the search may place it anywhere after
 * its call, including after everything observed (which is the same as
 * never). */
#ifndef DOSSIER_TESTS_LINEARIZABILITY_H
#define DOSSIER_TESTS_LINEARIZABILITY_H

#include <stddef.h>
#include <stdint.h>

#define LIN_NONE 0 /* the value of a register never written */

enum lin_kind { LIN_READ, LIN_WRITE };

struct lin_op {
    enum lin_kind kind;
    uint64_t value;    /* written, or read (LIN_NONE: not found) */
    int64_t call_us;   /* when the client started it */
    int64_t return_us; /* when it answered; INT64_MAX: unknown outcome */
};

enum lin_result { LIN_OK = 0, LIN_VIOLATION = 1, LIN_UNDECIDED = 2 };

/* Checks @ops (@n of them, any order; borrowed) against a register that
 * starts as LIN_NONE. Gives up as LIN_UNDECIDED after @budget search steps.
 * On LIN_VIOLATION, *@culprit (may be NULL) is the index of the operation
 * that stopped the longest order the search found. */
enum lin_result lin_check(const struct lin_op *ops, size_t n, uint64_t budget,
                          size_t *culprit);

#endif
