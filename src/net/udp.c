/* UDP transport: datagram listeners read in recvmmsg batches, and responses sent back to
 * the address a request came from. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sipreg/log.h"
#include "net/net_priv.h"
#include "net/sock.h"
#include "net/udp.h"

/* The benchmark pushes 30k+ datagrams/s through one socket: a deep receive queue rides
 * out the moments the process spends on something else. */
#define NET_UDP_RCVBUF (8 * 1024 * 1024)
#define NET_UDP_SNDBUF (4 * 1024 * 1024)
/* Under overload the receive buffer shrinks by half at most this often, down to
 * NET_UDP_RCVBUF_MIN; once requests are fresh again it grows back by a sixteenth of its
 * full size per NET_UDP_GROW_NS. */
#define NET_UDP_RCVBUF_MIN (64 * 1024)
#define NET_UDP_SHRINK_NS (100 * INT64_C(1000000))
#define NET_UDP_GROW_NS (500 * INT64_C(1000000))
/* How often shedding is reported while it goes on. */
#define NET_UDP_STALE_REPORT_NS (10 * INT64_C(1000000000))

/* Set a socket buffer; returns the size the kernel granted (it reports twice the
 * request, the other half being its bookkeeping allowance). */
static int udp_bufsize(int fd, int force_opt, int opt, int size)
{
	socklen_t len = sizeof(size);

	/* The FORCE variant ignores net.core.rmem_max but needs CAP_NET_ADMIN; without it
	 * the plain option gets what the sysctl allows. */
	if (setsockopt(fd, SOL_SOCKET, force_opt, &size, sizeof(size)) != 0 &&
	    setsockopt(fd, SOL_SOCKET, opt, &size, sizeof(size)) < 0)
		log_debug("udp socket buffer %d: %s", size, strerror(errno));
	if (getsockopt(fd, SOL_SOCKET, opt, &size, &len) < 0)
		return 0;
	return size / 2;
}

static int64_t udp_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* The kernel's receive time of a datagram (SO_TIMESTAMPNS), 0 when it carries none. */
static int64_t udp_rx_ns(struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
			struct timespec ts;

			memcpy(&ts, CMSG_DATA(c), sizeof(ts));
			return udp_ns(&ts);
		}
	}
	return 0;
}

/* DESIGN: queue delay, not depth, bounds the work an overloaded process takes on.
 * A datagram that waited in the receive queue longer than max_queue_delay is shed
 * unread: its sender has retransmitted it (T1 = 500 ms) or soon will, so working on it
 * would spend the CPU the process lacks on an answer that arrives late and duplicated.
 * Reading a datagram only to shed it still costs a copy, and every shed request comes
 * back as retransmissions; so stale datagrams also halve the receive buffer (at most
 * every NET_UDP_SHRINK_NS), and the kernel then drops the excess before it costs this
 * process anything. What does get queued is answered before its sender retransmits,
 * each request read is one the process can finish, and the goodput stays at capacity.
 * While requests arrive fresh the buffer grows back step by step, so in normal service
 * it is deep enough to ride out bursts. */
static bool udp_stale(struct net *n, struct msghdr *mh, int64_t now_ns)
{
	int64_t rx = udp_rx_ns(mh);

	if (!rx || now_ns - rx <= n->max_queue_delay_ns)
		return false;
	n->stats.rx_stale++;
	return true;
}

static void udp_rcvbuf_adapt(struct net_udp *u, bool stale, int64_t head_age_ns,
			     int64_t now_ns)
{
	int64_t since = now_ns - u->rcvbuf_changed_ns;
	int size = u->rcvbuf;

	if (stale && since >= NET_UDP_SHRINK_NS && size > NET_UDP_RCVBUF_MIN)
		size = size / 2 > NET_UDP_RCVBUF_MIN ? size / 2 : NET_UDP_RCVBUF_MIN;
	else if (!stale && head_age_ns < u->net->max_queue_delay_ns / 4 &&
		 since >= NET_UDP_GROW_NS && size < u->rcvbuf_full)
		size = size + u->rcvbuf_full / 16 < u->rcvbuf_full
			       ? size + u->rcvbuf_full / 16
			       : u->rcvbuf_full;
	else
		return;
	u->rcvbuf_changed_ns = now_ns;
	if (setsockopt(u->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0 &&
	    setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) != 0)
		return;
	log_debug("udp port %u: receive buffer %d -> %d bytes (queue delay %" PRId64 " ms)",
		  u->port, u->rcvbuf, size, head_age_ns / 1000000);
	u->rcvbuf = size;
}

static void udp_report_stale(struct net *n, int64_t now_ns)
{
	uint64_t shed = n->stats.rx_stale - n->stale_reported;

	if (!shed || now_ns - n->stale_report_ns < NET_UDP_STALE_REPORT_NS)
		return;
	log_warn("udp: overloaded: shed %" PRIu64 " datagrams that waited over %" PRId64
		 " ms in the receive queue",
		 shed, n->max_queue_delay_ns / 1000000);
	n->stale_reported = n->stats.rx_stale;
	n->stale_report_ns = now_ns;
}

/* Nothing but CR and LF: a keep-alive (RFC 5626 §4.4.1 leaves UDP to STUN, but clients
 * send CRLFs anyway); not a message. */
static bool udp_is_keepalive(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != '\r' && buf[i] != '\n')
			return false;
	return true;
}

static void udp_read(evutil_socket_t fd, short what, void *arg)
{
	struct net_udp *u = arg;
	struct net *n = u->net;
	struct mmsghdr msgs[NET_UDP_BATCH];
	struct iovec iov[NET_UDP_BATCH];
	struct sockaddr_storage peers[NET_UDP_BATCH];
	/* CMSG_SPACE rounds to the header's alignment, so every row stays aligned. */
	_Alignas(struct cmsghdr) char ctl[NET_UDP_BATCH][CMSG_SPACE(sizeof(struct timespec))];
	size_t stride = n->max_msg + 1;
	struct net_flow flow;

	(void)what;
	for (int round = 0; round < NET_UDP_ROUNDS; round++) {
		struct timespec now;
		int64_t now_ns = 0;
		int r;

		for (int i = 0; i < NET_UDP_BATCH; i++) {
			iov[i].iov_base = n->rxbuf + (size_t)i * stride;
			iov[i].iov_len = n->max_msg;
			memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
			msgs[i].msg_hdr.msg_name = &peers[i];
			msgs[i].msg_hdr.msg_namelen = sizeof(peers[i]);
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
			if (n->max_queue_delay_ns) {
				msgs[i].msg_hdr.msg_control = ctl[i];
				msgs[i].msg_hdr.msg_controllen = sizeof(ctl[i]);
			}
		}
		r = recvmmsg(fd, msgs, NET_UDP_BATCH, MSG_DONTWAIT, NULL);
		if (r < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_debug("udp recvmmsg on port %u: %s", u->port,
					  strerror(errno));
			return;
		}
		/* One clock read per batch: the batch is handled within a few milliseconds,
		 * far below any useful delay bound. */
		if (n->max_queue_delay_ns && clock_gettime(CLOCK_REALTIME, &now) == 0) {
			int64_t head = r > 0 ? udp_rx_ns(&msgs[0].msg_hdr) : 0;

			now_ns = udp_ns(&now);
			udp_report_stale(n, now_ns);
			udp_rcvbuf_adapt(u, head && now_ns - head > n->max_queue_delay_ns,
					 head ? now_ns - head : 0, now_ns);
		}
		for (int i = 0; i < r; i++) {
			char *buf = iov[i].iov_base;
			size_t len = msgs[i].msg_len;

			/* MSG_TRUNC: the datagram was longer than max_message_size. */
			if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
				n->stats.rx_dropped++;
				continue;
			}
			if (now_ns && udp_stale(n, &msgs[i].msg_hdr, now_ns))
				continue;
			if (udp_is_keepalive(buf, len))
				continue;
			buf[len] = '\0';
			memset(&flow, 0, sizeof(flow));
			net_flow_set_peer(&flow, SIP_PROTO_UDP, (struct sockaddr *)&peers[i],
					  msgs[i].msg_hdr.msg_namelen);
			flow.udp_fd = fd;
			flow.local_port = u->port;
			n->stats.rx_msgs++;
			n->recvh(buf, len, &flow, n->arg);
		}
		if (r < NET_UDP_BATCH)
			return;
	}
}

int net_udp_open(struct net *n, const struct listen_spec *spec, struct net_udp **up)
{
	struct net_udp *u;
	int err;

	*up = NULL;
	if (!n->rxbuf) {
		n->rxbuf = malloc(NET_UDP_BATCH * (n->max_msg + 1));
		if (!n->rxbuf)
			return ENOMEM;
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		return ENOMEM;
	u->net = n;
	err = net_socket_bind(spec, SOCK_DGRAM, &u->fd, &u->port);
	if (err) {
		free(u);
		return err;
	}
	u->rcvbuf = u->rcvbuf_full = udp_bufsize(u->fd, SO_RCVBUFFORCE, SO_RCVBUF, NET_UDP_RCVBUF);
	udp_bufsize(u->fd, SO_SNDBUFFORCE, SO_SNDBUF, NET_UDP_SNDBUF);
	if (n->max_queue_delay_ns &&
	    setsockopt(u->fd, SOL_SOCKET, SO_TIMESTAMPNS, &(int){ 1 }, sizeof(int)) < 0) {
		err = errno;
		log_err("udp: cannot timestamp datagrams (SO_TIMESTAMPNS): %s", strerror(err));
		net_udp_close(&u);
		return err;
	}
	u->ev = event_new(n->base, u->fd, EV_READ | EV_PERSIST, udp_read, u);
	if (!u->ev || event_add(u->ev, NULL) < 0) {
		net_udp_close(&u);
		return ENOMEM;
	}
	*up = u;
	return 0;
}

void net_udp_close(struct net_udp **up)
{
	struct net_udp *u = *up;

	if (!u)
		return;
	if (u->ev)
		event_free(u->ev);
	close(u->fd);
	free(u);
	*up = NULL;
}

int net_udp_send(struct net *n, const struct net_flow *flow, uint16_t port, const char *buf,
		 size_t len)
{
	struct sockaddr_storage ss;
	ssize_t r;

	if (flow->udp_fd < 0 || flow->peer_len == 0 || flow->peer_len > sizeof(ss))
		return EINVAL;
	/* Only ever the source address of the request: the port is the one thing the
	 * caller chooses (§18.2.2 / RFC 3581). */
	memcpy(&ss, &flow->peer, flow->peer_len);
	if (ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
	do
		r = sendto(flow->udp_fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL,
			   (struct sockaddr *)&ss, flow->peer_len);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		/* EAGAIN included: UDP is lossy, the client retransmits. */
		int err = errno;

		n->stats.tx_dropped++;
		return err;
	}
	n->stats.tx_msgs++;
	return 0;
}
