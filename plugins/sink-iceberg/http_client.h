/*
 * http_client: the one HTTP layer under S3 file IO and the REST catalog.
 * libcurl with one share handle per client, so connections (and DNS, TLS
 * sessions) are reused across requests and files instead of a handshake per
 * object; requests are retried with exponential backoff and jitter on
 * transport failures (timeouts, resets, refused connections), 5xx and 429.
 *
 * Thread safety: a client may be used from several threads at once (the
 * share handle is locked); one http_resp belongs to one caller.
 *
 * Secrets (userpwd, bearer headers) are never put into error messages: an
 * error names the method and the URL, which hold none.
 */
#ifndef ECF_ICEBERG_HTTP_CLIENT_H
#define ECF_ICEBERG_HTTP_CLIENT_H

#include "byte_buf.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct http_client http_client;

typedef struct {
    int max_attempts;   /* per request, >= 1 */
    int64_t backoff_us; /* first retry waits about this; doubles up to backoff_max_us */
    int64_t backoff_max_us;
    int64_t timeout_us; /* no byte moving for this long ends an attempt */
    int64_t connect_timeout_us;
    const char *ca_file; /* NULL: the system's */
    bool insecure;       /* do not verify TLS peers (tests only) */
} http_client_options;

typedef struct {
    const char *method; /* GET HEAD PUT POST DELETE */
    const char *url;
    const char *const *headers; /* "Name: value", NULL-terminated; may be NULL */
    const void *body;           /* PUT/POST body, may be NULL */
    size_t body_len;
    const char *sigv4;   /* "aws:amz:REGION:s3": sign with userpwd; NULL: no signing */
    const char *userpwd; /* "id:secret" for sigv4 (never logged) */
    int max_attempts;    /* 0: the client's; 1: the caller resolves retries itself */
    size_t max_response; /* 0: 256 MiB; a longer answer is an error */
} http_req;

typedef struct {
    long status;   /* HTTP status of the last attempt; 0: no answer */
    byte_buf body; /* its body */
    char *etag;    /* its ETag header, quotes kept; NULL when none */
    char *error;   /* transport error of the last attempt, NULL when it got an answer */
    int attempts;
    /* an attempt before the last one may have reached the server and been
     * applied there (a timeout, a reset or a 5xx after the request was sent):
     * a non-idempotent caller must find out before it trusts a 4xx */
    bool maybe_applied;
} http_resp;

http_client *http_client_new(const http_client_options *o);
void http_client_free(http_client *c);

/* Performs the request with the client's retry policy. Returns true when an
 * HTTP answer came (any status: the caller judges it), false when every
 * attempt failed in transport (resp->error says why). */
bool http_do(http_client *c, const http_req *r, http_resp *resp);
void http_resp_clear(http_resp *resp);

/* Sleeps before attempt n + 1: backoff_us doubled per attempt up to
 * backoff_max_us, half of it random (jitter), and at least at_least_us
 * (a server's Retry-After). */
void http_backoff(const http_client_options *o, int n, int64_t at_least_us);

/* Whether a status is worth another attempt (5xx, 429, S3's 400 RequestTimeout is the caller's). */
bool http_status_retryable(long status);

/* "%XX"-escapes everything but RFC 3986 unreserved characters (and '/' when keep_slash). */
char *http_escape(const char *s, bool keep_slash);

#endif
