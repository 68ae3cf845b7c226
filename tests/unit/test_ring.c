#include "ring.h"

#include <stdatomic.h>

static void test_capacity_rounds_up(void)
{
    ecf_ring *r = ecf_ring_new(5, 1);
    g_assert_cmpuint(ecf_ring_capacity(r), ==, 8);
    ecf_ring_free(r);
}

static void test_fifo_order(void)
{
    ecf_ring *r = ecf_ring_new(4, 1);
    for (guintptr i = 1; i <= 4; i++)
        g_assert_cmpint(ecf_ring_try_push(r, (void *)i), ==, ECF_RING_OK);
    g_assert_cmpint(ecf_ring_try_push(r, (void *)5), ==, ECF_RING_FULL);
    for (guintptr i = 1; i <= 4; i++) {
        void *item = NULL;
        g_assert_cmpint(ecf_ring_pop(r, &item, 0), ==, ECF_RING_OK);
        g_assert_cmpuint((guintptr)item, ==, i);
    }
    void *item;
    g_assert_cmpint(ecf_ring_pop(r, &item, 0), ==, ECF_RING_TIMEOUT);
    ecf_ring_free(r);
}

typedef struct {
    ecf_ring *ring;
    _Atomic gboolean pushed;
} blocked_push;

static gpointer push_third(gpointer data)
{
    blocked_push *bp = data;
    g_assert_cmpint(ecf_ring_push(bp->ring, (void *)3), ==, ECF_RING_OK);
    atomic_store(&bp->pushed, TRUE);
    return NULL;
}

static void test_full_ring_blocks_producer(void)
{
    blocked_push bp = {ecf_ring_new(2, 1), FALSE};
    ecf_ring_push(bp.ring, (void *)1);
    ecf_ring_push(bp.ring, (void *)2);
    GThread *t = g_thread_new("producer", push_third, &bp);
    /* Whatever the scheduling, the third push cannot complete: no room. */
    g_assert_cmpuint(ecf_ring_count(bp.ring), ==, 2);
    g_assert_false(atomic_load(&bp.pushed));
    void *item;
    g_assert_cmpint(ecf_ring_pop(bp.ring, &item, -1), ==, ECF_RING_OK);
    g_assert_cmpuint((guintptr)item, ==, 1);
    g_thread_join(t);
    g_assert_true(atomic_load(&bp.pushed));
    g_assert_cmpint(ecf_ring_pop(bp.ring, &item, -1), ==, ECF_RING_OK);
    g_assert_cmpuint((guintptr)item, ==, 2);
    g_assert_cmpint(ecf_ring_pop(bp.ring, &item, -1), ==, ECF_RING_OK);
    g_assert_cmpuint((guintptr)item, ==, 3);
    ecf_ring_free(bp.ring);
}

#define PRODUCERS 4
#define PER_PRODUCER 50000

typedef struct {
    ecf_ring *ring;
    guintptr id;
} producer_arg;

static gpointer producer(gpointer data)
{
    producer_arg *a = data;
    for (guintptr i = 0; i < PER_PRODUCER; i++)
        g_assert_cmpint(ecf_ring_push(a->ring, (void *)((a->id << 32) | (i + 1))), ==, ECF_RING_OK);
    ecf_ring_producer_done(a->ring);
    return NULL;
}

static void test_contention_loses_nothing(void)
{
    /* A tiny ring so producers block and wake constantly. */
    ecf_ring *r = ecf_ring_new(4, PRODUCERS);
    producer_arg args[PRODUCERS];
    GThread *threads[PRODUCERS];
    for (guint p = 0; p < PRODUCERS; p++) {
        args[p] = (producer_arg){r, p};
        threads[p] = g_thread_new("producer", producer, &args[p]);
    }
    guint64 last[PRODUCERS] = {0};
    guint64 received = 0;
    void *item;
    ecf_ring_result res;
    while ((res = ecf_ring_pop(r, &item, -1)) == ECF_RING_OK) {
        guintptr v = (guintptr)item;
        guint p = (guint)(v >> 32);
        guint64 seq = v & 0xFFFFFFFF;
        g_assert_cmpuint(p, <, PRODUCERS);
        /* Each producer's items arrive in its own order, none twice. */
        g_assert_cmpuint(seq, ==, last[p] + 1);
        last[p] = seq;
        received++;
    }
    g_assert_cmpint(res, ==, ECF_RING_FINISHED);
    g_assert_cmpuint(received, ==, (guint64)PRODUCERS * PER_PRODUCER);
    for (guint p = 0; p < PRODUCERS; p++)
        g_thread_join(threads[p]);
    ecf_ring_free(r);
}

static void test_finishes_when_all_producers_done(void)
{
    ecf_ring *r = ecf_ring_new(4, 2);
    ecf_ring_push(r, (void *)1);
    ecf_ring_producer_done(r);
    void *item;
    g_assert_cmpint(ecf_ring_pop(r, &item, 0), ==, ECF_RING_OK);
    g_assert_cmpint(ecf_ring_pop(r, &item, 0), ==, ECF_RING_TIMEOUT); /* one producer left */
    ecf_ring_producer_done(r);
    g_assert_cmpint(ecf_ring_pop(r, &item, -1), ==, ECF_RING_FINISHED);
    ecf_ring_free(r);
}

static gpointer push_until_refused(gpointer data)
{
    ecf_ring *r = data;
    ecf_ring_result res;
    guintptr i = 1;
    while ((res = ecf_ring_push(r, (void *)i++)) == ECF_RING_OK)
        ;
    return GINT_TO_POINTER(res);
}

static void test_abort_wakes_blocked_producer(void)
{
    ecf_ring *r = ecf_ring_new(2, 1);
    GThread *t = g_thread_new("producer", push_until_refused, r);
    ecf_ring_abort(r);
    g_assert_cmpint(GPOINTER_TO_INT(g_thread_join(t)), ==, ECF_RING_ABORTED);
    ecf_ring_free(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/ring/capacity-rounds-up-to-a-power-of-two", test_capacity_rounds_up);
    g_test_add_func("/ring/keeps-fifo-order-and-refuses-when-full", test_fifo_order);
    g_test_add_func("/ring/full-ring-blocks-producer", test_full_ring_blocks_producer);
    g_test_add_func("/ring/many-producers-under-contention-lose-nothing", test_contention_loses_nothing);
    g_test_add_func("/ring/finishes-when-every-producer-is-done", test_finishes_when_all_producers_done);
    g_test_add_func("/ring/abort-wakes-a-blocked-producer", test_abort_wakes_blocked_producer);
    return g_test_run();
}
