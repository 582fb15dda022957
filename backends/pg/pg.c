/* The PostgreSQL backend: the location service and the directory in one database shared by
 * every sipregd of a cluster (and read by its proxies), over asynchronous libpq.
 *
 * DESIGN: the moving parts, all on the caller's libevent loop, nothing ever blocks.
 * - Connections: a small pool (conf->pool, default 4). Each first looks the conninfo's
 *   host names up with c-ares on the loop (resolve.c; libpq would call getaddrinfo and
 *   block), then connects to the addresses (hostaddr) with
 *   PQconnectStartParams/PQconnectPoll driven by socket readiness, all under one timer
 *   (timeout_ms), then enters pipeline mode, sets lock_timeout and prepares every
 *   statement (itself pipelined); only then is it READY. A broken connection (read/write failure, CONNECTION_BAD, SQLSTATE class
 *   08, a timed-out query) fails the operations it carried and reconnects after a backoff
 *   (100 ms doubling to 5 s, with +-12.5 % jitter drawn from getrandom(2), logged).
 * - Operations: each call copies its request into a struct pg_op (parameters already in
 *   PostgreSQL's binary format: byte strings stay bytes, NUL included) and either sends it
 *   at once or waits in one bounded FIFO. Each op is one PQsendQueryPrepared; a connection
 *   has at most PG_SYNCS_INFLIGHT transactions in flight, and what waited meanwhile goes
 *   as the next transaction: up to PG_BATCH_MAX statements and one PQpipelineSync, so one
 *   commit (one WAL flush with synchronous_commit on) serves them all. Low load: one op per
 *   transaction, no added latency; high load: batches grow by themselves. Callbacks run
 *   only after the Sync's ReadyForQuery, i.e. after COMMIT; if any statement of a batch
 *   failed, the batch rolled back and every op of it fails. A batch's statements are
 *   ordered by the AOR's lock key (XXH3-64 of its bytes; stable, so one AOR's ops keep their
 *   order), and sipreg_apply locks exactly that key: one global lock order on every
 *   instance, so the AOR locks of two batches cannot deadlock. Sweeps and
 *   listings go alone. An apply is one round trip: the stored function sipreg_apply()
 *   (sql/migrations/) locks the AOR and applies RFC 3261 §10.3 step 7.
 * - Fail fast: with no connection up or connecting, or the queue full, a call returns EAGAIN
 *   at once (the registrar answers 503 + Retry-After). Every op has a timer (timeout_ms,
 *   default 2000): a queued op that times out completes with ETIMEDOUT; one already sent
 *   takes its connection down with it, since a healthy server answers within lock_timeout.
 * - Directory: find_user results (found or not) are cached for PG_CACHE_TTL_S seconds; the
 *   users/domains tables NOTIFY sipreg_users on every change, which connection 0 LISTENs to
 *   and which empties the cache (as does a reconnect of connection 0: it may have missed a
 *   notification). Cache hits complete through a deferred event, never inside the call.
 * - Sweeper: connection 0 tries to hold a session advisory lock (the lease); the instance
 *   holding it runs sipreg_sweep() every PG_SWEEP_INTERVAL_S, so N instances do not all
 *   sweep. The lease moves when its holder's connection goes away. A sweep statement
 *   removes at most PG_SWEEP_BATCH rows and skips rows an apply holds (it never waits, so
 *   it cannot deadlock with batches); a full one is followed by the next at once. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pg_conf.h"
#include "internal.h"
#include "pg_schema.h"

/* ---- the vtable ------------------------------------------------------------------------ */

static void pg_close(void *p);

struct migrate_wait {
	struct event_base *base;
	bool done;
	int err;
};

static void migrate_resolved(int err, void *arg)
{
	struct migrate_wait *w = arg;

	w->done = true;
	w->err = err;
	event_base_loopbreak(w->base);
}

/* location.migrate: bring the schema up to date before the loop runs. Synchronous on
 * purpose: it runs once at start-up, before any request is read, and the daemon must not
 * serve against a schema it does not know. Its host names go through the backend's own
 * resolver (resolv_conf), on a loop of its own, bounded by timeout_ms like any connect.
 * Concurrency-safe like `sipregctl db migrate` (the runner serialises on an advisory lock).
 * Returns 0, EIO or ENOMEM. */
static int pg_migrate_at_start(const struct pg_conf *conf, unsigned timeout_ms)
{
	const char *keys[6] = {"application_name", "dbname"};
	const char *vals[6] = {"sipregd-migrate", conf->conninfo};
	struct migrate_wait w = {.base = event_base_new()};
	struct pg_lookup *l = NULL;
	PGconn *mc = NULL;
	char err[512];
	size_t n = 2;
	int from = 0, to = 0, rc = ENOMEM;

	if (!w.base || pg_lookup_start(&l, w.base, conf->conninfo, conf->resolv_conf,
				       migrate_resolved, &w)) {
		log_err("pg: migrate: out of memory");
		goto out;
	}
	rc = EIO;
	if (l) {
		struct timeval tv = {.tv_sec = timeout_ms / 1000,
				     .tv_usec = (timeout_ms % 1000) * 1000};

		event_base_loopexit(w.base, &tv);
		event_base_dispatch(w.base);
		if (!w.done || w.err) {
			const char *why = !w.done ? pg_lookup_timed_out(l, timeout_ms)
						  : pg_lookup_why(l);

			log_err("pg: migrate: cannot connect: %s", why[0] ? why : strerror(w.err));
			goto out;
		}
		n += pg_lookup_params(l, keys + n, vals + n);
	}
	keys[n] = NULL;
	vals[n] = NULL;
	mc = PQconnectdbParams(keys, vals, 1);
	if (!mc) {
		log_err("pg: migrate: out of memory");
		rc = ENOMEM;
		goto out;
	}
	if (PQstatus(mc) != CONNECTION_OK) {
		log_err("pg: migrate: cannot connect: %s", PQerrorMessage(mc));
		goto out;
	}
	if (pg_schema_migrate(mc, &from, &to, err, sizeof(err)) != 0) {
		log_err("pg: migrate: %s", err);
		goto out;
	}
	if (from != to)
		log_info("pg: migrated the schema from version %d to %d", from, to);
	else
		log_info("pg: schema at version %d, up to date", to);
	rc = 0;
out:
	PQfinish(mc);
	pg_lookup_free(&l);
	if (w.base)
		event_base_free(w.base);
	return rc;
}

static int pg_open(void **bep, const void *confp, struct event_base *base,
		   const char *instance_id)
{
	const struct pg_conf *conf = confp;
	struct pg_be *be;
	struct timeval tv = {.tv_sec = 1};
	int err = ENOMEM;

	if (!conf->conninfo) {
		log_err("pg: no conninfo configured (location/directory: {backend: pg, "
			"conninfo: \"...\"})");
		return EINVAL;
	}
	if (conf->migrate) {
		int merr = pg_migrate_at_start(
		    conf, conf->timeout_ms ? conf->timeout_ms : PG_DEFAULT_TIMEOUT_MS);

		if (merr)
			return merr;
	}
	be = calloc(1, sizeof(*be));
	if (!be)
		return ENOMEM;
	be->base = base;
	be->pool = conf->pool ? conf->pool : PG_DEFAULT_POOL;
	if (be->pool > PG_MAX_POOL)
		be->pool = PG_MAX_POOL;
	be->timeout_ms = conf->timeout_ms ? conf->timeout_ms : PG_DEFAULT_TIMEOUT_MS;
	be->max_queued = (size_t)be->pool * PG_QUEUE_PER_CONN;
	/* Lock waits end on the server before our own timer gives up on the connection. */
	snprintf(be->lock_timeout_sql, sizeof(be->lock_timeout_sql), "SET lock_timeout = %u",
		 be->timeout_ms * 3 / 4 ? be->timeout_ms * 3 / 4 : 1);
	be->conninfo = strdup(conf->conninfo);
	/* Requests carry their own registered_by; this one names the qualify states the
	 * instance stores (the lease is per session). */
	be->instance_id = strdup(instance_id ? instance_id : "");
	be->resolv_conf = conf->resolv_conf ? strdup(conf->resolv_conf) : NULL;
	be->conns = calloc(be->pool, sizeof(*be->conns));
	if (!be->conninfo || !be->instance_id || (conf->resolv_conf && !be->resolv_conf) || !be->conns ||
	    hmap_init(&be->cache, 64))
		goto fail;
	event_assign(&be->defer_ev, base, -1, 0, pg_be_defer_run, be);
	evtimer_assign(&be->sweep_ev, base, pg_be_sweep_tick, be);
	for (unsigned i = 0; i < be->pool; i++) {
		struct pg_conn *c = &be->conns[i];

		c->be = be;
		c->idx = i;
		evtimer_assign(&c->timer, base, pg_conn_timer, c);
		event_assign(&c->failev, base, -1, 0, pg_conn_failev, c);
	}
	for (unsigned i = 0; i < be->pool; i++)
		pg_conn_start(&be->conns[i]);
	evtimer_add(&be->sweep_ev, &tv);
	*bep = be;
	return 0;
fail:
	pg_close(be);
	return err;
}

static void pg_close(void *p)
{
	struct pg_be *be = p;
	struct pg_op *op;

	if (!be)
		return;
	be->closing = true;
	if (be->listing && !be->listing->final_sent) {
		be->listing->final_sent = true;
		if (be->listing->kind == PG_USER_ITER)
			be->listing->cb.user_iter(ECANCELED, NULL, be->listing->arg);
		else
			be->listing->cb.iterate(ECANCELED, NULL, be->listing->arg);
	}
	for (unsigned i = 0; be->conns && i < be->pool; i++) {
		struct pg_conn *c = &be->conns[i];

		if (!c->be)
			continue; /* open failed before this one was set up */
		pg_conn_unwatch(c);
		evtimer_del(&c->timer);
		event_del(&c->failev);
		pg_lookup_free(&c->lookup); /* cancelled: its callback never runs */
		for (;;) {
			struct pg_op **hp = c->whead ? &c->whead : &c->head;

			op = *hp;
			if (!op)
				break;
			*hp = op->next;
			op->conn = NULL;
			op->err = ECANCELED;
			PQclear(op->res);
			op->res = NULL;
			pg_op_deliver(op);
		}
		c->tail = NULL;
		c->wtail = NULL;
		if (c->pc)
			PQfinish(c->pc);
		c->pc = NULL;
		c->state = PC_DOWN;
	}
	while ((op = be->qhead)) {
		pg_queue_unlink(be, op);
		op->err = ECANCELED;
		pg_op_deliver(op);
	}
	while ((op = be->dhead)) {
		be->dhead = op->next;
		if (!be->dhead)
			be->dtail = NULL;
		op->err = ECANCELED;
		pg_cached_unref(op->hit);
		op->hit = NULL;
		pg_op_deliver(op);
	}
	if (be->busy) {
		be->dead = true; /* inside one of our handlers: it frees on the way out */
		return;
	}
	pg_be_free(be);
}

static int pg_apply(void *p, const struct reg_request *req, location_apply_h *cb, void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op = pg_op_new(be, PG_APPLY, arg);
	size_t n = req->n_changes;
	bool q_null = false;

	if (!op)
		return ENOMEM;
	op->cb.apply = cb;
	op->stmt = STMT_APPLY;
	pg_param_bytes(op, 0, &req->aor);
	op->aor_off = op->off[0];
	op->aor_len = req->aor.len;
	op->has_affinity = true;
	op->affinity = hmap_hash(req->aor.p ? req->aor.p : "", req->aor.len);
	op->order = pg_lock_key(&req->aor);
	pg_param_bytes(op, 1, &req->call_id);
	pg_param_i64(op, 2, req->cseq);
	pg_param_bool(op, 3, req->wildcard);
	pg_array_begin(op, 4, OID_BYTEA, n, false);
	for (size_t i = 0; i < n; i++) {
		pg_buf_i32(&op->buf, (int32_t)req->changes[i].contact.len);
		pg_buf_put(&op->buf, req->changes[i].contact.p, req->changes[i].contact.len);
	}
	pg_param_end(op, 4);
	pg_array_begin(op, 5, OID_BYTEA, n, false);
	for (size_t i = 0; i < n; i++) {
		pg_buf_i32(&op->buf, (int32_t)req->changes[i].key.len);
		pg_buf_put(&op->buf, req->changes[i].key.p, req->changes[i].key.len);
	}
	pg_param_end(op, 5);
	pg_array_begin(op, 6, OID_INT4, n, false);
	for (size_t i = 0; i < n; i++) {
		pg_buf_i32(&op->buf, 4);
		pg_buf_i32(&op->buf, pg_clamp_i32(req->changes[i].expires));
	}
	pg_param_end(op, 6);
	for (size_t i = 0; i < n; i++)
		q_null |= req->changes[i].q == Q_NONE;
	pg_array_begin(op, 7, OID_INT4, n, q_null);
	for (size_t i = 0; i < n; i++) {
		if (req->changes[i].q == Q_NONE) {
			pg_buf_i32(&op->buf, -1);
			continue;
		}
		pg_buf_i32(&op->buf, 4);
		pg_buf_i32(&op->buf, req->changes[i].q);
	}
	pg_param_end(op, 7);
	pg_array_begin(op, 8, OID_BYTEA, n, false);
	for (size_t i = 0; i < n; i++) {
		pg_buf_i32(&op->buf, (int32_t)req->changes[i].instance.len);
		pg_buf_put(&op->buf, req->changes[i].instance.p, req->changes[i].instance.len);
	}
	pg_param_end(op, 8);
	pg_array_begin(op, 9, OID_INT8, n, false);
	for (size_t i = 0; i < n; i++) {
		pg_buf_i32(&op->buf, 8);
		pg_buf_i64(&op->buf, req->changes[i].reg_id);
	}
	pg_param_end(op, 9);
	pg_param_i32(op, 10, pg_clamp_i32(req->max_contacts));
	pg_param_bytes(op, 11, &req->path);
	pg_param_bytes(op, 12, &req->user_agent);
	{
		struct sip_str proto = sip_str_c(sip_proto_name(req->source.proto));
		size_t iplen = strnlen(req->source.ip, sizeof(req->source.ip));
		struct sip_str ip = {.p = req->source.ip, .len = iplen};

		pg_param_bytes(op, 13, &proto);
		pg_param_bytes(op, 14, &ip);
	}
	pg_param_i32(op, 15, req->source.port);
	pg_param_i64(op, 16, (int64_t)req->source.conn_id);
	pg_param_bytes(op, 17, &req->instance_id);
	pg_param_i64(op, 18, req->now);
	pg_param_i64(op, 19, (int64_t)op->order); /* the same bits, as PostgreSQL's bigint */
	for (size_t i = 0; i < n; i++) {
		if (req->changes[i].contact.len > INT32_MAX / 2 ||
		    req->changes[i].key.len > INT32_MAX / 2 ||
		    req->changes[i].instance.len > INT32_MAX / 2)
			op->buf.oom = true;
	}
	return pg_op_submit(be, op);
}

static int pg_fetch(void *p, const struct sip_str *aor, int64_t now, location_fetch_h *cb,
		    void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op = pg_op_new(be, PG_FETCH, arg);

	if (!op)
		return ENOMEM;
	op->cb.fetch = cb;
	op->stmt = STMT_FETCH;
	pg_param_bytes(op, 0, aor);
	op->aor_off = op->off[0];
	op->aor_len = aor->len;
	op->has_affinity = true;
	op->affinity = hmap_hash(aor->p ? aor->p : "", aor->len);
	op->order = pg_lock_key(aor);
	pg_param_i64(op, 1, now);
	return pg_op_submit(be, op);
}

static int pg_iterate(void *p, int64_t now, location_iter_h *cb, void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op = pg_op_new(be, PG_ITERATE, arg);

	if (!op)
		return ENOMEM;
	op->cb.iterate = cb;
	op->stmt = STMT_ITERATE;
	op->alone = true;
	pg_param_i64(op, 0, now);
	pg_param_i64(op, 1, 0); /* the page key: ids start at 1 */
	return pg_op_submit(be, op);
}

/* Valid UTF-8 without NUL: what a text parameter (the domain) may carry. */
static bool utf8_text_ok(const struct sip_str *s)
{
	const unsigned char *p = (const unsigned char *)s->p;
	size_t i = 0;

	while (i < s->len) {
		unsigned char ch = p[i];
		size_t n;

		if (ch == 0)
			return false;
		if (ch < 0x80) {
			i++;
			continue;
		}
		if (ch >= 0xc2 && ch <= 0xdf)
			n = 1;
		else if (ch >= 0xe0 && ch <= 0xef)
			n = 2;
		else if (ch >= 0xf0 && ch <= 0xf4)
			n = 3;
		else
			return false;
		for (size_t k = 1; k <= n; k++) {
			if (i + k >= s->len || (p[i + k] & 0xc0) != 0x80)
				return false;
		}
		i += n + 1;
	}
	return true;
}

static int pg_find_user(void *p, const struct sip_str *user, const struct sip_str *domain,
			directory_find_h *cb, void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op;
	struct pg_cached_user *cu;
	size_t klen;

	if (user->len > 4096 || domain->len > 1024)
		return EINVAL;
	op = pg_op_new(be, PG_FIND_USER, arg);
	if (!op)
		return ENOMEM;
	op->cb.find_user = cb;
	op->stmt = STMT_FIND_USER;
	/* The cache key sits in the buffer after the parameters: user '@' domain. */
	pg_param_bytes(op, 0, user);
	pg_param_bytes(op, 1, domain);
	op->user_off = op->buf.len;
	pg_buf_put(&op->buf, "", 0);
	{
		char key[4096 + 1 + 1024];

		klen = pg_cache_key(key, user, domain);
		pg_buf_put(&op->buf, key, klen);
		op->user_len = user->len;
		op->domain_len = domain->len;
		if (op->buf.oom) {
			pg_op_free(op);
			return ENOMEM;
		}
		cu = pg_cache_find(be, key, klen);
		if (!cu && !utf8_text_ok(domain)) {
			/* No domain is spelled like that: a negative answer without asking. */
			cu = calloc(1, sizeof(*cu) + klen);
			if (!cu) {
				pg_op_free(op);
				return ENOMEM;
			}
			cu->refs = 1;
			cu->key = cu->data;
			memcpy(cu->key, key, klen);
			cu->key_len = klen;
			op->hit = cu;
		} else if (cu) {
			cu->refs++;
			op->hit = cu;
		}
	}
	if (op->hit) {
		pg_defer_op(be, op); /* answer from the cache, after the call returns */
		return 0;
	}
	return pg_op_submit(be, op);
}

/* The columns add and update share: $1..$8 of STMT_USER_ADD/UPDATE. */
static int user_params(struct pg_op *op, const struct dir_user *u)
{
	if (u->username.len == 0 || u->username.len > 4096 || !utf8_text_ok(&u->domain) ||
	    u->domain.len == 0 || u->n_aliases > 4096)
		return EINVAL;
	/* Only HA1s are stored: a clear password is the caller's to turn into them. */
	if (u->password.len)
		return EINVAL;
	pg_param_bytes(op, 0, &u->username);
	pg_param_bytes(op, 1, &u->domain);
	pg_param_bytes(op, 2, &u->ha1_md5);
	pg_param_bytes(op, 3, &u->ha1_sha256);
	pg_param_bool(op, 4, u->enabled);
	pg_param_bool(op, 5, u->auth_off);
	pg_param_i32(op, 6, pg_clamp_i32(u->max_contacts));
	pg_array_begin(op, 7, OID_BYTEA, u->n_aliases, false);
	for (size_t i = 0; i < u->n_aliases; i++) {
		pg_buf_i32(&op->buf, (int32_t)u->aliases[i].len);
		pg_buf_put(&op->buf, u->aliases[i].p, u->aliases[i].len);
	}
	pg_param_end(op, 7);
	return op->buf.oom ? ENOMEM : 0;
}

static int pg_user_put(void *p, const struct dir_user *u, enum dir_put mode, location_done_h *cb,
		       void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op = pg_op_new(be, PG_DONE, arg);
	int err;

	if (!op)
		return ENOMEM;
	op->cb.done = cb;
	op->stmt = mode == DIR_PUT_CREATE ? STMT_USER_ADD : STMT_USER_UPDATE;
	op->none_err = mode == DIR_PUT_CREATE ? EEXIST : ENOENT;
	op->alone = true;
	err = user_params(op, u);
	if (err) {
		pg_op_free(op);
		return err;
	}
	return pg_op_submit(be, op);
}

static int pg_user_del(void *p, const struct sip_str *user, const struct sip_str *domain,
		       location_done_h *cb, void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op;

	if (!utf8_text_ok(domain))
		return EINVAL;
	op = pg_op_new(be, PG_DONE, arg);
	if (!op)
		return ENOMEM;
	op->cb.done = cb;
	op->stmt = STMT_USER_DEL;
	op->none_err = ENOENT;
	op->alone = true;
	pg_param_bytes(op, 0, user);
	pg_param_bytes(op, 1, domain);
	return pg_op_submit(be, op);
}

static int pg_user_iter(void *p, directory_iter_h *cb, void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op = pg_op_new(be, PG_USER_ITER, arg);

	if (!op)
		return ENOMEM;
	op->cb.user_iter = cb;
	op->stmt = STMT_USER_ITER;
	op->alone = true;
	pg_param_i64(op, 0, 0); /* the page key: ids start at 1 */
	return pg_op_submit(be, op);
}

static int pg_unbind(void *p, const struct sip_str *aor, const struct sip_str *contact,
		     location_done_h *cb, void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op = pg_op_new(be, PG_UNBIND, arg);

	if (!op)
		return ENOMEM;
	op->cb.done = cb;
	op->stmt = STMT_UNBIND;
	op->alone = true;
	pg_param_bytes(op, 0, aor);
	if (contact)
		pg_param_bytes(op, 1, contact);
	else
		pg_param_null(op, 1);
	return pg_op_submit(be, op);
}

static int pg_qualify_set(void *p, const struct qualify_update *u, location_done_h *cb,
			  void *arg)
{
	struct pg_be *be = p;
	struct pg_op *op = pg_op_new(be, PG_QUALIFY, arg);
	const char *status = pg_qualify_text(u->status);
	struct sip_str me = sip_str_c(be->instance_id);

	if (!op)
		return ENOMEM;
	op->cb.done = cb;
	op->stmt = STMT_QUALIFY_SET;
	/* Alone: a one-row UPDATE outside the batches keeps their lock order simple. */
	op->alone = true;
	pg_param_bytes(op, 0, &u->aor);
	pg_param_bytes(op, 1, &u->key);
	if (status) {
		struct sip_str st = sip_str_c(status);

		pg_param_bytes(op, 2, &st);
	} else {
		pg_param_null(op, 2);
	}
	pg_param_i32(op, 3, pg_clamp_i32(u->rtt_ms));
	pg_param_i64(op, 4, u->at);
	pg_param_bytes(op, 5, &me);
	pg_param_i64(op, 6, u->claim_before);
	return pg_op_submit(be, op);
}

const struct location_backend location_backend_pg = {
    .name = "pg",
    .configure = pg_configure,
    .conf_free = pg_conf_free,
    .same_store = pg_same_store,
    .open = pg_open,
    .close = pg_close,
    .apply = pg_apply,
    .fetch = pg_fetch,
    .iterate = pg_iterate,
    .find_user = pg_find_user,
    .user_put = pg_user_put,
    .user_del = pg_user_del,
    .user_iter = pg_user_iter,
    .unbind = pg_unbind,
    .qualify_set = pg_qualify_set,
};
