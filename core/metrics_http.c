#include "metrics_http.h"
#include "http_deadline.h"
#include "log.h"
#include "status.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <string.h>

/* A scraper sends its request at once; 5 s is far above any honest one on
 * the networks a metrics port faces, and frees a held slot well before
 * Prometheus's default 10 s scrape timeout. */
#define REQUEST_DEADLINE_US (5 * G_USEC_PER_SEC)

struct ecf_metrics_http {
    ecf_metrics *reg;
    struct MHD_Daemon *daemon;
    ecf_http_deadline *deadline;
    ecf_ready_fn ready;
    void *ready_user;
    guint16 port;
    char host[INET_ADDRSTRLEN];
};

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *type, char *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
    ecf_metrics_http *h = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return respond(conn, 405, "text/plain", g_strdup("method not allowed\n"));
    if (strcmp(url, "/metrics") == 0)
        return respond(conn, 200, "text/plain; version=0.0.4", ecf_metrics_render(h->reg));
    if (strcmp(url, "/status.json") == 0)
        return respond(conn, 200, "application/json", ecf_status_json(h->reg));
    if (strcmp(url, "/") == 0 || strcmp(url, "/status") == 0)
        return respond(conn, 200, "text/html; charset=utf-8", g_strdup(ecf_status_page));
    if (strcmp(url, "/health") == 0)
        return respond(conn, 200, "text/plain", g_strdup("ok\n"));
    if (strcmp(url, "/ready") == 0) {
        gboolean ready = h->ready ? h->ready(h->ready_user) : TRUE;
        return respond(conn, ready ? 200 : 503, "text/plain", g_strdup(ready ? "ready\n" : "not ready\n"));
    }
    return respond(conn, 404, "text/plain", g_strdup("not found\n"));
}

static gboolean parse_address(const char *address, struct sockaddr_in *sa, GError **error)
{
    const char *colon = strrchr(address, ':');
    g_autofree char *host = colon ? g_strndup(address, (gsize)(colon - address)) : g_strdup("127.0.0.1");
    const char *port_s = colon ? colon + 1 : address;
    char *end = NULL;
    guint64 port = g_ascii_strtoull(port_s, &end, 10);
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    if (!*port_s || *end || port > 65535 || inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &sa->sin_addr) != 1) {
        g_set_error(error, ECF_ERROR, ECF_ERR_CONFIG, "metrics address '%s' is not HOST:PORT with an IPv4 host",
                    address);
        return FALSE;
    }
    sa->sin_port = htons((guint16)port);
    return TRUE;
}

ecf_metrics_http *ecf_metrics_http_start(ecf_metrics *reg, const char *address, ecf_ready_fn ready, void *ready_user,
                                         GError **error)
{
    struct sockaddr_in sa;
    if (!parse_address(address, &sa, error))
        return NULL;
    ecf_metrics_http *h = g_new0(ecf_metrics_http, 1);
    h->reg = reg;
    h->ready = ready;
    h->ready_user = ready_user;
    /* epoll, not select(): ecflow raises its descriptor limit, and select()
     * refuses every socket numbered past FD_SETSIZE (1024), so scrapes would
     * fail exactly when the process is busiest. Slow or idle clients are
     * bounded: 64 at once, 10 s idle, 16 KiB of request each, and each
     * request answered within REQUEST_DEADLINE_US of its start however
     * slowly its bytes trickle (http_deadline.h). */
    h->deadline = ecf_http_deadline_new(REQUEST_DEADLINE_US, G_USEC_PER_SEC / 4);
    h->daemon =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request,
                         h, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
                         MHD_OPTION_NOTIFY_CONNECTION, ecf_http_deadline_on_connection, h->deadline,
                         MHD_OPTION_NOTIFY_COMPLETED, ecf_http_deadline_on_completed, h->deadline, MHD_OPTION_END);
    if (!h->daemon) {
        g_set_error(error, ECF_ERROR, ECF_ERR_IO, "cannot listen for metrics on %s (port in use?)", address);
        ecf_http_deadline_free(h->deadline);
        g_free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : ntohs(sa.sin_port);
    inet_ntop(AF_INET, &sa.sin_addr, h->host, sizeof h->host);
    return h;
}

void ecf_metrics_http_stop(ecf_metrics_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    ecf_http_deadline_free(h->deadline);
    g_free(h);
}

guint16 ecf_metrics_http_port(const ecf_metrics_http *h) { return h ? h->port : 0; }
const char *ecf_metrics_http_host(const ecf_metrics_http *h) { return h ? h->host : ""; }
