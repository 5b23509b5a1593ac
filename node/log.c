/* JSON-lines logging to stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

#include <jansson.h>

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

void log_printf(enum log_level l, const char *fmt, ...)
{
    char msg[1024], ts[40], frac[8];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    json_t *o;
    char *line;

    if (l < __atomic_load_n(&min_level, __ATOMIC_RELAXED))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(frac, sizeof(frac), ".%03dZ", (int)(tv.tv_usec / 1000));
    strncat(ts, frac, sizeof(ts) - strlen(ts) - 1);
    o = json_pack("{s:s, s:s, s:s}", "ts", ts, "level", names[l], "msg", msg);
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
