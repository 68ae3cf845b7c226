/*
 * The per-partition writer pool of sink-iceberg: rows are routed by their
 * partition tuple to one open Parquet file per partition, a file rolls at
 * target_file_size, and memory stays bounded (max_open_partitions files, the
 * least recently used finished first; max_buffered_bytes of unwritten row
 * groups and of what the IO holds, the largest holder giving back first).
 *
 * Finished files go to the owner (`file_done`, for its next commit); write
 * failures too (`failed`, which takes the message). The pool never commits,
 * settles or logs: that is the plugin's.
 */
#ifndef ECF_ICEBERG_WRITER_POOL_H
#define ECF_ICEBERG_WRITER_POOL_H

#include "arrow_columns.h"
#include "file_io.h"
#include "manifest.h"
#include "parquet_writer.h"
#include "partition.h"

#include <stdint.h>

/* Where a partition field's source column is in the input records. */
typedef struct {
    int input_col; /* -1: not in the input (always null) */
    arrow_kind kind;
} part_source;

/* What the files are and where they go; the pool borrows every pointer. */
typedef struct {
    file_io *io;
    const char *location; /* the table's: files go to <location>/data/<partition path>/ */
    const part_spec *spec;
    const part_source *psrc;    /* one per partition field */
    const pq_column_spec *cols; /* one per input column, typed as the table column */
    const arrow_kind *kinds;
    int n_cols;
    const pq_options *pq;
    const char *run_id; /* file names: <run_id>-<seq>.parquet */
} wp_layout;

typedef struct {
    void (*file_done)(void *ctx, data_file *df); /* a finished file, owned by the callee */
    void (*failed)(void *ctx, char *why);        /* a write failed; the callee owns `why` */
    void *ctx;
} wp_events;

typedef struct writer_pool writer_pool;

writer_pool *wp_new(wp_events ev);
/* Set once the table is open, before the first wp_write. */
void wp_set_layout(writer_pool *p, const wp_layout *layout);
/* Open files, finished by nothing yet. */
unsigned wp_open_count(const writer_pool *p);

/* Writes the rows i of `rec` whose fate[i] == `take` to their partitions'
 * files; a file that reaches target_file_size is finished. */
void wp_write(writer_pool *p, const struct ArrowArray *rec, uint32_t n, const uint8_t *fate, uint8_t take,
              int64_t target_file_size);
/* Finishes files until at most max_open are open and at most max_buffered
 * bytes are held; *open and *buffered say what is left. */
void wp_enforce_bounds(writer_pool *p, int64_t max_open, int64_t max_buffered, unsigned *open, int64_t *buffered);
/* Finishes every open file (for a commit). */
void wp_finish_all(writer_pool *p);
/* Drops every open file unfinished, then the pool. */
void wp_free(writer_pool *p);

#endif
