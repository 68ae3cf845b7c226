#include "batch.h"

#include "ack.h"
#include "clock.h"
#include "sync.h"

#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#define CHUNK_MIN (64 * 1024)
#define KEEP_BYTES (4 * 1024 * 1024) /* arena kept across reuse, per batch */
#define POOL_KEEP 1024               /* batches kept in the free list      */
/* Arena bytes the free list keeps in all: sources that build large batches
 * (HTTP requests sharing one) would otherwise keep KEEP_BYTES per batch. */
#define POOL_KEEP_BYTES (32 * 1024 * 1024)

typedef struct chunk {
    struct chunk *next;
    gsize size;
    gsize used;
    guint8 data[];
} chunk;

/* Records are shared by fan-out copies, so they are reference-counted. */
typedef struct {
    _Atomic gint refs;
    struct ArrowArray array;
} shared_records;

struct ecf_batch {
    ecf_batch_pool *pool;
    shared_records *records;
    guint32 input;
    ecf_message *msgs;
    guint32 count;
    guint32 cap;
    gsize bytes;
    chunk *chunks;  /* all chunks, in order */
    chunk *current; /* where the next allocation goes */
    gsize kept;     /* arena bytes, while in the free list */
    ecf_batch *next_free;
};

struct ecf_batch_pool {
    ecf_mutex lock;
    ecf_batch *free_list;
    guint free_count;
    gsize free_bytes; /* arena bytes of the free list */
};

ecf_batch_pool *ecf_batch_pool_new(void)
{
    ecf_batch_pool *pool = g_new0(ecf_batch_pool, 1);
    ecf_mutex_init(&pool->lock);
    return pool;
}

static void free_chunks(chunk *c)
{
    while (c) {
        chunk *next = c->next;
        g_free(c);
        c = next;
    }
}

static void batch_destroy(ecf_batch *b)
{
    free_chunks(b->chunks);
    g_free(b->msgs);
    g_free(b);
}

void ecf_batch_pool_free(ecf_batch_pool *pool)
{
    if (!pool)
        return;
    while (pool->free_list) {
        ecf_batch *b = pool->free_list;
        pool->free_list = b->next_free;
        batch_destroy(b);
    }
    ecf_mutex_clear(&pool->lock);
    g_free(pool);
}

ecf_batch *ecf_batch_get(ecf_batch_pool *pool)
{
    ecf_mutex_lock(&pool->lock);
    ecf_batch *b = pool->free_list;
    if (b) {
        pool->free_list = b->next_free;
        pool->free_count--;
        pool->free_bytes -= b->kept;
    }
    ecf_mutex_unlock(&pool->lock);
    if (!b) {
        b = g_new0(ecf_batch, 1);
        b->pool = pool;
    }
    b->next_free = NULL;
    return b;
}

/* Room for len bytes plus the parser padding, zeroed padding included. */
static guint8 *arena_alloc(ecf_batch *b, gsize len)
{
    gsize need = len + ECF_PAYLOAD_PADDING;
    while (b->current && b->current->size - b->current->used < need) {
        b->current = b->current->next;
        if (b->current)
            b->current->used = 0;
    }
    if (!b->current) {
        gsize size = MAX(CHUNK_MIN, need);
        chunk *c = g_malloc(sizeof(chunk) + size);
        c->next = NULL;
        c->size = size;
        c->used = 0;
        chunk **tail = &b->chunks;
        while (*tail)
            tail = &(*tail)->next;
        *tail = c;
        b->current = c;
    }
    guint8 *p = b->current->data + b->current->used;
    memset(p + len, 0, ECF_PAYLOAD_PADDING);
    b->current->used += need;
    return p;
}

static const guint8 *copy_bytes(ecf_batch *b, const void *src, gsize len)
{
    guint8 *dst = arena_alloc(b, len);
    if (len)
        memcpy(dst, src, len);
    return dst;
}

/* Headers and their bytes go into the arena with the payload. */
static void copy_headers(ecf_batch *b, ecf_message *m, const ecf_header *src, gsize n)
{
    m->headers = NULL;
    m->n_headers = 0;
    if (!src || !n)
        return;
    ecf_header *dst = (ecf_header *)arena_alloc(b, n * sizeof(ecf_header) + 7);
    dst = (ecf_header *)(((guintptr)dst + 7) & ~(guintptr)7); /* align for the pointers */
    for (gsize i = 0; i < n; i++) {
        dst[i].name = (const char *)copy_bytes(b, src[i].name, strlen(src[i].name) + 1);
        dst[i].value = copy_bytes(b, src[i].value, src[i].value_len);
        dst[i].value_len = src[i].value_len;
    }
    m->headers = dst;
    m->n_headers = (guint32)n;
}

/* The ingest time a 1.1 (or later) producer gave, 0 otherwise. */
static gint64 given_ingest_time(const ecf_message_init *in)
{
    gsize need = offsetof(ecf_message_init, ingest_time_us) + sizeof in->ingest_time_us;
    return in->struct_size >= need ? in->ingest_time_us : 0;
}

ecf_status ecf_batch_append(ecf_batch *b, const ecf_message_init *in)
{
    if (in->payload_len > G_MAXUINT32 || in->key_len > G_MAXUINT32)
        return ECF_ERR_INVALID;
    if (b->count == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->msgs = g_renew(ecf_message, b->msgs, b->cap);
    }
    if (!b->current && b->chunks) {
        b->current = b->chunks;
        b->current->used = 0;
    }
    ecf_message *m = &b->msgs[b->count];
    const ecf_message *parent = in->parent;
    m->payload = in->payload ? copy_bytes(b, in->payload, in->payload_len) : NULL;
    m->payload_len = in->payload ? (guint32)in->payload_len : 0;
    m->key = in->key ? copy_bytes(b, in->key, in->key_len) : NULL;
    m->key_len = in->key ? (guint32)in->key_len : 0;
    m->event_time_us = in->event_time_us ? in->event_time_us : parent ? parent->event_time_us : 0;
    m->ingest_time_us = given_ingest_time(in) ? given_ingest_time(in)
                        : parent              ? parent->ingest_time_us
                                              : ecf_clock_now_us();
    m->origin = in->origin.kind != ECF_ORIGIN_NONE ? in->origin : parent ? parent->origin : in->origin;
    copy_headers(b, m,
                 in->n_headers ? in->headers
                 : parent      ? parent->headers
                               : NULL,
                 in->n_headers ? in->n_headers
                 : parent      ? parent->n_headers
                               : 0);
    m->token = in->token ? in->token : parent ? parent->token : NULL;
    if (m->token)
        ecf_token_ref(m->token);
    b->bytes += m->payload_len;
    b->count++;
    return ECF_OK;
}

guint32 ecf_batch_size(const ecf_batch *b) { return b->count; }

ecf_message *ecf_batch_at(ecf_batch *b, guint32 i) { return i < b->count ? &b->msgs[i] : NULL; }

gsize ecf_batch_payload_bytes(const ecf_batch *b) { return b->bytes; }

/* Keep the first chunks up to KEEP_BYTES so a reused batch needs no malloc. */
static gsize trim_arena(ecf_batch *b)
{
    gsize kept = 0;
    chunk **link = &b->chunks;
    while (*link && kept + (*link)->size <= KEEP_BYTES) {
        kept += (*link)->size;
        (*link)->used = 0;
        link = &(*link)->next;
    }
    free_chunks(*link);
    *link = NULL;
    b->current = b->chunks;
    return kept;
}

static void records_unref(shared_records *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    if (r->array.release)
        r->array.release(&r->array);
    g_free(r);
}

ecf_status ecf_batch_attach_records(ecf_batch *b, struct ArrowArray *records)
{
    if (!records || !records->release || records->length != (int64_t)b->count)
        return ECF_ERR_INVALID;
    records_unref(b->records);
    b->records = g_new0(shared_records, 1);
    atomic_init(&b->records->refs, 1);
    b->records->array = *records;
    records->release = NULL; /* moved, as the Arrow C interface spells it */
    return ECF_OK;
}

const struct ArrowArray *ecf_batch_get_records(const ecf_batch *b) { return b->records ? &b->records->array : NULL; }

guint32 ecf_batch_input_index(const ecf_batch *b) { return b->input; }
void ecf_batch_set_input_index(ecf_batch *b, guint32 input) { b->input = input; }

void ecf_batch_put(ecf_batch *b)
{
    if (!b)
        return;
    records_unref(b->records);
    b->records = NULL;
    b->input = 0;
    for (guint32 i = 0; i < b->count; i++) {
        if (b->msgs[i].token)
            ecf_token_unref(b->msgs[i].token, ECF_VERDICT_NONE, NULL);
    }
    b->count = 0;
    b->bytes = 0;
    b->kept = trim_arena(b);

    ecf_batch_pool *pool = b->pool;
    ecf_mutex_lock(&pool->lock);
    gboolean keep = pool->free_count < POOL_KEEP && pool->free_bytes + b->kept <= POOL_KEEP_BYTES;
    if (keep) {
        b->next_free = pool->free_list;
        pool->free_list = b;
        pool->free_count++;
        pool->free_bytes += b->kept;
    }
    ecf_mutex_unlock(&pool->lock);
    if (!keep)
        batch_destroy(b);
}

ecf_batch *ecf_batch_clone(const ecf_batch *src)
{
    ecf_batch *b = ecf_batch_get(src->pool);
    for (guint32 i = 0; i < src->count; i++) {
        const ecf_message *m = &src->msgs[i];
        ecf_message_init init = {
            .payload = m->payload,
            .payload_len = m->payload_len,
            .key = m->key,
            .key_len = m->key_len,
            .event_time_us = m->event_time_us,
            .origin = m->origin,
            .token = m->token,
            .headers = m->headers,
            .n_headers = m->n_headers,
        };
        ecf_batch_append(b, &init);
        b->msgs[i].ingest_time_us = m->ingest_time_us;
    }
    if (src->records) {
        atomic_fetch_add(&src->records->refs, 1);
        b->records = src->records;
    }
    return b;
}
