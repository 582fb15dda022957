/* The control socket: sipregctl's way into a running daemon. Every request runs through
 * the same location interface as the REGISTER path, on the daemon's loop; a connection
 * holds at most one request, bounded in size, and the answer is streamed as it comes. */
#include "ops/control.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ops/debug.h"
#include "ops/show.h"
#include "sipreg/log.h"

/* Longest request line; anything longer is refused. */
#define CONTROL_LINE_MAX 4096
#define CONTROL_USAGE                                                                      \
	"want: bindings [AOR] | dump [AOR] | unbind AOR [KEY] | users [DOMAIN] | " \
	"debug ip ADDR [on|off] | " \
	"debug list | stats"
/* Connections at once; more wait in the listen backlog. */
#define CONTROL_CONNS_MAX 16

struct control_conn {
	struct control *ctl;
	struct control_conn *prev, *next;
	struct bufferevent *bev;
	struct location_op *op;
	int64_t now;
	char domain[256]; /* users: only this domain's, "" for all */
	bool answered; /* the final line is written: close once it is sent */
};

struct control {
	struct event_base *base;
	struct evconnlistener *lis;
	char *path;
	struct location *loc, *dir;
	struct control_conn *conns;
	size_t n_conns;
	struct debug *debug;	  /* NULL: no "debug" */
	control_stats_h *statsh; /* NULL: no "stats" */
	void *stats_arg;
};

static void conn_free(struct control_conn *c)
{
	struct control *ctl = c->ctl;

	location_op_cancel(&c->op);
	if (c->prev)
		c->prev->next = c->next;
	else
		ctl->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ctl->n_conns--;
	bufferevent_free(c->bev);
	free(c);
	if (ctl->n_conns < CONTROL_CONNS_MAX)
		evconnlistener_enable(ctl->lis);
}

static void conn_write(const char *p, size_t len, void *arg)
{
	struct control_conn *c = arg;

	bufferevent_write(c->bev, p, len);
}

/* The last line of an answer; the connection closes once it is out. */
static void conn_finish(struct control_conn *c, int err, const char *what)
{
	char line[256];

	c->op = NULL;
	if (err)
		snprintf(line, sizeof(line), "ERR %s %s\n", strerrorname_np(err) ? strerrorname_np(err) : "E?",
			 what ? what : strerror(err));
	else
		snprintf(line, sizeof(line), "OK\n");
	bufferevent_write(c->bev, line, strlen(line));
	c->answered = true;
	bufferevent_disable(c->bev, EV_READ);
}

static void on_binding(int err, const struct binding *b, void *arg)
{
	struct control_conn *c = arg;

	if (b) {
		show_binding(conn_write, c, b, c->now);
		return;
	}
	conn_finish(c, err, NULL);
}

static void on_fetch(int err, const struct binding_set *set, void *arg)
{
	struct control_conn *c = arg;

	for (size_t i = 0; !err && i < set->n; i++)
		show_binding(conn_write, c, &set->v[i], c->now);
	conn_finish(c, err, NULL);
}

static void on_user(int err, const struct dir_user *u, void *arg)
{
	struct control_conn *c = arg;

	if (u) {
		/* A user of every domain (empty) belongs to each. */
		if (!c->domain[0] || u->domain.len == 0 ||
		    (u->domain.len == strlen(c->domain) &&
		     memcmp(u->domain.p, c->domain, u->domain.len) == 0))
			show_user(conn_write, c, u);
		return;
	}
	conn_finish(c, err, NULL);
}

static void on_unbind(int err, void *arg)
{
	struct control_conn *c = arg;

	if (!err)
		conn_write("unbound\n", 8, c);
	conn_finish(c, err, err == ENOENT ? "no such binding" : NULL);
}

static void on_dump_binding(int err, const struct binding *b, void *arg)
{
	struct control_conn *c = arg;

	if (b) {
		show_binding_record(conn_write, c, b);
		return;
	}
	conn_finish(c, err, NULL);
}

static void on_dump_fetch(int err, const struct binding_set *set, void *arg)
{
	struct control_conn *c = arg;

	for (size_t i = 0; !err && i < set->n; i++)
		show_binding_record(conn_write, c, &set->v[i]);
	conn_finish(c, err, NULL);
}

/* "dump [AOR]": every stored field of the live bindings (all, or of one AOR) as records
 * sipregctl reads back (show peers, show peer, lookup). */
static int conn_dump(struct control_conn *c, char **w, size_t n)
{
	struct sip_str a;

	if (n == 2) {
		a = sip_str_c(w[1]);
		return location_fetch(c->ctl->loc, &a, c->now, on_dump_fetch, c, &c->op);
	}
	return location_iterate(c->ctl->loc, c->now, on_dump_binding, c, &c->op);
}

/* Split line into at most max words at single spaces; every byte must be printable
 * ASCII (sipregctl sends canonical, escaped AORs and keys). */
static size_t words(char *line, char **w, size_t max)
{
	size_t n = 0;

	for (char *p = line; *p; p++) {
		if (*p <= 0x20 || *p >= 0x7f) {
			if (*p != ' ')
				return (size_t)-1;
		}
	}
	for (char *tok = strtok(line, " "); tok; tok = strtok(NULL, " ")) {
		if (n == max)
			return (size_t)-1;
		w[n++] = tok;
	}
	return n;
}

/* "debug list": the traced addresses, one a line. */
static void conn_debug_list(struct control_conn *c)
{
	struct debug *d = c->ctl->debug;

	for (size_t i = 0; i < debug_ip_count(d); i++) {
		conn_write(debug_ip_at(d, i), strlen(debug_ip_at(d, i)), c);
		conn_write("\n", 1, c);
	}
	conn_finish(c, 0, NULL);
}

/* "debug ip ADDR [on|off]": on when not said, as Asterisk's "sip set debug ip". */
static void conn_debug(struct control_conn *c, char **w, size_t n)
{
	struct debug *d = c->ctl->debug;
	bool on = n < 4 || strcmp(w[3], "on") == 0;
	char line[128];
	int err;

	if (!d) {
		conn_finish(c, ENOTSUP, "this sipregd traces nothing");
		return;
	}
	if (n == 2 && strcmp(w[1], "list") == 0) {
		conn_debug_list(c);
		return;
	}
	if (n < 3 || strcmp(w[1], "ip") != 0 || (n == 4 && !on && strcmp(w[3], "off") != 0)) {
		conn_finish(c, EINVAL, "want: debug ip ADDR [on|off] | debug list");
		return;
	}
	err = debug_ip_set(d, w[2], on);
	if (err) {
		conn_finish(c, err,
			    err == ENOSPC ? "too many addresses traced already"
					  : "want a numeric IPv4 or IPv6 address");
		return;
	}
	log_info("control: tracing SIP of %s %s", w[2], on ? "on" : "off");
	snprintf(line, sizeof(line), "debug ip %s %s\n", w[2], on ? "on" : "off");
	conn_write(line, strlen(line), c);
	conn_finish(c, 0, NULL);
}

/* "stats": the counters as "name value" lines (ops/stats.h). */
static void conn_stats(struct control_conn *c)
{
	struct control *ctl = c->ctl;
	struct ops_stats *st;

	if (!ctl->statsh) {
		conn_finish(c, ENOTSUP, "no counters here");
		return;
	}
	/* A few KiB of per-code counters: not for the stack of a callback. */
	st = calloc(1, sizeof(*st));
	if (!st) {
		conn_finish(c, ENOMEM, NULL);
		return;
	}
	ctl->statsh(st, ctl->stats_arg);
	stats_text(st, conn_write, c);
	free(st);
	conn_finish(c, 0, NULL);
}

static void conn_request(struct control_conn *c, char *line)
{
	struct control *ctl = c->ctl;
	char *w[4];
	size_t n = words(line, w, 4);
	struct sip_str a, k;
	int err;

	c->now = (int64_t)time(NULL);
	if (n == (size_t)-1 || n == 0) {
		conn_finish(c, EINVAL, CONTROL_USAGE);
		return;
	}
	log_info("control: %s", w[0]);
	if (strcmp(w[0], "bindings") == 0 && n <= 2) {
		show_bindings_head(conn_write, c);
		if (n == 2) {
			a = sip_str_c(w[1]);
			err = location_fetch(ctl->loc, &a, c->now, on_fetch, c, &c->op);
		} else {
			err = location_iterate(ctl->loc, c->now, on_binding, c, &c->op);
		}
	} else if (strcmp(w[0], "unbind") == 0 && (n == 2 || n == 3)) {
		a = sip_str_c(w[1]);
		k = sip_str_c(n == 3 ? w[2] : "");
		err = location_unbind(ctl->loc, &a, n == 3 ? &k : NULL, on_unbind, c, &c->op);
	} else if (strcmp(w[0], "dump") == 0 && n <= 2) {
		err = conn_dump(c, w, n);
	} else if (strcmp(w[0], "users") == 0 && n <= 2) {
		snprintf(c->domain, sizeof(c->domain), "%s", n == 2 ? w[1] : "");
		err = directory_user_iter(ctl->dir, on_user, c, &c->op);
	} else if (strcmp(w[0], "debug") == 0) {
		conn_debug(c, w, n);
		return;
	} else if (strcmp(w[0], "stats") == 0 && n == 1) {
		conn_stats(c);
		return;
	} else {
		conn_finish(c, EINVAL, CONTROL_USAGE);
		return;
	}
	if (err)
		conn_finish(c, err, NULL);
}

static void conn_read(struct bufferevent *bev, void *arg)
{
	struct control_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	if (c->op || c->answered)
		return; /* one request a connection */
	line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
	if (!line) {
		if (evbuffer_get_length(in) > CONTROL_LINE_MAX)
			conn_finish(c, EMSGSIZE, "request line too long");
		return;
	}
	if (len && line[len - 1] == '\r')
		line[--len] = '\0';
	if (len > CONTROL_LINE_MAX)
		conn_finish(c, EMSGSIZE, "request line too long");
	else
		conn_request(c, line);
	free(line);
}

static void conn_written(struct bufferevent *bev, void *arg)
{
	struct control_conn *c = arg;

	(void)bev;
	if (c->answered)
		conn_free(c);
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct control_conn *c = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_free(c); /* the client went away: its operation is cancelled */
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct control *ctl = arg;
	struct control_conn *c = calloc(1, sizeof(*c));

	(void)lis;
	(void)sa;
	(void)salen;
	if (c)
		c->bev = bufferevent_socket_new(ctl->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c || !c->bev) {
		free(c);
		evutil_closesocket(fd);
		return;
	}
	c->ctl = ctl;
	c->next = ctl->conns;
	if (ctl->conns)
		ctl->conns->prev = c;
	ctl->conns = c;
	if (++ctl->n_conns >= CONTROL_CONNS_MAX)
		evconnlistener_disable(ctl->lis);
	bufferevent_setcb(c->bev, conn_read, conn_written, conn_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* A socket file nobody listens on is a dead daemon's: remove it. One that answers belongs
 * to a live daemon: leave it and refuse. */
static int stale_remove(const struct sockaddr_un *sun)
{
	struct stat st;
	int fd, rc;

	if (lstat(sun->sun_path, &st) != 0)
		return errno == ENOENT ? 0 : errno;
	if (!S_ISSOCK(st.st_mode))
		return EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	close(fd);
	if (rc == 0)
		return EADDRINUSE;
	return unlink(sun->sun_path) == 0 ? 0 : errno;
}

int control_alloc(struct control **cp, struct event_base *base, const char *path,
		  struct location *loc, struct location *dir)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct control *ctl;
	mode_t old;
	int err;

	*cp = NULL;
	if (strlen(path) >= sizeof(sun.sun_path))
		return ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	err = stale_remove(&sun);
	if (err)
		return err;
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return ENOMEM;
	ctl->base = base;
	ctl->loc = loc;
	ctl->dir = dir;
	ctl->path = strdup(path);
	if (!ctl->path) {
		free(ctl);
		return ENOMEM;
	}
	/* Owner only: the socket lists and removes bindings. */
	old = umask(0177);
	ctl->lis = evconnlistener_new_bind(base, on_accept, ctl,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
					   (struct sockaddr *)&sun, (int)sizeof(sun));
	err = errno;
	umask(old);
	if (!ctl->lis) {
		free(ctl->path);
		free(ctl);
		return err ? err : EIO;
	}
	*cp = ctl;
	return 0;
}

int control_set_group(struct control *ctl, unsigned gid)
{
	if (chown(ctl->path, (uid_t)-1, (gid_t)gid) != 0 || chmod(ctl->path, 0660) != 0)
		return errno;
	return 0;
}

void control_set_ops(struct control *ctl, struct debug *dbg, control_stats_h *statsh,
		     void *arg)
{
	ctl->debug = dbg;
	ctl->statsh = statsh;
	ctl->stats_arg = arg;
}

void control_free(struct control **cp)
{
	struct control *ctl = *cp;

	if (!ctl)
		return;
	while (ctl->conns)
		conn_free(ctl->conns);
	evconnlistener_free(ctl->lis);
	unlink(ctl->path);
	free(ctl->path);
	free(ctl);
	*cp = NULL;
}
