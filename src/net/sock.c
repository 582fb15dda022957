/* Socket helpers the transports share: bind a listener the way every listener is bound, and
 * turn a peer sockaddr into the flow's printable source. */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "net/sock.h"
#include "util/netaddr.h"

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

		netaddr_ipv4_text((const uint8_t *)&sin->sin_addr.s_addr, flow->src.ip);
		flow->src.port = ntohs(sin->sin_port);
	}
}
