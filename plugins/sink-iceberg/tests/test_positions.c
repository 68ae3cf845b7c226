/*
 * Unit tests of what exactly-once into Iceberg rests on: which redelivered
 * Kafka records the sink must not write again (pos_classify), the positions'
 * summary form (JSON round trip, strict parsing, raising merges), and which
 * snapshot a writer's positions come back from (table_lineage_summary: the
 * newest of that writer in the current lineage, never a rolled-back one).
 */
#include "positions.h"
#include "table_commit.h"

#include <glib.h>
#include <string.h>

static void test_classify(void)
{
    pos_map *c = pos_map_new(), *lo = pos_map_new(), *hi = pos_map_new();
    pos_set(c, "t", 0, 100);
    /* nothing pending: below the committed next offset = durable */
    g_assert_cmpint(pos_classify(c, lo, hi, "t", 0, 0), ==, POS_DURABLE);
    g_assert_cmpint(pos_classify(c, lo, hi, "t", 0, 99), ==, POS_DURABLE);
    g_assert_cmpint(pos_classify(c, lo, hi, "t", 0, 100), ==, POS_WRITE);
    /* other partitions and topics are unknown: written */
    g_assert_cmpint(pos_classify(c, lo, hi, "t", 1, 5), ==, POS_WRITE);
    g_assert_cmpint(pos_classify(c, lo, hi, "u", 0, 5), ==, POS_WRITE);
    /* rows 100..149 taken since the commit */
    pos_lower(lo, "t", 0, 100);
    pos_raise(hi, "t", 0, 150);
    g_assert_cmpint(pos_classify(c, lo, hi, "t", 0, 99), ==, POS_DURABLE);
    g_assert_cmpint(pos_classify(c, lo, hi, "t", 0, 100), ==, POS_PENDING);
    g_assert_cmpint(pos_classify(c, lo, hi, "t", 0, 149), ==, POS_PENDING);
    g_assert_cmpint(pos_classify(c, lo, hi, "t", 0, 150), ==, POS_WRITE);
    /* no committed position (first commit not done yet): only the pending range */
    pos_lower(lo, "t", 2, 500);
    pos_raise(hi, "t", 2, 600);
    g_assert_cmpint(pos_classify(c, lo, hi, "t", 2, 499), ==, POS_WRITE);
    g_assert_cmpint(pos_classify(c, lo, hi, "t", 2, 500), ==, POS_PENDING);
    g_assert_cmpint(pos_classify(c, lo, hi, "t", 2, 600), ==, POS_WRITE);
    /* raise/lower keep the extreme */
    pos_lower(lo, "t", 2, 550);
    pos_raise(hi, "t", 2, 580);
    int64_t v;
    g_assert_true(pos_get(lo, "t", 2, &v));
    g_assert_cmpint(v, ==, 500);
    g_assert_true(pos_get(hi, "t", 2, &v));
    g_assert_cmpint(v, ==, 600);
    g_assert_cmpuint(pos_map_count(lo), ==, 2);
    pos_map_free(c);
    pos_map_free(lo);
    pos_map_free(hi);
}

static void test_json(void)
{
    pos_map *m = pos_map_new();
    g_autofree char *empty = pos_to_json(m);
    g_assert_cmpstr(empty, ==, "{}");
    pos_set(m, "orders", 10, 7);
    pos_set(m, "orders", 2, 9000000000LL); /* beyond 32 bits */
    pos_set(m, "clicks", 0, 0);
    g_autofree char *j = pos_to_json(m);
    /* topics sorted, partitions in numeric order (10 after 2) */
    g_assert_cmpstr(j, ==, "{\"clicks\":{\"0\":0},\"orders\":{\"2\":9000000000,\"10\":7}}");
    g_autofree char *d = pos_describe(m, 100);
    g_assert_cmpstr(d, ==, "clicks[0]@0 orders[2]@9000000000 orders[10]@7");

    pos_map *back = pos_map_new();
    g_assert_true(pos_from_json(back, j));
    g_autofree char *j2 = pos_to_json(back);
    g_assert_cmpstr(j, ==, j2);

    /* merging raises, never lowers */
    g_assert_true(pos_from_json(back, "{\"orders\":{\"10\":3,\"11\":4}}"));
    int64_t v;
    g_assert_true(pos_get(back, "orders", 10, &v));
    g_assert_cmpint(v, ==, 7);
    g_assert_true(pos_get(back, "orders", 11, &v));
    g_assert_cmpint(v, ==, 4);

    /* malformed: refused as a whole, nothing added */
    const char *bad[] = {"",
                         "[]",
                         "{\"t\":[1]}",
                         "{\"t\":{\"x\":1}}",
                         "{\"t\":{\"-1\":1}}",
                         "{\"t\":{\"0\":-5}}",
                         "{\"t\":{\"0\":\"12\"}}",
                         "{\"t\":{\"0\":1.5}}",
                         "{\"t\":{\"0\":1},\"u\":{\"0\":true}}",
                         "{\"t\\777\":{\"0\":1}}", /* json-glib: octal escape, not UTF-8 (fuzz) */
                         NULL};
    for (int i = 0; bad[i]; i++) {
        pos_map *x = pos_map_new();
        g_assert_false(pos_from_json(x, bad[i]));
        g_assert_cmpuint(pos_map_count(x), ==, 0);
        pos_map_free(x);
    }
    g_assert_false(pos_from_json(back, NULL));
    pos_map_free(m);
    pos_map_free(back);
}

/* Lineage, oldest first: 1 (a) <- 2 (b) <- 3 (a) <- 4 (b, current); 5 (a) is
 * a child of 3 that a rollback left off the lineage. */
static const char *META = "{\"format-version\":2,\"current-snapshot-id\":4,\"snapshots\":["
                          "{\"snapshot-id\":1,\"summary\":{\"operation\":\"append\",\"ecflow.writer-id\":\"a\","
                          "\"ecflow.kafka-offsets\":\"{\\\"t\\\":{\\\"0\\\":10}}\"}},"
                          "{\"snapshot-id\":2,\"parent-snapshot-id\":1,\"summary\":{\"operation\":\"append\","
                          "\"ecflow.writer-id\":\"b\",\"ecflow.kafka-offsets\":\"{\\\"u\\\":{\\\"0\\\":5}}\"}},"
                          "{\"snapshot-id\":3,\"parent-snapshot-id\":2,\"summary\":{\"operation\":\"append\","
                          "\"ecflow.writer-id\":\"a\",\"ecflow.kafka-offsets\":\"{\\\"t\\\":{\\\"0\\\":20}}\"}},"
                          "{\"snapshot-id\":5,\"parent-snapshot-id\":3,\"summary\":{\"operation\":\"append\","
                          "\"ecflow.writer-id\":\"a\",\"ecflow.kafka-offsets\":\"{\\\"t\\\":{\\\"0\\\":99}}\"}},"
                          "{\"snapshot-id\":4,\"parent-snapshot-id\":3,\"summary\":{\"operation\":\"append\","
                          "\"ecflow.writer-id\":\"b\",\"ecflow.kafka-offsets\":\"{\\\"u\\\":{\\\"0\\\":8}}\"}},"
                          "{\"snapshot-id\":6,\"summary\":{\"operation\":\"append\",\"ecflow.writer-id\":\"c\"}}"
                          "]}";

static void test_lineage(void)
{
    ice_table t;
    memset(&t, 0, sizeof t);
    char err[256];
    g_assert_true(tm_parse(&t.cat.meta, META, strlen(META), err, sizeof err));
    int64_t snap;
    const char *v = table_lineage_summary(&t, "ecflow.writer-id", "a", "ecflow.kafka-offsets", &snap);
    g_assert_cmpint(snap, ==, 3); /* not 5: rolled back, off the lineage */
    g_assert_cmpstr(v, ==, "{\"t\":{\"0\":20}}");
    v = table_lineage_summary(&t, "ecflow.writer-id", "b", "ecflow.kafka-offsets", &snap);
    g_assert_cmpint(snap, ==, 4);
    g_assert_cmpstr(v, ==, "{\"u\":{\"0\":8}}");
    /* c is not on the lineage at all; d never wrote */
    v = table_lineage_summary(&t, "ecflow.writer-id", "c", "ecflow.kafka-offsets", &snap);
    g_assert_null(v);
    g_assert_cmpint(snap, ==, -1);
    v = table_lineage_summary(&t, "ecflow.writer-id", "d", "ecflow.kafka-offsets", &snap);
    g_assert_null(v);
    g_assert_cmpint(snap, ==, -1);
    tm_clear(&t.cat.meta);

    /* an expired parent ends the walk; a table without snapshots has none */
    const char *expired = "{\"current-snapshot-id\":9,\"snapshots\":[{\"snapshot-id\":9,\"parent-snapshot-id\":8,"
                          "\"summary\":{\"ecflow.writer-id\":\"b\"}}]}";
    g_assert_true(tm_parse(&t.cat.meta, expired, strlen(expired), err, sizeof err));
    v = table_lineage_summary(&t, "ecflow.writer-id", "a", "ecflow.kafka-offsets", &snap);
    g_assert_null(v);
    g_assert_cmpint(snap, ==, -1);
    /* the writer's newest snapshot without positions: no positions (not an older one's) */
    v = table_lineage_summary(&t, "ecflow.writer-id", "b", "ecflow.kafka-offsets", &snap);
    g_assert_null(v);
    g_assert_cmpint(snap, ==, 9);
    tm_clear(&t.cat.meta);
    const char *none = "{\"current-snapshot-id\":null}";
    g_assert_true(tm_parse(&t.cat.meta, none, strlen(none), err, sizeof err));
    v = table_lineage_summary(&t, "ecflow.writer-id", "a", "ecflow.kafka-offsets", &snap);
    g_assert_null(v);
    g_assert_cmpint(snap, ==, -1);
    tm_clear(&t.cat.meta);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/positions/classify-durable-pending-new", test_classify);
    g_test_add_func("/positions/json-round-trip-strict-and-raising", test_json);
    g_test_add_func("/positions/lineage-newest-of-this-writer", test_lineage);
    return g_test_run();
}
