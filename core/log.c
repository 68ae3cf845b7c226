#include "log.h"
#include "sync.h"

#include <stdatomic.h>
#include <stdio.h>
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

void ecf_logf(const char *stage, ecf_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ecf_logv(stage, level, fmt, ap);
    va_end(ap);
}

G_DEFINE_QUARK(ecf - error - quark, ecf_error)
