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
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct MHD_Response *ok;
static volatile sig_atomic_t quit;
static void on_signal(int sig) { (void)sig; quit = 1; }

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **state)
{
    (void)cls; (void)url; (void)method; (void)version; (void)upload;
    if (!*state) {                  /* headers: answer after the body */
        *state = (void *)1;
        return MHD_YES;
    }
    if (*upload_size) {             /* a piece of the body: discard it */
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
    unsigned port = (unsigned)atoi(argv[1]);
    long threads = argc > 2 ? atol(argv[2]) : 0;
    if (threads <= 0)
        threads = sysconf(_SC_NPROCESSORS_ONLN);
    static char body[] = "{\"accepted\":1}\n";
    ok = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(ok, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)4096, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
        threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (unsigned)threads,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "discard_server: cannot listen on port %u\n", port);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "discard_server: listening on port %u (%ld threads)\n", port, threads);
    while (!quit)
        pause();
    MHD_stop_daemon(d);
    MHD_destroy_response(ok);
    return 0;
}
