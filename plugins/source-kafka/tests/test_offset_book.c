/*
 * The offset book decides which offsets source-kafka may commit: only the
 * contiguous prefix every sink settled. No broker needed.
 */
#include "source_kafka.h"

#include <glib.h>

typedef struct {
    offset_book *b;
    uint32_t p;
} fixture;

static void setup(fixture *f, gconstpointer data)
{
    f->b = book_new();
    f->p = book_part_index(f->b, "events", 3);
    g_assert_cmpuint(f->p, !=, UINT32_MAX);
    book_assign(f->b, f->p);
}

static void teardown(fixture *f, gconstpointer data) { book_free(f->b); }

/* Tracks offsets first..first+n-1; tags land in tags[0..n-1]. */
static void track_range(fixture *f, int64_t first, int n, uint64_t *tags)
{
    for (int i = 0; i < n; i++)
        tags[i] = book_track(f->b, f->p, first + i);
}

static void test_prefix_stops_at_first_unacked(fixture *f, gconstpointer data)
{
    uint64_t t[10];
    track_range(f, 0, 10, t);
    g_assert_cmpint(book_done(f->b, f->p), ==, -1);
    int acked[] = {0, 1, 2, 5, 6, 9};
    for (size_t i = 0; i < G_N_ELEMENTS(acked); i++)
        g_assert_cmpint(book_settle(f->b, t[acked[i]], ECF_OK, NULL, NULL), ==, SETTLE_DONE);
    g_assert_cmpint(book_done(f->b, f->p), ==, 3); /* next to read: 3 */
    book_settle(f->b, t[4], ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 3);
    book_settle(f->b, t[3], ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 7);
    book_settle(f->b, t[7], ECF_OK, NULL, NULL);
    book_settle(f->b, t[8], ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 10);
    g_assert_cmpint(book_inflight(f->b, f->p), ==, 0);
}

static void test_dropped_counts_as_done(fixture *f, gconstpointer data)
{
    uint64_t t[3];
    track_range(f, 100, 3, t);
    book_settle(f->b, t[0], ECF_OK, NULL, NULL);
    g_assert_cmpint(book_settle(f->b, t[1], ECF_ERR_DROPPED, NULL, NULL), ==, SETTLE_DONE);
    book_settle(f->b, t[2], ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 103);
}

static void test_failure_blocks_the_prefix(fixture *f, gconstpointer data)
{
    uint64_t t[6];
    track_range(f, 0, 6, t);
    uint32_t part = 99;
    book_slot slot = {.first = -1};
    for (int i = 0; i < 6; i++) {
        settle_result r = book_settle(f->b, t[i], i == 3 ? ECF_ERR_UNAVAILABLE : ECF_OK, i == 3 ? &part : NULL,
                                      i == 3 ? &slot : NULL);
        g_assert_cmpint(r, ==, i == 3 ? SETTLE_FAILED : SETTLE_DONE);
    }
    g_assert_cmpuint(part, ==, f->p);
    g_assert_cmpint(slot.first, ==, 3);
    g_assert_cmpint(book_done(f->b, f->p), ==, 3);
    g_assert_cmpint(book_failed_at(f->b, f->p), ==, 3);
}

static void test_stopped_blocks_without_policy(fixture *f, gconstpointer data)
{
    uint64_t t[2];
    track_range(f, 0, 2, t);
    g_assert_cmpint(book_settle(f->b, t[0], ECF_ERR_STOPPED, NULL, NULL), ==, SETTLE_STOPPED);
    book_settle(f->b, t[1], ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, -1);
    g_assert_cmpint(book_failed_at(f->b, f->p), ==, -1);
}

static void test_gaps_in_offsets_are_passed(fixture *f, gconstpointer data)
{
    /* Transaction markers and compaction leave holes in a partition. */
    int64_t offsets[] = {10, 11, 15, 20};
    uint64_t t[4];
    for (int i = 0; i < 4; i++)
        t[i] = book_track(f->b, f->p, offsets[i]);
    for (int i = 3; i >= 0; i--)
        book_settle(f->b, t[i], ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 21);
}

static void test_late_acks_after_release_are_ignored(fixture *f, gconstpointer data)
{
    uint64_t t[4];
    track_range(f, 0, 4, t);
    book_settle(f->b, t[0], ECF_OK, NULL, NULL);
    book_release(f->b, f->p);
    g_assert_cmpint(book_settle(f->b, t[1], ECF_OK, NULL, NULL), ==, SETTLE_STALE);
    g_assert_cmpint(book_settle(f->b, t[2], ECF_ERR_IO, NULL, NULL), ==, SETTLE_STALE);
    g_assert_cmpint(book_done(f->b, f->p), ==, -1);

    /* Assigned again: a fresh window; the old tags still mean nothing. */
    book_assign(f->b, f->p);
    uint64_t u = book_track(f->b, f->p, 1);
    g_assert_cmpint(book_settle(f->b, t[3], ECF_OK, NULL, NULL), ==, SETTLE_STALE);
    g_assert_cmpint(book_done(f->b, f->p), ==, -1);
    book_settle(f->b, u, ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 2);
}

static void test_rewind_redelivers_from_the_failure(fixture *f, gconstpointer data)
{
    uint64_t t[10];
    track_range(f, 0, 10, t);
    for (int i = 0; i < 10; i++)
        book_settle(f->b, t[i], i == 3 ? ECF_ERR_IO : ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 3);

    book_rewind(f->b, f->p, 3);
    g_assert_cmpint(book_failed_at(f->b, f->p), ==, -1);
    g_assert_cmpint(book_done(f->b, f->p), ==, 3);

    uint64_t u[7];
    track_range(f, 3, 7, u); /* the redelivery */
    for (int i = 0; i < 6; i++)
        book_settle(f->b, u[i], ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 9);
    book_settle(f->b, u[6], ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 10);
}

static void test_rewind_ignores_acks_of_superseded_slots(fixture *f, gconstpointer data)
{
    uint64_t t[5];
    track_range(f, 0, 5, t);
    book_settle(f->b, t[0], ECF_OK, NULL, NULL);
    book_settle(f->b, t[1], ECF_ERR_IO, NULL, NULL);
    book_rewind(f->b, f->p, 1); /* 2..4 are still in flight downstream */
    g_assert_cmpint(book_inflight(f->b, f->p), ==, 0);
    g_assert_cmpint(book_settle(f->b, t[3], ECF_OK, NULL, NULL), ==, SETTLE_STALE);
    uint64_t u = book_track(f->b, f->p, 1);
    g_assert_cmpint(book_settle(f->b, t[2], ECF_OK, NULL, NULL), ==, SETTLE_STALE);
    g_assert_cmpint(book_done(f->b, f->p), ==, 1);
    book_settle(f->b, u, ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 2);
}

static void test_redelivery_past_the_rewind_never_commits_past_it(fixture *f, gconstpointer data)
{
    uint64_t t[3];
    track_range(f, 0, 3, t);
    book_settle(f->b, t[0], ECF_OK, NULL, NULL);
    book_settle(f->b, t[1], ECF_ERR_IO, NULL, NULL);
    book_rewind(f->b, f->p, 1);
    /* A seek that did not take: the next record is beyond the rewind point. */
    uint64_t u = book_track(f->b, f->p, 7);
    book_settle(f->b, u, ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 1);
}

static void test_second_rewind_keeps_the_lower_point(fixture *f, gconstpointer data)
{
    uint64_t t[10];
    track_range(f, 0, 10, t);
    book_settle(f->b, t[0], ECF_OK, NULL, NULL);
    /* Two abandoned batches of one partition, rewound one after the other. */
    g_assert_cmpint(book_rewind(f->b, f->p, 2), ==, 2);
    g_assert_cmpint(book_rewind(f->b, f->p, 6), ==, 2);
    uint64_t u = book_track(f->b, f->p, 6); /* redelivery that skipped 2..5 */
    book_settle(f->b, u, ECF_OK, NULL, NULL);
    book_settle(f->b, t[1], ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 2);
}

static void test_abandoned_message_blocks(fixture *f, gconstpointer data)
{
    uint64_t t[3];
    track_range(f, 0, 3, t);
    book_block(f->b, f->p, 1);
    book_settle(f->b, t[0], ECF_OK, NULL, NULL);
    /* Releasing an unemitted batch settles as "dropped": must not count. */
    g_assert_cmpint(book_settle(f->b, t[1], ECF_ERR_DROPPED, NULL, NULL), ==, SETTLE_STALE);
    book_settle(f->b, t[2], ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 1);
    g_assert_cmpint(book_inflight(f->b, f->p), ==, 0);
}

static void test_window_grows_and_keeps_order(fixture *f, gconstpointer data)
{
    enum { N = 5000 };
    uint64_t *t = g_new(uint64_t, N);
    track_range(f, 0, N, t);
    for (int i = N - 1; i >= 1; i--)
        book_settle(f->b, t[i], ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, -1);
    /* Grows again while the head is far from slot 0. */
    book_settle(f->b, t[0], ECF_OK, NULL, NULL);
    uint64_t *u = g_new(uint64_t, N);
    track_range(f, N, N, u);
    for (int i = 0; i < N; i++)
        book_settle(f->b, u[i], ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 2 * N);
    g_free(t);
    g_free(u);
}

static void test_partitions_are_independent(fixture *f, gconstpointer data)
{
    uint32_t q = book_part_index(f->b, "events", 0);
    uint32_t r = book_part_index(f->b, "other", 3);
    g_assert_cmpuint(q, !=, f->p);
    g_assert_cmpuint(r, !=, f->p);
    g_assert_cmpuint(book_find(f->b, "events", 3), ==, f->p);
    g_assert_cmpuint(book_find(f->b, "events", 7), ==, UINT32_MAX);
    g_assert_cmpstr(book_get(f->b, r)->topic, ==, "other");
    book_assign(f->b, q);
    uint64_t a = book_track(f->b, f->p, 5), b = book_track(f->b, q, 5);
    book_settle(f->b, b, ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, q), ==, 6);
    g_assert_cmpint(book_done(f->b, f->p), ==, -1);
    book_settle(f->b, a, ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 6);
}

typedef struct {
    offset_book *b;
    uint64_t *tags;
    int from, to;
} settler;

static gpointer settle_range(gpointer data)
{
    settler *s = data;
    for (int i = s->from; i < s->to; i++)
        book_settle(s->b, s->tags[i], ECF_OK, NULL, NULL);
    return NULL;
}

static void test_concurrent_settles_reach_the_end(fixture *f, gconstpointer data)
{
    enum { N = 200000, THREADS = 4 };
    uint64_t *t = g_new(uint64_t, N);
    track_range(f, 0, N, t);
    GThread *th[THREADS];
    settler s[THREADS];
    for (int i = 0; i < THREADS; i++) {
        s[i] = (settler){f->b, t, i * (N / THREADS), (i + 1) * (N / THREADS)};
        th[i] = g_thread_new("settler", settle_range, &s[i]);
    }
    for (int i = 0; i < THREADS; i++)
        g_thread_join(th[i]);
    g_assert_cmpint(book_done(f->b, f->p), ==, N);
    g_free(t);
}

static gpointer settle_later(gpointer data)
{
    settler *s = data;
    g_usleep(50 * 1000);
    return settle_range(s);
}

static void test_wait_returns_once_acks_arrive(fixture *f, gconstpointer data)
{
    uint64_t t[8];
    track_range(f, 0, 8, t);
    settler s = {f->b, t, 0, 8};
    GThread *th = g_thread_new("late", settle_later, &s);
    int64_t left = book_wait_settled(f->b, &f->p, 1, 10 * G_USEC_PER_SEC);
    g_thread_join(th);
    g_assert_cmpint(left, ==, 0);
    g_assert_cmpint(book_done(f->b, f->p), ==, 8);
}

static void test_wait_gives_up_at_the_timeout(fixture *f, gconstpointer data)
{
    uint64_t t[2];
    track_range(f, 0, 2, t);
    book_settle(f->b, t[0], ECF_OK, NULL, NULL);
    int64_t left = book_wait_settled(f->b, &f->p, 1, 20 * 1000);
    g_assert_cmpint(left, ==, 1);
    g_assert_cmpint(book_done(f->b, f->p), ==, 1);
}

/* Records read one after another share a slot (and a token): the run is
 * done when its one settle comes, and done means past its last offset. */
static void test_a_run_settles_as_one(fixture *f, gconstpointer data)
{
    uint64_t a = book_track(f->b, f->p, 10);
    g_assert_true(book_extend(f->b, a, 11));
    g_assert_true(book_extend(f->b, a, 14));  /* offsets may skip */
    g_assert_false(book_extend(f->b, a, 14)); /* never backwards */
    uint64_t b = book_track(f->b, f->p, 15);
    g_assert_false(book_extend(f->b, a, 16)); /* only the newest slot grows */
    g_assert_true(book_extend(f->b, b, 16));
    g_assert_cmpint(book_inflight(f->b, f->p), ==, 2);
    book_slot run;
    g_assert_cmpint(book_settle(f->b, b, ECF_OK, NULL, &run), ==, SETTLE_DONE);
    g_assert_cmpuint(run.records, ==, 2);
    g_assert_cmpint(book_done(f->b, f->p), ==, -1); /* the first run is still out */
    g_assert_cmpint(book_settle(f->b, a, ECF_OK, NULL, &run), ==, SETTLE_DONE);
    g_assert_cmpuint(run.records, ==, 3);
    g_assert_cmpint(run.first, ==, 10);
    g_assert_cmpint(run.last, ==, 14);
    g_assert_cmpint(book_done(f->b, f->p), ==, 17);
}

/* A failure in a run sends the whole run again, from its first record. */
static void test_a_failed_run_is_redelivered_from_its_first(fixture *f, gconstpointer data)
{
    uint64_t a = book_track(f->b, f->p, 0);
    g_assert_true(book_extend(f->b, a, 1));
    uint64_t b = book_track(f->b, f->p, 2);
    for (int64_t o = 3; o < 6; o++)
        g_assert_true(book_extend(f->b, b, o));
    book_settle(f->b, a, ECF_OK, NULL, NULL);
    uint32_t part;
    book_slot slot;
    g_assert_cmpint(book_settle(f->b, b, ECF_ERR_IO, &part, &slot), ==, SETTLE_FAILED);
    g_assert_cmpint(slot.first, ==, 2);
    g_assert_cmpint(slot.last, ==, 5);
    g_assert_cmpint(book_failed_at(f->b, f->p), ==, 2);
    g_assert_cmpint(book_done(f->b, f->p), ==, 2);
    /* a rewind into the middle of a run goes back to the run's first */
    uint64_t c = book_track(f->b, f->p, 6);
    g_assert_true(book_extend(f->b, c, 7));
    g_assert_cmpint(book_rewind(f->b, f->p, 3), ==, 2);
    g_assert_false(book_extend(f->b, c, 8)); /* stale, and a redelivery is expected */
    uint64_t d = book_track(f->b, f->p, 2);
    g_assert_false(book_extend(f->b, d, 1));
    book_settle(f->b, d, ECF_OK, NULL, NULL);
    g_assert_cmpint(book_done(f->b, f->p), ==, 3);
}

/* An abandoned record blocks the run it is in. */
static void test_abandoning_a_record_blocks_its_run(fixture *f, gconstpointer data)
{
    uint64_t a = book_track(f->b, f->p, 0);
    book_extend(f->b, a, 1);
    book_extend(f->b, a, 2);
    book_block(f->b, f->p, 1);
    g_assert_cmpint(book_inflight(f->b, f->p), ==, 0);
    g_assert_cmpint(book_settle(f->b, a, ECF_OK, NULL, NULL), ==, SETTLE_STALE);
    g_assert_cmpint(book_done(f->b, f->p), ==, -1);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define T(path, fn) g_test_add("/offset-book/" path, fixture, NULL, setup, fn, teardown)
    T("commit-stops-at-first-unacked", test_prefix_stops_at_first_unacked);
    T("dropped-counts-as-done", test_dropped_counts_as_done);
    T("failure-blocks-the-prefix", test_failure_blocks_the_prefix);
    T("stopped-blocks-without-policy", test_stopped_blocks_without_policy);
    T("gaps-in-offsets-are-passed", test_gaps_in_offsets_are_passed);
    T("late-acks-after-release-are-ignored", test_late_acks_after_release_are_ignored);
    T("rewind-redelivers-from-the-failure", test_rewind_redelivers_from_the_failure);
    T("rewind-ignores-acks-of-superseded-slots", test_rewind_ignores_acks_of_superseded_slots);
    T("redelivery-past-the-rewind-never-commits-past-it", test_redelivery_past_the_rewind_never_commits_past_it);
    T("second-rewind-keeps-the-lower-point", test_second_rewind_keeps_the_lower_point);
    T("abandoned-message-blocks", test_abandoned_message_blocks);
    T("window-grows-and-keeps-order", test_window_grows_and_keeps_order);
    T("partitions-are-independent", test_partitions_are_independent);
    T("concurrent-settles-reach-the-end", test_concurrent_settles_reach_the_end);
    T("wait-returns-once-acks-arrive", test_wait_returns_once_acks_arrive);
    T("wait-gives-up-at-the-timeout", test_wait_gives_up_at_the_timeout);
    T("a-run-settles-as-one", test_a_run_settles_as_one);
    T("a-failed-run-comes-again-from-its-first", test_a_failed_run_is_redelivered_from_its_first);
    T("abandoning-a-record-blocks-its-run", test_abandoning_a_record_blocks_its_run);
    return g_test_run();
}
