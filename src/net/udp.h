/* The UDP transport (udp.c): batched receive, adaptive receive buffer, queue-age shedding. */
#ifndef SIPREG_NET_UDP_H
#define SIPREG_NET_UDP_H

#include "net/net_priv.h"

int net_udp_open(struct net *n, const struct listen_spec *spec, struct net_udp **up);
void net_udp_close(struct net_udp **up);
int net_udp_send(struct net *n, const struct net_flow *flow, uint16_t port, const char *buf,
		 size_t len);

#endif
