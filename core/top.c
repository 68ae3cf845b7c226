#include "top.h"

#include "log.h"
#include "runtime.h"

#include <errno.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#define FETCH_TIMEOUT_S 5
#define MAX_BODY (64 * 1024 * 1024) /* a status document is kilobytes */

/* ------------------------------------------------------------ fetching */

/* "http://HOST:PORT[/...]" or "HOST:PORT" -> host, port. */
static gboolean split_url(const char *url, char **host, char **port, GError **error)
{
    const char *p = g_str_has_prefix(url, "http://") ? url + 7 : url;
    const char *slash = strchr(p, '/');
    g_autofree char *hostport = slash ? g_strndup(p, (gsize)(slash - p)) : g_strdup(p);
    const char *colon = strrchr(hostport, ':');
    if (strstr(url, "://") && !g_str_has_prefix(url, "http://")) {
        g_set_error(error, ECF_ERROR, ECF_ERR_CONFIG, "'%s': only http:// URLs are read", url);
        return FALSE;
    }
    if (!colon || colon == hostport || !colon[1]) {
        g_set_error(error, ECF_ERROR, ECF_ERR_CONFIG, "'%s' is not http://HOST:PORT", url);
        return FALSE;
    }
    *host = g_strndup(hostport, (gsize)(colon - hostport));
    *port = g_strdup(colon + 1);
    /* the metrics setting may listen on every address; ask this machine */
    if (strcmp(*host, "0.0.0.0") == 0) {
        g_free(*host);
        *host = g_strdup("127.0.0.1");
    }
    return TRUE;
}

static int connect_to(const char *host, const char *port, GError **error)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        g_set_error(error, ECF_ERROR, ECF_ERR_UNAVAILABLE, "%s:%s: %s", host, port, gai_strerror(rc));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {FETCH_TIMEOUT_S, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        g_set_error(error, ECF_ERROR, ECF_ERR_UNAVAILABLE,
                    "cannot reach %s:%s: %s (is the pipeline running, with "
                    "`metrics:` set?)",
                    host, port, g_strerror(err));
    return fd;
}

char *ecf_top_fetch(const char *url, const char *path, GError **error)
{
    g_autofree char *host = NULL, *port = NULL;
    if (!split_url(url, &host, &port, error))
        return NULL;
    int fd = connect_to(host, port, error);
    if (fd < 0)
        return NULL;
    g_autofree char *req =
        g_strdup_printf("GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n", path, host, port);
    g_autoptr(GString) resp = g_string_new(NULL);
    gboolean ok = send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req);
    char buf[16384];
    ssize_t n;
    while (ok && (n = recv(fd, buf, sizeof buf, 0)) > 0 && resp->len < MAX_BODY)
        g_string_append_len(resp, buf, n);
    int err = errno;
    close(fd);
    const char *body = strstr(resp->str, "\r\n\r\n");
    if (!ok || !body) {
        g_set_error(error, ECF_ERROR, ECF_ERR_IO, "%s%s: no answer (%s)", url, path, g_strerror(err));
        return NULL;
    }
    unsigned status = 0;
    if (sscanf(resp->str, "HTTP/%*d.%*d %u", &status) != 1 || status != 200) {
        g_set_error(error, ECF_ERROR, ECF_ERR_IO, "%s%s answered %u%s", url, path, status,
                    status == 404 ? " (an ecflow older than `top`?)" : "");
        return NULL;
    }
    return g_strdup(body + 4);
}

/* ------------------------------------------------------------ snapshots */

typedef struct {
    char *key; /* name, stage and labels: the same series in two snapshots */
    const char *name, *stage;
    JsonObject *labels;
    gboolean histogram;
    double value;  /* counter or gauge; a histogram's sum */
    double count;  /* histogram */
    GArray *le;    /* double: bucket bounds */
    GArray *cumul; /* double: cumulative counts */
} series;

typedef struct {
    JsonParser *parser;
    double time, uptime;
    const char *pipeline;
    JsonArray *stages;
    GPtrArray *series;  /* series* */
    GHashTable *by_key; /* key -> series* */
} snapshot;

static void series_free(gpointer p)
{
    series *s = p;
    g_free(s->key);
    if (s->le)
        g_array_free(s->le, TRUE);
    if (s->cumul)
        g_array_free(s->cumul, TRUE);
    g_free(s);
}

static void snapshot_free(snapshot *snap)
{
    if (!snap)
        return;
    g_clear_pointer(&snap->by_key, g_hash_table_destroy);
    g_clear_pointer(&snap->series, g_ptr_array_unref);
    g_clear_object(&snap->parser);
    g_free(snap);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(snapshot, snapshot_free)

static double member_double(JsonObject *o, const char *name)
{
    JsonNode *n = json_object_get_member(o, name);
    return n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_double(n) : NAN;
}

static const char *member_string(JsonObject *o, const char *name)
{
    JsonNode *n = json_object_get_member(o, name);
    return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING ? json_node_get_string(n)
                                                                                         : NULL;
}

static series *series_from(JsonObject *o)
{
    series *s = g_new0(series, 1);
    s->name = member_string(o, "name");
    s->stage = member_string(o, "stage");
    JsonNode *labels = json_object_get_member(o, "labels");
    s->labels = labels && JSON_NODE_HOLDS_OBJECT(labels) ? json_node_get_object(labels) : NULL;
    g_autofree char *lab = labels ? json_to_string(labels, FALSE) : g_strdup("{}");
    s->key = g_strdup_printf("%s\x1f%s\x1f%s", s->name, s->stage ? s->stage : "", lab);
    s->histogram = g_strcmp0(member_string(o, "type"), "histogram") == 0;
    if (!s->histogram) {
        s->value = member_double(o, "value");
        return s;
    }
    s->value = member_double(o, "sum");
    s->count = member_double(o, "count");
    s->le = g_array_new(FALSE, FALSE, sizeof(double));
    s->cumul = g_array_new(FALSE, FALSE, sizeof(double));
    JsonNode *b = json_object_get_member(o, "buckets");
    JsonArray *arr = b && JSON_NODE_HOLDS_ARRAY(b) ? json_node_get_array(b) : NULL;
    for (guint i = 0; arr && i < json_array_get_length(arr); i++) {
        JsonArray *pair = json_array_get_array_element(arr, i);
        if (!pair || json_array_get_length(pair) != 2)
            continue;
        double le = json_array_get_double_element(pair, 0), c = json_array_get_double_element(pair, 1);
        g_array_append_val(s->le, le);
        g_array_append_val(s->cumul, c);
    }
    return s;
}

static snapshot *snapshot_parse(const char *doc, GError **error)
{
    g_autoptr(snapshot) snap = g_new0(snapshot, 1);
    snap->parser = json_parser_new();
    if (!json_parser_load_from_data(snap->parser, doc, -1, error))
        return NULL;
    JsonNode *root = json_parser_get_root(snap->parser);
    JsonObject *o = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
    JsonNode *stages = o ? json_object_get_member(o, "stages") : NULL;
    JsonNode *metrics = o ? json_object_get_member(o, "metrics") : NULL;
    if (!stages || !metrics || !JSON_NODE_HOLDS_ARRAY(stages) || !JSON_NODE_HOLDS_ARRAY(metrics)) {
        g_set_error(error, ECF_ERROR, ECF_ERR_INVALID, "not an ecflow status document (no stages and metrics)");
        return NULL;
    }
    snap->time = member_double(o, "time");
    snap->uptime = member_double(o, "uptime_seconds");
    snap->pipeline = member_string(o, "pipeline");
    snap->stages = json_node_get_array(stages);
    snap->series = g_ptr_array_new_with_free_func(series_free);
    snap->by_key = g_hash_table_new(g_str_hash, g_str_equal);
    JsonArray *arr = json_node_get_array(metrics);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonNode *n = json_array_get_element(arr, i);
        if (!JSON_NODE_HOLDS_OBJECT(n) || !member_string(json_node_get_object(n), "name"))
            continue;
        series *s = series_from(json_node_get_object(n));
        g_ptr_array_add(snap->series, s);
        g_hash_table_insert(snap->by_key, s->key, s);
    }
    return g_steal_pointer(&snap);
}

/* ------------------------------------------------------------ figures */

typedef struct {
    const snapshot *prev, *cur;
    double secs; /* between them; 0 without prev */
} view;

static gboolean matches(const series *s, const char *name, const char *stage)
{
    return strcmp(s->name, name) == 0 && (!stage || g_strcmp0(s->stage, stage) == 0);
}

static const series *earlier(const view *v, const series *s)
{
    return v->prev ? g_hash_table_lookup(v->prev->by_key, s->key) : NULL;
}

/* Per second between the snapshots, over every series of `name` (of `stage`); NAN without two snapshots. */
static double rate(const view *v, const char *name, const char *stage)
{
    if (v->secs <= 0)
        return NAN;
    double sum = 0;
    gboolean any = FALSE;
    for (guint i = 0; i < v->cur->series->len; i++) {
        const series *s = v->cur->series->pdata[i], *p = NULL;
        if (!matches(s, name, stage))
            continue;
        any = TRUE;
        if ((p = earlier(v, s)) && s->value >= p->value)
            sum += s->value - p->value;
        else if (!p)
            sum += s->value; /* a series born between the two */
    }
    return any ? sum / v->secs : NAN;
}

static double rate_of(const view *v, const series *s)
{
    const series *p = earlier(v, s);
    if (v->secs <= 0)
        return NAN;
    return (s->value - (p ? p->value : 0)) / v->secs;
}

static double total(const view *v, const char *name, const char *stage, gboolean *found)
{
    double sum = 0;
    gboolean any = FALSE;
    for (guint i = 0; i < v->cur->series->len; i++) {
        const series *s = v->cur->series->pdata[i];
        if (matches(s, name, stage)) {
            sum += s->value;
            any = TRUE;
        }
    }
    if (found)
        *found = any;
    return any ? sum : NAN;
}

/* The q-quantile of a histogram from its buckets: of what was observed
 * between the snapshots when anything was, else since the start. Linear
 * within a bucket, as Prometheus's histogram_quantile does. */
static double quantile(const view *v, const series *s, double q)
{
    const series *p = earlier(v, s);
    gboolean window = p && p->cumul->len == s->cumul->len && s->count > p->count;
    double count = window ? s->count - p->count : s->count;
    if (count <= 0 || s->le->len == 0)
        return NAN;
    double rank = q * count, below = 0, lower = 0;
    for (guint i = 0; i < s->le->len; i++) {
        double c = g_array_index(s->cumul, double, i) - (window ? g_array_index(p->cumul, double, i) : 0);
        double upper = g_array_index(s->le, double, i);
        if (c >= rank)
            return c > below ? lower + (upper - lower) * (rank - below) / (c - below) : upper;
        below = c;
        lower = upper;
    }
    return lower; /* in the +Inf bucket: at least the last bound */
}

static const char *label(const series *s, const char *key)
{
    return s->labels && json_object_has_member(s->labels, key) ? json_object_get_string_member(s->labels, key) : NULL;
}

/* 1234567 -> "1.23M"; NAN -> "-". */
static void human(char *buf, gsize len, double v)
{
    if (isnan(v))
        g_strlcpy(buf, "-", len);
    else if (fabs(v) >= 1e9)
        g_snprintf(buf, len, "%.2fG", v / 1e9);
    else if (fabs(v) >= 1e6)
        g_snprintf(buf, len, "%.2fM", v / 1e6);
    else if (fabs(v) >= 1e4)
        g_snprintf(buf, len, "%.1fk", v / 1e3);
    else if (v != floor(v) && fabs(v) < 100)
        g_snprintf(buf, len, "%.1f", v);
    else
        g_snprintf(buf, len, "%.0f", v);
}

static void seconds(char *buf, gsize len, double v)
{
    if (isnan(v))
        g_strlcpy(buf, "-", len);
    else if (v < 1)
        g_snprintf(buf, len, "%.0fms", v * 1000);
    else if (v < 120)
        g_snprintf(buf, len, "%.1fs", v);
    else if (v < 7200)
        g_snprintf(buf, len, "%.0fm%02.0fs", floor(v / 60), fmod(v, 60));
    else
        g_snprintf(buf, len, "%.0fh%02.0fm", floor(v / 3600), fmod(v / 60, 60));
}

/* ------------------------------------------------------------ the stage table */

typedef struct {
    const char *name, *kind, *plugin, *state;
    double in, out, failed, fill;
    guint dag;
} stage_row;

static const char *stage_state(const view *v, const char *stage)
{
    if (total(v, "ecflow_stage_failed", stage, NULL) > 0)
        return "FAILED";
    gboolean found;
    double ready = total(v, "ecflow_stage_ready", stage, &found);
    if (found && ready == 0)
        return "waiting";
    double fill = total(v, "ecflow_ring_fill_ratio", stage, NULL);
    return fill >= 0.9 ? "backpressure" : "running";
}

static ecf_top_sort sort_key;
static gboolean sort_reverse;

static double sort_value(const stage_row *r)
{
    switch (sort_key) {
    case ECF_TOP_SORT_IN: return isnan(r->in) ? -1 : r->in;
    case ECF_TOP_SORT_OUT: return isnan(r->out) ? -1 : r->out;
    case ECF_TOP_SORT_FAILED: return r->failed;
    case ECF_TOP_SORT_FILL: return isnan(r->fill) ? -1 : r->fill;
    default: return -(double)r->dag;
    }
}

static int compare_rows(gconstpointer a, gconstpointer b)
{
    double x = sort_value(a), y = sort_value(b);
    int c = x < y ? 1 : x > y ? -1 : 0; /* biggest first */
    return sort_reverse ? -c : c;
}

static const char *const sort_names[] = {"dag", "in/s", "out/s", "failed/s", "ring"};

static void stage_table(GString *out, const view *v)
{
    g_autoptr(GArray) rows = g_array_new(FALSE, TRUE, sizeof(stage_row));
    for (guint i = 0; i < json_array_get_length(v->cur->stages); i++) {
        JsonObject *st = json_array_get_object_element(v->cur->stages, i);
        stage_row r = {.name = member_string(st, "name"),
                       .kind = member_string(st, "kind"),
                       .plugin = member_string(st, "plugin"),
                       .dag = i};
        if (!r.name)
            continue;
        r.in = g_strcmp0(r.kind, "source") == 0 ? NAN : rate(v, "ecflow_events_in_total", r.name);
        r.out = g_strcmp0(r.kind, "sink") == 0 ? NAN : rate(v, "ecflow_events_out_total", r.name);
        r.failed = v->secs > 0 ? rate(v, "ecflow_events_failed_total", r.name) : 0;
        r.failed = isnan(r.failed) ? 0 : r.failed;
        r.fill = total(v, "ecflow_ring_fill_ratio", r.name, NULL);
        r.state = stage_state(v, r.name);
        g_array_append_val(rows, r);
    }
    g_array_sort(rows, compare_rows);
    g_string_append_printf(out, "%-16s %-9s %-20s %9s %9s %9s %6s  %s\n", "STAGE", "KIND", "PLUGIN", "IN/s", "OUT/s",
                           "FAILED/s", "RING", "STATE");
    for (guint i = 0; i < rows->len; i++) {
        const stage_row *r = &g_array_index(rows, stage_row, i);
        char in[16], outs[16], failed[16], fill[16];
        human(in, sizeof in, r->in);
        human(outs, sizeof outs, r->out);
        human(failed, sizeof failed, r->failed);
        if (isnan(r->fill))
            g_strlcpy(fill, "-", sizeof fill);
        else
            g_snprintf(fill, sizeof fill, "%.0f%%", r->fill * 100);
        g_string_append_printf(out, "%-16s %-9s %-20s %9s %9s %9s %6s  %s\n", r->name, r->kind ? r->kind : "?",
                               r->plugin ? r->plugin : "?", in, outs, failed, fill, r->state);
    }
}

/* ------------------------------------------------------------ pipeline facts */

/* "TITLE  a: 1.0/s  b: 2.0/s" over the series of `name`, keyed by one
 * label; the ones that did not move are left out. */
static void per_label_rates(GString *out, const view *v, const char *title, const char *name, const char *key)
{
    g_autoptr(GString) line = g_string_new(NULL);
    gboolean any = FALSE;
    for (guint i = 0; i < v->cur->series->len; i++) {
        const series *s = v->cur->series->pdata[i];
        if (strcmp(s->name, name) != 0)
            continue;
        any = TRUE;
        double r = rate_of(v, s);
        if (!(r > 0))
            continue;
        char rs[16];
        human(rs, sizeof rs, r);
        const char *l = label(s, key);
        g_string_append_printf(line, "  %s: %s/s", l ? l : "?", rs);
    }
    if (any)
        g_string_append_printf(out, "%-18s%s\n", title, line->len ? line->str : "  none");
}

static void kafka_lag(GString *out, const view *v)
{
    g_autoptr(GString) line = g_string_new(NULL);
    double sum = 0;
    for (guint i = 0; i < v->cur->series->len; i++) {
        const series *s = v->cur->series->pdata[i];
        if (strcmp(s->name, "ecflow_kafka_consumer_lag") != 0)
            continue;
        char r[16];
        human(r, sizeof r, s->value);
        sum += s->value;
        g_string_append_printf(line, "  %s/%s: %s", label(s, "topic") ? label(s, "topic") : "?",
                               label(s, "partition") ? label(s, "partition") : "?", r);
    }
    if (line->len)
        g_string_append_printf(out, "%-18s  total %.0f%s\n", "Kafka lag", sum, line->str);
}

/* One line per table (sink-iceberg stage): commits, rows, freshness. */
static void tables(GString *out, const view *v)
{
    for (guint i = 0; i < v->cur->series->len; i++) {
        const series *s = v->cur->series->pdata[i];
        if (strcmp(s->name, "ecflow_iceberg_commits_total") != 0 || !s->stage)
            continue;
        char commits[16], crate[16], rows[16], rrate[16], last[16], newest[16], p95[16], p99[16];
        human(commits, sizeof commits, s->value);
        human(crate, sizeof crate, rate_of(v, s));
        human(rows, sizeof rows, total(v, "ecflow_iceberg_committed_rows_total", s->stage, NULL));
        human(rrate, sizeof rrate, rate(v, "ecflow_iceberg_committed_rows_total", s->stage));
        double last_commit = total(v, "ecflow_iceberg_last_commit_timestamp_seconds", s->stage, NULL);
        double newest_event = total(v, "ecflow_iceberg_newest_event_timestamp_seconds", s->stage, NULL);
        seconds(last, sizeof last, last_commit > 0 ? v->cur->time - last_commit : NAN);
        seconds(newest, sizeof newest, newest_event > 0 ? v->cur->time - newest_event : NAN);
        const series *fresh = NULL;
        for (guint j = 0; j < v->cur->series->len && !fresh; j++) {
            const series *f = v->cur->series->pdata[j];
            if (f->histogram && matches(f, "ecflow_iceberg_freshness_seconds", s->stage))
                fresh = f;
        }
        seconds(p95, sizeof p95, fresh ? quantile(v, fresh, 0.95) : NAN);
        seconds(p99, sizeof p99, fresh ? quantile(v, fresh, 0.99) : NAN);
        g_string_append_printf(out, "%-18s  %s: %s commits (%s/s), %s rows committed (%s/s)\n", "Table commits",
                               s->stage, commits, crate, rows, rrate);
        g_string_append_printf(out, "%-18s  %s: last commit %s ago, newest event %s old, p95 %s, p99 %s\n", "Freshness",
                               s->stage, last, newest, p95, p99);
    }
}

static char *render_view(const view *v, const char *url)
{
    GString *out = g_string_new(NULL);
    char up[16], acks[16];
    seconds(up, sizeof up, v->cur->uptime);
    human(acks, sizeof acks, total(v, "ecflow_acks_outstanding", NULL, NULL));
    g_string_append_printf(out, "ecflow top - %s - %s - up %s - acks pending %s - sort %s%s\n\n",
                           v->cur->pipeline ? v->cur->pipeline : "?", url ? url : "", up, acks, sort_names[sort_key],
                           sort_reverse ? " (reversed)" : "");
    stage_table(out, v);
    g_string_append_c(out, '\n');
    per_label_rates(out, v, "HTTP responses", "ecflow_http_responses_total", "code");
    kafka_lag(out, v);
    tables(out, v);
    per_label_rates(out, v, "Invalid (DLQ)", "ecflow_validate_invalid_total", "reason");
    return g_string_free(out, FALSE);
}

/* Cuts each line to `width` columns (the text is ASCII). */
static char *clip(char *text, guint width)
{
    if (width == 0)
        return text;
    GString *out = g_string_new(NULL);
    for (char *line = text, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        gsize len = nl ? (gsize)(nl - line) : strlen(line);
        g_string_append_len(out, line, MIN(len, width));
        g_string_append_c(out, '\n');
        if (!nl)
            break;
    }
    g_free(text);
    return g_string_free(out, FALSE);
}

char *ecf_top_render(const char *prev, const char *cur, const char *url, ecf_top_sort sort, gboolean reverse,
                     guint width, GError **error)
{
    g_autoptr(snapshot) p = prev ? snapshot_parse(prev, error) : NULL;
    if (prev && !p)
        return NULL;
    g_autoptr(snapshot) c = snapshot_parse(cur, error);
    if (!c)
        return NULL;
    view v = {p, c, p && c->time > p->time ? c->time - p->time : 0};
    sort_key = sort;
    sort_reverse = reverse;
    return clip(render_view(&v, url), width);
}

/* ------------------------------------------------------------ the terminal */

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) { interrupted = 1; }

static struct termios saved_termios;

static void terminal_enter(void)
{
    tcgetattr(STDIN_FILENO, &saved_termios);
    struct termios raw = saved_termios;
    raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    fputs("\033[?1049h\033[?25l", stdout); /* the alternate screen, no cursor */
}

static void terminal_leave(void)
{
    fputs("\033[?25h\033[?1049l", stdout);
    fflush(stdout);
    tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
}

static guint terminal_width(void)
{
    struct winsize ws;
    return ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
}

/* Waits up to `secs` for a key; returns it, or 0. */
static int wait_key(double secs)
{
    struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
    if (poll(&pfd, 1, (int)(secs * 1000)) <= 0)
        return 0;
    char c = 0;
    return read(STDIN_FILENO, &c, 1) == 1 ? c : 0;
}

static int run_once(const char *url, double interval)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *first = ecf_top_fetch(url, "/status.json", &err);
    if (!first) {
        fprintf(stderr, "ecflow top: %s\n", err->message);
        return ECF_EXIT_FAILURE;
    }
    g_usleep((gulong)(interval * G_USEC_PER_SEC));
    g_autofree char *second = ecf_top_fetch(url, "/status.json", &err);
    g_autofree char *text = second ? ecf_top_render(first, second, url, ECF_TOP_SORT_DAG, FALSE, 0, &err) : NULL;
    if (!text) {
        fprintf(stderr, "ecflow top: %s\n", err->message);
        return ECF_EXIT_FAILURE;
    }
    fputs(text, stdout);
    return ECF_EXIT_OK;
}

int ecf_top_run(const char *url, double interval, gboolean once)
{
    if (once)
        return run_once(url, interval);
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "ecflow top: not a terminal; --once prints one snapshot\n");
        return ECF_EXIT_CONFIG;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    terminal_enter();
    g_autofree char *prev = NULL, *cur = NULL, *failure = NULL;
    ecf_top_sort sort = ECF_TOP_SORT_DAG;
    gboolean reverse = FALSE, quit = FALSE;
    gint64 next_fetch = 0;
    while (!quit && !interrupted) {
        if (g_get_monotonic_time() >= next_fetch) {
            g_autoptr(GError) err = NULL;
            char *doc = ecf_top_fetch(url, "/status.json", &err);
            g_clear_pointer(&failure, g_free);
            if (doc) {
                g_free(prev);
                prev = cur;
                cur = doc;
            } else {
                failure = g_strdup(err->message);
            }
            next_fetch = g_get_monotonic_time() + (gint64)(interval * G_USEC_PER_SEC);
        }
        g_autoptr(GError) err = NULL;
        g_autofree char *text = cur ? ecf_top_render(prev, cur, url, sort, reverse, terminal_width(), &err) : NULL;
        fputs("\033[H\033[2J", stdout);
        if (text)
            fputs(text, stdout);
        if (failure || err)
            printf("\n%s\n", failure ? failure : err->message);
        printf("\nq quit   s sort (%s)   r reverse\n", sort_names[sort]);
        fflush(stdout);
        /* keys answer at once: a new order redraws the same snapshots */
        for (gint64 now; !interrupted && (now = g_get_monotonic_time()) < next_fetch;) {
            int key = wait_key((double)(next_fetch - now) / G_USEC_PER_SEC);
            if (key == 'q' || key == 'Q') {
                quit = TRUE;
                break;
            }
            if (key == 's' || key == 'S')
                sort = (sort + 1) % G_N_ELEMENTS(sort_names);
            if (key == 'r' || key == 'R')
                reverse = !reverse;
            if (key == 's' || key == 'S' || key == 'r' || key == 'R')
                break;
        }
    }
    terminal_leave();
    return ECF_EXIT_OK;
}
