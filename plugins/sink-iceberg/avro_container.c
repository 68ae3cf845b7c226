/* Avro object container files: see avro_container.h. */
#include "avro_container.h"

#include <glib.h>
#include <json-glib/json-glib.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <zlib.h>

/* ------------------------------------------------------------ writer */

void avro_writer_begin(avro_writer *w, const char *schema_json, const char *const *meta)
{
    memset(w, 0, sizeof *w);
    if (getrandom(w->sync, sizeof w->sync, 0) != (ssize_t)sizeof w->sync) {
        for (size_t i = 0; i < sizeof w->sync; i++)
            w->sync[i] = (uint8_t)g_random_int();
    }
    bb_append(&w->out, "Obj\x01", 4);
    int64_t n = 2;
    for (const char *const *m = meta; m && *m; m += 2)
        n++;
    avro_long(&w->out, n); /* one map block with every entry */
    avro_string(&w->out, "avro.schema");
    avro_string(&w->out, schema_json);
    avro_string(&w->out, "avro.codec");
    avro_string(&w->out, "null");
    for (const char *const *m = meta; m && *m; m += 2) {
        avro_string(&w->out, m[0]);
        avro_string(&w->out, m[1]);
    }
    avro_long(&w->out, 0);
    bb_append(&w->out, w->sync, 16);
}

static void flush_block(avro_writer *w)
{
    if (w->block_count == 0)
        return;
    avro_long(&w->out, w->block_count);
    avro_long(&w->out, (int64_t)w->block.len);
    bb_append(&w->out, w->block.data, w->block.len);
    bb_append(&w->out, w->sync, 16);
    bb_reset(&w->block);
    w->block_count = 0;
}

void avro_writer_record_done(avro_writer *w)
{
    w->block_count++;
    if (w->block.len >= 1 << 20)
        flush_block(w);
}

void avro_writer_finish(avro_writer *w) { flush_block(w); }

void avro_writer_free(avro_writer *w)
{
    bb_free(&w->out);
    bb_free(&w->block);
}

/* ------------------------------------------------------------ reader */

typedef struct {
    const uint8_t *p, *end;
    bool bad;
} cursor;

/* Table files are input like any other: every count and size in them is
 * checked against the bytes that are really there, and decompression stops
 * at a bound (a deflate stream can expand ~1000x). */
#define AVRO_MAX_DECODED ((size_t)256 << 20)
#define AVRO_MAX_FIXED (1 << 20)

static int64_t rd_long(cursor *c)
{
    uint64_t v = 0;
    int shift = 0;
    while (c->p < c->end && shift < 64) {
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
        shift += 7;
    }
    c->bad = true;
    return 0;
}

/* A block's item count: Avro writes a negative count followed by the
 * block's byte size. Every item takes at least one byte in what is left
 * (true of every schema Iceberg writes), which bounds the count. */
static int64_t rd_count(cursor *c)
{
    int64_t count = rd_long(c);
    if (!c->bad && count < 0) {
        if (count == INT64_MIN) {
            c->bad = true;
            return 0;
        }
        count = -count;
        int64_t size = rd_long(c);
        if (size < 0 || size > c->end - c->p)
            c->bad = true;
    }
    if (!c->bad && count > c->end - c->p)
        c->bad = true;
    return c->bad ? 0 : count;
}

static const uint8_t *rd_bytes(cursor *c, size_t *n)
{
    int64_t len = rd_long(c);
    if (c->bad || len < 0 || len > c->end - c->p) {
        c->bad = true;
        *n = 0;
        return NULL;
    }
    const uint8_t *p = c->p;
    c->p += len;
    *n = (size_t)len;
    return p;
}

typedef struct {
    GPtrArray *arena;
    GHashTable *named; /* name -> av_schema* */
    char *err;
    size_t errcap;
} parse_ctx;

static void *arena_new(GPtrArray *arena, size_t size)
{
    void *p = g_malloc0(size ? size : 1);
    g_ptr_array_add(arena, p);
    return p;
}

static char *arena_strdup(GPtrArray *arena, const char *s)
{
    char *p = g_strdup(s);
    g_ptr_array_add(arena, p);
    return p;
}

static av_schema *parse_schema(parse_ctx *x, JsonNode *n, const char *ns);

static av_schema *primitive(parse_ctx *x, const char *name, const char *ns)
{
    static const struct {
        const char *name;
        av_kind kind;
    } prims[] = {{"null", AV_NULL},   {"boolean", AV_BOOLEAN}, {"int", AV_INT},     {"long", AV_LONG},
                 {"float", AV_FLOAT}, {"double", AV_DOUBLE},   {"bytes", AV_BYTES}, {"string", AV_STRING}};
    for (size_t i = 0; i < G_N_ELEMENTS(prims); i++)
        if (strcmp(prims[i].name, name) == 0) {
            av_schema *s = arena_new(x->arena, sizeof *s);
            s->kind = prims[i].kind;
            return s;
        }
    av_schema *s = g_hash_table_lookup(x->named, name);
    if (!s && ns) {
        g_autofree char *full = g_strdup_printf("%s.%s", ns, name);
        s = g_hash_table_lookup(x->named, full);
    }
    if (!s)
        snprintf(x->err, x->errcap, "avro schema: unknown type '%s'", name);
    return s;
}

static void register_name(parse_ctx *x, av_schema *s, JsonObject *o, const char *ns)
{
    const char *name = json_object_get_string_member_with_default(o, "name", NULL);
    if (!name)
        return;
    s->name = arena_strdup(x->arena, name);
    g_hash_table_insert(x->named, s->name, s);
    const char *own_ns = json_object_get_string_member_with_default(o, "namespace", ns);
    if (own_ns && !strchr(name, '.')) {
        char *full = g_strdup_printf("%s.%s", own_ns, name);
        g_ptr_array_add(x->arena, full);
        g_hash_table_insert(x->named, full, s);
    }
}

static av_schema *parse_schema(parse_ctx *x, JsonNode *n, const char *ns)
{
    if (!n)
        return NULL;
    if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING)
        return primitive(x, json_node_get_string(n), ns);
    if (JSON_NODE_HOLDS_ARRAY(n)) {
        JsonArray *a = json_node_get_array(n);
        av_schema *s = arena_new(x->arena, sizeof *s);
        s->kind = AV_UNION;
        s->n_branches = (int)json_array_get_length(a);
        s->branches = arena_new(x->arena, sizeof(av_schema *) * (size_t)s->n_branches);
        for (int i = 0; i < s->n_branches; i++)
            if (!(s->branches[i] = parse_schema(x, json_array_get_element(a, (guint)i), ns)))
                return NULL;
        return s;
    }
    if (!JSON_NODE_HOLDS_OBJECT(n)) {
        snprintf(x->err, x->errcap, "avro schema: unexpected JSON");
        return NULL;
    }
    JsonObject *o = json_node_get_object(n);
    const char *type = json_object_get_string_member_with_default(o, "type", NULL);
    if (!type) { /* {"type": {...}} or {"type": [...]} */
        return parse_schema(x, json_object_get_member(o, "type"), ns);
    }
    const char *own_ns = json_object_get_string_member_with_default(o, "namespace", ns);
    av_schema *s = arena_new(x->arena, sizeof *s);
    if (strcmp(type, "record") == 0 || strcmp(type, "error") == 0) {
        s->kind = AV_RECORD;
        register_name(x, s, o, ns);
        JsonArray *fields = json_object_get_array_member(o, "fields");
        s->n_fields = fields ? (int)json_array_get_length(fields) : 0;
        s->fields = arena_new(x->arena, sizeof(av_field) * (size_t)s->n_fields);
        for (int i = 0; i < s->n_fields; i++) {
            JsonObject *fo = json_array_get_object_element(fields, (guint)i);
            s->fields[i].name = arena_strdup(x->arena, json_object_get_string_member_with_default(fo, "name", ""));
            s->fields[i].field_id = (int)json_object_get_int_member_with_default(fo, "field-id", -1);
            if (!(s->fields[i].type = parse_schema(x, json_object_get_member(fo, "type"), own_ns)))
                return NULL;
        }
    } else if (strcmp(type, "enum") == 0) {
        s->kind = AV_ENUM;
        register_name(x, s, o, ns);
        JsonArray *sym = json_object_get_array_member(o, "symbols");
        s->n_symbols = sym ? (int)json_array_get_length(sym) : 0;
        s->symbols = arena_new(x->arena, sizeof(char *) * (size_t)s->n_symbols);
        for (int i = 0; i < s->n_symbols; i++)
            s->symbols[i] = arena_strdup(x->arena, json_array_get_string_element(sym, (guint)i));
    } else if (strcmp(type, "array") == 0) {
        s->kind = AV_ARRAY;
        if (!(s->items = parse_schema(x, json_object_get_member(o, "items"), own_ns)))
            return NULL;
    } else if (strcmp(type, "map") == 0) {
        s->kind = AV_MAP;
        if (!(s->items = parse_schema(x, json_object_get_member(o, "values"), own_ns)))
            return NULL;
    } else if (strcmp(type, "fixed") == 0) {
        s->kind = AV_FIXED;
        register_name(x, s, o, ns);
        int64_t size = json_object_get_int_member_with_default(o, "size", -1);
        if (size < 0 || size > AVRO_MAX_FIXED) {
            snprintf(x->err, x->errcap, "Avro fixed type with size %" G_GINT64_FORMAT " (0 to %d)", size,
                     AVRO_MAX_FIXED);
            return NULL;
        }
        s->size = (int)size;
    } else {
        return primitive(x, type, ns); /* {"type":"int","logicalType":...} */
    }
    return s;
}

static bool decode(cursor *c, const av_schema *s, av_value *v, GPtrArray *arena, int depth)
{
    if (depth > 64 || c->bad)
        return false;
    v->kind = s->kind;
    v->schema = s;
    switch (s->kind) {
    case AV_NULL: return true;
    case AV_BOOLEAN:
        if (c->p >= c->end)
            return false;
        v->l = *c->p++;
        return true;
    case AV_INT:
    case AV_LONG:
    case AV_ENUM: v->l = rd_long(c); return !c->bad;
    case AV_FLOAT: {
        float f;
        if (c->end - c->p < 4)
            return false;
        memcpy(&f, c->p, 4);
        c->p += 4;
        v->d = f;
        return true;
    }
    case AV_DOUBLE:
        if (c->end - c->p < 8)
            return false;
        memcpy(&v->d, c->p, 8);
        c->p += 8;
        return true;
    case AV_BYTES:
    case AV_STRING: v->p = rd_bytes(c, &v->n); return !c->bad;
    case AV_FIXED:
        if (c->end - c->p < s->size)
            return false;
        v->p = c->p;
        v->n = (size_t)s->size;
        c->p += s->size;
        return true;
    case AV_UNION: {
        int64_t b = rd_long(c);
        if (c->bad || b < 0 || b >= s->n_branches)
            return false;
        return decode(c, s->branches[b], v, arena, depth + 1);
    }
    case AV_RECORD:
        v->n_items = (size_t)s->n_fields;
        v->items = arena_new(arena, sizeof(av_value) * v->n_items);
        for (int i = 0; i < s->n_fields; i++)
            if (!decode(c, s->fields[i].type, &v->items[i], arena, depth + 1))
                return false;
        return true;
    case AV_ARRAY:
    case AV_MAP: {
        GArray *items = g_array_new(FALSE, TRUE, sizeof(av_value));
        for (;;) {
            int64_t count = rd_count(c);
            if (c->bad || count == 0)
                break;
            for (int64_t i = 0; i < count && !c->bad; i++) {
                av_value kv[2] = {0};
                if (s->kind == AV_MAP) {
                    kv[0].kind = AV_STRING;
                    kv[0].p = rd_bytes(c, &kv[0].n);
                    if (!decode(c, s->items, &kv[1], arena, depth + 1))
                        c->bad = true;
                    g_array_append_vals(items, kv, 2);
                } else {
                    if (!decode(c, s->items, &kv[0], arena, depth + 1))
                        c->bad = true;
                    g_array_append_val(items, kv[0]);
                }
            }
        }
        v->n_items = items->len;
        v->items = arena_new(arena, sizeof(av_value) * (items->len ? items->len : 1));
        if (items->len) /* an empty GArray's data may be NULL */
            memcpy(v->items, items->data, sizeof(av_value) * items->len);
        g_array_free(items, TRUE);
        return !c->bad;
    }
    }
    return false;
}

/* Appends the inflated block to `out`, which never grows past
 * AVRO_MAX_DECODED: 0 ok, -1 corrupt, -2 too large. */
static int inflate_raw(const uint8_t *p, size_t n, byte_buf *out)
{
    if (n > UINT_MAX)
        return -1;
    z_stream z = {0};
    if (inflateInit2(&z, -15) != Z_OK)
        return -1;
    z.next_in = (Bytef *)p;
    z.avail_in = (uInt)n;
    int r;
    do {
        if (out->len >= AVRO_MAX_DECODED) {
            inflateEnd(&z);
            return -2;
        }
        size_t room = MIN(MIN(n * 4 + 4096, AVRO_MAX_DECODED - out->len), (size_t)UINT_MAX);
        bb_reserve(out, room);
        z.next_out = out->data + out->len;
        z.avail_out = (uInt)MIN(out->cap - out->len, AVRO_MAX_DECODED - out->len);
        size_t before = z.avail_out;
        r = inflate(&z, Z_NO_FLUSH);
        out->len += before - z.avail_out;
    } while (r == Z_OK);
    inflateEnd(&z);
    return r == Z_STREAM_END ? 0 : -1;
}

bool avro_file_read(const uint8_t *p, size_t n, avro_file *f, char *err, size_t errcap)
{
    memset(f, 0, sizeof *f);
    GPtrArray *arena = g_ptr_array_new_with_free_func(g_free);
    f->arena = arena;
    cursor c = {p, p + n, false};
    if (n < 4 || memcmp(p, "Obj\x01", 4) != 0) {
        snprintf(err, errcap, "not an Avro container file");
        return false;
    }
    c.p += 4;
    GPtrArray *keys = g_ptr_array_new(), *vals = g_ptr_array_new();
    for (;;) {
        int64_t count = rd_count(&c);
        if (c.bad || count == 0)
            break;
        for (int64_t i = 0; i < count && !c.bad; i++) {
            size_t kl, vl;
            const uint8_t *k = rd_bytes(&c, &kl), *v = rd_bytes(&c, &vl);
            if (c.bad)
                break;
            g_ptr_array_add(keys, g_strndup((const char *)k, kl));
            g_ptr_array_add(vals, g_strndup((const char *)v, vl));
        }
    }
    g_ptr_array_add(keys, NULL);
    g_ptr_array_add(vals, NULL);
    f->meta_keys = (char **)g_ptr_array_free(keys, FALSE);
    f->meta_values = (char **)g_ptr_array_free(vals, FALSE);
    if (c.bad || c.end - c.p < 16) {
        snprintf(err, errcap, "truncated Avro header");
        return false;
    }
    uint8_t sync[16];
    memcpy(sync, c.p, 16);
    c.p += 16;

    const char *schema_json = avro_file_meta(f, "avro.schema");
    const char *codec = avro_file_meta(f, "avro.codec");
    if (!codec)
        codec = "null";
    if (!schema_json) {
        snprintf(err, errcap, "Avro header has no avro.schema");
        return false;
    }
    if (strcmp(codec, "null") != 0 && strcmp(codec, "deflate") != 0) {
        snprintf(err, errcap, "Avro codec '%s' is not supported (null, deflate)", codec);
        return false;
    }
    JsonParser *jp = json_parser_new();
    GError *ge = NULL;
    if (!json_parser_load_from_data(jp, schema_json, -1, &ge)) {
        snprintf(err, errcap, "Avro schema is not JSON: %s", ge->message);
        g_error_free(ge);
        g_object_unref(jp);
        return false;
    }
    parse_ctx x = {arena, g_hash_table_new(g_str_hash, g_str_equal), err, errcap};
    err[0] = '\0';
    f->schema = parse_schema(&x, json_parser_get_root(jp), NULL);
    g_hash_table_destroy(x.named);
    g_object_unref(jp);
    if (!f->schema) {
        if (!err[0])
            snprintf(err, errcap, "cannot parse the Avro schema");
        return false;
    }
    /* decompress every block first: values point into f->data */
    int64_t total = 0;
    while (c.p < c.end) {
        int64_t count = rd_long(&c);
        size_t len;
        const uint8_t *blk = rd_bytes(&c, &len);
        if (c.bad || count < 0 || c.end - c.p < 16 || memcmp(c.p, sync, 16) != 0) {
            snprintf(err, errcap, "corrupt Avro block");
            return false;
        }
        c.p += 16;
        size_t before = f->data.len;
        if (strcmp(codec, "deflate") == 0) {
            int r = inflate_raw(blk, len, &f->data);
            if (r != 0) {
                snprintf(err, errcap, r == -2 ? "Avro file decompresses to more than %zu MiB" : "corrupt deflate block",
                         AVRO_MAX_DECODED >> 20);
                return false;
            }
        } else
            bb_append(&f->data, blk, len);
        /* every record takes at least one byte of its block */
        if ((uint64_t)count > f->data.len - before) {
            snprintf(err, errcap, "corrupt Avro block: %" G_GINT64_FORMAT " records in %zu bytes", count,
                     f->data.len - before);
            return false;
        }
        total += count;
    }
    f->records = g_new0(av_value, (gsize)total + 1);
    const uint8_t *base = f->data.data ? f->data.data : (const uint8_t *)""; /* no block: no buffer */
    cursor d = {base, base + f->data.len, false};
    for (int64_t i = 0; i < total; i++) {
        if (!decode(&d, f->schema, &f->records[i], arena, 0)) {
            snprintf(err, errcap, "corrupt Avro record %" G_GINT64_FORMAT, i);
            return false;
        }
        f->n_records++;
    }
    return true;
}

void avro_file_clear(avro_file *f)
{
    if (f->arena)
        g_ptr_array_free(f->arena, TRUE);
    g_strfreev(f->meta_keys);
    g_strfreev(f->meta_values);
    g_free(f->records);
    bb_free(&f->data);
    memset(f, 0, sizeof *f);
}

const char *avro_file_meta(const avro_file *f, const char *key)
{
    for (size_t i = 0; f->meta_keys && f->meta_keys[i]; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_values[i];
    return NULL;
}

const av_value *av_field_get(const av_value *rec, int field_id, const char *name)
{
    if (!rec || rec->kind != AV_RECORD)
        return NULL;
    const av_schema *s = rec->schema;
    int by_name = -1;
    for (int i = 0; i < s->n_fields; i++) {
        if (s->fields[i].field_id == field_id && field_id >= 0)
            return rec->items[i].kind == AV_NULL ? NULL : &rec->items[i];
        if (name && strcmp(s->fields[i].name, name) == 0)
            by_name = i;
    }
    if (by_name >= 0 && s->fields[by_name].field_id < 0)
        return rec->items[by_name].kind == AV_NULL ? NULL : &rec->items[by_name];
    return NULL;
}
