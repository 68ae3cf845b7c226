/* Rows the sink cannot write, to the `rejected` port (see reject.h). */
#include "reject.h"

#include "dead_letter.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>

/* A sampled warning: the first few rejections, then one line per interval
 * with how many were not logged, so a stream of bad rows cannot flood the log. */
#define LOG_FIRST 10
#define LOG_EVERY_US (10 * 1000000LL)

struct ice_reject {
    ecf_stage *stage;
    const pq_column_spec *cols;
    const arrow_kind *kinds;
    int n_cols;
    bool to_port;      /* a stage reads `rejected` */
    GString *row;      /* scratch: the row as JSON */
    GString *envelope; /* scratch: its dead-letter envelope */
    ecf_metric *m_rejected;
    uint64_t logged, unlogged;
    int64_t next_log_us;
};

ice_reject *rej_new(ecf_stage *stage, const pq_column_spec *cols, const arrow_kind *kinds, int n_cols)
{
    ice_reject *r = g_new0(ice_reject, 1);
    r->stage = stage;
    r->cols = cols;
    r->kinds = kinds;
    r->n_cols = n_cols;
    r->to_port = ecf_port_connected(stage, REJECTED_PORT);
    r->row = g_string_sized_new(512);
    r->envelope = g_string_sized_new(1024);
    r->m_rejected = ecf_metric_new(stage, ECF_METRIC_COUNTER, "iceberg_rejected_rows_total",
                                   "Rows the table cannot take (a null in a required column), sent to the "
                                   "'rejected' port or nacked; the rest of their batch is written");
    return r;
}

void rej_free(ice_reject *r)
{
    if (!r)
        return;
    g_string_free(r->row, TRUE);
    g_string_free(r->envelope, TRUE);
    g_free(r);
}

/* The first column row i cannot be written with, or -1. */
static int row_problem(const ice_reject *r, const struct ArrowArray *rec, uint32_t i)
{
    for (int c = 0; c < r->n_cols; c++) {
        const struct ArrowArray *col = rec->children[c];
        if (r->cols[c].required && col->null_count != 0 && !arrow_valid(col, rec->offset + i))
            return c;
    }
    return -1;
}

uint32_t rej_scan(const ice_reject *r, const struct ArrowArray *rec, uint32_t n, uint8_t *fate)
{
    memset(fate, POS_WRITE, n);
    bool any = false;
    for (int c = 0; c < r->n_cols && !any; c++)
        any = r->cols[c].required && rec->children[c]->null_count != 0;
    if (!any) /* the usual batch: no per-row look */
        return 0;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++)
        if (row_problem(r, rec, i) >= 0) {
            fate[i] = REJ_FATE;
            k++;
        }
    return k;
}

/* ------------------------------------------------------------ the row as JSON */

static void append_decimal(GString *out, __int128 v, int scale)
{
    char digits[64];
    int n = 0;
    bool neg = v < 0;
    unsigned __int128 u = neg ? (unsigned __int128)(-(v + 1)) + 1 : (unsigned __int128)v;
    do {
        digits[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u && n < (int)sizeof digits);
    while (n <= scale && n < (int)sizeof digits)
        digits[n++] = '0';
    if (neg)
        g_string_append_c(out, '-');
    for (int k = n - 1; k >= 0; k--) {
        g_string_append_c(out, digits[k]);
        if (k == scale && scale > 0)
            g_string_append_c(out, '.');
    }
}

static void append_bytes(GString *out, const uint8_t *p, uint32_t n, bool text)
{
    if (text && tv_json_append_string(out, (const char *)p, n))
        return;
    g_autofree char *b64 = g_base64_encode(p, n); /* binary, or text that is not UTF-8 */
    g_string_append_printf(out, "\"%s\"", b64);
}

static void append_cell(GString *out, const pq_column_spec *spec, arrow_kind kind, const part_value *v)
{
    if (v->is_null) {
        g_string_append(out, "null");
        return;
    }
    switch (kind) {
    case AC_UTF8:
    case AC_LARGE_UTF8: append_bytes(out, v->p, v->n, true); break;
    case AC_BINARY: append_bytes(out, v->p, v->n, false); break;
    case AC_I64:
    case AC_I32: g_string_append_printf(out, "%" PRId64, v->i); break;
    case AC_BOOL: g_string_append(out, v->i ? "true" : "false"); break;
    case AC_F64:
    case AC_F32:
        if (isfinite(v->d))
            g_string_append_printf(out, "%.17g", v->d);
        else /* JSON has no NaN or infinity */
            g_string_append_printf(out, "\"%s\"", isnan(v->d) ? "NaN" : v->d > 0 ? "Infinity" : "-Infinity");
        break;
    case AC_TS_US: {
        char at[64];
        tv_format_utc(at, v->i);
        g_string_append_printf(out, "\"%s\"", at);
        break;
    }
    case AC_DATE32: {
        g_autoptr(GDate) d = g_date_new_dmy(1, G_DATE_JANUARY, 1970);
        if (v->i >= -719162 && v->i <= 2932896) { /* years 1..9999, what GDate holds */
            if (v->i >= 0)
                g_date_add_days(d, (guint)v->i);
            else
                g_date_subtract_days(d, (guint)-v->i);
            g_string_append_printf(out, "\"%04d-%02d-%02d\"", g_date_get_year(d), g_date_get_month(d),
                                   g_date_get_day(d));
        } else {
            g_string_append_printf(out, "%" PRId64, v->i); /* days since 1970-01-01 */
        }
        break;
    }
    case AC_DEC128:
        g_string_append_c(out, '"');
        append_decimal(out, v->dec, spec->type.id == ICE_DECIMAL ? spec->type.scale : 0);
        g_string_append_c(out, '"');
        break;
    }
}

void rej_row_json(const pq_column_spec *cols, const arrow_kind *kinds, int n_cols, const struct ArrowArray *rec,
                  uint32_t row, GString *out)
{
    g_string_truncate(out, 0);
    g_string_append_c(out, '{');
    for (int c = 0; c < n_cols; c++) {
        if (c)
            g_string_append_c(out, ',');
        tv_json_append_string(out, cols[c].name, strlen(cols[c].name));
        g_string_append_c(out, ':');
        part_value v;
        arrow_cell(rec->children[c], kinds[c], rec->offset + row, &v);
        append_cell(out, &cols[c], kinds[c], &v);
    }
    g_string_append_c(out, '}');
}

/* ------------------------------------------------------------ routing */

static void log_sampled(ice_reject *r, const ecf_message *m, const char *why, uint32_t count)
{
    int64_t now = ecf_monotonic_us(r->stage);
    if (r->logged >= LOG_FIRST && now < r->next_log_us) {
        r->unlogged += count;
        return;
    }
    char more[64] = "";
    if (r->unlogged)
        snprintf(more, sizeof more, " (%" PRIu64 " more since the last sample)", r->unlogged);
    const ecf_origin *o = &m->origin;
    ecf_log(r->stage, ECF_LOG_WARN, "%u row(s) of a batch rejected, first %s[%" PRId32 "]@%" PRId64 ": %s; %s%s", count,
            o->topic ? o->topic : "-", o->partition, o->offset, why,
            r->to_port ? "sent to '" REJECTED_PORT "'" : "nacked", more);
    r->logged++;
    r->unlogged = 0;
    if (r->logged >= LOG_FIRST)
        r->next_log_us = now + LOG_EVERY_US;
}

void rej_route(ice_reject *r, ecf_batch *batch, const struct ArrowArray *rec, const uint8_t *fate)
{
    uint32_t n = ecf_batch_count(r->stage, batch), count = 0;
    ecf_batch *dlq = r->to_port ? ecf_batch_new(r->stage) : NULL;
    const char *stage_name = ecf_name(r->stage);
    char first_why[256] = "";
    const ecf_message *first = NULL;
    for (uint32_t i = 0; i < n; i++) {
        if (fate[i] != REJ_FATE)
            continue;
        ecf_message *m = ecf_batch_message(r->stage, batch, i);
        int c = row_problem(r, rec, i);
        const char *col = c >= 0 ? r->cols[c].name : "?";
        char why[256];
        snprintf(why, sizeof why, "column '%s' is required by the table but null", col);
        if (!first) {
            first = m;
            memcpy(first_why, why, sizeof why);
        }
        count++;
        if (!dlq) {
            ecf_nack(r->stage, m, ECF_ERR_INVALID, why);
            continue;
        }
        rej_row_json(r->cols, r->kinds, r->n_cols, rec, i, r->row);
        tv_dead_letter d = {
            .reason = why,
            .klass = "required",
            .field = col,
            .stage = stage_name,
            .at_us = ecf_now_us(r->stage),
            .origin = &m->origin,
            .raw = (const uint8_t *)r->row->str,
            .raw_len = r->row->len,
        };
        if (tv_dead_letter_add(r->stage, dlq, m, &d, r->envelope) != ECF_OK)
            ecf_nack(r->stage, m, ECF_ERR_INVALID, why);
    }
    if (!count) {
        if (dlq)
            ecf_batch_release(r->stage, dlq);
        return;
    }
    ecf_metric_add(r->stage, r->m_rejected, count);
    log_sampled(r, first, first_why, count);
    /* an undeliverable batch is failed back by the core, envelope by envelope */
    if (dlq)
        ecf_emit(r->stage, REJECTED_PORT, dlq);
}
