/*
 * One event against the schema (see validate.h). The JSON walk reports each
 * top-level member once its value has been walked; known fields are checked
 * and written into their column at once, unknown ones are copied verbatim
 * into the row's extras object. Nothing is allocated per event: the walker
 * and the column set keep their memory.
 */
#include "validate.h"

#include "json_walk.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The event being validated (one at a time per validator). */
typedef struct {
    struct tv_validator *v;
    tv_columns *set;
    uint32_t row;
    size_t len;
    int64_t now_us;
    tv_error *err;
    tv_problem cur; /* the problem being described */
    bool fatal;     /* out of memory: no further checks */
    tv_column *extras;
    int32_t extras_at; /* next byte of the row's extras object */
    bool extras_any;
    int64_t event_time_us;
    bool has_event_time;
} event_ctx;

struct tv_validator {
    const tv_schema *schema;
    tvj_walker *walker;
    int64_t max_future_us;
    uint32_t max_depth;
    int key_field;
    uint32_t col_event_date, col_ingest, col_extras;
    uint64_t *seen;
    uint32_t seen_words;
    event_ctx ev;
};

const char *tv_reason_name(tv_reason r)
{
    static const char *const names[TV_REASON_COUNT] = {
        "valid", "syntax",  "not_object", "depth", "duplicate", "required", "type",     "format",
        "enum",  "pattern", "length",     "range", "precision", "size",     "internal",
    };
    return (unsigned)r < TV_REASON_COUNT ? names[r] : "unknown";
}

uint32_t tv_validator_columns(const tv_schema *s, tv_col_kind *kinds, bool *nullable, uint32_t cap)
{
    uint32_t n = 0;
#define PUT(k, nl)              \
    do {                        \
        if (n < cap) {          \
            kinds[n] = (k);     \
            nullable[n] = (nl); \
        }                       \
        n++;                    \
    } while (0)
    for (uint32_t i = 0; i < s->n_fields; i++) {
        const tv_field *f = &s->fields[i];
        tv_col_kind k = TV_COL_UTF8;
        switch (f->type) {
        case TV_STRING: k = TV_COL_UTF8; break;
        case TV_INT:
        case TV_TIMESTAMP: k = TV_COL_I64; break;
        case TV_FLOAT: k = TV_COL_F64; break;
        case TV_BOOL: k = TV_COL_BOOL; break;
        case TV_DECIMAL: k = TV_COL_D128; break;
        }
        PUT(k, !f->required);
    }
    if (s->event_time >= 0)
        PUT(TV_COL_I32, !s->fields[s->event_time].required);
    PUT(TV_COL_I64, false);  /* ingest_time */
    PUT(TV_COL_UTF8, false); /* extras */
#undef PUT
    return n;
}

tv_validator *tv_validator_new(const tv_schema *s, int64_t max_future_us, uint32_t max_depth, const char *key_field,
                               const char **why)
{
    int key = -1;
    if (key_field) {
        key = tv_schema_lookup(s, key_field, strlen(key_field));
        if (key < 0 || s->fields[key].type != TV_STRING) {
            *why = key < 0 ? "names no field of the schema" : "is not a string field";
            return NULL;
        }
    }
    tv_validator *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->schema = s;
    v->max_future_us = max_future_us;
    v->max_depth = max_depth;
    v->key_field = key;
    v->walker = tvj_walker_new(max_depth);
    v->seen_words = (s->n_fields + 63) / 64;
    v->seen = calloc(v->seen_words, sizeof *v->seen);
    uint32_t c = s->n_fields;
    if (s->event_time >= 0)
        v->col_event_date = c++;
    v->col_ingest = c++;
    v->col_extras = c++;
    if (!v->walker || !v->seen) {
        tv_validator_free(v);
        return NULL;
    }
    return v;
}

void tv_validator_free(tv_validator *v)
{
    if (!v)
        return;
    tvj_walker_free(v->walker);
    free(v->seen);
    free(v);
}

size_t tv_validator_footprint(const tv_validator *v) { return v ? tvj_walker_footprint(v->walker) : 0; }

bool tv_validator_fits(const tv_columns *cols, size_t len)
{
    return cols->in_bytes + 2 * (uint64_t)cols->rows + len + 2 <= INT32_MAX;
}

/* ------------------------------------------------------------ messages */

/* A short, printable view of a value for a reason: JSON-escaped, cut at
 * 40 bytes (on a UTF-8 boundary) with an ellipsis. */
static void preview(char *out, size_t cap, const char *s, size_t len)
{
    size_t o = 0, limit = 40;
    for (size_t i = 0; i < len && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= limit && (c & 0xC0) != 0x80) {
            o += (size_t)snprintf(out + o, cap - o, "\xe2\x80\xa6"); /* … */
            break;
        }
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o < cap ? o : cap - 1] = '\0';
}

/* "string \"abc\"", "number 12.345", "object", "true", "null" */
static void describe(char *out, size_t cap, const tvj_member *m)
{
    char pv[160];
    switch (m->type) {
    case TVJ_STRING:
        preview(pv, sizeof pv, m->str, m->str_len);
        snprintf(out, cap, "string \"%s\"", pv);
        break;
    case TVJ_NUMBER:
        preview(pv, sizeof pv, m->raw, m->raw_len);
        snprintf(out, cap, "number %s", pv);
        break;
    case TVJ_BOOL: snprintf(out, cap, "%s", m->boolean ? "true" : "false"); break;
    case TVJ_NULL: snprintf(out, cap, "null"); break;
    case TVJ_OBJECT: snprintf(out, cap, "an object"); break;
    case TVJ_ARRAY: snprintf(out, cap, "an array"); break;
    }
}

static void set_error(tv_problem *err, tv_reason r, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_error(tv_problem *err, tv_reason r, const char *field, const char *fmt, ...)
{
    err->reason = r;
    err->value[0] = '\0';
    err->field = field;
    size_t o = 0;
    if (field)
        o = (size_t)snprintf(err->message, sizeof err->message, "field '%s': ", field);
    if (o >= sizeof err->message)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message + o, sizeof err->message - o, fmt, ap);
    va_end(ap);
}

static void format_decimal(char *out, size_t cap, __int128 v, int scale)
{
    char digits[48];
    int n = 0;
    bool neg = v < 0;
    unsigned __int128 u = neg ? (unsigned __int128)0 - (unsigned __int128)v : (unsigned __int128)v;
    do {
        digits[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    while (n <= scale)
        digits[n++] = '0';
    size_t o = 0;
    if (neg && o + 1 < cap)
        out[o++] = '-';
    for (int i = n - 1; i >= 0 && o + 2 < cap; i--) {
        out[o++] = digits[i];
        if (i == scale && scale > 0)
            out[o++] = '.';
    }
    out[o] = '\0';
}

static void format_duration(char *out, size_t cap, int64_t us)
{
    if (us % 3600000000LL == 0 && us >= 3600000000LL)
        snprintf(out, cap, "%" PRId64 "h", us / (int64_t)3600000000);
    else if (us % 60000000LL == 0 && us >= 60000000LL)
        snprintf(out, cap, "%" PRId64 "m", us / (int64_t)60000000);
    else if (us % 1000000 == 0)
        snprintf(out, cap, "%" PRId64 "s", us / 1000000);
    else
        snprintf(out, cap, "%.3fs", (double)us / 1e6);
}

/* ------------------------------------------------------------ one event */

static size_t code_points(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static bool check_string(event_ctx *c, const tv_field *f, const char *s, size_t len)
{
    char pv[160];
    if (f->n_enum) {
        bool ok = false;
        for (uint32_t i = 0; i < f->n_enum && !ok; i++)
            ok = f->enum_lens[i] == len && memcmp(f->enum_values[i], s, len) == 0;
        if (!ok) {
            preview(pv, sizeof pv, s, len);
            set_error(&c->cur, TV_R_ENUM, f->name, "\"%s\" is not one of %s", pv, f->enum_text);
            return false;
        }
    }
    /* a character is 1..4 bytes: most values pass on their byte length alone */
    bool short_ok = f->min_length == TV_NO_LIMIT || (int64_t)(len / 4) >= f->min_length;
    bool long_ok = f->max_length == TV_NO_LIMIT || (int64_t)len <= f->max_length;
    if (!short_ok || !long_ok) {
        size_t n = code_points(s, len);
        if (f->min_length != TV_NO_LIMIT && (int64_t)n < f->min_length) {
            if (n == 0)
                set_error(&c->cur, TV_R_LENGTH, f->name, "is empty (min_length %" PRId64 ")", f->min_length);
            else
                set_error(&c->cur, TV_R_LENGTH, f->name, "%zu characters, fewer than min_length %" PRId64, n,
                          f->min_length);
            return false;
        }
        if (f->max_length != TV_NO_LIMIT && (int64_t)n > f->max_length) {
            set_error(&c->cur, TV_R_LENGTH, f->name, "%zu characters, more than max_length %" PRId64, n, f->max_length);
            return false;
        }
    }
    if (f->regex && !g_regex_match_full(f->regex, s, (gssize)len, 0, 0, NULL, NULL)) {
        preview(pv, sizeof pv, s, len);
        set_error(&c->cur, TV_R_PATTERN, f->name, "\"%s\" does not match regex %s", pv, f->regex_src);
        return false;
    }
    return true;
}

static bool type_error(event_ctx *c, const tv_field *f, const tvj_member *m)
{
    char got[200], tb[32];
    describe(got, sizeof got, m);
    const char *want = f->type == TV_TIMESTAMP ? "timestamp (ISO 8601 string)" : tv_type_label(f, tb, sizeof tb);
    set_error(&c->cur, TV_R_TYPE, f->name, "expected %s, got %s", want, got);
    return false;
}

/* JSON's number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_number_text(const char *s, size_t len)
{
    size_t i = 0;
    if (i < len && s[i] == '-')
        i++;
    if (i >= len)
        return false;
    if (s[i] == '0')
        i++;
    else if (s[i] >= '1' && s[i] <= '9')
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    else
        return false;
    if (i < len && s[i] == '.') {
        size_t d = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t d = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    return i == len;
}

/* The member as the field's coerce rule reads it: a string holding a JSON
 * number as that number (into nb, NUL-terminated, as strtod needs), a
 * number as its text for a string field. Anything else stays as it is. */
static const tvj_member *coerced(const tv_field *f, const tvj_member *m, tvj_member *tmp, char *nb, size_t cap)
{
    if (!f->coerce)
        return m;
    if (f->type == TV_STRING && m->type == TVJ_NUMBER) {
        *tmp = *m;
        tmp->type = TVJ_STRING;
        tmp->str = m->raw;
        tmp->str_len = m->raw_len;
        return tmp;
    }
    bool numeric = f->type == TV_INT || f->type == TV_FLOAT || f->type == TV_DECIMAL;
    if (!numeric || m->type != TVJ_STRING || m->str_len >= cap || !json_number_text(m->str, m->str_len))
        return m;
    memcpy(nb, m->str, m->str_len);
    nb[m->str_len] = '\0';
    *tmp = *m;
    tmp->type = TVJ_NUMBER;
    tmp->raw = nb;
    tmp->raw_len = m->str_len;
    return tmp;
}

static bool put_field(event_ctx *c, const tv_field *f, tv_column *col, const tvj_member *m)
{
    tvj_member tmp;
    char nb[80];
    m = coerced(f, m, &tmp, nb, sizeof nb);
    char pv[160], tb[32];
    uint32_t row = c->row;
    switch (f->type) {
    case TV_STRING:
        if (m->type != TVJ_STRING)
            return type_error(c, f, m);
        if (!check_string(c, f, m->str, m->str_len))
            return false;
        if (!tv_col_str(c->set, col, row, m->str, m->str_len)) {
            if (c->set->oom)
                set_error(&c->cur, TV_R_INTERNAL, f->name, "out of memory");
            else
                set_error(&c->cur, TV_R_SIZE, f->name, "value too large for a batch");
            return false;
        }
        return true;

    case TV_INT: {
        if (m->type != TVJ_NUMBER)
            return type_error(c, f, m);
        int64_t x;
        int st = tv_parse_int(m->raw, m->raw_len, &x);
        if (st == 0 && (!f->has_min || x >= f->min_i) && (!f->has_max || x <= f->max_i)) {
            tv_col_i64(col, row, x);
            return true;
        }
        preview(pv, sizeof pv, m->raw, m->raw_len);
        if (st == 1)
            set_error(&c->cur, TV_R_TYPE, f->name, "expected int, got number %s (an int has no fraction or exponent)",
                      pv);
        else if (st == 2)
            set_error(&c->cur, TV_R_RANGE, f->name, "%s is out of int64 range", pv);
        else if (f->has_min && x < f->min_i)
            set_error(&c->cur, TV_R_RANGE, f->name, "%s is less than min %s", pv, f->min_text);
        else
            set_error(&c->cur, TV_R_RANGE, f->name, "%s is more than max %s", pv, f->max_text);
        return false;
    }

    case TV_FLOAT: {
        if (m->type != TVJ_NUMBER)
            return type_error(c, f, m);
        char *end = NULL;
        double x = g_ascii_strtod(m->raw, &end);
        bool syntax = end != m->raw + m->raw_len, inf = isinf(x);
        bool low = f->has_min && x < f->min_f, high = f->has_max && x > f->max_f;
        if (syntax || inf || low || high) {
            preview(pv, sizeof pv, m->raw, m->raw_len);
            if (syntax)
                set_error(&c->cur, TV_R_TYPE, f->name, "expected float, got number %s", pv);
            else if (inf)
                set_error(&c->cur, TV_R_RANGE, f->name, "%s is out of float64 range", pv);
            else
                set_error(&c->cur, TV_R_RANGE, f->name, "%s is %s %s", pv, low ? "less than min" : "more than max",
                          low ? f->min_text : f->max_text);
            return false;
        }
        tv_col_f64(col, row, x);
        return true;
    }

    case TV_BOOL:
        if (m->type != TVJ_BOOL)
            return type_error(c, f, m);
        tv_col_bool(col, row, m->boolean);
        return true;

    case TV_DECIMAL: {
        if (m->type != TVJ_NUMBER)
            return type_error(c, f, m);
        __int128 x = 0;
        tv_dec_status st = tv_parse_decimal(m->raw, m->raw_len, f->precision, f->scale, &x);
        const char *type = "decimal";
        if (st != TV_DEC_OK) {
            preview(pv, sizeof pv, m->raw, m->raw_len);
            type = tv_type_label(f, tb, sizeof tb);
        }
        if (st == TV_DEC_SCALE) {
            set_error(&c->cur, TV_R_PRECISION, f->name, "%s has more than %d decimal places; %s does not round", pv,
                      f->scale, type);
            return false;
        }
        if (st == TV_DEC_PRECISION) {
            set_error(&c->cur, TV_R_PRECISION, f->name, "%s does not fit %s (at most %d digits before the point)", pv,
                      type, f->precision - f->scale);
            return false;
        }
        if (st != TV_DEC_OK)
            return type_error(c, f, m);
        if ((f->has_min && x < f->min_d) || (f->has_max && x > f->max_d)) {
            char val[64];
            format_decimal(val, sizeof val, x, f->scale);
            bool low = f->has_min && x < f->min_d;
            set_error(&c->cur, TV_R_RANGE, f->name, "%s is %s %s %s", val, low ? "less than" : "more than",
                      low ? "min" : "max", low ? f->min_text : f->max_text);
            return false;
        }
        tv_col_d128(col, row, x);
        return true;
    }

    case TV_TIMESTAMP: {
        if (m->type != TVJ_STRING)
            return type_error(c, f, m);
        int64_t us;
        const char *why;
        if (!tv_parse_timestamp(m->str, m->str_len, &us, &why)) {
            preview(pv, sizeof pv, m->str, m->str_len);
            set_error(&c->cur, TV_R_FORMAT, f->name, "\"%s\" %s", pv, why);
            return false;
        }
        if ((f->has_min && us < f->min_i) || (f->has_max && us > f->max_i)) {
            preview(pv, sizeof pv, m->str, m->str_len);
            bool low = f->has_min && us < f->min_i;
            set_error(&c->cur, TV_R_RANGE, f->name, "\"%s\" is %s %s %s", pv, low ? "before" : "after",
                      low ? "min" : "max", low ? f->min_text : f->max_text);
            return false;
        }
        int64_t ahead = f->max_future_set ? f->max_future_us : c->v->max_future_us;
        if (ahead != TV_NO_LIMIT && us > c->now_us + ahead) {
            char d1[32], d2[32];
            preview(pv, sizeof pv, m->str, m->str_len);
            format_duration(d1, sizeof d1, us - c->now_us);
            format_duration(d2, sizeof d2, ahead);
            set_error(&c->cur, TV_R_RANGE, f->name, "\"%s\" is %s in the future (max_future %s)", pv, d1, d2);
            return false;
        }
        tv_col_i64(col, row, us);
        if (c->v->schema->event_time >= 0 && f == &c->v->schema->fields[c->v->schema->event_time]) {
            c->event_time_us = us;
            c->has_event_time = true;
        }
        return true;
    }
    }
    return false;
}

/* The problem just described in c->cur joins the event's list; the first
 * one is also the event's reason. Out of memory is not the event's fault:
 * it becomes the reason, whatever came before. */
static void add_problem(event_ctx *c)
{
    tv_error *err = c->err;
    bool internal = c->cur.reason == TV_R_INTERNAL;
    if (err->n_problems == 0 || internal) {
        err->reason = c->cur.reason;
        err->field = c->cur.field;
        memcpy(err->message, c->cur.message, sizeof err->message);
        memcpy(err->value, c->cur.value, sizeof err->value);
    }
    c->fatal |= internal;
    if (err->n_problems < TV_MAX_PROBLEMS)
        err->problems[err->n_problems++] = c->cur;
    else
        err->n_unlisted++;
}

void tv_event_member(void *validator, const tvj_member *m)
{
    tv_validator *v = validator;
    event_ctx *c = &v->ev;
    const tv_schema *s = v->schema;
    int idx = tv_schema_lookup(s, m->key, m->key_len);
    if (c->fatal)
        return;
    if (idx < 0) {
        /* verbatim: `"key" : value` exactly as received, comma-joined */
        size_t used = (size_t)(c->extras_at - tv_col_offset(c->extras, c->row));
        if (!tv_col_reserve(c->set, c->extras, c->row, used + m->member_len + 2)) {
            bool oom = c->set->oom;
            set_error(&c->cur, oom ? TV_R_INTERNAL : TV_R_SIZE, NULL,
                      oom ? "out of memory" : "event too large for a batch");
            add_problem(c);
            c->fatal = true;
            return;
        }
        uint8_t *d = c->extras->data + c->extras_at;
        if (c->extras_any)
            *d++ = ',';
        memcpy(d, m->raw + m->raw_len - m->member_len, m->member_len); /* the member ends with its value */
        c->extras_at += (int32_t)(m->member_len + (c->extras_any ? 1 : 0));
        c->extras_any = true;
        return;
    }
    v->seen[idx >> 6] |= 1ull << (idx & 63);
    if (c->fatal)
        return;
    const tv_field *f = &s->fields[idx];
    tv_column *col = &c->set->cols[idx];
    if (m->type == TVJ_NULL) {
        if (f->required) {
            set_error(&c->cur, TV_R_REQUIRED, f->name, "required but null");
            snprintf(c->cur.value, sizeof c->cur.value, "null");
            add_problem(c);
        } else {
            tv_col_null(col, c->row);
        }
        return;
    }
    if (!put_field(c, f, col, m)) {
        describe(c->cur.value, sizeof c->cur.value, m);
        add_problem(c);
    }
}

static tv_reason walk_failure(const tvj_error *je, tvj_status st, const tv_validator *v, tv_problem *err)
{
    switch (st) {
    case TVJ_EMPTY: set_error(err, TV_R_SYNTAX, NULL, "empty message"); return TV_R_SYNTAX;
    case TVJ_MALFORMED:
        set_error(err, TV_R_SYNTAX, NULL, "malformed JSON at byte %zu: %s", je->offset, je->message);
        return TV_R_SYNTAX;
    case TVJ_NOT_OBJECT:
        set_error(err, TV_R_NOT_OBJECT, NULL, "expected a JSON object, got %s%s",
                  je->got == TVJ_ARRAY || je->got == TVJ_OBJECT ? "an " : "", tvj_type_name(je->got));
        return TV_R_NOT_OBJECT;
    case TVJ_TOO_DEEP:
        set_error(err, TV_R_DEPTH, NULL, "nesting deeper than %u levels at byte %zu", v->max_depth, je->offset);
        return TV_R_DEPTH;
    case TVJ_DUPLICATE: {
        char pv[160];
        preview(pv, sizeof pv, je->key, je->key_len);
        int idx = tv_schema_lookup(v->schema, je->key, je->key_len);
        set_error(err, TV_R_DUPLICATE, idx >= 0 ? v->schema->fields[idx].name : NULL,
                  "duplicate key \"%s\" at byte %zu", pv, je->offset);
        return TV_R_DUPLICATE;
    }
    default: set_error(err, TV_R_INTERNAL, NULL, "JSON parser: %s", je->message); return TV_R_INTERNAL;
    }
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* A problem of the event as a whole: its only one. */
static tv_reason whole_event(event_ctx *c)
{
    tv_error *err = c->err;
    err->n_problems = 0;
    err->n_unlisted = 0;
    add_problem(c);
    return err->reason;
}

tv_reason tv_event_begin(tv_validator *v, tv_columns *set, size_t len, int64_t now_us, tv_error *err)
{
    event_ctx *c = &v->ev;
    *c = (event_ctx){.v = v, .set = set, .row = set->rows, .len = len, .now_us = now_us, .err = err};
    err->reason = TV_VALID;
    err->field = NULL;
    err->message[0] = '\0';
    err->value[0] = '\0';
    err->n_problems = 0;
    err->n_unlisted = 0;
    if (len > INT32_MAX - 2) {
        set_error(&c->cur, TV_R_SIZE, NULL, "event of %zu bytes is larger than a batch column can hold", len);
        return whole_event(c);
    }
    if (c->row >= set->cap_rows) {
        set_error(&c->cur, TV_R_INTERNAL, NULL, "column set is full");
        return whole_event(c);
    }
    c->extras = &set->cols[v->col_extras];
    if (!tv_col_reserve(set, c->extras, c->row, len + 2)) {
        set_error(&c->cur, set->oom ? TV_R_INTERNAL : TV_R_SIZE, NULL,
                  set->oom ? "out of memory" : "event too large for a batch");
        return whole_event(c);
    }
    c->extras_at = tv_col_offset(c->extras, c->row);
    c->extras->data[c->extras_at++] = '{';
    memset(v->seen, 0, v->seen_words * sizeof *v->seen);
    return TV_VALID;
}

/* Required fields the walk did not see are problems; optional ones null. */
static void check_missing(event_ctx *c)
{
    const tv_schema *s = c->v->schema;
    for (uint32_t i = 0; i < s->n_fields && !c->fatal; i++) {
        if (c->v->seen[i >> 6] & (1ull << (i & 63)))
            continue;
        const tv_field *f = &s->fields[i];
        if (!f->required) {
            tv_col_null(&c->set->cols[i], c->row);
            continue;
        }
        set_error(&c->cur, TV_R_REQUIRED, f->name, "required but missing");
        add_problem(c);
    }
}

tv_reason tv_event_end(tv_validator *v, tvj_status walked, const tvj_error *je, size_t len, int64_t ingest_time_us,
                       tv_row_info *info)
{
    event_ctx *c = &v->ev;
    c->len = len;
    const tv_schema *s = v->schema;
    tv_columns *set = c->set;
    uint32_t row = c->row;
    if (walked != TVJ_OK) {
        walk_failure(je, walked, v, &c->cur);
        return whole_event(c);
    }
    if (len > INT32_MAX - 2) {
        set_error(&c->cur, TV_R_SIZE, NULL, "event of %zu bytes is larger than a batch column can hold", len);
        return whole_event(c);
    }
    check_missing(c);
    if (c->err->n_problems)
        return c->err->reason;
    if (s->event_time >= 0) {
        tv_column *col = &set->cols[v->col_event_date];
        if (c->has_event_time)
            tv_col_i32(col, row, (int32_t)floor_div(c->event_time_us, 86400000000LL));
        else
            tv_col_null(col, row);
    }
    tv_col_i64(&set->cols[v->col_ingest], row, ingest_time_us);
    c->extras->data[c->extras_at++] = '}';
    tv_col_set_offset(c->extras, row + 1, c->extras_at);

    info->event_time_us = c->has_event_time ? c->event_time_us : 0;
    info->key = NULL;
    info->key_len = 0;
    if (v->key_field >= 0) {
        tv_column *kc = &set->cols[v->key_field];
        bool valid = !kc->nullable || (kc->validity[row >> 3] >> (row & 7) & 1);
        if (valid) {
            int32_t b = tv_col_offset(kc, row);
            info->key = kc->data ? (const char *)kc->data + b : "";
            info->key_len = (size_t)(tv_col_offset(kc, row + 1) - b);
        }
    }
    set->rows = row + 1;
    set->in_bytes += c->len;
    return TV_VALID;
}

tv_reason tv_validate(tv_validator *v, tv_columns *set, const uint8_t *buf, size_t len, int64_t ingest_time_us,
                      int64_t now_us, tv_row_info *info, tv_error *err)
{
    tv_reason r = tv_event_begin(v, set, len, now_us, err);
    if (r != TV_VALID)
        return r;
    tvj_error je;
    tvj_status st = tvj_walk(v->walker, buf, len, len + TVJ_PADDING, tv_event_member, v, &je);
    return tv_event_end(v, st, &je, len, ingest_time_us, info);
}

void tv_error_text(const tv_error *err, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "%s", err->message);
    for (uint32_t i = 1; i < err->n_problems && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "; %s", err->problems[i].message);
    if (err->n_unlisted && o < cap)
        snprintf(out + o, cap - o, "; and %" PRIu32 " more", err->n_unlisted);
}
