/*
 * Edge validation: the door checks each event against the schema file
 * transform-validate uses (`schema` option), with the same code
 * (plugins/common/event_schema), so a client hears at once, in the answer
 * to its request, what the lake leg would have said later.
 *
 * A checker is a validator plus one column set it writes a row into and
 * takes back at once: the records are not needed here (the event goes to
 * Kafka as it came), only the verdict. After a checker has seen its largest
 * event, validating allocates nothing. Checkers are pooled like the door's
 * parsers, one per HTTP worker at work.
 *
 * Rejected events go to the `invalid` port as the same dead-letter
 * envelopes transform-validate writes (source {"kind": "http", "offset":
 * index in the request}), when a stage reads that port. They carry no ack
 * token: the client already has its 422, so a dead letter that cannot be
 * delivered changes nothing for it; one the port has no room for is
 * counted (http_dead_letters_dropped_total) and logged, not waited for.
 */
#include "source_http.h"

#include "dead_letter.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define EDGE_MAX_DEPTH 64
#define EDGE_MAX_COLUMNS 1024
#define EDGE_POOL_MAX 64
/* A checker keeps buffers as large as the largest event it saw; one a huge
 * event inflated past this is freed instead of pooled (as the door's
 * parsers are), so idle memory stays bounded. */
#define EDGE_POOL_MAX_BYTES (1u << 20)

struct edge_check {
    source_http *src;
    tv_validator *v;
    tv_columns *cols;
    GString *envelope;
    bool begun; /* the event's members go to the validator */
    tv_error err;
};

ecf_status edge_init(source_http *src)
{
    const http_config *cfg = src->cfg;
    ecf_stage *stage = src->stage;
    src->checkers = g_ptr_array_new();
    src->dead_letter = ecf_port_connected(stage, "invalid");
    src->edge_pass = !strcmp(cfg->on_invalid, "pass");
    if (!cfg->schema || !strcmp(cfg->on_invalid, "off"))
        return ECF_OK;
    GError *error = NULL;
    src->schema = tv_schema_load(cfg->schema, &error);
    if (!src->schema) {
        ecf_status st = ecf_error(stage, "option 'schema': %s", error->message);
        g_error_free(error);
        return st;
    }
    tv_col_kind kinds[EDGE_MAX_COLUMNS];
    bool nullable[EDGE_MAX_COLUMNS];
    uint32_t n = tv_validator_columns(src->schema, kinds, nullable, EDGE_MAX_COLUMNS);
    if (n > EDGE_MAX_COLUMNS)
        return ecf_error(stage, "option 'schema': %s has more than %d fields", cfg->schema, EDGE_MAX_COLUMNS - 3);
    src->col_pool = tv_pool_new(n, kinds, nullable, 4);
    if (!src->col_pool)
        return ECF_ERR_NOMEM;
    /* One validator up front, so a bad schema/key_field pairing fails create. */
    edge_check *c = edge_get(src);
    if (!c)
        return src->edge_error ? ecf_error(stage, "%s", src->edge_error) : ECF_ERR_NOMEM;
    edge_put(src, c);
    for (int r = TV_R_SYNTAX; r < TV_R_INTERNAL; r++) {
        char name[96];
        snprintf(name, sizeof name, "http_events_invalid_total{reason=\"%s\"}", tv_reason_name((tv_reason)r));
        src->m_invalid[r] = ecf_metric_new(stage, ECF_METRIC_COUNTER, name,
                                           "events refused at the door by the schema, by reason class "
                                           "(the lake leg's: validate_invalid_total)");
        ecf_metric_status(stage, src->m_invalid[r], "invalid");
    }
    src->m_dlq_dropped = ecf_metric_new(stage, ECF_METRIC_COUNTER, "http_dead_letters_dropped_total",
                                        "rejected events the 'invalid' port had no room for (the client "
                                        "was answered anyway)");
    return ECF_OK;
}

static void checker_free(edge_check *c)
{
    if (!c)
        return;
    tv_validator_free(c->v);
    if (c->cols)
        tv_columns_give_back(c->cols);
    if (c->envelope)
        g_string_free(c->envelope, TRUE);
    g_free(c);
}

void edge_free(source_http *src)
{
    if (src->checkers) {
        for (guint i = 0; i < src->checkers->len; i++)
            checker_free(src->checkers->pdata[i]);
        g_ptr_array_free(src->checkers, TRUE);
    }
    if (src->col_pool)
        tv_pool_close(src->col_pool);
    tv_schema_free(src->schema);
    g_free(src->edge_error);
}

edge_check *edge_get(source_http *src)
{
    g_mutex_lock(&src->lock);
    edge_check *c = src->checkers->len ? g_ptr_array_steal_index_fast(src->checkers, src->checkers->len - 1) : NULL;
    g_mutex_unlock(&src->lock);
    if (c)
        return c;
    c = g_new0(edge_check, 1);
    c->src = src;
    const char *why = NULL;
    c->v = tv_validator_new(src->schema, src->cfg->max_future_us, EDGE_MAX_DEPTH, src->cfg->key_field, &why);
    c->cols = tv_pool_take(src->col_pool, 1);
    c->envelope = g_string_sized_new(512);
    if (!c->v || !c->cols) {
        if (why && !src->edge_error)
            src->edge_error =
                g_strdup_printf("option 'key_field': '%s' %s in %s", src->cfg->key_field, why, src->cfg->schema);
        checker_free(c);
        return NULL;
    }
    return c;
}

static size_t checker_footprint(const edge_check *c)
{
    size_t n = tv_validator_footprint(c->v) + c->envelope->allocated_len;
    for (uint32_t i = 0; i < c->cols->n_cols; i++)
        n += c->cols->cols[i].data_cap;
    return n;
}

void edge_put(source_http *src, edge_check *c)
{
    if (!c)
        return;
    if (checker_footprint(c) > EDGE_POOL_MAX_BYTES) {
        checker_free(c);
        return;
    }
    g_mutex_lock(&src->lock);
    bool kept = src->checkers->len < EDGE_POOL_MAX;
    if (kept)
        g_ptr_array_add(src->checkers, c);
    g_mutex_unlock(&src->lock);
    if (!kept)
        checker_free(c);
}

void edge_begin(void *checker, uint32_t index)
{
    (void)index;
    edge_check *c = checker;
    int64_t now = ecf_now_us(c->src->stage);
    c->begun = tv_event_begin(c->v, c->cols, 0, now, &c->err) == TV_VALID;
}

void edge_member(void *checker, const tvj_member *m)
{
    edge_check *c = checker;
    if (c->begun)
        tv_event_member(c->v, m);
}

bool edge_end(edge_check *c, const jd_event *ev)
{
    if (!ev->is_object) /* no members were walked: the validator says why it is not an event */
        edge_begin(c, ev->index);
    if (!c->begun)
        return false; /* c->err says why */
    c->begun = false;
    int64_t now = ecf_now_us(c->src->stage);
    tv_row_info info;
    if (tv_event_end(c->v, ev->walked, ev->walk_err, ev->length, now, &info) != TV_VALID)
        return false;
    /* Only the verdict is wanted: take the row back, keep the buffers. */
    c->cols->rows--;
    c->cols->in_bytes -= ev->length;
    return true;
}

const tv_error *edge_problems(const edge_check *c) { return &c->err; }

void edge_count(source_http *src, tv_reason r)
{
    if (r > TV_VALID && r < TV_R_INTERNAL)
        ecf_metric_add(src->stage, src->m_invalid[r], 1);
}

static void json_str_or_null(GString *out, const char *s)
{
    if (!s || !*s || !tv_json_append_string(out, s, strlen(s)))
        g_string_append(out, "null");
}

void edge_problems_json(GString *out, const tv_error *err)
{
    g_string_append_c(out, '[');
    for (uint32_t i = 0; i < err->n_problems; i++) {
        const tv_problem *p = &err->problems[i];
        g_string_append(out, i ? ",{\"field\":" : "{\"field\":");
        json_str_or_null(out, p->field);
        g_string_append_printf(out, ",\"rule\":\"%s\",\"value\":", tv_reason_name(p->reason));
        json_str_or_null(out, p->value);
        g_string_append(out, ",\"message\":");
        json_str_or_null(out, p->message);
        g_string_append_c(out, '}');
    }
    if (err->n_unlisted)
        g_string_append_printf(out, ",{\"more\":%" PRIu32 "}", err->n_unlisted);
    g_string_append_c(out, ']');
}

void edge_dead_letter(source_http *src, edge_check *c, ecf_batch **dlq, const uint8_t *raw, size_t len, uint32_t index,
                      const tv_error *err)
{
    if (!src->dead_letter)
        return;
    ecf_stage *stage = src->stage;
    ecf_origin origin = {.kind = ECF_ORIGIN_HTTP, .partition = -1, .offset = index};
    const char *klass = tv_reason_name(err->reason), *name = ecf_name(stage);
    char text[TV_ERROR_TEXT_MAX];
    tv_error_text(err, text, sizeof text);
    tv_dead_letter d = {
        .reason = text,
        .klass = klass,
        .field = err->field,
        .stage = name,
        .at_us = ecf_now_us(stage),
        .origin = &origin,
        .raw = raw,
        .raw_len = len,
    };
    tv_dead_letter_json(c->envelope, &d);
    ecf_header hdrs[4] = {
        {"ecflow.dlq.reason", (const uint8_t *)text, (uint32_t)strlen(text)},
        {"ecflow.dlq.class", (const uint8_t *)klass, (uint32_t)strlen(klass)},
        {"ecflow.dlq.stage", (const uint8_t *)name, (uint32_t)strlen(name)},
        {"ecflow.dlq.field", (const uint8_t *)err->field, err->field ? (uint32_t)strlen(err->field) : 0},
    };
    ecf_message_init m = {
        .payload = c->envelope->str,
        .payload_len = c->envelope->len,
        .origin = origin,
        .headers = hdrs,
        .n_headers = err->field ? 4 : 3,
    };
    if (!*dlq)
        *dlq = ecf_batch_new(stage);
    if (!*dlq || ecf_batch_add(stage, *dlq, &m) != ECF_OK) {
        ecf_metric_add(stage, src->m_dlq_dropped, 1);
        ecf_log(stage, ECF_LOG_WARN, "could not queue a dead letter for 'invalid' (%s)", err->message);
    }
}

void edge_flush_dead_letters(source_http *src, ecf_batch *dlq)
{
    if (!dlq)
        return;
    ecf_stage *stage = src->stage;
    uint32_t n = ecf_batch_count(stage, dlq);
    ecf_status st = ecf_try_emit(stage, "invalid", dlq);
    if (st == ECF_OK)
        return;
    if (st == ECF_ERR_BACKPRESSURE)
        ecf_batch_release(stage, dlq);
    ecf_metric_add(stage, src->m_dlq_dropped, n);
    ecf_log(stage, ECF_LOG_WARN, "%u dead letter%s not sent to 'invalid': %s", n, n == 1 ? "" : "s",
            ecf_status_str(st));
}
