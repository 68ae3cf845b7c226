/* Unit tests of sink-iceberg's encoders: Thrift compact, RLE/bit-packed
 * hybrid (through pages), Avro container round trip, Iceberg bounds. */
#include "avro_container.h"
#include "iceberg_bounds.h"
#include "iceberg_schema.h"
#include "parquet_writer.h"
#include "partition.h"
#include "reject.h"
#include "thrift_compact.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <malloc.h>
#include <math.h>
#include <string.h>

static void test_thrift_field_deltas(void)
{
    byte_buf b = {0};
    tc_writer t = {.out = &b};
    tc_struct_begin(&t);
    tc_field_i32(&t, 1, 1);   /* delta 1, type i32 (5): 0x15, zigzag(1)=2 */
    tc_field_i64(&t, 20, -1); /* delta 19 > 15: long form 0x06, zigzag(20)=40, zigzag(-1)=1 */
    tc_field_bool(&t, 21, true);
    tc_struct_end(&t);
    const uint8_t want[] = {0x15, 0x02, 0x06, 0x28, 0x01, 0x11, 0x00};
    g_assert_cmpmem(b.data, b.len, want, sizeof want);
    bb_free(&b);
}

static void test_avro_roundtrip_keeps_field_ids_and_meta(void)
{
    const char *schema = "{\"type\":\"record\",\"name\":\"r\",\"fields\":["
                         "{\"name\":\"a\",\"type\":\"long\",\"field-id\":7},"
                         "{\"name\":\"b\",\"type\":[\"null\",\"string\"],\"default\":null,\"field-id\":8}]}";
    const char *meta[] = {"format-version", "2", NULL};
    avro_writer w;
    avro_writer_begin(&w, schema, meta);
    for (int i = 0; i < 3; i++) {
        avro_long(&w.block, -5 + i);
        if (i == 1)
            avro_union(&w.block, 0);
        else {
            avro_union(&w.block, 1);
            avro_string(&w.block, "héllo");
        }
        avro_writer_record_done(&w);
    }
    avro_writer_finish(&w);
    avro_file f;
    char err[128];
    g_assert_true(avro_file_read(w.out.data, w.out.len, &f, err, sizeof err));
    g_assert_cmpstr(avro_file_meta(&f, "format-version"), ==, "2");
    g_assert_cmpuint(f.n_records, ==, 3);
    g_assert_cmpint(av_field_get(&f.records[2], 7, NULL)->l, ==, -3);
    g_assert_null(av_field_get(&f.records[1], 8, NULL));
    const av_value *s = av_field_get(&f.records[0], 8, NULL);
    g_assert_cmpmem(s->p, s->n, "héllo", strlen("héllo"));
    avro_file_clear(&f);
    avro_writer_free(&w);
}

static void test_decimal_bounds_are_minimal_big_endian(void)
{
    byte_buf b = {0};
    ice_bound_from_decimal(&b, 1234); /* 0x04D2 */
    const uint8_t a[] = {0x04, 0xD2};
    g_assert_cmpmem(b.data, b.len, a, 2);
    bb_reset(&b);
    ice_bound_from_decimal(&b, -1);
    const uint8_t m[] = {0xFF};
    g_assert_cmpmem(b.data, b.len, m, 1);
    bb_reset(&b);
    ice_bound_from_decimal(&b, 128); /* needs a sign byte: 00 80 */
    const uint8_t p[] = {0x00, 0x80};
    g_assert_cmpmem(b.data, b.len, p, 2);
    bb_free(&b);
}

static void test_temporal_transforms_floor_before_epoch(void)
{
    g_assert_cmpint(part_apply_ts(PT_DAY, -1), ==, -1);
    g_assert_cmpint(part_apply_ts(PT_HOUR, -1), ==, -1);
    g_assert_cmpint(part_apply_ts(PT_DAY, 86400000000LL), ==, 1);
    g_assert_cmpint(part_apply_date(PT_MONTH, 31), ==, 1);    /* 1970-02-01 */
    g_assert_cmpint(part_apply_date(PT_YEAR, 365), ==, 1);    /* 1971-01-01 */
    g_assert_cmpint(part_apply_date(PT_MONTH, -1), ==, -1);   /* 1969-12-31 */
    g_assert_cmpint(part_apply_date(PT_YEAR, 19723), ==, 54); /* 2024-01-01 */
}

static int collect(void *ctx, const void *p, size_t n)
{
    bb_append(ctx, p, n);
    return 0;
}

static void test_parquet_file_has_magic_and_footer(void)
{
    byte_buf out = {0};
    pq_column_spec cols[] = {{"s", 1, {ICE_STRING}, false}, {"x", 2, {ICE_LONG}, true}};
    pq_options o = {
        .codec = PQ_CODEC_NONE, .page_size = 64, .row_group_size = 1 << 20, .dictionary = true, .created_by = "test"};
    pq_writer *w = pq_writer_new(cols, 2, &o, (pq_sink){collect, &out});
    for (int i = 0; i < 100; i++) {
        if (i % 10 == 0)
            pq_put_null(w, 0);
        else
            pq_put_bytes(w, 0, i % 2 ? "odd" : "even", i % 2 ? 3 : 4);
        pq_put_i64(w, 1, i - 50);
    }
    g_assert_cmpint(pq_end_rows(w, 100), ==, 0);
    pq_file_metrics m;
    g_assert_cmpint(pq_writer_close(w, &m), ==, 0);
    pq_writer_free(w);
    g_assert_cmpint(m.file_size, ==, (int64_t)out.len);
    g_assert_cmpmem(out.data, 4, "PAR1", 4);
    g_assert_cmpmem(out.data + out.len - 4, 4, "PAR1", 4);
    g_assert_cmpint(m.cols[0].null_count, ==, 10);
    g_assert_cmpint(m.cols[1].value_count, ==, 100);
    int64_t lo, hi;
    memcpy(&lo, m.cols[1].lower.data, 8);
    memcpy(&hi, m.cols[1].upper.data, 8);
    g_assert_cmpint(lo, ==, -50);
    g_assert_cmpint(hi, ==, 49);
    g_assert_cmpmem(m.cols[0].lower.data, m.cols[0].lower.len, "even", 4);
    g_assert_cmpmem(m.cols[0].upper.data, m.cols[0].upper.len, "odd", 3);
    pq_file_metrics_clear(&m);
    bb_free(&out);
}

static size_t heap_in_use(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd; /* big blocks are mmapped */
}

static int discard(void *ctx, const void *p, size_t n)
{
    *(size_t *)ctx += n;
    return 0;
}

/* A writer gives its page, chunk and dictionary memory back once its row
 * group is written, and what it reports holding (the sink's memory bound
 * adds these up) is what it holds; a row group also ends once its buffers
 * reach row_group_size. */
static void test_parquet_memory_is_given_back_and_counted(void)
{
    size_t written = 0;
    pq_column_spec cols[] = {
        {"id", 1, {ICE_STRING}, true}, {"kind", 2, {ICE_STRING}, true}, {"n", 3, {ICE_LONG}, true}};
    pq_options o = {.codec = PQ_CODEC_ZSTD,
                    .zstd_level = 1,
                    .page_size = 1 << 20,
                    .row_group_size = 1LL << 40,
                    .dictionary = true,
                    .created_by = "test"};
    pq_writer *w = pq_writer_new(cols, 3, &o, (pq_sink){discard, &written});
    size_t before = heap_in_use();
    char id[48];
    for (int i = 0; i < 200000; i++) {
        int n = snprintf(id, sizeof id, "event-%08x-%08x", (unsigned)i * 2654435761u, (unsigned)i);
        pq_put_bytes(w, 0, id, (uint32_t)n);
        pq_put_bytes(w, 1, i % 3 ? "page_view" : "search", i % 3 ? 9 : 6);
        pq_put_i64(w, 2, i);
        if (i % 1024 == 1023)
            g_assert_cmpint(pq_end_rows(w, 1024), ==, 0);
    }
    size_t held = heap_in_use() - before;
    if (held == 0) { /* a sanitizer's allocator: mallinfo2() does not see it */
        pq_writer_free(w);
        g_test_skip("mallinfo2() does not count this allocator");
        return;
    }
    g_assert_cmpuint(held, >, 4u << 20);
    g_assert_cmpint(pq_buffered_bytes(w), >=, (int64_t)held * 3 / 4); /* counted as allocated */
    g_assert_cmpint(pq_flush_row_group(w), ==, 0);
    size_t after = heap_in_use() - before;
    g_test_message("row group buffers: %zu bytes held, %zu after its flush", held, after);
    g_assert_cmpuint(after, <, held / 10); /* what stays: statistics, the zstd context */
    g_assert_cmpint(pq_buffered_bytes(w), <, 64 * 1024);
    /* with max_buffered, the writer never holds more than it */
    pq_writer_free(w);
    o.max_buffered = 2 << 20;
    w = pq_writer_new(cols, 3, &o, (pq_sink){discard, &written});
    int64_t most = 0;
    for (int i = 0; i < 200000; i++) {
        int n = snprintf(id, sizeof id, "event-%08x-%08x", (unsigned)i * 2654435761u, (unsigned)i);
        pq_put_bytes(w, 0, id, (uint32_t)n);
        pq_put_bytes(w, 1, "x", 1);
        pq_put_i64(w, 2, i);
        if (i % 1024 == 1023) {
            g_assert_cmpint(pq_end_rows(w, 1024), ==, 0);
            most = MAX(most, pq_buffered_bytes(w));
        }
    }
    g_assert_cmpint(most, <=, 2 << 20);
    pq_writer_free(w);
}

static void test_long_string_upper_bound_is_incremented_prefix(void)
{
    byte_buf out = {0};
    pq_column_spec cols[] = {{"s", 1, {ICE_STRING}, true}};
    pq_options o = {.codec = PQ_CODEC_ZSTD, .zstd_level = 1, .created_by = "test"};
    pq_writer *w = pq_writer_new(cols, 1, &o, (pq_sink){collect, &out});
    pq_put_bytes(w, 0, "aaaaaaaaaaaaaaaaZZZ", 19);
    pq_put_bytes(w, 0, "abcdefghijklmnopqrstu", 21);
    pq_end_rows(w, 2);
    pq_file_metrics m;
    g_assert_cmpint(pq_writer_close(w, &m), ==, 0);
    pq_writer_free(w);
    g_assert_cmpmem(m.cols[0].lower.data, m.cols[0].lower.len, "aaaaaaaaaaaaaaaa", 16);
    g_assert_cmpmem(m.cols[0].upper.data, m.cols[0].upper.len, "abcdefghijklmnoq", 16);
    pq_file_metrics_clear(&m);
    bb_free(&out);
}

/* A free-text partition value must always make a creatable directory: long
 * escaped values are cut and get a hash of the whole value (issue 18). */
static char *value_path(const char *text)
{
    part_field f = {.name = "note", .transform = PT_IDENTITY, .result = {.id = ICE_STRING}};
    part_value v = {.p = (const uint8_t *)text, .n = (uint32_t)strlen(text)};
    byte_buf b = {0};
    part_value_to_path(&f, &v, &b);
    char *s = g_strndup((const char *)b.data, b.len);
    bb_free(&b);
    return s;
}

static void test_long_partition_value_makes_a_creatable_directory(void)
{
    GString *text = g_string_new(NULL);
    for (int i = 0; i < 150; i++)
        g_string_append(text, "\xc3\xa9"); /* é: %C3%A9, 6 bytes escaped */
    g_autofree char *p1 = value_path(text->str);
    g_string_append(text, "x");
    g_autofree char *p2 = value_path(text->str);
    g_string_free(text, TRUE);
    g_assert_cmpuint(strlen(p1), <=, PART_PATH_VALUE_MAX);
    g_assert_cmpstr(p1, !=, p2); /* same prefix, different values: different directories */
    g_autofree char *tmp = g_dir_make_tmp("part-XXXXXX", NULL);
    g_autofree char *dir = g_strdup_printf("%s/note=%s", tmp, p1);
    g_assert_cmpint(g_mkdir(dir, 0700), ==, 0);
    g_rmdir(dir);
    g_rmdir(tmp);
    /* short values keep their readable form */
    g_autofree char *p3 = value_path("page view");
    g_assert_cmpstr(p3, ==, "page%20view");
}

/* ---- hostile Avro files (issue 18 item 10): built by hand, refused with an
 * error, never an abort, a huge allocation or an endless loop. */
static void zz_long(byte_buf *b, int64_t v)
{
    uint64_t u = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (u >= 0x80) {
        bb_byte(b, (uint8_t)(u | 0x80));
        u >>= 7;
    }
    bb_byte(b, (uint8_t)u);
}

static void avro_header(byte_buf *b, const char *schema)
{
    bb_append(b, "Obj\x01", 4);
    zz_long(b, 1);
    zz_long(b, 11);
    bb_append(b, "avro.schema", 11);
    zz_long(b, (int64_t)strlen(schema));
    bb_append(b, schema, strlen(schema));
    zz_long(b, 0);
    bb_append(b, "0123456789abcdef", 16);
}

static void avro_block(byte_buf *b, int64_t count, const void *data, size_t n)
{
    zz_long(b, count);
    zz_long(b, (int64_t)n);
    bb_append(b, data, n);
    bb_append(b, "0123456789abcdef", 16);
}

static void assert_refused(byte_buf *b, const char *why)
{
    avro_file f;
    char err[256] = "";
    gboolean ok = avro_file_read(b->data, b->len, &f, err, sizeof err);
    avro_file_clear(&f);
    bb_free(b);
    if (ok)
        g_error("%s: read as valid", why);
    g_assert_cmpstr(err, !=, "");
}

static void test_avro_hostile_counts_and_sizes_are_refused(void)
{
    const char *rec = "{\"type\":\"record\",\"name\":\"r\",\"fields\":[{\"name\":\"a\",\"type\":\"long\"}]}";
    byte_buf b = {0};
    avro_header(&b, rec); /* 2^60 records claimed, one byte of data */
    avro_block(&b, (int64_t)1 << 60, "\x02", 1);
    assert_refused(&b, "block count past its bytes");

    b = (byte_buf){0};
    avro_header(&b, "{\"type\":\"record\",\"name\":\"r\",\"fields\":[{\"name\":\"f\",\"type\":"
                    "{\"type\":\"fixed\",\"name\":\"x\",\"size\":-5}}]}");
    avro_block(&b, 1, "abcdefgh", 8);
    assert_refused(&b, "negative fixed size");

    /* arrays: a count of INT64_MIN (negation overflows) and one of 2^62 null items */
    const char *arr = "{\"type\":\"record\",\"name\":\"r\",\"fields\":[{\"name\":\"a\",\"type\":"
                      "{\"type\":\"array\",\"items\":\"null\"}}]}";
    byte_buf d = {0};
    zz_long(&d, INT64_MIN);
    zz_long(&d, 0);
    b = (byte_buf){0};
    avro_header(&b, arr);
    avro_block(&b, 1, d.data, d.len);
    assert_refused(&b, "array count INT64_MIN");
    bb_reset(&d);
    zz_long(&d, (int64_t)1 << 62);
    zz_long(&d, 0);
    b = (byte_buf){0};
    avro_header(&b, arr);
    avro_block(&b, 1, d.data, d.len);
    assert_refused(&b, "array of 2^62 nulls");
    bb_free(&d);
}

/* One child array of two rows; validity NULL unless a row is null. */
static struct ArrowArray child2(const void *values, const void *data, const uint8_t *validity, int64_t nulls)
{
    struct ArrowArray a = {.length = 2, .null_count = nulls, .n_buffers = data ? 3 : 2};
    a.buffers = g_new0(const void *, 3);
    a.buffers[0] = validity;
    a.buffers[1] = values;
    a.buffers[2] = data;
    return a;
}

static void test_rejected_row_renders_every_kind_as_json(void)
{
    static const int32_t s_off[] = {0, 1, 4};
    static const int64_t n[] = {0, -7};
    const double f[] = {0, NAN};
    static const uint8_t b[] = {0x2};
    static const int32_t d[] = {0, -1};
    __int128 p[2] = {0, -5};
    static const int64_t t[] = {0, 1000001};
    static const int32_t x_off[] = {0, 1, 1};
    static const uint8_t x_valid[] = {0x1};
    struct ArrowArray kids[] = {
        child2(s_off,
               "a\xff\xfe"
               "b",
               NULL, 0),
        child2(n, NULL, NULL, 0),
        child2(f, NULL, NULL, 0),
        child2(b, NULL, NULL, 0),
        child2(d, NULL, NULL, 0),
        child2(p, NULL, NULL, 0),
        child2(t, NULL, NULL, 0),
        child2(x_off, "y", x_valid, 1),
    };
    struct ArrowArray *ptrs[8];
    for (int i = 0; i < 8; i++)
        ptrs[i] = &kids[i];
    /* the struct starts at row 1 of its children: row 0 of it is their row 1 */
    struct ArrowArray rec = {.length = 1, .offset = 1, .n_children = 8, .children = ptrs};
    const pq_column_spec cols[] = {
        {"s", 1, {ICE_STRING, 0, 0}, false},      {"n", 2, {ICE_LONG, 0, 0}, false},
        {"f", 3, {ICE_DOUBLE, 0, 0}, false},      {"b", 4, {ICE_BOOLEAN, 0, 0}, false},
        {"d", 5, {ICE_DATE, 0, 0}, false},        {"p", 6, {ICE_DECIMAL, 12, 2}, false},
        {"t", 7, {ICE_TIMESTAMPTZ, 0, 0}, false}, {"x", 8, {ICE_STRING, 0, 0}, true},
    };
    const arrow_kind kinds[] = {AC_UTF8, AC_I64, AC_F64, AC_BOOL, AC_DATE32, AC_DEC128, AC_TS_US, AC_UTF8};
    g_autoptr(GString) out = g_string_new(NULL);
    rej_row_json(cols, kinds, 8, &rec, 0, out);
    g_assert_cmpstr(out->str, ==,
                    "{\"s\":\"//5i\",\"n\":-7,\"f\":\"NaN\",\"b\":true,\"d\":\"1969-12-31\",\"p\":\"-0.05\","
                    "\"t\":\"1970-01-01T00:00:01.000001Z\",\"x\":null}");
    for (int i = 0; i < 8; i++)
        g_free(kids[i].buffers);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/thrift/field-headers-use-deltas-then-long-form", test_thrift_field_deltas);
    g_test_add_func("/reject/row-renders-every-kind-as-json", test_rejected_row_renders_every_kind_as_json);
    g_test_add_func("/avro/round-trip-keeps-field-ids-and-header-keys", test_avro_roundtrip_keeps_field_ids_and_meta);
    g_test_add_func("/bounds/decimals-are-minimal-big-endian", test_decimal_bounds_are_minimal_big_endian);
    g_test_add_func("/partition/temporal-transforms-floor-before-epoch", test_temporal_transforms_floor_before_epoch);
    g_test_add_func("/avro/hostile-counts-and-sizes-are-refused", test_avro_hostile_counts_and_sizes_are_refused);
    g_test_add_func("/partition/long-value-makes-a-creatable-directory",
                    test_long_partition_value_makes_a_creatable_directory);
    g_test_add_func("/parquet/file-has-magic-footer-and-exact-metrics", test_parquet_file_has_magic_and_footer);
    g_test_add_func("/parquet/memory-given-back-and-counted", test_parquet_memory_is_given_back_and_counted);
    g_test_add_func("/bounds/long-string-upper-bound-is-incremented-prefix",
                    test_long_string_upper_bound_is_incremented_prefix);
    return g_test_run();
}
