/*
 * Waking librdkafka's fetcher after its prefetch queue was full.
 *
 * librdkafka 2.0 (Debian 12's) stops fetching while the consumer queue holds
 * queued.max.messages.kbytes (our prefetch_max_bytes), and decides again
 * only when the broker thread wakes: on a network event, on an operation
 * queued to it, or after up to a second (2.1 added fetch.queue.backoff.ms
 * for this). During a catch-up the pipeline drains a small prefetch in a
 * fraction of that second and then waits for the rest of it: the lake leg
 * ran at 70k rows/s with an 8 MiB prefetch against 160k with 32 MiB, and
 * Kafka -> sink-null at 55k with 4 MiB against 420k (bench/lake, 1M events).
 * So the prefetch had to be large to be fast, and memory paid for it.
 *
 * Instead: when the queue has been near full and drops below half, a thread
 * of ours asks the assigned partitions' leaders for their end offsets. That
 * request is an operation on each leader's broker thread, which wakes it; it
 * finds the queue below the bound and fetches at once. One small request per
 * refill, only while the pipeline is behind; none when it keeps up (the
 * queue never fills then).
 */
#include "source_kafka.h"

#include <stdlib.h>

#define NUDGE_TIMEOUT_MS 5000

struct fetch_nudge {
    rd_kafka_t *rk;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool wanted, quit;
    /* Run thread only. */
    rd_kafka_queue_t *queue; /* the consumer queue, to read its length */
    int64_t bound;           /* prefetch_max_bytes                     */
    bool was_full;
    uint64_t sent;
};

/* Asks every assigned partition's leader for its end offset; the answers
 * do not matter, the asking wakes the fetchers. */
static void nudge_once(rd_kafka_t *rk)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || !parts)
        return;
    for (int i = 0; i < parts->cnt; i++)
        parts->elems[i].offset = RD_KAFKA_OFFSET_END; /* "the latest" as a timestamp */
    if (parts->cnt > 0)
        rd_kafka_offsets_for_times(rk, parts, NUDGE_TIMEOUT_MS);
    rd_kafka_topic_partition_list_destroy(parts);
}

static void *nudge_main(void *arg)
{
    fetch_nudge *n = arg;
    pthread_mutex_lock(&n->lock);
    for (;;) {
        while (!n->wanted && !n->quit)
            pthread_cond_wait(&n->cond, &n->lock);
        if (n->quit)
            break;
        n->wanted = false;
        pthread_mutex_unlock(&n->lock);
        nudge_once(n->rk);
        pthread_mutex_lock(&n->lock);
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

fetch_nudge *nudge_start(rd_kafka_t *rk, int64_t prefetch_bytes)
{
    fetch_nudge *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->rk = rk;
    n->bound = prefetch_bytes;
    n->queue = rd_kafka_queue_get_consumer(rk);
    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->cond, NULL);
    if (!n->queue || pthread_create(&n->thread, NULL, nudge_main, n) != 0) {
        if (n->queue)
            rd_kafka_queue_destroy(n->queue);
        pthread_mutex_destroy(&n->lock);
        pthread_cond_destroy(&n->cond);
        free(n);
        return NULL;
    }
    return n;
}

void nudge_stop(fetch_nudge *n)
{
    if (!n)
        return;
    pthread_mutex_lock(&n->lock);
    n->quit = true;
    pthread_cond_signal(&n->cond);
    pthread_mutex_unlock(&n->lock);
    pthread_join(n->thread, NULL);
    rd_kafka_queue_destroy(n->queue);
    pthread_mutex_destroy(&n->lock);
    pthread_cond_destroy(&n->cond);
    free(n);
}

bool nudge_observe(fetch_nudge *n, double avg_record_bytes)
{
    if (!n)
        return false;
    /* librdkafka counts payload bytes against the bound; the queue's
     * length times the average payload is near enough for "full" (3/4)
     * and "half empty". */
    double queued = (double)rd_kafka_queue_length(n->queue) * avg_record_bytes;
    if (queued >= 0.75 * (double)n->bound) {
        n->was_full = true;
        return false;
    }
    if (!n->was_full || queued > 0.5 * (double)n->bound)
        return false;
    n->was_full = false;
    n->sent++;
    pthread_mutex_lock(&n->lock);
    n->wanted = true;
    pthread_cond_signal(&n->cond);
    pthread_mutex_unlock(&n->lock);
    return true;
}

uint64_t nudge_count(const fetch_nudge *n) { return n ? n->sent : 0; }
