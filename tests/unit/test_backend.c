/* The backend conformance suite: the same cases, through the public location API on a real
 * event loop, against the backend named by argv[1] ("memory", "pg", ...).
 *
 * The backend is configured the way sipregd configures it: a YAML file whose location:
 * section names it, read by config_load_string and the backend's own configure(). Extra
 * keys of that section come from SIPREG_TEST_<NAME>_SECTION (a YAML flow mapping body,
 * e.g. `conninfo: "..."`), or for pg from SIPREG_TEST_PG_CONNINFO; a backend that cannot
 * open without them is skipped. Every case works on AORs of its own (unique per run), so
 * the suite can run on a database that already holds data. The directory cases need the
 * fixture users below: the memory backend reads them from the file's users:, a database
 * backend's harness provisions the same users. */
#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "config/config.h"
#include "sipreg/log.h"
#include "sipreg/location.h"

#define TEST_DOMAIN    "test.invalid"
#define LOOP_TIMEOUT_S 10
#define MAX_COPIES     16

static struct event_base *base;
static struct location *loc;
static struct config *cfg;	   /* the suite's configuration */
static struct config *cfg_serial; /* the same store with one connection, where that differs */
static const char *backend_name;
static char section_extra[1024];
static char run_id[64];
static int64_t t_now;

/* ---- fixture users (the directory cases) ------------------------------------------ */

static const char fixture_users[] =
    "domains: [" TEST_DOMAIN "]\n"
    "users:\n"
    "  - {user: conf-alice, password: alice-secret}\n"
    "  - {user: conf-bob, domain: " TEST_DOMAIN ", ha1_md5: 0123456789abcdef0123456789abcdef,\n"
    "     ha1_sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef,\n"
    "     auth: off, max_contacts: 3, aliases: [conf-bobby@" TEST_DOMAIN "]}\n"
    "  - {user: conf-carol, domain: " TEST_DOMAIN ", password: carol, enabled: false}\n";

/* Keys that make a backend's instance run one operation at a time, for the cases that
 * need a defined order; "" where it already does. */
static const char *serial_keys(const char *backend)
{
	return strcmp(backend, "pg") == 0 || strcmp(backend, "ldap") == 0 ? "pool: 1" : "";
}

/* Load the suite's config for backend with extra keys (may be "") in location:. */
static int config_for(struct config **cfgp, const char *backend, const char *extra,
		      char *err, size_t errlen)
{
	char yaml[4096];
	int n;

	n = snprintf(yaml, sizeof(yaml), "%slocation: {backend: %s%s%s%s%s}\n", fixture_users,
		     backend, *section_extra ? ", " : "", section_extra, *extra ? ", " : "",
		     extra);
	if (n < 0 || (size_t)n >= sizeof(yaml))
		return ENOSPC;
	return config_load_string(cfgp, yaml, (size_t)n, "conformance.yaml", err, errlen);
}

/* ---- running the loop ------------------------------------------------------------- */

static void loop_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

/* Run the loop until cond(arg) holds or LOOP_TIMEOUT_S pass; returns cond(arg). */
static bool loop_until(bool (*cond)(const void *), const void *arg)
{
	struct timeval tv = {.tv_sec = LOOP_TIMEOUT_S};
	bool timed_out = false;
	struct event *tmo = evtimer_new(base, loop_timeout, &timed_out);

	if (!tmo)
		return false;
	evtimer_add(tmo, &tv);
	while (!cond(arg) && !timed_out)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(tmo);
	return cond(arg);
}

static bool flag_set(const void *arg)
{
	return *(const bool *)arg;
}

static bool no_pending(const void *arg)
{
	return location_pending(*(struct location *const *)arg) == 0;
}

/* ---- owned copies of borrowed results --------------------------------------------- */

struct str_copy {
	char *p;
	size_t len;
};

struct binding_copy {
	struct str_copy aor, contact, key, call_id, path, instance, user_agent, registered_by;
	struct str_copy qualified_by;
	enum qualify_status qualify;
	uint32_t rtt_ms;
	int64_t qualified_at;
	int64_t expires_at, updated_at;
	int16_t q;
	uint32_t cseq, reg_id;
	struct sip_source source;
};

static void str_copy(struct str_copy *d, const struct sip_str *s)
{
	d->len = s->len;
	d->p = malloc(s->len + 1);
	if (!d->p)
		abort();
	if (s->len)
		memcpy(d->p, s->p, s->len);
	d->p[s->len] = '\0';
}

static void binding_copy(struct binding_copy *d, const struct binding *b)
{
	str_copy(&d->aor, &b->aor);
	str_copy(&d->contact, &b->contact);
	str_copy(&d->key, &b->key);
	str_copy(&d->call_id, &b->call_id);
	str_copy(&d->path, &b->path);
	str_copy(&d->instance, &b->instance);
	str_copy(&d->user_agent, &b->user_agent);
	str_copy(&d->registered_by, &b->registered_by);
	str_copy(&d->qualified_by, &b->qualified_by);
	d->qualify = b->qualify;
	d->rtt_ms = b->rtt_ms;
	d->qualified_at = b->qualified_at;
	d->expires_at = b->expires_at;
	d->updated_at = b->updated_at;
	d->q = b->q;
	d->cseq = b->cseq;
	d->reg_id = b->reg_id;
	d->source = b->source;
}

static void binding_copy_free(struct binding_copy *d)
{
	free(d->aor.p);
	free(d->contact.p);
	free(d->key.p);
	free(d->call_id.p);
	free(d->path.p);
	free(d->instance.p);
	free(d->user_agent.p);
	free(d->registered_by.p);
	free(d->qualified_by.p);
}

/* What one operation's callback(s) delivered. */
struct result {
	bool done;
	bool early; /* a callback ran while the call that started it was still running */
	int calls;  /* final callbacks */
	int err;
	enum reg_outcome outcome;
	size_t n;     /* bindings delivered (iterate: those of the filtered AOR) */
	size_t n_all; /* iterate: every binding delivered */
	bool overflow;
	struct binding_copy v[MAX_COPIES];
	const char *filter; /* iterate: keep only this AOR */
	bool user_found;
	struct binding_copy dummy;
	struct {
		struct str_copy username, domain, ha1_md5, ha1_sha256, password;
		bool enabled, auth_off;
		uint32_t max_contacts;
		size_t n_aliases;
		struct str_copy alias0;
	} user;
};

static bool in_call; /* true while a location_* call is running */

static void result_clear(struct result *r)
{
	for (size_t i = 0; i < r->n && i < MAX_COPIES; i++)
		binding_copy_free(&r->v[i]);
	if (r->user_found) {
		free(r->user.username.p);
		free(r->user.domain.p);
		free(r->user.ha1_md5.p);
		free(r->user.ha1_sha256.p);
		free(r->user.password.p);
		if (r->user.n_aliases)
			free(r->user.alias0.p);
	}
	memset(r, 0, sizeof(*r));
}

static void result_set(struct result *r, const struct binding_set *set)
{
	for (size_t i = 0; set && i < set->n; i++) {
		if (r->n >= MAX_COPIES) {
			r->overflow = true;
			break;
		}
		binding_copy(&r->v[r->n++], &set->v[i]);
	}
}

static void on_apply(int err, enum reg_outcome outcome, const struct binding_set *set,
		     void *arg)
{
	struct result *r = arg;

	r->early |= in_call;
	r->calls++;
	r->done = true;
	r->err = err;
	r->outcome = outcome;
	if (!err && outcome == REG_OK)
		result_set(r, set);
}

static void on_fetch(int err, const struct binding_set *set, void *arg)
{
	struct result *r = arg;

	r->early |= in_call;
	r->calls++;
	r->done = true;
	r->err = err;
	if (!err)
		result_set(r, set);
}

static void on_iterate(int err, const struct binding *b, void *arg)
{
	struct result *r = arg;

	r->early |= in_call;
	if (b) {
		r->n_all++;
		if (r->filter && (b->aor.len != strlen(r->filter) ||
				  memcmp(b->aor.p, r->filter, b->aor.len) != 0))
			return;
		if (r->n >= MAX_COPIES) {
			r->overflow = true;
			return;
		}
		binding_copy(&r->v[r->n++], b);
		return;
	}
	r->calls++;
	r->done = true;
	r->err = err;
}

static void on_find_user(int err, const struct dir_user *u, void *arg)
{
	struct result *r = arg;

	r->early |= in_call;
	r->calls++;
	r->done = true;
	r->err = err;
	if (err || !u)
		return;
	r->user_found = true;
	str_copy(&r->user.username, &u->username);
	str_copy(&r->user.domain, &u->domain);
	str_copy(&r->user.ha1_md5, &u->ha1_md5);
	str_copy(&r->user.ha1_sha256, &u->ha1_sha256);
	str_copy(&r->user.password, &u->password);
	r->user.enabled = u->enabled;
	r->user.auth_off = u->auth_off;
	r->user.max_contacts = u->max_contacts;
	r->user.n_aliases = u->n_aliases;
	if (u->n_aliases)
		str_copy(&r->user.alias0, &u->aliases[0]);
}

/* ---- building requests ------------------------------------------------------------ */

/* A fresh AOR for one case: unique per run, so a shared database does not matter. */
static struct sip_str test_aor(char *buf, size_t size, const char *tag)
{
	int n = snprintf(buf, size, "%s-%s@" TEST_DOMAIN, tag, run_id);

	if (n < 0 || (size_t)n >= size)
		abort();
	return (struct sip_str){.p = buf, .len = (size_t)n};
}

static struct reg_change change(const char *contact, uint32_t expires)
{
	return (struct reg_change){.contact = sip_str_c(contact),
				   .key = sip_str_c(contact),
				   .expires = expires,
				   .q = Q_NONE};
}

static struct reg_request request(struct sip_str aor, const char *call_id, uint32_t cseq,
				  const struct reg_change *changes, size_t n, int64_t now)
{
	return (struct reg_request){
	    .aor = aor,
	    .call_id = sip_str_c(call_id),
	    .cseq = cseq,
	    .changes = changes,
	    .n_changes = n,
	    .source = {.proto = SIP_PROTO_UDP, .ip = "127.0.0.1", .port = 5060},
	    .instance_id = sip_str_c("sipreg-test"),
	    .now = now};
}

/* Run one apply to completion; r gets the answer. Returns the call's own error. */
static int run_apply(struct location *l, const struct reg_request *req, struct result *r)
{
	int err;

	result_clear(r);
	in_call = true;
	err = location_apply(l, req, on_apply, r, NULL);
	in_call = false;
	if (err)
		return err;
	if (!loop_until(flag_set, &r->done))
		printf("#   apply timed out\n");
	return 0;
}

static int run_fetch(struct sip_str aor, int64_t now, struct result *r)
{
	int err;

	result_clear(r);
	in_call = true;
	err = location_fetch(loc, &aor, now, on_fetch, r, NULL);
	in_call = false;
	if (err)
		return err;
	if (!loop_until(flag_set, &r->done))
		printf("#   fetch timed out\n");
	return 0;
}

static int run_iterate(const char *aor_filter, int64_t now, struct result *r)
{
	int err;

	result_clear(r);
	r->filter = aor_filter;
	in_call = true;
	err = location_iterate(loc, now, on_iterate, r, NULL);
	in_call = false;
	if (err)
		return err;
	if (!loop_until(flag_set, &r->done))
		printf("#   iterate timed out\n");
	return 0;
}

static int run_find(const char *user, const char *domain, struct result *r)
{
	struct sip_str u = sip_str_c(user), d = sip_str_c(domain);
	int err;

	result_clear(r);
	in_call = true;
	err = directory_find_user(loc, &u, &d, on_find_user, r, NULL);
	in_call = false;
	if (err)
		return err;
	if (!loop_until(flag_set, &r->done))
		printf("#   find_user timed out\n");
	return 0;
}

static void on_done(int err, void *arg)
{
	struct result *r = arg;

	r->early |= in_call;
	r->calls++;
	r->done = true;
	r->err = err;
}

/* Users seen by a user iteration: the fixture's are counted by name. */
static int iter_alice, iter_bob, iter_carol, iter_total;

static void on_user_iter(int err, const struct dir_user *u, void *arg)
{
	struct result *r = arg;

	r->early |= in_call;
	if (u) {
		struct sip_str alice = SIP_STR_LIT("conf-alice"), bob = SIP_STR_LIT("conf-bob"),
			       carol = SIP_STR_LIT("conf-carol");

		iter_total++;
		iter_alice += sip_str_eq(&u->username, &alice);
		iter_bob += sip_str_eq(&u->username, &bob);
		iter_carol += sip_str_eq(&u->username, &carol);
		return;
	}
	r->calls++;
	r->done = true;
	r->err = err;
}

/* Wait for the op started with err (0 or the synchronous refusal) to finish into r. */
static int run_wait(int err, struct result *r, const char *what)
{
	in_call = false;
	if (err)
		return err;
	if (!loop_until(flag_set, &r->done))
		printf("#   %s timed out\n", what);
	return 0;
}

static int run_unbind(const struct sip_str *aor, const char *key, struct result *r)
{
	struct sip_str k = sip_str_c(key ? key : "");

	result_clear(r);
	in_call = true;
	return run_wait(location_unbind(loc, aor, key ? &k : NULL, on_done, r, NULL), r,
			"unbind");
}

static int run_user_put(const struct dir_user *u, enum dir_put mode, struct result *r)
{
	result_clear(r);
	in_call = true;
	return run_wait(directory_user_put(loc, u, mode, on_done, r, NULL), r, "user_put");
}

static int run_user_del(const char *user, const char *domain, struct result *r)
{
	struct sip_str u = sip_str_c(user), d = sip_str_c(domain);

	result_clear(r);
	in_call = true;
	return run_wait(directory_user_del(loc, &u, &d, on_done, r, NULL), r, "user_del");
}

/* The copy in r of the binding with this contact, or NULL. */
static const struct binding_copy *find_contact(const struct result *r, const char *contact)
{
	for (size_t i = 0; i < r->n; i++) {
		if (r->v[i].contact.len == strlen(contact) &&
		    memcmp(r->v[i].contact.p, contact, r->v[i].contact.len) == 0)
			return &r->v[i];
	}
	return NULL;
}

/* Apply and expect REG_OK with n live bindings. */
#define APPLY_OK(req, r, n_expected)                                                           \
	do {                                                                                   \
		CHECK_INT(run_apply(loc, (req), (r)), 0);                                      \
		CHECK((r)->done);                                                              \
		CHECK_INT((r)->err, 0);                                                        \
		CHECK_INT((r)->outcome, REG_OK);                                               \
		CHECK_INT((r)->n, (n_expected));                                               \
	} while (0)

/* ---- the cases -------------------------------------------------------------------- */

static void test_backend_names_list_the_backend_under_test(void)
{
	bool found = false;

	for (const char *const *n = location_backend_names(); *n; n++)
		found |= strcmp(*n, backend_name) == 0;
	CHECK(found);
}

static void test_unknown_backend_is_refused_naming_the_known_ones(void)
{
	struct config *c = NULL;
	char err[512] = "";

	CHECK_INT(config_for(&c, "no-such-backend", "", err, sizeof(err)), EINVAL);
	CHECK(c == NULL);
	CHECK(strstr(err, "location.backend") != NULL);
	CHECK(strstr(err, "no-such-backend") != NULL);
	CHECK(strstr(err, backend_name) != NULL);
	config_free(&c);
}

static void test_register_one_contact(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "one");
	struct reg_change ch = change("sip:alice@192.0.2.1:5060", 3600);
	struct reg_request req = request(aor, "cid-one", 1, &ch, 1, t_now);
	struct result r = {0};

	APPLY_OK(&req, &r, 1);
	if (r.n == 1) {
		CHECK_MEM(r.v[0].contact.p, r.v[0].contact.len, "sip:alice@192.0.2.1:5060");
		CHECK(r.v[0].aor.len == aor.len && memcmp(r.v[0].aor.p, aor.p, aor.len) == 0);
		CHECK_INT(r.v[0].expires_at, t_now + 3600);
		CHECK_INT(r.v[0].cseq, 1);
	}
	CHECK_INT(run_fetch(aor, t_now, &r), 0);
	CHECK_INT(r.err, 0);
	CHECK_INT(r.n, 1);
	CHECK(find_contact(&r, "sip:alice@192.0.2.1:5060") != NULL);
	result_clear(&r);
}

static void test_fetch_unknown_aor_is_empty(void)
{
	char buf[128];
	struct result r = {0};

	CHECK_INT(run_fetch(test_aor(buf, sizeof(buf), "nobody"), t_now, &r), 0);
	CHECK(r.done);
	CHECK_INT(r.err, 0);
	CHECK_INT(r.n, 0);
	result_clear(&r);
}

static void test_refresh_updates_expiry(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "refresh");
	struct reg_change ch = change("sip:a@192.0.2.1", 60);
	struct reg_request req = request(aor, "cid-refresh", 1, &ch, 1, t_now);
	struct result r = {0};

	APPLY_OK(&req, &r, 1);
	ch.expires = 120;
	req.cseq = 2;
	req.now = t_now + 10;
	APPLY_OK(&req, &r, 1);
	CHECK_INT(run_fetch(aor, t_now + 10, &r), 0);
	CHECK_INT(r.n, 1);
	if (r.n == 1) {
		CHECK_INT(r.v[0].expires_at, t_now + 130);
		CHECK_INT(r.v[0].updated_at, t_now + 10);
		CHECK_INT(r.v[0].cseq, 2);
	}
	result_clear(&r);
}

static void test_register_multiple_contacts(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "multi");
	struct reg_change ch[3] = {change("sip:a@192.0.2.1", 3600),
				   change("sip:b@192.0.2.2", 1800),
				   change("sip:c@192.0.2.3", 60)};
	struct reg_request req = request(aor, "cid-multi", 7, ch, 3, t_now);
	struct result r = {0};
	const struct binding_copy *b;

	APPLY_OK(&req, &r, 3);
	CHECK_INT(run_fetch(aor, t_now, &r), 0);
	CHECK_INT(r.n, 3);
	b = find_contact(&r, "sip:b@192.0.2.2");
	CHECK(b != NULL);
	if (b)
		CHECK_INT(b->expires_at, t_now + 1800);
	b = find_contact(&r, "sip:c@192.0.2.3");
	CHECK(b != NULL);
	if (b)
		CHECK_INT(b->expires_at, t_now + 60);
	CHECK(find_contact(&r, "sip:a@192.0.2.1") != NULL);
	result_clear(&r);
}

static void test_remove_one_contact_with_expires_zero(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "remove");
	struct reg_change ch[2] = {change("sip:a@192.0.2.1", 3600),
				   change("sip:b@192.0.2.2", 3600)};
	struct reg_request req = request(aor, "cid-remove", 1, ch, 2, t_now);
	struct result r = {0};

	APPLY_OK(&req, &r, 2);
	ch[0].expires = 0;
	req.n_changes = 1;
	req.cseq = 2;
	APPLY_OK(&req, &r, 1);
	CHECK(find_contact(&r, "sip:b@192.0.2.2") != NULL);
	CHECK_INT(run_fetch(aor, t_now, &r), 0);
	CHECK_INT(r.n, 1);
	CHECK(find_contact(&r, "sip:b@192.0.2.2") != NULL);
	CHECK(find_contact(&r, "sip:a@192.0.2.1") == NULL);
	result_clear(&r);
}

static void test_remove_unknown_contact_changes_nothing(void)
{
	char buf[128], buf2[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "remove-unknown");
	struct reg_change ch = change("sip:a@192.0.2.1", 3600);
	struct reg_change gone = change("sip:zz@192.0.2.99", 0);
	struct reg_request req = request(aor, "cid-ru", 1, &ch, 1, t_now);
	struct result r = {0};

	APPLY_OK(&req, &r, 1);
	req = request(aor, "cid-ru", 2, &gone, 1, t_now);
	APPLY_OK(&req, &r, 1);
	CHECK(find_contact(&r, "sip:a@192.0.2.1") != NULL);
	/* On an AOR with no bindings at all, too. */
	req =
	    request(test_aor(buf2, sizeof(buf2), "remove-empty"), "cid-re", 1, &gone, 1, t_now);
	APPLY_OK(&req, &r, 0);
	CHECK_INT(run_fetch(req.aor, t_now, &r), 0);
	CHECK_INT(r.n, 0);
	result_clear(&r);
}

static void test_wildcard_removes_all(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "wildcard");
	struct reg_change ch[2] = {change("sip:a@192.0.2.1", 3600),
				   change("sip:b@192.0.2.2", 3600)};
	struct reg_request req = request(aor, "cid-wild", 1, ch, 2, t_now);
	struct result r = {0};

	APPLY_OK(&req, &r, 2);
	req = request(aor, "cid-wild", 2, NULL, 0, t_now);
	req.wildcard = true;
	APPLY_OK(&req, &r, 0);
	CHECK_INT(run_fetch(aor, t_now, &r), 0);
	CHECK_INT(r.n, 0);
	result_clear(&r);
}

static void test_wildcard_same_callid_not_newer_cseq_is_out_of_order(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "wildcard-ooo");
	struct reg_change ch = change("sip:a@192.0.2.1", 3600);
	struct reg_request req = request(aor, "cid-wo", 5, &ch, 1, t_now);
	struct result r = {0};

	APPLY_OK(&req, &r, 1);
	for (uint32_t cseq = 4; cseq <= 5; cseq++) {
		req = request(aor, "cid-wo", cseq, NULL, 0, t_now);
		req.wildcard = true;
		CHECK_INT(run_apply(loc, &req, &r), 0);
		CHECK_INT(r.err, 0);
		CHECK_INT(r.outcome, REG_OUT_OF_ORDER);
	}
	CHECK_INT(run_fetch(aor, t_now, &r), 0);
	CHECK_INT(r.n, 1);
	/* Another Call-ID may clear the AOR whatever its CSeq. */
	req = request(aor, "cid-wo-other", 1, NULL, 0, t_now);
	req.wildcard = true;
	APPLY_OK(&req, &r, 0);
	result_clear(&r);
}

/* Register a then b (cid X, cseq 10), then send cseq (same cid) changing a. */
static void check_same_callid_cseq(const char *tag, uint32_t cseq)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), tag);
	struct reg_change ch = change("sip:a@192.0.2.1", 3600);
	struct reg_request req = request(aor, "cid-x", 10, &ch, 1, t_now);
	struct result r = {0};

	APPLY_OK(&req, &r, 1);
	ch.expires = 60;
	req.cseq = cseq;
	req.now = t_now + 5;
	CHECK_INT(run_apply(loc, &req, &r), 0);
	CHECK_INT(r.err, 0);
	CHECK_INT(r.outcome, REG_OUT_OF_ORDER);
	ch.expires = 0;
	CHECK_INT(run_apply(loc, &req, &r), 0);
	CHECK_INT(r.outcome, REG_OUT_OF_ORDER);
	CHECK_INT(run_fetch(aor, t_now, &r), 0);
	CHECK_INT(r.n, 1);
	if (r.n == 1) {
		CHECK_INT(r.v[0].expires_at, t_now + 3600);
		CHECK_INT(r.v[0].cseq, 10);
		CHECK_INT(r.v[0].updated_at, t_now);
	}
	result_clear(&r);
}

static void test_same_callid_equal_cseq_is_out_of_order_and_changes_nothing(void)
{
	check_same_callid_cseq("cseq-equal", 10);
}

static void test_same_callid_lower_cseq_is_out_of_order_and_changes_nothing(void)
{
	check_same_callid_cseq("cseq-lower", 9);
}

static void test_new_callid_with_lower_cseq_is_accepted(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "new-callid");
	struct reg_change ch = change("sip:a@192.0.2.1", 3600);
	struct reg_request req = request(aor, "cid-old", 100, &ch, 1, t_now);
	struct result r = {0};

	APPLY_OK(&req, &r, 1);
	ch.expires = 600;
	req = request(aor, "cid-new", 1, &ch, 1, t_now + 1);
	APPLY_OK(&req, &r, 1);
	if (r.n == 1) {
		CHECK_MEM(r.v[0].call_id.p, r.v[0].call_id.len, "cid-new");
		CHECK_INT(r.v[0].cseq, 1);
		CHECK_INT(r.v[0].expires_at, t_now + 601);
	}
	result_clear(&r);
}

static void test_out_of_order_change_fails_whole_request(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "atomic");
	struct reg_change a = change("sip:a@192.0.2.1", 3600),
			  b = change("sip:b@192.0.2.2", 3600);
	struct reg_change mixed[3] = {change("sip:a@192.0.2.1", 0),
				      change("sip:c@192.0.2.3", 3600),
				      change("sip:b@192.0.2.2", 60)};
	struct reg_request req = request(aor, "cid-x", 10, &a, 1, t_now);
	struct result r = {0};

	APPLY_OK(&req, &r, 1);
	req = request(aor, "cid-y", 20, &b, 1, t_now);
	APPLY_OK(&req, &r, 2);
	/* Removing a (other Call-ID) and adding c would be fine; b is out of order. */
	req = request(aor, "cid-y", 15, mixed, 3, t_now + 1);
	CHECK_INT(run_apply(loc, &req, &r), 0);
	CHECK_INT(r.err, 0);
	CHECK_INT(r.outcome, REG_OUT_OF_ORDER);
	CHECK_INT(run_fetch(aor, t_now, &r), 0);
	CHECK_INT(r.n, 2);
	CHECK(find_contact(&r, "sip:a@192.0.2.1") != NULL);
	CHECK(find_contact(&r, "sip:c@192.0.2.3") == NULL);
	if (find_contact(&r, "sip:b@192.0.2.2"))
		CHECK_INT(find_contact(&r, "sip:b@192.0.2.2")->expires_at, t_now + 3600);
	else
		CHECK(false);
	result_clear(&r);
}

static void test_max_contacts_exceeded_changes_nothing(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "max");
	struct reg_change ab[2] = {change("sip:a@192.0.2.1", 3600),
				   change("sip:b@192.0.2.2", 3600)};
	struct reg_change c[2] = {change("sip:c@192.0.2.3", 3600),
				  change("sip:a@192.0.2.1", 60)};
	struct reg_change swap[3] = {change("sip:a@192.0.2.1", 60),
				     change("sip:b@192.0.2.2", 0),
				     change("sip:c@192.0.2.3", 3600)};
	struct reg_request req = request(aor, "cid-max", 1, ab, 2, t_now);
	struct result r = {0};

	req.max_contacts = 2;
	APPLY_OK(&req, &r, 2);
	req = request(aor, "cid-max", 2, c, 2, t_now);
	req.max_contacts = 2;
	CHECK_INT(run_apply(loc, &req, &r), 0);
	CHECK_INT(r.err, 0);
	CHECK_INT(r.outcome, REG_TOO_MANY_CONTACTS);
	CHECK_INT(run_fetch(aor, t_now, &r), 0);
	CHECK_INT(r.n, 2);
	CHECK(find_contact(&r, "sip:c@192.0.2.3") == NULL);
	if (find_contact(&r, "sip:a@192.0.2.1"))
		CHECK_INT(find_contact(&r, "sip:a@192.0.2.1")->expires_at, t_now + 3600);
	/* The limit applies to the result: removing b makes room for c. */
	req = request(aor, "cid-max", 3, swap, 3, t_now);
	req.max_contacts = 2;
	APPLY_OK(&req, &r, 2);
	CHECK(find_contact(&r, "sip:c@192.0.2.3") != NULL);
	CHECK(find_contact(&r, "sip:b@192.0.2.2") == NULL);
	result_clear(&r);
}

/* Bindings stored "in the past" (base = now - 7200): a expires at base + 60, b at
 * base + 3600. Only the now passed to each call decides what is live. */
static void test_expired_bindings_are_not_returned(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "expired");
	int64_t t0 = t_now - 7200;
	struct reg_change ab[2] = {change("sip:a@192.0.2.1", 60),
				   change("sip:b@192.0.2.2", 3600)};
	struct reg_change c = change("sip:c@192.0.2.3", 3600);
	struct reg_request req = request(aor, "cid-exp", 1, ab, 2, t0);
	struct result r = {0};

	APPLY_OK(&req, &r, 2);
	CHECK_INT(run_fetch(aor, t0 + 100, &r), 0);
	CHECK_INT(r.n, 1);
	CHECK(find_contact(&r, "sip:b@192.0.2.2") != NULL);
	CHECK_INT(run_iterate(buf, t0 + 100, &r), 0);
	CHECK_INT(r.err, 0);
	CHECK_INT(r.n, 1);
	CHECK(find_contact(&r, "sip:b@192.0.2.2") != NULL);
	/* a neither counts against max_contacts nor comes back from apply. */
	req = request(aor, "cid-exp", 2, &c, 1, t0 + 100);
	req.max_contacts = 2;
	APPLY_OK(&req, &r, 2);
	CHECK(find_contact(&r, "sip:a@192.0.2.1") == NULL);
	CHECK_INT(run_fetch(aor, t0 + 5000, &r), 0);
	CHECK_INT(r.n, 0);
	result_clear(&r);
}

/* Memory only: the expiry wheel removes a binding about one second after it expired,
 * without a sweep. (A database backend reaps on its own schedule.) */
static void test_memory_wheel_reaps_expired_bindings_in_background(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "wheel");
	int64_t now = (int64_t)time(NULL);
	struct reg_change ch[2] = {change("sip:a@192.0.2.1", 1),
				   change("sip:b@192.0.2.2", 3600)};
	struct reg_request req = request(aor, "cid-wheel", 1, ch, 2, now);
	struct result r = {0};
	bool gone = false;

	APPLY_OK(&req, &r, 2);
	/* Ask about a time when a was live: it still shows until the wheel drops it. */
	for (int i = 0; i < 40 && !gone; i++) {
		struct timeval tv = {.tv_usec = 100 * 1000};

		CHECK_INT(run_fetch(aor, now - 100, &r), 0);
		gone = r.n == 1 && find_contact(&r, "sip:b@192.0.2.2") != NULL;
		if (!gone) {
			event_base_loopexit(base, &tv);
			event_base_dispatch(base);
		}
	}
	CHECK(gone);
	CHECK((int64_t)time(NULL) >= now + 1);
	result_clear(&r);
}

static void test_iterate_lists_live_bindings_then_ends(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "iterate");
	struct reg_change ch[2] = {change("sip:a@192.0.2.1", 3600),
				   change("sip:b@192.0.2.2", 30)};
	struct reg_request req = request(aor, "cid-it", 1, ch, 2, t_now);
	struct result r = {0};

	APPLY_OK(&req, &r, 2);
	CHECK_INT(run_iterate(buf, t_now, &r), 0);
	CHECK_INT(r.calls, 1);
	CHECK_INT(r.err, 0);
	CHECK_INT(r.n, 2);
	CHECK(r.n_all >= 2);
	CHECK_INT(run_iterate(buf, t_now + 60, &r), 0);
	CHECK_INT(r.n, 1);
	CHECK(find_contact(&r, "sip:a@192.0.2.1") != NULL);
	result_clear(&r);
}

/* Bytes that break naive storage: NUL, quotes, backslashes, %00, UTF-8. */
static const char rt_contact[] =
    "<sip:o'neil%00x@[2001:db8::1]:5070;transport=tcp;x=\"a\\\"b\">";
static const char rt_call_id[] = "c\0ll\\id'\"%00@host";
static const char rt_ua[] = "T\xc3\xa9l\xc3\xa9phone \xe2\x98\x8e/1.0 \xf0\x9f\x93\x9e";
static const char rt_path[] = "<sip:p1.example.net;lr>,<sip:p2.example.net;lr;x=\"\\\\\">";
static const char rt_instance[] = "\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\"";
static const char rt_by[] = "sipreg-b\xc3\xbc";

static void check_round_trip(const struct binding_copy *b, const struct sip_str *aor,
			     int64_t now)
{
	CHECK_INT(b->aor.len, aor->len);
	CHECK(b->aor.len == aor->len && memcmp(b->aor.p, aor->p, aor->len) == 0);
	CHECK_MEM(b->contact.p, b->contact.len, rt_contact);
	CHECK_MEM(b->key.p, b->key.len, "sip:o'neil%00x@[2001:db8::1]:5070;transport=tcp");
	CHECK_MEM(b->call_id.p, b->call_id.len, rt_call_id);
	CHECK_MEM(b->user_agent.p, b->user_agent.len, rt_ua);
	CHECK_MEM(b->path.p, b->path.len, rt_path);
	CHECK_MEM(b->instance.p, b->instance.len, rt_instance);
	CHECK_MEM(b->registered_by.p, b->registered_by.len, rt_by);
	CHECK_INT(b->expires_at, now + 1234);
	CHECK_INT(b->updated_at, now);
	CHECK_INT(b->q, 500);
	CHECK_INT(b->cseq, 4294967295u);
	CHECK_INT(b->reg_id, 7);
	CHECK_INT(b->source.proto, SIP_PROTO_TCP);
	CHECK_STR(b->source.ip, "2001:db8::5");
	CHECK_INT(b->source.port, 65535);
	CHECK(b->source.conn_id == UINT64_C(0x0123456789abcdef));
}

static void test_binding_fields_round_trip(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "round%00-trip");
	struct reg_change ch = {
	    .contact = {rt_contact, sizeof(rt_contact) - 1},
	    .key = SIP_STR_LIT("sip:o'neil%00x@[2001:db8::1]:5070;transport=tcp"),
	    .expires = 1234,
	    .q = 500,
	    .instance = {rt_instance, sizeof(rt_instance) - 1},
	    .reg_id = 7,
	};
	struct reg_request req = {
	    .aor = aor,
	    .call_id = {rt_call_id, sizeof(rt_call_id) - 1},
	    .cseq = 4294967295u,
	    .changes = &ch,
	    .n_changes = 1,
	    .path = {rt_path, sizeof(rt_path) - 1},
	    .user_agent = {rt_ua, sizeof(rt_ua) - 1},
	    .source = {.proto = SIP_PROTO_TCP,
		       .ip = "2001:db8::5",
		       .port = 65535,
		       .conn_id = UINT64_C(0x0123456789abcdef)},
	    .instance_id = {rt_by, sizeof(rt_by) - 1},
	    .now = t_now,
	};
	struct result r = {0};

	APPLY_OK(&req, &r, 1);
	if (r.n == 1)
		check_round_trip(&r.v[0], &aor, t_now);
	CHECK_INT(run_fetch(aor, t_now, &r), 0);
	CHECK_INT(r.n, 1);
	if (r.n == 1)
		check_round_trip(&r.v[0], &aor, t_now);
	CHECK_INT(run_iterate(buf, t_now, &r), 0);
	CHECK_INT(r.n, 1);
	if (r.n == 1)
		check_round_trip(&r.v[0], &aor, t_now);
	result_clear(&r);
}

static bool all_done(const void *arg)
{
	const struct result *r = arg;

	for (size_t i = 0; i < 5; i++) {
		if (!r[i].done)
			return false;
	}
	return true;
}

static void test_callback_never_runs_before_the_call_returns(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "deferred");
	struct sip_str user = SIP_STR_LIT("conf-alice"), domain = SIP_STR_LIT(TEST_DOMAIN);
	struct reg_change ch = change("sip:a@192.0.2.1", 3600);
	struct reg_request req = request(aor, "cid-def", 1, &ch, 1, t_now);
	struct result r[5] = {0};

	in_call = true;
	CHECK_INT(location_apply(loc, &req, on_apply, &r[0], NULL), 0);
	CHECK_INT(location_fetch(loc, &aor, t_now, on_fetch, &r[1], NULL), 0);
	CHECK_INT(location_fetch(loc, &aor, t_now, on_fetch, &r[2], NULL), 0);
	CHECK_INT(location_iterate(loc, t_now, on_iterate, &r[3], NULL), 0);
	CHECK_INT(directory_find_user(loc, &user, &domain, on_find_user, &r[4], NULL), 0);
	in_call = false;
	for (size_t i = 0; i < 5; i++)
		CHECK(!r[i].done);
	CHECK(loop_until(all_done, r));
	for (size_t i = 0; i < 5; i++) {
		CHECK(!r[i].early);
		CHECK_INT(r[i].calls, 1);
		CHECK_INT(r[i].err, 0);
		result_clear(&r[i]);
	}
}

static void test_pending_counts_operations_in_flight(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "pending");
	struct result r[2] = {0};
	size_t before;

	CHECK(loop_until(no_pending, &loc));
	before = location_pending(loc);
	CHECK_INT(location_fetch(loc, &aor, t_now, on_fetch, &r[0], NULL), 0);
	CHECK_INT(location_fetch(loc, &aor, t_now, on_fetch, &r[1], NULL), 0);
	CHECK_INT(location_pending(loc), before + 2);
	CHECK(loop_until(no_pending, &loc));
	CHECK(r[0].done && r[1].done);
	result_clear(&r[0]);
	result_clear(&r[1]);
}

/* The standing delay: small while the backend keeps up; the oldest call's wait once
 * nothing has completed for two windows (the loop not running stands for a stalled
 * backend: nothing can complete). */
static void test_delay_follows_the_backend(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "delay");
	struct result r[4] = {0};
	struct timespec pause = {.tv_nsec = 250 * 1000000};

	CHECK(loop_until(no_pending, &loc));
	for (size_t i = 0; i < 3; i++) {
		CHECK_INT(location_fetch(loc, &aor, t_now, on_fetch, &r[i], NULL), 0);
		CHECK(loop_until(no_pending, &loc));
	}
	CHECK(location_delay_ms(loc) < 100);
	CHECK_INT(location_fetch(loc, &aor, t_now, on_fetch, &r[3], NULL), 0);
	nanosleep(&pause, NULL);
	CHECK(location_delay_ms(loc) >= 250);
	CHECK(location_delay_ms(loc) < 5000);
	CHECK(loop_until(no_pending, &loc));
	CHECK(r[3].done);
	for (size_t i = 0; i < 4; i++)
		result_clear(&r[i]);
}

static void test_op_cancel_prevents_the_callback(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "cancel");
	struct sip_str user = SIP_STR_LIT("conf-alice"), domain = SIP_STR_LIT(TEST_DOMAIN);
	struct reg_change ch = change("sip:a@192.0.2.1", 3600);
	struct reg_request req = request(aor, "cid-cancel", 1, &ch, 1, t_now);
	struct location_op *ops[5] = {NULL};
	struct result r[5] = {0}, after = {0};

	CHECK_INT(location_apply(loc, &req, on_apply, &r[0], &ops[0]), 0);
	CHECK_INT(location_fetch(loc, &aor, t_now, on_fetch, &r[1], &ops[1]), 0);
	CHECK_INT(location_fetch(loc, &aor, t_now, on_fetch, &r[2], &ops[2]), 0);
	CHECK_INT(location_iterate(loc, t_now, on_iterate, &r[3], &ops[3]), 0);
	CHECK_INT(directory_find_user(loc, &user, &domain, on_find_user, &r[4], &ops[4]), 0);
	for (size_t i = 0; i < 5; i++) {
		CHECK(ops[i] != NULL);
		location_op_cancel(&ops[i]);
		CHECK(ops[i] == NULL);
	}
	location_op_cancel(&ops[0]); /* NULL: nothing to do */
	/* Cancelled ops stay pending until the backend is done with them. */
	CHECK(loop_until(no_pending, &loc));
	CHECK_INT(run_fetch(aor, t_now, &after), 0);
	CHECK(after.done);
	for (size_t i = 0; i < 5; i++) {
		CHECK(!r[i].done);
		CHECK_INT(r[i].calls, 0);
		CHECK_INT(r[i].n, 0);
	}
	result_clear(&after);
}

static void test_close_completes_pending_ops_with_ecanceled(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "close");
	struct sip_str user = SIP_STR_LIT("conf-alice"), domain = SIP_STR_LIT(TEST_DOMAIN);
	struct reg_change ch = change("sip:a@192.0.2.1", 3600);
	struct reg_request req = request(aor, "cid-close", 1, &ch, 1, t_now);
	struct location *l = NULL;
	struct location_op *cancelled = NULL;
	struct result r[6] = {0};

	CHECK_INT(location_open(&l, cfg->location, base, cfg->instance_id), 0);
	if (!l)
		return;
	CHECK_INT(location_apply(l, &req, on_apply, &r[0], NULL), 0);
	CHECK_INT(location_fetch(l, &aor, t_now, on_fetch, &r[1], NULL), 0);
	CHECK_INT(location_fetch(l, &aor, t_now, on_fetch, &r[2], NULL), 0);
	CHECK_INT(location_iterate(l, t_now, on_iterate, &r[3], NULL), 0);
	CHECK_INT(directory_find_user(l, &user, &domain, on_find_user, &r[4], NULL), 0);
	CHECK_INT(location_fetch(l, &aor, t_now, on_fetch, &r[5], &cancelled), 0);
	location_op_cancel(&cancelled);
	CHECK_INT(location_pending(l), 6);
	location_close(&l);
	CHECK(l == NULL);
	for (size_t i = 0; i < 5; i++) {
		CHECK(r[i].done);
		CHECK_INT(r[i].calls, 1);
		CHECK_INT(r[i].err, ECANCELED);
		CHECK_INT(r[i].n, 0);
	}
	CHECK(!r[5].done);
	location_close(&l); /* NULL: nothing to do */
	/* Nothing is left on the loop to call back later. */
	event_base_loop(base, EVLOOP_NONBLOCK);
	for (size_t i = 0; i < 6; i++) {
		CHECK_INT(r[i].calls, i < 5 ? 1 : 0);
		result_clear(&r[i]);
	}
}

/* A callback may close the location it was called from: what is still pending (and the
 * rest of an iteration) completes with ECANCELED, once, before close returns. */
struct closer {
	struct location *l;
	struct result r;
	int binding_calls;
};

static void on_iterate_close(int err, const struct binding *b, void *arg)
{
	struct closer *c = arg;

	if (b) {
		c->binding_calls++;
		location_close(&c->l);
		return;
	}
	c->r.calls++;
	c->r.done = true;
	c->r.err = err;
}

static void on_fetch_close(int err, const struct binding_set *set, void *arg)
{
	struct closer *c = arg;

	(void)set;
	c->r.calls++;
	c->r.done = true;
	c->r.err = err;
	location_close(&c->l);
}

static void test_close_from_a_callback_cancels_the_rest(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "close-cb");
	struct reg_change ch[2] = {change("sip:a@192.0.2.1", 3600),
				   change("sip:b@192.0.2.2", 3600)};
	struct reg_request req = request(aor, "cid-close-cb", 1, ch, 2, t_now);
	struct closer c = {0};
	struct result later = {0};
	/* The contract promises no order between operations; with a pool of connections
	 * the fetch may finish before the iteration's first row. One connection makes
	 * "the rest" well defined: whatever is still pending when the callback closes. */
	const struct location_conf *one = cfg_serial->location;

	/* Inside an iteration. */
	CHECK_INT(location_open(&c.l, one, base, cfg->instance_id), 0);
	if (!c.l)
		return;
	APPLY_OK(&req, &later, 2); /* on the shared location: some binding to iterate */
	CHECK_INT(run_apply(c.l, &req, &later), 0);
	CHECK_INT(location_iterate(c.l, t_now, on_iterate_close, &c, NULL), 0);
	CHECK_INT(location_fetch(c.l, &aor, t_now, on_fetch, &later, NULL), 0);
	later.done = false;
	later.calls = 0;
	CHECK(loop_until(flag_set, &c.r.done));
	CHECK(c.l == NULL);
	CHECK_INT(c.binding_calls, 1);
	CHECK_INT(c.r.calls, 1);
	CHECK_INT(c.r.err, ECANCELED);
	CHECK_INT(later.calls, 1);
	CHECK_INT(later.err, ECANCELED);
	result_clear(&later);

	/* Inside a single-shot callback, with another op queued behind it. */
	memset(&c, 0, sizeof(c));
	CHECK_INT(location_open(&c.l, one, base, cfg->instance_id), 0);
	if (!c.l)
		return;
	CHECK_INT(location_fetch(c.l, &aor, t_now, on_fetch_close, &c, NULL), 0);
	CHECK_INT(location_fetch(c.l, &aor, t_now, on_fetch, &later, NULL), 0);
	CHECK(loop_until(flag_set, &later.done));
	CHECK(c.l == NULL);
	CHECK_INT(c.r.calls, 1);
	CHECK_INT(c.r.err, 0);
	CHECK_INT(later.calls, 1);
	CHECK_INT(later.err, ECANCELED);
	result_clear(&later);
}

static void test_find_user_by_name(void)
{
	struct result r = {0};

	CHECK_INT(run_find("conf-bob", TEST_DOMAIN, &r), 0);
	CHECK_INT(r.err, 0);
	CHECK(r.user_found);
	if (r.user_found) {
		CHECK_STR(r.user.username.p, "conf-bob");
		CHECK_STR(r.user.domain.p, TEST_DOMAIN);
		CHECK_STR(r.user.ha1_md5.p, "0123456789abcdef0123456789abcdef");
		CHECK_STR(r.user.ha1_sha256.p,
			  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
		CHECK(r.user.enabled);
		CHECK(r.user.auth_off);
		CHECK_INT(r.user.max_contacts, 3);
		CHECK_INT(r.user.n_aliases, 1);
		if (r.user.n_aliases)
			CHECK_STR(r.user.alias0.p, "conf-bobby@" TEST_DOMAIN);
	}
	/* conf-bob belongs to test.invalid only. */
	CHECK_INT(run_find("conf-bob", "other.invalid", &r), 0);
	CHECK_INT(r.err, 0);
	CHECK(!r.user_found);
	result_clear(&r);
}

static void test_find_user_of_any_domain_reports_the_asked_domain(void)
{
	struct result r = {0};

	CHECK_INT(run_find("conf-alice", "anywhere.invalid", &r), 0);
	CHECK_INT(r.err, 0);
	CHECK(r.user_found);
	if (r.user_found) {
		CHECK_STR(r.user.username.p, "conf-alice");
		CHECK_STR(r.user.domain.p, "anywhere.invalid");
		CHECK(r.user.enabled);
		CHECK(!r.user.auth_off);
		/* A clear password, or an HA1 the backend derived from it. */
		if (r.user.password.len)
			CHECK_STR(r.user.password.p, "alice-secret");
		else
			CHECK_INT(r.user.ha1_md5.len, 32);
	}
	result_clear(&r);
}

static void test_find_user_resolves_an_alias(void)
{
	struct result r = {0};

	CHECK_INT(run_find("conf-bobby", TEST_DOMAIN, &r), 0);
	CHECK_INT(r.err, 0);
	CHECK(r.user_found);
	if (r.user_found) {
		CHECK_STR(r.user.username.p, "conf-bob");
		CHECK_STR(r.user.domain.p, TEST_DOMAIN);
		CHECK_INT(r.user.max_contacts, 3);
	}
	CHECK_INT(run_find("conf-bobby", "other.invalid", &r), 0);
	CHECK(!r.user_found);
	result_clear(&r);
}

static void test_find_unknown_user_is_null(void)
{
	struct result r = {0};

	CHECK_INT(run_find("conf-nobody", TEST_DOMAIN, &r), 0);
	CHECK(r.done);
	CHECK_INT(r.calls, 1);
	CHECK_INT(r.err, 0);
	CHECK(!r.user_found);
	/* The user part is bytes: no case folding, no prefix match. */
	CHECK_INT(run_find("CONF-BOB", TEST_DOMAIN, &r), 0);
	CHECK(!r.user_found);
	CHECK_INT(run_find("conf-bo", TEST_DOMAIN, &r), 0);
	CHECK(!r.user_found);
	result_clear(&r);
}

static void test_find_disabled_user_reports_enabled_false(void)
{
	struct result r = {0};

	CHECK_INT(run_find("conf-carol", TEST_DOMAIN, &r), 0);
	CHECK_INT(r.err, 0);
	CHECK(r.user_found);
	if (r.user_found) {
		CHECK_STR(r.user.username.p, "conf-carol");
		CHECK(!r.user.enabled);
	}
	result_clear(&r);
}

/* ---- main ------------------------------------------------------------------------- */

/* The extra keys of the section under test, from the environment. */
static bool section_from_env(const char *backend)
{
	char var[64];
	const char *v;
	size_t off = (size_t)snprintf(var, sizeof(var), "SIPREG_TEST_");

	for (size_t i = 0; backend[i] && off + 1 < sizeof(var); i++, off++) {
		char c = backend[i];

		var[off] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
	}
	var[off] = '\0';
	if (off + sizeof("_SECTION") > sizeof(var))
		return false;
	strcat(var, "_SECTION");
	v = getenv(var);
	if (v)
		return (size_t)snprintf(section_extra, sizeof(section_extra), "%s", v) <
		       sizeof(section_extra);
	v = strcmp(backend, "pg") == 0 ? getenv("SIPREG_TEST_PG_CONNINFO") : NULL;
	if (!v)
		return true;
	if (strchr(v, '\'') || strlen(v) + 16 > sizeof(section_extra))
		return false;
	snprintf(section_extra, sizeof(section_extra), "conninfo: '%s'", v);
	return true;
}

static void test_unbind_removes_one_contact_or_all(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "unbind");
	struct reg_change ch[3] = {change("sip:a@192.0.2.1", 3600), change("sip:b@192.0.2.2", 3600),
				   change("sip:c@192.0.2.3", 3600)};
	struct reg_request req = request(aor, "cid-unbind", 1, ch, 3, t_now);
	struct result r = {0};

	APPLY_OK(&req, &r, 3);
	CHECK_INT(run_unbind(&aor, "sip:b@192.0.2.2", &r), 0);
	CHECK_INT(r.calls, 1);
	CHECK(!r.early);
	CHECK_INT(r.err, 0);
	CHECK_INT(run_fetch(aor, t_now, &r), 0);
	CHECK_INT(r.n, 2);
	CHECK(find_contact(&r, "sip:b@192.0.2.2") == NULL);
	CHECK_INT(run_unbind(&aor, NULL, &r), 0);
	CHECK_INT(r.err, 0);
	CHECK_INT(run_fetch(aor, t_now, &r), 0);
	CHECK_INT(r.n, 0);
	/* Nothing left to remove: the operator hears so. */
	CHECK_INT(run_unbind(&aor, NULL, &r), 0);
	CHECK_INT(r.err, ENOENT);
	result_clear(&r);
}

static int run_qualify(struct location *l, const struct qualify_update *u, struct result *r)
{
	result_clear(r);
	in_call = true;
	return run_wait(location_qualify_set(l, u, on_done, r, NULL), r, "qualify_set");
}

static struct qualify_update qualify_update(struct sip_str aor, const char *key,
					    enum qualify_status st, uint32_t rtt, int64_t at)
{
	return (struct qualify_update){.aor = aor, .key = sip_str_c(key), .status = st,
				       .rtt_ms = rtt, .at = at};
}

/* qualify_set is optional in the vtable: a backend without it answers ENOTSUP at once. */
static bool backend_keeps_qualify(void)
{
	struct qualify_update u = {.aor = SIP_STR_LIT("probe@" TEST_DOMAIN),
				   .key = SIP_STR_LIT("sip:probe@192.0.2.9")};
	struct result r = {0};

	return run_qualify(loc, &u, &r) != ENOTSUP;
}

static void test_qualify_state_is_stored_and_listed(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "qualify");
	struct reg_change ch[2] = {change("sip:a@192.0.2.1", 3600), change("sip:b@192.0.2.2", 3600)};
	struct reg_request req = request(aor, "cid-qualify", 7, ch, 2, t_now);
	struct qualify_update u = qualify_update(aor, "sip:a@192.0.2.1", QUALIFY_OK, 12, t_now + 1);
	const struct binding_copy *a, *b;
	struct result r = {0};

	APPLY_OK(&req, &r, 2);
	CHECK_INT(run_fetch(aor, t_now, &r), 0);
	for (size_t i = 0; i < r.n; i++) {
		CHECK_INT(r.v[i].qualify, QUALIFY_UNKNOWN);
		CHECK_INT(r.v[i].qualified_at, 0);
	}
	CHECK_INT(run_qualify(loc, &u, &r), 0);
	CHECK_INT(r.calls, 1);
	CHECK(!r.early);
	CHECK_INT(r.err, 0);
	CHECK_INT(run_fetch(aor, t_now, &r), 0);
	CHECK_INT(r.n, 2);
	a = find_contact(&r, "sip:a@192.0.2.1");
	b = find_contact(&r, "sip:b@192.0.2.2");
	CHECK(a && b);
	if (a && b) {
		CHECK_INT(a->qualify, QUALIFY_OK);
		CHECK_INT(a->rtt_ms, 12);
		CHECK_INT(a->qualified_at, t_now + 1);
		CHECK(a->qualified_by.len == strlen(cfg->instance_id) &&
		      memcmp(a->qualified_by.p, cfg->instance_id, a->qualified_by.len) == 0);
		/* Nothing else of the binding moved. */
		CHECK_INT(a->cseq, 7);
		CHECK_INT(a->expires_at, t_now + 3600);
		CHECK_INT(a->updated_at, t_now);
		CHECK_INT(b->qualify, QUALIFY_UNKNOWN);
	}
	u = qualify_update(aor, "sip:b@192.0.2.2", QUALIFY_UNREACHABLE, 0, t_now + 2);
	CHECK_INT(run_qualify(loc, &u, &r), 0);
	CHECK_INT(r.err, 0);
	u = qualify_update(aor, "sip:a@192.0.2.1", QUALIFY_LAGGED, 900, t_now + 3);
	CHECK_INT(run_qualify(loc, &u, &r), 0);
	CHECK_INT(r.err, 0);
	/* A listing shows the same state as a fetch. */
	CHECK_INT(run_iterate(buf, t_now, &r), 0);
	CHECK_INT(r.n, 2);
	a = find_contact(&r, "sip:a@192.0.2.1");
	b = find_contact(&r, "sip:b@192.0.2.2");
	CHECK(a && b);
	if (a && b) {
		CHECK_INT(a->qualify, QUALIFY_LAGGED);
		CHECK_INT(a->rtt_ms, 900);
		CHECK_INT(b->qualify, QUALIFY_UNREACHABLE);
		CHECK_INT(b->qualified_at, t_now + 2);
	}
	result_clear(&r);
}

static void test_qualify_unknown_binding_is_enoent(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "qualify-none");
	struct qualify_update u = qualify_update(aor, "sip:a@192.0.2.1", QUALIFY_OK, 1, t_now);
	struct result r = {0};

	CHECK_INT(run_qualify(loc, &u, &r), 0);
	CHECK_INT(r.calls, 1);
	CHECK_INT(r.err, ENOENT);
	result_clear(&r);
}

static void test_refresh_resets_qualify_state(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "qualify-refresh");
	struct reg_change ch = change("sip:a@192.0.2.1", 3600);
	struct reg_request req = request(aor, "cid-qr", 1, &ch, 1, t_now);
	struct qualify_update u = qualify_update(aor, "sip:a@192.0.2.1", QUALIFY_OK, 5, t_now);
	struct result r = {0};

	APPLY_OK(&req, &r, 1);
	CHECK_INT(run_qualify(loc, &u, &r), 0);
	CHECK_INT(r.err, 0);
	req.cseq = 2;
	req.now = t_now + 1;
	APPLY_OK(&req, &r, 1);
	CHECK_INT(run_fetch(aor, t_now + 1, &r), 0);
	CHECK_INT(r.n, 1);
	if (r.n == 1) {
		CHECK_INT(r.v[0].qualify, QUALIFY_UNKNOWN);
		CHECK_INT(r.v[0].qualified_at, 0);
	}
	result_clear(&r);
}

/* A binding another instance registered is claimed only once nobody stored a state for it
 * since claim_before; then the claimant keeps it, and a second claimant loses. */
static void test_qualify_claim_only_when_stale(void)
{
	char buf[128];
	struct sip_str aor = test_aor(buf, sizeof(buf), "qualify-claim");
	struct reg_change ch = change("sip:a@192.0.2.1", 3600);
	struct reg_request req = request(aor, "cid-qc", 1, &ch, 1, t_now - 100);
	struct qualify_update u = qualify_update(aor, "sip:a@192.0.2.1", QUALIFY_OK, 5, t_now);
	struct location *other = NULL;
	struct result r = {0};

	req.instance_id = SIP_STR_LIT("conf-gone-instance");
	req.changes = &ch;
	ch.expires = 3700;
	APPLY_OK(&req, &r, 1);
	/* Registered at t_now - 100: not stale before t_now - 200. */
	u.claim_before = t_now - 200;
	CHECK_INT(run_qualify(loc, &u, &r), 0);
	CHECK_INT(r.err, ENOENT);
	u.claim_before = t_now - 50;
	CHECK_INT(run_qualify(loc, &u, &r), 0);
	CHECK_INT(r.err, 0);
	/* Ours now: stored again whatever claim_before says. */
	u.claim_before = t_now - 1000;
	u.at = t_now + 1;
	CHECK_INT(run_qualify(loc, &u, &r), 0);
	CHECK_INT(r.err, 0);
	if (location_conf_in_process(cfg->location)) {
		result_clear(&r);
		return; /* one process, one store: there is no other instance to lose to */
	}
	CHECK_INT(location_open(&other, cfg->location, base, "conf-other-instance"), 0);
	if (other) {
		u.claim_before = t_now; /* our state (t_now + 1) is fresher */
		CHECK_INT(run_qualify(other, &u, &r), 0);
		CHECK_INT(r.err, ENOENT);
		u.claim_before = t_now + 2;
		u.at = t_now + 2;
		CHECK_INT(run_qualify(other, &u, &r), 0);
		CHECK_INT(r.err, 0);
		CHECK_INT(run_fetch(aor, t_now, &r), 0);
		CHECK_INT(r.n, 1);
		if (r.n == 1)
			CHECK_MEM(r.v[0].qualified_by.p, r.v[0].qualified_by.len,
				  "conf-other-instance");
		location_close(&other);
	}
	result_clear(&r);
}

static void test_user_iter_lists_every_user(void)
{
	struct result r = {0};

	iter_alice = iter_bob = iter_carol = iter_total = 0;
	in_call = true;
	CHECK_INT(run_wait(directory_user_iter(loc, on_user_iter, &r, NULL), &r, "user_iter"), 0);
	CHECK_INT(r.calls, 1);
	CHECK(!r.early);
	CHECK_INT(r.err, 0);
	CHECK(iter_alice >= 1); /* one per domain where a backend has no "any domain" */
	CHECK_INT(iter_bob, 1);
	CHECK_INT(iter_carol, 1); /* disabled users are listed too */
	CHECK(iter_total >= 3);
}

/* A backend whose directory is written elsewhere says so; the others create, refuse a
 * second create, update and delete, each seen by the next find. */
static void test_user_put_and_del(void)
{
	char name[96];
	struct sip_str alias = SIP_STR_LIT("conf-dana-alias@" TEST_DOMAIN);
	struct dir_user u = {
	    .domain = SIP_STR_LIT(TEST_DOMAIN),
	    .ha1_md5 = SIP_STR_LIT("00112233445566778899aabbccddeeff"),
	    .enabled = true,
	    .max_contacts = 2,
	};
	struct result r = {0};
	int err;

	snprintf(name, sizeof(name), "conf-dana-%s", run_id);
	u.username = sip_str_c(name);
	err = run_user_put(&u, DIR_PUT_CREATE, &r);
	if (err == ENOTSUP) {
		CHECK_INT(run_user_del(name, TEST_DOMAIN, &r), ENOTSUP);
		return;
	}
	CHECK_INT(err, 0);
	CHECK_INT(r.err, 0);
	CHECK(!r.early);
	CHECK_INT(run_find(name, TEST_DOMAIN, &r), 0);
	CHECK(r.user_found);
	if (r.user_found) {
		CHECK_STR(r.user.ha1_md5.p, "00112233445566778899aabbccddeeff");
		CHECK_INT(r.user.max_contacts, 2);
		CHECK(r.user.enabled);
	}
	CHECK_INT(run_user_put(&u, DIR_PUT_CREATE, &r), 0);
	CHECK_INT(r.err, EEXIST);
	u.enabled = false;
	u.aliases = &alias;
	u.n_aliases = 1;
	CHECK_INT(run_user_put(&u, DIR_PUT_UPDATE, &r), 0);
	CHECK_INT(r.err, 0);
	CHECK_INT(run_find(name, TEST_DOMAIN, &r), 0);
	CHECK(r.user_found && !r.user.enabled && r.user.n_aliases == 1);
	CHECK_INT(run_user_del(name, TEST_DOMAIN, &r), 0);
	CHECK_INT(r.err, 0);
	CHECK_INT(run_find(name, TEST_DOMAIN, &r), 0);
	CHECK(!r.user_found);
	CHECK_INT(run_user_del(name, TEST_DOMAIN, &r), 0);
	CHECK_INT(r.err, ENOENT);
	u.username = SIP_STR_LIT("conf-nobody");
	CHECK_INT(run_user_put(&u, DIR_PUT_UPDATE, &r), 0);
	CHECK_INT(r.err, ENOENT);
	result_clear(&r);
}

int main(int argc, char **argv)
{
	char msg[512] = "";
	int err;

	if (argc < 2 || !section_from_env(argv[1])) {
		printf("Bail out! usage: %s BACKEND (extra section keys in "
		       "SIPREG_TEST_<BACKEND>_SECTION)\n",
		       argv[0]);
		return 2;
	}
	backend_name = argv[1];
	log_set_level(LOG_ERR);
	t_now = (int64_t)time(NULL);
	snprintf(run_id, sizeof(run_id), "%lld-%ld-%lx", (long long)t_now, (long)getpid(),
		 (unsigned long)random() ^ (unsigned long)(uintptr_t)&err);
	base = event_base_new();
	if (!base) {
		printf("Bail out! no event base\n");
		return 2;
	}
	err = config_for(&cfg, backend_name, "", msg, sizeof(msg));
	if (!err)
		err = config_for(&cfg_serial, backend_name, serial_keys(backend_name), msg,
				 sizeof(msg));
	if (err && !*section_extra && strcmp(argv[1], "memory") != 0) {
		printf("1..0 # SKIP backend %s: no section keys given (%s)\n", argv[1], msg);
		event_base_free(base);
		return 0;
	}
	if (err) {
		printf("Bail out! config for backend %s: %s\n", argv[1], msg);
		event_base_free(base);
		return 2;
	}
	err = location_open(&loc, cfg->location, base, cfg->instance_id);
	if (err) {
		printf("Bail out! cannot open backend %s: %s\n", argv[1], strerror(err));
		event_base_free(base);
		return 2;
	}

	RUN(test_backend_names_list_the_backend_under_test);
	RUN(test_unknown_backend_is_refused_naming_the_known_ones);
	RUN(test_register_one_contact);
	RUN(test_fetch_unknown_aor_is_empty);
	RUN(test_refresh_updates_expiry);
	RUN(test_register_multiple_contacts);
	RUN(test_remove_one_contact_with_expires_zero);
	RUN(test_remove_unknown_contact_changes_nothing);
	RUN(test_wildcard_removes_all);
	RUN(test_wildcard_same_callid_not_newer_cseq_is_out_of_order);
	RUN(test_same_callid_equal_cseq_is_out_of_order_and_changes_nothing);
	RUN(test_same_callid_lower_cseq_is_out_of_order_and_changes_nothing);
	RUN(test_new_callid_with_lower_cseq_is_accepted);
	RUN(test_out_of_order_change_fails_whole_request);
	RUN(test_max_contacts_exceeded_changes_nothing);
	RUN(test_expired_bindings_are_not_returned);
	RUN(test_iterate_lists_live_bindings_then_ends);
	if (strcmp(backend_name, "memory") == 0)
		RUN(test_memory_wheel_reaps_expired_bindings_in_background);
	RUN(test_binding_fields_round_trip);
	RUN(test_callback_never_runs_before_the_call_returns);
	RUN(test_pending_counts_operations_in_flight);
	RUN(test_delay_follows_the_backend);
	RUN(test_op_cancel_prevents_the_callback);
	RUN(test_close_completes_pending_ops_with_ecanceled);
	RUN(test_close_from_a_callback_cancels_the_rest);
	RUN(test_find_user_by_name);
	RUN(test_find_user_of_any_domain_reports_the_asked_domain);
	RUN(test_find_user_resolves_an_alias);
	RUN(test_find_unknown_user_is_null);
	RUN(test_find_disabled_user_reports_enabled_false);
	RUN(test_unbind_removes_one_contact_or_all);
	if (backend_keeps_qualify()) {
		RUN(test_qualify_state_is_stored_and_listed);
		RUN(test_qualify_unknown_binding_is_enoent);
		RUN(test_refresh_resets_qualify_state);
		RUN(test_qualify_claim_only_when_stale);
	} else {
		RUN_SKIP(test_qualify_state_is_stored_and_listed, "the backend keeps no qualify state");
		RUN_SKIP(test_qualify_unknown_binding_is_enoent, "the backend keeps no qualify state");
		RUN_SKIP(test_refresh_resets_qualify_state, "the backend keeps no qualify state");
		RUN_SKIP(test_qualify_claim_only_when_stale, "the backend keeps no qualify state");
	}
	RUN(test_user_iter_lists_every_user);
	RUN(test_user_put_and_del);

	location_close(&loc);
	config_free(&cfg);
	config_free(&cfg_serial);
	event_base_free(base);
	CHECK_DONE();
}
