#include "ack.h"
#include "batch.h"
#include "clock.h"
#include "metrics.h"

#include <string.h>

typedef struct {
    int calls;
    ecf_status outcome;
    char reason[128];
    guint64 tag;
} settled;

static void on_settle(void *user, uint64_t tag, ecf_status outcome, const char *reason)
{
    settled *s = user;
    s->calls++;
    s->outcome = outcome;
    s->tag = tag;
    g_strlcpy(s->reason, reason ? reason : "", sizeof s->reason);
}

static void test_settles_once_on_last_reference(void)
{
    ecf_ack_pool *pool = ecf_ack_pool_new();
    settled s = {0};
    ecf_token *t = ecf_token_create(pool, on_settle, &s, 42, NULL);
    ecf_token_ref(t);
    ecf_token_unref(t, ECF_VERDICT_NONE, NULL); /* the creator lets go */
    g_assert_cmpint(s.calls, ==, 0);
    g_assert_cmpint(ecf_ack_pool_outstanding(pool), ==, 1);
    ecf_token_unref(t, ECF_OK, NULL);
    g_assert_cmpint(s.calls, ==, 1);
    g_assert_cmpint(s.outcome, ==, ECF_OK);
    g_assert_cmpuint(s.tag, ==, 42);
    g_assert_cmpint(ecf_ack_pool_outstanding(pool), ==, 0);
    ecf_ack_pool_free(pool);
}

static void test_fan_out_settles_after_all_sinks(void)
{
    ecf_ack_pool *pool = ecf_ack_pool_new();
    ecf_batch_pool *batches = ecf_batch_pool_new();
    settled s = {0};
    ecf_token *t = ecf_token_create(pool, on_settle, &s, 1, NULL);
    ecf_batch *b = ecf_batch_get(batches);
    ecf_batch_append(b, &(ecf_message_init){.payload = "{}", .payload_len = 2, .token = t});
    ecf_token_unref(t, ECF_VERDICT_NONE, NULL);
    ecf_batch *copy = ecf_batch_clone(b); /* a second sink */

    ecf_message *m1 = ecf_batch_at(b, 0), *m2 = ecf_batch_at(copy, 0);
    ecf_token_unref(m1->token, ECF_OK, NULL);
    m1->token = NULL;
    ecf_batch_put(b);
    g_assert_cmpint(s.calls, ==, 0); /* the second sink has not answered */
    ecf_token_unref(m2->token, ECF_OK, NULL);
    m2->token = NULL;
    g_assert_cmpint(s.calls, ==, 1);
    g_assert_cmpint(s.outcome, ==, ECF_OK);
    ecf_batch_put(copy);
    g_assert_cmpint(s.calls, ==, 1);
    ecf_batch_pool_free(batches);
    ecf_ack_pool_free(pool);
}

static void test_any_failure_wins(void)
{
    ecf_ack_pool *pool = ecf_ack_pool_new();
    settled s = {0};
    ecf_token *t = ecf_token_create(pool, on_settle, &s, 0, NULL);
    ecf_token_ref(t);
    ecf_token_ref(t);
    ecf_token_unref(t, ECF_OK, NULL);
    ecf_token_unref(t, ECF_ERR_UNAVAILABLE, "broker down");
    ecf_token_unref(t, ECF_ERR_IO, "second failure is not the reason");
    g_assert_cmpint(s.calls, ==, 1);
    g_assert_cmpint(s.outcome, ==, ECF_ERR_UNAVAILABLE);
    g_assert_cmpstr(s.reason, ==, "broker down");
    ecf_ack_pool_free(pool);
}

static void test_no_verdict_is_dropped(void)
{
    ecf_ack_pool *pool = ecf_ack_pool_new();
    ecf_batch_pool *batches = ecf_batch_pool_new();
    settled s = {0};
    ecf_token *t = ecf_token_create(pool, on_settle, &s, 0, NULL);
    ecf_batch *b = ecf_batch_get(batches);
    ecf_batch_append(b, &(ecf_message_init){.payload = "x", .payload_len = 1, .token = t});
    ecf_token_unref(t, ECF_VERDICT_NONE, NULL);
    ecf_batch_put(b); /* released by a filter: nobody said durable */
    g_assert_cmpint(s.calls, ==, 1);
    g_assert_cmpint(s.outcome, ==, ECF_ERR_DROPPED);
    ecf_batch_pool_free(batches);
    ecf_ack_pool_free(pool);
}

static gint64 fake_mono;
static gint64 fake_now(void *u) { return 1700000000000000; }
static gint64 fake_monotonic(void *u) { return fake_mono; }

static void test_latency_uses_host_clock(void)
{
    ecf_clock fake = {fake_now, fake_monotonic, NULL};
    ecf_clock_set(&fake);
    fake_mono = 1000;
    ecf_metrics *reg = ecf_metrics_new("t");
    ecf_metric *lat = ecf_metrics_get(reg, ECF_METRIC_HISTOGRAM, "ack_latency_seconds", "", "src");
    ecf_ack_pool *pool = ecf_ack_pool_new();
    /* One token in 16 is timed: exactly one of any 16 in a row. */
    ecf_token *t[16];
    for (int i = 0; i < 16; i++)
        t[i] = ecf_token_create(pool, NULL, NULL, 0, lat);
    fake_mono += 250000; /* 250 ms pass, without sleeping */
    for (int i = 0; i < 16; i++)
        ecf_token_unref(t[i], ECF_OK, NULL);
    g_assert_cmpuint(ecf_metric_count(lat), ==, 1);
    g_assert_cmpfloat_with_epsilon(ecf_metric_value(lat), 0.25, 1e-9);
    g_autofree char *text = ecf_metrics_render(reg);
    g_assert_nonnull(strstr(text, "ecflow_ack_latency_seconds_bucket{pipeline=\"t\",stage=\"src\",le=\"0.25\"} 1"));
    ecf_ack_pool_free(pool);
    ecf_metrics_free(reg);
    ecf_clock_set(NULL);
}

static void test_pool_reuses_tokens(void)
{
    ecf_ack_pool *pool = ecf_ack_pool_new();
    for (int i = 0; i < 10000; i++)
        ecf_token_unref(ecf_token_create(pool, NULL, NULL, 0, NULL), ECF_OK, NULL);
    g_assert_cmpint(ecf_ack_pool_outstanding(pool), ==, 0);
    g_assert_true(ecf_ack_pool_wait_idle(pool, g_get_monotonic_time()));
    ecf_ack_pool_free(pool);
}

static void test_payload_is_padded(void)
{
    ecf_batch_pool *batches = ecf_batch_pool_new();
    ecf_batch *b = ecf_batch_get(batches);
    for (int i = 0; i < 3000; i++) /* crosses several arena chunks */
        ecf_batch_append(b, &(ecf_message_init){.payload = "{\"a\":1}", .payload_len = 7, .key = "k", .key_len = 1});
    for (guint32 i = 0; i < ecf_batch_size(b); i++) {
        ecf_message *m = ecf_batch_at(b, i);
        g_assert_cmpmem(m->payload, m->payload_len, "{\"a\":1}", 7);
        for (int p = 0; p < ECF_PAYLOAD_PADDING; p++)
            g_assert_cmpint(m->payload[m->payload_len + p], ==, 0);
        g_assert_cmpmem(m->key, m->key_len, "k", 1);
    }
    g_assert_cmpuint(ecf_batch_payload_bytes(b), ==, 3000 * 7);
    ecf_batch_put(b);
    ecf_batch_pool_free(batches);
}

static void test_headers_are_copied_and_inherited(void)
{
    ecf_batch_pool *batches = ecf_batch_pool_new();
    ecf_batch *b = ecf_batch_get(batches);
    char name[] = "reason", value[] = "field 'price': expected decimal";
    ecf_header h[] = {{name, (const uint8_t *)value, (uint32_t)strlen(value)}, {"empty", NULL, 0}};
    ecf_batch_append(b, &(ecf_message_init){.payload = "x", .payload_len = 1, .headers = h, .n_headers = 2});
    name[0] = value[0] = '!'; /* the batch holds its own copy */
    ecf_message *m = ecf_batch_at(b, 0);
    g_assert_cmpuint(m->n_headers, ==, 2);
    g_assert_cmpuint((guintptr)m->headers % 8, ==, 0);
    g_assert_cmpstr(m->headers[0].name, ==, "reason");
    g_assert_cmpmem(m->headers[0].value, m->headers[0].value_len, "field 'price': expected decimal", 31);
    g_assert_cmpuint(m->headers[1].value_len, ==, 0);
    ecf_batch_append(b, &(ecf_message_init){.payload = "y", .payload_len = 1, .parent = ecf_batch_at(b, 0)});
    g_assert_cmpuint(ecf_batch_at(b, 1)->n_headers, ==, 2);
    ecf_batch *copy = ecf_batch_clone(b);
    g_assert_cmpstr(ecf_batch_at(copy, 1)->headers[0].name, ==, "reason");
    ecf_batch_put(b);
    ecf_batch_put(copy);
    ecf_batch_pool_free(batches);
}

static int releases;
static void count_release(struct ArrowArray *a)
{
    releases++;
    a->release = NULL;
}

static void test_records_are_shared_and_released_once(void)
{
    ecf_batch_pool *batches = ecf_batch_pool_new();
    ecf_batch *b = ecf_batch_get(batches);
    ecf_batch_append(b, &(ecf_message_init){.payload = NULL, .key = "k", .key_len = 1});
    ecf_batch_append(b, &(ecf_message_init){.payload = NULL});
    g_assert_null(ecf_batch_at(b, 0)->payload);
    struct ArrowArray wrong = {.length = 3, .release = count_release};
    g_assert_cmpint(ecf_batch_attach_records(b, &wrong), ==, ECF_ERR_INVALID);
    g_assert_nonnull(wrong.release); /* refused: still the caller's */
    struct ArrowArray rows = {.length = 2, .release = count_release};
    g_assert_cmpint(ecf_batch_attach_records(b, &rows), ==, ECF_OK);
    g_assert_null(rows.release); /* moved */
    ecf_batch *copy = ecf_batch_clone(b);
    g_assert_true(ecf_batch_get_records(copy) == ecf_batch_get_records(b));
    ecf_batch_put(b);
    g_assert_cmpint(releases, ==, 0);
    ecf_batch_put(copy);
    g_assert_cmpint(releases, ==, 1);
    ecf_batch_pool_free(batches);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/ack/settles-once-when-the-last-reference-drops", test_settles_once_on_last_reference);
    g_test_add_func("/ack/fan-out-settles-after-all-sinks", test_fan_out_settles_after_all_sinks);
    g_test_add_func("/ack/the-first-failure-wins-over-acks", test_any_failure_wins);
    g_test_add_func("/ack/no-verdict-from-anyone-means-dropped", test_no_verdict_is_dropped);
    g_test_add_func("/ack/latency-is-measured-with-the-host-clock", test_latency_uses_host_clock);
    g_test_add_func("/ack/pool-reuses-tokens", test_pool_reuses_tokens);
    g_test_add_func("/batch/payloads-are-padded-for-simd-parsers", test_payload_is_padded);
    g_test_add_func("/batch/headers-are-copied-and-inherited-by-derived-messages",
                    test_headers_are_copied_and_inherited);
    g_test_add_func("/batch/records-are-shared-by-copies-and-released-once", test_records_are_shared_and_released_once);
    return g_test_run();
}
