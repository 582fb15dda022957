/* RFC 3261 §10.3 as pure decisions: the refusals that need no stored state, the change-set
 * handed to the location service, and the Contact list of the 200 OK.
 *
 * DESIGN: registrar_check() walks the steps of §10.3 in RFC order and stops at the first
 * refusal, so the whole REGISTER is refused before anything is stored (step 7's stored-state
 * part, CSeq ordering and max_contacts, is the backend's, applied atomically). Steps 3 and
 * 4 (authentication, authorization) need the directory and run later in server.c; their
 * place in the order only matters for which refusal wins, and every refusal here is one a
 * client cannot fix by authenticating. Nothing is copied that need not be: the change-set
 * points into the message, and d owns only the keys, the changes and the joined Path. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "registrar/registrar.h"
#include "util/text.h"

/* RFC 3261 §10.3 step 7: 423 is allowed only for intervals "smaller than one hour". */
#define REGISTRAR_423_CEILING 3600
/* reg-id is 1 to 2^31-1 (RFC 5626 §4.2 grammar). */
#define REGISTRAR_REG_ID_MAX 2147483647u

static const char reason_bad_contact_star[] =
    "Invalid Contact: * needs Expires: 0 and no other Contact";

static void decision_refuse(struct reg_decision *d, int status, const char *reason)
{
	d->status = status;
	d->reason = reason;
}

static bool registrar_domain_served(const struct registrar_conf *cfg, const char *host,
				    size_t len)
{
	for (size_t i = 0; i < cfg->n_domains; i++) {
		if (text_mem_ieq(host, len, cfg->domains[i]))
			return true;
	}
	return false;
}

static const char *registrar_domain_reason(const struct registrar_conf *cfg)
{
	return cfg->unknown_domain_status == 403 ? "Forbidden" : "Not Found";
}

static int registrar_domain_status(const struct registrar_conf *cfg)
{
	return cfg->unknown_domain_status == 403 ? 403 : 404;
}

/* Is tag (a token; tokens compare case-insensitively, RFC 3261 §7.3.1) one we support?
 * Only "path" (RFC 3327). Not "outbound": we keep +sip.instance and reg-id with the
 * binding but do not keep flows or answer Require: outbound (RFC 5626 §6), so claiming
 * it would make a UA rely on flow recovery we do not do. */
static bool registrar_option_supported(const struct sip_str *tag)
{
	return text_mem_ieq(tag->p, tag->len, "path");
}

/* Step 2: Require. The Unsupported list is written into aor_buf: a 420 stops the check
 * before step 5 needs that buffer, and server.c wants a C string. Tags that would not
 * fit are left out of the list (the 420 stands all the same). */
static void registrar_check_require(const struct sip_list *require, struct reg_decision *d)
{
	const struct sip_str *v = require->v;
	size_t used = 0;

	for (size_t i = 0; i < require->n; i++) {
		if (v[i].len == 0 || registrar_option_supported(&v[i]))
			continue;
		if (!d->status)
			decision_refuse(d, 420, "Bad Extension");
		if (used + (used ? 2 : 0) + v[i].len + 1 > sizeof(d->aor_buf))
			continue;
		if (used) {
			memcpy(d->aor_buf + used, ", ", 2);
			used += 2;
		}
		memcpy(d->aor_buf + used, v[i].p, v[i].len);
		used += v[i].len;
	}
	d->aor_buf[used] = '\0';
	if (d->status)
		d->unsupported = d->aor_buf;
}

bool registrar_require_unsupported(const struct sip_list *require, char *buf, size_t len)
{
	struct reg_decision d = { 0 };
	bool refused;

	if (len == 0)
		return false;
	registrar_check_require(require, &d);
	refused = d.status == 420;
	if (refused)
		snprintf(buf, len, "%s", d.unsupported);
	registrar_decision_clear(&d);
	return refused;
}

/* RFC 3327 §5.3: the registrar stores the Path values and copies them into the 200.
 * A Path in a REGISTER whose UA did not say Supported: path is left to local policy, and
 * the recommended policy is 420 (Bad Extension) naming path: it lets the UA see that a
 * proxy added a Path it did not ask for. We follow the recommendation, so every binding
 * that carries a Path was registered by a UA that knows about it, and the 200 may always
 * echo it (RFC 3261 §8.2.4: no extension the request did not list in Supported). */
static int registrar_check_path(const struct sip_register *reg, struct reg_decision *d)
{
	const struct sip_str *v = reg->path.v;
	size_t n = reg->path.n, total = 0;
	char *p;

	for (size_t i = 0; i < reg->supported.n; i++) {
		if (text_mem_ieq(reg->supported.v[i].p, reg->supported.v[i].len, "path"))
			d->path_supported = true;
	}
	for (size_t i = 0; i < n; i++)
		total += v[i].len + 1;
	if (total == 0)
		return 0;
	if (!d->path_supported) {
		decision_refuse(d, 420, "Bad Extension");
		d->unsupported = "path";
		return 0;
	}
	d->path = malloc(total);
	if (!d->path)
		return ENOMEM;
	p = d->path;
	for (size_t i = 0; i < n; i++) {
		if (v[i].len == 0)
			continue;
		if (p != d->path)
			*p++ = ',';
		memcpy(p, v[i].p, v[i].len);
		p += v[i].len;
	}
	d->req.path = (struct sip_str){.p = d->path, .len = (size_t)(p - d->path)};
	return 0;
}

/* delta-seconds (RFC 3261 §25.1: 1*DIGIT). Values above 2^32-1 count as 2^32-1
 * (§10.2.1.1 allows it), so a 100-digit value is large, not an error. */
static bool registrar_parse_delta(const struct sip_str *s, uint32_t *out)
{
	uint64_t v = 0;

	if (s->len == 0)
		return false;
	for (size_t i = 0; i < s->len; i++) {
		if (!isdigit((unsigned char)s->p[i]))
			return false;
		if (v <= UINT32_MAX)
			v = v * 10 + (uint64_t)(s->p[i] - '0');
	}
	*out = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
	return true;
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths. */
static bool registrar_parse_q(const struct sip_str *s, int16_t *out)
{
	int v, scale = 100;

	if (s->len == 0 || s->len > 5 || (s->p[0] != '0' && s->p[0] != '1'))
		return false;
	v = (s->p[0] - '0') * 1000;
	if (s->len == 1)
		goto done;
	if (s->p[1] != '.')
		return false;
	for (size_t i = 2; i < s->len; i++) {
		if (!isdigit((unsigned char)s->p[i]))
			return false;
		v += (s->p[i] - '0') * scale;
		scale /= 10;
	}
	if (v > 1000)
		return false;
done:
	*out = (int16_t)v;
	return true;
}

/* +sip.instance (RFC 5626 §4.1, RFC 3840 string value): a quoted string, kept without
 * its quotes (escapes inside are kept as received, so echoing it re-quoted is exact). */
static bool registrar_parse_instance(const struct sip_str *s, struct sip_str *out)
{
	if (s->len < 3 || s->p[0] != '"' || s->p[s->len - 1] != '"')
		return false;
	for (size_t i = 1; i < s->len - 1; i++) {
		if (s->p[i] == '\\') {
			i++;
			if (i >= s->len - 1)
				return false;
		} else if (s->p[i] == '"') {
			return false;
		}
	}
	*out = (struct sip_str){.p = s->p + 1, .len = s->len - 2};
	return true;
}

/* A registrar that stores contacts for a proxy to route to keeps only sip and sips
 * URIs: any absolute URI is legal in Contact (RFC 3261 §20.10), but a mailto: or http:
 * binding is nothing the proxy can send a request to, and §19.1.4 (our binding key)
 * defines equality for SIP URIs only. */
static bool registrar_contact_scheme_ok(const struct sip_str *uri)
{
	const char *colon = uri->len ? memchr(uri->p, ':', uri->len) : NULL;

	if (!colon)
		return false;
	return text_mem_ieq(uri->p, (size_t)(colon - uri->p), "sip") ||
	       text_mem_ieq(uri->p, (size_t)(colon - uri->p), "sips");
}

/* One Contact of step 7 into ch. Returns 0 with ch filled, or a 400 in d; sets *too_brief
 * for a 423 candidate (decided after every Contact was read: a malformed request gets
 * its 400, not a 423 it would retry into a 400). */
static void registrar_contact(const struct registrar_conf *cfg, const struct sip_register *reg,
			      const struct sip_register_contact *c, char *keybuf, size_t keycap,
			      struct reg_change *ch, bool *too_brief, struct reg_decision *d)
{
	uint32_t expires, reg_id;
	size_t keylen;

	if (!registrar_contact_scheme_ok(&c->uri)) {
		decision_refuse(d, 400,
				"Invalid Contact: only sip and sips URIs can be registered");
		return;
	}
	if (sipmsg_uri_key(&c->uri, keybuf, keycap, &keylen) != 0) {
		decision_refuse(d, 400, "Invalid Contact URI");
		return;
	}
	ch->contact = c->uri;
	ch->key = (struct sip_str){.p = keybuf, .len = keylen};

	/* Step 7: the expires parameter, else the Expires header, else our default. */
	if (c->has_expires) {
		/* §10.2.1.1 says a malformed value SHOULD count as 3600, for RFC 2543
		 * dates; no client sends those now, and guessing an hour for a value we
		 * could not read hides a client bug behind a binding it did not ask for. */
		if (!registrar_parse_delta(&c->expires, &expires)) {
			decision_refuse(d, 400, "Invalid Contact: bad expires parameter");
			return;
		}
	} else if (reg->expires_hdr >= 0) {
		expires = reg->expires_hdr > UINT32_MAX ? UINT32_MAX : (uint32_t)reg->expires_hdr;
	} else {
		expires = cfg->default_expires;
		goto clamp; /* our own value: never "too brief" */
	}
	if (expires > 0 && expires < cfg->min_expires && expires < REGISTRAR_423_CEILING)
		*too_brief = true;
clamp:
	if (cfg->max_expires && expires > cfg->max_expires)
		expires = cfg->max_expires;
	ch->expires = expires;

	ch->q = Q_NONE;
	if (c->has_q && !registrar_parse_q(&c->q, &ch->q)) {
		decision_refuse(d, 400, "Invalid Contact: bad q parameter");
		return;
	}

	ch->instance = SIP_STR_NULL;
	if (c->has_instance && !registrar_parse_instance(&c->instance, &ch->instance)) {
		decision_refuse(d, 400, "Invalid Contact: bad +sip.instance parameter");
		return;
	}
	ch->reg_id = 0;
	if (c->has_reg_id) {
		if (!registrar_parse_delta(&c->reg_id, &reg_id) || reg_id == 0 ||
		    reg_id > REGISTRAR_REG_ID_MAX) {
			decision_refuse(d, 400, "Invalid Contact: bad reg-id parameter");
			return;
		}
		/* RFC 5626 §6: a reg-id without an instance-id is ignored. */
		if (ch->instance.len)
			ch->reg_id = reg_id;
	}
}

struct key_ref {
	const struct sip_str *key;
	size_t index;
};

static int key_ref_cmp(const void *a, const void *b)
{
	const struct key_ref *x = a, *y = b;
	size_t n = x->key->len < y->key->len ? x->key->len : y->key->len;
	int c = n ? memcmp(x->key->p, y->key->p, n) : 0;

	if (c)
		return c;
	if (x->key->len != y->key->len)
		return x->key->len < y->key->len ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Two Contacts of one request with the same key (RFC 3261 §19.1.4 equal): RFC 3261 does
 * not say. Applying them in order would leave the last one in place, so that is what we
 * keep; the earlier ones are dropped here, so the backend sees each key once and counts
 * max_contacts right. Sorting (not a pairwise loop) keeps a request with thousands of
 * Contacts cheap. Returns the new count, or 0 with ENOMEM in *errp. */
static size_t registrar_dedupe(struct reg_change *ch, size_t n, int *errp)
{
	struct key_ref *refs;
	bool *drop;
	size_t kept = 0;

	*errp = 0;
	if (n < 2)
		return n;
	refs = calloc(n, sizeof(*refs));
	drop = calloc(n, sizeof(*drop));
	if (!refs || !drop) {
		*errp = ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		refs[i] = (struct key_ref){.key = &ch[i].key, .index = i};
	qsort(refs, n, sizeof(*refs), key_ref_cmp);
	for (size_t i = 0; i + 1 < n; i++) {
		if (sip_str_eq(refs[i].key, refs[i + 1].key))
			drop[refs[i].index] = true;
	}
	for (size_t i = 0; i < n; i++) {
		if (!drop[i])
			ch[kept++] = ch[i];
	}
out:
	free(refs);
	free(drop);
	return kept;
}

/* Step 6 and the per-Contact part of step 7. */
static int registrar_check_contacts(const struct registrar_conf *cfg,
				    const struct sip_register *m, struct reg_decision *d)
{
	size_t keycap = 0, off = 0, n = 0;
	bool too_brief = false;
	int err = 0;

	if (m->contact_star) {
		if (m->n_contact_values != 1 || m->expires_hdr != 0) {
			decision_refuse(d, 400, reason_bad_contact_star);
			return 0;
		}
		d->req.wildcard = true;
		return 0;
	}
	if (m->n_contacts == 0) {
		d->is_query = true;
		return 0;
	}
	if (m->n_contacts > SIP_LIST_MAX || !m->contacts) {
		decision_refuse(d, 400, "Too many Contacts");
		return 0;
	}

	/* A key is the URI re-escaped: each byte may become "%XX". */
	for (size_t i = 0; i < m->n_contacts; i++)
		keycap += 3 * m->contacts[i].uri.len + 16;
	d->changes = calloc(m->n_contacts, sizeof(*d->changes));
	d->keys = malloc(keycap);
	if (!d->changes || !d->keys)
		return ENOMEM;

	for (size_t i = 0; i < m->n_contacts && !d->status; i++) {
		const struct sip_register_contact *c = &m->contacts[i];
		size_t cap = 3 * c->uri.len + 16;

		if (c->star) {
			decision_refuse(d, 400, reason_bad_contact_star);
			break;
		}
		registrar_contact(cfg, m, c, d->keys + off, cap, &d->changes[n], &too_brief, d);
		off += cap;
		n++;
	}
	if (d->status)
		return 0;
	if (too_brief) {
		decision_refuse(d, 423, "Interval Too Brief");
		return 0;
	}
	n = registrar_dedupe(d->changes, n, &err);
	d->req.changes = d->changes;
	d->req.n_changes = n;
	return err;
}

int registrar_check(const struct registrar_conf *cfg, const struct sip_register *req,
		    int64_t now, struct reg_decision *d)
{
	int err;

	memset(d, 0, sizeof(*d));

	/* Step 1: is the Request-URI one of our domains? (We are no proxy to forward to.) */
	if (!req->ruri_host.len ||
	    !registrar_domain_served(cfg, req->ruri_host.p, req->ruri_host.len)) {
		decision_refuse(d, registrar_domain_status(cfg), registrar_domain_reason(cfg));
		return 0;
	}

	/* Step 2: extensions the UA requires, then Path (an extension too, RFC 3327). */
	registrar_check_require(&req->require, d);
	if (d->status)
		return 0;
	err = registrar_check_path(req, d);
	if (err || d->status)
		return err;

	/* Step 5: the address-of-record, canonical, from the raw To URI (libosip2 has
	 * unescaped it, %00 included). Whether the user exists is the directory's call. */
	err =
	    sipmsg_uri_aor(&req->to_uri, d->aor_buf, sizeof(d->aor_buf), &d->user, &d->domain);
	if (err == ENOSPC) {
		decision_refuse(d, 400, "Invalid To: address-of-record too long");
		return 0;
	}
	if (err) {
		decision_refuse(d, 400, "Invalid To: need a sip or sips URI with a user part");
		return 0;
	}
	if (!registrar_domain_served(cfg, d->domain.p, d->domain.len)) {
		decision_refuse(d, registrar_domain_status(cfg), registrar_domain_reason(cfg));
		return 0;
	}
	d->req.aor = (struct sip_str){
	    .p = d->aor_buf, .len = (size_t)(d->domain.p + d->domain.len - d->aor_buf)};

	/* Steps 6 and 7 (the part that needs no stored state). */
	err = registrar_check_contacts(cfg, req, d);
	if (err || d->status)
		return err;

	d->req.call_id = req->call_id;
	d->req.cseq = req->cseq;
	d->req.max_contacts = cfg->max_contacts;
	d->req.now = now;
	d->req.user_agent = req->user_agent;
	return 0;
}

void registrar_decision_clear(struct reg_decision *d)
{
	if (!d)
		return;
	free(d->changes);
	free(d->keys);
	free(d->path);
	memset(d, 0, sizeof(*d));
}

/* RFC 3261 §10.3 step 7 only says an out-of-order REGISTER "fails". We answer 500: the
 * request was well formed and authorised, the failure is one of ordering at our end, and
 * the UA has by then moved on to a later CSeq (it may not send a new REGISTER before the
 * previous one ended, §10.2), so no Retry-After: there is nothing to retry. (Kamailio
 * answers 200 with the current bindings instead, which tells the sender its stale
 * change was stored when it was not.)
 * Too many contacts is policy: 403 says "not allowed", which a UA does not retry in a
 * loop; 503 is for operators who prefer the UA to try another registrar. */
int registrar_outcome_status(const struct registrar_conf *cfg, enum reg_outcome outcome,
			     const char **reason_r)
{
	switch (outcome) {
	case REG_OK:
		*reason_r = "OK";
		return 200;
	case REG_OUT_OF_ORDER:
		*reason_r = "Server Internal Error";
		return 500;
	case REG_TOO_MANY_CONTACTS:
		if (cfg->max_contacts_status == 503) {
			*reason_r = "Service Unavailable";
			return 503;
		}
		*reason_r = "Forbidden: too many contacts";
		return 403;
	}
	*reason_r = "Server Internal Error";
	return 500;
}

/* q in thousandths as the shortest qvalue: 1000 -> "1", 500 -> "0.5", 0 -> "0". Returns
 * the length written into buf (at least 5 bytes). */
static size_t registrar_q_format(int16_t q, char *buf)
{
	size_t n = 5;

	if (q >= 1000 || q <= 0) {
		buf[0] = q > 0 ? '1' : '0';
		return 1;
	}
	buf[0] = '0';
	buf[1] = '.';
	buf[2] = (char)('0' + q / 100);
	buf[3] = (char)('0' + q / 10 % 10);
	buf[4] = (char)('0' + q % 10);
	while (buf[n - 1] == '0')
		n--;
	return n;
}

void registrar_reply_ok(struct sipresp *r, const struct reg_decision *d,
			const struct binding_set *set, int64_t now)
{
	char num[8];

	for (size_t i = 0; set && i < set->n; i++) {
		const struct binding *b = &set->v[i];

		if (b->expires_at <= now)
			continue;
		sipresp_append(r, "Contact: <", 10);
		sipresp_append(r, b->contact.p, b->contact.len);
		sipresp_append(r, ">;expires=", 10);
		sipresp_append_uint(r, (uint64_t)(b->expires_at - now));
		if (b->q != Q_NONE) {
			sipresp_append(r, ";q=", 3);
			sipresp_append(r, num, registrar_q_format(b->q, num));
		}
		/* RFC 5626 §6 stores every Contact parameter with the binding; echoing the
		 * instance (and its reg-id) lets the UA match its own binding. No Require:
		 * outbound, since we do not do outbound (§6: MUST NOT then). */
		if (b->instance.len) {
			sipresp_append(r, ";+sip.instance=\"", 16);
			sipresp_append(r, b->instance.p, b->instance.len);
			sipresp_append(r, "\"", 1);
			if (b->reg_id) {
				sipresp_append(r, ";reg-id=", 8);
				sipresp_append_uint(r, b->reg_id);
			}
		}
		sipresp_append(r, "\r\n", 2);
	}
	if (d->path_supported && d->req.path.len) {
		sipresp_append(r, "Path: ", 6);
		sipresp_append(r, d->req.path.p, d->req.path.len);
		sipresp_append(r, "\r\n", 2);
	}
	sipresp_date(r, now);
}
