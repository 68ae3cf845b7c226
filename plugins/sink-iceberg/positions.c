/* Kafka positions: see positions.h. */
#include "positions.h"

#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* topic (owned string) -> GHashTable of partition -> int64 (both in one
 * gint64 key/value pair: the partition as the key, boxed value) */
struct pos_map {
    GHashTable *topics;
};

static GHashTable *parts_new(void) { return g_hash_table_new_full(g_int_hash, g_int_equal, g_free, g_free); }

pos_map *pos_map_new(void)
{
    pos_map *m = g_new0(pos_map, 1);
    m->topics = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_hash_table_destroy);
    return m;
}

void pos_map_free(pos_map *m)
{
    if (!m)
        return;
    g_hash_table_destroy(m->topics);
    g_free(m);
}

void pos_map_clear(pos_map *m) { g_hash_table_remove_all(m->topics); }

size_t pos_map_count(const pos_map *m)
{
    size_t n = 0;
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, m->topics);
    while (g_hash_table_iter_next(&it, NULL, &v))
        n += g_hash_table_size(v);
    return n;
}

static int64_t *slot(const pos_map *m, const char *topic, int32_t partition)
{
    GHashTable *parts = g_hash_table_lookup(m->topics, topic);
    if (!parts)
        return NULL;
    gint key = partition;
    return g_hash_table_lookup(parts, &key);
}

bool pos_get(const pos_map *m, const char *topic, int32_t partition, int64_t *value)
{
    int64_t *v = slot(m, topic, partition);
    if (!v)
        return false;
    *value = *v;
    return true;
}

/* mode: 0 set, 1 raise, -1 lower */
static void put(pos_map *m, const char *topic, int32_t partition, int64_t value, int mode)
{
    int64_t *v = slot(m, topic, partition);
    if (v) {
        if (mode == 0 || (mode > 0 && value > *v) || (mode < 0 && value < *v))
            *v = value;
        return;
    }
    GHashTable *parts = g_hash_table_lookup(m->topics, topic);
    if (!parts) {
        parts = parts_new();
        g_hash_table_insert(m->topics, g_strdup(topic), parts);
    }
    gint *key = g_new(gint, 1);
    *key = partition;
    int64_t *val = g_new(int64_t, 1);
    *val = value;
    g_hash_table_insert(parts, key, val);
}

void pos_set(pos_map *m, const char *topic, int32_t partition, int64_t value) { put(m, topic, partition, value, 0); }
void pos_raise(pos_map *m, const char *topic, int32_t partition, int64_t value) { put(m, topic, partition, value, 1); }
void pos_lower(pos_map *m, const char *topic, int32_t partition, int64_t value) { put(m, topic, partition, value, -1); }

static gint cmp_str(gconstpointer a, gconstpointer b) { return strcmp(a, b); }
static gint cmp_int(gconstpointer a, gconstpointer b)
{
    gint x = *(const gint *)a, y = *(const gint *)b;
    return x < y ? -1 : x > y;
}

void pos_foreach(const pos_map *m, pos_fn fn, void *ctx)
{
    GList *topics = g_list_sort(g_hash_table_get_keys(m->topics), cmp_str);
    for (GList *t = topics; t; t = t->next) {
        GHashTable *parts = g_hash_table_lookup(m->topics, t->data);
        GList *keys = g_list_sort(g_hash_table_get_keys(parts), cmp_int);
        for (GList *k = keys; k; k = k->next)
            fn(ctx, t->data, *(gint *)k->data, *(int64_t *)g_hash_table_lookup(parts, k->data));
        g_list_free(keys);
    }
    g_list_free(topics);
}

static void raise_cb(void *ctx, const char *topic, int32_t partition, int64_t value)
{
    pos_raise(ctx, topic, partition, value);
}

void pos_merge_max(pos_map *into, const pos_map *from) { pos_foreach(from, raise_cb, into); }

void pos_copy(pos_map *dst, const pos_map *src)
{
    pos_map_clear(dst);
    pos_merge_max(dst, src);
}

typedef struct {
    JsonBuilder *b;
    const char *topic; /* the open object's topic */
} json_ctx;

static void json_cb(void *ctx, const char *topic, int32_t partition, int64_t value)
{
    json_ctx *j = ctx;
    if (!j->topic || strcmp(j->topic, topic) != 0) {
        if (j->topic)
            json_builder_end_object(j->b);
        json_builder_set_member_name(j->b, topic);
        json_builder_begin_object(j->b);
        j->topic = topic;
    }
    char key[16];
    snprintf(key, sizeof key, "%" PRId32, partition);
    json_builder_set_member_name(j->b, key);
    json_builder_add_int_value(j->b, value);
}

char *pos_to_json(const pos_map *m)
{
    json_ctx j = {.b = json_builder_new()};
    json_builder_begin_object(j.b);
    pos_foreach(m, json_cb, &j);
    if (j.topic)
        json_builder_end_object(j.b);
    json_builder_end_object(j.b);
    JsonNode *n = json_builder_get_root(j.b);
    char *s = json_to_string(n, FALSE);
    json_node_unref(n);
    g_object_unref(j.b);
    return s;
}

static bool parse_partition(const char *s, int32_t *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > INT32_MAX)
        return false;
    *out = (int32_t)v;
    return true;
}

bool pos_from_json(pos_map *m, const char *json)
{
    if (!json)
        return false;
    JsonParser *p = json_parser_new();
    bool ok = json_parser_load_from_data(p, json, -1, NULL);
    JsonNode *root = ok ? json_parser_get_root(p) : NULL;
    ok = root && JSON_NODE_HOLDS_OBJECT(root);
    pos_map *tmp = pos_map_new();
    if (ok) {
        JsonObject *o = json_node_get_object(root);
        GList *topics = json_object_get_members(o);
        for (GList *t = topics; ok && t; t = t->next) {
            JsonNode *tn = json_object_get_member(o, t->data);
            /* json-glib takes "\777" as an octal escape: a topic that is not
             * UTF-8 could never be written back into a summary */
            if (!JSON_NODE_HOLDS_OBJECT(tn) || !g_utf8_validate(t->data, -1, NULL)) {
                ok = false;
                break;
            }
            JsonObject *po = json_node_get_object(tn);
            GList *parts = json_object_get_members(po);
            for (GList *q = parts; ok && q; q = q->next) {
                JsonNode *vn = json_object_get_member(po, q->data);
                int32_t part;
                if (!parse_partition(q->data, &part) || !JSON_NODE_HOLDS_VALUE(vn) ||
                    json_node_get_value_type(vn) != G_TYPE_INT64 || json_node_get_int(vn) < 0) {
                    ok = false;
                    break;
                }
                pos_raise(tmp, t->data, part, json_node_get_int(vn));
            }
            g_list_free(parts);
        }
        g_list_free(topics);
    }
    if (ok)
        pos_merge_max(m, tmp);
    pos_map_free(tmp);
    g_object_unref(p);
    return ok;
}

typedef struct {
    GString *s;
    size_t max;
    bool cut;
} desc_ctx;

static void desc_cb(void *ctx, const char *topic, int32_t partition, int64_t value)
{
    desc_ctx *d = ctx;
    if (d->cut)
        return;
    if (d->s->len > d->max) {
        g_string_append(d->s, " ...");
        d->cut = true;
        return;
    }
    g_string_append_printf(d->s, "%s%s[%" PRId32 "]@%" PRId64, d->s->len ? " " : "", topic, partition, value);
}

char *pos_describe(const pos_map *m, size_t max_len)
{
    desc_ctx d = {.s = g_string_new(NULL), .max = max_len};
    pos_foreach(m, desc_cb, &d);
    return g_string_free(d.s, FALSE);
}

pos_fate pos_classify(const pos_map *committed, const pos_map *pending_lo, const pos_map *pending_hi, const char *topic,
                      int32_t partition, int64_t offset)
{
    int64_t next, lo, hi;
    if (committed && pos_get(committed, topic, partition, &next) && offset < next)
        return POS_DURABLE;
    if (pending_lo && pending_hi && pos_get(pending_lo, topic, partition, &lo) &&
        pos_get(pending_hi, topic, partition, &hi) && offset >= lo && offset < hi)
        return POS_PENDING;
    return POS_WRITE;
}
