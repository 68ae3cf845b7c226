/*
 * What the two Kafka plugins (sink-kafka's producer, source-kafka's
 * consumer) do alike as librdkafka clients, written once: the options that
 * reach the cluster, the configuration every client gets, the clock their
 * waits use, librdkafka's logs and errors as stage log lines, readiness with
 * its metadata probe, and topic lookups in a metadata listing.
 *
 * Built as the static library ecf_kafka_client (with rdkafka_conf.c), linked
 * into each Kafka plugin; it is not a plugin and includes only the public
 * <ecflow/plugin.h> from ecflow. Prefix kc_ = Kafka client.
 */
#ifndef ECF_KAFKA_CLIENT_H
#define ECF_KAFKA_CLIENT_H

#include <ecflow/plugin.h>
#include <librdkafka/rdkafka.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- options */

/* The options every Kafka stage has, embedded in each plugin's config. */
typedef struct {
    char *bootstrap;
    int64_t connect_timeout_us;
    bool require_broker;
    ecf_kv *kafka; /* librdkafka properties passed verbatim */
} kc_config;

/*
 * The option-table entries of kc_config, for a plugin config type T that
 * embeds it as member m. KC_OPTIONS (how to reach the cluster) goes first
 * and KC_OPT_KAFKA last, so "the options above" in its help are all of them:
 *     KC_OPTIONS(kafka_config, client), ...the plugin's own..., KC_OPT_KAFKA(kafka_config, client)
 */
#define KC_OPTIONS(T, m)                                                                      \
    ECF_OPT_STRING("bootstrap", T, m.bootstrap, NULL, ECF_REQUIRED,                           \
                   "brokers as host:port[,host:port...]; pipelines pass ${KAFKA_BOOTSTRAP}"), \
        ECF_OPT_DURATION("connect_timeout", T, m.connect_timeout_us, "10s", 0.1, 3600,        \
                         "how long start waits for a broker to answer"),                      \
        ECF_OPT_BOOL("require_broker", T, m.require_broker, "true",                           \
                     "fail start when no broker answers within connect_timeout; "             \
                     "false = start not ready and keep trying")
/* `kafka` carries SASL passwords and TLS keys: a secret map, whose values
 * the core never prints (the keys are not secret). */
#define KC_OPT_KAFKA(T, m)                                            \
    ECF_OPT_SECRET_MAP("kafka", T, m.kafka,                           \
                       "librdkafka properties passed verbatim, e.g. " \
                       "kafka.security.protocol: SASL_SSL; they win over the options above")

/* Checks the common options; ECF_OK or what ecf_error() returned. */
ecf_status kc_config_check(ecf_stage *stage, const kc_config *cfg);

/*
 * A new librdkafka configuration with what every client of ours sets:
 * bootstrap.servers, client.id = ecflow-<stage>, a 1 s reconnect backoff and
 * logs on a queue we poll. NULL after ecf_error() on a rejection.
 */
rd_kafka_conf_t *kc_conf_new(ecf_stage *stage, const kc_config *cfg);

/* Refuses a `kafka` map entry after ecf_error(); NULL = every key is allowed. */
typedef bool (*kc_key_check)(ecf_stage *stage, const ecf_kv *kv);

/*
 * Applies the `kafka` map last, so it wins over what the plugin set; errors
 * name the option as the user wrote it (`kafka.linger.ms`). False after
 * ecf_error(): the caller destroys conf.
 */
bool kc_conf_passthrough(ecf_stage *stage, rd_kafka_conf_t *conf, const kc_config *cfg, kc_key_check allowed);

/* "a, b, c": the names of the `kafka` keys for a log line (values may be
 * secrets); "" when there are none. Returns buf. */
const char *kc_passthrough_keys(const kc_config *cfg, char *buf, size_t size);

/* ---------------------------------------------------------------- clock */

/*
 * CLOCK_MONOTONIC in µs. The plugins' condition variables wait on that
 * clock (pthread_condattr_setclock), so their deadlines read it directly
 * rather than the host's clock.
 */
int64_t kc_mono_us(void);
/* µs -> a librdkafka timeout in ms, rounded up, at most INT32_MAX. */
int kc_ms(int64_t us);
void kc_sleep_us(int64_t us);

/* ---------------------------------------------------------------- logs */

/* One librdkafka log line (syslog level, facility) as a stage log line. */
void kc_log(ecf_stage *stage, int level, const char *fac, const char *msg);

/* Why the client failed for good, for a log line or a failed ack. */
void kc_fatal_reason(rd_kafka_t *rk, char *buf, size_t size);

/* ---------------------------------------------------------------- client */

#define KC_ERROR_KINDS 8

/*
 * A stage's view of its client: readiness and error log throttling. One
 * thread serves librdkafka's errors (the sink's poller, the source's run
 * thread); readiness may be read and set from any.
 */
typedef struct {
    ecf_stage *stage;
    const kc_config *cfg;
    const char *unready_note; /* ends the "not ready" log line */
    atomic_bool ready;
    int64_t next_probe_us;
    char last_error[256]; /* librdkafka's last word, for start's message */
    struct {
        rd_kafka_resp_err_t err;
        int64_t said_us; /* 0 = slot unused */
        uint64_t suppressed;
    } quiet[KC_ERROR_KINDS]; /* one slot per error code */
} kc_client;

void kc_client_init(kc_client *c, ecf_stage *stage, const kc_config *cfg, bool ready, const char *unready_note);

bool kc_ready(kc_client *c);
/* Tells the core and logs, when it changes. */
void kc_set_ready(kc_client *c, bool ready);

/*
 * While not ready, asks the brokers for metadata once a second: with no
 * traffic nothing else would tell us they are back, and whoever waits for
 * readiness would wait forever. The probe blocks for up to 250 ms, but only
 * while no broker answers.
 */
void kc_probe(kc_client *c, rd_kafka_t *rk, int64_t now_us);

/* Remembers librdkafka's last error text (see kc_no_broker). */
void kc_note_error(kc_client *c, rd_kafka_resp_err_t err, const char *why);

/*
 * Broker trouble repeats on every reconnect attempt: logs each error code
 * once per quiet period (30 s), then how often it came back.
 */
void kc_log_error(kc_client *c, rd_kafka_resp_err_t err, const char *why);

/* A non-fatal client error: noted, all brokers down = not ready, logged
 * throttled. */
void kc_serve_error(kc_client *c, rd_kafka_resp_err_t err, const char *why);

/*
 * Start found no broker within connect_timeout: with require_broker,
 * ECF_ERR_UNAVAILABLE from ecf_fail(); else ECF_OK after a warning ending
 * in `note`, and start goes on not ready. Names librdkafka's last error when
 * it said one, else `err`.
 */
ecf_status kc_no_broker(kc_client *c, rd_kafka_resp_err_t err, const char *note);

/* ---------------------------------------------------------------- metadata */

/*
 * Lists every topic. Never a request for one topic: that makes a broker
 * with auto-creation on create it, behind the pipeline's back. On success
 * the caller frees *md with rd_kafka_metadata_destroy().
 */
rd_kafka_resp_err_t kc_list_topics(rd_kafka_t *rk, int timeout_ms, const struct rd_kafka_metadata **md);

/* The topic's entry if the listing has it without error, else NULL. */
const struct rd_kafka_metadata_topic *kc_find_topic(const struct rd_kafka_metadata *md, const char *topic);

#endif
