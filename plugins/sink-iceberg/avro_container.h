/*
 * Avro object container files, written and read by hand (Avro 1.x spec,
 * "Object Container Files"): magic "Obj\1", a metadata map (avro.schema,
 * avro.codec and any other keys, e.g. Iceberg's schema / partition-spec /
 * format-version), a 16-byte sync marker, then blocks of
 * (record count, byte size, records, sync).
 *
 * Apache Avro C's file writer drops custom schema attributes (Iceberg's
 * field-id) and cannot add header keys, hence this. The reader decodes any
 * writer schema into generic values, so manifest lists written by other
 * engines (Java, pyiceberg; codec null or deflate) can be carried forward.
 */
#ifndef ECF_ICEBERG_AVRO_CONTAINER_H
#define ECF_ICEBERG_AVRO_CONTAINER_H

#include "byte_buf.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- binary encoding (the caller writes records field by field) ---- */
static inline void avro_long(byte_buf *b, int64_t v) { bb_zigzag(b, v); }
static inline void avro_int(byte_buf *b, int32_t v) { bb_zigzag(b, v); }
static inline void avro_bool(byte_buf *b, bool v) { bb_byte(b, v ? 1 : 0); }
static inline void avro_bytes(byte_buf *b, const void *p, size_t n)
{
    bb_zigzag(b, (int64_t)n);
    bb_append(b, p, n);
}
static inline void avro_string(byte_buf *b, const char *s) { avro_bytes(b, s, strlen(s)); }
/* union branch index; for ["null", T]: 0 = null, 1 = value */
static inline void avro_union(byte_buf *b, int branch) { bb_zigzag(b, branch); }

/* ---- container writer ---- */
typedef struct {
    byte_buf out;   /* the whole file, once finished */
    byte_buf block; /* records of the current block */
    int64_t block_count;
    uint8_t sync[16];
} avro_writer;

/* meta: key, value, key, value, ..., NULL (values are strings). */
void avro_writer_begin(avro_writer *w, const char *schema_json, const char *const *meta);
/* After encoding one record into w->block. */
void avro_writer_record_done(avro_writer *w);
/* Writes the last block; w->out holds the file. */
void avro_writer_finish(avro_writer *w);
void avro_writer_free(avro_writer *w);

/* ---- generic reader ---- */
typedef enum {
    AV_NULL,
    AV_BOOLEAN,
    AV_INT,
    AV_LONG,
    AV_FLOAT,
    AV_DOUBLE,
    AV_BYTES,
    AV_STRING,
    AV_RECORD,
    AV_ENUM,
    AV_ARRAY,
    AV_MAP,
    AV_UNION,
    AV_FIXED,
} av_kind;

typedef struct av_schema av_schema;
typedef struct {
    char *name;
    int field_id; /* -1 when absent */
    av_schema *type;
} av_field;

struct av_schema {
    av_kind kind;
    char *name;   /* named types */
    int n_fields; /* record */
    av_field *fields;
    av_schema *items; /* array items, map values */
    int n_branches;
    av_schema **branches; /* union */
    int size;             /* fixed */
    int n_symbols;
    char **symbols; /* enum */
};

typedef struct av_value av_value;
struct av_value {
    av_kind kind;            /* after union resolution: the branch taken */
    const av_schema *schema; /* likewise */
    int64_t l;               /* boolean, int, long, enum index */
    double d;
    const uint8_t *p; /* bytes, string, fixed: points into the file data */
    size_t n;
    av_value *items; /* record: one per field; array: elements; map: key,value pairs */
    size_t n_items;
};

typedef struct {
    byte_buf data; /* decompressed blocks keep values' bytes alive */
    av_schema *schema;
    char **meta_keys; /* NULL-terminated */
    char **meta_values;
    av_value *records;
    size_t n_records;
    void *arena; /* internal */
} avro_file;

bool avro_file_read(const uint8_t *p, size_t n, avro_file *out, char *err, size_t errcap);
void avro_file_clear(avro_file *f);
const char *avro_file_meta(const avro_file *f, const char *key);
/* Field of a record value by Iceberg field id, else by name; NULL when absent
 * or null. */
const av_value *av_field_get(const av_value *rec, int field_id, const char *name);

#endif
