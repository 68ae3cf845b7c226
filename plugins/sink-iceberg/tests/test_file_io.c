/* Durability of local table files (issue 18 item 8): what is fsynced before a
 * commit can reference it. fsync(2) and syncfs(2) are interposed here (the
 * sink's file IO is linked statically into this test) and record the paths
 * they were called on. */
#define _GNU_SOURCE
#include "catalog.h"
#include "file_io.h"
#include "partition.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static GPtrArray *synced; /* paths, in call order; "syncfs:" + path for syncfs */

static char *fd_path(int fd)
{
    g_autofree char *link = g_strdup_printf("/proc/self/fd/%d", fd);
    char *p = g_file_read_link(link, NULL);
    return p ? p : g_strdup("?");
}

int fsync(int fd)
{
    if (synced)
        g_ptr_array_add(synced, fd_path(fd));
    return (int)syscall(SYS_fsync, fd);
}

int syncfs(int fd)
{
    if (synced) {
        g_autofree char *p = fd_path(fd);
        g_ptr_array_add(synced, g_strconcat("syncfs:", p, NULL));
    }
    return (int)syscall(SYS_syncfs, fd);
}

static gboolean was_synced(const char *path)
{
    for (guint i = 0; i < synced->len; i++)
        if (strcmp(synced->pdata[i], path) == 0)
            return TRUE;
    return FALSE;
}

static gboolean was_synced_prefix(const char *prefix)
{
    for (guint i = 0; i < synced->len; i++)
        if (g_str_has_prefix(synced->pdata[i], prefix))
            return TRUE;
    return FALSE;
}

static void dump(void)
{
    for (guint i = 0; i < synced->len; i++)
        g_printerr("  synced %s\n", (char *)synced->pdata[i]);
}

static void write_data_file(file_io *io, const char *loc)
{
    char *err = NULL;
    fio_out *o = io->create(io, loc, &err);
    g_assert_nonnull(o);
    g_assert_cmpint(io->write(o, "PAR1", 4), ==, 0);
    g_assert_cmpint(io->close(o, &err), ==, 0);
}

/* fsync: true: the data file, its new directories and their parents are
 * synced when it is closed; manifests are always synced. */
static void test_data_files_and_new_directories_are_synced(void)
{
    g_autofree char *root = g_dir_make_tmp("fio-XXXXXX", NULL);
    file_io *io = file_io_local_new(true);
    synced = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *data = g_strdup_printf("%s/t/data/k=v/f.parquet", root);
    write_data_file(io, data);
    g_autofree char *dir = g_strdup_printf("%s/t/data/k=v", root);
    g_autofree char *dir2 = g_strdup_printf("%s/t/data", root);
    g_autofree char *dir3 = g_strdup_printf("%s/t", root);
    g_autofree char *tmp_prefix = g_strdup_printf("%s/t/data/k=v/f.parquet.tmp-", root);
    if (!was_synced_prefix(tmp_prefix) || !was_synced(dir) || !was_synced(dir2) || !was_synced(dir3) ||
        !was_synced(root)) {
        dump();
        g_error("data file or its new directories not synced");
    }
    g_ptr_array_free(synced, TRUE);
    synced = NULL;
    io->destroy(io);
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", root);
    g_assert_cmpint(system(cmd), ==, 0);
}

/* fsync: false must never let a commit reference a file not on disk: the
 * manifest (written after the data files, before the commit) syncs the
 * file system first, and is itself always synced. */
static void test_no_fsync_still_syncs_before_a_manifest(void)
{
    g_autofree char *root = g_dir_make_tmp("fio-XXXXXX", NULL);
    file_io *io = file_io_local_new(false);
    synced = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *data = g_strdup_printf("%s/t/data/f.parquet", root);
    write_data_file(io, data);
    g_assert_cmpuint(synced->len, ==, 0); /* nothing per data file */
    g_autofree char *man = g_strdup_printf("%s/t/metadata/m0.avro", root);
    char *err = NULL;
    g_assert_true(io->put(io, man, "Obj", 3, &err));
    g_autofree char *meta = g_strdup_printf("%s/t/metadata", root);
    g_autofree char *man_tmp = g_strdup_printf("%s/t/metadata/m0.avro.tmp-", root);
    if (!was_synced_prefix("syncfs:") || !was_synced_prefix(man_tmp) || !was_synced(meta)) {
        dump();
        g_error("manifest, its directory or the file system not synced");
    }
    g_ptr_array_free(synced, TRUE);
    synced = NULL;
    io->destroy(io);
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", root);
    g_assert_cmpint(system(cmd), ==, 0);
}

static char *read_hint(const char *loc)
{
    g_autofree char *p = g_strdup_printf("%s/metadata/version-hint.text", loc);
    char *s = NULL;
    g_file_get_contents(p, &s, NULL, NULL);
    return s;
}

/* Writer A starts (its load finds v1 and no hint) while writer B commits v2;
 * A's hint repair must not move the hint back to 1 (issue 18 item 9). */
static void test_version_hint_never_moves_backwards(void)
{
    g_autofree char *root = g_dir_make_tmp("fio-XXXXXX", NULL);
    g_autofree char *loc = g_strdup_printf("%s/t", root);
    file_io *io = file_io_local_new(true);
    catalog_ref ref = {.io = io, .location = loc};
    char *err = NULL;

    catalog_table a, b;
    catalog_table_init(&a, &ref);
    g_assert_cmpint(catalog_load(&a, &err), ==, 0);
    ice_schema schema = {0};
    part_spec spec = {0};
    table_metadata m;
    tm_create(&m, loc, &schema, &spec, 1);
    g_assert_cmpint(catalog_commit(&a, &m, &err), ==, FIO_OK);
    tm_clear(&m);
    g_autofree char *hint_path = g_strdup_printf("%s/metadata/version-hint.text", loc);
    g_assert_cmpint(g_unlink(hint_path), ==, 0); /* a crash before the hint update */

    g_assert_cmpint(catalog_load(&a, &err), ==, 1); /* A: v1, no hint */
    catalog_table_init(&b, &ref);
    g_assert_cmpint(catalog_load(&b, &err), ==, 1);
    tm_copy(&m, &b.meta);
    g_assert_cmpint(catalog_commit(&b, &m, &err), ==, FIO_OK); /* B: v2 */
    tm_clear(&m);
    g_autofree char *h1 = read_hint(loc);
    g_assert_cmpstr(h1, ==, "2");

    catalog_repair_hint(&a); /* A, late */
    g_autofree char *h2 = read_hint(loc);
    g_assert_cmpstr(h2, ==, "2");

    catalog_table_clear(&a);
    catalog_table_clear(&b);
    io->destroy(io);
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", root);
    g_assert_cmpint(system(cmd), ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/file-io/data-files-and-new-directories-are-synced",
                    test_data_files_and_new_directories_are_synced);
    g_test_add_func("/file-io/no-fsync-still-syncs-before-a-manifest", test_no_fsync_still_syncs_before_a_manifest);
    g_test_add_func("/catalog/version-hint-never-moves-backwards", test_version_hint_never_moves_backwards);
    return g_test_run();
}
