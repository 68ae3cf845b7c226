/*
 * Rows whose key (e.g. event_id) the table got moments ago, within a window
 * of the last N keys.
 *
 * Kafka positions make the table exactly once per Kafka record. But a client
 * whose request was durable in Kafka and never answered (the process died in
 * between) sends it again, and the same event becomes a second record. Both
 * reach the lake after the restart, on the same partition (same session key)
 * and the retry after the original: it is recognised here and not written.
 *
 * Keys are kept as 128-bit hashes, SipHash-2-4-128 under a 16-byte key that
 * is random per table (dedupe_store.h keeps it with the table): without the
 * key nobody can choose ids that collide and so hide each other's events.
 *
 * The window holds the last N keys, those of the commit being prepared
 * ("pending") included: forgotten if it fails (the rows come again), kept if
 * it succeeds; a new key past the window pushes out the oldest committed
 * one. So memory is set by the window alone, not by rows per commit: 16
 * bytes a key in a ring, and 8 in an index kept at most half full (4-byte
 * slots, a power of two), 24-32 bytes a key, allocated whole and touched as
 * keys come. Measured (test_iceberg_dedupe -m perf -p /dedupe/memory: a full
 * window, RSS delta): see the test's message; 1,000,000 keys take ~24 MB.
 * Briefly more: writing or loading a whole-window file (dedupe_store.h)
 * holds its 16 bytes per key (loading: twice that). On disk a key takes 16
 * bytes. A commit with more rows than the window remembers its first window
 * of keys. Not thread-safe: the sink's thread alone uses it.
 */
#ifndef ECF_ICEBERG_DEDUPE_H
#define ECF_ICEBERG_DEDUPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DEDUPE_KEY_BYTES 16

typedef struct dedupe dedupe;

/* A key's hash; as bytes (files): h1 then h2, each little-endian, which is
 * SipHash-2-4-128's output as the reference implementation writes it. */
typedef struct {
    uint64_t h1, h2;
} dedupe_hash;

dedupe_hash dedupe_hash_from_bytes(const uint8_t b[16]);
void dedupe_hash_to_bytes(dedupe_hash h, uint8_t b[16]);

/* key: the table's hash key (NULL: all zero, for tests). */
dedupe *dedupe_new(uint32_t window, const uint8_t key[DEDUPE_KEY_BYTES]);
void dedupe_free(dedupe *d);
/* true: the key is known (committed or pending). false: it is new and now
 * remembered as pending. */
bool dedupe_seen(dedupe *d, const void *key, size_t len);
/* Whether the key is known, without remembering it. */
bool dedupe_known(const dedupe *d, const void *key, size_t len);
/* The pending keys are in the table now / will not be. */
void dedupe_commit(dedupe *d);
void dedupe_rollback(dedupe *d);
size_t dedupe_count(const dedupe *d);
uint32_t dedupe_window(const dedupe *d);

/* Committed keys from an earlier run, oldest first (past the window the
 * oldest go again); known ones are skipped. Returns how many were new. */
size_t dedupe_load(dedupe *d, const dedupe_hash *h, size_t n);
/* The pending keys, in the order they came, copied into out (room for
 * their count; NULL: only count them); returns the count. */
size_t dedupe_pending(const dedupe *d, dedupe_hash *out);
/* The window as it will be once the pending keys are committed, oldest
 * first, into out (room for dedupe_window(d) keys; NULL: only count them);
 * returns the count. */
size_t dedupe_window_after_commit(const dedupe *d, dedupe_hash *out);
/* Up to max keys, from the from'th on, oldest first, of the pending keys
 * (pending_only) or of the window as it will be once they commit; returns
 * how many were copied, or with out NULL how many there are. For writing
 * them out a piece at a time. */
size_t dedupe_keys(const dedupe *d, bool pending_only, size_t from, dedupe_hash *out, size_t max);
/* 8 bytes that name the hash key without revealing it: files written under
 * another key (the table's property was replaced) are not loaded. */
void dedupe_key_id(const dedupe *d, uint8_t out[8]);

#endif
