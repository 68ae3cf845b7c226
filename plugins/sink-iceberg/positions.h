/*
 * Kafka positions, as sink-iceberg keeps them for exactly-once delivery:
 * topic -> partition -> an offset. The snapshot summary stores "the next
 * offset to read" per partition (key ecflow.kafka-offsets, JSON
 * {"topic":{"0":123,"1":456}}); the sink keeps the same map in memory for
 * what is committed, and two more for the rows taken since the last commit
 * (lowest offset, next offset after the highest).
 *
 * Not thread-safe by itself: the sink guards the committed map with its lock.
 */
#ifndef ECF_ICEBERG_POSITIONS_H
#define ECF_ICEBERG_POSITIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pos_map pos_map;

pos_map *pos_map_new(void);
void pos_map_free(pos_map *m);
void pos_map_clear(pos_map *m);
size_t pos_map_count(const pos_map *m); /* partitions, over all topics */

bool pos_get(const pos_map *m, const char *topic, int32_t partition, int64_t *value);
void pos_set(pos_map *m, const char *topic, int32_t partition, int64_t value);
/* Keeps the larger (raise) / smaller (lower) of the stored value and `value`. */
void pos_raise(pos_map *m, const char *topic, int32_t partition, int64_t value);
void pos_lower(pos_map *m, const char *topic, int32_t partition, int64_t value);
/* Every entry of `from` raised into `into`. */
void pos_merge_max(pos_map *into, const pos_map *from);
void pos_copy(pos_map *dst, const pos_map *src);

/* Calls fn for every entry, topics in strcmp order, partitions ascending. */
typedef void (*pos_fn)(void *ctx, const char *topic, int32_t partition, int64_t value);
void pos_foreach(const pos_map *m, pos_fn fn, void *ctx);

/* {"topic":{"0":123}} (sorted; "{}" when empty). Caller frees (g_free). */
char *pos_to_json(const pos_map *m);
/* Adds the entries of `json` (raising existing ones). false on a malformed
 * document (nothing is added then). */
bool pos_from_json(pos_map *m, const char *json);
/* "t[0]@12 t[1]@40" for logs, cut with "..." past max_len. Caller frees. */
char *pos_describe(const pos_map *m, size_t max_len);

/*
 * What to do with a row read from Kafka at (topic, partition, offset):
 *   POS_WRITE    not in the table and not in the commit being prepared;
 *   POS_DURABLE  below the committed next offset: it is in the table already
 *                (a redelivery after a crash, or a fall back to older group
 *                offsets); ack it now, write nothing;
 *   POS_PENDING  within the rows taken since the last commit
 *                [pending_lo, pending_hi): the same record again (a rewind or
 *                a re-assignment before the commit); write nothing, settle it
 *                with that commit.
 */
typedef enum { POS_WRITE = 0, POS_DURABLE, POS_PENDING } pos_fate;

pos_fate pos_classify(const pos_map *committed, const pos_map *pending_lo, const pos_map *pending_hi, const char *topic,
                      int32_t partition, int64_t offset);

#endif
