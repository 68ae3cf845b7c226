/*
 * durable_server: the ceiling for one-event requests answered once durable, for bench/ingest.
 * discard_server's libmicrohttpd (source-http's threading model) plus one librdkafka producer
 * with sink-kafka's settings: every POST body becomes one record, produced from the HTTP
 * worker that read it, and the request is answered 200 when its delivery report says the
 * broker has it (503 if it says otherwise). Nothing else: no JSON parsing (the key is found
 * with memmem), no validation, no pipeline, no batching beyond librdkafka's own. What any
 * server on this stack pays to answer only once Kafka has the event.
 *
 *   gcc -O2 -o durable_server durable_server.c \
 *       $(pkg-config --cflags --libs libmicrohttpd rdkafka) -lpthread
 *   ./durable_server PORT BOOTSTRAP TOPIC LINGER_MS [THREADS]   # THREADS 0 = one per CPU
 * Runs until SIGINT/SIGTERM, then waits for the reports still outstanding.
 */
#define _GNU_SOURCE
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "reference_http.h"

#define MAX_BODY (1024 * 1024)
#define KEY_FIELD "\"session_id\":\""

enum { WAITING, DURABLE, FAILED };

/* One-event bodies (~250 bytes) fit `small`: no allocation but the request's own. */
typedef struct {
    struct MHD_Connection *conn;
    char *body;
    size_t len, cap;
    _Atomic int outcome;
    char small[1024];
} request;

static rd_kafka_t *rk;
static rd_kafka_topic_t *rkt;
static struct MHD_Response *ok, *unavailable;
static atomic_bool quit;

/* Runs on the poller thread: the request stays suspended until this. */
static void on_report(rd_kafka_t *k, const rd_kafka_message_t *m, void *opaque)
{
    (void)k;
    (void)opaque;
    request *r = m->_private;
    atomic_store(&r->outcome, m->err ? FAILED : DURABLE);
    MHD_resume_connection(r->conn);
}

static void *poller(void *arg)
{
    (void)arg;
    while (!quit)
        rd_kafka_poll(rk, 100);
    return NULL;
}

static void key_of(const request *r, const char **key, size_t *key_len)
{
    const char *k = memmem(r->body, r->len, KEY_FIELD, sizeof KEY_FIELD - 1);
    *key = NULL;
    *key_len = 0;
    if (!k)
        return;
    k += sizeof KEY_FIELD - 1;
    const char *end = memchr(k, '"', (size_t)(r->body + r->len - k));
    if (end) {
        *key = k;
        *key_len = (size_t)(end - k);
    }
}

static bool grow(request *r, size_t need)
{
    size_t cap = need > 2 * r->cap ? need : 2 * r->cap;
    char *body = r->body == r->small ? malloc(cap) : realloc(r->body, cap);
    if (!body)
        return false;
    if (r->body == r->small)
        memcpy(body, r->small, r->len);
    r->body = body;
    r->cap = cap;
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    request *r = *state;
    if (!r) { /* headers: answer after the body */
        r = malloc(sizeof *r);
        if (!r)
            return MHD_NO;
        r->conn = c;
        r->body = r->small;
        r->len = 0;
        r->cap = sizeof r->small;
        atomic_init(&r->outcome, WAITING);
        *state = r;
        return MHD_YES;
    }
    int outcome = atomic_load(&r->outcome);
    if (outcome != WAITING) /* resumed by its report */
        return MHD_queue_response(c, outcome == DURABLE ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                                  outcome == DURABLE ? ok : unavailable);
    if (*upload_size) {
        /* Larger than any benchmark body: hang up. */
        if (r->len + *upload_size > MAX_BODY)
            return MHD_NO;
        if (r->len + *upload_size > r->cap && !grow(r, r->len + *upload_size))
            return MHD_NO;
        memcpy(r->body + r->len, upload, *upload_size);
        r->len += *upload_size;
        *upload_size = 0;
        return MHD_YES;
    }
    const char *key;
    size_t key_len;
    key_of(r, &key, &key_len);
    /* Suspended before produce: the report may come before this handler returns. */
    MHD_suspend_connection(c);
    if (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, r->body, r->len, key, key_len, r) != 0) {
        atomic_store(&r->outcome, FAILED);
        MHD_resume_connection(c);
    }
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    request *r = *state;
    if (r && r->body != r->small)
        free(r->body);
    free(r);
    *state = NULL;
}

static void set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char err[512];
    if (rd_kafka_conf_set(conf, name, value, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "durable_server: %s\n", err);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s PORT BOOTSTRAP TOPIC LINGER_MS [THREADS]\n", argv[0]);
        return 2;
    }
    /* sink-kafka's producer settings (plugins/sink-kafka/kafka_conf.c). */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", argv[2]);
    set(conf, "enable.idempotence", "true");
    set(conf, "acks", "all");
    set(conf, "compression.codec", "lz4");
    set(conf, "linger.ms", argv[4]);
    set(conf, "partitioner", "murmur2_random");
    set(conf, "message.timeout.ms", "20000");
    rd_kafka_conf_set_dr_msg_cb(conf, on_report);
    char err[512];
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "durable_server: %s\n", err);
        return 1;
    }
    rkt = rd_kafka_topic_new(rk, argv[3], NULL);
    pthread_t poll_thread;
    pthread_create(&poll_thread, NULL, poller, NULL);

    ok = reference_answer("{\"accepted\":1}\n");
    unavailable = reference_answer("{\"error\":\"not durable\"}\n");
    struct MHD_Daemon *d = reference_daemon("durable_server", (unsigned)atoi(argv[1]),
                                            reference_threads(argc > 5 ? argv[5] : NULL), on_request, on_completed);
    if (!d)
        return 1;
    reference_wait_for_signal();

    /* Every suspended request is resumed by its report before the daemon may stop. */
    rd_kafka_flush(rk, 30000);
    quit = true;
    pthread_join(poll_thread, NULL);
    rd_kafka_poll(rk, 0);
    MHD_stop_daemon(d);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    MHD_destroy_response(ok);
    MHD_destroy_response(unavailable);
    return 0;
}
