/* Unit tests for src/util/netaddr.c: prefix parsing (IPv4, IPv6, IPv4-mapped, every refusal),
 * formatting, and membership of text and socket addresses. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "check.h"
#include "util/netaddr.h"

static const char *fmt(const char *text)
{
	static char buf[NETADDR_PREFIX_STRLEN];
	struct netaddr_prefix p;

	if (netaddr_prefix_parse(text, &p) != 0)
		return "(refused)";
	return netaddr_prefix_format(&p, buf, sizeof(buf));
}

static int parse_err(const char *text)
{
	struct netaddr_prefix p;

	return netaddr_prefix_parse(text, &p);
}

static void test_netaddr_prefix_parse_and_format(void)
{
	CHECK_STR(fmt("10.0.0.0/8"), "10.0.0.0/8");
	CHECK_STR(fmt("192.0.2.7"), "192.0.2.7/32");
	CHECK_STR(fmt("0.0.0.0/0"), "0.0.0.0/0");
	CHECK_STR(fmt("172.16.0.0/12"), "172.16.0.0/12");
	CHECK_STR(fmt("2001:db8::/32"), "2001:db8::/32");
	CHECK_STR(fmt("2001:DB8::1"), "2001:db8::1/128");
	CHECK_STR(fmt("::/0"), "::/0");
	/* IPv4-mapped prefixes are the IPv4 prefixes they name. */
	CHECK_STR(fmt("::ffff:192.0.2.0/120"), "192.0.2.0/24");
	CHECK_STR(fmt("::ffff:192.0.2.7"), "192.0.2.7/32");
}

static void test_netaddr_prefix_refusals(void)
{
	CHECK_INT(parse_err(""), EINVAL);
	CHECK_INT(parse_err("/8"), EINVAL);
	CHECK_INT(parse_err("example.com"), EINVAL);
	CHECK_INT(parse_err("10.0.0"), EINVAL);
	CHECK_INT(parse_err("10.0.0.0/"), EINVAL);
	CHECK_INT(parse_err("10.0.0.0/8x"), EINVAL);
	CHECK_INT(parse_err("10.0.0.0/-1"), EINVAL);
	CHECK_INT(parse_err("10.0.0.0/1000"), EINVAL);
	CHECK_INT(parse_err("10.0.0.0 /8"), EINVAL);
	CHECK_INT(parse_err("[::1]"), EINVAL);
	CHECK_INT(parse_err("fe80::1%lo"), EINVAL);
	CHECK_INT(parse_err("10.0.0.0/33"), ERANGE);
	CHECK_INT(parse_err("::/129"), ERANGE);
	CHECK_INT(parse_err("10.0.0.1/8"), EDOM);
	CHECK_INT(parse_err("192.0.2.128/24"), EDOM);
	CHECK_INT(parse_err("2001:db8::1/32"), EDOM);
	CHECK_INT(parse_err("10.0.0.0/8"), 0);
	{
		struct netaddr_prefix p;
		char buf[NETADDR_PREFIX_STRLEN];

		CHECK_INT(netaddr_prefix_parse("10.1.2.3/8", &p), EDOM);
		CHECK_STR(netaddr_prefix_format(&p, buf, sizeof(buf)), "10.0.0.0/8");
	}
	CHECK_INT(parse_err("10.128.0.0/9"), 0);
	CHECK_INT(parse_err(NULL), EINVAL);
}

static struct netaddr_set *set_of(const char *const *texts, size_t n)
{
	struct netaddr_set *s = NULL;
	struct netaddr_prefix p;

	CHECK_INT(netaddr_set_alloc(&s), 0);
	for (size_t i = 0; s && i < n; i++) {
		CHECK_INT(netaddr_prefix_parse(texts[i], &p), 0);
		CHECK_INT(netaddr_set_add(s, &p), 0);
	}
	return s;
}

static void test_netaddr_set_contains_text_addresses(void)
{
	static const char *const texts[] = {"10.0.0.0/8", "192.0.2.7", "2001:db8::/32",
					    "198.51.100.128/25"};
	struct netaddr_set *s = set_of(texts, 4);
	struct netaddr_prefix p;

	CHECK_INT(netaddr_set_count(s), 4);
	CHECK(netaddr_set_contains_str(s, "10.0.0.1"));
	CHECK(netaddr_set_contains_str(s, "10.255.255.255"));
	CHECK(!netaddr_set_contains_str(s, "11.0.0.1"));
	CHECK(netaddr_set_contains_str(s, "192.0.2.7"));
	CHECK(!netaddr_set_contains_str(s, "192.0.2.8"));
	CHECK(netaddr_set_contains_str(s, "198.51.100.200"));
	CHECK(!netaddr_set_contains_str(s, "198.51.100.127"));
	CHECK(netaddr_set_contains_str(s, "2001:db8:ffff::1"));
	CHECK(!netaddr_set_contains_str(s, "2001:db9::1"));
	/* An IPv4 source on a dual-stack socket arrives IPv4-mapped. */
	CHECK(netaddr_set_contains_str(s, "::ffff:10.1.2.3"));
	CHECK(!netaddr_set_contains_str(s, "::ffff:11.1.2.3"));
	CHECK(!netaddr_set_contains_str(s, "not an address"));
	CHECK(!netaddr_set_contains_str(s, NULL));
	CHECK_INT(netaddr_prefix_parse("10.0.0.0/8", &p), 0);
	CHECK_INT(netaddr_set_add(s, &p), EEXIST);
	CHECK_INT(netaddr_prefix_parse("::ffff:192.0.2.7", &p), 0);
	CHECK_INT(netaddr_set_add(s, &p), EEXIST);
	netaddr_set_free(&s);
	CHECK(s == NULL);
	/* Nothing is in a NULL or an empty set. */
	CHECK(!netaddr_set_contains_str(NULL, "10.0.0.1"));
	s = set_of(texts, 0);
	CHECK(!netaddr_set_contains_str(s, "10.0.0.1"));
	netaddr_set_free(&s);
	/* ::/0 holds every IPv6 address, IPv4-mapped ones too; 0.0.0.0/0 every IPv4 one. */
	s = set_of((const char *const[]){"::/0"}, 1);
	CHECK(netaddr_set_contains_str(s, "::ffff:10.1.2.3"));
	CHECK(netaddr_set_contains_str(s, "2001:db8::1"));
	CHECK(!netaddr_set_contains_str(s, "10.1.2.3"));
	netaddr_set_free(&s);
}

static void test_netaddr_set_contains_socket_addresses(void)
{
	static const char *const texts[] = {"127.0.0.4/31", "::1"};
	struct netaddr_set *s = set_of(texts, 2);
	struct sockaddr_in in = {.sin_family = AF_INET};
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	struct sockaddr other = {.sa_family = AF_UNIX};

	inet_pton(AF_INET, "127.0.0.5", &in.sin_addr);
	CHECK(netaddr_set_contains(s, (struct sockaddr *)&in));
	inet_pton(AF_INET, "127.0.0.6", &in.sin_addr);
	CHECK(!netaddr_set_contains(s, (struct sockaddr *)&in));
	inet_pton(AF_INET6, "::1", &in6.sin6_addr);
	CHECK(netaddr_set_contains(s, (struct sockaddr *)&in6));
	inet_pton(AF_INET6, "::ffff:127.0.0.4", &in6.sin6_addr);
	CHECK(netaddr_set_contains(s, (struct sockaddr *)&in6));
	inet_pton(AF_INET6, "::2", &in6.sin6_addr);
	CHECK(!netaddr_set_contains(s, (struct sockaddr *)&in6));
	CHECK(!netaddr_set_contains(s, &other));
	CHECK(!netaddr_set_contains(s, NULL));
	netaddr_set_free(&s);
}

int main(void)
{
	RUN(test_netaddr_prefix_parse_and_format);
	RUN(test_netaddr_prefix_refusals);
	RUN(test_netaddr_set_contains_text_addresses);
	RUN(test_netaddr_set_contains_socket_addresses);
	CHECK_DONE();
}
