/* Inside the ldap backend: the life of an operation: its record, its one timer (deadline,
 * retry, deferred answer), dispatch onto a connection, completion exactly once. */
#include "internal.h"

static void op_timer(evutil_socket_t fd, short what, void *arg);

void lb_stored_free(struct lb_op *op)
{
	for (size_t i = 0; i < op->n_stored; i++) {
		struct binding *b = &op->stored[i].b;

		lb_str_free(&b->aor);
		lb_str_free(&b->contact);
		lb_str_free(&b->key);
		lb_str_free(&b->call_id);
		lb_str_free(&b->path);
		lb_str_free(&b->instance);
		lb_str_free(&b->user_agent);
		lb_str_free(&b->registered_by);
		free(op->stored[i].dn);
	}
	free(op->stored);
	op->stored = NULL;
	op->n_stored = op->cap_stored = 0;
}

void lb_writes_free(struct lb_op *op)
{
	for (size_t i = 0; i < op->n_writes; i++)
		free(op->writes[i].dn);
	free(op->writes);
	op->writes = NULL;
	op->n_writes = op->next_write = 0;
}

void lb_op_free(struct lb_op *op)
{
	if (op->ev)
		event_free(op->ev);
	lb_str_free(&op->aor);
	lb_str_free(&op->s1);
	lb_str_free(&op->s2);
	free(op->aor_dn);
	lb_str_free(&op->req.call_id);
	lb_str_free(&op->req.path);
	lb_str_free(&op->req.user_agent);
	lb_str_free(&op->req.instance_id);
	for (size_t i = 0; op->changes && i < op->req.n_changes; i++) {
		lb_str_free(&op->changes[i].contact);
		lb_str_free(&op->changes[i].key);
		lb_str_free(&op->changes[i].instance);
	}
	free(op->changes);
	free(op->superseded);
	lb_stored_free(op);
	lb_writes_free(op);
	lb_str_free(&op->user.username);
	lb_str_free(&op->user.domain);
	lb_str_free(&op->user.ha1_md5);
	lb_str_free(&op->user.ha1_sha256);
	lb_str_free(&op->user.password);
	for (size_t i = 0; op->aliases && i < op->user.n_aliases; i++)
		lb_str_free(&op->aliases[i]);
	free(op->aliases);
	free(op->dn);
	if (op->cookie.bv_val)
		ber_memfree(op->cookie.bv_val);
	free(op);
}

struct lb_op *lb_op_new(struct lb_be *be, enum lb_kind kind, void *arg)
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

void lb_op_unlink(struct lb_op *op)
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

struct binding_set lb_set_of(struct lb_op *op, struct binding *scratch, size_t n)
{
	(void)op;
	return (struct binding_set){.v = n ? scratch : NULL, .n = n};
}

/* op no longer holds its connection. */
void lb_op_release(struct lb_op *op)
{
	if (op->conn && op->conn->n_ops)
		op->conn->n_ops--;
	op->conn = NULL;
}

/* Finish op: take it off every list, answer the caller with err (and what op holds), free
 * it. Returns false when the callback closed the backend. */
bool lb_op_complete(struct lb_op *op, int err, const struct binding_set *set,
			const struct dir_user *u)
{
	struct lb_be *be = op->be;
	struct binding_set none = {0};
	bool alive = true;

	if (op->msgid >= 0 && op->conn && op->conn->ld)
		ldap_abandon_ext(op->conn->ld, op->msgid, NULL, NULL);
	op->msgid = -1;
	lb_op_release(op);
	lb_op_unlink(op);
	if (!be->closing && be->qhead)
		lb_queue_run(be); /* a serial connection is free again */
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
	case LB_SWEEP:
		lb_sweep_done(be, err); /* no caller: the backend's own work */
		break;
	}
	lb_op_free(op);
	if (!alive)
		return false;
	be->alive = NULL;
	return true;
}

void lb_op_rearm(struct lb_op *op)
{
	uint32_t ms = op->be->conf->timeout_ms;
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	op->deadline_ns = clock_mono_ns() + (int64_t)ms * CLOCK_NS_PER_MS;
	evtimer_add(op->ev, &tv);
}

/* Complete op from its timer: never inside the call that started it. */
void lb_op_defer(struct lb_op *op, int err)
{
	struct timeval zero = {0, 0};

	op->finishing = true;
	op->fin_err = err;
	evtimer_add(op->ev, &zero);
}

/* Send op's first request on a connection that is up, or queue it. */
int lb_op_dispatch(struct lb_op *op)
{
	struct lb_be *be = op->be;
	struct lb_conn *c = lb_conn_pick(be);

	if (!c) {
		if ((!lb_conn_any_connecting(be) && !lb_conn_pick_busy(be)) ||
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
		return lb_send_apply_read(op);
	case LB_FETCH:
	case LB_ITERATE:
	case LB_UNBIND:
		return lb_send_bindings_read(op);
	case LB_PUT:
	case LB_DEL:
		return lb_send_user_lookup(op);
	case LB_SWEEP:
		return lb_send_sweep(op);
	case LB_FIND:
	case LB_USER_ITER:
		break;
	}
	return EINVAL;
}

/* One message for an op; false when a callback closed the backend. */
bool lb_op_on_msg(struct lb_op *op, LDAPMessage *msg)
{
	switch (op->kind) {
	case LB_APPLY:
		return lb_on_apply(op, msg);
	case LB_FETCH:
	case LB_ITERATE:
	case LB_UNBIND:
		return lb_on_read(op, msg);
	case LB_PUT:
	case LB_DEL:
		return lb_on_user(op, msg);
	case LB_SWEEP:
		return lb_on_sweep(op, msg);
	default:
		return true;
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
			lb_find_answer(op);
		else if (!op->fin_err && op->kind == LB_USER_ITER && be->dir_ready)
			lb_user_iter_answer(op);
		else
			lb_op_complete(op, op->fin_err, NULL, NULL);
		return;
	}
	if (op->retry && clock_mono_ns() < op->deadline_ns) {
		struct timeval tv;
		int64_t left = (op->deadline_ns - clock_mono_ns()) / 1000;

		op->retry = false;
		tv.tv_sec = left / 1000000;
		tv.tv_usec = left % 1000000;
		evtimer_add(op->ev, &tv);
		err = op->conn && op->conn->state == LC_UP ? lb_send_apply_read(op) : lb_op_dispatch(op);
		if (err)
			lb_op_complete(op, err, NULL, NULL);
		return;
	}
	/* The deadline. A request still out on a connection means the server is stuck
	 * or gone: that connection is reset (its other ops fail with EAGAIN). */
	if (op->msgid >= 0 && op->conn)
		lb_conn_broken(op->conn);
	lb_op_complete(op, ETIMEDOUT, NULL, NULL);
}
