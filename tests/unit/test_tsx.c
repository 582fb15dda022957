/* Unit tests of the server transaction table over real loopback sockets: matching keys,
 * retransmission replay, Timer J, reliable transports, limits, teardown. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "net/net.h"
#include "sip/tsx.h"

struct harness {
	struct event_base *base;
	struct config cfg;
	struct listen_spec listen[2];
	struct net *net;
	struct tsx_table *tab;
	uint16_t udp_port, tcp_port;
	int cli; /* client UDP socket on 127.0.0.1 */
	uint16_t cli_port;
	/* Set by the receive handler. */
	int rx_count;
	struct net_flow rx_flow;
	/* Server mode: the handler runs the transaction logic the daemon runs. */
	bool serve;
	int created, replayed, serial;
};

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Run the loop for up to ms milliseconds, or until *flag reaches want. */
static bool run_until(struct harness *h, const int *flag, int want, int ms)
{
	uint64_t end = ms_now() + (uint64_t)ms;

	while (!flag || *flag < want) {
		struct timeval tv = {.tv_usec = 5000};

		if (ms_now() >= end)
			return false;
		event_base_loopexit(h->base, &tv);
		event_base_loop(h->base, EVLOOP_ONCE);
	}
	return true;
}

static void on_msg(const char *buf, size_t len, const struct net_flow *flow, void *arg)
{
	struct harness *h = arg;
	struct sipmsg *m = NULL;
	const char *reason = NULL;
	struct tsx *t;
	int status = 0;
	char resp[256];
	int n;

	h->rx_count++;
	h->rx_flow = *flow;
	if (!h->serve || sipmsg_parse(&m, buf, len, &status, &reason) != 0)
		goto out;
	t = tsx_lookup(h->tab, m);
	if (t) {
		h->replayed++;
		tsx_retransmission(t);
		goto out;
	}
	if (tsx_create(h->tab, m, flow, &t) != 0)
		goto out;
	h->created++;
	/* A serial number in every generated response: a replay must not be a new one. */
	n = snprintf(resp, sizeof(resp),
		     "SIP/2.0 200 OK\r\nX-Serial: %d\r\nContent-Length: 0\r\n\r\n",
		     ++h->serial);
	tsx_reply(t, 200, resp, (size_t)n);
out:
	sipmsg_free(&m);
}

static int udp_client(uint16_t *portp)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*portp = ntohs(sin.sin_port);
	return fd;
}

static int harness_init(struct harness *h, size_t max, uint32_t timer_j_ms)
{
	memset(h, 0, sizeof(*h));
	h->cli = -1;
	h->base = event_base_new();
	if (!h->base)
		return ENOMEM;
	h->listen[0] = (struct listen_spec){.proto = SIP_PROTO_UDP, .addr = "127.0.0.1"};
	h->listen[1] = (struct listen_spec){.proto = SIP_PROTO_TCP, .addr = "127.0.0.1"};
	h->cfg.listen = h->listen;
	h->cfg.n_listen = 2;
	h->cfg.limits = (struct limits_conf){.max_message_size = 65535,
					     .max_tcp_connections = 100,
					     .tcp_idle_timeout = 600,
					     .max_transactions = (uint32_t)max};
	if (net_alloc(&h->net, h->base, &h->cfg, on_msg, h) != 0)
		return EIO;
	h->udp_port = net_listen_port(h->net, 0);
	h->tcp_port = net_listen_port(h->net, 1);
	if (tsx_table_alloc(&h->tab, h->base, h->net, max, timer_j_ms) != 0)
		return ENOMEM;
	h->cli = udp_client(&h->cli_port);
	return h->cli < 0 ? EIO : 0;
}

static void harness_fini(struct harness *h)
{
	tsx_table_free(&h->tab);
	net_free(&h->net);
	if (h->cli >= 0)
		close(h->cli);
	if (h->base)
		event_base_free(h->base);
}

static int send_to_server(struct harness *h, int fd, const char *buf, size_t len)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(h->udp_port)};

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sendto(fd, buf, len, 0, (struct sockaddr *)&sin, sizeof(sin)) == (ssize_t)len
		   ? 0
		   : errno;
}

/* Receive one datagram on fd, running the loop meanwhile; -1 after ms. */
static ssize_t client_recv(struct harness *h, int fd, char *buf, size_t cap, int ms)
{
	uint64_t end = ms_now() + (uint64_t)ms;

	for (;;) {
		ssize_t r = recv(fd, buf, cap, MSG_DONTWAIT);

		if (r >= 0)
			return r;
		if (ms_now() >= end)
			return -1;
		run_until(h, NULL, 0, 5);
	}
}

/* A REGISTER as a UA would send it. via_params goes right after the branch. */
static size_t make_register(char *buf, size_t cap, const char *branch, const char *via_params,
			    uint16_t via_port, const char *from_tag, unsigned cseq)
{
	int n = snprintf(buf, cap,
			 "REGISTER sip:example.com SIP/2.0\r\n"
			 "Via: SIP/2.0/UDP 127.0.0.1:%u%s%s%s\r\n"
			 "Max-Forwards: 70\r\n"
			 "To: <sip:alice@example.com>\r\n"
			 "From: <sip:alice@example.com>;tag=%s\r\n"
			 "Call-ID: tsx-test-call@127.0.0.1\r\n"
			 "CSeq: %u REGISTER\r\n"
			 "Contact: <sip:alice@127.0.0.1:%u>\r\n"
			 "Content-Length: 0\r\n\r\n",
			 via_port, branch ? ";branch=" : "", branch ? branch : "", via_params,
			 from_tag, cseq, via_port);

	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* A message with only what the RFC 3261 key reads, for table-only cases. */
static void msg_fill(struct sipmsg *m, const char *method, const char *branch, const char *host,
		     uint16_t port)
{
	memset(m, 0, sizeof(*m));
	m->method = sipmsg_method_from(method, strlen(method));
	m->method_name = sip_str_c(method);
	m->branch = sip_str_c(branch);
	m->branch_rfc3261 = strlen(branch) > 7 && strncmp(branch, "z9hG4bK", 7) == 0;
	m->via_host = sip_str_c(host);
	m->via_port = port;
}

static struct net_flow fake_flow(void)
{
	struct net_flow f;

	memset(&f, 0, sizeof(f));
	f.src.proto = SIP_PROTO_UDP;
	strcpy(f.src.ip, "127.0.0.1");
	f.src.port = 9;
	f.udp_fd = -1; /* nothing is ever sent: replies fail with EINVAL, harmlessly */
	return f;
}

static void test_tsx_match_by_branch_sentby_method(void)
{
	struct harness h;
	struct net_flow f = fake_flow();
	struct sipmsg reg, m;
	struct tsx *t = NULL, *t2 = NULL;

	CHECK_INT(harness_init(&h, 100, 0), 0);
	msg_fill(&reg, "REGISTER", "z9hG4bK-abc", "ua.example.com", 5070);
	CHECK(tsx_lookup(h.tab, &reg) == NULL);
	CHECK_INT(tsx_create(h.tab, &reg, &f, &t), 0);
	CHECK(t != NULL);
	CHECK(tsx_lookup(h.tab, &reg) == t);
	/* Sent-by hosts compare case-insensitively. */
	msg_fill(&m, "REGISTER", "z9hG4bK-abc", "UA.Example.COM", 5070);
	CHECK(tsx_lookup(h.tab, &m) == t);
	/* Another method (CANCEL included), sent-by or branch: another transaction. */
	msg_fill(&m, "OPTIONS", "z9hG4bK-abc", "ua.example.com", 5070);
	CHECK(tsx_lookup(h.tab, &m) == NULL);
	msg_fill(&m, "CANCEL", "z9hG4bK-abc", "ua.example.com", 5070);
	CHECK(tsx_lookup(h.tab, &m) == NULL);
	CHECK_INT(tsx_create(h.tab, &m, &f, &t2), 0);
	CHECK(t2 != t);
	CHECK(tsx_lookup(h.tab, &m) == t2);
	CHECK(tsx_lookup(h.tab, &reg) == t);
	msg_fill(&m, "REGISTER", "z9hG4bK-abc", "ua.example.com", 5071);
	CHECK(tsx_lookup(h.tab, &m) == NULL);
	msg_fill(&m, "REGISTER", "z9hG4bK-abc", "ua.example.com", 0);
	CHECK(tsx_lookup(h.tab, &m) == NULL);
	msg_fill(&m, "REGISTER", "z9hG4bK-abc", "ub.example.com", 5070);
	CHECK(tsx_lookup(h.tab, &m) == NULL);
	msg_fill(&m, "REGISTER", "z9hG4bK-abd", "ua.example.com", 5070);
	CHECK(tsx_lookup(h.tab, &m) == NULL);
	/* Branches are case-sensitive. */
	msg_fill(&m, "REGISTER", "z9hG4bK-ABC", "ua.example.com", 5070);
	CHECK(tsx_lookup(h.tab, &m) == NULL);
	/* ACK never matches nor creates a non-INVITE transaction. */
	msg_fill(&m, "ACK", "z9hG4bK-abc", "ua.example.com", 5070);
	CHECK(tsx_lookup(h.tab, &m) == NULL);
	CHECK_INT(tsx_create(h.tab, &m, &f, &t2), EINVAL);
	CHECK_INT(tsx_count(h.tab), 2);
	harness_fini(&h);
}

/* A retransmission's id read from its bytes, before any parse, meets the transaction
 * the parsed original created; other ids do not. */
static void test_tsx_lookup_by_peeked_id_meets_the_parsed_original(void)
{
	struct harness h;
	struct net_flow f = fake_flow();
	struct sipmsg *m = NULL;
	struct sipmsg_tsx_id id;
	struct tsx *t = NULL;
	const char *reason = NULL;
	char buf[1024];
	size_t len;
	int st = 0;

	CHECK_INT(harness_init(&h, 100, 0), 0);
	len = make_register(buf, sizeof(buf), "z9hG4bK-peek", ";rport", 5070, "ft", 7);
	CHECK_INT(sipmsg_parse(&m, buf, len, &st, &reason), 0);
	CHECK(sipmsg_peek_tsx_id(buf, len, &id));
	CHECK(tsx_lookup_id(h.tab, &id) == NULL);
	CHECK_INT(tsx_create(h.tab, m, &f, &t), 0);
	CHECK(tsx_lookup_id(h.tab, &id) == t);
	sipmsg_free(&m);
	len = make_register(buf, sizeof(buf), "z9hG4bK-peek", ";rport", 5071, "ft", 7);
	CHECK(sipmsg_peek_tsx_id(buf, len, &id));
	CHECK(tsx_lookup_id(h.tab, &id) == NULL);
	len = make_register(buf, sizeof(buf), "z9hG4bK-other", "", 5070, "ft", 7);
	CHECK(sipmsg_peek_tsx_id(buf, len, &id));
	CHECK(tsx_lookup_id(h.tab, &id) == NULL);
	harness_fini(&h);
}

static void test_tsx_key_fields_with_nul_bytes_compare_fully(void)
{
	/* Length-prefixed fields: "a" + "\0b" must differ from "a\0" + "b". */
	struct harness h;
	struct net_flow f = fake_flow();
	struct sipmsg a, b;
	struct tsx *t;

	CHECK_INT(harness_init(&h, 100, 0), 0);
	msg_fill(&a, "REGISTER", "z9hG4bK-x", "h", 1);
	a.branch = (struct sip_str){.p = "z9hG4bK-x\0", .len = 10};
	a.via_host = (struct sip_str){.p = "h", .len = 1};
	b = a;
	b.branch = (struct sip_str){.p = "z9hG4bK-x", .len = 9};
	b.via_host = (struct sip_str){.p = "\0h", .len = 2};
	CHECK_INT(tsx_create(h.tab, &a, &f, &t), 0);
	CHECK(tsx_lookup(h.tab, &a) == t);
	CHECK(tsx_lookup(h.tab, &b) == NULL);
	harness_fini(&h);
}

static void test_tsx_retransmission_gets_identical_response(void)
{
	struct harness h;
	char req[1024], r1[512], r2[512];
	size_t len;
	ssize_t n1, n2;

	CHECK_INT(harness_init(&h, 100, 0), 0);
	h.serve = true;
	len =
	    make_register(req, sizeof(req), "z9hG4bK-retrans-1", ";rport", h.cli_port, "t1", 1);
	CHECK_INT(send_to_server(&h, h.cli, req, len), 0);
	n1 = client_recv(&h, h.cli, r1, sizeof(r1), 2000);
	CHECK(n1 > 0);
	CHECK_INT(h.created, 1);
	CHECK_INT(tsx_count(h.tab), 1);
	CHECK_INT(send_to_server(&h, h.cli, req, len), 0);
	n2 = client_recv(&h, h.cli, r2, sizeof(r2), 2000);
	CHECK_INT(n2, n1);
	CHECK(n1 > 0 && n2 == n1 && memcmp(r1, r2, (size_t)n1) == 0);
	CHECK_INT(h.created, 1);
	CHECK_INT(h.replayed, 1);
	CHECK_INT(tsx_count(h.tab), 1);
	/* A new branch is a new transaction with a new response. */
	len =
	    make_register(req, sizeof(req), "z9hG4bK-retrans-2", ";rport", h.cli_port, "t1", 2);
	CHECK_INT(send_to_server(&h, h.cli, req, len), 0);
	n2 = client_recv(&h, h.cli, r2, sizeof(r2), 2000);
	CHECK(n2 > 0 && !(n2 == n1 && memcmp(r1, r2, (size_t)n1) == 0));
	CHECK_INT(h.created, 2);
	CHECK_INT(tsx_count(h.tab), 2);
	harness_fini(&h);
}

/* The transaction keeps its peer compactly: an IPv6 source gets the answer and its
 * replay at the right address and port. */
static void test_tsx_ipv6_peer_gets_answer_and_replay(void)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	struct sockaddr_in6 b = a;
	socklen_t alen = sizeof(a), blen = sizeof(b);
	int srv = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int cli = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sipmsg m;
	struct net_flow flow;
	struct harness h;
	struct tsx *t = NULL;
	char buf[64];

	if (srv < 0 || cli < 0 || bind(srv, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    bind(cli, (struct sockaddr *)&b, sizeof(b)) < 0 ||
	    getsockname(cli, (struct sockaddr *)&b, &blen) < 0 ||
	    getsockname(srv, (struct sockaddr *)&a, &alen) < 0) {
		printf("# no IPv6 loopback here: skipped\n");
		goto out;
	}
	CHECK_INT(harness_init(&h, 10, 0), 0);
	msg_fill(&m, "REGISTER", "z9hG4bK-v6", "::1", 0);
	m.via_rport = true;
	memset(&flow, 0, sizeof(flow));
	flow.src.proto = SIP_PROTO_UDP;
	memcpy(&flow.peer, &b, sizeof(b));
	flow.peer_len = sizeof(b);
	flow.src.port = ntohs(b.sin6_port);
	flow.udp_fd = srv;
	CHECK_INT(tsx_create(h.tab, &m, &flow, &t), 0);
	CHECK_INT(tsx_reply_port(t), ntohs(b.sin6_port));
	CHECK_INT(tsx_reply(t, 200, "answer-v6", 9), 0);
	CHECK_INT(client_recv(&h, cli, buf, sizeof(buf), 2000), 9);
	CHECK(memcmp(buf, "answer-v6", 9) == 0);
	t = tsx_lookup(h.tab, &m);
	CHECK(t != NULL);
	tsx_retransmission(t);
	CHECK_INT(client_recv(&h, cli, buf, sizeof(buf), 2000), 9);
	CHECK(memcmp(buf, "answer-v6", 9) == 0);
	harness_fini(&h);
out:
	if (srv >= 0)
		close(srv);
	if (cli >= 0)
		close(cli);
}

static void test_tsx_reply_port_rport_else_via_port(void)
{
	/* Both answers go to the source address 127.0.0.1; the port is the source port with
	 * rport, else the Via sent-by port (here a second socket's). */
	struct harness h;
	char req[1024], resp[512];
	uint16_t other_port = 0;
	int other = -1;
	size_t len;

	CHECK_INT(harness_init(&h, 100, 0), 0);
	h.serve = true;
	other = udp_client(&other_port);
	CHECK(other >= 0);
	len = make_register(req, sizeof(req), "z9hG4bK-port-1", "", other_port, "p1", 1);
	CHECK_INT(send_to_server(&h, h.cli, req, len), 0);
	CHECK(client_recv(&h, other, resp, sizeof(resp), 2000) > 0);
	CHECK(recv(h.cli, resp, sizeof(resp), MSG_DONTWAIT) < 0);

	len = make_register(req, sizeof(req), "z9hG4bK-port-2", ";rport", other_port, "p1", 2);
	CHECK_INT(send_to_server(&h, h.cli, req, len), 0);
	CHECK(client_recv(&h, h.cli, resp, sizeof(resp), 2000) > 0);
	CHECK(recv(other, resp, sizeof(resp), MSG_DONTWAIT) < 0);
	CHECK_INT(h.created, 2);
	if (other >= 0)
		close(other);
	harness_fini(&h);
}

static void test_tsx_bare_cookie_and_rfc2543_use_fallback_key(void)
{
	struct harness h;
	struct net_flow f = fake_flow();
	char req[1024];
	struct sipmsg *m1 = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL, *m5 = NULL;
	const char *reason;
	struct tsx *t1 = NULL, *t2 = NULL;
	int status;
	size_t len;

	CHECK_INT(harness_init(&h, 100, 0), 0);
	/* badbranch.dat: the bare cookie is not an RFC 3261 branch. */
	len = make_register(req, sizeof(req), "z9hG4bK", "", 5070, "f1", 8);
	CHECK_INT(sipmsg_parse(&m1, req, len, &status, &reason), 0);
	CHECK_INT(sipmsg_parse(&m2, req, len, &status, &reason), 0);
	/* Same request, From tag changed. */
	len = make_register(req, sizeof(req), "z9hG4bK", "", 5070, "f2", 8);
	CHECK_INT(sipmsg_parse(&m3, req, len, &status, &reason), 0);
	/* Same request, CSeq changed. */
	len = make_register(req, sizeof(req), "z9hG4bK", "", 5070, "f1", 9);
	CHECK_INT(sipmsg_parse(&m4, req, len, &status, &reason), 0);
	/* RFC 2543: no branch at all. */
	len = make_register(req, sizeof(req), NULL, "", 5070, "f1", 8);
	CHECK_INT(sipmsg_parse(&m5, req, len, &status, &reason), 0);
	if (!m1 || !m2 || !m3 || !m4 || !m5)
		goto out;
	CHECK(!m1->branch_rfc3261);
	CHECK(!m5->branch_rfc3261);
	CHECK_INT(tsx_create(h.tab, m1, &f, &t1), 0);
	CHECK(tsx_lookup(h.tab, m2) == t1);
	CHECK(tsx_lookup(h.tab, m3) == NULL);
	CHECK(tsx_lookup(h.tab, m4) == NULL);
	/* The top Via differs (no branch): not the same transaction either. */
	CHECK(tsx_lookup(h.tab, m5) == NULL);
	CHECK_INT(tsx_create(h.tab, m5, &f, &t2), 0);
	CHECK(tsx_lookup(h.tab, m5) == t2);
	CHECK(t2 != t1);
	CHECK(tsx_lookup(h.tab, m1) == t1);
out:
	sipmsg_free(&m1);
	sipmsg_free(&m2);
	sipmsg_free(&m3);
	sipmsg_free(&m4);
	sipmsg_free(&m5);
	harness_fini(&h);
}

static void test_tsx_rfc2543_retransmission_over_udp(void)
{
	struct harness h;
	char req[1024], r1[512], r2[512];
	ssize_t n1, n2;
	size_t len;

	CHECK_INT(harness_init(&h, 100, 0), 0);
	h.serve = true;
	len = make_register(req, sizeof(req), NULL, ";rport", h.cli_port, "old", 3);
	CHECK_INT(send_to_server(&h, h.cli, req, len), 0);
	n1 = client_recv(&h, h.cli, r1, sizeof(r1), 2000);
	CHECK_INT(send_to_server(&h, h.cli, req, len), 0);
	n2 = client_recv(&h, h.cli, r2, sizeof(r2), 2000);
	CHECK(n1 > 0 && n1 == n2 && memcmp(r1, r2, (size_t)n1) == 0);
	CHECK_INT(h.created, 1);
	CHECK_INT(h.replayed, 1);
	harness_fini(&h);
}

static void test_tsx_timer_j_expires_completed_only(void)
{
	struct harness h;
	struct net_flow f = fake_flow();
	struct sipmsg done, pending;
	struct tsx *t;
	uint64_t start;
	int count = 1;

	CHECK_INT(harness_init(&h, 100, 50), 0);
	msg_fill(&done, "REGISTER", "z9hG4bK-done", "127.0.0.1", 5060);
	msg_fill(&pending, "REGISTER", "z9hG4bK-pending", "127.0.0.1", 5060);
	CHECK_INT(tsx_create(h.tab, &pending, &f, &t), 0);
	CHECK_INT(tsx_create(h.tab, &done, &f, &t), 0);
	start = ms_now();
	tsx_reply(t, 200, "SIP/2.0 200 OK\r\n\r\n", 18);
	CHECK(tsx_lookup(h.tab, &done) != NULL);
	/* Still there before Timer J (checked only if this machine kept up). */
	run_until(&h, NULL, 0, 20);
	if (ms_now() - start < 50) {
		CHECK(tsx_lookup(h.tab, &done) != NULL);
		CHECK_INT(tsx_count(h.tab), 2);
	}
	while (count > 0 && ms_now() - start < 2000) {
		run_until(&h, NULL, 0, 5);
		count = tsx_lookup(h.tab, &done) != NULL;
	}
	CHECK_INT(count, 0);
	CHECK(ms_now() - start >= 50);
	/* The one still being processed is not Timer J's business. */
	CHECK(tsx_lookup(h.tab, &pending) != NULL);
	CHECK_INT(tsx_count(h.tab), 1);
	harness_fini(&h);
}

static int tcp_connect(uint16_t port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void test_tsx_tcp_transaction_freed_on_reply(void)
{
	struct harness h;
	char req[1024], resp[512];
	size_t len;
	ssize_t r;
	int fd;

	CHECK_INT(harness_init(&h, 100, 0), 0);
	h.serve = true;
	fd = tcp_connect(h.tcp_port);
	CHECK(fd >= 0);
	len = make_register(req, sizeof(req), "z9hG4bK-tcp-1", "", 5060, "tcp", 1);
	if (strstr(req, "SIP/2.0/UDP"))
		memcpy(strstr(req, "SIP/2.0/UDP"), "SIP/2.0/TCP", 11);
	CHECK(write(fd, req, len) == (ssize_t)len);
	run_until(&h, &h.created, 1, 2000);
	CHECK_INT(h.created, 1);
	CHECK_INT(h.rx_flow.src.proto, SIP_PROTO_TCP);
	CHECK(h.rx_flow.src.conn_id != 0);
	/* Reliable: Timer J is zero, nothing is kept. */
	CHECK_INT(tsx_count(h.tab), 0);
	r = -1;
	for (int i = 0; i < 400 && r <= 0; i++) {
		run_until(&h, NULL, 0, 5);
		r = recv(fd, resp, sizeof(resp) - 1, MSG_DONTWAIT);
	}
	CHECK(r > 0 && memcmp(resp, "SIP/2.0 200 OK", 14) == 0);
	/* The same request again is simply a new transaction. */
	CHECK(write(fd, req, len) == (ssize_t)len);
	run_until(&h, &h.created, 2, 2000);
	CHECK_INT(h.created, 2);
	CHECK_INT(h.replayed, 0);
	if (fd >= 0)
		close(fd);
	harness_fini(&h);
}

static void test_tsx_create_ebusy_at_max(void)
{
	struct harness h;
	struct net_flow f = fake_flow();
	struct sipmsg m;
	struct tsx *t;
	char br[32];

	CHECK_INT(harness_init(&h, 3, 30), 0);
	for (int i = 0; i < 3; i++) {
		snprintf(br, sizeof(br), "z9hG4bK-busy-%d", i);
		msg_fill(&m, "REGISTER", br, "127.0.0.1", 5060);
		CHECK_INT(tsx_create(h.tab, &m, &f, &t), 0);
	}
	msg_fill(&m, "REGISTER", "z9hG4bK-busy-x", "127.0.0.1", 5060);
	CHECK_INT(tsx_create(h.tab, &m, &f, &t), EBUSY);
	CHECK(t == NULL);
	CHECK_INT(tsx_count(h.tab), 3);
	/* Completed transactions count until Timer J frees them. */
	msg_fill(&m, "REGISTER", "z9hG4bK-busy-0", "127.0.0.1", 5060);
	t = tsx_lookup(h.tab, &m);
	CHECK(t != NULL);
	if (t)
		tsx_reply(t, 200, "SIP/2.0 200 OK\r\n\r\n", 18);
	msg_fill(&m, "REGISTER", "z9hG4bK-busy-x", "127.0.0.1", 5060);
	CHECK_INT(tsx_create(h.tab, &m, &f, &t), EBUSY);
	run_until(&h, NULL, 0, 200);
	CHECK_INT(tsx_count(h.tab), 2);
	CHECK_INT(tsx_create(h.tab, &m, &f, &t), 0);
	harness_fini(&h);
}

#define BULK 200000

static void test_tsx_200000_live_created_found_expired(void)
{
	struct harness h;
	struct net_flow f = fake_flow();
	struct sipmsg m;
	static struct tsx *ts[BULK];
	static char branches[BULK][24];
	int missing = 0, wrong = 0, left = 0;
	uint64_t start;

	CHECK_INT(harness_init(&h, BULK, 100), 0);
	for (int i = 0; i < BULK; i++) {
		snprintf(branches[i], sizeof(branches[i]), "z9hG4bK-%d", i);
		msg_fill(&m, "REGISTER", branches[i], "10.0.0.1", 5060);
		if (tsx_create(h.tab, &m, &f, &ts[i]) != 0)
			missing++;
	}
	CHECK_INT(missing, 0);
	CHECK_INT(tsx_count(h.tab), BULK);
	msg_fill(&m, "REGISTER", "z9hG4bK-overflow", "10.0.0.1", 5060);
	{
		struct tsx *extra;

		CHECK_INT(tsx_create(h.tab, &m, &f, &extra), EBUSY);
	}
	for (int i = 0; i < BULK; i++) {
		msg_fill(&m, "REGISTER", branches[i], "10.0.0.1", 5060);
		if (tsx_lookup(h.tab, &m) != ts[i])
			wrong++;
	}
	CHECK_INT(wrong, 0);
	/* Answer the even ones; their replies fail to send (no socket) but complete. */
	for (int i = 0; i < BULK; i += 2) {
		msg_fill(&m, "REGISTER", branches[i], "10.0.0.1", 5060);
		tsx_reply(tsx_lookup(h.tab, &m), 200, "SIP/2.0 200 OK\r\n\r\n", 18);
	}
	missing = 0;
	for (int i = 0; i < BULK; i++) {
		msg_fill(&m, "REGISTER", branches[i], "10.0.0.1", 5060);
		if (!tsx_lookup(h.tab, &m))
			missing++;
	}
	CHECK_INT(missing, 0);
	start = ms_now();
	while (tsx_count(h.tab) > BULK / 2 && ms_now() - start < 20000)
		run_until(&h, NULL, 0, 20);
	CHECK_INT(tsx_count(h.tab), BULK / 2);
	for (int i = 0; i < BULK; i++) {
		msg_fill(&m, "REGISTER", branches[i], "10.0.0.1", 5060);
		struct tsx *t = tsx_lookup(h.tab, &m);

		if ((i % 2 == 0) != (t == NULL))
			left++;
		else if (t && t != ts[i])
			wrong++;
	}
	CHECK_INT(left, 0);
	CHECK_INT(wrong, 0);
	harness_fini(&h);
}

struct abort_rec {
	int calls;
	struct tsx *t;
	void *owner;
	int reply_err;
};

static struct abort_rec aborted;

static void on_abort(struct tsx *t, void *owner)
{
	aborted.calls++;
	aborted.t = t;
	aborted.owner = owner;
	/* An owner that tries to answer from here is refused, not crashed. */
	aborted.reply_err = tsx_reply(t, 500, "SIP/2.0 500 x\r\n\r\n", 17);
}

static void test_tsx_abort_handler_runs_on_table_free(void)
{
	struct harness h;
	struct net_flow f = fake_flow();
	struct sipmsg m;
	struct tsx *pending, *answered, *ownerless;
	int owner_a, owner_b;

	CHECK_INT(harness_init(&h, 100, 0), 0);
	memset(&aborted, 0, sizeof(aborted));
	msg_fill(&m, "REGISTER", "z9hG4bK-ab-1", "127.0.0.1", 5060);
	CHECK_INT(tsx_create(h.tab, &m, &f, &pending), 0);
	msg_fill(&m, "REGISTER", "z9hG4bK-ab-2", "127.0.0.1", 5060);
	CHECK_INT(tsx_create(h.tab, &m, &f, &answered), 0);
	msg_fill(&m, "REGISTER", "z9hG4bK-ab-3", "127.0.0.1", 5060);
	CHECK_INT(tsx_create(h.tab, &m, &f, &ownerless), 0);
	tsx_set_owner(pending, on_abort, &owner_a);
	tsx_set_owner(answered, on_abort, &owner_b);
	tsx_reply(answered, 200, "SIP/2.0 200 OK\r\n\r\n", 18);
	tsx_table_free(&h.tab);
	CHECK(h.tab == NULL);
	CHECK_INT(aborted.calls, 1);
	CHECK(aborted.t == pending);
	CHECK(aborted.owner == &owner_a);
	CHECK_INT(aborted.reply_err, ECANCELED);
	(void)ownerless;
	harness_fini(&h);
}

int main(void)
{
	RUN(test_tsx_match_by_branch_sentby_method);
	RUN(test_tsx_lookup_by_peeked_id_meets_the_parsed_original);
	RUN(test_tsx_key_fields_with_nul_bytes_compare_fully);
	RUN(test_tsx_retransmission_gets_identical_response);
	RUN(test_tsx_reply_port_rport_else_via_port);
	RUN(test_tsx_ipv6_peer_gets_answer_and_replay);
	RUN(test_tsx_bare_cookie_and_rfc2543_use_fallback_key);
	RUN(test_tsx_rfc2543_retransmission_over_udp);
	RUN(test_tsx_timer_j_expires_completed_only);
	RUN(test_tsx_tcp_transaction_freed_on_reply);
	RUN(test_tsx_create_ebusy_at_max);
	RUN(test_tsx_200000_live_created_found_expired);
	RUN(test_tsx_abort_handler_runs_on_table_free);
	CHECK_DONE();
}
