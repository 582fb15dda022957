/* Leveled logging to stderr with a timestamp. */
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"

static enum log_level log_level_cur = LOG_INFO;
static const char *const log_names[] = { "error", "warn", "info", "debug" };

void log_set_level(enum log_level level)
{
	log_level_cur = level;
}

enum log_level log_get_level(void)
{
	return log_level_cur;
}

int log_level_parse(const char *name, enum log_level *levelp)
{
	for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (strcmp(name, log_names[i]) == 0) {
			*levelp = (enum log_level)i;
			return 0;
		}
	}
	return EINVAL;
}

static void log_prefix(enum log_level level)
{
	struct timespec ts;
	struct tm tm;
	char when[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %s: ", when, ts.tv_nsec / 1000000, log_names[level]);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (level > log_level_cur)
		return;
	log_prefix(level);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void log_limited(struct log_limit *ll, enum log_level level, const char *fmt, ...)
{
	int64_t now;
	va_list ap;

	if (level > log_level_cur)
		return;
	now = clock_mono_ns();
	if (ll->next_ns && now < ll->next_ns) {
		ll->held++;
		return;
	}
	log_prefix(level);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (ll->held)
		fprintf(stderr, " (and %" PRIu64 " more like it since the previous one)",
			ll->held);
	fputc('\n', stderr);
	ll->held = 0;
	ll->next_ns = now + (int64_t)LOG_LIMIT_INTERVAL_S * 1000000000;
}
