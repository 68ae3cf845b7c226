#include "log.h"
#include "sync.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static ecf_log_level log_level = ECF_LOG_INFO;
static ecf_log_format log_format = ECF_LOG_TEXT;
static ecf_mutex log_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic gboolean status_line;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void ecf_log_configure(ecf_log_level level, ecf_log_format format)
{
    log_level = level;
    log_format = format;
}

gboolean ecf_log_is_text(void) { return log_format == ECF_LOG_TEXT; }
void ecf_log_set_status_line(gboolean active) { atomic_store(&status_line, active); }

gboolean ecf_log_parse_level(const char *s, ecf_log_level *out)
{
    for (guint i = 0; i < G_N_ELEMENTS(level_names); i++) {
        if (g_ascii_strcasecmp(s, level_names[i]) == 0) {
            *out = (ecf_log_level)i;
            return TRUE;
        }
    }
    return FALSE;
}

gboolean ecf_log_parse_format(const char *s, ecf_log_format *out)
{
    if (g_strcmp0(s, "text") == 0)
        *out = ECF_LOG_TEXT;
    else if (g_strcmp0(s, "json") == 0)
        *out = ECF_LOG_JSON;
    else
        return FALSE;
    return TRUE;
}

static void append_json_string(GString *out, const char *s)
{
    g_string_append_c(out, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': g_string_append(out, "\\\""); break;
        case '\\': g_string_append(out, "\\\\"); break;
        case '\n': g_string_append(out, "\\n"); break;
        case '\t': g_string_append(out, "\\t"); break;
        case '\r': g_string_append(out, "\\r"); break;
        default:
            if (*p < 0x20)
                g_string_append_printf(out, "\\u%04x", *p);
            else
                g_string_append_c(out, (char)*p);
        }
    }
    g_string_append_c(out, '"');
}

static void format_time(char *buf, size_t len)
{
    gint64 now = g_get_real_time();
    time_t secs = (time_t)(now / G_USEC_PER_SEC);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    g_snprintf(buf + n, len - n, ".%03dZ", (int)((now / 1000) % 1000));
}

void ecf_logv(const char *stage, ecf_log_level level, const char *fmt, va_list ap)
{
    if (level > log_level)
        return;
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    char ts[40];
    format_time(ts, sizeof ts);
    g_autoptr(GString) line = g_string_sized_new(128);
    if (log_format == ECF_LOG_JSON) {
        g_string_append_printf(line, "{\"ts\":\"%s\",\"level\":\"%s\"", ts, level_names[level]);
        if (stage) {
            g_string_append(line, ",\"stage\":");
            append_json_string(line, stage);
        }
        g_string_append(line, ",\"msg\":");
        append_json_string(line, msg);
        g_string_append(line, "}\n");
    } else {
        if (atomic_load(&status_line))
            g_string_append(line, "\r\033[K");
        g_string_append_printf(line, "%s %-5s ", ts, level_names[level]);
        if (stage)
            g_string_append_printf(line, "[%s] ", stage);
        g_string_append(line, msg);
        g_string_append_c(line, '\n');
    }
    ecf_mutex_lock(&log_lock);
    fputs(line->str, stderr);
    ecf_mutex_unlock(&log_lock);
}

/* ------------------------------------------------------------ events */

typedef struct {
    gint64 window_start;
    guint in_window;
    guint64 suppressed;
} event_rate;

static GHashTable *event_rates; /* "stage\x1fevent" -> event_rate*, under log_lock */

gboolean ecf_log_event_admit(const char *stage, const char *event, gint64 now_us, guint64 *suppressed)
{
    g_autofree char *key = g_strdup_printf("%s\x1f%s", stage ? stage : "", event);
    ecf_mutex_lock(&log_lock);
    if (!event_rates)
        event_rates = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    event_rate *r = g_hash_table_lookup(event_rates, key);
    if (!r) {
        r = g_new0(event_rate, 1);
        r->window_start = now_us;
        g_hash_table_insert(event_rates, g_steal_pointer(&key), r);
    }
    if (now_us - r->window_start >= ECF_LOG_EVENT_WINDOW_US) {
        r->window_start = now_us;
        r->in_window = 0;
    }
    gboolean admit = r->in_window < ECF_LOG_EVENT_BURST;
    if (admit) {
        r->in_window++;
        *suppressed = r->suppressed;
        r->suppressed = 0;
    } else {
        r->suppressed++;
    }
    ecf_mutex_unlock(&log_lock);
    return admit;
}

/* A whole number or a decimal, as JSON would read it. */
static gboolean looks_numeric(const char *v)
{
    if (!*v)
        return FALSE;
    char *end = NULL;
    g_ascii_strtod(v, &end);
    return *end == '\0' && (g_ascii_isdigit(*v) || (*v == '-' && g_ascii_isdigit(v[1]))) &&
           !strpbrk(v, "xXnN"); /* not hex, inf or nan */
}

static void append_logfmt_value(GString *out, const char *v)
{
    if (*v && !strpbrk(v, " \"=\t\n"))
        g_string_append(out, v);
    else
        append_json_string(out, v);
}

void ecf_log_event_line(GString *line, ecf_log_format format, const char *ts, const char *stage, ecf_log_level level,
                        const char *event, const char *const *fields, guint64 suppressed)
{
    g_autofree char *n_suppressed = suppressed ? g_strdup_printf("%" G_GUINT64_FORMAT, suppressed) : NULL;
    /* a "msg" field leads the text line, so what people (and scripts) read
     * there stays as it was; the fields follow as key=value */
    const char *msg = NULL;
    for (const char *const *f = fields; f && f[0] && f[1]; f += 2)
        if (strcmp(f[0], "msg") == 0)
            msg = f[1];
    g_autoptr(GString) text = g_string_new(msg);
    g_string_append_printf(text, "%sevent=%s", msg ? " " : "", event);
    for (const char *const *f = fields; f && f[0] && f[1]; f += 2) {
        if (strcmp(f[0], "msg") == 0)
            continue;
        g_string_append_printf(text, " %s=", f[0]);
        append_logfmt_value(text, f[1]);
    }
    if (n_suppressed)
        g_string_append_printf(text, " suppressed=%s", n_suppressed);
    if (format == ECF_LOG_TEXT) {
        g_string_append_printf(line, "%s %-5s ", ts, level_names[level]);
        if (stage)
            g_string_append_printf(line, "[%s] ", stage);
        g_string_append_printf(line, "%s\n", text->str);
        return;
    }
    g_string_append_printf(line, "{\"ts\":\"%s\",\"level\":\"%s\"", ts, level_names[level]);
    if (stage) {
        g_string_append(line, ",\"stage\":");
        append_json_string(line, stage);
    }
    g_string_append(line, ",\"event\":");
    append_json_string(line, event);
    for (const char *const *f = fields; f && f[0] && f[1]; f += 2) {
        /* the log's own members keep their meaning */
        if (!strcmp(f[0], "ts") || !strcmp(f[0], "level") || !strcmp(f[0], "stage") || !strcmp(f[0], "event") ||
            !strcmp(f[0], "msg"))
            continue;
        g_string_append_c(line, ',');
        append_json_string(line, f[0]);
        g_string_append_c(line, ':');
        if (looks_numeric(f[1]))
            g_string_append(line, f[1]);
        else
            append_json_string(line, f[1]);
    }
    if (n_suppressed)
        g_string_append_printf(line, ",\"suppressed\":%s", n_suppressed);
    g_string_append(line, ",\"msg\":");
    append_json_string(line, msg ? msg : text->str);
    g_string_append(line, "}\n");
}

void ecf_log_event_write(const char *stage, ecf_log_level level, const char *event, const char *const *fields)
{
    guint64 suppressed = 0;
    if (level > log_level || !event || !ecf_log_event_admit(stage, event, g_get_monotonic_time(), &suppressed))
        return;
    char ts[40];
    format_time(ts, sizeof ts);
    g_autoptr(GString) line = g_string_sized_new(160);
    if (log_format == ECF_LOG_TEXT && atomic_load(&status_line))
        g_string_append(line, "\r\033[K");
    ecf_log_event_line(line, log_format, ts, stage, level, event, fields, suppressed);
    ecf_mutex_lock(&log_lock);
    fputs(line->str, stderr);
    ecf_mutex_unlock(&log_lock);
}

void ecf_logf(const char *stage, ecf_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ecf_logv(stage, level, fmt, ap);
    va_end(ap);
}

G_DEFINE_QUARK(ecf - error - quark, ecf_error)
