/* The dedupe window kept with the table: see dedupe_store.h. */
#include "dedupe_store.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <zlib.h>

#define MAGIC "ECFDEDUP"
#define VERSION 1
#define HEADER 24
#define MAX_ATTEMPTS 10
#define NAME_MAX_LEN 200

/* ------------------------------------------------------------ the hash key */

bool dedupe_key_from_hex(const char *hex, uint8_t key[DEDUPE_KEY_BYTES])
{
    if (!hex || strlen(hex) != 2 * DEDUPE_KEY_BYTES)
        return false;
    for (int i = 0; i < DEDUPE_KEY_BYTES; i++) {
        int hi = g_ascii_xdigit_value(hex[2 * i]), lo = g_ascii_xdigit_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static const char *property(const table_metadata *tm, const char *name)
{
    JsonNode *p = json_object_get_member(tm->o, "properties");
    if (!p || !JSON_NODE_HOLDS_OBJECT(p))
        return NULL;
    return json_object_get_string_member_with_default(json_node_get_object(p), name, NULL);
}

static void set_property(table_metadata *tm, const char *name, const char *value)
{
    JsonNode *p = json_object_get_member(tm->o, "properties");
    if (!p || !JSON_NODE_HOLDS_OBJECT(p)) {
        json_object_set_object_member(tm->o, "properties", json_object_new());
        p = json_object_get_member(tm->o, "properties");
    }
    json_object_set_string_member(json_node_get_object(p), name, value);
}

/* 1: *key is the table's (from its property); 0: there is none; -1: malformed. */
static int key_of(const table_metadata *tm, const char *where, uint8_t key[DEDUPE_KEY_BYTES], char **err)
{
    const char *hex = property(tm, DEDUPE_KEY_PROPERTY);
    if (!hex)
        return 0;
    if (dedupe_key_from_hex(hex, key))
        return 1;
    *err = g_strdup_printf("table %s: property '%s' is not %d hex digits; remove it and a new key is made (the "
                           "dedupe window starts empty)",
                           where, DEDUPE_KEY_PROPERTY, 2 * DEDUPE_KEY_BYTES);
    return -1;
}

bool dedupe_table_key(const catalog_ref *ref, const ice_table *t, uint8_t key[DEDUPE_KEY_BYTES], bool *created,
                      char **err)
{
    *created = false;
    const char *where = t->cat.location ? t->cat.location : "";
    int r = key_of(&t->cat.meta, where, key, err);
    if (r != 0)
        return r > 0;
    catalog_table probe;
    catalog_table_init(&probe, ref);
    bool ok = false;
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        int loaded = catalog_load(&probe, err);
        if (loaded <= 0) {
            if (loaded == 0)
                *err = g_strdup_printf("table %s disappeared while its dedupe key was set", where);
            break;
        }
        r = key_of(&probe.meta, where, key, err);
        if (r != 0) { /* another writer set it meanwhile */
            ok = r > 0;
            break;
        }
        if (getrandom(key, DEDUPE_KEY_BYTES, 0) != DEDUPE_KEY_BYTES) {
            *err = g_strdup("getrandom failed: no random bytes for the dedupe hash key");
            break;
        }
        char hex[2 * DEDUPE_KEY_BYTES + 1];
        for (int i = 0; i < DEDUPE_KEY_BYTES; i++)
            snprintf(hex + 2 * i, 3, "%02x", key[i]);
        table_metadata next;
        tm_copy(&next, &probe.meta);
        set_property(&next, DEDUPE_KEY_PROPERTY, hex);
        /* a new version of the metadata: its time moves on (never back) */
        json_object_set_int_member(next.o, "last-updated-ms",
                                   MAX(g_get_real_time() / 1000, tm_last_updated_ms(&probe.meta)));
        fio_result fr = catalog_commit(&probe, &next, err);
        tm_clear(&next);
        if (fr == FIO_OK) {
            *created = ok = true;
            break;
        }
        if (fr != FIO_EXISTS)
            break; /* unknown outcome too: the next start reads what the table says */
        g_clear_pointer(err, g_free);
    }
    if (!ok && !*err)
        *err = g_strdup_printf("table %s: gave up setting its dedupe hash key after %d conflicting commits", where,
                               MAX_ATTEMPTS);
    catalog_table_clear(&probe);
    return ok;
}

/* ------------------------------------------------------------ names in summaries */

/* dedupe-*.stats, of [A-Za-z0-9-]: nothing that leaves metadata/. */
static bool valid_name(const char *n)
{
    size_t len = strlen(n);
    if (len > NAME_MAX_LEN || !g_str_has_prefix(n, "dedupe-") || !g_str_has_suffix(n, ".stats"))
        return false;
    for (size_t i = 0; i < len - strlen(".stats"); i++)
        if (!g_ascii_isalnum(n[i]) && n[i] != '-')
            return false;
    return true;
}

char **dedupe_files_of_summary(const char *value)
{
    GPtrArray *out = g_ptr_array_new();
    char **parts = value ? g_strsplit(value, ",", -1) : NULL;
    for (char **p = parts; p && *p; p++)
        if (valid_name(*p))
            g_ptr_array_add(out, g_strdup(*p));
    g_strfreev(parts);
    g_ptr_array_add(out, NULL);
    return (char **)g_ptr_array_free(out, FALSE);
}

char **dedupe_files_of_snapshot(const table_metadata *tm, int64_t snapshot_id)
{
    return dedupe_files_of_summary(tm_snapshot_summary(tm, snapshot_id, DEDUPE_SUMMARY_KEY));
}

/* ------------------------------------------------------------ file format */

static uint32_t crc(const uint8_t *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) { /* crc32 takes uInt lengths */
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

static uint32_t rd32(const uint8_t *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_header(byte_buf *out, size_t n, bool whole_window, const uint8_t key_id[8])
{
    bb_reset(out);
    bb_append(out, MAGIC, 8);
    bb_byte(out, VERSION & 0xff);
    bb_byte(out, VERSION >> 8);
    bb_byte(out, whole_window ? 1 : 0);
    bb_byte(out, 0);
    bb_u32le(out, (uint32_t)n);
    bb_append(out, key_id, 8);
}

void dedupe_file_encode(byte_buf *out, const dedupe_hash *h, size_t n, bool whole_window, const uint8_t key_id[8])
{
    put_header(out, n, whole_window, key_id);
    bb_reserve(out, 16 * n + 4);
    for (size_t i = 0; i < n; i++) {
        uint8_t b[16];
        dedupe_hash_to_bytes(h[i], b);
        bb_append(out, b, 16);
    }
    bb_u32le(out, crc(out->data, out->len));
}

/* Writes a commit's keys (or the whole window) as a dedupe file through
 * the IO's stream, a slice at a time: a million keys cost no 16 MB buffer
 * beside the window, only the slice (and an S3 part being filled). */
static bool write_keys(file_io *io, const char *path, const dedupe *d, bool whole, const uint8_t key_id[8],
                       size_t *n_out, char **err)
{
    enum { SLICE = 4096 };
    size_t n = dedupe_keys(d, !whole, 0, NULL, 0);
    fio_out *o = io->create(io, path, err);
    if (!o)
        return false;
    byte_buf b = {0};
    put_header(&b, n, whole, key_id);
    uLong c = crc32(0L, b.data, (uInt)b.len);
    int rc = io->write(o, b.data, b.len);
    dedupe_hash slice[SLICE];
    for (size_t done = 0; rc == 0 && done < n;) {
        size_t got = dedupe_keys(d, !whole, done, slice, SLICE);
        bb_reset(&b);
        for (size_t i = 0; i < got; i++) {
            uint8_t k[16];
            dedupe_hash_to_bytes(slice[i], k);
            bb_append(&b, k, 16);
        }
        c = crc32(c, b.data, (uInt)b.len);
        rc = io->write(o, b.data, b.len);
        done += got;
    }
    bb_reset(&b);
    bb_u32le(&b, (uint32_t)c);
    if (rc == 0)
        rc = io->write(o, b.data, b.len);
    bb_free(&b);
    if (rc != 0) {
        *err = io->error(o);
        io->abort(o);
        return false;
    }
    *n_out = n;
    return io->close(o, err) == 0;
}

bool dedupe_file_decode(const uint8_t *p, size_t len, const uint8_t key_id[8], dedupe_hash **out, size_t *n,
                        bool *whole_window, char **why)
{
    *out = NULL;
    *n = 0;
    if (len < HEADER + 4 || memcmp(p, MAGIC, 8) != 0) {
        *why = g_strdup_printf("not a dedupe file (%zu bytes, no %s header)", len, MAGIC);
        return false;
    }
    unsigned version = p[8] | (unsigned)p[9] << 8;
    if (version != VERSION || p[10] > 1 || p[11] != 0) {
        *why = g_strdup_printf("version %u, kind %u: this build reads version %d", version, p[10], VERSION);
        return false;
    }
    uint32_t count = rd32(p + 12);
    /* the size says how many hashes there can be; the count must agree */
    if ((len - HEADER - 4) % 16 != 0 || (uint64_t)count != (len - HEADER - 4) / 16) {
        *why = g_strdup_printf("header says %" G_GUINT32_FORMAT " keys, the file's %zu bytes hold %s", count, len,
                               (len - HEADER - 4) % 16 ? "a partial one (truncated?)" : "another number");
        return false;
    }
    if (rd32(p + len - 4) != crc(p, len - 4)) {
        *why = g_strdup("checksum mismatch (corrupt)");
        return false;
    }
    if (key_id && memcmp(p + 16, key_id, 8) != 0) {
        *why = g_strdup_printf("written under another hash key than the table's property '%s' now holds",
                               DEDUPE_KEY_PROPERTY);
        return false;
    }
    *whole_window = p[10] == 1;
    *out = g_new(dedupe_hash, count ? count : 1);
    for (uint32_t i = 0; i < count; i++)
        (*out)[i] = dedupe_hash_from_bytes(p + HEADER + 16 * (size_t)i);
    *n = count;
    return true;
}

/* ------------------------------------------------------------ the store */

struct dedupe_store {
    file_io *io;
    char *metadata_dir;
    char *tag;          /* names this writer's files */
    GPtrArray *files;   /* the list the table holds, oldest first */
    unsigned n_incr;    /* incremental files in it after the last whole window */
    uint64_t incr_keys; /* keys in those */
    bool need_whole;    /* the list lost a file: write the whole window next */
    char *prepared;     /* the file of the commit in progress (NULL: none) */
    bool prepared_whole;
    uint64_t prepared_keys;
    char *value; /* the summary value handed out */
    dedupe_warn_fn warn;
    void *warn_ctx;
};

static void warnf(dedupe_store *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void warnf(dedupe_store *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (s->warn)
        s->warn(s->warn_ctx, msg);
}

dedupe_store *dedupe_store_new(file_io *io, const char *location, const char *writer_id, dedupe_warn_fn warn,
                               void *warn_ctx)
{
    dedupe_store *s = g_new0(dedupe_store, 1);
    s->io = io;
    s->metadata_dir = fio_join(location, "metadata");
    g_autofree char *sha = g_compute_checksum_for_string(G_CHECKSUM_SHA256, writer_id, -1);
    s->tag = g_strndup(sha, 16);
    s->files = g_ptr_array_new_with_free_func(g_free);
    s->warn = warn;
    s->warn_ctx = warn_ctx;
    return s;
}

void dedupe_store_free(dedupe_store *s)
{
    if (!s)
        return;
    g_free(s->metadata_dir);
    g_free(s->tag);
    g_ptr_array_free(s->files, TRUE);
    g_free(s->prepared);
    g_free(s->value);
    g_free(s);
}

size_t dedupe_store_load(dedupe_store *s, dedupe *d, const char *value, unsigned *files_read)
{
    *files_read = 0;
    g_ptr_array_set_size(s->files, 0);
    s->n_incr = 0;
    s->incr_keys = 0;
    char **names = dedupe_files_of_summary(value);
    char **parts = value && *value ? g_strsplit(value, ",", -1) : NULL;
    if (parts && g_strv_length(parts) != g_strv_length(names)) {
        warnf(s, "the snapshot's %s names files outside metadata/dedupe-*.stats; those are ignored",
              DEDUPE_SUMMARY_KEY);
        s->need_whole = true;
    }
    g_strfreev(parts);
    /* this sink lists at most DEDUPE_MAX_INCREMENTS + 1: a longer list was
     * not written by it, and reading it all could take any time */
    guint n_names = g_strv_length(names), first = 0;
    if (n_names > DEDUPE_MAX_INCREMENTS + 1) {
        first = n_names - (DEDUPE_MAX_INCREMENTS + 1);
        warnf(s, "the snapshot's %s names %u files, more than the %d this sink writes; only the newest %d are read",
              DEDUPE_SUMMARY_KEY, n_names, DEDUPE_MAX_INCREMENTS + 1, DEDUPE_MAX_INCREMENTS + 1);
        s->need_whole = true;
    }
    uint8_t key_id[8];
    dedupe_key_id(d, key_id);
    size_t added = 0;
    for (char **n = names + first; *n; n++) {
        g_autofree char *path = fio_join(s->metadata_dir, *n);
        byte_buf b = {0};
        char *err = NULL, *why = NULL;
        dedupe_hash *h = NULL;
        size_t count = 0;
        bool whole = false;
        if (!s->io->read_all(s->io, path, &b, &err)) {
            warnf(s,
                  "dedupe file %s cannot be read (%s): its keys are not remembered; the next commit writes the "
                  "whole window",
                  path, err ? err : "unknown error");
            s->need_whole = true;
        } else if (!dedupe_file_decode(b.data, b.len, key_id, &h, &count, &whole, &why)) {
            warnf(s,
                  "dedupe file %s is ignored: %s; its keys are not remembered, and the next commit writes the "
                  "whole window",
                  path, why);
            s->need_whole = true;
        } else {
            /* past the window only the newest count */
            size_t from = count > dedupe_window(d) ? count - dedupe_window(d) : 0;
            added += dedupe_load(d, h + from, count - from);
            (*files_read)++;
            if (whole) {
                g_ptr_array_set_size(s->files, 0);
                s->n_incr = 0;
                s->incr_keys = 0;
            } else {
                s->n_incr++;
                s->incr_keys += count;
            }
            g_ptr_array_add(s->files, g_strdup(*n));
        }
        g_free(h);
        g_free(err);
        g_free(why);
        bb_free(&b);
    }
    g_strfreev(names);
    return added;
}

/* The summary value for the list plus `extra` (NULL: none). */
static const char *list_value(dedupe_store *s, const char *extra, bool extra_alone)
{
    GString *v = g_string_new(NULL);
    for (guint i = 0; !extra_alone && i < s->files->len; i++)
        g_string_append_printf(v, "%s%s", v->len ? "," : "", (const char *)g_ptr_array_index(s->files, i));
    if (extra)
        g_string_append_printf(v, "%s%s", v->len ? "," : "", extra);
    g_free(s->value);
    s->value = v->len ? g_string_free(v, FALSE) : (g_string_free(v, TRUE), NULL);
    return s->value;
}

const char *dedupe_store_prepare(dedupe_store *s, const dedupe *d)
{
    g_clear_pointer(&s->prepared, g_free);
    size_t n_pending = dedupe_pending(d, NULL);
    if (n_pending == 0 && !s->need_whole)
        return list_value(s, NULL, false);
    uint32_t window = dedupe_window(d);
    bool whole = s->need_whole || s->n_incr >= DEDUPE_MAX_INCREMENTS || s->incr_keys + n_pending > window;
    uint8_t key_id[8];
    dedupe_key_id(d, key_id);
    size_t n = 0;
    g_autofree char *uuid = g_uuid_string_random();
    char *name = g_strdup_printf("dedupe-%s-%s.stats", s->tag, uuid);
    g_autofree char *path = fio_join(s->metadata_dir, name);
    char *err = NULL;
    if (!write_keys(s->io, path, d, whole, key_id, &n, &err)) {
        warnf(s,
              "dedupe file %s not written (%s): this commit's keys are not remembered across a restart; the "
              "next commit writes the whole window",
              path, err ? err : "unknown error");
        g_free(err);
        g_free(name);
        s->need_whole = true;
        return list_value(s, NULL, false);
    }
    s->prepared = name;
    s->prepared_whole = whole;
    s->prepared_keys = n;
    return list_value(s, name, whole);
}

void dedupe_store_committed(dedupe_store *s)
{
    if (!s->prepared)
        return;
    if (s->prepared_whole) {
        g_ptr_array_set_size(s->files, 0);
        s->n_incr = 0;
        s->incr_keys = 0;
        s->need_whole = false;
    } else {
        s->n_incr++;
        s->incr_keys += s->prepared_keys;
    }
    g_ptr_array_add(s->files, g_steal_pointer(&s->prepared));
}

void dedupe_store_failed(dedupe_store *s, bool keep_file)
{
    if (!s->prepared)
        return;
    if (!keep_file) {
        g_autofree char *path = fio_join(s->metadata_dir, s->prepared);
        s->io->remove(s->io, path);
    }
    g_clear_pointer(&s->prepared, g_free);
}
