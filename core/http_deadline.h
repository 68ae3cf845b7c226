/*
 * Request deadlines for the core's libmicrohttpd servers (the metrics
 * endpoint). libmicrohttpd's connection timeout only ends idle connections:
 * a client that trickles a header byte every few seconds is never idle and
 * holds one of the few connection slots forever, so enough of them stop
 * every scrape. Here each connection must finish each request (headers read
 * and answer sent) within `limit_us` of its start, or of the previous answer
 * on a keep-alive connection. A thread sweeps the watched connections and
 * shuts down the socket of one past its deadline; libmicrohttpd then sees a
 * hang-up and closes it. (source-http has its own per-phase version in
 * plugins/source-http/deadline.c: plugins cannot link the core.)
 */
#pragma once
#include <glib.h>
#include <microhttpd.h>

typedef struct ecf_http_deadline ecf_http_deadline;

/* Starts the sweep thread, checking every `sweep_us`. */
ecf_http_deadline *ecf_http_deadline_new(gint64 limit_us, gint64 sweep_us);
/* Stops the sweep; call after MHD_stop_daemon (no connection is left). */
void ecf_http_deadline_free(ecf_http_deadline *d);

/* Pass with the deadline as closure: MHD_OPTION_NOTIFY_CONNECTION and
 * MHD_OPTION_NOTIFY_COMPLETED. */
void ecf_http_deadline_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                                     enum MHD_ConnectionNotificationCode toe);
void ecf_http_deadline_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                                    enum MHD_RequestTerminationCode toe);
