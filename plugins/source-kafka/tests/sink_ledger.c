/*
 * Test fixture, never installed: a sink whose behaviour the source-kafka
 * integration test chooses, so offsets can be checked against what a sink
 * really did.
 *
 *   path        every payload it accepts is appended as one line (then acked)
 *   fail_match  payloads containing this string are failed (nacked, not written)
 *   fail_times  ... only the first N of them (0 = always)
 *   delay       sleep this long per batch: a slow sink, so the rings fill up
 *   hold        write at once but acknowledge only this much later (in tick),
 *               the way a sink that commits periodically (Iceberg) does
 *   with_origin each line is {"topic":..,"partition":..,"offset":..,"key":..,
 *               "event_time_us":..,"headers":{..},"payload":<the payload>} (keys,
 *               headers and payloads must be JSON-safe; the test's are)
 */
#define _GNU_SOURCE
#include <ecflow/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char   *path;
    char   *fail_match;
    int64_t fail_times;
    int64_t delay_us;
    int64_t hold_us;
    bool    with_origin;
} ledger_config;

static const ecf_option ledger_options[] = {
    ECF_OPT_STRING("path", ledger_config, path, NULL, ECF_REQUIRED,
                   "file every accepted payload is appended to, one per line"),
    ECF_OPT_STRING("fail_match", ledger_config, fail_match, NULL, ECF_OPTIONAL,
                   "fail every message whose payload contains this"),
    ECF_OPT_INT("fail_times", ledger_config, fail_times, "0", 0, 1000000,
                "fail only the first N matching messages; 0 = always"),
    ECF_OPT_DURATION("delay", ledger_config, delay_us, "0s", 0, 3600,
                     "sleep this long per batch"),
    ECF_OPT_DURATION("hold", ledger_config, hold_us, "0s", 0, 3600,
                     "acknowledge this long after writing"),
    ECF_OPT_BOOL("with_origin", ledger_config, with_origin, "false",
                 "write topic, partition, offset, key and event time with each payload"),
    ECF_OPT_END,
};

typedef struct {
    ecf_token *token;
    int64_t    due_us;
} held;

typedef struct {
    int     fd;
    int64_t failed;
    held   *held;
    size_t  n_held, cap_held;
} ledger_state;

static ecf_status ledger_create(ecf_stage *s)
{
    ledger_state *st = calloc(1, sizeof *st);
    st->fd = -1;
    ecf_set_state(s, st);
    return ECF_OK;
}

static ecf_status ledger_start(ecf_stage *s)
{
    const ledger_config *cfg = ecf_config(s);
    ledger_state *st = ecf_state(s);
    st->fd = open(cfg->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (st->fd < 0)
        return ecf_fail(s, ECF_ERR_IO, "cannot open '%s': %s", cfg->path, strerror(errno));
    return ECF_OK;
}

static void write_line(ledger_state *st, const ecf_message *m, bool with_origin)
{
    char *line = NULL;
    size_t left = 0;
    if (with_origin) {
        const char *topic = m->origin.topic ? m->origin.topic : "";
        size_t cap = m->payload_len + m->key_len + strlen(topic) + 256;
        for (uint32_t i = 0; i < m->n_headers; i++)
            cap += strlen(m->headers[i].name) + m->headers[i].value_len + 8;
        line = malloc(cap);
        int n = snprintf(line, cap,
                         "{\"topic\":\"%s\",\"partition\":%d,\"offset\":%lld,\"key\":\"%.*s\","
                         "\"event_time_us\":%lld,\"headers\":{",
                         topic, (int)m->origin.partition, (long long)m->origin.offset,
                         (int)m->key_len, (const char *)m->key, (long long)m->event_time_us);
        for (uint32_t i = 0; i < m->n_headers && n > 0; i++)
            n += snprintf(line + n, cap - (size_t)n, "%s\"%s\":\"%.*s\"", i ? "," : "",
                          m->headers[i].name, (int)m->headers[i].value_len,
                          (const char *)m->headers[i].value);
        n += snprintf(line + n, cap - (size_t)n, "},\"payload\":%.*s}\n", (int)m->payload_len,
                      (const char *)m->payload);
        left = n > 0 ? (size_t)n : 0;
    } else {
        line = malloc(m->payload_len + 1);
        memcpy(line, m->payload, m->payload_len);
        line[m->payload_len] = '\n';
        left = m->payload_len + 1;
    }
    const char *p = line;
    while (left) {
        ssize_t w = write(st->fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        left -= (size_t)w;
    }
    free(line);
}

static void settle_due(ecf_stage *s, ledger_state *st, bool all)
{
    int64_t now = ecf_monotonic_us(s);
    size_t kept = 0;
    for (size_t i = 0; i < st->n_held; i++) {
        if (all || st->held[i].due_us <= now)
            ecf_settle(s, st->held[i].token, ECF_OK, NULL);
        else
            st->held[kept++] = st->held[i];
    }
    st->n_held = kept;
}

static ecf_status ledger_process(ecf_stage *s, ecf_batch *b)
{
    const ledger_config *cfg = ecf_config(s);
    ledger_state *st = ecf_state(s);
    if (cfg->delay_us) {
        struct timespec ts = {.tv_sec = cfg->delay_us / 1000000,
                              .tv_nsec = (cfg->delay_us % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
    uint32_t n = ecf_batch_count(s, b);
    for (uint32_t i = 0; i < n; i++) {
        ecf_message *m = ecf_batch_message(s, b, i);
        if (cfg->fail_match && memmem(m->payload, m->payload_len, cfg->fail_match,
                                      strlen(cfg->fail_match)) &&
            (cfg->fail_times == 0 || st->failed < cfg->fail_times)) {
            st->failed++;
            ecf_nack(s, m, ECF_ERR_UNAVAILABLE, "ledger: refused by fail_match");
            continue;
        }
        write_line(st, m, cfg->with_origin);
        if (cfg->hold_us) {
            if (st->n_held == st->cap_held) {
                st->cap_held = st->cap_held ? st->cap_held * 2 : 1024;
                st->held = realloc(st->held, st->cap_held * sizeof *st->held);
            }
            st->held[st->n_held++] = (held){ecf_hold(s, m), ecf_monotonic_us(s) + cfg->hold_us};
        } else {
            ecf_ack(s, m);
        }
    }
    return ECF_OK;
}

static ecf_status ledger_tick(ecf_stage *s, int64_t now_us)
{
    settle_due(s, ecf_state(s), false);
    return ECF_OK;
}

static ecf_status ledger_flush(ecf_stage *s)
{
    settle_due(s, ecf_state(s), true);
    return ECF_OK;
}

static void ledger_stop(ecf_stage *s)
{
    ledger_state *st = ecf_state(s);
    settle_due(s, st, true);
    if (st->fd >= 0)
        close(st->fd);
    st->fd = -1;
}

static void ledger_destroy(ecf_stage *s)
{
    ledger_state *st = ecf_state(s);
    free(st->held);
    free(st);
}

ECF_PLUGIN_DEFINE(
    .name = "sink-ledger",
    .kind = ECF_SINK,
    .version = "0.0.1",
    .summary = "test fixture: appends payloads to a file; fails, stalls or holds acks on request",
    .config_size = sizeof(ledger_config),
    .options = ledger_options,
    .tick_interval_us = 10000,
    .create = ledger_create,
    .start = ledger_start,
    .process = ledger_process,
    .tick = ledger_tick,
    .flush = ledger_flush,
    .stop = ledger_stop,
    .destroy = ledger_destroy,
)
