/* Inside the ldap backend: the strings that go into LDAP requests: RFC 4515 filter
 * values, RFC 4514 DN values, the UTF-8 check both need, and small string helpers. */
#include "internal.h"

int lb_str_dup(struct sip_str *dst, const void *p, size_t len)
{
	char *c = malloc(len + 1);

	if (!c)
		return ENOMEM;
	if (len)
		memcpy(c, p, len);
	c[len] = '\0';
	dst->p = c;
	dst->len = len;
	return 0;
}

void lb_str_free(struct sip_str *s)
{
	free((char *)s->p);
	s->p = NULL;
	s->len = 0;
}

bool lb_utf8_valid(const char *p, size_t len)
{
	const unsigned char *s = (const unsigned char *)p;

	for (size_t i = 0; i < len;) {
		unsigned char c = s[i];
		size_t n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2
						   : (c & 0xf8) == 0xf0 ? 3 : 9;
		uint32_t cp = n == 0 ? c : n == 1 ? c & 0x1fu : n == 2 ? c & 0x0fu : c & 0x07u;

		if (c == 0 || n == 9 || i + n >= len + (n ? 0 : 1))
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3fu);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

/* An RFC 4514 attribute value for a DN: the special characters, a leading space or '#', a
 * trailing space and every control byte become \XX. Client bytes must be valid UTF-8
 * without NUL (LDAP strings are UTF-8); anything else is EINVAL. *outp is malloc'd. */
int lb_dn_escape(const struct sip_str *v, char **outp)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out, *o;

	*outp = NULL;
	if (v->len == 0 || !lb_utf8_valid(v->p, v->len))
		return EINVAL;
	out = malloc(v->len * 3 + 1);
	if (!out)
		return ENOMEM;
	o = out;
	for (size_t i = 0; i < v->len; i++) {
		unsigned char c = (unsigned char)v->p[i];

		if (strchr("\"+,;<>\\=", c) || c < 0x20 || c == 0x7f ||
		    (i == 0 && (c == ' ' || c == '#')) || (i + 1 == v->len && c == ' ')) {
			*o++ = '\\';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		} else {
			*o++ = (char)c;
		}
	}
	*o = '\0';
	*outp = out;
	return 0;
}

/* An RFC 4515 assertion value (NUL, '*', '(', ')', '\' as \XX): malloc'd. */
int lb_filter_escape(const struct sip_str *v, char **outp)
{
	struct berval in = {.bv_len = v->len, .bv_val = (char *)(v->p ? v->p : "")}, out = {0};
	char *copy;

	*outp = NULL;
	if (ldap_bv2escaped_filter_value(&in, &out) != 0)
		return ENOMEM;
	copy = strdup(out.bv_val ? out.bv_val : "");
	ber_memfree(out.bv_val);
	if (!copy)
		return ENOMEM;
	*outp = copy;
	return 0;
}

char *lb_str_printf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : s;
}
