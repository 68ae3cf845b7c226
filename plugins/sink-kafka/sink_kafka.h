/*
 * sink-kafka internals shared by the plugin's own files; not installed.
 *
 * sink_kafka.c  lifecycle, produce, delivery reports, the poller thread
 * kafka_conf.c  option table -> librdkafka producer configuration (and its errors)
 * kafka_admin.c explicit topic creation through the Admin API
 * ../common/kafka_client.c  what both Kafka plugins do alike: common options,
 *               readiness and its probe, logs and errors, metadata lookups
 */
#ifndef ECF_SINK_KAFKA_H
#define ECF_SINK_KAFKA_H

#include "kafka_client.h"

#include <ecflow/plugin.h>
#include <librdkafka/rdkafka.h>

#include <stdbool.h>
#include <stdint.h>

/* Filled by the core from kafka_options (kafka_conf.c). */
typedef struct {
    kc_config client; /* bootstrap, connect_timeout, require_broker, kafka */
    char *topic;
    char *compression;
    int64_t linger_us;
    int64_t batch_size;
    int64_t batch_messages;
    int64_t delivery_timeout_us;
    int64_t queue_max_messages;
    int64_t queue_max_bytes;
    int64_t flush_timeout_us;
    bool create_topic;
    int64_t partitions;
    int64_t replication;
    char *timestamp;
    ecf_kv *headers;
} kafka_config;

extern const ecf_option kafka_options[];

/*
 * Builds the producer configuration from the stage's options: our defaults
 * first, the `kafka` map last so it can override any of them. On a
 * librdkafka rejection returns NULL after ecf_error() named the option.
 */
rd_kafka_conf_t *kafka_conf_build(ecf_stage *stage, const kafka_config *cfg);

/* Checks rules that span options, before librdkafka sees them. */
ecf_status kafka_conf_check(ecf_stage *stage, const kafka_config *cfg);

/* Static headers added to every record, or NULL when none are configured. */
rd_kafka_headers_t *kafka_headers_build(const kafka_config *cfg);

/* Creates cfg->topic; an existing topic is success. */
ecf_status kafka_topic_create(ecf_stage *stage, rd_kafka_t *rk, const kafka_config *cfg);

#endif
