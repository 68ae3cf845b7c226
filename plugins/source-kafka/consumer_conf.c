/*
 * source-kafka options and the librdkafka consumer configuration built from
 * them. Named options cover what a pipeline tunes; everything else goes
 * through the `kafka` map verbatim and librdkafka judges it, in its own words.
 * The options every Kafka stage has (bootstrap, connect_timeout,
 * require_broker, kafka) and what every client sets come from kafka_client.
 */
#include "source_kafka.h"
#include "rdkafka_conf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

const ecf_option ksrc_options[] = {
    KC_OPTIONS(ksrc_config, client),
    ECF_OPT_STRING("group", ksrc_config, group, NULL, ECF_REQUIRED,
                   "consumer group (group.id); its committed offsets are where a restart resumes"),
    ECF_OPT_LIST("topics", ksrc_config, topics, ECF_OPTIONAL, "topics to subscribe to (give this or topic_regex)"),
    ECF_OPT_STRING("topic_regex", ksrc_config, topic_regex, NULL, ECF_OPTIONAL,
                   "subscribe to every topic matching this POSIX regex (give this or topics)"),
    ECF_OPT_ENUM("auto_offset_reset", ksrc_config, auto_offset_reset, "earliest", "earliest|latest",
                 "where a partition without a committed offset starts (auto.offset.reset)"),
    ECF_OPT_INT("batch_size", ksrc_config, batch_size, "0", 0, 1048576,
                "messages per emitted batch; 0 = the pipeline's batch_size"),
    ECF_OPT_DURATION("batch_wait", ksrc_config, batch_wait_us, "100ms", 0, 60,
                     "longest a batch waits to fill before it is emitted anyway"),
    ECF_OPT_DURATION("commit_interval", ksrc_config, commit_interval_us, "1s", 0.01, 3600,
                     "how often offsets acknowledged by every sink are committed"),
    ECF_OPT_DURATION("rebalance_timeout", ksrc_config, rebalance_timeout_us, "10s", 0, 3600,
                     "on revoke, how long to wait for in-flight acks before committing and "
                     "releasing the partitions (what has not settled is redelivered)"),
    ECF_OPT_ENUM("on_failure", ksrc_config, on_failure, "stop", "stop|redeliver",
                 "when a sink fails a message: stop the pipeline (restart resumes at it), or "
                 "seek back and redeliver it after redeliver_backoff"),
    ECF_OPT_DURATION("redeliver_backoff", ksrc_config, redeliver_backoff_us, "1s", 0, 3600,
                     "on_failure: redeliver waits this long before the first retry, doubling "
                     "up to 60s while the same message keeps failing"),
    ECF_OPT_SIZE("prefetch_max_bytes", ksrc_config, prefetch_max_bytes, "4MiB", 1024, 2097151.0 * 1024,
                 "record bytes librdkafka may prefetch ahead of the pipeline "
                 "(queued.max.messages.kbytes): the memory bound while the rings are full. librdkafka "
                 "holds ~4x this (its per-record overhead, a fetch in flight); a queue that filled is "
                 "refilled as soon as it has half drained, so a small one does not slow a catch-up"),
    KC_OPT_KAFKA(ksrc_config, client),
    ECF_OPT_END,
};

static bool conf_set_defaults(ecf_stage *stage, rd_kafka_conf_t *conf, const ksrc_config *cfg)
{
    int64_t kbytes = (cfg->prefetch_max_bytes + 1023) / 1024;

    return ecf_rdkafka_conf_set(stage, conf, "group", "group.id", cfg->group)
           /* We commit, and only what every sink acknowledged. */
           && ecf_rdkafka_conf_set(stage, conf, "kafka.enable.auto.commit", "enable.auto.commit", "false") &&
           ecf_rdkafka_conf_set(stage, conf, "kafka.enable.auto.offset.store", "enable.auto.offset.store", "false") &&
           ecf_rdkafka_conf_set(stage, conf, "auto_offset_reset", "auto.offset.reset", cfg->auto_offset_reset)
           /* The memory bound while the pipeline is slower than the topic. */
           && ecf_rdkafka_conf_set_int(stage, conf, "prefetch_max_bytes", "queued.max.messages.kbytes", kbytes);
}

static bool truthy(const char *v)
{
    return v &&
           (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcasecmp(v, "yes") == 0 || strcasecmp(v, "on") == 0);
}

/* Keys of the `kafka` map that would break the delivery guarantee or that a
 * named option owns. */
static bool passthrough_allowed(ecf_stage *stage, const ecf_kv *kv)
{
    if ((strcmp(kv->key, "enable.auto.commit") == 0 || strcmp(kv->key, "enable.auto.offset.store") == 0) &&
        truthy(kv->value))
        return ecf_error(stage,
                         "option 'kafka.%s': source-kafka commits offsets itself, only "
                         "up to what every sink acknowledged; it cannot be turned on",
                         kv->key),
               false;
    if (strcmp(kv->key, "group.id") == 0)
        return ecf_error(stage, "option 'kafka.group.id': use the option 'group'"), false;
    if (strcmp(kv->key, "enable.partition.eof") == 0 && truthy(kv->value))
        return ecf_error(stage, "option 'kafka.enable.partition.eof': not supported; the "
                                "source runs until stopped"),
               false;
    return true;
}

/* rebalance_timeout must be shorter than max.poll.interval.ms, whoever set it. */
static bool max_poll_allows(ecf_stage *stage, rd_kafka_conf_t *conf, const ksrc_config *cfg)
{
    /* A revoke waits up to rebalance_timeout inside the poll; the group
     * evicts a member that has not polled for max.poll.interval.ms. */
    char buf[64];
    size_t sz = sizeof buf;
    if (rd_kafka_conf_get(conf, "max.poll.interval.ms", buf, &sz) == RD_KAFKA_CONF_OK) {
        int64_t max_poll_us = (int64_t)strtoll(buf, NULL, 10) * 1000;
        if (max_poll_us > 0 && cfg->rebalance_timeout_us >= max_poll_us) {
            ecf_error(stage,
                      "option 'rebalance_timeout' (%.1fs) must be shorter than "
                      "max.poll.interval.ms (%.1fs), or the group evicts the stage "
                      "while it waits for acks",
                      (double)cfg->rebalance_timeout_us / 1e6, (double)max_poll_us / 1e6);
            return false;
        }
    }
    return true;
}

rd_kafka_conf_t *ksrc_conf_build(ecf_stage *stage, const ksrc_config *cfg)
{
    rd_kafka_conf_t *conf = kc_conf_new(stage, &cfg->client);
    if (!conf)
        return NULL;
    if (conf_set_defaults(stage, conf, cfg) && kc_conf_passthrough(stage, conf, &cfg->client, passthrough_allowed) &&
        max_poll_allows(stage, conf, cfg))
        return conf;
    rd_kafka_conf_destroy(conf);
    return NULL;
}

ecf_status ksrc_conf_check(ecf_stage *stage, const ksrc_config *cfg)
{
    ecf_status st = kc_config_check(stage, &cfg->client);
    if (st != ECF_OK)
        return st;
    if (!cfg->group || !*cfg->group)
        return ecf_error(stage, "option 'group': empty");
    bool has_topics = cfg->topics && cfg->topics[0];
    bool has_regex = cfg->topic_regex && *cfg->topic_regex;
    if (has_topics == has_regex)
        return ecf_error(stage, has_topics ? "give either 'topics' or 'topic_regex', not both"
                                           : "give 'topics' (a list) or 'topic_regex'");
    for (char **t = cfg->topics; t && *t; t++) {
        if (!**t)
            return ecf_error(stage, "option 'topics': an empty topic name");
        if (**t == '^')
            return ecf_error(stage,
                             "option 'topics': '%s' looks like a regex; use "
                             "'topic_regex'",
                             *t);
    }
    return ECF_OK;
}
