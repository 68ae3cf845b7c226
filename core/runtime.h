/*
 * Runs a checked pipeline: one thread per stage, rings between them, acks
 * flowing back, metrics served, and a draining shutdown.
 */
#pragma once
#include <glib.h>

#include "pipeline.h"

typedef struct ecf_runtime ecf_runtime;

/* Exit codes of `ecflow run`. */
enum { ECF_EXIT_OK = 0, ECF_EXIT_FAILURE = 1, ECF_EXIT_CONFIG = 2 };

/* The runtime borrows `def`; keep it alive until ecf_runtime_free(). */
ecf_runtime *ecf_runtime_new(ecf_pipeline_def *def);
void ecf_runtime_free(ecf_runtime *rt);

/* Creates, starts and runs every stage until the sources finish or a stop
 * is requested; then drains. Returns an ECF_EXIT_* code. With
 * `handle_signals`, SIGINT/SIGTERM request the stop and a second one exits
 * at once. */
int ecf_runtime_run(ecf_runtime *rt, gboolean handle_signals);
/* What `ecflow validate` adds to the file checks: every stage's `create`
 * (cross-option rules, schema negotiation), then `destroy`. */
int ecf_runtime_check(ecf_runtime *rt);

/* `ecflow GROUP VERB FILE`: creates every stage, then runs the plugin
 * command of each stage declaring `group` (only `stage_name`'s when given);
 * an exit code. */
int ecf_runtime_command(ecf_runtime *rt, const char *group, const char *stage_name, int argc, const char *const *argv);
/* Async-safe enough for a signal-waiting thread or a test. */
void ecf_runtime_request_stop(ecf_runtime *rt);

/* For tests: the metrics registry (valid for the runtime's life). */
struct ecf_metrics *ecf_runtime_metrics(ecf_runtime *rt);
/* The metrics endpoint's bound port, 0 when none. */
guint16 ecf_runtime_metrics_port(ecf_runtime *rt);
