/*
 * The HTTP side of bench/ingest's reference servers (discard_server.c, durable_server.c):
 * one place, so both run libmicrohttpd exactly as source-http does (internal polling
 * threads, epoll, one event loop per worker, suspend/resume allowed) and their numbers
 * differ only by what happens to the body.
 */
#ifndef REFERENCE_HTTP_H
#define REFERENCE_HTTP_H

#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* THREADS as given on the command line; 0 or none = one per CPU (source-http's default). */
static long reference_threads(const char *arg)
{
    long threads = arg ? atol(arg) : 0;
    return threads > 0 ? threads : sysconf(_SC_NPROCESSORS_ONLN);
}

/* A JSON answer built once and shared by every request (text must outlive it). */
static struct MHD_Response *reference_answer(const char *text)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    return r;
}

/* NULL (and a message on stderr) if the port cannot be listened on. */
static struct MHD_Daemon *reference_daemon(const char *name, unsigned port, long threads,
                                           MHD_AccessHandlerCallback on_request,
                                           MHD_RequestCompletedCallback on_completed)
{
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d =
        MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
                         NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)4096, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                         threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (unsigned)threads, MHD_OPTION_END);
    if (!d)
        fprintf(stderr, "%s: cannot listen on port %u\n", name, port);
    else
        fprintf(stderr, "%s: listening on port %u (%ld threads)\n", name, port, threads);
    return d;
}

static volatile sig_atomic_t reference_stop;
static void reference_on_signal(int sig)
{
    (void)sig;
    reference_stop = 1;
}

/* Returns once SIGINT or SIGTERM came. Polls the flag instead of pause(): the signal may
 * land on another thread (a worker, durable_server's poller), or just before pause(). */
static void reference_wait_for_signal(void)
{
    signal(SIGINT, reference_on_signal);
    signal(SIGTERM, reference_on_signal);
    while (!reference_stop)
        nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
}

#endif
