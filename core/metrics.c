#include "metrics.h"
#include "log.h"
#include "sync.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* Seconds; wide enough for an HTTP ack (sub-ms) and an Iceberg commit (s). */
static const double default_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
G_STATIC_ASSERT(G_N_ELEMENTS(default_bounds) <= ECF_METRIC_MAX_BUCKETS);

struct ecf_metric {
    char *base;   /* name without labels */
    char *labels; /* `status="2xx"` or "" */
    char *help;
    char *stage;
    ecf_metric_kind kind;
    _Atomic guint64 value_bits;
    _Atomic guint64 count;
    /* Inline, so replacing the bounds (ecf_metrics_set_buckets) never frees
     * what a concurrent scrape reads. */
    guint n_bounds;
    double bounds[ECF_METRIC_MAX_BUCKETS];
    _Atomic guint64 bucket[ECF_METRIC_MAX_BUCKETS];
};

typedef struct {
    ecf_metrics_refresh_fn fn;
    void *user;
} refresher;

struct ecf_metrics {
    char *pipeline;
    gint64 started_us; /* wall clock */
    char *topology;    /* JSON, or NULL */
    ecf_mutex lock;    /* registration and reading all series; updates are atomic */
    GPtrArray *metrics;
    GArray *refreshers;
};

static void metric_free(gpointer p)
{
    ecf_metric *m = p;
    g_free(m->base);
    g_free(m->labels);
    g_free(m->help);
    g_free(m->stage);
    g_free(m);
}

ecf_metrics *ecf_metrics_new(const char *pipeline)
{
    ecf_metrics *reg = g_new0(ecf_metrics, 1);
    reg->pipeline = g_strdup(pipeline ? pipeline : "ecflow");
    reg->started_us = g_get_real_time();
    ecf_mutex_init(&reg->lock);
    reg->metrics = g_ptr_array_new_with_free_func(metric_free);
    reg->refreshers = g_array_new(FALSE, FALSE, sizeof(refresher));
    return reg;
}

void ecf_metrics_free(ecf_metrics *reg)
{
    if (!reg)
        return;
    g_ptr_array_free(reg->metrics, TRUE);
    g_array_free(reg->refreshers, TRUE);
    ecf_mutex_clear(&reg->lock);
    g_free(reg->pipeline);
    g_free(reg->topology);
    g_free(reg);
}

static gboolean valid_name(const char *s, gsize len)
{
    if (len == 0 || !(g_ascii_isalpha(s[0]) || s[0] == '_'))
        return FALSE;
    for (gsize i = 0; i < len; i++)
        if (!(g_ascii_isalnum(s[i]) || s[i] == '_' || s[i] == ':'))
            return FALSE;
    return TRUE;
}

/* "name{a=\"b\"}" -> base "ecflow_name", labels "a=\"b\"". */
static gboolean split_name(const char *name, char **base, char **labels)
{
    const char *brace = strchr(name, '{');
    gsize len = brace ? (gsize)(brace - name) : strlen(name);
    if (!valid_name(name, len))
        return FALSE;
    if (brace) {
        gsize l = strlen(brace);
        if (l < 2 || brace[l - 1] != '}')
            return FALSE;
        *labels = g_strndup(brace + 1, l - 2);
    } else {
        *labels = g_strdup("");
    }
    g_autofree char *raw = g_strndup(name, len);
    *base = g_str_has_prefix(raw, "ecflow_") ? g_strdup(raw) : g_strconcat("ecflow_", raw, NULL);
    return TRUE;
}

ecf_metric *ecf_metrics_get(ecf_metrics *reg, ecf_metric_kind kind, const char *name, const char *help,
                            const char *stage)
{
    g_autofree char *base = NULL, *labels = NULL;
    if (!name || !split_name(name, &base, &labels))
        return NULL;
    ecf_mutex_lock(&reg->lock);
    ecf_metric *found = NULL;
    for (guint i = 0; i < reg->metrics->len && !found; i++) {
        ecf_metric *m = reg->metrics->pdata[i];
        if (strcmp(m->base, base) == 0 && strcmp(m->labels, labels) == 0 && g_strcmp0(m->stage, stage) == 0)
            found = m;
    }
    if (found && found->kind != kind)
        found = NULL;
    else if (!found) {
        found = g_new0(ecf_metric, 1);
        found->base = g_steal_pointer(&base);
        found->labels = g_steal_pointer(&labels);
        found->help = g_strdup(help ? help : "");
        found->stage = g_strdup(stage);
        found->kind = kind;
        found->n_bounds = G_N_ELEMENTS(default_bounds);
        memcpy(found->bounds, default_bounds, sizeof default_bounds);
        g_ptr_array_add(reg->metrics, found);
    }
    ecf_mutex_unlock(&reg->lock);
    return found;
}

static double bits_to_double(guint64 b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static guint64 double_to_bits(double d)
{
    guint64 b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static void atomic_add_double(_Atomic guint64 *bits, double v)
{
    guint64 old = atomic_load_explicit(bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(bits, &old, double_to_bits(bits_to_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void ecf_metric_do_add(ecf_metric *m, double v)
{
    if (m)
        atomic_add_double(&m->value_bits, v);
}

void ecf_metric_do_set(ecf_metric *m, double v)
{
    if (m)
        atomic_store_explicit(&m->value_bits, double_to_bits(v), memory_order_relaxed);
}

void ecf_metric_do_observe(ecf_metric *m, double v)
{
    if (!m)
        return;
    for (guint i = 0; i < m->n_bounds; i++) {
        if (v <= m->bounds[i]) {
            atomic_fetch_add_explicit(&m->bucket[i], 1, memory_order_relaxed);
            break;
        }
    }
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
    atomic_add_double(&m->value_bits, v);
}

double ecf_metric_value(const ecf_metric *m)
{
    return bits_to_double(atomic_load_explicit(&((ecf_metric *)m)->value_bits, memory_order_relaxed));
}

ecf_metric_kind ecf_metric_kind_of(const ecf_metric *m) { return m->kind; }

guint64 ecf_metric_count(const ecf_metric *m)
{
    return atomic_load_explicit(&((ecf_metric *)m)->count, memory_order_relaxed);
}

gboolean ecf_metrics_set_buckets(ecf_metrics *reg, ecf_metric *m, const double *bounds, guint n, GError **error)
{
    if (!m || m->kind != ECF_METRIC_HISTOGRAM) {
        g_set_error(error, ECF_ERROR, ECF_ERR_INVALID, "bucket bounds go with a histogram");
        return FALSE;
    }
    if (n == 0 || n > ECF_METRIC_MAX_BUCKETS) {
        g_set_error(error, ECF_ERROR, ECF_ERR_INVALID, "%s: %u bucket bounds; 1 to %d are possible", m->base, n,
                    ECF_METRIC_MAX_BUCKETS);
        return FALSE;
    }
    for (guint i = 0; i < n; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
            g_set_error(error, ECF_ERROR, ECF_ERR_INVALID, "%s: bucket bounds must be finite and increasing", m->base);
            return FALSE;
        }
    }
    ecf_mutex_lock(&reg->lock);
    gboolean fresh = ecf_metric_count(m) == 0;
    if (fresh) {
        memcpy(m->bounds, bounds, n * sizeof *bounds);
        m->n_bounds = n;
    }
    ecf_mutex_unlock(&reg->lock);
    if (!fresh)
        g_set_error(error, ECF_ERROR, ECF_ERR_INVALID, "%s: bucket bounds are set before the first observation",
                    m->base);
    return fresh;
}

void ecf_metrics_add_refresh(ecf_metrics *reg, ecf_metrics_refresh_fn fn, void *user)
{
    refresher r = {fn, user};
    ecf_mutex_lock(&reg->lock);
    g_array_append_val(reg->refreshers, r);
    ecf_mutex_unlock(&reg->lock);
}

void ecf_metrics_set_topology(ecf_metrics *reg, char *json)
{
    ecf_mutex_lock(&reg->lock);
    g_free(reg->topology);
    reg->topology = json;
    ecf_mutex_unlock(&reg->lock);
}

/* Under the lock: gauges computed on demand get their values first. */
static void refresh(ecf_metrics *reg)
{
    for (guint i = 0; i < reg->refreshers->len; i++) {
        refresher *r = &g_array_index(reg->refreshers, refresher, i);
        r->fn(r->user);
    }
}

void ecf_metrics_read(ecf_metrics *reg, ecf_metrics_read_fn fn, void *user)
{
    ecf_mutex_lock(&reg->lock);
    refresh(reg);
    ecf_metrics_info info = {reg->pipeline, reg->started_us, reg->topology};
    fn(user, &info, (const ecf_metric *const *)reg->metrics->pdata, reg->metrics->len);
    ecf_mutex_unlock(&reg->lock);
}

const char *ecf_metric_base(const ecf_metric *m) { return m->base; }
const char *ecf_metric_labels(const ecf_metric *m) { return m->labels; }
const char *ecf_metric_stage(const ecf_metric *m) { return m->stage; }
const char *ecf_metric_help(const ecf_metric *m) { return m->help; }

guint ecf_metric_read_buckets(const ecf_metric *m, const double **bounds, guint64 *cumulative)
{
    guint64 sum = 0;
    for (guint i = 0; i < m->n_bounds; i++) {
        sum += atomic_load_explicit(&((ecf_metric *)m)->bucket[i], memory_order_relaxed);
        cumulative[i] = sum;
    }
    *bounds = m->bounds;
    return m->n_bounds;
}

static void label_set(GString *out, const ecf_metrics *reg, const ecf_metric *m, const char *extra)
{
    g_string_append_printf(out, "{pipeline=\"%s\"", reg->pipeline);
    if (m->stage)
        g_string_append_printf(out, ",stage=\"%s\"", m->stage);
    if (m->labels[0])
        g_string_append_printf(out, ",%s", m->labels);
    if (extra)
        g_string_append_printf(out, ",%s", extra);
    g_string_append_c(out, '}');
}

static const char *type_name(ecf_metric_kind k)
{
    return k == ECF_METRIC_COUNTER ? "counter" : k == ECF_METRIC_GAUGE ? "gauge" : "histogram";
}

static void render_metric(GString *out, const ecf_metrics *reg, const ecf_metric *m)
{
    if (m->kind != ECF_METRIC_HISTOGRAM) {
        g_string_append(out, m->base);
        label_set(out, reg, m, NULL);
        g_string_append_printf(out, " %.17g\n", ecf_metric_value(m));
        return;
    }
    guint64 cumulative[ECF_METRIC_MAX_BUCKETS];
    const double *bounds;
    guint n = ecf_metric_read_buckets(m, &bounds, cumulative);
    for (guint i = 0; i < n; i++) {
        g_autofree char *le = g_strdup_printf("le=\"%g\"", bounds[i]);
        g_string_append_printf(out, "%s_bucket", m->base);
        label_set(out, reg, m, le);
        g_string_append_printf(out, " %" G_GUINT64_FORMAT "\n", cumulative[i]);
    }
    g_string_append_printf(out, "%s_bucket", m->base);
    label_set(out, reg, m, "le=\"+Inf\"");
    g_string_append_printf(out, " %" G_GUINT64_FORMAT "\n", ecf_metric_count(m));
    g_string_append_printf(out, "%s_sum", m->base);
    label_set(out, reg, m, NULL);
    g_string_append_printf(out, " %.17g\n", ecf_metric_value(m));
    g_string_append_printf(out, "%s_count", m->base);
    label_set(out, reg, m, NULL);
    g_string_append_printf(out, " %" G_GUINT64_FORMAT "\n", ecf_metric_count(m));
}

char *ecf_metrics_render(ecf_metrics *reg)
{
    GString *out = g_string_sized_new(4096);
    ecf_mutex_lock(&reg->lock);
    refresh(reg);
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    /* One HELP/TYPE header per family, all its series after it. */
    for (guint i = 0; i < reg->metrics->len; i++) {
        ecf_metric *m = reg->metrics->pdata[i];
        if (g_hash_table_contains(seen, m->base))
            continue;
        g_hash_table_add(seen, m->base);
        g_string_append_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->base, m->help, m->base, type_name(m->kind));
        for (guint j = i; j < reg->metrics->len; j++) {
            ecf_metric *o = reg->metrics->pdata[j];
            if (strcmp(o->base, m->base) == 0)
                render_metric(out, reg, o);
        }
    }
    ecf_mutex_unlock(&reg->lock);
    return g_string_free(out, FALSE);
}
