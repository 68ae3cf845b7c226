/*
 * Schema files: the shipped one loads into the columns the records carry;
 * every mistake in a file is refused with FILE:LINE and what is wrong.
 */
#include "schema.h"

#include <glib.h>
#include <string.h>

static const char *child_format(const struct ArrowSchema *s, const char *name, int64_t *flags)
{
    for (int64_t i = 0; i < s->n_children; i++)
        if (strcmp(s->children[i]->name, name) == 0) {
            *flags = s->children[i]->flags;
            return s->children[i]->format;
        }
    return NULL;
}

/* Arrow metadata: int32 count, then (int32 len, bytes) pairs. */
static char *metadata_value(const char *md, const char *key)
{
    if (!md)
        return NULL;
    int32_t n, len;
    memcpy(&n, md, 4);
    const char *p = md + 4;
    for (int32_t i = 0; i < n; i++) {
        memcpy(&len, p, 4);
        const char *k = p + 4;
        int32_t klen = len;
        p += 4 + len;
        memcpy(&len, p, 4);
        if (klen == (int32_t)strlen(key) && memcmp(k, key, (size_t)klen) == 0)
            return g_strndup(p + 4, (gsize)len);
        p += 4 + len;
    }
    return NULL;
}

static void test_shipped_schema(void)
{
    g_autofree char *path =
        g_build_filename(g_getenv("ECF_SOURCE_DIR"), "pipelines", "schemas", "ecommerce_event.yaml", NULL);
    GError *error = NULL;
    tv_schema *s = tv_schema_load(path, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(s->name, ==, "ecommerce_event");
    g_assert_cmpint(s->version, ==, 1);
    const char *order[] = {"event_id",   "event_type", "user_id",  "session_id", "location", "device",  "timestamp",
                           "product_id", "price",      "quantity", "currency",   "query",    "page_url"};
    g_assert_cmpuint(s->n_fields, ==, G_N_ELEMENTS(order));
    for (guint i = 0; i < G_N_ELEMENTS(order); i++) {
        g_assert_cmpstr(s->fields[i].name, ==, order[i]);
        g_assert_cmpint(tv_schema_lookup(s, order[i], strlen(order[i])), ==, (int)i);
    }
    g_assert_cmpint(tv_schema_lookup(s, "price_", 6), ==, -1);
    g_assert_cmpint(tv_schema_lookup(s, "", 0), ==, -1);
    g_assert_cmpstr(s->fields[s->event_time].name, ==, "timestamp");
    g_assert_cmpuint(s->fields[1].n_enum, ==, 5);

    struct ArrowSchema as;
    tv_schema_export_arrow(s, &as);
    g_assert_cmpstr(as.format, ==, "+s");
    g_assert_cmpint(as.n_children, ==, G_N_ELEMENTS(order) + 3);
    static const struct {
        const char *name, *format;
        gboolean nullable;
    } want[] = {
        {"event_id", "u", FALSE},        {"event_type", "u", FALSE},   {"user_id", "u", FALSE},
        {"session_id", "u", FALSE},      {"location", "u", TRUE},      {"device", "u", TRUE},
        {"timestamp", "tsu:UTC", FALSE}, {"product_id", "u", TRUE},    {"price", "d:12,2", TRUE},
        {"quantity", "l", TRUE},         {"currency", "u", TRUE},      {"query", "u", TRUE},
        {"page_url", "u", TRUE},         {"event_date", "tdD", FALSE}, {"ingest_time", "tsu:UTC", FALSE},
        {"extras", "u", FALSE},
    };
    for (guint i = 0; i < G_N_ELEMENTS(want); i++) {
        int64_t flags = 0;
        const char *fmt = child_format(&as, want[i].name, &flags);
        g_assert_cmpstr(fmt, ==, want[i].format);
        g_assert_cmpint(!!(flags & ARROW_FLAG_NULLABLE), ==, want[i].nullable);
        g_assert_cmpstr(as.children[i]->name, ==, want[i].name); /* file order, derived last */
    }
    g_autofree char *doc = metadata_value(as.children[8]->metadata, "ecflow:doc");
    g_assert_nonnull(strstr(doc, "never rounded"));
    g_autofree char *name = metadata_value(as.metadata, "ecflow:schema");
    g_assert_cmpstr(name, ==, "ecommerce_event");
    as.release(&as);
    g_assert_null(as.release);
    tv_schema_free(s);
}

typedef struct {
    const char *name;
    const char *yaml;
    const char *error; /* expected substring, "ok" = loads */
} schema_case;

#define HEAD "schema: t\nfields:\n"

static const schema_case cases[] = {
    {"minimal", HEAD "  a: {type: string}\n", "ok"},
    {"every-type",
     HEAD "  a: {type: string}\n  b: {type: int}\n  c: {type: float}\n  d: {type: bool}\n"
          "  e: {type: \"decimal(38, 0)\"}\n  f: {type: timestamp}\n  g:\n    type: decimal(1,1)\n",
     "ok"},
    {"block-style-and-comments", "# c\nschema: t # name\nversion: 2\nfields:\n  a:\n    type: int\n    min: 1\n", "ok"},
    {"empty-file", "", "t.yaml: the file is empty"},
    {"not-yaml", "schema: t\nfields: [a\n", "t.yaml:3:"},
    {"top-level-list", "- a\n- b\n", "t.yaml:1: expected a map with 'schema' and 'fields'"},
    {"unknown-top-key", "schema: t\nfeilds:\n  a: {type: string}\n", "t.yaml:2: schema file: unknown key 'feilds'"},
    {"missing-name", "fields:\n  a: {type: string}\n", "t.yaml:1: 'schema' (the schema's name) is missing"},
    {"missing-fields", "schema: t\n", "'fields' is missing"},
    {"fields-not-a-map", "schema: t\nfields: [a, b]\n", "t.yaml:2: 'fields' must be a map"},
    {"fields-empty", "schema: t\nfields: {}\n", "t.yaml:2: 'fields' must be a map"},
    {"field-is-a-scalar", HEAD "  a: string\n", "t.yaml:3: field 'a': expected a map of rules"},
    {"unknown-rule", HEAD "  a: {type: int}\n  b:\n    type: int\n    maximum: 3\n",
     "t.yaml:6: field 'b': unknown key 'maximum' (known keys: type, required"},
    {"rule-given-twice", HEAD "  a:\n    type: int\n    min: 1\n    min: 2\n",
     "t.yaml:6: field 'a': key 'min' is given twice"},
    {"field-declared-twice", HEAD "  a: {type: int}\n  b: {type: int}\n  a: {type: string}\n",
     "t.yaml:5: field 'a' is declared twice (first on line 3)"},
    {"type-missing", HEAD "  a: {required: true}\n", "t.yaml:3: field 'a': 'type' is missing"},
    {"type-unknown", HEAD "  a: {type: integer}\n",
     "t.yaml:3: field 'a': unknown type \"integer\" (types: string, int"},
    {"decimal-precision-too-big", HEAD "  a: {type: \"decimal(39,2)\"}\n",
     "t.yaml:3: field 'a': decimal(39,2): precision must be"},
    {"decimal-scale-above-precision", HEAD "  a: {type: \"decimal(5,6)\"}\n", "precision must be 1..38"},
    {"decimal-junk", HEAD "  a: {type: \"decimal(5,2)x\"}\n", "unknown type"},
    {"decimal-unquoted-in-flow-map", HEAD "  a: {type: decimal(5,2)}\n", "quote the type in a {...} map"},
    {"required-not-bool", HEAD "  a: {type: int, required: maybe}\n",
     "t.yaml:3: field 'a': required: expected true or false"},
    {"regex-on-int", HEAD "  a:\n    type: int\n    regex: x\n",
     "t.yaml:5: field 'a': 'regex' does not apply to a int field"},
    {"enum-on-decimal", HEAD "  a:\n    type: decimal(4,2)\n    enum: [1]\n",
     "'enum' does not apply to a decimal(4,2) field"},
    {"min-on-string", HEAD "  a: {type: string, min: 1}\n", "'min' does not apply to a string field"},
    {"max-future-on-int", HEAD "  a: {type: int, max_future: 1h}\n", "'max_future' does not apply"},
    {"max-length-on-bool", HEAD "  a: {type: bool, max_length: 3}\n", "'max_length' does not apply"},
    {"bad-regex", HEAD "  a:\n    type: string\n    regex: \"[A-\"\n", "t.yaml:5: field 'a': regex:"},
    {"enum-not-a-list", HEAD "  a: {type: string, enum: a}\n", "t.yaml:3: field 'a': enum: expected a list"},
    {"enum-empty", HEAD "  a: {type: string, enum: []}\n", "enum: the list is empty"},
    {"enum-repeats", HEAD "  a:\n    type: string\n    enum: [x, y, x]\n",
     "t.yaml:5: field 'a': enum: \"x\" is listed twice"},
    {"enum-nested-list", HEAD "  a: {type: string, enum: [[x]]}\n", "enum: values must be strings"},
    {"min-length-negative", HEAD "  a: {type: string, min_length: -1}\n", "min_length: expected a whole number >= 0"},
    {"min-length-above-max", HEAD "  a: {type: string, min_length: 5, max_length: 4}\n",
     "min_length 5 is more than max_length 4"},
    {"int-min-not-int", HEAD "  a: {type: int, min: 1.5}\n", "field 'a': min: expected an int64, got \"1.5\""},
    {"int-min-above-max", HEAD "  a: {type: int, min: 5, max: 4}\n", "t.yaml:3: field 'a': min 5 is more than max 4"},
    {"float-min-junk", HEAD "  a: {type: float, min: low}\n", "min: expected a number"},
    {"decimal-min-too-precise", HEAD "  a: {type: \"decimal(12,2)\", min: \"0.001\"}\n",
     "min: \"0.001\" is not a decimal(12,2) value"},
    {"decimal-max-too-big", HEAD "  a: {type: 'decimal(4,2)', max: \"100\"}\n",
     "max: \"100\" is not a decimal(4,2) value"},
    {"timestamp-min-without-zone", HEAD "  a: {type: timestamp, min: \"2024-01-01T00:00:00\"}\n",
     "min: \"2024-01-01T00:00:00\" has no zone"},
    {"max-future-junk", HEAD "  a: {type: timestamp, max_future: soon}\n",
     "max_future: expected a duration like \"1h\""},
    {"max-future-none", HEAD "  a: {type: timestamp, max_future: none}\n", "ok"},
    {"derived-name-taken", HEAD "  extras: {type: string}\n",
     "t.yaml:3: field 'extras': the name is taken by a derived column"},
    {"event-date-name-taken", HEAD "  event_date: {type: string}\n", "the name is taken"},
    {"event-time-unknown", "schema: t\nevent_time: ts\nfields:\n  a: {type: string}\n",
     "t.yaml:2: event_time: no field is named 'ts'"},
    {"event-time-not-timestamp", "schema: t\nevent_time: a\nfields:\n  a: {type: string}\n",
     "event_time: field 'a' is not a timestamp"},
    {"version-not-int", "schema: t\nversion: one\nfields:\n  a: {type: string}\n",
     "t.yaml:2: version: expected a whole number"},
    {"name-is-a-map", "schema: {a: 1}\nfields:\n  a: {type: string}\n",
     "t.yaml:1: schema: expected a single value, got a map"},
    {"two-documents", HEAD "  a: {type: string}\n---\nschema: u\n", "only one YAML document is allowed"},
    {"empty-field-name", HEAD "  \"\": {type: string}\n", "a field needs a name"},
};

static void test_errors(void)
{
    guint failures = 0;
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        GError *error = NULL;
        tv_schema *s = tv_schema_parse(cases[i].yaml, strlen(cases[i].yaml), "t.yaml", &error);
        gboolean want_ok = strcmp(cases[i].error, "ok") == 0;
        gboolean ok = want_ok ? s != NULL : (s == NULL && error && strstr(error->message, cases[i].error));
        if (!ok) {
            failures++;
            g_printerr("case '%s': expected %s, got %s\n", cases[i].name, cases[i].error,
                       error ? error->message : "a schema");
        }
        g_clear_error(&error);
        tv_schema_free(s);
    }
    g_assert_cmpuint(failures, ==, 0);
}

static void test_missing_file(void)
{
    GError *error = NULL;
    g_assert_null(tv_schema_load("/nonexistent/schema.yaml", &error));
    g_assert_nonnull(strstr(error->message, "cannot read schema file"));
    g_assert_nonnull(strstr(error->message, "/nonexistent/schema.yaml"));
    g_error_free(error);
}

static void test_parsers(void)
{
    int64_t us;
    const char *why;
    g_assert_true(tv_parse_timestamp("1970-01-01T00:00:00Z", 20, &us, &why));
    g_assert_cmpint(us, ==, 0);
    g_assert_true(tv_parse_timestamp("9999-12-31T23:59:59.999999+00:00", 32, &us, &why));
    g_assert_cmpint(us, ==, INT64_C(253402300799999999));
    g_assert_true(tv_parse_timestamp("0001-01-01T00:00:00Z", 20, &us, &why));
    g_assert_cmpint(us, ==, INT64_C(-62135596800) * 1000000);
    g_assert_true(tv_parse_duration("1h", &us));
    g_assert_cmpint(us, ==, INT64_C(3600000000));
    g_assert_true(tv_parse_duration("1.5s", &us));
    g_assert_cmpint(us, ==, 1500000);
    g_assert_true(tv_parse_duration("90", &us));
    g_assert_cmpint(us, ==, 90000000);
    g_assert_false(tv_parse_duration("-1s", &us));
    g_assert_false(tv_parse_duration("1y", &us));
    int64_t i;
    g_assert_cmpint(tv_parse_int("-9223372036854775808", 20, &i), ==, 0);
    g_assert_cmpint(i, ==, INT64_MIN);
    g_assert_cmpint(tv_parse_int("9223372036854775808", 19, &i), ==, 2);
    g_assert_cmpint(tv_parse_int("99999999999999999999e1", 22, &i), ==, 1);
    g_assert_cmpint(tv_parse_int("00", 2, &i), ==, 1);
    __int128 d;
    g_assert_cmpint(tv_parse_decimal("99999999999999999999999999999999999999", 38, 38, 0, &d), ==, TV_DEC_OK);
    __int128 nines = 0;
    for (int k = 0; k < 38; k++)
        nines = nines * 10 + 9;
    g_assert_true(d == nines);
    g_assert_cmpint(tv_parse_decimal("999999999999999999999999999999999999999", 39, 38, 0, &d), ==, TV_DEC_PRECISION);
    g_assert_cmpint(tv_parse_decimal("1.", 2, 5, 2, &d), ==, TV_DEC_SYNTAX);
    g_assert_cmpint(tv_parse_decimal("-0.5e1", 6, 5, 0, &d), ==, TV_DEC_OK);
    g_assert_true(d == -5);
    g_assert_cmpint(tv_parse_decimal("123.4500e-2", 11, 5, 4, &d), ==, TV_DEC_OK);
    g_assert_true(d == 12345);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/schema/shipped-file-loads-with-its-columns", test_shipped_schema);
    g_test_add_func("/schema/every-mistake-names-file-and-line", test_errors);
    g_test_add_func("/schema/missing-file-is-reported", test_missing_file);
    g_test_add_func("/schema/timestamp-duration-int-decimal-parsers", test_parsers);
    return g_test_run();
}
