/* Table metadata JSON: see table_metadata.h. */
#include "table_metadata.h"

#include <stdio.h>
#include <string.h>

static char *uuid4(void) { return g_uuid_string_random(); }

void tm_create(table_metadata *tm, const char *location, const ice_schema *schema, const part_spec *spec,
               int64_t now_ms)
{
    JsonObject *o = json_object_new();
    json_object_set_int_member(o, "format-version", 2);
    g_autofree char *uuid = uuid4();
    json_object_set_string_member(o, "table-uuid", uuid);
    json_object_set_string_member(o, "location", location);
    json_object_set_int_member(o, "last-sequence-number", 0);
    json_object_set_int_member(o, "last-updated-ms", now_ms);
    json_object_set_int_member(o, "last-column-id", ice_schema_max_id(schema));
    json_object_set_int_member(o, "current-schema-id", schema->schema_id);
    JsonArray *schemas = json_array_new();
    json_array_add_element(schemas, ice_schema_to_json(schema));
    json_object_set_array_member(o, "schemas", schemas);
    json_object_set_int_member(o, "default-spec-id", spec->spec_id);
    JsonArray *specs = json_array_new();
    json_array_add_element(specs, part_spec_to_json(spec));
    json_object_set_array_member(o, "partition-specs", specs);
    json_object_set_int_member(o, "last-partition-id", part_spec_last_field_id(spec));
    json_object_set_int_member(o, "default-sort-order-id", 0);
    JsonArray *orders = json_array_new();
    JsonObject *unsorted = json_object_new();
    json_object_set_int_member(unsorted, "order-id", 0);
    json_object_set_array_member(unsorted, "fields", json_array_new());
    json_array_add_object_element(orders, unsorted);
    json_object_set_array_member(o, "sort-orders", orders);
    JsonObject *props = json_object_new();
    json_object_set_string_member(props, "write.format.default", "parquet");
    json_object_set_object_member(o, "properties", props);
    json_object_set_object_member(o, "refs", json_object_new());
    json_object_set_array_member(o, "snapshots", json_array_new());
    json_object_set_array_member(o, "snapshot-log", json_array_new());
    json_object_set_array_member(o, "metadata-log", json_array_new());
    tm->root = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(tm->root, o);
    tm->o = o;
}

bool tm_parse(table_metadata *tm, const char *json, size_t len, char *err, size_t errcap)
{
    memset(tm, 0, sizeof *tm);
    JsonParser *p = json_parser_new();
    GError *ge = NULL;
    if (!json_parser_load_from_data(p, json, (gssize)len, &ge)) {
        snprintf(err, errcap, "table metadata is not JSON: %s", ge->message);
        g_error_free(ge);
        g_object_unref(p);
        return false;
    }
    JsonNode *root = json_parser_get_root(p);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        snprintf(err, errcap, "table metadata is not a JSON object");
        g_object_unref(p);
        return false;
    }
    tm->root = json_node_copy(root);
    tm->o = json_node_get_object(tm->root);
    g_object_unref(p);
    return true;
}

/* json_node_copy() shares objects and arrays (it takes a reference): a
 * "copy" changed for the next commit would change the loaded metadata too,
 * and a commit that fails would leave its snapshot in it. */
static JsonNode *deep_copy(JsonNode *n)
{
    switch (JSON_NODE_TYPE(n)) {
    case JSON_NODE_OBJECT: {
        JsonObject *src = json_node_get_object(n), *dst = json_object_new();
        GList *members = json_object_get_members(src);
        for (GList *m = members; m; m = m->next)
            json_object_set_member(dst, m->data, deep_copy(json_object_get_member(src, m->data)));
        g_list_free(members);
        JsonNode *c = json_node_new(JSON_NODE_OBJECT);
        json_node_take_object(c, dst);
        return c;
    }
    case JSON_NODE_ARRAY: {
        JsonArray *src = json_node_get_array(n), *dst = json_array_sized_new(json_array_get_length(src));
        for (guint i = 0; i < json_array_get_length(src); i++)
            json_array_add_element(dst, deep_copy(json_array_get_element(src, i)));
        JsonNode *c = json_node_new(JSON_NODE_ARRAY);
        json_node_take_array(c, dst);
        return c;
    }
    default: return json_node_copy(n); /* values and null: a real copy */
    }
}

void tm_copy(table_metadata *dst, const table_metadata *src)
{
    dst->root = deep_copy(src->root);
    dst->o = json_node_get_object(dst->root);
}

void tm_clear(table_metadata *tm)
{
    if (tm->root)
        json_node_unref(tm->root);
    memset(tm, 0, sizeof *tm);
}

char *tm_to_string(const table_metadata *tm)
{
    JsonGenerator *g = json_generator_new();
    json_generator_set_pretty(g, TRUE);
    json_generator_set_indent(g, 2);
    json_generator_set_root(g, tm->root);
    char *s = json_generator_to_data(g, NULL);
    g_object_unref(g);
    return s;
}

int tm_format_version(const table_metadata *tm)
{
    return (int)json_object_get_int_member_with_default(tm->o, "format-version", 1);
}

const char *tm_location(const table_metadata *tm)
{
    return json_object_get_string_member_with_default(tm->o, "location", "");
}

int64_t tm_last_sequence_number(const table_metadata *tm)
{
    return json_object_get_int_member_with_default(tm->o, "last-sequence-number", 0);
}

int tm_last_column_id(const table_metadata *tm)
{
    return (int)json_object_get_int_member_with_default(tm->o, "last-column-id", 0);
}

int64_t tm_last_updated_ms(const table_metadata *tm)
{
    return json_object_get_int_member_with_default(tm->o, "last-updated-ms", 0);
}

int64_t tm_current_snapshot_id(const table_metadata *tm)
{
    JsonNode *n = json_object_get_member(tm->o, "current-snapshot-id");
    if (!n || JSON_NODE_HOLDS_NULL(n))
        return -1;
    return json_node_get_int(n);
}

bool tm_current_schema(const table_metadata *tm, ice_schema *out, char *err, size_t errcap)
{
    int64_t id = json_object_get_int_member_with_default(tm->o, "current-schema-id", 0);
    JsonArray *schemas =
        json_object_has_member(tm->o, "schemas") ? json_object_get_array_member(tm->o, "schemas") : NULL;
    for (guint i = 0; schemas && i < json_array_get_length(schemas); i++) {
        JsonObject *s = json_array_get_object_element(schemas, i);
        if (json_object_get_int_member_with_default(s, "schema-id", 0) == id)
            return ice_schema_from_json(s, out, err, errcap);
    }
    if (json_object_has_member(tm->o, "schema")) /* v1 */
        return ice_schema_from_json(json_object_get_object_member(tm->o, "schema"), out, err, errcap);
    snprintf(err, errcap, "table metadata has no schema %" G_GINT64_FORMAT, id);
    return false;
}

bool tm_default_spec(const table_metadata *tm, const ice_schema *schema, part_spec *out, char *err, size_t errcap)
{
    int64_t id = json_object_get_int_member_with_default(tm->o, "default-spec-id", 0);
    JsonArray *specs = json_object_has_member(tm->o, "partition-specs")
                           ? json_object_get_array_member(tm->o, "partition-specs")
                           : NULL;
    for (guint i = 0; specs && i < json_array_get_length(specs); i++) {
        JsonObject *s = json_array_get_object_element(specs, i);
        if (json_object_get_int_member_with_default(s, "spec-id", 0) == id)
            return part_spec_from_json(s, schema, out, err, errcap);
    }
    snprintf(err, errcap, "table metadata has no partition spec %" G_GINT64_FORMAT, id);
    return false;
}

JsonObject *tm_snapshot(const table_metadata *tm, int64_t snapshot_id)
{
    JsonArray *snaps =
        json_object_has_member(tm->o, "snapshots") ? json_object_get_array_member(tm->o, "snapshots") : NULL;
    for (guint i = 0; snaps && i < json_array_get_length(snaps); i++) {
        JsonObject *s = json_array_get_object_element(snaps, i);
        if (json_object_get_int_member_with_default(s, "snapshot-id", -2) == snapshot_id)
            return s;
    }
    return NULL;
}

const char *tm_snapshot_summary(const table_metadata *tm, int64_t snapshot_id, const char *key)
{
    JsonObject *s = tm_snapshot(tm, snapshot_id);
    if (!s || !json_object_has_member(s, "summary"))
        return NULL;
    return json_object_get_string_member_with_default(json_object_get_object_member(s, "summary"), key, NULL);
}

static JsonArray *array_member(JsonObject *o, const char *name)
{
    if (!json_object_has_member(o, name))
        json_object_set_array_member(o, name, json_array_new());
    return json_object_get_array_member(o, name);
}

void tm_add_schema(table_metadata *tm, const ice_schema *schema, int last_column_id, int64_t now_ms)
{
    json_array_add_element(array_member(tm->o, "schemas"), ice_schema_to_json(schema));
    json_object_set_int_member(tm->o, "current-schema-id", schema->schema_id);
    if (last_column_id > tm_last_column_id(tm))
        json_object_set_int_member(tm->o, "last-column-id", last_column_id);
    json_object_set_int_member(tm->o, "last-updated-ms", now_ms);
}

void tm_add_snapshot(table_metadata *tm, int64_t snapshot_id, int64_t parent_id, int64_t sequence_number,
                     int64_t timestamp_ms, const char *manifest_list, int schema_id, const char *const *summary)
{
    JsonObject *s = json_object_new();
    json_object_set_int_member(s, "snapshot-id", snapshot_id);
    if (parent_id >= 0)
        json_object_set_int_member(s, "parent-snapshot-id", parent_id);
    json_object_set_int_member(s, "sequence-number", sequence_number);
    json_object_set_int_member(s, "timestamp-ms", timestamp_ms);
    json_object_set_string_member(s, "manifest-list", manifest_list);
    JsonObject *sum = json_object_new();
    for (const char *const *kv = summary; kv && *kv; kv += 2)
        json_object_set_string_member(sum, kv[0], kv[1]);
    json_object_set_object_member(s, "summary", sum);
    json_object_set_int_member(s, "schema-id", schema_id);
    json_array_add_object_element(array_member(tm->o, "snapshots"), s);

    json_object_set_int_member(tm->o, "current-snapshot-id", snapshot_id);
    json_object_set_int_member(tm->o, "last-sequence-number", sequence_number);
    json_object_set_int_member(tm->o, "last-updated-ms", timestamp_ms);
    if (!json_object_has_member(tm->o, "refs"))
        json_object_set_object_member(tm->o, "refs", json_object_new());
    JsonObject *refs = json_object_get_object_member(tm->o, "refs");
    JsonObject *main_ref = json_object_new();
    json_object_set_int_member(main_ref, "snapshot-id", snapshot_id);
    json_object_set_string_member(main_ref, "type", "branch");
    json_object_set_object_member(refs, "main", main_ref);
    JsonObject *log = json_object_new();
    json_object_set_int_member(log, "timestamp-ms", timestamp_ms);
    json_object_set_int_member(log, "snapshot-id", snapshot_id);
    json_array_add_object_element(array_member(tm->o, "snapshot-log"), log);
}

void tm_log_previous(table_metadata *tm, const char *previous_file, int64_t previous_updated_ms)
{
    JsonObject *e = json_object_new();
    json_object_set_int_member(e, "timestamp-ms", previous_updated_ms);
    json_object_set_string_member(e, "metadata-file", previous_file);
    JsonArray *log = array_member(tm->o, "metadata-log");
    json_array_add_object_element(log, e);
    /* Every version carries the log: uncapped, a table committed every
     * second rewrites a longer file each time. Java's default
     * (write.metadata.previous-versions-max); the files dropped from it are
     * orphans that maintenance removes. */
    while (json_array_get_length(log) > TM_METADATA_LOG_MAX)
        json_array_remove_element(log, 0);
}

/* Keeps the array elements whose snapshot id `keep` says to keep. */
static void filter_by_snapshot(JsonObject *o, const char *array, const char *id_key, GHashTable *removed)
{
    if (!json_object_has_member(o, array))
        return;
    JsonArray *a = json_object_get_array_member(o, array);
    for (guint i = json_array_get_length(a); i-- > 0;) {
        JsonObject *e = json_array_get_object_element(a, i);
        gint64 id = e ? json_object_get_int_member_with_default(e, id_key, -1) : -1;
        if (g_hash_table_contains(removed, &id))
            json_array_remove_element(a, i);
    }
}

void tm_remove_snapshots(table_metadata *tm, const int64_t *ids, int n, int64_t now_ms)
{
    GHashTable *removed = g_hash_table_new(g_int64_hash, g_int64_equal);
    for (int i = 0; i < n; i++)
        g_hash_table_add(removed, (gpointer)&ids[i]);
    filter_by_snapshot(tm->o, "snapshots", "snapshot-id", removed);
    filter_by_snapshot(tm->o, "snapshot-log", "snapshot-id", removed);
    g_hash_table_destroy(removed);
    json_object_set_int_member(tm->o, "last-updated-ms", now_ms);
}
