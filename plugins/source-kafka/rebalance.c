/*
 * Group membership: what happens when partitions come and go, and commits.
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

#define COMMITTED_QUERY_MAX_MS 5000
#define COMMIT_LOG_QUIET_US    (30LL * 1000 * 1000)

static bool cooperative(rd_kafka_t *rk)
{
    const char *proto = rd_kafka_rebalance_protocol(rk);
    return proto && strcmp(proto, "COOPERATIVE") == 0;
}

const char *ksrc_parts_str(const rd_kafka_topic_partition_list_t *parts, char *buf, size_t size,
                           bool with_offsets)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; parts && i < parts->cnt && off + 1 < size; i++) {
        const rd_kafka_topic_partition_t *e = &parts->elems[i];
        int w;
        if (e->partition == RD_KAFKA_PARTITION_UA)
            w = snprintf(buf + off, size - off, "%s%s", i ? " " : "", e->topic);
        else if (with_offsets && e->offset >= 0)
            w = snprintf(buf + off, size - off, "%s%s[%" PRId32 "]@%" PRId64, i ? " " : "",
                         e->topic, e->partition, e->offset);
        else
            w = snprintf(buf + off, size - off, "%s%s[%" PRId32 "]", i ? " " : "", e->topic,
                         e->partition);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    if (off + 1 >= size && size > 4)
        memcpy(buf + size - 4, "...", 4);
    return buf;
}

/* ---------------------------------------------------------------- commits */

static void part_metrics(kafka_source *ks, book_part *p)
{
    if (p->m_committed)
        return;
    char name[512];
    snprintf(name, sizeof name,
             "kafka_consumer_committed_offset{topic=\"%s\",partition=\"%" PRId32 "\"}",
             p->topic, p->partition);
    p->m_committed = ecf_metric_new(ks->stage, ECF_METRIC_GAUGE, name,
                                    "next offset the group resumes at (last committed)");
    snprintf(name, sizeof name, "kafka_consumer_lag{topic=\"%s\",partition=\"%" PRId32 "\"}",
             p->topic, p->partition);
    p->m_lag = ecf_metric_new(ks->stage, ECF_METRIC_GAUGE, name,
                              "records between the committed offset and the partition's end");
    ecf_metric_status(ks->stage, p->m_lag, "lag");
}

static void set_committed(kafka_source *ks, book_part *p, int64_t offset)
{
    if (offset > p->committed) {
        p->committed = offset;
        ecf_metric_set(ks->stage, p->m_committed, (double)offset);
    }
    if (p->commit_sent >= 0 && p->commit_sent <= offset)
        p->commit_sent = -1;
}

/* Partitions of `idx` (all assigned ones when NULL) whose prefix advanced. */
static rd_kafka_topic_partition_list_t *due(kafka_source *ks, const uint32_t *idx, size_t n,
                                            bool sync)
{
    offset_book *b = ks->book;
    size_t count = idx ? n : book_count(b);
    rd_kafka_topic_partition_list_t *list = NULL;
    for (size_t i = 0; i < count; i++) {
        uint32_t k = idx ? idx[i] : (uint32_t)i;
        if (k == UINT32_MAX)
            continue;
        book_part *p = book_get(b, k);
        if (!p || !p->assigned)
            continue;
        int64_t done = book_done(b, k);
        if (done < 0 || done <= p->committed || (!sync && done == p->commit_sent))
            continue;
        if (!list)
            list = rd_kafka_topic_partition_list_new(4);
        rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = done;
    }
    return list;
}

static void log_commit_failure(kafka_source *ks, rd_kafka_resp_err_t err, const char *what)
{
    ecf_metric_add(ks->stage, ks->m.commit_failures, 1);
    int64_t now = kc_mono_us();
    if (now < ks->next_error_log_us && err == ks->last_err) {
        ks->errors_suppressed++;
        return;
    }
    ks->next_error_log_us = now + COMMIT_LOG_QUIET_US;
    ks->last_err = err;
    ecf_log(ks->stage, ECF_LOG_WARN, "offset commit failed (%s): %s; retried at the next "
            "commit_interval, and what is not committed is redelivered after a restart",
            what, rd_kafka_err2str(err));
}

static bool commit_list(kafka_source *ks, rd_kafka_topic_partition_list_t *list, bool sync)
{
    rd_kafka_resp_err_t err = rd_kafka_commit(ks->rk, list, sync ? 0 : 1);
    ks->n_commits++;
    ecf_metric_add(ks->stage, ks->m.commits, 1);
    if (err) {
        log_commit_failure(ks, err, sync ? "synchronous" : "asynchronous");
        return false;
    }
    for (int i = 0; i < list->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &list->elems[i];
        uint32_t k = book_find(ks->book, e->topic, e->partition);
        if (k == UINT32_MAX)
            continue;
        book_part *p = book_get(ks->book, k);
        if (sync)
            set_committed(ks, p, e->offset);
        else
            p->commit_sent = e->offset;
    }
    return true;
}

static bool commit_parts(kafka_source *ks, const uint32_t *idx, size_t n, bool sync,
                         char *logbuf, size_t logsize)
{
    if (!ks->rk)
        return true;
    rd_kafka_topic_partition_list_t *list = due(ks, idx, n, sync);
    if (!list) {
        if (logbuf)
            snprintf(logbuf, logsize, "nothing new");
        return true;
    }
    bool ok = commit_list(ks, list, sync);
    if (logbuf)
        ksrc_parts_str(list, logbuf, logsize, true);
    rd_kafka_topic_partition_list_destroy(list);
    return ok;
}

bool ksrc_commit(kafka_source *ks, bool sync)
{
    char buf[1024] = "";
    bool ok = commit_parts(ks, NULL, 0, sync, sync ? buf : NULL, sizeof buf);
    if (sync && strcmp(buf, "nothing new") != 0)
        ecf_log(ks->stage, ok ? ECF_LOG_INFO : ECF_LOG_WARN, "committed %s%s", buf,
                ok ? "" : " (failed)");
    return ok;
}

/* "t[0]@12 t[1]@-" : the committed offsets of these partitions. */
static void committed_str(kafka_source *ks, const uint32_t *idx, size_t n, char *buf,
                          size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off + 1 < size; i++) {
        book_part *p = book_get(ks->book, idx[i]);
        int w = p->committed >= 0
                    ? snprintf(buf + off, size - off, "%s%s[%" PRId32 "]@%" PRId64,
                               i ? " " : "", p->topic, p->partition, p->committed)
                    : snprintf(buf + off, size - off, "%s%s[%" PRId32 "]@none", i ? " " : "",
                               p->topic, p->partition);
        off += w > 0 ? (size_t)w : 0;
    }
}

void ksrc_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                    rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    kafka_source *ks = opaque;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return; /* nothing to commit: not an error */
    bool failed = false;
    rd_kafka_resp_err_t first = err;
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &offsets->elems[i];
        uint32_t k = book_find(ks->book, e->topic, e->partition);
        book_part *p = k == UINT32_MAX ? NULL : book_get(ks->book, k);
        if (!p)
            continue;
        if (!err && !e->err && e->offset >= 0) {
            set_committed(ks, p, e->offset);
        } else {
            p->commit_sent = -1; /* sent again at the next interval */
            failed = true;
            if (!first)
                first = e->err;
        }
    }
    if (failed || err)
        log_commit_failure(ks, first ? first : err, "asynchronous");
}

void ksrc_update_gauges(kafka_source *ks)
{
    offset_book *b = ks->book;
    uint32_t n = book_count(b), assigned = 0;
    int64_t inflight = 0;
    for (uint32_t k = 0; k < n; k++) {
        book_part *p = book_get(b, k);
        if (!p->assigned) {
            if (p->m_lag) /* its new owner reports it now */
                ecf_metric_set(ks->stage, p->m_lag, 0);
            continue;
        }
        assigned++;
        inflight += book_inflight(b, k);
        int64_t lo = -1, hi = -1;
        if (p->committed >= 0 && ks->rk &&
            rd_kafka_get_watermark_offsets(ks->rk, p->topic, p->partition, &lo, &hi) == 0 &&
            hi >= 0)
            ecf_metric_set(ks->stage, p->m_lag, (double)(hi > p->committed ? hi - p->committed : 0));
    }
    ecf_metric_set(ks->stage, ks->m.assigned, assigned);
    ecf_metric_set(ks->stage, ks->m.in_flight, (double)inflight);
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
static bool sink_resume_position(kafka_source *ks, const char *topic, int32_t partition,
                                 int64_t *next_offset)
{
    const ecf_host *h = ecf_host_of(ks->stage);
    if (h->size < offsetof(ecf_host, resume_position) + sizeof h->resume_position ||
        !h->resume_position)
        return false;
    int64_t pos = -1;
    if (ecf_resume_position(ks->stage, topic, partition, &pos) != ECF_OK || pos < 0)
        return false;
    *next_offset = pos;
    return true;
}

static void query_committed(kafka_source *ks, const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_copy(parts);
    int timeout = (int)(ks->cfg->rebalance_timeout_us / 1000);
    if (timeout > COMMITTED_QUERY_MAX_MS || timeout <= 0)
        timeout = COMMITTED_QUERY_MAX_MS;
    rd_kafka_resp_err_t err = rd_kafka_committed(ks->rk, q, timeout);
    if (err) {
        ecf_log(ks->stage, ECF_LOG_DEBUG, "could not read committed offsets: %s",
                rd_kafka_err2str(err));
    } else {
        for (int i = 0; i < q->cnt; i++) {
            uint32_t k = book_find(ks->book, q->elems[i].topic, q->elems[i].partition);
            if (k != UINT32_MAX && !q->elems[i].err && q->elems[i].offset >= 0)
                set_committed(ks, book_get(ks->book, k), q->elems[i].offset);
        }
    }
    rd_kafka_topic_partition_list_destroy(q);
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
            ecf_log(ks->stage, ECF_LOG_ERROR, "out of memory tracking %s[%" PRId32 "]",
                    e->topic, e->partition);
            continue;
        }
        book_assign(ks->book, k);
        part_metrics(ks, book_get(ks->book, k));
        int64_t pos;
        if (sink_resume_position(ks, e->topic, e->partition, &pos)) {
            e->offset = pos;
            from_sinks++;
        }
    }
    if (parts->cnt)
        query_committed(ks, parts);

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
        ecf_log(ks->stage, ECF_LOG_ERROR, "assigning partitions failed: %s",
                rd_kafka_err2str(err));

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
            w = snprintf(buf + off, sizeof buf - off,
                         "%s%s[%" PRId32 "]@%" PRId64 " (sinks; group at %" PRId64 ")",
                         i ? " " : "", e->topic, e->partition, e->offset, p->committed);
        else if (e->offset >= 0)
            w = snprintf(buf + off, sizeof buf - off, "%s%s[%" PRId32 "]@%" PRId64 " (sinks)",
                         i ? " " : "", e->topic, e->partition, e->offset);
        else if (group)
            w = snprintf(buf + off, sizeof buf - off, "%s%s[%" PRId32 "]@%" PRId64 " (group)",
                         i ? " " : "", e->topic, e->partition, p->committed);
        else
            w = snprintf(buf + off, sizeof buf - off, "%s%s[%" PRId32 "]@%s (auto_offset_reset)",
                         i ? " " : "", e->topic, e->partition, ks->cfg->auto_offset_reset);
        off += w > 0 ? (size_t)w : 0;
    }
    if (off + 1 >= sizeof buf && sizeof buf > 4)
        memcpy(buf + sizeof buf - 4, "...", 4);
    ecf_log(ks->stage, ECF_LOG_INFO, "assigned %d partition(s) (%s)%s%s", parts->cnt,
            coop ? "cooperative" : "eager", parts->cnt ? ": " : "", buf);
    if (parts->cnt)
        ecf_log(ks->stage, ECF_LOG_INFO, "start positions: %zu from the sinks, %zu from the "
                "group's committed offsets, %zu from auto_offset_reset", from_sinks, from_group,
                (size_t)parts->cnt - from_sinks - from_group);
    ksrc_update_gauges(ks);
}

/* ---------------------------------------------------------------- revoke */

static void on_revoke(kafka_source *ks, rd_kafka_topic_partition_list_t *parts, bool coop,
                      bool lost)
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
        commit_ok = commit_parts(ks, known, n_known, true, NULL, 0);
        committed_str(ks, known, n_known, committed, sizeof committed);
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
        ecf_log(ks->stage, ECF_LOG_ERROR, "releasing partitions failed: %s",
                rd_kafka_err2str(err));

    if (left > 0 || !commit_ok || lost)
        ecf_log(ks->stage, ECF_LOG_WARN, "revoked %zu partition(s)%s after %" PRId64 " ms; "
                "committed: %s%s; %" PRId64 " message(s) still unacknowledged, redelivered to "
                "the next owner", n, lost ? " (lost)" : "", waited_ms, committed,
                commit_ok ? "" : " (the last commit failed)", left);
    else
        ecf_log(ks->stage, ECF_LOG_INFO, "revoked %zu partition(s) after %" PRId64 " ms; "
                "committed: %s", n, waited_ms, committed);
    free(known);
    ksrc_update_gauges(ks);
}

void ksrc_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                       rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kafka_source *ks = opaque;
    bool coop = cooperative(rk);
    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        on_assign(ks, parts, coop);
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        on_revoke(ks, parts, coop, rd_kafka_assignment_lost(rk) != 0);
        break;
    default: {
        ecf_log(ks->stage, ECF_LOG_ERROR, "rebalance failed: %s; dropping the assignment",
                rd_kafka_err2str(err));
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
