/* Leveled logging to stderr with a timestamp; the one escaping of client-controlled text. */
#include "sipreg/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sipreg/clock.h"

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

/* Longest record written; a longer one is cut (the values in it are bounded already). */
#define LOG_LINE_MAX 2048

static const char log_hex[] = "0123456789abcdef";

/* true for the bytes log_escape() writes as \xHH. */
static bool log_byte_unsafe(unsigned char c)
{
	return c < 0x20 || c >= 0x7f || c == '"' || c == '\\';
}

const char *log_escape(const void *p, size_t len, char *buf, size_t cap)
{
	static const char cut[] = "\\...";
	const unsigned char *s = p;
	size_t need = 0, limit, n = 0, i;

	if (!buf || cap < LOG_ESC_MIN)
		return "";
	for (i = 0; i < len && need < cap; i++)
		need += log_byte_unsafe(s[i]) ? 4 : 1;
	/* What does not fit whole is cut at a byte boundary, leaving room for the mark. */
	limit = need < cap ? cap - 1 : cap - sizeof(cut);
	for (i = 0; i < len; i++) {
		if (!log_byte_unsafe(s[i])) {
			if (n + 1 > limit)
				break;
			buf[n++] = (char)s[i];
			continue;
		}
		if (n + 4 > limit)
			break;
		buf[n++] = '\\';
		buf[n++] = 'x';
		buf[n++] = log_hex[s[i] >> 4];
		buf[n++] = log_hex[s[i] & 15];
	}
	if (i < len)
		memcpy(buf + n, cut, sizeof(cut));
	else
		buf[n] = '\0';
	return buf;
}

/* Writes a formatted record as one line: a control byte that still reaches the sink (the
 * multi-line text of a library's error message) is written as \xHH, never raw. */
static void log_put(const char *text, size_t len)
{
	char out[4 * LOG_LINE_MAX];
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c >= 0x20 && c != 0x7f) {
			out[n++] = (char)c;
			continue;
		}
		out[n++] = '\\';
		out[n++] = 'x';
		out[n++] = log_hex[c >> 4];
		out[n++] = log_hex[c & 15];
	}
	fwrite(out, 1, n, stderr);
}

static void log_vput(const char *fmt, va_list ap)
{
	char text[LOG_LINE_MAX];
	int n = vsnprintf(text, sizeof(text), fmt, ap);

	if (n < 0)
		return;
	if ((size_t)n >= sizeof(text)) {
		log_put(text, sizeof(text) - 1);
		fputs(" (cut)", stderr);
		return;
	}
	log_put(text, (size_t)n);
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
	log_vput(fmt, ap);
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
	log_vput(fmt, ap);
	va_end(ap);
	if (ll->held)
		fprintf(stderr, " (and %" PRIu64 " more like it since the previous one)",
			ll->held);
	fputc('\n', stderr);
	ll->held = 0;
	ll->next_ns = now + (int64_t)LOG_LIMIT_INTERVAL_S * 1000000000;
}
