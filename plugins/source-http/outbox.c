/*
 * The outbox: small requests share batches.
 *
 * One batch per request would make a one-event POST cost a whole batch
 * hand-off downstream (a ring slot, a consumer wake-up, a produce call of
 * its own), and 64 such requests fill a 64-batch ring: the source answered
 * 503 while Kafka was idle. So requests put their events in one open batch
 * and the stage thread takes it whenever it is free (group commit): idle,
 * it takes a single event at once; busy emitting, it finds the next batch
 * grown by everything that arrived meanwhile. Requests with a full batch
 * of events or more emit those themselves, off the outbox.
 *
 * Memory stays bounded: past `cap` events in the open batch while the
 * stage thread finds no room downstream (or far past it in any case),
 * requests are turned away (503), and the batch the stage thread holds
 * gives up after a while if downstream has no room (see source_http.c).
 */
#include "source_http.h"

/* Open-batch size, in batches of `cap`, past which requests are turned
 * away even while the taker still finds room downstream. */
#define OUTBOX_HARD_CAP 8

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
    o->open = NULL;
    g_mutex_clear(&o->lock);
    g_cond_clear(&o->wake);
}

ecf_status outbox_put_begin(http_outbox *o)
{
    g_mutex_lock(&o->lock);
    /* Full only while downstream has no room: a taker that is merely busy
     * emitting comes back for the batch within microseconds. */
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

void outbox_put_end(http_outbox *o)
{
    /* Signalled only when the taker sleeps: a busy one looks again anyway. */
    bool wake = o->taker_waiting && o->count > 0;
    g_mutex_unlock(&o->lock);
    if (wake)
        g_cond_signal(&o->wake);
}

/* The open batch if it has events; an empty one stays for reuse. */
static ecf_batch *steal_locked(http_outbox *o)
{
    if (o->count == 0)
        return NULL;
    ecf_batch *b = o->open;
    o->open = NULL;
    o->count = 0;
    return b;
}

ecf_batch *outbox_take(http_outbox *o, int64_t wait_us, int64_t *opened_us)
{
    g_mutex_lock(&o->lock);
    if (o->count == 0 && !o->closed && wait_us > 0) {
        o->taker_waiting = true;
        gint64 until = g_get_monotonic_time() + wait_us;
        while (o->count == 0 && !o->closed)
            if (!g_cond_wait_until(&o->wake, &o->lock, until))
                break;
        o->taker_waiting = false;
    }
    if (o->count > 0)
        *opened_us = o->opened_us;
    ecf_batch *b = steal_locked(o);
    g_mutex_unlock(&o->lock);
    return b;
}

ecf_batch *outbox_close(http_outbox *o)
{
    g_mutex_lock(&o->lock);
    o->closed = true;
    ecf_batch *b = steal_locked(o);
    g_cond_signal(&o->wake);
    g_mutex_unlock(&o->lock);
    return b;
}
