/* sipregctl show peers|peer and lookup: the bindings as an operator (Asterisk's `sip show
 * peers`) and a proxy see them, as a table or JSON (jansson), from the location interface
 * or, for an in-process store, from the daemon's "dump" records. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ctl/ctl.h"
#include "ops/show.h"
#include "sip/uri.h"

/* One binding copied out of a callback: b's strings point into mem. */
struct peer {
	struct binding b;
	char *mem;
};

struct peer_list {
	struct ctl *c;
	struct peer *v;
	size_t n, cap;
	int64_t now;
	const char *user, *domain, *instance; /* filters, NULL = any */
};

static void str_move(struct sip_str *s, char **cur)
{
	if (s->len)
		memcpy(*cur, s->p, s->len);
	s->p = *cur;
	*cur += s->len;
}

static bool peer_wanted(const struct peer_list *l, const struct binding *b)
{
	const char *at = b->aor.len ? memrchr(b->aor.p, '@', b->aor.len) : NULL;
	size_t ulen = at ? (size_t)(at - b->aor.p) : b->aor.len;
	size_t dlen = at ? b->aor.len - ulen - 1 : 0;

	if (l->user && (strlen(l->user) != ulen || memcmp(l->user, b->aor.p, ulen) != 0))
		return false;
	if (l->domain && (strlen(l->domain) != dlen || strncasecmp(l->domain, at + 1, dlen) != 0))
		return false;
	if (l->instance && (strlen(l->instance) != b->registered_by.len ||
			    memcmp(l->instance, b->registered_by.p, b->registered_by.len) != 0))
		return false;
	return true;
}

static void peer_add(struct peer_list *l, const struct binding *b)
{
	struct peer *p;
	size_t total;
	char *cur;

	if (!peer_wanted(l, b))
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct peer *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			ctl_die(CTL_EXIT_FAIL, "out of memory");
		l->v = v;
		l->cap = cap;
	}
	p = &l->v[l->n];
	p->b = *b;
	total = b->aor.len + b->contact.len + b->key.len + b->call_id.len + b->path.len +
		b->instance.len + b->user_agent.len + b->registered_by.len + b->qualified_by.len + 1;
	p->mem = malloc(total);
	if (!p->mem)
		ctl_die(CTL_EXIT_FAIL, "out of memory");
	cur = p->mem;
	str_move(&p->b.aor, &cur);
	str_move(&p->b.contact, &cur);
	str_move(&p->b.key, &cur);
	str_move(&p->b.call_id, &cur);
	str_move(&p->b.path, &cur);
	str_move(&p->b.instance, &cur);
	str_move(&p->b.user_agent, &cur);
	str_move(&p->b.registered_by, &cur);
	str_move(&p->b.qualified_by, &cur);
	l->n++;
}

static void on_binding(int err, const struct binding *b, void *arg)
{
	struct peer_list *l = arg;

	if (b) {
		peer_add(l, b);
		return;
	}
	l->c->err = err;
	l->c->done = true;
}

static void on_fetch(int err, const struct binding_set *set, void *arg)
{
	struct peer_list *l = arg;

	for (size_t i = 0; !err && i < set->n; i++)
		peer_add(l, &set->v[i]);
	l->c->err = err;
	l->c->done = true;
}

static void on_record(char *line, void *arg)
{
	struct peer_list *l = arg;
	struct binding b;

	if (show_record_parse(line, &b) != 0)
		ctl_die(CTL_EXIT_FAIL, "sipregd sent a record this sipregctl cannot read");
	peer_add(l, &b);
}

static int q_rank(int16_t q)
{
	return q == Q_NONE ? 1000 : q;
}

/* The proxies' order: q descending, then the most recently refreshed. */
static int peer_cmp_lookup(const void *pa, const void *pb)
{
	const struct binding *a = &((const struct peer *)pa)->b, *b = &((const struct peer *)pb)->b;

	if (q_rank(a->q) != q_rank(b->q))
		return q_rank(b->q) - q_rank(a->q);
	if (a->updated_at != b->updated_at)
		return a->updated_at < b->updated_at ? 1 : -1;
	return 0;
}

/* The listing's order: by AOR, then contact. */
static int peer_cmp_name(const void *pa, const void *pb)
{
	const struct binding *a = &((const struct peer *)pa)->b, *b = &((const struct peer *)pb)->b;
	size_t n = a->aor.len < b->aor.len ? a->aor.len : b->aor.len;
	int c = n ? memcmp(a->aor.p, b->aor.p, n) : 0;

	if (c || a->aor.len != b->aor.len)
		return c ? c : a->aor.len < b->aor.len ? -1 : 1;
	n = a->contact.len < b->contact.len ? a->contact.len : b->contact.len;
	c = n ? memcmp(a->contact.p, b->contact.p, n) : 0;
	return c ? c : (a->contact.len > b->contact.len) - (a->contact.len < b->contact.len);
}

/* Every live binding (aor NULL) or those of one AOR, filtered by l's filters. */
static void peers_collect(struct peer_list *l, const struct ctl_account *a)
{
	struct ctl *c = l->c;
	int err;

	if (ctl_in_process(c, false)) {
		char req[sizeof(a->aor) + 8];

		snprintf(req, sizeof(req), "dump%s%s", a ? " " : "", a ? a->aor : "");
		ctl_control_each(c, req, on_record, l);
		return;
	}
	if (a) {
		struct sip_str aor = {.p = a->aor, .len = a->aor_len};

		err = location_fetch(ctl_location(c), &aor, l->now, on_fetch, l, NULL);
	} else {
		err = location_iterate(ctl_location(c), l->now, on_binding, l, NULL);
	}
	err = ctl_wait(c, err, "listing");
	if (err)
		ctl_die(CTL_EXIT_FAIL, "listing: %s", strerror(err));
}

static void peers_free(struct peer_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].mem);
	free(l->v);
}

/* ---- text ---------------------------------------------------------------------------- */

struct strbuf {
	char *p;
	size_t len, cap;
};

static void sb_write(const char *p, size_t len, void *arg)
{
	struct strbuf *sb = arg;

	if (sb->len + len + 1 > sb->cap) {
		size_t cap = (sb->cap ? sb->cap : 64);
		char *n;

		while (cap < sb->len + len + 1)
			cap *= 2;
		n = realloc(sb->p, cap);
		if (!n)
			ctl_die(CTL_EXIT_FAIL, "out of memory");
		sb->p = n;
		sb->cap = cap;
	}
	memcpy(sb->p + sb->len, p, len);
	sb->len += len;
	sb->p[sb->len] = '\0';
}

/* A client's bytes as terminal-safe text (show_bytes); the caller frees. */
static char *esc(const struct sip_str *s)
{
	struct strbuf sb = {0};

	sb_write("", 0, &sb);
	show_bytes(sb_write, &sb, s->p, s->len);
	return sb.p;
}

/* The status column: Unmonitored where nothing pings (qualify off in this config). */
static enum qualify_status peer_status(const struct ctl *c, const struct binding *b)
{
	if (b->qualify == QUALIFY_UNKNOWN && c->cfg->qualify.interval == 0)
		return QUALIFY_UNMONITORED;
	return b->qualify;
}

static void status_text(enum qualify_status st, uint32_t rtt, char *buf, size_t len)
{
	switch (st) {
	case QUALIFY_OK:
		snprintf(buf, len, "OK (%" PRIu32 " ms)", rtt);
		break;
	case QUALIFY_LAGGED:
		snprintf(buf, len, "LAGGED (%" PRIu32 " ms)", rtt);
		break;
	case QUALIFY_UNMONITORED:
		snprintf(buf, len, "Unmonitored");
		break;
	default:
		snprintf(buf, len, "%s", qualify_status_name(st));
		break;
	}
}

/* Did the REGISTER come from another address or port than its Contact names (NAT)? */
static bool peer_nat(const struct binding *b)
{
	struct sip_uri_parts u;
	char host[64];
	unsigned port = 5060;
	size_t hl;

	if (!sip_uri_split(&b->contact, &u) || u.host.len == 0)
		return true;
	hl = u.host.len;
	if (hl >= 2 && u.host.p[0] == '[') {
		hl -= 2;
		if (hl >= sizeof(host))
			return true;
		memcpy(host, u.host.p + 1, hl);
	} else {
		if (hl >= sizeof(host))
			return true;
		memcpy(host, u.host.p, hl);
	}
	host[hl] = '\0';
	if (u.has_port) {
		port = 0;
		for (size_t i = 0; i < u.port.len; i++)
			port = port * 10 + (unsigned)(u.port.p[i] - '0');
	} else if (u.scheme.len == 4) { /* sips */
		port = 5061;
	}
	return strcasecmp(host, b->source.ip) != 0 || port != b->source.port;
}

enum { COL_NAME, COL_HOST, COL_DYN, COL_NAT, COL_PORT, COL_TRANSPORT, COL_STATUS, COL_EXPIRES,
       COL_INSTANCE, COL_N };
static const char *const col_names[COL_N] = {"Name/username", "Host", "Dyn", "Nat", "Port",
					     "Transport", "Status", "Expires", "Instance"};

/* The cells of one row, each owned. */
static void peer_cells(const struct ctl *c, const struct binding *b, int64_t now,
		       char *cells[COL_N])
{
	char buf[64];
	int64_t left = b->expires_at > now ? b->expires_at - now : 0;

	cells[COL_NAME] = esc(&b->aor);
	cells[COL_HOST] = strdup(b->source.ip[0] ? b->source.ip : "(unknown)");
	cells[COL_DYN] = strdup("D");
	cells[COL_NAT] = strdup(peer_nat(b) ? "N" : "");
	snprintf(buf, sizeof(buf), "%u", (unsigned)b->source.port);
	cells[COL_PORT] = strdup(buf);
	cells[COL_TRANSPORT] = strdup(sip_proto_name(b->source.proto));
	status_text(peer_status(c, b), b->rtt_ms, buf, sizeof(buf));
	cells[COL_STATUS] = strdup(buf);
	snprintf(buf, sizeof(buf), "%" PRId64, left);
	cells[COL_EXPIRES] = strdup(buf);
	cells[COL_INSTANCE] = esc(&b->registered_by);
	for (int i = 0; i < COL_N; i++) {
		if (!cells[i])
			ctl_die(CTL_EXIT_FAIL, "out of memory");
	}
}

struct peer_counts {
	size_t online, offline, unknown, unmonitored;
};

static void count(const struct ctl *c, const struct binding *b, struct peer_counts *n)
{
	switch (peer_status(c, b)) {
	case QUALIFY_OK:
	case QUALIFY_LAGGED:
		n->online++;
		break;
	case QUALIFY_UNREACHABLE:
		n->offline++;
		break;
	case QUALIFY_UNMONITORED:
		n->unmonitored++;
		break;
	default:
		n->unknown++;
		break;
	}
}

static void json_dump_out(json_t *j)
{
	if (!j || json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII) != 0)
		ctl_die(CTL_EXIT_FAIL, "out of memory");
	putchar('\n');
	json_decref(j);
}

static json_t *jstr_take(char *s)
{
	json_t *j = json_string(s);

	free(s);
	return j;
}

static void peers_print(const struct peer_list *l, bool json)
{
	struct peer_counts n = {0};
	size_t width[COL_N];
	char *(*cells)[COL_N] = calloc(l->n ? l->n : 1, sizeof(*cells));
	json_t *arr = json ? json_array() : NULL;

	if (!cells || (json && !arr))
		ctl_die(CTL_EXIT_FAIL, "out of memory");
	for (int i = 0; i < COL_N; i++)
		width[i] = strlen(col_names[i]);
	for (size_t r = 0; r < l->n; r++) {
		peer_cells(l->c, &l->v[r].b, l->now, cells[r]);
		count(l->c, &l->v[r].b, &n);
		for (int i = 0; i < COL_N; i++) {
			if (strlen(cells[r][i]) > width[i])
				width[i] = strlen(cells[r][i]);
		}
	}
	if (!json) {
		for (int i = 0; i < COL_N; i++)
			printf("%-*s%s", (int)width[i], col_names[i], i + 1 < COL_N ? "  " : "\n");
	}
	for (size_t r = 0; r < l->n; r++) {
		const struct binding *b = &l->v[r].b;

		if (!json) {
			for (int i = 0; i < COL_N; i++)
				printf("%-*s%s", (int)width[i], cells[r][i], i + 1 < COL_N ? "  " : "\n");
		} else {
			json_t *o = json_pack(
			    "{s:o, s:s, s:b, s:b, s:i, s:s, s:s, s:s, s:i, s:I, s:o, s:o}", "name",
			    jstr_take(esc(&b->aor)), "host", cells[r][COL_HOST], "dynamic", 1, "nat",
			    cells[r][COL_NAT][0] != 0, "port", (int)b->source.port, "transport",
			    cells[r][COL_TRANSPORT], "status", cells[r][COL_STATUS], "state",
			    qualify_status_name(peer_status(l->c, b)), "rtt_ms", (int)b->rtt_ms,
			    "expires", (json_int_t)atoll(cells[r][COL_EXPIRES]), "instance",
			    jstr_take(esc(&b->registered_by)), "contact", jstr_take(esc(&b->contact)));

			if (!o || json_array_append_new(arr, o) != 0)
				ctl_die(CTL_EXIT_FAIL, "out of memory");
		}
		for (int i = 0; i < COL_N; i++)
			free(cells[r][i]);
	}
	free(cells);
	if (json) {
		json_dump_out(json_pack("{s:o, s:{s:I, s:I, s:I, s:I, s:I}}", "peers", arr, "summary",
					"peers", (json_int_t)l->n, "online", (json_int_t)n.online,
					"offline", (json_int_t)n.offline, "unknown",
					(json_int_t)n.unknown, "unmonitored",
					(json_int_t)n.unmonitored));
		return;
	}
	printf("%zu peers [online: %zu, offline: %zu, unknown: %zu, unmonitored: %zu]\n", l->n,
	       n.online, n.offline, n.unknown, n.unmonitored);
}

/* Every stored field of one binding, as name/value pairs. */
static json_t *peer_json_full(const struct ctl *c, const struct binding *b, int64_t now)
{
	char status[64];

	status_text(peer_status(c, b), b->rtt_ms, status, sizeof(status));
	return json_pack("{s:o, s:o, s:o, s:I, s:I, s:o, s:o, s:I, s:o, s:o, s:I, s:o, s:s, s:s, "
			 "s:i, s:I, s:o, s:I, s:s, s:s, s:I, s:I, s:o, s:b}",
			 "aor", jstr_take(esc(&b->aor)), "contact", jstr_take(esc(&b->contact)),
			 "key", jstr_take(esc(&b->key)), "expires_at", (json_int_t)b->expires_at,
			 "expires", (json_int_t)(b->expires_at > now ? b->expires_at - now : 0),
			 "q", b->q == Q_NONE ? json_null() : json_real(b->q / 1000.0), "call_id",
			 jstr_take(esc(&b->call_id)), "cseq", (json_int_t)b->cseq, "path",
			 jstr_take(esc(&b->path)), "instance", jstr_take(esc(&b->instance)),
			 "reg_id", (json_int_t)b->reg_id, "user_agent", jstr_take(esc(&b->user_agent)),
			 "transport", sip_proto_name(b->source.proto), "received_ip", b->source.ip,
			 "received_port", (int)b->source.port, "conn_id", (json_int_t)b->source.conn_id,
			 "registered_by", jstr_take(esc(&b->registered_by)), "updated_at",
			 (json_int_t)b->updated_at, "status", status, "state",
			 qualify_status_name(peer_status(c, b)), "rtt_ms", (json_int_t)b->rtt_ms,
			 "qualified_at", (json_int_t)b->qualified_at, "qualified_by",
			 jstr_take(esc(&b->qualified_by)), "nat", peer_nat(b));
}

/* show peer / lookup: one entry per binding, every field ("name: value" lines, a blank
 * line between bindings) or JSON. */
static void peer_print_full(const struct peer_list *l, bool json, const char *what)
{
	json_t *arr = json_array();

	if (!arr)
		ctl_die(CTL_EXIT_FAIL, "out of memory");
	for (size_t i = 0; i < l->n; i++) {
		json_t *o = peer_json_full(l->c, &l->v[i].b, l->now);

		if (!o || json_array_append_new(arr, o) != 0)
			ctl_die(CTL_EXIT_FAIL, "out of memory");
	}
	if (json) {
		json_dump_out(json_pack("{s:o}", what, arr));
		return;
	}
	for (size_t i = 0; i < json_array_size(arr); i++) {
		const char *k;
		json_t *v;

		if (i)
			putchar('\n');
		json_object_foreach(json_array_get(arr, i), k, v)
		{
			if (json_is_string(v))
				printf("%-14s %s\n", k, json_string_value(v));
			else if (json_is_integer(v))
				printf("%-14s %" JSON_INTEGER_FORMAT "\n", k, json_integer_value(v));
			else if (json_is_real(v))
				printf("%-14s %.3f\n", k, json_real_value(v));
			else if (json_is_boolean(v))
				printf("%-14s %s\n", k, json_is_true(v) ? "yes" : "no");
			else
				printf("%-14s -\n", k);
		}
	}
	json_decref(arr);
}

/* Options after the positional words: --json and the filters show peers takes. */
static bool parse_opts(int argc, char **argv, int from, struct peer_list *l, bool filters)
{
	bool json = false;

	for (int i = from; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (filters && i + 1 < argc && strcmp(argv[i], "--user") == 0) {
			l->user = argv[++i];
		} else if (filters && i + 1 < argc && strcmp(argv[i], "--domain") == 0) {
			l->domain = argv[++i];
		} else if (filters && i + 1 < argc && strcmp(argv[i], "--instance") == 0) {
			l->instance = argv[++i];
		} else {
			ctl_die(CTL_EXIT_USAGE, "unexpected '%s'", argv[i]);
		}
	}
	return json;
}

int ctl_show(struct ctl *c, int argc, char **argv)
{
	struct peer_list l = {.c = c, .now = (int64_t)time(NULL)};
	struct ctl_account a;
	bool json;

	if (argc >= 1 && strcmp(argv[0], "peers") == 0) {
		json = parse_opts(argc, argv, 1, &l, true);
		peers_collect(&l, NULL);
		if (l.n > 1)
			qsort(l.v, l.n, sizeof(*l.v), peer_cmp_name);
		peers_print(&l, json);
	} else if (argc >= 2 && strcmp(argv[0], "peer") == 0) {
		ctl_account_parse(argv[1], &a);
		json = parse_opts(argc, argv, 2, &l, false);
		peers_collect(&l, &a);
		if (l.n > 1)
			qsort(l.v, l.n, sizeof(*l.v), peer_cmp_lookup);
		if (l.n == 0 && !json) {
			peers_free(&l);
			ctl_die(CTL_EXIT_FAIL, "show peer: %s has no live binding", a.aor);
		}
		peer_print_full(&l, json, "bindings");
	} else {
		ctl_die(CTL_EXIT_USAGE, "show wants: peers [--user U] [--domain D] [--instance I] "
					"[--json] | peer USER@DOMAIN [--json]");
	}
	peers_free(&l);
	return 0;
}

int ctl_lookup(struct ctl *c, int argc, char **argv)
{
	struct peer_list l = {.c = c, .now = (int64_t)time(NULL)};
	struct ctl_account a;
	bool json;

	if (argc < 1)
		ctl_die(CTL_EXIT_USAGE, "lookup wants USER@DOMAIN [--json]");
	ctl_account_parse(argv[0], &a);
	json = parse_opts(argc, argv, 1, &l, false);
	peers_collect(&l, &a);
	if (l.n > 1)
		qsort(l.v, l.n, sizeof(*l.v), peer_cmp_lookup);
	if (json) {
		peer_print_full(&l, true, "contacts");
	} else {
		/* What a proxy forks to, best first: the contact and where to send it. */
		for (size_t i = 0; i < l.n; i++) {
			const struct binding *b = &l.v[i].b;
			char *contact = esc(&b->contact), *path = esc(&b->path);
			bool v6 = strchr(b->source.ip, ':') != NULL;

			printf("%s\tq=%.3f\treceived=%s:%s%s%s:%u\tpath=%s\n", contact,
			       q_rank(b->q) / 1000.0, sip_proto_name(b->source.proto), v6 ? "[" : "",
			       b->source.ip, v6 ? "]" : "", (unsigned)b->source.port,
			       path[0] ? path : "-");
			free(contact);
			free(path);
		}
	}
	peers_free(&l);
	return l.n ? 0 : CTL_EXIT_FAIL;
}
