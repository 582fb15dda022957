/* IP prefix sets: parsing with inet_pton, masking, and the membership scan. */
#include "util/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct netaddr_set {
	struct netaddr_prefix *v;
	size_t n, cap;
};

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Do the first len bits of a and b agree? */
static bool bits_equal(const uint8_t *a, const uint8_t *b, unsigned len)
{
	unsigned whole = len / 8, rest = len % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (!rest)
		return true;
	return ((a[whole] ^ b[whole]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

/* Clears the bits of addr (size bytes) past len; true when they were all clear. */
static bool bits_clear_after(uint8_t *addr, size_t size, unsigned len)
{
	bool clear = true;

	for (size_t i = len / 8; i < size; i++) {
		uint8_t keep = i == len / 8 && len % 8 ? (uint8_t)(0xff << (8 - len % 8)) : 0;

		if (addr[i] & (uint8_t)~keep)
			clear = false;
		addr[i] &= keep;
	}
	return clear;
}

int netaddr_prefix_parse(const char *text, struct netaddr_prefix *p)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash;
	unsigned len = 0, max;
	size_t alen;

	if (!text || !p)
		return EINVAL;
	memset(p, 0, sizeof(*p));
	slash = strchr(text, '/');
	alen = slash ? (size_t)(slash - text) : strlen(text);
	if (alen == 0 || alen >= sizeof(addr))
		return EINVAL;
	memcpy(addr, text, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, p->addr) == 1) {
		max = 32;
	} else if (inet_pton(AF_INET6, addr, p->addr) == 1) {
		p->v6 = true;
		max = 128;
	} else {
		return EINVAL;
	}
	len = max;
	if (slash) {
		const char *d = slash + 1;
		size_t nd = strlen(d);

		if (nd == 0 || nd > 3 || strspn(d, "0123456789") != nd)
			return EINVAL;
		len = (unsigned)strtoul(d, NULL, 10);
		if (len > max)
			return ERANGE;
	}
	p->len = (uint8_t)len;
	if (!bits_clear_after(p->addr, p->v6 ? 16 : 4, len))
		return EDOM;
	if (p->v6 && len >= 96 && memcmp(p->addr, v4mapped, sizeof(v4mapped)) == 0) {
		memmove(p->addr, p->addr + 12, 4);
		memset(p->addr + 4, 0, 12);
		p->v6 = false;
		p->len = (uint8_t)(len - 96);
	}
	return 0;
}

const char *netaddr_prefix_format(const struct netaddr_prefix *p, char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN];

	if (!buf || cap == 0)
		return "";
	if (!inet_ntop(p->v6 ? AF_INET6 : AF_INET, p->addr, a, sizeof(a)))
		strcpy(a, "?");
	snprintf(buf, cap, "%s/%u", a, (unsigned)p->len);
	return buf;
}

int netaddr_set_alloc(struct netaddr_set **sp)
{
	*sp = calloc(1, sizeof(**sp));
	return *sp ? 0 : ENOMEM;
}

void netaddr_set_free(struct netaddr_set **sp)
{
	if (!*sp)
		return;
	free((*sp)->v);
	free(*sp);
	*sp = NULL;
}

int netaddr_set_add(struct netaddr_set *s, const struct netaddr_prefix *p)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i].v6 == p->v6 && s->v[i].len == p->len &&
		    memcmp(s->v[i].addr, p->addr, sizeof(p->addr)) == 0)
			return EEXIST;
	}
	if (s->n == s->cap) {
		size_t ncap = s->cap ? 2 * s->cap : 8;
		struct netaddr_prefix *nv = realloc(s->v, ncap * sizeof(*nv));

		if (!nv)
			return ENOMEM;
		s->v = nv;
		s->cap = ncap;
	}
	s->v[s->n++] = *p;
	return 0;
}

size_t netaddr_set_count(const struct netaddr_set *s)
{
	return s ? s->n : 0;
}

/* addr: 4 bytes when !v6, 16 when v6 (and not IPv4-mapped). */
static bool set_match(const struct netaddr_set *s, bool v6, const uint8_t *addr)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i].v6 == v6 && bits_equal(s->v[i].addr, addr, s->v[i].len))
			return true;
	}
	return false;
}

/* A 16-byte IPv6 address; an IPv4-mapped one is also the IPv4 address it carries. */
static bool match_v6(const struct netaddr_set *s, const uint8_t *a16)
{
	if (memcmp(a16, v4mapped, sizeof(v4mapped)) == 0 && set_match(s, false, a16 + 12))
		return true;
	return set_match(s, true, a16);
}

bool netaddr_set_contains(const struct netaddr_set *s, const struct sockaddr *sa)
{
	if (!s || !s->n || !sa)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;

		return set_match(s, false, (const uint8_t *)&in->sin_addr);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;

		return match_v6(s, in6->sin6_addr.s6_addr);
	}
	return false;
}

bool netaddr_set_contains_str(const struct netaddr_set *s, const char *ip)
{
	uint8_t a[16];

	if (!s || !s->n || !ip)
		return false;
	if (inet_pton(AF_INET, ip, a) == 1)
		return set_match(s, false, a);
	if (inet_pton(AF_INET6, ip, a) == 1)
		return match_v6(s, a);
	return false;
}

size_t netaddr_ipv4_text(const uint8_t *b, char *buf)
{
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
	return n;
}
