/* Local file IO: see file_io.h. */
#define _GNU_SOURCE
#include "file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    file_io base;
    bool fsync_data;
} local_io;

struct fio_out {
    local_io *io;
    int fd;
    char *tmp, *final;
    bool failed;
    int err_no;
    /* small writes are gathered before write(2) */
    byte_buf buf;
};

#define OUT_BUF (256 * 1024)

bool fio_is_s3(const char *location)
{
    return g_str_has_prefix(location, "s3://") || g_str_has_prefix(location, "s3a://") ||
           g_str_has_prefix(location, "s3n://");
}

char *fio_join(const char *a, const char *b)
{
    size_t la = strlen(a);
    if (la && a[la - 1] == '/')
        return g_strconcat(a, b, NULL);
    return g_strconcat(a, "/", b, NULL);
}

/* Java writers (Hadoop FileIO under Spark, Flink, Trino) record locations
 * as URIs: a table they touched lists "file:/p" or "file:///p" where we
 * write "/p". Locations are opaque to the spec; resolving is the IO's job. */
static const char *local_path(const char *location)
{
    if (g_str_has_prefix(location, "file://")) {
        const char *p = strchr(location + 7, '/'); /* past an authority such as "localhost" */
        return p ? p : location;
    }
    if (g_str_has_prefix(location, "file:/"))
        return location + 5;
    return location;
}

static bool mkparents(const char *path, char **err)
{
    g_autofree char *dir = g_path_get_dirname(path);
    if (g_mkdir_with_parents(dir, 0755) != 0) {
        *err = g_strdup_printf("cannot create directory %s: %s", dir, g_strerror(errno));
        return false;
    }
    return true;
}

static bool fsync_dir(const char *path)
{
    g_autofree char *dir = g_path_get_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return false;
    int r = fsync(fd);
    close(fd);
    return r == 0;
}

static bool write_full(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        b += w;
        n -= (size_t)w;
    }
    return true;
}

static fio_out *local_create(file_io *io, const char *location, char **err)
{
    if (!mkparents(location, err))
        return NULL;
    fio_out *o = g_new0(fio_out, 1);
    o->io = (local_io *)io;
    o->final = g_strdup(location);
    o->tmp = g_strdup_printf("%s.tmp-%08x", location, g_random_int());
    o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (o->fd < 0) {
        *err = g_strdup_printf("cannot create %s: %s", o->tmp, g_strerror(errno));
        g_free(o->tmp);
        g_free(o->final);
        g_free(o);
        return NULL;
    }
    return o;
}

static int local_write(fio_out *o, const void *p, size_t n)
{
    if (o->failed)
        return -1;
    if (o->buf.len + n > OUT_BUF) {
        if (!write_full(o->fd, o->buf.data, o->buf.len)) {
            o->failed = true;
            o->err_no = errno;
            return -1;
        }
        bb_reset(&o->buf);
    }
    if (n >= OUT_BUF) {
        if (!write_full(o->fd, p, n)) {
            o->failed = true;
            o->err_no = errno;
            return -1;
        }
        return 0;
    }
    bb_append(&o->buf, p, n);
    return 0;
}

static char *local_error(fio_out *o)
{
    return o->failed ? g_strdup_printf("cannot write %s: %s", o->final, g_strerror(o->err_no)) : NULL;
}

static size_t local_buffered(fio_out *o) { return o->buf.len; }

static int local_drain(fio_out *o)
{
    if (o->failed)
        return -1;
    if (o->buf.len && !write_full(o->fd, o->buf.data, o->buf.len)) {
        o->failed = true;
        o->err_no = errno;
        return -1;
    }
    bb_reset(&o->buf);
    return 0;
}

static void out_free(fio_out *o)
{
    g_free(o->tmp);
    g_free(o->final);
    bb_free(&o->buf);
    g_free(o);
}

static void local_abort(fio_out *o)
{
    if (o->fd >= 0)
        close(o->fd);
    unlink(o->tmp);
    out_free(o);
}

static int local_close(fio_out *o, char **err)
{
    if (!o->failed && o->buf.len && !write_full(o->fd, o->buf.data, o->buf.len)) {
        o->failed = true;
        o->err_no = errno;
    }
    if (!o->failed && o->io->fsync_data && fsync(o->fd) != 0) {
        o->failed = true;
        o->err_no = errno;
    }
    if (o->failed) {
        *err = g_strdup_printf("cannot write %s: %s", o->final, g_strerror(o->err_no));
        local_abort(o);
        return -1;
    }
    close(o->fd);
    o->fd = -1;
    if (rename(o->tmp, o->final) != 0) {
        *err = g_strdup_printf("cannot rename %s: %s", o->tmp, g_strerror(errno));
        unlink(o->tmp);
        out_free(o);
        return -1;
    }
    out_free(o);
    return 0;
}

static bool local_read_all(file_io *io, const char *location, byte_buf *out, char **err)
{
    gchar *data = NULL;
    gsize len = 0;
    GError *ge = NULL;
    if (!g_file_get_contents(local_path(location), &data, &len, &ge)) {
        *err = g_strdup(ge->message);
        g_error_free(ge);
        return false;
    }
    bb_append(out, data, len);
    g_free(data);
    return true;
}

static bool write_tmp(const char *location, const void *p, size_t n, bool do_fsync, char **tmp_out, char **err)
{
    if (!mkparents(location, err))
        return false;
    char *tmp = g_strdup_printf("%s.tmp-%08x", location, g_random_int());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        *err = g_strdup_printf("cannot create %s: %s", tmp, g_strerror(errno));
        g_free(tmp);
        return false;
    }
    bool ok = write_full(fd, p, n) && (!do_fsync || fsync(fd) == 0);
    int e = errno;
    close(fd);
    if (!ok) {
        *err = g_strdup_printf("cannot write %s: %s", tmp, g_strerror(e));
        unlink(tmp);
        g_free(tmp);
        return false;
    }
    *tmp_out = tmp;
    return true;
}

static bool local_put(file_io *io, const char *location, const void *p, size_t n, char **err)
{
    char *tmp;
    if (!write_tmp(location, p, n, ((local_io *)io)->fsync_data, &tmp, err))
        return false;
    bool ok = rename(tmp, location) == 0;
    if (!ok) {
        *err = g_strdup_printf("cannot rename %s: %s", tmp, g_strerror(errno));
        unlink(tmp);
    }
    g_free(tmp);
    return ok;
}

static fio_result local_put_if_absent(file_io *io, const char *location, const void *p, size_t n, char **err)
{
    char *tmp;
    /* the metadata file is the commit: always fsynced, and its directory too */
    if (!write_tmp(location, p, n, true, &tmp, err))
        return FIO_ERROR;
    fio_result r = FIO_OK;
    if (link(tmp, location) != 0) {
        if (errno == EEXIST)
            r = FIO_EXISTS;
        else {
            *err = g_strdup_printf("cannot link %s: %s", location, g_strerror(errno));
            r = FIO_ERROR;
        }
    }
    unlink(tmp);
    g_free(tmp);
    if (r == FIO_OK)
        fsync_dir(location);
    return r;
}

static bool local_exists(file_io *io, const char *location)
{
    return g_file_test(local_path(location), G_FILE_TEST_EXISTS);
}

static bool local_remove(file_io *io, const char *location) { return g_unlink(local_path(location)) == 0; }

static char **local_list(file_io *io, const char *dir_location, char **err)
{
    GPtrArray *names = g_ptr_array_new();
    GDir *d = g_dir_open(local_path(dir_location), 0, NULL);
    if (d) {
        const char *n;
        while ((n = g_dir_read_name(d)))
            g_ptr_array_add(names, g_strdup(n));
        g_dir_close(d);
    }
    g_ptr_array_add(names, NULL);
    return (char **)g_ptr_array_free(names, FALSE);
}

/* Locations under dir_location keep its spelling (a "file:" URI stays one). */
static bool walk_dir(const char *path, const char *location, fio_walk_fn fn, void *ctx, int depth, char **err)
{
    GError *ge = NULL;
    GDir *d = g_dir_open(path, 0, &ge);
    if (!d) {
        bool missing = g_error_matches(ge, G_FILE_ERROR, G_FILE_ERROR_NOENT);
        if (!missing)
            *err = g_strdup_printf("cannot list %s: %s", path, ge->message);
        g_error_free(ge);
        return missing;
    }
    bool ok = true;
    const char *n;
    while (ok && (n = g_dir_read_name(d))) {
        g_autofree char *p = g_build_filename(path, n, NULL);
        g_autofree char *loc = fio_join(location, n);
        struct stat st;
        if (lstat(p, &st) != 0)
            continue; /* removed meanwhile */
        if (S_ISDIR(st.st_mode)) {
            if (depth < 64) /* a table is a few levels deep; a loop of links is not followed anyway */
                ok = walk_dir(p, loc, fn, ctx, depth + 1, err);
        } else if (S_ISREG(st.st_mode)) {
            fn(ctx, loc, (int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000);
        }
    }
    g_dir_close(d);
    return ok;
}

static bool local_walk(file_io *io, const char *dir_location, fio_walk_fn fn, void *ctx, char **err)
{
    return walk_dir(local_path(dir_location), dir_location, fn, ctx, 0, err);
}

static void local_destroy(file_io *io) { g_free(io); }

file_io *file_io_local_new(bool fsync_data)
{
    local_io *l = g_new0(local_io, 1);
    l->fsync_data = fsync_data;
    l->base.create = local_create;
    l->base.write = local_write;
    l->base.error = local_error;
    l->base.buffered = local_buffered;
    l->base.drain = local_drain;
    l->base.close = local_close;
    l->base.abort = local_abort;
    l->base.read_all = local_read_all;
    l->base.put = local_put;
    l->base.put_if_absent = local_put_if_absent;
    l->base.exists = local_exists;
    l->base.remove = local_remove;
    l->base.list = local_list;
    l->base.walk = local_walk;
    l->base.destroy = local_destroy;
    return &l->base;
}
