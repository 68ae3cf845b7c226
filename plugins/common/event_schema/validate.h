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
 * Every field problem of an event is collected (up to TV_MAX_PROBLEMS
 * listed, the rest counted): each field that breaks a rule, in document
 * order, then each missing required field, in schema order. The first of
 * them is the event's reason (class and message, as metrics and dead
 * letters use it). Malformed JSON (and duplicate keys, too-deep nesting,
 * not an object) is the one problem of its event, since nothing else about
 * such a document is meaningful.
 */
#ifndef ECF_TV_VALIDATE_H
#define ECF_TV_VALIDATE_H

#include "columns.h"
#include "json_walk.h"
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
} tv_problem;

#define TV_MAX_PROBLEMS 16

/* The first problem (reason, field, message, value: the event's reason)
 * and, when invalid, every problem: problems[0] is the first again. */
typedef struct {
    tv_reason reason;
    const char *field;
    char message[384];
    char value[72];
    uint32_t n_problems; /* listed in problems[]; >= 1 when invalid */
    uint32_t n_unlisted; /* more problems than problems[] holds      */
    tv_problem problems[TV_MAX_PROBLEMS];
} tv_error;

/* All messages of err joined by "; " (with "; and N more" when some were
 * not listed) into out; the first message alone when it is the only one. */
void tv_error_text(const tv_error *err, char *out, size_t cap);
#define TV_ERROR_TEXT_MAX (TV_MAX_PROBLEMS * 386 + 32) /* room for every listed message */

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

/* The same in three steps, for a caller whose own JSON walk (the HTTP
 * door's) reports the event's top-level members, so that each byte is
 * parsed once: tv_event_begin() before the walk (size_hint: the event's
 * size when known, else 0), tv_event_member() for each member (a
 * tvj_member_fn; user is the validator), tv_event_end() with the walk's
 * outcome and the event's size. A begin that did not return TV_VALID needs
 * no end; err is filled by whichever step decides. */
tv_reason tv_event_begin(tv_validator *v, tv_columns *cols, size_t size_hint, int64_t now_us, tv_error *err);
void tv_event_member(void *validator, const tvj_member *m);
tv_reason tv_event_end(tv_validator *v, tvj_status walked, const tvj_error *je, size_t len, int64_t ingest_time_us,
                       tv_row_info *info);

/* Whether one more event of `len` bytes fits the set's int32 string offsets. */
bool tv_validator_fits(const tv_columns *cols, size_t len);

#endif /* ECF_TV_VALIDATE_H */
