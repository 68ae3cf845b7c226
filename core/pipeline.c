#include "pipeline.h"

#include "options.h"

#include <string.h>

static const char *const default_ports[] = {"default", NULL};
static const char *const top_keys[] = {"pipeline", "stages", "profiles"};
static const char *const reserved_stage_keys[] = {"plugin", "inputs", "workers", "ring_capacity", NULL};

static const ecf_option settings_options[] = {
    ECF_OPT_STRING("name", ecf_settings, name, "ecflow", 0, "pipeline name, a label on every metric"),
    ECF_OPT_INT("ring_capacity", ecf_settings, ring_capacity, "8", 2, 65536,
                "batches each stage's input ring holds (rounded up to a power of two): the memory between "
                "two stages is at most this many batches"),
    ECF_OPT_INT("batch_size", ecf_settings, batch_size, "1024", 1, 1048576, "events per batch that sources aim for"),
    ECF_OPT_STRING("metrics", ecf_settings, metrics, NULL, 0,
                   "HOST:PORT serving /metrics, /health and /ready; unset = no endpoint"),
    ECF_OPT_ENUM("log_level", ecf_settings, log_level, "info", "error|warn|info|debug", "log verbosity"),
    ECF_OPT_ENUM("log_format", ecf_settings, log_format, "text", "text|json",
                 "human text lines, or one JSON object per line"),
    ECF_OPT_DURATION("drain_timeout", ecf_settings, drain_timeout_us, "30s", 0, 3600,
                     "on shutdown, how long to wait for acks to settle"),
    ECF_OPT_STRING("default_profile", ecf_settings, default_profile, NULL, 0,
                   "profile applied when neither --profile nor ECFLOW_PROFILE names one"),
    ECF_OPT_END};

typedef struct {
    const char *file;
    GPtrArray *errors;
} load_ctx;

G_GNUC_PRINTF(4, 5)
static void err_at(const load_ctx *c, int line, const char *stage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (stage)
        g_ptr_array_add(c->errors, g_strdup_printf("%s:%d: stage '%s': %s", c->file, line, stage, msg));
    else
        g_ptr_array_add(c->errors, g_strdup_printf("%s:%d: %s", c->file, line, msg));
}

/* ------------------------------------------------------------ free */

static void input_free(gpointer p)
{
    ecf_input_ref *in = p;
    g_free(in->stage);
    g_free(in->port);
    g_free(in);
}

static void stage_def_free(gpointer p)
{
    ecf_stage_def *s = p;
    if (s->plugin && s->config)
        ecf_options_free(s->plugin->desc.options, s->config);
    g_free(s->name);
    g_free(s->plugin_name);
    g_ptr_array_free(s->inputs, TRUE);
    g_free(s);
}

void ecf_pipeline_def_free(ecf_pipeline_def *def)
{
    if (!def)
        return;
    g_free(def->file);
    g_free(def->profile);
    g_free(def->settings.name);
    g_free(def->settings.metrics);
    g_free(def->settings.log_level);
    g_free(def->settings.log_format);
    g_free(def->settings.default_profile);
    if (def->order)
        g_ptr_array_free(def->order, TRUE);
    g_ptr_array_free(def->stages, TRUE);
    g_free(def);
}

ecf_stage_def *ecf_pipeline_stage(const ecf_pipeline_def *def, const char *name)
{
    for (guint i = 0; i < def->stages->len; i++) {
        ecf_stage_def *s = def->stages->pdata[i];
        if (strcmp(s->name, name) == 0)
            return s;
    }
    return NULL;
}

const char *const *ecf_stage_ports(const ecf_stage_def *s)
{
    if (!s->plugin)
        return NULL;
    /* a sink has no default output, only the side ports it declares
     * (sink-iceberg's 'rejected': rows it cannot write) */
    if (s->plugin->desc.kind == ECF_SINK)
        return s->plugin->desc.ports;
    return s->plugin->desc.ports ? s->plugin->desc.ports : default_ports;
}

/* ------------------------------------------------------------ profiles */

static void patch_stage(ecf_node *stages, const ecf_pair *p)
{
    ecf_node *base = ecf_node_get(stages, p->key);
    const ecf_node *patch = p->value;
    if (patch->kind == ECF_NODE_NULL) {
        ecf_node_remove(stages, p->key);
        return;
    }
    ecf_node *new_plugin = ecf_node_get(patch, "plugin");
    ecf_node *old_plugin = ecf_node_get(base, "plugin");
    gboolean swap = base && base->kind == ECF_NODE_MAP && new_plugin && old_plugin &&
                    new_plugin->kind == ECF_NODE_SCALAR && old_plugin->kind == ECF_NODE_SCALAR &&
                    strcmp(new_plugin->scalar, old_plugin->scalar) != 0;
    if (!base || base->kind != ECF_NODE_MAP || patch->kind != ECF_NODE_MAP || swap) {
        /* Another plugin's options make no sense here: replace the stage,
         * keeping its wiring unless the patch rewires it. */
        ecf_node *replacement = ecf_node_copy(patch);
        ecf_node *inputs = ecf_node_get(base, "inputs");
        if (inputs && replacement->kind == ECF_NODE_MAP && !ecf_node_get(replacement, "inputs"))
            ecf_node_set(replacement, "inputs", inputs->line, ecf_node_copy(inputs));
        ecf_node_set(stages, p->key, p->line, replacement);
        return;
    }
    ecf_node_merge(base, patch);
}

static const char *pick_profile(const ecf_node *root, const char *requested)
{
    if (requested && *requested)
        return requested;
    const char *env = g_getenv("ECFLOW_PROFILE");
    if (env && *env)
        return env;
    ecf_node *dp = ecf_node_get(ecf_node_get(root, "pipeline"), "default_profile");
    return dp && dp->kind == ECF_NODE_SCALAR ? dp->scalar : NULL;
}

static gboolean apply_profile(ecf_node *root, const char *name, const load_ctx *c)
{
    ecf_pair *profiles = ecf_node_pair(root, "profiles");
    ecf_node *prof = profiles ? ecf_node_get(profiles->value, name) : NULL;
    if (!prof) {
        GString *known = g_string_new(NULL);
        for (guint i = 0; profiles && profiles->value->kind == ECF_NODE_MAP && i < profiles->value->items->len; i++)
            g_string_append_printf(known, "%s%s", i ? ", " : "", ((ecf_pair *)profiles->value->items->pdata[i])->key);
        err_at(c, profiles ? profiles->line : 1, NULL, "profile '%s' is not defined (profiles: %s)", name,
               known->len ? known->str : "none");
        g_string_free(known, TRUE);
        return FALSE;
    }
    if (prof->kind != ECF_NODE_MAP) {
        err_at(c, prof->line, NULL, "profile '%s' must be a map with 'pipeline' and/or 'stages'", name);
        return FALSE;
    }
    gboolean ok = TRUE;
    for (guint i = 0; i < prof->items->len; i++) {
        ecf_pair *p = prof->items->pdata[i];
        if (strcmp(p->key, "pipeline") == 0 && p->value->kind == ECF_NODE_MAP) {
            ecf_node *pl = ecf_node_get(root, "pipeline");
            if (!pl) {
                ecf_node_set(root, "pipeline", p->line, ecf_node_copy(p->value));
            } else if (pl->kind == ECF_NODE_MAP) {
                ecf_node_merge(pl, p->value);
            }
        } else if (strcmp(p->key, "stages") == 0 && p->value->kind == ECF_NODE_MAP) {
            ecf_node *stages = ecf_node_get(root, "stages");
            if (!stages || stages->kind != ECF_NODE_MAP)
                continue; /* reported when stages are read */
            for (guint j = 0; j < p->value->items->len; j++)
                patch_stage(stages, p->value->items->pdata[j]);
        } else {
            err_at(c, p->line, NULL, "profile '%s': '%s' is not 'pipeline' or 'stages' (or is not a map)", name,
                   p->key);
            ok = FALSE;
        }
    }
    return ok;
}

/* ------------------------------------------------------------ stages */

static gboolean valid_stage_name(const char *s)
{
    if (!*s)
        return FALSE;
    for (; *s; s++)
        if (!(g_ascii_isalnum(*s) || *s == '_' || *s == '-'))
            return FALSE;
    return TRUE;
}

static void read_inputs(ecf_stage_def *s, const ecf_node *n, const load_ctx *c)
{
    if (!n)
        return;
    g_autoptr(GPtrArray) items = g_ptr_array_new();
    if (n->kind == ECF_NODE_SCALAR)
        g_ptr_array_add(items, (gpointer)n);
    else if (n->kind == ECF_NODE_SEQ)
        g_ptr_array_extend(items, n->items, NULL, NULL);
    else if (n->kind != ECF_NODE_NULL)
        err_at(c, n->line, s->name, "'inputs' must be a list of stage names, got %s", ecf_node_kind_name(n->kind));
    for (guint i = 0; i < items->len; i++) {
        const ecf_node *it = items->pdata[i];
        if (it->kind != ECF_NODE_SCALAR) {
            err_at(c, it->line, s->name, "each input is 'stage' or 'stage.port', got %s", ecf_node_kind_name(it->kind));
            continue;
        }
        ecf_input_ref *in = g_new0(ecf_input_ref, 1);
        const char *dot = strchr(it->scalar, '.');
        in->stage = dot ? g_strndup(it->scalar, (gsize)(dot - it->scalar)) : g_strdup(it->scalar);
        in->port = dot ? g_strdup(dot + 1) : NULL;
        in->line = it->line;
        g_ptr_array_add(s->inputs, in);
    }
}

#define MAX_WORKERS 256

static const char *parallelism_name(ecf_parallelism p)
{
    return p == ECF_PARALLEL_ANY ? "any order" : p == ECF_PARALLEL_PARTITION ? "ordered per partition" : "one instance";
}

/* `workers: N | auto`, checked against what the plugin says it allows. */
static void read_workers(ecf_stage_def *s, const ecf_node *n, const load_ctx *c)
{
    s->workers = 1;
    if (!n)
        return;
    gint64 v = 0;
    char *end = NULL;
    if (n->kind == ECF_NODE_SCALAR && strcmp(n->scalar, "auto") == 0) {
        s->workers_auto = TRUE;
        v = MIN(g_get_num_processors(), MAX_WORKERS);
    } else if (n->kind == ECF_NODE_SCALAR) {
        v = g_ascii_strtoll(n->scalar, &end, 10);
    }
    if (!s->workers_auto &&
        (n->kind != ECF_NODE_SCALAR || !end || end == n->scalar || *end || v < 1 || v > MAX_WORKERS)) {
        err_at(c, n->line, s->name, "'workers' is a count from 1 to %d, or auto (one per core), got '%s'", MAX_WORKERS,
               n->kind == ECF_NODE_SCALAR ? n->scalar : ecf_node_kind_name(n->kind));
        return;
    }
    s->workers = (guint)v;
    if (!s->plugin || (v == 1 && !s->workers_auto))
        return;
    const ecf_plugin *d = &s->plugin->desc;
    if (d->kind == ECF_SOURCE)
        err_at(c, n->line, s->name, "'workers: %s': '%s' is a source, and sources run as one instance", n->scalar,
               s->plugin_name);
    else if (d->parallelism == ECF_PARALLEL_NONE)
        err_at(c, n->line, s->name,
               "'workers: %s': plugin '%s' runs as one instance only (it does not declare that it may run as "
               "several; see ecf_parallelism in <ecflow/plugin.h>)",
               n->scalar, s->plugin_name);
}

/* `ring_capacity: N`: this stage's input ring instead of the pipeline's
 * (e.g. room for a whole HTTP body in front of the sink it goes to). */
static void read_ring_capacity(ecf_stage_def *s, const ecf_node *n, const load_ctx *c)
{
    if (!n)
        return;
    char *end = NULL;
    gint64 v = n->kind == ECF_NODE_SCALAR ? g_ascii_strtoll(n->scalar, &end, 10) : 0;
    if (n->kind != ECF_NODE_SCALAR || !end || end == n->scalar || *end || v < 2 || v > 65536) {
        err_at(c, n->line, s->name, "'ring_capacity' is a count of batches from 2 to 65536, got '%s'",
               n->kind == ECF_NODE_SCALAR ? n->scalar : ecf_node_kind_name(n->kind));
        return;
    }
    s->ring_capacity = v;
}

static ecf_stage_def *read_stage(const ecf_pair *p, ecf_registry *reg, const load_ctx *c)
{
    ecf_stage_def *s = g_new0(ecf_stage_def, 1);
    s->name = g_strdup(p->key);
    s->line = p->line;
    s->workers = 1;
    s->inputs = g_ptr_array_new_with_free_func(input_free);
    if (!valid_stage_name(p->key))
        err_at(c, p->line, p->key, "stage names use letters, digits, '_' and '-' only");
    if (p->value->kind != ECF_NODE_MAP) {
        err_at(c, p->line, s->name, "a stage is a map with 'plugin:' and its options, got %s",
               ecf_node_kind_name(p->value->kind));
        return s;
    }
    g_autofree char *context = g_strdup_printf("stage '%s': ", s->name);
    ecf_node_expand_env(p->value, c->file, context, c->errors);

    ecf_node *plugin = ecf_node_get(p->value, "plugin");
    if (!plugin || plugin->kind != ECF_NODE_SCALAR) {
        err_at(c, p->line, s->name, "'plugin:' is missing (which plugin runs this stage?)");
        return s;
    }
    s->plugin_name = g_strdup(plugin->scalar);
    read_inputs(s, ecf_node_get(p->value, "inputs"), c);

    g_autoptr(GError) err = NULL;
    s->plugin = ecf_registry_find(reg, s->plugin_name, &err);
    if (!s->plugin) {
        err_at(c, plugin->line, s->name, "%s", err->message);
        return s;
    }
    ecf_opt_ctx octx = {c->file, s->name, s->line, c->errors};
    s->config =
        ecf_options_fill(s->plugin->desc.options, s->plugin->desc.config_size, p->value, reserved_stage_keys, &octx);
    read_workers(s, ecf_node_get(p->value, "workers"), c);
    read_ring_capacity(s, ecf_node_get(p->value, "ring_capacity"), c);
    return s;
}

/* ------------------------------------------------------------ graph checks */

static void check_edges(ecf_pipeline_def *def, const load_ctx *c)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    for (guint i = 0; i < def->stages->len; i++)
        g_ptr_array_add(names, ((ecf_stage_def *)def->stages->pdata[i])->name);

    for (guint i = 0; i < def->stages->len; i++) {
        ecf_stage_def *s = def->stages->pdata[i];
        if (!s->plugin)
            continue;
        ecf_kind kind = s->plugin->desc.kind;
        if (kind == ECF_SOURCE && s->inputs->len)
            err_at(c, s->line, s->name, "'%s' is a source and takes no inputs", s->plugin_name);
        if (kind != ECF_SOURCE && !s->inputs->len)
            err_at(c, s->line, s->name, "'%s' is a %s and needs 'inputs:'", s->plugin_name, ecf_kind_name(kind));
        for (guint j = 0; j < s->inputs->len; j++) {
            ecf_input_ref *in = s->inputs->pdata[j];
            ecf_stage_def *up = ecf_pipeline_stage(def, in->stage);
            if (!up) {
                const char *hint = ecf_suggest(in->stage, (const char *const *)names->pdata, names->len);
                err_at(c, in->line, s->name, "input '%s' is not a stage%s%s%s", in->stage,
                       hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
                continue;
            }
            if (up == s) {
                err_at(c, in->line, s->name, "a stage cannot read its own output");
                continue;
            }
            if (!up->plugin)
                continue;
            const char *const *ports = ecf_stage_ports(up);
            if (!ports) {
                err_at(c, in->line, s->name, "input '%s' is a sink and has no outputs", in->stage);
                continue;
            }
            if (in->port && !g_strv_contains(ports, in->port)) {
                g_autofree char *list = g_strjoinv(", ", (char **)ports);
                err_at(c, in->line, s->name, "stage '%s' has no port '%s' (ports: %s)", in->stage, in->port, list);
            }
            for (guint k = 0; k < j; k++) {
                ecf_input_ref *prev = s->inputs->pdata[k];
                if (strcmp(prev->stage, in->stage) == 0 && g_strcmp0(prev->port, in->port) == 0)
                    err_at(c, in->line, s->name, "input '%s' is listed twice", in->stage);
            }
        }
    }
}

/* Kahn's algorithm; whatever is left over sits on a cycle. */
static void order_stages(ecf_pipeline_def *def, const load_ctx *c)
{
    guint n = def->stages->len;
    g_autofree guint *pending = g_new0(guint, n);
    for (guint i = 0; i < n; i++) {
        ecf_stage_def *s = def->stages->pdata[i];
        for (guint j = 0; j < s->inputs->len; j++)
            if (ecf_pipeline_stage(def, ((ecf_input_ref *)s->inputs->pdata[j])->stage))
                pending[i]++;
    }
    def->order = g_ptr_array_new();
    g_autofree gboolean *done = g_new0(gboolean, n);
    gboolean progress = TRUE;
    while (progress) {
        progress = FALSE;
        for (guint i = 0; i < n; i++) {
            if (done[i] || pending[i])
                continue;
            ecf_stage_def *s = def->stages->pdata[i];
            done[i] = progress = TRUE;
            g_ptr_array_add(def->order, s);
            for (guint k = 0; k < n; k++) {
                ecf_stage_def *d = def->stages->pdata[k];
                for (guint j = 0; j < d->inputs->len; j++)
                    if (strcmp(((ecf_input_ref *)d->inputs->pdata[j])->stage, s->name) == 0)
                        pending[k]--;
            }
        }
    }
    if (def->order->len == n)
        return;
    GString *cycle = g_string_new(NULL);
    int line = 0;
    for (guint i = 0; i < n; i++) {
        if (done[i])
            continue;
        ecf_stage_def *s = def->stages->pdata[i];
        g_string_append_printf(cycle, "%s'%s'", cycle->len ? ", " : "", s->name);
        if (!line)
            line = s->line;
    }
    err_at(c, line, NULL, "the stages %s form a cycle; a pipeline must be a DAG", cycle->str);
    g_string_free(cycle, TRUE);
}

/* ------------------------------------------------------------ load */

static void check_top_keys(const ecf_node *root, const load_ctx *c)
{
    for (guint i = 0; i < root->items->len; i++) {
        ecf_pair *p = root->items->pdata[i];
        if (g_strv_contains(top_keys, p->key))
            continue;
        const char *hint = ecf_suggest(p->key, top_keys, G_N_ELEMENTS(top_keys));
        err_at(c, p->line, NULL, "unknown top-level key '%s'%s%s%s", p->key,
               hint ? " (did you mean '" : " (expected pipeline, stages, profiles)", hint ? hint : "",
               hint ? "'?)" : "");
    }
}

static void read_settings(ecf_pipeline_def *def, ecf_node *root, const load_ctx *c)
{
    ecf_pair *pl = ecf_node_pair(root, "pipeline");
    if (pl && pl->value->kind != ECF_NODE_MAP && pl->value->kind != ECF_NODE_NULL) {
        err_at(c, pl->line, NULL, "'pipeline:' must be a map of settings");
        pl = NULL;
    }
    if (pl)
        ecf_node_expand_env(pl->value, c->file, "pipeline: ", c->errors);
    ecf_opt_ctx octx = {c->file, NULL, pl ? pl->line : 1, c->errors};
    ecf_settings *st = ecf_options_fill(settings_options, sizeof(ecf_settings),
                                        pl && pl->value->kind == ECF_NODE_MAP ? pl->value : NULL, NULL, &octx);
    if (st) {
        def->settings = *st;
        g_free(st);
    } else {
        def->settings.name = g_strdup("ecflow");
    }
}

static ecf_pipeline_def *load_tree(const char *file, ecf_node *root, const char *profile, ecf_registry *reg,
                                   GPtrArray *errors)
{
    load_ctx c = {file, errors};
    guint before = errors->len;
    ecf_pipeline_def *def = g_new0(ecf_pipeline_def, 1);
    def->file = g_strdup(file);
    def->stages = g_ptr_array_new_with_free_func(stage_def_free);

    check_top_keys(root, &c);
    const char *prof = pick_profile(root, profile);
    if (prof) {
        def->profile = g_strdup(prof);
        apply_profile(root, prof, &c);
    }
    read_settings(def, root, &c);

    ecf_pair *stages = ecf_node_pair(root, "stages");
    if (!stages || stages->value->kind != ECF_NODE_MAP || stages->value->items->len == 0) {
        err_at(&c, stages ? stages->line : 1, NULL, "'stages:' must be a non-empty map of named stages");
    } else {
        for (guint i = 0; i < stages->value->items->len; i++)
            g_ptr_array_add(def->stages, read_stage(stages->value->items->pdata[i], reg, &c));
        check_edges(def, &c);
        order_stages(def, &c);
    }
    if (errors->len > before) {
        ecf_pipeline_def_free(def);
        return NULL;
    }
    return def;
}

ecf_pipeline_def *ecf_pipeline_load_string(const char *name, const char *yaml, const char *profile, ecf_registry *reg,
                                           GPtrArray *errors)
{
    g_autoptr(ecf_node) root = ecf_node_load_string(name, yaml, errors);
    return root ? load_tree(name, root, profile, reg, errors) : NULL;
}

ecf_pipeline_def *ecf_pipeline_load(const char *path, const char *profile, ecf_registry *reg, GPtrArray *errors)
{
    g_autoptr(ecf_node) root = ecf_node_load_file(path, errors);
    return root ? load_tree(path, root, profile, reg, errors) : NULL;
}

/* ------------------------------------------------------------ graph */

static const char *shape(const ecf_stage_def *s, gboolean dot)
{
    ecf_kind k = s->plugin ? s->plugin->desc.kind : ECF_TRANSFORM;
    if (dot)
        return k == ECF_SOURCE ? "invhouse" : k == ECF_SINK ? "cylinder" : "box";
    return k == ECF_SOURCE ? "([" : k == ECF_SINK ? "[(" : "[";
}

static const char *shape_close(const ecf_stage_def *s)
{
    ecf_kind k = s->plugin ? s->plugin->desc.kind : ECF_TRANSFORM;
    return k == ECF_SOURCE ? "])" : k == ECF_SINK ? ")]" : "]";
}

/* "" for one instance; else a line saying how many run and how they are routed. */
static char *workers_label(const ecf_stage_def *s, const char *newline)
{
    if (s->workers <= 1 && !s->workers_auto)
        return g_strdup("");
    return g_strdup_printf("%s%u workers%s, %s", newline, s->workers, s->workers_auto ? " (auto)" : "",
                           parallelism_name(s->plugin ? s->plugin->desc.parallelism : ECF_PARALLEL_NONE));
}

char *ecf_pipeline_graph(const ecf_pipeline_def *def, const char *format)
{
    gboolean dot = g_strcmp0(format, "mermaid") != 0;
    GString *out = g_string_new(NULL);
    if (dot)
        g_string_append_printf(out, "digraph \"%s\" {\n  rankdir=LR;\n", def->settings.name);
    else
        g_string_append(out, "flowchart LR\n");
    for (guint i = 0; i < def->order->len; i++) {
        const ecf_stage_def *s = def->order->pdata[i];
        g_autofree char *label = workers_label(s, dot ? "\\n" : "<br/>");
        if (dot)
            g_string_append_printf(out, "  \"%s\" [shape=%s, label=\"%s\\n%s%s\"];\n", s->name, shape(s, TRUE), s->name,
                                   s->plugin_name, label);
        else
            g_string_append_printf(out, "  %s%s\"%s<br/>%s%s\"%s\n", s->name, shape(s, FALSE), s->name, s->plugin_name,
                                   label, shape_close(s));
    }
    for (guint i = 0; i < def->order->len; i++) {
        const ecf_stage_def *s = def->order->pdata[i];
        for (guint j = 0; j < s->inputs->len; j++) {
            const ecf_input_ref *in = s->inputs->pdata[j];
            if (dot)
                g_string_append_printf(out, "  \"%s\" -> \"%s\"%s%s%s;\n", in->stage, s->name,
                                       in->port ? " [label=\"" : "", in->port ? in->port : "", in->port ? "\"]" : "");
            else if (in->port)
                g_string_append_printf(out, "  %s -- %s --> %s\n", in->stage, in->port, s->name);
            else
                g_string_append_printf(out, "  %s --> %s\n", in->stage, s->name);
        }
    }
    if (dot)
        g_string_append(out, "}\n");
    return g_string_free(out, FALSE);
}
