/* The node's log: one JSON object per line on stderr. Messages name events,
 * counts, paths and error texts, never personal data: no subject id, record
 * id or field value is ever passed to a log call. */
#ifndef DOSSIER_NODE_LOG_H
#define DOSSIER_NODE_LOG_H

#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the lowest level written (LOG_INFO by default). */
void log_set_level(enum log_level l);

/* Parses "debug", "info", "warn" or "error"; -1 otherwise. */
int log_level_parse(const char *name);

/* Writes one line {"ts":..., "level":..., "msg":...}; thread-safe. */
void log_printf(enum log_level l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Like log_printf, with the call's request id (16 bytes, the metadata
 * "dossier-request-id"; NULL: none) as "request_id" in hex. A write
 * forwarded from a follower keeps its id, so one grep follows it across
 * nodes. */
void log_call(enum log_level l, const uint8_t *request_id, const char *fmt,
              ...) __attribute__((format(printf, 3, 4)));

/* 1 if lines of level @l are written. */
int log_enabled(enum log_level l);

#endif
