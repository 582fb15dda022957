/* Digest credentials (creds.c): the Authorization header read into its fields, with the
 * checks RFC 7616 asks of their syntax, before any secret is involved. */
#ifndef SIPREG_REGISTRAR_CREDS_H
#define SIPREG_REGISTRAR_CREDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/digest.h"
#include "sip/register.h"

/* Credentials from an Authorization header; strings point into the message. */
struct auth_creds {
	enum digest_alg alg;
	struct sip_str username, realm, nonce, uri, response, cnonce, qop, nc, opaque;
	bool has_qop;
	uint32_t nc_value;
};

/* Find the Authorization header whose realm is realm. Returns 0, ENOENT (none for this
 * realm) or EBADMSG (malformed: answer 400). */
int auth_creds_parse(const struct sip_register *reg, const struct sip_str *realm,
		     struct auth_creds *c);
/* Parse one Authorization value ("Digest username=..., ...") into c, pointing into value.
 * Returns 0 or EBADMSG; on EBADMSG c->realm is set when the realm was read. */
int auth_creds_parse_value(const struct sip_str *value, struct auth_creds *c);

/* A quoted value without its backslash escapes. When there are none, *out is in itself;
 * otherwise the bytes go to buf. false when it does not fit. */
bool auth_unquote(const struct sip_str *in, char *buf, size_t cap, struct sip_str *out);
/* Only hex digits (and at least one). */
bool auth_all_hex(const struct sip_str *s);

#endif
