/*
 * source-http internals, shared by the files of this plugin only.
 *
 * Threads: libmicrohttpd's workers run the access handler (header checks,
 * body upload, door check, emit); the sinks' threads run the ack tokens'
 * settle callbacks; the stage thread runs run(), which also times out
 * requests whose acks are late. A request context is reference-counted so
 * that whichever of them finishes last frees it.
 */
#ifndef ECF_SOURCE_HTTP_H
#define ECF_SOURCE_HTTP_H

#include <ecflow/plugin.h>

#include <glib.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <zlib.h>

#include "event_scan.h"
#include "schema.h"
#include "validate.h"

typedef struct {
    char *listen;
    int64_t port;
    char *path;
    char *key_field;
    int64_t max_body_bytes;
    int64_t max_events;
    int64_t max_connections;
    int64_t connection_timeout_us;
    int64_t request_timeout_us;
    int64_t header_timeout_us;
    int64_t ack_timeout_us;
    int64_t max_inflight_bytes;
    int64_t batch_max_events;
    int64_t retry_after_us;
    char *api_keys_file;
    char *api_keys_env;
    char *tls_cert;
    char *tls_key;
    int64_t connection_memory;
    int64_t threads;
    char *schema;
    int64_t max_future_us;
    char *on_invalid;
} http_config;

typedef struct source_http source_http;

/* ---------------------------------------------------------------- auth.c */

typedef struct api_keys api_keys;

/* NULL file and env: *out = NULL (no auth). Error text never holds a key. */
ecf_status api_keys_load(const char *file, const char *env_name, api_keys **out, GString *err);
/* Constant-time in the key's content: every stored key is compared. */
bool api_keys_check(const api_keys *keys, const char *presented);
guint api_keys_count(const api_keys *keys);
void api_keys_free(api_keys *keys);
/* The key a request presents: "Authorization: Bearer K" or "X-API-Key: K". */
const char *api_key_presented(struct MHD_Connection *conn);

/* ---------------------------------------------------------------- body.c */

/* Bytes all request bodies may hold at once (max_inflight_bytes). */
typedef struct {
    _Atomic int64_t used;
    int64_t limit;
} byte_budget;

typedef enum {
    BODY_OK = 0,
    BODY_TOO_LARGE, /* over max_body_bytes (after decompression) */
    BODY_BUSY,      /* the in-flight budget is spent             */
    BODY_BAD_GZIP,
    BODY_NOMEM,
} body_status;

typedef struct {
    uint8_t *data; /* cap + JD_PADDING bytes allocated */
    size_t len, cap;
    size_t limit;
    size_t reserved; /* taken from the budget            */
    size_t expected; /* declared Content-Length, 0 = none */
    byte_budget *budget;
    bool gzip;
    bool gz_live, gz_member_done;
    z_stream zs;
} http_body;

void body_init(http_body *b, size_t limit, byte_budget *budget, bool gzip, size_t expected);
body_status body_append(http_body *b, const void *data, size_t n);
/* End of upload: checks the gzip stream is complete; zeroes the padding. */
body_status body_finish(http_body *b);
void body_release(http_body *b);

/* ---------------------------------------------------------------- outbox.c */

/* The batch small requests share. One thread at a time emits it: a request's
 * HTTP worker when none is at work, the stage thread for a batch downstream
 * had no room for. */
typedef struct {
    GMutex lock;
    GCond wake;
    ecf_stage *stage;
    ecf_batch *open;
    uint32_t count, cap;
    int64_t opened_us; /* when `open` got its first event        */
    ecf_batch *handed; /* refused downstream: the stage thread's */
    int64_t handed_opened_us;
    bool emitting; /* a thread is emitting an outbox batch    */
    bool taker_waiting, taker_blocked, closed;
} http_outbox;

void outbox_init(http_outbox *o, ecf_stage *stage, uint32_t cap);
void outbox_clear(http_outbox *o);
/* OK: the outbox is locked for outbox_put() until outbox_put_end().
 * BACKPRESSURE (full) or STOPPED (closed): nothing is locked. */
ecf_status outbox_put_begin(http_outbox *o);
ecf_status outbox_put(http_outbox *o, const ecf_message_init *m);
/* Unlocks; emits the open batch from this thread if no one else is at it
 * (never waits for room downstream: such a batch is handed over). */
void outbox_put_end(http_outbox *o);
/* The stage thread holds a batch downstream has no room for. */
void outbox_set_blocked(http_outbox *o, bool blocked);
/* For the stage thread: a batch handed over, or the open one if it has
 * events and no one is emitting, waiting up to wait_us; NULL when none
 * came. The caller owns it and calls outbox_taken() once it is emitted or
 * given up. */
ecf_batch *outbox_take(http_outbox *o, int64_t wait_us, int64_t *opened_us);
void outbox_taken(http_outbox *o);
/* Refuses every later put; returns a batch still held (caller owns), one
 * per call, NULL when none is left. */
ecf_batch *outbox_close(http_outbox *o);

/* ---------------------------------------------------------------- request.c */

typedef struct http_request http_request;

enum MHD_Result http_on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls);
void http_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe);
/* Resumes requests whose acks are overdue (now >= deadline), or all of them
 * when `all` (shutdown). Returns how many were resumed. */
guint http_expire_waiting(source_http *src, int64_t now_us, bool all);
/* From now on no request is suspended (they are answered with what has
 * settled), so the daemon can be stopped: it must not hold any. */
void http_tear_down(source_http *src);

/* ---------------------------------------------------------------- edge.c */

typedef struct edge_check edge_check;

/* Loads the `schema` option's file (if any) and makes the checkers' metrics. */
ecf_status edge_init(source_http *src);
void edge_free(source_http *src);
/* A pooled checker (validator + scratch columns); NULL on out of memory. */
edge_check *edge_get(source_http *src);
void edge_put(source_http *src, edge_check *c);
/* The door's one walk feeds the checker (jd_members): edge_begin before an
 * object event's members, edge_member (user: the checker) for each, then
 * edge_end with the event the door reports: true when it passes the
 * schema, else edge_problems(c) says why. Counting is the caller's
 * (edge_count), once the body as a whole turned out to be JSON. */
void edge_begin(void *checker, uint32_t index);
void edge_member(void *checker, const tvj_member *m);
bool edge_end(edge_check *c, const jd_event *ev);
const tv_error *edge_problems(const edge_check *c);
void edge_count(source_http *src, tv_reason r);
/* err's problems as a JSON array: [{"field", "rule", "value", "message"}...]
 * (and {"more": N} when some were not listed). */
void edge_problems_json(GString *out, const tv_error *err);
/* Adds the event's dead-letter envelope to *dlq (made on first use) when
 * a stage reads the `invalid` port; edge_flush_dead_letters emits it. */
void edge_dead_letter(source_http *src, edge_check *c, ecf_batch **dlq, const uint8_t *raw, size_t len, uint32_t index,
                      const tv_error *err);
void edge_flush_dead_letters(source_http *src, ecf_batch *dlq);

/* ---------------------------------------------------------------- deadline.c */

typedef enum {
    CONN_HEADERS, /* reading headers: header_timeout            */
    CONN_BODY,    /* headers done, body arriving: request_timeout */
    CONN_WAITING, /* suspended for acks: ack_timeout ends it      */
    CONN_CUT,     /* its socket was shut down                     */
} conn_state;

typedef struct conn_watch conn_watch;

/* MHD_OPTION_NOTIFY_CONNECTION: starts and ends watching a connection. */
void http_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe);
void http_conn_state(source_http *src, struct MHD_Connection *conn, conn_state st);
/* Shuts down the sockets of connections past their deadline; returns how many. */
guint http_sweep_connections(source_http *src, int64_t now_us);

/* ---------------------------------------------------------------- source_http.c */

#define HTTP_N_CODES 12
/* 200 answers kept built for requests of up to this many events. */
#define HTTP_CACHED_OK 128

struct source_http {
    ecf_stage *stage;
    const http_config *cfg;
    struct MHD_Daemon *daemon;
    MHD_socket quiesced_fd;
    api_keys *keys;
    char *tls_cert_pem;
    char *tls_key_pem;
    struct sockaddr_storage addr;
    unsigned retry_after_s;

    byte_budget budget;
    _Atomic int active;    /* POST requests between headers and completion */
    _Atomic bool draining; /* should_stop seen: refuse new work            */
    bool tearing_down;     /* stop(): suspend nothing more (under `lock`)  */

    GMutex lock;          /* guards `waiting`, `parsers`, `tearing_down`;
                                    taken before a request's lock, never after  */
    GQueue waiting;       /* http_request* suspended for their acks       */
    http_outbox outbox;   /* small requests' events, for run() to emit    */
    int64_t next_tick_us; /* run(): next check for overdue acks          */
    GPtrArray *parsers;   /* idle jd_parser*, reused across requests      */
    GMutex conns_lock;    /* guards `conns` (deadline.c)                  */
    GQueue conns;         /* conn_watch* of every open connection         */

    /* Addresses used as the connection context of requests answered
     * without a body (GET /health ...): answering in the first callback
     * would make libmicrohttpd close a keep-alive connection. */
    char route_tags[4];

    /* Reasons that name the configured key field, formatted once. */
    char *why_key_missing, *why_key_not_string, *why_key_empty, *why_too_large;

    _Atomic(struct MHD_Response *) ok_answers[HTTP_CACHED_OK + 1]; /* see cached_ok() */

    unsigned codes[HTTP_N_CODES];       /* the status codes counted, 0 = other    */
    ecf_metric *m_status[HTTP_N_CODES]; /* responses, by codes[i]                 */
    ecf_metric *m_accepted, *m_rejected, *m_bytes, *m_latency, *m_inflight;

    /* edge validation (edge.c); schema NULL = off */
    tv_schema *schema;
    tv_pool *col_pool;
    GPtrArray *checkers; /* idle edge_check*, under `lock`              */
    bool dead_letter;    /* a stage reads 'invalid'                     */
    bool edge_pass;      /* on_invalid: pass (count, do not refuse) */
    char *edge_error;
    ecf_metric *m_invalid[TV_REASON_COUNT];
    ecf_metric *m_dlq_dropped;
};

jd_parser *http_parser_get(source_http *src);
void http_parser_put(source_http *src, jd_parser *p);

#endif /* ECF_SOURCE_HTTP_H */
