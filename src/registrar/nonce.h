/* Cluster nonces (nonce.c): made and checked with the shared secret's HMAC, no state. */
#ifndef SIPREG_REGISTRAR_NONCE_H
#define SIPREG_REGISTRAR_NONCE_H

#include <stdint.h>

#include "sipreg/types.h"
#include "util/digest.h"

/* Length of a nonce as sent (base64url of 32 bytes). */
#define NONCE_B64_LEN  43
/* A nonce stamped this far in the future (another instance's clock) is still accepted. */
#define NONCE_MAX_SKEW 60

enum auth_nonce_state { AUTH_NONCE_VALID = 0, AUTH_NONCE_STALE, AUTH_NONCE_INVALID };

/* What makes this process's nonces: the keyed HMAC (borrowed) and a salt that differs per
 * nonce, so two challenges in one second differ. */
struct nonce_key {
	struct digest_hmac *mac;
	uint32_t salt_prefix; /* random per process */
	uint32_t salt_counter;
};

/* A fresh nonce for realm at now into out (NONCE_B64_LEN + 1 bytes). Returns 0 or EINVAL
 * (realm too long) or the HMAC's error. */
int nonce_make(struct nonce_key *k, const struct sip_str *realm, int64_t now, char *out);
/* Its MAC under k for realm (any case), its age against ttl seconds. */
enum auth_nonce_state nonce_check(const struct nonce_key *k, const struct sip_str *nonce,
				  const struct sip_str *realm, int64_t now, uint32_t ttl);
/* The timestamp a nonce carries (call after nonce_check: it checks no MAC). */
int nonce_issued(const struct sip_str *nonce, int64_t *issued);

#endif
