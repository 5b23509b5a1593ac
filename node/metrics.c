/* Prometheus metrics: the registry, the text exposition format and the
 * HTTP exporter (libmicrohttpd). See metrics.h for the contract. */
#include "metrics.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "log.h"

const double metrics_latency_bounds[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10,
};
const int metrics_latency_n_bounds =
    (int)(sizeof(metrics_latency_bounds) / sizeof(metrics_latency_bounds[0]));

/* Hash buckets of a family when made; the table doubles when it holds as
 * many series as buckets. */
#define FAMILY_TABLE_INITIAL 8
/* Room for any double printed by number_format(). */
#define NUMBER_TEXT_BYTES 32

enum family_kind { FAMILY_COUNTER, FAMILY_HISTOGRAM };

/* One combination of label values of a family. */
struct series {
    struct series *hnext; /* next in the same hash bucket */
    struct series *onext; /* next in the order of creation */
    uint64_t hash;
    char **values;        /* the family's n_labels values, owned */
    double value;         /* a counter's total, or a histogram's _sum */
    uint64_t buckets[];   /* histogram: n_bounds + 1 counts, the last for
                           * +Inf; per bucket, not cumulative */
};

/* A registered metric with all its series. */
struct family {
    struct family *next; /* in the registry, in the order of registration */
    enum family_kind kind;
    char *name;
    char *help;          /* NULL for none */
    int n_labels;
    char **label_names;
    int n_bounds;        /* histogram only */
    double *bounds;
    char **bound_texts;  /* the bounds as "le" values, printed once */

    /* Guards everything below: held by updates and by a scrape. */
    pthread_mutex_t lock;
    struct series **table;
    size_t table_size;   /* a power of two */
    size_t n_series;
    struct series *first, *last;
};

/* The handles are families; a family is their first member, so a handle
 * and its family share one address and one allocation. */
struct metrics_counter {
    struct family family;
};

struct metrics_histogram {
    struct family family;
};

struct collector {
    struct collector *next;
    metrics_collect_fn fn;
    void *arg;
};

struct metrics {
    /* Guards both lists. A scrape holds it throughout, so two scrapes
     * render one after the other and collectors never run concurrently
     * with each other. Updates never take it. */
    pthread_mutex_t lock;
    struct family *first, *last;
    struct collector *collectors, *collectors_last;
};

/* The output of one scrape. */
struct metrics_writer {
    struct metrics *m;
    char *buf;
    size_t len, cap;
    int failed;     /* out of memory: the output is incomplete */
    char **names;   /* names written by collectors, in order */
    size_t n_names, cap_names;
};

/* ------------------------------------------------------------------------
 * Names and numbers. */

static int char_is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int char_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Whether @s is a metric name, or a label name when !@colon. Spelled out
 * rather than with <ctype.h>, whose classes follow the locale. */
static int name_is_valid(const char *s, int colon)
{
    if (!s || !*s)
        return 0;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        if (!(char_is_alpha(c) || (colon && c == ':') ||
              (i > 0 && char_is_digit(c))))
            return 0;
    }
    return 1;
}

/* Whether @n label names @names are valid and distinct; "__" starts names
 * Prometheus reserves, and "le" is a histogram's own label. */
static int label_names_are_valid(int n, const char *const *names,
                                 int histogram)
{
    if (n < 0 || (n > 0 && !names))
        return 0;
    for (int i = 0; i < n; i++) {
        if (!name_is_valid(names[i], 0) || strncmp(names[i], "__", 2) == 0)
            return 0;
        if (histogram && strcmp(names[i], "le") == 0)
            return 0;
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return 0;
    }
    return 1;
}

/* Whether @n bounds @bounds are finite and strictly increasing. */
static int bounds_are_valid(int n, const double *bounds)
{
    if (n < 0 || (n > 0 && !bounds))
        return 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return 0;
    }
    return 1;
}

/* Prints @v into @out as Prometheus reads it: "+Inf", "-Inf", "NaN",
 * integers below 2^53-ish in full without exponent, other numbers in the
 * shortest form that reads back as the same double (so 0.1 is "0.1", not
 * "0.10000000000000001"). */
static void number_format(char out[NUMBER_TEXT_BYTES], double v)
{
    if (isnan(v)) {
        strcpy(out, "NaN");
    } else if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
    } else if (v == trunc(v) && fabs(v) < 1e17) {
        snprintf(out, NUMBER_TEXT_BYTES, "%.0f", v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, NUMBER_TEXT_BYTES, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

/* Whether a family @kind named @base writes samples named @name: a
 * histogram writes _bucket, _sum and _count besides its own name, which
 * its # HELP and # TYPE lines use. */
static int name_is_claimed(enum family_kind kind, const char *base,
                           const char *name)
{
    size_t n = strlen(base);
    if (strncmp(name, base, n) != 0)
        return 0;
    if (name[n] == '\0')
        return 1;
    return kind == FAMILY_HISTOGRAM &&
           (strcmp(name + n, "_bucket") == 0 ||
            strcmp(name + n, "_sum") == 0 || strcmp(name + n, "_count") == 0);
}

/* Whether families @a and @b would write samples of one name. No suffix
 * of a histogram ends another, so two sets of names meet only when one
 * holds the other's base name. */
static int families_clash(const struct family *a, const struct family *b)
{
    return name_is_claimed(a->kind, a->name, b->name) ||
           name_is_claimed(b->kind, b->name, a->name);
}

/* ------------------------------------------------------------------------
 * Series. */

/* FNV-1a over the values, each with its terminating NUL so that ("ab","")
 * and ("a","b") differ. */
static uint64_t labels_hash(int n, const char *const *values)
{
    uint64_t h = 14695981039346656037ull;
    for (int i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)values[i];
        do {
            h ^= *p;
            h *= 1099511628211ull;
        } while (*p++);
    }
    return h;
}

static int labels_equal(int n, char *const *a, const char *const *b)
{
    for (int i = 0; i < n; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 0;
    return 1;
}

static void strings_free(char **s, int n)
{
    if (!s)
        return;
    for (int i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

/* Copies of @n strings @s, or NULL when out of memory (or when @n is 0:
 * callers never read them then). */
static char **strings_copy(int n, const char *const *s)
{
    char **out;
    if (n == 0)
        return NULL;
    out = calloc((size_t)n, sizeof(*out));
    if (!out)
        return NULL;
    for (int i = 0; i < n; i++) {
        out[i] = strdup(s[i]);
        if (!out[i]) {
            strings_free(out, i);
            return NULL;
        }
    }
    return out;
}

/* Doubles @f's hash table; keeps the old one when memory runs out, as
 * longer chains only cost time. Called with f->lock held. */
static void family_grow(struct family *f)
{
    size_t size = f->table_size * 2;
    struct series **table = calloc(size, sizeof(*table));
    if (!table)
        return;
    for (struct series *s = f->first; s; s = s->onext) {
        struct series **head = &table[s->hash & (size - 1)];
        s->hnext = *head;
        *head = s;
    }
    free(f->table);
    f->table = table;
    f->table_size = size;
}

/* Makes the series of @f labelled @values (copied), or NULL when out of
 * memory. Called with f->lock held, or before @f is published. */
static struct series *family_add_series(struct family *f,
                                        const char *const *values,
                                        uint64_t hash)
{
    size_t n_buckets =
        f->kind == FAMILY_HISTOGRAM ? (size_t)f->n_bounds + 1 : 0;
    struct series *s = calloc(1, sizeof(*s) + n_buckets * sizeof(uint64_t));
    struct series **head;
    if (!s)
        return NULL;
    s->hash = hash;
    s->values = strings_copy(f->n_labels, values);
    if (f->n_labels > 0 && !s->values) {
        free(s);
        return NULL;
    }
    head = &f->table[hash & (f->table_size - 1)];
    s->hnext = *head;
    *head = s;
    if (f->last)
        f->last->onext = s;
    else
        f->first = s;
    f->last = s;
    if (++f->n_series >= f->table_size)
        family_grow(f);
    return s;
}

/* The series of @f labelled @values (borrowed), made on first use; NULL
 * when out of memory. Called with f->lock held. */
static struct series *family_series(struct family *f,
                                    const char *const *values)
{
    uint64_t hash;
    assert(f->n_labels == 0 || values);
    for (int i = 0; i < f->n_labels; i++)
        assert(values[i]);
    hash = labels_hash(f->n_labels, values);
    for (struct series *s = f->table[hash & (f->table_size - 1)]; s;
         s = s->hnext)
        if (s->hash == hash && labels_equal(f->n_labels, s->values, values))
            return s;
    return family_add_series(f, values, hash);
}

/* ------------------------------------------------------------------------
 * Registration. */

static void family_free(struct family *f)
{
    struct series *s = f->first;
    while (s) {
        struct series *next = s->onext;
        strings_free(s->values, f->n_labels);
        free(s);
        s = next;
    }
    free(f->table);
    pthread_mutex_destroy(&f->lock);
    strings_free(f->bound_texts, f->n_bounds);
    free(f->bounds);
    strings_free(f->label_names, f->n_labels);
    free(f->help);
    free(f->name);
    free(f);
}

/* Copies @n bounds @bounds into @f, with their "le" texts. */
static int family_set_bounds(struct family *f, int n, const double *bounds)
{
    f->n_bounds = n;
    if (n == 0)
        return 0;
    f->bounds = malloc((size_t)n * sizeof(*f->bounds));
    f->bound_texts = calloc((size_t)n, sizeof(*f->bound_texts));
    if (!f->bounds || !f->bound_texts)
        return -1;
    memcpy(f->bounds, bounds, (size_t)n * sizeof(*f->bounds));
    for (int i = 0; i < n; i++) {
        char text[NUMBER_TEXT_BYTES];
        number_format(text, bounds[i]);
        f->bound_texts[i] = strdup(text);
        if (!f->bound_texts[i])
            return -1;
    }
    return 0;
}

/* A new family of @size bytes (a handle embedding it) with copies of the
 * arguments, not yet in any registry; NULL when out of memory. A family
 * without labels gets its one series now, so it shows 0 from the start. */
static struct family *family_new(size_t size, enum family_kind kind,
                                 const char *name, const char *help,
                                 int n_labels, const char *const *label_names,
                                 const double *bounds, int n_bounds)
{
    struct family *f = calloc(1, size);
    if (!f)
        return NULL;
    f->kind = kind;
    f->n_labels = n_labels;
    pthread_mutex_init(&f->lock, NULL);
    f->table_size = FAMILY_TABLE_INITIAL;
    f->table = calloc(f->table_size, sizeof(*f->table));
    f->name = strdup(name);
    f->help = help ? strdup(help) : NULL;
    f->label_names = strings_copy(n_labels, label_names);
    if (!f->table || !f->name || (help && !f->help) ||
        (n_labels > 0 && !f->label_names) ||
        family_set_bounds(f, n_bounds, bounds) != 0 ||
        (n_labels == 0 && !family_series(f, NULL))) {
        family_free(f);
        return NULL;
    }
    return f;
}

/* Adds @f to @m unless its names clash with a registered family; frees it
 * and returns -1 if they do. */
static int metrics_link(struct metrics *m, struct family *f)
{
    pthread_mutex_lock(&m->lock);
    for (struct family *g = m->first; g; g = g->next) {
        if (families_clash(f, g)) {
            pthread_mutex_unlock(&m->lock);
            family_free(f);
            return -1;
        }
    }
    if (m->last)
        m->last->next = f;
    else
        m->first = f;
    m->last = f;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

struct metrics *metrics_new(void)
{
    struct metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    while (m->first) {
        struct family *next = m->first->next;
        family_free(m->first);
        m->first = next;
    }
    while (m->collectors) {
        struct collector *next = m->collectors->next;
        free(m->collectors);
        m->collectors = next;
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

struct metrics_counter *metrics_counter(struct metrics *m, const char *name,
                                        const char *help, int n_labels,
                                        const char *const *label_names)
{
    struct family *f;
    assert(m);
    if (!name_is_valid(name, 1) ||
        !label_names_are_valid(n_labels, label_names, 0))
        return NULL;
    f = family_new(sizeof(struct metrics_counter), FAMILY_COUNTER, name, help,
                   n_labels, label_names, NULL, 0);
    if (!f || metrics_link(m, f) != 0)
        return NULL;
    return (struct metrics_counter *)f;
}

struct metrics_histogram *metrics_histogram(struct metrics *m,
                                            const char *name,
                                            const char *help, int n_labels,
                                            const char *const *label_names,
                                            const double *bounds,
                                            int n_bounds)
{
    struct family *f;
    assert(m);
    if (!name_is_valid(name, 1) ||
        !label_names_are_valid(n_labels, label_names, 1) ||
        !bounds_are_valid(n_bounds, bounds))
        return NULL;
    f = family_new(sizeof(struct metrics_histogram), FAMILY_HISTOGRAM, name,
                   help, n_labels, label_names, bounds, n_bounds);
    if (!f || metrics_link(m, f) != 0)
        return NULL;
    return (struct metrics_histogram *)f;
}

int metrics_add_collector(struct metrics *m, metrics_collect_fn fn,
                          void *arg)
{
    struct collector *c;
    assert(m && fn);
    c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_lock(&m->lock);
    if (m->collectors_last)
        m->collectors_last->next = c;
    else
        m->collectors = c;
    m->collectors_last = c;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

/* ------------------------------------------------------------------------
 * Updates: the hot path. */

void metrics_counter_add(struct metrics_counter *c,
                         const char *const *label_values, double delta)
{
    struct family *f = &c->family;
    struct series *s;
    if (!(delta >= 0)) /* also false for NaN */
        return;
    pthread_mutex_lock(&f->lock);
    s = family_series(f, label_values);
    if (s)
        s->value += delta;
    pthread_mutex_unlock(&f->lock);
}

/* The bucket of @value among @n bounds: the first bound >= @value, or @n
 * (+Inf), where NaN lands too. */
static int bucket_index(const double *bounds, int n, double value)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (value <= bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return isnan(value) ? n : lo;
}

void metrics_histogram_observe(struct metrics_histogram *h,
                               const char *const *label_values, double value)
{
    struct family *f = &h->family;
    int i = bucket_index(f->bounds, f->n_bounds, value);
    struct series *s;
    pthread_mutex_lock(&f->lock);
    s = family_series(f, label_values);
    if (s) {
        s->buckets[i]++;
        s->value += value;
    }
    pthread_mutex_unlock(&f->lock);
}

/* ------------------------------------------------------------------------
 * The text format. */

/* Makes room for @n more bytes in @w; 0, or -1 (and @w failed). */
static int writer_reserve(struct metrics_writer *w, size_t n)
{
    size_t cap;
    char *buf;
    if (w->failed)
        return -1;
    if (w->cap - w->len >= n)
        return 0;
    cap = w->cap ? w->cap : 4096;
    while (cap - w->len < n)
        cap *= 2;
    buf = realloc(w->buf, cap);
    if (!buf) {
        w->failed = 1;
        return -1;
    }
    w->buf = buf;
    w->cap = cap;
    return 0;
}

static void writer_putn(struct metrics_writer *w, const char *s, size_t n)
{
    if (writer_reserve(w, n) != 0)
        return;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void writer_puts(struct metrics_writer *w, const char *s)
{
    writer_putn(w, s, strlen(s));
}

/* Writes @s escaped as the format asks: backslash and newline always, the
 * double quote inside label values (@quoted) only. */
static void writer_escaped(struct metrics_writer *w, const char *s,
                           int quoted)
{
    for (; *s; s++) {
        if (*s == '\\')
            writer_puts(w, "\\\\");
        else if (*s == '\n')
            writer_puts(w, "\\n");
        else if (*s == '"' && quoted)
            writer_puts(w, "\\\"");
        else
            writer_putn(w, s, 1);
    }
}

static void writer_number(struct metrics_writer *w, double v)
{
    char text[NUMBER_TEXT_BYTES];
    number_format(text, v);
    writer_puts(w, text);
}

static void writer_count(struct metrics_writer *w, uint64_t v)
{
    char text[NUMBER_TEXT_BYTES];
    snprintf(text, sizeof(text), "%" PRIu64, v);
    writer_puts(w, text);
}

/* "# HELP name help" (when there is a help text) and "# TYPE name type". */
static void writer_header(struct metrics_writer *w, const char *name,
                          const char *type, const char *help)
{
    if (help && *help) {
        writer_puts(w, "# HELP ");
        writer_puts(w, name);
        writer_puts(w, " ");
        writer_escaped(w, help, 0);
        writer_puts(w, "\n");
    }
    writer_puts(w, "# TYPE ");
    writer_puts(w, name);
    writer_puts(w, " ");
    writer_puts(w, type);
    writer_puts(w, "\n");
}

/* Writes "name<suffix>{labels[,le="<le>"]} " up to the value: the labels
 * are @n names and values, and "le" follows them when @le is not NULL. */
static void writer_sample_start(struct metrics_writer *w, const char *name,
                                const char *suffix, int n,
                                const char *const *names,
                                const char *const *values, const char *le)
{
    writer_puts(w, name);
    writer_puts(w, suffix);
    if (n > 0 || le) {
        writer_puts(w, "{");
        for (int i = 0; i < n; i++) {
            if (i > 0)
                writer_puts(w, ",");
            writer_puts(w, names[i]);
            writer_puts(w, "=\"");
            writer_escaped(w, values[i], 1);
            writer_puts(w, "\"");
        }
        if (le) {
            writer_puts(w, n > 0 ? ",le=\"" : "le=\"");
            writer_puts(w, le);
            writer_puts(w, "\"");
        }
        writer_puts(w, "}");
    }
    writer_puts(w, " ");
}

/* The _bucket, _sum and _count lines of histogram series @s of @f. */
static void histogram_render_series(struct metrics_writer *w,
                                    const struct family *f,
                                    const struct series *s)
{
    const char *const *names = (const char *const *)f->label_names;
    const char *const *values = (const char *const *)s->values;
    uint64_t total = 0;
    for (int i = 0; i <= f->n_bounds; i++) {
        total += s->buckets[i];
        writer_sample_start(w, f->name, "_bucket", f->n_labels, names, values,
                            i < f->n_bounds ? f->bound_texts[i] : "+Inf");
        writer_count(w, total);
        writer_puts(w, "\n");
    }
    writer_sample_start(w, f->name, "_sum", f->n_labels, names, values, NULL);
    writer_number(w, s->value);
    writer_puts(w, "\n");
    writer_sample_start(w, f->name, "_count", f->n_labels, names, values,
                        NULL);
    writer_count(w, total);
    writer_puts(w, "\n");
}

/* Writes family @f; one that has no series yet writes nothing. */
static void family_render(struct metrics_writer *w, struct family *f)
{
    pthread_mutex_lock(&f->lock);
    if (f->first)
        writer_header(w, f->name,
                      f->kind == FAMILY_COUNTER ? "counter" : "histogram",
                      f->help);
    for (const struct series *s = f->first; s; s = s->onext) {
        if (f->kind == FAMILY_HISTOGRAM) {
            histogram_render_series(w, f, s);
            continue;
        }
        writer_sample_start(w, f->name, "", f->n_labels,
                            (const char *const *)f->label_names,
                            (const char *const *)s->values, NULL);
        writer_number(w, s->value);
        writer_puts(w, "\n");
    }
    pthread_mutex_unlock(&f->lock);
}

/* Whether a sample named @name may be written now, and whether it starts
 * a new name (*@first); remembers the name. Called with w->m->lock held. */
static int writer_accept_name(struct metrics_writer *w, const char *name,
                              int *first)
{
    char *copy;
    if (w->n_names > 0 && strcmp(w->names[w->n_names - 1], name) == 0) {
        *first = 0;
        return 1;
    }
    for (const struct family *f = w->m->first; f; f = f->next)
        if (name_is_claimed(f->kind, f->name, name))
            return 0;
    for (size_t i = 0; i < w->n_names; i++)
        if (strcmp(w->names[i], name) == 0)
            return 0;
    if (w->n_names == w->cap_names) {
        size_t cap = w->cap_names ? w->cap_names * 2 : 16;
        char **names = realloc(w->names, cap * sizeof(*names));
        if (!names) {
            w->failed = 1;
            return 0;
        }
        w->names = names;
        w->cap_names = cap;
    }
    copy = strdup(name);
    if (!copy) {
        w->failed = 1;
        return 0;
    }
    w->names[w->n_names++] = copy;
    *first = 1;
    return 1;
}

void metrics_write(struct metrics_writer *w, const char *name,
                   const char *type, const char *help, int n_labels,
                   const char *const *label_names,
                   const char *const *label_values, double value)
{
    int first;
    if (!name_is_valid(name, 1) || !type ||
        (strcmp(type, "gauge") != 0 && strcmp(type, "counter") != 0) ||
        !label_names_are_valid(n_labels, label_names, 0) ||
        (n_labels > 0 && !label_values))
        return;
    for (int i = 0; i < n_labels; i++)
        if (!label_values[i])
            return;
    if (!writer_accept_name(w, name, &first))
        return;
    if (first)
        writer_header(w, name, type, help);
    writer_sample_start(w, name, "", n_labels, label_names, label_values,
                        NULL);
    writer_number(w, value);
    writer_puts(w, "\n");
}

int metrics_render(struct metrics *m, char **out, size_t *len)
{
    struct metrics_writer w = {.m = m};
    pthread_mutex_lock(&m->lock);
    for (struct family *f = m->first; f; f = f->next)
        family_render(&w, f);
    for (struct collector *c = m->collectors; c; c = c->next)
        c->fn(&w, c->arg);
    pthread_mutex_unlock(&m->lock);
    strings_free(w.names, (int)w.n_names);
    if (writer_reserve(&w, 1) != 0) {
        free(w.buf);
        return -1;
    }
    w.buf[w.len] = '\0';
    *out = w.buf;
    *len = w.len;
    return 0;
}

/* ------------------------------------------------------------------------
 * The HTTP exporter. */

#define HTTP_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* A scrape is one short request; these bound what a stuck or hostile
 * client can hold. */
#define HTTP_CONNECTION_LIMIT 16u
#define HTTP_TIMEOUT_SECONDS 10u
#define HTTP_MESSAGE_BYTES 256

struct metrics_http {
    struct metrics *m;
    struct MHD_Daemon *daemon;
    int port;
    /* libmicrohttpd reports its errors through http_log(); while the
     * daemon starts, the last one is kept: a failed start logs its cause
     * just before giving up. */
    pthread_mutex_t log_lock;
    int starting;                         /* guarded by log_lock */
    char start_error[HTTP_MESSAGE_BYTES]; /* guarded by log_lock */
};

static void http_log(void *arg, const char *fmt, va_list ap)
{
    struct metrics_http *h = arg;
    char msg[HTTP_MESSAGE_BYTES];
    size_t n;
    int starting;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    pthread_mutex_lock(&h->log_lock);
    starting = h->starting;
    if (starting)
        memcpy(h->start_error, msg, n + 1);
    pthread_mutex_unlock(&h->log_lock);
    if (!starting)
        log_printf(LOG_WARN, "metrics exporter: %s", msg);
}

/* Queues @status with a body of @len bytes at @body; @mode says whether
 * libmicrohttpd frees it (MHD_RESPMEM_MUST_FREE) or it is static. */
static enum MHD_Result http_reply(struct MHD_Connection *conn,
                                  unsigned int status, char *body, size_t len,
                                  enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    enum MHD_Result rc;
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            status == MHD_HTTP_OK
                                ? HTTP_CONTENT_TYPE
                                : "text/plain; charset=utf-8");
    rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* A short static text answer. */
static enum MHD_Result http_reply_text(struct MHD_Connection *conn,
                                       unsigned int status, const char *text)
{
    /* PERSISTENT: libmicrohttpd neither frees nor writes the buffer. */
    return http_reply(conn, status, (char *)text, strlen(text),
                      MHD_RESPMEM_PERSISTENT);
}

/* Answers every request at once, on its headers: no route reads a body. */
static enum MHD_Result http_answer(void *cls, struct MHD_Connection *conn,
                                   const char *url, const char *method,
                                   const char *version,
                                   const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    struct metrics_http *h = cls;
    char *body;
    size_t len;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return http_reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                               "method not allowed: use GET\n");
    if (strcmp(url, "/metrics") != 0)
        return http_reply_text(conn, MHD_HTTP_NOT_FOUND,
                               "not found: metrics are at /metrics\n");
    if (metrics_render(h->m, &body, &len) != 0)
        return http_reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                               "out of memory\n");
    return http_reply(conn, MHD_HTTP_OK, body, len, MHD_RESPMEM_MUST_FREE);
}

/* The cause of a failed start for a human: libmicrohttpd's message, its
 * "Failed to bind to port N: " dropped since ours names the address;
 * errno when it said nothing. */
static const char *http_start_cause(const struct metrics_http *h, int err)
{
    static const char bind_prefix[] = "Failed to bind to port ";
    const char *msg = h->start_error;
    if (strncmp(msg, bind_prefix, sizeof(bind_prefix) - 1) == 0) {
        const char *colon = strstr(msg, ": ");
        if (colon)
            return colon + 2;
    }
    if (msg[0])
        return msg;
    return err ? strerror(err) : "libmicrohttpd could not start";
}

static void http_free(struct metrics_http *h)
{
    pthread_mutex_destroy(&h->log_lock);
    free(h);
}

struct metrics_http *metrics_http_start(struct metrics *m, const char *host,
                                        int port, char *err, size_t err_len)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    const union MHD_DaemonInfo *info;
    struct metrics_http *h;
    int saved_errno;
    assert(m && err && err_len > 0);
    if (!host || inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        snprintf(err, err_len,
                 "metrics exporter: listen address \"%s\" is not an IPv4 "
                 "address", host ? host : "(null)");
        return NULL;
    }
    if (port < 0 || port > 65535) {
        snprintf(err, err_len, "metrics exporter: port %d is out of range",
                 port);
        return NULL;
    }
    addr.sin_port = htons((uint16_t)port);
    h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, err_len, "metrics exporter: out of memory");
        return NULL;
    }
    h->m = m;
    pthread_mutex_init(&h->log_lock, NULL);
    h->starting = 1;
    errno = 0;
    /* MHD_USE_AUTO picks epoll: select() would fail on a node holding
     * more than FD_SETSIZE descriptors. */
    h->daemon = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        http_answer, h,
        /* First, or libmicrohttpd logs the options before it to stderr. */
        MHD_OPTION_EXTERNAL_LOGGER, http_log, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, HTTP_CONNECTION_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, HTTP_TIMEOUT_SECONDS, MHD_OPTION_END);
    saved_errno = errno;
    pthread_mutex_lock(&h->log_lock);
    h->starting = 0;
    pthread_mutex_unlock(&h->log_lock);
    if (!h->daemon) {
        snprintf(err, err_len, "metrics exporter: cannot listen on %s:%d: %s",
                 host, port, http_start_cause(h, saved_errno));
        http_free(h);
        return NULL;
    }
    info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info && info->port ? info->port : port;
    return h;
}

int metrics_http_port(const struct metrics_http *h)
{
    return h->port;
}

void metrics_http_stop(struct metrics_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    http_free(h);
}
