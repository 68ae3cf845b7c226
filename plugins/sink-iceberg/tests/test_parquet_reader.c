/* Unit tests of the Parquet reader and pq_rewrite: round trips through
 * pq_writer, compaction with schema evolution, refusals, and corrupt input
 * (truncations and bit flips, meant to run under ASan). */
#include "parquet_reader.h"
#include "parquet_rewrite.h"
#include "parquet_writer.h"
#include "pq_testdata.h"
#include "thrift_compact.h"

#include <glib.h>

static int mem_write(void *ctx, const void *p, size_t n)
{
    bb_append(ctx, p, n);
    return 0;
}

static int failing_write(void *ctx, const void *p, size_t n)
{
    size_t *left = ctx;
    if (n > *left)
        return -1;
    *left -= n;
    return 0;
}

#define DEC(p, s)         \
    {                     \
        ICE_DECIMAL, p, s \
    }
#define T(id)    \
    {            \
        id, 0, 0 \
    }

/* Every ice_type, optional and some required. Even string ids repeat a few
 * values; odd ones grow, to overflow a small dictionary mid-chunk. */
static const pq_column_spec all_types[] = {
    {"id", 1, T(ICE_LONG), true},        {"flag", 2, T(ICE_BOOLEAN), false},    {"qty", 3, T(ICE_INT), false},
    {"price_f", 4, T(ICE_FLOAT), false}, {"price", 5, T(ICE_DOUBLE), true},     {"day", 6, T(ICE_DATE), false},
    {"ts", 7, T(ICE_TIMESTAMP), false},  {"tstz", 8, T(ICE_TIMESTAMPTZ), true}, {"cat", 10, T(ICE_STRING), false},
    {"key", 11, T(ICE_STRING), false},   {"key_req", 13, T(ICE_STRING), true},  {"blob", 12, T(ICE_BINARY), false},
    {"d5", 14, DEC(5, 2), false},        {"d15", 15, DEC(15, 3), true},         {"d30", 16, DEC(30, 4), false},
    {"d38", 17, DEC(38, 0), false},
};
#define N_ALL ((int)G_N_ELEMENTS(all_types))

static void write_file(byte_buf *out, const pq_column_spec *cols, int n_cols, const pq_options *opt, int64_t rows,
                       uint64_t seed)
{
    pq_writer *w = pq_writer_new(cols, n_cols, opt, (pq_sink){mem_write, out});
    for (int64_t r = 0; r < rows;) {
        int64_t n = MIN(rows - r, 333); /* batches, like the sink */
        for (int c = 0; c < n_cols; c++)
            for (int64_t k = 0; k < n; k++) {
                td_val v;
                td_expect(&cols[c], r + k, seed, &v);
                td_put(w, c, &cols[c], &v);
            }
        g_assert_cmpint(pq_end_rows(w, (uint32_t)n), ==, 0);
        r += n;
    }
    pq_file_metrics m;
    g_assert_cmpint(pq_writer_close(w, &m), ==, 0);
    g_assert_cmpint(m.num_rows, ==, rows);
    pq_file_metrics_clear(&m);
    pq_writer_free(w);
}

typedef struct {
    int row_groups;
    int dict_pages, plain_pages;
    bool mixed_chunk; /* a chunk with dictionary pages and then PLAIN pages */
} read_stats;

/* Reads the whole file and compares every value with td_expect(cols, seed). */
static void check_file(const byte_buf *f, const pq_column_spec *cols, int n_cols, uint64_t seed, int64_t rows,
                       read_stats *rs)
{
    char err[256] = "";
    pq_reader *r;
    pq_read_status st = pq_reader_open(f->data, f->len, "rt.parquet", NULL, &r, err, sizeof err);
    if (st != PQ_READ_OK)
        g_error("open: %s", err);
    g_assert_cmpint(pq_reader_num_rows(r), ==, rows);
    g_assert_cmpint(pq_reader_num_columns(r), ==, n_cols);
    for (int c = 0; c < n_cols; c++) {
        const pq_reader_column *rc = pq_reader_column_at(r, c);
        g_assert_cmpstr(rc->name, ==, cols[c].name);
        g_assert_cmpint(rc->field_id, ==, cols[c].field_id);
        g_assert_cmpint(rc->required, ==, cols[c].required);
        g_assert_true(rc->has_ice);
        g_assert_true(ice_type_equal(rc->ice, cols[c].type));
    }
    memset(rs, 0, sizeof *rs);
    rs->row_groups = pq_reader_num_row_groups(r);
    pq_column_data d = {0};
    int64_t row0 = 0;
    for (int g = 0; g < rs->row_groups; g++) {
        int64_t n = pq_reader_row_group_rows(r, g);
        for (int c = 0; c < n_cols; c++) {
            st = pq_reader_read_chunk(r, g, c, &d, err, sizeof err);
            if (st != PQ_READ_OK)
                g_error("read: %s", err);
            g_assert_cmpint(d.n_rows, ==, n);
            rs->dict_pages += d.dict_pages;
            rs->plain_pages += d.plain_pages;
            rs->mixed_chunk |= d.dict_pages > 0 && d.plain_pages > 0;
            int64_t k = 0;
            for (int64_t i = 0; i < n; i++) {
                td_val want, got;
                td_expect(&cols[c], row0 + i, seed, &want);
                td_from_data(pq_reader_column_at(r, c), &d, i, &k, &got);
                if (!td_equal(cols[c].type, &want, &got))
                    g_error("column %s row %" G_GINT64_FORMAT ": value differs", cols[c].name, row0 + i);
            }
        }
        row0 += n;
    }
    g_assert_cmpint(row0, ==, rows);
    pq_column_data_free(&d);
    pq_reader_free(r);
}

static void test_round_trip(void)
{
    const pq_codec codecs[] = {PQ_CODEC_NONE, PQ_CODEC_SNAPPY, PQ_CODEC_ZSTD};
    for (size_t ci = 0; ci < G_N_ELEMENTS(codecs); ci++)
        for (int dict = 0; dict <= 1; dict++) {
            pq_options opt = {.codec = codecs[ci],
                              .zstd_level = 3,
                              .page_size = 2048,
                              .row_group_size = 48 << 10,
                              .dict_size_limit = 1500,
                              .dictionary = dict};
            byte_buf f = {0};
            write_file(&f, all_types, N_ALL, &opt, 6000, 7 + ci);
            read_stats rs;
            check_file(&f, all_types, N_ALL, 7 + ci, 6000, &rs);
            g_assert_cmpint(rs.row_groups, >, 1);
            g_assert_cmpint(rs.plain_pages, >, rs.row_groups * N_ALL); /* several pages per chunk */
            if (dict) {
                g_assert_cmpint(rs.dict_pages, >, 0);
                g_assert_true(rs.mixed_chunk); /* dictionary overflow fell back to PLAIN mid-chunk */
            } else
                g_assert_cmpint(rs.dict_pages, ==, 0);
            bb_free(&f);
        }
}

/* ------------------------------------------------------------ rewrite */

/* Before evolution: qty int, price float, amount decimal(5,2), no "added"
 * and "seen" columns, and a "legacy" column the table later dropped. */
static const pq_column_spec old_schema[] = {
    {"id", 1, T(ICE_LONG), true},      {"qty", 2, T(ICE_INT), false},     {"price", 3, T(ICE_FLOAT), false},
    {"amount", 4, DEC(5, 2), false},   {"name", 5, T(ICE_STRING), false}, {"legacy", 8, T(ICE_BOOLEAN), false},
    {"note", 9, T(ICE_BINARY), false},
};
static const pq_column_spec new_schema[] = {
    {"id", 1, T(ICE_LONG), true},           {"qty", 2, T(ICE_LONG), false},    {"price", 3, T(ICE_DOUBLE), false},
    {"amount", 4, DEC(12, 2), false},       {"name", 5, T(ICE_STRING), false}, {"added", 6, T(ICE_STRING), false},
    {"seen", 7, T(ICE_TIMESTAMPTZ), false}, {"note", 9, T(ICE_BINARY), false},
};

typedef struct {
    const pq_column_spec *cols;
    int n_cols;
    int64_t rows;
    uint64_t seed;
    pq_options opt;
} input_desc;

static const pq_column_spec *spec_by_id(const pq_column_spec *cols, int n, int id)
{
    for (int i = 0; i < n; i++)
        if (cols[i].field_id == id)
            return &cols[i];
    return NULL;
}

static void test_rewrite_merges_with_evolution(void)
{
    input_desc ins[] = {
        {old_schema,
         G_N_ELEMENTS(old_schema),
         3000,
         11,
         {.codec = PQ_CODEC_ZSTD, .zstd_level = 1, .page_size = 4096, .row_group_size = 16 << 10, .dictionary = true}},
        {new_schema,
         G_N_ELEMENTS(new_schema),
         4000,
         12,
         {.codec = PQ_CODEC_SNAPPY, .page_size = 1 << 20, .row_group_size = 1 << 20, .dictionary = false}},
        {new_schema, G_N_ELEMENTS(new_schema), 1, 13, {.codec = PQ_CODEC_NONE, .dictionary = true}},
        {new_schema,
         G_N_ELEMENTS(new_schema),
         700,
         14,
         {.codec = PQ_CODEC_NONE,
          .page_size = 512,
          .row_group_size = 8 << 10,
          .dictionary = true,
          .dict_size_limit = 300}},
    };
    enum { N_IN = G_N_ELEMENTS(ins) };
    byte_buf files[N_IN] = {{0}};
    pq_input inputs[N_IN];
    int64_t total = 0;
    for (int i = 0; i < N_IN; i++) {
        write_file(&files[i], ins[i].cols, ins[i].n_cols, &ins[i].opt, ins[i].rows, ins[i].seed);
        inputs[i] = (pq_input){.name = "in.parquet", .data = files[i].data, .size = files[i].len};
        total += ins[i].rows;
    }
    pq_options opt = {
        .codec = PQ_CODEC_ZSTD, .zstd_level = 3, .page_size = 8 << 10, .row_group_size = 64 << 10, .dictionary = true};
    byte_buf out = {0};
    pq_file_metrics m;
    char err[256] = "";
    const int n_out = G_N_ELEMENTS(new_schema);
    pq_read_status st =
        pq_rewrite(inputs, N_IN, new_schema, n_out, &opt, (pq_sink){mem_write, &out}, NULL, &m, err, sizeof err);
    if (st != PQ_READ_OK)
        g_error("rewrite: %s", err);
    g_assert_cmpint(m.num_rows, ==, total);
    g_assert_cmpint(m.file_size, ==, (int64_t)out.len);
    g_assert_cmpint(m.n_columns, ==, n_out);
    for (int c = 0; c < n_out; c++) {
        g_assert_cmpint(m.cols[c].field_id, ==, new_schema[c].field_id);
        g_assert_cmpint(m.cols[c].value_count, ==, total);
        g_assert_true(m.cols[c].has_bounds);
    }
    g_assert_cmpint(m.cols[5].null_count, >=, 3000); /* "added": nulls for the old file */
    g_assert_cmpint(m.n_row_groups, >, 1);

    /* read the output back and compare with each input's rows */
    pq_reader *r;
    st = pq_reader_open(out.data, out.len, "out.parquet", NULL, &r, err, sizeof err);
    if (st != PQ_READ_OK)
        g_error("open: %s", err);
    g_assert_cmpint(pq_reader_num_row_groups(r), ==, m.n_row_groups);
    pq_column_data d = {0};
    for (int c = 0; c < n_out; c++) {
        int file = 0;
        int64_t local = 0;
        for (int g = 0; g < pq_reader_num_row_groups(r); g++) {
            g_assert_cmpint(pq_reader_read_chunk(r, g, c, &d, err, sizeof err), ==, PQ_READ_OK);
            int64_t k = 0;
            for (int64_t i = 0; i < d.n_rows; i++) {
                while (local == ins[file].rows) {
                    file++;
                    local = 0;
                }
                td_val want = {.null = true}, got;
                const pq_column_spec *in_spec = spec_by_id(ins[file].cols, ins[file].n_cols, new_schema[c].field_id);
                if (in_spec)
                    td_expect(in_spec, local, ins[file].seed, &want);
                td_from_data(pq_reader_column_at(r, c), &d, i, &k, &got);
                if (!td_equal(new_schema[c].type, &want, &got))
                    g_error("column %s, file %d row %" G_GINT64_FORMAT ": value differs", new_schema[c].name, file,
                            local);
                local++;
            }
        }
        g_assert_cmpint(file, ==, N_IN - 1);
        g_assert_cmpint(local, ==, ins[N_IN - 1].rows);
    }
    pq_column_data_free(&d);
    pq_reader_free(r);
    pq_file_metrics_clear(&m);
    bb_free(&out);
    for (int i = 0; i < N_IN; i++)
        bb_free(&files[i]);
}

static void test_rewrite_refuses(void)
{
    pq_options wopt = {.codec = PQ_CODEC_SNAPPY, .dictionary = true};
    byte_buf f = {0};
    write_file(&f, old_schema, G_N_ELEMENTS(old_schema), &wopt, 100, 3);
    pq_input in = {.name = "s3://b/t/data/old.parquet", .data = f.data, .size = f.len};
    char err[256];

    /* a required column the old file does not have */
    pq_column_spec req[G_N_ELEMENTS(new_schema)];
    memcpy(req, new_schema, sizeof req);
    req[5].required = true;
    g_assert_cmpint(pq_rewrite_check(&in, req, G_N_ELEMENTS(req), NULL, err, sizeof err), ==, PQ_READ_UNSUPPORTED);
    g_assert_nonnull(strstr(err, "s3://b/t/data/old.parquet"));
    g_assert_nonnull(strstr(err, "'added'"));

    /* string into long is no Iceberg promotion */
    pq_column_spec bad[G_N_ELEMENTS(new_schema)];
    memcpy(bad, new_schema, sizeof bad);
    bad[4].type = (ice_type){ICE_LONG, 0, 0};
    byte_buf out = {0};
    pq_file_metrics m;
    g_assert_cmpint(
        pq_rewrite(&in, 1, bad, G_N_ELEMENTS(bad), &wopt, (pq_sink){mem_write, &out}, NULL, &m, err, sizeof err), ==,
        PQ_READ_UNSUPPORTED);
    g_assert_nonnull(strstr(err, "'name'"));
    g_assert_cmpuint(out.len, ==, 0); /* refused before writing anything */

    /* narrowing decimal precision neither */
    memcpy(bad, new_schema, sizeof bad);
    bad[3].type = (ice_type){ICE_DECIMAL, 4, 2};
    g_assert_cmpint(pq_rewrite_check(&in, bad, G_N_ELEMENTS(bad), NULL, err, sizeof err), ==, PQ_READ_UNSUPPORTED);
    g_test_message("%s", err);
    g_assert_nonnull(strstr(err, "decimal(5, 2)"));

    /* a required output column whose input is optional and holds nulls */
    memcpy(bad, new_schema, sizeof bad);
    bad[4].required = true;
    g_assert_cmpint(
        pq_rewrite(&in, 1, bad, G_N_ELEMENTS(bad), &wopt, (pq_sink){mem_write, &out}, NULL, &m, err, sizeof err), ==,
        PQ_READ_CORRUPT);
    g_assert_nonnull(strstr(err, "required"));

    /* a sink that fails part way */
    size_t budget = 200;
    g_assert_cmpint(pq_rewrite(&in, 1, new_schema, G_N_ELEMENTS(new_schema), &wopt, (pq_sink){failing_write, &budget},
                               NULL, &m, err, sizeof err),
                    ==, PQ_WRITE_FAILED);
    bb_free(&out);
    bb_free(&f);
}

/* One input at a time: a refused file leaves the output usable, a corrupt
 * page in the middle of copying does not. */
static void test_rewriter_incremental(void)
{
    pq_options wopt = {.codec = PQ_CODEC_NONE, .dictionary = true};
    byte_buf good = {0}, other = {0}, bad_page = {0};
    write_file(&good, old_schema, G_N_ELEMENTS(old_schema), &wopt, 300, 21);
    const pq_column_spec foreign[] = {{"x", 20, T(ICE_LONG), true}};
    write_file(&other, foreign, 1, &wopt, 10, 22);
    write_file(&bad_page, new_schema, G_N_ELEMENTS(new_schema), &wopt, 50, 23);
    memset(bad_page.data + 4, 0xFF, 4); /* the first page header of the first chunk */
    pq_input in_good = {"good.parquet", good.data, good.len}, in_other = {"other.parquet", other.data, other.len},
             in_bad = {"bad.parquet", bad_page.data, bad_page.len};
    const int n_out = G_N_ELEMENTS(new_schema);
    char err[256];
    byte_buf out = {0};
    pq_file_metrics m;

    pq_rewriter *rw = pq_rewriter_new(new_schema, n_out, &wopt, (pq_sink){mem_write, &out}, NULL);
    g_assert_cmpint(pq_rewriter_finish(rw, &m, err, sizeof err), ==, PQ_READ_UNSUPPORTED); /* nothing added */
    pq_rewriter_free(rw);

    bb_reset(&out);
    rw = pq_rewriter_new(new_schema, n_out, &wopt, (pq_sink){mem_write, &out}, NULL);
    g_assert_cmpint(pq_rewriter_add(rw, &in_good, err, sizeof err), ==, PQ_READ_OK);
    g_assert_cmpint(pq_rewriter_add(rw, &in_other, err, sizeof err), ==, PQ_READ_UNSUPPORTED);
    g_assert_nonnull(strstr(err, "other.parquet: required column 'id'"));
    g_assert_false(pq_rewriter_failed(rw));
    g_assert_cmpint(pq_rewriter_add(rw, &in_good, err, sizeof err), ==, PQ_READ_OK);
    g_assert_cmpint(pq_rewriter_num_rows(rw), ==, 600);
    g_assert_cmpint(pq_rewriter_finish(rw, &m, err, sizeof err), ==, PQ_READ_OK);
    g_assert_cmpint(m.num_rows, ==, 600);
    pq_file_metrics_clear(&m);
    pq_rewriter_free(rw);
    pq_reader *r;
    g_assert_cmpint(pq_reader_open(out.data, out.len, "out", NULL, &r, err, sizeof err), ==, PQ_READ_OK);
    g_assert_cmpint(pq_reader_num_rows(r), ==, 600);
    pq_reader_free(r);

    bb_reset(&out);
    rw = pq_rewriter_new(new_schema, n_out, &wopt, (pq_sink){mem_write, &out}, NULL);
    g_assert_cmpint(pq_rewriter_add(rw, &in_good, err, sizeof err), ==, PQ_READ_OK);
    g_assert_cmpint(pq_rewriter_add(rw, &in_bad, err, sizeof err), ==, PQ_READ_CORRUPT);
    g_assert_nonnull(strstr(err, "bad.parquet: column 'id', row group 0: page header"));
    g_assert_true(pq_rewriter_failed(rw));
    g_assert_cmpint(pq_rewriter_add(rw, &in_good, err, sizeof err), ==, PQ_WRITE_FAILED);
    g_assert_cmpint(pq_rewriter_finish(rw, &m, err, sizeof err), ==, PQ_WRITE_FAILED);
    pq_rewriter_free(rw);
    bb_free(&out);
    bb_free(&good);
    bb_free(&other);
    bb_free(&bad_page);
}

/* ------------------------------------------------------------ corruption */

typedef struct {
    int ok, corrupt, unsupported, limit;
} fuzz_tally;

/* Like pq_reader_fuzz_one, but counts outcomes so the test knows the
 * mutations reached the decoder and not only the footer checks. */
static void fuzz_count(const uint8_t *data, size_t size, fuzz_tally *t)
{
    pq_reader_limits lim = {.max_page_bytes = 1 << 20, .max_chunk_bytes = 8 << 20, .max_footer_bytes = 1 << 20};
    pq_reader *r;
    char err[256];
    pq_read_status st = pq_reader_open(data, size, "fuzz", &lim, &r, err, sizeof err);
    if (st == PQ_READ_OK) {
        pq_column_data d = {0};
        for (int g = 0; g < pq_reader_num_row_groups(r) && st == PQ_READ_OK; g++)
            for (int c = 0; c < pq_reader_num_columns(r) && st == PQ_READ_OK; c++)
                st = pq_reader_read_chunk(r, g, c, &d, err, sizeof err);
        pq_column_data_free(&d);
        pq_reader_free(r);
    }
    if (st != PQ_READ_OK)
        g_assert_cmpuint(strlen(err), >, 0);
    switch (st) {
    case PQ_READ_OK: t->ok++; break;
    case PQ_READ_CORRUPT: t->corrupt++; break;
    case PQ_READ_UNSUPPORTED: t->unsupported++; break;
    default: t->limit++; break;
    }
    pq_reader_fuzz_one(data, size);
}

static void test_corrupt_input_never_crashes(void)
{
    const pq_codec codecs[] = {PQ_CODEC_NONE, PQ_CODEC_SNAPPY, PQ_CODEC_ZSTD};
    uint64_t rng = 0x5EED;
    fuzz_tally t = {0};
    for (size_t ci = 0; ci < G_N_ELEMENTS(codecs); ci++) {
        pq_options opt = {.codec = codecs[ci],
                          .page_size = 256,
                          .row_group_size = 2 << 10,
                          .dict_size_limit = 200,
                          .dictionary = true};
        byte_buf f = {0};
        write_file(&f, all_types, N_ALL, &opt, 120, 99);
        int ok_before = t.ok;
        fuzz_count(f.data, f.len, &t);
        g_assert_cmpint(t.ok, ==, ++ok_before); /* the valid file itself reads */
        /* every truncation */
        for (size_t n = 0; n < f.len; n++) { /* exactly n bytes, so ASan sees any read past them */
            uint8_t *cut = g_memdup2(f.data, n ? n : 1);
            fuzz_count(cut, n, &t);
            g_free(cut);
        }
        g_assert_cmpint(t.ok, ==, ok_before); /* a truncated file never reads as valid */
        /* bit flips, byte stores and length-like overwrites, half of them in the footer */
        uint8_t *m = g_malloc(f.len);
        for (int i = 0; i < 1500; i++) {
            memcpy(m, f.data, f.len);
            td_mutate(m, f.len, &rng);
            fuzz_count(m, f.len, &t);
        }
        g_free(m);
        bb_free(&f);
    }
    /* the mutations reached every kind of outcome, not only footer refusals */
    g_assert_cmpint(t.corrupt, >, 1000);
    g_assert_cmpint(t.ok, >, 3);
    g_test_message("fuzz outcomes: ok %d corrupt %d unsupported %d limit %d", t.ok, t.corrupt, t.unsupported, t.limit);
}

/* A footer claiming a huge page must fail on the limit, not allocate it. */
static void test_limits_refuse_huge_claims(void)
{
    pq_options opt = {.codec = PQ_CODEC_NONE, .dictionary = false};
    const pq_column_spec col[] = {{"v", 1, T(ICE_LONG), true}};
    byte_buf f = {0};
    write_file(&f, col, 1, &opt, 1000, 5);
    pq_reader_limits lim = {.max_page_bytes = 4096, .max_chunk_bytes = 1 << 20};
    pq_reader *r;
    char err[256];
    g_assert_cmpint(pq_reader_open(f.data, f.len, "big.parquet", &lim, &r, err, sizeof err), ==, PQ_READ_OK);
    pq_column_data d = {0};
    g_assert_cmpint(pq_reader_read_chunk(r, 0, 0, &d, err, sizeof err), ==, PQ_READ_LIMIT);
    g_assert_nonnull(strstr(err, "big.parquet: column 'v'"));
    pq_column_data_free(&d);
    pq_reader_free(r);
    lim = (pq_reader_limits){.max_page_bytes = 1 << 20, .max_chunk_bytes = 4000};
    g_assert_cmpint(pq_reader_open(f.data, f.len, "big.parquet", &lim, &r, err, sizeof err), ==, PQ_READ_OK);
    g_assert_cmpint(pq_reader_read_chunk(r, 0, 0, &d, err, sizeof err), ==, PQ_READ_LIMIT);
    pq_column_data_free(&d);
    pq_reader_free(r);
    bb_free(&f);
}

/* All-null chunks (a column added after the file was written, compacted
 * once) decode into a fresh pq_column_data without touching its NULL buffers. */
static void test_all_null_chunk(void)
{
    const pq_column_spec cols[] = {{"a", 1, T(ICE_LONG), false}, {"b", 2, T(ICE_STRING), false}};
    pq_options opt = {.codec = PQ_CODEC_NONE, .dictionary = true};
    byte_buf f = {0};
    pq_writer *w = pq_writer_new(cols, 2, &opt, (pq_sink){mem_write, &f});
    for (int i = 0; i < 100; i++) {
        pq_put_null(w, 0);
        pq_put_null(w, 1);
    }
    pq_end_rows(w, 100);
    pq_file_metrics m;
    g_assert_cmpint(pq_writer_close(w, &m), ==, 0);
    pq_file_metrics_clear(&m);
    pq_writer_free(w);
    pq_reader *r;
    char err[256];
    g_assert_cmpint(pq_reader_open(f.data, f.len, "nulls", NULL, &r, err, sizeof err), ==, PQ_READ_OK);
    for (int c = 0; c < 2; c++) {
        pq_column_data d = {0};
        g_assert_cmpint(pq_reader_read_chunk(r, 0, c, &d, err, sizeof err), ==, PQ_READ_OK);
        g_assert_cmpint(d.n_rows, ==, 100);
        g_assert_cmpint(d.n_nulls, ==, 100);
        g_assert_cmpint(d.n_values, ==, 0);
        pq_column_data_free(&d);
    }
    pq_reader_free(r);
    bb_free(&f);
}

/* A 2 MB footer listing 2M empty row groups must be refused for its size,
 * not expanded into ~50 MB of structures. */
static void test_hostile_footer_lists(void)
{
    byte_buf f = {0};
    bb_append(&f, "PAR1", 4);
    size_t footer_at = f.len;
    tc_writer t = {.out = &f};
    tc_struct_begin(&t);
    const uint32_t n = 2000000;
    tc_field_list_begin(&t, 4, TC_STRUCT, n);
    bb_reserve(&f, n);
    memset(f.data + f.len, 0, n); /* each: an empty struct (its stop byte) */
    f.len += n;
    tc_struct_end(&t);
    bb_u32le(&f, (uint32_t)(f.len - footer_at));
    bb_append(&f, "PAR1", 4);
    pq_reader *r;
    char err[256];
    g_assert_cmpint(pq_reader_open(f.data, f.len, "lists.parquet", NULL, &r, err, sizeof err), ==, PQ_READ_CORRUPT);
    g_assert_nonnull(strstr(err, "too long for its size"));
    bb_free(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/parquet-reader/round-trip-every-type-codec-and-dictionary-mode", test_round_trip);
    g_test_add_func("/parquet-reader/corrupt-input-gives-errors-never-crashes", test_corrupt_input_never_crashes);
    g_test_add_func("/parquet-reader/limits-refuse-huge-pages-and-chunks", test_limits_refuse_huge_claims);
    g_test_add_func("/parquet-reader/all-null-chunks-decode", test_all_null_chunk);
    g_test_add_func("/parquet-reader/footer-lists-longer-than-plausible-are-refused", test_hostile_footer_lists);
    g_test_add_func("/parquet-rewrite/merges-files-across-schema-evolution", test_rewrite_merges_with_evolution);
    g_test_add_func("/parquet-rewrite/incremental-refusal-keeps-output-corrupt-page-fails-it",
                    test_rewriter_incremental);
    g_test_add_func("/parquet-rewrite/refuses-missing-required-and-incompatible-columns", test_rewrite_refuses);
    return g_test_run();
}
