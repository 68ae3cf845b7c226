/*
 * Column sets and their pool (see columns.h). The pool is a mutex-guarded
 * free list (pthread, so ThreadSanitizer sees it) with an atomic reference
 * count: one for the stage, one per set that is out.
 */
#include "columns.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

/* A set whose string data grew past this is freed, not pooled, so one huge
 * batch does not pin its memory for the life of the stage. */
#define KEEP_DATA_BYTES (16u * 1024 * 1024)

struct tv_pool {
    pthread_mutex_t lock;
    _Atomic int refs;
    bool closed;
    uint32_t n_cols;
    tv_col_kind *kinds;
    bool *nullable;
    uint32_t keep;
    tv_columns *free_list;
    uint32_t n_free;
    _Atomic uint32_t n_out;
};

tv_pool *tv_pool_new(uint32_t n_cols, const tv_col_kind *kinds, const bool *nullable, uint32_t keep)
{
    tv_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    atomic_init(&p->refs, 1);
    atomic_init(&p->n_out, 0);
    p->n_cols = n_cols;
    p->kinds = malloc(sizeof *kinds * n_cols);
    p->nullable = malloc(sizeof *nullable * n_cols);
    if (!p->kinds || !p->nullable) {
        free(p->kinds);
        free(p->nullable);
        free(p);
        return NULL;
    }
    memcpy(p->kinds, kinds, sizeof *kinds * n_cols);
    memcpy(p->nullable, nullable, sizeof *nullable * n_cols);
    p->keep = keep;
    return p;
}

static void set_free(tv_columns *c)
{
    for (uint32_t i = 0; i < c->n_cols; i++) {
        free(c->cols[i].validity);
        free(c->cols[i].values);
        free(c->cols[i].data);
    }
    free(c->cols);
    free(c->child_arrays);
    free(c->child_ptrs);
    free(c->buffers);
    free(c);
}

static void pool_unref(tv_pool *p)
{
    if (atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    while (p->free_list) {
        tv_columns *c = p->free_list;
        p->free_list = c->next_free;
        set_free(c);
    }
    pthread_mutex_destroy(&p->lock);
    free(p->kinds);
    free(p->nullable);
    free(p);
}

void tv_pool_close(tv_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->closed = true;
    tv_columns *list = p->free_list;
    p->free_list = NULL;
    p->n_free = 0;
    pthread_mutex_unlock(&p->lock);
    while (list) {
        tv_columns *next = list->next_free;
        set_free(list);
        list = next;
    }
    pool_unref(p);
}

static tv_columns *set_new(tv_pool *p)
{
    tv_columns *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->pool = p;
    c->n_cols = p->n_cols;
    c->cols = calloc(p->n_cols, sizeof *c->cols);
    c->child_arrays = calloc(p->n_cols, sizeof *c->child_arrays);
    c->child_ptrs = calloc(p->n_cols, sizeof *c->child_ptrs);
    c->buffers = calloc(3 * (size_t)p->n_cols + 1, sizeof *c->buffers);
    if (!c->cols || !c->child_arrays || !c->child_ptrs || !c->buffers) {
        set_free(c);
        return NULL;
    }
    for (uint32_t i = 0; i < p->n_cols; i++) {
        c->cols[i].kind = p->kinds[i];
        c->cols[i].nullable = p->nullable[i];
    }
    return c;
}

static size_t value_bytes(tv_col_kind k, uint32_t rows)
{
    switch (k) {
    case TV_COL_UTF8: return ((size_t)rows + 1) * 4;
    case TV_COL_I64:
    case TV_COL_F64: return (size_t)rows * 8;
    case TV_COL_D128: return (size_t)rows * 16;
    case TV_COL_I32: return (size_t)rows * 4;
    case TV_COL_BOOL: return ((size_t)rows + 7) / 8;
    }
    return 0;
}

static bool grow_rows(tv_columns *c, uint32_t rows)
{
    uint32_t cap = c->cap_rows ? c->cap_rows : 64;
    while (cap < rows)
        cap = cap > UINT32_MAX / 2 ? rows : cap * 2;
    for (uint32_t i = 0; i < c->n_cols; i++) {
        tv_column *col = &c->cols[i];
        /* +8 so word-sized writes near the end never need a check */
        uint8_t *v = realloc(col->values, value_bytes(col->kind, cap) + 8);
        if (!v)
            return false;
        col->values = v;
        if (col->nullable) {
            uint8_t *b = realloc(col->validity, ((size_t)cap + 7) / 8 + 8);
            if (!b)
                return false;
            col->validity = b;
        }
    }
    c->cap_rows = cap;
    return true;
}

tv_columns *tv_pool_take(tv_pool *p, uint32_t rows)
{
    pthread_mutex_lock(&p->lock);
    tv_columns *c = p->free_list;
    if (c) {
        p->free_list = c->next_free;
        p->n_free--;
    }
    pthread_mutex_unlock(&p->lock);
    if (!c && !(c = set_new(p)))
        return NULL;
    c->next_free = NULL;
    c->rows = 0;
    c->oom = false;
    c->in_bytes = 0;
    if (rows > c->cap_rows && !grow_rows(c, rows)) {
        set_free(c);
        return NULL;
    }
    for (uint32_t i = 0; i < c->n_cols; i++)
        if (c->cols[i].kind == TV_COL_UTF8)
            tv_col_set_offset(&c->cols[i], 0, 0);
    atomic_fetch_add(&p->refs, 1);
    atomic_fetch_add(&p->n_out, 1);
    return c;
}

void tv_columns_give_back(tv_columns *c)
{
    tv_pool *p = c->pool;
    bool big = false;
    for (uint32_t i = 0; i < c->n_cols; i++)
        big = big || c->cols[i].data_cap > KEEP_DATA_BYTES;
    pthread_mutex_lock(&p->lock);
    bool keep = !p->closed && !big && p->n_free < p->keep;
    if (keep) {
        c->next_free = p->free_list;
        p->free_list = c;
        p->n_free++;
    }
    pthread_mutex_unlock(&p->lock);
    if (!keep)
        set_free(c);
    atomic_fetch_sub(&p->n_out, 1);
    pool_unref(p);
}

bool tv_col_reserve(tv_columns *set, tv_column *c, uint32_t row, size_t more)
{
    size_t need = (size_t)tv_col_offset(c, row) + more;
    if (need <= c->data_cap)
        return true;
    if (need > INT32_MAX)
        return false; /* int32 offsets: the caller splits batches before this */
    size_t cap = c->data_cap ? c->data_cap : 4096;
    while (cap < need)
        cap *= 2;
    uint8_t *d = realloc(c->data, cap);
    if (!d) {
        set->oom = true;
        return false;
    }
    c->data = d;
    c->data_cap = cap;
    return true;
}

/* ------------------------------------------------------------ export */

static void unref_set(tv_columns *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        tv_columns_give_back(c);
}

static void release_child(struct ArrowArray *a)
{
    tv_columns *c = a->private_data;
    a->release = NULL;
    unref_set(c);
}

static void release_struct(struct ArrowArray *a)
{
    tv_columns *c = a->private_data;
    for (int64_t i = 0; i < a->n_children; i++)
        if (a->children[i]->release)
            a->children[i]->release(a->children[i]);
    a->release = NULL;
    unref_set(c);
}

static int64_t count_nulls(const uint8_t *bits, uint32_t rows)
{
    int64_t set = 0;
    uint32_t full = rows / 8;
    for (uint32_t i = 0; i < full; i++)
        set += __builtin_popcount(bits[i]);
    for (uint32_t r = full * 8; r < rows; r++)
        set += (bits[r >> 3] >> (r & 7)) & 1;
    return (int64_t)rows - set;
}

void tv_columns_export(tv_columns *c, struct ArrowArray *out)
{
    atomic_store(&c->refs, (int)c->n_cols + 1);
    const void **buf = c->buffers;
    for (uint32_t i = 0; i < c->n_cols; i++) {
        tv_column *col = &c->cols[i];
        struct ArrowArray *a = &c->child_arrays[i];
        memset(a, 0, sizeof *a);
        a->length = c->rows;
        a->null_count = col->nullable ? count_nulls(col->validity, c->rows) : 0;
        a->buffers = buf;
        buf[0] = col->nullable && a->null_count ? col->validity : NULL;
        buf[1] = col->values;
        a->n_buffers = 2;
        if (col->kind == TV_COL_UTF8) {
            /* a column no row wrote to has no data buffer; Arrow wants one */
            buf[2] = col->data ? (const void *)col->data : (const void *)col->values;
            a->n_buffers = 3;
        }
        buf += 3;
        a->release = release_child;
        a->private_data = c;
        c->child_ptrs[i] = a;
    }
    memset(out, 0, sizeof *out);
    out->length = c->rows;
    out->null_count = 0;
    out->n_buffers = 1;
    buf[0] = NULL;
    out->buffers = buf;
    out->n_children = c->n_cols;
    out->children = c->child_ptrs;
    out->release = release_struct;
    out->private_data = c;
}

uint32_t tv_pool_idle(tv_pool *p)
{
    pthread_mutex_lock(&p->lock);
    uint32_t n = p->n_free;
    pthread_mutex_unlock(&p->lock);
    return n;
}

uint32_t tv_pool_out(tv_pool *p) { return atomic_load(&p->n_out); }
