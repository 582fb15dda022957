/* Transport setup and dispatch: binds every configured listener, routes net_send to the
 * UDP or TCP side, and holds the counters. The per-protocol work is in udp.c and tcp.c,
 * the socket helpers they share in sock.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sipreg/log.h"
#include "net/net_priv.h"
#include "net/sock.h"
#include "net/tcp.h"
#include "net/udp.h"

/* What an operator can do about a bind error, for the log line. */
static const char *net_bind_hint(int err)
{
	switch (err) {
	case EADDRINUSE:
		return " (another process holds it: only sockets of the same user that set "
		       "SO_REUSEPORT, as other sipregd processes do, may share a port)";
	case EADDRNOTAVAIL:
		return " (no interface of this host has that address)";
	case EACCES:
		return " (ports below 1024 need CAP_NET_BIND_SERVICE)";
	default:
		return "";
	}
}

/* Every received message passes here on its way up: the trace sees it first. */
static void net_recv_dispatch(const char *buf, size_t len, const struct net_flow *flow,
			      void *arg)
{
	struct net *n = arg;

	if (n->traceh)
		n->traceh(false, &flow->src, flow->src.port, buf, len, n->trace_arg);
	n->user_recvh(buf, len, flow, n->user_arg);
}

void net_trace_set(struct net *n, net_trace_h *h, void *arg)
{
	n->traceh = h;
	n->trace_arg = arg;
}

int net_alloc(struct net **np, struct event_base *base, const struct config *cfg,
	      net_recv_h *recvh, void *arg)
{
	struct timeval idle;
	struct net *n;
	int err = ENOMEM;

	*np = NULL;
	/* config.c refuses larger sizes; a caller that skipped it must not get UDP buffers
	 * sized for messages no datagram can hold. */
	if (!base || !cfg || !recvh || cfg->limits.max_message_size == 0 ||
	    cfg->limits.max_message_size > CONFIG_MAX_MESSAGE_SIZE)
		return EINVAL;
	n = calloc(1, sizeof(*n));
	if (!n)
		return ENOMEM;
	n->base = base;
	n->recvh = net_recv_dispatch;
	n->arg = n;
	n->user_recvh = recvh;
	n->user_arg = arg;
	n->max_msg = cfg->limits.max_message_size;
	n->max_conns = cfg->limits.max_tcp_connections;
	n->max_conns_per_src = cfg->limits.max_tcp_connections_per_source;
	n->trusted = cfg->trusted_sources;
	/* The loader never gives 0 (its minimum is 4096); a caller building a config by
	 * hand (the unit tests) gets no bound from 0. */
	n->out_budget = cfg->limits.tcp_output_budget ? cfg->limits.tcp_output_budget : SIZE_MAX;
	n->out_max = cfg->limits.tcp_max_output ? cfg->limits.tcp_max_output : SIZE_MAX;
	n->out_timeout_ns = (int64_t)cfg->limits.tcp_output_timeout * 1000000000;
	n->idle_timeout = cfg->limits.tcp_idle_timeout;
	n->max_queue_delay_ns = (int64_t)cfg->limits.max_queue_delay_ms * 1000000;
	n->next_conn_id = 1;
	n->n_listen = cfg->n_listen;
	if (hmap_init(&n->conns, 64) != 0 || hmap_init(&n->srcs, 64) != 0)
		goto fail;
	/* Every connection shares one timeout length: a common timeout keeps them in a
	 * queue (O(1) re-arm on each read) instead of the timer heap. 0 = no timeout. */
	if (n->idle_timeout) {
		idle = (struct timeval){.tv_sec = n->idle_timeout};
		n->idle_tv = event_base_init_common_timeout(base, &idle);
		if (!n->idle_tv)
			goto fail;
	}
	n->udp = calloc(cfg->n_listen + 1, sizeof(*n->udp));
	n->tcp = calloc(cfg->n_listen + 1, sizeof(*n->tcp));
	n->ports = calloc(cfg->n_listen + 1, sizeof(*n->ports));
	if (!n->udp || !n->tcp || !n->ports)
		goto fail;
	for (size_t i = 0; i < cfg->n_listen; i++) {
		const struct listen_spec *spec = &cfg->listen[i];

		switch (spec->proto) {
		case SIP_PROTO_UDP:
			err = net_udp_open(n, spec, &n->udp[i]);
			if (!err)
				n->ports[i] = n->udp[i]->port;
			break;
		case SIP_PROTO_TCP:
			err = net_tcp_open(n, spec, &n->tcp[i]);
			if (!err)
				n->ports[i] = n->tcp[i]->port;
			break;
		default:
			err = ENOTSUP;
			break;
		}
		if (err) {
			log_err("cannot listen on %s://%s%s%s:%u: %s%s",
				sip_proto_name(spec->proto), strchr(spec->addr, ':') ? "[" : "",
				spec->addr, strchr(spec->addr, ':') ? "]" : "", spec->port,
				strerror(err), net_bind_hint(err));
			goto fail;
		}
	}
	*np = n;
	return 0;
fail:
	net_free(&n);
	return err;
}

void net_free(struct net **np)
{
	struct net *n = *np;

	if (!n)
		return;
	for (size_t i = 0; i < n->n_listen; i++) {
		if (n->udp)
			net_udp_close(&n->udp[i]);
		if (n->tcp)
			net_tcp_close(&n->tcp[i]);
	}
	if (n->conns.buckets) {
		net_tcp_close_all(n);
		hmap_destroy(&n->conns);
	}
	/* Every source entry went with its last connection. */
	if (n->srcs.buckets)
		hmap_destroy(&n->srcs);
	free(n->udp);
	free(n->tcp);
	free(n->ports);
	free(n->rxbuf);
	free(n);
	*np = NULL;
}

/* The trace of a message sent: the transaction table hands flows with the peer's
 * sockaddr alone (its compact copy), so the text form is made here when it is missing. */
static void net_trace_out(struct net *n, const struct net_flow *flow, uint16_t port,
			  const char *buf, size_t len)
{
	struct net_flow f;
	const struct net_flow *use = flow;

	if (!flow->src.ip[0] && flow->peer_len) {
		f = *flow;
		net_flow_set_peer(&f, flow->src.proto, (const struct sockaddr *)&flow->peer,
				  flow->peer_len);
		f.src.conn_id = flow->src.conn_id;
		use = &f;
	}
	n->traceh(true, &use->src,
		  use->src.proto == SIP_PROTO_UDP && port ? port : use->src.port, buf, len,
		  n->trace_arg);
}

int net_send(struct net *n, const struct net_flow *flow, uint16_t port, const char *buf,
	     size_t len)
{
	if (!n || !flow || !buf)
		return EINVAL;
	if (n->traceh)
		net_trace_out(n, flow, port, buf, len);
	switch (flow->src.proto) {
	case SIP_PROTO_UDP:
		return net_udp_send(n, flow, port ? port : flow->src.port, buf, len);
	case SIP_PROTO_TCP:
		return net_tcp_send(n, flow, buf, len);
	default:
		return ENOTSUP;
	}
}

void net_stop_reading(struct net *n)
{
	n->reading_stopped = true;
	for (size_t i = 0; i < n->n_listen; i++) {
		if (n->udp[i])
			event_del(n->udp[i]->ev);
	}
	net_tcp_stop_reading(n);
}

void net_stats_get(const struct net *n, struct net_stats *st)
{
	*st = n->stats;
}

uint16_t net_listen_port(const struct net *n, size_t i)
{
	return i < n->n_listen ? n->ports[i] : 0;
}

/* The local address of fd as text; for a wildcard bind, the address the kernel would send
 * from to peer (a connected UDP socket learns it without sending anything). */
static int net_local_addr(int fd, const struct sockaddr_storage *peer, socklen_t peer_len,
			  char *local, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	bool any;
	int probe;

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return errno;
	any = ss.ss_family == AF_INET6
		  ? IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr)
		  : ((struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (any) {
		probe = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		sl = sizeof(ss);
		if (probe < 0)
			return errno;
		if (connect(probe, (const struct sockaddr *)peer, peer_len) != 0 ||
		    getsockname(probe, (struct sockaddr *)&ss, &sl) != 0) {
			int err = errno;

			close(probe);
			return err;
		}
		close(probe);
	}
	if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, local, (socklen_t)len);
	else
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, local, (socklen_t)len);
	return 0;
}

int net_flow_to(struct net *n, const struct sip_source *dst, struct net_flow *flow,
		char *local, size_t local_len, uint16_t *local_port)
{
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	bool v6;
	int fd, err;

	if (!n || !dst || !flow || !local)
		return EINVAL;
	memset(flow, 0, sizeof(*flow));
	flow->udp_fd = -1;
	if (dst->proto == SIP_PROTO_TCP) {
		err = net_tcp_conn_flow(n, dst->conn_id, flow, &fd);
		if (err)
			return err;
		*local_port = flow->local_port;
		return net_local_addr(fd, &flow->peer, flow->peer_len, local, local_len);
	}
	if (dst->proto != SIP_PROTO_UDP)
		return EAFNOSUPPORT;
	v6 = strchr(dst->ip, ':') != NULL;
	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(dst->port);
		if (inet_pton(AF_INET6, dst->ip, &s6->sin6_addr) != 1)
			return EINVAL;
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(dst->port);
		if (inet_pton(AF_INET, dst->ip, &s4->sin_addr) != 1)
			return EINVAL;
		sl = sizeof(*s4);
	}
	for (size_t i = 0; i < n->n_listen; i++) {
		struct sockaddr_storage bound;
		socklen_t bl = sizeof(bound);

		if (!n->udp[i] || getsockname(n->udp[i]->fd, (struct sockaddr *)&bound, &bl) != 0 ||
		    bound.ss_family != ss.ss_family)
			continue;
		net_flow_set_peer(flow, SIP_PROTO_UDP, (const struct sockaddr *)&ss, sl);
		flow->udp_fd = n->udp[i]->fd;
		flow->local_port = n->udp[i]->port;
		*local_port = n->udp[i]->port;
		return net_local_addr(n->udp[i]->fd, &ss, sl, local, local_len);
	}
	return EAFNOSUPPORT;
}
