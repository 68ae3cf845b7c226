/* Runs the real `ecflow` binary on real pipeline files. */
#include <glib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <glib/gstdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *bin;
static char *tmpdir;

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

/* Runs `ecflow ARGS...` with extra environment "K=V" entries. */
static result run_env(const char *const *env_extra, const char *first, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer)bin);
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *))
        g_ptr_array_add(argv, (gpointer)a);
    va_end(ap);
    g_ptr_array_add(argv, NULL);
    g_auto(GStrv) env = g_get_environ();
    for (const char *const *e = env_extra; e && *e; e++) {
        g_auto(GStrv) kv = g_strsplit(*e, "=", 2);
        env = g_environ_setenv(env, kv[0], kv[1], TRUE);
    }
    result r = {0};
    g_autoptr(GError) err = NULL;
    int wait_status;
    g_assert_true(
        g_spawn_sync(NULL, (char **)argv->pdata, env, G_SPAWN_DEFAULT, NULL, NULL, &r.out, &r.err, &wait_status, &err));
    r.status = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
    return r;
}
#define run(...) run_env(NULL, __VA_ARGS__, NULL)

static char *write_pipeline(const char *name, const char *yaml)
{
    char *path = g_build_filename(tmpdir, name, NULL);
    g_assert_true(g_file_set_contents(path, yaml, -1, NULL));
    return path;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        g_error("expected to find '%s' in:\n%s", needle, hay);
}

static guint count_lines(const char *path)
{
    g_autofree char *text = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(path, &text, &len, NULL));
    guint n = 0;
    for (gsize i = 0; i < len; i++)
        n += text[i] == '\n';
    return n;
}

/* One `ecflow VERB pipeline` case: the pipeline, the exit status (-1: any) and
 * what stderr must say. */
typedef struct {
    const char *file, *yaml;
    const char *verb;
    int status;
    const char *err[3];
} pipeline_case;

static void check_cases(const pipeline_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const pipeline_case *c = &cases[i];
        g_autofree char *path = write_pipeline(c->file, c->yaml);
        result r = run(c->verb, path);
        if (c->status >= 0)
            g_assert_cmpint(r.status, ==, c->status);
        for (size_t k = 0; k < G_N_ELEMENTS(c->err) && c->err[k]; k++)
            assert_contains(r.err, c->err[k]);
        result_clear(&r);
    }
}

static void test_version(void)
{
    result r = run("version");
    g_assert_cmpint(r.status, ==, 0);
    assert_contains(r.out, "plugin ABI 1.");
    result_clear(&r);
}

static void test_help_on_every_verb(void)
{
    const char *verbs[] = {"version", "plugins", "validate", "graph", "run"};
    for (guint i = 0; i < G_N_ELEMENTS(verbs); i++) {
        result r = run(verbs[i], "--help");
        g_assert_cmpint(r.status, ==, 0);
        assert_contains(r.out, "Usage:");
        result_clear(&r);
    }
    result r = run("frobnicate");
    g_assert_cmpint(r.status, ==, 2);
    assert_contains(r.err, "unknown verb 'frobnicate'");
    result_clear(&r);
}

static void test_plugins_list_and_inspect(void)
{
    result r = run("plugins", "list");
    g_assert_cmpint(r.status, ==, 0);
    assert_contains(r.out, "source-generate");
    assert_contains(r.out, "sink-file");
    assert_contains(r.err, "ABI"); /* the abi-future fixture is reported, not loaded */
    result_clear(&r);

    r = run("plugins", "inspect", "sink-file");
    g_assert_cmpint(r.status, ==, 0);
    assert_contains(r.out, "kind:     sink");
    assert_contains(r.out, "path");
    assert_contains(r.out, "default: -");
    assert_contains(r.out, "fsync after every batch");
    result_clear(&r);

    r = run("plugins", "inspect", "source-generate");
    assert_contains(r.out, "ports:    default");
    assert_contains(r.out, "invalid_ratio");
    result_clear(&r);

    r = run("plugins", "inspect", "nope");
    g_assert_cmpint(r.status, ==, 2);
    assert_contains(r.err, "unknown plugin 'nope'");
    result_clear(&r);
}

static void test_plugins_inspect_markdown(void)
{
    result r = run("plugins", "inspect", "--format", "markdown", "sink-file", "source-generate");
    g_assert_cmpint(r.status, ==, 0);
    assert_contains(r.out, "# Plugin options\n");
    assert_contains(r.out, "| [sink-file](#sink-file) | sink | ");
    assert_contains(r.out, "\n## sink-file\n");
    assert_contains(r.out, "| option | type | default | range / choices | required | secret | description |");
    assert_contains(r.out, "| `buffer_size` | size | `1MiB` | 4KiB..1GiB |  |  | bytes gathered before a write(2) |");
    assert_contains(r.out, "- output ports: `default`");
    g_assert_true(strstr(r.out, "## sink-file") < strstr(r.out, "## source-generate")); /* as named */
    g_assert_null(strstr(r.out, "/plugins/sink-file.so"));                              /* nothing of this machine */
    result_clear(&r);

    r = run("plugins", "inspect", "--format", "markdown"); /* every plugin found */
    g_assert_cmpint(r.status, ==, 0);
    assert_contains(r.out, "## transform-validate");
    assert_contains(r.out, "## transform-pass"); /* a fixture on ECFLOW_PLUGIN_PATH */
    result_clear(&r);

    r = run("plugins", "inspect", "--format", "markdown", "nope");
    g_assert_cmpint(r.status, ==, 2);
    assert_contains(r.err, "unknown plugin 'nope'");
    g_assert_cmpstr(r.out, ==, "");
    result_clear(&r);

    r = run("plugins", "inspect", "--format", "html", "sink-file");
    g_assert_cmpint(r.status, ==, 2);
    assert_contains(r.err, "--format is text or markdown, not 'html'");
    result_clear(&r);

    r = run("plugins", "inspect");
    g_assert_cmpint(r.status, ==, 2);
    assert_contains(r.err, "usage: ecflow plugins");
    result_clear(&r);
}

static const char *demo_yaml =
    "pipeline: {name: demo}\n"
    "stages:\n"
    "  shoppers: {plugin: source-generate, count: 2000, seed: 7, batch_size: 128,\n"
    "             start_time: '2026-01-01T00:00:00Z'}\n"
    "  out:      {plugin: sink-file, inputs: [shoppers], path: \"${OUT:-/tmp/ecf-never.ndjson}\"}\n"
    "profiles:\n"
    "  ci:\n"
    "    stages: {out: {path: /dev/null}}\n";

static void test_validate(void)
{
    g_autofree char *good = write_pipeline("good.yaml", demo_yaml);
    result r = run("validate", good);
    g_assert_cmpint(r.status, ==, 0);
    assert_contains(r.out, "valid (2 stages)");
    result_clear(&r);

    r = run("validate", good, "--profile", "ci");
    g_assert_cmpint(r.status, ==, 0);
    assert_contains(r.out, "profile ci");
    result_clear(&r);

    g_autofree char *bad = write_pipeline("bad.yaml", "stages:\n"
                                                      "  shoppers: {plugin: source-generate, cuont: 5}\n"
                                                      "  out: {plugin: sink-file, inputs: [shopers], fsync: often}\n"
                                                      "  lost: {plugin: sink-file}\n");
    r = run("validate", bad);
    g_assert_cmpint(r.status, ==, 2);
    g_autofree char *l2 =
        g_strdup_printf("%s:2: stage 'shoppers': unknown option 'cuont' (did you mean 'count'?)", bad);
    g_autofree char *l3a = g_strdup_printf("%s:3: stage 'out': option 'fsync': expected true or false", bad);
    g_autofree char *l3b =
        g_strdup_printf("%s:3: stage 'out': input 'shopers' is not a stage (did you mean 'shoppers'?)", bad);
    g_autofree char *l4 = g_strdup_printf("%s:4: stage 'lost': 'sink-file' is a sink and needs 'inputs:'", bad);
    assert_contains(r.err, l2);
    assert_contains(r.err, l3a);
    assert_contains(r.err, l3b);
    assert_contains(r.err, l4);
    assert_contains(r.err, "4 errors");
    result_clear(&r);

    r = run("validate");
    g_assert_cmpint(r.status, ==, 2);
    result_clear(&r);
    r = run("validate", "/nonexistent.yaml");
    g_assert_cmpint(r.status, ==, 2);
    assert_contains(r.err, "/nonexistent.yaml: cannot read");
    result_clear(&r);
}

static void test_validate_negotiates_schemas(void)
{
    static const pipeline_case cases[] = {
        {"schema-ok.yaml",
         "stages:\n"
         "  g: {plugin: source-generate}\n"
         "  parse: {plugin: transform-pass, inputs: [g], schema: 'id:l,name:u'}\n"
         "  out: {plugin: sink-test, inputs: [parse], require: ['id:l', 'name']}\n",
         "validate",
         0,
         {NULL}},
        {"schema-bad.yaml",
         "stages:\n"
         "  g: {plugin: source-generate}\n"
         "  parse: {plugin: transform-pass, inputs: [g], schema: 'id:u'}\n"
         "  out: {plugin: sink-test, inputs: [parse], require: ['id:l']}\n",
         "validate",
         2,
         {"schema-bad.yaml:4: stage 'out': field 'id' is 'u' upstream, but 'l' is needed"}},
        {"schema-raw.yaml",
         "stages:\n"
         "  g: {plugin: source-generate}\n"
         "  out: {plugin: sink-test, inputs: [g], require: ['id:l']}\n",
         "validate",
         2,
         {"records with a schema are needed"}},
    };
    check_cases(cases, G_N_ELEMENTS(cases));
}

static void test_shipped_pipelines_validate(void)
{
    const char *src = g_getenv("ECF_SOURCE_DIR");
    g_assert_nonnull(src);
    const char *files[] = {"pipelines/demo.yaml", "pipelines/ecommerce.yaml"};
    const char *profiles[] = {"ci", "local", "file"};
    for (guint i = 0; i < G_N_ELEMENTS(files); i++) {
        g_autofree char *path = g_build_filename(src, files[i], NULL);
        for (guint p = 0; p < G_N_ELEMENTS(profiles); p++) {
            if (i == 0 && p > 0)
                continue;
            result r = run("validate", path, "--profile", profiles[p]);
            if (r.status != 0)
                g_error("%s --profile %s: %s", files[i], profiles[p], r.err);
            result_clear(&r);
        }
    }
    /* prod takes its secrets from the environment and says which are missing */
    g_autofree char *eco = g_build_filename(src, "pipelines/ecommerce.yaml", NULL);
    result r = run("validate", eco, "--profile", "prod");
    g_assert_cmpint(r.status, ==, 2);
    assert_contains(r.err, "environment variable 'KAFKA_PASSWORD' is not set");
    g_assert_null(strstr(r.out, "valid"));
    result_clear(&r);
}

static void test_graph(void)
{
    g_autofree char *good = write_pipeline("graph.yaml", demo_yaml);
    result r = run("graph", good);
    g_assert_cmpint(r.status, ==, 0);
    assert_contains(r.out, "digraph \"demo\"");
    assert_contains(r.out, "\"shoppers\" -> \"out\"");
    result_clear(&r);
    r = run("graph", good, "--format", "mermaid");
    assert_contains(r.out, "shoppers --> out");
    result_clear(&r);
    r = run("graph", good, "--format", "png");
    g_assert_cmpint(r.status, ==, 2);
    result_clear(&r);
}

static void test_run_to_completion(void)
{
    g_autofree char *file = write_pipeline("run.yaml", demo_yaml);
    g_autofree char *out = g_build_filename(tmpdir, "run.ndjson", NULL);
    g_autofree char *env_out = g_strconcat("OUT=", out, NULL);
    const char *env[] = {env_out, NULL};
    result r = run_env(env, "run", file, NULL);
    g_assert_cmpint(r.status, ==, 0);
    assert_contains(r.err, "generated 2000 events: 2000 durable, 0 failed");
    assert_contains(r.err, "drained and stopped");
    g_assert_cmpuint(count_lines(out), ==, 2000);
    result_clear(&r);

    /* The same seed and start time give the same bytes. */
    g_autofree char *first = NULL;
    g_file_get_contents(out, &first, NULL, NULL);
    g_unlink(out);
    r = run_env(env, "run", file, NULL);
    g_autofree char *second = NULL;
    g_file_get_contents(out, &second, NULL, NULL);
    g_assert_true(first && second && strcmp(first, second) == 0);
    result_clear(&r);
}

static void test_fan_out_and_fan_in(void)
{
    g_autofree char *a = g_build_filename(tmpdir, "fan-a.ndjson", NULL);
    g_autofree char *b = g_build_filename(tmpdir, "fan-b.ndjson", NULL);
    g_autofree char *yaml = g_strdup_printf("stages:\n"
                                            "  g1: {plugin: source-generate, count: 3000, seed: 1, batch_size: 100}\n"
                                            "  g2: {plugin: source-generate, count: 2000, seed: 2, batch_size: 64}\n"
                                            "  mix: {plugin: transform-pass, inputs: [g1, g2]}\n"
                                            "  a: {plugin: sink-file, inputs: [mix], path: %s, append: false}\n"
                                            "  b: {plugin: sink-file, inputs: [mix], path: %s, append: false}\n",
                                            a, b);
    g_autofree char *file = write_pipeline("fan.yaml", yaml);
    result r = run("run", file);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_cmpuint(count_lines(a), ==, 5000);
    g_assert_cmpuint(count_lines(b), ==, 5000);
    assert_contains(r.err, "[g1] generated 3000 events: 3000 durable");
    assert_contains(r.err, "[g2] generated 2000 events: 2000 durable");
    result_clear(&r);
}

static void test_failures_reach_the_source(void)
{
    static const pipeline_case cases[] = {
        /* /dev/full fails every write: nothing may be reported durable. */
        {"full.yaml",
         "stages:\n"
         "  g: {plugin: source-generate, count: 500, batch_size: 100}\n"
         "  out: {plugin: sink-file, inputs: [g], path: /dev/full}\n",
         "run",
         -1,
         {"generated 500 events: 0 durable, 500 failed", "No space left on device"}},
        /* A fatal failure stops the pipeline with exit 1, and upstream learns. */
        {"fatal.yaml",
         "stages:\n"
         "  g: {plugin: source-generate, count: 0, batch_size: 10}\n"
         "  boom: {plugin: transform-pass, inputs: [g], fail_on: event_id, fatal: true}\n"
         "  out: {plugin: sink-file, inputs: [boom], path: /dev/null}\n",
         "run",
         1,
         {"stage 'boom' failed; stopping the pipeline", "0 durable"}},
        /* A sink that cannot start: exit 1 with the reason. */
        {"nostart.yaml",
         "stages:\n"
         "  g: {plugin: source-generate, count: 5}\n"
         "  out: {plugin: sink-file, inputs: [g], path: /nonexistent-dir/x.ndjson}\n",
         "run",
         1,
         {"stage 'out' could not start", "/nonexistent-dir/x.ndjson"}},
    };
    check_cases(cases, G_N_ELEMENTS(cases));
}

static void test_workers_are_refused_where_they_cannot_run(void)
{
    static const pipeline_case cases[] = {
        {"workers-one.yaml",
         "stages:\n"
         "  g: {plugin: source-generate}\n"
         "  out: {plugin: sink-test, inputs: [g], path: /dev/null,\n"
         "        workers: 2}\n",
         "validate",
         2,
         {"workers-one.yaml:4: stage 'out': 'workers: 2': plugin 'sink-test' runs as one instance only"}},
        {"workers-auto.yaml",
         "stages:\n"
         "  g: {plugin: source-generate}\n"
         "  out: {plugin: sink-test, inputs: [g], path: /dev/null, workers: auto}\n",
         "validate",
         2,
         {"workers-auto.yaml:3: stage 'out': 'workers: auto': plugin 'sink-test' runs as one instance only"}},
        /* a 1.2 plugin: what lies past its descriptor's size is never read */
        {"workers-old-abi.yaml",
         "stages:\n"
         "  g: {plugin: source-generate}\n"
         "  out: {plugin: abi-1-2, inputs: [g], workers: 2}\n",
         "validate",
         2,
         {"workers-old-abi.yaml:3: stage 'out': 'workers: 2': plugin 'abi-1-2' runs as one instance only"}},
        {"workers-source.yaml",
         "stages:\n"
         "  g: {plugin: source-generate, workers: 2}\n"
         "  out: {plugin: sink-null, inputs: [g]}\n",
         "validate",
         2,
         {"workers-source.yaml:2: stage 'g': 'workers: 2': 'source-generate' is a source"}},
        {"workers-bad.yaml",
         "stages:\n"
         "  g: {plugin: source-generate}\n"
         "  out: {plugin: sink-null, inputs: [g], workers: many}\n",
         "validate",
         2,
         {"workers-bad.yaml:3: stage 'out': 'workers' is a count from 1 to 256, or auto"}},
        /* The core splits a partition-ordered stage's batches by partition,
         * which it can only do for raw messages. */
        {"workers-records.yaml",
         "stages:\n"
         "  g: {plugin: source-generate}\n"
         "  parse: {plugin: transform-pass, inputs: [g], schema: 'id:l'}\n"
         "  par: {plugin: transform-pass-parallel, inputs: [parse], workers: 2}\n"
         "  out: {plugin: sink-null, inputs: [par]}\n",
         "validate",
         2,
         {"workers-records.yaml:4: stage 'par': 'workers: 2'", "input 'parse' carries records"}},
        {"workers-ok.yaml",
         "stages:\n"
         "  g: {plugin: source-generate}\n"
         "  par: {plugin: transform-pass-parallel, inputs: [g], workers: auto}\n"
         "  out: {plugin: sink-null, inputs: [par], workers: 3}\n",
         "validate",
         0,
         {NULL}},
    };
    check_cases(cases, G_N_ELEMENTS(cases));
}

/* Sums N in every "[stage] discarded N events" / "[stage#k] ..." line. */
static guint64 discarded(const char *log, const char *stage)
{
    guint64 sum = 0;
    g_auto(GStrv) lines = g_strsplit(log, "\n", -1);
    g_autofree char *one = g_strdup_printf("[%s] discarded ", stage), *many = g_strdup_printf("[%s#", stage);
    for (char **l = lines; *l; l++) {
        const char *p = strstr(*l, one);
        if (p)
            p += strlen(one);
        else if ((p = strstr(*l, many)) && (p = strstr(p, "] discarded ")))
            p += strlen("] discarded ");
        if (p)
            sum += g_ascii_strtoull(p, NULL, 10);
    }
    return sum;
}

/* Three instances of a partition-ordered transform, each sleeping at random
 * per batch: every message comes out once, and each partition's offsets in
 * the order they went in, though the instances interleave. */
static void test_workers_keep_each_partition_in_order(void)
{
    enum { N = 20000, PARTS = 5 };
    g_autofree char *out = g_build_filename(tmpdir, "workers.ndjson", NULL);
    g_autofree char *yaml =
        g_strdup_printf("stages:\n"
                        "  g: {plugin: source-generate, count: %d, seed: 4, batch_size: 97}\n"
                        "  part: {plugin: transform-pass, inputs: [g], repartition: %d}\n"
                        "  par: {plugin: transform-pass-parallel, inputs: [part], workers: 3, jitter: 2ms}\n"
                        "  out: {plugin: sink-test, inputs: [par], format: origin, path: %s, append: false}\n"
                        "  any: {plugin: sink-null, inputs: [par], workers: 3, log_totals: true}\n",
                        N, PARTS, out);
    g_autofree char *file = write_pipeline("workers.yaml", yaml);
    result r = run("run", file);
    g_assert_cmpint(r.status, ==, 0);
    g_autofree char *durable = g_strdup_printf("generated %d events: %d durable, 0 failed", N, N);
    assert_contains(r.err, durable);
    g_assert_cmpuint(discarded(r.err, "any"), ==, N);
    result_clear(&r);

    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(out, &text, NULL, NULL));
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    g_autofree gboolean *seen = g_new0(gboolean, N);
    gint64 last[PARTS] = {-1, -1, -1, -1, -1};
    guint count = 0, partitions_used = 0;
    for (char **l = lines; *l && **l; l++) {
        const char *pp = strstr(*l, "\"partition\":"), *op = strstr(*l, "\"offset\":");
        g_assert_true(pp && op);
        gint64 part = g_ascii_strtoll(pp + strlen("\"partition\":"), NULL, 10);
        gint64 off = g_ascii_strtoll(op + strlen("\"offset\":"), NULL, 10);
        g_assert_cmpint(part, ==, off % PARTS);
        g_assert_cmpint(off, >=, 0);
        g_assert_cmpint(off, <, N);
        g_assert_false(seen[off]); /* exactly once */
        seen[off] = TRUE;
        if (off <= last[part])
            g_error("partition %" G_GINT64_FORMAT ": offset %" G_GINT64_FORMAT " came after %" G_GINT64_FORMAT, part,
                    off, last[part]);
        partitions_used += last[part] < 0;
        last[part] = off;
        count++;
    }
    g_assert_cmpuint(count, ==, N);
    g_assert_cmpuint(partitions_used, ==, PARTS);

    r = run("graph", file);
    assert_contains(r.out, "transform-pass-parallel\\n3 workers, ordered per partition");
    assert_contains(r.out, "sink-null\\n3 workers, any order");
    result_clear(&r);
}

/* Starts `ecflow run` in the background; returns its pid. */
static GPid spawn_run(const char *file, int *err_fd)
{
    const char *argv[] = {bin, "run", (char *)file, NULL};
    GPid pid;
    g_autoptr(GError) err = NULL;
    g_assert_true(g_spawn_async_with_pipes(NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid, NULL,
                                           NULL, err_fd, &err));
    return pid;
}

/* Reads stderr until `needle` shows up, so we signal only once running. */
static GString *wait_for(int fd, const char *needle)
{
    GString *seen = g_string_new(NULL);
    char buf[4096];
    ssize_t n;
    while (!strstr(seen->str, needle) && (n = read(fd, buf, sizeof buf)) > 0)
        g_string_append_len(seen, buf, n);
    return seen;
}

static int wait_exit(GPid pid, int fd, GString *log)
{
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        g_string_append_len(log, buf, n);
    int status;
    waitpid(pid, &status, 0);
    g_spawn_close_pid(pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_sigterm_drains(void)
{
    g_autofree char *out = g_build_filename(tmpdir, "drain.ndjson", NULL);
    g_autofree char *yaml = g_strdup_printf("stages:\n"
                                            "  g: {plugin: source-generate, count: 0, rate: 20000}\n"
                                            "  out: {plugin: sink-file, inputs: [g], path: %s, append: false}\n",
                                            out);
    g_autofree char *file = write_pipeline("drain.yaml", yaml);
    int fd;
    GPid pid = spawn_run(file, &fd);
    g_autoptr(GString) log = wait_for(fd, "running");
    kill(pid, SIGTERM);
    int code = wait_exit(pid, fd, log);
    g_assert_cmpint(code, ==, 0);
    assert_contains(log->str, "drained and stopped");
    /* Every generated event is durable and in the file, none lost. */
    GMatchInfo *mi = NULL;
    g_autoptr(GRegex) re = g_regex_new("generated (\\d+) events: (\\d+) durable, 0 failed", 0, 0, NULL);
    g_assert_true(g_regex_match(re, log->str, 0, &mi));
    g_autofree char *gen = g_match_info_fetch(mi, 1);
    g_autofree char *dur = g_match_info_fetch(mi, 2);
    g_match_info_free(mi);
    g_assert_cmpstr(gen, ==, dur);
    g_assert_cmpuint(count_lines(out), ==, (guint)g_ascii_strtoull(dur, NULL, 10));
    close(fd);
}

static void test_second_signal_exits_at_once(void)
{
    /* A sink that can never keep up, so draining would take long. */
    g_autofree char *file =
        write_pipeline("stuck.yaml", "pipeline: {drain_timeout: 1h}\n"
                                     "stages:\n"
                                     "  g: {plugin: source-generate, count: 0}\n"
                                     "  out: {plugin: sink-file, inputs: [g], path: /dev/null, fsync: true}\n");
    int fd;
    GPid pid = spawn_run(file, &fd);
    g_autoptr(GString) log = wait_for(fd, "running");
    kill(pid, SIGINT);
    g_string_free(wait_for(fd, "draining"), TRUE);
    kill(pid, SIGINT);
    int code = wait_exit(pid, fd, log);
    g_assert_true(code == 130 || code == 0); /* 0 only if the drain won the race */
    close(fd);
}

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

static void test_metrics_endpoint(void)
{
    /* Port 0: the endpoint binds a free port and logs which. */
    g_autofree char *file =
        write_pipeline("metrics.yaml", "pipeline: {name: m, metrics: '127.0.0.1:0'}\n"
                                       "stages:\n"
                                       "  g: {plugin: source-generate, count: 0, rate: 2000}\n"
                                       "  out: {plugin: sink-file, inputs: [g], path: /dev/null}\n");
    int fd;
    GPid pid = spawn_run(file, &fd);
    g_autoptr(GString) log = wait_for(fd, "running");
    GMatchInfo *mi = NULL;
    g_autoptr(GRegex) re = g_regex_new("metrics on (http://127.0.0.1:\\d+)/metrics", 0, 0, NULL);
    g_assert_true(g_regex_match(re, log->str, 0, &mi));
    g_autofree char *base = g_match_info_fetch(mi, 1);
    g_match_info_free(mi);

    int code;
    g_autofree char *health_url = g_strconcat(base, "/health", NULL);
    g_autofree char *health = http_get(health_url, &code);
    g_assert_cmpint(code, ==, 200);
    g_autofree char *ready_url = g_strconcat(base, "/ready", NULL);
    g_autofree char *ready = http_get(ready_url, &code);
    g_assert_cmpint(code, ==, 200);
    g_autofree char *metrics_url = g_strconcat(base, "/metrics", NULL);
    g_autofree char *text = http_get(metrics_url, &code);
    g_assert_cmpint(code, ==, 200);
    assert_contains(text, "# TYPE ecflow_events_in_total counter");
    assert_contains(text, "ecflow_events_in_total{pipeline=\"m\",stage=\"out\"}");
    assert_contains(text, "ecflow_events_out_total{pipeline=\"m\",stage=\"g\"}");
    assert_contains(text, "ecflow_batches_in_total{pipeline=\"m\",stage=\"out\"}");
    assert_contains(text, "ecflow_ring_fill_ratio{pipeline=\"m\",stage=\"out\"}");
    assert_contains(text, "# TYPE ecflow_ack_latency_seconds histogram");
    assert_contains(text, "ecflow_ack_latency_seconds_bucket{pipeline=\"m\",stage=\"g\",le=\"+Inf\"}");
    assert_contains(text, "ecflow_acks_outstanding{pipeline=\"m\"}");
    g_autofree char *missing_url = g_strconcat(base, "/nope", NULL);
    g_free(http_get(missing_url, &code));
    g_assert_cmpint(code, ==, 404);
    kill(pid, SIGTERM);
    g_assert_cmpint(wait_exit(pid, fd, log), ==, 0);
    close(fd);
}

static void test_json_logs(void)
{
    g_autofree char *file =
        write_pipeline("jsonlog.yaml", "pipeline: {log_format: json}\n"
                                       "stages:\n"
                                       "  g: {plugin: source-generate, count: 10}\n"
                                       "  out: {plugin: sink-file, inputs: [g], path: /dev/null}\n");
    result r = run("run", file);
    g_assert_cmpint(r.status, ==, 0);
    g_auto(GStrv) lines = g_strsplit(r.err, "\n", -1);
    guint n = 0;
    for (char **l = lines; *l && **l; l++, n++) {
        g_assert_true(g_str_has_prefix(*l, "{\"ts\":\""));
        g_assert_true(g_str_has_suffix(*l, "}"));
    }
    g_assert_cmpuint(n, >=, 2);
    assert_contains(r.err, "\"stage\":\"g\",\"msg\":\"generated 10 events");
    result_clear(&r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    bin = g_getenv("ECFLOW_BIN");
    if (!bin)
        g_error("ECFLOW_BIN is not set (run through ctest)");
    tmpdir = g_dir_make_tmp("ecf-cli-XXXXXX", NULL);
    g_test_add_func("/cli/version-prints-abi", test_version);
    g_test_add_func("/cli/every-verb-has-help", test_help_on_every_verb);
    g_test_add_func("/cli/plugins-list-and-inspect", test_plugins_list_and_inspect);
    g_test_add_func("/cli/plugins-inspect-writes-the-options-reference-as-markdown", test_plugins_inspect_markdown);
    g_test_add_func("/cli/validate-reports-every-error-with-file-and-line", test_validate);
    g_test_add_func("/cli/validate-negotiates-schemas-between-stages", test_validate_negotiates_schemas);
    g_test_add_func("/cli/shipped-pipelines-validate-in-every-profile", test_shipped_pipelines_validate);
    g_test_add_func("/cli/graph-prints-dot-and-mermaid", test_graph);
    g_test_add_func("/cli/run-generates-to-file-reproducibly", test_run_to_completion);
    g_test_add_func("/cli/fan-out-and-fan-in-deliver-everything", test_fan_out_and_fan_in);
    g_test_add_func("/cli/workers-are-refused-where-they-cannot-run", test_workers_are_refused_where_they_cannot_run);
    g_test_add_func("/cli/workers-keep-each-partition-in-order-and-deliver-once",
                    test_workers_keep_each_partition_in_order);
    g_test_add_func("/cli/sink-failures-reach-the-source", test_failures_reach_the_source);
    g_test_add_func("/cli/sigterm-drains-and-loses-nothing", test_sigterm_drains);
    g_test_add_func("/cli/second-signal-exits-at-once", test_second_signal_exits_at_once);
    g_test_add_func("/cli/metrics-endpoint-serves-prometheus-health-ready", test_metrics_endpoint);
    g_test_add_func("/cli/logs-can-be-json-lines", test_json_logs);
    int rc = g_test_run();
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
    (void)!system(cmd);
    return rc;
}
