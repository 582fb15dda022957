/* The TCP transport (tcp.c): accept, framing, output, caps and idle timeout. */
#ifndef SIPREG_NET_TCP_H
#define SIPREG_NET_TCP_H

#include "net/net_priv.h"

int net_tcp_open(struct net *n, const struct listen_spec *spec, struct net_tcp_listener **lp);
void net_tcp_close(struct net_tcp_listener **lp);
/* Close every connection (net_free). */
/* SIGTERM's drain: accept no more connections and read no more from open ones; their
 * output still drains. */
void net_tcp_stop_reading(struct net *n);
void net_tcp_close_all(struct net *n);
int net_tcp_send(struct net *n, const struct net_flow *flow, const char *buf, size_t len);
/* The flow and socket of open connection id; ENOTCONN when there is none. */
int net_tcp_conn_flow(struct net *n, uint64_t id, struct net_flow *flow, int *fdp);

#endif
