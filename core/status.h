/*
 * /status.json: the metrics registry's series plus the pipeline's DAG, as
 * one JSON document (schema in docs/status.md). Built from the same read of
 * the registry as a /metrics scrape, so both show the same numbers.
 */
#pragma once
#include <glib.h>

#include "metrics.h"
#include "pipeline.h"

/* Bumped when a field changes meaning or goes away; new fields do not. */
#define ECF_STATUS_VERSION 1

/* The DAG, for ecf_metrics_set_topology: a JSON array of stages. */
char *ecf_status_topology(const ecf_pipeline_def *def);
char *ecf_status_json(ecf_metrics *reg);
/* The status page (status.html), NUL-terminated, built into the binary. */
extern const char ecf_status_page[];
