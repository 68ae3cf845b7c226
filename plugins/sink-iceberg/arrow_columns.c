/* Arrow struct arrays into Parquet columns: see arrow_columns.h. */
#include "arrow_columns.h"

#include <string.h>

bool arrow_kind_of(const char *f, arrow_kind *k)
{
    if (strcmp(f, "u") == 0)
        *k = AC_UTF8;
    else if (strcmp(f, "U") == 0)
        *k = AC_LARGE_UTF8;
    else if (strcmp(f, "z") == 0)
        *k = AC_BINARY;
    else if (strcmp(f, "l") == 0)
        *k = AC_I64;
    else if (strcmp(f, "i") == 0)
        *k = AC_I32;
    else if (strcmp(f, "g") == 0)
        *k = AC_F64;
    else if (strcmp(f, "f") == 0)
        *k = AC_F32;
    else if (strcmp(f, "b") == 0)
        *k = AC_BOOL;
    else if (strcmp(f, "tdD") == 0)
        *k = AC_DATE32;
    else if (strncmp(f, "tsu:", 4) == 0)
        *k = AC_TS_US;
    else if (strncmp(f, "d:", 2) == 0)
        *k = AC_DEC128;
    else
        return false;
    return true;
}

static inline __int128 dec128_at(const struct ArrowArray *a, int64_t i)
{
    __int128 v;
    memcpy(&v, (const uint8_t *)a->buffers[1] + (size_t)(a->offset + i) * 16, 16);
    return v;
}

static inline const uint8_t *bytes_at(const struct ArrowArray *a, arrow_kind k, int64_t i, uint32_t *n)
{
    i += a->offset;
    const uint8_t *data = a->buffers[2];
    if (k == AC_LARGE_UTF8) {
        const int64_t *o = a->buffers[1];
        *n = (uint32_t)(o[i + 1] - o[i]);
        return data + o[i];
    }
    const int32_t *o = a->buffers[1];
    *n = (uint32_t)(o[i + 1] - o[i]);
    return data + o[i];
}

void arrow_append_column(pq_writer *w, int c, const struct ArrowArray *a, arrow_kind kind, int64_t parent_offset,
                         const uint32_t *rows, uint32_t n, ice_type to)
{
    const bool nulls = a->buffers[0] && a->null_count != 0;
#define EACH(put)                            \
    for (uint32_t r = 0; r < n; r++) {       \
        int64_t i = parent_offset + rows[r]; \
        if (nulls && !arrow_valid(a, i)) {   \
            pq_put_null(w, c);               \
            continue;                        \
        }                                    \
        put;                                 \
    }
    switch (kind) {
    case AC_UTF8:
    case AC_LARGE_UTF8:
    case AC_BINARY: {
        EACH({
            uint32_t len;
            const uint8_t *p = bytes_at(a, kind, i, &len);
            pq_put_bytes(w, c, p, len);
        });
        break;
    }
    case AC_I64:
    case AC_TS_US: {
        const int64_t *v = (const int64_t *)a->buffers[1] + a->offset;
        EACH(pq_put_i64(w, c, v[i]));
        break;
    }
    case AC_I32:
    case AC_DATE32: {
        const int32_t *v = (const int32_t *)a->buffers[1] + a->offset;
        if (to.id == ICE_LONG)
            EACH(pq_put_i64(w, c, v[i]))
        else
            EACH(pq_put_i32(w, c, v[i]))
        break;
    }
    case AC_F64: {
        const double *v = (const double *)a->buffers[1] + a->offset;
        EACH(pq_put_double(w, c, v[i]));
        break;
    }
    case AC_F32: {
        const float *v = (const float *)a->buffers[1] + a->offset;
        if (to.id == ICE_DOUBLE)
            EACH(pq_put_double(w, c, v[i]))
        else
            EACH(pq_put_float(w, c, v[i]))
        break;
    }
    case AC_BOOL: {
        const uint8_t *v = a->buffers[1];
        EACH({
            int64_t b = i + a->offset;
            pq_put_bool(w, c, (v[b >> 3] >> (b & 7)) & 1);
        });
        break;
    }
    case AC_DEC128: {
        EACH(pq_put_decimal(w, c, dec128_at(a, i)));
        break;
    }
    }
#undef EACH
}

void arrow_cell(const struct ArrowArray *a, arrow_kind kind, int64_t i, part_value *out)
{
    memset(out, 0, sizeof *out);
    if (!arrow_valid(a, i)) {
        out->is_null = true;
        return;
    }
    switch (kind) {
    case AC_UTF8:
    case AC_LARGE_UTF8:
    case AC_BINARY: out->p = bytes_at(a, kind, i, &out->n); break;
    case AC_I64:
    case AC_TS_US: out->i = ((const int64_t *)a->buffers[1])[a->offset + i]; break;
    case AC_I32:
    case AC_DATE32: out->i = ((const int32_t *)a->buffers[1])[a->offset + i]; break;
    case AC_F64: out->d = ((const double *)a->buffers[1])[a->offset + i]; break;
    case AC_F32: out->d = ((const float *)a->buffers[1])[a->offset + i]; break;
    case AC_BOOL: {
        const uint8_t *v = a->buffers[1];
        int64_t b = i + a->offset;
        out->i = (v[b >> 3] >> (b & 7)) & 1;
        break;
    }
    case AC_DEC128: out->dec = dec128_at(a, i); break;
    }
}
