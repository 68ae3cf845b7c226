/* dedupe.c: keys seen lately, pending until their commit; siphash.c: the
 * keyed hash; dedupe_store.c: the window kept with the table. */
#include "dedupe.h"
#include "dedupe_store.h"
#include "siphash.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool seen(dedupe *d, const char *key) { return dedupe_seen(d, key, strlen(key)); }

static void test_second_copy_is_seen_pending_and_committed(void)
{
    dedupe *d = dedupe_new(100, NULL);
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
    dedupe *d = dedupe_new(100, NULL);
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
    dedupe *d = dedupe_new(window, NULL);
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

/* Pending keys are part of the window: they push the oldest committed
 * keys out, and a rollback forgets them (wrapping around the ring). */
static void test_pending_keys_count_toward_the_window(void)
{
    dedupe *d = dedupe_new(10, NULL);
    char key[32];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "old-%d", i);
        g_assert_false(seen(d, key));
    }
    dedupe_commit(d);
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "new-%d", i);
        g_assert_false(seen(d, key));
    }
    g_assert_cmpuint(dedupe_count(d), ==, 10);
    g_assert_false(seen(d, "old-0")); /* pushed out by a pending key; now pending itself */
    g_assert_true(seen(d, "old-9"));
    g_assert_true(seen(d, "new-3"));
    dedupe_hash pending[10];
    g_assert_cmpuint(dedupe_pending(d, pending), ==, 5);
    dedupe_rollback(d);
    g_assert_cmpuint(dedupe_count(d), ==, 5);
    g_assert_true(seen(d, "old-9"));
    g_assert_false(seen(d, "new-3")); /* forgotten with its commit */
    dedupe_rollback(d);
    /* a commit bigger than the window remembers its first window of keys */
    for (int i = 0; i < 25; i++) {
        snprintf(key, sizeof key, "big-%d", i);
        g_assert_false(seen(d, key));
    }
    g_assert_cmpuint(dedupe_count(d), ==, 10);
    g_assert_cmpuint(dedupe_pending(d, NULL), ==, 10);
    g_assert_true(seen(d, "big-9"));
    g_assert_false(seen(d, "big-19")); /* past a window full of pending keys: not remembered */
    dedupe_commit(d);
    dedupe_hash all[10];
    g_assert_cmpuint(dedupe_window_after_commit(d, all), ==, 10);
    dedupe_free(d);
}

static void test_keys_of_any_length_and_bytes(void)
{
    dedupe *d = dedupe_new(10, NULL);
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

/* ------------------------------------------------------------ SipHash-2-4-128 */

/* The reference implementation's vectors_sip128 (github.com/veorq/SipHash,
 * vectors.h): key 00..0f, input 00..(i-1) for i = 0..63. */
static const char *const sip128_vectors[64] = {
    "a3817f04ba25a8e66df67214c7550293", "da87c1d86b99af44347659119b22fc45", "8177228da4a45dc7fca38bdef60affe4",
    "9c70b60c5267a94e5f33b6b02985ed51", "f88164c12d9c8faf7d0f6e7c7bcd5579", "1368875980776f8854527a07690e9627",
    "14eeca338b208613485ea0308fd7a15e", "a1f1ebbed8dbc153c0b84aa61ff08239", "3b62a9ba6258f5610f83e264f31497b4",
    "264499060ad9baabc47f8b02bb6d71ed", "00110dc378146956c95447d3f3d0fbba", "0151c568386b6677a2b4dc6f81e5dc18",
    "d626b266905ef35882634df68532c125", "9869e247e9c08b10d029934fc4b952f7", "31fcefac66d7de9c7ec7485fe4494902",
    "5493e99933b0a8117e08ec0f97cfc3d9", "6ee2a4ca67b054bbfd3315bf85230577", "473d06e8738db89854c066c47ae47740",
    "a426e5e423bf4885294da481feaef723", "78017731cf65fab074d5208952512eb1", "9e25fc833f2290733e9344a5e83839eb",
    "568e495abe525a218a2214cd3e071d12", "4a29b54552d16b9a469c10528eff0aae", "c9d184ddd5a9f5e0cf8ce29a9abf691c",
    "2db479ae78bd50d8882a8a178a6132ad", "8ece5f042d5e447b5051b9eacb8d8f6f", "9c0b53b4b3c307e87eaee08678141f66",
    "abf248af69a6eae4bfd3eb2f129eeb94", "0664da1668574b88b935f3027358aef4", "aa4b9dc4bf337de90cd4fd3c467c6ab7",
    "ea5c7f471faf6bde2b1ad7d4686d2287", "2939b0183223fafc1723de4f52c43d35", "7c3956ca5eeafc3e363e9d556546eb68",
    "77c6077146f01c32b6b69d5f4ea9ffcf", "37a6986cb8847edf0925f0f1309b54de", "a705f0e69da9a8f907241a2e923c8cc8",
    "3dc47d1f29c448461e9e76ed904f6711", "0d62bf01e6fc0e1a0d3c4751c5d3692b", "8c03468bca7c669ee4fd5e084bbee7b5",
    "528a5bb93baf2c9c4473cce5d0d22bd9", "df6a301e95c95dad97ae0cc8c6913bd8", "801189902c857f39e73591285e70b6db",
    "e617346ac9c231bb3650ae34ccca0c5b", "27d93437efb721aa401821dcec5adf89", "89237d9ded9c5e78d8b1c9b166cc7342",
    "4a6d8091bf5e7d651189fa94a250b14c", "0e33f96055e7ae893ffc0e3dcf492902", "e61c432b720b19d18ec8d84bdc63151b",
    "f7e5aef549f782cf379055a608269b16", "438d030fd0b7a54fa837f2ad201a6403", "a590d3ee4fbf04e3247e0d27f286423f",
    "5fe2c1a172fe93c4b15cd37caef9f538", "2c97325cbd06b36eb2133dd08b3a017c", "92c814227a6bca949ff0659f002ad39e",
    "dce850110bd8328cfbd50841d6911d87", "67f14984c7da791248e32bb5922583da", "1938f2cf72d54ee97e94166fa91d2a36",
    "74481e9646ed49fe0f6224301604698e", "57fca5de98a9d6d8006438d0583d8a1d", "9fecde1cefdc1cbed4763674d9575359",
    "e3040c00eb28f15366ca73cbd872e740", "7697009a6a831dfecca91c5993670f7a", "5853542321f567a005d547a4f04759bd",
    "5150d1772f50834a503e069a973fbd7c",
};

static void test_siphash_reference_vectors(void)
{
    uint8_t key[16], in[64], out[16];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        in[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++) {
        siphash128(key, in, (size_t)i, out);
        char hex[33];
        for (int b = 0; b < 16; b++)
            snprintf(hex + 2 * b, 3, "%02x", out[b]);
        g_assert_cmpstr(hex, ==, sip128_vectors[i]);
    }
}

static dedupe_hash pending_hash_of(const uint8_t *key, const char *id)
{
    dedupe *d = dedupe_new(10, key);
    g_assert_false(dedupe_seen(d, id, strlen(id)));
    dedupe_hash h[1];
    g_assert_cmpuint(dedupe_pending(d, h), ==, 1);
    dedupe_hash out = h[0];
    dedupe_free(d);
    return out;
}

/* The window hashes under the table's key: another key, other hashes. */
static void test_hash_is_keyed(void)
{
    uint8_t k1[16] = {1}, k2[16] = {2};
    dedupe_hash a = pending_hash_of(k1, "event-1"), b = pending_hash_of(k2, "event-1"),
                c = pending_hash_of(k1, "event-1");
    g_assert_true(a.h1 != b.h1 || a.h2 != b.h2);
    g_assert_true(a.h1 == c.h1 && a.h2 == c.h2);
    uint8_t bytes[16], expect[16];
    dedupe_hash_to_bytes(a, bytes);
    siphash128(k1, "event-1", 7, expect);
    g_assert_cmpmem(bytes, 16, expect, 16);
}

/* ------------------------------------------------------------ the file format */

static dedupe_hash nth_hash(uint64_t i) { return (dedupe_hash){0x9e3779b97f4a7c15ULL * (i + 1), ~i}; }

static void test_file_round_trip(void)
{
    const uint8_t id[8] = {1, 2, 3, 4, 5, 6, 7, 8}, other[8] = {9};
    for (size_t n = 0; n < 40; n += 13) {
        dedupe_hash h[40];
        for (size_t i = 0; i < n; i++)
            h[i] = nth_hash(i);
        byte_buf b = {0};
        dedupe_file_encode(&b, h, n, n == 26, id);
        g_assert_cmpuint(b.len, ==, DEDUPE_FILE_OVERHEAD + 16 * n);
        dedupe_hash *got;
        size_t m;
        bool whole;
        char *why = NULL;
        g_assert_true(dedupe_file_decode(b.data, b.len, id, &got, &m, &whole, &why));
        g_assert_null(why);
        g_assert_cmpuint(m, ==, n);
        g_assert_true(whole == (n == 26));
        g_assert_true(n == 0 || memcmp(got, h, n * sizeof *h) == 0);
        g_free(got);
        /* under another key the hashes mean nothing: refused */
        g_assert_false(dedupe_file_decode(b.data, b.len, other, &got, &m, &whole, &why));
        g_assert_nonnull(strstr(why, "another hash key"));
        g_assert_null(got);
        g_free(why);
        bb_free(&b);
    }
}

static void expect_refused(const uint8_t *p, size_t len, const char *what)
{
    dedupe_hash *got = NULL;
    size_t m = 99;
    bool whole;
    char *why = NULL;
    g_assert_false(dedupe_file_decode(p, len, NULL, &got, &m, &whole, &why));
    g_assert_null(got);
    g_assert_cmpuint(m, ==, 0);
    g_assert_nonnull(why);
    if (what)
        g_assert_nonnull(strstr(why, what));
    g_free(why);
}

/* Hostile or damaged files: every truncation, every flipped byte, counts
 * that disagree with the size (up to 2^32-1: nothing is allocated for them). */
static void test_file_corrupt_or_truncated_is_refused(void)
{
    const uint8_t id[8] = {7};
    dedupe_hash h[5];
    for (int i = 0; i < 5; i++)
        h[i] = nth_hash((uint64_t)i);
    byte_buf b = {0};
    dedupe_file_encode(&b, h, 5, false, id);
    for (size_t len = 0; len < b.len; len++)
        expect_refused(b.data, len, NULL);
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            b.data[i] ^= (uint8_t)(1u << bit);
            expect_refused(b.data, b.len, NULL);
            b.data[i] ^= (uint8_t)(1u << bit);
        }
    }
    const uint32_t counts[] = {4, 6, 0xffffffffu, 0x10000000u};
    for (size_t c = 0; c < G_N_ELEMENTS(counts); c++) {
        byte_buf x = {0};
        bb_append(&x, b.data, b.len);
        for (int k = 0; k < 4; k++)
            x.data[12 + k] = (uint8_t)(counts[c] >> (8 * k));
        expect_refused(x.data, x.len, "header says");
        bb_free(&x);
    }
    expect_refused((const uint8_t *)"PAR1 not ours at all, but long enough", 37, "not a dedupe file");
    bb_free(&b);
}

static void test_files_of_summary_stay_in_metadata(void)
{
    char **f = dedupe_files_of_summary("dedupe-ab12-x.stats,../data/x.parquet,dedupe-a/../../v1.metadata.json,"
                                       "dedupe-..stats,,snap-1.avro,dedupe-c3-4.stats");
    g_assert_cmpuint(g_strv_length(f), ==, 2);
    g_assert_cmpstr(f[0], ==, "dedupe-ab12-x.stats");
    g_assert_cmpstr(f[1], ==, "dedupe-c3-4.stats");
    g_strfreev(f);
    f = dedupe_files_of_summary(NULL);
    g_assert_cmpuint(g_strv_length(f), ==, 0);
    g_strfreev(f);
}

/* ------------------------------------------------------------ the store */

typedef struct {
    char *dir;
    file_io *io;
    GPtrArray *warnings;
} fixture;

static void collect_warning(void *ctx, const char *msg) { g_ptr_array_add(((fixture *)ctx)->warnings, g_strdup(msg)); }

static void fx_setup(fixture *fx)
{
    fx->dir = g_dir_make_tmp("ecflow-dedupe-XXXXXX", NULL);
    g_assert_nonnull(fx->dir);
    fx->io = file_io_local_new(false);
    fx->warnings = g_ptr_array_new_with_free_func(g_free);
}

static void rm_rf(const char *path)
{
    GDir *d = g_dir_open(path, 0, NULL);
    if (d) {
        const char *n;
        while ((n = g_dir_read_name(d))) {
            g_autofree char *p = g_build_filename(path, n, NULL);
            rm_rf(p);
        }
        g_dir_close(d);
    }
    g_remove(path);
}

static void fx_teardown(fixture *fx)
{
    rm_rf(fx->dir);
    g_free(fx->dir);
    fx->io->destroy(fx->io);
    g_ptr_array_free(fx->warnings, TRUE);
}

static const uint8_t KEY[16] = {0xec, 0xf1};

/* One commit of `n` new ids from `first` through store s: prepare, the
 * snapshot (the summary value returned, as the sink's commit stores it),
 * committed. */
static char *commit_ids(dedupe_store *s, dedupe *d, int first, int n)
{
    char id[32];
    for (int i = first; i < first + n; i++) {
        snprintf(id, sizeof id, "event-%d", i);
        g_assert_false(dedupe_seen(d, id, strlen(id)));
    }
    char *value = g_strdup(dedupe_store_prepare(s, d));
    dedupe_store_committed(s);
    dedupe_commit(d);
    return value;
}

static bool knows(dedupe *d, int i)
{
    char id[32];
    snprintf(id, sizeof id, "event-%d", i);
    return dedupe_known(d, id, strlen(id));
}

static guint n_names(const char *value)
{
    char **f = dedupe_files_of_summary(value);
    guint n = g_strv_length(f);
    g_strfreev(f);
    return n;
}

/* Commits through one store, a restart into another: the new window knows
 * what the last snapshot's files hold; past DEDUPE_MAX_INCREMENTS files the
 * next holds the whole window and the list starts again from it. */
static void test_store_survives_a_restart_and_compacts(void)
{
    fixture fx;
    fx_setup(&fx);
    const int window = 1000, per_commit = 10;
    dedupe *d = dedupe_new(window, KEY);
    dedupe_store *s = dedupe_store_new(fx.io, fx.dir, "w1", collect_warning, &fx);
    char *value = NULL;
    for (int c = 0; c < DEDUPE_MAX_INCREMENTS; c++) {
        g_free(value);
        value = commit_ids(s, d, c * per_commit, per_commit);
        g_assert_cmpuint(n_names(value), ==, (guint)c + 1);
    }
    g_free(value);
    value = commit_ids(s, d, DEDUPE_MAX_INCREMENTS * per_commit, per_commit); /* the 17th: the whole window */
    g_assert_cmpuint(n_names(value), ==, 1);
    g_free(value);
    value = commit_ids(s, d, (DEDUPE_MAX_INCREMENTS + 1) * per_commit, per_commit);
    g_assert_cmpuint(n_names(value), ==, 2);
    const int total = (DEDUPE_MAX_INCREMENTS + 2) * per_commit;

    dedupe *d2 = dedupe_new(window, KEY);
    dedupe_store *s2 = dedupe_store_new(fx.io, fx.dir, "w1", collect_warning, &fx);
    unsigned files = 0;
    g_assert_cmpuint(dedupe_store_load(s2, d2, value, &files), ==, (guint)total);
    g_assert_cmpuint(files, ==, 2);
    g_assert_cmpuint(fx.warnings->len, ==, 0);
    for (int i = 0; i < total; i++)
        g_assert_true(knows(d2, i));
    g_assert_false(knows(d2, total));
    /* the restarted store goes on from the list it loaded */
    char *v2 = commit_ids(s2, d2, total, per_commit);
    g_assert_cmpuint(n_names(v2), ==, 3);
    g_assert_true(g_str_has_prefix(v2, value));
    /* a window smaller than the files: the newest keys are kept */
    dedupe *small = dedupe_new(25, KEY);
    dedupe_store *s3 = dedupe_store_new(fx.io, fx.dir, "w1", collect_warning, &fx);
    g_assert_cmpuint(dedupe_store_load(s3, small, v2, &files), ==, 25 + 10 + 10);
    g_assert_cmpuint(dedupe_count(small), ==, 25);
    g_assert_true(knows(small, total + per_commit - 1));
    g_assert_true(knows(small, total + per_commit - 25));
    g_assert_false(knows(small, total + per_commit - 26));
    dedupe_store_free(s3);
    dedupe_free(small);
    g_free(v2);
    g_free(value);
    dedupe_store_free(s2);
    dedupe_free(d2);
    dedupe_store_free(s);
    dedupe_free(d);
    fx_teardown(&fx);
}

/* More keys in the increments than the window holds: the whole window
 * instead, so the bytes listed stay within about twice the window. */
static void test_store_compacts_past_the_window(void)
{
    fixture fx;
    fx_setup(&fx);
    dedupe *d = dedupe_new(50, KEY);
    dedupe_store *s = dedupe_store_new(fx.io, fx.dir, "w", collect_warning, &fx);
    char *v = commit_ids(s, d, 0, 30);
    g_assert_cmpuint(n_names(v), ==, 1);
    g_free(v);
    v = commit_ids(s, d, 30, 30); /* 60 > 50: whole window, the newest 50 */
    g_assert_cmpuint(n_names(v), ==, 1);
    dedupe *d2 = dedupe_new(50, KEY);
    dedupe_store *s2 = dedupe_store_new(fx.io, fx.dir, "w", collect_warning, &fx);
    unsigned files;
    g_assert_cmpuint(dedupe_store_load(s2, d2, v, &files), ==, 50);
    g_assert_false(knows(d2, 9));
    g_assert_true(knows(d2, 10));
    g_assert_true(knows(d2, 59));
    g_free(v);
    dedupe_store_free(s2);
    dedupe_free(d2);
    dedupe_store_free(s);
    dedupe_free(d);
    fx_teardown(&fx);
}

static char *metadata_path(fixture *fx, const char *value, int i)
{
    char **f = dedupe_files_of_summary(value);
    char *p = g_build_filename(fx->dir, "metadata", f[i], NULL);
    g_strfreev(f);
    return p;
}

/* A missing file and a corrupt one: each warned about by name, the rest
 * loaded; the next commit writes the whole window, so the list no longer
 * names the bad ones. */
static void test_store_missing_or_corrupt_files_are_warned_and_skipped(void)
{
    fixture fx;
    fx_setup(&fx);
    dedupe *d = dedupe_new(100, KEY);
    dedupe_store *s = dedupe_store_new(fx.io, fx.dir, "w", collect_warning, &fx);
    char *value = NULL;
    for (int c = 0; c < 3; c++) {
        g_free(value);
        value = commit_ids(s, d, c * 5, 5);
    }
    g_autofree char *gone = metadata_path(&fx, value, 0), *bad = metadata_path(&fx, value, 1);
    g_assert_cmpint(g_remove(gone), ==, 0);
    gchar *bytes;
    gsize len;
    g_assert_true(g_file_get_contents(bad, &bytes, &len, NULL));
    g_assert_true(g_file_set_contents(bad, bytes, (gssize)len - 9, NULL)); /* truncated */
    g_free(bytes);

    dedupe *d2 = dedupe_new(100, KEY);
    dedupe_store *s2 = dedupe_store_new(fx.io, fx.dir, "w", collect_warning, &fx);
    unsigned files;
    g_assert_cmpuint(dedupe_store_load(s2, d2, value, &files), ==, 5);
    g_assert_cmpuint(files, ==, 1);
    g_assert_cmpuint(fx.warnings->len, ==, 2);
    g_assert_nonnull(strstr(g_ptr_array_index(fx.warnings, 0), gone));
    g_assert_nonnull(strstr(g_ptr_array_index(fx.warnings, 1), bad));
    g_assert_false(knows(d2, 0));
    g_assert_true(knows(d2, 10));
    char *v2 = commit_ids(s2, d2, 15, 5);
    g_assert_cmpuint(n_names(v2), ==, 1); /* the whole window */
    /* a list naming files elsewhere: warned, not read */
    dedupe *d3 = dedupe_new(100, KEY);
    g_autofree char *hostile = g_strdup_printf("../../x.stats,%s", v2);
    g_assert_cmpuint(dedupe_store_load(s2, d3, hostile, &files), ==, 10);
    g_assert_cmpuint(fx.warnings->len, ==, 3);
    dedupe_free(d3);
    /* a list longer than this sink writes: the newest DEDUPE_MAX_INCREMENTS + 1 names are read */
    GString *many = g_string_new(NULL);
    for (int i = 0; i < 1000; i++)
        g_string_append_printf(many, "dedupe-gone-%d.stats,", i);
    g_string_append(many, v2);
    dedupe *d4 = dedupe_new(100, KEY);
    g_assert_cmpuint(dedupe_store_load(s2, d4, many->str, &files), ==, 10);
    g_assert_cmpuint(files, ==, 1);
    g_assert_cmpuint(fx.warnings->len, ==, 3 + 1 + DEDUPE_MAX_INCREMENTS); /* the list, each missing file */
    g_string_free(many, TRUE);
    dedupe_free(d4);
    g_free(v2);
    g_free(value);
    dedupe_store_free(s2);
    dedupe_free(d2);
    dedupe_store_free(s);
    dedupe_free(d);
    fx_teardown(&fx);
}

/* A failed commit removes its file and keeps the list; one of unknown
 * outcome keeps the file (the table may name it). Under another key the
 * files are refused. */
static void test_store_failed_commit_and_other_key(void)
{
    fixture fx;
    fx_setup(&fx);
    dedupe *d = dedupe_new(100, KEY);
    dedupe_store *s = dedupe_store_new(fx.io, fx.dir, "w", collect_warning, &fx);
    g_autofree char *v1 = commit_ids(s, d, 0, 3);
    g_assert_false(dedupe_seen(d, "lost", 4));
    g_autofree char *v2 = g_strdup(dedupe_store_prepare(s, d));
    g_autofree char *p2 = metadata_path(&fx, v2, 1);
    g_assert_true(g_file_test(p2, G_FILE_TEST_EXISTS));
    dedupe_store_failed(s, false);
    dedupe_rollback(d);
    g_assert_false(g_file_test(p2, G_FILE_TEST_EXISTS));
    g_assert_cmpstr(dedupe_store_prepare(s, d), ==, v1); /* nothing pending: the list as it was */
    g_assert_false(dedupe_seen(d, "unknown", 7));
    g_autofree char *v3 = g_strdup(dedupe_store_prepare(s, d));
    g_autofree char *p3 = metadata_path(&fx, v3, 1);
    dedupe_store_failed(s, true);
    g_assert_true(g_file_test(p3, G_FILE_TEST_EXISTS));

    uint8_t other[16] = {0xbe, 0xef};
    dedupe *d2 = dedupe_new(100, other);
    unsigned files;
    g_assert_cmpuint(dedupe_store_load(s, d2, v1, &files), ==, 0);
    g_assert_cmpuint(fx.warnings->len, ==, 1);
    g_assert_nonnull(strstr(g_ptr_array_index(fx.warnings, 0), "another hash key"));
    dedupe_free(d2);
    dedupe_store_free(s);
    dedupe_free(d);
    fx_teardown(&fx);
}

/* ------------------------------------------------------------ the table's key */

static void open_table(ice_table *t, catalog_ref *ref, fixture *fx, const char *name, char **location)
{
    char e[256];
    JsonParser *p = json_parser_new();
    g_assert_true(json_parser_load_from_data(
        p,
        "{\"type\":\"struct\",\"schema-id\":0,\"fields\":[{\"id\":1,\"name\":\"event_id\",\"required\":false,"
        "\"type\":\"string\"}]}",
        -1, NULL));
    ice_schema schema;
    g_assert_true(ice_schema_from_json(json_node_get_object(json_parser_get_root(p)), &schema, e, sizeof e));
    g_object_unref(p);
    *location = g_build_filename(fx->dir, name, NULL);
    *ref = (catalog_ref){.io = fx->io, .location = *location};
    table_open_args a = {.input = &schema, .now_ms = 1};
    char *note = NULL, *err = NULL;
    g_assert_true(table_open(t, ref, &a, &note, &err));
    g_assert_null(err);
    g_free(note);
    ice_schema_clear(&schema);
}

static void test_table_key_made_once_kept_per_table(void)
{
    fixture fx;
    fx_setup(&fx);
    ice_table t;
    catalog_ref ref;
    char *loc, *err = NULL;
    uint8_t k1[16], k1again[16], k2[16];
    bool created;
    open_table(&t, &ref, &fx, "one", &loc);
    g_assert_true(dedupe_table_key(&ref, &t, k1, &created, &err));
    g_assert_true(created);
    table_close(&t);
    g_free(loc);
    open_table(&t, &ref, &fx, "one", &loc); /* loads what is there now */
    const char *hex =
        json_object_get_string_member(json_object_get_object_member(t.cat.meta.o, "properties"), DEDUPE_KEY_PROPERTY);
    g_assert_cmpuint(strlen(hex), ==, 32);
    g_assert_cmpint(tm_last_updated_ms(&t.cat.meta), >, 1); /* the table was made at 1 ms */
    g_assert_true(dedupe_table_key(&ref, &t, k1again, &created, &err));
    g_assert_false(created);
    g_assert_cmpmem(k1, 16, k1again, 16);
    table_close(&t);
    g_free(loc);
    open_table(&t, &ref, &fx, "two", &loc);
    g_assert_true(dedupe_table_key(&ref, &t, k2, &created, &err));
    g_assert_true(created);
    g_assert_true(memcmp(k1, k2, 16) != 0);
    /* a damaged property is an error that says what to do, not a new key */
    json_object_set_string_member(json_object_get_object_member(t.cat.meta.o, "properties"), DEDUPE_KEY_PROPERTY,
                                  "not hex");
    g_assert_false(dedupe_table_key(&ref, &t, k2, &created, &err));
    g_assert_nonnull(strstr(err, DEDUPE_KEY_PROPERTY));
    g_free(err);
    g_free(loc);
    table_close(&t);
    fx_teardown(&fx);
}

/* ------------------------------------------------------------ memory (-m perf) */

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* What dedupe.h and the dedupe_window option help state: a full window's
 * resident bytes per key (run: test_iceberg_dedupe -m perf -p /dedupe/memory). */
static void test_memory_of_a_full_window(void)
{
    if (!g_test_perf()) {
        g_test_skip("a measurement: -m perf");
        return;
    }
    const uint32_t windows[] = {100000, 1000000};
    for (size_t w = 0; w < G_N_ELEMENTS(windows); w++) {
        long before = rss_kib();
        dedupe *d = dedupe_new(windows[w], KEY);
        char id[48];
        for (uint32_t i = 0; i < windows[w]; i++) {
            int n = snprintf(id, sizeof id, "0192b3c4-d5e6-7f80-9a1b-%012u", i);
            dedupe_seen(d, id, (size_t)n);
            if (i % 1000 == 999)
                dedupe_commit(d);
        }
        dedupe_commit(d);
        long after = rss_kib();
        g_test_message("window %u: %zu keys, RSS +%ld KiB = %.1f bytes per key", windows[w], dedupe_count(d),
                       after - before, (double)(after - before) * 1024 / windows[w]);
        /* the keys of one commit being prepared take the window's place */
        for (uint32_t i = 0; i < windows[w]; i++) {
            int n = snprintf(id, sizeof id, "0192b3c4-d5e6-7f80-9a1b-p%011u", i);
            dedupe_seen(d, id, (size_t)n);
        }
        long pending = rss_kib();
        g_test_message("  and %u pending keys: RSS +%ld KiB more", windows[w], pending - after);
        g_assert_cmpint(pending - after, <, 1024); /* nothing new: the ring and index are whole already */
        dedupe_free(d);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/dedupe/second-copy-pending-and-committed", test_second_copy_is_seen_pending_and_committed);
    g_test_add_func("/dedupe/rollback-forgets-pending", test_rollback_forgets_only_pending_keys);
    g_test_add_func("/dedupe/window-drops-oldest", test_window_drops_the_oldest);
    g_test_add_func("/dedupe/pending-in-window", test_pending_keys_count_toward_the_window);
    g_test_add_func("/dedupe/any-key-bytes", test_keys_of_any_length_and_bytes);
    g_test_add_func("/dedupe/siphash-reference-vectors", test_siphash_reference_vectors);
    g_test_add_func("/dedupe/hash-is-keyed", test_hash_is_keyed);
    g_test_add_func("/dedupe/file-round-trip", test_file_round_trip);
    g_test_add_func("/dedupe/file-corrupt-or-truncated", test_file_corrupt_or_truncated_is_refused);
    g_test_add_func("/dedupe/files-of-summary", test_files_of_summary_stay_in_metadata);
    g_test_add_func("/dedupe/store-restart-and-compaction", test_store_survives_a_restart_and_compacts);
    g_test_add_func("/dedupe/store-compacts-past-window", test_store_compacts_past_the_window);
    g_test_add_func("/dedupe/store-missing-or-corrupt", test_store_missing_or_corrupt_files_are_warned_and_skipped);
    g_test_add_func("/dedupe/store-failed-commit-other-key", test_store_failed_commit_and_other_key);
    g_test_add_func("/dedupe/table-key", test_table_key_made_once_kept_per_table);
    g_test_add_func("/dedupe/memory", test_memory_of_a_full_window);
    return g_test_run();
}
