/* dossier-bench: a load generator. N closed-loop clients put and get records
 * for a fixed time, each starting its next call when the last one returns,
 * and the run prints throughput, latency percentiles and the CPU used.
 *
 * One engine drives every system through a driver (bench.h): Dossier and
 * etcd through gRPC C core calls kept in flight on one completion thread
 * (N calls without N threads, so the client spends little of the machine
 * the servers run on), PostgreSQL and raw RocksDB from one thread per
 * client (one connection each; RocksDB's write groups batch concurrent
 * synced writers into one fdatasync). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

static const char usage_text[] =
    "Usage: dossier-bench [OPTIONS]\n"
    "\n"
    "System under test (one of; default --target 127.0.0.1:7700):\n"
    "  --target HOST:PORT[,HOST:PORT...]\n"
    "                       Dossier nodes; calls go to the first that\n"
    "                       answers (with --spread: client i calls node\n"
    "                       i mod n, followers forward writes)\n"
    "  --etcd HOST:PORT[,HOST:PORT...]\n"
    "                       etcd v3 members (KV/Put, KV/Range); client i\n"
    "                       calls member i mod n\n"
    "  --postgres CONNINFO  PostgreSQL (libpq conninfo): one connection per\n"
    "                       client, one row per INSERT into bench_record\n"
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
    "                       Dossier: records sharing one data subject\n"
    "                       (default 1)\n"
    "  --serializable       reads answered by the member asked, from its own\n"
    "                       state (Dossier and etcd; default: linearizable)\n"
    "  --spread             Dossier: spread the clients over the targets\n"
    "Output:\n"
    "  --label TEXT         name of this run in the output\n"
    "  --csv FILE           append one result row to FILE\n"
    "  --server-pid PID[,PID...]\n"
    "                       report the CPU seconds (user + system) these\n"
    "                       processes and their children used while measuring\n"
    "  --trace FILE         write one CSV row per measured call to FILE:\n"
    "                       start_unix_s,latency_ms,op,client (to find when\n"
    "                       the slow calls happened)\n"
    "\n"
    "The CSV row: label,target,mix,clients,value,duration,ops,throughput,\n"
    "p50_ms,p99_ms,p999_ms,errors,client_cpu_s,server_cpu_s,written\n"
    "(written: puts acknowledged over the whole process, preload and warm-up\n"
    "included; server_cpu_s is empty without --server-pid).\n"
    "\n"
    "A node that authenticates clients needs the token of a principal in\n"
    "$DOSSIER_TOKEN (the benchmark defines its kind, which needs an admin\n"
    "principal, unless the kind exists).\n"
    "\n"
    "Dossier records are of kind bench_record (personal; an indexed email\n"
    "and a payload string), defined by the benchmark if missing; etcd keys\n"
    "and PostgreSQL rows hold the payload alone. Every put creates a new\n"
    "record; gets read preloaded ones at random.\n";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bench_key(char *buf, size_t cap, uint64_t id)
{
    return snprintf(buf, cap, "r%016" PRIu64, id);
}

/* ------------------------------------------------------------------ */
/* The closed loop */

static void record_latency(struct bench_worker *w, double secs)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 65536;
        uint32_t *p = realloc(w->lat_us, cap * sizeof(*p));
        if (!p)
            return;
        w->lat_us = p;
        if (w->b->trace) {
            double *s = realloc(w->start, cap * sizeof(*s));
            uint8_t *u = s ? realloc(w->put, cap) : NULL;
            if (s)
                w->start = s;
            if (u)
                w->put = u;
            if (!s || !u)
                return;
        }
        w->cap = cap;
    }
    if (w->b->trace) {
        w->start[w->n] = w->t0;
        w->put[w->n] = (uint8_t)w->is_put;
    }
    w->lat_us[w->n++] = (uint32_t)(secs * 1e6 + 0.5);
}

/* Writes one row per measured call of @w to b->trace: its start in Unix
 * seconds (to match the nodes' logs), its latency and whether it was a
 * put, in the order each client made them. */
static int write_trace(const struct bench *b, const struct bench_worker *w)
{
    struct timespec rt;
    double offset;
    FILE *f = fopen(b->trace, "w");

    if (!f) {
        fprintf(stderr, "dossier-bench: cannot write %s: %s\n", b->trace,
                strerror(errno));
        return -1;
    }
    clock_gettime(CLOCK_REALTIME, &rt);
    offset = (double)rt.tv_sec + (double)rt.tv_nsec / 1e9 - now_s();
    fprintf(f, "start_unix_s,latency_ms,op,client\n");
    for (int i = 0; i < b->clients; i++)
        for (size_t k = 0; k < w[i].n; k++)
            fprintf(f, "%.6f,%.3f,%s,%d\n", w[i].start[k] + offset,
                    w[i].lat_us[k] / 1e3, w[i].put[k] ? "put" : "get", i);
    if (fclose(f) != 0) {
        fprintf(stderr, "dossier-bench: cannot write %s: %s\n", b->trace,
                strerror(errno));
        return -1;
    }
    return 0;
}

/* Counts the end of one call of @w, started at w->t0. A preload's errors
 * always count: a preload must be whole. */
static void account(struct bench_worker *w, const char *err)
{
    struct bench *b = w->b;
    double t1 = now_s();

    if (!err && w->is_put)
        __atomic_fetch_add(&b->written, 1, __ATOMIC_RELAXED);
    if (err && (b->preloading || (w->was_measuring && b->measuring))) {
        if (!w->errors)
            snprintf(w->first_error, sizeof(w->first_error), "%s", err);
        w->errors++;
        return;
    }
    if (b->preloading || !w->was_measuring || !b->measuring)
        return;
    record_latency(w, t1 - w->t0);
    if (w->is_put)
        w->puts++;
    else
        w->gets++;
}

/* Chooses the next call of @w into w->is_put and *@id; 0 when the client
 * is to stop (time is up, or the preload has every id). */
static int choose(struct bench_worker *w, uint64_t *id)
{
    struct bench *b = w->b;
    uint64_t i;

    if (b->stop)
        return 0;
    if (b->preloading) {
        i = __atomic_fetch_add(&b->next_id, 1, __ATOMIC_RELAXED);
        if (i >= b->keys)
            return 0;
        w->is_put = 1;
    } else {
        w->is_put = (int)(rand_r(&w->seed) % 100) < b->put_pct;
        i = w->is_put ? __atomic_fetch_add(&b->next_id, 1, __ATOMIC_RELAXED)
                      : (uint64_t)rand_r(&w->seed) % b->keys;
    }
    *id = b->id_base + i;
    w->was_measuring = b->measuring;
    w->t0 = now_s();
    return 1;
}

static void retire(struct bench *b)
{
    pthread_mutex_lock(&b->lock);
    if (--b->active == 0)
        pthread_cond_signal(&b->done);
    pthread_mutex_unlock(&b->lock);
}

/* Asynchronous drivers: starts the next call of @w, or retires it. */
static void async_next(struct bench_worker *w)
{
    uint64_t id;

    if (!choose(w, &id)) {
        retire(w->b);
        return;
    }
    if (w->b->driver->start(w, w->is_put, id) != 0) {
        /* Could not even start: count it and retire this client, so that
         * a broken setup cannot spin. */
        if (!w->errors)
            snprintf(w->first_error, sizeof(w->first_error), "%s", w->err);
        w->errors++;
        retire(w->b);
    }
}

void bench_call_done(struct bench_worker *w, const char *err)
{
    account(w, err);
    async_next(w);
}

/* Blocking drivers: one thread per client. */
static void *worker_main(void *arg)
{
    struct bench_worker *w = arg;
    uint64_t id;

    while (choose(w, &id))
        account(w, w->b->driver->call(w, w->is_put, id) ? w->err : NULL);
    return NULL;
}

/* Runs every client until the preload has written ids [0, keys) or, when
 * not @preload, for warmup and duration seconds; *@t0 and *@t1 bound the
 * measured time and @snap (when not preloading) is called at both ends. */
static void run_phase(struct bench *b, struct bench_worker *w, int preload,
                      double *t0, double *t1, double snap[2][2],
                      void (*snapshot)(struct bench *b, double out[2]))
{
    int async = b->driver->start != NULL;

    b->stop = 0;
    b->measuring = 0;
    b->preloading = preload;
    b->active = b->clients;
    for (int i = 0; i < b->clients; i++) {
        if (async) {
            async_next(&w[i]);
        } else if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) ==
                   0) {
            w[i].thread_started = 1;
        } else {
            /* Counted as an error of that client, so the run fails. */
            snprintf(w[i].first_error, sizeof(w[i].first_error),
                     "cannot start a client thread");
            w[i].errors++;
        }
    }
    if (!preload) {
        if (b->warmup > 0)
            usleep((useconds_t)(b->warmup * 1e6));
        snapshot(b, snap[0]);
        *t0 = now_s();
        b->measuring = 1;
        usleep((useconds_t)(b->duration * 1e6));
        b->measuring = 0;
        *t1 = now_s();
        snapshot(b, snap[1]);
        b->stop = 1;
    }
    if (async) {
        pthread_mutex_lock(&b->lock);
        while (b->active > 0)
            pthread_cond_wait(&b->done, &b->lock);
        pthread_mutex_unlock(&b->lock);
    } else {
        for (int i = 0; i < b->clients; i++)
            if (w[i].thread_started) {
                pthread_join(w[i].thread, NULL);
                w[i].thread_started = 0;
            }
    }
    b->preloading = 0;
}

/* ------------------------------------------------------------------ */
/* CPU accounting */

/* Adds the CPU seconds of process @pid (user + system, its reaped
 * children's too) to *@sum; its parent into *@ppid. -1 if it is gone. */
static int proc_cpu(pid_t pid, double *sum, pid_t *ppid)
{
    char path[64], line[1024], *p;
    unsigned long ut, st;
    long cut, cst;
    int pp;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    /* The command name is in parentheses and may hold anything. */
    p = strrchr(line, ')');
    if (!p || sscanf(p + 1,
                     " %*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu "
                     "%ld %ld",
                     &pp, &ut, &st, &cut, &cst) != 5)
        return -1;
    *sum += (double)(ut + st) + (double)(cut + cst);
    *ppid = (pid_t)pp;
    return 0;
}

/* CPU seconds used so far by the processes named in b->server_pids and by
 * their children, alive (a PostgreSQL backend) or reaped by them. */
static double server_cpu_seconds(const struct bench *b)
{
    pid_t pids[32];
    size_t n = 0;
    double ticks = 0;
    const char *p = b->server_pids;
    DIR *d;
    struct dirent *e;

    while (p && *p && n < sizeof(pids) / sizeof(pids[0])) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        pids[n++] = (pid_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    for (size_t i = 0; i < n; i++) {
        pid_t pp;
        proc_cpu(pids[i], &ticks, &pp);
    }
    d = opendir("/proc");
    while (d && (e = readdir(d)) != NULL) {
        double t = 0;
        pid_t pid, pp;
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid = (pid_t)atoi(e->d_name);
        if (proc_cpu(pid, &t, &pp) != 0)
            continue;
        for (size_t i = 0; i < n; i++)
            if (pp == pids[i] && pid != pids[i]) {
                ticks += t;
                break;
            }
    }
    if (d)
        closedir(d);
    return ticks / (double)sysconf(_SC_CLK_TCK);
}

/* out[0]: this process's CPU seconds, out[1]: the servers'. */
static void cpu_snapshot(struct bench *b, double out[2])
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    out[0] = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
             (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    out[1] = b->server_pids ? server_cpu_seconds(b) : 0;
}

/* ------------------------------------------------------------------ */

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

/* A random base for ids: puts after the preloaded ones, so that runs
 * against the same servers never rewrite each other's records (or
 * Dossier subjects). */
static uint64_t random_id_base(void)
{
    uint64_t base = 0;
    FILE *ur = fopen("/dev/urandom", "rb");
    if (ur) {
        if (fread(&base, sizeof(base), 1, ur) != 1)
            base = 0;
        fclose(ur);
    }
    return (base % 1000000000ULL) * 1000000ULL;
}

int main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"target", required_argument, NULL, 't'},
        {"etcd", required_argument, NULL, 'e'},
        {"postgres", required_argument, NULL, 'p'},
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
        {"spread", no_argument, NULL, 'D'},
        {"csv", required_argument, NULL, 'o'},
        {"server-pid", required_argument, NULL, 'P'},
        {"trace", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct bench b = {.driver = &bench_dossier_driver,
                      .target = "127.0.0.1:7700", .clients = 16,
                      .duration = 10, .warmup = 1, .put_pct = 100,
                      .value_size = 1024, .keys = 10000, .per_subject = 1,
                      .label = ""};
    struct bench_worker *w;
    const char *mix = "put";
    uint32_t *all;
    size_t n = 0;
    uint64_t errors = 0;
    double t0 = 0, t1 = 0, snap[2][2] = {{0, 0}, {0, 0}}, thr;
    char server_cpu[32] = "";
    int ch, p, g, drivers = 0, rc = 1;

    b.tls_ca = getenv("DOSSIER_TLS_CA");
    b.tls_cert = getenv("DOSSIER_TLS_CERT");
    b.tls_key = getenv("DOSSIER_TLS_KEY");
    while ((ch = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        switch (ch) {
        case 't': b.driver = &bench_dossier_driver; b.target = optarg; drivers++; break;
        case 'e': b.driver = &bench_etcd_driver; b.target = optarg; drivers++; break;
        case 'p': b.driver = &bench_postgres_driver; b.target = optarg; drivers++; break;
        case 'r': b.driver = &bench_rocksdb_driver; b.target = optarg; drivers++; break;
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
        case 'S': b.serializable = 1; break;
        case 'D': b.spread = 1; break;
        case 'o': b.csv = optarg; break;
        case 'P': b.server_pids = optarg; break;
        case 'T': b.trace = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: fputs(usage_text, stderr); return 2;
        }
    }
    if (drivers > 1) {
        fprintf(stderr, "dossier-bench: give one of --target, --etcd, "
                        "--postgres and --rocksdb\n");
        return 2;
    }
    /* An empty variable or flag is as good as none. */
    if (b.tls_ca && !b.tls_ca[0])
        b.tls_ca = NULL;
    if (b.tls_cert && !b.tls_cert[0])
        b.tls_cert = NULL;
    if (b.tls_key && !b.tls_key[0])
        b.tls_key = NULL;
    if (b.server_pids && !b.server_pids[0])
        b.server_pids = NULL;
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
        b.warmup < 0 || b.value_size < 1 || b.value_size > (1u << 20) ||
        b.per_subject < 1 || (b.put_pct < 100 && b.keys < 1)) {
        fprintf(stderr, "dossier-bench: an option is out of range\n");
        return 2;
    }
    b.payload = malloc(b.value_size + 1);
    w = calloc((size_t)b.clients, sizeof(*w));
    if (!b.payload || !w) {
        fprintf(stderr, "dossier-bench: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < b.value_size; i++)
        b.payload[i] = (char)('a' + i % 26);
    b.payload[b.value_size] = '\0';
    b.id_base = random_id_base();
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.done, NULL);
    if (b.driver->open(&b) != 0)
        goto out_free;
    for (int i = 0; i < b.clients; i++) {
        w[i].b = &b;
        w[i].index = i;
        w[i].seed = (unsigned)(i * 7919 + 17);
        if (b.driver->worker_open && b.driver->worker_open(&w[i]) != 0) {
            while (i-- > 0)
                b.driver->worker_close(&w[i]);
            goto out_close;
        }
    }

    /* Gets read ids [0, keys), written first by the same clients. */
    if (b.put_pct < 100) {
        run_phase(&b, w, 1, &t0, &t1, snap, cpu_snapshot);
        for (int i = 0; i < b.clients; i++)
            if (w[i].errors) {
                fprintf(stderr, "dossier-bench: preload failed: %s\n",
                        w[i].first_error);
                goto out_workers;
            }
    }
    b.next_id = b.keys;
    run_phase(&b, w, 0, &t0, &t1, snap, cpu_snapshot);

    for (int i = 0; i < b.clients; i++) {
        n += w[i].n;
        errors += w[i].errors;
    }
    all = malloc((n ? n : 1) * sizeof(*all));
    if (!all) {
        fprintf(stderr, "dossier-bench: out of memory\n");
        goto out_workers;
    }
    n = 0;
    for (int i = 0; i < b.clients; i++) {
        if (w[i].n)
            memcpy(all + n, w[i].lat_us, w[i].n * sizeof(*all));
        n += w[i].n;
    }
    qsort(all, n, sizeof(*all), cmp_u32);
    thr = (double)n / (t1 - t0);
    if (b.server_pids)
        snprintf(server_cpu, sizeof(server_cpu), "%.2f",
                 snap[1][1] - snap[0][1]);
    printf("%s target=%s mix=%s clients=%d value=%zu duration=%.1fs ops=%zu "
           "throughput=%.0f/s p50=%.3fms p99=%.3fms p999=%.3fms errors=%" PRIu64
           " client_cpu=%.2fs server_cpu=%ss written=%" PRIu64 "\n",
           b.label[0] ? b.label : "run", b.driver->name, mix, b.clients,
           b.value_size, t1 - t0, n, thr, pct(all, n, 0.50), pct(all, n, 0.99),
           pct(all, n, 0.999), errors, snap[1][0] - snap[0][0],
           b.server_pids ? server_cpu : "-", b.written);
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
                       ",%.2f,%s,%" PRIu64 "\n",
                    b.label, b.driver->name, mix, b.clients, b.value_size,
                    t1 - t0, n, thr, pct(all, n, 0.50), pct(all, n, 0.99),
                    pct(all, n, 0.999), errors, snap[1][0] - snap[0][0],
                    server_cpu, b.written);
            fclose(f);
        } else {
            fprintf(stderr, "dossier-bench: cannot append to %s: %s\n",
                    b.csv, strerror(errno));
        }
    }
    free(all);
    rc = errors ? 1 : 0;
    if (b.trace && write_trace(&b, w) != 0)
        rc = 1;
out_workers:
    for (int i = 0; i < b.clients; i++)
        if (b.driver->worker_close)
            b.driver->worker_close(&w[i]);
out_close:
    b.driver->close(&b);
out_free:
    for (int i = 0; i < b.clients; i++) {
        free(w[i].lat_us);
        free(w[i].start);
        free(w[i].put);
    }
    free(w);
    free(b.payload);
    return rc;
}
