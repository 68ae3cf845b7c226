/*
 * Iceberg single-value serialization of bounds (spec Appendix D) and the
 * truncation of string and binary bounds (see iceberg_bounds.h).
 */
#include "iceberg_bounds.h"

void ice_bound_from_i32(byte_buf *b, int32_t v) { bb_u32le(b, (uint32_t)v); }
void ice_bound_from_i64(byte_buf *b, int64_t v) { bb_u64le(b, (uint64_t)v); }

void ice_bound_from_decimal(byte_buf *b, __int128 v)
{
    /* minimal two's-complement big-endian, as Java's BigInteger.toByteArray */
    int n = 16;
    while (n > 1) {
        uint8_t top = (uint8_t)(v >> (8 * (n - 1)));
        uint8_t next = (uint8_t)(v >> (8 * (n - 2)));
        if ((top == 0x00 && !(next & 0x80)) || (top == 0xFF && (next & 0x80)))
            n--;
        else
            break;
    }
    for (int i = n - 1; i >= 0; i--)
        bb_byte(b, (uint8_t)(v >> (8 * i)));
}

/* Length in bytes of the first `k` UTF-8 code points of p[0..n). */
static size_t utf8_prefix(const uint8_t *p, size_t n, int k, int *count)
{
    size_t i = 0;
    int c = 0;
    while (i < n && c < k) {
        uint8_t b = p[i];
        size_t l = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 1;
        i += l;
        c++;
    }
    *count = c;
    return i > n ? n : i;
}

static uint32_t utf8_decode(const uint8_t *p, size_t l)
{
    if (l == 1)
        return p[0];
    if (l == 2)
        return ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    if (l == 3)
        return ((uint32_t)(p[0] & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    return ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) | ((uint32_t)(p[2] & 0x3F) << 6) |
           (p[3] & 0x3F);
}

static void utf8_encode(byte_buf *b, uint32_t cp)
{
    if (cp < 0x80)
        bb_byte(b, (uint8_t)cp);
    else if (cp < 0x800) {
        bb_byte(b, (uint8_t)(0xC0 | (cp >> 6)));
        bb_byte(b, (uint8_t)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        bb_byte(b, (uint8_t)(0xE0 | (cp >> 12)));
        bb_byte(b, (uint8_t)(0x80 | ((cp >> 6) & 0x3F)));
        bb_byte(b, (uint8_t)(0x80 | (cp & 0x3F)));
    } else {
        bb_byte(b, (uint8_t)(0xF0 | (cp >> 18)));
        bb_byte(b, (uint8_t)(0x80 | ((cp >> 12) & 0x3F)));
        bb_byte(b, (uint8_t)(0x80 | ((cp >> 6) & 0x3F)));
        bb_byte(b, (uint8_t)(0x80 | (cp & 0x3F)));
    }
}

bool ice_bound_string_upper(byte_buf *out, const uint8_t *p, size_t n)
{
    int count;
    size_t plen = utf8_prefix(p, n, ICE_BOUND_CODE_POINTS, &count);
    if (plen >= n) {
        bb_append(out, p, n);
        return true;
    }
    /* offsets of each code point in the prefix */
    size_t offs[ICE_BOUND_CODE_POINTS + 1];
    size_t i = 0;
    int k = 0;
    while (i < plen && k < ICE_BOUND_CODE_POINTS) {
        offs[k++] = i;
        uint8_t b = p[i];
        i += b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 1;
    }
    offs[k] = plen;
    for (int j = k - 1; j >= 0; j--) {
        uint32_t cp = utf8_decode(p + offs[j], offs[j + 1] - offs[j]) + 1;
        if (cp >= 0xD800 && cp <= 0xDFFF)
            cp = 0xE000;
        if (cp > 0x10FFFF)
            continue;
        bb_append(out, p, offs[j]);
        utf8_encode(out, cp);
        return true;
    }
    return false;
}

void ice_bound_string_lower(byte_buf *out, const uint8_t *p, size_t n)
{
    int count;
    bb_append(out, p, utf8_prefix(p, n, ICE_BOUND_CODE_POINTS, &count));
}

void ice_bound_binary_lower(byte_buf *out, const uint8_t *p, size_t n)
{
    bb_append(out, p, n < ICE_BOUND_CODE_POINTS ? n : ICE_BOUND_CODE_POINTS);
}

bool ice_bound_binary_upper(byte_buf *out, const uint8_t *p, size_t n)
{
    if (n <= ICE_BOUND_CODE_POINTS) {
        bb_append(out, p, n);
        return true;
    }
    int j = ICE_BOUND_CODE_POINTS - 1;
    while (j >= 0 && p[j] == 0xFF)
        j--;
    if (j < 0)
        return false;
    bb_append(out, p, (size_t)j);
    bb_byte(out, (uint8_t)(p[j] + 1));
    return true;
}
