/*
 * sink-null: takes every batch, counts it and acknowledges it at once.
 * Nothing is written anywhere. For benchmarks (it measures the core and the
 * upstream stages, not a device) and for profiles where the output does not
 * matter. Messages count as delivered: their sources see ECF_OK.
 */
#include <ecflow/plugin.h>

#include <inttypes.h>
#include <stdlib.h>

typedef struct {
    bool log_totals;
} null_config;

static const ecf_option null_options[] = {
    ECF_OPT_BOOL("log_totals", null_config, log_totals, "false",
                 "log the number of events and payload bytes taken when the stage stops"),
    ECF_OPT_END,
};

typedef struct {
    uint64_t events;
    uint64_t bytes;
    ecf_metric *m_bytes;
} null_state;

static ecf_status null_create(ecf_stage *stage)
{
    null_state *st = calloc(1, sizeof *st);
    if (!st)
        return ECF_ERR_NOMEM;
    st->m_bytes = ecf_metric_new(stage, ECF_METRIC_COUNTER, "null_bytes_total", "Payload bytes taken and discarded");
    ecf_set_state(stage, st);
    return ECF_OK;
}

static ecf_status null_process(ecf_stage *stage, ecf_batch *b)
{
    null_state *st = ecf_state(stage);
    size_t bytes = ecf_batch_bytes(stage, b);
    st->events += ecf_batch_count(stage, b);
    st->bytes += bytes;
    ecf_metric_add(stage, st->m_bytes, (double)bytes);
    ecf_batch_ack_all(stage, b);
    return ECF_OK;
}

static void null_stop(ecf_stage *stage)
{
    null_config *cfg = ecf_config(stage);
    null_state *st = ecf_state(stage);
    if (cfg->log_totals)
        ecf_log(stage, ECF_LOG_INFO, "discarded %" PRIu64 " events, %" PRIu64 " payload bytes", st->events, st->bytes);
}

static void null_destroy(ecf_stage *stage) { free(ecf_state(stage)); }

ECF_PLUGIN_DEFINE(.name = "sink-null", .kind = ECF_SINK, .version = "1.0.0",
                  .summary = "Acknowledges and discards every message (benchmarks, throwaway profiles)",
                  .config_size = sizeof(null_config), .options = null_options, .create = null_create,
                  .process = null_process, .stop = null_stop, .destroy = null_destroy,
                  .parallelism = ECF_PARALLEL_ANY, )
