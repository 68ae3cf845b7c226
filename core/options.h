/*
 * Option tables: the core, not the plugin, turns a stage's YAML options into
 * the plugin's typed config struct (Fluent Bit's config_map idea). Every
 * problem becomes one "FILE:LINE: stage 'x': option 'k': ..." line.
 */
#pragma once
#include <ecflow/plugin.h>
#include <glib.h>

#include "node.h"

typedef struct {
    const char *file;
    const char *stage; /* for messages; "pipeline" settings use NULL */
    int stage_line;    /* where to point when an option is missing */
    GPtrArray *errors;
} ecf_opt_ctx;

/* Allocates and fills a config of `size` bytes from `map` (keys in `skip`
 * are not options). Returns NULL if anything was wrong; all problems are in
 * ctx->errors. */
void *ecf_options_fill(const ecf_option *table, gsize size, const ecf_node *map, const char *const *skip,
                       const ecf_opt_ctx *ctx);
void ecf_options_free(const ecf_option *table, void *config);

gboolean ecf_parse_duration(const char *s, gint64 *us);
gboolean ecf_parse_size(const char *s, gint64 *bytes);
gboolean ecf_parse_bool(const char *s, gboolean *out);

/* Nearest candidate within a small edit distance, or NULL. */
const char *ecf_suggest(const char *word, const char *const *candidates, guint n);

/* For `plugins inspect`: "int [1..4096]", "enum lz4|zstd", ... */
char *ecf_option_type_string(const ecf_option *o);
