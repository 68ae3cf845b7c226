/* Table commits: see table_commit.h. */
#include "table_commit.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#define MAX_ATTEMPTS 10

int64_t table_snapshot_time(const table_metadata *tm, int64_t now_ms)
{
    int64_t last = tm_last_updated_ms(tm);
    return now_ms > last ? now_ms : last + 1;
}

int64_t table_new_snapshot_id(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
        v = ((uint64_t)g_random_int() << 32) | g_random_int();
    v &= 0x7FFFFFFFFFFFFFFFull;
    return v ? (int64_t)v : 1;
}

void table_close(ice_table *t)
{
    catalog_table_clear(&t->cat);
    ice_schema_clear(&t->schema);
    part_spec_clear(&t->spec);
    t->exists = false;
}

static bool load_model(ice_table *t, char **err)
{
    char e[512];
    ice_schema_clear(&t->schema);
    part_spec_clear(&t->spec);
    if (!tm_current_schema(&t->cat.meta, &t->schema, e, sizeof e) ||
        !tm_default_spec(&t->cat.meta, &t->schema, &t->spec, e, sizeof e)) {
        *err = g_strdup_printf("%s: %s", t->cat.metadata_file, e);
        return false;
    }
    return true;
}

bool table_reload(ice_table *t, char **err)
{
    int r = catalog_load(&t->cat, err);
    if (r <= 0) {
        if (r == 0)
            *err = g_strdup_printf("no table at %s", t->cat.location ? t->cat.location : t->cat.name);
        return false;
    }
    t->exists = true;
    return load_model(t, err);
}

static bool same_partition_by(const part_spec *table_spec, const ice_schema *table_schema, char **partition_by,
                              const ice_schema *input)
{
    part_spec want;
    char e[256];
    if (!part_spec_parse(partition_by, input, &want, e, sizeof e))
        return false;
    /* compare by source column name (ids differ between input and table) */
    bool same = want.n_fields == table_spec->n_fields;
    for (int i = 0; same && i < want.n_fields; i++) {
        const ice_field *a = ice_schema_find_id(input, want.fields[i].source_id);
        const ice_field *b = ice_schema_find_id(table_schema, table_spec->fields[i].source_id);
        same = a && b && strcmp(a->name, b->name) == 0 && want.fields[i].transform == table_spec->fields[i].transform;
    }
    part_spec_clear(&want);
    return same;
}

bool table_open(ice_table *t, const catalog_ref *ref, const table_open_args *a, char **note, char **err)
{
    memset(t, 0, sizeof *t);
    *note = NULL;
    catalog_table_init(&t->cat, ref);
    g_autofree char *name = ref->rest ? g_strdup_printf("%s.%s", ref->ns, ref->name) : g_strdup(ref->location);
    const char *location = name; /* what messages call the table */
    char e[512];
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        int r = catalog_load(&t->cat, err);
        if (r < 0) {
            t->unreachable = true;
            return false;
        }
        if (r == 0) {
            /* a new table from the input schema */
            ice_schema_clear(&t->schema);
            part_spec_clear(&t->spec);
            ice_schema_copy(&t->schema, a->input);
            t->schema.schema_id = 0;
            if (!part_spec_parse(a->partition_by, &t->schema, &t->spec, e, sizeof e)) {
                *err = g_strdup(e);
                return false;
            }
            if (a->dry_run)
                return true;
            table_metadata tm;
            /* REST: the catalog assigns the location */
            tm_create(&tm, ref->rest ? "" : ref->location, &t->schema, &t->spec, a->now_ms);
            fio_result fr = catalog_commit(&t->cat, &tm, err);
            tm_clear(&tm);
            if (fr == FIO_EXISTS)
                continue; /* created meanwhile by someone else: load it */
            if (fr != FIO_OK)
                return false;
            t->exists = true;
            if (!load_model(t, err)) /* as the catalog stored it (REST may renumber) */
                return false;
            *note = g_strdup_printf("created table %s at %s (schema %d, %d columns, %d partition fields)", location,
                                    t->cat.location, t->schema.schema_id, t->schema.n_fields, t->spec.n_fields);
            return true;
        }
        t->exists = true;
        if (!load_model(t, err))
            return false;
        if (!a->dry_run)
            catalog_repair_hint(&t->cat);
        if (!same_partition_by(&t->spec, &t->schema, a->partition_by, a->input) && !*note)
            *note = g_strdup_printf("table %s keeps its own partition spec %d; option 'partition_by' applies to new "
                                    "tables only",
                                    location, t->spec.spec_id);
        int last_id = tm_last_column_id(&t->cat.meta);
        if (ice_schema_max_id(&t->schema) > last_id)
            last_id = ice_schema_max_id(&t->schema);
        ice_schema evolved = {0};
        int rc = ice_schema_reconcile(&t->schema, a->input, &last_id, &evolved, e, sizeof e);
        if (rc < 0) {
            *err = g_strdup_printf("table %s: %s", location, e);
            return false;
        }
        if (rc == 0 || a->dry_run) {
            ice_schema_clear(&evolved);
            return true;
        }
        /* a new schema id: the highest existing one + 1 */
        JsonArray *schemas = json_object_get_array_member(t->cat.meta.o, "schemas");
        int max_sid = 0;
        for (guint i = 0; schemas && i < json_array_get_length(schemas); i++) {
            int sid =
                (int)json_object_get_int_member_with_default(json_array_get_object_element(schemas, i), "schema-id", 0);
            if (sid > max_sid)
                max_sid = sid;
        }
        evolved.schema_id = max_sid + 1;
        table_metadata next;
        tm_copy(&next, &t->cat.meta);
        tm_add_schema(&next, &evolved, last_id, a->now_ms);
        fio_result fr = catalog_commit(&t->cat, &next, err);
        tm_clear(&next);
        if (fr == FIO_EXISTS) {
            ice_schema_clear(&evolved);
            g_clear_pointer(err, g_free);
            continue;
        }
        if (fr != FIO_OK) {
            ice_schema_clear(&evolved);
            return false;
        }
        g_free(*note);
        *note = g_strdup_printf("evolved table %s to schema %d (%d columns)", location, evolved.schema_id,
                                evolved.n_fields);
        ice_schema_clear(&evolved);
        return load_model(t, err);
    }
    *err = g_strdup_printf("table %s: gave up after %d conflicting commits", location, MAX_ATTEMPTS);
    return false;
}

const char *table_lineage_summary(const ice_table *t, const char *match_key, const char *match_value, const char *key,
                                  int64_t *snapshot_id)
{
    return tm_lineage_summary(&t->cat.meta, match_key, match_value, key, snapshot_id);
}

const char *tm_lineage_summary(const table_metadata *meta, const char *match_key, const char *match_value,
                               const char *key, int64_t *snapshot_id)
{
    *snapshot_id = -1;
    JsonArray *snaps =
        json_object_has_member(meta->o, "snapshots") ? json_object_get_array_member(meta->o, "snapshots") : NULL;
    if (!snaps)
        return NULL;
    /* id -> snapshot once, so a long walk (another writer committed often
     * since our last snapshot) stays linear */
    guint n = json_array_get_length(snaps);
    GHashTable *by_id = g_hash_table_new(g_int64_hash, g_int64_equal);
    gint64 *ids = g_new(gint64, n ? n : 1);
    for (guint i = 0; i < n; i++) {
        JsonObject *s = json_array_get_object_element(snaps, i);
        ids[i] = s ? json_object_get_int_member_with_default(s, "snapshot-id", -1) : -1;
        if (s)
            g_hash_table_insert(by_id, &ids[i], s);
    }
    const char *found = NULL;
    gint64 id = tm_current_snapshot_id(meta);
    for (guint guard = 0; id >= 0 && guard <= n; guard++) {
        JsonObject *s = g_hash_table_lookup(by_id, &id);
        if (!s)
            break;
        JsonObject *sum = json_object_has_member(s, "summary") ? json_object_get_object_member(s, "summary") : NULL;
        const char *who = sum ? json_object_get_string_member_with_default(sum, match_key, NULL) : NULL;
        if (who && strcmp(who, match_value) == 0) {
            *snapshot_id = id;
            found = json_object_get_string_member_with_default(sum, key, NULL);
            break;
        }
        /* carried forward by maintenance for that writer (TM_CARRIED) */
        g_autofree char *carried = g_strdup_printf("%s@%s", key, match_value);
        if (sum && json_object_has_member(sum, carried)) {
            *snapshot_id = id;
            found = json_object_get_string_member_with_default(sum, carried, NULL);
            break;
        }
        id = json_object_get_int_member_with_default(s, "parent-snapshot-id", -1);
    }
    g_hash_table_destroy(by_id);
    g_free(ids);
    return found;
}

/* Do the columns our files were written with still mean the same? */
static bool files_fit_schema(const ice_schema *schema, data_file *const *files, int n, char **err)
{
    for (int i = 0; i < n; i++)
        for (int c = 0; c < files[i]->metrics.n_columns; c++) {
            int id = files[i]->metrics.cols[c].field_id;
            if (!ice_schema_find_id(schema, id)) {
                *err = g_strdup_printf("a concurrent commit dropped column id %d from the table", id);
                return false;
            }
        }
    return true;
}

static int64_t summary_i64(const table_metadata *tm, int64_t snap, const char *key, bool *ok)
{
    const char *v = snap >= 0 ? tm_snapshot_summary(tm, snap, key) : "0";
    if (!v) {
        *ok = false;
        return 0;
    }
    return g_ascii_strtoll(v, NULL, 10);
}

bool table_append(ice_table *t, data_file *const *files, int n_files, const char *const *extra, table_summary_fn more,
                  void *more_ctx, int64_t now_ms, int64_t *snapshot_id_out, char **err)
{
    int64_t snapshot_id = table_new_snapshot_id();
    t->outcome_unknown = false;
    g_autofree char *uuid = g_uuid_string_random();
    g_autofree char *mname = g_strdup_printf("metadata/%s-m0.avro", uuid);
    g_autofree char *mpath = fio_join(t->cat.location, mname);
    /* No files: a snapshot that only moves the summary's positions on (the
     * rows it covers were all copies); it lists the parent's manifests. */
    manifest_file ours = {0};
    const int n_ours = n_files > 0 ? 1 : 0;
    if (n_ours && !manifest_write(t->cat.io, mpath, &t->schema, &t->spec, snapshot_id, files, n_files, &ours, err))
        return false;

    int64_t added_rows = 0, added_size = 0;
    GHashTable *parts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (int i = 0; i < n_files; i++) {
        added_rows += files[i]->metrics.num_rows;
        added_size += files[i]->metrics.file_size;
        byte_buf key = {0};
        for (int p = 0; p < t->spec.n_fields; p++) {
            part_value_to_path(&t->spec.fields[p], &files[i]->partition[p], &key);
            bb_byte(&key, '/');
        }
        bb_byte(&key, 0);
        g_hash_table_add(parts, g_strdup((const char *)key.data));
        bb_free(&key);
    }
    guint changed_partitions = g_hash_table_size(parts);
    g_hash_table_destroy(parts);

    bool ok = false;
    for (int attempt = 1; attempt <= MAX_ATTEMPTS && !ok; attempt++) {
        if (!files_fit_schema(&t->schema, files, n_files, err))
            break;
        int64_t parent = tm_current_snapshot_id(&t->cat.meta);
        int64_t seq = tm_last_sequence_number(&t->cat.meta) + 1;
        manifest_file *prev = NULL;
        int n_prev = 0;
        if (parent >= 0) {
            JsonObject *ps = tm_snapshot(&t->cat.meta, parent);
            const char *list = ps ? json_object_get_string_member_with_default(ps, "manifest-list", NULL) : NULL;
            if (!list) {
                *err = g_strdup_printf("snapshot %" G_GINT64_FORMAT " has no manifest-list", parent);
                break;
            }
            if (!manifest_list_read(t->cat.io, list, &prev, &n_prev, err))
                break;
        }
        /* ours first (newest), then the parent's */
        manifest_file *all = g_new0(manifest_file, (gsize)n_prev + 1);
        if (n_ours) {
            all[0] = ours;
            all[0].sequence_number = all[0].min_sequence_number = seq;
        }
        for (int i = 0; i < n_prev; i++)
            all[i + n_ours] = prev[i];
        g_autofree char *lname =
            g_strdup_printf("metadata/snap-%" G_GINT64_FORMAT "-%d-%s.avro", snapshot_id, attempt, uuid);
        g_autofree char *lpath = fio_join(t->cat.location, lname);
        bool wrote = manifest_list_write(t->cat.io, lpath, snapshot_id, parent, seq, all, n_prev + n_ours, err);
        g_free(all);
        for (int i = 0; i < n_prev; i++)
            manifest_file_clear(&prev[i]);
        g_free(prev);
        if (!wrote)
            break;

        bool totals = true;
        int64_t tot_rows = summary_i64(&t->cat.meta, parent, "total-records", &totals) + added_rows;
        int64_t tot_size = summary_i64(&t->cat.meta, parent, "total-files-size", &totals) + added_size;
        int64_t tot_files = summary_i64(&t->cat.meta, parent, "total-data-files", &totals) + n_files;
        int64_t tot_del = summary_i64(&t->cat.meta, parent, "total-delete-files", &totals);
        int64_t tot_pos = summary_i64(&t->cat.meta, parent, "total-position-deletes", &totals);
        int64_t tot_eq = summary_i64(&t->cat.meta, parent, "total-equality-deletes", &totals);
        char b[12][32];
        snprintf(b[0], 32, "%d", n_files);
        snprintf(b[1], 32, "%" G_GINT64_FORMAT, added_rows);
        snprintf(b[2], 32, "%" G_GINT64_FORMAT, added_size);
        snprintf(b[3], 32, "%u", changed_partitions);
        snprintf(b[4], 32, "%" G_GINT64_FORMAT, tot_rows);
        snprintf(b[5], 32, "%" G_GINT64_FORMAT, tot_size);
        snprintf(b[6], 32, "%" G_GINT64_FORMAT, tot_files);
        snprintf(b[7], 32, "%" G_GINT64_FORMAT, tot_del);
        snprintf(b[8], 32, "%" G_GINT64_FORMAT, tot_pos);
        snprintf(b[9], 32, "%" G_GINT64_FORMAT, tot_eq);
        GPtrArray *kv = g_ptr_array_new();
        const char *base[] = {"operation",        "append", "added-data-files",        b[0], "added-records", b[1],
                              "added-files-size", b[2],     "changed-partition-count", b[3]};
        for (size_t i = 0; i < G_N_ELEMENTS(base); i++)
            g_ptr_array_add(kv, (gpointer)base[i]);
        if (totals) {
            const char *tot[] = {"total-records",          b[4], "total-files-size",       b[5],
                                 "total-data-files",       b[6], "total-delete-files",     b[7],
                                 "total-position-deletes", b[8], "total-equality-deletes", b[9]};
            for (size_t i = 0; i < G_N_ELEMENTS(tot); i++)
                g_ptr_array_add(kv, (gpointer)tot[i]);
        }
        for (const char *const *e = extra; e && *e; e++)
            g_ptr_array_add(kv, (gpointer)*e);
        GPtrArray *keep = g_ptr_array_new_with_free_func(g_free);
        if (more && !more(more_ctx, t, kv, keep, err)) {
            g_ptr_array_free(kv, TRUE);
            g_ptr_array_free(keep, TRUE);
            t->cat.io->remove(t->cat.io, lpath);
            break;
        }
        g_ptr_array_add(kv, NULL);

        table_metadata next;
        tm_copy(&next, &t->cat.meta);
        tm_add_snapshot(&next, snapshot_id, parent, seq, table_snapshot_time(&t->cat.meta, now_ms), lpath,
                        t->schema.schema_id, (const char *const *)kv->pdata);
        g_ptr_array_free(kv, TRUE);
        g_ptr_array_free(keep, TRUE);
        fio_result fr = catalog_commit(&t->cat, &next, err);
        tm_clear(&next);
        if (fr == FIO_OK) {
            ok = true;
            break;
        }
        if (fr == FIO_UNKNOWN) {
            /* maybe committed: the table may reference these files now */
            t->outcome_unknown = true;
            break;
        }
        t->cat.io->remove(t->cat.io, lpath);
        if (fr != FIO_EXISTS)
            break;
        /* lost the race: reload and re-apply on top of the winner */
        g_clear_pointer(err, g_free);
        int r = catalog_load(&t->cat, err);
        if (r <= 0) {
            if (r == 0)
                *err = g_strdup("the table disappeared during the commit");
            break;
        }
        if (!load_model(t, err))
            break;
        /* our own commit, applied although its answer said otherwise (a
         * retried conditional PUT, a REST commit answered 409 after a lost
         * first answer): done, not to be appended twice */
        if (tm_snapshot(&t->cat.meta, snapshot_id)) {
            ok = true;
            break;
        }
        if (attempt == MAX_ATTEMPTS)
            *err = g_strdup_printf("gave up after %d conflicting commits", MAX_ATTEMPTS);
    }
    if (!ok && n_ours && !t->outcome_unknown)
        t->cat.io->remove(t->cat.io, mpath);
    manifest_file_clear(&ours);
    if (ok && snapshot_id_out)
        *snapshot_id_out = snapshot_id;
    return ok;
}
