/*
 * Finds and loads plugins: `--plugin-path` dirs, then ECFLOW_PLUGIN_PATH
 * (colon-separated), then the build tree next to the binary, then the
 * install dir. A plugin lives in `<dir>/<name>.so`. The ABI major is checked
 * before anything else of the descriptor is read.
 */
#pragma once
#include <ecflow/plugin.h>
#include <glib.h>

typedef struct ecf_registry ecf_registry;

typedef struct {
    char *name;
    char *path;
    void *handle;
    ecf_plugin desc; /* normalised copy: fields the plugin lacks are zero */
} ecf_loaded_plugin;

ecf_registry *ecf_registry_new(const char *const *extra_dirs);
void ecf_registry_free(ecf_registry *reg);
const char *const *ecf_registry_dirs(const ecf_registry *reg);

/* Loads (once) and returns the plugin called `name`. */
const ecf_loaded_plugin *ecf_registry_find(ecf_registry *reg, const char *name, GError **error);
/* Loads one .so by path; the refusal reasons are in `error`. */
const ecf_loaded_plugin *ecf_registry_load_path(ecf_registry *reg, const char *path, GError **error);
/* Every plugin in every dir (first found wins); load failures go to `errors`. */
GPtrArray *ecf_registry_scan(ecf_registry *reg, GPtrArray *errors);

const char *ecf_kind_name(ecf_kind k);
