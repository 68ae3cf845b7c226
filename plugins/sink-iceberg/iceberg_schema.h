/*
 * Iceberg schemas: primitive types, fields with ids, their JSON form
 * (spec Appendix C), the mapping from the Arrow input schema, and schema
 * evolution (new optional column, int -> long, float -> double, decimal
 * precision widening, required -> optional).
 */
#ifndef ECF_ICEBERG_SCHEMA_H
#define ECF_ICEBERG_SCHEMA_H

#include <ecflow/plugin.h>
#include <json-glib/json-glib.h>

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    ICE_BOOLEAN = 1,
    ICE_INT,
    ICE_LONG,
    ICE_FLOAT,
    ICE_DOUBLE,
    ICE_DATE,
    ICE_TIMESTAMP, /* without zone */
    ICE_TIMESTAMPTZ,
    ICE_STRING,
    ICE_BINARY,
    ICE_DECIMAL,
} ice_type_id;

typedef struct {
    ice_type_id id;
    int precision, scale; /* decimal only */
} ice_type;

typedef struct {
    int id;
    char *name;
    bool required;
    ice_type type;
    char *doc;
} ice_field;

typedef struct {
    int schema_id;
    int n_fields;
    ice_field *fields;
} ice_schema;

/* "long", "decimal(10,2)", ... into buf (>= 32 bytes). */
const char *ice_type_str(ice_type t, char *buf, size_t cap);
bool ice_type_parse(const char *s, ice_type *out);
bool ice_type_equal(ice_type a, ice_type b);
/* Bytes of a FIXED_LEN_BYTE_ARRAY holding a decimal of this precision. */
int ice_decimal_bytes(int precision);

/* The Iceberg type for an Arrow format string; false when unsupported. */
bool ice_type_from_arrow(const char *format, ice_type *out);

void ice_schema_clear(ice_schema *s);
void ice_schema_copy(ice_schema *dst, const ice_schema *src);
const ice_field *ice_schema_find(const ice_schema *s, const char *name);
const ice_field *ice_schema_find_id(const ice_schema *s, int id);
int ice_schema_max_id(const ice_schema *s);

/* A fresh schema (ids 1..n in input order) from an Arrow struct schema. */
bool ice_schema_from_arrow(const struct ArrowSchema *arrow, ice_schema *out, char *err, size_t errcap);

/* JSON (Appendix C): {"type":"struct","schema-id":N,"fields":[...]} */
JsonNode *ice_schema_to_json(const ice_schema *s);
char *ice_schema_to_json_string(const ice_schema *s);
bool ice_schema_from_json(JsonObject *o, ice_schema *out, char *err, size_t errcap);

/*
 * Compares the table's schema with the one the input brings.
 * Returns  0: the table can take the input as is;
 *          1: compatible, `evolved` holds the next schema (new id,
 *             new columns from *last_column_id + 1, which is advanced);
 *         -1: incompatible, `err` says which column and why.
 */
int ice_schema_reconcile(const ice_schema *table, const ice_schema *input, int *last_column_id, ice_schema *evolved,
                         char *err, size_t errcap);

/* Can a value of input type `in` be written into a column of type `col`? */
bool ice_type_writable(ice_type col, ice_type in);

#endif
