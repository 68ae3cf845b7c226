#include "status.h"

#include <math.h>
#include <string.h>

static void json_string(GString *out, const char *s)
{
    g_string_append_c(out, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            g_string_append_printf(out, "\\%c", *p);
        else if (*p < 0x20)
            g_string_append_printf(out, "\\u%04x", *p);
        else
            g_string_append_c(out, (char)*p);
    }
    g_string_append_c(out, '"');
}

/* JSON has no NaN or infinities: null stands for them. */
static void json_number(GString *out, double v)
{
    char buf[32];
    if (isfinite(v)) {
        /* the shortest of the two that reads back as the same double */
        g_snprintf(buf, sizeof buf, "%.15g", v);
        if (g_ascii_strtod(buf, NULL) != v)
            g_snprintf(buf, sizeof buf, "%.17g", v);
        g_string_append(out, buf);
    } else
        g_string_append(out, "null");
}

char *ecf_status_topology(const ecf_pipeline_def *def)
{
    GString *out = g_string_new("[");
    for (guint i = 0; i < def->order->len; i++) {
        const ecf_stage_def *sd = def->order->pdata[i];
        g_string_append(out, i ? ",{\"name\":" : "{\"name\":");
        json_string(out, sd->name);
        g_string_append(out, ",\"plugin\":");
        json_string(out, sd->plugin_name);
        g_string_append(out, ",\"kind\":");
        json_string(out, sd->plugin ? ecf_kind_name(sd->plugin->desc.kind) : "unknown");
        g_string_append(out, ",\"inputs\":[");
        for (guint j = 0; j < sd->inputs->len; j++) {
            const ecf_input_ref *in = sd->inputs->pdata[j];
            g_string_append(out, j ? ",{\"stage\":" : "{\"stage\":");
            json_string(out, in->stage);
            g_string_append(out, ",\"port\":");
            if (in->port)
                json_string(out, in->port);
            else
                g_string_append(out, "null");
            g_string_append_c(out, '}');
        }
        g_string_append(out, "],\"ports\":[");
        const char *const *ports = ecf_stage_ports(sd);
        for (guint j = 0; ports && ports[j]; j++) {
            if (j)
                g_string_append_c(out, ',');
            json_string(out, ports[j]);
        }
        g_string_append(out, "]}");
    }
    g_string_append_c(out, ']');
    return g_string_free(out, FALSE);
}

/* `a="x",b="y\"z"` -> {"a":"x","b":"y\"z"}; FALSE when it is not that shape. */
static gboolean labels_object(GString *out, const char *s)
{
    g_string_append_c(out, '{');
    gboolean first = TRUE;
    while (*s) {
        const char *eq = strchr(s, '=');
        if (!eq || eq == s || eq[1] != '"')
            return FALSE;
        g_autofree char *key = g_strndup(s, (gsize)(eq - s));
        g_autoptr(GString) value = g_string_new(NULL);
        const char *p = eq + 2;
        for (; *p && *p != '"'; p++) {
            gboolean escaped = *p == '\\' && p[1];
            if (escaped)
                p++;
            g_string_append_c(value, escaped && *p == 'n' ? '\n' : *p);
        }
        if (*p != '"')
            return FALSE;
        if (!first)
            g_string_append_c(out, ',');
        first = FALSE;
        json_string(out, key);
        g_string_append_c(out, ':');
        json_string(out, value->str);
        s = p + 1;
        if (*s == ',')
            s++;
        else if (*s)
            return FALSE;
    }
    g_string_append_c(out, '}');
    return TRUE;
}

static const char *kind_name(ecf_metric_kind k)
{
    return k == ECF_METRIC_COUNTER ? "counter" : k == ECF_METRIC_GAUGE ? "gauge" : "histogram";
}

static void metric_json(GString *out, const ecf_metric *m)
{
    g_string_append(out, "{\"name\":");
    json_string(out, ecf_metric_base(m));
    g_string_append(out, ",\"stage\":");
    if (ecf_metric_stage(m))
        json_string(out, ecf_metric_stage(m));
    else
        g_string_append(out, "null");
    g_string_append(out, ",\"labels\":");
    gsize mark = out->len;
    if (!labels_object(out, ecf_metric_labels(m))) {
        g_string_truncate(out, mark);
        g_string_append(out, "{\"_raw\":");
        json_string(out, ecf_metric_labels(m));
        g_string_append_c(out, '}');
    }
    g_string_append_printf(out, ",\"type\":\"%s\",", kind_name(ecf_metric_kind_of(m)));
    if (ecf_metric_kind_of(m) != ECF_METRIC_HISTOGRAM) {
        g_string_append(out, "\"value\":");
        json_number(out, ecf_metric_value(m));
        g_string_append_c(out, '}');
        return;
    }
    guint64 cumulative[ECF_METRIC_MAX_BUCKETS];
    const double *bounds;
    guint n = ecf_metric_read_buckets(m, &bounds, cumulative);
    g_string_append_printf(out, "\"count\":%" G_GUINT64_FORMAT ",\"sum\":", ecf_metric_count(m));
    json_number(out, ecf_metric_value(m));
    g_string_append(out, ",\"buckets\":[");
    for (guint i = 0; i < n; i++) {
        g_string_append(out, i ? ",[" : "[");
        json_number(out, bounds[i]);
        g_string_append_printf(out, ",%" G_GUINT64_FORMAT "]", cumulative[i]);
    }
    g_string_append(out, "]}");
}

static void status_read(void *user, const ecf_metrics_info *info, const ecf_metric *const *metrics, guint n)
{
    GString *out = user;
    gint64 now = g_get_real_time();
    g_string_append_printf(out, "{\"version\":%d,\"pipeline\":", ECF_STATUS_VERSION);
    json_string(out, info->pipeline);
    g_string_append_printf(out, ",\"time\":%.3f,\"uptime_seconds\":%.3f,\"stages\":%s,\"metrics\":[", now / 1e6,
                           (now - info->started_us) / 1e6, info->topology ? info->topology : "[]");
    for (guint i = 0; i < n; i++) {
        if (i)
            g_string_append_c(out, ',');
        g_string_append_c(out, '\n');
        metric_json(out, metrics[i]);
    }
    g_string_append(out, "\n]}\n");
}

char *ecf_status_json(ecf_metrics *reg)
{
    GString *out = g_string_sized_new(8192);
    ecf_metrics_read(reg, status_read, out);
    return g_string_free(out, FALSE);
}
