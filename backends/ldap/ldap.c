/* The LDAP backend: users read from a tree others provision (H.350.4 and sipreg's schema),
 * bindings kept as entries of the same tree so several sipregd share them, over libldap
 * driven asynchronously by the caller's libevent loop.
 *
 * DESIGN: the moving parts, all on one loop, nothing blocks on the request path.
 * - Connections: `pool` request connections plus one for the directory sync. Each is
 *   ldap_initialize() with LDAP_OPT_CONNECT_ASYNC and an asynchronous bind (simple, or SASL
 *   EXTERNAL over ldapi:// without bind_dn); while the TCP connect is in progress libldap
 *   answers LDAP_X_CONNECTING and the bind is retried when the descriptor (LDAP_OPT_DESC)
 *   turns writable. Then the descriptor is read in an event and every message is taken with
 *   ldap_result() and a zero timeout. A broken connection fails what it carried with
 *   EAGAIN and reconnects after a backoff (100 ms doubling to 5 s, with getrandom jitter),
 *   to the next URI of the list each time (failover).
 * - Operations: each call copies its request into a struct lb_op with one timer, the op's
 *   deadline (timeout_ms). An op has at most one LDAP request in flight, so a multi-step op
 *   (apply) is a small state machine advanced by its responses. Callbacks only ever run from
 *   an event: a response, the timer, or the timer activated at once for an answer known in
 *   the call (a cache hit, a refusal).
 * - Directory: the users under users_base matching filter are mirrored in memory (one
 *   record per user, indexed by user name and by alias). The sync connection keeps the
 *   mirror current with RFC 4533 refreshAndPersist against syncprov; where the server
 *   refuses the sync control, the tree is re-read every refresh_s instead. Each refresh
 *   starts a generation and drops what it did not see, so deletes missed while the
 *   connection was down go too. find_user waits for the first complete load and then
 *   never touches the network.
 * - Bindings: one sipregAorEntry per AOR under bindings_base (its RDN the AOR, escaped per
 *   RFC 4514) holding sipregVersion/sipregCommitted, and one sipregBinding below it per
 *   contact (RDN: hex SHA-256 of the contact key, so no client bytes). An apply reads the
 *   AOR's subtree, decides RFC 3261 §10.3 step 7, claims the AOR by raising sipregVersion
 *   under the RFC 4528 assertion control (sipregVersion=v, sipregCommitted=v), writes the
 *   binding entries, and commits (sipregCommitted = new version, asserted). A claim that
 *   fails, or an AOR claimed by someone else less than timeout_ms ago, is retried from the
 *   read, so two instances never interleave their writes for one AOR and CSeq order holds. */
#include <errno.h>
#include <event2/event.h>
#include <lber.h>
#include <ldap.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>

#include "ldap_conf.h"
#include "sipreg/clock.h"
#include "sipreg/hmap.h"
#include "sipreg/log.h"
#include "sipreg/location_backend.h"

#define LB_BACKOFF_MIN_MS 100u
#define LB_BACKOFF_MAX_MS 5000u
#define LB_QUEUE_MAX	  4096u /* ops waiting for a connection */
#define LB_NUM_MAX	  24	/* digits of an int64 and a sign */

struct lb_be;

enum lb_state { LC_DOWN, LC_CONNECTING, LC_BINDING, LC_UP };

struct lb_conn {
	struct lb_be *be;
	LDAP *ld;
	enum lb_state state;
	bool is_sync;
	int fd;
	int msgid; /* the bind, or (sync) the sync search */
	struct event *rev, *wev, *tmo; /* readable, writable while connecting, timer */
	size_t uri_idx;
	uint32_t backoff_ms;
	bool broken; /* failure noticed inside a call: handled from the timer */
	size_t n_ops; /* ops holding this connection */
};

enum lb_kind { LB_APPLY, LB_FETCH, LB_ITERATE, LB_FIND, LB_PUT, LB_DEL, LB_USER_ITER, LB_UNBIND };

enum lb_step {
	ST_IDLE,
	ST_READ,     /* apply: the AOR's subtree; fetch/iterate/unbind: the bindings */
	ST_CLAIM,    /* apply: raise sipregVersion under assertion (or add the AOR entry) */
	ST_WRITE,    /* apply: one binding entry; unbind: one delete */
	ST_COMMIT,   /* apply: sipregCommitted = the claimed version */
	ST_LOOKUP,   /* put/del: the user's entry */
	ST_PUT,	     /* put: add or modify; del: delete */
	ST_READBACK, /* put: read the entry back into the mirror */
};

/* A binding owned by an op (strings malloc'd). */
struct lb_stored {
	struct binding b;
	char *dn;
	bool live, drop, keep;
};

/* One write of an apply. */
enum lb_wkind { W_ADD, W_MODIFY, W_DELETE };
struct lb_write {
	enum lb_wkind kind;
	size_t change; /* W_ADD/W_MODIFY: index into changes */
	char *dn;
};

struct lb_op {
	struct lb_op *prev, *next; /* every op of the backend */
	struct lb_op *qnext;	   /* waiting for a connection or for the mirror */
	bool queued, dir_waiting;
	struct lb_be *be;
	enum lb_kind kind;
	union location_cb cb;
	void *arg;
	struct event *ev; /* deadline, retry and deferred completion */
	int64_t deadline_ns;
	bool finishing, retry;
	int fin_err;
	struct lb_conn *conn;
	int msgid;
	enum lb_step step;
	int64_t now;

	/* request copies */
	struct sip_str aor, s1, s2; /* aor; user/domain or contact key */
	char *aor_dn;
	struct reg_request req; /* apply: strings owned below */
	struct reg_change *changes;
	bool *superseded;

	/* apply state */
	struct lb_stored *stored;
	size_t n_stored, cap_stored;
	bool aor_exists;
	int64_t version, committed, claimed_at;
	struct lb_write *writes;
	size_t n_writes, next_write;
	enum reg_outcome outcome;
	unsigned attempts;

	/* put/del */
	struct dir_user user;
	struct sip_str *aliases;
	enum dir_put mode;
	char *dn;
	bool has_sipreg_class;
	size_t found;
};

/* ---- the mirror of the directory ------------------------------------------------- */

struct lb_alias {
	struct hmap_node node;
	struct lb_user *owner;
	struct sip_str s;
};

struct lb_user {
	struct hmap_node by_name, by_uuid;
	struct sip_str uuid, name, password;
	char ha1_md5[65], ha1_sha256[65];
	bool enabled, auth_off;
	uint32_t max_contacts;
	char **domains; /* lower case; none: every domain */
	size_t n_domains;
	struct lb_alias *aliases;
	struct sip_str *alias_strs;
	size_t n_aliases;
	uint64_t gen;
};

struct lb_be {
	const struct ldap_conf *conf;
	struct event_base *base;
	char *instance_id;
	struct lb_conn *conns; /* pool request connections, then the sync one */
	size_t n_conns, rr;
	struct lb_op *ops;		/* every live op */
	struct lb_op *qhead, *qtail;	/* waiting for a connection */
	size_t n_queued;
	struct lb_op *dir_wait;		/* find/user_iter waiting for the first load */
	struct hmap users, uuids, aliases;
	uint64_t gen;
	bool dir_ready, sync_refused, refreshing;
	bool closing;
	bool *alive; /* set while a callback may close the backend */
	struct log_limit ll_conn;
};

static const struct sip_str empty_str = {.p = "", .len = 0};

/* ---- small helpers ---------------------------------------------------------------- */

static uint32_t jitter(uint32_t max)
{
	uint32_t r = 0;

	if (max == 0 || getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		return max / 2;
	return r % max;
}

static int str_dup(struct sip_str *dst, const void *p, size_t len)
{
	char *c = malloc(len + 1);

	if (!c)
		return ENOMEM;
	if (len)
		memcpy(c, p, len);
	c[len] = '\0';
	dst->p = c;
	dst->len = len;
	return 0;
}

static void str_free(struct sip_str *s)
{
	free((char *)s->p);
	s->p = NULL;
	s->len = 0;
}

static bool utf8_valid(const char *p, size_t len)
{
	const unsigned char *s = (const unsigned char *)p;

	for (size_t i = 0; i < len;) {
		unsigned char c = s[i];
		size_t n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2
						   : (c & 0xf8) == 0xf0 ? 3 : 9;
		uint32_t cp = n == 0 ? c : n == 1 ? c & 0x1fu : n == 2 ? c & 0x0fu : c & 0x07u;

		if (c == 0 || n == 9 || i + n >= len + (n ? 0 : 1))
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3fu);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

/* An RFC 4514 attribute value for a DN: the special characters, a leading space or '#', a
 * trailing space and every control byte become \XX. Client bytes must be valid UTF-8
 * without NUL (LDAP strings are UTF-8); anything else is EINVAL. *outp is malloc'd. */
static int dn_escape(const struct sip_str *v, char **outp)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out, *o;

	*outp = NULL;
	if (v->len == 0 || !utf8_valid(v->p, v->len))
		return EINVAL;
	out = malloc(v->len * 3 + 1);
	if (!out)
		return ENOMEM;
	o = out;
	for (size_t i = 0; i < v->len; i++) {
		unsigned char c = (unsigned char)v->p[i];

		if (strchr("\"+,;<>\\=", c) || c < 0x20 || c == 0x7f ||
		    (i == 0 && (c == ' ' || c == '#')) || (i + 1 == v->len && c == ' ')) {
			*o++ = '\\';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		} else {
			*o++ = (char)c;
		}
	}
	*o = '\0';
	*outp = out;
	return 0;
}

/* An RFC 4515 assertion value (NUL, '*', '(', ')', '\' as \XX): malloc'd. */
static int filter_escape(const struct sip_str *v, char **outp)
{
	struct berval in = {.bv_len = v->len, .bv_val = (char *)(v->p ? v->p : "")}, out = {0};
	char *copy;

	*outp = NULL;
	if (ldap_bv2escaped_filter_value(&in, &out) != 0)
		return ENOMEM;
	copy = strdup(out.bv_val ? out.bv_val : "");
	ber_memfree(out.bv_val);
	if (!copy)
		return ENOMEM;
	*outp = copy;
	return 0;
}

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : s;
}

static int64_t bv_int(const struct berval *bv, int64_t dflt)
{
	char buf[LB_NUM_MAX + 1];
	char *end;
	long long v;

	if (!bv || bv->bv_len == 0 || bv->bv_len > LB_NUM_MAX)
		return dflt;
	memcpy(buf, bv->bv_val, bv->bv_len);
	buf[bv->bv_len] = '\0';
	v = strtoll(buf, &end, 10);
	return *end ? dflt : (int64_t)v;
}

/* The first value of attr in entry e, or NULL; *vals_r to free with ldap_value_free_len. */
static struct berval *first_value(LDAP *ld, LDAPMessage *e, const char *attr,
				  struct berval ***vals_r)
{
	*vals_r = attr ? ldap_get_values_len(ld, e, attr) : NULL;
	return *vals_r && (*vals_r)[0] ? (*vals_r)[0] : NULL;
}

/* ---- op lifecycle ------------------------------------------------------------------ */

static void op_timer(evutil_socket_t fd, short what, void *arg);
static int op_dispatch(struct lb_op *op);
static void conn_fail(struct lb_conn *c, const char *why);

static void stored_free(struct lb_op *op)
{
	for (size_t i = 0; i < op->n_stored; i++) {
		struct binding *b = &op->stored[i].b;

		str_free(&b->aor);
		str_free(&b->contact);
		str_free(&b->key);
		str_free(&b->call_id);
		str_free(&b->path);
		str_free(&b->instance);
		str_free(&b->user_agent);
		str_free(&b->registered_by);
		free(op->stored[i].dn);
	}
	free(op->stored);
	op->stored = NULL;
	op->n_stored = op->cap_stored = 0;
}

static void writes_free(struct lb_op *op)
{
	for (size_t i = 0; i < op->n_writes; i++)
		free(op->writes[i].dn);
	free(op->writes);
	op->writes = NULL;
	op->n_writes = op->next_write = 0;
}

static void op_free(struct lb_op *op)
{
	if (op->ev)
		event_free(op->ev);
	str_free(&op->aor);
	str_free(&op->s1);
	str_free(&op->s2);
	free(op->aor_dn);
	str_free(&op->req.call_id);
	str_free(&op->req.path);
	str_free(&op->req.user_agent);
	str_free(&op->req.instance_id);
	for (size_t i = 0; op->changes && i < op->req.n_changes; i++) {
		str_free(&op->changes[i].contact);
		str_free(&op->changes[i].key);
		str_free(&op->changes[i].instance);
	}
	free(op->changes);
	free(op->superseded);
	stored_free(op);
	writes_free(op);
	str_free(&op->user.username);
	str_free(&op->user.domain);
	str_free(&op->user.ha1_md5);
	str_free(&op->user.ha1_sha256);
	str_free(&op->user.password);
	for (size_t i = 0; op->aliases && i < op->user.n_aliases; i++)
		str_free(&op->aliases[i]);
	free(op->aliases);
	free(op->dn);
	free(op);
}

static struct lb_op *op_new(struct lb_be *be, enum lb_kind kind, void *arg)
{
	struct lb_op *op = calloc(1, sizeof(*op));
	struct timeval tv;

	if (!op)
		return NULL;
	op->be = be;
	op->kind = kind;
	op->arg = arg;
	op->msgid = -1;
	op->ev = evtimer_new(be->base, op_timer, op);
	if (!op->ev) {
		free(op);
		return NULL;
	}
	op->deadline_ns = clock_mono_ns() + (int64_t)be->conf->timeout_ms * CLOCK_NS_PER_MS;
	tv.tv_sec = be->conf->timeout_ms / 1000;
	tv.tv_usec = (be->conf->timeout_ms % 1000) * 1000;
	evtimer_add(op->ev, &tv);
	op->next = be->ops;
	if (be->ops)
		be->ops->prev = op;
	be->ops = op;
	return op;
}

static void op_unlink(struct lb_op *op)
{
	struct lb_be *be = op->be;

	if (op->prev)
		op->prev->next = op->next;
	else if (be->ops == op)
		be->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	op->prev = op->next = NULL;
	if (op->queued) {
		struct lb_op **pp = &be->qhead, *last = NULL;

		while (*pp && *pp != op) {
			last = *pp;
			pp = &(*pp)->qnext;
		}
		if (*pp)
			*pp = op->qnext;
		if (be->qtail == op)
			be->qtail = last;
		be->n_queued--;
		op->queued = false;
	}
	if (op->dir_waiting) {
		struct lb_op **pp = &be->dir_wait;

		while (*pp && *pp != op)
			pp = &(*pp)->qnext;
		if (*pp)
			*pp = op->qnext;
		op->dir_waiting = false;
	}
}

static struct binding_set set_of(struct lb_op *op, struct binding *scratch, size_t n)
{
	(void)op;
	return (struct binding_set){.v = n ? scratch : NULL, .n = n};
}

static void queue_run(struct lb_be *be);

/* op no longer holds its connection. */
static void op_release(struct lb_op *op)
{
	if (op->conn && op->conn->n_ops)
		op->conn->n_ops--;
	op->conn = NULL;
}

/* Finish op: take it off every list, answer the caller with err (and what op holds), free
 * it. Returns false when the callback closed the backend. */
static bool op_complete(struct lb_op *op, int err, const struct binding_set *set,
			const struct dir_user *u)
{
	struct lb_be *be = op->be;
	struct binding_set none = {0};
	bool alive = true;

	if (op->msgid >= 0 && op->conn && op->conn->ld)
		ldap_abandon_ext(op->conn->ld, op->msgid, NULL, NULL);
	op->msgid = -1;
	op_release(op);
	op_unlink(op);
	if (!be->closing && be->qhead)
		queue_run(be); /* a serial connection is free again */
	be->alive = &alive;
	switch (op->kind) {
	case LB_APPLY:
		op->cb.apply(err, err ? REG_OK : op->outcome, set ? set : &none, op->arg);
		break;
	case LB_FETCH:
		op->cb.fetch(err, set ? set : &none, op->arg);
		break;
	case LB_ITERATE:
		op->cb.iterate(err, NULL, op->arg);
		break;
	case LB_FIND:
		op->cb.find_user(err, err ? NULL : u, op->arg);
		break;
	case LB_USER_ITER:
		op->cb.user_iter(err, NULL, op->arg);
		break;
	case LB_PUT:
	case LB_DEL:
	case LB_UNBIND:
		op->cb.done(err, op->arg);
		break;
	}
	op_free(op);
	if (!alive)
		return false;
	be->alive = NULL;
	return true;
}

/* Complete op from its timer: never inside the call that started it. */
static void op_defer(struct lb_op *op, int err)
{
	struct timeval zero = {0, 0};

	op->finishing = true;
	op->fin_err = err;
	evtimer_add(op->ev, &zero);
}

/* ---- connections -------------------------------------------------------------------- */

static void conn_read(evutil_socket_t fd, short what, void *arg);
static void conn_writable(evutil_socket_t fd, short what, void *arg);
static void conn_timer(evutil_socket_t fd, short what, void *arg);
static void sync_start(struct lb_conn *c);

static void conn_arm(struct lb_conn *c, uint32_t ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	evtimer_add(c->tmo, &tv);
}

static void conn_teardown(struct lb_conn *c)
{
	if (c->rev)
		event_free(c->rev);
	if (c->wev)
		event_free(c->wev);
	c->rev = c->wev = NULL;
	if (c->ld)
		ldap_unbind_ext(c->ld, NULL, NULL);
	c->ld = NULL;
	c->fd = -1;
	c->msgid = -1;
	c->state = LC_DOWN;
}

/* Send the bind (retried while libldap is still connecting). */
static void conn_bind(struct lb_conn *c)
{
	const struct ldap_conf *conf = c->be->conf;
	struct berval cred = {0};
	const char *mech = LDAP_SASL_SIMPLE;
	int rc, fd = -1;

	if (conf->bind_password) {
		cred.bv_val = conf->bind_password;
		cred.bv_len = strlen(conf->bind_password);
	}
	if (!conf->bind_dn && strncmp(conf->uris[c->uri_idx], "ldapi://", 8) == 0)
		mech = "EXTERNAL";
	rc = ldap_sasl_bind(c->ld, conf->bind_dn, mech, mech == LDAP_SASL_SIMPLE ? &cred : NULL,
			    NULL, NULL, &c->msgid);
	if (ldap_get_option(c->ld, LDAP_OPT_DESC, &fd) != LDAP_OPT_SUCCESS)
		fd = -1;
	if (rc == LDAP_X_CONNECTING && fd >= 0) {
		if (!c->wev)
			c->wev = event_new(c->be->base, fd, EV_WRITE, conn_writable, c);
		if (c->wev && event_add(c->wev, NULL) == 0)
			return;
		conn_fail(c, "out of memory");
		return;
	}
	if (rc != LDAP_SUCCESS || fd < 0) {
		conn_fail(c, ldap_err2string(rc));
		return;
	}
	c->fd = fd;
	c->state = LC_BINDING;
	c->rev = event_new(c->be->base, fd, EV_READ | EV_PERSIST, conn_read, c);
	if (!c->rev || event_add(c->rev, NULL) != 0)
		conn_fail(c, "out of memory");
}

static void conn_start(struct lb_conn *c)
{
	const struct ldap_conf *conf = c->be->conf;
	struct timeval tv = {.tv_sec = conf->timeout_ms / 1000,
			     .tv_usec = (conf->timeout_ms % 1000) * 1000};
	int v3 = LDAP_VERSION3, rc;

	c->uri_idx %= conf->n_uris;
	rc = ldap_initialize(&c->ld, conf->uris[c->uri_idx]);
	if (rc != LDAP_SUCCESS) {
		conn_fail(c, ldap_err2string(rc));
		return;
	}
	ldap_set_option(c->ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
	ldap_set_option(c->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	ldap_set_option(c->ld, LDAP_OPT_CONNECT_ASYNC, LDAP_OPT_ON);
	ldap_set_option(c->ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
	if (conf->ca_file) {
		int zero = 0;

		ldap_set_option(c->ld, LDAP_OPT_X_TLS_CACERTFILE, conf->ca_file);
		ldap_set_option(c->ld, LDAP_OPT_X_TLS_NEWCTX, &zero);
	}
	c->state = LC_CONNECTING;
	conn_arm(c, conf->timeout_ms);
	if (conf->starttls && strncmp(conf->uris[c->uri_idx], "ldap://", 7) == 0) {
		/* The handshake of ldap_start_tls_s is bounded by the network timeout; it runs
		 * at connect time only, never on a request's path. */
		rc = ldap_start_tls_s(c->ld, NULL, NULL);
		if (rc != LDAP_SUCCESS) {
			conn_fail(c, ldap_err2string(rc));
			return;
		}
	}
	conn_bind(c);
}

static void conn_writable(evutil_socket_t fd, short what, void *arg)
{
	struct lb_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->state == LC_CONNECTING)
		conn_bind(c);
}

/* Ops waiting for a connection go out on whichever is up. */
static void queue_run(struct lb_be *be)
{
	while (be->qhead) {
		struct lb_op *op = be->qhead;
		int err;

		be->qhead = op->qnext;
		if (!be->qhead)
			be->qtail = NULL;
		be->n_queued--;
		op->queued = false;
		err = op_dispatch(op);
		if (err)
			op_defer(op, err);
		else if (op->queued) {
			/* No connection free: back to the head, where it was, in order. */
			struct lb_op *prev = be->qhead;

			if (prev != op) {
				while (prev->qnext != op)
					prev = prev->qnext;
				prev->qnext = NULL;
				be->qtail = prev;
				op->qnext = be->qhead;
				be->qhead = op;
			}
			return;
		}
	}
}

/* Fail every op carried by c with EAGAIN and reconnect after a backoff. */
static void conn_fail(struct lb_conn *c, const char *why)
{
	struct lb_be *be = c->be;
	struct lb_op *op, *next;

	log_limited(&be->ll_conn, LOG_WARN, "ldap: %s: %s", be->conf->uris[c->uri_idx],
		    why);
	conn_teardown(c);
	c->uri_idx = (c->uri_idx + 1) % be->conf->n_uris;
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : LB_BACKOFF_MIN_MS;
	if (c->backoff_ms > LB_BACKOFF_MAX_MS)
		c->backoff_ms = LB_BACKOFF_MAX_MS;
	conn_arm(c, c->backoff_ms / 2 + jitter(c->backoff_ms / 2 + 1));
	if (c->is_sync)
		be->refreshing = false;
	for (op = be->ops; op; op = next) {
		next = op->next;
		if (op->conn == c && !op->finishing) {
			op_release(op);
			op->msgid = -1;
			op_defer(op, EAGAIN);
		}
	}
}

static void conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct lb_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->broken) {
		c->broken = false;
		conn_fail(c, "connection lost");
	} else if (c->state == LC_DOWN) {
		conn_start(c);
	} else if (c->state == LC_CONNECTING || c->state == LC_BINDING) {
		conn_fail(c, "connect timed out");
	} else if (c->is_sync && !c->be->refreshing) {
		sync_start(c); /* the next re-read where the server has no syncprov */
	}
}

static void conn_up(struct lb_conn *c, LDAPMessage *msg)
{
	int rc = LDAP_OTHER;

	if (ldap_parse_result(c->ld, msg, &rc, NULL, NULL, NULL, NULL, 0) != LDAP_SUCCESS ||
	    rc != LDAP_SUCCESS) {
		conn_fail(c, rc == LDAP_OTHER ? "bind failed" : ldap_err2string(rc));
		return;
	}
	evtimer_del(c->tmo);
	c->state = LC_UP;
	c->backoff_ms = 0;
	c->msgid = -1;
	if (c->is_sync)
		sync_start(c);
	else
		queue_run(c->be);
}

static struct lb_conn *conn_pick(struct lb_be *be)
{
	size_t pool = be->n_conns - 1;

	for (size_t i = 0; i < pool; i++) {
		struct lb_conn *c = &be->conns[(be->rr + i) % pool];

		/* pool: 1 is serial: one op at a time, answered in the order they came. */
		if (c->state == LC_UP && !c->broken && (pool > 1 || c->n_ops == 0)) {
			be->rr = (be->rr + i + 1) % pool;
			return c;
		}
	}
	return NULL;
}

/* Serial mode: some connection is up, only busy. */
static bool conn_pick_busy(const struct lb_be *be)
{
	for (size_t i = 0; i + 1 < be->n_conns; i++) {
		if (be->conns[i].state == LC_UP && !be->conns[i].broken)
			return true;
	}
	return false;
}

static bool conn_any_connecting(const struct lb_be *be)
{
	for (size_t i = 0; i + 1 < be->n_conns; i++) {
		const struct lb_conn *c = &be->conns[i];

		/* DOWN with no backoff yet: opened, its first connect is about to start. */
		if (c->state == LC_CONNECTING || c->state == LC_BINDING ||
		    (c->state == LC_DOWN && c->backoff_ms == 0))
			return true;
	}
	return false;
}

/* A request could not be sent: c is broken. Handled from its timer, since the caller may
 * be inside a location_* call. */
static void conn_broken(struct lb_conn *c)
{
	struct timeval zero = {0, 0};

	c->broken = true;
	evtimer_add(c->tmo, &zero);
}

/* ---- the directory mirror ------------------------------------------------------------- */

static void user_unindex_free(struct lb_be *be, struct lb_user *u)
{
	hmap_remove(&be->users, &u->by_name);
	hmap_remove(&be->uuids, &u->by_uuid);
	for (size_t i = 0; i < u->n_aliases; i++) {
		hmap_remove(&be->aliases, &u->aliases[i].node);
		str_free(&u->aliases[i].s);
	}
	free(u->aliases);
	free(u->alias_strs);
	for (size_t i = 0; i < u->n_domains; i++)
		free(u->domains[i]);
	free(u->domains);
	str_free(&u->uuid);
	str_free(&u->name);
	if (u->password.p)
		memset((char *)u->password.p, 0, u->password.len);
	str_free(&u->password);
	memset(u->ha1_md5, 0, sizeof(u->ha1_md5));
	memset(u->ha1_sha256, 0, sizeof(u->ha1_sha256));
	free(u);
}

static struct lb_user *user_by_uuid(struct lb_be *be, const struct sip_str *uuid)
{
	uint64_t h = hmap_hash(uuid->p, uuid->len);

	for (struct hmap_node *n = hmap_first(&be->uuids, h); n; n = hmap_next(n, h)) {
		struct lb_user *u = hmap_entry(n, struct lb_user, by_uuid);

		if (sip_str_eq(&u->uuid, uuid))
			return u;
	}
	return NULL;
}

/* A hex HA1 of want digits, "{md5}"-style prefixes (Asterisk trees) dropped. */
static void ha1_take(char *dst, const struct berval *bv, size_t want)
{
	const char *p = bv ? bv->bv_val : NULL;
	size_t len = bv ? bv->bv_len : 0;

	dst[0] = '\0';
	if (p && len > 0 && p[0] == '{') {
		const char *end = memchr(p, '}', len);

		if (!end)
			return;
		len -= (size_t)(end + 1 - p);
		p = end + 1;
	}
	if (!p || len != want)
		return;
	for (size_t i = 0; i < len; i++) {
		char c = p[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return;
		dst[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
	}
	dst[len] = '\0';
}

static bool bv_true(const struct berval *bv, bool dflt)
{
	if (!bv)
		return dflt;
	return bv->bv_len == 4 && strncasecmp(bv->bv_val, "TRUE", 4) == 0;
}

/* The domain of a SIP URI value "sip:user@domain;params", lower case, or NULL. */
static char *uri_domain(const struct berval *bv)
{
	const char *p = bv->bv_val, *end = p + bv->bv_len, *at, *d;
	char *out;
	size_t n;

	at = memchr(p, '@', bv->bv_len);
	d = at ? at + 1 : (bv->bv_len > 4 && strncasecmp(p, "sip:", 4) == 0 ? p + 4 : NULL);
	if (!d)
		return NULL;
	for (n = 0; d + n < end && !strchr(";>?: ", d[n]); n++)
		;
	if (n == 0)
		return NULL;
	out = malloc(n + 1);
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)((d[i] >= 'A' && d[i] <= 'Z') ? d[i] - 'A' + 'a' : d[i]);
	out[n] = '\0';
	return out;
}

/* Insert or replace the mirror's record of entry e (uuid: its entryUUID bytes). */
static int mirror_put(struct lb_be *be, LDAP *ld, LDAPMessage *e, const struct sip_str *uuid)
{
	const struct ldap_attr_map *m = &be->conf->attrs;
	struct berval **vals = NULL, *v;
	struct lb_user *u, *old;
	int err = ENOMEM;

	v = first_value(ld, e, m->user, &vals);
	if (!v || v->bv_len == 0) {
		ldap_value_free_len(vals);
		/* No user name: not a user for us (and no longer one if it was). */
		old = user_by_uuid(be, uuid);
		if (old)
			user_unindex_free(be, old);
		return 0;
	}
	u = calloc(1, sizeof(*u));
	if (!u || str_dup(&u->name, v->bv_val, v->bv_len) || str_dup(&u->uuid, uuid->p, uuid->len))
		goto fail;
	ldap_value_free_len(vals);
	vals = NULL;
	v = first_value(ld, e, m->password, &vals);
	if (v && str_dup(&u->password, v->bv_val, v->bv_len))
		goto fail;
	ldap_value_free_len(vals);
	ha1_take(u->ha1_md5, first_value(ld, e, m->ha1_md5, &vals), 32);
	ldap_value_free_len(vals);
	ha1_take(u->ha1_sha256, first_value(ld, e, m->ha1_sha256, &vals), 64);
	ldap_value_free_len(vals);
	u->enabled = bv_true(first_value(ld, e, m->enabled, &vals), true);
	ldap_value_free_len(vals);
	u->auth_off = bv_true(first_value(ld, e, m->auth_off, &vals), false);
	ldap_value_free_len(vals);
	v = first_value(ld, e, m->max_contacts, &vals);
	{
		int64_t mc = bv_int(v, 0);

		u->max_contacts = mc > 0 && mc <= UINT32_MAX ? (uint32_t)mc : 0;
	}
	ldap_value_free_len(vals);
	vals = m->uri ? ldap_get_values_len(ld, e, m->uri) : NULL;
	for (size_t i = 0; vals && vals[i]; i++) {
		char *d = uri_domain(vals[i]), **nd;

		if (!d)
			continue;
		nd = realloc(u->domains, (u->n_domains + 1) * sizeof(*nd));
		if (!nd) {
			free(d);
			goto fail;
		}
		u->domains = nd;
		u->domains[u->n_domains++] = d;
	}
	ldap_value_free_len(vals);
	vals = m->alias ? ldap_get_values_len(ld, e, m->alias) : NULL;
	{
		size_t n = vals ? (size_t)ldap_count_values_len(vals) : 0;

		if (n) {
			u->aliases = calloc(n, sizeof(*u->aliases));
			u->alias_strs = calloc(n, sizeof(*u->alias_strs));
			if (!u->aliases || !u->alias_strs)
				goto fail;
		}
		for (size_t i = 0; i < n; i++) {
			if (str_dup(&u->aliases[i].s, vals[i]->bv_val, vals[i]->bv_len))
				goto fail;
			u->aliases[i].owner = u;
			u->alias_strs[i] = u->aliases[i].s;
			u->n_aliases = i + 1;
		}
	}
	ldap_value_free_len(vals);
	vals = NULL;
	old = user_by_uuid(be, uuid);
	if (old)
		user_unindex_free(be, old);
	u->gen = be->gen;
	hmap_insert(&be->users, &u->by_name, hmap_hash(u->name.p, u->name.len));
	hmap_insert(&be->uuids, &u->by_uuid, hmap_hash(u->uuid.p, u->uuid.len));
	for (size_t i = 0; i < u->n_aliases; i++)
		hmap_insert(&be->aliases, &u->aliases[i].node,
			    hmap_hash(u->aliases[i].s.p, u->aliases[i].s.len));
	return 0;
fail:
	ldap_value_free_len(vals);
	if (u) {
		for (size_t i = 0; i < u->n_aliases; i++)
			str_free(&u->aliases[i].s);
		free(u->aliases);
		free(u->alias_strs);
		for (size_t i = 0; i < u->n_domains; i++)
			free(u->domains[i]);
		free(u->domains);
		str_free(&u->name);
		str_free(&u->uuid);
		str_free(&u->password);
		free(u);
	}
	return err;
}

static void mirror_del(struct lb_be *be, const struct sip_str *uuid)
{
	struct lb_user *u = user_by_uuid(be, uuid);

	if (u)
		user_unindex_free(be, u);
}

/* The 16 bytes of a textual entryUUID (8-4-4-4-12 hex), as the sync control carries it. */
static bool uuid_parse(const struct berval *bv, unsigned char out[16])
{
	size_t k = 0;

	for (size_t i = 0; bv && i < bv->bv_len && k < 32; i++) {
		char c = bv->bv_val[i];
		int d = c >= '0' && c <= '9' ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

		if (c == '-')
			continue;
		if (d < 0)
			return false;
		if (k % 2 == 0)
			out[k / 2] = (unsigned char)(d << 4);
		else
			out[k / 2] |= (unsigned char)d;
		k++;
	}
	return k == 32;
}

/* Put an entry read with its entryUUID attribute (a re-read, a read-back). */
static int mirror_put_plain(struct lb_be *be, LDAP *ld, LDAPMessage *e)
{
	struct berval **vals = ldap_get_values_len(ld, e, "entryUUID");
	unsigned char raw[16];
	struct sip_str uuid = {.p = (const char *)raw, .len = sizeof(raw)};
	int err = 0;

	if (vals && vals[0] && uuid_parse(vals[0], raw))
		err = mirror_put(be, ld, e, &uuid);
	ldap_value_free_len(vals);
	return err;
}

static bool user_in_domain(const struct lb_user *u, const struct sip_str *domain)
{
	if (u->n_domains == 0)
		return true;
	for (size_t i = 0; i < u->n_domains; i++) {
		if (strlen(u->domains[i]) == domain->len &&
		    strncasecmp(u->domains[i], domain->p, domain->len) == 0)
			return true;
	}
	return false;
}

/* The user named user (bytes, exact) in domain, else the owner of alias user@domain. */
static const struct lb_user *mirror_find(struct lb_be *be, const struct sip_str *user,
					 const struct sip_str *domain, bool *by_alias)
{
	uint64_t h = hmap_hash(user->p, user->len);
	const struct lb_user *any = NULL;
	char buf[512];

	*by_alias = false;
	for (struct hmap_node *n = hmap_first(&be->users, h); n; n = hmap_next(n, h)) {
		const struct lb_user *u = hmap_entry(n, struct lb_user, by_name);

		if (!sip_str_eq(&u->name, user) || !user_in_domain(u, domain))
			continue;
		if (u->n_domains)
			return u; /* provisioned for this domain: before an every-domain one */
		any = u;
	}
	if (any || user->len + domain->len + 1 > sizeof(buf))
		return any;
	memcpy(buf, user->p, user->len);
	buf[user->len] = '@';
	memcpy(buf + user->len + 1, domain->p, domain->len);
	h = hmap_hash(buf, user->len + 1 + domain->len);
	for (struct hmap_node *n = hmap_first(&be->aliases, h); n; n = hmap_next(n, h)) {
		const struct lb_alias *a = hmap_entry(n, struct lb_alias, node);

		if (a->s.len == user->len + 1 + domain->len &&
		    memcmp(a->s.p, buf, a->s.len) == 0) {
			*by_alias = true;
			return a->owner;
		}
	}
	return NULL;
}

static void dir_user_of(const struct lb_user *u, const struct sip_str *domain,
			struct dir_user *d)
{
	memset(d, 0, sizeof(*d));
	d->username = u->name;
	d->domain = *domain;
	d->ha1_md5 = sip_str_c(u->ha1_md5);
	d->ha1_sha256 = sip_str_c(u->ha1_sha256);
	d->password = u->password;
	d->enabled = u->enabled;
	d->auth_off = u->auth_off;
	d->max_contacts = u->max_contacts;
	d->aliases = u->alias_strs;
	d->n_aliases = u->n_aliases;
}

/* Answer a find from the mirror (from the op's timer). */
static bool find_answer(struct lb_op *op)
{
	struct lb_be *be = op->be;
	const struct lb_user *u;
	struct dir_user d;
	bool by_alias;

	/* LDAP strings are UTF-8 without NUL: no such user can exist, and nothing is asked. */
	if (!utf8_valid(op->s1.p, op->s1.len))
		return op_complete(op, 0, NULL, NULL);
	u = mirror_find(be, &op->s1, &op->s2, &by_alias);
	if (!u)
		return op_complete(op, 0, NULL, NULL);
	if (by_alias && u->n_domains) {
		struct sip_str dom = sip_str_c(u->domains[0]);

		dir_user_of(u, &dom, &d);
	} else {
		dir_user_of(u, &op->s2, &d);
	}
	return op_complete(op, 0, NULL, &d);
}

/* Answer a user listing from the mirror. */
static bool user_iter_answer(struct lb_op *op)
{
	struct lb_be *be = op->be;
	struct hmap_node *n, *tmp;
	bool alive = true;
	size_t i;

	be->alive = &alive;
	HMAP_FOREACH_SAFE(&be->users, n, tmp, i)
	{
		const struct lb_user *u = hmap_entry(n, struct lb_user, by_name);
		struct sip_str dom = u->n_domains ? sip_str_c(u->domains[0]) : empty_str;
		struct dir_user d;

		dir_user_of(u, &dom, &d);
		op->cb.user_iter(0, &d, op->arg);
		if (!alive)
			return false;
	}
	be->alive = NULL;
	return op_complete(op, 0, NULL, NULL);
}

/* The first complete load (or a reload): drop what the refresh did not see, answer the
 * finds that waited. */
static void mirror_refreshed(struct lb_be *be)
{
	struct hmap_node *n, *tmp;
	size_t i;

	HMAP_FOREACH_SAFE(&be->users, n, tmp, i)
	{
		struct lb_user *u = hmap_entry(n, struct lb_user, by_name);

		if (u->gen != be->gen)
			user_unindex_free(be, u);
	}
	be->dir_ready = true;
	while (be->dir_wait) {
		struct lb_op *op = be->dir_wait;

		be->dir_wait = op->qnext;
		op->dir_waiting = false;
		op_defer(op, 0);
	}
}

static const char **user_attrs(const struct lb_be *be, const char **a)
{
	const struct ldap_attr_map *m = &be->conf->attrs;
	size_t n = 0;

	a[n++] = m->user;
	if (m->password)
		a[n++] = m->password;
	if (m->uri)
		a[n++] = m->uri;
	if (m->ha1_md5)
		a[n++] = m->ha1_md5;
	if (m->ha1_sha256)
		a[n++] = m->ha1_sha256;
	if (m->enabled)
		a[n++] = m->enabled;
	if (m->auth_off)
		a[n++] = m->auth_off;
	if (m->max_contacts)
		a[n++] = m->max_contacts;
	if (m->alias)
		a[n++] = m->alias;
	a[n++] = "entryUUID";
	a[n++] = "objectClass";
	a[n] = NULL;
	return a;
}

/* Start a refresh of the mirror on the sync connection: refreshAndPersist, or a plain
 * re-read where the server refused the sync control. */
static void sync_start(struct lb_conn *c)
{
	struct lb_be *be = c->be;
	const char *attrs[16];
	LDAPControl ctrl, *ctrls[2] = {&ctrl, NULL};
	BerElement *ber = NULL;
	struct berval *val = NULL;
	bool persist = be->conf->sync && !be->sync_refused;
	int rc;

	be->gen++;
	if (persist) {
		ber = ber_alloc_t(LBER_USE_DER);
		if (!ber || ber_printf(ber, "{e}", (ber_int_t)LDAP_SYNC_REFRESH_AND_PERSIST) < 0 ||
		    ber_flatten(ber, &val) < 0) {
			ber_free(ber, 1);
			conn_fail(c, "out of memory");
			return;
		}
		ber_free(ber, 1);
		ctrl.ldctl_oid = LDAP_CONTROL_SYNC;
		ctrl.ldctl_value = *val;
		ctrl.ldctl_iscritical = 1;
	}
	rc = ldap_search_ext(c->ld, be->conf->users_base, LDAP_SCOPE_SUBTREE, be->conf->filter,
			     (char **)user_attrs(be, attrs), 0, persist ? ctrls : NULL, NULL, NULL,
			     0, &c->msgid);
	ber_bvfree(val);
	if (rc != LDAP_SUCCESS) {
		conn_fail(c, ldap_err2string(rc));
		return;
	}
	be->refreshing = true;
}

static void sync_entry(struct lb_conn *c, LDAPMessage *msg)
{
	struct lb_be *be = c->be;
	LDAPControl **ctrls = NULL, *st;
	int err = 0;

	if (ldap_get_entry_controls(c->ld, msg, &ctrls) == LDAP_SUCCESS &&
	    (st = ldap_control_find(LDAP_CONTROL_SYNC_STATE, ctrls, NULL)) != NULL) {
		BerElement *ber = ber_init(&st->ldctl_value);
		struct berval uuid = {0};
		ber_int_t state = -1;

		if (ber && ber_scanf(ber, "{em", &state, &uuid) != LBER_ERROR) {
			struct sip_str u = {.p = uuid.bv_val, .len = uuid.bv_len};

			if (state == LDAP_SYNC_DELETE)
				mirror_del(be, &u);
			else
				err = mirror_put(be, c->ld, msg, &u);
		}
		ber_free(ber, 1);
	} else {
		err = mirror_put_plain(be, c->ld, msg);
	}
	ldap_controls_free(ctrls);
	if (err)
		log_limited(&be->ll_conn, LOG_ERR, "ldap: out of memory mirroring a user");
}

/* syncInfo: the end of the refresh phase (refreshDelete/refreshPresent with refreshDone). */
static void sync_info(struct lb_conn *c, LDAPMessage *msg)
{
	struct berval *data = NULL;
	char *oid = NULL;
	BerElement *ber;
	ber_tag_t tag;
	ber_len_t len;

	if (ldap_parse_intermediate(c->ld, msg, &oid, &data, NULL, 0) != LDAP_SUCCESS || !oid ||
	    strcmp(oid, LDAP_SYNC_INFO) != 0 || !data)
		goto out;
	ber = ber_init(data);
	if (!ber)
		goto out;
	tag = ber_peek_tag(ber, &len);
	if (tag == LDAP_TAG_SYNC_REFRESH_DELETE || tag == LDAP_TAG_SYNC_REFRESH_PRESENT) {
		ber_int_t done = 1;

		ber_skip_tag(ber, &len);
		if (ber_peek_tag(ber, &len) == LDAP_TAG_SYNC_COOKIE) {
			struct berval cookie;

			ber_skip_element(ber, &cookie);
		}
		if (ber_peek_tag(ber, &len) == LBER_BOOLEAN)
			ber_scanf(ber, "b", &done);
		if (done)
			mirror_refreshed(c->be);
	}
	ber_free(ber, 1);
out:
	ldap_memfree(oid);
	ber_bvfree(data);
}

static void sync_result(struct lb_conn *c, LDAPMessage *msg)
{
	struct lb_be *be = c->be;
	int rc = LDAP_OTHER;

	ldap_parse_result(c->ld, msg, &rc, NULL, NULL, NULL, NULL, 0);
	c->msgid = -1;
	be->refreshing = false;
	if (be->conf->sync && !be->sync_refused &&
	    (rc == LDAP_UNAVAILABLE_CRITICAL_EXTENSION || rc == LDAP_PROTOCOL_ERROR ||
	     rc == LDAP_UNWILLING_TO_PERFORM)) {
		log_warn("ldap: the server refuses content synchronisation (%s): re-reading the "
			 "users every %u s",
			 ldap_err2string(rc), be->conf->refresh_s);
		be->sync_refused = true;
		sync_start(c);
		return;
	}
	if (rc != LDAP_SUCCESS) {
		conn_fail(c, ldap_err2string(rc));
		return;
	}
	mirror_refreshed(be);
	conn_arm(c, be->conf->refresh_s * 1000u);
}

static void sync_msg(struct lb_conn *c, LDAPMessage *msg)
{
	if (ldap_msgid(msg) != c->msgid)
		return;
	switch (ldap_msgtype(msg)) {
	case LDAP_RES_SEARCH_ENTRY:
		sync_entry(c, msg);
		break;
	case LDAP_RES_INTERMEDIATE:
		sync_info(c, msg);
		break;
	case LDAP_RES_SEARCH_RESULT:
		sync_result(c, msg);
		break;
	default:
		break;
	}
}

/* ---- bindings: entries, decisions, writes ---------------------------------------------- */

static const char *const binding_attrs[] = {
    "objectClass",	  "sipregAor",	     "sipregVersion",	"sipregCommitted",
    "sipregClaimedAt",	  "sipregContact",   "sipregContactKey", "sipregExpires",
    "sipregQ",		  "sipregCallId",    "sipregCSeq",	"sipregPath",
    "sipregInstance",	  "sipregRegId",     "sipregUserAgent", "sipregReceivedProto",
    "sipregReceivedIP",	  "sipregReceivedPort", "sipregConnId",	"sipregRegisteredBy",
    "sipregUpdatedAt",	  NULL};

static int attr_str(LDAP *ld, LDAPMessage *e, const char *attr, struct sip_str *dst)
{
	struct berval **vals = NULL, *v = first_value(ld, e, attr, &vals);
	int err = v ? str_dup(dst, v->bv_val, v->bv_len) : str_dup(dst, "", 0);

	ldap_value_free_len(vals);
	return err;
}

static int64_t attr_int(LDAP *ld, LDAPMessage *e, const char *attr, int64_t dflt)
{
	struct berval **vals = NULL, *v = first_value(ld, e, attr, &vals);
	int64_t r = bv_int(v, dflt);

	ldap_value_free_len(vals);
	return r;
}

static bool entry_is(LDAP *ld, LDAPMessage *e, const char *cls)
{
	struct berval **vals = ldap_get_values_len(ld, e, "objectClass");
	bool is = false;

	for (size_t i = 0; vals && vals[i] && !is; i++)
		is = vals[i]->bv_len == strlen(cls) &&
		     strncasecmp(vals[i]->bv_val, cls, vals[i]->bv_len) == 0;
	ldap_value_free_len(vals);
	return is;
}

/* Parse a sipregBinding entry into op->stored. */
static int stored_add(struct lb_op *op, LDAP *ld, LDAPMessage *e)
{
	struct lb_stored *s;
	struct binding *b;
	struct sip_str proto = {0}, ip = {0};
	char *dn;
	int err;

	if (op->n_stored == op->cap_stored) {
		size_t cap = op->cap_stored ? op->cap_stored * 2 : 8;
		struct lb_stored *v = realloc(op->stored, cap * sizeof(*v));

		if (!v)
			return ENOMEM;
		op->stored = v;
		op->cap_stored = cap;
	}
	s = &op->stored[op->n_stored];
	memset(s, 0, sizeof(*s));
	b = &s->b;
	dn = ldap_get_dn(ld, e);
	s->dn = dn ? strdup(dn) : NULL;
	ldap_memfree(dn);
	op->n_stored++;
	err = s->dn ? 0 : ENOMEM;
	if (!err)
		err = attr_str(ld, e, "sipregAor", &b->aor);
	if (!err)
		err = attr_str(ld, e, "sipregContact", &b->contact);
	if (!err)
		err = attr_str(ld, e, "sipregContactKey", &b->key);
	if (!err)
		err = attr_str(ld, e, "sipregCallId", &b->call_id);
	if (!err)
		err = attr_str(ld, e, "sipregPath", &b->path);
	if (!err)
		err = attr_str(ld, e, "sipregInstance", &b->instance);
	if (!err)
		err = attr_str(ld, e, "sipregUserAgent", &b->user_agent);
	if (!err)
		err = attr_str(ld, e, "sipregRegisteredBy", &b->registered_by);
	if (!err)
		err = attr_str(ld, e, "sipregReceivedProto", &proto);
	if (!err)
		err = attr_str(ld, e, "sipregReceivedIP", &ip);
	if (err) {
		str_free(&proto);
		str_free(&ip);
		return err;
	}
	b->expires_at = attr_int(ld, e, "sipregExpires", 0);
	b->q = (int16_t)attr_int(ld, e, "sipregQ", Q_NONE);
	b->cseq = (uint32_t)attr_int(ld, e, "sipregCSeq", 0);
	b->reg_id = (uint32_t)attr_int(ld, e, "sipregRegId", 0);
	b->updated_at = attr_int(ld, e, "sipregUpdatedAt", 0);
	b->source.proto = sip_proto_from_name(proto.p, proto.len);
	if (ip.len < sizeof(b->source.ip))
		memcpy(b->source.ip, ip.p, ip.len + 1);
	b->source.port = (uint16_t)attr_int(ld, e, "sipregReceivedPort", 0);
	b->source.conn_id = (uint64_t)attr_int(ld, e, "sipregConnId", 0);
	str_free(&proto);
	str_free(&ip);
	s->live = b->expires_at > op->now;
	return 0;
}

static int q_rank(int16_t q)
{
	return q == Q_NONE ? 1000 : q;
}

/* Most preferred first: q descending, then the most recently updated, then by key. */
static int binding_cmp(const void *pa, const void *pb)
{
	const struct binding *a = pa, *b = pb;
	size_t n = a->key.len < b->key.len ? a->key.len : b->key.len;
	int c;

	if (q_rank(a->q) != q_rank(b->q))
		return q_rank(b->q) - q_rank(a->q);
	if (a->updated_at != b->updated_at)
		return a->updated_at < b->updated_at ? 1 : -1;
	c = n ? memcmp(a->key.p, b->key.p, n) : 0;
	if (c)
		return c;
	return a->key.len < b->key.len ? -1 : a->key.len > b->key.len;
}

/* The binding a change of op's request stores. */
static void binding_of_change(const struct lb_op *op, size_t i, struct binding *b)
{
	const struct reg_change *ch = &op->changes[i];

	memset(b, 0, sizeof(*b));
	b->aor = op->aor;
	b->contact = ch->contact;
	b->key = ch->key;
	b->expires_at = op->req.now + ch->expires;
	b->q = ch->q;
	b->call_id = op->req.call_id;
	b->cseq = op->req.cseq;
	b->path = op->req.path;
	b->instance = ch->instance;
	b->reg_id = ch->reg_id;
	b->user_agent = op->req.user_agent;
	b->source = op->req.source;
	b->registered_by = op->req.instance_id;
	b->updated_at = op->req.now;
}

static struct lb_stored *stored_find(struct lb_op *op, const struct sip_str *key)
{
	for (size_t i = 0; i < op->n_stored; i++) {
		if (op->stored[i].live && sip_str_eq(&op->stored[i].b.key, key))
			return &op->stored[i];
	}
	return NULL;
}

/* The hex SHA-256 of the contact key: the RDN value of a binding entry. */
static int binding_dn(const struct lb_op *op, const struct sip_str *key, char **dnp)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[32];
	unsigned int mdlen = 0;
	char h[65];

	if (!EVP_Digest(key->p ? key->p : "", key->len, md, &mdlen, EVP_sha256(), NULL) ||
	    mdlen != 32)
		return ENOMEM;
	for (size_t i = 0; i < 32; i++) {
		h[2 * i] = hex[md[i] >> 4];
		h[2 * i + 1] = hex[md[i] & 15];
	}
	h[64] = '\0';
	*dnp = str_printf("sipregBindingId=%s,%s", h, op->aor_dn);
	return *dnp ? 0 : ENOMEM;
}

static int write_push(struct lb_op *op, enum lb_wkind kind, size_t change, char *dn)
{
	struct lb_write *v = realloc(op->writes, (op->n_writes + 1) * sizeof(*v));

	if (!v) {
		free(dn);
		return ENOMEM;
	}
	op->writes = v;
	v[op->n_writes++] = (struct lb_write){.kind = kind, .change = change, .dn = dn};
	return 0;
}

/* RFC 3261 §10.3 step 7 over what the read found: the outcome, and the writes in
 * op->writes (expired entries of the AOR are deleted on the way). */
static int apply_decide(struct lb_op *op)
{
	size_t live = 0, adds = 0;
	int err = 0;

	op->outcome = REG_OK;
	writes_free(op);
	for (size_t i = 0; i < op->n_stored; i++)
		live += op->stored[i].live;
	if (op->req.wildcard) {
		for (size_t i = 0; i < op->n_stored; i++) {
			const struct lb_stored *s = &op->stored[i];

			if (s->live && sip_str_eq(&s->b.call_id, &op->req.call_id) &&
			    s->b.cseq >= op->req.cseq) {
				op->outcome = REG_OUT_OF_ORDER;
				return 0;
			}
		}
	} else {
		for (size_t i = 0; i < op->req.n_changes; i++) {
			const struct lb_stored *s = stored_find(op, &op->changes[i].key);

			if (s && sip_str_eq(&s->b.call_id, &op->req.call_id) &&
			    op->req.cseq <= s->b.cseq) {
				op->outcome = REG_OUT_OF_ORDER;
				return 0;
			}
		}
		for (size_t i = 0; i < op->req.n_changes; i++) {
			bool stored;

			if (op->superseded[i])
				continue;
			stored = stored_find(op, &op->changes[i].key) != NULL;
			if (stored && op->changes[i].expires == 0)
				live--;
			else if (!stored && op->changes[i].expires > 0)
				adds++;
		}
		if (op->req.max_contacts > 0 && live + adds > op->req.max_contacts) {
			op->outcome = REG_TOO_MANY_CONTACTS;
			return 0;
		}
	}
	for (size_t i = 0; i < op->n_stored && !err; i++) {
		struct lb_stored *s = &op->stored[i];

		s->drop = !s->live || op->req.wildcard;
		if (s->drop) {
			char *dn = strdup(s->dn);

			err = dn ? write_push(op, W_DELETE, 0, dn) : ENOMEM;
		}
	}
	for (size_t i = 0; !op->req.wildcard && i < op->req.n_changes && !err; i++) {
		struct lb_stored *s;
		char *dn = NULL;

		if (op->superseded[i])
			continue;
		s = stored_find(op, &op->changes[i].key);
		if (!s && op->changes[i].expires == 0)
			continue;
		err = binding_dn(op, &op->changes[i].key, &dn);
		if (err)
			break;
		if (s)
			s->drop = true;
		if (s && op->changes[i].expires == 0)
			err = write_push(op, W_DELETE, i, dn);
		else
			err = write_push(op, s ? W_MODIFY : W_ADD, i, dn);
	}
	return err;
}

/* The AOR's live bindings after the change-set: kept entries plus what the request wrote. */
static bool apply_finish(struct lb_op *op)
{
	struct binding *v = calloc(op->n_stored + op->req.n_changes + 1, sizeof(*v));
	struct binding_set set;
	size_t n = 0;

	if (!v)
		return op_complete(op, ENOMEM, NULL, NULL);
	for (size_t i = 0; i < op->n_stored; i++) {
		if (op->stored[i].live && !op->stored[i].drop)
			v[n++] = op->stored[i].b;
	}
	for (size_t i = 0; i < op->n_writes; i++) {
		if (op->writes[i].kind != W_DELETE)
			binding_of_change(op, op->writes[i].change, &v[n++]);
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), binding_cmp);
	set = set_of(op, v, n);
	{
		bool alive = op_complete(op, 0, &set, NULL);

		free(v);
		return alive;
	}
}

/* ---- sending --------------------------------------------------------------------------- */

static int send_search(struct lb_op *op, const char *base, int scope, const char *filter,
		       const char *const *attrs)
{
	int rc = ldap_search_ext(op->conn->ld, base, scope, filter, (char **)attrs, 0, NULL, NULL,
				 NULL, 0, &op->msgid);

	if (rc != LDAP_SUCCESS) {
		conn_broken(op->conn);
		return EAGAIN;
	}
	return 0;
}

/* A modification list under construction: values live in the builder until it is freed. */
struct mods {
	LDAPMod *v[32];
	LDAPMod m[32];
	struct berval bv[32][2];
	struct berval *bvp[32][4];
	struct berval bv_extra;
	char num[32][LB_NUM_MAX];
	size_t n;
};

static void mods_bytes(struct mods *m, int op, const char *attr, const void *p, size_t len)
{
	size_t i = m->n++;

	m->m[i].mod_op = op | LDAP_MOD_BVALUES;
	m->m[i].mod_type = (char *)attr;
	if (p) {
		m->bv[i][0].bv_val = (char *)p;
		m->bv[i][0].bv_len = len;
		m->bvp[i][0] = &m->bv[i][0];
		m->bvp[i][1] = NULL;
	} else {
		m->bvp[i][0] = NULL;
	}
	m->m[i].mod_bvalues = m->bvp[i];
	m->v[i] = &m->m[i];
	m->v[i + 1] = NULL;
}

/* A string attribute; empty: none (REPLACE removes it, ADD leaves it out). */
static void mods_str(struct mods *m, int op, const char *attr, const struct sip_str *s)
{
	if (s->len)
		mods_bytes(m, op, attr, s->p, s->len);
	else if (op == LDAP_MOD_REPLACE)
		mods_bytes(m, op, attr, NULL, 0);
}

static void mods_int(struct mods *m, int op, const char *attr, long long v)
{
	int n = snprintf(m->num[m->n], LB_NUM_MAX, "%lld", v);

	mods_bytes(m, op, attr, m->num[m->n], (size_t)n);
}

static void mods_binding(struct mods *m, int op, const struct binding *b, const char *id)
{
	const char *proto = sip_proto_name(b->source.proto);
	struct sip_str ip = sip_str_c(b->source.ip);

	if (op == LDAP_MOD_ADD) {
		static const char cls[] = "sipregBinding";

		mods_bytes(m, op, "objectClass", cls, sizeof(cls) - 1);
		mods_bytes(m, op, "sipregBindingId", id, strlen(id));
		mods_str(m, op, "sipregAor", &b->aor);
	}
	mods_bytes(m, op, "sipregContact", b->contact.p, b->contact.len);
	mods_bytes(m, op, "sipregContactKey", b->key.p, b->key.len);
	mods_int(m, op, "sipregExpires", (long long)b->expires_at);
	if (b->q != Q_NONE)
		mods_int(m, op, "sipregQ", b->q);
	else if (op == LDAP_MOD_REPLACE)
		mods_bytes(m, op, "sipregQ", NULL, 0);
	mods_bytes(m, op, "sipregCallId", b->call_id.p, b->call_id.len);
	mods_int(m, op, "sipregCSeq", b->cseq);
	mods_str(m, op, "sipregPath", &b->path);
	mods_str(m, op, "sipregInstance", &b->instance);
	if (b->reg_id)
		mods_int(m, op, "sipregRegId", b->reg_id);
	else if (op == LDAP_MOD_REPLACE)
		mods_bytes(m, op, "sipregRegId", NULL, 0);
	mods_str(m, op, "sipregUserAgent", &b->user_agent);
	if (proto && *proto)
		mods_bytes(m, op, "sipregReceivedProto", proto, strlen(proto));
	mods_str(m, op, "sipregReceivedIP", &ip);
	mods_int(m, op, "sipregReceivedPort", b->source.port);
	if (b->source.conn_id)
		mods_int(m, op, "sipregConnId", (long long)b->source.conn_id);
	else if (op == LDAP_MOD_REPLACE)
		mods_bytes(m, op, "sipregConnId", NULL, 0);
	mods_str(m, op, "sipregRegisteredBy", &b->registered_by);
	mods_int(m, op, "sipregUpdatedAt", (long long)b->updated_at);
}

static int check_rc(struct lb_op *op, int rc)
{
	if (rc != LDAP_SUCCESS) {
		conn_broken(op->conn);
		return EAGAIN;
	}
	return 0;
}

/* An assertion control (RFC 4528) for filter, to free with ldap_control_free. */
static int assertion(struct lb_op *op, const char *filter, LDAPControl **ctrlp)
{
	return ldap_create_assertion_control(op->conn->ld, (char *)filter, 1, ctrlp) ==
		       LDAP_SUCCESS
		   ? 0
		   : ENOMEM;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int send_claim(struct lb_op *op)
{
	struct mods m = {0};
	LDAPControl *ctrl = NULL, *ctrls[2] = {NULL, NULL};
	char filter[96];
	int rc, err;

	op->step = ST_CLAIM;
	if (!op->aor_exists) {
		static const char cls[] = "sipregAorEntry";

		op->version = 1;
		mods_bytes(&m, LDAP_MOD_ADD, "objectClass", cls, sizeof(cls) - 1);
		mods_str(&m, LDAP_MOD_ADD, "sipregAor", &op->aor);
		mods_int(&m, LDAP_MOD_ADD, "sipregVersion", 1);
		mods_int(&m, LDAP_MOD_ADD, "sipregCommitted", 0);
		mods_str(&m, LDAP_MOD_ADD, "sipregClaimedBy", &op->req.instance_id);
		mods_int(&m, LDAP_MOD_ADD, "sipregClaimedAt", (long long)wall_ms());
		rc = ldap_add_ext(op->conn->ld, op->aor_dn, m.v, NULL, NULL, &op->msgid);
		return check_rc(op, rc);
	}
	snprintf(filter, sizeof(filter), "(&(sipregVersion=%lld)(sipregCommitted=%lld))",
		 (long long)op->version, (long long)op->committed);
	err = assertion(op, filter, &ctrl);
	if (err)
		return err;
	ctrls[0] = ctrl;
	op->version++;
	mods_int(&m, LDAP_MOD_REPLACE, "sipregVersion", (long long)op->version);
	mods_str(&m, LDAP_MOD_REPLACE, "sipregClaimedBy", &op->req.instance_id);
	mods_int(&m, LDAP_MOD_REPLACE, "sipregClaimedAt", (long long)wall_ms());
	rc = ldap_modify_ext(op->conn->ld, op->aor_dn, m.v, ctrls, NULL, &op->msgid);
	ldap_control_free(ctrl);
	return check_rc(op, rc);
}

static int send_write(struct lb_op *op)
{
	const struct lb_write *w = &op->writes[op->next_write];
	struct mods m = {0};
	struct binding b;
	int rc;

	op->step = ST_WRITE;
	if (w->kind == W_DELETE)
		return check_rc(op, ldap_delete_ext(op->conn->ld, w->dn, NULL, NULL, &op->msgid));
	binding_of_change(op, w->change, &b);
	if (w->kind == W_ADD) {
		const char *id = strchr(w->dn, '=') + 1;
		char rdn[65];

		memcpy(rdn, id, 64);
		rdn[64] = '\0';
		mods_binding(&m, LDAP_MOD_ADD, &b, rdn);
		rc = ldap_add_ext(op->conn->ld, w->dn, m.v, NULL, NULL, &op->msgid);
	} else {
		mods_binding(&m, LDAP_MOD_REPLACE, &b, NULL);
		rc = ldap_modify_ext(op->conn->ld, w->dn, m.v, NULL, NULL, &op->msgid);
	}
	return check_rc(op, rc);
}

static int send_commit(struct lb_op *op)
{
	struct mods m = {0};
	LDAPControl *ctrl = NULL, *ctrls[2] = {NULL, NULL};
	char filter[64];
	int rc, err;

	op->step = ST_COMMIT;
	snprintf(filter, sizeof(filter), "(sipregVersion=%lld)", (long long)op->version);
	err = assertion(op, filter, &ctrl);
	if (err)
		return err;
	ctrls[0] = ctrl;
	mods_int(&m, LDAP_MOD_REPLACE, "sipregCommitted", (long long)op->version);
	rc = ldap_modify_ext(op->conn->ld, op->aor_dn, m.v, ctrls, NULL, &op->msgid);
	ldap_control_free(ctrl);
	return check_rc(op, rc);
}

/* fetch, iterate, unbind: the live bindings (of one AOR, or all). */
static int send_bindings_read(struct lb_op *op)
{
	char *aor = NULL, *key = NULL, *filter;
	int err;

	op->step = ST_READ;
	if (op->kind == LB_ITERATE) {
		filter = str_printf("(&(objectClass=sipregBinding)(sipregExpires>=%lld))",
				    (long long)op->now + 1);
		err = filter ? send_search(op, op->be->conf->bindings_base, LDAP_SCOPE_SUBTREE,
					   filter, binding_attrs)
			     : ENOMEM;
		free(filter);
		return err;
	}
	err = filter_escape(&op->aor, &aor);
	if (!err && op->kind == LB_UNBIND && op->s1.p)
		err = filter_escape(&op->s1, &key);
	if (err) {
		free(aor);
		return err;
	}
	filter = str_printf("(&(objectClass=sipregBinding)(sipregAor=%s)(sipregExpires>=%lld)%s%s%s)",
			    aor, (long long)op->now + 1, key ? "(sipregContactKey=" : "",
			    key ? key : "", key ? ")" : "");
	err = filter ? send_search(op, op->be->conf->bindings_base, LDAP_SCOPE_SUBTREE, filter,
				   binding_attrs)
		     : ENOMEM;
	free(aor);
	free(key);
	free(filter);
	return err;
}

/* put/del: find the user's entry by name (and domain: a URI in it, or none at all). */
static int send_user_lookup(struct lb_op *op)
{
	const struct ldap_conf *c = op->be->conf;
	char *u = NULL, *uri = NULL, *filter;
	struct sip_str sipuri;
	const char *attrs[16];
	char *raw = NULL;
	int err;

	op->step = ST_LOOKUP;
	raw = str_printf("sip:%.*s@%.*s", (int)op->user.username.len, op->user.username.p,
			 (int)op->user.domain.len, op->user.domain.p);
	if (!raw)
		return ENOMEM;
	sipuri = sip_str_c(raw);
	err = filter_escape(&op->user.username, &u);
	if (!err)
		err = filter_escape(&sipuri, &uri);
	free(raw);
	if (err) {
		free(u);
		return err;
	}
	if (c->attrs.uri)
		filter = str_printf("(&%s(%s=%s)(|(%s=%s)(!(%s=*))))", c->filter, c->attrs.user, u,
				    c->attrs.uri, uri, c->attrs.uri);
	else
		filter = str_printf("(&%s(%s=%s))", c->filter, c->attrs.user, u);
	err = filter ? send_search(op, c->users_base, LDAP_SCOPE_SUBTREE, filter,
				   user_attrs(op->be, attrs))
		     : ENOMEM;
	free(u);
	free(uri);
	free(filter);
	return err;
}

static int send_user_write(struct lb_op *op)
{
	const struct ldap_attr_map *a = &op->be->conf->attrs;
	struct mods m = {0};
	int mode = op->mode == DIR_PUT_CREATE ? LDAP_MOD_ADD : LDAP_MOD_REPLACE;
	char *rdn = NULL, *uid = NULL, *sipuri = NULL;
	struct sip_str id;
	int err = 0, rc;
	LDAPMod *extra[8] = {NULL};
	struct berval av[8];
	struct berval *avp[8][8];
	LDAPMod am[8];
	size_t n_alias = op->user.n_aliases < 7 ? op->user.n_aliases : 7;

	op->step = ST_PUT;
	if (op->kind == LB_DEL)
		return check_rc(op, ldap_delete_ext(op->conn->ld, op->dn, NULL, NULL, &op->msgid));
	uid = str_printf("%.*s@%.*s", (int)op->user.username.len, op->user.username.p,
			 (int)op->user.domain.len, op->user.domain.p);
	sipuri = str_printf("sip:%s", uid ? uid : "");
	if (!uid || !sipuri) {
		err = ENOMEM;
		goto out;
	}
	id = sip_str_c(uid);
	if (mode == LDAP_MOD_ADD) {
		static const char c1[] = "commObject", c2[] = "SIPIdentity", c3[] = "sipregUser";

		err = dn_escape(&id, &rdn);
		if (err)
			goto out;
		free(op->dn);
		op->dn = str_printf("commUniqueId=%s,%s", rdn, op->be->conf->users_base);
		if (!op->dn) {
			err = ENOMEM;
			goto out;
		}
		/* One attribute, three values: an add names each attribute once. */
		mods_bytes(&m, mode, "objectClass", c1, sizeof(c1) - 1);
		m.bv[0][1] = (struct berval){.bv_val = (char *)c2, .bv_len = sizeof(c2) - 1};
		m.bvp[0][1] = &m.bv[0][1];
		m.bv_extra = (struct berval){.bv_val = (char *)c3, .bv_len = sizeof(c3) - 1};
		m.bvp[0][2] = &m.bv_extra;
		m.bvp[0][3] = NULL;
		mods_str(&m, mode, "commUniqueId", &id);
		mods_str(&m, mode, a->user, &op->user.username);
	} else if (!op->has_sipreg_class) {
		static const char c3[] = "sipregUser";

		mods_bytes(&m, LDAP_MOD_ADD, "objectClass", c3, sizeof(c3) - 1);
	}
	if (a->uri && op->user.domain.len)
		mods_bytes(&m, mode, a->uri, sipuri, strlen(sipuri));
	if (a->password)
		mods_str(&m, mode, a->password, &op->user.password);
	if (a->ha1_md5)
		mods_str(&m, mode, a->ha1_md5, &op->user.ha1_md5);
	if (a->ha1_sha256)
		mods_str(&m, mode, a->ha1_sha256, &op->user.ha1_sha256);
	if (a->enabled)
		mods_bytes(&m, mode, a->enabled, op->user.enabled ? "TRUE" : "FALSE",
			   op->user.enabled ? 4 : 5);
	if (a->auth_off)
		mods_bytes(&m, mode, a->auth_off, op->user.auth_off ? "TRUE" : "FALSE",
			   op->user.auth_off ? 4 : 5);
	if (a->max_contacts && op->user.max_contacts)
		mods_int(&m, mode, a->max_contacts, op->user.max_contacts);
	else if (a->max_contacts && mode == LDAP_MOD_REPLACE)
		mods_bytes(&m, mode, a->max_contacts, NULL, 0);
	if (a->alias && (n_alias || mode == LDAP_MOD_REPLACE)) {
		/* Every alias in one modification (multi-valued). */
		for (size_t i = 0; i < n_alias; i++) {
			av[i].bv_val = (char *)op->aliases[i].p;
			av[i].bv_len = op->aliases[i].len;
			avp[0][i] = &av[i];
		}
		avp[0][n_alias] = NULL;
		am[0].mod_op = mode | LDAP_MOD_BVALUES;
		am[0].mod_type = a->alias;
		am[0].mod_bvalues = avp[0];
		extra[0] = &am[0];
		m.v[m.n++] = extra[0];
		m.v[m.n] = NULL;
	}
	if (mode == LDAP_MOD_ADD)
		rc = ldap_add_ext(op->conn->ld, op->dn, m.v, NULL, NULL, &op->msgid);
	else
		rc = ldap_modify_ext(op->conn->ld, op->dn, m.v, NULL, NULL, &op->msgid);
	err = check_rc(op, rc);
out:
	free(rdn);
	free(uid);
	free(sipuri);
	return err;
}

static int send_readback(struct lb_op *op)
{
	const char *attrs[16];

	op->step = ST_READBACK;
	return send_search(op, op->dn, LDAP_SCOPE_BASE, "(objectClass=*)",
			   user_attrs(op->be, attrs));
}

static int send_apply_read(struct lb_op *op)
{
	op->step = ST_READ;
	stored_free(op);
	op->aor_exists = false;
	op->version = op->committed = op->claimed_at = 0;
	return send_search(op, op->aor_dn, LDAP_SCOPE_SUBTREE, "(objectClass=*)", binding_attrs);
}

/* Send op's first request on a connection that is up, or queue it. */
static int op_dispatch(struct lb_op *op)
{
	struct lb_be *be = op->be;
	struct lb_conn *c = conn_pick(be);

	if (!c) {
		if ((!conn_any_connecting(be) && !conn_pick_busy(be)) ||
		    be->n_queued >= LB_QUEUE_MAX)
			return EAGAIN;
		op->queued = true;
		op->qnext = NULL;
		if (be->qtail)
			be->qtail->qnext = op;
		else
			be->qhead = op;
		be->qtail = op;
		be->n_queued++;
		return 0;
	}
	op->conn = c;
	c->n_ops++;
	switch (op->kind) {
	case LB_APPLY:
		return send_apply_read(op);
	case LB_FETCH:
	case LB_ITERATE:
	case LB_UNBIND:
		return send_bindings_read(op);
	case LB_PUT:
	case LB_DEL:
		return send_user_lookup(op);
	case LB_FIND:
	case LB_USER_ITER:
		break;
	}
	return EINVAL;
}

/* ---- responses ------------------------------------------------------------------------ */

static int result_code(struct lb_op *op, LDAPMessage *msg)
{
	int rc = LDAP_OTHER;

	if (ldap_parse_result(op->conn->ld, msg, &rc, NULL, NULL, NULL, NULL, 0) != LDAP_SUCCESS)
		return LDAP_OTHER;
	return rc;
}

/* Map an LDAP result of a request to an errno (0: success). */
static int errno_of(int rc)
{
	switch (rc) {
	case LDAP_SUCCESS:
		return 0;
	case LDAP_NO_SUCH_OBJECT:
		return ENOENT;
	case LDAP_ALREADY_EXISTS:
		return EEXIST;
	case LDAP_INSUFFICIENT_ACCESS:
	case LDAP_INVALID_CREDENTIALS:
		return EACCES;
	case LDAP_INVALID_SYNTAX:
	case LDAP_INVALID_DN_SYNTAX:
	case LDAP_OBJECT_CLASS_VIOLATION:
	case LDAP_UNDEFINED_TYPE:
	case LDAP_CONSTRAINT_VIOLATION:
		return EINVAL;
	case LDAP_TIMELIMIT_EXCEEDED:
	case LDAP_TIMEOUT:
		return ETIMEDOUT;
	default:
		return EAGAIN;
	}
}

/* Conflict: start over from the read after a short random pause. */
static void apply_retry(struct lb_op *op)
{
	int64_t left = op->deadline_ns - clock_mono_ns();
	uint32_t ms = 1 + jitter(4u << (op->attempts < 5 ? op->attempts : 5));
	struct timeval tv = {.tv_sec = 0, .tv_usec = ms * 1000};

	op->attempts++;
	op->retry = true;
	op->msgid = -1;
	if (left <= (int64_t)ms * CLOCK_NS_PER_MS) {
		op->retry = false;
		op_defer(op, ETIMEDOUT);
		return;
	}
	evtimer_add(op->ev, &tv);
}

static bool apply_next_write(struct lb_op *op)
{
	int err = op->next_write < op->n_writes ? send_write(op) : send_commit(op);

	return err ? op_complete(op, err, NULL, NULL) : true;
}

static bool on_apply(struct lb_op *op, LDAPMessage *msg)
{
	LDAP *ld = op->conn->ld;
	int rc, err;

	if (op->step == ST_READ) {
		if (ldap_msgtype(msg) == LDAP_RES_SEARCH_ENTRY) {
			if (entry_is(ld, msg, "sipregAorEntry")) {
				op->aor_exists = true;
				op->version = attr_int(ld, msg, "sipregVersion", 0);
				op->committed = attr_int(ld, msg, "sipregCommitted", 0);
				op->claimed_at = attr_int(ld, msg, "sipregClaimedAt", 0);
			} else if (entry_is(ld, msg, "sipregBinding")) {
				err = stored_add(op, ld, msg);
				if (err)
					return op_complete(op, err, NULL, NULL);
			}
			return true;
		}
		if (ldap_msgtype(msg) != LDAP_RES_SEARCH_RESULT)
			return true;
		op->msgid = -1;
		rc = result_code(op, msg);
		if (rc != LDAP_SUCCESS && rc != LDAP_NO_SUCH_OBJECT)
			return op_complete(op, errno_of(rc), NULL, NULL);
		/* Someone else is writing this AOR: wait for their commit, unless their claim
		 * is older than any op may live (that writer has given up or died). */
		if (op->aor_exists && op->version != op->committed &&
		    wall_ms() - op->claimed_at < (int64_t)op->be->conf->timeout_ms) {
			apply_retry(op);
			return true;
		}
		err = apply_decide(op);
		if (err || op->outcome != REG_OK)
			return op_complete(op, err, NULL, NULL);
		if (op->n_writes == 0)
			return apply_finish(op);
		err = send_claim(op);
		return err ? op_complete(op, err, NULL, NULL) : true;
	}
	if (ldap_msgtype(msg) == LDAP_RES_SEARCH_ENTRY)
		return true;
	op->msgid = -1;
	rc = result_code(op, msg);
	switch (op->step) {
	case ST_CLAIM:
		if (rc == LDAP_ASSERTION_FAILED || rc == LDAP_ALREADY_EXISTS ||
		    rc == LDAP_NO_SUCH_OBJECT) {
			apply_retry(op);
			return true;
		}
		if (rc != LDAP_SUCCESS)
			return op_complete(op, errno_of(rc), NULL, NULL);
		op->next_write = 0;
		return apply_next_write(op);
	case ST_WRITE: {
		struct lb_write *w = &op->writes[op->next_write];

		/* Left behind by a writer that died mid-way: converge on what we decided. */
		if (rc == LDAP_ALREADY_EXISTS && w->kind == W_ADD) {
			w->kind = W_MODIFY;
			return apply_next_write(op);
		}
		if (rc == LDAP_NO_SUCH_OBJECT && w->kind == W_MODIFY) {
			w->kind = W_ADD;
			return apply_next_write(op);
		}
		if (rc != LDAP_SUCCESS && !(rc == LDAP_NO_SUCH_OBJECT && w->kind == W_DELETE))
			return op_complete(op, errno_of(rc), NULL, NULL);
		op->next_write++;
		return apply_next_write(op);
	}
	case ST_COMMIT:
		if (rc != LDAP_SUCCESS) {
			/* Our claim was taken over (we were slower than timeout_ms): what we
			 * wrote may have been overwritten, so nothing is promised. */
			return op_complete(op, rc == LDAP_ASSERTION_FAILED ? EAGAIN : errno_of(rc),
					   NULL, NULL);
		}
		return apply_finish(op);
	default:
		return true;
	}
}

static bool on_read(struct lb_op *op, LDAPMessage *msg)
{
	LDAP *ld = op->conn->ld;
	int rc, err;

	if (ldap_msgtype(msg) == LDAP_RES_SEARCH_ENTRY) {
		if (op->kind == LB_UNBIND && op->step == ST_WRITE)
			return true;
		err = stored_add(op, ld, msg);
		if (err)
			return op_complete(op, err, NULL, NULL);
		if (op->kind == LB_ITERATE) {
			/* Delivered as it arrives: a listing never holds the whole tree. */
			struct lb_be *be = op->be;
			bool alive = true;
			struct lb_stored *s = &op->stored[op->n_stored - 1];

			be->alive = &alive;
			if (s->live)
				op->cb.iterate(0, &s->b, op->arg);
			if (!alive)
				return false;
			be->alive = NULL;
			stored_free(op);
		}
		return true;
	}
	if (ldap_msgtype(msg) != LDAP_RES_SEARCH_RESULT && op->step == ST_READ)
		return true;
	op->msgid = -1;
	rc = result_code(op, msg);
	if (op->kind == LB_UNBIND) {
		if (op->step == ST_READ) {
			if (rc != LDAP_SUCCESS)
				return op_complete(op, errno_of(rc), NULL, NULL);
			if (op->n_stored == 0)
				return op_complete(op, ENOENT, NULL, NULL);
			op->next_write = 0;
		} else if (rc != LDAP_SUCCESS && rc != LDAP_NO_SUCH_OBJECT) {
			return op_complete(op, errno_of(rc), NULL, NULL);
		} else {
			op->next_write++;
		}
		if (op->next_write >= op->n_stored)
			return op_complete(op, 0, NULL, NULL);
		op->step = ST_WRITE;
		err = check_rc(op, ldap_delete_ext(op->conn->ld, op->stored[op->next_write].dn,
						   NULL, NULL, &op->msgid));
		return err ? op_complete(op, err, NULL, NULL) : true;
	}
	if (rc != LDAP_SUCCESS)
		return op_complete(op, errno_of(rc), NULL, NULL);
	if (op->kind == LB_FETCH) {
		struct binding *v = calloc(op->n_stored + 1, sizeof(*v));
		struct binding_set set;
		size_t n = 0;
		bool alive;

		if (!v)
			return op_complete(op, ENOMEM, NULL, NULL);
		for (size_t i = 0; i < op->n_stored; i++) {
			if (op->stored[i].live)
				v[n++] = op->stored[i].b;
		}
		if (n > 1)
			qsort(v, n, sizeof(*v), binding_cmp);
		set = set_of(op, v, n);
		alive = op_complete(op, 0, &set, NULL);
		free(v);
		return alive;
	}
	return op_complete(op, 0, NULL, NULL);
}

static bool on_user(struct lb_op *op, LDAPMessage *msg)
{
	LDAP *ld = op->conn->ld;
	int rc, err;

	if (ldap_msgtype(msg) == LDAP_RES_SEARCH_ENTRY) {
		if (op->step == ST_LOOKUP) {
			char *dn = ldap_get_dn(ld, msg);

			op->found++;
			free(op->dn);
			op->dn = dn ? strdup(dn) : NULL;
			ldap_memfree(dn);
			op->has_sipreg_class = entry_is(ld, msg, "sipregUser");
			if (op->kind == LB_DEL) {
				struct berval **vals = ldap_get_values_len(ld, msg, "entryUUID");
				unsigned char raw[16];

				if (vals && vals[0] && uuid_parse(vals[0], raw))
					str_dup(&op->s2, raw, sizeof(raw));
				ldap_value_free_len(vals);
			}
		} else if (op->step == ST_READBACK) {
			if (mirror_put_plain(op->be, ld, msg))
				return op_complete(op, ENOMEM, NULL, NULL);
		}
		return true;
	}
	if (ldap_msgtype(msg) != LDAP_RES_SEARCH_RESULT && op->step != ST_PUT)
		return true;
	op->msgid = -1;
	rc = result_code(op, msg);
	switch (op->step) {
	case ST_LOOKUP:
		if (rc != LDAP_SUCCESS)
			return op_complete(op, errno_of(rc), NULL, NULL);
		if (op->kind == LB_PUT && op->mode == DIR_PUT_CREATE && op->found)
			return op_complete(op, EEXIST, NULL, NULL);
		if ((op->kind == LB_DEL || op->mode == DIR_PUT_UPDATE) && !op->found)
			return op_complete(op, ENOENT, NULL, NULL);
		if (op->found > 1)
			return op_complete(op, EEXIST, NULL, NULL); /* ambiguous: refuse */
		err = op->dn || op->kind == LB_PUT ? send_user_write(op) : ENOMEM;
		return err ? op_complete(op, err, NULL, NULL) : true;
	case ST_PUT:
		if (rc != LDAP_SUCCESS) {
			log_warn("ldap: writing a user entry: %s", ldap_err2string(rc));
			return op_complete(op, errno_of(rc), NULL, NULL);
		}
		if (op->kind == LB_DEL) {
			/* The mirror forgets at once: the next find must not see the user. */
			if (op->s2.len == 16)
				mirror_del(op->be, &op->s2);
			return op_complete(op, 0, NULL, NULL);
		}
		err = send_readback(op);
		return err ? op_complete(op, err, NULL, NULL) : true;
	case ST_READBACK:
		return op_complete(op, errno_of(rc), NULL, NULL);
	default:
		return true;
	}
}

/* One message for an op; false when a callback closed the backend. */
static bool op_on_msg(struct lb_op *op, LDAPMessage *msg)
{
	switch (op->kind) {
	case LB_APPLY:
		return on_apply(op, msg);
	case LB_FETCH:
	case LB_ITERATE:
	case LB_UNBIND:
		return on_read(op, msg);
	case LB_PUT:
	case LB_DEL:
		return on_user(op, msg);
	default:
		return true;
	}
}

static void conn_read(evutil_socket_t fd, short what, void *arg)
{
	struct lb_conn *c = arg;
	struct lb_be *be = c->be;
	struct timeval zero = {0, 0};

	(void)fd;
	(void)what;
	for (;;) {
		LDAPMessage *msg = NULL;
		int rc = ldap_result(c->ld, LDAP_RES_ANY, LDAP_MSG_ONE, &zero, &msg);
		int msgid;

		if (rc == 0)
			return;
		if (rc < 0) {
			conn_fail(c, "connection lost");
			return;
		}
		msgid = ldap_msgid(msg);
		if (c->state == LC_BINDING && msgid == c->msgid) {
			conn_up(c, msg);
			ldap_msgfree(msg);
			if (c->state != LC_UP)
				return;
			continue;
		}
		if (c->is_sync) {
			sync_msg(c, msg);
			ldap_msgfree(msg);
			if (c->state != LC_UP)
				return;
			continue;
		}
		{
			struct lb_op *op;
			bool alive = true;

			for (op = be->ops; op; op = op->next) {
				if (op->conn == c && op->msgid == msgid && !op->finishing)
					break;
			}
			if (op)
				alive = op_on_msg(op, msg);
			ldap_msgfree(msg);
			if (!alive || c->state != LC_UP)
				return;
		}
	}
}

/* The op's one timer: its deadline, a retry after a conflict, or a deferred answer. */
static void op_timer(evutil_socket_t fd, short what, void *arg)
{
	struct lb_op *op = arg;
	struct lb_be *be = op->be;
	int err;

	(void)fd;
	(void)what;
	if (op->finishing) {
		if (!op->fin_err && op->kind == LB_FIND && be->dir_ready)
			find_answer(op);
		else if (!op->fin_err && op->kind == LB_USER_ITER && be->dir_ready)
			user_iter_answer(op);
		else
			op_complete(op, op->fin_err, NULL, NULL);
		return;
	}
	if (op->retry && clock_mono_ns() < op->deadline_ns) {
		struct timeval tv;
		int64_t left = (op->deadline_ns - clock_mono_ns()) / 1000;

		op->retry = false;
		tv.tv_sec = left / 1000000;
		tv.tv_usec = left % 1000000;
		evtimer_add(op->ev, &tv);
		err = op->conn && op->conn->state == LC_UP ? send_apply_read(op) : op_dispatch(op);
		if (err)
			op_complete(op, err, NULL, NULL);
		return;
	}
	/* The deadline. A request still out on a connection means the server is stuck
	 * or gone: that connection is reset (its other ops fail with EAGAIN). */
	if (op->msgid >= 0 && op->conn)
		conn_broken(op->conn);
	op_complete(op, ETIMEDOUT, NULL, NULL);
}

/* ---- the vtable ------------------------------------------------------------------------ */

static void lb_close(void *p)
{
	struct lb_be *be = p;
	struct hmap_node *n, *tmp;
	size_t i;

	if (!be)
		return;
	be->closing = true;
	if (be->alive)
		*be->alive = false;
	be->alive = NULL;
	while (be->ops) {
		struct lb_op *op = be->ops;
		bool alive = true;

		op_release(op);
		op->msgid = -1;
		be->alive = &alive;
		op_complete(op, ECANCELED, NULL, NULL);
		be->alive = NULL;
	}
	for (i = 0; i < be->n_conns; i++) {
		conn_teardown(&be->conns[i]);
		if (be->conns[i].tmo)
			event_free(be->conns[i].tmo);
	}
	free(be->conns);
	if (be->users.buckets) {
		HMAP_FOREACH_SAFE(&be->users, n, tmp, i)
		user_unindex_free(be, hmap_entry(n, struct lb_user, by_name));
	}
	hmap_destroy(&be->users);
	hmap_destroy(&be->uuids);
	hmap_destroy(&be->aliases);
	free(be->instance_id);
	free(be);
}

static int lb_open(void **bep, const void *confp, struct event_base *base,
		   const char *instance_id)
{
	const struct ldap_conf *conf = confp;
	struct lb_be *be;
	int err;

	if (!bep || !conf || !base)
		return EINVAL;
	*bep = NULL;
	be = calloc(1, sizeof(*be));
	if (!be)
		return ENOMEM;
	be->conf = conf;
	be->base = base;
	be->instance_id = strdup(instance_id ? instance_id : "");
	be->n_conns = conf->pool + 1;
	be->conns = calloc(be->n_conns, sizeof(*be->conns));
	err = be->instance_id && be->conns ? 0 : ENOMEM;
	if (!err)
		err = hmap_init(&be->users, 1024);
	if (!err)
		err = hmap_init(&be->uuids, 1024);
	if (!err)
		err = hmap_init(&be->aliases, 64);
	for (size_t i = 0; !err && i < be->n_conns; i++) {
		struct lb_conn *c = &be->conns[i];

		c->be = be;
		c->fd = -1;
		c->msgid = -1;
		c->is_sync = i == be->n_conns - 1;
		/* Spread the pool over the URIs' order only on failure: all start at the first. */
		c->tmo = evtimer_new(base, conn_timer, c);
		if (!c->tmo)
			err = ENOMEM;
	}
	if (err) {
		lb_close(be);
		return err;
	}
	/* Connect from the loop: open() itself never waits for the network. */
	for (size_t i = 0; i < be->n_conns; i++)
		conn_arm(&be->conns[i], 0);
	*bep = be;
	return 0;
}

static int lb_apply(void *p, const struct reg_request *req, location_apply_h *cb, void *arg)
{
	struct lb_be *be = p;
	struct lb_op *op;
	char *esc = NULL;
	int err;

	if (be->closing)
		return ECANCELED;
	if (!req || (req->n_changes && !req->changes) || (req->wildcard && req->n_changes))
		return EINVAL;
	err = dn_escape(&req->aor, &esc);
	if (err)
		return err;
	op = op_new(be, LB_APPLY, arg);
	if (!op) {
		free(esc);
		return ENOMEM;
	}
	op->cb.apply = cb;
	op->now = req->now;
	op->req = *req;
	op->req.call_id = op->req.path = op->req.user_agent = op->req.instance_id = empty_str;
	op->req.changes = NULL;
	op->aor_dn = str_printf("sipregAor=%s,%s", esc, be->conf->bindings_base);
	free(esc);
	err = op->aor_dn ? 0 : ENOMEM;
	if (!err)
		err = str_dup(&op->aor, req->aor.p, req->aor.len);
	if (!err)
		err = str_dup(&op->req.call_id, req->call_id.p, req->call_id.len);
	if (!err)
		err = str_dup(&op->req.path, req->path.p, req->path.len);
	if (!err)
		err = str_dup(&op->req.user_agent, req->user_agent.p, req->user_agent.len);
	if (!err)
		err = str_dup(&op->req.instance_id, req->instance_id.p, req->instance_id.len);
	op->req.aor = op->aor;
	if (!err && req->n_changes) {
		op->changes = calloc(req->n_changes, sizeof(*op->changes));
		op->superseded = calloc(req->n_changes, sizeof(*op->superseded));
		err = op->changes && op->superseded ? 0 : ENOMEM;
	}
	op->req.n_changes = err ? 0 : req->n_changes;
	for (size_t i = 0; !err && i < req->n_changes; i++) {
		const struct reg_change *ch = &req->changes[i];

		op->changes[i] = *ch;
		op->changes[i].contact = op->changes[i].key = op->changes[i].instance = empty_str;
		err = str_dup(&op->changes[i].contact, ch->contact.p, ch->contact.len);
		if (!err)
			err = str_dup(&op->changes[i].key, ch->key.p, ch->key.len);
		if (!err)
			err = str_dup(&op->changes[i].instance, ch->instance.p, ch->instance.len);
	}
	/* Two contacts of one request with the same key: the last one counts. */
	for (size_t i = 0; !err && i < req->n_changes; i++) {
		for (size_t j = i + 1; j < req->n_changes && !op->superseded[i]; j++)
			op->superseded[i] = sip_str_eq(&op->changes[i].key, &op->changes[j].key);
	}
	if (!err)
		err = op_dispatch(op);
	if (err) {
		op_unlink(op);
		op_free(op);
	}
	return err;
}

static int bindings_op(struct lb_be *be, enum lb_kind kind, const struct sip_str *aor,
		       const struct sip_str *key, int64_t now, void *arg, struct lb_op **opp)
{
	struct lb_op *op;
	int err = 0;

	if (be->closing)
		return ECANCELED;
	op = op_new(be, kind, arg);
	if (!op)
		return ENOMEM;
	op->now = now;
	if (aor)
		err = str_dup(&op->aor, aor->p, aor->len);
	if (!err && key)
		err = str_dup(&op->s1, key->p, key->len);
	*opp = op;
	return err;
}

static int op_start(struct lb_op *op, int err)
{
	if (!err)
		err = op_dispatch(op);
	if (err) {
		op_unlink(op);
		op_free(op);
	}
	return err;
}

static int lb_fetch(void *p, const struct sip_str *aor, int64_t now, location_fetch_h *cb,
		    void *arg)
{
	struct lb_op *op = NULL;
	int err = bindings_op(p, LB_FETCH, aor, NULL, now, arg, &op);

	if (op)
		op->cb.fetch = cb;
	return op ? op_start(op, err) : err;
}

static int lb_iterate(void *p, int64_t now, location_iter_h *cb, void *arg)
{
	struct lb_op *op = NULL;
	int err = bindings_op(p, LB_ITERATE, NULL, NULL, now, arg, &op);

	if (op)
		op->cb.iterate = cb;
	return op ? op_start(op, err) : err;
}

static int lb_unbind(void *p, const struct sip_str *aor, const struct sip_str *contact,
		     location_done_h *cb, void *arg)
{
	struct lb_op *op = NULL;
	int err = bindings_op(p, LB_UNBIND, aor, contact, (int64_t)time(NULL), arg, &op);

	if (op)
		op->cb.done = cb;
	return op ? op_start(op, err) : err;
}

/* find and user_iter answer from the mirror, once it holds a complete load. */
static int dir_op(struct lb_be *be, struct lb_op *op)
{
	if (be->dir_ready) {
		op_defer(op, 0);
		return 0;
	}
	op->dir_waiting = true;
	op->qnext = be->dir_wait;
	be->dir_wait = op;
	return 0;
}

static int lb_find_user(void *p, const struct sip_str *user, const struct sip_str *domain,
			directory_find_h *cb, void *arg)
{
	struct lb_be *be = p;
	struct lb_op *op;
	int err;

	if (be->closing)
		return ECANCELED;
	op = op_new(be, LB_FIND, arg);
	if (!op)
		return ENOMEM;
	op->cb.find_user = cb;
	err = str_dup(&op->s1, user->p, user->len);
	if (!err)
		err = str_dup(&op->s2, domain->p, domain->len);
	if (err) {
		op_unlink(op);
		op_free(op);
		return err;
	}
	return dir_op(be, op);
}

static int lb_user_iter(void *p, directory_iter_h *cb, void *arg)
{
	struct lb_be *be = p;
	struct lb_op *op;

	if (be->closing)
		return ECANCELED;
	op = op_new(be, LB_USER_ITER, arg);
	if (!op)
		return ENOMEM;
	op->cb.user_iter = cb;
	return dir_op(be, op);
}

static int user_copy(struct lb_op *op, const struct dir_user *u)
{
	int err = str_dup(&op->user.username, u->username.p, u->username.len);

	if (!err)
		err = str_dup(&op->user.domain, u->domain.p, u->domain.len);
	if (!err)
		err = str_dup(&op->user.ha1_md5, u->ha1_md5.p, u->ha1_md5.len);
	if (!err)
		err = str_dup(&op->user.ha1_sha256, u->ha1_sha256.p, u->ha1_sha256.len);
	if (!err)
		err = str_dup(&op->user.password, u->password.p, u->password.len);
	op->user.enabled = u->enabled;
	op->user.auth_off = u->auth_off;
	op->user.max_contacts = u->max_contacts;
	if (!err && u->n_aliases) {
		op->aliases = calloc(u->n_aliases, sizeof(*op->aliases));
		err = op->aliases ? 0 : ENOMEM;
	}
	for (size_t i = 0; !err && i < u->n_aliases; i++) {
		err = str_dup(&op->aliases[i], u->aliases[i].p, u->aliases[i].len);
		op->user.n_aliases = i + 1;
	}
	op->user.aliases = op->aliases;
	return err;
}

/* User names and domains go into DNs and IA5 attributes: printable ASCII only. */
static bool provisionable(const struct sip_str *s)
{
	for (size_t i = 0; i < s->len; i++) {
		if ((unsigned char)s->p[i] < 0x21 || (unsigned char)s->p[i] > 0x7e)
			return false;
	}
	return s->len > 0;
}

static int lb_user_put(void *p, const struct dir_user *u, enum dir_put mode,
		       location_done_h *cb, void *arg)
{
	struct lb_be *be = p;
	struct lb_op *op;

	if (be->closing)
		return ECANCELED;
	if (!provisionable(&u->username) || (u->domain.len && !provisionable(&u->domain)) ||
	    u->n_aliases > 7)
		return EINVAL;
	op = op_new(be, LB_PUT, arg);
	if (!op)
		return ENOMEM;
	op->cb.done = cb;
	op->mode = mode;
	return op_start(op, user_copy(op, u));
}

static int lb_user_del(void *p, const struct sip_str *user, const struct sip_str *domain,
		       location_done_h *cb, void *arg)
{
	struct lb_be *be = p;
	struct dir_user u = {.username = *user, .domain = *domain};
	struct lb_op *op;

	if (be->closing)
		return ECANCELED;
	if (!provisionable(user))
		return EINVAL;
	op = op_new(be, LB_DEL, arg);
	if (!op)
		return ENOMEM;
	op->cb.done = cb;
	return op_start(op, user_copy(op, &u));
}

const struct location_backend location_backend_ldap = {
    .name = "ldap",
    .configure = ldap_be_configure,
    .conf_free = ldap_be_conf_free,
    .same_store = ldap_be_same_store,
    .open = lb_open,
    .close = lb_close,
    .apply = lb_apply,
    .fetch = lb_fetch,
    .iterate = lb_iterate,
    .find_user = lb_find_user,
    .user_put = lb_user_put,
    .user_del = lb_user_del,
    .user_iter = lb_user_iter,
    .unbind = lb_unbind,
};
