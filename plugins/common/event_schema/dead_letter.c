/* Dead-letter envelopes (see dead_letter.h). */
#include "dead_letter.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing past
 * U+10FFFF. NUL is fine: JSON escapes it. */
static gboolean utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 2, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return FALSE;
        }
        if (i + n > len)
            return FALSE;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return FALSE;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return FALSE;
        i += n;
    }
    return TRUE;
}

gboolean tv_json_append_string(GString *out, const char *s, size_t len)
{
    if (len == 0) {
        g_string_append(out, "\"\"");
        return TRUE;
    }
    if (!utf8_valid((const uint8_t *)s, len))
        return FALSE;
    static const char hex[] = "0123456789abcdef";
    g_string_append_c(out, '"');
    size_t run = 0; /* bytes that need no escape, appended in one go */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        g_string_append_len(out, s + run, (gssize)(i - run));
        run = i + 1;
        switch (c) {
        case '"': g_string_append(out, "\\\""); break;
        case '\\': g_string_append(out, "\\\\"); break;
        case '\n': g_string_append(out, "\\n"); break;
        case '\r': g_string_append(out, "\\r"); break;
        case '\t': g_string_append(out, "\\t"); break;
        case '\b': g_string_append(out, "\\b"); break;
        case '\f': g_string_append(out, "\\f"); break;
        default: {
            char u[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
            g_string_append(out, u);
        }
        }
    }
    g_string_append_len(out, s + run, (gssize)(len - run));
    g_string_append_c(out, '"');
    return TRUE;
}

static void append_str_or_null(GString *out, const char *s)
{
    if (!s || !tv_json_append_string(out, s, strlen(s)))
        g_string_append(out, "null");
}

void tv_format_utc(char out[64], int64_t us)
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)frac);
}

static const char *origin_kind(ecf_origin_kind k)
{
    switch (k) {
    case ECF_ORIGIN_GENERATED: return "generated";
    case ECF_ORIGIN_HTTP: return "http";
    case ECF_ORIGIN_KAFKA: return "kafka";
    case ECF_ORIGIN_FILE: return "file";
    case ECF_ORIGIN_NONE:
    default: return "none";
    }
}

void tv_dead_letter_json(GString *out, const tv_dead_letter *d)
{
    char at[64];
    tv_format_utc(at, d->at_us);
    g_string_truncate(out, 0);
    g_string_append(out, "{\"reason\":");
    append_str_or_null(out, d->reason);
    g_string_append(out, ",\"class\":");
    append_str_or_null(out, d->klass);
    g_string_append(out, ",\"field\":");
    append_str_or_null(out, d->field);
    g_string_append(out, ",\"stage\":");
    append_str_or_null(out, d->stage);
    g_string_append_printf(out, ",\"at\":\"%s\",\"source\":{\"kind\":\"%s\",\"topic\":", at,
                           origin_kind(d->origin ? d->origin->kind : ECF_ORIGIN_NONE));
    append_str_or_null(out, d->origin ? d->origin->topic : NULL);
    g_string_append_printf(out, ",\"partition\":%" PRId32 ",\"offset\":%" PRId64 "}",
                           d->origin ? d->origin->partition : -1, d->origin ? d->origin->offset : -1);
    g_string_append(out, ",\"raw\":");
    if (!tv_json_append_string(out, (const char *)d->raw, d->raw_len)) {
        g_string_truncate(out, out->len - strlen("\"raw\":"));
        g_autofree char *b64 = g_base64_encode(d->raw, d->raw_len);
        g_string_append_printf(out, "\"raw_base64\":\"%s\"", b64);
    }
    g_string_append_c(out, '}');
}

ecf_status tv_dead_letter_add(ecf_stage *stage, ecf_batch *dlq, ecf_message *m, const tv_dead_letter *d, GString *buf)
{
    tv_dead_letter_json(buf, d);
    ecf_header own[16 + 4];
    ecf_header *hdrs = m->n_headers > 16 ? g_new(ecf_header, m->n_headers + 4) : own;
    size_t nh = 0;
    for (uint32_t k = 0; k < m->n_headers; k++)
        hdrs[nh++] = m->headers[k];
    hdrs[nh++] = (ecf_header){"ecflow.dlq.reason", (const uint8_t *)d->reason, (uint32_t)strlen(d->reason)};
    hdrs[nh++] = (ecf_header){"ecflow.dlq.class", (const uint8_t *)d->klass, (uint32_t)strlen(d->klass)};
    hdrs[nh++] = (ecf_header){"ecflow.dlq.stage", (const uint8_t *)d->stage, (uint32_t)strlen(d->stage)};
    if (d->field)
        hdrs[nh++] = (ecf_header){"ecflow.dlq.field", (const uint8_t *)d->field, (uint32_t)strlen(d->field)};
    ecf_message_init init = {
        .payload = buf->str,
        .payload_len = buf->len,
        .key = m->key,
        .key_len = m->key ? m->key_len : 0,
        .parent = m,
        .headers = hdrs,
        .n_headers = nh,
    };
    ecf_status st = ecf_batch_add(stage, dlq, &init);
    if (hdrs != own)
        g_free(hdrs);
    return st;
}
