/*
 * Validation of one event against a schema, straight into a column set.
 *
 * tv_validate() walks the whole JSON document (json_walk), checks every
 * schema field's type and rules, writes the typed values into row
 * `cols->rows` of the column set, captures unknown top-level members
 * verbatim into the `extras` column, derives event_date and ingest_time,
 * and commits the row only if everything holds. Otherwise it says why, with
 * a reason class (for metrics) and a one-line message naming the field.
 *
 * Precedence when an event has several problems: malformed JSON (and
 * duplicate keys, too-deep nesting, not an object) first, since nothing
 * else about such a document is meaningful; then the first field, in
 * document order, that breaks a rule; then the first missing required
 * field, in schema order.
 */
#ifndef ECF_TV_VALIDATE_H
#define ECF_TV_VALIDATE_H

#include "columns.h"
#include "schema.h"

typedef enum {
    TV_VALID = 0,
    TV_R_SYNTAX,     /* not JSON, or empty                           */
    TV_R_NOT_OBJECT, /* JSON, but not an object                      */
    TV_R_DEPTH,      /* nesting deeper than max_depth                */
    TV_R_DUPLICATE,  /* a key repeats in one object                  */
    TV_R_REQUIRED,   /* a required field is missing or null          */
    TV_R_TYPE,       /* a value of the wrong JSON type               */
    TV_R_FORMAT,     /* a timestamp string that is not ISO 8601 with zone */
    TV_R_ENUM,
    TV_R_PATTERN,   /* regex                                        */
    TV_R_LENGTH,    /* min_length / max_length                      */
    TV_R_RANGE,     /* min / max / max_future / int64 / float64     */
    TV_R_PRECISION, /* a decimal that does not fit (P,S) exactly    */
    TV_R_SIZE,      /* an event too large for a column (2 GiB)      */
    TV_R_INTERNAL,  /* out of memory: not the event's fault         */
    TV_REASON_COUNT
} tv_reason;

/* "syntax", "type", ... as used in metrics labels and DLQ envelopes. */
const char *tv_reason_name(tv_reason r);

typedef struct {
    tv_reason reason;
    const char *field; /* the schema field concerned, or NULL        */
    char message[384]; /* `field 'price': expected decimal(12,2), got string "abc"` */
    char value[72];    /* the value at fault in short (`string "abc"`), "" when none */
} tv_error;

typedef struct {
    int64_t event_time_us; /* of the schema's event_time field; 0 = none */
    const char *key;       /* the key field's value, NULL when null/none */
    size_t key_len;
} tv_row_info;

typedef struct tv_validator tv_validator;

/* max_future_us: for timestamp fields whose schema sets none; TV_NO_LIMIT
 * disables. key_field: a string field whose value tv_row_info reports, or
 * NULL. Fails (NULL, *why set) when key_field is not a string field. */
tv_validator *tv_validator_new(const tv_schema *s, int64_t max_future_us, uint32_t max_depth, const char *key_field,
                               const char **why);
void tv_validator_free(tv_validator *v);
/* The largest event the validator's parser has room for now. */
size_t tv_validator_footprint(const tv_validator *v);

/* The column layout a pool needs for this schema: n_fields + derived. */
uint32_t tv_validator_columns(const tv_schema *s, tv_col_kind *kinds, bool *nullable, uint32_t cap);

/* buf[0, len) with TVJ_PADDING readable bytes after it. */
tv_reason tv_validate(tv_validator *v, tv_columns *cols, const uint8_t *buf, size_t len, int64_t ingest_time_us,
                      int64_t now_us, tv_row_info *info, tv_error *err);

/* Whether one more event of `len` bytes fits the set's int32 string offsets. */
bool tv_validator_fits(const tv_columns *cols, size_t len);

#endif /* ECF_TV_VALIDATE_H */
