/* Hosts and SIP URIs: the split, the checks the parse applies, and the canonical forms that
 * identify an AOR or a binding whatever escaping or case a client used. */
#include "sip/uri.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "sip/scan.h"
#include "util/netaddr.h"

#define URI_PARAMS_MAX 32

static bool ipv4_parse(const char *p, size_t len, uint8_t out[4])
{
	const char *end = p + len;

	for (int i = 0; i < 4; i++) {
		unsigned v = 0;
		int digits = 0;

		while (p < end && text_is_digit(*p) && digits < 4) {
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

bool sip_ipv6_parse(const char *p, size_t len, struct in6_addr *a)
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
		if (llen == 0 || llen > 63 || !text_is_alnum(label[0]) || !text_is_alnum(label[llen - 1]))
			return false;
		for (size_t i = 1; i + 1 < llen; i++)
			if (!text_is_alnum(label[i]) && label[i] != '-')
				return false;
		if (p == end && !text_is_alpha(label[0])) /* toplabel starts with a letter */
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
		return len > 2 && host[len - 1] == ']' && sip_ipv6_parse(host + 1, len - 2, &v6);
	return ipv4_parse(host, len, v4) || hostname_valid(host, len);
}


bool sip_scheme_valid(const struct sip_str *s)
{
	if (s->len == 0 || !text_is_alpha(s->p[0]))
		return false;
	for (size_t i = 1; i < s->len; i++)
		if (!text_is_alnum(s->p[i]) && s->p[i] != '+' && s->p[i] != '-' && s->p[i] != '.')
			return false;
	return true;
}

bool sip_scheme_is_sip(const struct sip_str *s)
{
	return text_mem_ieq(s->p, s->len, "sip") || text_mem_ieq(s->p, s->len, "sips");
}

bool sip_uri_split(const struct sip_str *uri, struct sip_uri_parts *u)
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
	if (!sip_scheme_valid(&u->scheme))
		return false;
	if (!sip_scheme_is_sip(&u->scheme))
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

bool sip_uri_port_valid(const struct sip_uri_parts *u)
{
	uint64_t port;

	if (!u->has_port)
		return true;
	return sip_parse_uint(&u->port, 65535, false, &port) && port >= 1;
}

/* ---- canonical escaping (RFC 3261 §19.1.4 comparisons) ---- */

enum esc_set { ESC_USER, ESC_PASSWORD, ESC_PARAM };

static bool char_literal(unsigned char c, enum esc_set set)
{
	if (text_is_alnum((char)c) || strchr("-_.!~*'()", c))
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
	if (text_is_digit(c))
		return c - '0';
	c = text_to_lower(c);
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
			c = (unsigned char)text_to_lower((char)c);
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
		if (!sip_ipv6_parse(host->p + 1, host->len - 2, &v6) ||
		    !inet_ntop(AF_INET6, &v6, tmp + 1, INET6_ADDRSTRLEN))
			return false;
		tmp[0] = '[';
		out_put(o, tmp, strlen(tmp));
		out_ch(o, ']');
		return true;
	}
	if (ipv4_parse(host->p, host->len, v4)) {
		/* canonical dotted quad, no leading zeros */
		out_put(o, tmp, netaddr_ipv4_text(v4, tmp));
		return true;
	}
	for (size_t i = 0; i < host->len; i++)
		out_ch(o, text_to_lower(host->p[i]));
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
	struct sip_uri_parts u;
	struct out o = {.p = buf, .cap = buflen};
	size_t ulen;
	int err;

	if (!buf || buflen == 0)
		return ENOSPC;
	if (!sip_uri_split(uri, &u) || !sip_scheme_is_sip(&u.scheme) || !u.has_user || u.user.len == 0)
		return EINVAL;
	if (!sip_uri_port_valid(&u))
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
			ca = (unsigned char)text_to_lower((char)ca);
		if (cb >= 0)
			cb = (unsigned char)text_to_lower((char)cb);
		if (ca != cb)
			return ca < cb ? -1 : 1;
		if (ca < 0)
			return 0;
	}
}

int sipmsg_uri_key(const struct sip_str *uri, char *buf, size_t buflen, size_t *len_r)
{
	struct sip_uri_parts u;
	struct out o = {.p = buf, .cap = buflen};
	struct sip_str prm[URI_PARAMS_MAX];
	size_t n = 0;
	int err;

	if (!buf || buflen == 0)
		return ENOSPC;
	if (!sip_uri_split(uri, &u) || !sip_scheme_is_sip(&u.scheme) || !sip_uri_port_valid(&u))
		return EINVAL;
	for (size_t i = 0; i < u.scheme.len; i++)
		out_ch(&o, text_to_lower(u.scheme.p[i]));
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

