/*
 * Rows sink-iceberg cannot write (today: a null in a column the table
 * requires). One such row must never hold back the others of its batch, or
 * a redelivering source would offer it, and with it everything after it,
 * forever. Each is taken out of the write and sent to the sink's `rejected`
 * port as a dead-letter envelope (plugins/common/event_schema/dead_letter.h:
 * reason, class, field, stage, source position, and the row rendered as
 * JSON in "raw"), derived from its message so that its token travels with
 * it and its source learns the outcome from the dead-letter sink. When no
 * stage reads `rejected`, the row is nacked with the reason instead.
 *
 * Positions: a rejected row never enters the commit's Kafka positions. Its
 * source commits past it only once the envelope is delivered (or, nacked,
 * per its on_failure), and a redelivered bad row is rejected again, before
 * the positions are asked, so a crash between the commit and the envelope's
 * delivery loses nothing (the dead-letter side is at-least-once).
 */
#ifndef ECF_ICEBERG_REJECT_H
#define ECF_ICEBERG_REJECT_H

#include "arrow_columns.h"
#include "parquet_writer.h"
#include "positions.h"

#include <ecflow/plugin.h>

#define REJECTED_PORT "rejected"

/* The fate of a rejected row in sink_iceberg.c's fate array: past pos_fate's
 * values, so neither written nor settled with a commit. */
#define REJ_FATE ((uint8_t)(POS_PENDING + 1))

typedef struct ice_reject ice_reject;

/* For the columns the sink writes (cols and kinds must outlive it); call
 * from start, once the ports are wired. */
ice_reject *rej_new(ecf_stage *stage, const pq_column_spec *cols, const arrow_kind *kinds, int n_cols);
void rej_free(ice_reject *r);

/* Sets fate[i] for each of rec's n rows: REJ_FATE for a row that cannot be
 * written, POS_WRITE for the others. Returns how many were rejected. */
uint32_t rej_scan(const ice_reject *r, const struct ArrowArray *rec, uint32_t n, uint8_t *fate);

/* Sends every row marked REJ_FATE to `rejected`, or nacks it with the reason
 * when no stage reads that port. Settles or passes on their tokens: the
 * caller must not hold or ack those messages. */
void rej_route(ice_reject *r, ecf_batch *batch, const struct ArrowArray *rec, const uint8_t *fate);

/* Row `row` of rec (columns as cols/kinds) as a JSON object {"column": value}
 * replacing out's contents: timestamps and dates as ISO strings, decimals as
 * exact strings, binary and non-UTF-8 text as base64, NaN/Infinity as strings. */
void rej_row_json(const pq_column_spec *cols, const arrow_kind *kinds, int n_cols, const struct ArrowArray *rec,
                  uint32_t row, GString *out);

#endif
