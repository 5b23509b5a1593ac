/* dossier-bench's PostgreSQL driver: one libpq connection per client
 * thread, a prepared INSERT of one row per put (each its own transaction,
 * committed as the server's synchronous_commit says: on by default, so
 * flushed to disk before the answer) and a prepared SELECT by primary key
 * per get. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "bench.h"

static const char create_table[] =
    "CREATE TABLE IF NOT EXISTS bench_record "
    "(k text PRIMARY KEY, v bytea NOT NULL)";

/* Copies libpq's message @msg (borrowed) into @buf without its last
 * newline. */
static void pg_message(char *buf, size_t cap, const char *msg)
{
    size_t n;
    snprintf(buf, cap, "postgres: %s", msg && msg[0] ? msg : "failed");
    n = strlen(buf);
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
}

/* A connection to b->target into *@out; errors printed. */
static int pg_connect(const struct bench *b, PGconn **out)
{
    char err[640];
    PGconn *c = PQconnectdb(b->target);

    if (!c || PQstatus(c) != CONNECTION_OK) {
        pg_message(err, sizeof(err), c ? PQerrorMessage(c) : "out of memory");
        fprintf(stderr, "dossier-bench: %s\n", err);
        PQfinish(c);
        return -1;
    }
    *out = c;
    return 0;
}

/* Checks @res (taken: cleared), the result of a command without rows on
 * @c; errors printed. */
static int pg_command(PGconn *c, PGresult *res)
{
    char err[640];
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;

    if (!ok) {
        pg_message(err, sizeof(err),
                   res ? PQresultErrorMessage(res) : PQerrorMessage(c));
        fprintf(stderr, "dossier-bench: %s\n", err);
    }
    PQclear(res);
    return ok ? 0 : -1;
}

static int bpg_open(struct bench *b)
{
    PGconn *c;
    int rc;

    if (pg_connect(b, &c) != 0)
        return -1;
    rc = pg_command(c, PQexec(c, create_table));
    PQfinish(c);
    return rc;
}

static void bpg_close(struct bench *b)
{
    (void)b;
}

static int bpg_worker_open(struct bench_worker *w)
{
    PGconn *c;

    if (pg_connect(w->b, &c) != 0)
        return -1;
    if (pg_command(c, PQprepare(c, "put",
                                "INSERT INTO bench_record (k, v) "
                                "VALUES ($1, $2)",
                                2, NULL)) != 0 ||
        pg_command(c, PQprepare(c, "get",
                                "SELECT v FROM bench_record WHERE k = $1", 1,
                                NULL)) != 0) {
        PQfinish(c);
        return -1;
    }
    w->drv = c;
    return 0;
}

static void bpg_worker_close(struct bench_worker *w)
{
    PQfinish(w->drv);
    w->drv = NULL;
}

static int bpg_call(struct bench_worker *w, int is_put, uint64_t id)
{
    PGconn *c = w->drv;
    char key[32];
    const char *values[2] = {key, w->b->payload};
    int lengths[2], formats[2] = {0, 1}; /* key as text, value as bytes */
    PGresult *res;
    int ok;

    lengths[0] = bench_key(key, sizeof(key), id);
    lengths[1] = (int)w->b->value_size;
    if (is_put) {
        res = PQexecPrepared(c, "put", 2, values, lengths, formats, 1);
        ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    } else {
        res = PQexecPrepared(c, "get", 1, values, lengths, formats, 1);
        ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
             (size_t)PQgetlength(res, 0, 0) == w->b->value_size;
        if (!ok && PQresultStatus(res) == PGRES_TUPLES_OK) {
            snprintf(w->err, sizeof(w->err),
                     "postgres: %d rows or a value of the wrong size",
                     PQntuples(res));
            PQclear(res);
            return -1;
        }
    }
    if (!ok)
        pg_message(w->err, sizeof(w->err),
                   res ? PQresultErrorMessage(res) : PQerrorMessage(c));
    PQclear(res);
    return ok ? 0 : -1;
}

const struct bench_driver bench_postgres_driver = {
    .name = "postgres",
    .open = bpg_open,
    .close = bpg_close,
    .worker_open = bpg_worker_open,
    .worker_close = bpg_worker_close,
    .call = bpg_call,
};
