/*
 * A Parquet file writer for flat schemas (no nesting, no repetition):
 * PLAIN and RLE_DICTIONARY encodings, RLE/bit-packed hybrid definition levels,
 * data page v1, UNCOMPRESSED / SNAPPY / ZSTD, row groups and pages sized in
 * bytes, column chunk statistics (null_count, exact min_value/max_value,
 * nan_count), field ids and logical types on every schema element,
 * column_orders and created_by in a Thrift compact footer.
 *
 * Values go in column by column with pq_put_*; pq_end_rows() tells the writer
 * how many rows were completed (every column must have received exactly that
 * many values, nulls included), which is where row groups are cut.
 * Everything the writer hands out goes through `pq_sink`, in order, once:
 * it never seeks, so the same writer serves a local file or an S3 upload.
 */
#ifndef ECF_ICEBERG_PARQUET_WRITER_H
#define ECF_ICEBERG_PARQUET_WRITER_H

#include "byte_buf.h"
#include "iceberg_schema.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    PQ_CODEC_NONE = 0,
    PQ_CODEC_SNAPPY = 1,
    PQ_CODEC_ZSTD = 6,
} pq_codec;

typedef struct {
    const char *name;
    int field_id;
    ice_type type;
    bool required;
} pq_column_spec;

typedef struct {
    pq_codec codec;
    int zstd_level;
    int64_t page_size;       /* uncompressed bytes of values per data page */
    int64_t row_group_size;  /* encoded bytes per row group */
    int64_t max_buffered;    /* a row group also ends once its buffers hold this; 0 = no limit */
    int64_t dict_size_limit; /* a dictionary past this falls back to PLAIN */
    bool dictionary;         /* try dictionary encoding for strings/binary */
    const char *created_by;
} pq_options;

/* Writes n bytes; returns 0, or -1 with errno-style failure recorded by the sink. */
typedef struct {
    int (*write)(void *ctx, const void *p, size_t n);
    void *ctx;
} pq_sink;

/* Iceberg per-column metrics of a finished file (manifest data_file fields). */
typedef struct {
    int field_id;
    int64_t compressed_size; /* bytes of all column chunks, headers included */
    int64_t value_count;     /* values including nulls */
    int64_t null_count;
    int64_t nan_count; /* float/double only, else -1 */
    bool has_bounds;
    byte_buf lower, upper; /* Iceberg single-value serialization (Appendix D) */
} pq_column_metrics;

typedef struct {
    int64_t num_rows;
    int64_t file_size;
    int n_columns;
    pq_column_metrics *cols;
    int n_row_groups;
    int64_t *row_group_offsets; /* split offsets */
} pq_file_metrics;

typedef struct pq_writer pq_writer;

pq_writer *pq_writer_new(const pq_column_spec *cols, int n_cols, const pq_options *opt, pq_sink sink);
void pq_writer_free(pq_writer *w);

void pq_put_null(pq_writer *w, int col);
void pq_put_bool(pq_writer *w, int col, bool v);
void pq_put_i32(pq_writer *w, int col, int32_t v);
void pq_put_i64(pq_writer *w, int col, int64_t v);
void pq_put_float(pq_writer *w, int col, float v);
void pq_put_double(pq_writer *w, int col, double v);
void pq_put_bytes(pq_writer *w, int col, const void *p, uint32_t n);
/* A decimal's unscaled value (any precision); stored per the column's type. */
void pq_put_decimal(pq_writer *w, int col, __int128 unscaled);

/* `n` more complete rows; may cut a row group. 0, or -1 when the sink failed. */
int pq_end_rows(pq_writer *w, uint32_t n);
/* Cut the current row group now (memory pressure). 0 or -1. */
int pq_flush_row_group(pq_writer *w);
/* Memory held for the current row group (pages, dictionaries, raw values). */
int64_t pq_buffered_bytes(const pq_writer *w);
/* Bytes already handed to the sink plus an estimate of the buffered part. */
int64_t pq_estimated_size(const pq_writer *w);
int64_t pq_num_rows(const pq_writer *w);
/* Flushes, writes the footer, fills `m` (free with pq_file_metrics_clear). 0 or -1. */
int pq_writer_close(pq_writer *w, pq_file_metrics *m);
void pq_file_metrics_clear(pq_file_metrics *m);

#endif
