/* The file catalog and the dispatch between catalogs: see catalog.h. */
#include "catalog.h"
#include "catalog_rest.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void catalog_table_init(catalog_table *t, const catalog_ref *ref)
{
    memset(t, 0, sizeof *t);
    t->io = ref->io;
    t->rest = ref->rest;
    t->location = g_strdup(ref->location);
    t->ns = g_strdup(ref->ns);
    t->name = g_strdup(ref->name);
}

void catalog_table_clear(catalog_table *t)
{
    g_free(t->location);
    g_free(t->ns);
    g_free(t->name);
    g_free(t->metadata_file);
    tm_clear(&t->meta);
    memset(t, 0, sizeof *t);
}

static char *version_file(const catalog_table *t, int v)
{
    g_autofree char *name = g_strdup_printf("metadata/v%d.metadata.json", v);
    return fio_join(t->location, name);
}

static int parse_version_name(const char *name)
{
    int v;
    char tail[32];
    if (sscanf(name, "v%d.metadata.json%31s", &v, tail) == 1 && v > 0)
        return v;
    return 0;
}

int catalog_file_load(catalog_table *t, char **err)
{
    g_autofree char *hint_path = fio_join(t->location, "metadata/version-hint.text");
    int v = 0;
    byte_buf hint = {0};
    char *ignored = NULL;
    if (t->io->read_all(t->io, hint_path, &hint, &ignored)) {
        bb_byte(&hint, 0);
        v = atoi(g_strstrip((char *)hint.data));
    }
    g_free(ignored);
    bb_free(&hint);
    t->hint = v > 0 ? v : 0;
    if (v <= 0) { /* no hint: the highest vN in metadata/ */
        g_autofree char *dir = fio_join(t->location, "metadata");
        char **names = t->io->list(t->io, dir, err);
        if (!names)
            return -1;
        for (char **n = names; n && *n; n++) {
            int k = parse_version_name(*n);
            if (k > v)
                v = k;
        }
        g_strfreev(names);
        if (v == 0) {
            t->version = 0;
            return 0;
        }
    }
    /* the hint may lag behind a commit whose hint update did not happen */
    for (;;) {
        g_autofree char *next = version_file(t, v + 1);
        if (!t->io->exists(t->io, next))
            break;
        v++;
    }
    g_autofree char *path = version_file(t, v);
    byte_buf data = {0};
    if (!t->io->read_all(t->io, path, &data, err)) {
        bb_free(&data);
        return -1;
    }
    table_metadata tm;
    char e[256];
    if (!tm_parse(&tm, (const char *)data.data, data.len, e, sizeof e)) {
        *err = g_strdup_printf("%s: %s", path, e);
        bb_free(&data);
        return -1;
    }
    bb_free(&data);
    if (tm_format_version(&tm) != 2) {
        *err = g_strdup_printf("%s: format-version %d; this sink writes format v2 tables only", path,
                               tm_format_version(&tm));
        tm_clear(&tm);
        return -1;
    }
    tm_clear(&t->meta);
    t->meta = tm;
    t->version = v;
    g_free(t->metadata_file);
    t->metadata_file = g_strdup(path);
    return 1;
}

static int read_hint(catalog_table *t, const char *hint_path)
{
    byte_buf hint = {0};
    char *ignored = NULL;
    int v = 0;
    if (t->io->read_all(t->io, hint_path, &hint, &ignored)) {
        bb_byte(&hint, 0);
        v = atoi(g_strstrip((char *)hint.data));
    }
    g_free(ignored);
    bb_free(&hint);
    return v > 0 ? v : 0;
}

/* The highest version from `v` on whose metadata file exists. */
static int newest_from(catalog_table *t, int v)
{
    for (;;) {
        g_autofree char *next = version_file(t, v + 1);
        if (!t->io->exists(t->io, next))
            return v;
        v++;
    }
}

/* Writers race on the hint (a stale writer's late update, a starting
 * writer's repair): it only ever moves forward. A newer hint is left alone;
 * after writing, a version committed meanwhile is written over ours, so the
 * last writer to finish leaves the newest version it can see. */
static bool write_hint(catalog_table *t)
{
    g_autofree char *hint_path = fio_join(t->location, "metadata/version-hint.text");
    int v = newest_from(t, t->version);
    for (;;) {
        int current = read_hint(t, hint_path);
        g_autofree char *cur_file = current > v ? version_file(t, current) : NULL;
        if (current == v || (cur_file && t->io->exists(t->io, cur_file))) { /* a bogus hint is overwritten */
            t->hint = current;
            return true;
        }
        g_autofree char *digits = g_strdup_printf("%d", v);
        char *ignored = NULL;
        bool ok = t->io->put(t->io, hint_path, digits, strlen(digits), &ignored);
        g_free(ignored);
        if (!ok)
            return false;
        t->hint = v;
        int newer = newest_from(t, v);
        if (newer == v)
            return true;
        v = newer;
    }
}

bool catalog_file_repair_hint(catalog_table *t)
{
    if (t->version <= 0 || t->hint == t->version)
        return true;
    return write_hint(t);
}

fio_result catalog_file_commit(catalog_table *t, table_metadata *next, char **err)
{
    int v = t->version + 1;
    g_autofree char *path = version_file(t, v);
    if (t->metadata_file)
        tm_log_previous(next, t->metadata_file, tm_last_updated_ms(&t->meta));
    g_autofree char *json = tm_to_string(next);
    fio_result r = t->io->put_if_absent(t->io, path, json, strlen(json), err);
    if (r != FIO_OK)
        return r;
    tm_clear(&t->meta);
    tm_copy(&t->meta, next);
    t->version = v;
    g_free(t->metadata_file);
    t->metadata_file = g_strdup(path);
    /* the hint is advisory: a failure here costs readers a probe, not data
     * (and the next start repairs it: catalog_repair_hint) */
    write_hint(t);
    return FIO_OK;
}

/* ------------------------------------------------------------ dispatch */

int catalog_load(catalog_table *t, char **err)
{
    return t->rest ? rest_catalog_load(t->rest, t, err) : catalog_file_load(t, err);
}

bool catalog_repair_hint(catalog_table *t) { return t->rest ? true : catalog_file_repair_hint(t); }

fio_result catalog_commit(catalog_table *t, table_metadata *next, char **err)
{
    return t->rest ? rest_catalog_commit(t->rest, t, next, err) : catalog_file_commit(t, next, err);
}
