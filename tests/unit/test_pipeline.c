#include "node.h"
#include "pipeline.h"

#include <string.h>

static ecf_registry *reg;

static ecf_pipeline_def *load(const char *yaml, const char *profile, GPtrArray *errors)
{
    return ecf_pipeline_load_string("p.yaml", yaml, profile, reg, errors);
}

static gboolean has_error(GPtrArray *errors, const char *needle)
{
    for (guint i = 0; i < errors->len; i++)
        if (strstr(errors->pdata[i], needle))
            return TRUE;
    return FALSE;
}

static void assert_error(GPtrArray *errors, const char *needle)
{
    if (has_error(errors, needle))
        return;
    GString *all = g_string_new(NULL);
    for (guint i = 0; i < errors->len; i++)
        g_string_append_printf(all, "\n  %s", (char *)errors->pdata[i]);
    g_error("expected an error containing '%s'; got:%s", needle, all->str);
}

static const char *demo = "pipeline: {name: demo, batch_size: 10}\n"
                          "stages:\n"
                          "  shoppers: {plugin: source-generate, count: 5, seed: 7}\n"
                          "  out:\n"
                          "    plugin: sink-file\n"
                          "    inputs: [shoppers]\n"
                          "    path: \"${ECF_TEST_OUT:-/tmp/default.ndjson}\"\n"
                          "profiles:\n"
                          "  ci:\n"
                          "    pipeline: {batch_size: 99}\n"
                          "    stages: {out: {path: /dev/null}}\n"
                          "  stdout:\n"
                          "    stages: {out: {plugin: sink-file, path: '-', fsync: true}}\n"
                          "  broken:\n"
                          "    stages: {out: {paht: x}}\n"
                          "  nulls:\n"
                          "    stages: {out: {plugin: sink-null, path: null}}\n";

static const char *out_path(ecf_pipeline_def *def)
{
    /* sink-file's config starts with its path */
    return *(char **)ecf_pipeline_stage(def, "out")->config;
}

static void test_env_expansion(void)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    g_unsetenv("ECF_TEST_OUT");
    g_autoptr(ecf_pipeline_def) d1 = load(demo, NULL, errors);
    g_assert_nonnull(d1);
    g_assert_cmpstr(out_path(d1), ==, "/tmp/default.ndjson");
    g_setenv("ECF_TEST_OUT", "/tmp/x.ndjson", TRUE);
    g_autoptr(ecf_pipeline_def) d2 = load(demo, NULL, errors);
    g_assert_cmpstr(out_path(d2), ==, "/tmp/x.ndjson");
    g_unsetenv("ECF_TEST_OUT");

    char *missing = NULL;
    g_setenv("ECF_A", "1", TRUE);
    g_autofree char *s1 = ecf_expand_env_string("a${ECF_A}b$${ECF_A}c${ECF_NOPE:-d:e}", &missing);
    g_assert_cmpstr(s1, ==, "a1b${ECF_A}cd:e");
    g_assert_null(ecf_expand_env_string("${ECF_NOPE}", &missing));
    g_assert_nonnull(strstr(missing, "'ECF_NOPE' is not set"));
    g_free(missing);
    g_assert_null(ecf_expand_env_string("${unterminated", &missing));
    g_assert_nonnull(strstr(missing, "malformed"));
    g_free(missing);
}

static void test_unset_var_is_an_error_with_line(void)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    g_unsetenv("ECF_NOT_SET");
    g_assert_null(load("stages:\n  s: {plugin: source-generate}\n  o:\n    plugin: sink-file\n"
                       "    inputs: [s]\n    path: ${ECF_NOT_SET}\n",
                       NULL, errors));
    assert_error(errors, "p.yaml:6: stage 'o': environment variable 'ECF_NOT_SET' is not set");
}

static void test_profile_patching(void)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(ecf_pipeline_def) ci = load(demo, "ci", errors);
    g_assert_nonnull(ci);
    g_assert_cmpstr(out_path(ci), ==, "/dev/null");
    g_assert_cmpint(ci->settings.batch_size, ==, 99);
    g_assert_cmpstr(ci->profile, ==, "ci");

    g_setenv("ECFLOW_PROFILE", "stdout", TRUE);
    g_autoptr(ecf_pipeline_def) so = load(demo, NULL, errors);
    g_unsetenv("ECFLOW_PROFILE");
    g_assert_nonnull(so);
    /* Replacing a stage keeps its wiring. */
    ecf_stage_def *out = ecf_pipeline_stage(so, "out");
    g_assert_cmpuint(out->inputs->len, ==, 1);
    g_assert_cmpstr(out_path(so), ==, "-");

    g_assert_null(load(demo, "broken", errors));
    assert_error(errors, "unknown option 'paht' (did you mean 'path'?)");
    g_ptr_array_set_size(errors, 0);
    g_assert_null(load(demo, "prod", errors));
    assert_error(errors, "profile 'prod' is not defined (profiles: ci, stdout, broken, nulls)");

    /* null removes an option, even one the new plugin does not know */
    g_ptr_array_set_size(errors, 0);
    g_autoptr(ecf_pipeline_def) nulls = load(demo, "nulls", errors);
    g_assert_nonnull(nulls);
    g_assert_cmpstr(ecf_pipeline_stage(nulls, "out")->plugin_name, ==, "sink-null");
}

static void test_swapping_the_sink_plugin(void)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    const char *yaml = "stages:\n"
                       "  s: {plugin: source-generate}\n"
                       "  lake: {plugin: sink-kafka, inputs: [s], bootstrap: 'x:1', topic: t}\n"
                       "profiles:\n"
                       "  laptop: {stages: {lake: {plugin: sink-file, path: /dev/null}}}\n";
    g_autoptr(ecf_pipeline_def) def = load(yaml, "laptop", errors);
    g_assert_nonnull(def);
    ecf_stage_def *lake = ecf_pipeline_stage(def, "lake");
    g_assert_cmpstr(lake->plugin_name, ==, "sink-file");
    g_assert_cmpuint(lake->inputs->len, ==, 1);
}

static void test_graph_errors(void)
{
    static const struct {
        const char *yaml;
        const char *error;
    } cases[] = {
        {"stages:\n  a: {plugin: sink-file, inputs: [b]}\n  b: {plugin: sink-file, inputs: [a]}\n",
         "input 'b' is a sink and has no outputs"},
        {"stages:\n  s: {plugin: source-generate}\n  o: {plugin: sink-file, inputs: [shopers]}\n",
         "p.yaml:3: stage 'o': input 'shopers' is not a stage"},
        {"stages:\n  shoppers: {plugin: source-generate}\n  o: {plugin: sink-file, inputs: [shopers]}\n",
         "(did you mean 'shoppers'?)"},
        {"stages:\n  s: {plugin: source-generate}\n  o: {plugin: sink-file, inputs: [s.invalid]}\n",
         "stage 's' has no port 'invalid' (ports: default)"},
        {"stages:\n  s: {plugin: source-generate, inputs: [s2]}\n  s2: {plugin: source-generate}\n",
         "stage 's': 'source-generate' is a source and takes no inputs"},
        {"stages:\n  s: {plugin: source-generate}\n  o: {plugin: sink-file}\n",
         "stage 'o': 'sink-file' is a sink and needs 'inputs:'"},
        {"stages:\n  s: {plugin: source-generat}\n", "unknown plugin 'source-generat'"},
        {"stages:\n  s: {count: 1}\n", "'plugin:' is missing"},
        {"stages: {}\n", "'stages:' must be a non-empty map"},
        {"stagez: {}\n", "unknown top-level key 'stagez' (did you mean 'stages'?)"},
        {"pipeline: {batchsize: 1}\nstages:\n  s: {plugin: source-generate}\n",
         "p.yaml:1: unknown setting 'batchsize' (did you mean 'batch_size'?)"},
        {"stages:\n  s: {plugin: source-generate}\n  s: {plugin: source-generate}\n", "p.yaml:3: duplicate key 's'"},
        {"stages:\n  s: [1\n", "YAML syntax error"},
        {"stages:\n  'bad name': {plugin: source-generate}\n", "stage names use letters"},
        {"stages:\n  s: {plugin: source-generate}\n  o: {plugin: sink-file, inputs: [s, s]}\n",
         "input 's' is listed twice"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
        ecf_pipeline_def *def = load(cases[i].yaml, NULL, errors);
        if (def)
            g_error("case %u loaded but should fail with '%s'", i, cases[i].error);
        assert_error(errors, cases[i].error);
    }
}

static void test_cycle_detection(void)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    const char *yaml = "stages:\n"
                       "  src: {plugin: source-generate}\n"
                       "  a: {plugin: transform-pass, inputs: [src, c]}\n"
                       "  b: {plugin: transform-pass, inputs: [a]}\n"
                       "  c: {plugin: transform-pass, inputs: [b]}\n"
                       "  out: {plugin: sink-file, inputs: [c]}\n";
    g_assert_null(load(yaml, NULL, errors));
    assert_error(errors, "the stages 'a', 'b', 'c', 'out' form a cycle");
}

static void test_all_errors_reported(void)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    const char *yaml = "stages:\n"
                       "  s: {plugin: source-generate, cuont: 5}\n"
                       "  o: {plugin: sink-file, inputs: [x], fsync: sometimes}\n";
    g_assert_null(load(yaml, NULL, errors));
    g_assert_cmpuint(errors->len, ==, 3);
    assert_error(errors, "p.yaml:2: stage 's': unknown option 'cuont' (did you mean 'count'?)");
    assert_error(errors, "p.yaml:3: stage 'o': option 'fsync': expected true or false");
    assert_error(errors, "p.yaml:3: stage 'o': input 'x' is not a stage");
}

static void test_order_and_graph(void)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    const char *yaml = "stages:\n"
                       "  out: {plugin: sink-file, inputs: [mid]}\n"
                       "  mid: {plugin: transform-pass, inputs: [src]}\n"
                       "  src: {plugin: source-generate}\n";
    g_autoptr(ecf_pipeline_def) def = load(yaml, NULL, errors);
    g_assert_nonnull(def);
    g_assert_cmpstr(((ecf_stage_def *)def->order->pdata[0])->name, ==, "src");
    g_assert_cmpstr(((ecf_stage_def *)def->order->pdata[2])->name, ==, "out");
    g_autofree char *dot = ecf_pipeline_graph(def, "dot");
    g_assert_nonnull(strstr(dot, "\"src\" -> \"mid\";"));
    g_autofree char *mm = ecf_pipeline_graph(def, "mermaid");
    g_assert_nonnull(strstr(mm, "flowchart LR"));
    g_assert_nonnull(strstr(mm, "mid --> out"));
}

/* `a0: &a0 [x, x]`, `aN: &aN [*aN-1, *aN-1]`: 2^levels nodes once expanded, a
 * few hundred bytes of YAML. Loading it must stop with the line, not grow. */
static void test_alias_bomb_is_refused(void)
{
    GString *y = g_string_new("pipeline: {name: bomb}\nstages: {src: {plugin: source-generate}}\nx:\n");
    g_string_append(y, "  a0: &a0 [x, x]\n");
    for (int i = 1; i <= 18; i++)
        g_string_append_printf(y, "  a%d: &a%d [*a%d, *a%d]\n", i, i, i - 1, i - 1);
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(ecf_node) root = ecf_node_load_string("bomb.yaml", y->str, errors);
    g_assert_null(root);
    assert_error(errors, "bomb.yaml:");
    assert_error(errors, "aliases");
    g_string_free(y, TRUE);

    /* Aliases used a few times are fine. */
    g_autoptr(GPtrArray) e2 = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(ecf_node) ok = ecf_node_load_string("ok.yaml", "a: &a {x: 1}\nb: *a\nc: *a\n", e2);
    g_assert_nonnull(ok);
    g_assert_cmpuint(e2->len, ==, 0);
}

/* A stage may size its own input ring; a bad size names its line. */
static void test_stage_ring_capacity(void)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(ecf_pipeline_def) d = load("stages:\n"
                                         "  src: {plugin: source-generate}\n"
                                         "  out: {plugin: sink-null, inputs: [src], ring_capacity: 64}\n",
                                         NULL, errors);
    g_assert_cmpuint(errors->len, ==, 0);
    g_assert_cmpint(ecf_pipeline_stage(d, "out")->ring_capacity, ==, 64);
    g_assert_cmpint(ecf_pipeline_stage(d, "src")->ring_capacity, ==, 0); /* the pipeline's */
    g_autoptr(GPtrArray) e2 = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(ecf_pipeline_def) bad = load("stages:\n"
                                           "  src: {plugin: source-generate}\n"
                                           "  out: {plugin: sink-null, inputs: [src],\n"
                                           "        ring_capacity: 1}\n",
                                           NULL, e2);
    assert_error(e2, "p.yaml:4: stage 'out': 'ring_capacity' is a count of batches from 2 to 65536, got '1'");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    reg = ecf_registry_new(NULL);
    g_test_add_func("/pipeline/expands-env-vars-with-defaults", test_env_expansion);
    g_test_add_func("/pipeline/unset-var-without-default-names-the-line", test_unset_var_is_an_error_with_line);
    g_test_add_func("/pipeline/profiles-patch-stages-and-settings", test_profile_patching);
    g_test_add_func("/pipeline/a-profile-swaps-the-sink-plugin-keeping-inputs", test_swapping_the_sink_plugin);
    g_test_add_func("/pipeline/graph-mistakes-are-reported", test_graph_errors);
    g_test_add_func("/pipeline/cycles-are-detected", test_cycle_detection);
    g_test_add_func("/pipeline/every-error-is-reported", test_all_errors_reported);
    g_test_add_func("/pipeline/orders-upstream-first-and-draws", test_order_and_graph);
    g_test_add_func("/pipeline/yaml-alias-bomb-is-refused-with-the-line", test_alias_bomb_is_refused);
    g_test_add_func("/pipeline/a-stage-sizes-its-input-ring", test_stage_ring_capacity);
    int rc = g_test_run();
    ecf_registry_free(reg);
    return rc;
}
