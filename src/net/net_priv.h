/* The state the transport files (net.c, udp.c, tcp.c) share; nothing outside src/net/
 * includes this. Functions live in sock.h, udp.h and tcp.h so no file includes its caller. */
#ifndef SIPREG_NET_PRIV_H
#define SIPREG_NET_PRIV_H

#include <event2/event.h>
#include <event2/util.h>

#include "sipreg/hmap.h"
#include "sipreg/log.h"
#include "net/net.h"

/* Datagrams read per recvmmsg call, and calls per wakeup: 4 x 32 datagrams, then back to
 * the loop so TCP and timers get their turn (level triggering brings us back). */
#define NET_UDP_BATCH  32
#define NET_UDP_ROUNDS 4

struct net_udp {
	struct net *net;
	int fd;
	uint16_t port;
	struct event *ev;
	/* Receive buffer sizing under overload (udp.c): the size set now, the size
	 * it returns to, and when it last changed. */
	int rcvbuf, rcvbuf_full;
	int64_t rcvbuf_changed_ns;
};

struct net_tcp_listener {
	struct net *net;
	int fd;
	uint16_t port;
	struct event *ev;
	struct event *retry; /* re-enables ev after EMFILE/ENFILE */
};

struct net {
	struct event_base *base;
	net_recv_h *recvh; /* net.c's: traces, then hands on to user_recvh */
	net_recv_h *user_recvh;
	void *arg;          /* the net itself, for recvh */
	void *user_arg;
	net_trace_h *traceh;
	void *trace_arg;
	bool reading_stopped;
	size_t max_msg;
	uint32_t max_conns;
	uint32_t idle_timeout;
	/* One entry per cfg->listen entry, in order; exactly one of the two is set. */
	struct net_udp **udp;
	struct net_tcp_listener **tcp;
	uint16_t *ports;
	size_t n_listen;
	/* UDP receive batch: NET_UDP_BATCH buffers of max_msg + 1 bytes. */
	char *rxbuf;
	/* Queue-age shedding (udp.c); 0 turns it off. */
	int64_t max_queue_delay_ns;
	int64_t stale_report_ns;   /* when rx_stale was last logged */
	uint64_t stale_reported;   /* rx_stale at that time */
	/* TCP connections by conn_id. */
	struct hmap conns;
	uint64_t next_conn_id;
	const struct timeval *idle_tv; /* libevent common timeout for idle connections */
	/* Connections per source (net_tcp.c): struct net_tcp_src by address (IPv6 by /64);
	 * sources in trusted (borrowed from the config, may be NULL) are not counted. */
	struct hmap srcs;
	uint32_t max_conns_per_src; /* 0: no cap */
	const struct netaddr_set *trusted;
	/* Unsent TCP output: the sum over all connections is held under out_budget, each
	 * connection's under out_max; out_timeout_ns (0: none) is how long a connection's
	 * output may stay pending. */
	size_t out_budget, out_max;
	int64_t out_timeout_ns;
	struct log_limit lim_slow, lim_src;
	struct net_stats stats;
};

#endif
