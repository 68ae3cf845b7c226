/* Keys seen lately: see dedupe.h. A ring of the window's 128-bit hashes,
 * oldest first, the pending ones at its end, and an open-addressing index
 * into it (linear probing, backward-shift deletion) that says whether a
 * hash is in the ring. The index holds 4-byte ring positions, not hashes:
 * a probe compares against the ring, and the set costs 4 bytes a slot
 * instead of 17. */
#include "dedupe.h"

#include "siphash.h"

#include <glib.h>
#include <string.h>

typedef dedupe_hash hkey;

struct dedupe {
    hkey *ring; /* window entries; [head, head + n_committed) committed,
                   then n_pending pending, modulo window */
    uint32_t window, head, n_committed, n_pending;
    uint32_t *index; /* ring position + 1; 0 = empty */
    size_t mask;
    uint8_t key[DEDUPE_KEY_BYTES];
};

/* ---------------------------------------------------------------- the index */

static size_t home(const dedupe *d, hkey k) { return (size_t)k.h1 & d->mask; }

static bool same(hkey a, hkey b) { return a.h1 == b.h1 && a.h2 == b.h2; }

static const hkey *entry(const dedupe *d, uint32_t slot_value) { return &d->ring[slot_value - 1]; }

/* The index slot holding k, or the empty slot where it would go. */
static size_t find(const dedupe *d, hkey k)
{
    size_t i = home(d, k);
    while (d->index[i] != 0 && !same(*entry(d, d->index[i]), k))
        i = (i + 1) & d->mask;
    return i;
}

/* Backward-shift deletion: later entries of the same run move up, so no
 * tombstones are needed and lookups stay exact. */
static void erase(dedupe *d, hkey k)
{
    size_t i = find(d, k);
    if (d->index[i] == 0)
        return;
    for (size_t j = i;;) {
        d->index[i] = 0;
        for (;;) {
            j = (j + 1) & d->mask;
            if (d->index[j] == 0)
                return;
            size_t h = home(d, *entry(d, d->index[j]));
            /* j's entry may fill the hole at i unless its home lies in (i, j] */
            bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
            if (!stays)
                break;
        }
        d->index[i] = d->index[j];
        i = j;
    }
}

/* ---------------------------------------------------------------- the ring */

static uint32_t ring_pos(const dedupe *d, uint64_t nth) { return (uint32_t)((d->head + nth) % d->window); }

/* Forgets the oldest committed key. */
static void drop_oldest(dedupe *d)
{
    erase(d, d->ring[d->head]);
    d->head = ring_pos(d, 1);
    d->n_committed--;
}

/* Appends k (not known) at the ring's end, into the index slot `at`. False
 * when the window is full of pending keys: k is not remembered. */
static bool append(dedupe *d, hkey k, size_t at)
{
    if (d->n_committed + d->n_pending == d->window) {
        if (d->n_committed == 0)
            return false;
        drop_oldest(d);
        at = find(d, k); /* the deletion may have moved the run k probes */
    }
    uint32_t pos = ring_pos(d, (uint64_t)d->n_committed + d->n_pending);
    d->ring[pos] = k;
    d->index[at] = pos + 1;
    return true;
}

/* ---------------------------------------------------------------- API */

static hkey hash_of(const dedupe *d, const void *key, size_t len)
{
    uint8_t out[16];
    siphash128(d->key, key, len, out);
    return dedupe_hash_from_bytes(out);
}

dedupe_hash dedupe_hash_from_bytes(const uint8_t b[16])
{
    dedupe_hash h = {0, 0};
    for (int i = 7; i >= 0; i--) {
        h.h1 = (h.h1 << 8) | b[i];
        h.h2 = (h.h2 << 8) | b[8 + i];
    }
    return h;
}

void dedupe_hash_to_bytes(dedupe_hash h, uint8_t b[16])
{
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(h.h1 >> (8 * i));
        b[8 + i] = (uint8_t)(h.h2 >> (8 * i));
    }
}

dedupe *dedupe_new(uint32_t window, const uint8_t key[DEDUPE_KEY_BYTES])
{
    dedupe *d = g_new0(dedupe, 1);
    d->window = MAX(window, 1);
    if (key)
        memcpy(d->key, key, DEDUPE_KEY_BYTES);
    /* At most half full, so probes stay short. Both arrays are allocated
     * whole but only touched as keys come (zeroed pages are lazy), so a
     * window that never fills never costs its full size. */
    size_t slots = 8;
    while (slots < 2 * (size_t)d->window)
        slots *= 2;
    d->index = g_new0(uint32_t, slots);
    d->mask = slots - 1;
    d->ring = g_new(hkey, d->window);
    return d;
}

void dedupe_free(dedupe *d)
{
    if (!d)
        return;
    g_free(d->index);
    g_free(d->ring);
    g_free(d);
}

bool dedupe_seen(dedupe *d, const void *key, size_t len)
{
    hkey k = hash_of(d, key, len);
    size_t i = find(d, k);
    if (d->index[i] != 0)
        return true;
    if (append(d, k, i))
        d->n_pending++;
    return false;
}

bool dedupe_known(const dedupe *d, const void *key, size_t len) { return d->index[find(d, hash_of(d, key, len))] != 0; }

void dedupe_commit(dedupe *d)
{
    d->n_committed += d->n_pending;
    d->n_pending = 0;
}

void dedupe_rollback(dedupe *d)
{
    while (d->n_pending > 0) {
        d->n_pending--;
        erase(d, d->ring[ring_pos(d, (uint64_t)d->n_committed + d->n_pending)]);
    }
}

size_t dedupe_load(dedupe *d, const dedupe_hash *h, size_t n)
{
    g_return_val_if_fail(d->n_pending == 0, 0);
    size_t added = 0;
    for (size_t p = 0; p < n; p++) {
        size_t i = find(d, h[p]);
        if (d->index[i] != 0)
            continue; /* known already: an older file had it too */
        if (append(d, h[p], i)) {
            d->n_committed++;
            added++;
        }
    }
    return added;
}

/* Copies `n` ring entries from the nth, in order, into out. */
static void copy_out(const dedupe *d, uint64_t nth, size_t n, dedupe_hash *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = d->ring[ring_pos(d, nth + i)];
}

size_t dedupe_keys(const dedupe *d, bool pending_only, size_t from, dedupe_hash *out, size_t max)
{
    size_t first = pending_only ? d->n_committed : 0;
    size_t total = pending_only ? d->n_pending : (size_t)d->n_committed + d->n_pending;
    if (!out)
        return total;
    size_t n = from >= total ? 0 : MIN(total - from, max);
    copy_out(d, first + from, n, out);
    return n;
}

size_t dedupe_pending(const dedupe *d, dedupe_hash *out) { return dedupe_keys(d, true, 0, out, SIZE_MAX); }

size_t dedupe_window_after_commit(const dedupe *d, dedupe_hash *out) { return dedupe_keys(d, false, 0, out, SIZE_MAX); }

uint32_t dedupe_window(const dedupe *d) { return d->window; }

void dedupe_key_id(const dedupe *d, uint8_t out[8])
{
    static const char what[] = "ecflow dedupe key id";
    uint8_t h[16];
    siphash128(d->key, what, sizeof what - 1, h);
    memcpy(out, h, 8);
}

size_t dedupe_count(const dedupe *d) { return (size_t)d->n_committed + d->n_pending; }
