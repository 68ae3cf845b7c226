#include "ring.h"
#include "sync.h"

#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>

#define CACHE_LINE 64
#define SPIN_TRIES 64
/* A consumer yields only a few times before it sleeps: with two cores and
 * sources that emit thousands of small batches a second, 64 yields per
 * empty ring burned a fifth of a core in sched_yield (bench/ingest --perf). */
#define POP_SPIN_TRIES 4

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
    ecf_mutex lock;
    ecf_cond not_full;
    ecf_cond not_empty;
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
    ecf_mutex_init(&r->lock);
    ecf_cond_init(&r->not_full);
    ecf_cond_init(&r->not_empty);
    return r;
}

void ecf_ring_free(ecf_ring *r)
{
    if (!r)
        return;
    ecf_mutex_clear(&r->lock);
    ecf_cond_clear(&r->not_full);
    ecf_cond_clear(&r->not_empty);
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
static void wake(ecf_ring *r, _Atomic gint *sleepers, ecf_cond *cond)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(sleepers, memory_order_relaxed) == 0)
        return;
    ecf_mutex_lock(&r->lock);
    ecf_cond_broadcast(cond);
    ecf_mutex_unlock(&r->lock);
}

/* Publishes one item; the caller wakes the consumer (see push_locked). */
static ecf_ring_result push_nowake(ecf_ring *r, void *item)
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
    } while (
        !atomic_compare_exchange_weak_explicit(&r->prod_head, &head, next, memory_order_acq_rel, memory_order_relaxed));
    r->slots[head & r->mask] = item;
    /* Producers that reserved earlier slots publish first. Acquire makes
     * their slot writes part of what our release below publishes. */
    while (atomic_load_explicit(&r->prod_tail, memory_order_acquire) != head)
        sched_yield();
    atomic_store_explicit(&r->prod_tail, next, memory_order_release);
    return ECF_RING_OK;
}

ecf_ring_result ecf_ring_try_push(ecf_ring *r, void *item)
{
    ecf_ring_result res = push_nowake(r, item);
    if (res == ECF_RING_OK)
        wake(r, &r->cons_sleepers, &r->not_empty);
    return res;
}

/* With r->lock held: the mutex is not recursive, so signal directly. */
static void signal_locked(ecf_ring *r, _Atomic gint *sleepers, ecf_cond *cond)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(sleepers, memory_order_relaxed) > 0)
        ecf_cond_broadcast(cond);
}

ecf_ring_result ecf_ring_push(ecf_ring *r, void *item)
{
    for (int i = 0; i < SPIN_TRIES; i++) {
        ecf_ring_result res = ecf_ring_try_push(r, item);
        if (res != ECF_RING_FULL)
            return res;
        sched_yield();
    }
    ecf_mutex_lock(&r->lock);
    atomic_fetch_add(&r->prod_sleepers, 1);
    ecf_ring_result res;
    while ((res = push_nowake(r, item)) == ECF_RING_FULL) {
        /* The timeout is only a safety net; wake() is the real signal. */
        ecf_cond_wait_until(&r->not_full, &r->lock, g_get_monotonic_time() + 50 * 1000);
    }
    if (res == ECF_RING_OK)
        signal_locked(r, &r->cons_sleepers, &r->not_empty);
    atomic_fetch_sub(&r->prod_sleepers, 1);
    ecf_mutex_unlock(&r->lock);
    return res;
}

static gboolean pop_nowake(ecf_ring *r, void **item)
{
    guint32 head = atomic_load_explicit(&r->cons_tail, memory_order_relaxed);
    guint32 tail = atomic_load_explicit(&r->prod_tail, memory_order_acquire);
    if (head == tail)
        return FALSE;
    *item = r->slots[head & r->mask];
    atomic_store_explicit(&r->cons_tail, head + 1, memory_order_release);
    return TRUE;
}

static gboolean try_pop(ecf_ring *r, void **item)
{
    if (!pop_nowake(r, item))
        return FALSE;
    wake(r, &r->prod_sleepers, &r->not_full);
    return TRUE;
}

static gboolean pop_locked(ecf_ring *r, void **item)
{
    if (!pop_nowake(r, item))
        return FALSE;
    signal_locked(r, &r->prod_sleepers, &r->not_full);
    return TRUE;
}

static gboolean finished(ecf_ring *r) { return atomic_load_explicit(&r->open_producers, memory_order_acquire) <= 0; }

ecf_ring_result ecf_ring_pop(ecf_ring *r, void **item, gint64 timeout_us)
{
    for (int i = 0; i < POP_SPIN_TRIES; i++) {
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
    ecf_mutex_lock(&r->lock);
    atomic_fetch_add(&r->cons_sleepers, 1);
    for (;;) {
        if (pop_locked(r, item)) {
            res = ECF_RING_OK;
            break;
        }
        if (finished(r)) {
            res = pop_locked(r, item) ? ECF_RING_OK : ECF_RING_FINISHED;
            break;
        }
        gint64 now = g_get_monotonic_time();
        if (now >= deadline)
            break;
        ecf_cond_wait_until(&r->not_empty, &r->lock, MIN(deadline, now + 50 * 1000));
    }
    atomic_fetch_sub(&r->cons_sleepers, 1);
    ecf_mutex_unlock(&r->lock);
    return res;
}

void ecf_ring_producer_done(ecf_ring *r)
{
    atomic_fetch_sub_explicit(&r->open_producers, 1, memory_order_acq_rel);
    ecf_mutex_lock(&r->lock);
    ecf_cond_broadcast(&r->not_empty);
    ecf_mutex_unlock(&r->lock);
}

void ecf_ring_abort(ecf_ring *r)
{
    atomic_store_explicit(&r->aborted, TRUE, memory_order_release);
    ecf_mutex_lock(&r->lock);
    ecf_cond_broadcast(&r->not_full);
    ecf_mutex_unlock(&r->lock);
}
