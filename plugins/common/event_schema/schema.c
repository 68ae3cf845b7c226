/*
 * Schema files: YAML (libyaml's document API, so every node keeps its line)
 * into a tv_schema. Every mistake a user can make in the file is reported as
 * "PATH:LINE: what is wrong", the first one found.
 */
#include "schema.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define TV_ERROR (tv_error_quark())
static GQuark tv_error_quark(void) { return g_quark_from_static_string("tv-schema-error"); }

/* ------------------------------------------------------------ strict parsers */

int tv_parse_int(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (i < len && s[i] == '-') {
        neg = true;
        i++;
    }
    if (i == len)
        return 1;
    if (s[i] == '0' && i + 1 < len)
        return 1;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    bool overflow = false;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (limit - d) / 10)
            overflow = true; /* keep scanning: "1e5" is "not an integer", not "out of range" */
        else
            v = v * 10 + d;
    }
    if (overflow)
        return 2;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

tv_dec_status tv_parse_decimal(const char *s, size_t len, int precision, int scale, __int128 *out)
{
    size_t i = 0;
    bool neg = false;
    if (i < len && s[i] == '-') {
        neg = true;
        i++;
    }
    size_t int_begin = i;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    size_t int_end = i;
    if (int_end == int_begin || (s[int_begin] == '0' && int_end - int_begin > 1))
        return TV_DEC_SYNTAX;
    size_t frac_begin = i, frac_end = i;
    if (i < len && s[i] == '.') {
        frac_begin = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        frac_end = i;
        if (frac_end == frac_begin)
            return TV_DEC_SYNTAX;
    }
    int64_t exp = 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = false;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        size_t eb = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (exp < 1000000000)
                exp = exp * 10 + (s[i] - '0'); /* saturates: the value is out of any range */
            i++;
        }
        if (i == eb)
            return TV_DEC_SYNTAX;
        if (eneg)
            exp = -exp;
    }
    if (i != len)
        return TV_DEC_SYNTAX;

    /* Significant digits: int then fraction, leading zeros skipped. */
    int64_t n_sig = 0, trailing_zeros = 0;
    bool started = false;
    for (size_t k = int_begin; k < frac_end; k++) {
        if (k == int_end) {
            k = frac_begin - 1;
            continue;
        }
        char c = s[k];
        if (!started && c == '0')
            continue;
        started = true;
        n_sig++;
        trailing_zeros = c == '0' ? trailing_zeros + 1 : 0;
    }
    if (n_sig == 0) {
        *out = 0;
        return TV_DEC_OK;
    }
    /* value = D * 10^(exp - frac_len); unscaled = D * 10^shift */
    int64_t shift = exp - (int64_t)(frac_end - frac_begin) + scale;
    int64_t keep = n_sig, digits = n_sig;
    if (shift < 0) {
        if (-shift > trailing_zeros)
            return TV_DEC_SCALE;
        keep = digits = n_sig + shift;
    } else {
        digits = n_sig + shift;
    }
    if (digits > precision)
        return TV_DEC_PRECISION;
    __int128 v = 0;
    int64_t taken = 0;
    started = false;
    for (size_t k = int_begin; k < frac_end && taken < keep; k++) {
        if (k == int_end) {
            k = frac_begin - 1;
            continue;
        }
        if (!started && s[k] == '0')
            continue;
        started = true;
        v = v * 10 + (s[k] - '0');
        taken++;
    }
    for (int64_t k = 0; shift > 0 && k < shift; k++)
        v *= 10;
    *out = neg ? -v : v;
    return TV_DEC_OK;
}

static bool is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int days_in_month(int64_t y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : d[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits_at(const char *s, size_t len, size_t at, size_t n, int64_t *out)
{
    if (at + n > len)
        return false;
    int64_t v = 0;
    for (size_t i = at; i < at + n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

bool tv_parse_timestamp(const char *s, size_t len, int64_t *out_us, const char **why)
{
    static const char *const bad_form = "is not an ISO 8601 timestamp (YYYY-MM-DDTHH:MM:SS[.ffffff] and Z or +HH:MM)";
    int64_t y, mo, d, h, mi, se;
    *why = bad_form;
    if (!digits_at(s, len, 0, 4, &y) || len < 19 || s[4] != '-' || !digits_at(s, len, 5, 2, &mo) || s[7] != '-' ||
        !digits_at(s, len, 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !digits_at(s, len, 11, 2, &h) || s[13] != ':' || !digits_at(s, len, 14, 2, &mi) || s[16] != ':' ||
        !digits_at(s, len, 17, 2, &se))
        return false;
    size_t i = 19;
    int64_t frac_us = 0;
    if (i < len && s[i] == '.') {
        size_t b = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (i - b < 6)
                frac_us = frac_us * 10 + (s[i] - '0');
            i++;
        }
        if (i == b || i - b > 9)
            return false;
        for (size_t k = i - b; k < 6; k++)
            frac_us *= 10;
    }
    int64_t offset_s = 0;
    if (i == len) {
        *why = "has no zone (add Z or an offset like +02:00)";
        return false;
    }
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int sign = s[i] == '-' ? -1 : 1;
        int64_t oh, om = 0;
        if (!digits_at(s, len, i + 1, 2, &oh))
            return false;
        i += 3;
        if (i < len && s[i] == ':') {
            if (!digits_at(s, len, i + 1, 2, &om))
                return false;
            i += 3;
        } else if (i < len) {
            if (!digits_at(s, len, i, 2, &om))
                return false;
            i += 2;
        }
        if (oh > 23 || om > 59) {
            *why = "has an invalid zone offset";
            return false;
        }
        offset_s = sign * (oh * 3600 + om * 60);
    } else {
        return false;
    }
    if (i != len)
        return false;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, (int)mo)) {
        *why = "is not a valid date";
        return false;
    }
    if (se == 60 && h <= 23 && mi <= 59) {
        *why = "is a leap second (:60), which a timestamp cannot hold";
        return false;
    }
    if (h > 23 || mi > 59 || se > 59) {
        *why = "is not a valid time of day";
        return false;
    }
    int64_t days = days_from_civil(y, (int)mo, (int)d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + se - offset_s;
    *out_us = secs * 1000000 + frac_us;
    *why = NULL;
    return true;
}

bool tv_parse_duration(const char *s, int64_t *out_us)
{
    if (!s || !*s)
        return false;
    char *end = NULL;
    errno = 0;
    double v = g_ascii_strtod(s, &end);
    if (end == s || errno || v < 0 || !isfinite(v))
        return false;
    double mult;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1e6;
    else if (strcmp(end, "us") == 0)
        mult = 1;
    else if (strcmp(end, "ms") == 0)
        mult = 1e3;
    else if (strcmp(end, "m") == 0)
        mult = 60e6;
    else if (strcmp(end, "h") == 0)
        mult = 3600e6;
    else if (strcmp(end, "d") == 0)
        mult = 86400e6;
    else
        return false;
    double us = v * mult;
    if (us > 9.2e18)
        return false;
    *out_us = (int64_t)us;
    return true;
}

/* ------------------------------------------------------------ loading */

typedef struct {
    yaml_document_t *doc;
    const char *path;
    GError **error;
} loader;

static bool failf(loader *L, const yaml_node_t *at, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static bool failf(loader *L, const yaml_node_t *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (at)
        g_set_error(L->error, TV_ERROR, 1, "%s:%lu: %s", L->path, (unsigned long)at->start_mark.line + 1, msg);
    else
        g_set_error(L->error, TV_ERROR, 1, "%s: %s", L->path, msg);
    return false;
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static bool want_scalar(loader *L, const yaml_node_t *n, const char *what, const char **out)
{
    *out = scalar(n);
    if (!*out)
        return failf(L, n, "%s: expected a single value, got a %s", what,
                     n && n->type == YAML_MAPPING_NODE ? "map" : "list");
    return true;
}

static bool want_bool(loader *L, const yaml_node_t *n, const char *what, bool *out)
{
    const char *v;
    if (!want_scalar(L, n, what, &v))
        return false;
    if (!g_ascii_strcasecmp(v, "true") || !g_ascii_strcasecmp(v, "yes"))
        *out = true;
    else if (!g_ascii_strcasecmp(v, "false") || !g_ascii_strcasecmp(v, "no"))
        *out = false;
    else
        return failf(L, n, "%s: expected true or false, got \"%s\"", what, v);
    return true;
}

static bool want_int(loader *L, const yaml_node_t *n, const char *what, int64_t lo, int64_t *out)
{
    const char *v;
    if (!want_scalar(L, n, what, &v))
        return false;
    if (tv_parse_int(v, strlen(v), out) != 0 || *out < lo)
        return failf(L, n, "%s: expected a whole number >= %" PRId64 ", got \"%s\"", what, lo, v);
    return true;
}

/* Checks a mapping for duplicate keys and keys outside `known`. */
static bool check_keys(loader *L, const yaml_node_t *map, const char *where, const char *const *known)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = yaml_document_get_node(L->doc, p->key);
        const char *ks = scalar(k);
        if (!ks)
            return failf(L, k, "%s: keys must be plain names", where);
        bool ok = false;
        for (const char *const *c = known; *c && !ok; c++)
            ok = strcmp(*c, ks) == 0;
        if (!ok) {
            g_autofree char *list = g_strjoinv(", ", (char **)known);
            /* {type: decimal(12,2)}: the comma ended the value in flow style */
            const char *hint = g_ascii_isdigit(ks[0]) && strchr(ks, ')')
                                   ? "; quote the type in a {...} map: type: \"decimal(12,2)\""
                                   : "";
            return failf(L, k, "%s: unknown key '%s' (known keys: %s)%s", where, ks, list, hint);
        }
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++)
            if (strcmp(scalar(yaml_document_get_node(L->doc, q->key)), ks) == 0)
                return failf(L, k, "%s: key '%s' is given twice", where, ks);
    }
    return true;
}

static const char *const type_names = "string, int, float, bool, decimal(P,S), timestamp";

static bool parse_type(loader *L, const yaml_node_t *n, tv_field *f)
{
    const char *v;
    if (!want_scalar(L, n, "type", &v))
        return false;
    static const struct {
        const char *name;
        tv_type type;
    } simple[] = {
        {"string", TV_STRING}, {"int", TV_INT}, {"float", TV_FLOAT}, {"bool", TV_BOOL}, {"timestamp", TV_TIMESTAMP}};
    for (size_t i = 0; i < G_N_ELEMENTS(simple); i++)
        if (strcmp(v, simple[i].name) == 0) {
            f->type = simple[i].type;
            return true;
        }
    int p = 0, s = 0, used = 0;
    if (sscanf(v, "decimal ( %d , %d )%n", &p, &s, &used) == 2 && v[used] == '\0') {
        if (p < 1 || p > 38 || s < 0 || s > p)
            return failf(L, n, "field '%s': decimal(%d,%d): precision must be 1..38 and scale 0..precision", f->name, p,
                         s);
        f->type = TV_DECIMAL;
        f->precision = p;
        f->scale = s;
        return true;
    }
    return failf(L, n, "field '%s': unknown type \"%s\" (types: %s)", f->name, v, type_names);
}

const char *tv_type_label(const tv_field *f, char *buf, size_t cap)
{
    switch (f->type) {
    case TV_STRING: return "string";
    case TV_INT: return "int";
    case TV_FLOAT: return "float";
    case TV_BOOL: return "bool";
    case TV_TIMESTAMP: return "timestamp";
    case TV_DECIMAL: snprintf(buf, cap, "decimal(%d,%d)", f->precision, f->scale); return buf;
    }
    return "?";
}

static bool applies(loader *L, const yaml_node_t *key, tv_field *f, const char *rule, unsigned types)
{
    if (types & (1u << f->type))
        return true;
    char tb[32];
    return failf(L, key, "field '%s': '%s' does not apply to a %s field", f->name, rule,
                 tv_type_label(f, tb, sizeof tb));
}

#define T(x) (1u << (x))

static bool parse_bound(loader *L, const yaml_node_t *n, tv_field *f, bool is_min)
{
    const char *what = is_min ? "min" : "max";
    const char *v;
    if (!want_scalar(L, n, what, &v))
        return false;
    size_t len = strlen(v);
    char tb[32];
    switch (f->type) {
    case TV_INT: {
        int64_t x;
        if (tv_parse_int(v, len, &x) != 0)
            return failf(L, n, "field '%s': %s: expected an int64, got \"%s\"", f->name, what, v);
        *(is_min ? &f->min_i : &f->max_i) = x;
        break;
    }
    case TV_FLOAT: {
        char *end = NULL;
        errno = 0;
        double x = g_ascii_strtod(v, &end);
        if (end == v || *end || errno || !isfinite(x))
            return failf(L, n, "field '%s': %s: expected a number, got \"%s\"", f->name, what, v);
        *(is_min ? &f->min_f : &f->max_f) = x;
        break;
    }
    case TV_DECIMAL: {
        __int128 x;
        if (tv_parse_decimal(v, len, f->precision, f->scale, &x) != TV_DEC_OK)
            return failf(L, n, "field '%s': %s: \"%s\" is not a %s value", f->name, what, v,
                         tv_type_label(f, tb, sizeof tb));
        *(is_min ? &f->min_d : &f->max_d) = x;
        break;
    }
    case TV_TIMESTAMP: {
        int64_t x;
        const char *why;
        if (!tv_parse_timestamp(v, len, &x, &why))
            return failf(L, n, "field '%s': %s: \"%s\" %s", f->name, what, v, why);
        *(is_min ? &f->min_i : &f->max_i) = x;
        break;
    }
    default: return false;
    }
    *(is_min ? &f->has_min : &f->has_max) = true;
    *(is_min ? &f->min_text : &f->max_text) = g_strdup(v);
    return true;
}

static bool parse_enum(loader *L, const yaml_node_t *n, tv_field *f)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return failf(L, n, "field '%s': enum: expected a list of values", f->name);
    uint32_t count = (uint32_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0)
        return failf(L, n, "field '%s': enum: the list is empty", f->name);
    f->enum_values = g_new0(char *, count + 1);
    f->enum_lens = g_new0(size_t, count);
    GString *text = g_string_new(NULL);
    for (uint32_t i = 0; i < count; i++) {
        const yaml_node_t *item = yaml_document_get_node(L->doc, n->data.sequence.items.start[i]);
        const char *v = scalar(item);
        if (!v) {
            g_string_free(text, TRUE);
            return failf(L, item, "field '%s': enum: values must be strings", f->name);
        }
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(f->enum_values[j], v) == 0) {
                g_string_free(text, TRUE);
                return failf(L, item, "field '%s': enum: \"%s\" is listed twice", f->name, v);
            }
        f->enum_values[i] = g_strdup(v);
        f->enum_lens[i] = strlen(v);
        f->n_enum = i + 1;
        g_string_append_printf(text, "%s%s", i ? ", " : "", v);
    }
    f->enum_text = g_string_free(text, FALSE);
    return true;
}

static bool parse_field(loader *L, const yaml_node_t *key, const yaml_node_t *spec, tv_field *f)
{
    static const char *const known[] = {"type",       "required", "doc", "enum",       "regex",  "min_length",
                                        "max_length", "min",      "max", "max_future", "coerce", NULL};
    f->name = g_strdup(scalar(key));
    f->name_len = strlen(f->name);
    f->line = (int)key->start_mark.line + 1;
    f->min_length = f->max_length = TV_NO_LIMIT;
    if (f->name_len == 0)
        return failf(L, key, "a field needs a name");
    if (!strcmp(f->name, TV_COL_EVENT_DATE) || !strcmp(f->name, TV_COL_INGEST_TIME) || !strcmp(f->name, TV_COL_EXTRAS))
        return failf(L, key, "field '%s': the name is taken by a derived column (%s, %s, %s)", f->name,
                     TV_COL_EVENT_DATE, TV_COL_INGEST_TIME, TV_COL_EXTRAS);
    if (spec->type != YAML_MAPPING_NODE)
        return failf(L, spec, "field '%s': expected a map of rules like {type: string, required: true}", f->name);
    g_autofree char *where = g_strdup_printf("field '%s'", f->name);
    if (!check_keys(L, spec, where, known))
        return false;

    const yaml_node_t *type = NULL;
    for (yaml_node_pair_t *p = spec->data.mapping.pairs.start; p < spec->data.mapping.pairs.top; p++)
        if (!strcmp(scalar(yaml_document_get_node(L->doc, p->key)), "type"))
            type = yaml_document_get_node(L->doc, p->value);
    if (!type)
        return failf(L, key, "field '%s': 'type' is missing (types: %s)", f->name, type_names);
    if (!parse_type(L, type, f))
        return false;

    for (yaml_node_pair_t *p = spec->data.mapping.pairs.start; p < spec->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = yaml_document_get_node(L->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(L->doc, p->value);
        const char *rule = scalar(k);
        g_autofree char *what = g_strdup_printf("field '%s': %s", f->name, rule);
        const char *s;
        if (!strcmp(rule, "type")) {
            continue;
        } else if (!strcmp(rule, "required")) {
            if (!want_bool(L, v, what, &f->required))
                return false;
        } else if (!strcmp(rule, "doc")) {
            if (!want_scalar(L, v, what, &s))
                return false;
            f->doc = g_strdup(s);
        } else if (!strcmp(rule, "enum")) {
            if (!applies(L, k, f, rule, T(TV_STRING)) || !parse_enum(L, v, f))
                return false;
        } else if (!strcmp(rule, "regex")) {
            if (!applies(L, k, f, rule, T(TV_STRING)) || !want_scalar(L, v, what, &s))
                return false;
            g_autofree char *anchored = g_strdup_printf("\\A(?:%s)\\z", s);
            GError *re_err = NULL;
            f->regex = g_regex_new(anchored, G_REGEX_OPTIMIZE, 0, &re_err);
            if (!f->regex) {
                failf(L, v, "%s: %s", what, re_err->message);
                g_error_free(re_err);
                return false;
            }
            f->regex_src = g_strdup(s);
        } else if (!strcmp(rule, "min_length") || !strcmp(rule, "max_length")) {
            if (!applies(L, k, f, rule, T(TV_STRING)) ||
                !want_int(L, v, what, 0, rule[1] == 'i' ? &f->min_length : &f->max_length))
                return false;
        } else if (!strcmp(rule, "min") || !strcmp(rule, "max")) {
            if (!applies(L, k, f, rule, T(TV_INT) | T(TV_FLOAT) | T(TV_DECIMAL) | T(TV_TIMESTAMP)) ||
                !parse_bound(L, v, f, rule[1] == 'i'))
                return false;
        } else if (!strcmp(rule, "coerce")) {
            if (!applies(L, k, f, rule, T(TV_STRING) | T(TV_INT) | T(TV_FLOAT) | T(TV_DECIMAL)) ||
                !want_bool(L, v, what, &f->coerce))
                return false;
            f->coerce_set = true;
        } else if (!strcmp(rule, "max_future")) {
            if (!applies(L, k, f, rule, T(TV_TIMESTAMP)) || !want_scalar(L, v, what, &s))
                return false;
            f->max_future_set = true;
            if (!strcmp(s, "none"))
                f->max_future_us = TV_NO_LIMIT;
            else if (!tv_parse_duration(s, &f->max_future_us))
                return failf(L, v, "%s: expected a duration like \"1h\", \"90s\" or none, got \"%s\"", what, s);
        }
    }
    if (f->min_length != TV_NO_LIMIT && f->max_length != TV_NO_LIMIT && f->min_length > f->max_length)
        return failf(L, key, "field '%s': min_length %" PRId64 " is more than max_length %" PRId64, f->name,
                     f->min_length, f->max_length);
    bool inverted = f->has_min && f->has_max &&
                    ((f->type == TV_INT || f->type == TV_TIMESTAMP) ? f->min_i > f->max_i
                     : f->type == TV_FLOAT                          ? f->min_f > f->max_f
                                                                    : f->min_d > f->max_d);
    if (inverted)
        return failf(L, key, "field '%s': min %s is more than max %s", f->name, f->min_text, f->max_text);
    return true;
}

/* Looked up once per top-level member of every event: the length and the
 * first and last 8 bytes, mixed, tell the few field names apart. */
static uint32_t hash_key(const char *k, size_t len)
{
    uint64_t head = 0, tail = 0;
    memcpy(&head, k, len < 8 ? len : 8);
    if (len > 8)
        memcpy(&tail, k + len - 8, 8);
    uint64_t h = (head ^ (tail * 0x9E3779B97F4A7C15ull) ^ len) * 0xBF58476D1CE4E5B9ull;
    return (uint32_t)(h >> 32);
}

static void build_lookup(tv_schema *s)
{
    uint32_t size = 16;
    while (size < s->n_fields * 4)
        size *= 2;
    s->slots = g_new(int32_t, size);
    for (uint32_t i = 0; i < size; i++)
        s->slots[i] = -1;
    s->slot_mask = size - 1;
    for (uint32_t i = 0; i < s->n_fields; i++) {
        uint32_t h = hash_key(s->fields[i].name, s->fields[i].name_len) & s->slot_mask;
        while (s->slots[h] >= 0)
            h = (h + 1) & s->slot_mask;
        s->slots[h] = (int32_t)i;
    }
}

int tv_schema_lookup(const tv_schema *s, const char *key, size_t len)
{
    uint32_t h = hash_key(key, len) & s->slot_mask;
    for (;;) {
        int32_t i = s->slots[h];
        if (i < 0)
            return -1;
        const tv_field *f = &s->fields[i];
        if (f->name_len == len && (len == 0 || (f->name[0] == key[0] && memcmp(f->name, key, len) == 0)))
            return i;
        h = (h + 1) & s->slot_mask;
    }
}

static bool load_document(loader *L, tv_schema *s)
{
    static const char *const known[] = {"schema", "version", "doc", "event_time", "fields", "coerce", NULL};
    yaml_node_t *root = yaml_document_get_root_node(L->doc);
    if (!root)
        return failf(L, NULL, "the file is empty; a schema needs at least 'schema' and 'fields'");
    if (root->type != YAML_MAPPING_NODE)
        return failf(L, root, "expected a map with 'schema' and 'fields' at the top");
    if (!check_keys(L, root, "schema file", known))
        return false;
    const yaml_node_t *fields = NULL, *event_time = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(L->doc, p->key));
        const yaml_node_t *v = yaml_document_get_node(L->doc, p->value);
        const char *sv;
        if (!strcmp(k, "schema")) {
            if (!want_scalar(L, v, "schema", &sv))
                return false;
            s->name = g_strdup(sv);
        } else if (!strcmp(k, "version")) {
            if (!want_int(L, v, "version", 0, &s->version))
                return false;
        } else if (!strcmp(k, "doc")) {
            if (!want_scalar(L, v, "doc", &sv))
                return false;
            s->doc = g_strdup(sv);
        } else if (!strcmp(k, "coerce")) {
            if (!want_bool(L, v, "coerce", &s->coerce))
                return false;
        } else if (!strcmp(k, "event_time")) {
            event_time = v;
        } else if (!strcmp(k, "fields")) {
            fields = v;
        }
    }
    if (!s->name)
        return failf(L, root, "'schema' (the schema's name) is missing");
    if (!fields)
        return failf(L, root, "'fields' is missing");
    if (fields->type != YAML_MAPPING_NODE || fields->data.mapping.pairs.top == fields->data.mapping.pairs.start)
        return failf(L, fields, "'fields' must be a map of field name to rules, with at least one field");

    uint32_t n = (uint32_t)(fields->data.mapping.pairs.top - fields->data.mapping.pairs.start);
    s->fields = g_new0(tv_field, n);
    for (uint32_t i = 0; i < n; i++) {
        yaml_node_pair_t *p = &fields->data.mapping.pairs.start[i];
        const yaml_node_t *k = yaml_document_get_node(L->doc, p->key);
        if (!scalar(k))
            return failf(L, k, "field names must be plain strings");
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(s->fields[j].name, scalar(k)))
                return failf(L, k, "field '%s' is declared twice (first on line %d)", scalar(k), s->fields[j].line);
        s->n_fields = i + 1;
        if (!parse_field(L, k, yaml_document_get_node(L->doc, p->value), &s->fields[i]))
            return false;
    }
    /* The schema-wide coerce is a default for the types it can apply to. */
    for (uint32_t i = 0; i < n; i++) {
        tv_field *f = &s->fields[i];
        if (!f->coerce_set && f->type != TV_BOOL && f->type != TV_TIMESTAMP)
            f->coerce = s->coerce;
    }
    build_lookup(s);
    s->event_time = -1;
    if (event_time) {
        const char *et;
        if (!want_scalar(L, event_time, "event_time", &et))
            return false;
        int i = tv_schema_lookup(s, et, strlen(et));
        if (i < 0)
            return failf(L, event_time, "event_time: no field is named '%s'", et);
        if (s->fields[i].type != TV_TIMESTAMP)
            return failf(L, event_time, "event_time: field '%s' is not a timestamp", et);
        s->event_time = i;
    }
    return true;
}

tv_schema *tv_schema_parse(const char *text, size_t len, const char *path, GError **error)
{
    loader L = {.path = path, .error = error};
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        g_set_error(error, TV_ERROR, 1, "%s:%lu: %s", path, (unsigned long)parser.problem_mark.line + 1,
                    parser.problem ? parser.problem : "not valid YAML");
        yaml_parser_delete(&parser);
        return NULL;
    }
    L.doc = &doc;
    tv_schema *s = g_new0(tv_schema, 1);
    s->path = g_strdup(path);
    bool ok = load_document(&L, s);
    yaml_document_delete(&doc);
    /* A second document in the file would be ignored silently: refuse it. */
    if (ok) {
        yaml_document_t more;
        if (yaml_parser_load(&parser, &more)) {
            bool extra = yaml_document_get_root_node(&more) != NULL;
            yaml_node_t *r = yaml_document_get_root_node(&more);
            unsigned long line = r ? (unsigned long)r->start_mark.line + 1 : 0;
            yaml_document_delete(&more);
            if (extra) {
                g_set_error(error, TV_ERROR, 1, "%s:%lu: only one YAML document is allowed", path, line);
                ok = false;
            }
        }
    }
    yaml_parser_delete(&parser);
    if (!ok) {
        tv_schema_free(s);
        return NULL;
    }
    return s;
}

tv_schema *tv_schema_load(const char *path, GError **error)
{
    g_autofree char *text = NULL;
    gsize len = 0;
    GError *io = NULL;
    if (!g_file_get_contents(path, &text, &len, &io)) {
        g_set_error(error, TV_ERROR, 1, "cannot read schema file: %s", io->message);
        g_error_free(io);
        return NULL;
    }
    return tv_schema_parse(text, len, path, error);
}

void tv_schema_free(tv_schema *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->n_fields; i++) {
        tv_field *f = &s->fields[i];
        g_free(f->name);
        g_free(f->doc);
        g_strfreev(f->enum_values);
        g_free(f->enum_lens);
        g_free(f->enum_text);
        if (f->regex)
            g_regex_unref(f->regex);
        g_free(f->regex_src);
        g_free(f->min_text);
        g_free(f->max_text);
    }
    g_free(s->fields);
    g_free(s->slots);
    g_free(s->name);
    g_free(s->path);
    g_free(s->doc);
    g_free(s);
}

/* ------------------------------------------------------------ Arrow schema */

static void release_arrow(struct ArrowSchema *a)
{
    for (int64_t i = 0; i < a->n_children; i++) {
        if (a->children[i]->release)
            a->children[i]->release(a->children[i]);
        g_free(a->children[i]);
    }
    g_free(a->children);
    g_free((char *)a->format);
    g_free((char *)a->name);
    g_free((char *)a->metadata);
    a->release = NULL;
}

/* Arrow's metadata encoding: int32 count, then (int32 len, bytes) pairs. */
static char *arrow_metadata(const char *const *kv, int n_pairs)
{
    size_t size = 4;
    for (int i = 0; i < 2 * n_pairs; i++)
        size += 4 + strlen(kv[i]);
    char *buf = g_malloc(size), *p = buf;
    int32_t n = n_pairs;
    memcpy(p, &n, 4);
    p += 4;
    for (int i = 0; i < 2 * n_pairs; i++) {
        int32_t l = (int32_t)strlen(kv[i]);
        memcpy(p, &l, 4);
        memcpy(p + 4, kv[i], (size_t)l);
        p += 4 + l;
    }
    return buf;
}

static struct ArrowSchema *arrow_child(const char *name, char *format, bool nullable, const char *doc)
{
    struct ArrowSchema *c = g_new0(struct ArrowSchema, 1);
    c->format = format;
    c->name = g_strdup(name);
    c->flags = nullable ? ARROW_FLAG_NULLABLE : 0;
    if (doc) {
        const char *kv[] = {"ecflow:doc", doc};
        c->metadata = arrow_metadata(kv, 1);
    }
    c->release = release_arrow;
    return c;
}

void tv_schema_export_arrow(const tv_schema *s, struct ArrowSchema *out)
{
    memset(out, 0, sizeof *out);
    int64_t n = s->n_fields + (s->event_time >= 0 ? 1 : 0) + 2;
    out->format = g_strdup("+s");
    out->name = g_strdup("");
    g_autofree char *version = g_strdup_printf("%" PRId64, s->version);
    const char *kv[] = {"ecflow:schema", s->name, "ecflow:schema_version", version};
    out->metadata = arrow_metadata(kv, 2);
    out->n_children = n;
    out->children = g_new0(struct ArrowSchema *, n);
    out->release = release_arrow;
    int64_t c = 0;
    for (uint32_t i = 0; i < s->n_fields; i++) {
        const tv_field *f = &s->fields[i];
        char *fmt;
        switch (f->type) {
        case TV_STRING: fmt = g_strdup("u"); break;
        case TV_INT: fmt = g_strdup("l"); break;
        case TV_FLOAT: fmt = g_strdup("g"); break;
        case TV_BOOL: fmt = g_strdup("b"); break;
        case TV_DECIMAL: fmt = g_strdup_printf("d:%d,%d", f->precision, f->scale); break;
        case TV_TIMESTAMP:
        default: fmt = g_strdup("tsu:UTC"); break;
        }
        out->children[c++] = arrow_child(f->name, fmt, !f->required, f->doc);
    }
    if (s->event_time >= 0)
        out->children[c++] = arrow_child(TV_COL_EVENT_DATE, g_strdup("tdD"), !s->fields[s->event_time].required,
                                         "UTC calendar day of the event time (derived)");
    out->children[c++] =
        arrow_child(TV_COL_INGEST_TIME, g_strdup("tsu:UTC"), false, "when ecflow first received the event (derived)");
    out->children[c++] = arrow_child(TV_COL_EXTRAS, g_strdup("u"), false,
                                     "top-level members the schema does not name, as a JSON object text");
}
