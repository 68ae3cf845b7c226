/*
 * sink-file: one JSON document per line (NDJSON) to a file or stdout.
 * A batch is written with one writev-sized buffer, flushed (and fsynced when
 * asked), and only then acknowledged.
 */
#include <ecflow/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *path;
    bool fsync;
    bool append;
    int64_t buffer_size;
} file_config;

static const ecf_option file_options[] = {
    ECF_OPT_STRING("path", file_config, path, "-", 0, "output file; \"-\" = standard output"),
    ECF_OPT_BOOL("fsync", file_config, fsync, "false", "fsync after every batch before acking"),
    ECF_OPT_BOOL("append", file_config, append, "true", "append to an existing file instead of truncating it"),
    ECF_OPT_SIZE("buffer_size", file_config, buffer_size, "1MiB", 4096, 1073741824, "bytes gathered before a write(2)"),
    ECF_OPT_END,
};

typedef struct {
    int fd;
    bool owns_fd;
    char *buf;
    size_t used;
    ecf_metric *m_bytes;
} file_state;

static ecf_status file_create(ecf_stage *stage)
{
    file_state *st = calloc(1, sizeof *st);
    st->fd = -1;
    ecf_set_state(stage, st);
    return ECF_OK;
}

static ecf_status file_start(ecf_stage *stage)
{
    file_config *cfg = ecf_config(stage);
    file_state *st = ecf_state(stage);
    if (strcmp(cfg->path, "-") == 0) {
        st->fd = STDOUT_FILENO;
    } else {
        int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (cfg->append ? O_APPEND : O_TRUNC);
        st->fd = open(cfg->path, flags, 0644);
        if (st->fd < 0)
            return ecf_fail(stage, ECF_ERR_IO, "cannot open '%s': %s", cfg->path, strerror(errno));
        st->owns_fd = true;
    }
    st->buf = malloc((size_t)cfg->buffer_size);
    st->m_bytes =
        ecf_metric_new(stage, ECF_METRIC_COUNTER, "file_bytes_written_total", "Bytes written to the output file");
    return ECF_OK;
}

static bool write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool drain(file_state *st)
{
    bool ok = write_all(st->fd, st->buf, st->used);
    st->used = 0;
    return ok;
}

static bool append(file_state *st, size_t cap, const void *p, size_t len)
{
    if (len > cap) /* bigger than the buffer: write it straight through */
        return drain(st) && write_all(st->fd, p, len);
    if (st->used + len > cap && !drain(st))
        return false;
    memcpy(st->buf + st->used, p, len);
    st->used += len;
    return true;
}

static ecf_status file_process(ecf_stage *stage, ecf_batch *b)
{
    file_config *cfg = ecf_config(stage);
    file_state *st = ecf_state(stage);
    uint32_t n = ecf_batch_count(stage, b);
    size_t cap = (size_t)cfg->buffer_size;
    size_t bytes = 0;
    bool ok = true;
    for (uint32_t i = 0; i < n && ok; i++) {
        const ecf_message *m = ecf_batch_message(stage, b, i);
        ok = append(st, cap, m->payload, m->payload_len) && append(st, cap, "\n", 1);
        bytes += m->payload_len + 1;
    }
    ok = ok && drain(st);
    if (ok && cfg->fsync && st->owns_fd && fsync(st->fd) != 0)
        ok = false;
    if (!ok) {
        st->used = 0;
        /* the core fails every message of the batch with this reason */
        return ecf_fail(stage, ECF_ERR_IO, "writing '%s' failed: %s", cfg->path, strerror(errno));
    }
    ecf_metric_add(stage, st->m_bytes, (double)bytes);
    ecf_batch_ack_all(stage, b);
    return ECF_OK;
}

static void file_stop(ecf_stage *stage)
{
    file_state *st = ecf_state(stage);
    if (st->owns_fd)
        close(st->fd);
    st->fd = -1;
}

static void file_destroy(ecf_stage *stage)
{
    file_state *st = ecf_state(stage);
    if (!st)
        return;
    free(st->buf);
    free(st);
}

ECF_PLUGIN_DEFINE(.name = "sink-file", .kind = ECF_SINK, .version = "1.0.0",
                  .summary = "Writes messages as NDJSON to a file or stdout; acks after the write (and fsync)",
                  .config_size = sizeof(file_config), .options = file_options, .create = file_create,
                  .start = file_start, .process = file_process, .stop = file_stop, .destroy = file_destroy, )
