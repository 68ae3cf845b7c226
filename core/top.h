/*
 * `ecflow top`: a running pipeline seen through its /status.json, one row
 * per stage and the pipeline's facts below, as a full-screen terminal view
 * (plain ANSI, works over SSH) or one plain-text snapshot (--once).
 */
#pragma once
#include <glib.h>

/* The columns a view can be sorted by; `s` cycles them. */
typedef enum {
    ECF_TOP_SORT_DAG,
    ECF_TOP_SORT_IN,
    ECF_TOP_SORT_OUT,
    ECF_TOP_SORT_FAILED,
    ECF_TOP_SORT_FILL
} ecf_top_sort;

/* One view from two /status.json documents taken `prev` then `cur` (rates
 * are their difference); `prev` may be NULL (no rates yet). `width` 0 means
 * no limit; `url` is printed in the title. NULL with `error` set when a
 * document is not a status document. */
char *ecf_top_render(const char *prev, const char *cur, const char *url, ecf_top_sort sort, gboolean reverse,
                     guint width, GError **error);

/* GET url + path; the body, or NULL with `error`. */
char *ecf_top_fetch(const char *url, const char *path, GError **error);

/* The verb: `url` like http://127.0.0.1:9464. Returns an exit code. */
int ecf_top_run(const char *url, double interval, gboolean once);
