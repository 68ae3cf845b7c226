#include "ack.h"

#include "clock.h"
#include "metrics.h"
#include "sync.h"

#include <stdatomic.h>

#define SLAB_TOKENS 512
#define CACHE_MAX 256  /* tokens a thread keeps before giving some back */
#define CACHE_MOVE 128 /* tokens moved per trip to the shared free list */
/* One token in LATENCY_SAMPLE has its ack latency measured: two clock reads
 * per event were ~5 % of the ingest path's CPU (bench/ingest --perf). */
#define LATENCY_SAMPLE 16

struct ecf_token {
    _Atomic gint refs;
    _Atomic gint failure; /* 0 or the first failing ecf_status */
    _Atomic gboolean durable;
    char *_Atomic reason;
    ecf_settle_fn fn;
    void *user;
    guint64 tag;
    gint64 born_us;
    ecf_metric *latency;
    ecf_ack_pool *pool;
    ecf_token *next_free;
};

struct ecf_ack_pool {
    ecf_mutex lock;
    ecf_cond idle;
    ecf_token *free_list;
    GPtrArray *slabs;
    _Atomic gint64 outstanding;
    guint64 generation;
};

/*
 * Tokens are created on a source's threads and freed on a sink's, once per
 * event: a mutex per token costs ~130 ns across two threads. So each thread
 * keeps a small cache for one pool and visits the shared list once per
 * CACHE_MOVE tokens. The cache names its pool by a generation number that
 * no later pool reuses, so a cache left over from a freed pool is simply
 * forgotten (its tokens live in that pool's freed slabs) and never touched.
 */
typedef struct {
    guint64 generation;
    ecf_token *head;
    guint count;
    guint made; /* tokens made by this thread, for latency sampling */
} token_cache;

static _Atomic guint64 next_generation = 1;
static __thread token_cache cache;

static gboolean cache_is_for(const ecf_ack_pool *pool) { return cache.generation == pool->generation; }

static void cache_adopt(ecf_ack_pool *pool)
{
    cache.generation = pool->generation;
    cache.head = NULL;
    cache.count = 0;
}

ecf_ack_pool *ecf_ack_pool_new(void)
{
    ecf_ack_pool *pool = g_new0(ecf_ack_pool, 1);
    ecf_mutex_init(&pool->lock);
    ecf_cond_init(&pool->idle);
    pool->slabs = g_ptr_array_new_with_free_func(g_free);
    pool->generation = atomic_fetch_add(&next_generation, 1);
    return pool;
}

void ecf_ack_pool_free(ecf_ack_pool *pool)
{
    if (!pool)
        return;
    g_ptr_array_free(pool->slabs, TRUE);
    ecf_mutex_clear(&pool->lock);
    ecf_cond_clear(&pool->idle);
    g_free(pool);
}

gint64 ecf_ack_pool_outstanding(ecf_ack_pool *pool) { return atomic_load(&pool->outstanding); }

gboolean ecf_ack_pool_wait_idle(ecf_ack_pool *pool, gint64 deadline_us)
{
    ecf_mutex_lock(&pool->lock);
    while (atomic_load(&pool->outstanding) > 0) {
        if (!ecf_cond_wait_until(&pool->idle, &pool->lock, deadline_us))
            break;
    }
    gboolean idle = atomic_load(&pool->outstanding) == 0;
    ecf_mutex_unlock(&pool->lock);
    return idle;
}

/* Called with the lock held; a slab per SLAB_TOKENS tokens, never per token. */
static void grow(ecf_ack_pool *pool)
{
    ecf_token *slab = g_new0(ecf_token, SLAB_TOKENS);
    g_ptr_array_add(pool->slabs, slab);
    for (guint i = 0; i < SLAB_TOKENS; i++) {
        slab[i].next_free = pool->free_list;
        pool->free_list = &slab[i];
    }
}

/* Moves up to CACHE_MOVE tokens from the shared list into this thread's. */
static void refill(ecf_ack_pool *pool)
{
    ecf_mutex_lock(&pool->lock);
    for (guint i = 0; i < CACHE_MOVE; i++) {
        if (!pool->free_list)
            grow(pool);
        ecf_token *t = pool->free_list;
        pool->free_list = t->next_free;
        t->next_free = cache.head;
        cache.head = t;
        cache.count++;
    }
    ecf_mutex_unlock(&pool->lock);
}

/* Gives CACHE_MOVE tokens of this thread's back to the shared list. */
static void spill(ecf_ack_pool *pool)
{
    ecf_mutex_lock(&pool->lock);
    for (guint i = 0; i < CACHE_MOVE && cache.head; i++) {
        ecf_token *t = cache.head;
        cache.head = t->next_free;
        cache.count--;
        t->next_free = pool->free_list;
        pool->free_list = t;
    }
    ecf_mutex_unlock(&pool->lock);
}

static void recycle(ecf_ack_pool *pool, ecf_token *t)
{
    if (cache_is_for(pool)) {
        t->next_free = cache.head;
        cache.head = t;
        if (++cache.count > CACHE_MAX)
            spill(pool);
        return;
    }
    ecf_mutex_lock(&pool->lock);
    t->next_free = pool->free_list;
    pool->free_list = t;
    ecf_mutex_unlock(&pool->lock);
}

ecf_token *ecf_token_create(ecf_ack_pool *pool, ecf_settle_fn fn, void *user, guint64 tag, ecf_metric *latency)
{
    if (!cache_is_for(pool))
        cache_adopt(pool);
    if (!cache.head)
        refill(pool);
    ecf_token *t = cache.head;
    cache.head = t->next_free;
    cache.count--;

    atomic_store_explicit(&t->refs, 1, memory_order_relaxed);
    atomic_store_explicit(&t->failure, 0, memory_order_relaxed);
    atomic_store_explicit(&t->durable, FALSE, memory_order_relaxed);
    atomic_store_explicit(&t->reason, NULL, memory_order_relaxed);
    t->fn = fn;
    t->user = user;
    t->tag = tag;
    t->latency = latency;
    t->born_us = latency && cache.made++ % LATENCY_SAMPLE == 0 ? ecf_clock_monotonic_us() : 0;
    t->pool = pool;
    t->next_free = NULL;
    atomic_fetch_add(&pool->outstanding, 1);
    return t;
}

void ecf_token_ref(ecf_token *t) { atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed); }

static void record_verdict(ecf_token *t, int verdict, const char *reason)
{
    if (verdict == ECF_VERDICT_NONE)
        return;
    if (verdict == ECF_OK) {
        atomic_store_explicit(&t->durable, TRUE, memory_order_relaxed);
        return;
    }
    gint expected = 0;
    if (atomic_compare_exchange_strong(&t->failure, &expected, verdict))
        atomic_store(&t->reason, g_strdup(reason ? reason : ecf_status_str(verdict)));
}

static void settle(ecf_token *t)
{
    ecf_ack_pool *pool = t->pool;
    gint failure = atomic_load(&t->failure);
    ecf_status outcome = failure ? (ecf_status)failure : atomic_load(&t->durable) ? ECF_OK : ECF_ERR_DROPPED;
    char *reason = atomic_load(&t->reason);
    if (t->latency && t->born_us)
        ecf_metric_do_observe(t->latency, (ecf_clock_monotonic_us() - t->born_us) / 1e6);
    if (t->fn)
        t->fn(t->user, t->tag, outcome,
              reason                       ? reason
              : outcome == ECF_ERR_DROPPED ? "no sink took the message"
                                           : NULL);
    g_free(reason);

    recycle(pool, t);
    /* The last settle wakes a drain waiting in ecf_ack_pool_wait_idle. */
    if (atomic_fetch_sub(&pool->outstanding, 1) == 1) {
        ecf_mutex_lock(&pool->lock);
        ecf_cond_broadcast(&pool->idle);
        ecf_mutex_unlock(&pool->lock);
    }
}

void ecf_token_unref(ecf_token *t, int verdict, const char *reason)
{
    record_verdict(t, verdict, reason);
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        settle(t);
}
