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
 * Keys are kept as 128-bit hashes (MurmurHash3 x64 128): 16 bytes in the
 * FIFO and 17 in a table at most 3/4 full, so a full window of a million
 * keys (plus the pending ones) takes 50-70 MB. Keys of
 * rows in the commit being prepared are "pending": forgotten if it fails
 * (the rows come again), kept if it succeeds, the oldest dropped past the
 * window. Not thread-safe: the sink's thread alone uses it.
 */
#ifndef ECF_ICEBERG_DEDUPE_H
#define ECF_ICEBERG_DEDUPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dedupe dedupe;

dedupe *dedupe_new(uint32_t window);
void dedupe_free(dedupe *d);
/* true: the key is known (committed or pending). false: it is new and now
 * remembered as pending. */
bool dedupe_seen(dedupe *d, const void *key, size_t len);
/* The pending keys are in the table now / will not be. */
void dedupe_commit(dedupe *d);
void dedupe_rollback(dedupe *d);
size_t dedupe_count(const dedupe *d);

#endif
