/*
 * sink-kafka: publishes every message to one Kafka topic with librdkafka's
 * idempotent producer (acks=all) and settles the message's ack token from
 * its delivery report, so a source hears "durable" only when the brokers'
 * in-sync replicas have the record, and a failure with librdkafka's reason.
 *
 * Threads: the stage thread produces; a poller thread owned by the stage
 * serves librdkafka's main queue (delivery reports, errors, logs) so reports
 * flow whether or not batches arrive. The poller calls only host services
 * plugin.h marks [any] (ecf_settle, ecf_set_ready, ecf_log, metric updates)
 * and is joined in stop, or in destroy when start failed. A full producer
 * queue blocks the stage thread (backpressure), never drops.
 */
#include "sink_kafka.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_INTERVAL_MS 100
#define PROBE_TIMEOUT_MS 250
#define GAUGE_INTERVAL_US (250 * 1000)
#define FAIL_LOG_QUIET_US (30LL * 1000 * 1000)
#define PURGE_WAIT_US (5LL * 1000 * 1000)
#define FLUSH_MARGIN_US (5LL * 1000 * 1000)
#define REPORT_CHUNK 256
#define DRAIN_BATCH 1024

typedef enum { TS_PRODUCE, TS_INGEST, TS_EVENT } ts_mode;

typedef struct {
    ecf_metric *produced;
    ecf_metric *delivered;
    ecf_metric *failed;
    ecf_metric *bytes_produced;
    ecf_metric *bytes_delivered;
    ecf_metric *latency;
    ecf_metric *in_flight;
    ecf_metric *queue_full;
} kafka_metrics;

typedef struct {
    ecf_stage *stage;
    const kafka_config *cfg;
    ts_mode ts;
    rd_kafka_conf_t *conf;       /* from create until rd_kafka_new takes it */
    rd_kafka_headers_t *headers; /* template, copied onto each record       */
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    rd_kafka_queue_t *mainq;

    pthread_t poller;
    bool poller_running;
    atomic_bool quit;
    atomic_bool fatal;
    /* Records produced whose delivery report has not been handled yet. */
    atomic_int_fast64_t in_flight;
    /* Totals for the closing summary line (metrics are the core's to read). */
    atomic_uint_fast64_t sent, delivered, failed, queue_waits;
    pthread_mutex_t lock;
    pthread_cond_t settled; /* broadcast after each batch of reports */

    /* Readiness (any thread); its probe and the error log throttle are the
     * poller thread's (or start's, before the poller exists). */
    kc_client client;
    /* Poller thread only (or start, before the poller exists). */
    int64_t next_gauge_us;
    int64_t next_fail_log_us;

    kafka_metrics m;
} kafka_sink;

/* ---------------------------------------------------------------- outcomes */

/* What a source should make of a failed delivery (HTTP: 400 vs 503). */
static ecf_status status_for(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD: return ECF_ERR_INVALID;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT: return ECF_ERR_STOPPED;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL: return ECF_ERR_BACKPRESSURE;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND: return ECF_ERR_UNAVAILABLE;
    default: return ECF_ERR_IO;
    }
}

static const char *reason_for(rd_kafka_resp_err_t err)
{
    if (err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
        return "Kafka sink stopped before the brokers confirmed delivery";
    return rd_kafka_err2str(err);
}

/* ---------------------------------------------------------------- reports */

typedef struct {
    uint64_t ok, failed, bytes, total;
    rd_kafka_resp_err_t last_err;
} report_tally;

static void settle_report(kafka_sink *ks, const rd_kafka_message_t *rkm, report_tally *t)
{
    ecf_token *tok = rkm->_private;
    t->total++;
    if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* One sample per report: its records came back in one response,
         * and a clock read per record cost more than the rest of this. */
        if (t->ok++ == 0) {
            int64_t lat = rd_kafka_message_latency(rkm);
            if (lat >= 0)
                ecf_metric_observe(ks->stage, ks->m.latency, (double)lat / 1e6);
        }
        t->bytes += rkm->len + rkm->key_len;
        if (tok)
            ecf_settle(ks->stage, tok, ECF_OK, NULL);
        return;
    }
    t->failed++;
    t->last_err = rkm->err;
    if (tok)
        ecf_settle(ks->stage, tok, status_for(rkm->err), reason_for(rkm->err));
}

static void serve_reports(kafka_sink *ks, rd_kafka_event_t *ev)
{
    const rd_kafka_message_t *msgs[REPORT_CHUNK];
    report_tally t = {0};
    size_t n;
    while ((n = rd_kafka_event_message_array(ev, msgs, REPORT_CHUNK)) > 0) {
        for (size_t i = 0; i < n; i++)
            settle_report(ks, msgs[i], &t);
    }
    atomic_fetch_add(&ks->delivered, t.ok);
    atomic_fetch_add(&ks->failed, t.failed);
    if (t.ok) {
        ecf_metric_add(ks->stage, ks->m.delivered, (double)t.ok);
        ecf_metric_add(ks->stage, ks->m.bytes_delivered, (double)t.bytes);
        kc_set_ready(&ks->client, true);
    }
    if (t.failed) {
        ecf_metric_add(ks->stage, ks->m.failed, (double)t.failed);
        int64_t now = kc_mono_us();
        if (now >= ks->next_fail_log_us) {
            ks->next_fail_log_us = now + FAIL_LOG_QUIET_US;
            ecf_log(ks->stage, ECF_LOG_WARN, "%" PRIu64 " message(s) not delivered: %s", t.failed,
                    reason_for(t.last_err));
        }
    }
    pthread_mutex_lock(&ks->lock);
    atomic_fetch_sub(&ks->in_flight, (int_fast64_t)t.total);
    pthread_cond_broadcast(&ks->settled);
    pthread_mutex_unlock(&ks->lock);
}

static void serve_error(kafka_sink *ks, rd_kafka_event_t *ev)
{
    rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
    const char *why = rd_kafka_event_error_string(ev);
    if (!rd_kafka_event_error_is_fatal(ev)) {
        kc_serve_error(&ks->client, err, why);
        return;
    }
    kc_note_error(&ks->client, err, why);
    char buf[512];
    kc_fatal_reason(ks->rk, buf, sizeof buf);
    atomic_store(&ks->fatal, true);
    kc_set_ready(&ks->client, false);
    ecf_log(ks->stage, ECF_LOG_ERROR, "Kafka producer failed for good: %s", buf);
}

static void serve_log(kafka_sink *ks, rd_kafka_event_t *ev)
{
    const char *fac = "", *str = "";
    int level = 7;
    if (rd_kafka_event_log(ev, &fac, &str, &level) == 0)
        kc_log(ks->stage, level, fac, str);
}

static void serve_event(kafka_sink *ks, rd_kafka_event_t *ev)
{
    switch (rd_kafka_event_type(ev)) {
    case RD_KAFKA_EVENT_DR: serve_reports(ks, ev); break;
    case RD_KAFKA_EVENT_ERROR: serve_error(ks, ev); break;
    case RD_KAFKA_EVENT_LOG: serve_log(ks, ev); break;
    default: break;
    }
    rd_kafka_event_destroy(ev);
}

/* Serves up to `max` events that are already queued, without waiting. */
static void drain_events(kafka_sink *ks, size_t max)
{
    rd_kafka_event_t *ev;
    for (size_t i = 0; i < max && (ev = rd_kafka_queue_poll(ks->mainq, 0)) != NULL; i++)
        serve_event(ks, ev);
}

/*
 * While not ready, the probe asks the brokers for metadata now and then: a
 * source that waits for readiness would otherwise wait for traffic that
 * cannot come. It blocks the poller only while no broker is up, when the
 * reports it delays are failures anyway. A producer that failed for good
 * stays not ready.
 */
static void housekeeping(kafka_sink *ks)
{
    int64_t now = kc_mono_us();
    if (now >= ks->next_gauge_us) {
        ks->next_gauge_us = now + GAUGE_INTERVAL_US;
        ecf_metric_set(ks->stage, ks->m.in_flight, (double)atomic_load(&ks->in_flight));
    }
    if (!atomic_load(&ks->fatal))
        kc_probe(&ks->client, ks->rk, now);
}

static void *poller_main(void *arg)
{
    kafka_sink *ks = arg;
    while (!atomic_load(&ks->quit)) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(ks->mainq, POLL_INTERVAL_MS);
        if (ev) {
            serve_event(ks, ev);
            /* What queued up meanwhile, before a probe may block; bounded so
             * the gauge still moves under a steady stream of reports. */
            drain_events(ks, DRAIN_BATCH);
        }
        housekeeping(ks);
    }
    return NULL;
}

/* ---------------------------------------------------------------- waiting */

/* Waits until no record is in flight or the deadline passes; returns how many are. */
static int64_t wait_settled(kafka_sink *ks, int64_t deadline_us)
{
    pthread_mutex_lock(&ks->lock);
    int64_t left;
    while ((left = atomic_load(&ks->in_flight)) > 0) {
        int64_t now = kc_mono_us();
        if (now >= deadline_us)
            break;
        int64_t until = now + (deadline_us - now < 100000 ? deadline_us - now : 100000);
        struct timespec ts = {.tv_sec = until / 1000000, .tv_nsec = (until % 1000000) * 1000};
        pthread_cond_timedwait(&ks->settled, &ks->lock, &ts);
    }
    pthread_mutex_unlock(&ks->lock);
    return left;
}

/* Sleeps until a batch of reports was handled (room in the queue) or ~wait_us. */
static void wait_some_settled(kafka_sink *ks, int64_t wait_us)
{
    int64_t until = kc_mono_us() + wait_us;
    struct timespec ts = {.tv_sec = until / 1000000, .tv_nsec = (until % 1000000) * 1000};
    pthread_mutex_lock(&ks->lock);
    pthread_cond_timedwait(&ks->settled, &ks->lock, &ts);
    pthread_mutex_unlock(&ks->lock);
}

/*
 * Fails whatever librdkafka still holds: purged records come back as
 * delivery reports with a purge error, which settle their tokens. Needs the
 * poller running. Returns how many stay unsettled after a bounded wait.
 */
static int64_t fail_unsettled(kafka_sink *ks)
{
    if (atomic_load(&ks->in_flight) <= 0)
        return 0;
    rd_kafka_purge(ks->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    return wait_settled(ks, kc_mono_us() + PURGE_WAIT_US);
}

/* ---------------------------------------------------------------- produce */

static int64_t record_time_ms(const kafka_sink *ks, const ecf_message *m)
{
    switch (ks->ts) {
    case TS_INGEST: return m->ingest_time_us > 0 ? m->ingest_time_us / 1000 : 0;
    case TS_EVENT: return m->event_time_us > 0 ? m->event_time_us / 1000 : 0;
    default: return 0; /* librdkafka stamps it when produced */
    }
}

/* The stage's static headers, then the message's own (a DLQ reason, the
 * headers a Kafka source carried); NULL when there are none. */
static rd_kafka_headers_t *record_headers(const kafka_sink *ks, const ecf_message *m)
{
    if (!ks->headers && m->n_headers == 0)
        return NULL;
    rd_kafka_headers_t *hdrs = ks->headers ? rd_kafka_headers_copy(ks->headers) : rd_kafka_headers_new(m->n_headers);
    for (uint32_t i = 0; i < m->n_headers; i++)
        rd_kafka_header_add(hdrs, m->headers[i].name, -1, m->headers[i].value, (ssize_t)m->headers[i].value_len);
    return hdrs;
}

static rd_kafka_resp_err_t produce(kafka_sink *ks, const ecf_message *m, ecf_token *tok)
{
    rd_kafka_vu_t vu[7];
    size_t n = 0;
    vu[n].vtype = RD_KAFKA_VTYPE_RKT;
    vu[n++].u.rkt = ks->rkt;
    /* Copy: the batch is borrowed and goes away when process returns. */
    vu[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vu[n++].u.i = RD_KAFKA_MSG_F_COPY;
    vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
    vu[n].u.mem.ptr = (void *)m->payload;
    vu[n++].u.mem.size = m->payload_len;
    vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vu[n++].u.ptr = tok;
    if (m->key_len > 0) {
        vu[n].vtype = RD_KAFKA_VTYPE_KEY;
        vu[n].u.mem.ptr = (void *)m->key;
        vu[n++].u.mem.size = m->key_len;
    }
    int64_t ts = record_time_ms(ks, m);
    if (ts > 0) {
        vu[n].vtype = RD_KAFKA_VTYPE_TIMESTAMP;
        vu[n++].u.i64 = ts;
    }
    rd_kafka_headers_t *hdrs = record_headers(ks, m);
    if (hdrs) {
        vu[n].vtype = RD_KAFKA_VTYPE_HEADERS;
        vu[n++].u.headers = hdrs;
    }

    rd_kafka_error_t *error = rd_kafka_produceva(ks->rk, vu, n);
    if (!error)
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_resp_err_t err = rd_kafka_error_code(error);
    rd_kafka_error_destroy(error);
    if (hdrs) /* librdkafka owns them only when the record was accepted */
        rd_kafka_headers_destroy(hdrs);
    return err;
}

/*
 * A full producer queue is backpressure: wait for reports to make room.
 * librdkafka reports every queued record within delivery_timeout, so room
 * always comes; once the pipeline stops we wait no longer than that.
 */
static bool wait_for_room(kafka_sink *ks, int64_t *stop_deadline)
{
    if (ecf_should_stop(ks->stage)) {
        int64_t now = kc_mono_us();
        if (*stop_deadline == 0)
            *stop_deadline = now + ks->cfg->delivery_timeout_us + FLUSH_MARGIN_US;
        else if (now >= *stop_deadline)
            return false;
    }
    ecf_metric_add(ks->stage, ks->m.queue_full, 1);
    atomic_fetch_add(&ks->queue_waits, 1);
    wait_some_settled(ks, 50 * 1000);
    return true;
}

typedef struct {
    uint64_t produced, bytes, failed;
} produce_tally;

/* Returns false only when the producer is gone for good. */
static bool produce_one(kafka_sink *ks, ecf_message *m, produce_tally *t)
{
    ecf_token *tok = m->token ? ecf_hold(ks->stage, m) : NULL;
    int64_t stop_deadline = 0;
    rd_kafka_resp_err_t err;

    /* Counted before produce: its report may be served before we return. */
    atomic_fetch_add(&ks->in_flight, 1);
    while ((err = produce(ks, m, tok)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        if (!wait_for_room(ks, &stop_deadline))
            break;
    }
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        t->produced++;
        t->bytes += (uint64_t)m->payload_len + m->key_len;
        return true;
    }
    atomic_fetch_sub(&ks->in_flight, 1);
    t->failed++;
    if (tok)
        ecf_settle(ks->stage, tok, status_for(err), reason_for(err));
    return err != RD_KAFKA_RESP_ERR__FATAL;
}

static ecf_status kafka_process(ecf_stage *stage, ecf_batch *batch)
{
    kafka_sink *ks = ecf_state(stage);
    uint32_t n = ecf_batch_count(stage, batch);
    produce_tally t = {0};
    uint32_t i = 0;
    while (i < n && produce_one(ks, ecf_batch_message(stage, batch, i), &t))
        i++;

    ecf_metric_add(stage, ks->m.produced, (double)t.produced);
    ecf_metric_add(stage, ks->m.bytes_produced, (double)t.bytes);
    atomic_fetch_add(&ks->sent, t.produced);
    if (i == n) {
        atomic_fetch_add(&ks->failed, t.failed);
        if (t.failed)
            ecf_metric_add(stage, ks->m.failed, (double)t.failed);
        return ECF_OK;
    }

    /* The idempotent producer hit a fatal error: nothing more can be produced. */
    char why[512];
    kc_fatal_reason(ks->rk, why, sizeof why);
    for (i++; i < n; i++, t.failed++)
        ecf_nack(stage, ecf_batch_message(stage, batch, i), ECF_ERR_UNAVAILABLE, why);
    ecf_metric_add(stage, ks->m.failed, (double)t.failed);
    atomic_fetch_add(&ks->failed, t.failed);
    return ecf_fail(stage, ECF_ERR_FATAL, "Kafka producer failed for good: %s", why);
}

/* ---------------------------------------------------------------- lifecycle */

static void kafka_destroy(ecf_stage *stage);

static void metrics_create(ecf_stage *stage, kafka_metrics *m)
{
    m->produced = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_messages_produced_total",
                                 "records handed to the Kafka producer");
    m->delivered = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_messages_delivered_total",
                                  "records the brokers confirmed (acks=all)");
    m->failed = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_messages_failed_total",
                               "records that failed, settled with the reason");
    m->bytes_produced = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_bytes_produced_total",
                                       "key + value bytes handed to the producer");
    m->bytes_delivered = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_bytes_delivered_total",
                                        "key + value bytes the brokers confirmed");
    m->latency = ecf_metric_new(stage, ECF_METRIC_HISTOGRAM, "kafka_delivery_latency_seconds",
                                "from produce to delivery report, one record sampled per report");
    m->in_flight =
        ecf_metric_new(stage, ECF_METRIC_GAUGE, "kafka_in_flight_messages", "records produced and not yet reported");
    m->queue_full = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_queue_full_waits_total",
                                   "times the stage waited for room in the producer queue");
}

static ecf_status kafka_create(ecf_stage *stage)
{
    const kafka_config *cfg = ecf_config(stage);
    ecf_status st = kafka_conf_check(stage, cfg);
    if (st != ECF_OK)
        return st;

    kafka_sink *ks = calloc(1, sizeof *ks);
    if (!ks)
        return ECF_ERR_NOMEM;
    ks->stage = stage;
    ks->cfg = cfg;
    ks->ts = strcmp(cfg->timestamp, "ingest") == 0  ? TS_INGEST
             : strcmp(cfg->timestamp, "event") == 0 ? TS_EVENT
                                                    : TS_PRODUCE;
    pthread_mutex_init(&ks->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ks->settled, &ca);
    pthread_condattr_destroy(&ca);
    /* Not ready until start's metadata request succeeds. */
    kc_client_init(&ks->client, stage, &cfg->client, false,
                   " (messages are retried for delivery_timeout, then failed)");
    ecf_set_state(stage, ks);

    /* Built here so a rejected kafka.* property stops the pipeline before start. */
    ks->conf = kafka_conf_build(stage, cfg);
    if (!ks->conf) { /* the core calls destroy only after a create that succeeded */
        kafka_destroy(stage);
        return ECF_ERR_CONFIG;
    }
    ks->headers = kafka_headers_build(cfg);
    metrics_create(stage, &ks->m);
    return ECF_OK;
}

/* Whether the topic is listed with `want` partitions, each with a leader. */
static bool topic_complete(const struct rd_kafka_metadata *md, const char *topic, int want)
{
    const struct rd_kafka_metadata_topic *t = kc_find_topic(md, topic);
    if (!t || t->partition_cnt < want)
        return false;
    for (int p = 0; p < t->partition_cnt; p++)
        if (t->partitions[p].err != RD_KAFKA_RESP_ERR_NO_ERROR || t->partitions[p].leader < 0)
            return false;
    return true;
}

/*
 * A topic just created is known to the controller before the brokers'
 * metadata caches have all of it. Production waits until the topic is listed
 * complete twice in a row, so the producer's first view of it is the final
 * one rather than a half-propagated topic it would have to revise.
 */
static void wait_topic_complete(kafka_sink *ks)
{
    const kafka_config *cfg = ks->cfg;
    int64_t deadline = kc_mono_us() + cfg->client.connect_timeout_us;
    int seen = 0;
    while (seen < 2 && kc_mono_us() < deadline) {
        const struct rd_kafka_metadata *md = NULL;
        if (kc_list_topics(ks->rk, PROBE_TIMEOUT_MS, &md) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            seen = topic_complete(md, cfg->topic, (int)cfg->partitions) ? seen + 1 : 0;
            rd_kafka_metadata_destroy(md);
        }
        if (seen < 2)
            kc_sleep_us(50 * 1000);
    }
    if (seen < 2)
        ecf_log(ks->stage, ECF_LOG_WARN,
                "topic '%s' was created but its metadata is not "
                "complete after %.1fs; producing anyway",
                cfg->topic, (double)cfg->client.connect_timeout_us / 1e6);
}

/* Is a broker there, does the topic exist (or may we create it)? */
static ecf_status broker_check(kafka_sink *ks)
{
    ecf_stage *stage = ks->stage;
    const kafka_config *cfg = ks->cfg;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = kc_list_topics(ks->rk, kc_ms(cfg->client.connect_timeout_us), &md);
    drain_events(ks, SIZE_MAX); /* logs librdkafka's view and keeps its last error */
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        return kc_no_broker(&ks->client, err,
                            cfg->create_topic ? " (create_topic skipped: the topic must exist "
                                                "or be auto-created by the broker)"
                                              : "");
    bool exists = kc_find_topic(md, cfg->topic) != NULL;
    rd_kafka_metadata_destroy(md);

    if (!exists && cfg->create_topic) {
        ecf_status st = kafka_topic_create(stage, ks->rk, cfg);
        if (st != ECF_OK)
            return st;
        wait_topic_complete(ks);
    } else if (!exists) {
        ecf_log(stage, ECF_LOG_WARN,
                "topic '%s' does not exist: records fail unless the "
                "broker auto-creates topics (set create_topic: true to create it)",
                cfg->topic);
    }
    kc_set_ready(&ks->client, true);
    return ECF_OK;
}

static void log_started(kafka_sink *ks)
{
    const kafka_config *cfg = ks->cfg;
    char keys[512];
    kc_passthrough_keys(&cfg->client, keys, sizeof keys);
    ecf_log(ks->stage, ECF_LOG_INFO,
            "producing to topic '%s' at %s (idempotent, acks=all, compression %s, "
            "linger %.1fms, delivery_timeout %.1fs%s%s)",
            cfg->topic, cfg->client.bootstrap, cfg->compression, (double)cfg->linger_us / 1000.0,
            (double)cfg->delivery_timeout_us / 1e6, *keys ? "; kafka: " : "", keys);
}

static ecf_status kafka_start(ecf_stage *stage)
{
    kafka_sink *ks = ecf_state(stage);
    char errstr[512];
    ecf_set_ready(stage, false);

    rd_kafka_conf_set_events(ks->conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG);
    ks->rk = rd_kafka_new(RD_KAFKA_PRODUCER, ks->conf, errstr, sizeof errstr);
    if (!ks->rk) /* librdkafka checks how properties go together only here */
        return ecf_error(stage, "librdkafka refused the configuration: %s", errstr);
    ks->conf = NULL; /* rd_kafka_new owns it now */
    ks->mainq = rd_kafka_queue_get_main(ks->rk);
    rd_kafka_set_log_queue(ks->rk, NULL);

    ecf_status st = broker_check(ks);
    if (st != ECF_OK)
        return st;
    ks->rkt = rd_kafka_topic_new(ks->rk, ks->cfg->topic, NULL);
    if (!ks->rkt)
        return ecf_error(stage, "option 'topic': '%s': %s", ks->cfg->topic, rd_kafka_err2str(rd_kafka_last_error()));

    if (pthread_create(&ks->poller, NULL, poller_main, ks) != 0)
        return ecf_fail(stage, ECF_ERR_INTERNAL, "cannot start the Kafka poller thread");
    ks->poller_running = true;
    log_started(ks);
    return ECF_OK;
}

static ecf_status kafka_flush(ecf_stage *stage)
{
    kafka_sink *ks = ecf_state(stage);
    if (!ks || !ks->rk)
        return ECF_OK;
    const kafka_config *cfg = ks->cfg;
    /* Longer than delivery_timeout: librdkafka reports every record by then. */
    int64_t timeout = cfg->flush_timeout_us ? cfg->flush_timeout_us : cfg->delivery_timeout_us + FLUSH_MARGIN_US;
    int64_t deadline = kc_mono_us() + timeout;

    /* Sends lingering batches now and waits while the poller serves reports. */
    rd_kafka_flush(ks->rk, kc_ms(timeout));
    int64_t left = wait_settled(ks, deadline);
    ecf_metric_set(stage, ks->m.in_flight, (double)left);
    if (left == 0)
        return ECF_OK;

    int64_t stuck = fail_unsettled(ks);
    ecf_log(stage, ECF_LOG_WARN,
            "flush: %" PRId64 " message(s) not delivered within %.1fs; "
            "failed them",
            left, (double)timeout / 1e6);
    if (stuck > 0)
        ecf_log(stage, ECF_LOG_ERROR,
                "flush: %" PRId64 " message(s) still unreported by "
                "librdkafka",
                stuck);
    return ecf_fail(stage, ECF_ERR_TIMEOUT, "%" PRId64 " message(s) not delivered within flush_timeout", left);
}

/* Fails what is still in flight, stops the poller, frees librdkafka. */
static void producer_close(kafka_sink *ks)
{
    if (!ks->rk)
        return;
    if (ks->poller_running) {
        int64_t stuck = fail_unsettled(ks);
        if (stuck > 0)
            ecf_log(ks->stage, ECF_LOG_ERROR,
                    "stop: %" PRId64 " message(s) unreported by "
                    "librdkafka",
                    stuck);
        atomic_store(&ks->quit, true);
        rd_kafka_queue_yield(ks->mainq);
        pthread_join(ks->poller, NULL);
        ks->poller_running = false;
    }
    drain_events(ks, SIZE_MAX);
    ecf_log(ks->stage, ECF_LOG_INFO,
            "closed: %" PRIu64 " message(s) produced, %" PRIu64 " delivered, %" PRIu64 " failed; waited %" PRIu64
            " time(s) for room in the "
            "producer queue",
            (uint64_t)atomic_load(&ks->sent), (uint64_t)atomic_load(&ks->delivered), (uint64_t)atomic_load(&ks->failed),
            (uint64_t)atomic_load(&ks->queue_waits));
    if (ks->rkt)
        rd_kafka_topic_destroy(ks->rkt);
    rd_kafka_queue_destroy(ks->mainq);
    rd_kafka_destroy(ks->rk);
    ks->rkt = NULL;
    ks->mainq = NULL;
    ks->rk = NULL;
}

static void kafka_stop(ecf_stage *stage)
{
    kafka_sink *ks = ecf_state(stage);
    if (ks)
        producer_close(ks);
}

static void kafka_destroy(ecf_stage *stage)
{
    kafka_sink *ks = ecf_state(stage);
    if (!ks)
        return;
    producer_close(ks); /* when start failed or stop was skipped */
    if (ks->conf)
        rd_kafka_conf_destroy(ks->conf);
    if (ks->headers)
        rd_kafka_headers_destroy(ks->headers);
    pthread_cond_destroy(&ks->settled);
    pthread_mutex_destroy(&ks->lock);
    free(ks);
    ecf_set_state(stage, NULL);
}

ECF_PLUGIN_DEFINE(.name = "sink-kafka", .kind = ECF_SINK, .version = "1.0.0",
                  .summary = "Publishes messages to a Kafka topic (idempotent, acks=all); acks when "
                             "the brokers confirm",
                  .config_size = sizeof(kafka_config), .options = kafka_options, .create = kafka_create,
                  .start = kafka_start, .process = kafka_process, .flush = kafka_flush, .stop = kafka_stop,
                  .destroy = kafka_destroy, );
