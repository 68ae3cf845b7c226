/*
 * What the sink does to a table, as whole commits with optimistic retry:
 * open (create from the input schema when absent, evolve the schema when the
 * input brings compatible changes, refuse incompatible ones) and append
 * (one manifest, one manifest list, one snapshot per commit).
 */
#ifndef ECF_ICEBERG_TABLE_COMMIT_H
#define ECF_ICEBERG_TABLE_COMMIT_H

#include "catalog_file.h"
#include "iceberg_schema.h"
#include "manifest.h"
#include "partition.h"

typedef struct {
    catalog_table cat;
    ice_schema    schema; /* the table's current schema */
    part_spec     spec;   /* the table's default partition spec */
    bool          exists;
} ice_table;

typedef struct {
    const ice_schema *input;        /* what the pipeline brings, ids 1..n */
    char            **partition_by; /* spec for a new table */
    int64_t           now_ms;
    bool              dry_run;      /* check only; write nothing (validate) */
} table_open_args;

/*
 * Loads the table at `location`, or (unless dry_run) creates it. Returns
 * false with *err on IO errors and incompatible schemas. *note gets a line
 * worth logging (created / evolved / partition_by ignored), or NULL.
 */
bool table_open(ice_table *t, file_io *io, const char *location, const table_open_args *a, char **note,
                char **err);
void table_close(ice_table *t);

/*
 * Appends `files` as one snapshot. `extra` is key, value, ..., NULL for the
 * summary. On a lost race the table is reloaded and the snapshot re-applied
 * on top of the winner (the manifest is written once and reused).
 * Returns false with *err when the commit failed; nothing became visible.
 */
bool table_append(ice_table *t, data_file *const *files, int n_files, const char *const *extra,
                  int64_t now_ms, int64_t *snapshot_id, char **err);

/* Latest snapshot's summary value for key, walking back through parents
 * until one has it. NULL when none does. */
const char *table_latest_summary(const ice_table *t, const char *key);

#endif
