/*
 * sink-kafka options and the librdkafka configuration built from them.
 *
 * The named options cover what most pipelines tune; everything else goes
 * through the `kafka` map verbatim, so TLS, SASL and any librdkafka tuning
 * work without this file learning about them. librdkafka is the judge of
 * those keys: its own error text reaches the user, with secret values masked.
 * The options every Kafka stage has (bootstrap, connect_timeout,
 * require_broker, kafka) and what every client sets come from kafka_client.
 */
#include "sink_kafka.h"
#include "rdkafka_conf.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

const ecf_option kafka_options[] = {
    KC_OPTIONS(kafka_config, client),
    ECF_OPT_STRING("topic", kafka_config, topic, "ecommerce_events", ECF_OPTIONAL,
                   "topic every message is produced to"),
    ECF_OPT_ENUM("compression", kafka_config, compression, "lz4", "none|lz4|zstd|snappy|gzip",
                 "codec for record batches (compression.codec)"),
    ECF_OPT_DURATION("linger", kafka_config, linger_us, "1ms", 0, 900,
                     "how long a partition batch may wait to fill (linger.ms); sources that "
                     "answer clients on delivery wait this long too"),
    ECF_OPT_SIZE("batch_size", kafka_config, batch_size, "1MiB", 1, 2147483647,
                 "largest record batch in bytes (batch.size)"),
    ECF_OPT_INT("batch_messages", kafka_config, batch_messages, "10000", 1, 1000000,
                "most records in one batch (batch.num.messages)"),
    ECF_OPT_DURATION("delivery_timeout", kafka_config, delivery_timeout_us, "20s", 0.01, 86400,
                     "retry a message this long, then fail it (message.timeout.ms); keep it "
                     "below the source's ack timeout (source-http: 30s) so no record is "
                     "delivered after its client was told to retry"),
    ECF_OPT_INT("queue_max_messages", kafka_config, queue_max_messages, "100000", 1, 10000000,
                "records waiting in the producer before the stage blocks "
                "(queue.buffering.max.messages)"),
    ECF_OPT_SIZE("queue_max_bytes", kafka_config, queue_max_bytes, "64MiB", 1024, 2147483647.0 * 1024,
                 "bytes waiting in the producer before the stage blocks "
                 "(queue.buffering.max.kbytes)"),
    ECF_OPT_DURATION("flush_timeout", kafka_config, flush_timeout_us, "0s", 0, 86400,
                     "how long flush waits for delivery reports before failing what is "
                     "left; 0 = delivery_timeout + 5s"),
    ECF_OPT_BOOL("create_topic", kafka_config, create_topic, "false",
                 "create the topic at start if it does not exist (Admin API)"),
    ECF_OPT_INT("partitions", kafka_config, partitions, "3", 1, 100000, "partitions of a topic made by create_topic"),
    ECF_OPT_INT("replication", kafka_config, replication, "1", 1, 32767,
                "replication factor of a topic made by create_topic"),
    ECF_OPT_ENUM("timestamp", kafka_config, timestamp, "produce", "produce|ingest|event",
                 "record timestamp: when produced, when the pipeline took the message, "
                 "or its event time (falls back to produce time when unknown)"),
    ECF_OPT_MAP("headers", kafka_config, headers, "static record headers added to every message (name: value)"),
    KC_OPT_KAFKA(kafka_config, client),
    ECF_OPT_END,
};

/* librdkafka takes milliseconds; a sub-millisecond linger stays fractional. */
static bool conf_set_ms(ecf_stage *stage, rd_kafka_conf_t *conf, const char *origin, const char *key, int64_t us,
                        bool fractional)
{
    char buf[48];
    if (fractional)
        snprintf(buf, sizeof buf, "%.3f", (double)us / 1000.0);
    else
        snprintf(buf, sizeof buf, "%" PRId64, (us + 999) / 1000);
    return ecf_rdkafka_conf_set(stage, conf, origin, key, buf);
}

static bool conf_set_defaults(ecf_stage *stage, rd_kafka_conf_t *conf, const kafka_config *cfg)
{
    int64_t kbytes = (cfg->queue_max_bytes + 1023) / 1024;

    /* Durability first: the ack we give the source must mean "in the ISR". */
    return ecf_rdkafka_conf_set(stage, conf, "kafka.enable.idempotence", "enable.idempotence", "true") &&
           ecf_rdkafka_conf_set(stage, conf, "kafka.acks", "acks", "all")
           /* Same key -> same partition as the Java clients (and Spark) choose. */
           && ecf_rdkafka_conf_set(stage, conf, "kafka.partitioner", "partitioner", "murmur2_random") &&
           ecf_rdkafka_conf_set(stage, conf, "compression", "compression.codec", cfg->compression) &&
           conf_set_ms(stage, conf, "linger", "linger.ms", cfg->linger_us, true) &&
           ecf_rdkafka_conf_set_int(stage, conf, "batch_size", "batch.size", cfg->batch_size) &&
           ecf_rdkafka_conf_set_int(stage, conf, "batch_messages", "batch.num.messages", cfg->batch_messages) &&
           conf_set_ms(stage, conf, "delivery_timeout", "message.timeout.ms", cfg->delivery_timeout_us, false) &&
           ecf_rdkafka_conf_set_int(stage, conf, "queue_max_messages", "queue.buffering.max.messages",
                                    cfg->queue_max_messages) &&
           ecf_rdkafka_conf_set_int(stage, conf, "queue_max_bytes", "queue.buffering.max.kbytes", kbytes);
}

rd_kafka_conf_t *kafka_conf_build(ecf_stage *stage, const kafka_config *cfg)
{
    rd_kafka_conf_t *conf = kc_conf_new(stage, &cfg->client);
    if (!conf)
        return NULL;
    if (conf_set_defaults(stage, conf, cfg) && kc_conf_passthrough(stage, conf, &cfg->client, NULL))
        return conf;
    rd_kafka_conf_destroy(conf);
    return NULL;
}

ecf_status kafka_conf_check(ecf_stage *stage, const kafka_config *cfg)
{
    ecf_status st = kc_config_check(stage, &cfg->client);
    if (st != ECF_OK)
        return st;
    if (!cfg->topic || !*cfg->topic)
        return ecf_error(stage, "option 'topic': empty");
    /* librdkafka refuses this too, but only at start and in its own words. */
    if (cfg->delivery_timeout_us <= cfg->linger_us)
        return ecf_error(stage,
                         "option 'delivery_timeout' (%" PRId64 "ms) must be longer "
                         "than 'linger' (%" PRId64 "ms)",
                         cfg->delivery_timeout_us / 1000, cfg->linger_us / 1000);
    return ECF_OK;
}

rd_kafka_headers_t *kafka_headers_build(const kafka_config *cfg)
{
    size_t n = 0;
    for (const ecf_kv *kv = cfg->headers; kv && kv->key; kv++)
        n++;
    if (n == 0)
        return NULL;
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(n);
    for (const ecf_kv *kv = cfg->headers; kv && kv->key; kv++)
        rd_kafka_header_add(hdrs, kv->key, -1, kv->value, kv->value ? -1 : 0);
    return hdrs;
}
