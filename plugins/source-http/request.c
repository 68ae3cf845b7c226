/*
 * One HTTP request, from its headers to its answer.
 *
 *   headers   route, method, API key, Content-Type/-Encoding/-Length
 *   upload    body bytes (inflated if gzip) into a padded buffer
 *   door      simdjson scan: valid JSON? each event an object with the key?
 *             (and, with `schema`, valid, checked on the same walk)
 *   emit      one ack token per event; whole batches via ecf_try_emit(),
 *             the rest into the batch small requests share (outbox.c)
 *   wait      connection suspended until every token settled (or
 *             ack_timeout passed); settle callbacks run on sink threads
 *   answer    200 / 207 / 422 / 503 from the per-event outcomes
 *
 * Status codes, in one place:
 *   200  every event is durable                     {"accepted": N}
 *   207  some durable, some not                     {"accepted": K, "rejected": [...]}
 *   422  none durable, none worth retrying (door checks, sink said invalid)
 *   503  none durable and some failure is transient (backpressure, broker
 *        down, ack timeout, shutdown), with Retry-After
 *   400  not JSON (names the byte offset), empty body, broken gzip
 * With the `schema` option the door also checks each event against the
 * schema (edge.c), on the door's own walk: an invalid one is listed with
 * "field", "rule" (the reason class) and "value" (in short) of its first
 * problem besides its "reason", and "problems" (each of them), and is not
 * emitted.
 *   401 404 405 413 415  as the names say
 * Each rejected event is listed with its index, reason and whether a retry
 * can help, so a client resends exactly those.
 */
#include "source_http.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define MAX_LISTED_REJECTIONS 1000
#define DOOR_MAX_DEPTH 64

typedef enum { PHASE_UPLOAD = 1, PHASE_WAITING, PHASE_ANSWERED } req_phase;

typedef enum {
    DOOR_PASS = 0,
    DOOR_NOT_OBJECT,
    DOOR_KEY_MISSING,
    DOOR_KEY_NOT_STRING,
    DOOR_KEY_EMPTY,
    DOOR_SCHEMA, /* refused by the schema (edge.c); recorded with details */
} door_verdict;

typedef struct {
    size_t offset;
    uint32_t length;
    uint32_t key_off, key_len; /* into http_request.keys */
    uint8_t verdict;
    uint32_t refused; /* 1 + its index in http_request.refusals; 0: the schema passed it */
} door_event;

/* An event the schema refused, as the door's walk found it; applied once
 * the whole body turned out to be JSON. Strings are interned. */
typedef struct {
    tv_reason reason;
    const char *field, *message, *value, *problems;
} edge_refusal;

typedef struct {
    bool settled;
    ecf_status status;
    const char *reason; /* static, or interned in http_request.reasons */
    /* schema rejections: the field (the schema's, or NULL), the rule (a
     * reason class name, static) and the value in short (interned) */
    const char *field, *rule, *value;
    const char *problems; /* every problem, a JSON array (interned) */
} event_result;

struct http_request {
    source_http *src;
    struct MHD_Connection *conn;
    gint refs; /* connection + unsettled tokens + waiting list */
    req_phase phase;
    int64_t started_us;

    http_body body;
    jd_layout layout;
    size_t wire_bytes;
    unsigned fail_status; /* decided while uploading, answered at its end */
    const char *fail_msg;

    GArray *events; /* door_event */
    GByteArray *keys;
    bool too_many;
    edge_check *checker; /* while the door walks, with the `schema` option */
    bool edge_down;      /* no checker to be had: out of memory */
    GArray *refusals;    /* edge_refusal */
    ecf_batch *dlq;      /* dead letters, emitted once the body is JSON */

    GMutex lock; /* guards everything below */
    event_result *results;
    uint32_t n_events;
    uint32_t pending; /* tokens not settled, +1 while the handler emits */
    bool suspended, timed_out, stopped;
    GList wait_link; /* in src->waiting, when in_waiting (src->lock) */
    bool in_waiting;
    int64_t deadline_us;
    GHashTable *reasons;
};

/* ---------------------------------------------------------------- lifetime */

static http_request *req_new(source_http *src, struct MHD_Connection *conn)
{
    http_request *req = g_new0(http_request, 1);
    req->src = src;
    req->conn = conn;
    req->refs = 1;
    req->phase = PHASE_UPLOAD;
    req->started_us = ecf_monotonic_us(src->stage);
    g_mutex_init(&req->lock);
    return req;
}

static void req_drop_scratch(http_request *req)
{
    body_release(&req->body);
    if (req->events)
        g_array_free(req->events, TRUE);
    if (req->keys)
        g_byte_array_free(req->keys, TRUE);
    if (req->refusals)
        g_array_free(req->refusals, TRUE);
    req->events = NULL;
    req->keys = NULL;
    req->refusals = NULL;
}

static void req_unref(http_request *req)
{
    if (!g_atomic_int_dec_and_test(&req->refs))
        return;
    req_drop_scratch(req);
    g_free(req->results);
    if (req->reasons)
        g_hash_table_destroy(req->reasons);
    g_mutex_clear(&req->lock);
    g_free(req);
}

/* ---------------------------------------------------------------- answers */

static void count_status(source_http *src, unsigned status)
{
    int i = 0;
    while (i < HTTP_N_CODES - 1 && src->codes[i] != status)
        i++;
    ecf_metric_add(src->stage, src->m_status[i], 1);
}

static void json_string(GString *out, const char *s)
{
    g_string_append_c(out, '"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            g_string_append_printf(out, "\\%c", c);
        else if (c < 0x20)
            g_string_append_printf(out, "\\u%04x", c);
        else
            g_string_append_c(out, (char)c);
    }
    g_string_append_c(out, '"');
}

typedef struct {
    const char *allow; /* 405: the Allow header                */
    bool retry_after;  /* 503 and partial transient failures   */
    bool close;        /* body left unread, or shutting down   */
} answer_opts;

static enum MHD_Result send_answer(source_http *src, struct MHD_Connection *conn, unsigned status, GString *json,
                                   answer_opts o)
{
    g_string_append_c(json, '\n');
    size_t len = json->len;
    char *data = g_string_free(json, FALSE);
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, data, g_free);
    if (!r) {
        g_free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (o.allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, o.allow);
    if (o.retry_after) {
        char v[16];
        snprintf(v, sizeof v, "%u", src->retry_after_s);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (o.close)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    count_status(src, status);
    return rc;
}

static enum MHD_Result answer_error(source_http *src, struct MHD_Connection *conn, unsigned status, const char *msg,
                                    answer_opts o)
{
    GString *j = g_string_new("{\"error\":");
    json_string(j, msg);
    g_string_append_c(j, '}');
    return send_answer(src, conn, status, j, o);
}

static void observe_latency(http_request *req)
{
    source_http *src = req->src;
    int64_t us = ecf_monotonic_us(src->stage) - req->started_us;
    ecf_metric_observe(src->stage, src->m_latency, (double)us / 1e6);
}

/* An error that ends a POST before any event was emitted. */
static enum MHD_Result answer_request_error(http_request *req, unsigned status, const char *msg, bool retry)
{
    req->phase = PHASE_ANSWERED;
    observe_latency(req);
    answer_opts o = {.retry_after = retry};
    return answer_error(req->src, req->conn, status, msg, o);
}

static bool status_retryable(ecf_status st)
{
    switch (st) {
    case ECF_OK:
    case ECF_ERR_INVALID:
    case ECF_ERR_DROPPED: return false;
    default: return true;
    }
}

/* Called with req->lock held. */
static void append_rejection(GString *j, uint32_t index, const char *reason, bool retry, const event_result *r)
{
    g_string_append_printf(j, "%s{\"index\":%" PRIu32 ",\"reason\":", j->str[j->len - 1] == '[' ? "" : ",", index);
    json_string(j, reason);
    if (r->rule) {
        g_string_append(j, ",\"field\":");
        if (r->field)
            json_string(j, r->field);
        else
            g_string_append(j, "null");
        g_string_append(j, ",\"rule\":");
        json_string(j, r->rule);
        g_string_append(j, ",\"value\":");
        if (r->value && *r->value)
            json_string(j, r->value);
        else
            g_string_append(j, "null");
        if (r->problems)
            g_string_append_printf(j, ",\"problems\":%s", r->problems);
    }
    g_string_append_printf(j, ",\"retryable\":%s}", retry ? "true" : "false");
}

/* `200 {"accepted":N}`, the answer nearly every request gets, built once per
 * N and shared (libmicrohttpd responses are reference-counted): building
 * one per request was a string, a response object with a mutex and two
 * header copies. NULL when out of memory. */
static struct MHD_Response *cached_ok(source_http *src, uint32_t n)
{
    struct MHD_Response *r = atomic_load_explicit(&src->ok_answers[n], memory_order_acquire);
    if (r)
        return r;
    char body[40];
    int len = snprintf(body, sizeof body, "{\"accepted\":%" PRIu32 "}\n", n);
    r = MHD_create_response_from_buffer((size_t)len, body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return NULL;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    struct MHD_Response *none = NULL;
    if (atomic_compare_exchange_strong(&src->ok_answers[n], &none, r))
        return r;
    MHD_destroy_response(r); /* another worker was first */
    return none;
}

static enum MHD_Result answer_results(http_request *req)
{
    source_http *src = req->src;
    GString *list = NULL;
    uint32_t accepted = 0, rejected = 0;
    bool any_retry = false;

    g_mutex_lock(&req->lock);
    for (uint32_t i = 0; i < req->n_events; i++) {
        const event_result *r = &req->results[i];
        if (r->settled && r->status == ECF_OK) {
            accepted++;
            continue;
        }
        ecf_status st = r->settled ? r->status : req->stopped ? ECF_ERR_STOPPED : ECF_ERR_TIMEOUT;
        const char *why = r->settled     ? r->reason
                          : req->stopped ? "shutting down before the event was acknowledged"
                                         : "not acknowledged within ack_timeout";
        bool retry = status_retryable(st);
        any_retry |= retry;
        if (!list)
            list = g_string_new("[");
        if (rejected++ < MAX_LISTED_REJECTIONS)
            append_rejection(list, i, why ? why : ecf_status_str(st), retry, r);
    }
    g_mutex_unlock(&req->lock);

    ecf_metric_add(src->stage, src->m_accepted, accepted);
    ecf_metric_add(src->stage, src->m_rejected, rejected);
    req->phase = PHASE_ANSWERED;
    observe_latency(req);
    bool draining = atomic_load(&src->draining);
    if (rejected == 0 && accepted <= HTTP_CACHED_OK && !draining) {
        struct MHD_Response *ok = cached_ok(src, accepted);
        if (ok) {
            count_status(src, MHD_HTTP_OK);
            return MHD_queue_response(req->conn, MHD_HTTP_OK, ok);
        }
    }

    unsigned status = rejected == 0  ? MHD_HTTP_OK
                      : accepted > 0 ? MHD_HTTP_MULTI_STATUS
                      : any_retry    ? MHD_HTTP_SERVICE_UNAVAILABLE
                                     : MHD_HTTP_UNPROCESSABLE_CONTENT;
    GString *j = g_string_new(NULL);
    g_string_append_printf(j, "{\"accepted\":%" PRIu32, accepted);
    if (rejected) {
        g_string_append_printf(j, ",\"rejected\":%s]", list->str);
        if (rejected > MAX_LISTED_REJECTIONS)
            g_string_append_printf(j, ",\"rejected_count\":%" PRIu32 ",\"truncated\":true", rejected);
    }
    g_string_append_c(j, '}');
    if (list)
        g_string_free(list, TRUE);
    answer_opts o = {.retry_after = any_retry, .close = draining};
    return send_answer(src, req->conn, status, j, o);
}

/* ---------------------------------------------------------------- acks */

static const char *intern_reason(http_request *req, const char *reason)
{
    if (!reason)
        return NULL;
    if (!req->reasons)
        req->reasons = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    const char *known = g_hash_table_lookup(req->reasons, reason);
    if (known)
        return known;
    char *copy = g_strdup(reason);
    g_hash_table_insert(req->reasons, copy, copy);
    return copy;
}

/* First verdict wins: a failure recorded by the emitter (backpressure) is not
 * overwritten by the "dropped" its released batch reports afterwards. */
static void record(http_request *req, uint32_t i, ecf_status st, const char *reason)
{
    event_result *r = &req->results[i];
    if (r->settled)
        return;
    r->settled = true;
    r->status = st;
    r->reason = st == ECF_OK ? NULL : intern_reason(req, reason ? reason : ecf_status_str(st));
}

static void record_locked(http_request *req, uint32_t i, ecf_status st, const char *reason)
{
    g_mutex_lock(&req->lock);
    record(req, i, st, reason);
    g_mutex_unlock(&req->lock);
}

/* Runs on whichever thread drops a token's last reference. Touches only the
 * request (never the stage), and the connection only while it is suspended,
 * which keeps the daemon alive. */
static void on_settle(void *user, uint64_t tag, ecf_status outcome, const char *reason)
{
    http_request *req = user;
    g_mutex_lock(&req->lock);
    if (tag < req->n_events) {
        if (outcome == ECF_ERR_DROPPED && !reason)
            reason = "dropped: no sink took responsibility for the event";
        record(req, (uint32_t)tag, outcome, reason);
    }
    bool last = --req->pending == 0;
    if (last && req->suspended) {
        req->suspended = false;
        MHD_resume_connection(req->conn);
    }
    g_mutex_unlock(&req->lock);
    if (last)
        req_unref(req); /* the unsettled-tokens reference */
}

/* ---------------------------------------------------------------- door */

static uint32_t refuse(http_request *req, const uint8_t *raw, size_t len, uint32_t index);

static bool on_door_event(void *user, const jd_event *ev)
{
    http_request *req = user;
    if (req->events->len >= (guint)req->src->cfg->max_events) {
        req->too_many = true;
        return false;
    }
    door_event de = {.offset = ev->offset, .length = (uint32_t)ev->length};
    if (req->checker && !edge_end(req->checker, ev))
        de.refused = refuse(req, req->body.data + ev->offset, ev->length, ev->index);
    if (!ev->is_object) {
        de.verdict = DOOR_NOT_OBJECT;
    } else if (ev->key_state == JD_KEY_MISSING) {
        de.verdict = DOOR_KEY_MISSING;
    } else if (ev->key_state == JD_KEY_NOT_STRING) {
        de.verdict = DOOR_KEY_NOT_STRING;
    } else if (ev->key_len == 0) {
        de.verdict = DOOR_KEY_EMPTY;
    } else {
        de.key_off = req->keys->len;
        de.key_len = (uint32_t)ev->key_len;
        g_byte_array_append(req->keys, (const guint8 *)ev->key, (guint)ev->key_len);
    }
    g_array_append_val(req->events, de);
    return true;
}

static const char *door_reason(source_http *src, uint8_t verdict)
{
    switch (verdict) {
    case DOOR_NOT_OBJECT: return "event is not a JSON object";
    case DOOR_KEY_MISSING: return src->why_key_missing;
    case DOOR_KEY_NOT_STRING: return src->why_key_not_string;
    case DOOR_KEY_EMPTY: return src->why_key_empty;
    }
    return "rejected";
}

/* The checker's verdict on the event just walked: its problems, interned,
 * and its dead letter, kept until the body as a whole turned out to be
 * JSON. Returns door_event.refused. */
static uint32_t refuse(http_request *req, const uint8_t *raw, size_t len, uint32_t index)
{
    source_http *src = req->src;
    const tv_error *err = edge_problems(req->checker);
    GString *problems = g_string_new(NULL);
    edge_problems_json(problems, err);
    edge_refusal x = {
        .reason = err->reason,
        .field = err->field,
        .message = intern_reason(req, err->message),
        .value = intern_reason(req, err->value),
        .problems = intern_reason(req, problems->str),
    };
    g_string_free(problems, TRUE);
    if (!req->refusals)
        req->refusals = g_array_new(FALSE, FALSE, sizeof(edge_refusal));
    g_array_append_val(req->refusals, x);
    if (!src->edge_pass && err->reason != TV_R_INTERNAL)
        edge_dead_letter(src, req->checker, &req->dlq, raw, len, index, err);
    return req->refusals->len;
}

/* The schema's verdicts, recorded once the door passed the body. A refused
 * event is listed with its field, rule, value and every problem and, when
 * a stage reads 'invalid', becomes a dead letter there; it is not emitted.
 * Events the door refused are checked too: the schema's reason (field,
 * rule, value) says more than "missing key field". */
static void run_edge(http_request *req)
{
    source_http *src = req->src;
    for (uint32_t i = 0; i < req->n_events; i++) {
        door_event *de = &g_array_index(req->events, door_event, i);
        const edge_refusal *x = de->refused ? &g_array_index(req->refusals, edge_refusal, de->refused - 1) : NULL;
        bool internal = req->edge_down || (x && x->reason == TV_R_INTERNAL);
        if (!x && !internal)
            continue;
        if (!internal)
            edge_count(src, x->reason);
        if (src->edge_pass && !internal)
            continue; /* counted; emitted as it is */
        if (de->verdict != DOOR_PASS && internal)
            continue; /* refused anyway, by the door's own verdict */
        de->verdict = DOOR_SCHEMA;
        if (internal) { /* not the event's fault: worth a retry */
            record(req, i, ECF_ERR_NOMEM, x ? x->message : "out of memory");
            continue;
        }
        record(req, i, ECF_ERR_INVALID, x->message);
        event_result *r = &req->results[i];
        r->field = x->field;
        r->rule = tv_reason_name(x->reason);
        r->value = x->value;
        r->problems = x->problems;
    }
    edge_flush_dead_letters(src, req->dlq);
    req->dlq = NULL;
}

/* Scans the body; on success req->events lists every event. Answers (and
 * returns true) when the body cannot go on. */
static bool run_door(http_request *req, enum MHD_Result *rc)
{
    source_http *src = req->src;
    req->events = g_array_new(FALSE, FALSE, sizeof(door_event));
    req->keys = g_byte_array_new();
    jd_parser *p = http_parser_get(src);
    if (!p) {
        *rc = answer_request_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory", true);
        return true;
    }
    jd_members members = {.begin = edge_begin, .member = edge_member, .duplicates = true};
    if (src->schema) {
        req->checker = edge_get(src);
        req->edge_down = !req->checker;
        members.user = req->checker;
    }
    jd_error err;
    jd_status st = jd_scan(p, req->body.data, req->body.len, req->body.cap + JD_PADDING, req->layout,
                           src->cfg->key_field, req->checker ? &members : NULL, on_door_event, req, &err);
    http_parser_put(src, p);
    edge_put(src, req->checker);
    req->checker = NULL;
    if (st != JD_OK && req->dlq) { /* not JSON as a whole: no event was anything */
        ecf_batch_release(src->stage, req->dlq);
        req->dlq = NULL;
    }
    char msg[160];
    switch (st) {
    case JD_OK: return false;
    case JD_STOPPED:
        snprintf(msg, sizeof msg, "more than %" PRId64 " events in one request (max_events)", src->cfg->max_events);
        *rc = answer_request_error(req, MHD_HTTP_CONTENT_TOO_LARGE, msg, false);
        return true;
    case JD_EMPTY:
        *rc = answer_request_error(req, MHD_HTTP_BAD_REQUEST, "empty body: expected JSON", false);
        return true;
    case JD_MALFORMED:
    case JD_TOO_DEEP: {
        req->phase = PHASE_ANSWERED;
        observe_latency(req);
        GString *j = g_string_new(NULL);
        snprintf(msg, sizeof msg, "malformed JSON at byte %zu: %s", err.offset, err.message);
        g_string_append(j, "{\"error\":");
        json_string(j, msg);
        g_string_append_printf(j, ",\"offset\":%zu}", err.offset);
        *rc = send_answer(src, req->conn, MHD_HTTP_BAD_REQUEST, j, (answer_opts){0});
        return true;
    }
    case JD_NOMEM: *rc = answer_request_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory", true); return true;
    default: *rc = answer_request_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error", false); return true;
    }
}

/* ---------------------------------------------------------------- emit */

static const char *emit_failure_reason(ecf_status st)
{
    switch (st) {
    case ECF_ERR_BACKPRESSURE: return "backpressure: the pipeline is full, retry later";
    case ECF_ERR_STOPPED: return "the pipeline is shutting down";
    default: return ecf_status_str(st);
    }
}

/* Emits `batch`; on failure every event in it gets the emit's status (the
 * first verdict wins, so the "dropped" its tokens report when the batch goes
 * away does not hide why). ecf_try_emit() leaves the batch with the caller
 * only on backpressure; on any other failure the core has released it. */
static ecf_status flush_batch(http_request *req, ecf_batch *batch, GArray *idx)
{
    ecf_stage *stage = req->src->stage;
    ecf_status st = ecf_try_emit(stage, NULL, batch);
    if (st != ECF_OK) {
        g_mutex_lock(&req->lock);
        for (guint k = 0; k < idx->len; k++)
            record(req, g_array_index(idx, uint32_t, k), st, emit_failure_reason(st));
        g_mutex_unlock(&req->lock);
        if (st == ECF_ERR_BACKPRESSURE)
            ecf_batch_release(stage, batch);
    }
    return st;
}

/* Moves *i to the next event that passed the door; false past the last. */
static bool next_valid(const http_request *req, uint32_t *i)
{
    for (; *i < req->n_events; (*i)++)
        if (g_array_index(req->events, door_event, *i).verdict == DOOR_PASS)
            return true;
    return false;
}

/* Event i as a message with a token of its own; the caller releases the
 * token once the message is in a batch (which takes its own reference). */
static ecf_token *prepare(http_request *req, uint32_t i, ecf_message_init *m)
{
    ecf_token *tok = ecf_token_new(req->src->stage, on_settle, req, i);
    if (!tok) {
        record_locked(req, i, ECF_ERR_NOMEM, "out of memory");
        return NULL;
    }
    const door_event *de = &g_array_index(req->events, door_event, i);
    *m = (ecf_message_init){
        .payload = req->body.data + de->offset,
        .payload_len = de->length,
        .key = req->keys->data + de->key_off,
        .key_len = de->key_len,
        .origin = {.kind = ECF_ORIGIN_HTTP, .partition = -1, .offset = i},
        .token = tok,
    };
    return tok;
}

/* Whether adding event i to a batch went well; if not, its verdict says
 * why (its token then settles when the caller releases it). */
static bool add_or_record(http_request *req, uint32_t i, ecf_status st)
{
    if (st == ECF_OK)
        return true;
    record_locked(req, i, st, "could not add the event to a batch");
    return false;
}

/* Valid events from i on that will get no token: each gets `st`. */
static uint32_t refuse_rest(http_request *req, uint32_t i, ecf_status st)
{
    uint32_t n = 0;
    g_mutex_lock(&req->lock);
    for (; next_valid(req, &i); i++, n++)
        record(req, i, st, emit_failure_reason(st));
    g_mutex_unlock(&req->lock);
    return n;
}

/* The next `want` valid events from *i as one batch, emitted from this
 * thread. Events that never got a token are added to *unsent. */
static ecf_status emit_full_batch(http_request *req, uint32_t *i, uint32_t want, uint32_t *unsent)
{
    ecf_stage *stage = req->src->stage;
    ecf_batch *batch = ecf_batch_new(stage);
    if (!batch)
        return ECF_ERR_NOMEM;
    GArray *idx = g_array_sized_new(FALSE, FALSE, sizeof(uint32_t), want);
    for (uint32_t taken = 0; taken < want && next_valid(req, i); (*i)++, taken++) {
        ecf_message_init m;
        ecf_token *tok = prepare(req, *i, &m);
        if (!tok) {
            (*unsent)++;
            continue;
        }
        if (add_or_record(req, *i, ecf_batch_add(stage, batch, &m)))
            g_array_append_val(idx, *i);
        ecf_token_release(stage, tok);
    }
    ecf_status st = flush_batch(req, batch, idx);
    g_array_free(idx, TRUE);
    return st;
}

/* The valid events from i on join the batch small requests share. */
static uint32_t put_in_outbox(http_request *req, uint32_t i)
{
    http_outbox *o = &req->src->outbox;
    ecf_status st = outbox_put_begin(o);
    if (st != ECF_OK)
        return refuse_rest(req, i, st);
    uint32_t unsent = 0;
    for (; next_valid(req, &i); i++) {
        ecf_message_init m;
        ecf_token *tok = prepare(req, i, &m);
        if (!tok) {
            unsent++;
            continue;
        }
        add_or_record(req, i, outbox_put(o, &m));
        ecf_token_release(req->src->stage, tok);
    }
    outbox_put_end(o);
    return unsent;
}

/* One token per event, so an array gets one verdict per event. Whole
 * batches go out from this thread; the rest shares a batch with other
 * requests (outbox.c). Returns the number of events that never got a
 * token (they hold `pending` too). */
static uint32_t emit_events(http_request *req, uint32_t valid)
{
    const uint32_t per_batch = (uint32_t)req->src->cfg->batch_max_events;
    uint32_t i = 0, unsent = 0;
    for (; valid >= per_batch; valid -= per_batch) {
        ecf_status st = emit_full_batch(req, &i, per_batch, &unsent);
        if (st != ECF_OK)
            return unsent + refuse_rest(req, i, st);
    }
    if (valid > 0)
        unsent += put_in_outbox(req, i);
    return unsent;
}

/* ---------------------------------------------------------------- phases */

static void waiting_remove(source_http *src, http_request *req)
{
    g_mutex_lock(&src->lock);
    bool found = req->in_waiting;
    if (found)
        g_queue_unlink(&src->waiting, &req->wait_link);
    req->in_waiting = false;
    g_mutex_unlock(&src->lock);
    if (found)
        req_unref(req);
}

static enum MHD_Result on_upload_done(http_request *req)
{
    source_http *src = req->src;
    if (req->fail_status)
        return answer_request_error(req, req->fail_status, req->fail_msg,
                                    req->fail_status == MHD_HTTP_SERVICE_UNAVAILABLE);
    switch (body_finish(&req->body)) {
    case BODY_OK: break;
    case BODY_BAD_GZIP: return answer_request_error(req, MHD_HTTP_BAD_REQUEST, "truncated gzip data", false);
    default: return answer_request_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "server busy", true);
    }
    enum MHD_Result rc;
    if (run_door(req, &rc))
        return rc;

    req->n_events = req->events->len;
    req->results = g_new0(event_result, MAX(req->n_events, 1));
    if (src->schema)
        run_edge(req);
    uint32_t valid = 0;
    for (uint32_t i = 0; i < req->n_events; i++) {
        const door_event *de = &g_array_index(req->events, door_event, i);
        if (de->verdict == DOOR_PASS)
            valid++;
        else
            record(req, i, ECF_ERR_INVALID, door_reason(src, de->verdict)); /* first verdict wins */
    }
    if (valid == 0)
        return answer_results(req);

    /* Every token to be made counts now, plus one for this handler, so the
     * count cannot reach zero while batches are still being emitted. */
    g_atomic_int_inc(&req->refs); /* the unsettled-tokens reference */
    g_mutex_lock(&req->lock);
    req->pending = valid + 1;
    g_mutex_unlock(&req->lock);
    uint32_t unsent = emit_events(req, valid);
    req_drop_scratch(req); /* batches copied the bytes: free the body now */

    /* src->lock first: stop() must see this request in `waiting` or know it
     * was never suspended. */
    g_mutex_lock(&src->lock);
    g_mutex_lock(&req->lock);
    req->pending -= unsent + 1;
    bool done = req->pending == 0;
    bool wait = !done && !src->tearing_down;
    if (wait) {
        req->phase = PHASE_WAITING;
        req->suspended = true;
        req->deadline_us = ecf_monotonic_us(src->stage) + src->cfg->ack_timeout_us;
        http_conn_state(src, req->conn, CONN_WAITING);
        MHD_suspend_connection(req->conn);
        g_atomic_int_inc(&req->refs); /* the waiting list's reference */
        req->wait_link.data = req;
        g_queue_push_tail_link(&src->waiting, &req->wait_link);
        req->in_waiting = true;
    } else if (!done) {
        req->stopped = true; /* answered now; its tokens settle later, unheard */
    }
    g_mutex_unlock(&req->lock);
    g_mutex_unlock(&src->lock);
    if (done)
        req_unref(req); /* no token left: drop the unsettled-tokens reference */
    return wait ? MHD_YES : answer_results(req);
}

static void fail_upload(http_request *req, unsigned status, const char *msg)
{
    req->fail_status = status;
    req->fail_msg = msg;
    body_release(&req->body); /* keep reading (and dropping) what the client sends */
}

static enum MHD_Result on_upload_chunk(http_request *req, const char *data, size_t n)
{
    source_http *src = req->src;
    const http_config *cfg = src->cfg;
    req->wire_bytes += n;
    ecf_metric_add(src->stage, src->m_bytes, (double)n);
    if (req->fail_status) {
        /* Draining a rejected body costs bandwidth, not memory; past twice
         * the limit the client is not listening: hang up. */
        return req->wire_bytes > 2 * (size_t)cfg->max_body_bytes + (1u << 20) ? MHD_NO : MHD_YES;
    }
    if (cfg->request_timeout_us > 0 && ecf_monotonic_us(src->stage) - req->started_us > cfg->request_timeout_us) {
        ecf_log(src->stage, ECF_LOG_DEBUG, "closing a connection slower than request_timeout");
        return MHD_NO;
    }
    if (req->wire_bytes > (size_t)cfg->max_body_bytes) {
        fail_upload(req, MHD_HTTP_CONTENT_TOO_LARGE, src->why_too_large);
        return MHD_YES;
    }
    switch (body_append(&req->body, data, n)) {
    case BODY_OK: break;
    case BODY_TOO_LARGE: fail_upload(req, MHD_HTTP_CONTENT_TOO_LARGE, src->why_too_large); break;
    case BODY_BAD_GZIP: fail_upload(req, MHD_HTTP_BAD_REQUEST, "invalid gzip data"); break;
    case BODY_BUSY:
        fail_upload(req, MHD_HTTP_SERVICE_UNAVAILABLE,
                    "server busy: too many request bytes in flight (max_inflight_bytes)");
        break;
    case BODY_NOMEM: fail_upload(req, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory"); break;
    }
    return MHD_YES;
}

static enum MHD_Result on_resumed(http_request *req)
{
    waiting_remove(req->src, req);
    return answer_results(req);
}

/* ---------------------------------------------------------------- headers */

/* Media type before any ';', compared without case; charset, if given,
 * must be UTF-8 (RFC 8259 allows nothing else). NULL type = JSON. */
static bool parse_content_type(const char *ct, jd_layout *layout)
{
    *layout = JD_LAYOUT_JSON;
    if (!ct || !*ct)
        return true;
    const char *semi = strchr(ct, ';');
    size_t n = semi ? (size_t)(semi - ct) : strlen(ct);
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    char *type = g_ascii_strdown(ct, (gssize)n);
    bool ok = true;
    if (strcmp(type, "application/json") == 0)
        *layout = JD_LAYOUT_JSON;
    else if (strcmp(type, "application/x-ndjson") == 0 || strcmp(type, "application/ndjson") == 0)
        *layout = JD_LAYOUT_NDJSON;
    else
        ok = false;
    g_free(type);
    if (!ok || !semi)
        return ok;
    char *params = g_ascii_strdown(semi + 1, -1);
    char *cs = strstr(params, "charset=");
    if (cs) {
        cs += 8;
        if (*cs == '"')
            cs++;
        ok = g_str_has_prefix(cs, "utf-8") || g_str_has_prefix(cs, "utf8");
    }
    g_free(params);
    return ok;
}

static bool parse_gzip(const char *ce, bool *gzip)
{
    *gzip = false;
    if (!ce || !*ce || g_ascii_strcasecmp(ce, "identity") == 0)
        return true;
    if (g_ascii_strcasecmp(ce, "gzip") == 0 || g_ascii_strcasecmp(ce, "x-gzip") == 0) {
        *gzip = true;
        return true;
    }
    return false;
}

static enum MHD_Result begin_post(source_http *src, struct MHD_Connection *conn, void **con_cls)
{
    const http_config *cfg = src->cfg;
    answer_opts early = {.close = true}; /* the body stays unread */
    if (atomic_load(&src->draining)) {
        early.retry_after = true;
        return answer_error(src, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down", early);
    }
    if (!api_keys_check(src->keys, api_key_presented(conn)))
        return answer_error(src, conn, MHD_HTTP_UNAUTHORIZED, "unauthorized", early);

    jd_layout layout;
    if (!parse_content_type(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE), &layout))
        return answer_error(src, conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                            "unsupported Content-Type: use application/json or "
                            "application/x-ndjson (UTF-8)",
                            early);
    bool gzip;
    if (!parse_gzip(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING), &gzip))
        return answer_error(src, conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                            "unsupported Content-Encoding: use gzip or none", early);

    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    guint64 declared = cl ? g_ascii_strtoull(cl, NULL, 10) : 0;
    if (declared > (guint64)cfg->max_body_bytes)
        return answer_error(src, conn, MHD_HTTP_CONTENT_TOO_LARGE, src->why_too_large, early);

    http_request *req = req_new(src, conn);
    req->layout = layout;
    body_init(&req->body, (size_t)cfg->max_body_bytes, &src->budget, gzip, (size_t)declared);
    atomic_fetch_add(&src->active, 1);
    *con_cls = req;
    return MHD_YES;
}

static bool is_get(const char *method)
{
    return strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

/* Requests answered without reading a body are answered on the second call
 * (libmicrohttpd closes the connection when the answer is queued in the
 * first), unless they do carry a body we would otherwise have to drain. */
enum { ROUTE_HEALTH, ROUTE_READY, ROUTE_NOT_FOUND, ROUTE_NOT_ALLOWED };

static int route_of(source_http *src, void *con_cls)
{
    uintptr_t p = (uintptr_t)con_cls, base = (uintptr_t)src->route_tags;
    if (p < base || p >= base + sizeof src->route_tags)
        return -1;
    return (int)(p - base);
}

static bool has_body(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    return te || (cl && g_ascii_strtoull(cl, NULL, 10) > 0);
}

static enum MHD_Result answer_route(source_http *src, struct MHD_Connection *conn, int route, const char *url,
                                    bool close)
{
    answer_opts o = {.close = close};
    switch (route) {
    case ROUTE_HEALTH: return send_answer(src, conn, MHD_HTTP_OK, g_string_new("{\"status\":\"ok\"}"), o);
    case ROUTE_READY: {
        bool ready = !atomic_load(&src->draining) && ecf_pipeline_ready(src->stage);
        return send_answer(src, conn, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                           g_string_new(ready ? "{\"ready\":true}" : "{\"ready\":false}"), o);
    }
    case ROUTE_NOT_ALLOWED:
        o.allow = strcmp(url, src->cfg->path) == 0 ? "POST" : "GET, HEAD";
        return answer_error(src, conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", o);
    default: return answer_error(src, conn, MHD_HTTP_NOT_FOUND, "not found", o);
    }
}

static enum MHD_Result on_headers(source_http *src, struct MHD_Connection *conn, const char *url, const char *method,
                                  void **con_cls)
{
    int route;
    if (strcmp(url, src->cfg->path) == 0) {
        if (strcmp(method, MHD_HTTP_METHOD_POST) == 0)
            return begin_post(src, conn, con_cls);
        route = ROUTE_NOT_ALLOWED;
    } else if (strcmp(url, "/health") == 0 || strcmp(url, "/ready") == 0) {
        route = !is_get(method) ? ROUTE_NOT_ALLOWED : url[1] == 'h' ? ROUTE_HEALTH : ROUTE_READY;
    } else {
        route = ROUTE_NOT_FOUND;
    }
    if (has_body(conn))
        return answer_route(src, conn, route, url, true);
    *con_cls = &src->route_tags[route];
    return MHD_YES;
}

/* ---------------------------------------------------------------- MHD callbacks */

enum MHD_Result http_on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    source_http *src = cls;
    if (!*con_cls) {
        http_conn_state(src, conn, CONN_BODY);
        return on_headers(src, conn, url, method, con_cls);
    }
    int route = route_of(src, *con_cls);
    if (route >= 0) {
        *upload_data_size = 0;
        return answer_route(src, conn, route, url, false);
    }
    http_request *req = *con_cls;
    switch (req->phase) {
    case PHASE_UPLOAD:
        if (*upload_data_size) {
            size_t n = *upload_data_size;
            *upload_data_size = 0;
            return on_upload_chunk(req, upload_data, n);
        }
        return on_upload_done(req);
    case PHASE_WAITING: return on_resumed(req);
    case PHASE_ANSWERED: break;
    }
    return MHD_NO;
}

void http_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    source_http *src = cls;
    http_request *req = *con_cls;
    *con_cls = NULL;
    http_conn_state(src, conn, CONN_HEADERS); /* a keep-alive connection's next request */
    if (!req || route_of(src, req) >= 0)
        return;
    if (req->phase != PHASE_ANSWERED)
        observe_latency(req);
    waiting_remove(src, req);
    req_drop_scratch(req);
    atomic_fetch_sub(&src->active, 1);
    req_unref(req); /* the connection's reference */
}

guint http_expire_waiting(source_http *src, int64_t now_us, bool all)
{
    GPtrArray *due = g_ptr_array_new();
    g_mutex_lock(&src->lock);
    for (GList *l = src->waiting.head; l; l = l->next) {
        http_request *req = l->data;
        if (all || req->deadline_us <= now_us) {
            g_atomic_int_inc(&req->refs);
            g_ptr_array_add(due, req);
        }
    }
    g_mutex_unlock(&src->lock);

    guint resumed = 0;
    for (guint i = 0; i < due->len; i++) {
        http_request *req = due->pdata[i];
        g_mutex_lock(&req->lock);
        if (req->suspended) {
            req->suspended = false;
            if (all)
                req->stopped = true;
            else
                req->timed_out = true;
            MHD_resume_connection(req->conn);
            resumed++;
        }
        g_mutex_unlock(&req->lock);
        req_unref(req);
    }
    g_ptr_array_free(due, TRUE);
    return resumed;
}

void http_tear_down(source_http *src)
{
    g_mutex_lock(&src->lock);
    src->tearing_down = true;
    g_mutex_unlock(&src->lock);
    http_expire_waiting(src, 0, true);
}
