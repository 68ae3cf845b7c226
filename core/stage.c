#include "stage.h"

#include "clock.h"
#include "log.h"
#include "options.h"

#include <string.h>

#define IDLE_WAIT_US (100 * 1000)

/* ------------------------------------------------------------ host table */

static void *host_config(ecf_stage *s) { return s->def->config; }
static void *host_state(ecf_stage *s) { return s->state; }
static void host_set_state(ecf_stage *s, void *st) { s->state = st; }
static const char *host_name(ecf_stage *s) { return s->def->name; }

static bool host_should_stop(ecf_stage *s)
{
    return ecf_runtime_stopping(s->rt) || atomic_load(&s->failed);
}

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

static ecf_metric *host_metric(ecf_stage *s, ecf_metric_kind kind, const char *name,
                               const char *help)
{
    ecf_metric *m = ecf_metrics_get(ecf_runtime_metrics(s->rt), kind, name, help, s->def->name);
    if (!m)
        ecf_logf(s->def->name, ECF_LOG_WARN, "metric '%s' has an invalid name or another kind; ignored",
                 name);
    return m;
}

static void host_metric_status(ecf_stage *s, ecf_metric *m, const char *label)
{
    if (m && label && *label)
        ecf_runtime_add_status(s->rt, label, m);
}

static ecf_batch *host_batch_new(ecf_stage *s) { return ecf_batch_get(ecf_runtime_batches(s->rt)); }
static ecf_status host_batch_add(ecf_batch *b, const ecf_message_init *m) { return ecf_batch_append(b, m); }
static uint32_t host_batch_count(const ecf_batch *b) { return ecf_batch_size(b); }
static ecf_message *host_batch_message(ecf_batch *b, uint32_t i) { return ecf_batch_at(b, i); }
static size_t host_batch_bytes(const ecf_batch *b) { return ecf_batch_payload_bytes(b); }
static void host_batch_release(ecf_batch *b) { ecf_batch_put(b); }

static ecf_port *find_port(ecf_stage *s, const char *name)
{
    if (!s->n_ports)
        return NULL;
    if (!name)
        return &s->ports[0];
    for (guint i = 0; i < s->n_ports; i++)
        if (strcmp(s->ports[i].name, name) == 0)
            return &s->ports[i];
    return NULL;
}

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
    ecf_port *port = find_port(s, port_name);
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

static void host_nack(ecf_stage *s, ecf_message *m, ecf_status st, const char *reason)
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
    ecf_port *port = find_port(s, port_name);
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
static void ask_sinks(ecf_stage *s, const char *topic, int32_t partition, int64_t *best,
                      gboolean *unknown, GHashTable *seen)
{
    if (!g_hash_table_add(seen, s))
        return;
    if (s->p->kind == ECF_SINK) {
        int64_t off = -1;
        if (!s->p->resume_position || !s->started ||
            s->p->resume_position(s, topic, partition, &off) != ECF_OK || off < 0)
            *unknown = TRUE;
        else if (*best < 0 || off < *best)
            *best = off;
    }
    for (guint i = 0; i < s->n_ports; i++)
        for (guint j = 0; j < s->ports[i].consumers->len; j++)
            ask_sinks(g_array_index(s->ports[i].consumers, ecf_out_edge, j).down, topic, partition,
                      best, unknown, seen);
}

static ecf_status host_resume_position(ecf_stage *s, const char *topic, int32_t partition,
                                       int64_t *next_offset)
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
    ecf_port *p = find_port(s, port);
    return p && p->consumers->len > 0;
}

static const ecf_host host_table = {
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
    .nack = host_nack,
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
};

/* ------------------------------------------------------------ building */

ecf_stage *ecf_stage_new(ecf_runtime *rt, ecf_stage_def *def)
{
    ecf_stage *s = g_new0(ecf_stage, 1);
    s->head.size = sizeof(ecf_stage_head);
    s->head.host = &host_table;
    s->rt = rt;
    s->def = def;
    s->p = &def->plugin->desc;
    atomic_init(&s->ready, TRUE);
    const char *const *ports = ecf_stage_ports(def);
    for (const char *const *p = ports; p && *p; p++)
        s->n_ports++;
    s->ports = g_new0(ecf_port, MAX(s->n_ports, 1));
    for (guint i = 0; i < s->n_ports; i++) {
        s->ports[i].name = g_strdup(ports[i]);
        s->ports[i].consumers = g_array_new(FALSE, FALSE, sizeof(ecf_out_edge));
    }
    s->inputs = g_array_new(FALSE, FALSE, sizeof(ecf_in_edge));
    ecf_metrics *reg = ecf_runtime_metrics(rt);
    const char *n = def->name;
    s->m_in = ecf_metrics_get(reg, ECF_METRIC_COUNTER, "events_in_total", "Events received by the stage", n);
    s->m_out = ecf_metrics_get(reg, ECF_METRIC_COUNTER, "events_out_total", "Events emitted by the stage", n);
    s->m_errors = ecf_metrics_get(reg, ECF_METRIC_COUNTER, "events_failed_total",
                                  "Events in batches the stage failed to process", n);
    s->m_batches = ecf_metrics_get(reg, ECF_METRIC_COUNTER, "batches_in_total", "Batches received", n);
    s->m_discarded = ecf_metrics_get(reg, ECF_METRIC_COUNTER, "events_unconnected_total",
                                     "Events emitted to a port nothing reads", n);
    if (s->p->kind == ECF_SOURCE)
        s->m_ack_latency = ecf_metrics_get(reg, ECF_METRIC_HISTOGRAM, "ack_latency_seconds",
                                           "Time from event creation to its settled ack "
                                           "(one event in 16 sampled)", n);
    return s;
}

void ecf_stage_make_input(ecf_stage *s, guint32 ring_capacity)
{
    if (s->inputs->len && !s->in)
        s->in = ecf_ring_new(ring_capacity, s->inputs->len);
}

void ecf_stage_connect(ecf_stage *up, const char *port, ecf_stage *down)
{
    ecf_port *p = find_port(up, port);
    g_return_if_fail(p != NULL);
    ecf_out_edge out = {down, down->inputs->len};
    ecf_in_edge in = {up, (guint)(p - up->ports)};
    g_array_append_val(p->consumers, out);
    g_array_append_val(down->inputs, in);
}

void ecf_stage_free(ecf_stage *s)
{
    if (!s)
        return;
    for (guint i = 0; i < s->n_ports; i++) {
        g_free(s->ports[i].name);
        g_array_free(s->ports[i].consumers, TRUE);
        if (s->ports[i].schema) {
            s->ports[i].schema->release(s->ports[i].schema);
            g_free(s->ports[i].schema);
        }
    }
    g_array_free(s->inputs, TRUE);
    g_free(s->ports);
    ecf_ring_free(s->in);
    g_free(s->error);
    g_free(s);
}

const char *ecf_stage_error(const ecf_stage *s)
{
    return s->error ? s->error : "no reason given";
}

/* ------------------------------------------------------------ lifecycle */

ecf_status ecf_stage_create(ecf_stage *s)
{
    ecf_status st = s->p->create ? s->p->create(s) : ECF_OK;
    s->created = st == ECF_OK;
    return st;
}

ecf_status ecf_stage_start(ecf_stage *s)
{
    ecf_status st = s->p->start ? s->p->start(s) : ECF_OK;
    s->started = st == ECF_OK;
    return st;
}

static void fail(ecf_stage *s, ecf_status st, const char *what)
{
    ecf_logf(s->def->name, ECF_LOG_ERROR, "%s failed: %s: %s", what, ecf_status_str(st),
             ecf_stage_error(s));
    atomic_store(&s->failed, TRUE);
    ecf_runtime_fail(s->rt, s);
}

static void close_outputs(ecf_stage *s)
{
    for (guint i = 0; i < s->n_ports; i++)
        for (guint j = 0; j < s->ports[i].consumers->len; j++)
            ecf_ring_producer_done(g_array_index(s->ports[i].consumers, ecf_out_edge, j).down->in);
}

static void process_one(ecf_stage *s, ecf_batch *b)
{
    guint32 n = ecf_batch_size(b);
    ecf_metric_do_add(s->m_in, n);
    ecf_metric_do_add(s->m_batches, 1);
    s->current = b;
    s->current_passed_on = FALSE;
    ecf_status st = s->p->process(s, b);
    s->current = NULL;
    if (st != ECF_OK) {
        ecf_metric_do_add(s->m_errors, n);
        const char *why = ecf_stage_error(s);
        ecf_logf(s->def->name, st == ECF_ERR_FATAL ? ECF_LOG_ERROR : ECF_LOG_WARN,
                 "batch of %u events failed: %s: %s", n, ecf_status_str(st), why);
        if (!s->current_passed_on)
            for (guint32 i = 0; i < n; i++)
                host_nack(s, ecf_batch_at(b, i), st, why);
        if (st == ECF_ERR_FATAL)
            fail(s, st, "process");
    }
    if (!s->current_passed_on)
        ecf_batch_put(b);
}

/* A failed stage still empties its ring, failing every event in it, so
 * upstream never blocks on it and every source gets its answer. */
static void drain_failed(ecf_stage *s)
{
    ecf_ring_abort(s->in);
    g_autofree char *why = g_strdup_printf("stage '%s' failed: %s", s->def->name, ecf_stage_error(s));
    void *item;
    ecf_ring_result r;
    while ((r = ecf_ring_pop(s->in, &item, IDLE_WAIT_US)) != ECF_RING_FINISHED) {
        if (r != ECF_RING_OK)
            continue;
        ecf_batch *b = item;
        for (guint32 i = 0; i < ecf_batch_size(b); i++)
            host_nack(s, ecf_batch_at(b, i), ECF_ERR_STOPPED, why);
        ecf_batch_put(b);
    }
}

static void run_ticks(ecf_stage *s, gint64 *next_tick)
{
    gint64 interval = s->p->tick_interval_us;
    if (!s->p->tick || interval <= 0)
        return;
    gint64 now = ecf_clock_monotonic_us();
    if (now < *next_tick)
        return;
    *next_tick = now + interval;
    ecf_status st = s->p->tick(s, ecf_clock_now_us());
    if (st != ECF_OK)
        fail(s, st, "tick");
}

static gpointer consumer_main(gpointer data)
{
    ecf_stage *s = data;
    gint64 interval = s->p->tick && s->p->tick_interval_us > 0 ? s->p->tick_interval_us : 0;
    gint64 next_tick = ecf_clock_monotonic_us() + interval;
    while (!atomic_load(&s->failed)) {
        gint64 wait = interval ? CLAMP(next_tick - ecf_clock_monotonic_us(), 0, IDLE_WAIT_US)
                               : IDLE_WAIT_US;
        void *item = NULL;
        ecf_ring_result r = ecf_ring_pop(s->in, &item, wait);
        if (r == ECF_RING_OK)
            process_one(s, item);
        else if (r == ECF_RING_FINISHED)
            break;
        run_ticks(s, &next_tick);
    }
    if (!atomic_load(&s->failed) && s->p->flush) {
        ecf_status st = s->p->flush(s);
        if (st != ECF_OK)
            fail(s, st, "flush");
    }
    if (atomic_load(&s->failed))
        drain_failed(s);
    close_outputs(s);
    return NULL;
}

static gpointer source_main(gpointer data)
{
    ecf_stage *s = data;
    ecf_status st = s->p->run(s);
    if (st != ECF_OK && st != ECF_ERR_STOPPED)
        fail(s, st, "run");
    close_outputs(s);
    return NULL;
}

void ecf_stage_spawn(ecf_stage *s)
{
    g_autofree char *name = g_strdup_printf("ecf:%.10s", s->def->name);
    s->thread = g_thread_new(name, s->p->kind == ECF_SOURCE ? source_main : consumer_main, s);
}

void ecf_stage_join(ecf_stage *s)
{
    if (s->thread)
        g_thread_join(s->thread);
    s->thread = NULL;
}

void ecf_stage_stop(ecf_stage *s)
{
    if (s->started && s->p->stop)
        s->p->stop(s);
    s->started = FALSE;
}

void ecf_stage_destroy(ecf_stage *s)
{
    if (s->created && s->p->destroy)
        s->p->destroy(s);
    s->created = FALSE;
}
