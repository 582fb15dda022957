/* What a command talks to: the backends a config names, opened through the registry on
 * first use, the loop that waits for their answers, and a running daemon's control
 * socket where the store lives in that daemon. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl/ctl.h"

/* How long one operation may take, beyond the backend's own timeouts and reconnects. */
#define CTL_TIMEOUT_S 30

static struct location *ctl_open(struct ctl *c, bool directory)
{
	const struct location_conf *lc = directory ? c->cfg->directory : c->cfg->location;
	struct location *l = NULL;
	int err;

	if (!directory && c->dir && location_conf_same_store(c->cfg->directory, lc))
		return c->dir;
	if (directory && c->loc && location_conf_same_store(lc, c->cfg->location))
		return c->loc;
	err = location_open(&l, lc, c->base, "sipregctl");
	if (err)
		ctl_die(CTL_EXIT_FAIL, "cannot open the %s backend \"%s\": %s",
			directory ? "directory" : "location", location_conf_backend(lc),
			strerror(err));
	return l;
}

struct location *ctl_directory(struct ctl *c)
{
	if (!c->dir)
		c->dir = ctl_open(c, true);
	return c->dir;
}

struct location *ctl_location(struct ctl *c)
{
	if (!c->loc)
		c->loc = ctl_open(c, false);
	return c->loc;
}

bool ctl_in_process(const struct ctl *c, bool directory)
{
	return location_conf_in_process(directory ? c->cfg->directory : c->cfg->location);
}

static void ctl_timeout(evutil_socket_t fd, short what, void *arg)
{
	bool *fired = arg;

	(void)fd;
	(void)what;
	*fired = true;
}

int ctl_wait(struct ctl *c, int started, const char *what)
{
	struct timeval tv = {.tv_sec = CTL_TIMEOUT_S};
	bool fired = false;
	struct event *t;

	if (started)
		return started;
	t = evtimer_new(c->base, ctl_timeout, &fired);
	if (!t || evtimer_add(t, &tv) != 0)
		ctl_die(CTL_EXIT_FAIL, "out of memory");
	while (!c->done && !fired)
		event_base_loop(c->base, EVLOOP_ONCE);
	event_free(t);
	if (!c->done)
		ctl_die(CTL_EXIT_FAIL, "%s: no answer within %d s", what, CTL_TIMEOUT_S);
	c->done = false;
	return c->err;
}

int ctl_control_each(struct ctl *c, const char *request, ctl_line_h *lineh, void *arg)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const char *path = c->cfg->control_socket;
	char buf[8192 + 1], last[512] = ""; /* + 1: room for a NUL */
	size_t have = 0;
	ssize_t n;
	int fd;

	if (!path)
		ctl_die(CTL_EXIT_FAIL,
			"%s: the store is in sipregd's memory and the config names no "
			"control.socket to ask it through",
			c->cfg_path ? c->cfg_path : "config");
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
		ctl_die(CTL_EXIT_FAIL, "cannot reach sipregd on %s: %s", path, strerror(errno));
	if (write(fd, request, strlen(request)) != (ssize_t)strlen(request) ||
	    write(fd, "\n", 1) != 1)
		ctl_die(CTL_EXIT_FAIL, "cannot send to sipregd on %s: %s", path, strerror(errno));
	/* Every line but the last goes to stdout; the last says OK or ERR. */
	while ((n = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0) {
		char *start = buf, *nl;

		have += (size_t)n;
		while ((nl = memchr(start, '\n', have - (size_t)(start - buf))) != NULL) {
			size_t len = (size_t)(nl - start);

			if (last[0])
				lineh(last, arg);
			snprintf(last, sizeof(last), "%.*s", (int)len, start);
			if (len >= sizeof(last)) { /* a long line is data, never the status */
				*nl = '\0';
				lineh(start, arg);
				last[0] = '\0';
			}
			start = nl + 1;
		}
		have -= (size_t)(start - buf);
		memmove(buf, start, have);
		if (have == sizeof(buf) - 1) { /* a line longer than the buffer: pass it on */
			buf[have] = '\0';
			lineh(buf, arg);
			have = 0;
		}
	}
	close(fd);
	if (strcmp(last, "OK") == 0)
		return 0;
	if (strncmp(last, "ERR ", 4) == 0) {
		const char *msg = strchr(last + 4, ' ');

		ctl_die(CTL_EXIT_FAIL, "sipregd: %s", msg ? msg + 1 : last + 4);
	}
	ctl_die(CTL_EXIT_FAIL, "sipregd on %s closed the connection without an answer", path);
}


static void ctl_print_line(const char *line, void *arg)
{
	(void)arg;
	printf("%s\n", line);
}

int ctl_control(struct ctl *c, const char *request)
{
	return ctl_control_each(c, request, ctl_print_line, NULL);
}
