/* Unit tests of the metrics registry, its text format and its HTTP
 * exporter, which they fetch over a plain TCP socket on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "metrics.h"
#include "testutil.h"

#define THREADS 4
#define ADDS_PER_THREAD 10000
#define RESPONSE_BYTES (1 << 16)

struct fixture {
    struct metrics *m;
    struct metrics_http *http;
    struct metrics_http *http2;
    char *text; /* the last render */
    size_t len;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->m = metrics_new();
    if (!f->m) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    metrics_http_stop(f->http2);
    metrics_http_stop(f->http);
    metrics_free(f->m);
    free(f->text);
    free(f);
    return 0;
}

/* Renders f->m into f->text. */
static const char *render(struct fixture *f)
{
    free(f->text);
    f->text = NULL;
    assert_int_equal(metrics_render(f->m, &f->text, &f->len), 0);
    assert_non_null(f->text);
    assert_int_equal(strlen(f->text), f->len);
    return f->text;
}

/* How many times @needle occurs in @hay. */
static int occurrences(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Fails unless @text holds @line as a whole line. */
static void assert_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = strstr(text, line); p; p = strstr(p + 1, line))
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    fail_msg("no line \"%s\" in:\n%s", line, text);
}

/* ------------------------------------------------------------------------
 * A checker of the text format, strict enough to catch a malformed line. */

static const char *skip_name(const char *p, int colon)
{
    const char *start = p;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
           *p == '_' || (colon && *p == ':') ||
           (p > start && *p >= '0' && *p <= '9'))
        p++;
    return p > start ? p : NULL;
}

/* A label value from its opening quote; the character after its closing
 * quote, or NULL. */
static const char *skip_label_value(const char *p)
{
    if (*p++ != '"')
        return NULL;
    for (; *p != '"'; p++) {
        if (*p == '\0' || *p == '\n')
            return NULL;
        if (*p == '\\' && (p[1] == '\\' || p[1] == '"' || p[1] == 'n'))
            p++;
        else if (*p == '\\')
            return NULL;
    }
    return p + 1;
}

static int value_is_valid(const char *s, size_t n)
{
    char text[64], *end;
    if (n == 0 || n >= sizeof(text))
        return 0;
    memcpy(text, s, n);
    text[n] = '\0';
    if (!strcmp(text, "+Inf") || !strcmp(text, "-Inf") ||
        !strcmp(text, "NaN"))
        return 1;
    strtod(text, &end);
    return *end == '\0' && !strpbrk(text, "iInN");
}

/* Whether @line (without its newline, @n bytes) is a sample line:
 * name{label="value",...} value. */
static int sample_line_is_valid(const char *line, size_t n)
{
    const char *end = line + n, *p = skip_name(line, 1);
    if (!p)
        return 0;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            if (!(p = skip_name(p, 0)) || *p++ != '=' ||
                !(p = skip_label_value(p)))
                return 0;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return 0;
        }
        p++;
    }
    if (*p++ != ' ' || p > end)
        return 0;
    return value_is_valid(p, (size_t)(end - p));
}

/* Whether @line is "# HELP name ..." or "# TYPE name <type>". */
static int comment_line_is_valid(const char *line, size_t n)
{
    const char *p;
    if (strncmp(line, "# HELP ", 7) == 0)
        return (p = skip_name(line + 7, 1)) && *p == ' ';
    if (strncmp(line, "# TYPE ", 7) != 0 || !(p = skip_name(line + 7, 1)) ||
        *p++ != ' ')
        return 0;
    n -= (size_t)(p - line);
    return (n == 7 && !strncmp(p, "counter", 7)) ||
           (n == 5 && !strncmp(p, "gauge", 5)) ||
           (n == 9 && !strncmp(p, "histogram", 9));
}

/* Fails unless every line of @body is a comment or sample line, each
 * ended by a newline. */
static void assert_text_format(const char *body)
{
    const char *line = body;
    while (*line) {
        const char *nl = strchr(line, '\n');
        size_t n;
        if (!nl)
            fail_msg("last line has no newline: \"%s\"", line);
        n = (size_t)(nl - line);
        if (!(line[0] == '#' ? comment_line_is_valid(line, n)
                             : sample_line_is_valid(line, n)))
            fail_msg("malformed line \"%.*s\"", (int)n, line);
        line = nl + 1;
    }
}

/* ------------------------------------------------------------------------
 * Registry and text format. */

struct worker {
    struct metrics_counter *requests;
    struct metrics_histogram *latency;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    const char *get[] = {"get", "OK"}, *put[] = {"put", "OK"};
    const char *get_only[] = {"get"};
    for (int i = 0; i < ADDS_PER_THREAD; i++) {
        metrics_counter_add(w->requests, get, 1);
        metrics_counter_add(w->requests, put, 2);
        metrics_histogram_observe(w->latency, get_only, 0.25);
        metrics_histogram_observe(w->latency, get_only, 2);
    }
    return NULL;
}

/* Updates from four threads while scrapes render are all counted: every
 * total is exact, and the histogram's buckets, _sum and _count agree. */
static void test_concurrent_updates_are_all_counted(void **state)
{
    struct fixture *f = *state;
    const char *counter_labels[] = {"method", "code"};
    const char *histogram_labels[] = {"method"};
    const double bounds[] = {0.1, 0.5, 1, 5};
    struct worker w;
    pthread_t threads[THREADS];
    const char *text;

    w.requests = metrics_counter(f->m, "dossier_requests_total",
                                 "Requests by method and code.", 2,
                                 counter_labels);
    w.latency = metrics_histogram(f->m, "dossier_request_seconds",
                                  "Request latency.", 1, histogram_labels,
                                  bounds, 4);
    assert_non_null(w.requests);
    assert_non_null(w.latency);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, worker_run, &w), 0);
    for (int i = 0; i < 20; i++) /* scrapes during the updates */
        render(f);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);

    text = render(f);
    assert_line(text, "# HELP dossier_requests_total Requests by method and "
                      "code.");
    assert_line(text, "# TYPE dossier_requests_total counter");
    assert_line(text, "dossier_requests_total{method=\"get\",code=\"OK\"} "
                      "40000");
    assert_line(text, "dossier_requests_total{method=\"put\",code=\"OK\"} "
                      "80000");
    assert_line(text, "# TYPE dossier_request_seconds histogram");
    assert_line(text,
                "dossier_request_seconds_bucket{method=\"get\",le=\"0.1\"} 0");
    assert_line(text, "dossier_request_seconds_bucket{method=\"get\","
                      "le=\"0.5\"} 40000");
    assert_line(text,
                "dossier_request_seconds_bucket{method=\"get\",le=\"1\"} "
                "40000");
    assert_line(text,
                "dossier_request_seconds_bucket{method=\"get\",le=\"5\"} "
                "80000");
    assert_line(text, "dossier_request_seconds_bucket{method=\"get\","
                      "le=\"+Inf\"} 80000");
    assert_line(text, "dossier_request_seconds_sum{method=\"get\"} 90000");
    assert_line(text, "dossier_request_seconds_count{method=\"get\"} 80000");
    assert_text_format(text);
}

/* Buckets are cumulative, a value equal to a bound counts in that bound's
 * bucket, +Inf holds everything, and _sum and _count follow. A histogram
 * without labels shows zeros before its first observation. */
static void test_histogram_buckets_are_cumulative(void **state)
{
    struct fixture *f = *state;
    const double bounds[] = {1, 2, 4};
    const double values[] = {0.5, 1, 1.5, 3, 100};
    struct metrics_histogram *h =
        metrics_histogram(f->m, "h_seconds", NULL, 0, NULL, bounds, 3);
    const char *text;
    assert_non_null(h);

    text = render(f);
    assert_line(text, "h_seconds_bucket{le=\"+Inf\"} 0");
    assert_line(text, "h_seconds_count 0");

    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        metrics_histogram_observe(h, NULL, values[i]);
    text = render(f);
    assert_line(text, "# TYPE h_seconds histogram");
    assert_line(text, "h_seconds_bucket{le=\"1\"} 2");
    assert_line(text, "h_seconds_bucket{le=\"2\"} 3");
    assert_line(text, "h_seconds_bucket{le=\"4\"} 4");
    assert_line(text, "h_seconds_bucket{le=\"+Inf\"} 5");
    assert_line(text, "h_seconds_sum 106");
    assert_line(text, "h_seconds_count 5");
    assert_not_contains(text, "# HELP");
    assert_text_format(text);
}

/* The default latency bounds run from 100 us to 10 s, printed as written. */
static void test_latency_bounds_print_short(void **state)
{
    struct fixture *f = *state;
    struct metrics_histogram *h =
        metrics_histogram(f->m, "lat_seconds", "x", 0, NULL,
                          metrics_latency_bounds, metrics_latency_n_bounds);
    const char *text;
    assert_non_null(h);
    assert_int_equal(metrics_latency_n_bounds, 16);
    text = render(f);
    assert_line(text, "lat_seconds_bucket{le=\"0.0001\"} 0");
    assert_line(text, "lat_seconds_bucket{le=\"0.00025\"} 0");
    assert_line(text, "lat_seconds_bucket{le=\"0.1\"} 0");
    assert_line(text, "lat_seconds_bucket{le=\"2.5\"} 0");
    assert_line(text, "lat_seconds_bucket{le=\"10\"} 0");
    assert_int_equal(occurrences(text, "lat_seconds_bucket{"), 17);
}

/* Backslash, double quote and newline are escaped in label values;
 * backslash and newline in help texts. */
static void test_label_values_and_help_are_escaped(void **state)
{
    struct fixture *f = *state;
    const char *names[] = {"path"};
    const char *values[] = {"a\\b\"c\nd"};
    struct metrics_counter *c =
        metrics_counter(f->m, "esc_total", "one\ntwo \\ \"three\"", 1, names);
    const char *text;
    assert_non_null(c);
    metrics_counter_add(c, values, 1);
    text = render(f);
    assert_line(text, "esc_total{path=\"a\\\\b\\\"c\\nd\"} 1");
    assert_line(text, "# HELP esc_total one\\ntwo \\\\ \"three\"");
    assert_text_format(text);
}

/* Invalid metric names, label names and bounds are refused. */
static void test_bad_names_and_bounds_are_refused(void **state)
{
    struct fixture *f = *state;
    const char *bad_metric[] = {"", "1abc", "a-b", "a b", "é"};
    const char *bad_label[] = {"__reserved", "a:b", "1a", "", "a-b"};
    const char *dup_labels[] = {"x", "x"};
    const char *le[] = {"le"};
    const double decreasing[] = {1, 0.5}, nan_bound[] = {NAN},
                 inf_bound[] = {1, INFINITY};

    for (size_t i = 0; i < sizeof(bad_metric) / sizeof(bad_metric[0]); i++) {
        assert_null(metrics_counter(f->m, bad_metric[i], "h", 0, NULL));
        assert_null(metrics_histogram(f->m, bad_metric[i], "h", 0, NULL,
                                      metrics_latency_bounds, 3));
    }
    assert_null(metrics_counter(f->m, NULL, "h", 0, NULL));
    for (size_t i = 0; i < sizeof(bad_label) / sizeof(bad_label[0]); i++)
        assert_null(metrics_counter(f->m, "ok_total", "h", 1, &bad_label[i]));
    assert_null(metrics_counter(f->m, "ok_total", "h", 2, dup_labels));
    assert_null(metrics_counter(f->m, "ok_total", "h", -1, NULL));
    assert_null(metrics_histogram(f->m, "ok_seconds", "h", 1, le,
                                  metrics_latency_bounds, 3));
    assert_null(metrics_histogram(f->m, "ok_seconds", "h", 0, NULL,
                                  decreasing, 2));
    assert_null(metrics_histogram(f->m, "ok_seconds", "h", 0, NULL,
                                  nan_bound, 1));
    assert_null(metrics_histogram(f->m, "ok_seconds", "h", 0, NULL,
                                  inf_bound, 2));

    /* None of the refusals took a name; valid spellings are accepted. */
    assert_non_null(metrics_counter(f->m, "ok_total", "h", 1, le));
    assert_non_null(metrics_histogram(f->m, "ok_seconds", "h", 0, NULL,
                                      NULL, 0));
    assert_non_null(metrics_counter(f->m, "_a:b_c9", NULL, 0, NULL));
}

/* A name is taken once, counting a histogram's _bucket, _sum and _count. */
static void test_duplicate_names_are_refused(void **state)
{
    struct fixture *f = *state;
    const double b[] = {1};
    assert_non_null(metrics_counter(f->m, "x_total", "h", 0, NULL));
    assert_null(metrics_counter(f->m, "x_total", "h", 0, NULL));
    assert_null(metrics_histogram(f->m, "x_total", "h", 0, NULL, b, 1));

    assert_non_null(metrics_histogram(f->m, "h", "h", 0, NULL, b, 1));
    assert_null(metrics_counter(f->m, "h_count", "h", 0, NULL));
    assert_null(metrics_counter(f->m, "h_bucket", "h", 0, NULL));
    assert_null(metrics_counter(f->m, "h", "h", 0, NULL));

    assert_non_null(metrics_counter(f->m, "g_sum", "h", 0, NULL));
    assert_null(metrics_histogram(f->m, "g", "h", 0, NULL, b, 1));
    assert_non_null(metrics_counter(f->m, "h_other", "h", 0, NULL));
}

/* A counter without labels shows 0 from the start and ignores negative
 * and NaN additions; fractions add up. */
static void test_counter_only_goes_up(void **state)
{
    struct fixture *f = *state;
    struct metrics_counter *c =
        metrics_counter(f->m, "up_total", "h", 0, NULL);
    assert_non_null(c);
    assert_line(render(f), "up_total 0");
    metrics_counter_add(c, NULL, 1.5);
    metrics_counter_add(c, NULL, -1);
    metrics_counter_add(c, NULL, NAN);
    metrics_counter_add(c, NULL, 1);
    assert_line(render(f), "up_total 2.5");
}

static void collect_lag(struct metrics_writer *w, void *arg)
{
    const char *names[] = {"peer"};
    const char *p2[] = {"2"}, *p3[] = {"3"};
    (void)arg;
    metrics_write(w, "dossier_follower_lag", "gauge", "Entries behind.", 1,
                  names, p2, 3);
    metrics_write(w, "dossier_follower_lag", "gauge", "Entries behind.", 1,
                  names, p3, 5);
    metrics_write(w, "dossier_term", "counter", NULL, 0, NULL, NULL, 7);
    /* Each would make the scrape invalid: dropped. */
    metrics_write(w, "dossier_follower_lag", "gauge", "again", 1, names, p2,
                  9);
    metrics_write(w, "taken_total", "gauge", "clash", 0, NULL, NULL, 1);
    metrics_write(w, "bad-name", "gauge", "x", 0, NULL, NULL, 1);
    metrics_write(w, "odd_type", "summary", "x", 0, NULL, NULL, 1);
}

/* A collector writing two series of one name yields one HELP/TYPE pair;
 * samples that would break the scrape are dropped. */
static void test_collector_series_share_help_and_type(void **state)
{
    struct fixture *f = *state;
    const char *text;
    assert_non_null(metrics_counter(f->m, "taken_total", "t", 0, NULL));
    assert_int_equal(metrics_add_collector(f->m, collect_lag, NULL), 0);
    text = render(f);
    assert_int_equal(occurrences(text, "# HELP dossier_follower_lag "), 1);
    assert_int_equal(occurrences(text, "# TYPE dossier_follower_lag "), 1);
    assert_line(text, "# HELP dossier_follower_lag Entries behind.");
    assert_line(text, "# TYPE dossier_follower_lag gauge");
    assert_line(text, "dossier_follower_lag{peer=\"2\"} 3");
    assert_line(text, "dossier_follower_lag{peer=\"3\"} 5");
    assert_line(text, "# TYPE dossier_term counter");
    assert_line(text, "dossier_term 7");
    assert_int_equal(occurrences(text, "dossier_follower_lag{"), 2);
    assert_int_equal(occurrences(text, "# TYPE taken_total"), 1);
    assert_line(text, "taken_total 0");
    assert_not_contains(text, "bad-name");
    assert_not_contains(text, "odd_type");
    assert_text_format(text);

    /* Every scrape starts afresh. */
    text = render(f);
    assert_int_equal(occurrences(text, "# TYPE dossier_follower_lag "), 1);
}

static void collect_numbers(struct metrics_writer *w, void *arg)
{
    static const struct {
        const char *name;
        double value;
    } numbers[] = {
        {"n_million", 1e6},   {"n_tenth", 0.1},     {"n_neg", -2.5},
        {"n_inf", INFINITY},  {"n_ninf", -INFINITY}, {"n_nan", NAN},
        {"n_big", 1e20},      {"n_third", 1.0 / 3},
    };
    (void)arg;
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++)
        metrics_write(w, numbers[i].name, "gauge", NULL, 0, NULL, NULL,
                      numbers[i].value);
}

/* Numbers print as Prometheus reads them: integers in full, fractions in
 * their shortest exact form, +Inf, -Inf and NaN. */
static void test_numbers_print_as_prometheus_reads_them(void **state)
{
    struct fixture *f = *state;
    const char *text;
    assert_int_equal(metrics_add_collector(f->m, collect_numbers, NULL), 0);
    text = render(f);
    assert_line(text, "n_million 1000000");
    assert_line(text, "n_tenth 0.1");
    assert_line(text, "n_neg -2.5");
    assert_line(text, "n_inf +Inf");
    assert_line(text, "n_ninf -Inf");
    assert_line(text, "n_nan NaN");
    assert_line(text, "n_big 1e+20");
    assert_line(text, "n_third 0.3333333333333333");
    assert_text_format(text);
}

/* ------------------------------------------------------------------------
 * The HTTP exporter. */

/* Sends @request to 127.0.0.1:@port and reads the whole answer (HTTP/1.0:
 * the server closes) into @out, NUL-terminated. */
static void http_fetch(int port, const char *request, char *out, size_t cap)
{
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 5};
    size_t len = 0, n = strlen(request);
    ssize_t r;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail_msg("socket: %s", strerror(errno));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        fail_msg("connect to port %d: %s", port, strerror(errno));
    if (write(fd, request, n) != (ssize_t)n)
        fail_msg("write: %s", strerror(errno));
    while (len < cap - 1 && (r = read(fd, out + len, cap - 1 - len)) > 0)
        len += (size_t)r;
    close(fd);
    out[len] = '\0';
    if (len == cap - 1)
        fail_msg("answer larger than %zu bytes", cap - 1);
}

/* The status code of answer @resp. */
static int http_status(const char *resp)
{
    int status = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        fail_msg("no status line in \"%s\"", resp);
    return status;
}

/* The value of header @name in @resp, copied into @out. */
static void http_header(const char *resp, const char *name, char *out,
                        size_t cap)
{
    const char *end = strstr(resp, "\r\n\r\n");
    size_t n = strlen(name);
    for (const char *p = strstr(resp, "\r\n"); p && p < end;
         p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n, *e;
            while (*v == ' ')
                v++;
            e = strstr(v, "\r\n");
            snprintf(out, cap, "%.*s", (int)(e - v), v);
            return;
        }
    }
    fail_msg("no header %s in \"%s\"", name, resp);
}

/* Starts the exporter on 127.0.0.1, any port, into f->http. */
static int http_start(struct fixture *f)
{
    char err[256] = "";
    f->http = metrics_http_start(f->m, "127.0.0.1", 0, err, sizeof(err));
    if (!f->http)
        fail_msg("metrics_http_start: %s", err);
    assert_true(metrics_http_port(f->http) > 0);
    return metrics_http_port(f->http);
}

/* GET /metrics answers 200 with the text format's content type and a body
 * of well-formed lines holding the registered metrics. */
static void test_http_serves_metrics(void **state)
{
    struct fixture *f = *state;
    const char *names[] = {"method"}, *get[] = {"get\"\n"};
    struct metrics_counter *c =
        metrics_counter(f->m, "req_total", "Requests.", 1, names);
    struct metrics_histogram *h = metrics_histogram(
        f->m, "req_seconds", "Latency.", 1, names, metrics_latency_bounds,
        metrics_latency_n_bounds);
    char *resp = malloc(RESPONSE_BYTES), type[128];
    const char *body;
    int port;
    assert_non_null(resp);
    assert_non_null(c);
    assert_non_null(h);
    metrics_counter_add(c, get, 3);
    metrics_histogram_observe(h, get, 0.003);
    assert_int_equal(metrics_add_collector(f->m, collect_lag, NULL), 0);
    assert_int_equal(metrics_add_collector(f->m, collect_numbers, NULL), 0);
    port = http_start(f);

    http_fetch(port, "GET /metrics HTTP/1.0\r\n\r\n", resp, RESPONSE_BYTES);
    assert_int_equal(http_status(resp), 200);
    http_header(resp, "Content-Type", type, sizeof(type));
    assert_string_equal(type, "text/plain; version=0.0.4; charset=utf-8");
    body = strstr(resp, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    assert_line(body, "req_total{method=\"get\\\"\\n\"} 3");
    assert_line(body, "req_seconds_count{method=\"get\\\"\\n\"} 1");
    assert_line(body, "dossier_follower_lag{peer=\"3\"} 5");
    assert_text_format(body);
    free(resp);
}

/* Other paths answer 404, other methods 405. */
static void test_http_refuses_other_paths_and_methods(void **state)
{
    struct fixture *f = *state;
    char resp[4096];
    int port = http_start(f);

    http_fetch(port, "GET /nope HTTP/1.0\r\n\r\n", resp, sizeof(resp));
    assert_int_equal(http_status(resp), 404);
    http_fetch(port, "GET /metrics/x HTTP/1.0\r\n\r\n", resp, sizeof(resp));
    assert_int_equal(http_status(resp), 404);
    http_fetch(port,
               "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n", resp,
               sizeof(resp));
    assert_int_equal(http_status(resp), 405);
    /* The exporter still serves after them. */
    http_fetch(port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n", resp, sizeof(resp));
    assert_int_equal(http_status(resp), 200);
}

/* A second exporter on a port in use fails, naming host:port and the OS
 * error. */
static void test_http_port_in_use_is_named(void **state)
{
    struct fixture *f = *state;
    char err[256] = "", want[64];
    int port = http_start(f);

    f->http2 = metrics_http_start(f->m, "127.0.0.1", port, err, sizeof(err));
    assert_null(f->http2);
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    assert_contains(err, want);
    assert_contains(err, strerror(EADDRINUSE));
}

/* A host that is not an IPv4 literal, or a port out of range, is refused
 * with a message naming it. */
static void test_http_refuses_bad_address(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    f->http2 = metrics_http_start(f->m, "localhost", 0, err, sizeof(err));
    assert_null(f->http2);
    assert_contains(err, "\"localhost\"");
    f->http2 = metrics_http_start(f->m, "127.0.0.1", 70000, err, sizeof(err));
    assert_null(f->http2);
    assert_contains(err, "70000");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_concurrent_updates_are_all_counted),
        T(test_histogram_buckets_are_cumulative),
        T(test_latency_bounds_print_short),
        T(test_label_values_and_help_are_escaped),
        T(test_bad_names_and_bounds_are_refused),
        T(test_duplicate_names_are_refused),
        T(test_counter_only_goes_up),
        T(test_collector_series_share_help_and_type),
        T(test_numbers_print_as_prometheus_reads_them),
        T(test_http_serves_metrics),
        T(test_http_refuses_other_paths_and_methods),
        T(test_http_port_in_use_is_named),
        T(test_http_refuses_bad_address),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
