/*
 * source-http: events in over HTTP, answered only once they are durable.
 *
 * The plugin and its lifecycle; request handling lives in request.c.
 * libmicrohttpd runs its own worker threads (epoll, one event loop per
 * thread) and emit what they take; run() on the stage thread emits the
 * batches downstream had no room for (outbox.c), watches for shutdown and
 * answers requests whose acknowledgements are overdue.
 */
#define _GNU_SOURCE
#include "source_http.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define POOL_MAX_PARSERS 64
/* A parser keeps ~6x the largest document it saw; past this, don't pool it. */
#define POOL_MAX_PARSER_CAPACITY (1u << 20)
#define DOOR_MAX_DEPTH 64

static const ecf_option http_options[] = {
    ECF_OPT_STRING("listen", http_config, listen, "127.0.0.1", ECF_OPTIONAL,
                   "address to listen on; 0.0.0.0 or :: opens it to the network"),
    ECF_OPT_INT("port", http_config, port, "8080", 0, 65535, "TCP port; 0 picks a free one and logs it"),
    ECF_OPT_STRING("path", http_config, path, "/events", ECF_OPTIONAL, "URL path that takes POSTed events"),
    ECF_OPT_STRING("key_field", http_config, key_field, "session_id", ECF_OPTIONAL,
                   "top-level string field every event must have; its value is the message key"),
    ECF_OPT_SIZE("max_body_bytes", http_config, max_body_bytes, "10MiB", 2, 1073741824,
                 "largest request body, counted after gzip decompression; larger gets 413"),
    ECF_OPT_INT("max_events", http_config, max_events, "100000", 1, 10000000,
                "most events in one request; more gets 413"),
    ECF_OPT_INT("max_connections", http_config, max_connections, "4096", 1, 1000000,
                "open connections at most; more wait in the kernel's accept queue"),
    ECF_OPT_DURATION("connection_timeout", http_config, connection_timeout_us, "30s", 1, 86400,
                     "idle time after which a connection is closed"),
    ECF_OPT_DURATION("request_timeout", http_config, request_timeout_us, "60s", 1, 86400,
                     "longest time to receive one request body; slower clients are cut off"),
    ECF_OPT_DURATION("ack_timeout", http_config, ack_timeout_us, "30s", 0.001, 86400,
                     "how long a request waits for its events to be durable before 503"),
    ECF_OPT_SIZE("max_inflight_bytes", http_config, max_inflight_bytes, "256MiB", 1024, 1099511627776.0,
                 "request body bytes held in memory at once, all requests together; "
                 "beyond it requests get 503"),
    ECF_OPT_INT("batch_max_events", http_config, batch_max_events, "1000", 1, 1000000,
                "events per emitted batch; a request is split into batches of this size"),
    ECF_OPT_DURATION("retry_after", http_config, retry_after_us, "1s", 1, 3600,
                     "Retry-After sent with 503 answers (whole seconds)"),
    ECF_OPT_STRING("api_keys_file", http_config, api_keys_file, NULL, ECF_OPTIONAL,
                   "file of API keys, one per line ('#' comments); enables authentication"),
    ECF_OPT_STRING("api_keys_env", http_config, api_keys_env, NULL, ECF_OPTIONAL,
                   "name of an environment variable holding comma-separated API keys"),
    ECF_OPT_STRING("tls_cert", http_config, tls_cert, NULL, ECF_OPTIONAL,
                   "PEM certificate file; with tls_key, serve HTTPS"),
    ECF_OPT_STRING("tls_key", http_config, tls_key, NULL, ECF_OPTIONAL, "PEM private key file for tls_cert"),
    ECF_OPT_SIZE("connection_memory", http_config, connection_memory, "16KiB", 4096, 1048576,
                 "per-connection buffer for request headers and body chunks; larger headers "
                 "get 431. libmicrohttpd zeroes it for every request, so more costs CPU"),
    ECF_OPT_INT("threads", http_config, threads, "0", 0, 256, "HTTP worker threads; 0 = one per CPU core"),
    ECF_OPT_FILE("schema", http_config, schema, NULL, ECF_OPTIONAL,
                 "YAML schema file (transform-validate's format and rules) each event is checked against at "
                 "the door: an invalid event gets 422 (207 in a mixed request) naming field and rule, is not "
                 "emitted, and goes as a dead-letter envelope to the 'invalid' port when a stage reads it"),
    ECF_OPT_DURATION("max_future", http_config, max_future_us, "1h", 0, 3153600000.0,
                     "with schema: how far past the wall clock a timestamp may lie, for timestamp fields whose "
                     "schema sets no max_future of its own (as transform-validate's option)"),
    ECF_OPT_ENUM("on_invalid", http_config, on_invalid, "reject", "reject|pass|off",
                 "with schema: reject = an invalid event is answered 422 (207 in a mixed request) and not "
                 "emitted; pass = it is counted in http_events_invalid_total but emitted like a valid one "
                 "(to see what rejecting would refuse before turning it on); off = no check"),
    ECF_OPT_END,
};

/* ---------------------------------------------------------------- parser pool */

jd_parser *http_parser_get(source_http *src)
{
    g_mutex_lock(&src->lock);
    jd_parser *p = src->parsers->len ? g_ptr_array_steal_index_fast(src->parsers, src->parsers->len - 1) : NULL;
    g_mutex_unlock(&src->lock);
    return p ? p : jd_parser_new(DOOR_MAX_DEPTH);
}

void http_parser_put(source_http *src, jd_parser *p)
{
    if (!p)
        return;
    if (jd_parser_footprint(p) <= POOL_MAX_PARSER_CAPACITY) {
        g_mutex_lock(&src->lock);
        bool kept = src->parsers->len < POOL_MAX_PARSERS;
        if (kept)
            g_ptr_array_add(src->parsers, p);
        g_mutex_unlock(&src->lock);
        if (kept)
            return;
    }
    jd_parser_free(p);
}

/* ---------------------------------------------------------------- create */

static ecf_status check_config(ecf_stage *stage, const http_config *cfg)
{
    if (!cfg->path || cfg->path[0] != '/')
        return ecf_error(stage, "option 'path': must start with '/', got \"%s\"", cfg->path ? cfg->path : "");
    if (!strcmp(cfg->path, "/health") || !strcmp(cfg->path, "/ready"))
        return ecf_error(stage, "option 'path': %s is taken by the health endpoints", cfg->path);
    if (!cfg->key_field || !*cfg->key_field)
        return ecf_error(stage, "option 'key_field': must not be empty");
    if (!cfg->tls_cert != !cfg->tls_key)
        return ecf_error(stage, "options 'tls_cert' and 'tls_key' go together: give both or none");
    if (cfg->max_inflight_bytes < cfg->max_body_bytes)
        return ecf_error(stage,
                         "option 'max_inflight_bytes' (%" PRId64 ") is smaller than 'max_body_bytes' (%" PRId64
                         "): no body of the maximum size could ever be taken",
                         cfg->max_inflight_bytes, cfg->max_body_bytes);
    return ECF_OK;
}

static ecf_status resolve_listen(source_http *src)
{
    const http_config *cfg = src->cfg;
    char port[16];
    snprintf(port, sizeof port, "%" PRId64, cfg->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(cfg->listen, port, &hints, &res);
    if (rc != 0 || !res)
        return ecf_error(src->stage, "option 'listen': cannot resolve \"%s\": %s", cfg->listen, gai_strerror(rc));
    memcpy(&src->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return ECF_OK;
}

static ecf_status read_pem(ecf_stage *stage, const char *opt, const char *file, char **out)
{
    GError *err = NULL;
    if (!g_file_get_contents(file, out, NULL, &err)) {
        ecf_error(stage, "option '%s': cannot read %s: %s", opt, file, err->message);
        g_error_free(err);
        return ECF_ERR_CONFIG;
    }
    return ECF_OK;
}

/* Every status source-http answers with; anything else counts as "other". */
static const unsigned answered_codes[HTTP_N_CODES] = {200, 207, 400, 401, 404, 405, 413, 415, 422, 500, 503, 0};

static void make_metrics(source_http *src)
{
    ecf_stage *s = src->stage;
    for (int i = 0; i < HTTP_N_CODES; i++) {
        char name[64];
        if (answered_codes[i])
            snprintf(name, sizeof name, "http_responses_total{code=\"%u\"}", answered_codes[i]);
        else
            snprintf(name, sizeof name, "http_responses_total{code=\"other\"}");
        src->codes[i] = answered_codes[i];
        src->m_status[i] = ecf_metric_new(s, ECF_METRIC_COUNTER, name, "HTTP responses by status code");
    }
    src->m_accepted = ecf_metric_new(s, ECF_METRIC_COUNTER, "http_events_accepted_total", "events answered as durable");
    ecf_metric_status(s, src->m_accepted, "accepted");
    src->m_rejected = ecf_metric_new(s, ECF_METRIC_COUNTER, "http_events_rejected_total",
                                     "events answered as rejected (door checks or downstream)");
    src->m_bytes = ecf_metric_new(s, ECF_METRIC_COUNTER, "http_received_bytes_total",
                                  "request body bytes received, as sent (before gunzip)");
    src->m_latency = ecf_metric_new(s, ECF_METRIC_HISTOGRAM, "http_request_duration_seconds",
                                    "POST time from headers to answer, acks included");
    src->m_inflight =
        ecf_metric_new(s, ECF_METRIC_GAUGE, "http_inflight_body_bytes", "request body bytes held in memory now");
}

static void http_destroy(ecf_stage *stage);

static ecf_status http_create(ecf_stage *stage)
{
    const http_config *cfg = ecf_config(stage);
    ecf_status st = check_config(stage, cfg);
    if (st != ECF_OK)
        return st;

    source_http *src = g_new0(source_http, 1);
    src->stage = stage;
    src->cfg = cfg;
    src->quiesced_fd = MHD_INVALID_SOCKET;
    src->budget.limit = cfg->max_inflight_bytes;
    src->retry_after_s = (unsigned)((cfg->retry_after_us + 999999) / 1000000);
    g_mutex_init(&src->lock);
    g_queue_init(&src->waiting);
    outbox_init(&src->outbox, stage, (uint32_t)cfg->batch_max_events);
    src->parsers = g_ptr_array_new();
    src->why_key_missing = g_strdup_printf("missing key field '%s'", cfg->key_field);
    src->why_key_not_string = g_strdup_printf("key field '%s' is not a string", cfg->key_field);
    src->why_key_empty = g_strdup_printf("key field '%s' is empty", cfg->key_field);
    src->why_too_large = g_strdup_printf(
        "request body larger than max_body_bytes (%" PRId64 " bytes, after decompression)", cfg->max_body_bytes);
    ecf_set_state(stage, src);

    GString *err = g_string_new(NULL);
    st = api_keys_load(cfg->api_keys_file, cfg->api_keys_env, &src->keys, err);
    if (st != ECF_OK)
        st = ecf_fail(stage, st, "%s", err->str);
    g_string_free(err, TRUE);
    if (st == ECF_OK)
        st = edge_init(src);
    if (st == ECF_OK)
        st = resolve_listen(src);
    if (st == ECF_OK && cfg->tls_cert) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
            st = ecf_error(stage, "tls_cert is set but this libmicrohttpd has no TLS support");
        else if ((st = read_pem(stage, "tls_cert", cfg->tls_cert, &src->tls_cert_pem)) == ECF_OK)
            st = read_pem(stage, "tls_key", cfg->tls_key, &src->tls_key_pem);
    }
    if (st != ECF_OK) {
        http_destroy(stage);
        ecf_set_state(stage, NULL);
        return st;
    }
    make_metrics(src);
    return ECF_OK;
}

/* ---------------------------------------------------------------- start */

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    source_http *src = cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    ecf_log(src->stage, ECF_LOG_WARN, "libmicrohttpd: %s", line);
}

static unsigned worker_threads(const http_config *cfg)
{
    return cfg->threads > 0 ? (unsigned)cfg->threads : (unsigned)g_get_num_processors();
}

static ecf_status http_start(ecf_stage *stage)
{
    source_http *src = ecf_state(stage);
    const http_config *cfg = src->cfg;
    unsigned threads = worker_threads(cfg);
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (src->addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (src->tls_cert_pem)
        flags |= MHD_USE_TLS;

    struct MHD_OptionItem opts[16];
    int n = 0;
    /* The logger first: libmicrohttpd logs to stderr until it has seen it. */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)(void *)on_mhd_log, src};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &src->addr};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, (intptr_t)cfg->max_connections, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                        (intptr_t)((cfg->connection_timeout_us + 999999) / 1000000), NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)cfg->connection_memory, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)(void *)http_on_completed, src};
    if (threads > 1)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)threads, NULL};
    if (src->tls_cert_pem) {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, src->tls_cert_pem};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, src->tls_key_pem};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    errno = 0;
    src->daemon = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, http_on_request, src, MHD_OPTION_ARRAY, opts,
                                   MHD_OPTION_END);
    if (!src->daemon)
        return ecf_error(stage, "cannot listen on %s port %" PRId64 "%s%s", cfg->listen, cfg->port, errno ? ": " : "",
                         errno ? g_strerror(errno) : "");

    const union MHD_DaemonInfo *info = MHD_get_daemon_info(src->daemon, MHD_DAEMON_INFO_BIND_PORT);
    ecf_log(stage, ECF_LOG_INFO, "listening on %s://%s%s%s:%u%s (%u thread%s%s)", src->tls_cert_pem ? "https" : "http",
            strchr(cfg->listen, ':') ? "[" : "", cfg->listen, strchr(cfg->listen, ':') ? "]" : "",
            info ? info->port : (unsigned)cfg->port, cfg->path, threads, threads == 1 ? "" : "s",
            src->keys ? ", API keys required" : "");
    ecf_set_ready(stage, true);
    return ECF_OK;
}

/* ---------------------------------------------------------------- run */

/*
 * The stage thread emits the outbox batches HTTP workers could not (no room
 * downstream) and, on a timer, answers requests whose acks are overdue. Such
 * a batch waits for room at most give_up_us(): then its events are answered
 * 503, so a stuck downstream turns into prompt retries, not into requests that hang
 * until ack_timeout and events that reach Kafka after their client gave up.
 */
#define BACKOFF_US 500

static int64_t poll_interval_us(const http_config *cfg) { return CLAMP(cfg->ack_timeout_us / 4, 10000, 100000); }

static int64_t give_up_us(const http_config *cfg) { return MIN(cfg->ack_timeout_us / 4, 1000000); }

static void tick(source_http *src)
{
    http_expire_waiting(src, ecf_monotonic_us(src->stage), false);
    ecf_metric_set(src->stage, src->m_inflight, (double)atomic_load(&src->budget.used));
}

static void tick_if_due(source_http *src)
{
    int64_t now = ecf_monotonic_us(src->stage);
    if (now < src->next_tick_us)
        return;
    src->next_tick_us = now + poll_interval_us(src->cfg);
    tick(src);
}

static void emit_taken(source_http *src, ecf_batch *b, int64_t opened_us)
{
    ecf_stage *stage = src->stage;
    bool blocked = false;
    while (ecf_try_emit(stage, NULL, b) == ECF_ERR_BACKPRESSURE) {
        if (!blocked)
            outbox_set_blocked(&src->outbox, blocked = true);
        if (ecf_monotonic_us(stage) - opened_us >= give_up_us(src->cfg)) {
            ecf_batch_nack_all(stage, b, ECF_ERR_BACKPRESSURE, "backpressure: the pipeline is full, retry later");
            ecf_batch_release(stage, b);
            break;
        }
        tick_if_due(src);
        g_usleep(BACKOFF_US);
    }
    outbox_taken(&src->outbox);
}

/* Emits what the outbox holds for this thread, waiting up to wait_us. */
static void flush_outbox(source_http *src, int64_t wait_us)
{
    int64_t opened_us;
    ecf_batch *b = outbox_take(&src->outbox, wait_us, &opened_us);
    if (b)
        emit_taken(src, b, opened_us);
    tick_if_due(src);
}

static void close_outbox(source_http *src, const char *why)
{
    ecf_batch *b;
    while ((b = outbox_close(&src->outbox)) != NULL) {
        ecf_batch_nack_all(src->stage, b, ECF_ERR_STOPPED, why);
        ecf_batch_release(src->stage, b);
    }
}

/* Flushes until no POST is in progress or `deadline` (monotonic µs) passes. */
static bool wait_idle(source_http *src, int64_t deadline)
{
    while (atomic_load(&src->active) > 0) {
        if (ecf_monotonic_us(src->stage) >= deadline)
            return false;
        flush_outbox(src, 10000);
    }
    return true;
}

static void begin_drain(source_http *src)
{
    if (atomic_exchange(&src->draining, true))
        return;
    ecf_set_ready(src->stage, false);
    if (src->daemon)
        src->quiesced_fd = MHD_quiesce_daemon(src->daemon);
}

static ecf_status http_run(ecf_stage *stage)
{
    source_http *src = ecf_state(stage);
    const int64_t interval = poll_interval_us(src->cfg);
    while (!ecf_should_stop(stage))
        flush_outbox(src, interval);
    /* Stop taking connections; let requests already in finish, each within
     * its own ack_timeout; whatever is still waiting then is answered 503. */
    begin_drain(src);
    int64_t deadline = ecf_monotonic_us(stage) + src->cfg->ack_timeout_us + interval;
    if (!wait_idle(src, deadline)) {
        guint n = http_expire_waiting(src, ecf_monotonic_us(stage), true);
        if (n)
            ecf_log(stage, ECF_LOG_WARN, "shutdown: %u request%s answered 503 with acks pending", n, n == 1 ? "" : "s");
        close_outbox(src, "the pipeline is shutting down");
        wait_idle(src, ecf_monotonic_us(stage) + 1000000);
    }
    close_outbox(src, "the pipeline is shutting down");
    return ECF_OK;
}

/* ---------------------------------------------------------------- stop, destroy */

static void http_stop(ecf_stage *stage)
{
    source_http *src = ecf_state(stage);
    if (!src || !src->daemon)
        return;
    begin_drain(src);
    /* libmicrohttpd must not be stopped with a connection suspended. */
    http_tear_down(src);
    close_outbox(src, "the pipeline is shutting down");
    wait_idle(src, ecf_monotonic_us(stage) + 1000000);
    MHD_stop_daemon(src->daemon);
    src->daemon = NULL;
    for (int n = 0; n <= HTTP_CACHED_OK; n++) {
        struct MHD_Response *r = atomic_exchange(&src->ok_answers[n], NULL);
        if (r)
            MHD_destroy_response(r);
    }
    if (src->quiesced_fd != MHD_INVALID_SOCKET)
        close(src->quiesced_fd);
    src->quiesced_fd = MHD_INVALID_SOCKET;
}

static void free_secret(char *s)
{
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    g_free(s);
}

static void http_destroy(ecf_stage *stage)
{
    source_http *src = ecf_state(stage);
    if (!src)
        return;
    if (src->daemon)
        http_stop(stage);
    api_keys_free(src->keys);
    g_free(src->tls_cert_pem);
    free_secret(src->tls_key_pem);
    for (guint i = 0; i < src->parsers->len; i++)
        jd_parser_free(src->parsers->pdata[i]);
    g_ptr_array_free(src->parsers, TRUE);
    edge_free(src);
    g_queue_init(&src->waiting); /* empty by now; its links live in the requests */
    outbox_clear(&src->outbox);
    g_mutex_clear(&src->lock);
    g_free(src->why_key_missing);
    g_free(src->why_key_not_string);
    g_free(src->why_key_empty);
    g_free(src->why_too_large);
    g_free(src);
    ecf_set_state(stage, NULL);
}

static const char *const http_ports[] = {"default", "invalid", NULL};

ECF_PLUGIN_DEFINE(.name = "source-http", .kind = ECF_SOURCE, .version = "1.0.0",
                  .summary = "Takes events POSTed over HTTP (JSON, arrays, NDJSON, gzip) and answers once "
                             "they are durable",
                  .ports = http_ports, .config_size = sizeof(http_config), .options = http_options,
                  .create = http_create, .start = http_start, .run = http_run, .stop = http_stop,
                  .destroy = http_destroy, );
