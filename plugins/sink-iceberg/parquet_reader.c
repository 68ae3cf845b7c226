/*
 * Parquet reader (see parquet_reader.h). The footer is Thrift compact
 * (parquet.thrift); the layout and encodings follow the Parquet format spec
 * (Encodings.md, the data page v1/v2 sections of README.md).
 *
 * Hostile input is the normal case here: a bounded cursor (`tr`) reads the
 * Thrift, each struct parser checks the field types it accepts, lists are
 * limited by the bytes left, nesting by TC_MAX_DEPTH, and every decoded byte
 * is counted against pq_reader_limits before it is allocated.
 */
#include "parquet_reader.h"
#include "thrift_compact.h"

#include <limits.h>
#include <snappy-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

enum { REP_REQUIRED = 0, REP_OPTIONAL = 1, REP_REPEATED = 2 };
enum { PAGE_DATA = 0, PAGE_INDEX = 1, PAGE_DICTIONARY = 2, PAGE_DATA_V2 = 3 };
enum {
    ENC_PLAIN = 0,
    ENC_PLAIN_DICTIONARY = 2,
    ENC_RLE = 3,
    ENC_BIT_PACKED = 4,
    ENC_DELTA_BINARY_PACKED = 5,
    ENC_DELTA_LENGTH_BYTE_ARRAY = 6,
    ENC_DELTA_BYTE_ARRAY = 7,
    ENC_RLE_DICTIONARY = 8,
    ENC_BYTE_STREAM_SPLIT = 9,
};
enum { CODEC_NONE = 0, CODEC_SNAPPY = 1, CODEC_GZIP = 2, CODEC_ZSTD = 6 };
enum {
    CT_UTF8 = 0,
    CT_ENUM = 4,
    CT_DECIMAL = 5,
    CT_DATE = 6,
    CT_TIMESTAMP_MILLIS = 9,
    CT_TIMESTAMP_MICROS = 10,
    CT_UINT_8 = 11,
    CT_INT_8 = 15,
    CT_INT_16 = 16,
    CT_INT_32 = 17,
    CT_INT_64 = 18,
    CT_JSON = 19,
};

#define MAX_COLUMNS 100000
#define MAX_FLBA_LEN 4096
#define MAX_NAME 4096
#define IDX_BATCH 1024

/* ------------------------------------------------------------ errors */

pq_read_status pq_fail(pq_read_status st, char *err, size_t errcap, const char *fmt, ...)
{
    if (err && errcap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errcap, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* ------------------------------------------------------------ thrift cursor */

typedef struct {
    const uint8_t *p, *end;
    int depth;
    const char *bad;   /* first problem found, NULL while fine */
    size_t alloc_left; /* bytes the footer's structures may still allocate */
} tr;

/* Footer structures cost at most this many bytes per byte of footer: a real
 * footer needs far fewer; a hostile one of tiny empty structs is refused. */
#define FOOTER_ALLOC_FACTOR 8
#define FOOTER_ALLOC_SLACK (1 << 20)

static bool tr_ok(const tr *t) { return t->bad == NULL; }
static void tr_fail(tr *t, const char *why)
{
    if (!t->bad)
        t->bad = why;
}
static void *tr_calloc(tr *t, size_t n, size_t size)
{
    n = n ? n : 1;
    if (n > t->alloc_left / size) {
        tr_fail(t, "footer lists too long for its size");
        return NULL;
    }
    t->alloc_left -= n * size;
    void *p = calloc(n, size);
    if (!p)
        tr_fail(t, "out of memory");
    return p;
}

static size_t tr_left(const tr *t) { return (size_t)(t->end - t->p); }

static uint64_t tr_uvarint(tr *t)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (t->p >= t->end) {
            tr_fail(t, "truncated varint");
            return 0;
        }
        uint8_t b = *t->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            return v;
    }
    tr_fail(t, "varint longer than 10 bytes");
    return 0;
}

static int64_t tr_zigzag(tr *t)
{
    uint64_t u = tr_uvarint(t);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static int32_t tr_i32(tr *t)
{
    int64_t v = tr_zigzag(t);
    if (v < INT32_MIN || v > INT32_MAX) {
        tr_fail(t, "i32 out of range");
        return 0;
    }
    return (int32_t)v;
}

static uint8_t tr_byte(tr *t)
{
    if (t->p >= t->end) {
        tr_fail(t, "truncated");
        return 0;
    }
    return *t->p++;
}

static const uint8_t *tr_binary(tr *t, size_t *n)
{
    uint64_t len = tr_uvarint(t);
    if (!tr_ok(t) || len > tr_left(t)) {
        tr_fail(t, "binary length past the end");
        *n = 0;
        return NULL;
    }
    const uint8_t *p = t->p;
    t->p += len;
    *n = (size_t)len;
    return p;
}

/* Reads a field header; false at the struct's stop byte (or on error). */
static bool tr_field(tr *t, int16_t *last, int16_t *id, uint8_t *type)
{
    uint8_t b = tr_byte(t);
    if (!tr_ok(t) || b == 0)
        return false;
    *type = b & 0x0F;
    int delta = b >> 4;
    if (delta) {
        *id = (int16_t)(*last + delta);
    } else {
        int64_t v = tr_zigzag(t);
        if (v < INT16_MIN || v > INT16_MAX)
            tr_fail(t, "field id out of range");
        *id = (int16_t)v;
    }
    *last = *id;
    if (*type < TC_BOOL_TRUE || *type > TC_STRUCT) {
        tr_fail(t, "unknown thrift type");
        return false;
    }
    return tr_ok(t);
}

/* A list header: element type and count, the count bounded by the bytes left
 * (every element takes at least one byte). */
static uint32_t tr_list(tr *t, uint8_t *elem)
{
    uint8_t b = tr_byte(t);
    uint64_t n = b >> 4;
    *elem = b & 0x0F;
    if (n == 15)
        n = tr_uvarint(t);
    if (!tr_ok(t))
        return 0;
    if (n > tr_left(t) || n > UINT32_MAX) {
        tr_fail(t, "list longer than the bytes left");
        return 0;
    }
    return (uint32_t)n;
}

static void tr_skip(tr *t, uint8_t type, bool in_list);

static void tr_skip_struct(tr *t)
{
    if (++t->depth > TC_MAX_DEPTH) {
        tr_fail(t, "structs nested too deep");
        return;
    }
    int16_t last = 0, id;
    uint8_t type;
    while (tr_field(t, &last, &id, &type))
        tr_skip(t, type, false);
    t->depth--;
}

/* Skips one value; in a field header a bool's value is the type itself,
 * in a list it is a byte. */
static void tr_skip(tr *t, uint8_t type, bool in_list)
{
    if (!tr_ok(t))
        return;
    switch (type) {
    case TC_BOOL_TRUE:
    case TC_BOOL_FALSE:
        if (in_list)
            tr_byte(t);
        break;
    case TC_I8: tr_byte(t); break;
    case TC_I16:
    case TC_I32:
    case TC_I64: tr_uvarint(t); break;
    case TC_DOUBLE:
        if (tr_left(t) < 8)
            tr_fail(t, "truncated double");
        else
            t->p += 8;
        break;
    case TC_BINARY: {
        size_t n;
        tr_binary(t, &n);
        break;
    }
    case TC_LIST:
    case TC_SET: {
        if (++t->depth > TC_MAX_DEPTH) {
            tr_fail(t, "lists nested too deep");
            return;
        }
        uint8_t elem;
        uint32_t n = tr_list(t, &elem);
        for (uint32_t i = 0; i < n && tr_ok(t); i++)
            tr_skip(t, elem, true);
        t->depth--;
        break;
    }
    case TC_MAP: {
        if (++t->depth > TC_MAX_DEPTH) {
            tr_fail(t, "maps nested too deep");
            return;
        }
        uint64_t n = tr_uvarint(t);
        if (n > tr_left(t) / 2) {
            tr_fail(t, "map longer than the bytes left");
            return;
        }
        if (n) {
            uint8_t kv = tr_byte(t);
            for (uint64_t i = 0; i < n && tr_ok(t); i++) {
                tr_skip(t, kv >> 4, true);
                tr_skip(t, kv & 0x0F, true);
            }
        }
        t->depth--;
        break;
    }
    case TC_STRUCT: tr_skip_struct(t); break;
    default: tr_fail(t, "unknown thrift type");
    }
}

/* Field type checks: a known field with the wrong type is corruption. */
static bool want(tr *t, uint8_t type, uint8_t expect)
{
    if (type == expect)
        return true;
    tr_fail(t, "a field has the wrong thrift type");
    return false;
}

static bool want_bool(tr *t, uint8_t type)
{
    if (type == TC_BOOL_TRUE || type == TC_BOOL_FALSE)
        return true;
    tr_fail(t, "a bool field has the wrong thrift type");
    return false;
}

static int32_t field_i32(tr *t, uint8_t type) { return want(t, type, TC_I32) ? tr_i32(t) : 0; }
static int64_t field_i64(tr *t, uint8_t type) { return want(t, type, TC_I64) ? tr_zigzag(t) : 0; }

static bool struct_enter(tr *t)
{
    if (++t->depth > TC_MAX_DEPTH) {
        tr_fail(t, "structs nested too deep");
        return false;
    }
    return true;
}

/* ------------------------------------------------------------ footer model */

typedef struct {
    int32_t type, type_len, repetition, num_children, converted, scale, precision, field_id;
    bool has_type, has_field_id, has_num_children, has_logical;
    /* logical type: 1 STRING .. 14 UUID (LogicalType union member id) */
    int logical;
    int32_t l_scale, l_precision, l_bit_width;
    bool l_utc, l_signed;
    int l_unit; /* 1 MILLIS, 2 MICROS, 3 NANOS */
    const uint8_t *name;
    size_t name_len;
} schema_elem;

typedef struct {
    int32_t type, codec;
    int64_t num_values, total_uncompressed, total_compressed, data_page_offset, dict_page_offset;
    bool has_meta, external, encrypted, has_dict_offset;
    uint32_t encodings; /* bitmask of 1 << encoding (encodings < 32) */
    bool odd_encoding;  /* an encoding number >= 32 */
} chunk_info;

typedef struct {
    int64_t num_rows;
    chunk_info *chunks; /* n_cols */
    int n_chunks;
} row_group;

struct pq_reader {
    const uint8_t *data;
    size_t size, footer_start;
    char *file;
    pq_reader_limits lim;
    int64_t num_rows;
    int n_cols;
    pq_reader_column *cols;
    int n_groups;
    row_group *groups;
    byte_buf page; /* decompressed page */
    byte_buf dict; /* decoded dictionary values (fixed or concatenated bytes) */
    uint32_t *dict_off;
    size_t dict_off_cap;
    uint32_t dict_n;
    uint32_t idx[IDX_BATCH];
    uint8_t *defs;
    size_t defs_cap;
    ZSTD_DCtx *zctx;
};

static void parse_logical(tr *t, schema_elem *e)
{
    if (!struct_enter(t))
        return;
    int16_t last = 0, id;
    uint8_t type;
    while (tr_field(t, &last, &id, &type)) {
        if (type != TC_STRUCT) {
            tr_skip(t, type, false);
            continue;
        }
        e->has_logical = true;
        e->logical = id;
        if (!struct_enter(t))
            return;
        int16_t l2 = 0, id2;
        uint8_t t2;
        while (tr_field(t, &l2, &id2, &t2)) {
            if (id == 5 && id2 == 1)
                e->l_scale = field_i32(t, t2);
            else if (id == 5 && id2 == 2)
                e->l_precision = field_i32(t, t2);
            else if (id == 8 && id2 == 1 && want_bool(t, t2))
                e->l_utc = t2 == TC_BOOL_TRUE;
            else if (id == 8 && id2 == 2 && want(t, t2, TC_STRUCT)) {
                if (!struct_enter(t))
                    return;
                int16_t l3 = 0, id3;
                uint8_t t3;
                while (tr_field(t, &l3, &id3, &t3)) {
                    if (t3 == TC_STRUCT)
                        e->l_unit = id3;
                    tr_skip(t, t3, false);
                }
                t->depth--;
            } else if (id == 10 && id2 == 1 && want(t, t2, TC_I8))
                e->l_bit_width = (int8_t)tr_byte(t);
            else if (id == 10 && id2 == 2 && want_bool(t, t2))
                e->l_signed = t2 == TC_BOOL_TRUE;
            else
                tr_skip(t, t2, false);
        }
        t->depth--;
    }
    t->depth--;
}

static void parse_schema_elem(tr *t, schema_elem *e)
{
    memset(e, 0, sizeof *e);
    e->converted = -1;
    if (!struct_enter(t))
        return;
    int16_t last = 0, id;
    uint8_t type;
    while (tr_field(t, &last, &id, &type)) {
        switch (id) {
        case 1:
            e->type = field_i32(t, type);
            e->has_type = true;
            break;
        case 2: e->type_len = field_i32(t, type); break;
        case 3: e->repetition = field_i32(t, type); break;
        case 4:
            if (want(t, type, TC_BINARY))
                e->name = tr_binary(t, &e->name_len);
            break;
        case 5:
            e->num_children = field_i32(t, type);
            e->has_num_children = true;
            break;
        case 6: e->converted = field_i32(t, type); break;
        case 7: e->scale = field_i32(t, type); break;
        case 8: e->precision = field_i32(t, type); break;
        case 9:
            e->field_id = field_i32(t, type);
            e->has_field_id = true;
            break;
        case 10:
            if (want(t, type, TC_STRUCT))
                parse_logical(t, e);
            break;
        default: tr_skip(t, type, false);
        }
    }
    t->depth--;
}

static void parse_column_meta(tr *t, chunk_info *c)
{
    if (!struct_enter(t))
        return;
    c->has_meta = true;
    int16_t last = 0, id;
    uint8_t type;
    while (tr_field(t, &last, &id, &type)) {
        switch (id) {
        case 1: c->type = field_i32(t, type); break;
        case 2: {
            if (!want(t, type, TC_LIST))
                break;
            uint8_t elem;
            uint32_t n = tr_list(t, &elem);
            if (n && elem != TC_I32)
                tr_fail(t, "encodings list of the wrong type");
            for (uint32_t i = 0; i < n && tr_ok(t); i++) {
                int32_t e = tr_i32(t);
                if (e >= 0 && e < 32)
                    c->encodings |= 1u << e;
                else
                    c->odd_encoding = true;
            }
            break;
        }
        case 4: c->codec = field_i32(t, type); break;
        case 5: c->num_values = field_i64(t, type); break;
        case 6: c->total_uncompressed = field_i64(t, type); break;
        case 7: c->total_compressed = field_i64(t, type); break;
        case 9: c->data_page_offset = field_i64(t, type); break;
        case 11:
            c->dict_page_offset = field_i64(t, type);
            c->has_dict_offset = true;
            break;
        default: tr_skip(t, type, false);
        }
    }
    t->depth--;
}

static void parse_column_chunk(tr *t, chunk_info *c)
{
    memset(c, 0, sizeof *c);
    if (!struct_enter(t))
        return;
    int16_t last = 0, id;
    uint8_t type;
    while (tr_field(t, &last, &id, &type)) {
        if (id == 1 && type == TC_BINARY) {
            size_t n;
            tr_binary(t, &n);
            c->external = true;
        } else if (id == 3 && want(t, type, TC_STRUCT)) {
            parse_column_meta(t, c);
        } else if (id == 8 || id == 9) {
            c->encrypted = true;
            tr_skip(t, type, false);
        } else
            tr_skip(t, type, false);
    }
    t->depth--;
}

static void parse_row_group(tr *t, row_group *g)
{
    memset(g, 0, sizeof *g);
    g->num_rows = -1;
    if (!struct_enter(t))
        return;
    int16_t last = 0, id;
    uint8_t type;
    while (tr_field(t, &last, &id, &type)) {
        if (id == 1 && want(t, type, TC_LIST)) {
            uint8_t elem;
            uint32_t n = tr_list(t, &elem);
            if (n && elem != TC_STRUCT)
                tr_fail(t, "column chunk list of the wrong type");
            if (!tr_ok(t) || g->chunks || n > MAX_COLUMNS) {
                tr_fail(t, "bad column chunk list");
                break;
            }
            g->chunks = tr_calloc(t, n, sizeof *g->chunks);
            if (!g->chunks)
                break;
            g->n_chunks = (int)n;
            for (uint32_t i = 0; i < n && tr_ok(t); i++)
                parse_column_chunk(t, &g->chunks[i]);
        } else if (id == 3)
            g->num_rows = field_i64(t, type);
        else
            tr_skip(t, type, false);
    }
    t->depth--;
}

/* ------------------------------------------------------------ open */

static const pq_reader_limits default_limits = {
    .max_page_bytes = 256 << 20,
    .max_chunk_bytes = 1 << 30,
    .max_footer_bytes = 16 << 20,
};

static const char *ptype_name(int t)
{
    static const char *names[] = {"BOOLEAN", "INT32",  "INT64",      "INT96",
                                  "FLOAT",   "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"};
    return t >= 0 && t <= 7 ? names[t] : "unknown";
}

static const char *encoding_name(int e)
{
    switch (e) {
    case ENC_PLAIN: return "PLAIN";
    case ENC_PLAIN_DICTIONARY: return "PLAIN_DICTIONARY";
    case ENC_RLE: return "RLE";
    case ENC_BIT_PACKED: return "BIT_PACKED";
    case ENC_DELTA_BINARY_PACKED: return "DELTA_BINARY_PACKED";
    case ENC_DELTA_LENGTH_BYTE_ARRAY: return "DELTA_LENGTH_BYTE_ARRAY";
    case ENC_DELTA_BYTE_ARRAY: return "DELTA_BYTE_ARRAY";
    case ENC_RLE_DICTIONARY: return "RLE_DICTIONARY";
    case ENC_BYTE_STREAM_SPLIT: return "BYTE_STREAM_SPLIT";
    default: return "unknown";
    }
}

static const char *codec_name(int c)
{
    static const char *names[] = {"UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"};
    return c >= 0 && c <= 7 ? names[c] : "unknown";
}

/* The Iceberg type a column's logical/converted annotation means. */
static void column_ice_type(pq_reader_column *c, const schema_elem *e)
{
    c->has_ice = false;
    c->ts_scale = 1;
    ice_type t = {0};
    bool decimal = (e->has_logical && e->logical == 5) || e->converted == CT_DECIMAL;
    if (decimal) {
        t.id = ICE_DECIMAL;
        t.precision = e->has_logical && e->logical == 5 ? e->l_precision : e->precision;
        t.scale = e->has_logical && e->logical == 5 ? e->l_scale : e->scale;
        if (t.precision < 1 || t.precision > 38 || t.scale < 0 || t.scale > t.precision)
            return;
        if (c->ptype == PQ_BOOLEAN || c->ptype == PQ_FLOAT || c->ptype == PQ_DOUBLE)
            return;
        if (c->ptype == PQ_FIXED_LEN_BYTE_ARRAY && c->type_len > 16)
            return;
        c->ice = t;
        c->has_ice = true;
        return;
    }
    switch (c->ptype) {
    case PQ_BOOLEAN: t.id = ICE_BOOLEAN; break;
    case PQ_FLOAT: t.id = ICE_FLOAT; break;
    case PQ_DOUBLE: t.id = ICE_DOUBLE; break;
    case PQ_INT32:
        if ((e->has_logical && e->logical == 6) || e->converted == CT_DATE)
            t.id = ICE_DATE;
        else if (e->has_logical && e->logical == 10 && e->l_signed && e->l_bit_width <= 32)
            t.id = ICE_INT;
        else if (e->converted >= CT_INT_8 && e->converted <= CT_INT_32)
            t.id = ICE_INT;
        else if (!e->has_logical && e->converted < 0)
            t.id = ICE_INT;
        else
            return;
        break;
    case PQ_INT64:
        if (e->has_logical && e->logical == 8) {
            if (e->l_unit == 1)
                c->ts_scale = 1000;
            else if (e->l_unit != 2)
                return; /* nanoseconds do not fit Iceberg v2 timestamps */
            t.id = e->l_utc ? ICE_TIMESTAMPTZ : ICE_TIMESTAMP;
        } else if (e->converted == CT_TIMESTAMP_MICROS || e->converted == CT_TIMESTAMP_MILLIS) {
            c->ts_scale = e->converted == CT_TIMESTAMP_MILLIS ? 1000 : 1;
            t.id = ICE_TIMESTAMPTZ;
        } else if (e->has_logical && e->logical == 10 && e->l_signed)
            t.id = ICE_LONG;
        else if (e->converted == CT_INT_64 || (!e->has_logical && e->converted < 0))
            t.id = ICE_LONG;
        else
            return;
        break;
    case PQ_BYTE_ARRAY:
        if (e->has_logical && (e->logical == 1 || e->logical == 4 || e->logical == 12))
            t.id = ICE_STRING;
        else if (e->converted == CT_UTF8 || e->converted == CT_ENUM || e->converted == CT_JSON)
            t.id = ICE_STRING;
        else if (!e->has_logical && e->converted < 0)
            t.id = ICE_BINARY;
        else
            return;
        break;
    default: return; /* FIXED_LEN_BYTE_ARRAY without DECIMAL: uuid / fixed, no ice_type for them */
    }
    c->ice = t;
    c->has_ice = true;
}

static pq_read_status open_schema(pq_reader *r, const schema_elem *el, uint32_t n_el, char *err, size_t errcap)
{
    const char *f = r->file;
    if (n_el < 1 || !el[0].has_num_children || el[0].num_children < 0 || (uint32_t)el[0].num_children != n_el - 1)
        return pq_fail(PQ_READ_UNSUPPORTED, err, errcap,
                       "%s: the schema is not flat (root has %d children, %u elements follow)", f, el[0].num_children,
                       n_el - 1);
    r->n_cols = (int)(n_el - 1);
    r->cols = calloc(n_el, sizeof *r->cols);
    if (!r->cols)
        return pq_fail(PQ_READ_LIMIT, err, errcap, "%s: out of memory", f);
    for (uint32_t i = 1; i < n_el; i++) {
        const schema_elem *e = &el[i];
        pq_reader_column *c = &r->cols[i - 1];
        size_t nl = e->name_len < MAX_NAME ? e->name_len : MAX_NAME;
        c->name = malloc(nl + 1);
        if (!c->name)
            return pq_fail(PQ_READ_LIMIT, err, errcap, "%s: out of memory", f);
        if (nl)
            memcpy(c->name, e->name, nl);
        c->name[nl] = 0;
        for (size_t k = 0; k < nl; k++)
            if (c->name[k] < 0x20 || c->name[k] == 0x7F)
                c->name[k] = '?'; /* keeps error messages one printable line */
        if (e->has_num_children && e->num_children > 0)
            return pq_fail(PQ_READ_UNSUPPORTED, err, errcap, "%s: column '%s': nested groups are not supported", f,
                           c->name);
        if (!e->has_type)
            return pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: column '%s': no physical type", f, c->name);
        if (e->repetition == REP_REPEATED)
            return pq_fail(PQ_READ_UNSUPPORTED, err, errcap, "%s: column '%s': repeated columns are not supported", f,
                           c->name);
        if (e->repetition != REP_REQUIRED && e->repetition != REP_OPTIONAL)
            return pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: column '%s': bad repetition %d", f, c->name,
                           e->repetition);
        if (e->type == PQ_INT96)
            return pq_fail(PQ_READ_UNSUPPORTED, err, errcap, "%s: column '%s': INT96 is not supported", f, c->name);
        if (e->type < PQ_BOOLEAN || e->type > PQ_FIXED_LEN_BYTE_ARRAY)
            return pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: column '%s': bad physical type %d", f, c->name, e->type);
        if (e->type == PQ_FIXED_LEN_BYTE_ARRAY && (e->type_len < 1 || e->type_len > MAX_FLBA_LEN))
            return pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: column '%s': bad type_length %d", f, c->name,
                           e->type_len);
        c->ptype = e->type;
        c->type_len = e->type == PQ_FIXED_LEN_BYTE_ARRAY ? e->type_len : 0;
        c->required = e->repetition == REP_REQUIRED;
        c->field_id = e->has_field_id ? e->field_id : -1;
        column_ice_type(c, e);
    }
    return PQ_READ_OK;
}

static pq_read_status check_chunk(const pq_reader *r, const row_group *g, int gi, int ci, char *err, size_t errcap)
{
    const chunk_info *k = &g->chunks[ci];
    const pq_reader_column *c = &r->cols[ci];
    const char *f = r->file;
    if (k->external)
        return pq_fail(PQ_READ_UNSUPPORTED, err, errcap, "%s: column '%s': column chunk stored in another file", f,
                       c->name);
    if (k->encrypted)
        return pq_fail(PQ_READ_UNSUPPORTED, err, errcap, "%s: column '%s': encrypted column", f, c->name);
    if (!k->has_meta)
        return pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: column '%s': row group %d has no column metadata", f, c->name,
                       gi);
    if (k->type != c->ptype)
        return pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: column '%s': row group %d says type %s, schema %s", f,
                       c->name, gi, ptype_name(k->type), ptype_name(c->ptype));
    if (k->codec != CODEC_NONE && k->codec != CODEC_SNAPPY && k->codec != CODEC_GZIP && k->codec != CODEC_ZSTD)
        return pq_fail(PQ_READ_UNSUPPORTED, err, errcap, "%s: column '%s': codec %s is not supported", f, c->name,
                       codec_name(k->codec));
    uint32_t ok = 1u << ENC_PLAIN | 1u << ENC_PLAIN_DICTIONARY | 1u << ENC_RLE | 1u << ENC_RLE_DICTIONARY |
                  1u << ENC_BIT_PACKED; /* BIT_PACKED: listed by old writers for levels; refused if used */
    for (int e = 0; e < 32; e++)
        if ((k->encodings & (1u << e)) && !(ok & (1u << e)))
            return pq_fail(PQ_READ_UNSUPPORTED, err, errcap, "%s: column '%s': encoding %s (%d) is not supported", f,
                           c->name, encoding_name(e), e);
    if (k->odd_encoding)
        return pq_fail(PQ_READ_UNSUPPORTED, err, errcap, "%s: column '%s': unknown encoding", f, c->name);
    if (k->num_values != g->num_rows)
        return pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: column '%s': row group %d has %lld values for %lld rows", f,
                       c->name, gi, (long long)k->num_values, (long long)g->num_rows);
    int64_t start = k->data_page_offset;
    if (k->has_dict_offset && k->dict_page_offset > 0 && k->dict_page_offset < start)
        start = k->dict_page_offset;
    if (start < 4 || k->total_compressed < 0 || (uint64_t)start > r->footer_start ||
        (uint64_t)k->total_compressed > r->footer_start - (uint64_t)start)
        return pq_fail(PQ_READ_CORRUPT, err, errcap,
                       "%s: column '%s': row group %d chunk at %lld+%lld is outside the data (%zu bytes)", f, c->name,
                       gi, (long long)start, (long long)k->total_compressed, r->footer_start);
    return PQ_READ_OK;
}

static pq_read_status parse_footer(pq_reader *r, const uint8_t *p, size_t n, char *err, size_t errcap)
{
    tr t = {.p = p, .end = p + n, .alloc_left = n * FOOTER_ALLOC_FACTOR + FOOTER_ALLOC_SLACK};
    schema_elem *el = NULL;
    uint32_t n_el = 0;
    bool have_schema = false, have_rows = false, have_groups = false, encrypted = false;
    pq_read_status st = PQ_READ_OK;
    if (!struct_enter(&t))
        return PQ_READ_CORRUPT;
    int16_t last = 0, id;
    uint8_t type;
    while (tr_field(&t, &last, &id, &type)) {
        if (id == 2 && want(&t, type, TC_LIST) && !have_schema) {
            uint8_t elem;
            n_el = tr_list(&t, &elem);
            if (n_el && elem != TC_STRUCT)
                tr_fail(&t, "schema list of the wrong type");
            if (n_el > MAX_COLUMNS + 1)
                tr_fail(&t, "too many schema elements");
            if (!tr_ok(&t))
                break;
            el = tr_calloc(&t, n_el, sizeof *el);
            if (!el)
                break;
            for (uint32_t i = 0; i < n_el && tr_ok(&t); i++)
                parse_schema_elem(&t, &el[i]);
            have_schema = true;
        } else if (id == 3) {
            r->num_rows = field_i64(&t, type);
            have_rows = true;
        } else if (id == 4 && want(&t, type, TC_LIST) && !have_groups) {
            uint8_t elem;
            uint32_t ng = tr_list(&t, &elem);
            if (ng && elem != TC_STRUCT)
                tr_fail(&t, "row group list of the wrong type");
            if (ng > INT32_MAX / 2)
                tr_fail(&t, "too many row groups");
            if (!tr_ok(&t))
                break;
            r->groups = tr_calloc(&t, ng, sizeof *r->groups);
            if (!r->groups)
                break;
            for (uint32_t i = 0; i < ng && tr_ok(&t); i++) {
                parse_row_group(&t, &r->groups[i]);
                r->n_groups = (int)i + 1; /* freed even when parsing stopped half way */
            }
            have_groups = true;
        } else if (id == 8) {
            encrypted = true;
            tr_skip(&t, type, false);
        } else
            tr_skip(&t, type, false);
    }
    if (!tr_ok(&t)) {
        st = pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: footer: %s", r->file, t.bad);
        goto out;
    }
    if (encrypted) {
        st = pq_fail(PQ_READ_UNSUPPORTED, err, errcap, "%s: encrypted files are not supported", r->file);
        goto out;
    }
    if (!have_schema || !have_rows || !have_groups) {
        st = pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: footer lacks its schema, num_rows or row groups", r->file);
        goto out;
    }
    st = open_schema(r, el, n_el, err, errcap);
out:
    free(el);
    return st;
}

static pq_read_status check_groups(pq_reader *r, char *err, size_t errcap)
{
    int64_t total = 0;
    for (int g = 0; g < r->n_groups; g++) {
        row_group *rg = &r->groups[g];
        if (rg->num_rows < 0 || rg->num_rows > INT64_MAX - total)
            return pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: row group %d: bad num_rows %lld", r->file, g,
                           (long long)rg->num_rows);
        total += rg->num_rows;
        if (rg->n_chunks != r->n_cols)
            return pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: row group %d has %d column chunks for %d columns",
                           r->file, g, rg->n_chunks, r->n_cols);
        for (int c = 0; c < r->n_cols; c++) {
            pq_read_status st = check_chunk(r, rg, g, c, err, errcap);
            if (st != PQ_READ_OK)
                return st;
        }
    }
    if (total != r->num_rows)
        return pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: num_rows %lld but the row groups hold %lld", r->file,
                       (long long)r->num_rows, (long long)total);
    return PQ_READ_OK;
}

pq_read_status pq_reader_open(const uint8_t *data, size_t size, const char *file, const pq_reader_limits *lim,
                              pq_reader **out, char *err, size_t errcap)
{
    *out = NULL;
    file = file ? file : "(parquet)";
    if (size < 12 || memcmp(data, "PAR1", 4) != 0)
        return pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: not a Parquet file (no leading PAR1)", file);
    if (memcmp(data + size - 4, "PARE", 4) == 0)
        return pq_fail(PQ_READ_UNSUPPORTED, err, errcap, "%s: encrypted footer (PARE) is not supported", file);
    if (memcmp(data + size - 4, "PAR1", 4) != 0)
        return pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: not a Parquet file (no trailing PAR1)", file);
    const uint8_t *l = data + size - 8;
    uint32_t flen = (uint32_t)l[0] | (uint32_t)l[1] << 8 | (uint32_t)l[2] << 16 | (uint32_t)l[3] << 24;
    pq_reader_limits lm = lim ? *lim : default_limits;
    if (lm.max_page_bytes <= 0)
        lm.max_page_bytes = default_limits.max_page_bytes;
    if (lm.max_chunk_bytes <= 0 || lm.max_chunk_bytes > (int64_t)UINT32_MAX)
        lm.max_chunk_bytes = lm.max_chunk_bytes > 0 ? (int64_t)UINT32_MAX : default_limits.max_chunk_bytes;
    if (lm.max_footer_bytes <= 0)
        lm.max_footer_bytes = default_limits.max_footer_bytes;
    if ((uint64_t)flen > size - 12 || (int64_t)flen > lm.max_footer_bytes)
        return pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: footer length %u does not fit the %zu byte file", file, flen,
                       size);
    pq_reader *r = calloc(1, sizeof *r);
    if (!r)
        return pq_fail(PQ_READ_LIMIT, err, errcap, "%s: out of memory", file);
    r->data = data;
    r->size = size;
    r->footer_start = size - 8 - flen;
    r->file = strdup(file);
    r->lim = lm;
    pq_read_status st = parse_footer(r, data + r->footer_start, flen, err, errcap);
    if (st == PQ_READ_OK)
        st = check_groups(r, err, errcap);
    if (st != PQ_READ_OK) {
        pq_reader_free(r);
        return st;
    }
    *out = r;
    return PQ_READ_OK;
}

void pq_reader_free(pq_reader *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_cols; i++)
        free(r->cols[i].name);
    free(r->cols);
    for (int g = 0; g < r->n_groups; g++)
        free(r->groups[g].chunks);
    free(r->groups);
    bb_free(&r->page);
    bb_free(&r->dict);
    free(r->dict_off);
    free(r->defs);
    if (r->zctx)
        ZSTD_freeDCtx(r->zctx);
    free(r->file);
    free(r);
}

int64_t pq_reader_num_rows(const pq_reader *r) { return r->num_rows; }
int pq_reader_num_row_groups(const pq_reader *r) { return r->n_groups; }
int64_t pq_reader_row_group_rows(const pq_reader *r, int rg)
{
    return rg >= 0 && rg < r->n_groups ? r->groups[rg].num_rows : -1;
}
int pq_reader_num_columns(const pq_reader *r) { return r->n_cols; }
const pq_reader_column *pq_reader_column_at(const pq_reader *r, int col)
{
    return col >= 0 && col < r->n_cols ? &r->cols[col] : NULL;
}

int pq_reader_find_field_id(const pq_reader *r, int field_id)
{
    for (int i = 0; i < r->n_cols; i++)
        if (r->cols[i].field_id == field_id && field_id >= 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------ decoding context */

typedef struct {
    pq_reader *r;
    const pq_reader_column *col;
    int rg;
    pq_column_data *out;
    int64_t budget; /* decoded bytes still allowed for this chunk */
    char *err;
    size_t errcap;
} chunk_ctx;

#define CFAIL(ctx, st, ...) chunk_fail(ctx, st, __VA_ARGS__)

static pq_read_status chunk_fail(chunk_ctx *x, pq_read_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static pq_read_status chunk_fail(chunk_ctx *x, pq_read_status st, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return pq_fail(st, x->err, x->errcap, "%s: column '%s', row group %d: %s", x->r->file, x->col->name, x->rg, what);
}

/* Counts `n` decoded bytes against the chunk's budget. */
static bool spend(chunk_ctx *x, uint64_t n)
{
    if (n > (uint64_t)x->budget)
        return false;
    x->budget -= (int64_t)n;
    return true;
}

/* Grows *p to hold `need` elements of `size` bytes; false on overflow or OOM. */
static bool grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return false;
        c *= 2;
    }
    if (c > SIZE_MAX / size)
        return false;
    void *q = realloc(*p, c * size);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

static bool bb_try_reserve(byte_buf *b, size_t n)
{
    if (n <= b->cap)
        return true;
    uint8_t *q = realloc(b->data, n);
    if (!q)
        return false;
    b->data = q;
    b->cap = n;
    return true;
}

/* ------------------------------------------------------------ decompression */

static pq_read_status decompress(chunk_ctx *x, int codec, const uint8_t *in, size_t n, size_t usize,
                                 const uint8_t **outp)
{
    pq_reader *r = x->r;
    if (codec == CODEC_NONE) {
        if (n != usize)
            return CFAIL(x, PQ_READ_CORRUPT, "uncompressed page is %zu bytes, header says %zu", n, usize);
        *outp = in;
        return PQ_READ_OK;
    }
    if (!bb_try_reserve(&r->page, usize ? usize : 1))
        return CFAIL(x, PQ_READ_LIMIT, "out of memory for a %zu byte page", usize);
    r->page.len = 0;
    *outp = r->page.data;
    if (codec == CODEC_SNAPPY) {
        size_t len;
        if (snappy_uncompressed_length((const char *)in, n, &len) != SNAPPY_OK || len != usize)
            return CFAIL(x, PQ_READ_CORRUPT, "snappy page does not decode to %zu bytes", usize);
        size_t got = usize;
        if (usize && snappy_uncompress((const char *)in, n, (char *)r->page.data, &got) != SNAPPY_OK)
            return CFAIL(x, PQ_READ_CORRUPT, "snappy page does not decode");
        if (got != usize)
            return CFAIL(x, PQ_READ_CORRUPT, "snappy page decodes to %zu bytes, header says %zu", got, usize);
        return PQ_READ_OK;
    }
    if (codec == CODEC_ZSTD) {
        if (!r->zctx && !(r->zctx = ZSTD_createDCtx()))
            return CFAIL(x, PQ_READ_LIMIT, "out of memory for zstd");
        size_t got = ZSTD_decompressDCtx(r->zctx, r->page.data, usize, in, n);
        if (ZSTD_isError(got) || got != usize)
            return CFAIL(x, PQ_READ_CORRUPT, "zstd page does not decode to %zu bytes", usize);
        return PQ_READ_OK;
    }
    if (codec == CODEC_GZIP) {
        /* sizes come from i32 header fields, so they fit uInt */
        z_stream z = {.next_in = (Bytef *)in, .avail_in = (uInt)n, .next_out = r->page.data, .avail_out = (uInt)usize};
        if (inflateInit2(&z, 15 + 32) != Z_OK) /* +32: gzip or zlib header */
            return CFAIL(x, PQ_READ_LIMIT, "zlib init failed");
        int rc = inflate(&z, Z_FINISH);
        size_t got = z.total_out;
        inflateEnd(&z);
        if (rc != Z_STREAM_END || got != usize)
            return CFAIL(x, PQ_READ_CORRUPT, "gzip page does not decode to %zu bytes", usize);
        return PQ_READ_OK;
    }
    return CFAIL(x, PQ_READ_UNSUPPORTED, "codec %s is not supported", codec_name(codec));
}

/* ------------------------------------------------------------ RLE / bit-packed hybrid */

typedef struct {
    const uint8_t *p, *end;
    int width;
    uint64_t rle_left;
    uint32_t rle_value;
    uint64_t bp_left; /* values left in the current bit-packed run */
    const uint8_t *bp;
    uint64_t bp_bit;
} hybrid;

static bool hy_next_run(hybrid *h)
{
    tr t = {.p = h->p, .end = h->end};
    uint64_t hdr = tr_uvarint(&t);
    if (!tr_ok(&t))
        return false;
    h->p = t.p;
    if (hdr & 1) {
        uint64_t groups = hdr >> 1, left = (uint64_t)(h->end - h->p);
        if (h->width > 0 ? groups > left || groups * (uint64_t)h->width > left : groups > (1ull << 40))
            return false;
        h->bp = h->p;
        h->bp_bit = 0;
        h->bp_left = groups * 8;
        h->p += groups * (uint64_t)h->width;
        return true;
    }
    h->rle_left = hdr >> 1;
    int vb = (h->width + 7) / 8;
    if ((size_t)(h->end - h->p) < (size_t)vb)
        return false;
    uint32_t v = 0;
    for (int i = 0; i < vb; i++)
        v |= (uint32_t)h->p[i] << (8 * i);
    h->p += vb;
    if (h->width < 32 && (v >> h->width) != 0)
        return false;
    h->rle_value = v;
    return true;
}

/* Decodes n values; false when the data runs out or is malformed. */
static bool hy_decode(hybrid *h, uint32_t *out, size_t n, uint8_t *out8)
{
    size_t i = 0;
    uint64_t mask = h->width == 32 ? 0xFFFFFFFFull : ((1ull << h->width) - 1);
    int guard = 0;
    while (i < n) {
        if (h->rle_left) {
            size_t k = h->rle_left < n - i ? (size_t)h->rle_left : n - i;
            if (out)
                for (size_t j = 0; j < k; j++)
                    out[i + j] = h->rle_value;
            else
                memset(out8 + i, (int)h->rle_value, k);
            h->rle_left -= k;
            i += k;
            guard = 0;
            continue;
        }
        if (h->bp_left) {
            size_t k = h->bp_left < n - i ? (size_t)h->bp_left : n - i;
            const uint8_t *b = h->bp;
            uint64_t bit = h->bp_bit;
            int w = h->width;
            for (size_t j = 0; j < k; j++) {
                uint64_t byte = bit >> 3;
                int sh = (int)(bit & 7);
                uint64_t acc = 0;
                int need = (sh + w + 7) >> 3;
                for (int q = 0; q < need; q++)
                    acc |= (uint64_t)b[byte + q] << (8 * q);
                uint32_t v = (uint32_t)((acc >> sh) & mask);
                if (out)
                    out[i + j] = v;
                else
                    out8[i + j] = (uint8_t)v;
                bit += (uint64_t)w;
            }
            h->bp_bit = bit;
            h->bp_left -= k;
            i += k;
            guard = 0;
            continue;
        }
        if (h->p >= h->end || !hy_next_run(h))
            return false;
        if (++guard > 1000000) /* endless empty runs */
            return false;
    }
    return true;
}

/* ------------------------------------------------------------ values */

static size_t value_width(const pq_reader_column *c)
{
    switch (c->ptype) {
    case PQ_BOOLEAN: return 1;
    case PQ_INT32:
    case PQ_FLOAT: return 4;
    case PQ_INT64:
    case PQ_DOUBLE: return 8;
    case PQ_FIXED_LEN_BYTE_ARRAY: return (size_t)c->type_len;
    default: return 0;
    }
}

/* Room for `nv` more fixed-width values. */
static pq_read_status fixed_room(chunk_ctx *x, int64_t nv)
{
    pq_column_data *o = x->out;
    size_t w = value_width(x->col);
    if ((uint64_t)nv > (uint64_t)x->budget / w || !spend(x, (uint64_t)nv * w))
        return CFAIL(x, PQ_READ_LIMIT, "decoded chunk would pass %lld bytes", (long long)x->r->lim.max_chunk_bytes);
    if (!grow((void **)&o->fixed, &o->fixed_cap, (size_t)(o->n_values + nv) * w, 1))
        return CFAIL(x, PQ_READ_LIMIT, "out of memory");
    return PQ_READ_OK;
}

static pq_read_status bytes_append(chunk_ctx *x, const uint8_t *p, uint32_t n)
{
    pq_column_data *o = x->out;
    if (!spend(x, (uint64_t)n + 4))
        return CFAIL(x, PQ_READ_LIMIT, "decoded chunk would pass %lld bytes", (long long)x->r->lim.max_chunk_bytes);
    if (!grow((void **)&o->bytes, &o->bytes_cap, o->bytes_len + n, 1) ||
        !grow((void **)&o->offsets, &o->offsets_cap, (size_t)o->n_values + 2, sizeof(uint32_t)))
        return CFAIL(x, PQ_READ_LIMIT, "out of memory");
    if (n)
        memcpy(o->bytes + o->bytes_len, p, n);
    o->bytes_len += n;
    o->n_values++;
    o->offsets[o->n_values] = (uint32_t)o->bytes_len;
    return PQ_READ_OK;
}

/* PLAIN values: nv of them from p[0..n). */
static pq_read_status decode_plain(chunk_ctx *x, const uint8_t *p, size_t n, int64_t nv)
{
    pq_column_data *o = x->out;
    const pq_reader_column *c = x->col;
    if (c->ptype == PQ_BYTE_ARRAY) {
        size_t off = 0;
        for (int64_t i = 0; i < nv; i++) {
            if (n - off < 4)
                return CFAIL(x, PQ_READ_CORRUPT, "PLAIN byte array value %lld runs past the page", (long long)i);
            uint32_t len =
                (uint32_t)p[off] | (uint32_t)p[off + 1] << 8 | (uint32_t)p[off + 2] << 16 | (uint32_t)p[off + 3] << 24;
            off += 4;
            if (len > n - off)
                return CFAIL(x, PQ_READ_CORRUPT, "PLAIN byte array length %u runs past the page", len);
            pq_read_status st = bytes_append(x, p + off, len);
            if (st != PQ_READ_OK)
                return st;
            off += len;
        }
        return PQ_READ_OK;
    }
    if (c->ptype == PQ_BOOLEAN) {
        if ((uint64_t)nv > (uint64_t)n * 8)
            return CFAIL(x, PQ_READ_CORRUPT, "%lld PLAIN booleans in %zu bytes", (long long)nv, n);
        pq_read_status st = fixed_room(x, nv);
        if (st != PQ_READ_OK)
            return st;
        for (int64_t i = 0; i < nv; i++)
            o->fixed[o->n_values + i] = (p[i >> 3] >> (i & 7)) & 1;
        o->n_values += nv;
        return PQ_READ_OK;
    }
    size_t w = value_width(c);
    if ((uint64_t)nv > n / w)
        return CFAIL(x, PQ_READ_CORRUPT, "%lld PLAIN values of %zu bytes in %zu bytes", (long long)nv, w, n);
    pq_read_status st = fixed_room(x, nv);
    if (st != PQ_READ_OK)
        return st;
    memcpy(o->fixed + (size_t)o->n_values * w, p, (size_t)nv * w);
    o->n_values += nv;
    return PQ_READ_OK;
}

/* Booleans RLE-encoded (data page v2 from Arrow): 4-byte length, hybrid width 1. */
static pq_read_status decode_rle_bool(chunk_ctx *x, const uint8_t *p, size_t n, int64_t nv)
{
    if (x->col->ptype != PQ_BOOLEAN)
        return CFAIL(x, PQ_READ_UNSUPPORTED, "RLE encoding for %s values", ptype_name(x->col->ptype));
    if (n < 4)
        return CFAIL(x, PQ_READ_CORRUPT, "RLE boolean page without its length");
    uint32_t len = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    if (len > n - 4)
        return CFAIL(x, PQ_READ_CORRUPT, "RLE boolean length %u past the page", len);
    pq_read_status st = fixed_room(x, nv);
    if (st != PQ_READ_OK)
        return st;
    hybrid h = {.p = p + 4, .end = p + 4 + len, .width = 1};
    if (!hy_decode(&h, NULL, (size_t)nv, x->out->fixed + x->out->n_values))
        return CFAIL(x, PQ_READ_CORRUPT, "RLE booleans are truncated or malformed");
    x->out->n_values += nv;
    return PQ_READ_OK;
}

static pq_read_status decode_dict_page(chunk_ctx *x, const uint8_t *p, size_t n, int32_t num)
{
    pq_reader *r = x->r;
    const pq_reader_column *c = x->col;
    /* every entry takes at least 4 bytes (a length, or a value of >= 4 bytes but BOOLEAN) */
    if (num < 0 ||
        (c->ptype != PQ_BOOLEAN && (size_t)num > n / (c->ptype == PQ_FIXED_LEN_BYTE_ARRAY ? value_width(c) : 4)))
        return CFAIL(x, PQ_READ_CORRUPT, "dictionary of %d values in %zu bytes", num, n);
    r->dict_n = 0;
    r->dict.len = 0;
    if (c->ptype == PQ_BYTE_ARRAY) {
        if (!grow((void **)&r->dict_off, &r->dict_off_cap, (size_t)num + 1, sizeof(uint32_t)))
            return CFAIL(x, PQ_READ_LIMIT, "out of memory");
        if (!spend(x, (uint64_t)num * 4 + n))
            return CFAIL(x, PQ_READ_LIMIT, "dictionary passes the chunk limit");
        size_t off = 0;
        r->dict_off[0] = 0;
        for (int32_t i = 0; i < num; i++) {
            if (n - off < 4)
                return CFAIL(x, PQ_READ_CORRUPT, "dictionary value %d runs past the page", i);
            uint32_t len =
                (uint32_t)p[off] | (uint32_t)p[off + 1] << 8 | (uint32_t)p[off + 2] << 16 | (uint32_t)p[off + 3] << 24;
            off += 4;
            if (len > n - off)
                return CFAIL(x, PQ_READ_CORRUPT, "dictionary value length %u runs past the page", len);
            bb_append(&r->dict, p + off, len); /* total <= n, already spent */
            off += len;
            r->dict_off[i + 1] = (uint32_t)r->dict.len;
        }
    } else {
        size_t w = value_width(c);
        if (c->ptype == PQ_BOOLEAN)
            return CFAIL(x, PQ_READ_UNSUPPORTED, "dictionary-encoded booleans");
        if ((size_t)num > n / w)
            return CFAIL(x, PQ_READ_CORRUPT, "dictionary of %d values in %zu bytes", num, n);
        if (!spend(x, (uint64_t)num * w))
            return CFAIL(x, PQ_READ_LIMIT, "dictionary passes the chunk limit");
        bb_append(&r->dict, p, (size_t)num * w);
    }
    r->dict_n = (uint32_t)num;
    return PQ_READ_OK;
}

static pq_read_status decode_dict_indices(chunk_ctx *x, const uint8_t *p, size_t n, int64_t nv, bool have_dict)
{
    pq_reader *r = x->r;
    pq_column_data *o = x->out;
    if (nv == 0)
        return PQ_READ_OK;
    if (!have_dict)
        return CFAIL(x, PQ_READ_CORRUPT, "dictionary-encoded page without a dictionary page");
    if (n < 1)
        return CFAIL(x, PQ_READ_CORRUPT, "dictionary page data without its bit width");
    int bw = p[0];
    if (bw > 32)
        return CFAIL(x, PQ_READ_CORRUPT, "dictionary index bit width %d > 32", bw);
    size_t w = value_width(x->col);
    if (x->col->ptype != PQ_BYTE_ARRAY) {
        pq_read_status st = fixed_room(x, nv);
        if (st != PQ_READ_OK)
            return st;
    }
    /* indices in batches: scratch stays IDX_BATCH entries whatever the page claims */
    hybrid h = {.p = p + 1, .end = p + n, .width = bw};
    for (int64_t done = 0; done < nv;) {
        size_t m = nv - done < IDX_BATCH ? (size_t)(nv - done) : IDX_BATCH;
        if (!hy_decode(&h, r->idx, m, NULL))
            return CFAIL(x, PQ_READ_CORRUPT, "dictionary indices are truncated or malformed");
        for (size_t i = 0; i < m; i++)
            if (r->idx[i] >= r->dict_n)
                return CFAIL(x, PQ_READ_CORRUPT, "dictionary index %u past the %u entries", r->idx[i], r->dict_n);
        if (x->col->ptype == PQ_BYTE_ARRAY) {
            /* a dictionary of empty strings has no buffer: NULL + 0 is undefined */
            const uint8_t *dict = r->dict.data ? r->dict.data : (const uint8_t *)"";
            for (size_t i = 0; i < m; i++) {
                uint32_t k = r->idx[i];
                pq_read_status st = bytes_append(x, dict + r->dict_off[k], r->dict_off[k + 1] - r->dict_off[k]);
                if (st != PQ_READ_OK)
                    return st;
            }
        } else {
            uint8_t *dst = o->fixed + (size_t)o->n_values * w;
            if (w == 4)
                for (size_t i = 0; i < m; i++)
                    memcpy(dst + i * 4, r->dict.data + (size_t)r->idx[i] * 4, 4);
            else if (w == 8)
                for (size_t i = 0; i < m; i++)
                    memcpy(dst + i * 8, r->dict.data + (size_t)r->idx[i] * 8, 8);
            else
                for (size_t i = 0; i < m; i++)
                    memcpy(dst + i * w, r->dict.data + (size_t)r->idx[i] * w, w);
            o->n_values += (int64_t)m;
        }
        done += (int64_t)m;
    }
    return PQ_READ_OK;
}

/* Definition levels of `num` rows into out->valid; returns the null count via *nulls. */
static pq_read_status decode_levels(chunk_ctx *x, const uint8_t *p, size_t n, int64_t num, int64_t *nulls)
{
    pq_column_data *o = x->out;
    *nulls = 0;
    if (num == 0)
        return PQ_READ_OK; /* o->valid may still be NULL */
    if (!spend(x, (uint64_t)num))
        return CFAIL(x, PQ_READ_LIMIT, "decoded chunk would pass %lld bytes", (long long)x->r->lim.max_chunk_bytes);
    if (!grow((void **)&o->valid, &o->valid_cap, (size_t)(o->n_rows + num), 1))
        return CFAIL(x, PQ_READ_LIMIT, "out of memory");
    uint8_t *v = o->valid + o->n_rows;
    if (x->col->required) {
        memset(v, 1, (size_t)num);
        *nulls = 0;
        return PQ_READ_OK;
    }
    hybrid h = {.p = p, .end = p + n, .width = 1};
    if (!hy_decode(&h, NULL, (size_t)num, v))
        return CFAIL(x, PQ_READ_CORRUPT, "definition levels are truncated or malformed");
    int64_t z = 0;
    for (int64_t i = 0; i < num; i++)
        z += v[i] == 0;
    *nulls = z;
    return PQ_READ_OK;
}

static pq_read_status decode_values(chunk_ctx *x, int enc, const uint8_t *p, size_t n, int64_t nv, bool have_dict)
{
    if (enc != ENC_PLAIN && enc != ENC_PLAIN_DICTIONARY && enc != ENC_RLE_DICTIONARY && enc != ENC_RLE)
        return CFAIL(x, PQ_READ_UNSUPPORTED, "encoding %s (%d) is not supported", encoding_name(enc), enc);
    if (nv == 0)
        return PQ_READ_OK; /* an all-null page: its value buffers may still be NULL */
    switch (enc) {
    case ENC_PLAIN: return decode_plain(x, p, n, nv);
    case ENC_RLE: return decode_rle_bool(x, p, n, nv);
    default: return decode_dict_indices(x, p, n, nv, have_dict);
    }
}

/* ------------------------------------------------------------ pages */

typedef struct {
    int32_t type, usize, csize;
    bool has_dp, has_dict, has_v2;
    int32_t num_values, encoding, def_enc, num_nulls, num_rows, dl_len, rl_len;
    bool is_compressed;
} page_hdr;

static void parse_sub(tr *t, page_hdr *h, int which)
{
    if (!struct_enter(t))
        return;
    h->is_compressed = true;
    int16_t last = 0, id;
    uint8_t type;
    while (tr_field(t, &last, &id, &type)) {
        if (id == 1)
            h->num_values = field_i32(t, type);
        else if (which == 5 && id == 2)
            h->encoding = field_i32(t, type);
        else if (which == 5 && id == 3)
            h->def_enc = field_i32(t, type);
        else if (which == 7 && id == 2)
            h->encoding = field_i32(t, type);
        else if (which == 8 && id == 2)
            h->num_nulls = field_i32(t, type);
        else if (which == 8 && id == 3)
            h->num_rows = field_i32(t, type);
        else if (which == 8 && id == 4)
            h->encoding = field_i32(t, type);
        else if (which == 8 && id == 5)
            h->dl_len = field_i32(t, type);
        else if (which == 8 && id == 6)
            h->rl_len = field_i32(t, type);
        else if (which == 8 && id == 7 && want_bool(t, type))
            h->is_compressed = type == TC_BOOL_TRUE;
        else
            tr_skip(t, type, false);
    }
    t->depth--;
}

static bool parse_page_header(tr *t, page_hdr *h)
{
    memset(h, 0, sizeof *h);
    h->type = -1;
    if (!struct_enter(t))
        return false;
    int16_t last = 0, id;
    uint8_t type;
    while (tr_field(t, &last, &id, &type)) {
        if (id == 1)
            h->type = field_i32(t, type);
        else if (id == 2)
            h->usize = field_i32(t, type);
        else if (id == 3)
            h->csize = field_i32(t, type);
        else if ((id == 5 || id == 7 || id == 8) && want(t, type, TC_STRUCT)) {
            bool *seen = id == 5 ? &h->has_dp : id == 7 ? &h->has_dict : &h->has_v2;
            *seen = true;
            parse_sub(t, h, id);
        } else
            tr_skip(t, type, false);
    }
    t->depth--;
    return tr_ok(t);
}

static pq_read_status data_page(chunk_ctx *x, const chunk_info *k, const page_hdr *h, const uint8_t *body,
                                bool have_dict, int64_t rows_left)
{
    int64_t num = h->num_values;
    if (num < 0 || num > rows_left)
        return CFAIL(x, PQ_READ_CORRUPT, "page of %lld values with %lld rows left", (long long)num,
                     (long long)rows_left);
    const uint8_t *p;
    size_t n;
    int64_t nulls = 0;
    pq_read_status st;
    if (h->type == PAGE_DATA) {
        if (!h->has_dp)
            return CFAIL(x, PQ_READ_CORRUPT, "data page without its header");
        if ((st = decompress(x, k->codec, body, (size_t)h->csize, (size_t)h->usize, &p)) != PQ_READ_OK)
            return st;
        n = (size_t)h->usize;
        if (!x->col->required) {
            if (h->def_enc != ENC_RLE)
                return CFAIL(x, PQ_READ_UNSUPPORTED, "definition level encoding %s", encoding_name(h->def_enc));
            if (n < 4)
                return CFAIL(x, PQ_READ_CORRUPT, "page too short for its definition levels");
            uint32_t dl = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            if (dl > n - 4)
                return CFAIL(x, PQ_READ_CORRUPT, "definition levels of %u bytes past the page", dl);
            if ((st = decode_levels(x, p + 4, dl, num, &nulls)) != PQ_READ_OK)
                return st;
            p += 4 + dl;
            n -= 4 + (size_t)dl;
        } else if ((st = decode_levels(x, NULL, 0, num, &nulls)) != PQ_READ_OK)
            return st;
    } else {
        if (!h->has_v2)
            return CFAIL(x, PQ_READ_CORRUPT, "data page v2 without its header");
        if (h->rl_len != 0)
            return CFAIL(x, PQ_READ_UNSUPPORTED, "repetition levels in a flat column");
        if (h->dl_len < 0 || h->dl_len > h->csize || h->dl_len > h->usize)
            return CFAIL(x, PQ_READ_CORRUPT, "definition levels of %d bytes past the page", h->dl_len);
        if (h->num_rows != h->num_values)
            return CFAIL(x, PQ_READ_CORRUPT, "v2 page with %d rows and %d values", h->num_rows, h->num_values);
        if (!x->col->required && h->dl_len == 0 && num > 0)
            return CFAIL(x, PQ_READ_CORRUPT, "optional column page without definition levels");
        if ((st = decode_levels(x, body, (size_t)h->dl_len, num, &nulls)) != PQ_READ_OK)
            return st;
        if (nulls != h->num_nulls)
            return CFAIL(x, PQ_READ_CORRUPT, "v2 page says %d nulls, its levels %lld", h->num_nulls, (long long)nulls);
        size_t cv = (size_t)(h->csize - h->dl_len), uv = (size_t)(h->usize - h->dl_len);
        const uint8_t *vin = body + h->dl_len;
        if ((st = decompress(x, h->is_compressed ? k->codec : CODEC_NONE, vin, cv, uv, &p)) != PQ_READ_OK)
            return st;
        n = uv;
    }
    x->out->n_rows += num;
    x->out->n_nulls += nulls;
    if (h->encoding == ENC_PLAIN_DICTIONARY || h->encoding == ENC_RLE_DICTIONARY)
        x->out->dict_pages++;
    else
        x->out->plain_pages++;
    return decode_values(x, h->encoding, p, n, num - nulls, have_dict);
}

static void column_data_reset(pq_column_data *d)
{
    d->n_rows = d->n_nulls = d->n_values = 0;
    d->dict_pages = d->plain_pages = 0;
    d->bytes_len = 0;
}

pq_read_status pq_reader_read_chunk(pq_reader *r, int rg, int col, pq_column_data *out, char *err, size_t errcap)
{
    if (rg < 0 || rg >= r->n_groups || col < 0 || col >= r->n_cols)
        return pq_fail(PQ_READ_CORRUPT, err, errcap, "%s: no row group %d / column %d", r->file, rg, col);
    const chunk_info *k = &r->groups[rg].chunks[col];
    const pq_reader_column *c = &r->cols[col];
    chunk_ctx x = {
        .r = r, .col = c, .rg = rg, .out = out, .budget = r->lim.max_chunk_bytes, .err = err, .errcap = errcap};
    column_data_reset(out);
    if (c->ptype == PQ_BYTE_ARRAY) {
        if (!grow((void **)&out->offsets, &out->offsets_cap, 1, sizeof(uint32_t)))
            return CFAIL(&x, PQ_READ_LIMIT, "out of memory");
        out->offsets[0] = 0;
    }
    int64_t start = k->data_page_offset;
    if (k->has_dict_offset && k->dict_page_offset > 0 && k->dict_page_offset < start)
        start = k->dict_page_offset;
    tr t = {.p = r->data + start, .end = r->data + start + k->total_compressed};
    int64_t rows = r->groups[rg].num_rows;
    bool have_dict = false, seen_data = false;
    r->dict_n = 0;
    while (out->n_rows < rows) {
        if (t.p >= t.end)
            return CFAIL(&x, PQ_READ_CORRUPT, "chunk ends after %lld of %lld rows", (long long)out->n_rows,
                         (long long)rows);
        page_hdr h;
        if (!parse_page_header(&t, &h))
            return CFAIL(&x, PQ_READ_CORRUPT, "page header: %s", t.bad ? t.bad : "malformed");
        if (h.csize < 0 || h.usize < 0 || (size_t)h.csize > tr_left(&t))
            return CFAIL(&x, PQ_READ_CORRUPT, "page of %d bytes past the chunk", h.csize);
        if (h.usize > r->lim.max_page_bytes)
            return CFAIL(&x, PQ_READ_LIMIT, "page of %d bytes passes the %lld byte limit", h.usize,
                         (long long)r->lim.max_page_bytes);
        const uint8_t *body = t.p;
        t.p += h.csize;
        pq_read_status st = PQ_READ_OK;
        if (h.type == PAGE_DICTIONARY) {
            if (!h.has_dict || have_dict || seen_data)
                return CFAIL(&x, PQ_READ_CORRUPT, "misplaced or repeated dictionary page");
            if (h.encoding != ENC_PLAIN && h.encoding != ENC_PLAIN_DICTIONARY)
                return CFAIL(&x, PQ_READ_UNSUPPORTED, "dictionary page encoding %s", encoding_name(h.encoding));
            const uint8_t *p;
            if ((st = decompress(&x, k->codec, body, (size_t)h.csize, (size_t)h.usize, &p)) != PQ_READ_OK)
                return st;
            /* the dictionary is decoded from r->page; copy out before the next page reuses it */
            if ((st = decode_dict_page(&x, p, (size_t)h.usize, h.num_values)) != PQ_READ_OK)
                return st;
            have_dict = true;
        } else if (h.type == PAGE_DATA || h.type == PAGE_DATA_V2) {
            seen_data = true;
            st = data_page(&x, k, &h, body, have_dict, rows - out->n_rows);
        } else if (h.type != PAGE_INDEX) {
            return CFAIL(&x, PQ_READ_CORRUPT, "unknown page type %d", h.type);
        }
        if (st != PQ_READ_OK)
            return st;
    }
    if (out->n_values != out->n_rows - out->n_nulls)
        return CFAIL(&x, PQ_READ_CORRUPT, "%lld values for %lld rows with %lld nulls", (long long)out->n_values,
                     (long long)out->n_rows, (long long)out->n_nulls);
    return PQ_READ_OK;
}

void pq_column_data_free(pq_column_data *d)
{
    free(d->valid);
    free(d->fixed);
    free(d->offsets);
    free(d->bytes);
    memset(d, 0, sizeof *d);
}

/* ------------------------------------------------------------ fuzzing */

int pq_reader_fuzz_one(const uint8_t *data, size_t size)
{
    pq_reader_limits lim = {.max_page_bytes = 1 << 20, .max_chunk_bytes = 8 << 20, .max_footer_bytes = 1 << 20};
    pq_reader *r;
    char err[256];
    if (pq_reader_open(data, size, "fuzz", &lim, &r, err, sizeof err) != PQ_READ_OK)
        return 0;
    pq_column_data d = {0};
    for (int g = 0; g < pq_reader_num_row_groups(r); g++)
        for (int c = 0; c < pq_reader_num_columns(r); c++)
            pq_reader_read_chunk(r, g, c, &d, err, sizeof err);
    pq_column_data_free(&d);
    pq_reader_free(r);
    return 0;
}
