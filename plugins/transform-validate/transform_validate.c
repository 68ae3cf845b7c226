/*
 * transform-validate: parses every event (simdjson On-Demand), checks it
 * against a YAML schema, and emits typed records (Arrow C Data Interface) on
 * `default`; rejected events go to `invalid` as dead-letter envelopes, or
 * are failed back to their source. README.md beside this file has the
 * schema format and the decisions behind the rules.
 *
 * Per input batch: one column set from the stage's pool, one output batch
 * whose message i is valid input message i (sharing its ack token through
 * `.parent`) with record row i, and at most one dead-letter batch.
 */
#include <ecflow/plugin.h>

#include "dead_letter.h"
#include "json_walk.h"
#include "schema.h"
#include "validate.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *schema;
    int64_t max_future;
    char *on_invalid;
    char *key_field;
    bool keep_payload;
    int64_t max_depth;
    char *input;
} tv_config;

static const ecf_option tv_options[] = {
    ECF_OPT_FILE("schema", tv_config, schema, NULL, ECF_REQUIRED,
                 "path of the YAML schema file events are checked against "
                 "(format: plugins/transform-validate/README.md)"),
    ECF_OPT_DURATION("max_future", tv_config, max_future, "1h", 0, 3153600000.0,
                     "how far past the wall clock a timestamp may lie, for timestamp fields "
                     "whose schema sets no max_future of its own"),
    ECF_OPT_ENUM("on_invalid", tv_config, on_invalid, "auto", "auto|nack|dead-letter",
                 "what happens to an event that fails validation: nack = fail it back to its "
                 "source with the reason (an HTTP client gets 422); dead-letter = send an "
                 "envelope with the reason and the original bytes to the 'invalid' port, "
                 "whose sink acks it; auto = dead-letter when a stage reads 'invalid', "
                 "nack otherwise"),
    ECF_OPT_STRING("key_field", tv_config, key_field, NULL, 0,
                   "string field whose value becomes the key of each valid record's message; "
                   "default: the incoming key is kept"),
    ECF_OPT_BOOL("keep_payload", tv_config, keep_payload, "true",
                 "copy each valid event's original bytes onto its output message next to the "
                 "record; false = records only (payload empty), which saves a copy when every "
                 "consumer reads records"),
    ECF_OPT_INT("max_depth", tv_config, max_depth, "64", 1, 1000,
                "deepest nesting of objects and arrays accepted in an event (the event itself is 1)"),
    ECF_OPT_ENUM("input", tv_config, input, "event", "event|dead-letter",
                 "event = each payload is an event; dead-letter = each payload is a dead-letter envelope "
                 "(a DLQ topic's message) and the event it carries (raw, or raw_base64) is validated and, "
                 "when valid, emitted with its original bytes: a replay once the schema or the producer "
                 "is fixed (pipelines/replay_dlq.yaml)"),
    ECF_OPT_END,
};

#define SAMPLE_FIRST 5
#define SAMPLE_EVERY_US (10 * 1000000LL)

typedef struct {
    tv_schema *schema;
    tv_validator *validator;
    tv_pool *pool;
    bool dead_letter;
    GString *envelope;
    /* input: dead-letter */
    tvj_walker *unwrap;
    GByteArray *raw; /* the carried event, TVJ_PADDING zero bytes after it */
    bool raw_found;
    ecf_metric *m_valid;
    ecf_metric *m_invalid[TV_REASON_COUNT];
    ecf_metric *m_errors;
    /* stage thread only */
    uint64_t valid, invalid[TV_REASON_COUNT];
    uint64_t sampled, suppressed;
    int64_t next_sample_us;
    uint64_t burst_from[TV_REASON_COUNT]; /* st->invalid when the burst window opened */
    int64_t burst_window_end_us;
} tv_state;

static void state_free(tv_state *st)
{
    if (!st)
        return;
    tv_validator_free(st->validator);
    tv_pool_close(st->pool);
    tv_schema_free(st->schema);
    if (st->envelope)
        g_string_free(st->envelope, TRUE);
    tvj_walker_free(st->unwrap);
    if (st->raw)
        g_byte_array_free(st->raw, TRUE);
    free(st);
}

static ecf_status tv_create(ecf_stage *stage)
{
    tv_config *cfg = ecf_config(stage);
    tv_state *st = calloc(1, sizeof *st);
    if (!st)
        return ECF_ERR_NOMEM;
    GError *error = NULL;
    st->schema = tv_schema_load(cfg->schema, &error);
    if (!st->schema) {
        ecf_error(stage, "option 'schema': %s", error->message);
        g_error_free(error);
        state_free(st);
        return ECF_ERR_CONFIG;
    }
    const char *why = NULL;
    st->validator = tv_validator_new(st->schema, cfg->max_future, (uint32_t)cfg->max_depth, cfg->key_field, &why);
    if (!st->validator) {
        ecf_status s = why ? ecf_error(stage, "option 'key_field': '%s' %s in %s", cfg->key_field, why, cfg->schema)
                           : ECF_ERR_NOMEM;
        state_free(st);
        return s;
    }
    tv_col_kind kinds[1024];
    bool nullable[1024];
    uint32_t n = tv_validator_columns(st->schema, kinds, nullable, 1024);
    if (n > 1024) {
        state_free(st);
        return ecf_error(stage, "option 'schema': %s has more than 1021 fields", cfg->schema);
    }
    /* Sets in flight are about the batches in downstream rings; keep that many. */
    const char *rc = ecf_pipeline_setting(stage, "ring_capacity");
    long keep = rc ? atol(rc) + 2 : 16;
    st->pool = tv_pool_new(n, kinds, nullable, (uint32_t)(keep < 4 ? 4 : keep > 64 ? 64 : keep));
    st->envelope = g_string_sized_new(1024);
    if (!strcmp(cfg->input, "dead-letter")) {
        st->unwrap = tvj_walker_new((uint32_t)cfg->max_depth);
        st->raw = g_byte_array_sized_new(4096);
        if (!st->unwrap) {
            state_free(st);
            return ECF_ERR_NOMEM;
        }
    }
    st->dead_letter = strcmp(cfg->on_invalid, "dead-letter") == 0 ||
                      (strcmp(cfg->on_invalid, "auto") == 0 && ecf_port_connected(stage, "invalid"));
    if (!st->pool) {
        state_free(st);
        return ECF_ERR_NOMEM;
    }

    struct ArrowSchema as;
    tv_schema_export_arrow(st->schema, &as);
    if (ecf_declare_schema(stage, "default", &as) != ECF_OK) {
        if (as.release)
            as.release(&as);
        state_free(st);
        return ecf_error(stage, "could not declare the output schema");
    }

    st->m_valid = ecf_metric_new(stage, ECF_METRIC_COUNTER, "validate_valid_total",
                                 "Events that passed validation and were emitted as records");
    for (int r = TV_R_SYNTAX; r < TV_R_INTERNAL; r++) {
        char name[96];
        snprintf(name, sizeof name, "validate_invalid_total{reason=\"%s\"}", tv_reason_name((tv_reason)r));
        st->m_invalid[r] =
            ecf_metric_new(stage, ECF_METRIC_COUNTER, name, "Events that failed validation, by reason class");
        ecf_metric_status(stage, st->m_invalid[r], "invalid");
    }
    st->m_errors = ecf_metric_new(stage, ECF_METRIC_COUNTER, "validate_errors_total",
                                  "Events that could not be validated (out of memory), failed back");
    ecf_set_state(stage, st);
    return ECF_OK;
}

static void describe_origin(char *out, size_t cap, const ecf_message *m)
{
    const ecf_origin *o = &m->origin;
    switch (o->kind) {
    case ECF_ORIGIN_KAFKA:
        snprintf(out, cap, "kafka %s[%" PRId32 "]@%" PRId64, o->topic ? o->topic : "?", o->partition, o->offset);
        break;
    case ECF_ORIGIN_GENERATED: snprintf(out, cap, "generated #%" PRId64, o->offset); break;
    case ECF_ORIGIN_HTTP: snprintf(out, cap, "http #%" PRId64, o->offset); break;
    case ECF_ORIGIN_FILE: snprintf(out, cap, "%s:%" PRId64, o->topic ? o->topic : "file", o->offset); break;
    default: snprintf(out, cap, "unknown origin"); break;
    }
}

/* First SAMPLE_FIRST rejects, then one per SAMPLE_EVERY_US, so a flood of
 * bad events is visible in the log without drowning it. */
static void log_sample(ecf_stage *stage, tv_state *st, const ecf_message *m, const tv_error *err)
{
    int64_t now = ecf_monotonic_us(stage);
    if (st->sampled >= SAMPLE_FIRST && now < st->next_sample_us) {
        st->suppressed++;
        return;
    }
    char where[160], more[64] = "";
    describe_origin(where, sizeof where, m);
    if (st->suppressed)
        snprintf(more, sizeof more, " (%" PRIu64 " more since the last sample)", st->suppressed);
    ecf_log(stage, ECF_LOG_WARN, "invalid event (%s) %s: %s%s", where,
            err->reason == TV_R_INTERNAL ? "failed"
            : st->dead_letter            ? "sent to 'invalid'"
                                         : "nacked",
            err->message, more);
    st->sampled++;
    st->suppressed = 0;
    if (st->sampled >= SAMPLE_FIRST)
        st->next_sample_us = now + SAMPLE_EVERY_US;
}

static void reject(ecf_stage *stage, tv_state *st, ecf_message *m, const uint8_t *raw, size_t raw_len,
                   const tv_error *err, ecf_batch **dlq, int64_t now_us)
{
    log_sample(stage, st, m, err);
    if (err->reason == TV_R_INTERNAL) {
        ecf_metric_add(stage, st->m_errors, 1);
        ecf_nack(stage, m, ECF_ERR_NOMEM, err->message);
        return;
    }
    st->invalid[err->reason]++;
    if (!st->dead_letter) {
        ecf_nack(stage, m, ECF_ERR_INVALID, err->message);
        return;
    }
    char text[TV_ERROR_TEXT_MAX]; /* every problem, the first first */
    tv_error_text(err, text, sizeof text);
    tv_dead_letter d = {
        .reason = text,
        .klass = tv_reason_name(err->reason),
        .field = err->field,
        .stage = ecf_name(stage),
        .at_us = now_us,
        .origin = &m->origin,
        .raw = raw ? raw : (const uint8_t *)"",
        .raw_len = raw ? raw_len : 0,
    };
    if (!*dlq)
        *dlq = ecf_batch_new(stage);
    if (tv_dead_letter_add(stage, *dlq, m, &d, st->envelope) != ECF_OK)
        ecf_nack(stage, m, ECF_ERR_INVALID, err->message);
}

/* Moves the set's rows onto `out` and emits it; empty sets go back. */
static void emit_records(ecf_stage *stage, ecf_batch *out, tv_columns *cols)
{
    if (cols->rows == 0) {
        tv_columns_give_back(cols);
        ecf_batch_release(stage, out);
        return;
    }
    struct ArrowArray arr;
    tv_columns_export(cols, &arr);
    if (ecf_batch_set_records(stage, out, &arr) != ECF_OK) { /* cannot happen: rows == messages */
        arr.release(&arr);
        ecf_log(stage, ECF_LOG_ERROR, "records do not match their batch; failing it");
        ecf_batch_nack_all(stage, out, ECF_ERR_INTERNAL, "records do not match their batch");
        ecf_batch_release(stage, out);
        return;
    }
    ecf_emit(stage, NULL, out);
}

static const uint8_t no_payload[ECF_PAYLOAD_PADDING];

static void on_envelope_member(void *user, const tvj_member *m)
{
    tv_state *st = user;
    if (st->raw_found || m->type != TVJ_STRING)
        return;
    if (m->key_len == 3 && !memcmp(m->key, "raw", 3)) {
        g_byte_array_set_size(st->raw, 0);
        g_byte_array_append(st->raw, (const guint8 *)m->str, (guint)m->str_len);
        st->raw_found = true;
    } else if (m->key_len == 10 && !memcmp(m->key, "raw_base64", 10)) {
        g_autofree char *text = g_strndup(m->str, m->str_len);
        gsize n = 0;
        g_autofree guchar *bytes = g_base64_decode(text, &n);
        g_byte_array_set_size(st->raw, 0);
        g_byte_array_append(st->raw, bytes, (guint)n);
        st->raw_found = true;
    }
}

/* input: dead-letter: the event an envelope carries, into st->raw (padded).
 * False, with *err set, when the payload is not an envelope. */
static bool unwrap_dead_letter(tv_state *st, const uint8_t *payload, size_t len, const uint8_t **out, size_t *out_len,
                               tv_error *err)
{
    tvj_error je;
    st->raw_found = false;
    tvj_status s = tvj_walk(st->unwrap, payload, len, len + TVJ_PADDING, on_envelope_member, st, &je);
    if (s != TVJ_OK || !st->raw_found) {
        *err = (tv_error){.reason = s == TVJ_NOMEM ? TV_R_INTERNAL : TV_R_SYNTAX};
        snprintf(err->message, sizeof err->message, "not a dead-letter envelope: %s",
                 s != TVJ_OK ? je.message : "no \"raw\" or \"raw_base64\" member");
        return false;
    }
    size_t n = st->raw->len;
    g_byte_array_set_size(st->raw, (guint)(n + TVJ_PADDING));
    memset(st->raw->data + n, 0, TVJ_PADDING);
    *out = st->raw->data;
    *out_len = n;
    return true;
}

/* One "dlq_burst" event per SAMPLE_EVERY_US that saw invalid events: how
 * many, and how many of each reason class, for operators to search for. */
static void log_burst(ecf_stage *stage, tv_state *st)
{
    int64_t now = ecf_monotonic_us(stage);
    if (now < st->burst_window_end_us)
        return;
    const char *fields[2 * TV_REASON_COUNT + 8];
    char counts[TV_REASON_COUNT][24], total_s[24], window_s[24];
    int k = 0;
    uint64_t total = 0;
    for (int r = TV_R_SYNTAX; r < TV_R_INTERNAL; r++) {
        uint64_t d = st->invalid[r] - st->burst_from[r];
        total += d;
        if (!d)
            continue;
        snprintf(counts[r], sizeof counts[r], "%" PRIu64, d);
        fields[k++] = tv_reason_name((tv_reason)r);
        fields[k++] = counts[r];
    }
    if (total && st->burst_window_end_us) {
        snprintf(total_s, sizeof total_s, "%" PRIu64, total);
        snprintf(window_s, sizeof window_s, "%.0f", (double)SAMPLE_EVERY_US / 1e6);
        const char *head[] = {"invalid", total_s, "window_s", window_s, "to", st->dead_letter ? "invalid" : "nacked"};
        memmove(fields + 6, fields, (size_t)k * sizeof *fields);
        memcpy(fields, head, sizeof head);
        k += 6;
        fields[k] = NULL;
        ecf_log_event(stage, ECF_LOG_WARN, "dlq_burst", fields);
    }
    memcpy(st->burst_from, st->invalid, sizeof st->burst_from);
    st->burst_window_end_us = now + SAMPLE_EVERY_US;
}

static ecf_status tv_process(ecf_stage *stage, ecf_batch *in)
{
    tv_config *cfg = ecf_config(stage);
    tv_state *st = ecf_state(stage);
    uint32_t n = ecf_batch_count(stage, in);
    if (n == 0)
        return ECF_OK;
    int64_t now = ecf_now_us(stage);
    uint64_t invalid_before[TV_REASON_COUNT];
    memcpy(invalid_before, st->invalid, sizeof invalid_before);
    uint64_t valid_before = st->valid;

    /* Emit failures are not returned: the core has already failed the
     * messages of a batch it could not deliver, and returning an error
     * would also fail inputs whose records went out fine. */
    ecf_batch *out = NULL, *dlq = NULL;
    tv_columns *cols = NULL;
    for (uint32_t i = 0; i < n; i++) {
        ecf_message *m = ecf_batch_message(stage, in, i);
        /* a records-only message has no payload: validated as empty */
        const uint8_t *payload = m->payload ? m->payload : no_payload;
        size_t len = m->payload ? m->payload_len : 0;
        if (st->unwrap) {
            tv_error uerr;
            if (!unwrap_dead_letter(st, payload, len, &payload, &len, &uerr)) {
                reject(stage, st, m, payload, len, &uerr, &dlq, now);
                continue;
            }
        }
        if (cols && !tv_validator_fits(cols, len)) { /* int32 string offsets: split the batch */
            emit_records(stage, out, cols);
            cols = NULL;
        }
        if (!cols) {
            cols = tv_pool_take(st->pool, n - i);
            if (!cols) { /* fail only what was not handled yet */
                ecf_metric_add(stage, st->m_errors, (double)(n - i));
                ecf_log(stage, ECF_LOG_ERROR, "out of memory for a batch of %u records", n - i);
                for (uint32_t j = i; j < n; j++)
                    ecf_nack(stage, ecf_batch_message(stage, in, j), ECF_ERR_NOMEM, "out of memory");
                break;
            }
            out = ecf_batch_new(stage);
        }
        tv_row_info info;
        tv_error err;
        tv_reason r = tv_validate(st->validator, cols, payload, len, m->ingest_time_us, now, &info, &err);
        if (r != TV_VALID) {
            reject(stage, st, m, payload, len, &err, &dlq, now);
            continue;
        }
        ecf_message_init init = {
            .payload = cfg->keep_payload ? payload : NULL,
            .payload_len = cfg->keep_payload ? len : 0,
            .key = info.key ? (const void *)info.key : (const void *)m->key,
            .key_len = info.key ? info.key_len
                       : m->key ? m->key_len
                                : 0,
            .event_time_us = info.event_time_us,
            .parent = m,
        };
        if (ecf_batch_add(stage, out, &init) != ECF_OK) {
            cols->rows--; /* the row was the last one: take it back */
            cols->in_bytes -= len;
            tv_error e = {.reason = TV_R_SIZE, .field = NULL};
            snprintf(e.message, sizeof e.message, "event of %zu bytes is too large for a batch", len);
            reject(stage, st, m, payload, len, &e, &dlq, now);
            continue;
        }
        st->valid++;
    }
    if (cols)
        emit_records(stage, out, cols);
    if (dlq)
        ecf_emit(stage, "invalid", dlq);

    if (st->valid != valid_before)
        ecf_metric_add(stage, st->m_valid, (double)(st->valid - valid_before));
    for (int r = TV_R_SYNTAX; r < TV_R_INTERNAL; r++)
        if (st->invalid[r] != invalid_before[r])
            ecf_metric_add(stage, st->m_invalid[r], (double)(st->invalid[r] - invalid_before[r]));
    log_burst(stage, st);
    return ECF_OK;
}

static void tv_stop(ecf_stage *stage)
{
    tv_state *st = ecf_state(stage);
    uint64_t total = 0;
    GString *by_class = g_string_new(NULL);
    for (int r = TV_R_SYNTAX; r < TV_R_INTERNAL; r++) {
        if (!st->invalid[r])
            continue;
        total += st->invalid[r];
        g_string_append_printf(by_class, "%s%s %" PRIu64, by_class->len ? ", " : " (", tv_reason_name((tv_reason)r),
                               st->invalid[r]);
    }
    if (total)
        g_string_append_c(by_class, ')');
    ecf_log(stage, ECF_LOG_INFO, "validated %" PRIu64 " events: %" PRIu64 " valid, %" PRIu64 " invalid%s",
            st->valid + total, st->valid, total, by_class->str);
    g_string_free(by_class, TRUE);
}

static void tv_destroy(ecf_stage *stage) { state_free(ecf_state(stage)); }

static const char *const tv_ports[] = {"default", "invalid", NULL};

ECF_PLUGIN_DEFINE(.name = "transform-validate", .kind = ECF_TRANSFORM, .version = "1.0.0",
                  .summary = "Parses JSON events, checks them against a YAML schema and emits typed records; "
                             "invalid events go to the 'invalid' port or back to their source",
                  .ports = tv_ports, .config_size = sizeof(tv_config), .options = tv_options, .create = tv_create,
                  .process = tv_process, .stop = tv_stop, .destroy = tv_destroy,
                  .parallelism = ECF_PARALLEL_PARTITION, )
