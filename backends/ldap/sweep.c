/* Inside the ldap backend: expiry. Every sweep_s a location backend removes expired binding
 * entries and AOR entries left without bindings, in bounded batches, with CAS-safe deletes.
 *
 * DESIGN: every instance sweeps (no lease): a delete is made safe by its RFC 4528 assertion,
 * not by being the only sweeper. A binding entry goes only while (sipregExpires<=now) still
 * holds, so a REGISTER that refreshed it in between wins; an AOR entry goes only with the
 * sipregVersion and sipregCommitted it was read with (no change-set claimed it since) and
 * while it is a leaf (slapd refuses to delete an entry with children). Two instances
 * sweeping at once only repeat each other's deletes (noSuchObject, skipped). A sweep is one
 * op: it takes a pool connection like a request, asks for LB_SWEEP_BATCH entries at a time,
 * deletes them one after the other, and runs again at once (up to LB_SWEEP_REPEAT batches)
 * while batches come back full. The first sweep starts at a random point of the first
 * period, so instances started together do not sweep in step. */
#include "internal.h"

static void sweep_tick(evutil_socket_t fd, short what, void *arg);

static void sweep_arm(struct lb_be *be, uint32_t ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	evtimer_add(be->sweep_ev, &tv);
}

int lb_sweep_init(struct lb_be *be)
{
	uint32_t period = be->conf->sweep_s * 1000u;

	if (!be->conf->sweeps)
		return 0;
	be->sweep_ev = evtimer_new(be->base, sweep_tick, be);
	if (!be->sweep_ev)
		return ENOMEM;
	sweep_arm(be, period / 2 + lb_jitter(period / 2 + 1));
	return 0;
}

void lb_sweep_fini(struct lb_be *be)
{
	if (be->sweep_ev)
		event_free(be->sweep_ev);
	be->sweep_ev = NULL;
}

static void sweep_tick(evutil_socket_t fd, short what, void *arg)
{
	struct lb_be *be = arg;
	struct lb_op *op;
	int err;

	(void)fd;
	(void)what;
	if (be->closing || be->sweep)
		return;
	op = lb_op_new(be, LB_SWEEP, NULL);
	if (!op) {
		sweep_arm(be, be->conf->sweep_s * 1000u);
		return;
	}
	op->now = (int64_t)time(NULL);
	be->sweep = op;
	err = lb_op_dispatch(op);
	if (err)
		lb_op_defer(op, err); /* server down: try again next period */
}

void lb_sweep_done(struct lb_be *be, int err)
{
	bool again = be->sweep && be->sweep->full && !err;

	be->sweep = NULL;
	if (be->closing || !be->sweep_ev)
		return;
	if (err && err != EAGAIN)
		log_limited(&be->ll_sweep, LOG_WARN, "ldap: sweeping expired bindings: %s",
			    strerror(err));
	if (again && ++be->sweep_rounds < LB_SWEEP_REPEAT) {
		sweep_arm(be, 0);
		return;
	}
	be->sweep_rounds = 0;
	sweep_arm(be, be->conf->sweep_s * 1000u);
}

/* The expired binding entries first; the AOR entries they leave empty next. */
static int send_sweep_search(struct lb_op *op, enum lb_step step)
{
	static const char *const no_attrs[] = {"1.1", NULL};
	static const char *const aor_attrs[] = {"sipregVersion", "sipregCommitted",
						"sipregClaimedAt", NULL};
	char *filter;
	int err;

	op->step = step;
	op->full = false;
	lb_writes_free(op);
	if (step == ST_SWEEP_BINDINGS)
		filter = lb_str_printf("(&(objectClass=sipregBinding)(sipregExpires<=%lld))",
				       (long long)op->now);
	else
		filter = lb_str_printf("(&(objectClass=sipregAorEntry)(hasSubordinates=FALSE))");
	if (!filter)
		return ENOMEM;
	lb_op_rearm(op);
	err = lb_send_search_ext(op, op->be->conf->bindings_base, LDAP_SCOPE_SUBTREE, filter,
				 step == ST_SWEEP_BINDINGS ? no_attrs : aor_attrs, NULL,
				 (int)LB_SWEEP_BATCH);
	free(filter);
	return err;
}

int lb_send_sweep(struct lb_op *op)
{
	return send_sweep_search(op, ST_SWEEP_BINDINGS);
}

/* The delete of op->writes[next_write], under the assertion that keeps it safe. */
static int send_sweep_delete(struct lb_op *op)
{
	const struct lb_write *w = &op->writes[op->next_write];
	LDAPControl *ctrl = NULL, *ctrls[2] = {NULL, NULL};
	char filter[96];
	int err;

	if (w->kind == W_DELETE)
		snprintf(filter, sizeof(filter), "(sipregExpires<=%lld)", (long long)op->now);
	else
		snprintf(filter, sizeof(filter), "(&(sipregVersion=%lld)(sipregCommitted=%lld))",
			 (long long)w->version, (long long)w->committed);
	err = lb_assertion(op, filter, &ctrl);
	if (err)
		return err;
	ctrls[0] = ctrl;
	op->step = ST_SWEEP_DEL;
	lb_op_rearm(op);
	err = lb_check_rc(op, ldap_delete_ext(op->conn->ld, w->dn, ctrls, NULL, &op->msgid));
	ldap_control_free(ctrl);
	return err;
}

/* One entry of a sweep search: remember its DN (and an AOR entry's version). */
static int sweep_entry(struct lb_op *op, LDAPMessage *msg)
{
	LDAP *ld = op->conn->ld;
	char *dn = ldap_get_dn(ld, msg), *copy;
	struct lb_write *w;
	int err;

	copy = dn ? strdup(dn) : NULL;
	ldap_memfree(dn);
	if (!copy)
		return ENOMEM;
	/* W_DELETE: a binding entry; W_MODIFY marks an AOR entry (deleted all the same). */
	err = lb_write_push(op, op->step == ST_SWEEP_BINDINGS ? W_DELETE : W_MODIFY, 0, copy);
	if (err || op->step == ST_SWEEP_BINDINGS)
		return err;
	w = &op->writes[op->n_writes - 1];
	w->version = lb_attr_int(ld, msg, "sipregVersion", -1);
	w->committed = lb_attr_int(ld, msg, "sipregCommitted", -1);
	/* Claimed and not committed: a writer is at work (or died less than timeout_ms ago,
	 * and the next change-set of the AOR takes over). Not ours to delete. */
	if (w->version != w->committed &&
	    lb_wall_ms() - lb_attr_int(ld, msg, "sipregClaimedAt", 0) <
		(int64_t)op->be->conf->timeout_ms) {
		free(w->dn);
		op->n_writes--;
	}
	return 0;
}

/* The batch is read (or one delete answered): the next delete, the next phase, or done. */
static bool sweep_next(struct lb_op *op, bool aors)
{
	int err;

	if (op->next_write < op->n_writes) {
		err = send_sweep_delete(op);
		return err ? lb_op_complete(op, err, NULL, NULL) : true;
	}
	if (!aors) {
		bool full = op->full;

		err = send_sweep_search(op, ST_SWEEP_AORS);
		op->full = full; /* a full batch of bindings: more of them wait */
		return err ? lb_op_complete(op, err, NULL, NULL) : true;
	}
	return lb_op_complete(op, 0, NULL, NULL);
}

bool lb_on_sweep(struct lb_op *op, LDAPMessage *msg)
{
	int rc, err;
	bool aors;

	if (ldap_msgtype(msg) == LDAP_RES_SEARCH_ENTRY) {
		err = sweep_entry(op, msg);
		return err ? lb_op_complete(op, err, NULL, NULL) : true;
	}
	if (ldap_msgtype(msg) == LDAP_RES_SEARCH_REFERENCE ||
	    ldap_msgtype(msg) == LDAP_RES_INTERMEDIATE)
		return true;
	op->msgid = -1;
	rc = lb_result_code(op, msg);
	if (op->step == ST_SWEEP_DEL) {
		const struct lb_write *w = &op->writes[op->next_write];

		/* Refreshed, re-claimed, given a binding, or swept by another instance: the
		 * assertion did its job; nothing to do. */
		if (rc != LDAP_SUCCESS && rc != LDAP_ASSERTION_FAILED &&
		    rc != LDAP_NO_SUCH_OBJECT && rc != LDAP_NOT_ALLOWED_ON_NONLEAF)
			return lb_op_complete(op, lb_errno_of(rc), NULL, NULL);
		aors = w->kind == W_MODIFY;
		op->next_write++;
		return sweep_next(op, aors);
	}
	aors = op->step == ST_SWEEP_AORS;
	if (rc == LDAP_SIZELIMIT_EXCEEDED || rc == LDAP_ADMINLIMIT_EXCEEDED)
		op->full = true;
	else if (rc == LDAP_NO_SUCH_OBJECT)
		return lb_op_complete(op, 0, NULL, NULL); /* no bindings_base: nothing kept */
	else if (rc != LDAP_SUCCESS)
		return lb_op_complete(op, lb_errno_of(rc), NULL, NULL);
	if (op->n_writes >= LB_SWEEP_BATCH)
		op->full = true;
	op->next_write = 0;
	return sweep_next(op, aors);
}
