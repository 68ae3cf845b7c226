/*
 * Reading the Arrow C Data Interface struct arrays that batches carry: one
 * child per field, validity bitmaps, offsets, and the struct's own offset.
 * Values are handed straight to the Parquet writer, column by column, for a
 * list of row indices (the rows of one partition).
 */
#ifndef ECF_ICEBERG_ARROW_COLUMNS_H
#define ECF_ICEBERG_ARROW_COLUMNS_H

#include "iceberg_schema.h"
#include "parquet_writer.h"
#include "partition.h"

#include <ecflow/plugin.h>

typedef enum {
    AC_UTF8,
    AC_LARGE_UTF8,
    AC_I64,
    AC_I32,
    AC_F64,
    AC_F32,
    AC_BOOL,
    AC_DATE32,
    AC_TS_US,
    AC_DEC128,
    AC_BINARY,
} arrow_kind;

bool arrow_kind_of(const char *format, arrow_kind *k);

static inline bool arrow_valid(const struct ArrowArray *a, int64_t i)
{
    const uint8_t *v = a->buffers[0];
    if (!v || a->null_count == 0)
        return true;
    i += a->offset;
    return (v[i >> 3] >> (i & 7)) & 1;
}

/* Appends rows[0..n) (indices into the parent struct, whose offset is
 * `parent_offset`) of `col` into Parquet column `pq_col`, converting to
 * `to` (e.g. int32 into a long column). */
void arrow_append_column(pq_writer *w, int pq_col, const struct ArrowArray *col, arrow_kind kind, int64_t parent_offset,
                         const uint32_t *rows, uint32_t n, ice_type to);

/* The value of one cell as a partition source value (before the transform). */
void arrow_cell(const struct ArrowArray *col, arrow_kind kind, int64_t index, part_value *out);

#endif
