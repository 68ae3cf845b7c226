/*
 * discard_server: the HTTP ceiling for bench/ingest. libmicrohttpd with the threading
 * model source-http uses (internal polling threads, epoll, one event loop per worker,
 * a pool of THREADS workers), reading every POST body and throwing it away, answering
 * 200 {"accepted":1}. No parsing, no Kafka, nothing else: what the HTTP part costs.
 *
 *   gcc -O2 -o discard_server discard_server.c $(pkg-config --cflags --libs libmicrohttpd)
 *   ./discard_server PORT [THREADS]      # THREADS 0 = one per CPU (source-http's default)
 * Runs until SIGINT/SIGTERM.
 */
#include "reference_http.h"

static struct MHD_Response *ok;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload;
    if (!*state) { /* headers: answer after the body */
        *state = (void *)1;
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body: discard it */
        *upload_size = 0;
        return MHD_YES;
    }
    return MHD_queue_response(c, MHD_HTTP_OK, ok);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [THREADS]\n", argv[0]);
        return 2;
    }
    ok = reference_answer("{\"accepted\":1}\n");
    struct MHD_Daemon *d = reference_daemon("discard_server", (unsigned)atoi(argv[1]),
                                            reference_threads(argc > 2 ? argv[2] : NULL), on_request, NULL);
    if (!d)
        return 1;
    reference_wait_for_signal();
    MHD_stop_daemon(d);
    MHD_destroy_response(ok);
    return 0;
}
