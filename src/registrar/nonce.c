/* Stateless cluster nonces: a timestamp, a salt and an HMAC under the shared secret, in
 * base64url. Any instance holding the secret verifies what another issued; nothing is
 * stored per challenge. */
#include "registrar/nonce.h"

#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <string.h>

/* Nonce layout. 16 bytes of MAC = 128 bits: forging one is out of reach. */
#define NONCE_TS_LEN   8
#define NONCE_SALT_LEN 8
#define NONCE_MAC_LEN  16
#define NONCE_RAW_LEN  (NONCE_TS_LEN + NONCE_SALT_LEN + NONCE_MAC_LEN)
#define REALM_MAX      256

static void be64_put(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, sizeof(v));
}

static uint64_t be64_get(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return be64toh(v);
}

static int nonce_mac(const struct nonce_key *k, const uint8_t *head, const struct sip_str *realm,
		     uint8_t *mac)
{
	char low[REALM_MAX];
	uint8_t full[DIGEST_HMAC_LEN];
	struct sip_str parts[2];
	int err;

	if (realm->len > sizeof(low))
		return EINVAL;
	for (size_t i = 0; i < realm->len; i++)
		low[i] = (char)tolower((unsigned char)realm->p[i]);
	parts[0] =
	    (struct sip_str){.p = (const char *)head, .len = NONCE_TS_LEN + NONCE_SALT_LEN};
	parts[1] = (struct sip_str){.p = low, .len = realm->len};
	err = digest_hmac_run(k->mac, parts, 2, full);
	if (!err)
		memcpy(mac, full, NONCE_MAC_LEN);
	return err;
}

int nonce_make(struct nonce_key *k, const struct sip_str *realm, int64_t now, char *out)
{
	uint8_t raw[NONCE_RAW_LEN];
	int err;

	be64_put(raw, (uint64_t)now);
	be64_put(raw + NONCE_TS_LEN, (uint64_t)k->salt_prefix << 32 | k->salt_counter++);
	err = nonce_mac(k, raw, realm, raw + NONCE_TS_LEN + NONCE_SALT_LEN);
	if (err)
		return err;
	digest_b64url_encode(raw, sizeof(raw), out);
	return 0;
}

int nonce_issued(const struct sip_str *nonce, int64_t *issued)
{
	uint8_t raw[NONCE_RAW_LEN];
	size_t len = 0;

	if (nonce->len != NONCE_B64_LEN ||
	    digest_b64url_decode(nonce->p, nonce->len, raw, sizeof(raw), &len) != 0 ||
	    len != sizeof(raw))
		return EINVAL;
	*issued = (int64_t)be64_get(raw);
	return 0;
}

enum auth_nonce_state nonce_check(const struct nonce_key *k, const struct sip_str *nonce,
				  const struct sip_str *realm, int64_t now, uint32_t ttl)
{
	uint8_t raw[NONCE_RAW_LEN], mac[NONCE_MAC_LEN];
	size_t len = 0;
	int64_t ts;

	if (nonce->len != NONCE_B64_LEN ||
	    digest_b64url_decode(nonce->p, nonce->len, raw, sizeof(raw), &len) != 0 ||
	    len != sizeof(raw))
		return AUTH_NONCE_INVALID;
	if (nonce_mac(k, raw, realm, mac) != 0 ||
	    CRYPTO_memcmp(mac, raw + NONCE_TS_LEN + NONCE_SALT_LEN, NONCE_MAC_LEN) != 0)
		return AUTH_NONCE_INVALID;
	ts = (int64_t)be64_get(raw);
	if (ts > now + NONCE_MAX_SKEW)
		return AUTH_NONCE_INVALID;
	if (now - ts > (int64_t)ttl)
		return AUTH_NONCE_STALE;
	return AUTH_NONCE_VALID;
}
