/*
 * Compaction benchmark: pq_rewrite (decode N small Parquet files, re-encode
 * their rows through pq_writer into one file) against pq_writer alone
 * writing the same rows from memory, in the same run.
 *
 * Builds ROWS e-commerce events (uuid / type / user / session / city /
 * device / url / product / currency strings, timestamptz, double price,
 * decimal(10,2) amount, int quantity, date; nulls where an event type has no
 * such field) in memory, writes them as FILES small zstd files (not timed),
 * then times, REPEATS times each, alternating:
 *   writer:  all rows from memory -> one file through pq_writer;
 *   decode:  pq_reader decoding every column chunk of the small files;
 *   rewrite: pq_rewrite of the small files -> one file.
 * Output goes to a byte-counting sink (no disk). Prints one JSON line with
 * medians: wall seconds, rows/s, CPU microseconds per row (process CPU time),
 * and rewrite/writer ratios.
 *
 *   iceberg_rewrite [ROWS=1000000] [FILES=50] [REPEATS=3]
 */
#define _GNU_SOURCE
#include "bench_events.h"
#include "parquet_reader.h"
#include "parquet_rewrite.h"
#include "parquet_writer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    C_ID,
    C_TYPE,
    C_USER,
    C_SESSION,
    C_LOC,
    C_DEV,
    C_TS,
    C_URL,
    C_PRODUCT,
    C_PRICE,
    C_AMOUNT,
    C_QTY,
    C_CUR,
    C_DATE,
    NCOLS
};

static const pq_column_spec spec[NCOLS] = {
    {"event_id", 1, {ICE_STRING}, true},         {"event_type", 2, {ICE_STRING}, true},
    {"user_id", 3, {ICE_STRING}, true},          {"session_id", 4, {ICE_STRING}, false},
    {"location", 5, {ICE_STRING}, false},        {"device", 6, {ICE_STRING}, false},
    {"timestamp", 7, {ICE_TIMESTAMPTZ}, true},   {"page_url", 8, {ICE_STRING}, false},
    {"product_id", 9, {ICE_STRING}, false},      {"price", 10, {ICE_DOUBLE}, false},
    {"amount", 11, {ICE_DECIMAL, 10, 2}, false}, {"quantity", 12, {ICE_INT}, false},
    {"currency", 13, {ICE_STRING}, false},       {"event_date", 14, {ICE_DATE}, true},
};

typedef struct {
    uint8_t *valid;
    int64_t *num; /* ints, timestamps, decimals; doubles bit-cast */
    uint32_t *off;
    char *data;
    size_t len, cap;
} column;

static column cols[NCOLS];
static int64_t n_rows;

static void str_set(int c, int64_t row, const char *s)
{
    column *col = &cols[c];
    if (s) {
        size_t n = strlen(s);
        if (col->len + n > col->cap) {
            col->cap = (col->cap + n) * 2;
            col->data = realloc(col->data, col->cap);
        }
        memcpy(col->data + col->len, s, n);
        col->len += n;
        col->valid[row] = 1;
    }
    col->off[row + 1] = (uint32_t)col->len;
}

static void num_set(int c, int64_t row, int64_t v, int valid)
{
    cols[c].num[row] = v;
    cols[c].valid[row] = (uint8_t)valid;
}

static void generate(int64_t n)
{
    for (int c = 0; c < NCOLS; c++) {
        cols[c].valid = calloc((size_t)n, 1);
        cols[c].num = calloc((size_t)n, sizeof(int64_t));
        cols[c].off = calloc((size_t)n + 1, sizeof(uint32_t));
    }
    bench_events gen;
    bench_events_init(&gen);
    char buf[64];
    for (int64_t i = 0; i < n; i++) {
        bench_event e;
        bench_event_next(&gen, i, &e);
        str_set(C_ID, i, e.id);
        str_set(C_TYPE, i, e.type_name);
        str_set(C_USER, i, e.user);
        str_set(C_SESSION, i, e.session);
        str_set(C_LOC, i, e.location);
        str_set(C_DEV, i, e.device);
        num_set(C_TS, i, e.ts_us, 1);
        snprintf(buf, sizeof buf, "https://shop.example/p/%u", e.product_no);
        str_set(C_URL, i, e.type == BE_PAGE_VIEW ? buf : NULL);
        str_set(C_PRODUCT, i, e.type == BE_SEARCH ? NULL : e.product);
        double price = (double)e.price_cents / 100.0;
        int64_t bits;
        memcpy(&bits, &price, 8);
        num_set(C_PRICE, i, bits, e.type >= BE_ADD_TO_CART);
        num_set(C_AMOUNT, i, e.price_cents * 3, e.type == BE_PURCHASE);
        num_set(C_QTY, i, e.quantity, e.type >= BE_ADD_TO_CART);
        str_set(C_CUR, i, e.currency);
        num_set(C_DATE, i, e.date, 1);
    }
    n_rows = n;
}

/* Rows [from, to) into w, in batches of 1024 as the sink receives them. */
static void feed(pq_writer *w, int64_t from, int64_t to)
{
    for (int64_t s = from; s < to; s += 1024) {
        int64_t e = s + 1024 < to ? s + 1024 : to;
        for (int c = 0; c < NCOLS; c++) {
            const column *col = &cols[c];
            for (int64_t i = s; i < e; i++) {
                if (!col->valid[i]) {
                    pq_put_null(w, c);
                    continue;
                }
                switch (spec[c].type.id) {
                case ICE_STRING: pq_put_bytes(w, c, col->data + col->off[i], col->off[i + 1] - col->off[i]); break;
                case ICE_TIMESTAMPTZ: pq_put_i64(w, c, col->num[i]); break;
                case ICE_DOUBLE: {
                    double d;
                    memcpy(&d, &col->num[i], 8);
                    pq_put_double(w, c, d);
                    break;
                }
                case ICE_DECIMAL: pq_put_decimal(w, c, col->num[i]); break;
                default: pq_put_i32(w, c, (int32_t)col->num[i]); break;
                }
            }
        }
        pq_end_rows(w, (uint32_t)(e - s));
    }
}

static int mem_write(void *ctx, const void *p, size_t n)
{
    bb_append(ctx, p, n);
    return 0;
}

static int count_write(void *ctx, const void *p, size_t n)
{
    (void)p;
    *(int64_t *)ctx += (int64_t)n;
    return 0;
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static const pq_options out_opt = {.codec = PQ_CODEC_ZSTD,
                                   .zstd_level = 1,
                                   .page_size = 1 << 20,
                                   .row_group_size = 128 << 20,
                                   .dict_size_limit = 1 << 20,
                                   .dictionary = true,
                                   .created_by = "ecflow bench"};

typedef struct {
    double wall, cpu;
} timing;

static timing time_writer(void)
{
    int64_t bytes = 0;
    double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    pq_writer *w = pq_writer_new(spec, NCOLS, &out_opt, (pq_sink){count_write, &bytes});
    feed(w, 0, n_rows);
    pq_file_metrics m;
    pq_writer_close(w, &m);
    pq_file_metrics_clear(&m);
    pq_writer_free(w);
    return (timing){clock_s(CLOCK_MONOTONIC) - w0, clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0};
}

static timing time_decode(const pq_input *in, int n_in)
{
    double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    pq_column_data d = {0};
    char err[256];
    for (int f = 0; f < n_in; f++) {
        pq_reader *r;
        if (pq_reader_open(in[f].data, in[f].size, in[f].name, NULL, &r, err, sizeof err) != PQ_READ_OK) {
            fprintf(stderr, "%s\n", err);
            exit(1);
        }
        for (int g = 0; g < pq_reader_num_row_groups(r); g++)
            for (int c = 0; c < NCOLS; c++)
                if (pq_reader_read_chunk(r, g, c, &d, err, sizeof err) != PQ_READ_OK) {
                    fprintf(stderr, "%s\n", err);
                    exit(1);
                }
        pq_reader_free(r);
    }
    pq_column_data_free(&d);
    return (timing){clock_s(CLOCK_MONOTONIC) - w0, clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0};
}

static timing time_rewrite(const pq_input *in, int n_in, int64_t *out_size, int *out_groups)
{
    int64_t bytes = 0;
    char err[256];
    pq_file_metrics m;
    double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    if (pq_rewrite(in, n_in, spec, NCOLS, &out_opt, (pq_sink){count_write, &bytes}, NULL, &m, err, sizeof err) !=
        PQ_READ_OK) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    timing t = {clock_s(CLOCK_MONOTONIC) - w0, clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0};
    if (m.num_rows != n_rows) {
        fprintf(stderr, "rewrite wrote %lld rows of %lld\n", (long long)m.num_rows, (long long)n_rows);
        exit(1);
    }
    *out_size = m.file_size;
    *out_groups = m.n_row_groups;
    pq_file_metrics_clear(&m);
    return t;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    int64_t rows = argc > 1 ? atoll(argv[1]) : 1000000;
    int files = argc > 2 ? atoi(argv[2]) : 50;
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    if (rows < files || files < 1 || reps < 1 || reps > 50) {
        fprintf(stderr, "usage: %s [ROWS] [FILES] [REPEATS]\n", argv[0]);
        return 2;
    }
    generate(rows);
    /* the small files a streaming sink leaves behind: one row group each */
    pq_input *in = calloc((size_t)files, sizeof *in);
    byte_buf *bufs = calloc((size_t)files, sizeof *bufs);
    int64_t in_bytes = 0;
    for (int f = 0; f < files; f++) {
        pq_writer *w = pq_writer_new(spec, NCOLS, &out_opt, (pq_sink){mem_write, &bufs[f]});
        feed(w, rows * f / files, rows * (f + 1) / files);
        pq_file_metrics m;
        pq_writer_close(w, &m);
        pq_file_metrics_clear(&m);
        pq_writer_free(w);
        in[f] = (pq_input){.name = "small.parquet", .data = bufs[f].data, .size = bufs[f].len};
        in_bytes += (int64_t)bufs[f].len;
    }
    double ww[50], wc[50], dw[50], dc[50], rw[50], rc[50];
    int64_t out_size = 0;
    int out_groups = 0;
    for (int i = 0; i < reps; i++) {
        timing t = time_writer();
        ww[i] = t.wall, wc[i] = t.cpu;
        t = time_decode(in, files);
        dw[i] = t.wall, dc[i] = t.cpu;
        t = time_rewrite(in, files, &out_size, &out_groups);
        rw[i] = t.wall, rc[i] = t.cpu;
    }
    double mww = median(ww, reps), mwc = median(wc, reps), mdw = median(dw, reps), mdc = median(dc, reps),
           mrw = median(rw, reps), mrc = median(rc, reps);
    double n = (double)rows;
    printf("{\"rows\": %lld, \"input_files\": %d, \"input_bytes\": %lld, \"output_bytes\": %lld, "
           "\"output_row_groups\": %d, \"repeats\": %d, "
           "\"writer\": {\"seconds\": %.4f, \"rows_per_s\": %.0f, \"cpu_us_per_row\": %.3f}, "
           "\"decode\": {\"seconds\": %.4f, \"rows_per_s\": %.0f, \"cpu_us_per_row\": %.3f}, "
           "\"rewrite\": {\"seconds\": %.4f, \"rows_per_s\": %.0f, \"cpu_us_per_row\": %.3f}, "
           "\"rewrite_over_writer_cpu\": %.2f, \"rewrite_over_writer_wall\": %.2f}\n",
           (long long)rows, files, (long long)in_bytes, (long long)out_size, out_groups, reps, mww, n / mww,
           mwc * 1e6 / n, mdw, n / mdw, mdc * 1e6 / n, mrw, n / mrw, mrc * 1e6 / n, mrc / mwc, mrw / mww);
    for (int f = 0; f < files; f++)
        bb_free(&bufs[f]);
    free(bufs);
    free(in);
    for (int c = 0; c < NCOLS; c++) {
        free(cols[c].valid);
        free(cols[c].num);
        free(cols[c].off);
        free(cols[c].data);
    }
    return 0;
}
