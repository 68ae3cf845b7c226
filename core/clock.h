/* The host clock. Tests swap in a fake one so they never sleep for time. */
#pragma once
#include <glib.h>

typedef struct {
    gint64 (*now_us)(void *user); /* wall clock, UNIX epoch */
    gint64 (*monotonic_us)(void *user);
    void *user;
} ecf_clock;

/* NULL restores the real clock. */
void ecf_clock_set(const ecf_clock *clock);
gint64 ecf_clock_now_us(void);
gint64 ecf_clock_monotonic_us(void);
