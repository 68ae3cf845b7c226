/*
 * Partition specs and transforms (Iceberg spec "Partitioning"): identity,
 * year, month, day, hour, void. A spec is parsed from the sink's
 * `partition_by` option ("event_type", "day(timestamp)") against a schema,
 * or read from table metadata JSON.
 */
#ifndef ECF_ICEBERG_PARTITION_H
#define ECF_ICEBERG_PARTITION_H

#include "byte_buf.h"
#include "iceberg_schema.h"

#include <json-glib/json-glib.h>

typedef enum {
    PT_IDENTITY = 1,
    PT_YEAR,
    PT_MONTH,
    PT_DAY,
    PT_HOUR,
    PT_VOID,
} part_transform;

typedef struct {
    int source_id;
    int field_id; /* 1000+ */
    char *name;
    part_transform transform;
    ice_type result; /* identity: source type; temporal: int */
} part_field;

typedef struct {
    int spec_id;
    int n_fields;
    part_field *fields;
} part_spec;

/* One partition value: null, or an integer-like, a double, or bytes. */
typedef struct {
    bool is_null;
    int64_t i; /* int, long, date, timestamps, boolean, temporal results */
    double d;
    __int128 dec;
    const uint8_t *p; /* string / binary (borrowed) */
    uint32_t n;
} part_value;

const char *part_transform_name(part_transform t);

/* "day(timestamp)" etc. against `schema`; field ids from 1000. */
bool part_spec_parse(char **items, const ice_schema *schema, part_spec *out, char *err, size_t errcap);
void part_spec_clear(part_spec *s);
void part_spec_copy(part_spec *dst, const part_spec *src);
bool part_spec_equal(const part_spec *a, const part_spec *b);
JsonNode *part_spec_to_json(const part_spec *s); /* {"spec-id":..,"fields":[..]} */
char *part_spec_fields_json(const part_spec *s); /* just the fields array */
bool part_spec_from_json(JsonObject *o, const ice_schema *schema, part_spec *out, char *err, size_t errcap);
int part_spec_last_field_id(const part_spec *s);

/* Temporal transforms of micros / days since the epoch. */
int32_t part_apply_ts(part_transform t, int64_t micros);
int32_t part_apply_date(part_transform t, int32_t days);

/* Longest escaped value in a path component: a longer one is cut and ends in
 * "-" and 16 hex digits of a hash of the whole value, so "name=value" stays
 * under NAME_MAX (readers never parse these directory names). */
#define PART_PATH_VALUE_MAX 128

/* Human-readable value for paths: "2024-05-01", "page_view", "null". */
void part_value_to_path(const part_field *f, const part_value *v, byte_buf *out);
/* Iceberg single-value serialization of a partition value (for field summaries). */
void part_value_serialize(const part_field *f, const part_value *v, byte_buf *out);
/* Compare two non-null values of the field's result type. */
int part_value_cmp(const part_field *f, const part_value *a, const part_value *b);

#endif
