/* Transport setup and dispatch: binds every configured listener, routes net_send to the
 * UDP or TCP side, and holds the counters. The per-protocol work is in net_udp.c and
 * net_tcp.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "net_priv.h"

static int net_sockaddr(const struct listen_spec *spec, struct sockaddr_storage *ss,
			socklen_t *lenp)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, spec->addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(spec->port);
		*lenp = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, spec->addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(spec->port);
		*lenp = sizeof(*sin6);
		return 0;
	}
	return EINVAL;
}

int net_socket_bind(const struct listen_spec *spec, int type, int *fdp, uint16_t *portp)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;
	int fd = -1;
	int err;

	err = net_sockaddr(spec, &ss, &len);
	if (err)
		return err;
	fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	/* SO_REUSEPORT lets one sipregd per core share the port; the kernel spreads sources
	 * over them by hash, so a UDP client keeps meeting the same process. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		goto fail;
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		goto fail;
	*portp = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						: ((struct sockaddr_in *)&ss)->sin_port);
	*fdp = fd;
	return 0;
fail:
	err = errno;
	close(fd);
	return err;
}

/* inet_ntop for IPv4 without its sprintf: it runs once per datagram. buf holds at least
 * INET_ADDRSTRLEN bytes. */
static void net_ipv4_text(const struct in_addr *a, char *buf)
{
	const uint8_t *b = (const uint8_t *)&a->s_addr;
	size_t n = 0;

	for (int i = 0; i < 4; i++) {
		if (i)
			buf[n++] = '.';
		if (b[i] >= 100)
			buf[n++] = (char)('0' + b[i] / 100);
		if (b[i] >= 10)
			buf[n++] = (char)('0' + b[i] / 10 % 10);
		buf[n++] = (char)('0' + b[i] % 10);
	}
	buf[n] = '\0';
}

void net_flow_set_peer(struct net_flow *flow, enum sip_proto proto, const struct sockaddr *sa,
		       socklen_t len)
{
	if (len > sizeof(flow->peer))
		len = sizeof(flow->peer);
	memcpy(&flow->peer, sa, len);
	flow->peer_len = len;
	flow->src.proto = proto;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, flow->src.ip, sizeof(flow->src.ip));
		flow->src.port = ntohs(sin6->sin6_port);
	} else {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		net_ipv4_text(&sin->sin_addr, flow->src.ip);
		flow->src.port = ntohs(sin->sin_port);
	}
}

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
	n->recvh = recvh;
	n->arg = arg;
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

int net_send(struct net *n, const struct net_flow *flow, uint16_t port, const char *buf,
	     size_t len)
{
	if (!n || !flow || !buf)
		return EINVAL;
	switch (flow->src.proto) {
	case SIP_PROTO_UDP:
		return net_udp_send(n, flow, port ? port : flow->src.port, buf, len);
	case SIP_PROTO_TCP:
		return net_tcp_send(n, flow, buf, len);
	default:
		return ENOTSUP;
	}
}

void net_stats_get(const struct net *n, struct net_stats *st)
{
	*st = n->stats;
}

uint16_t net_listen_port(const struct net *n, size_t i)
{
	return i < n->n_listen ? n->ports[i] : 0;
}
