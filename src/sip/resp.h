/* Building responses as text: status line, the request's Vias (top one with received and
 * rport per RFC 3261 §18.2.1 and RFC 3581), From, To (with our keyed tag), Call-ID, CSeq, then
 * whatever the caller adds. Also where a response goes (§18.2.2). */
#ifndef SIPREG_SIPRESP_H
#define SIPREG_SIPRESP_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sip/msg.h"

struct sipresp {
	char *buf;    /* owned, grown as needed */
	size_t len;
	size_t cap;
	int err;      /* first ENOMEM seen; later appends are no-ops */
};

/* The key our To tags are derived under (RFC 3261 §19.3 wants them unguessable): a tag is
 * HMAC-SHA256(key, Call-ID, From tag, top Via branch), 64 bits in hex. Every instance
 * holding the same key gives a request and its retransmissions the same tag; nobody
 * without the key can predict one. Used by one thread at a time. key is copied into the
 * HMAC's key schedule; wipe it after. Returns 0, ENOMEM or EIO; *kp:
 * sipresp_tag_key_free(). */
struct sipresp_tag_key;
int sipresp_tag_key_alloc(struct sipresp_tag_key **kp, const uint8_t *key, size_t len);
void sipresp_tag_key_free(struct sipresp_tag_key **kp);

/* Start a response to req. When the request's To has no tag, one is added, derived under
 * key (borrowed) so repeated answers agree. Returns 0, EINVAL (no key, bad status), ENOMEM
 * or EIO. The buffer belongs to r: sipresp_clear(). */
int sipresp_start(struct sipresp *r, struct sipresp_tag_key *key, const struct sipmsg *req,
		  int status, const char *reason, const struct sip_source *src);
/* Append "Name: value\r\n" with printf formatting. */
void sipresp_header(struct sipresp *r, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Append "Name: value\r\n" without printf (the hot paths). */
void sipresp_header_str(struct sipresp *r, const char *name, const char *value);
void sipresp_header_uint(struct sipresp *r, const char *name, uint64_t value);
void sipresp_append(struct sipresp *r, const char *p, size_t len);
/* Append a string literal (its length known at compile time). */
#define sipresp_append_lit(r, lit) sipresp_append((r), "" lit, sizeof(lit) - 1)
/* Append v in decimal. */
void sipresp_append_uint(struct sipresp *r, uint64_t v);
/* Server header, Content-Length: 0 and the blank line. Returns r->err. A response that is
 * already finished (ends with the blank line) is left as it is. */
int sipresp_finish(struct sipresp *r);
void sipresp_clear(struct sipresp *r);

/* A 400 built from the raw lines of a request libosip2 could not parse (Via, From, To,
 * Call-ID, CSeq copied verbatim when present). The response comes out finished. Returns 0,
 * ENOENT when the bytes do not look like a request with a Via or are an ACK (then drop), or
 * ENOMEM. */
int sipresp_error_raw(struct sipresp *r, const char *buf, size_t len, int status,
		      const char *reason, const struct sip_source *src);

/* The "Server:" value and RFC 1123 Date formatting used by every response. */
extern const char sipresp_server[];
void sipresp_date(struct sipresp *r, int64_t now);

#endif
