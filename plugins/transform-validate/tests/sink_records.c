/*
 * Test fixture: a sink that reads the Arrow records on each batch, checks
 * them the way an independent Arrow reader would (arrow_rows.h), and writes
 * each row back as one NDJSON line, with the message's key, event time,
 * headers and payload length beside the columns:
 *   {"_key":"s1","_event_time_us":1709251200067000,"_headers":{},"_payload_len":212,"event_id":"…",…}
 * so a test can compare values exactly with what the source produced.
 * An unsound batch is failed (and logged), never written. On an input
 * without records (e.g. a dead-letter port) it writes the payload instead:
 *   {"_key":…,"_event_time_us":…,"_headers":{"name":"value"},"_payload":"…"}
 */
#include <ecflow/plugin.h>

#include "arrow_rows.h"

#include <errno.h>
#include <stdio.h>

typedef struct {
    char *path;
} records_config;

static const ecf_option records_options[] = {
    ECF_OPT_STRING("path", records_config, path, NULL, ECF_REQUIRED, "NDJSON output file"),
    ECF_OPT_END,
};

typedef struct {
    FILE *out;
    const struct ArrowSchema *schema; /* the upstream port's; lives as long as the pipeline */
    GString *line;
} records_state;

static ecf_status records_create(ecf_stage *s)
{
    const struct ArrowSchema *in = ecf_input_schema(s, 0); /* NULL: raw messages */
    records_state *st = g_new0(records_state, 1);
    st->schema = in;
    st->line = g_string_new(NULL);
    ecf_set_state(s, st);
    return ECF_OK;
}

static ecf_status records_start(ecf_stage *s)
{
    records_config *cfg = ecf_config(s);
    records_state *st = ecf_state(s);
    st->out = fopen(cfg->path, "w");
    if (!st->out)
        return ecf_fail(s, ECF_ERR_IO, "cannot open %s: %s", cfg->path, g_strerror(errno));
    return ECF_OK;
}

static void message_prefix(GString *line, const ecf_message *m)
{
    g_string_append(line, "{\"_key\":");
    if (m->key)
        arrow_json_string(line, (const char *)m->key, m->key_len);
    else
        g_string_append(line, "null");
    g_string_append_printf(line, ",\"_event_time_us\":%" PRId64 ",\"_headers\":{", m->event_time_us);
    for (uint32_t h = 0; h < m->n_headers; h++) {
        if (h)
            g_string_append_c(line, ',');
        arrow_json_string(line, m->headers[h].name, strlen(m->headers[h].name));
        g_string_append_c(line, ':');
        arrow_json_string(line, (const char *)m->headers[h].value, m->headers[h].value_len);
    }
    g_string_append(line, "},");
}

static ecf_status records_process(ecf_stage *s, ecf_batch *b)
{
    records_state *st = ecf_state(s);
    const struct ArrowArray *a = ecf_batch_records(s, b);
    uint32_t n = ecf_batch_count(s, b);
    if (st->schema && !a)
        return ecf_fail(s, ECF_ERR_INVALID, "batch of %u messages without records", n);
    if (a && a->length != (int64_t)n)
        return ecf_fail(s, ECF_ERR_INVALID, "records have %" PRId64 " rows for %u messages", a->length, n);
    if (a) {
        g_autofree char *bad = arrow_check(st->schema, a);
        if (bad) {
            ecf_log(s, ECF_LOG_ERROR, "unsound records: %s", bad);
            return ecf_fail(s, ECF_ERR_INVALID, "unsound records: %s", bad);
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        const ecf_message *m = ecf_batch_message(s, b, i);
        g_string_truncate(st->line, 0);
        message_prefix(st->line, m);
        if (a) {
            g_string_append_printf(st->line, "\"_payload_len\":%u,", m->payload_len);
            GString *row = g_string_new(NULL);
            arrow_row(row, st->schema, a, i);
            g_string_append(st->line, row->str + 1); /* merge the row's members */
            g_string_free(row, TRUE);
        } else {
            g_string_append(st->line, "\"_payload\":");
            arrow_json_string(st->line, m->payload ? (const char *)m->payload : "", m->payload_len);
            g_string_append_c(st->line, '}');
        }
        g_string_append_c(st->line, '\n');
        fwrite(st->line->str, 1, st->line->len, st->out);
    }
    if (fflush(st->out) != 0)
        return ecf_fail(s, ECF_ERR_IO, "write failed: %s", g_strerror(errno));
    ecf_batch_ack_all(s, b);
    return ECF_OK;
}

static void records_stop(ecf_stage *s)
{
    records_state *st = ecf_state(s);
    if (st->out)
        fclose(st->out);
    st->out = NULL;
}

static void records_destroy(ecf_stage *s)
{
    records_state *st = ecf_state(s);
    if (!st)
        return;
    g_string_free(st->line, TRUE);
    g_free(st);
}

ECF_PLUGIN_DEFINE(
    .name = "sink-records",
    .kind = ECF_SINK,
    .version = "0.0.1",
    .summary = "test fixture: checks Arrow records and writes them as NDJSON",
    .config_size = sizeof(records_config),
    .options = records_options,
    .create = records_create,
    .start = records_start,
    .process = records_process,
    .stop = records_stop,
    .destroy = records_destroy,
)
