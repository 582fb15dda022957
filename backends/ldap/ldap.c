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
 *   read, so two instances never interleave their writes for one AOR and CSeq order holds.
 * - Expiry: sweep.c removes expired binding entries and empty AOR entries every sweep_s,
 *   in batches, each delete under an assertion that keeps it safe against a REGISTER.
 *   Listings (iterate) page with RFC 2696 so no search meets the server's size limit. */
#include "internal.h"

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

		lb_op_release(op);
		op->msgid = -1;
		be->alive = &alive;
		lb_op_complete(op, ECANCELED, NULL, NULL);
		be->alive = NULL;
	}
	lb_sweep_fini(be);
	for (i = 0; i < be->n_conns; i++) {
		lb_conn_teardown(&be->conns[i]);
		if (be->conns[i].tmo)
			event_free(be->conns[i].tmo);
	}
	free(be->conns);
	if (be->users.buckets) {
		HMAP_FOREACH_SAFE(&be->users, n, tmp, i)
		lb_user_unindex_free(be, hmap_entry(n, struct lb_user, by_name));
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
		c->tmo = evtimer_new(base, lb_conn_timer, c);
		if (!c->tmo)
			err = ENOMEM;
	}
	if (!err)
		err = lb_sweep_init(be);
	if (err) {
		lb_close(be);
		return err;
	}
	/* Connect from the loop: open() itself never waits for the network. */
	for (size_t i = 0; i < be->n_conns; i++)
		lb_conn_arm(&be->conns[i], 0);
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
	err = lb_dn_escape(&req->aor, &esc);
	if (err)
		return err;
	op = lb_op_new(be, LB_APPLY, arg);
	if (!op) {
		free(esc);
		return ENOMEM;
	}
	op->cb.apply = cb;
	op->now = req->now;
	op->req = *req;
	op->req.call_id = op->req.path = op->req.user_agent = op->req.instance_id = empty_str;
	op->req.changes = NULL;
	op->aor_dn = lb_str_printf("sipregAor=%s,%s", esc, be->conf->bindings_base);
	free(esc);
	err = op->aor_dn ? 0 : ENOMEM;
	if (!err)
		err = lb_str_dup(&op->aor, req->aor.p, req->aor.len);
	if (!err)
		err = lb_str_dup(&op->req.call_id, req->call_id.p, req->call_id.len);
	if (!err)
		err = lb_str_dup(&op->req.path, req->path.p, req->path.len);
	if (!err)
		err = lb_str_dup(&op->req.user_agent, req->user_agent.p, req->user_agent.len);
	if (!err)
		err = lb_str_dup(&op->req.instance_id, req->instance_id.p, req->instance_id.len);
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
		err = lb_str_dup(&op->changes[i].contact, ch->contact.p, ch->contact.len);
		if (!err)
			err = lb_str_dup(&op->changes[i].key, ch->key.p, ch->key.len);
		if (!err)
			err = lb_str_dup(&op->changes[i].instance, ch->instance.p, ch->instance.len);
	}
	/* Two contacts of one request with the same key: the last one counts. */
	for (size_t i = 0; !err && i < req->n_changes; i++) {
		for (size_t j = i + 1; j < req->n_changes && !op->superseded[i]; j++)
			op->superseded[i] = sip_str_eq(&op->changes[i].key, &op->changes[j].key);
	}
	if (!err)
		err = lb_op_dispatch(op);
	if (err) {
		lb_op_unlink(op);
		lb_op_free(op);
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
	op = lb_op_new(be, kind, arg);
	if (!op)
		return ENOMEM;
	op->now = now;
	if (aor)
		err = lb_str_dup(&op->aor, aor->p, aor->len);
	if (!err && key)
		err = lb_str_dup(&op->s1, key->p, key->len);
	*opp = op;
	return err;
}

static int op_start(struct lb_op *op, int err)
{
	if (!err)
		err = lb_op_dispatch(op);
	if (err) {
		lb_op_unlink(op);
		lb_op_free(op);
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
		lb_op_defer(op, 0);
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
	op = lb_op_new(be, LB_FIND, arg);
	if (!op)
		return ENOMEM;
	op->cb.find_user = cb;
	err = lb_str_dup(&op->s1, user->p, user->len);
	if (!err)
		err = lb_str_dup(&op->s2, domain->p, domain->len);
	if (err) {
		lb_op_unlink(op);
		lb_op_free(op);
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
	op = lb_op_new(be, LB_USER_ITER, arg);
	if (!op)
		return ENOMEM;
	op->cb.user_iter = cb;
	return dir_op(be, op);
}

static int user_copy(struct lb_op *op, const struct dir_user *u)
{
	int err = lb_str_dup(&op->user.username, u->username.p, u->username.len);

	if (!err)
		err = lb_str_dup(&op->user.domain, u->domain.p, u->domain.len);
	if (!err)
		err = lb_str_dup(&op->user.ha1_md5, u->ha1_md5.p, u->ha1_md5.len);
	if (!err)
		err = lb_str_dup(&op->user.ha1_sha256, u->ha1_sha256.p, u->ha1_sha256.len);
	if (!err)
		err = lb_str_dup(&op->user.password, u->password.p, u->password.len);
	op->user.enabled = u->enabled;
	op->user.auth_off = u->auth_off;
	op->user.max_contacts = u->max_contacts;
	if (!err && u->n_aliases) {
		op->aliases = calloc(u->n_aliases, sizeof(*op->aliases));
		err = op->aliases ? 0 : ENOMEM;
	}
	for (size_t i = 0; !err && i < u->n_aliases; i++) {
		err = lb_str_dup(&op->aliases[i], u->aliases[i].p, u->aliases[i].len);
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
	    u->n_aliases > LB_ALIASES_MAX)
		return EINVAL;
	for (size_t i = 0; i < u->n_aliases; i++) {
		if (!provisionable(&u->aliases[i]))
			return EINVAL;
	}
	op = lb_op_new(be, LB_PUT, arg);
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
	op = lb_op_new(be, LB_DEL, arg);
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
