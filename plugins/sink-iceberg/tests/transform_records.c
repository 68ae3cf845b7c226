/*
 * Test fixture: turns source-generate's flat JSON events into Arrow records
 * (a struct array per batch) with a declared schema, the way the real
 * transform-validate does, so sink-iceberg can be tested on its own.
 *
 *   schema: "event_id:u!,event_type:u!,timestamp:tsu:UTC!,price:d:10,2,quantity:i"
 *       name:format, "!" = required (non-nullable; a message without it is nacked)
 *       formats: u l i g b tsu:UTC tdD d:P,S
 *       a tdD field absent from the JSON is derived from `date_from` (a timestamp field)
 *   null_required: a missing required field becomes a null (breaking the
 *       declared schema) instead of a nack
 *   kafka_topic / kafka_partitions: pretend the messages came from Kafka
 *       (origin topic, partition = n % partitions, per-partition offsets from 0)
 */
#define _GNU_SOURCE
#include <ecflow/plugin.h>

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char *schema;
    char *date_from;
    char *kafka_topic;
    int64_t kafka_partitions;
    bool null_required;
} rec_config;

static const ecf_option rec_options[] = {
    ECF_OPT_STRING("schema", rec_config, schema, NULL, ECF_REQUIRED, "fields, \"name:fmt[!],...\""),
    ECF_OPT_STRING("date_from", rec_config, date_from, "timestamp", 0, "timestamp field that date fields derive from"),
    ECF_OPT_STRING("kafka_topic", rec_config, kafka_topic, NULL, 0, "mark messages as read from this Kafka topic"),
    ECF_OPT_INT("kafka_partitions", rec_config, kafka_partitions, "3", 1, 1000, "Kafka partitions to spread over"),
    ECF_OPT_BOOL("null_required", rec_config, null_required, "false",
                 "emit a null where a required field is missing instead of nacking: a transform that breaks "
                 "the schema it declared, as sink-iceberg must survive"),
    ECF_OPT_END,
};

typedef struct {
    char *name, *format;
    bool required;
    int precision, scale;
} field_def;

typedef struct {
    field_def *fields;
    int n;
    int64_t *offsets; /* per fake Kafka partition */
    int64_t seq;
    JsonParser *parser;
} rec_state;

/* ---- Arrow building ---- */

typedef struct {
    uint8_t *validity;
    uint8_t *values; /* fixed width values, or utf8 offsets */
    uint8_t *data;   /* utf8 bytes */
    size_t data_len, data_cap;
    int64_t nulls;
    const void *bufs[3];
} col_private;

static void release_array(struct ArrowArray *a)
{
    for (int64_t i = 0; i < a->n_children; i++) {
        struct ArrowArray *c = a->children[i];
        if (c->release)
            c->release(c);
        free(c);
    }
    free(a->children);
    col_private *p = a->private_data;
    if (p) {
        free(p->validity);
        free(p->values);
        free(p->data);
        free(p);
    }
    free(a->buffers);
    a->release = NULL;
}

static void release_schema(struct ArrowSchema *s)
{
    for (int64_t i = 0; i < s->n_children; i++) {
        s->children[i]->release(s->children[i]);
        free(s->children[i]);
    }
    free(s->children);
    free((char *)s->name);
    free((char *)s->format);
    s->release = NULL;
}

static size_t width_of(const char *fmt)
{
    if (strcmp(fmt, "l") == 0 || strncmp(fmt, "tsu", 3) == 0 || strcmp(fmt, "g") == 0)
        return 8;
    if (strcmp(fmt, "i") == 0 || strcmp(fmt, "tdD") == 0)
        return 4;
    if (strncmp(fmt, "d:", 2) == 0)
        return 16;
    return 0; /* u: offsets, b: bits */
}

static int64_t parse_ts(const char *s, bool *ok)
{
    struct tm tm = {0};
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest) {
        *ok = false;
        return 0;
    }
    int64_t us = (int64_t)timegm(&tm) * 1000000;
    if (*rest == '.') {
        rest++;
        int64_t frac = 0, scale = 100000;
        while (*rest >= '0' && *rest <= '9') {
            frac += (*rest - '0') * scale;
            scale /= 10;
            rest++;
        }
        us += frac;
    }
    *ok = true;
    return us;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static ecf_status rec_process(ecf_stage *s, ecf_batch *in)
{
    rec_config *cfg = ecf_config(s);
    rec_state *st = ecf_state(s);
    uint32_t n = ecf_batch_count(s, in);
    ecf_batch *out = ecf_batch_new(s);
    /* columns */
    col_private *cols = calloc((size_t)st->n, sizeof *cols);
    for (int c = 0; c < st->n; c++) {
        cols[c].validity = calloc((n + 8) / 8 + 1, 1);
        size_t w = width_of(st->fields[c].format);
        if (strcmp(st->fields[c].format, "u") == 0)
            cols[c].values = calloc((size_t)n + 1, 4);
        else if (strcmp(st->fields[c].format, "b") == 0)
            cols[c].values = calloc((n + 8) / 8 + 1, 1);
        else
            cols[c].values = calloc((size_t)n + 1, w);
    }
    uint32_t rows = 0;
    for (uint32_t i = 0; i < n; i++) {
        ecf_message *m = ecf_batch_message(s, in, i);
        GError *ge = NULL;
        if (!json_parser_load_from_data(st->parser, (const char *)m->payload, m->payload_len, &ge)) {
            ecf_nack(s, m, ECF_ERR_INVALID, ge->message);
            g_error_free(ge);
            continue;
        }
        JsonNode *root = json_parser_get_root(st->parser);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
            ecf_nack(s, m, ECF_ERR_INVALID, "not a JSON object");
            continue;
        }
        JsonObject *o = json_node_get_object(root);
        /* check required fields first */
        bool ok = true;
        for (int c = 0; c < st->n && ok; c++) {
            const field_def *f = &st->fields[c];
            bool derived = strcmp(f->format, "tdD") == 0 && !json_object_has_member(o, f->name);
            JsonNode *v = json_object_get_member(o, derived ? cfg->date_from : f->name);
            if (f->required && (!v || JSON_NODE_HOLDS_NULL(v)))
                ok = false;
        }
        if (!ok && !cfg->null_required) {
            ecf_nack(s, m, ECF_ERR_INVALID, "a required field is missing");
            continue;
        }
        for (int c = 0; c < st->n; c++) {
            const field_def *f = &st->fields[c];
            col_private *col = &cols[c];
            bool derived = strcmp(f->format, "tdD") == 0 && !json_object_has_member(o, f->name);
            JsonNode *v = json_object_get_member(o, derived ? cfg->date_from : f->name);
            bool valid = v && !JSON_NODE_HOLDS_NULL(v) && JSON_NODE_HOLDS_VALUE(v);
            const char *fmt = f->format;
            if (strcmp(fmt, "u") == 0) {
                const char *str = "";
                char tmp[64];
                if (valid) {
                    GType t = json_node_get_value_type(v);
                    if (t == G_TYPE_STRING)
                        str = json_node_get_string(v);
                    else if (t == G_TYPE_INT64) {
                        snprintf(tmp, sizeof tmp, "%" G_GINT64_FORMAT, json_node_get_int(v));
                        str = tmp;
                    } else if (t == G_TYPE_DOUBLE) {
                        snprintf(tmp, sizeof tmp, "%.17g", json_node_get_double(v));
                        str = tmp;
                    } else
                        str = json_node_get_boolean(v) ? "true" : "false";
                }
                size_t len = valid ? strlen(str) : 0;
                if (col->data_len + len > col->data_cap) {
                    col->data_cap = (col->data_cap + len) * 2 + 64;
                    col->data = realloc(col->data, col->data_cap);
                }
                if (len)
                    memcpy(col->data + col->data_len, str, len);
                col->data_len += len;
                ((int32_t *)col->values)[rows + 1] = (int32_t)col->data_len;
            } else if (valid && strncmp(fmt, "tsu", 3) == 0) {
                bool tok = true;
                int64_t us = json_node_get_value_type(v) == G_TYPE_STRING ? parse_ts(json_node_get_string(v), &tok)
                                                                          : json_node_get_int(v);
                valid = tok;
                ((int64_t *)col->values)[rows] = us;
            } else if (valid && strcmp(fmt, "tdD") == 0) {
                bool tok = true;
                int64_t us = parse_ts(json_node_get_string(v), &tok);
                valid = tok;
                ((int32_t *)col->values)[rows] = (int32_t)floor_div(us, 86400000000LL);
            } else if (valid && strcmp(fmt, "l") == 0) {
                ((int64_t *)col->values)[rows] = json_node_get_int(v);
            } else if (valid && strcmp(fmt, "i") == 0) {
                ((int32_t *)col->values)[rows] = (int32_t)json_node_get_int(v);
            } else if (valid && strcmp(fmt, "g") == 0) {
                ((double *)col->values)[rows] = json_node_get_double(v);
            } else if (valid && strcmp(fmt, "b") == 0) {
                if (json_node_get_boolean(v))
                    col->values[rows / 8] |= (uint8_t)(1 << (rows % 8));
            } else if (valid && strncmp(fmt, "d:", 2) == 0) {
                double d = json_node_get_double(v);
                __int128 u = (__int128)llround(d * pow(10, f->scale));
                memcpy(col->values + (size_t)rows * 16, &u, 16);
            }
            if (valid)
                col->validity[rows / 8] |= (uint8_t)(1 << (rows % 8));
            else
                col->nulls++;
        }
        ecf_message_init mi = {.parent = m, .payload = m->payload, .payload_len = m->payload_len};
        if (cfg->kafka_topic) {
            int32_t part = (int32_t)(st->seq++ % cfg->kafka_partitions);
            mi.origin = (ecf_origin){ECF_ORIGIN_KAFKA, part, st->offsets[part]++, cfg->kafka_topic};
        } else
            mi.origin = m->origin;
        mi.event_time_us = m->event_time_us;
        mi.key = m->key;
        mi.key_len = m->key_len;
        ecf_batch_add(s, out, &mi);
        rows++;
    }
    if (rows == 0) {
        for (int c = 0; c < st->n; c++) {
            free(cols[c].validity);
            free(cols[c].values);
            free(cols[c].data);
        }
        free(cols);
        ecf_batch_release(s, out);
        return ECF_OK;
    }
    struct ArrowArray arr = {0};
    arr.length = rows;
    arr.n_buffers = 1;
    arr.buffers = calloc(1, sizeof(void *));
    arr.n_children = st->n;
    arr.children = calloc((size_t)st->n, sizeof(void *));
    arr.release = release_array;
    for (int c = 0; c < st->n; c++) {
        struct ArrowArray *ch = calloc(1, sizeof *ch);
        col_private *p = malloc(sizeof *p);
        *p = cols[c];
        ch->length = rows;
        ch->null_count = p->nulls;
        bool is_str = strcmp(st->fields[c].format, "u") == 0;
        ch->n_buffers = is_str ? 3 : 2;
        ch->buffers = calloc(3, sizeof(void *));
        ch->buffers[0] = p->validity;
        ch->buffers[1] = p->values;
        if (is_str) {
            if (!p->data)
                p->data = calloc(1, 1);
            ch->buffers[2] = p->data;
        }
        ch->private_data = p;
        ch->release = release_array;
        arr.children[c] = ch;
    }
    free(cols);
    ecf_batch_set_records(s, out, &arr);
    return ecf_emit(s, NULL, out);
}

static ecf_status rec_create(ecf_stage *s)
{
    rec_config *cfg = ecf_config(s);
    rec_state *st = calloc(1, sizeof *st);
    st->offsets = calloc((size_t)cfg->kafka_partitions, sizeof(int64_t));
    st->parser = json_parser_new();
    /* split on commas that start a new "name:" (decimal formats hold a comma) */
    char *copy = strdup(cfg->schema), *p = copy;
    while (p && *p) {
        char *end = p;
        for (;;) {
            end = strchr(end, ',');
            if (!end || !(end[1] >= '0' && end[1] <= '9'))
                break;
            end++;
        }
        if (end)
            *end = '\0';
        char *colon = strchr(p, ':');
        if (colon) {
            *colon = '\0';
            st->fields = realloc(st->fields, sizeof(field_def) * (size_t)(st->n + 1));
            field_def *f = &st->fields[st->n++];
            memset(f, 0, sizeof *f);
            f->name = strdup(p);
            char *fmt = strdup(colon + 1);
            size_t l = strlen(fmt);
            if (l && fmt[l - 1] == '!') {
                fmt[l - 1] = '\0';
                f->required = true;
            }
            f->format = fmt;
            if (strncmp(fmt, "d:", 2) == 0)
                sscanf(fmt + 2, "%d,%d", &f->precision, &f->scale);
        }
        p = end ? end + 1 : NULL;
    }
    free(copy);
    struct ArrowSchema schema = {0};
    schema.format = strdup("+s");
    schema.name = strdup("");
    schema.release = release_schema;
    schema.n_children = st->n;
    schema.children = calloc((size_t)st->n, sizeof(void *));
    for (int i = 0; i < st->n; i++) {
        struct ArrowSchema *c = calloc(1, sizeof *c);
        c->name = strdup(st->fields[i].name);
        c->format = strdup(st->fields[i].format);
        c->flags = st->fields[i].required ? 0 : ARROW_FLAG_NULLABLE;
        c->release = release_schema;
        schema.children[i] = c;
    }
    ecf_set_state(s, st);
    return ecf_declare_schema(s, NULL, &schema);
}

static void rec_destroy(ecf_stage *s)
{
    rec_state *st = ecf_state(s);
    if (!st)
        return;
    for (int i = 0; i < st->n; i++) {
        free(st->fields[i].name);
        free(st->fields[i].format);
    }
    free(st->fields);
    free(st->offsets);
    g_object_unref(st->parser);
    free(st);
}

ECF_PLUGIN_DEFINE(.name = "transform-records", .kind = ECF_TRANSFORM, .version = "0.0.1",
                  .summary = "test fixture: flat JSON events into Arrow records", .config_size = sizeof(rec_config),
                  .options = rec_options, .create = rec_create, .process = rec_process, .destroy = rec_destroy, )
