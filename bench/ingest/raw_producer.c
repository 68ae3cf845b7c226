/*
 * raw_producer: the Kafka ceiling for bench/ingest. librdkafka alone, configured the way
 * sink-kafka configures it (plugins/sink-kafka/kafka_conf.c): idempotent, acks=all,
 * murmur2_random partitioner, lz4, linger 5 ms, batch.size 1 MiB, batch.num.messages
 * 10000, a 100000-record / 64 MiB producer queue, reconnect backoff 1 s, records copied
 * (RD_KAFKA_MSG_F_COPY) and keyed by session_id. It produces the events of POOL round
 * and round as fast as the producer queue takes them for SECONDS, then flushes, and
 * counts delivery reports: only a delivered record counts.
 *
 * With INFLIGHT, it is instead the ceiling for one-event requests answered once durable:
 * INFLIGHT records are outstanding at any time, and each delivery report produces the
 * next (a closed loop, like INFLIGHT HTTP clients that each wait for their answer), with
 * LINGER_MS (default 1, sink-kafka's default) as the linger.
 *
 *   gcc -O2 -o raw_producer raw_producer.c $(pkg-config --cflags --libs rdkafka)
 *   ./raw_producer BOOTSTRAP TOPIC POOL.ndjson SECONDS [INFLIGHT [LINGER_MS]]
 *
 * Prints one line:
 *   RESULT delivered=D failed=F produce_s=P total_s=T events_per_s=E cpu_s=C maxrss_kb=R
 *          p50_us=.. p99_us=..
 * events_per_s = delivered / total_s (first produce to last delivery report); p50/p99 are
 * produce -> delivery report (librdkafka's message latency), mostly time in the full queue.
 */
#define _GNU_SOURCE
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct event {
    char *val;
    size_t len;
    const char *key;
    size_t key_len;
} event;

static uint64_t delivered, failed;
static rd_kafka_resp_err_t last_err;

/* Closed-loop mode: each delivery report produces the next record until `closed_stop`. */
static struct {
    rd_kafka_topic_t *rkt;
    const struct event *ev;
    size_t n_events;
    uint64_t next;
    double stop;
    int on;
} loop;
/* Produce -> delivery report latency, 100 µs buckets up to 30 s. */
#define LAT_BUCKETS 300000
static uint32_t lat[LAT_BUCKETS];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_s(void);
static rd_kafka_resp_err_t produce_event(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const event *e);

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)opaque;
    if (loop.on && now_s() < loop.stop && produce_event(rk, loop.rkt, &loop.ev[loop.next++ % loop.n_events]) != 0)
        last_err = RD_KAFKA_RESP_ERR__QUEUE_FULL;
    if (m->err) {
        failed++;
        last_err = m->err;
    } else {
        delivered++;
        int64_t us = rd_kafka_message_latency(m);
        if (us >= 0)
            lat[us / 100 < LAT_BUCKETS ? us / 100 : LAT_BUCKETS - 1]++;
    }
}

static double lat_pct_us(double pct)
{
    uint64_t want = (uint64_t)((double)delivered * pct / 100.0), seen = 0;
    for (size_t i = 0; i < LAT_BUCKETS; i++)
        if ((seen += lat[i]) > want)
            return (double)i * 100 + 50;
    return 0;
}

static rd_kafka_resp_err_t produce_event(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const event *e)
{
    return rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_VALUE(e->val, e->len), RD_KAFKA_V_KEY(e->key, e->key_len), RD_KAFKA_V_END);
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "raw_producer: %s=%s: %s\n", k, v, err);
        exit(2);
    }
}

/* Loads POOL: one event per line; the key is the value of "session_id". */
static event *load_pool(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(2);
    }
    size_t cap = 1024, len = 0, lcap = 0;
    event *ev = malloc(cap * sizeof *ev);
    char *line = NULL;
    ssize_t r;
    while ((r = getline(&line, &lcap, f)) > 0) {
        while (r && (line[r - 1] == '\n' || line[r - 1] == '\r'))
            line[--r] = '\0';
        const char *k = strstr(line, "\"session_id\":\"");
        if (!r || !k)
            continue;
        if (len == cap)
            ev = realloc(ev, (cap *= 2) * sizeof *ev);
        ev[len].val = strdup(line);
        ev[len].len = (size_t)r;
        ev[len].key = ev[len].val + (k - line) + 14;
        ev[len].key_len = strcspn(ev[len].key, "\"");
        len++;
    }
    free(line);
    fclose(f);
    if (!len) {
        fprintf(stderr, "raw_producer: no events with a session_id in %s\n", path);
        exit(2);
    }
    *n = len;
    return ev;
}

int main(int argc, char **argv)
{
    if (argc < 5 || argc > 7) {
        fprintf(stderr, "usage: %s BOOTSTRAP TOPIC POOL.ndjson SECONDS [INFLIGHT [LINGER_MS]]\n", argv[0]);
        return 2;
    }
    size_t n_events;
    event *ev = load_pool(argv[3], &n_events);
    double seconds = atof(argv[4]);
    int inflight = argc > 5 ? atoi(argv[5]) : 0;

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", argv[1]);
    set(conf, "enable.idempotence", "true");
    set(conf, "acks", "all");
    set(conf, "partitioner", "murmur2_random");
    set(conf, "client.id", "ecflow-bench-raw-producer");
    set(conf, "compression.codec", "lz4");
    set(conf, "linger.ms", inflight ? (argc > 6 ? argv[6] : "1") : "5");
    set(conf, "batch.size", "1048576");
    set(conf, "batch.num.messages", "10000");
    set(conf, "message.timeout.ms", "10000");
    set(conf, "queue.buffering.max.messages", "100000");
    set(conf, "queue.buffering.max.kbytes", "65536");
    set(conf, "reconnect.backoff.max.ms", "1000");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "raw_producer: %s\n", err);
        return 1;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, argv[2], NULL);

    /* Connected and the topic known before the clock starts, as the sink is at start. */
    const struct rd_kafka_metadata *md;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "raw_producer: no metadata from %s\n", argv[1]);
        return 1;
    }
    rd_kafka_metadata_destroy(md);
    /* One record through first: the idempotent producer has its PID before the clock. */
    rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                      RD_KAFKA_V_VALUE(ev[0].val, ev[0].len), RD_KAFKA_V_KEY(ev[0].key, ev[0].key_len), RD_KAFKA_V_END);
    rd_kafka_flush(rk, 10000);
    if (delivered != 1) {
        fprintf(stderr, "raw_producer: the first record was not delivered\n");
        return 1;
    }
    delivered = 0;
    memset(lat, 0, sizeof lat);

    double t0 = now_s(), stop = t0 + seconds;
    uint64_t i = 0;
    if (inflight > 0) {
        loop.rkt = rkt;
        loop.ev = ev;
        loop.n_events = n_events;
        loop.next = (uint64_t)inflight;
        loop.stop = stop;
        loop.on = 1;
        for (int k = 0; k < inflight; k++)
            if (produce_event(rk, rkt, &ev[(size_t)k % n_events]) != 0) {
                fprintf(stderr, "raw_producer: cannot produce %d records at once\n", inflight);
                return 1;
            }
        i = 1024; /* skips the open-loop producer below */
    }
    while (!inflight && ((i & 1023) || now_s() < stop)) {
        rd_kafka_resp_err_t rc = produce_event(rk, rkt, &ev[i % n_events]);
        if (rc == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rk, 1); /* room comes with delivery reports */
            continue;
        }
        if (rc) {
            fprintf(stderr, "raw_producer: produce: %s\n", rd_kafka_err2str(rc));
            return 1;
        }
        i++;
        if (!(i & 255))
            rd_kafka_poll(rk, 0);
    }
    double t_produce = now_s() - t0;
    while (rd_kafka_outq_len(rk) > 0 && now_s() < stop + 30)
        rd_kafka_poll(rk, 10);
    double total = now_s() - t0;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu =
        (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("RESULT delivered=%llu failed=%llu produce_s=%.3f total_s=%.3f events_per_s=%.0f "
           "cpu_s=%.3f maxrss_kb=%ld p50_us=%.0f p99_us=%.0f\n",
           (unsigned long long)delivered, (unsigned long long)failed, t_produce, total, (double)delivered / total, cpu,
           ru.ru_maxrss, lat_pct_us(50), lat_pct_us(99));
    if (failed)
        fprintf(stderr, "raw_producer: %llu not delivered, last: %s\n", (unsigned long long)failed,
                rd_kafka_err2str(last_err));
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return failed ? 1 : 0;
}
