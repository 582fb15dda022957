/* The host names of a conninfo resolved off the event loop: c-ares driven by the backend's
 * libevent loop, the answers handed to libpq as hostaddr so PQconnectStartParams never
 * calls getaddrinfo (which blocks the loop for as long as a DNS server takes to answer).
 *
 * DESIGN: one lookup = one c-ares channel, made for it and destroyed with it. A channel of
 * its own makes cancelling one connection's lookup (its connect timed out, the backend
 * closed) an ares_destroy() that touches nobody else's queries, and makes every lookup
 * read the resolver configuration afresh, as getaddrinfo would. c-ares tells us which
 * sockets to watch (sock_state_cb); each gets a persistent libevent event that calls
 * ares_process_fd(), and one timer follows ares_timeout() for c-ares' retransmissions. The
 * c-ares callbacks only record their answer: the caller hears of the result from a
 * deferred event, outside every c-ares call, so it may destroy the lookup from there. */
#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct lookup_sock {
	struct pg_lookup *l;
	ares_socket_t fd;
	struct event ev;
	bool on; /* the slot is in use (ev added) */
};

/* One entry of the conninfo's host list. */
struct lookup_host {
	struct pg_lookup *l;
	char *name;
	char *port;   /* its entry of a per-host port list, or NULL */
	bool resolve; /* a name: looked up; else a number, a socket path or empty: as given */
	bool answered;
	int status; /* ARES_SUCCESS or c-ares' error, once answered */
	struct ares_addrinfo *ai;
};

struct pg_lookup {
	ares_channel ch;
	bool ch_on;
	struct lookup_sock socks[ARES_GETSOCK_MAXNUM];
	struct event timer;
	struct event done_ev;
	struct lookup_host *hosts;
	size_t n_hosts, pending;
	bool per_host_ports;
	int err;
	pg_lookup_h *done;
	void *arg;
	char *host, *hostaddr, *port; /* the parameters for libpq, once resolved */
	char why[512];
};

/* ---- splitting the conninfo ----------------------------------------------------------- */

/* libpq's rule (fe-connect.c): a host starting with '/' (or '@', the abstract namespace) is
 * a Unix socket directory, an empty one the default; a numeric address needs no lookup. */
static bool host_is_name(const char *h)
{
	unsigned char buf[sizeof(struct in6_addr)];

	if (!h[0] || h[0] == '/' || h[0] == '@')
		return false;
	return inet_pton(AF_INET, h, buf) != 1 && inet_pton(AF_INET6, h, buf) != 1;
}

/* Split a comma-separated list into a NULL-terminated array of copies (libpq does not
 * quote commas inside entries). Returns the count, or (size_t)-1 when out of memory. */
static size_t list_split(const char *s, char ***vp)
{
	size_t n = 1, i = 0;
	char **v;

	for (const char *p = s; *p; p++)
		n += *p == ',';
	v = calloc(n + 1, sizeof(*v));
	if (!v)
		return (size_t)-1;
	for (const char *p = s;; i++) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		v[i] = strndup(p, len);
		if (!v[i]) {
			for (size_t k = 0; k < i; k++)
				free(v[k]);
			free(v);
			return (size_t)-1;
		}
		if (!e)
			break;
		p = e + 1;
	}
	*vp = v;
	return n;
}

static void list_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

/* The value of key in a parsed conninfo, else the environment variable libpq would use
 * (a conninfo without host= takes PGHOST), else NULL. */
static const char *conn_opt(const PQconninfoOption *o, const char *key, const char *env)
{
	for (; o && o->keyword; o++) {
		if (strcmp(o->keyword, key) == 0 && o->val && o->val[0])
			return o->val;
	}
	env = getenv(env);
	return env && env[0] ? env : NULL;
}

/* ---- c-ares on the loop ---------------------------------------------------------------- */

static void lookup_arm(struct pg_lookup *l)
{
	struct timeval tv, *t = ares_timeout(l->ch, NULL, &tv);

	if (t)
		evtimer_add(&l->timer, t);
	else
		evtimer_del(&l->timer);
}

static void lookup_sock_io(evutil_socket_t fd, short what, void *arg)
{
	struct lookup_sock *s = arg;
	struct pg_lookup *l = s->l;

	ares_process_fd(l->ch, (what & EV_READ) ? (ares_socket_t)fd : ARES_SOCKET_BAD,
			(what & EV_WRITE) ? (ares_socket_t)fd : ARES_SOCKET_BAD);
	lookup_arm(l);
}

static void lookup_tick(evutil_socket_t fd, short what, void *arg)
{
	struct pg_lookup *l = arg;

	(void)fd;
	(void)what;
	ares_process_fd(l->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* retransmit, time out */
	lookup_arm(l);
}

/* c-ares opens, changes and closes its sockets through this: one event per socket. */
static void lookup_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct pg_lookup *l = data;
	struct lookup_sock *s = NULL, *free_slot = NULL;
	struct event_base *base = event_get_base(&l->timer);

	for (size_t i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
		if (l->socks[i].on && l->socks[i].fd == fd)
			s = &l->socks[i];
		else if (!l->socks[i].on && !free_slot)
			free_slot = &l->socks[i];
	}
	if (s) {
		event_del(&s->ev);
		s->on = false;
	}
	if (!readable && !writable)
		return;
	if (!s)
		s = free_slot;
	if (!s) {
		/* c-ares keeps fewer sockets than ares_getsock() can report: cannot happen; the
		 * connect timeout ends the lookup if it does. */
		log_err("pg: resolver: too many sockets");
		return;
	}
	s->l = l;
	s->fd = fd;
	event_assign(&s->ev, base, fd,
		     EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0),
		     lookup_sock_io, s);
	if (event_add(&s->ev, NULL) == 0)
		s->on = true;
}

/* An answer for one host entry: record it; the last one wakes the caller through the loop.
 * Runs inside c-ares (even inside ares_getaddrinfo, for /etc/hosts), so nothing else. */
static void lookup_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct lookup_host *h = arg;
	struct pg_lookup *l = h->l;

	(void)timeouts;
	if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
		ares_freeaddrinfo(res); /* pg_lookup_free() is destroying the channel */
		return;
	}
	h->answered = true;
	h->status = status;
	h->ai = res;
	if (--l->pending == 0)
		event_active(&l->done_ev, EV_TIMEOUT, 0);
}

/* ---- the answer ------------------------------------------------------------------------ */

/* Append s and a comma before it unless first. Returns 0 or ENOMEM. */
static int list_add(char **lp, size_t *len, size_t *cap, const char *s, bool first)
{
	size_t n = strlen(s) + 2;

	if (*len + n > *cap) {
		size_t ncap = (*cap ? *cap * 2 : 64) + n;
		char *p = realloc(*lp, ncap);

		if (!p)
			return ENOMEM;
		*lp = p;
		*cap = ncap;
	}
	if (!first)
		(*lp)[(*len)++] = ',';
	memcpy(*lp + *len, s, n - 2);
	*len += n - 2;
	(*lp)[*len] = '\0';
	return 0;
}

/* Add "host name "NAME" WHAT: REASON" to why, the name escaped (it is the operator's, but a
 * log line is one line whatever a config holds). */
static void why_add(struct pg_lookup *l, const char *name, const char *what, const char *reason)
{
	char esc[LOG_ESC_SIZE];
	size_t used = strlen(l->why);

	if (used >= sizeof(l->why) - 1)
		return;
	snprintf(l->why + used, sizeof(l->why) - used, "%shost name \"%s\" %s: %s",
		 used ? "; " : "", log_escape(name, strlen(name), esc, sizeof(esc)), what,
		 reason);
}

/* host= and hostaddr= (and port= with a per-host list) with one entry per address, in the
 * order c-ares gives them for each name, the names' order kept. Returns 0, ENOMEM, or
 * EHOSTUNREACH when no entry is left to connect to. */
static int lookup_compose(struct pg_lookup *l)
{
	size_t hl = 0, hc = 0, al = 0, ac = 0, pl = 0, pc = 0, n = 0;
	int err = 0;

	for (size_t i = 0; i < l->n_hosts && !err; i++) {
		struct lookup_host *h = &l->hosts[i];
		const char *port = h->port ? h->port : "";

		if (!h->resolve) {
			err = list_add(&l->host, &hl, &hc, h->name, n == 0);
			if (!err)
				err = list_add(&l->hostaddr, &al, &ac, "", n == 0);
			if (!err && l->per_host_ports)
				err = list_add(&l->port, &pl, &pc, port, n == 0);
			n++;
			continue;
		}
		if (h->status != ARES_SUCCESS || !h->ai || !h->ai->nodes) {
			why_add(l, h->name, "does not resolve",
				h->status != ARES_SUCCESS ? ares_strerror(h->status)
							  : "no address");
			continue;
		}
		for (struct ares_addrinfo_node *a = h->ai->nodes; a && !err; a = a->ai_next) {
			char addr[INET6_ADDRSTRLEN];
			const void *src;

			if (a->ai_family == AF_INET)
				src = &((const struct sockaddr_in *)(const void *)a->ai_addr)
					   ->sin_addr;
			else if (a->ai_family == AF_INET6)
				src = &((const struct sockaddr_in6 *)(const void *)a->ai_addr)
					   ->sin6_addr;
			else
				continue;
			if (!inet_ntop(a->ai_family, src, addr, sizeof(addr)))
				continue;
			err = list_add(&l->host, &hl, &hc, h->name, n == 0);
			if (!err)
				err = list_add(&l->hostaddr, &al, &ac, addr, n == 0);
			if (!err && l->per_host_ports)
				err = list_add(&l->port, &pl, &pc, port, n == 0);
			n++;
		}
	}
	if (!err && n == 0)
		err = EHOSTUNREACH;
	return err;
}

static void lookup_done(evutil_socket_t fd, short what, void *arg)
{
	struct pg_lookup *l = arg;

	(void)fd;
	(void)what;
	if (!l->err)
		l->err = lookup_compose(l);
	l->done(l->err, l->arg); /* may free l */
}

/* ---- the interface ---------------------------------------------------------------------- */

int pg_lookup_start(struct pg_lookup **lp, struct event_base *base, const char *conninfo,
		    const char *resolv_conf, pg_lookup_h *done, void *arg)
{
	PQconninfoOption *opts;
	const char *host, *port;
	char **names = NULL, **ports = NULL;
	size_t n = 0, n_ports = 0, n_names = 0;
	struct pg_lookup *l = NULL;
	struct ares_options ao = {0};
	int optmask = ARES_OPT_SOCK_STATE_CB, err = 0, rc;

	*lp = NULL;
	opts = PQconninfoParse(conninfo, NULL);
	if (!opts)
		return 0; /* a syntax error (or no memory): libpq's connect says which */
	/* hostaddr given: libpq looks nothing up. */
	if (conn_opt(opts, "hostaddr", "PGHOSTADDR"))
		goto out;
	host = conn_opt(opts, "host", "PGHOST");
	port = conn_opt(opts, "port", "PGPORT");
	if (!host)
		goto out;
	n = list_split(host, &names);
	if (n == (size_t)-1) {
		n = 0;
		err = ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		n_names += host_is_name(names[i]);
	if (n_names == 0)
		goto out;
	if (port) {
		n_ports = list_split(port, &ports);
		if (n_ports == (size_t)-1) {
			n_ports = 0;
			err = ENOMEM;
			goto out;
		}
	}
	l = calloc(1, sizeof(*l));
	if (!l || !(l->hosts = calloc(n, sizeof(*l->hosts)))) {
		err = ENOMEM;
		goto out;
	}
	/* One port for all stays as it is; one per host follows its host's addresses. (Any
	 * other count is libpq's error to report.) */
	l->per_host_ports = n_ports > 1 && n_ports == n;
	l->n_hosts = n;
	l->done = done;
	l->arg = arg;
	evtimer_assign(&l->timer, base, lookup_tick, l);
	event_assign(&l->done_ev, base, -1, 0, lookup_done, l);
	for (size_t i = 0; i < n; i++) {
		struct lookup_host *h = &l->hosts[i];

		h->l = l;
		h->name = names[i];
		names[i] = NULL;
		h->resolve = host_is_name(h->name);
		if (l->per_host_ports) {
			h->port = ports[i];
			ports[i] = NULL;
		}
	}
	ao.sock_state_cb = lookup_sock_state;
	ao.sock_state_cb_data = l;
	if (resolv_conf) {
		ao.resolvconf_path = (char *)resolv_conf; /* c-ares only reads it */
		optmask |= ARES_OPT_RESOLVCONF;
	}
	rc = ares_init_options(&l->ch, &ao, optmask);
	if (rc != ARES_SUCCESS) {
		/* Reported like a failed lookup, through the loop, as every answer is. */
		snprintf(l->why, sizeof(l->why), "resolver: %s", ares_strerror(rc));
		l->err = rc == ARES_ENOMEM ? ENOMEM : EIO;
		event_active(&l->done_ev, EV_TIMEOUT, 0);
		goto started;
	}
	l->ch_on = true;
	l->pending = n_names;
	for (size_t i = 0; i < n; i++) {
		struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC,
						    .ai_socktype = SOCK_STREAM};

		if (l->hosts[i].resolve)
			ares_getaddrinfo(l->ch, l->hosts[i].name, NULL, &hints, lookup_answer,
					 &l->hosts[i]);
	}
	lookup_arm(l);
started:
	*lp = l;
	l = NULL;
out:
	pg_lookup_free(&l);
	list_free(names, n);
	list_free(ports, n_ports);
	PQconninfoFree(opts);
	return err;
}

void pg_lookup_free(struct pg_lookup **lp)
{
	struct pg_lookup *l = *lp;

	if (!l)
		return;
	*lp = NULL;
	/* Pending queries end here with ARES_EDESTRUCTION (lookup_answer ignores them); the
	 * sockets close through lookup_sock_state, which drops their events. */
	if (l->ch_on)
		ares_destroy(l->ch);
	for (size_t i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
		if (l->socks[i].on)
			event_del(&l->socks[i].ev);
	}
	if (l->hosts) { /* the events were assigned with the hosts */
		evtimer_del(&l->timer);
		event_del(&l->done_ev);
	}
	for (size_t i = 0; l->hosts && i < l->n_hosts; i++) {
		ares_freeaddrinfo(l->hosts[i].ai);
		free(l->hosts[i].name);
		free(l->hosts[i].port);
	}
	free(l->hosts);
	free(l->host);
	free(l->hostaddr);
	free(l->port);
	free(l);
}

size_t pg_lookup_params(const struct pg_lookup *l, const char **keys, const char **vals)
{
	size_t n = 0;

	keys[n] = "host";
	vals[n++] = l->host;
	keys[n] = "hostaddr";
	vals[n++] = l->hostaddr;
	if (l->port) {
		keys[n] = "port";
		vals[n++] = l->port;
	}
	return n;
}

const char *pg_lookup_why(const struct pg_lookup *l)
{
	return l->why;
}

const char *pg_lookup_timed_out(struct pg_lookup *l, unsigned ms)
{
	l->why[0] = '\0';
	for (size_t i = 0; i < l->n_hosts; i++) {
		char reason[64];

		if (!l->hosts[i].resolve || l->hosts[i].answered)
			continue;
		snprintf(reason, sizeof(reason), "no answer from the resolver within %u ms",
			 ms);
		why_add(l, l->hosts[i].name, "unresolved", reason);
	}
	if (!l->why[0])
		snprintf(l->why, sizeof(l->why), "no connection within %u ms", ms);
	return l->why;
}
