/*
 * pq_rewrite (see parquet_rewrite.h): decode each input column chunk with
 * pq_reader, put its values into pq_writer typed as the output column wants.
 */
#include "parquet_rewrite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int in_col; /* input column, -1: absent in this file (nulls) */
} col_map;

static const char *ptype_name(int t)
{
    static const char *names[] = {"BOOLEAN", "INT32",  "INT64",      "INT96",
                                  "FLOAT",   "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"};
    return t >= 0 && t <= 7 ? names[t] : "unknown";
}

/* Does the input column's physical type carry values of its Iceberg type
 * the way the conversions in put_chunk expect? */
static bool physical_fits(const pq_reader_column *c)
{
    switch (c->ice.id) {
    case ICE_BOOLEAN: return c->ptype == PQ_BOOLEAN;
    case ICE_INT:
    case ICE_DATE: return c->ptype == PQ_INT32;
    case ICE_LONG:
    case ICE_TIMESTAMP:
    case ICE_TIMESTAMPTZ: return c->ptype == PQ_INT64;
    case ICE_FLOAT: return c->ptype == PQ_FLOAT;
    case ICE_DOUBLE: return c->ptype == PQ_DOUBLE;
    case ICE_STRING:
    case ICE_BINARY: return c->ptype == PQ_BYTE_ARRAY;
    case ICE_DECIMAL:
        return c->ptype == PQ_INT32 || c->ptype == PQ_INT64 || c->ptype == PQ_BYTE_ARRAY ||
               (c->ptype == PQ_FIXED_LEN_BYTE_ARRAY && c->type_len <= 16);
    }
    return false;
}

static pq_read_status map_columns(const pq_reader *r, const char *file, const pq_column_spec *cols, int n_cols,
                                  col_map *map, char *err, size_t errcap)
{
    for (int i = 0; i < pq_reader_num_columns(r); i++) {
        const pq_reader_column *c = pq_reader_column_at(r, i);
        if (c->field_id < 0)
            return pq_fail(PQ_READ_UNSUPPORTED, err, errcap, "%s: column '%s' has no field_id (not an Iceberg file)",
                           file, c->name);
    }
    for (int j = 0; j < n_cols; j++) {
        const pq_column_spec *s = &cols[j];
        int i = pq_reader_find_field_id(r, s->field_id);
        map[j].in_col = i;
        if (i < 0) {
            if (s->required)
                return pq_fail(PQ_READ_UNSUPPORTED, err, errcap,
                               "%s: required column '%s' (field id %d) is missing from the file", file, s->name,
                               s->field_id);
            continue;
        }
        const pq_reader_column *c = pq_reader_column_at(r, i);
        char a[48], b[48];
        if (!c->has_ice || !physical_fits(c))
            return pq_fail(PQ_READ_UNSUPPORTED, err, errcap,
                           "%s: column '%s' (field id %d): its Parquet type (%s with its annotation) maps to no "
                           "Iceberg type compaction writes (e.g. uuid, fixed, unsigned, time, nanosecond timestamps)",
                           file, c->name, s->field_id, ptype_name(c->ptype));
        if (!ice_type_writable(s->type, c->ice))
            return pq_fail(PQ_READ_UNSUPPORTED, err, errcap,
                           "%s: column '%s' (field id %d) is %s in the file but %s in the table", file, c->name,
                           s->field_id, ice_type_str(c->ice, a, sizeof a), ice_type_str(s->type, b, sizeof b));
    }
    return PQ_READ_OK;
}

pq_read_status pq_rewrite_check(const pq_input *in, const pq_column_spec *cols, int n_cols, const pq_reader_limits *lim,
                                char *err, size_t errcap)
{
    pq_reader *r;
    pq_read_status st = pq_reader_open(in->data, in->size, in->name, lim, &r, err, errcap);
    if (st != PQ_READ_OK)
        return st;
    col_map *map = calloc((size_t)n_cols + 1, sizeof *map);
    st = map_columns(r, in->name, cols, n_cols, map, err, errcap);
    free(map);
    pq_reader_free(r);
    return st;
}

/* ------------------------------------------------------------ values */

static __int128 pow10_128(int p)
{
    __int128 v = 1;
    for (int i = 0; i < p; i++)
        v *= 10;
    return v;
}

/* A big-endian two's complement integer of 1..16 bytes. */
static __int128 be_to_int128(const uint8_t *p, size_t n)
{
    unsigned __int128 u = (p[0] & 0x80) ? ~(unsigned __int128)0 : 0;
    for (size_t i = 0; i < n; i++)
        u = (u << 8) | p[i];
    return (__int128)u;
}

static int32_t rd_i32(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static int64_t rd_i64(const uint8_t *p)
{
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

typedef struct {
    pq_writer *w;
    int col;
    const pq_column_spec *spec;
    const pq_reader_column *in;
    const pq_column_data *d;
    const char *file;
    char *err;
    size_t errcap;
} put_ctx;

static pq_read_status put_decimals(const put_ctx *x)
{
    const pq_column_data *d = x->d;
    __int128 lim = pow10_128(x->spec->type.precision);
    int64_t k = 0;
    for (int64_t i = 0; i < d->n_rows; i++) {
        if (!d->valid[i]) {
            pq_put_null(x->w, x->col);
            continue;
        }
        __int128 v;
        switch (x->in->ptype) {
        case PQ_INT32: v = rd_i32(d->fixed + k * 4); break;
        case PQ_INT64: v = rd_i64(d->fixed + k * 8); break;
        case PQ_FIXED_LEN_BYTE_ARRAY:
            v = be_to_int128(d->fixed + (size_t)k * (size_t)x->in->type_len, (size_t)x->in->type_len);
            break;
        default: {
            uint32_t off = d->offsets[k], n = d->offsets[k + 1] - off;
            if (n < 1 || n > 16)
                return pq_fail(PQ_READ_CORRUPT, x->err, x->errcap, "%s: column '%s': a %u byte decimal", x->file,
                               x->in->name, n);
            v = be_to_int128(d->bytes + off, n);
        }
        }
        k++;
        if (v >= lim || v <= -lim)
            return pq_fail(PQ_READ_CORRUPT, x->err, x->errcap, "%s: column '%s': a decimal has more than %d digits",
                           x->file, x->in->name, x->spec->type.precision);
        pq_put_decimal(x->w, x->col, v);
    }
    return PQ_READ_OK;
}

/* Puts one decoded input chunk into output column x->col. */
static pq_read_status put_chunk(const put_ctx *x)
{
    const pq_column_data *d = x->d;
    pq_writer *w = x->w;
    int col = x->col;
    if (x->spec->required && d->n_nulls)
        return pq_fail(PQ_READ_CORRUPT, x->err, x->errcap, "%s: column '%s' holds nulls but '%s' is required", x->file,
                       x->in->name, x->spec->name);
    if (x->spec->type.id == ICE_DECIMAL)
        return put_decimals(x);
    ice_type_id out = x->spec->type.id;
    int64_t scale = x->in->ts_scale;
    int64_t k = 0;
    for (int64_t i = 0; i < d->n_rows; i++) {
        if (!d->valid[i]) {
            pq_put_null(w, col);
            continue;
        }
        switch (x->in->ptype) {
        case PQ_BOOLEAN: pq_put_bool(w, col, d->fixed[k] != 0); break;
        case PQ_INT32:
            if (out == ICE_LONG)
                pq_put_i64(w, col, rd_i32(d->fixed + k * 4));
            else
                pq_put_i32(w, col, rd_i32(d->fixed + k * 4));
            break;
        case PQ_INT64: {
            int64_t v = rd_i64(d->fixed + k * 8);
            if (scale != 1 && __builtin_mul_overflow(v, scale, &v))
                return pq_fail(PQ_READ_CORRUPT, x->err, x->errcap, "%s: column '%s': a timestamp out of range", x->file,
                               x->in->name);
            pq_put_i64(w, col, v);
            break;
        }
        case PQ_FLOAT: {
            float f;
            memcpy(&f, d->fixed + k * 4, 4);
            if (out == ICE_DOUBLE)
                pq_put_double(w, col, (double)f);
            else
                pq_put_float(w, col, f);
            break;
        }
        case PQ_DOUBLE: {
            double v;
            memcpy(&v, d->fixed + k * 8, 8);
            pq_put_double(w, col, v);
            break;
        }
        case PQ_BYTE_ARRAY: pq_put_bytes(w, col, d->bytes + d->offsets[k], d->offsets[k + 1] - d->offsets[k]); break;
        default:
            return pq_fail(PQ_READ_UNSUPPORTED, x->err, x->errcap, "%s: column '%s': physical type %d", x->file,
                           x->in->name, x->in->ptype);
        }
        k++;
    }
    return PQ_READ_OK;
}

static pq_read_status rewrite_row_group(pq_writer *w, pq_reader *r, int rg, const pq_input *in,
                                        const pq_column_spec *cols, int n_cols, const col_map *map, pq_column_data *d,
                                        char *err, size_t errcap)
{
    int64_t rows = pq_reader_row_group_rows(r, rg);
    if (rows > UINT32_MAX)
        return pq_fail(PQ_READ_LIMIT, err, errcap, "%s: row group %d has %lld rows", in->name, rg, (long long)rows);
    for (int j = 0; j < n_cols; j++) {
        if (map[j].in_col < 0) {
            for (int64_t i = 0; i < rows; i++)
                pq_put_null(w, j);
            continue;
        }
        pq_read_status st = pq_reader_read_chunk(r, rg, map[j].in_col, d, err, errcap);
        if (st != PQ_READ_OK)
            return st;
        put_ctx x = {.w = w,
                     .col = j,
                     .spec = &cols[j],
                     .in = pq_reader_column_at(r, map[j].in_col),
                     .d = d,
                     .file = in->name,
                     .err = err,
                     .errcap = errcap};
        if ((st = put_chunk(&x)) != PQ_READ_OK)
            return st;
    }
    if (pq_end_rows(w, (uint32_t)rows) != 0)
        return pq_fail(PQ_WRITE_FAILED, err, errcap, "writing the compacted file failed");
    return PQ_READ_OK;
}

struct pq_rewriter {
    pq_column_spec *cols;
    int n_cols;
    pq_reader_limits lim;
    bool has_lim, failed;
    int inputs;
    pq_writer *w;
    col_map *map;
    pq_column_data d;
};

pq_rewriter *pq_rewriter_new(const pq_column_spec *cols, int n_cols, const pq_options *opt, pq_sink sink,
                             const pq_reader_limits *lim)
{
    pq_rewriter *rw = calloc(1, sizeof *rw);
    rw->cols = calloc((size_t)n_cols + 1, sizeof *rw->cols);
    memcpy(rw->cols, cols, sizeof *cols * (size_t)n_cols);
    rw->n_cols = n_cols;
    if (lim) {
        rw->lim = *lim;
        rw->has_lim = true;
    }
    rw->w = pq_writer_new(cols, n_cols, opt, sink);
    rw->map = calloc((size_t)n_cols + 1, sizeof *rw->map);
    return rw;
}

pq_read_status pq_rewriter_add(pq_rewriter *rw, const pq_input *in, char *err, size_t errcap)
{
    if (rw->failed)
        return pq_fail(PQ_WRITE_FAILED, err, errcap, "the compacted file already failed");
    pq_reader *r;
    pq_read_status st = pq_reader_open(in->data, in->size, in->name, rw->has_lim ? &rw->lim : NULL, &r, err, errcap);
    if (st != PQ_READ_OK)
        return st;
    st = map_columns(r, in->name, rw->cols, rw->n_cols, rw->map, err, errcap);
    if (st != PQ_READ_OK) {
        pq_reader_free(r);
        return st; /* refused before writing: the rewriter stays usable */
    }
    for (int g = 0; g < pq_reader_num_row_groups(r) && st == PQ_READ_OK; g++)
        st = rewrite_row_group(rw->w, r, g, in, rw->cols, rw->n_cols, rw->map, &rw->d, err, errcap);
    pq_reader_free(r);
    if (st != PQ_READ_OK)
        rw->failed = true;
    else
        rw->inputs++;
    return st;
}

bool pq_rewriter_failed(const pq_rewriter *rw) { return rw->failed; }
int64_t pq_rewriter_num_rows(const pq_rewriter *rw) { return pq_num_rows(rw->w); }

pq_read_status pq_rewriter_finish(pq_rewriter *rw, pq_file_metrics *metrics, char *err, size_t errcap)
{
    memset(metrics, 0, sizeof *metrics);
    if (rw->failed)
        return pq_fail(PQ_WRITE_FAILED, err, errcap, "the compacted file failed earlier");
    if (rw->inputs == 0)
        return pq_fail(PQ_READ_UNSUPPORTED, err, errcap, "no input was added to the compacted file");
    if (pq_writer_close(rw->w, metrics) != 0) {
        rw->failed = true;
        return pq_fail(PQ_WRITE_FAILED, err, errcap, "writing the compacted file failed");
    }
    return PQ_READ_OK;
}

void pq_rewriter_free(pq_rewriter *rw)
{
    if (!rw)
        return;
    pq_writer_free(rw->w);
    pq_column_data_free(&rw->d);
    free(rw->map);
    free(rw->cols);
    free(rw);
}

pq_read_status pq_rewrite(const pq_input *inputs, int n_inputs, const pq_column_spec *cols, int n_cols,
                          const pq_options *opt, pq_sink sink, const pq_reader_limits *lim, pq_file_metrics *metrics,
                          char *err, size_t errcap)
{
    memset(metrics, 0, sizeof *metrics);
    if (n_inputs < 1)
        return pq_fail(PQ_READ_UNSUPPORTED, err, errcap, "no input files to compact");
    for (int f = 0; f < n_inputs; f++) {
        pq_read_status st = pq_rewrite_check(&inputs[f], cols, n_cols, lim, err, errcap);
        if (st != PQ_READ_OK)
            return st;
    }
    pq_rewriter *rw = pq_rewriter_new(cols, n_cols, opt, sink, lim);
    pq_read_status st = PQ_READ_OK;
    for (int f = 0; f < n_inputs && st == PQ_READ_OK; f++)
        st = pq_rewriter_add(rw, &inputs[f], err, errcap);
    if (st == PQ_READ_OK)
        st = pq_rewriter_finish(rw, metrics, err, errcap);
    pq_rewriter_free(rw);
    return st;
}
