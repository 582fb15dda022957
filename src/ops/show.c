/* Bindings and users as the operator reads them: tab-separated columns, one entry a line,
 * every byte a client chose escaped so that no line can forge another. */
#include "ops/show.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
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

/* A byte string as one record word. */
static void record_str(show_write_h *w, void *arg, const struct sip_str *s)
{
	char esc[4];

	put(w, arg, " ");
	if (s->len == 0) {
		put(w, arg, "-");
		return;
	}
	for (size_t i = 0; i < s->len; i++) {
		unsigned char c = (unsigned char)s->p[i];

		if (c > 0x20 && c < 0x7f && c != '%' && !(c == '-' && s->len == 1)) {
			w(&s->p[i], 1, arg);
			continue;
		}
		snprintf(esc, sizeof(esc), "%%%02X", c);
		w(esc, 3, arg);
	}
}

/* The record's words, in order. */
enum {
	REC_AOR,
	REC_CONTACT,
	REC_KEY,
	REC_EXPIRES_AT,
	REC_Q,
	REC_CALL_ID,
	REC_CSEQ,
	REC_PATH,
	REC_INSTANCE,
	REC_REG_ID,
	REC_USER_AGENT,
	REC_PROTO,
	REC_IP,
	REC_PORT,
	REC_CONN_ID,
	REC_REGISTERED_BY,
	REC_UPDATED_AT,
	REC_QUALIFY,
	REC_RTT_MS,
	REC_QUALIFIED_AT,
	REC_QUALIFIED_BY,
	REC_N
};

void show_binding_record(show_write_h *w, void *arg, const struct binding *b)
{
	char num[256];

	put(w, arg, "binding");
	record_str(w, arg, &b->aor);
	record_str(w, arg, &b->contact);
	record_str(w, arg, &b->key);
	snprintf(num, sizeof(num), " %" PRId64 " %d", b->expires_at, (int)b->q);
	put(w, arg, num);
	record_str(w, arg, &b->call_id);
	snprintf(num, sizeof(num), " %" PRIu32, b->cseq);
	put(w, arg, num);
	record_str(w, arg, &b->path);
	record_str(w, arg, &b->instance);
	snprintf(num, sizeof(num), " %" PRIu32, b->reg_id);
	put(w, arg, num);
	record_str(w, arg, &b->user_agent);
	snprintf(num, sizeof(num), " %s %s %u %" PRIu64, sip_proto_name(b->source.proto),
		 b->source.ip[0] ? b->source.ip : "-", (unsigned)b->source.port,
		 b->source.conn_id);
	put(w, arg, num);
	record_str(w, arg, &b->registered_by);
	snprintf(num, sizeof(num), " %" PRId64 " %d %" PRIu32 " %" PRId64, b->updated_at,
		 (int)b->qualify, b->rtt_ms, b->qualified_at);
	put(w, arg, num);
	record_str(w, arg, &b->qualified_by);
	put(w, arg, "\n");
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode one word in place. */
static int record_word(char *word, struct sip_str *s)
{
	size_t o = 0;

	if (strcmp(word, "-") == 0) {
		*s = (struct sip_str){.p = word, .len = 0};
		return 0;
	}
	for (size_t i = 0; word[i]; i++) {
		if (word[i] == '%') {
			int hi = hexval(word[i + 1]), lo = hi < 0 ? -1 : hexval(word[i + 2]);

			if (lo < 0)
				return EINVAL;
			word[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			word[o++] = word[i];
		}
	}
	*s = (struct sip_str){.p = word, .len = o};
	return 0;
}

static int record_int(const struct sip_str *s, long long lo, long long hi, long long *v)
{
	char buf[32], *end;

	if (s->len == 0 || s->len >= sizeof(buf))
		return EINVAL;
	memcpy(buf, s->p, s->len);
	buf[s->len] = '\0';
	errno = 0;
	*v = strtoll(buf, &end, 10);
	return errno || *end || *v < lo || *v > hi ? EINVAL : 0;
}

int show_record_parse(char *line, struct binding *b)
{
	struct sip_str f[REC_N];
	long long v[REC_N] = {0};
	size_t n = 0;
	char *save = NULL, *tok = strtok_r(line, " ", &save);
	static const struct {
		int idx;
		long long lo, hi;
	} ints[] = {{REC_EXPIRES_AT, INT64_MIN, INT64_MAX}, {REC_Q, -1, 1000},
		    {REC_CSEQ, 0, UINT32_MAX},		    {REC_REG_ID, 0, UINT32_MAX},
		    {REC_PORT, 0, 65535},		    {REC_CONN_ID, 0, INT64_MAX},
		    {REC_UPDATED_AT, INT64_MIN, INT64_MAX}, {REC_QUALIFY, 0, QUALIFY_UNMONITORED},
		    {REC_RTT_MS, 0, UINT32_MAX},	    {REC_QUALIFIED_AT, INT64_MIN, INT64_MAX}};

	if (!tok || strcmp(tok, "binding") != 0)
		return EINVAL;
	while ((tok = strtok_r(NULL, " ", &save)) != NULL) {
		if (n == REC_N || record_word(tok, &f[n]) != 0)
			return EINVAL;
		n++;
	}
	if (n != REC_N)
		return EINVAL;
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		if (record_int(&f[ints[i].idx], ints[i].lo, ints[i].hi, &v[ints[i].idx]) != 0)
			return EINVAL;
	}
	memset(b, 0, sizeof(*b));
	b->aor = f[REC_AOR];
	b->contact = f[REC_CONTACT];
	b->key = f[REC_KEY];
	b->expires_at = v[REC_EXPIRES_AT];
	b->q = (int16_t)v[REC_Q];
	b->call_id = f[REC_CALL_ID];
	b->cseq = (uint32_t)v[REC_CSEQ];
	b->path = f[REC_PATH];
	b->instance = f[REC_INSTANCE];
	b->reg_id = (uint32_t)v[REC_REG_ID];
	b->user_agent = f[REC_USER_AGENT];
	b->source.proto = sip_proto_from_name(f[REC_PROTO].p, f[REC_PROTO].len);
	if (f[REC_IP].len >= sizeof(b->source.ip))
		return EINVAL;
	memcpy(b->source.ip, f[REC_IP].p, f[REC_IP].len);
	b->source.port = (uint16_t)v[REC_PORT];
	b->source.conn_id = (uint64_t)v[REC_CONN_ID];
	b->registered_by = f[REC_REGISTERED_BY];
	b->updated_at = v[REC_UPDATED_AT];
	b->qualify = (enum qualify_status)v[REC_QUALIFY];
	b->rtt_ms = (uint32_t)v[REC_RTT_MS];
	b->qualified_at = v[REC_QUALIFIED_AT];
	b->qualified_by = f[REC_QUALIFIED_BY];
	return 0;
}
