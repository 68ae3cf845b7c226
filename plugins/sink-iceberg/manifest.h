/*
 * Iceberg manifests and manifest lists (spec "Manifests", "Manifest Lists"),
 * as Avro container files with the v2 schemas: every field carries its
 * field-id, maps are arrays of key/value records with logicalType "map",
 * and the headers hold the metadata keys the spec requires.
 */
#ifndef ECF_ICEBERG_MANIFEST_H
#define ECF_ICEBERG_MANIFEST_H

#include "byte_buf.h"
#include "file_io.h"
#include "iceberg_schema.h"
#include "parquet_writer.h"
#include "partition.h"

#include <glib.h>

/* A finished data file waiting for a commit. */
typedef struct {
    char *location;
    part_value *partition; /* spec->n_fields values; bytes point into part_bytes */
    uint8_t *part_bytes;
    pq_file_metrics metrics;
} data_file;

void data_file_free(data_file *f);

typedef struct {
    bool contains_null;
    int contains_nan; /* -1: unknown (null) */
    bool has_lower, has_upper;
    byte_buf lower, upper;
} field_summary;

/* One manifest_file record of a manifest list. */
typedef struct {
    char *path;
    int64_t length;
    int32_t spec_id;
    int32_t content;
    int64_t sequence_number, min_sequence_number;
    int64_t added_snapshot_id;
    int32_t added_files, existing_files, deleted_files;
    int64_t added_rows, existing_rows, deleted_rows;
    int n_partitions; /* -1: null */
    field_summary *partitions;
    bool has_key_metadata;
    byte_buf key_metadata;
} manifest_file;

void manifest_file_clear(manifest_file *m);

/*
 * Writes a data manifest listing `files` as ADDED by `snapshot_id` (sequence
 * numbers left null: inherited, so the manifest survives commit retries).
 * Fills `out` (its sequence numbers are set when the list is written).
 */
bool manifest_write(file_io *io, const char *location, const ice_schema *schema, const part_spec *spec,
                    int64_t snapshot_id, data_file *const *files, int n_files, manifest_file *out, char **err);

/* One entry of a manifest: a data file and its life in the table. */
enum { ME_EXISTING = 0, ME_ADDED = 1, ME_DELETED = 2 };
typedef struct {
    int status;
    int64_t snapshot_id;          /* the snapshot that added the file */
    int64_t sequence_number;      /* data sequence number (inheritance resolved) */
    int64_t file_sequence_number; /* likewise */
    data_file *file;              /* owned */
} manifest_entry;

void manifest_entry_free(manifest_entry *e);

/*
 * Writes a data manifest of `entries`: ADDED ones as added by `snapshot_id`
 * (sequence numbers inherited), EXISTING and DELETED ones with the snapshot id
 * and sequence numbers they carry. `out` gets the counts; its
 * min_sequence_number is that of the existing entries (INT64_MAX when there
 * are none: the caller takes the new snapshot's).
 */
bool manifest_write_entries(file_io *io, const char *location, const ice_schema *schema, const part_spec *spec,
                            int64_t snapshot_id, manifest_entry *const *entries, int n, manifest_file *out, char **err);

/*
 * Appends the entries of data manifest `mf` (any writer's, partitioned by
 * `spec`) to `out` (a GPtrArray freeing with manifest_entry_free): all of
 * them, or none with *err (unreadable, a delete manifest, a delete file).
 */
bool manifest_read(file_io *io, const manifest_file *mf, const part_spec *spec, GPtrArray *out, char **err);

/* Writes a manifest list. parent_id < 0: none. */
bool manifest_list_write(file_io *io, const char *location, int64_t snapshot_id, int64_t parent_id,
                         int64_t sequence_number, const manifest_file *entries, int n, char **err);

/* Reads a manifest list (any writer's); *out is g_new'ed, free each entry. */
bool manifest_list_read(file_io *io, const char *location, manifest_file **out, int *n, char **err);

#endif
