/*
 * File IO behind a small table of operations, so that object stores (S3 with
 * conditional PUT) slot in beside the local file system without touching the
 * writers. Locations are what the table metadata stores: absolute paths for
 * the local implementation ("/data/wh/db/t/data/x.parquet"), "s3://bucket/key"
 * for S3 (file_io_s3.c).
 *
 * Errors come back as a malloc'ed message in *err (free with g_free).
 */
#ifndef ECF_ICEBERG_FILE_IO_H
#define ECF_ICEBERG_FILE_IO_H

#include "byte_buf.h"
#include "http_client.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct file_io file_io;
typedef struct fio_out fio_out;

typedef void (*fio_walk_fn)(void *ctx, const char *location, int64_t size, int64_t mtime_ms);

typedef enum {
    FIO_OK = 0,
    FIO_EXISTS, /* put_if_absent lost the race */
    FIO_ERROR,
    FIO_UNKNOWN, /* a commit that may or may not have been applied (catalog.h) */
} fio_result;

struct file_io {
    /* A new object written as a stream; visible (whole) only after close. */
    fio_out *(*create)(file_io *io, const char *location, char **err);
    int (*write)(fio_out *o, const void *p, size_t n); /* 0 or -1 */
    /* Why a write failed ("cannot write LOCATION: REASON"), or NULL while none has. */
    char *(*error)(fio_out *o);
    /* Bytes written to the stream and still held in memory (a local write
     * buffer, an S3 part not uploaded yet): part of the sink's memory bound. */
    size_t (*buffered)(fio_out *o);
    /* Sends out what it can of that now (0), or fails (-1, error() says
     * why); an S3 part below the 5 MiB minimum has to stay. */
    int (*drain)(fio_out *o);
    /* Finish the object; 0 or -1. The stream is freed either way. */
    int (*close)(fio_out *o, char **err);
    void (*abort)(fio_out *o); /* discard */
    /* Whole-object helpers. */
    bool (*read_all)(file_io *io, const char *location, byte_buf *out, char **err);
    bool (*put)(file_io *io, const char *location, const void *p, size_t n, char **err);
    /* Create only if absent, atomically: the catalog's commit point. */
    fio_result (*put_if_absent)(file_io *io, const char *location, const void *p, size_t n, char **err);
    bool (*exists)(file_io *io, const char *location);
    bool (*remove)(file_io *io, const char *location);
    /* Names (not paths) of the entries directly under a directory location,
     * NULL-terminated (empty when there is none); NULL with *err when the
     * store could not be asked. */
    char **(*list)(file_io *io, const char *dir_location, char **err);
    /* Every object under a directory location, at any depth, with its size
     * and last modification (ms since the epoch): what maintenance looks
     * through for orphans. false with *err when the store could not be asked. */
    bool (*walk)(file_io *io, const char *dir_location, fio_walk_fn fn, void *ctx, char **err);
    void (*destroy)(file_io *io);
};

/* Local disk: parent directories are created on demand; put_if_absent
 * writes a temporary file, fsyncs it and link(2)s it into place. */
file_io *file_io_local_new(bool fsync_data);

/* S3 (and S3-compatible stores): see file_io_s3.c. Secrets are copied;
 * the caller may wipe its own. */
#include "http_client.h"
typedef struct {
    const char *endpoint; /* NULL: https://s3.<region>.amazonaws.com */
    const char *region;
    const char *access_key_id, *secret_access_key, *session_token;
    bool path_style;  /* endpoint/bucket/key instead of bucket.endpoint/key */
    size_t part_size; /* multipart part size, >= 5 MiB */
    http_client_options http;
} s3_options;
file_io *file_io_s3_new(const s3_options *o, char **err);

/* Whether a location names an object store the S3 IO serves. */
bool fio_is_s3(const char *location);

/* Joins location parts with '/'. */
char *fio_join(const char *a, const char *b);

#endif
