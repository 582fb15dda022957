/* The header scanner: raw header lines, comma lists and parameters read straight from the
 * message bytes (libosip2 would unescape and cut them), and the index the parse records. */
#include "sip/scan.h"

#include <string.h>

#include "sip/msg.h"

struct sip_str sip_str_trim(const char *p, const char *end)
{
	while (p < end && text_is_lws(*p))
		p++;
	while (end > p && text_is_lws(end[-1]))
		end--;
	return (struct sip_str){.p = p, .len = (size_t)(end - p)};
}

const char *sip_line_end(const char *p, const char *end, const char **next)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));

	if (!nl) {
		*next = end;
		return end;
	}
	*next = nl + 1;
	return (nl > p && nl[-1] == '\r') ? nl - 1 : nl;
}

bool sip_parse_uint(const struct sip_str *s, uint64_t max, bool clamp, uint64_t *out)
{
	uint64_t v = 0;

	if (!s->p || s->len == 0)
		return false;
	for (size_t i = 0; i < s->len; i++) {
		if (!text_is_digit(s->p[i]))
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

bool sip_name_is(const struct sip_str *name, const char *full, const char *compact)
{
	if (compact && name->len == 1 && text_to_lower(name->p[0]) == compact[0])
		return true;
	return text_mem_ieq(name->p, name->len, full);
}

bool sip_reqline_split(const char *buf, size_t len, struct sip_reqline *rl)
{
	const char *next, *end = buf + len, *eol = sip_line_end(buf, end, &next), *sp1, *sp2;

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

bool sip_version_ok(const struct sip_str *v)
{
	return v->len == 7 && memcmp(v->p, "SIP/2.0", 7) == 0;
}

bool sipmsg_raw_header_next(const char *buf, size_t len, size_t *pos, struct sip_str *name,
			    struct sip_str *value, struct sip_str *line)
{
	const char *end = buf + len;
	const char *p, *next, *eol, *colon;

	if (*pos == 0) {
		/* skip the start line */
		sip_line_end(buf, end, &next);
		*pos = (size_t)(next - buf);
	}
	p = buf + *pos;
	while (p < end) {
		eol = sip_line_end(p, end, &next);
		if (eol == p) {
			*pos = len; /* blank line: the headers end here */
			return false;
		}
		while (next < end && text_is_ws(*next)) /* folded continuation lines */
			eol = sip_line_end(next, end, &next);
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon) { /* not a header line; libosip2 judges the message */
			p = next;
			continue;
		}
		*pos = (size_t)(next - buf);
		*name = sip_str_trim(p, colon);
		*value = sip_str_trim(colon + 1, eol);
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
	*elem = sip_str_trim(start, p);
	/* after a trailing comma one more (empty) element follows */
	*pos = p < end ? (size_t)(p + 1 - v->p) : v->len + 1;
	return true;
}

/* Which recorded header a trimmed header name is (full or compact form). */
enum sipmsg_hdr sipmsg_hdr_identify(const struct sip_str *n)
{
	if (n->len == 0)
		return SIPMSG_HDR_OTHER;
	if (n->len == 1) {
		switch (text_to_lower(n->p[0])) {
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
	switch (text_to_lower(n->p[0])) {
	case 'a':
		return text_mem_ieq(n->p, n->len, "Authorization") ? SIPMSG_HDR_AUTHORIZATION
							      : SIPMSG_HDR_OTHER;
	case 'v':
		return text_mem_ieq(n->p, n->len, "Via") ? SIPMSG_HDR_VIA : SIPMSG_HDR_OTHER;
	case 'f':
		return text_mem_ieq(n->p, n->len, "From") ? SIPMSG_HDR_FROM : SIPMSG_HDR_OTHER;
	case 't':
		return text_mem_ieq(n->p, n->len, "To") ? SIPMSG_HDR_TO : SIPMSG_HDR_OTHER;
	case 'c':
		if (text_mem_ieq(n->p, n->len, "Call-ID"))
			return SIPMSG_HDR_CALL_ID;
		if (text_mem_ieq(n->p, n->len, "CSeq"))
			return SIPMSG_HDR_CSEQ;
		if (text_mem_ieq(n->p, n->len, "Contact"))
			return SIPMSG_HDR_CONTACT;
		if (text_mem_ieq(n->p, n->len, "Content-Length"))
			return SIPMSG_HDR_CLEN;
		if (text_mem_ieq(n->p, n->len, "Content-Type"))
			return SIPMSG_HDR_CTYPE;
		return SIPMSG_HDR_OTHER;
	case 'e':
		return text_mem_ieq(n->p, n->len, "Expires") ? SIPMSG_HDR_EXPIRES : SIPMSG_HDR_OTHER;
	case 'm':
		return text_mem_ieq(n->p, n->len, "Max-Forwards") ? SIPMSG_HDR_MAXFWD
							     : SIPMSG_HDR_OTHER;
	case 'p':
		return text_mem_ieq(n->p, n->len, "Path") ? SIPMSG_HDR_PATH : SIPMSG_HDR_OTHER;
	case 'r':
		return text_mem_ieq(n->p, n->len, "Require") ? SIPMSG_HDR_REQUIRE : SIPMSG_HDR_OTHER;
	case 's':
		return text_mem_ieq(n->p, n->len, "Supported") ? SIPMSG_HDR_SUPPORTED
							  : SIPMSG_HDR_OTHER;
	case 'u':
		return text_mem_ieq(n->p, n->len, "User-Agent") ? SIPMSG_HDR_USER_AGENT
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
	enum sipmsg_hdr id = sipmsg_hdr_identify(&n);
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
	return c.len == 1 && sipmsg_hdr_identify(&c) == id ? id : SIPMSG_HDR_OTHER;
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
		if (sipmsg_hdr_identify(&name) == id)
			return true;
	return false;
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
		if (sip_name_is(&hn, name, compact))
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
		while (p < end && text_is_lws(*p))
			p++;
		ns = p;
		while (p < end && *p != '=' && *p != ';' && *p != ',' && !text_is_lws(*p))
			p++;
		ne = p;
		while (p < end && text_is_lws(*p))
			p++;
		vs = ve = ne;
		if (p < end && *p == '=') {
			p++;
			while (p < end && text_is_lws(*p))
				p++;
			vs = p;
			if (p < end && *p == '"') {
				for (p++; p < end && *p != '"'; p++)
					if (*p == '\\' && p + 1 < end)
						p++;
				if (p < end)
					p++;
			} else {
				while (p < end && *p != ';' && *p != ',' && !text_is_lws(*p))
					p++;
			}
			ve = p;
		}
		if (text_mem_ieq(ns, (size_t)(ne - ns), name)) {
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

