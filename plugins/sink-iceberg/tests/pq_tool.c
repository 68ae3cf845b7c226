/*
 * Test fixture for test_parquet_reader.py (never installed): drives the
 * Parquet reader, pq_writer and pq_rewrite from the command line so pyarrow
 * can check them from the other side.
 *
 *   pq_tool dump FILE                      rows as JSON lines (after a header line)
 *   pq_tool gen OUT SPEC OPTS ROWS SEED    a file of pq_testdata values via pq_writer
 *   pq_tool rewrite OUT SPEC OPTS IN...    pq_rewrite IN... into OUT; prints metrics JSON
 *   pq_tool fuzz FILE N SEED               every truncation and N mutations through
 *                                          pq_reader_fuzz_one (run it under ASan)
 *
 * SPEC: columns separated by ';', each name:field_id:type:r|o, e.g.
 *       "id:1:long:r;amount:4:decimal(12,2):o". OPTS: "codec=zstd,page=8192,
 *       rg=65536,dict=1,dictlimit=4096" or "-". Exit status: 0 ok, 2
 *       unsupported, 3 corrupt, 4 limit, 5 write failed, 64 usage; the reason
 *       goes to stderr.
 */
#include "parquet_reader.h"
#include "parquet_rewrite.h"
#include "parquet_writer.h"
#include "pq_testdata.h"

#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int exit_code(pq_read_status st)
{
    switch (st) {
    case PQ_READ_OK: return 0;
    case PQ_READ_UNSUPPORTED: return 2;
    case PQ_READ_CORRUPT: return 3;
    case PQ_READ_LIMIT: return 4;
    default: return 5;
    }
}

static void print_json_string(const uint8_t *p, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void print_hex(const uint8_t *p, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
    putchar('"');
}

static void print_int128(__int128 v)
{
    char buf[64];
    int i = sizeof buf - 1;
    buf[i] = 0;
    bool neg = v < 0;
    unsigned __int128 u = neg ? -(unsigned __int128)v : (unsigned __int128)v;
    do {
        buf[--i] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (neg)
        buf[--i] = '-';
    printf("\"%s\"", buf + i);
}

static void print_double(double d)
{
    if (isnan(d))
        printf("\"NaN\"");
    else if (isinf(d))
        printf(d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    else {
        char buf[40];
        snprintf(buf, sizeof buf, "%.17g", d);
        printf(strpbrk(buf, ".en") ? "%s" : "%s.0", buf);
    }
}

static void print_value(const pq_reader_column *c, const pq_column_data *d, int64_t row, int64_t *k)
{
    td_val v;
    td_from_data(c, d, row, k, &v);
    if (v.null) {
        printf("null");
        return;
    }
    int64_t j = *k - 1;
    if (c->has_ice && c->ice.id == ICE_DECIMAL) {
        print_int128(v.q);
        return;
    }
    switch (c->ptype) {
    case PQ_BOOLEAN: printf(v.i ? "true" : "false"); break;
    case PQ_INT32:
    case PQ_INT64: printf("%lld", (long long)v.i); break;
    case PQ_FLOAT:
    case PQ_DOUBLE: print_double(v.f); break;
    case PQ_FIXED_LEN_BYTE_ARRAY: print_hex(d->fixed + (size_t)j * (size_t)c->type_len, (size_t)c->type_len); break;
    default: {
        const uint8_t *p = d->bytes + d->offsets[j];
        size_t n = d->offsets[j + 1] - d->offsets[j];
        if (c->has_ice && c->ice.id == ICE_STRING)
            print_json_string(p, n);
        else
            print_hex(p, n);
    }
    }
}

static int cmd_dump(const char *path)
{
    gchar *buf;
    gsize len;
    GError *e = NULL;
    if (!g_file_get_contents(path, &buf, &len, &e)) {
        fprintf(stderr, "%s\n", e->message);
        return 64;
    }
    char err[512];
    pq_reader *r;
    pq_read_status st = pq_reader_open((const uint8_t *)buf, len, path, NULL, &r, err, sizeof err);
    if (st != PQ_READ_OK) {
        fprintf(stderr, "%s\n", err);
        g_free(buf);
        return exit_code(st);
    }
    int nc = pq_reader_num_columns(r);
    printf("{\"row_groups\":%d,\"rows\":%lld,\"columns\":[", pq_reader_num_row_groups(r),
           (long long)pq_reader_num_rows(r));
    for (int c = 0; c < nc; c++) {
        const pq_reader_column *col = pq_reader_column_at(r, c);
        char t[48];
        printf("%s{\"name\":", c ? "," : "");
        print_json_string((const uint8_t *)col->name, strlen(col->name));
        printf(",\"field_id\":%d,\"required\":%s,\"type\":", col->field_id, col->required ? "true" : "false");
        if (col->has_ice)
            printf("\"%s\"}", ice_type_str(col->ice, t, sizeof t));
        else
            printf("null}");
    }
    printf("]}\n");
    /* all chunks of a row group at once: fine for test files */
    pq_column_data *d = calloc((size_t)nc + 1, sizeof *d);
    int64_t *k = calloc((size_t)nc + 1, sizeof *k);
    for (int g = 0; g < pq_reader_num_row_groups(r) && st == PQ_READ_OK; g++) {
        for (int c = 0; c < nc && st == PQ_READ_OK; c++) {
            st = pq_reader_read_chunk(r, g, c, &d[c], err, sizeof err);
            k[c] = 0;
        }
        if (st != PQ_READ_OK)
            break;
        for (int64_t i = 0; i < pq_reader_row_group_rows(r, g); i++) {
            for (int c = 0; c < nc; c++) {
                printf(c ? "," : "[");
                print_value(pq_reader_column_at(r, c), &d[c], i, &k[c]);
            }
            printf(nc ? "]\n" : "[]\n");
        }
    }
    for (int c = 0; c < nc; c++)
        pq_column_data_free(&d[c]);
    free(d);
    free(k);
    pq_reader_free(r);
    g_free(buf);
    if (st != PQ_READ_OK)
        fprintf(stderr, "%s\n", err);
    return exit_code(st);
}

static int parse_spec(const char *s, pq_column_spec **out)
{
    gchar **cols = g_strsplit(s, ";", -1);
    int n = (int)g_strv_length(cols);
    pq_column_spec *spec = calloc((size_t)n + 1, sizeof *spec);
    for (int i = 0; i < n; i++) {
        gchar **f = g_strsplit(cols[i], ":", 4);
        if (g_strv_length(f) != 4 || !ice_type_parse(f[2], &spec[i].type)) {
            fprintf(stderr, "bad column spec '%s'\n", cols[i]);
            exit(64);
        }
        spec[i].name = g_strdup(f[0]);
        spec[i].field_id = atoi(f[1]);
        spec[i].required = f[3][0] == 'r';
        g_strfreev(f);
    }
    g_strfreev(cols);
    *out = spec;
    return n;
}

static void spec_free(pq_column_spec *spec, int n)
{
    for (int i = 0; i < n; i++)
        g_free((char *)spec[i].name);
    free(spec);
}

static pq_options parse_opts(const char *s)
{
    pq_options o = {.codec = PQ_CODEC_ZSTD, .zstd_level = 3, .dictionary = true};
    gchar **kv = g_strsplit(s, ",", -1);
    for (gchar **p = kv; *p; p++) {
        if (g_str_has_prefix(*p, "codec="))
            o.codec = !strcmp(*p + 6, "snappy") ? PQ_CODEC_SNAPPY
                      : !strcmp(*p + 6, "none") ? PQ_CODEC_NONE
                                                : PQ_CODEC_ZSTD;
        else if (g_str_has_prefix(*p, "page="))
            o.page_size = atoll(*p + 5);
        else if (g_str_has_prefix(*p, "rg="))
            o.row_group_size = atoll(*p + 3);
        else if (g_str_has_prefix(*p, "dict="))
            o.dictionary = atoi(*p + 5) != 0;
        else if (g_str_has_prefix(*p, "dictlimit="))
            o.dict_size_limit = atoll(*p + 10);
    }
    g_strfreev(kv);
    return o;
}

static int file_write(void *ctx, const void *p, size_t n) { return fwrite(p, 1, n, ctx) == n ? 0 : -1; }

static int cmd_gen(const char *out, const char *spec_s, const char *opts, int64_t rows, uint64_t seed)
{
    pq_column_spec *spec;
    int n = parse_spec(spec_s, &spec);
    pq_options o = parse_opts(opts);
    FILE *f = fopen(out, "wb");
    if (!f)
        return 64;
    pq_writer *w = pq_writer_new(spec, n, &o, (pq_sink){file_write, f});
    for (int64_t r = 0; r < rows; r++) {
        for (int c = 0; c < n; c++) {
            td_val v;
            td_expect(&spec[c], r, seed, &v);
            td_put(w, c, &spec[c], &v);
        }
        if (pq_end_rows(w, 1) != 0)
            return 5;
    }
    pq_file_metrics m;
    int rc = pq_writer_close(w, &m) == 0 ? 0 : 5;
    pq_file_metrics_clear(&m);
    pq_writer_free(w);
    spec_free(spec, n);
    return fclose(f) == 0 ? rc : 5;
}

static int cmd_rewrite(const char *out, const char *spec_s, const char *opts, int n_in, char **paths)
{
    pq_column_spec *spec;
    int n = parse_spec(spec_s, &spec);
    pq_options o = parse_opts(opts);
    pq_input *in = calloc((size_t)n_in + 1, sizeof *in);
    for (int i = 0; i < n_in; i++) {
        gchar *buf;
        gsize len;
        if (!g_file_get_contents(paths[i], &buf, &len, NULL))
            return 64;
        in[i] = (pq_input){.name = paths[i], .data = (const uint8_t *)buf, .size = len};
    }
    FILE *f = fopen(out, "wb");
    if (!f)
        return 64;
    char err[512];
    pq_file_metrics m;
    pq_read_status st = pq_rewrite(in, n_in, spec, n, &o, (pq_sink){file_write, f}, NULL, &m, err, sizeof err);
    if (fclose(f) != 0 && st == PQ_READ_OK)
        st = PQ_WRITE_FAILED;
    for (int i = 0; i < n_in; i++)
        g_free((gchar *)in[i].data);
    free(in);
    spec_free(spec, n);
    if (st != PQ_READ_OK) {
        fprintf(stderr, "%s\n", err);
        return exit_code(st);
    }
    printf("{\"num_rows\":%lld,\"file_size\":%lld,\"row_groups\":%d,\"columns\":[", (long long)m.num_rows,
           (long long)m.file_size, m.n_row_groups);
    for (int c = 0; c < m.n_columns; c++)
        printf("%s{\"field_id\":%d,\"values\":%lld,\"nulls\":%lld,\"nans\":%lld,\"bounds\":%s}", c ? "," : "",
               m.cols[c].field_id, (long long)m.cols[c].value_count, (long long)m.cols[c].null_count,
               (long long)m.cols[c].nan_count, m.cols[c].has_bounds ? "true" : "false");
    printf("]}\n");
    pq_file_metrics_clear(&m);
    return 0;
}

static int cmd_fuzz(const char *path, int n, uint64_t seed)
{
    gchar *buf;
    gsize len;
    if (!g_file_get_contents(path, &buf, &len, NULL) || len <= 8)
        return 64;
    uint8_t *m = g_malloc(len);
    for (gsize k = 0; k < len; k++) { /* truncations, each in a buffer of exactly k bytes for ASan */
        uint8_t *t = g_memdup2(buf, k ? k : 1);
        pq_reader_fuzz_one(t, k);
        g_free(t);
    }
    for (int i = 0; i < n; i++) {
        memcpy(m, buf, len);
        td_mutate(m, len, &seed);
        pq_reader_fuzz_one(m, len);
    }
    g_free(m);
    g_free(buf);
    printf("ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "fuzz"))
        return cmd_fuzz(argv[2], atoi(argv[3]), strtoull(argv[4], NULL, 10));
    if (argc == 3 && !strcmp(argv[1], "dump"))
        return cmd_dump(argv[2]);
    if (argc == 7 && !strcmp(argv[1], "gen"))
        return cmd_gen(argv[2], argv[3], argv[4], atoll(argv[5]), strtoull(argv[6], NULL, 10));
    if (argc >= 6 && !strcmp(argv[1], "rewrite"))
        return cmd_rewrite(argv[2], argv[3], argv[4], argc - 5, argv + 5);
    fprintf(stderr, "usage: pq_tool dump FILE | gen OUT SPEC OPTS ROWS SEED | rewrite OUT SPEC OPTS IN...\n");
    return 64;
}
