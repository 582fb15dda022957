/* What an operator types, turned into the keys the registrar uses: AOR arguments in every
 * form `user add` takes, with one canonicalisation for every command. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctl/ctl.h"
#include "sip/uri.h"

void ctl_die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("sipregctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

void ctl_write(const char *p, size_t len, void *arg)
{
	(void)arg;
	fwrite(p, 1, len, stdout);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Undo %XX escapes of s[0..len) into out (at least len bytes). Returns the byte count, or
 * -1 for a broken escape. */
static long unescape(const char *s, size_t len, char *out)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			out[n++] = s[i];
			continue;
		}
		if (i + 2 >= len || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
			return -1;
		out[n++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
		i += 2;
	}
	return (long)n;
}

void ctl_account_parse(const char *arg, struct ctl_account *a)
{
	char uri[1100];
	struct sip_str u, user, domain;
	const char *body = arg, *at;
	long n;

	/* A user part cannot hold an unescaped ':', so a leading scheme is unambiguous. */
	if (strncasecmp(body, "sip:", 4) == 0)
		body += 4;
	else if (strncasecmp(body, "sips:", 5) == 0)
		body += 5;
	at = strchr(body, '@');
	if (!at || at == body || !at[1] || strlen(arg) > 500)
		ctl_die(CTL_EXIT_USAGE, "'%s' is not USER@DOMAIN", arg);
	if (unescape(body, (size_t)(at - body), a->raw) <= 0)
		ctl_die(CTL_EXIT_USAGE, "bad %%XX escape in user '%.*s'", (int)(at - body), body);
	snprintf(uri, sizeof(uri), "sip:%s", body);
	u = sip_str_c(uri);
	if (sipmsg_uri_aor(&u, a->aor, sizeof(a->aor), &user, &domain))
		ctl_die(CTL_EXIT_USAGE, "'%s' is not a valid USER@DOMAIN", arg);
	a->aor_len = user.len + 1 + domain.len;
	memcpy(a->user, user.p, user.len);
	a->user[user.len] = '\0';
	a->user_len = user.len;
	a->domain = a->aor + user.len + 1;
	/* The HA1 is over the bytes the canonical form stands for. */
	n = unescape(a->user, a->user_len, a->raw);
	if (n <= 0)
		ctl_die(CTL_EXIT_USAGE, "'%s' is not a valid USER@DOMAIN", arg);
	a->raw_len = (size_t)n;
}
