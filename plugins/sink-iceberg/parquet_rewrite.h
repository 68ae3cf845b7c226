/*
 * pq_rewrite: the data-file half of compaction. N Parquet files (whole files
 * in memory) become one file written by pq_writer, rows in input order.
 * Values are decoded and re-encoded, so the output has the row group and page
 * sizes of `opt` and the writer's exact statistics and Iceberg metrics.
 *
 * Columns are matched by Iceberg field id (never by name) against the
 * table's current schema given as pq_column_spec[] (as sink_iceberg.c builds
 * it). An input without an output column's id (the column was added later)
 * gives nulls for it; input columns not in the output (dropped) are skipped;
 * int -> long, float -> double and decimal precision widening are applied;
 * INT64 MILLIS timestamps become micros. A required output column missing
 * from an input, a null in it, an incompatible type, or an input column
 * without a field id is an error naming the file and column.
 *
 * Memory: the input bytes the caller holds (pq_rewrite: all inputs;
 * pq_rewriter: one at a time), one decoded input column chunk (capped by
 * pq_reader_limits.max_chunk_bytes) and what pq_writer buffers for its
 * current row group. Output row groups are cut at input row
 * group boundaries once the writer's row_group_size is reached, so an output
 * row group is at least one input row group.
 */
#ifndef ECF_ICEBERG_PARQUET_REWRITE_H
#define ECF_ICEBERG_PARQUET_REWRITE_H

#include "parquet_reader.h"
#include "parquet_writer.h"

typedef struct {
    const char *name; /* path or URI, for error messages */
    const uint8_t *data;
    size_t size;
} pq_input;

/*
 * Can `in` be rewritten into `cols`? Opens its footer and checks the column
 * mapping and types without decoding pages (pages can still turn out corrupt
 * or unsupported during pq_rewrite). PQ_READ_OK, or the reason in err.
 * A planner uses it to leave files alone that pq_rewrite would refuse.
 */
pq_read_status pq_rewrite_check(const pq_input *in, const pq_column_spec *cols, int n_cols, const pq_reader_limits *lim,
                                char *err, size_t errcap);

/*
 * Incremental form, so the caller holds one input file in memory at a time:
 *   pq_rewriter *rw = pq_rewriter_new(cols, n_cols, &opt, sink, NULL);
 *   for each small file: read it; st = pq_rewriter_add(rw, &in, err, sizeof err);
 *       if (st != PQ_READ_OK && pq_rewriter_failed(rw)) give up (output is garbage);
 *       if (st != PQ_READ_OK) that file was refused before any of its rows were
 *       written: keep it in the table, carry on with the next;
 *       free the file's bytes (the rewriter keeps no pointer into them)
 *   st = pq_rewriter_finish(rw, &metrics, err, sizeof err);
 *   pq_rewriter_free(rw);
 * The rewriter writes "PAR1" to the sink at creation. An input whose footer,
 * mapping or types are wrong is refused up front; a corrupt page found while
 * copying fails the whole output (pq_rewriter_failed), since rows already
 * handed to pq_writer cannot be taken back.
 */
typedef struct pq_rewriter pq_rewriter;

pq_rewriter *pq_rewriter_new(const pq_column_spec *cols, int n_cols, const pq_options *opt, pq_sink sink,
                             const pq_reader_limits *lim);
pq_read_status pq_rewriter_add(pq_rewriter *rw, const pq_input *in, char *err, size_t errcap);
bool pq_rewriter_failed(const pq_rewriter *rw);
int64_t pq_rewriter_num_rows(const pq_rewriter *rw);
/* Closes the file; fills `metrics` (free with pq_file_metrics_clear). Refuses
 * when nothing was added or the rewriter failed. */
pq_read_status pq_rewriter_finish(pq_rewriter *rw, pq_file_metrics *metrics, char *err, size_t errcap);
void pq_rewriter_free(pq_rewriter *rw);

/*
 * All of inputs[0..n_inputs) (n_inputs >= 1) into one file through `sink`,
 * every input checked before the first byte is written; fills `metrics`.
 * Returns PQ_READ_OK, an input's failure status (err names file and column),
 * or PQ_WRITE_FAILED when the sink refused bytes; on failure whatever reached
 * the sink is garbage the caller deletes.
 */
pq_read_status pq_rewrite(const pq_input *inputs, int n_inputs, const pq_column_spec *cols, int n_cols,
                          const pq_options *opt, pq_sink sink, const pq_reader_limits *lim, pq_file_metrics *metrics,
                          char *err, size_t errcap);

#endif
