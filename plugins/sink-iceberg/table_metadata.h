/*
 * Table metadata, format v2 (spec "Table Metadata", Appendix C), kept as the
 * JSON tree json-glib parsed, so fields this sink does not model (properties,
 * statistics, other engines' additions) survive every rewrite. 64-bit ids are
 * JSON integers end to end (json-glib keeps gint64; nothing goes via double).
 */
#ifndef ECF_ICEBERG_TABLE_METADATA_H
#define ECF_ICEBERG_TABLE_METADATA_H

#include "iceberg_schema.h"
#include "partition.h"

#include <json-glib/json-glib.h>

typedef struct {
    JsonNode *root;
    JsonObject *o; /* root's object */
} table_metadata;

/* A new table: schema 0, spec 0, unsorted order 0, no snapshot. */
void tm_create(table_metadata *tm, const char *location, const ice_schema *schema, const part_spec *spec,
               int64_t now_ms);
bool tm_parse(table_metadata *tm, const char *json, size_t len, char *err, size_t errcap);
void tm_copy(table_metadata *dst, const table_metadata *src);
void tm_clear(table_metadata *tm);
char *tm_to_string(const table_metadata *tm);

int tm_format_version(const table_metadata *tm);
const char *tm_location(const table_metadata *tm);
int64_t tm_last_sequence_number(const table_metadata *tm);
int tm_last_column_id(const table_metadata *tm);
int64_t tm_current_snapshot_id(const table_metadata *tm); /* -1: none */
/* The current schema / default spec, parsed. */
bool tm_current_schema(const table_metadata *tm, ice_schema *out, char *err, size_t errcap);
bool tm_default_spec(const table_metadata *tm, const ice_schema *schema, part_spec *out, char *err, size_t errcap);

JsonObject *tm_snapshot(const table_metadata *tm, int64_t snapshot_id);
/* Summary value of a snapshot, NULL when absent. */
const char *tm_snapshot_summary(const table_metadata *tm, int64_t snapshot_id, const char *key);

/* Adds `schema` (its schema_id must be new) and makes it current. */
void tm_add_schema(table_metadata *tm, const ice_schema *schema, int last_column_id, int64_t now_ms);

/* Adds a snapshot and points main at it; summary is key, value, ..., NULL. */
void tm_add_snapshot(table_metadata *tm, int64_t snapshot_id, int64_t parent_id, int64_t sequence_number,
                     int64_t timestamp_ms, const char *manifest_list, int schema_id, const char *const *summary);

/* Drops snapshots (expiry) and their snapshot-log entries. */
void tm_remove_snapshots(table_metadata *tm, const int64_t *ids, int n, int64_t now_ms);

/* Records the metadata file this version replaces; the log keeps the newest
 * TM_METADATA_LOG_MAX. */
#define TM_METADATA_LOG_MAX 100
void tm_log_previous(table_metadata *tm, const char *previous_file, int64_t previous_updated_ms);
int64_t tm_last_updated_ms(const table_metadata *tm);

#endif
