/* Leveled logging to stderr with a timestamp, or to syslog; the one escaping of
 * client-controlled text. */
#include "sipreg/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sipreg/clock.h"
#include "util/log_syslog.h"

static enum log_level log_level_cur = LOG_INFO;
static enum log_target log_target_cur = LOG_TARGET_STDERR;
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

/* Where a finished record goes: text is one line, NUL-terminated, already escaped. */
static void log_emit(enum log_level level, const char *text, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char when[32];

	if (log_target_cur == LOG_TARGET_SYSLOG) {
		log_syslog_write((int)level, text);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %s: ", when, ts.tv_nsec / 1000000, log_names[level]);
	fwrite(text, 1, len, stderr);
	fputc('\n', stderr);
}

/* Formats a record into out (cap >= 4 * LOG_LINE_MAX + 8) as one line: a control byte
 * that still reaches it (the multi-line text of a library's error message) is written as
 * \xHH, never raw. Returns the length. */
static size_t log_format(char *out, const char *fmt, va_list ap)
{
	char text[LOG_LINE_MAX];
	int len = vsnprintf(text, sizeof(text), fmt, ap);
	size_t n = 0, tlen;

	if (len < 0)
		len = 0;
	tlen = (size_t)len >= sizeof(text) ? sizeof(text) - 1 : (size_t)len;
	for (size_t i = 0; i < tlen; i++) {
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
	if ((size_t)len >= sizeof(text)) {
		memcpy(out + n, " (cut)", 6);
		n += 6;
	}
	out[n] = '\0';
	return n;
}

/* The formatted record, the " (cut)" mark and log_limited's count fit in it. */
#define LOG_OUT_MAX (4 * LOG_LINE_MAX + 96)

void log_msg(enum log_level level, const char *fmt, ...)
{
	char out[LOG_OUT_MAX];
	va_list ap;
	size_t n;

	if (level > log_level_cur)
		return;
	va_start(ap, fmt);
	n = log_format(out, fmt, ap);
	va_end(ap);
	log_emit(level, out, n);
}

void log_limited(struct log_limit *ll, enum log_level level, const char *fmt, ...)
{
	char out[LOG_OUT_MAX];
	int64_t now;
	va_list ap;
	size_t n;

	if (level > log_level_cur)
		return;
	now = clock_mono_ns();
	if (ll->next_ns && now < ll->next_ns) {
		ll->held++;
		return;
	}
	va_start(ap, fmt);
	n = log_format(out, fmt, ap);
	va_end(ap);
	if (ll->held)
		n += (size_t)snprintf(out + n, sizeof(out) - n,
				      " (and %" PRIu64 " more like it since the previous one)",
				      ll->held);
	log_emit(level, out, n);
	ll->held = 0;
	ll->next_ns = now + (int64_t)LOG_LIMIT_INTERVAL_S * 1000000000;
}

void log_trace(const char *head, const void *p, size_t len)
{
	size_t hlen = strlen(head), cap = 8 + hlen + 4 * len + 1;
	char *out = malloc(cap);

	if (!out) {
		log_msg(LOG_WARN, "trace: %s(%zu bytes not shown: no memory)", head, len);
		return;
	}
	memcpy(out, "trace: ", 7);
	memcpy(out + 7, head, hlen);
	/* Every byte fits escaped (4 each), so nothing is cut. */
	log_escape(p, len, out + 7 + hlen, cap - 7 - hlen);
	log_emit(LOG_INFO, out, strlen(out));
	free(out);
}

void log_set_target(enum log_target target)
{
	if (target == LOG_TARGET_SYSLOG)
		log_syslog_open();
	else
		log_syslog_close();
	log_target_cur = target;
}

void log_reopen(void)
{
	if (log_target_cur == LOG_TARGET_SYSLOG)
		log_syslog_open();
}
