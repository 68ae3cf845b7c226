/*
 * A running stage: the plugin instance, its input ring, its output ports,
 * its thread and its metrics. The host services table plugins call on it
 * is in host.h.
 */
#pragma once
#include <ecflow/plugin.h>
#include <glib.h>
#include <stdatomic.h>

#include "ack.h"
#include "batch.h"
#include "metrics.h"
#include "pipeline.h"
#include "ring.h"

typedef struct ecf_runtime ecf_runtime;

typedef struct {
    struct ecf_stage *down;
    guint32 input; /* index into down's inputs */
} ecf_out_edge;

typedef struct {
    struct ecf_stage *up;
    guint port;
} ecf_in_edge;

typedef struct {
    char *name;
    GArray *consumers;          /* ecf_out_edge; several = fan-out */
    struct ArrowSchema *schema; /* declared by the plugin, or NULL */
} ecf_port;

struct ecf_stage {
    ecf_stage_head head; /* must stay first: plugins read it */
    ecf_runtime *rt;
    ecf_stage_def *def;
    const ecf_plugin *p;
    void *state;
    char *error;

    ecf_ring *in;   /* NULL for sources */
    GArray *inputs; /* ecf_in_edge, in `inputs:` order */
    ecf_port *ports;
    guint n_ports;
    GThread *thread;

    ecf_batch *current;         /* the batch `process` is looking at */
    gboolean current_passed_on; /* ... and whether it emitted it */
    _Atomic gboolean ready;
    _Atomic gboolean failed;
    gboolean created;
    gboolean started;

    ecf_metric *m_in, *m_out, *m_errors, *m_batches, *m_discarded, *m_ack_latency;

    /* `workers: N`: N instances of one stage def, each with its own state,
     * ring and thread. The primary (instance 0) owns `ports`, `inputs` and
     * `group`; the others share them. Edges always name the primary. */
    struct ecf_stage *primary;
    GPtrArray *group; /* ecf_stage*, every instance, the primary first */
    guint index;
    _Atomic guint next; /* on the primary: whose turn it is (ECF_PARALLEL_ANY) */
};

/* What the stage runtime needs from the runtime that owns it. */
ecf_batch_pool *ecf_runtime_batches(ecf_runtime *rt);
ecf_ack_pool *ecf_runtime_acks(ecf_runtime *rt);
ecf_metrics *ecf_runtime_metrics(ecf_runtime *rt);
gboolean ecf_runtime_stopping(ecf_runtime *rt);
gboolean ecf_runtime_ready(ecf_runtime *rt);
const char *ecf_runtime_setting(ecf_runtime *rt, const char *key);
void ecf_runtime_fail(ecf_runtime *rt, ecf_stage *culprit);
/* Shows `m` on the live status line as `label` (ecf_metric_status). */
void ecf_runtime_add_status(ecf_runtime *rt, const char *label, ecf_metric *m);

/* `primary` NULL makes instance 0 of `def`; else one more instance of it. */
ecf_stage *ecf_stage_new(ecf_runtime *rt, ecf_stage_def *def, ecf_stage *primary);
void ecf_stage_free(ecf_stage *s);
/* Connects `up.port` to `down`'s input ring (created on first use). */
void ecf_stage_connect(ecf_stage *up, const char *port, ecf_stage *down);
/* The instance's input ring: its share of ring_capacity (at least 2); every
 * instance of every upstream is a producer. */
void ecf_stage_make_input(ecf_stage *s, guint32 ring_capacity);
static inline guint ecf_stage_workers(const ecf_stage *s) { return s->group->len; }
static inline ecf_stage *ecf_stage_worker(const ecf_stage *s, guint i) { return s->group->pdata[i]; }
/* The output port called `name`; NULL names the first one. NULL when the
 * stage has no such port. */
ecf_port *ecf_stage_port(ecf_stage *s, const char *name);

ecf_status ecf_stage_create(ecf_stage *s);
ecf_status ecf_stage_start(ecf_stage *s);
void ecf_stage_spawn(ecf_stage *s);
void ecf_stage_join(ecf_stage *s);
void ecf_stage_stop(ecf_stage *s);
void ecf_stage_destroy(ecf_stage *s);
const char *ecf_stage_error(const ecf_stage *s);
