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
#include "sip/scan.h"
#include "sip/uri.h"

#define STATUS_BAD     400

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
		*uri = sip_str_trim(lt + 1, gt);
		s = gt + 1;
	} else {
		if (quoted || memchr(p, '"', v->len))
			return false; /* a display name needs <> */
		for (s = p; s < end && *s != ';' && !text_is_lws(*s); s++)
			if (*s == '?' || *s == ',')
				return false;
		*uri = (struct sip_str){.p = p, .len = (size_t)(s - p)};
	}
	while (s < end && text_is_lws(*s))
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

	return !sipmsg_param(params, "expires", &v) || sip_parse_uint(&v, UINT32_MAX, true, &n);
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
		id = sipmsg_hdr_identify(&name);
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
		    text_mem_ieq(value.p, 9, "multipart"))
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

/* A response's raw status code: exactly three digits 100-699 (libosip2 wraps 4294967301 to
 * 5). */
static bool status_line_ok(const char *buf, size_t len)
{
	const char *next, *end = buf + len, *eol = sip_line_end(buf, end, &next);
	const char *sp = memchr(buf, ' ', (size_t)(eol - buf));

	if (!sp || eol - sp < 4)
		return false;
	if (!text_is_digit(sp[1]) || !text_is_digit(sp[2]) || !text_is_digit(sp[3]) || sp[1] < '1' ||
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
		if (*p == '\n' && p + 1 < end && !text_is_ws(p[1]))
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
		if (sipmsg_hdr_identify(&name) == SIPMSG_HDR_CTYPE && value.len >= 9 &&
		    text_mem_ieq(value.p, 9, "multipart"))
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
	struct sip_reqline rl;
	struct sip_str scheme;
	const char *colon;

	*status = STATUS_BAD;
	*reason = "Bad Request";
	if (!sip_reqline_split(buf, len, &rl))
		return;
	if (rl.version.len > 4 && memcmp(rl.version.p, "SIP/", 4) == 0 &&
	    !sip_version_ok(&rl.version) && !memchr(rl.version.p, ' ', rl.version.len)) {
		*status = 505;
		*reason = "Version Not Supported";
		return;
	}
	colon = memchr(rl.uri.p, ':', rl.uri.len);
	if (!colon || !sip_version_ok(&rl.version))
		return;
	scheme = (struct sip_str){.p = rl.uri.p, .len = (size_t)(colon - rl.uri.p)};
	if (sip_scheme_valid(&scheme) && !sip_scheme_is_sip(&scheme)) {
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

		if (!sip_parse_uint(&ps, 65535, false, &port) || port == 0)
			return false;
		m->via_port = (uint16_t)port;
	}
	if (osip_via_param_get_byname(via, "branch", &prm) == 0 && prm && prm->gvalue)
		m->branch = sip_str_c(prm->gvalue);
	m->branch_rfc3261 = m->branch.len > 7 && memcmp(m->branch.p, "z9hG4bK", 7) == 0;
	prm = NULL;
	m->via_rport = osip_via_param_get_byname(via, "rport", &prm) == 0 && prm;
	if (memchr(via->host, ':', hlen))
		return sip_ipv6_parse(via->host, hlen, &a6);
	/* liberal here: answers go to the source address, and real stacks put '_' in names */
	for (size_t i = 0; i < hlen; i++)
		if (!text_is_alnum(via->host[i]) && !strchr("-._", via->host[i]))
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

	while (p < end && text_is_digit(*p))
		p++;
	num = (struct sip_str){.p = v->p, .len = (size_t)(p - v->p)};
	if (!sip_parse_uint(&num, UINT32_MAX, false, &n) || p == end || !text_is_lws(*p))
		return false;
	while (p < end && text_is_lws(*p))
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
static int request_checks(struct sipmsg *m, struct scan *sc, const struct sip_reqline *rl,
			  const char **reason)
{
	struct sip_str *f = sc->first;
	struct sip_uri_parts ru, tu;
	uint64_t n;
	bool ids_ok = fill_ids(m, sc, reason);

	if (!sip_version_ok(&rl->version)) {
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
	if (!sip_uri_split(&rl->uri, &ru)) {
		*reason = "Bad Request-URI";
		return STATUS_BAD;
	}
	if (!sip_scheme_is_sip(&ru.scheme)) {
		*reason = "Unsupported URI Scheme";
		return 416;
	}
	*reason = "Bad Request-URI";
	if (!sipmsg_host_valid(ru.host.p, ru.host.len) || !sip_uri_port_valid(&ru) || ru.headers.len)
		return STATUS_BAD;
	*reason = "Bad CSeq";
	if (!cseq_check(m, &f[SIPMSG_HDR_CSEQ]))
		return STATUS_BAD;
	*reason = "Bad Content-Length";
	if (sc->count[SIPMSG_HDR_CLEN] &&
	    !sip_parse_uint(&f[SIPMSG_HDR_CLEN], UINT32_MAX, true, &n))
		return STATUS_BAD;
	*reason = "Bad Expires";
	if (sc->count[SIPMSG_HDR_EXPIRES]) {
		if (!sip_parse_uint(&f[SIPMSG_HDR_EXPIRES], UINT32_MAX, true, &n))
			return STATUS_BAD;
		m->expires_hdr = (int64_t)n;
	}
	*reason = "Bad Max-Forwards";
	if (sc->count[SIPMSG_HDR_MAXFWD] && !sip_parse_uint(&f[SIPMSG_HDR_MAXFWD], 255, false, &n))
		return STATUS_BAD;
	*reason = "Bad Contact";
	if (sc->bad_contact)
		return STATUS_BAD;
	if (m->method == SIP_M_REGISTER) {
		*reason = "Bad To URI";
		if (!sip_uri_split(&m->to_uri, &tu) || !sip_scheme_is_sip(&tu.scheme))
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
	struct sip_reqline rl;
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
	if (!m->is_response && !sip_reqline_split(m->raw, len, &rl)) {
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

		while (p < e && text_is_digit(*p))
			p++;
		cs.len = (size_t)(p - cs.p);
		if (!sc.count[SIPMSG_HDR_CSEQ] || !sip_parse_uint(&cs, UINT32_MAX, false, &n)) {
			sipmsg_free(&m);
			return parse_fail(mp, NULL, STATUS_BAD, reason, status_r, reason_r);
		}
		m->cseq = (uint32_t)n;
		fill_ids(m, &sc, &reason);
		*mp = m;
		return 0;
	}
	m->method_name = rl.method;
	m->ruri = rl.uri;
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
