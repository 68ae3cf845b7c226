/* The HTTP door: a request body as source-http takes it (plain or gzip,
 * fed in chunks, bounded by max_body_bytes and the in-flight budget), then
 * scanned as JSON or NDJSON with the key field looked up and each object
 * event's members handed to the schema validator on the same walk (as
 * edge validation does). Each event's verdict from that one walk must be
 * the verdict tv_validate() gives the event's bytes on their own.
 * Input: byte 0 picks gzip (bit 0), NDJSON (bit 1) and the chunk size. */
#include "source_http.h"

#include <stdint.h>
#include <string.h>

#define NOW INT64_C(1709251200000000)

static const char schema_yaml[] = "schema: fuzz\n"
                                  "version: 1\n"
                                  "event_time: ts\n"
                                  "fields:\n"
                                  "  session_id: {type: string, required: true}\n"
                                  "  e:     {type: string, enum: [a, b]}\n"
                                  "  i:     {type: int, min: -5, max: 100}\n"
                                  "  d:     {type: \"decimal(12,2)\"}\n"
                                  "  f:     {type: float, coerce: true}\n"
                                  "  b:     {type: bool}\n"
                                  "  ts:    {type: timestamp, required: true}\n";

typedef struct {
    tv_validator *one_walk, *alone;
    tv_columns *cols;
    tv_error err;
    const uint8_t *body;
    size_t n;
} fuzz_ctx;

static void on_begin(void *user, uint32_t index)
{
    (void)index;
    fuzz_ctx *f = user;
    if (tv_event_begin(f->one_walk, f->cols, 0, NOW, &f->err) != TV_VALID)
        __builtin_trap(); /* a one-row set with room: begin cannot fail */
}

static void on_member(void *user, const tvj_member *m)
{
    fuzz_ctx *f = user;
    tv_event_member(f->one_walk, m);
}

static void take_back(tv_columns *cols, size_t len)
{
    cols->rows--;
    cols->in_bytes -= len;
}

static bool on_event(void *user, const jd_event *ev)
{
    fuzz_ctx *f = user;
    if (ev->key_state == JD_KEY_STRING && ev->key_len)
        (void)ev->key[ev->key_len - 1];
    f->n++;
    if (!ev->is_object)
        on_begin(f, ev->index);
    tv_row_info info;
    tv_reason r = tv_event_end(f->one_walk, ev->walked, ev->walk_err, ev->length, NOW, &info);
    if (r == TV_VALID)
        take_back(f->cols, ev->length);
    /* the event alone, copied so that nothing past it is readable but padding */
    uint8_t *copy = g_malloc0(ev->length + JD_PADDING);
    memcpy(copy, f->body + ev->offset, ev->length);
    tv_error alone;
    tv_reason r2 = tv_validate(f->alone, f->cols, copy, ev->length, NOW, NOW, &info, &alone);
    if (r2 == TV_VALID)
        take_back(f->cols, ev->length);
    g_free(copy);
    if (r != r2 || f->err.n_problems != alone.n_problems || f->err.n_unlisted != alone.n_unlisted ||
        strcmp(f->err.message, alone.message) != 0)
        __builtin_trap(); /* one walk and two walks disagree */
    for (uint32_t i = 0; i < alone.n_problems; i++)
        if (strcmp(f->err.problems[i].message, alone.problems[i].message) != 0)
            __builtin_trap();
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fuzz_ctx f;
    static tv_pool *pool;
    if (!pool) {
        GError *e = NULL;
        tv_schema *schema = tv_schema_parse(schema_yaml, strlen(schema_yaml), "fuzz.yaml", &e);
        const char *why = NULL;
        f.one_walk = tv_validator_new(schema, INT64_C(3600000000), 64, "session_id", &why);
        f.alone = tv_validator_new(schema, INT64_C(3600000000), 64, "session_id", &why);
        tv_col_kind kinds[16];
        bool nullable[16];
        uint32_t n = tv_validator_columns(schema, kinds, nullable, 16);
        pool = tv_pool_new(n, kinds, nullable, 1);
    }
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
        f.cols = tv_pool_take(pool, 1);
        f.body = b.data;
        f.n = 0;
        jd_members members = {.begin = on_begin, .member = on_member, .user = &f, .duplicates = true};
        jd_error err;
        jd_scan(p, b.data, b.len, b.cap + JD_PADDING, (mode & 2) ? JD_LAYOUT_NDJSON : JD_LAYOUT_JSON, "session_id",
                &members, on_event, &f, &err);
        tv_columns_give_back(f.cols);
    }
    body_release(&b);
    if (atomic_load(&budget.used) != 0)
        __builtin_trap(); /* the budget must come back whole */
    return 0;
}
