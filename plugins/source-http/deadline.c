/*
 * Connection deadlines. libmicrohttpd's connection_timeout only ends idle
 * connections: a client that sends one header line (or one body byte) every
 * few seconds holds its slot forever. Every connection is watched from its
 * start: its headers must end within header_timeout (counted again from each
 * answer on a keep-alive connection), its body within request_timeout; a
 * request waiting for its acks is ended by ack_timeout instead. The stage
 * thread sweeps the watch list and shuts down the socket of a connection
 * past its deadline, which libmicrohttpd then closes as a hang-up.
 */
#include "source_http.h"

#include <sys/socket.h>

struct conn_watch {
    GList link; /* in src->conns */
    MHD_socket fd;
    _Atomic int state;        /* conn_state */
    _Atomic int64_t since_us; /* when the state began */
};

static void set_state(source_http *src, conn_watch *w, conn_state st)
{
    atomic_store(&w->since_us, ecf_monotonic_us(src->stage));
    atomic_store(&w->state, (int)st);
}

void http_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe)
{
    source_http *src = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_watch *w = g_new0(conn_watch, 1);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        w->fd = ci ? ci->connect_fd : MHD_INVALID_SOCKET;
        w->link.data = w;
        set_state(src, w, CONN_HEADERS);
        g_mutex_lock(&src->conns_lock);
        g_queue_push_tail_link(&src->conns, &w->link);
        g_mutex_unlock(&src->conns_lock);
        *socket_context = w;
        return;
    }
    conn_watch *w = *socket_context;
    if (!w)
        return;
    /* Under the lock: a sweep never shuts down a socket libmicrohttpd has
     * closed (and the kernel may have handed to someone else). */
    g_mutex_lock(&src->conns_lock);
    g_queue_unlink(&src->conns, &w->link);
    g_mutex_unlock(&src->conns_lock);
    g_free(w);
    *socket_context = NULL;
}

void http_conn_state(source_http *src, struct MHD_Connection *conn, conn_state st)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context)
        set_state(src, ci->socket_context, st);
}

guint http_sweep_connections(source_http *src, int64_t now_us)
{
    const http_config *cfg = src->cfg;
    guint cut = 0;
    g_mutex_lock(&src->conns_lock);
    for (GList *l = src->conns.head; l; l = l->next) {
        conn_watch *w = l->data;
        int st = atomic_load(&w->state);
        int64_t limit = st == CONN_HEADERS ? cfg->header_timeout_us : st == CONN_BODY ? cfg->request_timeout_us : 0;
        if (limit <= 0 || now_us - atomic_load(&w->since_us) <= limit || w->fd == MHD_INVALID_SOCKET)
            continue;
        shutdown(w->fd, SHUT_RDWR);
        atomic_store(&w->state, (int)CONN_CUT);
        cut++;
    }
    g_mutex_unlock(&src->conns_lock);
    return cut;
}
