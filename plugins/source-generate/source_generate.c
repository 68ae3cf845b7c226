/*
 * source-generate: synthetic shopper sessions in the seed's event model.
 *
 * Each session belongs to one user on one device in one city and walks a
 * small funnel (views and searches, some cart changes, sometimes a
 * purchase), so keys, types and timestamps look like real traffic. Events
 * are built with snprintf into the batch; nothing is allocated per event.
 * With a seed the stream is reproducible byte for byte.
 */
#define _GNU_SOURCE /* strptime, timegm */
#include <ecflow/plugin.h>

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    int64_t count;
    double rate;
    int64_t seed;
    double invalid_ratio;
    int64_t batch_size;
    int64_t sessions;
    char *start_time;
} gen_config;

static const ecf_option gen_options[] = {
    ECF_OPT_INT("count", gen_config, count, "1000", 0, 1e12, "events to generate; 0 = until stopped"),
    ECF_OPT_DOUBLE("rate", gen_config, rate, "0", 0, 1e9, "events per second; 0 = as fast as possible"),
    ECF_OPT_INT("seed", gen_config, seed, "0", 0, 9.2e18, "random seed; the same seed gives the same events"),
    ECF_OPT_DOUBLE("invalid_ratio", gen_config, invalid_ratio, "0", 0, 1,
                   "share of events that are malformed JSON or break the schema (for tests)"),
    ECF_OPT_INT("batch_size", gen_config, batch_size, "0", 0, 1048576,
                "events per batch; 0 = the pipeline's batch_size"),
    ECF_OPT_INT("sessions", gen_config, sessions, "1000", 1, 10000000, "concurrent shopper sessions"),
    ECF_OPT_STRING("start_time", gen_config, start_time, NULL, 0,
                   "event time of the first event, ISO 8601 UTC (default: now)"),
    ECF_OPT_END,
};

typedef struct {
    uint64_t id; /* session number, for session_id */
    uint32_t user;
    uint8_t city, device;
    uint16_t left; /* events before the session ends */
    uint32_t cart; /* product in the cart, 0 = empty */
} session;

typedef struct {
    uint64_t rng;
    session *sessions;
    uint64_t next_session;
    int64_t event_time_us;
    int64_t generated;
    _Atomic int64_t durable, failed, dropped;
    ecf_metric *m_generated;
    uint32_t batch_size;
} gen_state;

static const char *const cities[] = {"Berlin", "London", "Paris",  "New York", "São Paulo",
                                     "Tokyo",  "Lagos",  "Mumbai", "Sydney",   "Toronto"};
static const char *const devices[] = {"mobile", "desktop", "tablet"};
static const char *const queries[] = {"running shoes", "usb-c cable", "coffee grinder", "yoga mat",
                                      "headphones",    "desk lamp",   "water bottle",   "backpack"};
static const char *const currencies[] = {"EUR", "USD", "GBP"};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t next_u64(uint64_t *s)
{
    /* splitmix64: tiny, fast, good enough for synthetic data */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint32_t below(gen_state *st, uint32_t n) { return (uint32_t)(next_u64(&st->rng) % n); }
static double unit(gen_state *st) { return (next_u64(&st->rng) >> 11) * 0x1.0p-53; }

static void new_session(gen_state *st, session *s)
{
    s->id = ++st->next_session;
    s->user = below(st, 100000);
    s->city = (uint8_t)below(st, N(cities));
    s->device = (uint8_t)below(st, N(devices));
    s->left = (uint16_t)(3 + below(st, 25));
    s->cart = 0;
}

static void format_uuid(gen_state *st, char out[37])
{
    uint64_t a = next_u64(&st->rng), b = next_u64(&st->rng);
    a = (a & ~0xF000ull) | 0x4000ull;                        /* version 4 */
    b = (b & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull; /* RFC 4122 variant */
    snprintf(out, 37, "%08" PRIx32 "-%04" PRIx32 "-%04" PRIx32 "-%04" PRIx32 "-%012" PRIx64, (uint32_t)(a >> 32),
             (uint32_t)(a >> 16) & 0xFFFF, (uint32_t)a & 0xFFFF, (uint32_t)(b >> 48),
             (uint64_t)(b & 0xFFFFFFFFFFFFull));
}

static void format_time(int64_t us, char out[32])
{
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)((us / 1000) % 1000));
}

static const char *pick_type(gen_state *st, session *s)
{
    double r = unit(st);
    if (s->cart && r < 0.10)
        return "purchase";
    if (s->cart && r < 0.16)
        return "remove_from_cart";
    if (r < 0.30)
        return "add_to_cart";
    if (r < 0.45)
        return "search";
    return "page_view";
}

/* Writes one valid event; returns its length. */
static int format_event(gen_state *st, session *s, char *buf, size_t cap)
{
    char id[37], ts[32];
    format_uuid(st, id);
    format_time(st->event_time_us, ts);
    const char *type = pick_type(st, s);
    int n = snprintf(buf, cap,
                     "{\"event_id\":\"%s\",\"event_type\":\"%s\",\"user_id\":\"u%06" PRIu32 "\","
                     "\"session_id\":\"s%012" PRIx64 "\",\"location\":\"%s\",\"device\":\"%s\","
                     "\"timestamp\":\"%s\"",
                     id, type, s->user, s->id, cities[s->city], devices[s->device], ts);
    uint32_t product = s->cart ? s->cart : 1000 + below(st, 9000);
    if (strcmp(type, "search") == 0) {
        n += snprintf(buf + n, cap - (size_t)n, ",\"query\":\"%s\"", queries[below(st, N(queries))]);
    } else if (strcmp(type, "page_view") == 0) {
        n += snprintf(buf + n, cap - (size_t)n, ",\"page_url\":\"/p/%" PRIu32 "\",\"product_id\":\"p%" PRIu32 "\"",
                      product, product);
    } else {
        uint32_t cents = 199 + below(st, 50000);
        n += snprintf(buf + n, cap - (size_t)n,
                      ",\"product_id\":\"p%" PRIu32 "\",\"price\":%" PRIu32 ".%02" PRIu32 ",\"quantity\":%" PRIu32
                      ",\"currency\":\"%s\"",
                      product, cents / 100, cents % 100, 1 + below(st, 4), currencies[s->city % N(currencies)]);
        s->cart = strcmp(type, "add_to_cart") == 0 ? product : 0;
    }
    n += snprintf(buf + n, cap - (size_t)n, "}");
    return n;
}

/* Breaks a valid event in one of the ways real clients do. */
static int corrupt_event(gen_state *st, char *buf, int len, size_t cap)
{
    switch (below(st, 4)) {
    case 0: /* truncated: malformed JSON */ return len / 2;
    case 1: { /* wrong type */
        char *p = strstr(buf, "\"timestamp\":\"");
        if (p)
            memcpy(p + 13, "not-a-time", 10);
        return len;
    }
    case 2: { /* unknown event type */
        char *p = strstr(buf, "\"event_type\":\"");
        if (p)
            p[14] = 'X';
        return len;
    }
    default: { /* required field missing: user_id renamed */
        char *p = strstr(buf, "\"user_id\"");
        if (p)
            memcpy(p + 1, "usr_id_", 7);
        return len;
    }
    }
    (void)cap;
}

static void on_settle(void *user, uint64_t events, ecf_status outcome, const char *reason)
{
    gen_state *st = user;
    if (outcome == ECF_OK)
        atomic_fetch_add(&st->durable, (int64_t)events);
    else if (outcome == ECF_ERR_DROPPED)
        atomic_fetch_add(&st->dropped, (int64_t)events);
    else
        atomic_fetch_add(&st->failed, (int64_t)events);
}

static int64_t parse_start(const char *s, int64_t fallback)
{
    struct tm tm = {0};
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
        return fallback;
    return (int64_t)timegm(&tm) * 1000000;
}

static ecf_status gen_create(ecf_stage *stage)
{
    gen_config *cfg = ecf_config(stage);
    if (cfg->start_time && parse_start(cfg->start_time, -1) < 0)
        return ecf_error(stage, "option 'start_time': expected YYYY-MM-DDTHH:MM:SSZ, got \"%s\"", cfg->start_time);
    gen_state *st = calloc(1, sizeof *st);
    st->rng = (uint64_t)cfg->seed * 0x2545F4914F6CDD1Dull + 1;
    st->sessions = calloc((size_t)cfg->sessions, sizeof(session));
    for (int64_t i = 0; i < cfg->sessions; i++)
        new_session(st, &st->sessions[i]);
    st->event_time_us = parse_start(cfg->start_time, ecf_now_us(stage));
    const char *bs = ecf_pipeline_setting(stage, "batch_size");
    st->batch_size = (uint32_t)(cfg->batch_size ? cfg->batch_size : bs ? atoll(bs) : 1024);
    st->m_generated = ecf_metric_new(stage, ECF_METRIC_COUNTER, "generated_events_total", "Events generated");
    ecf_set_state(stage, st);
    return ECF_OK;
}

/* Sleeps so that `done` events take done/rate seconds, waking for stops. */
static void pace(ecf_stage *stage, double rate, int64_t start_us, int64_t done)
{
    if (rate <= 0)
        return;
    int64_t due = start_us + (int64_t)(done / rate * 1e6);
    for (;;) {
        int64_t now = ecf_monotonic_us(stage);
        if (now >= due || ecf_should_stop(stage))
            return;
        int64_t wait = due - now < 50000 ? due - now : 50000;
        struct timespec ts = {0, (long)wait * 1000};
        nanosleep(&ts, NULL);
    }
}

static ecf_status gen_run(ecf_stage *stage)
{
    gen_config *cfg = ecf_config(stage);
    gen_state *st = ecf_state(stage);
    char buf[1024];
    int64_t start = ecf_monotonic_us(stage);
    while (!ecf_should_stop(stage) && (cfg->count == 0 || st->generated < cfg->count)) {
        uint32_t n = st->batch_size;
        if (cfg->count && (int64_t)n > cfg->count - st->generated)
            n = (uint32_t)(cfg->count - st->generated);
        if (cfg->rate > 0 && n > cfg->rate / 10 + 1)
            n = (uint32_t)(cfg->rate / 10 + 1); /* at low rates, small batches keep latency low */
        ecf_batch *b = ecf_batch_new(stage);
        ecf_token *tok = ecf_token_new(stage, on_settle, st, n);
        for (uint32_t i = 0; i < n; i++) {
            session *s = &st->sessions[below(st, (uint32_t)cfg->sessions)];
            int len = format_event(st, s, buf, sizeof buf);
            if (cfg->invalid_ratio > 0 && unit(st) < cfg->invalid_ratio)
                len = corrupt_event(st, buf, len, sizeof buf);
            char key[24];
            int klen = snprintf(key, sizeof key, "s%012" PRIx64, s->id);
            ecf_message_init m = {
                .payload = buf,
                .payload_len = (size_t)len,
                .key = key,
                .key_len = (size_t)klen,
                .event_time_us = st->event_time_us,
                .origin = {.kind = ECF_ORIGIN_GENERATED, .partition = -1, .offset = st->generated + i},
                .token = tok,
            };
            ecf_batch_add(stage, b, &m);
            st->event_time_us += 1000 + below(st, 20000);
            if (--s->left == 0)
                new_session(st, s);
        }
        ecf_token_release(stage, tok);
        st->generated += n;
        ecf_metric_add(stage, st->m_generated, n);
        if (ecf_emit(stage, NULL, b) != ECF_OK)
            return ECF_ERR_STOPPED;
        pace(stage, cfg->rate, start, st->generated);
    }
    return ECF_OK;
}

static void gen_stop(ecf_stage *stage)
{
    gen_state *st = ecf_state(stage);
    ecf_log(stage, ECF_LOG_INFO,
            "generated %" PRId64 " events: %" PRId64 " durable, %" PRId64 " failed, %" PRId64 " taken by no sink",
            st->generated, atomic_load(&st->durable), atomic_load(&st->failed), atomic_load(&st->dropped));
}

static void gen_destroy(ecf_stage *stage)
{
    gen_state *st = ecf_state(stage);
    if (!st)
        return;
    free(st->sessions);
    free(st);
}

ECF_PLUGIN_DEFINE(.name = "source-generate", .kind = ECF_SOURCE, .version = "1.0.0",
                  .summary = "Synthetic e-commerce shopper sessions (seeded, rate-limited, optionally invalid)",
                  .config_size = sizeof(gen_config), .options = gen_options, .create = gen_create, .run = gen_run,
                  .stop = gen_stop, .destroy = gen_destroy, )
