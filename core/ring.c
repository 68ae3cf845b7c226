#include "ring.h"

#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>

#define CACHE_LINE 64
#define SPIN_TRIES 64

struct ecf_ring {
    alignas(CACHE_LINE) _Atomic guint32 prod_head;
    _Atomic guint32 prod_tail;
    alignas(CACHE_LINE) _Atomic guint32 cons_tail;
    alignas(CACHE_LINE) guint32 mask;
    guint32 capacity;
    void **slots;

    _Atomic gint open_producers;
    _Atomic gboolean aborted;
    _Atomic gint prod_sleepers;
    _Atomic gint cons_sleepers;
    GMutex lock;
    GCond not_full;
    GCond not_empty;
};

static guint32 round_up_pow2(guint32 v)
{
    guint32 p = 2;
    while (p < v)
        p <<= 1;
    return p;
}

ecf_ring *ecf_ring_new(guint32 capacity, guint producers)
{
    ecf_ring *r = g_aligned_alloc0(1, sizeof *r, CACHE_LINE);
    r->capacity = round_up_pow2(capacity);
    r->mask = r->capacity - 1;
    r->slots = g_new0(void *, r->capacity);
    atomic_init(&r->open_producers, (gint)producers);
    g_mutex_init(&r->lock);
    g_cond_init(&r->not_full);
    g_cond_init(&r->not_empty);
    return r;
}

void ecf_ring_free(ecf_ring *r)
{
    if (!r)
        return;
    g_mutex_clear(&r->lock);
    g_cond_clear(&r->not_full);
    g_cond_clear(&r->not_empty);
    g_free(r->slots);
    g_aligned_free(r);
}

guint32 ecf_ring_capacity(const ecf_ring *r) { return r->capacity; }

guint32 ecf_ring_count(const ecf_ring *r)
{
    guint32 tail = atomic_load_explicit(&((ecf_ring *)r)->prod_tail, memory_order_acquire);
    guint32 head = atomic_load_explicit(&((ecf_ring *)r)->cons_tail, memory_order_acquire);
    return tail - head;
}

/* Wake the other side only if somebody sleeps there; the fence orders our
 * index update before reading the sleeper count (store-load). */
static void wake(ecf_ring *r, _Atomic gint *sleepers, GCond *cond)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(sleepers, memory_order_relaxed) == 0)
        return;
    g_mutex_lock(&r->lock);
    g_cond_broadcast(cond);
    g_mutex_unlock(&r->lock);
}

ecf_ring_result ecf_ring_try_push(ecf_ring *r, void *item)
{
    if (atomic_load_explicit(&r->aborted, memory_order_acquire))
        return ECF_RING_ABORTED;
    guint32 head = atomic_load_explicit(&r->prod_head, memory_order_relaxed);
    guint32 next;
    do {
        guint32 tail = atomic_load_explicit(&r->cons_tail, memory_order_acquire);
        if (head - tail >= r->capacity)
            return ECF_RING_FULL;
        next = head + 1;
    } while (!atomic_compare_exchange_weak_explicit(&r->prod_head, &head, next,
                                                    memory_order_acq_rel,
                                                    memory_order_relaxed));
    r->slots[head & r->mask] = item;
    /* Producers that reserved earlier slots publish first. */
    while (atomic_load_explicit(&r->prod_tail, memory_order_relaxed) != head)
        sched_yield();
    atomic_store_explicit(&r->prod_tail, next, memory_order_release);
    wake(r, &r->cons_sleepers, &r->not_empty);
    return ECF_RING_OK;
}

ecf_ring_result ecf_ring_push(ecf_ring *r, void *item)
{
    for (int i = 0; i < SPIN_TRIES; i++) {
        ecf_ring_result res = ecf_ring_try_push(r, item);
        if (res != ECF_RING_FULL)
            return res;
        sched_yield();
    }
    g_mutex_lock(&r->lock);
    atomic_fetch_add(&r->prod_sleepers, 1);
    ecf_ring_result res;
    while ((res = ecf_ring_try_push(r, item)) == ECF_RING_FULL) {
        /* The timeout is only a safety net; wake() is the real signal. */
        g_cond_wait_until(&r->not_full, &r->lock, g_get_monotonic_time() + 50 * 1000);
    }
    atomic_fetch_sub(&r->prod_sleepers, 1);
    g_mutex_unlock(&r->lock);
    return res;
}

static gboolean try_pop(ecf_ring *r, void **item)
{
    guint32 head = atomic_load_explicit(&r->cons_tail, memory_order_relaxed);
    guint32 tail = atomic_load_explicit(&r->prod_tail, memory_order_acquire);
    if (head == tail)
        return FALSE;
    *item = r->slots[head & r->mask];
    atomic_store_explicit(&r->cons_tail, head + 1, memory_order_release);
    wake(r, &r->prod_sleepers, &r->not_full);
    return TRUE;
}

static gboolean finished(ecf_ring *r)
{
    return atomic_load_explicit(&r->open_producers, memory_order_acquire) <= 0;
}

ecf_ring_result ecf_ring_pop(ecf_ring *r, void **item, gint64 timeout_us)
{
    for (int i = 0; i < SPIN_TRIES; i++) {
        if (try_pop(r, item))
            return ECF_RING_OK;
        if (finished(r) && ecf_ring_count(r) == 0)
            return try_pop(r, item) ? ECF_RING_OK : ECF_RING_FINISHED;
        if (timeout_us == 0)
            return ECF_RING_TIMEOUT;
        sched_yield();
    }
    gint64 deadline = timeout_us < 0 ? G_MAXINT64 : g_get_monotonic_time() + timeout_us;
    ecf_ring_result res = ECF_RING_TIMEOUT;
    g_mutex_lock(&r->lock);
    atomic_fetch_add(&r->cons_sleepers, 1);
    for (;;) {
        if (try_pop(r, item)) {
            res = ECF_RING_OK;
            break;
        }
        if (finished(r)) {
            res = try_pop(r, item) ? ECF_RING_OK : ECF_RING_FINISHED;
            break;
        }
        gint64 now = g_get_monotonic_time();
        if (now >= deadline)
            break;
        g_cond_wait_until(&r->not_empty, &r->lock, MIN(deadline, now + 50 * 1000));
    }
    atomic_fetch_sub(&r->cons_sleepers, 1);
    g_mutex_unlock(&r->lock);
    return res;
}

void ecf_ring_producer_done(ecf_ring *r)
{
    atomic_fetch_sub_explicit(&r->open_producers, 1, memory_order_acq_rel);
    g_mutex_lock(&r->lock);
    g_cond_broadcast(&r->not_empty);
    g_mutex_unlock(&r->lock);
}

void ecf_ring_abort(ecf_ring *r)
{
    atomic_store_explicit(&r->aborted, TRUE, memory_order_release);
    g_mutex_lock(&r->lock);
    g_cond_broadcast(&r->not_full);
    g_mutex_unlock(&r->lock);
}
