/* Digest credentials: the Authorization values of a request, the one for our realm picked
 * and checked field by field (RFC 7616 §3.4), and its uri matched to the Request-URI. */
#include "registrar/creds.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "sip/uri.h"
#include "util/text.h"

#define AUTHZ_MAX 8    /* Authorization headers looked at */
#define QVAL_MAX  1024 /* longest quoted value unescaped */

static bool str_ieq(const struct sip_str *a, const char *b, size_t blen)
{
	return a->len == blen && (blen == 0 || strncasecmp(a->p, b, blen) == 0);
}

/* RFC 3261 token characters. */
static bool is_token(char c)
{
	return isalnum((unsigned char)c) || (c && strchr("-.!%*_+`'~", c));
}

bool auth_unquote(const struct sip_str *in, char *buf, size_t cap, struct sip_str *out)
{
	size_t n = 0;

	if (!in->len || !memchr(in->p, '\\', in->len)) {
		*out = *in;
		return true;
	}
	for (size_t i = 0; i < in->len; i++) {
		if (in->p[i] == '\\' && i + 1 < in->len)
			i++;
		if (n == cap)
			return false;
		buf[n++] = in->p[i];
	}
	*out = (struct sip_str){.p = buf, .len = n};
	return true;
}

/* One parameter of a digest-response: name and value (quotes removed, escapes kept). */
struct dparam {
	struct sip_str name, value;
	bool quoted;
};

/* Next "name = value" of the comma list starting at *pos. Returns 1 with a parameter, 0 at
 * the end, -1 on a syntax error. */
static int dparam_next(const struct sip_str *v, size_t *pos, struct dparam *dp)
{
	const char *s = v->p, *e = v->p + v->len, *p = s + *pos;

	/* Empty list elements (",,") are allowed by the #rule. */
	while (p < e && (text_is_lws(*p) || *p == ','))
		p++;
	if (p == e)
		return 0;
	dp->name.p = p;
	while (p < e && is_token(*p))
		p++;
	dp->name.len = (size_t)(p - dp->name.p);
	if (dp->name.len == 0)
		return -1;
	while (p < e && text_is_lws(*p))
		p++;
	if (p == e || *p != '=')
		return -1;
	p++;
	while (p < e && text_is_lws(*p))
		p++;
	if (p == e)
		return -1;
	if (*p == '"') {
		dp->quoted = true;
		dp->value.p = ++p;
		while (p < e && *p != '"') {
			if (*p == '\\') {
				if (p + 1 == e)
					return -1;
				p++;
			}
			p++;
		}
		if (p == e)
			return -1; /* unterminated */
		dp->value.len = (size_t)(p - dp->value.p);
		p++;
	} else {
		/* Tokens, leniently: some clients leave a uri or cnonce unquoted. */
		dp->quoted = false;
		dp->value.p = p;
		while (p < e && *p != ',' && *p != '"' && !text_is_lws(*p))
			p++;
		dp->value.len = (size_t)(p - dp->value.p);
		if (dp->value.len == 0)
			return -1;
	}
	while (p < e && text_is_lws(*p))
		p++;
	if (p < e && *p != ',')
		return -1;
	*pos = (size_t)(p - s);
	return 1;
}

static bool hex_parse_u32(const struct sip_str *s, uint32_t *v)
{
	uint32_t x = 0;

	if (s->len != 8)
		return false;
	for (size_t i = 0; i < 8; i++) {
		char c = s->p[i];

		if (!isxdigit((unsigned char)c))
			return false;
		x = x << 4 | (uint32_t)(isdigit((unsigned char)c)
					    ? c - '0'
					    : (tolower((unsigned char)c) - 'a' + 10));
	}
	*v = x;
	return true;
}

bool auth_all_hex(const struct sip_str *s)
{
	for (size_t i = 0; i < s->len; i++)
		if (!isxdigit((unsigned char)s->p[i]))
			return false;
	return true;
}

/* Set a string field once; a repeated parameter is malformed. */
static bool field_set(struct sip_str *f, const struct sip_str *val)
{
	if (f->p)
		return false;
	*f = *val;
	return true;
}

int auth_creds_parse_value(const struct sip_str *value, struct auth_creds *c)
{
	const char *p = value->p, *e = value->p + value->len;
	struct sip_str algorithm = SIP_STR_NULL;
	struct dparam dp;
	size_t pos;
	int rv;

	memset(c, 0, sizeof(*c));
	c->alg = DIGEST_MD5;
	while (p < e && text_is_lws(*p))
		p++;
	if ((size_t)(e - p) < 7 || strncasecmp(p, "Digest", 6) != 0 || !text_is_lws(p[6]))
		return EBADMSG;
	pos = (size_t)(p + 6 - value->p);
	while ((rv = dparam_next(value, &pos, &dp)) == 1) {
		struct sip_str *f = NULL;

#define NAME_IS(lit) str_ieq(&dp.name, lit, sizeof(lit) - 1)
		if (NAME_IS("username"))
			f = &c->username;
		else if (NAME_IS("realm"))
			f = &c->realm;
		else if (NAME_IS("nonce"))
			f = &c->nonce;
		else if (NAME_IS("uri"))
			f = &c->uri;
		else if (NAME_IS("response"))
			f = &c->response;
		else if (NAME_IS("cnonce"))
			f = &c->cnonce;
		else if (NAME_IS("qop"))
			f = &c->qop;
		else if (NAME_IS("nc"))
			f = &c->nc;
		else if (NAME_IS("opaque"))
			f = &c->opaque;
		else if (NAME_IS("algorithm"))
			f = &algorithm;
		else if (NAME_IS("userhash")) {
			/* Never offered: a hashed username cannot be looked up. */
			if (str_ieq(&dp.value, "true", 4))
				return EBADMSG;
		}
#undef NAME_IS
		if (f && !field_set(f, &dp.value))
			return EBADMSG;
	}
	if (rv < 0)
		return EBADMSG;
	if (!c->username.len || !c->realm.p || !c->nonce.len || !c->uri.len || !c->response.len)
		return EBADMSG;
	if (algorithm.p) {
		enum digest_alg alg;

		if (digest_alg_parse(&algorithm, &alg) != 0)
			return EBADMSG;
		c->alg = (enum digest_alg)alg;
	}
	if (c->qop.p) {
		/* Only qop=auth is offered; auth-int would need the body hashed. */
		if (!str_ieq(&c->qop, "auth", 4))
			return EBADMSG;
		if (!c->cnonce.len || !c->nc.p || !hex_parse_u32(&c->nc, &c->nc_value) ||
		    c->nc_value == 0)
			return EBADMSG;
		c->has_qop = true;
	} else {
		/* RFC 2069 form: nc/cnonce mean nothing without qop. */
		c->nc = SIP_STR_NULL;
		c->cnonce = SIP_STR_NULL;
		c->nc_value = 0;
	}
	if (c->response.len != digest_hex_len((enum digest_alg)c->alg) ||
	    !auth_all_hex(&c->response))
		return EBADMSG;
	return 0;
}

/* RFC 2617 §3.2.2.5: the digest uri names the Request-URI. Equal bytes, or the same
 * scheme, user and host (case-insensitive scheme and host): a proxy on the way may add a
 * port or parameters (;transport=, ;lr) to the Request-URI without breaking the answer. */
static bool auth_uri_matches(const struct sip_str *digest_uri, const struct sip_str *ruri)
{
	struct sip_uri_parts a, b;

	if (sip_str_eq(digest_uri, ruri))
		return true;
	/* Only SIP URIs have the parts; other schemes must match byte for byte. */
	if (!sip_uri_split(digest_uri, &a) || !sip_uri_split(ruri, &b) || a.host.len == 0 ||
	    b.host.len == 0)
		return false;
	return str_ieq(&a.scheme, b.scheme.p, b.scheme.len) && sip_str_eq(&a.user, &b.user) &&
	       str_ieq(&a.host, b.host.p, b.host.len);
}

int auth_creds_parse(const struct sip_register *reg, const struct sip_str *realm,
		     struct auth_creds *c)
{
	size_t n = reg->authorization.n < AUTHZ_MAX ? reg->authorization.n : AUTHZ_MAX;
	struct auth_creds tmp;
	struct sip_str uri;
	char ubuf[QVAL_MAX];
	bool bad = false;

	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < n; i++) {
		int rv = auth_creds_parse_value(&reg->authorization.v[i], &tmp);
		bool ours = str_ieq(&tmp.realm, realm->p, realm->len);

		if (rv != 0) {
			/* Malformed credentials for another realm are not ours to judge. */
			if (!tmp.realm.p || ours)
				bad = true;
			continue;
		}
		if (!ours)
			continue;
		if (!reg->ruri.len || !auth_unquote(&tmp.uri, ubuf, sizeof(ubuf), &uri) ||
		    !auth_uri_matches(&uri, &reg->ruri))
			return EBADMSG;
		*c = tmp;
		return 0;
	}
	return bad ? EBADMSG : ENOENT;
}

