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

#define ecf_core_error(...) ecf_logf(NULL, ECF_LOG_ERROR, __VA_ARGS__)
#define ecf_core_warn(...) ecf_logf(NULL, ECF_LOG_WARN, __VA_ARGS__)
#define ecf_core_info(...) ecf_logf(NULL, ECF_LOG_INFO, __VA_ARGS__)
#define ecf_core_debug(...) ecf_logf(NULL, ECF_LOG_DEBUG, __VA_ARGS__)

/* GError domain of the core; codes are ecf_status values. */
#define ECF_ERROR (ecf_error_quark())
GQuark ecf_error_quark(void);
