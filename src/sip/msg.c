/* Received SIP messages: libosip2 parses the grammar, then we add the checks it leaves out
 * (version, mandatory headers, CSeq, numbers, URI schemes and hosts) and the raw views.
 *
 * DESIGN: libosip2 unescapes URI user parts in place (so "%00" cuts its C strings) and keeps
 * numbers as unchecked strings. Everything that identifies a user or a binding (To URI,
 * Contacts, tags, Call-ID, CSeq, Expires) is therefore read from our own copy of the bytes
 * by one pass of a small header scanner; libosip2 is used as the grammar check and for the
 * top Via. The sip_str fields of struct sipmsg point into that copy (or into libosip2's
 * parse), so they live exactly as long as the message. */
#include "sip/msg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sip/osip_arena.h"

#define STATUS_BAD     400
#define URI_PARAMS_MAX 32

static pthread_once_t parser_once = PTHREAD_ONCE_INIT;

static void parser_silent_trace(const char *fi, int li, osip_trace_level_t level,
				const char *chfr, va_list ap)
{
	(void)fi;
	(void)li;
	(void)level;
	(void)chfr;
	(void)ap;
}

/* libosip2 traces to stdout unless told otherwise: stdout of the tests is TAP and a flood of
 * bad datagrams must not reach the daemon's output. Route the trace to a sink and disable
 * every level. */
static void parser_setup(void)
{
	osip_arena_setup();
	parser_init();
	osip_trace_initialize_func(END_TRACE_LEVEL, parser_silent_trace);
	for (int l = TRACE_LEVEL0; l < END_TRACE_LEVEL; l++)
		osip_trace_disable_level((osip_trace_level_t)l);
}

static inline bool is_ws(char c)
{
	return c == ' ' || c == '\t';
}

static inline bool is_lws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static inline bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static inline bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool is_alnum(char c)
{
	return is_alpha(c) || is_digit(c);
}

static inline char to_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool mem_ieq(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (to_lower(a[i]) != to_lower(b[i]))
			return false;
	return true;
}

static struct sip_str str_trim(const char *p, const char *end)
{
	while (p < end && is_lws(*p))
		p++;
	while (end > p && is_lws(end[-1]))
		end--;
	return (struct sip_str){.p = p, .len = (size_t)(end - p)};
}

/* End of the line at p (before CR LF or LF); *next is where the following line starts. */
static const char *line_end(const char *p, const char *end, const char **next)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));

	if (!nl) {
		*next = end;
		return end;
	}
	*next = nl + 1;
	return (nl > p && nl[-1] == '\r') ? nl - 1 : nl;
}

bool sipmsg_raw_header_next(const char *buf, size_t len, size_t *pos, struct sip_str *name,
			    struct sip_str *value, struct sip_str *line)
{
	const char *end = buf + len;
	const char *p, *next, *eol, *colon;

	if (*pos == 0) {
		/* skip the start line */
		line_end(buf, end, &next);
		*pos = (size_t)(next - buf);
	}
	p = buf + *pos;
	while (p < end) {
		eol = line_end(p, end, &next);
		if (eol == p) {
			*pos = len; /* blank line: the headers end here */
			return false;
		}
		while (next < end && is_ws(*next)) /* folded continuation lines */
			eol = line_end(next, end, &next);
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon) { /* not a header line; libosip2 judges the message */
			p = next;
			continue;
		}
		*pos = (size_t)(next - buf);
		*name = str_trim(p, colon);
		*value = str_trim(colon + 1, eol);
		if (line)
			*line = (struct sip_str){.p = p, .len = (size_t)(eol - p)};
		return true;
	}
	*pos = len;
	return false;
}

bool sipmsg_list_next(const struct sip_str *v, size_t *pos, struct sip_str *elem)
{
	const char *p, *end = v->p + v->len, *start;
	bool quoted = false, angle = false;

	if (!v->p || v->len == 0 || *pos > v->len)
		return false;
	start = p = v->p + *pos;
	for (; p < end; p++) {
		if (quoted) {
			if (*p == '\\' && p + 1 < end)
				p++;
			else if (*p == '"')
				quoted = false;
			continue;
		}
		if (*p == '"')
			quoted = true;
		else if (*p == '<')
			angle = true;
		else if (*p == '>')
			angle = false;
		else if (*p == ',' && !angle)
			break;
	}
	*elem = str_trim(start, p);
	/* after a trailing comma one more (empty) element follows */
	*pos = p < end ? (size_t)(p + 1 - v->p) : v->len + 1;
	return true;
}

/* Which recorded header a trimmed header name is (full or compact form). */
static enum sipmsg_hdr hdr_identify(const struct sip_str *n)
{
	if (n->len == 0)
		return SIPMSG_HDR_OTHER;
	if (n->len == 1) {
		switch (to_lower(n->p[0])) {
		case 'v':
			return SIPMSG_HDR_VIA;
		case 'f':
			return SIPMSG_HDR_FROM;
		case 't':
			return SIPMSG_HDR_TO;
		case 'i':
			return SIPMSG_HDR_CALL_ID;
		case 'm':
			return SIPMSG_HDR_CONTACT;
		case 'l':
			return SIPMSG_HDR_CLEN;
		case 'c':
			return SIPMSG_HDR_CTYPE;
		case 'k':
			return SIPMSG_HDR_SUPPORTED;
		default:
			return SIPMSG_HDR_OTHER;
		}
	}
	switch (to_lower(n->p[0])) {
	case 'a':
		return mem_ieq(n->p, n->len, "Authorization") ? SIPMSG_HDR_AUTHORIZATION
							      : SIPMSG_HDR_OTHER;
	case 'v':
		return mem_ieq(n->p, n->len, "Via") ? SIPMSG_HDR_VIA : SIPMSG_HDR_OTHER;
	case 'f':
		return mem_ieq(n->p, n->len, "From") ? SIPMSG_HDR_FROM : SIPMSG_HDR_OTHER;
	case 't':
		return mem_ieq(n->p, n->len, "To") ? SIPMSG_HDR_TO : SIPMSG_HDR_OTHER;
	case 'c':
		if (mem_ieq(n->p, n->len, "Call-ID"))
			return SIPMSG_HDR_CALL_ID;
		if (mem_ieq(n->p, n->len, "CSeq"))
			return SIPMSG_HDR_CSEQ;
		if (mem_ieq(n->p, n->len, "Contact"))
			return SIPMSG_HDR_CONTACT;
		if (mem_ieq(n->p, n->len, "Content-Length"))
			return SIPMSG_HDR_CLEN;
		if (mem_ieq(n->p, n->len, "Content-Type"))
			return SIPMSG_HDR_CTYPE;
		return SIPMSG_HDR_OTHER;
	case 'e':
		return mem_ieq(n->p, n->len, "Expires") ? SIPMSG_HDR_EXPIRES : SIPMSG_HDR_OTHER;
	case 'm':
		return mem_ieq(n->p, n->len, "Max-Forwards") ? SIPMSG_HDR_MAXFWD
							     : SIPMSG_HDR_OTHER;
	case 'p':
		return mem_ieq(n->p, n->len, "Path") ? SIPMSG_HDR_PATH : SIPMSG_HDR_OTHER;
	case 'r':
		return mem_ieq(n->p, n->len, "Require") ? SIPMSG_HDR_REQUIRE : SIPMSG_HDR_OTHER;
	case 's':
		return mem_ieq(n->p, n->len, "Supported") ? SIPMSG_HDR_SUPPORTED
							  : SIPMSG_HDR_OTHER;
	case 'u':
		return mem_ieq(n->p, n->len, "User-Agent") ? SIPMSG_HDR_USER_AGENT
							   : SIPMSG_HDR_OTHER;
	default:
		return SIPMSG_HDR_OTHER;
	}
}

/* The recorded header a (name, compact) pair asks for, when it is exactly the standard
 * pair: a caller asking for "Supported" without its compact form "k" must not get the
 * "k" lines, so such a request is answered by a raw scan. */
static enum sipmsg_hdr hdr_of_request(const char *name, const char *compact)
{
	struct sip_str n = sip_str_c(name);
	enum sipmsg_hdr id = hdr_identify(&n);
	struct sip_str c = sip_str_c(compact);

	if (id == SIPMSG_HDR_OTHER || n.len == 1)
		return SIPMSG_HDR_OTHER;
	if (c.len == 0) /* then only headers without a compact form qualify */
		return (id == SIPMSG_HDR_CSEQ || id == SIPMSG_HDR_EXPIRES ||
			id == SIPMSG_HDR_MAXFWD || id == SIPMSG_HDR_REQUIRE ||
			id == SIPMSG_HDR_PATH || id == SIPMSG_HDR_USER_AGENT ||
			id == SIPMSG_HDR_AUTHORIZATION)
			   ? id
			   : SIPMSG_HDR_OTHER;
	return c.len == 1 && hdr_identify(&c) == id ? id : SIPMSG_HDR_OTHER;
}

bool sipmsg_hdr_next(const struct sipmsg *m, enum sipmsg_hdr id, size_t *pos,
		     struct sip_str *value)
{
	struct sip_str name;

	if (!m || !m->raw || id == SIPMSG_HDR_OTHER)
		return false;
	if (!m->index_full) {
		while (*pos < m->n_index) {
			size_t i = (*pos)++;

			if (m->index[i].id == id) {
				*value = m->index[i].value;
				return true;
			}
		}
		return false;
	}
	while (sipmsg_raw_header_next(m->raw, m->raw_len, pos, &name, value, NULL))
		if (hdr_identify(&name) == id)
			return true;
	return false;
}

static bool name_is(const struct sip_str *name, const char *full, const char *compact)
{
	if (compact && name->len == 1 && to_lower(name->p[0]) == compact[0])
		return true;
	return mem_ieq(name->p, name->len, full);
}

/* Next raw value of the header (name, compact): from the index when the pair is one it
 * records, else by scanning the raw text. */
static bool header_next(const struct sipmsg *m, enum sipmsg_hdr id, const char *name,
			const char *compact, size_t *pos, struct sip_str *value)
{
	struct sip_str hn;

	if (id != SIPMSG_HDR_OTHER || !name)
		return sipmsg_hdr_next(m, id, pos, value);
	while (sipmsg_raw_header_next(m->raw, m->raw_len, pos, &hn, value, NULL))
		if (name_is(&hn, name, compact))
			return true;
	return false;
}

/* The values of (id, or else name and compact) into out, split at commas if asked. */
static size_t header_values(const struct sipmsg *m, enum sipmsg_hdr id, const char *name,
			    const char *compact, bool split_commas, struct sip_str *out,
			    size_t max)
{
	struct sip_str hv, e;
	size_t pos = 0, n = 0, lpos;

	if (!m || !m->raw)
		return 0;
	while (n < max && header_next(m, id, name, compact, &pos, &hv)) {
		if (!split_commas) {
			out[n++] = hv;
			continue;
		}
		lpos = 0;
		while (n < max && sipmsg_list_next(&hv, &lpos, &e))
			if (e.len)
				out[n++] = e;
	}
	return n;
}

size_t sipmsg_header_values(const struct sipmsg *m, const char *name, const char *compact,
			    bool split_commas, struct sip_str *out, size_t max)
{
	return header_values(m, hdr_of_request(name, compact), name, compact, split_commas, out,
			     max);
}

size_t sipmsg_hdr_values(const struct sipmsg *m, enum sipmsg_hdr id, bool split_commas,
			 struct sip_str *out, size_t max)
{
	if (id == SIPMSG_HDR_OTHER)
		return 0;
	return header_values(m, id, NULL, NULL, split_commas, out, max);
}

/* Finds parameter name in a raw ";a=b;c" list. Anything before the first ';' is skipped, so
 * a whole header value can be passed. */
bool sipmsg_param(const struct sip_str *params, const char *name, struct sip_str *val)
{
	const char *p, *end, *ns, *ne, *vs, *ve;

	if (!params || !params->p)
		return false;
	p = params->p;
	end = p + params->len;
	while (p < end) {
		p = memchr(p, ';', (size_t)(end - p));
		if (!p)
			return false;
		p++;
		while (p < end && is_lws(*p))
			p++;
		ns = p;
		while (p < end && *p != '=' && *p != ';' && *p != ',' && !is_lws(*p))
			p++;
		ne = p;
		while (p < end && is_lws(*p))
			p++;
		vs = ve = ne;
		if (p < end && *p == '=') {
			p++;
			while (p < end && is_lws(*p))
				p++;
			vs = p;
			if (p < end && *p == '"') {
				for (p++; p < end && *p != '"'; p++)
					if (*p == '\\' && p + 1 < end)
						p++;
				if (p < end)
					p++;
			} else {
				while (p < end && *p != ';' && *p != ',' && !is_lws(*p))
					p++;
			}
			ve = p;
		}
		if (mem_ieq(ns, (size_t)(ne - ns), name)) {
			if (val)
				*val = (struct sip_str){.p = vs, .len = (size_t)(ve - vs)};
			return true;
		}
	}
	return false;
}

enum sip_method sipmsg_method_from(const char *name, size_t len)
{
	static const struct {
		const char *name;
		enum sip_method m;
	} tab[] = {
	    {"REGISTER", SIP_M_REGISTER},
	    {"OPTIONS", SIP_M_OPTIONS},
	    {"ACK", SIP_M_ACK},
	    {"INVITE", SIP_M_INVITE},
	    {"BYE", SIP_M_BYE},
	    {"CANCEL", SIP_M_CANCEL},
	    {"SUBSCRIBE", SIP_M_SUBSCRIBE},
	    {"NOTIFY", SIP_M_NOTIFY},
	    {"MESSAGE", SIP_M_MESSAGE},
	    {"INFO", SIP_M_INFO},
	    {"PRACK", SIP_M_PRACK},
	    {"UPDATE", SIP_M_UPDATE},
	    {"REFER", SIP_M_REFER},
	    {"PUBLISH", SIP_M_PUBLISH},
	};

	if (!name)
		return SIP_M_UNKNOWN;
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strlen(tab[i].name) == len && memcmp(tab[i].name, name, len) == 0)
			return tab[i].m;
	return SIP_M_UNKNOWN;
}

/* ---- hosts and URIs ---- */

static bool ipv4_parse(const char *p, size_t len, uint8_t out[4])
{
	const char *end = p + len;

	for (int i = 0; i < 4; i++) {
		unsigned v = 0;
		int digits = 0;

		while (p < end && is_digit(*p) && digits < 4) {
			v = v * 10 + (unsigned)(*p++ - '0');
			digits++;
		}
		if (digits == 0 || digits > 3 || v > 255)
			return false;
		out[i] = (uint8_t)v;
		if (i < 3) {
			if (p >= end || *p != '.')
				return false;
			p++;
		}
	}
	return p == end;
}

static bool ipv6_parse(const char *p, size_t len, struct in6_addr *a)
{
	char tmp[INET6_ADDRSTRLEN + 1];

	if (len == 0 || len >= sizeof(tmp) || memchr(p, '\0', len))
		return false;
	memcpy(tmp, p, len);
	tmp[len] = '\0';
	return inet_pton(AF_INET6, tmp, a) == 1;
}

/* RFC 3261: hostname = *( domainlabel "." ) toplabel [ "." ] */
static bool hostname_valid(const char *p, size_t len)
{
	const char *end = p + len, *label;
	size_t llen;

	if (len == 0 || len > 254)
		return false;
	if (end[-1] == '.')
		end--;
	while (p < end) {
		label = p;
		while (p < end && *p != '.')
			p++;
		llen = (size_t)(p - label);
		if (llen == 0 || llen > 63 || !is_alnum(label[0]) || !is_alnum(label[llen - 1]))
			return false;
		for (size_t i = 1; i + 1 < llen; i++)
			if (!is_alnum(label[i]) && label[i] != '-')
				return false;
		if (p == end && !is_alpha(label[0])) /* toplabel starts with a letter */
			return false;
		if (p < end)
			p++;
		if (p == end && p[-1] == '.') /* ".." or a leading dot */
			return false;
	}
	return true;
}

bool sipmsg_host_valid(const char *host, size_t len)
{
	uint8_t v4[4];
	struct in6_addr v6;

	if (!host || len == 0)
		return false;
	if (host[0] == '[')
		return len > 2 && host[len - 1] == ']' && ipv6_parse(host + 1, len - 2, &v6);
	return ipv4_parse(host, len, v4) || hostname_valid(host, len);
}

struct uri_parts {
	struct sip_str scheme, user, password, host, port, params, headers;
	bool has_user, has_password, has_port;
};

static bool scheme_valid(const struct sip_str *s)
{
	if (s->len == 0 || !is_alpha(s->p[0]))
		return false;
	for (size_t i = 1; i < s->len; i++)
		if (!is_alnum(s->p[i]) && s->p[i] != '+' && s->p[i] != '-' && s->p[i] != '.')
			return false;
	return true;
}

static bool scheme_is_sip(const struct sip_str *s)
{
	return mem_ieq(s->p, s->len, "sip") || mem_ieq(s->p, s->len, "sips");
}

/* Splits the scheme off any URI; for sip/sips also user, password, host, port, params and
 * headers. Returns false when that structure is broken. */
static bool uri_split(const struct sip_str *uri, struct uri_parts *u)
{
	const char *p, *end, *colon, *at, *h;

	memset(u, 0, sizeof(*u));
	if (!uri || !uri->p || uri->len == 0)
		return false;
	p = uri->p;
	end = p + uri->len;
	colon = memchr(p, ':', uri->len);
	if (!colon)
		return false;
	u->scheme = (struct sip_str){.p = p, .len = (size_t)(colon - p)};
	if (!scheme_valid(&u->scheme))
		return false;
	if (!scheme_is_sip(&u->scheme))
		return true;
	p = colon + 1;
	/* '@' cannot appear unescaped after the host, so the first one ends the userinfo */
	at = memchr(p, '@', (size_t)(end - p));
	if (at) {
		const char *pc = memchr(p, ':', (size_t)(at - p));

		u->has_user = true;
		u->user = (struct sip_str){.p = p, .len = (size_t)((pc ? pc : at) - p)};
		if (pc) {
			u->has_password = true;
			u->password =
			    (struct sip_str){.p = pc + 1, .len = (size_t)(at - pc - 1)};
		}
		p = at + 1;
	}
	h = p;
	if (p < end && *p == '[') {
		const char *rb = memchr(p, ']', (size_t)(end - p));

		if (!rb)
			return false;
		p = rb + 1;
	} else {
		while (p < end && *p != ':' && *p != ';' && *p != '?')
			p++;
	}
	u->host = (struct sip_str){.p = h, .len = (size_t)(p - h)};
	if (p < end && *p == ':') {
		const char *ps = ++p;

		while (p < end && *p != ';' && *p != '?')
			p++;
		u->has_port = true;
		u->port = (struct sip_str){.p = ps, .len = (size_t)(p - ps)};
	}
	if (p < end && *p == ';') {
		const char *ps = p;

		while (p < end && *p != '?')
			p++;
		u->params = (struct sip_str){.p = ps, .len = (size_t)(p - ps)};
	}
	if (p < end && *p == '?') {
		u->headers = (struct sip_str){.p = p, .len = (size_t)(end - p)};
		p = end;
	}
	return p == end;
}

/* Digits only, at least one, value <= max. With clamp a larger value becomes max. */
static bool parse_uint(const struct sip_str *s, uint64_t max, bool clamp, uint64_t *out)
{
	uint64_t v = 0;

	if (!s->p || s->len == 0)
		return false;
	for (size_t i = 0; i < s->len; i++) {
		if (!is_digit(s->p[i]))
			return false;
		if (v > max)
			continue;
		v = v * 10 + (uint64_t)(s->p[i] - '0');
	}
	if (v > max) {
		if (!clamp)
			return false;
		v = max;
	}
	*out = v;
	return true;
}

static bool port_valid(const struct uri_parts *u)
{
	uint64_t port;

	if (!u->has_port)
		return true;
	return parse_uint(&u->port, 65535, false, &port) && port >= 1;
}

/* ---- canonical escaping (RFC 3261 §19.1.4 comparisons) ---- */

enum esc_set { ESC_USER, ESC_PASSWORD, ESC_PARAM };

static bool char_literal(unsigned char c, enum esc_set set)
{
	if (is_alnum((char)c) || strchr("-_.!~*'()", c))
		return c != '\0';
	switch (set) {
	case ESC_USER:
		return c && strchr("&=+$,;?/", c);
	case ESC_PASSWORD:
		return c && strchr("&=+$,", c);
	case ESC_PARAM:
		return c && strchr("[]/:&+$", c);
	}
	return false;
}

struct out {
	char *p;
	size_t cap, len;
	bool overflow;
};

static void out_put(struct out *o, const char *s, size_t n)
{
	if (o->overflow || o->cap - o->len < n) {
		o->overflow = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void out_ch(struct out *o, char c)
{
	out_put(o, &c, 1);
}

static int hex_val(char c)
{
	if (is_digit(c))
		return c - '0';
	c = to_lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Next decoded byte of an escaped range; -1 at the end, -2 on a broken escape. */
static int esc_next(const char **pp, const char *end)
{
	const char *p = *pp;
	int hi, lo;

	if (p >= end)
		return -1;
	if (*p != '%') {
		*pp = p + 1;
		return (unsigned char)*p;
	}
	if (end - p < 3 || (hi = hex_val(p[1])) < 0 || (lo = hex_val(p[2])) < 0)
		return -2;
	*pp = p + 3;
	return hi * 16 + lo;
}

static bool out_canon(struct out *o, const struct sip_str *s, enum esc_set set, bool lower)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *p = s->p, *end = s->p + s->len;
	int c;

	while ((c = esc_next(&p, end)) >= 0) {
		if (lower)
			c = (unsigned char)to_lower((char)c);
		if (char_literal((unsigned char)c, set)) {
			out_ch(o, (char)c);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};

			out_put(o, e, 3);
		}
	}
	return c == -1;
}

int sipmsg_user_escape(const struct sip_str *bytes, char *buf, size_t buflen, size_t *len_r)
{
	static const char hex[] = "0123456789ABCDEF";
	struct out o = {.p = buf, .cap = buflen};

	for (size_t i = 0; i < bytes->len; i++) {
		unsigned char c = (unsigned char)bytes->p[i];

		if (char_literal(c, ESC_USER)) {
			out_ch(&o, (char)c);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};

			out_put(&o, e, 3);
		}
	}
	if (o.overflow)
		return ENOSPC;
	*len_r = o.len;
	return 0;
}

/* Host as compared: lower case, IP addresses in their canonical text form. */
static bool out_host(struct out *o, const struct sip_str *host)
{
	char tmp[INET6_ADDRSTRLEN + 2];
	uint8_t v4[4];
	struct in6_addr v6;

	if (!sipmsg_host_valid(host->p, host->len))
		return false;
	if (host->p[0] == '[') {
		if (!ipv6_parse(host->p + 1, host->len - 2, &v6) ||
		    !inet_ntop(AF_INET6, &v6, tmp + 1, INET6_ADDRSTRLEN))
			return false;
		tmp[0] = '[';
		out_put(o, tmp, strlen(tmp));
		out_ch(o, ']');
		return true;
	}
	if (ipv4_parse(host->p, host->len, v4)) {
		/* canonical dotted quad, no leading zeros (by hand: snprintf is slow) */
		size_t n = 0;

		for (int i = 0; i < 4; i++) {
			if (i)
				tmp[n++] = '.';
			if (v4[i] >= 100)
				tmp[n++] = (char)('0' + v4[i] / 100);
			if (v4[i] >= 10)
				tmp[n++] = (char)('0' + v4[i] / 10 % 10);
			tmp[n++] = (char)('0' + v4[i] % 10);
		}
		out_put(o, tmp, n);
		return true;
	}
	for (size_t i = 0; i < host->len; i++)
		out_ch(o, to_lower(host->p[i]));
	return true;
}

static int out_finish(struct out *o)
{
	if (o->overflow || o->len >= o->cap)
		return ENOSPC;
	o->p[o->len] = '\0';
	return 0;
}

int sipmsg_uri_aor(const struct sip_str *uri, char *buf, size_t buflen, struct sip_str *user_r,
		   struct sip_str *domain_r)
{
	struct uri_parts u;
	struct out o = {.p = buf, .cap = buflen};
	size_t ulen;
	int err;

	if (!buf || buflen == 0)
		return ENOSPC;
	if (!uri_split(uri, &u) || !scheme_is_sip(&u.scheme) || !u.has_user || u.user.len == 0)
		return EINVAL;
	if (!port_valid(&u))
		return EINVAL;
	if (!out_canon(&o, &u.user, ESC_USER, false))
		return EINVAL;
	ulen = o.len;
	out_ch(&o, '@');
	if (!out_host(&o, &u.host))
		return EINVAL;
	err = out_finish(&o);
	if (err)
		return err;
	if (user_r)
		*user_r = (struct sip_str){.p = buf, .len = ulen};
	if (domain_r)
		*domain_r = (struct sip_str){.p = buf + ulen + 1, .len = o.len - ulen - 1};
	return 0;
}

/* Orders two raw URI parameters ("name[=value]") by their decoded lower-case bytes. */
static int param_cmp(const struct sip_str *a, const struct sip_str *b)
{
	const char *pa = a->p, *ea = a->p + a->len, *pb = b->p, *eb = b->p + b->len;

	for (;;) {
		int ca = esc_next(&pa, ea), cb = esc_next(&pb, eb);

		if (ca >= 0)
			ca = (unsigned char)to_lower((char)ca);
		if (cb >= 0)
			cb = (unsigned char)to_lower((char)cb);
		if (ca != cb)
			return ca < cb ? -1 : 1;
		if (ca < 0)
			return 0;
	}
}

int sipmsg_uri_key(const struct sip_str *uri, char *buf, size_t buflen, size_t *len_r)
{
	struct uri_parts u;
	struct out o = {.p = buf, .cap = buflen};
	struct sip_str prm[URI_PARAMS_MAX];
	size_t n = 0;
	int err;

	if (!buf || buflen == 0)
		return ENOSPC;
	if (!uri_split(uri, &u) || !scheme_is_sip(&u.scheme) || !port_valid(&u))
		return EINVAL;
	for (size_t i = 0; i < u.scheme.len; i++)
		out_ch(&o, to_lower(u.scheme.p[i]));
	out_ch(&o, ':');
	if (u.has_user) {
		if (!out_canon(&o, &u.user, ESC_USER, false))
			return EINVAL;
		if (u.has_password) {
			out_ch(&o, ':');
			if (!out_canon(&o, &u.password, ESC_PASSWORD, false))
				return EINVAL;
		}
		out_ch(&o, '@');
	}
	if (!out_host(&o, &u.host))
		return EINVAL;
	if (u.has_port) {
		out_ch(&o, ':');
		out_put(&o, u.port.p, u.port.len);
	}
	/* split the parameters, sort them (insertion sort: there are few) */
	for (const char *p = u.params.p, *end = p ? p + u.params.len : NULL; p && p < end;) {
		const char *s = ++p; /* skip ';' */

		while (p < end && *p != ';')
			p++;
		if (p == s)
			continue; /* empty ";;" */
		if (n == URI_PARAMS_MAX)
			return EINVAL;
		struct sip_str cur = {.p = s, .len = (size_t)(p - s)};
		size_t j = n++;

		while (j > 0 && param_cmp(&prm[j - 1], &cur) > 0) {
			prm[j] = prm[j - 1];
			j--;
		}
		prm[j] = cur;
	}
	for (size_t i = 0; i < n; i++) {
		const char *eq = memchr(prm[i].p, '=', prm[i].len);
		struct sip_str name = {.p = prm[i].p,
				       .len = eq ? (size_t)(eq - prm[i].p) : prm[i].len};

		out_ch(&o, ';');
		if (!out_canon(&o, &name, ESC_PARAM, true))
			return EINVAL;
		if (eq) {
			struct sip_str val = {.p = eq + 1, .len = prm[i].len - name.len - 1};

			out_ch(&o, '=');
			if (!out_canon(&o, &val, ESC_PARAM, true))
				return EINVAL;
		}
	}
	err = out_finish(&o);
	if (err)
		return err;
	if (len_r)
		*len_r = o.len;
	return 0;
}

/* ---- the message ---- */

/* Splits a From/To/Contact value into its URI (without <>) and the header parameters after
 * it (starting at ';' or empty). A bare addr-spec ends at the first ';' (§20.10); it may not
 * hold '?' or ',' (they need <>). */
static bool nameaddr_split(const struct sip_str *v, struct sip_str *uri, struct sip_str *params)
{
	const char *p = v->p, *end = v->p + v->len, *s, *lt = NULL, *gt;
	bool quoted = false;

	for (s = p; s < end; s++) {
		if (quoted) {
			if (*s == '\\' && s + 1 < end)
				s++;
			else if (*s == '"')
				quoted = false;
			continue;
		}
		if (*s == '"') {
			quoted = true;
		} else if (*s == '<') {
			lt = s;
			break;
		}
	}
	if (lt) {
		gt = memchr(lt + 1, '>', (size_t)(end - lt - 1));
		if (!gt)
			return false;
		*uri = str_trim(lt + 1, gt);
		s = gt + 1;
	} else {
		if (quoted || memchr(p, '"', v->len))
			return false; /* a display name needs <> */
		for (s = p; s < end && *s != ';' && !is_lws(*s); s++)
			if (*s == '?' || *s == ',')
				return false;
		*uri = (struct sip_str){.p = p, .len = (size_t)(s - p)};
	}
	while (s < end && is_lws(*s))
		s++;
	if (s < end && *s != ';')
		return false;
	*params = (struct sip_str){.p = s, .len = (size_t)(end - s)};
	return uri->len > 0;
}

/* Header lines kept from libosip2 at most (see osip_view). */
#define SCAN_SKIP_MAX 8

struct scan {
	struct sip_str first[SIPMSG_HDR_COUNT]; /* first value of each header we read */
	unsigned count[SIPMSG_HDR_COUNT];
	bool bad_contact;
	bool multipart; /* a Content-Type multipart/...: see osip_view() */
	/* Whole lines (with their line end) libosip2 need not see, in message order */
	struct sip_str skip[SCAN_SKIP_MAX];
	size_t n_skip;
};

/* Headers libosip2 keeps as opaque name/value pairs (it has no parser for them, and such a
 * line cannot fail its parse) and that we check ourselves where they matter. */
static bool hdr_opaque_to_osip(enum sipmsg_hdr id)
{
	return id == SIPMSG_HDR_MAXFWD || id == SIPMSG_HDR_EXPIRES ||
	       id == SIPMSG_HDR_USER_AGENT || id == SIPMSG_HDR_SUPPORTED ||
	       id == SIPMSG_HDR_REQUIRE || id == SIPMSG_HDR_PATH;
}

/* A line libosip2 may be spared: one physical line "Name:value" (name at the line start,
 * the colon right after it, no CR or LF inside: no fold, no bare CR), so whatever
 * libosip2 would make of it is just an opaque header. */
static bool line_plain(const struct sip_str *line, const struct sip_str *name)
{
	return name->p == line->p && name->len < line->len && name->p[name->len] == ':' &&
	       !memchr(line->p, '\r', line->len) && !memchr(line->p, '\n', line->len);
}

static int contacts_push(struct sipmsg *m, size_t *cap, const struct sip_str *uri,
			 const struct sip_str *params)
{
	if (m->n_contacts == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		struct sipmsg_contact *nc = realloc(m->contacts, ncap * sizeof(*nc));

		if (!nc)
			return ENOMEM;
		m->contacts = nc;
		*cap = ncap;
	}
	m->contacts[m->n_contacts++] = (struct sipmsg_contact){.uri = *uri, .params = *params};
	return 0;
}

/* A Contact expires parameter is delta-seconds (huge values are clamped later). */
static bool contact_expires_ok(const struct sip_str *params)
{
	struct sip_str v;
	uint64_t n;

	return !sipmsg_param(params, "expires", &v) || parse_uint(&v, UINT32_MAX, true, &n);
}

/* The one pass over the raw headers. */
static int scan_headers(struct sipmsg *m, struct scan *sc)
{
	struct sip_str name, value, line, e, uri, params;
	size_t pos = 0, lpos, cap = 0;
	enum sipmsg_hdr id;
	int err;

	while (sipmsg_raw_header_next(m->raw, m->raw_len, &pos, &name, &value, &line)) {
		if (name.len == 0)
			continue;
		id = hdr_identify(&name);
		if (id == SIPMSG_HDR_OTHER)
			continue;
		if (hdr_opaque_to_osip(id) && sc->n_skip < SCAN_SKIP_MAX &&
		    line_plain(&line, &name))
			sc->skip[sc->n_skip++] = (struct sip_str){
			    .p = line.p, .len = (size_t)(m->raw + pos - line.p)};
		if (m->n_index < SIPMSG_INDEX_MAX) {
			m->index[m->n_index].id = (uint8_t)id;
			m->index[m->n_index++].value = value;
		} else {
			m->index_full = true;
		}
		if (sc->count[id]++ == 0)
			sc->first[id] = value;
		if (id == SIPMSG_HDR_CTYPE && value.len >= 9 &&
		    mem_ieq(value.p, 9, "multipart"))
			sc->multipart = true;
		if (id != SIPMSG_HDR_CONTACT)
			continue;
		lpos = 0;
		while (sipmsg_list_next(&value, &lpos, &e)) {
			if (e.len == 1 && e.p[0] == '*') {
				m->contact_star = true;
				continue;
			}
			if (!nameaddr_split(&e, &uri, &params) ||
			    !contact_expires_ok(&params)) {
				sc->bad_contact = true;
				continue;
			}
			err = contacts_push(m, &cap, &uri, &params);
			if (err)
				return err;
		}
	}
	return 0;
}

struct reqline {
	struct sip_str method, uri, version;
};

/* "Method SP Request-URI SP SIP-Version": single spaces, as RFC 3261 §7.1 writes it. */
static bool reqline_split(const char *buf, size_t len, struct reqline *rl)
{
	const char *next, *end = buf + len, *eol = line_end(buf, end, &next), *sp1, *sp2;

	sp1 = memchr(buf, ' ', (size_t)(eol - buf));
	if (!sp1 || sp1 == buf)
		return false;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2 || sp2 == sp1 + 1)
		return false;
	rl->method = (struct sip_str){.p = buf, .len = (size_t)(sp1 - buf)};
	rl->uri = (struct sip_str){.p = sp1 + 1, .len = (size_t)(sp2 - sp1 - 1)};
	rl->version = (struct sip_str){.p = sp2 + 1, .len = (size_t)(eol - sp2 - 1)};
	return true;
}

static bool version_ok(const struct sip_str *v)
{
	return v->len == 7 && memcmp(v->p, "SIP/2.0", 7) == 0;
}

/* sent-by of a plain Via value: "host" or "host:port", "[v6]" or "[v6]:port". */
static bool peek_sent_by(struct sip_str sb, struct sipmsg_tsx_id *id)
{
	const char *end = sb.p + sb.len, *colon;
	struct sip_str ps;
	uint64_t port = 0;

	if (sb.len && sb.p[0] == '[') {
		const char *rb = memchr(sb.p, ']', sb.len);

		if (!rb || rb == sb.p + 1)
			return false;
		id->host = (struct sip_str){.p = sb.p + 1, .len = (size_t)(rb - sb.p - 1)};
		colon = rb + 1 < end ? rb + 1 : NULL;
		if (colon && *colon != ':')
			return false;
	} else {
		colon = memchr(sb.p, ':', sb.len);
		id->host = (struct sip_str){.p = sb.p, .len = colon ? (size_t)(colon - sb.p) : sb.len};
		if (id->host.len == 0)
			return false;
	}
	if (colon) {
		ps = (struct sip_str){.p = colon + 1, .len = (size_t)(end - colon - 1)};
		if (!parse_uint(&ps, 65535, false, &port) || port == 0)
			return false;
	}
	id->port = (uint16_t)port;
	return true;
}

bool sipmsg_peek_tsx_id(const char *buf, size_t len, struct sipmsg_tsx_id *id)
{
	struct sip_str name, value, proto, sent_by, prm;
	struct reqline rl;
	const char *p, *end, *semi;
	size_t pos = 0;

	memset(id, 0, sizeof(*id));
	if (!buf || len < 16 || !reqline_split(buf, len, &rl) || !version_ok(&rl.version) ||
	    mem_ieq(rl.method.p, rl.method.len, "ACK"))
		return false;
	id->method = rl.method;
	do {
		if (!sipmsg_raw_header_next(buf, len, &pos, &name, &value, NULL))
			return false;
	} while (!mem_ieq(name.p, name.len, "Via") && !mem_ieq(name.p, name.len, "v"));
	/* The first value of the first Via line, in the plain shape only. */
	end = value.p + value.len;
	for (p = value.p; p < end && *p != ','; p++)
		if (*p == '"' || *p == '\r' || *p == '\n' || *p == '(')
			return false;
	end = p;
	p = memchr(value.p, ' ', (size_t)(end - value.p));
	if (!p)
		return false;
	proto = (struct sip_str){.p = value.p, .len = (size_t)(p - value.p)};
	if (proto.len < 9 || memcmp(proto.p, "SIP/2.0/", 8) != 0)
		return false;
	while (p < end && *p == ' ')
		p++;
	semi = memchr(p, ';', (size_t)(end - p));
	sent_by = (struct sip_str){.p = p, .len = (size_t)((semi ? semi : end) - p)};
	if (memchr(sent_by.p, ' ', sent_by.len) || memchr(sent_by.p, '\t', sent_by.len) ||
	    !peek_sent_by(sent_by, id))
		return false;
	while (semi) {
		const char *next = memchr(semi + 1, ';', (size_t)(end - semi - 1));

		prm = (struct sip_str){.p = semi + 1, .len = (size_t)((next ? next : end) - semi - 1)};
		if (memchr(prm.p, ' ', prm.len) || memchr(prm.p, '\t', prm.len))
			return false;
		if (prm.len > 7 && mem_ieq(prm.p, 7, "branch=")) {
			if (id->branch.p)
				return false; /* twice: leave it to the full parse */
			id->branch = (struct sip_str){.p = prm.p + 7, .len = prm.len - 7};
		}
		semi = next;
	}
	return id->branch.len > 7 && memcmp(id->branch.p, "z9hG4bK", 7) == 0;
}

/* A response's raw status code: exactly three digits 100-699 (libosip2 wraps 4294967301 to
 * 5). */
static bool status_line_ok(const char *buf, size_t len)
{
	const char *next, *end = buf + len, *eol = line_end(buf, end, &next);
	const char *sp = memchr(buf, ' ', (size_t)(eol - buf));

	if (!sp || eol - sp < 4)
		return false;
	if (!is_digit(sp[1]) || !is_digit(sp[2]) || !is_digit(sp[3]) || sp[1] < '1' ||
	    sp[1] > '6')
		return false;
	return sp + 4 == eol || sp[4] == ' ';
}

/* Raw NUL is legal in headers only as a quoted-pair inside a quoted string (intmeth.dat),
 * but libosip2 reads its copy as a C string: replace those NULs in copy. Returns false when
 * a NUL stands anywhere else in the headers. */
static bool nul_sanitize(char *copy, size_t len)
{
	char *end = copy + len, *p;
	bool quoted = false;

	for (p = copy; p < end; p++) {
		if (*p == '\n' && p + 1 < end &&
		    (p[1] == '\n' || (p[1] == '\r' && p + 2 < end && p[2] == '\n')))
			return true; /* end of headers: the body is handled by length */
		if (*p == '\n' && p + 1 < end && !is_ws(p[1]))
			quoted = false; /* a quoted string does not run past its header */
		if (quoted && *p == '\\' && p + 1 < end) {
			if (p[1] == '\0')
				p[1] = '?';
			p++;
			continue;
		}
		if (*p == '"')
			quoted = !quoted;
		else if (*p == '\0')
			return false;
	}
	return true;
}

/* The raw bytes without the lines of sc->skip, into buf (raw_len + 1 bytes). Returns the
 * length. */
static size_t osip_view_skip(const struct sipmsg *m, const struct scan *sc, char *buf)
{
	const char *from = m->raw, *end = m->raw + m->raw_len;
	size_t len = 0;

	for (size_t i = 0; i < sc->n_skip; i++) {
		memcpy(buf + len, from, (size_t)(sc->skip[i].p - from));
		len += (size_t)(sc->skip[i].p - from);
		from = sc->skip[i].p + sc->skip[i].len;
	}
	memcpy(buf + len, from, (size_t)(end - from));
	len += (size_t)(end - from);
	buf[len] = '\0';
	return len;
}

/* The bytes libosip2 gets, *viewp and *lenp. Usually our raw copy without the plain lines
 * of headers it would only store (sc->skip: a third of a REGISTER's headers, each a few
 * allocations and scans in libosip2), written into scratch (scratch_len bytes) when it
 * fits, else into *copyp. A private copy of everything (*copyp, the caller frees it) when
 * the bytes hold NULs (see nul_sanitize) or a multipart body: libosip2 5.3.0 leaks memory
 * on some malformed multipart bodies, and a registrar never reads bodies, so libosip2 is
 * told the type is "xultipart/..." and keeps the body whole. Returns 0, EBADMSG or
 * ENOMEM. */
static int osip_view(const struct sipmsg *m, const struct scan *sc, char *scratch,
		     size_t scratch_len, const char **viewp, size_t *lenp, char **copyp)
{
	struct sip_str name, value;
	size_t pos = 0;
	char *copy;

	*copyp = NULL;
	*viewp = m->raw;
	*lenp = m->raw_len;
	if (!sc->multipart && !memchr(m->raw, '\0', m->raw_len)) {
		if (sc->n_skip == 0)
			return 0;
		if (m->raw_len >= scratch_len) {
			scratch = *copyp = malloc(m->raw_len + 1);
			if (!scratch)
				return ENOMEM;
		}
		*lenp = osip_view_skip(m, sc, scratch);
		*viewp = scratch;
		return 0;
	}
	copy = malloc(m->raw_len + 1);
	if (!copy)
		return ENOMEM;
	memcpy(copy, m->raw, m->raw_len + 1);
	if (!nul_sanitize(copy, m->raw_len)) {
		free(copy);
		return EBADMSG;
	}
	while (sc->multipart &&
	       sipmsg_raw_header_next(m->raw, m->raw_len, &pos, &name, &value, NULL))
		if (hdr_identify(&name) == SIPMSG_HDR_CTYPE && value.len >= 9 &&
		    mem_ieq(value.p, 9, "multipart"))
			copy[value.p - m->raw] = 'x';
	*copyp = copy;
	*viewp = copy;
	return 0;
}

/* libosip2's parse of bytes into m->osip, built in m's arena (when it has one), which
 * sipmsg_free() releases whole. Returns 0, EBADMSG or ENOMEM. */
static int osip_parse(struct sipmsg *m, const char *bytes, size_t len)
{
	int err = 0;

	osip_arena_enter(m->arena);
	if (osip_message_init(&m->osip) != 0)
		err = ENOMEM;
	else if (osip_message_parse(m->osip, bytes, len) != 0)
		err = EBADMSG;
	osip_arena_leave();
	return err;
}

static int parse_fail(struct sipmsg **mp, struct sipmsg *m, int status, const char *reason,
		      int *status_r, const char **reason_r)
{
	if (status_r)
		*status_r = status;
	if (reason_r)
		*reason_r = reason;
	/* without a Via there is nobody to answer */
	if (m && (!m->osip || !m->osip->vias.nb_elt)) {
		sipmsg_free(&m);
	}
	*mp = m;
	return EBADMSG;
}

/* After libosip2 refused the bytes: the best answer the request line allows. */
static void classify_unparsed(const char *buf, size_t len, int *status, const char **reason)
{
	struct reqline rl;
	struct sip_str scheme;
	const char *colon;

	*status = STATUS_BAD;
	*reason = "Bad Request";
	if (!reqline_split(buf, len, &rl))
		return;
	if (rl.version.len > 4 && memcmp(rl.version.p, "SIP/", 4) == 0 &&
	    !version_ok(&rl.version) && !memchr(rl.version.p, ' ', rl.version.len)) {
		*status = 505;
		*reason = "Version Not Supported";
		return;
	}
	colon = memchr(rl.uri.p, ':', rl.uri.len);
	if (!colon || !version_ok(&rl.version))
		return;
	scheme = (struct sip_str){.p = rl.uri.p, .len = (size_t)(colon - rl.uri.p)};
	if (scheme_valid(&scheme) && !scheme_is_sip(&scheme)) {
		*status = 416;
		*reason = "Unsupported URI Scheme";
	}
}

/* Top Via from libosip2 (it parsed the LWS-heavy grammar already). */
static bool fill_via(struct sipmsg *m)
{
	osip_via_t *via = NULL;
	osip_generic_param_t *prm = NULL;
	uint64_t port;
	struct in6_addr a6;
	size_t hlen;

	if (osip_message_get_via(m->osip, 0, &via) < 0 || !via || !via->host)
		return false;
	hlen = strlen(via->host);
	m->via_host = (struct sip_str){.p = via->host, .len = hlen};
	if (via->port) {
		struct sip_str ps = sip_str_c(via->port);

		if (!parse_uint(&ps, 65535, false, &port) || port == 0)
			return false;
		m->via_port = (uint16_t)port;
	}
	if (osip_via_param_get_byname(via, "branch", &prm) == 0 && prm && prm->gvalue)
		m->branch = sip_str_c(prm->gvalue);
	m->branch_rfc3261 = m->branch.len > 7 && memcmp(m->branch.p, "z9hG4bK", 7) == 0;
	prm = NULL;
	m->via_rport = osip_via_param_get_byname(via, "rport", &prm) == 0 && prm;
	if (memchr(via->host, ':', hlen))
		return ipv6_parse(via->host, hlen, &a6);
	/* liberal here: answers go to the source address, and real stacks put '_' in names */
	for (size_t i = 0; i < hlen; i++)
		if (!is_alnum(via->host[i]) && !strchr("-._", via->host[i]))
			return false;
	return hlen > 0;
}

static bool fill_tag(const struct sip_str *value, struct sip_str *uri, struct sip_str *tag)
{
	struct sip_str params;

	if (!nameaddr_split(value, uri, &params))
		return false;
	if (sipmsg_param(&params, "tag", tag) && tag->len == 0)
		return false;
	return true;
}

static bool cseq_check(struct sipmsg *m, const struct sip_str *v)
{
	const char *p = v->p, *end = v->p + v->len, *ms;
	struct sip_str num, method;
	uint64_t n;

	while (p < end && is_digit(*p))
		p++;
	num = (struct sip_str){.p = v->p, .len = (size_t)(p - v->p)};
	if (!parse_uint(&num, UINT32_MAX, false, &n) || p == end || !is_lws(*p))
		return false;
	while (p < end && is_lws(*p))
		p++;
	ms = p;
	method = (struct sip_str){.p = ms, .len = (size_t)(end - ms)};
	m->cseq = (uint32_t)n;
	return sip_str_eq(&method, &m->method_name);
}

/* What identifies the message, read before any check so that even a refused request gets
 * an answer with the right tags and Vias. Returns false when one of them is malformed. */
static bool fill_ids(struct sipmsg *m, struct scan *sc, const char **reason)
{
	struct sip_str *f = sc->first, from_uri;
	bool ok = true;

	if (sc->count[SIPMSG_HDR_CALL_ID])
		m->call_id = f[SIPMSG_HDR_CALL_ID];
	if (sc->count[SIPMSG_HDR_VIA] && !fill_via(m)) {
		*reason = "Bad Via";
		ok = false;
	}
	if (sc->count[SIPMSG_HDR_TO] && !fill_tag(&f[SIPMSG_HDR_TO], &m->to_uri, &m->to_tag)) {
		*reason = "Bad To";
		ok = false;
	}
	if (sc->count[SIPMSG_HDR_FROM] &&
	    !fill_tag(&f[SIPMSG_HDR_FROM], &from_uri, &m->from_tag)) {
		*reason = "Bad From";
		ok = false;
	}
	return ok;
}

/* Every check of a request that libosip2 accepted; returns the status (0 = fine). */
static int request_checks(struct sipmsg *m, struct scan *sc, const struct reqline *rl,
			  const char **reason)
{
	struct sip_str *f = sc->first;
	struct uri_parts ru, tu;
	uint64_t n;
	bool ids_ok = fill_ids(m, sc, reason);

	if (!version_ok(&rl->version)) {
		*reason = "Version Not Supported";
		return 505;
	}
	if (!sc->count[SIPMSG_HDR_TO] || !sc->count[SIPMSG_HDR_FROM] ||
	    !sc->count[SIPMSG_HDR_CALL_ID] || !sc->count[SIPMSG_HDR_CSEQ] ||
	    !sc->count[SIPMSG_HDR_VIA] || !m->osip->to || !m->osip->from || !m->osip->call_id ||
	    !m->osip->cseq || !m->osip->vias.nb_elt || !m->call_id.len) {
		*reason = "Missing Mandatory Header";
		return STATUS_BAD;
	}
	if (!ids_ok)
		return STATUS_BAD;
	if (!uri_split(&rl->uri, &ru)) {
		*reason = "Bad Request-URI";
		return STATUS_BAD;
	}
	if (!scheme_is_sip(&ru.scheme)) {
		*reason = "Unsupported URI Scheme";
		return 416;
	}
	*reason = "Bad Request-URI";
	if (!sipmsg_host_valid(ru.host.p, ru.host.len) || !port_valid(&ru) || ru.headers.len)
		return STATUS_BAD;
	*reason = "Bad CSeq";
	if (!cseq_check(m, &f[SIPMSG_HDR_CSEQ]))
		return STATUS_BAD;
	*reason = "Bad Content-Length";
	if (sc->count[SIPMSG_HDR_CLEN] &&
	    !parse_uint(&f[SIPMSG_HDR_CLEN], UINT32_MAX, true, &n))
		return STATUS_BAD;
	*reason = "Bad Expires";
	if (sc->count[SIPMSG_HDR_EXPIRES]) {
		if (!parse_uint(&f[SIPMSG_HDR_EXPIRES], UINT32_MAX, true, &n))
			return STATUS_BAD;
		m->expires_hdr = (int64_t)n;
	}
	*reason = "Bad Max-Forwards";
	if (sc->count[SIPMSG_HDR_MAXFWD] && !parse_uint(&f[SIPMSG_HDR_MAXFWD], 255, false, &n))
		return STATUS_BAD;
	*reason = "Bad Contact";
	if (sc->bad_contact)
		return STATUS_BAD;
	if (m->method == SIP_M_REGISTER) {
		*reason = "Bad To URI";
		if (!uri_split(&m->to_uri, &tu) || !scheme_is_sip(&tu.scheme))
			return STATUS_BAD;
	}
	return 0;
}

int sipmsg_parse(struct sipmsg **mp, const char *buf, size_t len, int *status_r,
		 const char **reason_r)
{
	struct sipmsg *m = NULL;
	struct osip_arena *arena;
	struct scan sc;
	struct reqline rl;
	char *osip_copy = NULL, scratch[2048];
	const char *view;
	size_t view_len;
	const char *reason = "Bad Request";
	int status, err;

	if (status_r)
		*status_r = STATUS_BAD;
	if (reason_r)
		*reason_r = reason;
	if (!mp)
		return EINVAL;
	*mp = NULL;
	if (!buf || len == 0)
		return EBADMSG;
	pthread_once(&parser_once, parser_setup);

	/* One block for the struct and the owned copy of the bytes, in the arena libosip2
	 * will parse into when it fits there. */
	if (len > SIZE_MAX - sizeof(*m) - 1)
		return EBADMSG;
	arena = osip_arena_get();
	m = osip_arena_alloc(arena, sizeof(*m) + len + 1);
	if (!m)
		m = malloc(sizeof(*m) + len + 1);
	if (!m) {
		osip_arena_put(&arena);
		return ENOMEM;
	}
	memset(m, 0, sizeof(*m));
	m->arena = arena;
	m->raw = (char *)(m + 1);
	memcpy(m->raw, buf, len);
	m->raw[len] = '\0'; /* not relied upon: a guard for libosip2 only */
	m->raw_len = len;
	m->expires_hdr = -1;
	m->is_response = len >= 4 && memcmp(buf, "SIP/", 4) == 0;

	if (m->is_response && !status_line_ok(m->raw, len))
		return parse_fail(mp, m, STATUS_BAD, reason, status_r, reason_r);
	if (!m->is_response && !reqline_split(m->raw, len, &rl)) {
		sipmsg_free(&m);
		classify_unparsed(buf, len, &status, &reason);
		return parse_fail(mp, NULL, status, reason, status_r, reason_r);
	}
	/* the raw scan needs nothing from libosip2: run it first to know what to hand over */
	memset(&sc, 0, sizeof(sc));
	err = scan_headers(m, &sc);
	if (err == 0)
		err = osip_view(m, &sc, scratch, sizeof(scratch), &view, &view_len, &osip_copy);
	if (err) {
		sipmsg_free(&m);
		if (err != EBADMSG)
			return err;
		return parse_fail(mp, NULL, STATUS_BAD, reason, status_r, reason_r);
	}
	err = osip_parse(m, view, view_len);
	free(osip_copy);
	if (err == ENOMEM) {
		sipmsg_free(&m);
		return err;
	}
	if (err != 0) {
		sipmsg_free(&m);
		classify_unparsed(buf, len, &status, &reason);
		return parse_fail(mp, NULL, status, reason, status_r, reason_r);
	}
	if (m->is_response) {
		/* the server drops responses; give it what identifies them */
		struct sip_str cs = sc.first[SIPMSG_HDR_CSEQ];
		const char *p = cs.p, *e = p ? p + cs.len : NULL;
		uint64_t n;

		while (p < e && is_digit(*p))
			p++;
		cs.len = (size_t)(p - cs.p);
		if (!sc.count[SIPMSG_HDR_CSEQ] || !parse_uint(&cs, UINT32_MAX, false, &n)) {
			sipmsg_free(&m);
			return parse_fail(mp, NULL, STATUS_BAD, reason, status_r, reason_r);
		}
		m->cseq = (uint32_t)n;
		fill_ids(m, &sc, &reason);
		*mp = m;
		return 0;
	}
	m->method_name = rl.method;
	m->method = sipmsg_method_from(rl.method.p, rl.method.len);
	status = request_checks(m, &sc, &rl, &reason);
	if (status)
		return parse_fail(mp, m, status, reason, status_r, reason_r);
	*mp = m;
	return 0;
}

void sipmsg_free(struct sipmsg **mp)
{
	struct osip_arena *arena;
	struct sipmsg *m;

	if (!mp || !*mp)
		return;
	m = *mp;
	arena = m->arena;
	/* a parse that stayed in its arena goes with it; otherwise object by object */
	if (m->osip && !osip_arena_whole(arena))
		osip_message_free(m->osip);
	free(m->contacts);
	if (!osip_arena_holds(arena, m))
		free(m);
	osip_arena_put(&arena); /* m may live in it: last */
	*mp = NULL;
}
