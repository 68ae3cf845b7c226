#include "options.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ scalars */

gboolean ecf_parse_bool(const char *s, gboolean *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (guint i = 0; i < G_N_ELEMENTS(yes); i++) {
        if (g_ascii_strcasecmp(s, yes[i]) == 0)
            return *out = TRUE, TRUE;
        if (g_ascii_strcasecmp(s, no[i]) == 0)
            return *out = FALSE, TRUE;
    }
    return FALSE;
}

typedef struct {
    const char *suffix;
    double factor;
} unit;

/* Number followed by an optional unit from `units` (longest suffix first). */
static gboolean parse_with_units(const char *s, const unit *units, guint n, double *out)
{
    char *end = NULL;
    while (g_ascii_isspace(*s))
        s++;
    double v = g_ascii_strtod(s, &end);
    if (end == s || v < 0 || !isfinite(v))
        return FALSE;
    while (g_ascii_isspace(*end))
        end++;
    if (*end == '\0') {
        *out = v * units[0].factor;
        return TRUE;
    }
    for (guint i = 1; i < n; i++) {
        if (g_ascii_strcasecmp(end, units[i].suffix) == 0) {
            *out = v * units[i].factor;
            return TRUE;
        }
    }
    return FALSE;
}

gboolean ecf_parse_duration(const char *s, gint64 *us)
{
    /* A bare number is seconds: `commit_interval: 10` means ten seconds. */
    static const unit units[] = {{"", 1e6},   {"us", 1},     {"ms", 1e3},   {"s", 1e6},
                                 {"m", 60e6}, {"h", 3600e6}, {"d", 86400e6}};
    double v;
    if (!parse_with_units(s, units, G_N_ELEMENTS(units), &v) || v > (double)G_MAXINT64)
        return FALSE;
    *us = (gint64)v;
    return TRUE;
}

gboolean ecf_parse_size(const char *s, gint64 *bytes)
{
    static const unit units[] = {{"", 1},         {"b", 1},    {"k", 1e3},           {"kb", 1e3},
                                 {"kib", 1024.0}, {"m", 1e6},  {"mb", 1e6},          {"mib", 1048576.0},
                                 {"g", 1e9},      {"gb", 1e9}, {"gib", 1073741824.0}};
    double v;
    if (!parse_with_units(s, units, G_N_ELEMENTS(units), &v) || v > (double)G_MAXINT64 || v != floor(v))
        return FALSE;
    *bytes = (gint64)v;
    return TRUE;
}

static gboolean parse_int(const char *s, gint64 *out)
{
    char *end = NULL;
    errno = 0;
    gint64 v = g_ascii_strtoll(s, &end, 10);
    if (end == s || *end || errno)
        return FALSE;
    *out = v;
    return TRUE;
}

/* ------------------------------------------------------------ suggestions */

static guint edit_distance(const char *a, const char *b)
{
    gsize la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return G_MAXUINT;
    guint prev[65], cur[65];
    for (gsize j = 0; j <= lb; j++)
        prev[j] = (guint)j;
    for (gsize i = 1; i <= la; i++) {
        cur[0] = (guint)i;
        for (gsize j = 1; j <= lb; j++) {
            guint cost = a[i - 1] == b[j - 1] ? 0 : 1;
            cur[j] = MIN(MIN(prev[j] + 1, cur[j - 1] + 1), prev[j - 1] + cost);
        }
        memcpy(prev, cur, sizeof(guint) * (lb + 1));
    }
    return prev[lb];
}

const char *ecf_suggest(const char *word, const char *const *candidates, guint n)
{
    const char *best = NULL;
    guint best_d = G_MAXUINT;
    for (guint i = 0; i < n; i++) {
        guint d = edit_distance(word, candidates[i]);
        if (d < best_d) {
            best_d = d;
            best = candidates[i];
        }
    }
    guint limit = MAX(2, (guint)strlen(word) / 3);
    return best_d <= limit ? best : NULL;
}

/* ------------------------------------------------------------ errors */

G_GNUC_PRINTF(4, 5)
static void opt_error(const ecf_opt_ctx *ctx, int line, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    GString *e = g_string_new(NULL);
    g_string_append_printf(e, "%s:%d: ", ctx->file, line);
    if (ctx->stage)
        g_string_append_printf(e, "stage '%s': ", ctx->stage);
    if (key)
        g_string_append_printf(e, "%s '%s': ", ctx->stage ? "option" : "setting", key);
    g_string_append(e, msg);
    g_ptr_array_add(ctx->errors, g_string_free(e, FALSE));
}

char *ecf_option_type_string(const ecf_option *o)
{
    gboolean ranged = o->min <= o->max;
    switch (o->type) {
    case ECF_OPT_T_STRING: return g_strdup("string");
    case ECF_OPT_T_FILE: return g_strdup("file path (relative to the pipeline file)");
    case ECF_OPT_T_BOOL: return g_strdup("bool");
    case ECF_OPT_T_ENUM: return g_strdup_printf("enum %s", o->choices);
    case ECF_OPT_T_LIST: return g_strdup("list of strings");
    case ECF_OPT_T_MAP: return g_strdup("map of strings");
    case ECF_OPT_T_INT: return ranged ? g_strdup_printf("int [%.0f..%.0f]", o->min, o->max) : g_strdup("int");
    case ECF_OPT_T_DOUBLE: return ranged ? g_strdup_printf("float [%g..%g]", o->min, o->max) : g_strdup("float");
    case ECF_OPT_T_DURATION:
        return ranged ? g_strdup_printf("duration [%gs..%gs]", o->min, o->max) : g_strdup("duration");
    case ECF_OPT_T_SIZE: return ranged ? g_strdup_printf("size [%.0f..%.0f bytes]", o->min, o->max) : g_strdup("size");
    }
    return g_strdup("?");
}

/* ------------------------------------------------------------ conversion */

static const char *shown(const ecf_option *o, const char *v) { return (o->flags & ECF_SECRET) ? "<hidden>" : v; }

static gboolean in_range(const ecf_option *o, double v) { return o->min > o->max || (v >= o->min && v <= o->max); }

static gboolean enum_has(const char *choices, const char *v)
{
    g_auto(GStrv) parts = g_strsplit(choices, "|", -1);
    return g_strv_contains((const char *const *)parts, v);
}

/* Converts one scalar into the config field. */
static gboolean set_scalar(const ecf_option *o, void *config, const char *v, int line, const ecf_opt_ctx *ctx)
{
    guint8 *field = (guint8 *)config + o->offset;
    g_autofree char *range = ecf_option_type_string(o);
    switch (o->type) {
    case ECF_OPT_T_STRING:
        g_free(*(char **)field);
        *(char **)field = g_strdup(v);
        return TRUE;
    case ECF_OPT_T_FILE: {
        g_autofree char *rel = g_path_get_dirname(ctx->file);
        g_autofree char *dir = g_canonicalize_filename(rel, NULL); /* from the cwd */
        g_free(*(char **)field);
        *(char **)field = g_canonicalize_filename(v, dir);
        return TRUE;
    }
    case ECF_OPT_T_ENUM:
        if (!enum_has(o->choices, v)) {
            opt_error(ctx, line, o->name, "expected one of %s, got \"%s\"", o->choices, v);
            return FALSE;
        }
        g_free(*(char **)field);
        *(char **)field = g_strdup(v);
        return TRUE;
    case ECF_OPT_T_BOOL: {
        gboolean b;
        if (!ecf_parse_bool(v, &b)) {
            opt_error(ctx, line, o->name, "expected true or false, got \"%s\"", shown(o, v));
            return FALSE;
        }
        *(bool *)field = b;
        return TRUE;
    }
    case ECF_OPT_T_INT: {
        gint64 i;
        if (!parse_int(v, &i)) {
            opt_error(ctx, line, o->name, "expected an integer, got \"%s\"", shown(o, v));
            return FALSE;
        }
        if (!in_range(o, (double)i)) {
            opt_error(ctx, line, o->name, "%s is out of range: %s", shown(o, v), range);
            return FALSE;
        }
        *(gint64 *)field = i;
        return TRUE;
    }
    case ECF_OPT_T_DOUBLE: {
        char *end = NULL;
        double d = g_ascii_strtod(v, &end);
        if (end == v || *end || !isfinite(d)) {
            opt_error(ctx, line, o->name, "expected a number, got \"%s\"", shown(o, v));
            return FALSE;
        }
        if (!in_range(o, d)) {
            opt_error(ctx, line, o->name, "%s is out of range: %s", shown(o, v), range);
            return FALSE;
        }
        *(double *)field = d;
        return TRUE;
    }
    case ECF_OPT_T_DURATION: {
        gint64 us;
        if (!ecf_parse_duration(v, &us)) {
            opt_error(ctx, line, o->name, "expected a duration like \"250ms\", \"10s\" or \"5m\", got \"%s\"",
                      shown(o, v));
            return FALSE;
        }
        if (!in_range(o, us / 1e6)) {
            opt_error(ctx, line, o->name, "%s is out of range: %s", shown(o, v), range);
            return FALSE;
        }
        *(gint64 *)field = us;
        return TRUE;
    }
    case ECF_OPT_T_SIZE: {
        gint64 bytes;
        if (!ecf_parse_size(v, &bytes)) {
            opt_error(ctx, line, o->name, "expected a size like \"4096\", \"64KiB\" or \"128MiB\", got \"%s\"",
                      shown(o, v));
            return FALSE;
        }
        if (!in_range(o, (double)bytes)) {
            opt_error(ctx, line, o->name, "%s is out of range: %s", shown(o, v), range);
            return FALSE;
        }
        *(gint64 *)field = bytes;
        return TRUE;
    }
    case ECF_OPT_T_LIST: {
        char **list = g_new0(char *, 2);
        list[0] = g_strdup(v);
        g_strfreev(*(char ***)field);
        *(char ***)field = list;
        return TRUE;
    }
    case ECF_OPT_T_MAP: opt_error(ctx, line, o->name, "expected a map, got \"%s\"", shown(o, v)); return FALSE;
    }
    return FALSE;
}

static gboolean set_list(const ecf_option *o, void *config, const ecf_node *seq, const ecf_opt_ctx *ctx)
{
    GPtrArray *items = g_ptr_array_new_with_free_func(g_free); /* an error frees the items taken so far */
    for (guint i = 0; i < seq->items->len; i++) {
        const ecf_node *it = seq->items->pdata[i];
        if (it->kind != ECF_NODE_SCALAR) {
            opt_error(ctx, it->line, o->name, "list items must be strings, got %s", ecf_node_kind_name(it->kind));
            g_ptr_array_free(items, TRUE);
            return FALSE;
        }
        g_ptr_array_add(items, g_strdup(it->scalar));
    }
    g_ptr_array_add(items, NULL);
    char ***field = (char ***)((guint8 *)config + o->offset);
    g_strfreev(*field);
    *field = (char **)g_ptr_array_free(items, FALSE);
    return TRUE;
}

/* Map options collect key/value pairs in a GPtrArray until the end. */
typedef struct {
    const ecf_option *opt;
    GPtrArray *kv; /* alternating key, value */
} map_acc;

/* A map's values never go into a message, only its keys: a map may be
 * secret as a whole (ECF_OPT_SECRET_MAP: librdkafka passwords), and a key
 * says enough. */
static gboolean flatten_map(const ecf_option *o, const char *prefix, const ecf_node *map, GPtrArray *kv,
                            const ecf_opt_ctx *ctx)
{
    gboolean ok = TRUE;
    for (guint i = 0; i < map->items->len; i++) {
        const ecf_pair *p = map->items->pdata[i];
        g_autofree char *key = prefix ? g_strconcat(prefix, ".", p->key, NULL) : g_strdup(p->key);
        if (p->value->kind == ECF_NODE_MAP) {
            ok &= flatten_map(o, key, p->value, kv, ctx);
        } else if (p->value->kind == ECF_NODE_SCALAR) {
            g_ptr_array_add(kv, g_strdup(key));
            g_ptr_array_add(kv, g_strdup(p->value->scalar));
        } else {
            opt_error(ctx, p->line, o->name, "value of '%s' must be a string, got %s", key,
                      ecf_node_kind_name(p->value->kind));
            ok = FALSE;
        }
    }
    return ok;
}

static void store_map(const ecf_option *o, void *config, GPtrArray *kv)
{
    guint n = kv->len / 2;
    ecf_kv *arr = g_new0(ecf_kv, n + 1);
    for (guint i = 0; i < n; i++) {
        arr[i].key = kv->pdata[2 * i];
        arr[i].value = kv->pdata[2 * i + 1];
    }
    *(ecf_kv **)((guint8 *)config + o->offset) = arr;
    g_free(g_ptr_array_free(kv, FALSE)); /* the strings now belong to arr */
}

static const ecf_option *find_option(const ecf_option *table, const char *name)
{
    for (const ecf_option *o = table; o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

/* "kafka.linger.ms" -> the MAP option "kafka" and sub-key "linger.ms". */
static const ecf_option *find_map_prefix(const ecf_option *table, const char *name, const char **sub)
{
    for (const ecf_option *o = table; o->name; o++) {
        gsize n = strlen(o->name);
        if (o->type == ECF_OPT_T_MAP && strncmp(name, o->name, n) == 0 && name[n] == '.') {
            *sub = name + n + 1;
            return o;
        }
    }
    return NULL;
}

static void unknown_key(const ecf_option *table, const char *key, int line, const ecf_opt_ctx *ctx)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    for (const ecf_option *o = table; o->name; o++)
        g_ptr_array_add(names, (gpointer)o->name);
    const char *hint = ecf_suggest(key, (const char *const *)names->pdata, names->len);
    GString *known = g_string_new(NULL);
    for (guint i = 0; i < names->len; i++)
        g_string_append_printf(known, "%s%s", i ? ", " : "", (char *)names->pdata[i]);
    if (hint)
        opt_error(ctx, line, NULL, "unknown %s '%s' (did you mean '%s'?)", ctx->stage ? "option" : "setting", key,
                  hint);
    else
        opt_error(ctx, line, NULL, "unknown %s '%s' (known: %s)", ctx->stage ? "option" : "setting", key,
                  names->len ? known->str : "none");
    g_string_free(known, TRUE);
}

static gboolean apply_value(const ecf_option *o, void *config, const ecf_node *v, const ecf_opt_ctx *ctx, map_acc *maps)
{
    if (o->type == ECF_OPT_T_MAP) {
        if (v->kind != ECF_NODE_MAP) {
            opt_error(ctx, v->line, o->name, "expected a map, got %s", ecf_node_kind_name(v->kind));
            return FALSE;
        }
        return flatten_map(o, NULL, v, maps[o - maps[0].opt].kv, ctx);
    }
    if (o->type == ECF_OPT_T_LIST && v->kind == ECF_NODE_SEQ)
        return set_list(o, config, v, ctx);
    if (v->kind != ECF_NODE_SCALAR) {
        opt_error(ctx, v->line, o->name, "expected %s, got %s", o->type == ECF_OPT_T_LIST ? "a list" : "a scalar",
                  ecf_node_kind_name(v->kind));
        return FALSE;
    }
    return set_scalar(o, config, v->scalar, v->line, ctx);
}

void *ecf_options_fill(const ecf_option *table, gsize size, const ecf_node *map, const char *const *skip,
                       const ecf_opt_ctx *ctx)
{
    static const ecf_option empty[] = {ECF_OPT_END};
    table = table ? table : empty;
    guint n_opts = 0;
    while (table[n_opts].name)
        n_opts++;

    void *config = g_malloc0(MAX(size, 1));
    guint before = ctx->errors->len;
    g_autofree gboolean *seen = g_new0(gboolean, n_opts + 1);
    g_autofree map_acc *maps = g_new0(map_acc, n_opts + 1);
    for (guint i = 0; i < n_opts; i++) {
        maps[i].opt = &table[i];
        maps[i].kv = g_ptr_array_new();
    }

    for (guint i = 0; map && i < map->items->len; i++) {
        const ecf_pair *p = map->items->pdata[i];
        if (skip && g_strv_contains(skip, p->key))
            continue;
        if (p->value->kind == ECF_NODE_NULL)
            continue; /* explicit null means "not set": the default applies */
        const char *sub = NULL;
        const ecf_option *o = find_option(table, p->key);
        if (!o && (o = find_map_prefix(table, p->key, &sub))) {
            if (p->value->kind != ECF_NODE_SCALAR) {
                opt_error(ctx, p->line, p->key, "expected a string, got %s", ecf_node_kind_name(p->value->kind));
                continue;
            }
            GPtrArray *kv = maps[o - table].kv;
            g_ptr_array_add(kv, g_strdup(sub));
            g_ptr_array_add(kv, g_strdup(p->value->scalar));
            seen[o - table] = TRUE;
            continue;
        }
        if (!o) {
            unknown_key(table, p->key, p->line, ctx);
            continue;
        }
        seen[o - table] = TRUE;
        apply_value(o, config, p->value, ctx, maps);
    }

    for (guint i = 0; i < n_opts; i++) {
        const ecf_option *o = &table[i];
        if (o->type == ECF_OPT_T_MAP) {
            store_map(o, config, maps[i].kv);
            continue;
        }
        g_ptr_array_free(maps[i].kv, TRUE);
        if (seen[i])
            continue;
        if (o->flags & ECF_REQUIRED)
            opt_error(ctx, ctx->stage_line, o->name, "required option is missing (%s)", o->help ? o->help : "no help");
        else if (o->def) {
            ecf_opt_ctx dctx = *ctx;
            dctx.stage = ctx->stage;
            set_scalar(o, config, o->def, ctx->stage_line, &dctx);
        }
    }
    if (ctx->errors->len > before) {
        ecf_options_free(table, config);
        return NULL;
    }
    return config;
}

void ecf_options_free(const ecf_option *table, void *config)
{
    if (!config)
        return;
    for (const ecf_option *o = table; o && o->name; o++) {
        guint8 *field = (guint8 *)config + o->offset;
        switch (o->type) {
        case ECF_OPT_T_STRING:
        case ECF_OPT_T_FILE:
        case ECF_OPT_T_ENUM: g_free(*(char **)field); break;
        case ECF_OPT_T_LIST: g_strfreev(*(char ***)field); break;
        case ECF_OPT_T_MAP: {
            ecf_kv *kv = *(ecf_kv **)field;
            for (ecf_kv *p = kv; p && p->key; p++) {
                g_free((char *)p->key);
                g_free((char *)p->value);
            }
            g_free(kv);
            break;
        }
        default: break;
        }
    }
    g_free(config);
}
