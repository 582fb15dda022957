/* Connections, the pipeline and batching: ops queued, sent in batches of one transaction,
 * answered in order; connections brought up, watched, timed out and brought back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The backend is freed once the last callback running inside it has returned. */
void pg_be_free(struct pg_be *be)
{
	if (event_initialized(&be->defer_ev))
		event_del(&be->defer_ev);
	if (event_initialized(&be->sweep_ev))
		evtimer_del(&be->sweep_ev);
	pg_cache_flush(be);
	hmap_destroy(&be->cache);
	free(be->scratch);
	free(be->conns);
	free(be->conninfo);
	free(be->instance_id);
	free(be->resolv_conf);
	free(be);
}

static void be_enter(struct pg_be *be)
{
	be->busy++;
}

static void be_leave(struct pg_be *be)
{
	if (--be->busy == 0 && be->dead)
		pg_be_free(be);
}

static int op_resubmit(struct pg_be *be, struct pg_op *op);
static void conn_fail(struct pg_conn *c, int err);
static void be_autosweep(struct pg_be *be);

/* ---- operations ---------------------------------------------------------------------- */

void pg_op_free(struct pg_op *op)
{
	if (!op)
		return;
	if (op->timer_on)
		event_del(&op->timer);
	PQclear(op->res);
	pg_cached_unref(op->hit);
	free(op->buf.p);
	free(op);
}

static void op_timeout(evutil_socket_t fd, short what, void *arg);

struct pg_op *pg_op_new(struct pg_be *be, enum pg_kind kind, void *arg)
{
	struct pg_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->be = be;
	op->kind = kind;
	op->arg = arg;
	op->stmt = -1;
	op->prepare = -1;
	evtimer_assign(&op->timer, be->base, op_timeout, op);
	return op;
}

static void op_arm_ms(struct pg_op *op, unsigned ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	if (evtimer_add(&op->timer, &tv) == 0)
		op->timer_on = true;
}

static void op_arm(struct pg_op *op)
{
	op_arm_ms(op, op->be->timeout_ms);
}

/* Deliver the op's answer to its caller (or to the backend for internal ops) and free it. */
void pg_op_deliver(struct pg_op *op)
{
	struct pg_be *be = op->be;
	const PGresult *r = op->res;
	int err = op->err;

	if (!err && !r && !op->hit && !op->skipped && op->kind != PG_SETUP)
		err = EIO; /* a query that answered nothing */
	switch (op->kind) {
	case PG_APPLY: {
		struct sip_str aor = {.p = op->buf.p + op->aor_off, .len = op->aor_len};
		struct binding_set set = pg_empty_set;
		int outcome = REG_OK;
		struct binding *v = NULL;
		int rows;

		if (err)
			goto apply_out;
		rows = PQntuples(r);
		if (rows < 1 || PQnfields(r) < COL_N_BINDING ||
		    PQgetisnull(r, 0, COL_OUTCOME)) {
			log_err("pg: sipreg_apply returned no status row");
			err = EPROTO;
			goto apply_out;
		}
		outcome = pg_res_i32(r, 0, COL_OUTCOME, 0);
		if (outcome != REG_OK && outcome != REG_OUT_OF_ORDER &&
		    outcome != REG_TOO_MANY_CONTACTS) {
			err = EPROTO;
			goto apply_out;
		}
		if (outcome == REG_OK && rows > 1) {
			v = pg_scratch_get(be, (size_t)rows - 1);
			if (!v) {
				err = ENOMEM;
				goto apply_out;
			}
			for (int i = 1; i < rows; i++)
				pg_res_binding(r, i, &aor, &v[i - 1]);
			set = (struct binding_set){.v = v, .n = (size_t)rows - 1};
		}
	apply_out:
		op->cb.apply(err, err ? REG_OK : (enum reg_outcome)outcome, &set, op->arg);
		break;
	}
	case PG_FETCH: {
		struct sip_str aor = {.p = op->buf.p + op->aor_off, .len = op->aor_len};
		struct binding_set set = pg_empty_set;
		int rows = err ? 0 : PQntuples(r);
		struct binding *v;

		if (!err && rows > 0) {
			v = pg_scratch_get(be, (size_t)rows);
			if (!v) {
				err = ENOMEM;
			} else {
				for (int i = 0; i < rows; i++)
					pg_res_binding(r, i, &aor, &v[i]);
				set = (struct binding_set){.v = v, .n = (size_t)rows};
			}
		}
		op->cb.fetch(err, &set, op->arg);
		break;
	}
	case PG_ITERATE: {
		/* One page of rows by primary key (short statements, bounded memory), then the
		 * next page as a new query, until a page comes back short. */
		int rows = err ? 0 : PQntuples(r);

		be->listing = op;
		for (int i = 0; i < rows && !op->final_sent; i++) {
			struct binding b;

			pg_res_binding(r, i, NULL, &b);
			op->cb.iterate(0, &b, op->arg);
		}
		be->listing = NULL;
		if (op->final_sent) /* close() ended it from inside a callback */
			break;
		if (rows == PG_PAGE_ROWS) {
			int64_t last = pg_res_i64(r, rows - 1, COL_ID);

			pg_param_i64_set(op, 1, last);
			PQclear(op->res);
			op->res = NULL;
			op->query_done = false;
			err = op_resubmit(be, op);
			if (!err)
				return;
		}
		op->cb.iterate(err, NULL, op->arg);
		break;
	}
	case PG_FIND_USER: {
		struct pg_cached_user *cu = op->hit;

		if (!cu && !err) {
			cu = pg_cached_new(r, op->buf.p + op->user_off,
					op->user_len + 1 + op->domain_len);
			if (!cu)
				err = ENOMEM;
			else
				pg_cache_insert(be, cu);
			op->hit = cu;
		}
		op->cb.find_user(err, (!err && cu->found) ? &cu->u : NULL, op->arg);
		break;
	}
	case PG_DONE:
		if (!err && PQntuples(r) == 0)
			err = op->none_err;
		/* Our own write is seen by our next lookup at once; the other instances drop
		 * theirs on the trigger's NOTIFY. */
		if (!err)
			pg_cache_flush(be);
		op->cb.done(err, op->arg);
		break;
	case PG_UNBIND:
		op->cb.done(err ? err : pg_res_i64(r, 0, 0) > 0 ? 0 : ENOENT, op->arg);
		break;
	case PG_QUALIFY:
		op->cb.done(err ? err : PQntuples(r) > 0 ? 0 : ENOENT, op->arg);
		break;
	case PG_USER_ITER: {
		int rows = err ? 0 : PQntuples(r);

		be->listing = op;
		for (int i = 0; i < rows && !op->final_sent; i++) {
			struct sip_str aliases[PG_ALIASES_MAX];
			struct dir_user u;

			pg_res_user(r, i, &u, aliases, PG_ALIASES_MAX);
			op->cb.user_iter(0, &u, op->arg);
		}
		be->listing = NULL;
		if (op->final_sent)
			break;
		if (rows == PG_PAGE_ROWS) {
			pg_param_i64_set(op, 0, pg_res_i64(r, rows - 1, 8));
			PQclear(op->res);
			op->res = NULL;
			op->query_done = false;
			err = op_resubmit(be, op);
			if (!err)
				return;
		}
		op->cb.user_iter(err, NULL, op->arg);
		break;
	}
	case PG_LEASE:
		be->lease_pending = false;
		be->lease = !err && r && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] != 0;
		be->lease_other = !err && !be->lease;
		if (be->lease)
			log_info("pg: this instance holds the sweeper lease");
		break;
	case PG_AUTOSWEEP: {
		int64_t n = (!err && r) ? pg_res_i64(r, 0, 0) : 0;

		if (n > 0)
			log_debug("pg: swept %lld expired bindings", (long long)n);
		/* A full batch means more are left: the next one now, a bounded number of times
		 * per tick, each its own short transaction. */
		if (n >= PG_SWEEP_BATCH && be->lease && ++be->sweep_rounds < PG_SWEEP_REPEAT &&
		    !be->closing)
			be_autosweep(be);
		break;
	}
	case PG_SETUP:
		break;
	}
	pg_op_free(op);
}

/* ---- sending -------------------------------------------------------------------------- */

static void conn_watch(struct pg_conn *c, short what);

/* Send op's statement on c (READY, or coming up for PG_SETUP), followed by a Sync (the end
 * of its transaction) when sync. Returns 0 or EIO. */
static int conn_send(struct pg_conn *c, struct pg_op *op, bool sync)
{
	const char *values[PG_MAX_PARAMS];
	int formats[PG_MAX_PARAMS];
	int ok;

	for (int i = 0; i < op->nparams; i++) {
		values[i] = op->null[i] ? NULL : op->buf.p + op->off[i];
		formats[i] = 1;
	}
	if (op->prepare >= 0) {
		const struct pg_stmt_def *s = &pg_stmts[op->prepare];

		ok = PQsendPrepare(c->pc, s->name, s->sql, s->nparams, s->types);
	} else if (op->stmt >= 0) {
		ok = PQsendQueryPrepared(c->pc, pg_stmts[op->stmt].name, op->nparams, values,
					 op->lengths, formats, 1);
	} else {
		ok = PQsendQueryParams(c->pc, op->text, 0, NULL, NULL, NULL, NULL, 1);
	}
	if (!ok || (sync && !PQpipelineSync(c->pc))) {
		log_warn("pg[%u]: send failed: %s", c->idx, PQerrorMessage(c->pc));
		return EIO;
	}
	if (!c->head && !c->whead)
		c->progress_ns = clock_mono_ns();
	op->conn = c;
	op->next = NULL;
	op->sync_after = sync;
	if (c->tail)
		c->tail->next = op;
	else
		c->head = op;
	c->tail = op;
	c->n_inflight++;
	if (!sync)
		return 0;
	c->n_syncs++;
	switch (PQflush(c->pc)) {
	case 0:
		break;
	case 1:
		c->want_write = true;
		conn_watch(c, EV_READ | EV_WRITE);
		break;
	default:
		return EIO; /* the op is in flight: conn_fail completes it */
	}
	return 0;
}

/* Take the op out of the waiting queue. */
void pg_queue_unlink(struct pg_be *be, struct pg_op *op)
{
	struct pg_op **pp = &be->qhead, *prev = NULL;

	while (*pp && *pp != op) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (!*pp)
		return;
	*pp = op->next;
	if (be->qtail == op)
		be->qtail = prev;
	be->n_queued--;
	op->next = NULL;
}

static bool be_reachable(const struct pg_be *be)
{
	for (unsigned i = 0; i < be->pool; i++) {
		if (be->conns[i].state != PC_DOWN)
			return true;
	}
	return false;
}

static bool conn_usable(const struct pg_conn *c)
{
	return c->state == PC_READY && !c->fail_err;
}

/* Can c take op into the batch being assembled? */
static bool conn_room(const struct pg_conn *c, const struct pg_op *op)
{
	if (!conn_usable(c) || c->n_syncs >= PG_SYNCS_INFLIGHT || c->batch_closed ||
	    c->n_batch >= PG_BATCH_MAX)
		return false;
	return !op->alone || c->n_batch == 0;
}

/* The connection for op, or NULL if it must wait. Ops on one AOR keep to the connection
 * the AOR hashes to while that one is up: one pipeline runs them in submission order (a
 * query after a REGISTER sees it) and our own connections never queue on each other's
 * AOR lock. Everything else goes to the least loaded connection. */
static struct pg_conn *be_pick(struct pg_be *be, const struct pg_op *op)
{
	struct pg_conn *best = NULL;

	if (op->has_affinity) {
		struct pg_conn *c = &be->conns[op->affinity % be->pool];

		if (conn_usable(c))
			return conn_room(c, op) ? c : NULL;
	}
	for (unsigned k = 0; k < be->pool; k++) {
		struct pg_conn *c = &be->conns[(be->rr + k) % be->pool];

		if (!conn_room(c, op))
			continue;
		if (!best || c->n_syncs + c->n_batch < best->n_syncs + best->n_batch)
			best = c;
	}
	if (best)
		be->rr = (best->idx + 1) % be->pool;
	return best;
}

/* Send c's assembled batch: its statements in lock-key order (stable), one Sync. */
static void conn_flush_batch(struct pg_conn *c)
{
	struct pg_be *be = c->be;
	unsigned n = c->n_batch, sent = 0;

	for (unsigned i = 1; i < n; i++) { /* insertion sort: stable, n <= PG_BATCH_MAX */
		struct pg_op *op = c->batch[i];
		unsigned j = i;

		for (; j > 0 && c->batch[j - 1]->order > op->order; j--)
			c->batch[j] = c->batch[j - 1];
		c->batch[j] = op;
	}
	c->n_batch = 0;
	c->batch_closed = false;
	for (; sent < n; sent++) {
		if (conn_send(c, c->batch[sent], sent + 1 == n))
			break;
	}
	if (sent == n)
		return;
	/* A send failed: what did not go out waits again (in front), the link is reset. */
	for (unsigned i = n; i-- > sent;) {
		struct pg_op *op = c->batch[i];

		if (op->conn == c)
			continue;
		op->next = be->qhead;
		be->qhead = op;
		if (!be->qtail)
			be->qtail = op;
		be->n_queued++;
	}
	c->fail_err = EIO;
	event_active(&c->failev, EV_TIMEOUT, 0);
}

/* Send what waits, oldest first, as one batch per connection with room. */
static void be_pump(struct pg_be *be)
{
	struct pg_op *op = be->qhead, *next;
	bool any = false;

	for (; op; op = next) {
		struct pg_conn *c = be_pick(be, op);

		next = op->next;
		if (!c)
			continue;
		pg_queue_unlink(be, op);
		c->batch[c->n_batch++] = op;
		c->batch_closed = op->alone;
		any = true;
	}
	for (unsigned i = 0; any && i < be->pool; i++) {
		if (be->conns[i].n_batch)
			conn_flush_batch(&be->conns[i]);
	}
}

static void conn_pump(struct pg_conn *c)
{
	be_pump(c->be);
}

/* Queue or send a new op. Returns 0, EAGAIN (no connection up, or the queue is full). */
int pg_op_submit(struct pg_be *be, struct pg_op *op)
{
	if (op->buf.oom) {
		pg_op_free(op);
		return ENOMEM;
	}
	if (be->closing || !be_reachable(be) || be->n_queued >= be->max_queued) {
		pg_op_free(op);
		return EAGAIN;
	}
	op->next = NULL;
	if (be->qtail)
		be->qtail->next = op;
	else
		be->qhead = op;
	be->qtail = op;
	be->n_queued++;
	op_arm(op);
	be_pump(be);
	return 0;
}

/* Queue an op again (the next page of an iterate), in front of newer work. */
static int op_resubmit(struct pg_be *be, struct pg_op *op)
{
	if (be->closing || !be_reachable(be))
		return EAGAIN;
	op->next = be->qhead;
	be->qhead = op;
	if (!be->qtail)
		be->qtail = op;
	be->n_queued++;
	op_arm(op);
	be_pump(be);
	return 0;
}

/* The op's timer: a waiting op fails alone. A sent one takes its connection down only
 * when the connection itself has been silent for timeout_ms: the op may have spent most
 * of its time in the queue, and a server that keeps answering is busy, not dead. Resetting
 * a busy connection would throw away the work in flight and add a reconnect to the load
 * that made it slow. */
static void op_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct pg_op *op = arg;
	struct pg_be *be = op->be;

	(void)fd;
	(void)what;
	op->timer_on = false;
	be_enter(be);
	if (op->conn) {
		int64_t silent_ms = (clock_mono_ns() - op->conn->progress_ns) / CLOCK_NS_PER_MS;

		if (silent_ms < be->timeout_ms) {
			op_arm_ms(op, be->timeout_ms - (unsigned)silent_ms);
		} else {
			log_warn("pg[%u]: no answer within %u ms, resetting the connection",
				 op->conn->idx, be->timeout_ms);
			conn_fail(op->conn, ETIMEDOUT);
		}
	} else {
		pg_queue_unlink(be, op);
		op->err = ETIMEDOUT;
		pg_op_deliver(op);
	}
	be_leave(be);
}

/* ---- connections ---------------------------------------------------------------------- */

static void conn_io(evutil_socket_t fd, short what, void *arg);

void pg_conn_unwatch(struct pg_conn *c)
{
	if (c->io_on)
		event_del(&c->io);
	c->io_on = false;
}

/* Watch the connection's current socket for what (EV_READ/EV_WRITE; persistent once up). */
static void conn_watch(struct pg_conn *c, short what)
{
	evutil_socket_t fd = PQsocket(c->pc);
	short flags = what | (c->state >= PC_SETUP ? EV_PERSIST : 0);

	if (c->io_on && c->io_fd == fd && c->io_what == flags)
		return;
	pg_conn_unwatch(c);
	if (fd < 0)
		return;
	event_assign(&c->io, c->be->base, fd, flags, conn_io, c);
	if (event_add(&c->io, NULL) == 0) {
		c->io_on = true;
		c->io_fd = fd;
		c->io_what = flags;
	}
}

void pg_conn_timer(evutil_socket_t fd, short what, void *arg);

static void conn_schedule(struct pg_conn *c, unsigned ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	evtimer_del(&c->timer);
	evtimer_add(&c->timer, &tv);
}

/* A uniform draw in 0..n-1 for the reconnect jitter, from getrandom(2): every instance of
 * a cluster draws differently, so after a database restart they do not all reconnect in
 * the same instant (random() unseeded gives every process the same sequence). Rare (once
 * per failed connect), so a system call per draw costs nothing. */
static unsigned backoff_jitter(unsigned n)
{
	uint64_t v;

	if (n <= 1)
		return 0;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
		/* No entropy yet (early boot) or no getrandom: still distinct per process. */
		uint64_t seed[2] = {(uint64_t)clock_mono_ns(), (uint64_t)getpid()};

		v = XXH3_64bits(seed, sizeof(seed));
	}
	return (unsigned)(v % n);
}

/* Fail every op in flight on c with err, close it and plan the next attempt. */
static void conn_fail(struct pg_conn *c, int err)
{
	struct pg_be *be = c->be;
	struct pg_op *op;
	unsigned delay;

	pg_conn_unwatch(c);
	evtimer_del(&c->timer);
	event_del(&c->failev);
	pg_lookup_free(&c->lookup); /* a lookup that timed out: cancelled */
	if (c->state == PC_READY || c->state == PC_SETUP)
		log_warn("pg[%u]: connection lost (%s), reconnecting", c->idx, strerror(err));
	else if (!c->logged_down && c->why[0]) /* a lookup failed: libpq never ran */
		log_warn("pg[%u]: cannot connect: %s", c->idx, c->why);
	else if (!c->logged_down)
		log_warn("pg[%u]: cannot connect: %s", c->idx,
			 c->pc ? PQerrorMessage(c->pc) : strerror(err));
	c->logged_down = true;
	c->why[0] = '\0';
	if (c->pc)
		PQfinish(c->pc);
	c->pc = NULL;
	c->state = PC_DOWN;
	c->fail_err = 0;
	c->want_write = false;
	c->setup_left = 0;
	if (c->idx == 0) {
		be->lease = false; /* the session lock went with the session */
		be->lease_pending = false;
		be->lease_other = false;
	}
	for (;;) {
		/* The waiting ones first: they were sent first. */
		struct pg_op **hp = c->whead ? &c->whead : &c->head;

		op = *hp;
		if (!op)
			break;
		*hp = op->next;
		if (!c->whead)
			c->wtail = NULL;
		if (!c->head)
			c->tail = NULL;
		c->n_inflight--;
		op->conn = NULL;
		op->err = err;
		PQclear(op->res);
		op->res = NULL;
		pg_op_deliver(op);
		if (be->closing)
			return; /* a callback closed the backend: close() took over */
	}
	c->tail = NULL;
	c->n_inflight = 0;
	c->n_syncs = 0;
	/* Nothing can carry the waiting ops any more: fail them now rather than at timeout. */
	if (!be_reachable(be)) {
		while ((op = be->qhead)) {
			pg_queue_unlink(be, op);
			op->err = err == ETIMEDOUT ? ETIMEDOUT : ECONNREFUSED;
			pg_op_deliver(op);
			if (be->closing)
				return;
		}
	}
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : PG_BACKOFF_MIN_MS;
	if (c->backoff_ms > PG_BACKOFF_MAX_MS)
		c->backoff_ms = PG_BACKOFF_MAX_MS;
	delay = c->backoff_ms - c->backoff_ms / 8 + backoff_jitter(c->backoff_ms / 4 + 1);
	log_info("pg[%u]: reconnecting in %u ms", c->idx, delay);
	conn_schedule(c, delay);
}

void pg_conn_failev(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *c = arg;
	struct pg_be *be = c->be;

	(void)fd;
	(void)what;
	be_enter(be);
	if (c->state != PC_DOWN)
		conn_fail(c, c->fail_err ? c->fail_err : EIO);
	be_leave(be);
}

static struct pg_op *setup_op(struct pg_conn *c, const char *text, int prepare)
{
	struct pg_op *op = pg_op_new(c->be, PG_SETUP, NULL);

	if (!op)
		return NULL;
	op->text = text;
	op->prepare = prepare;
	return op;
}

/* Connected: pipeline mode, session settings, prepared statements, LISTEN (conn 0). */
static void conn_setup(struct pg_conn *c)
{
	struct pg_be *be = c->be;
	const char *texts[2] = {be->lock_timeout_sql,
				c->idx == 0 ? "LISTEN sipreg_users" : NULL};

	if (PQsetnonblocking(c->pc, 1) != 0 || !PQenterPipelineMode(c->pc)) {
		conn_fail(c, EIO);
		return;
	}
	c->state = PC_SETUP;
	conn_watch(c, EV_READ);
	for (int i = 0; i < 2 + STMT_N; i++) {
		struct pg_op *op;

		if (i < 2 && !texts[i])
			continue;
		op = setup_op(c, i < 2 ? texts[i] : NULL, i < 2 ? -1 : i - 2);
		if (!op) {
			conn_fail(c, ENOMEM);
			return;
		}
		if (conn_send(c, op, true)) {
			if (op->conn != c)
				pg_op_free(op);
			conn_fail(c, EIO);
			return;
		}
		c->setup_left++;
	}
}

static void lease_try(struct pg_be *be)
{
	struct pg_conn *c = &be->conns[0];
	struct pg_op *op;

	if (be->lease || be->lease_pending || c->state != PC_READY || c->fail_err)
		return;
	op = pg_op_new(be, PG_LEASE, NULL);
	if (!op)
		return;
	op->text = "SELECT pg_try_advisory_lock(" PG_LEASE_KEY ")";
	op_arm(op);
	if (conn_send(c, op, true)) {
		if (op->conn != c)
			pg_op_free(op);
		c->fail_err = EIO;
		event_active(&c->failev, EV_TIMEOUT, 0);
		return;
	}
	be->lease_pending = true;
}

static void conn_ready(struct pg_conn *c)
{
	struct pg_be *be = c->be;

	c->state = PC_READY;
	c->backoff_ms = 0;
	if (c->logged_down)
		log_info("pg[%u]: connected", c->idx);
	c->logged_down = false;
	if (c->idx == 0) {
		pg_cache_flush(be); /* notifications may have been missed while it was down */
		lease_try(be);
	}
	conn_pump(c);
}

/* The Sync of the batch waiting on c came back: its transaction is over, committed unless
 * a statement failed, in which case it rolled back and every op of it fails. Returns false
 * when a callback closed the backend or the connection went down meanwhile. */
static bool conn_batch_done(struct pg_conn *c)
{
	struct pg_be *be = c->be;
	struct pg_op *op;
	int berr = 0;

	for (op = c->whead; op && !berr; op = op->next)
		berr = op->err;
	while ((op = c->whead)) {
		c->whead = op->next;
		if (!c->whead)
			c->wtail = NULL;
		op->next = NULL;
		op->conn = NULL;
		c->n_inflight--;
		if (berr && !op->err) {
			op->err = berr == ECONNRESET ? ECONNRESET : EIO;
			PQclear(op->res);
			op->res = NULL;
		}
		if (op->kind == PG_SETUP) {
			if (op->err) {
				log_err("pg[%u]: session setup failed (is the schema migrated? "
					"run `sipregctl db migrate`)",
					c->idx);
				pg_op_free(op);
				conn_fail(c, EPROTO);
				return false;
			}
			pg_op_free(op);
			if (--c->setup_left == 0 && c->state == PC_SETUP)
				conn_ready(c);
			continue;
		}
		pg_op_deliver(op);
		if (be->closing || c->state == PC_DOWN)
			return false;
	}
	return true;
}

/* Read what the server sent and complete the ops whose Sync has come back. */
static void conn_read(struct pg_conn *c)
{
	struct pg_be *be = c->be;
	PGnotify *nf;
	bool flushed = false;

	if (!PQconsumeInput(c->pc)) {
		conn_fail(c, ECONNRESET);
		return;
	}
	c->progress_ns = clock_mono_ns();
	while ((nf = PQnotifies(c->pc))) {
		if (!flushed)
			pg_cache_flush(be);
		flushed = true;
		PQfreemem(nf);
	}
	while (c->head && c->state != PC_DOWN && !c->fail_err) {
		struct pg_op *op = c->head;
		PGresult *r;

		if (!op->query_done) {
			if (PQisBusy(c->pc))
				break;
			r = PQgetResult(c->pc);
			if (!r) {
				op->query_done = true;
				continue;
			}
			switch (PQresultStatus(r)) {
			case PGRES_TUPLES_OK:
			case PGRES_COMMAND_OK:
				PQclear(op->res);
				op->res = r;
				break;
			case PGRES_PIPELINE_ABORTED:
				op->err = op->err ? op->err : EIO;
				PQclear(r);
				break;
			default: {
				bool broken;
				int err = pg_res_errno(r, &broken);

				log_warn("pg[%u]: %s", c->idx, PQresultErrorMessage(r));
				if (!op->err)
					op->err = err;
				PQclear(r);
				if (broken) {
					conn_fail(c, err);
					return;
				}
				break;
			}
			}
			continue;
		}
		if (op->sync_after) {
			if (PQisBusy(c->pc))
				break;
			r = PQgetResult(c->pc);
			if (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
				log_err(
				    "pg[%u]: protocol out of step (expected a pipeline sync)",
				    c->idx);
				PQclear(r);
				conn_fail(c, EPROTO);
				return;
			}
			PQclear(r);
			c->n_syncs--;
		}
		/* The statement is done: it waits with the rest of its batch for the Sync. */
		c->head = op->next;
		if (!c->head)
			c->tail = NULL;
		op->next = NULL;
		if (c->wtail)
			c->wtail->next = op;
		else
			c->whead = op;
		c->wtail = op;
		if (op->sync_after && !conn_batch_done(c))
			return; /* a callback closed the backend or failed the connection */
	}
	if (c->state == PC_READY && !c->fail_err && PQstatus(c->pc) == CONNECTION_BAD)
		conn_fail(c, ECONNRESET);
	else if (c->state == PC_READY)
		conn_pump(c);
}

static void conn_io_run(struct pg_conn *c, short what)
{
	if (c->state == PC_CONNECTING) {
		c->io_on = false; /* one-shot while connecting */
		switch (PQconnectPoll(c->pc)) {
		case PGRES_POLLING_READING:
			conn_watch(c, EV_READ);
			return;
		case PGRES_POLLING_WRITING:
			conn_watch(c, EV_WRITE);
			return;
		case PGRES_POLLING_OK:
			evtimer_del(&c->timer);
			conn_setup(c);
			return;
		default:
			conn_fail(c, ECONNREFUSED);
			return;
		}
	}
	if (c->state == PC_DOWN)
		return;
	if (what & EV_WRITE) {
		int rc = PQflush(c->pc);

		if (rc < 0) {
			conn_fail(c, ECONNRESET);
			return;
		}
		if (rc == 0 && c->want_write) {
			c->want_write = false;
			conn_watch(c, EV_READ);
		}
	}
	if (what & EV_READ)
		conn_read(c);
}

static void conn_io(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *c = arg;
	struct pg_be *be = c->be;

	(void)fd;
	be_enter(be);
	conn_io_run(c, what);
	be_leave(be);
}

/* Hand libpq the conninfo (and the addresses a lookup found, as hostaddr: libpq then
 * resolves nothing itself) and start connecting. The connect timeout already runs. */
static void conn_connect(struct pg_conn *c)
{
	struct pg_be *be = c->be;
	/* Our default first: a later keyword (the operator's conninfo) overrides it, and the
	 * looked-up host/hostaddr/port override that in turn. The connect is bounded by our
	 * own timer (libpq's connect_timeout is for blocking use). */
	const char *keys[6] = {"application_name", "dbname"};
	const char *vals[6] = {"sipregd", be->conninfo};
	size_t n = 2;

	if (c->lookup)
		n += pg_lookup_params(c->lookup, keys + n, vals + n);
	keys[n] = NULL;
	vals[n] = NULL;
	c->pc = PQconnectStartParams(keys, vals, 1);
	pg_lookup_free(&c->lookup); /* libpq copied what it needs */
	if (!c->pc) {
		conn_fail(c, ENOMEM);
		return;
	}
	if (PQstatus(c->pc) == CONNECTION_BAD) {
		conn_fail(c, ECONNREFUSED);
		return;
	}
	c->state = PC_CONNECTING;
	conn_watch(c, EV_WRITE);
	if (!c->io_on)
		conn_fail(c, EIO);
}

/* The lookup is over: connect to what it found, or count it as a failed connect. */
static void conn_resolved(int err, void *arg)
{
	struct pg_conn *c = arg;
	struct pg_be *be = c->be;
	const char *why = pg_lookup_why(c->lookup);

	be_enter(be);
	if (err) {
		snprintf(c->why, sizeof(c->why), "%s", why[0] ? why : strerror(err));
		pg_lookup_free(&c->lookup);
		conn_fail(c, err);
	} else {
		if (why[0]) /* some names of a list did not resolve: the others may do */
			log_info("pg[%u]: %s", c->idx, why);
		conn_connect(c);
	}
	be_leave(be);
}

void pg_conn_start(struct pg_conn *c)
{
	struct pg_be *be = c->be;
	int err;

	c->why[0] = '\0';
	conn_schedule(c, be->timeout_ms); /* the connect timeout: it covers the lookup too */
	err = pg_lookup_start(&c->lookup, be->base, be->conninfo, be->resolv_conf,
			      conn_resolved, c);
	if (err) {
		conn_fail(c, err);
		return;
	}
	if (c->lookup) {
		c->state = PC_RESOLVING;
		return;
	}
	conn_connect(c);
}

/* Resolving or connecting: the connect timed out. Down: the backoff is over, try again. */
void pg_conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *c = arg;
	struct pg_be *be = c->be;

	(void)fd;
	(void)what;
	be_enter(be);
	if (c->state == PC_DOWN) {
		pg_conn_start(c);
	} else if (c->state == PC_RESOLVING) {
		snprintf(c->why, sizeof(c->why), "%s",
			 pg_lookup_timed_out(c->lookup, be->timeout_ms));
		conn_fail(c, ETIMEDOUT);
	} else if (c->state == PC_CONNECTING || c->state == PC_SETUP) {
		conn_fail(c, ETIMEDOUT);
	}
	be_leave(be);
}

/* ---- deferred completions and the sweeper --------------------------------------------- */

void pg_be_defer_run(evutil_socket_t fd, short what, void *arg)
{
	struct pg_be *be = arg;
	struct pg_op *op;

	(void)fd;
	(void)what;
	be_enter(be);
	while (!be->closing && (op = be->dhead)) {
		be->dhead = op->next;
		if (!be->dhead)
			be->dtail = NULL;
		op->next = NULL;
		pg_op_deliver(op);
	}
	be_leave(be);
}

/* Complete op through the loop (it carries its answer already), never inside the call. */
void pg_defer_op(struct pg_be *be, struct pg_op *op)
{
	op->next = NULL;
	if (be->dtail)
		be->dtail->next = op;
	else
		be->dhead = op;
	be->dtail = op;
	event_active(&be->defer_ev, EV_TIMEOUT, 0);
}

/* Send the lease holder's next sweep statement (alone: it takes row locks of many AORs). */
static void be_autosweep(struct pg_be *be)
{
	struct pg_op *op = pg_op_new(be, PG_AUTOSWEEP, NULL);

	if (!op)
		return;
	op->stmt = STMT_SWEEP;
	op->alone = true;
	pg_param_null(op, 0);
	pg_param_i32(op, 1, PG_SWEEP_BATCH);
	pg_op_submit(be, op); /* not queued when down: the next tick tries again */
}

void pg_be_sweep_tick(evutil_socket_t fd, short what, void *arg)
{
	struct pg_be *be = arg;
	struct timeval tv = {.tv_sec = PG_SWEEP_INTERVAL_S};

	(void)fd;
	(void)what;
	if (be->lease) {
		be->sweep_rounds = 0;
		be_autosweep(be);
	} else {
		lease_try(be);
	}
	evtimer_add(&be->sweep_ev, &tv);
}

