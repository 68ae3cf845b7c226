#include "loader.h"

#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

static void test_abi_mismatch_is_refused(void)
{
    ecf_registry *reg = ecf_registry_new(NULL);
    g_autoptr(GError) err = NULL;
    g_assert_null(ecf_registry_find(reg, "abi-future", &err));
    g_assert_nonnull(err);
    g_autofree char *theirs = g_strdup_printf("ABI %d.3", ECF_ABI_MAJOR + 1);
    g_autofree char *ours = g_strdup_printf("ABI %d.%d", ECF_ABI_MAJOR, ECF_ABI_MINOR);
    g_assert_nonnull(strstr(err->message, theirs));
    g_assert_nonnull(strstr(err->message, ours));
    ecf_registry_free(reg);
}

/* A 1.2 plugin loads on a 1.3 core; its descriptor ends before 1.3's
 * members, so they read as zero: one instance (ECF_PARALLEL_NONE), no
 * commands, whatever lies past its size. */
static void test_an_older_minor_loads_and_runs_as_one(void)
{
    ecf_registry *reg = ecf_registry_new(NULL);
    g_autoptr(GError) err = NULL;
    const ecf_loaded_plugin *lp = ecf_registry_find(reg, "abi-1-2", &err);
    g_assert_no_error(err);
    g_assert_nonnull(lp);
    g_assert_cmpuint(lp->desc.abi_minor, ==, 2);
    g_assert_cmpint(lp->desc.parallelism, ==, ECF_PARALLEL_NONE);
    g_assert_null(lp->desc.command);
    g_assert_nonnull(lp->desc.process);
    ecf_registry_free(reg);
}

static void test_not_a_plugin(void)
{
    ecf_registry *reg = ecf_registry_new(NULL);
    g_autoptr(GError) err = NULL;
    g_assert_null(ecf_registry_find(reg, "not-a-plugin", &err));
    g_assert_nonnull(strstr(err->message, "not an ecflow plugin"));
    ecf_registry_free(reg);
}

static void test_unknown_plugin_lists_search_path(void)
{
    const char *dirs[] = {"/nonexistent-dir", NULL};
    ecf_registry *reg = ecf_registry_new(dirs);
    g_autoptr(GError) err = NULL;
    g_assert_null(ecf_registry_find(reg, "sink-nothing", &err));
    g_assert_nonnull(strstr(err->message, "unknown plugin 'sink-nothing' (searched /nonexistent-dir:"));
    ecf_registry_free(reg);
}

/* A name is looked up in the plugin path, never used as a path: a real
 * plugin two folders away is not loaded through "../". */
static void test_names_that_are_paths_are_refused_before_loading(void)
{
    g_autofree char *tmp = g_dir_make_tmp("ecflow-loader-XXXXXX", NULL);
    g_autofree char *a = g_build_filename(tmp, "a", NULL), *b = g_build_filename(tmp, "b", NULL);
    g_assert_cmpint(g_mkdir(a, 0755), ==, 0);
    g_assert_cmpint(g_mkdir(b, 0755), ==, 0);
    g_auto(GStrv) path = g_strsplit(g_getenv("ECFLOW_PLUGIN_PATH") ? g_getenv("ECFLOW_PLUGIN_PATH") : "", ":", -1);
    g_autofree char *real = NULL;
    for (char **d = path; *d && !real; d++) {
        char *candidate = g_build_filename(*d, "sink-null.so", NULL);
        if (g_file_test(candidate, G_FILE_TEST_EXISTS))
            real = candidate;
        else
            g_free(candidate);
    }
    g_assert_nonnull(real);
    g_autofree char *evil = g_build_filename(b, "evil.so", NULL);
    g_assert_cmpint(symlink(real, evil), ==, 0);
    const char *dirs[] = {a, NULL};
    ecf_registry *reg = ecf_registry_new(dirs);
    static const char *const names[] = {"../b/evil", "/tmp/evil", "evil/../x", "a.b", "", "sink null"};
    for (guint i = 0; i < G_N_ELEMENTS(names); i++) {
        g_autoptr(GError) err = NULL;
        g_assert_null(ecf_registry_find(reg, names[i], &err));
        g_assert_nonnull(strstr(err->message, "is not a plain name"));
    }
    ecf_registry_free(reg);
    g_unlink(evil);
    g_rmdir(a);
    g_rmdir(b);
    g_rmdir(tmp);
}

static void test_scan_lists_good_plugins_and_reports_bad(void)
{
    ecf_registry *reg = ecf_registry_new(NULL);
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) found = ecf_registry_scan(reg, errors);
    gboolean has_generate = FALSE;
    for (guint i = 0; i < found->len; i++)
        has_generate |= strcmp(((ecf_loaded_plugin *)found->pdata[i])->name, "source-generate") == 0;
    g_assert_true(has_generate);
    g_assert_cmpuint(errors->len, >=, 2); /* the two broken fixtures */
    ecf_registry_free(reg);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/loader/plugin-of-another-abi-major-is-refused", test_abi_mismatch_is_refused);
    g_test_add_func("/loader/plugin-of-an-older-minor-loads-and-runs-as-one",
                    test_an_older_minor_loads_and_runs_as_one);
    g_test_add_func("/loader/shared-object-without-entry-is-refused", test_not_a_plugin);
    g_test_add_func("/loader/unknown-plugin-names-the-search-path", test_unknown_plugin_lists_search_path);
    g_test_add_func("/loader/scan-lists-plugins-and-reports-broken-ones", test_scan_lists_good_plugins_and_reports_bad);
    g_test_add_func("/loader/names-that-are-paths-are-refused-before-loading",
                    test_names_that_are_paths_are_refused_before_loading);
    return g_test_run();
}
