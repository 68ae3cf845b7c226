/*
 * Setting librdkafka properties from a stage's options, shared by the Kafka
 * plugins (part of ecf_kafka_client; not a plugin itself). A rejected property
 * becomes an ecf_error() naming the option the user wrote, with the values
 * of secret-looking keys masked.
 */
#pragma once
#include <ecflow/plugin.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

bool ecf_rdkafka_conf_set(ecf_stage *stage, rd_kafka_conf_t *conf, const char *origin, const char *key,
                          const char *value);
bool ecf_rdkafka_conf_set_int(ecf_stage *stage, rd_kafka_conf_t *conf, const char *origin, const char *key, int64_t v);
