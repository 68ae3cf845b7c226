/* Iceberg schemas: see iceberg_schema.h. */
#include "iceberg_schema.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    ice_type_id id;
    const char *name;
} type_names[] = {
    {ICE_BOOLEAN, "boolean"}, {ICE_INT, "int"},       {ICE_LONG, "long"},           {ICE_FLOAT, "float"},
    {ICE_DOUBLE, "double"},   {ICE_DATE, "date"},     {ICE_TIMESTAMP, "timestamp"}, {ICE_TIMESTAMPTZ, "timestamptz"},
    {ICE_STRING, "string"},   {ICE_BINARY, "binary"},
};

const char *ice_type_str(ice_type t, char *buf, size_t cap)
{
    if (t.id == ICE_DECIMAL) {
        snprintf(buf, cap, "decimal(%d, %d)", t.precision, t.scale);
        return buf;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(type_names); i++)
        if (type_names[i].id == t.id) {
            snprintf(buf, cap, "%s", type_names[i].name);
            return buf;
        }
    snprintf(buf, cap, "unknown");
    return buf;
}

bool ice_type_parse(const char *s, ice_type *out)
{
    memset(out, 0, sizeof *out);
    int p, sc;
    if (sscanf(s, "decimal(%d ,%d)", &p, &sc) == 2 || sscanf(s, "decimal(%d, %d)", &p, &sc) == 2) {
        out->id = ICE_DECIMAL;
        out->precision = p;
        out->scale = sc;
        return p >= 1 && p <= 38 && sc >= 0 && sc <= p;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(type_names); i++)
        if (strcmp(type_names[i].name, s) == 0) {
            out->id = type_names[i].id;
            return true;
        }
    return false;
}

bool ice_type_equal(ice_type a, ice_type b)
{
    if (a.id != b.id)
        return false;
    return a.id != ICE_DECIMAL || (a.precision == b.precision && a.scale == b.scale);
}

int ice_decimal_bytes(int precision)
{
    /* smallest n with 2^(8n-1) > 10^precision */
    for (int n = 1; n <= 16; n++) {
        double max = 1;
        for (int i = 0; i < 8 * n - 1; i++)
            max *= 2;
        double need = 1;
        for (int i = 0; i < precision; i++)
            need *= 10;
        if (max >= need)
            return n;
    }
    return 16;
}

bool ice_type_from_arrow(const char *f, ice_type *out)
{
    memset(out, 0, sizeof *out);
    if (!f)
        return false;
    if (strcmp(f, "u") == 0 || strcmp(f, "U") == 0)
        out->id = ICE_STRING;
    else if (strcmp(f, "l") == 0)
        out->id = ICE_LONG;
    else if (strcmp(f, "i") == 0)
        out->id = ICE_INT;
    else if (strcmp(f, "g") == 0)
        out->id = ICE_DOUBLE;
    else if (strcmp(f, "f") == 0)
        out->id = ICE_FLOAT;
    else if (strcmp(f, "b") == 0)
        out->id = ICE_BOOLEAN;
    else if (strcmp(f, "tdD") == 0)
        out->id = ICE_DATE;
    else if (strcmp(f, "z") == 0)
        out->id = ICE_BINARY;
    else if (strncmp(f, "tsu:", 4) == 0)
        out->id = f[4] ? ICE_TIMESTAMPTZ : ICE_TIMESTAMP;
    else if (strncmp(f, "d:", 2) == 0) {
        int p, s, bits = 128;
        int n = sscanf(f + 2, "%d,%d,%d", &p, &s, &bits);
        if (n < 2 || bits != 128 || p < 1 || p > 38 || s < 0 || s > p)
            return false;
        out->id = ICE_DECIMAL;
        out->precision = p;
        out->scale = s;
    } else
        return false;
    return true;
}

void ice_schema_clear(ice_schema *s)
{
    for (int i = 0; i < s->n_fields; i++) {
        g_free(s->fields[i].name);
        g_free(s->fields[i].doc);
    }
    g_free(s->fields);
    memset(s, 0, sizeof *s);
}

void ice_schema_copy(ice_schema *dst, const ice_schema *src)
{
    dst->schema_id = src->schema_id;
    dst->n_fields = src->n_fields;
    dst->fields = g_new0(ice_field, (gsize)src->n_fields + 1);
    for (int i = 0; i < src->n_fields; i++) {
        dst->fields[i] = src->fields[i];
        dst->fields[i].name = g_strdup(src->fields[i].name);
        dst->fields[i].doc = g_strdup(src->fields[i].doc);
    }
}

const ice_field *ice_schema_find(const ice_schema *s, const char *name)
{
    for (int i = 0; i < s->n_fields; i++)
        if (strcmp(s->fields[i].name, name) == 0)
            return &s->fields[i];
    return NULL;
}

const ice_field *ice_schema_find_id(const ice_schema *s, int id)
{
    for (int i = 0; i < s->n_fields; i++)
        if (s->fields[i].id == id)
            return &s->fields[i];
    return NULL;
}

int ice_schema_max_id(const ice_schema *s)
{
    int m = 0;
    for (int i = 0; i < s->n_fields; i++)
        if (s->fields[i].id > m)
            m = s->fields[i].id;
    return m;
}

/* Arrow field metadata: int32 count, then (int32 len, key, int32 len, value)*. */
static char *arrow_metadata_get(const char *md, const char *key)
{
    if (!md)
        return NULL;
    int32_t n;
    memcpy(&n, md, 4);
    const char *p = md + 4;
    for (int32_t i = 0; i < n; i++) {
        int32_t kl, vl;
        memcpy(&kl, p, 4);
        const char *k = p + 4;
        memcpy(&vl, k + kl, 4);
        const char *v = k + kl + 4;
        if ((size_t)kl == strlen(key) && memcmp(k, key, (size_t)kl) == 0)
            return g_strndup(v, (gsize)vl);
        p = v + vl;
    }
    return NULL;
}

bool ice_schema_from_arrow(const struct ArrowSchema *arrow, ice_schema *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    if (!arrow || strcmp(arrow->format, "+s") != 0) {
        snprintf(err, errcap, "input records must be an Arrow struct (format \"+s\"), got \"%s\"",
                 arrow ? arrow->format : "(none)");
        return false;
    }
    out->fields = g_new0(ice_field, (gsize)arrow->n_children + 1);
    for (int64_t i = 0; i < arrow->n_children; i++) {
        const struct ArrowSchema *c = arrow->children[i];
        ice_field *f = &out->fields[out->n_fields];
        if (!c->name || !*c->name) {
            snprintf(err, errcap, "input field %" G_GINT64_FORMAT " has no name", i);
            ice_schema_clear(out);
            return false;
        }
        if (!ice_type_from_arrow(c->format, &f->type)) {
            snprintf(err, errcap,
                     "input field '%s' has Arrow type \"%s\", which has no Iceberg mapping here "
                     "(supported: u l i g f b tdD tsu: tsu:UTC d:P,S z)",
                     c->name, c->format);
            ice_schema_clear(out);
            return false;
        }
        if (ice_schema_find(out, c->name)) {
            snprintf(err, errcap, "input field '%s' appears twice", c->name);
            ice_schema_clear(out);
            return false;
        }
        f->id = (int)i + 1;
        f->name = g_strdup(c->name);
        f->required = !(c->flags & ARROW_FLAG_NULLABLE);
        f->doc = arrow_metadata_get(c->metadata, "ecflow:doc");
        out->n_fields++;
    }
    return true;
}

JsonNode *ice_schema_to_json(const ice_schema *s)
{
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "type");
    json_builder_add_string_value(b, "struct");
    json_builder_set_member_name(b, "schema-id");
    json_builder_add_int_value(b, s->schema_id);
    json_builder_set_member_name(b, "fields");
    json_builder_begin_array(b);
    for (int i = 0; i < s->n_fields; i++) {
        const ice_field *f = &s->fields[i];
        char tb[48];
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "id");
        json_builder_add_int_value(b, f->id);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, f->name);
        json_builder_set_member_name(b, "required");
        json_builder_add_boolean_value(b, f->required);
        json_builder_set_member_name(b, "type");
        json_builder_add_string_value(b, ice_type_str(f->type, tb, sizeof tb));
        if (f->doc) {
            json_builder_set_member_name(b, "doc");
            json_builder_add_string_value(b, f->doc);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    JsonNode *n = json_builder_get_root(b);
    g_object_unref(b);
    return n;
}

char *ice_schema_to_json_string(const ice_schema *s)
{
    JsonNode *n = ice_schema_to_json(s);
    char *str = json_to_string(n, FALSE);
    json_node_unref(n);
    return str;
}

bool ice_schema_from_json(JsonObject *o, ice_schema *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    out->schema_id = (int)json_object_get_int_member_with_default(o, "schema-id", 0);
    JsonArray *fields = json_object_has_member(o, "fields") ? json_object_get_array_member(o, "fields") : NULL;
    if (!fields) {
        snprintf(err, errcap, "schema %d has no fields", out->schema_id);
        return false;
    }
    guint n = json_array_get_length(fields);
    out->fields = g_new0(ice_field, n + 1);
    for (guint i = 0; i < n; i++) {
        JsonObject *fo = json_array_get_object_element(fields, i);
        ice_field *f = &out->fields[i];
        f->id = (int)json_object_get_int_member_with_default(fo, "id", 0);
        f->name = g_strdup(json_object_get_string_member_with_default(fo, "name", ""));
        f->required = json_object_get_boolean_member_with_default(fo, "required", FALSE);
        const char *doc = json_object_get_string_member_with_default(fo, "doc", NULL);
        f->doc = g_strdup(doc);
        out->n_fields++;
        JsonNode *tn = json_object_get_member(fo, "type");
        if (!tn || json_node_get_value_type(tn) != G_TYPE_STRING ||
            !ice_type_parse(json_node_get_string(tn), &f->type)) {
            snprintf(err, errcap,
                     "table column '%s' has a nested or unknown type; this sink writes only "
                     "primitive columns",
                     f->name);
            ice_schema_clear(out);
            return false;
        }
    }
    return true;
}

bool ice_type_writable(ice_type col, ice_type in)
{
    if (ice_type_equal(col, in))
        return true;
    if (col.id == ICE_LONG && in.id == ICE_INT)
        return true;
    if (col.id == ICE_DOUBLE && in.id == ICE_FLOAT)
        return true;
    if (col.id == ICE_DECIMAL && in.id == ICE_DECIMAL && col.scale == in.scale && col.precision >= in.precision)
        return true;
    return false;
}

/* Iceberg's allowed type promotions (spec: Schema Evolution). */
static bool promotable(ice_type from, ice_type to) { return !ice_type_equal(from, to) && ice_type_writable(to, from); }

int ice_schema_reconcile(const ice_schema *table, const ice_schema *input, int *last_column_id, ice_schema *evolved,
                         char *err, size_t errcap)
{
    char a[48], b[48];
    bool changed = false;
    /* Check every input column against the table first: all or nothing. */
    for (int i = 0; i < input->n_fields; i++) {
        const ice_field *in = &input->fields[i];
        const ice_field *col = ice_schema_find(table, in->name);
        if (!col)
            continue;
        if (ice_type_writable(col->type, in->type))
            continue;
        if (promotable(col->type, in->type)) {
            changed = true;
            continue;
        }
        snprintf(err, errcap,
                 "column '%s' is %s in the table but %s in the input; Iceberg allows only "
                 "int->long, float->double and wider decimal precision",
                 in->name, ice_type_str(col->type, a, sizeof a), ice_type_str(in->type, b, sizeof b));
        return -1;
    }
    for (int i = 0; i < table->n_fields; i++) {
        const ice_field *col = &table->fields[i];
        if (col->required && !ice_schema_find(input, col->name)) {
            snprintf(err, errcap, "required table column '%s' is missing from the input", col->name);
            return -1;
        }
    }
    for (int i = 0; i < input->n_fields; i++) {
        const ice_field *in = &input->fields[i];
        const ice_field *col = ice_schema_find(table, in->name);
        if (!col || (col->required && !in->required))
            changed = true;
    }
    if (!changed)
        return 0;
    ice_schema_copy(evolved, table);
    evolved->schema_id = table->schema_id + 1;
    for (int i = 0; i < input->n_fields; i++) {
        const ice_field *in = &input->fields[i];
        ice_field *col = NULL;
        for (int j = 0; j < evolved->n_fields; j++)
            if (strcmp(evolved->fields[j].name, in->name) == 0)
                col = &evolved->fields[j];
        if (col) {
            if (promotable(col->type, in->type))
                col->type = in->type;
            if (col->required && !in->required)
                col->required = false; /* required -> optional is allowed */
            continue;
        }
        evolved->fields = g_renew(ice_field, evolved->fields, (gsize)evolved->n_fields + 2);
        ice_field *f = &evolved->fields[evolved->n_fields++];
        f->id = ++*last_column_id;
        f->name = g_strdup(in->name);
        f->required = false; /* old rows have no value: new columns are optional */
        f->type = in->type;
        f->doc = g_strdup(in->doc);
    }
    return 1;
}
