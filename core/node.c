#include "node.h"

#include <string.h>
#include <yaml.h>

static ecf_node *node_new(ecf_node_kind kind, int line)
{
    ecf_node *n = g_new0(ecf_node, 1);
    n->kind = kind;
    n->line = line;
    return n;
}

static void pair_free(gpointer p)
{
    ecf_pair *pair = p;
    g_free(pair->key);
    ecf_node_free(pair->value);
    g_free(pair);
}

void ecf_node_free(ecf_node *n)
{
    if (!n)
        return;
    g_free(n->scalar);
    if (n->items)
        g_ptr_array_free(n->items, TRUE);
    g_free(n);
}

ecf_node *ecf_node_new_map(int line)
{
    ecf_node *n = node_new(ECF_NODE_MAP, line);
    n->items = g_ptr_array_new_with_free_func(pair_free);
    return n;
}

static ecf_node *new_seq(int line)
{
    ecf_node *n = node_new(ECF_NODE_SEQ, line);
    n->items = g_ptr_array_new_with_free_func((GDestroyNotify)ecf_node_free);
    return n;
}

ecf_node *ecf_node_copy(const ecf_node *n)
{
    if (!n)
        return NULL;
    ecf_node *c;
    switch (n->kind) {
    case ECF_NODE_MAP:
        c = ecf_node_new_map(n->line);
        for (guint i = 0; i < n->items->len; i++) {
            ecf_pair *p = n->items->pdata[i];
            ecf_node_set(c, p->key, p->line, ecf_node_copy(p->value));
        }
        return c;
    case ECF_NODE_SEQ:
        c = new_seq(n->line);
        for (guint i = 0; i < n->items->len; i++)
            g_ptr_array_add(c->items, ecf_node_copy(n->items->pdata[i]));
        return c;
    default:
        c = node_new(n->kind, n->line);
        c->scalar = g_strdup(n->scalar);
        c->plain = n->plain;
        return c;
    }
}

ecf_pair *ecf_node_pair(const ecf_node *map, const char *key)
{
    if (!map || map->kind != ECF_NODE_MAP)
        return NULL;
    for (guint i = 0; i < map->items->len; i++) {
        ecf_pair *p = map->items->pdata[i];
        if (strcmp(p->key, key) == 0)
            return p;
    }
    return NULL;
}

ecf_node *ecf_node_get(const ecf_node *map, const char *key)
{
    ecf_pair *p = ecf_node_pair(map, key);
    return p ? p->value : NULL;
}

void ecf_node_set(ecf_node *map, const char *key, int line, ecf_node *value)
{
    ecf_pair *p = ecf_node_pair(map, key);
    if (p) {
        ecf_node_free(p->value);
        p->value = value;
        return;
    }
    p = g_new0(ecf_pair, 1);
    p->key = g_strdup(key);
    p->line = line;
    p->value = value;
    g_ptr_array_add(map->items, p);
}

void ecf_node_remove(ecf_node *map, const char *key)
{
    for (guint i = 0; map && map->kind == ECF_NODE_MAP && i < map->items->len; i++) {
        ecf_pair *p = map->items->pdata[i];
        if (strcmp(p->key, key) == 0) {
            g_ptr_array_remove_index(map->items, i);
            return;
        }
    }
}

void ecf_node_merge(ecf_node *base, const ecf_node *patch)
{
    for (guint i = 0; i < patch->items->len; i++) {
        ecf_pair *p = patch->items->pdata[i];
        ecf_node *old = ecf_node_get(base, p->key);
        if (p->value->kind == ECF_NODE_NULL)
            ecf_node_remove(base, p->key);
        else if (old && old->kind == ECF_NODE_MAP && p->value->kind == ECF_NODE_MAP)
            ecf_node_merge(old, p->value);
        else
            ecf_node_set(base, p->key, p->line, ecf_node_copy(p->value));
    }
}

const char *ecf_node_kind_name(ecf_node_kind k)
{
    switch (k) {
    case ECF_NODE_NULL: return "null";
    case ECF_NODE_SCALAR: return "a scalar";
    case ECF_NODE_SEQ: return "a list";
    case ECF_NODE_MAP: return "a map";
    }
    return "?";
}

/* ------------------------------------------------------------ YAML -> tree */

/* libyaml keeps an alias as a second reference to its anchor's node; the tree
 * copies it, so `a1: &a1 [*a0, *a0]`-style documents (and self-references)
 * grow exponentially. Bound what a document may expand to. */
#define MAX_ALIAS_EXPANSIONS 10000
#define MAX_TREE_NODES (1u << 20)
#define MAX_TREE_BYTES (64u << 20)

typedef struct {
    yaml_document_t *doc;
    const char *file;
    GPtrArray *errors;
    guint8 *seen; /* per YAML node: converted once already (an alias use) */
    guint aliases, nodes;
    gsize bytes;
    gboolean over; /* a bound was hit: stop converting, one error given */
} convert_ctx;

static gboolean over_bounds(convert_ctx *c, yaml_node_t *yn, int line)
{
    if (c->over)
        return TRUE;
    gsize idx = (gsize)(yn - c->doc->nodes.start);
    if (c->seen[idx] && ++c->aliases > MAX_ALIAS_EXPANSIONS)
        g_ptr_array_add(c->errors, g_strdup_printf("%s:%d: YAML aliases expand more than %u times: refused", c->file,
                                                   line, MAX_ALIAS_EXPANSIONS));
    else if (++c->nodes > MAX_TREE_NODES)
        g_ptr_array_add(c->errors, g_strdup_printf("%s:%d: the document (its YAML aliases expanded) has more than %u "
                                                   "nodes: refused",
                                                   c->file, line, MAX_TREE_NODES));
    else if (yn->type == YAML_SCALAR_NODE && (c->bytes += yn->data.scalar.length) > MAX_TREE_BYTES)
        g_ptr_array_add(c->errors, g_strdup_printf("%s:%d: the document (its YAML aliases expanded) holds more than "
                                                   "%u MiB of text: refused",
                                                   c->file, line, MAX_TREE_BYTES >> 20));
    else {
        c->seen[idx] = 1;
        return FALSE;
    }
    c->over = TRUE;
    return TRUE;
}

static ecf_node *convert(convert_ctx *c, yaml_node_t *yn, int depth)
{
    yaml_document_t *doc = c->doc;
    const char *file = c->file;
    GPtrArray *errors = c->errors;
    int line = (int)yn->start_mark.line + 1;
    if (over_bounds(c, yn, line))
        return node_new(ECF_NODE_NULL, line);
    if (depth > 64) {
        g_ptr_array_add(errors, g_strdup_printf("%s:%d: nesting deeper than 64 levels", file, line));
        return node_new(ECF_NODE_NULL, line);
    }
    switch (yn->type) {
    case YAML_SCALAR_NODE: {
        const char *v = (const char *)yn->data.scalar.value;
        gboolean plain = yn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (plain && (strcmp(v, "") == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0))
            return node_new(ECF_NODE_NULL, line);
        ecf_node *n = node_new(ECF_NODE_SCALAR, line);
        n->scalar = g_strndup(v, yn->data.scalar.length);
        n->plain = plain;
        return n;
    }
    case YAML_SEQUENCE_NODE: {
        ecf_node *n = new_seq(line);
        for (yaml_node_item_t *it = yn->data.sequence.items.start; it < yn->data.sequence.items.top; it++)
            g_ptr_array_add(n->items, convert(c, yaml_document_get_node(doc, *it), depth + 1));
        return n;
    }
    case YAML_MAPPING_NODE: {
        ecf_node *n = ecf_node_new_map(line);
        for (yaml_node_pair_t *p = yn->data.mapping.pairs.start; p < yn->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            int kline = (int)k->start_mark.line + 1;
            if (k->type != YAML_SCALAR_NODE) {
                g_ptr_array_add(errors, g_strdup_printf("%s:%d: map keys must be plain strings", file, kline));
                continue;
            }
            const char *key = (const char *)k->data.scalar.value;
            if (ecf_node_pair(n, key)) {
                g_ptr_array_add(errors, g_strdup_printf("%s:%d: duplicate key '%s'", file, kline, key));
                continue;
            }
            ecf_node_set(n, key, kline, convert(c, yaml_document_get_node(doc, p->value), depth + 1));
        }
        return n;
    }
    default: return node_new(ECF_NODE_NULL, line);
    }
}

ecf_node *ecf_node_load_string(const char *name, const char *text, GPtrArray *errors)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&parser, &doc)) {
        g_ptr_array_add(errors,
                        g_strdup_printf("%s:%zu: YAML syntax error: %s %s", name, parser.problem_mark.line + 1,
                                        parser.problem ? parser.problem : "", parser.context ? parser.context : ""));
        yaml_parser_delete(&parser);
        return NULL;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    ecf_node *tree = NULL;
    guint before = errors->len;
    if (!root)
        g_ptr_array_add(errors, g_strdup_printf("%s:1: the file is empty", name));
    else if (root->type != YAML_MAPPING_NODE)
        g_ptr_array_add(errors, g_strdup_printf("%s:%zu: a pipeline file is a map (with 'stages:')", name,
                                                root->start_mark.line + 1));
    else {
        convert_ctx c = {.doc = &doc, .file = name, .errors = errors};
        c.seen = g_new0(guint8, (gsize)(doc.nodes.top - doc.nodes.start));
        tree = convert(&c, root, 0);
        g_free(c.seen);
    }
    if (tree && errors->len > before) { /* e.g. duplicate keys: do not guess which one counts */
        ecf_node_free(tree);
        tree = NULL;
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return tree;
}

ecf_node *ecf_node_load_file(const char *path, GPtrArray *errors)
{
    g_autofree char *text = NULL;
    g_autoptr(GError) err = NULL;
    if (!g_file_get_contents(path, &text, NULL, &err)) {
        g_ptr_array_add(errors, g_strdup_printf("%s: cannot read: %s", path, err->message));
        return NULL;
    }
    return ecf_node_load_string(path, text, errors);
}

/* ------------------------------------------------------------ ${VAR} */

static gboolean valid_var(const char *s, gsize len)
{
    if (len == 0 || !(g_ascii_isalpha(s[0]) || s[0] == '_'))
        return FALSE;
    for (gsize i = 1; i < len; i++)
        if (!(g_ascii_isalnum(s[i]) || s[i] == '_'))
            return FALSE;
    return TRUE;
}

/* Returns the expansion, or NULL with *missing set to the first unset (or
 * malformed) variable reference. */
char *ecf_expand_env_string(const char *s, char **missing)
{
    *missing = NULL;
    if (!strchr(s, '$'))
        return g_strdup(s);
    GString *out = g_string_sized_new(strlen(s));
    for (const char *p = s; *p;) {
        if (p[0] == '$' && p[1] == '$') {
            g_string_append_c(out, '$');
            p += 2;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            g_string_append_c(out, *p++);
            continue;
        }
        const char *close = strchr(p + 2, '}');
        const char *body = p + 2;
        gsize body_len = close ? (gsize)(close - body) : 0;
        const char *dflt = close ? g_strstr_len(body, (gssize)body_len, ":-") : NULL;
        gsize name_len = dflt ? (gsize)(dflt - body) : body_len;
        if (!close || !valid_var(body, name_len)) {
            *missing = g_strdup_printf("malformed variable reference '%s'", p);
            return g_string_free(out, TRUE), NULL;
        }
        g_autofree char *name = g_strndup(body, name_len);
        const char *value = g_getenv(name);
        if (value && *value)
            g_string_append(out, value);
        else if (dflt)
            g_string_append_len(out, dflt + 2, (gssize)(close - dflt - 2));
        else if (value)
            ; /* set but empty, no default: empty is what the user set */
        else {
            *missing = g_strdup_printf("environment variable '%s' is not set and has no default "
                                       "(write ${%s:-value} to give one)",
                                       name, name);
            return g_string_free(out, TRUE), NULL;
        }
        p = close + 1;
    }
    return g_string_free(out, FALSE);
}

void ecf_node_expand_env(ecf_node *n, const char *file, const char *context, GPtrArray *errors)
{
    if (!n)
        return;
    if (n->kind == ECF_NODE_SCALAR) {
        char *missing = NULL;
        char *v = ecf_expand_env_string(n->scalar, &missing);
        if (!v) {
            g_ptr_array_add(errors, g_strdup_printf("%s:%d: %s%s", file, n->line, context ? context : "", missing));
            g_free(missing);
            return;
        }
        g_free(n->scalar);
        n->scalar = v;
        return;
    }
    if (n->kind == ECF_NODE_SEQ) {
        for (guint i = 0; i < n->items->len; i++)
            ecf_node_expand_env(n->items->pdata[i], file, context, errors);
    } else if (n->kind == ECF_NODE_MAP) {
        for (guint i = 0; i < n->items->len; i++)
            ecf_node_expand_env(((ecf_pair *)n->items->pdata[i])->value, file, context, errors);
    }
}
