/*
 * Column sets: the buffers of one output batch, laid out as Arrow's C Data
 * Interface wants them (validity bitmaps, int32 offsets + one data buffer
 * per string column, fixed-width values otherwise), and a pool that reuses
 * them.
 *
 * A stage takes a set from its pool per output batch, writes rows into it,
 * and exports it as a struct ArrowArray that it moves onto the batch. The
 * array's release callback, which runs on whichever thread drops the batch
 * last (usually a sink's), gives the set back to the pool: buffers keep
 * their capacity, so a pipeline in steady state allocates nothing per event
 * or per batch. The pool is reference-counted by the stage and by every set
 * out in the world, so a release after the stage was destroyed is safe.
 *
 * Rows are written in place: row `r` of every column is (re)written while an
 * event is validated, and only tv_columns_commit_row() makes it count, so a
 * rejected event leaves nothing behind and needs no undo.
 */
#ifndef ECF_TV_COLUMNS_H
#define ECF_TV_COLUMNS_H

#include <ecflow/plugin.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    TV_COL_UTF8 = 0,
    TV_COL_I64, /* int64, timestamp[us]                 */
    TV_COL_F64,
    TV_COL_BOOL,
    TV_COL_D128, /* decimal128, 16 bytes little-endian    */
    TV_COL_I32,  /* date32                                */
} tv_col_kind;

typedef struct {
    tv_col_kind kind;
    bool nullable;
    uint8_t *validity; /* bitmap, cap_rows bits (nullable columns only) */
    uint8_t *values;   /* fixed width values, or int32 offsets (cap_rows+1) */
    uint8_t *data;     /* UTF8: bytes                                   */
    size_t data_cap;
} tv_column;

typedef struct tv_pool tv_pool;
typedef struct tv_columns tv_columns;

struct tv_columns {
    tv_pool *pool;
    uint32_t n_cols;
    tv_column *cols;
    uint32_t rows; /* committed rows                 */
    uint32_t cap_rows;
    bool oom;          /* a buffer could not grow        */
    uint64_t in_bytes; /* payload bytes of the committed rows: bounds
                              every string column's data        */
    /* export */
    _Atomic int refs; /* parent + children not yet released */
    struct ArrowArray *child_arrays;
    struct ArrowArray **child_ptrs;
    const void **buffers; /* 3 per child + 1 for the struct */
    tv_columns *next_free;
};

/* kinds[i], nullable[i] describe column i; copied. keep: sets kept idle. */
tv_pool *tv_pool_new(uint32_t n_cols, const tv_col_kind *kinds, const bool *nullable, uint32_t keep);
/* The stage lets go of its pool; sets still out return and are freed. */
void tv_pool_close(tv_pool *p);

/* An empty set (rows = 0) with room for at least `rows` rows. NULL on OOM. */
tv_columns *tv_pool_take(tv_pool *p, uint32_t rows);
/* Back to the pool without exporting (e.g. no valid row in the batch). */
void tv_columns_give_back(tv_columns *c);

/* Exports the committed rows as a struct array; the set belongs to the
 * array until its release. */
void tv_columns_export(tv_columns *c, struct ArrowArray *out);

/* Sets the pool holds right now, and sets out in the world (for tests). */
uint32_t tv_pool_idle(tv_pool *p);
uint32_t tv_pool_out(tv_pool *p);

/* ---------------------------------------------------------- row writers */

static inline void tv_col_valid(tv_column *c, uint32_t row, bool valid)
{
    if (!c->nullable)
        return;
    if (valid)
        c->validity[row >> 3] |= (uint8_t)(1u << (row & 7));
    else
        c->validity[row >> 3] &= (uint8_t) ~(1u << (row & 7));
}

static inline void tv_col_i64(tv_column *c, uint32_t row, int64_t v)
{
    memcpy(c->values + (size_t)row * 8, &v, 8);
    tv_col_valid(c, row, true);
}

static inline void tv_col_f64(tv_column *c, uint32_t row, double v)
{
    memcpy(c->values + (size_t)row * 8, &v, 8);
    tv_col_valid(c, row, true);
}

static inline void tv_col_i32(tv_column *c, uint32_t row, int32_t v)
{
    memcpy(c->values + (size_t)row * 4, &v, 4);
    tv_col_valid(c, row, true);
}

static inline void tv_col_d128(tv_column *c, uint32_t row, __int128 v)
{
    memcpy(c->values + (size_t)row * 16, &v, 16); /* x86-64 / aarch64: little-endian */
    tv_col_valid(c, row, true);
}

static inline void tv_col_bool(tv_column *c, uint32_t row, bool v)
{
    if (v)
        c->values[row >> 3] |= (uint8_t)(1u << (row & 7));
    else
        c->values[row >> 3] &= (uint8_t) ~(1u << (row & 7));
    tv_col_valid(c, row, true);
}

static inline int32_t tv_col_offset(const tv_column *c, uint32_t row)
{
    int32_t o;
    memcpy(&o, c->values + (size_t)row * 4, 4);
    return o;
}

static inline void tv_col_set_offset(tv_column *c, uint32_t row, int32_t o)
{
    memcpy(c->values + (size_t)row * 4, &o, 4);
}

/* Room for `more` bytes after the row's start in a UTF8 column. False when
 * the column would pass 2 GiB (int32 offsets) or, with set->oom, when
 * memory ran out. */
bool tv_col_reserve(tv_columns *set, tv_column *c, uint32_t row, size_t more);

/* UTF8 value of row `row`, replacing whatever the row held. */
static inline bool tv_col_str(tv_columns *set, tv_column *c, uint32_t row, const char *s, size_t len)
{
    int32_t start = tv_col_offset(c, row);
    if ((size_t)start + len > c->data_cap && !tv_col_reserve(set, c, row, len))
        return false;
    if (len)
        memcpy(c->data + start, s, len);
    tv_col_set_offset(c, row + 1, start + (int32_t)len);
    tv_col_valid(c, row, true);
    return true;
}

static inline void tv_col_null(tv_column *c, uint32_t row)
{
    if (c->kind == TV_COL_UTF8)
        tv_col_set_offset(c, row + 1, tv_col_offset(c, row));
    else if (c->kind == TV_COL_BOOL)
        c->values[row >> 3] &= (uint8_t) ~(1u << (row & 7));
    else {
        size_t w = c->kind == TV_COL_D128 ? 16 : c->kind == TV_COL_I32 ? 4 : 8;
        memset(c->values + (size_t)row * w, 0, w);
    }
    tv_col_valid(c, row, false);
}

/* Bytes in a UTF8 column's data once the committed rows are counted. */
static inline size_t tv_col_bytes(const tv_column *c, uint32_t rows) { return (size_t)tv_col_offset(c, rows); }

#endif /* ECF_TV_COLUMNS_H */
