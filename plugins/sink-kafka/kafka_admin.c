/*
 * Explicit topic creation (`create_topic: true`) through librdkafka's Admin
 * API, run once at start on the producer's own handle. Broker auto-creation
 * is left to the broker's settings: we never create topics by accident.
 */
#include "sink_kafka.h"

#include <inttypes.h>
#include <stdio.h>

/* The user's mistake (fix the options) or the cluster's state (try again). */
static ecf_status status_of(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION: return ECF_ERR_CONFIG;
    default: return ECF_ERR_UNAVAILABLE;
    }
}

static ecf_status create_result(ecf_stage *stage, rd_kafka_event_t *ev, const char *topic)
{
    if (!ev)
        return ecf_fail(stage, ECF_ERR_UNAVAILABLE, "create_topic '%s': no answer from the brokers", topic);
    rd_kafka_resp_err_t eerr = rd_kafka_event_error(ev);
    if (eerr)
        return ecf_fail(stage, status_of(eerr), "create_topic '%s': %s", topic, rd_kafka_event_error_string(ev));

    size_t cnt = 0;
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &cnt) : NULL;
    if (cnt < 1)
        return ecf_fail(stage, ECF_ERR_UNAVAILABLE, "create_topic '%s': empty answer from the brokers", topic);

    rd_kafka_resp_err_t err = rd_kafka_topic_result_error(tr[0]);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ecf_log(stage, ECF_LOG_INFO, "created topic '%s'", topic);
        return ECF_OK;
    }
    if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        return ECF_OK;
    const char *why = rd_kafka_topic_result_error_string(tr[0]);
    return ecf_fail(stage, status_of(err), "create_topic '%s': %s", topic, why ? why : rd_kafka_err2str(err));
}

ecf_status kafka_topic_create(ecf_stage *stage, rd_kafka_t *rk, const kafka_config *cfg)
{
    char errstr[512];
    int timeout_ms = (int)(cfg->client.connect_timeout_us / 1000);
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(cfg->topic, (int)cfg->partitions, (int)cfg->replication, errstr, sizeof errstr);
    if (!nt)
        return ecf_error(stage, "create_topic '%s': %s", cfg->topic, errstr);

    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    /* Wait for the controller to finish, so the first produce finds the topic. */
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, errstr, sizeof errstr);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, errstr, sizeof errstr);

    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
    /* The request times out on its own; the margin only guards a lost reply. */
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 5000);
    ecf_status st = create_result(stage, ev, cfg->topic);

    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy(nt);
    return st;
}
