/*
 * A pipeline file, checked: YAML -> profile patch -> ${VAR} expansion ->
 * plugins resolved -> options typed -> graph checked. Nothing runs here;
 * `ecflow validate` is this file plus printing the errors.
 */
#pragma once
#include <glib.h>

#include "loader.h"
#include "node.h"

typedef struct {
    char *stage;
    char *port; /* NULL = the default (first) port */
    int line;
} ecf_input_ref;

typedef struct {
    char *name;
    int line;
    char *plugin_name;
    const ecf_loaded_plugin *plugin; /* NULL if it failed to load */
    GPtrArray *inputs;               /* ecf_input_ref* */
    void *config;                    /* typed by the core; NULL on errors */
    guint workers;                   /* instances to run (`workers:`), >= 1 */
    gboolean workers_auto;           /* `workers: auto`: one per core */
    gint64 ring_capacity;            /* `ring_capacity:` of its input; 0 = the pipeline's */
} ecf_stage_def;

typedef struct {
    char *name;
    gint64 ring_capacity;
    gint64 batch_size;
    char *metrics;
    char *log_level;
    char *log_format;
    gint64 drain_timeout_us;
    char *default_profile;
} ecf_settings;

typedef struct {
    char *file;
    char *profile; /* applied profile, or NULL */
    ecf_settings settings;
    GPtrArray *stages; /* ecf_stage_def*, in file order */
    GPtrArray *order;  /* ecf_stage_def*, upstream before downstream */
} ecf_pipeline_def;

/* `profile` NULL falls back to ECFLOW_PROFILE, then `pipeline.default_profile`.
 * Returns NULL when anything is wrong; every problem is in `errors`. */
ecf_pipeline_def *ecf_pipeline_load(const char *path, const char *profile, ecf_registry *reg, GPtrArray *errors);
ecf_pipeline_def *ecf_pipeline_load_string(const char *name, const char *yaml, const char *profile, ecf_registry *reg,
                                           GPtrArray *errors);
void ecf_pipeline_def_free(ecf_pipeline_def *def);

ecf_stage_def *ecf_pipeline_stage(const ecf_pipeline_def *def, const char *name);
/* Output port names of a stage's plugin ({"default"} when it declares none). */
const char *const *ecf_stage_ports(const ecf_stage_def *s);

/* DOT or Mermaid text of the DAG. */
char *ecf_pipeline_graph(const ecf_pipeline_def *def, const char *format);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(ecf_pipeline_def, ecf_pipeline_def_free)
