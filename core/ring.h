/*
 * Bounded ring of pointers between stages: many producers, one consumer.
 *
 * Power-of-two capacity, head and tail on their own cache lines, C11
 * acquire/release atomics and no lock on the fast path (DPDK rte_ring's
 * multi-producer scheme). A full ring makes the producer wait — a short spin,
 * then a condition variable — it never drops. The lock is only taken by a
 * side that has to sleep, and by the other side when it sees a sleeper.
 */
#pragma once
#include <glib.h>
#include <stdint.h>

typedef struct ecf_ring ecf_ring;

typedef enum {
    ECF_RING_OK,
    ECF_RING_TIMEOUT,  /* pop: nothing arrived in time               */
    ECF_RING_FINISHED, /* pop: empty and every producer is done       */
    ECF_RING_ABORTED,  /* push: the consumer is gone                  */
    ECF_RING_FULL,     /* try_push: no room now                       */
} ecf_ring_result;

/* capacity is rounded up to a power of two. */
ecf_ring *ecf_ring_new(guint32 capacity, guint producers);
void ecf_ring_free(ecf_ring *r);

guint32 ecf_ring_capacity(const ecf_ring *r);
guint32 ecf_ring_count(const ecf_ring *r);

ecf_ring_result ecf_ring_try_push(ecf_ring *r, void *item);
/* Blocks while full; returns OK or ABORTED. */
ecf_ring_result ecf_ring_push(ecf_ring *r, void *item);
/* Waits up to timeout_us (< 0: forever) for one item. */
ecf_ring_result ecf_ring_pop(ecf_ring *r, void **item, gint64 timeout_us);

/* One producer says it will push no more; the last one ends the stream. */
void ecf_ring_producer_done(ecf_ring *r);
/* The consumer is gone: wake and refuse every producer. */
void ecf_ring_abort(ecf_ring *r);
