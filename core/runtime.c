#include "runtime.h"

#include "clock.h"
#include "log.h"
#include "metrics_http.h"
#include "stage.h"
#include "status.h"
#include "sync.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct ecf_runtime {
    ecf_pipeline_def *def;
    GPtrArray *stages; /* ecf_stage*, upstream before downstream */
    ecf_batch_pool *batches;
    ecf_ack_pool *acks;
    ecf_metrics *metrics;
    ecf_metrics_http *http; /* the endpoint, when settings.metrics asks for one */
    GHashTable *settings;   /* key -> string, for pipeline_setting */
    _Atomic gboolean stopping;
    _Atomic gboolean failed;
    _Atomic gboolean signals_done;
    pthread_t signal_thread;
    _Atomic gboolean status_done;
    ecf_mutex status_lock;   /* guards status_items: stages add them from their threads */
    GPtrArray *status_items; /* status_item*, in the order their labels first came */
    struct stage_gauges *stage_gauges;
    ecf_metric *m_acks;
};

/* One label of the live status line and the metrics summed under it. */
typedef struct {
    char *label;
    GPtrArray *metrics; /* ecf_metric*, borrowed from the registry */
    double last;        /* counters: the sum a second ago, for the rate */
} status_item;

static void status_item_free(gpointer p)
{
    status_item *it = p;
    g_free(it->label);
    g_ptr_array_free(it->metrics, TRUE);
    g_free(it);
}

ecf_batch_pool *ecf_runtime_batches(ecf_runtime *rt) { return rt->batches; }
ecf_ack_pool *ecf_runtime_acks(ecf_runtime *rt) { return rt->acks; }
ecf_metrics *ecf_runtime_metrics(ecf_runtime *rt) { return rt->metrics; }
gboolean ecf_runtime_stopping(ecf_runtime *rt) { return atomic_load(&rt->stopping); }
guint16 ecf_runtime_metrics_port(ecf_runtime *rt) { return ecf_metrics_http_port(rt->http); }

const char *ecf_runtime_setting(ecf_runtime *rt, const char *key)
{
    return key ? g_hash_table_lookup(rt->settings, key) : NULL;
}

gboolean ecf_runtime_ready(ecf_runtime *rt)
{
    if (atomic_load(&rt->stopping))
        return FALSE;
    for (guint i = 0; i < rt->stages->len; i++)
        if (!atomic_load(&((ecf_stage *)rt->stages->pdata[i])->ready))
            return FALSE;
    return TRUE;
}

static gboolean ready_cb(void *user) { return ecf_runtime_ready(user); }

void ecf_runtime_request_stop(ecf_runtime *rt) { atomic_store(&rt->stopping, TRUE); }

void ecf_runtime_fail(ecf_runtime *rt, ecf_stage *culprit)
{
    if (!atomic_exchange(&rt->failed, TRUE))
        ecf_logf(NULL, ECF_LOG_ERROR, "stage '%s' failed; stopping the pipeline", culprit->def->name);
    atomic_store(&rt->stopping, TRUE);
}

/* Gauges of the core's own state, read at scrape time: one per stage
 * (index i of stage_gauges is stage i; an instance of `workers:` other than
 * the first has none, its primary's cover them all) and the ack pool. */
typedef struct stage_gauges {
    ecf_metric *fill, *ready, *failed;
} stage_gauges;

static void register_gauges(ecf_runtime *rt)
{
    rt->stage_gauges = g_new0(stage_gauges, rt->stages->len);
    for (guint i = 0; i < rt->stages->len; i++) {
        ecf_stage *s = rt->stages->pdata[i];
        stage_gauges *g = &rt->stage_gauges[i];
        if (s->primary != s)
            continue;
        if (s->in)
            g->fill = ecf_metrics_get(rt->metrics, ECF_METRIC_GAUGE, "ring_fill_ratio",
                                      "Share of the stage's input ring in use", s->def->name);
        g->ready = ecf_metrics_get(rt->metrics, ECF_METRIC_GAUGE, "stage_ready",
                                   "1 when the stage says it can do its job (its service answers)", s->def->name);
        g->failed =
            ecf_metrics_get(rt->metrics, ECF_METRIC_GAUGE, "stage_failed", "1 once the stage has failed", s->def->name);
    }
    rt->m_acks = ecf_metrics_get(rt->metrics, ECF_METRIC_GAUGE, "acks_outstanding", "Ack tokens not yet settled", NULL);
}

static void refresh_gauges(void *user)
{
    ecf_runtime *rt = user;
    for (guint i = 0; i < rt->stages->len; i++) {
        ecf_stage *s = rt->stages->pdata[i];
        stage_gauges *g = &rt->stage_gauges[i];
        if (s->primary != s)
            continue;
        double used = 0, cap = 0;
        gboolean ready = TRUE, failed = FALSE; /* over every instance of the stage */
        for (guint k = 0; k < ecf_stage_workers(s); k++) {
            ecf_stage *w = ecf_stage_worker(s, k);
            if (w->in) {
                used += ecf_ring_count(w->in);
                cap += ecf_ring_capacity(w->in);
            }
            ready &= atomic_load(&w->ready);
            failed |= atomic_load(&w->failed);
        }
        if (g->fill)
            ecf_metric_do_set(g->fill, used / cap);
        ecf_metric_do_set(g->ready, ready ? 1 : 0);
        ecf_metric_do_set(g->failed, failed ? 1 : 0);
    }
    ecf_metric_do_set(rt->m_acks, (double)ecf_ack_pool_outstanding(rt->acks));
}

ecf_runtime *ecf_runtime_new(ecf_pipeline_def *def)
{
    ecf_runtime *rt = g_new0(ecf_runtime, 1);
    rt->def = def;
    rt->batches = ecf_batch_pool_new();
    rt->acks = ecf_ack_pool_new();
    rt->metrics = ecf_metrics_new(def->settings.name);
    rt->settings = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
    ecf_mutex_init(&rt->status_lock);
    rt->status_items = g_ptr_array_new_with_free_func(status_item_free);
    g_hash_table_insert(rt->settings, "name", g_strdup(def->settings.name));
    g_hash_table_insert(rt->settings, "batch_size", g_strdup_printf("%" G_GINT64_FORMAT, def->settings.batch_size));
    g_hash_table_insert(rt->settings, "ring_capacity",
                        g_strdup_printf("%" G_GINT64_FORMAT, def->settings.ring_capacity));
    if (def->profile)
        g_hash_table_insert(rt->settings, "profile", g_strdup(def->profile));

    rt->stages = g_ptr_array_new_with_free_func((GDestroyNotify)ecf_stage_free);
    g_autoptr(GHashTable) by_name = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; i < def->order->len; i++) {
        ecf_stage_def *sd = def->order->pdata[i];
        ecf_stage *s = ecf_stage_new(rt, sd, NULL);
        g_ptr_array_add(rt->stages, s);
        g_hash_table_insert(by_name, sd->name, s);
        for (guint k = 1; k < sd->workers; k++)
            g_ptr_array_add(rt->stages, ecf_stage_new(rt, sd, s));
    }
    for (guint i = 0; i < rt->stages->len; i++) {
        ecf_stage *s = rt->stages->pdata[i];
        if (s->primary != s) /* the group shares the primary's edges */
            continue;
        for (guint j = 0; j < s->def->inputs->len; j++) {
            ecf_input_ref *in = s->def->inputs->pdata[j];
            ecf_stage_connect(g_hash_table_lookup(by_name, in->stage), in->port, s);
        }
    }
    for (guint i = 0; i < rt->stages->len; i++) {
        ecf_stage *s = rt->stages->pdata[i];
        gint64 cap = s->def->ring_capacity ? s->def->ring_capacity : def->settings.ring_capacity;
        ecf_stage_make_input(s, (guint32)cap);
    }
    register_gauges(rt);
    ecf_metrics_add_refresh(rt->metrics, refresh_gauges, rt);
    ecf_metrics_set_topology(rt->metrics, ecf_status_topology(def));
    return rt;
}

void ecf_runtime_free(ecf_runtime *rt)
{
    if (!rt)
        return;
    ecf_metrics_http_stop(rt->http); /* before the registry it serves */
    ecf_metrics_free(rt->metrics);
    g_ptr_array_free(rt->stages, TRUE);
    g_free(rt->stage_gauges);
    ecf_batch_pool_free(rt->batches);
    ecf_ack_pool_free(rt->acks);
    g_hash_table_destroy(rt->settings);
    g_ptr_array_free(rt->status_items, TRUE);
    ecf_mutex_clear(&rt->status_lock);
    g_free(rt);
}

/* ------------------------------------------------------------ signals */

static void *signal_main(void *data)
{
    ecf_runtime *rt = data;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1); /* our own "the run is over" */
    int received = 0;
    while (!atomic_load(&rt->signals_done)) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0 || sig == SIGUSR1)
            continue;
        if (++received == 1) {
            ecf_core_info("%s received: draining (send it again to exit at once)", strsignal(sig));
            ecf_runtime_request_stop(rt);
        } else {
            static const char msg[] = "second signal: exiting without draining\n";
            (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
            _exit(130);
        }
    }
    return NULL;
}

/* Every thread made after this inherits the mask, so only signal_main
 * ever sees SIGINT/SIGTERM. */
static void block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* ------------------------------------------------------------ live status */

/* Events the sources have put into the pipeline so far. */
static double sources_out(ecf_runtime *rt)
{
    double sum = 0;
    for (guint i = 0; i < rt->stages->len; i++) {
        ecf_stage *s = rt->stages->pdata[i];
        if (s->p->kind == ECF_SOURCE)
            sum += ecf_metric_value(s->m_out);
    }
    return sum;
}

static double failed(ecf_runtime *rt)
{
    double sum = 0;
    for (guint i = 0; i < rt->stages->len; i++) {
        ecf_stage *s = rt->stages->pdata[i];
        if (s->primary == s) /* instances share the stage's counters */
            sum += ecf_metric_value(s->m_errors);
    }
    return sum;
}

void ecf_runtime_add_status(ecf_runtime *rt, const char *label, ecf_metric *m)
{
    ecf_mutex_lock(&rt->status_lock);
    status_item *it = NULL;
    for (guint i = 0; i < rt->status_items->len && !it; i++)
        if (strcmp(((status_item *)rt->status_items->pdata[i])->label, label) == 0)
            it = rt->status_items->pdata[i];
    if (!it) {
        it = g_new0(status_item, 1);
        it->label = g_strdup(label);
        it->metrics = g_ptr_array_new();
        g_ptr_array_add(rt->status_items, it);
    }
    if (!g_ptr_array_find(it->metrics, m, NULL))
        g_ptr_array_add(it->metrics, m);
    ecf_mutex_unlock(&rt->status_lock);
}

/* The plugins' labels: counters as a rate, gauges as a value. */
static void append_status_items(ecf_runtime *rt, GString *line, double secs)
{
    ecf_mutex_lock(&rt->status_lock);
    for (guint i = 0; i < rt->status_items->len; i++) {
        status_item *it = rt->status_items->pdata[i];
        double sum = 0;
        gboolean counter = FALSE;
        for (guint j = 0; j < it->metrics->len; j++) {
            const ecf_metric *m = it->metrics->pdata[j];
            counter |= ecf_metric_kind_of(m) == ECF_METRIC_COUNTER;
            sum += ecf_metric_value(m);
        }
        if (counter)
            g_string_append_printf(line, " | %s %.0f/s", it->label, (sum - it->last) / secs);
        else
            g_string_append_printf(line, " | %s %.0f", it->label, sum);
        it->last = sum;
    }
    ecf_mutex_unlock(&rt->status_lock);
}

/* One line, rewritten in place, for a person watching a terminal. */
static gpointer status_main(gpointer data)
{
    ecf_runtime *rt = data;
    double last_in = 0;
    gint64 last = g_get_monotonic_time();
    g_autoptr(GString) line = g_string_new(NULL);
    ecf_log_set_status_line(TRUE);
    while (!atomic_load(&rt->status_done)) {
        g_usleep(G_USEC_PER_SEC);
        gint64 now = g_get_monotonic_time();
        double secs = (now - last) / 1e6, in = sources_out(rt);
        g_string_printf(line, "%s: in %.0f ev/s", rt->def->settings.name, (in - last_in) / secs);
        append_status_items(rt, line, secs);
        g_string_append_printf(line, " | acks pending %" G_GINT64_FORMAT " | failed %.0f",
                               ecf_ack_pool_outstanding(rt->acks), failed(rt));
        fprintf(stderr, "\r\033[K%s", line->str);
        last_in = in;
        last = now;
    }
    ecf_log_set_status_line(FALSE);
    fprintf(stderr, "\r\033[K");
    return NULL;
}

/* ------------------------------------------------------------ run */

/* Workers ordered per partition get batches split by partition, which the
 * core can do for raw messages only; records arrive once upstream exists. */
static gboolean split_input_ok(ecf_runtime *rt, ecf_stage *s, char **error)
{
    if (s->primary != s || ecf_stage_workers(s) < 2 || s->p->parallelism != ECF_PARALLEL_PARTITION)
        return TRUE;
    for (guint i = 0; i < s->inputs->len; i++) {
        ecf_in_edge *e = &g_array_index(s->inputs, ecf_in_edge, i);
        if (!e->up->ports[e->port].schema)
            continue;
        *error = g_strdup_printf("%s:%d: stage '%s': 'workers: %u': '%s' is ordered per partition, so the core splits "
                                 "its input by partition, and it can only split raw messages; input '%s' carries "
                                 "records (run the stage as one worker, or make the upstream stage the parallel one)",
                                 rt->def->file, s->def->line, s->def->name, ecf_stage_workers(s), s->def->plugin_name,
                                 e->up->def->name);
        return FALSE;
    }
    return TRUE;
}

/* Stops at the first failure: later stages may depend on its schemas. */
static int create_all(ecf_runtime *rt, char **error)
{
    for (guint i = 0; i < rt->stages->len; i++) {
        ecf_stage *s = rt->stages->pdata[i];
        if (!split_input_ok(rt, s, error))
            return ECF_EXIT_CONFIG;
        ecf_status st = ecf_stage_create(s);
        if (st != ECF_OK) {
            *error =
                g_strdup_printf("%s:%d: stage '%s': %s", rt->def->file, s->def->line, s->def->name, ecf_stage_error(s));
            return st == ECF_ERR_CONFIG ? ECF_EXIT_CONFIG : ECF_EXIT_FAILURE;
        }
    }
    return ECF_EXIT_OK;
}

/* Sinks first, so nothing emits into a stage that cannot take it yet. */
static gboolean start_all(ecf_runtime *rt)
{
    for (guint i = rt->stages->len; i-- > 0;) {
        ecf_stage *s = rt->stages->pdata[i];
        ecf_status st = ecf_stage_start(s);
        if (st != ECF_OK) {
            ecf_core_error("stage '%s' could not start: %s: %s", s->def->name, ecf_status_str(st), ecf_stage_error(s));
            return FALSE;
        }
    }
    return TRUE;
}

static void teardown(ecf_runtime *rt)
{
    for (guint i = 0; i < rt->stages->len; i++)
        ecf_stage_stop(rt->stages->pdata[i]);
    for (guint i = 0; i < rt->stages->len; i++)
        ecf_stage_destroy(rt->stages->pdata[i]);
}

static void run_threads(ecf_runtime *rt)
{
    for (guint i = rt->stages->len; i-- > 0;)
        ecf_stage_spawn(rt->stages->pdata[i]);
    for (guint i = 0; i < rt->stages->len; i++)
        ecf_stage_join(rt->stages->pdata[i]);
}

static gboolean settle_outstanding(ecf_runtime *rt)
{
    gint64 deadline = g_get_monotonic_time() + rt->def->settings.drain_timeout_us;
    if (ecf_ack_pool_wait_idle(rt->acks, deadline))
        return TRUE;
    ecf_core_error("%" G_GINT64_FORMAT " acknowledgements did not settle within drain_timeout; "
                   "their sources were not told the outcome",
                   ecf_ack_pool_outstanding(rt->acks));
    return FALSE;
}

int ecf_runtime_check(ecf_runtime *rt)
{
    g_autofree char *error = NULL;
    int code = create_all(rt, &error);
    if (error)
        fprintf(stderr, "%s\n", error);
    teardown(rt);
    return code;
}

int ecf_runtime_command(ecf_runtime *rt, const char *group, const char *stage_name, int argc, const char *const *argv)
{
    g_autofree char *error = NULL;
    int code = create_all(rt, &error);
    if (error)
        fprintf(stderr, "%s\n", error);
    guint matched = 0;
    for (guint i = 0; code == ECF_EXIT_OK && i < rt->stages->len; i++) {
        ecf_stage *s = rt->stages->pdata[i];
        if (s->primary != s || !s->p->command || g_strcmp0(s->p->command_group, group) != 0)
            continue; /* a stage's command runs once, not once per instance */
        if (stage_name && strcmp(stage_name, s->def->name) != 0)
            continue;
        matched++;
        ecf_status st = s->p->command(s, argc, argv);
        if (st != ECF_OK) {
            fprintf(stderr, "%s:%d: stage '%s': %s\n", rt->def->file, s->def->line, s->def->name,
                    ecf_stage_error(s) ? ecf_stage_error(s) : ecf_status_str(st));
            code = st == ECF_ERR_CONFIG ? ECF_EXIT_CONFIG : ECF_EXIT_FAILURE;
        }
    }
    if (code == ECF_EXIT_OK && matched == 0) {
        fprintf(stderr, "%s: %s%s%s has no stage that answers 'ecflow %s'\n", rt->def->file,
                stage_name ? "stage '" : "the pipeline", stage_name ? stage_name : "", stage_name ? "'" : "", group);
        code = ECF_EXIT_CONFIG;
    }
    teardown(rt);
    return code;
}

int ecf_runtime_run(ecf_runtime *rt, gboolean handle_signals)
{
    gboolean sig_thread = FALSE;
    if (handle_signals) {
        block_signals();
        sig_thread = pthread_create(&rt->signal_thread, NULL, signal_main, rt) == 0;
    }
    g_autofree char *error = NULL;
    int code = create_all(rt, &error);
    if (error)
        ecf_core_error("%s", error);
    if (code == ECF_EXIT_OK && rt->def->settings.metrics) {
        g_autoptr(GError) err = NULL;
        rt->http = ecf_metrics_http_start(rt->metrics, rt->def->settings.metrics, ready_cb, rt, &err);
        if (!rt->http) {
            ecf_core_error("%s", err->message);
            code = ECF_EXIT_FAILURE;
        } else {
            ecf_core_info("metrics on http://%s:%u/metrics", ecf_metrics_http_host(rt->http),
                          ecf_metrics_http_port(rt->http));
        }
    }
    if (code == ECF_EXIT_OK && !start_all(rt))
        code = ECF_EXIT_FAILURE;
    if (code == ECF_EXIT_OK) {
        ecf_core_info("pipeline '%s' running: %u stages%s%s", rt->def->settings.name, rt->def->order->len,
                      rt->def->profile ? ", profile " : "", rt->def->profile ? rt->def->profile : "");
        /* Only for a person at a terminal; logs and pipes get nothing extra. */
        GThread *status =
            isatty(STDERR_FILENO) && ecf_log_is_text() ? g_thread_new("ecf:status", status_main, rt) : NULL;
        run_threads(rt);
        if (status) {
            atomic_store(&rt->status_done, TRUE);
            g_thread_join(status);
        }
        if (!settle_outstanding(rt) || atomic_load(&rt->failed))
            code = ECF_EXIT_FAILURE;
        else
            ecf_core_info("pipeline '%s' drained and stopped", rt->def->settings.name);
    }
    teardown(rt);
    if (sig_thread) {
        atomic_store(&rt->signals_done, TRUE);
        pthread_kill(rt->signal_thread, SIGUSR1);
        pthread_join(rt->signal_thread, NULL);
    }
    return code;
}
