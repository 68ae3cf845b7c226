#include "host.h"

#include "clock.h"
#include "log.h"

#include <string.h>

static void *host_config(ecf_stage *s) { return s->def->config; }
static void *host_state(ecf_stage *s) { return s->state; }
static void host_set_state(ecf_stage *s, void *st) { s->state = st; }
static const char *host_name(ecf_stage *s) { return s->def->name; }

static bool host_should_stop(ecf_stage *s) { return ecf_runtime_stopping(s->rt) || atomic_load(&s->failed); }

static void host_set_error(ecf_stage *s, const char *fmt, va_list ap)
{
    char *msg = g_strdup_vprintf(fmt, ap);
    g_free(s->error);
    s->error = msg;
}

static void host_log(ecf_stage *s, ecf_log_level level, const char *fmt, va_list ap)
{
    ecf_logv(s->def->name, level, fmt, ap);
}

static int64_t host_now(ecf_stage *s) { return ecf_clock_now_us(); }
static int64_t host_monotonic(ecf_stage *s) { return ecf_clock_monotonic_us(); }

static ecf_metric *host_metric(ecf_stage *s, ecf_metric_kind kind, const char *name, const char *help)
{
    ecf_metric *m = ecf_metrics_get(ecf_runtime_metrics(s->rt), kind, name, help, s->def->name);
    if (!m)
        ecf_logf(s->def->name, ECF_LOG_WARN, "metric '%s' has an invalid name or another kind; ignored", name);
    return m;
}

static void host_metric_status(ecf_stage *s, ecf_metric *m, const char *label)
{
    if (m && label && *label)
        ecf_runtime_add_status(s->rt, label, m);
}

static ecf_status host_metric_buckets(ecf_stage *s, ecf_metric *m, const double *bounds, uint32_t n)
{
    g_autoptr(GError) err = NULL;
    if (ecf_metrics_set_buckets(ecf_runtime_metrics(s->rt), m, bounds, n, &err))
        return ECF_OK;
    ecf_logf(s->def->name, ECF_LOG_WARN, "%s; the default buckets stay", err->message);
    return ECF_ERR_INVALID;
}

static void host_log_event(ecf_stage *s, ecf_log_level level, const char *event, const char *const *fields)
{
    ecf_log_event_write(s->def->name, level, event, fields);
}

static ecf_batch *host_batch_new(ecf_stage *s) { return ecf_batch_get(ecf_runtime_batches(s->rt)); }
static ecf_status host_batch_add(ecf_batch *b, const ecf_message_init *m) { return ecf_batch_append(b, m); }
static uint32_t host_batch_count(const ecf_batch *b) { return ecf_batch_size(b); }
static ecf_message *host_batch_message(ecf_batch *b, uint32_t i) { return ecf_batch_at(b, i); }
static size_t host_batch_bytes(const ecf_batch *b) { return ecf_batch_payload_bytes(b); }
static void host_batch_release(ecf_batch *b) { ecf_batch_put(b); }

/* Pushes to one consumer; a consumer that has failed refuses everything. */
static ecf_status push_to(ecf_stage *down, ecf_batch *b)
{
    if (ecf_ring_push(down->in, b) == ECF_RING_OK)
        return ECF_OK;
    g_autofree char *why = g_strdup_printf("stage '%s' has stopped", down->def->name);
    guint32 n = ecf_batch_size(b);
    for (guint32 i = 0; i < n; i++) {
        ecf_message *m = ecf_batch_at(b, i);
        if (m->token) {
            ecf_token_unref(m->token, ECF_ERR_STOPPED, why);
            m->token = NULL;
        }
    }
    ecf_batch_put(b);
    return ECF_ERR_STOPPED;
}

static gboolean port_has_room(const ecf_port *p)
{
    for (guint i = 0; i < p->consumers->len; i++) {
        ecf_stage *c = g_array_index(p->consumers, ecf_out_edge, i).down;
        if (ecf_ring_count(c->in) >= ecf_ring_capacity(c->in))
            return FALSE;
    }
    return TRUE;
}

static ecf_status emit(ecf_stage *s, const char *port_name, ecf_batch *b, gboolean try_only)
{
    ecf_port *port = ecf_stage_port(s, port_name);
    if (!port) {
        ecf_logf(s->def->name, ECF_LOG_ERROR, "emit to unknown port '%s'", port_name);
        ecf_batch_put(b);
        return ECF_ERR_INVALID;
    }
    /* Under try_emit the caller keeps the batch when there is no room. */
    if (try_only && !port_has_room(port))
        return ECF_ERR_BACKPRESSURE;
    if (b == s->current)
        s->current_passed_on = TRUE;
    guint32 n = ecf_batch_size(b);
    if (port->consumers->len == 0) {
        ecf_metric_do_add(s->m_discarded, n);
        ecf_batch_put(b);
        return ECF_OK;
    }
    ecf_metric_do_add(s->m_out, n);
    /* Fan-out: every extra consumer gets its own copy, made before the
     * first consumer, which takes the original, can release it. */
    ecf_status st = ECF_OK;
    for (guint i = port->consumers->len; i-- > 0;) {
        ecf_out_edge *e = &g_array_index(port->consumers, ecf_out_edge, i);
        ecf_batch *copy = i == 0 ? b : ecf_batch_clone(b);
        ecf_batch_set_input_index(copy, e->input);
        ecf_status r = push_to(e->down, copy);
        if (r != ECF_OK)
            st = r;
    }
    return st;
}

static ecf_status host_emit(ecf_stage *s, const char *port, ecf_batch *b) { return emit(s, port, b, FALSE); }
static ecf_status host_try_emit(ecf_stage *s, const char *port, ecf_batch *b) { return emit(s, port, b, TRUE); }

static ecf_token *host_token_new(ecf_stage *s, ecf_settle_fn fn, void *user, uint64_t tag)
{
    return ecf_token_create(ecf_runtime_acks(s->rt), fn, user, tag, s->m_ack_latency);
}

static void host_token_release(ecf_token *t)
{
    if (t)
        ecf_token_unref(t, ECF_VERDICT_NONE, NULL);
}

static void host_ack(ecf_stage *s, ecf_message *m)
{
    if (!m || !m->token)
        return;
    ecf_token_unref(m->token, ECF_OK, NULL);
    m->token = NULL;
}

void ecf_host_nack(ecf_stage *s, ecf_message *m, ecf_status st, const char *reason)
{
    if (!m || !m->token)
        return;
    ecf_token_unref(m->token, st == ECF_OK ? ECF_ERR_INTERNAL : st, reason);
    m->token = NULL;
}

static ecf_token *host_hold(ecf_stage *s, ecf_message *m)
{
    ecf_token *t = m ? m->token : NULL;
    if (m)
        m->token = NULL;
    return t;
}

static void host_settle(ecf_stage *s, ecf_token *t, ecf_status st, const char *reason)
{
    if (t)
        ecf_token_unref(t, st, reason);
}

static void host_set_ready(ecf_stage *s, bool ready) { atomic_store(&s->ready, ready); }
static bool host_pipeline_ready(ecf_stage *s) { return ecf_runtime_ready(s->rt); }
static const char *host_setting(ecf_stage *s, const char *key) { return ecf_runtime_setting(s->rt, key); }

static ecf_status host_declare_schema(ecf_stage *s, const char *port_name, struct ArrowSchema *schema)
{
    ecf_port *port = ecf_stage_port(s, port_name);
    if (!port || !schema || !schema->release)
        return ECF_ERR_INVALID;
    if (port->schema) {
        port->schema->release(port->schema);
        g_free(port->schema);
    }
    port->schema = g_new(struct ArrowSchema, 1);
    *port->schema = *schema;
    schema->release = NULL; /* moved */
    return ECF_OK;
}

static uint32_t host_input_count(ecf_stage *s) { return s->inputs->len; }

static const struct ArrowSchema *host_input_schema(ecf_stage *s, uint32_t input)
{
    if (input >= s->inputs->len)
        return NULL;
    ecf_in_edge *e = &g_array_index(s->inputs, ecf_in_edge, input);
    return e->up->ports[e->port].schema;
}

static ecf_status host_set_records(ecf_batch *b, struct ArrowArray *records)
{
    return ecf_batch_attach_records(b, records);
}

static const struct ArrowArray *host_records(const ecf_batch *b) { return ecf_batch_get_records(b); }
static uint32_t host_batch_input(const ecf_batch *b) { return ecf_batch_input_index(b); }

/* Depth-first over the DAG below `s`. The smallest answer is the safe one,
 * and one sink without an answer makes the whole answer unknown. */
static void ask_sinks(ecf_stage *s, const char *topic, int32_t partition, int64_t *best, gboolean *unknown,
                      GHashTable *seen)
{
    if (!g_hash_table_add(seen, s))
        return;
    if (s->p->kind == ECF_SINK) {
        int64_t off = -1;
        if (!s->p->resume_position || !s->started || s->p->resume_position(s, topic, partition, &off) != ECF_OK ||
            off < 0)
            *unknown = TRUE;
        else if (*best < 0 || off < *best)
            *best = off;
    }
    for (guint i = 0; i < s->n_ports; i++)
        for (guint j = 0; j < s->ports[i].consumers->len; j++)
            ask_sinks(g_array_index(s->ports[i].consumers, ecf_out_edge, j).down, topic, partition, best, unknown,
                      seen);
}

static ecf_status host_resume_position(ecf_stage *s, const char *topic, int32_t partition, int64_t *next_offset)
{
    g_autoptr(GHashTable) seen = g_hash_table_new(NULL, NULL);
    int64_t best = -1;
    gboolean unknown = FALSE;
    ask_sinks(s, topic, partition, &best, &unknown, seen);
    if (unknown || best < 0)
        return ECF_ERR_UNAVAILABLE;
    *next_offset = best;
    return ECF_OK;
}

static bool host_port_connected(ecf_stage *s, const char *port)
{
    ecf_port *p = ecf_stage_port(s, port);
    return p && p->consumers->len > 0;
}

const ecf_host ecf_host_table = {
    .size = sizeof(ecf_host),
    .abi_major = ECF_ABI_MAJOR,
    .abi_minor = ECF_ABI_MINOR,
    .config = host_config,
    .state = host_state,
    .set_state = host_set_state,
    .name = host_name,
    .should_stop = host_should_stop,
    .set_error = host_set_error,
    .log = host_log,
    .now_us = host_now,
    .monotonic_us = host_monotonic,
    .metric = host_metric,
    .metric_add = ecf_metric_do_add,
    .metric_set = ecf_metric_do_set,
    .metric_observe = ecf_metric_do_observe,
    .batch_new = host_batch_new,
    .batch_add = host_batch_add,
    .batch_count = host_batch_count,
    .batch_message = host_batch_message,
    .batch_bytes = host_batch_bytes,
    .batch_release = host_batch_release,
    .emit = host_emit,
    .try_emit = host_try_emit,
    .token_new = host_token_new,
    .token_release = host_token_release,
    .ack = host_ack,
    .nack = ecf_host_nack,
    .hold = host_hold,
    .settle = host_settle,
    .set_ready = host_set_ready,
    .pipeline_ready = host_pipeline_ready,
    .pipeline_setting = host_setting,
    .declare_schema = host_declare_schema,
    .input_schema = host_input_schema,
    .input_count = host_input_count,
    .batch_set_records = host_set_records,
    .batch_records = host_records,
    .batch_input = host_batch_input,
    .resume_position = host_resume_position,
    .port_connected = host_port_connected,
    .metric_status = host_metric_status,
    .metric_buckets = host_metric_buckets,
    .log_event = host_log_event,
};
