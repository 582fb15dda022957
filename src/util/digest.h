/* The cryptographic pieces of digest authentication: HA1/HA2/response for MD5 and SHA-256
 * (RFC 2617, RFC 7616), constant-time comparison, HMAC-SHA256 and base64url for nonces.
 * Pure functions over OpenSSL EVP; no state, no I/O. */
#ifndef SIPREG_DIGEST_H
#define SIPREG_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sipreg/types.h"

/* The digest algorithms of RFC 7616 sipreg speaks; config and auth use the same values. */
enum digest_alg { DIGEST_MD5 = 0, DIGEST_SHA256 };

/* Longest hex digest (SHA-256) without the NUL. */
#define DIGEST_HEX_MAX	64
#define DIGEST_HMAC_LEN 32

/* 32 for MD5, 64 for SHA-256. */
size_t digest_hex_len(enum digest_alg alg);
/* "MD5" or "SHA-256", as written in algorithm= parameters. */
const char *digest_alg_name(enum digest_alg alg);
/* algorithm= value (case-insensitive) -> alg. Returns 0 or EINVAL (unknown, or a -sess
 * variant, which sipreg never offers). */
int digest_alg_parse(const struct sip_str *name, enum digest_alg *algp);

/* hex = lower-case hex of H(parts[0] ":" parts[1] ":" ... parts[n-1]), NUL-terminated;
 * hex must hold DIGEST_HEX_MAX + 1 bytes. Returns 0 or ENOMEM/EIO (OpenSSL failed). */
int digest_hash_hex(enum digest_alg alg, const struct sip_str *parts, size_t n, char *hex);
/* HA1 = H(username:realm:password). */
int digest_ha1(enum digest_alg alg, const struct sip_str *user, const struct sip_str *realm,
	       const struct sip_str *password, char *hex);
/* HA2 = H(method:uri) (qop=auth or no qop). */
int digest_ha2(enum digest_alg alg, const struct sip_str *method, const struct sip_str *uri,
	       char *hex);
/* response = H(HA1:nonce:nc:cnonce:qop:HA2), or H(HA1:nonce:HA2) (RFC 2069) when qop is
 * empty (nc and cnonce are then ignored and may be NULL). */
int digest_response(enum digest_alg alg, const struct sip_str *ha1, const struct sip_str *nonce,
		    const struct sip_str *nc, const struct sip_str *cnonce,
		    const struct sip_str *qop, const struct sip_str *ha2, char *hex);

/* Does given equal the lower-case hex string expected (given compared case-insensitively)?
 * The time taken depends only on the lengths, never on where the strings differ. */
bool digest_hex_equal(const char *expected, size_t len, const struct sip_str *given);

/* HMAC-SHA256(key, parts[0] || parts[1] || ...) into out (DIGEST_HMAC_LEN bytes).
 * Returns 0 or EIO. */
int digest_hmac_sha256(const uint8_t *key, size_t keylen, const struct sip_str *parts, size_t n,
		       uint8_t *out);

/* A keyed HMAC-SHA256 for many messages under one key (the nonce secret): the key
 * schedule is done once. *hp: digest_hmac_free(). Returns 0, ENOMEM or EIO. */
struct digest_hmac;
int digest_hmac_alloc(struct digest_hmac **hp, const uint8_t *key, size_t keylen);
void digest_hmac_free(struct digest_hmac **hp);
/* HMAC of parts[0] || parts[1] || ... into out (DIGEST_HMAC_LEN bytes). Returns 0 or EIO. */
int digest_hmac_run(struct digest_hmac *h, const struct sip_str *parts, size_t n, uint8_t *out);

/* Unpadded base64url (RFC 4648 §5) of len bytes (at most DIGEST_B64URL_MAX, else nothing
 * is written and 0 returned) into out, which must hold digest_b64url_len(len) + 1 bytes;
 * NUL-terminated. Returns the length written. */
#define DIGEST_B64URL_MAX 192
size_t digest_b64url_len(size_t len);
size_t digest_b64url_encode(const uint8_t *in, size_t len, char *out);
/* Decode unpadded base64url. Returns 0, or EINVAL (bad character, impossible length,
 * non-canonical trailing bits) or ENOSPC (more than outcap bytes). */
int digest_b64url_decode(const char *in, size_t len, uint8_t *out, size_t outcap,
			 size_t *outlen);

#endif
