#include "clock.h"

static gint64 real_now(void *user) { return g_get_real_time(); }
static gint64 real_monotonic(void *user) { return g_get_monotonic_time(); }

static const ecf_clock real_clock = {real_now, real_monotonic, NULL};
static ecf_clock current = {real_now, real_monotonic, NULL};

void ecf_clock_set(const ecf_clock *clock) { current = clock ? *clock : real_clock; }

gint64 ecf_clock_now_us(void) { return current.now_us(current.user); }
gint64 ecf_clock_monotonic_us(void) { return current.monotonic_us(current.user); }
