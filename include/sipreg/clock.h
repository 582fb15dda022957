/* The monotonic clock every timeout, lag and rate limit in the daemon is measured on. */
#ifndef SIPREG_CLOCK_H
#define SIPREG_CLOCK_H

#include <stdint.h>
#include <time.h>

#define CLOCK_NS_PER_MS INT64_C(1000000)

/* Nanoseconds on CLOCK_MONOTONIC (never steps with the wall clock). */
static inline int64_t clock_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
