/*
 * Metrics registry: the metrics stages register and update, rendered as
 * Prometheus text (here) and as /status.json (status.h), both read under
 * one lock from the same series, so they always agree. metrics_http.h
 * serves them over HTTP.
 * A metric name may carry fixed labels: `http_requests_total{status="2xx"}`;
 * every series also gets `pipeline` and `stage` labels.
 */
#pragma once
#include <ecflow/plugin.h>
#include <glib.h>

typedef struct ecf_metrics ecf_metrics;

/* Most bucket bounds a histogram may have (+Inf not counted). */
#define ECF_METRIC_MAX_BUCKETS 32

/* Called under the registry's lock before every read, to set gauges that are
 * computed on demand (ring fill); it must not register metrics. */
typedef void (*ecf_metrics_refresh_fn)(void *user);

typedef struct {
    const char *pipeline;
    gint64 started_us;    /* wall clock, when the registry was made */
    const char *topology; /* JSON set by ecf_metrics_set_topology, or NULL */
} ecf_metrics_info;
/* Sees every series, in registration order, under the registry's lock. */
typedef void (*ecf_metrics_read_fn)(void *user, const ecf_metrics_info *info, const ecf_metric *const *metrics,
                                    guint n);

ecf_metrics *ecf_metrics_new(const char *pipeline);
void ecf_metrics_free(ecf_metrics *reg);

/* Returns the existing metric for (name, stage) or makes it; NULL when the
 * name is not a valid Prometheus name or the kind differs. */
ecf_metric *ecf_metrics_get(ecf_metrics *reg, ecf_metric_kind kind, const char *name, const char *help,
                            const char *stage);
void ecf_metric_do_add(ecf_metric *m, double v);
void ecf_metric_do_set(ecf_metric *m, double v);
void ecf_metric_do_observe(ecf_metric *m, double v);
double ecf_metric_value(const ecf_metric *m);
ecf_metric_kind ecf_metric_kind_of(const ecf_metric *m);
guint64 ecf_metric_count(const ecf_metric *m);

const char *ecf_metric_base(const ecf_metric *m);   /* "ecflow_..." */
const char *ecf_metric_labels(const ecf_metric *m); /* `a="b",c="d"` or "" */
const char *ecf_metric_stage(const ecf_metric *m);  /* NULL for the pipeline's own */
const char *ecf_metric_help(const ecf_metric *m);
/* A histogram's bounds and cumulative counts (`cumulative` holds
 * ECF_METRIC_MAX_BUCKETS); returns how many. */
guint ecf_metric_read_buckets(const ecf_metric *m, const double **bounds, guint64 *cumulative);

/* Replaces a histogram's bucket bounds (finite, increasing, at most
 * ECF_METRIC_MAX_BUCKETS); only before its first observation. */
gboolean ecf_metrics_set_buckets(ecf_metrics *reg, ecf_metric *m, const double *bounds, guint n, GError **error);
void ecf_metrics_add_refresh(ecf_metrics *reg, ecf_metrics_refresh_fn fn, void *user);
/* The pipeline's DAG as JSON, for /status.json; takes ownership. */
void ecf_metrics_set_topology(ecf_metrics *reg, char *json);
void ecf_metrics_read(ecf_metrics *reg, ecf_metrics_read_fn fn, void *user);
char *ecf_metrics_render(ecf_metrics *reg);
