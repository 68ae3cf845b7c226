/* The door's CPU per event without Kafka or HTTP: jd_scan of one 100-event
 * array body, 20,000 times, with the schema check (`on`) and without
 * (`off`, the key field looked up only). Builds before the door and the
 * validator shared one walk (41ae1ab^) validated each event again after the
 * scan, as their run_edge did: compile those without -DNEW_API.
 *
 *   B=build/plain S=.   # the build and its source tree
 *   gcc -O2 -std=gnu11 -DNEW_API -o /tmp/door_cpu bench/ingest/door_cpu.c \
 *     -I$S/plugins/source-http -I$S/plugins/common/event_schema -I$S/include \
 *     $(pkg-config --cflags glib-2.0) $B/plugins/source-http/libecf_event_scan.a \
 *     $B/plugins/common/libecf_event_schema.a \
 *     $(pkg-config --libs glib-2.0 yaml-0.1 simdjson) -lstdc++ -lm
 *   /tmp/door_cpu pipelines/schemas/ecommerce_event.yaml on|off
 */
#include "event_scan.h"
#include "schema.h"
#include "validate.h"
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t now_us;
typedef struct {
    tv_validator *v;
    tv_columns *cols;
    tv_error err;
    const uint8_t *buf;
    unsigned invalid;
} ctx;

#ifdef NEW_API
static void on_begin(void *u, uint32_t i)
{
    (void)i;
    ctx *c = u;
    tv_event_begin(c->v, c->cols, 0, now_us, &c->err);
}
static void on_member(void *u, const tvj_member *m) { tv_event_member(((ctx *)u)->v, m); }
#endif

static bool on_event(void *u, const jd_event *ev)
{
    ctx *c = u;
    if (!c->v)
        return true;
    tv_row_info info;
#ifdef NEW_API
    tv_reason r = tv_event_end(c->v, ev->walked, ev->walk_err, ev->length, now_us, &info);
#else
    /* the old door collected the events and validated each after the scan: same work */
    tv_reason r = tv_validate(c->v, c->cols, c->buf + ev->offset, ev->length, now_us, now_us, &info, &c->err);
#endif
    if (r == TV_VALID) {
        c->cols->rows--;
        c->cols->in_bytes -= ev->length;
    } else {
        c->invalid++;
    }
    return true;
}

int main(int argc, char **argv)
{
    GError *e = NULL;
    tv_schema *s = tv_schema_load(argv[1], &e);
    if (!s) {
        fprintf(stderr, "%s\n", e->message);
        return 1;
    }
    now_us = g_get_real_time();
    bool validate = argc > 2 && !strcmp(argv[2], "on");
    GString *b = g_string_new("[");
    const char *types[] = {"page_view", "add_to_cart", "purchase", "search"};
    for (int i = 0; i < 100; i++) {
        const char *t = types[i % 4];
        g_string_append_printf(b,
                               "%s{\"event_id\":\"7d0c6a3e-%04x-4b1e-9c55-%012d\",\"event_type\":\"%s\","
                               "\"user_id\":\"u%06d\",\"session_id\":\"s-%05d\",\"location\":\"Berlin\","
                               "\"device\":\"mobile\",\"timestamp\":\"2026-12-06T23:%02d:%02d.%03dZ\"",
                               i ? "," : "", i, i * 7919, t, i * 37, i * 13, i % 60, (i * 7) % 60, i);
        if (i % 4 == 3)
            g_string_append_printf(b, ",\"query\":\"running shoes size %d\"}", 36 + i % 12);
        else if (i % 4 == 0)
            g_string_append_printf(b, ",\"page_url\":\"https://shop.example/p/%d\"}", i * 31);
        else
            g_string_append_printf(b, ",\"product_id\":\"p%d\",\"quantity\":%d,\"currency\":\"EUR\",\"price\":%d.%02d}",
                                   i * 17, 1 + i % 3, i * 3, i % 100);
    }
    g_string_append(b, "]");
    size_t len = b->len;
    uint8_t *buf = g_malloc0(len + 64);
    memcpy(buf, b->str, len);
    ctx c = {.buf = buf};
    if (validate) {
        const char *why;
        c.v = tv_validator_new(s, 3600000000, 64, "session_id", &why);
        tv_col_kind kinds[64];
        bool nullable[64];
        uint32_t n = tv_validator_columns(s, kinds, nullable, 64);
        c.cols = tv_pool_take(tv_pool_new(n, kinds, nullable, 1), 1);
    }
    jd_parser *p = jd_parser_new(64);
    int iters = 20000;
    jd_error err;
    double t0 = cpu_now();
    for (int k = 0; k < iters; k++) {
#ifdef NEW_API
        jd_members m = {.begin = on_begin, .member = on_member, .user = &c, .duplicates = true};
        jd_scan(p, buf, len, len + 64, JD_LAYOUT_JSON, "session_id", c.v ? &m : NULL, on_event, &c, &err);
#else
        jd_scan(p, buf, len, len + 64, JD_LAYOUT_JSON, "session_id", on_event, &c, &err);
#endif
    }
    double t = cpu_now() - t0;
    printf("%.1f ns/event (%s, %zu-byte body of 100 events, %u invalid)\n", t / iters / 100 * 1e9,
           validate ? "on" : "off", len, c.invalid / iters);
    return 0;
}
