/*
 * Dead-letter envelopes: what the `invalid` port carries for each rejected
 * event, one JSON object per message:
 *
 *   {"reason": "field 'price': expected decimal(12,2), got string \"abc\"",
 *    "class": "type", "field": "price", "stage": "validate",
 *    "at": "2024-03-01T12:00:00.123Z",
 *    "source": {"kind": "kafka", "topic": "ecommerce_events", "partition": 3, "offset": 42},
 *    "raw": "<the event's bytes, as a JSON string>"}
 *
 * "field" is null when the problem is not one field's (malformed JSON).
 * "raw" holds the original bytes exactly when they are UTF-8 (as any JSON
 * text is); bytes that are not UTF-8 go, still exactly, into "raw_base64"
 * instead, since a JSON string cannot carry them. Built by hand into a
 * reused buffer (not json-glib): its string API stops at NUL bytes, and the
 * raw bytes must survive whole.
 */
#ifndef ECF_TV_DEAD_LETTER_H
#define ECF_TV_DEAD_LETTER_H

#include <ecflow/plugin.h>
#include <glib.h>

typedef struct {
    const char *reason; /* the one-line message          */
    const char *klass;  /* reason class, e.g. "type"     */
    const char *field;  /* or NULL                       */
    const char *stage;
    int64_t at_us; /* wall clock, µs since epoch    */
    const ecf_origin *origin;
    const uint8_t *raw;
    size_t raw_len;
} tv_dead_letter;

/* Replaces out's contents with the envelope. */
void tv_dead_letter_json(GString *out, const tv_dead_letter *d);

/*
 * Adds d's envelope to `dlq` as a message derived from `m` (its token goes
 * with it, so m is settled when the envelope's sink acks it), with m's own
 * headers (Kafka's) and then ecflow.dlq.reason, .class, .stage and .field,
 * so a dead-letter topic can be filtered without parsing the envelope.
 * `buf` is scratch for the envelope. The status of ecf_batch_add.
 */
ecf_status tv_dead_letter_add(ecf_stage *stage, ecf_batch *dlq, ecf_message *m, const tv_dead_letter *d, GString *buf);

/* Appends s[0, len) as a JSON string literal; false (nothing appended) when
 * s is not valid UTF-8. */
gboolean tv_json_append_string(GString *out, const char *s, size_t len);

/* "2024-03-01T12:00:00.123456Z" (µs, UTC). */
void tv_format_utc(char out[64], int64_t us);

#endif /* ECF_TV_DEAD_LETTER_H */
