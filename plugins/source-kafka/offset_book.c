/*
 * The offset book: per partition, the offsets emitted and not yet settled,
 * so the source commits only the contiguous acknowledged prefix.
 *
 * A slot is a run of records of one partition taken one after the other
 * into one batch, with one ack token for all of them (source_kafka.c: a
 * token per record cost ~100 bytes for every row a sink holds until its
 * commit). Its offsets are first..last as read (Kafka offsets may skip).
 *
 * A token's tag packs the partition's index in the book and the slot's
 * sequence number: (index << SEQ_BITS) | seq. Sequence numbers only grow, so
 * a window that was dropped (revoke) or rewound (redelivery) recognises the
 * late settles of its old slots and ignores them.
 */
#include "source_kafka.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEQ_BITS 44
#define SEQ_MASK ((UINT64_C(1) << SEQ_BITS) - 1)
#define MIN_SLOTS 1024

typedef struct {
    char *name;
    uint32_t *by_partition; /* index + 1, 0 = none */
    int32_t n_partitions;
} book_topic;

struct offset_book {
    pthread_mutex_t lock;
    pthread_cond_t settled;
    int waiters;
    book_part **parts; /* guarded by lock (grown by the run thread) */
    uint32_t n, cap;
    /* Run thread only. */
    book_topic *topics;
    uint32_t n_topics;
};

offset_book *book_new(void)
{
    offset_book *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    pthread_mutex_init(&b->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->settled, &ca);
    pthread_condattr_destroy(&ca);
    return b;
}

void book_free(offset_book *b)
{
    if (!b)
        return;
    for (uint32_t i = 0; i < b->n; i++) {
        free(b->parts[i]->slots);
        free(b->parts[i]);
    }
    for (uint32_t i = 0; i < b->n_topics; i++) {
        free(b->topics[i].name);
        free(b->topics[i].by_partition);
    }
    free(b->topics);
    free(b->parts);
    pthread_cond_destroy(&b->settled);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static book_topic *topic_find(offset_book *b, const char *topic)
{
    for (uint32_t i = 0; i < b->n_topics; i++)
        if (strcmp(b->topics[i].name, topic) == 0)
            return &b->topics[i];
    return NULL;
}

uint32_t book_find(offset_book *b, const char *topic, int32_t partition)
{
    book_topic *t = topic_find(b, topic);
    if (!t || partition < 0 || partition >= t->n_partitions || !t->by_partition[partition])
        return UINT32_MAX;
    return t->by_partition[partition] - 1;
}

uint32_t book_part_index(offset_book *b, const char *topic, int32_t partition)
{
    uint32_t idx = book_find(b, topic, partition);
    if (idx != UINT32_MAX)
        return idx;
    if (partition < 0 || b->n >= (UINT32_C(1) << (64 - SEQ_BITS)) - 1)
        return UINT32_MAX;

    book_topic *t = topic_find(b, topic);
    if (!t) {
        book_topic *nt = realloc(b->topics, (b->n_topics + 1) * sizeof *nt);
        if (!nt)
            return UINT32_MAX;
        b->topics = nt;
        t = &b->topics[b->n_topics++];
        memset(t, 0, sizeof *t);
        t->name = strdup(topic);
    }
    if (partition >= t->n_partitions) {
        int32_t n = partition + 1;
        uint32_t *bp = realloc(t->by_partition, (size_t)n * sizeof *bp);
        if (!bp)
            return UINT32_MAX;
        memset(bp + t->n_partitions, 0, (size_t)(n - t->n_partitions) * sizeof *bp);
        t->by_partition = bp;
        t->n_partitions = n;
    }

    book_part *p = calloc(1, sizeof *p);
    if (!p)
        return UINT32_MAX;
    p->topic = t->name;
    p->partition = partition;
    p->done = p->failed_at = p->expect = -1;
    p->committed = p->commit_sent = -1;

    pthread_mutex_lock(&b->lock);
    if (b->n == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 16;
        book_part **np = realloc(b->parts, cap * sizeof *np);
        if (!np) {
            pthread_mutex_unlock(&b->lock);
            free(p);
            return UINT32_MAX;
        }
        b->parts = np;
        b->cap = cap;
    }
    p->index = b->n;
    b->parts[b->n++] = p;
    pthread_mutex_unlock(&b->lock);
    t->by_partition[partition] = p->index + 1;
    return p->index;
}

/* The parts array only grows and its entries never move, but the array
 * itself may be reallocated: read it under the lock. */
book_part *book_get(offset_book *b, uint32_t index)
{
    pthread_mutex_lock(&b->lock);
    book_part *p = index < b->n ? b->parts[index] : NULL;
    pthread_mutex_unlock(&b->lock);
    return p;
}

uint32_t book_count(offset_book *b)
{
    pthread_mutex_lock(&b->lock);
    uint32_t n = b->n;
    pthread_mutex_unlock(&b->lock);
    return n;
}

/* Drops every slot: later settles of them find seq < head and are ignored. */
static void window_clear(offset_book *b, book_part *p)
{
    p->head = p->tail;
    p->inflight = 0;
    p->done = p->failed_at = p->expect = -1;
    if (b->waiters)
        pthread_cond_broadcast(&b->settled);
}

void book_assign(offset_book *b, uint32_t index)
{
    pthread_mutex_lock(&b->lock);
    book_part *p = b->parts[index];
    window_clear(b, p);
    p->assigned = true;
    pthread_mutex_unlock(&b->lock);
    p->committed = p->commit_sent = -1;
    p->retry_at_us = 0;
    p->retry_offset = -1;
    p->attempts = 0;
    p->held = false;
}

void book_release(offset_book *b, uint32_t index)
{
    pthread_mutex_lock(&b->lock);
    book_part *p = b->parts[index];
    window_clear(b, p);
    p->assigned = false;
    pthread_mutex_unlock(&b->lock);
    p->commit_sent = -1;
    p->retry_at_us = 0;
    p->held = false;
}

/* Called with the lock held: doubles the ring, keeping sequence order. */
static bool window_grow(book_part *p)
{
    uint64_t cap = p->cap ? p->cap * 2 : MIN_SLOTS;
    book_slot *slots = malloc(cap * sizeof *slots);
    if (!slots)
        return false;
    for (uint64_t s = p->head; s < p->tail; s++)
        slots[s & (cap - 1)] = p->slots[s & (p->cap - 1)];
    free(p->slots);
    p->slots = slots;
    p->cap = cap;
    return true;
}

/* Called with the lock held: moves the prefix past settled and stale slots. */
static void window_advance(book_part *p)
{
    uint64_t mask = p->cap - 1;
    while (p->head < p->tail) {
        const book_slot *sl = &p->slots[p->head & mask];
        uint8_t s = sl->state;
        if (s == SLOT_DONE)
            p->done = sl->last + 1;
        else if (s != SLOT_STALE)
            break;
        p->head++;
    }
}

static void window_push(book_part *p, int64_t offset, uint8_t state)
{
    p->slots[p->tail & (p->cap - 1)] = (book_slot){.first = offset, .last = offset, .records = 1, .state = state};
    p->tail++;
}

uint64_t book_track(offset_book *b, uint32_t index, int64_t offset)
{
    pthread_mutex_lock(&b->lock);
    book_part *p = b->parts[index];
    /* Two slots at most: the guard below and the message itself. */
    while (p->tail - p->head + 2 > p->cap) {
        if (!window_grow(p)) {
            pthread_mutex_unlock(&b->lock);
            return UINT64_MAX;
        }
    }
    if (p->expect >= 0) {
        /*
         * Redelivery must start at the rewound offset. If librdkafka went on
         * past it (a seek that did not take), block the commit there rather
         * than skip what was never made durable.
         */
        if (offset > p->expect)
            window_push(p, p->expect, SLOT_BLOCKED);
        p->expect = -1;
    }
    uint64_t seq = p->tail;
    window_push(p, offset, SLOT_INFLIGHT);
    p->inflight++;
    pthread_mutex_unlock(&b->lock);
    return ((uint64_t)index << SEQ_BITS) | (seq & SEQ_MASK);
}

/* The slot a tag names, if it is still in the window; called with the lock held. */
static book_slot *slot_of_tag(offset_book *b, uint64_t tag, book_part **part_out)
{
    uint32_t index = (uint32_t)(tag >> SEQ_BITS);
    if (index >= b->n)
        return NULL;
    book_part *p = b->parts[index];
    /* Reconstruct the full sequence number from its low bits (the window is
     * far smaller than 2^SEQ_BITS, so the nearest one at or below tail). */
    uint64_t seq = (p->tail & ~SEQ_MASK) | (tag & SEQ_MASK);
    if (seq >= p->tail && seq >= (UINT64_C(1) << SEQ_BITS))
        seq -= UINT64_C(1) << SEQ_BITS;
    if (seq < p->head || seq >= p->tail)
        return NULL;
    *part_out = p;
    return &p->slots[seq & (p->cap - 1)];
}

bool book_extend(offset_book *b, uint64_t tag, int64_t offset)
{
    pthread_mutex_lock(&b->lock);
    book_part *p = NULL;
    book_slot *sl = slot_of_tag(b, tag, &p);
    /* Only the newest slot, still in flight, and never across a rewind:
     * then the run's offsets stay contiguous in what was read. */
    bool ok = sl && sl == &p->slots[(p->tail - 1) & (p->cap - 1)] && sl->state == SLOT_INFLIGHT && p->expect < 0 &&
              offset > sl->last && sl->records < UINT32_MAX;
    if (ok) {
        sl->last = offset;
        sl->records++;
    }
    pthread_mutex_unlock(&b->lock);
    return ok;
}

settle_result book_settle(offset_book *b, uint64_t tag, ecf_status outcome, uint32_t *part_out, book_slot *slot_out)
{
    uint32_t index = (uint32_t)(tag >> SEQ_BITS);
    settle_result r = SETTLE_STALE;
    pthread_mutex_lock(&b->lock);
    book_part *p = NULL;
    book_slot *sl = slot_of_tag(b, tag, &p);
    if (!sl || sl->state != SLOT_INFLIGHT)
        goto out; /* gone, stale (rewound) or already blocked */
    p->inflight--;
    if (part_out)
        *part_out = index;
    if (slot_out)
        *slot_out = *sl;
    if (outcome == ECF_OK || outcome == ECF_ERR_DROPPED) {
        sl->state = SLOT_DONE;
        r = SETTLE_DONE;
        window_advance(p);
    } else {
        sl->state = SLOT_BLOCKED;
        if (outcome == ECF_ERR_STOPPED) {
            r = SETTLE_STOPPED;
        } else {
            r = SETTLE_FAILED;
            /* which record of the run failed is not known: all of it comes again */
            if (p->failed_at < 0 || sl->first < p->failed_at)
                p->failed_at = sl->first;
        }
    }
    if (p->inflight == 0 && b->waiters)
        pthread_cond_broadcast(&b->settled);
out:
    pthread_mutex_unlock(&b->lock);
    return r;
}

/* The in-flight slot whose run holds offset. Newest slots first: what is
 * abandoned was taken last. */
static int64_t slot_of(const book_part *p, int64_t offset, uint64_t *seq_out)
{
    for (uint64_t s = p->tail; s-- > p->head;) {
        const book_slot *sl = &p->slots[s & (p->cap - 1)];
        if (sl->first <= offset && offset <= sl->last && sl->state == SLOT_INFLIGHT) {
            *seq_out = s;
            return 1;
        }
        if (sl->last < offset)
            break;
    }
    return 0;
}

void book_block(offset_book *b, uint32_t index, int64_t offset)
{
    pthread_mutex_lock(&b->lock);
    book_part *p = b->parts[index];
    uint64_t seq;
    if (slot_of(p, offset, &seq)) {
        p->slots[seq & (p->cap - 1)].state = SLOT_BLOCKED;
        p->inflight--;
        if (p->inflight == 0 && b->waiters)
            pthread_cond_broadcast(&b->settled);
    }
    pthread_mutex_unlock(&b->lock);
}

int64_t book_rewind(offset_book *b, uint32_t index, int64_t offset)
{
    pthread_mutex_lock(&b->lock);
    book_part *p = b->parts[index];
    /* A rewind not yet redelivered keeps the lower point. */
    if (p->expect >= 0 && p->expect < offset)
        offset = p->expect;
    /* A run that straddles the point is read again whole: its slot goes
     * stale, and a stale slot's records must all come again. */
    for (uint64_t s = p->head; s < p->tail; s++) {
        const book_slot *sl = &p->slots[s & (p->cap - 1)];
        if (sl->state != SLOT_STALE && sl->first < offset && offset <= sl->last)
            offset = sl->first;
    }
    for (uint64_t s = p->head; s < p->tail; s++) {
        book_slot *sl = &p->slots[s & (p->cap - 1)];
        if (sl->last < offset || sl->state == SLOT_STALE)
            continue;
        if (sl->state == SLOT_INFLIGHT)
            p->inflight--;
        sl->state = SLOT_STALE;
    }
    p->failed_at = -1;
    p->expect = offset;
    window_advance(p);
    if (b->waiters)
        pthread_cond_broadcast(&b->settled);
    pthread_mutex_unlock(&b->lock);
    return offset;
}

int64_t book_done(offset_book *b, uint32_t index)
{
    pthread_mutex_lock(&b->lock);
    int64_t d = b->parts[index]->done;
    pthread_mutex_unlock(&b->lock);
    return d;
}

int64_t book_failed_at(offset_book *b, uint32_t index)
{
    pthread_mutex_lock(&b->lock);
    int64_t f = b->parts[index]->failed_at;
    pthread_mutex_unlock(&b->lock);
    return f;
}

int64_t book_inflight(offset_book *b, uint32_t index)
{
    pthread_mutex_lock(&b->lock);
    int64_t n = b->parts[index]->inflight;
    pthread_mutex_unlock(&b->lock);
    return n;
}

static int64_t inflight_of(offset_book *b, const uint32_t *idx, size_t n)
{
    int64_t left = 0;
    for (size_t i = 0; i < n; i++)
        left += b->parts[idx[i]]->inflight;
    return left;
}

int64_t book_wait_settled(offset_book *b, const uint32_t *idx, size_t n, int64_t timeout_us)
{
    int64_t deadline = kc_mono_us() + timeout_us;
    pthread_mutex_lock(&b->lock);
    int64_t left;
    b->waiters++;
    while ((left = inflight_of(b, idx, n)) > 0) {
        int64_t now = kc_mono_us();
        if (now >= deadline)
            break;
        int64_t until = now + (deadline - now < 100000 ? deadline - now : 100000);
        struct timespec ts = {.tv_sec = until / 1000000, .tv_nsec = (until % 1000000) * 1000};
        pthread_cond_timedwait(&b->settled, &b->lock, &ts);
    }
    b->waiters--;
    pthread_mutex_unlock(&b->lock);
    return left;
}
