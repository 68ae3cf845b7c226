/* Keys seen lately: see dedupe.h. An open-addressing set of 128-bit hashes
 * (linear probing, backward-shift deletion) plus a FIFO of committed keys
 * that says which to forget first. */
#include "dedupe.h"

#include "siphash.h"

#include <glib.h>
#include <string.h>

typedef dedupe_hash hkey;

enum { SLOT_EMPTY = 0, SLOT_COMMITTED, SLOT_PENDING };

struct dedupe {
    hkey *slots;
    uint8_t *state;
    size_t mask, used;
    hkey *fifo; /* committed keys, oldest at fifo[head] */
    uint32_t window, head, n_fifo;
    GArray *pending; /* hkey */
    uint8_t key[DEDUPE_KEY_BYTES];
};

/* ---------------------------------------------------------------- the set */

static size_t home(const dedupe *d, hkey k) { return (size_t)k.h1 & d->mask; }

static bool same(hkey a, hkey b) { return a.h1 == b.h1 && a.h2 == b.h2; }

/* The slot holding k, or the empty slot where it would go. */
static size_t find(const dedupe *d, hkey k)
{
    size_t i = home(d, k);
    while (d->state[i] != SLOT_EMPTY && !same(d->slots[i], k))
        i = (i + 1) & d->mask;
    return i;
}

static void alloc_slots(dedupe *d, size_t cap)
{
    d->slots = g_new(hkey, cap);
    d->state = g_new0(uint8_t, cap);
    d->mask = cap - 1;
    d->used = 0;
}

static void insert(dedupe *d, hkey k, uint8_t state);

/* Doubles the table: at most three quarters full keeps probes short. */
static void grow(dedupe *d)
{
    hkey *old = d->slots;
    uint8_t *old_state = d->state;
    size_t old_cap = d->mask + 1;
    alloc_slots(d, old_cap * 2);
    for (size_t i = 0; i < old_cap; i++)
        if (old_state[i] != SLOT_EMPTY)
            insert(d, old[i], old_state[i]);
    g_free(old);
    g_free(old_state);
}

static void insert(dedupe *d, hkey k, uint8_t state)
{
    if (4 * (d->used + 1) > 3 * (d->mask + 1))
        grow(d);
    size_t i = find(d, k);
    if (d->state[i] == SLOT_EMPTY)
        d->used++;
    d->slots[i] = k;
    d->state[i] = state;
}

/* Backward-shift deletion: later keys of the same run move up, so no
 * tombstones are needed and lookups stay exact. */
static void erase(dedupe *d, hkey k)
{
    size_t i = find(d, k);
    if (d->state[i] == SLOT_EMPTY)
        return;
    d->used--;
    for (size_t j = i;;) {
        d->state[i] = SLOT_EMPTY;
        for (;;) {
            j = (j + 1) & d->mask;
            if (d->state[j] == SLOT_EMPTY)
                return;
            size_t h = home(d, d->slots[j]);
            /* j's key may fill the hole at i unless its home lies in (i, j] */
            bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
            if (!stays)
                break;
        }
        d->slots[i] = d->slots[j];
        d->state[i] = d->state[j];
        i = j;
    }
}

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
    alloc_slots(d, (size_t)1 << 12); /* grows as keys come */
    d->fifo = g_new(hkey, d->window);
    d->pending = g_array_new(FALSE, FALSE, sizeof(hkey));
    return d;
}

void dedupe_free(dedupe *d)
{
    if (!d)
        return;
    g_free(d->slots);
    g_free(d->state);
    g_free(d->fifo);
    g_array_free(d->pending, TRUE);
    g_free(d);
}

bool dedupe_seen(dedupe *d, const void *key, size_t len)
{
    hkey k = hash_of(d, key, len);
    size_t i = find(d, k);
    if (d->state[i] != SLOT_EMPTY)
        return true;
    insert(d, k, SLOT_PENDING);
    g_array_append_val(d->pending, k);
    return false;
}

/* k (in the set now) is committed: the newest of the FIFO. */
static void push_committed(dedupe *d, hkey k)
{
    if (d->n_fifo == d->window) { /* forget the oldest */
        erase(d, d->fifo[d->head]);
        d->fifo[d->head] = k;
        d->head = (d->head + 1) % d->window;
    } else {
        d->fifo[(d->head + d->n_fifo++) % d->window] = k;
    }
}

void dedupe_commit(dedupe *d)
{
    for (guint p = 0; p < d->pending->len; p++) {
        hkey k = g_array_index(d->pending, hkey, p);
        size_t i = find(d, k);
        if (d->state[i] != SLOT_PENDING)
            continue;
        d->state[i] = SLOT_COMMITTED;
        push_committed(d, k);
    }
    g_array_set_size(d->pending, 0);
}

size_t dedupe_load(dedupe *d, const dedupe_hash *h, size_t n)
{
    size_t added = 0;
    for (size_t p = 0; p < n; p++) {
        size_t i = find(d, h[p]);
        if (d->state[i] != SLOT_EMPTY)
            continue; /* known already: an older file had it too */
        insert(d, h[p], SLOT_COMMITTED);
        push_committed(d, h[p]);
        added++;
    }
    return added;
}

size_t dedupe_pending(const dedupe *d, const dedupe_hash **out)
{
    *out = (const dedupe_hash *)d->pending->data;
    return d->pending->len;
}

size_t dedupe_window_after_commit(const dedupe *d, dedupe_hash *out)
{
    size_t n_pending = d->pending->len;
    size_t total = d->n_fifo + n_pending;
    size_t skip = total > d->window ? total - d->window : 0; /* the oldest, that commit would evict */
    size_t n = 0;
    if (!out)
        return total - skip;
    for (size_t i = skip; i < d->n_fifo; i++)
        out[n++] = d->fifo[(d->head + i) % d->window];
    for (size_t p = skip > d->n_fifo ? skip - d->n_fifo : 0; p < n_pending; p++)
        out[n++] = g_array_index(d->pending, hkey, p);
    return n;
}

uint32_t dedupe_window(const dedupe *d) { return d->window; }

void dedupe_key_id(const dedupe *d, uint8_t out[8])
{
    static const char what[] = "ecflow dedupe key id";
    uint8_t h[16];
    siphash128(d->key, what, sizeof what - 1, h);
    memcpy(out, h, 8);
}

void dedupe_rollback(dedupe *d)
{
    for (guint p = 0; p < d->pending->len; p++)
        erase(d, g_array_index(d->pending, hkey, p));
    g_array_set_size(d->pending, 0);
}

size_t dedupe_count(const dedupe *d) { return d->used; }
