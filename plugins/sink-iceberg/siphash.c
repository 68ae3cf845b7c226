/* SipHash-2-4-128: see siphash.h. */
#include "siphash.h"

static inline uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline void store64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

typedef struct {
    uint64_t v0, v1, v2, v3;
} sip_state;

static inline void round_(sip_state *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

static inline void compress(sip_state *s, uint64_t m)
{
    s->v3 ^= m;
    round_(s);
    round_(s);
    s->v0 ^= m;
}

static inline uint64_t finish(sip_state *s, uint64_t flag)
{
    s->v2 ^= flag;
    for (int i = 0; i < 4; i++)
        round_(s);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

void siphash128(const uint8_t key[SIPHASH_KEY_BYTES], const void *in, size_t len, uint8_t out[16])
{
    const uint8_t *p = in;
    uint64_t k0 = load64(key), k1 = load64(key + 8);
    sip_state s = {.v0 = 0x736f6d6570736575ULL ^ k0,
                   .v1 = 0x646f72616e646f6dULL ^ k1 ^ 0xee, /* 0xee: 128-bit output */
                   .v2 = 0x6c7967656e657261ULL ^ k0,
                   .v3 = 0x7465646279746573ULL ^ k1};
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8)
        compress(&s, load64(p + i));
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    for (size_t i = 0; i < len % 8; i++)
        last |= (uint64_t)p[whole + i] << (8 * i);
    compress(&s, last);
    store64(out, finish(&s, 0xee));
    s.v1 ^= 0xdd;
    store64(out + 8, finish(&s, 0));
}
