/* Backups and restores (see backup.h). */
#include "backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "api.h"
#include "audit.h"
#include "backupfmt.h"
#include "cluster.h"
#include "crypt.h"
#include "errors.h"
#include "fileutil.h"
#include "log.h"
#include "raftio.h"
#include "records.h"
#include "store.h"

#define PATH_CAP 4096

/* One backup at a time per node: set by the call that starts it, cleared
 * by its thread. A stop cancels it between files. */
static int backup_busy;
static int backup_cancel;

/* Adds every regular file under @root/@rel to @files as {path, bytes,
 * sha256}, depth first, names sorted; sums into *@bytes. */
static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int manifest_files(const char *root, const char *rel, json_t *files,
                          uint64_t *bytes, struct dossier_status *st)
{
    char dir[PATH_CAP], **names = NULL;
    size_t n = 0;
    DIR *d;
    struct dirent *e;
    int rc = 0;

    snprintf(dir, sizeof(dir), "%s%s%s", root, rel[0] ? "/" : "", rel);
    if (!(d = opendir(dir)))
        return err_set(st, DOSSIER_IO, "cannot list %s: %s", dir,
                       strerror(errno));
    while ((e = readdir(d))) {
        char **grown;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (__atomic_load_n(&backup_cancel, __ATOMIC_ACQUIRE)) {
            rc = err_set(st, DOSSIER_UNAVAILABLE, "the node is stopping: "
                         "the backup was abandoned");
            break;
        }
        grown = realloc(names, (n + 1) * sizeof(*names));
        if (!grown || !(grown[n] = strdup(e->d_name))) {
            names = grown ? grown : names;
            rc = err_set(st, DOSSIER_NOMEM, "out of memory");
            break;
        }
        names = grown;
        n++;
    }
    closedir(d);
    if (rc == 0)
        qsort(names, n, sizeof(*names), cmp_names);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char sub[PATH_CAP], full[PATH_CAP], hex[65];
        struct stat sb;
        uint8_t h[32];
        uint64_t size;
        int too_long = rel[0] ? fu_join(sub, sizeof(sub), rel, names[i])
                              : (int)strlen(names[i]) >= (int)sizeof(sub);
        if (!rel[0] && !too_long)
            strcpy(sub, names[i]);
        if (too_long || fu_join(full, sizeof(full), root, sub) != 0) {
            rc = err_set(st, DOSSIER_IO, "a path under %s is too long", root);
        } else if (lstat(full, &sb) != 0) {
            rc = err_set(st, DOSSIER_IO, "cannot stat %s: %s", full,
                         strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            rc = manifest_files(root, sub, files, bytes, st);
        } else if (S_ISREG(sb.st_mode)) {
            if (fu_sha256_file(full, h, &size) != 0) {
                rc = err_set(st, DOSSIER_IO, "cannot read %s: %s", full,
                             strerror(errno));
            } else {
                sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
                if (json_array_append_new(
                        files, json_pack("{s:s, s:I, s:s}", "path", sub,
                                         "bytes", (json_int_t)size, "sha256",
                                         hex)) != 0)
                    rc = err_set(st, DOSSIER_NOMEM, "out of memory");
                *bytes += size;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* Adds to @keys (a JSON array of {"version", "key_id"}) the master key
 * versions the store needs now: the one sealing the keyset and, during a
 * rotation, its target. A restore needs each of them in its key file. */
static void backup_key_versions(struct node *n, json_t *keys)
{
    Dossier__Store__V1__Meta *m = NULL;
    Dossier__Store__V1__KeyRotation *r = NULL;
    struct dossier_status st;
    uint32_t v[2] = {0, 0};
    char id[17];

    if (store_meta_get(n->store, &m, &st) == 0) {
        v[0] = m->kek_version;
        dossier__store__v1__meta__free_unpacked(m, NULL);
    }
    if (store_key_rotation_get(n->store, &r, &st) == 0) {
        if (!r->done)
            v[1] = r->to_version;
        dossier__store__v1__key_rotation__free_unpacked(r, NULL);
    }
    for (int i = 0; i < 2; i++) {
        int seen = 0;
        json_t *e;
        size_t k;
        if (!v[i])
            continue;
        json_array_foreach(keys, k, e) seen |= json_integer_value(
                                                   json_object_get(
                                                       e, "version")) ==
                                               (json_int_t)v[i];
        if (seen)
            continue;
        crypt_kek_id(n->crypt, v[i], id);
        json_array_append_new(keys, json_pack("{s:I, s:s}", "version",
                                              (json_int_t)v[i], "key_id",
                                              id));
    }
}

/* Makes a backup of @n into its backup directory, described in @info
 * (strings into @name and @path). */
static int make_backup(struct node *n, Dossier__V1__BackupInfo *info,
                       char *name, size_t name_cap, char *path,
                       size_t path_cap, struct dossier_status *st)
{
    char tmp[PATH_CAP], sub[PATH_CAP], from[PATH_CAP], stamp[32];
    json_t *manifest = NULL, *files = NULL, *keys = NULL;
    uint64_t applied = store_applied(n->store), bytes = 0;
    int64_t now = records_now_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    int rc;

    gmtime_r(&secs, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(name, name_cap, "%s-n%" PRIu64 "-i%" PRIu64, stamp, n->id,
             applied);
    if (mkdir(n->backup_dir, 0700) != 0 && errno != EEXIST)
        return err_set(st, DOSSIER_IO, "cannot make the backup directory "
                       "%s: %s", n->backup_dir, strerror(errno));
    if (snprintf(path, path_cap, "%s/%s", n->backup_dir, name) >=
            (int)path_cap ||
        snprintf(tmp, sizeof(tmp), "%s/.%s.partial", n->backup_dir, name) >=
            (int)sizeof(tmp))
        return err_set(st, DOSSIER_INVALID_ARGUMENT,
                       "the backup directory's path is too long");
    if (access(path, F_OK) == 0)
        return err_set(st, DOSSIER_ALREADY_EXISTS,
                       "backup %s exists already; retry in a second", name);
    fu_rmtree(tmp); /* a partial one of an earlier crash */
    if (mkdir(tmp, 0700) != 0)
        return err_set(st, DOSSIER_IO, "cannot make %s: %s", tmp,
                       strerror(errno));
    if (fu_join(sub, sizeof(sub), tmp, "db") != 0) {
        rc = err_set(st, DOSSIER_IO, "the backup path is too long");
        goto fail;
    }
    /* Before and after the checkpoint: a rotation may end in between. */
    keys = json_array();
    if (!keys) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto fail;
    }
    backup_key_versions(n, keys);
    if ((rc = store_checkpoint(n->store, sub, st)) != 0)
        goto fail;
    backup_key_versions(n, keys);
    if (fu_join(from, sizeof(from), n->data_dir, "DOSSIER") != 0 ||
        fu_join(sub, sizeof(sub), tmp, "DOSSIER") != 0 ||
        fu_copy(from, sub, 0600, NULL, NULL) != 0) {
        rc = err_set(st, DOSSIER_IO, "cannot copy %s: %s", from,
                     strerror(errno));
        goto fail;
    }
    files = json_array();
    if (!files) {
        rc = err_set(st, DOSSIER_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = manifest_files(tmp, "", files, &bytes, st)) != 0)
        goto fail;
    manifest = json_pack("{s:i, s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:O, "
                         "s:O}",
                         "format", BACKUP_FORMAT, "name", name, "created_ms",
                         (json_int_t)now, "node_id", (json_int_t)n->id,
                         "cluster_name", n->cluster_name, "applied_index",
                         (json_int_t)applied, "bytes", (json_int_t)bytes,
                         "file_count", (json_int_t)json_array_size(files),
                         "master_keys", keys, "files", files);
    if (!manifest || fu_join(sub, sizeof(sub), tmp, BACKUP_MANIFEST) != 0 ||
        json_dump_file(manifest, sub, JSON_INDENT(1)) != 0 ||
        fu_fsync(sub) != 0) {
        rc = err_set(st, DOSSIER_IO, "cannot write %s", sub);
        goto fail;
    }
    if (fu_join(sub, sizeof(sub), tmp, "db") != 0 || fu_fsync(sub) != 0 ||
        fu_fsync(tmp) != 0 ||
        rename(tmp, path) != 0 || fu_fsync(n->backup_dir) != 0) {
        rc = err_set(st, DOSSIER_IO, "cannot complete backup %s: %s", path,
                     strerror(errno));
        goto fail;
    }
    info->name = name;
    info->path = path;
    info->created_ms = now;
    info->node_id = n->id;
    info->applied_index = applied;
    info->bytes = bytes;
    info->files = (uint32_t)json_array_size(files);
    info->cluster_name = (char *)n->cluster_name;
    json_decref(manifest);
    json_decref(files);
    json_decref(keys);
    return 0;
fail:
    json_decref(manifest);
    json_decref(files);
    json_decref(keys);
    fu_rmtree(tmp);
    return rc;
}

static void *backup_main(void *arg)
{
    struct call *c = arg;
    struct node *n = call_node(c);
    Dossier__V1__BackupInfo info = DOSSIER__V1__BACKUP_INFO__INIT;
    struct dossier_status st;
    char name[128], path[PATH_CAP];

    if (make_backup(n, &info, name, sizeof(name), path, sizeof(path), &st) ==
        0) {
        log_printf(LOG_INFO, "backup %s: %u files, %llu bytes, applied "
                   "index %llu", name, info.files,
                   (unsigned long long)info.bytes,
                   (unsigned long long)info.applied_index);
        call_reply(c, &info.base);
    } else {
        log_printf(LOG_ERROR, "backup failed: %s", st.message);
        call_fail_status(c, &st);
    }
    __atomic_store_n(&backup_busy, 0, __ATOMIC_RELEASE);
    return NULL;
}

void api_backups_create(struct call *c, ProtobufCMessage *req)
{
    struct node *n = call_node(c);
    pthread_attr_t attr;
    pthread_t t;
    (void)req;

    if (!n->backup_dir || !n->backup_dir[0])
        return call_fail(c, DOSSIER_FAILED_PRECONDITION,
                         "node %llu has no --backup-dir: set one to take "
                         "backups there",
                         (unsigned long long)n->id);
    if (cluster_halted(n->cluster, NULL, 0))
        return call_fail(c, DOSSIER_UNAVAILABLE,
                         "node %llu halted after a storage failure: no backup "
                         "can be taken from it",
                         (unsigned long long)n->id);
    if (__atomic_load_n(&backup_cancel, __ATOMIC_ACQUIRE))
        return call_fail(c, DOSSIER_UNAVAILABLE, "the node is stopping");
    if (__atomic_exchange_n(&backup_busy, 1, __ATOMIC_ACQ_REL))
        return call_fail(c, DOSSIER_FAILED_PRECONDITION,
                         "a backup is being made on this node; retry once "
                         "it is done");
    /* Hashing every file takes a while: not on a completion-queue
     * thread. */
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, backup_main, c) != 0) {
        __atomic_store_n(&backup_busy, 0, __ATOMIC_RELEASE);
        call_fail(c, DOSSIER_UNAVAILABLE, "cannot start a backup thread");
    }
    pthread_attr_destroy(&attr);
}

void backup_wait_idle(void)
{
    while (__atomic_load_n(&backup_busy, __ATOMIC_ACQUIRE))
        usleep(10000);
}

void backup_stop(void)
{
    __atomic_store_n(&backup_cancel, 1, __ATOMIC_RELEASE);
    backup_wait_idle();
}

/* Reads <dir>/BACKUP.json into @b (strings malloc'd: free_info). */
static int read_info(const char *dir, Dossier__V1__BackupInfo *b)
{
    char path[PATH_CAP];
    json_t *m;
    const char *name = NULL, *cluster = NULL;
    json_int_t created = 0, node = 0, applied = 0, bytes = 0, files = 0;
    int format = 0;

    if (fu_join(path, sizeof(path), dir, BACKUP_MANIFEST) != 0)
        return -1;
    m = json_load_file(path, 0, NULL);
    if (!m)
        return -1;
    if (json_unpack(m, "{s:i, s:s, s:I, s:I, s:s, s:I, s:I, s:I}", "format",
                    &format, "name", &name, "created_ms", &created,
                    "node_id", &node, "cluster_name", &cluster,
                    "applied_index", &applied, "bytes", &bytes, "file_count",
                    &files) != 0 ||
        format != BACKUP_FORMAT) {
        json_decref(m);
        return -1;
    }
    dossier__v1__backup_info__init(b);
    b->name = strdup(name);
    b->path = strdup(dir);
    b->cluster_name = strdup(cluster);
    b->created_ms = created;
    b->node_id = (uint64_t)node;
    b->applied_index = (uint64_t)applied;
    b->bytes = (uint64_t)bytes;
    b->files = (uint32_t)files;
    json_decref(m);
    if (b->name && b->path && b->cluster_name)
        return 0;
    free(b->name);
    free(b->path);
    free(b->cluster_name);
    return -1;
}

static void free_info(Dossier__V1__BackupInfo *b)
{
    free(b->name);
    free(b->path);
    free(b->cluster_name);
}

static int cmp_info(const void *a, const void *b)
{
    return strcmp((*(Dossier__V1__BackupInfo *const *)a)->name,
                  (*(Dossier__V1__BackupInfo *const *)b)->name);
}

void api_backups_list(struct call *c, ProtobufCMessage *req)
{
    struct node *n = call_node(c);
    Dossier__V1__ListBackupsResponse resp =
        DOSSIER__V1__LIST_BACKUPS_RESPONSE__INIT;
    Dossier__V1__BackupInfo *infos = NULL, **ptrs = NULL;
    size_t count = 0, cap = 0;
    DIR *d;
    struct dirent *e;
    (void)req;

    if (!n->backup_dir || !n->backup_dir[0])
        return call_fail(c, DOSSIER_FAILED_PRECONDITION,
                         "node %llu has no --backup-dir",
                         (unsigned long long)n->id);
    d = opendir(n->backup_dir);
    if (!d && errno != ENOENT)
        return call_fail(c, DOSSIER_IO, "cannot list %s: %s", n->backup_dir,
                         strerror(errno));
    while (d && (e = readdir(d))) {
        char dir[PATH_CAP];
        if (e->d_name[0] == '.')
            continue; /* ".", "..", and partial ones */
        if (count == cap) {
            size_t nc = cap ? 2 * cap : 16;
            Dossier__V1__BackupInfo *g = realloc(infos, nc * sizeof(*g));
            if (!g)
                break;
            infos = g;
            cap = nc;
        }
        snprintf(dir, sizeof(dir), "%s/%s", n->backup_dir, e->d_name);
        if (read_info(dir, &infos[count]) == 0)
            count++;
        else
            log_printf(LOG_WARN, "backup list: %s has no readable "
                       BACKUP_MANIFEST "; skipped", dir);
    }
    if (d)
        closedir(d);
    ptrs = calloc(count ? count : 1, sizeof(*ptrs));
    if (!ptrs) {
        call_fail(c, DOSSIER_NOMEM, "out of memory");
    } else {
        for (size_t i = 0; i < count; i++)
            ptrs[i] = &infos[i];
        qsort(ptrs, count, sizeof(*ptrs), cmp_info);
        resp.n_backups = count;
        resp.backups = ptrs;
        call_reply(c, &resp.base);
    }
    for (size_t i = 0; i < count; i++)
        free_info(&infos[i]);
    free(infos);
    free(ptrs);
}

/* ------------------------------------------------------------------ */
/* Restore */

int backup_restore_pending(const char *data_dir)
{
    char path[PATH_CAP];
    snprintf(path, sizeof(path), "%s/" BACKUP_RESTORE_MARKER, data_dir);
    return access(path, F_OK) == 0;
}

int backup_restore_membership(struct store *s, uint64_t self_id,
                              const char *address, struct dossier_status *st)
{
    int rc = raftio_reset_single(s, self_id, address, st);
    if (rc == 0)
        log_printf(LOG_INFO, "restore: this node is now a cluster of one "
                   "voter (node %" PRIu64 ") at applied index %" PRIu64
                   "; add others with dossier cluster add",
                   self_id, store_applied(s));
    return rc;
}

struct replay_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    struct dossier_status st;
};

static void replay_done(void *arg, const struct store_result *res)
{
    struct replay_wait *w = arg;
    pthread_mutex_lock(&w->mu);
    w->st = res->status;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Erases subject @sp through the replicated erasure command. */
static int replay_one(struct node *n, const uint8_t sp[CRYPT_PSEUDONYM_BYTES],
                      struct dossier_status *st)
{
    Dossier__Store__V1__Command cmd = DOSSIER__STORE__V1__COMMAND__INIT;
    Dossier__Store__V1__EraseOp op = DOSSIER__STORE__V1__ERASE_OP__INIT;
    struct replay_wait w = {.done = 0};
    uint8_t *buf;
    size_t len;

    op.subject = (ProtobufCBinaryData){CRYPT_PSEUDONYM_BYTES, (uint8_t *)sp};
    cmd.time_ms = records_now_ms();
    cmd.principal = (char *)"dossierd-restore";
    cmd.reference = (char *)"restore-replay";
    cmd.op_case = DOSSIER__STORE__V1__COMMAND__OP_ERASE;
    cmd.erase = &op;
    len = dossier__store__v1__command__get_packed_size(&cmd);
    buf = malloc(len);
    if (!buf)
        return err_set(st, DOSSIER_NOMEM, "out of memory");
    dossier__store__v1__command__pack(&cmd, buf);
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    if (cluster_submit(n->cluster, buf, len, replay_done, &w) != 0) {
        pthread_mutex_destroy(&w.mu);
        pthread_cond_destroy(&w.cv);
        return err_set(st, DOSSIER_UNAVAILABLE,
                       "the node stopped during the restore");
    }
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    *st = w.st;
    return st->code;
}

static int hex_field(json_t *o, const char *key, uint8_t *out, size_t len)
{
    const char *s = json_string_value(json_object_get(o, key));
    size_t bin = 0;
    return s && strlen(s) == 2 * len &&
                   sodium_hex2bin(out, len, s, 2 * len, NULL, &bin, NULL) ==
                       0 &&
                   bin == len
               ? 0
               : -1;
}

/* Checks and replays the ledger file @path; counts into *@erased and
 * *@skipped. */
static int replay_ledger(struct node *n, const char *path, size_t *erased,
                         size_t *skipped, struct dossier_status *st)
{
    FILE *f = fopen(path, "r");
    unsigned char *sk = sodium_malloc(64);
    uint8_t pk[32];
    char line[4096];
    int lineno = 0, rc = 0;

    *erased = *skipped = 0;
    if (!f || !sk) {
        rc = err_set(st, f ? DOSSIER_NOMEM : DOSSIER_IO,
                     "cannot read the erasure ledger %s", path);
        goto out;
    }
    if ((rc = crypt_audit_keys(n->crypt, pk, sk, st)) != 0)
        goto out;
    while (fgets(line, sizeof(line), f)) {
        uint8_t sp[CRYPT_PSEUDONYM_BYTES], sig[64],
            m[AUDIT_ERASURE_V2_MESSAGE_MAX];
        uint64_t nodes[AUDIT_ERASURE_NODES_MAX];
        Dossier__Store__V1__ErasureRecord *er = NULL;
        json_int_t t = 0, idx = 0, del = 0, version = 1;
        json_t *o, *jn;
        size_t mlen = 0, nn = 0;
        int bad;
        lineno++;
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        o = json_loads(line, 0, NULL);
        if (!o || hex_field(o, "pseudonym", sp, sizeof(sp)) ||
            hex_field(o, "signature", sig, sizeof(sig)) ||
            json_unpack(o, "{s:I, s:I, s:I}", "time_ms", &t, "raft_index",
                        &idx, "records_deleted", &del) != 0) {
            json_decref(o);
            rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                         "%s line %d is not a certificate of dossier "
                         "subject ledger",
                         path, lineno);
            goto out;
        }
        /* Version 2 certificates sign the nodes that finished the
         * erasure too (version 1, of older ledgers, does not). */
        json_unpack(o, "{s?I}", "version", &version);
        jn = json_object_get(o, "nodes");
        bad = version != 1 && version != 2;
        for (size_t i = 0; version == 2 && !bad && i < json_array_size(jn);
             i++) {
            json_t *v = json_array_get(jn, i);
            bad = nn == AUDIT_ERASURE_NODES_MAX || !json_is_integer(v) ||
                  json_integer_value(v) <= 0;
            if (!bad)
                nodes[nn++] = (uint64_t)json_integer_value(v);
        }
        json_decref(o);
        if (!bad && version == 2)
            bad = audit_erasure_message_v2(sp, t, (uint64_t)idx,
                                           (uint64_t)del, nodes, nn, m,
                                           &mlen) != 0;
        else if (!bad) {
            audit_erasure_message(sp, t, (uint64_t)idx, (uint64_t)del, m);
            mlen = AUDIT_ERASURE_MESSAGE_BYTES;
        }
        if (bad) {
            rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                         "%s line %d is not a certificate of dossier "
                         "subject ledger (version or nodes)",
                         path, lineno);
            goto out;
        }
        if (crypto_sign_verify_detached(sig, m, mlen, pk) != 0) {
            rc = err_set(st, DOSSIER_INVALID_ARGUMENT,
                         "%s line %d is not signed by this cluster's audit "
                         "key: refusing to erase on its word",
                         path, lineno);
            goto out;
        }
        if (store_erasure_get(n->store, sp, &er, st) == 0) {
            /* Erased in the backup already, by this very erasure or a
             * later one; an earlier erasure does not count: the subject
             * may have been written again since. */
            int covered = er->raft_index >= (uint64_t)idx;
            dossier__store__v1__erasure_record__free_unpacked(er, NULL);
            if (covered) {
                (*skipped)++;
                continue;
            }
        }
        if ((rc = replay_one(n, sp, st)) != 0)
            goto out;
        (*erased)++;
    }
out:
    if (f)
        fclose(f);
    sodium_free(sk);
    return rc;
}

int backup_restore_finish(struct node *n, const char *data_dir,
                          struct dossier_status *st)
{
    char marker[PATH_CAP], ledger[PATH_CAP];
    size_t erased = 0, skipped = 0;
    int rc;

    snprintf(marker, sizeof(marker), "%s/" BACKUP_RESTORE_MARKER, data_dir);
    snprintf(ledger, sizeof(ledger), "%s/" BACKUP_RESTORE_LEDGER, data_dir);
    for (int i = 0; i < 600 && !(cluster_is_leader(n->cluster) &&
                                 cluster_keys_ready(n->cluster));
         i++)
        usleep(50000);
    if (!cluster_is_leader(n->cluster) || !cluster_keys_ready(n->cluster))
        return err_set(st, DOSSIER_UNAVAILABLE,
                       "restore: this node did not become the leader of its "
                       "one-node cluster with its keys open in 30 s");
    if (access(ledger, F_OK) == 0) {
        rc = replay_ledger(n, ledger, &erased, &skipped, st);
        if (rc)
            return rc;
        log_printf(LOG_INFO, "restore: replayed the erasure ledger: %zu "
                   "subjects erased again, %zu already erased in the backup",
                   erased, skipped);
        if (unlink(ledger) != 0)
            return err_set(st, DOSSIER_IO, "cannot remove %s: %s", ledger,
                           strerror(errno));
    } else {
        log_printf(LOG_WARN, "restore: no erasure ledger was given: subjects "
                   "erased after this backup was taken are back; erase them "
                   "again");
    }
    if (unlink(marker) != 0 || fu_fsync(data_dir) != 0)
        return err_set(st, DOSSIER_IO, "cannot remove %s: %s", marker,
                       strerror(errno));
    log_printf(LOG_INFO, "restore: complete");
    return 0;
}
