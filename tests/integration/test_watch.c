/* The change feed (Watch) against real nodes, through libdossier:
 *  - every put, delete, consent change and erasure comes in commit order,
 *    with the record as after the change, a put's revision being the
 *    record's version; a kind filter keeps record changes of that kind and
 *    every erasure and consent change;
 *  - changes are filtered by purpose exactly as reads: fields the purpose
 *    may not see never arrive, and a watcher whose purpose needs consent
 *    never sees a record of a subject without it; an erased subject's
 *    earlier changes leave the feed, its erasure stays;
 *  - a watcher that stops and resumes from its position, and one whose
 *    node is stopped under it while writers run (the library resumes on
 *    another node), see every acknowledged write exactly once, on a
 *    3-node cluster;
 *  - a start older than what the node keeps fails with OUT_OF_RANGE, and
 *    so does a linearizable start past the cluster's last revision; a
 *    serializable start a lagging follower has not reached yet makes it
 *    wait, then send the client elsewhere (UNAVAILABLE);
 *  - a delete, an expiry and an erasure take the earlier contents out of
 *    the feed; consent changes go only to the watchers of their purpose;
 *  - a watcher filtered by kind hears PROGRESS while other kinds are
 *    written, so its position keeps up with the trimmed feed. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "harness.h"

/* What a watcher saw: a copy of each change's essentials. */
struct seen {
    enum dossier_change_type type;
    uint64_t revision, version;
    uint32_t seq;
    char kind[32], id[64], subject_ref[33], purpose[65];
    int content_erased, has_email, has_special, has_name;
    char first_name[64];
    char contact_person[64], name[64];
    enum dossier_consent_state consent_state;
};

struct collector {
    struct seen *v;
    size_t n, cap;
    const char *stop_id;   /* stop at a put of this record id */
    int stop_at_progress;  /* stop at the first PROGRESS */
    size_t stop_after;     /* stop after this many changes (0: no) */
    pthread_mutex_t mu;
    int started;           /* a first PROGRESS came: the watch is live */
    uint64_t progress_rev; /* the highest PROGRESS revision */
};

static void collector_init(struct collector *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
}

static void collector_free(struct collector *c)
{
    free(c->v);
    pthread_mutex_destroy(&c->mu);
}

static int collect(void *arg, const struct dossier_change *ch)
{
    struct collector *c = arg;
    struct seen s;
    int stop = 0;

    if (ch->type == DOSSIER_CHANGE_PROGRESS) {
        pthread_mutex_lock(&c->mu);
        c->started = 1;
        if (ch->revision > c->progress_rev)
            c->progress_rev = ch->revision;
        pthread_mutex_unlock(&c->mu);
        return c->stop_at_progress;
    }
    memset(&s, 0, sizeof(s));
    s.type = ch->type;
    s.revision = ch->revision;
    s.seq = ch->seq;
    s.content_erased = ch->content_erased;
    snprintf(s.subject_ref, sizeof(s.subject_ref), "%s", ch->subject_ref);
    snprintf(s.purpose, sizeof(s.purpose), "%s", ch->purpose);
    s.consent_state = ch->consent_state;
    if (ch->record) {
        const struct dossier_value *v;
        snprintf(s.kind, sizeof(s.kind), "%s", ch->record->kind);
        snprintf(s.id, sizeof(s.id), "%s", ch->record->id);
        s.version = ch->record->version;
        s.has_email = dossier_record_field(ch->record, "email") != NULL;
        s.has_special =
            dossier_record_field(ch->record, "accessibility_needs") != NULL;
        v = dossier_record_field(ch->record, "first_name");
        s.has_name = v != NULL;
        if (v && v->type == DOSSIER_TYPE_STRING)
            snprintf(s.first_name, sizeof(s.first_name), "%s", v->u.s);
        v = dossier_record_field(ch->record, "contact_person");
        if (v && v->type == DOSSIER_TYPE_STRING)
            snprintf(s.contact_person, sizeof(s.contact_person), "%s",
                     v->u.s);
        v = dossier_record_field(ch->record, "name");
        if (v && v->type == DOSSIER_TYPE_STRING)
            snprintf(s.name, sizeof(s.name), "%s", v->u.s);
    }
    pthread_mutex_lock(&c->mu);
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->v = realloc(c->v, c->cap * sizeof(*c->v));
        assert_non_null(c->v);
    }
    c->v[c->n++] = s;
    if (c->stop_after && c->n >= c->stop_after)
        stop = 1;
    pthread_mutex_unlock(&c->mu);
    if (c->stop_id && ch->type == DOSSIER_CHANGE_PUT &&
        strcmp(s.id, c->stop_id) == 0)
        stop = 1;
    return stop;
}

/* Puts contact @id of @subject named @name; *@version (may be NULL) gets
 * its version. 0 or the status code. */
static int put_contact_v(struct dossier_client *c, const char *id,
                         const char *subject, const char *name,
                         uint64_t *version)
{
    struct dossier_record *r = dossier_record_new("contact", id, subject);
    struct dossier_put_result res;
    struct dossier_status st;
    char email[96];
    int rc;
    snprintf(email, sizeof(email), "%s@example.org", id);
    dossier_record_set_string(r, "first_name", name);
    dossier_record_set_string(r, "email", email);
    dossier_record_set_string(r, "accessibility_needs", "wheelchair");
    /* Linked records are read with their links as they are now; the feed
     * must still show each version as it was. */
    dossier_record_add_link(r, "works_at", "company", "co1");
    rc = dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, &res, &st);
    if (rc)
        print_message("put %s: %s\n", id, st.message);
    else if (version)
        *version = res.version;
    dossier_record_free(r);
    return rc ? st.code : 0;
}

static int put_contact(struct dossier_client *c, const char *id,
                       const char *subject, const char *name)
{
    return put_contact_v(c, id, subject, name, NULL);
}

/* Puts company @id; returns its version. */
static uint64_t put_company(struct dossier_client *c, const char *id)
{
    struct dossier_record *r = dossier_record_new("company", id, NULL);
    struct dossier_put_result res;
    struct dossier_status st;
    dossier_record_set_string(r, "name", "Acme");
    if (dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, &res, &st) != 0)
        fail_msg("put company: %s", st.message);
    dossier_record_free(r);
    return res.version;
}

/* Watches @cl from @start until caught up (the first PROGRESS). */
static int watch_history(struct dossier_client *cl, const char *const *kinds,
                         size_t n_kinds, uint64_t start, struct collector *col,
                         struct dossier_status *st)
{
    struct dossier_watch_options o = {kinds, n_kinds, {start, 0}};
    col->stop_at_progress = 1;
    return dossier_watch(cl, NULL, &o, collect, col, NULL, st);
}

static const struct seen *find(const struct collector *c,
                               enum dossier_change_type t, const char *id)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].type == t && (!id || strcmp(c->v[i].id, id) == 0))
            return &c->v[i];
    return NULL;
}

/* ------------------------------------------------------------------ */

static void test_changes_in_order_and_filtered(void **state)
{
    struct node_proc n;
    struct dossier_client *ops, *mkt, *co_only;
    struct dossier_status st;
    struct collector all, companies, marketing;
    const char *company_kind[] = {"company"};
    char ref_s1[33] = "", ref_s2[33] = "";
    uint64_t co1_v, c2_v;
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    mkt = harness_client_as(n.addr, NULL, "marketing");
    co_only = harness_client_as(n.addr, NULL, "operations");

    assert_int_equal(put_contact(ops, "c1", "s1", "Ann"), 0);
    co1_v = put_company(ops, "co1");
    assert_int_equal(put_contact_v(ops, "c2", "s2", "Bob", &c2_v), 0);
    assert_int_equal(dossier_consent_grant(ops, NULL, "s1", "marketing",
                                           "signup-form", "2026-03", NULL,
                                           &st),
                     0);
    assert_int_equal(put_contact(ops, "c1", "s1", "Anna"), 0);
    assert_int_equal(
        dossier_delete(ops, NULL, "company", "co1", DOSSIER_ANY_VERSION, NULL,
                       &st),
        0);
    assert_int_equal(dossier_subject_erase(ops, NULL, "s2", "T-1", NULL, &st),
                     0);
    assert_int_equal(put_contact(ops, "c3", "s3", "Cem"), 0);

    /* Everything, from the first revision, for operations. s2 was
     * erased: its put left the feed with it, and only the erasure, naming
     * its pseudonym, remains. co1 was deleted: its put left the feed, and
     * only the deletion remains. The consent to marketing is marketing's
     * business, not operations'. */
    collector_init(&all);
    assert_int_equal(watch_history(ops, NULL, 0, 1, &all, &st), 0);
    assert_int_equal(all.n, 5);
    {
        static const enum dossier_change_type want[] = {
            DOSSIER_CHANGE_PUT, DOSSIER_CHANGE_PUT, DOSSIER_CHANGE_DELETE,
            DOSSIER_CHANGE_ERASE, DOSSIER_CHANGE_PUT};
        static const char *const ids[] = {"c1", "c1", "co1", "", "c3"};
        for (size_t i = 0; i < 5; i++) {
            assert_int_equal(all.v[i].type, want[i]);
            assert_string_equal(all.v[i].id, ids[i]);
            assert_false(all.v[i].content_erased);
            if (i)
                assert_true(all.v[i].revision > all.v[i - 1].revision);
        }
    }
    /* A put's revision is the version it made; fields as operations sees
     * them: no special category. */
    assert_int_equal(all.v[0].version, all.v[0].revision);
    assert_string_equal(all.v[0].first_name, "Ann");
    assert_string_equal(all.v[1].first_name, "Anna");
    assert_true(all.v[0].has_email);
    assert_false(all.v[0].has_special);
    snprintf(ref_s1, sizeof(ref_s1), "%s", all.v[0].subject_ref);
    assert_int_equal(strlen(ref_s1), 32);
    assert_string_equal(all.v[1].subject_ref, ref_s1);
    assert_string_equal(all.v[2].subject_ref, ""); /* a company: no one */
    /* The erasure names a subject none of the remaining changes is
     * about; the put of its record and the put of the deleted company are
     * gone. */
    snprintf(ref_s2, sizeof(ref_s2), "%s", all.v[3].subject_ref);
    assert_int_equal(strlen(ref_s2), 32);
    for (size_t i = 0; i < all.n; i++) {
        if (i != 3)
            assert_string_not_equal(all.v[i].subject_ref, ref_s2);
        assert_true(all.v[i].revision != co1_v && all.v[i].revision != c2_v);
    }
    /* The deletion names the record and the version deleted, nothing of
     * what it held. */
    assert_int_equal(all.v[2].version, co1_v);
    assert_false(all.v[2].has_name);
    assert_string_equal(all.v[2].name, "");

    /* Kinds: record changes of companies only, and every erasure. */
    collector_init(&companies);
    assert_int_equal(
        watch_history(co_only, company_kind, 1, 1, &companies, &st), 0);
    assert_int_equal(companies.n, 2);
    assert_int_equal(companies.v[0].type, DOSSIER_CHANGE_DELETE);
    assert_int_equal(companies.v[1].type, DOSSIER_CHANGE_ERASE);

    /* Marketing rests on consent: only s1 gave it, so c3 (s3) never comes,
     * and c1 comes without the special category. */
    collector_init(&marketing);
    assert_int_equal(watch_history(mkt, NULL, 0, 1, &marketing, &st), 0);
    assert_non_null(find(&marketing, DOSSIER_CHANGE_PUT, "c1"));
    assert_null(find(&marketing, DOSSIER_CHANGE_PUT, "c3"));
    /* The consent change names the subject and the purpose. */
    {
        const struct seen *g = find(&marketing, DOSSIER_CHANGE_CONSENT, NULL);
        assert_non_null(g);
        assert_string_equal(g->subject_ref, ref_s1);
        assert_string_equal(g->purpose, "marketing");
    }
    assert_null(find(&marketing, DOSSIER_CHANGE_PUT, "c2"));
    for (size_t i = 0; i < marketing.n; i++)
        assert_false(marketing.v[i].has_special);
    /* Withdrawal affects every change delivered after it. */
    assert_int_equal(dossier_consent_withdraw(ops, NULL, "s1", "marketing",
                                              "signup-form", "2026-03",
                                              NULL, &st),
                     0);
    collector_free(&marketing);
    collector_init(&marketing);
    assert_int_equal(watch_history(mkt, NULL, 0, 1, &marketing, &st), 0);
    assert_null(find(&marketing, DOSSIER_CHANGE_PUT, "c1"));
    assert_non_null(find(&marketing, DOSSIER_CHANGE_ERASE, NULL));

    /* Bad input: an unknown kind, a start in the future. */
    {
        const char *nokind[] = {"no_such_kind"};
        struct collector x;
        collector_init(&x);
        assert_int_not_equal(watch_history(ops, nokind, 1, 1, &x, &st), 0);
        assert_int_equal(st.code, DOSSIER_UNKNOWN_KIND);
        assert_int_not_equal(watch_history(ops, NULL, 0, 1000000, &x, &st),
                             0);
        assert_int_equal(st.code, DOSSIER_OUT_OF_RANGE);
        collector_free(&x);
    }
    collector_free(&all);
    collector_free(&companies);
    collector_free(&marketing);
    dossier_client_close(ops);
    dossier_client_close(mkt);
    dossier_client_close(co_only);
    node_destroy(&n);
}

/* ------------------------------------------------------------------ */

struct live {
    struct dossier_client *cl;
    struct collector col;
    struct dossier_watch_options o;
    struct dossier_watch_position next;
    struct dossier_status st;
    int rc;
};

static void *watch_main(void *arg)
{
    struct live *l = arg;
    struct dossier_call_options co = {0};
    co.timeout_ms = 120000;
    l->rc = dossier_watch(l->cl, &co, &l->o, collect, &l->col, &l->next,
                          &l->st);
    return NULL;
}

static void *watch_serializable_main(void *arg)
{
    struct live *l = arg;
    struct dossier_call_options co = {0};
    co.timeout_ms = 60000;
    co.consistency = DOSSIER_SERIALIZABLE;
    l->rc = dossier_watch(l->cl, &co, &l->o, collect, &l->col, &l->next,
                          &l->st);
    return NULL;
}

static void wait_started(struct collector *c)
{
    for (int i = 0; i < 200; i++) {
        int started;
        pthread_mutex_lock(&c->mu);
        started = c->started;
        pthread_mutex_unlock(&c->mu);
        if (started)
            return;
        usleep(50000);
    }
    fail_msg("the watcher never caught up");
}

struct writer {
    struct cluster_proc *c;
    int t, from, to;
    int acked[400];
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct dossier_client *cl = harness_client(w->c->targets, 30000);
    for (int k = w->from; k < w->to; k++) {
        char id[32], subj[32];
        snprintf(id, sizeof(id), "w%d-%d", w->t, k);
        snprintf(subj, sizeof(subj), "subj-%d-%d", w->t, k);
        w->acked[k] = put_contact(cl, id, subj, "Wri") == 0;
        usleep(5000);
    }
    dossier_client_close(cl);
    return NULL;
}

/* Every acknowledged write of @w was seen exactly once by @col (which may
 * also have seen unacknowledged ones that were applied after all). */
static void assert_each_once(const struct collector *col, struct writer *w,
                             int n_writers, int n)
{
    int acked = 0;
    for (size_t i = 1; i < col->n; i++)
        assert_true(col->v[i].revision > col->v[i - 1].revision ||
                    (col->v[i].revision == col->v[i - 1].revision &&
                     col->v[i].seq > col->v[i - 1].seq));
    for (int t = 0; t < n_writers; t++)
        for (int k = 0; k < n; k++) {
            char id[32];
            size_t times = 0;
            snprintf(id, sizeof(id), "w%d-%d", t, k);
            for (size_t i = 0; i < col->n; i++)
                times += col->v[i].type == DOSSIER_CHANGE_PUT &&
                         strcmp(col->v[i].id, id) == 0;
            if (w[t].acked[k]) {
                acked++;
                if (times != 1)
                    fail_msg("write %s seen %zu times", id, times);
            } else if (times > 1) {
                fail_msg("write %s seen %zu times", id, times);
            }
        }
    fprintf(stderr, "watch: %d acknowledged writes, each seen once in %zu "
                    "changes\n",
            acked, col->n);
    assert_true(acked > 0);
}

static void test_resume_exactly_once(void **state)
{
    const char *contact[] = {"contact"};
    struct cluster_proc c;
    struct live l;
    struct writer w[2];
    pthread_t wt[2], lt;
    struct collector second;
    struct dossier_client *cl;
    int stopped;
    (void)state;

    cluster_init(&c, 3, NULL);
    assert_int_equal(cluster_start_all(&c), 0);

    /* A live watcher through the first node, from now on. */
    memset(&l, 0, sizeof(l));
    l.cl = harness_client(c.targets, 30000);
    collector_init(&l.col);
    l.col.stop_id = "end";
    l.o.kinds = contact;
    l.o.n_kinds = 1;
    pthread_create(&lt, NULL, watch_main, &l);
    wait_started(&l.col);

    for (int t = 0; t < 2; t++) {
        w[t] = (struct writer){&c, t, 0, 150, {0}};
        pthread_create(&wt[t], NULL, writer_main, &w[t]);
    }
    /* Stop the node the watcher streams from (the first target) while
     * the writers run; the library resumes on another node. */
    usleep(600000);
    stopped = 0;
    assert_int_equal(node_stop(&c.nodes[stopped]), 0);
    usleep(600000);
    assert_int_equal(node_start(&c.nodes[stopped], NULL), 0);
    for (int t = 0; t < 2; t++)
        pthread_join(wt[t], NULL);
    cl = harness_client(c.targets, 30000);
    assert_int_equal(put_contact(cl, "end", "subj-end", "End"), 0);
    pthread_join(lt, NULL);
    if (l.rc)
        fail_msg("watch: %s", l.st.message);
    /* It did stream from the stopped node first, then from another. */
    assert_true(harness_log_count(&c.nodes[stopped], "watcher started") >= 1);
    assert_true(harness_log_count(&c.nodes[1], "watcher started") +
                    harness_log_count(&c.nodes[2], "watcher started") >=
                1);
    assert_each_once(&l.col, w, 2, 150);

    /* From the start again, in two goes: stop after 100 changes, resume
     * from the position the library gives back. */
    {
        struct dossier_watch_options o = {contact, 1, {1, 0}};
        struct dossier_watch_position next;
        struct dossier_status st;
        collector_init(&second);
        second.stop_after = 100;
        assert_int_equal(dossier_watch(cl, NULL, &o, collect, &second, &next,
                                       &st),
                         0);
        assert_int_equal(second.n, 100);
        second.stop_after = 0;
        second.stop_id = "end";
        o.start = next;
        assert_int_equal(dossier_watch(cl, NULL, &o, collect, &second, &next,
                                       &st),
                         0);
        assert_each_once(&second, w, 2, 150);
        collector_free(&second);
    }
    dossier_client_close(cl);
    dossier_client_close(l.cl);
    collector_free(&l.col);
    cluster_destroy(&c);
}

/* ------------------------------------------------------------------ */

/* The consent changes @c saw, as "subject_ref/purpose/state" joined with
 * ' ', into @out. */
static const char *consents(const struct collector *c, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].type == DOSSIER_CHANGE_CONSENT)
            snprintf(out + strlen(out), cap - strlen(out), "%s%.6s/%s/%s",
                     out[0] ? " " : "", c->v[i].subject_ref, c->v[i].purpose,
                     c->v[i].consent_state == DOSSIER_CONSENT_GRANTED
                         ? "granted"
                         : "withdrawn");
    return out;
}

/* A consent change goes only to the watchers of its purpose (a billing
 * watcher learns nothing of marketing consent; the history is the
 * compliance role's), and not while the subject is restricted, except to
 * legal_claims; a withdrawal goes to them although the subject's records
 * no longer do. */
static void test_consent_changes_go_to_their_purpose(void **state)
{
    struct node_proc n;
    struct dossier_client *ops, *mkt, *ana, *legal;
    struct dossier_status st;
    struct collector c;
    char ref_a[8], ref_b[8], want[256], got[512];
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    ops = harness_client_as(n.addr, NULL, "operations");
    mkt = harness_client_as(n.addr, NULL, "marketing");
    ana = harness_client_as(n.addr, NULL, "analytics");
    legal = harness_client_as(n.addr, NULL, "legal_claims");
    assert_int_equal(put_contact(ops, "ca", "sa", "Ada"), 0);
    assert_int_equal(put_contact(ops, "cb", "sb", "Ben"), 0);
    assert_int_equal(dossier_consent_grant(ops, NULL, "sa", "marketing",
                                           "form", "v1", NULL, &st),
                     0);
    assert_int_equal(dossier_consent_grant(ops, NULL, "sa", "analytics",
                                           "form", "v1", NULL, &st),
                     0);
    assert_int_equal(dossier_consent_grant(ops, NULL, "sb", "marketing",
                                           "form", "v1", NULL, &st),
                     0);
    assert_int_equal(dossier_consent_withdraw(ops, NULL, "sa", "marketing",
                                              "prefs", "v1", NULL, &st),
                     0);
    /* The subjects' pseudonyms, from operations' view of their puts;
     * operations hears of no consent. */
    collector_init(&c);
    assert_int_equal(watch_history(ops, NULL, 0, 1, &c, &st), 0);
    assert_non_null(find(&c, DOSSIER_CHANGE_PUT, "ca"));
    assert_non_null(find(&c, DOSSIER_CHANGE_PUT, "cb"));
    snprintf(ref_a, sizeof(ref_a), "%.6s",
             find(&c, DOSSIER_CHANGE_PUT, "ca")->subject_ref);
    snprintf(ref_b, sizeof(ref_b), "%.6s",
             find(&c, DOSSIER_CHANGE_PUT, "cb")->subject_ref);
    assert_string_equal(consents(&c, got, sizeof(got)), "");
    collector_free(&c);
    assert_int_equal(dossier_subject_restrict(ops, NULL, "sb", "REQ-1", NULL,
                                              &st),
                     0);

    /* Marketing: its own purpose, not the restricted subject. */
    collector_init(&c);
    assert_int_equal(watch_history(mkt, NULL, 0, 1, &c, &st), 0);
    snprintf(want, sizeof(want), "%s/marketing/granted %s/marketing/withdrawn",
             ref_a, ref_a);
    assert_string_equal(consents(&c, got, sizeof(got)), want);
    collector_free(&c);
    /* Analytics: its own. */
    collector_init(&c);
    assert_int_equal(watch_history(ana, NULL, 0, 1, &c, &st), 0);
    snprintf(want, sizeof(want), "%s/analytics/granted", ref_a);
    assert_string_equal(consents(&c, got, sizeof(got)), want);
    collector_free(&c);
    /* legal_claims may read the restricted subject, but nobody consents
     * to legal_claims. */
    collector_init(&c);
    assert_int_equal(watch_history(legal, NULL, 0, 1, &c, &st), 0);
    assert_string_equal(consents(&c, got, sizeof(got)), "");
    collector_free(&c);
    /* Once the restriction is lifted, marketing hears of sb's consent. */
    assert_int_equal(dossier_subject_unrestrict(ops, NULL, "sb", "REQ-1",
                                                NULL, &st),
                     0);
    collector_init(&c);
    assert_int_equal(watch_history(mkt, NULL, 0, 1, &c, &st), 0);
    snprintf(want, sizeof(want),
             "%s/marketing/granted %s/marketing/granted %s/marketing/withdrawn",
             ref_a, ref_b, ref_a);
    assert_string_equal(consents(&c, got, sizeof(got)), want);
    collector_free(&c);

    dossier_client_close(ops);
    dossier_client_close(mkt);
    dossier_client_close(ana);
    dossier_client_close(legal);
    node_destroy(&n);
}

/* ------------------------------------------------------------------ */

/* A deleted record's contents leave the feed: its earlier puts are taken
 * out, and the deletion names the record, its subject's pseudonym and the
 * version deleted, without a field. Other records of the subject stay. */
static void test_deleted_record_leaves_the_feed(void **state)
{
    struct node_proc n;
    struct dossier_client *cl;
    struct dossier_status st;
    struct collector col;
    uint64_t v2;
    const struct seen *d, *kept;
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, NULL), 0);
    cl = node_client(&n);
    assert_int_equal(put_contact(cl, "gone", "s-del", "Dee"), 0);
    assert_int_equal(put_contact_v(cl, "gone", "s-del", "Deedee", &v2), 0);
    assert_int_equal(put_contact(cl, "kept", "s-del", "Kay"), 0);
    assert_int_equal(dossier_delete(cl, NULL, "contact", "gone",
                                    DOSSIER_ANY_VERSION, NULL, &st),
                     0);

    collector_init(&col);
    assert_int_equal(watch_history(cl, NULL, 0, 1, &col, &st), 0);
    assert_null(find(&col, DOSSIER_CHANGE_PUT, "gone"));
    for (size_t i = 0; i < col.n; i++) {
        assert_string_not_equal(col.v[i].first_name, "Dee");
        assert_string_not_equal(col.v[i].first_name, "Deedee");
    }
    d = find(&col, DOSSIER_CHANGE_DELETE, "gone");
    assert_non_null(d);
    assert_int_equal(d->version, v2);
    assert_false(d->has_name);
    assert_false(d->has_email);
    kept = find(&col, DOSSIER_CHANGE_PUT, "kept");
    assert_non_null(kept);
    assert_string_equal(kept->first_name, "Kay");
    assert_string_equal(d->subject_ref, kept->subject_ref);
    collector_free(&col);
    dossier_client_close(cl);
    node_destroy(&n);
}

/* Whether a change @c saw carries @value in field contact_person. */
static int saw_contact_person(const struct collector *c, const char *value)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].contact_person, value) == 0)
            return 1;
    return 0;
}

/* Fields past their retention leave the feed with the record: the
 * record's earlier changes go, for a record with a subject and for one
 * without, and the EXPIRE that replaces them carries the record as it is
 * after the sweep. */
static void test_expired_fields_leave_the_feed(void **state)
{
    const char *more[] = {"--enable-fault-injection", "--retention-sweep-ms",
                          "200", "--retention-clock-offset-days", "45", NULL};
    struct dossier_field_schema sup_fields[] = {
        {"name", DOSSIER_FIELD_STRING, DOSSIER_CATEGORY_OPERATIONAL, 0, 0, 0,
         0, NULL, NULL},
        {"contact_person", DOSSIER_FIELD_STRING, DOSSIER_CATEGORY_IDENTITY, 0,
         0, 30, 0, NULL, NULL}};
    struct dossier_kind_schema supplier = {
        .kind = "supplier", .description = "no subject", .n_fields = 2,
        .fields = sup_fields};
    struct dossier_kind_schema lead = {.kind = "lead", .personal = 1,
                                       .description = "a subject",
                                       .n_fields = 2, .fields = sup_fields};
    static const char *const kinds[] = {"supplier", "lead"};
    struct node_proc n;
    struct dossier_client *cl;
    struct dossier_status st;
    struct collector col;
    int gone = 0;
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, more), 0);
    cl = node_client(&n);
    assert_int_equal(dossier_schema_define(cl, NULL, &supplier, NULL, &st), 0);
    assert_int_equal(dossier_schema_define(cl, NULL, &lead, NULL, &st), 0);
    for (size_t k = 0; k < 2; k++) {
        struct dossier_record *r = dossier_record_new(
            kinds[k], "x1", k ? "subj-lead" : NULL);
        dossier_record_set_string(r, "name", "Acme Supplies");
        dossier_record_set_string(r, "contact_person", "Jane Expired");
        if (dossier_put(cl, NULL, r, DOSSIER_ANY_VERSION, NULL, &st) != 0)
            fail_msg("put %s: %s", kinds[k], st.message);
        dossier_record_free(r);
    }
    /* The sweeper runs 45 days ahead: the 30-day field goes. */
    for (int t = 0; t < 100 && gone < 2; t++) {
        gone = 0;
        for (size_t k = 0; k < 2; k++) {
            struct dossier_record *got = NULL;
            assert_int_equal(dossier_get(cl, NULL, kinds[k], "x1", &got, &st),
                             0);
            gone += dossier_record_field(got, "contact_person") == NULL;
            dossier_record_free(got);
        }
        if (gone < 2)
            usleep(100000);
    }
    assert_int_equal(gone, 2);

    collector_init(&col);
    assert_int_equal(watch_history(cl, NULL, 0, 1, &col, &st), 0);
    assert_false(saw_contact_person(&col, "Jane Expired"));
    for (size_t k = 0; k < 2; k++) {
        const struct seen *e = NULL;
        for (size_t i = 0; i < col.n; i++)
            if (strcmp(col.v[i].kind, kinds[k]) == 0) {
                /* Only the expiry is left of the record. */
                assert_int_equal(col.v[i].type, DOSSIER_CHANGE_EXPIRE);
                e = &col.v[i];
            }
        if (!e)
            fail_msg("no expiry of the %s", kinds[k]);
        assert_string_equal(e->id, "x1");
        assert_string_equal(e->name, "Acme Supplies");
        assert_int_equal(e->version, e->revision);
        assert_int_equal(strlen(e->subject_ref), k ? 32 : 0);
    }
    collector_free(&col);
    dossier_client_close(cl);
    node_destroy(&n);
}

/* ------------------------------------------------------------------ */

/* A watcher of one kind hears PROGRESS while only other kinds are
 * written, so its resume position keeps up with the feed: resuming from
 * it after the feed was trimmed works (it used to stay where the watch
 * began, and a resume after trimming failed with OUT_OF_RANGE). */
static void test_progress_while_other_kinds_are_written(void **state)
{
    const char *extra[] = {"--watch-history", "40", NULL};
    const char *company[] = {"company"};
    struct node_proc n;
    struct dossier_client *cl;
    struct dossier_status st;
    struct live l;
    pthread_t lt;
    uint64_t v20 = 0, seen;
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, extra), 0);
    cl = node_client(&n);
    memset(&l, 0, sizeof(l));
    l.cl = node_client(&n);
    collector_init(&l.col);
    l.col.stop_id = "end";
    l.o.kinds = company;
    l.o.n_kinds = 1;
    pthread_create(&lt, NULL, watch_main, &l);
    wait_started(&l.col);

    for (int k = 0; k < 60; k++) {
        char id[16];
        uint64_t v;
        snprintf(id, sizeof(id), "p%d", k);
        assert_int_equal(put_contact_v(cl, id, id, "Pat", &v), 0);
        if (k == 20)
            v20 = v;
        usleep(50000);
    }
    pthread_mutex_lock(&l.col.mu);
    seen = l.col.progress_rev;
    pthread_mutex_unlock(&l.col.mu);
    /* Contact 20 was written a couple of seconds before the last. */
    if (seen < v20)
        fail_msg("the watcher heard no progress past revision %llu while "
                 "contacts were written (contact 20 took revision %llu)",
                 (unsigned long long)seen, (unsigned long long)v20);
    /* The feed was trimmed meanwhile (the start is gone); the position
     * the watcher was told still holds. */
    {
        struct collector x;
        collector_init(&x);
        assert_int_not_equal(watch_history(cl, company, 1, 1, &x, &st), 0);
        assert_int_equal(st.code, DOSSIER_OUT_OF_RANGE);
        collector_free(&x);
    }
    {
        struct collector again;
        struct dossier_watch_options o = {company, 1, {seen + 1, 0}};
        collector_init(&again);
        again.stop_id = "end";
        put_company(cl, "end");
        if (dossier_watch(cl, NULL, &o, collect, &again, NULL, &st) != 0)
            fail_msg("resume from %llu: %s", (unsigned long long)seen + 1,
                     st.message);
        assert_non_null(find(&again, DOSSIER_CHANGE_PUT, "end"));
        collector_free(&again);
    }
    pthread_join(lt, NULL);
    if (l.rc)
        fail_msg("watch: %s", l.st.message);
    dossier_client_close(cl);
    dossier_client_close(l.cl);
    collector_free(&l.col);
    node_destroy(&n);
}

/* ------------------------------------------------------------------ */

/* A serializable watch may reach a follower that has not applied up to
 * its start (a position another node gave): the follower waits for a
 * while and then answers UNAVAILABLE, so the library tries another node,
 * rather than OUT_OF_RANGE, which is final; once it catches up it serves
 * the watch itself. A linearizable watch from past the cluster's last
 * revision is still OUT_OF_RANGE. */
static void test_start_beyond_a_lagging_follower(void **state)
{
    const char *company[] = {"company"};
    struct dossier_call_options ser = {0};
    struct cluster_proc c;
    struct dossier_client *cl, *lagging, *both;
    struct dossier_status st;
    struct collector col;
    struct dossier_watch_options o = {company, 1, {0, 0}};
    struct live l;
    pthread_t lt;
    char targets[160];
    int leader, f;
    uint64_t v;
    (void)state;

    cluster_init(&c, 3, NULL);
    assert_int_equal(cluster_start_all(&c), 0);
    leader = cluster_leader(&c);
    assert_true(leader >= 0);
    f = (leader + 1) % 3;
    cl = harness_client(c.nodes[leader].listen, 15000);
    put_company(cl, "before");
    assert_int_equal(cluster_wait_converged(&c), 0);
    /* The follower is cut off; the others go on. */
    cluster_isolate(&c, f, 0x7u & ~(1u << f));
    v = put_company(cl, "after-1");
    put_company(cl, "after-2");
    o.start.revision = v + 1; /* after a PROGRESS at v, say */

    /* Alone, the lagging follower says to go elsewhere. */
    ser.consistency = DOSSIER_SERIALIZABLE;
    ser.timeout_ms = 3000;
    lagging = harness_client(c.nodes[f].listen, 15000);
    collector_init(&col);
    col.stop_id = "after-2";
    assert_int_not_equal(
        dossier_watch(lagging, &ser, &o, collect, &col, NULL, &st), 0);
    assert_int_equal(st.code, DOSSIER_UNAVAILABLE);
    assert_non_null(strstr(st.message, "applied"));
    collector_free(&col);

    /* With another node to go to, the watch goes on there. */
    snprintf(targets, sizeof(targets), "%s,%s", c.nodes[f].listen,
             c.nodes[leader].listen);
    both = harness_client(targets, 15000);
    ser.timeout_ms = 30000;
    collector_init(&col);
    col.stop_id = "after-2";
    if (dossier_watch(both, &ser, &o, collect, &col, NULL, &st) != 0)
        fail_msg("watch with failover: %s", st.message);
    assert_non_null(find(&col, DOSSIER_CHANGE_PUT, "after-2"));
    assert_null(find(&col, DOSSIER_CHANGE_PUT, "after-1"));
    collector_free(&col);

    /* On the follower alone, a watch that waits gets its changes once the
     * follower catches up. */
    memset(&l, 0, sizeof(l));
    l.cl = lagging;
    collector_init(&l.col);
    l.col.stop_id = "after-2";
    l.o = o;
    l.o.kinds = company;
    pthread_create(&lt, NULL, watch_serializable_main, &l);
    usleep(1000000);
    cluster_isolate(&c, f, 0);
    pthread_join(lt, NULL);
    if (l.rc)
        fail_msg("watch on the follower: %s", l.st.message);
    assert_non_null(find(&l.col, DOSSIER_CHANGE_PUT, "after-2"));
    collector_free(&l.col);

    /* Linearizable, from past the cluster's last revision. */
    collector_init(&col);
    o.start.revision = v + 1000;
    assert_int_not_equal(dossier_watch(cl, NULL, &o, collect, &col, NULL, &st),
                         0);
    assert_int_equal(st.code, DOSSIER_OUT_OF_RANGE);
    collector_free(&col);

    dossier_client_close(cl);
    dossier_client_close(lagging);
    dossier_client_close(both);
    cluster_destroy(&c);
}

/* ------------------------------------------------------------------ */

static void test_trimmed_history(void **state)
{
    const char *extra[] = {"--watch-history", "10", NULL};
    struct node_proc n;
    struct dossier_client *cl;
    struct dossier_status st;
    struct collector col;
    (void)state;

    node_init(&n);
    assert_int_equal(node_start(&n, extra), 0);
    cl = node_client(&n);
    for (int k = 0; k < 40; k++) {
        char id[16];
        snprintf(id, sizeof(id), "t%d", k);
        assert_int_equal(put_contact(cl, id, id, "Tri"), 0);
    }
    collector_init(&col);
    assert_int_not_equal(watch_history(cl, NULL, 0, 1, &col, &st), 0);
    assert_int_equal(st.code, DOSSIER_OUT_OF_RANGE);
    assert_non_null(strstr(st.message, "scan"));
    /* The last ten revisions are kept. */
    assert_int_equal(watch_history(cl, NULL, 0, 31, &col, &st), 0);
    assert_int_equal(col.n, 10);
    assert_string_equal(col.v[0].id, "t30");
    assert_string_equal(col.v[9].id, "t39");
    collector_free(&col);

    /* What the refusal says works: scan, then watch from the revision
     * after the first page's. The scan shows every change up to its
     * revision; the watch brings every change after it. */
    {
        struct dossier_page_request pr = {15, NULL};
        struct dossier_page page;
        struct dossier_watch_options o = {NULL, 0, {0, 0}};
        uint64_t v_last, v_after;

        assert_int_equal(put_contact_v(cl, "t40", "t40", "Tri", &v_last), 0);
        assert_int_equal(dossier_scan(cl, NULL, "contact", &pr, &page, &st),
                         0);
        assert_true(page.revision >= v_last);
        o.start.revision = page.revision + 1;
        dossier_page_release(&page);
        /* A change made while the scan's pages are read. */
        assert_int_equal(put_contact_v(cl, "t41", "t41", "Tri", &v_after), 0);
        assert_true(v_after >= o.start.revision);
        collector_init(&col);
        col.stop_id = "t41";
        assert_int_equal(dossier_watch(cl, NULL, &o, collect, &col, NULL, &st),
                         0);
        assert_non_null(find(&col, DOSSIER_CHANGE_PUT, "t41"));
        assert_null(find(&col, DOSSIER_CHANGE_PUT, "t40"));
        collector_free(&col);
    }
    dossier_client_close(cl);
    node_destroy(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_changes_in_order_and_filtered),
        cmocka_unit_test(test_trimmed_history),
        cmocka_unit_test(test_expired_fields_leave_the_feed),
        cmocka_unit_test(test_deleted_record_leaves_the_feed),
        cmocka_unit_test(test_consent_changes_go_to_their_purpose),
        cmocka_unit_test(test_progress_while_other_kinds_are_written),
        cmocka_unit_test(test_resume_exactly_once),
        cmocka_unit_test(test_start_beyond_a_lagging_follower),
    };
    int rc;
    if (sodium_init() < 0)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (harness_running() != 0) {
        fprintf(stderr, "a test left a process running\n");
        return 1;
    }
    return rc;
}
