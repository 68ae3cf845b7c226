/*
 * What the sink does to a table, as whole commits with optimistic retry:
 * open (create from the input schema when absent, evolve the schema when the
 * input brings compatible changes, refuse incompatible ones) and append
 * (one manifest, one manifest list, one snapshot per commit).
 */
#ifndef ECF_ICEBERG_TABLE_COMMIT_H
#define ECF_ICEBERG_TABLE_COMMIT_H

#include "catalog.h"
#include "iceberg_schema.h"
#include "manifest.h"
#include "partition.h"

typedef struct {
    catalog_table cat;
    ice_schema schema; /* the table's current schema */
    part_spec spec;    /* the table's default partition spec */
    bool exists;
    /* the last commit may or may not have been applied and the catalog
     * could not tell (catalog.h: FIO_UNKNOWN): its files were kept, and the
     * writer must reload before it trusts what it knows of the table */
    bool outcome_unknown;
    /* table_open failed to reach the catalog or the store (not a schema or
     * configuration problem): a service is down, refuses us, or lacks a bucket */
    bool unreachable;
} ice_table;

typedef struct {
    const ice_schema *input; /* what the pipeline brings, ids 1..n */
    char **partition_by;     /* spec for a new table */
    int64_t now_ms;
    bool dry_run; /* check only; write nothing (validate) */
} table_open_args;

/*
 * Loads the table `ref` names, or (unless dry_run) creates it. Returns
 * false with *err on IO errors and incompatible schemas. *note gets a line
 * worth logging (created / evolved / partition_by ignored), or NULL.
 */
bool table_open(ice_table *t, const catalog_ref *ref, const table_open_args *a, char **note, char **err);
void table_close(ice_table *t);

/*
 * A new snapshot's timestamp: now, but always after the table's last update.
 * Clocks of two writers differ, and a commit re-applied after a lost race
 * keeps the time it was prepared at; a snapshot older than its parent makes
 * readers that go by time (DuckDB through a REST catalog) take the parent
 * for the newest and miss the rows on top of it.
 */
int64_t table_snapshot_time(const table_metadata *tm, int64_t now_ms);

/* A random positive 63-bit snapshot id (spec: unique within the table). */
int64_t table_new_snapshot_id(void);

/* Loads the latest version of the table t->cat names (after catalog_table_init,
 * or to refresh); false with *err when there is none or it cannot be read. */
bool table_reload(ice_table *t, char **err);

/*
 * Summary entries that depend on the table as it stands when the snapshot is
 * applied: called on every attempt (again after a reload on a lost race).
 * Appends key, value, ... to `kv`; strings it allocates go into `keep`
 * (freed after the attempt). Returning false (with *err) refuses the commit:
 * the table as it stands makes it wrong.
 */
typedef bool (*table_summary_fn)(void *ctx, const ice_table *t, GPtrArray *kv, GPtrArray *keep, char **err);

/*
 * Appends `files` as one snapshot. `extra` is key, value, ..., NULL for the
 * summary; `more` (optional) adds entries per attempt. On a lost race the
 * table is reloaded and the snapshot re-applied on top of the winner (the
 * manifest is written once and reused).
 * Returns false with *err when the commit failed; nothing became visible.
 */
bool table_append(ice_table *t, data_file *const *files, int n_files, const char *const *extra, table_summary_fn more,
                  void *more_ctx, int64_t now_ms, int64_t *snapshot_id, char **err);

/*
 * The current lineage (the current snapshot, then its parents) searched for
 * the newest snapshot whose summary has match_key == match_value, or carries
 * `key` for that writer as "<key>@<match_value>" (a maintenance snapshot
 * carries every writer's ecflow.* entries forward, so that expiry can drop the
 * writer's own snapshots and the data files only they reference); returns
 * its value of `key` (NULL when that snapshot lacks it, or no snapshot
 * matches) and its id in *snapshot_id (-1 when none matches). Snapshots off
 * the lineage (rolled back) never count; an expired parent ends the walk.
 */
const char *table_lineage_summary(const ice_table *t, const char *match_key, const char *match_value, const char *key,
                                  int64_t *snapshot_id);
/* The same on metadata loaded apart from an ice_table (another thread's view). */
const char *tm_lineage_summary(const table_metadata *meta, const char *match_key, const char *match_value,
                               const char *key, int64_t *snapshot_id);

#endif
