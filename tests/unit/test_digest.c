/* Unit tests for src/util/digest.c: the RFC 2617 and RFC 7616 example vectors, RFC 2069 (no
 * qop) responses, HMAC-SHA256 (RFC 4231) and base64url (RFC 4648). */
#include "check.h"
#include "util/digest.h"

#include <errno.h>

#define S(lit) SIP_STR_LIT(lit)

/* RFC 2617 §3.5: GET /dir/index.html, qop=auth. */
static void test_digest_rfc2617_md5_qop_auth(void)
{
	char ha1[DIGEST_HEX_MAX + 1], ha2[DIGEST_HEX_MAX + 1], resp[DIGEST_HEX_MAX + 1];
	struct sip_str user = S("Mufasa"), realm = S("testrealm@host.com"),
		       pw = S("Circle Of Life"), method = S("GET"), uri = S("/dir/index.html"),
		       nonce = S("dcd98b7102dd2f0e8b11d0f600bfb0c093"), nc = S("00000001"),
		       cnonce = S("0a4f113b"), qop = S("auth");

	CHECK_INT(digest_ha1(DIGEST_MD5, &user, &realm, &pw, ha1), 0);
	CHECK_STR(ha1, "939e7578ed9e3c518a452acee763bce9");
	CHECK_INT(digest_ha2(DIGEST_MD5, &method, &uri, ha2), 0);
	struct sip_str h1 = sip_str_c(ha1), h2 = sip_str_c(ha2);

	CHECK_INT(digest_response(DIGEST_MD5, &h1, &nonce, &nc, &cnonce, &qop, &h2, resp), 0);
	CHECK_STR(resp, "6629fae49393a05397450978507c4ef1");
}

/* RFC 7616 §3.9.1, MD5 and SHA-256 with the same inputs. */
static void rfc7616_response(enum digest_alg alg, char *resp)
{
	char ha1[DIGEST_HEX_MAX + 1], ha2[DIGEST_HEX_MAX + 1];
	struct sip_str user = S("Mufasa"), realm = S("http-auth@example.org"),
		       pw = S("Circle of Life"), method = S("GET"), uri = S("/dir/index.html"),
		       nonce = S("7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"),
		       nc = S("00000001"),
		       cnonce = S("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"),
		       qop = S("auth");

	resp[0] = '\0';
	CHECK_INT(digest_ha1(alg, &user, &realm, &pw, ha1), 0);
	CHECK_INT(digest_ha2(alg, &method, &uri, ha2), 0);
	CHECK_INT(strlen(ha1), digest_hex_len(alg));
	struct sip_str h1 = sip_str_c(ha1), h2 = sip_str_c(ha2);

	CHECK_INT(digest_response(alg, &h1, &nonce, &nc, &cnonce, &qop, &h2, resp), 0);
}

static void test_digest_rfc7616_md5(void)
{
	char resp[DIGEST_HEX_MAX + 1];

	rfc7616_response(DIGEST_MD5, resp);
	CHECK_STR(resp, "8ca523f5e9506fed4657c9700eebdbec");
}

static void test_digest_rfc7616_sha256(void)
{
	char resp[DIGEST_HEX_MAX + 1];

	rfc7616_response(DIGEST_SHA256, resp);
	CHECK_STR(resp, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
}

/* RFC 2069 form (no qop): response = H(HA1:nonce:HA2). Expected values computed
 * independently (Python hashlib). */
static void test_digest_no_qop_response(void)
{
	char ha1[DIGEST_HEX_MAX + 1], ha2[DIGEST_HEX_MAX + 1], resp[DIGEST_HEX_MAX + 1];
	struct sip_str user = S("Mufasa"), realm = S("testrealm@host.com"),
		       pw = S("Circle Of Life"), method = S("GET"), uri = S("/dir/index.html"),
		       nonce = S("dcd98b7102dd2f0e8b11d0f600bfb0c093"), empty = SIP_STR_NULL;

	CHECK_INT(digest_ha1(DIGEST_MD5, &user, &realm, &pw, ha1), 0);
	CHECK_INT(digest_ha2(DIGEST_MD5, &method, &uri, ha2), 0);
	struct sip_str h1 = sip_str_c(ha1), h2 = sip_str_c(ha2);

	CHECK_INT(digest_response(DIGEST_MD5, &h1, &nonce, NULL, NULL, &empty, &h2, resp), 0);
	CHECK_STR(resp, "670fd8c2df070c60b045671b8b24ff02");

	struct sip_str u2 = S("alice"), r2 = S("example.com"), p2 = S("secret"),
		       m2 = S("REGISTER"), uri2 = S("sip:example.com"), n2 = S("abc");

	CHECK_INT(digest_ha1(DIGEST_SHA256, &u2, &r2, &p2, ha1), 0);
	CHECK_STR(ha1, "ed8925b20f9a77b8f8f8d5f8e4467fe32b866f7208ab9e4b20595e9821a0fdee");
	CHECK_INT(digest_ha2(DIGEST_SHA256, &m2, &uri2, ha2), 0);
	h1 = sip_str_c(ha1);
	h2 = sip_str_c(ha2);
	CHECK_INT(digest_response(DIGEST_SHA256, &h1, &n2, NULL, NULL, NULL, &h2, resp), 0);
	CHECK_STR(resp, "82b3e138443a7681f294631313aaea674aaeb4c45060213cc017a9a85578be0e");
}

/* A stored HA1 and one derived from the password give the same response. */
static void test_digest_stored_ha1_equals_password_path(void)
{
	char ha1[DIGEST_HEX_MAX + 1], ha2[DIGEST_HEX_MAX + 1], a[DIGEST_HEX_MAX + 1],
	    b[DIGEST_HEX_MAX + 1];
	struct sip_str stored = S("3d78807defe7de2157e2b0b6573a855f"), user = S("Mufasa"),
		       realm = S("http-auth@example.org"), pw = S("Circle of Life"),
		       method = S("REGISTER"), uri = S("sip:example.org"), nonce = S("n1"),
		       nc = S("0000000a"), cnonce = S("c1"), qop = S("auth");

	CHECK_INT(digest_ha1(DIGEST_MD5, &user, &realm, &pw, ha1), 0);
	CHECK_MEM(ha1, strlen(ha1), "3d78807defe7de2157e2b0b6573a855f");
	CHECK_INT(digest_ha2(DIGEST_MD5, &method, &uri, ha2), 0);
	struct sip_str h1 = sip_str_c(ha1), h2 = sip_str_c(ha2);

	CHECK_INT(digest_response(DIGEST_MD5, &h1, &nonce, &nc, &cnonce, &qop, &h2, a), 0);
	CHECK_INT(digest_response(DIGEST_MD5, &stored, &nonce, &nc, &cnonce, &qop, &h2, b), 0);
	CHECK_STR(a, b);
	/* A different password gives a different answer. */
	struct sip_str pw2 = S("Circle of Life!");

	CHECK_INT(digest_ha1(DIGEST_MD5, &user, &realm, &pw2, ha1), 0);
	CHECK(strcmp(ha1, "3d78807defe7de2157e2b0b6573a855f") != 0);
}

static void test_digest_hex_equal_case_and_length(void)
{
	const char *exp = "6629fae49393a05397450978507c4ef1";
	struct sip_str same = S("6629fae49393a05397450978507c4ef1"),
		       upper = S("6629FAE49393A05397450978507C4EF1"),
		       last = S("6629fae49393a05397450978507c4ef2"),
		       first = S("7629fae49393a05397450978507c4ef1"),
		       shorter = S("6629fae49393a05397450978507c4ef"),
		       notfolded = S("6629fae49393a05397450978507c4ef!"), empty = SIP_STR_NULL;

	CHECK(digest_hex_equal(exp, 32, &same));
	CHECK(digest_hex_equal(exp, 32, &upper));
	CHECK(!digest_hex_equal(exp, 32, &last));
	CHECK(!digest_hex_equal(exp, 32, &first));
	CHECK(!digest_hex_equal(exp, 32, &shorter));
	CHECK(!digest_hex_equal(exp, 32, &notfolded));
	CHECK(!digest_hex_equal(exp, 32, &empty));
}

static void test_digest_alg_names(void)
{
	enum digest_alg alg = DIGEST_SHA256;
	struct sip_str md5 = S("md5"), sha = S("SHA-256"), sess = S("MD5-sess"),
		       sha512 = S("SHA-512-256"), empty = SIP_STR_NULL;

	CHECK_INT(digest_alg_parse(&md5, &alg), 0);
	CHECK_INT(alg, DIGEST_MD5);
	CHECK_INT(digest_alg_parse(&sha, &alg), 0);
	CHECK_INT(alg, DIGEST_SHA256);
	CHECK_INT(digest_alg_parse(&sess, &alg), EINVAL);
	CHECK_INT(digest_alg_parse(&sha512, &alg), EINVAL);
	CHECK_INT(digest_alg_parse(&empty, &alg), EINVAL);
	CHECK_STR(digest_alg_name(DIGEST_MD5), "MD5");
	CHECK_STR(digest_alg_name(DIGEST_SHA256), "SHA-256");
}

/* RFC 4231 test case 2, fed in two pieces. */
static void test_digest_hmac_sha256_rfc4231(void)
{
	static const uint8_t want[32] = {
	    0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
	    0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
	    0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43,
	};
	const struct sip_str parts[2] = {S("what do ya "), S("want for nothing?")};
	uint8_t out[DIGEST_HMAC_LEN];

	CHECK_INT(digest_hmac_sha256((const uint8_t *)"Jefe", 4, parts, 2, out), 0);
	CHECK(memcmp(out, want, sizeof(want)) == 0);
}

/* The keyed form gives the same MACs, call after call, under one key schedule. */
static void test_digest_hmac_keyed_reuse(void)
{
	static const uint8_t want[4] = {0x5b, 0xdc, 0xc1, 0x46};
	const struct sip_str msg[1] = {S("what do ya want for nothing?")},
			     other[1] = {S("something else")};
	uint8_t out[DIGEST_HMAC_LEN], ref[DIGEST_HMAC_LEN];
	struct digest_hmac *h = NULL;

	CHECK_INT(digest_hmac_alloc(&h, (const uint8_t *)"Jefe", 4), 0);
	if (!h)
		return;
	for (int i = 0; i < 3; i++) {
		CHECK_INT(digest_hmac_run(h, msg, 1, out), 0);
		CHECK(memcmp(out, want, sizeof(want)) == 0);
		CHECK_INT(digest_hmac_run(h, other, 1, out), 0);
		CHECK_INT(digest_hmac_sha256((const uint8_t *)"Jefe", 4, other, 1, ref), 0);
		CHECK(memcmp(out, ref, sizeof(ref)) == 0);
	}
	digest_hmac_free(&h);
	CHECK(h == NULL);
}

/* RFC 4231 test case 6: a key longer than a block is hashed first; and an empty key. */
static void test_digest_hmac_keyed_long_and_empty_keys(void)
{
	static const uint8_t want[32] = {
	    0x60, 0xe4, 0x31, 0x59, 0x1e, 0xe0, 0xb6, 0x7f, 0x0d, 0x8a, 0x26,
	    0xaa, 0xcb, 0xf5, 0xb7, 0x7f, 0x8e, 0x0b, 0xc6, 0x21, 0x37, 0x28,
	    0xc5, 0x14, 0x05, 0x46, 0x04, 0x0f, 0x0e, 0xe3, 0x7f, 0x54,
	};
	const struct sip_str msg[1] = {
	    S("Test Using Larger Than Block-Size Key - Hash Key First")};
	uint8_t key[131], out[DIGEST_HMAC_LEN], ref[DIGEST_HMAC_LEN];
	struct digest_hmac *h = NULL;

	memset(key, 0xaa, sizeof(key));
	CHECK_INT(digest_hmac_alloc(&h, key, sizeof(key)), 0);
	if (h) {
		CHECK_INT(digest_hmac_run(h, msg, 1, out), 0);
		CHECK(memcmp(out, want, sizeof(want)) == 0);
	}
	digest_hmac_free(&h);
	CHECK_INT(digest_hmac_alloc(&h, key, 0), 0);
	if (h) {
		CHECK_INT(digest_hmac_run(h, msg, 1, out), 0);
		CHECK_INT(digest_hmac_sha256(key, 0, msg, 1, ref), 0);
		CHECK(memcmp(out, ref, sizeof(ref)) == 0);
	}
	digest_hmac_free(&h);
}

static void test_digest_b64url_vectors(void)
{
	char out[80];
	uint8_t bin[64];
	size_t n = 0;

	CHECK_INT(digest_b64url_encode((const uint8_t *)"foobar", 6, out), 8);
	CHECK_STR(out, "Zm9vYmFy");
	CHECK_INT(digest_b64url_encode((const uint8_t *)"fo", 2, out), 3);
	CHECK_STR(out, "Zm8");
	CHECK_INT(digest_b64url_encode((const uint8_t *)"f", 1, out), 2);
	CHECK_STR(out, "Zg");
	CHECK_INT(digest_b64url_encode((const uint8_t *)"\xfb\xff", 2, out), 3);
	CHECK_STR(out, "-_8");
	CHECK_INT(digest_b64url_len(32), 43);

	CHECK_INT(digest_b64url_decode("Zm9vYmFy", 8, bin, sizeof(bin), &n), 0);
	CHECK_MEM(bin, n, "foobar");
	CHECK_INT(digest_b64url_decode("-_8", 3, bin, sizeof(bin), &n), 0);
	CHECK_MEM(bin, n, "\xfb\xff");
	CHECK_INT(digest_b64url_decode("Zm9=", 4, bin, sizeof(bin), &n), EINVAL);
	CHECK_INT(digest_b64url_decode("Zm+v", 4, bin, sizeof(bin), &n), EINVAL);
	CHECK_INT(digest_b64url_decode("Zm9vY", 5, bin, sizeof(bin), &n), EINVAL);
	/* "Zh" carries non-zero padding bits: a second spelling of "f" must not pass. */
	CHECK_INT(digest_b64url_decode("Zh", 2, bin, sizeof(bin), &n), EINVAL);
	CHECK_INT(digest_b64url_decode("Zm9vYmFy", 8, bin, 5, &n), ENOSPC);

	uint8_t all[48];

	for (size_t i = 0; i < sizeof(all); i++)
		all[i] = (uint8_t)(i * 37 + 11);
	for (size_t len = 0; len <= sizeof(all); len++) {
		size_t enc = digest_b64url_encode(all, len, out);

		CHECK_INT(enc, digest_b64url_len(len));
		CHECK_INT(digest_b64url_decode(out, enc, bin, sizeof(bin), &n), 0);
		CHECK_INT(n, len);
		CHECK(len == 0 || memcmp(bin, all, len) == 0);
	}
}

int main(void)
{
	RUN(test_digest_rfc2617_md5_qop_auth);
	RUN(test_digest_rfc7616_md5);
	RUN(test_digest_rfc7616_sha256);
	RUN(test_digest_no_qop_response);
	RUN(test_digest_stored_ha1_equals_password_path);
	RUN(test_digest_hex_equal_case_and_length);
	RUN(test_digest_alg_names);
	RUN(test_digest_hmac_sha256_rfc4231);
	RUN(test_digest_hmac_keyed_reuse);
	RUN(test_digest_hmac_keyed_long_and_empty_keys);
	RUN(test_digest_b64url_vectors);
	CHECK_DONE();
}
