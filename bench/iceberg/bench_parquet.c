/*
 * Parquet encode benchmark: sink-iceberg's writer on the e-commerce event
 * schema. Builds N rows as Arrow arrays in memory (not timed), then times
 * encoding them (in batches, as the sink receives them) into one Parquet
 * file, the way the sink does: arrow_append_column per column, row groups
 * cut by size, footer. Prints one JSON line; bench.py compares it with
 * pyarrow writing the same rows.
 *
 *   bench_parquet ROWS CODEC(zstd|snappy|none) OUT.parquet [ROW_GROUP_BYTES] [BATCH]
 */
#define _GNU_SOURCE
#include "arrow_columns.h"
#include "bench_events.h"
#include "parquet_writer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint8_t *validity;
    void *values;
    char *data;
    size_t len, cap;
    int64_t nulls;
    struct ArrowArray arr;
    const void *bufs[3];
} column;

static void str_put(column *c, int64_t row, const char *s)
{
    int32_t *off = c->values;
    if (s) {
        size_t n = strlen(s);
        if (c->len + n > c->cap) {
            c->cap = (c->cap + n) * 2;
            c->data = realloc(c->data, c->cap);
        }
        memcpy(c->data + c->len, s, n);
        c->len += n;
        c->validity[row / 8] |= (uint8_t)(1 << (row % 8));
    } else
        c->nulls++;
    off[row + 1] = (int32_t)c->len;
}

static void fixed_valid(column *c, int64_t row, int valid)
{
    if (valid)
        c->validity[row / 8] |= (uint8_t)(1 << (row % 8));
    else
        c->nulls++;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int file_write(void *ctx, const void *p, size_t n) { return fwrite(p, 1, n, ctx) == n ? 0 : -1; }

enum {
    C_ID,
    C_TYPE,
    C_USER,
    C_SESSION,
    C_LOC,
    C_DEV,
    C_TS,
    C_QUERY,
    C_URL,
    C_PRODUCT,
    C_PRICE,
    C_QTY,
    C_CUR,
    C_DATE,
    NCOLS
};

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s ROWS CODEC OUT [ROW_GROUP_BYTES] [BATCH]\n", argv[0]);
        return 2;
    }
    int64_t n = atoll(argv[1]);
    const char *codec = argv[2];
    int64_t rg = argc > 4 ? atoll(argv[4]) : 128 << 20;
    int64_t batch = argc > 5 ? atoll(argv[5]) : 1024;
    const char *fmts[NCOLS] = {"u", "u", "u", "u", "u", "u", "tsu:UTC", "u", "u", "u", "d:10,2", "i", "u", "tdD"};
    const char *names[NCOLS] = {"event_id", "event_type", "user_id",  "session_id", "location",
                                "device",   "timestamp",  "query",    "page_url",   "product_id",
                                "price",    "quantity",   "currency", "event_date"};
    ice_type itypes[NCOLS] = {{ICE_STRING},         {ICE_STRING},      {ICE_STRING}, {ICE_STRING}, {ICE_STRING},
                              {ICE_STRING},         {ICE_TIMESTAMPTZ}, {ICE_STRING}, {ICE_STRING}, {ICE_STRING},
                              {ICE_DECIMAL, 10, 2}, {ICE_INT},         {ICE_STRING}, {ICE_DATE}};
    column cols[NCOLS];
    memset(cols, 0, sizeof cols);
    for (int c = 0; c < NCOLS; c++) {
        cols[c].validity = calloc((size_t)n / 8 + 2, 1);
        size_t w = fmts[c][0] == 'u' ? 4 : fmts[c][0] == 'd' ? 16 : strcmp(fmts[c], "tsu:UTC") == 0 ? 8 : 4;
        cols[c].values = calloc((size_t)n + 1, w);
    }
    bench_events gen;
    bench_events_init(&gen);
    char buf[64];
    for (int64_t i = 0; i < n; i++) {
        bench_event e;
        bench_event_next(&gen, i, &e);
        str_put(&cols[C_ID], i, e.id);
        str_put(&cols[C_TYPE], i, e.type_name);
        str_put(&cols[C_USER], i, e.user);
        str_put(&cols[C_SESSION], i, e.session);
        str_put(&cols[C_LOC], i, e.location);
        str_put(&cols[C_DEV], i, e.device);
        ((int64_t *)cols[C_TS].values)[i] = e.ts_us;
        fixed_valid(&cols[C_TS], i, 1);
        str_put(&cols[C_QUERY], i, e.query);
        snprintf(buf, sizeof buf, "/p/%u", e.product_no);
        str_put(&cols[C_URL], i, e.type == BE_PAGE_VIEW ? buf : NULL);
        str_put(&cols[C_PRODUCT], i, e.type == BE_SEARCH ? NULL : e.product);
        __int128 price = e.price_cents;
        memcpy((uint8_t *)cols[C_PRICE].values + i * 16, &price, 16);
        fixed_valid(&cols[C_PRICE], i, e.type >= BE_ADD_TO_CART);
        ((int32_t *)cols[C_QTY].values)[i] = e.quantity;
        fixed_valid(&cols[C_QTY], i, e.type >= BE_ADD_TO_CART);
        str_put(&cols[C_CUR], i, e.currency);
        ((int32_t *)cols[C_DATE].values)[i] = e.date;
        fixed_valid(&cols[C_DATE], i, 1);
    }
    arrow_kind kinds[NCOLS];
    pq_column_spec spec[NCOLS];
    int64_t input_bytes = 0;
    for (int c = 0; c < NCOLS; c++) {
        column *col = &cols[c];
        if (!col->data)
            col->data = calloc(1, 1);
        col->bufs[0] = col->validity;
        col->bufs[1] = col->values;
        col->bufs[2] = col->data;
        col->arr.length = n;
        col->arr.null_count = col->nulls;
        col->arr.n_buffers = fmts[c][0] == 'u' ? 3 : 2;
        col->arr.buffers = col->bufs;
        arrow_kind_of(fmts[c], &kinds[c]);
        spec[c] = (pq_column_spec){names[c], c + 1, itypes[c], c <= 2 || c == C_TS};
        /* Arrow in-memory size, as pyarrow's Table.nbytes counts it */
        size_t w = fmts[c][0] == 'u' ? 4 : fmts[c][0] == 'd' ? 16 : strcmp(fmts[c], "tsu:UTC") == 0 ? 8 : 4;
        input_bytes += (int64_t)((size_t)n * w + col->len + (size_t)(n + 7) / 8);
    }
    pq_options o = {.codec = strcmp(codec, "zstd") == 0     ? PQ_CODEC_ZSTD
                             : strcmp(codec, "snappy") == 0 ? PQ_CODEC_SNAPPY
                                                            : PQ_CODEC_NONE,
                    .zstd_level = 1,
                    .page_size = 1 << 20,
                    .row_group_size = rg,
                    .dict_size_limit = 1 << 20,
                    .dictionary = true,
                    .created_by = "ecflow version 0.1.0 (build bench)"};
    uint32_t *rows = malloc(sizeof(uint32_t) * (size_t)batch);
    FILE *f = fopen(argv[3], "wb");
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    double t0 = now_s();
    pq_writer *w = pq_writer_new(spec, NCOLS, &o, (pq_sink){file_write, f});
    for (int64_t start = 0; start < n; start += batch) {
        uint32_t k = (uint32_t)(n - start < batch ? n - start : batch);
        for (uint32_t r = 0; r < k; r++)
            rows[r] = (uint32_t)(start + r);
        for (int c = 0; c < NCOLS; c++)
            arrow_append_column(w, c, &cols[c].arr, kinds[c], 0, rows, k, itypes[c]);
        pq_end_rows(w, k);
    }
    pq_file_metrics m;
    pq_writer_close(w, &m);
    fclose(f);
    double secs = now_s() - t0;
    pq_writer_free(w);
    printf("{\"rows\": %" PRId64 ", \"seconds\": %.6f, \"file_size\": %" PRId64 ", \"input_bytes\": %" PRId64
           ", \"row_groups\": %d}\n",
           n, secs, m.file_size, input_bytes, m.n_row_groups);
    pq_file_metrics_clear(&m);
    for (int c = 0; c < NCOLS; c++) {
        free(cols[c].validity);
        free(cols[c].values);
        free(cols[c].data);
    }
    free(rows);
    return 0;
}
