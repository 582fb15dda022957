/* Bindings and users as the operator reads them: tab-separated columns, one entry a line,
 * every byte a client chose escaped so that no line can forge another. */
#include "ops/show.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void put(show_write_h *w, void *arg, const char *s)
{
	w(s, strlen(s), arg);
}

void show_user_part(show_write_h *w, void *arg, const char *p, size_t len)
{
	char esc[4];

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c > 0x20 && c < 0x7f) {
			w(&p[i], 1, arg);
			continue;
		}
		snprintf(esc, sizeof(esc), "%%%02X", c);
		w(esc, 3, arg);
	}
}

void show_bytes(show_write_h *w, void *arg, const char *p, size_t len)
{
	char esc[5];

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			w(&p[i], 1, arg);
			continue;
		}
		snprintf(esc, sizeof(esc), "\\x%02x", c);
		w(esc, 4, arg);
	}
}

void show_bindings_head(show_write_h *w, void *arg)
{
	put(w, arg, "AOR\tCONTACT\tRECEIVED\tEXPIRES\tUSER-AGENT\tREGISTERED-BY\n");
}

void show_binding(show_write_h *w, void *arg, const struct binding *b, int64_t now)
{
	bool v6 = strchr(b->source.ip, ':') != NULL;
	char num[96];

	show_bytes(w, arg, b->aor.p, b->aor.len);
	put(w, arg, "\t");
	show_bytes(w, arg, b->contact.p, b->contact.len);
	snprintf(num, sizeof(num), "\t%s:%s%s%s:%u\t%" PRId64 "\t",
		 sip_proto_name(b->source.proto), v6 ? "[" : "", b->source.ip, v6 ? "]" : "",
		 (unsigned)b->source.port, b->expires_at > now ? b->expires_at - now : 0);
	put(w, arg, num);
	show_bytes(w, arg, b->user_agent.p, b->user_agent.len);
	put(w, arg, "\t");
	show_bytes(w, arg, b->registered_by.p, b->registered_by.len);
	put(w, arg, "\n");
}

void show_user(show_write_h *w, void *arg, const struct dir_user *u)
{
	bool md5 = u->ha1_md5.len || u->password.len, sha = u->ha1_sha256.len || u->password.len;
	char num[160];

	show_user_part(w, arg, u->username.p, u->username.len);
	put(w, arg, "@");
	if (u->domain.len)
		show_bytes(w, arg, u->domain.p, u->domain.len);
	else
		put(w, arg, "*");
	snprintf(num, sizeof(num), "\t%s\tauth:%s\tmax_contacts:%u\tha1:%s%s%s\taliases:",
		 u->enabled ? "enabled" : "disabled", u->auth_off ? "off" : "on",
		 (unsigned)u->max_contacts, md5 ? "md5" : "", md5 && sha ? "+" : "",
		 sha ? "sha256" : "");
	put(w, arg, num);
	for (size_t i = 0; i < u->n_aliases; i++) {
		const struct sip_str *a = &u->aliases[i];
		const char *at = a->len ? memrchr(a->p, '@', a->len) : NULL;
		size_t ulen = at ? (size_t)(at - a->p) : a->len;

		if (i)
			put(w, arg, ",");
		show_user_part(w, arg, a->p, ulen);
		if (at)
			show_bytes(w, arg, at, a->len - ulen);
	}
	put(w, arg, "\n");
}
