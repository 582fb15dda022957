/* Unit tests of the transports over real loopback sockets (IPv4 and IPv6): what reaches the
 * receive handler, framing on live TCP streams, keep-alives, limits and timeouts. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "net/net.h"
#include "net/net_priv.h"
#include "net/sock.h"
#include "util/netaddr.h"

#define MAX_RX 64

struct rx {
	char *buf;
	size_t len;
	struct net_flow flow;
};

struct harness {
	struct event_base *base;
	struct config cfg;
	struct listen_spec listen[4];
	struct net *net;
	struct rx rx[MAX_RX];
	int n_rx;
	/* When set, the handler answers every message with these bytes at once. */
	const char *reply;
	size_t reply_len;
	int reply_err;
};

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void run_ms(struct harness *h, int ms)
{
	uint64_t end = ms_now() + (uint64_t)ms;

	while (ms_now() < end) {
		struct timeval tv = {.tv_usec = 2000};

		event_base_loopexit(h->base, &tv);
		event_base_loop(h->base, EVLOOP_ONCE);
	}
}

/* Run the loop until n messages arrived or ms passed. */
static bool run_until_rx(struct harness *h, int n, int ms)
{
	uint64_t end = ms_now() + (uint64_t)ms;

	while (h->n_rx < n && ms_now() < end)
		run_ms(h, 2);
	return h->n_rx >= n;
}

static void on_msg(const char *buf, size_t len, const struct net_flow *flow, void *arg)
{
	struct harness *h = arg;
	struct rx *r;

	if (h->n_rx >= MAX_RX)
		return;
	r = &h->rx[h->n_rx++];
	r->buf = malloc(len + 1);
	if (r->buf) {
		memcpy(r->buf, buf, len);
		/* The transport promises a NUL after the message. */
		r->buf[len] = buf[len];
	}
	r->len = len;
	r->flow = *flow;
	if (h->reply)
		h->reply_err = net_send(h->net, flow, 0, h->reply, h->reply_len);
}

/* Listeners: UDP and TCP on 127.0.0.1 and ::1, all on port 0, with lim (its zero output
 * bounds become 4 MiB per connection and 64 MiB in all; trusted may be NULL). */
static int harness_init_limits(struct harness *h, const struct limits_conf *lim,
			       struct netaddr_set *trusted)
{
	static const struct listen_spec specs[4] = {
	    {.proto = SIP_PROTO_UDP, .addr = "127.0.0.1"},
	    {.proto = SIP_PROTO_TCP, .addr = "127.0.0.1"},
	    {.proto = SIP_PROTO_UDP, .addr = "::1"},
	    {.proto = SIP_PROTO_TCP, .addr = "::1"},
	};

	memset(h, 0, sizeof(*h));
	h->base = event_base_new();
	if (!h->base)
		return ENOMEM;
	memcpy(h->listen, specs, sizeof(specs));
	h->cfg.listen = h->listen;
	h->cfg.n_listen = 4;
	h->cfg.limits = *lim;
	if (!h->cfg.limits.tcp_max_output)
		h->cfg.limits.tcp_max_output = 4u * 1024 * 1024;
	if (!h->cfg.limits.tcp_output_budget)
		h->cfg.limits.tcp_output_budget = 64u * 1024 * 1024;
	h->cfg.trusted_sources = trusted;
	return net_alloc(&h->net, h->base, &h->cfg, on_msg, h);
}

static int harness_init(struct harness *h, uint32_t max_msg, uint32_t max_conns, uint32_t idle)
{
	const struct limits_conf lim = {
	    .max_message_size = max_msg, .max_tcp_connections = max_conns, .tcp_idle_timeout = idle};

	return harness_init_limits(h, &lim, NULL);
}

static void harness_fini(struct harness *h)
{
	net_free(&h->net);
	for (int i = 0; i < h->n_rx; i++)
		free(h->rx[i].buf);
	if (h->base)
		event_base_free(h->base);
}

static socklen_t loopback(int family, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		s6->sin6_port = htons(port);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	s4->sin_family = AF_INET;
	s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s4->sin_port = htons(port);
	return sizeof(*s4);
}

static int udp_client(int family, uint16_t *portp)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(family, 0, &ss);
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		close(fd);
		return -1;
	}
	*portp = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					  : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

static int udp_send(int fd, int family, uint16_t port, const char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = loopback(family, port, &ss);

	return sendto(fd, buf, len, 0, (struct sockaddr *)&ss, sl) == (ssize_t)len ? 0 : errno;
}

/* rcvbuf > 0: a small receive window from the start (set before connect: shrinking it on
 * a live connection only makes the kernel drop segments). */
static int tcp_connect_rcvbuf(int family, uint16_t port, int rcvbuf)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(family, port, &ss);
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int tcp_connect(int family, uint16_t port)
{
	return tcp_connect_rcvbuf(family, port, 0);
}

/* The kernel takes megabytes into a loopback socket before anything waits in the
 * transport's own buffer: shrink the send buffer of the server's end of client fd (this
 * process holds both ends) so a test reaches the bounds with little data. */
static void server_end_sndbuf(int client, int size)
{
	struct sockaddr_storage mine, peer;
	socklen_t ml = sizeof(mine), pl;

	if (getsockname(client, (struct sockaddr *)&mine, &ml) < 0)
		return;
	for (int fd = 3; fd < 4096; fd++) {
		pl = sizeof(peer);
		if (fd == client || getpeername(fd, (struct sockaddr *)&peer, &pl) < 0 ||
		    pl != ml || memcmp(&peer, &mine, ml) != 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
		return;
	}
}

/* A TCP connection to 127.0.0.1:port from the loopback address from (another source). */
static int tcp_connect_from(const char *from, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in local = {.sin_family = AF_INET};
	socklen_t len = loopback(AF_INET, port, &ss);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, from, &local.sin_addr);
	if (fd >= 0 && (bind(fd, (struct sockaddr *)&local, sizeof(local)) < 0 ||
			connect(fd, (struct sockaddr *)&ss, len) < 0)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Read what the server sent on fd within ms (running the loop); 0 = EOF, -1 = none. */
static ssize_t client_read(struct harness *h, int fd, char *buf, size_t cap, int ms)
{
	uint64_t end = ms_now() + (uint64_t)ms;

	for (;;) {
		ssize_t r = recv(fd, buf, cap, MSG_DONTWAIT);

		if (r >= 0)
			return r;
		if (errno == ECONNRESET)
			return 0;
		if (ms_now() >= end)
			return -1;
		run_ms(h, 2);
	}
}

/* Has the server closed fd? Runs the loop up to ms. */
static bool closed_by_server(struct harness *h, int fd, int ms)
{
	char buf[256];
	uint64_t end = ms_now() + (uint64_t)ms;

	while (ms_now() < end) {
		ssize_t r = client_read(h, fd, buf, sizeof(buf), (int)(end - ms_now()));

		if (r == 0)
			return true;
		if (r < 0)
			return false;
	}
	return false;
}

#define MSG1                                                                                   \
	"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP x;branch=z9hG4bK1\r\n"            \
	"Content-Length: 4\r\n\r\nbody"
#define MSG2 "OPTIONS sip:b@127.0.0.1 SIP/2.0\r\nl:0\r\n\r\n"

static void test_udp_datagram_reaches_handler_with_flow_v4_v6(void)
{
	static const int fams[2] = {AF_INET, AF_INET6};
	struct harness h;
	char buf[64];

	CHECK_INT(harness_init(&h, 65535, 10, 60), 0);
	for (int i = 0; i < 2 && h.net; i++) {
		uint16_t cport = 0, sport = net_listen_port(h.net, i == 0 ? 0 : 2);
		int fd = udp_client(fams[i], &cport);
		int before = h.n_rx;
		struct net_flow *f;

		CHECK(fd >= 0 && sport != 0);
		CHECK_INT(udp_send(fd, fams[i], sport, MSG2, sizeof(MSG2) - 1), 0);
		CHECK(run_until_rx(&h, before + 1, 2000));
		if (h.n_rx <= before) {
			close(fd);
			continue;
		}
		f = &h.rx[before].flow;
		CHECK_MEM(h.rx[before].buf, h.rx[before].len, MSG2);
		CHECK_INT(h.rx[before].buf[h.rx[before].len], '\0');
		CHECK_INT(f->src.proto, SIP_PROTO_UDP);
		CHECK_STR(f->src.ip, i == 0 ? "127.0.0.1" : "::1");
		CHECK_INT(f->src.port, cport);
		CHECK_INT(f->src.conn_id, 0);
		CHECK_INT(f->local_port, sport);
		CHECK(f->udp_fd >= 0);
		/* The answer goes back to the source, from the socket it came in on. */
		CHECK_INT(net_send(h.net, f, cport, "pong", 4), 0);
		CHECK_INT(client_read(&h, fd, buf, sizeof(buf), 2000), 4);
		close(fd);
	}
	harness_fini(&h);
}

static void test_udp_oversize_datagram_dropped_and_counted(void)
{
	struct harness h;
	struct net_stats st;
	char big[600];
	uint16_t cport;
	int fd = udp_client(AF_INET, &cport);

	CHECK_INT(harness_init(&h, 512, 10, 60), 0);
	memset(big, 'x', sizeof(big));
	CHECK_INT(udp_send(fd, AF_INET, net_listen_port(h.net, 0), big, 513), 0);
	CHECK_INT(udp_send(fd, AF_INET, net_listen_port(h.net, 0), big, 512), 0);
	CHECK(run_until_rx(&h, 1, 2000));
	run_ms(&h, 20);
	CHECK_INT(h.n_rx, 1);
	CHECK_INT(h.rx[0].len, 512);
	net_stats_get(h.net, &st);
	CHECK_INT(st.rx_dropped, 1);
	CHECK_INT(st.rx_msgs, 1);
	close(fd);
	harness_fini(&h);
}

static void test_udp_crlf_keepalive_is_not_a_message(void)
{
	struct harness h;
	uint16_t cport;
	int fd = udp_client(AF_INET, &cport);

	CHECK_INT(harness_init(&h, 65535, 10, 60), 0);
	CHECK_INT(udp_send(fd, AF_INET, net_listen_port(h.net, 0), "\r\n\r\n", 4), 0);
	CHECK_INT(udp_send(fd, AF_INET, net_listen_port(h.net, 0), MSG2, sizeof(MSG2) - 1), 0);
	CHECK(run_until_rx(&h, 1, 2000));
	run_ms(&h, 20);
	CHECK_INT(h.n_rx, 1);
	close(fd);
	harness_fini(&h);
}

static void test_udp_burst_beyond_one_batch_all_delivered(void)
{
	struct harness h;
	uint16_t cport;
	int fd = udp_client(AF_INET, &cport);
	int sent = 0;

	CHECK_INT(harness_init(&h, 65535, 10, 60), 0);
	/* More than NET_UDP_BATCH * NET_UDP_ROUNDS in the queue before the loop runs;
	 * MAX_RX caps what the handler keeps, the counter sees them all. */
	for (int i = 0; i < 300; i++)
		sent += udp_send(fd, AF_INET, net_listen_port(h.net, 0), MSG2,
				 sizeof(MSG2) - 1) == 0;
	CHECK_INT(sent, 300);
	{
		struct net_stats st = {0};
		uint64_t end = ms_now() + 3000;

		while (st.rx_msgs < 300 && ms_now() < end) {
			run_ms(&h, 2);
			net_stats_get(h.net, &st);
		}
		CHECK_INT(st.rx_msgs, 300);
	}
	close(fd);
	harness_fini(&h);
}

static void test_tcp_two_messages_in_one_write(void)
{
	static const char two[] = MSG1 MSG2;
	struct harness h;
	int fd;

	CHECK_INT(harness_init(&h, 65535, 10, 60), 0);
	fd = tcp_connect(AF_INET, net_listen_port(h.net, 1));
	CHECK(fd >= 0);
	CHECK(write(fd, two, sizeof(two) - 1) == sizeof(two) - 1);
	CHECK(run_until_rx(&h, 2, 2000));
	if (h.n_rx == 2) {
		CHECK_MEM(h.rx[0].buf, h.rx[0].len, MSG1);
		CHECK_MEM(h.rx[1].buf, h.rx[1].len, MSG2);
		CHECK_INT(h.rx[0].flow.src.proto, SIP_PROTO_TCP);
		CHECK_STR(h.rx[0].flow.src.ip, "127.0.0.1");
		CHECK(h.rx[0].flow.src.conn_id != 0);
		CHECK_INT(h.rx[0].flow.src.conn_id, h.rx[1].flow.src.conn_id);
		CHECK_INT(h.rx[0].flow.udp_fd, -1);
		CHECK_INT(h.rx[0].flow.local_port, net_listen_port(h.net, 1));
	}
	close(fd);
	harness_fini(&h);
}

static void test_tcp_message_in_small_pieces_with_pauses(void)
{
	static const char m[] = "\r\n" MSG1 MSG2;
	struct harness h;
	int fd;

	CHECK_INT(harness_init(&h, 65535, 10, 60), 0);
	fd = tcp_connect(AF_INET6, net_listen_port(h.net, 3));
	CHECK(fd >= 0);
	for (size_t off = 0; off < sizeof(m) - 1; off += 7) {
		size_t n = sizeof(m) - 1 - off < 7 ? sizeof(m) - 1 - off : 7;

		CHECK(write(fd, m + off, n) == (ssize_t)n);
		run_ms(&h, 1);
		/* Nothing is handed over before the whole message is in. */
		if (off + n < sizeof(m) - 1 - (sizeof(MSG2) - 1))
			CHECK_INT(h.n_rx, 0);
	}
	CHECK(run_until_rx(&h, 2, 2000));
	if (h.n_rx == 2) {
		CHECK_MEM(h.rx[0].buf, h.rx[0].len, MSG1);
		CHECK_MEM(h.rx[1].buf, h.rx[1].len, MSG2);
		CHECK_STR(h.rx[0].flow.src.ip, "::1");
		/* An answer on the same connection. */
		CHECK_INT(net_send(h.net, &h.rx[0].flow, 0, "SIP/2.0 200 OK\r\n\r\n", 18), 0);
	}
	{
		char buf[64];

		CHECK_INT(client_read(&h, fd, buf, sizeof(buf), 2000), 18);
	}
	close(fd);
	harness_fini(&h);
}

static void test_tcp_keepalive_ping_gets_pong(void)
{
	struct harness h;
	char buf[16];
	int fd;

	CHECK_INT(harness_init(&h, 65535, 10, 60), 0);
	fd = tcp_connect(AF_INET, net_listen_port(h.net, 1));
	CHECK(fd >= 0);
	CHECK(write(fd, "\r\n\r\n", 4) == 4);
	CHECK_INT(client_read(&h, fd, buf, sizeof(buf), 2000), 2);
	CHECK_MEM(buf, 2, "\r\n");
	/* A ping split over two writes is still one ping. */
	CHECK(write(fd, "\r\n", 2) == 2);
	run_ms(&h, 20);
	CHECK(write(fd, "\r\n", 2) == 2);
	CHECK_INT(client_read(&h, fd, buf, sizeof(buf), 2000), 2);
	/* A lone CRLF (someone's pong) gets nothing back, and a message after it works. */
	CHECK(write(fd, "\r\n", 2) == 2);
	CHECK_INT(client_read(&h, fd, buf, sizeof(buf), 50), -1);
	CHECK(write(fd, MSG2, sizeof(MSG2) - 1) == sizeof(MSG2) - 1);
	CHECK(run_until_rx(&h, 1, 2000));
	CHECK_INT(client_read(&h, fd, buf, sizeof(buf), 50), -1);
	CHECK_INT(h.n_rx, 1);
	close(fd);
	harness_fini(&h);
}

static void test_tcp_idle_timeout_closes_connection(void)
{
	struct harness h;
	struct net_stats st;
	int fd;
	uint64_t start;

	CHECK_INT(harness_init(&h, 65535, 10, 1), 0);
	fd = tcp_connect(AF_INET, net_listen_port(h.net, 1));
	CHECK(fd >= 0);
	start = ms_now();
	/* Traffic at 0.6 s restarts the clock: still open at 1.3 s. */
	run_ms(&h, 600);
	CHECK(write(fd, MSG2, sizeof(MSG2) - 1) == sizeof(MSG2) - 1);
	CHECK(run_until_rx(&h, 1, 500));
	CHECK(!closed_by_server(&h, fd, (int)(1300 - (ms_now() - start))));
	CHECK(closed_by_server(&h, fd, 1500));
	net_stats_get(h.net, &st);
	CHECK_INT(st.tcp_conns, 0);
	close(fd);
	harness_fini(&h);
}

static void test_tcp_connection_cap_refuses_extra(void)
{
	struct harness h;
	struct net_stats st;
	int fds[3];

	CHECK_INT(harness_init(&h, 65535, 2, 60), 0);
	for (int i = 0; i < 3; i++) {
		fds[i] = tcp_connect(AF_INET, net_listen_port(h.net, 1));
		CHECK(fds[i] >= 0);
		run_ms(&h, 20);
	}
	net_stats_get(h.net, &st);
	CHECK_INT(st.tcp_conns, 2);
	CHECK_INT(st.tcp_conns_refused, 1);
	CHECK(closed_by_server(&h, fds[2], 1000));
	CHECK(!closed_by_server(&h, fds[0], 50));
	/* A freed slot is available again. */
	close(fds[0]);
	run_ms(&h, 20);
	fds[0] = tcp_connect(AF_INET, net_listen_port(h.net, 1));
	run_ms(&h, 20);
	net_stats_get(h.net, &st);
	CHECK_INT(st.tcp_conns, 2);
	CHECK_INT(st.tcp_conns_refused, 1);
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	harness_fini(&h);
}

static void test_tcp_oversize_message_closes_connection(void)
{
	struct harness h;
	struct net_stats st;
	char big[2048];
	int fd;

	CHECK_INT(harness_init(&h, 1024, 10, 60), 0);
	fd = tcp_connect(AF_INET, net_listen_port(h.net, 1));
	memset(big, 'a', sizeof(big));
	memcpy(big, "OPTIONS sip:a SIP/2.0\r\nX: ", 26);
	CHECK(write(fd, big, sizeof(big)) == sizeof(big));
	CHECK(closed_by_server(&h, fd, 2000));
	net_stats_get(h.net, &st);
	CHECK_INT(st.rx_dropped, 1);
	CHECK_INT(st.tcp_conns, 0);
	CHECK_INT(h.n_rx, 0);
	close(fd);

	/* A Content-Length beyond the limit closes at once, without waiting for the body. */
	fd = tcp_connect(AF_INET, net_listen_port(h.net, 1));
	CHECK(write(fd, "OPTIONS sip:a SIP/2.0\r\nl: 5000\r\n\r\n", 34) == 34);
	CHECK(closed_by_server(&h, fd, 2000));
	close(fd);
	CHECK_INT(h.n_rx, 0);
	harness_fini(&h);
}

static void test_tcp_missing_content_length_closes_connection(void)
{
	static const char m[] = MSG2 "OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n";
	struct harness h;
	int fd;

	CHECK_INT(harness_init(&h, 65535, 10, 60), 0);
	fd = tcp_connect(AF_INET, net_listen_port(h.net, 1));
	CHECK(write(fd, m, sizeof(m) - 1) == sizeof(m) - 1);
	CHECK(closed_by_server(&h, fd, 2000));
	/* What came before the broken message was delivered. */
	CHECK_INT(h.n_rx, 1);
	close(fd);
	harness_fini(&h);
}

static void test_tcp_send_after_close_is_enotconn(void)
{
	struct harness h;
	struct net_stats st;
	int fd;

	CHECK_INT(harness_init(&h, 65535, 10, 60), 0);
	fd = tcp_connect(AF_INET, net_listen_port(h.net, 1));
	CHECK(write(fd, MSG2, sizeof(MSG2) - 1) == sizeof(MSG2) - 1);
	CHECK(run_until_rx(&h, 1, 2000));
	close(fd);
	for (int i = 0; i < 100; i++) {
		run_ms(&h, 5);
		net_stats_get(h.net, &st);
		if (st.tcp_conns == 0)
			break;
	}
	CHECK_INT(st.tcp_conns, 0);
	if (h.n_rx == 1)
		CHECK_INT(net_send(h.net, &h.rx[0].flow, 0, "x", 1), ENOTCONN);
	harness_fini(&h);
}

static void test_tcp_large_response_is_buffered_and_flushed(void)
{
	struct harness h;
	size_t total = 3 * 1024 * 1024, got = 0;
	char *big = malloc(total), *in = malloc(total);
	int small = 4096;
	int fd, bad = 0;
	uint64_t end;

	CHECK(big && in);
	CHECK_INT(harness_init(&h, 65535, 10, 60), 0);
	fd = tcp_connect_rcvbuf(AF_INET, net_listen_port(h.net, 1), small);
	CHECK(write(fd, MSG2, sizeof(MSG2) - 1) == sizeof(MSG2) - 1);
	CHECK(run_until_rx(&h, 1, 2000));
	for (size_t i = 0; big && i < total; i++)
		big[i] = (char)(i * 7 + i / 4099);
	/* Far more than the socket takes at once: the rest waits in the output buffer. */
	if (h.n_rx == 1 && big) {
		CHECK_INT(net_send(h.net, &h.rx[0].flow, 0, big, total / 2), 0);
		CHECK_INT(net_send(h.net, &h.rx[0].flow, 0, big + total / 2, total - total / 2),
			  0);
	}
	end = ms_now() + 10000;
	while (in && got < total && ms_now() < end) {
		ssize_t r = recv(fd, in + got, total - got, MSG_DONTWAIT);

		if (r > 0)
			got += (size_t)r;
		else if (r == 0)
			break;
		else
			run_ms(&h, 1);
	}
	CHECK_INT(got, total);
	if (got == total && big && in)
		bad = memcmp(big, in, total) != 0;
	CHECK_INT(bad, 0);
	close(fd);
	free(big);
	free(in);
	harness_fini(&h);
}

static void test_tcp_close_during_dispatch_is_deferred(void)
{
	/* The answer to the first of two pipelined messages overflows what a peer may leave
	 * unread: the connection closes from inside the handler, the second message is never
	 * handed over and nothing touches the freed connection (ASan watches). */
	static const char two[] = MSG2 MSG2;
	size_t big_len = 16 * 1024 * 1024;
	char *big = calloc(1, big_len);
	struct harness h;
	struct net_stats st;
	int fd;

	CHECK(big != NULL);
	CHECK_INT(harness_init(&h, 65535, 10, 60), 0);
	h.reply = big;
	h.reply_len = big ? big_len : 0;
	fd = tcp_connect_rcvbuf(AF_INET, net_listen_port(h.net, 1), 4096);
	CHECK(write(fd, two, sizeof(two) - 1) == sizeof(two) - 1);
	CHECK(run_until_rx(&h, 1, 2000));
	run_ms(&h, 50);
	CHECK_INT(h.n_rx, 1);
	CHECK_INT(h.reply_err, ENOBUFS);
	net_stats_get(h.net, &st);
	CHECK_INT(st.tcp_conns, 0);
	CHECK_INT(st.tx_dropped, 1);
	if (h.n_rx == 1)
		CHECK_INT(net_send(h.net, &h.rx[0].flow, 0, "x", 1), ENOTCONN);
	close(fd);
	harness_fini(&h);
	free(big);
}

static void test_tcp_per_source_cap_spares_other_and_trusted_sources(void)
{
	const struct limits_conf lim = {.max_message_size = 65535,
					.max_tcp_connections = 100,
					.tcp_idle_timeout = 60,
					.max_tcp_connections_per_source = 2};
	struct netaddr_set *trusted = NULL;
	struct netaddr_prefix pfx;
	struct harness h;
	struct net_stats st;
	int a[3], b, t[4];
	uint16_t port;

	CHECK_INT(netaddr_set_alloc(&trusted), 0);
	CHECK_INT(netaddr_prefix_parse("127.0.0.3", &pfx), 0);
	CHECK_INT(netaddr_set_add(trusted, &pfx), 0);
	CHECK_INT(harness_init_limits(&h, &lim, trusted), 0);
	port = net_listen_port(h.net, 1);
	for (int i = 0; i < 3; i++) {
		a[i] = tcp_connect_from("127.0.0.1", port);
		CHECK(a[i] >= 0);
		run_ms(&h, 20);
	}
	b = tcp_connect_from("127.0.0.2", port);
	for (int i = 0; i < 4; i++)
		t[i] = tcp_connect_from("127.0.0.3", port);
	run_ms(&h, 50);
	net_stats_get(h.net, &st);
	CHECK_INT(st.tcp_conns, 2 + 1 + 4);
	CHECK_INT(st.tcp_conns_refused_source, 1);
	CHECK_INT(st.tcp_conns_refused, 0);
	CHECK(closed_by_server(&h, a[2], 1000));
	CHECK(!closed_by_server(&h, a[0], 50));
	CHECK(!closed_by_server(&h, b, 50));
	CHECK(!closed_by_server(&h, t[3], 50));
	/* Every open connection is served, the trusted ones past the cap too. */
	CHECK(write(b, MSG2, sizeof(MSG2) - 1) == sizeof(MSG2) - 1);
	CHECK(write(t[3], MSG2, sizeof(MSG2) - 1) == sizeof(MSG2) - 1);
	CHECK(run_until_rx(&h, 2, 2000));
	/* A closed connection gives its source's slot back. */
	close(a[0]);
	run_ms(&h, 30);
	a[0] = tcp_connect_from("127.0.0.1", port);
	run_ms(&h, 30);
	CHECK(!closed_by_server(&h, a[0], 50));
	net_stats_get(h.net, &st);
	CHECK_INT(st.tcp_conns_refused_source, 1);
	CHECK_INT(st.tcp_conns, 7);
	for (int i = 0; i < 3; i++)
		close(a[i]);
	close(b);
	for (int i = 0; i < 4; i++)
		close(t[i]);
	harness_fini(&h);
	netaddr_set_free(&trusted);
}

/* Peers that never read: each send that would pass the budget closes its connection, and
 * the output held never passes the budget however many peers try. */
static void test_tcp_output_budget_bounds_unread_output(void)
{
	enum { N = 8, CHUNK = 16 * 1024, ROUNDS = 12 };
	const struct limits_conf lim = {.max_message_size = 65535,
					.max_tcp_connections = 100,
					.tcp_idle_timeout = 60,
					.tcp_max_output = 256 * 1024,
					.tcp_output_budget = 256 * 1024};
	static char chunk[CHUNK];
	struct net_flow flows[N];
	struct harness h;
	struct net_stats st;
	int fds[N], closed = 0, fresh;
	char buf[512];

	CHECK_INT(harness_init_limits(&h, &lim, NULL), 0);
	for (int i = 0; i < N; i++) {
		fds[i] = tcp_connect_rcvbuf(AF_INET, net_listen_port(h.net, 1), 4096);
		CHECK(fds[i] >= 0);
		CHECK(write(fds[i], MSG2, sizeof(MSG2) - 1) == sizeof(MSG2) - 1);
		CHECK(run_until_rx(&h, i + 1, 2000));
		flows[i] = h.rx[i].flow;
		server_end_sndbuf(fds[i], 4096);
	}
	/* N x ROUNDS x CHUNK = 1.5 MiB offered, no connection past its share alone. */
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < N; i++)
			net_send(h.net, &flows[i], 0, chunk, sizeof(chunk));
		run_ms(&h, 5);
	}
	net_stats_get(h.net, &st);
	CHECK(st.tcp_out_peak <= 256 * 1024);
	CHECK(st.tcp_out_bytes <= 256 * 1024);
	CHECK(st.tcp_out_closed >= 1);
	for (int i = 0; i < N; i++)
		closed += closed_by_server(&h, fds[i], 20);
	CHECK_INT(closed, (int)st.tcp_out_closed);
	/* Another peer is still served. */
	h.reply = "pong";
	h.reply_len = 4;
	fresh = tcp_connect(AF_INET, net_listen_port(h.net, 1));
	CHECK(write(fresh, MSG2, sizeof(MSG2) - 1) == sizeof(MSG2) - 1);
	CHECK(run_until_rx(&h, N + 1, 2000));
	CHECK_INT(h.reply_err, 0);
	CHECK_INT(client_read(&h, fresh, buf, sizeof(buf), 1000), 4);
	close(fresh);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	harness_fini(&h);
}

/* Output that stays pending past tcp_output_timeout closes the connection, even while a
 * trickle of it is read; output that drains keeps it open. */
static void test_tcp_output_timeout_closes_slow_reader(void)
{
	const struct limits_conf lim = {.max_message_size = 65535,
					.max_tcp_connections = 100,
					.tcp_idle_timeout = 60,
					.tcp_output_timeout = 1};
	size_t big_len = 2 * 1024 * 1024;
	char *big = calloc(1, big_len);
	char buf[256];
	struct harness h;
	struct net_stats st;
	uint64_t start;
	bool closed = false;
	int slow, quick;

	CHECK(big != NULL);
	CHECK_INT(harness_init_limits(&h, &lim, NULL), 0);
	slow = tcp_connect_rcvbuf(AF_INET, net_listen_port(h.net, 1), 4096);
	quick = tcp_connect(AF_INET, net_listen_port(h.net, 1));
	CHECK(write(slow, MSG2, sizeof(MSG2) - 1) == sizeof(MSG2) - 1);
	CHECK(run_until_rx(&h, 1, 2000));
	CHECK(write(quick, MSG2, sizeof(MSG2) - 1) == sizeof(MSG2) - 1);
	CHECK(run_until_rx(&h, 2, 2000));
	server_end_sndbuf(slow, 4096);
	if (big)
		CHECK_INT(net_send(h.net, &h.rx[0].flow, 0, big, big_len), 0);
	start = ms_now();
	/* Read a little every 50 ms: progress, but the output never drains. */
	while (!closed && ms_now() - start < 3000) {
		(void)!recv(slow, buf, sizeof(buf), MSG_DONTWAIT);
		/* What the kernel holds still arrives after the close: count, not EOF. */
		net_stats_get(h.net, &st);
		closed = st.tcp_out_closed > 0;
		if (!closed && ms_now() - start < 1500) {
			/* The quick reader gets and drains a response all along. */
			CHECK_INT(net_send(h.net, &h.rx[1].flow, 0, "pong", 4), 0);
			CHECK_INT(client_read(&h, quick, buf, sizeof(buf), 500), 4);
		}
		run_ms(&h, 50);
	}
	CHECK(closed);
	CHECK(ms_now() - start >= 900);
	CHECK(ms_now() - start <= 1500);
	net_stats_get(h.net, &st);
	CHECK_INT(st.tcp_out_closed, 1);
	CHECK_INT(st.tcp_conns, 1);
	CHECK_INT(st.tcp_out_bytes, 0);
	CHECK(!closed_by_server(&h, quick, 50));
	close(slow);
	close(quick);
	harness_fini(&h);
	free(big);
}

static void test_net_alloc_reports_bad_listener(void)
{
	struct harness h;
	struct net *n = NULL;

	memset(&h, 0, sizeof(h));
	h.base = event_base_new();
	h.listen[0] = (struct listen_spec){.proto = SIP_PROTO_UDP, .addr = "127.0.0.1"};
	/* TEST-NET-1 is not ours to bind. */
	h.listen[1] = (struct listen_spec){.proto = SIP_PROTO_TCP, .addr = "192.0.2.1"};
	h.cfg.listen = h.listen;
	h.cfg.n_listen = 2;
	h.cfg.limits.max_message_size = 65535;
	CHECK_INT(net_alloc(&n, h.base, &h.cfg, on_msg, &h), EADDRNOTAVAIL);
	CHECK(n == NULL);
	h.listen[1] = (struct listen_spec){.proto = SIP_PROTO_TCP, .addr = "not-an-address"};
	CHECK_INT(net_alloc(&n, h.base, &h.cfg, on_msg, &h), EINVAL);
	CHECK(n == NULL);
	event_base_free(h.base);
}

static void test_net_shared_port_with_reuseport(void)
{
	/* Two instances on one port, as one sipregd per core does. */
	struct harness a, b;

	CHECK_INT(harness_init(&a, 65535, 10, 60), 0);
	memset(&b, 0, sizeof(b));
	b.base = event_base_new();
	b.listen[0] = (struct listen_spec){
	    .proto = SIP_PROTO_UDP, .addr = "127.0.0.1", .port = net_listen_port(a.net, 0)};
	b.listen[1] = (struct listen_spec){
	    .proto = SIP_PROTO_TCP, .addr = "127.0.0.1", .port = net_listen_port(a.net, 1)};
	b.cfg.listen = b.listen;
	b.cfg.n_listen = 2;
	b.cfg.limits.max_message_size = 65535;
	CHECK_INT(net_alloc(&b.net, b.base, &b.cfg, on_msg, &b), 0);
	CHECK_INT(net_listen_port(b.net, 0), net_listen_port(a.net, 0));
	harness_fini(&b);
	harness_fini(&a);
}

static void test_flow_peer_text_v4_and_v6(void)
{
	static const char *const v4[] = {"0.0.0.0", "127.0.0.1", "10.200.3.45",
					 "255.255.255.255", "192.0.2.100"};
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(5070)};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(5080)};
	struct net_flow flow;

	for (size_t i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
		inet_pton(AF_INET, v4[i], &sin.sin_addr);
		memset(&flow, 0x55, sizeof(flow));
		net_flow_set_peer(&flow, SIP_PROTO_UDP, (struct sockaddr *)&sin, sizeof(sin));
		CHECK_STR(flow.src.ip, v4[i]);
		CHECK_INT(flow.src.port, 5070);
	}
	inet_pton(AF_INET6, "2001:db8::1", &sin6.sin6_addr);
	net_flow_set_peer(&flow, SIP_PROTO_UDP, (struct sockaddr *)&sin6, sizeof(sin6));
	CHECK_STR(flow.src.ip, "2001:db8::1");
	CHECK_INT(flow.src.port, 5080);
}

int main(void)
{
	RUN(test_udp_datagram_reaches_handler_with_flow_v4_v6);
	RUN(test_udp_oversize_datagram_dropped_and_counted);
	RUN(test_udp_crlf_keepalive_is_not_a_message);
	RUN(test_udp_burst_beyond_one_batch_all_delivered);
	RUN(test_tcp_two_messages_in_one_write);
	RUN(test_tcp_message_in_small_pieces_with_pauses);
	RUN(test_tcp_keepalive_ping_gets_pong);
	RUN(test_tcp_idle_timeout_closes_connection);
	RUN(test_tcp_connection_cap_refuses_extra);
	RUN(test_tcp_oversize_message_closes_connection);
	RUN(test_tcp_missing_content_length_closes_connection);
	RUN(test_tcp_send_after_close_is_enotconn);
	RUN(test_tcp_large_response_is_buffered_and_flushed);
	RUN(test_tcp_close_during_dispatch_is_deferred);
	RUN(test_tcp_per_source_cap_spares_other_and_trusted_sources);
	RUN(test_tcp_output_budget_bounds_unread_output);
	RUN(test_tcp_output_timeout_closes_slow_reader);
	RUN(test_net_alloc_reports_bad_listener);
	RUN(test_net_shared_port_with_reuseport);
	RUN(test_flow_peer_text_v4_and_v6);
	CHECK_DONE();
}
