/* The memory backend: the directory from the YAML `users:` and the bindings in hash tables,
 * for one process (development, tests, small sites).
 *
 * DESIGN: three moving parts.
 * - Bindings: a hash table from the AOR's bytes to a record holding that AOR's bindings in
 *   a small array (max_contacts keeps it small). Each binding is one allocation holding
 *   every string it stores; an update replaces the whole object, never edits it.
 * - Expiry: a hashed timing wheel of one-second slots (slot = expires_at mod the wheel
 *   size), driven by one libevent timer that reaps the slots of the seconds that passed.
 *   Insert, refresh and removal are O(1); no per-binding events.
 * - Deferral: every call copies what it needs into a queued op and returns; one event,
 *   made active on submit, runs the queue in FIFO order and calls back. The work (and the
 *   result, borrowed from the store) happens at that point, so nothing can change the
 *   store while a callback reads it. Everything an apply may need to allocate is allocated
 *   before the first change, so a change-set is stored whole or not at all. */
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memory.h"
#include "sipreg/hmap.h"
#include "sipreg/log.h"

#define MEM_WHEEL_SLOTS 4096u /* seconds; a power of two */
#define MEM_WHEEL_MASK	(MEM_WHEEL_SLOTS - 1)

struct mem_aor;

struct mem_binding {
	struct mem_binding *wprev, *wnext; /* wheel slot list */
	struct mem_aor *rec;		   /* owning record; NULL while only prepared */
	size_t idx;			   /* position in rec->v */
	struct binding b;		   /* strings point into data[] */
	char data[];
};

struct mem_aor {
	struct hmap_node node;
	struct mem_binding **v;
	size_t n, cap;
	size_t len;
	char aor[];
};

/* A directory entry: one provisioned user, strings copied from the config. */
struct mem_user {
	struct dir_user u;	 /* domain empty when the user serves any domain */
	struct sip_str *aliases; /* what u.aliases points to */
};

/* A directory name leading to a user: its own name, or one of its aliases. */
struct mem_name {
	struct hmap_node node;
	struct sip_str user;
	struct sip_str domain; /* empty = any domain */
	bool alias;
	struct mem_user *target;
};

enum mem_op_kind {
	MEM_APPLY,
	MEM_FETCH,
	MEM_ITERATE,
	MEM_FIND_USER,
	MEM_UNBIND,
	MEM_USER_ITER,
	MEM_QUALIFY,
};

/* One contact of a queued apply: the binding it would store, prepared at submit. */
struct mem_change {
	struct mem_binding *prep; /* owned until moved into the store */
	uint32_t expires;
	bool superseded; /* a later change of the same request has the same key */
};

struct mem_op {
	struct mem_op *next;
	enum mem_op_kind kind;
	union location_cb cb;
	void *arg;
	int64_t now;
	struct sip_str s1; /* apply, fetch, unbind: the AOR; find_user: the user part */
	struct sip_str s2; /* apply: the Call-ID; find_user: the domain; unbind, qualify: the
			    * key */
	uint32_t cseq;
	uint32_t max_contacts;
	bool wildcard;
	struct mem_change *changes;
	size_t n_changes;
	struct qualify_update qu; /* qualify: the state; its strings are s1 and s2 */
	char data[]; /* s1 and s2 */
};

struct mem_be {
	struct event_base *base;
	struct event *flush_ev;
	struct event *tick_ev;
	struct mem_op *head, *tail;
	size_t n_queued;
	bool *alive;		  /* set by a running flush; close() clears it */
	struct mem_op *iterating; /* the iterate a flush is walking, if any */
	bool closing;

	struct hmap aors;
	struct mem_binding *wheel[MEM_WHEEL_SLOTS];
	int64_t wheel_pos; /* last second reaped */

	struct binding *scratch; /* result sets handed to callbacks */
	size_t scratch_cap;

	char *instance_id; /* qualified_by of the states this instance stores */

	struct hmap names;
	struct mem_user *users;
	size_t n_users;
	struct mem_name *name_v;
	size_t n_names;
};

static const struct binding_set mem_empty_set = {.v = NULL, .n = 0};

/* ---- strings ---------------------------------------------------------------------- */

/* Copy s to *cursor, point *dst at the copy and advance the cursor. */
static void str_put(struct sip_str *dst, const struct sip_str *s, char **cursor)
{
	if (s->len)
		memcpy(*cursor, s->p, s->len);
	dst->p = *cursor;
	dst->len = s->len;
	*cursor += s->len;
}

/* A NUL-terminated heap copy as a sip_str; empty for NULL. Returns 0 or ENOMEM. */
static int str_dup_c(struct sip_str *dst, const char *s)
{
	size_t len = s ? strlen(s) : 0;
	char *p = malloc(len + 1);

	if (!p)
		return ENOMEM;
	if (len)
		memcpy(p, s, len);
	p[len] = '\0';
	dst->p = p;
	dst->len = len;
	return 0;
}

static bool domain_eq(const struct sip_str *a, const struct sip_str *b)
{
	if (a->len != b->len)
		return false;
	for (size_t i = 0; i < a->len; i++) {
		unsigned char x = (unsigned char)a->p[i], y = (unsigned char)b->p[i];

		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y - 'A' + 'a');
		if (x != y)
			return false;
	}
	return true;
}

/* ---- the queue -------------------------------------------------------------------- */

static void op_free(struct mem_op *op)
{
	if (!op)
		return;
	for (size_t i = 0; i < op->n_changes; i++)
		free(op->changes[i].prep);
	free(op->changes);
	free(op);
}

/* A queued op with room for the bytes of s1 and s2 copied in. */
static struct mem_op *op_new(enum mem_op_kind kind, void *arg, const struct sip_str *s1,
			     const struct sip_str *s2)
{
	size_t l1 = s1 ? s1->len : 0, l2 = s2 ? s2->len : 0;
	struct mem_op *op;
	char *cur;

	if (l1 > SIZE_MAX / 4 || l2 > SIZE_MAX / 4)
		return NULL;
	op = calloc(1, sizeof(*op) + l1 + l2);
	if (!op)
		return NULL;
	op->kind = kind;
	op->arg = arg;
	cur = op->data;
	if (s1)
		str_put(&op->s1, s1, &cur);
	if (s2)
		str_put(&op->s2, s2, &cur);
	return op;
}

static int op_queue(struct mem_be *be, struct mem_op *op)
{
	op->next = NULL;
	if (be->tail)
		be->tail->next = op;
	else
		be->head = op;
	be->tail = op;
	be->n_queued++;
	event_active(be->flush_ev, EV_TIMEOUT, 0);
	return 0;
}

static struct mem_op *op_pop(struct mem_be *be)
{
	struct mem_op *op = be->head;

	if (!op)
		return NULL;
	be->head = op->next;
	if (!be->head)
		be->tail = NULL;
	be->n_queued--;
	op->next = NULL;
	return op;
}

/* ---- bindings and the wheel ------------------------------------------------------- */

static void wheel_link(struct mem_be *be, struct mem_binding *mb)
{
	struct mem_binding **slot = &be->wheel[(uint64_t)mb->b.expires_at & MEM_WHEEL_MASK];

	mb->wprev = NULL;
	mb->wnext = *slot;
	if (*slot)
		(*slot)->wprev = mb;
	*slot = mb;
}

static void wheel_unlink(struct mem_be *be, struct mem_binding *mb)
{
	if (mb->wprev)
		mb->wprev->wnext = mb->wnext;
	else
		be->wheel[(uint64_t)mb->b.expires_at & MEM_WHEEL_MASK] = mb->wnext;
	if (mb->wnext)
		mb->wnext->wprev = mb->wprev;
	mb->wprev = mb->wnext = NULL;
}

/* A binding for one change of req, every string copied. Freed with free(), or owned by
 * the store once added. NULL on ENOMEM. */
static struct mem_binding *binding_new(const struct reg_request *req,
				       const struct reg_change *ch)
{
	const struct sip_str *strs[] = {&req->aor,	  &ch->contact,	    &ch->key,
					&req->call_id,	  &req->path,	    &ch->instance,
					&req->user_agent, &req->instance_id};
	struct mem_binding *mb;
	size_t total = 0;
	char *cur;

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		if (strs[i]->len > SIZE_MAX / 16)
			return NULL;
		total += strs[i]->len;
	}
	mb = calloc(1, sizeof(*mb) + total);
	if (!mb)
		return NULL;
	cur = mb->data;
	str_put(&mb->b.aor, &req->aor, &cur);
	str_put(&mb->b.contact, &ch->contact, &cur);
	str_put(&mb->b.key, &ch->key, &cur);
	str_put(&mb->b.call_id, &req->call_id, &cur);
	str_put(&mb->b.path, &req->path, &cur);
	str_put(&mb->b.instance, &ch->instance, &cur);
	str_put(&mb->b.user_agent, &req->user_agent, &cur);
	str_put(&mb->b.registered_by, &req->instance_id, &cur);
	mb->b.expires_at = req->now + (int64_t)ch->expires;
	mb->b.q = ch->q;
	mb->b.cseq = req->cseq;
	mb->b.reg_id = ch->reg_id;
	mb->b.source = req->source;
	mb->b.source.ip[sizeof(mb->b.source.ip) - 1] = '\0';
	mb->b.updated_at = req->now;
	return mb;
}

static struct mem_aor *aor_find(const struct mem_be *be, const struct sip_str *aor)
{
	uint64_t h = hmap_hash(aor->p ? aor->p : "", aor->len);

	for (struct hmap_node *n = hmap_first(&be->aors, h); n; n = hmap_next(n, h)) {
		struct mem_aor *rec = hmap_entry(n, struct mem_aor, node);

		if (rec->len == aor->len && memcmp(rec->aor, aor->p, aor->len) == 0)
			return rec;
	}
	return NULL;
}

static struct mem_aor *aor_new(struct mem_be *be, const struct sip_str *aor)
{
	struct mem_aor *rec = calloc(1, sizeof(*rec) + aor->len);

	if (!rec)
		return NULL;
	if (aor->len)
		memcpy(rec->aor, aor->p, aor->len);
	rec->len = aor->len;
	hmap_insert(&be->aors, &rec->node, hmap_hash(aor->p ? aor->p : "", aor->len));
	return rec;
}

static void aor_free(struct mem_be *be, struct mem_aor *rec)
{
	for (size_t i = 0; i < rec->n; i++) {
		wheel_unlink(be, rec->v[i]);
		free(rec->v[i]);
	}
	hmap_remove(&be->aors, &rec->node);
	free(rec->v);
	free(rec);
}

static void aor_release_if_empty(struct mem_be *be, struct mem_aor *rec)
{
	if (rec && rec->n == 0)
		aor_free(be, rec);
}

static int aor_reserve(struct mem_aor *rec, size_t want)
{
	struct mem_binding **v;
	size_t cap = rec->cap ? rec->cap : 4;

	if (want <= rec->cap)
		return 0;
	while (cap < want) {
		if (cap > SIZE_MAX / 2 / sizeof(*v))
			return ENOMEM;
		cap *= 2;
	}
	v = realloc(rec->v, cap * sizeof(*v));
	if (!v)
		return ENOMEM;
	rec->v = v;
	rec->cap = cap;
	return 0;
}

/* Add mb to rec; the capacity was reserved. */
static void binding_add(struct mem_be *be, struct mem_aor *rec, struct mem_binding *mb)
{
	mb->rec = rec;
	mb->idx = rec->n;
	rec->v[rec->n++] = mb;
	wheel_link(be, mb);
}

/* Remove and free mb; its record stays, possibly empty. */
static void binding_drop(struct mem_be *be, struct mem_binding *mb)
{
	struct mem_aor *rec = mb->rec;

	wheel_unlink(be, mb);
	rec->v[mb->idx] = rec->v[--rec->n];
	rec->v[mb->idx]->idx = mb->idx;
	free(mb);
}

static void binding_replace(struct mem_be *be, struct mem_binding *old, struct mem_binding *mb)
{
	struct mem_aor *rec = old->rec;

	mb->rec = rec;
	mb->idx = old->idx;
	rec->v[mb->idx] = mb;
	wheel_unlink(be, old);
	free(old);
	wheel_link(be, mb);
}

static bool binding_live(const struct mem_binding *mb, int64_t now)
{
	return mb->b.expires_at > now;
}

static struct mem_binding *binding_find(const struct mem_aor *rec, const struct sip_str *key,
					int64_t now)
{
	for (size_t i = 0; rec && i < rec->n; i++) {
		if (binding_live(rec->v[i], now) && sip_str_eq(&rec->v[i]->b.key, key))
			return rec->v[i];
	}
	return NULL;
}

/* Drop the bindings of rec that expired at now; returns how many. */
static size_t aor_prune(struct mem_be *be, struct mem_aor *rec, int64_t now)
{
	size_t n = 0;

	for (size_t i = rec->n; i-- > 0;) {
		if (!binding_live(rec->v[i], now)) {
			binding_drop(be, rec->v[i]);
			n++;
		}
	}
	return n;
}

/* Reap the wheel up to the wall clock. */
static void wheel_tick(evutil_socket_t fd, short what, void *arg)
{
	struct mem_be *be = arg;
	int64_t now = (int64_t)time(NULL);

	(void)fd;
	(void)what;
	if (now < be->wheel_pos)
		be->wheel_pos = now; /* the clock stepped back: slots get reaped again later */
	if (now - be->wheel_pos >= (int64_t)MEM_WHEEL_SLOTS)
		be->wheel_pos =
		    now - MEM_WHEEL_SLOTS; /* asleep for a whole turn: one full turn */
	for (int64_t s = be->wheel_pos + 1; s <= now; s++) {
		struct mem_binding *mb = be->wheel[(uint64_t)s & MEM_WHEEL_MASK], *next;

		for (; mb; mb = next) {
			struct mem_aor *rec = mb->rec;

			next = mb->wnext;
			if (binding_live(mb, now))
				continue;
			binding_drop(be, mb);
			aor_release_if_empty(be, rec);
		}
	}
	be->wheel_pos = now;
}

/* ---- result sets ------------------------------------------------------------------ */

static int scratch_reserve(struct mem_be *be, size_t n)
{
	struct binding *v;
	size_t cap = be->scratch_cap ? be->scratch_cap : 16;

	if (n <= be->scratch_cap)
		return 0;
	while (cap < n) {
		if (cap > SIZE_MAX / 2 / sizeof(*v))
			return ENOMEM;
		cap *= 2;
	}
	v = realloc(be->scratch, cap * sizeof(*v));
	if (!v)
		return ENOMEM;
	be->scratch = v;
	be->scratch_cap = cap;
	return 0;
}

static int q_rank(int16_t q)
{
	return q == Q_NONE ? 1000 : q;
}

/* Most preferred first: q descending, then the most recently updated. */
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

/* The live bindings of rec as a set borrowed from the store; the scratch capacity must
 * already hold them. */
static struct binding_set result_fill(struct mem_be *be, const struct mem_aor *rec, int64_t now)
{
	size_t n = 0;

	for (size_t i = 0; rec && i < rec->n; i++) {
		if (binding_live(rec->v[i], now))
			be->scratch[n++] = rec->v[i]->b;
	}
	if (n > 1)
		qsort(be->scratch, n, sizeof(*be->scratch), binding_cmp);
	return (struct binding_set){.v = n ? be->scratch : NULL, .n = n};
}

/* ---- apply: RFC 3261 §10.3 step 7 ------------------------------------------------- */

/* Decide without changing anything. Returns the outcome; *live_r gets the number of live
 * bindings the AOR will have and *adds_r how many are new. */
static enum reg_outcome apply_decide(const struct mem_op *op, const struct mem_aor *rec,
				     size_t *live_r, size_t *adds_r)
{
	size_t live = 0, adds = 0;

	for (size_t i = 0; rec && i < rec->n; i++)
		live += binding_live(rec->v[i], op->now);
	if (op->wildcard) {
		for (size_t i = 0; rec && i < rec->n; i++) {
			const struct binding *b = &rec->v[i]->b;

			if (binding_live(rec->v[i], op->now) &&
			    sip_str_eq(&b->call_id, &op->s2) && b->cseq >= op->cseq)
				return REG_OUT_OF_ORDER;
		}
		*live_r = 0;
		*adds_r = 0;
		return REG_OK;
	}
	for (size_t i = 0; i < op->n_changes; i++) {
		const struct mem_binding *stored =
		    binding_find(rec, &op->changes[i].prep->b.key, op->now);

		if (stored && sip_str_eq(&stored->b.call_id, &op->s2) &&
		    op->cseq <= stored->b.cseq)
			return REG_OUT_OF_ORDER;
	}
	for (size_t i = 0; i < op->n_changes; i++) {
		const struct mem_change *ch = &op->changes[i];
		bool stored;

		if (ch->superseded)
			continue;
		stored = binding_find(rec, &ch->prep->b.key, op->now) != NULL;
		if (stored && ch->expires == 0)
			live--;
		else if (!stored && ch->expires > 0)
			adds++;
	}
	live += adds;
	*live_r = live;
	*adds_r = adds;
	if (op->max_contacts > 0 && live > op->max_contacts)
		return REG_TOO_MANY_CONTACTS;
	return REG_OK;
}

/* Apply op to the store, all or nothing. Returns 0 or ENOMEM (nothing changed);
 * *set_r is borrowed from the store until the next change. */
static int apply_run(struct mem_be *be, struct mem_op *op, enum reg_outcome *outcome_r,
		     struct binding_set *set_r)
{
	struct mem_aor *rec = aor_find(be, &op->s1);
	bool created = false;
	size_t live, adds;
	int err;

	*set_r = mem_empty_set;
	*outcome_r = apply_decide(op, rec, &live, &adds);
	if (*outcome_r != REG_OK)
		return 0;
	if (!rec && adds) {
		rec = aor_new(be, &op->s1);
		if (!rec)
			return ENOMEM;
		created = true;
	}
	err = scratch_reserve(be, live);
	if (!err && rec)
		err = aor_reserve(rec, rec->n + adds);
	if (err) {
		if (created)
			aor_free(be, rec);
		return err;
	}
	if (!rec)
		return 0; /* nothing stored and nothing to store */

	/* From here on nothing fails. Expired bindings are invisible, so dropping them
	 * changes no answer. */
	aor_prune(be, rec, op->now);
	if (op->wildcard) {
		while (rec->n)
			binding_drop(be, rec->v[rec->n - 1]);
	}
	for (size_t i = 0; !op->wildcard && i < op->n_changes; i++) {
		struct mem_change *ch = &op->changes[i];
		struct mem_binding *stored;

		if (ch->superseded)
			continue;
		stored = binding_find(rec, &ch->prep->b.key, op->now);
		if (stored && ch->expires == 0) {
			binding_drop(be, stored);
		} else if (stored) {
			binding_replace(be, stored, ch->prep);
			ch->prep = NULL;
		} else if (ch->expires > 0) {
			binding_add(be, rec, ch->prep);
			ch->prep = NULL;
		}
	}
	*set_r = result_fill(be, rec, op->now);
	aor_release_if_empty(be, rec);
	return 0;
}

/* ---- the directory ---------------------------------------------------------------- */

static void dir_free(struct mem_be *be)
{
	for (size_t i = 0; i < be->n_users; i++) {
		struct mem_user *mu = &be->users[i];

		free((char *)mu->u.username.p);
		free((char *)mu->u.domain.p);
		free((char *)mu->u.ha1_md5.p);
		free((char *)mu->u.ha1_sha256.p);
		free((char *)mu->u.password.p);
		for (size_t j = 0; mu->aliases && j < mu->u.n_aliases; j++)
			free((char *)mu->aliases[j].p);
		free(mu->aliases);
	}
	free(be->users);
	free(be->name_v);
	if (be->names.buckets)
		hmap_destroy(&be->names);
	be->users = NULL;
	be->name_v = NULL;
	be->n_users = be->n_names = 0;
}

static void dir_name_add(struct mem_be *be, const struct sip_str *user,
			 const struct sip_str *domain, bool alias, struct mem_user *target)
{
	struct mem_name *e = &be->name_v[be->n_names++];

	e->user = *user;
	e->domain = *domain;
	e->alias = alias;
	e->target = target;
	hmap_insert(&be->names, &e->node, hmap_hash(user->p, user->len));
}

static int dir_user_copy(struct mem_user *mu, const struct mem_conf_user *cu)
{
	int err = 0;

	err = err ? err : str_dup_c(&mu->u.username, cu->user);
	err = err ? err : str_dup_c(&mu->u.domain, cu->domain);
	err = err ? err : str_dup_c(&mu->u.ha1_md5, cu->ha1_md5);
	err = err ? err : str_dup_c(&mu->u.ha1_sha256, cu->ha1_sha256);
	err = err ? err : str_dup_c(&mu->u.password, cu->password);
	if (err)
		return err;
	mu->u.enabled = cu->enabled;
	mu->u.auth_off = cu->auth_off;
	mu->u.max_contacts = cu->max_contacts;
	if (cu->n_aliases == 0)
		return 0;
	mu->aliases = calloc(cu->n_aliases, sizeof(*mu->aliases));
	if (!mu->aliases)
		return ENOMEM;
	mu->u.aliases = mu->aliases;
	for (size_t j = 0; j < cu->n_aliases; j++) {
		err = str_dup_c(&mu->aliases[j], cu->aliases[j]);
		if (err)
			return err;
		mu->u.n_aliases = j + 1;
	}
	return 0;
}

/* Copy the users of conf and index them by name and by alias. Returns 0 or ENOMEM. */
static int dir_load(struct mem_be *be, const struct mem_conf *conf)
{
	size_t n_names = 0;
	int err;

	err = hmap_init(&be->names, conf->n_users * 2);
	if (err)
		return err;
	for (size_t i = 0; i < conf->n_users; i++)
		n_names += 1 + conf->users[i].n_aliases;
	if (conf->n_users == 0)
		return 0;
	be->users = calloc(conf->n_users, sizeof(*be->users));
	be->name_v = calloc(n_names, sizeof(*be->name_v));
	if (!be->users || !be->name_v)
		return ENOMEM;
	for (size_t i = 0; i < conf->n_users; i++) {
		const struct mem_conf_user *cu = &conf->users[i];
		struct mem_user *mu = &be->users[be->n_users];

		if (!cu->user) {
			log_warn("memory: a user without a name in the directory; ignored");
			continue;
		}
		be->n_users++;
		err = dir_user_copy(mu, cu);
		if (err)
			return err;
		dir_name_add(be, &mu->u.username, &mu->u.domain, false, mu);
		for (size_t j = 0; j < mu->u.n_aliases; j++) {
			struct sip_str a = mu->aliases[j], user = a, domain = {a.p + a.len, 0};
			const char *at = memrchr(a.p, '@', a.len);

			if (at) {
				user.len = (size_t)(at - a.p);
				domain.p = at + 1;
				domain.len = a.len - user.len - 1;
			}
			dir_name_add(be, &user, &domain, true, mu);
		}
	}
	return 0;
}

/* The user for user@domain: its own name in that domain, else its name in any domain,
 * else an alias. NULL when none. */
static const struct mem_user *dir_lookup(const struct mem_be *be, const struct sip_str *user,
					 const struct sip_str *domain)
{
	const struct mem_user *exact = NULL, *any = NULL, *alias = NULL;
	uint64_t h = hmap_hash(user->p ? user->p : "", user->len);

	if (!be->names.buckets)
		return NULL;
	for (struct hmap_node *n = hmap_first(&be->names, h); n; n = hmap_next(n, h)) {
		const struct mem_name *e = hmap_entry(n, struct mem_name, node);
		bool domain_ok = e->domain.len == 0 || domain_eq(&e->domain, domain);

		if (!sip_str_eq(&e->user, user) || !domain_ok)
			continue;
		if (e->alias)
			alias = alias ? alias : e->target;
		else if (e->domain.len)
			exact = e->target;
		else
			any = any ? any : e->target;
	}
	return exact ? exact : any ? any : alias;
}

/* ---- running queued ops ----------------------------------------------------------- */

static void run_iterate(struct mem_be *be, struct mem_op *op, const bool *alive)
{
	struct hmap_node *n, *tmp;
	size_t i;

	/* Callbacks cannot change the store (new calls only queue), so the walk is safe
	 * unless a callback closes the backend; close() then ends the iteration itself. */
	be->iterating = op;
	HMAP_FOREACH_SAFE(&be->aors, n, tmp, i)
	{
		struct mem_aor *rec = hmap_entry(n, struct mem_aor, node);

		for (size_t j = 0; j < rec->n; j++) {
			if (!binding_live(rec->v[j], op->now))
				continue;
			op->cb.iterate(0, &rec->v[j]->b, op->arg);
			if (!*alive)
				return;
		}
	}
	be->iterating = NULL;
	op->cb.iterate(0, NULL, op->arg);
}

static void run_find_user(struct mem_be *be, struct mem_op *op)
{
	const struct mem_user *mu = dir_lookup(be, &op->s1, &op->s2);
	struct dir_user u;

	if (!mu) {
		op->cb.find_user(0, NULL, op->arg);
		return;
	}
	u = mu->u;
	if (u.domain.len == 0)
		u.domain = op->s2; /* a user of any domain answers for the one asked */
	op->cb.find_user(0, &u, op->arg);
}

/* The operator's removal: every binding of the AOR, or the one with key s2. ENOENT when
 * there was none. */
static int run_unbind(struct mem_be *be, const struct mem_op *op)
{
	struct mem_aor *rec = aor_find(be, &op->s1);
	size_t removed = 0;

	for (size_t i = rec ? rec->n : 0; i-- > 0;) {
		if (op->s2.len && !sip_str_eq(&rec->v[i]->b.key, &op->s2))
			continue;
		if (binding_live(rec->v[i], op->now))
			removed++;
		binding_drop(be, rec->v[i]);
	}
	aor_release_if_empty(be, rec);
	return removed ? 0 : ENOENT;
}

/* Store a qualify state on the live binding (s1, s2). The binding object is edited in
 * place: only its qualify fields change, and no callback is reading it now. */
static int run_qualify(struct mem_be *be, const struct mem_op *op)
{
	struct mem_binding *mb = binding_find(aor_find(be, &op->s1), &op->s2, op->now);
	const struct qualify_update *u = &op->qu;

	if (!mb)
		return ENOENT;
	if (u->claim_before) {
		int64_t last = mb->b.qualified_at ? mb->b.qualified_at : mb->b.updated_at;
		struct sip_str me = sip_str_c(be->instance_id);

		if (!sip_str_eq(&mb->b.qualified_by, &me) && last >= u->claim_before)
			return ENOENT;
	}
	mb->b.qualify = u->status;
	mb->b.rtt_ms = u->rtt_ms;
	mb->b.qualified_at = u->at;
	mb->b.qualified_by = sip_str_c(be->instance_id);
	return 0;
}

/* As run_iterate: a callback that closes the backend ends the walk through close(). */
static void run_user_iter(struct mem_be *be, struct mem_op *op, const bool *alive)
{
	be->iterating = op;
	for (size_t i = 0; i < be->n_users && *alive; i++)
		op->cb.user_iter(0, &be->users[i].u, op->arg);
	if (!*alive)
		return;
	be->iterating = NULL;
	op->cb.user_iter(0, NULL, op->arg);
}

/* Complete op: do its work (or fail it with err) and call back once. */
static void op_run(struct mem_be *be, struct mem_op *op, int err, const bool *alive)
{
	enum reg_outcome outcome = REG_OK;
	struct binding_set set = mem_empty_set;

	switch (op->kind) {
	case MEM_APPLY:
		if (!err)
			err = apply_run(be, op, &outcome, &set);
		op->cb.apply(err, err ? REG_OK : outcome, &set, op->arg);
		break;
	case MEM_FETCH:
		if (!err) {
			const struct mem_aor *rec = aor_find(be, &op->s1);

			err = scratch_reserve(be, rec ? rec->n : 0);
			if (!err)
				set = result_fill(be, rec, op->now);
		}
		op->cb.fetch(err, &set, op->arg);
		break;
	case MEM_ITERATE:
		if (err)
			op->cb.iterate(err, NULL, op->arg);
		else
			run_iterate(be, op, alive);
		break;
	case MEM_FIND_USER:
		if (err)
			op->cb.find_user(err, NULL, op->arg);
		else
			run_find_user(be, op);
		break;
	case MEM_UNBIND:
		op->cb.done(err ? err : run_unbind(be, op), op->arg);
		break;
	case MEM_USER_ITER:
		if (err)
			op->cb.user_iter(err, NULL, op->arg);
		else
			run_user_iter(be, op, alive);
		break;
	case MEM_QUALIFY:
		op->cb.done(err ? err : run_qualify(be, op), op->arg);
		break;
	}
}

/* Run the ops queued before this flush began; ops queued by their callbacks wait for the
 * next turn of the loop, so a callback that keeps calling cannot starve the loop. */
static void mem_flush(evutil_socket_t fd, short what, void *arg)
{
	struct mem_be *be = arg;
	size_t budget = be->n_queued;
	bool alive = true;

	(void)fd;
	(void)what;
	be->alive = &alive;
	while (budget-- > 0) {
		struct mem_op *op = op_pop(be);

		if (!op)
			break;
		op_run(be, op, 0, &alive);
		op_free(op);
		if (!alive)
			return; /* a callback closed the backend: be is gone */
	}
	be->alive = NULL;
	if (be->head)
		event_active(be->flush_ev, EV_TIMEOUT, 0);
}

/* ---- the vtable ------------------------------------------------------------------- */

static void mem_close(void *p)
{
	struct mem_be *be = p;
	struct hmap_node *n, *tmp;
	struct mem_op *op;
	size_t i;

	if (!be)
		return;
	be->closing = true;
	if (be->alive)
		*be->alive = false;
	if (be->tick_ev)
		event_free(be->tick_ev);
	if (be->flush_ev)
		event_free(be->flush_ev);
	be->tick_ev = be->flush_ev = NULL;
	if (be->iterating) {
		op = be->iterating;
		be->iterating = NULL;
		if (op->kind == MEM_USER_ITER)
			op->cb.user_iter(ECANCELED, NULL, op->arg);
		else
			op->cb.iterate(ECANCELED, NULL, op->arg);
	}
	while ((op = op_pop(be)) != NULL) {
		op_run(be, op, ECANCELED, NULL);
		op_free(op);
	}
	if (be->aors.buckets) {
		HMAP_FOREACH_SAFE(&be->aors, n, tmp, i)
		aor_free(be, hmap_entry(n, struct mem_aor, node));
		hmap_destroy(&be->aors);
	}
	dir_free(be);
	free(be->scratch);
	free(be->instance_id);
	free(be);
}

static int mem_open(void **bep, const void *confp, struct event_base *base,
		    const char *instance_id)
{
	const struct mem_conf *conf = confp;
	struct timeval tick = {.tv_sec = 1};
	struct mem_be *be;
	int err;

	if (!bep || !conf || !base)
		return EINVAL;
	*bep = NULL;
	be = calloc(1, sizeof(*be));
	if (!be)
		return ENOMEM;
	be->base = base;
	be->instance_id = strdup(instance_id ? instance_id : "");
	if (!be->instance_id) {
		err = ENOMEM;
		goto out;
	}
	be->wheel_pos = (int64_t)time(NULL);
	err = hmap_init(&be->aors, 1024);
	if (err)
		goto out;
	err = dir_load(be, conf);
	if (err)
		goto out;
	be->flush_ev = event_new(base, -1, 0, mem_flush, be);
	be->tick_ev = event_new(base, -1, EV_PERSIST, wheel_tick, be);
	if (!be->flush_ev || !be->tick_ev || event_add(be->tick_ev, &tick) != 0) {
		err = ENOMEM;
		goto out;
	}
	*bep = be;
	return 0;
out:
	mem_close(be);
	return err;
}

static int mem_apply(void *p, const struct reg_request *req, location_apply_h *cb, void *arg)
{
	struct mem_be *be = p;
	struct mem_op *op;

	if (be->closing)
		return ECANCELED;
	if (!req || (req->n_changes && !req->changes) || (req->wildcard && req->n_changes))
		return EINVAL;
	op = op_new(MEM_APPLY, arg, &req->aor, &req->call_id);
	if (!op)
		return ENOMEM;
	op->cb.apply = cb;
	op->now = req->now;
	op->cseq = req->cseq;
	op->max_contacts = req->max_contacts;
	op->wildcard = req->wildcard;
	if (req->n_changes) {
		op->changes = calloc(req->n_changes, sizeof(*op->changes));
		if (!op->changes) {
			op_free(op);
			return ENOMEM;
		}
	}
	for (size_t i = 0; i < req->n_changes; i++) {
		op->changes[i].prep = binding_new(req, &req->changes[i]);
		op->changes[i].expires = req->changes[i].expires;
		op->n_changes = i + 1;
		if (!op->changes[i].prep) {
			op_free(op);
			return ENOMEM;
		}
	}
	/* Two contacts of one request with the same key: the last one counts. */
	for (size_t i = 0; i < op->n_changes; i++) {
		for (size_t j = i + 1; j < op->n_changes && !op->changes[i].superseded; j++)
			op->changes[i].superseded = sip_str_eq(&op->changes[i].prep->b.key,
							       &op->changes[j].prep->b.key);
	}
	return op_queue(be, op);
}

static int mem_fetch(void *p, const struct sip_str *aor, int64_t now, location_fetch_h *cb,
		     void *arg)
{
	struct mem_be *be = p;
	struct mem_op *op;

	if (be->closing)
		return ECANCELED;
	op = op_new(MEM_FETCH, arg, aor, NULL);
	if (!op)
		return ENOMEM;
	op->cb.fetch = cb;
	op->now = now;
	return op_queue(be, op);
}

static int mem_iterate(void *p, int64_t now, location_iter_h *cb, void *arg)
{
	struct mem_be *be = p;
	struct mem_op *op;

	if (be->closing)
		return ECANCELED;
	op = op_new(MEM_ITERATE, arg, NULL, NULL);
	if (!op)
		return ENOMEM;
	op->cb.iterate = cb;
	op->now = now;
	return op_queue(be, op);
}

static int mem_find_user(void *p, const struct sip_str *user, const struct sip_str *domain,
			 directory_find_h *cb, void *arg)
{
	struct mem_be *be = p;
	struct mem_op *op;

	if (be->closing)
		return ECANCELED;
	op = op_new(MEM_FIND_USER, arg, user, domain);
	if (!op)
		return ENOMEM;
	op->cb.find_user = cb;
	return op_queue(be, op);
}

static int mem_unbind(void *p, const struct sip_str *aor, const struct sip_str *contact,
		      location_done_h *cb, void *arg)
{
	struct mem_be *be = p;
	struct mem_op *op;

	if (be->closing)
		return ECANCELED;
	op = op_new(MEM_UNBIND, arg, aor, contact);
	if (!op)
		return ENOMEM;
	op->cb.done = cb;
	op->now = (int64_t)time(NULL);
	return op_queue(be, op);
}

static int mem_user_iter(void *p, directory_iter_h *cb, void *arg)
{
	struct mem_be *be = p;
	struct mem_op *op;

	if (be->closing)
		return ECANCELED;
	op = op_new(MEM_USER_ITER, arg, NULL, NULL);
	if (!op)
		return ENOMEM;
	op->cb.user_iter = cb;
	return op_queue(be, op);
}

static int mem_qualify_set(void *p, const struct qualify_update *u, location_done_h *cb,
			   void *arg)
{
	struct mem_be *be = p;
	struct mem_op *op;

	if (be->closing)
		return ECANCELED;
	op = op_new(MEM_QUALIFY, arg, &u->aor, &u->key);
	if (!op)
		return ENOMEM;
	op->cb.done = cb;
	op->qu = *u;
	op->qu.aor = op->s1;
	op->qu.key = op->s2;
	op->now = (int64_t)time(NULL);
	return op_queue(be, op);
}

/* SIGHUP: the users of the reloaded YAML replace the directory; the bindings stay. The
 * new directory is built beside the old one and swapped in, so a failure keeps the old
 * one whole. Nothing outside a flush borrows a user, so the swap is safe here. */
static int mem_reload(void *p, const void *confp)
{
	struct mem_be *be = p, tmp = {0};
	int err;

	if (!be || !confp)
		return EINVAL;
	err = dir_load(&tmp, confp);
	if (err) {
		dir_free(&tmp);
		return err;
	}
	dir_free(be);
	be->names = tmp.names;
	be->users = tmp.users;
	be->n_users = tmp.n_users;
	be->name_v = tmp.name_v;
	be->n_names = tmp.n_names;
	return 0;
}

/* One process, one memory store: a memory directory and a memory location are one. */
static bool mem_same_store(const void *a, const void *b)
{
	(void)a;
	(void)b;
	return true;
}

const struct location_backend location_backend_memory = {
    .name = "memory",
    .reads_users = true,
    .in_process = true,
    .configure = mem_configure,
    .conf_free = mem_conf_free,
    .same_store = mem_same_store,
    .open = mem_open,
    .close = mem_close,
    .apply = mem_apply,
    .fetch = mem_fetch,
    .iterate = mem_iterate,
    .find_user = mem_find_user,
    .user_iter = mem_user_iter,
    .unbind = mem_unbind,
    .qualify_set = mem_qualify_set,
    .reload = mem_reload,
};
