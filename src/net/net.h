/* Transports: UDP and TCP listeners on the event loop, and sending a response back along
 * the flow a request came in on (RFC 3261 §18.2.2, RFC 3581). */
#ifndef SIPREG_NET_H
#define SIPREG_NET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config/config.h"
#include "sipreg/types.h"

struct event_base;
struct net;

/* How a message arrived: enough to answer it and to record it in a binding. */
struct net_flow {
	struct sip_source src;          /* proto, peer ip/port, conn_id */
	struct sockaddr_storage peer;   /* peer address as a sockaddr */
	socklen_t peer_len;
	int udp_fd;                     /* UDP socket it arrived on (answers leave from it) */
	uint16_t local_port;
};

/* One complete message (a datagram, or a framed message from a stream). buf is borrowed. */
typedef void(net_recv_h)(const char *buf, size_t len, const struct net_flow *flow, void *arg);

/* Bind every listener of cfg->listen (SO_REUSEPORT so several sipregd processes share a
 * port). Returns 0 or an errno; the log names the failing address. *np: net_free(). */
int net_alloc(struct net **np, struct event_base *base, const struct config *cfg,
	      net_recv_h *recvh, void *arg);
void net_free(struct net **np);

/* Send a response along flow. For UDP, port is where it goes (the caller applied
 * §18.2.2: rport -> source port, else Via port or 5060; 0 = the source port); the
 * address is always the flow's source address. For TCP the bytes go on the same
 * connection; ENOTCONN when it has closed meanwhile. Returns 0 or an errno (the message
 * is dropped, as UDP would). Not to be called with a net being freed; the receive
 * handler must not free the net it is called from. */
int net_send(struct net *n, const struct net_flow *flow, uint16_t port, const char *buf,
	     size_t len);

/* A request of our own (qualify's OPTIONS) to dst, a flow a binding recorded: for UDP,
 * from the first UDP listener of dst's address family to dst's address and port; for TCP,
 * on connection dst->conn_id, which must still be open in this process (ENOTCONN when it
 * is not: another instance's, or closed). Fills *flow for net_send (port 0) and local
 * (the address our Via names, numeric, no brackets) with *local_port. Returns 0, ENOTCONN,
 * EAFNOSUPPORT (no listener of that kind) or EINVAL. */
int net_flow_to(struct net *n, const struct sip_source *dst, struct net_flow *flow,
		char *local, size_t local_len, uint16_t *local_port);
/* Called for every message the transports hand up (out false: from peer) and every
 * message net_send is given (out true: to peer, at port); buf is borrowed. */
typedef void(net_trace_h)(bool out, const struct sip_source *peer, uint16_t port,
			  const char *buf, size_t len, void *arg);
/* Install (or with NULL remove) the trace hook; ops/debug.c's debug_trace is one. */
void net_trace_set(struct net *n, net_trace_h *h, void *arg);

/* Stop reading: no more datagrams, connections or stream bytes are taken in (SIGTERM's
 * drain); what is sent still goes out. */
void net_stop_reading(struct net *n);

/* Counters for logs and benchmarks. rx_dropped: oversize datagrams and TCP streams
 * closed for an oversize or unframeable message; tx_dropped: sends that failed (full
 * socket buffer, closed connection); tcp_conns: connections open now;
 * tcp_conns_refused: connections closed at once because max_tcp_connections were open;
 * tcp_conns_refused_source: the same because their source had
 * max_tcp_connections_per_source open. */
struct net_stats {
	uint64_t rx_msgs, tx_msgs, rx_dropped, tcp_conns, tcp_conns_refused;
	uint64_t tcp_conns_refused_source;
	uint64_t tx_dropped;
	uint64_t rx_stale; /* UDP datagrams shed unread: older than limits.max_queue_delay_ms */
	/* TCP output the kernel has not taken yet: bytes now, the most there ever was, and
	 * connections closed because their peer did not read it (over tcp_max_output, over
	 * the budget, or pending longer than tcp_output_timeout). */
	uint64_t tcp_out_bytes, tcp_out_peak, tcp_out_closed;
};
void net_stats_get(const struct net *n, struct net_stats *st);

/* The port the i-th cfg->listen entry is bound to (useful when it asked for port 0);
 * 0 when there is no such entry. */
uint16_t net_listen_port(const struct net *n, size_t i);

/* TCP framing, exposed for unit tests: given buffered stream bytes, returns the length of
 * the first complete message (headers + Content-Length body) in *msg_len and how many
 * leading CRLF keep-alive bytes precede it in *skip. Returns 0 (complete), EAGAIN (need
 * more), EMSGSIZE (exceeds max), EBADMSG (no valid Content-Length on a stream). */
int net_tcp_frame(const char *buf, size_t len, size_t max, size_t *skip, size_t *msg_len);

#endif
