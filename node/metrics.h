/* The node's Prometheus metrics: a registry of labelled counters and
 * histograms updated on hot paths from any thread, gauges read at scrape
 * time through collectors, the text exposition format 0.0.4, and an HTTP
 * exporter serving it on GET /metrics.
 *
 * Metrics are registered at start-up and live as long as the registry; a
 * handle returned by registration needs no release. Updates take one mutex
 * per metric, held for a hash lookup and an add, so a scrape sees every
 * series in a consistent state (a histogram's _count equals its +Inf
 * bucket) and no update is lost.
 *
 * Names follow Prometheus: metric names match [a-zA-Z_:][a-zA-Z0-9_:]*,
 * label names [a-zA-Z_][a-zA-Z0-9_]* and do not start with "__"; a
 * histogram may not have a label named "le". */
#ifndef DOSSIER_NODE_METRICS_H
#define DOSSIER_NODE_METRICS_H

#include <stddef.h>

struct metrics;
struct metrics_counter;
struct metrics_histogram;
struct metrics_writer;
struct metrics_http;

/* Default histogram bounds for latencies, in seconds: 100 us to 10 s. */
extern const double metrics_latency_bounds[];
extern const int metrics_latency_n_bounds;

/* A new, empty registry, or NULL when out of memory. */
struct metrics *metrics_new(void);

/* Frees @m with all its metrics; NULL is a no-op. Any exporter serving @m
 * must have been stopped, and no thread may still update its metrics. */
void metrics_free(struct metrics *m);

/* Registers a counter @name with text @help (copied; NULL for none) whose
 * series are told apart by @n_labels labels named @label_names (copied;
 * NULL when @n_labels is 0). A counter without labels shows 0 from the
 * start; a labelled series appears on its first update.
 *
 * Returns the counter, owned by @m, or NULL when the name or a label name
 * is invalid, a label name repeats, the name is taken by another metric
 * (counting a histogram's _bucket, _sum and _count), or memory runs out. */
struct metrics_counter *metrics_counter(struct metrics *m, const char *name,
                                        const char *help, int n_labels,
                                        const char *const *label_names);

/* Adds @delta to the series of @c labelled @label_values (borrowed;
 * @n_labels strings in the order of registration, NULL when there are
 * none), creating it on first use. A negative or NaN @delta is ignored,
 * as counters only go up; so is an update when memory runs out to create
 * its series. Thread-safe. */
void metrics_counter_add(struct metrics_counter *c,
                         const char *const *label_values, double delta);

/* Registers a histogram @name as metrics_counter() does, with @n_bounds
 * upper bucket bounds @bounds (copied; strictly increasing and finite, the
 * +Inf bucket is implicit; metrics_latency_bounds for latencies). Returns
 * NULL on the errors of metrics_counter() and for bad bounds. */
struct metrics_histogram *metrics_histogram(struct metrics *m,
                                            const char *name,
                                            const char *help, int n_labels,
                                            const char *const *label_names,
                                            const double *bounds,
                                            int n_bounds);

/* Counts @value in the series of @h labelled @label_values (borrowed, as
 * for metrics_counter_add()): in the first bucket whose bound is >= @value
 * (or +Inf), in _sum and in _count. Thread-safe. */
void metrics_histogram_observe(struct metrics_histogram *h,
                               const char *const *label_values,
                               double value);

/* Called on every scrape, on the exporter's thread, to write values read
 * at that moment with metrics_write(). It must be thread-safe towards the
 * rest of the node and must not register metrics or collectors. */
typedef void (*metrics_collect_fn)(struct metrics_writer *w, void *arg);

/* Adds collector @fn with @arg (borrowed; must outlive @m) to @m;
 * collectors run in the order they were added, after the registered
 * metrics. Returns 0, or -1 when out of memory. */
int metrics_add_collector(struct metrics *m, metrics_collect_fn fn,
                          void *arg);

/* Writes one sample of metric @name of @type ("gauge" or "counter") with
 * @help (NULL for none) and @n_labels labels (@label_names and
 * @label_values, all borrowed). # HELP and # TYPE lines are written once,
 * before the first sample of a name; the samples of one name must be
 * written one after the other. A sample is dropped when its name or a
 * label name is invalid, its type is neither, or its name was already
 * written by a registered metric or earlier (not just before), as
 * Prometheus would reject the whole scrape for it. */
void metrics_write(struct metrics_writer *w, const char *name,
                   const char *type, const char *help, int n_labels,
                   const char *const *label_names,
                   const char *const *label_values, double value);

/* Renders @m in the Prometheus text format 0.0.4 into *@out, which the
 * caller frees with free() (NUL-terminated; *@len excludes the NUL):
 * registered metrics in the order of registration, series in the order of
 * their creation, then the collectors' samples. Returns 0, or -1 when out
 * of memory (then *@out and *@len are untouched). */
int metrics_render(struct metrics *m, char **out, size_t *len);

/* Starts serving @m (borrowed; must outlive the exporter) over HTTP on the
 * IPv4 address @host (a literal such as "127.0.0.1") and TCP @port (0 for
 * any free port), from a thread of its own: GET (or HEAD) /metrics answers
 * 200 with the rendered text, other paths 404, other methods 405.
 *
 * Returns the exporter, or NULL with a message in @err (@err_len bytes,
 * NUL-terminated) naming host:port and the cause, e.g. the OS error of a
 * failed bind. */
struct metrics_http *metrics_http_start(struct metrics *m, const char *host,
                                        int port, char *err, size_t err_len);

/* The TCP port @h listens on (the one chosen when started with port 0). */
int metrics_http_port(const struct metrics_http *h);

/* Stops serving, waiting for a scrape in progress, and frees @h; NULL is a
 * no-op. */
void metrics_http_stop(struct metrics_http *h);

#endif
