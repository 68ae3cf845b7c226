/* /status.json, bucket bounds, structured log events and `top`'s view, without a running pipeline. */
#include "log.h"
#include "metrics.h"
#include "status.h"
#include "top.h"

#include <json-glib/json-glib.h>
#include <string.h>

static JsonObject *find_metric(JsonArray *metrics, const char *name, const char *stage)
{
    for (guint i = 0; i < json_array_get_length(metrics); i++) {
        JsonObject *m = json_array_get_object_element(metrics, i);
        if (strcmp(json_object_get_string_member(m, "name"), name) == 0 &&
            g_strcmp0(json_object_get_string_member_with_default(m, "stage", NULL), stage) == 0)
            return m;
    }
    return NULL;
}

static void test_status_json_has_every_series_with_its_value(void)
{
    ecf_metrics *reg = ecf_metrics_new("p");
    ecf_metric *c = ecf_metrics_get(reg, ECF_METRIC_COUNTER, "events_in_total", "h", "a");
    ecf_metric *g = ecf_metrics_get(reg, ECF_METRIC_GAUGE, "lag{topic=\"t\\\"q\",partition=\"0\"}", "h", "a");
    ecf_metric *h = ecf_metrics_get(reg, ECF_METRIC_HISTOGRAM, "wait_seconds", "h", NULL);
    ecf_metric_do_add(c, 41.5);
    ecf_metric_do_set(g, 7);
    ecf_metric_do_observe(h, 0.3);
    ecf_metric_do_observe(h, 100);
    ecf_metrics_set_topology(reg, g_strdup("[{\"name\":\"a\"}]"));
    g_autofree char *doc = ecf_status_json(reg);
    g_autoptr(JsonParser) parser = json_parser_new();
    g_assert_true(json_parser_load_from_data(parser, doc, -1, NULL));
    JsonObject *root = json_node_get_object(json_parser_get_root(parser));
    g_assert_cmpint(json_object_get_int_member(root, "version"), ==, ECF_STATUS_VERSION);
    g_assert_cmpstr(json_object_get_string_member(root, "pipeline"), ==, "p");
    g_assert_cmpuint(json_array_get_length(json_object_get_array_member(root, "stages")), ==, 1);
    JsonArray *metrics = json_object_get_array_member(root, "metrics");
    g_assert_cmpuint(json_array_get_length(metrics), ==, 3);

    JsonObject *jc = find_metric(metrics, "ecflow_events_in_total", "a");
    g_assert_cmpstr(json_object_get_string_member(jc, "type"), ==, "counter");
    g_assert_cmpfloat(json_object_get_double_member(jc, "value"), ==, 41.5);
    JsonObject *jg = find_metric(metrics, "ecflow_lag", "a");
    JsonObject *labels = json_object_get_object_member(jg, "labels");
    g_assert_cmpstr(json_object_get_string_member(labels, "topic"), ==, "t\"q"); /* unescaped */
    g_assert_cmpstr(json_object_get_string_member(labels, "partition"), ==, "0");
    JsonObject *jh = find_metric(metrics, "ecflow_wait_seconds", NULL);
    g_assert_cmpint(json_object_get_int_member(jh, "count"), ==, 2);
    g_assert_cmpfloat(json_object_get_double_member(jh, "sum"), ==, 100.3);
    JsonArray *buckets = json_object_get_array_member(jh, "buckets");
    JsonArray *last = json_array_get_array_element(buckets, json_array_get_length(buckets) - 1);
    g_assert_cmpfloat(json_array_get_double_element(last, 0), ==, 60);
    g_assert_cmpint(json_array_get_int_element(last, 1), ==, 1); /* 100 s is only in +Inf, i.e. count */
    ecf_metrics_free(reg);
}

static void test_buckets_replace_the_defaults_before_the_first_observation(void)
{
    ecf_metrics *reg = ecf_metrics_new("p");
    ecf_metric *h = ecf_metrics_get(reg, ECF_METRIC_HISTOGRAM, "fresh_seconds", "h", "s");
    ecf_metric *c = ecf_metrics_get(reg, ECF_METRIC_COUNTER, "n_total", "h", "s");
    const double bounds[] = {0.5, 0.9, 1.0, 1.1};
    const double unordered[] = {1, 0.5};
    g_autoptr(GError) err = NULL;
    g_assert_false(ecf_metrics_set_buckets(reg, c, bounds, 4, &err));
    g_clear_error(&err);
    g_assert_false(ecf_metrics_set_buckets(reg, h, unordered, 2, &err));
    g_assert_nonnull(strstr(err->message, "increasing"));
    g_clear_error(&err);
    g_assert_true(ecf_metrics_set_buckets(reg, h, bounds, 4, &err));
    ecf_metric_do_observe(h, 0.95);
    g_autofree char *text = ecf_metrics_render(reg);
    g_assert_nonnull(strstr(text, "ecflow_fresh_seconds_bucket{pipeline=\"p\",stage=\"s\",le=\"0.9\"} 0\n"));
    g_assert_nonnull(strstr(text, "ecflow_fresh_seconds_bucket{pipeline=\"p\",stage=\"s\",le=\"1\"} 1\n"));
    g_assert_null(strstr(text, "le=\"2.5\""));
    g_assert_false(ecf_metrics_set_buckets(reg, h, bounds, 4, &err)); /* observed already */
    ecf_metrics_free(reg);
}

static void test_event_json_line_has_typed_fields(void)
{
    g_autoptr(GString) line = g_string_new(NULL);
    const char *fields[] = {"msg", "committed snapshot 9", "table", "ns.t", "rows", "12",    "duration_ms",
                            "3.5", "snapshot_id",          "-7",    "id",   "0x10", "level", "spoof",
                            NULL};
    ecf_log_event_line(line, ECF_LOG_JSON, "T", "lake", ECF_LOG_INFO, "commit", fields, 2);
    g_assert_cmpstr(line->str, ==,
                    "{\"ts\":\"T\",\"level\":\"info\",\"stage\":\"lake\",\"event\":\"commit\",\"table\":\"ns.t\","
                    "\"rows\":12,\"duration_ms\":3.5,\"snapshot_id\":-7,\"id\":\"0x10\",\"suppressed\":2,"
                    "\"msg\":\"committed snapshot 9\"}\n");
    g_string_truncate(line, 0);
    const char *spaced[] = {"why", "a b", NULL};
    ecf_log_event_line(line, ECF_LOG_TEXT, "T", NULL, ECF_LOG_WARN, "broker_down", spaced, 0);
    g_assert_cmpstr(line->str, ==, "T warn  event=broker_down why=\"a b\"\n");
}

static void test_events_are_rate_limited_per_stage_and_event(void)
{
    guint64 suppressed = 99;
    gint64 t = 1000 * G_USEC_PER_SEC;
    for (int i = 0; i < ECF_LOG_EVENT_BURST; i++)
        g_assert_true(ecf_log_event_admit("s", "flap", t, &suppressed));
    g_assert_cmpuint(suppressed, ==, 0);
    g_assert_false(ecf_log_event_admit("s", "flap", t + 1, &suppressed));
    g_assert_false(ecf_log_event_admit("s", "flap", t + 2, &suppressed));
    g_assert_true(ecf_log_event_admit("s", "other", t + 2, &suppressed)); /* its own budget */
    g_assert_true(ecf_log_event_admit("s2", "flap", t + 2, &suppressed));
    g_assert_true(ecf_log_event_admit("s", "flap", t + ECF_LOG_EVENT_WINDOW_US, &suppressed));
    g_assert_cmpuint(suppressed, ==, 2); /* what the window left out */
}

/* Two readings one second apart: rates, p95 from the window's buckets, ages. */
static void test_top_view_from_two_documents(void)
{
    const char *stages = "\"stages\":[{\"name\":\"src\",\"plugin\":\"source-http\",\"kind\":\"source\",\"inputs\":[]},"
                         "{\"name\":\"lake\",\"plugin\":\"sink-iceberg\",\"kind\":\"sink\",\"inputs\":[{\"stage\":"
                         "\"src\",\"port\":null}]}]";
    g_autofree char *a = g_strdup_printf(
        "{\"version\":1,\"pipeline\":\"p\",\"time\":100,\"uptime_seconds\":5,%s,\"metrics\":["
        "{\"name\":\"ecflow_events_out_total\",\"stage\":\"src\",\"labels\":{},\"type\":\"counter\",\"value\":1000},"
        "{\"name\":\"ecflow_events_in_total\",\"stage\":\"lake\",\"labels\":{},\"type\":\"counter\",\"value\":900},"
        "{\"name\":\"ecflow_ring_fill_ratio\",\"stage\":\"lake\",\"labels\":{},\"type\":\"gauge\",\"value\":0.95},"
        "{\"name\":\"ecflow_iceberg_commits_total\",\"stage\":\"lake\",\"labels\":{},\"type\":\"counter\",\"value\":3},"
        "{\"name\":\"ecflow_iceberg_freshness_seconds\",\"stage\":\"lake\",\"labels\":{},\"type\":\"histogram\","
        "\"count\":10,\"sum\":5,\"buckets\":[[0.5,10],[1,10],[2,10]]}]}",
        stages);
    g_autofree char *b = g_strdup_printf(
        "{\"version\":1,\"pipeline\":\"p\",\"time\":101,\"uptime_seconds\":6,%s,\"metrics\":["
        "{\"name\":\"ecflow_events_out_total\",\"stage\":\"src\",\"labels\":{},\"type\":\"counter\",\"value\":3500},"
        "{\"name\":\"ecflow_events_in_total\",\"stage\":\"lake\",\"labels\":{},\"type\":\"counter\",\"value\":1900},"
        "{\"name\":\"ecflow_ring_fill_ratio\",\"stage\":\"lake\",\"labels\":{},\"type\":\"gauge\",\"value\":0.95},"
        "{\"name\":\"ecflow_iceberg_commits_total\",\"stage\":\"lake\",\"labels\":{},\"type\":\"counter\",\"value\":4},"
        "{\"name\":\"ecflow_iceberg_last_commit_timestamp_seconds\",\"stage\":\"lake\",\"labels\":{},\"type\":"
        "\"gauge\",\"value\":99},"
        "{\"name\":\"ecflow_iceberg_freshness_seconds\",\"stage\":\"lake\",\"labels\":{},\"type\":\"histogram\","
        "\"count\":20,\"sum\":20,\"buckets\":[[0.5,10],[1,10],[2,20]]}]}",
        stages);
    g_autoptr(GError) err = NULL;
    g_autofree char *text = ecf_top_render(a, b, "http://x:1", ECF_TOP_SORT_IN, FALSE, 0, &err);
    g_assert_no_error(err);
    g_assert_nonnull(strstr(text, "src              source    source-http                  -      2500"));
    g_assert_nonnull(strstr(text, "lake             sink      sink-iceberg              1000         -         0    "
                                  "95%  backpressure"));
    g_assert_true(strstr(text, "lake ") < strstr(text, "src ")); /* sorted by in/s: a source has none */
    g_assert_nonnull(strstr(text, "lake: 4 commits (1/s)"));
    /* the window's 10 observations all fell in (1, 2]: p95 = 1 + 0.95 (a hair under 1.95 as a double) */
    if (g_test_verbose())
        g_printerr("%s", text);
    g_assert_nonnull(strstr(text, "last commit 2.0s ago, newest event - old, p95 1.9s, p99 2.0s"));
    g_free(ecf_top_render(NULL, "{\"x\":1}", NULL, ECF_TOP_SORT_DAG, FALSE, 0, &err));
    g_assert_error(err, ECF_ERROR, ECF_ERR_INVALID);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/status/json-has-every-series-with-its-value", test_status_json_has_every_series_with_its_value);
    g_test_add_func("/status/buckets-replace-the-defaults-before-the-first-observation",
                    test_buckets_replace_the_defaults_before_the_first_observation);
    g_test_add_func("/status/event-json-line-has-typed-fields", test_event_json_line_has_typed_fields);
    g_test_add_func("/status/events-are-rate-limited-per-stage-and-event",
                    test_events_are_rate_limited_per_stage_and_event);
    g_test_add_func("/status/top-view-from-two-documents", test_top_view_from_two_documents);
    return g_test_run();
}
