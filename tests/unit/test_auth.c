/* Unit tests for src/registrar/auth.c: cluster nonces (round trip, other secret, tampering, age),
 * the secret file checks, challenges, Authorization parsing, response verification,
 * nonce-count replay, bans and who may register which AOR. */
#include "registrar/auth.h"
#include "check.h"
#include "util/digest.h"
#include "sipreg/log.h"
#include "util/netaddr.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define S(lit) SIP_STR_LIT(lit)
#define NOW    ((int64_t)1800000000)

/* The key of the To tags the responses built here carry. */
static struct sipresp_tag_key *tag_key;

static char tmpdir[] = "/tmp/test_auth.XXXXXX";
static char secret_a[256], secret_b[256];

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		printf("# cannot write %s\n", path);
		exit(1);
	}
	fchmod(fd, mode);
	close(fd);
}

static struct auth_conf conf_base(const char *secret_file)
{
	struct auth_conf c = {0};

	c.enabled = true;
	c.secret_file = (char *)secret_file;
	c.nonce_ttl = 300;
	c.ban.max_failures = 3;
	c.ban.window = 10;
	c.ban.ban_time = 30;
	c.ban.action = BAN_REPLY_403;
	return c;
}

static struct auth *auth_new(const char *secret_file)
{
	struct auth_conf c = conf_base(secret_file);
	struct auth *a = NULL;

	CHECK_INT(auth_alloc(&a, &c, NULL), 0);
	return a;
}

static struct sipmsg *msg_parse(const char *text)
{
	struct sipmsg *m = NULL;
	const char *reason = NULL;
	int status = 0;
	int err = sipmsg_parse(&m, text, strlen(text), &status, &reason);

	if (err) {
		printf("# sipmsg_parse failed: %d %d %s\n", err, status, reason ? reason : "");
		sipmsg_free(&m);
		return NULL;
	}
	return m;
}

/* A REGISTER for alice@example.com with extra header lines (each ending in CRLF). */
static struct sipmsg *register_with(const char *ruri, const char *extra)
{
	char buf[4096];

	snprintf(buf, sizeof(buf),
		 "REGISTER %s SIP/2.0\r\n"
		 "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-test-1;rport\r\n"
		 "Max-Forwards: 70\r\n"
		 "From: <sip:alice@example.com>;tag=abc\r\n"
		 "To: <sip:alice@example.com>\r\n"
		 "Call-ID: call-1@test\r\n"
		 "CSeq: 2 REGISTER\r\n"
		 "Contact: <sip:alice@127.0.0.1:5062>\r\n"
		 "%s"
		 "Content-Length: 0\r\n\r\n",
		 ruri, extra);
	return msg_parse(buf);
}

/* auth_creds_parse over the REGISTER view of m, as the daemon calls it. */
static int creds_of(const struct sipmsg *m, const struct sip_str *realm, struct auth_creds *c)
{
	struct sip_register reg;
	int rv = sip_register_read(m, &reg);

	if (rv == 0)
		rv = auth_creds_parse(&reg, realm, c);
	sip_register_clear(&reg);
	return rv;
}

/* The challenge headers of a 401 built for example.com to a REGISTER with the extra header
 * lines extra, offering what auth_offer_for() gives user u, as text. */
static void challenge_for(struct auth *a, const char *extra, const struct dir_user *u,
			  bool stale, int64_t now, char *out, size_t cap)
{
	struct sipmsg *m = register_with("sip:example.com", extra);
	struct sip_source src = {.proto = SIP_PROTO_UDP, .ip = "127.0.0.1", .port = 5062};
	struct sipresp r = {0};
	struct sip_str realm = S("example.com");
	struct auth_offer offer;

	out[0] = '\0';
	if (!m)
		return;
	{
		struct sip_register reg;

		if (sip_register_read(m, &reg) == 0)
			auth_offer_for(a, &reg.user_agent, u, &offer);
		else
			offer.n = 0;
		sip_register_clear(&reg);
	}
	CHECK_INT(sipresp_start(&r, tag_key, m, 401, "Unauthorized", &src), 0);
	auth_challenge(a, &r, &realm, &offer, stale, now);
	CHECK_INT(sipresp_finish(&r), 0);
	snprintf(out, cap, "%.*s", (int)r.len, r.buf);
	sipresp_clear(&r);
	sipmsg_free(&m);
}

static void challenge_text(struct auth *a, bool stale, int64_t now, char *out, size_t cap)
{
	challenge_for(a, "", NULL, stale, now, out, cap);
}

/* The nonce of the first challenge in text, copied to out. */
static void nonce_of(const char *text, char *out, size_t cap)
{
	const char *p = strstr(text, "nonce=\""), *e;

	out[0] = '\0';
	if (!p)
		return;
	p += 7;
	e = strchr(p, '"');
	if (e && (size_t)(e - p) < cap)
		snprintf(out, cap, "%.*s", (int)(e - p), p);
}

static enum auth_nonce_state check_nonce(struct auth *a, const char *nonce, const char *realm,
					 int64_t now)
{
	struct auth_creds c = {0};

	c.nonce = sip_str_c(nonce);
	c.realm = sip_str_c(realm);
	return auth_nonce_check(a, &c, now);
}

static void test_auth_nonce_round_trip_and_cluster_secret(void)
{
	struct auth *a = auth_new(secret_a), *a2 = auth_new(secret_a), *b = auth_new(secret_b);
	char text[4096], nonce[128];

	challenge_text(a, false, NOW, text, sizeof(text));
	nonce_of(text, nonce, sizeof(nonce));
	CHECK_INT(strlen(nonce), 43);
	CHECK_INT(check_nonce(a, nonce, "example.com", NOW), AUTH_NONCE_VALID);
	/* Realm is a domain: case does not matter. */
	CHECK_INT(check_nonce(a, nonce, "EXAMPLE.com", NOW), AUTH_NONCE_VALID);
	/* Another instance with the same secret file accepts it... */
	CHECK_INT(check_nonce(a2, nonce, "example.com", NOW + 10), AUTH_NONCE_VALID);
	/* ...an instance with another secret does not. */
	CHECK_INT(check_nonce(b, nonce, "example.com", NOW), AUTH_NONCE_INVALID);
	/* Bound to the realm it was issued for. */
	CHECK_INT(check_nonce(a, nonce, "example.org", NOW), AUTH_NONCE_INVALID);
	auth_free(&a);
	auth_free(&a2);
	auth_free(&b);
	CHECK(a == NULL);
}

/* The To tag a response to the test REGISTER gets under the tag key of a, into tag. */
static void to_tag_under(struct auth *a, char *tag, size_t cap)
{
	struct sipmsg *m = register_with("sip:example.com", "");
	struct sip_source src = {.proto = SIP_PROTO_UDP, .ip = "127.0.0.1", .port = 5062};
	static const char to[] = "\r\nTo: <sip:alice@example.com>;tag=";
	struct sipresp_tag_key *k = NULL;
	struct sipresp r = {0};
	const char *t, *e;

	tag[0] = '\0';
	CHECK_INT(auth_tag_key_alloc(a, &k), 0);
	if (m && k && sipresp_start(&r, k, m, 200, "OK", &src) == 0) {
		t = strstr(r.buf, to);
		e = t ? strstr(t + 2, "\r\n") : NULL;
		if (t && e)
			snprintf(tag, cap, "%.*s", (int)(e - t - (sizeof(to) - 1)),
				 t + sizeof(to) - 1);
	}
	sipresp_clear(&r);
	sipresp_tag_key_free(&k);
	sipmsg_free(&m);
}

static void test_auth_tag_key_follows_the_secret(void)
{
	struct auth *a = auth_new(secret_a), *a2 = auth_new(secret_a), *b = auth_new(secret_b);
	char ta[64], ta2[64], tb[64];

	to_tag_under(a, ta, sizeof(ta));
	to_tag_under(a2, ta2, sizeof(ta2));
	to_tag_under(b, tb, sizeof(tb));
	CHECK_INT(strlen(ta), 16);
	CHECK_STR(ta2, ta);
	CHECK(tb[0] && strcmp(tb, ta) != 0);
	auth_free(&a);
	auth_free(&a2);
	auth_free(&b);
}

static void test_auth_nonce_unique_per_challenge(void)
{
	struct auth *a = auth_new(secret_a);
	char t1[4096], t2[4096], n1[128], n2[128];

	challenge_text(a, false, NOW, t1, sizeof(t1));
	challenge_text(a, false, NOW, t2, sizeof(t2));
	nonce_of(t1, n1, sizeof(n1));
	nonce_of(t2, n2, sizeof(n2));
	CHECK(n1[0] && strcmp(n1, n2) != 0);
	auth_free(&a);
}

static void test_auth_nonce_tampered_rejected(void)
{
	struct auth *a = auth_new(secret_a);
	char text[4096], nonce[128], bad[128];

	challenge_text(a, false, NOW, text, sizeof(text));
	nonce_of(text, nonce, sizeof(nonce));
	/* Every single-character change is caught (timestamp, salt and MAC alike). */
	for (size_t i = 0; i < strlen(nonce); i++) {
		strcpy(bad, nonce);
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		CHECK_INT(check_nonce(a, bad, "example.com", NOW), AUTH_NONCE_INVALID);
	}
	strcpy(bad, nonce);
	bad[42] = '\0';
	CHECK_INT(check_nonce(a, bad, "example.com", NOW), AUTH_NONCE_INVALID);
	CHECK_INT(check_nonce(a, "", "example.com", NOW), AUTH_NONCE_INVALID);
	CHECK_INT(check_nonce(a, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "example.com", NOW),
		  AUTH_NONCE_INVALID);
	snprintf(bad, sizeof(bad), "%s=", nonce);
	CHECK_INT(check_nonce(a, bad, "example.com", NOW), AUTH_NONCE_INVALID);
	auth_free(&a);
}

static void test_auth_nonce_stale_after_ttl(void)
{
	struct auth *a = auth_new(secret_a);
	char text[4096], nonce[128];

	challenge_text(a, false, NOW, text, sizeof(text));
	nonce_of(text, nonce, sizeof(nonce));
	CHECK_INT(check_nonce(a, nonce, "example.com", NOW + 300), AUTH_NONCE_VALID);
	CHECK_INT(check_nonce(a, nonce, "example.com", NOW + 301), AUTH_NONCE_STALE);
	CHECK_INT(check_nonce(a, nonce, "example.com", NOW + 100000), AUTH_NONCE_STALE);
	/* A small clock skew between instances is tolerated, a nonce from far ahead is not. */
	CHECK_INT(check_nonce(a, nonce, "example.com", NOW - 30), AUTH_NONCE_VALID);
	CHECK_INT(check_nonce(a, nonce, "example.com", NOW - 3600), AUTH_NONCE_INVALID);
	auth_free(&a);
}

static void test_auth_secret_file_checks(void)
{
	char path[300];
	struct auth_conf c;
	struct auth *a = NULL;

	snprintf(path, sizeof(path), "%s/world", tmpdir);
	write_file(path, "0123456789abcdef0123456789abcdef\n", 0644);
	c = conf_base(path);
	CHECK_INT(auth_alloc(&a, &c, NULL), EACCES);
	CHECK(a == NULL);

	snprintf(path, sizeof(path), "%s/short", tmpdir);
	write_file(path, "0123456789abcde\n\n", 0600);
	c = conf_base(path);
	CHECK_INT(auth_alloc(&a, &c, NULL), EINVAL);

	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	c = conf_base(path);
	CHECK_INT(auth_alloc(&a, &c, NULL), ENOENT);

	c = conf_base(tmpdir);
	CHECK_INT(auth_alloc(&a, &c, NULL), EINVAL);

	/* A trailing newline is not part of the secret: both files make the same nonces. */
	char p1[300], p2[300], text[4096], nonce[128];
	struct auth *x = NULL, *y = NULL;

	snprintf(p1, sizeof(p1), "%s/nl", tmpdir);
	snprintf(p2, sizeof(p2), "%s/nonl", tmpdir);
	write_file(p1, "a-shared-cluster-secret-value\n", 0640);
	write_file(p2, "a-shared-cluster-secret-value", 0600);
	c = conf_base(p1);
	CHECK_INT(auth_alloc(&x, &c, NULL), 0);
	c = conf_base(p2);
	CHECK_INT(auth_alloc(&y, &c, NULL), 0);
	if (x && y) {
		challenge_text(x, false, NOW, text, sizeof(text));
		nonce_of(text, nonce, sizeof(nonce));
		CHECK_INT(check_nonce(y, nonce, "example.com", NOW), AUTH_NONCE_VALID);
	}
	auth_free(&x);
	auth_free(&y);

	/* No secret file: a random secret, so two processes do not agree. */
	c = conf_base(NULL);
	CHECK_INT(auth_alloc(&x, &c, NULL), 0);
	CHECK_INT(auth_alloc(&y, &c, NULL), 0);
	if (x && y) {
		challenge_text(x, false, NOW, text, sizeof(text));
		nonce_of(text, nonce, sizeof(nonce));
		CHECK_INT(check_nonce(x, nonce, "example.com", NOW), AUTH_NONCE_VALID);
		CHECK_INT(check_nonce(y, nonce, "example.com", NOW), AUTH_NONCE_INVALID);
	}
	auth_free(&x);
	auth_free(&y);
}

static size_t count_of(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* Unless configured otherwise a client is offered MD5 alone: every client in use answers
 * it, and some fail the registration when any challenge is not MD5 (baresip 1.0). */
static void test_auth_challenge_default_is_md5_alone(void)
{
	struct auth *a = auth_new(secret_a);
	char text[4096];

	challenge_text(a, false, NOW, text, sizeof(text));
	CHECK_INT(count_of(text, "\r\nWWW-Authenticate: Digest "), 1);
	CHECK_INT(count_of(text, "algorithm=MD5\r\n"), 1);
	CHECK(strstr(text, "SHA-256") == NULL);
	auth_free(&a);
}

/* RFC 8760 for everyone: auth.algorithms [SHA-256, MD5]. */
static void test_auth_challenge_sha256_first_then_md5(void)
{
	struct auth_conf c = conf_base(secret_a);
	struct auth *a = NULL;
	char text[4096];
	const char *sha, *md5;

	c.algorithms[0] = DIGEST_SHA256;
	c.algorithms[1] = DIGEST_MD5;
	c.n_algorithms = 2;
	CHECK_INT(auth_alloc(&a, &c, NULL), 0);
	if (!a)
		return;

	challenge_text(a, false, NOW, text, sizeof(text));
	CHECK_INT(count_of(text, "\r\nWWW-Authenticate: Digest "), 2);
	sha = strstr(text, "algorithm=SHA-256");
	md5 = strstr(text, "algorithm=MD5");
	CHECK(sha && md5 && sha < md5);
	CHECK_INT(count_of(text, "realm=\"example.com\""), 2);
	CHECK_INT(count_of(text, "qop=\"auth\""), 2);
	CHECK_INT(count_of(text, "stale"), 0);
	CHECK(strstr(text, "401 Unauthorized") != NULL);
	/* the exact layout: realm, a 43-character nonce, qop, algorithm, CRLF */
	sha = strstr(text, "WWW-Authenticate: Digest realm=\"example.com\", nonce=\"");
	CHECK(sha != NULL);
	if (sha)
		CHECK(strncmp(sha + 53 + 43, "\", qop=\"auth\", algorithm=SHA-256\r\n", 34) ==
		      0);

	challenge_text(a, true, NOW, text, sizeof(text));
	CHECK_INT(count_of(text, ", stale=true"), 2);
	CHECK_INT(count_of(text, "algorithm=MD5, stale=true\r\n"), 1);
	auth_free(&a);
}

static void test_auth_challenge_algorithm_order_configurable(void)
{
	struct auth_conf c = conf_base(secret_a);
	struct auth *a = NULL;
	char text[4096];

	c.algorithms[0] = DIGEST_MD5;
	c.n_algorithms = 1;
	CHECK_INT(auth_alloc(&a, &c, NULL), 0);
	challenge_text(a, false, NOW, text, sizeof(text));
	CHECK_INT(count_of(text, "WWW-Authenticate:"), 1);
	CHECK_INT(count_of(text, "algorithm=MD5"), 1);
	auth_free(&a);

	c.algorithms[0] = DIGEST_MD5;
	c.algorithms[1] = DIGEST_SHA256;
	c.n_algorithms = 2;
	CHECK_INT(auth_alloc(&a, &c, NULL), 0);
	challenge_text(a, false, NOW, text, sizeof(text));
	CHECK(strstr(text, "algorithm=MD5") < strstr(text, "algorithm=SHA-256"));
	auth_free(&a);

	c.algorithms[0] = 7;
	c.n_algorithms = 1;
	CHECK_INT(auth_alloc(&a, &c, NULL), EINVAL);
}

/* The algorithms of each challenge in text, in order ("SHA-256,MD5"), into out. */
static const char *algs_of(const char *text, char *out, size_t cap)
{
	const char *p = text;
	size_t n = 0;

	out[0] = '\0';
	while ((p = strstr(p, "algorithm=")) != NULL) {
		size_t len = strcspn(p + 10, ",\r");

		n += (size_t)snprintf(out + n, cap - n, "%s%.*s", n ? "," : "", (int)len,
				      p + 10);
		if (n >= cap)
			break;
		p += 10;
	}
	return out;
}

/* auth.user_agents: the first rule whose match the User-Agent contains, any case. */
static void test_auth_offer_per_user_agent_rule(void)
{
	struct auth_ua_rule rules[] = {
	    {.match = "Linphonec/5.",
	     .algorithms = {DIGEST_SHA256, DIGEST_MD5},
	     .n_algorithms = 2},
	    {.match = "sipreg-test", .algorithms = {DIGEST_SHA256}, .n_algorithms = 1},
	};
	struct auth_conf c = conf_base(secret_a);
	struct auth *a = NULL;
	char text[4096], algs[64];

	c.user_agents = rules;
	c.n_user_agents = 2;
	CHECK_INT(auth_alloc(&a, &c, NULL), 0);
	if (!a)
		return;
	challenge_for(a, "User-Agent: linphonec/5.1.65\r\n", NULL, false, NOW, text,
		      sizeof(text));
	CHECK_STR(algs_of(text, algs, sizeof(algs)), "SHA-256,MD5");
	challenge_for(a, "User-Agent: Linphonec/4.0.1\r\n", NULL, false, NOW, text,
		      sizeof(text));
	CHECK_STR(algs_of(text, algs, sizeof(algs)), "MD5");
	challenge_for(a, "User-Agent: my SIPREG-TEST-client 1.0\r\n", NULL, false, NOW, text,
		      sizeof(text));
	CHECK_STR(algs_of(text, algs, sizeof(algs)), "SHA-256");
	/* First match wins. */
	challenge_for(a, "User-Agent: sipreg-test Linphonec/5.1\r\n", NULL, false, NOW, text,
		      sizeof(text));
	CHECK_STR(algs_of(text, algs, sizeof(algs)), "SHA-256,MD5");
	/* No User-Agent, or another one: auth.algorithms (here the default, MD5). */
	challenge_for(a, "", NULL, false, NOW, text, sizeof(text));
	CHECK_STR(algs_of(text, algs, sizeof(algs)), "MD5");
	challenge_for(a, "User-Agent: baresip v1.0.0 (x86_64/linux)\r\n", NULL, false, NOW,
		      text, sizeof(text));
	CHECK_STR(algs_of(text, algs, sizeof(algs)), "MD5");
	auth_free(&a);
}

/* Only what the user has a secret for is offered: an answer to anything else could only
 * fail. */
static void test_auth_offer_narrowed_to_the_users_secrets(void)
{
	struct auth_ua_rule rules[] = {
	    {.match = "rfc8760",
	     .algorithms = {DIGEST_SHA256, DIGEST_MD5},
	     .n_algorithms = 2},
	};
	static const char ua[] = "User-Agent: rfc8760-phone\r\n";
	struct dir_user pw = {.username = S("p"), .password = S("secret"), .enabled = true};
	struct dir_user md5 = {.username = S("m"),
			       .ha1_md5 = S("0123456789abcdef0123456789abcdef"),
			       .enabled = true};
	struct dir_user sha = {
	    .username = S("s"),
	    .ha1_sha256 = S("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
	    .enabled = true};
	struct dir_user none = {.username = S("n"), .enabled = true};
	struct auth_conf c = conf_base(secret_a);
	struct auth *a = NULL;
	char text[4096], algs[64];

	c.user_agents = rules;
	c.n_user_agents = 1;
	CHECK_INT(auth_alloc(&a, &c, NULL), 0);
	if (!a)
		return;
	challenge_for(a, ua, &pw, false, NOW, text, sizeof(text));
	CHECK_STR(algs_of(text, algs, sizeof(algs)), "SHA-256,MD5");
	challenge_for(a, ua, &md5, false, NOW, text, sizeof(text));
	CHECK_STR(algs_of(text, algs, sizeof(algs)), "MD5");
	challenge_for(a, ua, &sha, false, NOW, text, sizeof(text));
	CHECK_STR(algs_of(text, algs, sizeof(algs)), "SHA-256");
	/* A SHA-256-only user and a client offered MD5: SHA-256, the one that can work. */
	challenge_for(a, "", &sha, false, NOW, text, sizeof(text));
	CHECK_STR(algs_of(text, algs, sizeof(algs)), "SHA-256");
	/* Nobody to go by, or a user without any secret: the client's offer as it is. */
	challenge_for(a, ua, NULL, false, NOW, text, sizeof(text));
	CHECK_STR(algs_of(text, algs, sizeof(algs)), "SHA-256,MD5");
	challenge_for(a, ua, &none, false, NOW, text, sizeof(text));
	CHECK_STR(algs_of(text, algs, sizeof(algs)), "SHA-256,MD5");
	auth_free(&a);
}

static void test_auth_creds_parse_good(void)
{
	struct auth_creds c;
	struct sip_str v;

	/* baresip: no algorithm (MD5), unquoted qop and nc. */
	v = S("Digest username=\"alice\", realm=\"example.com\", nonce=\"n1\", "
	      "uri=\"sip:example.com\", response=\"57534b408c36776204a648cd25ab130d\", "
	      "cnonce=\"7bd83c08b867db78\", qop=auth, nc=0000000a");
	CHECK_INT(auth_creds_parse_value(&v, &c), 0);
	CHECK_INT(c.alg, DIGEST_MD5);
	CHECK_MEM(c.username.p, c.username.len, "alice");
	CHECK_MEM(c.realm.p, c.realm.len, "example.com");
	CHECK_MEM(c.nonce.p, c.nonce.len, "n1");
	CHECK_MEM(c.uri.p, c.uri.len, "sip:example.com");
	CHECK_MEM(c.cnonce.p, c.cnonce.len, "7bd83c08b867db78");
	CHECK(c.has_qop);
	CHECK_INT(c.nc_value, 10);

	/* sipp: no spaces, algorithm last; names in any case; quoted qop. */
	v = S("DIGEST USERNAME=\"user1\",Realm=\"example.com\",cnonce=\"6b8b4567\",nc=00000001,"
	      "qop=\"auth\",uri=\"sip:example.com\",nonce=\"abc\","
	      "response=\"e2991d9be2242ba3c282b15b5cd05f69\",algorithm=MD5");
	CHECK_INT(auth_creds_parse_value(&v, &c), 0);
	CHECK_MEM(c.username.p, c.username.len, "user1");
	CHECK_INT(c.nc_value, 1);

	/* RFC 7616 SHA-256 with opaque, folded over lines. */
	v = S("Digest username=\"Mufasa\",\r\n realm=\"http-auth@example.org\",\r\n"
	      "\turi=\"/dir/index.html\", algorithm=SHA-256, nonce=\"7ypf\", nc=00000001, "
	      "cnonce=\"f2/w\", qop=auth, "
	      "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", "
	      "opaque=\"FQhe\"");
	CHECK_INT(auth_creds_parse_value(&v, &c), 0);
	CHECK_INT(c.alg, DIGEST_SHA256);
	CHECK_MEM(c.opaque.p, c.opaque.len, "FQhe");

	/* RFC 2069 form: no qop; a stray nc means nothing then. */
	v = S("Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", "
	      "response=\"670fd8c2df070c60b045671b8b24ff02\"");
	CHECK_INT(auth_creds_parse_value(&v, &c), 0);
	CHECK(!c.has_qop);
	CHECK_INT(c.nc_value, 0);

	/* Escaped quote inside a quoted username; unknown parameters ignored. */
	v = S("Digest username=\"a\\\"b\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", "
	      "foo=bar, response=\"670fd8c2df070c60b045671b8b24ff02\",");
	CHECK_INT(auth_creds_parse_value(&v, &c), 0);
	CHECK_MEM(c.username.p, c.username.len, "a\\\"b");
}

static void test_auth_creds_parse_malformed(void)
{
	static const char *const bad[] = {
	    "",
	    "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
	    "Digestusername=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", "
	    "response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    /* unterminated quote */
	    "Digest username=\"a, realm=\"r\", nonce=\"n\", uri=\"u\", "
	    "response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", "
	    "response=\"670fd8c2df070c60b045671b8b24ff02",
	    /* missing username / realm / nonce / uri / response */
	    "Digest realm=\"r\", nonce=\"n\", uri=\"u\", "
	    "response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    "Digest username=\"a\", nonce=\"n\", uri=\"u\", "
	    "response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    "Digest username=\"a\", realm=\"r\", uri=\"u\", "
	    "response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    "Digest username=\"a\", realm=\"r\", nonce=\"n\", "
	    "response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\"",
	    "Digest username=\"\", realm=\"r\", nonce=\"n\", uri=\"u\", "
	    "response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    /* bad nc: not hex, wrong length, zero */
	    "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", qop=auth, "
	    "nc=0000000g, "
	    "cnonce=\"c\", response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", qop=auth, nc=1, "
	    "cnonce=\"c\", response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", qop=auth, "
	    "nc=00000000, "
	    "cnonce=\"c\", response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    /* qop without cnonce or nc */
	    "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", qop=auth, "
	    "cnonce=\"c\", response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", qop=auth, "
	    "nc=00000001, "
	    "response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    /* qop never offered, algorithm unknown, response of the wrong size or not hex */
	    "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", qop=auth-int, "
	    "nc=00000001, cnonce=\"c\", response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", algorithm=MD5-sess, "
	    "response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", algorithm=SHA-256, "
	    "response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", "
	    "response=\"670fd8c2df070c60b045671b8b24ff0z\"",
	    /* duplicate parameter, missing '=', garbage between parameters */
	    "Digest username=\"a\", username=\"b\", realm=\"r\", nonce=\"n\", uri=\"u\", "
	    "response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    "Digest username, realm=\"r\", nonce=\"n\", uri=\"u\", "
	    "response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    "Digest username=\"a\" realm=\"r\", nonce=\"n\", uri=\"u\", "
	    "response=\"670fd8c2df070c60b045671b8b24ff02\"",
	    "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", userhash=true, "
	    "response=\"670fd8c2df070c60b045671b8b24ff02\"",
	};
	struct auth_creds c;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sip_str v = sip_str_c(bad[i]);
		int rv = auth_creds_parse_value(&v, &c);

		if (rv != EBADMSG)
			printf("#   case %zu accepted: %s\n", i, bad[i]);
		CHECK_INT(rv, EBADMSG);
	}
}

static void test_auth_creds_parse_from_message(void)
{
	struct sip_str realm = S("example.com");
	struct auth_creds c;
	struct sipmsg *m;

	/* No Authorization: challenge. */
	m = register_with("sip:example.com", "");
	CHECK(m != NULL);
	if (m)
		CHECK_INT(creds_of(m, &realm, &c), ENOENT);
	sipmsg_free(&m);

	/* Credentials for a proxy's realm only: not ours, challenge. */
	m = register_with("sip:example.com",
			  "Authorization: Digest username=\"a\", realm=\"proxy.net\", "
			  "nonce=\"n\", uri=\"sip:example.com\", "
			  "response=\"670fd8c2df070c60b045671b8b24ff02\"\r\n");
	if (m)
		CHECK_INT(creds_of(m, &realm, &c), ENOENT);
	sipmsg_free(&m);

	/* Two headers: the one for our realm is picked (realm in any case). */
	m = register_with("sip:example.com",
			  "Authorization: Digest username=\"x\", realm=\"proxy.net\", "
			  "nonce=\"n\", uri=\"sip:example.com\", "
			  "response=\"670fd8c2df070c60b045671b8b24ff02\"\r\n"
			  "Authorization: Digest username=\"alice\", realm=\"Example.COM\", "
			  "nonce=\"n2\", uri=\"sip:example.com\", qop=auth, nc=00000002, "
			  "cnonce=\"c\", response=\"670fd8c2df070c60b045671b8b24ff02\"\r\n");
	CHECK(m != NULL);
	if (m) {
		CHECK_INT(creds_of(m, &realm, &c), 0);
		CHECK_MEM(c.username.p, c.username.len, "alice");
		CHECK_INT(c.nc_value, 2);
	}
	sipmsg_free(&m);

	/* Malformed credentials for our realm: 400. */
	m = register_with("sip:example.com",
			  "Authorization: Digest username=\"alice\", realm=\"example.com\", "
			  "nonce=\"n\", uri=\"sip:example.com\", qop=auth, "
			  "response=\"670fd8c2df070c60b045671b8b24ff02\"\r\n");
	if (m)
		CHECK_INT(creds_of(m, &realm, &c), EBADMSG);
	sipmsg_free(&m);

	/* Unparsable scheme: 400. */
	m = register_with("sip:example.com", "Authorization: Basic YWxhZGRpbjpvcGVu\r\n");
	if (m)
		CHECK_INT(creds_of(m, &realm, &c), EBADMSG);
	sipmsg_free(&m);
}

static int parse_uri_case(const char *ruri, const char *duri)
{
	struct sip_str realm = S("example.com");
	struct auth_creds c;
	char hdr[512];
	struct sipmsg *m;
	int rv = -1;

	snprintf(
	    hdr, sizeof(hdr),
	    "Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"n\", "
	    "uri=\"%s\", response=\"670fd8c2df070c60b045671b8b24ff02\"\r\n",
	    duri);
	m = register_with(ruri, hdr);
	if (m)
		rv = creds_of(m, &realm, &c);
	sipmsg_free(&m);
	return rv;
}

static void test_auth_digest_uri_must_name_request_uri(void)
{
	CHECK_INT(parse_uri_case("sip:example.com", "sip:example.com"), 0);
	CHECK_INT(parse_uri_case("sip:127.0.0.1:5070;transport=udp",
				 "sip:127.0.0.1:5070;transport=udp"),
		  0);
	/* A proxy added a port or a parameter: same scheme, user and host. */
	CHECK_INT(parse_uri_case("sip:example.com:5060;transport=tcp", "sip:example.com"), 0);
	CHECK_INT(parse_uri_case("sip:EXAMPLE.com", "sip:example.com"), 0);
	/* sipp's default (the target address) or another host: 400. */
	CHECK_INT(parse_uri_case("sip:example.com", "sip:127.0.0.1:5060"), EBADMSG);
	CHECK_INT(parse_uri_case("sip:example.com", "sip:example.org"), EBADMSG);
	CHECK_INT(parse_uri_case("sip:example.com", "sips:example.com"), EBADMSG);
	CHECK_INT(parse_uri_case("sip:example.com", "sip:bob@example.com"), EBADMSG);
	CHECK_INT(parse_uri_case("sip:example.com", "example.com"), EBADMSG);
}

/* Build credentials answering nonce for method/uri with password, as a client would. */
static void client_answer(enum digest_alg alg, const char *user, const char *password,
			  const char *nonce, const char *nc, const char *uri, char *value,
			  size_t cap)
{
	char ha1[DIGEST_HEX_MAX + 1], ha2[DIGEST_HEX_MAX + 1], resp[DIGEST_HEX_MAX + 1];
	struct sip_str u = sip_str_c(user), r = S("example.com"), p = sip_str_c(password),
		       m = S("REGISTER"), ur = sip_str_c(uri), n = sip_str_c(nonce),
		       ncs = sip_str_c(nc), cn = S("0a4f113b"), q = S("auth");

	digest_ha1((enum digest_alg)alg, &u, &r, &p, ha1);
	digest_ha2((enum digest_alg)alg, &m, &ur, ha2);
	struct sip_str h1 = sip_str_c(ha1), h2 = sip_str_c(ha2);

	digest_response((enum digest_alg)alg, &h1, &n, &ncs, &cn, &q, &h2, resp);
	snprintf(value, cap,
		 "Digest username=\"%s\", realm=\"example.com\", nonce=\"%s\", uri=\"%s\", "
		 "response=\"%s\", algorithm=%s, cnonce=\"0a4f113b\", qop=auth, nc=%s",
		 user, nonce, uri, resp, alg == DIGEST_SHA256 ? "SHA-256" : "MD5", nc);
}

static void test_auth_response_ok_password_and_ha1(void)
{
	char value[1024], ha1md5[DIGEST_HEX_MAX + 1], ha1sha[DIGEST_HEX_MAX + 1];
	struct sip_str method = S("REGISTER"), v;
	struct auth_creds c;
	struct dir_user u = {.username = S("alice"),
			     .domain = S("example.com"),
			     .password = S("s3cret"),
			     .enabled = true};
	struct sip_str user = S("alice"), realm = S("example.com"), pw = S("s3cret");

	client_answer(DIGEST_MD5, "alice", "s3cret", "nonce1", "00000001", "sip:example.com",
		      value, sizeof(value));
	v = sip_str_c(value);
	CHECK_INT(auth_creds_parse_value(&v, &c), 0);
	CHECK(auth_response_ok(&c, &u, &method));
	/* Nobody by that name: never ok, whatever the answer. */
	CHECK(!auth_response_ok(&c, NULL, &method));
	/* The method is part of the hash. */
	struct sip_str other = S("OPTIONS");

	CHECK(!auth_response_ok(&c, &u, &other));
	/* Wrong password. */
	u.password = S("s3cret!");
	CHECK(!auth_response_ok(&c, &u, &method));
	/* Stored HA1 only (no password): used for its algorithm. */
	digest_ha1(DIGEST_MD5, &user, &realm, &pw, ha1md5);
	digest_ha1(DIGEST_SHA256, &user, &realm, &pw, ha1sha);
	u.password = SIP_STR_NULL;
	u.ha1_md5 = sip_str_c(ha1md5);
	CHECK(auth_response_ok(&c, &u, &method));
	/* Upper-case stored hex is fine too. */
	char upper[DIGEST_HEX_MAX + 1];

	for (size_t i = 0; i <= strlen(ha1md5); i++)
		upper[i] = (char)toupper((unsigned char)ha1md5[i]);
	u.ha1_md5 = sip_str_c(upper);
	CHECK(auth_response_ok(&c, &u, &method));

	/* SHA-256 answer: needs the SHA-256 HA1 (or the password), not the MD5 one. */
	client_answer(DIGEST_SHA256, "alice", "s3cret", "nonce1", "00000001",
		      "sip:example.com", value, sizeof(value));
	v = sip_str_c(value);
	CHECK_INT(auth_creds_parse_value(&v, &c), 0);
	CHECK_INT(c.alg, DIGEST_SHA256);
	u.ha1_md5 = sip_str_c(ha1md5);
	CHECK(!auth_response_ok(&c, &u, &method));
	u.ha1_sha256 = sip_str_c(ha1sha);
	CHECK(auth_response_ok(&c, &u, &method));
	u.ha1_sha256 = SIP_STR_NULL;
	u.password = S("s3cret");
	CHECK(auth_response_ok(&c, &u, &method));
	/* Tampered response. */
	char *r = strstr(value, "response=\"") + 10;

	*r = *r == '0' ? '1' : '0';
	v = sip_str_c(value);
	CHECK_INT(auth_creds_parse_value(&v, &c), 0);
	CHECK(!auth_response_ok(&c, &u, &method));
}

/* A real nonce of a, issued at now, into buf. */
static struct sip_str nonce_issued_at(struct auth *a, int64_t now, char *buf, size_t cap)
{
	char text[2048];

	challenge_text(a, false, now, text, sizeof(text));
	nonce_of(text, buf, cap);
	return sip_str_c(buf);
}

static void test_auth_nc_replay_detected(void)
{
	struct auth *a = auth_new(secret_a);
	struct auth_creds c = {0}, d = {0};
	char n1[128], n2[128];

	c.nonce = nonce_issued_at(a, NOW, n1, sizeof(n1));
	c.nc_value = 1;
	d.nonce = nonce_issued_at(a, NOW, n2, sizeof(n2));
	d.nc_value = 1;
	CHECK(!auth_nc_replayed(a, &c, NOW));
	CHECK(auth_nc_replayed(a, &c, NOW + 1));
	CHECK(!auth_nc_replayed(a, &d, NOW + 1));
	c.nc_value = 2;
	CHECK(!auth_nc_replayed(a, &c, NOW + 2));
	CHECK(auth_nc_replayed(a, &c, NOW + 2));
	/* RFC 2069 answers (no nc) may be used once. */
	c.nc_value = 0;
	CHECK(!auth_nc_replayed(a, &c, NOW + 2));
	CHECK(auth_nc_replayed(a, &c, NOW + 3));
	/* Remembered for the nonce's life; forgotten after it (the nonce is stale then). */
	CHECK(auth_nc_replayed(a, &c, NOW + 300));
	CHECK(!auth_nc_replayed(a, &c, NOW + 3 + 300 + 61));
	/* Something that is not one of our nonces is never taken as fresh. */
	c.nonce = S("not-a-nonce");
	CHECK(auth_nc_replayed(a, &c, NOW));
	auth_free(&a);
}

static void test_auth_nc_table_bounded_oldest_first(void)
{
	struct auth *a = auth_new(secret_a);
	struct auth_creds c = {0};
	char first[128], filler[128], fresh[128];

	c.nonce = nonce_issued_at(a, NOW - 1, first, sizeof(first));
	c.nc_value = 1;
	CHECK(!auth_nc_replayed(a, &c, NOW));
	/* Fill the table: 2^20 other pairs push the first one out. */
	c.nonce = nonce_issued_at(a, NOW, filler, sizeof(filler));
	for (uint32_t i = 1; i <= (1u << 20) - 1; i++) {
		c.nc_value = i;
		auth_nc_replayed(a, &c, NOW);
	}
	c.nonce = sip_str_c(first);
	c.nc_value = 1;
	CHECK(auth_nc_replayed(a, &c, NOW)); /* still there: table just full */
	c.nonce = sip_str_c(filler);
	c.nc_value = 1u << 20;
	CHECK(!auth_nc_replayed(a, &c, NOW));
	c.nc_value = 1u << 21;
	CHECK(!auth_nc_replayed(a, &c, NOW));
	/* The oldest record is gone, yet its pair is still refused: a nonce as old as a
	 * record dropped before its time cannot be proven fresh. A new nc of it too. */
	c.nonce = sip_str_c(first);
	c.nc_value = 1;
	CHECK(auth_nc_replayed(a, &c, NOW));
	c.nc_value = 7;
	CHECK(auth_nc_replayed(a, &c, NOW));
	/* The newest are kept; a nonce issued after every dropped record works. */
	c.nonce = sip_str_c(filler);
	c.nc_value = 1u << 21;
	CHECK(auth_nc_replayed(a, &c, NOW));
	c.nonce = nonce_issued_at(a, NOW + 1, fresh, sizeof(fresh));
	c.nc_value = 1;
	CHECK(!auth_nc_replayed(a, &c, NOW + 1));
	CHECK(auth_nc_replayed(a, &c, NOW + 1));
	auth_free(&a);
}

static void test_auth_ban_window_start_and_expiry(void)
{
	struct auth *a = auth_new(secret_a); /* 3 failures in 10 s -> 30 s ban */
	struct sip_str alice = S("alice"), bob = S("bob");

	CHECK_INT(auth_ban_action(a), BAN_REPLY_403);
	CHECK(!auth_banned(a, "192.0.2.1", &alice, NOW));
	auth_failure(a, "192.0.2.1", &alice, NOW);
	auth_failure(a, "192.0.2.1", &alice, NOW + 1);
	CHECK(!auth_banned(a, "192.0.2.1", &alice, NOW + 1));
	auth_failure(a, "192.0.2.1", &alice, NOW + 2);
	/* Banned: the address (any user), and alice from that address; alice from
	 * elsewhere is not, or anyone could lock her out. */
	CHECK(auth_banned(a, "192.0.2.1", &alice, NOW + 2));
	CHECK(auth_banned(a, "192.0.2.1", &bob, NOW + 2));
	CHECK(!auth_banned(a, "198.51.100.7", &alice, NOW + 2));
	CHECK(!auth_banned(a, "198.51.100.7", &bob, NOW + 2));
	CHECK(auth_banned(a, "192.0.2.1", NULL, NOW + 31));
	CHECK(!auth_banned(a, "192.0.2.1", &alice, NOW + 32));
	CHECK(!auth_banned(a, "198.51.100.7", &alice, NOW + 32));

	/* Failures spread wider than the window never add up to a ban. */
	for (int i = 0; i < 10; i++)
		auth_failure(a, "203.0.113.5", &bob, NOW + 100 + 6 * i);
	CHECK(!auth_banned(a, "203.0.113.5", &bob, NOW + 160));
	auth_free(&a);

	/* max_failures 0 turns bans off; drop is reported as the action. */
	struct auth_conf c = conf_base(secret_a);

	c.ban.max_failures = 0;
	c.ban.action = BAN_DROP;
	CHECK_INT(auth_alloc(&a, &c, NULL), 0);
	for (int i = 0; i < 20; i++)
		auth_failure(a, "192.0.2.1", &alice, NOW);
	CHECK(!auth_banned(a, "192.0.2.1", &alice, NOW));
	CHECK_INT(auth_ban_action(a), BAN_DROP);
	auth_free(&a);
}

static void test_auth_ban_table_bounded(void)
{
	struct auth *a = auth_new(secret_a);
	struct sip_str alice = S("alice");
	char ip[32];

	for (int i = 0; i < 3; i++)
		auth_failure(a, "192.0.2.1", NULL, NOW);
	CHECK(auth_banned(a, "192.0.2.1", NULL, NOW));
	/* 2^16 other sources fill the IP table: the oldest entry goes, memory stays. */
	for (unsigned i = 0; i < (1u << 16); i++) {
		snprintf(ip, sizeof(ip), "10.%u.%u.1", i >> 8, i & 255);
		auth_failure(a, ip, NULL, NOW);
	}
	CHECK(!auth_banned(a, "192.0.2.1", NULL, NOW));
	/* The (user, address) table is separate: a flood of addresses pushes the address
	 * out of its table but does not lift the user's ban from it. */
	for (int i = 0; i < 3; i++)
		auth_failure(a, "192.0.2.9", &alice, NOW);
	for (unsigned i = 0; i < (1u << 16); i++) {
		snprintf(ip, sizeof(ip), "11.%u.%u.1", i >> 8, i & 255);
		auth_failure(a, ip, NULL, NOW);
	}
	CHECK(!auth_banned(a, "192.0.2.9", NULL, NOW));
	CHECK(auth_banned(a, "192.0.2.9", &alice, NOW));
	CHECK(!auth_banned(a, "192.0.2.10", &alice, NOW));
	auth_free(&a);
}

/* Sources in the trusted set (SBCs, proxies, NATs) are never counted nor banned; the
 * others still are. */
static void test_auth_trusted_sources_never_banned(void)
{
	static const char *const trusted[] = {"10.0.0.0/8", "2001:db8::/32", "192.0.2.7"};
	struct auth_conf c = conf_base(secret_a);
	struct sip_str alice = S("alice");
	struct netaddr_set *set = NULL;
	struct netaddr_prefix pfx;
	struct auth *a = NULL;

	CHECK_INT(netaddr_set_alloc(&set), 0);
	for (size_t i = 0; set && i < 3; i++) {
		CHECK_INT(netaddr_prefix_parse(trusted[i], &pfx), 0);
		CHECK_INT(netaddr_set_add(set, &pfx), 0);
	}
	CHECK_INT(auth_alloc(&a, &c, set), 0);
	if (!a)
		goto out;
	for (int i = 0; i < 10; i++) {
		auth_failure(a, "10.1.2.3", &alice, NOW);
		auth_failure(a, "2001:db8::5", &alice, NOW);
		auth_failure(a, "192.0.2.7", &alice, NOW);
	}
	CHECK(!auth_banned(a, "10.1.2.3", &alice, NOW));
	CHECK(!auth_banned(a, "2001:db8::5", &alice, NOW));
	CHECK(!auth_banned(a, "192.0.2.7", &alice, NOW));
	for (int i = 0; i < 3; i++)
		auth_failure(a, "192.0.2.8", &alice, NOW);
	CHECK(auth_banned(a, "192.0.2.8", &alice, NOW));
	CHECK(!auth_banned(a, "192.0.2.7", &alice, NOW));
out:
	auth_free(&a);
	netaddr_set_free(&set);
}

static void test_auth_may_register_self_and_aliases(void)
{
	const struct sip_str aliases[] = {S("bobby@example.com"), S("support@Example.NET"),
					  S("robert")};
	struct dir_user bob = {.username = S("bob"),
			       .domain = S("example.com"),
			       .aliases = aliases,
			       .n_aliases = 3,
			       .enabled = true};
	struct dir_user any = {.username = S("carol"), .enabled = true};
	struct sip_str aor;

	aor = S("bob@example.com");
	CHECK(auth_may_register(&bob, &aor));
	aor = S("bobby@example.com");
	CHECK(auth_may_register(&bob, &aor));
	aor = S("support@example.net");
	CHECK(auth_may_register(&bob, &aor));
	aor = S("robert@example.com");
	CHECK(auth_may_register(&bob, &aor));
	aor = S("alice@example.com");
	CHECK(!auth_may_register(&bob, &aor));
	aor = S("bob@example.org");
	CHECK(!auth_may_register(&bob, &aor));
	aor = S("Bob@example.com"); /* user parts are case-sensitive */
	CHECK(!auth_may_register(&bob, &aor));
	aor = S("robert@example.org");
	CHECK(!auth_may_register(&bob, &aor));
	aor = S("bobby");
	CHECK(!auth_may_register(&bob, &aor));
	/* A user without a domain is valid in every configured domain. */
	aor = S("carol@example.org");
	CHECK(auth_may_register(&any, &aor));
	aor = S("bob@example.org");
	CHECK(!auth_may_register(&any, &aor));
}

static void test_auth_required_per_domain(void)
{
	struct auth_conf c = conf_base(secret_a);
	char *off[] = {"dev.example.com"};
	struct sip_str prod = S("example.com"), dev = S("DEV.example.com");
	struct auth *a = NULL;

	c.off_domains = off;
	c.n_off_domains = 1;
	CHECK_INT(auth_alloc(&a, &c, NULL), 0);
	CHECK(auth_required(a, &prod));
	CHECK(!auth_required(a, &dev));
	auth_free(&a);
	c.enabled = false;
	CHECK_INT(auth_alloc(&a, &c, NULL), 0);
	CHECK(!auth_required(a, &prod));
	auth_free(&a);
}

int main(void)
{
	char cmd[64];

	log_set_level(LOG_ERR);
	if (sipresp_tag_key_alloc(&tag_key, (const uint8_t *)"test tag key", 12) != 0) {
		puts("Bail out! cannot key HMAC-SHA256");
		return 1;
	}
	if (!mkdtemp(tmpdir)) {
		puts("1..0 # SKIP no temporary directory");
		return 0;
	}
	snprintf(secret_a, sizeof(secret_a), "%s/a.secret", tmpdir);
	snprintf(secret_b, sizeof(secret_b), "%s/b.secret", tmpdir);
	write_file(secret_a, "4f1c2a8b9e0d7c6b5a4f3e2d1c0b9a88\n", 0600);
	write_file(secret_b, "0b9a884f1c2a8b9e0d7c6b5a4f3e2d1c\n", 0600);

	RUN(test_auth_nonce_round_trip_and_cluster_secret);
	RUN(test_auth_tag_key_follows_the_secret);
	RUN(test_auth_nonce_unique_per_challenge);
	RUN(test_auth_nonce_tampered_rejected);
	RUN(test_auth_nonce_stale_after_ttl);
	RUN(test_auth_secret_file_checks);
	RUN(test_auth_challenge_default_is_md5_alone);
	RUN(test_auth_challenge_sha256_first_then_md5);
	RUN(test_auth_challenge_algorithm_order_configurable);
	RUN(test_auth_offer_per_user_agent_rule);
	RUN(test_auth_offer_narrowed_to_the_users_secrets);
	RUN(test_auth_creds_parse_good);
	RUN(test_auth_creds_parse_malformed);
	RUN(test_auth_creds_parse_from_message);
	RUN(test_auth_digest_uri_must_name_request_uri);
	RUN(test_auth_response_ok_password_and_ha1);
	RUN(test_auth_nc_replay_detected);
	RUN(test_auth_nc_table_bounded_oldest_first);
	RUN(test_auth_ban_window_start_and_expiry);
	RUN(test_auth_ban_table_bounded);
	RUN(test_auth_trusted_sources_never_banned);
	RUN(test_auth_may_register_self_and_aliases);
	RUN(test_auth_required_per_domain);

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmpdir);
	sipresp_tag_key_free(&tag_key);
	CHECK_DONE();
}
