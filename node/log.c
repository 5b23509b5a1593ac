/* JSON-lines logging to stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

static enum log_level min_level = LOG_INFO;
static const char *const names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level l)
{
    __atomic_store_n(&min_level, l, __ATOMIC_RELAXED); /* SIGHUP: any time */
}

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

int log_enabled(enum log_level l)
{
    return l >= __atomic_load_n(&min_level, __ATOMIC_RELAXED);
}

static void vlog(enum log_level l, const uint8_t *request_id,
                 const char *fmt, va_list ap)
{
    char msg[1024], ts[40], frac[8], rid[33];
    struct timeval tv;
    struct tm tm;
    json_t *o;
    char *line;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(frac, sizeof(frac), ".%03dZ", (int)(tv.tv_usec / 1000));
    strncat(ts, frac, sizeof(ts) - strlen(ts) - 1);
    o = json_pack("{s:s, s:s, s:s}", "ts", ts, "level", names[l], "msg", msg);
    if (o && request_id) {
        sodium_bin2hex(rid, sizeof(rid), request_id, 16);
        json_object_set_new(o, "request_id", json_string(rid));
    }
    line = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    if (line) {
        fprintf(stderr, "%s\n", line);
        free(line);
    } else {
        fprintf(stderr, "{\"level\":\"%s\",\"msg\":\"(unloggable)\"}\n",
                names[l]);
    }
    json_decref(o);
}

void log_printf(enum log_level l, const char *fmt, ...)
{
    va_list ap;
    if (!log_enabled(l))
        return;
    va_start(ap, fmt);
    vlog(l, NULL, fmt, ap);
    va_end(ap);
}

void log_call(enum log_level l, const uint8_t *request_id, const char *fmt,
              ...)
{
    va_list ap;
    if (!log_enabled(l))
        return;
    va_start(ap, fmt);
    vlog(l, request_id, fmt, ap);
    va_end(ap);
}
