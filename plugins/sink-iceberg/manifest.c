/* Manifests and manifest lists: see manifest.h. */
#include "manifest.h"

#include "avro_container.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

void data_file_free(data_file *f)
{
    if (!f)
        return;
    g_free(f->location);
    g_free(f->partition);
    g_free(f->part_bytes);
    pq_file_metrics_clear(&f->metrics);
    g_free(f);
}

void manifest_file_clear(manifest_file *m)
{
    g_free(m->path);
    for (int i = 0; i < m->n_partitions; i++) {
        bb_free(&m->partitions[i].lower);
        bb_free(&m->partitions[i].upper);
    }
    g_free(m->partitions);
    bb_free(&m->key_metadata);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------ schemas */

static void avro_type_of(GString *s, const part_field *f)
{
    switch (f->result.id) {
    case ICE_BOOLEAN: g_string_append(s, "\"boolean\""); break;
    case ICE_INT: g_string_append(s, "\"int\""); break;
    case ICE_LONG: g_string_append(s, "\"long\""); break;
    case ICE_FLOAT: g_string_append(s, "\"float\""); break;
    case ICE_DOUBLE: g_string_append(s, "\"double\""); break;
    case ICE_DATE: g_string_append(s, "{\"type\":\"int\",\"logicalType\":\"date\"}"); break;
    case ICE_TIMESTAMP:
    case ICE_TIMESTAMPTZ:
        g_string_append_printf(s, "{\"type\":\"long\",\"logicalType\":\"timestamp-micros\",\"adjust-to-utc\":%s}",
                               f->result.id == ICE_TIMESTAMPTZ ? "true" : "false");
        break;
    case ICE_STRING: g_string_append(s, "\"string\""); break;
    case ICE_BINARY: g_string_append(s, "\"bytes\""); break;
    case ICE_DECIMAL:
        g_string_append_printf(s,
                               "{\"type\":\"fixed\",\"name\":\"fixed_%d\",\"size\":%d,\"logicalType\":\"decimal\","
                               "\"precision\":%d,\"scale\":%d}",
                               f->field_id, ice_decimal_bytes(f->result.precision), f->result.precision,
                               f->result.scale);
        break;
    }
}

static void map_field(GString *s, const char *name, int id, int key_id, int value_id, const char *value_type)
{
    g_string_append_printf(s,
                           ",{\"name\":\"%s\",\"type\":[\"null\",{\"type\":\"array\",\"items\":{\"type\":\"record\","
                           "\"name\":\"k%d_v%d\",\"fields\":[{\"name\":\"key\",\"type\":\"int\",\"field-id\":%d},"
                           "{\"name\":\"value\",\"type\":\"%s\",\"field-id\":%d}]},\"logicalType\":\"map\"}],"
                           "\"default\":null,\"field-id\":%d}",
                           name, key_id, value_id, key_id, value_type, value_id, id);
}

static char *manifest_entry_schema(const part_spec *spec)
{
    GString *s = g_string_new(NULL);
    g_string_append(s,
                    "{\"type\":\"record\",\"name\":\"manifest_entry\",\"fields\":["
                    "{\"name\":\"status\",\"type\":\"int\",\"field-id\":0},"
                    "{\"name\":\"snapshot_id\",\"type\":[\"null\",\"long\"],\"default\":null,\"field-id\":1},"
                    "{\"name\":\"sequence_number\",\"type\":[\"null\",\"long\"],\"default\":null,\"field-id\":3},"
                    "{\"name\":\"file_sequence_number\",\"type\":[\"null\",\"long\"],\"default\":null,\"field-id\":4},"
                    "{\"name\":\"data_file\",\"type\":{\"type\":\"record\",\"name\":\"r2\",\"fields\":["
                    "{\"name\":\"content\",\"type\":\"int\",\"field-id\":134},"
                    "{\"name\":\"file_path\",\"type\":\"string\",\"field-id\":100},"
                    "{\"name\":\"file_format\",\"type\":\"string\",\"field-id\":101},"
                    "{\"name\":\"partition\",\"type\":{\"type\":\"record\",\"name\":\"r102\",\"fields\":[");
    for (int i = 0; i < spec->n_fields; i++) {
        const part_field *f = &spec->fields[i];
        g_autofree char *name = g_strescape(f->name, NULL);
        g_string_append_printf(s, "%s{\"name\":\"%s\",\"type\":[\"null\",", i ? "," : "", name);
        avro_type_of(s, f);
        g_string_append_printf(s, "],\"default\":null,\"field-id\":%d}", f->field_id);
    }
    g_string_append(s, "]},\"field-id\":102},"
                       "{\"name\":\"record_count\",\"type\":\"long\",\"field-id\":103},"
                       "{\"name\":\"file_size_in_bytes\",\"type\":\"long\",\"field-id\":104}");
    map_field(s, "column_sizes", 108, 117, 118, "long");
    map_field(s, "value_counts", 109, 119, 120, "long");
    map_field(s, "null_value_counts", 110, 121, 122, "long");
    map_field(s, "nan_value_counts", 137, 138, 139, "long");
    map_field(s, "lower_bounds", 125, 126, 127, "bytes");
    map_field(s, "upper_bounds", 128, 129, 130, "bytes");
    g_string_append(s, ",{\"name\":\"key_metadata\",\"type\":[\"null\",\"bytes\"],\"default\":null,\"field-id\":131},"
                       "{\"name\":\"split_offsets\",\"type\":[\"null\",{\"type\":\"array\",\"items\":\"long\","
                       "\"element-id\":133}],\"default\":null,\"field-id\":132},"
                       "{\"name\":\"equality_ids\",\"type\":[\"null\",{\"type\":\"array\",\"items\":\"int\","
                       "\"element-id\":136}],\"default\":null,\"field-id\":135},"
                       "{\"name\":\"sort_order_id\",\"type\":[\"null\",\"int\"],\"default\":null,\"field-id\":140}"
                       "]},\"field-id\":2}]}");
    return g_string_free(s, FALSE);
}

static const char MANIFEST_LIST_SCHEMA[] =
    "{\"type\":\"record\",\"name\":\"manifest_file\",\"fields\":["
    "{\"name\":\"manifest_path\",\"type\":\"string\",\"field-id\":500},"
    "{\"name\":\"manifest_length\",\"type\":\"long\",\"field-id\":501},"
    "{\"name\":\"partition_spec_id\",\"type\":\"int\",\"field-id\":502},"
    "{\"name\":\"content\",\"type\":\"int\",\"field-id\":517},"
    "{\"name\":\"sequence_number\",\"type\":\"long\",\"field-id\":515},"
    "{\"name\":\"min_sequence_number\",\"type\":\"long\",\"field-id\":516},"
    "{\"name\":\"added_snapshot_id\",\"type\":\"long\",\"field-id\":503},"
    "{\"name\":\"added_files_count\",\"type\":\"int\",\"field-id\":504},"
    "{\"name\":\"existing_files_count\",\"type\":\"int\",\"field-id\":505},"
    "{\"name\":\"deleted_files_count\",\"type\":\"int\",\"field-id\":506},"
    "{\"name\":\"added_rows_count\",\"type\":\"long\",\"field-id\":512},"
    "{\"name\":\"existing_rows_count\",\"type\":\"long\",\"field-id\":513},"
    "{\"name\":\"deleted_rows_count\",\"type\":\"long\",\"field-id\":514},"
    "{\"name\":\"partitions\",\"type\":[\"null\",{\"type\":\"array\",\"items\":{\"type\":\"record\","
    "\"name\":\"r508\",\"fields\":["
    "{\"name\":\"contains_null\",\"type\":\"boolean\",\"field-id\":509},"
    "{\"name\":\"contains_nan\",\"type\":[\"null\",\"boolean\"],\"default\":null,\"field-id\":518},"
    "{\"name\":\"lower_bound\",\"type\":[\"null\",\"bytes\"],\"default\":null,\"field-id\":510},"
    "{\"name\":\"upper_bound\",\"type\":[\"null\",\"bytes\"],\"default\":null,\"field-id\":511}"
    "]},\"element-id\":508}],\"default\":null,\"field-id\":507},"
    "{\"name\":\"key_metadata\",\"type\":[\"null\",\"bytes\"],\"default\":null,\"field-id\":519}"
    "]}";

/* ------------------------------------------------------------ manifest */

static void encode_partition_value(byte_buf *b, const part_field *f, const part_value *v)
{
    if (v->is_null) {
        avro_union(b, 0);
        return;
    }
    avro_union(b, 1);
    switch (f->result.id) {
    case ICE_BOOLEAN: avro_bool(b, v->i != 0); break;
    case ICE_INT:
    case ICE_DATE: avro_int(b, (int32_t)v->i); break;
    case ICE_LONG:
    case ICE_TIMESTAMP:
    case ICE_TIMESTAMPTZ: avro_long(b, v->i); break;
    case ICE_FLOAT: {
        float x = (float)v->d;
        bb_append(b, &x, 4);
        break;
    }
    case ICE_DOUBLE: bb_append(b, &v->d, 8); break;
    case ICE_STRING:
    case ICE_BINARY: avro_bytes(b, v->p, v->n); break;
    case ICE_DECIMAL: {
        int n = ice_decimal_bytes(f->result.precision);
        for (int i = n - 1; i >= 0; i--)
            bb_byte(b, (uint8_t)(v->dec >> (8 * i)));
        break;
    }
    }
}

typedef enum { M_SIZES, M_VALUES, M_NULLS, M_NANS, M_LOWER, M_UPPER } metric_kind;

static void encode_metric_map(byte_buf *b, const pq_file_metrics *m, metric_kind k)
{
    int n = 0;
    for (int i = 0; i < m->n_columns; i++) {
        const pq_column_metrics *c = &m->cols[i];
        if ((k == M_NANS && c->nan_count < 0) || ((k == M_LOWER || k == M_UPPER) && !c->has_bounds))
            continue;
        n++;
    }
    if (n == 0) {
        avro_union(b, 0);
        return;
    }
    avro_union(b, 1);
    avro_long(b, n);
    for (int i = 0; i < m->n_columns; i++) {
        const pq_column_metrics *c = &m->cols[i];
        switch (k) {
        case M_SIZES:
            avro_int(b, c->field_id);
            avro_long(b, c->compressed_size);
            break;
        case M_VALUES:
            avro_int(b, c->field_id);
            avro_long(b, c->value_count);
            break;
        case M_NULLS:
            avro_int(b, c->field_id);
            avro_long(b, c->null_count);
            break;
        case M_NANS:
            if (c->nan_count < 0)
                continue;
            avro_int(b, c->field_id);
            avro_long(b, c->nan_count);
            break;
        case M_LOWER:
        case M_UPPER:
            if (!c->has_bounds)
                continue;
            avro_int(b, c->field_id);
            if (k == M_LOWER)
                avro_bytes(b, c->lower.data, c->lower.len);
            else
                avro_bytes(b, c->upper.data, c->upper.len);
            break;
        }
    }
    avro_long(b, 0);
}

static void summarize(const part_spec *spec, data_file *const *files, int n_files, manifest_file *out)
{
    out->n_partitions = spec->n_fields;
    out->partitions = g_new0(field_summary, (gsize)spec->n_fields + 1);
    for (int p = 0; p < spec->n_fields; p++) {
        const part_field *f = &spec->fields[p];
        field_summary *s = &out->partitions[p];
        const part_value *lo = NULL, *hi = NULL;
        bool nan = false;
        for (int i = 0; i < n_files; i++) {
            const part_value *v = &files[i]->partition[p];
            if (v->is_null) {
                s->contains_null = true;
                continue;
            }
            if ((f->result.id == ICE_FLOAT || f->result.id == ICE_DOUBLE) && v->d != v->d) {
                nan = true;
                continue;
            }
            if (!lo || part_value_cmp(f, v, lo) < 0)
                lo = v;
            if (!hi || part_value_cmp(f, v, hi) > 0)
                hi = v;
        }
        s->contains_nan = (f->result.id == ICE_FLOAT || f->result.id == ICE_DOUBLE) ? nan : -1;
        if (lo) {
            s->has_lower = s->has_upper = true;
            part_value_serialize(f, lo, &s->lower);
            part_value_serialize(f, hi, &s->upper);
        }
    }
}

static void encode_entry_file(byte_buf *b, const part_spec *spec, const data_file *f)
{
    avro_int(b, 0); /* content: DATA */
    avro_string(b, f->location);
    avro_string(b, "PARQUET");
    for (int p = 0; p < spec->n_fields; p++)
        encode_partition_value(b, &spec->fields[p], &f->partition[p]);
    avro_long(b, f->metrics.num_rows);
    avro_long(b, f->metrics.file_size);
    encode_metric_map(b, &f->metrics, M_SIZES);
    encode_metric_map(b, &f->metrics, M_VALUES);
    encode_metric_map(b, &f->metrics, M_NULLS);
    encode_metric_map(b, &f->metrics, M_NANS);
    encode_metric_map(b, &f->metrics, M_LOWER);
    encode_metric_map(b, &f->metrics, M_UPPER);
    avro_union(b, 0); /* key_metadata */
    if (f->metrics.n_row_groups > 0) {
        avro_union(b, 1);
        avro_long(b, f->metrics.n_row_groups);
        for (int g = 0; g < f->metrics.n_row_groups; g++)
            avro_long(b, f->metrics.row_group_offsets[g]);
        avro_long(b, 0);
    } else
        avro_union(b, 0);
    avro_union(b, 0); /* equality_ids */
    avro_union(b, 1); /* sort_order_id: 0, unsorted */
    avro_int(b, 0);
}

static void opt_long(byte_buf *b, bool has, int64_t v)
{
    avro_union(b, has ? 1 : 0);
    if (has)
        avro_long(b, v);
}

bool manifest_write_entries(file_io *io, const char *location, const ice_schema *schema, const part_spec *spec,
                            int64_t snapshot_id, manifest_entry *const *entries, int n, manifest_file *out, char **err)
{
    g_autofree char *avro_schema = manifest_entry_schema(spec);
    g_autofree char *schema_json = ice_schema_to_json_string(schema);
    g_autofree char *spec_json = part_spec_fields_json(spec);
    g_autofree char *schema_id = g_strdup_printf("%d", schema->schema_id);
    g_autofree char *spec_id = g_strdup_printf("%d", spec->spec_id);
    const char *meta[] = {
        "schema", schema_json,      "schema-id", schema_id, "partition-spec", spec_json, "partition-spec-id",
        spec_id,  "format-version", "2",         "content", "data",           NULL};
    avro_writer w;
    avro_writer_begin(&w, avro_schema, meta);
    int32_t counts[3] = {0};
    int64_t rows[3] = {0};
    int64_t min_seq = INT64_MAX;
    data_file **files = g_new(data_file *, (gsize)n + 1);
    for (int i = 0; i < n; i++) {
        const manifest_entry *e = entries[i];
        byte_buf *b = &w.block;
        /* ADDED by this snapshot: snapshot id and sequence numbers are
         * inherited from the manifest list, so the manifest survives commit
         * retries; the others keep what they were given when added */
        bool added = e->status == ME_ADDED;
        avro_int(b, e->status);
        opt_long(b, true, added ? snapshot_id : e->snapshot_id);
        opt_long(b, !added, e->sequence_number);
        opt_long(b, !added, e->file_sequence_number);
        encode_entry_file(b, spec, e->file);
        avro_writer_record_done(&w);
        counts[e->status] += 1;
        rows[e->status] += e->file->metrics.num_rows;
        if (!added && e->status != ME_DELETED && e->sequence_number < min_seq)
            min_seq = e->sequence_number;
        files[i] = e->file;
    }
    avro_writer_finish(&w);
    bool ok = io->put(io, location, w.out.data, w.out.len, err);
    memset(out, 0, sizeof *out);
    if (ok) {
        out->path = g_strdup(location);
        out->length = (int64_t)w.out.len;
        out->spec_id = spec->spec_id;
        out->content = 0;
        out->added_snapshot_id = snapshot_id;
        out->added_files = counts[ME_ADDED];
        out->existing_files = counts[ME_EXISTING];
        out->deleted_files = counts[ME_DELETED];
        out->added_rows = rows[ME_ADDED];
        out->existing_rows = rows[ME_EXISTING];
        out->deleted_rows = rows[ME_DELETED];
        out->min_sequence_number = min_seq; /* INT64_MAX: only added entries (the caller's sequence number) */
        summarize(spec, files, n, out);
    }
    g_free(files);
    avro_writer_free(&w);
    return ok;
}

bool manifest_write(file_io *io, const char *location, const ice_schema *schema, const part_spec *spec,
                    int64_t snapshot_id, data_file *const *files, int n_files, manifest_file *out, char **err)
{
    manifest_entry *es = g_new0(manifest_entry, (gsize)n_files + 1);
    manifest_entry **ptrs = g_new(manifest_entry *, (gsize)n_files + 1);
    for (int i = 0; i < n_files; i++) {
        es[i] = (manifest_entry){.status = ME_ADDED, .file = files[i]};
        ptrs[i] = &es[i];
    }
    bool ok = manifest_write_entries(io, location, schema, spec, snapshot_id, ptrs, n_files, out, err);
    if (ok)
        out->min_sequence_number = 0; /* set with the list */
    g_free(ptrs);
    g_free(es);
    return ok;
}

/* ------------------------------------------------------------ manifest list */

static void opt_bytes(byte_buf *b, bool has, const byte_buf *v)
{
    if (!has) {
        avro_union(b, 0);
        return;
    }
    avro_union(b, 1);
    avro_bytes(b, v->data, v->len);
}

bool manifest_list_write(file_io *io, const char *location, int64_t snapshot_id, int64_t parent_id,
                         int64_t sequence_number, const manifest_file *entries, int n, char **err)
{
    g_autofree char *sid = g_strdup_printf("%" G_GINT64_FORMAT, snapshot_id);
    g_autofree char *pid = g_strdup_printf("%" G_GINT64_FORMAT, parent_id);
    g_autofree char *seq = g_strdup_printf("%" G_GINT64_FORMAT, sequence_number);
    const char *meta[] = {"snapshot-id",
                          sid,
                          "parent-snapshot-id",
                          parent_id >= 0 ? pid : "null",
                          "sequence-number",
                          seq,
                          "format-version",
                          "2",
                          NULL};
    avro_writer w;
    avro_writer_begin(&w, MANIFEST_LIST_SCHEMA, meta);
    for (int i = 0; i < n; i++) {
        const manifest_file *m = &entries[i];
        byte_buf *b = &w.block;
        avro_string(b, m->path);
        avro_long(b, m->length);
        avro_int(b, m->spec_id);
        avro_int(b, m->content);
        avro_long(b, m->sequence_number);
        avro_long(b, m->min_sequence_number);
        avro_long(b, m->added_snapshot_id);
        avro_int(b, m->added_files);
        avro_int(b, m->existing_files);
        avro_int(b, m->deleted_files);
        avro_long(b, m->added_rows);
        avro_long(b, m->existing_rows);
        avro_long(b, m->deleted_rows);
        if (m->n_partitions < 0)
            avro_union(b, 0);
        else {
            avro_union(b, 1);
            if (m->n_partitions > 0) {
                avro_long(b, m->n_partitions);
                for (int p = 0; p < m->n_partitions; p++) {
                    const field_summary *s = &m->partitions[p];
                    avro_bool(b, s->contains_null);
                    if (s->contains_nan < 0)
                        avro_union(b, 0);
                    else {
                        avro_union(b, 1);
                        avro_bool(b, s->contains_nan != 0);
                    }
                    opt_bytes(b, s->has_lower, &s->lower);
                    opt_bytes(b, s->has_upper, &s->upper);
                }
            }
            avro_long(b, 0);
        }
        opt_bytes(b, m->has_key_metadata, &m->key_metadata);
        avro_writer_record_done(&w);
    }
    avro_writer_finish(&w);
    bool ok = io->put(io, location, w.out.data, w.out.len, err);
    avro_writer_free(&w);
    return ok;
}

static int64_t get_l(const av_value *rec, int id, const char *name, int64_t dflt)
{
    const av_value *v = av_field_get(rec, id, name);
    return v ? v->l : dflt;
}

bool manifest_list_read(file_io *io, const char *location, manifest_file **out, int *n_out, char **err)
{
    byte_buf data = {0};
    *out = NULL;
    *n_out = 0;
    if (!io->read_all(io, location, &data, err))
        return false;
    avro_file f;
    char e[256];
    if (!avro_file_read(data.data, data.len, &f, e, sizeof e)) {
        *err = g_strdup_printf("%s: %s", location, e);
        avro_file_clear(&f);
        bb_free(&data);
        return false;
    }
    manifest_file *ms = g_new0(manifest_file, f.n_records + 1);
    for (size_t i = 0; i < f.n_records; i++) {
        const av_value *r = &f.records[i];
        manifest_file *m = &ms[i];
        const av_value *path = av_field_get(r, 500, "manifest_path");
        m->path = path ? g_strndup((const char *)path->p, path->n) : g_strdup("");
        m->length = get_l(r, 501, "manifest_length", 0);
        m->spec_id = (int32_t)get_l(r, 502, "partition_spec_id", 0);
        m->content = (int32_t)get_l(r, 517, "content", 0);
        m->sequence_number = get_l(r, 515, "sequence_number", 0);
        m->min_sequence_number = get_l(r, 516, "min_sequence_number", 0);
        m->added_snapshot_id = get_l(r, 503, "added_snapshot_id", 0);
        m->added_files = (int32_t)get_l(r, 504, "added_files_count", 0);
        m->existing_files = (int32_t)get_l(r, 505, "existing_files_count", 0);
        m->deleted_files = (int32_t)get_l(r, 506, "deleted_files_count", 0);
        m->added_rows = get_l(r, 512, "added_rows_count", 0);
        m->existing_rows = get_l(r, 513, "existing_rows_count", 0);
        m->deleted_rows = get_l(r, 514, "deleted_rows_count", 0);
        const av_value *parts = av_field_get(r, 507, "partitions");
        m->n_partitions = -1;
        if (parts && parts->kind == AV_ARRAY) {
            m->n_partitions = (int)parts->n_items;
            m->partitions = g_new0(field_summary, parts->n_items + 1);
            for (size_t p = 0; p < parts->n_items; p++) {
                const av_value *s = &parts->items[p];
                field_summary *fs = &m->partitions[p];
                fs->contains_null = get_l(s, 509, "contains_null", 0) != 0;
                const av_value *nan = av_field_get(s, 518, "contains_nan");
                fs->contains_nan = nan ? (int)nan->l : -1;
                const av_value *lo = av_field_get(s, 510, "lower_bound");
                const av_value *hi = av_field_get(s, 511, "upper_bound");
                if (lo) {
                    fs->has_lower = true;
                    bb_append(&fs->lower, lo->p, lo->n);
                }
                if (hi) {
                    fs->has_upper = true;
                    bb_append(&fs->upper, hi->p, hi->n);
                }
            }
        }
        const av_value *km = av_field_get(r, 519, "key_metadata");
        if (km) {
            m->has_key_metadata = true;
            bb_append(&m->key_metadata, km->p, km->n);
        }
    }
    *out = ms;
    *n_out = (int)f.n_records;
    avro_file_clear(&f);
    bb_free(&data);
    return true;
}

/* ------------------------------------------------------------ manifest entries */

void manifest_entry_free(manifest_entry *e)
{
    if (!e)
        return;
    data_file_free(e->file);
    g_free(e);
}

static bool decode_partition(const av_value *rec, const part_spec *spec, data_file *df, char **err)
{
    df->partition = g_new0(part_value, (gsize)spec->n_fields + 1);
    size_t bytes = 0;
    for (int p = 0; p < spec->n_fields; p++) {
        const av_value *v = rec ? av_field_get(rec, spec->fields[p].field_id, spec->fields[p].name) : NULL;
        if (v && (v->kind == AV_STRING || v->kind == AV_BYTES))
            bytes += v->n;
    }
    df->part_bytes = g_malloc(bytes + 1);
    size_t at = 0;
    for (int p = 0; p < spec->n_fields; p++) {
        const part_field *f = &spec->fields[p];
        part_value *pv = &df->partition[p];
        const av_value *v = rec ? av_field_get(rec, f->field_id, f->name) : NULL;
        if (!v) {
            pv->is_null = true;
            continue;
        }
        switch (f->result.id) {
        case ICE_STRING:
        case ICE_BINARY:
            if (v->kind != AV_STRING && v->kind != AV_BYTES)
                goto bad;
            memcpy(df->part_bytes + at, v->p, v->n);
            pv->p = df->part_bytes + at;
            pv->n = (uint32_t)v->n;
            at += v->n;
            break;
        case ICE_FLOAT:
        case ICE_DOUBLE:
            if (v->kind != AV_FLOAT && v->kind != AV_DOUBLE)
                goto bad;
            pv->d = v->d;
            break;
        case ICE_DECIMAL: {
            if (v->kind != AV_FIXED && v->kind != AV_BYTES)
                goto bad;
            if (v->n == 0 || v->n > 16)
                goto bad;
            __int128 x = (v->p[0] & 0x80) ? -1 : 0; /* sign-extend the big-endian two's complement */
            for (size_t i = 0; i < v->n; i++)
                x = (__int128)(((unsigned __int128)x << 8) | v->p[i]);
            pv->dec = x;
            break;
        }
        default:
            if (v->kind != AV_INT && v->kind != AV_LONG && v->kind != AV_BOOLEAN)
                goto bad;
            pv->i = v->l;
            break;
        }
        continue;
    bad:
        *err = g_strdup_printf("partition field '%s' has an unexpected type", f->name);
        return false;
    }
    return true;
}

/* The column metrics of a data_file record: the maps keyed by field id. */
static pq_column_metrics *metric_col(GArray *cols, int field_id)
{
    for (guint i = 0; i < cols->len; i++)
        if (g_array_index(cols, pq_column_metrics, i).field_id == field_id)
            return &g_array_index(cols, pq_column_metrics, i);
    pq_column_metrics c = {.field_id = field_id, .nan_count = -1};
    g_array_append_val(cols, c);
    return &g_array_index(cols, pq_column_metrics, cols->len - 1);
}

static void decode_metric_map(const av_value *df, int id, const char *name, metric_kind k, GArray *cols, GArray *lowers,
                              GArray *uppers)
{
    const av_value *map = av_field_get(df, id, name);
    if (!map || map->kind != AV_ARRAY)
        return;
    for (size_t i = 0; i < map->n_items; i++) {
        const av_value *kv = &map->items[i];
        if (kv->kind != AV_RECORD || kv->n_items < 2 || kv->items[0].kind != AV_INT)
            continue;
        pq_column_metrics *c = metric_col(cols, (int)kv->items[0].l);
        const av_value *v = &kv->items[1];
        switch (k) {
        case M_SIZES: c->compressed_size = v->l; break;
        case M_VALUES: c->value_count = v->l; break;
        case M_NULLS: c->null_count = v->l; break;
        case M_NANS: c->nan_count = v->l; break;
        case M_LOWER:
        case M_UPPER: {
            /* kept aside: a bound counts only with its other half */
            intptr_t pair[2] = {c->field_id, (intptr_t)v};
            g_array_append_vals(k == M_LOWER ? lowers : uppers, pair, 2);
            break;
        }
        }
    }
}

static const av_value *bound_of(GArray *list, int field_id)
{
    /* pairs of (int field id, const av_value *) packed as two elements */
    for (guint i = 0; i + 1 < list->len; i += 2)
        if (g_array_index(list, intptr_t, i) == field_id)
            return (const av_value *)g_array_index(list, intptr_t, i + 1);
    return NULL;
}

static data_file *decode_data_file(const av_value *df, const part_spec *spec, char **err)
{
    const av_value *path = av_field_get(df, 100, "file_path");
    if (!path || path->kind != AV_STRING) {
        *err = g_strdup("a data_file without file_path");
        return NULL;
    }
    const av_value *content = av_field_get(df, 134, "content");
    if (content && content->l != 0) {
        *err = g_strdup_printf("%.*s is a delete file", (int)path->n, (const char *)path->p);
        return NULL;
    }
    data_file *f = g_new0(data_file, 1);
    f->location = g_strndup((const char *)path->p, path->n);
    if (!decode_partition(av_field_get(df, 102, "partition"), spec, f, err)) {
        data_file_free(f);
        return NULL;
    }
    f->metrics.num_rows = get_l(df, 103, "record_count", 0);
    f->metrics.file_size = get_l(df, 104, "file_size_in_bytes", 0);
    GArray *cols = g_array_new(FALSE, TRUE, sizeof(pq_column_metrics));
    GArray *lowers = g_array_new(FALSE, FALSE, sizeof(intptr_t)), *uppers = g_array_new(FALSE, FALSE, sizeof(intptr_t));
    decode_metric_map(df, 108, "column_sizes", M_SIZES, cols, lowers, uppers);
    decode_metric_map(df, 109, "value_counts", M_VALUES, cols, lowers, uppers);
    decode_metric_map(df, 110, "null_value_counts", M_NULLS, cols, lowers, uppers);
    decode_metric_map(df, 137, "nan_value_counts", M_NANS, cols, lowers, uppers);
    decode_metric_map(df, 125, "lower_bounds", M_LOWER, cols, lowers, uppers);
    decode_metric_map(df, 128, "upper_bounds", M_UPPER, cols, lowers, uppers);
    for (guint i = 0; i < cols->len; i++) {
        pq_column_metrics *c = &g_array_index(cols, pq_column_metrics, i);
        const av_value *lo = bound_of(lowers, c->field_id), *hi = bound_of(uppers, c->field_id);
        if (lo && hi) {
            c->has_bounds = true;
            bb_append(&c->lower, lo->p, lo->n);
            bb_append(&c->upper, hi->p, hi->n);
        }
    }
    g_array_free(lowers, TRUE);
    g_array_free(uppers, TRUE);
    f->metrics.n_columns = (int)cols->len;
    f->metrics.cols = (pq_column_metrics *)g_array_free(cols, FALSE);
    const av_value *splits = av_field_get(df, 132, "split_offsets");
    if (splits && splits->kind == AV_ARRAY && splits->n_items > 0) {
        f->metrics.n_row_groups = (int)splits->n_items;
        f->metrics.row_group_offsets = g_new(int64_t, splits->n_items);
        for (size_t i = 0; i < splits->n_items; i++)
            f->metrics.row_group_offsets[i] = splits->items[i].l;
    }
    return f;
}

bool manifest_read(file_io *io, const manifest_file *mf, const part_spec *spec, GPtrArray *out, char **err)
{
    if (mf->content != 0) {
        *err = g_strdup_printf("%s lists delete files, which this writer does not maintain", mf->path);
        return false;
    }
    byte_buf data = {0};
    if (!io->read_all(io, mf->path, &data, err))
        return false;
    guint start = out->len;
    avro_file f;
    char e[256];
    bool ok = avro_file_read(data.data, data.len, &f, e, sizeof e);
    if (!ok)
        *err = g_strdup_printf("%s: %s", mf->path, e);
    for (size_t i = 0; ok && i < f.n_records; i++) {
        const av_value *r = &f.records[i];
        const av_value *df = av_field_get(r, 2, "data_file");
        char *why = NULL;
        data_file *file = df && df->kind == AV_RECORD ? decode_data_file(df, spec, &why) : NULL;
        if (!file) {
            *err = g_strdup_printf("%s: entry %zu: %s", mf->path, i, why ? why : "no data_file");
            g_free(why);
            ok = false;
            break;
        }
        manifest_entry *me = g_new0(manifest_entry, 1);
        me->file = file;
        me->status = (int)get_l(r, 0, "status", ME_EXISTING);
        if (me->status < ME_EXISTING || me->status > ME_DELETED)
            me->status = ME_EXISTING;
        /* null means inherited from the manifest list (spec "Sequence Number Inheritance") */
        const av_value *sid = av_field_get(r, 1, "snapshot_id");
        const av_value *seq = av_field_get(r, 3, "sequence_number");
        const av_value *fseq = av_field_get(r, 4, "file_sequence_number");
        me->snapshot_id = sid ? sid->l : mf->added_snapshot_id;
        me->sequence_number = seq ? seq->l : mf->sequence_number;
        me->file_sequence_number = fseq ? fseq->l : (seq ? seq->l : mf->sequence_number);
        g_ptr_array_add(out, me);
    }
    if (!ok) /* the caller gets all of a manifest or none of it */
        g_ptr_array_set_size(out, start);
    avro_file_clear(&f);
    bb_free(&data);
    return ok;
}
