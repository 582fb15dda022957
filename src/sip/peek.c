/* The retransmission peek: a request's transaction id read from the raw bytes without the
 * full parse, so the transaction table (tsx.c) can answer a retransmission cheaply. */
#include <string.h>

#include "sip/msg.h"
#include "sip/scan.h"

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
		if (!sip_parse_uint(&ps, 65535, false, &port) || port == 0)
			return false;
	}
	id->port = (uint16_t)port;
	return true;
}

bool sipmsg_peek_tsx_id(const char *buf, size_t len, struct sipmsg_tsx_id *id)
{
	struct sip_str name, value, proto, sent_by, prm;
	struct sip_reqline rl;
	const char *p, *end, *semi;
	size_t pos = 0;

	memset(id, 0, sizeof(*id));
	if (!buf || len < 16 || !sip_reqline_split(buf, len, &rl) || !sip_version_ok(&rl.version) ||
	    text_mem_ieq(rl.method.p, rl.method.len, "ACK"))
		return false;
	id->method = rl.method;
	do {
		if (!sipmsg_raw_header_next(buf, len, &pos, &name, &value, NULL))
			return false;
	} while (!text_mem_ieq(name.p, name.len, "Via") && !text_mem_ieq(name.p, name.len, "v"));
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
		if (prm.len > 7 && text_mem_ieq(prm.p, 7, "branch=")) {
			if (id->branch.p)
				return false; /* twice: leave it to the full parse */
			id->branch = (struct sip_str){.p = prm.p + 7, .len = prm.len - 7};
		}
		semi = next;
	}
	return id->branch.len > 7 && memcmp(id->branch.p, "z9hG4bK", 7) == 0;
}

