/* log: levels, the per-site limiter that keeps request-rate lines from flooding, and the
 * escaping that keeps client-controlled text from writing lines of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "sipreg/log.h"

/* Run fn with stderr going to a temporary file; returns what it wrote (caller frees). */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
	char path[] = "/tmp/sipreg-test-log-XXXXXX";
	int fd = mkstemp(path);
	int saved = dup(STDERR_FILENO);
	char *out = NULL;
	long len;
	FILE *f;

	if (fd < 0 || saved < 0)
		return NULL;
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	fn(arg);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	f = fdopen(fd, "r");
	unlink(path);
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	out = calloc(1, (size_t)len + 1);
	if (out && fread(out, 1, (size_t)len, f) != (size_t)len) {
		free(out);
		out = NULL;
	}
	fclose(f);
	return out;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

static void burst(void *arg)
{
	struct log_limit *ll = arg;

	for (int i = 0; i < 5; i++)
		log_limited(ll, LOG_WARN, "backend refused request %d", i);
}

static void one_more(void *arg)
{
	log_limited(arg, LOG_WARN, "backend refused request %d", 5);
}

static void test_log_limited_writes_once_per_interval_and_counts_the_rest(void)
{
	struct log_limit ll = { 0 };
	char *out;

	log_set_level(LOG_INFO);
	out = capture_stderr(burst, &ll);
	CHECK(out != NULL);
	CHECK_INT(count_lines(out), 1);
	CHECK(strstr(out, "warn: backend refused request 0\n") != NULL);
	CHECK_INT(ll.held, 4);
	free(out);

	/* The interval has passed: the next line carries the count held back. */
	ll.next_ns = 1;
	out = capture_stderr(one_more, &ll);
	CHECK(out != NULL);
	CHECK_INT(count_lines(out), 1);
	CHECK(strstr(out, "backend refused request 5 (and 4 more like it since the previous "
			  "one)\n") != NULL);
	CHECK_INT(ll.held, 0);
	free(out);
}

static void test_log_limited_below_the_level_writes_and_holds_nothing(void)
{
	struct log_limit ll = { 0 };
	char *out;

	log_set_level(LOG_ERR);
	out = capture_stderr(burst, &ll);
	CHECK(out != NULL);
	CHECK_STR(out, "");
	CHECK_INT(ll.held, 0);
	free(out);
	log_set_level(LOG_INFO);
}

static void test_log_escape_keeps_printable_text_and_hexes_the_rest(void)
{
	static const char raw[] =
	    "al\\ice\"\r\n 2030-01-01T00:00:00.000Z error: x\x7f\x80\xff\x01";
	char buf[LOG_ESC_SIZE];

	CHECK_STR(log_escape("alice@example.com", 17, buf, sizeof(buf)), "alice@example.com");
	CHECK_STR(log_escape(raw, sizeof(raw) - 1, buf, sizeof(buf)),
		  "al\\x5cice\\x22\\x0d\\x0a 2030-01-01T00:00:00.000Z error: "
		  "x\\x7f\\x80\\xff\\x01");
	/* Bytes, not C strings: a NUL is shown and does not end the value. */
	CHECK_STR(log_escape("a\0b", 3, buf, sizeof(buf)), "a\\x00b");
	CHECK_STR(log_escape(NULL, 0, buf, sizeof(buf)), "");
	CHECK_STR(log_escape("abc", 3, buf, LOG_ESC_MIN - 1), "");
}

static void test_log_escape_cuts_long_values_with_a_visible_mark(void)
{
	char in[600], buf[LOG_ESC_SIZE], want[LOG_ESC_SIZE];

	memset(in, 'a', sizeof(in));
	/* Exactly filling the buffer: whole, no mark. */
	log_escape(in, LOG_ESC_SIZE - 1, buf, sizeof(buf));
	CHECK_INT(strlen(buf), LOG_ESC_SIZE - 1);
	CHECK(strstr(buf, "\\...") == NULL);
	/* One more byte: cut, and the mark says so within the same bound. */
	log_escape(in, LOG_ESC_SIZE, buf, sizeof(buf));
	memset(want, 'a', LOG_ESC_SIZE - 5);
	memcpy(want + LOG_ESC_SIZE - 5, "\\...", 5);
	CHECK_STR(buf, want);
	/* An escape is never split by the cut. */
	memset(in, '\n', sizeof(in));
	log_escape(in, sizeof(in), buf, sizeof(buf));
	CHECK_INT(strlen(buf), LOG_ESC_SIZE - 5 - (LOG_ESC_SIZE - 5) % 4 + 4);
	CHECK(strncmp(buf + strlen(buf) - 8, "\\x0a\\...", 8) == 0);
	CHECK_STR(log_escape("ab\r", 3, buf, LOG_ESC_MIN), "ab\\x0d");
	CHECK_STR(log_escape("ab\r\r", 4, buf, LOG_ESC_MIN), "ab\\...");
}

static void multi_line(void *arg)
{
	(void)arg;
	log_msg(LOG_WARN, "pg: %s", "ERROR: x\nDETAIL: forged\r\nerror: y");
}

static void test_log_record_is_one_line_whatever_reaches_it(void)
{
	char *out;

	log_set_level(LOG_INFO);
	out = capture_stderr(multi_line, NULL);
	CHECK(out != NULL);
	CHECK_INT(count_lines(out), 1);
	CHECK(out && strstr(out, "warn: pg: ERROR: x\\x0aDETAIL: forged\\x0d\\x0aerror: y\n"));
	free(out);
}

/* A 5000-byte message: past the 2 KiB cap of other records. */
static void long_trace(void *arg)
{
	char *msg = arg;

	log_trace("udp in from 127.0.0.1:5062 (5000 bytes): ", msg, 5000);
}

static void test_log_trace_writes_a_whole_message_on_one_line_at_any_level(void)
{
	char *msg = malloc(5000), *out, *p;
	size_t crlf = 0;

	if (!msg)
		return;
	for (size_t i = 0; i < 5000; i++)
		msg[i] = (i % 50 == 48) ? '\r' : (i % 50 == 49) ? '\n' : (char)('a' + i % 26);
	log_set_level(LOG_ERR); /* a trace is written whatever the level */
	out = capture_stderr(long_trace, msg);
	log_set_level(LOG_INFO);
	CHECK(out != NULL);
	CHECK_INT(count_lines(out), 1);
	p = out ? strstr(out, "info: trace: udp in from 127.0.0.1:5062 (5000 bytes): ") : NULL;
	CHECK(p != NULL);
	for (char *q = p; q && (q = strstr(q, "\\x0d\\x0a")); q += 8)
		crlf++;
	CHECK_INT(crlf, 100);
	/* Every byte is there: 4800 letters and 100 CR LF, 8 characters each escaped. */
	CHECK(p && strlen(p) == strlen("info: trace: udp in from 127.0.0.1:5062 (5000 bytes): ") +
					 4800 + 800 + 1);
	CHECK(out && !strstr(out, "(cut)"));
	free(out);
	free(msg);
}

int main(void)
{
	RUN(test_log_escape_keeps_printable_text_and_hexes_the_rest);
	RUN(test_log_escape_cuts_long_values_with_a_visible_mark);
	RUN(test_log_record_is_one_line_whatever_reaches_it);
	RUN(test_log_trace_writes_a_whole_message_on_one_line_at_any_level);
	RUN(test_log_limited_writes_once_per_interval_and_counts_the_rest);
	RUN(test_log_limited_below_the_level_writes_and_holds_nothing);
	CHECK_DONE();
}
