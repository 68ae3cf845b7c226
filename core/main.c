/* The `ecflow` command line. Verbs only parse arguments and print; the work
 * is in loader.c, inspect.c, pipeline.c and runtime.c. */
#include "inspect.h"
#include "loader.h"
#include "log.h"
#include "options.h"
#include "pipeline.h"
#include "runtime.h"
#include "top.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char **plugin_path;
    char *profile;
    char *format;
} cli_opts;

static void cli_opts_clear(cli_opts *o)
{
    g_strfreev(o->plugin_path);
    g_free(o->profile);
    g_free(o->format);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(cli_opts, cli_opts_clear)

static GOptionEntry common_entries(cli_opts *o, int i, const char *format_help)
{
    GOptionEntry e[] = {
        {"plugin-path", 'P', 0, G_OPTION_ARG_STRING_ARRAY, &o->plugin_path,
         "Look for plugins in DIR first (repeatable)", "DIR"},
        {"profile", 'p', 0, G_OPTION_ARG_STRING, &o->profile,
         "Apply the pipeline's profile NAME (default: $ECFLOW_PROFILE)", "NAME"},
        {"format", 'f', 0, G_OPTION_ARG_STRING, &o->format, format_help, "FMT"},
    };
    return e[i];
}

/* Parses argv for one verb; returns FALSE (after printing why) on misuse.
 * `which` picks the common options: P plugin path, p profile, f format. */
static gboolean parse_verb(int *argc, char ***argv, const char *usage, const char *summary, cli_opts *o,
                           const char *which, const char *format_help)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new(usage);
    g_option_context_set_summary(ctx, summary);
    GOptionEntry entries[4] = {0};
    int n = 0;
    for (int i = 0; i < 3; i++)
        if (strchr(which, "Ppf"[i]))
            entries[n++] = common_entries(o, i, format_help);
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) err = NULL;
    if (!g_option_context_parse(ctx, argc, argv, &err)) {
        fprintf(stderr, "ecflow: %s (see --help)\n", err->message);
        return FALSE;
    }
    return TRUE;
}

static void print_errors(GPtrArray *errors)
{
    for (guint i = 0; i < errors->len; i++)
        fprintf(stderr, "%s\n", (char *)errors->pdata[i]);
}

static int cmd_version(int argc, char **argv)
{
    g_auto(cli_opts) o = {0};
    if (!parse_verb(&argc, &argv, "", "Print the ecflow version and its plugin ABI version.", &o, "", NULL))
        return ECF_EXIT_CONFIG;
    printf("ecflow %s\nplugin ABI %d.%d\n", ECF_VERSION, ECF_ABI_MAJOR, ECF_ABI_MINOR);
    return ECF_EXIT_OK;
}

static int plugins_list(ecf_registry *reg)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) found = ecf_registry_scan(reg, errors);
    printf("%-22s %-10s %-9s %s\n", "NAME", "KIND", "VERSION", "DESCRIPTION");
    for (guint i = 0; i < found->len; i++) {
        const ecf_loaded_plugin *lp = found->pdata[i];
        printf("%-22s %-10s %-9s %s\n", lp->name, ecf_kind_name(lp->desc.kind),
               lp->desc.version ? lp->desc.version : "-", lp->desc.summary ? lp->desc.summary : "");
    }
    for (guint i = 0; i < errors->len; i++)
        fprintf(stderr, "warning: %s\n", (char *)errors->pdata[i]);
    return ECF_EXIT_OK;
}

/* Text: each NAME. Markdown: each NAME, or every plugin found (in the
 * order of `plugins list`), as one document: docs/options.md is that
 * output for the shipped plugins. */
static int plugins_inspect(ecf_registry *reg, const char *format, char **names, int n_names)
{
    gboolean markdown = g_strcmp0(format, "markdown") == 0;
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) found = NULL;
    if (n_names == 0) {
        found = ecf_registry_scan(reg, errors);
        for (guint i = 0; i < errors->len; i++)
            fprintf(stderr, "warning: %s\n", (char *)errors->pdata[i]);
    } else {
        found = g_ptr_array_new();
        for (int i = 0; i < n_names; i++) {
            g_autoptr(GError) err = NULL;
            const ecf_loaded_plugin *lp = ecf_registry_find(reg, names[i], &err);
            if (!lp) {
                fprintf(stderr, "ecflow: %s\n", err->message);
                return ECF_EXIT_CONFIG;
            }
            g_ptr_array_add(found, (gpointer)lp);
        }
    }
    g_autoptr(GString) out = g_string_new(NULL);
    if (markdown)
        ecf_inspect_markdown(out, (const ecf_loaded_plugin *const *)found->pdata, found->len);
    for (guint i = 0; !markdown && i < found->len; i++) {
        if (i)
            g_string_append_c(out, '\n');
        ecf_inspect_text(out, found->pdata[i]);
    }
    fputs(out->str, stdout);
    return ECF_EXIT_OK;
}

static int cmd_plugins(int argc, char **argv)
{
    g_auto(cli_opts) o = {0};
    if (!parse_verb(&argc, &argv, "list | inspect [--format text|markdown] NAME...",
                    "List the plugins found on the plugin path, or show plugins' options and ports. "
                    "--format markdown writes the options reference (docs/options.md): the plugins "
                    "named, or every plugin found.",
                    &o, "Pf", "Output of inspect: text (the default) or markdown"))
        return ECF_EXIT_CONFIG;
    gboolean inspect = argc >= 2 && strcmp(argv[1], "inspect") == 0;
    if (o.format && !inspect) {
        fprintf(stderr, "ecflow: --format goes with plugins inspect\n");
        return ECF_EXIT_CONFIG;
    }
    if (o.format && strcmp(o.format, "text") != 0 && strcmp(o.format, "markdown") != 0) {
        fprintf(stderr, "ecflow: --format is text or markdown, not '%s'\n", o.format);
        return ECF_EXIT_CONFIG;
    }
    gboolean markdown = o.format && strcmp(o.format, "markdown") == 0;
    ecf_registry *r = ecf_registry_new((const char *const *)o.plugin_path);
    int code;
    if (argc >= 2 && strcmp(argv[1], "list") == 0 && argc == 2)
        code = plugins_list(r);
    else if (inspect && (argc >= 3 || markdown))
        code = plugins_inspect(r, o.format, argv + 2, argc - 2);
    else {
        fprintf(stderr, "usage: ecflow plugins list | ecflow plugins inspect [--format text|markdown] NAME...\n"
                        "       (with --format markdown and no NAME: every plugin found)\n");
        code = ECF_EXIT_CONFIG;
    }
    ecf_registry_free(r);
    return code;
}

/* validate, graph and run all start by loading and checking the file. */
static ecf_pipeline_def *load_checked(const char *file, cli_opts *o, ecf_registry *reg)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    ecf_pipeline_def *def = ecf_pipeline_load(file, o->profile, reg, errors);
    if (!def) {
        print_errors(errors);
        fprintf(stderr, "%s: %u error%s\n", file, errors->len, errors->len == 1 ? "" : "s");
    }
    return def;
}

static int cmd_pipeline(int argc, char **argv, const char *verb)
{
    g_auto(cli_opts) o = {0};
    gboolean is_graph = strcmp(verb, "graph") == 0;
    const char *summary =
        strcmp(verb, "validate") == 0 ? "Check a pipeline file: plugins, options, wiring, variables. Exit 0 if it is "
                                        "valid, 2 with every error otherwise."
        : is_graph                    ? "Print the pipeline's DAG as Graphviz DOT or Mermaid."
                   : "Run a pipeline until its sources finish or SIGINT/SIGTERM; a second signal exits at once.";
    if (!parse_verb(&argc, &argv, "PIPELINE.yaml", summary, &o, is_graph ? "Ppf" : "Pp",
                    "Graph format: dot or mermaid"))
        return ECF_EXIT_CONFIG;
    if (argc != 2) {
        fprintf(stderr, "usage: ecflow %s PIPELINE.yaml (see --help)\n", verb);
        return ECF_EXIT_CONFIG;
    }
    if (is_graph && o.format && strcmp(o.format, "dot") != 0 && strcmp(o.format, "mermaid") != 0) {
        fprintf(stderr, "ecflow: --format is dot or mermaid, not '%s'\n", o.format);
        return ECF_EXIT_CONFIG;
    }
    ecf_registry *reg = ecf_registry_new((const char *const *)o.plugin_path);
    ecf_pipeline_def *def = load_checked(argv[1], &o, reg);
    int code = def ? ECF_EXIT_OK : ECF_EXIT_CONFIG;
    if (def && strcmp(verb, "validate") == 0) {
        ecf_runtime *rt = ecf_runtime_new(def);
        code = ecf_runtime_check(rt);
        ecf_runtime_free(rt);
        if (code == ECF_EXIT_OK)
            printf("%s: valid (%u stages%s%s)\n", argv[1], def->stages->len, def->profile ? ", profile " : "",
                   def->profile ? def->profile : "");
    } else if (def && is_graph) {
        g_autofree char *g = ecf_pipeline_graph(def, o.format ? o.format : "dot");
        fputs(g, stdout);
    } else if (def) {
        ecf_log_level level = ECF_LOG_INFO;
        ecf_log_format format = ECF_LOG_TEXT;
        ecf_log_parse_level(def->settings.log_level, &level);
        ecf_log_parse_format(def->settings.log_format, &format);
        ecf_log_configure(level, format);
        ecf_runtime *rt = ecf_runtime_new(def);
        code = ecf_runtime_run(rt, TRUE);
        ecf_runtime_free(rt);
    }
    ecf_pipeline_def_free(def);
    ecf_registry_free(reg);
    return code;
}

static void usage(FILE *out);

/* The plugins declaring command group `group`, for its help; 0 when none. */
static guint group_help(ecf_registry *reg, const char *group, FILE *out)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) found = ecf_registry_scan(reg, errors);
    guint n = 0;
    for (guint i = 0; i < found->len; i++) {
        const ecf_loaded_plugin *lp = found->pdata[i];
        if (!lp->desc.command || g_strcmp0(lp->desc.command_group, group) != 0)
            continue;
        if (n++ == 0)
            fprintf(out,
                    "usage: ecflow %s VERB PIPELINE.yaml [--stage NAME] [--profile P] [--plugin-path DIR] "
                    "[ARGS...]\n\n",
                    group);
        fprintf(out, "%s (stages of plugin %s):\n%s\n", group, lp->name,
                lp->desc.command_help ? lp->desc.command_help : "");
    }
    return n;
}

/* `ecflow GROUP VERB FILE ...`: a command a plugin answers (plugin.h,
 * command_group). --stage, --profile and --plugin-path are the core's; every
 * other argument goes to the plugin. */
static int cmd_plugin_group(int argc, char **argv, const char *group)
{
    g_auto(cli_opts) o = {0};
    g_autoptr(GPtrArray) path = g_ptr_array_new();
    g_autoptr(GPtrArray) rest = g_ptr_array_new(); /* VERB, FILE, ARGS */
    const char *stage = NULL;
    gboolean help = FALSE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **into = strcmp(a, "--stage") == 0                             ? &stage
                            : strcmp(a, "--profile") == 0 || strcmp(a, "-p") == 0 ? (const char **)&o.profile
                                                                                  : NULL;
        if ((into || strcmp(a, "--plugin-path") == 0 || strcmp(a, "-P") == 0) && i + 1 >= argc) {
            fprintf(stderr, "ecflow %s: %s needs a value\n", group, a);
            return ECF_EXIT_CONFIG;
        }
        if (into)
            *into = argv[++i];
        else if (strcmp(a, "--plugin-path") == 0 || strcmp(a, "-P") == 0)
            g_ptr_array_add(path, argv[++i]);
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            help = TRUE;
        else
            g_ptr_array_add(rest, argv[i]);
    }
    const char *profile = o.profile;
    o.profile = NULL; /* borrowed from argv */
    g_ptr_array_add(path, NULL);
    ecf_registry *reg = ecf_registry_new((const char *const *)path->pdata);
    int code = ECF_EXIT_OK;
    /* FILE: the first argument after VERB that is not a flag */
    guint file_at = 1;
    while (file_at < rest->len && ((const char *)rest->pdata[file_at])[0] == '-')
        file_at++;
    if (help || file_at >= rest->len) {
        guint n = group_help(reg, group, help ? stdout : stderr);
        if (n == 0) {
            fprintf(stderr, "ecflow: unknown verb '%s'\n", group);
            usage(stderr);
        }
        code = help && n ? ECF_EXIT_OK : ECF_EXIT_CONFIG;
    } else {
        o.profile = g_strdup(profile);
        ecf_pipeline_def *def = load_checked(rest->pdata[file_at], &o, reg);
        if (!def) {
            code = ECF_EXIT_CONFIG;
        } else {
            ecf_log_level level = ECF_LOG_INFO;
            ecf_log_parse_level(def->settings.log_level, &level);
            ecf_log_configure(level, ECF_LOG_TEXT);
            /* the plugin sees VERB, ARGS */
            g_ptr_array_remove_index(rest, file_at);
            ecf_runtime *rt = ecf_runtime_new(def);
            code = ecf_runtime_command(rt, group, stage, (int)rest->len, (const char *const *)rest->pdata);
            ecf_runtime_free(rt);
            ecf_pipeline_def_free(def);
        }
    }
    ecf_registry_free(reg);
    return code;
}

/* The address `top` reads: --url, else the pipeline file's `metrics:`
 * setting, else the default one. */
static char *top_url(const char *url, const char *file, cli_opts *o, int *code)
{
    if (url)
        return g_strdup(url);
    if (!file)
        return g_strdup("http://127.0.0.1:9464");
    ecf_registry *reg = ecf_registry_new((const char *const *)o->plugin_path);
    ecf_pipeline_def *def = load_checked(file, o, reg);
    char *out = NULL;
    if (!def)
        *code = ECF_EXIT_CONFIG;
    else if (!def->settings.metrics) {
        fprintf(stderr, "ecflow top: %s sets no `metrics:` address under `pipeline:`; pass --url\n", file);
        *code = ECF_EXIT_CONFIG;
    } else {
        out = g_strdup_printf("http://%s", def->settings.metrics);
    }
    ecf_pipeline_def_free(def);
    ecf_registry_free(reg);
    return out;
}

static int cmd_top(int argc, char **argv)
{
    g_auto(cli_opts) o = {0};
    g_autofree char *url = NULL;
    double interval = 1;
    gboolean once = FALSE;
    g_autoptr(GOptionContext) ctx = g_option_context_new("[PIPELINE.yaml]");
    g_option_context_set_summary(ctx, "Watch a running pipeline: one row per stage (rates, ring fill, state) and the "
                                      "pipeline's facts (HTTP codes, Kafka lag, commits, freshness, invalid events), "
                                      "read from its /status.json. Keys: q quits, s sorts, r reverses.");
    GOptionEntry entries[] = {
        {"url", 'u', 0, G_OPTION_ARG_STRING, &url,
         "The metrics address (default: the pipeline file's metrics setting, else http://127.0.0.1:9464)", "URL"},
        {"interval", 'i', 0, G_OPTION_ARG_DOUBLE, &interval, "Seconds between refreshes (default 1)", "S"},
        {"once", '1', 0, G_OPTION_ARG_NONE, &once, "Print one plain-text snapshot (rates over --interval) and exit",
         NULL},
        common_entries(&o, 0, NULL),
        common_entries(&o, 1, NULL),
        {0},
    };
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) err = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "ecflow: %s (see --help)\n", err->message);
        return ECF_EXIT_CONFIG;
    }
    if (argc > 2 || !(interval >= 0.1 && interval <= 3600)) {
        fprintf(stderr, argc > 2 ? "usage: ecflow top [PIPELINE.yaml] [--url URL] [--interval S] [--once]\n"
                                 : "ecflow top: --interval is 0.1 to 3600 seconds\n");
        return ECF_EXIT_CONFIG;
    }
    int code = ECF_EXIT_OK;
    g_autofree char *address = top_url(url, argc == 2 ? argv[1] : NULL, &o, &code);
    return address ? ecf_top_run(address, interval, once) : code;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: ecflow VERB [options]\n\n"
                 "  version                          ecflow and plugin ABI versions\n"
                 "  plugins list                     every plugin found\n"
                 "  plugins inspect NAME             a plugin's options and ports\n"
                 "  plugins inspect --format markdown [NAME...]\n"
                 "                                   the options reference (docs/options.md)\n"
                 "  validate FILE [--profile P]      check a pipeline file\n"
                 "  graph FILE [--format dot|mermaid]\n"
                 "  run FILE [--profile P] [--plugin-path DIR]\n"
                 "  table compact|expire|clean|stats FILE [--stage NAME] [--dry-run]\n"
                 "                                   maintain the Iceberg tables a pipeline writes\n"
                 "                                   (a plugin command: GROUP VERB FILE, see GROUP --help)\n"
                 "  top [FILE] [--url URL] [--once]  watch a running pipeline\n\n"
                 "Every verb takes --help. Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.\n");
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return ECF_EXIT_CONFIG;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
        usage(stdout);
        return ECF_EXIT_OK;
    }
    if (strcmp(verb, "--version") == 0)
        verb = "version";
    /* Each verb sees argv as if it were the program: argv[0] = "ecflow VERB". */
    g_autofree char *prog = g_strdup_printf("ecflow %s", verb);
    argv[1] = prog;
    argc--;
    argv++;
    if (strcmp(verb, "version") == 0)
        return cmd_version(argc, argv);
    if (strcmp(verb, "plugins") == 0)
        return cmd_plugins(argc, argv);
    if (strcmp(verb, "validate") == 0 || strcmp(verb, "graph") == 0 || strcmp(verb, "run") == 0)
        return cmd_pipeline(argc, argv, verb);
    if (strcmp(verb, "top") == 0)
        return cmd_top(argc, argv);
    return cmd_plugin_group(argc, argv, verb); /* or "unknown verb" */
}
