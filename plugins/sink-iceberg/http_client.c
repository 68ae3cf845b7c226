/* HTTP requests with retries over one libcurl share handle: see http_client.h. */
#include "http_client.h"

#include <curl/curl.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct http_client {
    http_client_options o;
    CURLSH *share;
    GMutex locks[CURL_LOCK_DATA_LAST];
};

static gsize curl_ready;

static void curl_global_once(void)
{
    /* curl_global_init is not thread-safe before 7.84 and must run once */
    if (g_once_init_enter(&curl_ready)) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        g_once_init_leave(&curl_ready, 1);
    }
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access a, void *ctx)
{
    http_client *c = ctx;
    g_mutex_lock(&c->locks[data < CURL_LOCK_DATA_LAST ? data : 0]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ctx)
{
    http_client *c = ctx;
    g_mutex_unlock(&c->locks[data < CURL_LOCK_DATA_LAST ? data : 0]);
}

http_client *http_client_new(const http_client_options *o)
{
    curl_global_once();
    http_client *c = g_new0(http_client, 1);
    c->o = *o;
    if (c->o.max_attempts < 1)
        c->o.max_attempts = 1;
    c->o.ca_file = g_strdup(o->ca_file);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        g_mutex_init(&c->locks[i]);
    c->share = curl_share_init();
    curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return c;
}

void http_client_free(http_client *c)
{
    if (!c)
        return;
    curl_share_cleanup(c->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        g_mutex_clear(&c->locks[i]);
    g_free((char *)c->o.ca_file);
    g_free(c);
}

void http_resp_clear(http_resp *r)
{
    bb_free(&r->body);
    g_free(r->etag);
    g_free(r->error);
    memset(r, 0, sizeof *r);
}

bool http_status_retryable(long status)
{
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

char *http_escape(const char *s, bool keep_slash)
{
    GString *o = g_string_sized_new(strlen(s) + 8);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (g_ascii_isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' || (keep_slash && *p == '/'))
            g_string_append_c(o, (char)*p);
        else
            g_string_append_printf(o, "%%%02X", *p);
    }
    return g_string_free(o, FALSE);
}

/* ------------------------------------------------------------ one attempt */

typedef struct {
    const uint8_t *p;
    size_t len, pos;
} upload;

typedef struct {
    http_resp *resp;
    size_t max;
    bool too_long;
    int64_t retry_after_us;
} download;

static size_t on_read(char *buf, size_t size, size_t n, void *ctx)
{
    upload *u = ctx;
    size_t k = MIN(size * n, u->len - u->pos);
    memcpy(buf, u->p + u->pos, k);
    u->pos += k;
    return k;
}

/* curl rewinds an upload it must send again (a redirect, a reused
 * connection the server had closed) */
static int on_seek(void *ctx, curl_off_t off, int origin)
{
    upload *u = ctx;
    if (origin != SEEK_SET || off < 0 || (size_t)off > u->len)
        return CURL_SEEKFUNC_CANTSEEK;
    u->pos = (size_t)off;
    return CURL_SEEKFUNC_OK;
}

static size_t on_write(char *p, size_t size, size_t n, void *ctx)
{
    download *d = ctx;
    size_t k = size * n;
    if (d->resp->body.len + k > d->max) {
        d->too_long = true;
        return 0; /* ends the transfer with CURLE_WRITE_ERROR */
    }
    bb_append(&d->resp->body, p, k);
    return k;
}

static char *header_value(const char *line, size_t len, const char *name)
{
    size_t nl = strlen(name);
    if (len <= nl || g_ascii_strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return NULL;
    return g_strstrip(g_strndup(line + nl + 1, len - nl - 1));
}

static size_t on_header(char *p, size_t size, size_t n, void *ctx)
{
    download *d = ctx;
    size_t k = size * n;
    if (k > 5 && g_ascii_strncasecmp(p, "HTTP/", 5) == 0) {
        /* a new response (after a 100 Continue or a redirect): forget the last one's */
        g_clear_pointer(&d->resp->etag, g_free);
        d->retry_after_us = 0;
        return k;
    }
    char *v = header_value(p, k, "ETag");
    if (v) {
        g_free(d->resp->etag);
        d->resp->etag = v;
    } else if ((v = header_value(p, k, "Retry-After"))) {
        char *end;
        gint64 s = g_ascii_strtoll(v, &end, 10);
        if (end != v && *end == 0 && s >= 0 && s <= 60)
            d->retry_after_us = s * G_USEC_PER_SEC;
        g_free(v);
    }
    return k;
}

static struct curl_slist *header_list(const http_req *r)
{
    struct curl_slist *h = NULL;
    for (const char *const *p = r->headers; p && *p; p++)
        h = curl_slist_append(h, *p);
    return h;
}

/* Whether a transport failure may have happened after the server took the
 * request (so a non-idempotent request may have been applied). */
static bool maybe_sent(CURLcode rc)
{
    return rc != CURLE_COULDNT_CONNECT && rc != CURLE_COULDNT_RESOLVE_HOST && rc != CURLE_COULDNT_RESOLVE_PROXY &&
           rc != CURLE_SSL_CONNECT_ERROR && rc != CURLE_URL_MALFORMAT && rc != CURLE_UNSUPPORTED_PROTOCOL;
}

static bool retryable_transport(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return true;
    default: return false;
    }
}

/* One attempt. Returns the curl code; resp holds status/body/etag. */
static CURLcode attempt(http_client *c, const http_req *r, http_resp *resp, download *d)
{
    CURL *h = curl_easy_init();
    if (!h)
        return CURLE_OUT_OF_MEMORY;
    struct curl_slist *hl = header_list(r);
    upload u = {.p = r->body, .len = r->body ? r->body_len : 0};
    curl_easy_setopt(h, CURLOPT_SHARE, c->share);
    curl_easy_setopt(h, CURLOPT_URL, r->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->o.connect_timeout_us / 1000));
    /* a stall, not a total: a large upload over a slow link is fine while it moves */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)MAX(1, c->o.timeout_us / G_USEC_PER_SEC));
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    if (c->o.ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->o.ca_file);
    if (c->o.insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (r->sigv4) {
        curl_easy_setopt(h, CURLOPT_AWS_SIGV4, r->sigv4);
        curl_easy_setopt(h, CURLOPT_USERPWD, r->userpwd);
    }
    if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &u);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, &u);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)u.len);
    } else if (strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body ? (const char *)r->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)u.len);
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    }
    /* Waiting for "100 Continue" costs a round trip per part. Not by an
     * "Expect:" header: libcurl 7.88 signs that empty header and never
     * sends it, and S3 then refuses the signature. */
    curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, d);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    resp->status = rc == CURLE_OK ? status : 0;
    g_clear_pointer(&resp->error, g_free);
    if (rc != CURLE_OK)
        resp->error = d->too_long ? g_strdup_printf("the answer is longer than %zu bytes", d->max)
                                  : g_strdup(*errbuf ? errbuf : curl_easy_strerror(rc));
    curl_easy_cleanup(h);
    curl_slist_free_all(hl);
    return rc;
}

void http_backoff(const http_client_options *o, int n, int64_t at_least_us)
{
    int64_t d = o->backoff_us;
    for (int i = 1; i < n && d < o->backoff_max_us; i++)
        d *= 2;
    d = MIN(d, o->backoff_max_us);
    /* "equal jitter": half fixed, half random, so writers that failed
     * together do not come back together */
    d = d / 2 + (int64_t)g_random_double_range(0, (double)d / 2);
    g_usleep((gulong)MAX(d, at_least_us));
}

bool http_do(http_client *c, const http_req *r, http_resp *resp)
{
    int max = r->max_attempts > 0 ? r->max_attempts : c->o.max_attempts;
    download d = {.resp = resp, .max = r->max_response ? r->max_response : (size_t)256 << 20};
    for (int n = 1;; n++) {
        bb_reset(&resp->body);
        d.too_long = false;
        d.retry_after_us = 0;
        CURLcode rc = attempt(c, r, resp, &d);
        resp->attempts = n;
        bool again = rc == CURLE_OK ? http_status_retryable(resp->status) : retryable_transport(rc);
        if (!again || n >= max)
            return rc == CURLE_OK;
        if (rc == CURLE_OK || maybe_sent(rc))
            resp->maybe_applied = true;
        http_backoff(&c->o, n, d.retry_after_us);
    }
}
