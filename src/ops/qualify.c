/* Qualify: this instance's OPTIONS pings of the contacts it holds the flow of, and their
 * results stored in the location service for every instance and sipregctl to show.
 *
 * DESIGN: four moving parts, all on the daemon's loop.
 * - The scan: every qualify.interval seconds (the first one second after start) a
 *   location_iterate() lists the live bindings. An entry is kept for each binding this
 *   instance pings: the ones it registered (registered_by == instance_id; for TCP the
 *   connection must be open here, net_flow_to() says so at ping time), and UDP bindings
 *   of another instance that look orphaned: no state stored for them (or their
 *   registration, if never qualified) for QUALIFY_STALE_INTERVALS intervals plus the
 *   timeout. Those are claimed: their stores carry claim_before, so when two instances
 *   claim one binding the backend lets one win and the loser drops it. Entries the scan
 *   no longer lists (removed, expired, someone else's) are freed.
 * - The schedule: a binary min-heap of entries by the monotonic time their next ping is
 *   due. A new entry gets a random phase in [0, interval), so pings are spread over the
 *   interval; after an answer the next ping is one interval later, after a timeout a
 *   quarter interval (at least a second) later: an unreachable contact is re-pinged
 *   sooner. One timer pops due entries and sends at most qualify.rate pings a second
 *   (a fixed gap of 1/rate s between two sends, never a burst).
 * - The pings: OPTIONS with a new branch each, from our listener to the binding's
 *   source address and port (UDP) or on its connection (TCP). Outstanding pings sit in a
 *   second hash by branch; server.c hands every response to qualify_response(), which
 *   matches branch, Call-ID and CSeq. A final response of any code is an answer
 *   (the UA is there); a per-entry timer gives up after qualify.timeout ms.
 * - The stores: location_qualify_set() when the status changed, the RTT moved by more
 *   than a fifth (and 5 ms), or the stored state is QUALIFY_REFRESH_INTERVALS intervals
 *   old: that refresh is what tells the other instances this one is alive. One store per
 *   entry at a time; a result that arrives meanwhile is stored after the next ping. */
#include "ops/qualify.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "net/net.h"
#include "sip/msg.h"
#include "sipreg/clock.h"
#include "sipreg/hmap.h"
#include "sipreg/log.h"

#define NS_PER_S INT64_C(1000000000)
/* A state older than this many intervals is refreshed by its owner ... */
#define QUALIFY_REFRESH_INTERVALS 2
/* ... and one older than this many (plus the timeout) is an orphan another may claim. */
#define QUALIFY_STALE_INTERVALS 4
#define QUALIFY_BRANCH_MAX 48
#define QUALIFY_MSG_MAX 4096

struct qualify_entry {
	struct hmap_node node;	/* q->entries, by aor + key */
	struct hmap_node bnode; /* q->pending, by branch, while a ping is out */
	struct qualify *q;
	size_t heap_idx; /* SIZE_MAX: not scheduled */
	int64_t due_ns;
	struct event *timeout_ev;
	bool in_flight;
	char branch[QUALIFY_BRANCH_MAX];
	char call_id[40];
	uint32_t cseq;
	int64_t sent_ns;
	struct sip_source dst;
	bool claimed; /* another instance registered it: stores are claims */
	uint64_t seen; /* scan generation that last listed it */
	enum qualify_status status, stored;
	uint32_t rtt_ms, stored_rtt;
	int64_t stored_at;	   /* unix seconds, 0 = never */
	int64_t unreachable_since; /* unix seconds, 0 = reachable or unknown */
	struct location_op *op;	   /* a store or an unbind in flight */
	size_t aor_len, key_len, contact_len;
	char *aor, *key, *contact; /* in data */
	char data[];
};

struct qualify {
	struct event_base *base;
	struct qualify_conf conf;
	struct location *loc;
	struct net *net;
	char *instance_id;
	struct hmap entries, pending;
	struct qualify_entry **heap;
	size_t n_heap, heap_cap;
	struct event *tick_ev, *scan_ev;
	int64_t next_send_ns;
	struct location_op *scan_op;
	uint64_t gen;
	uint64_t seq; /* branch and Call-ID counter */
	uint64_t salt;
	struct log_limit lim_send;
};

/* ---- the heap ------------------------------------------------------------------------ */

static void heap_swap(struct qualify *q, size_t a, size_t b)
{
	struct qualify_entry *t = q->heap[a];

	q->heap[a] = q->heap[b];
	q->heap[b] = t;
	q->heap[a]->heap_idx = a;
	q->heap[b]->heap_idx = b;
}

static void heap_up(struct qualify *q, size_t i)
{
	while (i > 0 && q->heap[(i - 1) / 2]->due_ns > q->heap[i]->due_ns) {
		heap_swap(q, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(struct qualify *q, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < q->n_heap && q->heap[l]->due_ns < q->heap[m]->due_ns)
			m = l;
		if (r < q->n_heap && q->heap[r]->due_ns < q->heap[m]->due_ns)
			m = r;
		if (m == i)
			return;
		heap_swap(q, i, m);
		i = m;
	}
}

static void heap_remove(struct qualify *q, struct qualify_entry *e)
{
	size_t i = e->heap_idx;

	if (i == SIZE_MAX)
		return;
	e->heap_idx = SIZE_MAX;
	if (i != --q->n_heap) {
		q->heap[i] = q->heap[q->n_heap];
		q->heap[i]->heap_idx = i;
		heap_down(q, i);
		heap_up(q, i);
	}
}

static void tick_arm(struct qualify *q);

/* Schedule e at due (monotonic ns). Returns 0 or ENOMEM. */
static int heap_schedule(struct qualify *q, struct qualify_entry *e, int64_t due)
{
	heap_remove(q, e);
	if (q->n_heap == q->heap_cap) {
		size_t cap = q->heap_cap ? q->heap_cap * 2 : 64;
		struct qualify_entry **v = realloc(q->heap, cap * sizeof(*v));

		if (!v)
			return ENOMEM;
		q->heap = v;
		q->heap_cap = cap;
	}
	e->due_ns = due;
	e->heap_idx = q->n_heap;
	q->heap[q->n_heap++] = e;
	heap_up(q, e->heap_idx);
	tick_arm(q);
	return 0;
}

/* ---- entries ------------------------------------------------------------------------- */

static uint64_t entry_hash(const char *aor, size_t alen, const char *key, size_t klen)
{
	return hmap_hash_more(hmap_hash(aor, alen), key, klen);
}

static struct qualify_entry *entry_find(struct qualify *q, const struct sip_str *aor,
					const struct sip_str *key)
{
	uint64_t h = entry_hash(aor->p, aor->len, key->p, key->len);

	for (struct hmap_node *n = hmap_first(&q->entries, h); n; n = hmap_next(n, h)) {
		struct qualify_entry *e = hmap_entry(n, struct qualify_entry, node);

		if (e->aor_len == aor->len && e->key_len == key->len &&
		    memcmp(e->aor, aor->p, aor->len) == 0 && memcmp(e->key, key->p, key->len) == 0)
			return e;
	}
	return NULL;
}

static void ping_forget(struct qualify_entry *e)
{
	if (!e->in_flight)
		return;
	e->in_flight = false;
	hmap_remove(&e->q->pending, &e->bnode);
	evtimer_del(e->timeout_ev);
}

static void entry_free(struct qualify_entry *e)
{
	struct qualify *q = e->q;

	ping_forget(e);
	heap_remove(q, e);
	location_op_cancel(&e->op);
	hmap_remove(&q->entries, &e->node);
	event_free(e->timeout_ev);
	free(e);
}

static void ping_timeout(evutil_socket_t fd, short what, void *arg);

/* A new entry for binding b, unscheduled. NULL on ENOMEM. */
static struct qualify_entry *entry_new(struct qualify *q, const struct binding *b)
{
	struct qualify_entry *e;
	size_t total = b->aor.len + b->key.len + b->contact.len + 3;

	e = calloc(1, sizeof(*e) + total);
	if (!e)
		return NULL;
	e->timeout_ev = evtimer_new(q->base, ping_timeout, e);
	if (!e->timeout_ev) {
		free(e);
		return NULL;
	}
	e->q = q;
	e->heap_idx = SIZE_MAX;
	e->aor = e->data;
	e->aor_len = b->aor.len;
	memcpy(e->aor, b->aor.p, b->aor.len);
	e->key = e->aor + e->aor_len + 1;
	e->key_len = b->key.len;
	memcpy(e->key, b->key.p, b->key.len);
	e->contact = e->key + e->key_len + 1;
	e->contact_len = b->contact.len;
	memcpy(e->contact, b->contact.p, b->contact.len);
	hmap_insert(&q->entries, &e->node, entry_hash(e->aor, e->aor_len, e->key, e->key_len));
	return e;
}

static uint64_t qualify_random(struct qualify *q)
{
	uint64_t r;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
		r = (uint64_t)clock_mono_ns() ^ (q->salt += 0x9e3779b97f4a7c15u);
	return r;
}

/* ---- storing results ----------------------------------------------------------------- */

static void entry_log(const struct qualify_entry *e, const char *what)
{
	char aor[LOG_ESC_SIZE], contact[LOG_ESC_SIZE];

	log_info("qualify: %s %s: %s", log_escape(e->aor, e->aor_len, aor, sizeof(aor)),
		 log_escape(e->contact, e->contact_len, contact, sizeof(contact)), what);
}

static void on_unbound(int err, void *arg)
{
	struct qualify_entry *e = arg;

	e->op = NULL;
	if (!err || err == ENOENT) {
		entry_log(e, "removed: unreachable for qualify.remove_unreachable_after");
		entry_free(e);
	}
}

static void on_stored(int err, void *arg)
{
	struct qualify_entry *e = arg;
	struct qualify *q = e->q;
	int64_t now = (int64_t)time(NULL);

	e->op = NULL;
	if (err == ENOENT) {
		/* Gone, refreshed by another instance's flow, or a claim another won. */
		entry_free(e);
		return;
	}
	if (err) {
		log_limited(&q->lim_send, LOG_WARN, "qualify: cannot store a state: %s",
			    strerror(err));
		return;
	}
	if (q->conf.remove_unreachable_after && e->status == QUALIFY_UNREACHABLE &&
	    e->unreachable_since &&
	    now - e->unreachable_since >= (int64_t)q->conf.remove_unreachable_after) {
		struct sip_str aor = {.p = e->aor, .len = e->aor_len};
		struct sip_str key = {.p = e->key, .len = e->key_len};

		if (location_unbind(q->loc, &aor, &key, on_unbound, e, &e->op) != 0)
			e->op = NULL;
	}
}

/* Store e's state when it is worth a write (see DESIGN). */
static void entry_store(struct qualify_entry *e)
{
	struct qualify *q = e->q;
	int64_t now = (int64_t)time(NULL);
	uint32_t diff = e->rtt_ms > e->stored_rtt ? e->rtt_ms - e->stored_rtt
						   : e->stored_rtt - e->rtt_ms;
	bool rtt_moved = (e->status == QUALIFY_OK || e->status == QUALIFY_LAGGED) && diff > 5 &&
			 diff > e->stored_rtt / 5;
	bool old = now - e->stored_at >=
		   (int64_t)q->conf.interval * QUALIFY_REFRESH_INTERVALS - q->conf.interval / 2;
	struct qualify_update u = {
	    .aor = {.p = e->aor, .len = e->aor_len},
	    .key = {.p = e->key, .len = e->key_len},
	    .status = e->status,
	    .rtt_ms = e->rtt_ms,
	    .at = now,
	};
	bool remove_due = q->conf.remove_unreachable_after && e->status == QUALIFY_UNREACHABLE &&
			  e->unreachable_since &&
			  now - e->unreachable_since >= (int64_t)q->conf.remove_unreachable_after;

	if (e->op || (e->status == e->stored && !rtt_moved && !old && !remove_due))
		return;
	if (e->claimed)
		u.claim_before = now - (int64_t)q->conf.interval * QUALIFY_STALE_INTERVALS -
				 (int64_t)q->conf.timeout / 1000;
	if (e->status != e->stored) {
		char what[64];

		snprintf(what, sizeof(what), "%s -> %s (%" PRIu32 " ms)",
			 qualify_status_name(e->stored), qualify_status_name(e->status), e->rtt_ms);
		entry_log(e, what);
	}
	if (location_qualify_set(q->loc, &u, on_stored, e, &e->op) != 0) {
		e->op = NULL;
		return;
	}
	/* What the store will hold once it completes; a failure shows at the next result. */
	e->stored = e->status;
	e->stored_rtt = e->rtt_ms;
	e->stored_at = now;
}

/* A ping ended: answered (rtt_ns >= 0) or not (rtt_ns < 0). */
static void entry_result(struct qualify_entry *e, int64_t rtt_ns)
{
	struct qualify *q = e->q;
	int64_t now = clock_mono_ns(), next;

	ping_forget(e);
	if (rtt_ns >= 0) {
		e->rtt_ms = (uint32_t)(rtt_ns / CLOCK_NS_PER_MS);
		e->status = e->rtt_ms > q->conf.maxms ? QUALIFY_LAGGED : QUALIFY_OK;
		e->unreachable_since = 0;
		next = (int64_t)q->conf.interval * NS_PER_S;
	} else {
		e->rtt_ms = 0;
		if (e->status != QUALIFY_UNREACHABLE)
			e->unreachable_since = (int64_t)time(NULL);
		e->status = QUALIFY_UNREACHABLE;
		next = (int64_t)q->conf.interval * NS_PER_S / 4;
		if (next < NS_PER_S)
			next = NS_PER_S;
	}
	entry_store(e);
	if (heap_schedule(q, e, now + next) != 0)
		entry_free(e);
}

static void ping_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	entry_result(arg, -1);
}

/* ---- pinging ------------------------------------------------------------------------- */

/* Contacts are validated URIs, but the bytes go into a request line and a header: only
 * those with no byte that could end or fold a line are pinged. */
static bool contact_sendable(const struct qualify_entry *e)
{
	for (size_t i = 0; i < e->contact_len; i++) {
		unsigned char c = (unsigned char)e->contact[i];

		if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>')
			return false;
	}
	return e->contact_len > 0;
}

static void ping_send(struct qualify *q, struct qualify_entry *e)
{
	struct timeval tv = {.tv_sec = q->conf.timeout / 1000,
			     .tv_usec = (q->conf.timeout % 1000) * 1000};
	struct net_flow flow;
	char local[64], host[70], buf[QUALIFY_MSG_MAX];
	uint16_t lport = 0;
	uint64_t id = ++q->seq ^ q->salt;
	int n, err;

	err = net_flow_to(q->net, &e->dst, &flow, local, sizeof(local), &lport);
	if (err) {
		/* ENOTCONN: the TCP connection it registered on is gone, and with it the
		 * only way to reach it. */
		entry_result(e, -1);
		return;
	}
	snprintf(host, sizeof(host), strchr(local, ':') ? "[%s]" : "%s", local);
	snprintf(e->branch, sizeof(e->branch), "z9hG4bK-sq-%016" PRIx64, id);
	snprintf(e->call_id, sizeof(e->call_id), "sq-%016" PRIx64, id);
	e->cseq++;
	n = snprintf(buf, sizeof(buf),
		     "OPTIONS %.*s SIP/2.0\r\n"
		     "Via: SIP/2.0/%s %s:%u;branch=%s;rport\r\n"
		     "Max-Forwards: 70\r\n"
		     "From: <sip:sipreg@%s>;tag=%016" PRIx64 "\r\n"
		     "To: <%.*s>\r\n"
		     "Call-ID: %s\r\n"
		     "CSeq: %" PRIu32 " OPTIONS\r\n"
		     "Accept: application/sdp\r\n"
		     "Content-Length: 0\r\n\r\n",
		     (int)e->contact_len, e->contact,
		     e->dst.proto == SIP_PROTO_TCP ? "TCP" : "UDP", host, (unsigned)lport,
		     e->branch, host, id, (int)e->contact_len, e->contact, e->call_id, e->cseq);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		entry_result(e, -1);
		return;
	}
	e->in_flight = true;
	e->sent_ns = clock_mono_ns();
	hmap_insert(&q->pending, &e->bnode, hmap_hash(e->branch, strlen(e->branch)));
	evtimer_add(e->timeout_ev, &tv);
	err = net_send(q->net, &flow, 0, buf, (size_t)n);
	if (err)
		log_limited(&q->lim_send, LOG_WARN, "qualify: cannot send OPTIONS to %s:%u: %s",
			    e->dst.ip, (unsigned)e->dst.port, strerror(err));
}

static void tick_arm(struct qualify *q)
{
	int64_t now = clock_mono_ns(), at, d;
	struct timeval tv;

	if (q->n_heap == 0) {
		evtimer_del(q->tick_ev);
		return;
	}
	at = q->heap[0]->due_ns > q->next_send_ns ? q->heap[0]->due_ns : q->next_send_ns;
	d = at > now ? at - now : 0;
	tv.tv_sec = (time_t)(d / NS_PER_S);
	tv.tv_usec = (suseconds_t)(d % NS_PER_S / 1000);
	evtimer_add(q->tick_ev, &tv);
}

/* Send what is due, one ping per 1/rate s. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct qualify *q = arg;
	int64_t gap = NS_PER_S / q->conf.rate;

	(void)fd;
	(void)what;
	for (;;) {
		int64_t now = clock_mono_ns();
		struct qualify_entry *e;

		if (q->n_heap == 0 || q->heap[0]->due_ns > now || q->next_send_ns > now)
			break;
		e = q->heap[0];
		heap_remove(q, e);
		/* No credit for idle time: never a burst above the rate. */
		q->next_send_ns = (q->next_send_ns > now - gap ? q->next_send_ns : now) + gap;
		ping_send(q, e);
	}
	tick_arm(q);
}

bool qualify_response(struct qualify *q, const struct sipmsg *m)
{
	struct qualify_entry *e = NULL;
	uint64_t h;
	int code = 0;

	if (!q || !m->is_response || m->branch.len == 0 || m->branch.len >= QUALIFY_BRANCH_MAX)
		return false;
	h = hmap_hash(m->branch.p, m->branch.len);
	for (struct hmap_node *n = hmap_first(&q->pending, h); n; n = hmap_next(n, h)) {
		struct qualify_entry *c = hmap_entry(n, struct qualify_entry, bnode);

		if (strlen(c->branch) == m->branch.len &&
		    memcmp(c->branch, m->branch.p, m->branch.len) == 0) {
			e = c;
			break;
		}
	}
	if (!e || m->cseq != e->cseq || m->call_id.len != strlen(e->call_id) ||
	    memcmp(m->call_id.p, e->call_id, m->call_id.len) != 0)
		return e != NULL;
	/* "SIP/2.0 NNN ...": the parse checked the status line's shape. */
	for (size_t i = 8; i < 11 && i < m->raw_len; i++)
		code = code * 10 + (m->raw[i] - '0');
	if (code >= 200)
		entry_result(e, clock_mono_ns() - e->sent_ns);
	return true;
}

/* ---- the scan ------------------------------------------------------------------------ */

static bool binding_ours(const struct qualify *q, const struct binding *b, int64_t now,
			 bool *claimed)
{
	struct sip_str me = sip_str_c(q->instance_id);
	int64_t last = b->qualified_at ? b->qualified_at : b->updated_at;
	int64_t stale = (int64_t)q->conf.interval * QUALIFY_STALE_INTERVALS +
			(int64_t)q->conf.timeout / 1000;

	*claimed = false;
	if (sip_str_eq(&b->registered_by, &me))
		return b->source.proto == SIP_PROTO_UDP || b->source.proto == SIP_PROTO_TCP;
	/* Another instance's TCP flow cannot be reached from here. */
	if (b->source.proto != SIP_PROTO_UDP)
		return false;
	*claimed = true;
	if (b->qualified_at && sip_str_eq(&b->qualified_by, &me))
		return true; /* claimed before, not refreshed since */
	return now - last > stale;
}

static void on_scan(int err, const struct binding *b, void *arg)
{
	struct qualify *q = arg;
	struct qualify_entry *e;
	int64_t now = (int64_t)time(NULL);
	bool claimed;

	if (!b) {
		struct hmap_node *n, *tmp;
		size_t i;

		q->scan_op = NULL;
		if (err) {
			log_limited(&q->lim_send, LOG_WARN, "qualify: cannot list bindings: %s",
				    strerror(err));
			return; /* keep what we have until the next scan */
		}
		HMAP_FOREACH_SAFE(&q->entries, n, tmp, i)
		{
			e = hmap_entry(n, struct qualify_entry, node);
			if (e->seen != q->gen && !e->op)
				entry_free(e);
		}
		return;
	}
	if (!binding_ours(q, b, now, &claimed))
		return;
	e = entry_find(q, &b->aor, &b->key);
	if (!e) {
		int64_t phase = (int64_t)(qualify_random(q) % ((uint64_t)q->conf.interval * 1000));

		e = entry_new(q, b);
		if (!e)
			return;
		if (!contact_sendable(e)) {
			entry_free(e);
			return;
		}
		e->status = b->qualify;
		e->rtt_ms = b->rtt_ms;
		if (heap_schedule(q, e, clock_mono_ns() + phase * CLOCK_NS_PER_MS) != 0) {
			entry_free(e);
			return;
		}
	}
	e->seen = q->gen;
	e->claimed = claimed;
	e->dst = b->source;
	/* The store's word on what it holds: a refresh resets it to UNKNOWN, and the next
	 * result is then stored whatever it is. */
	if (!e->op) {
		e->stored = b->qualify;
		e->stored_rtt = b->rtt_ms;
		e->stored_at = b->qualified_at;
	}
}

static void on_scan_timer(evutil_socket_t fd, short what, void *arg)
{
	struct qualify *q = arg;
	struct timeval tv = {.tv_sec = q->conf.interval};

	(void)fd;
	(void)what;
	evtimer_add(q->scan_ev, &tv);
	if (q->scan_op)
		return; /* the previous listing is still running */
	q->gen++;
	if (location_iterate(q->loc, (int64_t)time(NULL), on_scan, q, &q->scan_op) != 0)
		q->scan_op = NULL;
}

int qualify_alloc(struct qualify **qp, struct event_base *base, const struct qualify_conf *conf,
		  struct location *loc, struct net *net, const char *instance_id)
{
	struct timeval first = {.tv_sec = 1};
	struct qualify *q;

	*qp = NULL;
	if (!conf->interval || !conf->rate || !loc || !net)
		return EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return ENOMEM;
	q->base = base;
	q->conf = *conf;
	q->loc = loc;
	q->net = net;
	q->instance_id = strdup(instance_id ? instance_id : "");
	q->tick_ev = evtimer_new(base, on_tick, q);
	q->scan_ev = evtimer_new(base, on_scan_timer, q);
	if (!q->instance_id || !q->tick_ev || !q->scan_ev || hmap_init(&q->entries, 256) != 0 ||
	    hmap_init(&q->pending, 64) != 0 || evtimer_add(q->scan_ev, &first) != 0) {
		qualify_free(&q);
		return ENOMEM;
	}
	q->salt = qualify_random(q);
	*qp = q;
	return 0;
}

void qualify_free(struct qualify **qp)
{
	struct qualify *q = qp ? *qp : NULL;

	if (!q)
		return;
	location_op_cancel(&q->scan_op);
	if (q->entries.buckets) {
		struct hmap_node *n, *tmp;
		size_t i;

		HMAP_FOREACH_SAFE(&q->entries, n, tmp, i)
		entry_free(hmap_entry(n, struct qualify_entry, node));
		hmap_destroy(&q->entries);
	}
	if (q->pending.buckets)
		hmap_destroy(&q->pending);
	if (q->tick_ev)
		event_free(q->tick_ev);
	if (q->scan_ev)
		event_free(q->scan_ev);
	free(q->heap);
	free(q->instance_id);
	free(q);
	*qp = NULL;
}
