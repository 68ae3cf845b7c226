/* Table maintenance: see maintenance.h. */
#include "maintenance.h"

#include "dedupe_store.h"
#include "manifest.h"
#include "parquet_rewrite.h"

#include <glib.h>
#include <inttypes.h>
#include <string.h>

#define MAX_ATTEMPTS 10

void maint_report_clear(maint_report *r)
{
    g_free(r->note);
    memset(r, 0, sizeof *r);
    r->replace_snapshot = -1;
}

static void note(maint_report *r, char *why)
{
    if (!r->note)
        r->note = why;
    else
        g_free(why);
}

/* ------------------------------------------------------------ reading a snapshot */

static const char *manifest_list_of(const table_metadata *tm, int64_t snap)
{
    JsonObject *s = tm_snapshot(tm, snap);
    return s ? json_object_get_string_member_with_default(s, "manifest-list", NULL) : NULL;
}

static void free_manifests(manifest_file *ms, int n)
{
    for (int i = 0; i < n; i++)
        manifest_file_clear(&ms[i]);
    g_free(ms);
}

/* The manifests of a snapshot (none for -1). */
static bool snapshot_manifests(ice_table *t, const table_metadata *tm, int64_t snap, manifest_file **ms, int *n,
                               char **err)
{
    *ms = NULL;
    *n = 0;
    if (snap < 0)
        return true;
    const char *list = manifest_list_of(tm, snap);
    if (!list) {
        *err = g_strdup_printf("snapshot %" PRId64 " has no manifest-list", snap);
        return false;
    }
    return manifest_list_read(t->cat.io, list, ms, n, err);
}

/* The manifests maintenance can rewrite: data manifests of the default spec.
 * Anything else (delete files from another engine, an older partition spec)
 * is a table this writer does not maintain. */
static bool maintainable(const ice_table *t, const manifest_file *ms, int n, char **err)
{
    for (int i = 0; i < n; i++) {
        if (ms[i].content != 0) {
            *err = g_strdup_printf("%s lists delete files (written by another engine): ecflow does not compact or "
                                   "merge such tables",
                                   ms[i].path);
            return false;
        }
        if (ms[i].spec_id != t->spec.spec_id) {
            *err = g_strdup_printf("%s was written under partition spec %d, the table's is %d: ecflow does not "
                                   "rewrite across specs",
                                   ms[i].path, ms[i].spec_id, t->spec.spec_id);
            return false;
        }
    }
    return true;
}

/* Entries of the manifests; with live_only, those not DELETED. */
static bool read_entries(ice_table *t, const manifest_file *ms, int n, bool live_only, GPtrArray *out, char **err)
{
    for (int i = 0; i < n; i++) {
        guint from = out->len;
        if (!manifest_read(t->cat.io, &ms[i], &t->spec, out, err))
            return false;
        if (!live_only)
            continue;
        for (guint k = out->len; k-- > from;)
            if (((manifest_entry *)g_ptr_array_index(out, k))->status == ME_DELETED)
                g_ptr_array_remove_index(out, k);
    }
    return true;
}

static char *partition_key(const part_spec *spec, const data_file *f)
{
    byte_buf key = {0};
    for (int p = 0; p < spec->n_fields; p++) {
        part_value_to_path(&spec->fields[p], &f->partition[p], &key);
        bb_byte(&key, '/');
    }
    bb_byte(&key, 0);
    char *s = g_strdup((const char *)key.data);
    bb_free(&key);
    return s;
}

/* Locations as different writers spell them ("file:/p", "file:///p", "/p";
 * "s3a://" for "s3://"), so references and listings compare. */
static char *normal_location(const char *loc)
{
    if (g_str_has_prefix(loc, "file://")) {
        const char *p = strchr(loc + 7, '/');
        return g_strdup(p ? p : loc);
    }
    if (g_str_has_prefix(loc, "file:/"))
        return g_strdup(loc + 5);
    if (g_str_has_prefix(loc, "s3a://") || g_str_has_prefix(loc, "s3n://"))
        return g_strconcat("s3://", loc + 6, NULL);
    return g_strdup(loc);
}

/* ------------------------------------------------------------ replace commit */

typedef struct {
    GPtrArray *removed; /* char*: locations of the rewritten inputs */
    GPtrArray *added;   /* data_file*: what replaces them */
} replace_set;

static void add_summary_i64(GPtrArray *kv, GPtrArray *keep, const char *key, int64_t v)
{
    char *s = g_strdup_printf("%" PRId64, v);
    g_ptr_array_add(keep, s);
    g_ptr_array_add(kv, (gpointer)key);
    g_ptr_array_add(kv, s);
}

static int64_t parent_total(const table_metadata *tm, int64_t parent, const char *key)
{
    const char *v = parent >= 0 ? tm_snapshot_summary(tm, parent, key) : NULL;
    return v ? g_ascii_strtoll(v, NULL, 10) : -1;
}

/* Summary keys that describe a commit, not a writer's state: not carried. */
static bool carried_key(const char *k)
{
    return g_str_has_prefix(k, "ecflow.") && strcmp(k, "ecflow.writer-id") != 0 && strcmp(k, "ecflow.stage") != 0 &&
           strcmp(k, "ecflow.pipeline") != 0 && strcmp(k, "ecflow.maintenance") != 0;
}

/*
 * Every writer's state (its Kafka positions, its dedupe files: the ecflow.*
 * entries of its newest snapshot in the lineage, or what an earlier
 * maintenance snapshot carried for it) goes into the replace snapshot as
 * "<key>@<writer>" (table_lineage_summary reads them), so the writers' own
 * snapshots can expire like any other.
 */
static void carry_writer_entries(const table_metadata *tm, int64_t parent, GPtrArray *kv, GPtrArray *keep)
{
    GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL); /* "key@writer" */
    GHashTable *writers = g_hash_table_new(g_str_hash, g_str_equal);
    JsonArray *snaps =
        json_object_has_member(tm->o, "snapshots") ? json_object_get_array_member(tm->o, "snapshots") : NULL;
    guint n = snaps ? json_array_get_length(snaps) : 0;
    int64_t id = parent;
    for (guint guard = 0; id >= 0 && guard <= n; guard++) {
        JsonObject *s = tm_snapshot(tm, id);
        if (!s)
            break;
        JsonObject *sum = json_object_has_member(s, "summary") ? json_object_get_object_member(s, "summary") : NULL;
        const char *w = sum ? json_object_get_string_member_with_default(sum, "ecflow.writer-id", NULL) : NULL;
        bool own = w && !g_hash_table_contains(writers, w);
        if (own)
            g_hash_table_add(writers, (gpointer)w);
        GList *members = sum ? json_object_get_members(sum) : NULL;
        for (GList *m = members; m; m = m->next) {
            const char *k = m->data;
            char *ck = NULL;
            if (own && carried_key(k))
                ck = g_strdup_printf("%s@%s", k, w);
            else if (strchr(k, '@') && carried_key(k)) /* carried before */
                ck = g_strdup(k);
            if (!ck)
                continue;
            /* the newest wins: a writer's own snapshot, or the nearest carry */
            const char *at = strchr(ck, '@');
            if (g_hash_table_contains(seen, ck) || (!own && g_hash_table_contains(writers, at + 1))) {
                g_free(ck);
                continue;
            }
            g_hash_table_add(seen, ck);
            char *v = g_strdup(json_object_get_string_member_with_default(sum, k, ""));
            g_ptr_array_add(keep, v);
            g_ptr_array_add(kv, ck);
            g_ptr_array_add(kv, v);
        }
        g_list_free(members);
        id = json_object_get_int_member_with_default(s, "parent-snapshot-id", -1);
    }
    /* the keys live as long as kv: hand them to keep */
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, seen);
    while (g_hash_table_iter_next(&it, &k, NULL)) {
        g_hash_table_iter_steal(&it);
        g_ptr_array_add(keep, k);
    }
    g_hash_table_destroy(seen);
    g_hash_table_destroy(writers);
}

/*
 * One attempt at the replace snapshot on the head t holds: every live entry of
 * the head goes into one new manifest, as EXISTING, or DELETED when it is a
 * rewritten input, beside the rewritten files as ADDED. Fails (false, *err,
 * *abandon) when an input is no longer live: someone else rewrote it.
 */
static bool build_replace(ice_table *t, const replace_set *rs, int64_t snapshot_id, int attempt, const char *uuid,
                          table_metadata *next, GPtrArray *written, maint_report *r, bool *abandon, char **err)
{
    int64_t parent = tm_current_snapshot_id(&t->cat.meta);
    int64_t seq = tm_last_sequence_number(&t->cat.meta) + 1;
    manifest_file *ms = NULL;
    int n_ms = 0;
    g_autoptr(GPtrArray) live = g_ptr_array_new_with_free_func((GDestroyNotify)manifest_entry_free);
    bool ok = snapshot_manifests(t, &t->cat.meta, parent, &ms, &n_ms, err) && maintainable(t, ms, n_ms, err) &&
              read_entries(t, ms, n_ms, true, live, err);
    r->manifests_before = n_ms;
    free_manifests(ms, n_ms);
    if (!ok)
        return false;

    GHashTable *gone = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; i < rs->removed->len; i++)
        g_hash_table_add(gone, g_ptr_array_index(rs->removed, i));
    g_autoptr(GPtrArray) entries = g_ptr_array_new(); /* manifest_entry*, borrowed */
    manifest_entry *adds = g_new0(manifest_entry, rs->added->len + 1);
    guint found = 0;
    int64_t rows_removed = 0, bytes_removed = 0, rows_added = 0, bytes_added = 0;
    GHashTable *parts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (guint i = 0; i < rs->added->len; i++) {
        data_file *f = g_ptr_array_index(rs->added, i);
        adds[i] = (manifest_entry){.status = ME_ADDED, .file = f};
        g_ptr_array_add(entries, &adds[i]);
        rows_added += f->metrics.num_rows;
        bytes_added += f->metrics.file_size;
        g_hash_table_add(parts, partition_key(&t->spec, f));
    }
    for (guint i = 0; i < live->len; i++) {
        manifest_entry *e = g_ptr_array_index(live, i);
        if (g_hash_table_contains(gone, e->file->location)) {
            e->status = ME_DELETED;
            found++;
            rows_removed += e->file->metrics.num_rows;
            bytes_removed += e->file->metrics.file_size;
        } else {
            e->status = ME_EXISTING;
        }
        g_ptr_array_add(entries, e);
    }
    g_hash_table_destroy(gone);
    if (found != rs->removed->len) {
        *err = g_strdup_printf("%u of the %u files rewritten are no longer in the table (another process "
                               "compacted them); the rewrite is abandoned",
                               rs->removed->len - found, rs->removed->len);
        *abandon = true;
        g_free(adds);
        g_hash_table_destroy(parts);
        return false;
    }
    g_autofree char *mname = g_strdup_printf("metadata/%s-m%d-r.avro", uuid, attempt);
    g_autofree char *mpath = fio_join(t->cat.location, mname);
    manifest_file merged = {0};
    ok = manifest_write_entries(t->cat.io, mpath, &t->schema, &t->spec, snapshot_id,
                                (manifest_entry *const *)entries->pdata, (int)entries->len, &merged, err);
    g_free(adds);
    if (!ok) {
        g_hash_table_destroy(parts);
        return false;
    }
    g_ptr_array_add(written, g_strdup(mpath));
    merged.sequence_number = seq;
    if (merged.min_sequence_number > seq)
        merged.min_sequence_number = seq;
    g_autofree char *lname = g_strdup_printf("metadata/snap-%" PRId64 "-%d-%s.avro", snapshot_id, attempt, uuid);
    g_autofree char *lpath = fio_join(t->cat.location, lname);
    ok = manifest_list_write(t->cat.io, lpath, snapshot_id, parent, seq, &merged, entries->len ? 1 : 0, err);
    manifest_file_clear(&merged);
    if (!ok) {
        g_hash_table_destroy(parts);
        return false;
    }
    g_ptr_array_add(written, g_strdup(lpath));

    GPtrArray *kv = g_ptr_array_new(), *keep = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(kv, "operation");
    g_ptr_array_add(kv, "replace");
    add_summary_i64(kv, keep, "added-data-files", rs->added->len);
    add_summary_i64(kv, keep, "deleted-data-files", rs->removed->len);
    add_summary_i64(kv, keep, "added-records", rows_added);
    add_summary_i64(kv, keep, "deleted-records", rows_removed);
    add_summary_i64(kv, keep, "added-files-size", bytes_added);
    add_summary_i64(kv, keep, "removed-files-size", bytes_removed);
    add_summary_i64(kv, keep, "changed-partition-count", g_hash_table_size(parts));
    g_hash_table_destroy(parts);
    int64_t tot_rows = parent_total(&t->cat.meta, parent, "total-records");
    int64_t tot_size = parent_total(&t->cat.meta, parent, "total-files-size");
    int64_t tot_files = parent_total(&t->cat.meta, parent, "total-data-files");
    if (tot_rows >= 0 && tot_size >= 0 && tot_files >= 0) {
        add_summary_i64(kv, keep, "total-records", tot_rows - rows_removed + rows_added);
        add_summary_i64(kv, keep, "total-files-size", tot_size - bytes_removed + bytes_added);
        add_summary_i64(kv, keep, "total-data-files", tot_files - (int64_t)rs->removed->len + rs->added->len);
        add_summary_i64(kv, keep, "total-delete-files", 0);
        add_summary_i64(kv, keep, "total-position-deletes", 0);
        add_summary_i64(kv, keep, "total-equality-deletes", 0);
    }
    carry_writer_entries(&t->cat.meta, parent, kv, keep);
    g_ptr_array_add(kv, "ecflow.maintenance");
    g_ptr_array_add(kv, rs->added->len ? "compact" : "merge-manifests");
    g_ptr_array_add(kv, NULL);
    tm_copy(next, &t->cat.meta);
    tm_add_snapshot(next, snapshot_id, parent, seq, table_snapshot_time(&t->cat.meta, g_get_real_time() / 1000), lpath,
                    t->schema.schema_id, (const char *const *)kv->pdata);
    g_ptr_array_free(kv, TRUE);
    g_ptr_array_free(keep, TRUE);
    r->files_before = live->len;
    r->files_after = (int64_t)live->len - rs->removed->len + rs->added->len;
    r->manifests_after = entries->len ? 1 : 0;
    return true;
}

static void remove_all(file_io *io, GPtrArray *locations)
{
    for (guint i = 0; i < locations->len; i++)
        io->remove(io, g_ptr_array_index(locations, i));
    g_ptr_array_set_size(locations, 0);
}

/* Commits the replace, rebuilt on the new head after every lost race. */
static bool commit_replace(ice_table *t, const replace_set *rs, maint_report *r, char **err)
{
    int64_t snapshot_id = table_new_snapshot_id();
    g_autofree char *uuid = g_uuid_string_random();
    g_autoptr(GPtrArray) written = g_ptr_array_new_with_free_func(g_free);
    for (int attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
        table_metadata next = {0};
        bool abandon = false;
        if (!build_replace(t, rs, snapshot_id, attempt, uuid, &next, written, r, &abandon, err)) {
            remove_all(t->cat.io, written);
            return false;
        }
        fio_result fr = catalog_commit(&t->cat, &next, err);
        tm_clear(&next);
        if (fr == FIO_OK) {
            r->replace_snapshot = snapshot_id;
            char *e2 = NULL;
            if (!table_reload(t, &e2)) /* committed either way; the next run reloads */
                g_free(e2);
            return true;
        }
        if (fr == FIO_UNKNOWN) {
            /* maybe committed: every file it wrote may be referenced now;
             * keep them (a clean later removes them if not) */
            t->outcome_unknown = true;
            return false;
        }
        remove_all(t->cat.io, written);
        if (fr != FIO_EXISTS)
            return false;
        g_clear_pointer(err, g_free);
        if (!table_reload(t, err))
            return false;
        if (tm_snapshot(&t->cat.meta, snapshot_id)) { /* ours after all */
            r->replace_snapshot = snapshot_id;
            return true;
        }
    }
    *err = g_strdup_printf("gave up after %d conflicting commits", MAX_ATTEMPTS);
    return false;
}

/* ------------------------------------------------------------ compact */

typedef struct {
    char *key;
    GPtrArray *files; /* manifest_entry*, borrowed from the live set */
} part_files;

static void part_files_free(gpointer p)
{
    part_files *pf = p;
    g_free(pf->key);
    g_ptr_array_free(pf->files, TRUE);
    g_free(pf);
}

static gint by_key(gconstpointer a, gconstpointer b)
{
    return strcmp((*(part_files *const *)a)->key, (*(part_files *const *)b)->key);
}

static gint by_sequence(gconstpointer a, gconstpointer b)
{
    const manifest_entry *x = *(manifest_entry *const *)a, *y = *(manifest_entry *const *)b;
    if (x->sequence_number != y->sequence_number)
        return x->sequence_number < y->sequence_number ? -1 : 1;
    return strcmp(x->file->location, y->file->location);
}

/* Small live files by partition, partitions in a stable order. */
static GPtrArray *small_files(const ice_table *t, GPtrArray *live, const maint_options *o)
{
    GHashTable *by = g_hash_table_new(g_str_hash, g_str_equal);
    GPtrArray *parts = g_ptr_array_new_with_free_func(part_files_free);
    for (guint i = 0; i < live->len; i++) {
        manifest_entry *e = g_ptr_array_index(live, i);
        if (e->file->metrics.file_size >= o->small_file_size || e->file->metrics.file_size > o->max_input_bytes)
            continue;
        char *key = partition_key(&t->spec, e->file);
        part_files *pf = g_hash_table_lookup(by, key);
        if (!pf) {
            pf = g_new0(part_files, 1);
            pf->key = key;
            pf->files = g_ptr_array_new();
            g_hash_table_insert(by, pf->key, pf);
            g_ptr_array_add(parts, pf);
        } else {
            g_free(key);
        }
        g_ptr_array_add(pf->files, e);
    }
    g_hash_table_destroy(by);
    g_ptr_array_sort(parts, by_key);
    for (guint i = 0; i < parts->len; i++)
        g_ptr_array_sort(((part_files *)g_ptr_array_index(parts, i))->files, by_sequence);
    return parts;
}

/* Where a rewrite of `first`'s partition goes: beside it. */
static char *output_location(const data_file *first)
{
    g_autofree char *dir = g_path_get_dirname(first->location);
    g_autofree char *uuid = g_uuid_string_random();
    return g_strdup_printf("%s/compact-%s.parquet", dir, uuid);
}

static int out_write(void *ctx, const void *p, size_t n)
{
    void **c = ctx;
    file_io *io = c[0];
    return io->write(c[1], p, n);
}

/*
 * Rewrites `group` (entries of one partition) into one file, reading one input
 * at a time; NULL with *err. An input the reader refuses before any of its
 * rows went out (a foreign encoding, another schema) stays in the table:
 * `done` lists the entries that are in the new file.
 */
static data_file *rewrite_group(ice_table *t, GPtrArray *group, const maint_options *o, GPtrArray *done,
                                maint_report *r, char **err)
{
    const data_file *first = ((manifest_entry *)g_ptr_array_index(group, 0))->file;
    g_autofree char *loc = output_location(first);
    file_io *io = t->cat.io;
    fio_out *out = io->create(io, loc, err);
    if (!out)
        return NULL;
    pq_column_spec *cols = g_new0(pq_column_spec, (gsize)t->schema.n_fields + 1);
    for (int i = 0; i < t->schema.n_fields; i++) {
        const ice_field *f = &t->schema.fields[i];
        cols[i] = (pq_column_spec){.name = f->name, .field_id = f->id, .type = f->type, .required = f->required};
    }
    void *ctx[2] = {io, out};
    pq_rewriter *rw =
        pq_rewriter_new(cols, t->schema.n_fields, &o->pq, (pq_sink){.write = out_write, .ctx = ctx}, NULL);
    char e[512];
    bool ok = true;
    for (guint i = 0; ok && i < group->len && !(o->cancel && g_atomic_int_get(o->cancel)); i++) {
        manifest_entry *me = g_ptr_array_index(group, i);
        byte_buf data = {0};
        ok = io->read_all(io, me->file->location, &data, err);
        if (!ok)
            break;
        pq_input in = {.name = me->file->location, .data = data.data, .size = data.len};
        pq_read_status st = pq_rewriter_add(rw, &in, e, sizeof e);
        bb_free(&data);
        if (st == PQ_READ_OK) {
            g_ptr_array_add(done, me);
        } else if (pq_rewriter_failed(rw)) {
            *err = g_strdup(e);
            ok = false;
        } else {
            r->files_skipped++;
            note(r, g_strdup_printf("compaction leaves %s as it is: %s", me->file->location, e));
        }
    }
    pq_file_metrics m = {0};
    if (ok && done->len < 2) {
        ok = false; /* nothing worth a rewrite left (refused inputs, or cancelled) */
        *err = g_strdup("fewer than two files of the group could be rewritten");
    }
    if (ok && pq_rewriter_finish(rw, &m, e, sizeof e) != PQ_READ_OK) {
        ok = false;
        *err = g_strdup(e);
    }
    pq_rewriter_free(rw);
    g_free(cols);
    if (!ok) {
        if (!*err)
            *err = io->error(out);
        io->abort(out);
        pq_file_metrics_clear(&m);
        g_ptr_array_set_size(done, 0);
        return NULL;
    }
    if (io->close(out, err) != 0) {
        pq_file_metrics_clear(&m);
        g_ptr_array_set_size(done, 0);
        return NULL;
    }
    data_file *df = g_new0(data_file, 1);
    df->location = g_steal_pointer(&loc);
    df->metrics = m;
    /* the partition is the inputs': copy the values and their bytes */
    size_t bytes = 0;
    for (int p = 0; p < t->spec.n_fields; p++)
        bytes += first->partition[p].is_null ? 0 : first->partition[p].n;
    df->part_bytes = g_malloc(bytes + 1);
    df->partition = g_new0(part_value, (gsize)t->spec.n_fields + 1);
    size_t at = 0;
    for (int p = 0; p < t->spec.n_fields; p++) {
        df->partition[p] = first->partition[p];
        if (first->partition[p].p && first->partition[p].n) {
            memcpy(df->part_bytes + at, first->partition[p].p, first->partition[p].n);
            df->partition[p].p = df->part_bytes + at;
            at += first->partition[p].n;
        }
    }
    return df;
}

/*
 * Size tiers, each 8 times the one below (64 KiB, 512 KiB, 4 MiB, ...): files
 * are rewritten with files of their own tier, so a rewritten file is not
 * rewritten again with every new small one (which would write a growing
 * partition over and over); each byte is rewritten about once per tier.
 */
#define N_TIERS 8
static int size_tier(int64_t size)
{
    int t = 0;
    for (int64_t s = size >> 16; s > 0 && t < N_TIERS - 1; s >>= 3)
        t++;
    return t;
}

/* Consecutive runs of a partition's small files, each about target size. */
static void plan_groups(GPtrArray *files, const maint_options *o, GPtrArray *groups)
{
    GPtrArray *cur = NULL;
    int64_t bytes = 0;
    for (guint i = 0; i < files->len; i++) {
        manifest_entry *e = g_ptr_array_index(files, i);
        if (!cur) {
            cur = g_ptr_array_new();
            bytes = 0;
        }
        g_ptr_array_add(cur, e);
        bytes += e->file->metrics.file_size;
        if (bytes >= o->target_file_size) {
            g_ptr_array_add(groups, cur);
            cur = NULL;
        }
    }
    if (cur && cur->len >= 2)
        g_ptr_array_add(groups, cur);
    else if (cur)
        g_ptr_array_free(cur, TRUE);
}

bool maint_compact(ice_table *t, const maint_options *o, maint_report *r, char **err)
{
    int64_t head = tm_current_snapshot_id(&t->cat.meta);
    manifest_file *ms = NULL;
    int n_ms = 0;
    g_autoptr(GPtrArray) live = g_ptr_array_new_with_free_func((GDestroyNotify)manifest_entry_free);
    bool ok = snapshot_manifests(t, &t->cat.meta, head, &ms, &n_ms, err) && maintainable(t, ms, n_ms, err) &&
              read_entries(t, ms, n_ms, true, live, err);
    free_manifests(ms, n_ms);
    if (!ok)
        return false;
    r->manifests_before = r->manifests_after = n_ms;
    r->files_before = r->files_after = live->len;
    for (guint i = 0; i < live->len; i++)
        r->bytes_before += ((manifest_entry *)g_ptr_array_index(live, i))->file->metrics.file_size;
    r->bytes_after = r->bytes_before;

    g_autoptr(GPtrArray) parts = small_files(t, live, o);
    g_autoptr(GPtrArray) groups = g_ptr_array_new_with_free_func((GDestroyNotify)g_ptr_array_unref);
    for (guint i = 0; i < parts->len; i++) {
        part_files *pf = g_ptr_array_index(parts, i);
        GPtrArray *tiers[N_TIERS];
        for (int k = 0; k < N_TIERS; k++)
            tiers[k] = g_ptr_array_new();
        for (guint k = 0; k < pf->files->len; k++) {
            manifest_entry *e = g_ptr_array_index(pf->files, k);
            g_ptr_array_add(tiers[size_tier(e->file->metrics.file_size)], e);
        }
        for (int k = 0; k < N_TIERS; k++) {
            if ((int)tiers[k]->len >= o->min_input_files)
                plan_groups(tiers[k], o, groups);
            g_ptr_array_free(tiers[k], TRUE);
        }
    }
    replace_set rs = {.removed = g_ptr_array_new(),
                      .added = g_ptr_array_new_with_free_func((GDestroyNotify)data_file_free)};
    int64_t budget = o->max_rewrite_bytes;
    GHashTable *touched = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (guint g = 0; g < groups->len && budget > 0 && !(o->cancel && g_atomic_int_get(o->cancel)); g++) {
        GPtrArray *group = g_ptr_array_index(groups, g);
        int64_t in_bytes = 0;
        for (guint i = 0; i < group->len; i++)
            in_bytes += ((manifest_entry *)g_ptr_array_index(group, i))->file->metrics.file_size;
        if (o->dry_run) {
            r->files_rewritten += (int)group->len;
            r->files_written++;
            g_hash_table_add(touched, partition_key(&t->spec, ((manifest_entry *)group->pdata[0])->file));
            budget -= in_bytes;
            continue;
        }
        char *why = NULL;
        g_autoptr(GPtrArray) done = g_ptr_array_new();
        data_file *out = rewrite_group(t, group, o, done, r, &why);
        if (!out) {
            /* one partition's unreadable file must not stop the others */
            if (!(o->cancel && g_atomic_int_get(o->cancel)))
                note(r,
                     g_strdup_printf("compaction skipped %u files of %s: %s", group->len,
                                     ((manifest_entry *)group->pdata[0])->file->location, why ? why : "unknown error"));
            g_free(why);
            continue;
        }
        in_bytes = 0;
        for (guint i = 0; i < done->len; i++) {
            const data_file *f = ((manifest_entry *)g_ptr_array_index(done, i))->file;
            g_ptr_array_add(rs.removed, f->location);
            in_bytes += f->metrics.file_size;
        }
        r->files_rewritten += (int)done->len;
        r->files_written++;
        r->bytes_after += out->metrics.file_size - in_bytes;
        g_hash_table_add(touched, partition_key(&t->spec, out));
        g_ptr_array_add(rs.added, out);
        budget -= in_bytes;
    }
    r->partitions_compacted = (int)g_hash_table_size(touched);
    g_hash_table_destroy(touched);
    r->files_after = r->files_before - r->files_rewritten + r->files_written;
    bool merge = n_ms > o->max_manifests || rs.added->len > 0;
    if (o->dry_run || !merge) {
        if (merge)
            r->manifests_after = r->files_after ? 1 : 0;
        g_ptr_array_free(rs.removed, TRUE);
        g_ptr_array_free(rs.added, TRUE);
        return true;
    }
    ok = commit_replace(t, &rs, r, err);
    if (!ok && !t->outcome_unknown)
        for (guint i = 0; i < rs.added->len; i++)
            t->cat.io->remove(t->cat.io, ((data_file *)g_ptr_array_index(rs.added, i))->location);
    if (!ok) { /* nothing changed */
        r->files_after = r->files_before;
        r->bytes_after = r->bytes_before;
        r->manifests_after = r->manifests_before;
    }
    g_ptr_array_free(rs.removed, TRUE); /* borrowed locations: free after the commit */
    g_ptr_array_free(rs.added, TRUE);
    return ok;
}

/* ------------------------------------------------------------ expire */

typedef struct {
    int64_t id;
    int64_t ts;
} snap_info;

static JsonArray *snapshots_of(const table_metadata *tm)
{
    return json_object_has_member(tm->o, "snapshots") ? json_object_get_array_member(tm->o, "snapshots") : NULL;
}

/* The ids of every snapshot in the metadata (int64_t). */
static GArray *snapshot_ids(const table_metadata *tm)
{
    GArray *ids = g_array_new(FALSE, FALSE, sizeof(int64_t));
    JsonArray *snaps = snapshots_of(tm);
    for (guint i = 0; snaps && i < json_array_get_length(snaps); i++) {
        int64_t id =
            json_object_get_int_member_with_default(json_array_get_object_element(snaps, i), "snapshot-id", -1);
        g_array_append_val(ids, id);
    }
    return ids;
}

/* Which snapshots stay: see maintenance.h. */
static GHashTable *snapshots_to_keep(const table_metadata *tm, const maint_options *o)
{
    GHashTable *keep = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    JsonArray *snaps = snapshots_of(tm);
    guint n = snaps ? json_array_get_length(snaps) : 0;
    int64_t young = o->now_ms - o->max_snapshot_age_ms;
    /* every ref's snapshot, and every snapshot younger than the age */
    for (guint i = 0; i < n; i++) {
        JsonObject *s = json_array_get_object_element(snaps, i);
        if (json_object_get_int_member_with_default(s, "timestamp-ms", 0) >= young)
            g_hash_table_add(keep, g_memdup2(&(gint64){json_object_get_int_member_with_default(s, "snapshot-id", -1)},
                                             sizeof(gint64)));
    }
    JsonObject *refs = json_object_has_member(tm->o, "refs") ? json_object_get_object_member(tm->o, "refs") : NULL;
    GList *names = refs ? json_object_get_members(refs) : NULL;
    for (GList *l = names; l; l = l->next) {
        JsonObject *ref = json_object_get_object_member(refs, l->data);
        gint64 id = ref ? json_object_get_int_member_with_default(ref, "snapshot-id", -1) : -1;
        g_hash_table_add(keep, g_memdup2(&id, sizeof id));
    }
    g_list_free(names);
    /* the lineage: the newest keep_last, and down to each writer's newest */
    GHashTable *writers = g_hash_table_new(g_str_hash, g_str_equal);
    GPtrArray *lineage = g_ptr_array_new();
    int pin = 0;
    gint64 id = tm_current_snapshot_id(tm);
    for (guint guard = 0; id >= 0 && guard <= n; guard++) {
        JsonObject *s = tm_snapshot(tm, id);
        if (!s)
            break;
        g_ptr_array_add(lineage, s);
        /* the writers whose state this snapshot holds: its own, and those a
         * maintenance snapshot carries ("<key>@<writer>") */
        JsonObject *sum = json_object_has_member(s, "summary") ? json_object_get_object_member(s, "summary") : NULL;
        GList *members = sum ? json_object_get_members(sum) : NULL;
        for (GList *m = members; m; m = m->next) {
            const char *k = m->data, *at = strchr(k, '@');
            const char *w = strcmp(k, "ecflow.writer-id") == 0
                                ? json_object_get_string_member_with_default(sum, k, NULL)
                                : (at && g_str_has_prefix(k, "ecflow.") ? at + 1 : NULL);
            if (w && !g_hash_table_contains(writers, w)) {
                g_hash_table_add(writers, (gpointer)w);
                pin = (int)lineage->len;
            }
        }
        g_list_free(members);
        id = json_object_get_int_member_with_default(s, "parent-snapshot-id", -1);
    }
    int upto = MAX(pin, o->keep_last);
    for (guint i = 0; i < lineage->len && (int)i < upto; i++) {
        gint64 sid = json_object_get_int_member_with_default(g_ptr_array_index(lineage, i), "snapshot-id", -1);
        g_hash_table_add(keep, g_memdup2(&sid, sizeof sid));
    }
    g_ptr_array_free(lineage, TRUE);
    g_hash_table_destroy(writers);
    return keep;
}

/* Every location the manifests of the given snapshots reference (lists,
 * manifests, and with data, live data files), normalized. */
static bool referenced(ice_table *t, const table_metadata *tm, GArray *snaps, bool data, GHashTable *lists,
                       GHashTable *manifests, GHashTable *files, char **err)
{
    for (guint i = 0; i < snaps->len; i++) {
        int64_t id = g_array_index(snaps, int64_t, i);
        const char *list = manifest_list_of(tm, id);
        if (!list)
            continue;
        g_hash_table_add(lists, normal_location(list));
        manifest_file *ms = NULL;
        int n = 0;
        if (!snapshot_manifests(t, tm, id, &ms, &n, err))
            return false;
        for (int m = 0; m < n; m++) {
            char *key = normal_location(ms[m].path);
            if (g_hash_table_contains(manifests, key)) {
                g_free(key);
                continue;
            }
            g_hash_table_add(manifests, key);
            if (!data)
                continue;
            if (ms[m].content != 0) {
                *err = g_strdup_printf("%s lists delete files: ecflow does not clean such tables", ms[m].path);
                free_manifests(ms, n);
                return false;
            }
            GPtrArray *es = g_ptr_array_new_with_free_func((GDestroyNotify)manifest_entry_free);
            if (!manifest_read(t->cat.io, &ms[m], &t->spec, es, err)) {
                g_ptr_array_free(es, TRUE);
                free_manifests(ms, n);
                return false;
            }
            for (guint k = 0; k < es->len; k++) {
                manifest_entry *e = g_ptr_array_index(es, k);
                if (e->status != ME_DELETED) /* value: the file's size */
                    g_hash_table_insert(files, normal_location(e->file->location),
                                        GSIZE_TO_POINTER((gsize)e->file->metrics.file_size));
            }
            g_ptr_array_free(es, TRUE);
        }
        free_manifests(ms, n);
    }
    return true;
}

static GHashTable *str_set(void) { return g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL); }

/* After the expiry committed: what only the expired snapshots referenced. */
static void delete_expired_files(ice_table *t, const table_metadata *before, GArray *expired, maint_report *r)
{
    char *err = NULL;
    GArray *kept = snapshot_ids(&t->cat.meta);
    GHashTable *k_lists = str_set(), *k_manifests = str_set(), *k_files = str_set();
    GHashTable *x_lists = str_set(), *x_manifests = str_set(), *x_files = str_set();
    /* Unsure what is kept: delete nothing (a clean later finds the orphans). */
    bool ok = referenced(t, &t->cat.meta, kept, true, k_lists, k_manifests, k_files, &err) &&
              referenced(t, before, expired, true, x_lists, x_manifests, x_files, &err);
    if (!ok) {
        note(r, g_strdup_printf("expired snapshots' files left for a later clean: %s", err));
        g_free(err);
    }
    GHashTableIter it;
    gpointer loc, size;
    g_hash_table_iter_init(&it, ok ? x_files : k_files);
    while (ok && g_hash_table_iter_next(&it, &loc, &size))
        if (!g_hash_table_contains(k_files, loc) && t->cat.io->remove(t->cat.io, loc)) {
            r->data_files_deleted++;
            r->data_bytes_deleted += (int64_t)GPOINTER_TO_SIZE(size);
        }
    g_hash_table_iter_init(&it, x_manifests);
    while (ok && g_hash_table_iter_next(&it, &loc, NULL))
        if (!g_hash_table_contains(k_manifests, loc) && t->cat.io->remove(t->cat.io, loc))
            r->manifests_deleted++;
    g_hash_table_iter_init(&it, x_lists);
    while (ok && g_hash_table_iter_next(&it, &loc, NULL))
        if (!g_hash_table_contains(k_lists, loc) && t->cat.io->remove(t->cat.io, loc))
            r->lists_deleted++;
    g_hash_table_destroy(k_lists);
    g_hash_table_destroy(k_manifests);
    g_hash_table_destroy(k_files);
    g_hash_table_destroy(x_lists);
    g_hash_table_destroy(x_manifests);
    g_hash_table_destroy(x_files);
    g_array_free(kept, TRUE);
}

bool maint_expire(ice_table *t, const maint_options *o, maint_report *r, char **err)
{
    for (int attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
        JsonArray *snaps = snapshots_of(&t->cat.meta);
        guint n = snaps ? json_array_get_length(snaps) : 0;
        r->snapshots_before = r->snapshots_after = (int)n;
        GHashTable *keep = snapshots_to_keep(&t->cat.meta, o);
        GArray *expired = g_array_new(FALSE, FALSE, sizeof(int64_t));
        for (guint i = 0; i < n; i++) {
            gint64 id =
                json_object_get_int_member_with_default(json_array_get_object_element(snaps, i), "snapshot-id", -1);
            if (!g_hash_table_contains(keep, &id))
                g_array_append_val(expired, id);
        }
        g_hash_table_destroy(keep);
        r->snapshots_after = (int)(n - expired->len);
        if (expired->len == 0 || o->dry_run) {
            g_array_free(expired, TRUE);
            return true;
        }
        table_metadata before, next;
        tm_copy(&before, &t->cat.meta);
        tm_copy(&next, &t->cat.meta);
        tm_remove_snapshots(&next, (const int64_t *)expired->data, (int)expired->len, o->now_ms);
        fio_result fr = catalog_commit(&t->cat, &next, err);
        tm_clear(&next);
        if (fr == FIO_OK) {
            g_clear_pointer(err, g_free);
            delete_expired_files(t, &before, expired, r);
        }
        tm_clear(&before);
        g_array_free(expired, TRUE);
        if (fr == FIO_OK)
            return true;
        if (fr == FIO_UNKNOWN) {
            t->outcome_unknown = true;
            return false;
        }
        if (fr != FIO_EXISTS)
            return false;
        g_clear_pointer(err, g_free);
        if (!table_reload(t, err))
            return false;
    }
    *err = g_strdup_printf("gave up after %d conflicting commits", MAX_ATTEMPTS);
    return false;
}

/* ------------------------------------------------------------ clean */

typedef struct {
    GHashTable *refs;
    const maint_options *o;
    maint_report *r;
    GPtrArray *doomed;     /* locations */
    bool catalog_metadata; /* REST: the catalog owns the metadata JSON files */
} clean_ctx;

static void clean_visit(void *ctx, const char *location, int64_t size, int64_t mtime_ms)
{
    clean_ctx *c = ctx;
    g_autofree char *key = normal_location(location);
    const char *base = strrchr(key, '/');
    base = base ? base + 1 : key;
    if (g_hash_table_contains(c->refs, key) || strcmp(base, "version-hint.text") == 0 ||
        (c->catalog_metadata && g_str_has_suffix(base, ".metadata.json")))
        return;
    c->r->orphans_found++;
    c->r->orphan_bytes += size;
    if (mtime_ms > c->o->now_ms - c->o->orphan_age_ms) {
        c->r->orphans_young++; /* maybe a writer's file not committed yet */
        return;
    }
    g_ptr_array_add(c->doomed, g_strdup(location));
}

/* The dedupe files a snapshot names, as its writer's own entry or as one a
 * maintenance snapshot carries for a writer ("<key>@<writer>"). */
static void keep_dedupe_files(const ice_table *t, JsonObject *snap, GHashTable *refs)
{
    JsonObject *sum =
        snap && json_object_has_member(snap, "summary") ? json_object_get_object_member(snap, "summary") : NULL;
    GList *members = sum ? json_object_get_members(sum) : NULL;
    for (GList *m = members; m; m = m->next) {
        const char *k = m->data;
        if (strcmp(k, DEDUPE_SUMMARY_KEY) != 0 &&
            !(g_str_has_prefix(k, DEDUPE_SUMMARY_KEY) && k[strlen(DEDUPE_SUMMARY_KEY)] == '@'))
            continue;
        char **names = dedupe_files_of_summary(json_object_get_string_member_with_default(sum, k, NULL));
        for (char **n = names; n && *n; n++) {
            g_autofree char *rel = g_strconcat("metadata/", *n, NULL);
            g_autofree char *loc = fio_join(t->cat.location, rel);
            g_hash_table_add(refs, normal_location(loc));
        }
        g_strfreev(names);
    }
    g_list_free(members);
}

bool maint_clean(ice_table *t, const maint_options *o, maint_report *r, char **err)
{
    GHashTable *refs = str_set(), *lists = str_set(), *manifests = str_set();
    GArray *all = snapshot_ids(&t->cat.meta);
    JsonArray *snaps = snapshots_of(&t->cat.meta);
    bool ok = referenced(t, &t->cat.meta, all, true, lists, manifests, refs, err);
    g_array_free(all, TRUE);
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, lists);
    while (g_hash_table_iter_next(&it, &k, NULL))
        g_hash_table_add(refs, g_strdup(k));
    g_hash_table_iter_init(&it, manifests);
    while (g_hash_table_iter_next(&it, &k, NULL))
        g_hash_table_add(refs, g_strdup(k));
    g_hash_table_destroy(lists);
    g_hash_table_destroy(manifests);
    /* sink-iceberg's dedupe window: files a snapshot's summary names (dedupe_store.h) */
    for (guint i = 0; snaps && i < json_array_get_length(snaps); i++) {
        int64_t id =
            json_object_get_int_member_with_default(json_array_get_object_element(snaps, i), "snapshot-id", -1);
        keep_dedupe_files(t, tm_snapshot(&t->cat.meta, id), refs);
    }
    if (t->cat.metadata_file)
        g_hash_table_add(refs, normal_location(t->cat.metadata_file));
    JsonArray *log = json_object_has_member(t->cat.meta.o, "metadata-log")
                         ? json_object_get_array_member(t->cat.meta.o, "metadata-log")
                         : NULL;
    for (guint i = 0; log && i < json_array_get_length(log); i++) {
        const char *f =
            json_object_get_string_member_with_default(json_array_get_object_element(log, i), "metadata-file", NULL);
        if (f)
            g_hash_table_add(refs, normal_location(f));
    }
    if (!ok) { /* unsure what is referenced: delete nothing */
        g_hash_table_destroy(refs);
        return false;
    }
    clean_ctx c = {.refs = refs,
                   .o = o,
                   .r = r,
                   .doomed = g_ptr_array_new_with_free_func(g_free),
                   .catalog_metadata = t->cat.rest != NULL};
    ok = t->cat.io->walk(t->cat.io, t->cat.location, clean_visit, &c, err);
    for (guint i = 0; ok && !o->dry_run && i < c.doomed->len && !(o->cancel && g_atomic_int_get(o->cancel)); i++)
        if (t->cat.io->remove(t->cat.io, g_ptr_array_index(c.doomed, i)))
            r->orphans_removed++;
    g_ptr_array_free(c.doomed, TRUE);
    g_hash_table_destroy(refs);
    return ok;
}

/* ------------------------------------------------------------ stats */

static const int64_t size_edges[] = {1 << 20, 8 << 20, 32 << 20, 128 << 20};
#define N_BUCKETS 5

bool maint_stats(ice_table *t, const maint_options *o, GString *out, char **err)
{
    int64_t head = tm_current_snapshot_id(&t->cat.meta);
    manifest_file *ms = NULL;
    int n_ms = 0;
    g_autoptr(GPtrArray) live = g_ptr_array_new_with_free_func((GDestroyNotify)manifest_entry_free);
    bool ok = snapshot_manifests(t, &t->cat.meta, head, &ms, &n_ms, err) && read_entries(t, ms, n_ms, true, live, err);
    free_manifests(ms, n_ms);
    if (!ok)
        return false;
    g_autoptr(GPtrArray) parts =
        small_files(t, live, &(maint_options){.small_file_size = INT64_MAX, .max_input_bytes = INT64_MAX});
    g_string_append_printf(out, "%-40s %7s %12s %12s %6s %6s %6s %6s %6s %9s\n", "partition", "files", "rows", "bytes",
                           "<1M", "1-8M", "8-32M", "32-128M", ">128M", "small");
    int64_t tf = 0, tr = 0, tb = 0, ts = 0;
    for (guint i = 0; i < parts->len; i++) {
        part_files *pf = g_ptr_array_index(parts, i);
        int64_t rows = 0, bytes = 0, small = 0;
        int hist[N_BUCKETS] = {0};
        for (guint k = 0; k < pf->files->len; k++) {
            const data_file *f = ((manifest_entry *)g_ptr_array_index(pf->files, k))->file;
            rows += f->metrics.num_rows;
            bytes += f->metrics.file_size;
            small += f->metrics.file_size < o->small_file_size;
            int b = 0;
            while (b < N_BUCKETS - 1 && f->metrics.file_size >= size_edges[b])
                b++;
            hist[b]++;
        }
        g_string_append_printf(out, "%-40s %7u %12" PRId64 " %12" PRId64 " %6d %6d %6d %6d %6d %9" PRId64 "\n",
                               *pf->key ? pf->key : "(unpartitioned)", pf->files->len, rows, bytes, hist[0], hist[1],
                               hist[2], hist[3], hist[4], small);
        tf += pf->files->len;
        tr += rows;
        tb += bytes;
        ts += small;
    }
    JsonArray *snaps = snapshots_of(&t->cat.meta);
    JsonArray *log = json_object_has_member(t->cat.meta.o, "metadata-log")
                         ? json_object_get_array_member(t->cat.meta.o, "metadata-log")
                         : NULL;
    g_string_append_printf(out, "%-40s %7" PRId64 " %12" PRId64 " %12" PRId64 " %34s %9" PRId64 "\n", "total", tf, tr,
                           tb, "", ts);
    g_string_append_printf(out,
                           "partitions: %u  snapshots: %u  manifests in the current snapshot: %d  metadata versions "
                           "logged: %u  current snapshot: %" PRId64 "\n",
                           parts->len, snaps ? json_array_get_length(snaps) : 0, n_ms,
                           log ? json_array_get_length(log) : 0, head);
    return true;
}

/* ------------------------------------------------------------ reports */

void maint_report_compact(const maint_report *r, GString *out)
{
    g_string_append_printf(out,
                           "compact: %d files in %d partitions rewritten into %d; data files %" PRId64 " -> %" PRId64
                           ", bytes %" PRId64 " -> %" PRId64 ", manifests %d -> %d",
                           r->files_rewritten, r->partitions_compacted, r->files_written, r->files_before,
                           r->files_after, r->bytes_before, r->bytes_after, r->manifests_before, r->manifests_after);
    if (r->replace_snapshot >= 0)
        g_string_append_printf(out, " (snapshot %" PRId64 ")", r->replace_snapshot);
    if (r->files_skipped)
        g_string_append_printf(out, "; %d files skipped", r->files_skipped);
}

void maint_report_expire(const maint_report *r, GString *out)
{
    g_string_append_printf(
        out, "expire: snapshots %d -> %d; deleted %d manifest lists, %d manifests, %d data files (%" PRId64 " bytes)",
        r->snapshots_before, r->snapshots_after, r->lists_deleted, r->manifests_deleted, r->data_files_deleted,
        r->data_bytes_deleted);
}

void maint_report_clean(const maint_report *r, GString *out)
{
    g_string_append_printf(out,
                           "clean: %d unreferenced files (%" PRId64 " bytes): %d removed, %d younger than the orphan "
                           "age kept",
                           r->orphans_found, r->orphan_bytes, r->orphans_removed, r->orphans_young);
}
