/* dossier-bench's Dossier driver: libdossier asynchronous puts and gets,
 * all on one client's completion thread (one client per node with
 * --spread). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dossier/dossier.h>

#include "bench.h"

#define BENCH_KIND "bench_record"
#define MAX_CLIENTS 16

struct bdossier {
    struct dossier_client *clients[MAX_CLIENTS];
    size_t n;
    struct dossier_call_options read_opts;
};

/* Opens a client on @target (borrowed) into *@out; errors printed. */
static int client_open(const struct bench *b, const char *target,
                       struct dossier_client **out)
{
    struct dossier_client_options o;
    struct dossier_status st;

    dossier_client_options_init(&o);
    o.target = target;
    o.purpose = "operations"; /* built in: contract basis */
    o.token = getenv("DOSSIER_TOKEN");
    o.timeout_ms = 30000;
    o.tls_ca = b->tls_ca;
    o.tls_cert = b->tls_cert;
    o.tls_key = b->tls_key;
    if (dossier_client_open(&o, out, &st)) {
        fprintf(stderr, "dossier-bench: %s: %s\n", dossier_code_name(st.code),
                st.message);
        return -1;
    }
    return 0;
}

/* Defines the benchmark's kind through @c unless it exists. */
static int define_kind(struct dossier_client *c)
{
    struct dossier_status st;
    struct dossier_kind_schema *k;
    struct dossier_field_schema f[3] = {
        {"email", DOSSIER_FIELD_EMAIL, DOSSIER_CATEGORY_CONTACT, 1, 0, 0, 0,
         NULL, NULL},
        {"name", DOSSIER_FIELD_STRING, DOSSIER_CATEGORY_IDENTITY, 0, 0, 0, 0,
         NULL, NULL},
        {"payload", DOSSIER_FIELD_STRING, DOSSIER_CATEGORY_BEHAVIORAL, 0, 0,
         0, 0, NULL, NULL},
    };
    struct dossier_kind_schema def = {BENCH_KIND, 1, 0, 0,
                                      "dossier-bench records", 3, f, 0,
                                      DOSSIER_RETENTION_SINCE_UPDATE};

    if (dossier_schema_get(c, NULL, BENCH_KIND, &k, &st) == 0) {
        dossier_kind_schema_free(k);
        return 0;
    }
    if (st.code == DOSSIER_UNKNOWN_KIND &&
        dossier_schema_define(c, NULL, &def, NULL, &st) == 0)
        return 0;
    fprintf(stderr, "dossier-bench: %s: %s\n", dossier_code_name(st.code),
            st.message);
    return -1;
}

static void bdossier_close(struct bench *b)
{
    struct bdossier *d = b->drv;
    for (size_t i = 0; d && i < d->n; i++)
        dossier_client_close(d->clients[i]);
    free(d);
    b->drv = NULL;
}

static int bdossier_open(struct bench *b)
{
    struct bdossier *d = calloc(1, sizeof(*d));
    char *list, *save = NULL, *tok;

    if (!d)
        return -1;
    b->drv = d;
    if (b->serializable)
        d->read_opts.consistency = DOSSIER_SERIALIZABLE;
    if (!b->spread) {
        if (client_open(b, b->target, &d->clients[0]) != 0)
            goto fail;
        d->n = 1;
    } else {
        list = strdup(b->target);
        for (tok = list ? strtok_r(list, ",", &save) : NULL; tok;
             tok = strtok_r(NULL, ",", &save)) {
            if (d->n == MAX_CLIENTS ||
                client_open(b, tok, &d->clients[d->n]) != 0) {
                free(list);
                goto fail;
            }
            d->n++;
        }
        free(list);
        if (d->n == 0) {
            fprintf(stderr, "dossier-bench: no target\n");
            goto fail;
        }
    }
    /* The kind is replicated: defining it through one node is enough. */
    if (define_kind(d->clients[0]) != 0)
        goto fail;
    return 0;
fail:
    bdossier_close(b);
    return -1;
}

static void status_message(struct bench_worker *w,
                           const struct dossier_status *st)
{
    snprintf(w->err, sizeof(w->err), "%s: %s", dossier_code_name(st->code),
             st->message);
}

static void put_done(void *arg, const struct dossier_status *st,
                     const struct dossier_put_result *res)
{
    struct bench_worker *w = arg;
    (void)res;
    if (st->code)
        status_message(w, st);
    bench_call_done(w, st->code ? w->err : NULL);
}

static void get_done(void *arg, const struct dossier_status *st,
                     struct dossier_record *r)
{
    struct bench_worker *w = arg;
    dossier_record_free(r);
    if (st->code)
        status_message(w, st);
    bench_call_done(w, st->code ? w->err : NULL);
}

static int bdossier_start(struct bench_worker *w, int is_put, uint64_t id)
{
    struct bench *b = w->b;
    struct bdossier *d = b->drv;
    struct dossier_client *c = d->clients[(size_t)w->index % d->n];
    struct dossier_status st;
    char rid[32], sid[32], email[64];
    int rc;

    bench_key(rid, sizeof(rid), id);
    if (is_put) {
        struct dossier_field fields[3];
        struct dossier_record r = {0};
        snprintf(sid, sizeof(sid), "s%" PRIu64, id / b->per_subject);
        snprintf(email, sizeof(email), "user%" PRIu64 "@bench.example", id);
        fields[0] = (struct dossier_field){
            "email", {DOSSIER_TYPE_STRING, {.s = email}}};
        fields[1] = (struct dossier_field){
            "name", {DOSSIER_TYPE_STRING, {.s = "Bench User"}}};
        fields[2] = (struct dossier_field){
            "payload", {DOSSIER_TYPE_STRING, {.s = b->payload}}};
        r.kind = BENCH_KIND;
        r.id = rid;
        r.subject_id = sid;
        r.fields = fields;
        r.n_fields = 3;
        rc = dossier_put_async(c, NULL, &r, DOSSIER_ANY_VERSION, put_done, w,
                               &st);
    } else {
        rc = dossier_get_async(c, &d->read_opts, BENCH_KIND, rid, get_done, w,
                               &st);
    }
    if (rc)
        status_message(w, &st);
    return rc ? -1 : 0;
}

const struct bench_driver bench_dossier_driver = {
    .name = "dossier",
    .open = bdossier_open,
    .close = bdossier_close,
    .start = bdossier_start,
};
