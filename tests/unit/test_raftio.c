/* Unit tests of Raft's state on disk (node/raftio.c): what raftio_save and
 * raftio_compact write is what raftio_load reads back, across reopening the
 * store; a truncated tail never survives; compaction drops exactly the
 * covered entries. Each test works in a fresh temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "raftio.h"
#include "testutil.h"

#define CACHE_BYTES (1 << 20)

struct fixture {
    struct tmpdir dir;
    char data[128];
    struct store *s;
};

static void fx_open(struct fixture *f)
{
    struct dossier_status st;
    int created;
    if (store_open(f->data, CACHE_BYTES, &f->s, &created, &st) != 0)
        fail_msg("store_open: %s", st.message);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    tmpdir_make(&f->dir);
    path_in(f->data, sizeof(f->data), f->dir.path, "data");
    fx_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    tmpdir_remove(&f->dir);
    free(f);
    return 0;
}

static void fx_reopen(struct fixture *f)
{
    store_close(f->s);
    f->s = NULL;
    fx_open(f);
}

/* Persists entries [from, to] of term @term (payload "i@term"), with a hard
 * state of that term. */
static void save(struct fixture *f, raft_index from, raft_index to,
                 raft_term term)
{
    struct raft_entry e[64];
    char buf[64][24];
    struct raft_ready rd;
    struct dossier_status st;
    assert_true(to - from < 64);
    memset(&rd, 0, sizeof(rd));
    for (raft_index i = from; i <= to; i++) {
        struct raft_entry *x = &e[i - from];
        snprintf(buf[i - from], sizeof(buf[0]), "%llu@%llu",
                 (unsigned long long)i, (unsigned long long)term);
        x->index = i;
        x->term = term;
        x->type = RAFT_ENTRY_NORMAL;
        x->data = (uint8_t *)buf[i - from];
        x->len = strlen(buf[i - from]);
    }
    rd.entries = e;
    rd.n_entries = to - from + 1;
    rd.hs_changed = 1;
    rd.hs.term = term;
    if (raftio_save(f->s, &rd, &st) != 0)
        fail_msg("raftio_save: %s", st.message);
}

static void compact(struct fixture *f, raft_index index, raft_term term)
{
    struct raft_snapshot_meta m;
    struct dossier_status st;
    memset(&m, 0, sizeof(m));
    m.index = index;
    m.term = term;
    m.conf.n_voters = 1;
    m.conf.voters[0] = 1;
    if (raftio_compact(f->s, &m, &st) != 0)
        fail_msg("raftio_compact: %s", st.message);
}

/* The log on disk is exactly @n entries from @first, entry i of term
 * terms[i - first], each with its own payload. */
static void assert_log(struct fixture *f, raft_index first, size_t n,
                       const raft_term *terms)
{
    struct raftio_state rs;
    struct dossier_status st;
    if (raftio_load(f->s, &rs, &st) != 0)
        fail_msg("raftio_load: %s", st.message);
    assert_int_equal(rs.n_entries, n);
    for (size_t k = 0; k < n; k++) {
        char want[24];
        const struct raft_entry *e = &rs.entries[k];
        assert_int_equal(e->index, first + k);
        assert_int_equal(e->term, terms[k]);
        snprintf(want, sizeof(want), "%llu@%llu",
                 (unsigned long long)(first + k),
                 (unsigned long long)terms[k]);
        assert_int_equal(e->len, strlen(want));
        assert_memory_equal(e->data, want, e->len);
    }
    if (n) {
        assert_int_equal(rs.p.snap.index, first - 1);
        /* save() persists the term of its entries as the hard state. */
        assert_int_equal(rs.p.hs.term, terms[n - 1]);
    }
    raftio_state_release(&rs);
}

static void test_appends_read_back_after_reopen(void **state)
{
    struct fixture *f = *state;
    const raft_term t[10] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 2};
    save(f, 1, 5, 1);
    save(f, 6, 10, 2);
    fx_reopen(f);
    assert_log(f, 1, 10, t);
}

/* A leader of a later term replaces entries 6..10 by 6..7: entries 8..10
 * must be gone, also after reopening. */
static void test_truncation_drops_the_stale_tail(void **state)
{
    struct fixture *f = *state;
    const raft_term t[7] = {1, 1, 1, 1, 1, 3, 3};
    const raft_term t2[9] = {1, 1, 1, 1, 1, 3, 3, 4, 4};
    save(f, 1, 10, 1);
    save(f, 6, 7, 3);
    assert_log(f, 1, 7, t);
    fx_reopen(f);
    assert_log(f, 1, 7, t);
    /* Appending after a truncation continues the new log. */
    save(f, 8, 9, 4);
    assert_log(f, 1, 9, t2);
}

/* Entries saved from an index replace everything from there on, even a
 * tail longer than the new entries, whose place they take. */
static void test_shorter_rewrite_replaces_the_tail(void **state)
{
    struct fixture *f = *state;
    const raft_term t[4] = {2, 2, 3, 3};
    save(f, 1, 6, 2);
    save(f, 3, 4, 3);
    assert_log(f, 1, 4, t);
}

static void test_compaction_drops_covered_entries(void **state)
{
    struct fixture *f = *state;
    raft_term t[60];
    for (int i = 0; i < 60; i++)
        t[i] = 1;
    /* Many appends and compactions, as a busy node does. */
    for (raft_index i = 1; i <= 300; i += 10) {
        save(f, i, i + 9, 1);
        if (i > 50)
            compact(f, i - 40, 1);
    }
    /* Last compaction at 291 - 40 = 251: the log is 252..300. */
    fx_reopen(f);
    assert_log(f, 252, 49, t);
    /* A compaction at or below the snapshot point changes nothing. */
    compact(f, 200, 1);
    assert_log(f, 252, 49, t);
}

/* Truncating right after a compaction keeps the snapshot point. */
static void test_truncation_after_compaction(void **state)
{
    struct fixture *f = *state;
    const raft_term t[3] = {1, 5, 5};
    save(f, 1, 20, 1);
    compact(f, 10, 1);
    save(f, 12, 13, 5);
    fx_reopen(f);
    assert_log(f, 11, 3, t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_appends_read_back_after_reopen,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation_drops_the_stale_tail,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_shorter_rewrite_replaces_the_tail,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction_drops_covered_entries,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation_after_compaction,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
