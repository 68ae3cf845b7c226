/*
 * The outbox: small requests share batches.
 *
 * One batch per request would make a one-event POST cost a whole batch
 * hand-off downstream (a ring slot, a consumer wake-up, a produce call of
 * its own), and 64 such requests fill a 64-batch ring: the source answered
 * 503 while Kafka was idle. So requests put their events in one open batch,
 * and one thread at a time emits it (group commit): the request that finds
 * no emitter at work emits the batch itself, from its HTTP worker, and
 * whatever arrives meanwhile waits in the next open batch, which that
 * emitter takes on its way out. Handing every batch to the stage thread
 * instead cost a futex wake-up and a thread switch per batch, as much CPU
 * as the rest of the request (bench/results/ingest-*.md).
 *
 * An HTTP worker must never wait for room downstream: the batch it could
 * not emit goes to the stage thread (outbox_take), which retries it and
 * gives up after a while. Memory stays bounded: past `cap` events in the
 * open batch while downstream has no room (or far past it in any case),
 * requests are turned away (503).
 */
#include "source_http.h"

/* Open-batch size, in batches of `cap`, past which requests are turned
 * away even while the emitter still finds room downstream. */
#define OUTBOX_HARD_CAP 8
/* Batches one request's worker emits for others before it hands the rest
 * to the stage thread: its own connections wait meanwhile. */
#define LEADER_ROUNDS 4

void outbox_init(http_outbox *o, ecf_stage *stage, uint32_t cap)
{
    g_mutex_init(&o->lock);
    g_cond_init(&o->wake);
    o->stage = stage;
    o->cap = MAX(cap, 1);
}

void outbox_clear(http_outbox *o)
{
    if (o->open)
        ecf_batch_release(o->stage, o->open);
    if (o->handed)
        ecf_batch_release(o->stage, o->handed);
    o->open = o->handed = NULL;
    g_mutex_clear(&o->lock);
    g_cond_clear(&o->wake);
}

ecf_status outbox_put_begin(http_outbox *o)
{
    g_mutex_lock(&o->lock);
    /* Full only while downstream has no room: a busy emitter comes back
     * for the batch within microseconds. */
    bool full = o->count >= o->cap && (o->taker_blocked || o->count >= OUTBOX_HARD_CAP * o->cap);
    ecf_status st = o->closed ? ECF_ERR_STOPPED : full ? ECF_ERR_BACKPRESSURE : ECF_OK;
    if (st == ECF_OK && !o->open) {
        o->open = ecf_batch_new(o->stage);
        o->opened_us = ecf_monotonic_us(o->stage);
        if (!o->open)
            st = ECF_ERR_NOMEM;
    }
    if (st != ECF_OK)
        g_mutex_unlock(&o->lock);
    return st;
}

ecf_status outbox_put(http_outbox *o, const ecf_message_init *m)
{
    ecf_status st = ecf_batch_add(o->stage, o->open, m);
    if (st == ECF_OK)
        o->count++;
    return st;
}

void outbox_set_blocked(http_outbox *o, bool blocked)
{
    g_mutex_lock(&o->lock);
    o->taker_blocked = blocked;
    g_mutex_unlock(&o->lock);
}

/* The open batch if it has events; an empty one stays for reuse. */
static ecf_batch *steal_locked(http_outbox *o, int64_t *opened_us)
{
    if (o->count == 0)
        return NULL;
    ecf_batch *b = o->open;
    if (opened_us)
        *opened_us = o->opened_us;
    o->open = NULL;
    o->count = 0;
    return b;
}

/* Called locked by the emitter that is done: the next batch, if it has
 * events, goes to the stage thread. */
static void stop_emitting_locked(http_outbox *o)
{
    o->emitting = false;
    if (o->count > 0 && o->taker_waiting)
        g_cond_signal(&o->wake);
}

void outbox_put_end(http_outbox *o)
{
    if (o->emitting || o->closed || o->count == 0) {
        g_mutex_unlock(&o->lock); /* the emitter at work takes these events */
        return;
    }
    o->emitting = true;
    for (int round = 0; round < LEADER_ROUNDS; round++) {
        int64_t opened_us;
        ecf_batch *b = steal_locked(o, &opened_us);
        if (!b)
            break;
        g_mutex_unlock(&o->lock);
        ecf_status st = ecf_try_emit(o->stage, NULL, b);
        g_mutex_lock(&o->lock);
        if (st == ECF_ERR_BACKPRESSURE) {
            /* The stage thread waits for room; puts stay open meanwhile
             * (within `cap`), and `emitting` stays set until it is done. */
            o->handed = b;
            o->handed_opened_us = opened_us;
            o->taker_blocked = true;
            g_cond_signal(&o->wake);
            g_mutex_unlock(&o->lock);
            return;
        }
        /* Any other failure: the core released the batch and its tokens
         * settle with the reason; nothing is left to do here. */
    }
    stop_emitting_locked(o);
    g_mutex_unlock(&o->lock);
}

ecf_batch *outbox_take(http_outbox *o, int64_t wait_us, int64_t *opened_us)
{
    g_mutex_lock(&o->lock);
    gint64 until = g_get_monotonic_time() + wait_us;
    while (!o->handed && !o->closed && (o->count == 0 || o->emitting) && wait_us > 0) {
        o->taker_waiting = true;
        bool woken = g_cond_wait_until(&o->wake, &o->lock, until);
        o->taker_waiting = false;
        if (!woken)
            break;
    }
    ecf_batch *b = NULL;
    if (o->handed) {
        b = o->handed;
        *opened_us = o->handed_opened_us;
        o->handed = NULL; /* `emitting` stays set: outbox_taken() clears it */
    } else if (!o->emitting) {
        b = steal_locked(o, opened_us);
        if (b)
            o->emitting = true;
    }
    g_mutex_unlock(&o->lock);
    return b;
}

void outbox_taken(http_outbox *o)
{
    g_mutex_lock(&o->lock);
    o->emitting = false;
    o->taker_blocked = false;
    g_mutex_unlock(&o->lock);
}

ecf_batch *outbox_close(http_outbox *o)
{
    g_mutex_lock(&o->lock);
    o->closed = true;
    ecf_batch *b = o->handed ? o->handed : steal_locked(o, NULL);
    o->handed = NULL;
    g_cond_signal(&o->wake);
    g_mutex_unlock(&o->lock);
    return b;
}
