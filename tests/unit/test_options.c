#include "options.h"

#include <string.h>

typedef struct {
    char *name;
    int64_t workers;
    double ratio;
    bool verbose;
    int64_t interval;
    int64_t size;
    char *codec;
    char **topics;
    ecf_kv *kafka;
    char *password;
    char *schema;
} cfg;

static const ecf_option table[] = {
    ECF_OPT_STRING("name", cfg, name, NULL, ECF_REQUIRED, "a name"),
    ECF_OPT_INT("workers", cfg, workers, "4", 1, 64, "threads"),
    ECF_OPT_DOUBLE("ratio", cfg, ratio, "0.5", 0, 1, "a share"),
    ECF_OPT_BOOL("verbose", cfg, verbose, "false", "talk more"),
    ECF_OPT_DURATION("interval", cfg, interval, "10s", 0.001, 3600, "how often"),
    ECF_OPT_SIZE("size", cfg, size, "128MiB", 1024, 1e12, "how big"),
    ECF_OPT_ENUM("codec", cfg, codec, "zstd", "zstd|snappy|none", "compression"),
    ECF_OPT_LIST("topics", cfg, topics, 0, "topics"),
    ECF_OPT_MAP("kafka", cfg, kafka, "passed to librdkafka"),
    {"password", ECF_OPT_T_STRING, offsetof(cfg, password), NULL, ECF_SECRET, 1, 0, NULL, "secret"},
    ECF_OPT_FILE("schema", cfg, schema, "schemas/default.yaml", 0, "a file next to the pipeline"),
    ECF_OPT_END,
};

static cfg *fill(const char *yaml, GPtrArray *errors)
{
    g_autoptr(ecf_node) root = ecf_node_load_string("t.yaml", yaml, errors);
    g_assert_nonnull(root);
    ecf_opt_ctx ctx = {"/etc/ecflow/t.yaml", "s", 1, errors};
    return ecf_options_fill(table, sizeof(cfg), root, NULL, &ctx);
}

static void test_defaults_and_types(void)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    cfg *c = fill("name: x\ntopics: [a, b]\nkafka: {linger.ms: 5, security: {protocol: SSL}}\n"
                  "kafka.acks: all\n",
                  errors);
    g_assert_cmpuint(errors->len, ==, 0);
    g_assert_nonnull(c);
    g_assert_cmpstr(c->name, ==, "x");
    g_assert_cmpint(c->workers, ==, 4);
    g_assert_cmpfloat(c->ratio, ==, 0.5);
    g_assert_false(c->verbose);
    g_assert_cmpint(c->interval, ==, 10 * G_USEC_PER_SEC);
    g_assert_cmpint(c->size, ==, 128 * 1024 * 1024);
    g_assert_cmpstr(c->codec, ==, "zstd");
    g_assert_cmpstr(c->topics[0], ==, "a");
    g_assert_cmpstr(c->topics[1], ==, "b");
    g_assert_null(c->topics[2]);
    g_assert_cmpstr(c->kafka[0].key, ==, "linger.ms");
    g_assert_cmpstr(c->kafka[0].value, ==, "5");
    g_assert_cmpstr(c->kafka[1].key, ==, "security.protocol");
    g_assert_cmpstr(c->kafka[1].value, ==, "SSL");
    g_assert_cmpstr(c->kafka[2].key, ==, "acks");
    g_assert_null(c->kafka[3].key);
    g_assert_cmpstr(c->schema, ==, "/etc/ecflow/schemas/default.yaml");
    ecf_options_free(table, c);
    c = fill("name: x\nschema: ../s.yaml\n", errors);
    g_assert_cmpstr(c->schema, ==, "/etc/s.yaml");
    ecf_options_free(table, c);
    /* a pipeline file named relative to the working directory */
    g_autoptr(GPtrArray) e2 = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(ecf_node) root = ecf_node_load_string("p/t.yaml", "name: x\nschema: s.yaml\n", e2);
    ecf_opt_ctx rel = {"p/t.yaml", "s", 1, e2};
    c = ecf_options_fill(table, sizeof(cfg), root, NULL, &rel);
    g_autofree char *cwd = g_get_current_dir();
    g_autofree char *want = g_build_filename(cwd, "p", "s.yaml", NULL);
    g_assert_cmpstr(c->schema, ==, want);
    ecf_options_free(table, c);
    c = fill("name: x\nschema: /abs/s.yaml\n", errors);
    g_assert_cmpstr(c->schema, ==, "/abs/s.yaml");
    ecf_options_free(table, c);
}

static void test_units(void)
{
    gint64 v;
    g_assert_true(ecf_parse_duration("250ms", &v) && v == 250000);
    g_assert_true(ecf_parse_duration("1.5s", &v) && v == 1500000);
    g_assert_true(ecf_parse_duration("5m", &v) && v == 300000000);
    g_assert_true(ecf_parse_duration("2", &v) && v == 2000000);
    g_assert_false(ecf_parse_duration("often", &v));
    g_assert_false(ecf_parse_duration("-1s", &v));
    g_assert_true(ecf_parse_size("64KiB", &v) && v == 65536);
    g_assert_true(ecf_parse_size("1GB", &v) && v == 1000000000);
    g_assert_true(ecf_parse_size("512", &v) && v == 512);
    g_assert_false(ecf_parse_size("1.5", &v));
    g_assert_false(ecf_parse_size("12 parsecs", &v));
}

typedef struct {
    const char *yaml;
    const char *error; /* a substring every run must print */
} bad_case;

static const bad_case bad_cases[] = {
    {"workers: 2\n", "t.yaml:1: stage 's': option 'name': required option is missing"},
    {"name: x\nworkerz: 2\n", "t.yaml:2: stage 's': unknown option 'workerz' (did you mean 'workers'?)"},
    {"name: x\nzzzzzzzzzzzz: 1\n", "unknown option 'zzzzzzzzzzzz' (known: name, workers"},
    {"name: x\nworkers: many\n", "option 'workers': expected an integer, got \"many\""},
    {"name: x\nworkers: 65\n", "option 'workers': 65 is out of range: int [1..64]"},
    {"name: x\nworkers: 0\n", "out of range"},
    {"name: x\nworkers: 99999999999999999999\n", "expected an integer"},
    {"name: x\nratio: 1.5\n", "option 'ratio': 1.5 is out of range"},
    {"name: x\nratio: NaN\n", "expected a number"},
    {"name: x\nverbose: maybe\n", "option 'verbose': expected true or false, got \"maybe\""},
    {"name: x\ninterval: often\n",
     "option 'interval': expected a duration like \"250ms\", \"10s\" or \"5m\", got \"often\""},
    {"name: x\ninterval: 2h\n", "out of range: duration"},
    {"name: x\nsize: 12 parsecs\n", "option 'size': expected a size"},
    {"name: x\ncodec: lzma\n", "option 'codec': expected one of zstd|snappy|none, got \"lzma\""},
    {"name: x\ntopics: {a: b}\n", "option 'topics': expected a list, got a map"},
    {"name: x\ntopics: [[a]]\n", "list items must be strings, got a list"},
    {"name: [x]\n", "option 'name': expected a scalar, got a list"},
    {"name: x\nkafka: 5\n", "option 'kafka': expected a map"},
    {"name: x\nkafka: {acks: [1]}\n", "value of 'acks' must be a string"},
    {"name: x\npassword: [hunter2]\n", "option 'password': expected a scalar"},
    {"name: x\nworkers: {}\n", "expected a scalar, got a map"},
};

static void test_bad_inputs(void)
{
    for (guint i = 0; i < G_N_ELEMENTS(bad_cases); i++) {
        g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
        cfg *c = fill(bad_cases[i].yaml, errors);
        g_assert_null(c);
        g_assert_cmpuint(errors->len, >=, 1);
        gboolean found = FALSE;
        for (guint e = 0; e < errors->len; e++)
            found |= strstr(errors->pdata[e], bad_cases[i].error) != NULL;
        if (!found)
            g_error("case %u: expected '%s', got '%s'", i, bad_cases[i].error, (char *)errors->pdata[0]);
    }
}

static void test_every_error_is_reported(void)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    g_assert_null(fill("workers: x\nratio: 2\ncodec: nope\n", errors));
    g_assert_cmpuint(errors->len, ==, 4); /* three bad values and a missing name */
}

static void test_secrets_are_never_echoed(void)
{
    static const ecf_option secret_int[] = {
        {"pin", ECF_OPT_T_INT, 0, NULL, ECF_SECRET, 1, 0, NULL, "a secret number"},
        ECF_OPT_END,
    };
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(ecf_node) root = ecf_node_load_string("t.yaml", "pin: hunter2\n", errors);
    ecf_opt_ctx ctx = {"t.yaml", "s", 1, errors};
    g_assert_null(ecf_options_fill(secret_int, sizeof(int64_t), root, NULL, &ctx));
    g_assert_cmpuint(errors->len, ==, 1);
    g_assert_null(strstr(errors->pdata[0], "hunter2"));
    g_assert_nonnull(strstr(errors->pdata[0], "<hidden>"));
}

/* A map's values are never put in a message, whatever went wrong: the
 * messages name the key (ECF_OPT_SECRET_MAP's promise). */
static void test_secret_map_values_are_never_echoed(void)
{
    typedef struct {
        ecf_kv *kafka;
    } kcfg;
    static const ecf_option secret_map[] = {
        ECF_OPT_SECRET_MAP("kafka", kcfg, kafka, "librdkafka properties"),
        ECF_OPT_END,
    };
    static const char *const yamls[] = {
        "kafka: hunter2\n",
        "kafka: [hunter2]\n",
        "kafka: {sasl.password: [hunter2]}\n",
        "kafka: {sasl: {password: [hunter2]}}\n",
        "kafka.sasl.password: [hunter2]\n",
        "kafka.sasl.password: {hunter2: x}\n",
    };
    for (guint i = 0; i < G_N_ELEMENTS(yamls); i++) {
        g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(ecf_node) root = ecf_node_load_string("t.yaml", yamls[i], errors);
        ecf_opt_ctx ctx = {"t.yaml", "s", 1, errors};
        g_assert_null(ecf_options_fill(secret_map, sizeof(kcfg), root, NULL, &ctx));
        g_assert_cmpuint(errors->len, >=, 1);
        for (guint e = 0; e < errors->len; e++)
            if (strstr(errors->pdata[e], "hunter2"))
                g_error("case %u echoes a secret: %s", i, (char *)errors->pdata[e]);
    }
}

static void test_suggestions(void)
{
    const char *const names[] = {"bootstrap", "topic", "compression"};
    g_assert_cmpstr(ecf_suggest("topik", names, 3), ==, "topic");
    g_assert_cmpstr(ecf_suggest("bootstrap_servers", names, 3), ==, NULL);
    g_assert_cmpstr(ecf_suggest("compresion", names, 3), ==, "compression");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/options/fills-typed-config-with-defaults", test_defaults_and_types);
    g_test_add_func("/options/parses-durations-and-sizes", test_units);
    g_test_add_func("/options/bad-inputs-name-file-line-stage-and-key", test_bad_inputs);
    g_test_add_func("/options/reports-every-error-not-only-the-first", test_every_error_is_reported);
    g_test_add_func("/options/secret-values-are-never-echoed", test_secrets_are_never_echoed);
    g_test_add_func("/options/secret-map-values-are-never-echoed", test_secret_map_values_are_never_echoed);
    g_test_add_func("/options/unknown-key-suggests-nearest", test_suggestions);
    return g_test_run();
}
