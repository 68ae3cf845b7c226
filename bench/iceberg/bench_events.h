/*
 * The shopper events the Parquet benchmarks encode (bench_parquet.c,
 * bench_rewrite.c): one event at a time, the same stream for the same seed,
 * shaped like pipelines/schemas/ecommerce_event.yaml's (55 % page views,
 * sessions of 12 events, prices and quantities on cart and purchase events).
 * Each benchmark stores the fields in its own columns. Header-only.
 */
#ifndef ECF_BENCH_EVENTS_H
#define ECF_BENCH_EVENTS_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

enum { BE_PAGE_VIEW, BE_SEARCH, BE_ADD_TO_CART, BE_REMOVE_FROM_CART, BE_PURCHASE };

typedef struct {
    char id[40], user[12], session[20], product[12];
    int type; /* BE_* */
    const char *type_name, *location, *device;
    const char *query;    /* searches only, else NULL */
    const char *currency; /* cart and purchase events only, else NULL */
    uint32_t product_no;  /* every event draws one; searches have none */
    int64_t ts_us;        /* increasing, 1-21 ms apart */
    int64_t price_cents;  /* with quantity: cart and purchase events only */
    int32_t quantity;
    int32_t date; /* days since 1970 */
} bench_event;

typedef struct {
    uint64_t rng;
    int64_t ts_us;
} bench_events;

static inline void bench_events_init(bench_events *g)
{
    g->rng = 42;
    g->ts_us = 1709330400000000LL;
}

static inline uint64_t bench_next_u64(bench_events *g) /* splitmix64 */
{
    uint64_t z = (g->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Event number i of the stream (call with i = 0, 1, 2, ...). */
static inline void bench_event_next(bench_events *g, int64_t i, bench_event *e)
{
    static const char *types[] = {"page_view", "search", "add_to_cart", "remove_from_cart", "purchase"};
    static const char *cities[] = {"Berlin", "London", "Paris",  "New York", "São Paulo",
                                   "Tokyo",  "Lagos",  "Mumbai", "Sydney",   "Toronto"};
    static const char *devices[] = {"mobile", "desktop", "tablet"};
    static const char *queries[] = {"running shoes", "usb-c cable", "coffee grinder", "yoga mat"};
    static const char *curr[] = {"EUR", "USD", "GBP"};
    uint64_t a = bench_next_u64(g), b = bench_next_u64(g);
    snprintf(e->id, sizeof e->id, "%08x-%04x-4%03x-%04x-%012" PRIx64, (uint32_t)(a >> 32), (uint32_t)(a >> 16) & 0xFFFF,
             (uint32_t)a & 0xFFF, (uint32_t)(b >> 48) | 0x8000, (uint64_t)(b & 0xFFFFFFFFFFFFull));
    int t = (int)(bench_next_u64(g) % 100);
    e->type = t < 55   ? BE_PAGE_VIEW
              : t < 70 ? BE_SEARCH
              : t < 85 ? BE_ADD_TO_CART
              : t < 92 ? BE_REMOVE_FROM_CART
                       : BE_PURCHASE;
    e->type_name = types[e->type];
    uint32_t user = (uint32_t)(bench_next_u64(g) % 100000);
    snprintf(e->user, sizeof e->user, "u%06u", user);
    snprintf(e->session, sizeof e->session, "s%012" PRIx64, (uint64_t)(i / 12));
    e->location = cities[user % 10];
    e->device = devices[user % 3];
    g->ts_us += 1000 + (int64_t)(bench_next_u64(g) % 20000);
    e->ts_us = g->ts_us;
    e->query = e->type == BE_SEARCH ? queries[bench_next_u64(g) % 4] : NULL;
    e->product_no = 1000 + (uint32_t)(bench_next_u64(g) % 9000);
    snprintf(e->product, sizeof e->product, "p%u", e->product_no);
    e->price_cents = 199 + (int64_t)(bench_next_u64(g) % 50000);
    e->quantity = 1 + (int32_t)(bench_next_u64(g) % 4);
    e->currency = e->type >= BE_ADD_TO_CART ? curr[user % 3] : NULL;
    e->date = (int32_t)(e->ts_us / 86400000000LL);
}

#endif
