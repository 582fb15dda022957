/* What a REGISTER carries, read once right after the parse (register.c): the §10.3 rules,
 * digest auth and the response writer take this view and never walk headers themselves,
 * so they are pure functions over it and testable without SIP text. Every string points
 * into the message: the view lives no longer than it. */
#ifndef SIPREG_SIP_REGISTER_H
#define SIPREG_SIP_REGISTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sip/msg.h"

/* Values kept in the view itself before a list turns to the heap. */
#define SIP_LIST_INLINE 8
/* No list holds more than this: a crafted message cannot make us allocate without bound
 * (a 64 KiB message holds far fewer). */
#define SIP_LIST_MAX 4096

/* The values of one header, split at top-level commas, trimmed, in message order. */
struct sip_list {
	const struct sip_str *v; /* inline or heap */
	size_t n;
	struct sip_str inline_v[SIP_LIST_INLINE];
	struct sip_str *heap; /* owned when the list outgrew inline_v */
};

/* One Contact with the parameters the registrar reads (raw values; has_* says present). */
struct sip_register_contact {
	struct sip_str uri;    /* raw, without <> */
	struct sip_str params; /* raw header params, starting at ';' or empty */
	struct sip_str expires, q, instance, reg_id;
	bool has_expires, has_q, has_instance, has_reg_id;
	bool star; /* the value "*" */
};

struct sip_register {
	struct sip_str ruri;      /* raw Request-URI */
	struct sip_str ruri_host; /* its host as libosip2 read it (empty when none) */
	struct sip_str to_uri;    /* raw To URI: the AOR's source */
	struct sip_str call_id;
	uint32_t cseq;
	int64_t expires_hdr; /* Expires header, -1 = absent */
	struct sip_str user_agent; /* first User-Agent value, empty when none */
	bool contact_star;	   /* a Contact: * was present */
	size_t n_contact_values;   /* Contact values (at most 2 counted: * must be alone) */
	struct sip_register_contact *contacts; /* owned, n_contacts */
	size_t n_contacts;
	struct sip_list require, supported, path, authorization;
};

/* Fill v from m (a parsed REGISTER; for other methods the lists are read alike). Returns 0
 * or ENOMEM; sip_register_clear() in every case. */
int sip_register_read(const struct sipmsg *m, struct sip_register *v);
void sip_register_clear(struct sip_register *v);

/* The values of header id of m into l (split at commas when split). Returns 0 or ENOMEM;
 * sip_list_clear() in every case. */
int sip_list_read(const struct sipmsg *m, enum sipmsg_hdr id, bool split, struct sip_list *l);
void sip_list_clear(struct sip_list *l);

#endif
