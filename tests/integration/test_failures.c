/* Storage failures against real nodes: a disk that fills up, damaged
 * RocksDB files (SST, WAL, MANIFEST) and bad key files, checked as an
 * operator would: what clients are told, what the health service and the
 * metrics say, the exit status, and that no acknowledged write is lost or
 * read back wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <dossier/dossier.h>

#include "harness.h"

/* Every record carries this many bytes in VALUE_FIELD. */
#define VALUE_BYTES 1024
/* A free-text string field of the built-in contact kind (node/schema.c). */
#define VALUE_FIELD "address"
#define WRITERS 8

/* ------------------------------------------------------------------ */
/* Records whose value follows from their id */

/* The VALUE_BYTES characters record @id holds, NUL-terminated: a stream
 * seeded by @id, so that a value moved to another record shows too. */
static void value_of(const char *id, char out[VALUE_BYTES + 1])
{
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    uint64_t x = 1469598103934665603ull; /* FNV-1a of the id, then xorshift */
    for (const char *p = id; *p; p++)
        x = (x ^ (uint8_t)*p) * 1099511628211ull;
    for (int i = 0; i < VALUE_BYTES; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = alphabet[x % (sizeof(alphabet) - 1)];
    }
    out[VALUE_BYTES] = '\0';
}

static int put_record(struct dossier_client *c, const char *id,
                      struct dossier_status *st)
{
    char v[VALUE_BYTES + 1];
    struct dossier_record *r = dossier_record_new("contact", id, "subj-fail");
    int rc;
    assert_non_null(r);
    value_of(id, v);
    assert_int_equal(dossier_record_set_string(r, "first_name", id), 0);
    assert_int_equal(dossier_record_set_string(r, VALUE_FIELD, v), 0);
    rc = dossier_put(c, NULL, r, DOSSIER_ANY_VERSION, NULL, st);
    dossier_record_free(r);
    return rc;
}

/* Reads record @id: 0 when it holds exactly what was written, else the
 * error code (DOSSIER_NOT_FOUND included), with @st filled. A record that
 * is there with any other content fails the test: that is wrong data. */
static int read_record(struct dossier_client *c, const char *id,
                       struct dossier_status *st)
{
    char v[VALUE_BYTES + 1];
    struct dossier_record *r = NULL;
    const struct dossier_value *f;
    int rc = dossier_get(c, NULL, "contact", id, &r, st);
    if (rc)
        return rc;
    value_of(id, v);
    f = dossier_record_field(r, "first_name");
    if (!f || f->type != DOSSIER_TYPE_STRING || strcmp(f->u.s, id) != 0)
        fail_msg("record %s came back with another first_name", id);
    f = dossier_record_field(r, VALUE_FIELD);
    if (!f || f->type != DOSSIER_TYPE_STRING || strcmp(f->u.s, v) != 0)
        fail_msg("record %s came back with a wrong " VALUE_FIELD, id);
    dossier_record_free(r);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Concurrent writers */

struct writer {
    pthread_t thread;
    struct dossier_client *c; /* borrowed, shared by the writers */
    const char *prefix;
    int index;
    int limit;   /* writes at most this many */
    int n_acked; /* ids prefix-index-0 .. n_acked-1 were acknowledged */
    int fail_code;
    char fail_msg[DOSSIER_STATUS_MESSAGE_MAX];
};

static void writer_id(const char *prefix, int w, int k, char *out, size_t cap)
{
    snprintf(out, cap, "%s-%d-%d", prefix, w, k);
}

/* Writes prefix-index-0, -1, ... in order until one write fails or the
 * limit is reached: every id before the first failure was acknowledged. */
static void *writer_run(void *arg)
{
    struct writer *w = arg;
    struct dossier_status st;
    for (int k = 0; k < w->limit; k++) {
        char id[64];
        writer_id(w->prefix, w->index, k, id, sizeof(id));
        if (put_record(w->c, id, &st) != 0) {
            w->fail_code = st.code;
            snprintf(w->fail_msg, sizeof(w->fail_msg), "%s", st.message);
            break;
        }
        w->n_acked = k + 1;
    }
    return NULL;
}

/* Runs WRITERS writers of @limit records each against @c, to their end. */
static void write_concurrently(struct dossier_client *c, const char *prefix,
                               int limit, struct writer ws[WRITERS])
{
    for (int i = 0; i < WRITERS; i++) {
        memset(&ws[i], 0, sizeof(ws[i]));
        ws[i].c = c;
        ws[i].prefix = prefix;
        ws[i].index = i;
        ws[i].limit = limit;
        assert_int_equal(pthread_create(&ws[i].thread, NULL, writer_run,
                                        &ws[i]),
                         0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(ws[i].thread, NULL);
}

/* Writes @per_writer records with each of WRITERS writers; all must be
 * acknowledged. */
static void write_all(struct node_proc *n, const char *prefix, int per_writer,
                      struct writer ws[WRITERS])
{
    struct dossier_client *c = node_client(n);
    write_concurrently(c, prefix, per_writer, ws);
    dossier_client_close(c);
    for (int i = 0; i < WRITERS; i++) {
        if (ws[i].n_acked != per_writer)
            fail_msg("writer %d: write %d failed: %s (%s)", i, ws[i].n_acked,
                     dossier_code_name(ws[i].fail_code), ws[i].fail_msg);
    }
}

/* ------------------------------------------------------------------ */
/* Logs, metrics and health */

/* The whole of @path, malloc'd and NUL-terminated ("" when absent). */
static char *slurp(const char *path)
{
    char *text = harness_read_file(path);
    if (!text)
        text = strdup("");
    assert_non_null(text);
    return text;
}

/* 1 when one line of @n's log holds both @a and @b. */
static int log_line_has(const struct node_proc *n, const char *a,
                        const char *b)
{
    char *text = slurp(n->log), *line = text;
    int found = 0;
    while (line && *line && !found) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        found = strstr(line, a) && strstr(line, b);
        line = next;
    }
    free(text);
    return found;
}

/* GET /metrics from @port: the body (malloc'd); the status must be 200. */
static char *scrape(int port)
{
    char err[256];
    char *text = harness_scrape(port, err, sizeof(err));
    if (!text)
        fail_msg("scrape of port %d: %s", port, err);
    return text;
}
/* The value of @series (name and labels exactly as exposed) in @text, or
 * -1 when the scrape lacks it. */
static double metric_or(const char *text, const char *series)
{
    double v;
    return harness_metric(text, series, &v) == 0 ? v : -1;
}
/* Polls until @n's health is @want, for up to 15 s. */
static void wait_health(const struct node_proc *n, enum dossier_health want)
{
    enum dossier_health h = DOSSIER_HEALTH_UNKNOWN;
    int code = -1;
    for (int t = 0; t < 150; t++) {
        h = harness_health(n->addr, "", &code);
        if (code == 0 && h == want)
            return;
        usleep(100000);
    }
    fail_msg("health of the node: code %s, state %d; wanted state %d",
             dossier_code_name(code), (int)h, (int)want);
}

/* 1 while @n's process runs: not exited, and not a zombie waiting for
 * the harness to reap it (it must stay tracked, so this does not reap). */
static int node_alive(const struct node_proc *n)
{
    char path[64], stat[512], *paren;
    FILE *f;
    size_t len;
    if (n->pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)n->pid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    len = fread(stat, 1, sizeof(stat) - 1, f);
    fclose(f);
    stat[len] = '\0';
    paren = strrchr(stat, ')'); /* "pid (comm) state ..." */
    return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

/* Prints the last @lines lines of @n's log to stderr. */
static void print_log_tail(const struct node_proc *n, int lines)
{
    char *text = slurp(n->log);
    size_t len = strlen(text);
    const char *p = text + len;
    int seen = 0;
    while (p > text && seen <= lines)
        if (*--p == '\n')
            seen++;
    fprintf(stderr, "---- last lines of %s ----\n%s----\n", n->log,
            p == text ? p : p + 1);
    free(text);
}

/* ------------------------------------------------------------------ */
/* Files of a stopped node */

/* The path of the file in @dir whose name ends with @suffix (and, when
 * @prefix is not NULL, starts with it) that is the largest (@by_size) or
 * has the highest number in its name (RocksDB numbers its files in
 * order). Returns its size, or -1 when there is none; counts matches in
 * *@count (may be NULL). */
static long pick_file(const char *dir, const char *prefix, const char *suffix,
                      int by_size, char *out, size_t cap, int *count)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    long best = -1;
    unsigned long best_num = 0;
    if (count)
        *count = 0;
    if (!d)
        return -1;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name), s = strlen(suffix);
        char path[1024];
        struct stat sb;
        unsigned long num;
        if (n <= s || strcmp(e->d_name + n - s, suffix) != 0)
            continue;
        if (prefix && strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (count)
            (*count)++;
        num = strtoul(e->d_name + (prefix ? strlen(prefix) : 0), NULL, 10);
        if (best < 0 || (by_size ? sb.st_size > best : num > best_num)) {
            best = (long)sb.st_size;
            best_num = num;
            snprintf(out, cap, "%s", path);
        }
    }
    closedir(d);
    return best;
}

/* Overwrites @len bytes of @path at @off with random bytes (made sure to
 * differ from what was there). */
static void damage_file(const char *path, long off, size_t len)
{
    uint8_t old[256], bytes[256];
    int fd = open(path, O_RDWR);
    assert_true(len <= sizeof(bytes));
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, old, len, off), (ssize_t)len);
    randombytes_buf(bytes, len);
    for (size_t i = 0; i < len; i++)
        if (bytes[i] == old[i])
            bytes[i] ^= 0x5a;
    assert_int_equal(pwrite(fd, bytes, len, off), (ssize_t)len);
    assert_int_equal(fsync(fd), 0);
    close(fd);
}

/* Starts @n with @extra. Returns 1 when it serves; else 0, with the exit
 * status of a second attempt run to its end in *@status and what it wrote
 * on stderr in @err (node_start does not tell the exit status). */
static int start_or_refusal(struct node_proc *n, const char *const *extra,
                            int *status, char *err, size_t cap)
{
    const char *args[16] = {"--data-dir", n->data, "--key-file", n->key,
                            "--listen", "127.0.0.1:0"};
    int a = 6;
    if (node_start(n, extra) == 0)
        return 1;
    for (int i = 0; extra && extra[i] && a < 15; i++)
        args[a++] = extra[i];
    args[a] = NULL;
    *status = node_run_to_exit(n, args, err, cap);
    return 0;
}

/* What reading back the records of a damaged node found. */
struct readback {
    int exact, not_found, errors[DOSSIER_OUT_OF_RANGE + 1];
    int skipped; /* not read: the node had halted */
    char first_error[DOSSIER_STATUS_MESSAGE_MAX];
};

/* Reads every record @ws acknowledged from a node started on damaged
 * files: each must be exactly as written or an error that says so
 * (CORRUPT, IO, UNAVAILABLE, INTERNAL); a missing record or another value
 * fails the test. Once the node says it halted every later read would be
 * refused the same way, so they are counted, not made. */
static void read_back_damaged(struct node_proc *n, const char *prefix,
                              const struct writer ws[WRITERS],
                              struct readback *rb)
{
    struct dossier_client *c = harness_client(n->addr, 5000);
    int halted = 0;
    memset(rb, 0, sizeof(*rb));
    for (int w = 0; w < WRITERS; w++)
        for (int k = 0; k < ws[w].n_acked; k++) {
            struct dossier_status st;
            char id[64];
            int rc;
            if (halted) {
                rb->skipped++;
                continue;
            }
            writer_id(prefix, w, k, id, sizeof(id));
            rc = read_record(c, id, &st);
            if (rc == 0) {
                rb->exact++;
                continue;
            }
            if (rc == DOSSIER_NOT_FOUND) {
                rb->not_found++;
                if (rb->not_found <= 3)
                    fprintf(stderr, "  acknowledged record %s is missing: "
                                    "%s\n", id, st.message);
                continue;
            }
            if (rc != DOSSIER_CORRUPT && rc != DOSSIER_IO &&
                rc != DOSSIER_UNAVAILABLE && rc != DOSSIER_INTERNAL)
                fail_msg("record %s: unexpected %s: %s", id,
                         dossier_code_name(rc), st.message);
            if (!rb->first_error[0])
                snprintf(rb->first_error, sizeof(rb->first_error),
                         "%s: %s: %.400s", id, dossier_code_name(rc),
                         st.message);
            rb->errors[rc]++;
            halted = rc == DOSSIER_UNAVAILABLE && strstr(st.message, "halted");
        }
    dossier_client_close(c);
    fprintf(stderr, "  read back: %d exact, %d missing, %d CORRUPT, %d IO, "
                    "%d UNAVAILABLE, %d INTERNAL, %d not read after a "
                    "halt\n",
            rb->exact, rb->not_found, rb->errors[DOSSIER_CORRUPT],
            rb->errors[DOSSIER_IO], rb->errors[DOSSIER_UNAVAILABLE],
            rb->errors[DOSSIER_INTERNAL], rb->skipped);
    if (rb->first_error[0])
        fprintf(stderr, "  first error: %s\n", rb->first_error);
}

/* After reading a damaged node: it still runs and answers its health
 * service, and SIGTERM stops it with 0 (or 1 after a halt, which it then
 * logs); never killed by a signal. */
static void expect_node_survived(struct node_proc *n)
{
    int code, rc;
    assert_true(node_alive(n));
    harness_health(n->addr, "", &code);
    assert_int_equal(code, 0);
    rc = node_stop(n);
    if (rc == 1)
        assert_true(harness_log_count(n, "stopped after a halt") > 0);
    else
        assert_int_equal(rc, 0);
}

/* The node of the test running: its teardown stops it and removes its
 * directory even when an assertion ended the test half-way. */
static struct node_proc node;

static int node_teardown(void **state)
{
    (void)state;
    if (node.dir[0])
        node_destroy(&node);
    return 0;
}

/* ------------------------------------------------------------------ */
/* A full disk */

#define TMPFS_SMALL "size=24m"
#define TMPFS_LARGE "size=256m"

static struct disk_full {
    struct node_proc n;
    char mnt[270];
    int mounted;
} full;

/* Stops the node before unmounting its data, on every path. */
static int disk_full_teardown(void **state)
{
    (void)state;
    if (full.n.pid)
        node_kill9(&full.n);
    if (full.mounted && umount2(full.mnt, 0) != 0) {
        fprintf(stderr, "cannot unmount %s: %s\n", full.mnt, strerror(errno));
        umount2(full.mnt, MNT_DETACH);
    }
    full.mounted = 0;
    if (full.n.dir[0])
        node_destroy(&full.n);
    return 0;
}

/* 8 writers fill a 24 MiB data file system. The node halts: writers are
 * told UNAVAILABLE naming the halt, later calls too, health says
 * NOT_SERVING, the metrics show the halt and its reason, the log says why,
 * and SIGTERM stops it with status 1. With room again, a restart serves
 * every acknowledged write with its exact value. */
static void test_disk_full_halts_and_restart_keeps_acknowledged(void **state)
{
    const char *extra[] = {"--metrics-listen", "127.0.0.1:0", NULL};
    struct node_proc *n = &full.n;
    struct writer ws[WRITERS];
    struct dossier_client *c;
    struct dossier_status st;
    struct dossier_record *r = NULL;
    char *text;
    int port, acked = 0, not_found = 0;
    (void)state;

    memset(&full, 0, sizeof(full));
    node_init(n);
    snprintf(full.mnt, sizeof(full.mnt), "%s/disk", n->dir);
    assert_int_equal(mkdir(full.mnt, 0700), 0);
    if (mount("tmpfs", full.mnt, "tmpfs", 0, TMPFS_SMALL) != 0)
        fail_msg("cannot mount a tmpfs on %s (%s): this test needs root "
                 "(CAP_SYS_ADMIN) to make a small file system to fill",
                 full.mnt, strerror(errno));
    full.mounted = 1;
    snprintf(n->data, sizeof(n->data), "%s/data", full.mnt);
    assert_int_equal(node_start(n, extra), 0);
    port = harness_metrics_port(n);
    assert_true(port > 0);
    text = scrape(port);
    assert_true(metric_or(text, "dossier_node_halted{reason=\"none\"}") == 0);
    assert_true(metric_or(text, "dossier_health_serving") == 1);
    free(text);

    /* Each writer stops at its first failure; 24 MiB hold far fewer than
     * 8 x 40000 records of 1 KiB, so reaching the limit means the disk
     * never filled. */
    c = harness_client(n->addr, 10000);
    write_concurrently(c, "full", 40000, ws);
    dossier_client_close(c);
    for (int i = 0; i < WRITERS; i++) {
        acked += ws[i].n_acked;
        fprintf(stderr, "  writer %d: %d acknowledged, then %s: %s\n", i,
                ws[i].n_acked, dossier_code_name(ws[i].fail_code),
                ws[i].fail_msg);
    }
    fprintf(stderr, "  %d writes acknowledged before the disk filled\n",
            acked);
    if (!node_alive(n)) {
        print_log_tail(n, 4);
        fail_msg("dossierd died while its disk filled instead of halting "
                 "(exit status %d); see %s",
                 node_stop(n), n->log);
    }
    for (int i = 0; i < WRITERS; i++) {
        assert_int_not_equal(ws[i].n_acked, 40000);
        assert_int_equal(ws[i].fail_code, DOSSIER_UNAVAILABLE);
        if (!strstr(ws[i].fail_msg, "halted") &&
            !strstr(ws[i].fail_msg, "No space left"))
            fail_msg("writer %d failed without naming the halt: %s", i,
                     ws[i].fail_msg);
    }
    assert_true(acked > 0);

    /* The process stays up and says why, in its log and on stderr. */
    assert_true(log_line_has(n, "\"level\":\"error\"", "halted: "));
    assert_true(harness_log_count(n, "dossierd: halted: ") > 0);
    assert_true(harness_log_count(n, "No space left") > 0);

    /* Later data calls, writes and reads, are refused with the reason. */
    c = harness_client(n->addr, 3000);
    assert_int_equal(put_record(c, "full-after", &st), DOSSIER_UNAVAILABLE);
    if (strncmp(st.message, "node 1 halted after a storage failure and serves "
                            "no data until it is restarted (",
                strlen("node 1 halted after a storage failure and serves "
                       "no data until it is restarted (")) != 0)
        fail_msg("a write after the halt: %s", st.message);
    assert_int_equal(dossier_get(c, NULL, "contact", "full-0-0", &r, &st),
                     DOSSIER_UNAVAILABLE);
    assert_non_null(strstr(st.message, "node 1 halted after a storage failure"
                                       " and serves no data until it is "
                                       "restarted ("));
    assert_non_null(strstr(st.message, "No space left"));
    dossier_client_close(c);

    wait_health(n, DOSSIER_HEALTH_NOT_SERVING);
    text = scrape(port);
    if (metric_or(text, "dossier_node_halted{reason=\"disk_full\"}") != 1)
        fail_msg("no dossier_node_halted{reason=\"disk_full\"} 1 in:\n%s",
                 text);
    assert_true(metric_or(text, "dossier_node_halted{reason=\"none\"}") < 0);
    assert_true(metric_or(text, "dossier_health_serving") == 0);
    free(text);

    /* Stopped as asked, but a supervisor must see the failure. */
    assert_int_equal(node_stop(n), 1);
    assert_true(harness_log_count(n, "stopped after a halt") > 0);

    /* Room again: the restart recovers from disk and loses nothing. */
    assert_int_equal(mount("tmpfs", full.mnt, "tmpfs", MS_REMOUNT,
                           TMPFS_LARGE),
                     0);
    assert_int_equal(node_start(n, extra), 0);
    wait_health(n, DOSSIER_HEALTH_SERVING);
    text = scrape(harness_metrics_port(n));
    assert_true(metric_or(text, "dossier_node_halted{reason=\"none\"}") == 0);
    assert_true(metric_or(text, "dossier_health_serving") == 1);
    free(text);
    c = harness_client(n->addr, 10000);
    for (int w = 0; w < WRITERS; w++) {
        char id[64];
        int rc;
        for (int k = 0; k < ws[w].n_acked; k++) {
            writer_id("full", w, k, id, sizeof(id));
            rc = read_record(c, id, &st);
            if (rc)
                fail_msg("acknowledged record %s: %s: %s", id,
                         dossier_code_name(rc), st.message);
        }
        /* The write that failed may or may not have been applied; if it
         * was, it holds its value. */
        writer_id("full", w, ws[w].n_acked, id, sizeof(id));
        rc = read_record(c, id, &st);
        if (rc == DOSSIER_NOT_FOUND)
            not_found++;
        else
            assert_int_equal(rc, 0);
    }
    fprintf(stderr, "  after the restart: all %d acknowledged records "
                    "exact; %d of the %d failed writes absent, the others "
                    "applied\n",
            acked, not_found, WRITERS);
    assert_int_equal(put_record(c, "full-after-restart", &st), 0);
    dossier_client_close(c);
    assert_int_equal(node_stop(n), 0);
}

/* ------------------------------------------------------------------ */
/* Damaged RocksDB files */

/* A damaged SST file: the node refuses to start naming the damage, or it
 * serves each record exactly or with an error, never another value, and
 * survives the reads. */
static void test_corrupt_sst_never_serves_wrong_data(void **state)
{
    struct node_proc *n = &node;
    struct writer ws[WRITERS];
    struct readback rb;
    char db[400], sst[1024], err[8192];
    long size;
    int count, status = 0;
    (void)state;

    node_init(n);
    assert_int_equal(node_start(n, NULL), 0);
    write_all(n, "sst", 375, ws); /* 3000 records of 1 KiB */
    assert_int_equal(node_stop(n), 0);
    snprintf(db, sizeof(db), "%.319s/db", n->data);
    size = pick_file(db, NULL, ".sst", 1, sst, sizeof(sst), &count);
    fprintf(stderr, "  after a clean stop: %d .sst files, largest %ld bytes\n",
            count, size);
    if (size < 4096) {
        /* The records may still be only in the WAL: a start replays it
         * into an SST file. */
        assert_int_equal(node_start(n, NULL), 0);
        assert_int_equal(node_stop(n), 0);
        size = pick_file(db, NULL, ".sst", 1, sst, sizeof(sst), &count);
        fprintf(stderr, "  after one more start and stop: %d .sst files, "
                        "largest %ld bytes\n",
                count, size);
    }
    assert_true(size >= 4096);
    fprintf(stderr, "  damaging 64 bytes at offset %ld of %s\n", size / 2,
            strrchr(sst, '/') + 1);
    damage_file(sst, size / 2, 64);

    if (!start_or_refusal(n, NULL, &status, err, sizeof(err))) {
        fprintf(stderr, "  outcome: the node refused to start (status %d): "
                        "%s",
                status, err);
        assert_int_equal(status, 1);
        assert_true(strstr(err, "orrupt") || strstr(err, strrchr(sst, '/') + 1));
        return;
    }
    read_back_damaged(n, "sst", ws, &rb);
    fprintf(stderr, "  outcome: the node started; %d of 3000 records exact, "
                    "the others refused with an error\n",
            rb.exact);
    assert_int_equal(rb.not_found, 0);
    expect_node_survived(n);
}

/* A damaged WAL after a crash: the node refuses to start with a clear
 * message, or serves no acknowledged record wrong or not at all. */
static void test_corrupt_wal_never_serves_wrong_data(void **state)
{
    struct node_proc *n = &node;
    struct writer ws[WRITERS];
    struct readback rb;
    char db[400], wal[1024], err[8192];
    long size;
    int count, status = 0;
    (void)state;

    node_init(n);
    assert_int_equal(node_start(n, NULL), 0);
    write_all(n, "wal", 50, ws); /* 400 records of 1 KiB */
    node_kill9(n);
    snprintf(db, sizeof(db), "%.319s/db", n->data);
    size = pick_file(db, NULL, ".log", 0, wal, sizeof(wal), &count);
    fprintf(stderr, "  after kill -9: %d WAL files, newest %ld bytes\n", count,
            size);
    assert_true(size >= 4096);
    fprintf(stderr, "  damaging 64 bytes at offset %ld of %s\n", size / 2,
            strrchr(wal, '/') + 1);
    damage_file(wal, size / 2, 64);

    if (!start_or_refusal(n, NULL, &status, err, sizeof(err))) {
        fprintf(stderr, "  outcome: the node refused to start (status %d): "
                        "%s",
                status, err);
        assert_int_equal(status, 1);
        assert_non_null(strstr(err, "dossierd: cannot start: "));
        assert_non_null(strstr(err, "orrupt"));
        return;
    }
    read_back_damaged(n, "wal", ws, &rb);
    fprintf(stderr, "  outcome: the node started; %d of 400 records exact\n",
            rb.exact);
    if (rb.not_found)
        fail_msg("the node started on a damaged WAL and answered NOT_FOUND "
                 "for %d acknowledged records: it dropped them silently",
                 rb.not_found);
    expect_node_survived(n);
}

/* A damaged MANIFEST: RocksDB cannot open the database, and the node
 * refuses to start with status 1 and the reason on stderr. */
static void test_corrupt_manifest_is_refused(void **state)
{
    struct node_proc *n = &node;
    struct writer ws[WRITERS];
    char db[400], manifest[1024], err[8192];
    const char *args[] = {"--data-dir", NULL, "--key-file", NULL,
                          "--listen", "127.0.0.1:0", NULL};
    long size;
    int count;
    (void)state;

    node_init(n);
    args[1] = n->data;
    args[3] = n->key;
    assert_int_equal(node_start(n, NULL), 0);
    write_all(n, "mf", 25, ws);
    assert_int_equal(node_stop(n), 0);
    snprintf(db, sizeof(db), "%.319s/db", n->data);
    size = pick_file(db, "MANIFEST-", "", 0, manifest, sizeof(manifest),
                     &count);
    fprintf(stderr, "  %d MANIFEST files, newest %s of %ld bytes\n", count,
            size >= 0 ? strrchr(manifest, '/') + 1 : "-", size);
    assert_true(size >= 64);
    damage_file(manifest, size / 2, 16);
    assert_int_equal(node_run_to_exit(n, args, err, sizeof(err)), 1);
    fprintf(stderr, "  refused: %s", err);
    assert_non_null(strstr(err, "dossierd: cannot start: "));
    assert_true(strstr(err, "orrupt") || strstr(err, "MANIFEST"));
}

/* ------------------------------------------------------------------ */
/* Key files */

/* A key file that is missing, or that group and others can read, or that
 * is no file at all, stops the start with status 1 and a message naming
 * the file and what is wrong with it. */
static void test_bad_key_file_is_refused(void **state)
{
    struct node_proc *n = &node;
    char err[4096], missing[400];
    const char *args[] = {"--data-dir", NULL, "--key-file", NULL,
                          "--listen", "127.0.0.1:0", NULL};
    (void)state;

    node_init(n);
    args[1] = n->data;

    snprintf(missing, sizeof(missing), "%.255s/no-such.key", n->dir);
    args[3] = missing;
    assert_int_equal(node_run_to_exit(n, args, err, sizeof(err)), 1);
    assert_non_null(strstr(err, "cannot open key file"));
    assert_non_null(strstr(err, missing));

    args[3] = n->key;
    assert_int_equal(chmod(n->key, 0644), 0);
    assert_int_equal(node_run_to_exit(n, args, err, sizeof(err)), 1);
    assert_non_null(strstr(err, n->key));
    assert_non_null(strstr(err, "accessible by group or others"));
    assert_non_null(strstr(err, "0644"));
    assert_non_null(strstr(err, "chmod 600"));

    /* A directory where the key file should be cannot be read as one. */
    args[3] = n->dir;
    assert_int_equal(node_run_to_exit(n, args, err, sizeof(err)), 1);
    assert_non_null(strstr(err, "not a regular file"));

    /* None of these made a data directory. */
    {
        struct stat sb;
        assert_int_not_equal(stat(n->data, &sb), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(
            test_disk_full_halts_and_restart_keeps_acknowledged,
            disk_full_teardown),
        cmocka_unit_test_teardown(test_corrupt_sst_never_serves_wrong_data,
                                  node_teardown),
        cmocka_unit_test_teardown(test_corrupt_wal_never_serves_wrong_data,
                                  node_teardown),
        cmocka_unit_test_teardown(test_corrupt_manifest_is_refused,
                                  node_teardown),
        cmocka_unit_test_teardown(test_bad_key_file_is_refused,
                                  node_teardown),
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
