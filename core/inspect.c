#include "inspect.h"

#include "options.h"

#include <math.h>
#include <string.h>

static const char *const default_ports[] = {"default", NULL};

static const char *const *ports_of(const ecf_plugin *d) { return d->ports ? d->ports : default_ports; }

/* What `workers:` may be for a stage of this plugin (ecf_parallelism). */
static const char *workers_text(const ecf_plugin *d)
{
    if (d->kind == ECF_SOURCE)
        return "1 (a source)";
    switch (d->parallelism) {
    case ECF_PARALLEL_ANY: return "N or auto; batches go to any instance";
    case ECF_PARALLEL_PARTITION: return "N or auto; each Kafka partition (or key) to one instance, in order";
    default: return "1 (the plugin runs as one instance only)";
    }
}

/* ------------------------------------------------------------ text */

void ecf_inspect_text(GString *out, const ecf_loaded_plugin *lp)
{
    const ecf_plugin *d = &lp->desc;
    g_string_append_printf(out, "%s %s — %s\n", d->name, d->version ? d->version : "", d->summary ? d->summary : "");
    g_string_append_printf(out, "  kind:     %s\n  file:     %s\n  ABI:      %u.%u\n", ecf_kind_name(d->kind), lp->path,
                           d->abi_major, d->abi_minor);
    if (d->kind == ECF_SINK && !d->ports)
        g_string_append(out, "  ports:    (none: a sink)\n");
    else {
        g_string_append(out, "  ports:    ");
        for (const char *const *p = ports_of(d); *p; p++)
            g_string_append_printf(out, "%s%s", *p, p[1] ? ", " : "\n");
    }
    g_string_append_printf(out, "  workers:  %s\n", workers_text(d));
    g_string_append(out, "\nOPTIONS\n");
    if (!d->options || !d->options->name)
        g_string_append(out, "  (none)\n");
    for (const ecf_option *o = d->options; o && o->name; o++) {
        g_autofree char *type = ecf_option_type_string(o);
        g_string_append_printf(out, "  %-20s %s%s%s\n", o->name, type, (o->flags & ECF_REQUIRED) ? ", required" : "",
                               (o->flags & ECF_SECRET) ? ", secret" : "");
        if (o->def)
            g_string_append_printf(out, "  %-20s default: %s\n", "", o->def);
        g_string_append_printf(out, "  %-20s %s\n", "", o->help ? o->help : "");
    }
}

/* ------------------------------------------------------------ markdown */

/* Table cells are one line; '|' would end the cell and '<x>' would be
 * taken for an HTML tag. */
static void md_text(GString *out, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '|': g_string_append(out, "\\|"); break;
        case '\\': g_string_append(out, "\\\\"); break;
        case '*': g_string_append(out, "\\*"); break;
        case '<': g_string_append(out, "&lt;"); break;
        case '>': g_string_append(out, "&gt;"); break;
        case '\n': g_string_append_c(out, ' '); break;
        default: g_string_append_c(out, *s);
        }
    }
}

/* `value` as a code span (a default, a choice); "" shows as `""`. */
static void md_code(GString *out, const char *s)
{
    if (!*s) {
        g_string_append(out, "`\"\"`");
        return;
    }
    g_string_append_c(out, '`');
    for (; *s; s++) {
        if (*s == '|')
            g_string_append(out, "\\|");
        else
            g_string_append_c(out, *s == '\n' ? ' ' : *s);
    }
    g_string_append_c(out, '`');
}

typedef struct {
    const char *suffix;
    double factor;
} unit;

/* A whole number in the largest unit that divides it, spelled the way the
 * option parser reads it back ("64KiB", "1GB", "500ms", "1d"). */
static void append_in_units(GString *out, double v, const unit *units, guint n, const char *bare)
{
    for (guint i = 0; i < n; i++) {
        double q = v / units[i].factor;
        if (v != 0 && q == floor(q) && fabs(q) < 1e19) {
            g_string_append_printf(out, "%.0f%s", q, units[i].suffix);
            return;
        }
    }
    if (v == floor(v) && fabs(v) < 1e19)
        g_string_append_printf(out, "%.0f%s", v, bare);
    else
        g_string_append_printf(out, "%g%s", v, bare);
}

static void append_size(GString *out, double bytes)
{
    static const unit units[] = {{"GiB", 1073741824.0}, {"GB", 1e9},     {"MiB", 1048576.0},
                                 {"MB", 1e6},           {"KiB", 1024.0}, {"kB", 1e3}};
    append_in_units(out, bytes, units, G_N_ELEMENTS(units), "");
}

static void append_duration(GString *out, double seconds)
{
    static const unit units[] = {{"d", 86400e6}, {"h", 3600e6}, {"m", 60e6}, {"s", 1e6}, {"ms", 1e3}, {"us", 1}};
    if (seconds == 0) {
        g_string_append(out, "0s");
        return;
    }
    append_in_units(out, round(seconds * 1e6), units, G_N_ELEMENTS(units), "us");
}

static void append_number(GString *out, double v) { append_in_units(out, v, NULL, 0, ""); }

static const char *md_type(const ecf_option *o)
{
    switch (o->type) {
    case ECF_OPT_T_STRING: return "string";
    case ECF_OPT_T_FILE: return "file path";
    case ECF_OPT_T_BOOL: return "bool";
    case ECF_OPT_T_ENUM: return "enum";
    case ECF_OPT_T_LIST: return "list of strings";
    case ECF_OPT_T_MAP: return "map of strings";
    case ECF_OPT_T_INT: return "int";
    case ECF_OPT_T_DOUBLE: return "float";
    case ECF_OPT_T_DURATION: return "duration";
    case ECF_OPT_T_SIZE: return "size";
    }
    return "?";
}

/* "1..4096", "100ms..1h", "4KiB..1GiB", or the choices of an enum. */
static void md_range(GString *out, const ecf_option *o)
{
    if (o->type == ECF_OPT_T_ENUM && o->choices) {
        g_auto(GStrv) parts = g_strsplit(o->choices, "|", -1);
        for (char **p = parts; *p; p++) {
            if (p != parts)
                g_string_append(out, ", ");
            md_code(out, *p);
        }
        return;
    }
    if (o->min > o->max)
        return;
    void (*num)(GString *, double) = o->type == ECF_OPT_T_DURATION ? append_duration
                                     : o->type == ECF_OPT_T_SIZE   ? append_size
                                                                   : append_number;
    switch (o->type) {
    case ECF_OPT_T_INT:
    case ECF_OPT_T_DOUBLE:
    case ECF_OPT_T_DURATION:
    case ECF_OPT_T_SIZE:
        num(out, o->min);
        g_string_append(out, "..");
        num(out, o->max);
        break;
    default: break;
    }
}

static void md_options(GString *out, const ecf_option *options)
{
    if (!options || !options->name) {
        g_string_append(out, "No options.\n");
        return;
    }
    g_string_append(out, "| option | type | default | range / choices | required | secret | description |\n"
                         "|---|---|---|---|---|---|---|\n");
    for (const ecf_option *o = options; o->name; o++) {
        g_string_append(out, "| ");
        md_code(out, o->name);
        g_string_append_printf(out, " | %s | ", md_type(o));
        if (o->def)
            md_code(out, o->def);
        g_string_append(out, " | ");
        md_range(out, o);
        g_string_append_printf(out, " | %s | %s | ", (o->flags & ECF_REQUIRED) ? "yes" : "",
                               (o->flags & ECF_SECRET) ? "yes" : "");
        md_text(out, o->help);
        g_string_append(out, " |\n");
    }
}

static void md_plugin(GString *out, const ecf_plugin *d)
{
    g_string_append_printf(out, "\n## %s\n\n", d->name);
    if (d->summary && *d->summary) {
        md_text(out, d->summary);
        g_string_append(out, "\n\n");
    }
    g_string_append_printf(out, "- kind: %s\n- version: %s\n- output ports: ", ecf_kind_name(d->kind),
                           d->version ? d->version : "-");
    bool none = d->kind == ECF_SINK && !d->ports;
    if (none)
        g_string_append(out, "none (a sink)");
    for (const char *const *p = ports_of(d); !none && *p; p++) {
        if (p != ports_of(d))
            g_string_append(out, ", ");
        md_code(out, *p);
    }
    g_string_append_printf(out, "\n- workers: %s\n\n", workers_text(d));
    md_options(out, d->options);
}

/* The id GitHub gives the heading "## name": lower case, spaces as '-',
 * other punctuation dropped. */
static void md_anchor(GString *out, const char *name)
{
    for (const char *c = name; *c; c++) {
        if (g_ascii_isalnum(*c) || *c == '-' || *c == '_')
            g_string_append_c(out, g_ascii_tolower(*c));
        else if (*c == ' ')
            g_string_append_c(out, '-');
    }
}

void ecf_inspect_markdown(GString *out, const ecf_loaded_plugin *const *plugins, guint n)
{
    g_string_append(out, "# Plugin options\n"
                         "\n"
                         "<!-- Generated by `ecflow plugins inspect --format markdown`; do not edit by hand. -->\n"
                         "\n"
                         "Every option of each plugin, written by `ecflow plugins inspect --format markdown`\n"
                         "from the plugin's own option table: the defaults and ranges here are the ones the\n"
                         "core applies. Options are keys of a stage in a pipeline file.\n"
                         "\n"
                         "- A *duration* is a number and a unit: `250ms`, `10s`, `5m`, `1h`, `1d` (a bare number\n"
                         "  is seconds). A *size* is a number of bytes and an optional unit: `512`, `64KiB`,\n"
                         "  `128MiB`, `1GB` (`k`, `m`, `g` are powers of 1000, `kib`, `mib`, `gib` of 1024).\n"
                         "- A *bool* is `true` or `false` (also `yes`/`no`, `on`/`off`, `1`/`0`). A relative\n"
                         "  *file path* is taken from the pipeline file's folder.\n"
                         "- A *map* is a nested YAML map, or dotted keys at the stage's level\n"
                         "  (`kafka.linger.ms: 5`).\n"
                         "- Ranges are inclusive. An option with no default is unset unless given; a\n"
                         "  *required* one must be given.\n"
                         "- A *secret* option's value is never printed (errors show `<hidden>`); for a map,\n"
                         "  its values.\n"
                         "\n"
                         "| plugin | kind | summary |\n"
                         "|---|---|---|\n");
    for (guint i = 0; i < n; i++) {
        const ecf_plugin *d = &plugins[i]->desc;
        g_string_append(out, "| [");
        md_text(out, d->name);
        g_string_append(out, "](#");
        md_anchor(out, d->name);
        g_string_append_printf(out, ") | %s | ", ecf_kind_name(d->kind));
        md_text(out, d->summary);
        g_string_append(out, " |\n");
    }
    for (guint i = 0; i < n; i++)
        md_plugin(out, &plugins[i]->desc);
}
