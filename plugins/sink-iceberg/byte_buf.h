/*
 * byte_buf: a growable byte buffer, the one container every encoder here
 * (Thrift, Parquet pages, Avro blocks, JSON) appends into. Header-only.
 */
#ifndef ECF_ICEBERG_BYTE_BUF_H
#define ECF_ICEBERG_BYTE_BUF_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} byte_buf;

static inline void bb_reserve(byte_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        abort(); /* out of memory: nothing sensible to do mid-encode */
    b->data = p;
    b->cap = cap;
}

static inline void bb_append(byte_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    bb_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static inline void bb_byte(byte_buf *b, uint8_t v)
{
    bb_reserve(b, 1);
    b->data[b->len++] = v;
}

static inline void bb_u32le(byte_buf *b, uint32_t v)
{
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bb_append(b, t, 4);
}

static inline void bb_u64le(byte_buf *b, uint64_t v)
{
    uint8_t t[8];
    for (int i = 0; i < 8; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    bb_append(b, t, 8);
}

/* Unsigned LEB128 varint (Thrift compact and Avro both use it). */
static inline void bb_uvarint(byte_buf *b, uint64_t v)
{
    bb_reserve(b, 10);
    while (v >= 0x80) {
        b->data[b->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b->data[b->len++] = (uint8_t)v;
}

static inline void bb_zigzag(byte_buf *b, int64_t v) { bb_uvarint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63)); }

static inline void bb_str(byte_buf *b, const char *s) { bb_append(b, s, strlen(s)); }

static inline void bb_reset(byte_buf *b) { b->len = 0; }

static inline void bb_free(byte_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

#endif
