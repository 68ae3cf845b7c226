/*
 * sink-iceberg: typed records into an Apache Iceberg v2 table (Parquet data
 * files, Avro manifests, JSON metadata; a file or REST catalog; local disk
 * or S3).
 *
 * process(): rows are split by partition value into one open Parquet writer
 * per partition (writer_pool.h: files roll at target_file_size, memory stays
 * bounded by max_buffered_bytes and max_open_partitions); the ack token of
 * every row is held.
 * A commit (every commit_interval from the first uncommitted row, when
 * finished files reach target_file_size, and at flush) closes every open
 * file, appends them all as one snapshot, and only then settles the held
 * tokens: ECF_OK, or the commit's failure and reason.
 *
 * Exactly-once from Kafka: every snapshot this sink commits carries its
 * writer id ("ecflow.writer-id") and the Kafka positions of that writer
 * ("ecflow.kafka-offsets": per topic, per partition, the next offset to
 * read; cumulative). At start the positions come back from the newest
 * snapshot of the same writer in the table's lineage; resume_position()
 * answers sources from them (under pos_lock: it runs on a source's thread),
 * and process() skips records below them (redeliveries: acked at once,
 * written never) or inside the rows taken since the last commit (settled
 * with that commit, written once).
 */
#include <ecflow/plugin.h>

#include "arrow_columns.h"
#include "catalog_rest.h"
#include "dedupe.h"
#include "dedupe_store.h"
#include "file_io.h"
#include "iceberg_schema.h"
#include "manifest.h"
#include "parquet_writer.h"
#include "partition.h"
#include "positions.h"
#include "reject.h"
#include "table_commit.h"
#include "upkeep.h"
#include "writer_pool.h"

#include <glib.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#define TICK_US 100000 /* commit_interval granularity */

typedef struct {
    char *warehouse;
    char *table;
    char **partition_by;
    int64_t target_file_size;
    int64_t commit_interval;
    int64_t row_group_size;
    int64_t page_size;
    char *codec;
    int64_t compression_level;
    int64_t max_open_partitions;
    int64_t max_buffered_bytes;
    int64_t max_uncommitted_rows;
    int64_t writer_threads;
    bool fsync;
    char *writer_id;
    char *dedupe_key;
    int64_t dedupe_window;
    char *s3_endpoint;
    char *s3_region;
    char *s3_path_style;
    char *s3_access_key_id;
    char *s3_secret_access_key;
    char *s3_session_token;
    int64_t s3_part_size;
    int64_t s3_max_attempts;
    int64_t s3_timeout;
    char *catalog;
    char *catalog_uri;
    char *catalog_credential;
    char *catalog_token;
    char *catalog_oauth2_uri;
    char *catalog_scope;
    ecf_kv *catalog_headers;
    bool create_namespace;
    bool maintenance;
    int64_t maintenance_interval;
    int64_t compact_min_files;
    int64_t compact_small_file_size;
    int64_t compact_max_bytes;
    int64_t compact_memory;
    int64_t max_manifests;
    int64_t snapshot_keep_last;
    int64_t snapshot_max_age;
    int64_t orphan_age;
} ice_config;

static const ecf_option ice_options[] = {
    ECF_OPT_STRING("warehouse", ice_config, warehouse, NULL, 0,
                   "catalog file: the warehouse root, a directory or s3://bucket[/prefix], and the table "
                   "lives at <warehouse>/<namespace>/<name> (required); catalog rest: the warehouse the "
                   "catalog serves (its /v1/config?warehouse=), if it has several"),
    ECF_OPT_ENUM("catalog", ice_config, catalog, "file", "file|rest",
                 "file: versions as metadata/vN.metadata.json under the table (local disk or S3, no "
                 "service); rest: an Iceberg REST catalog at catalog_uri, which assigns the table's location"),
    ECF_OPT_STRING("catalog_uri", ice_config, catalog_uri, NULL, 0,
                   "the REST catalog's base URI (requests go to <uri>/v1/...), e.g. http://127.0.0.1:8181"),
    ECF_OPT_STRING("catalog_credential", ice_config, catalog_credential, NULL, ECF_SECRET,
                   "\"client_id:client_secret\" for OAuth2 client credentials; tokens are fetched and "
                   "refreshed before they expire. Give it from the environment: \"${ICEBERG_CREDENTIAL}\""),
    ECF_OPT_STRING("catalog_token", ice_config, catalog_token, NULL, ECF_SECRET,
                   "a bearer token for the REST catalog (when no catalog_credential)"),
    ECF_OPT_STRING("catalog_oauth2_uri", ice_config, catalog_oauth2_uri, NULL, 0,
                   "where tokens come from; default <catalog_uri>/v1/oauth/tokens"),
    ECF_OPT_STRING("catalog_scope", ice_config, catalog_scope, "catalog", 0, "OAuth2 scope asked for"),
    ECF_OPT_MAP("catalog_headers", ice_config, catalog_headers,
                "extra HTTP headers on every REST catalog request (e.g. X-Iceberg-Access-Delegation)"),
    ECF_OPT_BOOL("create_namespace", ice_config, create_namespace, "false",
                 "REST: create the table's namespace when the catalog has none by that name (else that is "
                 "an error at start)"),
    ECF_OPT_STRING("table", ice_config, table, NULL, ECF_REQUIRED, "table identifier, \"namespace.name\""),
    ECF_OPT_LIST("partition_by", ice_config, partition_by, 0,
                 "partition fields of a new table: a column (identity) or year|month|day|hour(column); "
                 "default [event_type, day(timestamp)]; [] for none"),
    ECF_OPT_SIZE("target_file_size", ice_config, target_file_size, "128MiB", 4096, 1e13,
                 "a data file is finished once it reaches this size"),
    ECF_OPT_DURATION("commit_interval", ice_config, commit_interval, "10s", 0.1, 86400,
                     "longest time a row waits for its commit (and its ack)"),
    ECF_OPT_SIZE("row_group_size", ice_config, row_group_size, "128MiB", 4096, 1e13,
                 "Parquet row group size (encoded bytes)"),
    ECF_OPT_SIZE("page_size", ice_config, page_size, "1MiB", 1024, 1e9, "Parquet data page size (bytes of values)"),
    ECF_OPT_ENUM("codec", ice_config, codec, "zstd", "zstd|snappy|none", "Parquet compression codec"),
    ECF_OPT_INT("compression_level", ice_config, compression_level, "1", 1, 22, "zstd level"),
    ECF_OPT_INT("max_open_partitions", ice_config, max_open_partitions, "256", 1, 100000,
                "open data files at once; past this the least recently used one is finished"),
    ECF_OPT_SIZE("max_buffered_bytes", ice_config, max_buffered_bytes, "16MiB", 65536, 1e12,
                 "memory for unwritten row groups (their pages, dictionaries and encoded chunks, as "
                 "allocated) and for written bytes the IO still holds (an S3 part being filled); past "
                 "this the largest holder writes out its row group, or finishes its file"),
    ECF_OPT_INT("max_uncommitted_rows", ice_config, max_uncommitted_rows, "250000", 1, 1e9,
                "rows taken but not yet committed; reaching it commits before commit_interval. Each "
                "holds its ack until the commit: ~100 bytes (the token, and the source's offset book), "
                "so 250000 is ~25 MB during a catch-up, whatever the backlog or commit_interval"),
    ECF_OPT_INT("writer_threads", ice_config, writer_threads, "1", 0, 64,
                "threads that encode Parquet: each batch's rows are cut into this many ranges, written "
                "into files of their own at once; 0 = one per core. The commit stays one per interval "
                "(each partition gets up to this many files in it); max_buffered_bytes and "
                "max_open_partitions are shared out among them"),
    ECF_OPT_BOOL("fsync", ice_config, fsync, "true", "fsync data files before they are committed"),
    ECF_OPT_STRING("writer_id", ice_config, writer_id, NULL, 0,
                   "who this sink is in the table's snapshot summaries: its Kafka positions are kept "
                   "and read back under this id; default \"<pipeline name>/<stage name>\". Keep it "
                   "stable across restarts; give every pipeline that writes the same table its own"),
    ECF_OPT_STRING("dedupe_key", ice_config, dedupe_key, NULL, 0,
                   "a string column (e.g. event_id): a row whose key the table got within the last "
                   "dedupe_window keys is not written again, e.g. an event a client sent twice because "
                   "its first answer was lost in a crash, also across restarts (the keys are kept in "
                   "files the snapshots name, hashed under the table's own random key); default none"),
    ECF_OPT_INT("dedupe_window", ice_config, dedupe_window, "1000000", 1, 1000000000,
                "keys remembered for dedupe_key, newest first, those of the commit being prepared "
                "included. Memory: 24-32 bytes per key (measured: 24 MB at 1000000), whatever the rows per "
                "commit. Disk: 16 bytes "
                "per key; a writer's newest snapshot names at most 2 x dedupe_window x 16 bytes of key "
                "files (32 MB at 1000000)"),
    ECF_OPT_STRING("s3_endpoint", ice_config, s3_endpoint, NULL, 0,
                   "S3 endpoint URL (http[s]://host[:port]); default $AWS_ENDPOINT_URL_S3, "
                   "$AWS_ENDPOINT_URL, else AWS's for the region"),
    ECF_OPT_STRING("s3_region", ice_config, s3_region, NULL, 0,
                   "S3 region requests are signed for; default $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1"),
    ECF_OPT_ENUM("s3_path_style", ice_config, s3_path_style, "auto", "auto|true|false",
                 "address buckets as endpoint/bucket/key (true) or bucket.endpoint/key (false); auto: path "
                 "style when an endpoint is given (MinIO, SeaweedFS, Ceph), virtual-hosted on AWS"),
    ECF_OPT_STRING("s3_access_key_id", ice_config, s3_access_key_id, NULL, ECF_SECRET,
                   "default $AWS_ACCESS_KEY_ID; prefer the environment to a literal in the file"),
    ECF_OPT_STRING("s3_secret_access_key", ice_config, s3_secret_access_key, NULL, ECF_SECRET,
                   "default $AWS_SECRET_ACCESS_KEY"),
    ECF_OPT_STRING("s3_session_token", ice_config, s3_session_token, NULL, ECF_SECRET,
                   "default $AWS_SESSION_TOKEN (temporary credentials)"),
    ECF_OPT_SIZE("s3_part_size", ice_config, s3_part_size, "8MiB", 5 << 20, 5368709120.0,
                 "multipart upload part size: the memory one open data file holds on S3, whatever "
                 "target_file_size is"),
    ECF_OPT_INT("s3_max_attempts", ice_config, s3_max_attempts, "8", 1, 100,
                "tries per S3 request on timeouts, resets, 5xx and 429, with exponential backoff and jitter"),
    ECF_OPT_DURATION("s3_timeout", ice_config, s3_timeout, "30s", 1, 3600,
                     "an S3 request that moves no byte for this long is tried again"),
    ECF_OPT_BOOL("maintenance", ice_config, maintenance, "true",
                 "keep the table healthy in a background thread every maintenance_interval: compact small "
                 "files and merge manifests, expire snapshots, remove orphan files (README: Table maintenance); "
                 "`ecflow table` runs the same steps by hand"),
    ECF_OPT_DURATION("maintenance_interval", ice_config, maintenance_interval, "1m", 1, 86400,
                     "time between background maintenance runs"),
    ECF_OPT_INT("compact_min_files", ice_config, compact_min_files, "8", 2, 100000,
                "small files of one partition and size tier (64KiB, 512KiB, 4MiB, ... each 8x) that are "
                "rewritten together; fewer wait for more"),
    ECF_OPT_SIZE("compact_small_file_size", ice_config, compact_small_file_size, "96MiB", 1024, 1e13,
                 "data files below this are compacted (Iceberg's default: 3/4 of target_file_size)"),
    ECF_OPT_SIZE("compact_max_bytes", ice_config, compact_max_bytes, "1GiB", 1024, 1e15,
                 "input bytes one maintenance run rewrites at most"),
    ECF_OPT_SIZE("compact_memory", ice_config, compact_memory, "24MiB", 1 << 20, 1e12,
                 "memory a rewrite holds: one input file at a time (files above half of this are not "
                 "compacted) and one row group of the file it writes (its buffers at most half of this, "
                 "so the compacted file's row groups are a little smaller)"),
    ECF_OPT_INT("max_manifests", ice_config, max_manifests, "16", 1, 100000,
                "the current snapshot lists more manifests than this (one per commit): they are merged into one"),
    ECF_OPT_INT("snapshot_keep_last", ice_config, snapshot_keep_last, "100", 1, 1000000,
                "expiry keeps the newest this many snapshots of the table's history"),
    ECF_OPT_DURATION("snapshot_max_age", ice_config, snapshot_max_age, "10m", 1, 1e9,
                     "and every snapshot younger than this (the time-travel window); a writer's newest snapshot "
                     "(its Kafka positions) is always kept"),
    ECF_OPT_DURATION("orphan_age", ice_config, orphan_age, "3h", 1, 1e9,
                     "files no snapshot references are removed once older than this, so that a writer's files "
                     "waiting for their commit are never touched: keep it well above commit_interval"),
    ECF_OPT_END,
};

static char *default_partition_by[] = {"event_type", "day(timestamp)", NULL};

typedef struct ice_state ice_state;

/* One Parquet encoder: a writer pool of its own (writer_threads). */
typedef struct {
    ice_state *st;
    unsigned index;
    writer_pool *pool;
    char *run_id;    /* its files' names: <run_id>-<seq>.parquet */
    GThread *thread; /* NULL for encoder 0: the stage's own thread */
    uint8_t *fates;  /* this encoder's rows of the batch */
    uint32_t cap_fates;
    uint64_t seen; /* the last job it took (job_seq), from before its thread starts */
    unsigned open; /* what its pool holds after its last job */
    int64_t buffered;
} encoder;

typedef enum { JOB_WRITE, JOB_FINISH, JOB_QUIT } job_kind;

struct ice_state {
    ecf_stage *stage;
    file_io *io;
    rest_catalog *rest; /* catalog: rest */
    char *ns, *name;    /* the table identifier */
    char *location;     /* the table's; REST: known once the table is open */
    ice_schema input;
    char **partition_by;
    ice_table table;
    bool table_open;
    /* file columns: one per input column, typed as the table column */
    int n_cols;
    pq_column_spec *cols;
    arrow_kind *kinds;
    part_source *psrc;
    pq_options pq;
    /* Encoders, each with its open files by partition. The stage's thread
     * hands all of them a job and waits until every one is done, so pools
     * are never touched by two threads at once, and everything else here
     * stays the stage thread's. pool_lock guards what their events change
     * (pending, pending_bytes, poisoned). */
    encoder *enc;
    unsigned n_enc;
    pthread_mutex_t job_lock; /* pthreads, not GMutex: ThreadSanitizer sees these */
    pthread_cond_t job_cond, done_cond;
    uint64_t job_seq;
    unsigned job_left;
    job_kind job;
    const struct ArrowArray *job_rec;
    uint32_t job_n;
    const uint8_t *job_fate;
    pthread_mutex_t pool_lock;
    GPtrArray *pending; /* data_file*, finished, uncommitted */
    int64_t pending_bytes;
    GPtrArray *held;    /* ecf_token* */
    GArray *held_since; /* int64 ingest time (µs) of each held row, for freshness */
    int64_t first_row_us;
    char *poisoned;      /* a write failed: the next commit must fail */
    guint poisoned_more; /* further write errors before that commit */
    /* Kafka positions (positions.h). `committed` is what the table holds for
     * this writer: written on this thread under pos_lock, read by
     * resume_position() on sources' threads under it. The pending maps
     * (rows taken since the last commit) and `merged` are this thread's. */
    char *writer_id;
    GMutex pos_lock;
    pos_map *committed;
    pos_map *pending_lo, *pending_hi;
    pos_map *merged; /* what the commit being applied stores */
    GMutex fresh_lock;
    pos_map *fresh;          /* positions read back from the table for sources (fresh_lock) */
    int64_t fresh_at;        /* when (monotonic µs; 0: never) */
    GHashTable *skip_logged; /* partitions whose first skip was logged */
    uint8_t *fates;
    uint32_t cap_fates;
    char *run_id;
    upkeep *upkeep;       /* background maintenance; NULL when off */
    dedupe *dedupe;       /* NULL without dedupe_key */
    ice_reject *reject;   /* rows the table cannot take (reject.h) */
    dedupe_store *dstore; /* its keys kept with the table (with dedupe) */
    int dedupe_col;       /* its column in the input records */
    uint32_t copies_held; /* rows skipped as copies since the last commit */
    ecf_metric *m_committed_rows, *m_freshness, *m_duplicates, *m_last_commit_ts, *m_newest_event_ts;
    ecf_metric *m_rows, *m_files, *m_bytes, *m_commits, *m_commit_fail, *m_commit_latency, *m_open, *m_buffered,
        *m_skipped;
};

/* ------------------------------------------------------------ writer pool events */

/* One error line per failed commit attempt: an unwritable warehouse fails
 * every partition's file alike, and their paths made each line unique. */
static void poison(ice_state *st, char *why)
{
    if (!st->poisoned) {
        ecf_log(st->stage, ECF_LOG_ERROR, "%s", why);
        st->poisoned = why;
        return;
    }
    st->poisoned_more++;
    ecf_log(st->stage, ECF_LOG_DEBUG, "%s", why);
    g_free(why);
}

/* wp_events.failed, on an encoder's thread */
static void pool_failed(void *ctx, char *why)
{
    ice_state *st = ctx;
    pthread_mutex_lock(&st->pool_lock);
    poison(st, why);
    pthread_mutex_unlock(&st->pool_lock);
}

/* wp_events.file_done, on an encoder's thread: a finished file waits for
 * the next commit. */
static void pool_file_done(void *ctx, data_file *df)
{
    ice_state *st = ctx;
    pthread_mutex_lock(&st->pool_lock);
    g_ptr_array_add(st->pending, df);
    st->pending_bytes += df->metrics.file_size;
    pthread_mutex_unlock(&st->pool_lock);
    ecf_metric_add(st->stage, st->m_files, 1);
    ecf_metric_add(st->stage, st->m_bytes, (double)df->metrics.file_size);
}

/* ------------------------------------------------------------ encoders */

#define NOT_MINE 0xff /* a fate no row is taken for */

/* Encoder i of n writes rows [i*n_rows/n, (i+1)*n_rows/n) of the batch:
 * every encoder as much, whatever the partitions. */
static void run_job(encoder *e)
{
    ice_state *st = e->st;
    const ice_config *cfg = ecf_config(st->stage);
    if (st->job == JOB_FINISH) {
        wp_finish_all(e->pool);
        e->open = 0;
        e->buffered = 0;
        return;
    }
    const uint8_t *fate = st->job_fate;
    uint32_t n = st->job_n;
    if (st->n_enc > 1) {
        uint32_t lo = (uint32_t)((uint64_t)n * e->index / st->n_enc);
        uint32_t hi = (uint32_t)((uint64_t)n * (e->index + 1) / st->n_enc);
        if (n > e->cap_fates) {
            e->cap_fates = n;
            e->fates = g_renew(uint8_t, e->fates, n);
        }
        memset(e->fates, NOT_MINE, n);
        memcpy(e->fates + lo, fate + lo, hi - lo);
        fate = e->fates;
    }
    wp_write(e->pool, st->job_rec, n, fate, POS_WRITE, cfg->target_file_size);
    wp_enforce_bounds(e->pool, MAX(1, cfg->max_open_partitions / st->n_enc),
                      MAX(65536, cfg->max_buffered_bytes / st->n_enc), &e->open, &e->buffered);
}

static gpointer encoder_main(gpointer data)
{
    encoder *e = data;
    ice_state *st = e->st;
    pthread_mutex_lock(&st->job_lock);
    for (;;) {
        while (st->job_seq == e->seen)
            pthread_cond_wait(&st->job_cond, &st->job_lock);
        e->seen = st->job_seq;
        if (st->job == JOB_QUIT)
            break;
        pthread_mutex_unlock(&st->job_lock);
        run_job(e);
        pthread_mutex_lock(&st->job_lock);
        if (--st->job_left == 0)
            pthread_cond_signal(&st->done_cond);
    }
    pthread_mutex_unlock(&st->job_lock);
    return NULL;
}

/* Every encoder does `job`; encoder 0 on this thread. Returns when all are done. */
static void run_encoders(ice_state *st, job_kind job)
{
    unsigned helpers = 0;
    for (unsigned i = 1; i < st->n_enc; i++)
        helpers += st->enc[i].thread != NULL;
    if (helpers) {
        pthread_mutex_lock(&st->job_lock);
        st->job = job;
        st->job_left = helpers;
        st->job_seq++;
        pthread_cond_broadcast(&st->job_cond);
        pthread_mutex_unlock(&st->job_lock);
    }
    if (job == JOB_QUIT)
        return;
    if (!helpers)
        st->job = job;
    run_job(&st->enc[0]);
    if (!helpers)
        return;
    pthread_mutex_lock(&st->job_lock);
    while (st->job_left)
        pthread_cond_wait(&st->done_cond, &st->job_lock);
    pthread_mutex_unlock(&st->job_lock);
}

static unsigned open_files(const ice_state *st)
{
    unsigned n = 0;
    for (unsigned i = 0; i < st->n_enc; i++)
        n += wp_open_count(st->enc[i].pool);
    return n;
}

/* ------------------------------------------------------------ positions */

/* Commit hook, per attempt (positions.h, table_commit.h): the positions the
 * new snapshot stores are the newest ones of this writer in the table as it
 * stands now, raised by what this process committed and by the rows of this
 * commit. Raising (never lowering) lets the processes of one pipeline share
 * the writer id (scale-out: each partition is read by one of them at a time)
 * without erasing each other's positions.
 *
 * Unless another process committed past the first record this commit holds
 * of a partition: it read that partition after this one (a rebalance whose
 * revoke gave up waiting for this commit), and the rows between would be in
 * the table twice. The commit is refused; its rows fail back to their
 * sources, which read them again from where the table says. */
typedef struct {
    ice_state *st;
    char *why;
} clash_ctx;

static void clash_cb(void *ctx, const char *topic, int32_t partition, int64_t lo)
{
    clash_ctx *c = ctx;
    int64_t theirs;
    if (c->why || !pos_get(c->st->merged, topic, partition, &theirs) || theirs <= lo)
        return;
    c->why = g_strdup_printf("%s[%" PRId32 "] was committed up to offset %" PRId64 " by another process under "
                             "writer id '%s' while this one holds its records from offset %" PRId64 " (a rebalance "
                             "that did not wait for this commit: make commit_interval shorter than source-kafka's "
                             "rebalance_timeout); refused, so that nothing is written twice",
                             topic, partition, theirs, c->st->writer_id, lo);
}

static bool summary_positions(void *ctx, const ice_table *t, GPtrArray *kv, GPtrArray *keep, char **err)
{
    ice_state *st = ctx;
    pos_map_clear(st->merged);
    int64_t snap;
    const char *stored = table_lineage_summary(t, "ecflow.writer-id", st->writer_id, "ecflow.kafka-offsets", &snap);
    if (stored && pos_from_json(st->merged, stored)) {
        clash_ctx c = {.st = st};
        pos_foreach(st->pending_lo, clash_cb, &c);
        if (c.why) {
            *err = c.why;
            return false;
        }
    }
    pos_merge_max(st->merged, st->committed);
    pos_merge_max(st->merged, st->pending_hi);
    if (pos_map_count(st->merged) == 0)
        return true;
    char *json = pos_to_json(st->merged);
    g_ptr_array_add(keep, json);
    g_ptr_array_add(kv, "ecflow.kafka-offsets");
    g_ptr_array_add(kv, json);
    return true;
}

static catalog_ref table_ref(const ice_state *st)
{
    return (catalog_ref){.io = st->io, .location = st->location, .rest = st->rest, .ns = st->ns, .name = st->name};
}

/* This writer's positions as the table holds them now, into st->fresh (under
 * fresh_lock). Other processes of the same pipeline (scale-out: one group, one
 * table, one writer id) commit partitions this one gets in a rebalance; what
 * this process loaded at start, or committed itself, is behind their
 * commits. A separate catalog handle: the stage's thread may be committing
 * through its own meanwhile. Loads at most once per 100 ms, so a rebalance
 * that assigns many partitions loads the table once. */
static void refresh_positions(ice_state *st)
{
    int64_t now = g_get_monotonic_time();
    if (st->fresh_at && now - st->fresh_at < 100000)
        return;
    catalog_table probe;
    catalog_ref ref = table_ref(st);
    catalog_table_init(&probe, &ref);
    char *err = NULL;
    int64_t snap;
    pos_map *got = pos_map_new();
    bool ok = catalog_load(&probe, &err) >= 0;
    const char *stored = ok && probe.version > 0 ? tm_lineage_summary(&probe.meta, "ecflow.writer-id", st->writer_id,
                                                                      "ecflow.kafka-offsets", &snap)
                                                 : NULL;
    if (stored && !pos_from_json(got, stored))
        ok = false;
    /* a failed load counts too: a rebalance of many partitions tries once,
     * not once per partition with every retry */
    st->fresh_at = now;
    if (ok)
        pos_merge_max(st->fresh, got);
    else
        ecf_log(st->stage, ECF_LOG_WARN,
                "could not read this writer's positions from the table (%s); sources "
                "resume from what this process committed, and rows another process of this pipeline committed "
                "since may be read again",
                err ? err : "malformed ecflow.kafka-offsets");
    pos_map_free(got);
    g_free(err);
    catalog_table_clear(&probe);
}

/* Called from sources' threads (ecf_resume_position), after start: the
 * newest position of the partition this process or the table knows. */
static ecf_status ice_resume_position(ecf_stage *stage, const char *topic, int32_t partition, int64_t *next_offset)
{
    ice_state *st = ecf_state(stage);
    if (!st || !topic || partition < 0 || !next_offset)
        return ECF_ERR_UNAVAILABLE;
    int64_t mine = -1, table = -1;
    g_mutex_lock(&st->fresh_lock);
    refresh_positions(st);
    bool known = pos_get(st->fresh, topic, partition, &table);
    g_mutex_unlock(&st->fresh_lock);
    g_mutex_lock(&st->pos_lock);
    known |= pos_get(st->committed, topic, partition, &mine);
    g_mutex_unlock(&st->pos_lock);
    int64_t v = MAX(mine, table);
    if (!known || v < 0)
        return ECF_ERR_UNAVAILABLE;
    *next_offset = v;
    return ECF_OK;
}

static void log_skip_once(ice_state *st, const ecf_origin *o, pos_fate fate)
{
    g_autofree char *key = g_strdup_printf("%c%d:%s", fate == POS_DURABLE ? 'd' : 'p', o->partition, o->topic);
    if (g_hash_table_contains(st->skip_logged, key))
        return;
    g_hash_table_add(st->skip_logged, g_steal_pointer(&key));
    int64_t v = -1;
    if (fate == POS_DURABLE) {
        pos_get(st->committed, o->topic, o->partition, &v);
        ecf_log(st->stage, ECF_LOG_INFO,
                "%s[%d]: skipping redelivered records below offset %" PRId64 " (offset %" PRId64
                " and on): the table has them already; acked, not written again (logged once per partition)",
                o->topic, o->partition, v, o->offset);
    } else {
        pos_get(st->pending_hi, o->topic, o->partition, &v);
        ecf_log(st->stage, ECF_LOG_INFO,
                "%s[%d]: records from offset %" PRId64 " delivered again before the commit that holds them "
                "(it holds up to offset %" PRId64 "); settled with that commit, not written twice (logged once "
                "per partition)",
                o->topic, o->partition, o->offset, v - 1);
    }
}

/* ------------------------------------------------------------ commit */

static void settle_all(ice_state *st, ecf_status status, const char *reason)
{
    for (guint i = 0; i < st->held->len; i++)
        ecf_settle(st->stage, g_ptr_array_index(st->held, i), status, reason);
    g_ptr_array_set_size(st->held, 0);
    g_array_set_size(st->held_since, 0);
}

/* From when each held row entered the system to now, when it became
 * readable; and the two timestamps an alert subtracts from time(): a stuck
 * sink freezes them, where an age set at each commit would stop growing. */
static void observe_freshness(ice_state *st)
{
    int64_t now = ecf_now_us(st->stage), newest = 0;
    for (guint i = 0; i < st->held_since->len; i++) {
        int64_t since = g_array_index(st->held_since, int64_t, i);
        if (since > 0 && since <= now)
            ecf_metric_observe(st->stage, st->m_freshness, (double)(now - since) / 1e6);
        newest = MAX(newest, since);
    }
    ecf_metric_set(st->stage, st->m_last_commit_ts, (double)now / 1e6);
    if (newest > 0)
        ecf_metric_set(st->stage, st->m_newest_event_ts, (double)newest / 1e6);
}

/* Freshness lives between 0 and a little over commit_interval: buckets
 * that fine there (a p99 of 2.4 s read from 1/2.5 s bounds was 1.3 s). */
static void fit_freshness_buckets(ice_state *st, double interval_s)
{
    static const double shares[] = {0.05, 0.1, 0.2,  0.3, 0.4,  0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05,
                                    1.1,  1.2, 1.35, 1.5, 1.75, 2,   2.5, 3,   4,   6,   10,   20,  60};
    double bounds[G_N_ELEMENTS(shares)];
    for (guint i = 0; i < G_N_ELEMENTS(shares); i++)
        bounds[i] = shares[i] * interval_s;
    ecf_metric_buckets(st->stage, st->m_freshness, bounds, G_N_ELEMENTS(bounds));
}

/* The keys of rows that will not be in the table: they come again. */
static void forget_pending_keys(ice_state *st)
{
    if (st->dedupe)
        dedupe_rollback(st->dedupe);
}

static void discard_pending(ice_state *st)
{
    for (guint i = 0; i < st->pending->len; i++) {
        data_file *df = g_ptr_array_index(st->pending, i);
        st->io->remove(st->io, df->location);
    }
    g_ptr_array_set_size(st->pending, 0);
    st->pending_bytes = 0;
}

/* The line benchmarks and tests read ("committed snapshot N (why): F
 * files, R rows, X ms") with the same facts as fields. */
static void log_commit(ice_state *st, int64_t snapshot, const char *why, int64_t rows, double secs)
{
    const ice_config *cfg = ecf_config(st->stage);
    g_autofree char *msg = g_strdup_printf("committed snapshot %" PRId64 " (%s): %u files, %" PRId64 " rows, %.1f ms",
                                           snapshot, why, st->pending->len, rows, secs * 1000);
    char snap_s[24], files_s[16], rows_s[24], ms_s[24];
    g_snprintf(snap_s, sizeof snap_s, "%" PRId64, snapshot);
    g_snprintf(files_s, sizeof files_s, "%u", st->pending->len);
    g_snprintf(rows_s, sizeof rows_s, "%" PRId64, rows);
    g_snprintf(ms_s, sizeof ms_s, "%.1f", secs * 1000);
    ecf_log_event(st->stage, ECF_LOG_INFO, "commit",
                  (const char *const[]){"msg", msg, "table", cfg->table, "snapshot_id", snap_s, "files", files_s,
                                        "rows", rows_s, "duration_ms", ms_s, "reason", why, NULL});
}

/* Commits everything buffered; settles every held token. */
static ecf_status commit(ice_state *st, const char *why)
{
    if (st->held->len == 0 && open_files(st) == 0 && st->pending->len == 0)
        return ECF_OK;
    int64_t t0 = ecf_monotonic_us(st->stage);
    /* finish every open file, every encoder at once */
    run_encoders(st, JOB_FINISH);
    ecf_metric_set(st->stage, st->m_open, 0);
    ecf_metric_set(st->stage, st->m_buffered, 0);

    ecf_status result = ECF_OK;
    if (st->poisoned) {
        g_autofree char *reason = g_strdup_printf("sink-iceberg: %s", st->poisoned);
        if (st->poisoned_more)
            ecf_log(st->stage, ECF_LOG_WARN,
                    "commit skipped: %u more file write%s failed after the error above (debug log lists them)",
                    st->poisoned_more, st->poisoned_more == 1 ? "" : "s");
        st->poisoned_more = 0;
        discard_pending(st);
        forget_pending_keys(st);
        settle_all(st, ECF_ERR_IO, reason);
        g_clear_pointer(&st->poisoned, g_free);
        pos_map_clear(st->pending_lo);
        pos_map_clear(st->pending_hi);
        ecf_metric_add(st->stage, st->m_commit_fail, 1);
        st->first_row_us = 0;
        st->copies_held = 0;
        return ECF_ERR_IO;
    }
    /* Copies alone still make a snapshot: it moves the positions past them,
     * or a restart would read them again with no memory of their keys. */
    if (st->pending->len > 0 || st->copies_held > 0) {
        const char *pipeline = ecf_pipeline_setting(st->stage, "name");
        const char *extra[9] = {0};
        int k = 0;
        extra[k++] = "ecflow.writer-id";
        extra[k++] = st->writer_id;
        extra[k++] = "ecflow.stage";
        extra[k++] = ecf_name(st->stage);
        if (pipeline) {
            extra[k++] = "ecflow.pipeline";
            extra[k++] = pipeline;
        }
        /* before the snapshot: it names the file */
        const char *dedupe_files = st->dstore ? dedupe_store_prepare(st->dstore, st->dedupe) : NULL;
        if (dedupe_files) {
            extra[k++] = DEDUPE_SUMMARY_KEY;
            extra[k++] = dedupe_files;
        }
        char *err = NULL;
        int64_t snapshot = 0;
        int64_t rows = 0;
        for (guint i = 0; i < st->pending->len; i++)
            rows += ((data_file *)g_ptr_array_index(st->pending, i))->metrics.num_rows;
        bool ok = table_append(&st->table, (data_file *const *)st->pending->pdata, (int)st->pending->len, extra,
                               summary_positions, st, ecf_now_us(st->stage) / 1000, &snapshot, &err);
        double secs = (double)(ecf_monotonic_us(st->stage) - t0) / 1e6;
        if (ok) {
            ecf_metric_add(st->stage, st->m_commits, 1);
            ecf_metric_observe(st->stage, st->m_commit_latency, secs);
            log_commit(st, snapshot, why, rows, secs);
            /* what the snapshot now says: sources may resume there, and
             * redeliveries below it are skipped */
            g_mutex_lock(&st->pos_lock);
            pos_copy(st->committed, st->merged);
            g_mutex_unlock(&st->pos_lock);
            g_ptr_array_set_size(st->pending, 0);
            st->pending_bytes = 0;
            ecf_metric_add(st->stage, st->m_committed_rows, (double)rows);
            observe_freshness(st);
            if (st->dstore)
                dedupe_store_committed(st->dstore);
            if (st->dedupe)
                dedupe_commit(st->dedupe);
            settle_all(st, ECF_OK, NULL);
        } else {
            g_autofree char *reason =
                g_strdup_printf("sink-iceberg: commit to %s failed: %s", st->location, err ? err : "unknown error");
            ecf_log(st->stage, ECF_LOG_ERROR, "%s", reason);
            ecf_metric_add(st->stage, st->m_commit_fail, 1);
            if (st->dstore) /* unknown outcome: the table may name its file now */
                dedupe_store_failed(st->dstore, st->table.outcome_unknown);
            forget_pending_keys(st);
            settle_all(st, ECF_ERR_IO, reason);
            result = ECF_ERR_IO;
            if (st->table.outcome_unknown) {
                /* The table may hold these rows now: its files stay, and
                 * this process stops, because what it knows of the table
                 * (positions, keys) may be wrong; a restart reads the truth
                 * from the table and resumes from there. */
                ecf_log(st->stage, ECF_LOG_ERROR,
                        "the catalog could not say whether that commit was applied; stopping so that a restart "
                        "resumes from what the table holds (its data files were kept)");
                g_ptr_array_set_size(st->pending, 0);
                st->pending_bytes = 0;
                result = ECF_ERR_FATAL;
            } else {
                discard_pending(st);
            }
        }
        g_free(err);
    } else {
        /* tokens without rows (nothing to write): durable by definition */
        if (st->dedupe)
            dedupe_commit(st->dedupe);
        settle_all(st, ECF_OK, NULL);
    }
    pos_map_clear(st->pending_lo);
    pos_map_clear(st->pending_hi);
    st->first_row_us = 0;
    st->copies_held = 0;
    return result;
}

/* ------------------------------------------------------------ memory bounds */

static void enforce_bounds(ice_state *st)
{
    unsigned open = 0;
    int64_t buffered = 0;
    for (unsigned i = 0; i < st->n_enc; i++) { /* each bounded its own share in its job */
        open += st->enc[i].open;
        buffered += st->enc[i].buffered;
    }
    ecf_metric_set(st->stage, st->m_buffered, (double)buffered);
    ecf_metric_set(st->stage, st->m_open, open);
}

/* ------------------------------------------------------------ process */

/* Whether row i's dedupe key was taken lately (a null key never is). */
static bool is_duplicate(ice_state *st, const struct ArrowArray *rec, uint32_t i)
{
    if (!st->dedupe)
        return false;
    part_value v;
    arrow_cell(rec->children[st->dedupe_col], st->kinds[st->dedupe_col], rec->offset + i, &v);
    return !v.is_null && dedupe_seen(st->dedupe, v.p, v.n);
}

static ecf_status ice_process(ecf_stage *stage, ecf_batch *batch)
{
    ice_state *st = ecf_state(stage);
    const ice_config *cfg = ecf_config(stage);
    uint32_t n = ecf_batch_count(stage, batch);
    if (n == 0)
        return ECF_OK;
    const struct ArrowArray *rec = ecf_batch_records(stage, batch);
    if (!rec) {
        ecf_batch_nack_all(stage, batch, ECF_ERR_INVALID,
                           "sink-iceberg takes typed records; put a parsing transform before it");
        return ECF_OK;
    }
    if (rec->n_children < st->n_cols || rec->length != (int64_t)n) {
        ecf_batch_nack_all(stage, batch, ECF_ERR_INVALID, "records do not match the negotiated schema");
        return ECF_OK;
    }

    /* 0. what the table, or the commit being prepared, has already:
     * redeliveries are not written again (positions.h: pos_classify) */
    if (n > st->cap_fates) {
        st->cap_fates = n;
        st->fates = g_renew(uint8_t, st->fates, n);
    }
    uint8_t *fate = st->fates;
    /* rows the table cannot take go to 'rejected' (reject.h), before any
     * position is asked: a redelivered bad row is rejected again */
    if (rej_scan(st->reject, rec, n, fate))
        rej_route(st->reject, batch, rec, fate);
    uint32_t n_write = 0, n_dup = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (fate[i] == REJ_FATE)
            continue;
        const ecf_origin *o = &ecf_batch_message(stage, batch, i)->origin;
        pos_fate f = POS_WRITE;
        if (o->kind == ECF_ORIGIN_KAFKA && o->topic && o->partition >= 0 && o->offset >= 0) {
            f = pos_classify(st->committed, st->pending_lo, st->pending_hi, o->topic, o->partition, o->offset);
            if (f == POS_WRITE) {
                pos_lower(st->pending_lo, o->topic, o->partition, o->offset);
                pos_raise(st->pending_hi, o->topic, o->partition, o->offset + 1);
            } else {
                log_skip_once(st, o, f);
            }
        }
        /* Another record with a key the table has: taken (its position
         * counts) but not written, and settled with the next commit, which
         * makes that position durable. */
        if (f == POS_WRITE && is_duplicate(st, rec, i)) {
            f = POS_PENDING;
            n_dup++;
        }
        fate[i] = (uint8_t)f;
        n_write += f == POS_WRITE;
    }
    if (n_dup)
        ecf_metric_add(stage, st->m_duplicates, n_dup);
    st->copies_held += n_dup;

    /* 1. each row to its partition's file (writer_pool.h), the batch's
     * rows shared out among the encoders */
    st->job_rec = rec;
    st->job_n = n;
    st->job_fate = fate;
    run_encoders(st, JOB_WRITE);

    /* 2. hold every token until the commit (also those of records the
     * commit holds already); ack at once what the table has */
    uint32_t n_skipped = 0, n_held = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (fate[i] == REJ_FATE) /* rej_route took it */
            continue;
        ecf_message *m = ecf_batch_message(stage, batch, i);
        if (fate[i] != POS_WRITE)
            n_skipped++;
        if (!m->token)
            continue;
        if (fate[i] == POS_DURABLE) {
            ecf_ack(stage, m);
        } else {
            g_ptr_array_add(st->held, ecf_hold(stage, m));
            /* freshness counts rows made readable, not copies or redeliveries */
            int64_t since = fate[i] == POS_WRITE ? m->ingest_time_us : 0;
            g_array_append_val(st->held_since, since);
            n_held++;
        }
    }
    ecf_metric_add(stage, st->m_rows, n_write);
    if (n_skipped)
        ecf_metric_add(stage, st->m_skipped, n_skipped);
    if (!st->first_row_us && (n_write || n_held))
        st->first_row_us = ecf_monotonic_us(stage);

    enforce_bounds(st);
    if (st->pending_bytes >= cfg->target_file_size && commit(st, "size") == ECF_ERR_FATAL)
        return ECF_ERR_FATAL;
    if ((int64_t)st->held->len >= cfg->max_uncommitted_rows && commit(st, "rows") == ECF_ERR_FATAL)
        return ECF_ERR_FATAL;
    return ECF_OK;
}

static ecf_status ice_tick(ecf_stage *stage, int64_t now_us)
{
    ice_state *st = ecf_state(stage);
    const ice_config *cfg = ecf_config(stage);
    /* a failed commit fails its rows, not the stage; one of unknown outcome stops it */
    if (st->first_row_us && ecf_monotonic_us(stage) - st->first_row_us >= cfg->commit_interval &&
        commit(st, "interval") == ECF_ERR_FATAL)
        return ECF_ERR_FATAL;
    return ECF_OK;
}

static ecf_status ice_flush(ecf_stage *stage)
{
    ice_state *st = ecf_state(stage);
    ecf_status s = commit(st, "flush");
    if (s != ECF_OK)
        return ecf_fail(stage, s, "the final commit failed; its rows were failed back to their sources");
    return ECF_OK;
}

/* ------------------------------------------------------------ lifecycle */

/* "a.b.name" -> namespace "a.b", name "name" */
static bool split_table(const char *t, char **ns, char **name, char *err, size_t errcap)
{
    const char *dot = strrchr(t, '.');
    if (!dot || t[0] == '.' || !dot[1] || strstr(t, "..") || strchr(t, '/')) {
        snprintf(err, errcap, "option 'table': expected \"namespace.name\", got \"%s\"", t);
        return false;
    }
    *ns = g_strndup(t, (gsize)(dot - t));
    *name = g_strdup(dot + 1);
    return true;
}

/* The file catalog's table location: <warehouse>/<namespace levels>/<name>. */
static char *file_table_location(const ice_config *cfg)
{
    g_autofree char *rel = g_strdelimit(g_strdup(cfg->table), ".", '/');
    if (fio_is_s3(cfg->warehouse))
        return fio_join(cfg->warehouse, rel);
    if (!g_path_is_absolute(cfg->warehouse)) {
        g_autofree char *cwd = g_get_current_dir();
        return g_build_filename(cwd, cfg->warehouse, rel, NULL);
    }
    return g_build_filename(cfg->warehouse, rel, NULL);
}

/* An option, else the first of the environment variables that is set. */
static const char *option_or_env(const char *opt, const char *env1, const char *env2)
{
    if (opt && *opt)
        return opt;
    const char *v = env1 ? g_getenv(env1) : NULL;
    if ((!v || !*v) && env2)
        v = g_getenv(env2);
    return v && *v ? v : NULL;
}

/* Retries and timeouts of every HTTP request the sink makes, to S3 and to
 * the REST catalog alike. */
static http_client_options http_options(const ice_config *cfg)
{
    return (http_client_options){.max_attempts = (int)cfg->s3_max_attempts,
                                 .backoff_us = 100000,
                                 .backoff_max_us = 5000000,
                                 .timeout_us = cfg->s3_timeout,
                                 .connect_timeout_us = 5000000};
}

/* The IO for a table location: local disk, or S3 configured from the
 * options and the standard AWS environment. */
static file_io *open_io(const ice_config *cfg, const char *location, char **err)
{
    if (!fio_is_s3(location))
        return file_io_local_new(cfg->fsync);
    const char *endpoint = option_or_env(cfg->s3_endpoint, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL");
    const char *region = option_or_env(cfg->s3_region, "AWS_REGION", "AWS_DEFAULT_REGION");
    s3_options o = {
        .endpoint = endpoint,
        .region = region ? region : "us-east-1",
        .access_key_id = option_or_env(cfg->s3_access_key_id, "AWS_ACCESS_KEY_ID", NULL),
        .secret_access_key = option_or_env(cfg->s3_secret_access_key, "AWS_SECRET_ACCESS_KEY", NULL),
        .session_token = option_or_env(cfg->s3_session_token, "AWS_SESSION_TOKEN", NULL),
        .path_style =
            strcmp(cfg->s3_path_style, "auto") == 0 ? endpoint != NULL : strcmp(cfg->s3_path_style, "true") == 0,
        .part_size = (size_t)cfg->s3_part_size,
        .http = http_options(cfg),
    };
    return file_io_s3_new(&o, err);
}

static void state_free(ice_state *st)
{
    if (!st)
        return;
    upkeep_stop(g_steal_pointer(&st->upkeep));
    run_encoders(st, JOB_QUIT);
    for (unsigned i = 0; i < st->n_enc; i++) {
        encoder *e = &st->enc[i];
        if (e->thread)
            g_thread_join(e->thread);
        wp_free(e->pool);
        g_free(e->fates);
        g_free(e->run_id);
    }
    g_free(st->enc);
    pthread_mutex_destroy(&st->job_lock);
    pthread_cond_destroy(&st->job_cond);
    pthread_cond_destroy(&st->done_cond);
    pthread_mutex_destroy(&st->pool_lock);
    if (st->held) {
        settle_all(st, ECF_ERR_STOPPED, "sink-iceberg stopped before the commit");
        g_ptr_array_free(st->held, TRUE);
    }
    if (st->held_since)
        g_array_free(st->held_since, TRUE);
    if (st->pending) {
        discard_pending(st);
        g_ptr_array_free(st->pending, TRUE);
    }
    if (st->table_open)
        table_close(&st->table);
    rest_catalog_free(st->rest);
    g_free(st->ns);
    g_free(st->name);
    ice_schema_clear(&st->input);
    for (int c = 0; st->cols && c < st->n_cols; c++)
        g_free((char *)st->cols[c].name);
    rej_free(st->reject);
    g_free(st->cols);
    g_free(st->kinds);
    g_free(st->psrc);
    g_free(st->location);
    g_free(st->poisoned);
    g_free(st->run_id);
    g_free(st->writer_id);
    dedupe_free(st->dedupe);
    dedupe_store_free(st->dstore);
    g_free(st->fates);
    pos_map_free(st->committed);
    pos_map_free(st->pending_lo);
    pos_map_free(st->pending_hi);
    pos_map_free(st->merged);
    pos_map_free(st->fresh);
    if (st->skip_logged)
        g_hash_table_destroy(st->skip_logged);
    g_mutex_clear(&st->pos_lock);
    g_mutex_clear(&st->fresh_lock);
    if (st->io)
        st->io->destroy(st->io);
    g_free(st);
}

/* The IO follows the table's location (REST: the catalog's choice). */
static ecf_status open_table_io(ecf_stage *stage, ice_state *st, const char *location)
{
    if (st->io)
        return ECF_OK;
    char *e = NULL;
    st->io = open_io(ecf_config(stage), location, &e);
    if (st->io)
        return ECF_OK;
    ecf_status s = ecf_error(stage, "table location %s: %s", location, e);
    g_free(e);
    return s;
}

static rest_catalog *connect_rest(ecf_stage *stage, const ice_config *cfg, char **err)
{
    GPtrArray *headers = g_ptr_array_new_with_free_func(g_free);
    for (const ecf_kv *kv = cfg->catalog_headers; kv && kv->key; kv++)
        g_ptr_array_add(headers, g_strdup_printf("%s: %s", kv->key, kv->value));
    g_ptr_array_add(headers, NULL);
    rest_options o = {
        .uri = cfg->catalog_uri,
        .warehouse = cfg->warehouse,
        .credential = cfg->catalog_credential,
        .token = cfg->catalog_token,
        .oauth2_uri = cfg->catalog_oauth2_uri,
        .scope = cfg->catalog_scope,
        .headers = (const char *const *)headers->pdata,
        .http = http_options(cfg),
    };
    rest_catalog *c = rest_catalog_new(&o, err);
    g_ptr_array_free(headers, TRUE);
    return c;
}

/* The table's catalog, and (file catalog, or a REST table that exists) its
 * IO; then a dry-run open, so `ecflow validate` reports an unreachable or
 * refusing catalog or store, a missing namespace and an incompatible table
 * before anything runs. */
static ecf_status open_catalog(ecf_stage *stage, ice_state *st, const ice_config *cfg)
{
    char *e = NULL;
    if (strcmp(cfg->catalog, "rest") == 0) {
        if (!cfg->catalog_uri || !*cfg->catalog_uri)
            return ecf_error(stage, "catalog rest needs option 'catalog_uri'");
        st->rest = connect_rest(stage, cfg, &e);
        if (!st->rest) {
            /* down, or refusing us: exit 1, not a configuration error */
            ecf_status s = ecf_fail(stage, ECF_ERR_IO, "%s", e);
            g_free(e);
            return s;
        }
        int ns = rest_catalog_namespace_exists(st->rest, st->ns, &e);
        if (ns < 0 || (ns == 0 && !cfg->create_namespace)) {
            ecf_status s = ns < 0 ? ecf_fail(stage, ECF_ERR_IO, "%s", e)
                                  : ecf_fail(stage, ECF_ERR_IO,
                                             "option 'table': the REST catalog at %s has no "
                                             "namespace '%s' (create it, or set create_namespace: true)",
                                             cfg->catalog_uri, st->ns);
            g_free(e);
            return s;
        }
    } else {
        if (!cfg->warehouse || !*cfg->warehouse)
            return ecf_error(stage, "catalog file needs option 'warehouse' (a directory or s3://bucket/prefix)");
        st->location = file_table_location(cfg);
        ecf_status s = open_table_io(stage, st, st->location);
        if (s != ECF_OK)
            return s;
    }
    ice_table t;
    table_open_args a = {
        .input = &st->input, .partition_by = st->partition_by, .now_ms = ecf_now_us(stage) / 1000, .dry_run = true};
    char *note = NULL;
    catalog_ref ref = table_ref(st);
    bool ok = table_open(&t, &ref, &a, &note, &e);
    ecf_status s = ok ? ECF_OK : ecf_fail(stage, t.unreachable ? ECF_ERR_IO : ECF_ERR_CONFIG, "%s", e);
    if (ok && t.exists && st->rest)
        s = open_table_io(stage, st, t.cat.location);
    table_close(&t);
    g_free(note);
    g_free(e);
    return s;
}

static ecf_status ice_create(ecf_stage *stage)
{
    ice_config *cfg = ecf_config(stage);
    char err[512];
    if (ecf_input_count(stage) != 1)
        return ecf_error(stage, "sink-iceberg takes exactly one input (got %u)", ecf_input_count(stage));
    const struct ArrowSchema *in = ecf_input_schema(stage, 0);
    if (!in)
        return ecf_error(stage, "the input carries raw messages; sink-iceberg needs typed records "
                                "(a transform that declares a record schema)");
    ice_state *st = g_new0(ice_state, 1);
    st->stage = stage;
    g_mutex_init(&st->pos_lock);
    pthread_mutex_init(&st->job_lock, NULL);
    pthread_cond_init(&st->job_cond, NULL);
    pthread_cond_init(&st->done_cond, NULL);
    pthread_mutex_init(&st->pool_lock, NULL);
    g_mutex_init(&st->fresh_lock);
    if (cfg->writer_id) {
        st->writer_id = g_strstrip(g_strdup(cfg->writer_id));
    } else {
        const char *pipeline = ecf_pipeline_setting(stage, "name");
        st->writer_id = g_strdup_printf("%s/%s", pipeline ? pipeline : "ecflow", ecf_name(stage));
    }
    if (!*st->writer_id || !g_utf8_validate(st->writer_id, -1, NULL)) {
        state_free(st);
        return ecf_error(stage, "option 'writer_id': give a non-empty UTF-8 name");
    }
    if (!ice_schema_from_arrow(in, &st->input, err, sizeof err)) {
        state_free(st);
        return ecf_error(stage, "%s", err);
    }
    if (!split_table(cfg->table, &st->ns, &st->name, err, sizeof err)) {
        state_free(st);
        return ecf_error(stage, "%s", err);
    }
    if (cfg->dedupe_key) { /* checked here too, so `ecflow validate` says it */
        const ice_field *k = ice_schema_find(&st->input, cfg->dedupe_key);
        if (!k || (k->type.id != ICE_STRING && k->type.id != ICE_BINARY)) {
            state_free(st);
            return ecf_error(stage, "option 'dedupe_key': the records have no string column '%s'", cfg->dedupe_key);
        }
    }
    st->partition_by = cfg->partition_by ? cfg->partition_by : default_partition_by;
    part_spec probe;
    if (!part_spec_parse(st->partition_by, &st->input, &probe, err, sizeof err)) {
        state_free(st);
        return ecf_error(stage, "%s", err);
    }
    part_spec_clear(&probe);
    if (cfg->orphan_age < 2 * cfg->commit_interval) {
        state_free(st);
        return ecf_error(stage, "option 'orphan_age' must be at least twice commit_interval: files waiting for their "
                                "commit would be taken for orphans");
    }
    ecf_status cs = open_catalog(stage, st, cfg);
    if (cs != ECF_OK) {
        state_free(st);
        return cs;
    }
    st->pq.codec = strcmp(cfg->codec, "zstd") == 0     ? PQ_CODEC_ZSTD
                   : strcmp(cfg->codec, "snappy") == 0 ? PQ_CODEC_SNAPPY
                                                       : PQ_CODEC_NONE;
    st->pq.zstd_level = (int)cfg->compression_level;
    st->pq.page_size = cfg->page_size;
    st->pq.row_group_size = cfg->row_group_size;
    st->pq.dict_size_limit = 1 << 20;
    st->pq.dictionary = true;
    st->pq.created_by = "ecflow version 0.1.0 (build sink-iceberg)";
    st->n_enc = cfg->writer_threads ? (unsigned)cfg->writer_threads : MIN(g_get_num_processors(), 64u);
    st->enc = g_new0(encoder, st->n_enc);
    for (unsigned i = 0; i < st->n_enc; i++) {
        st->enc[i].st = st;
        st->enc[i].index = i;
        st->enc[i].pool = wp_new((wp_events){.file_done = pool_file_done, .failed = pool_failed, .ctx = st});
    }
    st->pending = g_ptr_array_new_with_free_func((GDestroyNotify)data_file_free);
    st->held = g_ptr_array_new();
    st->held_since = g_array_new(FALSE, FALSE, sizeof(int64_t));
    st->committed = pos_map_new();
    st->pending_lo = pos_map_new();
    st->pending_hi = pos_map_new();
    st->merged = pos_map_new();
    st->fresh = pos_map_new();
    st->skip_logged = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    st->m_rows = ecf_metric_new(stage, ECF_METRIC_COUNTER, "iceberg_rows_total", "Rows taken into data files");
    st->m_committed_rows = ecf_metric_new(stage, ECF_METRIC_COUNTER, "iceberg_committed_rows_total",
                                          "Rows in committed snapshots (readable)");
    st->m_freshness = ecf_metric_new(stage, ECF_METRIC_HISTOGRAM, "iceberg_freshness_seconds",
                                     "From when a row entered the system (its Kafka record's timestamp, "
                                     "else when the pipeline took it) to the commit that made it readable");
    fit_freshness_buckets(st, (double)cfg->commit_interval / 1e6);
    st->m_last_commit_ts = ecf_metric_new(stage, ECF_METRIC_GAUGE, "iceberg_last_commit_timestamp_seconds",
                                          "When the last snapshot was committed (UNIX seconds)");
    st->m_newest_event_ts =
        ecf_metric_new(stage, ECF_METRIC_GAUGE, "iceberg_newest_event_timestamp_seconds",
                       "When the newest row made readable entered the system (UNIX seconds; same time as freshness)");
    ecf_metric_status(stage, st->m_committed_rows, "committed");
    st->m_duplicates = ecf_metric_new(stage, ECF_METRIC_COUNTER, "iceberg_skipped_duplicates_total",
                                      "Rows not written because the table got their dedupe_key lately");
    st->m_files = ecf_metric_new(stage, ECF_METRIC_COUNTER, "iceberg_data_files_total", "Parquet data files finished");
    st->m_bytes = ecf_metric_new(stage, ECF_METRIC_COUNTER, "iceberg_data_bytes_total", "Bytes of finished data files");
    st->m_commits = ecf_metric_new(stage, ECF_METRIC_COUNTER, "iceberg_commits_total", "Snapshots committed");
    st->m_commit_fail =
        ecf_metric_new(stage, ECF_METRIC_COUNTER, "iceberg_commit_failures_total", "Commits that failed");
    st->m_commit_latency = ecf_metric_new(stage, ECF_METRIC_HISTOGRAM, "iceberg_commit_seconds",
                                          "Time to finish files and commit a snapshot");
    st->m_open = ecf_metric_new(stage, ECF_METRIC_GAUGE, "iceberg_open_partitions", "Open data files");
    st->m_buffered = ecf_metric_new(stage, ECF_METRIC_GAUGE, "iceberg_buffered_bytes", "Bytes of unwritten row groups");
    st->m_skipped = ecf_metric_new(stage, ECF_METRIC_COUNTER, "iceberg_skipped_redelivered_total",
                                   "Kafka records delivered again and not written twice: below the table's "
                                   "positions (acked at once) or already in the commit being prepared");
    ecf_set_state(stage, st);
    return ECF_OK;
}

/* ------------------------------------------------------------ maintenance */

static upkeep_config upkeep_settings(ecf_stage *stage, ice_state *st)
{
    const ice_config *cfg = ecf_config(stage);
    pq_options pq = st->pq;
    /* a rewrite holds its inputs and one output row group: compact_memory in all */
    if (pq.row_group_size > cfg->compact_memory / 2)
        pq.row_group_size = MAX(cfg->compact_memory / 2, 1 << 20);
    pq.max_buffered = MAX(cfg->compact_memory / 2, 1 << 20);
    return (upkeep_config){
        .stage = stage,
        .ref = table_ref(st),
        .opt = {.target_file_size = cfg->target_file_size,
                .small_file_size = cfg->compact_small_file_size,
                .min_input_files = (int)cfg->compact_min_files,
                .max_rewrite_bytes = cfg->compact_max_bytes,
                .max_input_bytes = MAX(cfg->compact_memory / 2, 1 << 20),
                .max_manifests = (int)cfg->max_manifests,
                .keep_last = (int)cfg->snapshot_keep_last,
                .max_snapshot_age_ms = cfg->snapshot_max_age / 1000,
                .orphan_age_ms = cfg->orphan_age / 1000,
                .pq = pq},
        .interval_us = cfg->maintenance_interval,
        /* the orphan walk lists the whole table: at most twice per orphan age */
        .clean_every_us = MAX(cfg->maintenance_interval, cfg->orphan_age / 2),
    };
}

static void ice_stop(ecf_stage *stage)
{
    ice_state *st = ecf_state(stage);
    if (st)
        upkeep_stop(g_steal_pointer(&st->upkeep));
}

/* `ecflow table VERB PIPELINE.yaml`: after create, instead of start. */
static ecf_status ice_command(ecf_stage *stage, int argc, const char *const *argv)
{
    ice_state *st = ecf_state(stage);
    if (st->rest && !st->io) { /* the IO follows the location the catalog gives */
        ice_table probe = {0};
        catalog_ref ref = table_ref(st);
        catalog_table_init(&probe.cat, &ref);
        char *err = NULL;
        bool ok = table_reload(&probe, &err);
        if (ok) {
            st->location = g_strdup(probe.cat.location);
            ecf_status s = open_table_io(stage, st, st->location);
            ok = s == ECF_OK;
        }
        table_close(&probe);
        if (!ok) {
            ecf_status s = err ? ecf_fail(stage, ECF_ERR_IO, "%s", err) : ECF_ERR_IO;
            g_free(err);
            return s;
        }
    }
    upkeep_config c = upkeep_settings(stage, st);
    return upkeep_command(&c, argc, argv);
}

static void dedupe_warn(void *ctx, const char *msg) { ecf_log(ctx, ECF_LOG_WARN, "%s", msg); }

/* The window, hashed under the table's key, as the writer's newest snapshot
 * left it (dedupe_store.h). */
static void dedupe_open(ecf_stage *stage, ice_state *st, uint32_t window)
{
    uint8_t key[DEDUPE_KEY_BYTES];
    bool created = false;
    char *err = NULL;
    catalog_ref ref = table_ref(st);
    dedupe_free(st->dedupe);
    dedupe_store_free(st->dstore);
    st->dstore = NULL;
    if (!dedupe_table_key(&ref, &st->table, key, &created, &err)) {
        /* best-effort on top of the positions: never a reason not to run */
        ecf_log(stage, ECF_LOG_WARN,
                "dedupe: no hash key kept with the table (%s); this run remembers keys under a key of its own, "
                "in memory only: copies of events committed before a restart are not recognised",
                err ? err : "unknown error");
        g_free(err);
        if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key)
            for (size_t i = 0; i < sizeof key; i++)
                key[i] = (uint8_t)g_random_int();
        st->dedupe = dedupe_new(window, key);
        return;
    }
    if (created)
        ecf_log(stage, ECF_LOG_INFO, "dedupe: made the table's hash key (table property %s)", DEDUPE_KEY_PROPERTY);
    st->dedupe = dedupe_new(window, key);
    st->dstore = dedupe_store_new(st->io, st->location, st->writer_id, dedupe_warn, stage);
    int64_t snap = -1;
    const char *files = table_lineage_summary(&st->table, "ecflow.writer-id", st->writer_id, DEDUPE_SUMMARY_KEY, &snap);
    unsigned n_files = 0;
    size_t n_keys = dedupe_store_load(st->dstore, st->dedupe, files, &n_files);
    if (files)
        ecf_log(stage, ECF_LOG_INFO, "dedupe: %zu keys from %u file%s listed by snapshot %" PRId64, n_keys, n_files,
                n_files == 1 ? "" : "s", snap);
}

/* dedupe_key names a string column of the input. */
static ecf_status dedupe_start(ecf_stage *stage, ice_state *st)
{
    const ice_config *cfg = ecf_config(stage);
    if (!cfg->dedupe_key)
        return ECF_OK;
    for (int c = 0; c < st->n_cols; c++) {
        if (strcmp(st->input.fields[c].name, cfg->dedupe_key) != 0)
            continue;
        if (st->kinds[c] != AC_UTF8 && st->kinds[c] != AC_LARGE_UTF8 && st->kinds[c] != AC_BINARY)
            return ecf_error(stage, "option 'dedupe_key': column '%s' is not a string", cfg->dedupe_key);
        st->dedupe_col = c;
        dedupe_open(stage, st, (uint32_t)cfg->dedupe_window);
        return ECF_OK;
    }
    return ecf_error(stage, "option 'dedupe_key': the records have no column '%s'", cfg->dedupe_key);
}

static ecf_status ice_start(ecf_stage *stage)
{
    ice_state *st = ecf_state(stage);
    table_open_args a = {
        .input = &st->input, .partition_by = st->partition_by, .now_ms = ecf_now_us(stage) / 1000, .dry_run = false};
    char *note = NULL, *err = NULL;
    const ice_config *cfg = ecf_config(stage);
    if (st->rest && cfg->create_namespace && rest_catalog_namespace_exists(st->rest, st->ns, &err) == 0 &&
        rest_catalog_create_namespace(st->rest, st->ns, &err))
        ecf_log(stage, ECF_LOG_INFO, "created namespace '%s' in the REST catalog at %s", st->ns, cfg->catalog_uri);
    if (err) {
        ecf_status s = ecf_fail(stage, ECF_ERR_IO, "%s", err);
        g_free(err);
        return s;
    }
    catalog_ref ref = table_ref(st);
    if (!table_open(&st->table, &ref, &a, &note, &err)) {
        ecf_status s = ecf_fail(stage, ECF_ERR_IO, "%s", err);
        g_free(err);
        table_close(&st->table);
        return s;
    }
    st->table_open = true;
    if (!st->location) { /* REST: where the catalog put the table */
        st->location = g_strdup(st->table.cat.location);
        ecf_status s = open_table_io(stage, st, st->location);
        if (s != ECF_OK) {
            g_free(note);
            return s == ECF_ERR_CONFIG ? ECF_ERR_IO : s;
        }
        st->table.cat.io = st->io;
    }
    if (note) {
        ecf_log(stage, ECF_LOG_INFO, "%s", note);
        g_free(note);
    }
    /* file columns: the input's, typed and numbered as the table has them */
    st->n_cols = st->input.n_fields;
    st->cols = g_new0(pq_column_spec, (gsize)st->n_cols + 1);
    st->kinds = g_new0(arrow_kind, (gsize)st->n_cols + 1);
    const struct ArrowSchema *in = ecf_input_schema(stage, 0);
    for (int c = 0; c < st->n_cols; c++) {
        const ice_field *col = ice_schema_find(&st->table.schema, st->input.fields[c].name);
        st->cols[c].name = g_strdup(col->name); /* the table's schema may be reloaded */
        st->cols[c].field_id = col->id;
        st->cols[c].type = col->type;
        st->cols[c].required = col->required;
        arrow_kind_of(in->children[c]->format, &st->kinds[c]);
    }
    st->reject = rej_new(stage, st->cols, st->kinds, st->n_cols);
    st->psrc = g_new0(part_source, (gsize)st->table.spec.n_fields + 1);
    for (int f = 0; f < st->table.spec.n_fields; f++) {
        st->psrc[f].input_col = -1;
        const ice_field *src = ice_schema_find_id(&st->table.schema, st->table.spec.fields[f].source_id);
        for (int c = 0; src && c < st->n_cols; c++)
            if (strcmp(st->input.fields[c].name, src->name) == 0) {
                st->psrc[f].input_col = c;
                st->psrc[f].kind = st->kinds[c];
            }
    }
    /* this writer's positions, from its newest snapshot in the lineage */
    int64_t snap = -1;
    const char *stored =
        table_lineage_summary(&st->table, "ecflow.writer-id", st->writer_id, "ecflow.kafka-offsets", &snap);
    g_mutex_lock(&st->pos_lock);
    pos_map_clear(st->committed);
    bool parsed = !stored || pos_from_json(st->committed, stored);
    g_mutex_unlock(&st->pos_lock);
    if (!parsed)
        return ecf_fail(stage, ECF_ERR_IO,
                        "snapshot %" PRId64 " of %s has a malformed ecflow.kafka-offsets for "
                        "writer '%s'; refusing to guess where Kafka sources resume",
                        snap, st->location, st->writer_id);
    if (snap < 0) {
        ecf_log(stage, ECF_LOG_INFO,
                "writer '%s': no snapshot of this writer in the table yet; Kafka sources "
                "start from their own committed offsets",
                st->writer_id);
    } else {
        g_autofree char *desc = pos_describe(st->committed, 800);
        ecf_log(stage, ECF_LOG_INFO, "writer '%s': Kafka positions from snapshot %" PRId64 ": %s", st->writer_id, snap,
                *desc ? desc : "none (no Kafka records yet)");
    }
    ecf_status dst = dedupe_start(stage, st); /* after the positions: the same snapshot's keys */
    if (dst != ECF_OK)
        return dst;
    g_autofree char *uuid = g_uuid_string_random();
    st->run_id = g_strdup(uuid);
    if (cfg->maintenance) {
        upkeep_config uc = upkeep_settings(stage, st);
        st->upkeep = upkeep_start(&uc);
    }
    for (unsigned i = 0; i < st->n_enc; i++) {
        encoder *e = &st->enc[i];
        e->run_id = st->n_enc == 1 ? g_strdup(uuid) : g_strdup_printf("%s-w%u", uuid, i);
        wp_set_layout(e->pool, &(wp_layout){.io = st->io,
                                            .location = st->location,
                                            .spec = &st->table.spec,
                                            .psrc = st->psrc,
                                            .cols = st->cols,
                                            .kinds = st->kinds,
                                            .n_cols = st->n_cols,
                                            .pq = &st->pq,
                                            .run_id = e->run_id});
        if (i > 0 && !e->thread) {
            e->seen = st->job_seq; /* a job given before the thread runs is still its to do */
            e->thread = g_thread_new("ecf:encode", encoder_main, e);
        }
    }
    return ECF_OK;
}

static void ice_destroy(ecf_stage *stage) { state_free(ecf_state(stage)); }

static const char *const ice_ports[] = {REJECTED_PORT, NULL};

ECF_PLUGIN_DEFINE(
        .name = "sink-iceberg", .kind = ECF_SINK, .version = "0.1.0",
        .summary = "Writes typed records to an Apache Iceberg v2 table (Parquet; file or REST catalog; local disk or "
                   "S3); acks after the commit",
        .config_size = sizeof(ice_config), .ports = ice_ports, .options = ice_options, .tick_interval_us = TICK_US,
        .create = ice_create, .start = ice_start, .process = ice_process, .tick = ice_tick, .flush = ice_flush,
        .stop = ice_stop, .destroy = ice_destroy, .resume_position = ice_resume_position, .command_group = "table",
        .command_help = upkeep_command_help, .command = ice_command, )
