/* Partition specs and transforms: see partition.h. */
#include "partition.h"

#include "iceberg_bounds.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

static const char *const transform_names[] = {
    [PT_IDENTITY] = "identity", [PT_YEAR] = "year", [PT_MONTH] = "month",
    [PT_DAY] = "day",           [PT_HOUR] = "hour", [PT_VOID] = "void",
};

const char *part_transform_name(part_transform t) { return transform_names[t]; }

static bool transform_from_name(const char *s, part_transform *t)
{
    for (int i = PT_IDENTITY; i <= PT_VOID; i++)
        if (strcmp(transform_names[i], s) == 0) {
            *t = (part_transform)i;
            return true;
        }
    return false;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* days since 1970-01-01 -> civil date (proleptic Gregorian; H. Hinnant) */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yy + (*m <= 2);
}

int32_t part_apply_date(part_transform t, int32_t days)
{
    int64_t y;
    int m, d;
    switch (t) {
    case PT_DAY: return days;
    case PT_MONTH: civil_from_days(days, &y, &m, &d); return (int32_t)((y - 1970) * 12 + (m - 1));
    case PT_YEAR: civil_from_days(days, &y, &m, &d); return (int32_t)(y - 1970);
    default: return days;
    }
}

int32_t part_apply_ts(part_transform t, int64_t micros)
{
    if (t == PT_HOUR)
        return (int32_t)floor_div(micros, 3600000000LL);
    return part_apply_date(t, (int32_t)floor_div(micros, 86400000000LL));
}

static bool temporal_source(ice_type_id id) { return id == ICE_DATE || id == ICE_TIMESTAMP || id == ICE_TIMESTAMPTZ; }

static bool field_result(part_field *f, const ice_field *src, char *err, size_t errcap)
{
    char tb[48];
    switch (f->transform) {
    case PT_IDENTITY:
    case PT_VOID: f->result = src->type; return true;
    case PT_HOUR:
        if (src->type.id == ICE_DATE) {
            snprintf(err, errcap, "partition field '%s': hour() needs a timestamp, '%s' is a date", f->name, src->name);
            return false;
        }
        /* fall through */
    case PT_YEAR:
    case PT_MONTH:
    case PT_DAY:
        if (!temporal_source(src->type.id)) {
            snprintf(err, errcap, "partition field '%s': %s() needs a date or timestamp, '%s' is %s", f->name,
                     part_transform_name(f->transform), src->name, ice_type_str(src->type, tb, sizeof tb));
            return false;
        }
        f->result.id = ICE_INT;
        return true;
    }
    return false;
}

bool part_spec_parse(char **items, const ice_schema *schema, part_spec *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    int n = 0;
    for (char **it = items; it && *it; it++)
        n++;
    out->fields = g_new0(part_field, (gsize)n + 1);
    for (char **it = items; it && *it; it++) {
        g_autofree char *s = g_strstrip(g_strdup(*it));
        part_field *f = &out->fields[out->n_fields];
        char *open = strchr(s, '('), *col = s;
        f->transform = PT_IDENTITY;
        if (open) {
            char *close = strrchr(s, ')');
            if (!close || close < open) {
                snprintf(err, errcap, "option 'partition_by': '%s' should look like day(timestamp)", *it);
                part_spec_clear(out);
                return false;
            }
            *open = *close = '\0';
            col = g_strstrip(open + 1);
            if (!transform_from_name(g_strstrip(s), &f->transform)) {
                snprintf(err, errcap,
                         "option 'partition_by': unknown transform '%s' (identity, year, month, day, hour, void)", s);
                part_spec_clear(out);
                return false;
            }
        }
        const ice_field *src = ice_schema_find(schema, col);
        if (!src) {
            snprintf(err, errcap, "option 'partition_by': no column '%s' in the input schema", col);
            part_spec_clear(out);
            return false;
        }
        f->source_id = src->id;
        f->field_id = 1000 + out->n_fields;
        f->name = f->transform == PT_IDENTITY ? g_strdup(src->name)
                                              : g_strdup_printf("%s_%s", src->name, part_transform_name(f->transform));
        out->n_fields++;
        if (!field_result(f, src, err, errcap)) {
            part_spec_clear(out);
            return false;
        }
    }
    return true;
}

void part_spec_clear(part_spec *s)
{
    for (int i = 0; i < s->n_fields; i++)
        g_free(s->fields[i].name);
    g_free(s->fields);
    memset(s, 0, sizeof *s);
}

void part_spec_copy(part_spec *dst, const part_spec *src)
{
    *dst = *src;
    dst->fields = g_new0(part_field, (gsize)src->n_fields + 1);
    for (int i = 0; i < src->n_fields; i++) {
        dst->fields[i] = src->fields[i];
        dst->fields[i].name = g_strdup(src->fields[i].name);
    }
}

bool part_spec_equal(const part_spec *a, const part_spec *b)
{
    if (a->n_fields != b->n_fields)
        return false;
    for (int i = 0; i < a->n_fields; i++)
        if (a->fields[i].source_id != b->fields[i].source_id || a->fields[i].transform != b->fields[i].transform)
            return false;
    return true;
}

int part_spec_last_field_id(const part_spec *s)
{
    int m = 999;
    for (int i = 0; i < s->n_fields; i++)
        if (s->fields[i].field_id > m)
            m = s->fields[i].field_id;
    return m;
}

static void fields_json(JsonBuilder *b, const part_spec *s)
{
    json_builder_begin_array(b);
    for (int i = 0; i < s->n_fields; i++) {
        const part_field *f = &s->fields[i];
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, f->name);
        json_builder_set_member_name(b, "transform");
        json_builder_add_string_value(b, part_transform_name(f->transform));
        json_builder_set_member_name(b, "source-id");
        json_builder_add_int_value(b, f->source_id);
        json_builder_set_member_name(b, "field-id");
        json_builder_add_int_value(b, f->field_id);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
}

JsonNode *part_spec_to_json(const part_spec *s)
{
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "spec-id");
    json_builder_add_int_value(b, s->spec_id);
    json_builder_set_member_name(b, "fields");
    fields_json(b, s);
    json_builder_end_object(b);
    JsonNode *n = json_builder_get_root(b);
    g_object_unref(b);
    return n;
}

char *part_spec_fields_json(const part_spec *s)
{
    JsonBuilder *b = json_builder_new();
    fields_json(b, s);
    JsonNode *n = json_builder_get_root(b);
    char *str = json_to_string(n, FALSE);
    json_node_unref(n);
    g_object_unref(b);
    return str;
}

bool part_spec_from_json(JsonObject *o, const ice_schema *schema, part_spec *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    out->spec_id = (int)json_object_get_int_member_with_default(o, "spec-id", 0);
    JsonArray *fields = json_object_has_member(o, "fields") ? json_object_get_array_member(o, "fields") : NULL;
    guint n = fields ? json_array_get_length(fields) : 0;
    out->fields = g_new0(part_field, n + 1);
    for (guint i = 0; i < n; i++) {
        JsonObject *fo = json_array_get_object_element(fields, i);
        part_field *f = &out->fields[out->n_fields];
        f->source_id = (int)json_object_get_int_member_with_default(fo, "source-id", 0);
        f->field_id = (int)json_object_get_int_member_with_default(fo, "field-id", 1000 + (int)i);
        f->name = g_strdup(json_object_get_string_member_with_default(fo, "name", ""));
        out->n_fields++;
        const char *t = json_object_get_string_member_with_default(fo, "transform", "");
        if (!transform_from_name(t, &f->transform)) {
            snprintf(err, errcap, "the table's partition field '%s' uses transform '%s', which this sink cannot write",
                     f->name, t);
            part_spec_clear(out);
            return false;
        }
        const ice_field *src = ice_schema_find_id(schema, f->source_id);
        if (!src) {
            snprintf(err, errcap, "partition field '%s' refers to column id %d, absent from the schema", f->name,
                     f->source_id);
            part_spec_clear(out);
            return false;
        }
        if (!field_result(f, src, err, errcap)) {
            part_spec_clear(out);
            return false;
        }
    }
    return true;
}

static void path_escape(byte_buf *out, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t start = out->len;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (g_ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
            bb_byte(out, c);
        else {
            bb_byte(out, '%');
            bb_byte(out, (uint8_t)hex[c >> 4]);
            bb_byte(out, (uint8_t)hex[c & 15]);
        }
    }
    if (out->len - start <= PART_PATH_VALUE_MAX)
        return;
    /* Too long for a directory name (one bad value would fail every commit
     * that holds it): keep a readable prefix, never half an escape, and
     * tell values apart by a hash of the whole value. */
    size_t keep = PART_PATH_VALUE_MAX - 17;
    const uint8_t *e = out->data + start;
    if (keep >= 1 && e[keep - 1] == '%')
        keep -= 1;
    else if (keep >= 2 && e[keep - 2] == '%')
        keep -= 2;
    g_autofree char *sum = g_compute_checksum_for_data(G_CHECKSUM_SHA256, p, n);
    out->len = start + keep;
    bb_byte(out, '-');
    bb_append(out, sum, 16);
}

void part_value_to_path(const part_field *f, const part_value *v, byte_buf *out)
{
    char tmp[64];
    int64_t y;
    int m, d;
    if (v->is_null) {
        bb_str(out, "null");
        return;
    }
    if (f->transform != PT_IDENTITY && f->transform != PT_VOID) {
        switch (f->transform) {
        case PT_DAY:
            civil_from_days(v->i, &y, &m, &d);
            snprintf(tmp, sizeof tmp, "%04" G_GINT64_FORMAT "-%02d-%02d", y, m, d);
            break;
        case PT_HOUR:
            civil_from_days(floor_div(v->i, 24), &y, &m, &d);
            snprintf(tmp, sizeof tmp, "%04" G_GINT64_FORMAT "-%02d-%02d-%02d", y, m, d,
                     (int)(v->i - floor_div(v->i, 24) * 24));
            break;
        case PT_MONTH:
            snprintf(tmp, sizeof tmp, "%04" G_GINT64_FORMAT "-%02d", 1970 + floor_div(v->i, 12),
                     (int)(v->i - floor_div(v->i, 12) * 12) + 1);
            break;
        default: snprintf(tmp, sizeof tmp, "%04" G_GINT64_FORMAT, 1970 + v->i); break;
        }
        bb_str(out, tmp);
        return;
    }
    switch (f->result.id) {
    case ICE_STRING:
    case ICE_BINARY: path_escape(out, v->p, v->n); return;
    case ICE_BOOLEAN: bb_str(out, v->i ? "true" : "false"); return;
    case ICE_DATE:
        civil_from_days(v->i, &y, &m, &d);
        snprintf(tmp, sizeof tmp, "%04" G_GINT64_FORMAT "-%02d-%02d", y, m, d);
        break;
    case ICE_FLOAT:
    case ICE_DOUBLE: snprintf(tmp, sizeof tmp, "%.17g", v->d); break;
    case ICE_DECIMAL: {
        /* unscaled -> text with the scale's decimal point */
        __int128 u = v->dec < 0 ? -v->dec : v->dec;
        char digits[48];
        int nd = 0;
        do {
            digits[nd++] = (char)('0' + (int)(u % 10));
            u /= 10;
        } while (u && nd < 47);
        while (nd <= f->result.scale)
            digits[nd++] = '0';
        int k = 0;
        if (v->dec < 0)
            tmp[k++] = '-';
        for (int i = nd - 1; i >= 0; i--) {
            tmp[k++] = digits[i];
            if (i == f->result.scale && i > 0)
                tmp[k++] = '.';
        }
        tmp[k] = '\0';
        break;
    }
    default: snprintf(tmp, sizeof tmp, "%" G_GINT64_FORMAT, v->i); break;
    }
    path_escape(out, (const uint8_t *)tmp, strlen(tmp));
}

void part_value_serialize(const part_field *f, const part_value *v, byte_buf *out)
{
    switch (f->result.id) {
    case ICE_BOOLEAN: bb_byte(out, v->i ? 1 : 0); break;
    case ICE_INT:
    case ICE_DATE: ice_bound_from_i32(out, (int32_t)v->i); break;
    case ICE_LONG:
    case ICE_TIMESTAMP:
    case ICE_TIMESTAMPTZ: ice_bound_from_i64(out, v->i); break;
    case ICE_FLOAT: {
        float x = (float)v->d;
        bb_append(out, &x, 4);
        break;
    }
    case ICE_DOUBLE: bb_append(out, &v->d, 8); break;
    case ICE_STRING:
    case ICE_BINARY: bb_append(out, v->p, v->n); break;
    case ICE_DECIMAL: ice_bound_from_decimal(out, v->dec); break;
    }
}

int part_value_cmp(const part_field *f, const part_value *a, const part_value *b)
{
    switch (f->result.id) {
    case ICE_FLOAT:
    case ICE_DOUBLE: return a->d < b->d ? -1 : a->d > b->d;
    case ICE_STRING:
    case ICE_BINARY: {
        int c = memcmp(a->p, b->p, a->n < b->n ? a->n : b->n);
        return c ? c : (a->n < b->n ? -1 : a->n > b->n);
    }
    case ICE_DECIMAL: return a->dec < b->dec ? -1 : a->dec > b->dec;
    default: return a->i < b->i ? -1 : a->i > b->i;
    }
}
