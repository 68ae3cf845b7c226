/*
 * Ack tokens: one per unit a source wants an answer for (an HTTP event, a
 * Kafka offset). Each message holding the token owns one reference; fan-out
 * adds references. A reference is dropped with a verdict — durable, failed,
 * or none — and when the last one goes the source's settle callback runs
 * once with the combined outcome (see plugin.h). Tokens come from a pool.
 */
#pragma once
#include <ecflow/plugin.h>
#include <glib.h>

#define ECF_VERDICT_NONE (-1)

typedef struct ecf_ack_pool ecf_ack_pool;

ecf_ack_pool *ecf_ack_pool_new(void);
void ecf_ack_pool_free(ecf_ack_pool *pool);

/* Tokens not yet settled: zero after a clean drain. */
gint64 ecf_ack_pool_outstanding(ecf_ack_pool *pool);
/* Waits until nothing is outstanding or the deadline (monotonic µs) passes. */
gboolean ecf_ack_pool_wait_idle(ecf_ack_pool *pool, gint64 deadline_us);

/* The new token holds one reference, the creator's. `latency` (may be NULL)
 * observes creation-to-settle time in seconds. */
ecf_token *ecf_token_create(ecf_ack_pool *pool, ecf_settle_fn fn, void *user, guint64 tag, ecf_metric *latency);
void ecf_token_ref(ecf_token *t);
/* verdict: ECF_OK (durable), an error status (failed), or ECF_VERDICT_NONE. */
void ecf_token_unref(ecf_token *t, int verdict, const char *reason);
