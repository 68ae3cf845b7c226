#include "loader.h"

#include "log.h"

#include <dlfcn.h>
#include <string.h>

struct ecf_registry {
    GPtrArray *dirs;
    GHashTable *by_path; /* path -> ecf_loaded_plugin */
};

const char *ecf_kind_name(ecf_kind k)
{
    switch (k) {
    case ECF_SOURCE: return "source";
    case ECF_TRANSFORM: return "transform";
    case ECF_SINK: return "sink";
    }
    return "unknown";
}

static void loaded_free(gpointer p)
{
    ecf_loaded_plugin *lp = p;
    /* Never dlclose: a plugin's threads or atexit handlers may outlive us. */
    g_free(lp->name);
    g_free(lp->path);
    g_free(lp);
}

static void add_dir(GPtrArray *dirs, const char *d)
{
    if (d && *d && !g_strv_contains((const char *const *)dirs->pdata, d)) {
        g_ptr_array_remove_index(dirs, dirs->len - 1); /* the NULL terminator */
        g_ptr_array_add(dirs, g_strdup(d));
        g_ptr_array_add(dirs, NULL);
    }
}

ecf_registry *ecf_registry_new(const char *const *extra_dirs)
{
    ecf_registry *reg = g_new0(ecf_registry, 1);
    reg->dirs = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(reg->dirs, NULL);
    for (const char *const *d = extra_dirs; d && *d; d++)
        add_dir(reg->dirs, *d);
    const char *env = g_getenv("ECFLOW_PLUGIN_PATH");
    if (env) {
        g_auto(GStrv) parts = g_strsplit(env, ":", -1);
        for (char **p = parts; *p; p++)
            add_dir(reg->dirs, *p);
    }
    /* The build tree: plugins/ next to the binary, so `build/ecflow` runs. */
    g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
    if (exe) {
        g_autofree char *bindir = g_path_get_dirname(exe);
        g_autofree char *local = g_build_filename(bindir, "plugins", NULL);
        if (g_file_test(local, G_FILE_TEST_IS_DIR))
            add_dir(reg->dirs, local);
        /* An install moved with --prefix: <prefix>/bin/ecflow, <prefix>/lib/... */
        g_autofree char *moved = g_build_filename(bindir, "..", ECF_PLUGIN_REL_DIR, NULL);
        g_autofree char *canon = g_canonicalize_filename(moved, NULL);
        if (g_file_test(canon, G_FILE_TEST_IS_DIR))
            add_dir(reg->dirs, canon);
    }
    add_dir(reg->dirs, ECF_PLUGIN_DIR);
    reg->by_path = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, loaded_free);
    return reg;
}

void ecf_registry_free(ecf_registry *reg)
{
    if (!reg)
        return;
    g_hash_table_destroy(reg->by_path);
    g_ptr_array_free(reg->dirs, TRUE);
    g_free(reg);
}

const char *const *ecf_registry_dirs(const ecf_registry *reg) { return (const char *const *)reg->dirs->pdata; }

static gboolean check_descriptor(const ecf_plugin *d, const char *path, GError **error)
{
    if (d->abi_major != ECF_ABI_MAJOR) {
        g_set_error(error, ECF_ERROR, ECF_ERR_CONFIG,
                    "%s: plugin was built for plugin ABI %u.%u, but this ecflow speaks ABI %d.%d; "
                    "rebuild it against this ecflow's <ecflow/plugin.h>",
                    path, d->abi_major, d->abi_minor, ECF_ABI_MAJOR, ECF_ABI_MINOR);
        return FALSE;
    }
    if (d->size < offsetof(ecf_plugin, destroy) + sizeof(d->destroy) || !d->name || !*d->name) {
        g_set_error(error, ECF_ERROR, ECF_ERR_CONFIG, "%s: plugin descriptor is truncated or unnamed", path);
        return FALSE;
    }
    if (d->kind != ECF_SOURCE && d->kind != ECF_TRANSFORM && d->kind != ECF_SINK) {
        g_set_error(error, ECF_ERROR, ECF_ERR_CONFIG, "%s: plugin '%s' has no valid kind", path, d->name);
        return FALSE;
    }
    /* 1.3: a plugin built before it has no such member and runs as one. */
    if (d->size >= offsetof(ecf_plugin, parallelism) + sizeof(d->parallelism) &&
        (unsigned)d->parallelism > ECF_PARALLEL_PARTITION) {
        g_set_error(error, ECF_ERROR, ECF_ERR_CONFIG,
                    "%s: plugin '%s' declares parallelism %u, which this ecflow "
                    "does not know",
                    path, d->name, (unsigned)d->parallelism);
        return FALSE;
    }
    if (d->kind == ECF_SOURCE ? !d->run : !d->process) {
        g_set_error(error, ECF_ERROR, ECF_ERR_CONFIG, "%s: plugin '%s' is a %s without a %s callback", path, d->name,
                    ecf_kind_name(d->kind), d->kind == ECF_SOURCE ? "run" : "process");
        return FALSE;
    }
    return TRUE;
}

const ecf_loaded_plugin *ecf_registry_load_path(ecf_registry *reg, const char *path, GError **error)
{
    ecf_loaded_plugin *lp = g_hash_table_lookup(reg->by_path, path);
    if (lp)
        return lp;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        g_set_error(error, ECF_ERROR, ECF_ERR_CONFIG, "cannot load plugin: %s", dlerror());
        return NULL;
    }
    ecf_plugin_entry_fn entry = (ecf_plugin_entry_fn)dlsym(h, ECF_PLUGIN_ENTRY_SYMBOL);
    const ecf_plugin *d = entry ? entry() : NULL;
    if (!d) {
        g_set_error(error, ECF_ERROR, ECF_ERR_CONFIG, "%s: not an ecflow plugin (no '%s' symbol)", path,
                    ECF_PLUGIN_ENTRY_SYMBOL);
        dlclose(h);
        return NULL;
    }
    if (!check_descriptor(d, path, error)) {
        dlclose(h);
        return NULL;
    }
    lp = g_new0(ecf_loaded_plugin, 1);
    /* Copy only what the plugin's build knew of; newer fields stay zero. */
    memcpy(&lp->desc, d, MIN(d->size, sizeof lp->desc));
    lp->desc.size = sizeof lp->desc;
    lp->name = g_strdup(d->name);
    lp->path = g_strdup(path);
    lp->handle = h;
    g_hash_table_insert(reg->by_path, lp->path, lp);
    return lp;
}

/* A plugin is named, never located: "../x" or "/x" would dlopen (and run
 * the constructors of) a file outside the plugin path. */
static gboolean plain_name(const char *name)
{
    size_t n = 0;
    for (const char *p = name; *p; p++, n++)
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_')
            return FALSE;
    return n > 0 && n <= 128;
}

const ecf_loaded_plugin *ecf_registry_find(ecf_registry *reg, const char *name, GError **error)
{
    if (!plain_name(name)) {
        g_set_error(error, ECF_ERROR, ECF_ERR_CONFIG,
                    "plugin name '%s' is not a plain name (letters, digits, '-' and '_'; plugins are found "
                    "only in the plugin path)",
                    name);
        return NULL;
    }
    for (guint i = 0; i + 1 < reg->dirs->len; i++) {
        g_autofree char *file = g_strconcat(name, ".so", NULL);
        g_autofree char *path = g_build_filename(reg->dirs->pdata[i], file, NULL);
        if (!g_file_test(path, G_FILE_TEST_EXISTS))
            continue;
        const ecf_loaded_plugin *lp = ecf_registry_load_path(reg, path, error);
        if (lp && strcmp(lp->name, name) != 0) {
            g_set_error(error, ECF_ERROR, ECF_ERR_CONFIG, "%s: file is named '%s' but the plugin calls itself '%s'",
                        path, name, lp->name);
            return NULL;
        }
        return lp;
    }
    g_autofree char *dirs = g_strjoinv(":", (char **)reg->dirs->pdata);
    g_set_error(error, ECF_ERROR, ECF_ERR_CONFIG, "unknown plugin '%s' (searched %s)", name, dirs);
    return NULL;
}

static gint by_name(gconstpointer a, gconstpointer b)
{
    const ecf_loaded_plugin *x = *(ecf_loaded_plugin *const *)a;
    const ecf_loaded_plugin *y = *(ecf_loaded_plugin *const *)b;
    return strcmp(x->name, y->name);
}

GPtrArray *ecf_registry_scan(ecf_registry *reg, GPtrArray *errors)
{
    GPtrArray *found = g_ptr_array_new();
    g_autoptr(GHashTable) names = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; i + 1 < reg->dirs->len; i++) {
        g_autoptr(GDir) dir = g_dir_open(reg->dirs->pdata[i], 0, NULL);
        const char *entry;
        while (dir && (entry = g_dir_read_name(dir))) {
            if (!g_str_has_suffix(entry, ".so"))
                continue;
            g_autofree char *path = g_build_filename(reg->dirs->pdata[i], entry, NULL);
            g_autoptr(GError) err = NULL;
            const ecf_loaded_plugin *lp = ecf_registry_load_path(reg, path, &err);
            if (!lp) {
                g_ptr_array_add(errors, g_strdup(err->message));
                continue;
            }
            if (g_hash_table_contains(names, lp->name))
                continue;
            g_hash_table_add(names, lp->name);
            g_ptr_array_add(found, (gpointer)lp);
        }
    }
    g_ptr_array_sort(found, by_name);
    return found;
}
