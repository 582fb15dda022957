/* Socket helpers shared by the UDP and TCP transports (sock.c). */
#ifndef SIPREG_NET_SOCK_H
#define SIPREG_NET_SOCK_H

#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"
#include "net/net.h"

/* Open a socket of type for spec (SO_REUSEADDR, SO_REUSEPORT, IPV6_V6ONLY, non-blocking)
 * and bind it. Returns the fd in *fdp and the bound port in *portp, or an errno. */
int net_socket_bind(const struct listen_spec *spec, int type, int *fdp, uint16_t *portp);
/* Fill the peer part of a flow from a sockaddr. */
void net_flow_set_peer(struct net_flow *flow, enum sip_proto proto, const struct sockaddr *sa,
		       socklen_t len);

#endif
