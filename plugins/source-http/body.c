/*
 * Request bodies: one buffer per request, padded for simdjson, charged to
 * the stage's in-flight budget as it grows. Gzip is inflated as the bytes
 * arrive, so the compressed form is never held and a bomb stops at
 * max_body_bytes of output instead of growing memory.
 */
#include "source_http.h"

#include <string.h>

#define FIRST_CHUNK (64 * 1024)

static bool budget_take(byte_budget *bb, size_t n)
{
    if (!bb || bb->limit <= 0)
        return true;
    int64_t now = atomic_fetch_add(&bb->used, (int64_t)n) + (int64_t)n;
    if (now <= bb->limit)
        return true;
    atomic_fetch_sub(&bb->used, (int64_t)n);
    return false;
}

static void budget_give(byte_budget *bb, size_t n)
{
    if (bb && bb->limit > 0 && n)
        atomic_fetch_sub(&bb->used, (int64_t)n);
}

void body_init(http_body *b, size_t limit, byte_budget *budget, bool gzip, size_t expected)
{
    memset(b, 0, sizeof *b);
    b->limit = limit;
    b->budget = budget;
    b->gzip = gzip;
    /* A declared length is only a promise: the buffer (and the budget) grows
     * with the bytes that arrive, doubling from a small first chunk, and ends
     * at exactly the declared length. Reserving it up front let requests that
     * declare 10 MiB and send one byte hold the whole in-flight budget. */
    b->expected = gzip ? 0 : expected;
}

/* Room for at least `want` bytes in total; never more than limit + 1, the
 * one extra byte being how an overflow is noticed. */
static body_status reserve(http_body *b, size_t want)
{
    if (want > b->limit + 1)
        want = b->limit + 1;
    if (b->data && want <= b->cap)
        return BODY_OK;
    size_t cap = b->data ? b->cap : FIRST_CHUNK;
    while (cap < want)
        cap = cap > (SIZE_MAX / 4) ? want : cap * 2;
    if (b->expected && want <= b->expected && cap > b->expected)
        cap = b->expected;
    if (cap > b->limit + 1)
        cap = b->limit + 1;
    size_t grow = cap - (b->data ? b->cap : 0);
    if (!budget_take(b->budget, grow))
        return BODY_BUSY;
    uint8_t *p = g_try_realloc(b->data, cap + JD_PADDING);
    if (!p) {
        budget_give(b->budget, grow);
        return BODY_NOMEM;
    }
    b->reserved += grow;
    b->data = p;
    b->cap = cap;
    return BODY_OK;
}

static body_status append_plain(http_body *b, const void *data, size_t n)
{
    if (n > b->limit - b->len)
        return BODY_TOO_LARGE;
    body_status st = reserve(b, b->len + n);
    if (st != BODY_OK)
        return st;
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return BODY_OK;
}

static body_status append_gzip(http_body *b, const void *data, size_t n)
{
    if (!b->gz_live) {
        /* 16 + MAX_WBITS: gzip framing only, as Content-Encoding promised. */
        if (inflateInit2(&b->zs, 16 + MAX_WBITS) != Z_OK)
            return BODY_NOMEM;
        b->gz_live = true;
    }
    b->zs.next_in = (Bytef *)data;
    b->zs.avail_in = (uInt)n;
    while (b->zs.avail_in > 0) {
        if (b->gz_member_done) {
            /* RFC 1952 allows several members back to back. */
            inflateReset(&b->zs);
            b->gz_member_done = false;
        }
        if (b->len == b->cap) {
            body_status st = reserve(b, b->len + 1);
            if (st != BODY_OK)
                return st;
        }
        b->zs.next_out = b->data + b->len;
        b->zs.avail_out = (uInt)(b->cap - b->len);
        size_t before = b->zs.avail_out;
        int rc = inflate(&b->zs, Z_NO_FLUSH);
        b->len += before - b->zs.avail_out;
        if (b->len > b->limit)
            return BODY_TOO_LARGE;
        if (rc == Z_STREAM_END) {
            b->gz_member_done = true;
            continue;
        }
        if (rc != Z_OK && !(rc == Z_BUF_ERROR && b->zs.avail_in == 0))
            return rc == Z_MEM_ERROR ? BODY_NOMEM : BODY_BAD_GZIP;
    }
    return BODY_OK;
}

body_status body_append(http_body *b, const void *data, size_t n)
{
    if (n == 0)
        return BODY_OK;
    /* The size given to inflate is a uInt: feed very large chunks in parts. */
    while (n > 0) {
        size_t part = n > (1u << 30) ? (1u << 30) : n;
        body_status st = b->gzip ? append_gzip(b, data, part) : append_plain(b, data, part);
        if (st != BODY_OK)
            return st;
        data = (const uint8_t *)data + part;
        n -= part;
    }
    return BODY_OK;
}

body_status body_finish(http_body *b)
{
    if (b->gzip && b->gz_live && !b->gz_member_done)
        return BODY_BAD_GZIP; /* truncated stream */
    if (!b->data) {
        body_status st = reserve(b, 1);
        if (st != BODY_OK)
            return st;
    }
    memset(b->data + b->len, 0, JD_PADDING);
    return BODY_OK;
}

void body_release(http_body *b)
{
    if (b->gz_live)
        inflateEnd(&b->zs);
    b->gz_live = false;
    g_free(b->data);
    b->data = NULL;
    budget_give(b->budget, b->reserved);
    b->reserved = 0;
    b->len = b->cap = 0;
}
