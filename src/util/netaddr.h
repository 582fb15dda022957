/* Sets of IP address prefixes (CIDR blocks and single addresses, IPv4 and IPv6) and the
 * membership test for a source address: who is trusted (never banned, not capped). */
#ifndef SIPREG_NETADDR_H
#define SIPREG_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* One prefix. An IPv4 prefix keeps its address in addr[0..3]; an IPv4-mapped IPv6 prefix
 * (::ffff:0:0/96 and longer) is stored as the IPv4 prefix it names, so an IPv4 source
 * matches it whichever socket family it came in on. Bits past len are zero. */
struct netaddr_prefix {
	bool v6;
	uint8_t len; /* 0..32 (IPv4) or 0..128 (IPv6) */
	uint8_t addr[16];
};

/* "10.0.0.0/8", "192.0.2.7" (a /32), "2001:db8::/32", "::1" (a /128): numeric only
 * (inet_pton), no brackets, no spaces. Returns 0; EINVAL (not an address, or a length
 * that is not 1 to 3 decimal digits); ERANGE (a length past 32 or 128); EDOM (address
 * bits set past the length, "10.0.0.1/8": a typo that would trust more than meant; *p is
 * then the network the length names, 10.0.0.0/8, for the message). */
/* The dotted quad of the 4 bytes at b (network order) into buf (INET_ADDRSTRLEN bytes),
 * NUL-terminated; returns its length. By hand: it runs for every datagram and every
 * Contact host, and inet_ntop took 136 ns a call here against 9 ns for this. */
size_t netaddr_ipv4_text(const uint8_t *b, char *buf);

int netaddr_prefix_parse(const char *text, struct netaddr_prefix *p);
/* "ADDR/LEN" of p into buf (at least NETADDR_PREFIX_STRLEN bytes). Returns buf. */
#define NETADDR_PREFIX_STRLEN 50
const char *netaddr_prefix_format(const struct netaddr_prefix *p, char *buf, size_t cap);

/* A set of prefixes; lookups scan it (it is meant for tens of entries: the SBCs and
 * proxies of a site). *sp: netaddr_set_free(). Returns 0 or ENOMEM. */
struct netaddr_set;
int netaddr_set_alloc(struct netaddr_set **sp);
void netaddr_set_free(struct netaddr_set **sp);
/* Add p (copied). Returns 0, EEXIST (the same prefix is in the set already) or ENOMEM. */
int netaddr_set_add(struct netaddr_set *s, const struct netaddr_prefix *p);
size_t netaddr_set_count(const struct netaddr_set *s);

/* Is the address (AF_INET or AF_INET6, IPv4-mapped IPv6 read as IPv4) inside any prefix
 * of s? A NULL or empty set contains nothing; so does a socket address of another family. */
bool netaddr_set_contains(const struct netaddr_set *s, const struct sockaddr *sa);
/* The same for a numeric address as text ("192.0.2.7", "2001:db8::1"); false when ip is
 * not one. */
bool netaddr_set_contains_str(const struct netaddr_set *s, const char *ip);

#endif
