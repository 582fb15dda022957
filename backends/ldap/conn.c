/* Inside the ldap backend: the connections: asynchronous connect and bind, failover over
 * the URIs, backoff with jitter, the queue of ops waiting for one, reading responses. */
#include "internal.h"

static void conn_read(evutil_socket_t fd, short what, void *arg);
static void conn_writable(evutil_socket_t fd, short what, void *arg);

uint32_t lb_jitter(uint32_t max)
{
	uint32_t r = 0;

	if (max == 0 || getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		return max / 2;
	return r % max;
}

void lb_conn_arm(struct lb_conn *c, uint32_t ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	evtimer_add(c->tmo, &tv);
}

void lb_conn_teardown(struct lb_conn *c)
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
		lb_conn_fail(c, "out of memory");
		return;
	}
	if (rc != LDAP_SUCCESS || fd < 0) {
		lb_conn_fail(c, ldap_err2string(rc));
		return;
	}
	c->fd = fd;
	c->state = LC_BINDING;
	c->rev = event_new(c->be->base, fd, EV_READ | EV_PERSIST, conn_read, c);
	if (!c->rev || event_add(c->rev, NULL) != 0)
		lb_conn_fail(c, "out of memory");
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
		lb_conn_fail(c, ldap_err2string(rc));
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
	lb_conn_arm(c, conf->timeout_ms);
	if (conf->starttls && strncmp(conf->uris[c->uri_idx], "ldap://", 7) == 0) {
		/* The handshake of ldap_start_tls_s is bounded by the network timeout; it runs
		 * at connect time only, never on a request's path. */
		rc = ldap_start_tls_s(c->ld, NULL, NULL);
		if (rc != LDAP_SUCCESS) {
			lb_conn_fail(c, ldap_err2string(rc));
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
void lb_queue_run(struct lb_be *be)
{
	while (be->qhead) {
		struct lb_op *op = be->qhead;
		int err;

		be->qhead = op->qnext;
		if (!be->qhead)
			be->qtail = NULL;
		be->n_queued--;
		op->queued = false;
		err = lb_op_dispatch(op);
		if (err)
			lb_op_defer(op, err);
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
void lb_conn_fail(struct lb_conn *c, const char *why)
{
	struct lb_be *be = c->be;
	struct lb_op *op, *next;

	log_limited(&be->ll_conn, LOG_WARN, "ldap: %s: %s", be->conf->uris[c->uri_idx],
		    why);
	lb_conn_teardown(c);
	c->uri_idx = (c->uri_idx + 1) % be->conf->n_uris;
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : LB_BACKOFF_MIN_MS;
	if (c->backoff_ms > LB_BACKOFF_MAX_MS)
		c->backoff_ms = LB_BACKOFF_MAX_MS;
	lb_conn_arm(c, c->backoff_ms / 2 + lb_jitter(c->backoff_ms / 2 + 1));
	if (c->is_sync)
		be->refreshing = false;
	for (op = be->ops; op; op = next) {
		next = op->next;
		if (op->conn == c && !op->finishing) {
			lb_op_release(op);
			op->msgid = -1;
			lb_op_defer(op, EAGAIN);
		}
	}
}

void lb_conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct lb_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->broken) {
		c->broken = false;
		lb_conn_fail(c, "connection lost");
	} else if (c->state == LC_DOWN) {
		conn_start(c);
	} else if (c->state == LC_CONNECTING || c->state == LC_BINDING) {
		lb_conn_fail(c, "connect timed out");
	} else if (c->is_sync && !c->be->refreshing) {
		lb_sync_start(c); /* the next re-read where the server has no syncprov */
	}
}

static void conn_up(struct lb_conn *c, LDAPMessage *msg)
{
	int rc = LDAP_OTHER;

	if (ldap_parse_result(c->ld, msg, &rc, NULL, NULL, NULL, NULL, 0) != LDAP_SUCCESS ||
	    rc != LDAP_SUCCESS) {
		lb_conn_fail(c, rc == LDAP_OTHER ? "bind failed" : ldap_err2string(rc));
		return;
	}
	evtimer_del(c->tmo);
	c->state = LC_UP;
	c->backoff_ms = 0;
	c->msgid = -1;
	if (c->is_sync)
		lb_sync_start(c);
	else
		lb_queue_run(c->be);
}

struct lb_conn *lb_conn_pick(struct lb_be *be)
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
bool lb_conn_pick_busy(const struct lb_be *be)
{
	for (size_t i = 0; i + 1 < be->n_conns; i++) {
		if (be->conns[i].state == LC_UP && !be->conns[i].broken)
			return true;
	}
	return false;
}

bool lb_conn_any_connecting(const struct lb_be *be)
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
void lb_conn_broken(struct lb_conn *c)
{
	struct timeval zero = {0, 0};

	c->broken = true;
	evtimer_add(c->tmo, &zero);
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
			lb_conn_fail(c, "connection lost");
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
			lb_sync_msg(c, msg);
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
				alive = lb_op_on_msg(op, msg);
			ldap_msgfree(msg);
			if (!alive || c->state != LC_UP)
				return;
		}
	}
}
