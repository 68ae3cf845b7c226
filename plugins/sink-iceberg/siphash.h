/*
 * SipHash-2-4 with 128-bit output (Aumasson and Bernstein, "SipHash: a fast
 * short-input PRF", and the reference implementation's 128-bit variant): a
 * keyed hash, so that whoever chooses the inputs (clients choose event ids)
 * cannot choose collisions without the 16-byte key.
 */
#ifndef ECF_ICEBERG_SIPHASH_H
#define ECF_ICEBERG_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define SIPHASH_KEY_BYTES 16

/* out: 16 bytes, the reference implementation's byte order (two
 * little-endian 64-bit words). */
void siphash128(const uint8_t key[SIPHASH_KEY_BYTES], const void *in, size_t len, uint8_t out[16]);

#endif
