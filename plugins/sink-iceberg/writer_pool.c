/* The per-partition writer pool of sink-iceberg: see writer_pool.h. */
#include "writer_pool.h"

#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    file_io *io;
    fio_out *out;
} out_ctx;

typedef struct {
    uint8_t *key; /* serialized partition tuple: the hash key */
    size_t key_len;
    part_value *values;
    pq_writer *pq;
    fio_out *out;
    out_ctx octx; /* what the Parquet writer's sink writes through */
    char *location;
    int64_t last_used;
    /* rows of the current batch */
    uint32_t *rows;
    uint32_t n_rows, cap_rows;
} part_writer;

struct writer_pool {
    wp_layout l;
    wp_events ev;
    GHashTable *writers; /* open writers by partition */
    int64_t use_clock;
    int64_t file_seq;
    byte_buf keybuf;
};

static guint writer_hash(gconstpointer p)
{
    const part_writer *w = p;
    guint h = 2166136261u;
    for (size_t i = 0; i < w->key_len; i++)
        h = (h ^ w->key[i]) * 16777619u;
    return h;
}

static gboolean writer_equal(gconstpointer a, gconstpointer b)
{
    const part_writer *x = a, *y = b;
    return x->key_len == y->key_len && memcmp(x->key, y->key, x->key_len) == 0;
}

static int out_write(void *ctx, const void *p, size_t n)
{
    out_ctx *o = ctx;
    return o->io->write(o->out, p, n);
}

static void writer_free(part_writer *w)
{
    g_free(w->key);
    g_free(w->values);
    g_free(w->location);
    g_free(w->rows);
    g_free(w);
}

/* Parses the key back into values whose bytes point into w->key. */
static void key_to_values(const part_spec *spec, part_writer *w)
{
    w->values = g_new0(part_value, (gsize)spec->n_fields + 1);
    const uint8_t *p = w->key;
    for (int i = 0; i < spec->n_fields; i++) {
        part_value *v = &w->values[i];
        v->is_null = *p++ != 0;
        if (v->is_null)
            continue;
        switch (spec->fields[i].result.id) {
        case ICE_STRING:
        case ICE_BINARY:
            memcpy(&v->n, p, 4);
            v->p = p + 4;
            p += 4 + v->n;
            break;
        case ICE_FLOAT:
        case ICE_DOUBLE:
            memcpy(&v->d, p, 8);
            p += 8;
            break;
        case ICE_DECIMAL:
            memcpy(&v->dec, p, 16);
            p += 16;
            break;
        default:
            memcpy(&v->i, p, 8);
            p += 8;
            break;
        }
    }
}

/* Serializes row i's partition tuple into p->keybuf. */
static void row_key(writer_pool *p, const struct ArrowArray *rec, int64_t i)
{
    const part_spec *spec = p->l.spec;
    byte_buf *k = &p->keybuf;
    bb_reset(k);
    for (int f = 0; f < spec->n_fields; f++) {
        const part_field *pf = &spec->fields[f];
        const part_source *src = &p->l.psrc[f];
        part_value v = {.is_null = true};
        if (src->input_col >= 0 && pf->transform != PT_VOID)
            arrow_cell(rec->children[src->input_col], src->kind, rec->offset + i, &v);
        bb_byte(k, v.is_null ? 1 : 0);
        if (v.is_null)
            continue;
        if (pf->transform != PT_IDENTITY) {
            int32_t r = src->kind == AC_DATE32 ? part_apply_date(pf->transform, (int32_t)v.i)
                                               : part_apply_ts(pf->transform, v.i);
            int64_t r64 = r;
            bb_append(k, &r64, 8);
            continue;
        }
        switch (pf->result.id) {
        case ICE_STRING:
        case ICE_BINARY: {
            uint32_t n = v.n;
            bb_append(k, &n, 4);
            bb_append(k, v.p, n);
            break;
        }
        case ICE_FLOAT:
        case ICE_DOUBLE: bb_append(k, &v.d, 8); break;
        case ICE_DECIMAL: bb_append(k, &v.dec, 16); break;
        default: bb_append(k, &v.i, 8); break;
        }
    }
}

static bool writer_open_file(writer_pool *p, part_writer *w, char **err)
{
    const part_spec *spec = p->l.spec;
    byte_buf path = {0};
    bb_str(&path, "data/");
    for (int i = 0; i < spec->n_fields; i++) {
        bb_str(&path, spec->fields[i].name);
        bb_byte(&path, '=');
        part_value_to_path(&spec->fields[i], &w->values[i], &path);
        bb_byte(&path, '/');
    }
    char name[96];
    snprintf(name, sizeof name, "%s-%05" PRId64 ".parquet", p->l.run_id, ++p->file_seq);
    bb_str(&path, name);
    bb_byte(&path, 0);
    w->location = fio_join(p->l.location, (const char *)path.data);
    bb_free(&path);
    w->out = p->l.io->create(p->l.io, w->location, err);
    if (!w->out) {
        g_clear_pointer(&w->location, g_free); /* the next batch tries a new file */
        return false;
    }
    w->octx.io = p->l.io;
    w->octx.out = w->out;
    w->pq = pq_writer_new(p->l.cols, p->l.n_cols, p->l.pq, (pq_sink){out_write, &w->octx});
    return true;
}

/* Why w's file could not be written: the IO's reason (the OS error) when it
 * has one. */
static char *write_error(const writer_pool *p, const part_writer *w)
{
    char *e = w->out ? p->l.io->error(w->out) : NULL;
    return e ? e : g_strdup_printf("cannot write %s", w->location);
}

/* Finishes w's file: footer, close, and a data_file for the next commit. */
static bool writer_finish(writer_pool *p, part_writer *w, char **err)
{
    if (!w->pq)
        return true;
    data_file *df = g_new0(data_file, 1);
    int rc = pq_writer_close(w->pq, &df->metrics);
    bool ok = rc == 0;
    char *e = NULL;
    if (ok)
        ok = p->l.io->close(w->out, &e) == 0;
    else {
        e = write_error(p, w);
        p->l.io->abort(w->out);
    }
    w->out = NULL;
    pq_writer_free(w->pq);
    w->pq = NULL;
    if (!ok) {
        *err = e;
        data_file_free(df);
        g_clear_pointer(&w->location, g_free);
        return false;
    }
    df->location = w->location;
    w->location = NULL;
    /* the partition tuple, with its own copy of the key bytes */
    df->part_bytes = g_memdup2(w->key, w->key_len);
    part_writer tmp = {.key = df->part_bytes, .key_len = w->key_len};
    key_to_values(p->l.spec, &tmp);
    df->partition = tmp.values;
    p->ev.file_done(p->ev.ctx, df);
    return true;
}

static void finish_and_drop(writer_pool *p, part_writer *w)
{
    char *err = NULL;
    if (!writer_finish(p, w, &err))
        p->ev.failed(p->ev.ctx, err);
    g_hash_table_remove(p->writers, w);
}

writer_pool *wp_new(wp_events ev)
{
    writer_pool *p = g_new0(writer_pool, 1);
    p->ev = ev;
    p->writers = g_hash_table_new_full(writer_hash, writer_equal, (GDestroyNotify)writer_free, NULL);
    return p;
}

void wp_set_layout(writer_pool *p, const wp_layout *layout) { p->l = *layout; }

unsigned wp_open_count(const writer_pool *p) { return g_hash_table_size(p->writers); }

void wp_write(writer_pool *p, const struct ArrowArray *rec, uint32_t n, const uint8_t *fate, uint8_t take,
              int64_t target_file_size)
{
    /* 1. each row to its partition's writer */
    GPtrArray *touched = g_ptr_array_new();
    int64_t now = ++p->use_clock;
    for (uint32_t i = 0; i < n; i++) {
        if (fate[i] != take)
            continue;
        row_key(p, rec, i);
        part_writer probe = {.key = p->keybuf.data, .key_len = p->keybuf.len};
        part_writer *w = g_hash_table_lookup(p->writers, &probe);
        if (!w) {
            w = g_new0(part_writer, 1);
            w->key = g_memdup2(p->keybuf.data, p->keybuf.len);
            w->key_len = p->keybuf.len;
            key_to_values(p->l.spec, w);
            g_hash_table_add(p->writers, w);
        }
        if (w->n_rows == 0)
            g_ptr_array_add(touched, w);
        if (w->n_rows == w->cap_rows) {
            w->cap_rows = w->cap_rows ? w->cap_rows * 2 : 256;
            w->rows = g_renew(uint32_t, w->rows, w->cap_rows);
        }
        w->rows[w->n_rows++] = i;
        w->last_used = now;
    }

    /* 2. column by column into each writer */
    for (guint t = 0; t < touched->len; t++) {
        part_writer *w = g_ptr_array_index(touched, t);
        if (!w->pq) {
            char *err = NULL;
            if (!writer_open_file(p, w, &err)) {
                p->ev.failed(p->ev.ctx, err);
                w->n_rows = 0;
                continue;
            }
        }
        for (int c = 0; c < p->l.n_cols; c++)
            arrow_append_column(w->pq, c, rec->children[c], p->l.kinds[c], rec->offset, w->rows, w->n_rows,
                                p->l.cols[c].type);
        if (pq_end_rows(w->pq, w->n_rows) != 0)
            p->ev.failed(p->ev.ctx, write_error(p, w));
        w->n_rows = 0;
        if (pq_estimated_size(w->pq) >= target_file_size) {
            char *err = NULL;
            if (!writer_finish(p, w, &err))
                p->ev.failed(p->ev.ctx, err);
        }
    }
    g_ptr_array_free(touched, TRUE);
}

void wp_enforce_bounds(writer_pool *p, int64_t max_open, int64_t max_buffered, unsigned *open, int64_t *buffered)
{
    /* open files */
    while ((int64_t)g_hash_table_size(p->writers) > max_open) {
        part_writer *lru = NULL;
        GHashTableIter it;
        gpointer k;
        g_hash_table_iter_init(&it, p->writers);
        while (g_hash_table_iter_next(&it, &k, NULL)) {
            part_writer *w = k;
            if (!lru || w->last_used < lru->last_used)
                lru = w;
        }
        finish_and_drop(p, lru);
    }
    /* Buffered bytes: unwritten row groups, and what the IO holds of what
     * was written (an S3 part fills to s3_part_size before it goes out). The
     * largest holder gives back first: its row group goes to the IO and the
     * IO sends out what it can; when that leaves it holding as much (an S3
     * part below the 5 MiB minimum cannot go out by itself), its file is
     * finished. */
    for (;;) {
        int64_t total = 0, most = -1;
        part_writer *big = NULL;
        GHashTableIter it;
        gpointer k;
        g_hash_table_iter_init(&it, p->writers);
        while (g_hash_table_iter_next(&it, &k, NULL)) {
            part_writer *w = k;
            if (!w->pq)
                continue;
            int64_t b = pq_buffered_bytes(w->pq) + (int64_t)p->l.io->buffered(w->out);
            total += b;
            if (b > most) {
                most = b;
                big = w;
            }
        }
        *buffered = total;
        *open = g_hash_table_size(p->writers);
        if (total <= max_buffered || !big || most <= 0)
            return;
        if ((pq_buffered_bytes(big->pq) > 0 && pq_flush_row_group(big->pq) != 0) || p->l.io->drain(big->out) != 0) {
            p->ev.failed(p->ev.ctx, write_error(p, big));
            return;
        }
        if (pq_buffered_bytes(big->pq) + (int64_t)p->l.io->buffered(big->out) < most)
            continue;
        finish_and_drop(p, big); /* what it holds cannot go out otherwise */
    }
}

void wp_finish_all(writer_pool *p)
{
    GList *ws = g_hash_table_get_values(p->writers);
    for (GList *l = ws; l; l = l->next) {
        char *err = NULL;
        if (!writer_finish(p, l->data, &err))
            p->ev.failed(p->ev.ctx, err);
    }
    g_list_free(ws);
    g_hash_table_remove_all(p->writers);
}

void wp_free(writer_pool *p)
{
    if (!p)
        return;
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, p->writers);
    while (g_hash_table_iter_next(&it, &k, NULL)) {
        part_writer *w = k;
        if (w->pq) {
            pq_writer_free(w->pq);
            p->l.io->abort(w->out);
        }
    }
    g_hash_table_destroy(p->writers);
    bb_free(&p->keybuf);
    g_free(p);
}
