/* TCP transport: listeners, connections kept by id, stream framing (RFC 3261 §18.3 with
 * RFC 5626 CRLF keep-alives), buffered output and its bounds, per-source caps and idle
 * timeouts.
 *
 * DESIGN: a connection owns one growable input buffer, an evbuffer for output that did
 * not fit in the socket, a persistent read event whose timeout is the idle timeout (a
 * persistent event's timeout restarts whenever it fires, so every read resets it) and a
 * write event armed only while output is pending. Messages are handed to the receive
 * handler straight from the input buffer; while that runs the connection is "busy", and
 * a close requested meanwhile (a failed send, say) only marks it, so the read path never
 * touches freed memory. Connections live in an hmap by conn_id; ids are never reused, so
 * a late response for a closed connection finds nothing and gets ENOTCONN.
 *
 * Memory a peer can pin is bounded three ways. Output the kernel did not take is counted
 * per connection (tcp_max_output) and across all of them (tcp_output_budget): a send
 * that would pass either closes the connection instead of buffering, so 10000 peers
 * that never read cost at most the budget, not 10000 times a connection's share. Output
 * that stays pending longer than tcp_output_timeout closes the connection too (the
 * write event's timeout is the deadline counted from when output first stayed behind,
 * not renewed by more output or partial drains), so a peer reading a trickle does not
 * hold its share forever. And connections are counted per source address (IPv6 per
 * /64, what one subscriber gets) against max_tcp_connections_per_source, so one host
 * cannot take every slot of max_tcp_connections; trusted_sources (SBCs, proxies carrying
 * many phones) are not counted. */
#include <errno.h>
#include <event2/buffer.h>
#include <inttypes.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sipreg/clock.h"
#include "sipreg/log.h"
#include "net/net_priv.h"
#include "net/sock.h"
#include "net/tcp.h"
#include "util/netaddr.h"
#include "util/text.h"

/* Bytes read per wakeup at most (and spare room kept in the input buffer). */
#define NET_TCP_CHUNK 16384
/* Connections accepted per wakeup, so an accept storm does not starve the rest. */
#define NET_TCP_ACCEPT_BATCH 64
#define NET_TCP_WRITE_ROUNDS 8

/* Connections open from one source (one IPv4 address, one IPv6 /64). */
struct net_tcp_src {
	struct hmap_node node;
	uint8_t key[9]; /* 4 or 6, then the IPv4 address or the IPv6 /64 */
	uint32_t conns;
};

struct net_conn {
	struct hmap_node node;
	struct net *net;
	uint64_t id;
	int fd;
	struct event *rev;
	struct event *wev;
	struct evbuffer *out;
	char *in;
	size_t in_len, in_cap;
	/* Framing progress kept between reads so a message trickling in byte by byte is
	 * not rescanned from its start each time: bytes of the pending message known to
	 * hold no header end, or the message's full length once its headers are in. */
	size_t scanned;
	size_t need;
	unsigned crlf_run; /* CRLFs seen since the last message: two make a ping */
	bool busy;
	bool closing;
	struct net_tcp_src *src; /* NULL: not counted (no cap, or a trusted source) */
	int64_t out_since;	 /* clock_mono_ns() since output is pending; 0: none */
	struct net_flow flow;
};

/* ---- framing ---------------------------------------------------------------------- */

/* Content-Length of a header block (start line, headers, final empty line). Folded lines
 * (CRLF + SP/HT) belong to the header above them. Returns 0, or EBADMSG for a missing,
 * empty, negative or non-numeric value, or two values that disagree. Values beyond max
 * come back as max + 1. */
static int frame_content_length(const char *p, size_t hlen, size_t max, size_t *clp)
{
	const char *end = p + hlen - 2; /* the final empty line's CRLF */
	const char *line = memchr(p, '\n', hlen);
	bool found = false;
	size_t cl = 0;

	if (!line)
		return EBADMSG;
	for (line++; line < end;) {
		const char *h = line, *colon, *v;
		size_t value = 0, digits = 0;

		/* End of this header: a CRLF not followed by SP/HT. */
		while (h < end &&
		       !(h[0] == '\r' && h[1] == '\n' && h[2] != ' ' && h[2] != '\t'))
			h++;
		for (colon = line;
		     colon < h && *colon != ':' && *colon != ' ' && *colon != '\t'; colon++)
			;
		v = colon;
		while (v < h && (*v == ' ' || *v == '\t'))
			v++;
		if (v < h && *v == ':' &&
		    (text_mem_ieq(line, (size_t)(colon - line), "content-length") ||
		     text_mem_ieq(line, (size_t)(colon - line), "l"))) {
			for (v++; v < h && text_is_lws(*v); v++)
				;
			for (; v < h && *v >= '0' && *v <= '9'; v++, digits++)
				value = value > max ? max + 1 : value * 10 + (size_t)(*v - '0');
			if (value > max)
				value = max + 1;
			while (v < h && text_is_lws(*v))
				v++;
			if (digits == 0 || v != h || (found && value != cl))
				return EBADMSG;
			found = true;
			cl = value;
		}
		line = h + 2;
	}
	if (!found)
		return EBADMSG;
	*clp = cl;
	return 0;
}

/* net_tcp_frame with memory for the connection: scanned = bytes after the keep-alives
 * already known to hold no header end; *need_r = the message's full length when its
 * headers are in but its body is not (else 0). */
static int frame(const char *buf, size_t len, size_t max, size_t scanned, size_t *skip,
		 size_t *msg_len, size_t *need_r)
{
	size_t s = 0, rem, hlen, cl, from;
	const char *p, *hend;
	int err;

	while (len - s >= 2 && buf[s] == '\r' && buf[s + 1] == '\n')
		s += 2;
	*skip = s;
	*msg_len = 0;
	*need_r = 0;
	p = buf + s;
	rem = len - s;
	if (rem == 0 || (rem == 1 && p[0] == '\r'))
		return EAGAIN;
	from = s == 0 && scanned > 3 ? scanned - 3 : 0;
	hend = from < rem ? memmem(p + from, rem - from, "\r\n\r\n", 4) : NULL;
	if (!hend)
		return rem >= max ? EMSGSIZE : EAGAIN;
	hlen = (size_t)(hend - p) + 4;
	if (hlen > max)
		return EMSGSIZE;
	err = frame_content_length(p, hlen, max, &cl);
	if (err)
		return err;
	if (cl > max - hlen)
		return EMSGSIZE;
	if (rem < hlen + cl) {
		*need_r = hlen + cl;
		return EAGAIN;
	}
	*msg_len = hlen + cl;
	return 0;
}

int net_tcp_frame(const char *buf, size_t len, size_t max, size_t *skip, size_t *msg_len)
{
	size_t need;

	return frame(buf, len, max, 0, skip, msg_len, &need);
}

/* ---- sources ---------------------------------------------------------------------- */

static void src_key(const struct sockaddr_storage *ss, uint8_t key[9])
{
	memset(key, 0, 9);
	if (ss->ss_family == AF_INET6) {
		key[0] = 6;
		/* A subscriber gets a /64: counting /128s would let one host take them all. */
		memcpy(key + 1, &((const struct sockaddr_in6 *)ss)->sin6_addr, 8);
	} else {
		key[0] = 4;
		memcpy(key + 1, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	}
}

/* Count a new connection from ss against its source's cap. Returns 0 with *srcp the
 * source to release when the connection closes (NULL when not counted), EMFILE when the
 * source has max_tcp_connections_per_source open, ENOMEM. */
static int src_admit(struct net *n, const struct sockaddr_storage *ss,
		     struct net_tcp_src **srcp)
{
	struct net_tcp_src *src;
	struct hmap_node *node;
	uint8_t key[9];
	uint64_t h;

	*srcp = NULL;
	if (!n->max_conns_per_src || netaddr_set_contains(n->trusted, (const struct sockaddr *)ss))
		return 0;
	src_key(ss, key);
	h = hmap_hash(key, sizeof(key));
	for (node = hmap_first(&n->srcs, h); node; node = hmap_next(node, h)) {
		src = hmap_entry(node, struct net_tcp_src, node);
		if (memcmp(src->key, key, sizeof(key)) != 0)
			continue;
		if (src->conns >= n->max_conns_per_src)
			return EMFILE;
		src->conns++;
		*srcp = src;
		return 0;
	}
	src = calloc(1, sizeof(*src));
	if (!src)
		return ENOMEM;
	memcpy(src->key, key, sizeof(key));
	src->conns = 1;
	hmap_insert(&n->srcs, &src->node, h);
	*srcp = src;
	return 0;
}

static void src_release(struct net *n, struct net_tcp_src *src)
{
	if (!src || --src->conns > 0)
		return;
	hmap_remove(&n->srcs, &src->node);
	free(src);
}

/* ---- connections ------------------------------------------------------------------ */

static struct net_conn *conn_find(struct net *n, uint64_t id)
{
	struct hmap_node *node;
	uint64_t h = hmap_hash(&id, sizeof(id));

	for (node = hmap_first(&n->conns, h); node; node = hmap_next(node, h)) {
		struct net_conn *c = hmap_entry(node, struct net_conn, node);

		if (c->id == id)
			return c;
	}
	return NULL;
}

static void conn_free(struct net_conn *c)
{
	struct net *n = c->net;

	hmap_remove(&n->conns, &c->node);
	n->stats.tcp_conns--;
	n->stats.tcp_out_bytes -= evbuffer_get_length(c->out);
	src_release(n, c->src);
	event_free(c->rev);
	event_free(c->wev);
	evbuffer_free(c->out);
	close(c->fd);
	free(c->in);
	free(c);
}

/* Close now, or once the receive handler that is running on c returns. */
static void conn_close(struct net_conn *c)
{
	if (c->busy) {
		c->closing = true;
		event_del(c->rev);
		event_del(c->wev);
		return;
	}
	conn_free(c);
}

/* Write pending output; returns 0 or the errno that broke the connection. */
static int conn_flush(struct net_conn *c)
{
	for (int round = 0; round < NET_TCP_WRITE_ROUNDS; round++) {
		struct evbuffer_iovec vec[16];
		struct iovec iov[16];
		struct msghdr msg = {.msg_iov = iov};
		int nvec;
		ssize_t r;

		nvec = evbuffer_peek(c->out, -1, NULL, vec, 16);
		if (nvec <= 0)
			return 0;
		if (nvec > 16)
			nvec = 16;
		for (int i = 0; i < nvec; i++)
			iov[i] = (struct iovec){.iov_base = vec[i].iov_base,
						.iov_len = vec[i].iov_len};
		msg.msg_iovlen = (size_t)nvec;
		r = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return errno;
		}
		evbuffer_drain(c->out, (size_t)r);
		c->net->stats.tcp_out_bytes -= (uint64_t)r;
	}
	return 0;
}

/* Arm the write event while output is pending, its timeout at the deadline
 * tcp_output_timeout after output first stayed behind; disarm it once all is sent.
 * Returns 0, or ETIMEDOUT when the deadline has passed (the caller closes). */
static int conn_want_write(struct net_conn *c)
{
	struct net *n = c->net;
	struct timeval tv;
	int64_t now, left;

	if (evbuffer_get_length(c->out) == 0) {
		c->out_since = 0;
		event_del(c->wev);
		return 0;
	}
	if (!n->out_timeout_ns) {
		event_add(c->wev, NULL);
		return 0;
	}
	now = clock_mono_ns();
	if (!c->out_since)
		c->out_since = now;
	left = c->out_since + n->out_timeout_ns - now;
	if (left <= 0)
		return ETIMEDOUT;
	tv = (struct timeval){.tv_sec = left / 1000000000, .tv_usec = left % 1000000000 / 1000};
	event_add(c->wev, &tv);
	return 0;
}

/* Close c because its peer does not take its output; counted and logged at most every
 * LOG_LIMIT_INTERVAL_S with the state of the budget. */
static void conn_close_slow(struct net_conn *c, const char *why, size_t pending)
{
	struct net *n = c->net;

	n->stats.tcp_out_closed++;
	log_limited(&n->lim_slow, LOG_WARN,
		    "tcp %s:%u: closed: %s (%zu bytes unsent on it; %" PRIu64
		    " on all connections, peak %" PRIu64 ", budget %zu)",
		    c->flow.src.ip, c->flow.src.port, why, pending, n->stats.tcp_out_bytes,
		    n->stats.tcp_out_peak, n->out_budget);
	conn_close(c);
}

/* Queue bytes on c: straight to the socket when nothing is waiting, the rest buffered
 * for the write event. Returns 0 or an errno (the connection is then being closed). */
static int conn_output(struct net_conn *c, const char *buf, size_t len)
{
	struct net *n = c->net;
	size_t done = 0, pending;
	int err;

	if (evbuffer_get_length(c->out) == 0) {
		ssize_t r;

		do
			r = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (r < 0 && errno == EINTR);
		if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			err = errno;
			goto fail;
		}
		done = r > 0 ? (size_t)r : 0;
		if (done == len)
			return 0;
	}
	pending = evbuffer_get_length(c->out) + (len - done);
	if (pending > n->out_max) {
		conn_close_slow(c, "the peer does not read its responses (limits.tcp_max_output)",
				pending - (len - done));
		return ENOBUFS;
	}
	if (n->stats.tcp_out_bytes + (len - done) > n->out_budget) {
		conn_close_slow(c, "the TCP output budget is spent (limits.tcp_output_budget)",
				pending - (len - done));
		return ENOBUFS;
	}
	if (evbuffer_add(c->out, buf + done, len - done) != 0) {
		err = ENOMEM;
		goto fail;
	}
	n->stats.tcp_out_bytes += len - done;
	if (n->stats.tcp_out_bytes > n->stats.tcp_out_peak)
		n->stats.tcp_out_peak = n->stats.tcp_out_bytes;
	if (conn_want_write(c) == ETIMEDOUT) {
		conn_close_slow(c, "its output has not drained (limits.tcp_output_timeout)",
				pending);
		return ETIMEDOUT;
	}
	return 0;
fail:
	conn_close(c);
	return err;
}

static void conn_write(evutil_socket_t fd, short what, void *arg)
{
	struct net_conn *c = arg;
	int err;

	(void)fd;
	(void)what;
	err = conn_flush(c);
	if (err) {
		log_debug("tcp %s:%u: write: %s", c->flow.src.ip, c->flow.src.port,
			  strerror(err));
		conn_close(c);
		return;
	}
	if (conn_want_write(c) == ETIMEDOUT)
		conn_close_slow(c, "its output has not drained (limits.tcp_output_timeout)",
				evbuffer_get_length(c->out));
}

/* Count the keep-alive CRLFs skipped before a message; every second one is a ping
 * (CRLFCRLF), answered with a pong (CRLF), RFC 5626 §4.4.1. */
static void conn_keepalive(struct net_conn *c, size_t skip)
{
	for (size_t i = 0; i < skip / 2 && !c->closing; i++) {
		if (++c->crlf_run < 2)
			continue;
		c->crlf_run = 0;
		conn_output(c, "\r\n", 2);
	}
}

/* Frame and dispatch every complete message in the input buffer. */
static void conn_process(struct net_conn *c)
{
	struct net *n = c->net;
	size_t off = 0;

	c->busy = true;
	while (!c->closing && off < c->in_len) {
		char *p = c->in + off;
		size_t avail = c->in_len - off, skip, mlen, need;
		char saved;
		int err;

		if (c->need && avail < c->need)
			break;
		err = frame(p, avail, n->max_msg, c->scanned, &skip, &mlen, &need);
		conn_keepalive(c, skip);
		off += skip;
		if (err == EAGAIN) {
			c->need = need;
			c->scanned = need ? 0 : avail - skip;
			if (avail > skip)
				c->crlf_run = 0;
			break;
		}
		if (err) {
			log_debug("tcp %s:%u: %s; closing the stream", c->flow.src.ip,
				  c->flow.src.port,
				  err == EMSGSIZE ? "message too large"
						  : "no valid Content-Length");
			n->stats.rx_dropped++;
			/* busy is set: the connection is freed once the loop ends. */
			c->closing = true;
			break;
		}
		c->need = 0;
		c->scanned = 0;
		c->crlf_run = 0;
		/* NUL after the message for consumers that like C strings; in_cap > in_len
		 * always leaves room for it. */
		saved = p[skip + mlen];
		p[skip + mlen] = '\0';
		n->stats.rx_msgs++;
		n->recvh(p + skip, mlen, &c->flow, n->arg);
		p[skip + mlen] = saved;
		off += mlen;
	}
	c->busy = false;
	if (c->closing) {
		conn_free(c);
		return;
	}
	if (off > 0) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
	/* An idle connection gives its buffer back: 10000 quiet phones should not pin
	 * 10000 read buffers. */
	if (c->in_len == 0 && c->in_cap > NET_TCP_CHUNK + 1) {
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
	}
}

static int conn_reserve(struct net_conn *c)
{
	size_t want = c->in_len + NET_TCP_CHUNK + 1;
	char *p;

	if (c->in_cap >= want)
		return 0;
	/* Framing leaves less than max_message_size buffered, so this stays bounded. */
	if (c->in_cap > 0 && want < c->in_cap * 2)
		want = c->in_cap * 2;
	if (want > c->net->max_msg + NET_TCP_CHUNK + 1)
		want = c->net->max_msg + NET_TCP_CHUNK + 1;
	if (want < c->in_len + 2)
		return ENOBUFS;
	p = realloc(c->in, want);
	if (!p)
		return ENOMEM;
	c->in = p;
	c->in_cap = want;
	return 0;
}

static void conn_read(evutil_socket_t fd, short what, void *arg)
{
	struct net_conn *c = arg;
	ssize_t r;
	int err;

	if (what & EV_TIMEOUT) {
		log_debug("tcp %s:%u: idle, closing", c->flow.src.ip, c->flow.src.port);
		conn_close(c);
		return;
	}
	err = conn_reserve(c);
	if (err) {
		log_warn("tcp %s:%u: input buffer: %s", c->flow.src.ip, c->flow.src.port,
			 strerror(err));
		conn_close(c);
		return;
	}
	r = read(fd, c->in + c->in_len, c->in_cap - c->in_len - 1);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (r <= 0) {
		if (r < 0)
			log_debug("tcp %s:%u: read: %s", c->flow.src.ip, c->flow.src.port,
				  strerror(errno));
		conn_close(c);
		return;
	}
	c->in_len += (size_t)r;
	conn_process(c);
}

/* A connection for an accepted fd; src (may be NULL) is released when it closes, or
 * here on failure. */
static int conn_new(struct net_tcp_listener *l, int fd, const struct sockaddr_storage *ss,
		    socklen_t len, struct net_tcp_src *src)
{
	struct net *n = l->net;
	struct net_conn *c;
	int one = 1;

	c = calloc(1, sizeof(*c));
	if (!c) {
		src_release(n, src);
		return ENOMEM;
	}
	c->net = n;
	c->fd = fd;
	c->src = src;
	c->id = n->next_conn_id++;
	net_flow_set_peer(&c->flow, SIP_PROTO_TCP, (const struct sockaddr *)ss, len);
	c->flow.src.conn_id = c->id;
	c->flow.udp_fd = -1;
	c->flow.local_port = l->port;
	c->out = evbuffer_new();
	c->rev = event_new(n->base, fd, EV_READ | EV_PERSIST, conn_read, c);
	c->wev = event_new(n->base, fd, EV_WRITE | EV_PERSIST, conn_write, c);
	if (!c->out || !c->rev || !c->wev || event_add(c->rev, n->idle_tv) < 0) {
		if (c->rev)
			event_free(c->rev);
		if (c->wev)
			event_free(c->wev);
		if (c->out)
			evbuffer_free(c->out);
		free(c);
		src_release(n, src);
		return ENOMEM;
	}
	/* Responses are small and answer a request: do not let Nagle hold them back. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	hmap_insert(&n->conns, &c->node, hmap_hash(&c->id, sizeof(c->id)));
	n->stats.tcp_conns++;
	return 0;
}

/* ---- listeners -------------------------------------------------------------------- */

static void tcp_retry(evutil_socket_t fd, short what, void *arg)
{
	struct net_tcp_listener *l = arg;

	(void)fd;
	(void)what;
	if (!l->net->reading_stopped)
		event_add(l->ev, NULL);
}

static void tcp_accept(evutil_socket_t fd, short what, void *arg)
{
	struct net_tcp_listener *l = arg;
	struct net *n = l->net;

	(void)what;
	for (int i = 0; i < NET_TCP_ACCEPT_BATCH; i++) {
		struct net_tcp_src *src;
		int err;
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int cfd =
		    accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* The pending connection stays readable: pause the
				 * listener instead of spinning on it. */
				struct timeval tv = {.tv_sec = 1};

				log_warn("tcp accept on port %u: %s; pausing 1 s", l->port,
					 strerror(errno));
				event_del(l->ev);
				evtimer_add(l->retry, &tv);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
				log_warn("tcp accept on port %u: %s", l->port, strerror(errno));
			}
			return;
		}
		if (n->max_conns && n->stats.tcp_conns >= n->max_conns) {
			n->stats.tcp_conns_refused++;
			close(cfd);
			continue;
		}
		err = src_admit(n, &ss, &src);
		if (err == EMFILE) {
			struct net_flow peer;

			net_flow_set_peer(&peer, SIP_PROTO_TCP, (const struct sockaddr *)&ss, len);
			n->stats.tcp_conns_refused_source++;
			log_limited(&n->lim_src, LOG_WARN,
				    "tcp accept on port %u: %s has %" PRIu32
				    " connections open (limits.max_tcp_connections_per_source);"
				    " closed a new one",
				    l->port, peer.src.ip, n->max_conns_per_src);
			close(cfd);
			continue;
		}
		if (err || conn_new(l, cfd, &ss, len, src) != 0) {
			log_warn("tcp accept on port %u: out of memory", l->port);
			close(cfd);
		}
	}
}

int net_tcp_open(struct net *n, const struct listen_spec *spec, struct net_tcp_listener **lp)
{
	struct net_tcp_listener *l;
	int err;

	*lp = NULL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return ENOMEM;
	l->net = n;
	err = net_socket_bind(spec, SOCK_STREAM, &l->fd, &l->port);
	if (err) {
		free(l);
		return err;
	}
	if (listen(l->fd, SOMAXCONN) < 0) {
		err = errno;
		net_tcp_close(&l);
		return err;
	}
	l->ev = event_new(n->base, l->fd, EV_READ | EV_PERSIST, tcp_accept, l);
	l->retry = evtimer_new(n->base, tcp_retry, l);
	if (!l->ev || !l->retry || event_add(l->ev, NULL) < 0) {
		net_tcp_close(&l);
		return ENOMEM;
	}
	*lp = l;
	return 0;
}

void net_tcp_close(struct net_tcp_listener **lp)
{
	struct net_tcp_listener *l = *lp;

	if (!l)
		return;
	if (l->ev)
		event_free(l->ev);
	if (l->retry)
		event_free(l->retry);
	close(l->fd);
	free(l);
	*lp = NULL;
}

void net_tcp_close_all(struct net *n)
{
	struct hmap_node *node, *tmp;
	size_t i;

	HMAP_FOREACH_SAFE(&n->conns, node, tmp, i)
	{
		conn_free(hmap_entry(node, struct net_conn, node));
	}
}

void net_tcp_stop_reading(struct net *n)
{
	struct hmap_node *node, *tmp;
	size_t i;

	for (i = 0; i < n->n_listen; i++) {
		if (n->tcp[i]) {
			event_del(n->tcp[i]->ev);
			event_del(n->tcp[i]->retry);
		}
	}
	HMAP_FOREACH_SAFE(&n->conns, node, tmp, i)
	{
		event_del(hmap_entry(node, struct net_conn, node)->rev);
	}
}

int net_tcp_send(struct net *n, const struct net_flow *flow, const char *buf, size_t len)
{
	struct net_conn *c = conn_find(n, flow->src.conn_id);
	int err;

	if (!c || c->closing) {
		n->stats.tx_dropped++;
		return ENOTCONN;
	}
	err = conn_output(c, buf, len);
	if (err) {
		n->stats.tx_dropped++;
		return err;
	}
	n->stats.tx_msgs++;
	return 0;
}

int net_tcp_conn_flow(struct net *n, uint64_t id, struct net_flow *flow, int *fdp)
{
	struct net_conn *c = conn_find(n, id);

	if (!c || c->closing)
		return ENOTCONN;
	*flow = c->flow;
	*fdp = c->fd;
	return 0;
}
