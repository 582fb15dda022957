/* The location-service registry (which backends are compiled in) and the dispatcher that
 * wraps every backend call in a cancellable operation record.
 *
 * DESIGN: backends know nothing about cancellation. Each call allocates a struct
 * location_op holding the caller's callback, hands the backend a trampoline with the op as
 * its argument and gives the op to the caller. location_op_cancel() only marks the op; when
 * the backend completes it later, the trampoline frees it without calling the caller. The
 * ops in flight sit on a list, oldest at the tail, so location_pending() can count them,
 * location_delay_ms() can age the oldest, and location_close() can reclaim any a
 * misbehaving backend failed to complete. Deferral ("never before the call returns") is
 * each backend's job; this file adds none.
 *
 * location_delay_ms() is the backend's standing delay, as CoDel measures a queue: the
 * shortest time an apply or fetch took among those completed in the last full window.
 * One slow op (a connection's hiccup) does not move a minimum; a queue that every op has
 * to wait through does. Directory lookups are left out of the minimum, since a backend
 * answers most from a cache without touching its queue. While no apply or fetch completes
 * for a whole window the oldest request op's age stands in, so a stalled backend shows
 * too. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sipreg/clock.h"
#include "sipreg/conf.h"
#include "sipreg/log.h"
#include "sipreg/location_backend.h"

#define LOCATION_WINDOW_NS (100 * CLOCK_NS_PER_MS)
#define LOCATION_NO_SAMPLE UINT32_MAX

/* Each backend folder exports exactly this one symbol. */
extern const struct location_backend location_backend_memory;
#ifdef HAVE_PG
extern const struct location_backend location_backend_pg;
#endif
#ifdef HAVE_LDAP
extern const struct location_backend location_backend_ldap;
#endif

static const struct location_backend *const location_backends[] = {
    &location_backend_memory,
#ifdef HAVE_PG
    &location_backend_pg,
#endif
#ifdef HAVE_LDAP
    &location_backend_ldap,
#endif
    NULL,
};

static const char *const location_names[] = {
    "memory",
#ifdef HAVE_PG
    "pg",
#endif
#ifdef HAVE_LDAP
    "ldap",
#endif
    NULL,
};

struct location_conf {
	const struct location_backend *ops;
	void *conf; /* the backend's configure() result */
};

struct location {
	const struct location_backend *ops;
	void *be;
	struct location_op *head, *tail; /* ops in flight, newest first */
	size_t n_pending;
	/* Request-op latency minimum per LOCATION_WINDOW_NS window: the current window's
	 * (win_min, UINT32_MAX while none completed) and the last full one's (last_min). */
	int64_t win_start_ns;
	uint32_t win_min_ms, last_min_ms;
	bool closing; /* new calls are refused while close() drains */
};

struct location_op {
	struct location_op *prev, *next;
	struct location *loc;
	union location_cb cb;
	void *arg;
	int64_t started_ns; /* CLOCK_MONOTONIC */
	bool background;    /* listing: not a request's wait, not in the delay */
	bool sampled;	    /* apply, fetch: its time counts toward the window minimum */
	bool cancelled;
	bool submitting; /* inside the backend call that started it */
	bool completed;	 /* completed while submitting: the starter frees it */
};

const char *const *location_backend_names(void)
{
	return location_names;
}

static const struct location_backend *location_backend_find(const char *name)
{
	for (size_t i = 0; location_backends[i]; i++) {
		if (strcmp(location_backends[i]->name, name) == 0)
			return location_backends[i];
	}
	return NULL;
}

int location_conf_parse(struct location_conf **lcp, const struct conf_section *sec,
			const struct location_conf_env *env)
{
	struct location_conf *lc;
	char *name = NULL;
	int err;

	*lcp = NULL;
	if (sec) {
		err = conf_string(sec, "backend", &name);
		if (err)
			return err;
	}
	lc = calloc(1, sizeof(*lc));
	if (!lc) {
		free(name);
		return ENOMEM;
	}
	lc->ops = location_backend_find(name ? name : "memory");
	if (!lc->ops) {
		char known[128] = "";

		for (size_t i = 0, off = 0; location_names[i] && off < sizeof(known); i++)
			off += (size_t)snprintf(known + off, sizeof(known) - off, "%s%s",
						i ? ", " : "", location_names[i]);
		err = conf_fail(sec, "backend", CONF_NO_INDEX, "unknown backend \"%s\" (known: %s)",
				name, known);
		goto fail;
	}
	if (env->users && !lc->ops->reads_users && strcmp(env->section, "directory") == 0)
		log_warn("users are read by the memory directory only; directory backend \"%s\" "
			 "ignores them",
			 lc->ops->name);
	err = lc->ops->configure(&lc->conf, sec, env);
	if (err)
		goto fail;
	free(name);
	*lcp = lc;
	return 0;
fail:
	free(name);
	free(lc);
	return err;
}

void location_conf_free(struct location_conf **lcp)
{
	if (!lcp || !*lcp)
		return;
	if ((*lcp)->conf)
		(*lcp)->ops->conf_free((*lcp)->conf);
	free(*lcp);
	*lcp = NULL;
}

const char *location_conf_backend(const struct location_conf *lc)
{
	return lc->ops->name;
}

const void *location_conf_of(const struct location_conf *lc, const struct location_backend *backend)
{
	return lc && lc->ops == backend ? lc->conf : NULL;
}

bool location_conf_in_process(const struct location_conf *lc)
{
	return lc->ops->in_process;
}

bool location_conf_same_store(const struct location_conf *a, const struct location_conf *b)
{
	if (a->ops != b->ops || !a->ops->same_store)
		return false;
	return a->ops->same_store(a->conf, b->conf);
}

int location_open(struct location **locp, const struct location_conf *conf,
		  struct event_base *base, const char *instance_id)
{
	struct location *loc;
	int err;

	if (!locp || !conf || !base)
		return EINVAL;
	*locp = NULL;
	loc = calloc(1, sizeof(*loc));
	if (!loc)
		return ENOMEM;
	loc->ops = conf->ops;
	loc->win_min_ms = loc->last_min_ms = LOCATION_NO_SAMPLE;
	err = loc->ops->open(&loc->be, conf->conf, base, instance_id);
	if (err) {
		free(loc);
		return err;
	}
	*locp = loc;
	return 0;
}

static void op_unlink(struct location_op *op)
{
	struct location *loc = op->loc;

	if (op->prev)
		op->prev->next = op->next;
	else
		loc->head = op->next;
	if (op->next)
		op->next->prev = op->prev;
	else
		loc->tail = op->prev;
	op->prev = op->next = NULL;
	loc->n_pending--;
}

void location_close(struct location **locp)
{
	struct location *loc = locp ? *locp : NULL;

	if (!loc || loc->closing)
		return;
	loc->closing = true;
	/* The backend completes what is pending with ECANCELED: the trampolines call the
	 * callers (unless cancelled) and free the ops. */
	loc->ops->close(loc->be);
	if (loc->head)
		log_err("location: backend %s left %zu operations uncompleted at close",
			loc->ops->name, loc->n_pending);
	while (loc->head) {
		struct location_op *op = loc->head;

		op_unlink(op);
		free(op);
	}
	free(loc);
	*locp = NULL;
}

/* Allocate an op for a call; NULL when closing (*errp = ECANCELED) or out of memory. */
static struct location_op *op_new(struct location *loc, void *arg, int *errp)
{
	struct location_op *op;

	if (loc->closing) {
		*errp = ECANCELED;
		return NULL;
	}
	op = calloc(1, sizeof(*op));
	if (!op) {
		*errp = ENOMEM;
		return NULL;
	}
	op->loc = loc;
	op->arg = arg;
	op->submitting = true;
	op->started_ns = clock_mono_ns();
	op->next = loc->head;
	if (loc->head)
		loc->head->prev = op;
	else
		loc->tail = op;
	loc->head = op;
	loc->n_pending++;
	return op;
}

/* The common start of every call: reset *opp, refuse missing arguments (args_ok), and
 * register a new op. Returns 0 with *op_new_r set, or the error to return. */
static int op_begin(struct location *loc, bool args_ok, void *arg, struct location_op **opp,
		    struct location_op **op_new_r)
{
	int err = 0;

	if (opp)
		*opp = NULL;
	if (!loc || !args_ok)
		return EINVAL;
	*op_new_r = op_new(loc, arg, &err);
	return *op_new_r ? 0 : err;
}

/* After the backend call returned err: hand the op out, or drop it. */
static int op_started(struct location_op *op, int err, struct location_op **opp)
{
	op->submitting = false;
	if (op->completed) {
		/* Contract breach by the backend: the callback already ran. */
		log_err("location: backend %s completed an operation before returning",
			op->loc->ops->name);
		free(op);
		op = NULL;
	} else if (err) {
		op_unlink(op);
		free(op);
		op = NULL;
	}
	if (opp)
		*opp = op;
	return err;
}

/* Close the current window if now is past it; a gap of more than one window leaves no
 * sample for the last one. */
static void delay_roll(struct location *loc, int64_t now)
{
	if (now - loc->win_start_ns < LOCATION_WINDOW_NS)
		return;
	loc->last_min_ms = now - loc->win_start_ns < 2 * LOCATION_WINDOW_NS ? loc->win_min_ms
									    : LOCATION_NO_SAMPLE;
	loc->win_min_ms = LOCATION_NO_SAMPLE;
	loc->win_start_ns = now;
}

/* Take op off the pending list; true when the caller is still to be called. The op is
 * freed by op_done() after the callback, so a callback may cancel its own op. */
static bool op_finish(struct location_op *op)
{
	struct location *loc = op->loc;

	if (op->sampled) {
		int64_t now = clock_mono_ns();
		int64_t ms = (now - op->started_ns) / CLOCK_NS_PER_MS;

		delay_roll(loc, now);
		if (ms < loc->win_min_ms)
			loc->win_min_ms = (uint32_t)ms;
	}
	op_unlink(op);
	return !op->cancelled;
}

static void op_done(struct location_op *op)
{
	if (op->submitting)
		op->completed = true;
	else
		free(op);
}

static void apply_done(int err, enum reg_outcome outcome, const struct binding_set *result,
		       void *arg)
{
	struct location_op *op = arg;

	if (op_finish(op))
		op->cb.apply(err, outcome, result, op->arg);
	op_done(op);
}

static void fetch_done(int err, const struct binding_set *result, void *arg)
{
	struct location_op *op = arg;

	if (op_finish(op))
		op->cb.fetch(err, result, op->arg);
	op_done(op);
}

static void iterate_step(int err, const struct binding *b, void *arg)
{
	struct location_op *op = arg;

	if (b) {
		if (!op->cancelled)
			op->cb.iterate(err, b, op->arg);
		return;
	}
	if (op_finish(op))
		op->cb.iterate(err, NULL, op->arg);
	op_done(op);
}

static void find_user_done(int err, const struct dir_user *user, void *arg)
{
	struct location_op *op = arg;

	if (op_finish(op))
		op->cb.find_user(err, user, op->arg);
	op_done(op);
}

static void done_done(int err, void *arg)
{
	struct location_op *op = arg;

	if (op_finish(op))
		op->cb.done(err, op->arg);
	op_done(op);
}

static void user_iter_step(int err, const struct dir_user *u, void *arg)
{
	struct location_op *op = arg;

	if (u) {
		if (!op->cancelled)
			op->cb.user_iter(err, u, op->arg);
		return;
	}
	if (op_finish(op))
		op->cb.user_iter(err, NULL, op->arg);
	op_done(op);
}

int location_apply(struct location *loc, const struct reg_request *req, location_apply_h *cb,
		   void *arg, struct location_op **opp)
{
	struct location_op *op;
	int err = op_begin(loc, req && cb, arg, opp, &op);

	if (err)
		return err;
	op->cb.apply = cb;
	op->sampled = true;
	return op_started(op, loc->ops->apply(loc->be, req, apply_done, op), opp);
}

int location_fetch(struct location *loc, const struct sip_str *aor, int64_t now,
		   location_fetch_h *cb, void *arg, struct location_op **opp)
{
	struct location_op *op;
	int err = op_begin(loc, aor && cb, arg, opp, &op);

	if (err)
		return err;
	op->cb.fetch = cb;
	op->sampled = true;
	return op_started(op, loc->ops->fetch(loc->be, aor, now, fetch_done, op), opp);
}

int location_iterate(struct location *loc, int64_t now, location_iter_h *cb, void *arg,
		     struct location_op **opp)
{
	struct location_op *op;
	int err = op_begin(loc, cb, arg, opp, &op);

	if (err)
		return err;
	op->cb.iterate = cb;
	op->background = true;
	return op_started(op, loc->ops->iterate(loc->be, now, iterate_step, op), opp);
}

int directory_find_user(struct location *loc, const struct sip_str *user,
			const struct sip_str *domain, directory_find_h *cb, void *arg,
			struct location_op **opp)
{
	static const struct sip_str empty = {.p = NULL, .len = 0};
	struct location_op *op;
	int err = op_begin(loc, user && cb, arg, opp, &op);

	if (err)
		return err;
	op->cb.find_user = cb;
	err = loc->ops->find_user(loc->be, user, domain ? domain : &empty, find_user_done, op);
	return op_started(op, err, opp);
}

int directory_user_put(struct location *loc, const struct dir_user *u, enum dir_put mode,
		       location_done_h *cb, void *arg, struct location_op **opp)
{
	struct location_op *op;
	int err;

	if (loc && !loc->ops->user_put)
		return ENOTSUP;
	err = op_begin(loc, u && cb, arg, opp, &op);
	if (err)
		return err;
	op->cb.done = cb;
	op->background = true;
	return op_started(op, loc->ops->user_put(loc->be, u, mode, done_done, op), opp);
}

int directory_user_del(struct location *loc, const struct sip_str *user,
		       const struct sip_str *domain, location_done_h *cb, void *arg,
		       struct location_op **opp)
{
	struct location_op *op;
	int err;

	if (loc && !loc->ops->user_del)
		return ENOTSUP;
	err = op_begin(loc, user && domain && cb, arg, opp, &op);
	if (err)
		return err;
	op->cb.done = cb;
	op->background = true;
	return op_started(op, loc->ops->user_del(loc->be, user, domain, done_done, op), opp);
}

int directory_user_iter(struct location *loc, directory_iter_h *cb, void *arg,
			struct location_op **opp)
{
	struct location_op *op;
	int err;

	if (loc && !loc->ops->user_iter)
		return ENOTSUP;
	err = op_begin(loc, cb, arg, opp, &op);
	if (err)
		return err;
	op->cb.user_iter = cb;
	op->background = true;
	return op_started(op, loc->ops->user_iter(loc->be, user_iter_step, op), opp);
}

int location_unbind(struct location *loc, const struct sip_str *aor,
		    const struct sip_str *contact, location_done_h *cb, void *arg,
		    struct location_op **opp)
{
	struct location_op *op;
	int err;

	if (loc && !loc->ops->unbind)
		return ENOTSUP;
	err = op_begin(loc, aor && cb, arg, opp, &op);
	if (err)
		return err;
	op->cb.done = cb;
	op->background = true;
	return op_started(op, loc->ops->unbind(loc->be, aor, contact, done_done, op), opp);
}

int location_qualify_set(struct location *loc, const struct qualify_update *u,
			 location_done_h *cb, void *arg, struct location_op **opp)
{
	struct location_op *op;
	int err;

	if (loc && !loc->ops->qualify_set)
		return ENOTSUP;
	err = op_begin(loc, u && cb && u->status <= QUALIFY_UNMONITORED, arg, opp, &op);
	if (err)
		return err;
	op->cb.done = cb;
	op->background = true;
	return op_started(op, loc->ops->qualify_set(loc->be, u, done_done, op), opp);
}

const char *qualify_status_name(enum qualify_status s)
{
	static const char *const names[] = {"UNKNOWN", "OK", "LAGGED", "UNREACHABLE",
					    "UNMONITORED"};

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "UNKNOWN";
}

int location_reload(struct location *loc, const struct location_conf *conf)
{
	if (!loc || !conf || conf->ops != loc->ops)
		return EINVAL;
	if (!loc->ops->reload)
		return ENOTSUP;
	return loc->ops->reload(loc->be, conf->conf);
}

void location_op_cancel(struct location_op **opp)
{
	if (!opp || !*opp)
		return;
	(*opp)->cancelled = true;
	*opp = NULL;
}

size_t location_pending(const struct location *loc)
{
	return loc ? loc->n_pending : 0;
}

uint32_t location_delay_ms(struct location *loc)
{
	const struct location_op *op;
	int64_t now, age;

	if (!loc)
		return 0;
	now = clock_mono_ns();
	delay_roll(loc, now);
	if (loc->last_min_ms != LOCATION_NO_SAMPLE)
		return loc->last_min_ms;
	/* Background ops are the odd listing: the walk stays short. */
	for (op = loc->tail; op && op->background; op = op->prev)
		;
	if (!op)
		return 0;
	age = (now - op->started_ns) / CLOCK_NS_PER_MS;
	return age >= LOCATION_NO_SAMPLE ? LOCATION_NO_SAMPLE - 1 : (uint32_t)age;
}
