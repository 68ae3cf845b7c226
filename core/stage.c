#include "stage.h"

#include "clock.h"
#include "host.h"
#include "log.h"
#include "options.h"

#include <string.h>

#define IDLE_WAIT_US (100 * 1000)

/* ------------------------------------------------------------ building */

/* Another instance: its own state, ring and thread; the primary's ports,
 * inputs and metrics (get-or-create by name, so counters add up). */
static void join_group(ecf_stage *s, ecf_stage *primary)
{
    s->primary = primary;
    s->ports = primary->ports;
    s->n_ports = primary->n_ports;
    s->inputs = primary->inputs;
    s->group = primary->group;
    s->index = primary->group->len;
    g_ptr_array_add(primary->group, s);
}

ecf_stage *ecf_stage_new(ecf_runtime *rt, ecf_stage_def *def, ecf_stage *primary)
{
    ecf_stage *s = g_new0(ecf_stage, 1);
    s->head.size = sizeof(ecf_stage_head);
    s->head.host = &ecf_host_table;
    s->rt = rt;
    s->def = def;
    s->p = &def->plugin->desc;
    atomic_init(&s->ready, TRUE);
    if (primary) {
        join_group(s, primary);
    } else {
        s->primary = s;
        s->group = g_ptr_array_new();
        g_ptr_array_add(s->group, s);
    }
    const char *const *ports = ecf_stage_ports(def);
    if (!primary) {
        for (const char *const *p = ports; p && *p; p++)
            s->n_ports++;
        s->ports = g_new0(ecf_port, MAX(s->n_ports, 1));
        for (guint i = 0; i < s->n_ports; i++) {
            s->ports[i].name = g_strdup(ports[i]);
            s->ports[i].consumers = g_array_new(FALSE, FALSE, sizeof(ecf_out_edge));
        }
        s->inputs = g_array_new(FALSE, FALSE, sizeof(ecf_in_edge));
    }
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
                                           "(one event in 16 sampled)",
                                           n);
    return s;
}

void ecf_stage_make_input(ecf_stage *s, guint32 ring_capacity)
{
    if (!s->inputs->len || s->in)
        return;
    guint producers = 0;
    for (guint i = 0; i < s->inputs->len; i++)
        producers += ecf_stage_workers(g_array_index(s->inputs, ecf_in_edge, i).up);
    /* The instances share the stage's ring_capacity, so workers do not
     * multiply the batches (and the memory) a stage holds. */
    s->in = ecf_ring_new(MAX(ring_capacity / ecf_stage_workers(s), 2), producers);
}

void ecf_stage_connect(ecf_stage *up, const char *port, ecf_stage *down)
{
    ecf_port *p = ecf_stage_port(up, port);
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
    ecf_ring_free(s->in);
    g_free(s->error);
    if (s->primary != s) { /* the primary owns what the group shares */
        g_free(s);
        return;
    }
    g_ptr_array_free(s->group, TRUE);
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
    g_free(s);
}

ecf_port *ecf_stage_port(ecf_stage *s, const char *name)
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

const char *ecf_stage_error(const ecf_stage *s) { return s->error ? s->error : "no reason given"; }

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
    ecf_logf(s->def->name, ECF_LOG_ERROR, "%s failed: %s: %s", what, ecf_status_str(st), ecf_stage_error(s));
    atomic_store(&s->failed, TRUE);
    ecf_runtime_fail(s->rt, s);
}

/* This instance is one producer of every instance downstream. */
static void close_outputs(ecf_stage *s)
{
    for (guint i = 0; i < s->n_ports; i++)
        for (guint j = 0; j < s->ports[i].consumers->len; j++) {
            ecf_stage *down = g_array_index(s->ports[i].consumers, ecf_out_edge, j).down;
            for (guint k = 0; k < ecf_stage_workers(down); k++)
                ecf_ring_producer_done(ecf_stage_worker(down, k)->in);
        }
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
        ecf_logf(s->def->name, st == ECF_ERR_FATAL ? ECF_LOG_ERROR : ECF_LOG_WARN, "batch of %u events failed: %s: %s",
                 n, ecf_status_str(st), why);
        if (!s->current_passed_on)
            for (guint32 i = 0; i < n; i++)
                ecf_host_nack(s, ecf_batch_at(b, i), st, why);
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
            ecf_host_nack(s, ecf_batch_at(b, i), ECF_ERR_STOPPED, why);
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
        gint64 wait = interval ? CLAMP(next_tick - ecf_clock_monotonic_us(), 0, IDLE_WAIT_US) : IDLE_WAIT_US;
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
    g_autofree char *name = s->primary == s ? g_strdup_printf("ecf:%.10s", s->def->name)
                                            : g_strdup_printf("ecf:%.8s#%u", s->def->name, s->index);
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
