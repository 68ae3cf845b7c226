/*
 * Batches: the unit that moves over rings. Messages live in a growable array
 * and their bytes in a chunked arena (pointers stay valid while the batch
 * grows); both keep their capacity when a batch returns to the pool, so a
 * pipeline in steady state allocates nothing per event.
 */
#pragma once
#include <ecflow/plugin.h>
#include <glib.h>

typedef struct ecf_batch_pool ecf_batch_pool;

ecf_batch_pool *ecf_batch_pool_new(void);
void ecf_batch_pool_free(ecf_batch_pool *pool);

ecf_batch *ecf_batch_get(ecf_batch_pool *pool);
ecf_status ecf_batch_append(ecf_batch *b, const ecf_message_init *m);
guint32 ecf_batch_size(const ecf_batch *b);
ecf_message *ecf_batch_at(ecf_batch *b, guint32 i);
gsize ecf_batch_payload_bytes(const ecf_batch *b);
/* Drops every message's remaining token reference without a verdict. */
void ecf_batch_put(ecf_batch *b);
/* A copy for another consumer (fan-out): bytes copied, token refs added,
 * records shared (they are immutable once attached). */
ecf_batch *ecf_batch_clone(const ecf_batch *b);

/* Moves `records` into the batch; ECF_ERR_INVALID (ownership stays with the
 * caller) when its length is not the message count. */
ecf_status ecf_batch_attach_records(ecf_batch *b, struct ArrowArray *records);
const struct ArrowArray *ecf_batch_get_records(const ecf_batch *b);
/* The consumer's input the batch arrived on; set by the core on delivery. */
guint32 ecf_batch_input_index(const ecf_batch *b);
void ecf_batch_set_input_index(ecf_batch *b, guint32 input);
