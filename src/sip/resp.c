/* Responses as text in one growing buffer: status line, the request's Vias (received and
 * rport on the top one), From, To with our tag, Call-ID, CSeq copied from the raw request. */
#include "sip/resp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/digest.h"

const char sipresp_server[] = "sipreg/" SIPREG_VERSION;
static const char resp_tail[] =
    "Server: sipreg/" SIPREG_VERSION "\r\nContent-Length: 0\r\n\r\n";

static bool resp_reserve(struct sipresp *r, size_t more)
{
	size_t need, ncap;
	char *nb;

	if (r->err)
		return false;
	if (more > SIZE_MAX / 2 - r->len) {
		r->err = ENOMEM;
		return false;
	}
	need = r->len + more + 1; /* keep room for a NUL: easier to log */
	if (need <= r->cap)
		return true;
	ncap = r->cap ? r->cap : 512;
	while (ncap < need)
		ncap *= 2;
	nb = realloc(r->buf, ncap);
	if (!nb) {
		r->err = ENOMEM;
		return false;
	}
	r->buf = nb;
	r->cap = ncap;
	return true;
}

void sipresp_append(struct sipresp *r, const char *p, size_t len)
{
	if (len == 0 || !resp_reserve(r, len))
		return;
	memcpy(r->buf + r->len, p, len);
	r->len += len;
	r->buf[r->len] = '\0';
}

static void resp_puts(struct sipresp *r, const char *s)
{
	sipresp_append(r, s, strlen(s));
}

/* Numbers are written by hand, not with printf: a response carries several, and
 * vsnprintf costs about a thousand instructions each on the hot path. */
void sipresp_append_uint(struct sipresp *r, uint64_t v)
{
	char tmp[20];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sipresp_append(r, tmp + i, sizeof(tmp) - i);
}

struct sipresp_tag_key {
	struct digest_hmac *mac;
};

/* Bytes of the HMAC a tag shows: 64 bits, twice what RFC 3261 §19.3 asks for. */
#define TAG_BYTES 8

int sipresp_tag_key_alloc(struct sipresp_tag_key **kp, const uint8_t *key, size_t len)
{
	struct sipresp_tag_key *k;
	int err;

	*kp = NULL;
	k = calloc(1, sizeof(*k));
	if (!k)
		return ENOMEM;
	err = digest_hmac_alloc(&k->mac, key, len);
	if (err) {
		free(k);
		return err;
	}
	*kp = k;
	return 0;
}

void sipresp_tag_key_free(struct sipresp_tag_key **kp)
{
	if (!*kp)
		return;
	digest_hmac_free(&(*kp)->mac);
	free(*kp);
	*kp = NULL;
}

static void be32_put(uint8_t *p, size_t v)
{
	uint32_t x = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;

	p[0] = (uint8_t)(x >> 24);
	p[1] = (uint8_t)(x >> 16);
	p[2] = (uint8_t)(x >> 8);
	p[3] = (uint8_t)x;
}

/* ";tag=" and our tag for req: one HMAC per response that needs a tag. The lengths go
 * first so that no two (Call-ID, From tag, branch) triples feed the same bytes. */
static void resp_to_tag(struct sipresp *r, struct sipresp_tag_key *key,
			const struct sipmsg *req)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t lens[12], mac[DIGEST_HMAC_LEN];
	char tag[2 * TAG_BYTES];
	struct sip_str parts[4];
	int err;

	be32_put(lens, req->call_id.len);
	be32_put(lens + 4, req->from_tag.len);
	be32_put(lens + 8, req->branch.len);
	parts[0] = (struct sip_str){.p = (const char *)lens, .len = sizeof(lens)};
	parts[1] = req->call_id;
	parts[2] = req->from_tag;
	parts[3] = req->branch;
	err = digest_hmac_run(key->mac, parts, 4, mac);
	if (err) {
		if (!r->err)
			r->err = err;
		return;
	}
	for (size_t i = 0; i < TAG_BYTES; i++) {
		tag[2 * i] = hex[mac[i] >> 4];
		tag[2 * i + 1] = hex[mac[i] & 15];
	}
	sipresp_append(r, ";tag=", 5);
	sipresp_append(r, tag, sizeof(tag));
}

static void resp_printf(struct sipresp *r, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void resp_printf(struct sipresp *r, const char *fmt, va_list ap)
{
	va_list aq;
	int n;

	if (r->err)
		return;
	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0) {
		r->err = EINVAL;
		return;
	}
	if (!resp_reserve(r, (size_t)n))
		return;
	vsnprintf(r->buf + r->len, (size_t)n + 1, fmt, ap);
	r->len += (size_t)n;
}

void sipresp_header_str(struct sipresp *r, const char *name, const char *value)
{
	resp_puts(r, name);
	sipresp_append(r, ": ", 2);
	resp_puts(r, value);
	sipresp_append(r, "\r\n", 2);
}

void sipresp_header_uint(struct sipresp *r, const char *name, uint64_t value)
{
	resp_puts(r, name);
	sipresp_append(r, ": ", 2);
	sipresp_append_uint(r, value);
	sipresp_append(r, "\r\n", 2);
}

void sipresp_header(struct sipresp *r, const char *name, const char *fmt, ...)
{
	va_list ap;

	resp_puts(r, name);
	sipresp_append(r, ": ", 2);
	va_start(ap, fmt);
	resp_printf(r, fmt, ap);
	va_end(ap);
	sipresp_append(r, "\r\n", 2);
}

/* Copies a raw header value, replacing each fold (CRLF + whitespace) by one space. */
static void resp_unfolded(struct sipresp *r, const char *p, size_t len)
{
	const char *end = p + len, *s = p;

	/* almost every value is one line: copy it whole (memchr scans by the word) */
	if (!memchr(p, '\n', len) && !memchr(p, '\r', len)) {
		sipresp_append(r, p, len);
		return;
	}
	while (p < end) {
		if (*p != '\r' && *p != '\n') {
			p++;
			continue;
		}
		sipresp_append(r, s, (size_t)(p - s));
		while (p < end && (*p == '\r' || *p == '\n' || *p == ' ' || *p == '\t'))
			p++;
		sipresp_append(r, " ", 1);
		s = p;
	}
	sipresp_append(r, s, (size_t)(p - s));
}

static bool name_is(const struct sip_str *n, const char *full, char compact)
{
	if (compact && n->len == 1 && (n->p[0] | 0x20) == compact)
		return true;
	return n->len == strlen(full) && strncasecmp(n->p, full, n->len) == 0;
}

/* Does the Via sent-by host name the address the request came from? */
static bool via_host_is_source(const struct sip_str *host, const char *ip)
{
	char tmp[INET6_ADDRSTRLEN + 1];
	unsigned char a[sizeof(struct in6_addr)], b[sizeof(struct in6_addr)];
	int af;

	if (host->len == 0)
		return false;
	if (host->len == strlen(ip) && strncasecmp(host->p, ip, host->len) == 0)
		return true;
	if (host->len >= sizeof(tmp))
		return false;
	memcpy(tmp, host->p, host->len);
	tmp[host->len] = '\0';
	af = strchr(ip, ':') ? AF_INET6 : AF_INET;
	return inet_pton(af, tmp, a) == 1 && inet_pton(af, ip, b) == 1 &&
	       memcmp(a, b, af == AF_INET6 ? 16 : 4) == 0;
}

/* The top Via: rport filled in (RFC 3581) and received added (RFC 3261 §18.2.1). */
static void resp_top_via(struct sipresp *r, const struct sipmsg *req, const struct sip_str *v,
			 const struct sip_source *src)
{
	struct sip_str rport;
	size_t head;

	resp_puts(r, "Via: ");
	if (!src || !src->ip[0]) {
		resp_unfolded(r, v->p, v->len);
		sipresp_append(r, "\r\n", 2);
		return;
	}
	if (req->via_rport && sipmsg_param(v, "rport", &rport) && rport.len == 0 &&
	    rport.p - v->p >= 5 && strncasecmp(rport.p - 5, "rport", 5) == 0) {
		head = (size_t)(rport.p - v->p);
		resp_unfolded(r, v->p, head);
		sipresp_append(r, "=", 1);
		sipresp_append_uint(r, src->port);
		resp_unfolded(r, rport.p, v->len - head);
	} else {
		resp_unfolded(r, v->p, v->len);
	}
	if (req->via_rport || !via_host_is_source(&req->via_host, src->ip)) {
		sipresp_append(r, ";received=", 10);
		resp_puts(r, src->ip);
	}
	sipresp_append(r, "\r\n", 2);
}

/* "Name: value" with the value unfolded, for a header copied from the request. */
static void resp_copy(struct sipresp *r, const char *name, size_t nlen, const struct sip_str *v)
{
	sipresp_append(r, name, nlen);
	resp_unfolded(r, v->p, v->len);
	sipresp_append(r, "\r\n", 2);
}

/* Empty r and write "SIP/2.0 status reason". */
static void resp_status_line(struct sipresp *r, int status, const char *reason)
{
	r->len = 0;
	r->err = 0;
	sipresp_append(r, "SIP/2.0 ", 8);
	sipresp_append_uint(r, (uint64_t)status);
	sipresp_append(r, " ", 1);
	if (reason)
		resp_puts(r, reason);
	sipresp_append(r, "\r\n", 2);
}

int sipresp_start(struct sipresp *r, struct sipresp_tag_key *key, const struct sipmsg *req,
		  int status, const char *reason, const struct sip_source *src)
{
	struct sip_str value, e;
	size_t pos = 0, lpos;
	bool top = true;

	if (!r)
		return EINVAL;
	if (!key || !req || status < 100 || status > 699) {
		r->err = EINVAL; /* and sipresp_finish() refuses to finish it */
		return EINVAL;
	}
	resp_status_line(r, status, reason);
	while (sipmsg_hdr_next(req, SIPMSG_HDR_VIA, &pos, &value)) {
		lpos = 0;
		while (sipmsg_list_next(&value, &lpos, &e)) {
			if (e.len == 0)
				continue;
			if (top) {
				resp_top_via(r, req, &e, src);
				top = false;
				continue;
			}
			resp_copy(r, "Via: ", 5, &e);
		}
	}
	pos = 0;
	if (sipmsg_hdr_next(req, SIPMSG_HDR_FROM, &pos, &value))
		resp_copy(r, "From: ", 6, &value);
	pos = 0;
	if (sipmsg_hdr_next(req, SIPMSG_HDR_TO, &pos, &value)) {
		sipresp_append(r, "To: ", 4);
		resp_unfolded(r, value.p, value.len);
		if (req->to_tag.len == 0)
			resp_to_tag(r, key, req);
		sipresp_append(r, "\r\n", 2);
	}
	pos = 0;
	if (sipmsg_hdr_next(req, SIPMSG_HDR_CALL_ID, &pos, &value))
		resp_copy(r, "Call-ID: ", 9, &value);
	pos = 0;
	if (sipmsg_hdr_next(req, SIPMSG_HDR_CSEQ, &pos, &value))
		resp_copy(r, "CSeq: ", 6, &value);
	return r->err;
}

int sipresp_finish(struct sipresp *r)
{
	/* idempotent: a finished response ends with the blank line */
	if (!r->err && r->len >= 4 && memcmp(r->buf + r->len - 4, "\r\n\r\n", 4) == 0)
		return 0;
	sipresp_append(r, resp_tail, sizeof(resp_tail) - 1);
	return r->err;
}

void sipresp_clear(struct sipresp *r)
{
	if (!r)
		return;
	free(r->buf);
	r->buf = NULL;
	r->len = 0;
	r->cap = 0;
	r->err = 0;
}

/* RFC 1123 date of now into buf[30] ("Sun, 06 Nov 1994 08:49:37 GMT" and a NUL). */
static bool date_format(int64_t now, char *buf)
{
	time_t t = (time_t)now;
	struct tm tm;

	if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
		return false;
	return evutil_date_rfc1123(buf, 30, &tm) == 29;
}

void sipresp_date(struct sipresp *r, int64_t now)
{
	/* Every 200 OK carries a Date and the second rarely changes between two of them:
	 * keep the last one formatted (per thread: the tests may build responses in
	 * parallel). */
	static _Thread_local int64_t cached_at = INT64_MIN;
	static _Thread_local char cached[30];

	if (now != cached_at) {
		if (!date_format(now, cached)) {
			r->err = r->err ? r->err : EINVAL;
			return;
		}
		cached_at = now;
	}
	sipresp_append(r, "Date: ", 6);
	sipresp_append(r, cached, 29);
	sipresp_append(r, "\r\n", 2);
}

static bool token_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("-.!%*_+`'~", c));
}

int sipresp_error_raw(struct sipresp *r, const char *buf, size_t len, int status,
		      const char *reason, const struct sip_source *src)
{
	struct sip_str name, value, line;
	const char *eol, *sp1, *sp2, *nl;
	size_t pos = 0;
	bool via = false;

	(void)src; /* the lines are copied verbatim; the caller sends to the source */
	if (!r || !buf || status < 100 || status > 699)
		return EINVAL;
	nl = memchr(buf, '\n', len);
	eol = nl ? nl : buf + len;
	if (eol > buf && eol[-1] == '\r')
		eol--;
	sp1 = memchr(buf, ' ', (size_t)(eol - buf));
	if (!sp1 || sp1 == buf)
		return ENOENT;
	for (const char *p = buf; p < sp1; p++)
		if (!token_char(*p))
			return ENOENT;
	/* an ACK is never answered */
	if (sp1 - buf == 3 && memcmp(buf, "ACK", 3) == 0)
		return ENOENT;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2 || sp2 == sp1 + 1 || eol - sp2 < 5 || memcmp(sp2 + 1, "SIP/", 4) != 0)
		return ENOENT;
	while (sipmsg_raw_header_next(buf, len, &pos, &name, &value, &line))
		if (name_is(&name, "Via", 'v') && value.len)
			via = true;
	if (!via)
		return ENOENT;

	resp_status_line(r, status, reason);
	pos = 0;
	while (sipmsg_raw_header_next(buf, len, &pos, &name, &value, &line)) {
		if (name_is(&name, "Via", 'v') || name_is(&name, "From", 'f') ||
		    name_is(&name, "To", 't') || name_is(&name, "Call-ID", 'i') ||
		    name_is(&name, "CSeq", 0)) {
			sipresp_append(r, line.p, line.len);
			sipresp_append(r, "\r\n", 2);
		}
	}
	return sipresp_finish(r);
}
