#include "http_deadline.h"
#include "sync.h"

#include <sys/socket.h>

typedef struct {
    GList link; /* in d->conns */
    MHD_socket fd;
    gint64 since_us; /* monotonic; when the current request began */
} watch;

struct ecf_http_deadline {
    gint64 limit_us;
    gint64 sweep_us;
    ecf_mutex lock; /* conns, stop; a sweep never shuts down a socket closed meanwhile */
    ecf_cond wake;
    GQueue conns;
    gboolean stop;
    GThread *thread;
};

static void sweep(ecf_http_deadline *d, gint64 now_us)
{
    for (GList *l = d->conns.head; l; l = l->next) {
        watch *w = l->data;
        if (w->fd == MHD_INVALID_SOCKET || now_us - w->since_us <= d->limit_us)
            continue;
        shutdown(w->fd, SHUT_RDWR);
        w->fd = MHD_INVALID_SOCKET; /* once: libmicrohttpd closes it on the hang-up */
    }
}

static gpointer sweeper(gpointer data)
{
    ecf_http_deadline *d = data;
    ecf_mutex_lock(&d->lock);
    while (!d->stop) {
        ecf_cond_wait_until(&d->wake, &d->lock, g_get_monotonic_time() + d->sweep_us);
        if (!d->stop)
            sweep(d, g_get_monotonic_time());
    }
    ecf_mutex_unlock(&d->lock);
    return NULL;
}

ecf_http_deadline *ecf_http_deadline_new(gint64 limit_us, gint64 sweep_us)
{
    ecf_http_deadline *d = g_new0(ecf_http_deadline, 1);
    d->limit_us = limit_us;
    d->sweep_us = sweep_us;
    ecf_mutex_init(&d->lock);
    ecf_cond_init(&d->wake);
    g_queue_init(&d->conns);
    d->thread = g_thread_new("ecf-http-deadline", sweeper, d);
    return d;
}

void ecf_http_deadline_free(ecf_http_deadline *d)
{
    if (!d)
        return;
    ecf_mutex_lock(&d->lock);
    d->stop = TRUE;
    ecf_cond_broadcast(&d->wake);
    ecf_mutex_unlock(&d->lock);
    g_thread_join(d->thread);
    /* normally empty: every connection's CLOSED notice unlinked it */
    for (GList *l = d->conns.head; l;) {
        GList *next = l->next;
        g_free(l->data);
        l = next;
    }
    ecf_cond_clear(&d->wake);
    ecf_mutex_clear(&d->lock);
    g_free(d);
}

void ecf_http_deadline_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                                     enum MHD_ConnectionNotificationCode toe)
{
    ecf_http_deadline *d = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        watch *w = g_new0(watch, 1);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        w->fd = ci ? ci->connect_fd : MHD_INVALID_SOCKET;
        w->link.data = w;
        w->since_us = g_get_monotonic_time();
        ecf_mutex_lock(&d->lock);
        g_queue_push_tail_link(&d->conns, &w->link);
        ecf_mutex_unlock(&d->lock);
        *socket_context = w;
        return;
    }
    watch *w = *socket_context;
    if (!w)
        return;
    ecf_mutex_lock(&d->lock);
    g_queue_unlink(&d->conns, &w->link);
    ecf_mutex_unlock(&d->lock);
    g_free(w);
    *socket_context = NULL;
}

void ecf_http_deadline_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                                    enum MHD_RequestTerminationCode toe)
{
    (void)con_cls;
    (void)toe;
    ecf_http_deadline *d = cls;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    watch *w = ci ? ci->socket_context : NULL;
    if (!w)
        return;
    /* the next request on this connection gets a deadline of its own */
    ecf_mutex_lock(&d->lock);
    w->since_us = g_get_monotonic_time();
    ecf_mutex_unlock(&d->lock);
}
