/* The HTTP door: a request body as source-http takes it (plain or gzip,
 * fed in chunks, bounded by max_body_bytes and the in-flight budget), then
 * scanned as JSON or NDJSON with the key field looked up.
 * Input: byte 0 picks gzip (bit 0), NDJSON (bit 1) and the chunk size. */
#include "source_http.h"

#include <stdint.h>
#include <string.h>

static bool on_event(void *user, const jd_event *ev)
{
    size_t *n = user;
    if (ev->key_state == JD_KEY_STRING && ev->key_len)
        (void)ev->key[ev->key_len - 1];
    (*n)++;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    byte_budget budget = {.limit = 1 << 20};
    http_body b;
    body_init(&b, 256 * 1024, &budget, mode & 1, (mode & 4) ? size : 0);
    size_t chunk = 1 + (mode >> 3) * 37;
    body_status st = BODY_OK;
    for (size_t off = 0; off < size && st == BODY_OK; off += chunk)
        st = body_append(&b, data + off, MIN(chunk, size - off));
    if (st == BODY_OK)
        st = body_finish(&b);
    if (st == BODY_OK) {
        static jd_parser *p;
        if (!p)
            p = jd_parser_new(64);
        jd_error err;
        size_t n = 0;
        jd_scan(p, b.data, b.len, b.cap + JD_PADDING, (mode & 2) ? JD_LAYOUT_NDJSON : JD_LAYOUT_JSON, "session_id",
                on_event, &n, &err);
    }
    body_release(&b);
    if (atomic_load(&budget.used) != 0)
        __builtin_trap(); /* the budget must come back whole */
    return 0;
}
