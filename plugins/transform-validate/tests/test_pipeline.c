/*
 * transform-validate in the real binary: source-generate writes a seeded
 * stream with a share of corrupted events, fanned out to a raw sink-file
 * (the oracle: exactly what was generated) and to the validator, whose
 * records go to the sink-test fixture (format: records, Arrow columns back as NDJSON) and
 * whose rejects go to a dead-letter sink-file. Then every generated event is
 * accounted for: valid ones as records with exactly the generated values,
 * corrupted ones in the dead-letter file with their bytes and a reason.
 * The oracle classifies events with json-glib and GDateTime, code that
 * shares nothing with the plugin.
 */
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *bin;
static char *tmpdir;
static char *schema_path;

typedef struct {
    int status;
    char *out;
    char *err;
} result;

static void result_clear(result *r)
{
    g_free(r->out);
    g_free(r->err);
}

static result run(const char *verb, const char *file)
{
    const char *argv[] = {bin, verb, file, NULL};
    result r = {0};
    int ws;
    g_autoptr(GError) err = NULL;
    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &r.out, &r.err, &ws, &err));
    r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    return r;
}

static char *path_in_tmp(const char *name) { return g_build_filename(tmpdir, name, NULL); }

static char *write_file(const char *name, const char *text)
{
    char *path = path_in_tmp(name);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    return path;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        g_error("expected to find '%s' in:\n%s", needle, hay);
}

/* Lines of a file, without their newlines. */
static GPtrArray *read_lines(const char *path)
{
    g_autofree char *text = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(path, &text, &len, NULL));
    GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
    gsize start = 0;
    for (gsize i = 0; i < len; i++)
        if (text[i] == '\n') {
            g_ptr_array_add(lines, g_strndup(text + start, i - start));
            start = i + 1;
        }
    g_assert_cmpuint(start, ==, len); /* every line ends */
    return lines;
}

/* ------------------------------------------------------------ the oracle */

typedef enum { EXPECT_VALID, EXPECT_SYNTAX, EXPECT_ENUM, EXPECT_FORMAT, EXPECT_REQUIRED } expectation;
static const char *const expect_class[] = {"valid", "syntax", "enum", "format", "required"};

static gint64 iso_us(const char *s)
{
    g_autoptr(GDateTime) t = g_date_time_new_from_iso8601(s, NULL);
    if (!t)
        return G_MININT64;
    return g_date_time_to_unix(t) * G_USEC_PER_SEC + g_date_time_get_microsecond(t);
}

static expectation classify(const char *line, JsonParser *p)
{
    if (!json_parser_load_from_data(p, line, -1, NULL))
        return EXPECT_SYNTAX;
    JsonObject *o = json_node_get_object(json_parser_get_root(p));
    static const char *const types[] = {"page_view", "add_to_cart", "remove_from_cart", "purchase", "search"};
    const char *type = json_object_get_string_member(o, "event_type");
    gboolean known = FALSE;
    for (guint i = 0; i < G_N_ELEMENTS(types); i++)
        known = known || g_strcmp0(type, types[i]) == 0;
    if (!known)
        return EXPECT_ENUM;
    if (iso_us(json_object_get_string_member(o, "timestamp")) == G_MININT64)
        return EXPECT_FORMAT;
    static const char *const required[] = {"event_id", "event_type", "user_id", "session_id", "timestamp"};
    for (guint i = 0; i < G_N_ELEMENTS(required); i++)
        if (!json_object_has_member(o, required[i]))
            return EXPECT_REQUIRED;
    return EXPECT_VALID;
}

/* The number token after "key": in the raw line, as written. */
static char *raw_number(const char *line, const char *key)
{
    g_autofree char *pat = g_strdup_printf("\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    gsize n = strspn(p, "-0123456789.eE+");
    return g_strndup(p, n);
}

static const char *member_or_null(JsonObject *o, const char *key)
{
    if (!json_object_has_member(o, key) || json_object_get_null_member(o, key))
        return NULL;
    return json_object_get_string_member(o, key);
}

/* ------------------------------------------------------------ tests */

static char *pipeline_yaml(const char *name, const char *body)
{
    return g_strdup_printf("pipeline: {name: %s, batch_size: 256}\nstages:\n%s", name, body);
}

static void test_generated_stream_lands_exactly(void)
{
    g_autofree char *raw = path_in_tmp("raw.ndjson");
    g_autofree char *rows = path_in_tmp("rows.ndjson");
    g_autofree char *dlq = path_in_tmp("dlq.ndjson");
    g_autofree char *dlq_msgs = path_in_tmp("dlq-messages.ndjson");
    g_autofree char *body = g_strdup_printf(
        "  gen:   {plugin: source-generate, count: 20000, seed: 11, invalid_ratio: 0.1,"
        " start_time: \"2024-03-01T00:00:00Z\"}\n"
        "  raw:   {plugin: sink-file, inputs: [gen], path: %s, append: false}\n"
        "  check: {plugin: transform-validate, inputs: [gen], schema: %s, on_invalid: dead-letter,"
        " key_field: session_id}\n"
        "  rows:  {plugin: sink-test, inputs: [check], format: records, append: false, path: %s}\n"
        "  dlq:   {plugin: sink-file, inputs: [check.invalid], path: %s, append: false}\n"
        "  dlq2:  {plugin: sink-test, inputs: [check.invalid], format: records, append: false, path: %s}\n",
        raw, schema_path, rows, dlq, dlq_msgs);
    g_autofree char *yaml = pipeline_yaml("exact", body);
    g_autofree char *file = write_file("exact.yaml", yaml);
    result r = run("run", file);
    if (r.status != 0)
        g_error("ecflow run failed (%d):\n%s", r.status, r.err);
    assert_contains(r.err, "generated 20000 events: 20000 durable, 0 failed, 0 taken by no sink");
    g_assert_null(strstr(r.err, "invalid name")); /* every metric name was accepted */
    g_assert_null(strstr(r.err, "unsound records"));

    g_autoptr(GPtrArray) raw_lines = read_lines(raw);
    g_autoptr(GPtrArray) row_lines = read_lines(rows);
    g_autoptr(GPtrArray) dlq_lines = read_lines(dlq);
    g_assert_cmpuint(raw_lines->len, ==, 20000);
    g_assert_cmpuint(row_lines->len + dlq_lines->len, ==, 20000);
    g_autofree char *summary =
        g_strdup_printf("validated 20000 events: %u valid, %u invalid", row_lines->len, dlq_lines->len);
    assert_contains(r.err, summary);

    /* records by event_id, envelopes by source offset */
    g_autoptr(GHashTable) by_id =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)json_node_unref);
    for (guint i = 0; i < row_lines->len; i++) {
        g_autoptr(JsonParser) p = json_parser_new();
        g_assert_true(json_parser_load_from_data(p, row_lines->pdata[i], -1, NULL));
        JsonNode *root = json_parser_get_root(p);
        const char *id = json_object_get_string_member(json_node_get_object(root), "event_id");
        g_assert_false(g_hash_table_contains(by_id, id));
        g_hash_table_insert(by_id, g_strdup(id), json_node_copy(root));
    }
    g_autoptr(GHashTable) by_offset =
        g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, (GDestroyNotify)json_node_unref);
    for (guint i = 0; i < dlq_lines->len; i++) {
        g_autoptr(JsonParser) p = json_parser_new();
        g_assert_true(json_parser_load_from_data(p, dlq_lines->pdata[i], -1, NULL));
        JsonNode *root = json_parser_get_root(p);
        JsonObject *src = json_object_get_object_member(json_node_get_object(root), "source");
        g_assert_cmpstr(json_object_get_string_member(src, "kind"), ==, "generated");
        gint64 *off = g_new(gint64, 1);
        *off = json_object_get_int_member(src, "offset");
        g_assert_false(g_hash_table_contains(by_offset, off));
        g_hash_table_insert(by_offset, off, json_node_copy(root));
    }

    guint counts[5] = {0};
    g_autoptr(JsonParser) oracle = json_parser_new();
    for (guint i = 0; i < raw_lines->len; i++) {
        const char *line = raw_lines->pdata[i];
        expectation e = classify(line, oracle);
        counts[e]++;
        if (e != EXPECT_VALID) {
            gint64 off = i;
            JsonNode *env = g_hash_table_lookup(by_offset, &off);
            if (!env)
                g_error("corrupted event %u (%s) is not in the dead-letter file: %s", i, expect_class[e], line);
            JsonObject *o = json_node_get_object(env);
            g_assert_cmpstr(json_object_get_string_member(o, "class"), ==, expect_class[e]);
            g_assert_cmpstr(json_object_get_string_member(o, "stage"), ==, "check");
            g_assert_cmpuint(strlen(json_object_get_string_member(o, "reason")), >, 10);
            if (json_object_has_member(o, "raw")) {
                g_assert_cmpstr(json_object_get_string_member(o, "raw"), ==, line);
            } else { /* cut inside a UTF-8 sequence ("São Paulo"): bytes kept as base64 */
                gsize n = 0;
                g_autofree guchar *bytes = g_base64_decode(json_object_get_string_member(o, "raw_base64"), &n);
                g_assert_cmpmem(bytes, n, line, strlen(line));
            }
            if (e == EXPECT_REQUIRED)
                g_assert_cmpstr(json_object_get_string_member(o, "field"), ==, "user_id");
            if (e == EXPECT_FORMAT)
                g_assert_cmpstr(json_object_get_string_member(o, "field"), ==, "timestamp");
            continue;
        }
        JsonObject *in = json_node_get_object(json_parser_get_root(oracle));
        const char *id = json_object_get_string_member(in, "event_id");
        JsonNode *rn = g_hash_table_lookup(by_id, id);
        if (!rn)
            g_error("valid event %u has no record: %s", i, line);
        JsonObject *row = json_node_get_object(rn);
        static const char *const strings[] = {"event_id", "event_type", "user_id",  "session_id", "location",
                                              "device",   "product_id", "currency", "query",      "page_url"};
        for (guint k = 0; k < G_N_ELEMENTS(strings); k++)
            g_assert_cmpstr(member_or_null(row, strings[k]), ==, member_or_null(in, strings[k]));
        g_autofree char *price = raw_number(line, "price");
        g_assert_cmpstr(member_or_null(row, "price"), ==, price); /* digit for digit */
        if (json_object_has_member(in, "quantity"))
            g_assert_cmpint(json_object_get_int_member(row, "quantity"), ==,
                            json_object_get_int_member(in, "quantity"));
        else
            g_assert_true(json_object_get_null_member(row, "quantity"));
        gint64 ts = iso_us(json_object_get_string_member(in, "timestamp"));
        g_assert_cmpint(iso_us(json_object_get_string_member(row, "timestamp")), ==, ts);
        g_assert_cmpint(json_object_get_int_member(row, "_event_time_us"), ==, ts);
        g_autoptr(GDateTime) day = g_date_time_new_from_unix_utc(ts / G_USEC_PER_SEC);
        g_autofree char *date = g_date_time_format(day, "%Y-%m-%d");
        g_assert_cmpstr(json_object_get_string_member(row, "event_date"), ==, date);
        g_assert_cmpstr(json_object_get_string_member(row, "extras"), ==, "{}");
        g_assert_cmpstr(json_object_get_string_member(row, "_key"), ==,
                        json_object_get_string_member(in, "session_id"));
        g_assert_cmpint(json_object_get_int_member(row, "_payload_len"), ==, (gint64)strlen(line));
        g_assert_cmpuint(json_object_get_size(json_object_get_object_member(row, "_headers")), ==, 0);
        g_assert_cmpint(iso_us(json_object_get_string_member(row, "ingest_time")), >, 0);
    }
    g_assert_cmpuint(counts[EXPECT_VALID], ==, row_lines->len);

    /* dead-letter messages: the reason in headers too, keyed like the event */
    g_autoptr(GPtrArray) msg_lines = read_lines(dlq_msgs);
    g_assert_cmpuint(msg_lines->len, ==, dlq_lines->len);
    for (guint i = 0; i < msg_lines->len; i++) {
        g_autoptr(JsonParser) p = json_parser_new();
        g_assert_true(json_parser_load_from_data(p, msg_lines->pdata[i], -1, NULL));
        JsonObject *o = json_node_get_object(json_parser_get_root(p));
        JsonObject *h = json_object_get_object_member(o, "_headers");
        g_autoptr(JsonParser) ep = json_parser_new();
        g_assert_true(json_parser_load_from_data(ep, json_object_get_string_member(o, "_payload"), -1, NULL));
        JsonObject *env = json_node_get_object(json_parser_get_root(ep));
        g_assert_cmpstr(json_object_get_string_member(h, "ecflow.dlq.reason"), ==,
                        json_object_get_string_member(env, "reason"));
        g_assert_cmpstr(json_object_get_string_member(h, "ecflow.dlq.class"), ==,
                        json_object_get_string_member(env, "class"));
        g_assert_cmpstr(json_object_get_string_member(h, "ecflow.dlq.stage"), ==, "check");
        g_assert_true(g_str_has_prefix(json_object_get_string_member(o, "_key"), "s"));
    }
    g_assert_cmpuint(g_hash_table_size(by_id), ==, counts[EXPECT_VALID]);
    for (int e = 1; e < 5; e++)
        g_assert_cmpuint(counts[e], >, 200); /* every kind of corruption was exercised */
    result_clear(&r);
}

static guint count_invalid(const char *raw)
{
    g_autoptr(GPtrArray) lines = read_lines(raw);
    g_autoptr(JsonParser) p = json_parser_new();
    guint n = 0;
    for (guint i = 0; i < lines->len; i++)
        n += classify(lines->pdata[i], p) != EXPECT_VALID;
    return n;
}

/* Default on_invalid (auto, `invalid` unread): nack. With one token per event, the source learns of
 * every invalid one, with the reason; the log shows a bounded sample. */
static void test_invalid_events_are_nacked_by_default(void)
{
    g_autofree char *raw = path_in_tmp("nack-raw.ndjson");
    g_autofree char *rows = path_in_tmp("nack-rows.ndjson");
    g_autofree char *body =
        g_strdup_printf("  gen:   {plugin: source-generate, count: 3000, seed: 5, invalid_ratio: 0.2, batch_size: 1,"
                        " start_time: \"2024-03-01T00:00:00Z\"}\n"
                        "  raw:   {plugin: sink-file, inputs: [gen], path: %s, append: false}\n"
                        "  check: {plugin: transform-validate, inputs: [gen], schema: %s, keep_payload: false}\n"
                        "  rows:  {plugin: sink-test, inputs: [check], format: records, append: false, path: %s}\n",
                        raw, schema_path, rows);
    g_autofree char *yaml = pipeline_yaml("nack", body);
    g_autofree char *file = write_file("nack.yaml", yaml);
    result r = run("run", file);
    if (r.status != 0)
        g_error("ecflow run failed (%d):\n%s", r.status, r.err);
    guint invalid = count_invalid(raw);
    g_assert_cmpuint(invalid, >, 300);
    g_autofree char *want =
        g_strdup_printf("generated 3000 events: %u durable, %u failed, 0 taken by no sink", 3000 - invalid, invalid);
    assert_contains(r.err, want);
    /* samples: the first 5, then one per 10 s */
    guint samples = 0;
    for (const char *p = r.err; (p = strstr(p, "invalid event (generated #")); p++) {
        samples++;
        g_assert_nonnull(strstr(p, ") nacked: "));
    }
    g_assert_cmpuint(samples, >=, 5);
    g_assert_cmpuint(samples, <=, 7);
    /* records only: no payload copied */
    g_autoptr(GPtrArray) lines = read_lines(rows);
    g_assert_cmpuint(lines->len, ==, 3000 - invalid);
    assert_contains(lines->pdata[0], "\"_payload_len\":0,");
    result_clear(&r);
}

/* dead-letter with nothing reading `invalid`: the core counts them as
 * unconnected, and since no sink took them the source hears "dropped"
 * (never "durable"), while the log shows a sample. */
static void test_dead_letter_unconnected_is_not_durable(void)
{
    g_autofree char *body =
        g_strdup_printf("  gen:   {plugin: source-generate, count: 2000, seed: 9, invalid_ratio: 0.2, batch_size: 1,"
                        " start_time: \"2024-03-01T00:00:00Z\"}\n"
                        "  check: {plugin: transform-validate, inputs: [gen], schema: %s, on_invalid: dead-letter}\n"
                        "  rows:  {plugin: sink-null, inputs: [check]}\n",
                        schema_path);
    g_autofree char *yaml = pipeline_yaml("dl", body);
    g_autofree char *file = write_file("dl.yaml", yaml);
    result r = run("run", file);
    g_assert_cmpint(r.status, ==, 0);
    GMatchInfo *mi = NULL;
    g_autoptr(GRegex) re = g_regex_new("validated 2000 events: (\\d+) valid, (\\d+) invalid", 0, 0, NULL);
    g_assert_true(g_regex_match(re, r.err, 0, &mi));
    g_autofree char *valid = g_match_info_fetch(mi, 1);
    g_autofree char *invalid = g_match_info_fetch(mi, 2);
    g_match_info_free(mi);
    g_assert_cmpint(atoi(invalid), >, 200);
    g_autofree char *want =
        g_strdup_printf("generated 2000 events: %s durable, 0 failed, %s taken by no sink", valid, invalid);
    assert_contains(r.err, want);
    assert_contains(r.err, ") sent to 'invalid': ");
    result_clear(&r);
}

/* `ecflow validate` on pipelines that must fail: the exit status and what
 * the output names. In `stages`, %s stands for `arg`'s path. */
typedef enum { ARG_SCHEMA, ARG_TMPDIR } case_arg;

typedef struct {
    const char *name;
    const char *stages;
    case_arg arg;
    const char *expect; /* in stdout + stderr */
} validate_case;

static const validate_case refused[] = {
    {"neg2",
     "  gen:   {plugin: source-generate, count: 10}\n"
     "  check: {plugin: transform-validate, inputs: [gen], schema: %s}\n"
     "  lake:  {plugin: sink-test, inputs: [check], require: [\"price:g\"]}\n",
     ARG_SCHEMA, "field 'price' is 'd:12,2' upstream"},
    {"bad2",
     "  gen:   {plugin: source-generate, count: 10}\n"
     "  check: {plugin: transform-validate, inputs: [gen], schema: %s, key_field: price}\n"
     "  out:   {plugin: sink-null, inputs: [check]}\n",
     ARG_SCHEMA, "option 'key_field': 'price' is not a string field"},
    {"bad3",
     "  gen:   {plugin: source-generate, count: 10}\n"
     "  check: {plugin: transform-validate, inputs: [gen], schema: %s/nope.yaml}\n"
     "  out:   {plugin: sink-null, inputs: [check]}\n",
     ARG_TMPDIR, "option 'schema': cannot read schema file"},
};

/* Runs `ecflow validate` on the pipeline; returns stdout + stderr. */
static char *validate_fails(const char *name, const char *body)
{
    g_autofree char *yaml = pipeline_yaml(name, body);
    g_autofree char *stem = g_strdup_printf("%s.yaml", name);
    g_autofree char *file = write_file(stem, yaml);
    result r = run("validate", file);
    g_assert_cmpint(r.status, ==, 2);
    char *both = g_strconcat(r.out, r.err, NULL);
    result_clear(&r);
    return both;
}

static void test_schema_is_negotiated_before_running(void)
{
    g_autofree char *body = g_strdup_printf(
        "  gen:   {plugin: source-generate, count: 10}\n"
        "  check: {plugin: transform-validate, inputs: [gen], schema: %s}\n"
        "  lake:  {plugin: sink-test, inputs: [check], require: [\"event_id:u\", \"price:d:12,2\","
        " \"quantity:l\", \"timestamp:tsu:UTC\", \"event_date:tdD\", \"ingest_time:tsu:UTC\", \"extras:u\"]}\n",
        schema_path);
    g_autofree char *yaml = pipeline_yaml("neg", body);
    g_autofree char *file = write_file("neg.yaml", yaml);
    result r = run("validate", file);
    if (r.status != 0)
        g_error("validate failed (%d):\n%s%s", r.status, r.out, r.err);
    result_clear(&r);
}

static void test_schema_mistakes_fail_validate(void)
{
    g_autofree char *bad =
        write_file("bad.yaml", "schema: bad\nfields:\n  a: {type: string}\n  b: {type: float, regex: x}\n");
    /* a relative schema path is taken from the pipeline file's folder */
    g_autofree char *both =
        validate_fails("bad-pipeline", "  gen:   {plugin: source-generate, count: 10}\n"
                                       "  check: {plugin: transform-validate, inputs: [gen], schema: bad.yaml}\n"
                                       "  out:   {plugin: sink-null, inputs: [check]}\n");
    g_autofree char *where = g_strdup_printf("%s:4: field 'b': 'regex' does not apply to a float field", bad);
    assert_contains(both, "check");
    assert_contains(both, where);
}

/* the table above: a record schema the sink refuses, an option the schema
 * contradicts, a schema file that is not there */
static void test_refused_pipelines_name_what_is_wrong(void)
{
    for (guint i = 0; i < G_N_ELEMENTS(refused); i++) {
        const validate_case *c = &refused[i];
        g_autofree char *body = g_strdup_printf(c->stages, c->arg == ARG_SCHEMA ? schema_path : tmpdir);
        g_autofree char *out = validate_fails(c->name, body);
        assert_contains(out, c->expect);
    }
}

/* ------------------------------------------------------------ metrics */

static char *http_get(const char *url, int *code)
{
    const char *argv[] = {"curl", "-s", "-w", "\n%{http_code}", (char *)url, NULL};
    char *out = NULL;
    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL,
                               &out, NULL, NULL, NULL));
    char *nl = strrchr(out, '\n');
    *code = nl ? atoi(nl + 1) : 0;
    if (nl)
        *nl = '\0';
    return out;
}

static void test_metrics_count_by_reason(void)
{
    g_autofree char *body =
        g_strdup_printf("  gen:   {plugin: source-generate, count: 0, rate: 2000, invalid_ratio: 0.3}\n"
                        "  check: {plugin: transform-validate, inputs: [gen], schema: %s, on_invalid: dead-letter}\n"
                        "  out:   {plugin: sink-null, inputs: [check]}\n"
                        "  dlq:   {plugin: sink-null, inputs: [check.invalid]}\n",
                        schema_path);
    g_autofree char *yaml = g_strdup_printf("pipeline: {name: m, metrics: '127.0.0.1:0'}\nstages:\n%s", body);
    g_autofree char *file = write_file("metrics.yaml", yaml);
    const char *argv[] = {bin, "run", file, NULL};
    GPid pid;
    int fd;
    g_autoptr(GError) err = NULL;
    g_assert_true(g_spawn_async_with_pipes(NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid, NULL,
                                           NULL, &fd, &err));
    g_autoptr(GString) log = g_string_new(NULL);
    char buf[4096];
    ssize_t n;
    while (!strstr(log->str, "metrics on") || !strstr(log->str, "sent to 'invalid'")) {
        if ((n = read(fd, buf, sizeof buf)) <= 0)
            break;
        g_string_append_len(log, buf, n);
    }
    GMatchInfo *mi = NULL;
    g_autoptr(GRegex) re = g_regex_new("metrics on (http://127.0.0.1:\\d+)/metrics", 0, 0, NULL);
    g_assert_true(g_regex_match(re, log->str, 0, &mi));
    g_autofree char *url = g_match_info_fetch(mi, 1);
    g_match_info_free(mi);
    g_autofree char *murl = g_strconcat(url, "/metrics", NULL);
    int code = 0;
    g_autofree char *text = NULL;
    for (int tries = 0; tries < 100; tries++) { /* until all four classes were seen */
        g_free(text);
        text = http_get(murl, &code);
        if (strstr(text, "reason=\"syntax\"} ") && strstr(text, "reason=\"enum\"} ") &&
            strstr(text, "reason=\"format\"} ") && strstr(text, "reason=\"required\"} ") &&
            !strstr(text, "ecflow_validate_valid_total{pipeline=\"m\",stage=\"check\"} 0\n"))
            break;
        g_usleep(50000);
    }
    g_assert_cmpint(code, ==, 200);
    assert_contains(text, "# TYPE ecflow_validate_invalid_total counter");
    assert_contains(text, "ecflow_validate_invalid_total{pipeline=\"m\",stage=\"check\",reason=\"syntax\"}");
    assert_contains(text, "ecflow_validate_invalid_total{pipeline=\"m\",stage=\"check\",reason=\"type\"} 0");
    assert_contains(text, "ecflow_validate_valid_total{pipeline=\"m\",stage=\"check\"}");
    g_assert_null(strstr(text, "reason=\"syntax\"} 0\n"));
    g_assert_null(strstr(text, "reason=\"enum\"} 0\n"));
    kill(pid, SIGTERM);
    while ((n = read(fd, buf, sizeof buf)) > 0)
        g_string_append_len(log, buf, n);
    int status;
    waitpid(pid, &status, 0);
    g_spawn_close_pid(pid);
    close(fd);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    bin = g_getenv("ECFLOW_BIN");
    const char *src = g_getenv("ECF_SOURCE_DIR");
    if (!bin || !src)
        g_error("ECFLOW_BIN and ECF_SOURCE_DIR must be set (ctest does)");
    schema_path = g_build_filename(src, "pipelines", "schemas", "ecommerce_event.yaml", NULL);
    tmpdir = g_dir_make_tmp("tv-pipeline-XXXXXX", NULL);
    g_test_add_func("/validate-pipeline/generated-stream-lands-exactly", test_generated_stream_lands_exactly);
    g_test_add_func("/validate-pipeline/invalid-events-are-nacked-by-default",
                    test_invalid_events_are_nacked_by_default);
    g_test_add_func("/validate-pipeline/dead-letter-with-invalid-unconnected-logs-samples",
                    test_dead_letter_unconnected_is_not_durable);
    g_test_add_func("/validate-pipeline/record-schema-is-negotiated-before-running",
                    test_schema_is_negotiated_before_running);
    g_test_add_func("/validate-pipeline/schema-mistakes-fail-validate-with-file-and-line",
                    test_schema_mistakes_fail_validate);
    g_test_add_func("/validate-pipeline/refused-pipelines-name-what-is-wrong",
                    test_refused_pipelines_name_what_is_wrong);
    g_test_add_func("/validate-pipeline/metrics-count-invalid-events-by-reason", test_metrics_count_by_reason);
    int rc = g_test_run();
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
    if (rc == 0 && system(cmd) != 0)
        g_printerr("could not remove %s\n", tmpdir);
    g_free(schema_path);
    g_free(tmpdir);
    return rc;
}
