/* Hosts and SIP URIs (uri.c): splitting, validating and the canonical forms RFC 3261
 * §19.1.4 compares by (the AOR of a To URI, the key of a Contact). */
#ifndef SIPREG_SIP_URI_H
#define SIPREG_SIP_URI_H

#include <stdbool.h>
#include <netinet/in.h>
#include <stddef.h>

#include "sipreg/types.h"

/* The parts of a URI, pointing into it; for other schemes than sip/sips only scheme. */
struct sip_uri_parts {
	struct sip_str scheme, user, password, host, port, params, headers;
	bool has_user, has_password, has_port;
};

/* Is the scheme sip or sips (any case)? */
bool sip_scheme_is_sip(const struct sip_str *s);
/* Splits the scheme off any URI; for sip/sips also user, password, host, port, params and
 * headers. Returns false when that structure is broken. */
bool sip_uri_split(const struct sip_str *uri, struct sip_uri_parts *u);
/* RFC 3986 scheme syntax: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ). */
bool sip_scheme_valid(const struct sip_str *s);
/* A port, when u has one, is 1..65535. */
bool sip_uri_port_valid(const struct sip_uri_parts *u);
/* An IPv6 address without brackets. */
bool sip_ipv6_parse(const char *p, size_t len, struct in6_addr *a);

/* Canonical AOR "user@host" of a raw sip/sips URI: user percent-decoded and re-encoded
 * canonically (so %41 == A and %00 survives as "%00"), host lower-cased, no port or
 * params. Writes into buf; returns 0, EINVAL (not a sip/sips URI with a user and a valid
 * host) or ENOSPC. user_r / domain_r (may be NULL) point into buf. */
int sipmsg_uri_aor(const struct sip_str *uri, char *buf, size_t buflen, struct sip_str *user_r,
		   struct sip_str *domain_r);
/* Comparison key of a raw Contact URI per RFC 3261 §19.1.4: scheme and host lower-case,
 * user canonically escaped, port kept, URI parameters lower-cased by name and sorted,
 * headers dropped. Returns 0, EINVAL or ENOSPC. */
int sipmsg_uri_key(const struct sip_str *uri, char *buf, size_t buflen, size_t *len_r);

/* A user name given as plain bytes (a digest username) in the canonical escaped form
 * sipmsg_uri_aor gives URI user parts, so both name the same directory entry. Returns 0
 * or ENOSPC. */
int sipmsg_user_escape(const struct sip_str *bytes, char *buf, size_t buflen, size_t *len_r);

/* Host check for a URI or Via host: hostname, IPv4, or bracketed IPv6. */
bool sipmsg_host_valid(const char *host, size_t len);
#endif
