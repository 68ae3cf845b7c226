/*
 * Test fixture, never installed: a sink whose verdicts a test chooses, so
 * source-http's answers to downstream trouble can be checked end to end.
 *
 *   mode: ack      acknowledge at once
 *         nack     fail every message with `status` and `reason`
 *         hold     keep the tokens and settle them `delay` later (ack),
 *                  which outlives a short ack_timeout
 *         block    sleep `delay` in process, then ack: the ring fills and
 *                  the source sees backpressure
 * In every mode a payload containing "fail":true is failed like nack, so one
 * request can get mixed verdicts.
 */
#define _GNU_SOURCE
#include <ecflow/plugin.h>

#include <glib.h>
#include <string.h>

typedef struct {
    char   *mode;
    char   *status;
    char   *reason;
    int64_t delay_us;
} verdict_config;

static const ecf_option verdict_options[] = {
    ECF_OPT_ENUM("mode", verdict_config, mode, "ack", "ack|nack|hold|block",
                 "what to do with every message"),
    ECF_OPT_ENUM("status", verdict_config, status, "unavailable", "unavailable|invalid",
                 "failure status for nack (and for payloads marked \"fail\": true)"),
    ECF_OPT_STRING("reason", verdict_config, reason, "broker unreachable", ECF_OPTIONAL,
                   "failure reason for nack"),
    ECF_OPT_DURATION("delay", verdict_config, delay_us, "2s", 0, 3600,
                     "hold: time before settling; block: time process sleeps"),
    ECF_OPT_END,
};

typedef struct {
    ecf_token *token;
    int64_t    due_us;
} held;

typedef struct {
    GArray *held;
} verdict_state;

static ecf_status verdict_create(ecf_stage *s)
{
    verdict_state *st = g_new0(verdict_state, 1);
    st->held = g_array_new(FALSE, FALSE, sizeof(held));
    ecf_set_state(s, st);
    return ECF_OK;
}

static ecf_status fail_status(const verdict_config *cfg)
{
    return strcmp(cfg->status, "invalid") == 0 ? ECF_ERR_INVALID : ECF_ERR_UNAVAILABLE;
}

static bool marked_fail(const ecf_message *m)
{
    return memmem(m->payload, m->payload_len, "\"fail\":true", 11) != NULL;
}

static ecf_status verdict_process(ecf_stage *s, ecf_batch *b)
{
    const verdict_config *cfg = ecf_config(s);
    verdict_state *st = ecf_state(s);
    uint32_t n = ecf_batch_count(s, b);
    if (strcmp(cfg->mode, "block") == 0)
        g_usleep((gulong)cfg->delay_us);
    for (uint32_t i = 0; i < n; i++) {
        ecf_message *m = ecf_batch_message(s, b, i);
        if (strcmp(cfg->mode, "nack") == 0 || marked_fail(m)) {
            ecf_nack(s, m, fail_status(cfg), cfg->reason);
        } else if (strcmp(cfg->mode, "hold") == 0) {
            held h = {ecf_hold(s, m), ecf_monotonic_us(s) + cfg->delay_us};
            g_array_append_val(st->held, h);
        } else {
            ecf_ack(s, m);
        }
    }
    return ECF_OK;
}

static void settle_due(ecf_stage *s, bool all)
{
    verdict_state *st = ecf_state(s);
    int64_t now = ecf_monotonic_us(s);
    guint kept = 0;
    for (guint i = 0; i < st->held->len; i++) {
        held h = g_array_index(st->held, held, i);
        if (all || h.due_us <= now)
            ecf_settle(s, h.token, ECF_OK, NULL);
        else
            g_array_index(st->held, held, kept++) = h;
    }
    g_array_set_size(st->held, kept);
}

static ecf_status verdict_tick(ecf_stage *s, int64_t now_us)
{
    settle_due(s, false);
    return ECF_OK;
}

static ecf_status verdict_flush(ecf_stage *s)
{
    settle_due(s, true);
    return ECF_OK;
}

static void verdict_destroy(ecf_stage *s)
{
    verdict_state *st = ecf_state(s);
    if (!st)
        return;
    settle_due(s, true);
    g_array_free(st->held, TRUE);
    g_free(st);
}

ECF_PLUGIN_DEFINE(
    .name = "sink-verdict",
    .kind = ECF_SINK,
    .version = "0.0.0",
    .summary = "Test fixture: acks, nacks, holds or stalls as told",
    .config_size = sizeof(verdict_config),
    .options = verdict_options,
    .tick_interval_us = 50000,
    .create = verdict_create,
    .process = verdict_process,
    .tick = verdict_tick,
    .flush = verdict_flush,
    .destroy = verdict_destroy,
);
