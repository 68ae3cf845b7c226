/*
 * A small Thrift compact-protocol encoder: just what Parquet's footer and
 * page headers need (structs, i8/i16/i32/i64, bool, binary, lists).
 *
 * Field headers carry the delta from the previous field id when it is 1..15,
 * so callers write fields in increasing id order, as generated code does.
 * Usage:
 *   tc_writer w = {.out = &buf};
 *   tc_struct_begin(&w);
 *   tc_field_i32(&w, 1, 42);
 *   tc_field_struct_begin(&w, 2); ... tc_struct_end(&w);
 *   tc_struct_end(&w);
 */
#ifndef ECF_ICEBERG_THRIFT_COMPACT_H
#define ECF_ICEBERG_THRIFT_COMPACT_H

#include "byte_buf.h"

#include <stdbool.h>
#include <stdint.h>

/* Compact protocol type codes (as written in field headers and list headers). */
enum {
    TC_BOOL_TRUE = 1,
    TC_BOOL_FALSE = 2,
    TC_I8 = 3,
    TC_I16 = 4,
    TC_I32 = 5,
    TC_I64 = 6,
    TC_DOUBLE = 7,
    TC_BINARY = 8,
    TC_LIST = 9,
    TC_SET = 10,
    TC_MAP = 11,
    TC_STRUCT = 12,
};

#define TC_MAX_DEPTH 16

typedef struct {
    byte_buf *out;
    int16_t last_id[TC_MAX_DEPTH]; /* last field id per open struct */
    int depth;
} tc_writer;

void tc_struct_begin(tc_writer *w);
void tc_struct_end(tc_writer *w); /* writes the stop byte */

void tc_field_header(tc_writer *w, int16_t id, uint8_t type);
void tc_field_bool(tc_writer *w, int16_t id, bool v);
void tc_field_i8(tc_writer *w, int16_t id, int8_t v);
void tc_field_i16(tc_writer *w, int16_t id, int16_t v);
void tc_field_i32(tc_writer *w, int16_t id, int32_t v);
void tc_field_i64(tc_writer *w, int16_t id, int64_t v);
void tc_field_binary(tc_writer *w, int16_t id, const void *p, size_t n);
void tc_field_string(tc_writer *w, int16_t id, const char *s);
/* A nested struct field: header, then tc_struct_begin; close with tc_struct_end. */
void tc_field_struct_begin(tc_writer *w, int16_t id);
/* An empty struct as a field (Thrift unions of empty structs, e.g. logical types). */
void tc_field_empty_struct(tc_writer *w, int16_t id);
/* A list field header; then write `n` elements with the tc_elem_* calls. */
void tc_field_list_begin(tc_writer *w, int16_t id, uint8_t elem_type, uint32_t n);

void tc_elem_i32(tc_writer *w, int32_t v);
void tc_elem_i64(tc_writer *w, int64_t v);
void tc_elem_string(tc_writer *w, const char *s);
/* A struct list element: tc_struct_begin ... tc_struct_end. */

#endif
