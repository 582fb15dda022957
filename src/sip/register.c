/* The REGISTER view: one extraction from the parse's header index into plain fields, the
 * only place after the parse that reads a REGISTER's headers. */
#include "sip/register.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int sip_list_read(const struct sipmsg *m, enum sipmsg_hdr id, bool split, struct sip_list *l)
{
	size_t max = SIP_LIST_INLINE, n;

	memset(l, 0, sizeof(*l));
	l->v = l->inline_v;
	n = sipmsg_hdr_values(m, id, split, l->inline_v, max);
	l->n = n;
	while (n == max && max < SIP_LIST_MAX) {
		struct sip_str *nv;

		max *= 4;
		nv = realloc(l->heap, max * sizeof(*nv));
		if (!nv)
			return ENOMEM;
		l->heap = nv;
		n = sipmsg_hdr_values(m, id, split, nv, max);
		l->v = nv;
		l->n = n;
	}
	return 0;
}

void sip_list_clear(struct sip_list *l)
{
	free(l->heap);
	memset(l, 0, sizeof(*l));
}

static void contact_read(const struct sipmsg_contact *c, struct sip_register_contact *rc)
{
	rc->uri = c->uri;
	rc->params = c->params;
	rc->star = c->uri.len == 1 && c->uri.p[0] == '*';
	rc->has_expires = sipmsg_param(&c->params, "expires", &rc->expires);
	rc->has_q = sipmsg_param(&c->params, "q", &rc->q);
	rc->has_instance = sipmsg_param(&c->params, "+sip.instance", &rc->instance);
	rc->has_reg_id = sipmsg_param(&c->params, "reg-id", &rc->reg_id);
}

int sip_register_read(const struct sipmsg *m, struct sip_register *v)
{
	const osip_uri_t *ruri = m->osip ? osip_message_get_uri(m->osip) : NULL;
	struct sip_str vals[2];
	int err;

	memset(v, 0, sizeof(*v));
	v->ruri = m->ruri;
	if (ruri && ruri->host)
		v->ruri_host = sip_str_c(ruri->host);
	v->to_uri = m->to_uri;
	v->call_id = m->call_id;
	v->cseq = m->cseq;
	v->expires_hdr = m->expires_hdr;
	if (sipmsg_hdr_values(m, SIPMSG_HDR_USER_AGENT, false, vals, 1) == 1)
		v->user_agent = vals[0];
	v->contact_star = m->contact_star;
	v->n_contact_values = sipmsg_hdr_values(m, SIPMSG_HDR_CONTACT, true, vals, 2);
	/* The registrar refuses more (400); reading them would only cost memory. */
	v->n_contacts = m->n_contacts > SIP_LIST_MAX ? SIP_LIST_MAX + 1 : m->n_contacts;
	if (m->n_contacts && m->n_contacts <= SIP_LIST_MAX) {
		v->contacts = calloc(m->n_contacts, sizeof(*v->contacts));
		if (!v->contacts)
			return ENOMEM;
		for (size_t i = 0; i < m->n_contacts; i++)
			contact_read(&m->contacts[i], &v->contacts[i]);
	}
	err = sip_list_read(m, SIPMSG_HDR_REQUIRE, true, &v->require);
	if (!err)
		err = sip_list_read(m, SIPMSG_HDR_SUPPORTED, true, &v->supported);
	if (!err)
		err = sip_list_read(m, SIPMSG_HDR_PATH, true, &v->path);
	if (!err)
		err = sip_list_read(m, SIPMSG_HDR_AUTHORIZATION, false, &v->authorization);
	return err;
}

void sip_register_clear(struct sip_register *v)
{
	free(v->contacts);
	sip_list_clear(&v->require);
	sip_list_clear(&v->supported);
	sip_list_clear(&v->path);
	sip_list_clear(&v->authorization);
	memset(v, 0, sizeof(*v));
}
