/*
 * Benchmark: transform-validate's work on in-memory batches, without a
 * pipeline around it. Events look like source-generate's (same fields, same
 * mix of types, ~230-350 bytes), laid out as ecflow payloads are: each
 * followed by 64 zero bytes.
 *
 *   bench_validate [--events N] [--batch B] [--repeats R] [--schema PATH] [--smoke]
 *
 * Three passes over the same events, medians of R repeats, one core:
 *   walk      the JSON walk alone (simdjson On-Demand, every value visited,
 *             duplicate keys checked): the parsing floor of this stage
 *   validate  walk + schema rules + typed columns + extras, per batch a
 *             column set taken from the pool, exported as Arrow and
 *             released back (what the plugin does minus the host calls)
 * and the share of validate's time spent in the walk. The best run is shown
 * too: on a shared machine it is the one least disturbed.
 */
#include "columns.h"
#include "json_walk.h"
#include "schema.h"
#include "validate.h"

#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static const char *const cities[] = {"Berlin", "London", "Paris",  "New York", "S\xc3\xa3o Paulo",
                                     "Tokyo",  "Lagos",  "Mumbai", "Sydney",   "Toronto"};
static const char *const devices[] = {"mobile", "desktop", "tablet"};
static const char *const queries[] = {"running shoes", "usb-c cable", "coffee grinder", "yoga mat"};
static const char *const currencies[] = {"EUR", "USD", "GBP"};

/* One event like source-generate's; returns its length. */
static int make_event(uint64_t *rng, int64_t t_ms, char *buf, size_t cap)
{
    uint64_t a = rng_next(rng), b = rng_next(rng);
    int kind = (int)(rng_next(rng) % 100);
    const char *type = kind < 45   ? "page_view"
                       : kind < 60 ? "search"
                       : kind < 80 ? "add_to_cart"
                       : kind < 90 ? "remove_from_cart"
                                   : "purchase";
    time_t secs = (time_t)(t_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char ts[64];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(t_ms % 1000));
    int n = snprintf(buf, cap,
                     "{\"event_id\":\"%08" PRIx32 "-%04" PRIx32 "-4%03" PRIx32 "-a%03" PRIx32 "-%012" PRIx64 "\","
                     "\"event_type\":\"%s\",\"user_id\":\"u%06u\",\"session_id\":\"s%012" PRIx64 "\","
                     "\"location\":\"%s\",\"device\":\"%s\",\"timestamp\":\"%s\"",
                     (uint32_t)(a >> 32), (uint32_t)(a >> 16) & 0xFFFF, (uint32_t)a & 0xFFF,
                     (uint32_t)(b >> 52) & 0xFFF, (uint64_t)(b & 0xFFFFFFFFFFFFull), type, (unsigned)(a % 100000),
                     (b >> 8) % 5000000, cities[a % 10], devices[b % 3], ts);
    unsigned product = 1000 + (unsigned)(b % 9000);
    if (!strcmp(type, "search"))
        n += snprintf(buf + n, cap - (size_t)n, ",\"query\":\"%s\"", queries[a % 4]);
    else if (!strcmp(type, "page_view"))
        n += snprintf(buf + n, cap - (size_t)n, ",\"page_url\":\"/p/%u\",\"product_id\":\"p%u\"", product, product);
    else
        n += snprintf(buf + n, cap - (size_t)n,
                      ",\"product_id\":\"p%u\",\"price\":%u.%02u,\"quantity\":%u,\"currency\":\"%s\"", product,
                      (unsigned)(a % 50000) / 100 + 1, (unsigned)(a % 100), 1 + (unsigned)(b % 4), currencies[b % 3]);
    n += snprintf(buf + n, cap - (size_t)n, "}");
    return n;
}

typedef struct {
    uint8_t *arena;
    size_t *offset;
    uint32_t *len;
    size_t count, bytes;
} corpus;

static void make_corpus(corpus *c, size_t n)
{
    c->count = n;
    c->offset = g_new(size_t, n);
    c->len = g_new(uint32_t, n);
    size_t cap = n * (400 + TVJ_PADDING);
    c->arena = g_malloc0(cap);
    uint64_t rng = 42;
    int64_t t = INT64_C(1709251200000);
    size_t at = 0;
    c->bytes = 0;
    for (size_t i = 0; i < n; i++) {
        int len = make_event(&rng, t, (char *)c->arena + at, 400);
        c->offset[i] = at;
        c->len[i] = (uint32_t)len;
        c->bytes += (size_t)len;
        at += (size_t)len + TVJ_PADDING;
        memset(c->arena + at - TVJ_PADDING, 0, TVJ_PADDING);
        t += 1 + (int64_t)(rng_next(&rng) % 20);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void noop(void *user, const tvj_member *m)
{
    (void)m;
    (*(size_t *)user)++;
}

static double pass_walk(const corpus *c)
{
    tvj_walker *w = tvj_walker_new(64);
    size_t members = 0;
    tvj_error err;
    double t0 = now_s();
    for (size_t i = 0; i < c->count; i++)
        if (tvj_walk(w, c->arena + c->offset[i], c->len[i], c->len[i] + TVJ_PADDING, noop, &members, &err) != TVJ_OK)
            g_error("event %zu does not walk: %s", i, err.message);
    double t = now_s() - t0;
    tvj_walker_free(w);
    return t;
}

static double pass_validate(const corpus *c, const tv_schema *s, uint32_t batch, size_t *valid_out)
{
    const char *why;
    tv_validator *v = tv_validator_new(s, INT64_C(3600000000), 64, "session_id", &why);
    tv_col_kind kinds[256];
    bool nullable[256];
    uint32_t ncols = tv_validator_columns(s, kinds, nullable, 256);
    tv_pool *pool = tv_pool_new(ncols, kinds, nullable, 8);
    int64_t now = INT64_C(1709251200000000) + INT64_C(86400000000);
    size_t valid = 0;
    double t0 = now_s();
    for (size_t b = 0; b < c->count; b += batch) {
        size_t end = b + batch < c->count ? b + batch : c->count;
        tv_columns *cols = tv_pool_take(pool, (uint32_t)(end - b));
        for (size_t i = b; i < end; i++) {
            tv_row_info info;
            tv_error err;
            if (tv_validate(v, cols, c->arena + c->offset[i], c->len[i], now, now, &info, &err) == TV_VALID)
                valid++;
            else
                g_error("event %zu rejected: %s", i, err.message);
        }
        struct ArrowArray arr;
        tv_columns_export(cols, &arr);
        arr.release(&arr);
    }
    double t = now_s() - t0;
    *valid_out = valid;
    tv_pool_close(pool);
    tv_validator_free(v);
    return t;
}

int main(int argc, char **argv)
{
    gint64 events = 200000, batch = 1024, repeats = 5;
    gboolean smoke = FALSE;
    g_autofree char *schema_path = NULL;
    GOptionEntry entries[] = {
        {"events", 0, 0, G_OPTION_ARG_INT64, &events, "events per pass", "N"},
        {"batch", 0, 0, G_OPTION_ARG_INT64, &batch, "events per batch", "B"},
        {"repeats", 0, 0, G_OPTION_ARG_INT64, &repeats, "repeats (median reported)", "R"},
        {"schema", 0, 0, G_OPTION_ARG_FILENAME, &schema_path, "schema file", "PATH"},
        {"smoke", 0, 0, G_OPTION_ARG_NONE, &smoke, "tiny run, for CI", NULL},
        {NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- transform-validate benchmark");
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error))
        g_error("%s", error->message);
    if (smoke)
        events = 2000, repeats = 1;
    if (!schema_path)
        schema_path = g_build_filename(g_getenv("ECF_SOURCE_DIR") ? g_getenv("ECF_SOURCE_DIR") : ".", "pipelines",
                                       "schemas", "ecommerce_event.yaml", NULL);
    tv_schema *s = tv_schema_load(schema_path, &error);
    if (!s)
        g_error("%s", error->message);

    corpus c;
    make_corpus(&c, (size_t)events);
    double *walk = g_new(double, repeats), *full = g_new(double, repeats);
    size_t valid = 0;
    for (gint64 r = 0; r < repeats; r++) {
        walk[r] = pass_walk(&c);
        full[r] = pass_validate(&c, s, (uint32_t)batch, &valid);
    }
    qsort(walk, (size_t)repeats, sizeof *walk, cmp_double);
    qsort(full, (size_t)repeats, sizeof *full, cmp_double);
    double tw = walk[repeats / 2], tf = full[repeats / 2];
    double mb = (double)c.bytes / 1e6;
    printf("events: %" G_GINT64_FORMAT " (%.0f bytes on average), batch %" G_GINT64_FORMAT
           ", median of %" G_GINT64_FORMAT "\n",
           events, (double)c.bytes / (double)events, batch, repeats);
    double bw = walk[0], bf = full[0];
    printf("| pass | events/s | MB/s | ns/event | best: events/s | MB/s |\n|---|---|---|---|---|---|\n");
    printf("| walk (JSON parse, every value) | %.0f | %.0f | %.0f | %.0f | %.0f |\n", (double)events / tw, mb / tw,
           tw * 1e9 / (double)events, (double)events / bw, mb / bw);
    printf("| validate (walk + rules + columns + Arrow export) | %.0f | %.0f | %.0f | %.0f | %.0f |\n",
           (double)events / tf, mb / tf, tf * 1e9 / (double)events, (double)events / bf, mb / bf);
    printf("share of validate's time in the JSON walk: %.0f%% (median), %.0f%% (best)\n", 100.0 * tw / tf,
           100.0 * bw / bf);
    if (valid != (size_t)events)
        g_error("only %zu of %" G_GINT64_FORMAT " events valid", valid, events);
    g_free(walk);
    g_free(full);
    g_free(c.arena);
    g_free(c.offset);
    g_free(c.len);
    tv_schema_free(s);
    return 0;
}
