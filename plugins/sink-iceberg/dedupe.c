/* Keys seen lately: see dedupe.h. An open-addressing set of 128-bit hashes
 * (linear probing, backward-shift deletion) plus a FIFO of committed keys
 * that says which to forget first. */
#include "dedupe.h"

#include <glib.h>
#include <string.h>

typedef struct {
    uint64_t h1, h2;
} hkey;

enum { SLOT_EMPTY = 0, SLOT_COMMITTED, SLOT_PENDING };

struct dedupe {
    hkey *slots;
    uint8_t *state;
    size_t mask, used;
    hkey *fifo; /* committed keys, oldest at fifo[head] */
    uint32_t window, head, n_fifo;
    GArray *pending; /* hkey */
};

/* ---------------------------------------------------------------- MurmurHash3 x64 128 */
/* Austin Appleby's public-domain MurmurHash3_x64_128, seed 0. */

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

static hkey murmur3_128(const void *key, size_t len)
{
    const uint8_t *data = key;
    const size_t nblocks = len / 16;
    const uint64_t c1 = 0x87c37b91114253d5ULL, c2 = 0x4cf5ad432745937fULL;
    uint64_t h1 = 0, h2 = 0;
    for (size_t i = 0; i < nblocks; i++) {
        uint64_t k1, k2;
        memcpy(&k1, data + i * 16, 8);
        memcpy(&k2, data + i * 16 + 8, 8);
        k1 *= c1;
        k1 = rotl64(k1, 31);
        k1 *= c2;
        h1 ^= k1;
        h1 = rotl64(h1, 27);
        h1 += h2;
        h1 = h1 * 5 + 0x52dce729;
        k2 *= c2;
        k2 = rotl64(k2, 33);
        k2 *= c1;
        h2 ^= k2;
        h2 = rotl64(h2, 31);
        h2 += h1;
        h2 = h2 * 5 + 0x38495ab5;
    }
    const uint8_t *tail = data + nblocks * 16;
    uint64_t k1 = 0, k2 = 0;
    switch (len & 15) {
    case 15: k2 ^= (uint64_t)tail[14] << 48; /* fall through */
    case 14: k2 ^= (uint64_t)tail[13] << 40; /* fall through */
    case 13: k2 ^= (uint64_t)tail[12] << 32; /* fall through */
    case 12: k2 ^= (uint64_t)tail[11] << 24; /* fall through */
    case 11: k2 ^= (uint64_t)tail[10] << 16; /* fall through */
    case 10: k2 ^= (uint64_t)tail[9] << 8;   /* fall through */
    case 9:
        k2 ^= (uint64_t)tail[8];
        k2 *= c2;
        k2 = rotl64(k2, 33);
        k2 *= c1;
        h2 ^= k2;                          /* fall through */
    case 8: k1 ^= (uint64_t)tail[7] << 56; /* fall through */
    case 7: k1 ^= (uint64_t)tail[6] << 48; /* fall through */
    case 6: k1 ^= (uint64_t)tail[5] << 40; /* fall through */
    case 5: k1 ^= (uint64_t)tail[4] << 32; /* fall through */
    case 4: k1 ^= (uint64_t)tail[3] << 24; /* fall through */
    case 3: k1 ^= (uint64_t)tail[2] << 16; /* fall through */
    case 2: k1 ^= (uint64_t)tail[1] << 8;  /* fall through */
    case 1:
        k1 ^= (uint64_t)tail[0];
        k1 *= c1;
        k1 = rotl64(k1, 31);
        k1 *= c2;
        h1 ^= k1;
    }
    h1 ^= len;
    h2 ^= len;
    h1 += h2;
    h2 += h1;
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 += h2;
    h2 += h1;
    return (hkey){h1, h2};
}

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

dedupe *dedupe_new(uint32_t window)
{
    dedupe *d = g_new0(dedupe, 1);
    d->window = MAX(window, 1);
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
    hkey k = murmur3_128(key, len);
    size_t i = find(d, k);
    if (d->state[i] != SLOT_EMPTY)
        return true;
    insert(d, k, SLOT_PENDING);
    g_array_append_val(d->pending, k);
    return false;
}

void dedupe_commit(dedupe *d)
{
    for (guint p = 0; p < d->pending->len; p++) {
        hkey k = g_array_index(d->pending, hkey, p);
        size_t i = find(d, k);
        if (d->state[i] != SLOT_PENDING)
            continue;
        d->state[i] = SLOT_COMMITTED;
        if (d->n_fifo == d->window) { /* forget the oldest */
            erase(d, d->fifo[d->head]);
            d->fifo[d->head] = k;
            d->head = (d->head + 1) % d->window;
        } else {
            d->fifo[(d->head + d->n_fifo++) % d->window] = k;
        }
    }
    g_array_set_size(d->pending, 0);
}

void dedupe_rollback(dedupe *d)
{
    for (guint p = 0; p < d->pending->len; p++)
        erase(d, g_array_index(d->pending, hkey, p));
    g_array_set_size(d->pending, 0);
}

size_t dedupe_count(const dedupe *d) { return d->used; }
