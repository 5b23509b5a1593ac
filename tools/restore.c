/* Restoring a backup into a data directory (see restore.h). */
#include "restore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "backupfmt.h"
#include "fileutil.h"

#define PATH_CAP 4096

static enum restore_result fail(char *err, size_t cap, enum restore_result r,
                                const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum restore_result fail(char *err, size_t cap, enum restore_result r,
                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return r;
}

/* Removes everything inside @dir (not @dir itself). */
static void empty_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d))) {
        char sub[PATH_CAP];
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            fu_join(sub, sizeof(sub), dir, e->d_name) == 0)
            fu_rmtree(sub);
    }
    closedir(d);
}

/* Makes every directory of relative path @rel's parents under @root. */
static int make_parents(const char *root, const char *rel)
{
    char path[PATH_CAP];
    if (fu_join(path, sizeof(path), root, rel) != 0)
        return -1;
    for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

/* @dir exists and is empty, or did not exist and was made (mode 0700). */
static int dir_usable(const char *dir)
{
    if (mkdir(dir, 0700) == 0)
        return 1;
    return errno == EEXIST && fu_dir_empty(dir);
}

/* Copies the ledger @from to @to, checking every line is a certificate;
 * the count into *@n. */
static enum restore_result copy_ledger(const char *from, const char *to,
                                       size_t *n, char *err, size_t cap)
{
    FILE *in = fopen(from, "r"), *out;
    char line[4096];
    int lineno = 0;

    *n = 0;
    if (!in)
        return fail(err, cap, RESTORE_IO, "cannot read the ledger %s: %s",
                    from, strerror(errno));
    out = fopen(to, "wx");
    if (!out) {
        fclose(in);
        return fail(err, cap, RESTORE_IO, "cannot write %s: %s", to,
                    strerror(errno));
    }
    while (fgets(line, sizeof(line), in)) {
        json_t *o;
        lineno++;
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        o = json_loads(line, 0, NULL);
        if (!o || !json_is_string(json_object_get(o, "pseudonym")) ||
            !json_is_string(json_object_get(o, "signature")) ||
            !json_is_integer(json_object_get(o, "raft_index"))) {
            json_decref(o);
            fclose(in);
            fclose(out);
            return fail(err, cap, RESTORE_BAD_INPUT,
                        "%s line %d is not a line of `dossier subject "
                        "ledger`",
                        from, lineno);
        }
        json_decref(o);
        fputs(line, out);
        if (line[strlen(line) - 1] != '\n')
            fputc('\n', out);
        (*n)++;
    }
    fclose(in);
    if (fflush(out) != 0 || fsync(fileno(out)) != 0 || fclose(out) != 0)
        return fail(err, cap, RESTORE_IO, "cannot write %s", to);
    return RESTORE_OK;
}

static enum restore_result restore_files(const char *backup,
                                         const char *data_dir, json_t *files,
                                         uint64_t *bytes, char *err,
                                         size_t cap)
{
    size_t i;
    json_t *f;

    *bytes = 0;
    json_array_foreach(files, i, f) {
        const char *rel = NULL, *hex = NULL;
        json_int_t want = 0;
        char from[PATH_CAP], to[PATH_CAP], got_hex[65];
        uint8_t h[32];
        uint64_t size;
        if (json_unpack(f, "{s:s, s:I, s:s}", "path", &rel, "bytes", &want,
                        "sha256", &hex) != 0 ||
            strstr(rel, "..") || rel[0] == '/' ||
            strcmp(rel, BACKUP_MANIFEST) == 0)
            return fail(err, cap, RESTORE_BAD_INPUT,
                        "the manifest of %s has a bad file entry", backup);
        if (fu_join(from, sizeof(from), backup, rel) != 0 ||
            fu_join(to, sizeof(to), data_dir, rel) != 0 ||
            make_parents(data_dir, rel) != 0)
            return fail(err, cap, RESTORE_IO, "cannot make the directory of "
                        "%s in %s", rel, data_dir);
        if (fu_copy(from, to, 0600, h, &size) != 0)
            return fail(err, cap, RESTORE_IO, "cannot copy %s: %s", from,
                        strerror(errno));
        sodium_bin2hex(got_hex, sizeof(got_hex), h, sizeof(h));
        if (size != (uint64_t)want || strcmp(got_hex, hex) != 0)
            return fail(err, cap, RESTORE_BAD_INPUT,
                        "backup file %s is damaged: its size or SHA-256 is "
                        "not the manifest's",
                        rel);
        *bytes += size;
    }
    return RESTORE_OK;
}

enum restore_result restore_backup(const char *backup, const char *data_dir,
                                   const char *ledger, json_t **summary,
                                   char *err, size_t cap)
{
    char path[PATH_CAP];
    json_t *m, *files;
    const char *name = NULL;
    json_int_t node = 0, applied = 0;
    int format = 0;
    uint64_t bytes = 0;
    size_t n_ledger = 0;
    enum restore_result r;
    FILE *mk;

    *summary = NULL;
    if (fu_join(path, sizeof(path), backup, BACKUP_MANIFEST) != 0)
        return fail(err, cap, RESTORE_BAD_INPUT, "path too long");
    m = json_load_file(path, 0, NULL);
    if (!m || json_unpack(m, "{s:i, s:s, s:I, s:I, s:o}", "format", &format,
                          "name", &name, "node_id", &node, "applied_index",
                          &applied, "files", &files) != 0 ||
        !json_is_array(files)) {
        json_decref(m);
        return fail(err, cap, RESTORE_BAD_INPUT,
                    "%s is not a Dossier backup (no readable %s)", backup,
                    BACKUP_MANIFEST);
    }
    if (format != BACKUP_FORMAT) {
        json_decref(m);
        return fail(err, cap, RESTORE_BAD_INPUT,
                    "%s is a backup of format %d; this dossier reads format "
                    "%d",
                    backup, format, BACKUP_FORMAT);
    }
    if (!dir_usable(data_dir)) {
        json_decref(m);
        return fail(err, cap, RESTORE_NOT_EMPTY,
                    "%s is not empty (or cannot be made): restore into a "
                    "new data directory",
                    data_dir);
    }
    r = restore_files(backup, data_dir, files, &bytes, err, cap);
    if (r == RESTORE_OK && ledger) {
        if (fu_join(path, sizeof(path), data_dir, BACKUP_RESTORE_LEDGER) != 0)
            r = fail(err, cap, RESTORE_IO, "path too long");
        else
            r = copy_ledger(ledger, path, &n_ledger, err, cap);
    }
    if (r == RESTORE_OK) {
        /* Last: the marker makes the node act on the restore. */
        if (fu_join(path, sizeof(path), data_dir, BACKUP_RESTORE_MARKER) != 0 ||
            !(mk = fopen(path, "wx")))
            r = fail(err, cap, RESTORE_IO, "cannot write the restore marker "
                     "in %s", data_dir);
        else if (fprintf(mk, "backup %s\nledger %s\n", name,
                         ledger ? "yes" : "no") < 0 ||
                 fflush(mk) != 0 || fsync(fileno(mk)) != 0 ||
                 fclose(mk) != 0 || fu_fsync(data_dir) != 0)
            r = fail(err, cap, RESTORE_IO, "cannot write the restore marker "
                     "in %s", data_dir);
    }
    if (r != RESTORE_OK) {
        empty_dir(data_dir);
        json_decref(m);
        return r;
    }
    *summary = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "restored",
                         name, "data_dir", data_dir, "from_node",
                         node, "applied_index", applied, "files",
                         (json_int_t)json_array_size(files), "bytes",
                         (json_int_t)bytes, "ledger_entries",
                         (json_int_t)n_ledger);
    /* Backups made before the manifest named them do not say. */
    if (*summary && json_is_array(json_object_get(m, "master_keys")))
        json_object_set(*summary, "master_keys",
                        json_object_get(m, "master_keys"));
    json_decref(m);
    return RESTORE_OK;
}
