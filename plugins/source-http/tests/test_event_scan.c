/*
 * event_scan, the door shim, table-driven: each row is a body, how it is framed, and
 * what the scan must report. Events are summarised as
 *   "OFFSET+LENGTH:KIND" with KIND  o=KEY  (object, key found)
 *                                   m      (object, key missing)
 *                                   n      (object, key not a string)
 *                                   x      (not an object)
 *                                   u      (object, no key asked for)
 * separated by spaces, so a row reads like what it checks.
 */
#include "event_scan.h"

#include <glib.h>
#include <string.h>

typedef struct {
    const char *name;
    jd_layout layout;
    const char *key; /* key_field; NULL = none */
    const char *body;
    gssize body_len; /* -1 = strlen */
    jd_status status;
    const char *events; /* expected summary (JD_OK)       */
    gssize offset;      /* expected error offset, or -1   */
} door_case;

#define J JD_LAYOUT_JSON
#define N JD_LAYOUT_NDJSON
#define SID "session_id"

static const door_case accepts[] = {
    {"single-object", J, SID, "{\"session_id\":\"s1\",\"a\":1}", -1, JD_OK, "0+25:o=s1", -1},
    {"object-with-surrounding-space", J, SID, "  {\"session_id\":\"s1\"}\r\n", -1, JD_OK, "2+19:o=s1", -1},
    {"array-of-objects", J, SID, "[{\"session_id\":\"a\"},{\"session_id\":\"b\"}]", -1, JD_OK, "1+18:o=a 20+18:o=b",
     -1},
    {"array-with-spaces", J, SID, "[ {\"session_id\":\"a\"} ,\n {\"session_id\":\"b\"}\n]", -1, JD_OK,
     "2+18:o=a 24+18:o=b", -1},
    {"empty-array", J, SID, "[]", -1, JD_OK, "", -1},
    {"ndjson", N, SID, "{\"session_id\":\"a\"}\n{\"session_id\":\"b\"}\n", -1, JD_OK, "0+18:o=a 19+18:o=b", -1},
    {"ndjson-crlf-and-blank-lines", N, SID, "\r\n{\"session_id\":\"a\"}\r\n\n  \n{\"session_id\":\"b\"}", -1, JD_OK,
     "2+18:o=a 26+18:o=b", -1},
    {"ndjson-array-line-is-one-event", N, SID, "[1,2]\n{\"session_id\":\"a\"}\n", -1, JD_OK, "0+5:x 6+18:o=a", -1},
    {"non-objects-in-array", J, SID, "[1, \"x\", null, true, [1], {\"session_id\":\"a\"}]", -1, JD_OK,
     "1+1:x 4+3:x 9+4:x 15+4:x 21+3:x 26+18:o=a", -1},
    {"scalar-body", J, SID, "42", -1, JD_OK, "0+2:x", -1},
    {"string-body", J, SID, "\"hello\"", -1, JD_OK, "0+7:x", -1},
    {"missing-key", J, SID, "{\"user_id\":\"u\"}", -1, JD_OK, "0+15:m", -1},
    {"key-is-a-number", J, SID, "{\"session_id\":5}", -1, JD_OK, "0+16:n", -1},
    {"key-is-null", J, SID, "{\"session_id\":null}", -1, JD_OK, "0+19:n", -1},
    {"key-is-an-object", J, SID, "{\"session_id\":{\"a\":\"b\"}}", -1, JD_OK, "0+24:n", -1},
    {"nested-key-does-not-count", J, SID, "{\"x\":{\"session_id\":\"a\"}}", -1, JD_OK, "0+24:m", -1},
    {"first-duplicate-key-wins", J, SID, "{\"session_id\":\"a\",\"session_id\":\"b\"}", -1, JD_OK, "0+35:o=a", -1},
    {"key-value-is-unescaped", J, SID, "{\"session_id\":\"a\\\"b\\u00e9\"}", -1, JD_OK, "0+27:o=a\"b\xc3\xa9", -1},
    {"escaped-key-name-matches", J, SID, "{\"session\\u005fid\":\"x\"}", -1, JD_OK, "0+23:o=x", -1},
    {"empty-key-value-is-reported", J, SID, "{\"session_id\":\"\"}", -1, JD_OK, "0+17:o=", -1},
    {"no-key-field-asked", J, NULL, "{\"session_id\":\"a\"}", -1, JD_OK, "0+18:u", -1},
    {"unicode", J, SID, "{\"session_id\":\"\xe6\x97\xa5\xe6\x9c\xac\",\"e\":\"\xf0\x9f\x98\x80\"}", -1, JD_OK,
     "0+34:o=\xe6\x97\xa5\xe6\x9c\xac", -1},
    {"surrogate-pair-escape", J, SID, "{\"session_id\":\"\\ud83d\\ude00\"}", -1, JD_OK, "0+29:o=\xf0\x9f\x98\x80", -1},
    {"huge-integer", J, SID, "{\"session_id\":\"a\",\"n\":123456789012345678901234567890123}", -1, JD_OK, "0+56:o=a",
     -1},
    {"huge-exponent", J, SID, "{\"session_id\":\"a\",\"n\":1e400,\"m\":-0.0e-99999}", -1, JD_OK, "0+44:o=a", -1},
    {"huge-number-in-array", J, SID, "[123456789012345678901234567890, 1E+999]", -1, JD_OK, "1+30:x 33+6:x", -1},
    {"nesting-within-limit", J, SID, "{\"session_id\":\"a\",\"d\":[[[[[[[[[[[[[[[[[[[[{}]]]]]]]]]]]]]]]]]]]]}", -1,
     JD_OK, "0+65:o=a", -1},
    {"all-value-types", J, SID,
     "{\"session_id\":\"a\",\"s\":\"x\",\"i\":-1,\"f\":2.5e-3,\"t\":true,\"f2\":false,\"z\":null,"
     "\"o\":{},\"l\":[]}",
     -1, JD_OK, "0+87:o=a", -1},
};

static const door_case rejects[] = {
    {"empty-body", J, SID, "", -1, JD_EMPTY, NULL, 0},
    {"whitespace-only", J, SID, "  \n\t \r\n", -1, JD_EMPTY, NULL, 0},
    {"ndjson-blank-lines-only", N, SID, "\n\n  \n", -1, JD_EMPTY, NULL, 0},
    {"trailing-comma-in-object", J, SID, "{\"a\":1,}", -1, JD_MALFORMED, NULL, 7},
    {"missing-colon", J, SID, "{\"a\" 1}", -1, JD_MALFORMED, NULL, 5},
    {"missing-comma", J, SID, "[1 2]", -1, JD_MALFORMED, NULL, 3},
    /* simdjson's root getters alone take these (found by fuzz_http_body) */
    {"root-null-with-junk", J, SID, "null* ", -1, JD_MALFORMED, NULL, 0},
    {"root-false-with-junk-ndjson", N, SID, "{}\nfalse#\n", -1, JD_MALFORMED, NULL, 3},
    {"double-comma-in-array", J, SID, "[1,,2]", -1, JD_MALFORMED, NULL, 3},
    {"trailing-comma-in-array", J, SID, "[{\"session_id\":\"a\"},]", -1, JD_MALFORMED, NULL, 20},
    {"unterminated-array", J, SID, "[1,2", -1, JD_MALFORMED, NULL, 0},
    {"unterminated-object", J, SID, "{\"a\":1", -1, JD_MALFORMED, NULL, 0},
    {"bad-literal", J, SID, "{\"a\":tru}", -1, JD_MALFORMED, NULL, 5},
    {"bad-null", J, SID, "{\"a\":nul}", -1, JD_MALFORMED, NULL, 5},
    {"leading-zero", J, SID, "{\"a\":01}", -1, JD_MALFORMED, NULL, 5},
    {"bare-decimal-point", J, SID, "{\"a\":1.}", -1, JD_MALFORMED, NULL, 5},
    {"lone-minus", J, SID, "{\"a\":-}", -1, JD_MALFORMED, NULL, 5},
    {"empty-exponent", J, SID, "{\"a\":1e}", -1, JD_MALFORMED, NULL, 5},
    {"bad-escape", J, SID, "{\"a\":\"x\\q\"}", -1, JD_MALFORMED, NULL, 5},
    {"unterminated-string", J, SID, "{\"a\":\"abc", -1, JD_MALFORMED, NULL, 5},
    {"raw-newline-in-string", J, SID, "{\"a\":\"x\ny\"}", -1, JD_MALFORMED, NULL, 7},
    {"invalid-utf8", J, SID, "{\"a\":\"\xff\"}", -1, JD_MALFORMED, NULL, 6},
    {"overlong-utf8", J, SID, "{\"a\":\"\xc0\xaf\"}", -1, JD_MALFORMED, NULL, 6},
    {"trailing-brace", J, SID, "{\"a\":1}}", -1, JD_MALFORMED, NULL, 7},
    {"two-values-in-json-body", J, SID, "{\"a\":1} {\"b\":2}", -1, JD_MALFORMED, NULL, 8},
    {"trailing-garbage-after-number", J, SID, "42 x", -1, JD_MALFORMED, NULL, 3},
    {"bare-word", J, SID, "hello", -1, JD_MALFORMED, NULL, 0},
    {"error-deep-inside-skipped-value", J, SID, "{\"x\":[1,2,,3],\"session_id\":\"s\"}", -1, JD_MALFORMED, NULL, 10},
    {"error-after-key-found", J, SID, "{\"session_id\":\"s\",\"x\":[1,}", -1, JD_MALFORMED, NULL, 25},
    {"ndjson-second-line-broken", N, SID, "{\"session_id\":\"a\"}\n{\"session_id\":}\n", -1, JD_MALFORMED, NULL, 33},
    {"ndjson-two-values-on-a-line", N, SID, "{\"a\":1} {\"b\":2}\n", -1, JD_MALFORMED, NULL, 8},
    {"nesting-too-deep", J, SID,
     "{\"d\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
     -1, JD_TOO_DEEP, NULL, 68},
};

#undef J
#undef N

static bool collect(void *user, const jd_event *ev)
{
    GString *out = user;
    if (out->len)
        g_string_append_c(out, ' ');
    g_string_append_printf(out, "%zu+%zu:", ev->offset, ev->length);
    if (!ev->is_object) {
        g_string_append_c(out, 'x');
        return true;
    }
    switch (ev->key_state) {
    case JD_KEY_STRING:
        g_string_append(out, "o=");
        g_string_append_len(out, ev->key, (gssize)ev->key_len);
        break;
    case JD_KEY_MISSING: g_string_append_c(out, 'm'); break;
    case JD_KEY_NOT_STRING: g_string_append_c(out, 'n'); break;
    case JD_KEY_UNCHECKED: g_string_append_c(out, 'u'); break;
    }
    return true;
}

/* Scans `body` from a buffer padded the way the plugin pads request bodies. */
static jd_status scan(jd_parser *p, const char *body, size_t len, jd_layout layout, const char *key, GString *out,
                      jd_error *err)
{
    uint8_t *buf = g_malloc0(len + JD_PADDING);
    memcpy(buf, body, len);
    jd_status st = jd_scan(p, buf, len, len + JD_PADDING, layout, key, NULL, collect, out, err);
    g_free(buf);
    return st;
}

static void run_case(gconstpointer data)
{
    const door_case *c = data;
    size_t len = c->body_len < 0 ? strlen(c->body) : (size_t)c->body_len;
    jd_parser *p = jd_parser_new(64);
    GString *out = g_string_new(NULL);
    jd_error err;
    jd_status st = scan(p, c->body, len, c->layout, c->key, out, &err);
    if (st != c->status)
        g_test_message("got %s at %zu (%s), events \"%s\"", jd_status_str(st), err.offset, err.message, out->str);
    g_assert_cmpstr(jd_status_str(st), ==, jd_status_str(c->status));
    if (c->status == JD_OK) {
        g_assert_cmpstr(out->str, ==, c->events);
    } else {
        g_assert_cmpuint(err.offset, ==, (gsize)c->offset);
        g_assert_cmpstr(err.message, !=, "");
    }
    g_string_free(out, TRUE);
    jd_parser_free(p);
}

/* Ten thousand levels must be refused, not recursed into. */
static void test_very_deep_nesting_is_refused(void)
{
    GString *body = g_string_new(NULL);
    for (int i = 0; i < 10000; i++)
        g_string_append_c(body, '[');
    for (int i = 0; i < 10000; i++)
        g_string_append_c(body, ']');
    jd_parser *p = jd_parser_new(64);
    GString *out = g_string_new(NULL);
    jd_error err;
    jd_status st = scan(p, body->str, body->len, JD_LAYOUT_JSON, "session_id", out, &err);
    g_assert_cmpint(st, ==, JD_TOO_DEEP);
    g_string_free(out, TRUE);
    g_string_free(body, TRUE);
    jd_parser_free(p);
}

static bool stop_after_two(void *user, const jd_event *ev)
{
    (*(int *)user)++;
    return ev->index < 1;
}

static void test_callback_can_stop_the_scan(void)
{
    const char *body = "[{},{},{},{}]";
    jd_parser *p = jd_parser_new(64);
    uint8_t *buf = g_malloc0(strlen(body) + JD_PADDING);
    memcpy(buf, body, strlen(body));
    int seen = 0;
    jd_error err;
    jd_status st = jd_scan(p, buf, strlen(body), strlen(body) + JD_PADDING, JD_LAYOUT_JSON, NULL, NULL, stop_after_two,
                           &seen, &err);
    g_assert_cmpint(st, ==, JD_STOPPED);
    g_assert_cmpint(seen, ==, 2);
    g_free(buf);
    jd_parser_free(p);
}

static void test_missing_padding_is_refused(void)
{
    const char *body = "{}";
    jd_parser *p = jd_parser_new(64);
    jd_error err;
    g_assert_cmpint(jd_scan(p, (const uint8_t *)body, 2, 3, JD_LAYOUT_JSON, NULL, NULL, NULL, NULL, &err), ==,
                    JD_INTERNAL);
    jd_parser_free(p);
}

/* With jd_members the one walk hands each object event's top-level members
 * on: a duplicate key is the event's (walked, offset within the event), not
 * the body's; a body malformed after it is still a body error. */
typedef struct {
    GString *out;
} member_log;

static void log_begin(void *user, uint32_t index)
{
    member_log *l = user;
    g_string_append_printf(l->out, "%s#%u:", l->out->len ? " " : "", index);
}

static void log_member(void *user, const tvj_member *m)
{
    member_log *l = user;
    g_string_append_len(l->out, m->key, (gssize)m->key_len);
    g_string_append_printf(l->out, "=%s,", tvj_type_name(m->type));
}

static bool log_event(void *user, const jd_event *ev)
{
    member_log *l = user;
    g_string_append_printf(l->out, "[%s", ev->walked == TVJ_OK ? "ok" : ev->walked == TVJ_DUPLICATE ? "dup" : "notobj");
    if (ev->walked == TVJ_DUPLICATE)
        g_string_append_printf(l->out, " %.*s@%zu", (int)ev->walk_err->key_len, ev->walk_err->key,
                               ev->walk_err->offset);
    if (ev->key_state == JD_KEY_STRING)
        g_string_append_printf(l->out, " key=%.*s", (int)ev->key_len, ev->key);
    g_string_append_c(l->out, ']');
    return true;
}

static jd_status scan_members(jd_parser *p, const char *body, jd_layout layout, bool dups, GString *out)
{
    size_t len = strlen(body);
    uint8_t *buf = g_malloc0(len + JD_PADDING);
    memcpy(buf, body, len);
    member_log l = {out};
    jd_members m = {.begin = log_begin, .member = log_member, .user = &l, .duplicates = dups};
    jd_error err;
    jd_status st = jd_scan(p, buf, len, len + JD_PADDING, layout, "session_id", &m, log_event, &l, &err);
    g_free(buf);
    return st;
}

static void test_members_ride_on_the_walk(void)
{
    jd_parser *p = jd_parser_new(64);
    GString *out = g_string_new(NULL);
    g_assert_cmpint(scan_members(p,
                                 " [{\"session_id\":\"a\",\"x\":1,\"y\":{\"z\":[]},\"x\":2,\"w\":3},"
                                 "{\"session_id\":\"b\",\"y\":[1,{\"q\":1,\"q\":2}]}, 7]",
                                 JD_LAYOUT_JSON, true, out),
                    ==, JD_OK);
    g_assert_cmpstr(out->str, ==,
                    "#0:session_id=string,x=number,y=object,[dup x@37 key=a] "
                    "#1:session_id=string,[dup q@32 key=b][notobj]");
    g_string_truncate(out, 0);
    g_assert_cmpint(
        scan_members(p, "{\"session_id\":\"a\",\"x\":1,\"x\":2}\n{\"n\":null}\n", JD_LAYOUT_NDJSON, false, out), ==,
        JD_OK);
    g_assert_cmpstr(out->str, ==, "#0:session_id=string,x=number,x=number,[ok key=a] #1:n=null,[ok]");
    g_string_truncate(out, 0);
    g_assert_cmpint(scan_members(p, "[{\"x\":1,\"x\":2},{\"a\":[1,,2]}]", JD_LAYOUT_JSON, true, out), ==, JD_MALFORMED);
    g_string_free(out, TRUE);
    jd_parser_free(p);
}

/* One parser, many documents of different sizes: no state leaks between them. */
static void test_parser_is_reusable(void)
{
    jd_parser *p = jd_parser_new(64);
    for (int round = 0; round < 3; round++) {
        for (guint i = 0; i < G_N_ELEMENTS(accepts); i++) {
            const door_case *c = &accepts[i];
            GString *out = g_string_new(NULL);
            jd_error err;
            jd_status st = scan(p, c->body, strlen(c->body), c->layout, c->key, out, &err);
            g_assert_cmpint(st, ==, JD_OK);
            g_assert_cmpstr(out->str, ==, c->events);
            g_string_free(out, TRUE);
        }
    }
    jd_parser_free(p);
}

/* A large NDJSON body: every line found, offsets line up with the bytes. */
static void test_large_ndjson_offsets(void)
{
    GString *body = g_string_new(NULL);
    GArray *starts = g_array_new(FALSE, FALSE, sizeof(gsize));
    for (int i = 0; i < 20000; i++) {
        gsize at = body->len;
        g_array_append_val(starts, at);
        g_string_append_printf(body, "{\"session_id\":\"s%d\",\"n\":%d}\n", i, i);
    }
    jd_parser *p = jd_parser_new(64);
    GString *out = g_string_new(NULL);
    jd_error err;
    g_assert_cmpint(scan(p, body->str, body->len, JD_LAYOUT_NDJSON, "session_id", out, &err), ==, JD_OK);
    char **parts = g_strsplit(out->str, " ", -1);
    g_assert_cmpuint(g_strv_length(parts), ==, 20000);
    for (int i = 0; i < 20000; i += 997) {
        char want[64];
        g_snprintf(want, sizeof want, "%zu+", g_array_index(starts, gsize, i));
        g_assert_true(g_str_has_prefix(parts[i], want));
        g_snprintf(want, sizeof want, ":o=s%d", i);
        g_assert_true(g_str_has_suffix(parts[i], want));
    }
    g_strfreev(parts);
    g_string_free(out, TRUE);
    g_string_free(body, TRUE);
    g_array_free(starts, TRUE);
    jd_parser_free(p);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(accepts); i++) {
        char *path = g_strdup_printf("/event-scan/accepts/%s", accepts[i].name);
        g_test_add_data_func(path, &accepts[i], run_case);
        g_free(path);
    }
    for (guint i = 0; i < G_N_ELEMENTS(rejects); i++) {
        char *path = g_strdup_printf("/event-scan/rejects/%s", rejects[i].name);
        g_test_add_data_func(path, &rejects[i], run_case);
        g_free(path);
    }
    g_test_add_func("/event-scan/refuses-ten-thousand-levels-of-nesting", test_very_deep_nesting_is_refused);
    g_test_add_func("/event-scan/callback-can-stop-the-scan", test_callback_can_stop_the_scan);
    g_test_add_func("/event-scan/refuses-a-buffer-without-padding", test_missing_padding_is_refused);
    g_test_add_func("/event-scan/parser-is-reusable-across-documents", test_parser_is_reusable);
    g_test_add_func("/event-scan/members-ride-on-the-walk-and-duplicates-are-the-event's",
                    test_members_ride_on_the_walk);
    g_test_add_func("/event-scan/large-ndjson-offsets-line-up", test_large_ndjson_offsets);
    return g_test_run();
}
