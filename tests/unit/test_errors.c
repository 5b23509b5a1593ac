/* Unit tests of the error table: names, messages, and the mapping of codes
 * to gRPC statuses and back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "errors.h"

/* Every row of the table, built from the same X-macro the library uses, so
 * that a code added to DOSSIER_ERRORS is covered here without edits. */
struct code_row {
    int code;
    const char *name;
    const char *message;
};

#define TEST_ROW(name, value, msg) {DOSSIER_##name, #name, msg},
static const struct code_row all_codes[] = {DOSSIER_ERRORS(TEST_ROW)};
#undef TEST_ROW
#define N_CODES (sizeof(all_codes) / sizeof(all_codes[0]))

/* dossier_code_name() gives each code its name in the table, and
 * err_from_name() maps the name back to the code. */
static void test_code_names_match_the_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_CODES; i++) {
        assert_string_equal(dossier_code_name(all_codes[i].code),
                            all_codes[i].name);
        assert_int_equal(err_from_name(all_codes[i].name), all_codes[i].code);
    }
}

/* dossier_code_message() gives each code its one-line description from the
 * table. */
static void test_code_messages_match_the_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_CODES; i++)
        assert_string_equal(dossier_code_message(all_codes[i].code),
                            all_codes[i].message);
}

/* A code that travels as its gRPC status plus its name in the
 * "dossier-error" trailer comes back as the same code, for every code. */
static void test_every_code_round_trips_through_grpc_with_its_name(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_CODES; i++) {
        int code = all_codes[i].code;
        grpc_status_code s = err_to_grpc(code);
        assert_int_equal(err_from_grpc(s, dossier_code_name(code)), code);
    }
}

/* The wire mapping of codes to gRPC statuses, pinned as a table: changing a
 * row changes what every client sees and must be a visible decision. */
static void test_codes_travel_as_the_documented_grpc_statuses(void **state)
{
    static const struct {
        int code;
        grpc_status_code status;
    } want[] = {
        {DOSSIER_OK, GRPC_STATUS_OK},
        {DOSSIER_INVALID_ARGUMENT, GRPC_STATUS_INVALID_ARGUMENT},
        {DOSSIER_NOT_FOUND, GRPC_STATUS_NOT_FOUND},
        {DOSSIER_ALREADY_EXISTS, GRPC_STATUS_ALREADY_EXISTS},
        {DOSSIER_VERSION_CONFLICT, GRPC_STATUS_ABORTED},
        {DOSSIER_UNKNOWN_KIND, GRPC_STATUS_INVALID_ARGUMENT},
        {DOSSIER_SCHEMA_VIOLATION, GRPC_STATUS_INVALID_ARGUMENT},
        {DOSSIER_TOO_LARGE, GRPC_STATUS_RESOURCE_EXHAUSTED},
        {DOSSIER_UNAUTHENTICATED, GRPC_STATUS_UNAUTHENTICATED},
        {DOSSIER_PERMISSION_DENIED, GRPC_STATUS_PERMISSION_DENIED},
        {DOSSIER_FAILED_PRECONDITION, GRPC_STATUS_FAILED_PRECONDITION},
        {DOSSIER_UNAVAILABLE, GRPC_STATUS_UNAVAILABLE},
        {DOSSIER_DEADLINE_EXCEEDED, GRPC_STATUS_DEADLINE_EXCEEDED},
        {DOSSIER_CANCELLED, GRPC_STATUS_CANCELLED},
        {DOSSIER_NOMEM, GRPC_STATUS_RESOURCE_EXHAUSTED},
        {DOSSIER_IO, GRPC_STATUS_UNAVAILABLE},
        {DOSSIER_CORRUPT, GRPC_STATUS_DATA_LOSS},
        {DOSSIER_WRONG_KEY, GRPC_STATUS_FAILED_PRECONDITION},
        {DOSSIER_RETRY, GRPC_STATUS_ABORTED},
        {DOSSIER_INTERNAL, GRPC_STATUS_INTERNAL},
        {DOSSIER_UNIMPLEMENTED, GRPC_STATUS_UNIMPLEMENTED},
        {DOSSIER_OUT_OF_RANGE, GRPC_STATUS_OUT_OF_RANGE},
    };
    (void)state;
    /* Every code of the table has a row here. */
    assert_int_equal(sizeof(want) / sizeof(want[0]), N_CODES);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_int_equal(err_to_grpc(want[i].code), want[i].status);
}

/* A code outside the table travels as INTERNAL. */
static void test_unknown_code_travels_as_internal(void **state)
{
    (void)state;
    assert_int_equal(err_to_grpc(-1), GRPC_STATUS_INTERNAL);
    assert_int_equal(err_to_grpc((int)N_CODES), GRPC_STATUS_INTERNAL);
    assert_int_equal(err_to_grpc(1000), GRPC_STATUS_INTERNAL);
}

/* Without a Dossier trailer (the failure came from the transport), the
 * statuses gRPC itself produces map to the codes a caller would act on: an
 * unreachable node is UNAVAILABLE, a deadline DEADLINE_EXCEEDED, a
 * cancellation CANCELLED, gRPC's message size limit TOO_LARGE, a method the
 * node does not serve UNIMPLEMENTED. */
static void test_transport_statuses_without_name_map_to_transport_codes(
    void **state)
{
    (void)state;
    assert_int_equal(err_from_grpc(GRPC_STATUS_UNAVAILABLE, NULL),
                     DOSSIER_UNAVAILABLE);
    assert_int_equal(err_from_grpc(GRPC_STATUS_DEADLINE_EXCEEDED, NULL),
                     DOSSIER_DEADLINE_EXCEEDED);
    assert_int_equal(err_from_grpc(GRPC_STATUS_CANCELLED, NULL),
                     DOSSIER_CANCELLED);
    assert_int_equal(err_from_grpc(GRPC_STATUS_RESOURCE_EXHAUSTED, NULL),
                     DOSSIER_TOO_LARGE);
    assert_int_equal(err_from_grpc(GRPC_STATUS_UNAUTHENTICATED, NULL),
                     DOSSIER_UNAUTHENTICATED);
    assert_int_equal(err_from_grpc(GRPC_STATUS_PERMISSION_DENIED, NULL),
                     DOSSIER_PERMISSION_DENIED);
    assert_int_equal(err_from_grpc(GRPC_STATUS_UNIMPLEMENTED, NULL),
                     DOSSIER_UNIMPLEMENTED);
}

/* Without a trailer, OK is success. */
static void test_ok_status_without_name_is_ok(void **state)
{
    (void)state;
    assert_int_equal(err_from_grpc(GRPC_STATUS_OK, NULL), DOSSIER_OK);
}

/* Without a trailer, statuses that have no Dossier meaning (UNKNOWN,
 * INTERNAL) are INTERNAL; OUT_OF_RANGE is the change feed's. */
static void test_statuses_without_dossier_meaning_are_internal(void **state)
{
    (void)state;
    assert_int_equal(err_from_grpc(GRPC_STATUS_UNKNOWN, NULL),
                     DOSSIER_INTERNAL);
    assert_int_equal(err_from_grpc(GRPC_STATUS_OUT_OF_RANGE, NULL),
                     DOSSIER_OUT_OF_RANGE);
    assert_int_equal(err_from_grpc(GRPC_STATUS_INTERNAL, NULL),
                     DOSSIER_INTERNAL);
}

/* A trailer naming no code of the table (a newer node's code, garbage) is
 * ignored and the status decides. */
static void test_unknown_name_falls_back_to_the_status(void **state)
{
    (void)state;
    assert_int_equal(err_from_grpc(GRPC_STATUS_NOT_FOUND, "NO_SUCH_CODE"),
                     DOSSIER_NOT_FOUND);
    assert_int_equal(err_from_grpc(GRPC_STATUS_UNAVAILABLE, ""),
                     DOSSIER_UNAVAILABLE);
    assert_int_equal(err_from_name("not_found"), -1);
}

/* dossier_code_name() of a code outside the table is "UNKNOWN". */
static void test_name_of_unknown_code_is_UNKNOWN(void **state)
{
    (void)state;
    assert_string_equal(dossier_code_name(-1), "UNKNOWN");
    assert_string_equal(dossier_code_name((int)N_CODES), "UNKNOWN");
    assert_string_equal(dossier_code_name(1000), "UNKNOWN");
}

/* err_set() fills the status with the code and the formatted message and
 * returns the code. */
static void test_err_set_fills_code_and_formatted_message(void **state)
{
    struct dossier_status st;
    (void)state;
    memset(&st, 0x55, sizeof(st));
    assert_int_equal(err_set(&st, DOSSIER_NOT_FOUND, "no %s called '%s'",
                             "kind", "widget"),
                     DOSSIER_NOT_FOUND);
    assert_int_equal(st.code, DOSSIER_NOT_FOUND);
    assert_string_equal(st.message, "no kind called 'widget'");
}

/* Calls err_vset() with a format the compiler cannot check, so that the
 * empty and NULL formats the header allows can be passed (err_set("") is a
 * -Wformat-zero-length error under -Werror). */
static int vset(struct dossier_status *st, int code, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = err_vset(st, code, fmt, ap);
    va_end(ap);
    return rc;
}

/* An empty (or NULL) format uses the table's message for the code. */
static void test_empty_format_uses_table_message(void **state)
{
    struct dossier_status st;
    (void)state;
    assert_int_equal(vset(&st, DOSSIER_VERSION_CONFLICT, ""),
                     DOSSIER_VERSION_CONFLICT);
    assert_int_equal(st.code, DOSSIER_VERSION_CONFLICT);
    assert_string_equal(st.message, "version conflict");
    assert_int_equal(vset(&st, DOSSIER_IO, NULL), DOSSIER_IO);
    assert_string_equal(st.message, "input/output error");
}

/* err_set() accepts a NULL status and still returns the code. */
static void test_err_set_without_status_returns_code(void **state)
{
    (void)state;
    assert_int_equal(err_set(NULL, DOSSIER_IO, "disk %d", 1), DOSSIER_IO);
}

/* A message longer than the status holds is cut, NUL-terminated. */
static void test_err_set_truncates_long_message(void **state)
{
    struct dossier_status st;
    char longer[DOSSIER_STATUS_MESSAGE_MAX * 2];
    (void)state;
    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    err_set(&st, DOSSIER_INTERNAL, "%s", longer);
    assert_int_equal(strlen(st.message), DOSSIER_STATUS_MESSAGE_MAX - 1);
}

/* err_ok() clears the status to code 0 and an empty message. */
static void test_err_ok_clears_status(void **state)
{
    struct dossier_status st;
    (void)state;
    err_set(&st, DOSSIER_IO, "disk on fire");
    assert_int_equal(err_ok(&st), 0);
    assert_int_equal(st.code, DOSSIER_OK);
    assert_string_equal(st.message, "");
    assert_int_equal(err_ok(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_names_match_the_table),
        cmocka_unit_test(test_code_messages_match_the_table),
        cmocka_unit_test(test_every_code_round_trips_through_grpc_with_its_name),
        cmocka_unit_test(test_codes_travel_as_the_documented_grpc_statuses),
        cmocka_unit_test(test_unknown_code_travels_as_internal),
        cmocka_unit_test(
            test_transport_statuses_without_name_map_to_transport_codes),
        cmocka_unit_test(test_ok_status_without_name_is_ok),
        cmocka_unit_test(test_statuses_without_dossier_meaning_are_internal),
        cmocka_unit_test(test_unknown_name_falls_back_to_the_status),
        cmocka_unit_test(test_name_of_unknown_code_is_UNKNOWN),
        cmocka_unit_test(test_err_set_fills_code_and_formatted_message),
        cmocka_unit_test(test_empty_format_uses_table_message),
        cmocka_unit_test(test_err_set_without_status_returns_code),
        cmocka_unit_test(test_err_set_truncates_long_message),
        cmocka_unit_test(test_err_ok_clears_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
