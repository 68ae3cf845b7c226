/*
 * Group membership: what happens when partitions come and go. The commits
 * themselves are in offset_commit.c.
 *
 * Assign: start a fresh offset window per partition, then choose where each
 * partition starts: a position the downstream sinks supply (the exactly-once
 * hook, see sink_resume_position), else the group's committed offset, else
 * auto.offset.reset. librdkafka does the last two when we pass no offset.
 * The log line says which one each partition got.
 *
 * Revoke: emit what was already taken from Kafka (or, after
 * rebalance_timeout, abandon it: not emitted, never committed), wait up to
 * rebalance_timeout for the acks of the revoked partitions, commit their
 * contiguous acked prefix synchronously, then release them. What has not
 * settled by then is simply not committed: the next owner redelivers it.
 * A lost assignment (session timed out: others may own the partitions
 * already) commits nothing.
 *
 * Both protocols work: EAGER (librdkafka's default range,roundrobin; the
 * default here) and COOPERATIVE (kafka.partition.assignment.strategy:
 * cooperative-sticky), chosen by what the group runs.
 */
#include "source_kafka.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool cooperative(rd_kafka_t *rk)
{
    const char *proto = rd_kafka_rebalance_protocol(rk);
    return proto && strcmp(proto, "COOPERATIVE") == 0;
}

/* ---------------------------------------------------------------- assign */

/*
 * The exactly-once hook. A sink that keeps the consumed offsets in its own
 * durable state (sink-iceberg writes them into each snapshot's summary) knows
 * where this partition must resume so that nothing is written twice. The
 * host asks every sink downstream and answers with the smallest position, or
 * "unknown" when any of them cannot answer (then the group's committed
 * offset, then auto.offset.reset, decide: at-least-once, and sinks that keep
 * positions skip what they already have). A host older than ecf_host's
 * resume_position member cannot be asked.
 */
static bool sink_resume_position(kafka_source *ks, const char *topic, int32_t partition, int64_t *next_offset)
{
    const ecf_host *h = ecf_host_of(ks->stage);
    if (h->size < offsetof(ecf_host, resume_position) + sizeof h->resume_position || !h->resume_position)
        return false;
    int64_t pos = -1;
    if (ecf_resume_position(ks->stage, topic, partition, &pos) != ECF_OK || pos < 0)
        return false;
    *next_offset = pos;
    return true;
}

static void on_assign(kafka_source *ks, rd_kafka_topic_partition_list_t *parts, bool coop)
{
    ks->n_rebalances++;
    ecf_metric_add(ks->stage, ks->m.rebalance_assign, 1);
    size_t from_sinks = 0;
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *e = &parts->elems[i];
        uint32_t k = book_part_index(ks->book, e->topic, e->partition);
        if (k == UINT32_MAX) {
            ecf_log(ks->stage, ECF_LOG_ERROR, "out of memory tracking %s[%" PRId32 "]", e->topic, e->partition);
            continue;
        }
        book_assign(ks->book, k);
        ksrc_part_metrics(ks, book_get(ks->book, k));
        int64_t pos;
        if (sink_resume_position(ks, e->topic, e->partition, &pos)) {
            e->offset = pos;
            from_sinks++;
        }
    }
    if (parts->cnt)
        ksrc_read_committed(ks, parts);

    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (coop) {
        rd_kafka_error_t *error = rd_kafka_incremental_assign(ks->rk, parts);
        if (error) {
            err = rd_kafka_error_code(error);
            rd_kafka_error_destroy(error);
        }
    } else {
        err = rd_kafka_assign(ks->rk, parts);
    }
    if (err)
        ecf_log(ks->stage, ECF_LOG_ERROR, "assigning partitions failed: %s", rd_kafka_err2str(err));

    /* A partition comes back paused if the pipeline is still backed up;
     * otherwise clear a pause it may carry from an earlier assignment. */
    if (parts->cnt)
        ksrc_pause_parts(ks, parts, ks->paused);

    /* Where each starts, for the log: the sinks' position, the group's
     * committed offset, or the reset policy. A sink position behind the
     * group's is normal (records filtered out before the sink, or acked by
     * it as already durable); ahead of it is the point of the hook (the
     * crash came between the table commit and the group commit). */
    char buf[1024];
    size_t off = 0;
    buf[0] = '\0';
    size_t from_group = 0;
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &parts->elems[i];
        uint32_t k = book_find(ks->book, e->topic, e->partition);
        book_part *p = k == UINT32_MAX ? NULL : book_get(ks->book, k);
        bool group = e->offset < 0 && p && p->committed >= 0;
        from_group += group;
        if (off + 1 >= sizeof buf)
            continue; /* counted, not listed */
        int w;
        if (e->offset >= 0 && p && p->committed >= 0)
            w = snprintf(buf + off, sizeof buf - off, "%s%s[%" PRId32 "]@%" PRId64 " (sinks; group at %" PRId64 ")",
                         i ? " " : "", e->topic, e->partition, e->offset, p->committed);
        else if (e->offset >= 0)
            w = snprintf(buf + off, sizeof buf - off, "%s%s[%" PRId32 "]@%" PRId64 " (sinks)", i ? " " : "", e->topic,
                         e->partition, e->offset);
        else if (group)
            w = snprintf(buf + off, sizeof buf - off, "%s%s[%" PRId32 "]@%" PRId64 " (group)", i ? " " : "", e->topic,
                         e->partition, p->committed);
        else
            w = snprintf(buf + off, sizeof buf - off, "%s%s[%" PRId32 "]@%s (auto_offset_reset)", i ? " " : "",
                         e->topic, e->partition, ks->cfg->auto_offset_reset);
        off += w > 0 ? (size_t)w : 0;
    }
    if (off + 1 >= sizeof buf && sizeof buf > 4)
        memcpy(buf + sizeof buf - 4, "...", 4);
    char msg[sizeof buf + 64], count[16];
    snprintf(msg, sizeof msg, "assigned %d partition(s) (%s)%s%s", parts->cnt, coop ? "cooperative" : "eager",
             parts->cnt ? ": " : "", buf);
    snprintf(count, sizeof count, "%d", parts->cnt);
    ecf_log_event(ks->stage, ECF_LOG_INFO, "rebalance",
                  (const char *const[]){"msg", msg, "kind", "assign", "partitions", count, "protocol",
                                        coop ? "cooperative" : "eager", NULL});
    if (parts->cnt)
        ecf_log(ks->stage, ECF_LOG_INFO,
                "start positions: %zu from the sinks, %zu from the "
                "group's committed offsets, %zu from auto_offset_reset",
                from_sinks, from_group, (size_t)parts->cnt - from_sinks - from_group);
    ksrc_update_gauges(ks);
}

/* ---------------------------------------------------------------- revoke */

static void on_revoke(kafka_source *ks, rd_kafka_topic_partition_list_t *parts, bool coop, bool lost)
{
    ecf_metric_add(ks->stage, lost ? ks->m.rebalance_lost : ks->m.rebalance_revoke, 1);
    int64_t t0 = kc_mono_us();
    int64_t deadline = t0 + ks->cfg->rebalance_timeout_us;
    size_t n = (size_t)parts->cnt, n_known = 0;
    uint32_t *known = calloc(n ? n : 1, sizeof *known);
    for (size_t i = 0; known && i < n; i++) {
        uint32_t k = book_find(ks->book, parts->elems[i].topic, parts->elems[i].partition);
        if (k != UINT32_MAX)
            known[n_known++] = k;
    }
    if (!known) /* no memory: treat it as lost, which commits nothing */
        lost = true;

    /* 1. Stop emitting for them: what was taken goes out now or never. */
    if (ks->running)
        ksrc_flush_taken(ks, lost ? t0 : deadline, known, n_known);

    /* 2. Wait for the acks of what is in flight (bounded). At close the
     * pipeline has drained already: what is left will not settle now. */
    int64_t left = 0;
    if (!lost && !ks->closing)
        left = book_wait_settled(ks->book, known, n_known, deadline - kc_mono_us());
    else
        for (size_t i = 0; i < n_known; i++)
            left += book_inflight(ks->book, known[i]);
    int64_t waited_ms = (kc_mono_us() - t0) / 1000;

    /* 3. Commit their acked prefix while we still own them. */
    char committed[1024] = "nothing (assignment lost)";
    bool commit_ok = true;
    if (!lost) {
        commit_ok = ksrc_commit_parts(ks, known, n_known, true, NULL, 0);
        ksrc_committed_str(ks, known, n_known, committed, sizeof committed);
    }

    /* 4. Release them. */
    for (size_t i = 0; i < n_known; i++)
        book_release(ks->book, known[i]);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (coop) {
        rd_kafka_error_t *error = rd_kafka_incremental_unassign(ks->rk, parts);
        if (error) {
            err = rd_kafka_error_code(error);
            rd_kafka_error_destroy(error);
        }
    } else {
        err = rd_kafka_assign(ks->rk, NULL);
        ks->paused = false; /* nothing assigned is paused any more */
        ecf_metric_set(ks->stage, ks->m.paused, 0);
    }
    if (err)
        ecf_log(ks->stage, ECF_LOG_ERROR, "releasing partitions failed: %s", rd_kafka_err2str(err));

    bool clean = left == 0 && commit_ok && !lost;
    char msg[1536], count[24], waited[24], unacked[24];
    if (!clean)
        snprintf(msg, sizeof msg,
                 "revoked %zu partition(s)%s after %" PRId64 " ms; "
                 "committed: %s%s; %" PRId64 " message(s) still unacknowledged, redelivered to "
                 "the next owner",
                 n, lost ? " (lost)" : "", waited_ms, committed, commit_ok ? "" : " (the last commit failed)", left);
    else
        snprintf(msg, sizeof msg, "revoked %zu partition(s) after %" PRId64 " ms; committed: %s", n, waited_ms,
                 committed);
    snprintf(count, sizeof count, "%zu", n);
    snprintf(waited, sizeof waited, "%" PRId64, waited_ms);
    snprintf(unacked, sizeof unacked, "%" PRId64, left);
    ecf_log_event(ks->stage, clean ? ECF_LOG_INFO : ECF_LOG_WARN, "rebalance",
                  (const char *const[]){"msg", msg, "kind", lost ? "lost" : "revoke", "partitions", count, "waited_ms",
                                        waited, "unacked", unacked, "commit_ok", commit_ok ? "true" : "false", NULL});
    free(known);
    ksrc_update_gauges(ks);
}

void ksrc_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kafka_source *ks = opaque;
    bool coop = cooperative(rk);
    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS: on_assign(ks, parts, coop); break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS: on_revoke(ks, parts, coop, rd_kafka_assignment_lost(rk) != 0); break;
    default: {
        ecf_log(ks->stage, ECF_LOG_ERROR, "rebalance failed: %s; dropping the assignment", rd_kafka_err2str(err));
        rd_kafka_topic_partition_list_t *all = NULL;
        if (rd_kafka_assignment(rk, &all) == 0 && all) {
            on_revoke(ks, all, false, true);
            rd_kafka_topic_partition_list_destroy(all);
        } else {
            rd_kafka_assign(rk, NULL);
        }
        break;
    }
    }
}
