/*
 * source-kafka internals shared by the plugin's own files; not installed.
 *
 * source_kafka.c   lifecycle, the run loop (poll -> batches -> emit), backpressure
 *                  pauses, the failure policy, metrics
 * rebalance.c      assign / revoke protocol
 * offset_commit.c  offset commits (async, sync), their results, the lag gauges
 * offset_book.c    per-partition windows of in-flight offsets: which prefix is
 *                  acknowledged, so commits never pass an unacked message
 * consumer_conf.c  option table -> librdkafka consumer configuration (and its errors)
 * fetch_nudge.c    wakes librdkafka's fetcher once a full prefetch queue has half drained
 * ../common/kafka_client.c  what both Kafka plugins do alike: common options,
 *                  readiness and its probe, logs and errors, metadata lookups
 */
#ifndef ECF_SOURCE_KAFKA_H
#define ECF_SOURCE_KAFKA_H

#include "kafka_client.h"

#include <ecflow/plugin.h>
#include <librdkafka/rdkafka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* ---------------------------------------------------------------- options */

/* Filled by the core from ksrc_options (consumer_conf.c). */
typedef struct {
    kc_config client; /* bootstrap, connect_timeout, require_broker, kafka */
    char *group;
    char **topics;
    char *topic_regex;
    char *auto_offset_reset;
    int64_t batch_size;
    int64_t batch_wait_us;
    int64_t commit_interval_us;
    int64_t rebalance_timeout_us;
    char *on_failure;
    int64_t redeliver_backoff_us;
    int64_t prefetch_max_bytes;
} ksrc_config;

extern const ecf_option ksrc_options[];

/* Checks rules that span options; ECF_OK or what ecf_error() returned. */
ecf_status ksrc_conf_check(ecf_stage *stage, const ksrc_config *cfg);

/*
 * Builds the consumer configuration: our defaults, then the `kafka` map
 * (librdkafka judges those keys), then checks that nothing in the map turned
 * off what our delivery guarantee rests on. NULL after ecf_error() on failure.
 * Side-effect free: nothing connects until rd_kafka_new() in start.
 */
rd_kafka_conf_t *ksrc_conf_build(ecf_stage *stage, const ksrc_config *cfg);

/* ---------------------------------------------------------------- offsets */

/*
 * The offset book: for every partition this stage has been assigned, a window
 * of the offsets it emitted and not yet settled, in the order it emitted them.
 * Settle callbacks (any thread) mark slots; the contiguous settled prefix is
 * what may be committed. Everything behind one lock; the window is a ring of
 * (offset, state) pairs that doubles when full.
 *
 * Kafka offsets are increasing but not contiguous (transaction markers,
 * compaction), so a slot stores its offsets: "next offset to read" after the
 * prefix is the last settled slot's last offset + 1. A slot is a run of
 * records of one partition read one after another (one ack token for the
 * run); a failure anywhere in it redelivers the run from its first.
 */
typedef enum {
    SLOT_INFLIGHT = 1, /* emitted, no verdict yet                                  */
    SLOT_DONE,         /* acked (or dropped: no sink wanted it)                    */
    SLOT_BLOCKED,      /* failed, or abandoned: the commit never passes it          */
    SLOT_STALE,        /* superseded by a redelivery from an earlier offset: skip   */
} slot_state;

typedef enum {
    SETTLE_STALE, /* the slot belongs to an older assignment or a rewind: ignored */
    SETTLE_DONE,
    SETTLE_STOPPED, /* failed with ECF_ERR_STOPPED (shutdown): blocked, no policy  */
    SETTLE_FAILED,  /* failed: blocked, and the failure policy applies              */
} settle_result;

typedef struct book_slot {
    int64_t first, last; /* offsets of the run's first and last records */
    uint32_t records;
    uint8_t state; /* slot_state */
} book_slot;

typedef struct {
    char *topic; /* interned by the book: origin.topic of every message */
    int32_t partition;
    uint32_t index;

    /* Guarded by the book's lock. */
    bool assigned;
    uint64_t head, tail; /* sequence numbers of the window: [head, tail)   */
    uint64_t cap;        /* slots allocated, a power of two (0 = none yet)  */
    struct book_slot *slots;
    int64_t inflight;  /* slots in SLOT_INFLIGHT                          */
    int64_t done;      /* next offset to read after the settled prefix; -1 = none */
    int64_t failed_at; /* lowest offset that failed since the last rewind; -1 */
    int64_t expect;    /* after a rewind: the offset redelivery must start at; -1 */

    /* Run thread only (and the main thread once run has returned). */
    int64_t committed;   /* the broker confirmed this; -1 = unknown         */
    int64_t commit_sent; /* an async commit of this is in flight; -1 = none */
    int64_t retry_at_us; /* redeliver: when to seek back; 0 = not scheduled  */
    int64_t retry_offset;
    int attempts; /* consecutive redeliveries of retry_offset         */
    bool held;    /* paused by the failure policy until retry_at_us   */
    ecf_metric *m_committed;
    ecf_metric *m_lag;
} book_part;

typedef struct offset_book offset_book;

offset_book *book_new(void);
void book_free(offset_book *b);

/* Run thread only: the partition's index, created (unassigned) when new. */
uint32_t book_part_index(offset_book *b, const char *topic, int32_t partition);
/* UINT32_MAX when unknown. */
uint32_t book_find(offset_book *b, const char *topic, int32_t partition);
book_part *book_get(offset_book *b, uint32_t index);
uint32_t book_count(offset_book *b);

/* Starts a fresh window (assign) or drops it (revoke); late settles of the
 * dropped slots are ignored. */
void book_assign(offset_book *b, uint32_t index);
void book_release(offset_book *b, uint32_t index);

/* Appends an in-flight slot of one record; returns the tag for its ack token
 * (UINT64_MAX: no memory). */
uint64_t book_track(offset_book *b, uint32_t index, int64_t offset);
/* Adds the next record read from the same partition to the slot `tag`, so it
 * shares that slot's token. False (start a new slot) unless that slot is the
 * partition's newest, still in flight, and no rewind waits for redelivery. */
bool book_extend(offset_book *b, uint64_t tag, int64_t offset);

/* Any thread. Unless the settle was stale, *part_out and *slot_out (either
 * may be NULL) get the partition's index and the slot as it was: the run's
 * offsets and how many records it stood for. */
settle_result book_settle(offset_book *b, uint64_t tag, ecf_status outcome, uint32_t *part_out, book_slot *slot_out);

/* Marks the slot holding `offset` blocked if it is still in flight: used for
 * messages taken from Kafka that will never be emitted. */
void book_block(offset_book *b, uint32_t index, int64_t offset);

/* Redelivery from `offset`: every slot at or after it becomes stale, and the
 * next tracked offset must not be beyond it (else the gap is blocked). A
 * rewind that has not been redelivered yet keeps the lower point; returns
 * the offset to seek to. */
int64_t book_rewind(offset_book *b, uint32_t index, int64_t offset);

/* Next offset to commit (the settled prefix), -1 when nothing settled yet. */
int64_t book_done(offset_book *b, uint32_t index);
/* Lowest failed offset not yet rewound, -1 when none; clears nothing. */
int64_t book_failed_at(offset_book *b, uint32_t index);
int64_t book_inflight(offset_book *b, uint32_t index);

/* Waits up to timeout_us until none of the partitions has a slot in flight.
 * Returns the slots still in flight. */
int64_t book_wait_settled(offset_book *b, const uint32_t *idx, size_t n, int64_t timeout_us);

/* ---------------------------------------------------------------- fetching */

/* fetch_nudge.c: a thread that wakes librdkafka's fetchers (see there why).
 * start/stop and observe on the run thread; NULL (no memory, no thread)
 * just means no nudges. */
typedef struct fetch_nudge fetch_nudge;
fetch_nudge *nudge_start(rd_kafka_t *rk, int64_t prefetch_bytes);
void nudge_stop(fetch_nudge *n);
/* Called as records are taken: reads the queue's length and asks for a
 * nudge when the queue was near full and is now below half (true). */
bool nudge_observe(fetch_nudge *n, double avg_record_bytes);
uint64_t nudge_count(const fetch_nudge *n);

/* ---------------------------------------------------------------- source */

typedef struct {
    ecf_metric *messages;
    ecf_metric *bytes;
    ecf_metric *acked;
    ecf_metric *failed;
    ecf_metric *in_flight;
    ecf_metric *assigned;
    ecf_metric *rebalance_assign;
    ecf_metric *rebalance_revoke;
    ecf_metric *rebalance_lost;
    ecf_metric *commits;
    ecf_metric *commit_failures;
    ecf_metric *pauses;
    ecf_metric *paused;
    ecf_metric *redeliveries;
    ecf_metric *nudges;
} ksrc_metrics;

typedef struct kafka_source {
    ecf_stage *stage;
    const ksrc_config *cfg;
    rd_kafka_conf_t *conf; /* from create until rd_kafka_new takes it */
    rd_kafka_t *rk;
    offset_book *book;
    uint32_t batch_size;
    bool redeliver; /* on_failure: redeliver (else stop)       */
    bool subscribed;

    /* Run thread (and the rebalance callback, which runs inside its poll). */
    ecf_batch *building; /* filling from librdkafka                 */
    uint32_t building_n;
    int64_t building_first_us;
    ecf_batch *pending; /* full, refused by a full ring            */
    ecf_token *run_tok; /* the token of the run being read (source_kafka.c) */
    uint64_t run_tag;
    uint32_t run_part;
    int64_t blocked_since_us;
    bool paused;            /* every assigned partition paused (backpressure) */
    bool running;           /* run() is emitting; false: rings may be gone */
    bool closing;           /* stop(): consumer_close serves the revoke */
    ecf_status stop_status; /* the failure policy ended run with this  */
    int64_t next_commit_us;
    int64_t next_error_log_us; /* commit failures: one quiet period */
    rd_kafka_resp_err_t last_err;
    uint64_t errors_suppressed;
    kc_client client; /* readiness, its probe, consumer error log */
    fetch_nudge *nudge;
    uint64_t taken_bytes, taken_records; /* for the average record size */
    book_part *last_p;                   /* lookup cache for the hot path            */
    const rd_kafka_topic_t *last_rkt;
    int32_t last_partition;
    bool topics_missing; /* a named topic did not exist at start    */
    int64_t next_topic_probe_us, topic_probe_every_us;
    ecf_header *headers; /* scratch for one record's headers        */
    size_t headers_cap;

    /* Settle callbacks (any thread) -> run thread. */
    pthread_mutex_t fail_lock;
    atomic_bool failure_pending;
    bool failure_seen;
    ecf_status failure_status;
    char failure_reason[512];
    char failure_where[256];

    atomic_uint_fast64_t n_consumed, n_acked, n_failed, n_stale;
    uint64_t n_commits, n_pauses, n_redeliveries, n_rebalances;

    ksrc_metrics m;
} kafka_source;

/* rebalance.c */
void ksrc_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque);

/* offset_commit.c */
void ksrc_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets, void *opaque);
/* Commits every assigned partition whose settled prefix advanced: async from
 * the run loop, sync on revoke and at stop. Returns false if a sync commit failed. */
bool ksrc_commit(kafka_source *ks, bool sync);
/* Refreshes the committed-offset and lag gauges. */
void ksrc_update_gauges(kafka_source *ks);
/* Used by rebalance.c. The committed-offset and lag gauges of a newly
 * assigned partition (made once). */
void ksrc_part_metrics(kafka_source *ks, book_part *p);
/* Reads the group's committed offsets of `parts` into the book. */
void ksrc_read_committed(kafka_source *ks, const rd_kafka_topic_partition_list_t *parts);
/* Commits the partitions of the book indexes `idx` (every assigned one when
 * NULL) whose settled prefix advanced; `logbuf` (may be NULL) gets what was
 * committed. Returns false if the commit failed. */
bool ksrc_commit_parts(kafka_source *ks, const uint32_t *idx, size_t n, bool sync, char *logbuf, size_t logsize);
/* "t[0]@12 t[1]@none": the committed offsets of these partitions. */
void ksrc_committed_str(kafka_source *ks, const uint32_t *idx, size_t n, char *buf, size_t size);

/* source_kafka.c, used by rebalance.c and offset_commit.c */
/* Emits (or, past the deadline, abandons) the batches taken but not emitted. */
void ksrc_flush_taken(kafka_source *ks, int64_t deadline_us, const uint32_t *revoked, size_t n_revoked);
void ksrc_pause_parts(kafka_source *ks, rd_kafka_topic_partition_list_t *parts, bool pause);
const char *ksrc_parts_str(const rd_kafka_topic_partition_list_t *parts, char *buf, size_t size, bool with_offsets);

#endif
