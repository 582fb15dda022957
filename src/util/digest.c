/* Digest hashes (RFC 2617 / RFC 7616), HMAC-SHA256 and base64url over OpenSSL EVP.
 * Algorithms are fetched once per process and kept: an implicit fetch on every hash costs
 * more than the hash of a short SIP string. */
#include "util/digest.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

static EVP_MD *digest_md_cache[2];
static EVP_MD_CTX *digest_md_ctx;
static EVP_MAC *digest_hmac_cache;

static const EVP_MD *digest_md(enum digest_alg alg)
{
	int i = alg == DIGEST_SHA256 ? 1 : 0;

	if (!digest_md_cache[i])
		digest_md_cache[i] = EVP_MD_fetch(NULL, i ? "SHA2-256" : "MD5", NULL);
	return digest_md_cache[i];
}

size_t digest_hex_len(enum digest_alg alg)
{
	return alg == DIGEST_SHA256 ? 64 : 32;
}

const char *digest_alg_name(enum digest_alg alg)
{
	return alg == DIGEST_SHA256 ? "SHA-256" : "MD5";
}

int digest_alg_parse(const struct sip_str *name, enum digest_alg *algp)
{
	if (name->len == 3 && strncasecmp(name->p, "MD5", 3) == 0) {
		*algp = DIGEST_MD5;
		return 0;
	}
	if (name->len == 7 && strncasecmp(name->p, "SHA-256", 7) == 0) {
		*algp = DIGEST_SHA256;
		return 0;
	}
	return EINVAL;
}

/* OpenSSL's hex is upper case; digest (RFC 7616 §3.4.1) compares lower-case hex. */
static int digest_to_hex(const unsigned char *bin, size_t len, char *hex)
{
	if (!OPENSSL_buf2hexstr_ex(hex, 2 * len + 1, NULL, bin, (long)len, '\0'))
		return EIO;
	for (size_t i = 0; i < 2 * len; i++)
		hex[i] = (char)tolower((unsigned char)hex[i]);
	return 0;
}

int digest_hash_hex(enum digest_alg alg, const struct sip_str *parts, size_t n, char *hex)
{
	const EVP_MD *md = digest_md(alg);
	unsigned char bin[EVP_MAX_MD_SIZE];
	unsigned int binlen = 0;
	EVP_MD_CTX *ctx = digest_md_ctx;
	int err = EIO;

	hex[0] = '\0';
	if (!md)
		return EIO;
	/* One context per process, reset by each init: allocating one per hash cost as much
	 * as the hash itself. The daemon is one thread per process. */
	if (!ctx)
		ctx = digest_md_ctx = EVP_MD_CTX_new();
	if (!ctx)
		return ENOMEM;
	if (!EVP_DigestInit_ex(ctx, md, NULL))
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && !EVP_DigestUpdate(ctx, ":", 1))
			goto out;
		if (parts[i].len && !EVP_DigestUpdate(ctx, parts[i].p, parts[i].len))
			goto out;
	}
	if (!EVP_DigestFinal_ex(ctx, bin, &binlen) || binlen * 2 != digest_hex_len(alg))
		goto out;
	err = digest_to_hex(bin, binlen, hex);
out:
	OPENSSL_cleanse(bin, sizeof(bin));
	return err;
}

int digest_ha1(enum digest_alg alg, const struct sip_str *user, const struct sip_str *realm,
	       const struct sip_str *password, char *hex)
{
	const struct sip_str parts[3] = {*user, *realm, *password};

	return digest_hash_hex(alg, parts, 3, hex);
}

int digest_ha2(enum digest_alg alg, const struct sip_str *method, const struct sip_str *uri,
	       char *hex)
{
	const struct sip_str parts[2] = {*method, *uri};

	return digest_hash_hex(alg, parts, 2, hex);
}

int digest_response(enum digest_alg alg, const struct sip_str *ha1, const struct sip_str *nonce,
		    const struct sip_str *nc, const struct sip_str *cnonce,
		    const struct sip_str *qop, const struct sip_str *ha2, char *hex)
{
	if (!qop || qop->len == 0) {
		const struct sip_str parts[3] = {*ha1, *nonce, *ha2};

		return digest_hash_hex(alg, parts, 3, hex);
	}
	if (!nc || !cnonce)
		return EINVAL;
	const struct sip_str parts[6] = {*ha1, *nonce, *nc, *cnonce, *qop, *ha2};

	return digest_hash_hex(alg, parts, 6, hex);
}

bool digest_hex_equal(const char *expected, size_t len, const struct sip_str *given)
{
	unsigned char diff = 0;

	if (given->len != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)given->p[i];

		/* Fold A-F to a-f without a branch on the secret-dependent byte. */
		unsigned char upper = (unsigned char)(((unsigned)(c - 'A') < 6u) << 5);

		diff |= (unsigned char)((c | upper) ^ (unsigned char)expected[i]);
	}
	return diff == 0;
}

int digest_hmac_sha256(const uint8_t *key, size_t keylen, const struct sip_str *parts, size_t n,
		       uint8_t *out)
{
	char mdname[] = "SHA2-256";
	OSSL_PARAM params[2] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, mdname, 0),
	    OSSL_PARAM_construct_end(),
	};
	EVP_MAC_CTX *ctx;
	size_t outlen = 0;
	int err = EIO;

	if (!digest_hmac_cache)
		digest_hmac_cache = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!digest_hmac_cache)
		return EIO;
	ctx = EVP_MAC_CTX_new(digest_hmac_cache);
	if (!ctx)
		return ENOMEM;
	if (!EVP_MAC_init(ctx, key, keylen, params))
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (parts[i].len &&
		    !EVP_MAC_update(ctx, (const unsigned char *)parts[i].p, parts[i].len))
			goto out;
	}
	if (!EVP_MAC_final(ctx, out, &outlen, DIGEST_HMAC_LEN) || outlen != DIGEST_HMAC_LEN)
		goto out;
	err = 0;
out:
	EVP_MAC_CTX_free(ctx);
	return err;
}

/* HMAC (RFC 2104) by hand over EVP digests: the SHA-256 states after the key's inner and
 * outer pads are computed once, and each MAC copies them and hashes only the message, two
 * or three compressions. EVP_MAC re-initialised per message cost about twice as much,
 * and this runs for every challenge and every To tag. */
#define HMAC_BLOCK 64

struct digest_hmac {
	EVP_MD_CTX *inner, *outer; /* the states after key ^ ipad and key ^ opad */
	EVP_MD_CTX *work;
};

int digest_hmac_alloc(struct digest_hmac **hp, const uint8_t *key, size_t keylen)
{
	const EVP_MD *md = digest_md(DIGEST_SHA256);
	uint8_t k[HMAC_BLOCK] = {0}, pad[HMAC_BLOCK];
	unsigned int klen = 0;
	struct digest_hmac *h;
	int err = EIO;

	*hp = NULL;
	if (!md)
		return EIO;
	h = calloc(1, sizeof(*h));
	if (!h)
		return ENOMEM;
	h->inner = EVP_MD_CTX_new();
	h->outer = EVP_MD_CTX_new();
	h->work = EVP_MD_CTX_new();
	if (!h->inner || !h->outer || !h->work) {
		err = ENOMEM;
		goto fail;
	}
	/* A key longer than a block is replaced by its hash. */
	if (keylen > HMAC_BLOCK) {
		if (!EVP_DigestInit_ex(h->work, md, NULL) ||
		    !EVP_DigestUpdate(h->work, key, keylen) ||
		    !EVP_DigestFinal_ex(h->work, k, &klen))
			goto fail;
	} else if (keylen) {
		memcpy(k, key, keylen);
	}
	for (size_t i = 0; i < HMAC_BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	if (!EVP_DigestInit_ex(h->inner, md, NULL) ||
	    !EVP_DigestUpdate(h->inner, pad, sizeof(pad)))
		goto fail;
	for (size_t i = 0; i < HMAC_BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	if (!EVP_DigestInit_ex(h->outer, md, NULL) ||
	    !EVP_DigestUpdate(h->outer, pad, sizeof(pad)))
		goto fail;
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(pad, sizeof(pad));
	*hp = h;
	return 0;
fail:
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(pad, sizeof(pad));
	digest_hmac_free(&h);
	return err;
}

void digest_hmac_free(struct digest_hmac **hp)
{
	if (!*hp)
		return;
	/* EVP_MD_CTX_free cleanses the states (they stand for the key). */
	EVP_MD_CTX_free((*hp)->inner);
	EVP_MD_CTX_free((*hp)->outer);
	EVP_MD_CTX_free((*hp)->work);
	free(*hp);
	*hp = NULL;
}

int digest_hmac_run(struct digest_hmac *h, const struct sip_str *parts, size_t n, uint8_t *out)
{
	uint8_t ih[DIGEST_HMAC_LEN];
	unsigned int len = 0;
	int err = EIO;

	if (!EVP_MD_CTX_copy_ex(h->work, h->inner))
		return EIO;
	for (size_t i = 0; i < n; i++) {
		if (parts[i].len && !EVP_DigestUpdate(h->work, parts[i].p, parts[i].len))
			goto out;
	}
	if (!EVP_DigestFinal_ex(h->work, ih, &len) || len != sizeof(ih))
		goto out;
	if (!EVP_MD_CTX_copy_ex(h->work, h->outer) || !EVP_DigestUpdate(h->work, ih, len) ||
	    !EVP_DigestFinal_ex(h->work, out, &len) || len != DIGEST_HMAC_LEN)
		goto out;
	err = 0;
out:
	OPENSSL_cleanse(ih, sizeof(ih));
	return err;
}

size_t digest_b64url_len(size_t len)
{
	return len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
}

/* OpenSSL writes the standard alphabet with padding; RFC 4648 §5 swaps two characters and
 * drops the padding. */
size_t digest_b64url_encode(const uint8_t *in, size_t len, char *out)
{
	unsigned char tmp[(DIGEST_B64URL_MAX + 2) / 3 * 4 + 1];
	size_t n = digest_b64url_len(len);

	if (len > DIGEST_B64URL_MAX) {
		out[0] = '\0';
		return 0;
	}
	EVP_EncodeBlock(tmp, in, (int)len);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
	out[n] = '\0';
	return n;
}

int digest_b64url_decode(const char *in, size_t len, uint8_t *out, size_t outcap,
			 size_t *outlen)
{
	unsigned char tmp[(DIGEST_B64URL_MAX + 2) / 3 * 4 + 1];
	unsigned char bin[DIGEST_B64URL_MAX + 3];
	char again[sizeof(tmp)];
	size_t padded = (len + 3) / 4 * 4, n;
	int got;

	*outlen = 0;
	if (len % 4 == 1 || padded >= sizeof(tmp))
		return EINVAL;
	for (size_t i = 0; i < len; i++) {
		/* The standard alphabet's two characters and padding are not base64url. */
		if (in[i] == '+' || in[i] == '/' || in[i] == '=')
			return EINVAL;
		tmp[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : (unsigned char)in[i];
	}
	memset(tmp + len, '=', padded - len);
	got = padded ? EVP_DecodeBlock(bin, tmp, (int)padded) : 0;
	if (got < 0)
		return EINVAL;
	n = (size_t)got - (padded - len); /* EVP_DecodeBlock counts padding as zero bytes */
	/* Encoding back must give the input: non-zero leftover bits would let two spellings
	 * decode to one nonce. */
	if (digest_b64url_encode(bin, n, again) != len || memcmp(again, in, len) != 0)
		return EINVAL;
	if (n > outcap)
		return ENOSPC;
	memcpy(out, bin, n);
	*outlen = n;
	return 0;
}
