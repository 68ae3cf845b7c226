#include "kafka_client.h"
#include "rdkafka_conf.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define PROBE_INTERVAL_US (1000 * 1000)
#define PROBE_TIMEOUT_MS 250
#define ERROR_LOG_QUIET_US (30LL * 1000 * 1000)

/* ---------------------------------------------------------------- options */

ecf_status kc_config_check(ecf_stage *stage, const kc_config *cfg)
{
    if (!cfg->bootstrap || !*cfg->bootstrap)
        return ecf_error(stage, "option 'bootstrap': empty; give host:port of a broker "
                                "(is KAFKA_BOOTSTRAP set?)");
    return ECF_OK;
}

static bool conf_set_common(ecf_stage *stage, rd_kafka_conf_t *conf, const kc_config *cfg)
{
    char client_id[256];
    snprintf(client_id, sizeof client_id, "ecflow-%s", ecf_name(stage));
    return ecf_rdkafka_conf_set(stage, conf, "bootstrap", "bootstrap.servers", cfg->bootstrap) &&
           ecf_rdkafka_conf_set(stage, conf, "kafka.client.id", "client.id", client_id)
           /*
         * librdkafka's 10s default means a returning broker is found that
         * late (and a producer checks a down broker's records against its
         * delivery timeout only that often); 1s is the Java client's default.
         */
           && ecf_rdkafka_conf_set(stage, conf, "kafka.reconnect.backoff.max.ms", "reconnect.backoff.max.ms", "1000")
           /* Logs reach us through a queue we poll, on our threads, never librdkafka's. */
           && ecf_rdkafka_conf_set(stage, conf, "kafka.log.queue", "log.queue", "true");
}

rd_kafka_conf_t *kc_conf_new(ecf_stage *stage, const kc_config *cfg)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set_common(stage, conf, cfg))
        return conf;
    rd_kafka_conf_destroy(conf);
    return NULL;
}

bool kc_conf_passthrough(ecf_stage *stage, rd_kafka_conf_t *conf, const kc_config *cfg, kc_key_check allowed)
{
    for (const ecf_kv *kv = cfg->kafka; kv && kv->key; kv++) {
        char origin[256];
        snprintf(origin, sizeof origin, "kafka.%s", kv->key);
        if (allowed && !allowed(stage, kv))
            return false;
        if (!ecf_rdkafka_conf_set(stage, conf, origin, kv->key, kv->value ? kv->value : ""))
            return false;
    }
    return true;
}

const char *kc_passthrough_keys(const kc_config *cfg, char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    for (const ecf_kv *kv = cfg->kafka; kv && kv->key && off < size; kv++) {
        int w = snprintf(buf + off, size - off, "%s%s", off ? ", " : "", kv->key);
        off += w > 0 ? (size_t)w : 0;
    }
    return buf;
}

/* ---------------------------------------------------------------- clock */

int64_t kc_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int kc_ms(int64_t us)
{
    int64_t ms = (us + 999) / 1000;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

void kc_sleep_us(int64_t us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------- logs */

static bool fac_is(const char *fac, const char *name) { return strcmp(fac, name) == 0; }

/* librdkafka logs at syslog levels; some facilities say what we report already. */
static ecf_log_level log_level_of(int level, const char *fac)
{
    ecf_log_level lvl = level <= 4 ? ECF_LOG_WARN : level <= 6 ? ECF_LOG_INFO : ECF_LOG_DEBUG;
    /* Broker failures also come as error events, which we report already. */
    if (fac_is(fac, "FAIL") || fac_is(fac, "ERROR"))
        return ECF_LOG_DEBUG;
    /* Producer: a fresh broker's "coordinator load in progress" is retried and passes. */
    if (fac_is(fac, "GETPID") && lvl == ECF_LOG_WARN)
        return ECF_LOG_INFO;
    /* Consumer: commit failures are reported by the commit callback; a closing
     * consumer's "leaving group" and a fresh group's first join are routine. */
    if (fac_is(fac, "COMMITFAIL") || fac_is(fac, "MAXPOLL"))
        return lvl < ECF_LOG_INFO ? lvl : ECF_LOG_INFO;
    return lvl;
}

void kc_log(ecf_stage *stage, int level, const char *fac, const char *msg)
{
    ecf_log(stage, log_level_of(level, fac), "librdkafka %s: %s", fac, msg);
}

void kc_fatal_reason(rd_kafka_t *rk, char *buf, size_t size)
{
    if (rd_kafka_fatal_error(rk, buf, size) == RD_KAFKA_RESP_ERR_NO_ERROR)
        snprintf(buf, size, "%s", rd_kafka_err2str(RD_KAFKA_RESP_ERR__FATAL));
}

/* ---------------------------------------------------------------- client */

void kc_client_init(kc_client *c, ecf_stage *stage, const kc_config *cfg, bool ready, const char *unready_note)
{
    memset(c, 0, sizeof *c);
    c->stage = stage;
    c->cfg = cfg;
    c->unready_note = unready_note ? unready_note : "";
    atomic_init(&c->ready, ready);
}

bool kc_ready(kc_client *c) { return atomic_load(&c->ready); }

void kc_set_ready(kc_client *c, bool ready)
{
    if (atomic_exchange(&c->ready, ready) == ready)
        return;
    ecf_set_ready(c->stage, ready);
    char msg[512];
    snprintf(msg, sizeof msg, ready ? "Kafka brokers reachable; ready" : "Kafka brokers unreachable; not ready%s",
             c->unready_note);
    ecf_log_event(c->stage, ready ? ECF_LOG_INFO : ECF_LOG_WARN, ready ? "broker_up" : "broker_down",
                  (const char *const[]){"msg", msg, "bootstrap", c->cfg->bootstrap ? c->cfg->bootstrap : "", NULL});
}

void kc_probe(kc_client *c, rd_kafka_t *rk, int64_t now_us)
{
    if (kc_ready(c) || now_us < c->next_probe_us)
        return;
    c->next_probe_us = now_us + PROBE_INTERVAL_US;
    /* Brokers only (no topic list): the cheapest answer that proves one is up. */
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 0, NULL, &md, PROBE_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    rd_kafka_metadata_destroy(md);
    kc_set_ready(c, true);
}

void kc_note_error(kc_client *c, rd_kafka_resp_err_t err, const char *why)
{
    snprintf(c->last_error, sizeof c->last_error, "%s", why ? why : rd_kafka_err2str(err));
}

/* The slot of `err`, else the least recently said one, which gives way. */
static size_t quiet_slot(const kc_client *c, rd_kafka_resp_err_t err)
{
    size_t slot = 0;
    for (size_t i = 0; i < KC_ERROR_KINDS; i++) {
        if (c->quiet[i].err == err && c->quiet[i].said_us)
            return i;
        if (c->quiet[i].said_us < c->quiet[slot].said_us)
            slot = i;
    }
    return slot;
}

void kc_log_error(kc_client *c, rd_kafka_resp_err_t err, const char *why)
{
    int64_t now = kc_mono_us();
    size_t slot = quiet_slot(c, err);
    bool same = c->quiet[slot].err == err && c->quiet[slot].said_us;
    if (!why)
        why = rd_kafka_err2str(err);
    if (same && now - c->quiet[slot].said_us < ERROR_LOG_QUIET_US) {
        c->quiet[slot].suppressed++;
        return;
    }
    if (same && c->quiet[slot].suppressed)
        ecf_log(c->stage, ECF_LOG_WARN, "Kafka: %s (%" PRIu64 " more like it since last said)", why,
                c->quiet[slot].suppressed);
    else
        ecf_log(c->stage, ECF_LOG_WARN, "Kafka: %s", why);
    c->quiet[slot].err = err;
    c->quiet[slot].said_us = now;
    c->quiet[slot].suppressed = 0;
}

void kc_serve_error(kc_client *c, rd_kafka_resp_err_t err, const char *why)
{
    kc_note_error(c, err, why);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        kc_set_ready(c, false);
    kc_log_error(c, err, c->last_error);
}

ecf_status kc_no_broker(kc_client *c, rd_kafka_resp_err_t err, const char *note)
{
    const kc_config *cfg = c->cfg;
    const char *detail = c->last_error[0] ? c->last_error : rd_kafka_err2str(err);
    if (cfg->require_broker)
        return ecf_fail(c->stage, ECF_ERR_UNAVAILABLE, "no Kafka broker answered at '%s' within %.1fs: %s",
                        cfg->bootstrap, (double)cfg->connect_timeout_us / 1e6, detail);
    ecf_log(c->stage, ECF_LOG_WARN,
            "no Kafka broker answered at '%s' yet (%s); starting not "
            "ready and retrying%s",
            cfg->bootstrap, detail, note ? note : "");
    return ECF_OK;
}

/* ---------------------------------------------------------------- metadata */

rd_kafka_resp_err_t kc_list_topics(rd_kafka_t *rk, int timeout_ms, const struct rd_kafka_metadata **md)
{
    *md = NULL;
    return rd_kafka_metadata(rk, 1, NULL, md, timeout_ms);
}

const struct rd_kafka_metadata_topic *kc_find_topic(const struct rd_kafka_metadata *md, const char *topic)
{
    for (int i = 0; i < md->topic_cnt; i++) {
        if (strcmp(md->topics[i].topic, topic) == 0)
            return md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR ? &md->topics[i] : NULL;
    }
    return NULL;
}
