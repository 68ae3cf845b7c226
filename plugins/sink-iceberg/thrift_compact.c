/*
 * Thrift compact protocol, encoder side (see thrift_compact.h).
 * Spec: Apache Thrift "compact protocol" — zigzag varints for i16/i32/i64,
 * field header = (delta << 4) | type when 0 < delta <= 15, else the type byte
 * followed by the zigzag i16 field id; bools live in the field header type;
 * list header = (size << 4) | elem_type when size < 15, else 0xF0 | type and
 * a varint size; binary = varint length + bytes; struct ends with a 0 byte.
 */
#include "thrift_compact.h"

#include <string.h>

void tc_struct_begin(tc_writer *w)
{
    if (w->depth < TC_MAX_DEPTH)
        w->last_id[w->depth] = 0;
    w->depth++;
}

void tc_struct_end(tc_writer *w)
{
    bb_byte(w->out, 0);
    w->depth--;
}

void tc_field_header(tc_writer *w, int16_t id, uint8_t type)
{
    int16_t *last = &w->last_id[w->depth - 1];
    int delta = id - *last;
    if (delta > 0 && delta <= 15) {
        bb_byte(w->out, (uint8_t)((delta << 4) | type));
    } else {
        bb_byte(w->out, type);
        bb_zigzag(w->out, id);
    }
    *last = id;
}

void tc_field_bool(tc_writer *w, int16_t id, bool v) { tc_field_header(w, id, v ? TC_BOOL_TRUE : TC_BOOL_FALSE); }

void tc_field_i8(tc_writer *w, int16_t id, int8_t v)
{
    tc_field_header(w, id, TC_I8);
    bb_byte(w->out, (uint8_t)v);
}

void tc_field_i16(tc_writer *w, int16_t id, int16_t v)
{
    tc_field_header(w, id, TC_I16);
    bb_zigzag(w->out, v);
}

void tc_field_i32(tc_writer *w, int16_t id, int32_t v)
{
    tc_field_header(w, id, TC_I32);
    bb_zigzag(w->out, v);
}

void tc_field_i64(tc_writer *w, int16_t id, int64_t v)
{
    tc_field_header(w, id, TC_I64);
    bb_zigzag(w->out, v);
}

void tc_field_binary(tc_writer *w, int16_t id, const void *p, size_t n)
{
    tc_field_header(w, id, TC_BINARY);
    bb_uvarint(w->out, n);
    bb_append(w->out, p, n);
}

void tc_field_string(tc_writer *w, int16_t id, const char *s) { tc_field_binary(w, id, s, strlen(s)); }

void tc_field_struct_begin(tc_writer *w, int16_t id)
{
    tc_field_header(w, id, TC_STRUCT);
    tc_struct_begin(w);
}

void tc_field_empty_struct(tc_writer *w, int16_t id)
{
    tc_field_struct_begin(w, id);
    tc_struct_end(w);
}

void tc_field_list_begin(tc_writer *w, int16_t id, uint8_t elem_type, uint32_t n)
{
    tc_field_header(w, id, TC_LIST);
    if (n < 15) {
        bb_byte(w->out, (uint8_t)((n << 4) | elem_type));
    } else {
        bb_byte(w->out, (uint8_t)(0xF0 | elem_type));
        bb_uvarint(w->out, n);
    }
}

void tc_elem_i32(tc_writer *w, int32_t v) { bb_zigzag(w->out, v); }
void tc_elem_i64(tc_writer *w, int64_t v) { bb_zigzag(w->out, v); }

void tc_elem_string(tc_writer *w, const char *s)
{
    size_t n = strlen(s);
    bb_uvarint(w->out, n);
    bb_append(w->out, s, n);
}
