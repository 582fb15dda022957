/* TCP transport: listeners, connections kept by id, stream framing (RFC 3261 §18.3 with
 * RFC 5626 CRLF keep-alives), buffered output and idle timeouts.
 *
 * DESIGN: a connection owns one growable input buffer, an evbuffer for output that did
 * not fit in the socket, a persistent read event whose timeout is the idle timeout (a
 * persistent event's timeout restarts whenever it fires, so every read resets it) and a
 * write event armed only while output is pending. Messages are handed to the receive
 * handler straight from the input buffer; while that runs the connection is "busy", and
 * a close requested meanwhile (a failed send, say) only marks it, so the read path never
 * touches freed memory. Connections live in an hmap by conn_id; ids are never reused, so
 * a late response for a closed connection finds nothing and gets ENOTCONN. */
#include <errno.h>
#include <event2/buffer.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sipreg/log.h"
#include "net/net_priv.h"
#include "net/sock.h"
#include "net/tcp.h"
#include "util/text.h"

/* Bytes read per wakeup at most (and spare room kept in the input buffer). */
#define NET_TCP_CHUNK 16384
/* Connections accepted per wakeup, so an accept storm does not starve the rest. */
#define NET_TCP_ACCEPT_BATCH 64
/* Output a peer may leave unread before we give up on it. */
#define NET_TCP_MAX_OUT	     (4u * 1024 * 1024)
#define NET_TCP_WRITE_ROUNDS 8

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
		if (nvec <= 0) {
			event_del(c->wev);
			return 0;
		}
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
	}
	if (evbuffer_get_length(c->out) == 0)
		event_del(c->wev);
	else
		event_add(c->wev, NULL);
	return 0;
}

/* Queue bytes on c: straight to the socket when nothing is waiting, the rest buffered
 * for the write event. Returns 0 or an errno (the connection is then being closed). */
static int conn_output(struct net_conn *c, const char *buf, size_t len)
{
	size_t done = 0;
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
	if (evbuffer_get_length(c->out) + (len - done) > NET_TCP_MAX_OUT) {
		log_debug("tcp %s:%u: peer does not read its responses; closing",
			  c->flow.src.ip, c->flow.src.port);
		err = ENOBUFS;
		goto fail;
	}
	if (evbuffer_add(c->out, buf + done, len - done) != 0) {
		err = ENOMEM;
		goto fail;
	}
	event_add(c->wev, NULL);
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
	}
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

static int conn_new(struct net_tcp_listener *l, int fd, const struct sockaddr_storage *ss,
		    socklen_t len)
{
	struct net *n = l->net;
	struct net_conn *c;
	int one = 1;

	c = calloc(1, sizeof(*c));
	if (!c)
		return ENOMEM;
	c->net = n;
	c->fd = fd;
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
	event_add(l->ev, NULL);
}

static void tcp_accept(evutil_socket_t fd, short what, void *arg)
{
	struct net_tcp_listener *l = arg;
	struct net *n = l->net;

	(void)what;
	for (int i = 0; i < NET_TCP_ACCEPT_BATCH; i++) {
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
		if (conn_new(l, cfd, &ss, len) != 0) {
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
