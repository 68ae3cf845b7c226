/*
 * Mutex and condition variable for the core. Plain pthreads rather than
 * GMutex/GCond: GLib implements those on raw futexes, which
 * ThreadSanitizer cannot see, so every lock would look like a data race.
 * Timed waits use the monotonic clock, in GLib's microseconds.
 */
#pragma once
#include <glib.h>
#include <pthread.h>
#include <time.h>

typedef pthread_mutex_t ecf_mutex;
typedef pthread_cond_t ecf_cond;

static inline void ecf_mutex_init(ecf_mutex *m) { pthread_mutex_init(m, NULL); }
static inline void ecf_mutex_clear(ecf_mutex *m) { pthread_mutex_destroy(m); }
static inline void ecf_mutex_lock(ecf_mutex *m) { pthread_mutex_lock(m); }
static inline void ecf_mutex_unlock(ecf_mutex *m) { pthread_mutex_unlock(m); }

static inline void ecf_cond_init(ecf_cond *c)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
}

static inline void ecf_cond_clear(ecf_cond *c) { pthread_cond_destroy(c); }
static inline void ecf_cond_broadcast(ecf_cond *c) { pthread_cond_broadcast(c); }

/* Waits until signalled or g_get_monotonic_time() >= deadline_us;
 * FALSE on timeout. */
static inline gboolean ecf_cond_wait_until(ecf_cond *c, ecf_mutex *m, gint64 deadline_us)
{
    struct timespec ts = {(time_t)(deadline_us / G_USEC_PER_SEC), (long)(deadline_us % G_USEC_PER_SEC) * 1000};
    return pthread_cond_timedwait(c, m, &ts) == 0;
}
