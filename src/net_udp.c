/* UDP transport: datagram listeners read in recvmmsg batches, and responses sent back to
 * the address a request came from. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "net_priv.h"

/* The benchmark pushes 30k+ datagrams/s through one socket: a deep receive queue rides
 * out the moments the process spends on something else. */
#define NET_UDP_RCVBUF (8 * 1024 * 1024)
#define NET_UDP_SNDBUF (4 * 1024 * 1024)

static void udp_bufsize(int fd, int force_opt, int opt, int size)
{
	/* The FORCE variant ignores net.core.rmem_max but needs CAP_NET_ADMIN; without it
	 * the plain option gets what the sysctl allows. */
	if (setsockopt(fd, SOL_SOCKET, force_opt, &size, sizeof(size)) == 0)
		return;
	if (setsockopt(fd, SOL_SOCKET, opt, &size, sizeof(size)) < 0)
		log_debug("udp socket buffer %d: %s", size, strerror(errno));
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
	size_t stride = n->max_msg + 1;
	struct net_flow flow;

	(void)what;
	for (int round = 0; round < NET_UDP_ROUNDS; round++) {
		int r;

		for (int i = 0; i < NET_UDP_BATCH; i++) {
			iov[i].iov_base = n->rxbuf + (size_t)i * stride;
			iov[i].iov_len = n->max_msg;
			memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
			msgs[i].msg_hdr.msg_name = &peers[i];
			msgs[i].msg_hdr.msg_namelen = sizeof(peers[i]);
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
		r = recvmmsg(fd, msgs, NET_UDP_BATCH, MSG_DONTWAIT, NULL);
		if (r < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_debug("udp recvmmsg on port %u: %s", u->port,
					  strerror(errno));
			return;
		}
		for (int i = 0; i < r; i++) {
			char *buf = iov[i].iov_base;
			size_t len = msgs[i].msg_len;

			/* MSG_TRUNC: the datagram was longer than max_message_size. */
			if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
				n->stats.rx_dropped++;
				continue;
			}
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
	udp_bufsize(u->fd, SO_RCVBUFFORCE, SO_RCVBUF, NET_UDP_RCVBUF);
	udp_bufsize(u->fd, SO_SNDBUFFORCE, SO_SNDBUF, NET_UDP_SNDBUF);
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
