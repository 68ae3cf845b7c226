/*
 * The event schema: a YAML file that names each top-level field of an event,
 * its type and its rules (format: README.md beside this file). Loaded once
 * in `create`; every regex is compiled there, every number parsed there, so
 * validating an event only compares.
 */
#ifndef ECF_TV_SCHEMA_H
#define ECF_TV_SCHEMA_H

#include <ecflow/plugin.h>
#include <glib.h>

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    TV_STRING = 0,
    TV_INT,   /* int64                                     */
    TV_FLOAT, /* float64                                   */
    TV_BOOL,
    TV_DECIMAL,   /* decimal128(precision, scale), exact       */
    TV_TIMESTAMP, /* ISO 8601 with zone -> µs since epoch, UTC */
} tv_type;

#define TV_NO_LIMIT (-1)

typedef struct {
    char *name;
    size_t name_len;
    tv_type type;
    int precision, scale; /* TV_DECIMAL */
    bool required;
    char *doc;
    int line; /* where it is declared, for messages */

    /* strings */
    char **enum_values; /* NULL-terminated, or NULL          */
    size_t *enum_lens;
    uint32_t n_enum;
    char *enum_text;                /* "a, b, c" for messages             */
    GRegex *regex;                  /* anchored: matches the whole value  */
    char *regex_src;                /* as written in the file             */
    int64_t min_length, max_length; /* code points; TV_NO_LIMIT */

    /* numbers and timestamps: inclusive bounds */
    bool has_min, has_max;
    int64_t min_i, max_i;  /* TV_INT, TV_TIMESTAMP (µs)          */
    double min_f, max_f;   /* TV_FLOAT                           */
    __int128 min_d, max_d; /* TV_DECIMAL, unscaled               */
    char *min_text, *max_text;

    /* timestamps: how far past "now" a value may be; TV_NO_LIMIT = no
     * limit; unset = the stage's max_future option */
    bool max_future_set;
    int64_t max_future_us;

    /* coerce: a numeric string is taken for an int, float or decimal field,
     * a number's text for a string field (README: coerce). The field's own
     * `coerce` rule, else the schema's; default false. */
    bool coerce, coerce_set;
} tv_field;

typedef struct {
    char *name;
    char *path;
    int64_t version;
    char *doc;
    tv_field *fields;
    uint32_t n_fields;
    int event_time; /* index of the event-time field, or -1 */
    bool coerce;    /* the schema-wide default of the fields' coerce rule */
    /* key -> field index, open addressing */
    int32_t *slots;
    uint32_t slot_mask;
} tv_schema;

/* Derived columns after the schema's own, in this order. */
#define TV_COL_EVENT_DATE "event_date"
#define TV_COL_INGEST_TIME "ingest_time"
#define TV_COL_EXTRAS "extras"

/* Errors read "PATH:LINE: ..." (the file name given for `path`). */
tv_schema *tv_schema_load(const char *path, GError **error);
tv_schema *tv_schema_parse(const char *text, size_t len, const char *path, GError **error);
void tv_schema_free(tv_schema *s);

/* Index of the field named key[0, len), or -1. */
int tv_schema_lookup(const tv_schema *s, const char *key, size_t len);

/* "string", "int", "decimal(12,2)", ... */
const char *tv_type_label(const tv_field *f, char *buf, size_t cap);

/* The Arrow schema of the records the stage emits: a struct of every field
 * in file order, then event_date (when the schema names an event_time),
 * ingest_time and extras. The caller owns it (Arrow release semantics). */
void tv_schema_export_arrow(const tv_schema *s, struct ArrowSchema *out);

/* Strict parsers shared by the schema loader and the validator. */
/* An RFC 3339 / ISO 8601 timestamp with zone -> µs since the epoch (UTC).
 * On failure, *why says what is wrong ("has no zone", ...). */
bool tv_parse_timestamp(const char *s, size_t len, int64_t *out_us, const char **why);
/* A JSON-grammar number as decimal(precision, scale), exactly. */
typedef enum { TV_DEC_OK = 0, TV_DEC_SYNTAX, TV_DEC_SCALE, TV_DEC_PRECISION } tv_dec_status;
tv_dec_status tv_parse_decimal(const char *s, size_t len, int precision, int scale, __int128 *out);
/* -?(0|[1-9][0-9]*) within int64. 0 ok, 1 not an integer, 2 out of range. */
int tv_parse_int(const char *s, size_t len, int64_t *out);
/* Durations as the core spells them: "250ms", "10s", "5m", "1h", "7d". */
bool tv_parse_duration(const char *s, int64_t *out_us);

#endif /* ECF_TV_SCHEMA_H */
