/*
 * The pipeline file as a tree that remembers where each value came from.
 * libyaml parses; everything after (profiles, ${VAR} expansion, options)
 * works on this tree, so every error can name its file and line.
 */
#pragma once
#include <glib.h>

typedef enum { ECF_NODE_NULL, ECF_NODE_SCALAR, ECF_NODE_SEQ, ECF_NODE_MAP } ecf_node_kind;

typedef struct ecf_node ecf_node;

typedef struct {
    char *key;
    int line;
    ecf_node *value;
} ecf_pair;

struct ecf_node {
    ecf_node_kind kind;
    int line;
    char *scalar;     /* SCALAR */
    gboolean plain;   /* SCALAR written without quotes (so `null`, `~` mean null) */
    GPtrArray *items; /* SEQ: ecf_node*, MAP: ecf_pair* */
};

/* Errors go to `errors` as "FILE:LINE: message" strings. */
ecf_node *ecf_node_load_file(const char *path, GPtrArray *errors);
ecf_node *ecf_node_load_string(const char *name, const char *text, GPtrArray *errors);
void ecf_node_free(ecf_node *n);
ecf_node *ecf_node_copy(const ecf_node *n);

ecf_node *ecf_node_get(const ecf_node *map, const char *key);
ecf_pair *ecf_node_pair(const ecf_node *map, const char *key);
/* Replaces or appends; takes ownership of value. */
void ecf_node_set(ecf_node *map, const char *key, int line, ecf_node *value);
void ecf_node_remove(ecf_node *map, const char *key);
ecf_node *ecf_node_new_map(int line);

/* Deep merge of `patch` into `base`: maps merge key by key, anything else
 * replaces; a null value removes the key. */
void ecf_node_merge(ecf_node *base, const ecf_node *patch);

/* Expands ${VAR} and ${VAR:-default} in every scalar; `$$` is a literal $.
 * Unset variables without default are errors naming file and line;
 * `context` (e.g. "stage 'out': ") is put before the message. */
void ecf_node_expand_env(ecf_node *n, const char *file, const char *context, GPtrArray *errors);
char *ecf_expand_env_string(const char *s, char **missing);

const char *ecf_node_kind_name(ecf_node_kind k);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(ecf_node, ecf_node_free)
