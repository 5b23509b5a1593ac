/* dossier-bench's closed-loop engine and the interface of its drivers: one
 * driver per system under test (Dossier, etcd, PostgreSQL, raw RocksDB),
 * all driven by the same loop, so that every system pays the same client
 * overhead and is measured the same way. */
#ifndef DOSSIER_TOOLS_BENCH_H
#define DOSSIER_TOOLS_BENCH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct bench;
struct bench_worker;

/* A system under test. A driver is either asynchronous (start is set: it
 * starts a call and reports its end with bench_call_done(), so that N
 * clients need no N threads) or blocking (call is set: each client is a
 * thread making one call at a time). Keys are made by bench_key() from the
 * id given, so every driver writes and reads the same keys. */
struct bench_driver {
    const char *name; /* in the output's target column */
    /* Connects, defines what the benchmark needs (a kind, a table), sets
     * b->drv. Errors: printed on stderr, -1. */
    int (*open)(struct bench *b);
    /* Undoes open; every call has ended. */
    void (*close)(struct bench *b);
    /* Optional: per-client state in w->drv (a connection, a call's
     * buffers), made before the first call and released after the last.
     * Errors: printed on stderr, -1. */
    int (*worker_open)(struct bench_worker *w);
    void (*worker_close)(struct bench_worker *w);
    /* Asynchronous: starts a put (is_put) or get of @id; 0 when started
     * (bench_call_done follows, from any thread), -1 with w->err filled
     * when it could not start (no bench_call_done then). */
    int (*start)(struct bench_worker *w, int is_put, uint64_t id);
    /* Blocking: one put or get of @id; 0, or -1 with w->err filled. */
    int (*call)(struct bench_worker *w, int is_put, uint64_t id);
};

extern const struct bench_driver bench_dossier_driver;
extern const struct bench_driver bench_rocksdb_driver;
extern const struct bench_driver bench_etcd_driver;
extern const struct bench_driver bench_postgres_driver;

/* One run's settings and shared state. Drivers read the settings and own
 * drv; the engine owns the rest. */
struct bench {
    const struct bench_driver *driver;
    const char *target;      /* driver's address list or conninfo */
    const char *tls_ca, *tls_cert, *tls_key; /* Dossier; NULL: plaintext */
    int serializable;        /* reads served by the member asked */
    int spread;              /* Dossier: clients spread over the targets */
    int clients;
    double duration, warmup;
    int put_pct;
    size_t value_size;
    uint64_t keys;
    uint64_t per_subject;
    const char *label;
    const char *csv;
    const char *server_pids; /* "PID,PID": whose CPU to report, or NULL */
    const char *trace;       /* file for one row per measured call, or NULL */

    char *payload;           /* value_size bytes and a NUL */
    void *drv;               /* the driver's state */

    /* Engine. */
    volatile int measuring, stop, preloading;
    uint64_t next_id;        /* atomic: the next id a put takes */
    uint64_t id_base;        /* added to every id */
    uint64_t written;        /* atomic: puts acknowledged in this process */
    pthread_mutex_t lock;
    pthread_cond_t done;
    int active;              /* asynchronous clients still running */
};

/* One closed-loop client. */
struct bench_worker {
    struct bench *b;
    int index;               /* 0 .. clients-1 */
    pthread_t thread;        /* blocking drivers, when thread_started */
    int thread_started;
    unsigned seed;
    void *drv;               /* the driver's per-client state */
    char err[640];           /* the driver's message for a failed call */
    /* The call in flight. */
    double t0;
    int is_put, was_measuring;
    /* Results. */
    uint32_t *lat_us;
    double *start;           /* with --trace: each call's start (monotonic) */
    uint8_t *put;            /* with --trace: whether it was a put */
    size_t n, cap;
    uint64_t errors, puts, gets;
    char first_error[640];
};

/* Asynchronous drivers: the call of @w started last has ended, with @err
 * (borrowed; NULL: success). Starts the client's next call. Any thread. */
void bench_call_done(struct bench_worker *w, const char *err);

/* The key of record @id ("r" and 16 digits) into @buf; returns its
 * length. */
int bench_key(char *buf, size_t cap, uint64_t id);

#endif
