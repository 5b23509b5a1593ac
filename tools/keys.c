/* The CLI's master key commands: key versions, rotation, and adding a
 * version to a key file. */
#include "keys.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keyfile.h"

/* Consecutive seconds a rotation being followed may go without a status
 * answer (a leader change takes a few) before the CLI gives up following. */
#define FOLLOW_UNAVAILABLE_S 60

json_t *json_from_keys_status(const struct dossier_keys_status *s)
{
    json_t *o = json_object(), *loaded = json_array(), *r = json_null();
    if (!o || !loaded)
        goto fail;
    for (size_t i = 0; i < s->n_loaded; i++)
        json_array_append_new(
            loaded, json_pack("{s:I,s:s}", "version",
                              (json_int_t)s->loaded[i].version, "key_id",
                              s->loaded[i].key_id));
    if (s->has_rotation) {
        r = json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:I}", "running",
                      s->rotation_running, "from_version",
                      (json_int_t)s->from_version, "to_version",
                      (json_int_t)s->to_version, "subjects",
                      (json_int_t)s->subjects, "rewrapped",
                      (json_int_t)s->rewrapped, "skipped",
                      (json_int_t)s->skipped, "started_ms",
                      (json_int_t)s->started_ms, "started_by", s->started_by,
                      "finished_ms", (json_int_t)s->finished_ms);
        if (!r)
            goto fail;
    }
    json_object_set_new(o, "node_id", json_integer((json_int_t)s->node_id));
    json_object_set_new(o, "active_version",
                        json_integer((json_int_t)s->active_version));
    json_object_set_new(o, "active_key_id", json_string(s->active_key_id));
    json_object_set_new(o, "loaded", loaded);
    json_object_set_new(o, "rotation", r);
    return o;
fail:
    json_decref(o);
    json_decref(loaded);
    json_decref(r);
    return NULL;
}

static int print(struct keys_cli *k, const struct dossier_keys_status *s)
{
    json_t *j = json_from_keys_status(s);
    if (!j || json_dumpf(j, stdout, k->json_flags) != 0) {
        json_decref(j);
        fprintf(stderr, "dossier: cannot print JSON\n");
        return 1;
    }
    fputc('\n', stdout);
    json_decref(j);
    return 0;
}

static int usage(const char *what)
{
    fprintf(stderr, "dossier: %s\n(see dossier --help)\n", what);
    return 2;
}

/* Follows the rotation to version @to until it is finished, printing
 * progress on stderr; the final status into @s. */
static int follow(struct keys_cli *k, uint32_t to,
                  struct dossier_keys_status *s)
{
    struct dossier_status st;
    uint64_t shown = (uint64_t)-1;
    int failing = 0;

    for (;;) {
        if (dossier_keys_status(k->client, NULL, s, &st) != 0) {
            if (st.code != DOSSIER_UNAVAILABLE &&
                st.code != DOSSIER_DEADLINE_EXCEEDED)
                return k->report(&st);
            if (++failing > FOLLOW_UNAVAILABLE_S * 2) {
                fprintf(stderr, "dossier: no node answers; the rotation goes "
                        "on without the CLI: follow it with dossier keys "
                        "status\n");
                return k->report(&st);
            }
            usleep(500000);
            continue;
        }
        failing = 0;
        if (!s->has_rotation || s->to_version != to)
            return usage("the rotation followed is gone (another began?)");
        if (!s->rotation_running)
            return 0;
        if (s->rewrapped + s->skipped != shown) {
            shown = s->rewrapped + s->skipped;
            fprintf(stderr, "rotating to master key version %u: %llu of "
                    "about %llu subject keys rewrapped\n", to,
                    (unsigned long long)s->rewrapped,
                    (unsigned long long)s->subjects);
        }
        usleep(500000);
    }
}

int keys_command(struct keys_cli *k, int argc, char **argv)
{
    struct dossier_keys_status s;
    struct dossier_status st;

    if (argc >= 2 && strcmp(argv[1], "status") == 0) {
        if (argc != 2)
            return usage("usage: keys status");
        if (dossier_keys_status(k->client, NULL, &s, &st) != 0)
            return k->report(&st);
        return print(k, &s);
    }
    if (argc >= 2 && strcmp(argv[1], "rotate") == 0) {
        static const struct option lo[] = {
            {"version", required_argument, NULL, 'v'},
            {"no-wait", no_argument, NULL, 'n'},
            {NULL, 0, NULL, 0},
        };
        unsigned long version = 0;
        int wait = 1, ch, rc;
        char *end;
        optind = 1;
        while ((ch = getopt_long(argc - 1, argv + 1, "", lo, NULL)) != -1) {
            if (ch == 'v') {
                errno = 0;
                version = strtoul(optarg, &end, 10);
                if (errno || *end || version == 0 || version > UINT32_MAX)
                    return usage("--version: give a key version (1 or more)");
            } else if (ch == 'n') {
                wait = 0;
            } else {
                return usage("usage: keys rotate [--version N] [--no-wait]");
            }
        }
        if (optind != argc - 1)
            return usage("usage: keys rotate [--version N] [--no-wait]");
        if (dossier_keys_rotate(k->client, NULL, (uint32_t)version, &s,
                                &st) != 0)
            return k->report(&st);
        if (wait && s.has_rotation && s.rotation_running) {
            fprintf(stderr, "rotating from master key version %u to %u\n",
                    s.from_version, s.to_version);
            if ((rc = follow(k, s.to_version, &s)) != 0)
                return rc;
            fprintf(stderr, "done: every wrapped key is under master key "
                    "version %u; once every node runs with it, version %u "
                    "may leave the key files\n",
                    s.active_version, s.from_version);
        }
        return print(k, &s);
    }
    return usage("usage: keys status | keys rotate [--version N] [--no-wait]");
}

int keys_add_version(const char *path)
{
    struct dossier_status st;
    uint32_t v;
    if (keyfile_add_version(path, &v, &st) != 0) {
        fprintf(stderr, "dossier: %s\n", st.message);
        return st.code == DOSSIER_PERMISSION_DENIED ? 7
               : st.code == DOSSIER_INVALID_ARGUMENT ? 5
                                                     : 1;
    }
    fprintf(stderr, "added master key version %u to %s; put the same line "
            "into every node's key file, send each node SIGHUP, then run "
            "dossier keys rotate\n", v, path);
    printf("%u\n", v);
    return 0;
}
