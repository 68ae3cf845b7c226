/*
 * Table maintenance: what keeps a table that is committed every few seconds
 * fast to read and bounded in size, done by the process that owns its writes.
 *
 * - compact: per partition, small data files of the current snapshot are
 *   rewritten (decoded and re-encoded, parquet_rewrite.h) into files near
 *   target_file_size, and the current snapshot's manifests are merged into
 *   one; both land as one `replace` snapshot. It is computed against the
 *   table as it stands at the commit: appends that race it are kept (the
 *   commit is rebuilt on the new head), and a file that is no longer live
 *   there (another process compacted it) abandons the rewrite.
 * - expire: snapshots past the retention (the newest keep_last, and those
 *   younger than max_snapshot_age) are removed, except what exactly-once
 *   needs: the lineage from the head down to each writer's newest snapshot
 *   (its Kafka positions; a writer resumes from it) and every ref. Then the
 *   manifest lists, manifests and data files only they referenced are deleted.
 * - clean: files under the table location that no snapshot references and
 *   that are older than orphan_age (left by a SIGKILL between a write and
 *   its commit, or by an expiry that was killed while deleting).
 *
 * Every step is safe to kill at any point: a commit is atomic, and files are
 * deleted only after the commit that made them unreferenced, so what a kill
 * leaves is an orphan the next clean removes.
 */
#ifndef ECF_ICEBERG_MAINTENANCE_H
#define ECF_ICEBERG_MAINTENANCE_H

#include "parquet_writer.h"
#include "table_commit.h"

typedef struct {
    int64_t target_file_size;    /* compaction output */
    int64_t small_file_size;     /* data files below this are rewritten */
    int min_input_files;         /* small files a partition needs before it is rewritten */
    int64_t max_rewrite_bytes;   /* input bytes rewritten per run */
    int64_t max_input_bytes;     /* larger files are not read for a rewrite (held whole in memory) */
    int max_manifests;           /* the head lists more: merged into one */
    int keep_last;               /* snapshots of the lineage kept */
    int64_t max_snapshot_age_ms; /* and those younger than this */
    int64_t orphan_age_ms;       /* unreferenced files younger than this stay */
    pq_options pq;               /* for rewritten files */
    bool dry_run;                /* plan and report; change nothing */
    int64_t now_ms;
    const gint *cancel; /* non-zero: stop before the next file (shutdown) */
} maint_options;

typedef struct {
    /* compact */
    int64_t files_before, files_after, bytes_before, bytes_after;
    int manifests_before, manifests_after;
    int partitions_compacted, files_rewritten, files_written;
    int files_skipped;        /* inputs that could not be rewritten (see note) */
    int64_t replace_snapshot; /* -1: none committed */
    /* expire */
    int snapshots_before, snapshots_after;
    int lists_deleted, manifests_deleted, data_files_deleted;
    int64_t data_bytes_deleted;
    /* clean */
    int orphans_found, orphans_removed, orphans_young;
    int64_t orphan_bytes;
    char *note; /* the first thing worth a warning (a skipped file), or NULL */
} maint_report;

#define MAINT_REPORT_INIT      \
    {                          \
        .replace_snapshot = -1 \
    }
/* Frees the note and zeroes the counts, for the next step. */
void maint_report_clear(maint_report *r);

/* Each runs on a table loaded with table_reload() (its own catalog handle:
 * maintenance runs beside the sink's appends) and leaves it reloaded. false
 * with *err when it failed; nothing it did became visible then, except files
 * a later clean removes. */
bool maint_compact(ice_table *t, const maint_options *o, maint_report *r, char **err);
bool maint_expire(ice_table *t, const maint_options *o, maint_report *r, char **err);
bool maint_clean(ice_table *t, const maint_options *o, maint_report *r, char **err);

/* Per partition of the current snapshot: files, rows, bytes, and a size
 * histogram; then snapshots, manifests and metadata versions. */
bool maint_stats(ice_table *t, const maint_options *o, GString *out, char **err);

/* What the report says, for a log line or the CLI. */
void maint_report_compact(const maint_report *r, GString *out);
void maint_report_expire(const maint_report *r, GString *out);
void maint_report_clean(const maint_report *r, GString *out);

#endif
