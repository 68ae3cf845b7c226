/*
 * Test helpers for Arrow struct arrays of the types ecflow exchanges:
 *   arrow_check()  checks a struct array against its schema the way an
 *                  independent Arrow reader would (lengths, buffer counts,
 *                  offsets, null counts, nullability, UTF-8);
 *   arrow_row()    renders one row as a JSON object, for exact comparisons:
 *                  utf8 -> string, int64 -> number, float64 -> shortest
 *                  round-trip number, bool, decimal -> "123.45" (a string,
 *                  so the digits survive any JSON reader), timestamp[us] ->
 *                  "2024-03-01T00:00:00.067000Z", date32 -> "2024-03-01",
 *                  null -> null.
 * Header-only: used by the unit tests and by the sink-records fixture.
 */
#pragma once
#include <ecflow/plugin.h>
#include <glib.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static inline gboolean arrow_bit(const void *bits, int64_t i)
{
    return bits == NULL || ((((const uint8_t *)bits)[i >> 3] >> (i & 7)) & 1);
}

static inline void arrow_json_string(GString *out, const char *s, size_t len)
{
    g_string_append_c(out, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            g_string_append_c(out, '\\'), g_string_append_c(out, (char)c);
        else if (c == '\n')
            g_string_append(out, "\\n");
        else if (c < 0x20)
            g_string_append_printf(out, "\\u%04x", c);
        else
            g_string_append_c(out, (char)c);
    }
    g_string_append_c(out, '"');
}

static inline void arrow_decimal_text(GString *out, const uint8_t *p16, int scale)
{
    __int128 v;
    memcpy(&v, p16, 16);
    char digits[48];
    int n = 0;
    gboolean neg = v < 0;
    unsigned __int128 u = neg ? (unsigned __int128)0 - (unsigned __int128)v : (unsigned __int128)v;
    do {
        digits[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    while (n <= scale)
        digits[n++] = '0';
    if (neg)
        g_string_append_c(out, '-');
    for (int i = n - 1; i >= 0; i--) {
        g_string_append_c(out, digits[i]);
        if (i == scale && scale > 0)
            g_string_append_c(out, '.');
    }
}

static inline void arrow_utc_text(GString *out, int64_t us)
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0)
        frac += 1000000, secs--;
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    g_string_append_printf(out, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}

/* One value of column `c` (schema `f`) at row i (array offset applied). */
static inline void arrow_value(GString *out, const struct ArrowSchema *f, const struct ArrowArray *c, int64_t i)
{
    int64_t r = i + c->offset;
    if (!arrow_bit(c->buffers[0], r)) {
        g_string_append(out, "null");
        return;
    }
    const char *fmt = f->format;
    if (!strcmp(fmt, "u")) {
        const int32_t *off = c->buffers[1];
        arrow_json_string(out, (const char *)c->buffers[2] + off[r], (size_t)(off[r + 1] - off[r]));
    } else if (!strcmp(fmt, "l")) {
        g_string_append_printf(out, "%" PRId64, ((const int64_t *)c->buffers[1])[r]);
    } else if (!strcmp(fmt, "g")) {
        char buf[G_ASCII_DTOSTR_BUF_SIZE];
        g_string_append(out, g_ascii_dtostr(buf, sizeof buf, ((const double *)c->buffers[1])[r]));
    } else if (!strcmp(fmt, "b")) {
        g_string_append(out, arrow_bit(c->buffers[1], r) ? "true" : "false");
    } else if (!strncmp(fmt, "d:", 2)) {
        int p = 0, s = 0;
        sscanf(fmt, "d:%d,%d", &p, &s);
        g_string_append_c(out, '"');
        arrow_decimal_text(out, (const uint8_t *)c->buffers[1] + 16 * r, s);
        g_string_append_c(out, '"');
    } else if (!strcmp(fmt, "tsu:UTC")) {
        g_string_append_c(out, '"');
        arrow_utc_text(out, ((const int64_t *)c->buffers[1])[r]);
        g_string_append_c(out, '"');
    } else if (!strcmp(fmt, "tdD")) {
        int64_t us = (int64_t)((const int32_t *)c->buffers[1])[r] * 86400 * 1000000;
        GString *tmp = g_string_new(NULL);
        arrow_utc_text(tmp, us);
        g_string_append_printf(out, "\"%.10s\"", tmp->str);
        g_string_free(tmp, TRUE);
    } else {
        g_string_append_printf(out, "\"<format %s>\"", fmt);
    }
}

/* Appends row i as {"name":value,...} (no newline). */
static inline void arrow_row(GString *out, const struct ArrowSchema *s, const struct ArrowArray *a, int64_t i)
{
    g_string_append_c(out, '{');
    for (int64_t k = 0; k < s->n_children; k++) {
        if (k)
            g_string_append_c(out, ',');
        arrow_json_string(out, s->children[k]->name, strlen(s->children[k]->name));
        g_string_append_c(out, ':');
        arrow_value(out, s->children[k], a->children[k], i + a->offset);
    }
    g_string_append_c(out, '}');
}

static inline int64_t arrow_buffers_for(const char *fmt)
{
    if (!strcmp(fmt, "u"))
        return 3;
    if (!strcmp(fmt, "+s"))
        return 1;
    return 2;
}

/* NULL when the array is sound; else what is wrong (g_free it). */
static inline char *arrow_check(const struct ArrowSchema *s, const struct ArrowArray *a)
{
    if (!a->release)
        return g_strdup("array is released");
    if (strcmp(s->format, "+s") != 0)
        return g_strdup_printf("top-level format is %s, not +s", s->format);
    if (a->n_children != s->n_children)
        return g_strdup_printf("%" PRId64 " children, schema has %" PRId64, a->n_children, s->n_children);
    if (a->n_buffers != 1 || a->null_count != 0)
        return g_strdup("struct: expected 1 buffer and no nulls");
    for (int64_t k = 0; k < s->n_children; k++) {
        const struct ArrowSchema *f = s->children[k];
        const struct ArrowArray *c = a->children[k];
        const char *name = f->name;
        if (!c || !c->release)
            return g_strdup_printf("%s: child missing or released", name);
        if (c->length < a->length + a->offset)
            return g_strdup_printf("%s: length %" PRId64 " < %" PRId64, name, c->length, a->length);
        if (c->n_buffers != arrow_buffers_for(f->format))
            return g_strdup_printf("%s: %" PRId64 " buffers for format %s", name, c->n_buffers, f->format);
        for (int64_t b = 1; b < c->n_buffers; b++)
            if (!c->buffers[b] && c->length > 0)
                return g_strdup_printf("%s: buffer %" PRId64 " is NULL", name, b);
        int64_t nulls = 0;
        for (int64_t i = 0; i < c->length; i++)
            nulls += !arrow_bit(c->buffers[0], i + c->offset);
        if (nulls != c->null_count)
            return g_strdup_printf("%s: null_count %" PRId64 " but %" PRId64 " null bits", name, c->null_count,
                                   nulls);
        if (nulls && !(f->flags & ARROW_FLAG_NULLABLE))
            return g_strdup_printf("%s: %" PRId64 " nulls in a non-nullable field", name, nulls);
        if (!strcmp(f->format, "u")) {
            const int32_t *off = c->buffers[1];
            if (off[c->offset] < 0)
                return g_strdup_printf("%s: negative first offset", name);
            for (int64_t i = 0; i < c->length; i++) {
                int64_t r = i + c->offset;
                if (off[r + 1] < off[r])
                    return g_strdup_printf("%s: offsets decrease at row %" PRId64, name, i);
                if (!g_utf8_validate_len((const char *)c->buffers[2] + off[r], (gsize)(off[r + 1] - off[r]), NULL) &&
                    !memchr((const char *)c->buffers[2] + off[r], 0, (size_t)(off[r + 1] - off[r])))
                    return g_strdup_printf("%s: row %" PRId64 " is not UTF-8", name, i);
            }
        }
    }
    return NULL;
}
