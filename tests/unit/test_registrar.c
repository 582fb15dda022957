/* Unit tests for src/registrar/registrar.c: REGISTERs built as text, parsed with sipmsg_parse, then
 * one test per RFC 3261 §10.3 rule and refusal, the change-set, and the 200 OK. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "registrar/registrar.h"

#define NOW 1700000000

/* The key of the To tags the responses built here carry. */
static struct sipresp_tag_key *tag_key;

static const struct sip_source src = {
    .proto = SIP_PROTO_UDP,
    .ip = "127.0.0.1",
    .port = 5070,
};

static char *domains[] = {"example.com", "voice.example.net"};

static struct registrar_conf cfg_default(void)
{
	return (struct registrar_conf){
	    .default_expires = 3600,
	    .min_expires = 60,
	    .max_expires = 7200,
	    .max_contacts = 10,
	    .max_contacts_status = 403,
	    .unknown_domain_status = 404,
	    .unknown_user_status = 404,
	    .domains = domains,
	    .n_domains = 2,
	};
}

/* A parsed REGISTER plus its decision; both freed by fx_done(). */
struct fx {
	struct sipmsg *m;
	struct sip_register reg;
	struct reg_decision d;
	int rc;
};

/* REGISTER to ruri with To: to, the given extra header lines ("Name: v\r\n" each). */
static int fx_run_cfg(struct fx *f, const struct registrar_conf *cfg, const char *ruri,
		      const char *to, const char *extra)
{
	char buf[8192];
	int status = 0, n;
	const char *reason = NULL;

	memset(f, 0, sizeof(*f));
	n = snprintf(buf, sizeof(buf),
		     "REGISTER %s SIP/2.0\r\n"
		     "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-regtest-1;rport\r\n"
		     "Max-Forwards: 70\r\n"
		     "From: <sip:alice@example.com>;tag=from-1\r\n"
		     "To: %s\r\n"
		     "Call-ID: call-1@127.0.0.1\r\n"
		     "CSeq: 7 REGISTER\r\n"
		     "%s"
		     "Content-Length: 0\r\n"
		     "\r\n",
		     ruri, to, extra);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		printf("#   message too long for the test buffer\n");
		return EINVAL;
	}
	if (sipmsg_parse(&f->m, buf, (size_t)n, &status, &reason) != 0 || !f->m) {
		printf("#   sipmsg_parse refused the test message: %d %s\n", status,
		       reason ? reason : "");
		sipmsg_free(&f->m);
		return EINVAL;
	}
	f->rc = sip_register_read(f->m, &f->reg);
	if (f->rc == 0)
		f->rc = registrar_check(cfg, &f->reg, NOW, &f->d);
	return 0;
}

static int fx_run(struct fx *f, const char *extra)
{
	struct registrar_conf cfg = cfg_default();

	return fx_run_cfg(f, &cfg, "sip:example.com", "<sip:alice@example.com>", extra);
}

static void fx_done(struct fx *f)
{
	registrar_decision_clear(&f->d);
	sip_register_clear(&f->reg);
	sipmsg_free(&f->m);
}

/* The change for one Contact, by position in the change-set. */
static const struct reg_change *fx_change(const struct fx *f, size_t i)
{
	return i < f->d.req.n_changes ? &f->d.req.changes[i] : NULL;
}

/* Expect a REGISTER with the given Contact line to be accepted; returns its one change. */
#define EXPECT_ACCEPTED(f)                                                                     \
	do {                                                                                   \
		CHECK_INT((f)->rc, 0);                                                         \
		CHECK_INT((f)->d.status, 0);                                                   \
	} while (0)

/* ---- step 1: Request-URI domain ---- */

static void test_unknown_request_uri_domain_gets_404(void)
{
	struct registrar_conf cfg = cfg_default();
	struct fx f;

	if (fx_run_cfg(&f, &cfg, "sip:other.org", "<sip:alice@example.com>",
		       "Contact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.rc, 0);
	CHECK_INT(f.d.status, 404);
	CHECK_STR(f.d.reason, "Not Found");
	CHECK_INT(f.d.req.n_changes, 0);
	fx_done(&f);
}

static void test_unknown_domain_403_when_configured(void)
{
	struct registrar_conf cfg = cfg_default();
	struct fx f;

	cfg.unknown_domain_status = 403;
	if (fx_run_cfg(&f, &cfg, "sip:other.org", "<sip:alice@example.com>", "") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 403);
	CHECK_STR(f.d.reason, "Forbidden");
	fx_done(&f);
}

static void test_request_uri_domain_case_insensitive(void)
{
	struct registrar_conf cfg = cfg_default();
	struct fx f;

	if (fx_run_cfg(&f, &cfg, "sip:EXAMPLE.Com:5060;transport=udp",
		       "<sip:alice@example.com>", "Contact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	fx_done(&f);
}

static void test_second_configured_domain_served(void)
{
	struct registrar_conf cfg = cfg_default();
	struct fx f;

	if (fx_run_cfg(&f, &cfg, "sip:voice.example.net", "<sip:bob@Voice.Example.NET>",
		       "Contact: <sip:bob@192.0.2.2>\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK_MEM(f.d.req.aor.p, f.d.req.aor.len, "bob@voice.example.net");
	fx_done(&f);
}

/* ---- step 2: Require, and Path (RFC 3327 §5.3) ---- */

static void test_require_unknown_option_gets_420(void)
{
	struct fx f;

	if (fx_run(&f, "Require: foo, path\r\nRequire: Bar\r\n"
		       "Contact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.rc, 0);
	CHECK_INT(f.d.status, 420);
	CHECK_STR(f.d.reason, "Bad Extension");
	CHECK_STR(f.d.unsupported, "foo, Bar");
	fx_done(&f);
}

/* More option-tags than fit the values kept on the stack: all of them are read. */
static void test_require_many_tags_all_read(void)
{
	char hdrs[1024];
	size_t n = 0;
	struct fx f;

	n += (size_t)snprintf(hdrs + n, sizeof(hdrs) - n, "Supported: ");
	for (int i = 0; i < 40; i++)
		n += (size_t)snprintf(hdrs + n, sizeof(hdrs) - n, "t%d, ", i);
	n += (size_t)snprintf(hdrs + n, sizeof(hdrs) - n,
			      "path\r\nPath: <sip:edge.example.com;lr>\r\nRequire: path");
	for (int i = 0; i < 30; i++)
		n += (size_t)snprintf(hdrs + n, sizeof(hdrs) - n, ", path");
	snprintf(hdrs + n, sizeof(hdrs) - n, ", late\r\nContact: <sip:alice@192.0.2.1>\r\n");
	if (fx_run(&f, hdrs) != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 420);
	CHECK_STR(f.d.unsupported, "late");
	fx_done(&f);

	/* "path" as the 41st Supported tag still allows the Path */
	n = (size_t)snprintf(hdrs, sizeof(hdrs), "Supported: ");
	for (int i = 0; i < 40; i++)
		n += (size_t)snprintf(hdrs + n, sizeof(hdrs) - n, "t%d, ", i);
	snprintf(hdrs + n, sizeof(hdrs) - n,
		 "path\r\nPath: <sip:edge.example.com;lr>\r\n"
		 "Contact: <sip:alice@192.0.2.1>\r\n");
	if (fx_run(&f, hdrs) != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK(f.d.path_supported);
	CHECK_MEM(f.d.req.path.p, f.d.req.path.len, "<sip:edge.example.com;lr>");
	fx_done(&f);
}

static void test_require_path_is_supported(void)
{
	struct fx f;

	if (fx_run(&f, "Require: PATH\r\nSupported: path\r\n"
		       "Contact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK(f.d.unsupported == NULL);
	fx_done(&f);
}

static void test_require_outbound_not_claimed(void)
{
	struct fx f;

	if (fx_run(
		&f,
		"Supported: path, outbound\r\nRequire: outbound\r\n"
		"Contact: <sip:alice@192.0.2.1>;+sip.instance=\"<urn:uuid:1>\";reg-id=1\r\n") !=
	    0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 420);
	CHECK_STR(f.d.unsupported, "outbound");
	fx_done(&f);
}

static void test_path_without_supported_gets_420(void)
{
	struct fx f;

	if (fx_run(&f, "Path: <sip:edge.example.com;lr>\r\n"
		       "Contact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 420);
	CHECK_STR(f.d.reason, "Bad Extension");
	CHECK_STR(f.d.unsupported, "path");
	CHECK_INT(f.d.req.n_changes, 0);
	fx_done(&f);
}

static void test_path_joined(void)
{
	struct fx f;

	if (fx_run(&f, "Supported: timer, path\r\n"
		       "Path: <sip:p3.example.com;lr>, <sip:p2.example.com;lr>\r\n"
		       "Path: <sip:p1.example.org;lr>\r\n"
		       "Contact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK(f.d.path_supported);
	CHECK_MEM(f.d.req.path.p, f.d.req.path.len,
		  "<sip:p3.example.com;lr>,<sip:p2.example.com;lr>,<sip:p1.example.org;lr>");
	fx_done(&f);
}

static void test_supported_compact_form_counts(void)
{
	struct fx f;

	if (fx_run(&f, "k: path\r\nPath: <sip:edge.example.com;lr>\r\n"
		       "Contact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK(f.d.path_supported);
	CHECK_MEM(f.d.req.path.p, f.d.req.path.len, "<sip:edge.example.com;lr>");
	fx_done(&f);
}

static void test_no_path_leaves_path_empty(void)
{
	struct fx f;

	if (fx_run(&f, "Supported: path\r\nContact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK(f.d.path_supported);
	CHECK_INT(f.d.req.path.len, 0);
	fx_done(&f);
}

/* ---- step 5: the address-of-record ---- */

static void test_aor_canonical_from_to(void)
{
	struct registrar_conf cfg = cfg_default();
	struct fx f;

	/* %61 is 'a' (unreserved: decoded); the host's case folds; port and params go. */
	if (fx_run_cfg(&f, &cfg, "sip:example.com",
		       "\"Al\" <sip:%61lice@EXAMPLE.COM:5061;user=phone>",
		       "Contact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK_MEM(f.d.req.aor.p, f.d.req.aor.len, "alice@example.com");
	CHECK_MEM(f.d.user.p, f.d.user.len, "alice");
	CHECK_MEM(f.d.domain.p, f.d.domain.len, "example.com");
	fx_done(&f);
}

static void test_aor_user_case_kept(void)
{
	struct registrar_conf cfg = cfg_default();
	struct fx f;

	/* The user part is case-sensitive (RFC 3261 §19.1.4). */
	if (fx_run_cfg(&f, &cfg, "sip:example.com", "<sip:Alice@example.com>",
		       "Contact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK_MEM(f.d.req.aor.p, f.d.req.aor.len, "Alice@example.com");
	fx_done(&f);
}

static void test_escnull_aor_not_truncated(void)
{
	struct registrar_conf cfg = cfg_default();
	struct fx f;

	/* RFC 4475 escnull: libosip2 turns %00 into a NUL and would read "null-". */
	if (fx_run_cfg(&f, &cfg, "sip:example.com", "sip:null-%00-null@example.com",
		       "Contact: <sip:%00@192.0.2.5>\r\nContact: <sip:%00%00@192.0.2.5>\r\n") !=
	    0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK_MEM(f.d.req.aor.p, f.d.req.aor.len, "null-%00-null@example.com");
	CHECK_MEM(f.d.user.p, f.d.user.len, "null-%00-null");
	CHECK_INT(f.d.req.n_changes, 2);
	if (f.d.req.n_changes == 2)
		CHECK(!sip_str_eq(&f.d.req.changes[0].key, &f.d.req.changes[1].key));
	fx_done(&f);
}

static void test_to_domain_not_served_gets_404(void)
{
	struct registrar_conf cfg = cfg_default();
	struct fx f;

	if (fx_run_cfg(&f, &cfg, "sip:example.com", "<sip:alice@other.org>",
		       "Contact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 404);
	CHECK_STR(f.d.reason, "Not Found");
	fx_done(&f);
}

static void test_to_domain_not_served_403_when_configured(void)
{
	struct registrar_conf cfg = cfg_default();
	struct fx f;

	cfg.unknown_domain_status = 403;
	if (fx_run_cfg(&f, &cfg, "sip:example.com", "<sip:alice@other.org>", "") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 403);
	fx_done(&f);
}

static void test_to_without_user_gets_400(void)
{
	struct registrar_conf cfg = cfg_default();
	struct fx f;

	if (fx_run_cfg(&f, &cfg, "sip:example.com", "<sip:example.com>",
		       "Contact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 400);
	fx_done(&f);
}

/* ---- step 6: Contact: * and queries ---- */

static void test_wildcard_requires_expires_zero(void)
{
	struct fx f;

	if (fx_run(&f, "Contact: *\r\nExpires: 3600\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 400);
	CHECK_STR(f.d.reason, "Invalid Contact: * needs Expires: 0 and no other Contact");
	CHECK(!f.d.req.wildcard);
	fx_done(&f);

	/* No Expires at all: the default interval is not zero either. */
	if (fx_run(&f, "Contact: *\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 400);
	CHECK(!f.d.req.wildcard);
	fx_done(&f);
}

static void test_wildcard_must_be_single_contact(void)
{
	struct fx f;

	if (fx_run(&f, "Contact: *\r\nContact: <sip:alice@192.0.2.1>\r\nExpires: 0\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 400);
	CHECK_STR(f.d.reason, "Invalid Contact: * needs Expires: 0 and no other Contact");
	fx_done(&f);

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>, *\r\nExpires: 0\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 400);
	fx_done(&f);
}

static void test_wildcard_with_expires_zero_sets_wildcard(void)
{
	struct fx f;

	if (fx_run(&f, "Contact: *\r\nExpires: 0\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK(f.d.req.wildcard);
	CHECK(!f.d.is_query);
	CHECK_INT(f.d.req.n_changes, 0);
	CHECK_MEM(f.d.req.aor.p, f.d.req.aor.len, "alice@example.com");
	CHECK_INT(f.d.req.cseq, 7);
	fx_done(&f);
}

static void test_no_contact_is_query(void)
{
	struct fx f;

	if (fx_run(&f, "") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK(f.d.is_query);
	CHECK(!f.d.req.wildcard);
	CHECK_INT(f.d.req.n_changes, 0);
	CHECK_MEM(f.d.req.aor.p, f.d.req.aor.len, "alice@example.com");
	fx_done(&f);
}

/* ---- step 7: each Contact ---- */

static void test_expires_from_contact_param_beats_header(void)
{
	struct fx f;
	const struct reg_change *c;

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>;expires=120\r\nExpires: 1800\r\n") !=
	    0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	c = fx_change(&f, 0);
	CHECK(c != NULL);
	if (c)
		CHECK_INT(c->expires, 120);
	fx_done(&f);
}

static void test_expires_header_used_when_no_param(void)
{
	struct fx f;
	const struct reg_change *c;

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>;expires=300, <sip:alice@192.0.2.2>\r\n"
		       "Expires: 1800\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK_INT(f.d.req.n_changes, 2);
	c = fx_change(&f, 0);
	if (c)
		CHECK_INT(c->expires, 300);
	c = fx_change(&f, 1);
	CHECK(c != NULL);
	if (c)
		CHECK_INT(c->expires, 1800);
	fx_done(&f);
}

static void test_default_expires_when_none(void)
{
	struct fx f;
	const struct reg_change *c;

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	c = fx_change(&f, 0);
	CHECK(c != NULL);
	if (c)
		CHECK_INT(c->expires, 3600);
	fx_done(&f);
}

static void test_expires_below_min_gets_423(void)
{
	struct fx f;

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>;expires=30\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.rc, 0);
	CHECK_INT(f.d.status, 423);
	CHECK_STR(f.d.reason, "Interval Too Brief");
	CHECK_INT(f.d.req.n_changes, 0);
	fx_done(&f);
}

static void test_expires_header_below_min_gets_423(void)
{
	struct fx f;

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>\r\nExpires: 59\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 423);
	fx_done(&f);
}

static void test_expires_at_min_accepted(void)
{
	struct fx f;
	const struct reg_change *c;

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>;expires=60\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	c = fx_change(&f, 0);
	if (c)
		CHECK_INT(c->expires, 60);
	fx_done(&f);
}

static void test_423_only_below_one_hour(void)
{
	struct registrar_conf cfg = cfg_default();
	struct fx f;
	const struct reg_change *c;

	/* RFC 3261 §10.3 step 7 allows 423 only for intervals under an hour, whatever
	 * the configured minimum. */
	cfg.min_expires = 5000;
	if (fx_run_cfg(&f, &cfg, "sip:example.com", "<sip:alice@example.com>",
		       "Contact: <sip:alice@192.0.2.1>;expires=3600\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	c = fx_change(&f, 0);
	if (c)
		CHECK_INT(c->expires, 3600);
	fx_done(&f);

	if (fx_run_cfg(&f, &cfg, "sip:example.com", "<sip:alice@example.com>",
		       "Contact: <sip:alice@192.0.2.1>;expires=3599\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 423);
	fx_done(&f);
}

static void test_423_wins_only_after_every_contact_is_valid(void)
{
	struct fx f;

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>;expires=10\r\n"
		       "Contact: <sip:alice@192.0.2.2>;q=7\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 400);
	fx_done(&f);
}

static void test_expires_zero_is_removal_not_423(void)
{
	struct fx f;
	const struct reg_change *c;

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>;expires=0\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	c = fx_change(&f, 0);
	CHECK(c != NULL);
	if (c)
		CHECK_INT(c->expires, 0);
	fx_done(&f);

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>\r\nExpires: 0\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	c = fx_change(&f, 0);
	if (c)
		CHECK_INT(c->expires, 0);
	fx_done(&f);
}

static void test_expires_above_max_clamped(void)
{
	struct fx f;
	const struct reg_change *c;

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>;expires=7201\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	c = fx_change(&f, 0);
	if (c)
		CHECK_INT(c->expires, 7200);
	fx_done(&f);

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>\r\nExpires: 86400\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	c = fx_change(&f, 0);
	if (c)
		CHECK_INT(c->expires, 7200);
	fx_done(&f);
}

static void test_huge_expires_clamped(void)
{
	struct fx f;
	const struct reg_change *c;

	/* RFC 4475 scalar02 carries values like these. */
	if (fx_run(&f,
		   "Contact: <sip:alice@192.0.2.1>;expires=280297596632815\r\n"
		   "Contact: <sip:alice@192.0.2.2>;expires="
		   "1000000000000000000000000000000000000000000000000000000000000000\r\n") !=
	    0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK_INT(f.d.req.n_changes, 2);
	c = fx_change(&f, 0);
	if (c)
		CHECK_INT(c->expires, 7200);
	c = fx_change(&f, 1);
	if (c)
		CHECK_INT(c->expires, 7200);
	fx_done(&f);
}

/* The final answer to a REGISTER with these extra lines: sipmsg's refusal when it has
 * one (it checks some Contact parameters itself), else the registrar's status. */
static int answer_status(const char *extra, const char **reason_r)
{
	struct registrar_conf cfg = cfg_default();
	char buf[4096];
	struct sipmsg *m = NULL;
	struct sip_register reg;
	struct reg_decision d;
	int n, status = 0;
	const char *reason = NULL;

	n = snprintf(buf, sizeof(buf),
		     "REGISTER sip:example.com SIP/2.0\r\n"
		     "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-regtest-2;rport\r\n"
		     "Max-Forwards: 70\r\n"
		     "From: <sip:alice@example.com>;tag=from-2\r\n"
		     "To: <sip:alice@example.com>\r\n"
		     "Call-ID: call-2@127.0.0.1\r\n"
		     "CSeq: 1 REGISTER\r\n"
		     "%s"
		     "Content-Length: 0\r\n"
		     "\r\n",
		     extra);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -1;
	if (sipmsg_parse(&m, buf, (size_t)n, &status, &reason) != 0) {
		sipmsg_free(&m);
		*reason_r = reason;
		return status;
	}
	memset(&d, 0, sizeof(d));
	if (sip_register_read(m, &reg) != 0 || registrar_check(&cfg, &reg, NOW, &d) != 0)
		status = -1;
	else
		status = d.status;
	*reason_r = d.reason;
	registrar_decision_clear(&d);
	sip_register_clear(&reg);
	sipmsg_free(&m);
	return status;
}

static void test_bad_expires_param_gets_400(void)
{
	static const char *bad[] = {
	    "Contact: <sip:alice@192.0.2.1>;expires=abc\r\n",
	    "Contact: <sip:alice@192.0.2.1>;expires=-1\r\n",
	    "Contact: <sip:alice@192.0.2.1>;expires=12s\r\n",
	    "Contact: <sip:alice@192.0.2.1>;expires\r\n",
	    "Contact: <sip:alice@192.0.2.1>;expires=\"Thu, 01 Dec 2094 16:00:00 GMT\"\r\n",
	};
	const char *reason;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int status = answer_status(bad[i], &reason);

		if (status != 400)
			printf("#   case %zu\n", i);
		CHECK_INT(status, 400);
	}
}

/* The registrar's own check, for a message whose Contact parameters reach it unchecked
 * (sipmsg may stop these first; the registrar must not rely on it). */
static void test_registrar_checks_params_itself(void)
{
	static const char *bad[] = {
	    ";expires=abc",
	    ";expires=",
	    ";expires",
	    ";expires=\"3600\"",
	    ";q=1.5",
	    ";q=",
	    ";reg-id=0;+sip.instance=\"<urn:uuid:1>\"",
	    ";+sip.instance=\"\"",
	    ";+sip.instance=\"<urn:uuid:1>",
	};
	struct registrar_conf cfg = cfg_default();
	struct fx f;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>;expires=600\r\n") != 0) {
			CHECK(0);
			return;
		}
		EXPECT_ACCEPTED(&f);
		registrar_decision_clear(&f.d);
		CHECK_INT(f.m->n_contacts, 1);
		if (f.m->n_contacts != 1) {
			fx_done(&f);
			return;
		}
		f.m->contacts[0].params = sip_str_c(bad[i]);
		sip_register_clear(&f.reg);
		CHECK_INT(sip_register_read(f.m, &f.reg), 0);
		CHECK_INT(registrar_check(&cfg, &f.reg, NOW, &f.d), 0);
		if (f.d.status != 400)
			printf("#   params %s\n", bad[i]);
		CHECK_INT(f.d.status, 400);
		CHECK_INT(f.d.req.n_changes, 0);
		fx_done(&f);
	}
}

static void test_q_values_parsed(void)
{
	struct fx f;
	static const int16_t want[] = {0, 500, 1000, 1000, 125, 50, Q_NONE, 0};

	if (fx_run(&f, "Contact: <sip:a@192.0.2.1>;q=0, <sip:b@192.0.2.1>;q=0.5\r\n"
		       "Contact: <sip:c@192.0.2.1>;q=1, <sip:d@192.0.2.1>;Q=1.000\r\n"
		       "Contact: <sip:e@192.0.2.1>;q=0.125, <sip:f@192.0.2.1>;q=0.05\r\n"
		       "Contact: <sip:g@192.0.2.1>, <sip:h@192.0.2.1>;q=0.\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK_INT(f.d.req.n_changes, 8);
	for (size_t i = 0; i < 8 && i < f.d.req.n_changes; i++)
		CHECK_INT(f.d.req.changes[i].q, want[i]);
	fx_done(&f);
}

static void test_bad_q_gets_400(void)
{
	static const char *bad[] = {"1.5", "1.001", "0.1234", "abc", "2", ".5", "-0.5", "0,5"};
	char line[128];
	const char *reason;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int status;

		snprintf(line, sizeof(line), "Contact: <sip:alice@192.0.2.1>;q=%s\r\n", bad[i]);
		status = answer_status(line, &reason);
		if (status != 400)
			printf("#   q=%s\n", bad[i]);
		CHECK_INT(status, 400);
	}
}

static void test_instance_and_reg_id_stored(void)
{
	struct fx f;
	const struct reg_change *c;

	if (fx_run(&f,
		   "Supported: path, outbound\r\n"
		   "Contact: <sip:alice@192.0.2.1;ob>;reg-id=2;"
		   "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\"\r\n") !=
	    0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	c = fx_change(&f, 0);
	CHECK(c != NULL);
	if (c) {
		CHECK_MEM(c->instance.p, c->instance.len,
			  "<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>");
		CHECK_INT(c->reg_id, 2);
	}
	fx_done(&f);
}

static void test_reg_id_without_instance_ignored(void)
{
	struct fx f;
	const struct reg_change *c;

	/* RFC 5626 §6: a reg-id with no instance-id is ignored, not refused. */
	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>;reg-id=1\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	c = fx_change(&f, 0);
	if (c) {
		CHECK_INT(c->reg_id, 0);
		CHECK_INT(c->instance.len, 0);
	}
	fx_done(&f);
}

static void test_bad_reg_id_gets_400(void)
{
	static const char *bad[] = {"0", "x1", "2147483648", ""};
	char line[256];
	const char *reason;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int status;

		snprintf(line, sizeof(line),
			 "Contact: <sip:alice@192.0.2.1>;+sip.instance=\"<urn:uuid:1>\";"
			 "reg-id=%s\r\n",
			 bad[i]);
		status = answer_status(line, &reason);
		if (status != 400)
			printf("#   reg-id=%s\n", bad[i]);
		CHECK_INT(status, 400);
	}
}

static void test_unquoted_instance_gets_400(void)
{
	struct fx f;

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>;+sip.instance=urn:uuid:1\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 400);
	CHECK_STR(f.d.reason, "Invalid Contact: bad +sip.instance parameter");
	fx_done(&f);
}

static void test_multiple_contacts_keys_distinct(void)
{
	struct fx f;

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1:5060>, <sip:alice@192.0.2.1:5062>\r\n"
		       "Contact: <sips:alice@192.0.2.1:5060>;expires=600\r\n"
		       "m: <sip:alice@192.0.2.1:5060;transport=tcp>\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK_INT(f.d.req.n_changes, 4);
	for (size_t i = 0; i < f.d.req.n_changes; i++) {
		CHECK(f.d.req.changes[i].key.len > 0);
		for (size_t j = i + 1; j < f.d.req.n_changes; j++)
			CHECK(!sip_str_eq(&f.d.req.changes[i].key, &f.d.req.changes[j].key));
	}
	if (f.d.req.n_changes == 4) {
		CHECK_MEM(f.d.req.changes[0].contact.p, f.d.req.changes[0].contact.len,
			  "sip:alice@192.0.2.1:5060");
		CHECK_INT(f.d.req.changes[2].expires, 600);
		CHECK_MEM(f.d.req.changes[3].contact.p, f.d.req.changes[3].contact.len,
			  "sip:alice@192.0.2.1:5060;transport=tcp");
	}
	fx_done(&f);
}

static void test_duplicate_contacts_last_wins(void)
{
	struct fx f;

	/* Equal per RFC 3261 §19.1.4: host case differs only. */
	if (fx_run(&f, "Contact: <sip:alice@HOST.example.org>;expires=300\r\n"
		       "Contact: <sip:bob@192.0.2.9>\r\n"
		       "Contact: <sip:alice@host.example.org>;expires=0\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK_INT(f.d.req.n_changes, 2);
	if (f.d.req.n_changes == 2) {
		CHECK_MEM(f.d.req.changes[0].contact.p, f.d.req.changes[0].contact.len,
			  "sip:bob@192.0.2.9");
		CHECK_MEM(f.d.req.changes[1].contact.p, f.d.req.changes[1].contact.len,
			  "sip:alice@host.example.org");
		CHECK_INT(f.d.req.changes[1].expires, 0);
	}
	fx_done(&f);
}

static void test_non_sip_contact_gets_400(void)
{
	struct fx f;

	if (fx_run(&f, "Contact: <mailto:alice@example.com>\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(f.d.status, 400);
	CHECK_STR(f.d.reason, "Invalid Contact: only sip and sips URIs can be registered");
	CHECK_INT(f.d.req.n_changes, 0);
	fx_done(&f);
}

static void test_request_fields_filled(void)
{
	struct fx f;

	if (fx_run(&f,
		   "User-Agent: TestPhone/1.0 (lab)\r\n"
		   "Contact: \"Alice\" <sip:alice@192.0.2.1;transport=udp>;expires=600\r\n") !=
	    0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK(!f.d.is_query);
	CHECK(!f.d.req.wildcard);
	CHECK_MEM(f.d.req.call_id.p, f.d.req.call_id.len, "call-1@127.0.0.1");
	CHECK_INT(f.d.req.cseq, 7);
	CHECK_INT(f.d.req.now, NOW);
	CHECK_INT(f.d.req.max_contacts, 10);
	CHECK_MEM(f.d.req.user_agent.p, f.d.req.user_agent.len, "TestPhone/1.0 (lab)");
	CHECK_INT(f.d.req.n_changes, 1);
	if (f.d.req.n_changes == 1) {
		CHECK_MEM(f.d.req.changes[0].contact.p, f.d.req.changes[0].contact.len,
			  "sip:alice@192.0.2.1;transport=udp");
		CHECK_INT(f.d.req.changes[0].q, Q_NONE);
		CHECK_INT(f.d.req.changes[0].reg_id, 0);
		CHECK_INT(f.d.req.changes[0].instance.len, 0);
	}
	fx_done(&f);
}

static void test_decision_clear_is_safe_twice(void)
{
	struct reg_decision d;

	memset(&d, 0, sizeof(d));
	registrar_decision_clear(&d);
	registrar_decision_clear(&d);
	registrar_decision_clear(NULL);
	CHECK(d.changes == NULL && d.keys == NULL && d.path == NULL);
}

/* ---- the 200 OK ---- */

/* Does the response text hold exactly this line (CRLF-terminated)? */
static int resp_has_line(const struct sipresp *r, const char *line)
{
	size_t n = strlen(line);

	for (size_t i = 0; i + n + 2 <= r->len; i++) {
		if ((i == 0 || r->buf[i - 1] == '\n') && memcmp(r->buf + i, line, n) == 0 &&
		    r->buf[i + n] == '\r' && r->buf[i + n + 1] == '\n')
			return 1;
	}
	return 0;
}

static size_t resp_count(const struct sipresp *r, const char *prefix)
{
	size_t n = strlen(prefix), count = 0;

	for (size_t i = 0; i + n <= r->len; i++) {
		if ((i == 0 || r->buf[i - 1] == '\n') && memcmp(r->buf + i, prefix, n) == 0)
			count++;
	}
	return count;
}

static struct binding binding_at(const char *contact, int64_t expires_at, int16_t q)
{
	return (struct binding){
	    .contact = sip_str_c(contact),
	    .expires_at = expires_at,
	    .q = q,
	};
}

static void test_reply_lists_all_bindings_with_expires(void)
{
	struct fx f;
	struct sipresp r = {0};
	struct binding b[3];
	struct binding_set set = {.v = b, .n = 3};

	if (fx_run(&f, "Contact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	b[0] = binding_at("sip:alice@192.0.2.1", NOW + 3600, Q_NONE);
	b[1] = binding_at("sip:alice@192.0.2.2;transport=tcp", NOW + 1, 500);
	b[2] = binding_at("sips:alice@[2001:db8::1]:5061", NOW + 7200, 1000);
	CHECK_INT(sipresp_start(&r, tag_key, f.m, 200, "OK", &src), 0);
	registrar_reply_ok(&r, &f.d, &set, NOW);
	CHECK_INT(r.err, 0);
	CHECK(resp_has_line(&r, "Contact: <sip:alice@192.0.2.1>;expires=3600"));
	CHECK(
	    resp_has_line(&r, "Contact: <sip:alice@192.0.2.2;transport=tcp>;expires=1;q=0.5"));
	CHECK(resp_has_line(&r, "Contact: <sips:alice@[2001:db8::1]:5061>;expires=7200;q=1"));
	CHECK_INT(resp_count(&r, "Contact:"), 3);
	CHECK_INT(resp_count(&r, "Date: "), 1);
	CHECK_INT(resp_count(&r, "Path:"), 0);
	sipresp_clear(&r);
	fx_done(&f);
}

static void test_reply_skips_expired(void)
{
	struct fx f;
	struct sipresp r = {0};
	struct binding b[3];
	struct binding_set set = {.v = b, .n = 3};

	if (fx_run(&f, "") != 0) {
		CHECK(0);
		return;
	}
	b[0] = binding_at("sip:old@192.0.2.1", NOW - 5, Q_NONE);
	b[1] = binding_at("sip:now@192.0.2.1", NOW, Q_NONE);
	b[2] = binding_at("sip:live@192.0.2.1", NOW + 60, 0);
	CHECK_INT(sipresp_start(&r, tag_key, f.m, 200, "OK", &src), 0);
	registrar_reply_ok(&r, &f.d, &set, NOW);
	CHECK_INT(resp_count(&r, "Contact:"), 1);
	CHECK(resp_has_line(&r, "Contact: <sip:live@192.0.2.1>;expires=60;q=0"));
	CHECK(memmem(r.buf, r.len, "expires=-", 9) == NULL);
	sipresp_clear(&r);
	fx_done(&f);
}

static void test_reply_empty_set_has_no_contact(void)
{
	struct fx f;
	struct sipresp r = {0};
	struct binding_set set = {.v = NULL, .n = 0};

	if (fx_run(&f, "Contact: *\r\nExpires: 0\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(sipresp_start(&r, tag_key, f.m, 200, "OK", &src), 0);
	registrar_reply_ok(&r, &f.d, &set, NOW);
	CHECK_INT(resp_count(&r, "Contact:"), 0);
	CHECK_INT(resp_count(&r, "Date: "), 1);
	sipresp_clear(&r);
	fx_done(&f);
}

static void test_reply_q_and_instance_echoed(void)
{
	struct fx f;
	struct sipresp r = {0};
	struct binding b[2];
	struct binding_set set = {.v = b, .n = 2};

	if (fx_run(&f, "") != 0) {
		CHECK(0);
		return;
	}
	b[0] = binding_at("sip:alice@192.0.2.1;ob", NOW + 600, 125);
	b[0].instance = SIP_STR_LIT("<urn:uuid:abc>");
	b[0].reg_id = 1;
	b[1] = binding_at("sip:alice@192.0.2.2", NOW + 600, 50);
	b[1].instance = SIP_STR_LIT("<urn:uuid:def>");
	CHECK_INT(sipresp_start(&r, tag_key, f.m, 200, "OK", &src), 0);
	registrar_reply_ok(&r, &f.d, &set, NOW);
	CHECK(resp_has_line(&r, "Contact: <sip:alice@192.0.2.1;ob>;expires=600;q=0.125;"
				"+sip.instance=\"<urn:uuid:abc>\";reg-id=1"));
	CHECK(resp_has_line(&r, "Contact: <sip:alice@192.0.2.2>;expires=600;q=0.05;"
				"+sip.instance=\"<urn:uuid:def>\""));
	CHECK_INT(resp_count(&r, "Require:"), 0);
	sipresp_clear(&r);
	fx_done(&f);
}

static void test_reply_path_only_when_supported(void)
{
	struct fx f;
	struct sipresp r = {0};
	struct binding b = binding_at("sip:alice@192.0.2.1", NOW + 60, Q_NONE);
	struct binding_set set = {.v = &b, .n = 1};
	struct reg_decision d;

	if (fx_run(&f, "Supported: path\r\nPath: <sip:p1.example.com;lr>\r\n"
		       "Path: <sip:p2.example.com;lr>\r\nContact: <sip:alice@192.0.2.1>\r\n") !=
	    0) {
		CHECK(0);
		return;
	}
	EXPECT_ACCEPTED(&f);
	CHECK_INT(sipresp_start(&r, tag_key, f.m, 200, "OK", &src), 0);
	registrar_reply_ok(&r, &f.d, &set, NOW);
	CHECK(resp_has_line(&r, "Path: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>"));
	CHECK_INT(resp_count(&r, "Path:"), 1);
	sipresp_clear(&r);

	/* A decision without Supported: path never echoes a Path (RFC 3261 §8.2.4). */
	memset(&d, 0, sizeof(d));
	d.req.path = SIP_STR_LIT("<sip:p1.example.com;lr>");
	CHECK_INT(sipresp_start(&r, tag_key, f.m, 200, "OK", &src), 0);
	registrar_reply_ok(&r, &d, &set, NOW);
	CHECK_INT(resp_count(&r, "Path:"), 0);
	CHECK_INT(resp_count(&r, "Contact:"), 1);
	sipresp_clear(&r);
	fx_done(&f);

	/* Supported: path but no Path in the request: nothing to echo. */
	if (fx_run(&f, "Supported: path\r\nContact: <sip:alice@192.0.2.1>\r\n") != 0) {
		CHECK(0);
		return;
	}
	CHECK_INT(sipresp_start(&r, tag_key, f.m, 200, "OK", &src), 0);
	registrar_reply_ok(&r, &f.d, &set, NOW);
	CHECK_INT(resp_count(&r, "Path:"), 0);
	sipresp_clear(&r);
	fx_done(&f);
}

/* ---- refusals from the stored state ---- */

static void test_outcome_status_mapping(void)
{
	struct registrar_conf cfg = cfg_default();
	const char *reason = NULL;

	CHECK_INT(registrar_outcome_status(&cfg, REG_OK, &reason), 200);
	CHECK_STR(reason, "OK");
	CHECK_INT(registrar_outcome_status(&cfg, REG_OUT_OF_ORDER, &reason), 500);
	CHECK_STR(reason, "Server Internal Error");
	CHECK_INT(registrar_outcome_status(&cfg, REG_TOO_MANY_CONTACTS, &reason), 403);
	CHECK_STR(reason, "Forbidden: too many contacts");
	cfg.max_contacts_status = 503;
	CHECK_INT(registrar_outcome_status(&cfg, REG_TOO_MANY_CONTACTS, &reason), 503);
	CHECK_STR(reason, "Service Unavailable");
}

/* The rules over a view built by hand, without SIP text: what a REGISTER carries is all
 * they read. */
static void test_rules_are_pure_functions_of_the_view(void)
{
	struct registrar_conf cfg = cfg_default();
	struct sip_register_contact c = {
	    .uri = SIP_STR_LIT("sip:alice@192.0.2.7:5060"),
	    .expires = SIP_STR_LIT("30"),
	    .has_expires = true,
	};
	struct sip_str tags[] = {SIP_STR_LIT("path"), SIP_STR_LIT("x-unknown")};
	struct sip_register v = {
	    .ruri_host = SIP_STR_LIT("example.com"),
	    .to_uri = SIP_STR_LIT("sip:Alice@EXAMPLE.com"),
	    .call_id = SIP_STR_LIT("cid-view"),
	    .cseq = 5,
	    .expires_hdr = -1,
	    .contacts = &c,
	    .n_contacts = 1,
	    .n_contact_values = 1,
	};
	struct reg_decision d;

	/* 30 s is below min_expires: 423, decided from the view alone. */
	CHECK_INT(registrar_check(&cfg, &v, NOW, &d), 0);
	CHECK_INT(d.status, 423);
	registrar_decision_clear(&d);

	c.expires = SIP_STR_LIT("600");
	CHECK_INT(registrar_check(&cfg, &v, NOW, &d), 0);
	CHECK_INT(d.status, 0);
	CHECK_MEM(d.req.aor.p, d.req.aor.len, "Alice@example.com");
	CHECK_INT(d.req.n_changes, 1);
	if (d.req.n_changes == 1)
		CHECK_INT(d.req.changes[0].expires, 600);
	CHECK_INT(d.req.cseq, 5);
	registrar_decision_clear(&d);

	/* An option-tag we do not know in Require: 420 naming it. */
	v.require.v = tags;
	v.require.n = 2;
	CHECK_INT(registrar_check(&cfg, &v, NOW, &d), 0);
	CHECK_INT(d.status, 420);
	CHECK(d.unsupported && strcmp(d.unsupported, "x-unknown") == 0);
	registrar_decision_clear(&d);

	/* A Request-URI for a domain we do not serve. */
	v.require.n = 0;
	v.ruri_host = SIP_STR_LIT("elsewhere.example");
	CHECK_INT(registrar_check(&cfg, &v, NOW, &d), 0);
	CHECK_INT(d.status, 404);
	registrar_decision_clear(&d);
}

int main(void)
{
	if (sipresp_tag_key_alloc(&tag_key, (const uint8_t *)"test tag key", 12) != 0) {
		puts("Bail out! cannot key HMAC-SHA256");
		return 1;
	}
	RUN(test_rules_are_pure_functions_of_the_view);
	RUN(test_unknown_request_uri_domain_gets_404);
	RUN(test_unknown_domain_403_when_configured);
	RUN(test_request_uri_domain_case_insensitive);
	RUN(test_second_configured_domain_served);
	RUN(test_require_unknown_option_gets_420);
	RUN(test_require_path_is_supported);
	RUN(test_require_many_tags_all_read);
	RUN(test_require_outbound_not_claimed);
	RUN(test_path_without_supported_gets_420);
	RUN(test_path_joined);
	RUN(test_supported_compact_form_counts);
	RUN(test_no_path_leaves_path_empty);
	RUN(test_aor_canonical_from_to);
	RUN(test_aor_user_case_kept);
	RUN(test_escnull_aor_not_truncated);
	RUN(test_to_domain_not_served_gets_404);
	RUN(test_to_domain_not_served_403_when_configured);
	RUN(test_to_without_user_gets_400);
	RUN(test_wildcard_requires_expires_zero);
	RUN(test_wildcard_must_be_single_contact);
	RUN(test_wildcard_with_expires_zero_sets_wildcard);
	RUN(test_no_contact_is_query);
	RUN(test_expires_from_contact_param_beats_header);
	RUN(test_expires_header_used_when_no_param);
	RUN(test_default_expires_when_none);
	RUN(test_expires_below_min_gets_423);
	RUN(test_expires_header_below_min_gets_423);
	RUN(test_expires_at_min_accepted);
	RUN(test_423_only_below_one_hour);
	RUN(test_423_wins_only_after_every_contact_is_valid);
	RUN(test_expires_zero_is_removal_not_423);
	RUN(test_expires_above_max_clamped);
	RUN(test_huge_expires_clamped);
	RUN(test_bad_expires_param_gets_400);
	RUN(test_registrar_checks_params_itself);
	RUN(test_q_values_parsed);
	RUN(test_bad_q_gets_400);
	RUN(test_instance_and_reg_id_stored);
	RUN(test_reg_id_without_instance_ignored);
	RUN(test_bad_reg_id_gets_400);
	RUN(test_unquoted_instance_gets_400);
	RUN(test_multiple_contacts_keys_distinct);
	RUN(test_duplicate_contacts_last_wins);
	RUN(test_non_sip_contact_gets_400);
	RUN(test_request_fields_filled);
	RUN(test_decision_clear_is_safe_twice);
	RUN(test_reply_lists_all_bindings_with_expires);
	RUN(test_reply_skips_expired);
	RUN(test_reply_empty_set_has_no_contact);
	RUN(test_reply_q_and_instance_echoed);
	RUN(test_reply_path_only_when_supported);
	RUN(test_outcome_status_mapping);
	sipresp_tag_key_free(&tag_key);
	CHECK_DONE();
}
