/* The single-node writer: group commit of submitted commands. */
#include "cluster.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "log.h"

struct pending {
    uint8_t *data;
    size_t len;
    cluster_done_cb cb;
    void *arg;
    struct store_result res;
    struct pending *next;
};

struct cluster {
    struct store *store;
    size_t max_batch;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct pending *head, **tail;
    int stopping;
    uint64_t commands, batches; /* under lock */
};

int cluster_submit(struct cluster *cl, uint8_t *data, size_t len,
                   cluster_done_cb cb, void *arg)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (!p) {
        free(data);
        return DOSSIER_NOMEM;
    }
    p->data = data;
    p->len = len;
    p->cb = cb;
    p->arg = arg;
    pthread_mutex_lock(&cl->lock);
    if (cl->stopping) {
        pthread_mutex_unlock(&cl->lock);
        free(data);
        free(p);
        return DOSSIER_UNAVAILABLE;
    }
    *cl->tail = p;
    cl->tail = &p->next;
    pthread_cond_signal(&cl->wake);
    pthread_mutex_unlock(&cl->lock);
    return 0;
}

/* Applies the commands of @list in order into one batch, writes it synced,
 * then runs every callback. */
static void write_batch(struct cluster *cl, struct pending *list)
{
    struct store_batch *b = store_batch_begin(cl->store);
    struct dossier_status st;
    size_t n = 0;
    int rc = 0;

    for (struct pending *p = list; p; p = p->next, n++) {
        Command *cmd;
        if (!b) {
            err_set(&p->res.status, DOSSIER_NOMEM, "out of memory");
            continue;
        }
        cmd = dossier__store__v1__command__unpack(NULL, p->len, p->data);
        if (!cmd) {
            err_set(&p->res.status, DOSSIER_CORRUPT, "undecodable command");
            continue;
        }
        store_apply(b, cmd, &p->res);
        dossier__store__v1__command__free_unpacked(cmd, NULL);
    }
    if (b)
        rc = store_batch_commit(b, 1, &st);
    if (rc) {
        log_printf(LOG_ERROR, "write of %zu commands failed: %s", n,
                   st.message);
        for (struct pending *p = list; p; p = p->next)
            if (p->res.status.code == 0)
                p->res.status = st;
    }
    pthread_mutex_lock(&cl->lock);
    cl->commands += n;
    cl->batches++;
    pthread_mutex_unlock(&cl->lock);
    while (list) {
        struct pending *next = list->next;
        list->cb(list->arg, &list->res);
        free(list->data);
        free(list);
        list = next;
    }
}

static void *writer_main(void *arg)
{
    struct cluster *cl = arg;

    pthread_mutex_lock(&cl->lock);
    for (;;) {
        struct pending *list, **cut;
        size_t n = 0;

        while (!cl->head && !cl->stopping)
            pthread_cond_wait(&cl->wake, &cl->lock);
        if (!cl->head)
            break; /* stopping and drained */
        list = cl->head;
        for (cut = &cl->head; *cut && n < cl->max_batch; cut = &(*cut)->next)
            n++;
        cl->head = *cut;
        *cut = NULL;
        if (!cl->head)
            cl->tail = &cl->head;
        pthread_mutex_unlock(&cl->lock);
        write_batch(cl, list);
        pthread_mutex_lock(&cl->lock);
    }
    pthread_mutex_unlock(&cl->lock);
    return NULL;
}

int cluster_start(struct store *s, size_t max_batch, struct cluster **out,
                  struct dossier_status *st)
{
    struct cluster *cl = calloc(1, sizeof(*cl));
    if (!cl)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    cl->store = s;
    cl->max_batch = max_batch ? max_batch : 1;
    cl->tail = &cl->head;
    pthread_mutex_init(&cl->lock, NULL);
    pthread_cond_init(&cl->wake, NULL);
    if (pthread_create(&cl->thread, NULL, writer_main, cl) != 0) {
        pthread_mutex_destroy(&cl->lock);
        pthread_cond_destroy(&cl->wake);
        free(cl);
        return err_set(st, DOSSIER_INTERNAL, "cannot start the writer thread");
    }
    *out = cl;
    return err_ok(st);
}

void cluster_stop(struct cluster *cl)
{
    if (!cl)
        return;
    pthread_mutex_lock(&cl->lock);
    cl->stopping = 1;
    pthread_cond_signal(&cl->wake);
    pthread_mutex_unlock(&cl->lock);
    pthread_join(cl->thread, NULL);
    pthread_mutex_destroy(&cl->lock);
    pthread_cond_destroy(&cl->wake);
    free(cl);
}

void cluster_stats(struct cluster *cl, struct cluster_stats *out)
{
    pthread_mutex_lock(&cl->lock);
    out->commands = cl->commands;
    out->batches = cl->batches;
    pthread_mutex_unlock(&cl->lock);
}
