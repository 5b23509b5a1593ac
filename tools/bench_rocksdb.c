/* dossier-bench's baseline driver: raw RocksDB in this process, the same
 * keys and values as the other drivers, synced puts, no encryption, no
 * RPC. One thread per client; RocksDB's write groups batch concurrent
 * synced writers into one fdatasync. */
#include <stdio.h>
#include <stdlib.h>

#include <rocksdb/c.h>

#include "bench.h"

struct brocks {
    rocksdb_t *db;
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
};

static int brocks_open(struct bench *b)
{
    struct brocks *r = calloc(1, sizeof(*r));
    rocksdb_options_t *o;
    char *e = NULL;

    if (!r)
        return -1;
    o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_compression(o, rocksdb_no_compression);
    r->db = rocksdb_open(o, b->target, &e);
    rocksdb_options_destroy(o);
    if (e) {
        fprintf(stderr, "dossier-bench: cannot open %s: %s\n", b->target, e);
        rocksdb_free(e);
        free(r);
        return -1;
    }
    r->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(r->wo, 1);
    r->ro = rocksdb_readoptions_create();
    b->drv = r;
    return 0;
}

static void brocks_close(struct bench *b)
{
    struct brocks *r = b->drv;
    rocksdb_close(r->db);
    rocksdb_writeoptions_destroy(r->wo);
    rocksdb_readoptions_destroy(r->ro);
    free(r);
    b->drv = NULL;
}

static int brocks_call(struct bench_worker *w, int is_put, uint64_t id)
{
    struct brocks *r = w->b->drv;
    char key[32], *e = NULL, *v = NULL;
    size_t vlen;
    int klen = bench_key(key, sizeof(key), id);

    if (is_put)
        rocksdb_put(r->db, r->wo, key, (size_t)klen, w->b->payload,
                    w->b->value_size, &e);
    else
        v = rocksdb_get(r->db, r->ro, key, (size_t)klen, &vlen, &e);
    if (e || (!is_put && !v)) {
        snprintf(w->err, sizeof(w->err), "%s", e ? e : "missing key");
        rocksdb_free(e);
        return -1;
    }
    rocksdb_free(v);
    return 0;
}

const struct bench_driver bench_rocksdb_driver = {
    .name = "rocksdb",
    .open = brocks_open,
    .close = brocks_close,
    .call = brocks_call,
};
