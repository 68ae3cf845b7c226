/*
 * The metrics HTTP endpoint, on its own libmicrohttpd thread: GET /metrics
 * (the registry as Prometheus text), /status.json (the same series and the
 * DAG as JSON, docs/status.md), / and /status (a page drawing that JSON),
 * /health and /ready.
 */
#pragma once
#include <glib.h>

#include "metrics.h"

typedef struct ecf_metrics_http ecf_metrics_http;
typedef gboolean (*ecf_ready_fn)(void *user);

/* Serves `reg` on "host:port"; NULL with `error` set when the address is
 * not HOST:PORT or cannot be bound. `reg` must outlive the endpoint. */
ecf_metrics_http *ecf_metrics_http_start(ecf_metrics *reg, const char *address, ecf_ready_fn ready, void *ready_user,
                                         GError **error);
/* Stops serving and frees; NULL is fine. */
void ecf_metrics_http_stop(ecf_metrics_http *h);
/* The bound address (a port of 0 in the setting picks a free one); 0 and
 * "" for NULL. */
guint16 ecf_metrics_http_port(const ecf_metrics_http *h);
const char *ecf_metrics_http_host(const ecf_metrics_http *h);
