/*
 * Metrics registry: the metrics stages register and update, rendered as
 * Prometheus text. metrics_http.h serves it over HTTP.
 * A metric name may carry fixed labels: `http_requests_total{status="2xx"}`;
 * every series also gets `pipeline` and `stage` labels.
 */
#pragma once
#include <ecflow/plugin.h>
#include <glib.h>

typedef struct ecf_metrics ecf_metrics;

/* Called at scrape time, to add series computed on demand (ring fill). */
typedef void (*ecf_metrics_collect_fn)(void *user, GString *out);

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

void ecf_metrics_add_collector(ecf_metrics *reg, ecf_metrics_collect_fn fn, void *user);
char *ecf_metrics_render(ecf_metrics *reg);
