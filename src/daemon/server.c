/* The request path of sipregd: a message from a transport, through validation and the
 * transaction table, to the method handlers, and every answer back out.
 *
 * DESIGN: everything here runs on the one event-loop thread. A REGISTER becomes a
 * struct reg_pending that lives from the transaction's creation to its final response;
 * it crosses at most three asynchronous backend calls (find the AOR's user, find the
 * authenticating user when it differs, apply or fetch). Each call's handle is kept in
 * p->op so that the transaction table aborting the transaction (shutdown) cancels it and
 * no callback ever reaches freed memory. Work in flight is bounded: past
 * limits.max_pending backend operations or limits.max_transactions transactions a new
 * REGISTER gets 503 + Retry-After at once, while retransmissions of accepted ones are
 * still absorbed by the transaction table, so overload never turns into a retransmission
 * storm. */
#include "daemon/server.h"

#include <errno.h>
#include <event2/event.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "registrar/auth.h"
#include "sipreg/log.h"
#include "net/net.h"
#include "ops/control.h"
#include "ops/qualify.h"
#include "ops/debug.h"
#include "ops/metrics.h"
#include "ops/stats.h"
#include "sipreg/clock.h"
#include "registrar/registrar.h"
#include "sip/msg.h"
#include "sipreg/location.h"
#include "sip/resp.h"
#include "sip/tsx.h"

/* Retry-After for a backend that cannot answer (it reconnects with backoff) and for
 * overload (clients should come back soon, spread out by their own timers). */
#define RETRY_AFTER_BACKEND 10
#define RETRY_AFTER_OVERLOAD 2
/* How often expired bindings are swept (the location backend also filters on read). */
/* Finished pending requests kept for the next ones: each is a ~1.5 KiB block, beyond
 * glibc's per-thread cache, so a calloc/free pair per REGISTER went through the slow
 * path of malloc. */
#define PENDING_SPARE_MAX 256
/* How often an idle backend is probed for /healthz, and the name the probe looks up
 * (no AOR can be it: "invalid" is reserved, RFC 2606). */
#define PROBE_INTERVAL_MS 1000
#define PROBE_AOR "sipreg-health-probe@invalid"
/* SIGTERM: how long what is in flight may take to finish, and how often it is looked at. */
#define DRAIN_MAX_S 10
#define DRAIN_POLL_MS 20

static const char server_allow[] = "REGISTER, OPTIONS, ACK";

struct server {
	const struct config *cfg;
	struct event_base *base;
	struct net *net;
	struct tsx_table *tsx;
	struct auth *auth;
	struct sipresp_tag_key *tag_key;
	struct location *dir;
	struct location *loc;
	struct control *control; /* NULL without control.socket */
	struct qualify *qualify; /* NULL without qualify: */
	struct reg_pending *spare[PENDING_SPARE_MAX];
	size_t n_spare, spare_keep;
	/* The 503 paths run at request rate when they run at all, and so do refused
	 * credentials under a guessing attack. */
	struct log_limit lim_store, lim_start, lim_lookup, lim_pending, lim_delay, lim_tsx;
	struct log_limit lim_auth_failed, lim_auth_owner, lim_outcome_503;
	/* Operator views: counters (ops/stats.h; the live values are read at snapshot
	 * time), the per-IP trace, the HTTP endpoint (NULL without metrics.listen). */
	struct ops_stats counters;
	struct debug *debug;
	struct metrics *metrics;
	/* Health: when an apply or fetch last succeeded and last failed (find_user is not
	 * evidence: the pg backend may answer it from its cache), and the idle probe. */
	int64_t backend_ok_ns, backend_err_ns;
	struct event *probe_ev;
	struct location_op *probe_op;
	int64_t probe_ns;
	/* SIGTERM's drain: REGISTERs alive, and the timer that watches them finish. */
	size_t n_live;
	struct event *drain_ev;
	int64_t drain_deadline_ns;
	server_drained_h *drainedh;
	void *drained_arg;
};

struct reg_pending {
	struct server *srv;
	struct tsx *tsx;
	struct sipmsg *msg;
	struct sip_register reg; /* the view of msg every later step reads */
	struct reg_decision d;
	struct location_op *op;
	struct auth_creds creds;
	enum auth_nonce_state nonce;
	/* registrar.unknown_user: 403 and the AOR's user is unknown or disabled: challenged
	 * like anyone, refused once the challenge is answered, so nobody learns who exists. */
	bool hidden;
	char auth_user[REGISTRAR_AOR_MAX]; /* digest username, canonically escaped */
	int64_t now;
	int64_t start_ns, op_ns; /* when it arrived; when the backend call in flight began */
	size_t n_contacts;	 /* in the 200 */
};

/* A backend call of p completed: its latency, and for an apply or fetch the health. */
static void server_backend_done(struct server *srv, int64_t start_ns, int err, bool health)
{
	int64_t now = clock_mono_ns();

	stats_latency_observe(&srv->counters.backend_latency, now - start_ns);
	if (err)
		srv->counters.backend_errors++;
	if (!health)
		return;
	if (err)
		srv->backend_err_ns = now;
	else
		srv->backend_ok_ns = now;
}

static void server_count_503(struct server *srv, enum stats_503 cause)
{
	srv->counters.unavailable[cause]++;
}


static uint16_t server_reply_port(const struct sipmsg *m, const struct net_flow *flow)
{
	if (flow->src.proto != SIP_PROTO_UDP || m->via_rport)
		return flow->src.port;
	return m->via_port ? m->via_port : 5060;
}

/* Answer without a transaction: for what cannot or need not be absorbed (bad requests,
 * a full transaction table). */
static void server_reply_stateless(struct server *srv, const struct sipmsg *m,
				   const struct net_flow *flow, int status, const char *reason,
				   int retry_after)
{
	struct sipresp r = { 0 };

	if (sipresp_start(&r, srv->tag_key, m, status, reason, &flow->src) != 0)
		goto out;
	if (retry_after > 0)
		sipresp_header_uint(&r, "Retry-After", (uint64_t)retry_after);
	if (sipresp_finish(&r) != 0)
		goto out;
	net_send(srv->net, flow, server_reply_port(m, flow), r.buf, r.len);
out:
	sipresp_clear(&r);
}

static void server_reply_unparsed(struct server *srv, const char *buf, size_t len,
				  const struct net_flow *flow, int status, const char *reason)
{
	struct sipresp r = { 0 };

	/* Without a parsed Via there is no rport or sent-by to honour: the only safe place
	 * for the answer is where the bytes came from. */
	if (sipresp_error_raw(&r, buf, len, status ? status : 400,
			      reason ? reason : "Bad Request", &flow->src) == 0)
		net_send(srv->net, flow, flow->src.port, r.buf, r.len);
	sipresp_clear(&r);
}

/* Finish a transaction with a response built by the caller, then free everything. */
static void pending_free(struct reg_pending *p)
{
	struct server *srv = p->srv;

	location_op_cancel(&p->op);
	srv->n_live--;
	registrar_decision_clear(&p->d);
	sip_register_clear(&p->reg);
	sipmsg_free(&p->msg);
	if (srv->n_spare < srv->spare_keep)
		srv->spare[srv->n_spare++] = p;
	else
		free(p);
}

/* A zeroed pending request for srv: a spare one or a new one. */
static struct reg_pending *pending_new(struct server *srv)
{
	struct reg_pending *p;

	if (srv->n_spare == 0) {
		p = calloc(1, sizeof(struct reg_pending));
	} else {
		p = srv->spare[--srv->n_spare];
		memset(p, 0, sizeof(*p));
	}
	if (p)
		srv->n_live++;
	return p;
}

/* The one info line per REGISTER outcome. 503s come at request rate when they come at
 * all (an outage, overload): they share one rate-limited line, and each cause has its
 * own line and counter besides. */
static void pending_log(struct reg_pending *p, int status)
{
	struct server *srv = p->srv;
	const struct sip_source *src = &p->d.req.source;
	int64_t us = (clock_mono_ns() - p->start_ns) / 1000;
	char aor[LOG_ESC_SIZE];

	if (p->d.req.aor.len)
		log_escape(p->d.req.aor.p, p->d.req.aor.len, aor, sizeof(aor));
	else
		strcpy(aor, "-");
	if (status == 503) {
		log_limited(&srv->lim_outcome_503, LOG_INFO,
			    "register: \"%s\" from %s:%s:%u: 503", aor,
			    sip_proto_name(src->proto), src->ip, src->port);
		return;
	}
	if (log_get_level() < LOG_INFO)
		return;
	log_info("register: \"%s\" from %s:%s:%u: %d, %zu contact%s, %lld.%03lld ms", aor,
		 sip_proto_name(src->proto), src->ip, src->port, status, p->n_contacts,
		 p->n_contacts == 1 ? "" : "s", (long long)(us / 1000), (long long)(us % 1000));
}

static void pending_send(struct reg_pending *p, int status, struct sipresp *r)
{
	if (status >= STATS_CODE_MIN && status <= STATS_CODE_MAX)
		p->srv->counters.register_codes[status - STATS_CODE_MIN]++;
	pending_log(p, status);
	/* Detach first: on a reliable transport tsx_reply frees the transaction. */
	tsx_set_owner(p->tsx, NULL, NULL);
	if (sipresp_finish(r) == 0)
		tsx_reply(p->tsx, status, r->buf, r->len);
	else
		log_warn("no memory for a %d response; the client will retransmit", status);
	sipresp_clear(r);
	pending_free(p);
}

static void pending_reply(struct reg_pending *p, int status, const char *reason,
			  int retry_after)
{
	struct sipresp r = { 0 };

	sipresp_start(&r, p->srv->tag_key, p->msg, status, reason, &p->d.req.source);
	if (retry_after > 0)
		sipresp_header_uint(&r, "Retry-After", (uint64_t)retry_after);
	pending_send(p, status, &r);
}

static void pending_abort(struct tsx *t, void *owner)
{
	struct reg_pending *p = owner;

	(void)t;
	pending_free(p);
}

/* 401 with the challenges this client and user u (NULL: nobody known) can answer. */
static void pending_challenge(struct reg_pending *p, const struct dir_user *u, bool stale)
{
	struct sipresp r = { 0 };
	struct auth_offer offer;

	auth_offer_for(p->srv->auth, &p->reg.user_agent, u, &offer);
	sipresp_start(&r, p->srv->tag_key, p->msg, 401, "Unauthorized", &p->d.req.source);
	auth_challenge(p->srv->auth, &r, &p->d.domain, &offer, stale, p->now);
	pending_send(p, 401, &r);
}

static void pending_bindings(struct reg_pending *p, const struct binding_set *set)
{
	struct sipresp r = { 0 };

	sipresp_start(&r, p->srv->tag_key, p->msg, 200, "OK", &p->d.req.source);
	registrar_reply_ok(&r, &p->d, set, p->now);
	p->n_contacts = set ? set->n : 0;
	pending_send(p, 200, &r);
}

static void register_applied(int err, enum reg_outcome outcome, const struct binding_set *set,
			     void *arg)
{
	struct reg_pending *p = arg;
	const char *reason;
	int status;

	p->op = NULL;
	server_backend_done(p->srv, p->op_ns, err, true);
	if (err) {
		char aor[LOG_ESC_SIZE];

		server_count_503(p->srv, STATS_503_BACKEND_ERROR);
		log_limited(&p->srv->lim_store, LOG_WARN,
			    "location: storing a REGISTER for %s failed (%s): 503",
			    log_escape(p->d.req.aor.p, p->d.req.aor.len, aor, sizeof(aor)),
			    strerror(err));
		pending_reply(p, 503, "Service Unavailable", RETRY_AFTER_BACKEND);
		return;
	}
	if (outcome != REG_OK) {
		status = registrar_outcome_status(&p->srv->cfg->registrar, outcome, &reason);
		if (status == 503)
			server_count_503(p->srv, STATS_503_OUTCOME);
		pending_reply(p, status, reason, status == 503 ? RETRY_AFTER_OVERLOAD : 0);
		return;
	}
	pending_bindings(p, set);
}

static void register_fetched(int err, const struct binding_set *set, void *arg)
{
	register_applied(err, REG_OK, set, arg);
}

/* A backend call could not start (no connection up, its queue full): 503 at once. */
static void pending_refused(struct reg_pending *p, int err)
{
	server_count_503(p->srv, STATS_503_BACKEND_REFUSED);
	log_limited(&p->srv->lim_start, LOG_WARN, "location: cannot start a request (%s): 503",
		    strerror(err));
	pending_reply(p, 503, "Service Unavailable", RETRY_AFTER_BACKEND);
}

static void register_store(struct reg_pending *p)
{
	struct server *srv = p->srv;
	int err;

	p->op_ns = clock_mono_ns();
	if (p->d.is_query)
		err = location_fetch(srv->loc, &p->d.req.aor, p->now, register_fetched, p, &p->op);
	else
		err = location_apply(srv->loc, &p->d.req, register_applied, p, &p->op);
	if (err)
		pending_refused(p, err);
}

/* The credentials answered a challenge for user u (NULL: nobody by that name): decide
 * 200-path, 401 or 403. An unknown or disabled user costs the same digest work as one who
 * exists, and fails the same way as a wrong password. */
static void register_verify(struct reg_pending *p, const struct dir_user *u)
{
	struct server *srv = p->srv;
	const struct sip_source *src = &p->d.req.source;
	char user[LOG_ESC_SIZE], aor[LOG_ESC_SIZE];
	bool ok = auth_response_ok(&p->creds, u, &p->msg->method_name);

	if (!ok || !u->enabled) {
		srv->counters.auth_failures++;
		auth_failure(srv->auth, src->ip, &p->creds.username, p->now);
		log_limited(
		    &srv->lim_auth_failed, LOG_INFO, "auth: failed for \"%s\" from %s",
		    log_escape(p->creds.username.p, p->creds.username.len, user, sizeof(user)),
		    src->ip);
		pending_reply(p, 403, "Forbidden", 0);
		return;
	}
	if (p->nonce == AUTH_NONCE_STALE) {
		pending_challenge(p, u, true);
		return;
	}
	if (auth_nc_replayed(srv->auth, &p->creds, p->now)) {
		pending_challenge(p, u, false);
		return;
	}
	/* Right credentials of someone else for an AOR nobody holds: what a user who may not
	 * register an existing AOR gets. */
	if (p->hidden || !auth_may_register(u, &p->d.req.aor)) {
		log_limited(
		    &srv->lim_auth_owner, LOG_INFO,
		    "auth: \"%s\" from %s may not register \"%s\"",
		    log_escape(p->creds.username.p, p->creds.username.len, user, sizeof(user)),
		    src->ip, log_escape(p->d.req.aor.p, p->d.req.aor.len, aor, sizeof(aor)));
		pending_reply(p, 403, "Forbidden", 0);
		return;
	}
	register_store(p);
}

static void register_auth_user(int err, const struct dir_user *u, void *arg)
{
	struct reg_pending *p = arg;

	p->op = NULL;
	server_backend_done(p->srv, p->op_ns, err, false);
	if (err) {
		server_count_503(p->srv, STATS_503_BACKEND_ERROR);
		pending_reply(p, 503, "Service Unavailable", RETRY_AFTER_BACKEND);
		return;
	}
	register_verify(p, u);
}

static void register_user(int err, const struct dir_user *u, void *arg)
{
	struct reg_pending *p = arg;
	struct server *srv = p->srv;
	const struct registrar_conf *rc = &srv->cfg->registrar;
	struct sip_str auth_user;
	size_t len;
	int rv;

	p->op = NULL;
	server_backend_done(srv, p->op_ns, err, false);
	if (err) {
		server_count_503(srv, STATS_503_BACKEND_ERROR);
		log_limited(&srv->lim_lookup, LOG_WARN, "directory: lookup failed (%s): 503",
			    strerror(err));
		pending_reply(p, 503, "Service Unavailable", RETRY_AFTER_BACKEND);
		return;
	}
	if (!u || !u->enabled) {
		/* Without auth nothing can be hidden: a known user would register at once. */
		if (rc->unknown_user_status != 403 || !auth_required(srv->auth, &p->d.domain)) {
			if (u)
				pending_reply(p, 403, "Forbidden", 0);
			else
				pending_reply(p, rc->unknown_user_status,
					      rc->unknown_user_status == 403 ? "Forbidden"
									     : "Not Found",
					      0);
			return;
		}
		p->hidden = true;
	} else {
		if (u->max_contacts)
			p->d.req.max_contacts = u->max_contacts;
		if (u->auth_off || !auth_required(srv->auth, &p->d.domain)) {
			register_store(p);
			return;
		}
	}

	rv = auth_creds_parse(&p->reg, &p->d.domain, &p->creds);
	if (rv == ENOENT) {
		pending_challenge(p, u, false);
		return;
	}
	if (rv != 0) {
		pending_reply(p, 400, "Bad Request: malformed Authorization", 0);
		return;
	}
	/* Failures count against the credentials' username: a guesser naming another
	 * user in To must meet the same ban. */
	if (!sip_str_eq(&p->creds.username, &p->d.user) &&
	    auth_banned(srv->auth, p->d.req.source.ip, &p->creds.username, p->now)) {
		srv->counters.auth_banned++;
		if (auth_ban_action(srv->auth) == BAN_DROP) {
			tsx_set_owner(p->tsx, NULL, NULL);
			tsx_discard(p->tsx);
			pending_free(p);
			return;
		}
		pending_reply(p, 403, "Forbidden", 0);
		return;
	}
	p->nonce = auth_nonce_check(srv->auth, &p->creds, p->now);
	if (p->nonce == AUTH_NONCE_INVALID) {
		pending_challenge(p, u, false);
		return;
	}
	/* The directory keys users by the canonical escaped user part; the digest username
	 * is plain bytes. */
	if (sipmsg_user_escape(&p->creds.username, p->auth_user, sizeof(p->auth_user), &len) !=
	    0) {
		pending_reply(p, 403, "Forbidden", 0);
		return;
	}
	auth_user = (struct sip_str){ .p = p->auth_user, .len = len };
	if (sip_str_eq(&auth_user, u ? &u->username : &p->d.user)) {
		register_verify(p, u);
		return;
	}
	/* Someone else's credentials: that user may hold this AOR as an alias. */
	p->op_ns = clock_mono_ns();
	rv = directory_find_user(srv->dir, &auth_user, &p->d.domain, register_auth_user, p,
				 &p->op);
	if (rv)
		pending_refused(p, rv);
}

/* DESIGN: admission to the backend. Two bounds: the calls in flight (limits.max_pending)
 * and how long the oldest of them has waited (limits.max_backend_delay_ms). A count
 * cannot tell a fast backend with a deep pipeline from a stalled one; the wait can. Past
 * either, a REGISTER gets 503 + Retry-After before any backend call: its client stops
 * retransmitting and comes back later, instead of waiting in a queue it would time out
 * in while its retransmissions eat the CPU the backend needs. New work goes first: a
 * REGISTER that will be challenged (auth on, no Authorization) is refused at half the
 * wait, so what capacity is left serves the authenticated retries of registrations that
 * already cost a 401, rather than starting more of them. */
static bool server_overloaded(struct server *srv, const struct sip_register *reg)
{
	const struct limits_conf *lim = &srv->cfg->limits;
	size_t pending = location_pending(srv->loc);
	uint32_t delay = location_delay_ms(srv->loc);
	uint32_t bound = lim->max_backend_delay_ms;
	bool fresh;

	if (srv->dir != srv->loc) {
		uint32_t d = location_delay_ms(srv->dir);

		pending += location_pending(srv->dir);
		delay = d > delay ? d : delay;
	}
	if (pending >= lim->max_pending) {
		server_count_503(srv, STATS_503_MAX_PENDING);
		log_limited(&srv->lim_pending, LOG_WARN,
			    "overloaded: %zu backend operations in flight (limits.max_pending): "
			    "503",
			    pending);
		return true;
	}
	if (!bound)
		return false;
	fresh = srv->cfg->auth.enabled && reg->authorization.n == 0;
	if (delay < (fresh ? bound / 2 : bound))
		return false;
	server_count_503(srv, STATS_503_BACKEND_DELAY);
	log_limited(&srv->lim_delay, LOG_WARN,
		    "overloaded: the backend's oldest call has waited %u ms "
		    "(limits.max_backend_delay_ms %u): 503 to %s REGISTERs",
		    delay, bound, delay < bound ? "new" : "all");
	return true;
}

/* REGISTER: the pure checks first, so refusals and bans cost no backend call. Takes m. */
static void server_register(struct server *srv, struct sipmsg *m, const struct net_flow *flow)
{
	struct reg_pending *p = pending_new(srv);
	struct sipresp r = { 0 };
	bool banned;
	int err;

	if (!p) {
		sipmsg_free(&m);
		return;
	}
	p->srv = srv;
	p->msg = m;
	p->now = (int64_t)time(NULL);
	p->start_ns = clock_mono_ns();
	if (sip_register_read(m, &p->reg) != 0 ||
	    registrar_check(&srv->cfg->registrar, &p->reg, p->now, &p->d) != 0) {
		pending_free(p);
		return;
	}
	banned = p->d.status == 0 && auth_banned(srv->auth, flow->src.ip, &p->d.user, p->now);
	if (banned)
		srv->counters.auth_banned++;
	if (banned && auth_ban_action(srv->auth) == BAN_DROP) {
		pending_free(p);
		return;
	}

	err = tsx_create(srv->tsx, m, flow, &p->tsx);
	if (err == EBUSY) {
		log_limited(&srv->lim_tsx, LOG_WARN,
			    "overloaded: %u transactions live (limits.max_transactions): 503",
			    srv->cfg->limits.max_transactions);
		server_count_503(srv, STATS_503_MAX_TRANSACTIONS);
		srv->counters.register_codes[503 - STATS_CODE_MIN]++;
		server_reply_stateless(srv, m, flow, 503, "Service Unavailable",
				       RETRY_AFTER_OVERLOAD);
		pending_free(p);
		return;
	}
	if (err) {
		pending_free(p);
		return;
	}
	tsx_set_owner(p->tsx, pending_abort, p);
	p->d.req.source = flow->src;

	if (p->d.status) {
		sipresp_start(&r, srv->tag_key, m, p->d.status, p->d.reason, &flow->src);
		if (p->d.status == 423)
			sipresp_header_uint(&r, "Min-Expires", srv->cfg->registrar.min_expires);
		if (p->d.status == 420 && p->d.unsupported)
			sipresp_header_str(&r, "Unsupported", p->d.unsupported);
		pending_send(p, p->d.status, &r);
		return;
	}
	if (banned) {
		pending_reply(p, 403, "Forbidden", 0);
		return;
	}
	if (server_overloaded(srv, &p->reg)) {
		pending_reply(p, 503, "Service Unavailable", RETRY_AFTER_OVERLOAD);
		return;
	}
	p->d.req.instance_id = sip_str_c(srv->cfg->instance_id);
	p->op_ns = clock_mono_ns();
	err = directory_find_user(srv->dir, &p->d.user, &p->d.domain, register_user, p, &p->op);
	if (err)
		pending_refused(p, err);
}

/* Methods other than REGISTER end here, in their own transaction. */
static void server_other(struct server *srv, struct sipmsg *m, const struct net_flow *flow)
{
	char unsupported[REGISTRAR_AOR_MAX];
	struct sip_list require = { 0 };
	struct sipresp r = { 0 };
	struct tsx *t;
	int status;

	if (tsx_create(srv->tsx, m, flow, &t) != 0) {
		server_reply_stateless(srv, m, flow, 503, "Service Unavailable",
				       RETRY_AFTER_OVERLOAD);
		goto out;
	}
	switch (m->method) {
	case SIP_M_OPTIONS:
		if (sip_list_read(m, SIPMSG_HDR_REQUIRE, true, &require) == 0 &&
		    registrar_require_unsupported(&require, unsupported, sizeof(unsupported))) {
			status = 420;
			sipresp_start(&r, srv->tag_key, m, status, "Bad Extension", &flow->src);
			sipresp_header_str(&r, "Unsupported", unsupported);
			break;
		}
		status = 200;
		sipresp_start(&r, srv->tag_key, m, status, "OK", &flow->src);
		sipresp_header_str(&r, "Allow", server_allow);
		sipresp_header_str(&r, "Accept", "application/sdp");
		sipresp_header_str(&r, "Accept-Encoding", "identity");
		sipresp_header_str(&r, "Accept-Language", "en");
		sipresp_header_str(&r, "Supported", "path");
		break;
	case SIP_M_UNKNOWN:
		status = 501;
		sipresp_start(&r, srv->tag_key, m, status, "Not Implemented", &flow->src);
		sipresp_header_str(&r, "Allow", server_allow);
		break;
	default:
		status = 405;
		sipresp_start(&r, srv->tag_key, m, status, "Method Not Allowed", &flow->src);
		sipresp_header_str(&r, "Allow", server_allow);
		break;
	}
	if (sipresp_finish(&r) == 0)
		tsx_reply(t, status, r.buf, r.len);
	sipresp_clear(&r);
out:
	sip_list_clear(&require);
	sipmsg_free(&m);
}

static void server_on_message(const char *buf, size_t len, const struct net_flow *flow,
			      void *arg)
{
	struct server *srv = arg;
	struct sipmsg *m = NULL;
	struct sipmsg_tsx_id id;
	const char *reason = NULL;
	struct tsx *t;
	int status = 0;
	int err;

	/* A retransmission meets its transaction before any parse: under overload,
	 * retransmissions are most of what arrives, and a full parse of each would spend
	 * the CPU that new requests need. */
	if (sipmsg_peek_tsx_id(buf, len, &id) && (t = tsx_lookup_id(srv->tsx, &id))) {
		tsx_retransmission(t);
		return;
	}
	err = sipmsg_parse(&m, buf, len, &status, &reason);
	if (err == EBADMSG) {
		log_debug("bad message from %s:%u: %d %s", flow->src.ip, flow->src.port, status,
			  reason ? reason : "unparsable");
		if (m && !m->is_response && m->method != SIP_M_ACK && status)
			server_reply_stateless(srv, m, flow, status, reason, 0);
		else if (!m)
			server_reply_unparsed(srv, buf, len, flow, status, reason);
		goto out;
	}
	if (err)
		goto out;
	/* The only requests we send are qualify's OPTIONS: a response answers one of
	 * them or nothing. ACK only ever confirms a final response to INVITE, which we
	 * never send. */
	if (m->is_response) {
		qualify_response(srv->qualify, m);
		goto out;
	}
	if (m->method == SIP_M_ACK)
		goto out;

	t = tsx_lookup(srv->tsx, m);
	if (t) {
		tsx_retransmission(t);
		goto out;
	}
	if (m->method == SIP_M_REGISTER) {
		server_register(srv, m, flow);
		return;
	}
	server_other(srv, m, flow);
	return;
out:
	sipmsg_free(&m);
}

/* ---- operator views: counters, health, trace ---------------------------------------- */

void server_stats(struct ops_stats *st, void *arg)
{
	struct server *srv = arg;
	struct net_stats ns;

	*st = srv->counters;
	net_stats_get(srv->net, &ns);
	st->rx_msgs = ns.rx_msgs;
	st->tx_msgs = ns.tx_msgs;
	st->rx_dropped = ns.rx_dropped;
	st->tx_dropped = ns.tx_dropped;
	st->rx_stale = ns.rx_stale;
	st->tcp_conns = ns.tcp_conns;
	st->tcp_conns_refused = ns.tcp_conns_refused;
	st->tcp_conns_refused_source = ns.tcp_conns_refused_source;
	st->tcp_out_bytes = ns.tcp_out_bytes;
	st->tcp_out_closed = ns.tcp_out_closed;
	st->transactions = tsx_count(srv->tsx);
	st->backend_pending = location_pending(srv->loc);
	st->backend_delay_ms = location_delay_ms(srv->loc);
	if (srv->dir != srv->loc) {
		uint64_t d = location_delay_ms(srv->dir);

		st->backend_pending += location_pending(srv->dir);
		st->backend_delay_ms = d > st->backend_delay_ms ? d : st->backend_delay_ms;
	}
	st->backend_up = server_healthy(srv);
}

bool server_healthy(void *arg)
{
	struct server *srv = arg;
	int64_t window = (int64_t)srv->cfg->metrics.health_window * 1000000000;

	return srv->backend_ok_ns && srv->backend_ok_ns >= srv->backend_err_ns &&
	       clock_mono_ns() - srv->backend_ok_ns <= window;
}

static void server_probed(int err, const struct binding_set *set, void *arg)
{
	struct server *srv = arg;

	(void)set;
	srv->probe_op = NULL;
	server_backend_done(srv, srv->probe_ns, err, true);
}

/* The backend's health comes from the REGISTERs it serves; when none succeeded within a
 * probe interval, one fetch of an AOR nobody can hold asks it (the same call a REGISTER
 * query makes, never answered from a cache). */
static void server_probe(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	struct sip_str aor = SIP_STR_LIT(PROBE_AOR);
	int64_t now = clock_mono_ns();
	int err;

	(void)fd;
	(void)what;
	if (srv->probe_op || (srv->backend_ok_ns &&
			      now - srv->backend_ok_ns < (int64_t)PROBE_INTERVAL_MS * 1000000))
		return;
	srv->probe_ns = now;
	err = location_fetch(srv->loc, &aor, (int64_t)time(NULL), server_probed, srv,
			     &srv->probe_op);
	if (err) {
		srv->probe_op = NULL;
		server_backend_done(srv, now, err, true);
	}
}

/* Started once the transports are up: the first probe runs at once, so /healthz says
 * 200 as soon as the backend answered. */
static int server_probe_start(struct server *srv)
{
	struct timeval tv = {.tv_sec = PROBE_INTERVAL_MS / 1000,
			     .tv_usec = (PROBE_INTERVAL_MS % 1000) * 1000};

	srv->probe_ev = event_new(srv->base, -1, EV_PERSIST, server_probe, srv);
	if (!srv->probe_ev || event_add(srv->probe_ev, &tv) != 0)
		return ENOMEM;
	event_active(srv->probe_ev, EV_TIMEOUT, 0);
	return 0;
}

static int server_debug_load(struct server *srv, const struct config *cfg)
{
	int err;

	debug_ip_clear(srv->debug);
	for (size_t i = 0; i < cfg->n_debug_ips; i++) {
		err = debug_ip_set(srv->debug, cfg->debug_ips[i], true);
		if (err) {
			log_warn("debug.ip: cannot trace %s: %s", cfg->debug_ips[i],
				 strerror(err));
			return err;
		}
	}
	return 0;
}

int server_reload(struct server *srv, const struct config *fresh)
{
	int err;

	server_debug_load(srv, fresh);
	err = location_reload(srv->dir, fresh->directory);
	if (err == ENOTSUP) /* a directory in a database is read where it is */
		return 0;
	if (err == EINVAL)
		log_warn("SIGHUP: directory: the backend changed (%s to %s): restart to switch",
			 location_conf_backend(srv->cfg->directory),
			 location_conf_backend(fresh->directory));
	else if (err)
		log_warn("SIGHUP: directory: users not reloaded: %s", strerror(err));
	else
		log_info("SIGHUP: directory: users reloaded");
	return err;
}

/* ---- SIGTERM: drain -------------------------------------------------------------- */

static void server_drain_check(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	struct net_stats ns;

	(void)fd;
	(void)what;
	net_stats_get(srv->net, &ns);
	/* Answered and out: nothing pending, and what TCP holds is with the kernel. */
	if (srv->n_live && clock_mono_ns() < srv->drain_deadline_ns)
		return;
	if (ns.tcp_out_bytes && clock_mono_ns() < srv->drain_deadline_ns)
		return;
	if (srv->n_live)
		log_warn("drain: %zu REGISTERs still waiting for the backend after %d s: "
			 "abandoned (their clients retransmit elsewhere)",
			 srv->n_live, DRAIN_MAX_S);
	else
		log_info("drain: every request in flight answered");
	event_del(srv->drain_ev);
	srv->drainedh(srv->drained_arg);
}

int server_drain(struct server *srv, server_drained_h *h, void *arg)
{
	struct timeval tv = {.tv_usec = DRAIN_POLL_MS * 1000};

	if (srv->drain_ev)
		return EALREADY;
	net_stop_reading(srv->net);
	srv->drainedh = h;
	srv->drained_arg = arg;
	srv->drain_deadline_ns = clock_mono_ns() + (int64_t)DRAIN_MAX_S * 1000000000;
	srv->drain_ev = event_new(srv->base, -1, EV_PERSIST, server_drain_check, srv);
	if (!srv->drain_ev || event_add(srv->drain_ev, &tv) != 0)
		return ENOMEM;
	log_info("drain: reading stopped; %zu REGISTERs in flight", srv->n_live);
	event_active(srv->drain_ev, EV_TIMEOUT, 0);
	return 0;
}

/* control.group: the group's operators may use the socket (mode 0660). */
static int server_control_group(struct server *srv)
{
	const char *name = srv->cfg->control_group;
	struct group *gr;
	int err;

	if (!name)
		return 0;
	gr = getgrnam(name);
	if (!gr) {
		log_err("control.group: no such group \"%s\"", name);
		return ENOENT;
	}
	err = control_set_group(srv->control, (unsigned)gr->gr_gid);
	if (err)
		log_err("control.group: cannot give %s to group %s: %s",
			srv->cfg->control_socket, name, strerror(err));
	return err;
}

int server_alloc(struct server **sp, struct event_base *base, const struct config *cfg,
		 enum server_stage *stagep)
{
	struct server *srv;
	int err;

	if (stagep)
		*stagep = SERVER_STAGE_SETUP;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return ENOMEM;
	srv->cfg = cfg;
	srv->base = base;
#ifdef __SANITIZE_ADDRESS__
	srv->spare_keep = 0; /* under AddressSanitizer a use after free must show */
#else
	srv->spare_keep = PENDING_SPARE_MAX;
#endif
	err = auth_alloc(&srv->auth, &cfg->auth, cfg->trusted_sources);
	if (err)
		goto fail;
	err = auth_tag_key_alloc(srv->auth, &srv->tag_key);
	if (err) {
		log_err("cannot key the To tags: %s", strerror(err));
		goto fail;
	}
	err = location_open(&srv->loc, cfg->location, base, cfg->instance_id);
	if (err) {
		log_err("location: cannot open backend \"%s\": %s",
			location_conf_backend(cfg->location), strerror(err));
		goto fail;
	}
	/* Users and bindings in the same store: one instance, one connection pool. */
	if (location_conf_same_store(cfg->directory, cfg->location)) {
		srv->dir = srv->loc;
	} else {
		err = location_open(&srv->dir, cfg->directory, base, cfg->instance_id);
		if (err) {
			log_err("directory: cannot open backend \"%s\": %s",
				location_conf_backend(cfg->directory), strerror(err));
			goto fail;
		}
	}
	err = net_alloc(&srv->net, base, cfg, server_on_message, srv);
	if (err) {
		if (stagep)
			*stagep = SERVER_STAGE_LISTEN;
		goto fail;
	}
	err = tsx_table_alloc(&srv->tsx, base, srv->net, cfg->limits.max_transactions, 0);
	if (err)
		goto fail;
	if (cfg->qualify.interval) {
		err = qualify_alloc(&srv->qualify, base, &cfg->qualify, srv->loc, srv->net,
				    cfg->instance_id);
		if (err)
			goto fail;
	}
	err = debug_alloc(&srv->debug);
	if (err)
		goto fail;
	err = server_debug_load(srv, cfg);
	if (err)
		goto fail;
	net_trace_set(srv->net, debug_trace, srv->debug);
	err = server_probe_start(srv);
	if (err)
		goto fail;
	if (cfg->metrics.port) {
		err = metrics_alloc(&srv->metrics, base, cfg->metrics.addr, cfg->metrics.port,
				    server_stats, server_healthy, srv);
		if (err) {
			log_err("metrics: cannot listen on %s%s%s:%u: %s",
				strchr(cfg->metrics.addr, ':') ? "[" : "", cfg->metrics.addr,
				strchr(cfg->metrics.addr, ':') ? "]" : "", cfg->metrics.port,
				strerror(err));
			if (stagep)
				*stagep = SERVER_STAGE_LISTEN;
			goto fail;
		}
	}
	if (cfg->control_socket) {
		err = control_alloc(&srv->control, base, cfg->control_socket, srv->loc, srv->dir);
		if (err) {
			log_err("control: cannot listen on %s: %s%s", cfg->control_socket,
				strerror(err),
				err == EADDRINUSE ? " (another sipregd answers there)" : "");
			if (stagep)
				*stagep = SERVER_STAGE_LISTEN;
			goto fail;
		}
		control_set_ops(srv->control, srv->debug, server_stats, srv);
		err = server_control_group(srv);
		if (err)
			goto fail;
	}
	*sp = srv;
	return 0;
fail:
	server_free(&srv);
	return err;
}

void server_free(struct server **sp)
{
	struct server *srv = *sp;

	if (!srv)
		return;
	/* Transactions and control requests first: their owners cancel backend operations
	 * before the backends go away, and no response is sent on a closed transport. */
	control_free(&srv->control);
	qualify_free(&srv->qualify);
	metrics_free(&srv->metrics);
	location_op_cancel(&srv->probe_op);
	if (srv->probe_ev)
		event_free(srv->probe_ev);
	if (srv->drain_ev)
		event_free(srv->drain_ev);
	tsx_table_free(&srv->tsx);
	net_free(&srv->net);
	debug_free(&srv->debug);
	if (srv->dir == srv->loc)
		srv->dir = NULL;
	location_close(&srv->loc);
	location_close(&srv->dir);
	sipresp_tag_key_free(&srv->tag_key);
	auth_free(&srv->auth);
	while (srv->n_spare)
		free(srv->spare[--srv->n_spare]);
	free(srv);
	*sp = NULL;
}
