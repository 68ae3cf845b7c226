/*
 * ecflow plugin ABI — the one header a plugin includes.
 *
 * Plain C11, no GLib, no core internals. A plugin exports one symbol,
 * `ecf_plugin_entry`, written for you by ECF_PLUGIN_DEFINE, that returns a
 * const descriptor. The core checks the descriptor's ABI major before it reads
 * anything else, validates every option of a stage against the plugin's
 * option table, fills the plugin's config struct, and then calls the
 * lifecycle callbacks: create, start, stop and destroy on the main thread,
 * the others on the stage's own thread (see `ecf_plugin`).
 *
 * Host services reach the plugin through a function table (`ecf_host`) that
 * hangs off every stage handle; the static inline wrappers below are the API.
 * The table only ever grows at the end and carries its own size, so a plugin
 * built against an older minor keeps working with a newer core.
 *
 * Ownership, in one place:
 *   - strings, lists and maps in the config struct belong to the core and
 *     live until after `destroy`;
 *   - a batch handed to `process` is borrowed: the core releases it when
 *     `process` returns, unless the plugin passed it on with ecf_emit();
 *   - a batch from ecf_batch_new() is the caller's until ecf_emit() or
 *     ecf_batch_release();
 *   - every message holds one reference on its ack token; ecf_ack()/ecf_nack()
 *     settle that reference now, ecf_hold() moves it out of the batch so a
 *     sink can settle it after its data is durable. A reference released
 *     with its batch gives no verdict. When the last reference goes, the
 *     source's settle callback runs once with: the first failure, if any
 *     holder failed; else ECF_OK if at least one sink acked; else
 *     ECF_ERR_DROPPED (nobody took responsibility, e.g. a filter).
 *   - ecf_emit() always takes the batch, even when it fails. ecf_try_emit()
 *     leaves it with the caller only when it returns ECF_ERR_BACKPRESSURE.
 *
 * Threads: each member of `ecf_host` says where it may be called from —
 * [any] thread, including threads the plugin starts itself; [holder], any
 * thread holding the batch it is about; [callback], only inside one of the
 * stage's callbacks; [main], only in create/start/stop/destroy. The legend
 * is above `struct ecf_host`.
 *
 * Versions: every member says the ABI minor that added it ("1.0", "1.1").
 * Additions made in the header alone (a wrapper over an older member, an
 * option macro) say so too: they raise the minor, so a plugin can test
 * ECF_ABI_MINOR for them, but they run on any 1.x core.
 */
#ifndef ECFLOW_PLUGIN_H
#define ECFLOW_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ECF_ABI_MAJOR 1
#define ECF_ABI_MINOR 3

/* ---------------------------------------------------------------- status */

typedef enum {
    ECF_OK = 0,
    ECF_ERR_INVALID,      /* bad input: the message or argument is wrong     */
    ECF_ERR_CONFIG,       /* configuration is wrong; the stage cannot start  */
    ECF_ERR_IO,           /* file, socket or device failed                   */
    ECF_ERR_UNAVAILABLE,  /* a downstream service is unreachable; retry      */
    ECF_ERR_TIMEOUT,      /* gave up waiting                                 */
    ECF_ERR_BACKPRESSURE, /* a ring is full; try again later                 */
    ECF_ERR_NOMEM,
    ECF_ERR_STOPPED, /* the pipeline is shutting down                   */
    ECF_ERR_DROPPED, /* no sink took responsibility for the message     */
    ECF_ERR_FATAL,   /* stop the whole pipeline, exit non-zero          */
    ECF_ERR_INTERNAL,
    ECF_STATUS_COUNT_
} ecf_status;

/* ---------------------------------------------------------------- handles */

typedef struct ecf_stage ecf_stage;   /* one configured plugin instance     */
typedef struct ecf_batch ecf_batch;   /* messages moving between stages     */
typedef struct ecf_token ecf_token;   /* ref-counted acknowledgement        */
typedef struct ecf_metric ecf_metric; /* counter, gauge or histogram        */
typedef struct ecf_host ecf_host;

typedef enum { ECF_SOURCE = 1, ECF_TRANSFORM = 2, ECF_SINK = 3 } ecf_kind;

typedef enum {
    ECF_LOG_ERROR = 0,
    ECF_LOG_WARN,
    ECF_LOG_INFO,
    ECF_LOG_DEBUG,
} ecf_log_level;

typedef enum {
    ECF_METRIC_COUNTER = 1,
    ECF_METRIC_GAUGE,
    ECF_METRIC_HISTOGRAM, /* observations in seconds */
} ecf_metric_kind;

/* ---------------------------------------------------------------- messages */

/* Where a message came from, so a sink can report positions back to it. */
typedef enum {
    ECF_ORIGIN_NONE = 0,
    ECF_ORIGIN_GENERATED,
    ECF_ORIGIN_HTTP,
    ECF_ORIGIN_KAFKA,
    ECF_ORIGIN_FILE,
} ecf_origin_kind;

typedef struct {
    ecf_origin_kind kind;
    int32_t partition; /* Kafka partition, or -1               */
    int64_t offset;    /* Kafka offset, line number, or index  */
    const char *topic; /* interned by the source; may be NULL  */
} ecf_origin;

/*
 * A message as stages see it. Payload and key point into the batch's arena
 * and stay valid as long as the batch does. Read-only for consumers.
 * Every payload is followed by ECF_PAYLOAD_PADDING readable zero bytes, so
 * SIMD parsers (simdjson) can parse it in place without a copy.
 */
#define ECF_PAYLOAD_PADDING 64

/* A message header (Kafka record headers; a DLQ reason). Values are bytes. */
typedef struct {
    const char *name;
    const uint8_t *value;
    uint32_t value_len;
} ecf_header;

typedef struct {
    const uint8_t *payload;
    const uint8_t *key;
    uint32_t payload_len;
    uint32_t key_len;
    int64_t event_time_us;  /* 0 when unknown                   */
    int64_t ingest_time_us; /* set by the core when first added,
                                       or as ecf_message_init says      */
    ecf_origin origin;
    ecf_token *token;          /* NULL once acked or held          */
    const ecf_header *headers; /* in the batch's arena             */
    uint32_t n_headers;
} ecf_message;

/* What a producer hands to ecf_batch_add(); the bytes are copied. A NULL
 * payload is allowed for messages whose content lives in the batch's
 * records (see below): then nothing is copied and payload_len is 0.
 * Append-only: `struct_size` is 0 for the ABI 1.0 layout below (what a
 * designated initializer gives), or sizeof() of a later, longer layout. */
typedef struct {
    uint32_t struct_size;
    const void *payload;
    size_t payload_len;
    const void *key;
    size_t key_len;
    int64_t event_time_us;
    ecf_origin origin;
    /* Either a token from ecf_token_new() (the batch takes a reference),
     * or the message this one derives from (its token is shared). */
    ecf_token *token;
    const ecf_message *parent;
    /* Copied; when none are given, a derived message keeps its parent's. */
    const ecf_header *headers;
    size_t n_headers;
    /* Since 1.1 (set struct_size = sizeof(ecf_message_init)): when the
     * event entered the system, e.g. a Kafka record's timestamp, so that
     * freshness is measured across pipelines; 0 = the parent's, else now. */
    int64_t ingest_time_us;
} ecf_message_init;

/* Called once per token, on whichever thread settles its last reference: a
 * sink's stage thread, or a thread a sink started (sink-kafka's poller). So
 * it must be thread-safe, and from it only [any] services may be called. */
typedef void (*ecf_settle_fn)(void *user, uint64_t user_tag, ecf_status outcome, const char *reason);

/* ---------------------------------------------------------------- records */

/*
 * Typed records travel as Apache Arrow's C Data Interface (a stable ABI that
 * Arrow defines in one header, reproduced here verbatim): a batch may carry
 * one struct array whose row i is the parsed form of message i, one child
 * column per schema field. Any Arrow-speaking code can read it, and a sink
 * can encode columns straight into Parquet pages.
 *
 * Types ecflow's plugins exchange (format strings): "u" utf8, "l" int64,
 * "i" int32, "g" float64, "b" bool, "d:P,S" decimal128, "tsu:UTC" timestamp
 * (µs, UTC), "tdD" date32. Field metadata key "ecflow:doc" is free text.
 */
#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE

#define ARROW_FLAG_DICTIONARY_ORDERED 1
#define ARROW_FLAG_NULLABLE 2
#define ARROW_FLAG_MAP_KEYS_SORTED 4

struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

#endif /* ARROW_C_DATA_INTERFACE */

/* ---------------------------------------------------------------- options */

typedef enum {
    ECF_OPT_T_STRING = 1, /* char *                                          */
    ECF_OPT_T_INT,        /* int64_t, range [min, max]                       */
    ECF_OPT_T_DOUBLE,     /* double,  range [min, max]                       */
    ECF_OPT_T_BOOL,       /* bool                                            */
    ECF_OPT_T_DURATION,   /* int64_t microseconds; "250ms", "10s", "5m", "1h" */
    ECF_OPT_T_SIZE,       /* int64_t bytes; "512", "64KiB", "128MiB", "1GB"   */
    ECF_OPT_T_ENUM,       /* char *, one of `choices` ("a|b|c")             */
    ECF_OPT_T_LIST,       /* char ** NULL-terminated; YAML sequence of scalars */
    ECF_OPT_T_MAP,        /* ecf_kv * terminated by key == NULL; nested map or
                               dotted keys "name.sub.key: value"               */
    ECF_OPT_T_FILE,       /* char *, a file path; a relative one is taken
                               from the pipeline file's folder               */
} ecf_opt_type;

typedef struct {
    const char *key;
    const char *value;
} ecf_kv;

#define ECF_REQUIRED 1
#define ECF_OPTIONAL 0
#define ECF_SECRET 2 /* never printed, never logged */

typedef struct {
    const char *name;
    ecf_opt_type type;
    size_t offset;       /* into the plugin's config struct            */
    const char *def;     /* default as YAML would spell it; NULL = none */
    int flags;           /* ECF_REQUIRED | ECF_SECRET                   */
    double min, max;     /* INT, DOUBLE, DURATION(s), SIZE; min > max = no range */
    const char *choices; /* ENUM: "lz4|zstd|none"                       */
    const char *help;
} ecf_option;

#define ECF_OPT_STRING(n, T, f, d, fl, h)                         \
    {                                                             \
        n, ECF_OPT_T_STRING, offsetof(T, f), d, fl, 1, 0, NULL, h \
    }
#define ECF_OPT_INT(n, T, f, d, lo, hi, h)                      \
    {                                                           \
        n, ECF_OPT_T_INT, offsetof(T, f), d, 0, lo, hi, NULL, h \
    }
#define ECF_OPT_INT_REQ(n, T, f, lo, hi, h)                                   \
    {                                                                         \
        n, ECF_OPT_T_INT, offsetof(T, f), NULL, ECF_REQUIRED, lo, hi, NULL, h \
    }
#define ECF_OPT_DOUBLE(n, T, f, d, lo, hi, h)                      \
    {                                                              \
        n, ECF_OPT_T_DOUBLE, offsetof(T, f), d, 0, lo, hi, NULL, h \
    }
#define ECF_OPT_BOOL(n, T, f, d, h)                            \
    {                                                          \
        n, ECF_OPT_T_BOOL, offsetof(T, f), d, 0, 1, 0, NULL, h \
    }
/* Duration ranges are given in seconds. */
#define ECF_OPT_DURATION(n, T, f, d, lo_s, hi_s, h)                      \
    {                                                                    \
        n, ECF_OPT_T_DURATION, offsetof(T, f), d, 0, lo_s, hi_s, NULL, h \
    }
#define ECF_OPT_SIZE(n, T, f, d, lo, hi, h)                      \
    {                                                            \
        n, ECF_OPT_T_SIZE, offsetof(T, f), d, 0, lo, hi, NULL, h \
    }
#define ECF_OPT_ENUM(n, T, f, d, choices, h)                      \
    {                                                             \
        n, ECF_OPT_T_ENUM, offsetof(T, f), d, 0, 1, 0, choices, h \
    }
#define ECF_OPT_LIST(n, T, f, fl, h)                               \
    {                                                              \
        n, ECF_OPT_T_LIST, offsetof(T, f), NULL, fl, 1, 0, NULL, h \
    }
#define ECF_OPT_MAP(n, T, f, h)                                  \
    {                                                            \
        n, ECF_OPT_T_MAP, offsetof(T, f), NULL, 0, 1, 0, NULL, h \
    }
/* 1.2, header only. A map whose values are secrets (librdkafka's SASL
 * passwords and TLS keys): ECF_SECRET on the whole map. The core never
 * prints a map's values (its messages name the key), and `inspect` marks
 * the option secret; the keys are not secret. Any 1.x core honours it. */
#define ECF_OPT_SECRET_MAP(n, T, f, h)                                    \
    {                                                                     \
        n, ECF_OPT_T_MAP, offsetof(T, f), NULL, ECF_SECRET, 1, 0, NULL, h \
    }
#define ECF_OPT_FILE(n, T, f, d, fl, h)                         \
    {                                                           \
        n, ECF_OPT_T_FILE, offsetof(T, f), d, fl, 1, 0, NULL, h \
    }
#define ECF_OPT_END                                         \
    {                                                       \
        NULL, (ecf_opt_type)0, 0, NULL, 0, 0, 0, NULL, NULL \
    }

/* ---------------------------------------------------------------- plugin */

/*
 * 1.3. Whether a stage may run this plugin as several instances, with
 * `workers: N` (or `auto`, one per core) in its stage of the pipeline file.
 * Each instance is a whole plugin instance of its own: create, start, the
 * callbacks on its own thread, stop and destroy, its own state; they share
 * the stage's config (read-only), name, metrics (counters add up) and ports.
 * They run at once, so a plugin that declares it may must keep no unlocked
 * state outside its instance (no mutable statics); ecf_workers() tells an
 * instance its index, e.g. to name its files apart.
 * The core refuses `workers:` above 1 at validate, naming the file and line,
 * for a plugin that does not say it may, and for every source.
 *
 *   ECF_PARALLEL_NONE      one instance only: the default, and what every
 *                          plugin built before 1.3 is. A stage that keeps
 *                          state across batches that must be whole (a commit
 *                          for all its input, e.g. sink-iceberg's snapshots
 *                          and positions), or that is ordered across all of
 *                          its input.
 *   ECF_PARALLEL_ANY       any batch may go to any instance, in any order
 *                          (sink-null). The core hands each batch to the
 *                          instance with room, in turn.
 *   ECF_PARALLEL_PARTITION ordered per Kafka partition, or per key: the core
 *                          sends every message of one (topic, partition) to
 *                          one instance (partition modulo N), a message
 *                          without a partition by the hash of its key, and one
 *                          with neither to any instance. So each instance sees
 *                          a partition's messages in the order they were
 *                          emitted, and what it emits for them stays in that
 *                          order: a single sink downstream still gets each
 *                          partition's offsets in order, and a source that
 *                          commits the contiguous prefix of settled offsets
 *                          (source-kafka) is not held back. A batch holding
 *                          several partitions is split by the core (messages
 *                          copied, tokens shared), so such a stage takes raw
 *                          messages: the core refuses it at validate when its
 *                          input carries records (transform-validate's output).
 *
 * The shipped plugins: transform-validate is ECF_PARALLEL_PARTITION (the
 * CPU-bound parse; sink-iceberg after it needs each partition's offsets in
 * order); sink-null is ECF_PARALLEL_ANY; sink-iceberg is one instance (one
 * snapshot per interval must hold everything it took, with its positions),
 * and spreads its Parquet encoding over threads of its own instead
 * (`writer_threads`); sink-kafka and sink-file are one instance (one
 * producer, one file); every source is one (source-kafka fetches on
 * librdkafka's threads already).
 */
typedef enum {
    ECF_PARALLEL_NONE = 0,
    ECF_PARALLEL_ANY = 1,
    ECF_PARALLEL_PARTITION = 2,
} ecf_parallelism;

/*
 * The descriptor: every member is ABI 1.0, but `parallelism` (1.3).
 *
 * Lifecycle. create, start, stop and destroy run on the main thread (create
 * upstream first; start sinks first, sources last, so nothing emits into a
 * stage that is not started; stop only after every stage thread has ended);
 * run, process, tick and flush run on the stage's own thread, one at a time.
 * Threads a plugin starts itself must have ended when its destroy returns
 * (usually they are joined in stop).
 *   create(stage)   config is filled; allocate state, check cross-option rules,
 *                   declare output schemas. No side effects outside the
 *                   process: `ecflow validate` runs create and destroy too.
 *   start(stage)    connect, bind, open. Failing here stops the pipeline (exit 1).
 *   run(stage)      sources only: produce until ecf_should_stop(), or until done.
 *   process(stage, batch)   transforms and sinks: one batch.
 *   tick(stage, now_us)     every `tick_interval_us` while idle or busy; for
 *                   time-based flushes. Optional.
 *   flush(stage)    upstream has finished; make everything durable, settle acks.
 *   stop(stage)     close connections. destroy(stage): free state.
 */
typedef struct ecf_plugin {
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t size; /* sizeof(ecf_plugin) the plugin was built with */
    const char *name;
    ecf_kind kind;
    const char *version;
    const char *summary;
    /* Output ports, NULL-terminated; NULL = {"default"}. A sink has none
     * unless it declares some (side outputs, such as rows it rejects). */
    const char *const *ports;
    size_t config_size;
    const ecf_option *options;
    int64_t tick_interval_us;

    ecf_status (*create)(ecf_stage *stage);
    ecf_status (*start)(ecf_stage *stage);
    ecf_status (*run)(ecf_stage *stage);
    ecf_status (*process)(ecf_stage *stage, ecf_batch *batch);
    ecf_status (*tick)(ecf_stage *stage, int64_t now_us);
    ecf_status (*flush)(ecf_stage *stage);
    void (*stop)(ecf_stage *stage);
    void (*destroy)(ecf_stage *stage);

    /* Sinks that store source positions with their data (sink-iceberg keeps
     * Kafka offsets in each snapshot) say where a source should resume:
     * ECF_OK with *next_offset set, or ECF_ERR_UNAVAILABLE when they do not
     * know. Called from a source's thread while the sink runs, after the
     * sink's start: it must be thread-safe. Optional. */
    ecf_status (*resume_position)(ecf_stage *stage, const char *topic, int32_t partition, int64_t *next_offset);

    /* 1.3 [main]. Operator commands on what the stage owns, without running
     * the pipeline: `ecflow GROUP VERB PIPELINE.yaml [--stage NAME] [ARGS]`
     * creates every stage (as validate does), then calls command() instead
     * of start() on each stage whose plugin declares command_group GROUP
     * (sink-iceberg: `ecflow table compact|expire|clean|stats`). argv[0] is
     * VERB, then ARGS. Results go to stdout, progress to the log; ECF_OK, or
     * an error set with ecf_error()/ecf_fail(). command_help: one line per
     * verb, for `ecflow GROUP --help`. Optional. */
    const char *command_group;
    const char *command_help;
    ecf_status (*command)(ecf_stage *stage, int argc, const char *const *argv);

    /* 1.3. May a stage run this plugin as `workers: N` instances, and how
     * are batches routed between them (see ecf_parallelism)? A plugin built
     * before 1.3 has no such member: the core reads ECF_PARALLEL_NONE. */
    ecf_parallelism parallelism;
} ecf_plugin;

#define ECF_PLUGIN_ENTRY_SYMBOL "ecf_plugin_entry"
typedef const ecf_plugin *(*ecf_plugin_entry_fn)(void);

#if defined(__GNUC__)
#define ECF_EXPORT __attribute__((visibility("default")))
#else
#define ECF_EXPORT
#endif

#ifdef __cplusplus
#define ECF_EXTERN_C extern "C"
#else
#define ECF_EXTERN_C
#endif

/* The one declaration a plugin writes; the ABI fields are filled for it. */
#define ECF_PLUGIN_DEFINE(...)                                                                            \
    static const ecf_plugin ecf_plugin_descriptor_ = {                                                    \
        .abi_major = ECF_ABI_MAJOR, .abi_minor = ECF_ABI_MINOR, .size = sizeof(ecf_plugin), __VA_ARGS__}; \
    ECF_EXTERN_C ECF_EXPORT const ecf_plugin *ecf_plugin_entry(void);                                     \
    ECF_EXTERN_C ECF_EXPORT const ecf_plugin *ecf_plugin_entry(void) { return &ecf_plugin_descriptor_; }

/* ---------------------------------------------------------------- host */

/*
 * Services of the core. Append-only: new members go at the end, and a
 * plugin checks `size` before calling one newer than it was built for (the
 * wrappers below do that for members added after minor 0). Each member
 * says the ABI minor that added it; tests/unit/test_abi.c pins the layout.
 *
 * Threads. Each member says where a plugin may call it, as the core
 * guarantees it (core/host.c and what it calls):
 *   [any]      any thread: the main thread in a lifecycle callback, the
 *              stage's own thread, another stage's thread (in a settle
 *              callback), or a thread the plugin started itself (a poller,
 *              an HTTP server's workers), from create until destroy returns.
 *              The core makes these safe with atomics or its own locks.
 *   [holder]   any thread, on a batch (or a message of a batch) that thread
 *              holds. A batch has one holder at a time: whoever made it with
 *              batch_new, or the stage thread for the batch `process` got,
 *              until it is emitted or released. Nothing in a batch is locked.
 *   [callback] only inside one of this stage's callbacks, on the thread
 *              running it, because the core reads what it leaves as that
 *              callback returns.
 *   [main]     only in create, start, stop or destroy (the main thread),
 *              because the core reads it from other threads unlocked.
 */
struct ecf_host {
    uint32_t size;      /* 1.0. sizeof(ecf_host) the core was built with */
    uint32_t abi_major; /* 1.0 */
    uint32_t abi_minor; /* 1.0 */

    /* ---- the stage */
    /* 1.0 [any]. The config struct the core filled; read-only. */
    void *(*config)(ecf_stage *s);
    /* 1.0 [any]. What set_state stored. */
    void *(*state)(ecf_stage *s);
    /* 1.0 [main]. A thread started later sees what was stored before. */
    void (*set_state)(ecf_stage *s, void *state);
    /* 1.0 [any]. The stage's name in the pipeline. */
    const char *(*name)(ecf_stage *s);
    /* 1.0 [any]. True on shutdown or once the stage failed. */
    bool (*should_stop)(ecf_stage *s);
    /* 1.0 [callback]. Why the running callback fails (ecf_error, ecf_fail):
     * the core prints it when the callback returns; it is not locked. */
    void (*set_error)(ecf_stage *s, const char *fmt, va_list ap);

    /* 1.0 [any]. Logging (one line, written under a lock); never pass secrets. */
    void (*log)(ecf_stage *s, ecf_log_level level, const char *fmt, va_list ap);

    /* 1.0 [any]. Clocks in microseconds; tests may replace them. */
    int64_t (*now_us)(ecf_stage *s); /* wall clock, UNIX epoch */
    int64_t (*monotonic_us)(ecf_stage *s);

    /* ---- metrics: name is prefixed with "ecflow_" and labelled by stage */
    /* 1.0 [any]. Registration takes the registry's lock; usually done in
     * create or start, but a stage may add series as it learns of them
     * (source-kafka: one per partition, on its run thread). */
    ecf_metric *(*metric)(ecf_stage *s, ecf_metric_kind kind, const char *name, const char *help);
    /* 1.0 [any]. Updates are atomic. */
    void (*metric_add)(ecf_metric *m, double v);
    void (*metric_set)(ecf_metric *m, double v);
    void (*metric_observe)(ecf_metric *m, double v);

    /* ---- batches */
    /* 1.0 [any]. From a locked pool; the caller becomes the batch's holder. */
    ecf_batch *(*batch_new)(ecf_stage *s);
    /* 1.0 [holder]. */
    ecf_status (*batch_add)(ecf_batch *b, const ecf_message_init *m);
    uint32_t (*batch_count)(const ecf_batch *b);
    ecf_message *(*batch_message)(ecf_batch *b, uint32_t i);
    size_t (*batch_bytes)(const ecf_batch *b);
    void (*batch_release)(ecf_batch *b);
    /* 1.0 [callback] of run, process, tick or flush, by the batch's holder.
     * A source may also emit from threads it started, while its run is
     * running: the core closes the stage's outputs when run returns (and
     * when flush returns, for a transform). The rings take many producers. */
    ecf_status (*emit)(ecf_stage *s, const char *port, ecf_batch *b);
    ecf_status (*try_emit)(ecf_stage *s, const char *port, ecf_batch *b);

    /* ---- acknowledgements */
    /* 1.0 [any]. Tokens are reference-counted with atomics. */
    ecf_token *(*token_new)(ecf_stage *s, ecf_settle_fn fn, void *user, uint64_t tag);
    void (*token_release)(ecf_token *t);
    /* 1.0 [holder] of the message's batch: they take the token out of it. */
    void (*ack)(ecf_stage *s, ecf_message *m);
    void (*nack)(ecf_stage *s, ecf_message *m, ecf_status st, const char *reason);
    ecf_token *(*hold)(ecf_stage *s, ecf_message *m);
    /* 1.0 [any]. A held token, exactly once; the source's settle callback
     * may run on this thread. */
    void (*settle)(ecf_stage *s, ecf_token *t, ecf_status st, const char *reason);

    /* ---- readiness: a stage says whether it can do its job now (e.g. its
     * broker answers); the pipeline is ready when every stage is. */
    /* 1.0 [any]. An atomic flag. */
    void (*set_ready)(ecf_stage *s, bool ready);
    bool (*pipeline_ready)(ecf_stage *s);

    /* 1.0 [any]. Runtime settings of the `pipeline:` map ("name",
     * "batch_size", "ring_capacity"), as strings; NULL when unset. */
    const char *(*pipeline_setting)(ecf_stage *s, const char *key);

    /* ---- schemas, negotiated while the pipeline is built (like caps in
     * GStreamer). A stage that emits records declares each port's schema in
     * `create` — stages are created upstream first, so a downstream `create`
     * already sees it. declare_schema takes ownership (Arrow move semantics:
     * the core calls release). input_schema(i) is the schema arriving on
     * the stage's i-th input (in `inputs:` order), NULL for raw messages. */
    /* 1.0 [main], in create only. */
    ecf_status (*declare_schema)(ecf_stage *s, const char *port, struct ArrowSchema *schema);
    /* 1.0 [any]. Schemas do not change once every stage is created. */
    const struct ArrowSchema *(*input_schema)(ecf_stage *s, uint32_t input);
    uint32_t (*input_count)(ecf_stage *s);

    /* 1.0 [holder]. Records on a batch: row i is message i. set_records takes
     * ownership of the array (moved); its length must equal the message
     * count. */
    ecf_status (*batch_set_records)(ecf_batch *b, struct ArrowArray *records);
    const struct ArrowArray *(*batch_records)(const ecf_batch *b);
    /* 1.0 [holder]. Which input a batch arrived on, for stages with several. */
    uint32_t (*batch_input)(const ecf_batch *b);

    /* 1.0 [any], between this stage's start and stop. Exactly-once resume:
     * asks every sink downstream of this stage (their resume_position
     * callbacks run on the caller's thread). ECF_OK with the smallest answer
     * when every one of them keeps positions; ECF_ERR_UNAVAILABLE when any
     * cannot answer — resuming past what that sink made durable could skip
     * records — so fall back to your own committed position. Sinks that
     * answer must therefore skip records below their stored position when
     * they are delivered again. */
    ecf_status (*resume_position)(ecf_stage *s, const char *topic, int32_t partition, int64_t *next_offset);

    /* 1.0 [any]. Whether any stage reads this port (an unread port's batches
     * are counted and dropped), so a plugin can choose another way to answer. */
    bool (*port_connected)(ecf_stage *s, const char *port);

    /* 1.1 [any]. Puts a metric on the live line `ecflow run` prints on a
     * terminal, as `label`: a counter as its rate per second, a gauge as
     * its value; metrics given the same label are summed. For the few
     * numbers a person watching needs ("committed", "lag", "invalid"). */
    void (*metric_status)(ecf_stage *s, ecf_metric *m, const char *label);

    /* 1.3 [any], after registering a histogram and before its first
     * observation: its bucket bounds (finite, increasing, at most 32), so a
     * latency that lives around a known interval (a commit interval) gets
     * fine buckets there. ECF_ERR_INVALID (logged) otherwise. */
    ecf_status (*metric_buckets)(ecf_stage *s, ecf_metric *m, const double *bounds, uint32_t n);
    /* 1.3 [any]. A structured log event operators search for ("commit",
     * "rebalance", "broker_down"): `fields` holds key, value, key, value
     * ..., NULL; text logs print them as key=value, JSON logs as members
     * (numbers as numbers). A "msg" field is the human sentence: it leads
     * the text line and is the JSON "msg". The core prints at most 10 of
     * each (stage, event) per second and counts what it left out. */
    void (*log_event)(ecf_stage *s, ecf_log_level level, const char *event, const char *const *fields);

    /* 1.3 [any]. How many instances run this stage (`workers:`), and which
     * one this is (0 .. count-1), e.g. to name files apart. */
    uint32_t (*workers)(ecf_stage *s, uint32_t *index);
};

/* 1.0. The public head of every stage handle; the rest is the core's. */
typedef struct {
    uint32_t size;
    const ecf_host *host;
} ecf_stage_head;

static inline const ecf_host *ecf_host_of(ecf_stage *s) { return ((const ecf_stage_head *)(const void *)s)->host; }

/* ---------------------------------------------------------------- wrappers */

static inline void *ecf_config(ecf_stage *s) { return ecf_host_of(s)->config(s); }
static inline void *ecf_state(ecf_stage *s) { return ecf_host_of(s)->state(s); }
static inline void ecf_set_state(ecf_stage *s, void *st) { ecf_host_of(s)->set_state(s, st); }
static inline const char *ecf_name(ecf_stage *s) { return ecf_host_of(s)->name(s); }
static inline bool ecf_should_stop(ecf_stage *s) { return ecf_host_of(s)->should_stop(s); }
static inline int64_t ecf_now_us(ecf_stage *s) { return ecf_host_of(s)->now_us(s); }
static inline int64_t ecf_monotonic_us(ecf_stage *s) { return ecf_host_of(s)->monotonic_us(s); }

#if defined(__GNUC__)
#define ECF_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define ECF_PRINTF(a, b)
#endif

static inline ECF_PRINTF(3, 4) void ecf_log(ecf_stage *s, ecf_log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ecf_host_of(s)->log(s, lvl, fmt, ap);
    va_end(ap);
}

/* [callback]. Say why the running callback fails; the core prints it with
 * the stage name when the callback returns. Returns ECF_ERR_CONFIG, for
 * configuration errors: `return ecf_error(stage, "option 'x': ...");`. */
static inline ECF_PRINTF(2, 3) ecf_status ecf_error(ecf_stage *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ecf_host_of(s)->set_error(s, fmt, ap);
    va_end(ap);
    return ECF_ERR_CONFIG;
}

/* 1.2 [callback], header only (over set_error, so any 1.x core). The same
 * for any other failure: sets the message and returns `st`, as in
 * `return ecf_fail(stage, ECF_ERR_IO, "cannot open '%s': %s", path, why);`.
 * A failure is never ECF_OK: that is turned into ECF_ERR_INTERNAL. */
static inline ECF_PRINTF(3, 4) ecf_status ecf_fail(ecf_stage *s, ecf_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ecf_host_of(s)->set_error(s, fmt, ap);
    va_end(ap);
    return st == ECF_OK ? ECF_ERR_INTERNAL : st;
}

static inline ecf_metric *ecf_metric_new(ecf_stage *s, ecf_metric_kind k, const char *name, const char *help)
{
    return ecf_host_of(s)->metric(s, k, name, help);
}

static inline ecf_batch *ecf_batch_new(ecf_stage *s) { return ecf_host_of(s)->batch_new(s); }
static inline ecf_status ecf_emit(ecf_stage *s, const char *port, ecf_batch *b)
{
    return ecf_host_of(s)->emit(s, port, b);
}
static inline ecf_status ecf_try_emit(ecf_stage *s, const char *port, ecf_batch *b)
{
    return ecf_host_of(s)->try_emit(s, port, b);
}
static inline ecf_token *ecf_token_new(ecf_stage *s, ecf_settle_fn fn, void *user, uint64_t tag)
{
    return ecf_host_of(s)->token_new(s, fn, user, tag);
}
static inline void ecf_set_ready(ecf_stage *s, bool ready) { ecf_host_of(s)->set_ready(s, ready); }
static inline bool ecf_pipeline_ready(ecf_stage *s) { return ecf_host_of(s)->pipeline_ready(s); }
static inline const char *ecf_pipeline_setting(ecf_stage *s, const char *key)
{
    return ecf_host_of(s)->pipeline_setting(s, key);
}
static inline void ecf_ack(ecf_stage *s, ecf_message *m) { ecf_host_of(s)->ack(s, m); }
static inline void ecf_nack(ecf_stage *s, ecf_message *m, ecf_status st, const char *reason)
{
    ecf_host_of(s)->nack(s, m, st, reason);
}
static inline ecf_token *ecf_hold(ecf_stage *s, ecf_message *m) { return ecf_host_of(s)->hold(s, m); }
static inline void ecf_settle(ecf_stage *s, ecf_token *t, ecf_status st, const char *reason)
{
    ecf_host_of(s)->settle(s, t, st, reason);
}

/*
 * Batch helpers need no stage: the batch knows its host. They are reached
 * through the stage that made or received the batch.
 */
static inline ecf_status ecf_batch_add(ecf_stage *s, ecf_batch *b, const ecf_message_init *m)
{
    return ecf_host_of(s)->batch_add(b, m);
}
static inline uint32_t ecf_batch_count(ecf_stage *s, const ecf_batch *b) { return ecf_host_of(s)->batch_count(b); }
static inline ecf_message *ecf_batch_message(ecf_stage *s, ecf_batch *b, uint32_t i)
{
    return ecf_host_of(s)->batch_message(b, i);
}
static inline size_t ecf_batch_bytes(ecf_stage *s, const ecf_batch *b) { return ecf_host_of(s)->batch_bytes(b); }
static inline void ecf_batch_release(ecf_stage *s, ecf_batch *b) { ecf_host_of(s)->batch_release(b); }
static inline void ecf_token_release(ecf_stage *s, ecf_token *t) { ecf_host_of(s)->token_release(t); }
/* A no-op on a host older than 1.1. */
static inline void ecf_metric_status(ecf_stage *s, ecf_metric *m, const char *label)
{
    const ecf_host *h = ecf_host_of(s);
    if (m && h->size >= offsetof(ecf_host, metric_status) + sizeof h->metric_status)
        h->metric_status(s, m, label);
}

/* ECF_ERR_UNAVAILABLE on a host older than 1.3: the default buckets stay. */
static inline ecf_status ecf_metric_buckets(ecf_stage *s, ecf_metric *m, const double *bounds, uint32_t n)
{
    const ecf_host *h = ecf_host_of(s);
    if (!m || h->size < offsetof(ecf_host, metric_buckets) + sizeof h->metric_buckets)
        return ECF_ERR_UNAVAILABLE;
    return h->metric_buckets(s, m, bounds, n);
}
/* On a host older than 1.3, one plain log line with the same fields. */
static inline void ecf_log_event(ecf_stage *s, ecf_log_level level, const char *event, const char *const *fields)
{
    const ecf_host *h = ecf_host_of(s);
    if (h->size >= offsetof(ecf_host, log_event) + sizeof h->log_event) {
        h->log_event(s, level, event, fields);
        return;
    }
    char line[512];
    size_t n = 0;
    const char *parts[] = {"event=", event};
    for (int i = 0; i < 2; i++)
        for (const char *p = parts[i]; *p && n + 1 < sizeof line; p++)
            line[n++] = *p;
    for (const char *const *f = fields; f && f[0] && f[1]; f += 2) {
        const char *kv[] = {" ", f[0], "=", f[1]};
        for (int i = 0; i < 4; i++)
            for (const char *p = kv[i]; *p && n + 1 < sizeof line; p++)
                line[n++] = *p;
    }
    line[n] = '\0';
    ecf_log(s, level, "%s", line);
}

/* 1.3. Instances of this stage, and this one's index; 1 and 0 on a host
 * older than 1.3 (which runs every stage as one instance). */
static inline uint32_t ecf_workers(ecf_stage *s, uint32_t *index)
{
    const ecf_host *h = ecf_host_of(s);
    if (h->size >= offsetof(ecf_host, workers) + sizeof h->workers)
        return h->workers(s, index);
    if (index)
        *index = 0;
    return 1;
}

static inline void ecf_metric_add(ecf_stage *s, ecf_metric *m, double v) { ecf_host_of(s)->metric_add(m, v); }
static inline void ecf_metric_set(ecf_stage *s, ecf_metric *m, double v) { ecf_host_of(s)->metric_set(m, v); }
static inline void ecf_metric_observe(ecf_stage *s, ecf_metric *m, double v) { ecf_host_of(s)->metric_observe(m, v); }

static inline ecf_status ecf_declare_schema(ecf_stage *s, const char *port, struct ArrowSchema *schema)
{
    return ecf_host_of(s)->declare_schema(s, port, schema);
}
static inline const struct ArrowSchema *ecf_input_schema(ecf_stage *s, uint32_t input)
{
    return ecf_host_of(s)->input_schema(s, input);
}
static inline uint32_t ecf_input_count(ecf_stage *s) { return ecf_host_of(s)->input_count(s); }
static inline ecf_status ecf_batch_set_records(ecf_stage *s, ecf_batch *b, struct ArrowArray *records)
{
    return ecf_host_of(s)->batch_set_records(b, records);
}
static inline const struct ArrowArray *ecf_batch_records(ecf_stage *s, const ecf_batch *b)
{
    return ecf_host_of(s)->batch_records(b);
}
static inline ecf_status ecf_resume_position(ecf_stage *s, const char *topic, int32_t partition, int64_t *next_offset)
{
    return ecf_host_of(s)->resume_position(s, topic, partition, next_offset);
}
static inline bool ecf_port_connected(ecf_stage *s, const char *port)
{
    return ecf_host_of(s)->port_connected(s, port);
}
static inline uint32_t ecf_batch_input(ecf_stage *s, const ecf_batch *b) { return ecf_host_of(s)->batch_input(b); }

/* Acknowledge every message of a batch at once (sinks after a durable write). */
static inline void ecf_batch_ack_all(ecf_stage *s, ecf_batch *b)
{
    uint32_t n = ecf_batch_count(s, b);
    for (uint32_t i = 0; i < n; i++)
        ecf_ack(s, ecf_batch_message(s, b, i));
}

static inline void ecf_batch_nack_all(ecf_stage *s, ecf_batch *b, ecf_status st, const char *reason)
{
    uint32_t n = ecf_batch_count(s, b);
    for (uint32_t i = 0; i < n; i++)
        ecf_nack(s, ecf_batch_message(s, b, i), st, reason);
}

static inline const char *ecf_status_str(ecf_status st)
{
    static const char *const names[ECF_STATUS_COUNT_] = {
        "ok",          "invalid input", "configuration error", "I/O error",
        "unavailable", "timed out",     "backpressure",        "out of memory",
        "stopped",     "dropped",       "fatal error",         "internal error",
    };
    return (unsigned)st < ECF_STATUS_COUNT_ ? names[st] : "unknown status";
}

#ifdef __cplusplus
}
#endif
#endif /* ECFLOW_PLUGIN_H */
