/*
 * A Parquet reader for flat schemas (no nesting, no repetition), written for
 * compaction: it reads a whole file from a memory buffer and decodes one
 * column chunk of one row group at a time, so memory is bounded by the largest
 * decoded column chunk (and capped by pq_reader_limits), never by the file.
 *
 * Supported: data pages v1 and v2; PLAIN, PLAIN_DICTIONARY / RLE_DICTIONARY,
 * RLE (booleans, as Arrow writes them in v2 pages); RLE/bit-packed hybrid
 * definition levels; codecs UNCOMPRESSED, SNAPPY, GZIP, ZSTD; physical types
 * BOOLEAN, INT32, INT64, FLOAT, DOUBLE, BYTE_ARRAY, FIXED_LEN_BYTE_ARRAY.
 * Refused with PQ_READ_UNSUPPORTED: nested or repeated schemas, DELTA_* and
 * BYTE_STREAM_SPLIT encodings, LZO/BROTLI/LZ4 codecs, INT96, encryption,
 * column chunks in other files.
 *
 * The input is untrusted: every length, count and offset is checked, and a
 * corrupt file gives PQ_READ_CORRUPT with a message naming the file, the
 * column and what is wrong -- never a crash or an allocation past the limits.
 *
 * Usage:
 *   char err[256];
 *   pq_reader *r;
 *   if (pq_reader_open(buf, len, "data/00001.parquet", NULL, &r, err, sizeof err) != PQ_READ_OK) ...
 *   pq_column_data d = {0};
 *   for (int g = 0; g < pq_reader_num_row_groups(r); g++)
 *       for (int c = 0; c < pq_reader_num_columns(r); c++)
 *           if (pq_reader_read_chunk(r, g, c, &d, err, sizeof err) != PQ_READ_OK) ...
 *   pq_column_data_free(&d);
 *   pq_reader_free(r);
 */
#ifndef ECF_ICEBERG_PARQUET_READER_H
#define ECF_ICEBERG_PARQUET_READER_H

#include "byte_buf.h"
#include "iceberg_schema.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    PQ_READ_OK = 0,
    PQ_READ_CORRUPT = -1,     /* the file contradicts itself or the format */
    PQ_READ_UNSUPPORTED = -2, /* valid Parquet this reader does not handle */
    PQ_READ_LIMIT = -3,       /* decoding would pass a pq_reader_limits cap */
    PQ_WRITE_FAILED = -4,     /* pq_rewrite: the output sink refused bytes */
} pq_read_status;

/* Parquet physical types (parquet.thrift Type). */
enum {
    PQ_BOOLEAN = 0,
    PQ_INT32 = 1,
    PQ_INT64 = 2,
    PQ_INT96 = 3,
    PQ_FLOAT = 4,
    PQ_DOUBLE = 5,
    PQ_BYTE_ARRAY = 6,
    PQ_FIXED_LEN_BYTE_ARRAY = 7,
};

typedef struct {
    int64_t max_page_bytes;   /* decompressed size of one page; default 256 MiB */
    int64_t max_chunk_bytes;  /* decoded column chunk incl. dictionary; default 1 GiB (<= 4 GiB) */
    int64_t max_footer_bytes; /* default 16 MiB; its structures may take 8x that + 1 MiB */
} pq_reader_limits;

typedef struct {
    char *name;
    int field_id; /* -1 when the schema element has none */
    int ptype;    /* PQ_BOOLEAN ... */
    int type_len; /* FIXED_LEN_BYTE_ARRAY only */
    bool required;
    /*
     * The Iceberg type these values carry, from the logical / converted
     * type (has_ice false when there is none, e.g. UUID or unsigned ints).
     * ts_scale: multiply INT64 timestamp values by this to get micros
     * (1000 for MILLIS, 1 otherwise).
     */
    bool has_ice;
    ice_type ice;
    int64_t ts_scale;
} pq_reader_column;

/*
 * One decoded column chunk. valid[i] says whether row i has a value; the
 * values of the non-null rows follow densely, in row order:
 *   BOOLEAN: u8 (0/1) per value       INT32/FLOAT: 4 bytes   INT64/DOUBLE: 8 bytes
 *   FIXED_LEN_BYTE_ARRAY: type_len bytes per value
 *   BYTE_ARRAY: value k is bytes[offsets[k] .. offsets[k+1])
 * Reuse one pq_column_data across calls; its buffers are kept and grown.
 */
typedef struct {
    int64_t n_rows, n_nulls, n_values;
    int dict_pages, plain_pages; /* data pages by value encoding (tests, diagnostics) */
    uint8_t *valid;
    uint8_t *fixed;
    uint32_t *offsets;
    uint8_t *bytes;
    /* capacities (internal) */
    size_t valid_cap, fixed_cap, offsets_cap, bytes_cap, bytes_len;
} pq_column_data;

typedef struct pq_reader pq_reader;

/*
 * Parses the footer of `data` (the whole file; it must outlive the reader).
 * `file` names the file in error messages. `lim` may be NULL for defaults.
 * On success *out is set; otherwise err says why and nothing is allocated.
 */
pq_read_status pq_reader_open(const uint8_t *data, size_t size, const char *file, const pq_reader_limits *lim,
                              pq_reader **out, char *err, size_t errcap);
void pq_reader_free(pq_reader *r);

int64_t pq_reader_num_rows(const pq_reader *r);
int pq_reader_num_row_groups(const pq_reader *r);
int64_t pq_reader_row_group_rows(const pq_reader *r, int rg);
int pq_reader_num_columns(const pq_reader *r);
const pq_reader_column *pq_reader_column_at(const pq_reader *r, int col);
/* The column with this field id, or -1. */
int pq_reader_find_field_id(const pq_reader *r, int field_id);

/* Decodes column `col` of row group `rg` into `out` (overwritten). */
pq_read_status pq_reader_read_chunk(pq_reader *r, int rg, int col, pq_column_data *out, char *err, size_t errcap);

void pq_column_data_free(pq_column_data *d);

/* Formats the reason into err (when given) and returns st: one line per failure site. */
pq_read_status pq_fail(pq_read_status st, char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * libFuzzer-style entry: opens `data` as a Parquet file with small limits
 * and decodes every chunk. Always returns 0; any crash, leak or sanitizer
 * report is the bug. Wrap with LLVMFuzzerTestOneInput in a fuzz target.
 */
int pq_reader_fuzz_one(const uint8_t *data, size_t size);

#endif
