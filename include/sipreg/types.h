/* Small value types shared by the daemon and every backend: byte strings that may hold
 * NUL (SIP allows %00 in a URI), transport sources, clock helpers. */
#ifndef SIPREG_TYPES_H
#define SIPREG_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A borrowed byte string: p points into memory someone else owns; len is exact and the
 * bytes may contain NUL. p may be NULL when len is 0. */
struct sip_str {
	const char *p;
	size_t len;
};

#define SIP_STR_LIT(s) ((struct sip_str){ .p = (s), .len = sizeof(s) - 1 })
#define SIP_STR_NULL ((struct sip_str){ .p = NULL, .len = 0 })

static inline struct sip_str sip_str_c(const char *s)
{
	return (struct sip_str){ .p = s, .len = s ? strlen(s) : 0 };
}

static inline bool sip_str_eq(const struct sip_str *a, const struct sip_str *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

enum sip_proto {
	SIP_PROTO_NONE = 0,
	SIP_PROTO_UDP,
	SIP_PROTO_TCP,
	SIP_PROTO_TLS,
};

/* "udp", "tcp", "tls" (lower case, as stored in the directory). */
const char *sip_proto_name(enum sip_proto proto);
/* Inverse of sip_proto_name, case-insensitive; SIP_PROTO_NONE when unknown. */
enum sip_proto sip_proto_from_name(const char *name, size_t len);

/* Where a request came from: the flow a response (and a proxy) goes back through. */
struct sip_source {
	enum sip_proto proto;
	char ip[46];       /* numeric, no brackets, NUL-terminated */
	uint16_t port;
	uint64_t conn_id;  /* TCP/TLS connection within the instance that took it; 0 for UDP */
};

#endif
