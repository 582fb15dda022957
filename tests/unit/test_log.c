/* log: levels, and the per-site limiter that keeps request-rate lines from flooding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "log.h"

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

int main(void)
{
	RUN(test_log_limited_writes_once_per_interval_and_counts_the_rest);
	RUN(test_log_limited_below_the_level_writes_and_holds_nothing);
	CHECK_DONE();
}
