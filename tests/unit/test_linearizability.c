/* The linearizability checker used by the cluster tests: it accepts
 * linearizable register histories and rejects the ones that are not, so a
 * clean result from it means something. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "linearizability.h"

#define W(v, a, b) {LIN_WRITE, v, a, b}
#define R(v, a, b) {LIN_READ, v, a, b}
#define NEVER INT64_MAX

static enum lin_result check(const struct lin_op *ops, size_t n)
{
    return lin_check(ops, n, 1000000, NULL);
}

/* Sequential writes and reads that see them are linearizable. */
static void test_sequential_history_passes(void **state)
{
    struct lin_op ops[] = {R(LIN_NONE, 0, 5), W(1, 10, 20), R(1, 30, 40),
                           W(2, 50, 60), R(2, 70, 80)};
    (void)state;
    assert_int_equal(check(ops, 5), LIN_OK);
}

/* A read after a newer write completed, returning the older value, is a
 * stale read. */
static void test_stale_read_is_a_violation(void **state)
{
    struct lin_op ops[] = {W(1, 0, 10), W(2, 20, 30), R(1, 40, 50)};
    size_t culprit = 99;
    (void)state;
    assert_int_equal(lin_check(ops, 3, 1000000, &culprit), LIN_VIOLATION);
    assert_int_equal(culprit, 2);
}

/* Concurrent operations may be ordered either way. */
static void test_overlapping_operations_may_reorder(void **state)
{
    struct lin_op ops[] = {W(1, 0, 100), R(LIN_NONE, 10, 20), R(1, 30, 40),
                           W(2, 50, 200), R(1, 60, 70), R(2, 150, 160)};
    (void)state;
    assert_int_equal(check(ops, 6), LIN_OK);
}

/* Once a read saw a concurrent write, a later read cannot miss it. */
static void test_value_cannot_go_back(void **state)
{
    struct lin_op ops[] = {W(1, 0, 100), R(1, 10, 20), R(LIN_NONE, 30, 40)};
    (void)state;
    assert_int_equal(check(ops, 3), LIN_VIOLATION);
}

/* A write of unknown outcome may have happened... */
static void test_unknown_write_may_have_happened(void **state)
{
    struct lin_op ops[] = {W(7, 0, NEVER), R(7, 50, 60)};
    (void)state;
    assert_int_equal(check(ops, 2), LIN_OK);
}

/* ...or not... */
static void test_unknown_write_may_not_have_happened(void **state)
{
    struct lin_op ops[] = {W(7, 0, NEVER), R(LIN_NONE, 50, 60),
                           R(LIN_NONE, 70, 80)};
    (void)state;
    assert_int_equal(check(ops, 3), LIN_OK);
}

/* ...but not both. */
static void test_unknown_write_cannot_undo_itself(void **state)
{
    struct lin_op ops[] = {W(7, 0, NEVER), R(7, 50, 60), R(LIN_NONE, 70, 80)};
    (void)state;
    assert_int_equal(check(ops, 3), LIN_VIOLATION);
}

/* A read of a value nobody wrote is a violation. */
static void test_phantom_value_is_a_violation(void **state)
{
    struct lin_op ops[] = {W(1, 0, 10), R(3, 20, 30)};
    (void)state;
    assert_int_equal(check(ops, 2), LIN_VIOLATION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequential_history_passes),
        cmocka_unit_test(test_stale_read_is_a_violation),
        cmocka_unit_test(test_overlapping_operations_may_reorder),
        cmocka_unit_test(test_value_cannot_go_back),
        cmocka_unit_test(test_unknown_write_may_have_happened),
        cmocka_unit_test(test_unknown_write_may_not_have_happened),
        cmocka_unit_test(test_unknown_write_cannot_undo_itself),
        cmocka_unit_test(test_phantom_value_is_a_violation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
