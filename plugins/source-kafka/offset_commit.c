/*
 * Offset commits: what the group resumes at.
 *
 * Only the contiguous acknowledged prefix of each partition is committed
 * (offset_book.c keeps it): async every commit_interval from the run loop,
 * sync when partitions are revoked (rebalance.c) and at stop. The commit
 * callback records what the broker confirmed; a failure is logged once per
 * quiet period and the offsets go again at the next interval. Also the
 * committed-offset and lag gauges, and reading the group's committed
 * offsets when partitions are assigned.
 */
#include "source_kafka.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define COMMITTED_QUERY_MAX_MS 5000
#define COMMIT_LOG_QUIET_US (30LL * 1000 * 1000)

void ksrc_part_metrics(kafka_source *ks, book_part *p)
{
    if (p->m_committed)
        return;
    char name[512];
    snprintf(name, sizeof name, "kafka_consumer_committed_offset{topic=\"%s\",partition=\"%" PRId32 "\"}", p->topic,
             p->partition);
    p->m_committed =
        ecf_metric_new(ks->stage, ECF_METRIC_GAUGE, name, "next offset the group resumes at (last committed)");
    snprintf(name, sizeof name, "kafka_consumer_lag{topic=\"%s\",partition=\"%" PRId32 "\"}", p->topic, p->partition);
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
static rd_kafka_topic_partition_list_t *due(kafka_source *ks, const uint32_t *idx, size_t n, bool sync)
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
    ecf_log(ks->stage, ECF_LOG_WARN,
            "offset commit failed (%s): %s; retried at the next "
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

bool ksrc_commit_parts(kafka_source *ks, const uint32_t *idx, size_t n, bool sync, char *logbuf, size_t logsize)
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
    bool ok = ksrc_commit_parts(ks, NULL, 0, sync, sync ? buf : NULL, sizeof buf);
    if (sync && strcmp(buf, "nothing new") != 0)
        ecf_log(ks->stage, ok ? ECF_LOG_INFO : ECF_LOG_WARN, "committed %s%s", buf, ok ? "" : " (failed)");
    return ok;
}

/* "t[0]@12 t[1]@-" : the committed offsets of these partitions. */
void ksrc_committed_str(kafka_source *ks, const uint32_t *idx, size_t n, char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off + 1 < size; i++) {
        book_part *p = book_get(ks->book, idx[i]);
        int w = p->committed >= 0
                    ? snprintf(buf + off, size - off, "%s%s[%" PRId32 "]@%" PRId64, i ? " " : "", p->topic,
                               p->partition, p->committed)
                    : snprintf(buf + off, size - off, "%s%s[%" PRId32 "]@none", i ? " " : "", p->topic, p->partition);
        off += w > 0 ? (size_t)w : 0;
    }
}

void ksrc_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets, void *opaque)
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
            rd_kafka_get_watermark_offsets(ks->rk, p->topic, p->partition, &lo, &hi) == 0 && hi >= 0)
            ecf_metric_set(ks->stage, p->m_lag, (double)(hi > p->committed ? hi - p->committed : 0));
    }
    ecf_metric_set(ks->stage, ks->m.assigned, assigned);
    ecf_metric_set(ks->stage, ks->m.in_flight, (double)inflight);
}

void ksrc_read_committed(kafka_source *ks, const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_copy(parts);
    int timeout = (int)(ks->cfg->rebalance_timeout_us / 1000);
    if (timeout > COMMITTED_QUERY_MAX_MS || timeout <= 0)
        timeout = COMMITTED_QUERY_MAX_MS;
    rd_kafka_resp_err_t err = rd_kafka_committed(ks->rk, q, timeout);
    if (err) {
        ecf_log(ks->stage, ECF_LOG_DEBUG, "could not read committed offsets: %s", rd_kafka_err2str(err));
    } else {
        for (int i = 0; i < q->cnt; i++) {
            uint32_t k = book_find(ks->book, q->elems[i].topic, q->elems[i].partition);
            if (k != UINT32_MAX && !q->elems[i].err && q->elems[i].offset >= 0)
                set_committed(ks, book_get(ks->book, k), q->elems[i].offset);
        }
    }
    rd_kafka_topic_partition_list_destroy(q);
}
