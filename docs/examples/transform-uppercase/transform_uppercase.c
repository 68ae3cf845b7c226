/*
 * transform-uppercase: an example third-party ecflow plugin.
 *
 * Upper-cases the string value of one top-level field of each JSON object
 * message, e.g. with `field: device`
 *     {"device":"mobile","n":1}  ->  {"device":"MOBILE","n":1}
 * Only ASCII letters change; every other byte (UTF-8 sequences, escape
 * sequences such as \n or \u00e9) is copied as it is, so the payload keeps
 * its length and stays valid JSON.
 *
 * It is built outside the ecflow tree from nothing but the installed header
 * and `pkg-config ecflow-plugin`; see the Makefile and CMakeLists.txt beside
 * this file and docs/plugin-authoring.md.
 *
 * Acks: every output message is added with `.parent` set to its input
 * message, so it shares the input's ack token and the source still learns
 * when the sink made it durable. Messages without the field are passed on,
 * dropped or failed, as the `missing` option says.
 */
#include <ecflow/plugin.h>

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ options */

typedef struct {
    char *field;   /* filled by the core from the option table */
    char *missing; /* "pass", "drop" or "fail"                  */
} upper_config;

static const ecf_option upper_options[] = {
    ECF_OPT_STRING("field", upper_config, field, NULL, ECF_REQUIRED,
                   "top-level JSON field whose string value is upper-cased"),
    ECF_OPT_ENUM("missing", upper_config, missing, "pass", "pass|drop|fail",
                 "when the field is absent or not a string: pass the message on unchanged, "
                 "drop it, or fail it back to its source"),
    ECF_OPT_END,
};

/* ------------------------------------------------------------ state */

typedef enum { MISSING_PASS, MISSING_DROP, MISSING_FAIL } missing_policy;

typedef struct {
    size_t field_len;
    missing_policy missing;
    uint8_t *scratch; /* one payload being rewritten; grows, never shrinks */
    size_t scratch_cap;
    ecf_metric *m_changed;
    ecf_metric *m_missing;
} upper_state;

/* ------------------------------------------------------------ scanning */

static const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p points just after an opening quote; returns the closing quote, or NULL
 * when the string never ends. */
static const uint8_t *string_end(const uint8_t *p, const uint8_t *end)
{
    while (p < end) {
        if (*p == '\\')
            p += 2;
        else if (*p == '"')
            return p;
        else
            p++;
    }
    return NULL;
}

/*
 * Finds the string value of top-level key `field` in a JSON object. On
 * success sets [*vbeg, *vend) to the bytes between the value's quotes.
 * A byte-level scan that understands strings, escapes and nesting, but
 * does not validate the rest of the document: enough for an example, and
 * it never reads past `end`.
 */
static bool find_string_value(const uint8_t *p, const uint8_t *end, const char *field, size_t field_len,
                              const uint8_t **vbeg, const uint8_t **vend)
{
    p = skip_ws(p, end);
    if (p == end || *p != '{')
        return false;
    int depth = 0;
    while (p < end) {
        uint8_t c = *p;
        if (c == '{' || c == '[') {
            depth++;
            p++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0)
                return false; /* end of the top-level object */
            p++;
        } else if (c == '"') {
            const uint8_t *s = p + 1;
            const uint8_t *e = string_end(s, end);
            if (!e)
                return false;
            p = e + 1;
            if (depth != 1)
                continue;
            const uint8_t *q = skip_ws(p, end);
            if (q == end || *q != ':')
                continue; /* a value, not a key */
            bool match = (size_t)(e - s) == field_len && memcmp(s, field, field_len) == 0;
            q = skip_ws(q + 1, end);
            if (!match) {
                p = q;
                continue;
            }
            if (q == end || *q != '"')
                return false; /* present, but not a string */
            const uint8_t *ve = string_end(q + 1, end);
            if (!ve)
                return false;
            *vbeg = q + 1;
            *vend = ve;
            return true;
        } else {
            p++;
        }
    }
    return false;
}

/* Upper-cases ASCII letters in [p, end), leaving escape sequences alone. */
static void upcase(uint8_t *p, uint8_t *end)
{
    while (p < end) {
        if (*p == '\\') {
            p += (p + 1 < end && p[1] == 'u') ? 6 : 2;
            continue;
        }
        if (*p >= 'a' && *p <= 'z')
            *p = (uint8_t)(*p - 'a' + 'A');
        p++;
    }
}

/* ------------------------------------------------------------ lifecycle */

static ecf_status upper_create(ecf_stage *stage)
{
    upper_config *cfg = ecf_config(stage);
    /* The core has checked types, ranges and required keys; rules that
     * span options or need more than a type are checked here. */
    if (cfg->field[0] == '\0' || strpbrk(cfg->field, "\"\\"))
        return ecf_error(stage, "option 'field': expected a plain field name, got \"%s\"", cfg->field);
    upper_state *st = calloc(1, sizeof *st);
    if (!st)
        return ECF_ERR_NOMEM;
    st->field_len = strlen(cfg->field);
    st->missing = strcmp(cfg->missing, "drop") == 0   ? MISSING_DROP
                  : strcmp(cfg->missing, "fail") == 0 ? MISSING_FAIL
                                                      : MISSING_PASS;
    st->m_changed =
        ecf_metric_new(stage, ECF_METRIC_COUNTER, "uppercase_changed_total", "Messages whose field was upper-cased");
    st->m_missing =
        ecf_metric_new(stage, ECF_METRIC_COUNTER, "uppercase_missing_total", "Messages without the field as a string");
    ecf_set_state(stage, st);
    return ECF_OK;
}

static bool reserve(upper_state *st, size_t len)
{
    if (len <= st->scratch_cap)
        return true;
    size_t cap = st->scratch_cap ? st->scratch_cap : 1024;
    while (cap < len)
        cap *= 2;
    uint8_t *p = realloc(st->scratch, cap);
    if (!p)
        return false;
    st->scratch = p;
    st->scratch_cap = cap;
    return true;
}

/*
 * `in` is borrowed: the core releases it when this returns. Each output
 * message names its input as `.parent`, which copies the key, times and
 * origin and takes a reference on the same ack token; releasing `in` then
 * drops only the input's reference, with no verdict.
 */
static ecf_status upper_process(ecf_stage *stage, ecf_batch *in)
{
    upper_config *cfg = ecf_config(stage);
    upper_state *st = ecf_state(stage);
    uint32_t n = ecf_batch_count(stage, in);
    ecf_batch *out = ecf_batch_new(stage);
    uint32_t changed = 0, missing = 0, added = 0;

    for (uint32_t i = 0; i < n; i++) {
        ecf_message *m = ecf_batch_message(stage, in, i);
        const uint8_t *vb, *ve;
        ecf_message_init init = {.parent = m, .payload = m->payload, .payload_len = m->payload_len};
        if (find_string_value(m->payload, m->payload + m->payload_len, cfg->field, st->field_len, &vb, &ve)) {
            if (!reserve(st, m->payload_len)) {
                ecf_nack(stage, m, ECF_ERR_NOMEM, "transform-uppercase: out of memory");
                continue;
            }
            memcpy(st->scratch, m->payload, m->payload_len);
            upcase(st->scratch + (vb - m->payload), st->scratch + (ve - m->payload));
            init.payload = st->scratch;
            changed++;
        } else {
            missing++;
            if (st->missing == MISSING_DROP)
                continue; /* released with `in`: no verdict from us */
            if (st->missing == MISSING_FAIL) {
                ecf_nack(stage, m, ECF_ERR_INVALID, "transform-uppercase: field missing or not a string");
                continue;
            }
        }
        ecf_status s = ecf_batch_add(stage, out, &init); /* copies the payload */
        if (s != ECF_OK) {
            ecf_nack(stage, m, s, "transform-uppercase: cannot add message");
            continue;
        }
        added++;
    }

    ecf_metric_add(stage, st->m_changed, changed);
    ecf_metric_add(stage, st->m_missing, missing);
    if (added == 0) {
        ecf_batch_release(stage, out);
        return ECF_OK;
    }
    /* NULL = the first (here the only) output port. emit transfers `out`
     * to the core whatever it returns, and blocks while a downstream ring
     * is full (backpressure). */
    return ecf_emit(stage, NULL, out);
}

static void upper_destroy(ecf_stage *stage)
{
    upper_state *st = ecf_state(stage);
    if (!st)
        return;
    free(st->scratch);
    free(st);
}

ECF_PLUGIN_DEFINE(.name = "transform-uppercase", .kind = ECF_TRANSFORM, .version = "1.0.0",
                  .summary = "Upper-cases the string value of one top-level JSON field (example plugin)",
                  .config_size = sizeof(upper_config), .options = upper_options, .create = upper_create,
                  .process = upper_process, .destroy = upper_destroy, )
