/*
 * Deterministic test values for the Parquet reader tests: every row of every
 * column is a function of (seed, column field id, row), so a test can write a
 * file with pq_writer and check what a reader returns without keeping the
 * data. Shared by test_parquet_reader.c and pq_tool.c (header-only, static).
 */
#ifndef ECF_ICEBERG_PQ_TESTDATA_H
#define ECF_ICEBERG_PQ_TESTDATA_H

#include "parquet_reader.h"
#include "parquet_writer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    bool null;
    int64_t i;  /* bool, ints, dates, timestamps (micros) */
    double f;   /* float (as float), double */
    __int128 q; /* decimal unscaled */
    uint32_t n; /* string / binary length */
    uint8_t b[48];
} td_val;

static inline uint64_t td_mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline __int128 td_pow10(int p)
{
    __int128 v = 1;
    for (int i = 0; i < p; i++)
        v *= 10;
    return v;
}

/* The value of `row` in a column of spec `s` (its Iceberg type decides). */
static inline void td_expect(const pq_column_spec *s, int64_t row, uint64_t seed, td_val *v)
{
    memset(v, 0, sizeof *v);
    uint64_t h = td_mix(seed ^ td_mix((uint64_t)row * 1315423911u + (uint64_t)s->field_id * 2654435761u));
    if (!s->required && h % 13 == 0) {
        v->null = true;
        return;
    }
    switch (s->type.id) {
    case ICE_BOOLEAN: v->i = (int64_t)((h >> 7) & 1); break;
    case ICE_INT: v->i = (int32_t)(uint32_t)(h >> 16); break;
    case ICE_DATE: v->i = 18000 + (int64_t)(h % 3000); break;
    case ICE_LONG: v->i = (int64_t)h >> 3; break;
    case ICE_TIMESTAMP:
    case ICE_TIMESTAMPTZ: v->i = 1700000000000000LL + row * 1000 + (int64_t)(h % 1000); break;
    case ICE_FLOAT: v->f = row % 101 == 7 ? NAN : (float)((int64_t)(h % 200000) - 100000) / 8.0f; break;
    case ICE_DOUBLE:
        v->f = row % 103 == 9 ? NAN : row % 89 == 3 ? -0.0 : ((double)(int64_t)(h % 2000000) - 1e6) / 3.0;
        break;
    case ICE_STRING:
        /* even ids: few distinct values (dictionary pays); odd ids: slowly
         * growing cardinality, so a small dict_size_limit overflows mid-chunk */
        if (s->field_id % 2 == 0)
            v->n = (uint32_t)snprintf((char *)v->b, sizeof v->b, "cat-%d", (int)(h % 20));
        else if (row % 17 == 0)
            v->n = 0;
        else
            v->n = (uint32_t)snprintf((char *)v->b, sizeof v->b, "key-%lld-é", (long long)(row / 3));
        break;
    case ICE_BINARY:
        v->n = (uint32_t)(h % 9);
        for (uint32_t k = 0; k < v->n; k++)
            v->b[k] = (uint8_t)(h >> (8 * (k % 8))) ^ (uint8_t)k;
        break;
    case ICE_DECIMAL: {
        __int128 lim = td_pow10(s->type.precision);
        unsigned __int128 u = ((unsigned __int128)h << 64) | td_mix(h);
        __int128 q = (__int128)(u % (unsigned __int128)lim);
        v->q = (h & 1) ? -q : q;
        break;
    }
    }
}

static inline void td_put(pq_writer *w, int col, const pq_column_spec *s, const td_val *v)
{
    if (v->null) {
        pq_put_null(w, col);
        return;
    }
    switch (s->type.id) {
    case ICE_BOOLEAN: pq_put_bool(w, col, v->i != 0); break;
    case ICE_INT:
    case ICE_DATE: pq_put_i32(w, col, (int32_t)v->i); break;
    case ICE_LONG:
    case ICE_TIMESTAMP:
    case ICE_TIMESTAMPTZ: pq_put_i64(w, col, v->i); break;
    case ICE_FLOAT: pq_put_float(w, col, (float)v->f); break;
    case ICE_DOUBLE: pq_put_double(w, col, v->f); break;
    case ICE_STRING:
    case ICE_BINARY: pq_put_bytes(w, col, v->b, v->n); break;
    case ICE_DECIMAL: pq_put_decimal(w, col, v->q); break;
    }
}

static inline __int128 td_be(const uint8_t *p, size_t n)
{
    unsigned __int128 u = (n && (p[0] & 0x80)) ? ~(unsigned __int128)0 : 0;
    for (size_t i = 0; i < n; i++)
        u = (u << 8) | p[i];
    return (__int128)u;
}

/* Row `row` of a decoded chunk; *k is the cursor over its non-null values. */
static inline void td_from_data(const pq_reader_column *c, const pq_column_data *d, int64_t row, int64_t *k, td_val *v)
{
    memset(v, 0, sizeof *v);
    if (!d->valid[row]) {
        v->null = true;
        return;
    }
    int64_t j = (*k)++;
    bool dec = c->has_ice && c->ice.id == ICE_DECIMAL;
    switch (c->ptype) {
    case PQ_BOOLEAN: v->i = d->fixed[j]; break;
    case PQ_INT32: {
        int32_t x;
        memcpy(&x, d->fixed + j * 4, 4);
        v->i = x;
        v->q = x;
        break;
    }
    case PQ_INT64: {
        int64_t x;
        memcpy(&x, d->fixed + j * 8, 8);
        v->i = x * c->ts_scale;
        v->q = x;
        break;
    }
    case PQ_FLOAT: {
        float x;
        memcpy(&x, d->fixed + j * 4, 4);
        v->f = x;
        break;
    }
    case PQ_DOUBLE: memcpy(&v->f, d->fixed + j * 8, 8); break;
    case PQ_FIXED_LEN_BYTE_ARRAY:
        if (dec)
            v->q = td_be(d->fixed + (size_t)j * (size_t)c->type_len, (size_t)c->type_len);
        v->n = (uint32_t)(c->type_len < 48 ? c->type_len : 48);
        memcpy(v->b, d->fixed + (size_t)j * (size_t)c->type_len, v->n);
        break;
    case PQ_BYTE_ARRAY: {
        uint32_t n = d->offsets[j + 1] - d->offsets[j];
        if (dec)
            v->q = td_be(d->bytes + d->offsets[j], n);
        v->n = n < 48 ? n : 48;
        memcpy(v->b, d->bytes + d->offsets[j], v->n);
        break;
    }
    }
}

/* Equal under the Iceberg type `t` of the reading side. */
static inline bool td_equal(ice_type t, const td_val *a, const td_val *b)
{
    if (a->null || b->null)
        return a->null == b->null;
    switch (t.id) {
    case ICE_FLOAT:
    case ICE_DOUBLE:
        if (isnan(a->f) || isnan(b->f))
            return isnan(a->f) && isnan(b->f);
        return memcmp(&a->f, &b->f, sizeof a->f) == 0; /* -0.0 stays -0.0 */
    case ICE_STRING:
    case ICE_BINARY: return a->n == b->n && memcmp(a->b, b->b, a->n) == 0;
    case ICE_DECIMAL: return a->q == b->q;
    default: return a->i == b->i;
    }
}

/* 1-3 edits of a valid file: bit flips, byte stores, 0xFF runs (huge
 * lengths), varint-continuation bytes; half of them in the last 2 KiB, where
 * the footer is. len must be > 8. */
static inline void td_mutate(uint8_t *m, size_t len, uint64_t *rng)
{
    int edits = 1 + (int)(td_mix((*rng)++) % 3);
    for (int e = 0; e < edits; e++) {
        uint64_t h = td_mix((*rng)++);
        size_t tail = len - 8 < 2048 ? len - 8 : 2048;
        size_t at = (h & 1) ? len - 8 - (size_t)((h >> 8) % tail) - 1 : (size_t)((h >> 8) % len);
        switch ((h >> 40) % 4) {
        case 0: m[at] ^= (uint8_t)(1u << ((h >> 50) % 8)); break;
        case 1: m[at] = (uint8_t)(h >> 52); break;
        case 2:
            for (size_t k = at; k < at + 4 && k < len; k++)
                m[k] = 0xFF;
            break;
        default:
            for (size_t k = at; k < at + 2 && k < len; k++)
                m[k] = (uint8_t)(0x80 | (h >> (56 - 8 * (k - at))));
            break;
        }
    }
}

#endif
