/* dedupe.c: keys seen lately, pending until their commit. */
#include "dedupe.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

static bool seen(dedupe *d, const char *key) { return dedupe_seen(d, key, strlen(key)); }

static void test_second_copy_is_seen_pending_and_committed(void)
{
    dedupe *d = dedupe_new(100);
    g_assert_false(seen(d, "e1"));
    g_assert_true(seen(d, "e1")); /* in the commit being prepared */
    dedupe_commit(d);
    g_assert_true(seen(d, "e1")); /* in the table */
    g_assert_false(seen(d, "e2"));
    g_assert_cmpuint(dedupe_count(d), ==, 2);
    dedupe_free(d);
}

static void test_rollback_forgets_only_pending_keys(void)
{
    dedupe *d = dedupe_new(100);
    g_assert_false(seen(d, "kept"));
    dedupe_commit(d);
    g_assert_false(seen(d, "lost"));
    dedupe_rollback(d); /* the commit failed: its rows come again */
    g_assert_false(seen(d, "lost"));
    g_assert_true(seen(d, "kept"));
    dedupe_free(d);
}

/* Past the window the oldest committed keys go, newest stay; thousands of
 * keys through a small window exercise growth and backward-shift deletion. */
static void test_window_drops_the_oldest(void)
{
    const int window = 1000, n = 50000;
    dedupe *d = dedupe_new(window);
    char key[32];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "event-%d", i);
        g_assert_false(seen(d, key));
        if (i % 7 == 6)
            dedupe_commit(d);
    }
    dedupe_commit(d);
    g_assert_cmpuint(dedupe_count(d), ==, (guint)window);
    for (int i = n - window; i < n; i++) {
        snprintf(key, sizeof key, "event-%d", i);
        g_assert_true(seen(d, key));
    }
    for (int i = 0; i < n - window; i += 97) {
        snprintf(key, sizeof key, "event-%d", i);
        g_assert_false(seen(d, key)); /* forgotten: new again */
    }
    dedupe_free(d);
}

static void test_keys_of_any_length_and_bytes(void)
{
    dedupe *d = dedupe_new(10);
    const char bin[] = {'a', 0, 'b'};
    g_assert_false(dedupe_seen(d, bin, sizeof bin));
    g_assert_false(dedupe_seen(d, "a", 1)); /* a prefix is another key */
    g_assert_false(dedupe_seen(d, "", 0));
    g_assert_true(dedupe_seen(d, bin, sizeof bin));
    g_assert_true(dedupe_seen(d, "", 0));
    char longkey[100];
    memset(longkey, 'x', sizeof longkey);
    g_assert_false(dedupe_seen(d, longkey, sizeof longkey));
    longkey[99] = 'y';
    g_assert_false(dedupe_seen(d, longkey, sizeof longkey));
    dedupe_free(d);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/dedupe/second-copy-pending-and-committed", test_second_copy_is_seen_pending_and_committed);
    g_test_add_func("/dedupe/rollback-forgets-pending", test_rollback_forgets_only_pending_keys);
    g_test_add_func("/dedupe/window-drops-oldest", test_window_drops_the_oldest);
    g_test_add_func("/dedupe/any-key-bytes", test_keys_of_any_length_and_bytes);
    return g_test_run();
}
