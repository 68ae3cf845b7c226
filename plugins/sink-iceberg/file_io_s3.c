/*
 * S3 file IO: see file_io.h. Locations are "s3://bucket/key" (s3a:// and
 * s3n://, which Hadoop-based writers record, read the same).
 *
 * A data file is streamed: bytes gather in one part buffer (part_size);
 * the first full part starts a multipart upload, every further one is
 * uploaded as it fills, and close() uploads the rest and completes the
 * upload. A file smaller than one part is a single PUT. So an open file
 * holds at most part_size bytes here, whatever its final size (and the
 * sink counts them in its max_buffered_bytes), and an aborted file leaves
 * no upload behind (AbortMultipartUpload).
 *
 * Every request is signed with SigV4 by libcurl (CURLOPT_AWS_SIGV4); the
 * payload's SHA-256 goes in x-amz-content-sha256, which S3 needs with it.
 * The query strings below are written in canonical form (keys sorted, each
 * with '='), which is what libcurl 7.88 signs as given.
 */
#define _GNU_SOURCE /* memmem */
#include "file_io.h"
#include "http_client.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    file_io base;
    http_client *http;
    char *endpoint; /* scheme://host[:port], no trailing '/' */
    char *region;
    char *sigv4;        /* "aws:amz:REGION:s3" */
    char *userpwd;      /* secret */
    char *token_header; /* "x-amz-security-token: ..." (secret) or NULL */
    bool path_style;
    size_t part_size;
} s3_io;

struct fio_out {
    s3_io *io;
    char *location, *bucket, *key;
    byte_buf part;
    char *upload_id;  /* once the first part went out */
    GPtrArray *etags; /* of the uploaded parts, in order */
    char *error;      /* the first failure; later writes fail at once */
};

/* ------------------------------------------------------------ requests */

static bool split_location(const char *location, char **bucket, char **key)
{
    const char *p = NULL;
    if (g_str_has_prefix(location, "s3://"))
        p = location + 5;
    else if (g_str_has_prefix(location, "s3a://") || g_str_has_prefix(location, "s3n://"))
        p = location + 6;
    if (!p)
        return false;
    const char *slash = strchr(p, '/');
    if (!slash || slash == p)
        return false;
    *bucket = g_strndup(p, (gsize)(slash - p));
    *key = g_strdup(slash + 1);
    return true;
}

static char *object_url(const s3_io *io, const char *bucket, const char *key, const char *query)
{
    g_autofree char *k = http_escape(key, true);
    const char *q = query ? "?" : "", *qs = query ? query : "";
    if (io->path_style)
        return g_strdup_printf("%s/%s/%s%s%s", io->endpoint, bucket, k, q, qs);
    const char *sep = strstr(io->endpoint, "://");
    g_autofree char *scheme = g_strndup(io->endpoint, (gsize)(sep - io->endpoint));
    return g_strdup_printf("%s://%s.%s/%s%s%s", scheme, bucket, sep + 3, k, q, qs);
}

/* The text of <tag> in an S3 XML answer (first occurrence), or NULL. */
static char *xml_text(const byte_buf *b, const char *tag)
{
    if (!b->len)
        return NULL;
    g_autofree char *open = g_strdup_printf("<%s>", tag), *close = g_strdup_printf("</%s>", tag);
    g_autofree char *s = g_strndup((const char *)b->data, b->len);
    char *a = strstr(s, open);
    if (!a)
        return NULL;
    a += strlen(open);
    char *e = strstr(a, close);
    return e ? g_strndup(a, (gsize)(e - a)) : NULL;
}

/* "s3 PUT s3://b/k: 503 SlowDown: Please reduce... (after 8 attempts)" */
static char *describe_failure(const char *method, const char *bucket, const char *key, const http_resp *r)
{
    g_autofree char *where = g_strdup_printf("s3 %s s3://%s/%s", method, bucket, key);
    g_autofree char *tries = r->attempts > 1 ? g_strdup_printf(" (after %d attempts)", r->attempts) : g_strdup("");
    if (r->status == 0)
        return g_strdup_printf("%s: %s%s", where, r->error ? r->error : "no answer", tries);
    g_autofree char *code = xml_text(&r->body, "Code");
    g_autofree char *msg = xml_text(&r->body, "Message");
    return g_strdup_printf("%s: HTTP %ld%s%s%s%s%s", where, r->status, code ? " " : "", code ? code : "",
                           msg ? ": " : "", msg ? msg : "", tries);
}

typedef struct {
    const char *method;
    const char *bucket, *key;
    const char *query;          /* canonical: sorted, k=v&k2=v2 */
    const char *const *headers; /* extra, NULL-terminated */
    const void *body;
    size_t len;
    int max_attempts; /* 0: the client's */
} s3_call;

static bool s3_request(s3_io *io, const s3_call *c, http_resp *resp)
{
    g_autofree char *url = object_url(io, c->bucket, c->key, c->query);
    g_autofree char *sha =
        g_compute_checksum_for_data(G_CHECKSUM_SHA256, c->body ? c->body : (const void *)"", c->body ? c->len : 0);
    g_autofree char *sha_header = g_strdup_printf("x-amz-content-sha256: %s", sha);
    const char *headers[16];
    int n = 0;
    headers[n++] = sha_header;
    if (io->token_header)
        headers[n++] = io->token_header;
    for (const char *const *h = c->headers; h && *h && n < 15; h++)
        headers[n++] = *h;
    headers[n] = NULL;
    http_req r = {.method = c->method,
                  .url = url,
                  .headers = headers,
                  .body = c->body,
                  .body_len = c->len,
                  .sigv4 = io->sigv4,
                  .userpwd = io->userpwd,
                  .max_attempts = c->max_attempts};
    return http_do(io->http, &r, resp);
}

/* A request whose answer must be 2xx; on anything else *err says why. */
static bool s3_ok(s3_io *io, const s3_call *c, http_resp *resp, char **err)
{
    if (s3_request(io, c, resp) && resp->status >= 200 && resp->status < 300)
        return true;
    if (err)
        *err = describe_failure(c->method, c->bucket, c->key, resp);
    return false;
}

/* ------------------------------------------------------------ streaming writes */

static void out_fail(fio_out *o, char *why)
{
    if (!o->error)
        o->error = why;
    else
        g_free(why);
}

static bool start_upload(fio_out *o)
{
    http_resp r = {0};
    char *err = NULL;
    s3_call c = {.method = "POST", .bucket = o->bucket, .key = o->key, .query = "uploads="};
    if (!s3_ok(o->io, &c, &r, &err)) {
        out_fail(o, err);
        http_resp_clear(&r);
        return false;
    }
    o->upload_id = xml_text(&r.body, "UploadId");
    http_resp_clear(&r);
    if (!o->upload_id)
        out_fail(o, g_strdup_printf("s3 POST s3://%s/%s?uploads: the answer has no UploadId", o->bucket, o->key));
    return o->upload_id != NULL;
}

static bool upload_part(fio_out *o)
{
    if (!o->upload_id && !start_upload(o))
        return false;
    g_autofree char *id = http_escape(o->upload_id, false);
    g_autofree char *query = g_strdup_printf("partNumber=%u&uploadId=%s", o->etags->len + 1, id);
    http_resp r = {0};
    char *err = NULL;
    s3_call c = {
        .method = "PUT", .bucket = o->bucket, .key = o->key, .query = query, .body = o->part.data, .len = o->part.len};
    bool ok = s3_ok(o->io, &c, &r, &err);
    if (ok && !r.etag) {
        ok = false;
        err =
            g_strdup_printf("s3 PUT s3://%s/%s part %u: the answer has no ETag", o->bucket, o->key, o->etags->len + 1);
    }
    if (ok)
        g_ptr_array_add(o->etags, g_steal_pointer(&r.etag));
    else
        out_fail(o, err);
    http_resp_clear(&r);
    bb_reset(&o->part);
    return ok;
}

static fio_out *s3_create(file_io *base, const char *location, char **err)
{
    s3_io *io = (s3_io *)base;
    fio_out *o = g_new0(fio_out, 1);
    if (!split_location(location, &o->bucket, &o->key)) {
        *err = g_strdup_printf("not an S3 location: %s", location);
        g_free(o);
        return NULL;
    }
    o->io = io;
    o->location = g_strdup(location);
    o->etags = g_ptr_array_new_with_free_func(g_free);
    return o;
}

static int s3_write(fio_out *o, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n && !o->error) {
        size_t k = MIN(n, o->io->part_size - o->part.len);
        bb_append(&o->part, b, k);
        b += k;
        n -= k;
        if (o->part.len == o->io->part_size)
            upload_part(o);
    }
    return o->error ? -1 : 0;
}

static char *s3_error(fio_out *o) { return o->error ? g_strdup(o->error) : NULL; }

static size_t s3_buffered(fio_out *o) { return o->part.len; }

#define MIN_PART ((size_t)5 << 20) /* S3's smallest part but the last */

static int s3_drain(fio_out *o)
{
    if (!o->error && o->part.len >= MIN_PART)
        upload_part(o); /* a part may be shorter than part_size */
    return o->error ? -1 : 0;
}

static void out_free(fio_out *o)
{
    g_free(o->location);
    g_free(o->bucket);
    g_free(o->key);
    g_free(o->upload_id);
    g_free(o->error);
    bb_free(&o->part);
    g_ptr_array_free(o->etags, TRUE);
    g_free(o);
}

static void s3_abort(fio_out *o)
{
    if (o->upload_id) {
        g_autofree char *id = http_escape(o->upload_id, false);
        g_autofree char *query = g_strdup_printf("uploadId=%s", id);
        http_resp r = {0};
        s3_call c = {.method = "DELETE", .bucket = o->bucket, .key = o->key, .query = query};
        s3_request(o->io, &c, &r); /* best effort: a bucket lifecycle rule reaps what is left */
        http_resp_clear(&r);
    }
    out_free(o);
}

static bool complete_upload(fio_out *o)
{
    GString *x = g_string_new("<CompleteMultipartUpload>");
    for (guint i = 0; i < o->etags->len; i++)
        g_string_append_printf(x, "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>", i + 1,
                               (const char *)g_ptr_array_index(o->etags, i));
    g_string_append(x, "</CompleteMultipartUpload>");
    g_autofree char *id = http_escape(o->upload_id, false);
    g_autofree char *query = g_strdup_printf("uploadId=%s", id);
    http_resp r = {0};
    char *err = NULL;
    s3_call c = {.method = "POST", .bucket = o->bucket, .key = o->key, .query = query, .body = x->str, .len = x->len};
    bool ok = s3_ok(o->io, &c, &r, &err);
    /* S3 may answer 200 and still fail the completion in the body */
    if (ok && r.body.len && memmem(r.body.data, r.body.len, "<Error>", 7)) {
        ok = false;
        err = describe_failure("POST", o->bucket, o->key, &r);
    }
    if (!ok)
        out_fail(o, err);
    http_resp_clear(&r);
    g_string_free(x, TRUE);
    return ok;
}

static int s3_close(fio_out *o, char **err)
{
    bool ok = !o->error;
    if (ok && !o->upload_id) {
        http_resp r = {0};
        char *e = NULL;
        s3_call c = {.method = "PUT", .bucket = o->bucket, .key = o->key, .body = o->part.data, .len = o->part.len};
        ok = s3_ok(o->io, &c, &r, &e);
        if (!ok)
            out_fail(o, e);
        http_resp_clear(&r);
    } else if (ok) {
        ok = (o->part.len == 0 || upload_part(o)) && complete_upload(o);
    }
    if (!ok) {
        *err = g_strdup(o->error);
        s3_abort(o);
        return -1;
    }
    out_free(o);
    return 0;
}

/* ------------------------------------------------------------ whole objects */

/* bucket and key of an object location; *err (when err) says why not */
static bool object_of(const char *location, char **bucket, char **key, char **err)
{
    if (split_location(location, bucket, key))
        return true;
    if (err)
        *err = g_strdup_printf("not an S3 location: %s", location);
    return false;
}

static bool s3_read_all(file_io *base, const char *location, byte_buf *out, char **err)
{
    g_autofree char *bucket = NULL, *key = NULL;
    if (!object_of(location, &bucket, &key, err))
        return false;
    http_resp r = {0};
    s3_call c = {.method = "GET", .bucket = bucket, .key = key};
    bool ok = s3_ok((s3_io *)base, &c, &r, err);
    if (ok)
        bb_append(out, r.body.data, r.body.len);
    http_resp_clear(&r);
    return ok;
}

static bool s3_put(file_io *base, const char *location, const void *p, size_t n, char **err)
{
    g_autofree char *bucket = NULL, *key = NULL;
    if (!object_of(location, &bucket, &key, err))
        return false;
    http_resp r = {0};
    s3_call c = {.method = "PUT", .bucket = bucket, .key = key, .body = p, .len = n};
    bool ok = s3_ok((s3_io *)base, &c, &r, err);
    http_resp_clear(&r);
    return ok;
}

/* After an attempt whose outcome is unknown, a 412 may be our own write:
 * the object holds exactly our bytes then (metadata files carry unique
 * snapshot ids and uuids, so nobody else writes the same bytes). */
static bool holds_exactly(s3_io *io, const char *location, const void *p, size_t n)
{
    byte_buf have = {0};
    char *e = NULL;
    bool same = s3_read_all(&io->base, location, &have, &e) && have.len == n && memcmp(have.data, p, n) == 0;
    g_free(e);
    bb_free(&have);
    return same;
}

static fio_result s3_put_if_absent(file_io *base, const char *location, const void *p, size_t n, char **err)
{
    g_autofree char *bucket = NULL, *key = NULL;
    if (!object_of(location, &bucket, &key, err))
        return FIO_ERROR;
    s3_io *io = (s3_io *)base;
    const char *headers[] = {"If-None-Match: *", NULL};
    http_resp r = {0};
    s3_call c = {.method = "PUT", .bucket = bucket, .key = key, .headers = headers, .body = p, .len = n};
    fio_result res = FIO_ERROR;
    if (s3_request(io, &c, &r)) {
        if (r.status >= 200 && r.status < 300)
            res = FIO_OK;
        else if (r.status == 412)
            res = r.maybe_applied && holds_exactly(io, location, p, n) ? FIO_OK : FIO_EXISTS;
        else if (r.status == 409) /* a concurrent conditional write: the loser reloads */
            res = FIO_EXISTS;
    }
    if (res == FIO_ERROR)
        *err = describe_failure("PUT", bucket, key, &r);
    http_resp_clear(&r);
    return res;
}

static bool s3_exists(file_io *base, const char *location)
{
    g_autofree char *bucket = NULL, *key = NULL;
    if (!object_of(location, &bucket, &key, NULL))
        return false;
    http_resp r = {0};
    s3_call c = {.method = "HEAD", .bucket = bucket, .key = key};
    bool yes = s3_request((s3_io *)base, &c, &r) && r.status == 200;
    http_resp_clear(&r);
    return yes;
}

static bool s3_remove(file_io *base, const char *location)
{
    g_autofree char *bucket = NULL, *key = NULL;
    if (!object_of(location, &bucket, &key, NULL))
        return false;
    http_resp r = {0};
    s3_call c = {.method = "DELETE", .bucket = bucket, .key = key};
    bool ok = s3_request((s3_io *)base, &c, &r) && ((r.status >= 200 && r.status < 300) || r.status == 404);
    http_resp_clear(&r);
    return ok;
}

/* ListObjectsV2 answers: the names directly under the prefix. */
typedef struct {
    GPtrArray *names;
    size_t prefix_len;
    GString *text;
    bool in_key, in_prefix, in_common, in_token, in_truncated;
    char *token;
    bool truncated;
    /* walk: every object under the prefix, with its size and age */
    fio_walk_fn fn;
    void *ctx;
    const char *bucket;
    char *key;
    int64_t size, mtime_ms;
} list_parse;

static void lp_start(GMarkupParseContext *ctx, const char *el, const char **an, const char **av, gpointer ud,
                     GError **error)
{
    list_parse *lp = ud;
    g_string_truncate(lp->text, 0);
    if (strcmp(el, "CommonPrefixes") == 0)
        lp->in_common = true;
}

static void lp_end(GMarkupParseContext *ctx, const char *el, gpointer ud, GError **error)
{
    list_parse *lp = ud;
    const char *t = lp->text->str;
    if (lp->fn) {
        if (strcmp(el, "Key") == 0) {
            g_free(lp->key);
            lp->key = g_strdup(t);
        } else if (strcmp(el, "Size") == 0) {
            lp->size = g_ascii_strtoll(t, NULL, 10);
        } else if (strcmp(el, "LastModified") == 0) {
            GDateTime *dt = g_date_time_new_from_iso8601(t, NULL);
            lp->mtime_ms = dt ? g_date_time_to_unix(dt) * 1000 + g_date_time_get_microsecond(dt) / 1000 : 0;
            if (dt)
                g_date_time_unref(dt);
        } else if (strcmp(el, "Contents") == 0 && lp->key) {
            g_autofree char *loc = g_strdup_printf("s3://%s/%s", lp->bucket, lp->key);
            lp->fn(lp->ctx, loc, lp->size, lp->mtime_ms);
            g_clear_pointer(&lp->key, g_free);
        }
    }
    bool entry = strcmp(el, "Key") == 0 || (lp->in_common && strcmp(el, "Prefix") == 0);
    if (entry && !lp->fn && strlen(t) > lp->prefix_len) {
        char *name = g_strdup(t + lp->prefix_len);
        size_t l = strlen(name);
        if (l && name[l - 1] == '/')
            name[l - 1] = 0;
        g_ptr_array_add(lp->names, name);
    } else if (strcmp(el, "CommonPrefixes") == 0) {
        lp->in_common = false;
    } else if (strcmp(el, "NextContinuationToken") == 0) {
        g_free(lp->token);
        lp->token = g_strdup(t);
    } else if (strcmp(el, "IsTruncated") == 0) {
        lp->truncated = strcmp(t, "true") == 0;
    }
    g_string_truncate(lp->text, 0);
}

static void lp_text(GMarkupParseContext *ctx, const char *text, gsize len, gpointer ud, GError **error)
{
    g_string_append_len(((list_parse *)ud)->text, text, (gssize)len);
}

/* ListObjectsV2 through every page: names under the prefix (delimited) or,
 * with fn, every object at any depth. */
static char **list_objects(file_io *base, const char *dir_location, fio_walk_fn fn, void *ctx, char **err)
{
    g_autofree char *dir =
        g_str_has_suffix(dir_location, "/") ? g_strdup(dir_location) : g_strconcat(dir_location, "/", NULL);
    g_autofree char *bucket = NULL, *prefix = NULL;
    if (!split_location(dir, &bucket, &prefix)) {
        *err = g_strdup_printf("not an S3 location: %s", dir_location);
        return NULL;
    }
    list_parse lp = {.names = g_ptr_array_new_with_free_func(g_free),
                     .prefix_len = strlen(prefix),
                     .text = g_string_new(NULL),
                     .fn = fn,
                     .ctx = ctx,
                     .bucket = bucket};
    static const GMarkupParser parser = {lp_start, lp_end, lp_text, NULL, NULL};
    g_autofree char *eprefix = http_escape(prefix, false);
    bool ok = true;
    do {
        g_autofree char *etoken = lp.token ? http_escape(lp.token, false) : NULL;
        g_autofree char *query =
            g_strdup_printf("%s%s%s%slist-type=2&prefix=%s", etoken ? "continuation-token=" : "", etoken ? etoken : "",
                            etoken ? "&" : "", fn ? "" : "delimiter=%2F&", eprefix);
        g_clear_pointer(&lp.token, g_free);
        lp.truncated = false;
        http_resp r = {0};
        /* the bucket itself: the key part of the URL stays empty */
        s3_call c = {.method = "GET", .bucket = bucket, .key = "", .query = query};
        ok = s3_ok((s3_io *)base, &c, &r, err);
        if (ok) {
            GMarkupParseContext *ctx = g_markup_parse_context_new(&parser, 0, &lp, NULL);
            GError *ge = NULL;
            ok = g_markup_parse_context_parse(ctx, (const char *)r.body.data, (gssize)r.body.len, &ge) &&
                 g_markup_parse_context_end_parse(ctx, &ge);
            if (!ok) {
                *err =
                    g_strdup_printf("s3 GET s3://%s/?prefix=%s: unreadable listing: %s", bucket, prefix, ge->message);
                g_error_free(ge);
            }
            g_markup_parse_context_free(ctx);
        }
        http_resp_clear(&r);
    } while (ok && lp.truncated && lp.token);
    g_string_free(lp.text, TRUE);
    g_free(lp.token);
    g_free(lp.key);
    if (!ok) {
        g_ptr_array_free(lp.names, TRUE);
        return NULL;
    }
    g_ptr_array_set_free_func(lp.names, NULL);
    g_ptr_array_add(lp.names, NULL);
    return (char **)g_ptr_array_free(lp.names, FALSE);
}

static char **s3_list(file_io *base, const char *dir_location, char **err)
{
    return list_objects(base, dir_location, NULL, NULL, err);
}

static bool s3_walk(file_io *base, const char *dir_location, fio_walk_fn fn, void *ctx, char **err)
{
    char **names = list_objects(base, dir_location, fn, ctx, err);
    g_strfreev(names);
    return names != NULL;
}

static void s3_destroy(file_io *base)
{
    s3_io *io = (s3_io *)base;
    http_client_free(io->http);
    g_free(io->endpoint);
    g_free(io->region);
    g_free(io->sigv4);
    if (io->userpwd)
        memset(io->userpwd, 0, strlen(io->userpwd));
    g_free(io->userpwd);
    if (io->token_header)
        memset(io->token_header, 0, strlen(io->token_header));
    g_free(io->token_header);
    g_free(io);
}

file_io *file_io_s3_new(const s3_options *o, char **err)
{
    if (!o->access_key_id || !*o->access_key_id || !o->secret_access_key || !*o->secret_access_key) {
        *err = g_strdup("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment "
                        "(or the options s3_access_key_id and s3_secret_access_key)");
        return NULL;
    }
    if (o->part_size < MIN_PART) {
        *err = g_strdup_printf("S3 multipart parts must be at least 5 MiB (got %zu bytes)", o->part_size);
        return NULL;
    }
    g_autofree char *endpoint =
        o->endpoint && *o->endpoint ? g_strdup(o->endpoint) : g_strdup_printf("https://s3.%s.amazonaws.com", o->region);
    g_strchomp(endpoint);
    size_t l = strlen(endpoint);
    while (l && endpoint[l - 1] == '/')
        endpoint[--l] = 0;
    if (!g_str_has_prefix(endpoint, "http://") && !g_str_has_prefix(endpoint, "https://")) {
        *err = g_strdup_printf("S3 endpoint '%s': expected http://HOST[:PORT] or https://HOST[:PORT]", endpoint);
        return NULL;
    }
    s3_io *io = g_new0(s3_io, 1);
    io->endpoint = g_steal_pointer(&endpoint);
    io->region = g_strdup(o->region);
    io->sigv4 = g_strdup_printf("aws:amz:%s:s3", o->region);
    io->userpwd = g_strdup_printf("%s:%s", o->access_key_id, o->secret_access_key);
    if (o->session_token && *o->session_token)
        io->token_header = g_strdup_printf("x-amz-security-token: %s", o->session_token);
    io->path_style = o->path_style;
    io->part_size = o->part_size;
    io->http = http_client_new(&o->http);
    io->base.create = s3_create;
    io->base.write = s3_write;
    io->base.error = s3_error;
    io->base.buffered = s3_buffered;
    io->base.drain = s3_drain;
    io->base.close = s3_close;
    io->base.abort = s3_abort;
    io->base.read_all = s3_read_all;
    io->base.put = s3_put;
    io->base.put_if_absent = s3_put_if_absent;
    io->base.exists = s3_exists;
    io->base.remove = s3_remove;
    io->base.list = s3_list;
    io->base.walk = s3_walk;
    io->base.destroy = s3_destroy;
    return &io->base;
}
