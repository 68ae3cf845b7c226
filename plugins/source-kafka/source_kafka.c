/*
 * source-kafka: a librdkafka consumer-group member that emits batches of
 * Kafka records and commits, per partition, only the contiguous prefix of
 * offsets that every sink acknowledged (at-least-once).
 *
 * One thread: the stage's run thread polls librdkafka (rd_kafka_consumer_poll;
 * its batch APIs are not safe with pause/seek/rebalance in 2.0.x), builds
 * batches, emits them, commits every commit_interval, and serves librdkafka's
 * callbacks (rebalance, commit results, errors, logs) inside its polls.
 * Settle callbacks arrive on the sinks' threads and only touch the offset
 * book (its own lock) and the failure slot (fail_lock).
 *
 * Backpressure: a full ring refuses a batch (ecf_try_emit); the stage keeps
 * filling the next batch meanwhile. When that one is full too and the ring
 * stayed full for PAUSE_AFTER_US, every assigned partition is paused: the
 * stage keeps polling (rebalances, commits, heartbeat of max.poll.interval)
 * but takes no more records, and librdkafka's prefetch is dropped, so memory
 * stays within prefetch_max_bytes + two batches + the rings. Resumed as soon
 * as the ring takes the batch.
 */
#include "source_kafka.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLL_IDLE_MS 100
#define PAUSE_AFTER_US (250 * 1000)
#define BACKOFF_MAX_US (5 * 1000)
#define REDELIVER_MAX_US (60LL * 1000 * 1000)
#define SEEK_TIMEOUT_MS 5000
#define TOPIC_PROBE_FIRST_US (1000 * 1000)
#define TOPIC_PROBE_MAX_US (30LL * 1000 * 1000)
#define TOPIC_PROBE_TIMEOUT_MS 250

/* ---------------------------------------------------------------- settle */

static void on_settle(void *user, uint64_t tag, ecf_status outcome, const char *reason)
{
    kafka_source *ks = user;
    uint32_t idx = 0;
    book_slot run = {.first = -1, .last = -1, .records = 1};
    settle_result r = book_settle(ks->book, tag, outcome, &idx, &run);
    uint32_t records = run.records;
    switch (r) {
    case SETTLE_DONE:
        atomic_fetch_add(&ks->n_acked, records);
        ecf_metric_add(ks->stage, ks->m.acked, records);
        return;
    case SETTLE_STALE: atomic_fetch_add(&ks->n_stale, 1); return;
    case SETTLE_STOPPED:
    case SETTLE_FAILED: break;
    }
    atomic_fetch_add(&ks->n_failed, records);
    ecf_metric_add(ks->stage, ks->m.failed, records);
    if (r != SETTLE_FAILED)
        return;
    book_part *p = book_get(ks->book, idx);
    pthread_mutex_lock(&ks->fail_lock);
    if (!ks->failure_seen) {
        ks->failure_seen = true;
        ks->failure_status = outcome;
        snprintf(ks->failure_reason, sizeof ks->failure_reason, "%s", reason ? reason : ecf_status_str(outcome));
        /* The failed record is one of the run's: all of it is read again. */
        if (run.first == run.last)
            snprintf(ks->failure_where, sizeof ks->failure_where, "%s[%" PRId32 "]@%" PRId64, p ? p->topic : "?",
                     p ? p->partition : -1, run.first);
        else
            snprintf(ks->failure_where, sizeof ks->failure_where,
                     "a record of %s[%" PRId32 "]@%" PRId64 "..%" PRId64 " (%" PRIu32 " records)", p ? p->topic : "?",
                     p ? p->partition : -1, run.first, run.last, run.records);
    }
    pthread_mutex_unlock(&ks->fail_lock);
    atomic_store(&ks->failure_pending, true);
}

/* ---------------------------------------------------------------- pausing */

void ksrc_pause_parts(kafka_source *ks, rd_kafka_topic_partition_list_t *parts, bool pause)
{
    rd_kafka_resp_err_t err =
        pause ? rd_kafka_pause_partitions(ks->rk, parts) : rd_kafka_resume_partitions(ks->rk, parts);
    if (err)
        ecf_log(ks->stage, ECF_LOG_WARN, "%s partitions failed: %s", pause ? "pausing" : "resuming",
                rd_kafka_err2str(err));
}

/* Pauses or resumes the whole assignment; partitions the failure policy
 * holds stay paused either way. */
static void set_paused(kafka_source *ks, bool pause)
{
    if (ks->paused == pause || !ks->rk)
        return;
    rd_kafka_topic_partition_list_t *all = NULL;
    if (rd_kafka_assignment(ks->rk, &all) != 0 || !all)
        return;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(all->cnt);
    for (int i = 0; i < all->cnt; i++) {
        uint32_t k = book_find(ks->book, all->elems[i].topic, all->elems[i].partition);
        book_part *p = k == UINT32_MAX ? NULL : book_get(ks->book, k);
        if (!pause && p && p->held)
            continue;
        rd_kafka_topic_partition_list_add(list, all->elems[i].topic, all->elems[i].partition);
    }
    int count = list->cnt;
    if (count)
        ksrc_pause_parts(ks, list, pause);
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_topic_partition_list_destroy(all);
    ks->paused = pause;
    ecf_metric_set(ks->stage, ks->m.paused, pause ? 1 : 0);
    if (pause) {
        ks->n_pauses++;
        ecf_metric_add(ks->stage, ks->m.pauses, 1);
        ecf_log(ks->stage, ECF_LOG_DEBUG, "downstream full for %.0f ms: paused %d partition(s)",
                (double)(kc_mono_us() - ks->blocked_since_us) / 1000, count);
    } else {
        ecf_log(ks->stage, ECF_LOG_DEBUG, "downstream took the batch: resumed %d partition(s)", count);
    }
}

static void pause_one(kafka_source *ks, book_part *p, bool pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
    ksrc_pause_parts(ks, l, pause);
    rd_kafka_topic_partition_list_destroy(l);
}

/* ECF_ERR_IO when librdkafka cannot seek: the run stops rather than skip. */
static ecf_status seek_to(kafka_source *ks, book_part *p, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = offset;
    /* librdkafka before 2.1.0 (Debian 12 has 2.0.2) read this timeout as
     * microseconds (fixed upstream in confluentinc/librdkafka#4230): 5000
     * meant 5 ms, and a seek while the fetcher was busy timed out and
     * stopped the pipeline. */
    int timeout = rd_kafka_version() < 0x020100ff ? SEEK_TIMEOUT_MS * 1000 : SEEK_TIMEOUT_MS;
    rd_kafka_error_t *error = rd_kafka_seek_partitions(ks->rk, l, timeout);
    rd_kafka_resp_err_t err = error ? rd_kafka_error_code(error) : l->elems[0].err;
    if (error)
        rd_kafka_error_destroy(error);
    rd_kafka_topic_partition_list_destroy(l);
    if (err)
        return ecf_fail(ks->stage, ECF_ERR_IO,
                        "seeking %s[%" PRId32 "] back to %" PRId64 " failed: %s; "
                        "stopping rather than skip records that were not made durable",
                        p->topic, p->partition, offset, rd_kafka_err2str(err));
    return ECF_OK;
}

/* ---------------------------------------------------------------- batches */

static bool contains(const uint32_t *idx, size_t n, uint32_t k)
{
    for (size_t i = 0; i < n; i++)
        if (idx[i] == k)
            return true;
    return false;
}

/*
 * Ack tokens by the run: the records of one partition that follow each other
 * into one batch share a token (and an offset book slot), so a sink holding
 * a commit's worth of rows holds a few hundred tokens, not a token per row
 * (~100 bytes each with its slot: 25 MB for 250,000 rows). A failure of any
 * of them redelivers the run from its first record. The run keeps the
 * creator's reference until run_end(), at the latest when its batch leaves.
 */
static void run_end(kafka_source *ks)
{
    if (!ks->run_tok)
        return;
    ecf_token_release(ks->stage, ks->run_tok);
    ks->run_tok = NULL;
}

static ecf_token *run_token(kafka_source *ks, uint32_t k, int64_t offset)
{
    if (ks->run_tok && ks->run_part == k && book_extend(ks->book, ks->run_tag, offset))
        return ks->run_tok;
    run_end(ks);
    uint64_t tag = book_track(ks->book, k, offset);
    if (tag == UINT64_MAX)
        return NULL;
    ks->run_tok = ecf_token_new(ks->stage, on_settle, ks, tag);
    ks->run_tag = tag;
    ks->run_part = k;
    return ks->run_tok;
}

/* The batch being built leaves (emitted, or given up): its run ends. */
static ecf_batch *take_building(kafka_source *ks)
{
    run_end(ks);
    ecf_batch *b = ks->building;
    ks->building = NULL;
    ks->building_n = 0;
    return b;
}

/*
 * Gives up on batches taken from Kafka that will not be emitted. Their
 * messages must never count as done (releasing a batch settles its tokens
 * as "dropped"): in partitions being released (`revoked`, or all when `all`
 * is set) their slots are blocked, so the commit stops before them and the
 * next owner redelivers them; in partitions we keep, the window is rewound
 * to the earliest of them and the partition seeks back there, so they come
 * again. All batches at once, so each partition rewinds once, to its lowest.
 */
static void abandon(kafka_source *ks, ecf_batch **batches, size_t n_batches, const uint32_t *revoked, size_t n_revoked,
                    bool all)
{
    ecf_stage *stage = ks->stage;
    uint32_t n_parts = book_count(ks->book);
    int64_t *rewind = NULL;
    for (size_t j = 0; j < n_batches; j++) {
        ecf_batch *b = batches[j];
        uint32_t n = b ? ecf_batch_count(stage, b) : 0;
        for (uint32_t i = 0; i < n; i++) {
            const ecf_message *m = ecf_batch_message(stage, b, i);
            uint32_t k = book_find(ks->book, m->origin.topic, m->origin.partition);
            if (k == UINT32_MAX)
                continue;
            if (all || contains(revoked, n_revoked, k)) {
                book_block(ks->book, k, m->origin.offset);
                continue;
            }
            if (!rewind && (rewind = malloc(n_parts * sizeof *rewind)) != NULL)
                for (uint32_t q = 0; q < n_parts; q++)
                    rewind[q] = -1;
            if (!rewind) {
                book_block(ks->book, k, m->origin.offset); /* no memory: never commit past */
                continue;
            }
            if (rewind[k] < 0 || m->origin.offset < rewind[k])
                rewind[k] = m->origin.offset;
        }
    }
    uint32_t n_rewound = 0, n_records = 0;
    for (uint32_t k = 0; rewind && k < n_parts; k++)
        if (rewind[k] >= 0) {
            rewind[k] = book_rewind(ks->book, k, rewind[k]);
            n_rewound++;
        }
    for (size_t j = 0; j < n_batches; j++)
        if (batches[j]) {
            n_records += ecf_batch_count(stage, batches[j]);
            ecf_batch_release(stage, batches[j]); /* "dropped": the slots ignore it */
        }
    ecf_log(stage, ECF_LOG_INFO,
            "abandoned %u record(s) taken from Kafka but not emitted: "
            "never committed%s",
            n_records, n_rewound ? "; partitions kept are read again from the first of them" : "");
    for (uint32_t k = 0; rewind && k < n_parts; k++) {
        ecf_status st = rewind[k] >= 0 ? seek_to(ks, book_get(ks->book, k), rewind[k]) : ECF_OK;
        if (st != ECF_OK)
            ks->stop_status = st; /* cannot redeliver: stop rather than skip */
    }
    free(rewind);
}

static void clear_taken(kafka_source *ks)
{
    run_end(ks);
    ks->pending = NULL;
    ks->building = NULL;
    ks->building_n = 0;
    ks->blocked_since_us = 0;
}

void ksrc_flush_taken(kafka_source *ks, int64_t deadline_us, const uint32_t *revoked, size_t n_revoked)
{
    /* In order: pending first, so a partition's records stay in order. */
    run_end(ks);
    ecf_batch *batches[2] = {ks->pending, ks->building};
    int64_t backoff = 100;
    for (int i = 0; i < 2; i++) {
        while (batches[i] && kc_mono_us() < deadline_us) {
            ecf_status st = ecf_try_emit(ks->stage, NULL, batches[i]);
            if (st != ECF_ERR_BACKPRESSURE) {
                batches[i] = NULL; /* taken (a stopped consumer fails its messages) */
                break;
            }
            kc_sleep_us(backoff);
            backoff = backoff * 2 > BACKOFF_MAX_US ? BACKOFF_MAX_US : backoff * 2;
        }
        if (batches[i])
            break; /* the deadline passed: the rest is abandoned, in order */
    }
    if (batches[0] || batches[1])
        abandon(ks, batches, 2, revoked, n_revoked, false);
    clear_taken(ks);
    set_paused(ks, false);
}

/* Emits the pending batch if the ring has room; false while it stays refused. */
static bool emit_pending(kafka_source *ks)
{
    if (!ks->pending)
        return true;
    ecf_status st = ecf_try_emit(ks->stage, NULL, ks->pending);
    if (st == ECF_ERR_BACKPRESSURE) {
        if (!ks->blocked_since_us)
            ks->blocked_since_us = kc_mono_us();
        return false;
    }
    /* OK, or STOPPED: the core failed its messages and the pipeline stops. */
    ks->pending = NULL;
    ks->blocked_since_us = 0;
    set_paused(ks, false);
    return true;
}

/* The record's partition in the book; parts never move, so the last one is cached. */
static book_part *lookup(kafka_source *ks, const rd_kafka_message_t *m)
{
    if (ks->last_p && m->rkt == ks->last_rkt && m->partition == ks->last_partition)
        return ks->last_p;
    uint32_t k = book_find(ks->book, rd_kafka_topic_name(m->rkt), m->partition);
    book_part *p = k == UINT32_MAX ? NULL : book_get(ks->book, k);
    if (p) {
        ks->last_rkt = m->rkt;
        ks->last_partition = m->partition;
        ks->last_p = p;
    }
    return p;
}

/*
 * The record's headers as ecf_headers in ks->headers (names and values
 * point into the librdkafka message; ecf_batch_add copies them). Returns
 * how many; 0 when none, or when there is no memory for them.
 */
static size_t record_headers(kafka_source *ks, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR || !hdrs)
        return 0;
    size_t n = rd_kafka_header_cnt(hdrs);
    if (n > ks->headers_cap) {
        ecf_header *h = realloc(ks->headers, n * sizeof *h);
        if (!h)
            return 0;
        ks->headers = h;
        ks->headers_cap = n;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name;
        const void *value;
        size_t size;
        if (rd_kafka_header_get_all(hdrs, i, &name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        ks->headers[k].name = name;
        ks->headers[k].value = value ? value : (const uint8_t *)""; /* a null header value */
        ks->headers[k].value_len = value ? (uint32_t)size : 0;
        k++;
    }
    return k;
}

/* Takes one record from librdkafka into the batch being built. */
static ecf_status take(kafka_source *ks, rd_kafka_message_t *m)
{
    ecf_stage *stage = ks->stage;
    if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            return ECF_OK;
        if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
            char buf[512];
            kc_fatal_reason(ks->rk, buf, sizeof buf);
            return ecf_fail(stage, ECF_ERR_FATAL, "Kafka consumer failed for good: %s", buf);
        }
        kc_log_error(&ks->client, m->err, rd_kafka_message_errstr(m));
        return ECF_OK;
    }
    book_part *p = lookup(ks, m);
    if (!p || !p->assigned || p->held) {
        /* Not ours (any more), or held for redelivery: not emitted, not committed. */
        if (ks->run_tok && p && ks->run_part == p->index)
            run_end(ks); /* a run never spans a record it did not take */
        ecf_log(stage, ECF_LOG_DEBUG, "skipping %s[%" PRId32 "]@%" PRId64 ": not assigned", rd_kafka_topic_name(m->rkt),
                m->partition, m->offset);
        return ECF_OK;
    }

    uint32_t k = p->index;
    if (!ks->building) {
        ks->building = ecf_batch_new(stage);
        ks->building_n = 0;
        ks->building_first_us = kc_mono_us();
    }
    ecf_token *tok = run_token(ks, k, m->offset);
    if (!tok)
        return ecf_fail(stage, ECF_ERR_NOMEM, "out of memory tracking offsets");
    rd_kafka_timestamp_type_t tstype;
    int64_t ts_ms = rd_kafka_message_timestamp(m, &tstype);
    size_t n_headers = record_headers(ks, m);
    int64_t record_us = tstype != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts_ms > 0 ? ts_ms * 1000 : 0;
    ecf_message_init init = {
        .struct_size = sizeof(ecf_message_init),
        .payload = m->payload,
        .payload_len = m->payload ? m->len : 0,
        .key = m->key,
        .key_len = m->key ? m->key_len : 0,
        .event_time_us = record_us,
        /* Entered the system when it was written to Kafka (by sink-kafka:
         * when the pipeline took it in), so freshness spans both legs. */
        .ingest_time_us = record_us,
        .origin = {.kind = ECF_ORIGIN_KAFKA, .partition = m->partition, .offset = m->offset, .topic = p->topic},
        .token = tok,
        .headers = n_headers ? ks->headers : NULL,
        .n_headers = n_headers,
    };
    ecf_status st = ecf_batch_add(stage, ks->building, &init);
    if (st != ECF_OK) {
        book_block(ks->book, k, m->offset); /* its release must not count as done */
        run_end(ks);
        return ecf_fail(stage, st, "could not add a record to a batch: %s", ecf_status_str(st));
    }
    ks->building_n++;
    if (!kc_ready(&ks->client))
        kc_set_ready(&ks->client, true);
    atomic_fetch_add(&ks->n_consumed, 1);
    ecf_metric_add(stage, ks->m.messages, 1);
    ecf_metric_add(stage, ks->m.bytes, (double)(m->len + m->key_len));
    ks->taken_bytes += m->len;
    ks->taken_records++;
    return ECF_OK;
}

/* Polls one record (or serves callbacks for up to timeout_ms) and takes it. */
static ecf_status poll_one(kafka_source *ks, int timeout_ms, bool *got)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(ks->rk, timeout_ms);
    *got = m != NULL;
    if (!m)
        return ECF_OK;
    ecf_status st = take(ks, m);
    rd_kafka_message_destroy(m);
    return st;
}

/*
 * Fills the batch being built until it is full, its batch_wait has passed,
 * or `until_us` (housekeeping, or a retry of a refused batch) comes.
 */
static ecf_status fill(kafka_source *ks, int64_t until_us)
{
    /* Records already queued in librdkafka are taken without a timeout and
     * without reading the clock for each; the deadlines are checked every
     * CLOCK_EVERY records and whenever the queue runs dry. */
    enum { CLOCK_EVERY = 64 };
    uint32_t since_clock = CLOCK_EVERY;
    while (ks->building_n < ks->batch_size && !atomic_load(&ks->failure_pending)) {
        bool got;
        ecf_status st;
        if (since_clock < CLOCK_EVERY) {
            st = poll_one(ks, 0, &got);
            if (st != ECF_OK)
                return st;
            if (got) {
                since_clock++;
                continue;
            }
        }
        since_clock = 0;
        if (ks->taken_records && nudge_observe(ks->nudge, (double)ks->taken_bytes / (double)ks->taken_records))
            ecf_metric_add(ks->stage, ks->m.nudges, 1);
        if (ecf_should_stop(ks->stage))
            break;
        int64_t now = kc_mono_us();
        int64_t deadline = until_us;
        if (ks->building && ks->building_first_us + ks->cfg->batch_wait_us < deadline)
            deadline = ks->building_first_us + ks->cfg->batch_wait_us;
        if (now >= deadline)
            break;
        int64_t wait_ms = (deadline - now + 999) / 1000;
        st = poll_one(ks, wait_ms > POLL_IDLE_MS ? POLL_IDLE_MS : (int)wait_ms, &got);
        if (st != ECF_OK)
            return st;
    }
    return ECF_OK;
}

static bool batch_due(const kafka_source *ks)
{
    return ks->building && ks->building_n > 0 &&
           (ks->building_n >= ks->batch_size || kc_mono_us() >= ks->building_first_us + ks->cfg->batch_wait_us);
}

/* ---------------------------------------------------------------- failures */

static int64_t redeliver_backoff(const kafka_source *ks, int attempts)
{
    int64_t b = ks->cfg->redeliver_backoff_us;
    for (int i = 0; i < attempts && b < REDELIVER_MAX_US; i++)
        b *= 2;
    return b > REDELIVER_MAX_US ? REDELIVER_MAX_US : b;
}

/*
 * on_failure: redeliver. A failed partition is paused at once (so the stage
 * does not run far past the failure), then after the backoff its window is
 * rewound to the failed offset and the partition seeks back there.
 * Everything after the failed message is delivered again too.
 */
static void schedule_redeliveries(kafka_source *ks, int64_t now)
{
    uint32_t n = book_count(ks->book);
    for (uint32_t k = 0; k < n; k++) {
        book_part *p = book_get(ks->book, k);
        if (!p->assigned)
            continue;
        int64_t failed = book_failed_at(ks->book, k);
        if (failed >= 0 && !p->held) {
            p->attempts = failed == p->retry_offset ? p->attempts + 1 : 0;
            p->retry_offset = failed;
            p->retry_at_us = now + redeliver_backoff(ks, p->attempts);
            p->held = true;
            pause_one(ks, p, true);
            ecf_log(ks->stage, ECF_LOG_WARN,
                    "%s[%" PRId32 "]@%" PRId64 " failed downstream; "
                    "redelivering from there in %.1fs (attempt %d)",
                    p->topic, p->partition, failed, (double)(p->retry_at_us - now) / 1e6, p->attempts + 1);
        }
        if (p->held && now >= p->retry_at_us) {
            /* A lower offset may have failed since (it was still in flight). */
            int64_t from = book_failed_at(ks->book, k);
            if (from < 0 || from > p->retry_offset)
                from = p->retry_offset;
            from = book_rewind(ks->book, k, from);
            p->held = false;
            p->retry_at_us = 0;
            ks->n_redeliveries++;
            ecf_metric_add(ks->stage, ks->m.redeliveries, 1);
            ecf_status st = seek_to(ks, p, from);
            if (st != ECF_OK) {
                ks->stop_status = st;
                return;
            }
            if (!ks->paused)
                pause_one(ks, p, false);
        }
    }
}

/* Reads the first failure; true when the run must end (on_failure: stop). */
static bool handle_failures(kafka_source *ks, int64_t now)
{
    if (atomic_exchange(&ks->failure_pending, false)) {
        pthread_mutex_lock(&ks->fail_lock);
        ecf_status st = ks->failure_status;
        char where[256], reason[512];
        snprintf(where, sizeof where, "%s", ks->failure_where);
        snprintf(reason, sizeof reason, "%s", ks->failure_reason);
        ks->failure_seen = ks->redeliver ? false : ks->failure_seen;
        pthread_mutex_unlock(&ks->fail_lock);
        if (ks->redeliver) {
            ecf_log(ks->stage, ECF_LOG_WARN, "%s failed downstream (%s: %s)", where, ecf_status_str(st), reason);
        } else {
            /* ecf_fail turns an ECF_OK outcome into ECF_ERR_INTERNAL */
            ks->stop_status = ecf_fail(ks->stage, st,
                                       "%s failed downstream (%s: %s); offsets stay "
                                       "committed before it, so a restart redelivers it (on_failure: "
                                       "stop)",
                                       where, ecf_status_str(st), reason);
            return true;
        }
    }
    if (ks->redeliver)
        schedule_redeliveries(ks, now);
    return ks->stop_status != ECF_OK;
}

/* ---------------------------------------------------------------- run */

/*
 * A named topic that did not exist at start (in the default pipeline the
 * producer stage creates it a moment later): librdkafka looks at the
 * subscription's topics again only every topic.metadata.refresh.interval.ms,
 * five minutes by default, and assigns nothing until then. A metadata request
 * for all topics from the application updates the group's subscription at
 * once, so ask until every named topic is there: after a second, then less
 * and less often (a topic that never comes costs one request per 30 s).
 */
static void probe_topics(kafka_source *ks, int64_t now)
{
    if (!ks->topics_missing || now < ks->next_topic_probe_us)
        return;
    int64_t every = ks->topic_probe_every_us;
    ks->topic_probe_every_us = !every                           ? TOPIC_PROBE_FIRST_US
                               : every * 2 > TOPIC_PROBE_MAX_US ? TOPIC_PROBE_MAX_US
                                                                : every * 2;
    ks->next_topic_probe_us = now + ks->topic_probe_every_us;
    const struct rd_kafka_metadata *md = NULL;
    if (kc_list_topics(ks->rk, TOPIC_PROBE_TIMEOUT_MS, &md) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    bool all = true;
    for (char **t = ks->cfg->topics; t && *t; t++)
        all = all && kc_find_topic(md, *t) != NULL;
    rd_kafka_metadata_destroy(md);
    if (all) {
        ks->topics_missing = false;
        ecf_log(ks->stage, ECF_LOG_INFO, "every subscribed topic exists now");
    }
}

/* While not ready, kc_probe asks a broker for metadata now and then: an idle
 * topic brings no record to tell us the brokers are back. */
static void housekeeping(kafka_source *ks, int64_t now)
{
    kc_probe(&ks->client, ks->rk, now);
    probe_topics(ks, now);
    if (now < ks->next_commit_us)
        return;
    ks->next_commit_us = now + ks->cfg->commit_interval_us;
    ksrc_commit(ks, false);
    ksrc_update_gauges(ks);
}

static ecf_status ksrc_run(ecf_stage *stage)
{
    kafka_source *ks = ecf_state(stage);
    ecf_status st = ECF_OK;
    ks->running = true;
    ks->next_commit_us = kc_mono_us() + ks->cfg->commit_interval_us;
    int64_t backoff = 100;

    while (!ecf_should_stop(stage)) {
        int64_t now = kc_mono_us();
        if (handle_failures(ks, now))
            break;
        housekeeping(ks, now);

        if (ks->pending && !emit_pending(ks)) {
            /* The ring is full. Fill the next batch meanwhile; once that is
             * full too, wait, and pause the partitions if it lasts. */
            if (ks->building_n >= ks->batch_size) {
                if (!ks->paused && now - ks->blocked_since_us >= PAUSE_AFTER_US)
                    set_paused(ks, true);
                if (ks->paused) {
                    bool got; /* serve callbacks; paused partitions yield nothing */
                    st = poll_one(ks, 10, &got);
                } else {
                    kc_sleep_us(backoff);
                    backoff = backoff * 2 > BACKOFF_MAX_US ? BACKOFF_MAX_US : backoff * 2;
                }
            } else {
                st = fill(ks, now + 10000);
            }
            if (st != ECF_OK)
                break;
            continue;
        }
        backoff = 100;

        st = fill(ks, ks->next_commit_us);
        if (st != ECF_OK)
            break;
        if (batch_due(ks)) {
            ks->pending = take_building(ks);
            emit_pending(ks);
        }
    }

    if (st == ECF_OK && ks->stop_status != ECF_OK)
        st = ks->stop_status;
    run_end(ks);
    if (st == ECF_OK) {
        /* Shutdown: what was taken from Kafka is emitted (the rings drain). */
        ecf_batch *batches[2] = {ks->pending, ks->building};
        for (int i = 0; i < 2; i++)
            if (batches[i])
                ecf_emit(stage, NULL, batches[i]);
    } else {
        /* Failing: nothing more goes downstream, and what was taken is never
         * committed (blocked), so a restart starts at it. */
        ecf_batch *batches[2] = {ks->pending, ks->building};
        abandon(ks, batches, 2, NULL, 0, true);
    }
    clear_taken(ks);
    ks->running = false;
    ksrc_commit(ks, false); /* what is acked so far; stop() commits the rest */
    return st;
}

/* ---------------------------------------------------------------- lifecycle */

static void ksrc_destroy(ecf_stage *stage);

static void metrics_create(ecf_stage *stage, ksrc_metrics *m)
{
    m->messages = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_consumer_messages_total",
                                 "records taken from Kafka and emitted");
    m->bytes = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_consumer_bytes_total",
                              "key + value bytes of the records taken");
    m->acked = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_consumer_acked_total",
                              "records every sink acknowledged (or none wanted)");
    m->failed = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_consumer_failed_total",
                               "records a sink failed (never committed past)");
    m->in_flight = ecf_metric_new(stage, ECF_METRIC_GAUGE, "kafka_consumer_in_flight_messages",
                                  "records emitted and not yet settled");
    m->assigned = ecf_metric_new(stage, ECF_METRIC_GAUGE, "kafka_consumer_assigned_partitions",
                                 "partitions this stage owns in its group");
    m->rebalance_assign = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_consumer_rebalances_total{kind=\"assign\"}",
                                         "group rebalances seen by this stage");
    m->rebalance_revoke = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_consumer_rebalances_total{kind=\"revoke\"}",
                                         "group rebalances seen by this stage");
    m->rebalance_lost = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_consumer_rebalances_total{kind=\"lost\"}",
                                       "group rebalances seen by this stage");
    m->commits = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_consumer_commits_total", "offset commits sent");
    m->commit_failures = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_consumer_commit_failures_total",
                                        "offset commits the broker refused or that timed out");
    m->pauses = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_consumer_pauses_total",
                               "times backpressure paused the partitions");
    m->paused = ecf_metric_new(stage, ECF_METRIC_GAUGE, "kafka_consumer_paused",
                               "1 while backpressure holds the partitions paused");
    m->redeliveries = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_consumer_redeliveries_total",
                                     "seeks back to a failed record (on_failure: redeliver)");
    m->nudges = ecf_metric_new(stage, ECF_METRIC_COUNTER, "kafka_consumer_fetch_nudges_total",
                               "times librdkafka's fetcher was woken after its prefetch queue had filled "
                               "(fetch_nudge.c)");
}

static ecf_status ksrc_create(ecf_stage *stage)
{
    const ksrc_config *cfg = ecf_config(stage);
    ecf_status st = ksrc_conf_check(stage, cfg);
    if (st != ECF_OK)
        return st;

    kafka_source *ks = calloc(1, sizeof *ks);
    if (!ks)
        return ECF_ERR_NOMEM;
    ks->stage = stage;
    ks->cfg = cfg;
    ks->redeliver = strcmp(cfg->on_failure, "redeliver") == 0;
    ks->last_partition = -1;
    kc_client_init(&ks->client, stage, &cfg->client, true, NULL); /* every stage starts ready */
    const char *bs = ecf_pipeline_setting(stage, "batch_size");
    int64_t n = cfg->batch_size ? cfg->batch_size : bs ? atoll(bs) : 1024;
    ks->batch_size = n > 0 ? (uint32_t)n : 1024;
    pthread_mutex_init(&ks->fail_lock, NULL);
    ecf_set_state(stage, ks);

    ks->book = book_new();
    /* Built here so a rejected kafka.* property stops `validate` too; nothing
     * connects before start. */
    ks->conf = ks->book ? ksrc_conf_build(stage, cfg) : NULL;
    if (!ks->conf) { /* the core calls destroy only after a create that succeeded */
        bool oom = !ks->book;
        ksrc_destroy(stage);
        return oom ? ECF_ERR_NOMEM : ECF_ERR_CONFIG;
    }
    rd_kafka_conf_set_opaque(ks->conf, ks);
    rd_kafka_conf_set_rebalance_cb(ks->conf, ksrc_on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(ks->conf, ksrc_on_commit);
    metrics_create(stage, &ks->m);
    return ECF_OK;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    kafka_source *ks = rd_kafka_opaque(rk);
    if (ks)
        kc_log(ks->stage, level, fac, buf);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kafka_source *ks = opaque;
    if (err != RD_KAFKA_RESP_ERR__FATAL) {
        kc_serve_error(&ks->client, (rd_kafka_resp_err_t)err, reason);
        return;
    }
    char buf[512];
    kc_fatal_reason(rk, buf, sizeof buf);
    if (ks->stop_status == ECF_OK)
        ks->stop_status = ecf_fail(ks->stage, ECF_ERR_FATAL, "Kafka consumer failed for good: %s", buf);
}

const char *ksrc_parts_str(const rd_kafka_topic_partition_list_t *parts, char *buf, size_t size, bool with_offsets)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; parts && i < parts->cnt && off + 1 < size; i++) {
        const rd_kafka_topic_partition_t *e = &parts->elems[i];
        int w;
        if (e->partition == RD_KAFKA_PARTITION_UA)
            w = snprintf(buf + off, size - off, "%s%s", i ? " " : "", e->topic);
        else if (with_offsets && e->offset >= 0)
            w = snprintf(buf + off, size - off, "%s%s[%" PRId32 "]@%" PRId64, i ? " " : "", e->topic, e->partition,
                         e->offset);
        else
            w = snprintf(buf + off, size - off, "%s%s[%" PRId32 "]", i ? " " : "", e->topic, e->partition);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    if (off + 1 >= size && size > 4)
        memcpy(buf + size - 4, "...", 4);
    return buf;
}

static rd_kafka_topic_partition_list_t *subscription(const ksrc_config *cfg)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    if (cfg->topic_regex && *cfg->topic_regex) {
        char pattern[1024];
        /* librdkafka takes a topic starting with '^' as a regex. */
        snprintf(pattern, sizeof pattern, "%s%s", cfg->topic_regex[0] == '^' ? "" : "^", cfg->topic_regex);
        rd_kafka_topic_partition_list_add(l, pattern, RD_KAFKA_PARTITION_UA);
    } else {
        for (char **t = cfg->topics; t && *t; t++)
            rd_kafka_topic_partition_list_add(l, *t, RD_KAFKA_PARTITION_UA);
    }
    return l;
}

/* A metadata round trip: is a broker there, and do the named topics exist? */
static ecf_status broker_check(kafka_source *ks)
{
    const ksrc_config *cfg = ks->cfg;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = kc_list_topics(ks->rk, kc_ms(cfg->client.connect_timeout_us), &md);
    if (err) {
        ecf_status st = kc_no_broker(&ks->client, err, NULL);
        if (st == ECF_OK)
            kc_set_ready(&ks->client, false);
        return st;
    }
    for (char **t = cfg->topics; t && *t; t++)
        if (!kc_find_topic(md, *t)) {
            ecf_log(ks->stage, ECF_LOG_WARN,
                    "topic '%s' does not exist (yet): its "
                    "partitions are assigned once it is created",
                    *t);
            ks->topics_missing = true;
        }
    rd_kafka_metadata_destroy(md);
    return ECF_OK;
}

static ecf_status ksrc_start(ecf_stage *stage)
{
    kafka_source *ks = ecf_state(stage);
    const ksrc_config *cfg = ks->cfg;
    char errstr[512];

    rd_kafka_conf_set_log_cb(ks->conf, on_log);
    rd_kafka_conf_set_error_cb(ks->conf, on_error);
    ks->rk = rd_kafka_new(RD_KAFKA_CONSUMER, ks->conf, errstr, sizeof errstr);
    if (!ks->rk) /* librdkafka checks how properties go together only here */
        return ecf_error(stage, "librdkafka refused the configuration: %s", errstr);
    ks->conf = NULL; /* rd_kafka_new owns it now */
    /* Everything (rebalances, commit results, errors, logs) is served by our
     * polls: on the run thread, and at close on the main thread. */
    rd_kafka_poll_set_consumer(ks->rk);
    rd_kafka_set_log_queue(ks->rk, NULL);

    ecf_status st = broker_check(ks);
    if (st != ECF_OK)
        return st;

    rd_kafka_topic_partition_list_t *subs = subscription(cfg);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(ks->rk, subs);
    char names[512];
    ksrc_parts_str(subs, names, sizeof names, false);
    rd_kafka_topic_partition_list_destroy(subs);
    if (err)
        return ecf_error(stage, "subscribing to %s failed: %s", names, rd_kafka_err2str(err));
    ks->subscribed = true;
    ks->nudge = nudge_start(ks->rk, cfg->prefetch_max_bytes);

    char keys[512];
    kc_passthrough_keys(&cfg->client, keys, sizeof keys);
    ecf_log(stage, ECF_LOG_INFO,
            "consuming %s as group '%s' at %s (batches of %u or %.0f ms, "
            "commit every %.1fs, on_failure %s%s%s)",
            names, cfg->group, cfg->client.bootstrap, ks->batch_size, (double)cfg->batch_wait_us / 1000,
            (double)cfg->commit_interval_us / 1e6, cfg->on_failure, *keys ? "; kafka: " : "", keys);
    return ECF_OK;
}

/* Commits what every sink acknowledged, leaves the group, frees librdkafka. */
static void consumer_close(kafka_source *ks)
{
    if (!ks->rk)
        return;
    uint64_t nudges = nudge_count(ks->nudge);
    nudge_stop(ks->nudge);
    ks->nudge = NULL;
    ks->closing = true;
    if (ks->subscribed) {
        ksrc_commit(ks, true);
        /* Serves the final revoke on this thread (it commits again if an ack
         * came in between), then leaves the group. */
        rd_kafka_resp_err_t err = rd_kafka_consumer_close(ks->rk);
        if (err)
            ecf_log(ks->stage, ECF_LOG_WARN, "closing the consumer: %s", rd_kafka_err2str(err));
    }
    ecf_log(ks->stage, ECF_LOG_INFO,
            "closed: %" PRIu64 " record(s) consumed, %" PRIu64 " acknowledged, %" PRIu64 " failed, %" PRIu64
            " late ack(s) of redelivered records; "
            "%" PRIu64 " commit(s), %" PRIu64 " rebalance(s), %" PRIu64 " pause(s), %" PRIu64
            " redelivery(ies), %" PRIu64 " fetch nudge(s)",
            (uint64_t)atomic_load(&ks->n_consumed), (uint64_t)atomic_load(&ks->n_acked),
            (uint64_t)atomic_load(&ks->n_failed), (uint64_t)atomic_load(&ks->n_stale), ks->n_commits, ks->n_rebalances,
            ks->n_pauses, ks->n_redeliveries, nudges);
    rd_kafka_destroy(ks->rk);
    ks->rk = NULL;
}

static void ksrc_stop(ecf_stage *stage)
{
    kafka_source *ks = ecf_state(stage);
    if (ks)
        consumer_close(ks);
}

static void ksrc_destroy(ecf_stage *stage)
{
    kafka_source *ks = ecf_state(stage);
    if (!ks)
        return;
    consumer_close(ks); /* when start failed, or stop was skipped */
    if (ks->conf)
        rd_kafka_conf_destroy(ks->conf);
    book_free(ks->book);
    free(ks->headers);
    pthread_mutex_destroy(&ks->fail_lock);
    free(ks);
    ecf_set_state(stage, NULL);
}

ECF_PLUGIN_DEFINE(.name = "source-kafka", .kind = ECF_SOURCE, .version = "1.0.0",
                  .summary = "Consumes Kafka topics in a consumer group; commits only offsets every "
                             "sink acknowledged",
                  .config_size = sizeof(ksrc_config), .options = ksrc_options, .create = ksrc_create,
                  .start = ksrc_start, .run = ksrc_run, .stop = ksrc_stop, .destroy = ksrc_destroy, );
