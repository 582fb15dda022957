/* The header scanner's text helpers (scan.c): character classes, trimming, lines, numbers
 * and header names as RFC 3261's grammar has them, shared by the parse, the URI code, the
 * transaction peek, TCP framing and digest credentials. */
#ifndef SIPREG_SIP_SCAN_H
#define SIPREG_SIP_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sipreg/types.h"
#include "util/text.h"

/* p..end without leading and trailing LWS. */
struct sip_str sip_str_trim(const char *p, const char *end);
/* End of the line at p (before CR LF or LF); *next is where the following line starts. */
const char *sip_line_end(const char *p, const char *end, const char **next);
/* Digits only, at least one, value <= max. With clamp a larger value becomes max. */
bool sip_parse_uint(const struct sip_str *s, uint64_t max, bool clamp, uint64_t *out);
/* Is the header name the full or (when given) the one-letter compact form, any case? */
bool sip_name_is(const struct sip_str *name, const char *full, const char *compact);

/* A request line's three parts, pointing into the bytes. */
struct sip_reqline {
	struct sip_str method, uri, version;
};
/* "Method SP Request-URI SP SIP-Version": single spaces, as RFC 3261 §7.1 writes it. */
bool sip_reqline_split(const char *buf, size_t len, struct sip_reqline *rl);
bool sip_version_ok(const struct sip_str *v);

#endif
