/*
 * Parquet writer (see parquet_writer.h). Layout of a file, per the Parquet
 * format spec: "PAR1", then per row group and per column one column chunk
 * (an optional dictionary page, then data pages), then the FileMetaData in
 * Thrift compact protocol, its 4-byte little-endian length, and "PAR1".
 *
 * Data page v1 body: definition levels (only for optional columns; RLE/
 * bit-packed hybrid, bit width 1, prefixed by their 4-byte length), then the
 * values: PLAIN, or RLE_DICTIONARY (1 byte bit width + hybrid-encoded
 * indices). The whole body is compressed as one block.
 *
 * Dictionary encoding is tried for strings and binary: the first page of each
 * column chunk decides whether it pays (dictionary + indices smaller than
 * PLAIN); a dictionary that outgrows dict_size_limit ends the dictionary
 * pages of that chunk and the rest of the chunk is PLAIN.
 */
#include "parquet_writer.h"
#include "iceberg_bounds.h"
#include "thrift_compact.h"

#include <math.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* Parquet enums (parquet.thrift) */
enum { T_BOOLEAN = 0, T_INT32 = 1, T_INT64 = 2, T_FLOAT = 4, T_DOUBLE = 5, T_BYTE_ARRAY = 6, T_FLBA = 7 };
enum { REP_REQUIRED = 0, REP_OPTIONAL = 1 };
enum { ENC_PLAIN = 0, ENC_RLE = 3, ENC_RLE_DICTIONARY = 8 };
enum { PAGE_DATA = 0, PAGE_DICTIONARY = 2 };
enum { CT_UTF8 = 0, CT_DECIMAL = 5, CT_DATE = 6, CT_TIMESTAMP_MICROS = 10 };

#define MAX_STAT_BYTES 4096 /* longer string min/max are left out, never truncated */
#define MAX_PAGE_VALUES (1u << 20)

typedef struct {
    uint32_t off; /* of the value bytes in dict_plain (after the length prefix) */
    uint32_t len;
    uint32_t hash;
} dict_entry;

typedef struct {
    bool has;
    int64_t imin, imax;
    double dmin, dmax;
    __int128 qmin, qmax;
    byte_buf bmin, bmax;
    bool b_too_long; /* a string min/max candidate was too long to keep */
} stats;

typedef struct {
    int64_t chunk_start, data_page_offset, dict_page_offset; /* -1: none */
    int64_t uncompressed, compressed, num_values, null_count, nan_count;
    int dict_pages, dict_data_pages, plain_data_pages;
    bool has_minmax;
    byte_buf min_plain, max_plain;
} chunk_meta;

typedef struct {
    pq_column_spec spec;
    char *name;
    int ptype, type_len;

    /* current page */
    uint8_t *defs;
    uint32_t defs_n, defs_cap;
    uint32_t page_values, page_nulls;
    byte_buf plain;
    uint32_t *idx;
    uint32_t idx_n, idx_cap;
    uint64_t page_plain_bytes;

    /* dictionary of the current chunk */
    bool dict_enabled, dict_mode, dict_decided;
    byte_buf dict_plain;
    dict_entry *entries;
    uint32_t dict_n, entries_cap;
    uint32_t *slots;
    uint32_t slots_cap;

    /* current chunk */
    byte_buf chunk;
    int64_t chunk_uncompressed, chunk_values, chunk_nulls, chunk_nans;
    int chunk_dict_data_pages, chunk_plain_pages;
    stats cst;

    /* whole file */
    stats fst;
    int64_t file_compressed, file_values, file_nulls, file_nans;
} pq_col;

struct pq_writer {
    pq_options opt;
    char *created_by;
    pq_sink sink;
    bool failed;
    int64_t offset;
    int n_cols;
    pq_col *cols;
    int64_t rows_total, rows_in_group;
    /* finished row groups */
    chunk_meta *metas; /* n_groups * n_cols */
    int64_t *group_rows, *group_offsets, *group_uncompressed, *group_compressed;
    int n_groups, groups_cap;
    byte_buf scratch_u, scratch_c, scratch_lv;
    ZSTD_CCtx *zctx;
};

/* ------------------------------------------------------------ helpers */

static void sink_write(pq_writer *w, const void *p, size_t n)
{
    if (w->failed || n == 0)
        return;
    if (w->sink.write(w->sink.ctx, p, n) != 0)
        w->failed = true;
    w->offset += (int64_t)n;
}

static uint32_t hash_bytes(const uint8_t *p, uint32_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    while (n >= 8) {
        uint64_t k;
        memcpy(&k, p, 8);
        h = (h ^ k) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t k = 0;
    memcpy(&k, p, n);
    h = (h ^ k) * 0x94D049BB133111EBull;
    h ^= h >> 32;
    return (uint32_t)h;
}

static int bit_width(uint32_t max_value)
{
    int w = 0;
    while (max_value) {
        w++;
        max_value >>= 1;
    }
    return w ? w : 1;
}

static int bytes_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int c = n ? memcmp(a, b, n) : 0; /* an empty min/max has a NULL buffer: memcmp(NULL, .., 0) is UB */
    if (c)
        return c;
    return an < bn ? -1 : an > bn ? 1 : 0;
}

/*
 * RLE / bit-packed hybrid (Parquet Encodings.md): runs of >= 8 equal values
 * become RLE runs (varint count<<1, value in ceil(width/8) bytes); the rest
 * goes out in bit-packed groups of 8 (varint groups<<1|1, LSB-first packing).
 * Only the final group may be padded, which readers ignore by value count.
 */
static inline uint32_t hv(const uint8_t *u8, const uint32_t *u32, size_t i) { return u8 ? u8[i] : u32[i]; }

static size_t run_at(const uint8_t *u8, const uint32_t *u32, size_t i, size_t n)
{
    uint32_t v = hv(u8, u32, i);
    size_t j = i + 1;
    while (j < n && hv(u8, u32, j) == v)
        j++;
    return j - i;
}

static void hybrid_encode(byte_buf *out, const uint8_t *u8, const uint32_t *u32, size_t n, int width)
{
    size_t i = 0;
    int vbytes = (width + 7) / 8;
    while (i < n) {
        size_t r = run_at(u8, u32, i, n);
        if (r >= 8) {
            bb_uvarint(out, (uint64_t)r << 1);
            uint32_t v = hv(u8, u32, i);
            for (int b = 0; b < vbytes; b++)
                bb_byte(out, (uint8_t)(v >> (8 * b)));
            i += r;
            continue;
        }
        size_t start = i;
        do {
            i += 8;
            if (i >= n) {
                i = n;
                break;
            }
        } while (run_at(u8, u32, i, i + 8 <= n ? i + 8 : n) < 8);
        size_t count = i - start, groups = (count + 7) / 8;
        bb_uvarint(out, ((uint64_t)groups << 1) | 1);
        bb_reserve(out, groups * (size_t)width + 8);
        uint64_t acc = 0;
        int nbits = 0;
        for (size_t k = 0; k < groups * 8; k++) {
            uint64_t v = start + k < i ? hv(u8, u32, start + k) : 0;
            acc |= v << nbits;
            nbits += width;
            while (nbits >= 8) {
                out->data[out->len++] = (uint8_t)acc;
                acc >>= 8;
                nbits -= 8;
            }
        }
    }
}

/* ------------------------------------------------------------ stats */

static void stats_reset(stats *s)
{
    s->has = false;
    s->b_too_long = false;
    bb_reset(&s->bmin);
    bb_reset(&s->bmax);
}

static void stats_free(stats *s)
{
    bb_free(&s->bmin);
    bb_free(&s->bmax);
}

static void stats_int(stats *s, int64_t v)
{
    if (!s->has) {
        s->imin = s->imax = v;
        s->has = true;
    } else if (v < s->imin)
        s->imin = v;
    else if (v > s->imax)
        s->imax = v;
}

static void stats_double(stats *s, double v)
{
    if (isnan(v))
        return;
    if (!s->has) {
        s->dmin = s->dmax = v;
        s->has = true;
    } else {
        if (v < s->dmin || (v == 0 && s->dmin == 0 && signbit(v)))
            s->dmin = v;
        if (v > s->dmax || (v == 0 && s->dmax == 0 && !signbit(v)))
            s->dmax = v;
    }
}

static void stats_dec(stats *s, __int128 v)
{
    if (!s->has) {
        s->qmin = s->qmax = v;
        s->has = true;
    } else if (v < s->qmin)
        s->qmin = v;
    else if (v > s->qmax)
        s->qmax = v;
}

static void stats_bytes(stats *s, const uint8_t *p, size_t n)
{
    /* most values sit strictly inside the range by their first byte alone */
    if (s->has && n && s->bmin.len && p[0] > s->bmin.data[0] && p[0] < s->bmax.data[0])
        return;
    if (!s->has) {
        bb_reset(&s->bmin);
        bb_append(&s->bmin, p, n);
        bb_reset(&s->bmax);
        bb_append(&s->bmax, p, n);
        s->has = true;
        return;
    }
    if (bytes_cmp(p, n, s->bmin.data, s->bmin.len) < 0) {
        bb_reset(&s->bmin);
        bb_append(&s->bmin, p, n);
    } else if (bytes_cmp(p, n, s->bmax.data, s->bmax.len) > 0) {
        bb_reset(&s->bmax);
        bb_append(&s->bmax, p, n);
    }
}

static void stats_merge(stats *into, const stats *from, int ptype, const pq_col *c)
{
    if (!from->has)
        return;
    if (c->spec.type.id == ICE_FLOAT || c->spec.type.id == ICE_DOUBLE) {
        stats_double(into, from->dmin);
        stats_double(into, from->dmax);
    } else if (ptype == T_BYTE_ARRAY) {
        stats_bytes(into, from->bmin.data, from->bmin.len);
        stats_bytes(into, from->bmax.data, from->bmax.len);
    } else if (ptype == T_FLBA) {
        stats_dec(into, from->qmin);
        stats_dec(into, from->qmax);
    } else {
        stats_int(into, from->imin);
        stats_int(into, from->imax);
    }
}

/* ------------------------------------------------------------ setup */

static void physical_type(const pq_column_spec *s, int *ptype, int *type_len)
{
    *type_len = 0;
    switch (s->type.id) {
    case ICE_BOOLEAN: *ptype = T_BOOLEAN; break;
    case ICE_INT:
    case ICE_DATE: *ptype = T_INT32; break;
    case ICE_LONG:
    case ICE_TIMESTAMP:
    case ICE_TIMESTAMPTZ: *ptype = T_INT64; break;
    case ICE_FLOAT: *ptype = T_FLOAT; break;
    case ICE_DOUBLE: *ptype = T_DOUBLE; break;
    case ICE_STRING:
    case ICE_BINARY: *ptype = T_BYTE_ARRAY; break;
    case ICE_DECIMAL:
        if (s->type.precision <= 9)
            *ptype = T_INT32;
        else if (s->type.precision <= 18)
            *ptype = T_INT64;
        else {
            *ptype = T_FLBA;
            *type_len = ice_decimal_bytes(s->type.precision);
        }
        break;
    }
}

pq_writer *pq_writer_new(const pq_column_spec *cols, int n_cols, const pq_options *opt, pq_sink sink)
{
    pq_writer *w = calloc(1, sizeof *w);
    w->opt = *opt;
    w->created_by = strdup(opt->created_by ? opt->created_by : "ecflow");
    w->opt.created_by = w->created_by;
    if (w->opt.page_size <= 0)
        w->opt.page_size = 1 << 20;
    if (w->opt.row_group_size <= 0)
        w->opt.row_group_size = 128 << 20;
    if (w->opt.dict_size_limit <= 0)
        w->opt.dict_size_limit = 1 << 20;
    w->sink = sink;
    w->n_cols = n_cols;
    w->cols = calloc((size_t)n_cols, sizeof *w->cols);
    for (int i = 0; i < n_cols; i++) {
        pq_col *c = &w->cols[i];
        c->spec = cols[i];
        c->name = strdup(cols[i].name);
        c->spec.name = c->name;
        physical_type(&c->spec, &c->ptype, &c->type_len);
        c->dict_enabled = opt->dictionary && c->ptype == T_BYTE_ARRAY;
        c->dict_mode = c->dict_enabled;
    }
    if (w->opt.codec == PQ_CODEC_ZSTD)
        w->zctx = ZSTD_createCCtx();
    sink_write(w, "PAR1", 4);
    return w;
}

static void col_free(pq_col *c)
{
    free(c->name);
    free(c->defs);
    bb_free(&c->plain);
    free(c->idx);
    bb_free(&c->dict_plain);
    free(c->entries);
    free(c->slots);
    bb_free(&c->chunk);
    stats_free(&c->cst);
    stats_free(&c->fst);
}

void pq_writer_free(pq_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n_cols; i++)
        col_free(&w->cols[i]);
    free(w->cols);
    for (int i = 0; i < w->n_groups * w->n_cols; i++) {
        bb_free(&w->metas[i].min_plain);
        bb_free(&w->metas[i].max_plain);
    }
    free(w->metas);
    free(w->group_rows);
    free(w->group_offsets);
    free(w->group_uncompressed);
    free(w->group_compressed);
    bb_free(&w->scratch_u);
    bb_free(&w->scratch_c);
    bb_free(&w->scratch_lv);
    if (w->zctx)
        ZSTD_freeCCtx(w->zctx);
    free(w->created_by);
    free(w);
}

/* ------------------------------------------------------------ pages */

/* Compresses `in` into scratch_c; returns the bytes to write. */
static const byte_buf *compress(pq_writer *w, const byte_buf *in)
{
    byte_buf *out = &w->scratch_c;
    bb_reset(out);
    switch (w->opt.codec) {
    case PQ_CODEC_NONE: return in;
    case PQ_CODEC_SNAPPY: {
        size_t cap = snappy_max_compressed_length(in->len);
        bb_reserve(out, cap);
        size_t n = cap;
        if (snappy_compress((const char *)in->data, in->len, (char *)out->data, &n) != SNAPPY_OK)
            abort();
        out->len = n;
        return out;
    }
    case PQ_CODEC_ZSTD: {
        size_t cap = ZSTD_compressBound(in->len);
        bb_reserve(out, cap);
        size_t n = ZSTD_compressCCtx(w->zctx, out->data, cap, in->data, in->len, w->opt.zstd_level);
        if (ZSTD_isError(n))
            abort();
        out->len = n;
        return out;
    }
    }
    return in;
}

static void page_header(byte_buf *out, int type, int32_t usize, int32_t csize, int32_t num_values, int encoding)
{
    tc_writer t = {.out = out};
    tc_struct_begin(&t);
    tc_field_i32(&t, 1, type);
    tc_field_i32(&t, 2, usize);
    tc_field_i32(&t, 3, csize);
    if (type == PAGE_DATA) {
        tc_field_struct_begin(&t, 5);
        tc_field_i32(&t, 1, num_values);
        tc_field_i32(&t, 2, encoding);
        tc_field_i32(&t, 3, ENC_RLE);
        tc_field_i32(&t, 4, ENC_RLE);
        tc_struct_end(&t);
    } else {
        tc_field_struct_begin(&t, 7);
        tc_field_i32(&t, 1, num_values);
        tc_field_i32(&t, 2, encoding);
        tc_struct_end(&t);
    }
    tc_struct_end(&t);
}

static void dict_clear(pq_col *c)
{
    bb_reset(&c->dict_plain);
    c->dict_n = 0;
    if (c->slots)
        memset(c->slots, 0, sizeof(uint32_t) * c->slots_cap);
}

/* The first dictionary page of a chunk: does the dictionary pay? If not,
 * re-encode the page's values PLAIN and stay PLAIN for the chunk. */
static void decide_dictionary(pq_col *c)
{
    c->dict_decided = true;
    uint64_t dict_cost = c->dict_plain.len + (uint64_t)c->idx_n * (uint64_t)bit_width(c->dict_n - 1) / 8 + 1;
    if (dict_cost < c->page_plain_bytes)
        return;
    bb_reserve(&c->plain, c->page_plain_bytes);
    for (uint32_t i = 0; i < c->idx_n; i++) {
        const dict_entry *e = &c->entries[c->idx[i]];
        bb_u32le(&c->plain, e->len);
        bb_append(&c->plain, c->dict_plain.data + e->off, e->len);
    }
    c->idx_n = 0;
    c->dict_mode = false;
    c->dict_enabled = false; /* high cardinality: later chunks go PLAIN at once */
    dict_clear(c);
}

static void close_page(pq_writer *w, pq_col *c)
{
    if (c->page_values == 0)
        return;
    if (c->dict_mode && !c->dict_decided)
        decide_dictionary(c);
    byte_buf *u = &w->scratch_u;
    bb_reset(u);
    if (!c->spec.required) {
        byte_buf *lv = &w->scratch_lv;
        bb_reset(lv);
        hybrid_encode(lv, c->defs, NULL, c->defs_n, 1);
        bb_u32le(u, (uint32_t)lv->len);
        bb_append(u, lv->data, lv->len);
    }
    int encoding = ENC_PLAIN;
    if (c->dict_mode) {
        int bw = bit_width(c->dict_n - 1);
        bb_byte(u, (uint8_t)bw);
        hybrid_encode(u, NULL, c->idx, c->idx_n, bw);
        encoding = ENC_RLE_DICTIONARY;
        c->chunk_dict_data_pages++;
    } else if (c->ptype == T_BOOLEAN) {
        size_t n = c->plain.len;
        bb_reserve(u, (n + 7) / 8);
        for (size_t i = 0; i < n; i += 8) {
            uint8_t byte = 0;
            for (size_t k = 0; k < 8 && i + k < n; k++)
                byte |= (uint8_t)(c->plain.data[i + k] << k);
            u->data[u->len++] = byte;
        }
        c->chunk_plain_pages++;
    } else {
        bb_append(u, c->plain.data, c->plain.len);
        c->chunk_plain_pages++;
    }
    const byte_buf *body = compress(w, u);
    size_t before = c->chunk.len;
    page_header(&c->chunk, PAGE_DATA, (int32_t)u->len, (int32_t)body->len, (int32_t)c->page_values, encoding);
    size_t hlen = c->chunk.len - before;
    bb_append(&c->chunk, body->data, body->len);
    c->chunk_uncompressed += (int64_t)(hlen + u->len);
    c->chunk_values += c->page_values;
    c->chunk_nulls += c->page_nulls;
    c->page_values = c->page_nulls = 0;
    c->defs_n = 0;
    c->idx_n = 0;
    c->page_plain_bytes = 0;
    bb_reset(&c->plain);
}

static uint64_t page_bytes(const pq_col *c) { return c->dict_mode ? c->page_plain_bytes : c->plain.len; }

static inline void page_check(pq_writer *w, pq_col *c)
{
    if (page_bytes(c) >= (uint64_t)w->opt.page_size || c->page_values >= MAX_PAGE_VALUES)
        close_page(w, c);
}

/* ------------------------------------------------------------ values */

static inline void put_def(pq_col *c, uint8_t d)
{
    c->page_values++;
    if (c->spec.required)
        return;
    if (c->defs_n == c->defs_cap) {
        c->defs_cap = c->defs_cap ? c->defs_cap * 2 : 1024;
        c->defs = realloc(c->defs, c->defs_cap);
    }
    c->defs[c->defs_n++] = d;
}

void pq_put_null(pq_writer *w, int col)
{
    pq_col *c = &w->cols[col];
    put_def(c, 0);
    c->page_nulls++;
    page_check(w, c);
}

void pq_put_bool(pq_writer *w, int col, bool v)
{
    pq_col *c = &w->cols[col];
    put_def(c, 1);
    bb_byte(&c->plain, v ? 1 : 0);
    stats_int(&c->cst, v ? 1 : 0);
    page_check(w, c);
}

void pq_put_i32(pq_writer *w, int col, int32_t v)
{
    pq_col *c = &w->cols[col];
    put_def(c, 1);
    bb_u32le(&c->plain, (uint32_t)v);
    stats_int(&c->cst, v);
    page_check(w, c);
}

void pq_put_i64(pq_writer *w, int col, int64_t v)
{
    pq_col *c = &w->cols[col];
    put_def(c, 1);
    bb_u64le(&c->plain, (uint64_t)v);
    stats_int(&c->cst, v);
    page_check(w, c);
}

void pq_put_float(pq_writer *w, int col, float v)
{
    pq_col *c = &w->cols[col];
    put_def(c, 1);
    bb_append(&c->plain, &v, 4);
    if (isnan(v))
        c->chunk_nans++;
    stats_double(&c->cst, v);
    page_check(w, c);
}

void pq_put_double(pq_writer *w, int col, double v)
{
    pq_col *c = &w->cols[col];
    put_def(c, 1);
    bb_append(&c->plain, &v, 8);
    if (isnan(v))
        c->chunk_nans++;
    stats_double(&c->cst, v);
    page_check(w, c);
}

static void dict_grow(pq_col *c)
{
    uint32_t cap = c->slots_cap ? c->slots_cap * 2 : 1024;
    free(c->slots);
    c->slots = calloc(cap, sizeof(uint32_t));
    c->slots_cap = cap;
    for (uint32_t i = 0; i < c->dict_n; i++) {
        uint32_t s = c->entries[i].hash & (cap - 1);
        while (c->slots[s])
            s = (s + 1) & (cap - 1);
        c->slots[s] = i + 1;
    }
}

static uint32_t dict_index(pq_col *c, const uint8_t *p, uint32_t n, bool *added)
{
    if ((c->dict_n + 1) * 2 > c->slots_cap)
        dict_grow(c);
    uint32_t h = hash_bytes(p, n), mask = c->slots_cap - 1, s = h & mask;
    for (;;) {
        uint32_t e = c->slots[s];
        if (!e)
            break;
        const dict_entry *d = &c->entries[e - 1];
        if (d->hash == h && d->len == n && memcmp(c->dict_plain.data + d->off, p, n) == 0) {
            *added = false;
            return e - 1;
        }
        s = (s + 1) & mask;
    }
    if (c->dict_n == c->entries_cap) {
        c->entries_cap = c->entries_cap ? c->entries_cap * 2 : 256;
        c->entries = realloc(c->entries, sizeof(dict_entry) * c->entries_cap);
    }
    bb_u32le(&c->dict_plain, n);
    dict_entry *d = &c->entries[c->dict_n];
    d->off = (uint32_t)c->dict_plain.len;
    d->len = n;
    d->hash = h;
    bb_append(&c->dict_plain, p, n);
    c->slots[s] = ++c->dict_n;
    *added = true;
    return c->dict_n - 1;
}

void pq_put_bytes(pq_writer *w, int col, const void *p, uint32_t n)
{
    pq_col *c = &w->cols[col];
    put_def(c, 1);
    if (c->ptype == T_FLBA) { /* fixed-size: the caller's bytes are the value */
        bb_append(&c->plain, p, c->type_len);
        page_check(w, c);
        return;
    }
    if (c->dict_mode) {
        bool added;
        uint32_t i = dict_index(c, p, n, &added);
        if (c->idx_n == c->idx_cap) {
            c->idx_cap = c->idx_cap ? c->idx_cap * 2 : 1024;
            c->idx = realloc(c->idx, sizeof(uint32_t) * c->idx_cap);
        }
        c->idx[c->idx_n++] = i;
        c->page_plain_bytes += 4u + n;
        if (added)
            stats_bytes(&c->cst, p, n);
        if (c->dict_plain.len > (size_t)w->opt.dict_size_limit) {
            close_page(w, c); /* the last dictionary page of this chunk */
            c->dict_mode = false;
        } else
            page_check(w, c);
        return;
    }
    bb_u32le(&c->plain, n);
    bb_append(&c->plain, p, n);
    stats_bytes(&c->cst, p, n);
    page_check(w, c);
}

void pq_put_decimal(pq_writer *w, int col, __int128 v)
{
    pq_col *c = &w->cols[col];
    if (c->ptype == T_INT32) {
        pq_put_i32(w, col, (int32_t)v);
        return;
    }
    if (c->ptype == T_INT64) {
        pq_put_i64(w, col, (int64_t)v);
        return;
    }
    uint8_t be[16];
    for (int i = 0; i < c->type_len; i++)
        be[c->type_len - 1 - i] = (uint8_t)(v >> (8 * i));
    stats_dec(&c->cst, v);
    pq_put_bytes(w, col, be, (uint32_t)c->type_len);
}

/* ------------------------------------------------------------ row groups */

static void plain_stat(byte_buf *out, const pq_col *c, const stats *s, bool max)
{
    switch (c->ptype) {
    case T_BOOLEAN: bb_byte(out, (uint8_t)(max ? s->imax : s->imin)); break;
    case T_INT32: bb_u32le(out, (uint32_t)(int32_t)(max ? s->imax : s->imin)); break;
    case T_INT64: bb_u64le(out, (uint64_t)(max ? s->imax : s->imin)); break;
    case T_FLOAT: {
        float f = (float)(max ? s->dmax : s->dmin);
        if (f == 0)
            f = max ? 0.0f : -0.0f;
        bb_append(out, &f, 4);
        break;
    }
    case T_DOUBLE: {
        double d = max ? s->dmax : s->dmin;
        if (d == 0)
            d = max ? 0.0 : -0.0;
        bb_append(out, &d, 8);
        break;
    }
    case T_BYTE_ARRAY: {
        const byte_buf *b = max ? &s->bmax : &s->bmin;
        bb_append(out, b->data, b->len);
        break;
    }
    case T_FLBA: {
        __int128 v = max ? s->qmax : s->qmin;
        for (int i = c->type_len - 1; i >= 0; i--)
            bb_byte(out, (uint8_t)(v >> (8 * i)));
        break;
    }
    }
}

/* Between row groups a column holds no page, chunk or dictionary memory:
 * a writer whose partition is quiet costs next to nothing, and
 * pq_buffered_bytes() (what max_buffered_bytes is checked against) is what
 * the writer really holds. The buffers grow again by doubling. */
static void col_release(pq_col *c)
{
    bb_free(&c->chunk);
    bb_free(&c->plain);
    bb_free(&c->dict_plain);
    free(c->defs);
    free(c->idx);
    free(c->entries);
    free(c->slots);
    c->defs = NULL;
    c->idx = NULL;
    c->entries = NULL;
    c->slots = NULL;
    c->defs_cap = c->idx_cap = c->entries_cap = c->slots_cap = 0;
    c->defs_n = c->idx_n = c->dict_n = 0;
}

static void write_chunk(pq_writer *w, pq_col *c, chunk_meta *m)
{
    close_page(w, c);
    memset(m, 0, sizeof *m);
    m->chunk_start = w->offset;
    m->dict_page_offset = -1;
    int64_t dict_bytes = 0, dict_u = 0;
    if (c->chunk_dict_data_pages > 0) {
        const byte_buf *body = compress(w, &c->dict_plain);
        byte_buf h = {0};
        page_header(&h, PAGE_DICTIONARY, (int32_t)c->dict_plain.len, (int32_t)body->len, (int32_t)c->dict_n, ENC_PLAIN);
        m->dict_page_offset = w->offset;
        sink_write(w, h.data, h.len);
        sink_write(w, body->data, body->len);
        dict_bytes = (int64_t)(h.len + body->len);
        dict_u = (int64_t)(h.len + c->dict_plain.len);
        m->dict_pages = 1;
        bb_free(&h);
    }
    m->data_page_offset = w->offset;
    sink_write(w, c->chunk.data, c->chunk.len);
    m->compressed = dict_bytes + (int64_t)c->chunk.len;
    m->uncompressed = dict_u + c->chunk_uncompressed;
    m->num_values = c->chunk_values;
    m->null_count = c->chunk_nulls;
    m->nan_count = c->chunk_nans;
    m->dict_data_pages = c->chunk_dict_data_pages;
    m->plain_data_pages = c->chunk_plain_pages;
    if (c->cst.has &&
        !(c->ptype == T_BYTE_ARRAY && (c->cst.bmin.len > MAX_STAT_BYTES || c->cst.bmax.len > MAX_STAT_BYTES))) {
        m->has_minmax = true;
        plain_stat(&m->min_plain, c, &c->cst, false);
        plain_stat(&m->max_plain, c, &c->cst, true);
    }
    /* file-level metrics */
    stats_merge(&c->fst, &c->cst, c->ptype, c);
    c->file_compressed += m->compressed;
    c->file_values += m->num_values;
    c->file_nulls += m->null_count;
    c->file_nans += m->nan_count;
    /* next chunk */
    col_release(c);
    c->chunk_uncompressed = c->chunk_values = c->chunk_nulls = c->chunk_nans = 0;
    c->chunk_dict_data_pages = c->chunk_plain_pages = 0;
    stats_reset(&c->cst);
    dict_clear(c);
    c->dict_mode = c->dict_enabled;
    c->dict_decided = false;
}

int pq_flush_row_group(pq_writer *w)
{
    if (w->rows_in_group == 0)
        return w->failed ? -1 : 0;
    if (w->n_groups == w->groups_cap) {
        w->groups_cap = w->groups_cap ? w->groups_cap * 2 : 4;
        w->metas = realloc(w->metas, sizeof(chunk_meta) * (size_t)w->groups_cap * (size_t)w->n_cols);
        w->group_rows = realloc(w->group_rows, sizeof(int64_t) * (size_t)w->groups_cap);
        w->group_offsets = realloc(w->group_offsets, sizeof(int64_t) * (size_t)w->groups_cap);
        w->group_uncompressed = realloc(w->group_uncompressed, sizeof(int64_t) * (size_t)w->groups_cap);
        w->group_compressed = realloc(w->group_compressed, sizeof(int64_t) * (size_t)w->groups_cap);
    }
    int g = w->n_groups++;
    w->group_offsets[g] = w->offset;
    w->group_rows[g] = w->rows_in_group;
    int64_t u = 0, cz = 0;
    for (int i = 0; i < w->n_cols; i++) {
        chunk_meta *m = &w->metas[(size_t)g * (size_t)w->n_cols + (size_t)i];
        write_chunk(w, &w->cols[i], m);
        u += m->uncompressed;
        cz += m->compressed;
    }
    w->group_uncompressed[g] = u;
    w->group_compressed[g] = cz;
    w->rows_in_group = 0;
    bb_free(&w->scratch_u);
    bb_free(&w->scratch_c);
    bb_free(&w->scratch_lv);
    return w->failed ? -1 : 0;
}

int64_t pq_buffered_bytes(const pq_writer *w)
{
    /* capacities, not lengths: what the buffers hold in memory */
    int64_t n = (int64_t)(w->scratch_u.cap + w->scratch_c.cap + w->scratch_lv.cap);
    for (int i = 0; i < w->n_cols; i++) {
        const pq_col *c = &w->cols[i];
        n += (int64_t)(c->chunk.cap + c->plain.cap + c->dict_plain.cap + c->defs_cap) + (int64_t)c->idx_cap * 4 +
             (int64_t)c->entries_cap * (int64_t)sizeof(dict_entry) + (int64_t)c->slots_cap * 4;
    }
    return n;
}

static int64_t group_estimate(const pq_writer *w)
{
    int64_t n = 0;
    for (int i = 0; i < w->n_cols; i++) {
        const pq_col *c = &w->cols[i];
        int64_t page = c->dict_mode ? (int64_t)c->idx_n * bit_width(c->dict_n) / 8 : (int64_t)c->plain.len;
        n += (int64_t)c->chunk.len + page + (int64_t)c->dict_plain.len + c->defs_n / 8;
    }
    return n;
}

int64_t pq_estimated_size(const pq_writer *w) { return w->offset + group_estimate(w); }
int64_t pq_num_rows(const pq_writer *w) { return w->rows_total; }

int pq_end_rows(pq_writer *w, uint32_t n)
{
    w->rows_total += n;
    w->rows_in_group += n;
    /* By the file's bytes, or by the memory the group holds (max_buffered),
     * whichever comes first. */
    if (group_estimate(w) >= w->opt.row_group_size ||
        (w->opt.max_buffered > 0 && pq_buffered_bytes(w) >= w->opt.max_buffered))
        return pq_flush_row_group(w);
    return w->failed ? -1 : 0;
}

/* ------------------------------------------------------------ footer */

static void schema_element(tc_writer *t, const pq_col *c)
{
    tc_struct_begin(t);
    tc_field_i32(t, 1, c->ptype);
    if (c->ptype == T_FLBA)
        tc_field_i32(t, 2, c->type_len);
    tc_field_i32(t, 3, c->spec.required ? REP_REQUIRED : REP_OPTIONAL);
    tc_field_string(t, 4, c->spec.name);
    ice_type ty = c->spec.type;
    switch (ty.id) {
    case ICE_STRING:
        tc_field_i32(t, 6, CT_UTF8);
        tc_field_i32(t, 9, c->spec.field_id);
        tc_field_struct_begin(t, 10);
        tc_field_empty_struct(t, 1); /* STRING */
        tc_struct_end(t);
        break;
    case ICE_DATE:
        tc_field_i32(t, 6, CT_DATE);
        tc_field_i32(t, 9, c->spec.field_id);
        tc_field_struct_begin(t, 10);
        tc_field_empty_struct(t, 6); /* DATE */
        tc_struct_end(t);
        break;
    case ICE_TIMESTAMPTZ:
    case ICE_TIMESTAMP:
        /* TIMESTAMP_MICROS as a converted type means UTC-adjusted: only for tz. */
        if (ty.id == ICE_TIMESTAMPTZ)
            tc_field_i32(t, 6, CT_TIMESTAMP_MICROS);
        tc_field_i32(t, 9, c->spec.field_id);
        tc_field_struct_begin(t, 10);
        tc_field_struct_begin(t, 8); /* TIMESTAMP */
        tc_field_bool(t, 1, ty.id == ICE_TIMESTAMPTZ);
        tc_field_struct_begin(t, 2); /* TimeUnit */
        tc_field_empty_struct(t, 2); /* MICROS */
        tc_struct_end(t);
        tc_struct_end(t);
        tc_struct_end(t);
        break;
    case ICE_DECIMAL:
        tc_field_i32(t, 6, CT_DECIMAL);
        tc_field_i32(t, 7, ty.scale);
        tc_field_i32(t, 8, ty.precision);
        tc_field_i32(t, 9, c->spec.field_id);
        tc_field_struct_begin(t, 10);
        tc_field_struct_begin(t, 5); /* DECIMAL */
        tc_field_i32(t, 1, ty.scale);
        tc_field_i32(t, 2, ty.precision);
        tc_struct_end(t);
        tc_struct_end(t);
        break;
    default: tc_field_i32(t, 9, c->spec.field_id); break;
    }
    tc_struct_end(t);
}

static void column_chunk(tc_writer *t, const pq_writer *w, const pq_col *c, const chunk_meta *m)
{
    tc_struct_begin(t);
    tc_field_i64(t, 2, m->chunk_start); /* file_offset (deprecated; chunk start, as parquet-mr) */
    tc_field_struct_begin(t, 3);        /* ColumnMetaData */
    tc_field_i32(t, 1, c->ptype);
    int encs[3], n_encs = 0;
    if (m->dict_data_pages || m->plain_data_pages || m->dict_pages)
        encs[n_encs++] = ENC_PLAIN; /* dictionary page (PLAIN) or plain data pages */
    encs[n_encs++] = ENC_RLE;       /* levels */
    if (m->dict_data_pages)
        encs[n_encs++] = ENC_RLE_DICTIONARY;
    tc_field_list_begin(t, 2, TC_I32, (uint32_t)n_encs);
    for (int i = 0; i < n_encs; i++)
        tc_elem_i32(t, encs[i]);
    tc_field_list_begin(t, 3, TC_BINARY, 1);
    tc_elem_string(t, c->spec.name);
    tc_field_i32(t, 4, w->opt.codec);
    tc_field_i64(t, 5, m->num_values);
    tc_field_i64(t, 6, m->uncompressed);
    tc_field_i64(t, 7, m->compressed);
    tc_field_i64(t, 9, m->data_page_offset);
    if (m->dict_page_offset >= 0)
        tc_field_i64(t, 11, m->dict_page_offset);
    tc_field_struct_begin(t, 12); /* Statistics */
    tc_field_i64(t, 3, m->null_count);
    if (m->has_minmax) {
        tc_field_binary(t, 5, m->max_plain.data, m->max_plain.len);
        tc_field_binary(t, 6, m->min_plain.data, m->min_plain.len);
    }
    if (c->ptype == T_FLOAT || c->ptype == T_DOUBLE)
        tc_field_i64(t, 9, m->nan_count);
    tc_struct_end(t);
    /* encoding_stats: lets readers see that every data page is dictionary-encoded */
    int n_stats = (m->dict_pages > 0) + (m->dict_data_pages > 0) + (m->plain_data_pages > 0);
    tc_field_list_begin(t, 13, TC_STRUCT, (uint32_t)n_stats);
    if (m->dict_pages) {
        tc_struct_begin(t);
        tc_field_i32(t, 1, PAGE_DICTIONARY);
        tc_field_i32(t, 2, ENC_PLAIN);
        tc_field_i32(t, 3, m->dict_pages);
        tc_struct_end(t);
    }
    if (m->dict_data_pages) {
        tc_struct_begin(t);
        tc_field_i32(t, 1, PAGE_DATA);
        tc_field_i32(t, 2, ENC_RLE_DICTIONARY);
        tc_field_i32(t, 3, m->dict_data_pages);
        tc_struct_end(t);
    }
    if (m->plain_data_pages) {
        tc_struct_begin(t);
        tc_field_i32(t, 1, PAGE_DATA);
        tc_field_i32(t, 2, ENC_PLAIN);
        tc_field_i32(t, 3, m->plain_data_pages);
        tc_struct_end(t);
    }
    tc_struct_end(t); /* ColumnMetaData */
    tc_struct_end(t); /* ColumnChunk */
}

static void write_footer(pq_writer *w)
{
    byte_buf f = {0};
    tc_writer t = {.out = &f};
    tc_struct_begin(&t);
    tc_field_i32(&t, 1, 1); /* version */
    tc_field_list_begin(&t, 2, TC_STRUCT, (uint32_t)w->n_cols + 1);
    tc_struct_begin(&t); /* root */
    tc_field_string(&t, 4, "table");
    tc_field_i32(&t, 5, w->n_cols);
    tc_struct_end(&t);
    for (int i = 0; i < w->n_cols; i++)
        schema_element(&t, &w->cols[i]);
    tc_field_i64(&t, 3, w->rows_total);
    tc_field_list_begin(&t, 4, TC_STRUCT, (uint32_t)w->n_groups);
    for (int g = 0; g < w->n_groups; g++) {
        tc_struct_begin(&t);
        tc_field_list_begin(&t, 1, TC_STRUCT, (uint32_t)w->n_cols);
        for (int i = 0; i < w->n_cols; i++)
            column_chunk(&t, w, &w->cols[i], &w->metas[(size_t)g * (size_t)w->n_cols + (size_t)i]);
        tc_field_i64(&t, 2, w->group_uncompressed[g]);
        tc_field_i64(&t, 3, w->group_rows[g]);
        tc_field_i64(&t, 5, w->group_offsets[g]);
        tc_field_i64(&t, 6, w->group_compressed[g]);
        tc_field_i16(&t, 7, (int16_t)g);
        tc_struct_end(&t);
    }
    tc_field_string(&t, 6, w->opt.created_by);
    tc_field_list_begin(&t, 7, TC_STRUCT, (uint32_t)w->n_cols);
    for (int i = 0; i < w->n_cols; i++) {
        tc_struct_begin(&t);
        tc_field_empty_struct(&t, 1); /* TYPE_ORDER */
        tc_struct_end(&t);
    }
    tc_struct_end(&t);
    sink_write(w, f.data, f.len);
    uint8_t tail[8] = {
        (uint8_t)f.len, (uint8_t)(f.len >> 8), (uint8_t)(f.len >> 16), (uint8_t)(f.len >> 24), 'P', 'A', 'R', '1'};
    sink_write(w, tail, 8);
    bb_free(&f);
}

/* ------------------------------------------------------------ file metrics */

static void column_bounds(const pq_col *c, pq_column_metrics *m)
{
    const stats *s = &c->fst;
    if (!s->has)
        return;
    m->has_bounds = true;
    switch (c->spec.type.id) {
    case ICE_BOOLEAN:
        bb_byte(&m->lower, (uint8_t)s->imin);
        bb_byte(&m->upper, (uint8_t)s->imax);
        break;
    case ICE_INT:
    case ICE_DATE:
        ice_bound_from_i32(&m->lower, (int32_t)s->imin);
        ice_bound_from_i32(&m->upper, (int32_t)s->imax);
        break;
    case ICE_LONG:
    case ICE_TIMESTAMP:
    case ICE_TIMESTAMPTZ:
        ice_bound_from_i64(&m->lower, s->imin);
        ice_bound_from_i64(&m->upper, s->imax);
        break;
    case ICE_FLOAT: {
        float lo = (float)s->dmin, hi = (float)s->dmax;
        if (lo == 0)
            lo = -0.0f;
        if (hi == 0)
            hi = 0.0f;
        bb_append(&m->lower, &lo, 4);
        bb_append(&m->upper, &hi, 4);
        break;
    }
    case ICE_DOUBLE: {
        double lo = s->dmin, hi = s->dmax;
        if (lo == 0)
            lo = -0.0;
        if (hi == 0)
            hi = 0.0;
        bb_append(&m->lower, &lo, 8);
        bb_append(&m->upper, &hi, 8);
        break;
    }
    case ICE_DECIMAL:
        if (c->ptype == T_FLBA) {
            ice_bound_from_decimal(&m->lower, s->qmin);
            ice_bound_from_decimal(&m->upper, s->qmax);
        } else {
            ice_bound_from_decimal(&m->lower, s->imin);
            ice_bound_from_decimal(&m->upper, s->imax);
        }
        break;
    case ICE_STRING:
        ice_bound_string_lower(&m->lower, s->bmin.data, s->bmin.len);
        if (!ice_bound_string_upper(&m->upper, s->bmax.data, s->bmax.len))
            m->has_bounds = false;
        break;
    case ICE_BINARY:
        ice_bound_binary_lower(&m->lower, s->bmin.data, s->bmin.len);
        if (!ice_bound_binary_upper(&m->upper, s->bmax.data, s->bmax.len))
            m->has_bounds = false;
        break;
    }
    if (!m->has_bounds) {
        bb_free(&m->lower);
        bb_free(&m->upper);
    }
}

int pq_writer_close(pq_writer *w, pq_file_metrics *m)
{
    memset(m, 0, sizeof *m);
    pq_flush_row_group(w);
    write_footer(w);
    if (w->failed)
        return -1;
    m->num_rows = w->rows_total;
    m->file_size = w->offset;
    m->n_columns = w->n_cols;
    m->cols = calloc((size_t)w->n_cols, sizeof *m->cols);
    for (int i = 0; i < w->n_cols; i++) {
        const pq_col *c = &w->cols[i];
        pq_column_metrics *cm = &m->cols[i];
        cm->field_id = c->spec.field_id;
        cm->compressed_size = c->file_compressed;
        cm->value_count = c->file_values;
        cm->null_count = c->file_nulls;
        cm->nan_count = (c->spec.type.id == ICE_FLOAT || c->spec.type.id == ICE_DOUBLE) ? c->file_nans : -1;
        column_bounds(c, cm);
    }
    m->n_row_groups = w->n_groups;
    m->row_group_offsets = calloc((size_t)w->n_groups + 1, sizeof(int64_t));
    memcpy(m->row_group_offsets, w->group_offsets, sizeof(int64_t) * (size_t)w->n_groups);
    return 0;
}

void pq_file_metrics_clear(pq_file_metrics *m)
{
    for (int i = 0; i < m->n_columns; i++) {
        bb_free(&m->cols[i].lower);
        bb_free(&m->cols[i].upper);
    }
    free(m->cols);
    free(m->row_group_offsets);
    memset(m, 0, sizeof *m);
}
