/* dossier-bench: a load generator. N closed-loop clients put and get records
 * for a fixed time, each starting its next call when the last one returns,
 * and the run prints throughput and latency percentiles.
 *
 * Against a Dossier node the clients are libdossier asynchronous calls on
 * one client (one completion thread): N calls in flight without N threads,
 * so the client spends little of the machine the node runs on. Against raw
 * RocksDB, the baseline, each client is a thread making synced writes (one
 * per call; RocksDB's write groups batch concurrent writers into one
 * fdatasync). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include <dossier/dossier.h>

#define BENCH_KIND "bench_record"

static const char usage_text[] =
    "Usage: dossier-bench [OPTIONS]\n"
    "\n"
    "Target (one of):\n"
    "  --target HOST:PORT[,HOST:PORT...]\n"
    "                       Dossier nodes (default 127.0.0.1:7700); calls\n"
    "                       go to the first that answers\n"
    "  --rocksdb DIR        raw RocksDB in DIR (made if missing): synced\n"
    "                       puts and plain gets, the baseline\n"
    "TLS (Dossier nodes; default: plaintext):\n"
    "  --tls-ca FILE        call over TLS, verifying the nodes against this\n"
    "                       PEM CA bundle (default $DOSSIER_TLS_CA)\n"
    "  --tls-cert FILE      PEM client certificate to present, with\n"
    "  --tls-key FILE       its key (default $DOSSIER_TLS_CERT and\n"
    "                       $DOSSIER_TLS_KEY)\n"
    "Load:\n"
    "  --clients N          concurrent closed-loop clients (default 16)\n"
    "  --duration S         seconds to measure (default 10)\n"
    "  --warmup S           seconds to run before measuring (default 1)\n"
    "  --mix M              put, get, or P:G ratio such as 90:10 (default "
    "put)\n"
    "  --value-size B       bytes of payload per record (default 1024)\n"
    "  --keys N             records preloaded for gets (default 10000)\n"
    "  --records-per-subject N\n"
    "                       records sharing one data subject (default 1)\n"
    "  --serializable       reads answered by the node asked, from its own\n"
    "                       state (default: linearizable reads)\n"
    "  --label TEXT         name of this run in the output\n"
    "  --csv FILE           append one result row to FILE\n"
    "\n"
    "A node that authenticates clients needs the token of a principal in\n"
    "$DOSSIER_TOKEN (the benchmark defines its kind, which needs an admin\n"
    "principal, unless the kind exists).\n"
    "\n"
    "Dossier records are of kind " BENCH_KIND
    " (personal; an indexed email and a\n"
    "payload string), defined by the benchmark if missing. Every put creates\n"
    "a new record; gets read preloaded ones at random.\n";

struct bench {
    const char *target;
    const char *tls_ca, *tls_cert, *tls_key; /* NULL: plaintext */
    struct dossier_call_options read_opts;
    const char *rocksdb_dir;
    int clients;
    double duration, warmup;
    int put_pct;
    size_t value_size;
    uint64_t keys;
    uint64_t per_subject;
    const char *label;
    const char *csv;

    struct dossier_client *client;
    rocksdb_t *db;
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
    char *payload;

    volatile int measuring, stop;
    uint64_t next_id; /* atomic */
    uint64_t id_base; /* added to every id */

    /* Asynchronous clients still running (Dossier driver). */
    pthread_mutex_t lock;
    pthread_cond_t done;
    int active;
};

struct worker {
    struct bench *b;
    pthread_t thread;
    unsigned seed;
    /* The call in flight (Dossier driver). */
    double t0;
    int is_put, was_measuring;
    uint32_t *lat_us;
    size_t n, cap;
    uint64_t errors, puts, gets;
    char first_error[640];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void record_latency(struct worker *w, double secs)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 65536;
        uint32_t *p = realloc(w->lat_us, cap * sizeof(*p));
        if (!p)
            return;
        w->lat_us = p;
        w->cap = cap;
    }
    w->lat_us[w->n++] = (uint32_t)(secs * 1e6 + 0.5);
}

/* ------------------------------------------------------------------ */
/* Dossier driver */

static int dossier_put_one(struct bench *b, uint64_t id, char *err, size_t cap)
{
    char rid[32], sid[32], email[64];
    struct dossier_field fields[3];
    struct dossier_record r = {0};
    struct dossier_status st;

    id = b->id_base + id;
    snprintf(rid, sizeof(rid), "r%" PRIu64, id);
    snprintf(sid, sizeof(sid), "s%" PRIu64, id / b->per_subject);
    snprintf(email, sizeof(email), "user%" PRIu64 "@bench.example", id);
    fields[0] = (struct dossier_field){"email", {DOSSIER_TYPE_STRING, {.s = email}}};
    fields[1] = (struct dossier_field){"name", {DOSSIER_TYPE_STRING, {.s = "Bench User"}}};
    fields[2] = (struct dossier_field){"payload", {DOSSIER_TYPE_STRING, {.s = b->payload}}};
    r.kind = BENCH_KIND;
    r.id = rid;
    r.subject_id = sid;
    r.fields = fields;
    r.n_fields = 3;
    if (dossier_put(b->client, NULL, &r, DOSSIER_ANY_VERSION, NULL, &st)) {
        snprintf(err, cap, "%s: %s", dossier_code_name(st.code), st.message);
        return -1;
    }
    return 0;
}

static int dossier_get_one(struct bench *b, uint64_t id, char *err, size_t cap)
{
    char rid[32];
    struct dossier_record *r;
    struct dossier_status st;

    snprintf(rid, sizeof(rid), "r%" PRIu64, b->id_base + id);
    if (dossier_get(b->client, NULL, BENCH_KIND, rid, &r, &st)) {
        snprintf(err, cap, "%s: %s", dossier_code_name(st.code), st.message);
        return -1;
    }
    dossier_record_free(r);
    return 0;
}

static int dossier_setup(struct bench *b)
{
    struct dossier_client_options o;
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
                                      "dossier-bench records", 3, f};

    dossier_client_options_init(&o);
    o.target = b->target;
    o.purpose = "operations"; /* built in: contract basis */
    o.token = getenv("DOSSIER_TOKEN");
    o.timeout_ms = 30000;
    o.tls_ca = b->tls_ca;
    o.tls_cert = b->tls_cert;
    o.tls_key = b->tls_key;
    if (dossier_client_open(&o, &b->client, &st))
        goto fail;
    if (dossier_schema_get(b->client, NULL, BENCH_KIND, &k, &st) == 0) {
        dossier_kind_schema_free(k);
        return 0;
    }
    if (st.code != DOSSIER_UNKNOWN_KIND ||
        dossier_schema_define(b->client, NULL, &def, NULL, &st))
        goto fail;
    return 0;
fail:
    fprintf(stderr, "dossier-bench: %s: %s\n", dossier_code_name(st.code),
            st.message);
    return -1;
}

/* ------------------------------------------------------------------ */
/* Raw RocksDB driver: the same keys and values, no encryption, no RPC. */

static int rocks_put_one(struct bench *b, uint64_t id, char *err, size_t cap)
{
    char key[32];
    char *e = NULL;
    int klen = snprintf(key, sizeof(key), "r%016" PRIu64, id);
    rocksdb_put(b->db, b->wo, key, (size_t)klen, b->payload, b->value_size,
                &e);
    if (e) {
        snprintf(err, cap, "%s", e);
        rocksdb_free(e);
        return -1;
    }
    return 0;
}

static int rocks_get_one(struct bench *b, uint64_t id, char *err, size_t cap)
{
    char key[32];
    char *e = NULL, *v;
    size_t vlen;
    int klen = snprintf(key, sizeof(key), "r%016" PRIu64, id);
    v = rocksdb_get(b->db, b->ro, key, (size_t)klen, &vlen, &e);
    if (e || !v) {
        snprintf(err, cap, "%s", e ? e : "missing key");
        rocksdb_free(e);
        return -1;
    }
    rocksdb_free(v);
    return 0;
}

static int rocks_setup(struct bench *b)
{
    rocksdb_options_t *o = rocksdb_options_create();
    char *e = NULL;
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_compression(o, rocksdb_no_compression);
    b->db = rocksdb_open(o, b->rocksdb_dir, &e);
    rocksdb_options_destroy(o);
    if (e) {
        fprintf(stderr, "dossier-bench: cannot open %s: %s\n", b->rocksdb_dir,
                e);
        rocksdb_free(e);
        return -1;
    }
    b->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(b->wo, 1);
    b->ro = rocksdb_readoptions_create();
    return 0;
}

static uint64_t bench_id(struct bench *b, uint64_t i)
{
    return b->id_base + i;
}

/* The Dossier driver's closed loop: each completion starts the client's
 * next call, on the client's completion thread. */
static void async_next(struct worker *w);

static void async_finish(struct worker *w, const struct dossier_status *st)
{
    double t1 = now_s();
    if (w->was_measuring && w->b->measuring) {
        if (st->code) {
            if (!w->errors)
                snprintf(w->first_error, sizeof(w->first_error), "%s: %s",
                         dossier_code_name(st->code), st->message);
            w->errors++;
        } else {
            record_latency(w, t1 - w->t0);
            if (w->is_put)
                w->puts++;
            else
                w->gets++;
        }
    }
    async_next(w);
}

static void async_put_done(void *arg, const struct dossier_status *st,
                           const struct dossier_put_result *res)
{
    (void)res;
    async_finish(arg, st);
}

static void async_get_done(void *arg, const struct dossier_status *st,
                           struct dossier_record *r)
{
    dossier_record_free(r);
    async_finish(arg, st);
}

static void async_next(struct worker *w)
{
    struct bench *b = w->b;
    struct dossier_status st;
    char rid[32], sid[32], email[64];
    uint64_t id;
    int rc;

    if (b->stop) {
        pthread_mutex_lock(&b->lock);
        if (--b->active == 0)
            pthread_cond_signal(&b->done);
        pthread_mutex_unlock(&b->lock);
        return;
    }
    w->is_put = (int)(rand_r(&w->seed) % 100) < b->put_pct;
    id = bench_id(b, w->is_put
                         ? __atomic_fetch_add(&b->next_id, 1, __ATOMIC_RELAXED)
                         : (uint64_t)rand_r(&w->seed) % b->keys);
    snprintf(rid, sizeof(rid), "r%" PRIu64, id);
    w->was_measuring = b->measuring;
    w->t0 = now_s();
    if (w->is_put) {
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
        rc = dossier_put_async(b->client, NULL, &r, DOSSIER_ANY_VERSION,
                               async_put_done, w, &st);
    } else {
        rc = dossier_get_async(b->client, &b->read_opts, BENCH_KIND, rid,
                               async_get_done, w, &st);
    }
    if (rc) {
        /* Could not even start: count it and retire this client, so that a
         * broken setup cannot spin. */
        snprintf(w->first_error, sizeof(w->first_error), "%s: %s",
                 dossier_code_name(st.code), st.message);
        w->errors++;
        pthread_mutex_lock(&b->lock);
        if (--b->active == 0)
            pthread_cond_signal(&b->done);
        pthread_mutex_unlock(&b->lock);
    }
}

static int put_one(struct bench *b, uint64_t id, char *err, size_t cap)
{
    return b->db ? rocks_put_one(b, id, err, cap)
                 : dossier_put_one(b, id, err, cap);
}

static int get_one(struct bench *b, uint64_t id, char *err, size_t cap)
{
    return b->db ? rocks_get_one(b, id, err, cap)
                 : dossier_get_one(b, id, err, cap);
}

/* ------------------------------------------------------------------ */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct bench *b = w->b;
    char err[640];

    while (!b->stop) {
        int is_put = (int)(rand_r(&w->seed) % 100) < b->put_pct;
        uint64_t id = is_put
                          ? __atomic_fetch_add(&b->next_id, 1, __ATOMIC_RELAXED)
                          : (uint64_t)rand_r(&w->seed) % b->keys;
        int measuring = b->measuring;
        double t0 = now_s();
        int rc = is_put ? put_one(b, id, err, sizeof(err))
                        : get_one(b, id, err, sizeof(err));
        double t1 = now_s();
        if (!measuring || !b->measuring)
            continue;
        if (rc) {
            if (!w->errors)
                snprintf(w->first_error, sizeof(w->first_error), "%s", err);
            w->errors++;
            continue;
        }
        record_latency(w, t1 - t0);
        if (is_put)
            w->puts++;
        else
            w->gets++;
    }
    return NULL;
}

/* Loads ids [0, keys) so gets have something to read; puts continue after. */
static int preload(struct bench *b)
{
    char err[640];
    for (uint64_t i = 0; i < b->keys; i++)
        if (put_one(b, i, err, sizeof(err))) {
            fprintf(stderr, "dossier-bench: preload failed: %s\n", err);
            return -1;
        }
    b->next_id = b->keys;
    return 0;
}



static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double pct(const uint32_t *v, size_t n, double p)
{
    size_t i;
    if (!n)
        return 0;
    i = (size_t)ceil(p * (double)n) - 1;
    if (i >= n)
        i = n - 1;
    return v[i] / 1000.0;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"target", required_argument, NULL, 't'},
        {"rocksdb", required_argument, NULL, 'r'},
        {"tls-ca", required_argument, NULL, 'A'},
        {"tls-cert", required_argument, NULL, 'C'},
        {"tls-key", required_argument, NULL, 'K'},
        {"clients", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"mix", required_argument, NULL, 'm'},
        {"value-size", required_argument, NULL, 'v'},
        {"keys", required_argument, NULL, 'k'},
        {"records-per-subject", required_argument, NULL, 's'},
        {"label", required_argument, NULL, 'l'},
        {"serializable", no_argument, NULL, 'S'},
        {"csv", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct bench b = {.target = "127.0.0.1:7700", .clients = 16,
                      .duration = 10, .warmup = 1, .put_pct = 100,
                      .value_size = 1024, .keys = 10000, .per_subject = 1,
                      .label = ""};
    struct worker *w;
    const char *mix = "put";
    uint32_t *all;
    size_t n = 0;
    uint64_t errors = 0, puts = 0, gets = 0;
    double t0, t1, cpu0, cpu1, thr;
    int ch, p, g;

    b.tls_ca = getenv("DOSSIER_TLS_CA");
    b.tls_cert = getenv("DOSSIER_TLS_CERT");
    b.tls_key = getenv("DOSSIER_TLS_KEY");
    while ((ch = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        switch (ch) {
        case 't': b.target = optarg; break;
        case 'r': b.rocksdb_dir = optarg; break;
        case 'A': b.tls_ca = optarg; break;
        case 'C': b.tls_cert = optarg; break;
        case 'K': b.tls_key = optarg; break;
        case 'c': b.clients = atoi(optarg); break;
        case 'd': b.duration = atof(optarg); break;
        case 'w': b.warmup = atof(optarg); break;
        case 'm': mix = optarg; break;
        case 'v': b.value_size = (size_t)atol(optarg); break;
        case 'k': b.keys = (uint64_t)atoll(optarg); break;
        case 's': b.per_subject = (uint64_t)atoll(optarg); break;
        case 'l': b.label = optarg; break;
        case 'S': b.read_opts.consistency = DOSSIER_SERIALIZABLE; break;
        case 'o': b.csv = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: fputs(usage_text, stderr); return 2;
        }
    }
    /* An empty variable or flag is as good as none. */
    if (b.tls_ca && !b.tls_ca[0])
        b.tls_ca = NULL;
    if (b.tls_cert && !b.tls_cert[0])
        b.tls_cert = NULL;
    if (b.tls_key && !b.tls_key[0])
        b.tls_key = NULL;
    if (strcmp(mix, "put") == 0)
        b.put_pct = 100;
    else if (strcmp(mix, "get") == 0)
        b.put_pct = 0;
    else if (sscanf(mix, "%d:%d", &p, &g) == 2 && p >= 0 && g >= 0 &&
             p + g == 100)
        b.put_pct = p;
    else {
        fprintf(stderr, "dossier-bench: --mix must be put, get or P:G "
                        "summing to 100\n");
        return 2;
    }
    if (b.clients < 1 || b.clients > 4096 || b.duration <= 0 ||
        b.value_size < 1 || b.value_size > (1u << 20) || b.per_subject < 1 ||
        (b.put_pct < 100 && b.keys < 1)) {
        fprintf(stderr, "dossier-bench: an option is out of range\n");
        return 2;
    }
    b.payload = malloc(b.value_size + 1);
    for (size_t i = 0; i < b.value_size; i++)
        b.payload[i] = (char)('a' + i % 26);
    b.payload[b.value_size] = '\0';
    if ((b.rocksdb_dir ? rocks_setup(&b) : dossier_setup(&b)) != 0)
        return 1;
    /* Puts write new records: ids after the preloaded ones, from a random
     * base so that runs against the same node never rewrite each other's
     * records (or subjects). */
    {
        uint64_t base = 0;
        FILE *ur = fopen("/dev/urandom", "rb");
        if (ur) {
            if (fread(&base, sizeof(base), 1, ur) != 1)
                base = 0;
            fclose(ur);
        }
        b.id_base = (base % 1000000000ULL) * 1000000ULL;
    }
    if (b.put_pct < 100 && preload(&b) != 0)
        return 1;

    w = calloc((size_t)b.clients, sizeof(*w));
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.done, NULL);
    b.active = b.clients;
    for (int i = 0; i < b.clients; i++) {
        w[i].b = &b;
        w[i].seed = (unsigned)(i * 7919 + 17);
        if (b.db)
            pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
    }
    for (int i = 0; !b.db && i < b.clients; i++)
        async_next(&w[i]);
    if (b.warmup > 0)
        usleep((useconds_t)(b.warmup * 1e6));
    cpu0 = cpu_seconds();
    t0 = now_s();
    b.measuring = 1;
    usleep((useconds_t)(b.duration * 1e6));
    b.measuring = 0;
    t1 = now_s();
    cpu1 = cpu_seconds();
    b.stop = 1;
    if (!b.db) {
        pthread_mutex_lock(&b.lock);
        while (b.active > 0)
            pthread_cond_wait(&b.done, &b.lock);
        pthread_mutex_unlock(&b.lock);
    }
    for (int i = 0; i < b.clients; i++) {
        if (b.db)
            pthread_join(w[i].thread, NULL);
        n += w[i].n;
        errors += w[i].errors;
        puts += w[i].puts;
        gets += w[i].gets;
    }
    all = malloc((n ? n : 1) * sizeof(*all));
    n = 0;
    for (int i = 0; i < b.clients; i++) {
        memcpy(all + n, w[i].lat_us, w[i].n * sizeof(*all));
        n += w[i].n;
    }
    qsort(all, n, sizeof(*all), cmp_u32);
    thr = (double)n / (t1 - t0);
    printf("%s target=%s mix=%s clients=%d value=%zu duration=%.1fs ops=%zu "
           "throughput=%.0f/s p50=%.3fms p99=%.3fms p999=%.3fms errors=%" PRIu64
           " client_cpu=%.2fs\n",
           b.label[0] ? b.label : "run", b.rocksdb_dir ? "rocksdb" : "dossier",
           mix, b.clients, b.value_size, t1 - t0, n, thr, pct(all, n, 0.50),
           pct(all, n, 0.99), pct(all, n, 0.999), errors, cpu1 - cpu0);
    for (int i = 0; i < b.clients; i++)
        if (w[i].errors) {
            fprintf(stderr, "dossier-bench: first error: %s\n",
                    w[i].first_error);
            break;
        }
    if (b.csv) {
        FILE *f = fopen(b.csv, "a");
        if (f) {
            fprintf(f, "%s,%s,%s,%d,%zu,%.1f,%zu,%.0f,%.3f,%.3f,%.3f,%" PRIu64
                       "\n",
                    b.label, b.rocksdb_dir ? "rocksdb" : "dossier", mix,
                    b.clients, b.value_size, t1 - t0, n, thr,
                    pct(all, n, 0.50), pct(all, n, 0.99), pct(all, n, 0.999),
                    errors);
            fclose(f);
        }
    }
    for (int i = 0; i < b.clients; i++)
        free(w[i].lat_us);
    free(w);
    free(all);
    free(b.payload);
    if (b.client)
        dossier_client_close(b.client);
    if (b.db) {
        rocksdb_close(b.db);
        rocksdb_writeoptions_destroy(b.wo);
        rocksdb_readoptions_destroy(b.ro);
    }
    return errors ? 1 : 0;
}
