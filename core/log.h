/* Process-wide logging: human text by default, JSON lines on request. */
#pragma once
#include <ecflow/plugin.h>
#include <glib.h>

typedef enum { ECF_LOG_TEXT, ECF_LOG_JSON } ecf_log_format;

void ecf_log_configure(ecf_log_level level, ecf_log_format format);
gboolean ecf_log_is_text(void);
/* While a live status line is on the terminal, log lines clear it first. */
void ecf_log_set_status_line(gboolean active);
gboolean ecf_log_parse_level(const char *s, ecf_log_level *out);
gboolean ecf_log_parse_format(const char *s, ecf_log_format *out);

/* stage may be NULL for messages of the core itself. */
void ecf_logv(const char *stage, ecf_log_level level, const char *fmt, va_list ap);
void ecf_logf(const char *stage, ecf_log_level level, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* Structured events (ecf_host.log_event): each (stage, event) prints at most
 * ECF_LOG_EVENT_BURST times per window; the next one printed says how many
 * were left out ("suppressed"). */
#define ECF_LOG_EVENT_BURST 10
#define ECF_LOG_EVENT_WINDOW_US G_USEC_PER_SEC
void ecf_log_event_write(const char *stage, ecf_log_level level, const char *event, const char *const *fields);
/* The rate limit alone, at `now_us` (monotonic): TRUE to print, with how
 * many were left out since the last one printed. */
gboolean ecf_log_event_admit(const char *stage, const char *event, gint64 now_us, guint64 *suppressed);
/* One event as a log line in `format` (no rate limit, no level check). */
void ecf_log_event_line(GString *line, ecf_log_format format, const char *ts, const char *stage, ecf_log_level level,
                        const char *event, const char *const *fields, guint64 suppressed);

#define ecf_core_error(...) ecf_logf(NULL, ECF_LOG_ERROR, __VA_ARGS__)
#define ecf_core_warn(...) ecf_logf(NULL, ECF_LOG_WARN, __VA_ARGS__)
#define ecf_core_info(...) ecf_logf(NULL, ECF_LOG_INFO, __VA_ARGS__)
#define ecf_core_debug(...) ecf_logf(NULL, ECF_LOG_DEBUG, __VA_ARGS__)

/* GError domain of the core; codes are ecf_status values. */
#define ECF_ERROR (ecf_error_quark())
GQuark ecf_error_quark(void);
